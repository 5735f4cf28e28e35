/*
 * The local upstream: an in-process issuing CA (docs/design.md D11). It issues exactly the
 * plan the route made (mappings/profile.h), with a random serial, CA:FALSE, and a validity that
 * never outlives the CA's own certificate. Sign calls complete synchronously on the calling thread.
 *
 * Revocation needs a store: only there does the issuer know what it issued (unknown serial:
 * GW_ERR_NOT_FOUND, badCertId). Revocations are files beside the inventory (upstream/store.h), and
 * the CRL is built from them, signed with the CA key, and cached until the next revocation, here or
 * by another instance sharing the store (its generation: upstream/store.h), or GW_CRL_REFRESH_SECS.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/asn1t.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/x509.h"
#include "upstream/store.h"
#include "upstream/upstream.h"
#include "upstream/upstream_int.h"
#include "base/conf.h"
#include "base/pem.h"
#include "base/clock.h"

#define SERIAL_BYTES ((GW_SERIAL_BITS + 7) / 8)

/* The cached CRL (DER) and what decides when it is rebuilt; behind crl_lock. */
struct crl_cache {
    pthread_mutex_t crl_lock;
    unsigned char *der;
    size_t len;
    time_t built;
    int dirty;                       /* a revocation was added since |der| was built */
    int rebuilding;                  /* a worker is building the next one, the lock let go meanwhile */
    _Atomic uint64_t gen_checked_ms; /* gw_now_ms of the last read of the store's generation; no lock */
    uint64_t gen;         /* the store's generation |der| was built at (gw_store_revocations_gen) */
    uint64_t last_number; /* CRL number of |der| (RFC 5280 §5.2.3: monotonic) */
    time_t failed;        /* when a rebuild for age alone last failed, |der| kept (0: none since) */
};

/* Read-only after init, but for |crl|: shared by all workers. */
struct local {
    X509 *ca;
    EVP_PKEY *key;
    STACK_OF(X509) *chain; /* the CA, then lc->chain */
    ASN1_OCTET_STRING *ca_keyid;
    time_t ca_not_before, ca_not_after;
    struct crl_cache crl;
};

static void local_free(struct local *l)
{
    if (l == NULL)
        return;
    X509_free(l->ca);
    EVP_PKEY_free(l->key);
    sk_X509_pop_free(l->chain, X509_free);
    ASN1_OCTET_STRING_free(l->ca_keyid);
    free(l->crl.der);
    pthread_mutex_destroy(&l->crl.crl_lock);
    free(l);
}

/* The CA's key identifier for AKID: its SKID, or the RFC 5280 §4.2.1.2 method-1 hash if it has none. */
static ASN1_OCTET_STRING *ca_keyid(X509 *ca)
{
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(ca);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ASN1_OCTET_STRING *id;

    if (skid != NULL)
        return ASN1_OCTET_STRING_dup(skid);
    if (X509_pubkey_digest(ca, EVP_sha1(), md, &len) != 1 || (id = ASN1_OCTET_STRING_new()) == NULL)
        return NULL;
    if (ASN1_OCTET_STRING_set(id, md, (int)len) != 1) {
        ASN1_OCTET_STRING_free(id);
        return NULL;
    }
    return id;
}

static int build_chain(struct local *l, const struct gw_local_conf *lc)
{
    int i;

    if ((l->chain = sk_X509_new_null()) == NULL || sk_X509_push(l->chain, l->ca) <= 0)
        return 0;
    X509_up_ref(l->ca);
    for (i = 0; i < sk_X509_num(lc->chain); i++) {
        X509 *c = sk_X509_value(lc->chain, i);

        if (X509_cmp(c, l->ca) == 0)
            continue; /* the chain file may repeat the CA itself */
        if (sk_X509_push(l->chain, c) <= 0)
            return 0;
        X509_up_ref(c);
    }
    return 1;
}

/* The store must be a directory we can write, or every sign would fail: say so at start. 0, or with |err|
   the class of what failed (gw_err_errno_class). */
static int store_usable(const char *dir, char *err, const char *name)
{
    char shown[GW_ERR_LEN];
    struct stat st;
    int e;

    if (stat(dir, &st) != 0)
        e = errno;
    else if (!S_ISDIR(st.st_mode))
        e = ENOTDIR;
    else if (access(dir, W_OK | X_OK) != 0)
        e = errno;
    else
        return 0;
    gw_conf_bprintf(err, GW_ERR_LEN, "upstream %s: store %s: %s", name,
                    gw_conf_show_file(dir, shown, sizeof(shown)), strerror(e));
    return gw_err_errno_class(e);
}

/* Temporary files a crash left in the store would otherwise stay forever. 0, or an error with |err|. */
static int store_sweep(const struct gw_upstream_conf *conf, char *err)
{
    const struct gw_local_conf *lc = conf->impl;
    size_t removed = 0;
    char n[32];
    int rc;

    if ((rc = gw_store_sweep(lc->store_dir, time(NULL), &removed, err)) != 0)
        return rc;
    if (removed > 0) {
        snprintf(n, sizeof(n), "%zu", removed);
        gw_log_kv(GW_LOG_WARN, "store_swept", "upstream", conf->name, "removed", n, "msg",
                  "temporary files of an interrupted write were removed", NULL);
    }
    return 0;
}

/*
 * The store ready to serve from: usable, private (only the gateway's user or root may change what it holds,
 * gw_store_check), swept. 0, or with |err| the class of what failed: GW_ERR_INVAL for what the configuration
 * must mend (not a directory, not writable, its mode or owner, what it holds), GW_ERR_UNAVAILABLE or
 * GW_ERR_NOMEM for what another try may (descriptors run out, a failing disk, out of memory).
 */
