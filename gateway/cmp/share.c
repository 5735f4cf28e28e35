/*
 * Transaction records (cluster.h, "mac_key_file"): what this instance writes so that any instance can
 * continue a transaction (the request, the certificate or the call it waits for, the senderNonce the
 * client holds), and the expiry recorded from a record by whichever instance claims it.
 */
#include "gateway/cmp/share.h"
#include "gateway/cmp/auth.h"
#include "gateway/cmp/carry.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/policy.h"
#include "gateway/cmp/poll.h"
#include "gateway/cmp/reasons.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/srv.h"
#include "gateway/cmp/status.h"
#include "base/err.h"
#include "base/log.h"
#include "base/x509.h"
#include "upstream/upstream.h"

#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/*
 * |t|'s record: its request (|req|, or the deferred request it keeps), its certificate or the call
 * it waits for, the senderNonce of its last answer. With |ttl|, a new record; else the record rewritten
 * (lease held), one step on.
 */
static int put_record(struct cmp_call *c, struct cmp_txn *t, const unsigned char *req, size_t req_len,
                      time_t ttl, char *err)
{
    struct gw_txn_record rec = {
        .req = (unsigned char *)req, .req_len = req_len, .step = t->step + (ttl == 0)};
    unsigned char *own = NULL;
    int rc = GW_ERR_NOMEM, len = 0;

    if (req == NULL && t->request != NULL && (len = i2d_OSSL_CMP_MSG(t->request, &own)) > 0)
        rec.req = own, rec.req_len = (size_t)len;
    if (rec.req != NULL && t->nonce_len <= sizeof(rec.nonce) &&
        (t->issued == NULL || (len = i2d_X509(t->issued, &rec.cert)) > 0)) {
        rec.cert_len = t->issued != NULL ? (size_t)len : 0;
        memcpy(rec.nonce, t->nonce, rec.nonce_len = t->nonce_len);
        snprintf(rec.role, sizeof(rec.role), "%s", t->role->name);
        snprintf(rec.tls_client, sizeof(rec.tls_client), "%s", t->tls_client);
        snprintf(rec.upstream, sizeof(rec.upstream), "%s",
                 gw_upstream_conf_name(gw_upstream_get0_conf(t->up)));
        rec.requested_at = (long long)t->requested_at;
        if (t->request != NULL)
            cmp_poll_describe(t, &rec.deadline_ms, &rec.check_after);
        rc = ttl != 0
                 ? gw_cluster_put_record(c->e->cluster, c->hdr.tid, c->hdr.tid_len, t->quota, &rec, ttl, err)
                 : gw_cluster_update_record(c->e->cluster, c->hdr.tid, c->hdr.tid_len, &rec, err);
        if (rc == 0)
            t->step = rec.step;
    }
    OPENSSL_free(rec.cert);
    OPENSSL_free(own);
    return rc;
}

void cmp_share_txn(struct cmp_call *c, struct cmp_txn *t, time_t ttl)
{
    char err[GW_ERR_LEN] = "out of memory";

    if (!gw_cluster_keeps_records(c->e->cluster) || (t->issued == NULL && t->pending == NULL))
        return;
    if (put_record(c, t, c->req->der, c->req->len, ttl, err) == 0) {
        t->shared = 1;
        if (t->pending != NULL) /* its result goes beside the record, for a pollReq on any instance */
            cmp_poll_share(c->e, t->pending, c->e->cluster, c->hdr.tid, c->hdr.tid_len, ttl);
        return;
    }
    gw_log_kv(GW_LOG_WARN, "txn_not_shared", "tid", c->rsp->tid, "reason", err, "msg",
              "its next message must reach this instance", NULL);
}

/*
 * A shared transaction whose client now holds the senderNonce t->nonce (of a pollRep, or of the
 * certificate released): its record follows, so that the next message may go to any instance.
 */
void cmp_reshare(struct cmp_call *c, struct cmp_txn *t)
{
    char err[GW_ERR_LEN] = "out of memory";

    /* on failure its record holds a senderNonce the client no longer answers */
    if (put_record(c, t, NULL, 0, 0, err) != 0)
        gw_log_kv(GW_LOG_WARN, "txn_not_shared", "tid", c->rsp->tid, "reason", err, "msg",
                  "another instance may refuse its next message", NULL);
}

