/* Unit tests for mappings/profile.c: CRMF/PKCS#10 request reading and the role's certificate plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/cmp.h>
#include <openssl/core_names.h>
#include <openssl/crmf.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "mappings/profile.h"
#include "gateway/cmp/cert_req.h"

#define NOW ((time_t)1900000000) /* 2030-03-17 */
#define DAY 86400

enum key_id {
    K_RSA2048,
    K_RSA1024,
    K_P256,
    K_P384,
    K_P521,
    K_P224,
    K_K256,
    K_ED25519,
    K_ED448,
    K_X25519,
    K_P256_EXPLICIT, /* P-256 as explicit parameters (from K_P256, setup_keys) */
    K_RSA_E1,        /* K_RSA2048's modulus with another public exponent (rsa_exponents) */
    K_RSA_E3,
    K_RSA_E65535,
    K_RSA_E65538,
    K_RSA_E65539,
    K_N
};

static EVP_PKEY *keys[K_N];

static const struct {
    const char *alg;
    const char *param; /* curve, or NULL */
    size_t bits;
} key_specs[K_N] = {
    [K_RSA2048] = {"RSA", NULL, 2048}, [K_RSA1024] = {"RSA", NULL, 1024},  [K_P256] = {"EC", "P-256", 0},
    [K_P384] = {"EC", "P-384", 0},     [K_P521] = {"EC", "P-521", 0},      [K_P224] = {"EC", "P-224", 0},
    [K_K256] = {"EC", "secp256k1", 0}, [K_ED25519] = {"ED25519", NULL, 0}, [K_ED448] = {"ED448", NULL, 0},
    [K_X25519] = {"X25519", NULL, 0},
};

/*
 * |named| read back from a private key encoding that spells its curve out as explicit parameters, as a
 * client may send them: OpenSSL 3.0 recognises the parameters of P-256 and names the curve (RFC 5480
 * §2.1.1 allows named curves only).
 */
static EVP_PKEY *explicit_of(EVP_PKEY *named)
{
    EVP_PKEY *copy = EVP_PKEY_dup(named), *out = NULL;
    unsigned char *der = NULL;
    const unsigned char *p;
    int len = 0;

    if (copy != NULL &&
        EVP_PKEY_set_utf8_string_param(copy, OSSL_PKEY_PARAM_EC_ENCODING, OSSL_PKEY_EC_ENCODING_EXPLICIT) ==
            1 &&
        (len = i2d_PrivateKey(copy, &der)) > 0) {
        p = der;
        out = d2i_PrivateKey(EVP_PKEY_EC, NULL, &p, len);
    }
    OPENSSL_clear_free(der, der != NULL ? (size_t)len : 0);
    EVP_PKEY_free(copy);
    return out;
}

/* The public exponents of the keys made from K_RSA2048 (rsa_with_e). */
static const unsigned long rsa_exponents[K_N] = {
    [K_RSA_E1] = 1, [K_RSA_E3] = 3, [K_RSA_E65535] = 65535, [K_RSA_E65538] = 65538, [K_RSA_E65539] = 65539,
};

/*
 * |base|'s modulus and private exponent with the public exponent |e|, as a client may send such a key:
 * OpenSSL generates none below 65537 and no even one, and takes any from its parameters. The plan
 * reads the public key only; the private half signs a CSR (not verified there).
 */
static EVP_PKEY *rsa_with_e(EVP_PKEY *base, unsigned long e)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    BIGNUM *n = NULL, *d = NULL, *bn_e = BN_new();
    EVP_PKEY *out = NULL;

    if (bld != NULL && ctx != NULL && bn_e != NULL && BN_set_word(bn_e, e) == 1 &&
        EVP_PKEY_get_bn_param(base, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
        EVP_PKEY_get_bn_param(base, OSSL_PKEY_PARAM_RSA_D, &d) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) == 1 &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL && EVP_PKEY_fromdata_init(ctx) == 1)
        (void)EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_KEYPAIR, params); /* |out| stays NULL on failure */
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_clear_free(d);
    BN_free(bn_e);
    return out;
}

static int setup_keys(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < K_N; i++) {
        if (i == K_P256_EXPLICIT)
            keys[i] = explicit_of(keys[K_P256]);
        else if (rsa_exponents[i] != 0)
            keys[i] = rsa_with_e(keys[K_RSA2048], rsa_exponents[i]);
        else if (key_specs[i].bits != 0)
            keys[i] = EVP_PKEY_Q_keygen(NULL, NULL, key_specs[i].alg, key_specs[i].bits);
        else if (key_specs[i].param != NULL)
            keys[i] = EVP_PKEY_Q_keygen(NULL, NULL, key_specs[i].alg, key_specs[i].param);
        else
            keys[i] = EVP_PKEY_Q_keygen(NULL, NULL, key_specs[i].alg);
        if (keys[i] == NULL)
            return -1;
    }
    return 0;
}

static int teardown_keys(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < K_N; i++)
        EVP_PKEY_free(keys[i]);
    return 0;
}

/* iot: dns+ip SANs, subject required, 1 day default, 7 days max; KU asks for keyCertSign (must be dropped).
 */
static struct gw_role role_iot = {
    .name = "iot",
    .key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | KU_KEY_CERT_SIGN,
    .ext_key_usage = GW_EKU_CLIENT_AUTH,
    .allowed_san_types = GW_SAN_DNS | GW_SAN_IP,
    .ttl = DAY,
    .max_ttl = 7 * DAY,
    .require_subject = true,
};

/* web: every SAN type, subject optional, defaults for validity. */
static struct gw_role role_web = {
    .name = "web",
    .key_usage = KU_DIGITAL_SIGNATURE,
    .ext_key_usage = GW_EKU_SERVER_AUTH | GW_EKU_CLIENT_AUTH,
    .allowed_san_types = GW_SAN_DNS | GW_SAN_IP | GW_SAN_URI | GW_SAN_EMAIL,
};

static X509_NAME *make_name(const char *cn)
{
    X509_NAME *n = X509_NAME_new();

    if (cn != NULL && cn[0] != '\0')
        assert_int_equal(
            X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0), 1);
    return n;
}

/* Extensions from "nid=value" config text; |sans| like "DNS:a.example,IP:127.0.0.1". */
static STACK_OF(X509_EXTENSION) *make_exts(const char *sans, const char *bc)
{
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *e;

    if (sans != NULL) {
        assert_non_null(e = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, sans));
        sk_X509_EXTENSION_push(exts, e);
    }
    if (bc != NULL) {
        assert_non_null(e = X509V3_EXT_nconf_nid(NULL, NULL, NID_basic_constraints, bc));
        sk_X509_EXTENSION_push(exts, e);
    }
    return exts;
}

