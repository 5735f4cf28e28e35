/*
 * The revocations the instances share (cluster.h, revoked.c): a certificate revoked through one instance is
 * refused by every other, and one revocation of a certificate runs at a time across the cluster. Keys, under
 * the configured prefix (cluster.c lists them all):
 *
 *   revoked:<id>       a certificate revoked through an instance, "1"; TTL: until it expires. By its keyed
 *                      id, or by its issuer and serial alone: that one "1" where an earlier version or a
 *                      certificate that names no CA key wrote it, else REVOKED_MARKED
 *   revoked            sorted set: those by keyed id, scored by expiry (their count is capped)
 *   revoking:<id>      the instance revoking that certificate now, or "done" (cluster_scripts.c, S_UNMARK)
 */
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/cluster_local.h"
#include "base/err.h"

#include <stdio.h>

#ifdef CMPGW_WITH_HIREDIS

/*
 * A revoked: entry by issuer and serial written beside the certificate's keyed one: a gateway of an
 * earlier version tests its presence only (it refuses every certificate of that issuer name and serial);
 * this one skips it for a certificate with a key (its keyed entry decides), never one of "1".
 */
#define REVOKED_MARKED "keyed"

/* The revoked: entries of the certificate whose ids are |id| (keyed) and |plain| (issuer and serial). */
static void revoked_keys(const struct gw_cluster *cl, const char *id, const char *plain,
                         char keyed[CLUSTER_KEY_LEN], char by_name[CLUSTER_KEY_LEN])
{
    snprintf(keyed, CLUSTER_KEY_LEN, "%srevoked:%s", cl->prefix, id);
    snprintf(by_name, CLUSTER_KEY_LEN, "%srevoked:%s", cl->prefix, plain);
}

/* The keyed entry and its counted set as S_SEEN keeps a transactionID: one revocation twice is one entry. */
int gw_cluster_put_revoked(struct gw_cluster *cl, const char *id, const char *plain, time_t not_after,
                           uint32_t max, char *err)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN], n1[24], n2[24];
    long long rc;

    revoked_keys(cl, id, plain, k1, k2);
    snprintf(n1, sizeof(n1), "%lld", (long long)not_after);
    snprintf(n2, sizeof(n2), "%u", max);
    rc = cluster_integer_of(
        cl, cluster_eval(cl, S_PUT_REVOKED, k1, k2, 3, (const char *const[]){n1, n2, REVOKED_MARKED}, err),
        err);
    if (rc == 3)
        snprintf(err, GW_ERR_LEN, "the shared state keeps %u unexpired revocations already (cmp.max_revoked)",
                 max);
    else if (rc != 0 && rc != 4 && rc != GW_ERR_UNAVAILABLE)
        snprintf(err, GW_ERR_LEN, "the shared state answered %lld to a revocation", rc);
    return rc == 0 ? 0 : rc == 4 ? 1 : rc == 3 ? GW_ERR_LIMIT : GW_ERR_UNAVAILABLE;
}

int gw_cluster_revoked(struct gw_cluster *cl, const char *id, const char *plain, char *err)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN];
    long long rc;

    revoked_keys(cl, id, plain, k1, k2);
    rc = cluster_integer_of(
        cl, cluster_eval(cl, S_REVOKED, k1, k2, 1, (const char *const[]){REVOKED_MARKED}, err), err);
    if (rc == 0 || rc == 1)
        return (int)rc;
    if (rc != GW_ERR_UNAVAILABLE) /* no answer of the script's: not taken as "not revoked" */
        snprintf(err, GW_ERR_LEN, "the shared state answered %lld to a revocation lookup", rc);
    return GW_ERR_UNAVAILABLE;
}

/* The keys of the mark's end: the certificate |id|'s revoked: entry and revoking: mark (issuer and serial).
 */
static void revocation_keys(const struct gw_cluster *cl, const char *id, char revoked[CLUSTER_KEY_LEN],
                            char revoking[CLUSTER_KEY_LEN])
{
    snprintf(revoked, CLUSTER_KEY_LEN, "%srevoked:%s", cl->prefix, id);
    snprintf(revoking, CLUSTER_KEY_LEN, "%srevoking:%s", cl->prefix, id);
}

int gw_cluster_mark_revoking(struct gw_cluster *cl, const char *id, const char *plain, uint32_t ttl_ms,
                             char *err)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN], ms[16];
    long long rc;

    revoked_keys(cl, id, plain, k1, k2);
    snprintf(ms, sizeof(ms), "%u", ttl_ms > 0 ? ttl_ms : 1);
    rc = cluster_integer_of(
        cl,
        cluster_eval(cl, S_REVOKING, k1, k2, 3, (const char *const[]){cl->owner, ms, REVOKED_MARKED}, err),
        err);
    if (rc == 0 || rc == 1 || rc == 2)
        return rc == 0 ? 0 : rc == 2 ? 1 : GW_ERR_BUSY;
    if (rc != GW_ERR_UNAVAILABLE) /* no answer of the script's: not taken as marked, nor as revoked */
        snprintf(err, GW_ERR_LEN, "the shared state answered %lld to a revocation's mark", rc);
    return GW_ERR_UNAVAILABLE;
}

void gw_cluster_unmark_revoking(struct gw_cluster *cl, const char *id, bool unshared)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN], err[GW_ERR_LEN];

    revocation_keys(cl, id, k1, k2);
    if (cluster_run(cl, S_UNMARK, k1, k2, cl->owner, unshared ? 1 : 0, 0, 0, err) <
        0) /* else it goes with its TTL */
        cluster_warn_failed(cl, "shared_state_unmark_failed", err,
                            "another instance's revocation of the certificate waits until the mark expires");
}

#endif /* CMPGW_WITH_HIREDIS: cluster_none.c stands in without it */
