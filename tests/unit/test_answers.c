/*
 * Unit tests for the upstream answer parsers (upstream/answers.h, upstream/field.h), on bytes alone:
 * for each parser a valid answer, and for each field it reads its hostile twins (wrong type,
 * negative, too large, too long, empty, NUL inside, missing, duplicated key), and for the document
 * trailing data, truncation, bad UTF-8 and a root that is not an object. Each refusal is asserted
 * with its reason. Every body is handed over in a heap buffer of exactly its length, with no NUL
 * after it, so that ASan sees a read past |len|.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "upstream/answers.h"
#include "upstream/field.h"
#include "tests/unit/testutil.h"

static EVP_PKEY *ca_key, *leaf_key;
static X509 *ca, *leaf;

/* ---- bodies: templates with @TAG@ placeholders ---- */

struct tag {
    const char *name;
    char *text;
    size_t len;
};

static struct tag tags[56];
static size_t n_tags;

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        assert_non_null(b->p = realloc(b->p, b->cap));
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void add_tag(const char *name, struct buf *b)
{
    assert_true(n_tags < sizeof(tags) / sizeof(tags[0]));
    tags[n_tags++] = (struct tag){name, b->p, b->len};
    memset(b, 0, sizeof(*b));
}

/* A JSON string literal of |s| (|n| bytes), quotes included. */
static void quote(struct buf *b, const char *s, size_t n)
{
    char esc[8];
    size_t i;

    puts_(b, "\"");
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            puts_(b, esc);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    puts_(b, "\"");
}

static void tag_quoted(const char *name, const char *s, size_t n)
{
    struct buf b = {0};

    quote(&b, s, n);
    add_tag(name, &b);
}

/* |n| times |item| joined by ",". */
static void tag_repeat(const char *name, const char *item, size_t n)
{
    struct buf b = {0};

    puts_(&b, "");
    for (size_t i = 0; i < n; i++) {
        if (i != 0)
            puts_(&b, ",");
        puts_(&b, item);
    }
    add_tag(name, &b);
}

static void tag_number(const char *name, long long v)
{
    struct buf b = {0};
    char num[32];

    snprintf(num, sizeof(num), "%lld", v);
    puts_(&b, num);
    add_tag(name, &b);
}

/* |tmpl| with every @TAG@ replaced, into an exact heap buffer of |*len| bytes (no NUL after it). */
static char *body_of(const char *tmpl, size_t *len)
{
    struct buf b = {0};
    const char *p = tmpl;
    char *out;
    size_t i, tl = 0;

    puts_(&b, "");
    while (*p != '\0') {
        if (*p != '@') {
            put(&b, p++, 1);
            continue;
        }
        for (i = 0; i < n_tags; i++)
            if (strncmp(p, tags[i].name, (tl = strlen(tags[i].name))) == 0)
                break;
        if (i == n_tags)
            fail_msg("unknown tag in %.40s", p);
        put(&b, tags[i].text, tags[i].len);
        p += tl;
    }
    *len = b.len;
    assert_non_null(out = malloc(b.len > 0 ? b.len : 1));
    memcpy(out, b.p, b.len);
    free(b.p);
    return out;
}

/* base64 of |der| as a JSON string literal. */
static void tag_base64(const char *name, const unsigned char *der, size_t n)
{
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);

    EVP_EncodeBlock((unsigned char *)b64, der, (int)n);
    tag_quoted(name, b64, strlen(b64));
    free(b64);
}

static int setup(void **state)
{
    struct buf b = {0};
    char *leaf_pem, *ca_pem, *big;
    unsigned char *der = NULL;
    X509_CRL *crl;
    int n;

    (void)state;
    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ca = tu_make_cert(ca_key, ca_key, NULL, "answers CA", 1);
    leaf = tu_make_cert(leaf_key, ca_key, ca, "dev.example.com", 12345);
    leaf_pem = tu_pem_of(leaf);
    ca_pem = tu_pem_of(ca);

    tag_quoted("@LEAF@", leaf_pem, strlen(leaf_pem));
    tag_quoted("@CA@", ca_pem, strlen(ca_pem));
    puts_(&b, leaf_pem);
    puts_(&b, ca_pem);
    tag_quoted("@TWO@", b.p, b.len);
    free(b.p);
    memset(&b, 0, sizeof(b));
    for (int i = 0; i < 9; i++)
        puts_(&b, ca_pem);
    tag_quoted("@NINE@", b.p, b.len);
    free(b.p);
    memset(&b, 0, sizeof(b));
    tag_quoted("@GARBAGE@", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 58);
    /* a PEM block whose DER goes on after the certificate */
    {
        unsigned char *d = NULL, *longer;
        int dn = i2d_X509(leaf, &d);
        BIO *m = BIO_new(BIO_s_mem());
        char *t;
        long tn;

        assert_true(dn > 0);
        assert_non_null(longer = calloc(1, (size_t)dn + 1));
        memcpy(longer, d, (size_t)dn);
        assert_int_equal(PEM_write_bio(m, PEM_STRING_X509, "", longer, dn + 1) > 0, 1);
        tn = BIO_get_mem_data(m, &t);
        tag_quoted("@TRAILING@", t, (size_t)tn);
        BIO_free(m);
        free(longer);
        OPENSSL_free(d);
    }
    /* an encrypted PEM: OpenSSL would ask for a passphrase on the terminal */
    puts_(&b, "-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n"
              "DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n");
    puts_(&b, strchr(leaf_pem, '\n') + 1);
    tag_quoted("@ENC@", b.p, b.len);
    free(b.p);
    memset(&b, 0, sizeof(b));
    /* "\u0000" inside the PEM: C would read it shorter than it was sent */
    puts_(&b, "\"\\u0000");
    {
        struct buf q = {0};

        quote(&q, leaf_pem, strlen(leaf_pem));
        put(&b, q.p + 1, q.len - 1);
        free(q.p);
    }
    add_tag("@LEAFNUL@", &b);
    /* a PEM string one byte over GW_MAX_UPSTREAM_PEM, and one of exactly that size */
    big = calloc(1, GW_MAX_UPSTREAM_PEM + 2);
    memset(big, 'x', GW_MAX_UPSTREAM_PEM + 1);
    memcpy(big, leaf_pem, strlen(leaf_pem));
    tag_quoted("@PEMOVER@", big, GW_MAX_UPSTREAM_PEM + 1);
    tag_quoted("@PEMMAX@", big, GW_MAX_UPSTREAM_PEM);
    free(big);
    big = calloc(1, GW_MAX_UPSTREAM_MESSAGE + 2);
    memset(big, 'a', GW_MAX_UPSTREAM_MESSAGE + 1);
    tag_quoted("@MSGOVER@", big, GW_MAX_UPSTREAM_MESSAGE + 1);
    free(big);
    big = calloc(1, GW_MAX_VAULT_TOKEN_LEN + 2);
    memset(big, 't', GW_MAX_VAULT_TOKEN_LEN + 1);
    tag_quoted("@TOKOVER@", big, GW_MAX_VAULT_TOKEN_LEN + 1);
    tag_quoted("@TOKMAX@", big, GW_MAX_VAULT_TOKEN_LEN);
    free(big);
    big = calloc(1, GW_MAX_PATTERN_LEN + 2);
    memset(big, 'd', GW_MAX_PATTERN_LEN + 1);
    tag_quoted("@DOMOVER@", big, GW_MAX_PATTERN_LEN + 1);
    free(big);
    big = calloc(1, GW_MAX_ISSUER_REF_LEN + 2);
    memset(big, 'r', GW_MAX_ISSUER_REF_LEN + 1);
    tag_quoted("@REFOVER@", big, GW_MAX_ISSUER_REF_LEN + 1);
    free(big);
    big = calloc(1, GW_MAX_OID_TEXT + 2);
    memset(big, '1', GW_MAX_OID_TEXT + 1);
    memcpy(big, "1.3.6.1.5.5.7.3.", 16);
    tag_quoted("@OIDOVER@", big, GW_MAX_OID_TEXT + 1);
    big[GW_MAX_OID_TEXT + 1] = '\0';
    {
        char s[GW_MAX_OID_TEXT + 32];

        snprintf(s, sizeof(s), "\"ClientAuth,%s\"", big);
        puts_(&b, s);
        add_tag("@COMMAOVER@", &b);
    }
    free(big);
    tag_repeat("@S16@", "\"w\"", GW_MAX_UPSTREAM_MESSAGES);
    tag_repeat("@S17@", "\"w\"", GW_MAX_UPSTREAM_MESSAGES + 1);
    tag_repeat("@E17@", "{\"code\":1,\"message\":\"m\"}", GW_MAX_UPSTREAM_MESSAGES + 1);
    tag_repeat("@D257@", "\"example.com\"", GW_MAX_PATTERNS + 1);
    /* with the document's '{' and the two arrays' '[': the cap, one over it, and a MiB of objects */
    tag_repeat("@OBJCAP@", "{}", GW_MAX_UPSTREAM_CONTAINERS - 3);
    tag_repeat("@OBJOVER@", "{}", GW_MAX_UPSTREAM_CONTAINERS - 2);
    tag_repeat("@OBJMIB@", "{}", (GW_MAX_UPSTREAM_BODY - 64) / 3);
    big = malloc(GW_MAX_UPSTREAM_CONTAINERS + 1);
    assert_non_null(big);
    memset(big, '[', GW_MAX_UPSTREAM_CONTAINERS + 1);
    tag_quoted("@BRACKETS@", big, GW_MAX_UPSTREAM_CONTAINERS + 1);
    free(big);
    /* a role's templated patterns, as Vault writes them back: two '{' (and two '}') in each string */
    tag_repeat("@URITMPL256@", "\"spiffe://x/{{identity.entity.aliases.auth_cert_1.name}}\"",
               GW_MAX_PATTERNS);
    tag_repeat("@DOMTMPL256@", "\"{{identity.entity.metadata.host}}.example.com\"", GW_MAX_PATTERNS);
    tag_repeat("@ESCAPED@", "\"\\\"{[\\\\\"", GW_MAX_UPSTREAM_CONTAINERS);
    {
        const struct tag *c = &tags[1]; /* @CA@ */
        char *item = strndup(c->text, c->len);

        tag_repeat("@CHAIN16@", item, GW_MAX_UPSTREAM_CHAIN);
        tag_repeat("@CHAIN17@", item, GW_MAX_UPSTREAM_CHAIN + 1);
        free(item);
    }
    tag_number("@LEASEMAX@", GW_MAX_VAULT_LEASE);
    tag_number("@LEASEOVER@", (long long)GW_MAX_VAULT_LEASE + 1);
    tag_number("@TTLMAX@", (long long)GW_MAX_CERT_TTL);
    tag_number("@TTLOVER@", (long long)GW_MAX_CERT_TTL + 1);
    tag_number("@TIMEMAX@", GW_MAX_UPSTREAM_TIME);
    tag_number("@TIMEOVER@", GW_MAX_UPSTREAM_TIME + 1);
    tag_number("@CODEOVER@", GW_MAX_CFSSL_CODE + 1);
    tag_number("@BITSOVER@", GW_MAX_RSA_BITS + 1);
    /* a raw NUL byte in the body itself */
    put(&b, "", 1);
    add_tag("@NUL@", &b);
    /* a CRL of the CA, one with bytes after it, and DER that is not a CRL */
    crl = X509_CRL_new();
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca));
    {
        ASN1_TIME *t = ASN1_TIME_adj(NULL, 0, 0, 0);

        X509_CRL_set1_lastUpdate(crl, t);
        ASN1_TIME_free(t);
    }
    assert_true(X509_CRL_sign(crl, ca_key, EVP_sha256()) > 0);
    n = i2d_X509_CRL(crl, &der);
    assert_true(n > 0);
    tag_base64("@CRL@", der, (size_t)n);
    der = realloc(der, (size_t)n + 3);
    memcpy(der + n, "\x05\x00\x00", 3);
    tag_base64("@CRLTRAIL@", der, (size_t)n + 3);
    OPENSSL_free(der);
    der = NULL;
    X509_CRL_free(crl);
    n = i2d_X509(leaf, &der);
    tag_base64("@NOTCRL@", der, (size_t)n);
    OPENSSL_free(der);
    free(leaf_pem);
    free(ca_pem);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_tags; i++)
        free(tags[i].text);
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(leaf_key);
    return 0;
}

