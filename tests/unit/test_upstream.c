/* Unit tests for upstream/upstream.c and upstream/local.c: issuance, in-flight cap, deadlines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <strings.h>
#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "base/clock.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"
#include "upstream/store.h"
#include "gateway/config.h"
#include "upstream/upstream.h"
#include "upstream/upstream_int.h"

#define LOCAL(c) ((struct gw_local_conf *)(c)->impl) /* a local upstream's own section */
#include "upstream/upstream_test.h"
#include "tests/unit/testutil.h"
#include "tests/unit/testsign.h"

#define DAY 86400
#define WAIT_S 30 /* for a call's answer, the fake's thread (a loaded sanitizer build is slow) */

enum key_id { K_RSA2048, K_P256, K_P384, K_P521, K_ED25519, K_ED448, K_N };

static const char *const key_alg[K_N][2] = {
    [K_RSA2048] = {"RSA", NULL}, [K_P256] = {"EC", "P-256"},      [K_P384] = {"EC", "P-384"},
    [K_P521] = {"EC", "P-521"},  [K_ED25519] = {"ED25519", NULL}, [K_ED448] = {"ED448", NULL},
};

static EVP_PKEY *keys[K_N];
static EVP_PKEY *root_key, *ca_key, *ed_ca_key, *other_key;
static X509 *root, *ca, *ed_ca, *leaf_ca_short;
static time_t now;

static EVP_PKEY *keygen(enum key_id k)
{
    if (k == K_RSA2048)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (key_alg[k][1] != NULL)
        return EVP_PKEY_Q_keygen(NULL, NULL, key_alg[k][0], key_alg[k][1]);
    return EVP_PKEY_Q_keygen(NULL, NULL, key_alg[k][0]);
}

static const EVP_MD *md_for(EVP_PKEY *k)
{
    int id = EVP_PKEY_get_base_id(k);

    return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *e;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    assert_non_null(e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value));
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A CA certificate for |key| (self-signed when |issuer| is NULL), valid [nb, na]; |bc| e.g.
 * "critical,CA:TRUE". */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, time_t nb,
                       time_t na, const char *bc)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    ASN1_INTEGER *serial = ASN1_INTEGER_new();

    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    ASN1_INTEGER_set(serial, 1 + (long)(rand() % 100000));
    X509_set_version(x, X509_VERSION_3);
    X509_set_serialNumber(x, serial);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
    X509_set_pubkey(x, key);
    ASN1_TIME_set(X509_getm_notBefore(x), nb);
    ASN1_TIME_set(X509_getm_notAfter(x), na);
    add_ext(x, issuer != NULL ? issuer : x, NID_basic_constraints, bc);
    if (strstr(bc, "CA:TRUE") != NULL)
        add_ext(x, issuer != NULL ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(x, issuer != NULL ? issuer : x, NID_subject_key_identifier, "hash");
    if (issuer != NULL)
        add_ext(x, issuer, NID_authority_key_identifier, "keyid");
    assert_true(X509_sign(x, issuer_key != NULL ? issuer_key : key,
                          md_for(issuer_key != NULL ? issuer_key : key)) > 0);
    X509_NAME_free(name);
    ASN1_INTEGER_free(serial);
    return x;
}

static int setup(void **state)
{
    int i;

    (void)state;
    now = time(NULL);
    for (i = 0; i < K_N; i++) {
        if ((keys[i] = keygen((enum key_id)i)) == NULL)
            return -1;
    }
    root_key = keygen(K_P384);
    ca_key = keygen(K_P256);
    ed_ca_key = keygen(K_ED25519);
    other_key = keygen(K_P256);
    root = make_cert("test root", root_key, NULL, NULL, now - DAY, now + 3650 * DAY, "critical,CA:TRUE");
    ca = make_cert("test issuing", ca_key, root, root_key, now - DAY, now + 365 * DAY,
                   "critical,CA:TRUE,pathlen:0");
    ed_ca =
        make_cert("test ed25519 root", ed_ca_key, NULL, NULL, now - DAY, now + 365 * DAY, "critical,CA:TRUE");
    leaf_ca_short = make_cert("short issuing", other_key, root, root_key, now - DAY, now + 2 * DAY,
                              "critical,CA:TRUE,pathlen:0");
    return 0;
}

static int teardown(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < K_N; i++)
        EVP_PKEY_free(keys[i]);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(ed_ca_key);
    EVP_PKEY_free(other_key);
    X509_free(root);
    X509_free(ca);
    X509_free(ed_ca);
    X509_free(leaf_ca_short);
    return 0;
}

/* A local upstream conf over |cert|/|key| with |chain_cert| as its chain (may be NULL). */
static void conf_init(struct gw_upstream_conf *c, const char *name, X509 *cert, EVP_PKEY *key,
                      X509 *chain_cert)
{
    struct gw_local_conf *lc = calloc(1, sizeof(*lc));

    assert_non_null(lc);
    memset(c, 0, sizeof(*c));
    c->name = (char *)name;
    c->ops = &gw_upstream_local_ops;
    c->impl = lc;
    c->timeout_ms = 5000;
    c->max_inflight = 8;
    lc->cert = cert;
    lc->key = key;
    c->own_ca = cert;     /* as its configuration check sets it: the CA it may revoke for */
    c->owner = geteuid(); /* as the configuration's parser sets it */
    lc->chain = sk_X509_new_null();
    if (chain_cert != NULL)
        sk_X509_push(lc->chain, chain_cert);
}

static void conf_cleanup(struct gw_upstream_conf *c)
{
    sk_X509_free(LOCAL(c)->chain); /* entries are borrowed */
    free(c->impl);
}

static void plan_init(struct gw_cert_plan *p, EVP_PKEY *key, const char *cn, const char *sans)
{
    gw_cert_plan_init(p);
    p->subject = X509_NAME_new();
    if (cn != NULL)
        X509_NAME_add_entry_by_txt(p->subject, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    if (sans != NULL) {
        X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, sans);

        assert_non_null(e);
        assert_non_null(p->sans = X509V3_EXT_d2i(e));
        X509_EXTENSION_free(e);
    }
    EVP_PKEY_up_ref(key);
    p->pubkey = key;
    p->not_before = now - GW_BACKDATE_SECS;
    p->not_after = now + 7 * DAY;
    p->key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT;
    p->ext_key_usage = GW_EKU_CLIENT_AUTH | GW_EKU_SERVER_AUTH;
}

/* The EKU extension as gw_eku bits (independent of local.c's own table). */
static unsigned eku_bits(X509 *x)
{
    static const struct {
        int nid;
        unsigned bit;
    } map[] = {{NID_server_auth, GW_EKU_SERVER_AUTH},
               {NID_client_auth, GW_EKU_CLIENT_AUTH},
               {NID_code_sign, GW_EKU_CODE_SIGNING},
               {NID_email_protect, GW_EKU_EMAIL_PROTECTION},
               {NID_time_stamp, GW_EKU_TIME_STAMPING},
               {NID_OCSP_sign, GW_EKU_OCSP_SIGNING},
               {NID_cmcRA, GW_EKU_CMC_RA}};
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    unsigned bits = 0;
    size_t j;

    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
        int nid = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)), found = 0;

        for (j = 0; j < sizeof(map) / sizeof(map[0]); j++) {
            if (map[j].nid == nid) {
                assert_int_equal(bits & map[j].bit, 0); /* no duplicates */
                bits |= map[j].bit;
                found = 1;
            }
        }
        assert_true(found);
    }
    EXTENDED_KEY_USAGE_free(eku);
    return bits;
}

static int serial_bits(const X509 *x, int *negative)
{
    const ASN1_INTEGER *s = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(s, NULL);
    int bits = BN_num_bits(bn);

    *negative = ASN1_STRING_type(s) == V_ASN1_NEG_INTEGER || BN_is_negative(bn);
    BN_free(bn);
    return bits;
}

/* The certificate verifies up to |anchor| through |chain|, for the given purpose. */
static int verifies(X509 *cert, STACK_OF(X509) *chain, X509 *anchor)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok;

    X509_STORE_add_cert(store, anchor);
    X509_STORE_CTX_init(ctx, store, cert, chain);
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
    ok = X509_verify_cert(ctx);
    if (ok != 1)
        print_message("verify: %s\n", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static void check_issued(const struct gw_sign_result *res, const struct gw_cert_plan *plan, X509 *issuer)
{
    const BASIC_CONSTRAINTS *bc;
    GENERAL_NAMES *sans;
    int crit = -1, neg, bits;

    assert_int_equal(res->status, 0);
    assert_non_null(res->cert);
    assert_int_equal(X509_get_version(res->cert), X509_VERSION_3);
    bits = serial_bits(res->cert, &neg);
    assert_false(neg);
    assert_true(bits > 64 && bits <= GW_SERIAL_BITS);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(res->cert), X509_get_subject_name(issuer)), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(res->cert), plan->subject), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(res->cert), plan->pubkey), 1);
    assert_int_equal(X509_verify(res->cert, X509_get0_pubkey(issuer)), 1);
    /* CA:FALSE, critical, always */
    bc = X509_get_ext_d2i(res->cert, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_false(bc->ca);
    BASIC_CONSTRAINTS_free((BASIC_CONSTRAINTS *)bc);
    assert_int_equal(X509_check_ca(res->cert), 0);
    /* KU and EKU exactly as planned */
    assert_int_equal(X509_get_key_usage(res->cert), plan->key_usage != 0 ? plan->key_usage : UINT32_MAX);
    assert_int_equal(X509_get_ext_by_NID(res->cert, NID_key_usage, -1) >= 0, plan->key_usage != 0);
    if (plan->key_usage != 0)
        assert_int_equal(X509_EXTENSION_get_critical(
                             X509_get_ext(res->cert, X509_get_ext_by_NID(res->cert, NID_key_usage, -1))),
                         1);
    assert_int_equal(X509_get_ext_by_NID(res->cert, NID_ext_key_usage, -1) >= 0, plan->ext_key_usage != 0);
    assert_int_equal(eku_bits(res->cert), plan->ext_key_usage);
    /* SAN exactly as planned, critical iff the subject is empty */
    sans = X509_get_ext_d2i(res->cert, NID_subject_alt_name, &crit, NULL);
    if (plan->sans == NULL) {
        assert_null(sans);
    } else {
        assert_non_null(sans);
        assert_int_equal(sk_GENERAL_NAME_num(sans), sk_GENERAL_NAME_num(plan->sans));
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++)
            assert_int_equal(
                GENERAL_NAME_cmp(sk_GENERAL_NAME_value(sans, i), sk_GENERAL_NAME_value(plan->sans, i)), 0);
        assert_int_equal(crit, X509_NAME_entry_count(plan->subject) == 0);
    }
    GENERAL_NAMES_free(sans);
    /* key identifiers */
    assert_non_null(X509_get0_subject_key_id(res->cert));
    assert_non_null(X509_get0_authority_key_id(res->cert));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(res->cert), X509_get0_subject_key_id(issuer)), 0);
    /* the chain starts with the issuer */
    assert_non_null(res->chain);
    assert_int_equal(X509_cmp(sk_X509_value(res->chain, 0), issuer), 0);
}

static void sign(struct gw_upstream *up, const struct gw_cert_plan *plan, struct gw_sign_result *res)
{
    struct gw_sign_req req = {.plan = plan, .request_id = "00112233"};

    tu_sign_wait(up, &req, res);
}

static void test_issue_each_key_type(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int i;

    (void)state;
    conf_init(&conf, "local", ca, ca_key, root);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    for (i = 0; i < K_N; i++) {
        plan_init(&plan, keys[i], "device-1", "DNS:dev1.example,IP:127.0.0.1,IP:::1");
        sign(up, &plan, &res);
        check_issued(&res, &plan, ca);
        assert_int_equal(sk_X509_num(res.chain), 2);
        assert_int_equal(X509_cmp(sk_X509_value(res.chain, 1), root), 0);
        assert_int_equal(verifies(res.cert, res.chain, root), 1);
        assert_true(X509_cmp_time(X509_get0_notAfter(res.cert), &(time_t){plan.not_after - 1}) > 0);
        assert_true(X509_cmp_time(X509_get0_notAfter(res.cert), &(time_t){plan.not_after + 1}) < 0);
        assert_int_equal(res.modified, 0);
        gw_sign_result_cleanup(&res);
        gw_cert_plan_cleanup(&plan);
    }
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/*
 * gw_upstream_is_own_ca answers for the very objects the upstream issues under, which its issuer store
 * holds: a copy alike is some certificate an upstream sent, whose signer is verified, not assumed.
 */
static void test_own_ca_is_the_object(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char err[GW_ERR_LEN];
    X509 *copy;

    (void)state;
    conf_init(&conf, "local", ca, ca_key, root);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    assert_non_null(copy = X509_dup(gw_upstream_conf_issuing_ca(&conf)));
    assert_true(gw_upstream_is_own_ca(up, gw_upstream_conf_issuing_ca(&conf)));
    assert_false(gw_upstream_is_own_ca(up, copy));
    assert_false(gw_upstream_is_own_ca(up, root));
    assert_false(gw_upstream_is_own_ca(up, NULL));
    X509_free(copy);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* |key| as a request carries it: a SubjectPublicKeyInfo as OpenSSL decodes it (its DER in *der). */
static X509_PUBKEY *decoded_spki(EVP_PKEY *key, unsigned char **der, int *len)
{
    const unsigned char *p;
    X509_PUBKEY *spki;

    *der = NULL;
    assert_true((*len = i2d_PUBKEY(key, der)) > 0);
    p = *der;
    assert_non_null(spki = d2i_X509_PUBKEY(NULL, &p, *len));
    return spki;
}

/*
 * The local issuer's certificate keeps the encoding it was signed with, as one parsed from the wire
 * does: its DER is what the signature covers, and a field changed after the signature (which nothing
 * does) shows in neither, where a certificate left as X509_sign leaves it is encoded anew each time.
 */
static void test_issue_keeps_signed_encoding(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    unsigned char *der = NULL, *again = NULL, *pder = NULL, *pagain = NULL;
    const unsigned char *p;
    char err[GW_ERR_LEN];
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    X509 *parsed;
    int len, plen;

    (void)state;
    conf_init(&conf, "local", ca, ca_key, root);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    plan_init(&plan, keys[K_P256], "device-1", NULL);
    sign(up, &plan, &res);
    check_issued(&res, &plan, ca);
    assert_int_equal(X509_verify(res.cert, X509_get0_pubkey(ca)), 1);
    assert_true((len = i2d_X509(res.cert, &der)) > 0);
    p = der;
    assert_non_null(parsed = d2i_X509(NULL, &p, len));
    assert_int_equal(X509_verify(parsed, X509_get0_pubkey(ca)), 1);
    assert_int_equal(X509_cmp(parsed, res.cert), 0);

    /* the same change to both: neither encoding moves, as neither certificate is signed again */
    assert_int_equal(ASN1_INTEGER_set(serial, 42), 1);
    assert_int_equal(X509_set_serialNumber(res.cert, serial), 1);
    assert_int_equal(X509_set_serialNumber(parsed, serial), 1);
    assert_int_equal(i2d_X509(res.cert, &again), len);
    assert_memory_equal(again, der, (size_t)len);
    assert_true((plen = i2d_X509(parsed, &pder)) > 0);
    assert_int_equal(i2d_X509(parsed, &pagain), plen);
    assert_memory_equal(pagain, der, (size_t)len);

    OPENSSL_free(der);
    OPENSSL_free(again);
    OPENSSL_free(pder);
    OPENSSL_free(pagain);
    ASN1_INTEGER_free(serial);
    X509_free(parsed);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* A plan that keeps the request's SubjectPublicKeyInfo: the issuer copies an EC or EdDSA key (its
 * own key object, not the plan's), and the certificate's encoding carries exactly those bytes. Among
 * the keys, a P-256 key whose encoding ends in a zero bit, which a copy that lost the BIT STRING's
 * count of unused bits would encode as another key. */
static void test_issue_copies_request_spki(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    EVP_PKEY *trailing = NULL, *try[K_N + 1];
    unsigned char *der, *got, *cert_der;
    const unsigned char *p;
    char err[GW_ERR_LEN];
    X509 *parsed;
    int len, got_len, cert_len;

    (void)state;
    for (int n = 0; n < 256 && trailing == NULL; n++) {
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        unsigned char pt[65];
        size_t pt_len = 0;

        assert_int_equal(
            EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt), &pt_len),
            1);
        if ((pt[pt_len - 1] & 1) == 0)
            trailing = k;
        else
            EVP_PKEY_free(k);
    }
    assert_non_null(trailing);
    for (int i = 0; i < K_N; i++)
        try[i] = keys[i];
    try[K_N] = trailing;
    conf_init(&conf, "local", ca, ca_key, root);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    for (int i = 0; i <= K_N; i++) {
        plan_init(&plan, try[i], "device-1", NULL);
        plan.spki = decoded_spki(try[i], &der, &len);
        sign(up, &plan, &res);
        check_issued(&res, &plan, ca);
        /* copied (an EC or EdDSA key), or encoded again by X509_set_pubkey (RSA) */
        if (i == K_RSA2048)
            assert_ptr_equal(X509_get0_pubkey(res.cert), plan.pubkey);
        else
            assert_ptr_not_equal(X509_get0_pubkey(res.cert), plan.pubkey);
        assert_true((cert_len = i2d_X509(res.cert, NULL)) > 0);
        cert_der = NULL;
        assert_int_equal(i2d_X509(res.cert, &cert_der), cert_len);
        p = cert_der;
        assert_non_null(parsed = d2i_X509(NULL, &p, cert_len));
        got = NULL;
        assert_int_equal(got_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(parsed), &got), len);
        assert_memory_equal(got, der, (size_t)len);
        assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(parsed), try[i]), 1);
        assert_int_equal(X509_verify(parsed, X509_get0_pubkey(ca)), 1);
        OPENSSL_free(got);
        OPENSSL_free(cert_der);
        OPENSSL_free(der);
        X509_free(parsed);
        gw_sign_result_cleanup(&res);
        gw_cert_plan_cleanup(&plan);
    }
    /* without it, the issuer encodes the plan's key */
    plan_init(&plan, keys[K_P256], "device-1", NULL);
    sign(up, &plan, &res);
    check_issued(&res, &plan, ca);
    assert_ptr_equal(X509_get0_pubkey(res.cert), plan.pubkey);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    EVP_PKEY_free(trailing);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* An RSA key whose RSAPublicKey has bytes after it, which OpenSSL 3.0 decodes all the same: never
 * copied into a certificate, which carries the key's canonical encoding instead. */
