/*
 * Unit tests for mappings/policy*.c: glob patterns, authorization (TLS client certificate with a
 * CRL'd trust store, CMP identity), request checks, upstream role (Vault) semantics, and the
 * judgement of what an upstream returned. Every certificate, CRL and store is built here with the
 * OpenSSL API at a fixed NOW.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "tests/unit/testutil.h"
#include <openssl/cmp.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "upstream/upstream.h"

#define NOW ((time_t)1900000000) /* 2030-03-17 */
#define DAY 86400
#define NA OSSL_CMP_PKIFAILUREINFO_notAuthorized
#define BT OSSL_CMP_PKIFAILUREINFO_badCertTemplate
#define PATS(a)                                                                                              \
    {                                                                                                        \
        (a), sizeof(a) / sizeof((a)[0])                                                                      \
    }

/* ---- keys, certificates, CRLs ---- */

enum key_id { K_RSA2048, K_RSA1024, K_P256, K_P256B, K_P384, K_P224, K_ED25519, K_CA1, K_CA2, K_CA3, K_N };

static EVP_PKEY *keys[K_N];

static EVP_PKEY *keygen(enum key_id k)
{
    switch (k) {
    case K_RSA2048:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    case K_RSA1024:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    case K_P384:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    case K_P224:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-224");
    case K_ED25519:
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    default:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    }
}

/*
 * A certificate: subject entries separated by '|' (so that a value may hold a '/'); an entry that begins
 * with '+' joins the RDN before it (a multi-valued RDN, "CN=a|+OU=b").
 */
struct cspec {
    const char *subject;
    const char *sans; /* "DNS:a,IP:1.2.3.4" */
    const char *bc;   /* basicConstraints */
    const char *ku;   /* keyUsage */
    long from, to;    /* validity, seconds from NOW */
    long serial;
};

static X509_NAME *mkname(const char *spec)
{
    X509_NAME *n = X509_NAME_new();
    char buf[256], *p, *e, *bar;
    int set;

    assert_non_null(n);
    snprintf(buf, sizeof(buf), "%s", spec);
    for (p = buf; p != NULL && *p != '\0'; p = bar != NULL ? bar + 1 : NULL) {
        if ((bar = strchr(p, '|')) != NULL)
            *bar = '\0';
        set = *p == '+' ? -1 : 0;
        p += set != 0;
        assert_non_null(e = strchr(p, '='));
        *e = '\0';
        assert_int_equal(X509_NAME_add_entry_by_txt(n, p, MBSTRING_UTF8, (unsigned char *)e + 1, -1, -1, set),
                         1);
    }
    return n;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *val)
{
    X509V3_CTX ctx;
    X509_EXTENSION *e;

    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    assert_non_null(e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, val));
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* add_exts adds the '|'-separated "name=value" extensions of |spec| (X509V3_EXT_nconf syntax). */
static void add_exts(X509 *x, X509 *issuer, const char *spec)
{
    X509V3_CTX ctx;
    X509_EXTENSION *e;
    char buf[GW_MAX_CERT_EXTS * 32], *p, *eq, *bar;

    snprintf(buf, sizeof(buf), "%s", spec);
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    for (p = buf; p != NULL; p = bar != NULL ? bar + 1 : NULL) {
        if ((bar = strchr(p, '|')) != NULL)
            *bar = '\0';
        assert_non_null(eq = strchr(p, '='));
        *eq = '\0';
        if ((e = X509V3_EXT_nconf(NULL, &ctx, p, eq + 1)) == NULL)
            fail_msg("cannot make extension %s=%s", p, eq + 1);
        assert_int_equal(X509_add_ext(x, e, -1), 1);
        X509_EXTENSION_free(e);
    }
}

static void set_time(int (*set)(X509 *, const ASN1_TIME *), X509 *x, time_t t)
{
    ASN1_TIME *a = ASN1_TIME_set(NULL, t);

    assert_non_null(a);
    assert_int_equal(set(x, a), 1);
    ASN1_TIME_free(a);
}

/*
 * mkcert_ext issues |c| for |key| from |issuer|/|ikey| (self-signed when |issuer| is NULL), with the
 * extendedKeyUsage |eku| and the extensions |ext| (add_exts) when not NULL.
 */
static X509 *mkcert_ext(const struct cspec *c, const char *eku, const char *ext, EVP_PKEY *key, X509 *issuer,
                        EVP_PKEY *ikey)
{
    X509 *x = X509_new();
    X509_NAME *n = mkname(c->subject);

    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), c->serial != 0 ? c->serial : 1000), 1);
    assert_int_equal(X509_set_subject_name(x, n), 1);
    assert_int_equal(X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : n), 1);
    X509_NAME_free(n);
    set_time(X509_set1_notBefore, x, NOW + c->from);
    set_time(X509_set1_notAfter, x, NOW + c->to);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    add_ext(x, issuer, NID_subject_key_identifier, "hash");
    add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    if (c->bc != NULL)
        add_ext(x, issuer, NID_basic_constraints, c->bc);
    if (c->ku != NULL)
        add_ext(x, issuer, NID_key_usage, c->ku);
    if (c->sans != NULL)
        add_ext(x, issuer, NID_subject_alt_name, c->sans);
    if (eku != NULL)
        add_ext(x, issuer, NID_ext_key_usage, eku);
    if (ext != NULL)
        add_exts(x, issuer, ext);
    assert_true(X509_sign(x, ikey != NULL ? ikey : key, EVP_sha256()) > 0);
    return x;
}

static X509 *mkcert(const struct cspec *c, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey)
{
    return mkcert_ext(c, NULL, NULL, key, issuer, ikey);
}

static X509_CRL *mkcrl(X509 *ca, EVP_PKEY *cakey, long revoked, long from, long to)
{
    X509_CRL *crl = X509_CRL_new();
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_INTEGER *sn = ASN1_INTEGER_new();
    ASN1_TIME *t = ASN1_TIME_set(NULL, NOW + from);
    X509V3_CTX ctx;
    X509_EXTENSION *e;

    assert_true(crl != NULL && r != NULL && sn != NULL && t != NULL);
    assert_int_equal(X509_CRL_set_version(crl, 1), 1);
    assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)), 1);
    assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
    assert_int_equal(X509_REVOKED_set_revocationDate(r, t), 1);
    assert_non_null(ASN1_TIME_set(t, NOW + to));
    assert_int_equal(X509_CRL_set1_nextUpdate(crl, t), 1);
    assert_int_equal(ASN1_INTEGER_set(sn, revoked), 1);
    assert_int_equal(X509_REVOKED_set_serialNumber(r, sn), 1);
    assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
    X509V3_set_ctx(&ctx, ca, NULL, NULL, crl, 0);
    assert_non_null(e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always"));
    assert_int_equal(X509_CRL_add_ext(crl, e, -1), 1);
    X509_EXTENSION_free(e);
    assert_int_equal(X509_CRL_sort(crl), 1);
    assert_true(X509_CRL_sign(crl, cakey, EVP_sha256()) > 0);
    ASN1_INTEGER_free(sn);
    ASN1_TIME_free(t);
    return crl;
}

static const struct cspec ca_spec = {
    "O=test|CN=Client CA", NULL, "critical,CA:TRUE", "critical,keyCertSign,cRLSign", -DAY, 365 * DAY, 1};
static const struct cspec other_ca_spec = {
    "O=other|CN=Other CA", NULL, "critical,CA:TRUE", "critical,keyCertSign,cRLSign", -DAY, 365 * DAY, 2};
static const struct cspec int_spec = {"O=test|CN=Issuing CA",
                                      NULL,
                                      "critical,CA:TRUE,pathlen:0",
                                      "critical,keyCertSign,cRLSign",
                                      -DAY,
                                      365 * DAY,
                                      3};

/* TLS client certificates, issued by the client CA unless said otherwise. */
enum cert_id {
    C_NONE,
    C_DEV1,
    C_DEV2,
    C_ADMIN,
    C_REVOKED,
    C_EXPIRED,
    C_OTHER_CA,
    C_SLASH,
    C_BSLASH,
    C_NOSAN,
    C_EMAIL_DNS,
    C_EMAIL_URI,
    C_URI_AT,
    C_URI_HOST,
    C_URI_FRAG,
    C_EMAIL_OK,
    C_EMAIL_AT2,
    C_EMAIL_NOLOCAL,
    C_SUBJ_MAIL,
    C_SUBJ_AT2,
    C_SUBJ_RDN,
    C_SUBJ_PLUS,
    C_N
};

static const struct {
    struct cspec spec;
    enum key_id key;
    int other_ca;
} tls_specs[C_N] = {
    [C_DEV1] = {{"O=x|CN=dev-1", "DNS:DEV-1.Example.COM", NULL, NULL, -3600, 30 * DAY, 101}, K_P256, 0},
    [C_DEV2] = {{"O=x|CN=dev-2", "URI:spiffe://example.org/dev-2", NULL, NULL, -3600, 30 * DAY, 102},
                K_P256B,
                0},
    [C_ADMIN] = {{"O=x|CN=admin", "DNS:admin.example.net", NULL, NULL, -3600, 30 * DAY, 103}, K_P256, 0},
    [C_REVOKED] = {{"O=x|CN=dev-3", NULL, NULL, NULL, -3600, 30 * DAY, 666}, K_P256, 0},
    [C_EXPIRED] = {{"O=x|CN=dev-4", NULL, NULL, NULL, -30 * DAY, -DAY, 104}, K_P256, 0},
    [C_OTHER_CA] = {{"O=x|CN=dev-5", NULL, NULL, NULL, -3600, 30 * DAY, 105}, K_P256, 1},
    [C_SLASH] = {{"O=x/CN=dev-1", NULL, NULL, NULL, -3600, 30 * DAY, 106}, K_P256, 0},
    /* the text "dev-\x31", which the one-line form writes as it writes the UTF-8 "dev-1" escaped */
    [C_BSLASH] = {{"O=x|CN=dev-\\x31", NULL, NULL, NULL, -3600, 30 * DAY, 108}, K_P256, 0},
    [C_NOSAN] = {{"O=x|CN=dev-6", NULL, NULL, NULL, -3600, 30 * DAY, 107}, K_P256, 0},
    /* email addresses spelled to match a DNS and a URI pattern of tls_sans */
    [C_EMAIL_DNS] = {{"O=x|CN=dev-7", "email:x@dev-7.example.com", NULL, NULL, -3600, 30 * DAY, 109},
                     K_P256,
                     0},
    [C_EMAIL_URI] = {{"O=x|CN=dev-8", "email:spiffe://example.org/dev-8@x", NULL, NULL, -3600, 30 * DAY, 110},
                     K_P256,
                     0},
    /* a URI with an '@' after its scheme, for a URI pattern of tls_sans */
    [C_URI_AT] = {{"O=x|CN=dev-9", "URI:sip:dev-9@example.com", NULL, NULL, -3600, 30 * DAY, 111}, K_P256, 0},
    /* a host under example.com, and the host "evil" with a fragment that reads as under it */
    [C_URI_HOST] = {{"O=x|CN=dev-10", "URI:https://dev-10.example.com/x", NULL, NULL, -3600, 30 * DAY, 112},
                    K_P256,
                    0},
    [C_URI_FRAG] = {{"O=x|CN=dev-11", "URI:https://evil#.example.com/x", NULL, NULL, -3600, 30 * DAY, 113},
                    K_P256,
                    0},
    /* an email under example.com, and one with two '@' that mailers read as under evil */
    [C_EMAIL_OK] = {{"O=x|CN=dev-12", "email:dev-12@example.com", NULL, NULL, -3600, 30 * DAY, 114},
                    K_P256,
                    0},
    [C_EMAIL_AT2] = {{"O=x|CN=dev-13", "email:dev-13@evil@example.com", NULL, NULL, -3600, 30 * DAY, 115},
                     K_P256,
                     0},
    /* an email under example.com with nothing before its '@', no one's address */
    [C_EMAIL_NOLOCAL] = {{"O=x|CN=dev-20", "email:@example.com", NULL, NULL, -3600, 30 * DAY, 120},
                         K_P256,
                         0},
    /* subject emailAddress attributes, one under example.com and one with two '@' */
    [C_SUBJ_MAIL] = {{"O=x|CN=dev-14|emailAddress=dev-14@example.com", NULL, NULL, NULL, -3600, 30 * DAY,
                      116},
                     K_P256,
                     0},
    [C_SUBJ_AT2] = {{"O=x|CN=dev-15|emailAddress=dev-15@evil@example.com", NULL, NULL, NULL, -3600, 30 * DAY,
                     117},
                    K_P256,
                    0},
    /* a multi-valued RDN, "/O=x/CN=dev-16+OU=operations" in the one-line form (DER sorts the shorter first),
       and a CN holding a '+' of its own, which that form writes "\+": "/O=x/CN=dev-17\+ops" */
    [C_SUBJ_RDN] = {{"O=x|CN=dev-16|+OU=operations", NULL, NULL, NULL, -3600, 30 * DAY, 118}, K_P256, 0},
    [C_SUBJ_PLUS] = {{"O=x|CN=dev-17+ops", NULL, NULL, NULL, -3600, 30 * DAY, 119}, K_P256, 0},
};

static X509 *ca, *other_ca, *int_ca, *tls[C_N];
static X509_STORE *st_tls, *st_tls_stale_crl, *st_issuer_int, *st_issuer_root, *st_other;
static STACK_OF(X509) *chain_int;

static X509_STORE *mkstore(X509 *anchor, X509_CRL *crl)
{
    X509_STORE *s = X509_STORE_new();
    unsigned long flags = X509_V_FLAG_X509_STRICT;

    assert_non_null(s);
    assert_int_equal(X509_STORE_add_cert(s, anchor), 1);
    if (crl != NULL) {
        assert_int_equal(X509_STORE_add_crl(s, crl), 1);
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    }
    assert_int_equal(X509_STORE_set_flags(s, flags), 1);
    return s;
}

static int setup(void **state)
{
    X509_CRL *crl, *stale;
    int i;

    (void)state;
    for (i = 0; i < K_N; i++) {
        if ((keys[i] = keygen((enum key_id)i)) == NULL)
            return -1;
    }
    ca = mkcert(&ca_spec, keys[K_CA1], NULL, NULL);
    other_ca = mkcert(&other_ca_spec, keys[K_CA2], NULL, NULL);
    int_ca = mkcert(&int_spec, keys[K_CA3], ca, keys[K_CA1]);
    for (i = C_DEV1; i < C_N; i++)
        tls[i] = mkcert(&tls_specs[i].spec, keys[tls_specs[i].key], tls_specs[i].other_ca ? other_ca : ca,
                        keys[tls_specs[i].other_ca ? K_CA2 : K_CA1]);
    crl = mkcrl(ca, keys[K_CA1], 666, -3600, 7 * DAY);
    stale = mkcrl(ca, keys[K_CA1], 666, -30 * DAY, -DAY);
    st_tls = mkstore(ca, crl);
    st_tls_stale_crl = mkstore(ca, stale);
    st_issuer_int = mkstore(int_ca, NULL);
    st_issuer_root = mkstore(ca, NULL);
    st_other = mkstore(other_ca, NULL);
    X509_CRL_free(crl);
    X509_CRL_free(stale);
    chain_int = sk_X509_new_null();
    assert_non_null(chain_int);
    assert_int_equal(X509_add_cert(chain_int, int_ca, X509_ADD_FLAG_UP_REF), 1);
    return 0;
}

static int teardown(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < K_N; i++)
        EVP_PKEY_free(keys[i]);
    for (i = 0; i < C_N; i++)
        X509_free(tls[i]);
    X509_free(ca);
    X509_free(other_ca);
    X509_free(int_ca);
    X509_STORE_free(st_tls);
    X509_STORE_free(st_tls_stale_crl);
    X509_STORE_free(st_issuer_int);
    X509_STORE_free(st_issuer_root);
    X509_STORE_free(st_other);
    sk_X509_pop_free(chain_int, X509_free);
    return 0;
}

/* ---- gw_pattern_match ---- */

