/*
 * One OSSL_CMP_SRV_CTX per transaction (docs/design.md, OpenSSL 3.0 §6) and its callbacks. The
 * callbacks run inside OSSL_CMP_SRV_process_request, only after OpenSSL verified the protection
 * (and, for certificate requests, the POPO); they do what 3.0 leaves to the application (§3).
 */
#include "gateway/cmp/cmp_local.h"
#include "base/err.h"
#include "base/log.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/profile.h"
#include "upstream/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/cmperr.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define TEXT_TID_IN_USE "transactionID already in use: start a new transaction with a fresh transactionID"

/* The request whose OpenSSL diagnostics the log callback records: the callback has no argument. */
static _Thread_local struct cmp_call *capture;

/* OpenSSL's diagnostics go to the debug log, never to stdout; the first error is kept for the outcome. */
static int log_cb(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
    (void)func;
    (void)file;
    (void)line;
    if (capture != NULL && level <= OSSL_CMP_LOG_ERR && capture->diag[0] == '\0')
        snprintf(capture->diag, sizeof(capture->diag), "%s", msg);
    gw_log(GW_LOG_DEBUG, "openssl_cmp", "%s", msg);
    return 1;
}

void cmp_log_capture_begin(struct cmp_call *c)
{
    capture = c;
}

void cmp_log_capture_end(void)
{
    capture = NULL;
}

/* RFC 9483 §3.1: messageTime lets the receiver bound replays; 3.0 never looks at it. */
static int check_time(struct cmp_call *c, struct cmp_refusal *r)
{
    const struct gw_cmp_conf *cc = c->e->cfg.cmp;
    long long off;

    if (!c->hdr.has_message_time) {
        if (!cc->require_message_time)
            return 0;
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badTime,
                          "messageTime is missing: this server requires it");
    }
    off = (long long)c->hdr.message_time - (long long)c->now;
    if (cc->message_time_window == 0 || llabs(off) <= (long long)cc->message_time_window)
        return 0;
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badTime,
                      "messageTime is %lld s off the server clock; check the device clock (allowed: ±%u s)",
                      off, cc->message_time_window);
}

/* RFC 9483 §3.6.4: a transactionID seen before answers transactionIdInUse. */
static int check_replay(struct cmp_call *c, struct cmp_refusal *r)
{
    int rc = gw_replay_check_add(c->e->replay, c->hdr.tid, c->hdr.tid_len, c->hdr.sender_nonce,
                                 c->hdr.sender_nonce_len, c->rsp->identity, c->now);

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
    default:
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "transactionID or senderNonce too long");
    }
}

/* Who sent the request: the authenticated signer's subject (cmp_auth.c), or "pbm:<ref>". */
static void identify(struct cmp_txn *t, struct cmp_call *c)
{
    const X509_NAME *name = t->signer != NULL ? X509_get_subject_name(t->signer) : NULL;

    if (t->pbm) {
        snprintf(t->identity, sizeof(t->identity), "pbm:%.*s", (int)t->kid_len, (const char *)t->kid);
        snprintf(t->pbm_ref, sizeof(t->pbm_ref), "%.*s", (int)t->kid_len, (const char *)t->kid);
    } else if (name == NULL || X509_NAME_oneline(name, t->identity, sizeof(t->identity)) == NULL) {
        snprintf(t->identity, sizeof(t->identity), "unknown");
    }
    snprintf(c->rsp->identity, sizeof(c->rsp->identity), "%s", t->identity);
}