/* ---- running a parser on a template ---- */

enum parser {
    VAULT_ERROR,
    VAULT_LOGIN,
    VAULT_SIGN,
    VAULT_REVOKE,
    VAULT_CERT,
    VAULT_ROLE,
    CFSSL_ENVELOPE,
    CFSSL_SIGN,
    CFSSL_INFO,
    CFSSL_CRL,
};

union outs {
    struct gw_vault_error error;
    struct gw_vault_login login;
    struct gw_vault_signed sign;
    struct gw_vault_revoked revoke;
    struct gw_vault_cert cert;
    struct gw_role_policy role;
    struct gw_cfssl_envelope env;
    struct gw_cfssl_cert ccert;
    struct gw_cfssl_crl crl;
};

static int parse(enum parser p, const char *body, size_t len, union outs *o, char *err)
{
    switch (p) {
    case VAULT_ERROR:
        return gw_vault_parse_error(body, len, NULL, &o->error, err);
    case VAULT_LOGIN:
        return gw_vault_parse_login(body, len, &o->login, err);
    case VAULT_SIGN:
        return gw_vault_parse_sign(body, len, NULL, &o->sign, err);
    case VAULT_REVOKE:
        return gw_vault_parse_revoke(body, len, NULL, &o->revoke, err);
    case VAULT_CERT:
        return gw_vault_parse_cert(body, len, &o->cert, err);
    case VAULT_ROLE:
        return gw_vault_parse_role(body, len, NULL, &o->role, err);
    case CFSSL_ENVELOPE:
        return gw_cfssl_parse_envelope(body, len, &o->env, err);
    case CFSSL_SIGN:
        return gw_cfssl_parse_sign(body, len, &o->ccert, err);
    case CFSSL_INFO:
        return gw_cfssl_parse_info(body, len, &o->ccert, err);
    case CFSSL_CRL:
        return gw_cfssl_parse_crl(body, len, &o->crl, err);
    }
    return -1;
}

static void outs_cleanup(enum parser p, union outs *o)
{
    switch (p) {
    case VAULT_LOGIN:
        gw_vault_login_cleanup(&o->login);
        break;
    case VAULT_SIGN:
        gw_vault_signed_cleanup(&o->sign);
        break;
    case VAULT_ROLE:
        gw_role_policy_cleanup(&o->role);
        break;
    case CFSSL_SIGN:
    case CFSSL_INFO:
        gw_cfssl_cert_cleanup(&o->ccert);
        break;
    case CFSSL_CRL:
        gw_cfssl_crl_cleanup(&o->crl);
        break;
    default:
        break;
    }
}

/* Parses template |tmpl| with |p| into |o| (the caller cleans it up); returns the parser's code. */
static int parse_tmpl(enum parser p, const char *tmpl, union outs *o, char *err)
{
    size_t len;
    char *body = body_of(tmpl, &len);
    int rc;

    memset(o, 0xa5, sizeof(*o)); /* the parser starts from nothing it did not write */
    err[0] = '\0';
    rc = parse(p, body, len, o, err);
    free(body);
    return rc;
}

struct acase {
    const char *name;
    const char *body;
    int rc;             /* 0: accepted */
    const char *reason; /* refused: the reason contains this */
};

static void run_cases(enum parser p, const struct acase *cases, size_t n)
{
    char err[GW_ERR_LEN];
    union outs o;
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        rc = parse_tmpl(p, cases[i].body, &o, err);
        outs_cleanup(p, &o);
        if (rc != cases[i].rc || (cases[i].reason != NULL && strstr(err, cases[i].reason) == NULL) ||
            (rc != 0 && strchr(err, '\n') != NULL))
            fail_msg("%s: rc %d (want %d), reason \"%s\" (want \"%s\")", cases[i].name, rc, cases[i].rc, err,
                     cases[i].reason != NULL ? cases[i].reason : "");
    }
}

#define RUN(p, cases) run_cases(p, cases, sizeof(cases) / sizeof(cases[0]))
#define UP GW_ERR_UPSTREAM

/* ---- the document, for every parser ---- */

static void test_document(void **state)
{
    static const struct acase cases[] = {
        {"empty", "", UP, "the answer is empty"},
        {"whitespace only", " \r\n\t", UP, "the answer is empty"},
        {"truncated", "{\"errors\":[\"x\"", UP, "truncated"},
        {"trailing data", "{\"errors\":[]} x", UP, "trailing data after the JSON document, at byte 14 of 15"},
        {"second document", "{\"errors\":[]}{}", UP, "trailing data"},
        {"NUL after the document", "{\"errors\":[]}@NUL@", UP, "trailing data"},
        {"NUL inside", "{\"errors\":[@NUL@]}", UP, "not Vault JSON"},
        {"array root", "[\"x\"]", UP, "the JSON document is an array, not an object"},
        {"string root", "\"x\"", UP, "is a string, not an object"},
        {"number root", "42", UP, "is an integer, not an object"},
        {"null root", "null", UP, "is null, not an object"},
        {"comment", "/* x */ {\"errors\":[]}", UP, "not Vault JSON"},
        {"trailing comma", "{\"errors\":[],}", UP, "not Vault JSON"},
        {"bad UTF-8", "{\"errors\":[\"\xff\"]}", UP, "not Vault JSON: invalid utf-8"},
        {"deep nesting",
         "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", UP,
         "not Vault JSON"},
        /* json-c spends some 750 bytes on an object: 1 MiB of them took 260 MB before any field was read */
        {"objects and arrays at the cap", "{\"errors\":[],\"pad\":[@OBJCAP@]}", 0, NULL},
        {"objects and arrays over the cap", "{\"errors\":[],\"pad\":[@OBJOVER@]}", UP,
         "not Vault JSON: the answer holds more than 1024 '{' and '[' (objects and arrays)"},
        {"a MiB of empty objects", "{\"errors\":[],\"pad\":[@OBJMIB@]}", UP, "more than 1024 '{' and '['"},
        /* only json-c's objects and arrays count: brackets in a string, after escaped quotes and backslashes,
           are characters */
        {"brackets in a string", "{\"errors\":[],\"note\":@BRACKETS@}", 0, NULL},
        {"brackets after escapes", "{\"errors\":[],\"notes\":[@ESCAPED@]}", 0, NULL},
        {"objects after escapes over the cap", "{\"errors\":[],\"notes\":[\"\\\\\",@OBJOVER@]}", UP,
         "more than 1024 '{' and '['"},
        /* json-c takes a single-quoted key even when strict: a '"' in it opens no string */
        {"objects after a single-quoted key over the cap", "{'\"':[@OBJOVER@],\"errors\":[]}", UP,
         "more than 1024 '{' and '['"},
        {"a single-quoted key's brackets", "{'[{\"':1,\"errors\":[]}", 0, NULL},
        /* twins that are fine: whitespace after the document, as Go's json.Encoder writes it */
        {"newline after", "{\"errors\":[]}\n", 0, NULL},
        {"whitespace around", " \t{\"errors\":[]}\r\n ", 0, NULL},
    };
    char err[GW_ERR_LEN];

    (void)state;
    RUN(VAULT_ERROR, cases);
    /* cfssl says it in its own words; the same checks apply */
    assert_int_equal(
        gw_cfssl_parse_envelope("{\"success\":true}\n{}", 19, &(struct gw_cfssl_envelope){0}, err), UP);
    assert_non_null(strstr(err, "not a cfssl envelope: trailing data"));
    assert_int_equal(gw_cfssl_parse_envelope(NULL, 0, &(struct gw_cfssl_envelope){0}, err), UP);
    assert_non_null(strstr(err, "not a cfssl envelope: the answer is empty"));
}

/* ---- Vault ---- */

static void test_vault_error(void **state)
{
    static const struct acase cases[] = {
        {"no errors", "{}", 0, NULL},
        {"errors null", "{\"errors\":null}", 0, NULL},
        {"errors 16", "{\"errors\":[@S16@]}", 0, NULL},
        {"errors a string", "{\"errors\":\"x\"}", UP, "errors is a string, not an array"},
        {"errors 17", "{\"errors\":[@S17@]}", UP, "errors has 17 entries, more than 16"},
        {"entry a number", "{\"errors\":[\"a\",42]}", UP, "errors[1] is an integer, not a string"},
        {"entry null", "{\"errors\":[null]}", UP, "errors[0] is missing or null"},
        {"entry too long", "{\"errors\":[@MSGOVER@]}", UP, "errors[0] is 4097 bytes, more than 4096"},
        {"entry NUL", "{\"errors\":[\"a\\u0000b\"]}", UP, "errors[0] holds a NUL byte"},
    };
    char err[GW_ERR_LEN];
    union outs o;

    (void)state;
    RUN(VAULT_ERROR, cases);
    assert_int_equal(parse_tmpl(VAULT_ERROR, "{\"errors\":[\"a\",\"\",\"bad\\nline\\u0001x\"]}", &o, err), 0);
    assert_string_equal(o.error.message, "a; bad?line?x");
    /* a long message is cut to the buffer, and never inside a UTF-8 character */
    assert_int_equal(parse_tmpl(VAULT_ERROR, "{\"errors\":[@MSGOVER@]}", &o, err), UP);
    assert_int_equal(o.error.message[0], '\0');
}