static void test_pattern(void **state)
{
    static const struct {
        const char *pat;
        const char *s;
        int len; /* -1 = strlen */
        int want;
    } t[] = {
        {"*.example.com", "a.example.com", -1, 1},
        {"*.example.com", "a.b.example.com", -1, 0}, /* '*' is one label */
        {"*.example.com", ".example.com", -1, 0},    /* ... and never an empty one */
        {"*.example.com", "example.com", -1, 0},
        {"*.example.com", "a.example.com.evil.org", -1, 0},
        {"*.example.com", "A.EXAMPLE.COM", -1, 0}, /* the exported matcher is exact */
        {"*.example.com", "xn--bcher-kva.example.com", -1, 1},
        {"*.example.com",
         "b\xc3\xbc"
         "cher.example.com",
         -1, 1},
        {"*.example.com", "a.ex\xd0\xb0mple.com", -1, 0}, /* Cyrillic a */
        {"dev-*", "dev-1", -1, 1},
        {"dev-*", "dev-", -1, 1},
        {"dev-*", "dev-1.example.com", -1, 0},
        {"dev-*", "dex-1", -1, 0},
        {"a**b", "ab", -1, 1},
        {"a**b", "axyzb", -1, 1},
        {"*", "a/b", -1, 0},
        {"*", "a=b", -1, 0},
        {"*", "", -1, 0},
        {"", "", -1, 1},
        {"", "a", -1, 0},
        {"a", "", -1, 0},
        {"/O=x/CN=dev-*", "/O=x/CN=dev-7", -1, 1},
        {"/O=x/CN=dev-*", "/O=x/CN=dev-7/CN=admin", -1, 0},
        {"/O=x/CN=dev-*", "/O=x/OU=y/CN=dev-7", -1, 0},
        {"/O=x/CN=dev-*", "/O=x/CN=dev", -1, 0},
        {"/O=x/CN=*", "/O=x/CN=", -1, 0},
        {"/O=*/CN=a", "/O=x=y/CN=a", -1, 0},
        {"abc*", "abc\0def", 7, 0},
        {"abc", "abc\0", 4, 0},
        {"abc", "abcd", 3, 1}, /* |len| bounds |s| */
        {"spiffe://example.org/*", "spiffe://example.org/dev", -1, 1},
        {"spiffe://example.org/*", "spiffe://example.org/dev/x", -1, 0},
        {"*@example.com", "alice@example.com", -1, 1},
        {"*@example.com", "alice@evil.com", -1, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t len = t[i].len < 0 ? strlen(t[i].s) : (size_t)t[i].len;

        if (gw_pattern_match(t[i].pat, t[i].s, len) != t[i].want)
            fail_msg("case %zu: \"%s\" vs \"%s\": want %d", i, t[i].pat, t[i].s, t[i].want);
    }
    assert_int_equal(gw_pattern_match(NULL, "a", 1), 0);
    assert_int_equal(gw_pattern_match("*", NULL, 0), 0);
}

/* ---- gw_subject_match: tls_subjects, signer_subjects, allowed_subjects, ra_subjects ---- */

static void test_subject_pattern(void **state)
{
    static const struct {
        const char *pat, *s;
        int len; /* -1 = strlen */
        int want;
    } t[] = {
        {"/O=x/CN=dev-*", "/O=x/CN=dev-7", -1, 1},
        {"/O=x/CN=dev-*", "/O=x/CN=dev-7/CN=admin", -1, 0},
        {"/O=x/CN=dev-*", "/O=x/CN=dev-7+OU=admin", -1, 0},
        {"/O=x/CN=*", "/O=x/CN=", -1, 0},
        {"/O=*/CN=a", "/O=x=y/CN=a", -1, 0},
        {"/O=x/CN=*", "/O=x/CN=a.b", -1, 0}, /* a '*' is one label here too */
        /* '+' between the attributes of one RDN is a boundary; a value's own, written "\+", is not */
        {"/O=x/CN=*=admin", "/O=x/CN=dev+OU=admin", -1, 0},
        {"/O=x/CN=*=admin", "/O=x/CN=dev=admin", -1, 1},
        {"/O=x/CN=*+OU=admin", "/O=x/CN=dev+OU=admin", -1, 1},
        {"/O=x/CN=*+OU=admin", "/O=x/CN=dev\\+OU=admin", -1, 0},
        {"/O=x/CN=*+OU=admin", "/O=x/CN=dev/OU=admin", -1, 0},
        {"/O=x/CN=*/OU=admin", "/O=x/CN=dev+OU=admin", -1, 0},
        {"/O=x/CN=*", "/O=x/CN=a\\+b", -1, 1},
        /* a pattern's "\+" is a plus inside a value too; its unescaped '+' a boundary */
        {"/O=x/CN=a\\+b", "/O=x/CN=a\\+b", -1, 1},
        {"/O=x/CN=a\\+OU=b", "/O=x/CN=a+OU=b", -1, 0},
        {"/O=x/CN=a+OU=b", "/O=x/CN=a+OU=b", -1, 1},
        {"/O=x/CN=a+OU=b", "/O=x/CN=a\\+OU=b", -1, 0},
        {"/O=x/CN=dev\\+*", "/O=x/CN=dev\\+1", -1, 1},
        {"/O=x/CN=dev\\+*", "/O=x/CN=dev+OU=1", -1, 0},
        {"/O=x/CN=dev\\+*", "/O=x/CN=dev\\+", -1, 1}, /* as "dev-*" admits "dev-": no lone '*' */
        {"/O=x/CN=*\\+*", "/O=x/CN=a\\+b\\+c", -1, 1},
        /* the attributes of one RDN are a set, which DER sorts by encoding (the shorter first): any order */
        {"/O=x/CN=*+OU=admin", "/O=x/OU=admin+CN=dev-1", -1, 1},
        {"/O=x/CN=*+OU=admin", "/O=x/OU=admin+CN=dev-1/OU=x", -1, 0},
        {"/O=x/CN=*+OU=admin", "/O=x/OU=admin+CN=dev-1+OU=x", -1, 0},
        {"/O=x/CN=*+OU=admin+OU=x", "/O=x/OU=admin+CN=dev-1", -1, 0},
        {"/O=x/CN=*+OU=admin", "/O=x/OU=admin+OU=admin", -1, 0},
        {"/O=x/CN=*+OU=admin", "/O=x/OU=dev+CN=admin", -1, 0},
        {"/O=x/CN=*+CN=a", "/O=x/CN=a+CN=b", -1, 1}, /* '*' takes b, once a is left to the other */
        {"/O=x/CN=a+CN=a", "/O=x/CN=a+CN=b", -1, 0},
        {"/O=x/CN=*+OU=admin", "/O=x/OU=admin+CN=dev\\+x", -1, 1},
        {"/O=x+OU=y/CN=a", "/OU=y+O=x/CN=a", -1, 1},
        {"/O=x/CN=a", "/CN=a/O=x", -1, 0}, /* the RDNs themselves are a sequence */
        {"/CN=*/mail=*@example.com+CN=*", "/CN=a/CN=b+mail=a@evil@example.com", -1, 0},
        /* past GW_MAX_RDN_ATTRS in one RDN, no pattern matches */
        {"/CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*",
         "/CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a", -1, 1},
        {"/CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*",
         "/CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a+CN=a", -1, 0},
        {"/O=x/CN=*", "/O=x/CN=M\\xC3\\xBCller", -1, 1},
        {"/O=x/CN=*", "/O=x/CN=a\\", -1, 1}, /* a cut escape ends the line, not the match */
        /* ',' and '@' outside an emailAddress are value characters */
        {"/O=x/CN=*", "/O=x/CN=Smith, Ann", -1, 1},
        {"/O=x/CN=*", "/O=x/CN=alice@corp", -1, 1},
        /* an emailAddress value: '*' stops at '@', and two '@' match nothing */
        {"/CN=*/emailAddress=*@example.com", "/CN=a/emailAddress=alice@example.com", -1, 1},
        {"/CN=*/emailAddress=*@example.com", "/CN=a/emailAddress=alice@evil@example.com", -1, 0},
        {"/CN=*/emailAddress=*@example.com", "/CN=a/emailAddress=alice@evil.com", -1, 0},
        {"/CN=*/emailAddress=*@*.com", "/CN=a/emailAddress=alice@evil@example.com", -1, 0},
        {"/CN=*/emailAddress=a@b@c", "/CN=a/emailAddress=a@b@c", -1, 0},
        {"/CN=*/emailAddress=*", "/CN=a/emailAddress=alice@example.com", -1, 0},
        {"/CN=*/emailAddress=*@*", "/CN=a/emailAddress=alice@corp", -1, 1},
        {"/CN=*/emailAddress=*@*", "/CN=a/emailAddress=@corp", -1, 0},
        {"/CN=*/*=*@example.com", "/CN=a/emailAddress=alice@evil@example.com", -1, 0},
        {"/CN=*/*=*@example.com", "/CN=a/OU=alice@evil@example.com", -1,
         1}, /* no emailAddress: '@' is text */
        {"/emailAddress=*@example.com+CN=*", "/emailAddress=a@x@example.com+CN=b", -1, 0},
        /* nor one without an '@' or with nothing on a side of it, which a '*' (or "**") would match */
        {"/CN=*/emailAddress=*", "/CN=a/emailAddress=alice", -1, 0},
        {"/CN=*/emailAddress=**", "/CN=a/emailAddress=alice", -1, 0},
        {"/CN=*/emailAddress=**@*", "/CN=a/emailAddress=@corp", -1, 0},
        {"/CN=*/emailAddress=*@**", "/CN=a/emailAddress=alice@", -1, 0},
        {"/CN=*/emailAddress=**@**", "/CN=a/emailAddress=@", -1, 0},
        {"/CN=*/*=alice", "/CN=a/emailAddress=alice", -1, 0},
        {"/CN=*/emailAddress=**@**", "/CN=a/emailAddress=alice@corp", -1, 1},
        {"/CN=*/*=alice", "/CN=a/OU=alice", -1, 1}, /* no emailAddress: any text */
        /* so is a mail (rfc822Mailbox) value: an address as much, to LDAP and the mailers reading it */
        {"/O=Corp/mail=*@corp.example", "/O=Corp/mail=a@corp.example", -1, 1},
        {"/O=Corp/mail=*@corp.example", "/O=Corp/mail=a@evil@corp.example", -1, 0},
        {"/O=Corp/mail=*@*.example", "/O=Corp/mail=a@evil@corp.example", -1, 0},
        {"/O=Corp/mail=a@b@c", "/O=Corp/mail=a@b@c", -1, 0},
        {"/O=Corp/mail=*", "/O=Corp/mail=a@corp.example", -1, 0},
        {"/CN=*/*=*@example.com", "/CN=a/mail=alice@evil@example.com", -1, 0},
        {"/CN=*+mail=*@example.com", "/CN=a+mail=alice@evil@example.com", -1, 0},
        {"/O=Corp/mail=*", "/O=Corp/mail=alice", -1, 0},
        {"/O=Corp/mail=**@corp.example", "/O=Corp/mail=@corp.example", -1, 0},
        {"/O=Corp/mail=**@corp.example", "/O=Corp/mail=a@corp.example", -1, 1},
        /* an attribute whose name only begins with "mail" is text */
        {"/CN=*/mailPreferenceOption=*@*@*", "/CN=a/mailPreferenceOption=a@b@c", -1, 1},
        {"/CN=a", "/CN=a\0/CN=b", 9, 0},
        {"/CN=a", "/CN=ab", 5, 1}, /* |len| bounds |s| */
        {"", "", -1, 1},
        {"/CN=a", "", -1, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t len = t[i].len < 0 ? strlen(t[i].s) : (size_t)t[i].len;

        if (gw_subject_match(t[i].pat, t[i].s, len) != t[i].want)
            fail_msg("case %zu: \"%s\" vs \"%s\": want %d", i, t[i].pat, t[i].s, t[i].want);
    }
    assert_int_equal(gw_subject_match(NULL, "/CN=a", 5), 0);
    assert_int_equal(gw_subject_match("/CN=*", NULL, 0), 0);
}

/* Many stars against a long near-miss: a backtracking matcher takes forever, ours O(|p| * |s|). */
static void test_pattern_no_blowup(void **state)
{
    static const char pat[] = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
    char *s = malloc(20001);

    (void)state;
    assert_non_null(s);
    memset(s, 'a', 20000);
    s[20000] = '\0';
    assert_int_equal(gw_pattern_match(pat, s, 20000), 0);
    s[19999] = 'b';
    assert_int_equal(gw_pattern_match(pat, s, 20000), 1);
    free(s);
}

/* ---- gw_policy_authorize ---- */

static char *p_dev[] = {"/O=x/CN=dev-*"};
static char *p_dns[] = {"*.example.com", "spiffe://example.org/*"};
static char *p_sip[] = {"sip:*@example.com"};
static char *p_https[] = {"https://*.example.com/*"};
static char *p_tls_mail[] = {"*@example.com"};
static char *p_tls_mail2[] = {"dev-13@evil@example.com"}; /* the load refuses it: tls_san_match has to too */
static char *p_tls_mail_stars[] = {"**@example.com"};     /* its "**" matches nothing too */
static char *p_dev_mail[] = {"/O=x/CN=dev-*/emailAddress=*@example.com"};
static char *p_dev_eq[] = {"/O=x/CN=dev-*=operations"};
static char *p_pbm[] = {"dev-ref"};

enum store_id { S_NONE, S_TLS, S_STALE };

static const struct {
    const char *name;
    struct gw_authz authz;
    enum store_id store; /* authz.tls_store */
    int role_store;      /* role->store set (signature accepted) */
    enum cert_id peer, signer;
    const char *pbm;
    int want_ok;
    const char *want; /* substring of err, or exact when starting with '=' */
    const char *code; /* the log's name of the refusal (docs/errors.md's row) */
} az[] = {
    {"pbm ok", {0}, S_NONE, 0, C_NONE, C_NONE, "dev-ref", 1, NULL, NULL},
    {"pbm other ref",
     {0},
     S_NONE,
     0,
     C_NONE,
     C_NONE,
     "other-ref",
     0,
     "=PBM reference other-ref is not accepted on role iot",
     "pbm_not_accepted"},
    {"unprotected", {0}, S_NONE, 1, C_NONE, C_NONE, NULL, 0, "is not protected", "unprotected"},
    {"signature, role without trust",
     {0},
     S_NONE,
     0,
     C_NONE,
     C_DEV1,
     NULL,
     0,
     "accepts no signed requests",
     "signature_not_accepted"},
    {"signature ok", {0}, S_NONE, 1, C_NONE, C_DEV1, NULL, 1, NULL, NULL},
    {"tls required, none",
     {.tls_required = true},
     S_NONE,
     0,
     C_NONE,
     C_NONE,
     "dev-ref",
     0,
     "requires a TLS client certificate",
     "tls_required"},
    {"tls required, given", {.tls_required = true}, S_NONE, 0, C_DEV1, C_NONE, "dev-ref", 1, NULL, NULL},
    {"tls trust ok", {0}, S_TLS, 0, C_DEV1, C_NONE, "dev-ref", 1, NULL, NULL},
    {"tls trust, optional, none",
     {0},
     S_TLS,
     0,
     C_NONE,
     C_NONE,
     "dev-ref",
     0,
     "requires a TLS client certificate",
     "tls_required"},
    {"tls revoked",
     {0},
     S_TLS,
     0,
     C_REVOKED,
     C_NONE,
     "dev-ref",
     0,
     "=TLS client certificate /O=x/CN=dev-3 is revoked (tls_trust of role iot)",
     "tls_trust"},
    {"tls expired", {0}, S_TLS, 0, C_EXPIRED, C_NONE, "dev-ref", 0, "/O=x/CN=dev-4 has expired", "tls_trust"},
    {"tls other CA",
     {0},
     S_TLS,
     0,
     C_OTHER_CA,
     C_NONE,
     "dev-ref",
     0,
     "does not chain to a trusted CA",
     "tls_trust"},
    {"tls stale CRL",
     {0},
     S_STALE,
     0,
     C_DEV1,
     C_NONE,
     "dev-ref",
     0,
     "the CRL of its issuer has expired",
     "tls_trust"},
    {"tls subject ok", {.tls_subjects = PATS(p_dev)}, S_NONE, 0, C_DEV1, C_NONE, "dev-ref", 1, NULL, NULL},
    {"tls subject refused",
     {.tls_subjects = PATS(p_dev)},
     S_NONE,
     0,
     C_ADMIN,
     C_NONE,
     "dev-ref",
     0,
     "=TLS client certificate subject /O=x/CN=admin is not allowed on role iot (allowed: /O=x/CN=dev-*)",
     "tls_subject"},
    {"tls subject with '/' in a value",
     {.tls_subjects = PATS(p_dev)},
     S_NONE,
     0,
     C_SLASH,
     C_NONE,
     "dev-ref",
     0,
     "has a '/' or a backslash in an attribute value",
     "tls_subject"},
    {"tls subject with a backslash in a value",
     {.tls_subjects = PATS(p_dev)},
     S_NONE,
     0,
     C_BSLASH,
     C_NONE,
     "dev-ref",
     0,
     "has a '/' or a backslash in an attribute value",
     "tls_subject"},
    {"tls subjects, none",
     {.tls_subjects = PATS(p_dev)},
     S_NONE,
     0,
     C_NONE,
     C_NONE,
     "dev-ref",
     0,
     "requires a TLS client certificate",
     "tls_required"},
    {"tls DNS SAN folds case",
     {.tls_sans = PATS(p_dns)},
     S_NONE,
     0,
     C_DEV1,
     C_NONE,
     "dev-ref",
     1,
     NULL,
     NULL},
    {"tls URI SAN", {.tls_sans = PATS(p_dns)}, S_NONE, 0, C_DEV2, C_NONE, "dev-ref", 1, NULL, NULL},
    {"tls SAN refused",
     {.tls_sans = PATS(p_dns)},
     S_NONE,
     0,
     C_ADMIN,
     C_NONE,
     "dev-ref",
     0,
     "has no subjectAltName allowed on role iot (allowed: *.example.com, spiffe://example.org/*)",
     "tls_san"},
    {"tls no SAN",
     {.tls_sans = PATS(p_dns)},
     S_NONE,
     0,
     C_NOSAN,
     C_NONE,
     "dev-ref",
     0,
     "no subjectAltName",
     "tls_san"},
    /* a pattern is for one SAN type: a scheme (':' before any '@') a URI, else '@' an email, else a DNS
       name */
    {"tls URI SAN with an '@'",
     {.tls_sans = PATS(p_sip)},
     S_NONE,
     0,
     C_URI_AT,
     C_NONE,
     "dev-ref",
     1,
     NULL,
     NULL},
    {"tls URI SAN, a host label",
     {.tls_sans = PATS(p_https)},
     S_NONE,
     0,
     C_URI_HOST,
     C_NONE,
     "dev-ref",
     1,
     NULL,
     NULL},
    {"tls URI SAN, a host ended by '#'",
     {.tls_sans = PATS(p_https)},
     S_NONE,
     0,
     C_URI_FRAG,
     C_NONE,
     "dev-ref",
     0,
     "no subjectAltName allowed",
     "tls_san"},
    /* an email pattern's '*' stops at '@', as a request's email may hold only one */
    {"tls email SAN",
     {.tls_sans = PATS(p_tls_mail)},
     S_NONE,
     0,
     C_EMAIL_OK,
     C_NONE,
     "dev-ref",
     1,
     NULL,
     NULL},
    {"tls email SAN with two '@'",
     {.tls_sans = PATS(p_tls_mail)},
     S_NONE,
     0,
     C_EMAIL_AT2,
     C_NONE,
     "dev-ref",
     0,
     "no subjectAltName allowed",
     "tls_san"},
    {"tls email SAN with two '@', spelt out",
     {.tls_sans = PATS(p_tls_mail2)},
     S_NONE,
     0,
     C_EMAIL_AT2,
     C_NONE,
     "dev-ref",
     0,
     "no subjectAltName allowed",
     "tls_san"},
    {"tls email SAN with nothing before its '@'",
     {.tls_sans = PATS(p_tls_mail_stars)},
     S_NONE,
     0,
     C_EMAIL_NOLOCAL,
     C_NONE,
     "dev-ref",
     0,
     "no subjectAltName allowed",
     "tls_san"},
    {"tls email SAN with a local part, \"**\"",
     {.tls_sans = PATS(p_tls_mail_stars)},
     S_NONE,
     0,
     C_EMAIL_OK,
     C_NONE,
     "dev-ref",
     1,
     NULL,
     NULL},
    {"tls email SAN vs a DNS pattern",
     {.tls_sans = PATS(p_dns)},
     S_NONE,
     0,
     C_EMAIL_DNS,
     C_NONE,
     "dev-ref",
     0,
     "no subjectAltName allowed",
     "tls_san"},
    {"tls email SAN vs a URI pattern",
     {.tls_sans = PATS(p_dns)},
     S_NONE,
     0,
     C_EMAIL_URI,
     C_NONE,
     "dev-ref",
     0,
     "no subjectAltName allowed",
     "tls_san"},
    {"must be signer ok", {.tls_must_be_signer = true}, S_NONE, 1, C_DEV1, C_DEV1, NULL, 1, NULL, NULL},
    {"must be signer, other",
     {.tls_must_be_signer = true},
     S_NONE,
     1,
     C_DEV1,
     C_DEV2,
     NULL,
     0,
     "is not the TLS client certificate",
     "tls_signer_other"},
    {"must be signer, PBM",
     {.tls_must_be_signer = true},
     S_NONE,
     1,
     C_DEV1,
     C_NONE,
     "dev-ref",
     0,
     "password-based MAC is not accepted",
     "tls_signer_pbm"},
    {"must be signer, no TLS",
     {.tls_must_be_signer = true},
     S_NONE,
     1,
     C_NONE,
     C_DEV1,
     NULL,
     0,
     "requires a TLS client certificate",
     "tls_required"},
    {"signer subject ok", {.signer_subjects = PATS(p_dev)}, S_NONE, 1, C_NONE, C_DEV2, NULL, 1, NULL, NULL},
    {"signer subject refused",
     {.signer_subjects = PATS(p_dev)},
     S_NONE,
     1,
     C_NONE,
     C_ADMIN,
     NULL,
     0,
     "=CMP signer certificate subject /O=x/CN=admin is not allowed on role iot (allowed: /O=x/CN=dev-*)",
     "signer_subject"},
    /* a subject pattern's '*' stays in one attribute, and in an emailAddress value stops at '@' */
    {"signer subject emailAddress",
     {.signer_subjects = PATS(p_dev_mail)},
     S_NONE,
     1,
     C_NONE,
     C_SUBJ_MAIL,
     NULL,
     1,
     NULL,
     NULL},
    {"signer subject emailAddress '*' across '@'",
     {.signer_subjects = PATS(p_dev_mail)},
     S_NONE,
     1,
     C_NONE,
     C_SUBJ_AT2,
     NULL,
     0,
     "=CMP signer certificate subject /O=x/CN=dev-15/emailAddress=dev-15@evil@example.com is not allowed on "
     "role iot (allowed: /O=x/CN=dev-*/emailAddress=*@example.com)",
     "signer_subject"},
    {"signer subject '*' across '+' into another attribute",
     {.signer_subjects = PATS(p_dev_eq)},
     S_NONE,
     1,
     C_NONE,
     C_SUBJ_RDN,
     NULL,
     0,
     "=CMP signer certificate subject /O=x/CN=dev-16+OU=operations is not allowed on role iot (allowed: "
     "/O=x/CN=dev-*=operations)",
     "signer_subject"},
    {"signer subject with a '+' in a value",
     {.signer_subjects = PATS(p_dev)},
     S_NONE,
     1,
     C_NONE,
     C_SUBJ_PLUS,
     NULL,
     1,
     NULL,
     NULL},
    {"tls subject emailAddress '*' across '@'",
     {.tls_subjects = PATS(p_dev_mail)},
     S_NONE,
     0,
     C_SUBJ_AT2,
     C_NONE,
     "dev-ref",
     0,
     "is not allowed on role iot",
     "tls_subject"},
    {"signer subjects do not bind PBM",
     {.signer_subjects = PATS(p_dev)},
     S_NONE,
     1,
     C_NONE,
     C_NONE,
     "dev-ref",
     1,
     NULL,
     NULL},
};

static void check_err(const char *name, const char *err, const char *want)
{
    if (want == NULL)
        return;
    if (want[0] == '=' ? strcmp(err, want + 1) != 0 : strstr(err, want) == NULL)
        fail_msg("%s: err \"%s\", want \"%s\"", name, err, want);
}

/*
 * check_issued_at judges |cert| as |role|'s upstream returned it for |plan|, with |chain| and |store|, at
 * |now|: verdict |want| and the reason |want_err| asks (check_err), or a failure that names |name|. It frees
 * |cert| and |plan|'s contents. check_issued_case: without a chain, against the intermediate CA, at NOW.
 */
static void check_issued_at(const char *name, const struct gw_role *role, struct gw_cert_plan *plan,
                            X509 *cert, STACK_OF(X509) *chain, X509_STORE *store, time_t now,
                            enum gw_issued_verdict want, const char *want_err)
{
    char err[GW_ERR_LEN];
    enum gw_issued_verdict v = gw_policy_check_issued(role, plan, cert, chain, store, NULL, now, NULL, err);

    if (v != want)
        fail_msg("%s: verdict %d, want %d; err \"%s\"", name, v, want, err);
    check_err(name, err, want_err);
    assert_true(strlen(err) < GW_ERR_LEN);
    gw_cert_plan_cleanup(plan);
    X509_free(cert);
}

static void check_issued_case(const char *name, const struct gw_role *role, struct gw_cert_plan *plan,
                              X509 *cert, enum gw_issued_verdict want, const char *want_err)
{
    check_issued_at(name, role, plan, cert, NULL, st_issuer_int, NOW, want, want_err);
}

static void test_authorize(void **state)
{
    X509_STORE *stores[] = {[S_NONE] = NULL, [S_TLS] = st_tls, [S_STALE] = st_tls_stale_crl};
    char err[GW_ERR_LEN];
    const char *code;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(az) / sizeof(az[0]); i++) {
        struct gw_role role = {.name = "iot", .pbm_refs = p_pbm, .n_pbm = 1, .authz = az[i].authz};
        struct gw_identity id = {tls[az[i].peer], tls[az[i].signer], az[i].pbm};
        int fi = -1, rc;

        role.authz.tls_store = stores[az[i].store];
        role.store = az[i].role_store ? st_tls : NULL;
        rc = gw_policy_authorize(&role, &id, NOW, &fi, err, &code);
        if ((rc == 0) != az[i].want_ok || fi != (az[i].want_ok ? 0 : NA))
            fail_msg("%s: rc %d fail_info %d err \"%s\"", az[i].name, rc, fi, err);
        if (!az[i].want_ok)
            assert_int_equal(rc, GW_ERR_POLICY);
        check_err(az[i].name, err, az[i].want);
        if (az[i].want_ok ? code != NULL : code == NULL || strcmp(code, az[i].code) != 0)
            fail_msg("%s: code \"%s\", want \"%s\"", az[i].name, code != NULL ? code : "(none)",
                     az[i].want_ok ? "(none)" : az[i].code);
    }
}

/*
 * A TLS client certificate is held to tls_trust at GW_SIGNER_AUTH_LEVEL, as a CMP signer is: one its CA
 * signed with SHA-1 is refused, named as such; the same certificate signed with SHA-256 passes.
 */
static void test_authorize_tls_weak(void **state)
{
    struct gw_role role = {.name = "iot", .pbm_refs = p_pbm, .n_pbm = 1};
    X509 *peer = X509_dup(tls[C_DEV1]);
    struct gw_identity id = {peer, NULL, "dev-ref"};
    char err[GW_ERR_LEN];
    const char *code;
    int fi = -1;

    (void)state;
    role.authz.tls_store = st_tls;
    assert_true(X509_sign(peer, keys[K_CA1], EVP_sha1()) > 0);
    assert_int_equal(gw_policy_authorize(&role, &id, NOW, &fi, err, &code), GW_ERR_POLICY);
    assert_string_equal(code, "tls_trust");
    check_err(
        "SHA-1", err,
        "=TLS client certificate /O=x/CN=dev-1 is signed with a hash under 112 bits of security (SHA-1, MD5) "
        "(tls_trust of role iot)");
    X509_free(peer);
    id.tls_peer = peer = X509_dup(tls[C_DEV1]); /* a new one: OpenSSL caches what it read of the signature */
    assert_true(X509_sign(peer, keys[K_CA1], EVP_sha256()) > 0);
    if (gw_policy_authorize(&role, &id, NOW, &fi, err, &code) != 0)
        fail_msg("SHA-256: %s", err);
    X509_free(peer);
}

/* A long allowed list is cut with "...": the reason stays one NUL-terminated line of GW_ERR_LEN. */
static void test_authorize_long_list(void **state)
{
    static char *many[40];
    static char pat[40][32];
    struct gw_role role = {
        .name = "iot", .pbm_refs = p_pbm, .n_pbm = 1, .authz = {.tls_subjects = PATS(many)}};
    struct gw_identity id = {tls[C_ADMIN], NULL, "dev-ref"};
    char err[GW_ERR_LEN + 1];
    const char *code;
    int fi = 0;
    size_t i;

    (void)state;
    for (i = 0; i < 40; i++) {
        snprintf(pat[i], sizeof(pat[i]), "/O=x/CN=device-%zu-*", i);
        many[i] = pat[i];
    }
    memset(err, 'Z', sizeof(err));
    assert_int_equal(gw_policy_authorize(&role, &id, NOW, &fi, err, &code), GW_ERR_POLICY);
    assert_int_equal(err[GW_ERR_LEN], 'Z');
    assert_true(strlen(err) < GW_ERR_LEN);
    assert_non_null(strstr(err, "(allowed: /O=x/CN=device-0-*, /O=x/CN=device-1-*"));
    assert_non_null(strstr(err, "..."));
}

static void test_authorize_null(void **state)
{
    struct gw_role role = {.name = "iot"};
    struct gw_identity id = {0};
    char err[GW_ERR_LEN];
    const char *code;
    int fi = 0;

    (void)state;
    assert_int_equal(gw_policy_authorize(NULL, &id, NOW, &fi, err, &code), GW_ERR_POLICY);
    assert_int_equal(fi, NA);
    assert_string_equal(code, "no_identity");
    assert_int_equal(gw_policy_authorize(&role, NULL, NOW, &fi, err, &code), GW_ERR_POLICY);
}

/* ---- plans ---- */

/* mkplan: subject spec ('|'-separated), SANs as config text, key, validity end from NOW. */
static void mkplan(struct gw_cert_plan *p, const char *subject, const char *sans, enum key_id k, long to)
{
    gw_cert_plan_init(p);
    p->subject = subject != NULL ? mkname(subject) : X509_NAME_new();
    if (sans != NULL) {
        X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, sans);

        assert_non_null(e);
        assert_non_null(p->sans = X509V3_EXT_d2i(e));
        X509_EXTENSION_free(e);
    }
    assert_int_equal(EVP_PKEY_up_ref(keys[k]), 1);
    p->pubkey = keys[k];
    p->not_before = NOW - GW_BACKDATE_SECS;
    p->not_after = NOW + to;
    p->key_usage = KU_DIGITAL_SIGNATURE;
}

/* ---- gw_policy_check_request ---- */

static char *p_cn[] = {"dev-*.example.com"};
static char *p_subj[] = {"/O=Corp/OU=Devices/CN=dev-*"};
static char *p_subj_mail[] = {"/CN=*/emailAddress=*@example.com"};
static char *p_subj_mail2[] = {"/CN=*/emailAddress=alice@evil@example.com"};
static char *p_subj_mail3[] = {"/CN=*/emailAddress=*@*.com"};
static char *p_subj_cn[] = {"/O=Corp/CN=*"};
static char *p_subj_mailattr[] = {"/O=Corp/mail=*@corp.example"};
static char *p_subj_eq[] = {"/O=Corp/CN=dev-*=Admins"};
static char *p_subj_rdn[] = {"/O=Corp/CN=dev-*+OU=Admins"};
static char *p_subj_plus[] = {"/O=Corp/CN=dev-*\\+OU=Admins"};
static char *p_dnsn[] = {"*.example.com"};
static char *p_uri[] = {"spiffe://example.org/*"};
static char *p_uri_host[] = {"https://*.example.com/*"};
static char *p_uri_ns[] = {"spiffe://example.org/ns/*/sa/*"};
static char *p_sip_uri[] = {"sip:*@example.com"};
static char *p_mail[] = {"*@example.com"};
static char *p_mail_stars[] = {"**@**.example"}; /* each "**" matches nothing too */
static char *p_ip[] = {"10.0.0.0/8", "::1/128", "2001:db8::/32", "192.0.2.7", "198.51.100.0/31"};
static char *p_ip_bad[] = {"10.0.0.0/33",   "10.0.0.0/", "/8",   "10.0.0.0/8x",
                           "10.0.0.0/0008", "::/129",    "zzz/8"};
static char *p_ip_v4any[] = {"0.0.0.0/0"};
static char *p_ip_v6any[] = {"::/0"};
static char *p_ip_v4net_v6any[] = {"10.0.0.0/8", "::/0"};
static struct gw_key_rule r_p256[] = {{EVP_PKEY_EC, 0, NID_X9_62_prime256v1}};
static struct gw_key_rule r_rsa4k[] = {{EVP_PKEY_RSA, 4096, 0}, {EVP_PKEY_ED25519, 0, 0}};

#define ALL_SANS (GW_SAN_DNS | GW_SAN_IP | GW_SAN_URI | GW_SAN_EMAIL)