/* docs/design.md, decision 7: kur only by the holder of the certificate being updated. */
static int check_kur(struct cmp_txn *t, struct cmp_call *c, const OSSL_CRMF_MSG *crm, struct cmp_refusal *r)
{
    const OSSL_CRMF_CERTID *old;
    const X509_NAME *issuer;
    const ASN1_INTEGER *serial;

    if (c->body != GW_CMP_BODY_KUR)
        return 0;
    if (t->pbm || t->signer == NULL)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                          "key update must be signed with the certificate being updated, not PBM-protected");
    if (crm == NULL || (old = OSSL_CRMF_MSG_get0_regCtrl_oldCertID(crm)) == NULL)
        return 0; /* RFC 9483 §4.1.3: without oldCertID the signer's certificate is the one updated */
    issuer = OSSL_CRMF_CERTID_get0_issuer(old);
    serial = OSSL_CRMF_CERTID_get0_serialNumber(old);
    if (issuer != NULL && serial != NULL && X509_NAME_cmp(issuer, X509_get_issuer_name(t->signer)) == 0 &&
        ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(t->signer)) == 0)
        return 0;
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                      "key update must be signed with the certificate it updates; "
                      "oldCertID names another certificate");
}

int cmp_check_request(struct cmp_txn *t, struct cmp_call *c, struct cmp_refusal *r)
{
    identify(t, c);
    return cmp_check_credentials(c, t, r) || cmp_authorize(c, t, r) || check_time(c, r) || check_replay(c, r);
}

/* Holds a table slot before the upstream call, so an issued certificate can always be parked. */
static int reserve(struct cmp_txn *t, struct cmp_call *c, struct cmp_refusal *r)
{
    int rc = gw_txn_reserve(c->e->txns, c->hdr.tid, c->hdr.tid_len, t->identity);

    if (rc == 0) {
        c->reserved = 1;
        return 0;
    }
    if (rc == GW_ERR_EXISTS)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_transactionIdInUse, "%s", TEXT_TID_IN_USE);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      "too many open transactions for %.150s: confirm or wait for them to expire",
                      t->identity);
}

static enum gw_req_kind req_kind(int body)
{
    switch (body) {
    case GW_CMP_BODY_CR:
        return GW_REQ_CR;
    case GW_CMP_BODY_KUR:
        return GW_REQ_KUR;
    case GW_CMP_BODY_P10CR:
        return GW_REQ_P10CR;
    default:
        return GW_REQ_IR;
    }
}

#define TEXT_AUDIT_DOWN "the audit log cannot be written; nothing was issued"
#define TEXT_AUDIT_LOST "the audit log cannot be written; the certificate was not released"

/* One certificate request on its way through policy, upstream and checks. */
struct issuing {
    struct gw_cert_req creq;
    struct gw_cert_plan plan;
    struct gw_sign_result res;
    const X509_REQ *p10cr;
};

/* Keeps our reference to the issued certificate (for certConf) and hands OpenSSL its own. */
static OSSL_CMP_PKISI *accept_cert(struct cmp_txn *t, struct cmp_call *c, struct gw_sign_result *res,
                                   int modified, X509 **certOut, STACK_OF(X509) **chainOut)
{
    const char *status = modified ? "grantedWithMods" : "accepted";
    OSSL_CMP_PKISI *si = OSSL_CMP_STATUSINFO_new(
        modified ? OSSL_CMP_PKISTATUS_grantedWithMods : OSSL_CMP_PKISTATUS_accepted, 0, NULL);

    if (si == NULL || X509_up_ref(res->cert) != 1) {
        OSSL_CMP_PKISI_free(si);
        si = cmp_reject(c, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_systemFailure,
                                                 "internal error: the certificate was not released"});
        cmp_withdraw(c->e, t, c->rsp->tid, res->cert, CRL_REASON_CESSATION_OF_OPERATION);
        return si;
    }
    t->issued = res->cert; /* ours; OpenSSL gets the result's reference below */
    /* docs/design.md, decision 8: on disk before the response that carries the certificate leaves
     * (a deferred request's completion wrote it already: cmp_poll.c) */
    c->audited = 1;
    if (!t->on_record && cmp_audit_cert(c->e, t, c->rsp->tid, "issued", status, t->issued, 1) != 0) {
        OSSL_CMP_PKISI_free(si);
        si = cmp_reject(c, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_AUDIT_LOST});
        cmp_withdraw(c->e, t, c->rsp->tid, t->issued, CRL_REASON_CESSATION_OF_OPERATION);
        X509_free(t->issued);
        t->issued = NULL;
        return si;
    }
    *certOut = res->cert;
    *chainOut = res->chain;
    res->cert = NULL;
    res->chain = NULL;
    snprintf(c->rsp->serial, sizeof(c->rsp->serial), "%s", t->serial);
    cmp_set_outcome(c, status, NULL);
    gw_log_kv(GW_LOG_INFO, "cert_issued", "tid", c->rsp->tid, "identity", t->identity, "serial", t->serial,
              "role", t->role->name, "upstream", cmp_upstream_name(t->up), NULL);
    return si;
}

