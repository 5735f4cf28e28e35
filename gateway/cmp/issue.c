/*
 * Enrolment (ir, cr, p10cr, kur; RFC 9483 §4.1): the cert-request callback. The request passes the
 * checks every request passes (policy.c), the 3GPP ones and kur's, holds a transaction slot, is
 * mapped onto the role's profile and its request policy, goes on record, and goes to the upstream
 * the role chooses (a CSR-only CA gets CRMF only through a delegate), directly or, with poll_after,
 * through poll.c. What comes back is checked before it is released, and is on disk before the
 * response that carries it leaves.
 */
#include "gateway/cmp/issue.h"
#include "gateway/cmp/cert_req.h"
#include "gateway/cmp/cmp_local.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/policy.h"
#include "gateway/cmp/poll.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/suspend.h"
#include "gateway/cmp/txn.h"
#include "base/err.h"
#include "base/log.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/profile.h"
#include "upstream/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/x509v3.h>

/*
 * RFC 9483 §4.1.3: a kur updates a certificate the PKI issued. One that no upstream of the role issued
 * (a vendor's or a bootstrap CA's, which `trust` admits to enrol with) is enrolled with, not renewed,
 * unless the role says "kur_any_signer". Its holder passed every check an ir of it would: say so.
 */
static int check_kur_issued(struct cmp_txn *t, struct cmp_call *c, struct cmp_refusal *r)
{
    if (t->role->kur_any_signer || cmp_signer_issued(c, t))
        return 0;
    return cmp_deny(c, t, "kur_not_issued", r, OSSL_CMP_PKIFAILUREINFO_badCertId,
                    "key update renews a certificate a CA of this route issued, and %.150s's was not: "
                    "enrol with it instead (ir, cr or p10cr)",
                    t->identity);
}

/* docs/design.md D7: kur only by the holder of the certificate being updated, one the PKI issued. */
static int check_kur(struct cmp_txn *t, struct cmp_call *c, const OSSL_CRMF_MSG *crm, struct cmp_refusal *r)
{
    const OSSL_CRMF_CERTID *old;
    const X509_NAME *issuer;
    const ASN1_INTEGER *serial;

    if (c->body != GW_CMP_BODY_KUR)
        return 0;
    if (t->pbm || t->signer == NULL)
        return cmp_deny(c, t, "kur_pbm", r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                        "key update must be signed with the certificate being updated, not PBM-protected");
    if (crm == NULL || (old = OSSL_CRMF_MSG_get0_regCtrl_oldCertID(crm)) == NULL)
        return check_kur_issued(t, c, r); /* RFC 9483 §4.1.3: without oldCertID, the signer's is updated */
    issuer = OSSL_CRMF_CERTID_get0_issuer(old);
    serial = OSSL_CRMF_CERTID_get0_serialNumber(old);
    if (issuer != NULL && serial != NULL && X509_NAME_cmp(issuer, X509_get_issuer_name(t->signer)) == 0 &&
        ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(t->signer)) == 0)
        return check_kur_issued(t, c, r);
    return cmp_deny(c, t, "kur_other_cert", r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                    "key update must be signed with the certificate it updates; "
                    "oldCertID names another certificate");
}

/* The key an ir, cr or kur (c->req_key) or a p10cr (its CSR's) asks to certify, or NULL. */
static EVP_PKEY *requested_key(const struct cmp_call *c, const X509_REQ *p10cr)
{
    if (c->body != GW_CMP_BODY_P10CR)
        return c->req_key;
    return p10cr != NULL ? X509_REQ_get0_pubkey((X509_REQ *)p10cr) : NULL; /* 3.0 takes no const */
}

/* RSA keys, with PSS parameters or without: a modulus and an exponent either way. */
static int is_rsa(const EVP_PKEY *k)
{
    return EVP_PKEY_is_a(k, "RSA") || EVP_PKEY_is_a(k, "RSA-PSS");
}

/*
 * Whether |a| and |b| are one key. EVP_PKEY_eq compares keys, not their encodings (an EC point sent
 * compressed is the same key), but it compares an RSA key's exponent too: (n, 65539) with its own private
 * exponent is another key to it, yet whoever can make it knows n's factors, the key itself. Two RSA keys
 * are one when their moduli are.
 */