static const struct {
    const char *name;
    struct gw_authz authz;
    unsigned san_types;
    const char *subject, *sans;
    enum key_id key;
    const char *want; /* NULL = accepted; else a substring, or the exact text after '=' */
} rq[] = {
    {"cn ok", {.common_names = PATS(p_cn)}, 0, "CN=dev-1.example.com", NULL, K_P256, NULL},
    {"cn refused",
     {.common_names = PATS(p_cn)},
     0,
     "CN=admin.example.com",
     NULL,
     K_P256,
     "=common name admin.example.com is not allowed on role iot (allowed: dev-*.example.com)"},
    {"cn twice, second refused",
     {.common_names = PATS(p_cn)},
     0,
     "CN=dev-1.example.com|CN=admin",
     NULL,
     K_P256,
     "common name admin is not allowed"},
    {"cn is exact", {.common_names = PATS(p_cn)}, 0, "CN=DEV-1.example.com", NULL, K_P256, "not allowed"},
    {"no cn, cn patterns", {.common_names = PATS(p_cn)}, ALL_SANS, "O=x", "DNS:a.example.com", K_P256, NULL},
    {"any cn", {0}, 0, "CN=whatever", NULL, K_P256, NULL},
    /* allowed_subjects: the whole requested subject, as signer_subjects of any role reads a signer's */
    {"subject pattern ok", {.subjects = PATS(p_subj)}, 0, "O=Corp|OU=Devices|CN=dev-1", NULL, K_P256, NULL},
    {"subject pattern, another OU",
     {.subjects = PATS(p_subj)},
     0,
     "O=Corp|OU=Servers|CN=dev-1",
     NULL,
     K_P256,
     "=requested subject /O=Corp/OU=Servers/CN=dev-1 is not allowed on role iot (allowed: "
     "/O=Corp/OU=Devices/CN=dev-*)"},
    {"subject pattern, one attribute more",
     {.subjects = PATS(p_subj)},
     0,
     "O=Corp|OU=Devices|CN=dev-1|OU=Admins",
     NULL,
     K_P256,
     "not allowed"},
    {"subject pattern, '/' inside a value",
     {.subjects = PATS(p_subj)},
     0,
     "O=Corp/OU=Devices|CN=dev-1",
     NULL,
     K_P256,
     "=requested subject has a '/' or a backslash in an attribute value and cannot be matched against "
     "allowed_subjects of role iot"},
    /* a '*' stays in one attribute ('/', '+' between those of one RDN), in an emailAddress value before '@'
     */
    {"subject pattern, emailAddress",
     {.subjects = PATS(p_subj_mail)},
     ALL_SANS,
     "CN=dev-1|emailAddress=alice@example.com",
     NULL,
     K_P256,
     NULL},
    {"subject pattern, emailAddress '*' across '@'",
     {.subjects = PATS(p_subj_mail)},
     ALL_SANS,
     "CN=dev-1|emailAddress=alice@evil@example.com",
     NULL,
     K_P256,
     "=requested subject /CN=dev-1/emailAddress=alice@evil@example.com is not allowed on role iot (allowed: "
     "/CN=*/emailAddress=*@example.com)"},
    {"subject pattern, emailAddress with two '@' spelt out",
     {.subjects = PATS(p_subj_mail2)},
     ALL_SANS,
     "CN=dev-1|emailAddress=alice@evil@example.com",
     NULL,
     K_P256,
     "not allowed on role iot"},
    {"subject pattern, '*' across '@' in an emailAddress, two '*'",
     {.subjects = PATS(p_subj_mail3)},
     ALL_SANS,
     "CN=dev-1|emailAddress=alice@evil@example.com",
     NULL,
     K_P256,
     "not allowed on role iot"},
    /* a mail (rfc822Mailbox) value is read as an emailAddress one */
    {"subject pattern, mail",
     {.subjects = PATS(p_subj_mailattr)},
     ALL_SANS,
     "O=Corp|mail=alice@corp.example",
     NULL,
     K_P256,
     NULL},
    {"subject pattern, mail '*' across '@'",
     {.subjects = PATS(p_subj_mailattr)},
     ALL_SANS,
     "O=Corp|mail=alice@evil@corp.example",
     NULL,
     K_P256,
     "=requested subject /O=Corp/mail=alice@evil@corp.example is not allowed on role iot (allowed: "
     "/O=Corp/mail=*@corp.example)"},
    {"subject pattern, CN with '@'",
     {.subjects = PATS(p_subj_cn)},
     0,
     "O=Corp|CN=alice@corp",
     NULL,
     K_P256,
     NULL},
    {"subject pattern, CN with ','",
     {.subjects = PATS(p_subj_cn)},
     0,
     "O=Corp|CN=Smith, Ann",
     NULL,
     K_P256,
     NULL},
    {"subject pattern, CN with '+'", {.subjects = PATS(p_subj_cn)}, 0, "O=Corp|CN=a+b", NULL, K_P256, NULL},
    {"subject pattern, '*' across '+' into another attribute",
     {.subjects = PATS(p_subj_eq)},
     0,
     "O=Corp|CN=dev-1|+OU=Admins",
     NULL,
     K_P256,
     "=requested subject /O=Corp/CN=dev-1+OU=Admins is not allowed on role iot (allowed: "
     "/O=Corp/CN=dev-*=Admins)"},
    {"subject pattern, '=' in a value",
     {.subjects = PATS(p_subj_eq)},
     0,
     "O=Corp|CN=dev-1=Admins",
     NULL,
     K_P256,
     NULL},
    {"subject pattern, a multi-valued RDN spelt out",
     {.subjects = PATS(p_subj_rdn)},
     0,
     "O=Corp|CN=dev-1|+OU=Admins",
     NULL,
     K_P256,
     NULL},
    {"subject pattern, a multi-valued RDN vs one value with '+'",
     {.subjects = PATS(p_subj_rdn)},
     0,
     "O=Corp|CN=dev-1+OU=Admins",
     NULL,
     K_P256,
     "not allowed on role iot"},
    {"subject pattern, a multi-valued RDN in another order",
     {.subjects = PATS(p_subj_rdn)},
     0,
     "O=Corp|OU=Admins|+CN=dev-1",
     NULL,
     K_P256,
     NULL},
    /* the twins: a pattern's "\+" is a plus inside the value, as the subject's line writes one */
    {"subject pattern, a plus spelt out, one value with '+'",
     {.subjects = PATS(p_subj_plus)},
     0,
     "O=Corp|CN=dev-1+OU=Admins",
     NULL,
     K_P256,
     NULL},
    {"subject pattern, a plus spelt out vs a multi-valued RDN",
     {.subjects = PATS(p_subj_plus)},
     0,
     "O=Corp|CN=dev-1|+OU=Admins",
     NULL,
     K_P256,
     "=requested subject /O=Corp/CN=dev-1+OU=Admins is not allowed on role iot (allowed: "
     "/O=Corp/CN=dev-*\\+OU=Admins)"},
    {"subject pattern, empty subject",
     {.subjects = PATS(p_subj)},
     ALL_SANS,
     "",
     "DNS:a.example.com",
     K_P256,
     NULL},
    {"dns folds case", {.dns_names = PATS(p_dnsn)}, ALL_SANS, "CN=x", "DNS:DEV-2.Example.COM", K_P256, NULL},
    {"dns refused",
     {.dns_names = PATS(p_dnsn)},
     ALL_SANS,
     "CN=x",
     "DNS:a.example.com,DNS:evil.org",
     K_P256,
     "=DNS name evil.org is not allowed on role iot (allowed: *.example.com)"},
    {"dns two labels",
     {.dns_names = PATS(p_dnsn)},
     ALL_SANS,
     "CN=x",
     "DNS:a.b.example.com",
     K_P256,
     "not allowed"},
    {"dns any", {0}, ALL_SANS, "CN=x", "DNS:anything.org", K_P256, NULL},
    /* a CN with a dot is a host name to OpenSSL's X509_check_host where no DNS SAN is there: without
       allowed_common_names, allowed_dns_names bounds it */
    {"cn as host outside the dns names",
     {.dns_names = PATS(p_dnsn)},
     ALL_SANS,
     "CN=www.bank.example",
     NULL,
     K_P256,
     "=host name in the common name www.bank.example is not allowed on role iot (allowed: *.example.com)"},
    {"cn as wildcard host",
     {.dns_names = PATS(p_dnsn)},
     ALL_SANS,
     "CN=*.bank.example",
     NULL,
     K_P256,
     "is a wildcard, which role iot does not issue"},
    {"cn as host within the dns names",
     {.dns_names = PATS(p_dnsn)},
     ALL_SANS,
     "CN=DEV.Example.com",
     NULL,
     K_P256,
     NULL},
    {"cn not a host name", {.dns_names = PATS(p_dnsn)}, ALL_SANS, "CN=Device 17. Hall B", NULL, K_P256, NULL},
    {"cn as host with an underscore",
     {.dns_names = PATS(p_dnsn)},
     ALL_SANS,
     "CN=a_b.bank.example",
     NULL,
     K_P256,
     "=host name in the common name a_b.bank.example is not allowed on role iot (allowed: *.example.com)"},
    {"cn patterns decide over dns names",
     {.common_names = PATS(p_cn), .dns_names = PATS(p_dnsn)},
     ALL_SANS,
     "CN=dev-1.example.com",
     NULL,
     K_P256,
     NULL},
    {"dns type off",
     {0},
     GW_SAN_IP,
     "CN=x",
     "DNS:a.example.com",
     K_P256,
     "subjectAltName type DNS name is not allowed on role iot"},
    {"uri ok", {.uris = PATS(p_uri)}, ALL_SANS, "CN=x", "URI:spiffe://example.org/dev", K_P256, NULL},
    {"uri deeper", {.uris = PATS(p_uri)}, ALL_SANS, "CN=x", "URI:spiffe://example.org/dev/x", K_P256, "URI"},
    {"uri case", {.uris = PATS(p_uri)}, ALL_SANS, "CN=x", "URI:spiffe://EXAMPLE.org/dev", K_P256, "URI"},
    /* a '*' of a URI pattern is one host label or path segment: it matches none of ?#@%\: by which a
       URL parser ends or decodes the host (RFC 3986 §3.2, WHATWG) or a segment */
    {"uri host label",
     {.uris = PATS(p_uri_host)},
     ALL_SANS,
     "CN=x",
     "URI:https://intranet.example.com/x",
     K_P256,
     NULL},
    {"uri host ends at '?'",
     {.uris = PATS(p_uri_host)},
     ALL_SANS,
     "CN=x",
     "URI:https://intranet?.example.com/x",
     K_P256,
     "=URI https://intranet?.example.com/x is not allowed on role iot (allowed: https://*.example.com/*)"},
    {"uri host ends at '#'",
     {.uris = PATS(p_uri_host)},
     ALL_SANS,
     "CN=x",
     "URI:https://evil#.example.com/x",
     K_P256,
     "URI https://evil#.example.com/x is not allowed"},
    {"uri host ends at '\\'",
     {.uris = PATS(p_uri_host)},
     ALL_SANS,
     "CN=x",
     "URI:https://evil\\.example.com/x",
     K_P256,
     "URI https://evil\\.example.com/x is not allowed"},
    {"uri IPv6 host ends at '?'",
     {.uris = PATS(p_uri_host)},
     ALL_SANS,
     "CN=x",
     "URI:https://[::1]?.example.com/x",
     K_P256,
     "URI https://[::1]?.example.com/x is not allowed"},
    {"uri host with userinfo",
     {.uris = PATS(p_uri_host)},
     ALL_SANS,
     "CN=x",
     "URI:https://evil@intranet.example.com/x",
     K_P256,
     "URI https://evil@intranet.example.com/x is not allowed"},
    {"uri host with a port",
     {.uris = PATS(p_uri_host)},
     ALL_SANS,
     "CN=x",
     "URI:https://a:1.example.com/x",
     K_P256,
     "URI https://a:1.example.com/x is not allowed"},
    {"uri path segment ends at '?'",
     {.uris = PATS(p_uri_ns)},
     ALL_SANS,
     "CN=x",
     "URI:spiffe://example.org/ns/a?/sa/b",
     K_P256,
     "URI spiffe://example.org/ns/a?/sa/b is not allowed"},
    {"uri path segment with an encoded '/'",
     {.uris = PATS(p_uri_ns)},
     ALL_SANS,
     "CN=x",
     "URI:spiffe://example.org/ns/a%2Fsa%2Fx/sa/b",
     K_P256,
     "URI spiffe://example.org/ns/a%2Fsa%2Fx/sa/b is not allowed"},
    {"uri path segments",
     {.uris = PATS(p_uri_ns)},
     ALL_SANS,
     "CN=x",
     "URI:spiffe://example.org/ns/a/sa/b-1",
     K_P256,
     NULL},
    {"uri literal '@' and ':'",
     {.uris = PATS(p_sip_uri)},
     ALL_SANS,
     "CN=x",
     "URI:sip:dev-9@example.com",
     K_P256,
     NULL},
    {"uri '*' across '@'",
     {.uris = PATS(p_sip_uri)},
     ALL_SANS,
     "CN=x",
     "URI:sip:dev-9@evil@example.com",
     K_P256,
     "URI sip:dev-9@evil@example.com is not allowed"},
    {"email ok", {.emails = PATS(p_mail)}, ALL_SANS, "CN=x", "email:alice@example.com", K_P256, NULL},
    /* a '*' of an email pattern stops at '@': mailers differ on which '@' ends the local part */
    {"email '*' across '@'",
     {.emails = PATS(p_mail)},
     ALL_SANS,
     "CN=x",
     "email:alice@evil@example.com",
     K_P256,
     "email address alice@evil@example.com is not allowed"},
    {"subject email '*' across '@'",
     {.emails = PATS(p_mail)},
     ALL_SANS,
     "CN=x|emailAddress=alice@evil@example.com",
     NULL,
     K_P256,
     "subject emailAddress alice@evil@example.com is not allowed"},
    /* as an email subjectAltName may not (san_malformed), whatever the patterns: none here */
    {"subject email with two '@'",
     {0},
     ALL_SANS,
     "CN=x|emailAddress=alice@evil@example.com",
     NULL,
     K_P256,
     "=subject emailAddress alice@evil@example.com holds more than one '@': mailers differ on which ends the "
     "local part"},
    {"subject email with one '@'", {0}, ALL_SANS, "CN=x|emailAddress=alice@example.com", NULL, K_P256, NULL},
    /* nor a mail (rfc822Mailbox) attribute, an address to LDAP and the mailers that read it */
    {"subject mail with two '@'",
     {0},
     ALL_SANS,
     "CN=x|mail=alice@evil@example.com",
     NULL,
     K_P256,
     "=subject attribute mail alice@evil@example.com holds more than one '@': mailers differ on which ends "
     "the "
     "local part"},
    {"subject mail with one '@'", {0}, ALL_SANS, "CN=x|mail=alice@example.com", NULL, K_P256, NULL},
    /* nor one that is no address: no '@', or nothing before or after it */
    {"subject email without '@'",
     {0},
     ALL_SANS,
     "CN=x|emailAddress=alice",
     NULL,
     K_P256,
     "=subject emailAddress alice holds no '@': an email address is local-part@domain"},
    {"subject mail with nothing before its '@'",
     {0},
     ALL_SANS,
     "CN=x|mail=@example.com",
     NULL,
     K_P256,
     "=subject attribute mail @example.com has nothing before its '@': an email address is "
     "local-part@domain"},
    {"subject email with nothing after its '@'",
     {0},
     ALL_SANS,
     "CN=x|emailAddress=alice@",
     NULL,
     K_P256,
     "=subject emailAddress alice@ has nothing after its '@': an email address is local-part@domain"},
    {"subject email '@' alone",
     {0},
     ALL_SANS,
     "CN=x|emailAddress=@",
     NULL,
     K_P256,
     "has nothing before its '@'"},
    {"subject email without '@', patterns first",
     {.emails = PATS(p_mail_stars)},
     ALL_SANS,
     "CN=x|emailAddress=alice",
     NULL,
     K_P256,
     "=subject emailAddress alice is not allowed on role iot (allowed: **@**.example)"},
    {"subject email with nothing before its '@', \"**\"",
     {.emails = PATS(p_mail_stars)},
     ALL_SANS,
     "CN=x|emailAddress=@corp.example",
     NULL,
     K_P256,
     "subject emailAddress @corp.example is not allowed"},
    {"subject email, \"**\"",
     {.emails = PATS(p_mail_stars)},
     ALL_SANS,
     "CN=x|emailAddress=a@corp.example",
     NULL,
     K_P256,
     NULL},
    /* an email subjectAltName as much: a request's is san_malformed first (mappings/profile.c), not what
       an upstream returns or an RA names */
    {"email without '@'",
     {0},
     ALL_SANS,
     "CN=x",
     "email:alice",
     K_P256,
     "=email address alice holds no '@': an email address is local-part@domain"},
    {"email with nothing after its '@'",
     {0},
     ALL_SANS,
     "CN=x",
     "email:alice@",
     K_P256,
     "email address alice@ has nothing after its '@'"},
    {"email with two '@', no patterns",
     {0},
     ALL_SANS,
     "CN=x",
     "email:a@b@example.com",
     K_P256,
     "=email address a@b@example.com holds more than one '@': mailers differ on which ends the local part"},
    {"email with nothing before its '@', \"**\"",
     {.emails = PATS(p_mail_stars)},
     ALL_SANS,
     "CN=x",
     "email:@corp.example",
     K_P256,
     "email address @corp.example is not allowed on role iot"},
    {"email, \"**\"", {.emails = PATS(p_mail_stars)}, ALL_SANS, "CN=x", "email:a@corp.example", K_P256, NULL},
    {"email, no patterns", {0}, ALL_SANS, "CN=x", "email:a@corp.example", K_P256, NULL},
    {"subject mail with two '@', in a multi-valued RDN",
     {0},
     ALL_SANS,
     "CN=x|+mail=a@b@example.com",
     NULL,
     K_P256,
     "subject attribute mail a@b@example.com holds more than one '@'"},
    {"email refused",
     {.emails = PATS(p_mail)},
     ALL_SANS,
     "CN=x",
     "email:alice@evil.com",
     K_P256,
     "email address alice@evil.com is not allowed"},
    /* a subject emailAddress is an email identity to OpenSSL (X509_check_email): the role's email rules */
    {"subject email, no email type",
     {0},
     GW_SAN_DNS,
     "CN=x|emailAddress=ceo@bank.example",
     NULL,
     K_P256,
     "=the subject holds an emailAddress, which role iot does not allow"},
    {"subject email outside allowed_emails",
     {.emails = PATS(p_mail)},
     ALL_SANS,
     "CN=x|emailAddress=ceo@bank.example",
     NULL,
     K_P256,
     "=subject emailAddress ceo@bank.example is not allowed on role iot (allowed: *@example.com)"},
    {"subject email in allowed_emails",
     {.emails = PATS(p_mail)},
     ALL_SANS,
     "CN=x|emailAddress=alice@example.com",
     NULL,
     K_P256,
     NULL},
    {"subject email, any email", {0}, ALL_SANS, "CN=x|emailAddress=x@y.example", NULL, K_P256, NULL},
    /* a mail (rfc822Mailbox) attribute is the holder's address to LDAP and mail software: the same rules */
    {"subject mail, no email type",
     {0},
     GW_SAN_DNS,
     "CN=x|mail=ceo@bank.example",
     NULL,
     K_P256,
     "=the subject holds a mail attribute, which role iot does not allow"},
    {"subject mail in a multi-valued RDN, no email type",
     {0},
     GW_SAN_DNS,
     "CN=x|+mail=ceo@bank.example",
     NULL,
     K_P256,
     "=the subject holds a mail attribute, which role iot does not allow"},
    {"subject mail outside allowed_emails",
     {.emails = PATS(p_mail)},
     ALL_SANS,
     "CN=x|mail=ceo@bank.example",
     NULL,
     K_P256,
     "=subject attribute mail ceo@bank.example is not allowed on role iot (allowed: *@example.com)"},
    {"subject mail '*' across '@'",
     {.emails = PATS(p_mail)},
     ALL_SANS,
     "CN=x|mail=alice@evil@example.com",
     NULL,
     K_P256,
     "subject attribute mail alice@evil@example.com is not allowed on role iot"},
    {"subject mail in allowed_emails",
     {.emails = PATS(p_mail)},
     ALL_SANS,
     "CN=x|mail=alice@example.com",
     NULL,
     K_P256,
     NULL},
    {"subject mail, any email", {0}, ALL_SANS, "CN=x|mail=x@y.example", NULL, K_P256, NULL},
    {"ip v4 in /8", {.ip_ranges = PATS(p_ip)}, ALL_SANS, "CN=x", "IP:10.1.2.3", K_P256, NULL},
    {"ip v4 outside",
     {.ip_ranges = PATS(p_ip)},
     ALL_SANS,
     "CN=x",
     "IP:11.0.0.1",
     K_P256,
     "IP address 11.0.0.1 is not allowed on role iot (allowed: 10.0.0.0/8, ::1/128"},
    {"ip v6 /128", {.ip_ranges = PATS(p_ip)}, ALL_SANS, "CN=x", "IP:::1", K_P256, NULL},
    {"ip v6 /128 miss", {.ip_ranges = PATS(p_ip)}, ALL_SANS, "CN=x", "IP:::2", K_P256, "IP address ::2"},
    {"ip v6 /32", {.ip_ranges = PATS(p_ip)}, ALL_SANS, "CN=x", "IP:2001:db8:ffff::1", K_P256, NULL},
    {"ip v6 /32 miss", {.ip_ranges = PATS(p_ip)}, ALL_SANS, "CN=x", "IP:2001:db9::1", K_P256, "not allowed"},
    {"ip bare address", {.ip_ranges = PATS(p_ip)}, ALL_SANS, "CN=x", "IP:192.0.2.7", K_P256, NULL},
    {"ip bare address miss",
     {.ip_ranges = PATS(p_ip)},
     ALL_SANS,
     "CN=x",
     "IP:192.0.2.8",
     K_P256,
     "not allowed"},
    {"ip /31 odd", {.ip_ranges = PATS(p_ip)}, ALL_SANS, "CN=x", "IP:198.51.100.1", K_P256, NULL},
    {"ip /31 outside", {.ip_ranges = PATS(p_ip)}, ALL_SANS, "CN=x", "IP:198.51.100.2", K_P256, "not allowed"},
    {"ip v4-mapped v6 is not v4",
     {.ip_ranges = PATS(p_ip)},
     ALL_SANS,
     "CN=x",
     "IP:::ffff:10.0.0.1",
     K_P256,
     "not allowed"},
    {"ip malformed ranges match nothing",
     {.ip_ranges = PATS(p_ip_bad)},
     ALL_SANS,
     "CN=x",
     "IP:10.0.0.1",
     K_P256,
     "not allowed"},
    {"ip v4 /0", {.ip_ranges = PATS(p_ip_v4any)}, ALL_SANS, "CN=x", "IP:203.0.113.9", K_P256, NULL},
    {"ip v4 /0 vs v6", {.ip_ranges = PATS(p_ip_v4any)}, ALL_SANS, "CN=x", "IP:::1", K_P256, "not allowed"},
    {"ip v6 /0", {.ip_ranges = PATS(p_ip_v6any)}, ALL_SANS, "CN=x", "IP:fe80::1", K_P256, NULL},
    /* ::ffff:a.b.c.d is a.b.c.d to Go's crypto/x509: "::/0" does not let any IPv4 address through */
    {"ip v4-mapped outside the v4 ranges",
     {.ip_ranges = PATS(p_ip_v4net_v6any)},
     ALL_SANS,
     "CN=x",
     "IP:::ffff:192.168.1.1",
     K_P256,
     "=IP address ::ffff:192.168.1.1 is not allowed on role iot (allowed: 10.0.0.0/8, ::/0; an IPv4-mapped "
     "address as IPv4 too)"},
    {"ip v4-mapped, no v4 range",
     {.ip_ranges = PATS(p_ip_v6any)},
     ALL_SANS,
     "CN=x",
     "IP:::ffff:10.0.0.1",
     K_P256,
     "not allowed"},
    {"ip v4-mapped in both",
     {.ip_ranges = PATS(p_ip_v4net_v6any)},
     ALL_SANS,
     "CN=x",
     "IP:::ffff:10.1.2.3",
     K_P256,
     NULL},
    {"ip v4 beside v6 any",
     {.ip_ranges = PATS(p_ip_v4net_v6any)},
     ALL_SANS,
     "CN=x",
     "IP:10.1.2.3",
     K_P256,
     NULL},
    {"ip any", {0}, ALL_SANS, "CN=x", "IP:203.0.113.9", K_P256, NULL},
    {"ip type off", {0}, GW_SAN_DNS, "CN=x", "IP:10.0.0.1", K_P256, "type ip is not allowed"},
    {"key p256 builtin", {0}, 0, "CN=x", NULL, K_P256, NULL},
    {"key ed25519 builtin", {0}, 0, "CN=x", NULL, K_ED25519, NULL},
    {"key rsa2048 builtin", {0}, 0, "CN=x", NULL, K_RSA2048, NULL},
    {"key rsa1024 builtin",
     {0},
     0,
     "CN=x",
     NULL,
     K_RSA1024,
     "=key rsa:1024 is not allowed on role iot (allowed: rsa:2048, ec:P-256, ec:P-384, ec:P-521, ed25519, "
     "ed448)"},
    {"key p224 builtin", {0}, 0, "CN=x", NULL, K_P224, "key ec:P-224 is not allowed"},
    {"key p256 rule", {.key_rules = r_p256, .n_key_rules = 1}, 0, "CN=x", NULL, K_P256, NULL},
    {"key p384 vs p256 rule",
     {.key_rules = r_p256, .n_key_rules = 1},
     0,
     "CN=x",
     NULL,
     K_P384,
     "=key ec:P-384 is not allowed on role iot (allowed: ec:P-256)"},
    {"key rsa2048 vs rsa:4096",
     {.key_rules = r_rsa4k, .n_key_rules = 2},
     0,
     "CN=x",
     NULL,
     K_RSA2048,
     "(allowed: rsa:4096, ed25519)"},
    {"key ed25519 rule", {.key_rules = r_rsa4k, .n_key_rules = 2}, 0, "CN=x", NULL, K_ED25519, NULL},
};

static void test_check_request(void **state)
{
    char err[GW_ERR_LEN];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rq) / sizeof(rq[0]); i++) {
        struct gw_role role = {.name = "iot", .allowed_san_types = rq[i].san_types, .authz = rq[i].authz};
        struct gw_cert_plan plan;
        int fi = -1, rc;

        mkplan(&plan, rq[i].subject, rq[i].sans, rq[i].key, DAY);
        rc = gw_policy_check_request(&role, &plan, &fi, err);
        gw_cert_plan_cleanup(&plan);
        if ((rc == 0) != (rq[i].want == NULL) || fi != (rq[i].want == NULL ? 0 : BT) ||
            (rc != 0 && rc != GW_ERR_POLICY))
            fail_msg("%s: rc %d fail_info %d err \"%s\"", rq[i].name, rc, fi, err);
        check_err(rq[i].name, err, rq[i].want);
    }
}

/*
 * A CN without a dot is a host name too ("vault" is the host of https://vault/, "localhost" of
 * https://localhost/) where the certificate can be a TLS server's whose CN X509_check_host reads: its
 * role grants serverAuth or no extendedKeyUsage at all, and it has no DNS SAN. Without
 * allowed_common_names, allowed_dns_names bounds it there; a client-only role keeps its device names.
 */
static char *p_dns_bare[] = {"*.example.com", "vault"};
static char *p_cn_dev[] = {"device-*"};
#define SERVER (GW_EKU_SERVER_AUTH | GW_EKU_CLIENT_AUTH)

static const struct {
    const char *name;
    struct gw_authz authz;
    unsigned eku;
    const char *subject, *sans;
    const char *want; /* NULL = accepted; else a substring, or the exact text after '=' */
} bare_cn[] = {
    {"client-only role", {.dns_names = PATS(p_dnsn)}, GW_EKU_CLIENT_AUTH, "CN=device-17", NULL, NULL},
    {"server role",
     {.dns_names = PATS(p_dnsn)},
     SERVER,
     "CN=vault",
     NULL,
     "=host name in the common name vault is not allowed on role iot (allowed: *.example.com)"},
    {"serverAuth alone",
     {.dns_names = PATS(p_dnsn)},
     GW_EKU_SERVER_AUTH,
     "CN=device-17",
     NULL,
     "device-17 is not"},
    {"no extendedKeyUsage: any purpose",
     {.dns_names = PATS(p_dnsn)},
     0,
     "CN=localhost",
     NULL,
     "=host name in the common name localhost is not allowed on role iot (allowed: *.example.com)"},
    {"codeSigning role", {.dns_names = PATS(p_dnsn)}, GW_EKU_CODE_SIGNING, "CN=localhost", NULL, NULL},
    {"an underscore", {.dns_names = PATS(p_dnsn)}, SERVER, "CN=db_1", NULL, "name db_1 is not allowed"},
    {"upper case",
     {.dns_names = PATS(p_dnsn)},
     SERVER,
     "CN=LOCALHOST",
     NULL,
     "name LOCALHOST is not allowed"},
    {"beside an IP SAN only",
     {.dns_names = PATS(p_dnsn)},
     SERVER,
     "CN=device-17",
     "IP:10.0.0.1",
     "host name in the common name device-17 is not allowed"},
    /* X509_check_host reads the DNS SANs alone where there are some */
    {"beside a DNS SAN", {.dns_names = PATS(p_dnsn)}, SERVER, "CN=device-17", "DNS:dev-17.example.com", NULL},
    {"within the dns names", {.dns_names = PATS(p_dns_bare)}, SERVER, "CN=Vault", NULL, NULL},
    {"cn patterns decide",
     {.common_names = PATS(p_cn_dev), .dns_names = PATS(p_dnsn)},
     SERVER,
     "CN=device-17",
     NULL,
     NULL},
    {"cn patterns decide, refused",
     {.common_names = PATS(p_cn_dev), .dns_names = PATS(p_dnsn)},
     SERVER,
     "CN=vault",
     NULL,
     "=common name vault is not allowed on role iot (allowed: device-*)"},
    {"no dns names: any host", {0}, SERVER, "CN=vault", NULL, NULL},
    /* no host name a client can connect to */
    {"a space", {.dns_names = PATS(p_dnsn)}, SERVER, "CN=Device 17", NULL, NULL},
    {"a colon", {.dns_names = PATS(p_dnsn)}, SERVER, "CN=urn:x:y", NULL, NULL},
    {"an at sign", {.dns_names = PATS(p_dnsn)}, SERVER, "CN=alice@corp", NULL, NULL},
    {"a slash", {.dns_names = PATS(p_dnsn)}, SERVER, "CN=site/17", NULL, NULL},
};