static void test_issue_recodes_lenient_rsa(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    X509_PUBKEY *lax = X509_PUBKEY_new(), *decoded;
    unsigned char *bits = NULL, *der = NULL, *canon = NULL, *got = NULL;
    const unsigned char *p;
    char err[GW_ERR_LEN];
    int n, len, canon_len;

    (void)state;
    assert_true((n = i2d_PublicKey(keys[K_RSA2048], &bits)) > 0); /* RSAPublicKey */
    assert_non_null(bits = OPENSSL_realloc(bits, (size_t)n + 4));
    memcpy(bits + n, "\xde\xad\xbe\xef", 4);
    assert_int_equal(
        X509_PUBKEY_set0_param(lax, OBJ_nid2obj(NID_rsaEncryption), V_ASN1_NULL, NULL, bits, n + 4), 1);
    assert_true((len = i2d_X509_PUBKEY(lax, &der)) > 0);
    p = der;
    assert_non_null(decoded = d2i_X509_PUBKEY(NULL, &p, len));
    assert_non_null(X509_PUBKEY_get0(decoded)); /* OpenSSL takes it */
    assert_int_equal(EVP_PKEY_eq(X509_PUBKEY_get0(decoded), keys[K_RSA2048]), 1);
    assert_null(gw_x509_pubkey_copy(decoded));

    conf_init(&conf, "local", ca, ca_key, root);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    plan_init(&plan, keys[K_RSA2048], "device-1", NULL);
    plan.spki = decoded;
    sign(up, &plan, &res);
    check_issued(&res, &plan, ca);
    assert_true((canon_len = i2d_PUBKEY(keys[K_RSA2048], &canon)) > 0);
    assert_int_equal(i2d_X509_PUBKEY(X509_get_X509_PUBKEY(res.cert), &got), canon_len);
    assert_memory_equal(got, canon, (size_t)canon_len);
    OPENSSL_free(got);
    OPENSSL_free(canon);
    OPENSSL_free(der);
    X509_PUBKEY_free(lax);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* Ed25519 CA: signed with no digest; the chain repeats no certificate when the chain file holds the CA. */
static void test_issue_ed25519_ca(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];

    (void)state;
    conf_init(&conf, "ed", ed_ca, ed_ca_key, ed_ca);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    plan_init(&plan, keys[K_RSA2048], "rsa-device", NULL);
    sign(up, &plan, &res);
    check_issued(&res, &plan, ed_ca);
    assert_int_equal(X509_get_signature_nid(res.cert), NID_ED25519);
    assert_int_equal(sk_X509_num(res.chain), 1);
    assert_int_equal(verifies(res.cert, res.chain, ed_ca), 1);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* Profile edges: empty subject (critical SAN), no KU/EKU, keyCertSign never issued, a stranger never
 * verifies. */
static void test_issue_profile_edges(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];

    (void)state;
    conf_init(&conf, "local", ca, ca_key, root);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));

    plan_init(&plan, keys[K_P256], NULL, "URI:urn:example:device:7");
    plan.key_usage = 0;
    plan.ext_key_usage = 0;
    sign(up, &plan, &res);
    check_issued(&res, &plan, ca);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);

    plan_init(&plan, keys[K_P256], "sneaky", NULL);
    plan.key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_CERT_SIGN | KU_CRL_SIGN;
    plan.ext_key_usage = GW_EKU_CMC_RA | GW_EKU_OCSP_SIGNING;
    sign(up, &plan, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(X509_get_key_usage(res.cert), KU_DIGITAL_SIGNATURE);
    assert_int_equal(eku_bits(res.cert), GW_EKU_CMC_RA | GW_EKU_OCSP_SIGNING);
    assert_int_equal(X509_check_ca(res.cert), 0);
    /* issued by |ca|: does not verify against an unrelated anchor */
    assert_int_not_equal(verifies(res.cert, NULL, ed_ca), 1);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);

    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* Serials: random, distinct, positive, more than 64 bits. */
static void test_issue_serials(void **state)
{
    enum { N = 32 };
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    ASN1_INTEGER *seen[N];
    char err[GW_ERR_LEN];
    int i, j, neg, bits, max_bits = 0;

    (void)state;
    conf_init(&conf, "local", ca, ca_key, root);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    plan_init(&plan, keys[K_ED25519], "serials", NULL);
    for (i = 0; i < N; i++) {
        sign(up, &plan, &res);
        assert_int_equal(res.status, 0);
        bits = serial_bits(res.cert, &neg);
        assert_false(neg);
        assert_true(bits > 64);
        max_bits = bits > max_bits ? bits : max_bits;
        seen[i] = ASN1_INTEGER_dup(X509_get0_serialNumber(res.cert));
        for (j = 0; j < i; j++)
            assert_int_not_equal(ASN1_INTEGER_cmp(seen[i], seen[j]), 0);
        gw_sign_result_cleanup(&res);
    }
    assert_true(max_bits > 150); /* all 159 bits are used, not a short counter */
    for (i = 0; i < N; i++)
        ASN1_INTEGER_free(seen[i]);
    gw_cert_plan_cleanup(&plan);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* Validity never beyond the CA's own notAfter; a plan entirely beyond it is refused. */
static void test_issue_validity_clamp(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];

    (void)state;
    conf_init(&conf, "short", leaf_ca_short, other_key, root);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    plan_init(&plan, keys[K_P256], "clamped", NULL);
    plan.not_after = now + 30 * DAY;
    sign(up, &plan, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.modified, 1);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(res.cert), X509_get0_notAfter(leaf_ca_short)), 0);
    assert_int_equal(verifies(res.cert, res.chain, root), 1);
    gw_sign_result_cleanup(&res);

    /* cut by no more than GW_ISSUED_SHORTEN_SLACK: no change, as the issued check judges it */
    plan.not_after = now + 2 * DAY + GW_ISSUED_SHORTEN_SLACK;
    sign(up, &plan, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.modified, 0);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(res.cert), X509_get0_notAfter(leaf_ca_short)), 0);
    gw_sign_result_cleanup(&res);
    plan.not_after = now + 2 * DAY + GW_ISSUED_SHORTEN_SLACK + 1;
    sign(up, &plan, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.modified, 1);
    gw_sign_result_cleanup(&res);

    plan.not_before = now + 3 * DAY; /* starts after the CA expires */
    sign(up, &plan, &res);
    assert_int_equal(res.status, GW_ERR_UPSTREAM);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_null(res.cert);
    assert_null(res.chain);
    assert_non_null(strstr(res.reason, "not valid for the requested period"));
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* Misconfigured local issuers are refused at creation, with the upstream's name. */
static void test_local_init_errors(void **state)
{
    static const struct {
        X509 **cert;
        EVP_PKEY **key;
        const char *err;
    } cases[] = {
        {&ca, &other_key, "does not match"},
        {NULL, &ca_key, "needs a CA certificate"},
        {&ca, NULL, "needs a CA certificate"},
    };
    struct gw_upstream_conf conf;
    char err[GW_ERR_LEN];
    X509 *leaf;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        conf_init(&conf, "bad", cases[i].cert != NULL ? *cases[i].cert : NULL,
                  cases[i].key != NULL ? *cases[i].key : NULL, NULL);
        assert_null(gw_upstream_new(&conf, NULL, err));
        assert_non_null(strstr(err, cases[i].err));
        assert_non_null(strstr(err, "upstream bad"));
        conf_cleanup(&conf);
    }
    leaf = make_cert("not a ca", other_key, root, root_key, now - DAY, now + DAY, "critical,CA:FALSE");
    conf_init(&conf, "bad", leaf, other_key, NULL);
    assert_null(gw_upstream_new(&conf, NULL, err));
    assert_non_null(strstr(err, "not a CA certificate"));
    conf.ops = NULL; /* no adapter: a type the configuration does not know */
    assert_null(gw_upstream_new(&conf, NULL, err));
    assert_non_null(strstr(err, "no adapter"));
    conf.ops = &gw_upstream_local_ops;
    assert_null(gw_upstream_new(NULL, NULL, err));
    conf_cleanup(&conf);
    X509_free(leaf);
}

/* ---- asynchronous test adapter: holds calls until the test completes them ---- */

#define HOLD_MAX 16

static struct {
    pthread_mutex_t lock;
    gw_upstream_done_fn done[HOLD_MAX];
    void *arg[HOLD_MAX];
    int n;
    int delay_ms; /* > 0: complete from a thread after this long */
    X509 *cert;   /* what completions carry */
} hold = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int hold_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                     void *arg);

static const struct gw_upstream_ops hold_ops = {.dialect = "hold", .sign = hold_sign};

static struct gw_sign_result *hold_result(void)
{
    struct gw_sign_result *res = malloc(sizeof(*res));

    gw_sign_result_init(res);
    if (hold.cert != NULL) {
        X509_up_ref(hold.cert);
        res->cert = hold.cert;
    } else {
        res->status = GW_ERR_UPSTREAM;
        snprintf(res->reason, sizeof(res->reason), "held");
    }
    return res;
}

static void *late_thread(void *arg)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)hold.delay_ms * 1000000};
    int i = (int)(intptr_t)arg;

    nanosleep(&ts, NULL);
    hold.done[i](hold.arg[i], hold_result());
    return NULL;
}

static pthread_t late_threads[HOLD_MAX];

static int hold_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                     void *arg)
{
    int i;

    (void)up;
    (void)req;
    pthread_mutex_lock(&hold.lock);
    i = hold.n++;
    hold.done[i] = done;
    hold.arg[i] = arg;
    pthread_mutex_unlock(&hold.lock);
    if (hold.delay_ms > 0)
        pthread_create(&late_threads[i], NULL, late_thread, (void *)(intptr_t)i);
    return 0;
}

static int results_seen;

static void count_done(void *arg, struct gw_sign_result *res)
{
    (void)arg;
    results_seen++;
    gw_sign_result_cleanup(res);
    free(res);
}

/* At max_inflight, submit refuses at once; a completion frees a slot. */
static void test_inflight_cap(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_cert_plan plan;
    struct gw_sign_req req = {.plan = &plan, .request_id = "aa"};
    struct gw_sign_result res;
    char err[GW_ERR_LEN];
    int i;

    (void)state;
    conf_init(&conf, "capped", NULL, NULL, NULL);
    conf.max_inflight = 2;
    hold.n = 0;
    hold.delay_ms = 0;
    hold.cert = NULL;
    results_seen = 0;
    plan_init(&plan, keys[K_P256], "x", NULL);
    assert_non_null(up = gw_upstream_new_ops(&conf, &hold_ops, NULL, err));
    assert_int_equal(gw_upstream_sign_submit(up, &req, count_done, NULL), 0);
    assert_int_equal(gw_upstream_sign_submit(up, &req, count_done, NULL), 0);
    assert_int_equal(gw_upstream_sign_submit(up, &req, count_done, NULL), GW_ERR_BUSY);
    tu_sign_wait(up, &req, &res);
    assert_int_equal(res.status, GW_ERR_BUSY);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_string_equal(res.reason, "upstream capped is at its limit of 2 calls in flight");
    assert_null(res.cert);
    assert_int_equal(hold.n, 2); /* the adapter never saw the refused calls */
    hold.done[0](hold.arg[0], hold_result());
    assert_int_equal(results_seen, 1);
    assert_int_equal(gw_upstream_sign_submit(up, &req, count_done, NULL), 0);
    assert_int_equal(gw_upstream_sign_submit(up, &req, count_done, NULL), GW_ERR_BUSY);
    for (i = 1; i < hold.n; i++)
        hold.done[i](hold.arg[i], hold_result());
    assert_int_equal(results_seen, 3);
    /* bad arguments: refused, nothing counted */
    assert_int_equal(gw_upstream_sign_submit(up, &(struct gw_sign_req){.plan = NULL}, count_done, NULL),
                     GW_ERR_INVAL);
    assert_int_equal(gw_upstream_sign_submit(up, &req, NULL, NULL), GW_ERR_INVAL);
    assert_int_equal(gw_upstream_sign_submit(NULL, &req, count_done, NULL), GW_ERR_INVAL);
    assert_int_equal(gw_upstream_sign_submit(up, &req, count_done, NULL), 0);
    assert_int_equal(gw_upstream_sign_submit(up, &req, count_done, NULL), 0);
    hold.done[hold.n - 2](hold.arg[hold.n - 2], hold_result());
    hold.done[hold.n - 1](hold.arg[hold.n - 1], hold_result());
    gw_upstream_free(up);
    gw_cert_plan_cleanup(&plan);
    conf_cleanup(&conf);
}

/* An adapter that refuses every call without calling back. */
static int refuse_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                       void *arg)
{
    (void)up;
    (void)req;
    (void)done;
    (void)arg;
    return GW_ERR_UPSTREAM;
}

static const struct gw_upstream_ops refuse_ops = {.dialect = "refuse", .sign = refuse_sign};

/* What an asynchronous call was answered with, handed from its call thread. */
struct captured {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct gw_sign_result *res;
};

static void capture_done(void *arg, struct gw_sign_result *res)
{
    struct captured *c = arg;

    pthread_mutex_lock(&c->lock);
    c->res = res;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* |c|'s answer, waited for at most WAIT_S. */
static struct gw_sign_result *captured_wait(struct captured *c)
{
    struct timespec until = tu_deadline(WAIT_S);
    struct gw_sign_result *res;

    pthread_mutex_lock(&c->lock);
    while (c->res == NULL && tu_wait_until(&c->cond, &c->lock, &until) == 0)
        ;
    res = c->res;
    c->res = NULL;
    pthread_mutex_unlock(&c->lock);
    if (res == NULL) /* the call still uses |c| */
        tu_end_run("an asynchronous call was not answered within WAIT_S");
    return res;
}

/* A call to an upstream whose adapter is one of the fakes above, and what it was answered. */
struct fake_call {
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_cert_plan plan;
    struct gw_sign_req req;
    struct gw_sign_result res; /* a blocking wait's answer */
    struct captured cap;       /* an asynchronous call's */
};

/* |f|: upstream |name| of adapter |ops|, with |timeout_ms| and |max_inflight| (0: conf_init's), and
 * a call to it of request id |rid|. */
static void fake_call_init(struct fake_call *f, const char *name, const struct gw_upstream_ops *ops,
                           uint32_t timeout_ms, uint32_t max_inflight, const char *rid)
{
    char err[GW_ERR_LEN];

    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->cap.lock, NULL);
    pthread_cond_init(&f->cap.cond, NULL);
    conf_init(&f->conf, name, NULL, NULL, NULL);
    if (timeout_ms != 0)
        f->conf.timeout_ms = timeout_ms;
    if (max_inflight != 0)
        f->conf.max_inflight = max_inflight;
    plan_init(&f->plan, keys[K_P256], "x", NULL);
    f->req = (struct gw_sign_req){.plan = &f->plan, .request_id = rid};
    assert_non_null(f->up = gw_upstream_new_ops(&f->conf, ops, NULL, err));
}

static void fake_call_cleanup(struct fake_call *f)
{
    gw_upstream_free(f->up);
    gw_cert_plan_cleanup(&f->plan);
    conf_cleanup(&f->conf);
    pthread_cond_destroy(&f->cap.cond);
    pthread_mutex_destroy(&f->cap.lock);
}

/* Upstream "refusing": one slot, its adapter refusing every call. */
static void refusing_init(struct fake_call *f)
{
    fake_call_init(f, "refusing", &refuse_ops, 0, 1, "ab");
}

/* Frees |f|, asserting that every slot came back. */
static void refusing_cleanup(struct fake_call *f)
{
    assert_true(gw_upstream_free(f->up));
    f->up = NULL;
    fake_call_cleanup(f);
}