/*
 * What a reload of this instance since the transaction of |rec| began took from its sender, who sent
 * |msg| (|t| its view: the signer of |msg|, or the PBM reference it names): with a PBM |msg| that does
 * not verify here (!|verified|), the secret, if the request |req| (header |rh|) no longer verifies
 * either (else |msg| is no proof of its sender); then as cmp_check_record finds: its role, its PBM
 * reference, the trust its signer chained to, its credentials, its authorization. 1 with |r| the
 * refusal a single gateway gives then, else 0.
 */
static int reloaded(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *req, int verified,
                    const struct gw_txn_record *rec, const struct gw_hdr_info *rh, struct cmp_refusal *r)
{
    if (!verified && !c->pbm_gone) {
        if (cmp_signed_like(t, NULL, req, req, rec->req, rec->req_len, rh))
            return 0;
        if (cmp_role_named(c->e, rec->role) != NULL) /* a removed role is told first, as cmp_check_record */
            return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "%s", TEXT_SECRET_CHANGED);
    }
    cmp_identify(t, c);
    return cmp_check_record(c, t, rec->role, r);
}

/* Whether |rec| binds its transaction to a TLS client certificate (cmp_call.tls_client). */
static int bound(const struct gw_txn_record *rec)
{
    return strncmp(rec->tls_client, "sha256:", 7) == 0;
}

/*
 * The check of |msg|'s protection against the transaction of |rec| (cmp_signed_like, on its |role|
 * if this instance has it), from the sender and TLS client |rec| names: 0, passed; GW_ERR_FORBIDDEN,
 * refused with |r|. Over the TLS client certificate |rec| binds, which TLS authenticated and which no
 * other client has, a message that passes, or a PBM message this instance cannot verify (a secret it
 * never had), is the transaction's own: when the running configuration refuses its sender (reloaded),
 * CMP_SHARE_RELOADED with |r| the refusal a single gateway gives it (GW_ERR_FORBIDDEN when that cannot
 * be known now: systemUnavail, the transaction open). Bound to none, nothing speaks for it, and the
 * answer is as before: for a deleted reference "no open transaction" (GW_ERR_NOT_FOUND), else the
 * pinned signer's.
 */
static int check_protection(struct cmp_call *c, struct cmp_txn *t, const struct gw_role *role,
                            const OSSL_CMP_MSG *msg, const OSSL_CMP_MSG *req, const struct gw_txn_record *rec,
                            const struct gw_hdr_info *rh, struct cmp_refusal *r)
{
    int ok = !c->pbm_gone && cmp_signed_like(t, role, msg, req, rec->req, rec->req_len, rh);

    if (c->pbm_gone) { /* no secret to set (cmp_txn_new): the reference, which cmp_check_record finds gone */
        t->pbm = 1;
        memcpy(t->kid, c->hdr.sender_kid, t->kid_len = c->hdr.sender_kid_len);
    }
    if (bound(rec) && (ok || t->pbm) && reloaded(c, t, req, ok, rec, rh, r))
        return r->fail_info == OSSL_CMP_PKIFAILUREINFO_systemUnavail ? GW_ERR_FORBIDDEN : CMP_SHARE_RELOADED;
    if (ok)
        return 0;
    if (c->pbm_gone)
        return GW_ERR_NOT_FOUND;
    cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s", TEXT_PINNED_SIGNER);
    return GW_ERR_FORBIDDEN;
}

/*
 * Whether |c| comes from the sender of the transaction of |rec| (its request's header |rh|) over its TLS
 * client: 0, or CMP_SHARE_OTHER_CLIENT refused with |r| as cmp_check_pinned refuses; one naming a PBM
 * reference a reload deleted GW_ERR_FORBIDDEN, as check_signer refuses it (naming one holds no transaction
 * hostage).
 */
static int from_its_client(struct cmp_call *c, const struct gw_txn_record *rec, const struct gw_hdr_info *rh,
                           struct cmp_refusal *r)
{
    if (!cmp_sender_is(&c->hdr, rh->protection_nid == NID_id_PasswordBasedMAC, rh->sender_kid,
                       rh->sender_kid_len, rh->sender))
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "%s", TEXT_OTHER_SENDER);
    else if (cmp_check_tls_client(c, rec->tls_client, r) == 0)
        return 0;
    if (!c->pbm_gone)
        return CMP_SHARE_OTHER_CLIENT;
    cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s", TEXT_PBM_FAILED);
    return GW_ERR_FORBIDDEN;
}

static int out_of_memory(struct cmp_refusal *r)
{
    cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure, "internal error: out of memory");
    return GW_ERR_FORBIDDEN;
}

/*
 * cmp_check_path for the transaction of |rec|, its request |req|: 1, refused with |r|. A certProfile
 * that does not read is its replay's to refuse.
 */