static int same_key(const EVP_PKEY *a, const EVP_PKEY *b)
{
    BIGNUM *na = NULL, *nb = NULL;
    int same;

    if (!is_rsa(a) || !is_rsa(b))
        return EVP_PKEY_eq(a, b) == 1;
    same = EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_N, &na) == 1 &&
           EVP_PKEY_get_bn_param(b, OSSL_PKEY_PARAM_RSA_N, &nb) == 1 && BN_cmp(na, nb) == 0;
    BN_free(na);
    BN_free(nb);
    return same;
}

/* The key_reuse refusal after the request it names (check_key_reuse). */
#define KEY_REUSE_TAIL                                                                                       \
    " must certify a new key: the requested public key is the one the signing certificate certifies; "       \
    "generate a new key pair and send its public key"

/*
 * RFC 9483 §4.1.3: a kur brings a new key pair (SHOULD); RFC 9810 §5.3.5 lets an update keep the current
 * key, a practice that "may not be appropriate for some environments". Unless the role allows it, a kur
 * asking for the key its old certificate (the signer, once check_kur passed it) certifies is refused:
 * renewing it would extend a key that may have leaked with that certificate. So is an ir, cr or p10cr
 * signed with a certificate the role issued that asks for that certificate's key: the role trusts its
 * signer, so it would renew the key as a kur would, for a device whose kur was refused. One signed with
 * a certificate the role did not issue (a vendor's) enrols its holder. The keys are compared first: the
 * chain is verified only for a request asking for its signer's key, compared as keys (same_key).
 */
static int check_key_reuse(struct cmp_txn *t, struct cmp_call *c, const X509_REQ *p10cr,
                           struct cmp_refusal *r)
{
    EVP_PKEY *asked = requested_key(c, p10cr);

    if (t->role->key_reuse == GW_KEY_REUSE_ALLOW || t->pbm || t->signer == NULL || asked == NULL ||
        !same_key(asked, X509_get0_pubkey(t->signer)))
        return 0;
    if (c->body == GW_CMP_BODY_KUR)
        return cmp_deny(c, t, "key_reuse", r, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                        "a key update (RFC 9483 §4.1.3)" KEY_REUSE_TAIL);
    if (!cmp_signer_issued(c, t))
        return 0;
    /* the kur's rule, which this gateway holds them to: the text cites no section of their own */
    return cmp_deny(c, t, "key_reuse", r, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                    "a%s %s signed with a certificate a CA of this route issued" KEY_REUSE_TAIL,
                    c->body == GW_CMP_BODY_IR ? "n" : "", gw_shim_body_name(c->body));
}

/*
 * Holds a table slot before the upstream call, so an issued certificate can always be parked; with
 * a shared state, the transactionID is open on every instance and counts against the sender's
 * share of the cap (t->quota) there too.
 */
static int reserve(struct cmp_txn *t, struct cmp_call *c, struct cmp_refusal *r)
{
    char err[GW_ERR_LEN], held[GW_LOG_HELD_LEN];
    int rc = gw_txn_reserve(c->e->txns, c->hdr.tid, c->hdr.tid_len, t->quota);

    if (rc == 0 && c->e->cluster != NULL &&
        (rc = gw_cluster_reserve(c->e->cluster, c->hdr.tid, c->hdr.tid_len, t->quota,
                                 (time_t)c->e->started->transaction_ttl + cmp_poll_extra_ttl(t),
                                 c->e->started->open_per_identity, err)) != 0)
        gw_txn_release(c->e->txns, c->hdr.tid, c->hdr.tid_len);
    if (rc == 0) {
        c->reserved = 1;
        return 0;
    }
    if (rc == GW_ERR_UNAVAILABLE) {
        if (gw_cluster_unavailable_due(c->e->cluster, held)) /* paced: every request meets an outage */
            gw_log_kv(GW_LOG_ERROR, "shared_state_unavailable", "tid", c->rsp->tid, "reason", err,
                      "suppressed", held, NULL);
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "the gateway cannot open this transaction in its cluster now; retry later");
    }
    if (rc == GW_ERR_EXISTS)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_transactionIdInUse, "%s", TEXT_TID_IN_USE);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      "too many open transactions for %.150s: confirm or wait for them to expire",
                      t->identity);
}

