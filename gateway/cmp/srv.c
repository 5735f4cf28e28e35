/*
 * One OSSL_CMP_SRV_CTX per transaction (docs/design.md O6), set up with the gateway's
 * signer and either the role's trust or the PBM secret, and its callbacks. The certificate request,
 * rr and genm callbacks are issue.c's, rr.c's and genm.c's; the certConf, pollReq and error
 * callbacks continue a transaction and are here. The callbacks run inside
 * OSSL_CMP_SRV_process_request, only after OpenSSL verified the protection (and, for certificate
 * requests, the POPO); they do what 3.0 leaves to the application (docs/design.md O3), and each
 * marks its request's sender authenticated first (called_back).
 */
#include "gateway/cmp/srv.h"
#include "gateway/cmp/auth.h"
#include "gateway/cmp/genm.h"
#include "gateway/cmp/issue.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/poll.h"
#include "gateway/cmp/rr.h"
#include "gateway/cmp/shim.h"
#include "gateway/cmp/signer.h"
#include "base/log.h"
#include "mappings/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/x509v3.h>

/* OpenSSL's CMP log: warnings and errors, to the gateway's debug log (log_cb) */
#define OPENSSL_LOG_LEVEL OSSL_CMP_LOG_WARNING

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
    if (capture != NULL && level <= OSSL_CMP_LOG_ERR && cmp_signer_failed_in(msg))
        capture->protect_failed = 1; /* gateway/cmp/signer.h */
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

/* Keeps the senderNonce of |rsp|, the answer the client gets (3.0 has no getter on the context). */
static OSSL_CMP_MSG *answered(struct cmp_txn *t, OSSL_CMP_MSG *rsp)
{
    size_t len;

    if (rsp != NULL && gw_shim_sender_nonce(rsp, t->nonce, sizeof(t->nonce), &len) == 0)
        t->nonce_len = len;
    return rsp;
}

int cmp_txn_set_nonce(struct cmp_txn *t, const unsigned char *nonce, size_t nonce_len)
{
    ASN1_OCTET_STRING *s = ASN1_OCTET_STRING_new();
    int ok = s != NULL && nonce_len <= sizeof(t->nonce) &&
             ASN1_OCTET_STRING_set(s, nonce, (int)nonce_len) == 1 &&
             OSSL_CMP_CTX_set1_senderNonce(OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv), s) == 1;

    if (ok) {
        memcpy(t->nonce, nonce, nonce_len);
        t->nonce_len = nonce_len;
    }
    ASN1_OCTET_STRING_free(s);
    return ok;
}

int cmp_check_nonce(const struct cmp_txn *t, const OSSL_CMP_MSG *msg, struct cmp_refusal *r)
{
    const ASN1_OCTET_STRING *got = OSSL_CMP_HDR_get0_recipNonce(OSSL_CMP_MSG_get0_header(msg));

    if (t->nonce_len == 0 || (got != NULL && (size_t)ASN1_STRING_length(got) == t->nonce_len &&
                              memcmp(ASN1_STRING_get0_data(got), t->nonce, t->nonce_len) == 0))
        return 0;
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRecipientNonce, "%s", CMP_TEXT_RECIP_NONCE);
}

/*
 * OpenSSL 3.0 verifies every request's protection in process_request, with no switch to skip it. For
 * a message verified already against this context's signer, the header's protectionAlg is hidden
 * for the one call and the context accepts it as unprotected (its log quieted below errors, where
 * it would say it ignored a missing protection); all three are put back before returning. Not for
 * PBM: OpenSSL chooses the answer's protection (MAC or signature) by the request's. docs/design.md
 * O12.
 */
