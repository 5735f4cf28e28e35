/*
 * The freshness of a request (RFC 9483 §3.1, §3.6.4): its messageTime within the window, on this
 * instance's clock and, with a shared state, on Redis's, and its transactionID and senderNonce not
 * seen before; and cmp_check_request (policy.h), which runs them around the credentials' and the
 * authorization's checks (policy.c).
 */
#include "gateway/cmp/policy.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/replay.h"
#include "gateway/cmp/status.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"

#include <stdio.h>
#include <time.h>
#include <openssl/cmp.h>

/* A messageTime |off| s off a clock (this instance's, or Redis's): 0 within the window, else its refusal */
static int untimely(const struct cmp_call *c, long long off, struct cmp_refusal *r)
{
    const struct cmp_started *tm =
        c->e->started; /* the window the replay cache was sized for, not a reload's */
    char allowed[64];

    if (off >= -(long long)tm->behind && off <= (long long)tm->ahead)
        return 0;
    if (tm->message_time_window != 0)
        snprintf(allowed, sizeof(allowed), "±%u s", tm->message_time_window);
    else
        snprintf(allowed, sizeof(allowed), "%lld s behind to %lld s ahead", (long long)tm->behind,
                 (long long)tm->ahead);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badTime,
                      "messageTime is %lld s off the server clock; check the device clock (allowed: %s)", off,
                      allowed);
}

/* RFC 9483 §3.1: messageTime lets the receiver bound replays; 3.0 never looks at it. */
static int check_time(struct cmp_call *c, struct cmp_refusal *r)
{
    if (!c->hdr.has_message_time) {
        if (!c->e->cfg.cmp->require_message_time)
            return 0;
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badTime,
                          "messageTime is missing: this server requires it");
    }
    return untimely(c, (long long)c->hdr.message_time - (long long)c->now, r);
}

/* The answer to the replay check's |rc| (gw_replay_check_add's, gw_cluster_seen's; |err| the latter's). */
static int replay_refused(struct cmp_call *c, int rc, const char *err, struct cmp_refusal *r)
{
    char held[GW_LOG_HELD_LEN];

    switch (rc) {
    case 0:
        return 0;
    case GW_ERR_REPLAY:
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_transactionIdInUse,
                          "replayed message: this transactionID and senderNonce were already used");
    case GW_ERR_EXISTS:
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_transactionIdInUse, "%s", TEXT_TID_IN_USE);
    case GW_ERR_LIMIT:
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "too many recent transactions from %.150s: retry later", c->rsp->identity);
    case GW_ERR_BUSY:
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "too many recent transactions: retry later");
    case GW_ERR_UNAVAILABLE: /* paced: every request meets an outage */
        if (gw_cluster_unavailable_due(c->e->cluster, held))
            gw_log_kv(GW_LOG_ERROR, "shared_state_unavailable", "tid", c->rsp->tid, "reason", err,
                      "suppressed", held, NULL);
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "the gateway cannot check this request against its cluster now; retry later");
    default:
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "transactionID or senderNonce too long");
    }
}

/*
 * A replay or a transactionID reuse this instance's cache knows already, refused before any lookup (the
 * revocation status, the cluster) as check_replay would refuse it after them. Nothing is recorded here:
 * check_replay does, once the credentials and authorization passed, so that the retry of a request they
 * refused is no replay.
 */
static int check_seen(struct cmp_call *c, struct cmp_refusal *r)
{
    int rc = gw_replay_seen(c->e->replay, c->hdr.tid, c->hdr.tid_len, c->hdr.sender_nonce,
                            c->hdr.sender_nonce_len, c->now);

    return rc == GW_ERR_REPLAY || rc == GW_ERR_EXISTS ? replay_refused(c, rc, NULL, r) : 0;
}

/* The seconds since this instance read its clock for the request (c->now); 0 on a clock stepped back */
static time_t since_now(const struct cmp_call *c)
{
    time_t now = c->e->clock != NULL ? c->e->clock() : time(NULL);

    return now > c->now ? now - c->now : 0;
}

/*
 * How much further than |behind| a messageTime may lag Redis's clock: the |took| seconds the checks took
 * since check_time judged it at c->now (the revocation lookups at the CA may take seconds), so that a
 * messageTime at the window's edge then is not refused for them. Capped below what the replay TTL leaves
 * beyond the window (GW_REPLAY_MARGIN at least: engine.c started_init) by a second, to keep replay_ttl >
 * behind + lag + ahead: an entry Redis forgot then still covers every messageTime S_SEEN admits (the
 * argument above S_SEEN, cluster_scripts.c); and at GW_REPLAY_MARGIN less a second, as the docs say.
 */