/*
 * Each certificate a client rejects (or abandons uncollected) queues its revocation on the engine's one
 * withdrawal thread, which a slow CA drains slowly; a full queue fails every later withdrawal at once,
 * anyone's, leaving those certificates valid. So a share of the caps (t->quota) with more than
 * GW_MAX_WITHDRAWALS_PER_KEY of its own still owed gets no new certificate until they are done: the
 * withdrawals themselves are never refused. Its transactions open meanwhile may add as many again; those
 * past its share of the queue wait outside it (record.c, enqueue), and while GW_MAX_WITHDRAWALS wait
 * there, every share owing any is refused: a share adds to them only past its own share in the queue,
 * and a share owing none, whose first GW_MAX_WITHDRAWALS_PER_KEY still find room there, is not made to
 * pay for the others.
 */
static int check_withdrawals(struct cmp_txn *t, struct cmp_call *c, struct cmp_refusal *r)
{
    size_t owed = cmp_withdrawals_owed(c->e, t->quota);
    char queued[24];

    if (owed <= GW_MAX_WITHDRAWALS_PER_KEY && (owed == 0 || !cmp_withdrawals_crowded(c->e)))
        return 0;
    snprintf(queued, sizeof(queued), "%zu", owed);
    gw_log_kv(GW_LOG_WARN, "withdrawals_backlog", "tid", c->rsp->tid, "identity", t->identity, "queued",
              queued, NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      "too many revocations of certificates %.150s did not keep are waiting for the CA: "
                      "retry in a minute",
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
    /* docs/design.md D8: on disk before the response that carries the certificate leaves
     * (a deferred request's completion wrote it already: poll.c) */
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
              "role", t->role->name, "upstream", gw_upstream_conf_name(gw_upstream_get0_conf(t->up)), NULL);
    return si;
}

/*
 * A certificate the client will not get: on record with its serial, then withdrawn as
 * cmp_withdraw_returned says (only if it certifies the key of |plan|, the requested one, and was issued
 * for this request); the one of an upstream's |answer| as cmp_withdraw_answered says (not if the CA took
 * it back either).
 */
