/*
 * Who signed a request: one authenticated identity (docs/security.md, "One identity").
 *
 * OpenSSL 3.0 validates a signature-protected message against whichever certificate it finds
 * first (extraCerts, then the untrusted list, then the trust store) but does not say which one
 * (3.2+: OSSL_CMP_CTX_get0_validatedSrvCert). Guessing afterwards is unsafe: a client holding one
 * trusted certificate can add a self-made look-alike with the same subject and key but another
 * device's issuer and serial, or the cmcRA usage, and the guess picks the look-alike. So the
 * engine chooses before OpenSSL runs: the one certificate naming the sender whose chain validates
 * against the route's trust, and pins it as srvCert. OpenSSL then verifies the signature with
 * exactly that certificate, and every decision (authorization, kur, rr, allow-lists, audit,
 * certConf and pollReq) uses it. The number of candidates is capped before any signature check,
 * so a request without credentials cannot make the server try many keys.
 *
 * The candidates include the role's trust anchors and intermediates that carry the sender's name, so
 * a client that names itself after a CA of the route's trust has that CA's certificate tried. Until
 * the signature verifies, the client has shown no key the route trusts: a signature that does not
 * verify is answered as one no certificate chains for (TEXT_UNTRUSTED), a key usage without
 * digitalSignature (which OpenSSL checks first) is told only once the signature verifies, and so is a
 * chain under the security level (a weak CA of the trust named as the sender would chain alone), and the
 * log alone says which it was (cmp_signature_refused, weak_signed). Otherwise the answers would tell
 * which names the route's CAs have.
 */
#include "gateway/cmp/auth.h"
#include "gateway/cmp/chains.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/shim.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/role.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crmf.h>
#include <openssl/cmperr.h>
#include <openssl/err.h>

int cmp_key_affordable(const EVP_PKEY *key)
{
    BIGNUM *e = NULL;
    int ok;

    if (key == NULL || EVP_PKEY_get_bits(key) > GW_MAX_VERIFY_KEY_BITS)
        return 0;
    if (!EVP_PKEY_is_a(key, "RSA") && !EVP_PKEY_is_a(key, "RSA-PSS"))
        return 1;
    /* an RSA verification costs in proportion to the exponent's length: 65537 has 17 bits */
    ok = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) == 1 &&
         BN_num_bits(e) <= GW_MAX_RSA_EXPONENT_BITS;
    BN_free(e);
    return ok;
}

/* Every key in |certs| affordable to verify with: the chain builder may try any of them. */
static int all_affordable(const STACK_OF(X509) *certs)
{
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (!cmp_key_affordable(X509_get0_pubkey(sk_X509_value(certs, i))))
            return 0;
    return 1;
}

/*
 * The bytes of the extensions of |certs|, as decoded: OpenSSL parses them only once a certificate is
 * looked at (its SKID, a chain), some 0.3 ms a KiB of small entries, and d2i leaves them unread.
 */
static size_t extension_bytes(const STACK_OF(X509) *certs)
{
    size_t n = 0;

    for (int i = 0; i < sk_X509_num(certs); i++) {
        const STACK_OF(X509_EXTENSION) *exts = X509_get0_extensions(sk_X509_value(certs, i));

        for (int j = 0; j < sk_X509_EXTENSION_num(exts); j++)
            n += (size_t)ASN1_STRING_length(X509_EXTENSION_get_data(sk_X509_EXTENSION_value(exts, j)));
    }
    return n;
}

/* Whether |cert| names the sender: subject == sender, SKID == senderKID when both are there. */
static int names_sender(X509 *cert, const struct gw_hdr_info *h)
{
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(cert);

    if (X509_NAME_cmp(X509_get_subject_name(cert), h->sender) != 0)
        return 0;
    if (h->sender_kid_len == 0 || skid == NULL)
        return 1;
    return (size_t)skid->length == h->sender_kid_len &&
           memcmp(skid->data, h->sender_kid, h->sender_kid_len) == 0;
}

/*
 * Adds the certificates of |from| that name the sender to |cands| (up-referenced, no duplicates). 0, or
 * -1 past the cap.
 */
static int add_candidates(STACK_OF(X509) *cands, const STACK_OF(X509) *from, const struct gw_hdr_info *h)
{
    for (int i = 0; i < sk_X509_num(from); i++) {
        X509 *x = sk_X509_value(from, i);

        if (!names_sender(x, h) || gw_x509_in_stack(cands, x))
            continue;
        if (sk_X509_num(cands) >= GW_MAX_SIGNER_CANDIDATES ||
            X509_add_cert(cands, x, X509_ADD_FLAG_UP_REF) != 1)
            return -1;
    }
    return 0;
}