static int store_ready(const struct gw_upstream_conf *conf, char *err)
{
    const struct gw_local_conf *lc = conf->impl;
    char key[GW_CONF_PATH_LEN];
    int rc;

    gw_conf_bprintf(key, sizeof(key), "upstreams.%s.store", conf->name);
    if ((rc = store_usable(lc->store_dir, err, conf->name)) == 0 &&
        (rc = gw_store_check(key, lc->store_dir, conf->owner, err)) == 0)
        rc = store_sweep(conf, err);
    return rc != 0 ? gw_err_file_class(rc) : 0;
}

static int local_init(struct gw_upstream *up, const _Atomic uint64_t *end, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    const struct gw_local_conf *lc = conf->impl;
    struct local *l;
    time_t state_update;
    int rc;

    (void)end; /* nothing it does as it starts waits for its upstream */
    if (lc->cert == NULL || lc->key == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: the local issuer needs a CA certificate and key", conf->name);
        return GW_ERR_INVAL;
    }
    if (X509_check_private_key(lc->cert, lc->key) != 1) {
        snprintf(err, GW_ERR_LEN, "upstream %s: the CA key does not match the CA certificate", conf->name);
        return GW_ERR_INVAL;
    }
    if (X509_check_ca(lc->cert) == 0) {
        snprintf(err, GW_ERR_LEN, "upstream %s: the certificate is not a CA certificate", conf->name);
        return GW_ERR_INVAL;
    }
    if (lc->store_dir != NULL && (rc = store_ready(conf, err)) != 0)
        return rc;
    if ((l = calloc(1, sizeof(*l))) == NULL)
        goto nomem;
    pthread_mutex_init(&l->crl.crl_lock, NULL);
    X509_up_ref(lc->cert);
    l->ca = lc->cert;
    EVP_PKEY_up_ref(lc->key);
    l->key = lc->key;
    if (!build_chain(l, lc) || (l->ca_keyid = ca_keyid(l->ca)) == NULL)
        goto nomem;
    if (lc->store_dir != NULL &&
        gw_store_crl_state_get(lc->store_dir, &l->crl.last_number, &state_update, err) == GW_ERR_IO) {
        local_free(l);
        return GW_ERR_INVAL;
    }
    if (gw_asn1_time(X509_get0_notBefore(l->ca), &l->ca_not_before) != 0 ||
        gw_asn1_time(X509_get0_notAfter(l->ca), &l->ca_not_after) != 0) {
        snprintf(err, GW_ERR_LEN, "upstream %s: the CA certificate validity cannot be read", conf->name);
        local_free(l);
        return GW_ERR_INVAL;
    }
    gw_upstream_set0_impl(up, l);
    return 0;
nomem:
    snprintf(err, GW_ERR_LEN, "upstream %s: out of memory", conf->name);
    local_free(l);
    return GW_ERR_NOMEM;
}

static void local_cleanup(struct gw_upstream *up)
{
    local_free(gw_upstream_get0_impl(up));
    gw_upstream_set0_impl(up, NULL);
}

/* A positive, non-zero serial of GW_SERIAL_BITS random bits (RFC 5280 §4.1.2.2: at most 20 octets). */
static int set_random_serial(X509 *x)
{
    unsigned char buf[SERIAL_BYTES];
    BIGNUM *bn = NULL;
    int ok = 0;

    do {
        if (RAND_bytes(buf, sizeof(buf)) != 1)
            goto out;
        buf[0] &= 0xff >> (8 * SERIAL_BYTES - GW_SERIAL_BITS);
        BN_free(bn);
        if ((bn = BN_bin2bn(buf, sizeof(buf), NULL)) == NULL)
            goto out;
    } while (BN_is_zero(bn));
    ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    BN_free(bn);
    return ok;
}

static int add_basic_constraints(X509 *x)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    int ok;

    if (bc == NULL)
        return 0;
    bc->ca = 0; /* never a CA, whatever was asked */
    ok = X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_REPLACE) == 1;
    BASIC_CONSTRAINTS_free(bc);
    return ok;
}

/* keyUsage and extendedKeyUsage from the plan; never keyCertSign or cRLSign (CA:FALSE, RFC 5280 §4.2.1.3). */
static int add_usages(X509 *x, const struct gw_cert_plan *plan)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    unsigned ku = plan->key_usage & ~(unsigned)(KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    int ok = gw_usage_exts_add(&exts, ku, plan->ext_key_usage);

    for (int i = 0; ok && i < sk_X509_EXTENSION_num(exts); i++)
        ok = X509_add_ext(x, sk_X509_EXTENSION_value(exts, i), -1) == 1;
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return ok;
}

static int add_key_ids(X509 *x, const struct local *l)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ASN1_OCTET_STRING *skid = ASN1_OCTET_STRING_new();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    int ok = 0;

    if (skid == NULL || akid == NULL || X509_pubkey_digest(x, EVP_sha1(), md, &len) != 1 ||
        ASN1_OCTET_STRING_set(skid, md, (int)len) != 1)
        goto out;
    if ((akid->keyid = ASN1_OCTET_STRING_dup(l->ca_keyid)) == NULL)
        goto out;
    ok = X509_add1_ext_i2d(x, NID_subject_key_identifier, skid, 0, X509V3_ADD_REPLACE) == 1 &&
         X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_REPLACE) == 1;
out:
    ASN1_OCTET_STRING_free(skid);
    AUTHORITY_KEYID_free(akid);
    return ok;
}