static OSSL_CRMF_MSG *make_crmf(EVP_PKEY *key, const char *cn, const char *sans, const char *bc, time_t nb,
                                time_t na)
{
    OSSL_CRMF_MSG *crm = OSSL_CRMF_MSG_new();
    X509_NAME *subject = cn != NULL ? make_name(cn) : NULL;
    STACK_OF(X509_EXTENSION) *exts = make_exts(sans, bc);

    assert_non_null(crm);
    assert_int_equal(OSSL_CRMF_MSG_set_certReqId(crm, 0), 1);
    assert_int_equal(OSSL_CRMF_CERTTEMPLATE_fill(OSSL_CRMF_MSG_get0_tmpl(crm), key, subject, NULL, NULL), 1);
    if (nb != 0 || na != 0)
        assert_int_equal(OSSL_CRMF_MSG_set0_validity(crm, nb != 0 ? ASN1_TIME_set(NULL, nb) : NULL,
                                                     na != 0 ? ASN1_TIME_set(NULL, na) : NULL),
                         1);
    if (sk_X509_EXTENSION_num(exts) > 0) {
        assert_int_equal(OSSL_CRMF_MSG_set0_extensions(crm, exts), 1);
        exts = NULL;
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(subject);
    return crm;
}

static X509_REQ *make_p10(EVP_PKEY *key, const char *cn, const char *sans, const char *bc)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *subject = make_name(cn);
    STACK_OF(X509_EXTENSION) *exts = make_exts(sans, bc);
    int id = EVP_PKEY_get_base_id(key);

    assert_int_equal(X509_REQ_set_subject_name(req, subject), 1);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    if (sk_X509_EXTENSION_num(exts) > 0)
        assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
    assert_true(
        X509_REQ_sign(req, key, id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256()) > 0);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(subject);
    return req;
}

struct plan_case {
    const char *name;
    const struct gw_role *role;
    int p10; /* 1: PKCS#10, else CRMF */
    enum key_id key;
    const char *cn; /* NULL: no subject; "": empty subject */
    const char *sans;
    const char *bc; /* basicConstraints asked for */
    time_t nb, na;  /* requested validity, 0 = none */
    int rc;
    const char *err; /* substring on failure */
    int modified;
    time_t want_na; /* expected notAfter on success */
};