static int on_other_path(struct cmp_call *c, const OSSL_CMP_MSG *req, const struct gw_txn_record *rec,
                         struct cmp_refusal *r)
{
    char profile[GW_MAX_PROFILE_NAME_LEN + 1];

    return gw_shim_cert_profile(req, profile, sizeof(profile)) == 0 &&
           cmp_check_path(c, c->e, rec->role, profile, r) != 0;
}

/*
 * 0 when |msg| (of |c|) can pass the checks of the sender, TLS client and pinned signer of the
 * transaction of |rec| as far as its request tells (check_protection), comes on a path of its role
 * (on_other_path, before a refusal of a reload closes it, as check_continuing comes first), and answers the
 * last answer its client got (the record's senderNonce: a captured message replayed here does not), or when
 * the request cannot tell (it does not decode, or its role is not here and the record binds no TLS client:
 * its replay fails); CMP_SHARE_RELOADED or GW_ERR_NOT_FOUND as check_protection says, the senderNonce
 * answered as well; CMP_SHARE_OTHER_CLIENT as from_its_client says; else GW_ERR_FORBIDDEN, refused with
 * |r| as check_continuing refuses. The sender
 * and TLS client first, before the costly signature check.
 */
static int vouched(struct cmp_call *c, const OSSL_CMP_MSG *msg, const struct gw_txn_record *rec,
                   struct cmp_refusal *r)
{
    const unsigned char *p = rec->req;
    OSSL_CMP_MSG *req = d2i_OSSL_CMP_MSG(NULL, &p, (long)rec->req_len);
    const struct gw_role *role = cmp_role_named(c->e, rec->role);
    struct gw_hdr_info rh = {0};
    struct cmp_txn *t = NULL;
    int rc = 0;

    if (req == NULL || (role == NULL && !bound(rec)) || gw_shim_hdr_info(req, &rh) != 0)
        ; /* it cannot tell: its replay fails */
    else if ((rc = from_its_client(c, rec, &rh, r)) != 0)
        ;                                               /* refused and logged */
    else if ((t = cmp_txn_new(c, c->pbm_gone)) == NULL) /* without a reference, no secret to set */
        rc = out_of_memory(r);
    else if ((rc = check_protection(c, t, role, msg, req, rec, &rh, r)) != 0 && rc != CMP_SHARE_RELOADED)
        ; /* refused, or as if there were none */
    else if (on_other_path(c, req, rec, r))
        rc = GW_ERR_FORBIDDEN;
    else if (!cmp_txn_set_nonce(t, rec->nonce, rec->nonce_len))
        rc = out_of_memory(r);
    else if (cmp_check_nonce(t, msg, r) != 0)
        rc = GW_ERR_FORBIDDEN;
    cmp_txn_free(t);
    gw_shim_hdr_info_cleanup(&rh);
    OSSL_CMP_MSG_free(req);
    ERR_clear_error();
    return rc;
}

/*
 * The certificate of |rec|: the one its client got (*collected: issued at once, or taken by a pollReq
 * on any instance, whose answer rewrote the record), else a deferred request's result beside it that
 * nobody collected. NULL if none, or if it does not decode.
 */
static X509 *record_cert(const struct gw_txn_record *rec, int *collected)
{
    const unsigned char *p = (*collected = rec->cert_len > 0) ? rec->cert : rec->result.cert;
    size_t len = *collected ? rec->cert_len : rec->result.cert_len;

    return len > 0 ? d2i_X509(NULL, &p, (long)len) : NULL;
}

/*
 * The upstream of |e| that withdraws |cert| of |rec| (cmp_share_upstream): the record's own if its CA
 * signed it, else any whose CA did.
 */
static struct gw_upstream *withdrawer(const struct gw_cmp_engine *e, const struct gw_txn_record *rec,
                                      X509 *cert)
{
    return cmp_status_withdrawer(e, gw_upstream_set_get0(e->ups, rec->upstream), cert);
}

struct gw_upstream *cmp_share_upstream(const struct gw_cmp_engine *e, const struct gw_txn_record *rec)
{
    int collected;
    X509 *cert = record_cert(rec, &collected);
    struct gw_upstream *up = withdrawer(e, rec, cert);

    X509_free(cert);
    return up;
}

/*
 * The audit view of the transaction of |rec| from its request: who sent it, as cmp_identify names a
 * transaction's sender, its share of the caps, its body type.
 */