/*
 * An answer that is Vault's own word that it acted on nothing: one key, one entry, the message Vault's
 * HTTP layer writes for that status, whole (a 429's around the request path it names). Its twins: a
 * proxy's text or page, JSON of another shape, more beside it, the message inside a longer one or cut
 * by a NUL, a document with more after it, another status's message.
 */
static void test_vault_own_refusal(void **state)
{
    static const struct {
        long status;
        const char *body;
        bool own;
    } cases[] = {
        {503, "{\"errors\":[\"Vault is sealed\"]}", true},
        {503, "{\"errors\": [\"Vault is sealed\"]}\n", true},
        {503, "{\"errors\":[\"no active Vault instance found\"]}", true},
        {503, "{\"errors\":[\"node is not active\"]}", true},
        {503, "upstream connect error or disconnect/reset before headers. reset reason: overflow", false},
        {503, "<html><body>503 Service Unavailable</body></html>", false},
        {503, "", false},
        {503, "{}", false},
        {503, "{\"errors\":[]}", false},
        {503, "{\"errors\":null}", false},
        {503, "{\"errors\":\"Vault is sealed\"}", false},
        {503, "{\"errors\":[42]}", false},
        {503, "{\"errors\":[\"Vault is sealed\",\"Vault is sealed\"]}", false},
        {503, "{\"errors\":[\"Vault is sealed\"],\"warnings\":[]}", false},
        {503, "{\"errors\":[\"vault is sealed\"]}", false},
        {503, "{\"errors\":[\"Vault is sealed.\"]}", false},
        {503, "{\"errors\":[\"error: Vault is sealed\"]}", false},
        {503, "{\"errors\":[\"Vault is sealed\\u0000\"]}", false},
        {503, "{\"errors\":[\"Vault is sealed\"]}{}", false},
        {503, "{\"errors\":[\"Vault is sealed\"]", false},
        {503, "[{\"errors\":[\"Vault is sealed\"]}]", false},
        {503, "{\"errors\":[\"permission denied\"]}", false},
        {403, "{\"errors\":[\"permission denied\"]}", true},
        {403, "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}\n", true},
        {403, "{\"errors\":[\"2 errors occurred:\\n\\t* permission denied\\n\\t* invalid token\\n\\n\"]}",
         true},
        {403, "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\"]}", false},
        {403, "{\"errors\":[\"2 errors occurred:\\n\\t* permission denied\\n\\t* blocked\\n\\n\"]}", false},
        {403, "{\"errors\":[\"permission denied\\u0000\"]}", false},
        {403, "{\"errors\":[\"Permission Denied\"]}", false},
        {403, "<html><head><title>403 Forbidden</title></head></html>", false},
        {403, "{\"errors\":[\"Vault is sealed\"]}", false},
        {412, "{\"errors\":[\"required index state not present\"]}", true},
        {412, "{\"errors\":[]}", false},
        {412, "{\"errors\":[\"required index state not present \"]}", false},
        {429, "{\"errors\":[\"request path \\\"pki/sign/web\\\": rate limit quota exceeded\"]}", true},
        {429, "{\"errors\":[\"request path \\\"ns1/pki/sign/a b\\\": rate limit quota exceeded\"]}\n", true},
        {429, "{\"errors\":[\"request path \\\"\\\": rate limit quota exceeded\"]}", false},
        {429, "{\"errors\":[\"request path \\\": rate limit quota exceeded\"]}", false},
        {429, "{\"errors\":[\"rate limit quota exceeded\"]}", false},
        {429, "{\"errors\":[\"request path \\\"pki/sign/web\\\": rate limit quota exceeded!\"]}", false},
        {429, "{\"errors\":[\"x request path \\\"pki/sign/web\\\": rate limit quota exceeded\"]}", false},
        {429, "<html><head><title>429 Too Many Requests</title></head></html>", false},
        {412, "{\"errors\":[\"request path \\\"pki/sign/web\\\": rate limit quota exceeded\"]}", false},
        {500, "{\"errors\":[\"permission denied\"]}", false},
        {200, "{\"errors\":[\"Vault is sealed\"]}", false},
    };
    static const long statuses[] = {403, 412, 429, 503};
    size_t i, len;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *body = body_of(cases[i].body, &len);

        if (gw_vault_own_refusal(cases[i].status, body, len) != cases[i].own)
            fail_msg("case %zu: %ld %s", i, cases[i].status, cases[i].body);
        free(body);
    }
    for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        assert_false(gw_vault_own_refusal(statuses[i], NULL, 0));
}

#define LOGIN(x) "{\"auth\":{\"client_token\":\"hvb.tok\",\"lease_duration\":" x ",\"renewable\":false}}"
#define TOKEN(x) "{\"auth\":{\"client_token\":" x ",\"lease_duration\":3600}}"

static void test_vault_login(void **state)
{
    static const struct acase cases[] = {
        {"lease 0", LOGIN("0"), 0, NULL},
        {"lease at the cap", LOGIN("@LEASEMAX@"), 0, NULL},
        {"lease negative", LOGIN("-1"), UP, "auth.lease_duration is -1, not 0 to 315360000"},
        {"lease over the cap", LOGIN("@LEASEOVER@"), UP, "auth.lease_duration is 315360001, not 0 to"},
        {"lease wraps uint32", LOGIN("4294967296"), UP, "auth.lease_duration is 4294967296, not 0 to"},
        {"lease beyond int64", LOGIN("18446744073709551616"), UP,
         "auth.lease_duration is 18446744073709551615"},
        {"lease below int64", LOGIN("-9223372036854775809"), UP,
         "auth.lease_duration is -9223372036854775808"},
        {"lease fraction", LOGIN("3600.5"), UP, "auth.lease_duration is 3600.5, not an integer"},
        {"lease exponent", LOGIN("36e2"), UP, "auth.lease_duration is 36e2, not an integer"},
        {"lease a string", LOGIN("\"3600\""), UP, "auth.lease_duration is a string, not an integer"},
        {"lease a boolean", LOGIN("true"), UP, "auth.lease_duration is a boolean, not an integer"},
        {"lease null", LOGIN("null"), UP, "auth.lease_duration is missing or null"},
        {"lease absent", "{\"auth\":{\"client_token\":\"hvb.tok\"}}", UP, "auth.lease_duration is missing"},
        /* json-c keeps the last of duplicated keys, and that is the one checked */
        {"lease duplicated, last bad", LOGIN("3600,\"lease_duration\":-1"), UP, "auth.lease_duration is -1"},
        {"lease duplicated, last good", LOGIN("-1,\"lease_duration\":3600"), 0, NULL},
        {"token at the cap", TOKEN("@TOKMAX@"), 0, NULL},
        {"token too long", TOKEN("@TOKOVER@"), UP, "auth.client_token is 4097 bytes, more than 4096"},
        {"token empty", TOKEN("\"\""), UP, "auth.client_token is empty"},
        {"token a number", TOKEN("42"), UP, "auth.client_token is an integer, not a string"},
        {"token null", TOKEN("null"), UP, "auth.client_token is missing or null"},
        {"token missing", "{\"auth\":{\"lease_duration\":3600}}", UP, "auth.client_token is missing"},
        {"token NUL", TOKEN("\"hvb.a\\u0000b\""), UP, "auth.client_token holds a NUL byte"},
        {"token header injection", TOKEN("\"hvb.a\\r\\nX-Evil: 1\""), UP, "not visible ASCII"},
        {"token space", TOKEN("\"hvb a\""), UP, "not visible ASCII"},
        {"token not ASCII", TOKEN("\"hvb.\xc3\xa9\""), UP, "not visible ASCII"},
        {"renewable a string", TOKEN("\"hvb.tok\",\"renewable\":\"yes\""), UP,
         "auth.renewable is a string, not true or false"},
        {"renewable a number", TOKEN("\"hvb.tok\",\"renewable\":1"), UP, "auth.renewable is an integer"},
        {"auth null", "{\"auth\":null}", UP, "auth is missing or null"},
        {"auth missing", "{\"data\":{}}", UP, "auth is missing"},
        {"auth an array", "{\"auth\":[]}", UP, "auth is an array, not an object"},
        {"trailing data", LOGIN("60") "x", UP, "not Vault JSON: trailing data"},
        {"truncated", "{\"auth\":{\"client_token\":\"hvb.tok\",\"lease_duration\":36", UP, "truncated"},
    };
    char err[GW_ERR_LEN];
    union outs o;

    (void)state;
    RUN(VAULT_LOGIN, cases);
    assert_int_equal(parse_tmpl(VAULT_LOGIN, TOKEN("\"hvb.tok\",\"renewable\":true"), &o, err), 0);
    assert_string_equal(o.login.client_token, "hvb.tok");
    assert_int_equal(o.login.lease_duration, 3600);
    assert_true(o.login.renewable);
    gw_vault_login_cleanup(&o.login);
    assert_int_equal(o.login.client_token[0], '\0'); /* wiped */
    assert_int_equal(parse_tmpl(VAULT_LOGIN, LOGIN("@LEASEMAX@"), &o, err), 0);
    assert_int_equal(o.login.lease_duration, GW_MAX_VAULT_LEASE);
    assert_false(o.login.renewable);
    /* a refused answer leaves no token behind */
    assert_int_equal(parse_tmpl(VAULT_LOGIN, LOGIN("-1"), &o, err), UP);
    assert_int_equal(o.login.client_token[0], '\0');
    assert_int_equal(o.login.lease_duration, 0);
}

#define SIGNED(x)                                                                                            \
    "{\"data\":{\"certificate\":@LEAF@,\"issuing_ca\":@CA@,\"ca_chain\":[@CA@],\"serial_number\":\"30:39\"," \
    "\"expiration\":1654105687" x "},\"warnings\":null}"