static OSSL_CMP_PKISI *refuse_cert_as(struct cmp_txn *t, struct cmp_call *c, X509 *cert,
                                      const struct cmp_refusal *r, const struct gw_sign_result *answer,
                                      const struct gw_cert_plan *plan)
{
    OSSL_CMP_PKISI *si;

    gw_x509_cert_serial_hex(cert, t->serial, sizeof(t->serial));
    si = cmp_reject(c, r);
    c->audited = 1;
    (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected", c->rsp->outcome, cert, 1);
    if (answer != NULL)
        cmp_withdraw_answered(c->e, t, c->rsp->tid, answer, plan, CRL_REASON_UNSPECIFIED);
    else
        cmp_withdraw_returned(c->e, t, c->rsp->tid, cert, plan, CRL_REASON_UNSPECIFIED);
    t->serial[0] = '\0';
    return si;
}

static OSSL_CMP_PKISI *refuse_cert(struct cmp_txn *t, struct cmp_call *c, X509 *cert,
                                   const struct gw_cert_plan *plan, const struct cmp_refusal *r)
{
    return refuse_cert_as(t, c, cert, r, NULL, plan);
}

/*
 * A certificate with the serial of one revoked through this gateway, or of another one it let through
 * lately (cmp_check_serial_reused): on record with its serial, and not withdrawn. A revoked serial is
 * revoked already, here and (where one CA issued it twice) at the CA: asking again would at best repeat
 * that revocation (cfssl would write this one's reason and time over the first's). Revoking the serial
 * of a certificate let through would revoke that one, which is valid. The CA's operator has to learn
 * whether the CA reused the serial or two CAs share its issuer name (the log line says so).
 */
static OSSL_CMP_PKISI *refuse_reused(struct cmp_txn *t, struct cmp_call *c, X509 *cert,
                                     const struct cmp_refusal *r)
{
    OSSL_CMP_PKISI *si = cmp_reject(c, r);

    c->audited = 1;
    (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected", c->rsp->outcome, cert, 1);
    t->serial[0] = '\0';
    return si;
}

/*
 * What the upstream returned is checked before it reaches the client, and refused as
 * gw_policy_issued_refusal words it: badCertTemplate for content outside the role's policy,
 * systemFailure for a certificate that is the CA's fault, a serial of a certificate revoked through
 * this gateway or let through lately included.
 */
static OSSL_CMP_PKISI *deliver(struct cmp_txn *t, struct cmp_call *c, const struct gw_cert_plan *plan,
                               struct gw_sign_result *res, X509 **certOut, STACK_OF(X509) **chainOut)
{
    STACK_OF(X509) *path = NULL;
    char err[GW_ERR_LEN] = "";
    struct cmp_refusal r = {0};
    enum gw_issued_verdict v;
    int reused = 0;

    gw_x509_cert_serial_hex(res->cert, t->serial, sizeof(t->serial));
    v = cmp_check_issued(c->e, t->role, t->up, plan, res->cert, res->chain, c->now, &path, err);
    if ((v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED) &&
        (reused = cmp_check_serial_reused(c->e, t->up, res->cert, c->now, c->rsp->tid, &r.fail_info,
                                          r.text)) != 0) {
        sk_X509_pop_free(path, X509_free);
        /* one that cannot be checked is withdrawn as any certificate not released */
        return reused == CMP_SERIAL_REUSED ? refuse_reused(t, c, res->cert, &r)
                                           : refuse_cert(t, c, res->cert, plan, &r);
    }
    if (v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED) {
        /* the client gets the chain verified up to issuer_ca, not whatever else the upstream sent */
        sk_X509_pop_free(res->chain, X509_free);
        res->chain = path;
        return accept_cert(t, c, res, v == GW_ISSUED_MODIFIED || plan->modified || res->modified, certOut,
                           chainOut);
    }
    r.fail_info = gw_policy_issued_refusal(v, err, r.text);
    /* either may be another holder's certificate (another key), or one let through lately: withdrawn
       only if it was issued for this request */
    if (v == GW_ISSUED_OUTSIDE_POLICY)
        return refuse_cert(t, c, res->cert, plan, &r);
    return refuse_cert_as(t, c, res->cert, &r, res, plan);
}

/* The request as the role shapes it for the time |at|, then the role's request policy. */
static int plan_request(struct cmp_txn *t, struct cmp_call *c, time_t at, const OSSL_CRMF_MSG *crm,
                        struct issuing *is, struct cmp_refusal *r)
{
    int rc = is->p10cr != NULL
                 ? gw_cert_req_from_p10(is->p10cr, &is->creq, r->text)
                 : gw_cert_req_from_crmf(req_kind(c->body), crm, c->req_key, &is->creq, r->text);

    r->fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
    if (rc != 0)
        return 1;
    /* 3GPP TS 33.310 §9.5.4.2: the template subject is optional; the vendor certificate names the device */
    if (t->role->subject_from_signer && gw_cert_req_subject_from(&is->creq, t->pbm ? NULL : t->signer) != 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure, "out of memory");
    if (gw_cert_plan_make(t->role, &is->creq, at, &is->plan, &r->fail_info, r->text) != 0)
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

/*
 * The rejection of a refused answer. One that still carried a certificate (the adapter refused the
 * rest of the answer: a field out of range, a certificate not from the CA it knows) was issued all
 * the same: on record with its serial and withdrawn, as one outside policy (docs/design.md D8), if
 * it certifies the key of |plan| (NULL: none known) and was not let through lately in another
 * transaction; else it may be another holder's, or that transaction's, and is not.
 * One the adapter rejected to its CA, which confirmed that, is on record only (rejected_to_ca).
 */
static OSSL_CMP_PKISI *reject_answer(struct cmp_txn *t, struct cmp_call *c, struct gw_sign_result *res,
                                     const struct gw_cert_plan *plan, const struct cmp_refusal *r)
{
    if (res->cert == NULL)
        return cmp_reject(c, r);
    return refuse_cert_as(t, c, res->cert, r, res, plan);
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

/* poll_after: the call runs on; the transaction keeps what a release needs (docs/design.md O7).
 */
static OSSL_CMP_PKISI *defer(struct cmp_txn *t, struct cmp_call *c, struct issuing *is)
{
    struct gw_audit_rec r;

    *t->plan = is->plan; /* moved */
    gw_cert_plan_init(&is->plan);
    t->requested_at = c->now; /* another instance plans it for that time again (wait_again) */
    cmp_set_outcome(c, "waiting", NULL);
    c->audited = 1;
    cmp_audit_rec_init(&r, t, c->rsp->tid, "waiting",
                       "the upstream CA is slower than poll_after; the client polls");
    r.subject = t->plan->subject;
    r.sans = t->plan->sans;
    (void)cmp_audit_write(c->e, &r, 0);
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_waiting, 0, NULL);
}

/*
 * The request waits for the upstream without its worker (suspend.h): its plan moves to |t| (into
 * the place sign() made for it), which the suspension keeps, and OpenSSL's answer to this pass is
 * thrown away (engine.c).
 */
static OSSL_CMP_PKISI *suspend(struct cmp_txn *t, struct cmp_call *c, struct issuing *is)
{
    *t->plan = is->plan; /* moved */
    gw_cert_plan_init(&is->plan);
    c->audited = 1; /* the second pass records the outcome */
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_waiting, 0, NULL);
}

/* Whether the second pass's sender is the first pass's: the same certificate, or the same PBM reference. */
static int same_sender(const struct cmp_txn *t, const struct cmp_txn *t1)
{
    if (t->pbm || t1->pbm)
        return t->pbm && t1->pbm && t->kid_len == t1->kid_len && memcmp(t->kid, t1->kid, t->kid_len) == 0;
    return t->signer != NULL && t1->signer != NULL && X509_cmp(t->signer, t1->signer) == 0;
}

enum signed_how { SIGNED_NOW, SIGNED_DEFERRED, SIGNED_SUSPENDED };

/*
 * Asks the upstream: with poll_after, maybe deferred; else suspended when the caller can resume
 * the request and the upstream does not answer at once; else blocking up to its timeout, for
 * in-process callers only (may_suspend): a certificate after that deadline is only logged there.
 */
static enum signed_how sign(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *req,
                            struct issuing *is)
{
    struct gw_sign_req sreq = {
        .role = t->role, .plan = &is->plan, .csr = is->p10cr, .request_id = c->rsp->tid};

    if (t->role->poll_after_ms == 0 && !c->req->may_suspend) {
        gw_upstream_sign_wait(t->up, &sreq, &is->res);
        return SIGNED_NOW;
    }
    /* room for the plan first: a call that outlives this pass must not fail to keep it */
    if ((t->plan = calloc(1, sizeof(*t->plan))) == NULL) {
        gw_upstream_refusal(t->up, GW_ERR_NOMEM, &is->res);
        return SIGNED_NOW;
    }
    gw_cert_plan_init(t->plan);
    if (t->role->poll_after_ms == 0)
        return cmp_suspend_sign(c, t, &sreq, &is->res) == 1 ? SIGNED_SUSPENDED : SIGNED_NOW;
    if ((t->request = OSSL_CMP_MSG_dup(req)) == NULL) {
        gw_upstream_refusal(t->up, GW_ERR_NOMEM, &is->res);
        return SIGNED_NOW;
    }
    return cmp_poll_sign(t, c, &sreq, &is->res) == 1 ? SIGNED_DEFERRED : SIGNED_NOW;
}

/* Maps the request onto the role, picks the upstream, asks it to sign, checks the result (worker). */
static OSSL_CMP_PKISI *issue(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *req,
                             const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
                             STACK_OF(X509) **chainOut)
{
    struct issuing is = {.p10cr = p10cr};
    OSSL_CMP_PKISI *si;
    struct cmp_refusal r = {0};
    enum signed_how how = SIGNED_NOW;

    gw_cert_req_init(&is.creq);
    gw_cert_plan_init(&is.plan);
    gw_sign_result_init(&is.res);
    if (plan_request(t, c, c->now, crm, &is, &r) != 0 ||
        cmp_pick_upstream(c, t, &is.plan, p10cr, &t->up, &r) != 0)
        si = cmp_reject(c, &r);
    else if (audit_intent(t, c, &is) != 0)
        si = cmp_reject(c, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_AUDIT_DOWN});
    else if ((how = sign(t, c, req, &is)) == SIGNED_DEFERRED)
        si = defer(t, c, &is);
    else if (how == SIGNED_SUSPENDED)
        si = suspend(t, c, &is);
    else if (sign_refused(&is.res, &r))
        si = reject_answer(t, c, &is.res, &is.plan, &r);
    else
        si = deliver(t, c, &is.plan, &is.res, certOut, chainOut);
    gw_sign_result_cleanup(&is.res);
    gw_cert_plan_cleanup(&is.plan);
    gw_cert_req_cleanup(&is.creq);
    return si;
}

/*
 * A deferred request another instance began, rebuilt from its record: planned again for the time
 * it came, for the upstream it went to, t->up (a delegate's plan has the subject and SANs of its
 * upstream's role; the certificate is checked against that plan on release), and answered "waiting"
 * again, without the call to sign, the records or the checks of shadow mode and of the usages granted
 * (they happened there).
 */
static OSSL_CMP_PKISI *wait_again(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *req,
                                  const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr)
{
    struct issuing is = {.p10cr = p10cr};
    struct cmp_refusal r = {0};
    int rc;

    gw_cert_req_init(&is.creq);
    gw_cert_plan_init(&is.plan);
    rc = plan_request(t, c, t->requested_at, crm, &is, &r) != 0 ||
         cmp_replan_upstream(c, t, &is.plan, t->up, &r) != 0;
    t->rewait = 0;
    if (rc == 0 && (t->request = OSSL_CMP_MSG_dup(req)) != NULL &&
        (t->plan = calloc(1, sizeof(*t->plan))) != NULL) {
        *t->plan = is.plan; /* moved */
        gw_cert_plan_init(&is.plan);
    } else {
        snprintf(c->diag, sizeof(c->diag), "its stored request does not plan here: %.200s", r.text);
    }
    gw_cert_plan_cleanup(&is.plan);
    gw_cert_req_cleanup(&is.creq);
    return t->plan != NULL ? OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_waiting, 0, NULL) : NULL;
}