/*
 * The trust anchors of |store| with the subject |name|: a lookup by name, not a copy of every anchor
 * on each request. NULL when there are none (or the lookup failed: then no anchor is a candidate,
 * and a request signed by one is refused).
 */
static STACK_OF(X509) *anchors_named(X509_STORE *store, const X509_NAME *name)
{
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    STACK_OF(X509) *found = NULL;

    if (sc != NULL && X509_STORE_CTX_init(sc, store, NULL, NULL) == 1)
        found = X509_STORE_CTX_get1_certs(sc, name);
    X509_STORE_CTX_free(sc);
    return found;
}

/*
 * The certificates a signer of a message with the header |h| is chosen from on |role|: those of |extra|
 * (its extraCerts), of the role's intermediates and of its trust anchors that name the sender, each
 * up-referenced; without |role| or its trust, those of |extra| alone. NULL refused with |r|.
 */
static STACK_OF(X509) *candidates(const struct gw_role *role, const STACK_OF(X509) *extra,
                                  const struct gw_hdr_info *h, struct cmp_refusal *r)
{
    int trust = role != NULL && role->store != NULL;
    STACK_OF(X509) *anchors = trust ? anchors_named(role->store, h->sender) : NULL;
    STACK_OF(X509) *cands = sk_X509_new_null();

    if (cands == NULL) {
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure, "internal error: out of memory");
    } else if (add_candidates(cands, extra, h) != 0 ||
               add_candidates(cands, trust ? role->untrusted : NULL, h) != 0 ||
               add_candidates(cands, anchors, h) != 0) {
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                   "more than %d certificates carry the sender's name: send only the signer's certificate "
                   "and its chain",
                   GW_MAX_SIGNER_CANDIDATES);
        sk_X509_pop_free(cands, X509_free);
        cands = NULL;
    }
    sk_X509_pop_free(anchors, X509_free);
    return cands;
}

/*
 * Decoded last: a message refused before (a certProfile not served, a pollReq of no open transaction), at no
 * cost to its address, costs the gateway none of its certificates either, however many new ones it carries.
 */
int cmp_take_extra_certs(struct cmp_call *c, const OSSL_CMP_MSG *msg)
{
    OSSL_CMP_MSG *own = (OSSL_CMP_MSG *)msg; /* this call's, decoded by it */

    if (!c->certs_later)
        return 0;
    c->certs_later = 0;
    if (gw_shim_set_extra_certs(own, c->req->der, (long)c->req->len) == 0)
        return 0;
    ERR_clear_error();
    c->rsp->auth_failed = true;
    gw_cmp_http_error(c->rsp, 400, GW_CMP_TEXT_NOT_DER);
    return 1;
}

/* The extraCerts of |msg| (decoded from |der|), every key affordable to verify with; NULL refused with |r|.
 */
static STACK_OF(X509) *extra_certs(const OSSL_CMP_MSG *msg, const unsigned char *der, size_t len,
                                   struct cmp_refusal *r)
{
    STACK_OF(X509) *extra = gw_shim_get1_extra_certs(msg, der, len);

    if (extra == NULL) {
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                   "extraCerts are malformed or hold more than %d certificates or %d bytes",
                   GW_MAX_EXTRA_CERTS, GW_MAX_EXTRA_CERTS_BYTES);
    } else if (!all_affordable(extra)) {
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "%s", TEXT_KEY_LIMITS);
        sk_X509_pop_free(extra, X509_free);
        extra = NULL;
    } else if (extension_bytes(extra) > GW_MAX_EXTRA_CERTS_EXT_BYTES) {
        /* before any is parsed: 32 KiB of subjectAltNames in one certificate cost 8 ms */
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                   "the certificates in extraCerts carry more than %d bytes of extensions: send the signer's "
                   "certificate and its chain only",
                   GW_MAX_EXTRA_CERTS_EXT_BYTES);
        sk_X509_pop_free(extra, X509_free);
        extra = NULL;
    }
    return extra;
}

/* |certs| and the role's intermediates (not up-referenced: free the stack alone), or NULL. */
static STACK_OF(X509) *with_intermediates(const STACK_OF(X509) *certs, const struct gw_role *role)
{
    STACK_OF(X509) *all = sk_X509_dup(certs);
    int ok = all != NULL;

    for (int i = 0; ok && i < sk_X509_num(role->untrusted); i++)
        ok = sk_X509_push(all, sk_X509_value(role->untrusted, i)) > 0;
    if (!ok) {
        sk_X509_free(all);
        all = NULL;
    }
    return all;
}

/* |extra| and the role's intermediates as the context's untrusted list: what chains are built from. */
static int set_untrusted(OSSL_CMP_CTX *ctx, const struct gw_role *role, const STACK_OF(X509) *extra)
{
    STACK_OF(X509) *all = with_intermediates(extra, role);
    /* never NULL or empty: that leaves ctx->untrusted NULL and breaks the context */
    int ok = all != NULL && (sk_X509_num(all) == 0 || OSSL_CMP_CTX_set1_untrusted(ctx, all) == 1);

    sk_X509_free(all);
    return ok;
}