static void record_view(struct cmp_txn *v, const struct gw_txn_record *rec)
{
    const unsigned char *p = rec->req;
    OSSL_CMP_MSG *req = d2i_OSSL_CMP_MSG(NULL, &p, (long)rec->req_len);
    struct gw_hdr_info rh = {0};

    if (req == NULL || gw_shim_hdr_info(req, &rh) != 0)
        snprintf(v->identity, sizeof(v->identity), "unknown");
    else
        cmp_identity_of(v->identity, rh.protection_nid == NID_id_PasswordBasedMAC, rh.sender_kid,
                        rh.sender_kid_len, rh.sender);
    if (req != NULL)
        snprintf(v->body, sizeof(v->body), "%s", gw_shim_body_name(OSSL_CMP_MSG_get_bodytype(req)));
    cmp_quota_key(v->quota, v->identity, rec->tls_client);
    gw_shim_hdr_info_cleanup(&rh);
    OSSL_CMP_MSG_free(req);
}

/*
 * The transaction of |rec|, leased here, closed for its own message, which the running configuration
 * refused with |r| (CMP_SHARE_RELOADED), as continue_txn closes one cmp_check_current refused: the
 * record ended on every instance first, then the certificate its client got (or a deferred request's
 * result nobody collected, or one that went with the record's end) on record and withdrawn through the
 * upstream whose CA issued it. Its own error message (CMP_SHARE_ABORTED) closes it as abort_txn does,
 * whatever the running configuration says of its sender: a single gateway holds no error message to it,
 * the transaction ends either way.
 */
static int close_reloaded(struct cmp_call *c, const struct gw_txn_record *rec, const struct cmp_refusal *r)
{
    struct cmp_txn view = {.role = cmp_role_named(c->e, rec->role)};
    bool aborted = c->body == GW_CMP_BODY_ERROR;
    const char *status;
    struct gw_txn_result left;
    int collected;
    X509 *cert = record_cert(rec, &collected);

    record_view(&view, rec);
    cmp_release_slot(c->e, c->hdr.tid, c->hdr.tid_len, rec->holder, view.quota, &left);
    /* none when this instance took the record: one the call's instance put beside it since went with it,
       and nobody received it (cmp_poll_withdraw_left) */
    if (cert == NULL && !collected && left.cert_len > 0)
        cert = gw_x509_d2i_exact(left.cert, (long)left.cert_len);
    else if (cert == NULL && !collected) /* the end's answers lost: what it took is read back later */
        cmp_poll_reread_later(c->e, &view, rec->upstream, c->rsp->tid, &left, aborted);
    gw_txn_result_cleanup(&left);
    snprintf(c->rsp->identity, sizeof(c->rsp->identity), "%s", view.identity);
    snprintf(view.route, sizeof(view.route), "%s", c->route);
    snprintf(view.tls_subject, sizeof(view.tls_subject), "%s", c->tls_subject);
    if (cert != NULL)
        gw_x509_cert_serial_hex(cert, view.serial, sizeof(view.serial));
    if (aborted) {
        gw_log_kv(GW_LOG_INFO, "txn_aborted_by_client", "tid", c->rsp->tid, "identity", view.identity,
                  "serial", view.serial, "msg",
                  "begun on another instance, whose request this one's configuration refuses", NULL);
    } else {
        cmp_set_outcome(c, "error", r);
        gw_log_kv(GW_LOG_INFO, "txn_closed", "tid", c->rsp->tid, "identity", view.identity, "serial",
                  view.serial, "outcome", c->rsp->outcome, "msg",
                  "begun on another instance; refused by this one's configuration", NULL);
    }
    if (cert == NULL)
        return aborted ? CMP_SHARE_ABORTED : CMP_SHARE_RELOADED;
    if (!collected)
        status = aborted ? "the client aborted the transaction before a pollReq collected it"
                         : "no pollReq collected it before its transaction closed";
    else
        status = aborted ? "the client aborted the transaction with an error message" : c->rsp->outcome;
    view.up = withdrawer(c->e, rec, cert);
    (void)cmp_audit_cert(c->e, &view, c->rsp->tid,
                         !collected ? "expired_undelivered"
                         : aborted  ? "rejected_by_client"
                                    : "rejected",
                         status, cert, 1);
    cmp_withdraw(c->e, &view, c->rsp->tid, cert, CRL_REASON_CESSATION_OF_OPERATION);
    X509_free(cert);
    return aborted ? CMP_SHARE_ABORTED : CMP_SHARE_RELOADED;
}