static const struct plan_case plan_cases[] = {
    /* accepted: each key type */
    {"ir rsa2048", &role_iot, 0, K_RSA2048, "dev1", NULL, NULL, 0, 0, 0, NULL, 0, NOW + DAY},
    {"ir p256", &role_iot, 0, K_P256, "dev1", "DNS:dev1.example", NULL, 0, 0, 0, NULL, 0, NOW + DAY},
    {"ir p384", &role_iot, 0, K_P384, "dev1", NULL, NULL, 0, 0, 0, NULL, 0, NOW + DAY},
    {"ir p521", &role_iot, 0, K_P521, "dev1", NULL, NULL, 0, 0, 0, NULL, 0, NOW + DAY},
    {"ir ed25519", &role_iot, 0, K_ED25519, "dev1", "IP:127.0.0.1", NULL, 0, 0, 0, NULL, 0, NOW + DAY},
    {"ir ed448", &role_iot, 0, K_ED448, "dev1", "IP:::1", NULL, 0, 0, 0, NULL, 0, NOW + DAY},
    /* refused keys */
    {"rsa1024", &role_iot, 0, K_RSA1024, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY, "key type/size not allowed",
     0, 0},
    {"p224", &role_iot, 0, K_P224, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY, "key type/size not allowed", 0,
     0},
    {"secp256k1", &role_iot, 0, K_K256, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY, "key type/size not allowed",
     0, 0},
    {"p10 rsa1024", &role_iot, 1, K_RSA1024, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY, "key type/size", 0, 0},
    /* the parameters of P-256 spelled out are still explicit: OpenSSL 3.0 names their curve all the same */
    {"p256 explicit", &role_iot, 0, K_P256_EXPLICIT, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY,
     "key type/size not allowed", 0, 0},
    {"p10 p256 explicit", &role_iot, 1, K_P256_EXPLICIT, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY,
     "key type/size not allowed", 0, 0},
    /* RSA public exponents: odd and at least 65537 (with e = 1 anyone forges a proof of possession) */
    {"rsa e=1", &role_iot, 0, K_RSA_E1, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY, "key type/size not allowed",
     0, 0},
    {"p10 rsa e=1", &role_iot, 1, K_RSA_E1, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY,
     "key type/size not allowed", 0, 0},
    {"rsa e=3", &role_iot, 0, K_RSA_E3, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY, "key type/size not allowed",
     0, 0},
    {"rsa e=65535", &role_iot, 0, K_RSA_E65535, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY,
     "key type/size not allowed", 0, 0},
    {"rsa e=65538", &role_iot, 0, K_RSA_E65538, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY,
     "key type/size not allowed", 0, 0},
    {"p10 rsa e=65538", &role_iot, 1, K_RSA_E65538, "dev1", NULL, NULL, 0, 0, GW_ERR_POLICY,
     "key type/size not allowed", 0, 0},
    {"rsa e=65539", &role_iot, 0, K_RSA_E65539, "dev1", NULL, NULL, 0, 0, 0, NULL, 0, NOW + DAY},
    {"p10 rsa e=65539", &role_iot, 1, K_RSA_E65539, "dev1", NULL, NULL, 0, 0, 0, NULL, 0, NOW + DAY},
    /* CA:TRUE asked for: ignored, grantedWithMods */
    {"ir CA:TRUE", &role_iot, 0, K_P256, "dev1", NULL, "critical,CA:TRUE", 0, 0, 0, NULL, 1, NOW + DAY},
    {"p10 CA:TRUE", &role_iot, 1, K_P256, "dev1", "DNS:a.example", "CA:TRUE,pathlen:3", 0, 0, 0, NULL, 1,
     NOW + DAY},
    /* validity */
    {"asks 3 days", &role_iot, 0, K_P256, "dev1", NULL, NULL, NOW, NOW + 3 * DAY, 0, NULL, 0, NOW + 3 * DAY},
    {"asks only notAfter", &role_iot, 0, K_P256, "dev1", NULL, NULL, 0, NOW + 2 * DAY, 0, NULL, 0,
     NOW + 2 * DAY},
    {"asks 7 days exactly", &role_iot, 0, K_P256, "dev1", NULL, NULL, 0, NOW + 7 * DAY, 0, NULL, 0,
     NOW + 7 * DAY},
    {"over-long validity", &role_iot, 0, K_P256, "dev1", NULL, NULL, NOW, NOW + 3650 * DAY, 0, NULL, 1,
     NOW + 7 * DAY},
    {"over-long by 1 s", &role_iot, 0, K_P256, "dev1", NULL, NULL, 0, NOW + 7 * DAY + 1, 0, NULL, 1,
     NOW + 7 * DAY},
    {"backdated start", &role_iot, 0, K_P256, "dev1", NULL, NULL, NOW - 365 * DAY, NOW + 2 * DAY, 0, NULL, 1,
     NOW + 2 * DAY},
    {"start within the skew", &role_iot, 0, K_P256, "dev1", NULL, NULL, NOW - 30, NOW + 2 * DAY, 0, NULL, 0,
     NOW + 2 * DAY},
    {"future start", &role_iot, 0, K_P256, "dev1", NULL, NULL, NOW + DAY, NOW + 2 * DAY, 0, NULL, 1,
     NOW + 2 * DAY},
    {"ends in the past", &role_iot, 0, K_P256, "dev1", NULL, NULL, 0, NOW - 10, GW_ERR_POLICY, "in the past",
     0, 0},
    {"ends now", &role_iot, 0, K_P256, "dev1", NULL, NULL, 0, NOW, GW_ERR_POLICY, "in the past", 0, 0},
    {"ends before start", &role_iot, 0, K_P256, "dev1", NULL, NULL, NOW + 3 * DAY, NOW + DAY, GW_ERR_POLICY,
     "before it starts", 0, 0},
    {"role defaults", &role_web, 0, K_P256, "www", NULL, NULL, 0, 0, 0, NULL, 0, NOW + GW_DEFAULT_TTL},
    {"role default cap", &role_web, 0, K_P256, "www", NULL, NULL, 0, NOW + 365 * DAY, 0, NULL, 1,
     NOW + GW_DEFAULT_MAX_TTL},
    /* subject */
    {"missing subject", &role_iot, 0, K_P256, NULL, "DNS:a.example", NULL, 0, 0, GW_ERR_POLICY,
     "the certificate template has no subject; this role requires one", 0, 0},
    {"empty subject", &role_iot, 0, K_P256, "", "DNS:a.example", NULL, 0, 0, GW_ERR_POLICY, "requires one", 0,
     0},
    {"p10 empty subject", &role_iot, 1, K_P256, "", "DNS:a.example", NULL, 0, 0, GW_ERR_POLICY,
     "requires one", 0, 0},
    {"no subject, SAN", &role_web, 0, K_P256, NULL, "DNS:a.example", NULL, 0, 0, 0, NULL, 0,
     NOW + GW_DEFAULT_TTL},
    {"no subject, no SAN", &role_web, 0, K_P256, NULL, NULL, NULL, 0, 0, GW_ERR_POLICY,
     "neither a subject nor", 0, 0},
    /* SAN types */
    {"forbidden email", &role_iot, 0, K_P256, "dev1", "DNS:a.example,email:a@example.com", NULL, 0, 0,
     GW_ERR_POLICY, "subjectAltName type email is not allowed on role iot", 0, 0},
    {"forbidden uri", &role_iot, 0, K_P256, "dev1", "URI:https://a.example/", NULL, 0, 0, GW_ERR_POLICY,
     "type uri is not allowed on role iot", 0, 0},
    {"RID never", &role_web, 0, K_P256, "dev1", "RID:1.2.3.4", NULL, 0, 0, GW_ERR_POLICY,
     "type registeredID is not allowed on role web", 0, 0},
    {"otherName never", &role_web, 0, K_P256, "dev1", "otherName:1.2.3.4;UTF8:x", NULL, 0, 0, GW_ERR_POLICY,
     "type otherName is not allowed", 0, 0},
    {"wildcard, IDNA, 63-char label", &role_web, 0, K_P256, "www",
     "DNS:*.a.example,DNS:xn--bcher-kva.example,DNS:"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b",
     NULL, 0, 0, 0, NULL, 0, NOW + GW_DEFAULT_TTL},
    {"64-char label", &role_web, 0, K_P256, "www",
     "DNS:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b", NULL, 0, 0, GW_ERR_POLICY,
     "subjectAltName dns entry is malformed", 0, 0},
    {"all four on web", &role_web, 0, K_P256, "www",
     "DNS:a.example,IP:10.0.0.1,URI:urn:x:y,email:a@example.com", NULL, 0, 0, 0, NULL, 0,
     NOW + GW_DEFAULT_TTL},
    /* URIs as roles use them: SPIFFE IDs, URNs (3GPP's, GSMA's), https with a path, a query and a port, SIP
     */
    {"uri forms in use", &role_web, 0, K_P256, "www",
     "URI:spiffe://example.org/ns/prod/sa/web,URI:urn:gsma:imei:35209900-176148-1,"
     "URI:urn:3gpp:ue:imsi-001010123456789,URI:https://dev-1.example.com/status?a=1&b=%20,"
     "URI:https://[::1]:8443/x,URI:sip:dev-9@example.com,URI:spiffe://example.org/ns/a%2Fb/sa/c",
     NULL, 0, 0, 0, NULL, 0, NOW + GW_DEFAULT_TTL},
    /* a URI a URL parser (RFC 3986 §3.2, WHATWG) reads with another host than it seems to name */
    {"uri host ended by '?'", &role_web, 0, K_P256, "www", "URI:https://intranet?.example.com/x", NULL, 0, 0,
     GW_ERR_POLICY,
     "subjectAltName URI https://intranet?.example.com/x is refused: it has a '?' before the '/' that would "
     "end its authority, where URL parsers end the host: a query must follow a path",
     0, 0},
    {"uri IPv6 host ended by '?'", &role_web, 0, K_P256, "www", "URI:https://[::1]?.example.com/x", NULL, 0,
     0, GW_ERR_POLICY, "URI https://[::1]?.example.com/x is refused: it has a '?' before the '/'", 0, 0},
    {"uri fragment", &role_web, 0, K_P256, "www", "URI:https://evil#.example.com/x", NULL, 0, 0,
     GW_ERR_POLICY,
     "subjectAltName URI https://evil#.example.com/x is refused: it holds a '#', which begins a fragment", 0,
     0},
    {"uri fragment in a path", &role_web, 0, K_P256, "www", "URI:spiffe://example.org/ns/a#/sa/b", NULL, 0, 0,
     GW_ERR_POLICY, "URI spiffe://example.org/ns/a#/sa/b is refused: it holds a '#'", 0, 0},
    {"uri backslash", &role_web, 0, K_P256, "www", "URI:https://evil\\.example.com/x", NULL, 0, 0,
     GW_ERR_POLICY,
     "subjectAltName URI https://evil\\.example.com/x is refused: it holds a backslash, which URL parsers "
     "read as '/'",
     0, 0},
    {"uri userinfo", &role_web, 0, K_P256, "www", "URI:https://dev-1.example.com@evil.org/x", NULL, 0, 0,
     GW_ERR_POLICY,
     "subjectAltName URI https://dev-1.example.com@evil.org/x is refused: its authority holds a '@' "
     "(userinfo): URL parsers take the host from after it",
     0, 0},
    {"uri encoded host", &role_web, 0, K_P256, "www", "URI:https://evil%2eorg/x", NULL, 0, 0, GW_ERR_POLICY,
     "subjectAltName URI https://evil%2eorg/x is refused: its authority holds a '%', which URL parsers "
     "decode",
     0, 0},
    /* the slashes after a WHATWG special scheme's ':', which URL parsers add or skip: each of these names
       the host "intranet" to them, as "https://intranet/x" does */
    {"uri https without '//'", &role_web, 0, K_P256, "www", "URI:https:intranet?.example.com/x", NULL, 0, 0,
     GW_ERR_POLICY,
     "subjectAltName URI https:intranet?.example.com/x is refused: a URL parser adds or skips slashes after "
     "the scheme of an http, https, ws, wss or ftp URI: it must have \"//\" and a host",
     0, 0},
    {"uri https with one '/'", &role_web, 0, K_P256, "www", "URI:https:/intranet?.example.com/x", NULL, 0, 0,
     GW_ERR_POLICY, "URI https:/intranet?.example.com/x is refused: a URL parser adds or skips slashes", 0,
     0},
    {"uri https with '///'", &role_web, 0, K_P256, "www", "URI:https:///intranet?.example.com/x", NULL, 0, 0,
     GW_ERR_POLICY, "URI https:///intranet?.example.com/x is refused: a URL parser adds or skips slashes", 0,
     0},
    {"uri https with '////'", &role_web, 0, K_P256, "www", "URI:https:////evil@intranet/", NULL, 0, 0,
     GW_ERR_POLICY, "URI https:////evil@intranet/ is refused: a URL parser adds or skips slashes", 0, 0},
    {"uri special scheme in capitals", &role_web, 0, K_P256, "www", "URI:HTTPS:evil@intranet/x", NULL, 0, 0,
     GW_ERR_POLICY, "URI HTTPS:evil@intranet/x is refused: a URL parser adds or skips slashes", 0, 0},
    {"uri ws without '//'", &role_web, 0, K_P256, "www", "URI:wS:intranet/x", NULL, 0, 0, GW_ERR_POLICY,
     "URI wS:intranet/x is refused: a URL parser adds or skips slashes", 0, 0},
    {"uri http, empty authority", &role_web, 0, K_P256, "www", "URI:http://", NULL, 0, 0, GW_ERR_POLICY,
     "URI http:// is refused: a URL parser adds or skips slashes", 0, 0},
    {"uri ftp without '//'", &role_web, 0, K_P256, "www", "URI:ftp:intranet", NULL, 0, 0, GW_ERR_POLICY,
     "URI ftp:intranet is refused: a URL parser adds or skips slashes", 0, 0},
    /* file: has an empty host in its usual form, file:///path; "file:////evil/x" is a UNC share to Windows */
    {"uri file forms", &role_web, 0, K_P256, "www",
     "URI:file:///etc/hosts,URI:file://host.example.com/x,URI:file:///", NULL, 0, 0, 0, NULL, 0,
     NOW + GW_DEFAULT_TTL},
    {"uri file with '////'", &role_web, 0, K_P256, "www", "URI:file:////evil/x", NULL, 0, 0, GW_ERR_POLICY,
     "subjectAltName URI file:////evil/x is refused: a URL parser adds or skips slashes after \"file:\": it "
     "must have \"//\" and a host, or \"///\" and a path",
     0, 0},
    {"uri file with one '/'", &role_web, 0, K_P256, "www", "URI:file:/etc/hosts", NULL, 0, 0, GW_ERR_POLICY,
     "URI file:/etc/hosts is refused: a URL parser adds or skips slashes after \"file:\"", 0, 0},
    {"uri file without '//'", &role_web, 0, K_P256, "www", "URI:FILE:evil/x", NULL, 0, 0, GW_ERR_POLICY,
     "URI FILE:evil/x is refused: a URL parser adds or skips slashes after \"file:\"", 0, 0},
    {"uri file, empty", &role_web, 0, K_P256, "www", "URI:file://", NULL, 0, 0, GW_ERR_POLICY,
     "URI file:// is refused: a URL parser adds or skips slashes after \"file:\"", 0, 0},
    /* other schemes keep their own syntax: no authority, or one after "//" */
    {"uri other schemes, any slashes", &role_web, 0, K_P256, "www",
     "URI:spiffe:x,URI:urn:/x,URI:sip:///x,URI:httpx:evil@intranet/x,URI:xhttps:/x", NULL, 0, 0, 0, NULL, 0,
     NOW + GW_DEFAULT_TTL},
    /* a '?' right after the host ends it for URL parsers as in "https://intranet?.example.com/x" */
    {"uri query without a path", &role_web, 0, K_P256, "www", "URI:https://example.com?x=1", NULL, 0, 0,
     GW_ERR_POLICY,
     "subjectAltName URI https://example.com?x=1 is refused: it has a '?' before the '/' that would end its "
     "authority, where URL parsers end the host: a query must follow a path",
     0, 0},
    {"uri query after a path", &role_web, 0, K_P256, "www", "URI:https://example.com/?x=1", NULL, 0, 0, 0,
     NULL, 0, NOW + GW_DEFAULT_TTL},
    {"uri without a scheme", &role_web, 0, K_P256, "www", "URI://evil.org/x:y", NULL, 0, 0, GW_ERR_POLICY,
     "subjectAltName URI //evil.org/x:y is refused: it does not begin with a scheme", 0, 0},
    {"uri scheme with a digit first", &role_web, 0, K_P256, "www", "URI:1x:y", NULL, 0, 0, GW_ERR_POLICY,
     "URI 1x:y is refused: it does not begin with a scheme", 0, 0},
    {"uri bytes still first", &role_web, 0, K_P256, "www", "URI:https://a b/", NULL, 0, 0, GW_ERR_POLICY,
     "subjectAltName uri entry is malformed", 0, 0},
    {"p10 with SANs", &role_iot, 1, K_RSA2048, "dev2", "DNS:dev2.example,IP:127.0.0.1", NULL, 0, 0, 0, NULL,
     0, NOW + DAY},
    {"p10 forbidden SAN", &role_iot, 1, K_P256, "dev2", "URI:urn:a", NULL, 0, 0, GW_ERR_POLICY, "type uri", 0,
     0},
    {"p10 ed25519", &role_web, 1, K_ED25519, "dev3", NULL, NULL, 0, 0, 0, NULL, 0, NOW + GW_DEFAULT_TTL},
};