/* "crl_url": one distribution point, a full name that is that URI (RFC 5280 §4.2.1.13). */
static int add_crl_dp(X509 *x, const char *url)
{
    CRL_DIST_POINTS *cdp = NULL;
    DIST_POINT *dp = NULL;
    GENERAL_NAME *gn = NULL;
    ASN1_IA5STRING *uri = NULL;
    int ok = 0;

    if (url == NULL)
        return 1;
    if ((cdp = sk_DIST_POINT_new_null()) == NULL || (dp = DIST_POINT_new()) == NULL ||
        (dp->distpoint = DIST_POINT_NAME_new()) == NULL ||
        (dp->distpoint->name.fullname = GENERAL_NAMES_new()) == NULL || (gn = GENERAL_NAME_new()) == NULL ||
        (uri = ASN1_IA5STRING_new()) == NULL || ASN1_STRING_set(uri, url, -1) != 1)
        goto out;
    dp->distpoint->type = 0; /* fullName */
    GENERAL_NAME_set0_value(gn, GEN_URI, uri);
    uri = NULL;
    if (sk_GENERAL_NAME_push(dp->distpoint->name.fullname, gn) <= 0)
        goto out;
    gn = NULL;
    if (sk_DIST_POINT_push(cdp, dp) <= 0)
        goto out;
    dp = NULL;
    ok = X509_add1_ext_i2d(x, NID_crl_distribution_points, cdp, 0, X509V3_ADD_REPLACE) == 1;
out:
    ASN1_IA5STRING_free(uri);
    GENERAL_NAME_free(gn);
    DIST_POINT_free(dp);
    CRL_DIST_POINTS_free(cdp);
    return ok;
}

static int add_extensions(X509 *x, const struct local *l, const struct gw_cert_plan *plan,
                          const char *crl_url)
{
    int empty_subject = X509_NAME_entry_count(X509_get_subject_name(x)) == 0;

    if (!add_basic_constraints(x) || !add_usages(x, plan) || !add_key_ids(x, l) || !add_crl_dp(x, crl_url))
        return 0;
    /* RFC 5280 §4.2.1.6: critical iff the subject is empty. */
    if (plan->sans != NULL && sk_GENERAL_NAME_num(plan->sans) > 0 &&
        X509_add1_ext_i2d(x, NID_subject_alt_name, plan->sans, empty_subject, X509V3_ADD_REPLACE) != 1)
        return 0;
    return 1;
}

/*
 * The plan's validity, never outside the CA's own. Returns 0 if nothing is left of it. A cut is a
 * modification only past GW_ISSUED_SHORTEN_SLACK, as gw_policy_check_issued judges any CA's: a role
 * ttl as long as the CA's own validity passes its notAfter by the seconds since the CA was made.
 */
static int set_validity(X509 *x, const struct local *l, const struct gw_cert_plan *plan, int *modified)
{
    time_t nb = plan->not_before, na = plan->not_after;

    if (na > l->ca_not_after) {
        na = l->ca_not_after;
        if (plan->not_after - na > GW_ISSUED_SHORTEN_SLACK)
            *modified = 1;
    }
    if (nb < l->ca_not_before)
        nb = l->ca_not_before;
    if (na <= nb)
        return 0;
    return ASN1_TIME_set(X509_getm_notBefore(x), nb) != NULL &&
           ASN1_TIME_set(X509_getm_notAfter(x), na) != NULL;
}