/* A certificate the client will not get: on record with its serial, then withdrawn. */
static OSSL_CMP_PKISI *refuse_cert(struct cmp_txn *t, struct cmp_call *c, X509 *cert,
                                   const struct cmp_refusal *r)
{
    OSSL_CMP_PKISI *si = cmp_reject(c, r);

    c->audited = 1;
    (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected", c->rsp->outcome, cert, 1);
    cmp_withdraw(c->e, t, c->rsp->tid, cert, CRL_REASON_UNSPECIFIED);
    t->serial[0] = '\0';
    return si;
}

/*
 * What the upstream returned is checked before it reaches the client. A certificate
 * that does not certify the requested key or does not chain to the route's CA is the CA's fault,
 * not the request's: systemFailure (RFC 9810 §5.2.3), as the client can change nothing to fix it.
 * Names, usages, extensions or validity outside the role's policy are badCertTemplate: the content
 * is what is refused, whether the CA derived it from the request (a CN copied into the SANs, a CSR's
 * usages copied verbatim) or its own role added it (the statusString names what to narrow).
 */
static OSSL_CMP_PKISI *deliver(struct cmp_txn *t, struct cmp_call *c, const struct gw_cert_plan *plan,
                               struct gw_sign_result *res, X509 **certOut, STACK_OF(X509) **chainOut)
{
    X509_STORE *store = cmp_issuer_store(c->e, t->up);
    char err[GW_ERR_LEN] = "";
    struct cmp_refusal r;
    enum gw_issued_verdict v = GW_ISSUED_BAD;

    gw_x509_cert_serial_hex(res->cert, t->serial, sizeof(t->serial));
    if (store == NULL)
        snprintf(err, sizeof(err), "no issuer CA is configured to check it against");
    else
        v = gw_policy_check_issued(t->role, plan, res->cert, res->chain, store, c->now, err);
    switch (v) {
    case GW_ISSUED_OK:
    case GW_ISSUED_MODIFIED:
        return accept_cert(t, c, res, v == GW_ISSUED_MODIFIED || plan->modified || res->modified, certOut,
                           chainOut);
    case GW_ISSUED_OUTSIDE_POLICY:
        cmp_refuse(&r, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                   "the CA issued a certificate outside this route's policy (%.170s); it was not released",
                   err);
        return refuse_cert(t, c, res->cert, &r);
    default:
        cmp_refuse(&r, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                   "the CA returned an unusable certificate (%.170s); it was not released", err);
        return refuse_cert(t, c, res->cert, &r);
    }
}

/* The request as the role shapes it, then the role's request policy. */
static int plan_request(struct cmp_txn *t, struct cmp_call *c, const OSSL_CRMF_MSG *crm, struct issuing *is,
                        struct cmp_refusal *r)
{
    int rc = is->p10cr != NULL ? gw_cert_req_from_p10(is->p10cr, &is->creq, r->text)
                               : gw_cert_req_from_crmf(req_kind(c->body), crm, &is->creq, r->text);

    r->fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
    if (rc != 0)
        return 1;
    /* 3GPP TS 33.310 §9.5.4.2: the template subject is optional; the vendor certificate names the device */
    if (t->role->subject_from_signer && gw_cert_req_subject_from(&is->creq, t->pbm ? NULL : t->signer) != 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure, "out of memory");
    if (gw_cert_plan_make(t->role, &is->creq, c->now, &is->plan, &r->fail_info, r->text) != 0)
        return 1;
    r->fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
    return gw_policy_check_request(t->role, &is->plan, &r->fail_info, r->text) != 0;
}

/* An upstream answer without a certificate: refused with the upstream's failInfo and reason. */
static int sign_refused(const struct gw_sign_result *res, struct cmp_refusal *r)
{
    if (res->status == 0 && res->cert != NULL)
        return 0;
    return cmp_refuse(r, res->status != 0 ? res->fail_info : OSSL_CMP_PKIFAILUREINFO_systemFailure, "%s",
                      res->reason[0] != '\0' ? res->reason : "the upstream CA issued no certificate");
}

/* The intent goes on record before the upstream is asked: no record, no certificate. */
static int audit_intent(struct cmp_txn *t, struct cmp_call *c, const struct issuing *is)
{
    struct gw_audit_rec r;

    cmp_audit_rec_init(&r, t, c->rsp->tid, "intent", NULL);
    r.subject = is->plan.subject;
    r.sans = is->plan.sans;
    r.pubkey = is->plan.pubkey;
    r.csr = is->p10cr;
    return cmp_audit_write(c->e, &r, 0);
}

/* poll_after: the call runs on; the transaction keeps what a release needs (docs/design.md, OpenSSL 3.0 §7).
 */
static OSSL_CMP_PKISI *defer(struct cmp_txn *t, struct cmp_call *c, struct issuing *is)
{
    struct gw_audit_rec r;

    *t->plan = is->plan; /* moved */
    gw_cert_plan_init(&is->plan);
    cmp_set_outcome(c, "waiting", NULL);
    c->audited = 1;
    cmp_audit_rec_init(&r, t, c->rsp->tid, "waiting",
                       "the upstream CA is slower than poll_after; the client polls");
    (void)cmp_audit_write(c->e, &r, 0);
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_waiting, 0, NULL);
}