static void test_check_request_bare_host(void **state)
{
    char err[GW_ERR_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(bare_cn) / sizeof(bare_cn[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .allowed_san_types = ALL_SANS,
                               .ext_key_usage = bare_cn[i].eku,
                               .authz = bare_cn[i].authz};
        struct gw_cert_plan plan;
        int fi = -1, rc;

        mkplan(&plan, bare_cn[i].subject, bare_cn[i].sans, K_P256, DAY);
        rc = gw_policy_check_request(&role, &plan, &fi, err);
        gw_cert_plan_cleanup(&plan);
        if ((rc == 0) != (bare_cn[i].want == NULL) || fi != (bare_cn[i].want == NULL ? 0 : BT))
            fail_msg("%s: rc %d fail_info %d err \"%s\"", bare_cn[i].name, rc, fi, err);
        check_err(bare_cn[i].name, err, bare_cn[i].want);
    }
}

/*
 * gw_policy_check_names (an RA's rr): the names of a certificate issued already, checked as the role
 * would check them when it issued. A subjectAltName that copies a common name is held to the role's
 * SAN types like any other (once a DNS or email copy of a CN passed whatever the types said, so an
 * RA of an email-only role revoked every server certificate of its CA); where the upstream copies
 * the CN into the SANs (Vault, unless exclude_cn_from_sans), the CN is checked as that copy too,
 * carried or not. The whole subject is held to allowed_subjects, which tells apart the certificates of
 * two roles on one CA as signer_subjects tells their signers apart (once it did not count, so an RA of
 * one revoked the other's). Each refused row has an accepted twin.
 */
static char *p_own_subj[] = {"/O=alpha/CN=*"};

static const struct {
    const char *name;
    struct gw_authz authz;
    unsigned san_types;
    int cn_in_sans;
    bool exclude;
    const char *subject, *sans;
    const char *want; /* NULL = accepted; else a substring, or the exact text after '=' */
} held[] = {
    {"DNS copy of the CN, DNS not allowed",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     0,
     false,
     "CN=www.example.com",
     "DNS:www.example.com",
     "=subjectAltName type DNS name is not allowed on role iot"},
    {"DNS copy of the CN, DNS allowed",
     {.dns_names = PATS(p_dnsn)},
     GW_SAN_DNS,
     0,
     false,
     "CN=www.example.com",
     "DNS:www.example.com",
     NULL},
    {"DNS copy of the CN in another case",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     0,
     false,
     "CN=WWW.example.com",
     "DNS:www.example.com",
     "type DNS name is not allowed"},
    {"email copy of the CN, email not allowed",
     {.dns_names = PATS(p_dnsn)},
     GW_SAN_DNS,
     0,
     false,
     "CN=alice@corp",
     "email:alice@corp",
     "=subjectAltName type email address is not allowed on role iot"},
    {"email copy of the CN, email allowed",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     0,
     false,
     "CN=alice@example.com",
     "email:alice@example.com",
     NULL},
    {"email with two '@'",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     0,
     false,
     "CN=dev-1",
     "email:alice@evil@example.com",
     "email address alice@evil@example.com is not allowed on role iot"},
    {"email copy of the CN outside the email patterns",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     0,
     false,
     "CN=alice@corp",
     "email:alice@corp",
     "email address alice@corp is not allowed on role iot"},
    {"IP copy of the CN, IP not allowed",
     {.emails = PATS(p_mail)},
     GW_SAN_DNS,
     0,
     false,
     "CN=10.1.2.3",
     "IP:10.1.2.3",
     "=subjectAltName type ip is not allowed on role iot"},
    {"URI copy of the CN, URI not allowed",
     {.dns_names = PATS(p_dnsn)},
     GW_SAN_DNS,
     0,
     false,
     "CN=urn:x:y",
     "URI:urn:x:y",
     "=subjectAltName type URI is not allowed on role iot"},
    /* no copy carried: judged as the upstream would have copied it */
    {"hostname CN, copied, DNS not allowed",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     1,
     false,
     "CN=www.example.com",
     NULL,
     "=subjectAltName type DNS name is not allowed on role iot (the common name, which the CA copies into "
     "the "
     "subjectAltNames)"},
    {"hostname CN, not copied",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     0,
     false,
     "CN=www.example.com",
     NULL,
     NULL},
    {"hostname CN, copied, exclude_cn_from_sans",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     1,
     true,
     "CN=www.example.com",
     NULL,
     NULL},
    {"email CN, copied, email not allowed",
     {.dns_names = PATS(p_dnsn)},
     GW_SAN_DNS,
     1,
     false,
     "CN=alice@corp",
     NULL,
     "type email address is not allowed on role iot (the common name"},
    {"email CN, copied, email allowed",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     1,
     false,
     "CN=alice@example.com",
     NULL,
     NULL},
    {"email CN, copied, outside the email patterns",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     1,
     false,
     "CN=alice@corp",
     NULL,
     "alice@corp is not allowed on role iot (allowed: *@example.com) (the common name"},
    {"the last CN is the one copied",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     1,
     false,
     "CN=www.example.com|CN=alice@example.com",
     "email:alice@example.com",
     NULL},
    {"the last CN is the one copied, a hostname",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     1,
     false,
     "CN=alice@example.com|CN=www.example.com",
     NULL,
     "type DNS name is not allowed on role iot (the common"},
    {"a CN that is no name is not copied",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     1,
     false,
     "CN=Device 42",
     NULL,
     NULL},
    /* a subject mail (rfc822Mailbox) attribute, as a subject emailAddress */
    {"a subject mail, email not allowed",
     {.emails = PATS(p_mail)},
     GW_SAN_DNS,
     0,
     false,
     "CN=dev-1|mail=alice@example.com",
     NULL,
     "=the subject holds a mail attribute, which role iot does not allow"},
    {"a subject mail outside the email patterns",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     0,
     false,
     "CN=dev-1|mail=ceo@bank.example",
     NULL,
     "=subject attribute mail ceo@bank.example is not allowed on role iot (allowed: *@example.com)"},
    {"a subject mail within the email patterns",
     {.emails = PATS(p_mail)},
     GW_SAN_EMAIL,
     0,
     false,
     "CN=dev-1|mail=alice@example.com",
     NULL,
     NULL},
    {"a subject outside allowed_subjects: another role's on the same CA",
     {.subjects = PATS(p_own_subj)},
     GW_SAN_DNS,
     0,
     false,
     "O=gamma|CN=g-1",
     NULL,
     "=the certificate's subject /O=gamma/CN=g-1 is not allowed on role iot (allowed: /O=alpha/CN=*)"},
    {"a subject within allowed_subjects",
     {.subjects = PATS(p_own_subj)},
     GW_SAN_DNS,
     0,
     false,
     "O=alpha|CN=a-1",
     NULL,
     NULL},
    {"a subject with a '/' in a value cannot be matched",
     {.subjects = PATS(p_own_subj)},
     GW_SAN_DNS,
     0,
     false,
     "O=alpha|CN=a/1",
     NULL,
     "=the certificate's subject has a '/' or a backslash in an attribute value and cannot be "
     "matched against allowed_subjects of role iot"},
    {"an empty subject is left to the other names",
     {.subjects = PATS(p_own_subj), .dns_names = PATS(p_dnsn)},
     GW_SAN_DNS,
     0,
     false,
     "",
     "DNS:www.example.com",
     NULL},
};

static void test_check_names(void **state)
{
    char err[GW_ERR_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .allowed_san_types = held[i].san_types,
                               .exclude_cn_from_sans = held[i].exclude,
                               .authz = held[i].authz};
        struct cspec spec = {held[i].subject, held[i].sans, NULL, NULL, -3600, 30 * DAY, 4242};
        X509 *cert = mkcert(&spec, keys[K_P256], ca, keys[K_CA1]);
        int fi = -1, rc;

        err[0] = '\0';
        rc = gw_policy_check_names(&role, cert, held[i].cn_in_sans, &fi, err);
        X509_free(cert);
        if ((rc == 0) != (held[i].want == NULL) || fi != (held[i].want == NULL ? 0 : NA))
            fail_msg("%s: rc %d fail_info %d err \"%s\"", held[i].name, rc, fi, err);
        check_err(held[i].name, err, held[i].want);
    }
}

/*
 * A '*' in a DNS name or CN asks for a wildcard certificate: refused unless the role allows them,
 * even where a pattern's own '*' would match it, in every spelling; allowed, only in the first label.
 */
static char *p_wild_dev[] = {"*.dev.example.com"};
static char *p_any_label[] = {"*"};
static char *p_cn_star[] = {"*"};

static const struct {
    const char *name;
    struct gw_authz authz;
    int allow;
    const char *subject, *sans;
    const char *want; /* NULL = accepted */
} wild[] = {
    {"host under a wildcard pattern",
     {.dns_names = PATS(p_wild_dev)},
     0,
     "CN=x",
     "DNS:host.dev.example.com",
     NULL},
    {"literal pattern",
     {.dns_names = PATS(p_wild_dev)},
     0,
     "CN=x",
     "DNS:*.dev.example.com",
     "=DNS name *.dev.example.com is a wildcard, which role iot does not issue "
     "(allow_wildcard_certificates): "
     "ask for each host's own name"},
    {"partial label", {.dns_names = PATS(p_wild_dev)}, 0, "CN=x", "DNS:a*.dev.example.com", "is a wildcard"},
    {"broader", {0}, 0, "CN=x", "DNS:*.example.com", "is a wildcard"},
    {"bare star", {.dns_names = PATS(p_any_label)}, 0, "CN=x", "DNS:*", "DNS name * is a wildcard"},
    {"upper case", {.dns_names = PATS(p_wild_dev)}, 0, "CN=x", "DNS:*.DEV.Example.COM", "is a wildcard"},
    {"trailing dot", {0}, 0, "CN=x", "DNS:*.dev.example.com.", "is a wildcard"},
    {"a-label", {0}, 0, "CN=x", "DNS:*.xn--bcher-kva.example", "is a wildcard"},
    {"second name", {0}, 0, "CN=x", "DNS:host.example.com,DNS:*.example.com", "is a wildcard"},
    {"cn",
     {0},
     0,
     "CN=*.dev.example.com",
     NULL,
     "common name *.dev.example.com is a wildcard, which role iot"},
    {"cn under a star pattern",
     {.common_names = PATS(p_cn_star)},
     0,
     "CN=*",
     NULL,
     "common name * is a wildcard"},
    {"cn without a star", {0}, 0, "CN=host.dev.example.com", NULL, NULL},
    {"allowed", {.dns_names = PATS(p_wild_dev)}, 1, "CN=*.dev.example.com", "DNS:*.dev.example.com", NULL},
    {"allowed, still within the patterns",
     {.dns_names = PATS(p_wild_dev)},
     1,
     "CN=x",
     "DNS:*.example.com",
     "DNS name *.example.com is not allowed on role iot"},
    {"allowed, not past the first label",
     {0},
     1,
     "CN=x",
     "DNS:host.*.example.com",
     "=DNS name host.*.example.com has a '*' that is not its whole first label: a wildcard name is \"*.\" "
     "and a "
     "domain, as in *.example.com"},
    {"allowed, not part of a label", {0}, 1, "CN=x", "DNS:a*.example.com", "not its whole first label"},
    {"allowed, two stars", {0}, 1, "CN=x", "DNS:*.*.example.com", "not its whole first label"},
    {"allowed, one label", {0}, 1, "CN=x", "DNS:*", "not its whole first label"},
    {"allowed, cn too", {0}, 1, "CN=a*.example.com", NULL, "common name a*.example.com has a '*'"},
};

static void test_check_request_wildcards(void **state)
{
    char err[GW_ERR_LEN];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(wild) / sizeof(wild[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .allowed_san_types = ALL_SANS,
                               .allow_wildcard_certificates = wild[i].allow,
                               .authz = wild[i].authz};
        struct gw_cert_plan plan;
        int fi = -1, rc;

        mkplan(&plan, wild[i].subject, wild[i].sans, K_P256, DAY);
        rc = gw_policy_check_request(&role, &plan, &fi, err);
        gw_cert_plan_cleanup(&plan);
        if ((rc == 0) != (wild[i].want == NULL) || fi != (wild[i].want == NULL ? 0 : BT))
            fail_msg("%s: rc %d fail_info %d err \"%s\"", wild[i].name, rc, fi, err);
        check_err(wild[i].name, err, wild[i].want);
    }
}

/*
 * A name with a control character is refused, whatever the role's patterns: a relying party that reads
 * a CN as a C string takes "www.bank.example\0.example.com" for www.bank.example, and without
 * allowed_common_names a CN that is no host name to OpenSSL (the NUL) would not be held to
 * allowed_dns_names at all. In the subject's emailAddress and every other attribute of a request too.
 */
static void test_check_request_control_char(void **state)
{
    static char *p_star[] = {"dev-1*"};
    static const struct {
        const char *name;
        struct gw_authz authz;
        int nid;
        const char *value;
        size_t len;
        const char *want;
    } cases[] = {
        {"nul, a cn pattern",
         {.common_names = PATS(p_star)},
         NID_commonName,
         "dev-1\0evil",
         10,
         "=common name dev-1?evil holds a control character, which no name may hold"},
        {"nul, host name outside the dns names",
         {.dns_names = PATS(p_dnsn)},
         NID_commonName,
         "www.bank.example\0.example.com",
         29,
         "=common name www.bank.example?.example.com holds a control character, which no name may hold"},
        {"line feed, any name",
         {0},
         NID_commonName,
         "dev-1\n",
         6,
         "=common name dev-1? holds a control character, which no name may hold"},
        {"delete, emailAddress",
         {0},
         NID_pkcs9_emailAddress,
         "a\x7f@example.com",
         14,
         "=subject emailAddress a?@example.com holds a control character, which no name may hold"},
        {"nul, an organization no pattern reads",
         {0},
         NID_organizationName,
         "Bank\0Evil",
         9,
         "=subject attribute O Bank?Evil holds a control character, which no name may hold"},
        {"tab, a UID",
         {0},
         NID_userId,
         "dev\t7",
         5,
         "=subject attribute UID dev?7 holds a control character, which no name may hold"},
    };
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int fi = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_role role = {.name = "iot", .allowed_san_types = ALL_SANS, .authz = cases[i].authz};

        mkplan(&plan, NULL, NULL, K_P256, DAY);
        assert_int_equal(X509_NAME_add_entry_by_NID(plan.subject, cases[i].nid, V_ASN1_IA5STRING,
                                                    (const unsigned char *)cases[i].value, (int)cases[i].len,
                                                    -1, 0),
                         1);
        if (gw_policy_check_request(&role, &plan, &fi, err) != GW_ERR_POLICY || fi != BT)
            fail_msg("%s: fail_info %d err \"%s\"", cases[i].name, fi, err);
        check_err(cases[i].name, err, cases[i].want);
        gw_cert_plan_cleanup(&plan);
    }
    assert_int_equal(gw_policy_check_request(&(struct gw_role){.name = "iot"}, NULL, &fi, err),
                     GW_ERR_POLICY);
    assert_int_equal(fi, OSSL_CMP_PKIFAILUREINFO_badRequest);
}

/*
 * A requested name with a character a reader does not see as itself is refused, whatever the role's
 * patterns and in any attribute: "bank\u200b.example" reads as bank.example, an O with U+202E as
 * another organization, to an operator or a relying party's user. The text says which character and
 * where, since the name as shown cannot. Ordinary text of any script is no such character.
 */
static void test_check_request_hidden_char(void **state)
{
    static char *p_bank[] = {"*.example"};
    static const struct {
        const char *name;
        struct gw_authz authz;
        int nid;
        const char *value;
        const char *want; /* NULL: allowed */
    } cases[] = {
        {"zero-width space in a cn its pattern matches",
         {.common_names = PATS(p_bank)},
         NID_commonName,
         "bank\xe2\x80\x8b.example",
         "=common name bank???.example holds U+200B at character 5, an invisible, format or control "
         "character, which no name may hold"},
        {"right-to-left override in an O",
         {0},
         NID_organizationName,
         "Bank \xe2\x80\xae"
         "evil",
         "=subject attribute O Bank ???evil holds U+202E at character 6, an invisible, format or control "
         "character, which no name may hold"},
        {"line separator in an OU, after a letter of two bytes",
         {0},
         NID_organizationalUnitName,
         "M\xc3\xbcller\xe2\x80\xa8"
         "x",
         "=subject attribute OU M??ller???x holds U+2028 at character 7, an invisible, format or control "
         "character, which no name may hold"},
        {"tag character in an emailAddress",
         {0},
         NID_pkcs9_emailAddress,
         "a\xf3\xa0\x80\x81@example.com",
         "=subject emailAddress a????@example.com holds U+E0001 at character 2, an invisible, format or "
         "control character, which no name may hold"},
        {"C1 control in a UID",
         {0},
         NID_userId,
         "dev\xc2\x9b"
         "7",
         "=subject attribute UID dev??7 holds U+009B at character 4, an invisible, format or control "
         "character, which no name may hold"},
        {"soft hyphen in a serialNumber",
         {0},
         NID_serialNumber,
         "\xc2\xad"
         "42",
         "=subject attribute serialNumber ??42 holds U+00AD at character 1, an invisible, format or control "
         "character, which no name may hold"},
        {"BOM in an L",
         {0},
         NID_localityName,
         "\xef\xbb\xbf"
         "Berlin",
         "=subject attribute L ???Berlin holds U+FEFF at character 1, an invisible, format or control "
         "character, which no name may hold"},
        /* the characters just outside: a narrow no-break space, U+2065, a no-break space, Cyrillic, CJK */
        {"narrow no-break space",
         {0},
         NID_organizationName,
         "Bank\xe2\x80\xaf"
         "AG",
         NULL},
        {"U+2065, unassigned", {0}, NID_organizationName, "a\xe2\x81\xa5", NULL},
        {"letters of other scripts",
         {0},
         NID_localityName,
         "M\xc3\xbcnchen \xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0 \xe6\x9d\xb1\xe4\xba\xac\xc2\xa0",
         NULL},
    };
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int fi = 0, rc;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_role role = {.name = "iot", .allowed_san_types = ALL_SANS, .authz = cases[i].authz};

        mkplan(&plan, NULL, NULL, K_P256, DAY);
        assert_int_equal(X509_NAME_add_entry_by_NID(plan.subject, cases[i].nid, V_ASN1_UTF8STRING,
                                                    (const unsigned char *)cases[i].value, -1, -1, 0),
                         1);
        rc = gw_policy_check_request(&role, &plan, &fi, err);
        if ((rc == 0) != (cases[i].want == NULL) || fi != (cases[i].want == NULL ? 0 : BT))
            fail_msg("%s: rc %d fail_info %d err \"%s\"", cases[i].name, rc, fi, err);
        if (cases[i].want != NULL)
            check_err(cases[i].name, err, cases[i].want);
        gw_cert_plan_cleanup(&plan);
    }
}

/* ---- gw_policy_check_upstream_role ---- */

static char *d_example[] = {"example.com"};
static char *d_glob[] = {"*.example.com"};
static char *u_spiffe[] = {"spiffe://example.org/*"};
static char *u_template[] = {"spiffe://example.org/{{identity.entity.name}}"};
static char *d_template[] = {"{{identity.entity.name}}.example.com", "*.{{identity.entity.name}}.example.org",
                             "example.net"};
static char *uid_dev[] = {"dev-*", "Admin"};
static char *sn_dev[] = {"SN-*"};

static const struct {
    const char *name;
    struct gw_role_policy p;
    const char *subject, *sans;
    enum key_id key;
    long to;
    const char *want;
} ur[] = {
    {"subdomain",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=a.example.com",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"deep subdomain",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=a.b.Example.COM",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"bare without allow_bare_domains",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=example.com",
     NULL,
     K_P256,
     DAY,
     "=name example.com is not allowed by the upstream role (allowed_domains: example.com; "
     "allow_subdomains)"},
    {"suffix trick",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=aexample.com",
     NULL,
     K_P256,
     DAY,
     "not allowed"},
    {"domain as a prefix",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=a.example.com",
     "DNS:a.example.com.evil.org",
     K_P256,
     DAY,
     "name a.example.com.evil.org"},
    {"wildcard",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=*.example.com",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"wildcard, allow_wildcard_certificates false",
     {PATS(d_example), .allow_subdomains = true, .no_wildcards = true, .key_type = "any"},
     "CN=*.example.com",
     NULL,
     K_P256,
     DAY,
     "name *.example.com is not allowed by the upstream role"},
    {"wildcard inside",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=a.*.example.com",
     NULL,
     K_P256,
     DAY,
     "not allowed"},
    {"bare",
     {PATS(d_example), .allow_bare_domains = true, .key_type = "any"},
     "CN=EXAMPLE.com",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"bare, no subdomains",
     {PATS(d_example), .allow_bare_domains = true, .key_type = "any"},
     "CN=a.example.com",
     NULL,
     K_P256,
     DAY,
     "not allowed"},
    {"glob crosses dots",
     {PATS(d_glob), .allow_glob_domains = true, .key_type = "any"},
     "CN=a.b.example.com",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"glob miss",
     {PATS(d_glob), .allow_glob_domains = true, .key_type = "any"},
     "CN=example.com",
     NULL,
     K_P256,
     DAY,
     "not allowed"},
    {"glob off", {PATS(d_glob), .key_type = "any"}, "CN=a.example.com", NULL, K_P256, DAY, "not allowed"},
    {"no domains", {.key_type = "any"}, "CN=a.example.com", NULL, K_P256, DAY, "allowed_domains: none"},
    {"any name", {.allow_any_name = true, .key_type = "any"}, "CN=Under_score Name", NULL, K_P256, DAY, NULL},
    {"any name, enforce_hostnames",
     {.allow_any_name = true, .enforce_hostnames = true, .key_type = "any"},
     "CN=under_score.example",
     NULL,
     K_P256,
     DAY,
     "enforce_hostnames"},
    {"any name, enforce_hostnames ok",
     {.allow_any_name = true, .enforce_hostnames = true, .key_type = "any"},
     "CN=host-1.example.",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"hostname with leading hyphen",
     {.allow_any_name = true, .enforce_hostnames = true, .key_type = "any"},
     "CN=-a.example",
     NULL,
     K_P256,
     DAY,
     "not allowed"},
    {"localhost", {.allow_localhost = true, .key_type = "any"}, "CN=localhost", NULL, K_P256, DAY, NULL},
    {"localhost off",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=localhost",
     NULL,
     K_P256,
     DAY,
     "not allowed"},
    {"email domain bare",
     {PATS(d_example), .allow_bare_domains = true, .key_type = "any"},
     "CN=x.example.com",
     "email:bob@example.com",
     K_P256,
     DAY,
     "name x.example.com"},
    {"email ok",
     {PATS(d_example), .allow_bare_domains = true, .allow_subdomains = true, .key_type = "any"},
     "CN=x.example.com",
     "email:bob@example.com",
     K_P256,
     DAY,
     NULL},
    {"email refused",
     {PATS(d_example), .allow_bare_domains = true, .key_type = "any"},
     "CN=example.com",
     "email:bob@evil.com",
     K_P256,
     DAY,
     "name bob@evil.com"},
    {"ip off",
     {PATS(d_example), .allow_bare_domains = true, .key_type = "any"},
     "CN=example.com",
     "IP:10.0.0.1",
     K_P256,
     DAY,
     "allow_ip_sans is false"},
    {"ip on",
     {PATS(d_example), .allow_bare_domains = true, .allow_ip_sans = true, .key_type = "any"},
     "CN=example.com",
     "IP:10.0.0.1",
     K_P256,
     DAY,
     NULL},
    /* Vault refuses a URI outside allowed_uri_sans (none by default): a delegate must too */
    {"uri, no allowed_uri_sans",
     {.allow_any_name = true, .key_type = "any"},
     "CN=x",
     "URI:spiffe://example.org/dev",
     K_P256,
     DAY,
     "=URI spiffe://example.org/dev is not allowed by the upstream role (allowed_uri_sans: none)"},
    {"uri within allowed_uri_sans",
     {.allow_any_name = true, .allowed_uri_sans = PATS(u_spiffe), .key_type = "any"},
     "CN=x",
     "URI:spiffe://example.org/dev/a.b",
     K_P256,
     DAY,
     NULL},
    {"uri outside allowed_uri_sans",
     {.allow_any_name = true, .allowed_uri_sans = PATS(u_spiffe), .key_type = "any"},
     "CN=x",
     "URI:spiffe://EXAMPLE.org/dev",
     K_P256,
     DAY,
     "=URI spiffe://EXAMPLE.org/dev is not allowed by the upstream role (allowed_uri_sans: "
     "spiffe://example.org/*)"},
    /* a template is filled in with the identity that calls Vault, the gateway's: it names no client */
    {"uri template",
     {.allow_any_name = true,
      .allowed_uri_sans = PATS(u_template),
      .allowed_uri_sans_template = true,
      .key_type = "any"},
     "CN=x",
     "URI:spiffe://example.org/{{identity.entity.name}}",
     K_P256,
     DAY,
     "is not allowed by the upstream role"},
    /* so is a domain template: neither its subdomains nor the name itself, nor its glob, is a client's */
    {"domain template, subdomain",
     {PATS(d_template), .allowed_domains_template = true, .allow_subdomains = true,
      .allow_bare_domains = true, .allow_glob_domains = true, .key_type = "any"},
     "CN=x.{{identity.entity.name}}.example.com",
     NULL,
     K_P256,
     DAY,
     "=name x.{{identity.entity.name}}.example.com is not allowed by the upstream role (allowed_domains: "
     "{{identity.entity.name}}.example.com, *.{{identity.entity.name}}.example.org, example.net; "
     "allow_bare_domains; allow_subdomains; allow_glob_domains)"},
    {"domain template, bare",
     {PATS(d_template), .allowed_domains_template = true, .allow_bare_domains = true, .key_type = "any"},
     "CN={{identity.entity.name}}.example.com",
     NULL,
     K_P256,
     DAY,
     "is not allowed by the upstream role"},
    {"domain template, glob",
     {PATS(d_template), .allowed_domains_template = true, .allow_glob_domains = true, .key_type = "any"},
     "CN=a.{{identity.entity.name}}.example.org",
     NULL,
     K_P256,
     DAY,
     "is not allowed by the upstream role"},
    {"domain template: the role's other domains still apply",
     {PATS(d_template), .allowed_domains_template = true, .allow_subdomains = true, .key_type = "any"},
     "CN=a.example.net",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"domain template off: a literal domain",
     {PATS(d_template), .allow_subdomains = true, .key_type = "any"},
     "CN=x.{{identity.entity.name}}.example.com",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"uri template off: a plain glob",
     {.allow_any_name = true, .allowed_uri_sans = PATS(u_template), .key_type = "any"},
     "CN=x",
     "URI:spiffe://example.org/{{identity.entity.name}}",
     K_P256,
     DAY,
     NULL},
    {"ec 256", {.allow_any_name = true, .key_type = "ec", .key_bits = 256}, "CN=x", NULL, K_P256, DAY, NULL},
    {"ec 256 vs P-384",
     {.allow_any_name = true, .key_type = "ec", .key_bits = 256},
     "CN=x",
     NULL,
     K_P384,
     DAY,
     "=key ec:P-384 is not allowed by the upstream role (key_type ec, key_bits 256)"},
    {"ec 224 vs P-224",
     {.allow_any_name = true, .key_type = "ec", .key_bits = 224},
     "CN=x",
     NULL,
     K_P224,
     DAY,
     NULL},
    {"ec 0 vs P-224", {.allow_any_name = true, .key_type = "ec"}, "CN=x", NULL, K_P224, DAY, "not allowed"},
    {"ec 255 names no curve",
     {.allow_any_name = true, .key_type = "ec", .key_bits = 255},
     "CN=x",
     NULL,
     K_P256,
     DAY,
     "not allowed"},
    {"ec vs rsa",
     {.allow_any_name = true, .key_type = "ec", .key_bits = 256},
     "CN=x",
     NULL,
     K_RSA2048,
     DAY,
     "key rsa:2048"},
    {"rsa 2048",
     {.allow_any_name = true, .key_type = "rsa", .key_bits = 2048},
     "CN=x",
     NULL,
     K_RSA2048,
     DAY,
     NULL},
    {"rsa 1024",
     {.allow_any_name = true, .key_type = "rsa", .key_bits = 2048},
     "CN=x",
     NULL,
     K_RSA1024,
     DAY,
     "key rsa:1024"},
    {"rsa 0 vs 1024",
     {.allow_any_name = true, .key_type = "rsa"},
     "CN=x",
     NULL,
     K_RSA1024,
     DAY,
     "key rsa:1024"},
    {"ed25519", {.allow_any_name = true, .key_type = "ed25519"}, "CN=x", NULL, K_ED25519, DAY, NULL},
    {"ed25519 vs ec",
     {.allow_any_name = true, .key_type = "ed25519"},
     "CN=x",
     NULL,
     K_P256,
     DAY,
     "not allowed"},
    {"any key", {.allow_any_name = true, .key_type = "any"}, "CN=x", NULL, K_RSA1024, DAY, NULL},
    {"no key_type", {.allow_any_name = true}, "CN=x", NULL, K_P256, DAY, "key_type ,"},
    {"unknown key_type",
     {.allow_any_name = true, .key_type = "dsa"},
     "CN=x",
     NULL,
     K_P256,
     DAY,
     "key_type dsa"},
    /* Vault's validateCommonName: cn_validations names the kinds of CN, none listed takes either */
    {"cn_validations email vs a hostname",
     {PATS(d_example), .allow_subdomains = true, .cn_validations = GW_CN_EMAIL, .key_type = "any"},
     "CN=a.example.com",
     NULL,
     K_P256,
     DAY,
     "=common name a.example.com is a hostname, which the upstream role does not take (cn_validations: "
     "email)"},
    {"cn_validations hostname vs an email",
     {PATS(d_example), .allow_bare_domains = true, .cn_validations = GW_CN_HOSTNAME, .key_type = "any"},
     "CN=bob@example.com",
     NULL,
     K_P256,
     DAY,
     "is an email address, which the upstream role does not take (cn_validations: hostname)"},
    {"cn_validations both",
     {PATS(d_example), .allow_bare_domains = true, .cn_validations = GW_CN_EMAIL | GW_CN_HOSTNAME,
      .key_type = "any"},
     "CN=bob@example.com",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"cn_validations email, an email outside",
     {PATS(d_example), .allow_bare_domains = true, .cn_validations = GW_CN_EMAIL, .key_type = "any"},
     "CN=bob@evil.com",
     NULL,
     K_P256,
     DAY,
     "name bob@evil.com is not allowed by the upstream role"},
    /* Go keeps a request's last CN: the one Vault checks and writes */
    {"last CN outside",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=a.example.com|CN=evil.org",
     NULL,
     K_P256,
     DAY,
     "name evil.org is not allowed"},
    {"an earlier CN is not taken",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "CN=evil.org|CN=a.example.com",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"require_cn, no CN",
     {PATS(d_example), .allow_subdomains = true, .key_type = "any"},
     "O=x",
     "DNS:a.example.com",
     K_P256,
     DAY,
     "=the upstream role requires a common name (require_cn) and the request has none"},
    {"no CN, require_cn false",
     {PATS(d_example), .allow_subdomains = true, .cn_optional = true, .key_type = "any"},
     "O=x",
     "DNS:a.example.com",
     K_P256,
     DAY,
     NULL},
    {"use_csr_common_name false, require_cn",
     {PATS(d_example), .allow_subdomains = true, .no_csr_common_name = true, .key_type = "any"},
     "CN=a.example.com",
     NULL,
     K_P256,
     DAY,
     "=the upstream role requires a common name (require_cn) and takes none from a request "
     "(use_csr_common_name is false)"},
    {"use_csr_common_name false: the CN is not taken, nor checked",
     {PATS(d_example), .allow_subdomains = true, .no_csr_common_name = true, .cn_optional = true,
      .key_type = "any"},
     "CN=evil.org",
     NULL,
     K_P256,
     DAY,
     NULL},
    /* Vault takes a request's UIDs into the subject, each within allowed_user_ids (none: none) */
    {"UID, no allowed_user_ids",
     {.allow_any_name = true, .key_type = "any"},
     "CN=x|UID=dev-1",
     NULL,
     K_P256,
     DAY,
     "=user ID dev-1 is not allowed by the upstream role (allowed_user_ids: none)"},
    {"UID glob",
     {.allow_any_name = true, .allowed_user_ids = PATS(uid_dev), .key_type = "any"},
     "CN=x|UID=dev-1|UID=ADMIN",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"UID glob counts case",
     {.allow_any_name = true, .allowed_user_ids = PATS(uid_dev), .key_type = "any"},
     "CN=x|UID=DEV-1",
     NULL,
     K_P256,
     DAY,
     "=user ID DEV-1 is not allowed by the upstream role (allowed_user_ids: dev-*, Admin)"},
    {"serialNumber, no allowed_serial_numbers",
     {.allow_any_name = true, .key_type = "any"},
     "CN=x|serialNumber=SN-1",
     NULL,
     K_P256,
     DAY,
     "=serialNumber SN-1 is not allowed by the upstream role (allowed_serial_numbers: none)"},
    {"serialNumber glob",
     {.allow_any_name = true, .allowed_serial_numbers = PATS(sn_dev), .key_type = "any"},
     "CN=x|serialNumber=SN-1",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"serialNumber, serial_number_source json",
     {.allow_any_name = true, .serial_from_json = true, .key_type = "any"},
     "CN=x|serialNumber=SN-1",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"max_ttl exact",
     {.allow_any_name = true, .key_type = "any", .max_ttl = DAY},
     "CN=x",
     NULL,
     K_P256,
     DAY,
     NULL},
    {"max_ttl exceeded",
     {.allow_any_name = true, .key_type = "any", .max_ttl = DAY},
     "CN=x",
     NULL,
     K_P256,
     DAY + 1,
     "=the validity asked for (until 2030-03-18T17:46:41Z, 86401s) exceeds the upstream role's max_ttl of "
     "1d; ask "
     "for a shorter one"},
    /* none set: Vault caps at the mount's max lease TTL, whose default (768h) the delegate holds to */
    {"max_ttl none, 768h", {.allow_any_name = true, .key_type = "any"}, "CN=x", NULL, K_P256, 32 * DAY, NULL},
    {"max_ttl none, beyond 768h",
     {.allow_any_name = true, .key_type = "any"},
     "CN=x",
     NULL,
     K_P256,
     32 * DAY + 1,
     "=the validity asked for (until 2030-04-18T17:46:41Z, 2764801s) exceeds the upstream role's max_ttl of "
     "32d "
     "(it sets none: Vault's default max lease TTL); ask for a shorter one"},
    /* not_after: no certificate of the role ends later, whatever max_ttl allows */
    {"not_after exact",
     {.allow_any_name = true, .key_type = "any", .max_ttl = 30 * DAY, .not_after = NOW + 2 * DAY},
     "CN=x",
     NULL,
     K_P256,
     2 * DAY,
     NULL},
    {"not_after exceeded",
     {.allow_any_name = true, .key_type = "any", .max_ttl = 30 * DAY, .not_after = NOW + 2 * DAY},
     "CN=x",
     NULL,
     K_P256,
     2 * DAY + 1,
     "=the validity asked for (until 2030-03-19T17:46:41Z) ends after the upstream role's not_after of "
     "2030-03-19T17:46:40Z; ask for a shorter one"},
    {"not_after in the past",
     {.allow_any_name = true, .key_type = "any", .not_after = NOW - DAY},
     "CN=x",
     NULL,
     K_P256,
     DAY,
     "ends after the upstream role's not_after of 2030-03-16T17:46:40Z"},
};