static const EVP_MD *sign_md(const EVP_PKEY *key)
{
    int id = EVP_PKEY_get_base_id(key);

    return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

/*
 * Gives |x| the key |spki|, as the request carried it: OpenSSL 3.0's X509_set_pubkey encodes the key
 * and decodes the encoding again, each through a freshly built en/decoder (most of the issuer's
 * time). The copy goes where OpenSSL's ASN.1 template for the certificate places the key; 0 if it
 * places it otherwise, or the copy fails (then X509_set_pubkey does it).
 */
static int set_spki(X509 *x, const X509_PUBKEY *spki)
{
    const ASN1_TEMPLATE *ci = gw_asn1_field(ASN1_ITEM_rptr(X509), "cert_info", -1, ASN1_TFLG_EMBED);
    const ASN1_TEMPLATE *k = gw_asn1_field(ASN1_ITEM_rptr(X509_CINF), "key", -1, 0);
    X509_PUBKEY **slot, *copy;

    if (spki == NULL || ci == NULL || k == NULL || ASN1_ITEM_ptr(ci->item) != ASN1_ITEM_rptr(X509_CINF) ||
        ASN1_ITEM_ptr(k->item) != ASN1_ITEM_rptr(X509_PUBKEY) || (copy = gw_x509_pubkey_copy(spki)) == NULL)
        return 0;
    slot = (X509_PUBKEY **)((char *)x + ci->offset + k->offset);
    X509_PUBKEY_free(*slot);
    *slot = copy;
    return 1;
}

/*
 * Keeps the encoding of |x|'s signed TBSCertificate where OpenSSL keeps that of a certificate it
 * parsed (X509_CINF's ASN1_ENCODING, as its ASN.1 template places it). OpenSSL 3.0's X509_sign
 * leaves it marked invalid, so every later encoding of the certificate encoded every field of it
 * again: the answer, the certHash of the certConf, the digests of the audit and the chain check,
 * some 50 K instructions each. The bytes are the ones the signature covers, made from the fields
 * as they are, and nothing changes a signed certificate: it is then as one parsed from the wire.
 * 0 if OpenSSL lays the certificate out otherwise (then it stays as X509_sign left it).
 */
static int keep_tbs_encoding(X509 *x)
{
    const ASN1_TEMPLATE *ci = gw_asn1_field(ASN1_ITEM_rptr(X509), "cert_info", -1, ASN1_TFLG_EMBED);
    const ASN1_ITEM *it = ci != NULL ? ASN1_ITEM_ptr(ci->item) : NULL;
    const ASN1_AUX *aux = it != NULL ? it->funcs : NULL;
    unsigned char *der = NULL;
    ASN1_ENCODING *enc;
    int len;

    if (it != ASN1_ITEM_rptr(X509_CINF) || it->itype != ASN1_ITYPE_SEQUENCE || aux == NULL ||
        (aux->flags & ASN1_AFLG_ENCODING) == 0 || (len = i2d_re_X509_tbs(x, &der)) <= 0)
        return 0;
    enc = (ASN1_ENCODING *)((char *)x + ci->offset + aux->enc_offset);
    OPENSSL_free(enc->enc);
    enc->enc = der;
    enc->len = len;
    enc->modified = 0;
    return 1;
}

/* issue fills |res| with a certificate made from |plan|, or with the reason it could not be. */
static void issue(const struct local *l, const struct gw_cert_plan *plan, const char *crl_url,
                  struct gw_sign_result *res)
{
    X509 *x = NULL;

    if (plan->subject == NULL || plan->pubkey == NULL) {
        gw_sign_result_fail(res, GW_ERR_INVAL, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                            "the plan has no subject or key");
        return;
    }
    if ((x = X509_new()) == NULL || X509_set_version(x, X509_VERSION_3) != 1 || !set_random_serial(x) ||
        X509_set_issuer_name(x, X509_get_subject_name(l->ca)) != 1 ||
        X509_set_subject_name(x, plan->subject) != 1 ||
        (!set_spki(x, plan->spki) && X509_set_pubkey(x, plan->pubkey) != 1))
        goto err;
    if (!set_validity(x, l, plan, &res->modified)) {
        gw_sign_result_fail(res, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                            "the issuing CA certificate is not valid for the requested period");
        X509_free(x);
        return;
    }
    if (!add_extensions(x, l, plan, crl_url) || X509_sign(x, l->key, sign_md(l->key)) <= 0)
        goto err;
    (void)keep_tbs_encoding(x);
    if ((res->chain = X509_chain_up_ref(l->chain)) == NULL)
        goto err;
    res->cert = x;
    return;
err:
    X509_free(x);
    gw_sign_result_fail(res, GW_ERR_CRYPTO, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                        "the local issuer failed to sign");
}

/*
 * Records the certificate in |res| in the upstream's store before it is released (docs/design.md
 * D5: a delegate issuer is outside the upstream CA's inventory, so this is the inventory).
 * If it cannot be recorded, it is dropped: it never left the process, so nothing was issued.
 */
static void record(const struct gw_upstream_conf *conf, const struct gw_sign_req *req,
                   struct gw_sign_result *res)
{
    const struct gw_local_conf *lc = conf->impl;
    char err[GW_ERR_LEN];

    if (res->status != 0 || res->cert == NULL || lc->store_dir == NULL)
        return;
    if (gw_store_put(lc->store_dir, res->cert, err) == 0)
        return;
    gw_log_kv(GW_LOG_ERROR, "store_failed", "upstream", conf->name, "tid", req->request_id, "msg", err, NULL);
    gw_sign_result_cleanup(res);
    gw_sign_result_init(res);
    gw_sign_result_fail(res, GW_ERR_IO, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                        "the issuer could not record the certificate; nothing was issued");
}

static int local_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                      void *arg)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    const struct gw_local_conf *lc = conf->impl;
    const struct local *l = gw_upstream_get0_impl(up);
    struct gw_sign_result *res;

    if (l == NULL || req->plan == NULL)
        return GW_ERR_INVAL;
    if ((res = malloc(sizeof(*res))) == NULL)
        return GW_ERR_NOMEM;
    gw_sign_result_init(res);
    if (lc->delay_ms > 0)
        gw_sleep_ms(lc->delay_ms); /* test knob: hold the calling thread, as a slow CA would */
    issue(l, req->plan, lc->crl_url, res);
    record(conf, req, res);
    done(arg, res);
    return 0;
}

/* ---- revocation and the CRL ---- */

/* CRLReason codes a full CRL may carry (RFC 5280 §5.3.1: removeFromCRL only in delta CRLs; 7 unused). */
static int reason_usable(int reason)
{
    return reason == CRL_REASON_NONE ||
           (reason >= CRL_REASON_UNSPECIFIED && reason <= CRL_REASON_AA_COMPROMISE && reason != 7 &&
            reason != CRL_REASON_REMOVE_FROM_CRL);
}

/*
 * worker. The other instances sharing the store build their CRL again when its generation changes. The
 * revocation stands if that fails: they list it at their next rebuild, and this instance at once.
 */
static void tell_instances(const struct gw_upstream_conf *conf, const char *hex)
{
    const struct gw_local_conf *lc = conf->impl;
    char err[GW_ERR_LEN];

    if (gw_store_revocations_bump(lc->store_dir, err) != 0)
        gw_log_kv(GW_LOG_WARN, "local_revocation_not_shared", "upstream", conf->name, "serial", hex, "msg",
                  err, NULL);
}

/* worker. Does the store hold a revocation of |hex|, whether or not its write reported a failure? */
static int recorded(const char *store_dir, const char *hex)
{
    struct gw_store_revocation r;
    char ignored[GW_ERR_LEN];

    return hex[0] != '\0' && gw_store_revocation_get(store_dir, hex, &r, ignored) == 0;
}

/*
 * worker. Without a store, or for a reason no CRL carries, it never revokes: refused for good
 * (GW_ERR_REFUSED, the caller's badRequest), not a failure that asking again would mend. Nothing
 * goes over a network: |end| does not cut its store's write short, and a failed write may have revoked
 * (*not_sent stays 0).
 */