/* |res| is the refusal of upstream "refusing" that its adapter's refusal becomes; frees it. */
static void assert_refusing_refused(struct gw_sign_result *res)
{
    assert_int_not_equal(res->status, 0);
    assert_int_equal(res->fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
    assert_non_null(strstr(res->reason, "upstream refusing refused the request"));
    gw_sign_result_cleanup(res);
    free(res);
}

/*
 * An adapter's refusal of an asynchronous call reaches |done| as a refusal naming the upstream, and
 * the call's slot is free again by then (the refusal is built while the slot still holds |up|).
 */
static void test_async_refused(void **state)
{
    struct gw_sign_result *res;
    struct fake_call r;

    (void)state;
    refusing_init(&r);
    for (int i = 0; i < 2; i++) { /* the second call gets the one slot again */
        assert_int_equal(gw_upstream_sign_async(r.up, &r.req, capture_done, &r.cap), 0);
        res = captured_wait(&r.cap);
        assert_int_equal(res->status, GW_ERR_UPSTREAM);
        assert_null(res->cert);
        assert_refusing_refused(res);
    }
    refusing_cleanup(&r);
}

/*
 * Memory running out at any allocation of an asynchronous call still answers its request: at once (the
 * call is refused, |done| not called) or through |done| with a refusal. Once, the call thread's own
 * allocations failing lost the refusal too: |done| was never called, and the CMP request waited for
 * an answer until its client gave up.
 */
static void test_async_out_of_memory(void **state)
{
    struct fake_call r;
    int rc, n;

    (void)state;
    refusing_init(&r);
    for (n = 0; n < 8; n++) { /* the first n allocations succeed, then memory runs out */
        struct timespec until;
        struct gw_sign_result *res = NULL;

        gw_upstream_test_fail_async_allocs(n);
        rc = gw_upstream_sign_async(r.up, &r.req, capture_done, &r.cap);
        if (rc == 0) {
            until = tu_deadline(WAIT_S);
            pthread_mutex_lock(&r.cap.lock);
            while (r.cap.res == NULL && tu_wait_until(&r.cap.cond, &r.cap.lock, &until) == 0)
                ;
            res = r.cap.res;
            r.cap.res = NULL;
            pthread_mutex_unlock(&r.cap.lock);
        }
        gw_upstream_test_fail_async_allocs(-1);
        if (rc == 0 && res == NULL)
            fail_msg("%d allocations, then none: accepted, but never answered", n);
        if (rc != 0) {
            assert_int_equal(rc, GW_ERR_NOMEM);
            continue;
        }
        assert_refusing_refused(res);
    }
    refusing_cleanup(&r);
}

/*
 * Upstream "slow", a 30 ms timeout, its adapter answering with |root| (a "late" certificate: logged,
 * then freed) 150 ms after the call, from a thread of its own (hold).
 */
static void late_init(struct fake_call *f)
{
    hold.n = 0;
    hold.delay_ms = 150;
    hold.cert = root;
    fake_call_init(f, "slow", &hold_ops, 30, 0, "0badc0de");
}

/* The blocking wait for |arg|'s (a struct fake_call) call, into its |res|; then its upstream freed,
 * which waits for the late completion. */
static void late_wait_call(void *arg)
{
    struct fake_call *l = arg;

    gw_upstream_sign_wait(l->up, &l->req, &l->res);
    gw_upstream_free(l->up);
    l->up = NULL;
    pthread_join(late_threads[0], NULL);
}

/* late_wait_call, waited for at most WAIT_S. */
static void late_wait_run(void *arg)
{
    tu_run_within(late_wait_call, arg, WAIT_S, "a late call's wait and its upstream's end took over WAIT_S");
}

static void late_cleanup(struct fake_call *l)
{
    hold.cert = NULL;
    hold.delay_ms = 0;
    fake_call_cleanup(l);
}

/* A completion after the deadline (from another thread) lands safely and is disposed of. */
static void test_timeout_late_async(void **state)
{
    char err[GW_ERR_LEN];
    struct fake_call l;

    (void)state;
    late_init(&l);
    late_wait_run(&l);
    assert_int_equal(l.res.status, GW_ERR_TIMEOUT);
    assert_int_equal(l.res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_string_equal(
        l.res.reason,
        "upstream slow did not answer within 30 ms; the outcome is unknown, do not retry blindly");
    assert_null(l.res.cert);

    /* the twin: the same adapter answering in time delivers the certificate */
    l.conf.timeout_ms = 2000;
    hold.n = 0;
    hold.delay_ms = 10;
    assert_non_null(l.up = gw_upstream_new_ops(&l.conf, &hold_ops, NULL, err));
    tu_sign_wait(l.up, &l.req, &l.res);
    pthread_join(late_threads[0], NULL); /* it answered: its thread is ending */
    assert_int_equal(l.res.status, 0);
    assert_ptr_equal(l.res.cert, root);
    gw_sign_result_cleanup(&l.res);
    late_cleanup(&l);
}

/* Runs |fn| with stderr (the log) going to a file; returns what was written (the caller frees it). */
static char *logged_by(void (*fn)(void *), void *arg)
{
    FILE *f = tmpfile();
    int saved;
    long len;
    char *text;

    assert_non_null(f);
    fflush(stderr);
    assert_true((saved = dup(STDERR_FILENO)) >= 0);
    assert_int_equal(dup2(fileno(f), STDERR_FILENO), STDERR_FILENO);
    fn(arg);
    fflush(stderr);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    assert_true((len = ftell(f)) >= 0);
    assert_non_null(text = calloc(1, (size_t)len + 1));
    rewind(f);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    return text;
}

/*
 * What the blocking wait does with a certificate that comes after its deadline, all it does: the caller
 * gets a timeout, and the certificate is named on the log (late_issue: serial, upstream, request id),
 * neither audited nor revoked. No production path waits so (upstream.h): this pins the reason why none
 * may, and that a test's late certificate is at least not silent.
 */
static void test_sign_wait_late_only_logged(void **state)
{
    char serial[2 * 20 + 1], want[160], *logged, *line, *end;
    struct fake_call l;

    (void)state;
    late_init(&l);
    logged = logged_by(late_wait_run, &l);
    assert_int_equal(l.res.status, GW_ERR_TIMEOUT);
    assert_null(l.res.cert);
    assert_non_null(line = strstr(logged, "\"level\":\"warn\",\"event\":\"late_issue\""));
    if ((end = strchr(line, '\n')) != NULL)
        *end = '\0';
    gw_x509_cert_serial_hex(root, serial, sizeof(serial));
    snprintf(want, sizeof(want), "\"serial\":\"%s\",\"upstream\":\"slow\",\"request_id\":\"0badc0de\"",
             serial);
    assert_non_null(strstr(line, want));
    /* only logged: no other line, no withdrawal */
    assert_true(end == NULL || end[1] == '\0');
    free(logged);
    late_cleanup(&l);
}

/* The local issuer's delay knob past the timeout: timeout reported, the late certificate disposed of. */
static void test_timeout_local_delay(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    struct timespec t0, t1;
    char err[GW_ERR_LEN];

    (void)state;
    conf_init(&conf, "local", ca, ca_key, root);
    conf.timeout_ms = 20;
    LOCAL(&conf)->delay_ms = 100;
    conf.max_inflight = 1;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    plan_init(&plan, keys[K_P256], "late", NULL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sign(up, &plan, &res);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(res.status, GW_ERR_TIMEOUT);
    assert_non_null(strstr(res.reason, "did not answer within 20 ms"));
    assert_null(res.cert);
    assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 100);
    /* the slot was released: the next call gets through (and in time, with no delay) */
    LOCAL(&conf)->delay_ms = 0;
    conf.timeout_ms = 5000;
    sign(up, &plan, &res);
    assert_int_equal(res.status, 0);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

static void test_upstream_set(void **state)
{
    struct gw_upstream_conf ups[2];
    struct gw_config cfg = {.upstreams = ups, .n_upstreams = 2};
    struct gw_upstream_set *set;
    char err[GW_ERR_LEN];
    int rc = 0;

    (void)state;
    conf_init(&ups[0], "a", ca, ca_key, root);
    conf_init(&ups[1], "b", ed_ca, ed_ca_key, NULL);
    assert_non_null(set = gw_upstream_set_new(cfg.upstreams, cfg.n_upstreams, cfg.roles, cfg.n_roles, NULL,
                                              NULL, NULL, err));
    assert_ptr_equal(gw_upstream_get0_conf(gw_upstream_set_get0(set, "a")), &ups[0]);
    assert_ptr_equal(gw_upstream_get0_conf(gw_upstream_set_get0(set, "b")), &ups[1]);
    assert_null(gw_upstream_set_get0(set, "c"));
    assert_null(gw_upstream_set_get0(set, ""));
    assert_null(gw_upstream_set_get0(set, NULL));
    gw_upstream_set_free(set);
    LOCAL(&ups[1])->key = ca_key; /* mismatched: the whole set fails, naming the upstream, as the adapter's */
    assert_null(
        gw_upstream_set_new(cfg.upstreams, cfg.n_upstreams, cfg.roles, cfg.n_roles, NULL, NULL, &rc, err));
    assert_non_null(strstr(err, "upstream b"));
    assert_int_equal(rc, GW_ERR_INVAL); /* the configuration refused: a start exits 78 */
    gw_upstream_set_free(NULL);
    gw_upstream_free(NULL);
    conf_cleanup(&ups[0]);
    conf_cleanup(&ups[1]);
}

/* ---- the durable store of a local issuer ---- */

static void make_store(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/cmpgw-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void remove_tree(const char *dir)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static X509 *read_pem(const char *dir, const char *name)
{
    char p[PATH_MAX];
    FILE *f;
    X509 *x;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    if ((f = fopen(p, "r")) == NULL)
        return NULL;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

/* Number of directory entries other than . and .. (no temporary files left behind). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Every certificate issued is on disk as <serial>.pem before it is returned, and listed by notBefore. */
static void test_store_records(void **state)
{
    static const struct {
        const char *cn, *sans;
        long nb_offset;
    } cases[] = {
        {"second", "DNS:b.example,IP:127.0.0.1", -2 * 3600},
        {"first", "DNS:a.example,IP:::1,URI:urn:x:1,email:a@example.com", -3 * 3600},
        {"third", NULL, -1 * 3600},
    };
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    struct gw_store_list list;
    char dir[64], err[GW_ERR_LEN], serial[41], name[128];
    X509 *stored;
    FILE *f;
    size_t i;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        plan_init(&plan, keys[K_P256], cases[i].cn, cases[i].sans);
        plan.not_before = now + cases[i].nb_offset;
        sign(up, &plan, &res);
        assert_int_equal(res.status, 0);
        gw_x509_cert_serial_hex(res.cert, serial, sizeof(serial));
        snprintf(name, sizeof(name), "%s.pem", serial);
        assert_non_null(stored = read_pem(dir, name));
        assert_int_equal(X509_cmp(stored, res.cert), 0);
        X509_free(stored);
        /* a second put of the same serial is refused, the record unchanged */
        assert_int_equal(gw_store_put(dir, res.cert, err), GW_ERR_EXISTS);
        assert_non_null(strstr(err, "already recorded"));
        gw_sign_result_cleanup(&res);
        gw_cert_plan_cleanup(&plan);
    }
    assert_int_equal(count_entries(dir), 3);
    /* noise in the store: a broken .pem is counted, hidden and other files are ignored */
    snprintf(name, sizeof(name), "%s/garbage.pem", dir);
    assert_non_null(f = fopen(name, "w"));
    fputs("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    snprintf(name, sizeof(name), "%s/.partial.pem.tmp", dir);
    assert_non_null(f = fopen(name, "w"));
    fclose(f);
    snprintf(name, sizeof(name), "%s/notes.txt", dir);
    assert_non_null(f = fopen(name, "w"));
    fclose(f);
    assert_int_equal(gw_store_list(dir, &list, err), 0);
    assert_int_equal(list.n, 3);
    assert_int_equal(list.n_bad, 1);
    assert_non_null(strstr(err, "garbage.pem"));
    assert_string_equal(list.v[0].subject, "CN=first");
    assert_string_equal(list.v[0].sans, "DNS:a.example,IP:::1,URI:urn:x:1,email:a@example.com");
    assert_string_equal(list.v[1].subject, "CN=second");
    assert_string_equal(list.v[1].sans, "DNS:b.example,IP:127.0.0.1");
    assert_string_equal(list.v[2].subject, "CN=third");
    assert_string_equal(list.v[2].sans, "");
    for (i = 0; i < list.n; i++) {
        assert_int_equal(strlen(list.v[i].serial) % 2, 0);
        assert_true(list.v[i].not_after > list.v[i].not_before);
        assert_true(i == 0 || list.v[i - 1].not_before < list.v[i].not_before);
    }
    gw_store_list_cleanup(&list);
    gw_store_list_cleanup(&list); /* idempotent */
    gw_upstream_free(up);
    conf_cleanup(&conf);
    remove_tree(dir);
    assert_int_equal(gw_store_list(dir, &list, err), GW_ERR_IO);
    assert_int_equal(list.n, 0);
}

/* A subject or SAN with a tab or newline cannot break the inventory's table. */
/* Adds the URI |uri| to |sans|. */
static int add_uri(GENERAL_NAMES *sans, const char *uri)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();

    if (gn == NULL || s == NULL || ASN1_STRING_set(s, uri, -1) != 1) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return 0;
    }
    GENERAL_NAME_set0_value(gn, GEN_URI, s);
    if (sk_GENERAL_NAME_push(sans, gn) <= 0) {
        GENERAL_NAME_free(gn);
        return 0;
    }
    return 1;
}

static void test_store_list_escapes(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    struct gw_store_list list;
    char dir[64], err[GW_ERR_LEN];

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    plan_init(&plan, keys[K_P256], "tab\there\nnewline", "DNS:x\ty.example");
    sign(up, &plan, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(gw_store_list(dir, &list, err), 0);
    assert_int_equal(list.n, 1);
    assert_null(strpbrk(list.v[0].subject, "\t\n"));
    assert_null(strpbrk(list.v[0].sans, "\t\n"));
    assert_string_equal(list.v[0].subject, "CN=tab\\there\\nnewline");
    assert_string_equal(list.v[0].sans, "DNS:x\\ty.example");
    gw_store_list_cleanup(&list);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    /* a SAN's own comma is escaped: a URI holding ",DNS:..." does not read as a second entry */
    plan_init(&plan, keys[K_P256], "comma", NULL);
    assert_non_null(plan.sans = GENERAL_NAMES_new());
    assert_true(add_uri(plan.sans, "https://a.example/x,DNS:bank.example"));
    sign(up, &plan, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(gw_store_list(dir, &list, err), 0);
    assert_int_equal(list.n, 2);
    assert_true(strcmp(list.v[0].subject, "CN=comma") == 0 || strcmp(list.v[1].subject, "CN=comma") == 0);
    assert_string_equal(list.v[strcmp(list.v[0].subject, "CN=comma") == 0 ? 0 : 1].sans,
                        "URI:https://a.example/x\\u002cDNS:bank.example");
    gw_store_list_cleanup(&list);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    gw_upstream_free(up);
    conf_cleanup(&conf);
    remove_tree(dir);
}

static void touch(const char *dir, const char *name, time_t mtime)
{
    char p[PATH_MAX];
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    FILE *f;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    assert_non_null(f = fopen(p, "w"));
    fclose(f);
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static int exists(const char *dir, const char *name)
{
    char p[PATH_MAX];

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Temporary files a crash left are removed at start; fresh ones (a write in progress) and real files stay. */
static void test_store_sweep(void **state)
{
    char dir[64], rev[96], err[GW_ERR_LEN];
    time_t t0 = time(NULL);
    size_t removed = 99;

    (void)state;
    make_store(dir, sizeof(dir));
    snprintf(rev, sizeof(rev), "%s/" GW_STORE_REVOKED_DIR, dir);
    assert_int_equal(mkdir(rev, 0755), 0);
    touch(dir, ".0a1b.pem.tmp", t0 - 3600);             /* the fixed name an older release used */
    touch(rev, ".0a1b.1234.7.deadbeef.tmp", t0 - 3600); /* a crash between write and link */
    touch(rev, ".0c0d.1234.8.deadbeef.tmp", t0);        /* another process writing right now */
    touch(dir, "0a1b.pem", t0 - 3600);
    touch(dir, ".hidden", t0 - 3600);
    assert_int_equal(gw_store_sweep(dir, t0, &removed, err), 0);
    assert_int_equal(removed, 2);
    assert_false(exists(dir, ".0a1b.pem.tmp"));
    assert_false(exists(rev, ".0a1b.1234.7.deadbeef.tmp"));
    assert_true(exists(rev, ".0c0d.1234.8.deadbeef.tmp"));
    assert_true(exists(dir, "0a1b.pem"));
    assert_true(exists(dir, ".hidden"));
    remove_tree(dir);
    assert_int_equal(gw_store_sweep(dir, t0, &removed, err), GW_ERR_IO); /* no store at all */
}

/*
 * Who may change what a store holds: only the gateway's user or root, in the store, in its revoked/
 * and in the directory that holds it (but for the sticky bit there). Each directory's mode and owner
 * per case (mode 0: revoked/ absent; uid -1: this process's; a case with another uid needs root).
 */
static void test_store_check(void **state)
{
    static const struct {
        mode_t parent, store, revoked;
        long store_uid;
        int rc;
        const char *why;
    } cases[] = {
        {0700, 0700, 0, -1, 0, NULL},
        {0755, 0750, 0755, -1, 0, NULL},
        {01777, 0700, 0700, -1, 0, NULL}, /* /tmp: nobody else may take the store's name */
        {0700, 0770, 0, -1, GW_ERR_FORBIDDEN, "store\" is writable by group or others (mode 0770)"},
        {0700, 01777, 0, -1, GW_ERR_FORBIDDEN, "store\" is writable by group or others (mode 1777)"},
        {0700, 0700, 0777, -1, GW_ERR_FORBIDDEN, "revoked\" is writable by group or others (mode 0777)"},
        {0700, 0700, 01733, -1, GW_ERR_FORBIDDEN, "revoked\" is writable by group or others (mode 1733)"},
        {0777, 0700, 0, -1, GW_ERR_FORBIDDEN, "without the sticky bit (mode 0777)"},
        {0700, 0700, 0, 65534, GW_ERR_FORBIDDEN, "store\" is owned by uid 65534"},
    };
    char base[64], store[96], rev[128], err[GW_ERR_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].store_uid >= 0 && geteuid() != 0)
            continue;
        make_store(base, sizeof(base));
        snprintf(store, sizeof(store), "%s/store", base);
        snprintf(rev, sizeof(rev), "%s/" GW_STORE_REVOKED_DIR, store);
        assert_int_equal(mkdir(store, 0700), 0);
        if (cases[i].revoked != 0)
            assert_int_equal(mkdir(rev, 0700) == 0 && chmod(rev, cases[i].revoked) == 0, 1);
        assert_int_equal(chmod(store, cases[i].store), 0);
        assert_int_equal(chmod(base, cases[i].parent), 0);
        if (cases[i].store_uid >= 0)
            assert_int_equal(chown(store, (uid_t)cases[i].store_uid, (gid_t)-1), 0);
        err[0] = '\0';
        assert_int_equal(gw_store_check("upstreams.x.store", store, geteuid(), err), cases[i].rc);
        if (cases[i].why != NULL && strstr(err, cases[i].why) == NULL)
            fail_msg("case %zu: %s", i, err);
        if (cases[i].rc != 0)
            assert_non_null(strstr(err, "upstreams.x.store: "));
        remove_tree(base);
    }
    /* not a directory, and no store at all */
    make_store(base, sizeof(base));
    snprintf(store, sizeof(store), "%s/store", base);
    touch(base, "store", time(NULL));
    assert_int_equal(gw_store_check("upstreams.x.store", store, geteuid(), err), GW_ERR_IO);
    assert_non_null(strstr(err, "is not a directory"));
    remove_tree(base);
    assert_int_equal(gw_store_check("upstreams.x.store", store, geteuid(), err), GW_ERR_IO);
    /* "store/" names the store as "store" does: its parent is judged, not the store twice */
    make_store(base, sizeof(base));
    snprintf(store, sizeof(store), "%s/store/", base);
    assert_int_equal(mkdir(store, 0700) == 0 && chmod(base, 0777) == 0, 1);
    assert_int_equal(gw_store_check("upstreams.x.store", store, geteuid(), err), GW_ERR_FORBIDDEN);
    assert_non_null(strstr(err, "without the sticky bit (mode 0777)"));
    remove_tree(base);
}

/* Writes |text| into <dir>/|name|. */
static void put_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

/*
 * What the CRL is built from is judged with the store, at start and by `cmpgw check`, not first when a
 * CRL is asked for: a crl.lock others may open (restored from a backup 0644), a link or a FIFO there,
 * a malformed crl.state or crl.gen, a malformed revocation record, each named. Their twins pass: none
 * there yet, or each as the gateway writes it (a record with its certificate's notAfter, even one long
 * passed that a CRL leaves out, or without, as an earlier version wrote it).
 */
static void test_store_check_crl_files(void **state)
{
    static const struct {
        const char *name, *file, *text; /* |text| NULL: a link to /tmp; "" with crl.lock: a FIFO */
        mode_t mode;
        int rc;
        const char *why;
    } cases[] = {
        {"nothing yet", NULL, NULL, 0, 0, NULL},
        {"crl.lock as made", "crl.lock", "x", 0600, 0, NULL},
        {"crl.lock 0644", "crl.lock", "x", 0644, GW_ERR_FORBIDDEN,
         "crl.lock is not a regular file of mode 0600 (mode 0644)"},
        {"crl.lock a link", "crl.lock", NULL, 0, GW_ERR_FORBIDDEN, "cannot open crl.lock"},
        {"crl.lock a FIFO", "crl.lock", "", 0600, GW_ERR_FORBIDDEN, "crl.lock is not a regular file"},
        {"crl.state as written", "crl.state", "number=5 this_update=5\n", 0600, 0, NULL},
        {"crl.state malformed", "crl.state", "number=x\n", 0600, GW_ERR_IO, "crl.state is malformed"},
        {"crl.gen as written", "crl.gen", "generation=5\n", 0600, 0, NULL},
        {"crl.gen malformed", "crl.gen", "generation=x\n", 0600, GW_ERR_IO, "crl.gen is malformed"},
        {"a record as written", "revoked/abcdef", "time=12 reason=1\n", 0600, 0, NULL},
        {"a record malformed", "revoked/abcdef", "time=x reason=1\n", 0600, GW_ERR_IO,
         "revocation record abcdef is malformed"},
        {"a record with notAfter", "revoked/abcdef", "time=12 reason=1 not_after=99999999999\n", 0600, 0,
         NULL},
        {"a record with notAfter long passed", "revoked/abcdef", "time=12 reason=1 not_after=13\n", 0600, 0,
         NULL},
        {"a record with notAfter malformed", "revoked/abcdef", "time=12 reason=1 not_after=x\n", 0600,
         GW_ERR_IO, "revocation record abcdef is malformed"},
    };
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char dir[64], path[PATH_MAX], err[GW_ERR_LEN];

    (void)state;
    conf_init(&conf, "delegate", ca, ca_key, root);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case: %s\n", cases[i].name);
        make_store(dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/revoked", dir);
        assert_int_equal(mkdir(path, 0700), 0);
        if (cases[i].file != NULL) {
            snprintf(path, sizeof(path), "%s/%s", dir, cases[i].file);
            if (cases[i].text == NULL)
                assert_int_equal(symlink("/tmp", path), 0);
            else if (cases[i].text[0] == '\0')
                assert_int_equal(mkfifo(path, cases[i].mode), 0);
            else
                put_file(dir, cases[i].file, cases[i].text);
            if (cases[i].text != NULL)
                assert_int_equal(chmod(path, cases[i].mode), 0);
        }
        err[0] = '\0';
        assert_int_equal(gw_store_check("upstreams.x.store", dir, geteuid(), err), cases[i].rc);
        if (cases[i].rc != 0) {
            assert_non_null(strstr(err, "upstreams.x.store: "));
            if (strstr(err, cases[i].why) == NULL)
                fail_msg("%s: %s", cases[i].name, err);
        }
        /* the start refuses it as `cmpgw check` does */
        LOCAL(&conf)->store_dir = dir;
        up = gw_upstream_new(&conf, NULL, err);
        assert_int_equal(up != NULL, cases[i].rc == 0);
        gw_upstream_free(up);
        remove_tree(dir);
    }
    LOCAL(&conf)->store_dir = NULL;
    conf_cleanup(&conf);
}

/*
 * A store named by a symbolic link is refused, with or without a trailing slash, as is a revoked/ that
 * is one: whoever may replace the link could point it elsewhere, and no check would look at what it
 * leads to from where the link stands. So is a directory holding the store's name that is a link; a
 * link higher up is judged where it leads, with every directory above that.
 */
static void test_store_symlink(void **state)
{
    char base[64], real[96], link[96], want[GW_ERR_LEN], err[GW_ERR_LEN], path[160], *resolved;

    (void)state;
    make_store(base, sizeof(base));
    snprintf(real, sizeof(real), "%s/real", base);
    snprintf(link, sizeof(link), "%s/store", base);
    assert_int_equal(mkdir(real, 0700) == 0 && symlink(real, link) == 0, 1);
    assert_non_null(resolved = realpath(real, NULL));
    assert_int_equal(gw_store_check("upstreams.x.store", real, geteuid(), err), 0);
    for (int slash = 0; slash < 2; slash++) {
        snprintf(path, sizeof(path), "%s%s", link, slash ? "/" : "");
        snprintf(want, sizeof(want),
                 "upstreams.x.store: \"%s\" is a symbolic link to \"%s\": name the directory itself", path,
                 resolved);
        assert_int_equal(gw_store_check("upstreams.x.store", path, geteuid(), err), GW_ERR_FORBIDDEN);
        assert_string_equal(err, want);
    }
    /* revoked/ a link to a directory of the gateway's own */
    snprintf(path, sizeof(path), "%s/" GW_STORE_REVOKED_DIR, real);
    assert_int_equal(symlink(base, path), 0);
    assert_int_equal(gw_store_check("upstreams.x.store", real, geteuid(), err), GW_ERR_FORBIDDEN);
    assert_non_null(strstr(err, "/" GW_STORE_REVOKED_DIR "\" is a symbolic link to \""));
    assert_int_equal(unlink(path), 0);
    /* the parent through a link: refused as the store is, whoever could replace the link */
    assert_int_equal(unlink(link) == 0 && symlink(base, link) == 0, 1);
    snprintf(path, sizeof(path), "%s/real", link);
    assert_int_equal(gw_store_check("upstreams.x.store", path, geteuid(), err), GW_ERR_FORBIDDEN);
    assert_non_null(strstr(err, "/store\" is a symbolic link to \""));
    /* a link higher up: judged where it leads, and every directory above that */
    assert_int_equal(mkdir(strcat(strcpy(path, real), "/inner"), 0700), 0);
    snprintf(path, sizeof(path), "%s/real/inner", link);
    assert_int_equal(gw_store_check("upstreams.x.store", path, geteuid(), err), 0);
    assert_int_equal(chmod(base, 0777), 0);
    assert_int_equal(gw_store_check("upstreams.x.store", path, geteuid(), err), GW_ERR_FORBIDDEN);
    assert_non_null(strstr(err, "without the sticky bit (mode 0777)"));
    free(resolved);
    remove_tree(base);
}

/* A local issuer whose store others may change does not start (nor load again at a reload). */
static void test_store_others_may_write(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char dir[64], err[GW_ERR_LEN] = "";

    (void)state;
    make_store(dir, sizeof(dir));
    assert_int_equal(chmod(dir, 0770), 0);
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_null(gw_upstream_new(&conf, NULL, err));
    assert_non_null(strstr(err, "upstreams.delegate.store: the directory"));
    assert_non_null(strstr(err, "is writable by group or others (mode 0770)"));
    assert_int_equal(chmod(dir, 0700), 0);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    gw_upstream_free(up);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/* The CRL state round-trips; a missing file is "none yet"; a damaged one is an error, never a guess. */
static void test_store_crl_state(void **state)
{
    static const char *const bad[] = {
        "",
        "number=0 this_update=5\n",
        "number=5\n",
        "number=5 this_update=-1\n",
        "number=x this_update=5\n",
        "number=5 this_update=5\nmore",
        "this_update=5 number=5\n",
        "number=99999999999999999999 this_update=1\n",
    };
    char dir[64], err[GW_ERR_LEN], p[PATH_MAX];
    uint64_t n = 7;
    time_t t = 7;
    FILE *f;

    (void)state;
    make_store(dir, sizeof(dir));
    assert_int_equal(gw_store_crl_state_get(dir, &n, &t, err), GW_ERR_NOT_FOUND);
    assert_int_equal(gw_store_crl_state_put(dir, 1764000000123456ULL, 1764000000, err), 0);
    assert_int_equal(gw_store_crl_state_get(dir, &n, &t, err), 0);
    assert_true(n == 1764000000123456ULL);
    assert_int_equal(t, 1764000000);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        print_message("case: %s\n", bad[i]);
        snprintf(p, sizeof(p), "%s/crl.state", dir);
        assert_non_null(f = fopen(p, "w"));
        fputs(bad[i], f);
        fclose(f);
        assert_int_equal(gw_store_crl_state_get(dir, &n, &t, err), GW_ERR_IO);
    }
    remove_tree(dir);
    assert_int_equal(gw_store_crl_state_put(dir, 1, 1, err), GW_ERR_IO);
}

/*
 * The next CRL's number: past crl.state's and the caller's both, written back before the lock is let go
 * with the caller's thisUpdate, never crl.state's (a clock's step ahead written there would stay on every
 * later CRL), which is handed back for the caller to judge its clock by; a damaged crl.state, or a
 * crl.lock that is a link, others may open, or another user's, gives no number at all.
 */
static void test_store_crl_next(void **state)
{
    static const struct {
        const char *name, *file; /* crl.state before; NULL: none */
        uint64_t number;         /* the caller's least */
        time_t now;
        int rc;
        uint64_t want_number;
        time_t want_last;   /* crl.state's thisUpdate handed back */
        time_t want_update; /* the date settled on */
    } cases[] = {
        {"none yet: the caller's", NULL, 5, 10, 0, 5, 0, 10},
        {"the file's ahead within the skew: past its number, its date", "number=100 this_update=50\n", 5, 10,
         0, 101, 50, 50},
        {"the file's ahead past the skew: past its number, the caller's date",
         "number=100 this_update=1000\n", 5, 10, 0, 101, 1000, 10},
        {"the caller's ahead", "number=100 this_update=50\n", 500, 60, 0, 500, 50, 60},
        {"equal: one past", "number=100 this_update=50\n", 100, 50, 0, 101, 50, 50},
        {"damaged: refused", "number=x\n", 5, 10, GW_ERR_IO, 0, 0, 0},
    };
    char dir[64], err[GW_ERR_LEN], p[PATH_MAX];
    struct gw_store_crl_next next;
    uint64_t n;
    time_t t;
    FILE *f;

    (void)state;
    make_store(dir, sizeof(dir));
    snprintf(p, sizeof(p), "%s/crl.state", dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case: %s\n", cases[i].name);
        unlink(p);
        if (cases[i].file != NULL) {
            assert_non_null(f = fopen(p, "w"));
            fputs(cases[i].file, f);
            fclose(f);
        }
        next.number = cases[i].number;
        next.this_update = cases[i].now;
        assert_int_equal(gw_store_crl_next(dir, &next, err), cases[i].rc);
        assert_null(next.v);
        assert_int_equal(next.n, 0);
        if (cases[i].rc != 0)
            continue;
        assert_true(next.number == cases[i].want_number);
        assert_int_equal(next.this_update, cases[i].want_update);
        assert_int_equal(next.last_update, cases[i].want_last);
        assert_int_equal(gw_store_crl_state_get(dir, &n, &t, err), 0);
        assert_true(n == cases[i].want_number);
        assert_int_equal(t, cases[i].want_update);
    }
    /* the twin: a link where the lock goes is not followed */
    unlink(p);
    snprintf(p, sizeof(p), "%s/crl.lock", dir);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(symlink("/tmp", p), 0);
    next.number = 5;
    next.this_update = 10;
    assert_int_equal(gw_store_crl_next(dir, &next, err), GW_ERR_IO);
    assert_non_null(strstr(err, "cannot lock crl.lock"));
    assert_int_equal(unlink(p), 0);
    /* nor one others may open (restored from a backup 0644), or another user's: they could hold it */
    assert_int_equal(close(open(p, O_RDWR | O_CREAT, 0600)), 0);
    assert_int_equal(chmod(p, 0644), 0);
    assert_int_equal(gw_store_crl_next(dir, &next, err), GW_ERR_FORBIDDEN);
    assert_non_null(strstr(err, "crl.lock is not a regular file of mode 0600 (mode 0644)"));
    assert_int_equal(gw_store_revocations_bump(dir, err), GW_ERR_FORBIDDEN);
    assert_int_equal(chmod(p, 0600), 0);
    if (geteuid() == 0) {
        assert_int_equal(chown(p, 4242, 4242), 0);
        assert_int_equal(gw_store_crl_next(dir, &next, err), GW_ERR_FORBIDDEN);
        assert_non_null(strstr(err, "is owned by uid 4242"));
        assert_int_equal(chown(p, 0, 0), 0);
    }
    snprintf(p, sizeof(p), "%s/crl.state", dir);
    assert_int_equal(access(p, F_OK), -1);
    remove_tree(dir);
}

/* A store that cannot be written: the certificate is not returned, and the reason says nothing was issued. */
static void test_store_failing(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    char dir[64], file[96], err[GW_ERR_LEN];
    FILE *f;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    plan_init(&plan, keys[K_P256], "lost", NULL);
    /* read-only for an unprivileged user; gone altogether for root, who ignores modes */
    assert_int_equal(chmod(dir, 0500), 0);
    if (geteuid() == 0)
        remove_tree(dir);
    sign(up, &plan, &res);
    assert_int_equal(res.status, GW_ERR_IO);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_string_equal(res.reason, "the issuer could not record the certificate; nothing was issued");
    assert_null(res.cert);
    assert_null(res.chain);
    gw_sign_result_cleanup(&res);
    gw_upstream_free(up);
    if (geteuid() != 0) {
        assert_int_equal(count_entries(dir), 0);
        chmod(dir, 0700);
        remove_tree(dir);
    }
    /* at start: a missing store, or a file where the directory should be, is refused */
    assert_null(gw_upstream_new(&conf, NULL, err));
    assert_non_null(strstr(err, "upstream delegate: store"));
    make_store(dir, sizeof(dir));
    snprintf(file, sizeof(file), "%s/file", dir);
    assert_non_null(f = fopen(file, "w"));
    fclose(f);
    LOCAL(&conf)->store_dir = file;
    assert_null(gw_upstream_new(&conf, NULL, err));
    assert_non_null(strstr(err, "Not a directory"));
    /* the twin: the directory itself works */
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    sign(up, &plan, &res);
    assert_int_equal(res.status, 0);
    gw_sign_result_cleanup(&res);
    gw_upstream_free(up);
    gw_cert_plan_cleanup(&plan);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/* ---- revocation and the CRL (local issuer) ---- */

#define CRL_URL "http://127.0.0.1:8080/pki/crl/delegate.crl"

static X509_CRL *fetch_crl(struct gw_upstream *up, unsigned char **der_out, size_t *len_out)
{
    char err[GW_ERR_LEN] = "";
    unsigned char *der = NULL;
    const unsigned char *p;
    size_t len = 0;
    X509_CRL *crl;

    assert_int_equal(gw_upstream_crl(up, NULL, &der, &len, err), 0);
    assert_non_null(der);
    p = der;
    assert_non_null(crl = d2i_X509_CRL(NULL, &p, (long)len));
    assert_ptr_equal(p, der + len); /* nothing after it */
    if (der_out != NULL) {
        *der_out = der;
        *len_out = len;
    } else {
        free(der);
    }
    return crl;
}

static uint64_t crl_number(X509_CRL *crl)
{
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    uint64_t v = 0;

    assert_non_null(n);
    assert_int_equal(ASN1_INTEGER_get_uint64(&v, n), 1);
    ASN1_INTEGER_free(n);
    return v;
}

/* The CRL's shape (RFC 5280 §5): v2, our issuer, signed by the CA key, a day long, AKID, number. */
static void check_crl(X509_CRL *crl, int n_entries)
{
    AUTHORITY_KEYID *akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    int days = -1, secs = -1;

    assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
    assert_int_equal(X509_CRL_verify(crl, ca_key), 1);
    assert_int_not_equal(X509_CRL_verify(crl, other_key), 1);
    assert_int_equal(
        ASN1_TIME_diff(&days, &secs, X509_CRL_get0_lastUpdate(crl), X509_CRL_get0_nextUpdate(crl)), 1);
    assert_int_equal(days * 86400 + secs, GW_CRL_NEXT_UPDATE_SECS);
    assert_true(X509_cmp_time(X509_CRL_get0_lastUpdate(crl), NULL) <= 0);
    assert_non_null(akid);
    assert_int_equal(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(ca)), 0);
    AUTHORITY_KEYID_free(akid);
    assert_true(crl_number(crl) > 0);
    /* an empty CRL has no revokedCertificates at all (RFC 5280 §5.1.2.6): OpenSSL gives NULL, -1 */
    assert_int_equal(n_entries == 0 ? 0 : sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), n_entries);
    assert_int_equal(X509_CRL_get_REVOKED(crl) == NULL, n_entries == 0);
}

/* The entry of |serial| in |crl|: its reason code (-1 if it has none), or -2 if it is not listed. */
static int crl_reason(X509_CRL *crl, const ASN1_INTEGER *serial)
{
    X509_REVOKED *rev = NULL;
    ASN1_ENUMERATED *code;
    int reason;

    if (X509_CRL_get0_by_serial(crl, &rev, serial) != 1)
        return -2;
    if ((code = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL)) == NULL)
        return -1;
    reason = (int)ASN1_ENUMERATED_get(code);
    ASN1_ENUMERATED_free(code);
    return reason;
}

/* X509_verify_cert with the CRL: what a relying party that reads our CRL concludes. */
static int verify_with_crl(X509 *leaf, X509_CRL *crl)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = sk_X509_new_null();
    int err;

    sk_X509_push(chain, ca);
    X509_STORE_add_cert(store, root);
    X509_STORE_add_crl(store, crl);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    X509_STORE_CTX_init(ctx, store, leaf, chain);
    err = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_free(chain);
    return err;
}

static ASN1_INTEGER *int_from_hex(const char *hex, int negative)
{
    BIGNUM *bn = NULL;
    ASN1_INTEGER *a;

    assert_true(BN_hex2bn(&bn, hex) > 0);
    BN_set_negative(bn, negative);
    assert_non_null(a = BN_to_ASN1_INTEGER(bn, NULL));
    BN_free(bn);
    return a;
}

/* Issue |n| certificates from |up| into |out|. */
static void issue_n(struct gw_upstream *up, X509 **out, int n)
{
    struct gw_sign_result res;
    struct gw_cert_plan plan;

    for (int i = 0; i < n; i++) {
        plan_init(&plan, keys[K_P256], "revocable", "DNS:r.example");
        sign(up, &plan, &res);
        assert_int_equal(res.status, 0);
        out[i] = res.cert;
        res.cert = NULL;
        gw_sign_result_cleanup(&res);
        gw_cert_plan_cleanup(&plan);
    }
}

/* The certificate carries the configured CRL distribution point, and only then. */
static void check_cdp(X509 *x, const char *url)
{
    CRL_DIST_POINTS *cdp = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
    GENERAL_NAME *gn;

    if (url == NULL) {
        assert_null(cdp);
        return;
    }
    assert_non_null(cdp);
    assert_int_equal(sk_DIST_POINT_num(cdp), 1);
    assert_int_equal(sk_DIST_POINT_value(cdp, 0)->distpoint->type, 0);
    gn = sk_GENERAL_NAME_value(sk_DIST_POINT_value(cdp, 0)->distpoint->name.fullname, 0);
    assert_int_equal(gn->type, GEN_URI);
    assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier), url);
    CRL_DIST_POINTS_free(cdp);
}