static int read_req(const struct plan_case *c, struct gw_cert_req *req, char *err)
{
    int rc;

    if (c->p10) {
        X509_REQ *csr = make_p10(keys[c->key], c->cn != NULL ? c->cn : "", c->sans, c->bc);

        rc = gw_cert_req_from_p10(csr, req, err);
        X509_REQ_free(csr);
    } else {
        OSSL_CRMF_MSG *crm = make_crmf(keys[c->key], c->cn, c->sans, c->bc, c->nb, c->na);

        rc = gw_cert_req_from_crmf(GW_REQ_IR, crm, NULL, req, err);
        OSSL_CRMF_MSG_free(crm);
    }
    return rc;
}

/* |asked|: the request's subject as it was before the plan took it */
static void check_plan(const struct plan_case *c, const struct gw_cert_req *req, const X509_NAME *asked,
                       const struct gw_cert_plan *plan)
{
    assert_int_equal(plan->modified, c->modified);
    assert_true(plan->not_after == c->want_na);
    assert_int_equal(plan->not_after_asked, c->na != 0); /* the client's notAfter, kept or cut */
    assert_true(plan->not_before == NOW - GW_BACKDATE_SECS);
    assert_int_equal(plan->key_usage, role_iot.key_usage == c->role->key_usage
                                          ? (unsigned)(KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT)
                                          : c->role->key_usage);
    assert_int_equal(plan->ext_key_usage, c->role->ext_key_usage);
    assert_int_equal(EVP_PKEY_eq(plan->pubkey, keys[c->key]), 1);
    assert_non_null(plan->subject);
    if (asked != NULL)
        assert_int_equal(X509_NAME_cmp(plan->subject, asked), 0);
    else
        assert_int_equal(X509_NAME_entry_count(plan->subject), 0);
    if (c->sans == NULL) {
        assert_null(plan->sans);
        return;
    }
    assert_non_null(plan->sans);
    assert_int_equal(sk_GENERAL_NAME_num(plan->sans), sk_GENERAL_NAME_num(req->sans));
    for (int i = 0; i < sk_GENERAL_NAME_num(plan->sans); i++)
        assert_int_equal(
            GENERAL_NAME_cmp(sk_GENERAL_NAME_value(plan->sans, i), sk_GENERAL_NAME_value(req->sans, i)), 0);
}