/*
 * Keeps the candidates whose chain validates against |store|, with the context's untrusted list (the
 * message's extraCerts and the role's intermediates); a chain validated lately is not built again.
 * chains[i] is the chain found for the i-th one kept (the caller frees them). weak[i] says why the i-th
 * candidate failed if it chains but under the security level (gw_policy_weak_why), else NULL.
 */
static STACK_OF(X509) *valid_chains(struct cmp_chains *cc, OSSL_CMP_CTX *ctx, X509_STORE *store,
                                    const STACK_OF(X509) *cands, STACK_OF(X509) *chains[], const char *weak[])
{
    STACK_OF(X509) *ok = sk_X509_new_null();
    int code, depth;

    for (int i = 0; ok != NULL && i < sk_X509_num(cands); i++) {
        X509 *x = sk_X509_value(cands, i);
        STACK_OF(X509) *chain = NULL;

        weak[i] = NULL;
        if (cmp_chains_verify(cc, store, OSSL_CMP_CTX_get0_untrusted(ctx), x, &chain, &code, &depth) != 1) {
            weak[i] = gw_policy_weak_why(code, depth);
            continue;
        }
        if (!sk_X509_push(ok, x)) { /* |chain| is nobody else's yet */
            sk_X509_pop_free(chain, X509_free);
            sk_X509_free(ok);
            ok = NULL;
        } else {
            chains[sk_X509_num(ok) - 1] = chain;
        }
    }
    return ok;
}

/* Whether |msg|'s signature verifies with the key of |x| (pinned on |ctx| for the check). */
static int signed_by(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *msg, X509 *x)
{
    return OSSL_CMP_CTX_set1_srvCert(ctx, x) == 1 && OSSL_CMP_validate_msg(ctx, msg) == 1;
}

/*
 * Whether |msg|'s signature verifies with the key of |x|, whatever its key usage says: what OpenSSL
 * checks first, checked here only once the client has shown it holds the key (auth.c says why).
 */
static int signed_by_key(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *msg, X509 *x)
{
    int ok;

    if (OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IGNORE_KEYUSAGE, 1) != 1)
        return 0;
    ok = signed_by(ctx, msg, x);
    (void)OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IGNORE_KEYUSAGE, 0);
    return ok;
}

/* The first of |cands| that chains but under the security level (weak[i], valid_chains), or NULL. */
static X509 *first_weak(const STACK_OF(X509) *cands, const char *weak[])
{
    for (int i = 0; i < sk_X509_num(cands); i++)
        if (weak[i] != NULL)
            return sk_X509_value(cands, i);
    return NULL;
}

/*
 * Why the first of |cands| whose chain fails only the security level (weak[i], valid_chains) is weak, if
 * |msg|'s signature verifies with its key, else NULL. A weak CA of the route's trust named as the sender
 * by a client without its key is told no more than an unknown name (auth.c); the client whose own
 * certificate is weak holds its key, and learns why. Checked on that refusal only.
 */
static const char *weak_signed(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *msg, const STACK_OF(X509) *cands,
                               const char *weak[])
{
    const char *why = NULL;

    for (int i = 0; why == NULL && i < sk_X509_num(cands); i++)
        if (weak[i] != NULL && signed_by_key(ctx, msg, sk_X509_value(cands, i)))
            why = weak[i];
    (void)OSSL_CMP_CTX_set1_srvCert(ctx, NULL);
    return why;
}

/*
 * Several distinct certificates name the sender and chain to the route's trust (a renewed
 * certificate beside the old one, say): the signature decides, among those that may sign first (the
 * same key certified for key encipherment too is no second signer), then among all, so that a key
 * usage without digitalSignature is told once the signature verifies. More than one that verifies is
 * ambiguous, and the identity would be a guess. The index in |valid| of the one that verifies, or -1
 * refused with |r| (*cause "signature" and *tried the first of |valid|, borrowed, when none does).
 */
static int disambiguate(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *msg, const STACK_OF(X509) *valid,
                        const char **cause, X509 **tried, struct cmp_refusal *r)
{
    int found = -1, n = 0;

    for (int any_usage = 0; any_usage <= 1 && n == 0; any_usage++) {
        for (int i = 0; i < sk_X509_num(valid); i++) {
            X509 *x = sk_X509_value(valid, i);

            if (any_usage ? signed_by_key(ctx, msg, x) : signed_by(ctx, msg, x)) {
                found = i;
                n++;
            }
        }
    }
    (void)OSSL_CMP_CTX_set1_srvCert(ctx, NULL);
    if (n == 1)
        return found;
    if (n == 0) {
        *cause = "signature";
        *tried = sk_X509_value(valid, 0);
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s", TEXT_UNTRUSTED);
        return -1;
    }
    cmp_refuse(
        r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s",
        "message protection is ambiguous: several valid certificates with the sender's name verify it; "
        "send senderKID and only the signer's certificate and chain");
    return -1;
}