OSSL_CMP_MSG *cmp_process(struct cmp_txn *t, const OSSL_CMP_MSG *msg, int verified)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
    X509_ALGOR **slot = NULL, *alg;
    OSSL_CMP_MSG *rsp;

    if (verified && !t->pbm && msg != NULL)
        slot = gw_shim_hdr_protection_alg_slot(OSSL_CMP_MSG_get0_header(msg));
    if (slot == NULL || *slot == NULL || OSSL_CMP_SRV_CTX_set_accept_unprotected(t->srv, 1) != 1)
        return answered(t, OSSL_CMP_SRV_process_request(t->srv, msg));
    alg = *slot;
    *slot = NULL;
    (void)OSSL_CMP_CTX_set_log_verbosity(ctx, OSSL_CMP_LOG_ERR);
    rsp = OSSL_CMP_SRV_process_request(t->srv, msg);
    (void)OSSL_CMP_CTX_set_log_verbosity(ctx, OPENSSL_LOG_LEVEL);
    (void)OSSL_CMP_SRV_CTX_set_accept_unprotected(t->srv, 0);
    *slot = alg;
    return answered(t, rsp);
}

/*
 * The transaction of |srv|, for one of its callbacks. OpenSSL calls one only once the request's
 * protection verified (or the engine verified it: cmp_process's |verified|), so from here the
 * request's sender is authenticated (gw_cmp_response.authenticated).
 */
static struct cmp_txn *called_back(OSSL_CMP_SRV_CTX *srv)
{
    struct cmp_txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);

    cmp_authenticated(t->call, t);
    return t;
}

/* issue.c's callback, once called_back. */
static OSSL_CMP_PKISI *verified_issue_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                                         const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
                                         STACK_OF(X509) **chainOut, STACK_OF(X509) **caPubs)
{
    (void)called_back(srv);
    return cmp_issue_cb(srv, req, certReqId, crm, p10cr, certOut, chainOut, caPubs);
}

/* rr.c's callback, once called_back. */
static OSSL_CMP_PKISI *verified_rr_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
                                      const ASN1_INTEGER *serial)
{
    (void)called_back(srv);
    return cmp_rr_cb(srv, req, issuer, serial);
}

/* genm.c's callback, once called_back. */
static int verified_genm_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const STACK_OF(OSSL_CMP_ITAV) *in,
                            STACK_OF(OSSL_CMP_ITAV) **out)
{
    (void)called_back(srv);
    return cmp_genm_cb(srv, req, in, out);
}

static int certconf_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                       const ASN1_OCTET_STRING *certHash, const OSSL_CMP_PKISI *si)
{
    struct cmp_txn *t = called_back(srv);
    struct cmp_call *c = t->call;
    ASN1_OCTET_STRING *digest = t->issued != NULL ? X509_digest_sig(t->issued, NULL, NULL) : NULL;
    int match = digest != NULL && certHash != NULL && ASN1_OCTET_STRING_cmp(digest, certHash) == 0;

    (void)certReqId;
    ASN1_OCTET_STRING_free(digest);
    /* RFC 9483 §4.1.1: a certConf holds exactly one CertStatus. OpenSSL reads the first only: one that
       also rejects the certificate in another would have it confirmed, so such a message confirms nothing. */
    if (gw_shim_body_count(req, c->req->der, c->req->len) != 1) {
        c->confirm = CMP_CONFIRM_FAILED;
        return cmp_fail(c, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badRequest,
                                                 "a certConf confirms one certificate: send exactly one "
                                                 "CertStatus"});
    }
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
    /* RFC 9483 §4.1.1: a certConf's status is accepted or rejection. Any other, or one that does not
       read, confirms nothing: OpenSSL takes it for a rejection too, and so does the engine. */
    if (si != NULL && gw_shim_pkisi_status(si) != OSSL_CMP_PKISTATUS_accepted) {
        c->confirm = CMP_CONFIRM_REJECTED; /* the engine revokes it once the answer is built */
        cmp_set_outcome(c, "cert_rejected_by_client", NULL);
        return 1;
    }
    if (c->stale.fail_info >= 0) { /* a reload since took the sender's right away: withdrawn as well */
        c->confirm = CMP_CONFIRM_FAILED;
        return cmp_fail(c, &c->stale);
    }
    c->confirm = CMP_CONFIRM_ACCEPTED;
    cmp_set_outcome(c, "confirmed", NULL);
    return 1;
}