/* 21 octets: one more than RFC 5280 allows */
#define SERIAL_21 "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44"
#define CERT_IS(x) "{\"data\":{\"certificate\":" x "}}"

static void test_vault_sign(void **state)
{
    static const struct acase cases[] = {
        {"no warnings", SIGNED(""), 0, NULL},
        {"16 warnings", "{\"data\":{\"certificate\":@LEAF@},\"warnings\":[@S16@]}", 0, NULL},
        {"PEM at the cap", CERT_IS("@PEMMAX@"), 0, NULL},
        {"chain of 16", "{\"data\":{\"certificate\":@LEAF@,\"ca_chain\":[@CHAIN16@]}}", 0, NULL},
        {"expiration at the cap", SIGNED(",\"expiration\":@TIMEMAX@"), 0, NULL},
        {"data null, warnings", "{\"data\":null,\"warnings\":[\"TTL too long\"]}", GW_ERR_NOT_FOUND,
         "Vault issued no certificate: TTL too long"},
        {"data missing", "{\"warnings\":null}", GW_ERR_NOT_FOUND,
         "Vault issued no certificate: the answer has no data"},
        {"data an array", "{\"data\":[]}", UP, "data is an array, not an object"},
        {"certificate missing", "{\"data\":{\"issuing_ca\":@CA@}}", UP,
         "data.certificate is missing or null"},
        {"certificate a number", CERT_IS("42"), UP, "data.certificate is an integer, not a string"},
        {"certificate empty", CERT_IS("\"\""), UP, "data.certificate is empty"},
        {"certificate not PEM", CERT_IS("\"hello\""), UP, "data.certificate holds no PEM certificate"},
        {"certificate unreadable", CERT_IS("@GARBAGE@"), UP, "data.certificate holds an unreadable"},
        {"certificate with bytes after it", CERT_IS("@TRAILING@"), UP,
         "data.certificate holds an unreadable certificate"},
        {"certificate encrypted", CERT_IS("@ENC@"), UP, "data.certificate holds an unreadable or encrypted"},
        {"certificate two", CERT_IS("@TWO@"), UP, "data.certificate holds more than 1 certificate"},
        {"certificate NUL", CERT_IS("@LEAFNUL@"), UP, "data.certificate holds a NUL byte"},
        {"certificate too long", CERT_IS("@PEMOVER@"), UP,
         "data.certificate is 65537 bytes, more than 65536"},
        {"ca_chain a string", SIGNED(",\"ca_chain\":\"x\""), UP, "data.ca_chain is a string, not an array"},
        {"ca_chain 17", SIGNED(",\"ca_chain\":[@CHAIN17@]"), UP,
         "data.ca_chain has 17 entries, more than 16"},
        {"ca_chain 18 certificates", SIGNED(",\"ca_chain\":[@NINE@,@NINE@]"), UP,
         "data.ca_chain[1] holds more than 16 certificates"},
        {"ca_chain entry a number", SIGNED(",\"ca_chain\":[@CA@,42]"), UP, "data.ca_chain[1] is an integer"},
        {"ca_chain entry empty", SIGNED(",\"ca_chain\":[\"\"]"), UP, "data.ca_chain[0] is empty"},
        {"ca_chain entry unreadable", SIGNED(",\"ca_chain\":[@GARBAGE@]"), UP,
         "data.ca_chain[0] holds an unreadable"},
        {"ca_chain entry with bytes after it", SIGNED(",\"ca_chain\":[@TRAILING@]"), UP,
         "data.ca_chain[0] holds an unreadable certificate"},
        {"ca_chain entry NUL", SIGNED(",\"ca_chain\":[@LEAFNUL@]"), UP, "data.ca_chain[0] holds a NUL byte"},
        {"issuing_ca a number", SIGNED(",\"issuing_ca\":7"), UP, "data.issuing_ca is an integer"},
        {"issuing_ca unreadable", SIGNED(",\"issuing_ca\":@GARBAGE@"), UP,
         "data.issuing_ca holds an unreadable"},
        {"serial a number", SIGNED(",\"serial_number\":12345"), UP, "data.serial_number is an integer"},
        {"serial empty", SIGNED(",\"serial_number\":\"\""), UP, "data.serial_number is empty"},
        {"serial too long", SIGNED(",\"serial_number\":\"" SERIAL_21 "\""), UP,
         "data.serial_number is 62 bytes, more than 59"},
        {"serial not hex", SIGNED(",\"serial_number\":\"30:3g\""), UP,
         "data.serial_number holds a character"},
        {"serial NUL", SIGNED(",\"serial_number\":\"30\\u0000\""), UP, "data.serial_number holds a NUL byte"},
        {"expiration negative", SIGNED(",\"expiration\":-1"), UP,
         "data.expiration is -1, not 1 to 253402300799"},
        {"expiration 0", SIGNED(",\"expiration\":0"), UP, "data.expiration is 0, not 1 to"},
        {"expiration over the cap", SIGNED(",\"expiration\":@TIMEOVER@"), UP,
         "data.expiration is 253402300800"},
        {"expiration a string", SIGNED(",\"expiration\":\"1654105687\""), UP, "data.expiration is a string"},
        {"expiration a fraction", SIGNED(",\"expiration\":1.5"), UP,
         "data.expiration is 1.5, not an integer"},
        {"warnings a string", "{\"data\":{\"certificate\":@LEAF@},\"warnings\":\"w\"}", UP,
         "warnings is a string, not an array"},
        {"warnings 17", "{\"data\":{\"certificate\":@LEAF@},\"warnings\":[@S17@]}", UP,
         "warnings has 17 entries"},
        {"warning a number", "{\"data\":null,\"warnings\":[1]}", UP, "warnings[0] is an integer"},
        {"trailing data", SIGNED("") " {}", UP, "not Vault JSON: trailing data"},
        {"truncated", "{\"data\":{\"certificate\":@LEAF@", UP, "truncated"},
    };
    char err[GW_ERR_LEN];
    union outs o;

    (void)state;
    RUN(VAULT_SIGN, cases);
    assert_int_equal(parse_tmpl(VAULT_SIGN, SIGNED(""), &o, err), 0);
    assert_int_equal(X509_cmp(o.sign.cert, leaf), 0);
    assert_int_equal(sk_X509_num(o.sign.chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(o.sign.chain, 0), ca), 0);
    assert_string_equal(o.sign.serial_number, "30:39");
    assert_int_equal(o.sign.expiration, 1654105687);
    assert_string_equal(o.sign.warnings, "");
    gw_vault_signed_cleanup(&o.sign);
    /* the chain from issuing_ca when ca_chain is absent or empty; none when neither is there */
    assert_int_equal(parse_tmpl(VAULT_SIGN,
                                "{\"data\":{\"certificate\":@LEAF@,\"issuing_ca\":@CA@,\"ca_chain\":[]}}", &o,
                                err),
                     0);
    assert_int_equal(sk_X509_num(o.sign.chain), 1);
    gw_vault_signed_cleanup(&o.sign);
    assert_int_equal(
        parse_tmpl(VAULT_SIGN, "{\"data\":{\"certificate\":@LEAF@},\"warnings\":[\"a\",\"b\"]}", &o, err), 0);
    assert_null(o.sign.chain);
    assert_string_equal(o.sign.serial_number, "");
    assert_int_equal(o.sign.expiration, 0);
    assert_string_equal(o.sign.warnings, "a; b");
    gw_vault_signed_cleanup(&o.sign);
    /* refused: only the certificate Vault issued stays, for the caller to record and revoke */
    assert_int_equal(parse_tmpl(VAULT_SIGN, SIGNED(",\"expiration\":-1"), &o, err), UP);
    assert_int_equal(X509_cmp(o.sign.cert, leaf), 0);
    assert_null(o.sign.chain);
    assert_string_equal(o.sign.serial_number, "");
    gw_vault_signed_cleanup(&o.sign);
    /* bytes after a whole answer: refused, and the certificate Vault issued kept to be recorded and
       revoked; what is no complete JSON object (truncated, an array) gives none */
    assert_int_equal(parse_tmpl(VAULT_SIGN, SIGNED("") " {}", &o, err), UP);
    assert_non_null(strstr(err, "not Vault JSON: trailing data"));
    assert_non_null(o.sign.cert);
    assert_int_equal(X509_cmp(o.sign.cert, leaf), 0);
    assert_null(o.sign.chain);
    gw_vault_signed_cleanup(&o.sign);
    /* another certificate after the one issued: refused, the first kept to be recorded and revoked */
    assert_int_equal(parse_tmpl(VAULT_SIGN, CERT_IS("@TWO@"), &o, err), UP);
    assert_non_null(strstr(err, "data.certificate holds more than 1 certificate"));
    assert_non_null(o.sign.cert);
    assert_int_equal(X509_cmp(o.sign.cert, leaf), 0);
    assert_null(o.sign.chain);
    gw_vault_signed_cleanup(&o.sign);
    assert_int_equal(parse_tmpl(VAULT_SIGN, "{\"data\":{\"certificate\":@LEAF@", &o, err), UP);
    assert_null(o.sign.cert);
    assert_int_equal(parse_tmpl(VAULT_SIGN, "[" SIGNED("") "] x", &o, err), UP);
    assert_null(o.sign.cert);
    /* warnings out of range beside a certificate: refused, the certificate Vault issued kept all the same */
    assert_int_equal(parse_tmpl(VAULT_SIGN, "{\"data\":{\"certificate\":@LEAF@},\"warnings\":[1]}", &o, err),
                     UP);
    assert_non_null(strstr(err, "warnings[0] is an integer"));
    assert_non_null(o.sign.cert);
    assert_int_equal(X509_cmp(o.sign.cert, leaf), 0);
    assert_null(o.sign.chain);
    gw_vault_signed_cleanup(&o.sign);
    assert_int_equal(
        parse_tmpl(VAULT_SIGN, "{\"data\":{\"certificate\":@LEAF@},\"warnings\":[@S17@]}", &o, err), UP);
    assert_int_equal(X509_cmp(o.sign.cert, leaf), 0);
    gw_vault_signed_cleanup(&o.sign);
    /* and none where there is none */
    assert_int_equal(parse_tmpl(VAULT_SIGN, "{\"data\":null,\"warnings\":[1]}", &o, err), UP);
    assert_null(o.sign.cert);
}