/*
 * Logs the refused signer of |c|, weak_signer if |weak| (the client is told why), else signer_refused: why
 * (|cause|, NULL: the reason says it), and the certificate |tried| (NULL: none) by its subject, its hash in
 * the form a TLS client is logged in (gw_cmp_tls_client) and whose it is, the client's (one of |extra|) or
 * the role's (a CA of its trust named as the sender). Nothing of its key: the operator tells a CA of the
 * trust from another of its name by the hash. Any peer can cause either as fast as it sends: paced.
 */
static void log_refused(int weak, const struct cmp_call *c, const struct cmp_txn *t,
                        const struct cmp_refusal *r, const char *cause, const X509 *tried,
                        const STACK_OF(X509) *extra)
{
    static struct gw_log_pace signer_pace = GW_LOG_PACE_INIT, weak_signer_pace = GW_LOG_PACE_INIT;
    char hash[GW_TLS_CLIENT_LEN] = "", *subject = NULL, held[GW_LOG_HELD_LEN];
    int theirs = 0;

    if (!gw_log_pace_due(weak ? &weak_signer_pace : &signer_pace, time(NULL), held))
        return;
    if (cause != NULL && tried != NULL) {
        subject = gw_x509_name_line(X509_get_subject_name(tried));
        (void)gw_cmp_tls_client(tried, hash);
        theirs = gw_x509_in_stack(extra, tried);
    }
    /* "suppressed" before the fields a refusal may lack, which end the list where it has none */
    gw_log_kv(GW_LOG_INFO, weak ? "weak_signer" : "signer_refused", "tid", c->rsp->tid, "role", t->role->name,
              "reason", r->text, "suppressed", held, cause != NULL ? "cause" : NULL, cause,
              tried != NULL ? "tried" : NULL, subject != NULL ? subject : "", "tried_hash", hash,
              "tried_from", theirs ? "extraCerts" : "role", NULL);
    OPENSSL_free(subject);
}

/*
 * The signer among |cands| with its validated chain (*chain, the caller's), or NULL refused with |r|
 * (*cause saying why for the log, where the answer does not, and *tried the candidate it is about: the
 * first weak one, the first that chains when the signature verifies with none, else the first; borrowed
 * from |cands|). *weak is set when the only chains found fail the security level (GW_SIGNER_AUTH_LEVEL)
 * and the signature verifies with such a certificate, which the client is told: its certificate would
 * verify but for a SHA-1 signature or a short key.
 */
static X509 *choose(struct cmp_chains *cc, OSSL_CMP_CTX *ctx, X509_STORE *store, const OSSL_CMP_MSG *msg,
                    const STACK_OF(X509) *cands, STACK_OF(X509) **chain, int *weak, const char **cause,
                    X509 **tried, struct cmp_refusal *r)
{
    STACK_OF(X509) *chains[GW_MAX_SIGNER_CANDIDATES] = {NULL};
    const char *weak_why[GW_MAX_SIGNER_CANDIDATES] = {NULL}, *why = NULL;
    STACK_OF(X509) *valid = valid_chains(cc, ctx, store, cands, chains, weak_why);
    X509 *signer = NULL;
    int at = -1;

    *weak = 0;
    if (valid == NULL) {
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "internal error: out of memory");
    } else if (sk_X509_num(valid) == 0 && (why = weak_signed(ctx, msg, cands, weak_why)) != NULL) {
        *weak = cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s %s", TEXT_WEAK_SIGNER, why);
    } else if (sk_X509_num(valid) == 0) {
        *tried = first_weak(cands, weak_why);
        *cause = *tried != NULL ? "weak_signature" : "untrusted";
        if (*tried == NULL)
            *tried = sk_X509_value(cands, 0); /* NULL when none names the sender */
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s", TEXT_UNTRUSTED);
    } else if (sk_X509_num(valid) == 1) {
        at = 0;
    } else {
        at = disambiguate(ctx, msg, valid, cause, tried, r);
    }
    if (at >= 0) {
        signer = sk_X509_value(valid, at);
        *chain = chains[at];
        chains[at] = NULL;
    }
    for (int i = 0; i < GW_MAX_SIGNER_CANDIDATES; i++)
        sk_X509_pop_free(chains[i], X509_free);
    sk_X509_free(valid);
    return signer;
}