static int local_revoke_serial(struct gw_upstream *up, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                               int reason, const _Atomic uint64_t *end, int *fail_info, int *not_sent,
                               char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    const struct gw_local_conf *lc = conf->impl;
    struct local *l = gw_upstream_get0_impl(up);
    char hex[2 * 20 + 1] = "";
    int rc;

    (void)end;
    (void)fail_info;
    (void)not_sent;
    if (lc->store_dir == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s keeps no store, so it cannot revoke: configure \"store\"",
                 conf->name);
        return GW_ERR_REFUSED;
    }
    if (!reason_usable(reason)) {
        snprintf(err, GW_ERR_LEN, "revocation reason %d cannot be put on a CRL", reason);
        return GW_ERR_REFUSED;
    }
    if (issuer != NULL && X509_NAME_cmp(issuer, X509_get_subject_name(l->ca)) != 0) {
        snprintf(err, GW_ERR_LEN, "upstream %s did not issue it: the issuer is another CA", conf->name);
        return GW_ERR_NOT_FOUND;
    }
    rc = gw_store_revoke(lc->store_dir, serial, reason, gw_upstream_now(up), err);
    (void)gw_x509_serial_hex_checked(serial, hex, sizeof(hex));
    if (rc == GW_ERR_EXISTS) { /* the first revocation stands; a concurrent one lost the race */
        gw_log_kv(GW_LOG_INFO, "local_revoked", "upstream", conf->name, "serial", hex, "msg",
                  "already revoked; the first revocation stands", NULL);
        snprintf(err, GW_ERR_LEN, "certificate %s is already revoked", hex);
        return GW_ERR_EXISTS;
    }
    if (rc == GW_ERR_LIMIT) { /* for good: no record is ever removed */
        gw_log_kv(GW_LOG_ERROR, "local_revocations_full", "upstream", conf->name, "serial", hex, "msg", err,
                  NULL);
        return GW_ERR_REFUSED;
    }
    if (rc != 0 && (rc != GW_ERR_IO || !recorded(lc->store_dir, hex)))
        return rc;
    /* recorded, also where the store could not make it durable (rc): it stands, the CRLs list it */
    pthread_mutex_lock(&l->crl.crl_lock);
    l->crl.dirty = 1;
    pthread_mutex_unlock(&l->crl.crl_lock);
    gw_log_kv(rc == 0 ? GW_LOG_INFO : GW_LOG_ERROR, "local_revoked", "upstream", conf->name, "serial", hex,
              rc == 0 ? NULL : "msg", err, NULL);
    tell_instances(conf, hex);
    return rc == 0 ? 0 : GW_ERR_NOT_DURABLE;
}

/* worker */
static int local_cert_status(struct gw_upstream *up, const X509 *cert, int *revoked, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    const struct gw_local_conf *lc = conf->impl;
    struct gw_store_revocation r;
    char hex[2 * 20 + 1];
    int rc;

    *revoked = 0;
    if (lc->store_dir == NULL ||
        gw_x509_serial_hex_checked(X509_get0_serialNumber(cert), hex, sizeof(hex)) != 0)
        return 0; /* without a store nothing can have been revoked */
    rc = gw_store_revocation_get(lc->store_dir, hex, &r, err);
    if (rc == GW_ERR_NOT_FOUND)
        return 0;
    *revoked = rc == 0;
    return rc;
}

/* worker */
static int local_cert_by_serial(struct gw_upstream *up, const ASN1_INTEGER *serial, X509 **cert, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    const struct gw_local_conf *lc = conf->impl;
    char hex[2 * 20 + 1];

    if (lc->store_dir == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s keeps no store, so it cannot find a certificate by serial",
                 conf->name);
        return GW_ERR_INVAL;
    }
    if (gw_x509_serial_hex_checked(serial, hex, sizeof(hex)) != 0)
        return GW_ERR_NOT_FOUND;
    return gw_store_get(lc->store_dir, hex, cert, err);
}

/* One CRL entry; the reason extension only when it says more than "unspecified" (RFC 5280 §5.3.1). */
static int add_entry(X509_CRL *crl, const struct gw_store_revocation *r)
{
    X509_REVOKED *rev = X509_REVOKED_new();
    ASN1_ENUMERATED *code = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    BIGNUM *bn = NULL;
    int ok = 0;

    if (rev == NULL || BN_hex2bn(&bn, r->serial) == 0 || (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
        X509_REVOKED_set_serialNumber(rev, serial) != 1 || (when = ASN1_TIME_set(NULL, r->when)) == NULL ||
        X509_REVOKED_set_revocationDate(rev, when) != 1)
        goto out;
    if (r->reason > CRL_REASON_UNSPECIFIED &&
        ((code = ASN1_ENUMERATED_new()) == NULL || ASN1_ENUMERATED_set(code, r->reason) != 1 ||
         X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, code, 0, 0) != 1))
        goto out;
    if (X509_CRL_add0_revoked(crl, rev) != 1)
        goto out;
    rev = NULL;
    ok = 1;
out:
    X509_REVOKED_free(rev);
    ASN1_ENUMERATED_free(code);
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(when);
    BN_free(bn);
    return ok;
}

/* CRL v2 header and extensions: issuer, thisUpdate, nextUpdate, AKID, CRL number (RFC 5280 §5.1, §5.2). */
static int crl_header(X509_CRL *crl, const struct local *l, time_t now, uint64_t number)
{
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    ASN1_TIME *t1 = ASN1_TIME_set(NULL, now), *t2 = ASN1_TIME_set(NULL, now + GW_CRL_NEXT_UPDATE_SECS);
    int ok = 0;

    if (akid == NULL || num == NULL || t1 == NULL || t2 == NULL ||
        X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(l->ca)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, t1) != 1 || X509_CRL_set1_nextUpdate(crl, t2) != 1 ||
        (akid->keyid = ASN1_OCTET_STRING_dup(l->ca_keyid)) == NULL ||
        ASN1_INTEGER_set_uint64(num, number) != 1)
        goto out;
    ok = X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0, 0) == 1 &&
         X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) == 1;