int cmp_share_refused(struct cmp_call *c, int rc, const char *err, struct cmp_refusal *r)
{
    char held[GW_LOG_HELD_LEN];

    if (rc == GW_ERR_BUSY)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_TXN_BUSY);
    if (rc != GW_ERR_UNAVAILABLE)
        return 0;
    if (gw_cluster_unavailable_due(c->e->cluster, held)) /* paced: every request meets an outage */
        gw_log_kv(GW_LOG_ERROR, "shared_state_unavailable", "tid", c->rsp->tid, "reason", err, "suppressed",
                  held, NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      "the gateway cannot reach its cluster to answer this transaction; retry later");
}

int cmp_share_take(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct gw_txn_record *rec,
                   struct cmp_refusal *r, char *err)
{
    int rc = gw_cluster_read_record(c->e->cluster, c->hdr.tid, c->hdr.tid_len, rec, err), taken;
    unsigned step = 0;

    if (rc == 0 && cmp_take_extra_certs(c, msg) != 0) {
        gw_txn_record_cleanup(rec);
        return CMP_SHARE_NOT_DER;
    }
    if (rc == 0) {
        step = rec->step;
        rc = vouched(c, msg, rec, r);
        gw_txn_record_cleanup(rec);
    }
    if (rc != 0 && rc != CMP_SHARE_RELOADED)
        return rc;
    if ((taken = gw_cluster_take_record(c->e->cluster, c->hdr.tid, c->hdr.tid_len, rec, err)) != 0 ||
        rc == 0) {
        if (taken == GW_ERR_TIMEOUT)
            r->fail_info = -1; /* expired since it was read: no transaction is left to refuse for */
        return taken;
    }
    /* only the senderNonce |msg| answered may close it: another instance answered it since */
    if (rec->step != step) {
        gw_txn_record_cleanup(rec);
        gw_cluster_unlease(c->e->cluster, c->hdr.tid, c->hdr.tid_len);
        return GW_ERR_BUSY;
    }
    if ((rc = close_reloaded(c, rec, r)) == CMP_SHARE_ABORTED)
        r->fail_info = -1; /* closed as its client asked: nothing is refused */
    gw_txn_record_cleanup(rec);
    return rc;
}

/* The expiry of |t|, rebuilt from its record |rec|: as log_closed and cmp_poll_closed would record it. */
void cmp_share_expired(struct gw_cmp_engine *e, struct cmp_txn *t, const char *tid,
                       const struct gw_txn_record *rec)
{
    if (t->issued != NULL) {
        gw_log_kv(GW_LOG_WARN, "txn_expired", "tid", tid, "identity", t->identity, "serial", t->serial, "msg",
                  "certificate issued but never confirmed; it stays valid", NULL);
        (void)cmp_audit_cert(
            e, t, tid, "expired_unconfirmed",
            rec->requested_at != 0
                ? "no certConf within the transaction TTL"
                : "no certConf within the transaction TTL (the instance that issued it is gone)",
            t->issued, 0);
        return;
    }
    if (!cmp_poll_withdraw_uncollected(e, t, tid, "txn_expired_pending", 0))
        gw_log_kv(GW_LOG_INFO, "txn_expired_pending", "tid", tid, "identity", t->identity, "msg",
                  rec->result.present ? "closed with nothing issued"
                                      : "closed without a result from its upstream call; a certificate it "
                                        "returned would be on the audit log of the instance that made it",
                  NULL);
}

void cmp_share_unreplayed(struct gw_cmp_engine *e, const char *tid, const struct gw_txn_record *rec)
{
    int collected;
    X509 *cert = record_cert(rec, &collected);
    struct cmp_txn view = {.up = NULL};

    if (cert != NULL)
        gw_x509_cert_serial_hex(cert, view.serial, sizeof(view.serial));
    if (cert == NULL || collected) {
        gw_log_kv(GW_LOG_ERROR, "txn_expiry_unrecorded", "tid", tid, "role", rec->role, "serial",
                  cert != NULL ? view.serial : "?", "msg",
                  "an expired shared transaction could not be replayed here; its \"issued\" record stands",
                  NULL);
        X509_free(cert);
        return;
    }
    view.up = withdrawer(e, rec, cert);
    gw_log_kv(
        GW_LOG_WARN, "txn_expired_pending", "tid", tid, "role", rec->role, "serial", view.serial, "msg",
        "certificate issued but never collected by a pollReq; withdrawn (its role is not replayed here)",
        NULL);
    (void)cmp_audit_cert(e, &view, tid, "expired_undelivered",
                         "no pollReq collected it before its transaction closed", cert, 1);
    cmp_withdraw(e, &view, tid, cert, CRL_REASON_CESSATION_OF_OPERATION);
    X509_free(cert);
}
