/*
 * Whether the shared state's Redis evicts the gateway's keys under memory pressure (cluster.h), read on each
 * new connection (cluster.c) with INFO memory, which ACLs and managed Redis allow where CONFIG is often
 * disabled. Every key the gateway writes carries a TTL, so with a maxmemory any policy but noeviction
 * (volatile-* as well as allkeys-*) drops replay keys and reservations once Redis is full, silently: a
 * captured request then replays. The start refuses such a Redis (CONFIG GET); a restart, a failover to a
 * replica set otherwise, or a CONFIG SET since shows here. Under noeviction a full Redis refuses a step's
 * write instead (OOM): an error answer, which fails that step closed (cluster.c, eval_n).
 */
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/cluster_local.h"
#include "base/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CMPGW_WITH_HIREDIS

static struct gw_metric *m_evicting;
static pthread_once_t m_evicting_once = PTHREAD_ONCE_INIT;

static void evicting_metric_init(void)
{
    m_evicting = gw_metric_new("cmpgw_shared_state_evicting",
                               "1 while the shared state's Redis, as the last connection to it read, evicts "
                               "keys under memory pressure (maxmemory set, maxmemory-policy not noeviction).",
                               GW_METRIC_GAUGE, NULL, NULL, 0);
}

/*
 * The value of the field |name| among INFO's "name:value" lines (|info|, |len| bytes) into |out| (|cap|
 * bytes): 0, or -1 when no line holds it or its value does not fit.
 */
static int info_field(const char *info, size_t len, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);

    for (const char *p = info, *end = info + len, *eol; p < end; p = eol + 1) {
        size_t l;

        eol = memchr(p, '\n', (size_t)(end - p));
        eol = eol != NULL ? eol : end;
        l = (size_t)(eol - p) - (eol > p && eol[-1] == '\r');
        if (l <= n || memcmp(p, name, n) != 0 || p[n] != ':')
            continue;
        if (l - n - 1 >= cap)
            return -1;
        memcpy(out, p + n + 1, l - n - 1);
        out[l - n - 1] = '\0';
        return 0;
    }
    return -1;
}

/*
 * Whether what a new connection found (|now|: "" fine, "unchecked", or the evicting policy) differs from
 * what the last one did: said once per change, since every thread connects, and again after each failure.
 */
static bool changed(struct gw_cluster *cl, const char *now)
{
    bool differs;

    pthread_mutex_lock(&cl->lock);
    differs = strcmp(cl->eviction, now) != 0;
    snprintf(cl->eviction, sizeof(cl->eviction), "%s", now);
    pthread_mutex_unlock(&cl->lock);
    return differs && now[0] != '\0';
}

/* |r|'s maxmemory (bytes) and maxmemory_policy: 0, or -1 when it is no INFO memory that says both. */
static int memory_of(const redisReply *r, unsigned long long *bytes, char policy[GW_STATE_POLICY_LEN])
{
    char max[24];
    char *end = NULL;

    if (r->type != REDIS_REPLY_STRING || info_field(r->str, r->len, "maxmemory", max, sizeof(max)) != 0 ||
        info_field(r->str, r->len, "maxmemory_policy", policy, GW_STATE_POLICY_LEN) != 0 || max[0] < '0' ||
        max[0] > '9')
        return -1;
    errno = 0;
    *bytes = strtoull(max, &end, 10);
    return errno == 0 && *end == '\0' ? 0 : -1;
}

void cluster_eviction_read(struct gw_cluster *cl, const redisReply *r)
{
    char policy[GW_STATE_POLICY_LEN] = "", why[GW_ERR_LEN];
    unsigned long long bytes = 0;

    pthread_once(&m_evicting_once, evicting_metric_init);
    if (memory_of(r, &bytes, policy) != 0) {
        snprintf(why, sizeof(why),
                 "Redis at %s:%d answered INFO memory with %s: whether it evicts keys under memory pressure "
                 "is not known (grant the gateway's user +info)",
                 cl->address, cl->port, r->type == REDIS_REPLY_ERROR ? "an error" : "no maxmemory_policy");
        if (changed(cl, "unchecked"))
            gw_log_kv(GW_LOG_WARN, "shared_state_eviction_unchecked", "reason", why, NULL);
        return;
    }
    if (bytes == 0 || strcmp(policy, "noeviction") == 0) { /* no limit: nothing to evict for */
        gw_metric_set(m_evicting, NULL, 0);
        (void)changed(cl, "");
        return;
    }
    gw_metric_set(m_evicting, NULL, 1);
    snprintf(
        why, sizeof(why),
        "Redis at %s:%d has maxmemory %llu bytes and maxmemory-policy %s: once full it evicts replay keys "
        "and reservations (they carry a TTL), and a captured request replays; set maxmemory-policy "
        "noeviction",
        cl->address, cl->port, bytes, policy);
    if (changed(cl, policy))
        gw_log_kv(GW_LOG_WARN, "shared_state_evicting", "reason", why, NULL);
}

#endif /* CMPGW_WITH_HIREDIS */
