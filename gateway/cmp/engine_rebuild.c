/*
 * A transaction another instance began, rebuilt here from its record in the shared state
 * (cmp.state, "mac_key_file"): its stored request replayed through a fresh context as it ran there,
 * with the certificate that instance issued, so that this instance answers the certConf, pollReq or
 * error that continues it; or, when no instance is left to, so that its expiry is recorded.
 */
#include "gateway/cmp/engine_local.h"
#include "gateway/cmp/auth.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/policy.h"
#include "gateway/cmp/poll.h"
#include "gateway/cmp/precheck.h"
#include "gateway/cmp/share.h"
#include "gateway/cmp/srv.h"
#include "gateway/cmp/txn.h"
#include "base/err.h"
#include "base/log.h"
#include "base/x509.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>

/* |sub|, a call of |e| at |now| for the stored request |sreq| whose answer goes nowhere (|scratch|). */
static void stored_call(struct cmp_call *sub, struct gw_cmp_engine *e, const struct gw_cmp_request *sreq,
                        struct gw_cmp_response *scratch, time_t now)
{
    memset(scratch, 0, sizeof(*scratch));
    memset(sub, 0, sizeof(*sub));
    sub->e = e;
    sub->req = sreq;
    sub->rsp = scratch;
    sub->now = now;
    sub->fail.fail_info = sub->stale.fail_info = -1;
}

static int replay_stored(const struct gw_hdr_info *want, struct cmp_call *sub,
                         const struct gw_txn_record *rec, struct cmp_txn **out);

/*
 * A shared transaction whose deadline passed on no instance (the one that issued it is gone), or a
 * deferred request (whose record is the whole story): its expiry is recorded here, from its record.
 */
void cmp_record_orphan(void *arg, const unsigned char *tid, size_t tid_len, const struct gw_txn_record *rec)
{
    struct gw_cmp_engine *e = arg;
    struct gw_cmp_request sreq = {.der = rec->req, .len = rec->req_len};
    struct gw_cmp_response scratch;
    struct cmp_call sub;
    struct cmp_txn *t = NULL;

    stored_call(&sub, e, &sreq, &scratch, time(NULL));
    gw_hex(scratch.tid, tid, tid_len);
    if ((sub.role = cmp_role_named(e, rec->role)) != NULL && replay_stored(NULL, &sub, rec, &t) == 0) {
        cmp_share_expired(e, t, scratch.tid, rec);
        cmp_txn_free(t);
    } else {
        cmp_share_unreplayed(e, scratch.tid, rec);
    }
    cmp_call_cleanup(&sub);
}

/*
 * A stored request (of the transaction |want| names, when a message asks), replayed through |t| as it ran on
 * the instance that began the transaction, with the certificate that instance issued; the answer is dropped.
 * 0 when |t| waits for the certConf.
 */
static int replay_stored(const struct gw_hdr_info *want, struct cmp_call *sub,
                         const struct gw_txn_record *rec, struct cmp_txn **out)
{
    const unsigned char *p = rec->cert;
    struct cmp_refusal ignored = {0};
    OSSL_CMP_MSG *req, *rsp = NULL;
    OSSL_CMP_CTX *ctx;
    struct cmp_txn *t = NULL;
    X509 *cert = d2i_X509(NULL, &p, (long)rec->cert_len);
    int ok, waiting = rec->cert_len == 0; /* a deferred request: its call runs, or ran, elsewhere */

    p = rec->req;
    req = d2i_OSSL_CMP_MSG(NULL, &p, (long)rec->req_len);
    ok = (cert != NULL || waiting) && req != NULL && gw_shim_hdr_info(req, &sub->hdr) == 0 &&
         (want == NULL ||
          (sub->hdr.tid_len == want->tid_len && memcmp(sub->hdr.tid, want->tid, want->tid_len) == 0 &&
           cmp_sender_is(want, sub->hdr.protection_nid == NID_id_PasswordBasedMAC, sub->hdr.sender_kid,
                         sub->hdr.sender_kid_len, sub->hdr.sender))) && /* before the costly part */
         (sub->body = OSSL_CMP_MSG_get_bodytype(req)) >= 0 &&
         sub->body <= GW_CMP_BODY_MAX && cmp_bodies[sub->body] == CMP_ACT_START &&
         /* a message's route chooses the role (and must be the record's); without one, the record's */
         (want != NULL
              ? cmp_precheck(sub, req, &ignored) == 0
              : sub->hdr.protection_nid != NID_id_PasswordBasedMAC || cmp_check_pbm(sub, &ignored) == 0) &&
         sub->role != NULL && strcmp(sub->role->name, rec->role) == 0 && (t = cmp_txn_new(sub, 0)) != NULL &&
         cmp_authenticate(t, sub, req, &ignored) == 0;
    if (ok) {
        t->rebuilt = cert;
        cert = NULL;
        t->rewait = waiting;
        t->requested_at = (time_t)rec->requested_at;
        t->up = cmp_share_upstream(sub->e, rec); /* whose CA issues it (a reload may have renamed it) */
        rsp = cmp_run(t, sub, req, 0);
        ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
        ok = rsp != NULL && cmp_is_cert_response(OSSL_CMP_MSG_get_bodytype(rsp)) &&
             (waiting ? t->plan != NULL && (t->remote = cmp_poll_remote(rec)) != NULL : t->issued != NULL) &&
             OSSL_CMP_CTX_get_status(ctx) != -1 && cmp_txn_set_nonce(t, rec->nonce, rec->nonce_len) &&
             (t->pbm || (t->signer != NULL && OSSL_CMP_CTX_set1_srvCert(ctx, t->signer) == 1));
    }
    OSSL_CMP_MSG_free(rsp);
    gw_shim_hdr_info_cleanup(&sub->hdr); /* its sender may be |req|'s own */
    OSSL_CMP_MSG_free(req);
    X509_free(cert);
    ERR_clear_error();
    if (!ok) {
        cmp_txn_free(t);
        return 1;
    }
    snprintf(t->tls_client, sizeof(t->tls_client), "%s", rec->tls_client); /* not the message's */
    cmp_identify(t, sub); /* its share of the caps too, as the instance that began it reserved it */
    if (t->issued != NULL)
        gw_x509_cert_serial_hex(t->issued, t->serial, sizeof(t->serial));
    t->step = rec->step;
    t->shared = 1;
    memcpy(t->holder, rec->holder, sizeof(t->holder));
    *out = t;
    return 0;
}

