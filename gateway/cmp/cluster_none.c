/*
 * The shared state of a gateway built without hiredis (cluster.h): "cmp.state": "redis" is refused at
 * load, so none of these is reached with a cluster; each answers as an instance alone would.
 */
#include "gateway/cmp/cluster.h"
#include "base/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CMPGW_WITH_HIREDIS

struct gw_cluster {
    int unused;
};

struct gw_cluster *gw_cluster_new(const struct gw_state_conf *conf, char *err)
{
    (void)conf;
    snprintf(err, GW_ERR_LEN,
             "\"cmp.state\": \"redis\": this cmpgw was built without hiredis (libhiredis-dev)");
    return NULL;
}

void gw_cluster_free(struct gw_cluster *cl)
{
    free(cl);
}

int gw_cluster_seen(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                    const unsigned char *nonce, size_t nonce_len, struct gw_cluster_msg_time *mt,
                    const char *quota, time_t ttl, unsigned max_recent, char *err)
{
    (void)cl, (void)tid, (void)tid_len, (void)nonce, (void)nonce_len, (void)mt, (void)quota, (void)ttl,
        (void)max_recent;
    snprintf(err, GW_ERR_LEN, "no shared state");
    return GW_ERR_UNAVAILABLE;
}

int gw_cluster_reserve(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *quota,
                       time_t ttl, unsigned max_open, char *err)
{
    (void)cl, (void)tid, (void)tid_len, (void)quota, (void)ttl, (void)max_open;
    snprintf(err, GW_ERR_LEN, "no shared state");
    return GW_ERR_UNAVAILABLE;
}

void gw_cluster_release(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *quota)
{
    (void)cl, (void)tid, (void)tid_len, (void)quota;
}

int gw_cluster_status(struct gw_cluster *cl, char *why, size_t cap)
{
    (void)cl, (void)why, (void)cap;
    return 0;
}

bool gw_cluster_unavailable_due(struct gw_cluster *cl, char held[GW_LOG_HELD_LEN])
{
    (void)cl;
    snprintf(held, GW_LOG_HELD_LEN, "0");
    return true;
}

int gw_cluster_put_revoked(struct gw_cluster *cl, const char *id, const char *plain, time_t not_after,
                           uint32_t max, char *err)
{
    (void)cl, (void)id, (void)plain, (void)not_after, (void)max;
    snprintf(err, GW_ERR_LEN, "no shared state");
    return GW_ERR_UNAVAILABLE;
}

int gw_cluster_revoked(struct gw_cluster *cl, const char *id, const char *plain, char *err)
{
    (void)cl, (void)id, (void)plain;
    snprintf(err, GW_ERR_LEN, "no shared state");
    return GW_ERR_UNAVAILABLE;
}

int gw_cluster_mark_revoking(struct gw_cluster *cl, const char *id, const char *plain, uint32_t ttl_ms,
                             char *err)
{
    (void)cl, (void)id, (void)plain, (void)ttl_ms;
    snprintf(err, GW_ERR_LEN, "no shared state");
    return GW_ERR_UNAVAILABLE;
}

void gw_cluster_unmark_revoking(struct gw_cluster *cl, const char *id, bool unshared)
{
    (void)cl, (void)id, (void)unshared;
}

bool gw_cluster_keeps_records(const struct gw_cluster *cl)
{
    (void)cl;
    return false;
}

int gw_cluster_put_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *quota,
                          const struct gw_txn_record *rec, time_t ttl, char *err)
{
    (void)cl, (void)tid, (void)tid_len, (void)quota, (void)rec, (void)ttl, (void)err;
    return GW_ERR_INVAL;
}

int gw_cluster_update_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                             const struct gw_txn_record *rec, char *err)
{
    (void)cl, (void)tid, (void)tid_len, (void)rec, (void)err;
    return GW_ERR_INVAL;
}

int gw_cluster_put_result(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                          const struct gw_txn_result *res, time_t ttl, char *err)
{
    (void)cl, (void)tid, (void)tid_len, (void)res, (void)ttl, (void)err;
    return GW_ERR_INVAL;
}

int gw_cluster_claim_expired(struct gw_cluster *cl, time_t now, gw_cluster_expired_fn cb, void *arg)
{
    (void)cl, (void)now, (void)cb, (void)arg;
    return 0;
}

int gw_cluster_read_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           struct gw_txn_record *out, char *err)
{
    (void)cl, (void)tid, (void)tid_len, (void)err;
    memset(out, 0, sizeof(*out));
    return GW_ERR_NOT_FOUND;
}

int gw_cluster_take_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           struct gw_txn_record *out, char *err)
{
    return gw_cluster_read_record(cl, tid, tid_len, out, err);
}

void gw_cluster_unlease(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len)
{
    (void)cl, (void)tid, (void)tid_len;
}

int gw_cluster_drop_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           const char *holder)
{
    (void)cl, (void)tid, (void)tid_len, (void)holder;
    return 0;
}

int gw_cluster_end_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *holder,
                          struct gw_txn_result *left)
{
    (void)cl, (void)tid, (void)tid_len, (void)holder;
    if (left != NULL)
        memset(left, 0, sizeof(*left));
    return 0;
}

int gw_cluster_reread_end(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                          unsigned long long id, const char *epoch, struct gw_txn_result *left, char *err)
{
    (void)cl, (void)tid, (void)tid_len, (void)id, (void)epoch, (void)err;
    memset(left, 0, sizeof(*left));
    return 0;
}

#endif