/* The certificate an answer of an error status holds: Vault issued it, whatever the status says. */
static void test_vault_answer_cert(void **state)
{
    static const struct {
        const char *body;
        int found;
    } cases[] = {
        {"{\"errors\":[\"internal error\"],\"data\":{\"certificate\":@LEAF@}}", 1},
        {"{\"errors\":[\"internal error\"],\"data\":{\"certificate\":@TWO@}}", 1}, /* the first */
        {"{\"data\":{\"certificate\":@LEAF@}} trailing", 1},
        {"{\"errors\":[\"internal error\"]}", 0},
        {"{\"errors\":[],\"data\":null}", 0},
        {"{\"data\":{\"certificate\":@GARBAGE@}}", 0},
        {"{\"data\":{\"certificate\":42}}", 0},
        {"{\"data\":{\"certificate\":@LEAF@}", 0}, /* truncated: not Vault's */
        {"[{\"data\":{\"certificate\":@LEAF@}}]", 0},
        {"<html>internal error</html>", 0},
        {"", 0},
    };
    size_t i, len;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *body = body_of(cases[i].body, &len);
        X509 *cert = gw_vault_answer_cert(body, len);

        if (cases[i].found)
            assert_true(cert != NULL && X509_cmp(cert, leaf) == 0);
        else if (cert != NULL)
            fail_msg("case %zu: a certificate from %.60s", i, cases[i].body);
        X509_free(cert);
        free(body);
    }
    assert_null(gw_vault_answer_cert(NULL, 0));
}

static void test_vault_revoke(void **state)
{
    static const struct acase cases[] = {
        {"revoked", "{\"data\":{\"revocation_time\":1433269787,\"state\":\"revoked\"}}", 0, NULL},
        {"no time", "{\"data\":{}}", 0, NULL},
        {"pending", "{\"data\":{\"state\":\"pending\"}}", 0, NULL},
        {"state a number", "{\"data\":{\"revocation_time\":1,\"state\":1}}", UP, "data.state is an integer"},
        {"expired", "{\"data\":null,\"warnings\":[\"already expired\"]}", 0, NULL},
        {"time negative", "{\"data\":{\"revocation_time\":-1}}", UP, "data.revocation_time is -1, not 0 to"},
        {"time over the cap", "{\"data\":{\"revocation_time\":@TIMEOVER@}}", UP,
         "data.revocation_time is 253402300800"},
        {"time a string", "{\"data\":{\"revocation_time\":\"1\"}}", UP, "data.revocation_time is a string"},
        {"data a string", "{\"data\":\"x\"}", UP, "data is a string, not an object"},
        {"warnings a number", "{\"data\":null,\"warnings\":1}", UP, "warnings is an integer, not an array"},
        {"trailing data", "{\"data\":{}}]", UP, "trailing data"},
    };
    char err[GW_ERR_LEN];
    union outs o;

    (void)state;
    RUN(VAULT_REVOKE, cases);
    assert_int_equal(parse_tmpl(VAULT_REVOKE, "{\"data\":{\"revocation_time\":1433269787}}", &o, err), 0);
    assert_true(o.revoke.revoked);
    assert_int_equal(o.revoke.revocation_time, 1433269787);
    /* a "success" that names no revocation is none: no time, a time of 0, or a state but "revoked" */
    assert_int_equal(parse_tmpl(VAULT_REVOKE, "{\"data\":{}}", &o, err), 0);
    assert_true(o.revoke.has_data);
    assert_false(o.revoke.revoked);
    assert_int_equal(
        parse_tmpl(VAULT_REVOKE, "{\"data\":{\"revocation_time\":0,\"state\":\"revoked\"}}", &o, err), 0);
    assert_false(o.revoke.revoked);
    assert_int_equal(parse_tmpl(VAULT_REVOKE,
                                "{\"data\":{\"revocation_time\":1433269787,\"state\":\"pending\"}}", &o, err),
                     0);
    assert_false(o.revoke.revoked);
    assert_string_equal(o.revoke.state, "pending");
    assert_int_equal(parse_tmpl(VAULT_REVOKE, "{\"data\":null,\"warnings\":[\"already expired\"]}", &o, err),
                     0);
    assert_false(o.revoke.revoked);
    assert_string_equal(o.revoke.warnings, "already expired");
}

#define STATUS(x) "{\"data\":{\"certificate\":\"x\",\"revocation_time\":" x "}}"

static void test_vault_cert(void **state)
{
    static const struct acase cases[] = {
        {"time at the cap", STATUS("@TIMEMAX@"), 0, NULL},
        /* a missing revocation_time is not "not revoked" */
        {"time missing", "{\"data\":{\"certificate\":\"x\"}}", UP, "data.revocation_time is missing or null"},
        {"time null", STATUS("null"), UP, "data.revocation_time is missing or null"},
        {"time negative", STATUS("-5"), UP, "data.revocation_time is -5, not 0 to 253402300799"},
        {"time over the cap", STATUS("@TIMEOVER@"), UP, "data.revocation_time is 253402300800"},
        {"time a string", STATUS("\"1433269787\""), UP, "data.revocation_time is a string, not an integer"},
        {"time a fraction", STATUS("1e9"), UP, "data.revocation_time is 1e9, not an integer"},
        {"time a boolean", STATUS("true"), UP, "data.revocation_time is a boolean"},
        {"certificate missing", "{\"data\":{\"revocation_time\":0}}", UP, "data.certificate is missing"},
        {"certificate a number", "{\"data\":{\"certificate\":1,\"revocation_time\":0}}", UP,
         "data.certificate is an integer"},
        {"certificate empty", "{\"data\":{\"certificate\":\"\",\"revocation_time\":0}}", UP,
         "data.certificate is empty"},
        {"certificate NUL", "{\"data\":{\"certificate\":\"\\u0000\",\"revocation_time\":0}}", UP,
         "data.certificate holds a NUL byte"},
        {"certificate too long", "{\"data\":{\"certificate\":@PEMOVER@,\"revocation_time\":0}}", UP,
         "data.certificate is 65537 bytes"},
        {"data missing", "{}", UP, "data is missing or null"},
        {"data an array", "{\"data\":[]}", UP, "data is an array"},
        {"trailing data", STATUS("0") "\n0", UP, "trailing data"},
    };
    char err[GW_ERR_LEN];
    union outs o;

    (void)state;
    RUN(VAULT_CERT, cases);
    assert_int_equal(parse_tmpl(VAULT_CERT, STATUS("0"), &o, err), 0);
    assert_int_equal(o.cert.revocation_time, 0);
    assert_int_equal(parse_tmpl(VAULT_CERT, STATUS("1433269787"), &o, err), 0);
    assert_int_equal(o.cert.revocation_time, 1433269787);
}

#define ROLE(x) "{\"data\":{\"key_type\":\"ec\",\"key_bits\":256,\"max_ttl\":86400" x "}}"