/* Asks the upstream: blocking up to its timeout, or, with poll_after, maybe deferred. 1 if deferred. */
static int sign(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *req, struct issuing *is)
{
    struct gw_sign_req sreq = {
        .role = t->role, .plan = &is->plan, .csr = is->p10cr, .request_id = c->rsp->tid};

    if (t->role->poll_after_ms == 0) {
        gw_upstream_sign_wait(t->up, &sreq, &is->res);
        return 0;
    }
    if ((t->request = OSSL_CMP_MSG_dup(req)) == NULL || (t->plan = calloc(1, sizeof(*t->plan))) == NULL) {
        gw_upstream_refusal(t->up, GW_ERR_NOMEM, &is->res);
        return 0;
    }
    gw_cert_plan_init(t->plan);
    return cmp_poll_sign(t, c, &sreq, &is->res);
}

/* Maps the request onto the role, picks the upstream, asks it to sign, checks the result (worker). */
static OSSL_CMP_PKISI *issue(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *req,
                             const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
                             STACK_OF(X509) **chainOut)
{
    struct issuing is = {.p10cr = p10cr};
    OSSL_CMP_PKISI *si;
    struct cmp_refusal r;

    gw_cert_req_init(&is.creq);
    gw_cert_plan_init(&is.plan);
    gw_sign_result_init(&is.res);
    if (plan_request(t, c, crm, &is, &r) != 0 || cmp_pick_upstream(c, t, &is.plan, p10cr, &t->up, &r) != 0)
        si = cmp_reject(c, &r);
    else if (audit_intent(t, c, &is) != 0)
        si = cmp_reject(c, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_AUDIT_DOWN});
    else if (sign(t, c, req, &is) == 1)
        si = defer(t, c, &is);
    else if (sign_refused(&is.res, &r))
        si = cmp_reject(c, &r);
    else
        si = deliver(t, c, &is.plan, &is.res, certOut, chainOut);
    gw_sign_result_cleanup(&is.res);
    gw_cert_plan_cleanup(&is.plan);
    gw_cert_req_cleanup(&is.creq);
    return si;
}