/* A plan of |subject| and |sans| checked against |p| for |role|: refused with |want|, or not (NULL). */
static void check_upstream_row(const char *name, const struct gw_role *role, const struct gw_role_policy *p,
                               const char *subject, const char *sans, enum key_id key, long to,
                               const char *want)
{
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int fi = -1, rc;

    mkplan(&plan, subject, sans, key, to);
    rc = gw_policy_check_upstream_role(role, p, &plan, NOW, NULL, &fi, err);
    gw_cert_plan_cleanup(&plan);
    if ((rc == 0) != (want == NULL) || fi != (want == NULL ? 0 : BT))
        fail_msg("%s: rc %d fail_info %d err \"%s\"", name, rc, fi, err);
    check_err(name, err, want);
}

static void test_upstream_role(void **state)
{
    /* the gateway's role lets the upstream role's rules decide (a wildcard CN is a wildcard DNS name) */
    const struct gw_role role = {
        .name = "iot", .allowed_san_types = ALL_SANS, .allow_wildcard_certificates = true};

    (void)state;
    for (size_t i = 0; i < sizeof(ur) / sizeof(ur[0]); i++)
        check_upstream_row(ur[i].name, &role, &ur[i].p, ur[i].subject, ur[i].sans, ur[i].key, ur[i].to,
                           ur[i].want);
}

/* cn_validations "disabled": the CN is checked only as the subjectAltName Vault copies it into. */
static void test_upstream_role_cn_disabled(void **state)
{
    static const struct {
        const char *cn;
        bool exclude;
        const char *want;
    } rows[] = {
        {"CN=Device 42", false, NULL},
        {"CN=a.evil.org", false, "name a.evil.org is not allowed by the upstream role"},
        {"CN=*.evil.org", false, "name *.evil.org is not allowed by the upstream role"},
        {"CN=bob@evil.org", false, "name bob@evil.org is not allowed by the upstream role"},
        {"CN=a.evil.org", true, NULL},
    };
    const struct gw_role_policy p = {PATS(d_example), .allow_subdomains = true,
                                     .cn_validations = GW_CN_DISABLED, .key_type = "any"};

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct gw_role role = {.name = "iot", .exclude_cn_from_sans = rows[i].exclude};

        check_upstream_row(rows[i].cn, &role, &p, rows[i].cn, NULL, K_P256, DAY, rows[i].want);
    }
}

static struct gw_patterns *role_values(struct gw_role_policy *p, const char *key)
{
    for (size_t a = 0; a < GW_UPSTREAM_SUBJECT_ATTRS; a++)
        if (strcmp(gw_upstream_subject_attrs[a].key, key) == 0)
            return &p->subject_values[a];
    fail_msg("no subject attribute %s", key);
    return NULL;
}

static char *name_line(const X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s, *out;
    long len;

    assert_non_null(b);
    assert_true(X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0);
    len = BIO_get_mem_data(b, &s);
    out = strndup(s, (size_t)len);
    BIO_free(b);
    return out;
}

/*
 * The subject a delegate issues is the one Vault's sign/<role> writes: the role's own attributes (in
 * Go's order, several values of one in one RDN), the request's last CN, its serialNumber and UIDs;
 * not the request's O, OU, C or emailAddress. The result check takes that certificate and refuses one
 * that carries the request's O in place of the role's.
 */
static void test_upstream_subject(void **state)
{
    static char *o[] = {"Role Org"}, *ou[] = {"b", "a", "b"}, *c[] = {"DE"}, *bad_c[] = {"DEU"},
                *ctl_o[] = {"Role\nOrg"}, *zw_ou[] = {"Ops\xe2\x80\x8b"};
    static const struct cspec spec = {"", NULL, NULL, "critical,digitalSignature", -60, 7 * DAY, 0};
    struct gw_role role = {.name = "iot",
                           .upstream_name = "vault",
                           .key_usage = KU_DIGITAL_SIGNATURE,
                           .ext_key_usage = GW_EKU_CLIENT_AUTH,
                           .allowed_san_types = GW_SAN_DNS,
                           .max_ttl = 30 * DAY};
    struct gw_role_policy p = {.allow_any_name = true,
                               .allowed_user_ids = PATS(uid_dev),
                               .allowed_serial_numbers = PATS(sn_dev),
                               .key_type = "any"};
    struct gw_cert_plan plan;
    struct gw_upstream_names names = {NULL, NULL, 0, 0};
    char err[GW_ERR_LEN], *line;
    X509 *cert;
    int fi = -1;

    (void)state;
    *role_values(&p, "organization") = (struct gw_patterns)PATS(o);
    *role_values(&p, "ou") = (struct gw_patterns)PATS(ou);
    *role_values(&p, "country") = (struct gw_patterns)PATS(c);
    /* the usages it grants every certificate, but a CA's: the delegate writes them, not the role's */
    p.key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_CERT_SIGN | KU_CRL_SIGN;
    p.ext_key_usage = GW_EKU_CLIENT_AUTH;
    role.ext_key_usage |= GW_EKU_SERVER_AUTH;
    mkplan(&plan,
           "C=US|O=Client Org|OU=x|CN=first.example|CN=dev.example.com|serialNumber=SN-1|UID=dev-1|"
           "emailAddress=x@example.com",
           NULL, K_P256, DAY);
    assert_int_equal(gw_policy_check_upstream_role(&role, &p, &plan, NOW, &names, &fi, err), 0);
    assert_int_equal(fi, 0);
    assert_int_equal(names.key_usage, KU_DIGITAL_SIGNATURE);
    assert_int_equal(names.ext_key_usage, GW_EKU_CLIENT_AUTH);
    role.ext_key_usage = GW_EKU_CLIENT_AUTH;
    assert_non_null(names.subject);
    assert_int_equal(sk_GENERAL_NAME_num(names.sans), 1); /* the CN, as test_upstream_cn_san checks */
    GENERAL_NAMES_free(names.sans);
    line = name_line(names.subject);
    assert_string_equal(line, "UID=dev-1,serialNumber=SN-1,CN=dev.example.com,OU=b+OU=a,O=Role Org,C=DE");
    free(line);

    /* what the delegate issues from that subject passes; the client's O in place of the role's does not */
    X509_NAME_free(plan.subject);
    plan.subject = names.subject;
    cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
    assert_int_equal(X509_set_subject_name(cert, names.subject), 1);
    assert_true(X509_sign(cert, keys[K_CA3], EVP_sha256()) > 0);
    if (gw_policy_check_issued(&role, &plan, cert, NULL, st_issuer_int, NULL, NOW, NULL, err) != GW_ISSUED_OK)
        fail_msg("the delegate's subject: %s", err);
    X509_free(cert);
    cert = mkcert_ext(&(struct cspec){"C=DE|O=Client Org|CN=dev.example.com", NULL, NULL,
                                      "critical,digitalSignature", -60, 7 * DAY, 0},
                      "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
    assert_int_equal(gw_policy_check_issued(&role, &plan, cert, NULL, st_issuer_int, NULL, NOW, NULL, err),
                     GW_ISSUED_OUTSIDE_POLICY);
    check_err("client's O", err, "the CA changed the subject to /C=DE/O=Client Org/CN=dev.example.com");
    X509_free(cert);

    /* serial_number_source json: Vault drops the request's serialNumber */
    p.serial_from_json = true;
    assert_int_equal(gw_policy_check_upstream_role(&role, &p, &plan, NOW, &names, &fi, err), 0);
    line = name_line(names.subject);
    assert_string_equal(line, "UID=dev-1,CN=dev.example.com,OU=b+OU=a,O=Role Org,C=DE");
    free(line);
    X509_NAME_free(names.subject);
    GENERAL_NAMES_free(names.sans);

    /* a role value OpenSSL cannot write is the operator's to fix, not the client's */
    *role_values(&p, "country") = (struct gw_patterns)PATS(bad_c);
    names.subject = NULL;
    assert_int_equal(gw_policy_check_upstream_role(&role, &p, &plan, NOW, &names, &fi, err), GW_ERR_POLICY);
    assert_int_equal(fi, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_null(names.subject);
    check_err("country DEU", err, "=the upstream role's country DEU cannot be written into a certificate");

    /* nor one holding a control byte, which no requested attribute may hold either: the upstream's
       answer decides what the delegate signs */
    *role_values(&p, "country") = (struct gw_patterns)PATS(c);
    *role_values(&p, "organization") = (struct gw_patterns)PATS(ctl_o);
    names.subject = NULL;
    assert_int_equal(gw_policy_check_upstream_role(&role, &p, &plan, NOW, &names, &fi, err), GW_ERR_POLICY);
    assert_int_equal(fi, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_null(names.subject);
    check_err("organization with a newline", err,
              "=the upstream role's organization Role?Org cannot be written into a certificate");

    /* nor one holding an invisible character (here U+200B), refused in a requested name too */
    *role_values(&p, "organization") = (struct gw_patterns)PATS(o);
    *role_values(&p, "ou") = (struct gw_patterns)PATS(zw_ou);
    names.subject = NULL;
    assert_int_equal(gw_policy_check_upstream_role(&role, &p, &plan, NOW, &names, &fi, err), GW_ERR_POLICY);
    assert_int_equal(fi, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_null(names.subject);
    check_err("ou with a zero-width space", err,
              "=the upstream role's ou Ops??? cannot be written into a certificate");
    gw_cert_plan_cleanup(&plan);
}

/* |sans| as "DNS:a, email:b" (GENERAL_NAME_print), "-" for none. */
static char *sans_line(const GENERAL_NAMES *sans)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s, *out;
    long len;

    assert_non_null(b);
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        assert_true(i == 0 || BIO_puts(b, ", ") > 0);
        assert_int_equal(GENERAL_NAME_print(b, sk_GENERAL_NAME_value(sans, i)), 1);
    }
    if (sans == NULL)
        assert_true(BIO_puts(b, "-") > 0);
    len = BIO_get_mem_data(b, &s);
    out = strndup(s, (size_t)len);
    BIO_free(b);
    return out;
}

static char *cn_dns[] = {"*.example.com"};

/*
 * Vault adds the common name to the SANs unless exclude_cn_from_sans: an email address as an email
 * SAN, a hostname as a DNS name, anything else not at all. The delegate adds it as well, once, where
 * the role's patterns allow it; the client's SANs stay.
 */
static void test_upstream_cn_san(void **state)
{
    static const struct {
        const char *name, *subject, *sans;
        bool exclude, own_patterns, no_csr_cn;
        const char *want_sans, *want_err;
    } rows[] = {
        {"hostname", "O=x|CN=dev.example.com", NULL, false, false, false, "DNS:dev.example.com", NULL},
        {"after the client's", "CN=dev.example.com", "DNS:a.example.com,IP:10.0.0.1", false, false, false,
         "DNS:a.example.com, IP Address:10.0.0.1, DNS:dev.example.com", NULL},
        {"the last CN", "CN=a.example.com|CN=b.example.com", NULL, false, false, false, "DNS:b.example.com",
         NULL},
        {"email address", "CN=bob@example.com", NULL, false, false, false, "email:bob@example.com", NULL},
        {"already asked for, in another case", "CN=Dev.Example.com", "DNS:dev.example.COM", false, false,
         false, "-", NULL},
        {"an email SAN is no DNS name", "CN=dev.example.com", "email:dev.example.com", false, false, false,
         "email:dev.example.com, DNS:dev.example.com", NULL},
        {"no hostname", "CN=Device 42", NULL, false, false, false, "-", NULL},
        {"exclude_cn_from_sans", "CN=dev.example.com", NULL, true, false, false, "-", NULL},
        {"use_csr_common_name false", "CN=dev.example.com", NULL, false, false, true, "-", NULL},
        {"role's DNS patterns", "CN=dev.example.com", NULL, false, true, false, "DNS:dev.example.com", NULL},
        {"outside the role's DNS patterns", "CN=dev.example.org", NULL, false, true, false, NULL,
         "=DNS name dev.example.org is not allowed on role iot (allowed: *.example.com) (the CN, which the "
         "upstream role adds as a subjectAltName unless exclude_cn_from_sans)"},
        {"email address not ASCII",
         "CN=b\xc3\xb6"
         "b@example.com",
         NULL, false, false, false, NULL,
         "=common name b??b@example.com cannot be the email subjectAltName the upstream role adds for it: it "
         "is not ASCII"},
    };
    const struct gw_role_policy base = {
        .allow_any_name = true, .allow_ip_sans = true, .key_type = "any", .cn_optional = true};

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .allowed_san_types = GW_SAN_DNS | GW_SAN_EMAIL,
                               .exclude_cn_from_sans = rows[i].exclude};
        struct gw_role_policy p = base;
        struct gw_upstream_names names = {NULL, NULL, 0, 0};
        struct gw_cert_plan plan;
        char err[GW_ERR_LEN], *line;
        int fi = -1, rc;

        if (rows[i].own_patterns)
            role.authz.dns_names = (struct gw_patterns)PATS(cn_dns);
        p.no_csr_common_name = rows[i].no_csr_cn;
        mkplan(&plan, rows[i].subject, rows[i].sans, K_P256, DAY);
        rc = gw_policy_check_upstream_role(&role, &p, &plan, NOW, &names, &fi, err);
        if ((rc == 0) != (rows[i].want_err == NULL) || fi != (rc == 0 ? 0 : BT))
            fail_msg("%s: rc %d fail_info %d err \"%s\"", rows[i].name, rc, fi, err);
        check_err(rows[i].name, err, rows[i].want_err);
        if (rc == 0) {
            line = sans_line(names.sans);
            if (strcmp(line, rows[i].want_sans) != 0)
                fail_msg("%s: SANs %s, want %s", rows[i].name, line, rows[i].want_sans);
            free(line);
        } else {
            assert_null(names.subject);
            assert_null(names.sans);
        }
        X509_NAME_free(names.subject);
        GENERAL_NAMES_free(names.sans);
        gw_cert_plan_cleanup(&plan);
    }
}

/*
 * A common name Vault would copy into the SANs (unless exclude_cn_from_sans) is refused before the
 * upstream signs where its type is not in the role's allowed_san_types: an email CN on a role without
 * email SANs would else come back with one (refused and revoked). The same for a delegate, which
 * adds it as Vault does. The type the role allows, the copy passes; a CN that is neither an email
 * address nor a hostname is not copied, and one the request lists already is checked as its SAN.
 */
static void test_cn_copy_san_type(void **state)
{
    static const struct {
        const char *name, *subject, *sans;
        unsigned types;
        bool exclude;
        const char *want_err;
    } rows[] = {
        {"hostname, DNS allowed", "CN=dev.example.com", NULL, GW_SAN_DNS, false, NULL},
        {"hostname, DNS not allowed", "CN=dev.example.com", NULL, GW_SAN_EMAIL | GW_SAN_IP, false,
         "=common name dev.example.com would become a DNS subjectAltName (the CA adds it), a type role iot "
         "does "
         "not allow: set exclude_cn_from_sans on the role, or \"dns\" in its allowed_san_types"},
        {"email address, email allowed", "CN=someone@example.com", NULL, GW_SAN_EMAIL, false, NULL},
        {"email address, email not allowed", "CN=someone@example.com", NULL, GW_SAN_DNS, false,
         "=common name someone@example.com would become an email subjectAltName (the CA adds it), a type "
         "role "
         "iot does not allow: set exclude_cn_from_sans on the role, or \"email\" in its allowed_san_types"},
        {"email address, no SAN type at all", "CN=someone@example.com", NULL, 0, false,
         "would become an email subjectAltName"},
        {"email address, exclude_cn_from_sans", "CN=someone@example.com", NULL, GW_SAN_DNS, true, NULL},
        /* a copy that is no address is refused as any email subjectAltName of a certificate is */
        {"email address, nothing before its '@'", "CN=@example.com", NULL, GW_SAN_EMAIL, false,
         "email address @example.com has nothing before its '@': an email address is local-part@domain (the "
         "CN"},
        {"email address, nothing after its '@', excluded", "CN=someone@", NULL, GW_SAN_EMAIL, true, NULL},
        {"the last CN is the one copied", "CN=someone@example.com|CN=dev.example.com", NULL, GW_SAN_DNS,
         false, NULL},
        {"the last CN is the one copied, an email", "CN=dev.example.com|CN=someone@example.com", NULL,
         GW_SAN_DNS, false, "would become an email subjectAltName"},
        {"not a hostname: not copied", "CN=Device 42", NULL, 0, false, NULL},
        {"listed already: checked as the request's", "CN=dev.example.com", "DNS:dev.example.com", 0, false,
         NULL},
    };
    const struct gw_role_policy p = {
        .allow_any_name = true, .allow_ip_sans = true, .key_type = "any", .cn_optional = true};

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct gw_role role = {
            .name = "iot", .allowed_san_types = rows[i].types, .exclude_cn_from_sans = rows[i].exclude};
        struct gw_cert_plan plan;
        char err[GW_ERR_LEN];
        int fi = -1, rc;

        mkplan(&plan, rows[i].subject, rows[i].sans, K_P256, DAY);
        rc = gw_policy_check_cn_copy(&role, &plan, &fi, err);
        if ((rc == 0) != (rows[i].want_err == NULL) || (rc != 0 && fi != BT))
            fail_msg("%s: rc %d fail_info %d err \"%s\"", rows[i].name, rc, fi, err);
        check_err(rows[i].name, err, rows[i].want_err);
        gw_cert_plan_cleanup(&plan);
        check_upstream_row(rows[i].name, &role, &p, rows[i].subject, rows[i].sans, K_P256, DAY,
                           rows[i].want_err);
    }
}

/*
 * The result check takes the delegate's certificate, which carries the CN it added to the plan's SANs,
 * as planned; a name beyond it is still one the request did not ask for.
 */