/* The transaction of |rec|, whose lease this instance holds (given back when it cannot be rebuilt). */
struct gw_txn *cmp_rebuild_from(struct cmp_call *c, struct gw_txn_record *rec)
{
    struct gw_cmp_request sreq = *c->req;
    struct gw_cmp_response scratch;
    struct cmp_call sub;
    struct cmp_txn *t = NULL;
    struct gw_txn *txn = NULL;

    sreq.der = rec->req;
    sreq.len = rec->req_len;
    stored_call(&sub, c->e, &sreq, &scratch, c->now);
    sub.role = c->req->route != NULL ? c->req->route->role : NULL;
    cmp_describe_call(&sub);
    snprintf(scratch.tid, sizeof(scratch.tid), "%s", c->rsp->tid);
    /* the upstream whose CA issued it answers for it (a rejection revokes there): it must be here too */
    if (replay_stored(&c->hdr, &sub, rec, &t) == 0 && t->up == NULL)
        snprintf(sub.diag, sizeof(sub.diag),
                 "no upstream here has its certificate's CA (or the record's name)");
    else if (t != NULL)
        txn = gw_txn_new(c->hdr.tid, c->hdr.tid_len, t->identity, t->quota,
                         c->now + (time_t)c->e->started->transaction_ttl, t, cmp_txn_free);
    if (txn != NULL) {
        gw_log_kv(GW_LOG_INFO, "txn_continued", "tid", c->rsp->tid, "identity", t->identity, "serial",
                  t->serial, "tls_client",
                  t->tls_client[0] != '\0' ? t->tls_client : "unbound (older record)", "msg",
                  "begun on another instance", NULL);
    } else {
        cmp_txn_free(t);
        gw_cluster_unlease(c->e->cluster, c->hdr.tid, c->hdr.tid_len);
        gw_log_kv(GW_LOG_WARN, "txn_not_continued", "tid", c->rsp->tid, "reason",
                  sub.diag[0] != '\0' ? sub.diag : "its stored request does not run here", NULL);
    }
    cmp_call_cleanup(&sub);
    return txn;
}

/*
 * A message (certConf, pollReq, error) for a transaction another instance began (its record:
 * "mac_key_file"): a fresh context from the role takes the stored request again, as if it had come
 * here, with the certificate that instance issued (or, for a deferred request, answering "waiting"
 * again) and without any check, upstream call, audit record or metric (they happened there); then
 * the senderNonce the client got is put back; not for |msg| unless it can pass the checks of the
 * transaction's pinned signer (cmp_share_take, whose result is *rcp). NULL when there is nothing to
 * continue, with |r| set when the answer is other than "no open transaction" (so when cmp_share_take
 * closed it, refused by a reload here; not when its own error message closed it, CMP_SHARE_ABORTED).
 */
struct gw_txn *cmp_rebuild(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r, int *rcp)
{
    struct gw_txn_record rec;
    struct gw_txn *txn;
    char err[GW_ERR_LEN] = "";
    int rc = *rcp = cmp_share_take(c, msg, &rec, r, err);

    if (rc == GW_ERR_FORBIDDEN || rc == CMP_SHARE_OTHER_CLIENT || rc == CMP_SHARE_RELOADED ||
        rc == CMP_SHARE_ABORTED || rc == CMP_SHARE_NOT_DER || cmp_share_refused(c, rc, err, r))
        return NULL;
    if (rc == GW_ERR_INVAL)
        gw_log_kv(GW_LOG_ERROR, "txn_record_invalid", "tid", c->rsp->tid, "reason", err, NULL);
    if (rc != 0)
        return NULL;
    txn = cmp_rebuild_from(c, &rec);
    gw_txn_record_cleanup(&rec);
    return txn;
}