/* The checks in order: who asks (authorization first), then protocol, then the old certificate. */
static OSSL_CMP_PKISI *decide(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *req,
                              const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
                              STACK_OF(X509) **chainOut)
{
    struct cmp_refusal r;

    if (cmp_check_request(t, c, &r) != 0 || cmp_check_3gpp(c, t, crm, p10cr, &r) != 0 ||
        check_kur(t, c, crm, &r) != 0 || reserve(t, c, &r) != 0)
        return cmp_reject(c, &r);
    return issue(t, c, req, crm, p10cr, certOut, chainOut);
}

/* pollReq found the deferred result: OpenSSL re-runs the callback on the stored request (§7). */
static OSSL_CMP_PKISI *release(struct cmp_txn *t, struct cmp_call *c, X509 **certOut,
                               STACK_OF(X509) **chainOut)
{
    struct gw_sign_result res;
    struct cmp_refusal r;
    OSSL_CMP_PKISI *si;

    t->release = 0;
    if (!cmp_poll_take(t->pending, &res, &t->on_record))
        return cmp_reject(c, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badRequest,
                                                   "the result of this transaction was already sent"});
    if (sign_refused(&res, &r)) {
        si = cmp_reject(c, &r);
    } else if (!t->on_record) { /* the completion could not write the "issued" record */
        gw_x509_cert_serial_hex(res.cert, t->serial, sizeof(t->serial));
        si = refuse_cert(t, c, res.cert,
                         &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_AUDIT_LOST});
    } else {
        si = deliver(t, c, t->plan, &res, certOut, chainOut);
        c->released = *certOut != NULL;
    }
    gw_sign_result_cleanup(&res);
    return si;
}

static OSSL_CMP_PKISI *cert_request_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                                       const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
                                       STACK_OF(X509) **chainOut, STACK_OF(X509) **caPubs)
{
    struct cmp_txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
    struct cmp_call *c = t->call;
    OSSL_CMP_PKISI *si;

    (void)certReqId;
    si = t->release ? release(t, c, certOut, chainOut) : decide(t, c, req, crm, p10cr, certOut, chainOut);
    /* RFC 9810 §5.3.2, TS 33.310 §9.5.4.3: the operator root for the device; OpenSSL sends it in ip only */
    if (*certOut != NULL && t->role->ca_pubs != NULL &&
        (*caPubs = X509_chain_up_ref(t->role->ca_pubs)) == NULL)
        gw_log_kv(GW_LOG_WARN, "ca_pubs_dropped", "tid", c->rsp->tid, "reason", "out of memory", NULL);
    /* every outcome of an authenticated request is on record, refusals included */
    cmp_audit_refusal(c, t);
    return si;
}

static int certconf_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                       const ASN1_OCTET_STRING *certHash, const OSSL_CMP_PKISI *si)
{
    struct cmp_txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
    struct cmp_call *c = t->call;
    ASN1_OCTET_STRING *digest = t->issued != NULL ? X509_digest_sig(t->issued, NULL, NULL) : NULL;
    int match = digest != NULL && certHash != NULL && ASN1_OCTET_STRING_cmp(digest, certHash) == 0;

    (void)req;
    (void)certReqId;
    ASN1_OCTET_STRING_free(digest);
    /*
     * badCertId: "no certificate could be found matching the provided criteria" (RFC 9810 §5.2.3).
     * The certHash is how a certConf names the certificate it confirms; a hash of anything other
     * than what this transaction issued names a certificate this transaction does not know.
     */
    if (!match) {
        c->confirm = CMP_CONFIRM_FAILED;
        return cmp_fail(c, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badCertId,
                                                 "certHash does not match the certificate issued in this "
                                                 "transaction"});
    }
    if (si != NULL && gw_shim_pkisi_status(si) == OSSL_CMP_PKISTATUS_rejection) {
        c->confirm = CMP_CONFIRM_REJECTED; /* the engine revokes it once the answer is built */
        cmp_set_outcome(c, "cert_rejected_by_client", NULL);
        return 1;
    }
    c->confirm = CMP_CONFIRM_ACCEPTED;
    cmp_set_outcome(c, "confirmed", NULL);
    return 1;
}