out:
    AUTHORITY_KEYID_free(akid);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t1);
    ASN1_TIME_free(t2);
    return ok;
}

/* The CRL number's source: microseconds since the epoch (RFC 5280 §5.2.3: at most 20 octets). */
static uint64_t realtime_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * The next CRL's number, thisUpdate and entries into |next|. The number never goes backwards, whatever
 * the clock does: with a store, against crl.state, which every instance sharing it takes it from under
 * the store's lock (gw_store_crl_next), across restarts too; without one, against the last CRL built
 * here. thisUpdate is |now|: the number orders the CRLs (RFC 5280 §5.2.3), and a thisUpdate held to the
 * last one's would carry a clock's step ahead onto every CRL after it. 0 or a gw_err with |err|.
 */
static int crl_next(const struct crl_cache *c, const struct gw_local_conf *lc, time_t now,
                    struct gw_store_crl_next *next, char *err)
{
    memset(next, 0, sizeof(*next));
    next->number = realtime_us();
    if (next->number <= c->last_number)
        next->number = c->last_number + 1;
    next->this_update = now;
    return lc->store_dir != NULL ? gw_store_crl_next(lc->store_dir, next, err) : 0;
}

/* Builds and signs the CRL of |l| from the store into *der, numbered past |last|. 0 or a gw_err with |err|.
 */
static int crl_build(const struct local *l, const struct gw_upstream_conf *conf, const struct crl_cache *last,
                     time_t now, struct gw_store_crl_next *next, unsigned char **der, int *len, char *err)
{
    X509_CRL *crl = NULL;
    int rc;

    *der = NULL;
    if ((rc = crl_next(last, conf->impl, now, next, err)) != 0)
        goto out;
    rc = GW_ERR_CRYPTO;
    if ((crl = X509_CRL_new()) == NULL || !crl_header(crl, l, next->this_update, next->number))
        goto fail;
    for (size_t i = 0; i < next->n; i++)
        if (!add_entry(crl, &next->v[i]))
            goto fail;
    if (X509_CRL_sort(crl) != 1 || X509_CRL_sign(crl, l->key, sign_md(l->key)) <= 0 ||
        (*len = i2d_X509_CRL(crl, der)) <= 0)
        goto fail;
    rc = 0;
    goto out;
fail:
    snprintf(err, GW_ERR_LEN, "upstream %s: the CRL could not be signed", conf->name);
out:
    X509_CRL_free(crl);
    return rc;
}

/*
 * A crl.state dated past |now| by more than a reader allows: the clock stepped back since, or another
 * instance's runs ahead. Said, as the CRLs' dates follow the clock of the instance that signs them. worker
 */
static void warn_state_ahead(const struct gw_upstream_conf *conf, const struct gw_store_crl_next *next,
                             time_t now)
{
    char ahead[32];

    if (next->last_update <= now || next->last_update - now <= GW_CRL_CLOCK_SKEW_SECS)
        return;
    snprintf(ahead, sizeof(ahead), "%lld", (long long)(next->last_update - now));
    gw_log_kv(GW_LOG_WARN, "local_crl_state_ahead", "upstream", conf->name, "ahead_secs", ahead, "msg",
              "the store's last CRL is dated ahead of this clock: synchronise the instances' clocks", NULL);
}

/*
 * Builds the CRL of |l| again into its cache. Lock held on entry and on return, but let go while the
 * store is read (it may wait GW_CRL_LOCK_WAIT_MS for crl.lock) and the CRL signed: the others asking
 * meanwhile see |rebuilding| and do not queue behind this one. A revocation recorded meanwhile sets
 * |dirty| again, so the CRL that may have missed it is built anew at the next request. 0 or a gw_err
 * with |err|.
 */
static int crl_rebuild(struct local *l, const struct gw_upstream_conf *conf, time_t now, char *err)
{
    struct gw_store_crl_next next;
    struct crl_cache *c = &l->crl, last = {.last_number = c->last_number};
    unsigned char *der = NULL, *kept = NULL;
    int len = 0, rc, was_dirty = c->dirty;

    c->rebuilding = 1;
    c->dirty = 0;
    pthread_mutex_unlock(&c->crl_lock);
    rc = crl_build(l, conf, &last, now, &next, &der, &len, err);
    free(next.v);
    if (rc == 0)
        warn_state_ahead(conf, &next, now);
    pthread_mutex_lock(&c->crl_lock);
    c->rebuilding = 0;
    if (rc == 0 && (kept = malloc((size_t)len)) == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: the CRL could not be kept (out of memory)", conf->name);
        rc = GW_ERR_NOMEM;
    }
    if (rc != 0) {
        c->dirty |= was_dirty;
        OPENSSL_free(der);
        return rc;
    }
    memcpy(kept, der, (size_t)len);
    free(c->der);
    c->der = kept;
    c->len = (size_t)len;
    c->built = now;
    c->failed = 0;
    c->gen = next.gen;
    c->last_number = next.number;
    OPENSSL_free(der);
    return 0;
}

enum crl_age { CRL_FRESH, CRL_OLD, CRL_CHANGED };

/* Whether the cached CRL may still be served as it is: true (|dirty| clear) and within its nextUpdate
   (thisUpdate is when it was built). A clock gone back (|now| before it was built) changes neither. */
static int crl_servable(const struct crl_cache *c, time_t now)
{
    return c->der != NULL && !c->dirty && (now < c->built || now - c->built < GW_CRL_NEXT_UPDATE_SECS);
}