/*
 * The checks in order: the messageTime and the replays known here (cmp_check_request: nothing looked
 * up), who asks (authorization, a 3GPP allow-list with it), then protocol (the POPO's hash and what it
 * signs on every route, then a route's stricter min_hash), then the old certificate and whether a kur,
 * or an ir, cr or p10cr signed with a certificate of the role, asks for its signer's key again; all before
 * anything is reserved or an upstream is asked. A client that may not ask learns nothing about its
 * algorithms, and a weak POPO costs no CA call, no intent record, no issued certificate to withdraw.
 */
static OSSL_CMP_PKISI *decide(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *req,
                              const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
                              STACK_OF(X509) **chainOut)
{
    struct cmp_refusal r = {0};

    cmp_identify(t, c);
    if (cmp_check_request(t, c, &r) != 0 || cmp_check_allowlist(c, t, crm, &r) != 0 ||
        cmp_check_popo_hash(c, crm, p10cr, &r) != 0 || cmp_check_popo_input(c, crm, &r) != 0 ||
        cmp_check_min_hash(c, t, crm, p10cr, &r) != 0 || check_kur(t, c, crm, &r) != 0 ||
        check_key_reuse(t, c, p10cr, &r) != 0 || check_withdrawals(t, c, &r) != 0 || reserve(t, c, &r) != 0)
        return cmp_reject(c, &r);
    return issue(t, c, req, crm, p10cr, certOut, chainOut);
}