int cmp_authenticate(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
    X509_STORE *store = t->role->store;
    STACK_OF(X509) *extra = NULL, *cands = NULL, *chain = NULL;
    X509 *signer = NULL, *tried = NULL;
    const char *cause = NULL;
    int refused = 1, weak = 0;

    if (t->pbm) /* OpenSSL checks the MAC */
        return 0;
    /* no trust: no signature can verify, but OpenSSL 3.0 tries each extraCert naming the sender with its
       key, unbounded (an RSA-3072 key with a 3070-bit exponent costs some 25 ms), before it finds no trust */
    if (store == NULL) {
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s", TEXT_SIGNATURE_NOT_ACCEPTED);
        goto out;
    }
    /* RFC 9483 §3.1: a signed message's sender is its certificate's subject. OpenSSL 3.0 refuses another
       only once it took in the extraCerts, parsing their extensions, which extra_certs has not bounded yet */
    if (c->hdr.sender == NULL) {
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "%s", TEXT_SENDER_NOT_DN);
        goto out;
    }
    if ((extra = extra_certs(msg, c->req->der, c->req->len, r)) == NULL ||
        (cands = candidates(t->role, extra, &c->hdr, r)) == NULL)
        goto out;
    if (!set_untrusted(ctx, t->role, extra)) {
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure, "internal error: out of memory");
        goto out;
    }
    if ((signer = choose(c->e->chains, ctx, store, msg, cands, &chain, &weak, &cause, &tried, r)) == NULL)
        goto out;
    if (OSSL_CMP_CTX_set1_srvCert(ctx, signer) != 1 || X509_up_ref(signer) != 1) {
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure, "internal error: out of memory");
        signer = NULL;
        goto out;
    }
    X509_free(t->signer);
    t->signer = signer;
    sk_X509_pop_free(t->signer_chain, X509_free);
    t->signer_chain = chain;
    chain = NULL;
    refused = 0;
out:
    /* the client's answer may say less than this (auth.c): |cause| says what happened */
    if (refused)
        log_refused(weak, c, t, r, cause, tried, extra);
    sk_X509_pop_free(extra, X509_free);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(cands, X509_free);
    ERR_clear_error(); /* candidates that failed leave noise in the queue */
    return refused;
}

/* Whether OpenSSL's error answer |rsp| refused the protection itself: "signature", "key_usage" or NULL. */
static const char *protection_refused(const OSSL_CMP_MSG *rsp)
{
    long code = gw_shim_error_code(rsp);
    int lib = code >= 0 ? ERR_GET_LIB((unsigned long)code) : 0, reason = ERR_GET_REASON((unsigned long)code);

    if (lib == ERR_LIB_CMP && reason == CMP_R_MISSING_KEY_USAGE_DIGITALSIGNATURE)
        return "key_usage";
    /* 3.0 queues ASN1_item_verify's failure first when a trusted signer's signature is wrong */
    if ((lib == ERR_LIB_CMP && reason == CMP_R_ERROR_VALIDATING_SIGNATURE) ||
        (lib == ERR_LIB_ASN1 && reason == ERR_R_EVP_LIB))
        return "signature";
    return NULL;
}

int cmp_signature_refused(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *req,
                          const OSSL_CMP_MSG *rsp, struct cmp_refusal *r)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
    const char *cause = t->pbm || t->signer == NULL ? NULL : protection_refused(rsp);
    STACK_OF(X509) *extra = NULL;

    if (cause == NULL)
        return 0;
    /* OpenSSL looks at the key usage before the signature: only a signature that verifies shows the key */
    if (strcmp(cause, "key_usage") == 0 && !signed_by_key(ctx, req, t->signer))
        cause = "signature";
    (void)OSSL_CMP_CTX_set1_srvCert(ctx, t->signer);
    ERR_clear_error();
    cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s",
               strcmp(cause, "key_usage") == 0 ? TEXT_NO_DIGITAL_SIGNATURE : TEXT_UNTRUSTED);
    /* the certificate tried, and whose: the client's (extraCerts), or the role's (a CA of its trust named
       as the sender by a client without its key) */
    extra = gw_shim_get1_extra_certs(req, c->req->der, c->req->len);
    log_refused(0, c, t, r, cause, t->signer, extra);
    sk_X509_pop_free(extra, X509_free);
    return 1;
}

STACK_OF(X509) *cmp_signer_chain_on(struct cmp_call *c, const struct cmp_txn *t, const struct gw_role *role)
{
    /* the chain it was validated with lends its intermediates; its anchor is no anchor there */
    STACK_OF(X509) *untrusted = with_intermediates(t->signer_chain, role), *chain = NULL;

    if (untrusted != NULL && role->store != NULL)
        (void)cmp_chains_valid_chain(c->e->chains, role->store, untrusted, t->signer, &chain);
    sk_X509_free(untrusted);
    ERR_clear_error();
    return chain;
}