/*
 * Is the cached CRL to be built again? CRL_CHANGED when there is none, or after a revocation here or
 * through another instance sharing the store (|dirty|, crl_peers_check): it must not be served. CRL_OLD
 * when older than GW_CRL_REFRESH_SECS, or when the clock went back: still true, served while another
 * request builds the next; not tried again for GW_CRL_RETRY_SECS after such a build failed while it is
 * still servable. Lock held.
 */
static enum crl_age crl_stale(const struct local *l, time_t now)
{
    const struct crl_cache *c = &l->crl;

    if (c->der == NULL || c->dirty)
        return CRL_CHANGED;
    if (now >= c->built && now - c->built < GW_CRL_REFRESH_SECS)
        return CRL_FRESH;
    if (c->failed != 0 && now >= c->failed && now - c->failed < GW_CRL_RETRY_SECS && crl_servable(c, now))
        return CRL_FRESH; /* backing off */
    return CRL_OLD;
}

/*
 * Did another writer of the store revoke since the cached CRL was built? Its generation is read at
 * most once each GW_CRL_GEN_CHECK_MS, lock not held. Not only with "shared_store": across a reload the
 * old configuration's issuer may still record a revocation its in-flight rr asked for after the new one
 * built its CRL, and across a hand-over two processes write the store, each with a cache of its own. A
 * generation that changed or cannot be read sets |dirty| (the rebuild reads it again and says why).
 * Takes the lock. worker
 */
static void crl_peers_check(struct local *l, const struct gw_local_conf *lc)
{
    struct crl_cache *c = &l->crl;
    char ignored[GW_ERR_LEN];
    uint64_t gen, now_ms = gw_now_ms(), last = atomic_load(&c->gen_checked_ms);
    int rc;

    if (lc->store_dir == NULL || now_ms - last < GW_CRL_GEN_CHECK_MS ||
        !atomic_compare_exchange_strong(&c->gen_checked_ms, &last, now_ms))
        return; /* checked lately, or another request is checking now */
    rc = gw_store_revocations_gen(lc->store_dir, &gen, ignored);
    pthread_mutex_lock(&c->crl_lock);
    if (rc != 0 || gen != c->gen)
        c->dirty = 1;
    pthread_mutex_unlock(&c->crl_lock);
}

/*
 * The cached CRL, or a new one where it is stale (crl_stale). One request builds it at a time; the others
 * meanwhile get the cached one if it is merely old, else GW_ERR_BUSY at once rather than a worker each
 * waiting on the store. A build for age alone that fails (crl.lock held by a peer, a store read-only or
 * full) leaves the cached CRL served while it is servable, said once (local_crl_kept), and tried again
 * GW_CRL_RETRY_SECS later; one that a revocation made due fails the request: the cached CRL lacks it.
 * worker
 */
static int local_crl(struct gw_upstream *up, const char *issuer_ref, unsigned char **der, size_t *len,
                     char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    struct local *l = gw_upstream_get0_impl(up);
    time_t now = gw_upstream_now(up);
    enum crl_age age;
    int rc = 0, kept = 0;

    (void)issuer_ref; /* always NULL: one CA, no issuer_ref */
    crl_peers_check(l, conf->impl);
    pthread_mutex_lock(&l->crl.crl_lock);
    age = crl_stale(l, now);
    if (age != CRL_FRESH && !l->crl.rebuilding)
        rc = crl_rebuild(l, conf, now, err);
    else if (age == CRL_CHANGED) {
        snprintf(err, GW_ERR_LEN, "upstream %s: another request is building its CRL", conf->name);
        rc = GW_ERR_BUSY;
    }
    if (rc != 0 && age == CRL_OLD && crl_servable(&l->crl, now)) {
        l->crl.failed = now;
        kept = 1;
        rc = 0;
    }
    if (rc == 0 && (*der = malloc(l->crl.len)) == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: out of memory", conf->name);
        rc = GW_ERR_NOMEM;
    }
    if (rc == 0) {
        memcpy(*der, l->crl.der, l->crl.len);
        *len = l->crl.len;
    }
    pthread_mutex_unlock(&l->crl.crl_lock);
    if (kept)
        gw_log_kv(GW_LOG_WARN, "local_crl_kept", "upstream", conf->name, "msg", err, NULL);
    return rc;
}

/* ---- configuration: the "local" section ---- */

/*
 * "crl_url": an http(s) URL with a path, of printable ASCII without spaces, quotes or backslashes
 * (it becomes an IA5String URI in a CRL distribution point: RFC 5280 §4.2.1.13 and §4.2.1.6), and no
 * user name or password before its host: every certificate issued would carry them, for anyone to read.
 */