/* rr by issuer and serial: each case with its twins (unknown, foreign issuer, odd serials, bad reasons). */
static void test_local_revoke_cases(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char dir[64], err[GW_ERR_LEN];
    int fi;
    X509 *certs[2];
    X509_NAME *ca_name, *root_name;
    ASN1_INTEGER *odd[4];
    struct {
        const char *name;
        int which; /* certs[which], or -1: odd[serial] */
        int serial;
        X509_NAME **issuer;
        int reason, rc;
    } cases[] = {
        {"keyCompromise, issuer named", 0, 0, &ca_name, CRL_REASON_KEY_COMPROMISE, 0},
        {"again: the first revocation stands", 0, 0, &ca_name, CRL_REASON_SUPERSEDED, GW_ERR_EXISTS},
        {"no reason, no issuer", 1, 0, NULL, CRL_REASON_NONE, 0},
        {"another CA's certificate", 1, 0, &root_name, CRL_REASON_NONE, GW_ERR_NOT_FOUND},
        {"unknown serial", -1, 0, &ca_name, CRL_REASON_NONE, GW_ERR_NOT_FOUND},
        {"negative serial", -1, 1, &ca_name, CRL_REASON_NONE, GW_ERR_NOT_FOUND},
        {"zero serial", -1, 2, &ca_name, CRL_REASON_NONE, GW_ERR_NOT_FOUND},
        {"21-octet serial", -1, 3, &ca_name, CRL_REASON_NONE, GW_ERR_NOT_FOUND},
        {"reason 7 (unused)", 1, 0, NULL, 7, GW_ERR_REFUSED},
        {"removeFromCRL (delta CRLs only)", 1, 0, NULL, CRL_REASON_REMOVE_FROM_CRL, GW_ERR_REFUSED},
        {"reason 11", 1, 0, NULL, 11, GW_ERR_REFUSED},
        {"reason -2", 1, 0, NULL, -2, GW_ERR_REFUSED},
    };
    X509_CRL *crl;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    assert_true((gw_upstream_caps(up) & (GW_UP_REVOKE | GW_UP_CRL | GW_UP_CERT_STATUS)) ==
                (GW_UP_REVOKE | GW_UP_CRL | GW_UP_CERT_STATUS));
    issue_n(up, certs, 2);
    ca_name = X509_get_subject_name(ca);
    root_name = X509_get_subject_name(root);
    odd[0] = int_from_hex("7fffffffffffffff0123", 0);
    odd[1] = int_from_hex("01", 1);
    odd[2] = int_from_hex("00", 0);
    odd[3] = int_from_hex("010203040506070809101112131415161718192021", 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const ASN1_INTEGER *serial =
            cases[i].which >= 0 ? X509_get0_serialNumber(certs[cases[i].which]) : odd[cases[i].serial];

        print_message("case: %s\n", cases[i].name);
        err[0] = '\0';
        assert_int_equal(gw_upstream_revoke_serial(up, cases[i].issuer != NULL ? *cases[i].issuer : NULL,
                                                   serial, cases[i].reason, &fi, NULL, err),
                         cases[i].rc);
        if (cases[i].rc != 0)
            assert_true(err[0] != '\0');
    }
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, NULL, 0, &fi, NULL, err), GW_ERR_INVAL);
    /* the first revocation stands: keyCompromise, not superseded */
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 2);
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(certs[0])), CRL_REASON_KEY_COMPROMISE);
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(certs[1])), -1);
    X509_CRL_free(crl);
    for (int i = 0; i < 4; i++)
        ASN1_INTEGER_free(odd[i]);
    X509_free(certs[0]);
    X509_free(certs[1]);
    gw_upstream_free(up);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/* Revoke -> the CRL lists it with its reason, verifies with the CA key, and survives a restart. */