int cmp_signer_chains_to(struct cmp_call *c, const struct cmp_txn *t, X509_STORE *store)
{
    STACK_OF(X509) *untrusted = with_intermediates(t->signer_chain, t->role);
    int ok = untrusted != NULL && store != NULL &&
             cmp_chains_valid(c->e->chains, store, untrusted, t->signer) == 1;

    sk_X509_free(untrusted);
    ERR_clear_error();
    return ok;
}

/* The lines of protection_alg and weak_protection: any peer sends what it likes, as fast as it likes. */
static struct gw_log_pace protection_alg_pace = GW_LOG_PACE_INIT, weak_protection_pace = GW_LOG_PACE_INIT;

int cmp_check_protection_hash(const struct cmp_call *c, struct cmp_refusal *r)
{
    char held[GW_LOG_HELD_LEN];
    int bits = c->hdr.protection_hash_bits, nid = c->hdr.protection_nid, md = NID_undef, pk = NID_undef;
    /* an OID OpenSSL has no name for is named in dotted form: digits and dots only */
    const char *name = nid != NID_undef ? OBJ_nid2ln(nid) : c->hdr.protection_oid;

    /* OpenSSL 3.0 verifies PasswordBasedMac and takes anything else for a signature, so a MAC it does not
       implement (PBMAC1, RFC 9481 §6.1.2; DHBasedMac) would be refused as an untrusted signer, and an
       algorithm it does not know at all as no protection */
    if (nid != NID_id_PasswordBasedMAC && nid != NID_rsassaPss && OBJ_find_sigid_algs(nid, &md, &pk) != 1) {
        if (gw_log_pace_due(&protection_alg_pace, time(NULL), held))
            gw_log_kv(GW_LOG_INFO, "protection_alg", "tid", c->rsp->tid, "algorithm", name, "suppressed",
                      held, NULL);
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badAlg,
                          "message protection %s is not supported: sign with a certificate, or protect with "
                          "PasswordBasedMac (RFC 9810 §5.1.3.1)",
                          name);
    }
    /* 0: a hash gw_shim_alg_hash_bits does not know, which OpenSSL cannot verify either */
    if (c->hdr.protection_nid == NID_id_PasswordBasedMAC || bits <= 0 || bits >= GW_MIN_PROTECTION_HASH_BITS)
        return 0;
    if (gw_log_pace_due(&weak_protection_pace, time(NULL), held))
        gw_log_kv(GW_LOG_INFO, "weak_protection", "tid", c->rsp->tid, "algorithm",
                  OBJ_nid2ln(c->hdr.protection_nid), "suppressed", held, NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badAlg,
                      "message protection is signed with a hash under 112 bits of security (%s): sign with "
                      "SHA-256 or stronger",
                      OBJ_nid2ln(c->hdr.protection_nid));
}

/*
 * RFC 9483 §3.1: 128 random bits at least in each. A shorter transactionID meets other clients' in the
 * gateway's transactions and replay cache, a shorter senderNonce weakens the replay check; OpenSSL 3.0
 * answers a message without a senderNonce with no recipNonce, which ties the answer to nothing the client
 * sent. The caps are the header reader's (cmp_refuse_header).
 */
int cmp_check_ids(const struct cmp_call *c, struct cmp_refusal *r)
{
    const struct gw_hdr_info *h = &c->hdr;

    if (h->tid_len == 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "transactionID is missing");
    if (h->tid_len < GW_MIN_TID_LEN)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "transactionID of %zu bytes is too short: start the transaction with a random "
                          "transactionID of %d bytes or more (RFC 9483 §3.1)",
                          h->tid_len, GW_MIN_TID_LEN);
    if (h->sender_nonce_len == 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badSenderNonce,
                          "senderNonce is missing: send a fresh random 128-bit senderNonce in every message");
    if (h->sender_nonce_len < GW_MIN_NONCE_LEN)
        return cmp_refuse(
            r, OSSL_CMP_PKIFAILUREINFO_badSenderNonce,
            "senderNonce of %zu bytes is too short: send a fresh random senderNonce of %d bytes "
            "or more in every message (RFC 9483 §3.1)",
            h->sender_nonce_len, GW_MIN_NONCE_LEN);
    return 0;
}

int cmp_refuse_header(const struct gw_hdr_info *h, int rc, struct cmp_refusal *r)
{
    if (rc == GW_ERR_LIMIT && h->over == GW_HDR_TID)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "transactionID of %zu bytes is too long: start the transaction with a random "
                          "transactionID of %d to %d bytes (RFC 9483 §3.1)",
                          h->over_len, GW_MIN_TID_LEN, GW_MAX_TID_LEN);
    if (rc == GW_ERR_LIMIT && h->over == GW_HDR_SENDER_NONCE)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badSenderNonce,
                          "senderNonce of %zu bytes is too long: send a fresh random senderNonce of %d to %d "
                          "bytes in every message (RFC 9483 §3.1)",
                          h->over_len, GW_MIN_NONCE_LEN, GW_MAX_NONCE_LEN);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                      "malformed PKIHeader: a field is oversized or of the wrong type");
}