static void test_upstream_cn_san_issued(void **state)
{
    static const struct cspec spec = {
        "CN=dev.example.com", "DNS:dev.example.com", NULL, "critical,digitalSignature", -60, 7 * DAY, 0};
    static const struct cspec more = {"CN=dev.example.com",
                                      "DNS:dev.example.com,DNS:other.example.com",
                                      NULL,
                                      "critical,digitalSignature",
                                      -60,
                                      7 * DAY,
                                      0};
    const struct gw_role role = {.name = "iot",
                                 .upstream_name = "vault",
                                 .key_usage = KU_DIGITAL_SIGNATURE,
                                 .ext_key_usage = GW_EKU_CLIENT_AUTH,
                                 .max_ttl = 30 * DAY,
                                 .allowed_san_types = GW_SAN_DNS};
    const struct gw_role_policy p = {.allow_any_name = true, .key_type = "any"};
    struct gw_upstream_names names = {NULL, NULL, 0, 0};
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    X509 *cert;
    int fi = -1;

    (void)state;
    mkplan(&plan, "CN=dev.example.com", NULL, K_P256, 7 * DAY);
    assert_int_equal(gw_policy_check_upstream_role(&role, &p, &plan, NOW, &names, &fi, err), 0);
    X509_NAME_free(plan.subject);
    plan.subject = names.subject;
    plan.sans = names.sans;
    cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
    if (gw_policy_check_issued(&role, &plan, cert, NULL, st_issuer_int, NULL, NOW, NULL, err) != GW_ISSUED_OK)
        fail_msg("the delegate's SANs: %s", err);
    X509_free(cert);
    cert = mkcert_ext(&more, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
    assert_int_equal(gw_policy_check_issued(&role, &plan, cert, NULL, st_issuer_int, NULL, NOW, NULL, err),
                     GW_ISSUED_OUTSIDE_POLICY);
    check_err("a name beyond the CN", err,
              "=the CA added DNS name other.example.com, which the request did not ask for");
    X509_free(cert);
    gw_cert_plan_cleanup(&plan);
}

/* ---- gw_policy_check_issued ---- */

static char *i_dns[] = {"*.example.com"};

enum issuer_id { I_INT, I_OTHER };

/*
 * A row's certificate carries its spec.ku, else the role's usages as a CA in line with the role puts
 * them in (test_check_issued_exts judges usages); NO_USAGES: neither keyUsage nor extendedKeyUsage.
 */
#define NO_USAGES ""
enum store_sel { ST_INT, ST_ROOT, ST_OTHER, ST_NULL };

static const struct {
    const char *name;
    struct cspec spec; /* what the upstream returned */
    enum key_id key;   /* its public key (the plan's is K_P256) */
    enum issuer_id issuer;
    enum store_sel store;
    int with_chain;
    const char *plan_sans;
    bool exclude_cn;
    unsigned san_types;
    enum gw_issued_verdict want;
    const char *want_err;
} iss[] = {
    {"as planned",
     {"CN=dev-1.example.com", "DNS:a.example.com,DNS:b.example.com", "CA:FALSE", "critical,digitalSignature",
      -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     "DNS:a.example.com,DNS:b.example.com",
     false,
     ALL_SANS,
     GW_ISSUED_OK,
     "="},
    {"reordered SANs",
     {"CN=dev-1.example.com", "DNS:b.example.com,DNS:a.example.com", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     "DNS:a.example.com,DNS:b.example.com",
     false,
     ALL_SANS,
     GW_ISSUED_OK,
     "="},
    {"via root and chain",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_ROOT,
     1,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OK,
     "="},
    {"via root, chain missing",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_ROOT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_BAD,
     "does not chain to a trusted CA"},
    {"wrong key",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -60, 7 * DAY, 0},
     K_P256B,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_BAD,
     "=the upstream returned a certificate for another public key than requested"},
    {"another CA",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_OTHER,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_BAD,
     "=the certificate upstream vault returned does not chain to a trusted CA "
     "(issuer_ca)"},
    {"no issuer store",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_NULL,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_BAD,
     "has no issuer_ca"},
    {"already expired",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -2 * DAY, -DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_BAD,
     "has expired"},
    {"CA:TRUE",
     {"CN=dev-1.example.com", NULL, "critical,CA:TRUE", "critical,digitalSignature,keyCertSign", -60, 7 * DAY,
      0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "=the upstream returned a CA certificate (basicConstraints cA TRUE); role iot issues end-entity "
     "certificates "
     "only"},
    /* the issuer store is X509_STRICT; these must still come out as outside policy, to be revoked */
    {"CA:TRUE, no keyUsage",
     {"CN=dev-1.example.com", NULL, "critical,CA:TRUE", NO_USAGES, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "a CA certificate"},
    {"CA:TRUE, not critical",
     {"CN=dev-1.example.com", NULL, "CA:TRUE", "digitalSignature", -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "a CA certificate"},
    {"keyCertSign",
     {"CN=dev-1.example.com", NULL, NULL, "critical,digitalSignature,keyCertSign", -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "keyCertSign or cRLSign"},
    {"cRLSign",
     {"CN=dev-1.example.com", NULL, NULL, "cRLSign", -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "keyCertSign or cRLSign"},
    {"SAN outside",
     {"CN=dev-1.example.com", "DNS:a.example.com,DNS:evil.org", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     "DNS:a.example.com",
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "=the upstream's certificate is outside role policy: DNS name evil.org is not allowed on role iot "
     "(allowed: "
     "*.example.com)"},
    {"SAN type outside",
     {"CN=dev-1.example.com", "URI:urn:x", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     GW_SAN_DNS,
     GW_ISSUED_OUTSIDE_POLICY,
     "type URI is not allowed"},
    {"too long",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -60, 60 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "beyond role iot's max_ttl of 30d"},
    {"within slack",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -60, 30 * DAY + 60, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OK,
     "="},
    {"subject rewritten",
     {"O=cfssl|CN=dev-1.example.com", NULL, NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "=the CA changed the subject to /O=cfssl/CN=dev-1.example.com, which the request did not ask for"},
    {"SAN dropped",
     {"CN=dev-1.example.com", "DNS:a.example.com", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     "DNS:a.example.com,DNS:b.example.com",
     false,
     ALL_SANS,
     GW_ISSUED_MODIFIED,
     "changed the subjectAltNames"},
    /* within the role's patterns, but nobody asked for it: the requester may not own the name */
    {"SAN added",
     {"CN=dev-1.example.com", "DNS:a.example.com,DNS:c.example.com", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     "DNS:a.example.com",
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "=the CA added DNS name c.example.com, which the request did not ask for"},
    {"IP SAN added",
     {"CN=dev-1.example.com", "DNS:a.example.com,IP:10.1.2.3", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     "DNS:a.example.com",
     false,
     ALL_SANS,
     GW_ISSUED_OUTSIDE_POLICY,
     "=the CA added IP address 10.1.2.3, which the request did not ask for"},
    /* a CN the CA made up is refused, and brings no name of its own past the SAN checks */
    {"CN copy of a rewritten subject",
     {"O=cfssl|CN=dev-2.example.com", "DNS:dev-2.example.com", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     0,
     GW_ISSUED_OUTSIDE_POLICY,
     "=the CA changed the subject to /O=cfssl/CN=dev-2.example.com, which the request did not ask for"},
    {"CN copied to SANs (Vault)",
     {"CN=dev-1.example.com", "DNS:DEV-1.example.com", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     GW_SAN_DNS,
     GW_ISSUED_OK,
     "="},
    /* gw_policy_check_cn_copy refuses such a request: one the CA signed anyway is outside the role */
    {"CN copied to SANs of a type the role does not allow",
     {"CN=dev-1.example.com", "DNS:dev-1.example.com", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     GW_SAN_EMAIL,
     GW_ISSUED_OUTSIDE_POLICY,
     "=the upstream's certificate is outside role policy: subjectAltName type DNS name is not allowed on "
     "role iot"},
    {"CN copied despite exclude_cn_from_sans",
     {"CN=dev-1.example.com", "DNS:dev-1.example.com", NULL, NULL, -60, 7 * DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     true,
     GW_SAN_DNS,
     GW_ISSUED_MODIFIED,
     "subjectAltNames"},
    {"validity cut",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -60, DAY, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_MODIFIED,
     "=the upstream shortened the validity to 2030-03-18T17:46:40Z (planned: "
     "2030-03-24T17:46:40Z)"},
    {"validity a bit short",
     {"CN=dev-1.example.com", NULL, NULL, NULL, -60, 7 * DAY - 120, 0},
     K_P256,
     I_INT,
     ST_INT,
     0,
     NULL,
     false,
     ALL_SANS,
     GW_ISSUED_OK,
     "="},
};

static void test_check_issued(void **state)
{
    X509_STORE *stores[] = {
        [ST_INT] = st_issuer_int, [ST_ROOT] = st_issuer_root, [ST_OTHER] = st_other, [ST_NULL] = NULL};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(iss) / sizeof(iss[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .upstream_name = "vault",
                               .key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT,
                               .ext_key_usage = GW_EKU_CLIENT_AUTH,
                               .max_ttl = 30 * DAY,
                               .allowed_san_types = iss[i].san_types,
                               .exclude_cn_from_sans = iss[i].exclude_cn,
                               .authz = {.dns_names = PATS(i_dns)}};
        struct cspec spec = iss[i].spec;
        bool bare = spec.ku != NULL && strcmp(spec.ku, NO_USAGES) == 0;
        struct gw_cert_plan plan;
        X509 *cert;

        spec.ku = bare ? NULL : spec.ku != NULL ? spec.ku : "critical,digitalSignature";
        cert = mkcert_ext(&spec, bare ? NULL : "clientAuth", NULL, keys[iss[i].key],
                          iss[i].issuer == I_INT ? int_ca : other_ca,
                          keys[iss[i].issuer == I_INT ? K_CA3 : K_CA2]);
        mkplan(&plan, "CN=dev-1.example.com", iss[i].plan_sans, K_P256, 7 * DAY);
        check_issued_at(iss[i].name, &role, &plan, cert, iss[i].with_chain ? chain_int : NULL,
                        stores[iss[i].store], NOW, iss[i].want, iss[i].want_err);
    }
}

/*
 * A URI SAN the upstream signed as asked is held to the role's URI patterns as a request is: a '*' is one
 * host label or path segment, so a URI whose host a URL parser ends early is outside the role. Without
 * patterns, one a request could not hold (gw_cert_uri_why) is outside it all the same.
 */
static char *i_uri[] = {"https://*.example.com/*", "spiffe://example.org/ns/*/sa/*"};

static void test_check_issued_uri(void **state)
{
    static const struct {
        const char *name;
        int any; /* the role has no allowed_uris */
        const char *san;
        enum gw_issued_verdict want;
        const char *want_err;
    } t[] = {
        {"a host label", 0, "URI:https://dev-1.example.com/x", GW_ISSUED_OK, "="},
        {"a path segment", 0, "URI:spiffe://example.org/ns/a/sa/b", GW_ISSUED_OK, "="},
        {"a host ended by '?'", 0, "URI:https://intranet?.example.com/x", GW_ISSUED_OUTSIDE_POLICY,
         "=the upstream's certificate is outside role policy: URI https://intranet?.example.com/x is not "
         "allowed on role iot (allowed: https://*.example.com/*, spiffe://example.org/ns/*/sa/*)"},
        {"a host ended by '#'", 0, "URI:https://evil#.example.com/x", GW_ISSUED_OUTSIDE_POLICY,
         "URI https://evil#.example.com/x is not allowed"},
        {"a segment with an encoded '/'", 0, "URI:spiffe://example.org/ns/a%2Fsa%2Fx/sa/b",
         GW_ISSUED_OUTSIDE_POLICY, "URI spiffe://example.org/ns/a%2Fsa%2Fx/sa/b is not allowed"},
        {"any URI, a URN", 1, "URI:urn:example:dev:7", GW_ISSUED_OK, "="},
        {"any URI, a fragment", 1, "URI:https://evil#.example.com/x", GW_ISSUED_OUTSIDE_POLICY,
         "=the upstream's certificate is outside role policy: URI https://evil#.example.com/x is refused: it "
         "holds a '#', which begins a fragment"},
        {"any URI, slashes a URL parser skips", 1, "URI:https:///intranet/x", GW_ISSUED_OUTSIDE_POLICY,
         "URI https:///intranet/x is refused: a URL parser adds or skips slashes"},
        {"any URI, userinfo", 1, "URI:https://dev-1.example.com@evil.org/x", GW_ISSUED_OUTSIDE_POLICY,
         "URI https://dev-1.example.com@evil.org/x is refused: its authority holds a '@' (userinfo)"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .upstream_name = "vault",
                               .key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT,
                               .ext_key_usage = GW_EKU_CLIENT_AUTH,
                               .max_ttl = 30 * DAY,
                               .allowed_san_types = GW_SAN_URI};
        struct cspec spec = {
            "CN=dev-1.example.com", t[i].san, NULL, "critical,digitalSignature", -60, 7 * DAY, 0};
        struct gw_cert_plan plan;
        X509 *cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);

        if (!t[i].any)
            role.authz.uris = (struct gw_patterns)PATS(i_uri);
        mkplan(&plan, "CN=dev-1.example.com", t[i].san, K_P256, 7 * DAY);
        check_issued_case(t[i].name, &role, &plan, cert, t[i].want, t[i].want_err);
    }
}

/*
 * An issued certificate's email addresses, SAN or subject emailAddress or mail: a '*' of allowed_emails stops
 * at '@', and a subject address is held to the role's email rules as a requested one is.
 */
static void test_check_issued_email(void **state)
{
    static const struct {
        const char *name, *subject, *san;
        const char *planned; /* the plan's subject; NULL: |subject| */
        int no_email;        /* the role's allowed_san_types lacks "email" */
        enum gw_issued_verdict want;
        const char *want_err;
    } t[] = {
        {"one '@'", "CN=dev-1", "email:alice@example.com", NULL, 0, GW_ISSUED_OK, "="},
        {"two '@'", "CN=dev-1", "email:alice@evil@example.com", NULL, 0, GW_ISSUED_OUTSIDE_POLICY,
         "=the upstream's certificate is outside role policy: email address alice@evil@example.com is not "
         "allowed on role iot (allowed: *@example.com)"},
        {"subject, one '@'", "CN=dev-1|emailAddress=alice@example.com", NULL, NULL, 0, GW_ISSUED_OK, "="},
        {"subject, two '@'", "CN=dev-1|emailAddress=alice@evil@example.com", NULL, NULL, 0,
         GW_ISSUED_OUTSIDE_POLICY, "subject emailAddress alice@evil@example.com is not allowed on role iot"},
        /* a mail attribute is an address as much (without patterns, two '@' are refused all the same:
           test_check_request) */
        {"subject mail, one '@'", "CN=dev-1|mail=alice@example.com", NULL, NULL, 0, GW_ISSUED_OK, "="},
        {"subject mail, two '@'", "CN=dev-1|mail=alice@evil@example.com", NULL, NULL, 0,
         GW_ISSUED_OUTSIDE_POLICY,
         "=the upstream's certificate is outside role policy: subject attribute mail alice@evil@example.com "
         "is not allowed on role iot (allowed: *@example.com)"},
        /* a mail outside the role's email rules: a delegate's or an upstream role's plan holds what no
           request may, and a certificate is judged on its own */
        {"subject mail outside the patterns", "CN=dev-1|mail=ceo@bank.example", NULL, NULL, 0,
         GW_ISSUED_OUTSIDE_POLICY,
         "=the upstream's certificate is outside role policy: subject attribute mail ceo@bank.example is not "
         "allowed on role iot (allowed: *@example.com)"},
        {"subject mail, email not allowed", "CN=dev-1|mail=alice@example.com", NULL, NULL, 1,
         GW_ISSUED_OUTSIDE_POLICY,
         "=the upstream's certificate is outside role policy: the subject holds a mail attribute, which role "
         "iot does not allow"},
        {"subject emailAddress, email not allowed", "CN=dev-1|emailAddress=alice@example.com", NULL, NULL, 1,
         GW_ISSUED_OUTSIDE_POLICY, "the subject holds an emailAddress, which role iot does not allow"},
        /* an over-generous CA that adds an address the request did not ask for, within the patterns or not */
        {"subject mail the CA added", "CN=dev-1|mail=alice@example.com", NULL, "CN=dev-1", 0,
         GW_ISSUED_OUTSIDE_POLICY,
         "=the CA changed the subject to /CN=dev-1/mail=alice@example.com, which the request did not ask "
         "for"},
        {"subject mail the CA added, email not allowed", "CN=dev-1|mail=alice@example.com", NULL, "CN=dev-1",
         1, GW_ISSUED_OUTSIDE_POLICY, "the CA changed the subject to /CN=dev-1/mail=alice@example.com"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .upstream_name = "vault",
                               .key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT,
                               .ext_key_usage = GW_EKU_CLIENT_AUTH,
                               .max_ttl = 30 * DAY,
                               .allowed_san_types = t[i].no_email ? GW_SAN_DNS : GW_SAN_EMAIL,
                               .authz.emails = PATS(p_mail)};
        struct cspec spec = {t[i].subject, t[i].san, NULL, "critical,digitalSignature", -60, 7 * DAY, 0};
        struct gw_cert_plan plan;
        X509 *cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);

        mkplan(&plan, t[i].planned != NULL ? t[i].planned : t[i].subject, t[i].san, K_P256, 7 * DAY);
        check_issued_case(t[i].name, &role, &plan, cert, t[i].want, t[i].want_err);
    }
}

/*
 * A validity longer than planned, within max_ttl: a change only where the client asked for its notAfter
 * (RFC 9810 §5.2.3: accepted is exactly what was asked), and then only past GW_ISSUED_SHORTEN_SLACK.
 */
static void test_check_issued_longer(void **state)
{
    static const struct {
        const char *name;
        long to;   /* the certificate's notAfter, seconds from NOW */
        int asked; /* plan.not_after_asked */
        enum gw_issued_verdict want;
        const char *want_err;
    } cases[] = {
        {"longer than asked", 14 * DAY, 1, GW_ISSUED_MODIFIED,
         "=the upstream lengthened the validity to 2030-03-31T17:46:40Z (asked: 2030-03-24T17:46:40Z)"},
        {"longer than the role's ttl, nothing asked", 14 * DAY, 0, GW_ISSUED_OK, "="},
        {"a bit longer than asked", 7 * DAY + GW_ISSUED_SHORTEN_SLACK, 1, GW_ISSUED_OK, "="},
        {"as asked", 7 * DAY, 1, GW_ISSUED_OK, "="},
    };
    struct gw_role role = {.name = "iot",
                           .upstream_name = "vault",
                           .key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT,
                           .ext_key_usage = GW_EKU_CLIENT_AUTH,
                           .max_ttl = 30 * DAY,
                           .allowed_san_types = ALL_SANS,
                           .authz = {.dns_names = PATS(i_dns)}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cspec spec = {
            "CN=dev-1.example.com", NULL, NULL, "critical,digitalSignature", -60, cases[i].to, 0};
        X509 *cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
        struct gw_cert_plan plan;

        mkplan(&plan, "CN=dev-1.example.com", NULL, K_P256, 7 * DAY);
        plan.not_after_asked = cases[i].asked;
        check_issued_case(cases[i].name, &role, &plan, cert, cases[i].want, cases[i].want_err);
    }
}

/* The role the issued-certificate tests below judge by: a client certificate under *.example.com. */
static struct gw_role issued_role(void)
{
    return (struct gw_role){.name = "iot",
                            .upstream_name = "vault",
                            .key_usage = KU_DIGITAL_SIGNATURE,
                            .ext_key_usage = GW_EKU_CLIENT_AUTH,
                            .max_ttl = 30 * DAY,
                            .allowed_san_types = ALL_SANS,
                            .authz = {.dns_names = PATS(i_dns)}};
}

/* A certificate int_ca issued for dev-1.example.com, and the plan it answers (*plan, the caller's). */
static X509 *issued_dev1(struct gw_cert_plan *plan)
{
    struct cspec spec = {"CN=dev-1.example.com", NULL, NULL, "critical,digitalSignature", -60, 7 * DAY, 0};

    mkplan(plan, "CN=dev-1.example.com", NULL, K_P256, 7 * DAY);
    return mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
}

/*
 * RFC 5280 §4.1.2.2: a serial number of zero, a negative one, or one of more than 20 octets (which Vault
 * cannot be asked to revoke) is unusable, named as such; 1 and 20 octets are as planned.
 */
static void test_check_issued_serial(void **state)
{
    static const struct {
        const char *hex; /* BN_hex2bn: "-" for a negative one */
        enum gw_issued_verdict want;
    } cases[] = {
        {"0", GW_ISSUED_BAD},
        {"-5", GW_ISSUED_BAD},
        {"7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f", GW_ISSUED_BAD}, /* 21 octets */
        {"1", GW_ISSUED_OK},
        {"7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f", GW_ISSUED_OK}, /* 20 octets */
    };
    struct gw_role role = issued_role();
    char err[GW_ERR_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_cert_plan plan;
        X509 *cert = issued_dev1(&plan);
        BIGNUM *bn = NULL;
        ASN1_INTEGER *serial;

        assert_true(BN_hex2bn(&bn, cases[i].hex) > 0);
        assert_non_null(serial = BN_to_ASN1_INTEGER(bn, NULL));
        assert_int_equal(X509_set_serialNumber(cert, serial), 1);
        assert_true(X509_sign(cert, keys[K_CA3], EVP_sha256()) > 0);
        if (gw_policy_check_issued(&role, &plan, cert, NULL, st_issuer_int, NULL, NOW, NULL, err) !=
            cases[i].want)
            fail_msg("serial %s: \"%s\"", cases[i].hex, err);
        if (cases[i].want == GW_ISSUED_BAD)
            check_err(
                cases[i].hex, err,
                "=the certificate upstream vault returned is malformed: its serial number is not a positive "
                "integer of at most 20 octets");
        ASN1_INTEGER_free(serial);
        BN_free(bn);
        X509_free(cert);
        gw_cert_plan_cleanup(&plan);
    }
}

/*
 * A serial a record keeps (gw_x509_serial_hex into GW_SERIAL_HEX_LEN): whole up to GW_MAX_SERIAL_SHOWN
 * octets, a refused 21-octet one among them, for its operator to revoke it by hand; a longer one, or one
 * longer than a caller's buffer, cut and marked GW_X509_SERIAL_CUT, never a part passed off as the whole.
 */
static void test_serial_hex(void **state)
{
    static const struct {
        int octets;   /* of 0x7f each */
        int negative; /* as a '-' before them */
        size_t cap;   /* 0: GW_SERIAL_HEX_LEN */
        int cut;
    } cases[] = {
        {1, 0, 0, 0},
        {20, 0, 0, 0},
        {21, 0, 0, 0},
        {GW_MAX_SERIAL_SHOWN, 0, 0, 0},
        {GW_MAX_SERIAL_SHOWN, 1, 0, 0},
        {GW_MAX_SERIAL_SHOWN + 1, 0, 0, 1},
        {GW_MAX_SERIAL_SHOWN + 1, 1, 0, 1},
        {21, 0, 2 * 20 + 1, 1},
        {20, 0, 2 * 20 + 1, 0},
        {4, 0, 8, 1},
    };
    char hex[2 * (GW_MAX_SERIAL_SHOWN + 1) + 2], got[GW_SERIAL_HEX_LEN + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t cap = cases[i].cap != 0 ? cases[i].cap : GW_SERIAL_HEX_LEN, n = 0;
        BIGNUM *bn = NULL;
        ASN1_INTEGER *serial;

        if (cases[i].negative)
            hex[n++] = '-';
        for (int j = 0; j < cases[i].octets; j++, n += 2)
            memcpy(hex + n, "7f", 2);
        hex[n] = '\0';
        assert_true(BN_hex2bn(&bn, hex) > 0);
        assert_non_null(serial = BN_to_ASN1_INTEGER(bn, NULL));
        memset(got, 'x', sizeof(got));
        gw_x509_serial_hex(serial, got, cap);
        if (!cases[i].cut) {
            assert_string_equal(got, hex);
        } else {
            size_t keep = cap - sizeof(GW_X509_SERIAL_CUT);

            assert_int_equal(strlen(got), cap - 1);
            assert_memory_equal(got, hex, keep);
            assert_string_equal(got + keep, GW_X509_SERIAL_CUT);
        }
        assert_int_equal(got[cap], 'x'); /* nothing past |cap| */
        ASN1_INTEGER_free(serial);
        BN_free(bn);
    }
}

/*
 * An upstream's certificate is verified at GW_ISSUED_AUTH_LEVEL: one signed with SHA-1 (63 bits of
 * security in OpenSSL 3.0) is unusable, named as such; the same one signed with SHA-256 is as planned.
 */
static void test_check_issued_weak_signature(void **state)
{
    struct gw_role role = issued_role();
    struct gw_cert_plan plan;
    X509 *cert = issued_dev1(&plan);
    char err[GW_ERR_LEN];

    (void)state;
    assert_true(X509_sign(cert, keys[K_CA3], EVP_sha1()) > 0);
    assert_int_equal(gw_policy_check_issued(&role, &plan, cert, NULL, st_issuer_int, NULL, NOW, NULL, err),
                     GW_ISSUED_BAD);
    check_err("SHA-1", err,
              "=the certificate upstream vault returned is signed with a hash under 112 bits of security "
              "(SHA-1, MD5) (issuer_ca)");
    X509_free(cert);
    gw_cert_plan_cleanup(&plan);
    cert = issued_dev1(&plan); /* a new one: OpenSSL caches what it read of the signature */
    assert_true(X509_sign(cert, keys[K_CA3], EVP_sha256()) > 0);
    if (gw_policy_check_issued(&role, &plan, cert, NULL, st_issuer_int, NULL, NOW, NULL, err) != GW_ISSUED_OK)
        fail_msg("SHA-256: %s", err);
    X509_free(cert);
    gw_cert_plan_cleanup(&plan);
}

/*
 * The chain a released certificate goes out with is the one it was verified on, up to the issuer
 * store's CA and on with the upstream's certificates that signed it, without what else the upstream
 * put beside it (another CA's certificate, the leaf again); a refused certificate has none.
 */
static void test_check_issued_path(void **state)
{
    struct gw_role role = issued_role();
    STACK_OF(X509) *sent = sk_X509_new_null(), *path = NULL;
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    X509 *cert = issued_dev1(&plan);

    (void)state;
    assert_non_null(sent);
    assert_int_equal(X509_add_cert(sent, other_ca, X509_ADD_FLAG_UP_REF), 1);
    assert_int_equal(X509_add_cert(sent, int_ca, X509_ADD_FLAG_UP_REF), 1);
    assert_int_equal(X509_add_cert(sent, cert, X509_ADD_FLAG_UP_REF), 1);
    assert_int_equal(gw_policy_check_issued(&role, &plan, cert, sent, st_issuer_root, NULL, NOW, &path, err),
                     GW_ISSUED_OK);
    assert_int_equal(sk_X509_num(path), 2);
    assert_int_equal(X509_cmp(sk_X509_value(path, 0), int_ca), 0);
    assert_int_equal(X509_cmp(sk_X509_value(path, 1), ca), 0);
    sk_X509_pop_free(path, X509_free);
    /* the issuing CA itself the anchor: it, and above it only what the upstream sent that signed it */
    assert_int_equal(gw_policy_check_issued(&role, &plan, cert, sent, st_issuer_int, NULL, NOW, &path, err),
                     GW_ISSUED_OK);
    assert_int_equal(sk_X509_num(path), 1);
    assert_int_equal(X509_cmp(sk_X509_value(path, 0), int_ca), 0);
    sk_X509_pop_free(path, X509_free);
    assert_int_equal(X509_add_cert(sent, ca, X509_ADD_FLAG_UP_REF), 1);
    assert_int_equal(gw_policy_check_issued(&role, &plan, cert, sent, st_issuer_int, NULL, NOW, &path, err),
                     GW_ISSUED_OK);
    assert_int_equal(sk_X509_num(path), 2);
    assert_int_equal(X509_cmp(sk_X509_value(path, 0), int_ca), 0);
    assert_int_equal(X509_cmp(sk_X509_value(path, 1), ca), 0);
    sk_X509_pop_free(path, X509_free);
    /* refused: no chain to send */
    role.max_ttl = DAY;
    assert_int_equal(gw_policy_check_issued(&role, &plan, cert, sent, st_issuer_int, NULL, NOW, &path, err),
                     GW_ISSUED_OUTSIDE_POLICY);
    assert_null(path);
    gw_cert_plan_cleanup(&plan);
    sk_X509_pop_free(sent, X509_free);
    X509_free(cert);
}

/* Checks of int_ca's signature, and of any, counted by libcrypto's X509_verify interposed here. */
static int int_ca_verified, any_verified;

int X509_verify(X509 *x, EVP_PKEY *key)
{
    static int (*real)(X509 *, EVP_PKEY *);

    if (int_ca != NULL && X509_cmp(x, int_ca) == 0)
        int_ca_verified++;
    any_verified++;
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "X509_verify");
    return real(x, key);
}

/* |x| as an upstream could send it: the same certificate but the last byte of its signature. */
static X509 *resigned(X509 *x)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int len = i2d_X509(x, &der);
    X509 *y;

    assert_true(len > 0);
    der[len - 1] ^= 1;
    p = der;
    y = d2i_X509(NULL, &p, len);
    OPENSSL_free(der);
    assert_non_null(y);
    return y;
}

/*
 * The root's signature on the issuing CA is verified for the first answer that sends the root, not
 * for every answer after it; a copy of the issuing CA with another signature is not taken for it.
 */
static void test_check_issued_links(void **state)
{
    struct gw_role role = issued_role();
    struct gw_x509_links *links = gw_x509_links_new();
    STACK_OF(X509) *sent = sk_X509_new_null(), *path = NULL, *forged = sk_X509_new_null();
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    X509 *cert = issued_dev1(&plan);

    (void)state;
    assert_non_null(links);
    assert_int_equal(X509_add_cert(sent, int_ca, X509_ADD_FLAG_UP_REF), 1);
    assert_int_equal(X509_add_cert(sent, ca, X509_ADD_FLAG_UP_REF), 1);
    int_ca_verified = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            gw_policy_check_issued(&role, &plan, cert, sent, st_issuer_int, links, NOW, &path, err),
            GW_ISSUED_OK);
        assert_int_equal(sk_X509_num(path), 2);
        assert_int_equal(X509_cmp(sk_X509_value(path, 1), ca), 0);
        sk_X509_pop_free(path, X509_free);
    }
    assert_int_equal(int_ca_verified, 1);
    assert_int_equal(sk_X509_push(forged, resigned(int_ca)), 1);
    gw_x509_chain_extend(forged, NULL, sent, GW_MAX_UPSTREAM_CHAIN, links);
    assert_int_equal(sk_X509_num(forged), 1);
    sk_X509_pop_free(forged, X509_free);
    gw_x509_links_free(links);
    gw_cert_plan_cleanup(&plan);
    sk_X509_pop_free(sent, X509_free);
    X509_free(cert);
}

/* A copy of |x| whose DER says its signature has one unused bit (its last byte's lowest bit is 0). */
static X509 *unused_bit_der(X509 *x)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    const ASN1_BIT_STRING *sig;
    int len = i2d_X509(x, &der);
    X509 *y;

    assert_true(len > 0);
    X509_get0_signature(&sig, NULL, x);
    assert_int_equal(der[len - ASN1_STRING_length(sig) - 1], 0); /* the unused-bits byte */
    der[len - ASN1_STRING_length(sig) - 1] = 1;
    der[len - 1] &= 0xfe;
    p = der;
    y = d2i_X509(NULL, &p, len);
    OPENSSL_free(der);
    assert_non_null(y);
    return y;
}

/*
 * A copy of |x| changed after it was parsed, as libcrypto's caches (the certificate's SHA-1, its
 * to-be-signed encoding) do not see: one unused bit in its signature, or the signature's last byte.
 */
static X509 *changed_after_parse(X509 *x, int unused_bit)
{
    X509 *y = tu_reparsed(x);
    const ASN1_BIT_STRING *sig;
    ASN1_BIT_STRING *s;
    unsigned char last;

    assert_int_equal(X509_check_purpose(y, -1, 0), 1); /* its SHA-1 cached, as the first X509_cmp does */
    X509_get0_signature(&sig, NULL, y);
    s = (ASN1_BIT_STRING *)sig; /* the test's own object */
    if (unused_bit) {
        s->flags = ASN1_STRING_FLAG_BITS_LEFT | 1;
        return y;
    }
    last = s->data[s->length - 1] ^ 0x80;
    s->data[s->length - 1] = last;
    return y;
}

/*
 * A remembered link is known again only for the same two certificates byte for byte: a copy is, one
 * whose signature differs only in its unused-bits count or its bytes is verified (and fails), however
 * it was made.
 */
static void test_links_byte_for_byte(void **state)
{
    struct {
        const char *what;
        X509 *top;
        int known;
    } cases[] = {
        {"a copy parsed again", tu_reparsed(int_ca), 1},
        {"one unused bit, parsed so", unused_bit_der(int_ca), 0},
        {"one unused bit, set after parsing", changed_after_parse(int_ca, 1), 0},
        {"another signature byte, parsed so", resigned(int_ca), 0},
        {"another signature byte, set after parsing", changed_after_parse(int_ca, 0), 0},
    };
    struct gw_x509_links *links = gw_x509_links_new();
    STACK_OF(X509) *from = sk_X509_new_null(), *chain;

    (void)state;
    assert_non_null(links);
    assert_int_equal(X509_add_cert(from, ca, X509_ADD_FLAG_UP_REF), 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int pass = 0; pass < 2; pass++) {
            chain = sk_X509_new_null();
            assert_int_equal(X509_add_cert(chain, int_ca, X509_ADD_FLAG_UP_REF), 1); /* the link remembered */
            gw_x509_chain_extend(chain, NULL, from, GW_MAX_UPSTREAM_CHAIN, links);
            assert_int_equal(sk_X509_num(chain), 2);
            sk_X509_pop_free(chain, X509_free);
            chain = sk_X509_new_null();
            assert_int_equal(X509_add_cert(chain, cases[i].top, X509_ADD_FLAG_UP_REF), 1);
            any_verified = 0;
            gw_x509_chain_extend(chain, NULL, from, GW_MAX_UPSTREAM_CHAIN, links);
            if (sk_X509_num(chain) != 1 + cases[i].known || any_verified != 1 - cases[i].known)
                fail_msg("%s (pass %d): %d certificates, %d verifications", cases[i].what, pass,
                         sk_X509_num(chain), any_verified);
            sk_X509_pop_free(chain, X509_free);
        }
        X509_free(cases[i].top);
    }
    gw_x509_links_free(links);
    sk_X509_pop_free(from, X509_free);
}

/*
 * What an upstream returned, valid from before it was planned (a CA may backdate a few minutes), or
 * with a wildcard name the role does not issue (even one the request asked for).
 */
static const struct {
    const char *name;
    long from; /* notBefore, seconds from NOW; the plan's is NOW - GW_BACKDATE_SECS */
    const char *sans;
    enum gw_issued_verdict want;
    const char *want_err;
} iss_more[] = {
    {"backdated by a day", -DAY, NULL, GW_ISSUED_OUTSIDE_POLICY,
     "=the upstream backdated the certificate to 2030-03-16T17:46:40Z (planned: 2030-03-17T17:45:40Z)"},
    {"backdated by a CA's few minutes", -60 - GW_ISSUED_BACKDATE_SLACK, NULL, GW_ISSUED_OK, "="},
    {"backdated a second more", -61 - GW_ISSUED_BACKDATE_SLACK, NULL, GW_ISSUED_OUTSIDE_POLICY,
     "the upstream backdated the certificate to "},
    {"a wildcard name", -60, "DNS:*.example.com", GW_ISSUED_OUTSIDE_POLICY,
     "DNS name *.example.com is a wildcard, which role iot does not issue"},
};

static void test_check_issued_start_and_wildcard(void **state)
{
    struct gw_role role = issued_role();
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(iss_more) / sizeof(iss_more[0]); i++) {
        struct cspec spec = {"CN=dev-1.example.com", iss_more[i].sans, NULL, "critical,digitalSignature",
                             iss_more[i].from,       7 * DAY,          0};
        X509 *cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
        struct gw_cert_plan plan;

        mkplan(&plan, "CN=dev-1.example.com", iss_more[i].sans, K_P256, 7 * DAY);
        check_issued_case(iss_more[i].name, &role, &plan, cert, iss_more[i].want, iss_more[i].want_err);
    }
}

/*
 * A certificate a pollReq collects two days after its request: max_ttl counts from the request (or
 * from a later notBefore), not from the collection, which would let the CA add the wait to it.
 */
static void test_check_issued_collected_late(void **state)
{
    static const struct {
        const char *name;
        long from, to; /* validity, seconds from NOW, when the request came */
        enum gw_issued_verdict want;
        const char *want_err;
    } rows[] = {
        {"issued at once, max_ttl plus the wait", -60, 32 * DAY, GW_ISSUED_OUTSIDE_POLICY,
         "beyond role iot's max_ttl of 30d"},
        {"issued at once, max_ttl", -60, 30 * DAY, GW_ISSUED_OK, "="},
        {"issued when collected, max_ttl from then", 2 * DAY - 60, 32 * DAY - 60, GW_ISSUED_OK, "="},
    };
    struct gw_role role = issued_role();

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cspec spec = {"CN=dev-1.example.com", NULL,       NULL, "critical,digitalSignature",
                             rows[i].from,           rows[i].to, 0};
        X509 *cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
        struct gw_cert_plan plan;

        mkplan(&plan, "CN=dev-1.example.com", NULL, K_P256, 30 * DAY);
        check_issued_at(rows[i].name, &role, &plan, cert, NULL, st_issuer_int, NOW + 2 * DAY, rows[i].want,
                        rows[i].want_err);
    }
}

/* ---- gw_policy_check_issued: the subject, planned or some of its attributes ---- */

#define PLAN_SUBJECT "C=DE|O=Vendor|OU=Radio|CN=dev-1.example.com"

static const struct {
    const char *name;
    const char *subject; /* what the CA put in (mkname syntax); the plan's is PLAN_SUBJECT */
    const char *sans;    /* the plan asked for DNS:a.example.com */
    bool require_subject;
    enum gw_issued_verdict want;
    const char *want_err;
} subj[] = {
    {"as planned", PLAN_SUBJECT, "DNS:a.example.com", false, GW_ISSUED_OK, "="},
    /* Vault sign/<role> keeps the CSR's CN only; cfssl writes C, ST, L, O, OU, CN */
    {"CN only (Vault)", "CN=dev-1.example.com", "DNS:a.example.com", false, GW_ISSUED_MODIFIED,
     "=the upstream left out or reordered subject attributes: /CN=dev-1.example.com"},
    {"reordered", "CN=dev-1.example.com|OU=Radio|O=Vendor|C=DE", "DNS:a.example.com", false,
     GW_ISSUED_MODIFIED,
     "=the upstream left out or reordered subject attributes: /CN=dev-1.example.com/OU=Radio/O=Vendor/C=DE"},
    {"nothing left, subject optional", "", "DNS:a.example.com", false, GW_ISSUED_MODIFIED,
     "left out or reordered"},
    {"nothing left, subject required", "", "DNS:a.example.com", true, GW_ISSUED_OUTSIDE_POLICY,
     "=the CA left the subject empty, which role iot requires"},
    {"attribute added", "C=DE|O=Vendor|OU=Radio|OU=Core|CN=dev-1.example.com", "DNS:a.example.com", false,
     GW_ISSUED_OUTSIDE_POLICY,
     "=the CA changed the subject to /C=DE/O=Vendor/OU=Radio/OU=Core/CN=dev-1.example.com, which the request "
     "did not ask for"},
    {"value changed", "C=DE|O=Other|OU=Radio|CN=dev-1.example.com", "DNS:a.example.com", false,
     GW_ISSUED_OUTSIDE_POLICY, "changed the subject to /C=DE/O=Other/OU=Radio/CN=dev-1.example.com"},
    /* X509_NAME_cmp folds case; a relying party comparing bytes would not */
    {"case changed", "C=DE|O=VENDOR|OU=Radio|CN=dev-1.example.com", "DNS:a.example.com", false,
     GW_ISSUED_OUTSIDE_POLICY, "changed the subject"},
    {"attribute repeated", "O=Vendor|O=Vendor|CN=dev-1.example.com", "DNS:a.example.com", false,
     GW_ISSUED_OUTSIDE_POLICY, "changed the subject"},
    /* a reduced subject with the CN changed: not some of the planned attributes */
    {"CN changed, its copy in the SANs", "CN=dev-2.example.com", "DNS:a.example.com,DNS:dev-2.example.com",
     false, GW_ISSUED_OUTSIDE_POLICY,
     "=the CA changed the subject to /CN=dev-2.example.com, which the request did not ask for"},
    /* twin: the copy of a planned CN is what Vault adds */
    {"CN kept, its copy in the SANs", "CN=dev-1.example.com", "DNS:a.example.com,DNS:dev-1.example.com",
     false, GW_ISSUED_MODIFIED, "left out or reordered"},
};

static void test_check_issued_subject(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(subj) / sizeof(subj[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .upstream_name = "vault",
                               .key_usage = KU_DIGITAL_SIGNATURE,
                               .ext_key_usage = GW_EKU_CLIENT_AUTH,
                               .max_ttl = 30 * DAY,
                               .allowed_san_types = GW_SAN_DNS,
                               .require_subject = subj[i].require_subject,
                               .authz = {.dns_names = PATS(i_dns)}};
        struct cspec spec = {
            subj[i].subject, subj[i].sans, NULL, "critical,digitalSignature", -60, 7 * DAY, 0};
        struct gw_cert_plan plan;
        X509 *cert;

        cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
        mkplan(&plan, PLAN_SUBJECT, "DNS:a.example.com", K_P256, 7 * DAY);
        check_issued_case(subj[i].name, &role, &plan, cert, subj[i].want, subj[i].want_err);
    }
}

/*
 * allowed_subjects bounds the certificate's subject as it bounds the request's: a plan the upstream's
 * role rewrote (a delegate writes the Vault role's O and OU) or a subject the CA cut down (Vault
 * keeps the CN) may be one the role would refuse to a request, and another role may trust it.
 */
static char *i_subjects[] = {"/C=DE/O=Vendor/OU=Radio/CN=dev-*.example.com"};

static const struct {
    const char *name;
    const char *plan; /* the planned subject (mkname syntax) */
    const char *got;  /* what the CA put in */
    enum gw_issued_verdict want;
    const char *want_err;
} subj_allowed[] = {
    {"as planned", PLAN_SUBJECT, PLAN_SUBJECT, GW_ISSUED_OK, "="},
    {"a delegate's plan with the Vault role's O and OU", "O=Role Org|OU=Devices|CN=dev-1.example.com",
     "O=Role Org|OU=Devices|CN=dev-1.example.com", GW_ISSUED_OUTSIDE_POLICY,
     "=the certificate's subject /O=Role Org/OU=Devices/CN=dev-1.example.com is not allowed on role iot "
     "(allowed: /C=DE/O=Vendor/OU=Radio/CN=dev-*.example.com)"},
    {"CN only (Vault)", PLAN_SUBJECT, "CN=dev-1.example.com", GW_ISSUED_OUTSIDE_POLICY,
     "=the certificate's subject /CN=dev-1.example.com is not allowed on role iot "
     "(allowed: /C=DE/O=Vendor/OU=Radio/CN=dev-*.example.com)"},
    {"reordered", PLAN_SUBJECT, "CN=dev-1.example.com|OU=Radio|O=Vendor|C=DE", GW_ISSUED_OUTSIDE_POLICY,
     "the certificate's subject /CN=dev-1.example.com/OU=Radio/O=Vendor/C=DE is not allowed"},
    /* an empty subject is left to require_subject, as in a request */
    {"nothing left", PLAN_SUBJECT, "", GW_ISSUED_MODIFIED, "left out or reordered"},
};

static void test_check_issued_allowed_subjects(void **state)
{

    (void)state;
    for (size_t i = 0; i < sizeof(subj_allowed) / sizeof(subj_allowed[0]); i++) {
        struct gw_role role = issued_role();
        struct cspec spec = {
            subj_allowed[i].got, "DNS:a.example.com", NULL, "critical,digitalSignature", -60, 7 * DAY, 0};
        struct gw_cert_plan plan;
        X509 *cert;

        role.authz.subjects = (struct gw_patterns)PATS(i_subjects);
        cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
        mkplan(&plan, subj_allowed[i].plan, "DNS:a.example.com", K_P256, 7 * DAY);
        check_issued_case(subj_allowed[i].name, &role, &plan, cert, subj_allowed[i].want,
                          subj_allowed[i].want_err);
    }
}

/*
 * The subject a delegate would write is held to allowed_subjects before it signs, with the reason the
 * issued check gives: nothing outside the role is issued, then revoked. Twin: a role that admits the
 * Vault role's O and OU gets the names.
 */
static void test_upstream_subject_allowed_subjects(void **state)
{
    static char *o[] = {"Role Org"}, *ou[] = {"Devices"}, *vendor[] = {"/O=Vendor/CN=*.example.com"},
                *role_org[] = {"/O=Role Org/OU=Devices/CN=*.example.com"};
    struct gw_role role = issued_role();
    struct gw_role_policy p = {.allow_any_name = true, .key_type = "any"};
    struct gw_upstream_names names = {NULL, NULL, 0, 0};
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    int fi = -1;

    (void)state;
    *role_values(&p, "organization") = (struct gw_patterns)PATS(o);
    *role_values(&p, "ou") = (struct gw_patterns)PATS(ou);
    mkplan(&plan, "O=Vendor|CN=dev.example.com", NULL, K_P256, DAY);
    role.authz.subjects = (struct gw_patterns)PATS(vendor);
    assert_int_equal(gw_policy_check_request(&role, &plan, &fi, err), 0); /* the request is within */
    assert_int_not_equal(gw_policy_check_upstream_role(&role, &p, &plan, NOW, &names, &fi, err), 0);
    assert_int_equal(fi, OSSL_CMP_PKIFAILUREINFO_badCertTemplate);
    check_err("Vault role's O", err,
              "=the certificate's subject /O=Role Org/OU=Devices/CN=dev.example.com is not allowed on role "
              "iot (allowed: /O=Vendor/CN=*.example.com)");
    assert_null(names.subject);
    assert_null(names.sans);
    role.authz.subjects = (struct gw_patterns)PATS(role_org);
    assert_int_equal(gw_policy_check_upstream_role(&role, &p, &plan, NOW, &names, &fi, err), 0);
    assert_non_null(names.subject);
    X509_NAME_free(names.subject);
    GENERAL_NAMES_free(names.sans);
    gw_cert_plan_cleanup(&plan);
}

/* The same value in another string type is the same subject (cfssl writes PrintableString). */
static void test_check_issued_subject_encoding(void **state)
{
    static const struct cspec spec = {
        "", "DNS:a.example.com", NULL, "critical,digitalSignature", -60, 7 * DAY, 0};
    struct gw_role role = {.name = "iot",
                           .upstream_name = "vault",
                           .key_usage = KU_DIGITAL_SIGNATURE,
                           .ext_key_usage = GW_EKU_CLIENT_AUTH,
                           .max_ttl = 30 * DAY,
                           .allowed_san_types = GW_SAN_DNS};
    X509_NAME *printable = X509_NAME_new();
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];
    X509 *cert;

    (void)state;
    assert_non_null(printable);
    assert_int_equal(X509_NAME_add_entry_by_NID(printable, NID_organizationName, V_ASN1_PRINTABLESTRING,
                                                (unsigned char *)"Vendor", -1, -1, 0),
                     1);
    assert_int_equal(X509_NAME_add_entry_by_NID(printable, NID_commonName, V_ASN1_PRINTABLESTRING,
                                                (unsigned char *)"dev-1.example.com", -1, -1, 0),
                     1);
    cert = mkcert_ext(&spec, "clientAuth", NULL, keys[K_P256], int_ca, keys[K_CA3]);
    assert_int_equal(X509_set_subject_name(cert, printable), 1);
    assert_true(X509_sign(cert, keys[K_CA3], EVP_sha256()) > 0);
    mkplan(&plan, "O=Vendor|CN=dev-1.example.com", "DNS:a.example.com", K_P256, 7 * DAY);
    assert_int_equal(gw_policy_check_issued(&role, &plan, cert, NULL, st_issuer_int, NULL, NOW, NULL, err),
                     GW_ISSUED_OK);
    check_err("PrintableString", err, "=");
    gw_cert_plan_cleanup(&plan);
    X509_free(cert);
    X509_NAME_free(printable);
}

/* ---- gw_policy_check_issued: usages and extensions, for every adapter ---- */

static const char *o_ct_poison =
    "1.3.6.1.4.1.11129.2.4.3"; /* RFC 6962 §3.1: a precertificate, never usable */

enum role_sel { R_DEFAULT, R_NONE, R_EXT, R_KU_ONLY };

/* Each row has its twin: the same certificate within the role, or the same role with a wider one. */
static const struct {
    const char *name;
    const char *ku, *eku, *bc, *ext; /* what the CA put in (config syntax); NULL = none */
    enum role_sel role;              /* R_DEFAULT: digitalSignature, keyAgreement; clientAuth */
    enum gw_issued_verdict want;
    const char *want_err;
} exts[] = {
    {"usages within", "critical,digitalSignature", "clientAuth", "critical,CA:FALSE", NULL, R_DEFAULT,
     GW_ISSUED_OK, "="},
    {"fewer usages", "critical,keyAgreement", "clientAuth", NULL, NULL, R_DEFAULT, GW_ISSUED_OK, "="},
    /* no extension is no constraint: any usage, any purpose (RFC 5280 §4.2.1.3, §4.2.1.12) */
    {"no extendedKeyUsage", "critical,keyAgreement", NULL, NULL, NULL, R_DEFAULT, GW_ISSUED_OUTSIDE_POLICY,
     "=extendedKeyUsage any (the certificate has none) is outside role iot (allowed: clientAuth)"},
    {"no keyUsage", NULL, "clientAuth", NULL, NULL, R_DEFAULT, GW_ISSUED_OUTSIDE_POLICY,
     "=keyUsage any (the certificate has none) is outside role iot (allowed: digitalSignature, "
     "keyAgreement)"},
    {"no usages at all", NULL, NULL, NULL, NULL, R_DEFAULT, GW_ISSUED_OUTSIDE_POLICY,
     "=keyUsage any (the certificate has none) is outside role iot (allowed: digitalSignature, "
     "keyAgreement)"},
    {"no extendedKeyUsage on a role with none", "digitalSignature", NULL, NULL, NULL, R_KU_ONLY, GW_ISSUED_OK,
     "="},
    {"keyUsage beyond", "critical,digitalSignature,keyEncipherment", "clientAuth", NULL, NULL, R_DEFAULT,
     GW_ISSUED_OUTSIDE_POLICY,
     "=keyUsage keyEncipherment is outside role iot (allowed: digitalSignature, keyAgreement)"},
    {"keyUsage beyond, twice", "nonRepudiation,dataEncipherment,digitalSignature", NULL, NULL, NULL,
     R_DEFAULT, GW_ISSUED_OUTSIDE_POLICY,
     "=keyUsage nonRepudiation, dataEncipherment is outside role iot (allowed: digitalSignature, "
     "keyAgreement)"},
    {"keyUsage on a role with none", "digitalSignature", NULL, NULL, NULL, R_NONE, GW_ISSUED_OUTSIDE_POLICY,
     "=keyUsage digitalSignature is outside role iot (allowed: none)"},
    {"no keyUsage on a role with none", NULL, NULL, NULL, NULL, R_NONE, GW_ISSUED_OK, "="},
    {"encipherOnly", "keyAgreement,encipherOnly", NULL, NULL, NULL, R_DEFAULT, GW_ISSUED_OUTSIDE_POLICY,
     "=keyUsage encipherOnly is outside role iot (allowed: digitalSignature, keyAgreement)"},
    {"keyUsage bit 9", NULL, NULL, NULL, "keyUsage=critical,DER:03:03:06:80:40", R_DEFAULT,
     GW_ISSUED_OUTSIDE_POLICY, "=keyUsage bit 9 is outside role iot (RFC 5280 §4.2.1.3 names bits 0 to 8)"},
    {"extendedKeyUsage beyond", "digitalSignature", "clientAuth,codeSigning,OCSPSigning", NULL, NULL,
     R_DEFAULT, GW_ISSUED_OUTSIDE_POLICY,
     "=extendedKeyUsage codeSigning, OCSPSigning is outside role iot (allowed: clientAuth)"},
    {"extendedKeyUsage serverAuth", NULL, "serverAuth,clientAuth", NULL, NULL, R_DEFAULT,
     GW_ISSUED_OUTSIDE_POLICY, "=extendedKeyUsage serverAuth is outside role iot (allowed: clientAuth)"},
    {"anyExtendedKeyUsage", NULL, "anyExtendedKeyUsage", NULL, NULL, R_DEFAULT, GW_ISSUED_OUTSIDE_POLICY,
     "=extendedKeyUsage anyExtendedKeyUsage (2.5.29.37.0) is outside role iot (allowed: clientAuth)"},
    {"unknown purpose", NULL, "clientAuth,1.2.3.4.5", NULL, NULL, R_DEFAULT, GW_ISSUED_OUTSIDE_POLICY,
     "=extendedKeyUsage 1.2.3.4.5 is outside role iot (allowed: clientAuth)"},
    {"extendedKeyUsage on a role with none", NULL, "clientAuth", NULL, NULL, R_NONE, GW_ISSUED_OUTSIDE_POLICY,
     "=extendedKeyUsage clientAuth is outside role iot (allowed: none)"},
    {"keyUsage reported before extendedKeyUsage", "keyEncipherment", "codeSigning", NULL, NULL, R_DEFAULT,
     GW_ISSUED_OUTSIDE_POLICY, "keyUsage keyEncipherment"},
    {"pathLenConstraint", NULL, NULL, "critical,CA:FALSE,pathlen:0", NULL, R_DEFAULT,
     GW_ISSUED_OUTSIDE_POLICY,
     "=basicConstraints with a pathLenConstraint is outside role iot (end-entity certificates only, "
     "RFC 5280 §4.2.1.9)"},
    {"standard extensions", "digitalSignature", "clientAuth", "CA:FALSE",
     "crlDistributionPoints=URI:http://crl.example.com/ca.crl|"
     "authorityInfoAccess=OCSP;URI:http://"
     "ocsp.example.com|certificatePolicies=DER:30:0A:30:08:06:06:67:81:0C:01:02:01|" /* 2.23.140.1.2.1 */
     "1.3.6.1.4.1.11129.2.4.2=DER:04:02:00:00",
     R_DEFAULT, GW_ISSUED_OK, "="},
    {"nameConstraints", NULL, NULL, NULL, "nameConstraints=critical,permitted;DNS:example.com", R_DEFAULT,
     GW_ISSUED_OUTSIDE_POLICY,
     "=extension nameConstraints (2.5.29.30) is outside role iot (not in its allowed_extensions)"},
    {"unknown extension", NULL, NULL, NULL, "1.2.3.4=DER:05:00", R_DEFAULT, GW_ISSUED_OUTSIDE_POLICY,
     "=extension 1.2.3.4 is outside role iot (not in its allowed_extensions)"},
    {"unknown extension, allowed", "digitalSignature", "clientAuth", NULL, "1.2.3.4=DER:05:00", R_EXT,
     GW_ISSUED_OK, "="},
    {"precertificate poison, another role's extension", NULL, NULL, NULL,
     "1.3.6.1.4.1.11129.2.4.3=critical,DER:05:00", R_EXT, GW_ISSUED_OUTSIDE_POLICY,
     "=extension ct_precert_poison (1.3.6.1.4.1.11129.2.4.3) is outside role iot (not in its "
     "allowed_extensions)"},
    /* malformed: the CA's fault, not the request's (systemFailure), and still revoked */
    {"keyUsage twice", "digitalSignature", NULL, NULL, "keyUsage=digitalSignature", R_DEFAULT, GW_ISSUED_BAD,
     "=the certificate upstream vault returned is malformed: extension keyUsage (2.5.29.15) appears twice "
     "(RFC 5280 §4.2 allows one of each)"},
    {"allowed extension twice", NULL, NULL, NULL, "1.2.3.4=DER:05:00|1.2.3.4=DER:05:00", R_EXT, GW_ISSUED_BAD,
     "=the certificate upstream vault returned is malformed: extension 1.2.3.4 appears twice (RFC 5280 §4.2 "
     "allows one of each)"},
    {"keyUsage not a BIT STRING", NULL, NULL, NULL, "keyUsage=DER:05:00", R_DEFAULT, GW_ISSUED_BAD,
     "=the certificate upstream vault returned is malformed: its keyUsage extension cannot be decoded"},
    {"extendedKeyUsage not a SEQUENCE", NULL, NULL, NULL, "extendedKeyUsage=DER:05:00", R_DEFAULT,
     GW_ISSUED_BAD, "its extendedKeyUsage extension cannot be decoded"},
    {"basicConstraints not a SEQUENCE", NULL, NULL, NULL, "basicConstraints=DER:05:00", R_DEFAULT,
     GW_ISSUED_BAD, "its basicConstraints extension cannot be decoded"},
};

static void test_check_issued_exts(void **state)
{
    static const struct cspec base = {
        "CN=dev-1.example.com", "DNS:a.example.com", NULL, NULL, -60, 7 * DAY, 0};
    ASN1_OBJECT *allowed[2] = {OBJ_txt2obj("1.2.3.4", 1), OBJ_txt2obj(o_ct_poison, 1)};
    size_t i;

    (void)state;
    assert_non_null(allowed[0]);
    assert_non_null(allowed[1]);
    for (i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .upstream_name = "vault",
                               .key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT,
                               .ext_key_usage = GW_EKU_CLIENT_AUTH,
                               .allowed_san_types = GW_SAN_DNS,
                               .max_ttl = 30 * DAY};
        struct cspec spec = base;
        struct gw_cert_plan plan;
        X509 *cert;

        if (exts[i].role == R_NONE)
            role.key_usage = role.ext_key_usage = 0;
        if (exts[i].role == R_KU_ONLY)
            role.ext_key_usage = 0;
        if (exts[i].role == R_EXT) {
            role.allowed_exts = allowed;
            role.n_allowed_exts = 1; /* the poison stays outside: a role lists what it allows */
        }
        spec.ku = exts[i].ku;
        spec.bc = exts[i].bc;
        cert = mkcert_ext(&spec, exts[i].eku, exts[i].ext, keys[K_P256], int_ca, keys[K_CA3]);
        mkplan(&plan, "CN=dev-1.example.com", "DNS:a.example.com", K_P256, 7 * DAY);
        check_issued_case(exts[i].name, &role, &plan, cert, exts[i].want, exts[i].want_err);
    }
    ASN1_OBJECT_free(allowed[0]);
    ASN1_OBJECT_free(allowed[1]);
}

static STACK_OF(X509_EXTENSION) *exts_of(const char *ext);

/*
 * A CA that copies the CSR's extensions (sign-verbatim, cfssl's copy_extensions, a CMP CA) may
 * write a CRL of its own, never the client's: an extension the CSR asked for that comes back the
 * same is refused (and revoked) unless the role allows it.
 */
static void test_check_issued_copied(void **state)
{
    static const struct cspec base = {
        "CN=dev-1.example.com", "DNS:a.example.com", NULL, "critical,digitalSignature", -60, 7 * DAY, 0};
    static const struct {
        const char *name;
        const char *csr, *cert; /* what the CSR asked for, what the CA put in (add_exts syntax) */
        int allow_crl;
        enum gw_issued_verdict want;
        const char *want_err;
    } cases[] = {
        {"the client's CRL", "crlDistributionPoints=URI:http://127.0.0.1/evil.crl",
         "crlDistributionPoints=URI:http://127.0.0.1/evil.crl", 0, GW_ISSUED_OUTSIDE_POLICY,
         "=the CA copied the CSR's crlDistributionPoints (2.5.29.31), outside role iot (not in its "
         "allowed_extensions)"},
        {"the client's OCSP responder", "authorityInfoAccess=OCSP;URI:http://127.0.0.1/ocsp",
         "authorityInfoAccess=OCSP;URI:http://127.0.0.1/ocsp", 0, GW_ISSUED_OUTSIDE_POLICY,
         "the CA copied the CSR's authorityInfoAccess (1.3.6.1.5.5.7.1.1), outside role iot"},
        /* twins: the CA's own CRL, asked for or not; a CRL the role lets devices name */
        {"the CA's own CRL", "crlDistributionPoints=URI:http://127.0.0.1/evil.crl",
         "crlDistributionPoints=URI:http://127.0.0.1/ca.crl", 0, GW_ISSUED_OK, "="},
        {"nothing asked", NULL, "crlDistributionPoints=URI:http://127.0.0.1/ca.crl", 0, GW_ISSUED_OK, "="},
        {"allowed", "crlDistributionPoints=URI:http://127.0.0.1/dev.crl",
         "crlDistributionPoints=URI:http://127.0.0.1/dev.crl", 1, GW_ISSUED_OK, "="},
    };
    ASN1_OBJECT *allowed[] = {OBJ_nid2obj(NID_crl_distribution_points)};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_role role = {.name = "iot",
                               .upstream_name = "vault",
                               .key_usage = KU_DIGITAL_SIGNATURE,
                               .allowed_san_types = GW_SAN_DNS,
                               .allowed_exts = cases[i].allow_crl ? allowed : NULL,
                               .n_allowed_exts = cases[i].allow_crl ? 1 : 0,
                               .max_ttl = 30 * DAY};
        X509 *cert = mkcert_ext(&base, NULL, cases[i].cert, keys[K_P256], int_ca, keys[K_CA3]);
        struct gw_cert_plan plan;

        mkplan(&plan, "CN=dev-1.example.com", "DNS:a.example.com", K_P256, 7 * DAY);
        plan.csr_exts = cases[i].csr != NULL ? exts_of(cases[i].csr) : NULL;
        check_issued_case(cases[i].name, &role, &plan, cert, cases[i].want, cases[i].want_err);
    }
}

/* More extensions than GW_MAX_CERT_EXTS are refused before they are compared pairwise. */
static void test_check_issued_too_many_exts(void **state)
{
    static const struct cspec base = {"CN=dev-1.example.com", NULL, NULL, NULL, -60, 7 * DAY, 0};
    struct gw_role role = {.name = "iot", .upstream_name = "vault", .max_ttl = 30 * DAY};
    char spec[GW_MAX_CERT_EXTS * 24], err[GW_ERR_LEN];
    struct gw_cert_plan plan;
    size_t off = 0;
    X509 *cert;

    (void)state;
    /* SKI and AKI are two; these make one more than the cap */
    for (int i = 0; i < GW_MAX_CERT_EXTS - 1; i++)
        off += (size_t)snprintf(spec + off, sizeof(spec) - off, "%s1.2.3.%d=DER:05:00", i > 0 ? "|" : "", i);
    cert = mkcert_ext(&base, NULL, spec, keys[K_P256], int_ca, keys[K_CA3]);
    mkplan(&plan, "CN=dev-1.example.com", NULL, K_P256, 7 * DAY);
    assert_int_equal(gw_policy_check_issued(&role, &plan, cert, NULL, st_issuer_int, NULL, NOW, NULL, err),
                     GW_ISSUED_BAD);
    check_err(
        "too many", err,
        "=the certificate upstream vault returned is malformed: 65 extensions are more than this gateway "
        "checks (at most 64)");
    gw_cert_plan_cleanup(&plan);
    X509_free(cert);
}

/* ---- gw_policy_check_csr: what sign-verbatim copies ---- */

/* exts_of: the '|'-separated "name=value" extensions |ext| (NULL: none), as a new stack. */
static STACK_OF(X509_EXTENSION) *exts_of(const char *ext)
{
    STACK_OF(X509_EXTENSION) *sk = sk_X509_EXTENSION_new_null();
    char buf[512], *p, *eq, *bar;

    assert_non_null(sk);
    snprintf(buf, sizeof(buf), "%s", ext != NULL ? ext : "");
    for (p = ext != NULL ? buf : NULL; p != NULL; p = bar != NULL ? bar + 1 : NULL) {
        X509_EXTENSION *e;

        if ((bar = strchr(p, '|')) != NULL)
            *bar = '\0';
        assert_non_null(eq = strchr(p, '='));
        *eq = '\0';
        assert_non_null(e = X509V3_EXT_nconf(NULL, NULL, p, eq + 1));
        assert_true(sk_X509_EXTENSION_push(sk, e) > 0);
    }
    return sk;
}

/* mkcsr: a CSR for K_P256 asking for the '|'-separated "name=value" extensions |ext| (NULL: none). */
static X509_REQ *mkcsr(const char *ext)
{
    STACK_OF(X509_EXTENSION) *sk = exts_of(ext);
    X509_REQ *req = X509_REQ_new();
    X509_NAME *n = mkname("CN=dev-1.example.com");

    assert_non_null(req);
    assert_int_equal(X509_REQ_set_subject_name(req, n), 1);
    assert_int_equal(X509_REQ_set_pubkey(req, keys[K_P256]), 1);
    if (sk_X509_EXTENSION_num(sk) > 0)
        assert_int_equal(X509_REQ_add_extensions(req, sk), 1);
    assert_true(X509_REQ_sign(req, keys[K_P256], EVP_sha256()) > 0);
    sk_X509_EXTENSION_pop_free(sk, X509_EXTENSION_free);
    X509_NAME_free(n);
    return req;
}

/*
 * mkcsr2: a CSR for K_P256 with two attributes holding the extensions |first| and |second|: two
 * extensionRequest attributes (|nid2| NID_ext_req), an extensionRequest and a Microsoft one
 * (NID_ms_ext_req), or (|nid2| 0) one extensionRequest with two values. OpenSSL will not add a
 * second attribute of a type, so the second is made as smimeCapabilities (an OID as long as
 * extensionRequest's) and renamed in the DER.
 */
static X509_REQ *mkcsr2(const char *first, const char *second, int nid2)
{
    static const unsigned char smime[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0f};
    STACK_OF(X509_EXTENSION) *sk1 = exts_of(first), *sk2 = exts_of(second);
    X509_REQ *req = mkcsr(NULL), *out;
    unsigned char *der = NULL, *d2 = NULL, *hit;
    const unsigned char *p;
    int len, len2;

    assert_int_equal(X509_REQ_add_extensions(req, sk1), 1);
    if (nid2 == 0) { /* a second value in the attribute X509_REQ_add_extensions made */
        X509_ATTRIBUTE *a = X509_REQ_get_attr(req, X509_REQ_get_attr_by_NID(req, NID_ext_req, -1));

        assert_true((len2 = i2d_X509_EXTENSIONS(sk2, &d2)) > 0);
        assert_int_equal(X509_ATTRIBUTE_set1_data(a, V_ASN1_SEQUENCE, d2, len2), 1);
    } else {
        assert_int_equal(
            X509_REQ_add_extensions_nid(req, sk2, nid2 == NID_ext_req ? NID_SMIMECapabilities : nid2), 1);
    }
    assert_true(X509_REQ_sign(req, keys[K_P256], EVP_sha256()) > 0);
    assert_true((len = i2d_X509_REQ(req, &der)) > 0);
    if (nid2 == NID_ext_req) {
        assert_non_null(hit = memmem(der, (size_t)len, smime, sizeof(smime)));
        hit[sizeof(smime) - 1] = 0x0e; /* 1.2.840.113549.1.9.15 -> .14 */
    }
    X509_REQ_free(req);
    p = der;
    assert_non_null(out = d2i_X509_REQ(NULL, &p, len));
    assert_true(X509_REQ_sign(out, keys[K_P256], EVP_sha256()) > 0); /* over the renamed attribute */
    OPENSSL_free(der);
    OPENSSL_free(d2);
    sk_X509_EXTENSION_pop_free(sk1, X509_EXTENSION_free);
    sk_X509_EXTENSION_pop_free(sk2, X509_EXTENSION_free);
    return out;
}

#define CSR_TAIL "; this route's CA copies the CSR's extensions: leave it out of the CSR"

static const struct {
    const char *name;
    const char *ext;
    int want_fi; /* 0: accepted */
    const char *want_err;
} csrs[] = {
    {"no extensions", NULL, 0, "="},
    {"names and usages within",
     "subjectAltName=DNS:a.example.com|keyUsage=critical,digitalSignature|extendedKeyUsage=clientAuth|"
     "basicConstraints=CA:FALSE",
     0, "="},
    {"codeSigning and OCSPSigning", "extendedKeyUsage=codeSigning,OCSPSigning,clientAuth", BT,
     "=extendedKeyUsage codeSigning, OCSPSigning is outside role sign-verbatim (allowed: "
     "clientAuth)" CSR_TAIL},
    {"nonRepudiation and dataEncipherment", "keyUsage=digitalSignature,nonRepudiation,dataEncipherment", BT,
     "=keyUsage nonRepudiation, dataEncipherment is outside role sign-verbatim (allowed: digitalSignature, "
     "keyAgreement)" CSR_TAIL},
    {"CA:TRUE", "basicConstraints=critical,CA:TRUE", BT,
     "=basicConstraints cA TRUE is outside role sign-verbatim (end-entity certificates only)" CSR_TAIL},
    {"an unknown extension", "1.2.3.4=DER:05:00", BT,
     "=extension 1.2.3.4 is outside role sign-verbatim (not in its allowed_extensions)" CSR_TAIL},
    {"keyUsage twice", "keyUsage=digitalSignature|keyUsage=keyAgreement", BT, "appears twice"},
    {"a subjectKeyIdentifier", "subjectKeyIdentifier=01:02:03:04", 0, "="},
    /* what the CA writes of its own accord, never what the client says: deny by default */
    {"the client's CRL", "crlDistributionPoints=URI:http://127.0.0.1/evil.crl", BT,
     "=extension crlDistributionPoints (2.5.29.31) is outside role sign-verbatim (not in its "
     "allowed_extensions)" CSR_TAIL},
    {"the client's OCSP responder", "authorityInfoAccess=OCSP;URI:http://127.0.0.1/ocsp", BT,
     "=extension authorityInfoAccess (1.3.6.1.5.5.7.1.1) is outside role sign-verbatim (not in its "
     "allowed_extensions)" CSR_TAIL},
    {"policies the CA never granted", "certificatePolicies=DER:30:09:30:07:06:05:67:81:0c:01:02:01", BT,
     "=extension certificatePolicies (2.5.29.32) is outside role sign-verbatim (not in its "
     "allowed_extensions)" CSR_TAIL},
    {"the client's authorityKeyIdentifier", "authorityKeyIdentifier=DER:30:06:80:04:01:02:03:04", BT,
     "=extension authorityKeyIdentifier (2.5.29.35) is outside role sign-verbatim (not in its "
     "allowed_extensions)" CSR_TAIL},
    {"an SCT list", "1.3.6.1.4.1.11129.2.4.2=DER:04:00", BT,
     "extension ct_precert_scts (1.3.6.1.4.1.11129.2.4.2)"},
    {"OCSP must-staple", "tlsfeature=status_request", BT, "extension tlsfeature (1.3.6.1.5.5.7.1.24)"},
    {"policyConstraints", "policyConstraints=requireExplicitPolicy:0", BT, "extension policyConstraints"},
    {"inhibitAnyPolicy", "inhibitAnyPolicy=0", BT, "extension inhibitAnyPolicy"},
    {"the CRL after a name within",
     "subjectAltName=DNS:a.example.com|crlDistributionPoints=URI:http://x/c.crl", BT,
     "extension crlDistributionPoints (2.5.29.31)"},
};

static void test_check_csr(void **state)
{
    struct gw_role role = {.name = "sign-verbatim",
                           .key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT,
                           .ext_key_usage = GW_EKU_CLIENT_AUTH,
                           .sign_policy = GW_SIGN_VERBATIM};
    char err[GW_ERR_LEN];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(csrs) / sizeof(csrs[0]); i++) {
        X509_REQ *req = mkcsr(csrs[i].ext);
        int fi = -1, rc = gw_policy_check_csr(&role, req, &fi, err);

        if ((rc == 0) != (csrs[i].want_fi == 0) || fi != csrs[i].want_fi)
            fail_msg("%s: rc %d fail_info %d err \"%s\"", csrs[i].name, rc, fi, err);
        check_err(csrs[i].name, err, csrs[i].want_err);
        X509_REQ_free(req);
    }
    assert_int_equal(gw_policy_check_csr(NULL, NULL, &(int){0}, err), GW_ERR_POLICY);
}

/* A role's allowed_extensions is the one way a CSR the CA copies gets any other extension. */
static void test_check_csr_allowed(void **state)
{
    ASN1_OBJECT *allowed[] = {OBJ_nid2obj(NID_crl_distribution_points)};
    struct gw_role role = {.name = "sign-verbatim",
                           .key_usage = KU_DIGITAL_SIGNATURE,
                           .allowed_exts = allowed,
                           .n_allowed_exts = 1,
                           .sign_policy = GW_SIGN_VERBATIM};
    X509_REQ *crl = mkcsr("crlDistributionPoints=URI:http://127.0.0.1/ca.crl");
    X509_REQ *aia = mkcsr("authorityInfoAccess=OCSP;URI:http://127.0.0.1/ocsp");
    char err[GW_ERR_LEN];
    int fi = -1;

    (void)state;
    assert_int_equal(gw_policy_check_csr(&role, crl, &fi, err), 0);
    assert_int_equal(fi, 0);
    assert_int_equal(gw_policy_check_csr(&role, aia, &fi, err), GW_ERR_POLICY);
    assert_int_equal(fi, BT);
    check_err("aia", err, "extension authorityInfoAccess (1.3.6.1.5.5.7.1.1) is outside role sign-verbatim");
    X509_REQ_free(crl);
    X509_REQ_free(aia);
}

/*
 * One extensionRequest, one value: OpenSSL reads the first attribute's first value, Go (Vault)
 * appends every extensionRequest attribute's extensions. A CSR whose first attribute is harmless
 * and whose second asks for a CRL would be checked on the first and signed with both.
 */
static void test_check_csr_attributes(void **state)
{
    static const struct {
        const char *name;
        int nid2;
        const char *want;
    } cases[] = {
        {"two extensionRequest attributes", NID_ext_req,
         "=the CSR asks for extensions in more than one extensionRequest attribute or value: put every "
         "extension into one (RFC 2985 §5.4.2)"},
        {"an extensionRequest and a Microsoft one", NID_ms_ext_req,
         "=the CSR asks for extensions in more than one extensionRequest attribute or value: put every "
         "extension into one (RFC 2985 §5.4.2)"},
        {"two values", 0,
         "=the CSR asks for extensions in more than one extensionRequest attribute or value: put every "
         "extension into one (RFC 2985 §5.4.2)"},
    };
    struct gw_role role = {.name = "sign-verbatim",
                           .key_usage = KU_DIGITAL_SIGNATURE,
                           .ext_key_usage = GW_EKU_CLIENT_AUTH,
                           .sign_policy = GW_SIGN_VERBATIM};
    char err[GW_ERR_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509_REQ *req = mkcsr2("subjectAltName=DNS:a.example.com",
                               "crlDistributionPoints=URI:http://127.0.0.1/evil.crl", cases[i].nid2);
        int fi = -1, rc = gw_policy_check_csr(&role, req, &fi, err);

        if (rc != GW_ERR_POLICY || fi != BT)
            fail_msg("%s: rc %d fail_info %d err \"%s\"", cases[i].name, rc, fi, err);
        check_err(cases[i].name, err, cases[i].want);
        X509_REQ_free(req);
    }
}

/* ---- gw_policy_check_upstream_grants: a Vault role's usages before it signs ---- */

#define SU OSSL_CMP_PKIFAILUREINFO_systemUnavail
#define VAULT_DEFAULT_KU (KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | KU_KEY_ENCIPHERMENT)

static const struct {
    const char *name;
    unsigned ku, eku; /* what the Vault role grants */
    const char *other;
    int want_fi;
    const char *want_err;
} grants[] = {
    {"the same", KU_DIGITAL_SIGNATURE, GW_EKU_CLIENT_AUTH, "", 0, "="},
    /* Vault writes no keyUsage or extendedKeyUsage for none granted: any usage, not less */
    {"none", 0, 0, "", SU,
     "=upstream role devices grants any keyUsage (it writes none) and any extendedKeyUsage (it writes none), "
     "which role iot does not allow; restrict the Vault role (key_usage, ext_key_usage)"},
    {"no keyUsage", 0, GW_EKU_CLIENT_AUTH, "", SU,
     "=upstream role devices grants any keyUsage (it writes none), which role iot does not allow; restrict "
     "the Vault role (key_usage)"},
    {"no extendedKeyUsage", KU_DIGITAL_SIGNATURE, 0, "", SU,
     "=upstream role devices grants any extendedKeyUsage (it writes none), which role iot does not allow; "
     "restrict the Vault role (ext_key_usage)"},
    {"an OID alone is an extendedKeyUsage", KU_DIGITAL_SIGNATURE, 0, "1.3.6.1.5.5.7.3.17", SU,
     "=upstream role devices grants extendedKeyUsage 1.3.6.1.5.5.7.3.17, which role iot does not allow; "
     "restrict the Vault role (ext_key_usage, ext_key_usage_oids)"},
    {"Vault's defaults", VAULT_DEFAULT_KU, GW_EKU_SERVER_AUTH | GW_EKU_CLIENT_AUTH, "", SU,
     "=upstream role devices grants keyUsage keyEncipherment, keyAgreement and extendedKeyUsage serverAuth, "
     "which role iot does not allow; restrict the Vault role (key_usage, server_flag, ext_key_usage)"},
    {"a flag", KU_DIGITAL_SIGNATURE, GW_EKU_CLIENT_AUTH | GW_EKU_CODE_SIGNING, "", SU,
     "=upstream role devices grants extendedKeyUsage codeSigning, which role iot does not allow; restrict "
     "the "
     "Vault role (code_signing_flag, ext_key_usage)"},
    {"keyUsage only", KU_DIGITAL_SIGNATURE | KU_DATA_ENCIPHERMENT, GW_EKU_CLIENT_AUTH, "", SU,
     "=upstream role devices grants keyUsage dataEncipherment, which role iot does not allow; restrict the "
     "Vault "
     "role (key_usage)"},
    {"Vault's Any", KU_DIGITAL_SIGNATURE, GW_EKU_CLIENT_AUTH, "Any", SU,
     "=upstream role devices grants extendedKeyUsage Any, which role iot does not allow; restrict the Vault "
     "role "
     "(ext_key_usage)"},
    {"an OID", 0, 0, "1.3.6.1.5.5.7.3.17", SU,
     "=upstream role devices grants any keyUsage (it writes none) and extendedKeyUsage 1.3.6.1.5.5.7.3.17, "
     "which role iot does not allow; restrict the Vault role (key_usage, ext_key_usage, ext_key_usage_oids)"},
};

static void test_upstream_grants(void **state)
{
    struct gw_role role = {
        .name = "iot", .key_usage = KU_DIGITAL_SIGNATURE, .ext_key_usage = GW_EKU_CLIENT_AUTH};
    char err[GW_ERR_LEN];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(grants) / sizeof(grants[0]); i++) {
        struct gw_role_policy p = {.key_usage = grants[i].ku, .ext_key_usage = grants[i].eku};
        int fi = -1, rc;

        snprintf(p.other_eku, sizeof(p.other_eku), "%s", grants[i].other);
        rc = gw_policy_check_upstream_grants(&role, "devices", &p, &fi, err);
        if ((rc == 0) != (grants[i].want_fi == 0) || fi != grants[i].want_fi)
            fail_msg("%s: rc %d fail_info %d err \"%s\"", grants[i].name, rc, fi, err);
        check_err(grants[i].name, err, grants[i].want_err);
    }
    /* twin: a role that lists no usages allows any, so a Vault role granting none is within it */
    {
        struct gw_role any = {.name = "any"};
        struct gw_role_policy p = {0};
        int fi = -1;

        assert_int_equal(gw_policy_check_upstream_grants(&any, "devices", &p, &fi, err), 0);
        assert_int_equal(fi, 0);
    }
}

static void test_check_issued_null(void **state)
{
    struct gw_role role = {.name = "iot"};
    struct gw_cert_plan plan;
    char err[GW_ERR_LEN];

    (void)state;
    mkplan(&plan, "CN=x", NULL, K_P256, DAY);
    assert_int_equal(gw_policy_check_issued(&role, &plan, NULL, NULL, st_issuer_int, NULL, NOW, NULL, err),
                     GW_ISSUED_BAD);
    assert_string_equal(err, "the upstream returned no certificate");
    assert_int_equal(gw_policy_check_issued(NULL, &plan, tls[C_DEV1], NULL, st_tls, NULL, NOW, NULL, err),
                     GW_ISSUED_BAD);
    gw_cert_plan_cleanup(&plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern),
        cmocka_unit_test(test_pattern_no_blowup),
        cmocka_unit_test(test_subject_pattern),
        cmocka_unit_test(test_authorize),
        cmocka_unit_test(test_authorize_tls_weak),
        cmocka_unit_test(test_authorize_long_list),
        cmocka_unit_test(test_authorize_null),
        cmocka_unit_test(test_check_request),
        cmocka_unit_test(test_check_request_bare_host),
        cmocka_unit_test(test_check_request_control_char),
        cmocka_unit_test(test_check_request_hidden_char),
        cmocka_unit_test(test_check_request_wildcards),
        cmocka_unit_test(test_check_names),
        cmocka_unit_test(test_upstream_role),
        cmocka_unit_test(test_upstream_role_cn_disabled),
        cmocka_unit_test(test_upstream_subject),
        cmocka_unit_test(test_upstream_cn_san),
        cmocka_unit_test(test_cn_copy_san_type),
        cmocka_unit_test(test_upstream_cn_san_issued),
        cmocka_unit_test(test_check_issued),
        cmocka_unit_test(test_check_issued_uri),
        cmocka_unit_test(test_check_issued_email),
        cmocka_unit_test(test_check_issued_longer),
        cmocka_unit_test(test_check_issued_start_and_wildcard),
        cmocka_unit_test(test_check_issued_collected_late),
        cmocka_unit_test(test_check_issued_path),
        cmocka_unit_test(test_check_issued_links),
        cmocka_unit_test(test_links_byte_for_byte),
        cmocka_unit_test(test_check_issued_subject),
        cmocka_unit_test(test_check_issued_allowed_subjects),
        cmocka_unit_test(test_upstream_subject_allowed_subjects),
        cmocka_unit_test(test_check_issued_serial),
        cmocka_unit_test(test_serial_hex),
        cmocka_unit_test(test_check_issued_weak_signature),
        cmocka_unit_test(test_check_issued_subject_encoding),
        cmocka_unit_test(test_check_issued_null),
        cmocka_unit_test(test_check_issued_exts),
        cmocka_unit_test(test_check_issued_copied),
        cmocka_unit_test(test_check_issued_too_many_exts),
        cmocka_unit_test(test_check_csr),
        cmocka_unit_test(test_check_csr_allowed),
        cmocka_unit_test(test_check_csr_attributes),
        cmocka_unit_test(test_upstream_grants),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