static int p_crl_url(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                     const struct gw_conf_field *f)
{
    const char *s, *authority;
    char buf[GW_CONF_SHOW_BUF];
    size_t i, n;

    if (v == NULL)
        return 0;
    if ((s = gw_conf_want_string(pc, path, v, "a URL")) == NULL)
        return GW_ERR_INVAL;
    n = strlen(s);
    for (i = 0; i < n && s[i] > 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\'; i++)
        ;
    if (i != n || n > GW_MAX_URL_LEN || (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) ||
        strchr(strchr(s, ':') + 3, '/') == NULL)
        return gw_conf_fail(pc, path,
                            "expected \"http(s)://host[:port]/path\" of at most %d printable bytes, got %s",
                            GW_MAX_URL_LEN, gw_conf_show(v, buf, sizeof(buf)));
    authority = strchr(s, ':') + 3;
    if (memchr(authority, '@', (size_t)(strchr(authority, '/') - authority)) != NULL)
        return gw_conf_fail(pc, path,
                            "a user name or password in %s would be written into every certificate issued: "
                            "name a URL without them",
                            gw_conf_show(v, buf, sizeof(buf)));
    return (*(char **)gw_conf_at(base, f->off) = strdup(s)) != NULL ? 0 : GW_ERR_NOMEM;
}

/* The inventory directory of a local issuer: it must exist and be writable (nothing issued is lost). */
static int check_store(struct gw_conf_ctx *pc, const char *path, const char *dirname)
{
    char spath[GW_CONF_PATH_LEN], shown[GW_ERR_LEN];
    struct stat st;

    gw_conf_join_key(spath, path, "store");
    gw_conf_show_file(dirname, shown, sizeof(shown));
    if (stat(dirname, &st) != 0)
        return gw_conf_fail_as(pc, gw_err_errno_class(errno), spath, "cannot use \"%s\": %s", shown,
                               strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return gw_conf_fail(pc, spath, "\"%s\" is not a directory", shown);
    if (access(dirname, W_OK | X_OK) != 0)
        return gw_conf_fail_as(pc, gw_err_errno_class(errno), spath, "\"%s\" is not writable: %s", shown,
                               strerror(errno));
    return 0;
}

/*
 * The CA certificate and key must be a pair and a CA; its certificate and chain are what the
 * certificates it issues chain to, and it is the CA cmpgw holds the key of (own_ca).
 */
static int check_local(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    struct gw_local_conf *lc = u->impl;
    STACK_OF(X509) *certs = NULL;
    char cpath[GW_CONF_PATH_LEN], shown[GW_ERR_LEN];

    if (gw_pem_load_pair(pc, path, lc->cert_file, lc->key_file, lc->key_passphrase_file, GW_PEM_KEY_CERTS,
                         &lc->cert, NULL, &lc->key) != 0)
        return GW_ERR_INVAL;
    gw_conf_join_key(cpath, path, "cert");
    if ((X509_get_extension_flags(lc->cert) & EXFLAG_CA) == 0)
        return gw_conf_fail(pc, cpath, "\"%s\" is not a CA certificate (basicConstraints CA:TRUE)",
                            gw_conf_show_file(lc->cert_file, shown, sizeof(shown)));
    if (lc->store_dir != NULL && check_store(pc, path, lc->store_dir) != 0)
        return pc->failed;     /* its class: descriptors run out are not the file's (gw_err_errno_class) */
    if (lc->store_dir == NULL) /* local_revoke_serial refuses, local_cert_status says "not revoked" */
        gw_log(
            GW_LOG_WARN, "config",
            "%s: %s: no store, so this issuer keeps no record of what it issues: its certificates can never "
            "be revoked (every rr naming one is refused, and check_revocation finds none revoked): set "
            "\"store\"",
            pc->name, path);
    if (gw_pem_load_chain(pc, path, lc->chain_file, &lc->chain) != 0)
        return GW_ERR_INVAL;
    if (X509_up_ref(lc->cert) != 1)
        return GW_ERR_NOMEM;
    u->own_ca = lc->cert;
    u->store_dir = lc->store_dir;
    u->shared_store = lc->shared_store;
    if ((certs = X509_chain_up_ref(lc->chain)) == NULL ||
        X509_add_cert(certs, lc->cert, X509_ADD_FLAG_UP_REF | X509_ADD_FLAG_PREPEND | X509_ADD_FLAG_NO_DUP) !=
            1) {
        sk_X509_pop_free(certs, X509_free);
        return GW_ERR_NOMEM;
    }
    return gw_upstream_conf_set_issuers(pc, cpath, lc->cert_file, certs, u);
}

static void free_local(void *impl)
{
    struct gw_local_conf *lc = impl;

    free(lc->cert_file);
    free(lc->key_file);
    free(lc->key_passphrase_file);
    free(lc->chain_file);
    X509_free(lc->cert);
    EVP_PKEY_free(lc->key);
    sk_X509_pop_free(lc->chain, X509_free);
    free(lc->store_dir);
    free(lc->crl_url);
}

static const struct gw_conf_field local_fields[] = {
    GW_CONF_REQ("cert", gw_conf_p_file, struct gw_local_conf, cert_file),
    GW_CONF_REQ("key", gw_conf_p_file, struct gw_local_conf, key_file),
    GW_CONF_OPT("key_passphrase_file", gw_conf_p_file, struct gw_local_conf, key_passphrase_file),
    GW_CONF_OPT("chain", gw_conf_p_file, struct gw_local_conf, chain_file),
    GW_CONF_OPT("store", gw_conf_p_file, struct gw_local_conf, store_dir),
    GW_CONF_OPT("shared_store", gw_conf_p_bool, struct gw_local_conf, shared_store, .def = false),
    GW_CONF_OPT("crl_url", p_crl_url, struct gw_local_conf, crl_url),
    GW_CONF_OPT("delay", gw_conf_p_dur_ms, struct gw_local_conf, delay_ms, .min = 0,
                .max = GW_MAX_UPSTREAM_DELAY_MS),
};
GW_CONF_OBJDEF(local_def, local_fields, NULL);

const struct gw_upstream_ops gw_upstream_local_ops = {
    .dialect = "local",
    .caps = GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE | GW_UP_CERT_STATUS | GW_UP_CRL |
            GW_UP_STATUS_AT_ONCE | GW_UP_REVOKE_REASON | GW_UP_CERT_LOOKUP,
    .conf_size = sizeof(struct gw_local_conf),
    .conf_def = &local_def,
    .conf_check = check_local,
    .conf_free = free_local,
    .init = local_init,
    .cleanup = local_cleanup,
    .sign = local_sign,
    .revoke_serial = local_revoke_serial,
    .cert_status = local_cert_status,
    .cert_by_serial = local_cert_by_serial,
    .crl = local_crl,
};