static void test_local_crl(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char dir[64], err[GW_ERR_LEN], path[PATH_MAX];
    int fi;
    unsigned char *der1, *der2;
    size_t len1, len2;
    X509 *certs[4];
    X509_CRL *crl;
    uint64_t n1, n2;
    int revoked = -1;
    FILE *f;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    LOCAL(&conf)->crl_url = CRL_URL;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    issue_n(up, certs, 4);
    check_cdp(certs[0], CRL_URL);
    /* empty, then cached: the same bytes until something changes */
    crl = fetch_crl(up, &der1, &len1);
    check_crl(crl, 0);
    n1 = crl_number(crl);
    assert_int_equal(verify_with_crl(certs[0], crl), X509_V_OK);
    X509_CRL_free(crl);
    X509_CRL_free(fetch_crl(up, &der2, &len2));
    assert_true(len1 == len2 && memcmp(der1, der2, len1) == 0);
    free(der1);
    free(der2);
    /* revoke two: by serial with a reason, and by certificate (gw_upstream_revoke) */
    assert_int_equal(gw_upstream_revoke_serial(up, X509_get_issuer_name(certs[0]),
                                               X509_get0_serialNumber(certs[0]), CRL_REASON_KEY_COMPROMISE,
                                               &fi, NULL, err),
                     0);
    assert_int_equal(gw_upstream_revoke(up, certs[1], CRL_REASON_UNSPECIFIED, err), 0);
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 2);
    n2 = crl_number(crl);
    assert_true(n2 > n1);
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(certs[0])), CRL_REASON_KEY_COMPROMISE);
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(certs[1])),
                     -1); /* unspecified: absent (RFC 5280 §5.3.1) */
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(certs[2])), -2);
    assert_int_equal(verify_with_crl(certs[0], crl), X509_V_ERR_CERT_REVOKED);
    assert_int_equal(verify_with_crl(certs[2], crl), X509_V_OK);
    X509_CRL_free(crl);
    assert_int_equal(gw_upstream_cert_status(up, certs[0], &revoked, err), 0);
    assert_int_equal(revoked, 1);
    assert_int_equal(gw_upstream_cert_status(up, certs[2], &revoked, err), 0);
    assert_int_equal(revoked, 0);
    gw_upstream_free(up);

    /* a new instance on the same store: the revocations are still there, the CRL number still grows */
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 2);
    assert_true(crl_number(crl) > n2);
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(certs[0])), CRL_REASON_KEY_COMPROMISE);
    X509_CRL_free(crl);
    assert_int_equal(gw_upstream_cert_status(up, certs[1], &revoked, err), 0);
    assert_int_equal(revoked, 1);
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, X509_get0_serialNumber(certs[3]),
                                               CRL_REASON_CESSATION_OF_OPERATION, &fi, NULL, err),
                     0);
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 3);
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(certs[3])), CRL_REASON_CESSATION_OF_OPERATION);
    X509_CRL_free(crl);

    /* twins: a crash leftover is ignored; a malformed record fails the CRL rather than drop an entry */
    snprintf(path, sizeof(path), "%s/revoked/.abcd.tmp", dir);
    assert_non_null(f = fopen(path, "w"));
    fclose(f);
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, X509_get0_serialNumber(certs[2]), CRL_REASON_NONE,
                                               &fi, NULL, err),
                     0);
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 4);
    X509_CRL_free(crl);
    static const char *const bad_records[] = {"",
                                              "time=12 reason=1",
                                              "time=x reason=1\n",
                                              "time=12 reason=99\n",
                                              "time=12 reason=1\nextra",
                                              "reason=1 time=12\n",
                                              "time=12 reason=1 not_after=x\n",
                                              "time=12 reason=1 not_after=0\n",
                                              "time=12 reason=1 not_after=5",
                                              "time=12 reason=1 not_after=5 extra\n",
                                              "time=12 reason=1 expires=5\n"};
    for (size_t i = 0; i < sizeof(bad_records) / sizeof(bad_records[0]); i++) {
        unsigned char *der = NULL;
        size_t len = 0;

        print_message("bad record: \"%s\"\n", bad_records[i]);
        snprintf(path, sizeof(path), "%s/revoked/abcdef", dir);
        assert_non_null(f = fopen(path, "w"));
        fputs(bad_records[i], f);
        fclose(f);
        X509 *fresh;

        issue_n(up, &fresh, 1); /* a new revocation: the cached CRL must be rebuilt */
        assert_int_equal(
            gw_upstream_revoke_serial(up, NULL, X509_get0_serialNumber(fresh), 0, &fi, NULL, err), 0);
        X509_free(fresh);
        assert_int_equal(gw_upstream_crl(up, NULL, &der, &len, err), GW_ERR_IO);
        assert_null(der);
        assert_non_null(strstr(err, "abcdef"));
    }
    unlink(path);
    for (int i = 0; i < 4; i++)
        X509_free(certs[i]);
    gw_upstream_free(up);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/* Without a store: nothing can be revoked (so nothing is), the CRL is empty, no CDP unless configured. */
static void test_local_crl_no_store(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char err[GW_ERR_LEN];
    X509 *cert;
    X509_CRL *crl;
    int revoked = -1;

    (void)state;
    conf_init(&conf, "plain", ca, ca_key, root);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    issue_n(up, &cert, 1);
    check_cdp(cert, NULL);
    /* it never revokes: refused for good (an rr is told not to retry), not a failure that may pass */
    assert_int_equal(gw_upstream_revoke(up, cert, CRL_REASON_KEY_COMPROMISE, err), GW_ERR_REFUSED);
    assert_non_null(strstr(err, "keeps no store, so it cannot revoke"));
    assert_int_equal(gw_upstream_cert_status(up, cert, &revoked, err), 0);
    assert_int_equal(revoked, 0);
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 0);
    X509_CRL_free(crl);
    X509_free(cert);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* The CRL of |up|, with its number and whether it lists |serial|. */
static uint64_t crl_lists(struct gw_upstream *up, const ASN1_INTEGER *serial, int *listed)
{
    X509_CRL *crl = fetch_crl(up, NULL, NULL);
    uint64_t n = crl_number(crl);

    *listed = crl_reason(crl, serial) != -2;
    X509_CRL_free(crl);
    return n;
}

/*
 * The twins of the store's generation (crl.gen): damaged, no instance can tell its CRL current, so
 * none is served (never a stale one), until the next revocation writes it anew; and a revocation whose
 * generation cannot be written stands, said in the log.
 */
static void shared_store_twins(struct gw_upstream *a, struct gw_upstream *b, const char *dir)
{
    char path[PATH_MAX], err[GW_ERR_LEN], logged[4096];
    unsigned char *der = NULL;
    size_t len = 0;
    struct tu_log log;
    X509 *certs[2];
    int listed = 0;
    FILE *f;

    issue_n(a, certs, 2);
    snprintf(path, sizeof(path), "%s/crl.gen", dir);
    assert_non_null(f = fopen(path, "w"));
    fputs("generation=x\n", f);
    fclose(f);
    gw_sleep_ms(GW_CRL_GEN_CHECK_MS);
    assert_int_equal(gw_upstream_crl(b, NULL, &der, &len, err), GW_ERR_IO);
    assert_null(der);
    assert_non_null(strstr(err, "crl.gen is malformed"));
    assert_int_equal(gw_upstream_revoke(a, certs[0], CRL_REASON_UNSPECIFIED, err), 0);
    gw_sleep_ms(GW_CRL_GEN_CHECK_MS);
    crl_lists(b, X509_get0_serialNumber(certs[0]), &listed);
    assert_int_equal(listed, 1);
    /* a directory where crl.gen goes: it cannot be replaced */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    tu_log_capture(&log, GW_LOG_INFO, GW_LOG_INFO);
    assert_int_equal(gw_upstream_revoke(b, certs[1], CRL_REASON_UNSPECIFIED, err), 0);
    tu_log_release_into(&log, logged, sizeof(logged));
    assert_non_null(strstr(logged, "\"event\":\"local_revocation_not_shared\""));
    assert_non_null(strstr(logged, "cannot write crl.gen"));
    assert_int_equal(rmdir(path), 0);
    crl_lists(b, X509_get0_serialNumber(certs[1]), &listed);
    assert_int_equal(listed, 1);
    X509_free(certs[0]);
    X509_free(certs[1]);
}