static time_t redis_lag(const struct cmp_call *c, time_t took)
{
    const struct cmp_started *tm = c->e->started;
    time_t cap = tm->replay_ttl - tm->behind - tm->ahead - 1;

    if (cap > GW_REPLAY_MARGIN - 1)
        cap = GW_REPLAY_MARGIN - 1;
    if (cap < 0)
        return 0;
    return took < cap ? took : cap;
}

/*
 * Redis refused by its window a messageTime this instance's own clock admitted (check_time): the two
 * clocks differ, and the device's clock is not at fault. Said apart from the refusal, paced (any client
 * sends a request on the instance's clock as fast as it likes), with the skew (Redis's clock less this
 * instance's, as far as whole seconds read it) that the operator can act on. Its two readings are |took|
 * seconds apart (mt->at less c->now, and less Redis's clock when the checks were done): that much is no
 * skew, and a second either way can be the whole-second reads alone, left unsaid (a refusal of a
 * messageTime at the window's edge, or after checks longer than redis_lag grants).
 */
static void log_clock_skew(const struct cmp_call *c, const struct gw_cluster_msg_time *mt, time_t took)
{
    static struct gw_log_pace pace = GW_LOG_PACE_INIT;
    long long own = (long long)mt->at - (long long)c->now, skew = own - mt->off - (long long)took;
    char held[GW_LOG_HELD_LEN], off[24], own_off[24], skew_s[24], reason[160];

    if ((skew < 0 ? -skew : skew) <= 1 || !gw_log_pace_due(&pace, time(NULL), held))
        return;
    snprintf(off, sizeof(off), "%lld", mt->off);
    snprintf(own_off, sizeof(own_off), "%lld", own);
    snprintf(skew_s, sizeof(skew_s), "%lld", skew);
    snprintf(reason, sizeof(reason),
             "this instance's clock and Redis's differ by %lld s (Redis's clock %s), more than the "
             "messageTime window allows: run NTP on both",
             skew < 0 ? -skew : skew, skew < 0 ? "behind" : "ahead");
    gw_log_kv(GW_LOG_WARN, "shared_state_clock_skew", "tid", c->rsp->tid, "offset", off, "local_offset",
              own_off, "skew", skew_s, "reason", reason, "suppressed", held, NULL);
}

/*
 * RFC 9483 §3.6.4: a transactionID seen before answers transactionIdInUse; with a shared state, one
 * seen by any instance (for the same time, cmp_started.replay_ttl), and the messageTime window holds on
 * Redis's clock too, the one its entries expire on (S_SEEN, cluster_scripts.c), lagging by the time the
 * checks took (redis_lag); a refusal there is the clocks' skew (check_time having passed, checks longer
 * than redis_lag grants aside), and logged so.
 */
static int check_replay(struct cmp_call *c, const struct cmp_txn *t, struct cmp_refusal *r)
{
    time_t took = since_now(c);
    struct gw_cluster_msg_time mt = {.at = c->hdr.message_time,
                                     .behind = c->e->started->behind,
                                     .ahead = c->e->started->ahead,
                                     .elapsed = redis_lag(c, took)};
    char err[GW_ERR_LEN] = "";
    int rc = 0;

    /* the cluster first: a request it cannot check leaves no trace here, so its retry is not a replay */
    if (c->e->cluster != NULL)
        rc = gw_cluster_seen(c->e->cluster, c->hdr.tid, c->hdr.tid_len, c->hdr.sender_nonce,
                             c->hdr.sender_nonce_len, c->hdr.has_message_time ? &mt : NULL, t->quota,
                             c->e->started->replay_ttl, c->e->started->recent_per_identity, err);
    if (rc == 0) { /* with a cluster, its caps hold: here only replays its loss window would miss */
        int local = gw_replay_check_add(c->e->replay, c->hdr.tid, c->hdr.tid_len, c->hdr.sender_nonce,
                                        c->hdr.sender_nonce_len, t->quota, c->now);

        if (c->e->cluster == NULL || local == GW_ERR_REPLAY || local == GW_ERR_EXISTS)
            rc = local;
    }
    if (rc == GW_ERR_TIME) {
        log_clock_skew(c, &mt, took);
        return untimely(c, mt.off, r);
    }
    return replay_refused(c, rc, err, r);
}

/* The messageTime and the replays known here first: they look nothing up, and a request they refuse is
   refused whatever the revocation lookups (the CA, Redis) and the chain checks of the authorization would
   have said. */
int cmp_check_request(struct cmp_txn *t, struct cmp_call *c, struct cmp_refusal *r)
{
    if (check_time(c, r) || check_seen(c, r) || cmp_check_credentials(c, t, r) || cmp_authorize(c, t, r) ||
        check_replay(c, t, r))
        return 1;
    c->rsp->proven = true;
    return 0;
}