static void test_plan_table(void **state)
{
    struct gw_cert_req req;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int fail_info, rc;
    X509_NAME *asked;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(plan_cases) / sizeof(plan_cases[0]); i++) {
        const struct plan_case *c = &plan_cases[i];

        if (read_req(c, &req, err) != 0)
            fail_msg("%s: reading the request failed: %s", c->name, err);
        asked = req.subject != NULL ? X509_NAME_dup(req.subject) : NULL;
        assert_true(req.subject == NULL || asked != NULL);
        rc = gw_cert_plan_make(c->role, &req, NOW, &plan, &fail_info, err);
        if (rc != c->rc)
            fail_msg("%s: rc %d, expected %d (%s)", c->name, rc, c->rc, err);
        if (rc == 0) {
            assert_int_equal(fail_info, 0);
            check_plan(c, &req, asked, &plan);
        } else {
            if (strstr(err, c->err) == NULL)
                fail_msg("%s: reason \"%s\" lacks \"%s\"", c->name, err, c->err);
            assert_int_equal(fail_info, OSSL_CMP_PKIFAILUREINFO_badCertTemplate);
            assert_null(plan.subject);
            assert_null(plan.pubkey);
            assert_null(plan.sans);
            /* a refused plan leaves the subject to the request */
            assert_true(asked == NULL || X509_NAME_cmp(req.subject, asked) == 0);
        }
        X509_NAME_free(asked);
        gw_cert_plan_cleanup(&plan);
        gw_cert_req_cleanup(&req);
    }
}

/* SAN type filter on hand-built names, including types the config language cannot spell. */
static void test_plan_san_types(void **state)
{
    static const struct {
        int type;
        unsigned allowed;
        int ok;
    } cases[] = {
        {GEN_DNS, GW_SAN_DNS, 1},   {GEN_DNS, GW_SAN_IP, 0},  {GEN_IPADD, GW_SAN_IP, 1},
        {GEN_IPADD, GW_SAN_DNS, 0}, {GEN_URI, GW_SAN_URI, 1}, {GEN_EMAIL, GW_SAN_EMAIL, 1},
        {GEN_EMAIL, 0, 0},          {GEN_DIRNAME, ~0u, 0},    {GEN_DNS, 0, 0},
    };
    struct gw_role role = role_web;
    struct gw_cert_req req;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int fail_info;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        GENERAL_NAME *gn = GENERAL_NAME_new();

        gw_cert_req_init(&req);
        req.subject = make_name("x");
        assert_int_equal(EVP_PKEY_up_ref(keys[K_P256]), 1);
        req.pubkey = keys[K_P256];
        req.sans = GENERAL_NAMES_new();
        if (cases[i].type == GEN_DIRNAME) {
            GENERAL_NAME_set0_value(gn, GEN_DIRNAME, make_name("dir"));
        } else if (cases[i].type == GEN_IPADD) {
            ASN1_OCTET_STRING *ip = ASN1_OCTET_STRING_new();

            ASN1_OCTET_STRING_set(ip, (const unsigned char *)"\x7f\0\0\1", 4);
            GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
        } else {
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();

            ASN1_STRING_set(s,
                            cases[i].type == GEN_URI     ? "urn:x"
                            : cases[i].type == GEN_EMAIL ? "a@example.com"
                                                         : "a.example",
                            -1);
            GENERAL_NAME_set0_value(gn, cases[i].type, s);
        }
        sk_GENERAL_NAME_push(req.sans, gn);
        role.allowed_san_types = cases[i].allowed;
        assert_int_equal(gw_cert_plan_make(&role, &req, NOW, &plan, &fail_info, err),
                         cases[i].ok ? 0 : GW_ERR_POLICY);
        if (!cases[i].ok) {
            assert_int_equal(fail_info, OSSL_CMP_PKIFAILUREINFO_badCertTemplate);
            assert_non_null(strstr(err, "is not allowed on role web"));
        }
        gw_cert_plan_cleanup(&plan);
        gw_cert_req_cleanup(&req);
    }
}