static void test_vault_role(void **state)
{
    static const struct acase cases[] = {
        {"max_ttl at the cap", ROLE(",\"max_ttl\":@TTLMAX@"), 0, NULL},
        {"max_ttl digits", ROLE(",\"max_ttl\":\"86400\""), 0, NULL},
        {"max_ttl negative", ROLE(",\"max_ttl\":-1"), UP, "data.max_ttl is -1, not 0 to 3153600000"},
        {"max_ttl over the cap", ROLE(",\"max_ttl\":@TTLOVER@"), UP, "data.max_ttl is 3153600001"},
        {"max_ttl huge", ROLE(",\"max_ttl\":99999999999999999999"), UP,
         "data.max_ttl is 18446744073709551615"},
        {"max_ttl a duration", ROLE(",\"max_ttl\":\"72h\""), UP,
         "data.max_ttl is the string \"72h\", not a number"},
        {"max_ttl a signed string", ROLE(",\"max_ttl\":\"-1\""), UP, "data.max_ttl is the string \"-1\""},
        {"max_ttl a long string", ROLE(",\"max_ttl\":\"1234567890123456789\""), UP, "not a number"},
        {"max_ttl digits over the cap", ROLE(",\"max_ttl\":\"3153600001\""), UP,
         "data.max_ttl is 3153600001"},
        {"max_ttl empty", ROLE(",\"max_ttl\":\"\""), UP, "data.max_ttl is the string \"\", not a number"},
        {"max_ttl NUL", ROLE(",\"max_ttl\":\"1\\u00002\""), UP, "not a number"},
        {"max_ttl a fraction", ROLE(",\"max_ttl\":1.5"), UP, "data.max_ttl is 1.5, not an integer"},
        {"max_ttl a boolean", ROLE(",\"max_ttl\":true"), UP, "data.max_ttl is a boolean"},
        {"not_after Vault's form", ROLE(",\"not_after\":\"2031-01-02T03:04:05Z\""), 0, NULL},
        {"not_after the last time", ROLE(",\"not_after\":\"9999-12-31T23:59:59Z\""), 0, NULL},
        {"not_after empty: none", ROLE(",\"not_after\":\"\""), 0, NULL},
        {"not_after an offset", ROLE(",\"not_after\":\"2031-01-02T03:04:05+01:00\""), UP,
         "data.not_after is 25 bytes, more than 20"},
        {"not_after a fraction", ROLE(",\"not_after\":\"2031-01-02T03:04:05.5Z\""), UP,
         "data.not_after is 22 bytes, more than 20"},
        {"not_after short fields", ROLE(",\"not_after\":\"2031-1-2T3:04:05Z\""), UP,
         "data.not_after is not a time in Vault's form YYYY-MM-DDTHH:MM:SSZ"},
        {"not_after no zone", ROLE(",\"not_after\":\"2031-01-02T03:04:05\""), UP,
         "data.not_after is not a time"},
        {"not_after out of range", ROLE(",\"not_after\":\"2031-02-30T03:04:05Z\""), UP,
         "data.not_after is not a time"},
        {"not_after the epoch", ROLE(",\"not_after\":\"1970-01-01T00:00:00Z\""), UP,
         "data.not_after is not a time"},
        {"not_after a number", ROLE(",\"not_after\":1924992000"), UP, "data.not_after is "},
        {"not_after too long", ROLE(",\"not_after\":\"2031-01-02T03:04:05ZZ\""), UP, "data.not_after is "},
        {"key_bits negative", ROLE(",\"key_bits\":-256"), UP, "data.key_bits is -256, not 0 to 16384"},
        {"key_bits over the cap", ROLE(",\"key_bits\":@BITSOVER@"), UP, "data.key_bits is 16385"},
        {"key_bits a string", ROLE(",\"key_bits\":\"256\""), UP, "data.key_bits is a string, not an integer"},
        {"key_bits a fraction", ROLE(",\"key_bits\":256.0"), UP, "data.key_bits is 256.0, not an integer"},
        {"key_type a number", ROLE(",\"key_type\":1"), UP, "data.key_type is an integer, not a string"},
        {"key_type empty", ROLE(",\"key_type\":\"\""), UP, "data.key_type is empty"},
        {"key_type too long", ROLE(",\"key_type\":\"ed25519ed25519ed\""), UP,
         "data.key_type is 16 bytes, more than 15"},
        {"key_type odd", ROLE(",\"key_type\":\"EC\""), UP, "data.key_type holds a character"},
        {"key_type NUL", ROLE(",\"key_type\":\"ec\\u0000\""), UP, "data.key_type holds a NUL byte"},
        {"flag a string", ROLE(",\"allow_any_name\":\"true\""), UP,
         "data.allow_any_name is a string, not true or false"},
        {"flag a number", ROLE(",\"enforce_hostnames\":0"), UP, "data.enforce_hostnames is an integer"},
        {"usage flag a string", ROLE(",\"server_flag\":\"false\""), UP, "data.server_flag is a string"},
        {"domains a comma string", ROLE(",\"allowed_domains\":\"a,b\""), 0, NULL},
        {"domains 257", ROLE(",\"allowed_domains\":[@D257@]"), UP,
         "data.allowed_domains has 257 entries, more than 256"},
        {"domain a number", ROLE(",\"allowed_domains\":[\"a\",1]"), UP,
         "data.allowed_domains[1] is an integer"},
        {"domain empty", ROLE(",\"allowed_domains\":[\"\"]"), UP, "data.allowed_domains[0] is empty"},
        {"domain too long", ROLE(",\"allowed_domains\":[@DOMOVER@]"), UP,
         "data.allowed_domains[0] is 257 bytes"},
        {"domain NUL", ROLE(",\"allowed_domains\":[\"a\\u0000.evil\"]"), UP,
         "data.allowed_domains[0] holds a NUL"},
        {"domains a number", ROLE(",\"allowed_domains\":7"), UP,
         "data.allowed_domains is neither a list nor a string"},
        {"uri globs a comma string", ROLE(",\"allowed_uri_sans\":\"spiffe://a/*,urn:x\""), 0, NULL},
        {"uri glob a number", ROLE(",\"allowed_uri_sans\":[\"urn:x\",1]"), UP,
         "data.allowed_uri_sans[1] is an integer"},
        {"uri template a string", ROLE(",\"allowed_uri_sans_template\":\"true\""), UP,
         "data.allowed_uri_sans_template is a string, not true or false"},
        {"usage a number", ROLE(",\"key_usage\":[\"DigitalSignature\",5]"), UP,
         "data.key_usage[1] is an integer"},
        {"usage empty", ROLE(",\"ext_key_usage\":[\"\"]"), UP, "data.ext_key_usage[0] is empty"},
        {"usage NUL", ROLE(",\"ext_key_usage\":[\"ClientAuth\\u0000Any\"]"), UP, "holds a NUL byte"},
        {"oid too long", ROLE(",\"ext_key_usage_oids\":[@OIDOVER@]"), UP,
         "data.ext_key_usage_oids[0] is 65 bytes"},
        {"oid in a list too long", ROLE(",\"ext_key_usage\":@COMMAOVER@"), UP,
         "data.ext_key_usage[1] is 65 bytes"},
        {"usage an object", ROLE(",\"key_usage\":{}"), UP, "data.key_usage is neither a list nor a string"},
        {"cn_validations", ROLE(",\"cn_validations\":[\"email\",\"hostname\"]"), 0, NULL},
        {"cn_validations unknown", ROLE(",\"cn_validations\":[\"email\",\"ip\"]"), UP,
         "data.cn_validations[1] is not email, hostname or disabled"},
        {"cn_validations disabled and more", ROLE(",\"cn_validations\":[\"disabled\",\"email\"]"), UP,
         "data.cn_validations has disabled with another entry"},
        {"cn_validations 4", ROLE(",\"cn_validations\":[\"email\",\"email\",\"email\",\"email\"]"), UP,
         "data.cn_validations has 4 entries, more than 3"},
        {"use_csr_common_name a string", ROLE(",\"use_csr_common_name\":\"false\""), UP,
         "data.use_csr_common_name is a string"},
        {"organization a number", ROLE(",\"organization\":[\"Acme\",1]"), UP,
         "data.organization[1] is an integer"},
        {"ou NUL", ROLE(",\"ou\":[\"a\\u0000b\"]"), UP, "data.ou[0] holds a NUL"},
        {"user ids 257", ROLE(",\"allowed_user_ids\":[@D257@]"), UP,
         "data.allowed_user_ids has 257 entries, more than 256"},
        {"serial_number_source odd", ROLE(",\"serial_number_source\":\"csr\""), UP,
         "data.serial_number_source is neither json-csr nor json"},
        {"serial_number_source empty", ROLE(",\"serial_number_source\":\"\""), 0, NULL},
        {"issuer_ref default", ROLE(",\"issuer_ref\":\"default\""), 0, NULL},
        {"issuer_ref empty", ROLE(",\"issuer_ref\":\"\""), 0, NULL},
        {"issuer_ref a number", ROLE(",\"issuer_ref\":7"), UP, "data.issuer_ref is an integer"},
        {"issuer_ref a path", ROLE(",\"issuer_ref\":\"a/../crl\""), UP,
         "data.issuer_ref is not a plain name"},
        {"issuer_ref dot dot", ROLE(",\"issuer_ref\":\"..\""), UP, "data.issuer_ref is not a plain name"},
        {"issuer_ref query", ROLE(",\"issuer_ref\":\"a?b\""), UP, "data.issuer_ref is not a plain name"},
        {"issuer_ref NUL", ROLE(",\"issuer_ref\":\"a\\u0000b\""), UP, "data.issuer_ref holds a NUL"},
        {"issuer_ref too long", ROLE(",\"issuer_ref\":@REFOVER@"), UP, "data.issuer_ref is 129 bytes"},
        /* 1024 '{' in templated patterns' strings, which are no objects: the policy reads */
        {"templated patterns",
         ROLE(",\"allowed_uri_sans\":[@URITMPL256@],\"allowed_domains\":[@DOMTMPL256@],"
              "\"allowed_uri_sans_template\":true,\"allowed_domains_template\":true"),
         0, NULL},
        {"data missing", "{}", UP, "data is missing or null"},
        {"trailing data", ROLE("") "}", UP, "trailing data"},
    };
    char err[GW_ERR_LEN];
    union outs o;

    (void)state;
    RUN(VAULT_ROLE, cases);
    assert_int_equal(
        parse_tmpl(VAULT_ROLE,
                   "{\"data\":{\"allowed_domains\":\"example.com, corp.example\",\"allow_subdomains\":"
                   "true,\"key_type\":\"ec\",\"key_bits\":384,\"max_ttl\":\"7200\",\"key_usage\":["
                   "\"DigitalSignature\"],\"ext_key_usage\":\"ClientAuth\",\"server_flag\":false,"
                   "\"allowed_uri_sans\":[\"spiffe://example.org/*\"],\"allowed_uri_sans_template\":true,"
                   "\"allowed_domains_template\":true,\"not_after\":\"2031-01-02T03:04:05Z\"}}",
                   &o, err),
        0);
    assert_int_equal(o.role.allowed_domains.n, 2);
    assert_string_equal(o.role.allowed_domains.v[1], "corp.example");
    assert_int_equal(o.role.allowed_uri_sans.n, 1);
    assert_string_equal(o.role.allowed_uri_sans.v[0], "spiffe://example.org/*");
    assert_true(o.role.allowed_uri_sans_template);
    assert_true(o.role.allowed_domains_template);
    assert_int_equal(o.role.not_after, 1925089445); /* 2031-01-02T03:04:05Z */
    assert_true(o.role.allow_subdomains);
    assert_false(o.role.allow_any_name);
    assert_string_equal(o.role.key_type, "ec");
    assert_int_equal(o.role.key_bits, 384);
    assert_int_equal(o.role.max_ttl, 7200);
    assert_int_equal(o.role.key_usage, KU_DIGITAL_SIGNATURE);
    assert_int_equal(o.role.ext_key_usage, GW_EKU_CLIENT_AUTH);
    gw_role_policy_cleanup(&o.role);
    /* absent fields: Vault's defaults, never narrower than the role */
    assert_int_equal(parse_tmpl(VAULT_ROLE, "{\"data\":{}}", &o, err), 0);
    assert_string_equal(o.role.key_type, "rsa");
    assert_int_equal(o.role.max_ttl, 0);
    assert_int_equal(o.role.not_after, 0);
    assert_int_equal(o.role.key_usage, KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | KU_KEY_ENCIPHERMENT);
    assert_int_equal(o.role.ext_key_usage, GW_EKU_SERVER_AUTH | GW_EKU_CLIENT_AUTH);
    assert_false(o.role.no_wildcards);
    assert_false(o.role.allowed_domains_template);
    assert_int_equal(o.role.allowed_uri_sans.n, 0); /* Vault's default: no URI */
    assert_false(o.role.no_csr_common_name);
    assert_false(o.role.cn_optional);
    assert_false(o.role.serial_from_json);
    assert_int_equal(o.role.cn_validations, 0);
    assert_int_equal(o.role.allowed_user_ids.n, 0); /* nor a UID, nor a serialNumber */
    assert_int_equal(o.role.allowed_serial_numbers.n, 0);
    for (size_t a = 0; a < GW_UPSTREAM_SUBJECT_ATTRS; a++)
        assert_int_equal(o.role.subject_values[a].n, 0);
    gw_role_policy_cleanup(&o.role);
    /* what the role writes into the subject and takes from a request's */
    assert_int_equal(
        parse_tmpl(VAULT_ROLE,
                   "{\"data\":{\"organization\":[\"Acme\"],\"ou\":[\"a\",\"b\"],\"country\":[\"DE\"],"
                   "\"locality\":[\"L\"],\"province\":[\"P\"],\"street_address\":[\"S\"],"
                   "\"postal_code\":[\"1\"],\"use_csr_common_name\":false,\"require_cn\":false,"
                   "\"cn_validations\":[\"disabled\"],\"allowed_user_ids\":[\"dev-*\"],"
                   "\"allowed_serial_numbers\":[\"SN*\"],\"serial_number_source\":\"json\"}}",
                   &o, err),
        0);
    for (size_t a = 0; a < GW_UPSTREAM_SUBJECT_ATTRS; a++)
        assert_int_equal(o.role.subject_values[a].n,
                         strcmp(gw_upstream_subject_attrs[a].key, "ou") == 0 ? 2 : 1);
    assert_string_equal(o.role.subject_values[5].v[0], "Acme");
    assert_string_equal(gw_upstream_subject_attrs[5].key, "organization");
    assert_true(o.role.no_csr_common_name);
    assert_true(o.role.cn_optional);
    assert_true(o.role.serial_from_json);
    assert_int_equal(o.role.cn_validations, GW_CN_DISABLED);
    assert_string_equal(o.role.allowed_user_ids.v[0], "dev-*");
    assert_string_equal(o.role.allowed_serial_numbers.v[0], "SN*");
    gw_role_policy_cleanup(&o.role);
    assert_int_equal(parse_tmpl(VAULT_ROLE, "{\"data\":{\"allow_wildcard_certificates\":false}}", &o, err),
                     0);
    assert_true(o.role.no_wildcards);
    gw_role_policy_cleanup(&o.role);
    /* the issuer its sign calls take: a name, or "" for the default issuer however Vault says it */
    assert_int_equal(parse_tmpl(VAULT_ROLE, ROLE(",\"issuer_ref\":\"second-2.b_c\""), &o, err), 0);
    assert_string_equal(o.role.issuer_ref, "second-2.b_c");
    gw_role_policy_cleanup(&o.role);
    assert_int_equal(parse_tmpl(VAULT_ROLE, ROLE(",\"issuer_ref\":\"default\""), &o, err), 0);
    assert_string_equal(o.role.issuer_ref, "");
    gw_role_policy_cleanup(&o.role);
    assert_int_equal(parse_tmpl(VAULT_ROLE, ROLE(""), &o, err), 0);
    assert_string_equal(o.role.issuer_ref, "");
    gw_role_policy_cleanup(&o.role);
    /* refused: the domains read so far are freed, nothing is left */
    assert_int_equal(parse_tmpl(VAULT_ROLE, ROLE(",\"allowed_domains\":[\"a\",\"b\",1]"), &o, err), UP);
    assert_null(o.role.allowed_domains.v);
    assert_int_equal(o.role.allowed_domains.n, 0);
}