/* A child process holding |dir|'s crl.lock until release_crl_lock, as an instance frozen while it held it. */
static pid_t hold_crl_lock(const char *dir)
{
    char path[PATH_MAX], c = 0;
    int fds[2], fd;
    pid_t pid;

    snprintf(path, sizeof(path), "%s/crl.lock", dir);
    assert_int_equal(pipe(fds), 0);
    assert_true((pid = fork()) >= 0);
    if (pid == 0) {
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test killed by its alarm leaves no holder behind */
        if ((fd = open(path, O_RDWR | O_CREAT, 0600)) < 0 || flock(fd, LOCK_EX) != 0 ||
            write(fds[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    return pid;
}

static void release_crl_lock(pid_t pid)
{
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
}

struct crl_fetch {
    struct gw_upstream *up;
    int rc;
};

static void *crl_fetch_run(void *arg)
{
    struct crl_fetch *f = arg;
    char err[GW_ERR_LEN];
    unsigned char *der = NULL;
    size_t len = 0;

    f->rc = gw_upstream_crl(f->up, NULL, &der, &len, err);
    free(der);
    return NULL;
}

/*
 * A crl.lock another process holds: each wait for it ends after GW_CRL_LOCK_WAIT_MS with an error (no CRL
 * served, a revocation standing but not shared), never a worker blocked for good; and while one request
 * waits, another asking for a CRL that must be built is refused at once, not queued behind it. alarm()
 * ends the test should a wait block.
 */
static void test_local_crl_lock_held(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_store_crl_next next = {.number = 5, .this_update = 10};
    struct crl_fetch waiting = {.rc = 1};
    char dir[64], err[GW_ERR_LEN], logged[4096];
    unsigned char *der = NULL;
    size_t len = 0;
    struct tu_log log;
    pthread_t t;
    uint64_t t0;
    X509_CRL *crl;
    X509 *cert;
    pid_t pid;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    issue_n(up, &cert, 1);
    pid = hold_crl_lock(dir);
    alarm(30);
    t0 = gw_now_ms();
    assert_int_equal(gw_store_crl_next(dir, &next, err), GW_ERR_TIMEOUT);
    assert_true(gw_now_ms() - t0 >= GW_CRL_LOCK_WAIT_MS);
    assert_non_null(strstr(err, "cannot lock crl.lock"));
    assert_null(next.v);
    /* the first CRL of an instance, with a second request while the first waits */
    waiting.up = up;
    assert_int_equal(pthread_create(&t, NULL, crl_fetch_run, &waiting), 0);
    gw_sleep_ms(GW_CRL_LOCK_WAIT_MS / 4);
    t0 = gw_now_ms();
    assert_int_equal(gw_upstream_crl(up, NULL, &der, &len, err), GW_ERR_BUSY);
    assert_true(gw_now_ms() - t0 < GW_CRL_LOCK_WAIT_MS / 4);
    assert_null(der);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(waiting.rc, GW_ERR_TIMEOUT);
    tu_log_capture(&log, GW_LOG_INFO, GW_LOG_INFO);
    assert_int_equal(gw_upstream_revoke(up, cert, CRL_REASON_KEY_COMPROMISE, err), 0);
    tu_log_release_into(&log, logged, sizeof(logged));
    assert_non_null(strstr(logged, "\"event\":\"local_revocation_not_shared\""));
    assert_non_null(strstr(logged, "cannot lock crl.lock"));
    release_crl_lock(pid);
    alarm(0);
    /* the twin: let go, the CRL is built and lists the revocation */
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 1);
    X509_CRL_free(crl);
    X509_free(cert);
    gw_upstream_free(up);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/*
 * Two instances on one store ("shared_store"): what one revokes, the other's CRL lists at once, not
 * after its cached CRL's hour; an unchanged store still answers from the cache, byte for byte.
 */
static void test_local_crl_shared_store(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *a, *b;
    char dir[64], err[GW_ERR_LEN];
    unsigned char *der1, *der2;
    size_t len1, len2;
    X509 *certs[2];
    X509_CRL *crl;
    int listed = -1;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    LOCAL(&conf)->shared_store = true;
    assert_non_null(a = gw_upstream_new(&conf, NULL, err));
    assert_non_null(b = gw_upstream_new(&conf, NULL, err));
    issue_n(a, certs, 2);
    X509_CRL_free(fetch_crl(a, NULL, NULL));
    crl = fetch_crl(b, &der1, &len1);
    check_crl(crl, 0);
    X509_CRL_free(crl);
    /* the twin: nothing changed, so the cached CRL, not a new one per request */
    X509_CRL_free(fetch_crl(b, &der2, &len2));
    assert_true(len1 == len2 && memcmp(der1, der2, len1) == 0);
    free(der1);
    free(der2);
    assert_int_equal(gw_upstream_revoke(a, certs[0], CRL_REASON_KEY_COMPROMISE, err), 0);
    gw_sleep_ms(GW_CRL_GEN_CHECK_MS); /* b read the generation this very second */
    crl_lists(b, X509_get0_serialNumber(certs[0]), &listed);
    assert_int_equal(listed, 1);
    /* and the other way round, each instance having built a CRL since */
    assert_int_equal(gw_upstream_revoke(b, certs[1], CRL_REASON_SUPERSEDED, err), 0);
    gw_sleep_ms(GW_CRL_GEN_CHECK_MS);
    crl = fetch_crl(a, NULL, NULL);
    check_crl(crl, 2);
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(certs[1])), CRL_REASON_SUPERSEDED);
    X509_CRL_free(crl);
    shared_store_twins(a, b, dir);
    X509_free(certs[0]);
    X509_free(certs[1]);
    gw_upstream_free(a);
    gw_upstream_free(b);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/* Writes |text| into <dir>/crl.gen. */
static void put_gen(const char *dir, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/crl.gen", dir);
    assert_non_null(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

/*
 * A store without "shared_store" has two writers, each with a cache, across a reload (the old
 * configuration's issuer records a revocation its rr in flight asked for, after the new one built its
 * CRL) or a hand-over: the other's revocation is on the CRL once the last read of the generation is
 * GW_CRL_GEN_CHECK_MS old, and a damaged crl.gen keeps a cached CRL from being served there too.
 */
static void test_local_crl_unshared(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *before, *after;
    char dir[64], err[GW_ERR_LEN];
    unsigned char *der = NULL;
    size_t len = 0;
    X509 *cert;
    int listed;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    LOCAL(&conf)->shared_store = false;
    assert_non_null(before = gw_upstream_new(&conf, NULL, err));
    assert_non_null(after = gw_upstream_new(&conf, NULL, err));
    issue_n(before, &cert, 1);
    crl_lists(after, X509_get0_serialNumber(cert), &listed);
    assert_int_equal(listed, 0);
    assert_int_equal(gw_upstream_revoke(before, cert, CRL_REASON_UNSPECIFIED, err), 0);
    gw_sleep_ms(GW_CRL_GEN_CHECK_MS);
    crl_lists(after, X509_get0_serialNumber(cert), &listed);
    assert_int_equal(listed, 1);
    put_gen(dir, "generation=x\n");
    gw_sleep_ms(GW_CRL_GEN_CHECK_MS);
    assert_int_equal(gw_upstream_crl(after, NULL, &der, &len, err), GW_ERR_IO);
    assert_non_null(strstr(err, "crl.gen is malformed"));
    X509_free(cert);
    gw_upstream_free(before);
    gw_upstream_free(after);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/*
 * CRL numbers keep growing across the instances of a store (RFC 5280 §5.2.3), whatever each one's
 * clock: an instance whose clock runs ahead wrote a number past this one's microseconds into
 * crl.state since this one started, and the next CRL here still counts on from it.
 */
static void test_local_crl_shared_numbers(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *a, *b;
    char dir[64], err[GW_ERR_LEN];
    X509 *certs[4];
    uint64_t last, n, ahead;
    time_t t;
    int listed;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    LOCAL(&conf)->shared_store = true;
    assert_non_null(a = gw_upstream_new(&conf, NULL, err));
    assert_non_null(b = gw_upstream_new(&conf, NULL, err));
    issue_n(a, certs, 4);
    last = crl_lists(a, X509_get0_serialNumber(certs[0]), &listed);
    for (int i = 0; i < 4; i++) {
        struct gw_upstream *by = i % 2 == 0 ? a : b, *other = i % 2 == 0 ? b : a;

        print_message("revocation %d\n", i);
        if (i == 1) { /* a peer a day ahead signed a CRL meanwhile */
            assert_int_equal(gw_store_crl_state_get(dir, &ahead, &t, err), 0);
            ahead += (uint64_t)DAY * 1000000;
            assert_int_equal(gw_store_crl_state_put(dir, ahead, t, err), 0);
            last = ahead;
        }
        assert_int_equal(gw_upstream_revoke(by, certs[i], CRL_REASON_UNSPECIFIED, err), 0);
        n = crl_lists(by, X509_get0_serialNumber(certs[i]), &listed);
        assert_int_equal(listed, 1);
        assert_true(n > last);
        last = n;
        gw_sleep_ms(GW_CRL_GEN_CHECK_MS);
        n = crl_lists(other, X509_get0_serialNumber(certs[i]), &listed);
        assert_int_equal(listed, 1);
        assert_true(n > last);
        last = n;
    }
    for (int i = 0; i < 4; i++)
        X509_free(certs[i]);
    gw_upstream_free(a);
    gw_upstream_free(b);
    conf_cleanup(&conf);
    remove_tree(dir);
}

static time_t fixed_now;

static time_t fixed_clock(void)
{
    return fixed_now;
}

/* The time |t| says, as seconds since the epoch. */
static time_t asn1_secs(const ASN1_TIME *t)
{
    struct tm tm;

    assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
    return timegm(&tm);
}

/*
 * The clock a test gives the upstreams of a set (gw_upstream_set_clock) dates the local issuer's CRL
 * and its revocations: an engine run at a fixed time behind the wall clock (the fuzz targets) gets a
 * CRL it does not refuse as from the future. Without it, the wall clock.
 */
static void test_local_crl_clock(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream_set *set;
    struct gw_upstream *up;
    char dir[64], err[GW_ERR_LEN];
    X509 *cert;
    X509_CRL *crl;
    X509_REVOKED *revoked;
    time_t before = time(NULL);

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(set = gw_upstream_set_new(NULL, 0, NULL, 0, NULL, NULL, NULL, err));
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    assert_int_equal(gw_upstream_set_put0(set, up), 0);
    issue_n(up, &cert, 1);
    fixed_now = before - 3 * 86400;
    gw_upstream_set_clock(set, fixed_clock);
    assert_int_equal(gw_upstream_revoke(up, cert, CRL_REASON_KEY_COMPROMISE, err), 0);
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 1);
    assert_int_equal(asn1_secs(X509_CRL_get0_lastUpdate(crl)), fixed_now);
    revoked = sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), 0);
    assert_int_equal(asn1_secs(X509_REVOKED_get0_revocationDate(revoked)), fixed_now);
    X509_CRL_free(crl);
    /* the twin: without a clock, the wall clock (a CRL built at fixed_now is days old: rebuilt) */
    gw_upstream_set_clock(set, NULL);
    crl = fetch_crl(up, NULL, NULL);
    assert_true(asn1_secs(X509_CRL_get0_lastUpdate(crl)) >= before);
    X509_CRL_free(crl);
    X509_free(cert);
    gw_upstream_set_free(set);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/* Issues one certificate from |up| valid until |not_after|. */
static X509 *issue_until(struct gw_upstream *up, time_t not_after)
{
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    X509 *x;

    plan_init(&plan, keys[K_P256], "short-lived", NULL);
    plan.not_after = not_after;
    sign(up, &plan, &res);
    assert_int_equal(res.status, 0);
    x = res.cert;
    res.cert = NULL;
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    return x;
}

/* The text of <dir>/revoked/<serial of x> into |buf|. */
static void read_record(const char *dir, X509 *x, char *buf, size_t cap)
{
    char hex[41], path[PATH_MAX];
    size_t n;
    FILE *f;

    gw_x509_cert_serial_hex(x, hex, sizeof(hex));
    snprintf(path, sizeof(path), "%s/revoked/%s", dir, hex);
    assert_non_null(f = fopen(path, "r"));
    n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/*
 * A revocation record keeps its certificate's notAfter; the CRL leaves out an entry once its certificate
 * expired a CRL's lifetime (GW_CRL_EXPIRED_KEEP_SECS) before thisUpdate (RFC 5280 §5.1.2.6), and the
 * record stays: the certificate still reads as revoked. A record without notAfter (an earlier version's)
 * stays listed.
 */
static void test_local_crl_expired(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream_set *set;
    struct gw_upstream *up;
    char dir[64], err[GW_ERR_LEN], rec[128], want[64], hex[41], path[PATH_MAX];
    time_t t0 = time(NULL), short_na, edge;
    X509 *shortc, *longc[3];
    X509_CRL *crl;
    int revoked = -1, fi;
    FILE *f;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(set = gw_upstream_set_new(NULL, 0, NULL, 0, NULL, NULL, NULL, err));
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    assert_int_equal(gw_upstream_set_put0(set, up), 0);
    fixed_now = t0;
    gw_upstream_set_clock(set, fixed_clock);
    shortc = issue_until(up, t0 + DAY);
    assert_int_equal(gw_asn1_time(X509_get0_notAfter(shortc), &short_na), 0);
    issue_n(up, longc, 3);
    assert_int_equal(gw_upstream_revoke(up, shortc, CRL_REASON_KEY_COMPROMISE, err), 0);
    assert_int_equal(gw_upstream_revoke(up, longc[0], CRL_REASON_NONE, err), 0);
    assert_int_equal(gw_upstream_revoke(up, longc[1], CRL_REASON_NONE, err), 0);
    read_record(dir, shortc, rec, sizeof(rec));
    snprintf(want, sizeof(want), " not_after=%lld\n", (long long)short_na);
    assert_non_null(strstr(rec, want));
    /* an earlier version's record of the short-lived one's twin: no notAfter, so it stays listed */
    gw_x509_cert_serial_hex(longc[1], hex, sizeof(hex));
    snprintf(path, sizeof(path), "%s/revoked/%s", dir, hex);
    assert_non_null(f = fopen(path, "w"));
    fprintf(f, "time=%lld reason=-1\n", (long long)t0);
    fclose(f);
    /* at the edge: expired a CRL's lifetime ago, not more: listed */
    edge = short_na + GW_CRL_EXPIRED_KEEP_SECS;
    fixed_now = edge;
    crl = fetch_crl(up, NULL, NULL);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 3);
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(shortc)), CRL_REASON_KEY_COMPROMISE);
    X509_CRL_free(crl);
    /* a second later (a revocation makes it build anew): left out; the others stay */
    fixed_now = edge + 1;
    assert_int_equal(gw_upstream_revoke(up, longc[2], CRL_REASON_NONE, err), 0);
    crl = fetch_crl(up, NULL, NULL);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 3);
    assert_int_equal(crl_reason(crl, X509_get0_serialNumber(shortc)), -2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(crl_reason(crl, X509_get0_serialNumber(longc[i])), -1);
    X509_CRL_free(crl);
    /* its record stays: still revoked, and a second revocation is refused as one */
    assert_int_equal(gw_upstream_cert_status(up, shortc, &revoked, err), 0);
    assert_int_equal(revoked, 1);
    assert_int_equal(
        gw_upstream_revoke_serial(up, NULL, X509_get0_serialNumber(shortc), CRL_REASON_NONE, &fi, NULL, err),
        GW_ERR_EXISTS);
    X509_free(shortc);
    for (int i = 0; i < 3; i++)
        X509_free(longc[i]);
    gw_upstream_set_free(set);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/*
 * A store holding as many revocations as a CRL lists takes no more: the rr is refused for good (the CRL
 * that would list it could not be built), nothing is recorded, and the CRL still builds. A certificate
 * revoked already is still told so.
 */
static void test_local_revocations_full(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char dir[64], err[GW_ERR_LEN], path[PATH_MAX], hex[41];
    X509 *certs[3];
    X509_CRL *crl;
    int fi, revoked = -1;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    issue_n(up, certs, 3);
    gw_store_test_revocations_max(2);
    assert_int_equal(gw_upstream_revoke(up, certs[0], CRL_REASON_NONE, err), 0);
    assert_int_equal(gw_upstream_revoke(up, certs[1], CRL_REASON_NONE, err), 0);
    err[0] = '\0';
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, X509_get0_serialNumber(certs[2]), CRL_REASON_NONE,
                                               &fi, NULL, err),
                     GW_ERR_REFUSED);
    assert_non_null(strstr(err, "holds 2 revocations, as many as its CRL may list"));
    gw_x509_cert_serial_hex(certs[2], hex, sizeof(hex));
    snprintf(path, sizeof(path), "%s/revoked/%s", dir, hex);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(gw_upstream_cert_status(up, certs[2], &revoked, err), 0);
    assert_int_equal(revoked, 0);
    /* the twin: one revoked already is told so, full or not */
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, X509_get0_serialNumber(certs[0]), CRL_REASON_NONE,
                                               &fi, NULL, err),
                     GW_ERR_EXISTS);
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 2);
    X509_CRL_free(crl);
    gw_store_test_revocations_max(0);
    for (int i = 0; i < 3; i++)
        X509_free(certs[i]);
    gw_upstream_free(up);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/*
 * gw_upstream_revoke_serial of |cert| with two descriptors left to it: the store's and its revoked/, but none
 * for the count of its revocations.
 */
static int revoke_short_of_fds(struct gw_upstream *up, X509 *cert, char *err)
{
    struct rlimit was, few;
    int fd = dup(0), fi, rc;

    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &was), 0);
    few = (struct rlimit){(rlim_t)fd + 2, was.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &few), 0);
    rc = gw_upstream_revoke_serial(up, NULL, X509_get0_serialNumber(cert), CRL_REASON_NONE, &fi, NULL, err);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);
    return rc;
}

