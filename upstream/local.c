/*
 * The local upstream: an in-process issuing CA (DESIGN.md decision 11). It issues exactly the
 * plan the route made (mappings/profile.h), with a random serial, CA:FALSE, and a validity that
 * never outlives the CA's own certificate. Sign calls complete synchronously on the calling thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "gateway/err.h"
#include "gateway/limits.h"
#include "gateway/log.h"
#include "upstream/store.h"
#include "upstream/upstream.h"

#define SERIAL_BYTES ((GW_SERIAL_BITS + 7) / 8)

/* Read-only after init: shared by all workers. */
struct local {
    X509 *ca;
    EVP_PKEY *key;
    STACK_OF(X509) * chain; /* the CA, then conf->chain */
    ASN1_OCTET_STRING *ca_keyid;
    time_t ca_not_before, ca_not_after;
};

static const struct {
    unsigned eku;
    int nid;
} ekus[] = {
    {GW_EKU_SERVER_AUTH, NID_server_auth},
    {GW_EKU_CLIENT_AUTH, NID_client_auth},
    {GW_EKU_CODE_SIGNING, NID_code_sign},
    {GW_EKU_EMAIL_PROTECTION, NID_email_protect},
    {GW_EKU_TIME_STAMPING, NID_time_stamp},
    {GW_EKU_OCSP_SIGNING, NID_OCSP_sign},
    {GW_EKU_CMC_RA, NID_cmcRA},
};

/* KeyUsage named bits (RFC 5280 §4.2.1.3) in OpenSSL's KU_* encoding. */
static const unsigned ku_bits[] = {
    KU_DIGITAL_SIGNATURE, KU_NON_REPUDIATION, KU_KEY_ENCIPHERMENT, KU_DATA_ENCIPHERMENT, KU_KEY_AGREEMENT,
    KU_KEY_CERT_SIGN,     KU_CRL_SIGN,        KU_ENCIPHER_ONLY,    KU_DECIPHER_ONLY,
};

static void local_free(struct local *l)
{
    if (l == NULL)
        return;
    X509_free(l->ca);
    EVP_PKEY_free(l->key);
    sk_X509_pop_free(l->chain, X509_free);
    ASN1_OCTET_STRING_free(l->ca_keyid);
    free(l);
}