/* ---- cfssl ---- */

#define ENVELOPE(x) "{\"success\":false,\"result\":null,\"errors\":[" x "],\"messages\":[]}"

static void test_cfssl_envelope(void **state)
{
    static const struct acase cases[] = {
        {"success", "{\"success\":true,\"result\":{},\"errors\":[],\"messages\":[]}\n", 0, NULL},
        {"failure", ENVELOPE("{\"code\":5500,\"message\":\"policy\"}"), 0, NULL},
        {"no errors, messages", "{\"success\":false}", 0, NULL},
        {"code at the cap", ENVELOPE("{\"code\":99999,\"message\":\"m\"}"), 0, NULL},
        {"trailing data", "{\"success\":true,\"result\":{}}\n{\"success\":false}", UP,
         "not a cfssl envelope: trailing data after the JSON document, at byte 29 of 46"},
        {"trailing garbage", "{\"success\":true,\"result\":{}}garbage", UP, "trailing data"},
        {"success missing", "{\"result\":{}}", UP, "success is missing or null"},
        {"success a string", "{\"success\":\"false\"}", UP, "success is a string, not true or false"},
        {"success a number", "{\"success\":1}", UP, "success is an integer, not true or false"},
        {"errors an object", "{\"success\":false,\"errors\":{}}", UP, "errors is an object, not an array"},
        {"errors 17", ENVELOPE("@E17@"), UP, "errors has 17 entries, more than 16"},
        {"error a string", ENVELOPE("\"x\""), UP, "errors[0] is a string, not an object"},
        {"code missing", ENVELOPE("{\"message\":\"m\"}"), UP, "errors[0].code is missing or null"},
        {"code a string", ENVELOPE("{\"code\":\"5500\",\"message\":\"m\"}"), UP,
         "errors[0].code is a string"},
        {"code negative", ENVELOPE("{\"code\":-5500,\"message\":\"m\"}"), UP,
         "errors[0].code is -5500, not 0 to 99999"},
        {"code over the cap", ENVELOPE("{\"code\":@CODEOVER@,\"message\":\"m\"}"), UP,
         "errors[0].code is 100000"},
        {"code a fraction", ENVELOPE("{\"code\":5500.5,\"message\":\"m\"}"), UP, "errors[0].code is 5500.5"},
        {"message missing", ENVELOPE("{\"code\":1}"), UP, "errors[0].message is missing or null"},
        {"message a number", ENVELOPE("{\"code\":1,\"message\":2}"), UP, "errors[0].message is an integer"},
        {"message too long", ENVELOPE("{\"code\":1,\"message\":@MSGOVER@}"), UP,
         "errors[0].message is 4097 bytes"},
        {"message NUL", ENVELOPE("{\"code\":1,\"message\":\"a\\u0000b\"}"), UP,
         "errors[0].message holds a NUL byte"},
        {"second error bad", ENVELOPE("{\"code\":1,\"message\":\"m\"},{\"code\":-1,\"message\":\"m\"}"), UP,
         "errors[1].code is -1"},
        {"messages a string", "{\"success\":true,\"messages\":\"m\"}", UP,
         "messages is a string, not an array"},
        {"messages 17", "{\"success\":true,\"messages\":[@E17@]}", UP, "messages has 17 entries"},
        {"message entry bad", "{\"success\":true,\"messages\":[{\"code\":\"1\",\"message\":\"m\"}]}", UP,
         "messages[0].code is a string"},
        {"array root", "[{\"success\":true}]", UP, "not a cfssl envelope: the JSON document is an array"},
    };
    char err[GW_ERR_LEN];
    union outs o;

    (void)state;
    RUN(CFSSL_ENVELOPE, cases);
    assert_int_equal(
        parse_tmpl(CFSSL_ENVELOPE, ENVELOPE("{\"code\":5500,\"message\":\"bad\\nline\\u0001x\"}"), &o, err),
        0);
    assert_false(o.env.success);
    assert_int_equal(o.env.code, 5500);
    assert_string_equal(o.env.message, "bad?line?x");
}

#define CFSIGN(x) "{\"success\":true,\"result\":{\"certificate\":" x "},\"errors\":[],\"messages\":[]}\n"

static void test_cfssl_sign_info(void **state)
{
    static const struct acase cases[] = {
        {"failure, no result", ENVELOPE("{\"code\":9002,\"message\":\"CSR Decode failed\"}"), 0, NULL},
        {"result missing", "{\"success\":true}", UP, "result is missing or null"},
        {"result a string", "{\"success\":true,\"result\":\"cert\"}", UP,
         "result is a string, not an object"},
        {"certificate missing", "{\"success\":true,\"result\":{}}", UP,
         "result.certificate is missing or null"},
        {"certificate a number", CFSIGN("42"), UP, "result.certificate is an integer, not a string"},
        {"certificate empty", CFSIGN("\"\""), UP, "result.certificate is empty"},
        {"certificate not PEM", CFSIGN("\"x\""), UP, "result.certificate holds no PEM certificate"},
        {"certificate unreadable", CFSIGN("@GARBAGE@"), UP, "result.certificate holds an unreadable"},
        {"certificate encrypted", CFSIGN("@ENC@"), UP, "result.certificate holds an unreadable or encrypted"},
        {"certificate two", CFSIGN("@TWO@"), UP, "result.certificate holds more than 1 certificate"},
        {"certificate NUL", CFSIGN("@LEAFNUL@"), UP, "result.certificate holds a NUL byte"},
        {"certificate too long", CFSIGN("@PEMOVER@"), UP, "result.certificate is 65537 bytes"},
        {"trailing data", CFSIGN("@LEAF@") "x", UP, "not a cfssl envelope: trailing data"},
        {"truncated", "{\"success\":true,\"result\":{\"certificate\":\"---", UP, "truncated"},
    };
    char err[GW_ERR_LEN];
    union outs o;

    (void)state;
    RUN(CFSSL_SIGN, cases);
    RUN(CFSSL_INFO, cases);
    assert_int_equal(parse_tmpl(CFSSL_SIGN, CFSIGN("@LEAF@"), &o, err), 0);
    assert_true(o.ccert.env.success);
    assert_int_equal(X509_cmp(o.ccert.cert, leaf), 0);
    gw_cfssl_cert_cleanup(&o.ccert);
    assert_int_equal(parse_tmpl(CFSSL_INFO, CFSIGN("@CA@"), &o, err), 0);
    assert_int_equal(X509_cmp(o.ccert.cert, ca), 0);
    gw_cfssl_cert_cleanup(&o.ccert);
    /* a failure answer: cfssl's error, no certificate */
    assert_int_equal(
        parse_tmpl(CFSSL_SIGN, ENVELOPE("{\"code\":9002,\"message\":\"CSR Decode failed\"}"), &o, err), 0);
    assert_false(o.ccert.env.success);
    assert_int_equal(o.ccert.env.code, 9002);
    assert_null(o.ccert.cert);
    /* a sign answer refused whole that says it issued keeps the certificate, to be recorded and revoked:
       bytes after the document, an errors entry out of shape, another certificate after it; info keeps
       none */
    static const char *const issued[] = {
        CFSIGN("@LEAF@") "x", "{\"success\":true,\"result\":{\"certificate\":@LEAF@},\"errors\":[1]}",
        CFSIGN("@TWO@")};
    for (size_t i = 0; i < sizeof(issued) / sizeof(issued[0]); i++) {
        assert_int_equal(parse_tmpl(CFSSL_SIGN, issued[i], &o, err), UP);
        assert_non_null(o.ccert.cert);
        assert_int_equal(X509_cmp(o.ccert.cert, leaf), 0);
        assert_false(o.ccert.env.success);
        gw_cfssl_cert_cleanup(&o.ccert);
        assert_int_equal(parse_tmpl(CFSSL_INFO, issued[i], &o, err), UP);
        assert_null(o.ccert.cert);
    }
    /* cfssl writes its errors with "result": null: a certificate beside "success": false was issued all
       the same, so the answer is refused and the certificate kept to be withdrawn, and cfssl's error
       with it where the envelope reads; info keeps none and reads cfssl's error. */
    static const char *const refused[] = {
        "{\"success\":false,\"result\":{\"certificate\":@LEAF@},\"errors\":[1]}",
        "{\"success\":false,\"result\":{\"certificate\":@LEAF@},\"errors\":[{\"code\":1000,\"message\":"
        "\"m\"}],\"messages\":[]}\n"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        assert_int_equal(parse_tmpl(CFSSL_SIGN, refused[i], &o, err), UP);
        assert_true(o.ccert.cert != NULL && X509_cmp(o.ccert.cert, leaf) == 0);
        assert_false(o.ccert.env.success);
        assert_int_equal(o.ccert.env.code, i == 1 ? 1000 : 0);
        assert_string_equal(o.ccert.env.message, i == 1 ? "m" : "");
        gw_cfssl_cert_cleanup(&o.ccert);
    }
    assert_non_null(strstr(err, "result.certificate holds a certificate beside \"success\": false"));
    assert_int_equal(parse_tmpl(CFSSL_INFO, refused[1], &o, err), 0);
    assert_false(o.ccert.env.success);
    assert_int_equal(o.ccert.env.code, 1000);
    assert_null(o.ccert.cert);
    /* "success" that is no boolean is refused all the same, but a certificate beside it may have been
       issued: it is kept to be withdrawn too; info keeps none */
    static const char *const unsaid[] = {
        "{\"success\":\"false\",\"result\":{\"certificate\":@LEAF@}}",
        "{\"success\":1,\"result\":{\"certificate\":@LEAF@},\"errors\":[],\"messages\":[]}\n",
        "{\"success\":null,\"result\":{\"certificate\":@LEAF@}}", "{\"result\":{\"certificate\":@LEAF@}}",
        "{\"success\":\"true\",\"result\":{\"certificate\":@LEAF@}}x"};
    for (size_t i = 0; i < sizeof(unsaid) / sizeof(unsaid[0]); i++) {
        assert_int_equal(parse_tmpl(CFSSL_SIGN, unsaid[i], &o, err), UP);
        assert_true(o.ccert.cert != NULL && X509_cmp(o.ccert.cert, leaf) == 0);
        assert_false(o.ccert.env.success);
        gw_cfssl_cert_cleanup(&o.ccert);
        assert_int_equal(parse_tmpl(CFSSL_INFO, unsaid[i], &o, err), UP);
        assert_null(o.ccert.cert);
    }
    /* their twins without a readable certificate keep none */
    static const char *const none[] = {"{\"success\":\"false\",\"result\":null}",
                                       "{\"success\":1,\"result\":{\"certificate\":\"x\"}}",
                                       "{\"success\":1}"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        assert_int_equal(parse_tmpl(CFSSL_SIGN, none[i], &o, err), UP);
        assert_null(o.ccert.cert);
    }
    /* its twin without a certificate is cfssl's error, as cfssl writes it */
    assert_int_equal(parse_tmpl(CFSSL_SIGN, ENVELOPE("{\"code\":1000,\"message\":\"m\"}"), &o, err), 0);
    assert_null(o.ccert.cert);
}