/* Malformed SAN values and too many SANs: refused with badCertTemplate. */
static void test_plan_san_values(void **state)
{
    static const struct {
        int type;
        const char *val;
        int len;
        const char *want; /* NULL: "malformed" */
    } bad[] = {
        {GEN_IPADD, "\x7f\0\0", 3, NULL},     /* truncated IPv4 */
        {GEN_IPADD, "\x7f\0\0\1\0", 5, NULL}, /* oversized */
        {GEN_DNS, "", 0, NULL},               /* empty */
        {GEN_DNS, "a b", 3, NULL},            /* space */
        {GEN_DNS, "a\0b", 3, NULL},           /* embedded NUL */
        {GEN_URI, "\x80", 1, NULL},           /* not ASCII */
        {GEN_DNS, "a@example.com", 13, NULL}, /* not a host name */
        {GEN_DNS, "-a.example", 10, NULL},    /* label starts with '-' */
        {GEN_DNS, "a-.example", 10, NULL},    /* label ends with '-' */
        {GEN_DNS, "a..example", 10, NULL},    /* empty label */
        {GEN_DNS, "a.example.", 10, NULL},    /* trailing dot */
        {GEN_DNS, "a.*.example", 11, NULL},   /* wildcard not leftmost */
        {GEN_DNS, "a_b.example", 11, NULL},   /* underscore */
        {GEN_DNS, "*.", 2, NULL},             /* wildcard alone */
        {GEN_URI, "no-scheme", 9,
         "=subjectAltName URI no-scheme is refused: it does not begin with a scheme: "
         "a letter, then letters, digits, '+', '-' or '.', and a ':'"},
        {GEN_URI, ":x", 2, "URI :x is refused: it does not begin with a scheme"},
        /* a long one is cut in the text (GW_ERR_NAME_SHOWN) */
        {GEN_URI,
         "https://evil#/"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaa",
         134,
         "=subjectAltName URI "
         "https://evil#/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa... "
         "is refused: it holds a '#', which begins a fragment"},
        {GEN_EMAIL, "nobody", 6, NULL},
        {GEN_EMAIL, "@example.com", 12, NULL},
        {GEN_EMAIL, "a@", 2, NULL},
        {GEN_EMAIL, "a@evil@example.com", 18, NULL}, /* two '@': mailers differ on the domain */
    };
    struct gw_cert_req req;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int fail_info, i;
    size_t j;

    (void)state;
    for (j = 0; j <= sizeof(bad) / sizeof(bad[0]); j++) {
        gw_cert_req_init(&req);
        req.subject = make_name("x");
        assert_int_equal(EVP_PKEY_up_ref(keys[K_P256]), 1);
        req.pubkey = keys[K_P256];
        req.sans = GENERAL_NAMES_new();
        for (i = 0; i < (j == sizeof(bad) / sizeof(bad[0]) ? GW_MAX_SANS + 1 : 1); i++) {
            GENERAL_NAME *gn = GENERAL_NAME_new();
            ASN1_STRING *s = ASN1_STRING_type_new(V_ASN1_IA5STRING);

            if (j < sizeof(bad) / sizeof(bad[0]))
                ASN1_STRING_set(s, bad[j].val, bad[j].len);
            else
                ASN1_STRING_set(s, "a.example", -1);
            GENERAL_NAME_set0_value(gn, j < sizeof(bad) / sizeof(bad[0]) ? bad[j].type : GEN_DNS, s);
            sk_GENERAL_NAME_push(req.sans, gn);
        }
        assert_int_equal(gw_cert_plan_make(&role_web, &req, NOW, &plan, &fail_info, err), GW_ERR_POLICY);
        assert_int_equal(fail_info, OSSL_CMP_PKIFAILUREINFO_badCertTemplate);
        if (j == sizeof(bad) / sizeof(bad[0]))
            assert_non_null(strstr(err, "too many"));
        else if (bad[j].want != NULL && bad[j].want[0] == '=')
            assert_string_equal(err, bad[j].want + 1);
        else
            assert_non_null(strstr(err, bad[j].want != NULL ? bad[j].want : "malformed"));
        gw_cert_req_cleanup(&req);
    }
    /* exactly at the cap: accepted */
    gw_cert_req_init(&req);
    req.subject = make_name("x");
    assert_int_equal(EVP_PKEY_up_ref(keys[K_P256]), 1);
    req.pubkey = keys[K_P256];
    req.sans = GENERAL_NAMES_new();
    for (i = 0; i < GW_MAX_SANS; i++) {
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();

        ASN1_STRING_set(s, "a.example", -1);
        GENERAL_NAME_set0_value(gn, GEN_DNS, s);
        sk_GENERAL_NAME_push(req.sans, gn);
    }
    assert_int_equal(gw_cert_plan_make(&role_web, &req, NOW, &plan, &fail_info, err), 0);
    assert_int_equal(sk_GENERAL_NAME_num(plan.sans), GW_MAX_SANS);
    gw_cert_plan_cleanup(&plan);
    gw_cert_req_cleanup(&req);
}

/*
 * A plan takes the request's copies of the key's SubjectPublicKeyInfo and of the subject instead of
 * copying them again (a copy duplicates the EVP_PKEY, or encodes and decodes the name); a refused plan
 * leaves them to the request.
 */
static void test_plan_takes_request_copies(void **state)
{
    X509_REQ *csr = make_p10(keys[K_P256], "dev1", NULL, NULL);
    struct gw_cert_req req;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    X509_PUBKEY *spki;
    X509_NAME *subject;
    int fail_info;

    (void)state;
    assert_int_equal(gw_cert_req_from_p10(csr, &req, err), 0);
    assert_non_null(spki = req.spki);
    assert_non_null(subject = req.subject);
    assert_int_equal(gw_cert_plan_make(&role_web, &req, NOW, &plan, &fail_info, err), 0);
    assert_ptr_equal(plan.spki, spki);
    assert_null(req.spki);
    assert_int_equal(EVP_PKEY_eq(X509_PUBKEY_get0(plan.spki), keys[K_P256]), 1);
    assert_ptr_equal(plan.subject, subject);
    assert_null(req.subject);
    assert_int_equal(X509_NAME_cmp(plan.subject, X509_REQ_get_subject_name(csr)), 0);
    gw_cert_plan_cleanup(&plan);
    gw_cert_req_cleanup(&req);

    /* refused (a name type outside the role): the request keeps its copies, the plan holds none */
    X509_REQ_free(csr);
    csr = make_p10(keys[K_P256], "dev1", "DNS:a.example,email:a@example.com", NULL);
    assert_int_equal(gw_cert_req_from_p10(csr, &req, err), 0);
    assert_non_null(spki = req.spki);
    assert_non_null(subject = req.subject);
    assert_int_equal(gw_cert_plan_make(&role_iot, &req, NOW, &plan, &fail_info, err), GW_ERR_POLICY);
    assert_ptr_equal(req.spki, spki);
    assert_null(plan.spki);
    assert_ptr_equal(req.subject, subject);
    assert_null(plan.subject);
    gw_cert_req_cleanup(&req);
    X509_REQ_free(csr);
}