static int pollreq_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId, OSSL_CMP_MSG **certReq,
                      int64_t *check_after)
{
    struct cmp_txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);

    (void)req;
    (void)certReqId;
    *certReq = NULL;
    *check_after = 0;
    if (t->pending == NULL || t->issued != NULL)
        return cmp_fail(t->call,
                        &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badRequest, "nothing to poll for"});
    if (!cmp_poll_ready(t->pending, check_after)) {
        cmp_set_outcome(t->call, "waiting", NULL); /* pollRep with checkAfter */
        return 1;
    }
    /* OpenSSL re-runs the cert-request callback on it (docs/design.md, OpenSSL 3.0 §7): that delivers the
     * result */
    if ((*certReq = OSSL_CMP_MSG_dup(t->request)) == NULL)
        return cmp_fail(t->call,
                        &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_systemFailure, "out of memory"});
    t->release = 1;
    return 1;
}

static void error_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const OSSL_CMP_PKISI *si,
                     const ASN1_INTEGER *errorCode, const OSSL_CMP_PKIFREETEXT *errDetails)
{
    struct cmp_txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
    char buf[GW_ERR_LEN];

    (void)req;
    (void)errorCode;
    (void)errDetails;
    if (OSSL_CMP_snprint_PKIStatusInfo(si, buf, sizeof(buf)) == NULL)
        snprintf(buf, sizeof(buf), "unreadable PKIStatusInfo");
    gw_log_kv(GW_LOG_INFO, "client_error", "tid", t->call->rsp->tid, "status", buf, NULL);
    cmp_set_outcome(t->call, "client_error", NULL);
}

/*
 * OSSL_CMP_CTX_build_cert_chain leaves a self-signed root out of the signer chain (X509_build_chain
 * with_self_signed 0), yet TS 33.310 §9.5.4.3 wants the operator root in ip extraCerts: the
 * configured roots go in as extraCertsOut (OpenSSL drops duplicates). 1 on success.
 */
static int add_signer_roots(OSSL_CMP_CTX *ctx, STACK_OF(X509) *chain)
{
    STACK_OF(X509) *roots = NULL;
    int ok = 1;

    for (int i = 0; ok && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);

        if ((X509_get_extension_flags(x) & EXFLAG_SS) == 0)
            continue;
        ok = (roots != NULL || (roots = sk_X509_new_null()) != NULL) && sk_X509_push(roots, x) > 0;
    }
    if (ok && roots != NULL)
        ok = OSSL_CMP_CTX_set1_extraCertsOut(ctx, roots) == 1;
    sk_X509_free(roots);
    return ok;
}