/*
 * PBM's owf is one of RFC 9481 §2's digests (SHA-1 and MD5 are not), its mac one of §6.2.1's HMACs
 * (a route's min_hash may refuse SHA-224). SHAKE is not: §2.2 wants 256 bits of SHAKE128 and 512 of
 * SHAKE256, and OpenSSL 3.0's PBM (OSSL_CRMF_pbm_new) finalizes each with EVP_DigestFinal_ex, at its
 * default length, half of that, so a conforming client's MAC would not verify. SHA-3, which §2 does not
 * list, costs several times SHA-256 an iteration. The mac HMAC-SHA1 too, OpenSSL 3.0's client default,
 * whose strength as a MAC does not rest on SHA-1's collision resistance.
 */
static const int pbm_owfs[] = {NID_sha224, NID_sha256, NID_sha384, NID_sha512};
static const int pbm_macs[] = {NID_hmac_sha1,      NID_hmacWithSHA1,   NID_hmacWithSHA224,
                               NID_hmacWithSHA256, NID_hmacWithSHA384, NID_hmacWithSHA512};

static int listed(const int *nids, size_t n, int nid)
{
    for (size_t i = 0; i < n; i++)
        if (nids[i] == nid)
            return 1;
    return 0;
}

/* The name of |nid| for a log line or statusString; "unknown" for one OpenSSL does not know. */
static const char *alg_name(int nid)
{
    const char *name = nid != NID_undef ? OBJ_nid2ln(nid) : NULL;

    return name != NULL ? name : "unknown";
}

int cmp_check_pbm_algs(const struct cmp_call *c, struct cmp_refusal *r)
{
    static struct gw_log_pace pace = GW_LOG_PACE_INIT; /* any peer names the algorithms it likes */
    char held[GW_LOG_HELD_LEN];
    const char *owf = alg_name(c->hdr.pbm_owf_nid), *mac = alg_name(c->hdr.pbm_mac_nid);

    if (listed(pbm_owfs, sizeof(pbm_owfs) / sizeof(pbm_owfs[0]), c->hdr.pbm_owf_nid) &&
        listed(pbm_macs, sizeof(pbm_macs) / sizeof(pbm_macs[0]), c->hdr.pbm_mac_nid))
        return 0;
    if (gw_log_pace_due(&pace, time(NULL), held))
        gw_log_kv(GW_LOG_INFO, "pbm_alg", "tid", c->rsp->tid, "owf", owf, "mac", mac, "suppressed", held,
                  NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badAlg,
                      "PBM protection with owf %s and mac %s is not accepted: use owf SHA-224, SHA-256, "
                      "SHA-384 or SHA-512 and mac HMAC-SHA1, HMAC-SHA224, HMAC-SHA256, HMAC-SHA384 or "
                      "HMAC-SHA512",
                      owf, mac);
}

void cmp_pbm_answer_algs(const struct gw_role *role, int *owf, int *mac)
{
    int bits = role != NULL ? role->min_hash_bits : 0;

    *owf = bits > 384 ? NID_sha512 : bits > 256 ? NID_sha384 : NID_sha256;
    *mac = bits > 384 ? NID_hmacWithSHA512 : bits > 256 ? NID_hmacWithSHA384 : NID_hmacWithSHA256;
}

/* Derives one PBM key over |msg| from a secret no reference has, and throws it away. */
static void spend_one(const unsigned char *msg, size_t len, size_t salt_len, int owf, int iterations, int mac)
{
    static const unsigned char none[] = "the secret of no PBM reference";
    OSSL_CRMF_PBMPARAMETER *pbmp = OSSL_CRMF_pbmp_new(NULL, salt_len, owf, (size_t)iterations, mac);
    unsigned char *out = NULL;
    size_t out_len = 0;

    if (pbmp != NULL &&
        OSSL_CRMF_pbm_new(NULL, NULL, pbmp, msg, len, none, sizeof(none) - 1, &out, &out_len) == 1)
        OPENSSL_free(out);
    OSSL_CRMF_PBMPARAMETER_free(pbmp);
}

void cmp_pbm_spend(const struct cmp_call *c)
{
    int owf, mac;

    spend_one(c->req->der, c->req->len, GW_PBM_SPEND_SALT_LEN, c->hdr.pbm_owf_nid, c->hdr.pbm_iterations,
              c->hdr.pbm_mac_nid);
    /* the error OpenSSL MACs when the verification fails; its protected part is about the request's size */
    cmp_pbm_answer_algs(c->role, &owf, &mac);
    spend_one(c->req->der, c->req->len, GW_PBM_ANSWER_SALT_LEN, owf, GW_PBM_ANSWER_ITERATIONS, mac);
    ERR_clear_error();
}