/*
 * A plan copied for a call or a check that outlives the request owns every object of its own: the key
 * as the request carried it and the CSR's other extensions included (a shared one was freed twice).
 */
static void test_plan_copy_deep(void **state)
{
    X509_REQ *csr = make_p10(keys[K_P256], "dev1", "DNS:dev1.example.com", "CA:FALSE");
    struct gw_cert_req req;
    struct gw_cert_plan plan, copy;
    char err[GW_ERR_LEN];
    int fail_info;

    (void)state;
    assert_int_equal(gw_cert_req_from_p10(csr, &req, err), 0);
    assert_int_equal(gw_cert_plan_make(&role_web, &req, NOW, &plan, &fail_info, err), 0);
    assert_true(plan.spki != NULL && sk_X509_EXTENSION_num(plan.csr_exts) == 1);
    assert_int_equal(gw_cert_plan_copy(&plan, &copy), 0);
    assert_true(copy.spki != NULL && copy.spki != plan.spki);
    assert_true(copy.csr_exts != NULL && copy.csr_exts != plan.csr_exts);
    assert_true(copy.subject != plan.subject && copy.sans != plan.sans);
    assert_ptr_equal(copy.pubkey, plan.pubkey);
    gw_cert_plan_cleanup(&plan);
    gw_cert_req_cleanup(&req);
    assert_int_equal(EVP_PKEY_eq(X509_PUBKEY_get0(copy.spki), keys[K_P256]), 1);
    assert_int_equal(sk_X509_EXTENSION_num(copy.csr_exts), 1);
    gw_cert_plan_cleanup(&copy);
    X509_REQ_free(csr);
}

/* CRMF reading: fields land in the request; no public key, duplicate or garbage SAN are errors. */
static void test_req_from_crmf(void **state)
{
    OSSL_CRMF_MSG *crm;
    X509_EXTENSION *e;
    STACK_OF(X509_EXTENSION) *exts;
    ASN1_OCTET_STRING *junk;
    struct gw_cert_req req;
    char err[GW_ERR_LEN];

    (void)state;
    crm = make_crmf(keys[K_P256], "dev1", "DNS:a.example,IP:127.0.0.1", "CA:TRUE", NOW, NOW + DAY);
    assert_int_equal(gw_cert_req_from_crmf(GW_REQ_CR, crm, NULL, &req, err), 0);
    assert_int_equal(req.kind, GW_REQ_CR);
    assert_non_null(req.subject);
    assert_int_equal(sk_GENERAL_NAME_num(req.sans), 2);
    assert_int_equal(req.other_exts, 1);
    assert_null(req.csr_exts); /* the gateway rebuilds a template: no CA sees the client's */
    assert_true(req.not_before == NOW && req.not_after == NOW + DAY);
    assert_int_equal(EVP_PKEY_eq(req.pubkey, keys[K_P256]), 1);
    gw_cert_req_cleanup(&req);
    gw_cert_req_cleanup(&req); /* idempotent */
    OSSL_CRMF_MSG_free(crm);

    /* no public key */
    crm = make_crmf(NULL, "dev1", NULL, NULL, 0, 0);
    assert_int_equal(gw_cert_req_from_crmf(GW_REQ_IR, crm, NULL, &req, err), GW_ERR_INVAL);
    assert_string_equal(err, "certificate template has no public key");
    assert_null(req.subject);
    OSSL_CRMF_MSG_free(crm);

    /* two subjectAltName extensions */
    crm = make_crmf(keys[K_P256], "dev1", NULL, NULL, 0, 0);
    exts = make_exts("DNS:a.example", NULL);
    sk_X509_EXTENSION_push(exts, X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, "DNS:b.example"));
    assert_int_equal(OSSL_CRMF_MSG_set0_extensions(crm, exts), 1);
    assert_int_equal(gw_cert_req_from_crmf(GW_REQ_IR, crm, NULL, &req, err), GW_ERR_INVAL);
    assert_non_null(strstr(err, "more than one subjectAltName"));
    OSSL_CRMF_MSG_free(crm);

    /* a subjectAltName whose value is not GeneralNames (wrong type) */
    crm = make_crmf(keys[K_P256], "dev1", NULL, NULL, 0, 0);
    exts = sk_X509_EXTENSION_new_null();
    junk = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(junk, (const unsigned char *)"\x02\x01\x05", 3); /* INTEGER 5 */
    e = X509_EXTENSION_create_by_NID(NULL, NID_subject_alt_name, 0, junk);
    sk_X509_EXTENSION_push(exts, e);
    assert_int_equal(OSSL_CRMF_MSG_set0_extensions(crm, exts), 1);
    assert_int_equal(gw_cert_req_from_crmf(GW_REQ_IR, crm, NULL, &req, err), GW_ERR_INVAL);
    assert_non_null(strstr(err, "malformed"));
    ASN1_OCTET_STRING_free(junk);
    OSSL_CRMF_MSG_free(crm);

    /* no template at all */
    assert_int_equal(gw_cert_req_from_crmf(GW_REQ_IR, NULL, NULL, &req, err), GW_ERR_INVAL);
}

/* A CRMF message survives its DER round trip; its truncated twins never parse into a request. */
static void test_req_from_crmf_der(void **state)
{
    OSSL_CRMF_MSG *crm = make_crmf(keys[K_ED25519], "dev1", "DNS:a.example", NULL, 0, NOW + DAY), *back;
    unsigned char *der = NULL;
    const unsigned char *p;
    struct gw_cert_req req;
    char err[GW_ERR_LEN];
    int len, cut;

    (void)state;
    assert_true((len = i2d_OSSL_CRMF_MSG(crm, &der)) > 0);
    p = der;
    assert_non_null(back = d2i_OSSL_CRMF_MSG(NULL, &p, len));
    assert_int_equal(gw_cert_req_from_crmf(GW_REQ_IR, back, NULL, &req, err), 0);
    assert_int_equal(EVP_PKEY_eq(req.pubkey, keys[K_ED25519]), 1);
    assert_true(req.not_after == NOW + DAY && req.not_before == 0);
    gw_cert_req_cleanup(&req);
    OSSL_CRMF_MSG_free(back);
    for (cut = 1; cut < len; cut += 7) {
        p = der;
        back = d2i_OSSL_CRMF_MSG(NULL, &p, len - cut);
        if (back != NULL) /* a prefix that still parses must still give a sane request or an error */
            fail_msg("truncated CRMF (%d of %d bytes) parsed", len - cut, len);
    }
    OPENSSL_free(der);
    OSSL_CRMF_MSG_free(crm);
}