#define CFCRL(x) "{\"success\":true,\"result\":" x ",\"errors\":[],\"messages\":[]}\n"

static void test_cfssl_crl(void **state)
{
    static const struct acase cases[] = {
        {"result an object", CFCRL("{}"), UP, "result is an object, not a string"},
        {"result empty", CFCRL("\"\""), UP, "result is empty"},
        {"result not a multiple of 4", CFCRL("\"AAAAA\""), UP, "result is not base64 (5 characters)"},
        {"result not base64", CFCRL("\"!!!!\""), UP, "result is not base64"},
        {"result NUL", CFCRL("\"AA\\u0000A\""), UP, "result holds a NUL byte"},
        {"result not a CRL", CFCRL("@NOTCRL@"), UP, "result is not the base64 of one DER CRL"},
        {"result with bytes after the CRL", CFCRL("@CRLTRAIL@"), UP,
         "result is not the base64 of one DER CRL"},
        {"trailing data", CFCRL("@CRL@") "[]", UP, "trailing data"},
    };
    char err[GW_ERR_LEN];
    union outs o;
    const unsigned char *p;
    X509_CRL *crl;

    (void)state;
    RUN(CFSSL_CRL, cases);
    assert_int_equal(parse_tmpl(CFSSL_CRL, CFCRL("@CRL@"), &o, err), 0);
    p = o.crl.der;
    assert_non_null(crl = d2i_X509_CRL(NULL, &p, (long)o.crl.len));
    assert_ptr_equal(p, o.crl.der + o.crl.len);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
    X509_CRL_free(crl);
    gw_cfssl_crl_cleanup(&o.crl);
}

/* ---- field.h on its own ---- */

/* gw_field_text: control characters replaced, and a cut never inside a UTF-8 character. */
static void test_field_text(void **state)
{
    char out[6];

    (void)state;
    gw_field_text(out, sizeof(out), "a\tb\x7f", 4);
    assert_string_equal(out, "a?b?");
    gw_field_text(out, sizeof(out), "abcd\xc3\xa9", 6); /* "abcdé": the é does not fit whole */
    assert_string_equal(out, "abcd");
    gw_field_text(out, sizeof(out), "abc\xc3\xa9z", 6);
    assert_string_equal(out, "abc\xc3\xa9");
}

/*
 * gw_field_quote: cut to its cap or to the room the reason's own words leave, whichever is less, and
 * never inside a UTF-8 character, as a refused cfssl answer's reason cuts the parser's words.
 */
static void test_field_quote(void **state)
{
    char text[GW_MAX_CFSSL_WHY + 8], out[GW_MAX_CFSSL_WHY + 1];

    (void)state;
    /* an é across bytes 150 and 151 of the text: the cut comes before it, not through it */
    memset(text, 'a', GW_MAX_CFSSL_WHY - 1);
    snprintf(text + GW_MAX_CFSSL_WHY - 1, sizeof(text) - (GW_MAX_CFSSL_WHY - 1), "\xc3\xa9z");
    gw_field_quote(out, GW_MAX_CFSSL_WHY, 0, text);
    assert_int_equal(strlen(out), GW_MAX_CFSSL_WHY - 1);
    assert_int_equal(strspn(out, "a"), GW_MAX_CFSSL_WHY - 1);
    /* the reason's words leave 10 bytes: the é across bytes 10 and 11 does not fit */
    gw_field_quote(out, GW_MAX_CFSSL_WHY, GW_ERR_LEN - 1 - 10, "abcdefghi\xc3\xa9");
    assert_string_equal(out, "abcdefghi");
    gw_field_quote(out, GW_MAX_CFSSL_WHY, GW_ERR_LEN - 1 - 11, "abcdefghi\xc3\xa9");
    assert_string_equal(out, "abcdefghi\xc3\xa9");
    /* no room at all, and a control character */
    gw_field_quote(out, GW_MAX_CFSSL_WHY, GW_ERR_LEN, "abc");
    assert_string_equal(out, "");
    gw_field_quote(out, GW_MAX_CFSSL_WHY, 0, "a\nb");
    assert_string_equal(out, "a?b");
}

/*
 * gw_field_reason: the words, the quote, the tail; the quote gives way to the words and the tail, cut
 * between characters, and may be the reason's own buffer.
 */
static void test_field_reason(void **state)
{
    char err[GW_ERR_LEN], words[GW_ERR_LEN];

    (void)state;
    gw_field_reason(err, 150, "a\nb", ")", "upstream %s: (", "v");
    assert_string_equal(err, "upstream v: (a?b)");
    /* the quote is taken before the reason is written over it */
    snprintf(err, sizeof(err), "Vault cert login: no token");
    gw_field_reason(err, 120, err, "", "upstream %s: GET %s: ", "v", "/v1/pki/crl");
    assert_string_equal(err, "upstream v: GET /v1/pki/crl: Vault cert login: no token");
    /* words and tail leave 10 bytes: the é across bytes 10 and 11 does not fit, the tail does */
    memset(words, 'w', GW_ERR_LEN - 1 - 10 - 1);
    words[GW_ERR_LEN - 1 - 10 - 1] = '\0';
    gw_field_reason(err, 150, "abcdefghi\xc3\xa9", ")", "%s", words);
    assert_int_equal(strlen(err), GW_ERR_LEN - 1 - 1);
    assert_string_equal(err + strlen(words), "abcdefghi)");
}

/*
 * A sign answer with no data but warnings is a refusal whose reason quotes the warnings, cut between
 * characters. Once, "%.200s" cut "a" and 150 "é" on the lone first byte of the 100th.
 */
static void test_vault_sign_warnings_cut(void **state)
{
    char body[1024], err[GW_ERR_LEN], repaired[GW_ERR_LEN];
    struct gw_vault_signed sig;
    size_t n;

    (void)state;
    n = (size_t)snprintf(body, sizeof(body), "{\"data\":null,\"warnings\":[\"a");
    for (size_t i = 0; i < 150; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "\xc3\xa9");
    snprintf(body + n, sizeof(body) - n, "\"]}");
    assert_int_equal(gw_vault_parse_sign(body, strlen(body), NULL, &sig, err), GW_ERR_NOT_FOUND);
    gw_vault_signed_cleanup(&sig);
    print_message("%s\n", err);
    assert_int_equal(strncmp(err, "Vault issued no certificate: a\xc3\xa9", 32), 0);
    if (gw_utf8_repair(repaired, sizeof(repaired), err) != strlen(err) || strcmp(repaired, err) != 0)
        fail_msg("\"%s\" is not whole UTF-8", err);
    assert_int_equal(strlen(err), strlen("Vault issued no certificate: a") + 2 * 99);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_document),          cmocka_unit_test(test_vault_error),
        cmocka_unit_test(test_vault_own_refusal), cmocka_unit_test(test_vault_login),
        cmocka_unit_test(test_vault_sign),        cmocka_unit_test(test_vault_answer_cert),
        cmocka_unit_test(test_vault_revoke),      cmocka_unit_test(test_vault_cert),
        cmocka_unit_test(test_vault_role),        cmocka_unit_test(test_cfssl_envelope),
        cmocka_unit_test(test_cfssl_sign_info),   cmocka_unit_test(test_cfssl_crl),
        cmocka_unit_test(test_field_text),        cmocka_unit_test(test_field_quote),
        cmocka_unit_test(test_field_reason),      cmocka_unit_test(test_vault_sign_warnings_cut),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