int cmp_sender_is(const struct gw_hdr_info *h, int pbm, const unsigned char *kid, size_t kid_len,
                  const X509_NAME *sender)
{
    if (pbm)
        return h->protection_nid == NID_id_PasswordBasedMAC && h->sender_kid_len == kid_len &&
               memcmp(h->sender_kid, kid, kid_len) == 0;
    return h->protection_nid != NID_id_PasswordBasedMAC && h->sender != NULL && sender != NULL &&
           X509_NAME_cmp(h->sender, sender) == 0;
}

int cmp_check_tls_client(const struct cmp_call *c, const char *bound, struct cmp_refusal *r)
{
    if (bound[0] == '\0' ||
        (strcmp(bound, c->tls_client) == 0 && strcmp(c->tls_client, GW_CMP_TLS_CLIENT_UNKNOWN) != 0))
        return 0;
    /* another device sharing the sender's PBM secret or signing key, or the sender over another
       connection than its own: either way not the client this transaction's answers went to */
    gw_log_kv(GW_LOG_WARN, "txn_other_tls_client", "tid", c->rsp->tid, "tls_client", c->tls_client,
              "tls_subject", c->tls_subject, "bound_to", bound, "msg",
              "refused: the transaction was begun by another TLS client; it stays open for it", NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "%s", TEXT_OTHER_TLS_CLIENT);
}

void cmp_authenticated(struct cmp_call *c, const struct cmp_txn *t)
{
    char *cred = c->rsp->credential;

    c->rsp->authenticated = true;
    if (cred[0] != '\0')
        return; /* a callback before, for this message */
    if (t->pbm)
        snprintf(cred, GW_CREDENTIAL_LEN, "pbm:%.*s", (int)t->kid_len, (const char *)t->kid);
    else if (t->signer != NULL)
        (void)gw_cmp_tls_client(t->signer, cred); /* "unknown" when it cannot be hashed */
}

int cmp_check_pinned(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *msg, struct cmp_refusal *r)
{
    if (!cmp_sender_is(&c->hdr, t->pbm, t->kid, t->kid_len, t->sender))
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "%s", TEXT_OTHER_SENDER);
    if (cmp_check_tls_client(c, t->tls_client, r) != 0)
        return 1;
    /* before OpenSSL processes the message: OpenSSL closes the transaction on a failed check, so a
       forged certConf with the right sender name would cancel someone else's transaction; it then
       skips the signature (run with |verified|) */
    if (OSSL_CMP_validate_msg(OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv), msg) != 1) {
        ERR_clear_error();
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s", TEXT_PINNED_SIGNER);
    }
    cmp_authenticated(c, t);
    return 0;
}

/*
 * The certificates the signer of the request |req| (decoded from |der|, header |rh|) was chosen from on
 * |role| (cmp_authenticate; candidates), with its extraCerts in *extra (the caller frees both); NULL if
 * none can be.
 */
static STACK_OF(X509) *request_candidates(const struct gw_role *role, const OSSL_CMP_MSG *req,
                                          const unsigned char *der, size_t len, const struct gw_hdr_info *rh,
                                          STACK_OF(X509) **extra)
{
    struct cmp_refusal ignored;

    if (rh->sender == NULL || (*extra = extra_certs(req, der, len, &ignored)) == NULL)
        return NULL;
    return candidates(role, *extra, rh, &ignored);
}

int cmp_signed_like(struct cmp_txn *t, const struct gw_role *role, const OSSL_CMP_MSG *msg,
                    const OSSL_CMP_MSG *req, const unsigned char *der, size_t len,
                    const struct gw_hdr_info *rh)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
    STACK_OF(X509) *extra = NULL, *cands = NULL;
    X509 *signer = NULL;
    int ok = 0;

    if (t->pbm) /* |t| holds the secret of the message's reference, which is the request's */
        ok = OSSL_CMP_validate_msg(ctx, msg) == 1;
    else if ((cands = request_candidates(role, req, der, len, rh, &extra)) != NULL)
        for (int i = 0; !ok && i < sk_X509_num(cands); i++)
            ok = signed_by(ctx, msg, signer = sk_X509_value(cands, i));
    if (ok && signer != NULL && X509_up_ref(signer) == 1) {
        X509_free(t->signer);
        t->signer = signer;
        sk_X509_pop_free(t->signer_chain, X509_free);
        t->signer_chain = extra;
        extra = NULL;
    }
    (void)OSSL_CMP_CTX_set1_srvCert(ctx, NULL);
    sk_X509_pop_free(extra, X509_free);
    sk_X509_pop_free(cands, X509_free);
    ERR_clear_error();
    return ok;
}