/*
 * A revocation's record, once linked, stays when the directory's fsync fails: another instance's CRL
 * may list it already, and a later one must not list less. The adapter says so apart (GW_ERR_NOT_DURABLE:
 * revoked, on record, its durability in doubt), while this instance's CRL and the store's generation take
 * it in; asking again finds it revoked, also while the count of revoked/ fails. A certificate in the same
 * case is unlinked: it was never released. Before, the adapter gave GW_ERR_IO, which its rr took as an
 * outcome unknown, and a record found while the count failed was taken as a fresh revocation.
 */
static void test_local_revoke_unsynced(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    struct gw_sign_result res;
    struct gw_cert_plan plan;
    char dir[64], err[GW_ERR_LEN], path[PATH_MAX], hex[41];
    uint64_t gen0, gen1;
    X509 *certs[2];
    X509_CRL *crl;
    int fi, revoked = -1, files;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    issue_n(up, certs, 2);
    assert_int_equal(gw_upstream_revoke(up, certs[0], CRL_REASON_NONE, err), 0);
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 1);
    X509_CRL_free(crl);
    assert_int_equal(gw_store_revocations_gen(dir, &gen0, err), 0);
    gw_store_test_fail_dir_syncs(1);
    err[0] = '\0';
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, X509_get0_serialNumber(certs[1]), CRL_REASON_NONE,
                                               &fi, NULL, err),
                     GW_ERR_NOT_DURABLE);
    gw_store_test_fail_dir_syncs(0);
    assert_non_null(strstr(err, "is recorded, but may not outlive a crash"));
    gw_x509_cert_serial_hex(certs[1], hex, sizeof(hex));
    snprintf(path, sizeof(path), "%s/revoked/%s", dir, hex);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(gw_upstream_cert_status(up, certs[1], &revoked, err), 0);
    assert_int_equal(revoked, 1);
    assert_int_equal(gw_store_revocations_gen(dir, &gen1, err), 0);
    assert_true(gen1 != gen0);
    crl = fetch_crl(up, NULL, NULL);
    check_crl(crl, 2);
    X509_CRL_free(crl);
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, X509_get0_serialNumber(certs[1]), CRL_REASON_NONE,
                                               &fi, NULL, err),
                     GW_ERR_EXISTS);
    /* recorded already, while the count of revoked/ fails (no descriptor left for it): still "already" */
    assert_int_equal(revoke_short_of_fds(up, certs[1], err), GW_ERR_EXISTS);
    /* the twin: a certificate whose name could not be made durable is not left in the store */
    files = count_entries(dir);
    plan_init(&plan, keys[K_P256], "unsynced", NULL);
    gw_store_test_fail_dir_syncs(1);
    sign(up, &plan, &res);
    gw_store_test_fail_dir_syncs(0);
    assert_int_equal(res.status, GW_ERR_IO);
    assert_null(res.cert);
    assert_int_equal(count_entries(dir), files);
    gw_sign_result_cleanup(&res);
    gw_cert_plan_cleanup(&plan);
    for (int i = 0; i < 2; i++)
        X509_free(certs[i]);
    gw_upstream_free(up);
    conf_cleanup(&conf);
    remove_tree(dir);
}

/* Writes |text| into <dir>/crl.state. */
static void put_state(const char *dir, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/crl.state", dir);
    assert_non_null(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

/*
 * A crl.state dated a day ahead (a clock stepped back since, or a peer's runs ahead): the next CRL is
 * dated by this clock, numbered past the file's, and the step is said (local_crl_state_ahead), as long
 * as it lasts; crl.state then holds this clock's date. The twin: one within the clock skew a reader
 * allows is not said, and its date is held to, so that the higher number is not dated earlier.
 */
static void test_local_crl_state_ahead(void **state)
{
    static const struct {
        time_t ahead;
        int warned;
    } cases[] = {{DAY, 1}, {GW_CRL_CLOCK_SKEW_SECS / 2, 0}};
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char dir[64], err[GW_ERR_LEN], text[128], logged[4096];
    struct tu_log log;
    X509_CRL *crl;
    uint64_t n;
    time_t t, before;

    (void)state;
    make_store(dir, sizeof(dir));
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case: %lld s ahead\n", (long long)cases[i].ahead);
        before = time(NULL);
        snprintf(text, sizeof(text), "number=%llu this_update=%lld\n", 9000000000000000000ULL + i,
                 (long long)(before + cases[i].ahead));
        put_state(dir, text);
        assert_non_null(up = gw_upstream_new(&conf, NULL, err));
        tu_log_capture(&log, GW_LOG_INFO, GW_LOG_INFO);
        crl = fetch_crl(up, NULL, NULL);
        tu_log_release_into(&log, logged, sizeof(logged));
        /* a day ahead: dated by this clock; within the skew a reader allows: held to the last one's date */
        if (cases[i].warned) {
            check_crl(crl, 0);
            assert_true(asn1_secs(X509_CRL_get0_lastUpdate(crl)) <= time(NULL));
        } else {
            assert_int_equal(X509_CRL_verify(crl, ca_key), 1);
            assert_true(asn1_secs(X509_CRL_get0_lastUpdate(crl)) == before + cases[i].ahead);
        }
        assert_true(crl_number(crl) > 9000000000000000000ULL + i);
        assert_int_equal(strstr(logged, "\"event\":\"local_crl_state_ahead\"") != NULL, cases[i].warned);
        X509_CRL_free(crl);
        assert_int_equal(gw_store_crl_state_get(dir, &n, &t, err), 0);
        if (cases[i].warned)
            assert_true(t >= before && t <= time(NULL));
        else
            assert_true(t == before + cases[i].ahead);
        gw_upstream_free(up);
    }
    conf_cleanup(&conf);
    remove_tree(dir);
}

/* The CRL of |up| at the set's clock: its bytes into *der (free()), |want| what gw_upstream_crl returns. */
static void crl_at(struct gw_upstream *up, time_t at, int want, unsigned char **der, size_t *len)
{
    char err[GW_ERR_LEN];

    fixed_now = at;
    *der = NULL;
    *len = 0;
    assert_int_equal(gw_upstream_crl(up, NULL, der, len, err), want);
}

/* Whether the log |logged| holds |n| local_crl_kept events. */
static int kept_events(const char *logged)
{
    int n = 0;

    for (const char *p = logged; (p = strstr(p, "\"event\":\"local_crl_kept\"")) != NULL; p++)
        n++;
    return n;
}

/*
 * A rebuild due for the CRL's age alone that fails (here crl.lock left 0644: refused, as a peer holding
 * it or a full disk fails it) serves the cached CRL, still within its nextUpdate, said once, and is not
 * tried again for GW_CRL_RETRY_SECS, though the store be mended meanwhile; then it is. The twins: due
 * for a revocation the cached CRL lacks, or with the cached CRL past its nextUpdate, it fails.
 */
static void test_local_crl_rebuild_fails(void **state)
{
    struct gw_upstream_conf conf;
    struct gw_upstream_set *set;
    struct gw_upstream *up;
    char dir[64], err[GW_ERR_LEN], lock[PATH_MAX], logged[4096];
    unsigned char *der1, *der;
    size_t len1, len;
    struct tu_log log;
    time_t t0 = time(NULL);
    X509 *cert;

    (void)state;
    make_store(dir, sizeof(dir));
    snprintf(lock, sizeof(lock), "%s/crl.lock", dir);
    conf_init(&conf, "delegate", ca, ca_key, root);
    LOCAL(&conf)->store_dir = dir;
    assert_non_null(set = gw_upstream_set_new(NULL, 0, NULL, 0, NULL, NULL, NULL, err));
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    assert_int_equal(gw_upstream_set_put0(set, up), 0);
    gw_upstream_set_clock(set, fixed_clock);
    issue_n(up, &cert, 1);
    crl_at(up, t0, 0, &der1, &len1);
    assert_int_equal(chmod(lock, 0644), 0);
    tu_log_capture(&log, GW_LOG_INFO, GW_LOG_INFO);
    crl_at(up, t0 + GW_CRL_REFRESH_SECS, 0, &der, &len);
    assert_true(len == len1 && memcmp(der, der1, len) == 0);
    free(der);
    assert_int_equal(chmod(lock, 0600), 0);
    crl_at(up, t0 + GW_CRL_REFRESH_SECS + GW_CRL_RETRY_SECS - 1, 0, &der, &len); /* backing off */
    assert_true(len == len1 && memcmp(der, der1, len) == 0);
    free(der);
    tu_log_release_into(&log, logged, sizeof(logged));
    assert_int_equal(kept_events(logged), 1);
    assert_non_null(strstr(logged, "crl.lock is not a regular file of mode 0600"));
    crl_at(up, t0 + GW_CRL_REFRESH_SECS + GW_CRL_RETRY_SECS, 0, &der, &len);
    assert_false(len == len1 && memcmp(der, der1, len) == 0);
    free(der);
    /* the twin: a revocation here the cached CRL lacks is never hidden behind it */
    assert_int_equal(chmod(lock, 0644), 0);
    fixed_now = t0 + 2 * GW_CRL_REFRESH_SECS;
    assert_int_equal(gw_upstream_revoke(up, cert, CRL_REASON_KEY_COMPROMISE, err), 0);
    crl_at(up, t0 + 2 * GW_CRL_REFRESH_SECS, GW_ERR_FORBIDDEN, &der, &len);
    assert_null(der);
    crl_at(up, t0 + 2 * GW_CRL_REFRESH_SECS, GW_ERR_FORBIDDEN, &der, &len);
    assert_int_equal(chmod(lock, 0600), 0);
    crl_at(up, t0 + 2 * GW_CRL_REFRESH_SECS, 0, &der, &len);
    free(der);
    /* and one past its nextUpdate is not served */
    assert_int_equal(chmod(lock, 0644), 0);
    crl_at(up, t0 + 2 * GW_CRL_REFRESH_SECS + GW_CRL_NEXT_UPDATE_SECS, GW_ERR_FORBIDDEN, &der, &len);
    assert_null(der);
    free(der1);
    X509_free(cert);
    gw_upstream_set_free(set);
    conf_cleanup(&conf);
    remove_tree(dir);
}

static int nop_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                    void *arg)
{
    (void)up;
    (void)req;
    (void)done;
    (void)arg;
    return GW_ERR_INVAL;
}

/* An adapter without the capabilities: refused, out-params cleared. */
static void test_crl_caps(void **state)
{
    static const struct gw_upstream_ops bare = {.dialect = "bare", .caps = GW_UP_SIGN_CSR, .sign = nop_sign};
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char err[GW_ERR_LEN];
    int fi;
    unsigned char *der = (unsigned char *)"x";
    size_t len = 7;
    ASN1_INTEGER *one = int_from_hex("01", 0);

    (void)state;
    conf_init(&conf, "bare", ca, ca_key, NULL);
    assert_non_null(up = gw_upstream_new_ops(&conf, &bare, NULL, err));
    assert_int_equal(gw_upstream_crl(up, NULL, &der, &len, err), GW_ERR_INVAL);
    assert_null(der);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err, "CRL"));
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, one, 0, &fi, NULL, err), GW_ERR_INVAL);
    assert_int_equal(gw_upstream_crl(NULL, NULL, &der, &len, err), GW_ERR_INVAL);
    ASN1_INTEGER_free(one);
    gw_upstream_free(up);
    conf_cleanup(&conf);
}

/* ---- vault and cfssl revoke / CRL against a canned HTTP server on loopback ---- */

/* One canned answer per path; the last request is kept for the assertions. */
struct canned {
    const char *path;
    int status;
    const char *ctype;
    const unsigned char *body;
    size_t len;
    const char *location; /* a "Location:" header, or NULL */
};

static struct {
    int fd, port;
    pthread_t thread;
    pthread_mutex_t lock;
    struct canned answers[4];
    size_t n_answers;
    int n_reqs;
    char last_method[8], last_path[256], last_body[2048];
    bool last_token; /* the last request carried an X-Vault-Token */
} http_fake;

/* Reads one request (headers, then Content-Length bytes) into |buf|; returns the body start or NULL. */
static char *read_request(int fd, char *buf, size_t cap, size_t *total)
{
    size_t got = 0, need = 0;
    char *end = NULL, *cl;
    ssize_t n;

    while (got < cap - 1 && (n = read(fd, buf + got, cap - 1 - got)) > 0) {
        got += (size_t)n;
        buf[got] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            cl = strcasestr(buf, "content-length:");
            need = (size_t)(end + 4 - buf) + (cl != NULL && cl < end ? strtoul(cl + 15, NULL, 10) : 0);
        }
        if (end != NULL && got >= need)
            break;
    }
    *total = got;
    return end != NULL ? end + 4 : NULL;
}

static void serve_one(int fd)
{
    char buf[8192], head[512], ctype[64] = "", location[256] = "", *body, *sp, *copy = NULL;
    size_t total, i, len = 0;
    int status = 0;

    if ((body = read_request(fd, buf, sizeof(buf), &total)) == NULL)
        return;
    pthread_mutex_lock(&http_fake.lock);
    http_fake.n_reqs++;
    sp = strchr(buf, ' ');
    snprintf(http_fake.last_method, sizeof(http_fake.last_method), "%.*s", (int)(sp - buf), buf);
    snprintf(http_fake.last_path, sizeof(http_fake.last_path), "%.*s", (int)strcspn(sp + 1, " "), sp + 1);
    snprintf(http_fake.last_body, sizeof(http_fake.last_body), "%.*s", (int)(buf + total - body), body);
    http_fake.last_token = strcasestr(buf, "\r\nx-vault-token:") != NULL;
    for (i = 0; i < http_fake.n_answers; i++) {
        const struct canned *a = &http_fake.answers[i];
        if (strcmp(a->path, http_fake.last_path) != 0)
            continue;
        /* a private copy: the test frees its answer as soon as the client has read it */
        status = a->status;
        snprintf(ctype, sizeof(ctype), "%s", a->ctype);
        if (a->location != NULL)
            snprintf(location, sizeof(location), "Location: %s\r\n", a->location);
        len = a->len;
        free(copy); /* the last match wins */
        copy = len > 0 ? malloc(len) : NULL;
        if (copy != NULL)
            memcpy(copy, a->body, len);
    }
    pthread_mutex_unlock(&http_fake.lock);
    if (status == 0 || (len > 0 && copy == NULL)) {
        dprintf(fd, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                    "Connection: close\r\n\r\n{}");
        free(copy);
        return;
    }
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
             status, ctype, len, location);
    if (write(fd, head, strlen(head)) >= 0 && len > 0)
        (void)!write(fd, copy, len);
    free(copy);
}

static void *http_fake_main(void *arg)
{
    int fd;

    (void)arg;
    while ((fd = accept(http_fake.fd, NULL, NULL)) >= 0) {
        serve_one(fd);
        close(fd);
    }
    return NULL;
}

static void http_fake_start(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);

    pthread_mutex_init(&http_fake.lock, NULL);
    assert_true((http_fake.fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    assert_int_equal(bind(http_fake.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(http_fake.fd, 16), 0);
    assert_int_equal(getsockname(http_fake.fd, (struct sockaddr *)&sa, &len), 0);
    http_fake.port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&http_fake.thread, NULL, http_fake_main, NULL), 0);
}

/* The fake stopped: its thread, serving a connection still, gets WAIT_S to end. */
static void http_fake_stop(void)
{
    struct timespec until = tu_deadline(WAIT_S);

    shutdown(http_fake.fd, SHUT_RDWR);
    close(http_fake.fd);
    if (pthread_clockjoin_np(http_fake.thread, NULL, CLOCK_MONOTONIC, &until) != 0)
        fail_msg("the fake HTTP server's thread did not end within WAIT_S");
    pthread_mutex_destroy(&http_fake.lock);
}

static void http_fake_answer(const char *path, int status, const char *ctype, const void *body, size_t len)
{
    pthread_mutex_lock(&http_fake.lock);
    http_fake.answers[0] = (struct canned){path, status, ctype, body, len, NULL};
    http_fake.n_answers = 1;
    http_fake.n_reqs = 0;
    http_fake.last_path[0] = http_fake.last_body[0] = '\0';
    pthread_mutex_unlock(&http_fake.lock);
}

/* A real CRL of the test CA, DER, from the local issuer (malloc'd). */
static unsigned char *sample_crl(size_t *len)
{
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    char err[GW_ERR_LEN];
    unsigned char *der = NULL;

    conf_init(&conf, "sample", ca, ca_key, NULL);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err));
    assert_int_equal(gw_upstream_crl(up, NULL, &der, len, err), 0);
    gw_upstream_free(up);
    conf_cleanup(&conf);
    return der;
}

/* What a CRL answer may be: the DER itself, else refused (garbage, truncated, trailing bytes, 5xx). */
struct crl_answer {
    const char *name;
    int status;
    int mangle; /* 0 as is, 1 truncated, 2 trailing byte, 3 not DER at all */
    int rc;
};

static const struct crl_answer crl_answers[] = {
    {"DER CRL", 200, 0, 0},
    {"truncated", 200, 1, GW_ERR_UPSTREAM},
    {"trailing byte", 200, 2, GW_ERR_UPSTREAM},
    {"garbage", 200, 3, GW_ERR_UPSTREAM},
    {"HTTP 500", 500, 0, GW_ERR_UPSTREAM},
};

static size_t mangled(const unsigned char *der, size_t len, int mangle, unsigned char *out)
{
    memcpy(out, der, len);
    if (mangle == 1)
        return len / 2;
    if (mangle == 2) {
        out[len] = 0;
        return len + 1;
    }
    if (mangle == 3) {
        memcpy(out, "not a CRL", 9);
        return 9;
    }
    return len;
}