static int to_time_t(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    *out = timegm(&tm);
    return 1;
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

static int build_chain(struct local *l, const struct gw_upstream_conf *conf)
{
    int i;

    if ((l->chain = sk_X509_new_null()) == NULL || sk_X509_push(l->chain, l->ca) <= 0)
        return 0;
    X509_up_ref(l->ca);
    for (i = 0; i < sk_X509_num(conf->chain); i++) {
        X509 *c = sk_X509_value(conf->chain, i);

        if (X509_cmp(c, l->ca) == 0)
            continue; /* the chain file may repeat the CA itself */
        if (sk_X509_push(l->chain, c) <= 0)
            return 0;
        X509_up_ref(c);
    }
    return 1;
}

/* The store must be a directory we can write, or every sign would fail: say so at start. */
static int store_usable(const char *dir, char *err, const char *name)
{
    struct stat st;
    int e;

    if (stat(dir, &st) != 0)
        e = errno;
    else if (!S_ISDIR(st.st_mode))
        e = ENOTDIR;
    else if (access(dir, W_OK | X_OK) != 0)
        e = errno;
    else
        return 1;
    snprintf(err, GW_ERR_LEN, "upstream %s: store %s: %s", name, dir, strerror(e));
    return 0;
}

static int local_init(struct gw_upstream *up, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    struct local *l;

    if (conf->cert == NULL || conf->key == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: the local issuer needs a CA certificate and key", conf->name);
        return GW_ERR_INVAL;
    }
    if (X509_check_private_key(conf->cert, conf->key) != 1) {
        snprintf(err, GW_ERR_LEN, "upstream %s: the CA key does not match the CA certificate", conf->name);
        return GW_ERR_INVAL;
    }
    if (X509_check_ca(conf->cert) == 0) {
        snprintf(err, GW_ERR_LEN, "upstream %s: the certificate is not a CA certificate", conf->name);
        return GW_ERR_INVAL;
    }
    if (conf->store_dir != NULL && !store_usable(conf->store_dir, err, conf->name))
        return GW_ERR_INVAL;
    if ((l = calloc(1, sizeof(*l))) == NULL)
        goto nomem;
    X509_up_ref(conf->cert);
    l->ca = conf->cert;
    EVP_PKEY_up_ref(conf->key);
    l->key = conf->key;
    if (!build_chain(l, conf) || (l->ca_keyid = ca_keyid(l->ca)) == NULL)
        goto nomem;
    if (!to_time_t(X509_get0_notBefore(l->ca), &l->ca_not_before) ||
        !to_time_t(X509_get0_notAfter(l->ca), &l->ca_not_after)) {
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

static int add_key_usage(X509 *x, unsigned ku)
{
    ASN1_BIT_STRING *bs;
    size_t i;
    int ok = 0;

    ku &= ~(unsigned)(KU_KEY_CERT_SIGN | KU_CRL_SIGN); /* CA:FALSE (RFC 5280 §4.2.1.3) */
    if (ku == 0)
        return 1;
    if ((bs = ASN1_BIT_STRING_new()) == NULL)
        return 0;
    for (i = 0; i < sizeof(ku_bits) / sizeof(ku_bits[0]); i++) {
        if ((ku & ku_bits[i]) != 0 && ASN1_BIT_STRING_set_bit(bs, (int)i, 1) != 1)
            goto out;
    }
    ok = X509_add1_ext_i2d(x, NID_key_usage, bs, 1, X509V3_ADD_REPLACE) == 1;
out:
    ASN1_BIT_STRING_free(bs);
    return ok;
}

static int add_ext_key_usage(X509 *x, unsigned eku)
{
    EXTENDED_KEY_USAGE *ext;
    size_t i;
    int ok = 0;

    if (eku == 0)
        return 1;
    if ((ext = sk_ASN1_OBJECT_new_null()) == NULL)
        return 0;
    for (i = 0; i < sizeof(ekus) / sizeof(ekus[0]); i++) {
        if ((eku & ekus[i].eku) != 0 && sk_ASN1_OBJECT_push(ext, OBJ_nid2obj(ekus[i].nid)) <= 0)
            goto out;
    }
    ok = X509_add1_ext_i2d(x, NID_ext_key_usage, ext, 0, X509V3_ADD_REPLACE) == 1;
out:
    sk_ASN1_OBJECT_free(ext); /* OBJ_nid2obj objects are static */
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

static int add_extensions(X509 *x, const struct local *l, const struct gw_cert_plan *plan)
{
    int empty_subject = X509_NAME_entry_count(X509_get_subject_name(x)) == 0;

    if (!add_basic_constraints(x) || !add_key_usage(x, plan->key_usage) ||
        !add_ext_key_usage(x, plan->ext_key_usage) || !add_key_ids(x, l))
        return 0;
    /* RFC 5280 §4.2.1.6: critical iff the subject is empty. */
    if (plan->sans != NULL && sk_GENERAL_NAME_num(plan->sans) > 0 &&
        X509_add1_ext_i2d(x, NID_subject_alt_name, plan->sans, empty_subject, X509V3_ADD_REPLACE) != 1)
        return 0;
    return 1;
}

/* The plan's validity, never outside the CA's own. Returns 0 if nothing is left of it. */
static int set_validity(X509 *x, const struct local *l, const struct gw_cert_plan *plan, int *modified)
{
    time_t nb = plan->not_before, na = plan->not_after;

    if (na > l->ca_not_after) {
        na = l->ca_not_after;
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

static void set_error(struct gw_sign_result *res, int status, int fail_info, const char *reason)
{
    res->status = status;
    res->fail_info = fail_info;
    snprintf(res->reason, sizeof(res->reason), "%s", reason);
}

/* issue fills |res| with a certificate made from |plan|, or with the reason it could not be. */
static void issue(const struct local *l, const struct gw_cert_plan *plan, struct gw_sign_result *res)
{
    X509 *x = NULL;

    if (plan->subject == NULL || plan->pubkey == NULL) {
        set_error(res, GW_ERR_INVAL, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                  "the plan has no subject or key");
        return;
    }
    if ((x = X509_new()) == NULL || X509_set_version(x, X509_VERSION_3) != 1 || !set_random_serial(x) ||
        X509_set_issuer_name(x, X509_get_subject_name(l->ca)) != 1 ||
        X509_set_subject_name(x, plan->subject) != 1 || X509_set_pubkey(x, plan->pubkey) != 1)
        goto err;
    if (!set_validity(x, l, plan, &res->modified)) {
        set_error(res, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "the issuing CA certificate is not valid for the requested period");
        X509_free(x);
        return;
    }
    if (!add_extensions(x, l, plan) || X509_sign(x, l->key, sign_md(l->key)) <= 0)
        goto err;
    if ((res->chain = X509_chain_up_ref(l->chain)) == NULL)
        goto err;
    res->cert = x;
    return;
err:
    X509_free(x);
    set_error(res, GW_ERR_CRYPTO, OSSL_CMP_PKIFAILUREINFO_systemFailure, "the local issuer failed to sign");
}

/*
 * Records the certificate in |res| in the upstream's store before it is released (DESIGN.md
 * decision 5: a delegate issuer is outside the upstream CA's inventory, so this is the inventory).
 * If it cannot be recorded, it is dropped: it never left the process, so nothing was issued.
 */
static void record(const struct gw_upstream_conf *conf, const struct gw_sign_req *req,
                   struct gw_sign_result *res)
{
    char err[GW_ERR_LEN];

    if (res->status != 0 || res->cert == NULL || conf->store_dir == NULL)
        return;
    if (gw_store_put(conf->store_dir, res->cert, err) == 0)
        return;
    gw_log_kv(GW_LOG_ERROR, "store_failed", "upstream", conf->name, "tid", req->request_id, "msg", err, NULL);
    gw_sign_result_cleanup(res);
    gw_sign_result_init(res);
    set_error(res, GW_ERR_IO, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
              "the issuer could not record the certificate; nothing was issued");
}

static int local_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                      void *arg)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    const struct local *l = gw_upstream_get0_impl(up);
    struct gw_sign_result *res;

    if (l == NULL || req->plan == NULL)
        return GW_ERR_INVAL;
    if ((res = malloc(sizeof(*res))) == NULL)
        return GW_ERR_NOMEM;
    gw_sign_result_init(res);
    if (conf->delay_ms > 0) {
        /* test knob: hold the calling thread, as a slow CA would */
        struct timespec ts = {.tv_sec = conf->delay_ms / 1000,
                              .tv_nsec = (long)(conf->delay_ms % 1000) * 1000000};

        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    issue(l, req->plan, res);
    record(conf, req, res);
    done(arg, res);
    return 0;
}

const struct gw_upstream_ops gw_upstream_local_ops = {
    .dialect = "local",
    .caps = GW_UP_SIGN_CSR | GW_UP_SIGN_KEY,
    .init = local_init,
    .cleanup = local_cleanup,
    .sign = local_sign,
};