static int pollreq_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId, OSSL_CMP_MSG **certReq,
                      int64_t *check_after)
{
    struct cmp_txn *t = called_back(srv);

    (void)req;
    (void)certReqId; /* any but the request's (0) OpenSSL refuses itself (RFC 9483 §4.4) */
    *certReq = NULL;
    *check_after = 0;
    if ((t->pending == NULL && t->remote == NULL) || t->issued != NULL)
        return cmp_fail(t->call,
                        &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badRequest, "nothing to poll for"});
    if (t->call->stale.fail_info >= 0) /* a reload since took the sender's right away: nothing collected */
        return cmp_fail(t->call, &t->call->stale);
    if (!cmp_poll_ready(t, check_after)) {
        cmp_set_outcome(t->call, "waiting", NULL); /* pollRep with checkAfter */
        return 1;
    }
    /* OpenSSL re-runs the cert-request callback on it (docs/design.md O7): that delivers the
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
    struct cmp_txn *t = called_back(srv);
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

/* Signer, chain and policy switches shared by every context (docs/design.md O5). 1 on success. */
static int setup_common(struct cmp_txn *t, const struct gw_signer_conf *signer)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
    STACK_OF(X509) *chain = signer->chain;

    return OSSL_CMP_SRV_CTX_init(t->srv, t, verified_issue_cb, verified_rr_cb, verified_genm_cb, error_cb,
                                 certconf_cb, pollreq_cb) == 1 &&
           OSSL_CMP_CTX_set_log_cb(ctx, log_cb) == 1 &&
           OSSL_CMP_CTX_set_log_verbosity(ctx, OPENSSL_LOG_LEVEL) == 1 &&
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

/* The OWF and MAC of the answers to a PBM-protected request (cmp_pbm_answer_algs). */
static int setup_pbm_answer(OSSL_CMP_CTX *ctx, const struct gw_role *role)
{
    int owf, mac;

    cmp_pbm_answer_algs(role, &owf, &mac);
    return OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_OWF_ALGNID, owf) == 1 &&
           OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MAC_ALGNID, mac) == 1;
}

/* PBM secret chosen by senderKID, OR the role's trust: never both (docs/design.md O10.1). */
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
               OSSL_CMP_CTX_set1_referenceValue(ctx, t->kid, (int)t->kid_len) == 1 &&
               setup_pbm_answer(ctx, t->role);
    }
    if (t->role->store == NULL)
        return 1; /* no trust: every signature fails, as it should */
    if (X509_STORE_up_ref(t->role->store) != 1)
        return 0;
    if (OSSL_CMP_CTX_set0_trustedStore(ctx, t->role->store) != 1) {
        X509_STORE_free(t->role->store);
        return 0;
    }
    /* never NULL or empty: that leaves ctx->untrusted NULL and breaks the ctx (docs/design.md O10.3) */
    return sk_X509_num(t->role->untrusted) <= 0 || OSSL_CMP_CTX_set1_untrusted(ctx, t->role->untrusted) == 1;
}

struct cmp_txn *cmp_txn_new(struct cmp_call *c, int refusal)
{
    struct cmp_txn *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->e = c->e;
    atomic_fetch_add(&t->e->live, 1);
    t->role = c->role;
    snprintf(t->route, sizeof(t->route), "%s", c->route);
    snprintf(t->profile, sizeof(t->profile), "%s", c->profile);
    snprintf(t->tls_subject, sizeof(t->tls_subject), "%s", c->tls_subject);
    snprintf(t->tls_client, sizeof(t->tls_client), "%s", c->tls_client);
    snprintf(t->body, sizeof(t->body), "%s", gw_shim_body_name(c->body));
    if ((t->srv = OSSL_CMP_SRV_CTX_new(NULL, NULL)) == NULL || !setup_common(t, c->e->cfg.signer))
        goto err;
    /* a refusal context has neither trust nor secret: it can never validate anything (docs/design.md O10.1)
     */
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
    sk_X509_pop_free(t->signer_chain, X509_free);
    X509_free(t->issued);
    X509_free(t->rebuilt);
    cmp_poll_release(t->pending);
    cmp_poll_remote_free(t->remote);
    OSSL_CMP_MSG_free(t->request);
    gw_cert_plan_cleanup(t->plan);
    free(t->plan);
    OPENSSL_cleanse(t->kid, sizeof(t->kid));
    OPENSSL_cleanse(t->pbm_ref, sizeof(t->pbm_ref));
    atomic_fetch_sub(&t->e->live, 1);
    free(t);
}