static void vault_conf(struct gw_upstream_conf *c, char *url, size_t cap, const char *token_path)
{
    static struct gw_vault_conf vc;   /* one vault upstream at a time */
    static STACK_OF(X509) *issuer_ca; /* its "issuer_ca": the test CA (kept for the process) */

    memset(c, 0, sizeof(*c));
    memset(&vc, 0, sizeof(vc));
    snprintf(url, cap, "http://127.0.0.1:%d", http_fake.port);
    c->name = "vault";
    c->ops = &gw_upstream_vault_ops;
    c->impl = &vc;
    vc.http.url = url;
    c->timeout_ms = 3000;
    c->max_inflight = 4;
    vc.token_file = (char *)token_path;
    if (issuer_ca == NULL)
        sk_X509_push(issuer_ca = sk_X509_new_null(), ca);
    c->issuer_certs = issuer_ca;
}

/* A vault upstream |conf| (token in the new file |token_path|) over a fake Vault, started. */
static struct gw_upstream *vault_up(struct gw_upstream_conf *conf, char *token_path, char *url, size_t cap)
{
    char err[GW_ERR_LEN];
    struct gw_upstream *up;
    int fd;

    assert_true((fd = mkstemp(token_path)) >= 0);
    assert_int_equal(write(fd, "s.test\n", 7), 7);
    close(fd);
    http_fake_start();
    vault_conf(conf, url, cap, token_path);
    assert_non_null(up = gw_upstream_new(conf, NULL, err));
    return up;
}

static void test_vault_revoke_crl(void **state)
{
    static const struct {
        const char *name, *answer;
        int status, negative, rc, requests;
        const char *err;
    } cases[] = {
        {"revoked", "{\"data\":{\"revocation_time\":1,\"state\":\"revoked\"}}", 200, 0, 0, 1, NULL},
        {"unknown serial", "{\"errors\":[\"certificate with serial 0a:0b not found.\"]}", 400, 0,
         GW_ERR_NOT_FOUND, 1, "not found"},
        {"expired: 200 with only a warning",
         "{\"data\":null,\"warnings\":[\"certificate with serial 0a:0b already expired; refusing to add to "
         "CRL\"]}",
         200, 0, GW_ERR_REFUSED, 1, "it has expired"},
        {"Vault down", "{\"errors\":[\"internal error\"]}", 500, 0, GW_ERR_UPSTREAM, 1, NULL},
        {"negative serial: never sent", "{}", 200, 1, GW_ERR_NOT_FOUND, 0, NULL},
    };
    char token_path[] = "/tmp/cmpgw-token-XXXXXX", url[64], err[GW_ERR_LEN];
    int fi;
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    unsigned char *crl, buf[4096], *der;
    size_t crl_len, len;
    ASN1_INTEGER *serial;

    (void)state;
    up = vault_up(&conf, token_path, url, sizeof(url));
    assert_true((gw_upstream_caps(up) & (GW_UP_REVOKE | GW_UP_CRL)) == (GW_UP_REVOKE | GW_UP_CRL));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("vault revoke: %s\n", cases[i].name);
        http_fake_answer("/v1/pki/revoke", cases[i].status, "application/json", cases[i].answer,
                         strlen(cases[i].answer));
        serial = int_from_hex("0a0b", cases[i].negative);
        err[0] = '\0';
        assert_int_equal(gw_upstream_revoke_serial(up, X509_get_subject_name(ca), serial,
                                                   CRL_REASON_KEY_COMPROMISE, &fi, NULL, err),
                         cases[i].rc);
        ASN1_INTEGER_free(serial);
        assert_int_equal(http_fake.n_reqs, cases[i].requests);
        if (cases[i].requests > 0) {
            assert_string_equal(http_fake.last_method, "POST");
            assert_string_equal(http_fake.last_body,
                                "{\"serial_number\":\"0a:0b\"}"); /* no reason: Vault takes none */
        }
        if (cases[i].err != NULL)
            assert_non_null(strstr(err, cases[i].err));
    }
    crl = sample_crl(&crl_len);
    assert_true(crl_len + 1 <= sizeof(buf));
    for (size_t i = 0; i < sizeof(crl_answers) / sizeof(crl_answers[0]); i++) {
        print_message("vault crl: %s\n", crl_answers[i].name);
        len = mangled(crl, crl_len, crl_answers[i].mangle, buf);
        http_fake_answer("/v1/pki/crl", crl_answers[i].status, "application/pkix-crl", buf, len);
        der = (unsigned char *)"x";
        assert_int_equal(gw_upstream_crl(up, NULL, &der, &len, err), crl_answers[i].rc);
        assert_string_equal(http_fake.last_method, "GET");
        if (crl_answers[i].rc == 0) {
            assert_true(len == crl_len && memcmp(der, crl, len) == 0);
            free(der);
        } else {
            assert_null(der);
        }
    }
    free(crl);
    gw_upstream_free(up);
    http_fake_stop();
    unlink(token_path);
}

/*
 * A revocation is asked of the CA that issued the certificate only: Vault revokes by serial within its
 * mount whatever issuer is named, so a certificate of another CA (by its name, or by a signature its
 * CA's key does not verify) would revoke the mount's certificate of that serial. Nothing is sent.
 */
static void test_revoke_other_ca(void **state)
{
    static const char revoked[] = "{\"data\":{\"revocation_time\":1,\"state\":\"revoked\"}}";
    char token_path[] = "/tmp/cmpgw-token-XXXXXX", url[64], err[GW_ERR_LEN];
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    X509 *ours = make_cert("ours", keys[K_P256], ca, ca_key, now - DAY, now + DAY, "CA:FALSE");
    X509 *root_s = make_cert("root's", keys[K_P256], root, root_key, now - DAY, now + DAY, "CA:FALSE");
    X509 *forged = make_cert("forged", keys[K_P256], ca, other_key, now - DAY, now + DAY, "CA:FALSE");
    int fi, unsent = 0;

    (void)state;
    up = vault_up(&conf, token_path, url, sizeof(url));
    http_fake_answer("/v1/pki/revoke", 200, "application/json", revoked, strlen(revoked));
    assert_int_equal(gw_upstream_revoke_serial(up, X509_get_subject_name(root), X509_get0_serialNumber(ours),
                                               CRL_REASON_KEY_COMPROMISE, &fi, NULL, err),
                     GW_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "not the CA of upstream vault: revoke serial"));
    assert_non_null(strstr(err, "by hand at its issuer /CN=test root"));
    assert_int_equal(gw_upstream_revoke(up, root_s, CRL_REASON_NONE, err), GW_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "not the CA of upstream vault"));
    assert_int_equal(gw_upstream_revoke_cert(up, forged, CRL_REASON_NONE, &fi, &unsent, err),
                     GW_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "by hand at its issuer /CN=test issuing"));
    assert_int_equal(unsent, 1); /* refused here: an rr says "not revoked", not "outcome unknown" */
    assert_int_equal(http_fake.n_reqs, 0);
    /* its own CA's certificate, by name or whole, is asked for */
    assert_int_equal(gw_upstream_revoke_serial(up, X509_get_subject_name(ca), X509_get0_serialNumber(ours),
                                               CRL_REASON_KEY_COMPROMISE, &fi, NULL, err),
                     0);
    assert_int_equal(gw_upstream_revoke(up, ours, CRL_REASON_NONE, err), 0);
    assert_int_equal(http_fake.n_reqs, 2);
    X509_free(ours);
    X509_free(root_s);
    X509_free(forged);
    gw_upstream_free(up);
    http_fake_stop();
    unlink(token_path);
}

/*
 * A redirect is not followed: libcurl would send the headers the gateway set, X-Vault-Token among them,
 * to whatever host the Location names (it strips only Authorization and Cookie, and only across
 * hosts). The answer is the upstream's error, and the one request made is the one that was asked.
 */
static void test_vault_redirect_not_followed(void **state)
{
    static const char revoked[] = "{\"data\":{\"revocation_time\":1,\"state\":\"revoked\"}}";
    char token_path[] = "/tmp/cmpgw-token-XXXXXX", url[64], err[GW_ERR_LEN], elsewhere[96];
    struct gw_upstream_conf conf;
    struct gw_upstream *up;
    ASN1_INTEGER *serial = int_from_hex("0a0b", 0);
    int fi;

    (void)state;
    up = vault_up(&conf, token_path, url, sizeof(url));
    /* another host name for the same fake, whose path answers as Vault would */
    snprintf(elsewhere, sizeof(elsewhere), "http://localhost:%d/v1/elsewhere", http_fake.port);
    http_fake_answer("/v1/pki/revoke", 307, "application/json", "", 0);
    pthread_mutex_lock(&http_fake.lock);
    http_fake.answers[0].location = elsewhere;
    http_fake.answers[1] = (struct canned){
        "/v1/elsewhere", 200, "application/json", (const unsigned char *)revoked, strlen(revoked), NULL};
    http_fake.n_answers = 2;
    pthread_mutex_unlock(&http_fake.lock);
    assert_int_not_equal(gw_upstream_revoke_serial(up, X509_get_subject_name(ca), serial,
                                                   CRL_REASON_KEY_COMPROMISE, &fi, NULL, err),
                         0);
    assert_int_equal(http_fake.n_reqs, 1);
    assert_string_equal(http_fake.last_path, "/v1/pki/revoke");
    assert_true(http_fake.last_token); /* what a followed redirect would have carried away */
    ASN1_INTEGER_free(serial);
    gw_upstream_free(up);
    http_fake_stop();
    unlink(token_path);
}

static char *b64_of(const unsigned char *der, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);

    assert_non_null(out);
    EVP_EncodeBlock((unsigned char *)out, der, (int)len);
    return out;
}

static void test_cfssl_revoke_crl(void **state)
{
    static const char ok[] = "{\"success\":true,\"result\":{},\"errors\":[],\"messages\":[]}";
    static const char unknown[] = "{\"success\":false,\"result\":null,\"errors\":[{\"code\":11000,"
                                  "\"message\":\"Certificate not found\"}],\"messages\":[]}";
    struct gw_upstream_conf conf;
    struct gw_cfssl_conf cc = {.auth_key = NULL};
    struct gw_upstream *up;
    char url[64], err[GW_ERR_LEN], aki[2 * 64 + 1] = "", expect[512], *b64, *answer;
    int fi;
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(ca);
    unsigned char *crl, buf[4096], *der;
    size_t crl_len, len;
    ASN1_INTEGER *serial = int_from_hex("0a0b", 0);

    (void)state;
    http_fake_start();
    memset(&conf, 0, sizeof(conf));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", http_fake.port);
    conf.name = "cfssl";
    conf.ops = &gw_upstream_cfssl_ops;
    conf.impl = &cc;
    cc.http.url = url;
    conf.timeout_ms = 3000;
    conf.max_inflight = 4;
    conf.issuer_certs = sk_X509_new_null();
    sk_X509_push(conf.issuer_certs, ca);
    assert_non_null(up = gw_upstream_new(&conf, NULL, err)); /* its info call gets a 404: only a warning */
    assert_true((gw_upstream_caps(up) & (GW_UP_REVOKE | GW_UP_CRL)) == (GW_UP_REVOKE | GW_UP_CRL));
    for (int i = 0; i < ASN1_STRING_length(skid); i++)
        snprintf(aki + 2 * i, 3, "%02x", ASN1_STRING_get0_data(skid)[i]);

    /* revoke: decimal serial, the issuer's SKID as AKI, cfssl's reason name */
    http_fake_answer("/api/v1/cfssl/revoke", 200, "application/json", ok, strlen(ok));
    assert_int_equal(gw_upstream_revoke_serial(up, X509_get_subject_name(ca), serial,
                                               CRL_REASON_KEY_COMPROMISE, &fi, NULL, err),
                     0);
    snprintf(expect, sizeof(expect),
             "{\"serial\":\"2571\",\"authority_key_id\":\"%s\",\"reason\":\"keycompromise\"}", aki);
    assert_string_equal(http_fake.last_body, expect);
    /* unknown: tried with the AKI, then with "" (cfssl 1.2.0 records none), then not found */
    http_fake_answer("/api/v1/cfssl/revoke", 400, "application/json", unknown, strlen(unknown));
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, serial, CRL_REASON_NONE, &fi, NULL, err),
                     GW_ERR_NOT_FOUND);
    assert_int_equal(http_fake.n_reqs, 2);
    assert_non_null(strstr(http_fake.last_body, "\"authority_key_id\":\"\",\"reason\":\"unspecified\""));
    /* twins that never reach cfssl: another issuer, reason 7 */
    http_fake_answer("/api/v1/cfssl/revoke", 200, "application/json", ok, strlen(ok));
    assert_int_equal(gw_upstream_revoke_serial(up, X509_get_subject_name(root), serial, 0, &fi, NULL, err),
                     GW_ERR_NOT_FOUND);
    assert_int_equal(gw_upstream_revoke_serial(up, NULL, serial, 7, &fi, NULL, err), GW_ERR_INVAL);
    assert_int_equal(http_fake.n_reqs, 0);

    /* CRL: base64 DER in "result" */
    crl = sample_crl(&crl_len);
    for (size_t i = 0; i < sizeof(crl_answers) / sizeof(crl_answers[0]); i++) {
        print_message("cfssl crl: %s\n", crl_answers[i].name);
        len = mangled(crl, crl_len, crl_answers[i].mangle, buf);
        b64 = b64_of(buf, len);
        assert_non_null(answer = malloc(strlen(b64) + 128));
        snprintf(answer, strlen(b64) + 128,
                 "{\"success\":%s,\"result\":\"%s\",\"errors\":[],\"messages\":[]}",
                 crl_answers[i].status == 200 ? "true" : "false", b64);
        http_fake_answer("/api/v1/cfssl/crl", crl_answers[i].status, "application/json", answer,
                         strlen(answer));
        der = (unsigned char *)"x";
        assert_int_equal(gw_upstream_crl(up, NULL, &der, &len, err) != 0, crl_answers[i].rc != 0);
        assert_string_equal(http_fake.last_method, "GET");
        if (crl_answers[i].rc == 0) {
            assert_true(len == crl_len && memcmp(der, crl, len) == 0);
            free(der);
        } else {
            assert_null(der);
        }
        free(answer);
        free(b64);
    }
    /* result of the wrong type, and not base64 */
    static const char *const bad[] = {"{\"success\":true,\"result\":{},\"errors\":[],\"messages\":[]}",
                                      "{\"success\":true,\"result\":\"!!!!\",\"errors\":[],\"messages\":[]}",
                                      "{\"success\":true,\"result\":\"\",\"errors\":[],\"messages\":[]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_fake_answer("/api/v1/cfssl/crl", 200, "application/json", bad[i], strlen(bad[i]));
        der = (unsigned char *)"x";
        assert_int_not_equal(gw_upstream_crl(up, NULL, &der, &len, err), 0);
        assert_null(der);
    }
    free(crl);
    ASN1_INTEGER_free(serial);
    gw_upstream_free(up);
    sk_X509_free(conf.issuer_certs);
    http_fake_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_each_key_type),
        cmocka_unit_test(test_own_ca_is_the_object),
        cmocka_unit_test(test_issue_copies_request_spki),
        cmocka_unit_test(test_issue_keeps_signed_encoding),
        cmocka_unit_test(test_issue_recodes_lenient_rsa),
        cmocka_unit_test(test_issue_ed25519_ca),
        cmocka_unit_test(test_issue_profile_edges),
        cmocka_unit_test(test_issue_serials),
        cmocka_unit_test(test_issue_validity_clamp),
        cmocka_unit_test(test_local_init_errors),
        cmocka_unit_test(test_inflight_cap),
        cmocka_unit_test(test_async_refused),
        cmocka_unit_test(test_async_out_of_memory),
        cmocka_unit_test(test_timeout_late_async),
        cmocka_unit_test(test_sign_wait_late_only_logged),
        cmocka_unit_test(test_timeout_local_delay),
        cmocka_unit_test(test_upstream_set),
        cmocka_unit_test(test_store_records),
        cmocka_unit_test(test_store_list_escapes),
        cmocka_unit_test(test_store_failing),
        cmocka_unit_test(test_store_sweep),
        cmocka_unit_test(test_store_crl_state),
        cmocka_unit_test(test_store_crl_next),
        cmocka_unit_test(test_store_check_crl_files),
        cmocka_unit_test(test_store_check),
        cmocka_unit_test(test_store_symlink),
        cmocka_unit_test(test_store_others_may_write),
        cmocka_unit_test(test_local_revoke_cases),
        cmocka_unit_test(test_local_crl),
        cmocka_unit_test(test_local_crl_no_store),
        cmocka_unit_test(test_local_crl_shared_store),
        cmocka_unit_test(test_local_crl_lock_held),
        cmocka_unit_test(test_local_crl_unshared),
        cmocka_unit_test(test_local_crl_shared_numbers),
        cmocka_unit_test(test_local_crl_clock),
        cmocka_unit_test(test_local_crl_expired),
        cmocka_unit_test(test_local_revocations_full),
        cmocka_unit_test(test_local_revoke_unsynced),
        cmocka_unit_test(test_local_crl_state_ahead),
        cmocka_unit_test(test_local_crl_rebuild_fails),
        cmocka_unit_test(test_crl_caps),
        cmocka_unit_test(test_vault_revoke_crl),
        cmocka_unit_test(test_revoke_other_ca),
        cmocka_unit_test(test_vault_redirect_not_followed),
        cmocka_unit_test(test_cfssl_revoke_crl),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