/* pollReq found the deferred result: OpenSSL re-runs the callback on the stored request (docs/design.md O7).
 */
static OSSL_CMP_PKISI *release(struct cmp_txn *t, struct cmp_call *c, X509 **certOut,
                               STACK_OF(X509) **chainOut)
{
    struct gw_sign_result res;
    struct cmp_refusal r = {0};
    OSSL_CMP_PKISI *si;

    t->release = 0;
    if (!cmp_poll_take(t, &res, &t->on_record))
        return cmp_reject(c, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badRequest,
                                                   "the result of this transaction was already sent"});
    if (sign_refused(&res, &r)) {
        si = reject_answer(t, c, &res, t->plan, &r);
    } else if (!t->on_record) { /* the completion could not write the "issued" record */
        si = refuse_cert(t, c, res.cert, t->plan,
                         &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_AUDIT_LOST});
    } else {
        si = deliver(t, c, t->plan, &res, certOut, chainOut);
        c->released = *certOut != NULL;
    }
    gw_sign_result_cleanup(&res);
    return si;
}

/*
 * The second pass of a suspended request: the result of its call, through the checks a call that
 * completed at once goes through, against the plan of the first pass (which checked, reserved and
 * recorded the intent).
 */
static OSSL_CMP_PKISI *resumed(struct cmp_txn *t, struct cmp_call *c, X509 **certOut,
                               STACK_OF(X509) **chainOut)
{
    struct gw_sign_result res;
    const struct cmp_txn *t1;
    struct cmp_refusal r = {0};
    OSSL_CMP_PKISI *si;

    if (cmp_suspend_take(c, &res, &t1) != 0)
        return cmp_reject(c, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badRequest,
                                                   "the result of this transaction was already sent"});
    /* what the first pass's checks found, for the records of this one */
    cmp_identify(t, c);
    memcpy(t->credential_status, t1->credential_status, sizeof(t->credential_status));
    t->up = t1->up;
    if (sign_refused(&res, &r)) {
        si = reject_answer(t, c, &res, t1->plan, &r);
    } else if (!same_sender(t, t1)) { /* its protection verified with another of the sender's certificates */
        si = refuse_cert(
            t, c, res.cert, t1->plan,
            &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                                  "the request's signer changed while the CA answered; send it again"});
    } else {
        si = deliver(t, c, t1->plan, &res, certOut, chainOut);
    }
    gw_sign_result_cleanup(&res);
    return si;
}