/* PKCS#10 reading: subject, SANs and key, kept beyond the CSR. */
static void test_req_from_p10(void **state)
{
    X509_REQ *csr = make_p10(keys[K_P384], "dev9", "DNS:dev9.example,IP:127.0.0.1", "CA:TRUE");
    struct gw_cert_req req;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int fail_info;

    (void)state;
    assert_int_equal(gw_cert_req_from_p10(csr, &req, err), 0);
    assert_int_equal(req.kind, GW_REQ_P10CR);
    assert_int_equal(sk_GENERAL_NAME_num(req.sans), 2);
    assert_int_equal(req.other_exts, 1);
    /* the CSR goes upstream as it is: its other extensions are kept, for the check of what comes back */
    assert_int_equal(sk_X509_EXTENSION_num(req.csr_exts), 1);
    assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(req.csr_exts, 0))),
                     NID_basic_constraints);
    X509_REQ_free(csr); /* what the request read is its own */
    assert_non_null(req.spki);
    assert_int_equal(X509_NAME_entry_count(req.subject), 1);
    assert_int_equal(gw_cert_plan_make(&role_web, &req, NOW, &plan, &fail_info, err), 0);
    assert_int_equal(sk_X509_EXTENSION_num(plan.csr_exts), 1);
    assert_int_equal(X509_NAME_entry_count(plan.subject), 1); /* the plan took it */
    gw_cert_plan_cleanup(&plan);
    assert_int_equal(EVP_PKEY_eq(req.pubkey, keys[K_P384]), 1);
    gw_cert_req_cleanup(&req);
    assert_int_equal(gw_cert_req_from_p10(NULL, &req, err), GW_ERR_INVAL);

    /* no extensions, empty subject */
    csr = make_p10(keys[K_P256], "", NULL, NULL);
    assert_int_equal(gw_cert_req_from_p10(csr, &req, err), 0);
    assert_null(req.subject);
    assert_null(req.sans);
    assert_int_equal(req.other_exts, 0);
    gw_cert_req_cleanup(&req);
    X509_REQ_free(csr);
}

/*
 * Two subjectAltName extensions in the one extensionRequest: OpenSSL's X509V3_get_d2i would give
 * none, Go's crypto/x509 (Vault, use_csr_sans) keeps the last, which the role's patterns never saw.
 */
static void test_req_from_p10_two_sans(void **state)
{
    X509_REQ *csr = make_p10(keys[K_P256], "dev9", NULL, NULL);
    STACK_OF(X509_EXTENSION) *two = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *a = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, "DNS:dev9.example");
    X509_EXTENSION *b = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, "DNS:admin.example");
    struct gw_cert_req req;
    char err[GW_ERR_LEN];

    (void)state;
    assert_true(two != NULL && a != NULL && b != NULL);
    assert_true(sk_X509_EXTENSION_push(two, a) > 0 && sk_X509_EXTENSION_push(two, b) > 0);
    assert_int_equal(X509_REQ_add_extensions(csr, two), 1);
    assert_true(X509_REQ_sign(csr, keys[K_P256], EVP_sha256()) > 0);
    assert_int_equal(gw_cert_req_from_p10(csr, &req, err), GW_ERR_INVAL);
    assert_string_equal(err, "the request carries more than one subjectAltName extension");
    assert_null(req.sans);
    assert_null(req.csr_exts);
    X509_REQ_free(csr);
    sk_X509_EXTENSION_pop_free(two, X509_EXTENSION_free);
}

/*
 * A second extension request: OpenSSL reads the first, Go's crypto/x509 (Vault) every
 * extensionRequest, a Windows CA the Microsoft one. Names the gateway never checked would reach the
 * certificate: refused, as is an attribute with two values.
 */
static void test_req_from_p10_two_ext_requests(void **state)
{
    X509_REQ *csr = make_p10(keys[K_P256], "dev9", "DNS:dev9.example", NULL);
    STACK_OF(X509_EXTENSION) *more = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, "DNS:admin.example");
    struct gw_cert_req req;
    char err[GW_ERR_LEN];

    (void)state;
    assert_true(more != NULL && san != NULL && sk_X509_EXTENSION_push(more, san) > 0);
    assert_int_equal(X509_REQ_add_extensions_nid(csr, more, NID_ms_ext_req), 1);
    assert_true(X509_REQ_sign(csr, keys[K_P256], EVP_sha256()) > 0);
    assert_int_equal(gw_cert_req_from_p10(csr, &req, err), GW_ERR_INVAL);
    assert_string_equal(err,
                        "the CSR asks for extensions in more than one extensionRequest attribute or value: "
                        "put every extension into one (RFC 2985 §5.4.2)");
    assert_null(req.sans);
    X509_REQ_free(csr);
    sk_X509_EXTENSION_pop_free(more, X509_EXTENSION_free);
}

static void test_plan_bad_args(void **state)
{
    struct gw_cert_req req;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int fail_info;

    (void)state;
    gw_cert_req_init(&req);
    req.subject = make_name("x");
    assert_int_equal(gw_cert_plan_make(NULL, &req, NOW, &plan, &fail_info, err), GW_ERR_INVAL);
    assert_int_equal(gw_cert_plan_make(&role_iot, NULL, NOW, &plan, &fail_info, err), GW_ERR_INVAL);
    /* a request without a key (built by hand) */
    assert_int_equal(gw_cert_plan_make(&role_iot, &req, NOW, &plan, &fail_info, err), GW_ERR_POLICY);
    assert_non_null(strstr(err, "no public key"));
    assert_int_equal(fail_info, OSSL_CMP_PKIFAILUREINFO_badCertTemplate);
    gw_cert_req_cleanup(&req);
    gw_cert_plan_cleanup(NULL);
    gw_cert_req_cleanup(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_table),
        cmocka_unit_test(test_plan_san_types),
        cmocka_unit_test(test_plan_san_values),
        cmocka_unit_test(test_req_from_crmf),
        cmocka_unit_test(test_req_from_crmf_der),
        cmocka_unit_test(test_req_from_p10),
        cmocka_unit_test(test_plan_takes_request_copies),
        cmocka_unit_test(test_plan_copy_deep),
        cmocka_unit_test(test_req_from_p10_two_ext_requests),
        cmocka_unit_test(test_req_from_p10_two_sans),
        cmocka_unit_test(test_plan_bad_args),
    };

    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