/* Signer, chain and policy switches shared by every context (§5). 1 on success. */
static int setup_common(struct cmp_txn *t, const struct gw_signer_conf *signer)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
    STACK_OF(X509) *chain = signer->chain;

    return OSSL_CMP_SRV_CTX_init(t->srv, t, cert_request_cb, cmp_rr_cb, cmp_genm_cb, error_cb, certconf_cb,
                                 pollreq_cb) == 1 &&
           OSSL_CMP_CTX_set_log_cb(ctx, log_cb) == 1 &&
           OSSL_CMP_CTX_set_log_verbosity(ctx, OSSL_CMP_LOG_WARNING) == 1 &&
           OSSL_CMP_CTX_set1_cert(ctx, signer->cert) == 1 && OSSL_CMP_CTX_set1_pkey(ctx, signer->key) == 1 &&
           /* built once here: lazily it would come from ctx->untrusted, i.e. client extraCerts */
           OSSL_CMP_CTX_build_cert_chain(ctx, NULL, sk_X509_num(chain) > 0 ? chain : NULL) == 1 &&
           add_signer_roots(ctx, chain) &&
           OSSL_CMP_SRV_CTX_set_grant_implicit_confirm(t->srv,
                                                       t->role != NULL && t->role->implicit_confirm) == 1 &&
           OSSL_CMP_SRV_CTX_set_accept_raverified(t->srv, 0) == 1 &&
           OSSL_CMP_SRV_CTX_set_accept_unprotected(t->srv, 0) == 1 &&
           OSSL_CMP_SRV_CTX_set_send_unprotected_errors(t->srv, 0) == 1;
}

/* PBM secret chosen by senderKID, OR the role's trust: never both (docs/design.md, OpenSSL 3.0 §10.1). */
static int setup_protection(struct cmp_txn *t, struct cmp_call *c)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
    const struct gw_pbm_conf *pbm;

    if (c->hdr.protection_nid == NID_id_PasswordBasedMAC) {
        if ((pbm = c->pbm) == NULL)
            return 0;
        t->pbm = 1;
        memcpy(t->kid, c->hdr.sender_kid, c->hdr.sender_kid_len);
        t->kid_len = c->hdr.sender_kid_len;
        return OSSL_CMP_CTX_set1_secretValue(ctx, pbm->secret, (int)pbm->secret_len) == 1 &&
               OSSL_CMP_CTX_set1_referenceValue(ctx, t->kid, (int)t->kid_len) == 1;
    }
    if (t->role->store == NULL)
        return 1; /* no trust: every signature fails, as it should */
    if (X509_STORE_up_ref(t->role->store) != 1)
        return 0;
    if (OSSL_CMP_CTX_set0_trustedStore(ctx, t->role->store) != 1) {
        X509_STORE_free(t->role->store);
        return 0;
    }
    /* never NULL or empty: that leaves ctx->untrusted NULL and breaks the ctx (§10.3) */
    return sk_X509_num(t->role->untrusted) <= 0 || OSSL_CMP_CTX_set1_untrusted(ctx, t->role->untrusted) == 1;
}

struct cmp_txn *cmp_txn_new(struct cmp_call *c, int refusal)
{
    struct cmp_txn *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->role = c->role;
    snprintf(t->route, sizeof(t->route), "%s", c->route);
    snprintf(t->tls_subject, sizeof(t->tls_subject), "%s", c->tls_subject);
    snprintf(t->body, sizeof(t->body), "%s", gw_shim_body_name(c->body));
    if ((t->srv = OSSL_CMP_SRV_CTX_new(NULL, NULL)) == NULL || !setup_common(t, c->e->cfg.signer))
        goto err;
    /* a refusal context has neither trust nor secret: it can never validate anything (§10.1) */
    if (!refusal && (t->role == NULL || !setup_protection(t, c)))
        goto err;
    if (c->hdr.sender != NULL && (t->sender = X509_NAME_dup(c->hdr.sender)) == NULL)
        goto err;
    return t;
err:
    cmp_txn_free(t);
    return NULL;
}

void cmp_txn_free(void *p)
{
    struct cmp_txn *t = p;

    if (t == NULL)
        return;
    OSSL_CMP_SRV_CTX_free(t->srv);
    X509_NAME_free(t->sender);
    X509_free(t->signer);
    X509_free(t->issued);
    cmp_poll_release(t->pending);
    OSSL_CMP_MSG_free(t->request);
    gw_cert_plan_cleanup(t->plan);
    free(t->plan);
    OPENSSL_cleanse(t->kid, sizeof(t->kid));
    OPENSSL_cleanse(t->pbm_ref, sizeof(t->pbm_ref));
    free(t);
}