OSSL_CMP_PKISI *cmp_issue_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                             const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
                             STACK_OF(X509) **chainOut, STACK_OF(X509) **caPubs)
{
    struct cmp_txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
    struct cmp_call *c = t->call;
    OSSL_CMP_PKISI *si;

    (void)certReqId;
    if (t->rebuilt != NULL) { /* the stored result of another instance: no check, call or record again */
        if ((si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL)) == NULL ||
            X509_up_ref(t->rebuilt) != 1) {
            OSSL_CMP_PKISI_free(si);
            return NULL;
        }
        *certOut = t->rebuilt;
        t->issued = t->rebuilt;
        t->rebuilt = NULL;
        return si;
    }
    if (t->rewait)
        return wait_again(t, c, req, crm, p10cr);
    if (c->resume != NULL)
        si = resumed(t, c, certOut, chainOut);
    else if (t->release)
        si = release(t, c, certOut, chainOut);
    else
        si = decide(t, c, req, crm, p10cr, certOut, chainOut);
    /* RFC 9810 §5.3.2, TS 33.310 §9.5.4.3: the operator root for the device; OpenSSL sends it in ip only */
    if (*certOut != NULL && t->role->ca_pubs != NULL &&
        (*caPubs = X509_chain_up_ref(t->role->ca_pubs)) == NULL)
        gw_log_kv(GW_LOG_WARN, "ca_pubs_dropped", "tid", c->rsp->tid, "reason", "out of memory", NULL);
    /* every outcome of an authenticated request is on record, refusals included */
    cmp_audit_refusal(c, t);
    return si;
}
