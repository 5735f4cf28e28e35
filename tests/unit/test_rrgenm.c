/*
 * rr and genm through the engine (RFC 9483 §4.2, §4.3), with OpenSSL's CMP client in-process (its
 * transfer callback calls gw_cmp_process), plus the shim's rr reason walk and ITAV builders with
 * their adversarial twins. The PKI comes from deploy/demo-pki.sh; the local issuer keeps a store,
 * so it can revoke and publish a CRL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/cmp.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <json-c/json.h>

#include "gateway/cmp/engine.h"
#include "gateway/cmp/engine_test.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/cmp_local.h"
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/shim.h"
#include "gateway/cmp/status.h"
#include "gateway/config.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/x509.h"
#include "mappings/route.h"
#include "upstream/store.h"
#include "upstream/upstream.h"
#include "upstream/upstream_test.h"

#define OID_CACERTS "1.3.6.1.5.5.7.4.17"
#define OID_ROOTUPD "1.3.6.1.5.5.7.4.18"
#define OID_ROOTCERT "1.3.6.1.5.5.7.4.20"
#define OID_TEMPLATE "1.3.6.1.5.5.7.4.19"
#define OID_CRLSTATUS "1.3.6.1.5.5.7.4.22"
#define OID_CRLS "1.3.6.1.5.5.7.4.23"

static char dir[64];
static char *base_json;
static X509 *client_cert, *ca_cert, *issuing_cert, *signer_cert, *new_root, *new_with_old, *old_with_new;
static EVP_PKEY *client_key, *signer_key, *issuing_key;

struct env {
    struct gw_config *cfg;
    struct gw_upstream_set *ups;
    struct gw_cmp_engine *engine;
    struct gw_route_match route;
    char audit_path[160];
};

static char *slurp(const char *path, size_t *len)
{
    return tu_slurp(path, len);
}

static X509 *load_cert(const char *name)
{
    return tu_load_cert(dir, name);
}

static EVP_PKEY *load_key(const char *name)
{
    return tu_load_key(dir, name);
}

static int group_setup(void **state)
{
    char cmd[256], path[128];

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cmpgw-test-rrgenm-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "../../deploy/demo-pki.sh %s >/dev/null 2>&1", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "../root-update-pki.sh %s", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/cmpgw.json", dir);
    base_json = tu_widen_demo(slurp(path, NULL));
    client_cert = load_cert("client.pem");
    ca_cert = load_cert("ca.pem");
    issuing_cert = load_cert("issuing.pem");
    signer_cert = load_cert("signer.pem");
    new_root = load_cert("newroot.pem");
    new_with_old = load_cert("newwithold.pem");
    old_with_new = load_cert("oldwithnew.pem");
    client_key = load_key("client.key");
    signer_key = load_key("signer.key");
    issuing_key = load_key("issuing.key");
    gw_log_set_level(getenv("CMPGW_TEST_DEBUG") != NULL ? GW_LOG_DEBUG : GW_LOG_ERROR);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];

    (void)state;
    free(base_json);
    X509_free(client_cert);
    X509_free(ca_cert);
    X509_free(issuing_cert);
    X509_free(signer_cert);
    X509_free(new_root);
    X509_free(new_with_old);
    X509_free(old_with_new);
    EVP_PKEY_free(client_key);
    EVP_PKEY_free(signer_key);
    EVP_PKEY_free(issuing_key);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* When set, another upstream ("name": {...}) env_new adds beside the demo's. */
static const char *extra_upstream;
/* When set, the upstream of env_new's role in place of the demo's "local". */
static const char *role_upstream;

/* The demo config, the local issuer with a store (it revokes), |role_extra| members in the role. */
static struct env *env_new(const char *role_extra, const char *top_extra)
{
    static int n;
    struct env *e = calloc(1, sizeof(*e));
    struct gw_cmp_settings settings;
    char err[GW_ERR_LEN] = "", piece[1024], *json = strdup(base_json);

    snprintf(piece, sizeof(piece), "\"store\": \"store-%d\", ", ++n);
    json = tu_insert_at(json, "\"type\": \"local\", ", 1, piece);
    if (role_extra != NULL) {
        snprintf(piece, sizeof(piece), ",\n      %s", role_extra);
        json = tu_insert_at(json, "\"implicit_confirm\": true", 1, piece);
    }
    if (extra_upstream != NULL) {
        snprintf(piece, sizeof(piece), "%s,\n    ", extra_upstream);
        json = tu_insert_at(json, "\"upstreams\": {\n    ", 1, piece);
    }
    if (role_upstream != NULL) {
        snprintf(piece, sizeof(piece), "\"upstream\": \"%s\"", role_upstream);
        json = tu_replace(json, "\"upstream\": \"local\"", piece);
    }
    if (top_extra != NULL) {
        snprintf(piece, sizeof(piece), "%s,\n  ", top_extra);
        json = tu_insert_at(json, "\"default_path_policy\"", 0, piece);
    }
    snprintf(piece, sizeof(piece), "%s/store-%d", dir, n);
    assert_int_equal(mkdir(piece, 0700), 0);
    e->cfg = gw_config_parse(json, strlen(json), dir, "test.json", err);
    if (e->cfg == NULL)
        fail_msg("config: %s\n%s", err, json);
    free(json);
    snprintf(e->audit_path, sizeof(e->audit_path), "%s/audit-%d.log", dir, n);
    free(e->cfg->audit.file);
    e->cfg->audit.file = strdup(e->audit_path);
    if ((e->ups = gw_upstream_set_new(e->cfg->upstreams, e->cfg->n_upstreams, e->cfg->roles, e->cfg->n_roles,
                                      &e->cfg->upstream_signer, NULL, NULL, err)) == NULL)
        fail_msg("upstreams: %s", err);
    gw_config_cmp_settings(e->cfg, &settings);
    if ((e->engine = gw_cmp_engine_new(&settings, e->ups, NULL, NULL, err)) == NULL)
        fail_msg("engine: %s", err);
    e->route.kind = GW_ROUTE_DEFAULT;
    e->route.role = e->cfg->default_path_policy.role;
    return e;
}

static void env_free(struct env *e)
{
    gw_cmp_engine_free(e->engine);
    gw_upstream_set_free(e->ups);
    gw_config_free(e->cfg);
    free(e);
}

/* The engine as the client's transport; |captured| keeps the last request when set. */
static OSSL_CMP_MSG *last_req;
static int no_send;

/*
 * |req| through |e|'s engine: its answer, or NULL where the engine's is no 200. |checked|: it must be a 200
 * within GW_MAX_RESPONSE (cmocka's asserts, so on the test's own thread only).
 */
static OSSL_CMP_MSG *exchange(struct env *e, const OSSL_CMP_MSG *req, int checked)
{
    struct gw_cmp_response rsp;
    unsigned char *der = NULL;
    const unsigned char *p;
    OSSL_CMP_MSG *out = NULL;
    int len = i2d_OSSL_CMP_MSG(req, &der);

    if (len <= 0) {
        OPENSSL_free(der);
        return NULL;
    }
    gw_cmp_response_init(&rsp);
    gw_cmp_process(e->engine, &(struct gw_cmp_request){.der = der, .len = (size_t)len, .route = &e->route},
                   &rsp);
    if (checked) {
        assert_int_equal(rsp.http_status, 200);
        assert_true(rsp.len <= GW_MAX_RESPONSE);
    }
    p = rsp.der;
    if (rsp.http_status == 200)
        out = d2i_OSSL_CMP_MSG(NULL, &p, (long)rsp.len);
    gw_cmp_response_cleanup(&rsp);
    OPENSSL_free(der);
    return out;
}

static OSSL_CMP_MSG *transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    OSSL_CMP_MSG_free(last_req);
    last_req = OSSL_CMP_MSG_dup(req);
    return no_send ? NULL : exchange(OSSL_CMP_CTX_get_transfer_cb_arg(ctx), req, 1);
}

static int quiet(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
    (void)func, (void)file, (void)line, (void)level, (void)msg;
    return 1;
}

/* A signing client (|cert|/|key|), or PBM with the demo reference when |cert| is NULL. */
static OSSL_CMP_CTX *client_new(struct env *e, X509 *cert, EVP_PKEY *key)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
    X509_STORE *store = X509_STORE_new();
    char path[128];
    size_t n;
    char *secret;

    X509_STORE_add_cert(store, ca_cert);
    assert_int_equal(OSSL_CMP_CTX_set0_trustedStore(ctx, store), 1);
    OSSL_CMP_CTX_set_log_cb(ctx, quiet);
    OSSL_CMP_CTX_set_transfer_cb(ctx, transfer);
    OSSL_CMP_CTX_set_transfer_cb_arg(ctx, e);
    if (cert != NULL) {
        assert_int_equal(OSSL_CMP_CTX_set1_cert(ctx, cert), 1);
        assert_int_equal(OSSL_CMP_CTX_set1_pkey(ctx, key), 1);
    } else {
        snprintf(path, sizeof(path), "%s/pbm.secret", dir);
        secret = slurp(path, &n);
        OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)"demo-device", 11);
        OSSL_CMP_CTX_set1_secretValue(ctx, (unsigned char *)secret, (int)n);
        free(secret);
    }
    return ctx;
}

static void assert_status(OSSL_CMP_CTX *ctx, int status, int fail_bit, const char *text)
{
    OSSL_CMP_PKIFREETEXT *ss = OSSL_CMP_CTX_get0_statusString(ctx);
    ASN1_UTF8STRING *s = sk_ASN1_UTF8STRING_num(ss) > 0 ? sk_ASN1_UTF8STRING_value(ss, 0) : NULL;
    char got[512] = "";

    if (s != NULL)
        snprintf(got, sizeof(got), "%.*s", s->length, (const char *)s->data);
    if (OSSL_CMP_CTX_get_status(ctx) != status)
        fail_msg("status %d, want %d (%s)", OSSL_CMP_CTX_get_status(ctx), status, got);
    if (fail_bit >= 0 && OSSL_CMP_CTX_get_failInfoCode(ctx) != (1 << fail_bit))
        fail_msg("failInfo 0x%x, want bit %d (%s)", OSSL_CMP_CTX_get_failInfoCode(ctx), fail_bit, got);
    if (text != NULL && strstr(got, text) == NULL)
        fail_msg("statusString \"%s\" lacks \"%s\"", got, text);
}

/* How often |needle| is in |hay|. */
static int occurrences(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* The log while a test captures it (log_capture), at the group's level otherwise. */
static struct tu_log captured = {.fd = -1, .saved = -1};

static void log_capture(enum gw_log_level level)
{
    tu_log_capture(&captured, level, getenv("CMPGW_TEST_DEBUG") != NULL ? GW_LOG_DEBUG : GW_LOG_ERROR);
}

/* The teardown of the tests that capture the log: one that failed meanwhile gets the log's end shown. */
static int log_release(void **state)
{
    (void)state;
    tu_log_release_shown(&captured);
    return 0;
}

/* The records of |event| on the audit log whose |field| holds |value| (is |value| where |exact|). */
static int audit_count_by(const struct env *e, const char *event, const char *field, const char *value,
                          bool exact)
{
    FILE *f = fopen(e->audit_path, "r");
    char line[16384];
    int n = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        struct json_object *o = json_tokener_parse(line), *v;

        assert_non_null(o);
        if (json_object_object_get_ex(o, "event", &v) && strcmp(json_object_get_string(v), event) == 0 &&
            (field == NULL || (json_object_object_get_ex(o, field, &v) &&
                               (exact ? strcmp(json_object_get_string(v), value) == 0
                                      : strstr(json_object_get_string(v), value) != NULL))))
            n++;
        json_object_put(o);
    }
    fclose(f);
    return n;
}

static int audit_count(const struct env *e, const char *event, const char *field, const char *value)
{
    return audit_count_by(e, event, field, value, false);
}

/* Whether the last record of the audit log is an |event|. */
static int audit_last(const struct env *e, const char *event)
{
    FILE *f = fopen(e->audit_path, "r");
    char line[16384], last[16384] = "";
    struct json_object *o, *v;
    int is;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        memcpy(last, line, sizeof(last));
    fclose(f);
    assert_non_null(o = json_tokener_parse(last));
    is = json_object_object_get_ex(o, "event", &v) && strcmp(json_object_get_string(v), event) == 0;
    json_object_put(o);
    return is;
}

/* ---- genm ---------------------------------------------------------------------------------- */

/* Sends a genm asking for |oids| (with a NULL value each, or |value| for the first); returns the genp ITAVs.
 */
static STACK_OF(OSSL_CMP_ITAV) *genm(struct env *e, OSSL_CMP_CTX *ctx, const char *const *oids, int n,
                                     ASN1_TYPE *value)
{
    for (int i = 0; i < n; i++) {
        OSSL_CMP_ITAV *itav = OSSL_CMP_ITAV_create(OBJ_txt2obj(oids[i], 1), i == 0 ? value : NULL);
        assert_non_null(itav);
        assert_int_equal(OSSL_CMP_CTX_push0_genm_ITAV(ctx, itav), 1);
    }
    (void)e;
    return OSSL_CMP_exec_GENM_ses(ctx);
}

static void itav_type(const OSSL_CMP_ITAV *itav, char *out, size_t cap)
{
    OBJ_obj2txt(out, (int)cap, OSSL_CMP_ITAV_get0_type(itav), 1);
}

/* The elements of a SEQUENCE value, decoded with |d2i| (certificates or CRLs). */
static int seq_count(const ASN1_TYPE *v, int tag)
{
    const unsigned char *p, *end;
    long len;
    int t, cls, n = 0;

    assert_non_null(v);
    assert_int_equal(v->type, V_ASN1_SEQUENCE);
    p = v->value.sequence->data;
    end = p + v->value.sequence->length;
    assert_int_equal(ASN1_get_object(&p, &len, &t, &cls, end - p) & 0x80, 0);
    assert_int_equal(t, V_ASN1_SEQUENCE);
    while (p < end) {
        const unsigned char *q = p;
        assert_int_equal(ASN1_get_object(&q, &len, &t, &cls, end - p) & 0x80, 0);
        assert_int_equal(t, tag);
        p = q + len;
        n++;
    }
    assert_true(p == end);
    return n;
}

static void test_genm_ca_certs(void **state)
{
    struct env *e = env_new(NULL, NULL);
    OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
    const char *oids[] = {OID_CACERTS};
    STACK_OF(OSSL_CMP_ITAV) *out;
    char type[64];
    const unsigned char *p;
    X509 *first;

    (void)state;
    out = genm(e, ctx, oids, 1, NULL);
    assert_non_null(out);
    assert_int_equal(sk_OSSL_CMP_ITAV_num(out), 1);
    itav_type(sk_OSSL_CMP_ITAV_value(out, 0), type, sizeof(type));
    assert_string_equal(type, OID_CACERTS);
    /* issuing CA, then the root: SEQUENCE OF Certificate */
    assert_int_equal(seq_count(OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0)), V_ASN1_SEQUENCE), 2);
    p = OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0))->value.sequence->data;
    {
        long len;
        int t, cls;
        ASN1_get_object(&p, &len, &t, &cls, 1 << 20);
    }
    first = d2i_X509(NULL, &p, 1 << 20);
    assert_non_null(first);
    assert_int_equal(X509_cmp(first, issuing_cert), 0);
    X509_free(first);
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* |cert| as an ITAV value (a Certificate), as id-it-rootCaCert carries it. */
static ASN1_TYPE *cert_value(X509 *cert)
{
    unsigned char *der = NULL;
    int len = i2d_X509(cert, &der);
    const unsigned char *p = der;
    ASN1_TYPE *v = d2i_ASN1_TYPE(NULL, &p, len);

    OPENSSL_free(der);
    assert_non_null(v);
    return v;
}

/* The certificate at *pp inside an EXPLICIT [tag] of a RootCaKeyUpdateContent, or NULL if absent. */
static X509 *tagged_cert(const unsigned char **pp, const unsigned char *end, int tag)
{
    const unsigned char *q = *pp;
    long len;
    int t, cls;

    if (q >= end)
        return NULL;
    assert_int_equal(ASN1_get_object(&q, &len, &t, &cls, end - q) & 0x80, 0);
    if (cls != V_ASN1_CONTEXT_SPECIFIC || t != tag)
        return NULL;
    *pp = q + len;
    return d2i_X509(NULL, &q, len);
}

/*
 * RFC 9483 §4.3.2: id-it-rootCaCert with the root the client trusts (or none) is answered with
 * id-it-rootCaKeyUpdate: newWithNew, newWithOld and oldWithNew when the configured update's old root
 * is that root; an absent value when nothing is configured or the client trusts another root. The
 * drafts' request (id-it-rootCaKeyUpdate, no value) still gets the update.
 */
static void test_genm_root_update(void **state)
{
    static const char *top = "\"root_ca_update\": {\"new_with_new\": \"newroot.pem\", \"new_with_old\": "
                             "\"newwithold.pem\", \"old_with_new\": \"oldwithnew.pem\"}";
    static const char *role = "\"root_ca_update\": {\"new_with_new\": \"newroot.pem\", \"new_with_old\": "
                              "\"newwithold.pem\"}";
    const struct {
        const char *role, *top, *oid;
        X509 *sent;
        int present, own;
    } cases[] = {
        {NULL, NULL, OID_ROOTCERT, NULL, 0, 0},       /* nothing configured */
        {NULL, NULL, OID_ROOTCERT, ca_cert, 0, 0},    /* nothing configured, root named */
        {NULL, top, OID_ROOTCERT, ca_cert, 1, 1},     /* the old root: the update */
        {NULL, top, OID_ROOTCERT, NULL, 1, 1},        /* no root named: the update */
        {NULL, top, OID_ROOTCERT, new_root, 0, 0},    /* already the new root */
        {NULL, top, OID_ROOTCERT, client_cert, 0, 0}, /* another certificate */
        {role, top, OID_ROOTCERT, ca_cert, 1, 0},     /* the role's own update wins */
        {NULL, top, OID_ROOTUPD, NULL, 1, 1},         /* the drafts' request */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_new(cases[i].role, cases[i].top);
        OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
        const char *oids[] = {cases[i].oid};
        STACK_OF(OSSL_CMP_ITAV) *out =
            genm(e, ctx, oids, 1, cases[i].sent != NULL ? cert_value(cases[i].sent) : NULL);
        const ASN1_TYPE *v;
        char type[64];

        if (out == NULL)
            fail_msg("case %zu: no genp", i);
        assert_int_equal(sk_OSSL_CMP_ITAV_num(out), 1);
        itav_type(sk_OSSL_CMP_ITAV_value(out, 0), type, sizeof(type));
        assert_string_equal(type, OID_ROOTUPD);
        v = OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0));
        if (!cases[i].present) {
            if (v != NULL)
                fail_msg("case %zu: a value where none applies", i);
        } else {
            /* RootCaKeyUpdateContent ::= SEQUENCE { newWithNew, [0] newWithOld, [1] oldWithNew OPTIONAL } */
            const unsigned char *p = v->value.sequence->data, *end;
            long len;
            int t, cls;
            X509 *nwn, *nwo, *own;

            assert_int_equal(ASN1_get_object(&p, &len, &t, &cls, v->value.sequence->length) & 0x80, 0);
            end = p + len;
            assert_non_null(nwn = d2i_X509(NULL, &p, end - p));
            assert_int_equal(X509_cmp(nwn, new_root), 0);
            assert_non_null(nwo = tagged_cert(&p, end, 0));
            assert_int_equal(X509_cmp(nwo, new_with_old), 0);
            own = tagged_cert(&p, end, 1);
            assert_int_equal(own != NULL, cases[i].own);
            if (own != NULL)
                assert_int_equal(X509_cmp(own, old_with_new), 0);
            assert_true(p == end);
            X509_free(nwn);
            X509_free(nwo);
            X509_free(own);
        }
        sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/* A self-signed certificate for an RSA key with public exponent 2^32 + 1: costlier to verify with than
 * allowed. */
static X509 *costly_root(void)
{
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    BIGNUM *e = BN_new();
    EVP_PKEY *k = NULL;
    X509 *x = X509_new();

    assert_non_null(kc);
    assert_int_equal(BN_set_word(e, 0x100000001ULL), 1);
    assert_int_equal(EVP_PKEY_keygen_init(kc), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(kc, 2048), 1);
    assert_int_equal(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(kc, e), 1);
    assert_int_equal(EVP_PKEY_keygen(kc, &k), 1);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"costly",
                               -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(kc);
    BN_free(e);
    return x;
}

/* A rootCaCert value that is no certificate is refused, and said so; the certificate twin is answered. */
static void test_genm_root_cert_malformed(void **state)
{
    const char *oids[] = {OID_ROOTCERT};
    struct env *e = env_new(NULL, NULL);
    OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
    ASN1_TYPE *integer = ASN1_TYPE_new(), *seq;
    ASN1_INTEGER *n = ASN1_INTEGER_new();
    STACK_OF(OSSL_CMP_ITAV) *out;
    unsigned char junk[] = {0x30, 0x03, 0x02, 0x01, 0x07};
    const unsigned char *p = junk;

    (void)state;
    ASN1_INTEGER_set(n, 7);
    ASN1_TYPE_set(integer, V_ASN1_INTEGER, n);
    assert_null(genm(e, ctx, oids, 1, integer));
    assert_status(
        ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
        "the id-it-rootCaCert value is not a certificate: send the root CA certificate you trust, or "
        "no value (RFC 9483 §4.3.2)");
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(seq = d2i_ASN1_TYPE(NULL, &p, sizeof(junk)));
    assert_null(genm(e, ctx, oids, 1, seq));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "is not a certificate");
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(out = genm(e, ctx, oids, 1, cert_value(ca_cert)));
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    /* a root whose key the gateway would have to verify a signature with is bounded like any other */
    OSSL_CMP_CTX_reinit(ctx);
    {
        X509 *costly = costly_root();
        assert_null(genm(e, ctx, oids, 1, cert_value(costly)));
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                      "a key in this request is above this server's limits");
        X509_free(costly);
    }
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* A config with |update| as the top-level root_ca_update: NULL if it fails, |want| in the reason. */
static void root_update_config(const char *update, const char *want)
{
    char err[GW_ERR_LEN] = "", piece[512], *json;
    struct gw_config *cfg;

    snprintf(piece, sizeof(piece), "\"root_ca_update\": {%s},\n", update);
    json = tu_insert_at(strdup(base_json), "\"default_path_policy\"", 0, piece);
    cfg = gw_config_parse(json, strlen(json), dir, "test.json", err);
    free(json);
    if (want == NULL) {
        if (cfg == NULL)
            fail_msg("%s: %s", update, err);
        gw_config_free(cfg);
        return;
    }
    if (cfg != NULL)
        fail_msg("%s: loaded", update);
    if (strstr(err, want) == NULL || strstr(err, "$.root_ca_update") == NULL)
        fail_msg("%s: \"%s\" lacks \"%s\"", update, err, want);
}

/* RFC 4210 §4.4: the update's certificates must fit together, else the config names the path. */
static void test_root_update_config(void **state)
{
    (void)state;
    root_update_config("\"new_with_new\": \"newroot.pem\"", "new_with_old");
    root_update_config("\"new_with_new\": \"client.pem\", \"new_with_old\": \"newwithold.pem\"",
                       "self-signed");
    root_update_config(
        "\"new_with_new\": \"newroot.pem\", \"new_with_old\": \"newroot.pem\"",
        "new_with_old must certify the key of new_with_new and be signed by the old root's key");
    root_update_config("\"new_with_new\": \"newroot.pem\", \"new_with_old\": \"client.pem\"",
                       "new_with_old must certify");
    root_update_config("\"new_with_new\": \"newroot.pem\", \"new_with_old\": \"newwithold.pem\", "
                       "\"old_with_new\": \"client.pem\"",
                       "old_with_new must certify the key that signed new_with_old");
    root_update_config("\"new_with_new\": \"newroot.pem\", \"new_with_old\": \"newwithold.pem\", "
                       "\"old_with_new\": \"newwithold.pem\"",
                       "old_with_new must certify");
    root_update_config("\"old_with_new\": \"oldwithnew.pem\"", "new_with_new");
    /* the twins: a complete update, and one without oldWithNew */
    root_update_config("\"new_with_new\": \"newroot.pem\", \"new_with_old\": \"newwithold.pem\", "
                       "\"old_with_new\": \"oldwithnew.pem\"",
                       NULL);
    root_update_config("\"new_with_new\": \"newroot.pem\", \"new_with_old\": \"newwithold.pem\"", NULL);
}

static void test_genm_cert_template(void **state)
{
    struct env *e = env_new("\"authorization\": {\"allowed_key_types\": [\"ec:P-256\", \"rsa:3072\"]}", NULL);
    OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
    const char *oids[] = {OID_TEMPLATE};
    STACK_OF(OSSL_CMP_ITAV) *out = genm(e, ctx, oids, 1, NULL);
    const ASN1_TYPE *v;
    const unsigned char *p, *q;
    long len;
    int t, cls;
    OSSL_CRMF_CERTTEMPLATE *tmpl;

    (void)state;
    assert_non_null(out);
    v = OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0));
    assert_non_null(v);
    /* CertReqTemplateContent ::= SEQUENCE { certTemplate, keySpec } */
    p = v->value.sequence->data;
    ASN1_get_object(&p, &len, &t, &cls, v->value.sequence->length);
    q = p;
    tmpl = d2i_OSSL_CRMF_CERTTEMPLATE(NULL, &q, len);
    assert_non_null(tmpl);
    assert_null(OSSL_CRMF_CERTTEMPLATE_get0_subject(tmpl)); /* the client names itself */
    assert_int_equal(
        X509v3_get_ext_by_NID(OSSL_CRMF_CERTTEMPLATE_get0_extensions(tmpl), NID_key_usage, -1) >= 0, 1);
    assert_int_equal(
        X509v3_get_ext_by_NID(OSSL_CRMF_CERTTEMPLATE_get0_extensions(tmpl), NID_ext_key_usage, -1) >= 0, 1);
    OSSL_CRMF_CERTTEMPLATE_free(tmpl);
    /* keySpec: two controls, one per allowed key type */
    {
        ASN1_TYPE ks = {.type = V_ASN1_SEQUENCE};
        ASN1_STRING s = {0};
        const unsigned char *start = q;
        ASN1_get_object(&q, &len, &t, &cls, 1 << 16);
        s.data = (unsigned char *)start;
        s.length = (int)(q - start + len);
        ks.value.sequence = &s;
        assert_int_equal(seq_count(&ks, V_ASN1_SEQUENCE), 2);
    }
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* The keySpec controls of a certReqTemplate answer: one per key type the role allows. */
static int template_key_specs(STACK_OF(OSSL_CMP_ITAV) *out)
{
    const ASN1_TYPE *v = OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0));
    const unsigned char *p = v->value.sequence->data, *q;
    ASN1_TYPE ks = {.type = V_ASN1_SEQUENCE};
    ASN1_STRING str = {0};
    long len;
    int t, cls;

    ASN1_get_object(&p, &len, &t, &cls, v->value.sequence->length); /* CertReqTemplateContent */
    q = p;
    ASN1_get_object(&q, &len, &t, &cls, 1 << 16); /* certTemplate: skipped */
    p = q + len;
    str.data = (unsigned char *)p;
    str.length = (int)(v->value.sequence->data + v->value.sequence->length - p);
    ks.value.sequence = &str;
    return seq_count(&ks, V_ASN1_SEQUENCE);
}

/* A client naming certProfile |name| (RFC 9483 §3.1) in every message's generalInfo. */
static void name_profile(OSSL_CMP_CTX *ctx, const char *name)
{
    unsigned char der[128];
    const unsigned char *p = der;
    size_t n = strlen(name);
    ASN1_TYPE *v;

    assert_true(n < 100);
    der[0] = V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED;
    der[1] = (unsigned char)(n + 2);
    der[2] = V_ASN1_UTF8STRING;
    der[3] = (unsigned char)n;
    memcpy(der + 4, name, n);
    assert_non_null(v = d2i_ASN1_TYPE(NULL, &p, (long)n + 4));
    assert_int_equal(
        OSSL_CMP_CTX_push0_geninfo_ITAV(ctx, OSSL_CMP_ITAV_create(OBJ_txt2obj("1.3.6.1.5.5.7.4.21", 1), v)),
        1);
}

/*
 * certProfile through the engine: on the default path it selects its role (the template shows
 * which: role "tls" allows one key type, the default role the six built-in ones); on a role path it
 * must name that role; an unknown one is refused with the known ones listed.
 */
static void test_genm_profile(void **state)
{
    const char *oids[] = {OID_TEMPLATE};
    struct env *e;
    OSSL_CMP_CTX *ctx;
    STACK_OF(OSSL_CMP_ITAV) *out;
    char *saved = base_json;

    (void)state;
    base_json = tu_insert_at(strdup(saved), "\"roles\": {", 1,
                             "\n    \"tls\": {\"upstream\": \"local\", \"trust\": [\"demo\"], "
                             "\"authorization\": {\"allowed_key_types\": [\"ed25519\"]}},");
    e = env_new(NULL, "\"profiles\": {\"tls-server\": \"role:tls\", \"device\": \"role:default\"}");
    free(base_json);
    base_json = saved;

    ctx = client_new(e, client_cert, client_key);
    assert_non_null(out = genm(e, ctx, oids, 1, NULL));
    assert_int_equal(template_key_specs(out), 6); /* no profile: the path's role */
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);

    ctx = client_new(e, client_cert, client_key);
    name_profile(ctx, "tls-server");
    assert_non_null(out = genm(e, ctx, oids, 1, NULL));
    assert_int_equal(template_key_specs(out), 1);
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);

    ctx = client_new(e, client_cert, client_key);
    name_profile(ctx, "nope");
    assert_null(genm(e, ctx, oids, 1, NULL));
    assert_status(
        ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
        "certProfile \"nope\" is not served on this path: name a profile this server's operator gave "
        "you for this path");
    OSSL_CMP_CTX_free(ctx);

    /* a role path: the profile must agree with it */
    e->route.kind = GW_ROUTE_ROLE;
    ctx = client_new(e, client_cert, client_key);
    name_profile(ctx, "tls-server");
    assert_null(genm(e, ctx, oids, 1, NULL));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "certProfile \"tls-server\" is not served on this path");
    OSSL_CMP_CTX_free(ctx);
    ctx = client_new(e, client_cert, client_key);
    name_profile(ctx, "device");
    assert_non_null(out = genm(e, ctx, oids, 1, NULL));
    assert_int_equal(template_key_specs(out), 6);
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Unknown infoType, too many, malformed crlStatusList: error messages with failInfo and text. */
static void test_genm_refusals(void **state)
{
    const char *unknown[] = {"1.2.3.4.5"};
    const char *many[] = {OID_CACERTS, OID_CACERTS, OID_CACERTS, OID_CACERTS, OID_CACERTS,
                          OID_CACERTS, OID_CACERTS, OID_CACERTS, OID_CACERTS};
    const char *crl[] = {OID_CRLSTATUS};
    struct env *e = env_new(NULL, NULL);
    OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
    ASN1_TYPE *bad = ASN1_TYPE_new();

    (void)state;
    assert_null(genm(e, ctx, unknown, 1, NULL));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "infoType 1.2.3.4.5 is not supported");
    OSSL_CMP_CTX_reinit(ctx);
    assert_null(genm(e, ctx, many, 9, NULL));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "a genm must ask for 1 to 8 infoTypes; this server answers id-it-caCerts, ");
    OSSL_CMP_CTX_reinit(ctx);
    ASN1_TYPE_set(bad, V_ASN1_NULL, NULL); /* not a SEQUENCE OF CRLStatus */
    assert_null(genm(e, ctx, crl, 1, bad));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badDataFormat,
                  "the id-it-crlStatusList value is malformed (RFC 9483 §4.3.4)");
    /* the twin: a valid (absent) value is answered */
    OSSL_CMP_CTX_reinit(ctx);
    {
        STACK_OF(OSSL_CMP_ITAV) *out = genm(e, ctx, crl, 1, NULL);
        char type[64];
        assert_non_null(out);
        itav_type(sk_OSSL_CMP_ITAV_value(out, 0), type, sizeof(type));
        assert_string_equal(type, OID_CRLS);
        sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    }
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* An upstream whose CRL is too large for a CMP response, cannot deliver one, or serves a bad one. */
static int fake_crl_mode; /* 0: the CA's own, too large (CRL_LARGE_ENTRIES), 1: upstream down, 2: signed by
                             another key, 3: from the future, 4: the issuing CA's own, 5: the CA's of an hour
                             ago, 6: the CA's own, current for 2 s only, 7: the CA's own, listing
                             CRL_HIT_ENTRIES certificates, 8: as large, and no CRL at all, 9: the CA's
                             own, CRL_NEAR_ROOM bytes short of GW_MAX_GENP_VALUE */
static atomic_int fake_crl_fetches; /* how often the CRL was asked for */
/* When set, the upstream of this name serves the CRL of fake_crl_other_ca, signed by fake_crl_other_key. */
static const char *fake_crl_other_up;
static X509 *fake_crl_other_ca;
static EVP_PKEY *fake_crl_other_key;
static int fake_crl_delay_ms; /* how long the CA takes to answer */

/* Mode 7's entries: some 55 KB of CRL, a large CA's. */
#define CRL_HIT_ENTRIES 2500
/* Mode 0's: some 110 KB, more than a genp may carry (GW_MAX_GENP_VALUE). */
#define CRL_LARGE_ENTRIES 5000
/* Mode 9's room below GW_MAX_GENP_VALUE: less than the demo CA's certificate, so that caCerts beside its CRL
   do not fit. */
#define CRL_NEAR_ROOM 300
/* The DER bytes of each entry added: a 3-byte serial and a UTCTime. */
#define CRL_ENTRY_BYTES 22

/* Adds |count| entries to |crl|, revoked at |when|, serials from 0x10000 + |from| on. */
static void add_entries(X509_CRL *crl, int from, int count, ASN1_TIME *when)
{
    for (int i = from; i < from + count; i++) {
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_INTEGER *serial = ASN1_INTEGER_new();

        ASN1_INTEGER_set(serial, 0x10000 + i);
        X509_REVOKED_set_serialNumber(r, serial);
        X509_REVOKED_set_revocationDate(r, when);
        X509_CRL_add0_revoked(crl, r);
        ASN1_INTEGER_free(serial);
    }
}

/* A CRL under the name of |ca|, signed by |ca_key| or by another key (mode 2), dated an hour ahead (mode 3),
 * or as the CA makes it (mode 4), or made an hour ago (mode 5), or with a nextUpdate 2 s ahead (mode 6), or
 * listing CRL_HIT_ENTRIES serials (mode 7) or CRL_LARGE_ENTRIES (mode 0), or as many as fit in
 * GW_MAX_GENP_VALUE - CRL_NEAR_ROOM bytes (mode 9). */
static int bad_crl(const X509 *ca, EVP_PKEY *ca_key, unsigned char **der, size_t *len)
{
    X509_CRL *crl = X509_CRL_new();
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ASN1_TIME *t1 = ASN1_TIME_adj(NULL, time(NULL), 0,
                                  fake_crl_mode == 3   ? 3600
                                  : fake_crl_mode == 5 ? -3600
                                                       : -60);
    ASN1_TIME *t2 = ASN1_TIME_adj(NULL, time(NULL), fake_crl_mode == 6 ? 0 : 1, fake_crl_mode == 6 ? 2 : 0);
    int n, entries = fake_crl_mode == 7 ? CRL_HIT_ENTRIES : fake_crl_mode == 0 ? CRL_LARGE_ENTRIES : 0;

    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca));
    X509_CRL_set1_lastUpdate(crl, t1);
    X509_CRL_set1_nextUpdate(crl, t2);
    add_entries(crl, 0, entries, t1);
    X509_CRL_sign(crl, fake_crl_mode == 2 ? other : ca_key, EVP_sha256());
    /* mode 9: grown towards GW_MAX_GENP_VALUE - CRL_NEAR_ROOM, each step short of it by less than an entry */
    while (fake_crl_mode == 9 &&
           (n = (GW_MAX_GENP_VALUE - CRL_NEAR_ROOM - i2d_X509_CRL(crl, NULL)) / CRL_ENTRY_BYTES) > 0) {
        add_entries(crl, entries, n, t1);
        entries += n;
        X509_CRL_sign(crl, ca_key, EVP_sha256());
    }
    *der = NULL;
    n = i2d_X509_CRL(crl, der);
    *len = n > 0 ? (size_t)n : 0;
    ASN1_TIME_free(t1);
    ASN1_TIME_free(t2);
    EVP_PKEY_free(other);
    X509_CRL_free(crl);
    return n > 0 ? 0 : GW_ERR_NOMEM;
}

static int fake_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                     void *arg)
{
    (void)up, (void)req, (void)done, (void)arg;
    return GW_ERR_INVAL;
}

static int fake_crl(struct gw_upstream *up, const char *issuer_ref, unsigned char **der, size_t *len,
                    char *err)
{
    bool other = fake_crl_other_up != NULL &&
                 strcmp(gw_upstream_conf_name(gw_upstream_get0_conf(up)), fake_crl_other_up) == 0;

    (void)issuer_ref;
    fake_crl_fetches++;
    usleep((useconds_t)fake_crl_delay_ms * 1000);
    if (fake_crl_mode == 1) {
        snprintf(err, GW_ERR_LEN, "connection refused");
        return GW_ERR_IO;
    }
    if (fake_crl_mode != 8) {
        unsigned char *d = NULL;
        int rc = other ? bad_crl(fake_crl_other_ca, fake_crl_other_key, &d, len)
                       : bad_crl(issuing_cert, issuing_key, &d, len);

        *der = rc == 0 ? malloc(*len) : NULL; /* the caller free()s */
        if (*der != NULL)
            memcpy(*der, d, *len);
        OPENSSL_free(d);
        return *der != NULL ? 0 : GW_ERR_NOMEM;
    }
    *len = GW_MAX_RESPONSE; /* zeros: as large as mode 0's, and no CRL */
    *der = calloc(1, *len);
    return 0;
}

static const struct gw_upstream_ops fake_ops = {
    .dialect = "fake", .caps = GW_UP_SIGN_CSR | GW_UP_CRL, .sign = fake_sign, .crl = fake_crl};

/* An upstream that signs and serves no CRL (a CMP CA's, which the gateway does not ask for one). */
static const struct gw_upstream_ops no_crl_ops = {
    .dialect = "fake", .caps = GW_UP_SIGN_CSR, .sign = fake_sign};

/* The upstream of |e|'s route replaced by one answering through fake_ops (its CRL as fake_crl_mode says). */
static struct gw_upstream *fake_crl_upstream(struct env *e)
{
    char err[GW_ERR_LEN] = "";
    struct gw_upstream *up = gw_upstream_new_ops(&e->cfg->upstreams[0], &fake_ops, NULL, err);

    assert_non_null(up);
    assert_int_equal(gw_upstream_set_put0(e->ups, up), 0);
    return up;
}

static void test_genm_crl_limits(void **state)
{
    static const struct {
        int mode, fail_bit;
        const char *text;
    } cases[] = {
        {0, OSSL_CMP_PKIFAILUREINFO_badRequest, "does not fit in a CMP response (at most 100 KiB)"},
        /* as large, but no CRL: the CA's trouble, not one the client could fetch elsewhere */
        {8, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "the CA's CRL did not pass this gateway's checks"},
        {1, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "the CA's CRL could not be fetched now; retry later"},
        {2, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "the CA's CRL did not pass this gateway's checks"},
        {3, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "the CA's CRL did not pass this gateway's checks"},
        {4, -1, NULL}, /* their twin: the CA's own CRL is passed on */
    };
    const char *oids[] = {OID_CRLSTATUS};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_new(NULL, NULL);
        OSSL_CMP_CTX *ctx;

        fake_crl_upstream(e);
        fake_crl_mode = cases[i].mode;
        ctx = client_new(e, client_cert, client_key);
        if (cases[i].fail_bit < 0) {
            STACK_OF(OSSL_CMP_ITAV) *out = genm(e, ctx, oids, 1, NULL);

            assert_int_equal(sk_OSSL_CMP_ITAV_num(out), 1);
            assert_non_null(OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0)));
            sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
        } else {
            assert_null(genm(e, ctx, oids, 1, NULL));
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, cases[i].fail_bit, cases[i].text);
        }
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * A genm whose answers each fit in a genp but together do not is refused, asking for one infoType per genm:
 * a CRL CRL_NEAR_ROOM bytes short of GW_MAX_GENP_VALUE and the CA certificates. Its twins: each alone is
 * answered.
 */
static void test_genm_answer_too_large(void **state)
{
    const char *both[] = {OID_CRLSTATUS, OID_CACERTS};
    struct env *e = env_new(NULL, NULL);

    (void)state;
    fake_crl_upstream(e);
    fake_crl_mode = 9;
    for (int i = 0; i < 3; i++) {
        OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
        STACK_OF(OSSL_CMP_ITAV) *out = genm(e, ctx, both + (i == 2), i == 0 ? 2 : 1, NULL);

        if (i == 0) {
            assert_null(out);
            assert_status(
                ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                " bytes) does not fit in a CMP response (at most 100 KiB): ask for one infoType per genm");
        } else {
            assert_int_equal(sk_OSSL_CMP_ITAV_num(out), 1);
            assert_non_null(OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0)));
        }
        sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
        OSSL_CMP_CTX_free(ctx);
    }
    env_free(e);
}

/*
 * OpenSSL's allocator, hooked (CRYPTO_set_mem_functions, first thing in main): the next shim_oom allocations
 * of the gateway's DER builder (gateway/cmp/shim.c: each genp value, then the error answer) fail.
 */
static atomic_int shim_oom;

static bool shim_fails(const char *file)
{
    static const char shim[] = "gateway/cmp/shim.c";
    size_t n = file != NULL ? strlen(file) : 0;
    int left = atomic_load(&shim_oom);

    if (left <= 0 || n < sizeof(shim) - 1 || strcmp(file + n - (sizeof(shim) - 1), shim) != 0)
        return false;
    return atomic_compare_exchange_strong(&shim_oom, &left, left - 1);
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)line;
    return shim_fails(file) ? NULL : malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)line;
    return shim_fails(file) ? NULL : realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file, (void)line;
    free(p);
}

/*
 * A genp value the gateway cannot build for want of memory is refused with systemFailure, each in its
 * words: the template, the CA certificates, the CRL. Their twins: with memory, each is answered.
 */
static void test_genm_out_of_memory(void **state)
{
    static const struct {
        const char *oid, *text;
    } cases[] = {
        {OID_TEMPLATE, "internal error: the certificate request template could not be built"},
        {OID_CACERTS, "internal error: the answer could not be built"},
        {OID_CRLSTATUS, "the CA's CRL is unreadable; it was not passed on"},
    };
    struct env *e = env_new(NULL, NULL);

    (void)state;
    fake_crl_upstream(e);
    fake_crl_mode = 4;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int oom = 1; oom >= 0; oom--) {
            OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
            STACK_OF(OSSL_CMP_ITAV) *out;

            atomic_store(&shim_oom, oom); /* the value's: the error answer is built */
            out = genm(e, ctx, &cases[i].oid, 1, NULL);
            assert_int_equal(atomic_load(&shim_oom), 0);
            if (oom) {
                assert_null(out);
                assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                              cases[i].text);
            } else {
                assert_int_equal(sk_OSSL_CMP_ITAV_num(out), 1);
            }
            sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
            OSSL_CMP_CTX_free(ctx);
        }
    }
    env_free(e);
}

/*
 * A crlStatusList on a route whose CA serves no CRL to the gateway is refused as the client's to fetch
 * elsewhere, without asking the CA. Its twin, caCerts on that route, is answered.
 */
static void test_genm_crl_not_published(void **state)
{
    const char *crl[] = {OID_CRLSTATUS}, *ca_certs[] = {OID_CACERTS};
    struct env *e = env_new(NULL, NULL);
    char err[GW_ERR_LEN] = "";
    struct gw_upstream *up = gw_upstream_new_ops(&e->cfg->upstreams[0], &no_crl_ops, NULL, err);
    STACK_OF(OSSL_CMP_ITAV) *out;
    OSSL_CMP_CTX *ctx;

    (void)state;
    assert_non_null(up);
    assert_int_equal(gw_upstream_set_put0(e->ups, up), 0);
    ctx = client_new(e, client_cert, client_key);
    assert_null(genm(e, ctx, crl, 1, NULL));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "this route's CA publishes no CRL over CMP");
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(out = genm(e, ctx, ca_certs, 1, NULL));
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * A genm naming an infoType the gateway does not answer beside a crlStatusList is refused before the CA's
 * CRL is fetched for the other: its answer is that refusal whatever the CA says. Twin: the crlStatusList
 * alone fetches it.
 */
static void test_genm_unknown_before_crl(void **state)
{
    const char *oids[] = {OID_CRLSTATUS, "1.2.3.4.5"};
    struct env *e = env_new(NULL, NULL);
    OSSL_CMP_CTX *ctx;
    STACK_OF(OSSL_CMP_ITAV) *out;

    (void)state;
    fake_crl_upstream(e);
    fake_crl_mode = 4;
    fake_crl_fetches = 0;
    ctx = client_new(e, client_cert, client_key);
    assert_null(genm(e, ctx, oids, 2, NULL));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "infoType 1.2.3.4.5 is not supported");
    assert_int_equal(fake_crl_fetches, 0);
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(out = genm(e, ctx, oids, 1, NULL));
    assert_int_equal(fake_crl_fetches, 1);
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

static time_t crl_clock_ahead; /* how far crl_clock runs ahead */
static time_t crl_clock_held;  /* when set, the time crl_clock stands at (plus crl_clock_ahead) */

static time_t crl_clock(void)
{
    return (crl_clock_held != 0 ? crl_clock_held : time(NULL)) + crl_clock_ahead;
}

/* A genm crlStatusList by the demo client: answered with a CRL (|fail_bit| -1), else refused with |text|. */
static void genm_crl_as(struct env *e, int fail_bit, const char *text)
{
    const char *oids[] = {OID_CRLSTATUS};
    OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
    STACK_OF(OSSL_CMP_ITAV) *out = genm(e, ctx, oids, 1, NULL);

    if (fail_bit < 0) {
        assert_int_equal(sk_OSSL_CMP_ITAV_num(out), 1);
        assert_non_null(OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0)));
    } else {
        assert_null(out);
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, fail_bit, text);
    }
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);
}

/* genm_crl_as with the CA down: answered with a CRL (|fail_bit| -1), else refused for that. */
static void genm_crl(struct env *e, int fail_bit)
{
    genm_crl_as(e, fail_bit, "the CA's CRL could not be fetched now");
}

/*
 * A CA's CRL too large for a genp (GW_MAX_GENP_VALUE) but one the gateway takes is filed in the cache as
 * any other: the genms of GW_GENM_CRL_SECS after it are refused from there, not each with a fetch of up to
 * GW_MAX_UPSTREAM_BODY, parsed and verified. Once, the size was checked first and such a CRL never filed:
 * every genm fetched it again. Its twin: past GW_GENM_CRL_SECS the next genm fetches.
 */
static void test_genm_crl_too_large_filed(void **state)
{
    static const char text[] = "does not fit in a CMP response (at most 100 KiB)";
    struct env *e = env_new(NULL, NULL);

    (void)state;
    fake_crl_upstream(e);
    gw_cmp_engine_set_clock(e->engine, crl_clock);
    crl_clock_ahead = 0;
    fake_crl_mode = 0;
    fake_crl_fetches = 0;
    for (int i = 0; i < 3; i++)
        genm_crl_as(e, OSSL_CMP_PKIFAILUREINFO_badRequest, text);
    assert_int_equal(fake_crl_fetches, 1);
    crl_clock_ahead = GW_GENM_CRL_SECS;
    genm_crl_as(e, OSSL_CMP_PKIFAILUREINFO_badRequest, text);
    assert_int_equal(fake_crl_fetches, 2);
    gw_cmp_engine_set_clock(e->engine, NULL);
    env_free(e);
}

/*
 * One fetch of the CA's CRL answers the genms of GW_GENM_CRL_SECS: a client repeating its genm does not
 * make the gateway ask the CA each time. A revocation through cmpgw, or the time passing, makes the next
 * genm fetch it again. A failed fetch, or one whose CRL did not pass, answers the genms of
 * GW_STATUS_RETRY_SECS after it alike: once, each genm after a failure fetched again, one full CRL
 * (up to GW_MAX_UPSTREAM_BODY) for each genm of a client that repeated it.
 */
static void test_genm_crl_reuse(void **state)
{
    struct env *e = env_new(NULL, NULL);
    struct gw_upstream *up = fake_crl_upstream(e);

    (void)state;
    gw_cmp_engine_set_clock(e->engine, crl_clock);
    /* held: the windows' edges below are seconds of this clock, which a second of the wall clock passing
       between two genms would move (once, a genm meant for the last second of a window came after it) */
    crl_clock_held = time(NULL);
    crl_clock_ahead = 0;
    fake_crl_mode = 4;
    fake_crl_fetches = 0;
    for (int i = 0; i < 3; i++)
        genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 1);
    cmp_status_invalidate(e->engine, up, NULL); /* what a revocation through cmpgw does */
    genm_crl(e, -1);
    genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 2);
    crl_clock_ahead = GW_GENM_CRL_SECS;
    genm_crl(e, -1);
    genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 3);
    /* the CA down: the genms of GW_STATUS_RETRY_SECS after the failed fetch are told so without asking
       it again, even once it is back; the first after them asks, and gets the CRL */
    fake_crl_mode = 1;
    crl_clock_ahead = 2 * GW_GENM_CRL_SECS;
    genm_crl(e, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    genm_crl(e, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_int_equal(fake_crl_fetches, 4);
    fake_crl_mode = 4;
    crl_clock_ahead += GW_STATUS_RETRY_SECS - 1;
    genm_crl(e, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_int_equal(fake_crl_fetches, 4);
    crl_clock_ahead++;
    genm_crl(e, -1);
    genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 5);
    /* a CRL that does not pass (signed by another key) alike */
    fake_crl_mode = 2;
    crl_clock_ahead += GW_GENM_CRL_SECS;
    genm_crl_as(e, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "the CA's CRL did not pass this gateway's checks");
    genm_crl_as(e, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "the CA's CRL did not pass this gateway's checks");
    assert_int_equal(fake_crl_fetches, 6);
    /* a revocation through cmpgw forgets the failure as it does a CRL: the next genm asks */
    fake_crl_mode = 4;
    cmp_status_invalidate(e->engine, up, NULL);
    genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 7);
    gw_cmp_engine_set_clock(e->engine, NULL);
    crl_clock_held = 0;
    env_free(e);
}

/* How many lines of |event| |logged| holds, and the "suppressed" of the last one into |held|. */
static int event_lines(const char *logged, const char *event, char *held, size_t cap)
{
    char needle[96], line[1024];
    int n = 0;

    snprintf(needle, sizeof(needle), "\"event\":\"%s\"", event);
    snprintf(held, cap, "none");
    for (const char *at = logged; (at = strstr(at, needle)) != NULL; at += strlen(needle)) {
        const char *start = at, *end = strchr(at, '\n');
        struct json_object *o, *v;

        while (start > logged && start[-1] != '\n')
            start--;
        snprintf(line, sizeof(line), "%.*s", (int)(end != NULL ? end - start : (ptrdiff_t)strlen(start)),
                 start);
        o = json_tokener_parse(line);

        assert_non_null(o);
        if (json_object_object_get_ex(o, "suppressed", &v))
            snprintf(held, cap, "%s", json_object_get_string(v));
        json_object_put(o);
        n++;
    }
    return n;
}

/*
 * The genms a failed fetch answers each have a genm_crl_unavailable line (genm_crl_refused for a CRL that did
 * not pass): paced as the events a peer causes, GW_LOG_PACE_LINES in GW_LOG_PACE_SECS, the next line out
 * counting those held back. Once, a client repeating its genm wrote one error line for each.
 */
static void test_genm_crl_failure_lines_paced(void **state)
{
    static const struct {
        int mode;
        const char *event;
    } cases[] = {{1, "genm_crl_unavailable"}, {2, "genm_crl_refused"}};
    char logged[64 * 1024], held[GW_LOG_HELD_LEN], want[GW_LOG_HELD_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_new(NULL, NULL);

        fake_crl_upstream(e);
        gw_cmp_engine_set_clock(e->engine, crl_clock);
        /* a window of its own: no earlier test's lines in it (within message_time_window) */
        crl_clock_ahead = 100 + 2 * (time_t)i * GW_LOG_PACE_SECS;
        fake_crl_mode = cases[i].mode;
        fake_crl_fetches = 0;
        log_capture(GW_LOG_ERROR);
        for (int k = 0; k < GW_LOG_PACE_LINES + 3; k++)
            genm_crl_as(e, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "retry later");
        crl_clock_ahead += GW_LOG_PACE_SECS; /* past the window and past GW_STATUS_RETRY_SECS: it fetches */
        genm_crl_as(e, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "retry later");
        tu_log_release_into(&captured, logged, sizeof(logged));
        assert_int_equal(fake_crl_fetches, 2);
        assert_int_equal(event_lines(logged, cases[i].event, held, sizeof(held)), GW_LOG_PACE_LINES + 1);
        snprintf(want, sizeof(want), "%d", 3);
        assert_string_equal(held, want);
        gw_cmp_engine_set_clock(e->engine, NULL);
        env_free(e);
    }
}

/* The one CRL a genm crlStatusList by the demo client is answered with (the caller frees it). */
static X509_CRL *genm_crl_answer(struct env *e)
{
    OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
    const char *oids[] = {OID_CRLSTATUS};
    STACK_OF(OSSL_CMP_ITAV) *out = genm(e, ctx, oids, 1, NULL);
    const ASN1_TYPE *v;
    const unsigned char *p;
    long len;
    int t, cls;
    X509_CRL *crl;

    assert_non_null(out);
    v = OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0));
    assert_int_equal(seq_count(v, V_ASN1_SEQUENCE), 1);
    p = v->value.sequence->data;
    ASN1_get_object(&p, &len, &t, &cls, v->value.sequence->length);
    assert_non_null(crl = d2i_X509_CRL(NULL, &p, len));
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);
    return crl;
}

/* The thisUpdate of the CRL a genm crlStatusList by the demo client is answered with. */
static time_t genm_crl_this_update(struct env *e)
{
    X509_CRL *crl = genm_crl_answer(e);
    time_t when = 0;

    assert_int_equal(gw_asn1_time(X509_CRL_get0_lastUpdate(crl), &when), 0);
    X509_CRL_free(crl);
    return when;
}

/*
 * A CA that serves an older CRL than it served before (a replica behind, a replay): the genm is
 * answered with the newer one the gateway holds, which may list a revocation the older does not; the
 * revocation check keeps the newer one too.
 */
static void test_genm_crl_older(void **state)
{
    struct env *e = env_new(NULL, NULL);
    time_t newer;

    (void)state;
    fake_crl_upstream(e);
    gw_cmp_engine_set_clock(e->engine, crl_clock);
    crl_clock_ahead = 0;
    fake_crl_mode = 4;
    fake_crl_fetches = 0;
    newer = genm_crl_this_update(e);
    fake_crl_mode = 5;
    crl_clock_ahead = GW_GENM_CRL_SECS;
    assert_int_equal(genm_crl_this_update(e), newer);
    assert_int_equal(fake_crl_fetches, 2);
    gw_cmp_engine_set_clock(e->engine, NULL);
    env_free(e);
}

/*
 * A CRL whose nextUpdate passes while the cache holds it is not handed to a client. Within
 * GW_GENM_CRL_SECS of its fetch the next genm fetches again; and where that fetch brings an older CRL,
 * the newer the cache holds, now expired, is not passed on in its place: a cached CRL is not parsed and
 * verified again, but its times are checked at each answer.
 */
static void test_genm_crl_expires_cached(void **state)
{
    const char *oids[] = {OID_CRLSTATUS};
    struct env *e = env_new(NULL, NULL);
    OSSL_CMP_CTX *ctx;

    (void)state;
    fake_crl_upstream(e);
    gw_cmp_engine_set_clock(e->engine, crl_clock);
    crl_clock_ahead = 0;
    fake_crl_mode = 6;
    fake_crl_fetches = 0;
    genm_crl(e, -1);
    crl_clock_ahead = 3; /* past its nextUpdate */
    fake_crl_mode = 4;
    genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 2);
    gw_cmp_engine_set_clock(e->engine, NULL);
    env_free(e);

    e = env_new(NULL, NULL);
    fake_crl_upstream(e);
    gw_cmp_engine_set_clock(e->engine, crl_clock);
    crl_clock_ahead = 0;
    fake_crl_mode = 6;
    genm_crl(e, -1);
    crl_clock_ahead = 10; /* past its nextUpdate, and the CA serves an older one */
    fake_crl_mode = 5;
    ctx = client_new(e, client_cert, client_key);
    assert_null(genm(e, ctx, oids, 1, NULL));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "the CA's CRL did not pass this gateway's checks");
    OSSL_CMP_CTX_free(ctx);
    gw_cmp_engine_set_clock(e->engine, NULL);
    env_free(e);
}

/* test_genm_crl_hits's engine, and the DER of the CRL its first genm got (the one that fetched it). */
struct crl_hits {
    struct env *env;
    unsigned char *der;
    int len;
};

static time_t crl_hits_now;

static time_t crl_hits_clock(void)
{
    return crl_hits_now;
}

/* The fetch before the hits: the CA's CRL of CRL_HIT_ENTRIES entries, fetched by a first genm. */
static int crl_hits_setup(void **state)
{
    struct crl_hits *h = calloc(1, sizeof(*h));
    X509_CRL *crl;

    assert_non_null(h);
    h->env = env_new(NULL, NULL);
    fake_crl_upstream(h->env);
    crl_hits_now = time(NULL); /* frozen: under valgrind the hits take longer than GW_GENM_CRL_SECS */
    gw_cmp_engine_set_clock(h->env->engine, crl_hits_clock);
    fake_crl_mode = 7;
    fake_crl_fetches = 0;
    crl = genm_crl_answer(h->env);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), CRL_HIT_ENTRIES);
    assert_int_equal(X509_CRL_verify(crl, issuing_key), 1);
    assert_true((h->len = i2d_X509_CRL(crl, &h->der)) > 40 * 1024);
    X509_CRL_free(crl);
    *state = h;
    return 0;
}

static int crl_hits_teardown(void **state)
{
    struct crl_hits *h = *state;

    gw_cmp_engine_set_clock(h->env->engine, NULL);
    env_free(h->env);
    OPENSSL_free(h->der);
    free(h);
    return 0;
}

/*
 * The genms of GW_GENM_CRL_SECS after a fetch of a large CRL are answered from the cache, each with the CRL
 * the fetch's genm got, byte for byte. What such a hit costs is counted on this test alone
 * (docs/performance.md, "A genm's CRL from the cache"): CMPGW_TEST_FILTER=test_genm_crl_hits valgrind
 * --tool=callgrind --toggle-collect=test_genm_crl_hits ../../build/tests/test_rrgenm.
 */
static void test_genm_crl_hits(void **state)
{
    struct crl_hits *h = *state;

    for (int i = 0; i < 50; i++) {
        X509_CRL *crl = genm_crl_answer(h->env);
        unsigned char *der = NULL;
        int len = i2d_X509_CRL(crl, &der);

        assert_int_equal(len, h->len);
        assert_memory_equal(der, h->der, (size_t)len);
        OPENSSL_free(der);
        X509_CRL_free(crl);
    }
    assert_int_equal(fake_crl_fetches, 1);
}

/* transfer() for a client on another thread: it keeps no last_req and leaves the checks to the caller. */
static OSSL_CMP_MSG *transfer_threaded(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    return exchange(OSSL_CMP_CTX_get_transfer_cb_arg(ctx), req, 0);
}

/* One genm crlStatusList by the demo client on its own thread: |arg| an env, answered or not. */
static void *genm_crl_thread(void *arg)
{
    const char *oids[] = {OID_CRLSTATUS};
    OSSL_CMP_CTX *ctx = client_new(arg, client_cert, client_key);
    STACK_OF(OSSL_CMP_ITAV) *out;

    OSSL_CMP_CTX_set_transfer_cb(ctx, transfer_threaded);
    out = genm(arg, ctx, oids, 1, NULL);
    void *answered =
        out != NULL && OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0)) != NULL ? arg : NULL;

    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    OSSL_CMP_CTX_free(ctx);
    return answered;
}

/*
 * genms asking at once while the CA is slow to answer: one fetch, and what it gave answers every one,
 * the CRL or, with the CA down, the refusal.
 */
static void test_genm_crl_single_flight(void **state)
{
    static const int modes[] = {4, 1};

    (void)state;
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        struct env *e = env_new(NULL, NULL);
        pthread_t th[4];
        void *answered;

        fake_crl_upstream(e);
        fake_crl_mode = modes[m];
        fake_crl_delay_ms = 500; /* the other threads ask meanwhile */
        fake_crl_fetches = 0;
        for (size_t i = 0; i < sizeof(th) / sizeof(th[0]); i++)
            assert_int_equal(pthread_create(&th[i], NULL, genm_crl_thread, e), 0);
        for (size_t i = 0; i < sizeof(th) / sizeof(th[0]); i++) {
            assert_int_equal(pthread_join(th[i], &answered), 0);
            assert_ptr_equal(answered, modes[m] == 4 ? (void *)e : NULL);
        }
        assert_int_equal(fake_crl_fetches, 1);
        fake_crl_delay_ms = 0;
        env_free(e);
    }
}

/* ---- rr -------------------------------------------------------------------------------------- */

/* Enrols a fresh certificate with the demo client; |key_out| gets its key. */
static X509 *enrol(struct env *e, EVP_PKEY **key_out)
{
    OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509_NAME *subj = X509_NAME_new();
    X509 *cert;

    X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)"rr-device", -1, -1, 0);
    OSSL_CMP_CTX_set1_subjectName(ctx, subj);
    X509_NAME_free(subj);
    EVP_PKEY_up_ref(k);
    OSSL_CMP_CTX_set0_newPkey(ctx, 1, k);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1);
    cert = OSSL_CMP_exec_IR_ses(ctx);
    assert_non_null(cert);
    X509_up_ref(cert);
    OSSL_CMP_CTX_free(ctx);
    *key_out = k;
    return cert;
}

/* rr for |victim| signed by |cert|/|key| (PBM when NULL) with |reason| (-1: none). */
static int rr(struct env *e, X509 *cert, EVP_PKEY *key, X509 *victim, int reason, OSSL_CMP_CTX **ctx_out)
{
    OSSL_CMP_CTX *ctx = client_new(e, cert, key);

    OSSL_CMP_CTX_set1_oldCert(ctx, victim);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_REVOCATION_REASON, reason);
    *ctx_out = ctx;
    return OSSL_CMP_exec_RR_ses(ctx);
}

/* A certificate with the issuing CA's name and a serial it never issued. */
static X509 *phantom(X509 *issuer)
{
    X509 *x = X509_new();
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 0x7777);
    X509_set_issuer_name(x, X509_get_subject_name(issuer));
    X509_set_subject_name(x, X509_get_subject_name(issuer));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_sign(x, k, EVP_sha256());
    EVP_PKEY_free(k);
    return x;
}

/* The CRL the route serves over genm lists |serial| (or not). */
static int crl_lists(struct env *e, const ASN1_INTEGER *serial)
{
    X509_CRL *crl = genm_crl_answer(e);
    X509_REVOKED *rev = NULL;
    int listed;

    assert_int_equal(X509_CRL_verify(crl, issuing_key), 1);
    listed = X509_CRL_get0_by_serial(crl, &rev, serial) == 1;
    X509_CRL_free(crl);
    return listed;
}

/* The holder revokes; another client cannot; the CRL then lists it; the reason is on record. */
static void test_rr_holder(void **state)
{
    struct env *e = env_new(NULL, NULL);
    EVP_PKEY *k;
    X509 *cert = enrol(e, &k);
    OSSL_CMP_CTX *ctx;

    (void)state;
    assert_int_equal(crl_lists(e, X509_get0_serialNumber(cert)), 0);
    /* adversarial twin first: the demo client is not the holder, and no RA is configured */
    rr(e, client_cert, client_key, cert, CRL_REASON_KEY_COMPROMISE, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                  "only the holder of a certificate");
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(crl_lists(e, X509_get0_serialNumber(cert)), 0);
    /* PBM: never */
    rr(e, NULL, NULL, cert, CRL_REASON_KEY_COMPROMISE, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "PBM protection");
    OSSL_CMP_CTX_free(ctx);
    /* the holder */
    assert_int_equal(rr(e, cert, k, cert, CRL_REASON_KEY_COMPROMISE, &ctx), 1);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(crl_lists(e, X509_get0_serialNumber(cert)), 1);
    assert_int_equal(audit_count(e, "revoked", "status", "reason keyCompromise"), 1);
    assert_int_equal(audit_count(e, "rejected", "status", "notAuthorized"), 2);
    X509_free(cert);
    EVP_PKEY_free(k);
    env_free(e);
}

/*
 * The local issuer's store records the holder's revocation but cannot make it durable (its directory's
 * fsync fails): it stands, on the CRL, so the rr is accepted, kept as a revocation (the next rr is
 * answered from the gateway's record), and its audit record says the record may not outlive a crash.
 * Before, it was "outcome unknown": systemUnavail, a revoke_failed record telling to check at the CA,
 * and nothing kept, so where no status is read the certificate went on authenticating.
 */
static void test_rr_local_unsynced(void **state)
{
    struct env *e = env_new(NULL, NULL);
    EVP_PKEY *k;
    X509 *cert = enrol(e, &k);
    OSSL_CMP_CTX *ctx;

    (void)state;
    gw_store_test_fail_dir_syncs(1);
    assert_int_equal(rr(e, cert, k, cert, CRL_REASON_KEY_COMPROMISE, &ctx), 1);
    gw_store_test_fail_dir_syncs(0);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(crl_lists(e, X509_get0_serialNumber(cert)), 1);
    assert_int_equal(audit_count(e, "revoked", "status",
                                 "reason keyCompromise; its record may not outlive a crash "
                                 "of the CA's store: "),
                     1);
    assert_int_equal(audit_count(e, "revoke_failed", NULL, NULL), 0);
    assert_int_equal(cmp_revoked_check(e->engine, cert, time(NULL), (char[GW_ERR_LEN]){0}), 1);
    X509_free(cert);
    EVP_PKEY_free(k);
    env_free(e);
}

/* An RA (ra_subjects + id-kp-cmcRA EKU) revokes; a matching subject without the EKU cannot. */
static void test_rr_ra(void **state)
{
    static const struct {
        const char *ra;
        int use_signer; /* sign with the demo signer (cmcRA EKU), else the demo client (none) */
        int fail_bit;
    } cases[] = {
        {"\"/O=cmpgw demo/CN=cmpgw demo CMP signer\"", 1, -1},
        {"\"/O=cmpgw demo/CN=*\"", 0, OSSL_CMP_PKIFAILUREINFO_notAuthorized}, /* no cmcRA EKU */
        {"\"/O=elsewhere/CN=*\"", 1, OSSL_CMP_PKIFAILUREINFO_notAuthorized},  /* pattern does not match */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char extra[256];
        struct env *e;
        EVP_PKEY *k;
        X509 *cert;
        OSSL_CMP_CTX *ctx;

        snprintf(extra, sizeof(extra), "\"authorization\": {\"ra_subjects\": [%s]}", cases[i].ra);
        e = env_new(extra, NULL);
        cert = enrol(e, &k);
        rr(e, cases[i].use_signer ? signer_cert : client_cert, cases[i].use_signer ? signer_key : client_key,
           cert, CRL_REASON_SUPERSEDED, &ctx);
        if (cases[i].fail_bit < 0)
            assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
        else
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, cases[i].fail_bit, NULL);
        assert_int_equal(crl_lists(e, X509_get0_serialNumber(cert)), cases[i].fail_bit < 0);
        OSSL_CMP_CTX_free(ctx);
        X509_free(cert);
        EVP_PKEY_free(k);
        env_free(e);
    }
}

/* badCertId: a serial the CA never issued, and a certificate of another CA (the RA may ask, the CA says no).
 */
static void test_rr_unknown(void **state)
{
    struct env *e =
        env_new("\"authorization\": {\"ra_subjects\": [\"/O=cmpgw demo/CN=cmpgw demo CMP signer\"]}", NULL);
    X509 *ghost = phantom(issuing_cert);
    OSSL_CMP_CTX *ctx;

    (void)state;
    rr(e, signer_cert, signer_key, ghost, -1, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertId,
                  "no certificate with serial");
    OSSL_CMP_CTX_free(ctx);
    rr(e, signer_cert, signer_key, client_cert, -1, &ctx); /* issued by the root, not the route's CA */
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertId,
                  "not issued by this route");
    OSSL_CMP_CTX_free(ctx);
    X509_free(ghost);
    env_free(e);
}

/*
 * A CA that revokes by serial within its mount, whatever issuer an rr names, as Vault does: the
 * "local" upstream's configuration without the CA whose key cmpgw holds (its issuer_ca is then the
 * demo issuing CA), and an adapter that records each revocation and answers a lookup by serial with
 * |by_serial.answer| (NULL: no such certificate).
 */
static struct {
    X509 *answer;
    int revokes;
    int revoked;  /* what a status query answers */
    X509 *own_ca; /* the local conf's, set aside */
    int fails;    /* what a revocation returns (with |fail_info| for GW_ERR_REFUSED), and UPSTREAM_SAYS */
    int fail_info;
    int unsent;                  /* a failed revocation says that nothing of it was sent (*not_sent) */
    int reason;                  /* the CRLReason the last revocation was asked with */
    uint64_t until_ms;           /* the end the last revocation was given (gw_now_ms; 0: none) */
    const _Atomic uint64_t *end; /* that end as it stands, while the revocation runs (NULL: none) */
    void (*during)(int n);       /* called by revocation |n| (1, 2, ...) before it answers, on its thread */
} by_serial;

#define UPSTREAM_SAYS "Vault refused: role devices may not revoke (HTTP 400)"
/* the status of the revoked record of a certificate found revoked at its CA (|how|) */
#define REVOKED_AT_CA(how) "revoked at the CA already (" how "); the CA keeps its own reason"

static int by_serial_revoke(struct gw_upstream *up, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                            int reason, const _Atomic uint64_t *end, int *fail_info, int *not_sent, char *err)
{
    int n = __atomic_add_fetch(&by_serial.revokes, 1, __ATOMIC_SEQ_CST); /* a withdrawal's thread too */

    (void)up, (void)issuer, (void)serial;
    __atomic_store_n(&by_serial.reason, reason, __ATOMIC_SEQ_CST);
    __atomic_store_n(&by_serial.until_ms, end != NULL ? atomic_load(end) : 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&by_serial.end, end, __ATOMIC_SEQ_CST);
    if (by_serial.during != NULL)
        by_serial.during(n);
    if (by_serial.fails == 0)
        return 0;
    *fail_info = by_serial.fail_info;
    *not_sent = __atomic_load_n(&by_serial.unsent, __ATOMIC_SEQ_CST);
    snprintf(err, GW_ERR_LEN, UPSTREAM_SAYS);
    return by_serial.fails;
}

static int by_serial_lookup(struct gw_upstream *up, const ASN1_INTEGER *serial, X509 **cert, char *err)
{
    (void)up, (void)serial;
    if (by_serial.answer == NULL) {
        snprintf(err, GW_ERR_LEN, "no such certificate");
        return GW_ERR_NOT_FOUND;
    }
    X509_up_ref(by_serial.answer);
    *cert = by_serial.answer;
    return 0;
}

static const struct gw_upstream_ops by_serial_ops = {.dialect = "by-serial",
                                                     .caps =
                                                         GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_CERT_LOOKUP,
                                                     .sign = fake_sign,
                                                     .revoke_serial = by_serial_revoke,
                                                     .cert_by_serial = by_serial_lookup};
static int by_serial_status(struct gw_upstream *up, const X509 *cert, int *revoked, char *err)
{
    (void)up, (void)cert, (void)err;
    *revoked = by_serial.revoked;
    return 0;
}

static const struct gw_upstream_ops status_ops = {.dialect = "by-serial-status",
                                                  .caps = GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_CERT_LOOKUP |
                                                          GW_UP_CERT_STATUS,
                                                  .sign = fake_sign,
                                                  .revoke_serial = by_serial_revoke,
                                                  .cert_by_serial = by_serial_lookup,
                                                  .cert_status = by_serial_status};
static const struct gw_upstream_ops no_lookup_ops = {.dialect = "no-lookup",
                                                     .caps = GW_UP_SIGN_CSR | GW_UP_REVOKE,
                                                     .sign = fake_sign,
                                                     .revoke_serial = by_serial_revoke};

/* |held| not NULL: a certificate of the local issuer enrolled first, with its key in |held_key|. */
static struct env *env_by_serial(const char *role_extra, const struct gw_upstream_ops *ops, X509 **held,
                                 EVP_PKEY **held_key)
{
    struct env *e = env_new(role_extra, NULL);
    struct gw_upstream_conf *uc = &e->cfg->upstreams[0];
    struct gw_cmp_settings settings;
    char err[GW_ERR_LEN] = "";
    struct gw_upstream *up;

    if (held != NULL)
        *held = enrol(e, held_key);
    gw_cmp_engine_free(e->engine);
    by_serial.own_ca = uc->own_ca;
    uc->own_ca = NULL;
    uc->check_revocation = false; /* the holder's certificate authenticates without a status source */
    by_serial.revokes = 0;
    by_serial.answer = NULL;
    by_serial.fails = 0;
    by_serial.unsent = 0;
    by_serial.until_ms = 0;
    by_serial.during = NULL;
    assert_non_null(up = gw_upstream_new_ops(uc, ops, NULL, err));
    assert_int_equal(gw_upstream_set_put0(e->ups, up), 0);
    gw_config_cmp_settings(e->cfg, &settings);
    if ((e->engine = gw_cmp_engine_new(&settings, e->ups, NULL, NULL, err)) == NULL)
        fail_msg("engine: %s", err);
    return e;
}

static void env_by_serial_free(struct env *e)
{
    e->cfg->upstreams[0].own_ca = by_serial.own_ca;
    env_free(e);
}

#define RA_ROLE                                                                                              \
    "\"authorization\": {\"ra_subjects\": [\"/O=cmpgw demo/CN=cmpgw demo CMP signer\"], "                    \
    "\"allowed_common_names\": [\"rr-*\"]}"

/* rr for |victim| signed by |cert|/|key|: accepted (|fail_bit| < 0), or refused with |fail_bit| and |text|.
 */
static void expect_rr(struct env *e, X509 *cert, EVP_PKEY *key, X509 *victim, int reason, int fail_bit,
                      const char *text)
{
    OSSL_CMP_CTX *ctx;

    rr(e, cert, key, victim, reason, &ctx);
    if (fail_bit < 0)
        assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    else
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, fail_bit, text);
    OSSL_CMP_CTX_free(ctx);
}

/* An RA's rr for |victim| (issuer and serial as it names them) while the CA's lookup answers |answer|. */
static void ra_rr(struct env *e, X509 *victim, X509 *answer, int fail_bit, const char *text)
{
    by_serial.answer = answer;
    expect_rr(e, signer_cert, signer_key, victim, CRL_REASON_SUPERSEDED, fail_bit, text);
    by_serial.answer = NULL;
}

/*
 * Through a CA that revokes by serial alone, an RA revokes only what the rr names and its role could
 * have issued: the certificate is looked up first. Once, an issuer name of no CA of the upstream fell
 * back to the role's upstream and any serial of the mount was revoked.
 */
static void test_rr_ra_by_serial(void **state)
{
    struct env *e = env_by_serial(RA_ROLE, &by_serial_ops, NULL, NULL);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), *root_key = load_key("ca.key");
    X509 *mine = tu_make_cert(k, issuing_key, issuing_cert, "rr-device-7", 0x5101);
    X509 *other_role = tu_make_cert(k, issuing_key, issuing_cert, "other-device", 0x5102);
    X509 *named = tu_make_cert(k, issuing_key, issuing_cert, "rr-device-8", 0x5103);
    X509 *of_root =
        tu_make_cert(k, root_key, ca_cert, "rr-device-8", 0x5103); /* the serial under another CA */

    (void)state;
    /* an issuer that is no CA of the upstream: never sent on to revoke "that serial" */
    ra_rr(e, client_cert, client_cert, OSSL_CMP_PKIFAILUREINFO_badCertId,
          "the certificate was not issued by this route's CA");
    /* a certificate of another role on the same CA */
    ra_rr(e, other_role, other_role, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
          "an RA of role default may revoke only certificates of its role: common name other-device is not "
          "allowed on role default");
    /* the serial is there, but another CA issued it */
    ra_rr(e, named, of_root, OSSL_CMP_PKIFAILUREINFO_badCertId,
          "was not issued by the CA the revocation request names: check issuer and serial");
    /* the CA knows no such serial */
    ra_rr(e, named, NULL, OSSL_CMP_PKIFAILUREINFO_badCertId, "the CA has issued no certificate with serial");
    assert_int_equal(by_serial.revokes, 0);
    assert_int_equal(audit_count(e, "intent", NULL, NULL), 0);
    assert_int_equal(audit_count(e, "rejected", NULL, NULL), 4); /* each refusal on record */
    /* the twin: a certificate of the role, as the rr names it */
    ra_rr(e, mine, mine, -1, NULL);
    assert_int_equal(by_serial.revokes, 1);
    assert_int_equal(by_serial.reason, CRL_REASON_SUPERSEDED);
    assert_int_equal(audit_count(e, "revoked", "status", "reason superseded"), 1);
    /* an rr without a reasonCode (RFC 9810 makes it optional): every adapter is asked for unspecified */
    by_serial.answer = named;
    expect_rr(e, signer_cert, signer_key, named, CRL_REASON_NONE, -1, NULL);
    by_serial.answer = NULL;
    assert_int_equal(by_serial.revokes, 2);
    assert_int_equal(by_serial.reason, CRL_REASON_UNSPECIFIED);
    assert_int_equal(audit_count(e, "revoked", "status", "reason none"), 1);
    X509_free(mine);
    X509_free(other_role);
    X509_free(named);
    X509_free(of_root);
    EVP_PKEY_free(k);
    EVP_PKEY_free(root_key);
    env_by_serial_free(e);
}

/* |x| with |ext| (as openssl's config syntax writes it) added, signed again by |signer|. */
static X509 *with_ext(X509 *x, int nid, const char *ext, EVP_PKEY *signer)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, nid, ext);

    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    return x;
}

/*
 * A CA certificate is no certificate of a role (none issues one: gw_policy_check_issued), whatever its
 * names: a lookup by serial may find a subordinate CA the upstream's CA signed, and an RA of the role
 * would have revoked a whole branch of the PKI. Once, one named as the role allows was.
 */
static void test_rr_ra_ca_certificate(void **state)
{
    struct env *e = env_by_serial(RA_ROLE, &by_serial_ops, NULL, NULL);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *sub_ca = with_ext(tu_make_cert(k, issuing_key, issuing_cert, "rr-sub-ca", 0x5111),
                            NID_basic_constraints, "critical,CA:TRUE", issuing_key);
    X509 *cert_sign = with_ext(tu_make_cert(k, issuing_key, issuing_cert, "rr-crl-signer", 0x5112),
                               NID_key_usage, "critical,digitalSignature,cRLSign", issuing_key);
    X509 *mine = with_ext(tu_make_cert(k, issuing_key, issuing_cert, "rr-device-12", 0x5113),
                          NID_basic_constraints, "critical,CA:FALSE", issuing_key);

    (void)state;
    ra_rr(e, sub_ca, sub_ca, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
          "an RA of role default may revoke only certificates of its role: it is a CA certificate "
          "(basicConstraints cA TRUE), which no role issues");
    ra_rr(e, cert_sign, cert_sign, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
          "an RA of role default may revoke only certificates of its role: it is a certificate with "
          "keyCertSign or cRLSign, which no role issues");
    assert_int_equal(by_serial.revokes, 0);
    assert_int_equal(audit_count(e, "intent", NULL, NULL), 0);
    /* the twin: an end-entity certificate of the role */
    ra_rr(e, mine, mine, -1, NULL);
    assert_int_equal(by_serial.revokes, 1);
    X509_free(sub_ca);
    X509_free(cert_sign);
    X509_free(mine);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
}

/*
 * An RA's rr for a certificate the CA has revoked already is certRevoked, and the CA is not asked:
 * Vault revokes it again without a word. Once, it was accepted, and the audit log held a second
 * revocation under another reason. What the CA's status said is on record as a revocation, and the
 * gateway knows it from then on. Once, nothing was recorded: the certificate kept authenticating where
 * no status is read ("check_revocation": false), and the next rr for it, the CA's status unread for a
 * moment, was sent to the CA again.
 */
static void test_rr_ra_already_revoked(void **state)
{
    struct env *e = env_by_serial(RA_ROLE, &status_ops, NULL, NULL);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *mine = tu_make_cert(k, issuing_key, issuing_cert, "rr-device-9", 0x5104);
    X509 *other = tu_make_cert(k, issuing_key, issuing_cert, "rr-device-11", 0x5106);

    (void)state;
    by_serial.revoked = 1;
    ra_rr(e, mine, mine, OSSL_CMP_PKIFAILUREINFO_certRevoked, "the certificate is already revoked");
    assert_int_equal(by_serial.revokes, 0);
    assert_int_equal(audit_count(e, "intent", NULL, NULL), 0);
    assert_int_equal(
        audit_count_by(e, "revoked", "status", REVOKED_AT_CA("the CA's status of the certificate"), true), 1);
    assert_int_equal(audit_count(e, "rejected", NULL, NULL), 0);
    /* the CA's status unread (a timeout, an outage): the gateway's own record answers */
    by_serial.revoked = 0;
    ra_rr(e, mine, mine, OSSL_CMP_PKIFAILUREINFO_certRevoked, "the certificate is already revoked");
    assert_int_equal(by_serial.revokes, 0);
    ra_rr(e, other, other, -1, NULL); /* the twin: one the CA has not revoked is revoked now */
    assert_int_equal(by_serial.revokes, 1);
    X509_free(mine);
    X509_free(other);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
}

/*
 * The holder's rr for a certificate the CA says it revoked already, by its status or by its answer to the
 * revocation: certRevoked, on record as a revocation (no revoke_failed "refused for good"), and refused as
 * a credential from then on, on an upstream whose certificates authenticate without a status read
 * ("check_revocation": false; a CMP CA's rr timed out at the client, which the CA carried out). Once,
 * nothing was recorded, and the same holder's next rr was accepted and sent to the CA: a stolen key went
 * on signing requests (a kur for a fresh certificate) with a certificate its CA had revoked.
 */
static void test_rr_holder_revoked_at_ca(void **state)
{
    static const struct {
        const struct gw_upstream_ops *ops;
        int fails, revoked; /* the CA's answer to the revocation, and its status */
        int revokes;        /* revocation calls sent */
        const char *how;
    } cases[] = {
        {&by_serial_ops, GW_ERR_EXISTS, 0, 1, "the CA's answer to the revocation"},
        {&status_ops, 0, 1, 0, "the CA's status of the certificate"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *k = NULL;
        X509 *held = NULL;
        struct env *e = env_by_serial(NULL, cases[i].ops, &held, &k);

        by_serial.fails = cases[i].fails;
        by_serial.revoked = cases[i].revoked;
        expect_rr(e, held, k, held, CRL_REASON_KEY_COMPROMISE, OSSL_CMP_PKIFAILUREINFO_certRevoked,
                  "the certificate is already revoked");
        assert_int_equal(by_serial.revokes, cases[i].revokes);
        assert_int_equal(audit_count(e, "revoked", "status", "revoked at the CA already"), 1);
        assert_int_equal(audit_count(e, "revoked", "status", cases[i].how), 1);
        assert_int_equal(audit_count(e, "revoke_failed", NULL, NULL), 0);
        /* the CA would revoke now and its status says nothing: the gateway's record refuses the signer */
        by_serial.fails = by_serial.revoked = 0;
        expect_rr(e, held, k, held, CRL_REASON_KEY_COMPROMISE, OSSL_CMP_PKIFAILUREINFO_certRevoked,
                  "the certificate is already revoked");
        assert_int_equal(by_serial.revokes, cases[i].revokes);
        X509_free(held);
        EVP_PKEY_free(k);
        env_by_serial_free(e);
    }
}

/*
 * The CA did not revoke: told to retry only when the CA's own trouble may pass; a refusal of the
 * revocation itself is for good, with the upstream's failInfo, and the upstream's words stay in the
 * audit record. Once, every such refusal had the client retry forever, quoting the upstream.
 */
static void test_rr_upstream_refuses(void **state)
{
#define REFUSED_5105                                                                                         \
    "the CA refused to revoke the certificate with serial 5105; retrying will not help: ask the CA's "       \
    "operator why"
    static const struct {
        int fails, fail_info; /* the upstream's */
        int want_fail;
        const char *text;  /* the statusString: all of it for a refusal (the upstream's words stay out) */
        const char *audit; /* in the status of the revoke_failed records, |on_record| of them so far */
        int on_record;
    } cases[] = {
        {GW_ERR_REFUSED, OSSL_CMP_PKIFAILUREINFO_badRequest, OSSL_CMP_PKIFAILUREINFO_badRequest, REFUSED_5105,
         "not revoked (refused for good): " UPSTREAM_SAYS, 1},
        {GW_ERR_REFUSED, OSSL_CMP_PKIFAILUREINFO_notAuthorized, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         REFUSED_5105, "not revoked (refused for good): ", 2},
        /* nothing of these reached the CA (test_rr_outcome_unknown has the twins that may have) */
        {GW_ERR_BUSY, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
         "the CA could not revoke the certificate now (" UPSTREAM_SAYS "); retry later",
         "not revoked (retry later): " UPSTREAM_SAYS, 1},
        {GW_ERR_TIMEOUT, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "; retry later",
         "not revoked (retry later): ", 2},
    };
    struct env *e = env_by_serial(RA_ROLE, &by_serial_ops, NULL, NULL);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *mine = tu_make_cert(k, issuing_key, issuing_cert, "rr-device-10", 0x5105);
    OSSL_CMP_CTX *ctx;

    (void)state;
    by_serial.unsent = 1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        by_serial.fails = cases[i].fails;
        by_serial.fail_info = cases[i].fail_info;
        by_serial.answer = mine;
        rr(e, signer_cert, signer_key, mine, CRL_REASON_SUPERSEDED, &ctx);
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, cases[i].want_fail, cases[i].text);
        if (cases[i].fails == GW_ERR_REFUSED)
            assert_int_equal(
                ASN1_STRING_length(sk_ASN1_UTF8STRING_value(OSSL_CMP_CTX_get0_statusString(ctx), 0)),
                strlen(REFUSED_5105));
        OSSL_CMP_CTX_free(ctx);
        assert_int_equal(audit_count(e, "revoke_failed", "status", cases[i].audit), cases[i].on_record);
    }
    assert_int_equal(by_serial.revokes, 4);
    by_serial.fails = 0; /* the twin: the CA revokes */
    by_serial.answer = mine;
    expect_rr(e, signer_cert, signer_key, mine, CRL_REASON_SUPERSEDED, -1, NULL);
    X509_free(mine);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
}

/* A CA that revokes by serial (by_serial_revoke) and serves its CRL (fake_crl, as fake_crl_mode says). */
static const struct gw_upstream_ops crl_revoke_ops = {.dialect = "crl-revoke",
                                                      .caps = GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_CRL,
                                                      .sign = fake_sign,
                                                      .revoke_serial = by_serial_revoke,
                                                      .crl = fake_crl};

/*
 * The holder's rr that failed for a reason that may pass once its request may have reached the CA (no
 * answer in time, a 5xx, an answer that does not read): the CA may have revoked it. The client is told to
 * retry later, the audit log says that the outcome is unknown, and the CA's CRL is read afresh before the
 * next status answered from it (here a genm's). Once, it said "not revoked (retry later)" and the CRL
 * cached before the attempt went on answering for minutes. Twin: one of which nothing left (a connection
 * not made) is not revoked, and the cached CRL stands.
 */
static void test_rr_outcome_unknown(void **state)
{
#define UNKNOWN_AUDIT "outcome unknown (retry later): it may be revoked; check at the CA: " UPSTREAM_SAYS
    static const struct {
        int fails, unsent; /* the upstream's */
        const char *audit; /* the status of the revoke_failed record */
        int fetches;       /* the CRL fetches of the genm after it */
    } cases[] = {
        {GW_ERR_TIMEOUT, 1, "not revoked (retry later): " UPSTREAM_SAYS, 0},
        {GW_ERR_TIMEOUT, 0, UNKNOWN_AUDIT, 1},
        {GW_ERR_UPSTREAM, 0, UNKNOWN_AUDIT, 1},
    };
    EVP_PKEY *k = NULL;
    X509 *held = NULL;
    struct env *e = env_by_serial(NULL, &crl_revoke_ops, &held, &k);
    int before;

    (void)state;
    fake_crl_mode = 4;
    fake_crl_fetches = 0;
    genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        by_serial.fails = cases[i].fails;
        by_serial.unsent = cases[i].unsent;
        before = fake_crl_fetches;
        expect_rr(e, held, k, held, CRL_REASON_KEY_COMPROMISE, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "; retry later");
        assert_int_equal(audit_count_by(e, "revoke_failed", "status", cases[i].audit, true), i == 2 ? 2 : 1);
        genm_crl(e, -1);
        if (fake_crl_fetches - before != cases[i].fetches)
            fail_msg("case %zu: %d CRL fetches after the rr, want %d", i, fake_crl_fetches - before,
                     cases[i].fetches);
    }
    assert_int_equal(by_serial.revokes, 3);
    X509_free(held);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
#undef UNKNOWN_AUDIT
}

/* A CA that cannot look a certificate up by serial: an RA revokes nothing it does not hold; a holder does. */
static void test_rr_ra_without_lookup(void **state)
{
    EVP_PKEY *k = NULL;
    X509 *mine = NULL;
    struct env *e = env_by_serial(RA_ROLE, &no_lookup_ops, &mine, &k);
    char logged[8192] = "";

    (void)state;
    /* what the log says meanwhile: a CA that cannot look up is no failed look-up to warn of */
    log_capture(GW_LOG_WARN);
    ra_rr(
        e, mine, NULL, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
        "an RA may revoke on this route only the certificate it signs with: the CA cannot look a certificate "
        "up by its serial");
    tu_log_release_into(&captured, logged, sizeof(logged));
    assert_null(strstr(logged, "rr_lookup_failed"));
    assert_int_equal(by_serial.revokes, 0);
    expect_rr(e, mine, k, mine, CRL_REASON_KEY_COMPROMISE, -1, NULL);
    assert_int_equal(by_serial.revokes, 1);
    X509_free(mine);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
}

/* |x| with extension |nid| set to |value| (a config string, as openssl x509 -extfile takes it). */
static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    assert_non_null(ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value));
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* |x| with an authorityKeyIdentifier holding |keyid| alone, whatever key signs it. */
static void set_akid(X509 *x, const ASN1_OCTET_STRING *keyid)
{
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();

    assert_non_null(akid);
    akid->keyid = ASN1_OCTET_STRING_dup(keyid);
    assert_int_equal(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_REPLACE), 1);
    AUTHORITY_KEYID_free(akid);
}

/*
 * Key identifiers are what a certificate says, not who signed it. A CA under the route's trust anchor
 * that took the upstream CA's name and key identifier (a sub-CA's operator, say) signs a certificate
 * naming the upstream CA, its key identifier and the serial of someone else's certificate: it
 * validates through that CA, sent in extraCerts. Once, issuer name and key identifier were taken as
 * proof that the upstream's CA had issued it, and the "holder" revoked the victim's certificate.
 */
static void test_rr_holder_forged_key_id(void **state)
{
    EVP_PKEY *victim_key = NULL, *root_key = load_key("ca.key");
    EVP_PKEY *rogue_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *victim = NULL, *rogue = X509_new(), *forged;
    struct env *e = env_by_serial(NULL, &by_serial_ops, &victim, &victim_key);
    STACK_OF(X509) *extra = sk_X509_new_null();
    OSSL_CMP_CTX *ctx;
    long serial = ASN1_INTEGER_get(X509_get0_serialNumber(victim));

    (void)state;
    /* the rogue CA: the upstream CA's name and subjectKeyIdentifier, signed by the trust anchor */
    X509_set_version(rogue, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(rogue), 0x6601);
    X509_set_subject_name(rogue, X509_get_subject_name(issuing_cert));
    X509_set_issuer_name(rogue, X509_get_subject_name(ca_cert));
    X509_gmtime_adj(X509_getm_notBefore(rogue), -60);
    X509_gmtime_adj(X509_getm_notAfter(rogue), 3600);
    X509_set_pubkey(rogue, rogue_key);
    add_ext(rogue, ca_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(rogue, ca_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    assert_int_equal(X509_add1_ext_i2d(rogue, NID_subject_key_identifier,
                                       (void *)X509_get0_subject_key_id(issuing_cert), 0, 0),
                     1);
    set_akid(rogue, X509_get0_subject_key_id(ca_cert));
    assert_true(X509_sign(rogue, root_key, EVP_sha256()) > 0);
    /* its certificate: the victim's serial, the upstream CA's key identifier */
    forged = tu_make_cert(k, rogue_key, rogue, "rr-device", serial);
    set_akid(forged, X509_get0_subject_key_id(issuing_cert));
    add_ext(forged, rogue, NID_key_usage, "critical,digitalSignature");
    assert_true(X509_sign(forged, rogue_key, EVP_sha256()) > 0);
    assert_true(X509_check_issued(issuing_cert, forged) == X509_V_OK); /* by name and key id */
    assert_int_equal(X509_verify(forged, X509_get0_pubkey(issuing_cert)), 0);
    ERR_clear_error();

    X509_up_ref(rogue);
    sk_X509_push(extra, rogue);
    ctx = client_new(e, forged, k);
    assert_int_equal(OSSL_CMP_CTX_set1_extraCertsOut(ctx, extra), 1);
    OSSL_CMP_CTX_set1_oldCert(ctx, forged);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_REVOCATION_REASON, CRL_REASON_KEY_COMPROMISE);
    OSSL_CMP_exec_RR_ses(ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertId,
                  "the certificate was not issued by this route's CA");
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(by_serial.revokes, 0);
    /* the twin: the victim revokes its own */
    rr(e, victim, victim_key, victim, CRL_REASON_KEY_COMPROMISE, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(by_serial.revokes, 1);
    sk_X509_pop_free(extra, X509_free);
    X509_free(victim);
    X509_free(rogue);
    X509_free(forged);
    EVP_PKEY_free(victim_key);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(rogue_key);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
}

/*
 * A second local issuer for env_new's extra_upstream: a CA named |subject| under the demo root, written
 * to issuing-|tag|.pem and .key, with an empty store-|tag|; its key in |*key|.
 */
static X509 *second_issuer(const X509_NAME *subject, const char *tag, EVP_PKEY **key)
{
    EVP_PKEY *root_key = load_key("ca.key");
    X509 *ca = X509_new();
    char path[160];
    FILE *f;

    *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509_set_version(ca, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(ca), 0x6602);
    X509_set_subject_name(ca, subject);
    X509_set_issuer_name(ca, X509_get_subject_name(ca_cert));
    X509_gmtime_adj(X509_getm_notBefore(ca), -60);
    X509_gmtime_adj(X509_getm_notAfter(ca), 86400);
    X509_set_pubkey(ca, *key);
    add_ext(ca, ca_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(ca, ca_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(ca, ca_cert, NID_subject_key_identifier, "hash");
    add_ext(ca, ca_cert, NID_authority_key_identifier, "keyid");
    assert_true(X509_sign(ca, root_key, EVP_sha256()) > 0);
    EVP_PKEY_free(root_key);
    snprintf(path, sizeof(path), "%s/issuing-%s.pem", dir, tag);
    assert_non_null(f = fopen(path, "w"));
    PEM_write_X509(f, ca);
    fclose(f);
    snprintf(path, sizeof(path), "%s/issuing-%s.key", dir, tag);
    assert_non_null(f = fopen(path, "w"));
    assert_int_equal(fchmod(fileno(f), 0600), 0); /* a key others may read is refused */
    PEM_write_PrivateKey(f, *key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    snprintf(path, sizeof(path), "%s/store-%s", dir, tag);
    assert_int_equal(mkdir(path, 0700), 0);
    return ca;
}

/*
 * An env whose role has the demo signer as RA and a migration (mode off) from "local" to "local-|tag|",
 * the local issuer second_issuer(..., |tag|, ...) wrote.
 */
static struct env *migration_env(const char *tag)
{
    char piece[512], extra[512];
    struct env *e;

    snprintf(piece, sizeof(piece),
             "\"authorization\": {\"ra_subjects\": [\"/O=cmpgw demo/CN=cmpgw demo CMP signer\"]}, "
             "\"migration\": {\"from\": \"local\", \"to\": \"local-%s\", \"mode\": \"off\", \"cohort\": "
             "{\"percent\": 0}}",
             tag);
    snprintf(extra, sizeof(extra),
             "\"local-%s\": {\"type\": \"local\", \"cert\": \"issuing-%s.pem\", \"key\": \"issuing-%s.key\", "
             "\"chain\": \"ca.pem\", \"store\": \"store-%s\"}",
             tag, tag, tag, tag);
    extra_upstream = extra;
    e = env_new(piece, NULL);
    extra_upstream = NULL;
    return e;
}

/* A migration_env(|tag|) whose "to" issues under a CA of the name of "from"'s, another key, and one
   certificate "from" issued (held, its key k). */
struct same_ca_name {
    struct env *e;
    X509 *b_ca, *held;
    EVP_PKEY *b_key, *k;
};

static void same_ca_name_init(struct same_ca_name *s, const char *tag)
{
    s->b_ca = second_issuer(X509_get_subject_name(issuing_cert), tag, &s->b_key);
    s->e = migration_env(tag);
    s->held = enrol(s->e, &s->k);
    assert_int_equal(X509_verify(s->held, issuing_key), 1); /* issued by "from" */
}

static void same_ca_name_cleanup(struct same_ca_name *s)
{
    X509_free(s->held);
    X509_free(s->b_ca);
    EVP_PKEY_free(s->k);
    EVP_PKEY_free(s->b_key);
    env_free(s->e);
}

/*
 * A migration whose "to" issues under a CA of the same name as "from" but another key (allowed: a new
 * mount's CA named as the old one): certificates of "from" stay revocable by their holder and an RA.
 * Once, rr asked only the first upstream issuing under that name ("to"), which had not issued them.
 */
static void test_rr_migration_same_ca_name(void **state)
{
    struct same_ca_name s;
    X509 *other = NULL;
    OSSL_CMP_CTX *ctx;

    (void)state;
    same_ca_name_init(&s, "b");
    /* its holder */
    rr(s.e, s.held, s.k, s.held, CRL_REASON_KEY_COMPROMISE, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(crl_lists(s.e, X509_get0_serialNumber(s.held)), 1);
    /* an RA */
    EVP_PKEY_free(s.k);
    other = enrol(s.e, &s.k);
    rr(s.e, signer_cert, signer_key, other, CRL_REASON_SUPERSEDED, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(crl_lists(s.e, X509_get0_serialNumber(other)), 1);
    X509_free(other);
    same_ca_name_cleanup(&s);
}

/*
 * Its twin: "from" and "to" under CAs of one name have each issued a certificate of one serial (CAs
 * that number their certificates from 1). An RA's rr names issuer and serial only, which fits both: it
 * is refused, and neither is revoked. Once, "to", asked first, revoked its own, and the RA was told the
 * one it named (at "from", perhaps for a compromised key) was. A certificate only one of them issued is
 * revoked, once the other says it has none of that serial.
 */
static void test_rr_migration_same_ca_name_same_serial(void **state)
{
    struct same_ca_name s;
    X509 *twin = NULL, *only = NULL;
    char path[512], hex[2 * 20 + 1], err[GW_ERR_LEN] = "";
    struct gw_store_revocation rec;
    OSSL_CMP_CTX *ctx;

    (void)state;
    same_ca_name_init(&s, "c");
    twin = tu_make_cert(s.k, s.b_key, s.b_ca, "rr-device", 1);
    assert_int_equal(X509_set_serialNumber(twin, (ASN1_INTEGER *)X509_get0_serialNumber(s.held)), 1);
    assert_true(X509_sign(twin, s.b_key, EVP_sha256()) > 0);
    /* a certificate "to" alone issued: revoked there, but not while "from" cannot say it did not */
    only = tu_make_cert(s.k, s.b_key, s.b_ca, "rr-device", 0x5301);
    snprintf(path, sizeof(path), "%s/store-c", dir);
    assert_int_equal(gw_store_put(path, only, err), 0);
    gw_x509_serial_hex(X509_get0_serialNumber(only), hex, sizeof(hex));
    snprintf(path, sizeof(path), "%s/%s.pem",
             gw_upstream_get0_conf(gw_upstream_set_get0(s.e->ups, "local"))->store_dir, hex);
    assert_int_equal(mkdir(path, 0700), 0); /* a directory where a certificate would be: unreadable */
    rr(s.e, signer_cert, signer_key, only, CRL_REASON_KEY_COMPROMISE, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "cannot be looked up at the CA now");
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(rmdir(path), 0);
    rr(s.e, signer_cert, signer_key, only, CRL_REASON_KEY_COMPROMISE, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_free(ctx);
    snprintf(path, sizeof(path), "%s/store-c", dir);
    assert_int_equal(gw_store_revocation_get(path, hex, &rec, err), 0);
    /* one serial from both */
    assert_int_equal(gw_store_put(path, twin, err), 0);
    gw_x509_serial_hex(X509_get0_serialNumber(s.held), hex, sizeof(hex));
    rr(s.e, signer_cert, signer_key, s.held, CRL_REASON_KEY_COMPROMISE, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertId,
                  "have both issued a certificate with serial");
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(crl_lists(s.e, X509_get0_serialNumber(s.held)), 0);
    assert_int_equal(gw_store_revocation_get(path, hex, &rec, err), GW_ERR_NOT_FOUND); /* nor "to"'s */
    /* its holder names it by signing with it: revoked where it was issued */
    rr(s.e, s.held, s.k, s.held, CRL_REASON_KEY_COMPROMISE, &ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_free(ctx);
    assert_int_equal(crl_lists(s.e, X509_get0_serialNumber(s.held)), 1);
    X509_free(twin);
    X509_free(only);
    same_ca_name_cleanup(&s);
}

/*
 * Two upstreams issuing under one CA (two roles' upstreams, two front ends of one CA): a revocation
 * through one makes a genm through the other fetch the CA's CRL again, which may list it. Once, only
 * the revoking upstream's cache was marked, and the other's CRL of before answered genms for 5 s more.
 * Its twin: a revocation through an upstream whose CA only has the same name leaves that CRL be.
 */
static void test_genm_crl_revoked_elsewhere(void **state)
{
    EVP_PKEY *n_key = NULL, *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *n_ca = second_issuer(X509_get_subject_name(issuing_cert), "namesake", &n_key);
    X509 *mine = tu_make_cert(k, issuing_key, issuing_cert, "revoked-elsewhere", 0x5201);
    X509 *theirs = tu_make_cert(k, n_key, n_ca, "revoked-by-namesake", 0x5202);
    char err[GW_ERR_LEN] = "", path[128];
    struct gw_upstream *up;
    struct env *e;

    (void)state;
    snprintf(path, sizeof(path), "%s/store-same", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    extra_upstream =
        "\"local-same\": {\"type\": \"local\", \"cert\": \"issuing.pem\", \"key\": \"issuing.key\", "
        "\"chain\": \"ca.pem\", \"store\": \"store-same\"},\n    \"local-namesake\": {\"type\": "
        "\"local\", \"cert\": \"issuing-namesake.pem\", \"key\": \"issuing-namesake.key\", \"chain\": "
        "\"ca.pem\", \"store\": \"store-namesake\"}";
    e = env_new(NULL, NULL);
    extra_upstream = NULL;
    up = gw_upstream_new_ops(gw_upstream_get0_conf(gw_upstream_set_get0(e->ups, "local")), &fake_ops, NULL,
                             err);
    assert_non_null(up);
    assert_int_equal(gw_upstream_set_put0(e->ups, up), 0);
    gw_cmp_engine_set_clock(e->engine, crl_clock);
    crl_clock_ahead = 0;
    fake_crl_mode = 4;
    fake_crl_fetches = 0;
    genm_crl(e, -1);
    genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 1);
    cmp_status_revoked(e->engine, gw_upstream_set_get0(e->ups, "local-namesake"), theirs, "test-namesake");
    genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 1);
    cmp_status_revoked(e->engine, gw_upstream_set_get0(e->ups, "local-same"), mine, "test-same");
    genm_crl(e, -1);
    genm_crl(e, -1);
    assert_int_equal(fake_crl_fetches, 2);
    gw_cmp_engine_set_clock(e->engine, NULL);
    env_free(e);
    X509_free(mine);
    X509_free(theirs);
    X509_free(n_ca);
    EVP_PKEY_free(k);
    EVP_PKEY_free(n_key);
}

/* |in| (|len| bytes) in a TLV of |tag| of class |cls| into |out|: its length. */
static int der_wrap(unsigned char *out, int constructed, int tag, int cls, const unsigned char *in, int len)
{
    unsigned char *p = out;

    ASN1_put_object(&p, constructed, len, tag, cls);
    memcpy(p, in, (size_t)len);
    return (int)(p - out) + len;
}

/*
 * A crlStatusList value (RFC 9483 §4.3.4) of one CRLStatus per CA of |cas| (|n|): its subject as the
 * CRLSource's issuer ([1] EXPLICIT GeneralNames { directoryName }, RFC 9810 §5.3.19.16), thisUpdate 2020.
 */
static ASN1_TYPE *crl_status_of(X509 *const *cas, int n)
{
    static const unsigned char when[] = "20200101000000Z";
    unsigned char entries[3072], whole[3100], a[700], b[700], *p;
    int len = 0, k;
    ASN1_TYPE *v = ASN1_TYPE_new();
    ASN1_STRING *str = ASN1_STRING_new();

    assert_non_null(v);
    assert_non_null(str);
    for (int i = 0; i < n; i++) {
        k = i2d_X509_NAME(X509_get_subject_name(cas[i]), NULL);
        assert_true(k > 0 && k < 600);
        p = a;
        assert_int_equal(i2d_X509_NAME(X509_get_subject_name(cas[i]), &p), k);
        k = der_wrap(b, 1, 4, V_ASN1_CONTEXT_SPECIFIC, a, k);        /* directoryName [4] */
        k = der_wrap(a, 1, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, b, k); /* GeneralNames */
        k = der_wrap(b, 1, 1, V_ASN1_CONTEXT_SPECIFIC, a, k);        /* CRLSource: issuer [1] */
        k += der_wrap(b + k, 0, V_ASN1_GENERALIZEDTIME, V_ASN1_UNIVERSAL, when, (int)sizeof(when) - 1);
        assert_true(len + k + 4 <= (int)sizeof(entries));
        len += der_wrap(entries + len, 1, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, b, k); /* CRLStatus */
    }
    len = der_wrap(whole, 1, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, entries, len);
    assert_int_equal(ASN1_STRING_set(str, whole, len), 1);
    ASN1_TYPE_set(v, V_ASN1_SEQUENCE, str);
    return v;
}

/*
 * An upstream of two CAs (a Vault mount of two issuers) serves the CRL of the one that signs for the role:
 * a crlStatusList naming that CA gets its CRL; naming the other, alone or beside it, is refused, as the
 * client would take its own CRL of the other as current (RFC 9810 §5.3.19.17: the server sends the CRLs
 * newer than the client's). Once, naming both got the served CA's CRL alone, and no word of the other.
 * Twin: a CA of no upstream of the role named beside the served one says nothing of this upstream.
 */
static void test_genm_crl_two_cas_of_one_upstream(void **state)
{
    static const char *const oids[] = {OID_CRLSTATUS};
    EVP_PKEY *other_key = NULL;
    X509_NAME *name = X509_NAME_new();
    X509 *other, *served = issuing_cert;
    char path[160], err[GW_ERR_LEN] = "";
    struct env *e;
    struct gw_upstream *up;
    STACK_OF(OSSL_CMP_ITAV) *out;
    OSSL_CMP_CTX *ctx;
    FILE *f;
    const struct {
        X509 *cas[2];    /* NULL: the other CA */
        int n, fail_bit; /* -1: answered with one CRL */
    } cases[] = {
        {{served}, 1, -1},
        {{NULL}, 1, OSSL_CMP_PKIFAILUREINFO_badRequest},
        {{served, NULL}, 2, OSSL_CMP_PKIFAILUREINFO_badRequest},
        {{NULL, served}, 2, OSSL_CMP_PKIFAILUREINFO_badRequest},
        {{served, ca_cert}, 2, -1}, /* the root: a CA the upstream does not issue under */
    };

    (void)state;
    assert_non_null(name);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"cmpgw demo second issuer",
                               -1, -1, 0);
    other = second_issuer(name, "two-cas", &other_key);
    snprintf(path, sizeof(path), "%s/two-cas.pem", dir);
    assert_non_null(f = fopen(path, "w"));
    PEM_write_X509(f, issuing_cert);
    PEM_write_X509(f, other);
    fclose(f);
    extra_upstream = "\"two\": {\"type\": \"cfssl\", \"url\": \"http://127.0.0.1:9\", \"issuer_ca\": "
                     "\"two-cas.pem\", \"check_revocation\": false}";
    role_upstream = "two";
    e = env_new(NULL, NULL);
    extra_upstream = role_upstream = NULL;
    up =
        gw_upstream_new_ops(gw_upstream_get0_conf(gw_upstream_set_get0(e->ups, "two")), &fake_ops, NULL, err);
    assert_non_null(up);
    assert_int_equal(gw_upstream_set_put0(e->ups, up), 0);
    fake_crl_mode = 4; /* the CRL of the demo's issuing CA */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509 *cas[2] = {cases[i].cas[0] != NULL ? cases[i].cas[0] : other,
                        cases[i].cas[1] != NULL ? cases[i].cas[1] : other};

        ctx = client_new(e, client_cert, client_key);
        out = genm(e, ctx, oids, 1, crl_status_of(cas, cases[i].n));
        if (cases[i].fail_bit < 0) {
            assert_int_equal(sk_OSSL_CMP_ITAV_num(out), 1);
            assert_int_equal(
                seq_count(OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0)), V_ASN1_SEQUENCE), 1);
        } else {
            assert_null(out);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, cases[i].fail_bit,
                          "the CRL of a CA named in the id-it-crlStatusList is not served over CMP here");
        }
        sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
        OSSL_CMP_CTX_free(ctx);
    }
    env_free(e);
    X509_free(other);
    X509_NAME_free(name);
    EVP_PKEY_free(other_key);
}

/*
 * Two upstreams of a role that issue under the same CAs (its upstream, and its crmf_upstream a CMP CA in
 * front of the same issuers), each serving the CRL of the one it signs with: a crlStatusList naming both
 * CAs gets both CRLs, naming one gets that one's. Once, naming both was refused, each CRL taken for not
 * served because it was not the other upstream's, and so was naming one. Twin: a third CA of theirs whose
 * CRL neither serves, named alone or beside them, is refused.
 */
static void test_genm_crl_two_cas_of_two_upstreams(void **state)
{
    static const char *const oids[] = {OID_CRLSTATUS};
    EVP_PKEY *b_key = NULL, *c_key = NULL;
    X509_NAME *b_name = X509_NAME_new(), *c_name = X509_NAME_new();
    X509 *a = issuing_cert, *b, *c;
    char path[160], err[GW_ERR_LEN] = "";
    struct env *e;
    STACK_OF(OSSL_CMP_ITAV) *out;
    OSSL_CMP_CTX *ctx;
    FILE *f;

    (void)state;
    assert_non_null(b_name);
    assert_non_null(c_name);
    X509_NAME_add_entry_by_txt(b_name, "CN", MBSTRING_ASC, (const unsigned char *)"cmpgw demo rotated issuer",
                               -1, -1, 0);
    X509_NAME_add_entry_by_txt(c_name, "CN", MBSTRING_ASC, (const unsigned char *)"cmpgw demo third issuer",
                               -1, -1, 0);
    b = second_issuer(b_name, "rotated", &b_key);
    c = second_issuer(c_name, "third", &c_key);
    snprintf(path, sizeof(path), "%s/three-cas.pem", dir);
    assert_non_null(f = fopen(path, "w"));
    PEM_write_X509(f, a);
    PEM_write_X509(f, b);
    PEM_write_X509(f, c);
    fclose(f);
    extra_upstream =
        "\"old\": {\"type\": \"cfssl\", \"url\": \"http://127.0.0.1:9\", \"issuer_ca\": "
        "\"three-cas.pem\", \"check_revocation\": false},\n    \"new\": {\"type\": \"cmp\", "
        "\"url\": \"http://127.0.0.1:9\", \"path\": \"/pkix/\", \"trusted\": \"ca.pem\", "
        "\"expected_sender\": \"/CN=cmpgw demo rotated issuer\", \"issuer_ca\": \"three-cas.pem\", "
        "\"check_revocation\": false}";
    role_upstream = "old";
    e = env_new("\"crmf_upstream\": \"new\"", NULL);
    extra_upstream = role_upstream = NULL;
    for (int i = 0; i < 2; i++) {
        const char *name = i == 0 ? "old" : "new";
        struct gw_upstream *up = gw_upstream_new_ops(
            gw_upstream_get0_conf(gw_upstream_set_get0(e->ups, name)), &fake_ops, NULL, err);

        assert_non_null(up);
        assert_int_equal(gw_upstream_set_put0(e->ups, up), 0);
    }
    fake_crl_mode = 4;
    fake_crl_other_up = "new"; /* "old" serves a's CRL, "new" b's */
    fake_crl_other_ca = b;
    fake_crl_other_key = b_key;
    const struct {
        X509 *cas[3];
        int n, crls; /* -1: refused */
    } cases[] = {
        {{a, b}, 2, 2}, {{b, a}, 2, 2}, {{a}, 1, 1}, {{b}, 1, 1}, {{a, b, c}, 3, -1}, {{c}, 1, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ctx = client_new(e, client_cert, client_key);
        out = genm(e, ctx, oids, 1, crl_status_of(cases[i].cas, cases[i].n));
        if (cases[i].crls > 0) {
            assert_int_equal(sk_OSSL_CMP_ITAV_num(out), 1);
            assert_int_equal(
                seq_count(OSSL_CMP_ITAV_get0_value(sk_OSSL_CMP_ITAV_value(out, 0)), V_ASN1_SEQUENCE),
                cases[i].crls);
        } else {
            assert_null(out);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "the CRL of a CA named in the id-it-crlStatusList is not served over CMP here");
        }
        sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
        OSSL_CMP_CTX_free(ctx);
    }
    /* two CRLs of CRL_HIT_ENTRIES each, past the ones cached: together too large for a genp, alone not */
    gw_cmp_engine_set_clock(e->engine, crl_clock);
    crl_clock_ahead = GW_GENM_CRL_SECS + 1;
    fake_crl_mode = 7;
    for (int n = 2; n > 0; n--) {
        X509 *both[] = {a, b};

        ctx = client_new(e, client_cert, client_key);
        out = genm(e, ctx, oids, 1, crl_status_of(both, n));
        if (n == 2) {
            assert_null(out);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          ") do not fit in a CMP response (at most 100 KiB): ask for one CRL per genm, or ");
        } else {
            assert_int_equal(sk_OSSL_CMP_ITAV_num(out), 1);
        }
        sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
        OSSL_CMP_CTX_free(ctx);
    }
    gw_cmp_engine_set_clock(e->engine, NULL);
    crl_clock_ahead = 0;
    fake_crl_other_up = NULL;
    fake_crl_other_ca = NULL;
    fake_crl_other_key = NULL;
    env_free(e);
    X509_free(b);
    X509_free(c);
    X509_NAME_free(b_name);
    X509_NAME_free(c_name);
    EVP_PKEY_free(b_key);
    EVP_PKEY_free(c_key);
}

/*
 * A role whose CRMF requests its crmf_upstream signs: their holders revoke them through the role, at
 * the CA that issued them. Once, rr asked only the role's upstream, delegate and migration target,
 * and answered that the route's CA had not issued them.
 */
static void test_rr_crmf_upstream(void **state)
{
    X509_NAME *name = X509_NAME_new();
    EVP_PKEY *b_key = NULL, *k = NULL;
    X509 *b_ca, *held;
    STACK_OF(X509) *extra = sk_X509_new_null();
    char path[192], serial[2 * 20 + 1];
    struct env *e;
    OSSL_CMP_CTX *ctx;

    (void)state;
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"cmpgw demo CRMF CA", -1, -1,
                               0);
    b_ca = second_issuer(name, "crmf", &b_key);
    extra_upstream = "\"local-b\": {\"type\": \"local\", \"cert\": \"issuing-crmf.pem\", \"key\": "
                     "\"issuing-crmf.key\", \"chain\": \"ca.pem\", \"store\": \"store-crmf\"}";
    e = env_new("\"crmf_upstream\": \"local-b\"", NULL);
    extra_upstream = NULL;
    held = enrol(e, &k);
    assert_int_equal(X509_verify(held, b_key), 1); /* the crmf_upstream issued it */
    ctx = client_new(e, held, k);
    X509_up_ref(b_ca);
    sk_X509_push(extra, b_ca);
    assert_int_equal(OSSL_CMP_CTX_set1_extraCertsOut(ctx, extra), 1);
    OSSL_CMP_CTX_set1_oldCert(ctx, held);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_REVOCATION_REASON, CRL_REASON_KEY_COMPROMISE);
    OSSL_CMP_exec_RR_ses(ctx);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_free(ctx);
    /* revoked in the store of the CA that issued it */
    gw_x509_cert_serial_hex(held, serial, sizeof(serial));
    snprintf(path, sizeof(path), "%s/store-crmf/revoked/%s", dir, serial);
    assert_int_equal(access(path, F_OK), 0);
    sk_X509_pop_free(extra, X509_free);
    X509_NAME_free(name);
    X509_free(held);
    X509_free(b_ca);
    EVP_PKEY_free(k);
    EVP_PKEY_free(b_key);
    env_free(e);
}

/*
 * removeFromCRL takes a certificate off hold (RFC 5280 §5.3.1): an un-revocation, which a CMP CA
 * behind the gateway may honour and Vault or cfssl would take as a revocation. Once, it went to the CA
 * like any other reason: Vault revoked the certificate, and a CMP CA would be asked to lift a hold.
 */
static void test_rr_remove_from_crl(void **state)
{
    EVP_PKEY *k = NULL;
    X509 *held = NULL;
    struct env *e = env_by_serial(NULL, &by_serial_ops, &held, &k);
    int intents = audit_count(e, "intent", NULL, NULL); /* the enrolment's */

    (void)state;
    expect_rr(e, held, k, held, CRL_REASON_REMOVE_FROM_CRL, OSSL_CMP_PKIFAILUREINFO_badRequest,
              "revocation reason removeFromCRL releases a certificate from hold");
    assert_int_equal(by_serial.revokes, 0);
    assert_int_equal(audit_count(e, "intent", NULL, NULL), intents);
    assert_int_equal(audit_count(e, "rejected", "status", "removeFromCRL"), 1);
    /* the twin: a hold is a revocation, which the holder may ask for */
    expect_rr(e, held, k, held, CRL_REASON_CERTIFICATE_HOLD, -1, NULL);
    assert_int_equal(by_serial.revokes, 1);
    X509_free(held);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
}

/*
 * A withdrawal of the certificate |race.cert| (as a certConf rejecting it, or its transaction's expiry,
 * queues one) while its holder's rr is at the CA, and the other way round.
 */
static struct {
    struct env *env;
    X509 *cert;
    int waits_ms; /* how long the first revocation stays at the CA */
} race;

static void withdraw_race_cert(void)
{
    struct cmp_txn view;

    memset(&view, 0, sizeof(view));
    view.up = gw_upstream_set_get0(race.env->ups, race.env->cfg->upstreams[0].name);
    snprintf(view.serial, sizeof(view.serial), "race");
    cmp_withdraw(race.env->engine, &view, "00", race.cert, CRL_REASON_CESSATION_OF_OPERATION);
}

/* The first revocation, at the CA: a withdrawal of the same certificate is queued meanwhile. */
static void withdraw_during(int n)
{
    if (n != 1)
        return;
    withdraw_race_cert();
    /* time for the withdrawal's thread to reach the CA, unless something holds it back */
    for (int i = 0; i < race.waits_ms / 10 && __atomic_load_n(&by_serial.revokes, __ATOMIC_SEQ_CST) < 2; i++)
        usleep(10 * 1000);
}

/* The first revocation (a withdrawal's) stays at the CA for race.waits_ms. */
static void stay_during(int n)
{
    if (n == 1)
        usleep((useconds_t)race.waits_ms * 1000);
}

/*
 * The holder's rr while the gateway withdraws the same certificate: one revocation reaches the CA, one
 * `revoked` is on record, and the withdrawal that found the rr's under way does not send its own. Once,
 * the withdrawal's thread passed the gateway's record before the rr's entry was in and revoked it a
 * second time (cfssl then records the second reason and time over the first).
 */
static void test_rr_during_withdrawal(void **state)
{
    EVP_PKEY *k = NULL;
    X509 *held = NULL;
    struct env *e = env_by_serial(NULL, &no_lookup_ops, &held, &k);

    (void)state;
    race.env = e;
    race.cert = held;
    race.waits_ms = 1000;
    by_serial.during = withdraw_during;
    expect_rr(e, held, k, held, CRL_REASON_KEY_COMPROMISE, -1, NULL);
    gw_cmp_engine_settle_withdrawals(e->engine);
    by_serial.during = NULL;
    assert_int_equal(by_serial.revokes, 1);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL), 1);
    assert_int_equal(audit_count(e, "revoked", "status", "reason keyCompromise"), 1);
    /* the twin: a withdrawal once the rr ended is not sent either */
    withdraw_race_cert();
    gw_cmp_engine_settle_withdrawals(e->engine);
    assert_int_equal(by_serial.revokes, 1);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL), 1);
    X509_free(held);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
}

/*
 * The other way round: the holder's rr while a withdrawal is at the CA waits for it, at most the
 * upstream's timeout, and is told to retry when it has not ended by then; nothing is sent meanwhile.
 * Once the withdrawal revoked it, the holder asking again is told it is revoked already, and nothing
 * is sent either; its log line says what it was told (rr_already_revoked), where it once said that a
 * revoked signer was refused (credential_revoked). The twin: that signer's rr for another certificate
 * is refused for its signer, and logged so.
 */
static void test_rr_waits_for_withdrawal(void **state)
{
    EVP_PKEY *k = NULL;
    X509 *held = NULL;
    struct env *e = env_by_serial(NULL, &no_lookup_ops, &held, &k);
    uint32_t timeout_ms = e->cfg->upstreams[0].timeout_ms;
    char logged[8192] = "";

    (void)state;
    e->cfg->upstreams[0].timeout_ms = 500; /* how long the rr waits for the withdrawal */
    race.env = e;
    race.cert = held;
    race.waits_ms = 1500;
    by_serial.during = stay_during;
    withdraw_race_cert();
    while (__atomic_load_n(&by_serial.revokes, __ATOMIC_SEQ_CST) < 1)
        usleep(10 * 1000);
    expect_rr(e, held, k, held, CRL_REASON_KEY_COMPROMISE, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
              "the gateway cannot begin this revocation now (");
    assert_int_equal(by_serial.revokes, 1);
    assert_int_equal(audit_count(e, "intent", "body_type", "rr"), 0);
    gw_cmp_engine_settle_withdrawals(e->engine);
    by_serial.during = NULL;
    assert_int_equal(audit_count(e, "revoked", NULL, NULL), 1);
    log_capture(GW_LOG_INFO);
    expect_rr(e, held, k, held, CRL_REASON_KEY_COMPROMISE, OSSL_CMP_PKIFAILUREINFO_certRevoked,
              "the certificate is already revoked");
    tu_log_release_into(&captured, logged, sizeof(logged));
    assert_int_equal(occurrences(logged, "\"event\":\"rr_already_revoked\""), 1);
    assert_int_equal(occurrences(logged, "\"event\":\"credential_revoked\""), 0);
    log_capture(GW_LOG_INFO);
    expect_rr(e, held, k, client_cert, CRL_REASON_KEY_COMPROMISE, OSSL_CMP_PKIFAILUREINFO_certRevoked,
              "the signer certificate (serial ");
    tu_log_release_into(&captured, logged, sizeof(logged));
    assert_int_equal(occurrences(logged, "\"event\":\"rr_already_revoked\""), 0);
    assert_int_equal(occurrences(logged, "\"event\":\"credential_revoked\""), 1);
    assert_int_equal(by_serial.revokes, 1);
    e->cfg->upstreams[0].timeout_ms = timeout_ms;
    X509_free(held);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
}

/*
 * An RA's rr of a certificate that has expired passes every check (the CA's lookup finds it, its names
 * are the role's) and reaches the CA; a withdrawal of it meanwhile waits for the rr's mark and then does not
 * send its own: one revocation at the CA, one `revoked` on record. Once, the expired certificate was kept
 * nowhere (no set holds one), and the withdrawal revoked it again once the rr's mark went.
 */
static void test_rr_ra_expired_during_withdrawal(void **state)
{
    struct env *e = env_by_serial(RA_ROLE, &by_serial_ops, NULL, NULL);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *expired = tu_make_cert(k, issuing_key, issuing_cert, "rr-device-20", 0x5120);

    (void)state;
    X509_gmtime_adj(X509_getm_notBefore(expired), -7200);
    X509_gmtime_adj(X509_getm_notAfter(expired), -3600);
    assert_true(X509_sign(expired, issuing_key, EVP_sha256()) > 0);
    race.env = e;
    race.cert = expired;
    race.waits_ms = 1000;
    by_serial.during = withdraw_during;
    ra_rr(e, expired, expired, -1, NULL);
    gw_cmp_engine_settle_withdrawals(e->engine);
    by_serial.during = NULL;
    assert_int_equal(by_serial.revokes, 1);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL), 1);
    assert_int_equal(audit_count(e, "revoked", "status", "reason superseded"), 1);
    X509_free(expired);
    EVP_PKEY_free(k);
    env_by_serial_free(e);
}

/*
 * revoke_failed of a withdrawal the drain gave up on while it waited for another revocation: not "the
 * gateway stopped" (a reload's drain of a retired generation says it too), and not as if it were over.
 */
#define TEXT_GAVE_UP_WAITING                                                                                 \
    "the drain gave up on it while it waited for another revocation of it to end, before the upstream was "  \
    "asked (the gateway stopping or its configuration retired); it may still be revoked: check at the CA"

/*
 * revoke_failed of a withdrawal the drain gave up on once its upstream was asked: whether the CA revoked it
 * is not known then. Not "the gateway stopped" (a reload's drain of a retired generation gives up too), nor
 * "revoke it by hand" as if it were known not to be revoked.
 */
#define TEXT_GAVE_UP_ASKED                                                                                   \
    "the drain gave up on it after the upstream was asked, before it answered (the gateway stopping or its " \
    "configuration retired); it may or may not be revoked: check at the CA"

/* The holder's rr at the CA, a withdrawal of its certificate waiting for it, and the drain giving up. */
static void drain_during(int n)
{
    if (n != 1)
        return;
    withdraw_race_cert();
    /* the withdrawal's thread waits for the rr's mark (the upstream's timeout at most) */
    for (int i = 0; i < 500 && gw_cmp_engine_revocations_waiting(race.env->engine) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(gw_cmp_engine_revocations_waiting(race.env->engine), 1);
    assert_false(cmp_withdrawals_drain(race.env->engine, gw_now_ms() + 100));
}

/*
 * A test of a drain that gives up: an env whose holder enrolled |held| (key |k|), the race on that
 * certificate, and the log captured at info level until the test reads it into |logged|.
 */
struct gave_up {
    struct env *e;
    X509 *held;
    EVP_PKEY *k;
    char logged[8192];
};

/*
 * The envs of the drains that gave up: their engines, upstreams and configurations are left to the
 * process's end (gw_cmp_engine_free_until), as the gateway leaves them; kept here, they are left on
 * purpose, not lost.
 */
static struct env *left_envs[16];
static size_t n_left;

static int gave_up_setup(void **state)
{
    struct gave_up *g = calloc(1, sizeof(*g));

    assert_non_null(g);
    assert_true(n_left < sizeof(left_envs) / sizeof(left_envs[0]));
    g->e = env_by_serial(NULL, &no_lookup_ops, &g->held, &g->k);
    race.env = g->e;
    race.cert = g->held;
    /* its engine can no longer be freed once its drain gave up: the env is not either */
    g->e->cfg->upstreams[0].own_ca = by_serial.own_ca;
    left_envs[n_left++] = g->e;
    log_capture(GW_LOG_INFO);
    *state = g;
    return 0;
}

static int gave_up_teardown(void **state)
{
    struct gave_up *g = *state;

    by_serial.during = NULL;
    (void)log_release(state); /* a test that failed before it read the log */
    X509_free(g->held);
    EVP_PKEY_free(g->k);
    free(g);
    return 0;
}

/* The test's log so far into g->logged, and the log back. */
static void gave_up_read_log(struct gave_up *g)
{
    by_serial.during = NULL;
    tu_log_release_into(&captured, g->logged, sizeof(g->logged));
}

/*
 * A shutdown gives up on a withdrawal that waits for the holder's rr of the same certificate: it is on
 * record as not revoked, to check at the CA, and nothing else is said of it once the rr ended. Before,
 * the log said both revoke_failed (revoke it by hand) and revoke_not_repeated for it; and later, that
 * the CA had not answered, which this withdrawal never asked.
 */
static void test_drain_gives_up_on_withdrawal_waiting_for_rr(void **state)
{
    struct gave_up *g = *state;
    struct env *e = g->e;

    by_serial.during = drain_during;
    expect_rr(e, g->held, g->k, g->held, CRL_REASON_KEY_COMPROMISE, -1, NULL);
    gw_cmp_engine_settle_withdrawals(e->engine); /* the thread has seen the rr end */
    gave_up_read_log(g);
    assert_non_null(strstr(g->logged, "revoke_failed"));
    assert_null(strstr(g->logged, "revoke_not_repeated"));
    assert_int_equal(audit_count(e, "revoke_failed", NULL, NULL), 1);
    /* it never asked the CA: the record and the line say so, not that the CA did not answer */
    assert_int_equal(audit_count(e, "revoke_failed", "status", "not revoked: " TEXT_GAVE_UP_WAITING), 1);
    assert_non_null(strstr(g->logged, TEXT_GAVE_UP_WAITING));
    assert_non_null(strstr(g->logged, "may still be valid: check at the CA"));
    assert_null(strstr(g->logged, TEXT_GAVE_UP_ASKED));
    assert_null(strstr(g->logged, "the gateway stopped"));
    assert_int_equal(audit_count(e, "revoked", "status", "reason keyCompromise"), 1);
}

/* The drain gives up as drain_during does; the withdrawal's own revocation, once it is sent, succeeds. */
static void drain_then_revoke_during(int n)
{
    if (n == 1)
        drain_during(n);
    else
        __atomic_store_n(&by_serial.fails, 0, __ATOMIC_SEQ_CST);
}

/*
 * The twin where the withdrawal goes on after the drain gave up: the holder's rr is refused at the CA,
 * so the withdrawal, its wait over, revokes the certificate itself. Its revoke_failed record said that it
 * may still be revoked; the revoked record that follows says it was, and it is the last word.
 */
static void test_drain_gives_up_then_withdrawal_revokes(void **state)
{
    struct gave_up *g = *state;
    struct env *e = g->e;

    by_serial.fails = GW_ERR_REFUSED;
    by_serial.fail_info = OSSL_CMP_PKIFAILUREINFO_notAuthorized;
    by_serial.during = drain_then_revoke_during;
    expect_rr(e, g->held, g->k, g->held, CRL_REASON_KEY_COMPROMISE, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
              NULL);
    gw_cmp_engine_settle_withdrawals(e->engine); /* the withdrawal has revoked by now */
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 2);
    assert_int_equal(by_serial.reason, CRL_REASON_CESSATION_OF_OPERATION); /* the withdrawal's */
    assert_int_equal(audit_count(e, "revoke_failed", "status", "not revoked: " TEXT_GAVE_UP_WAITING), 1);
    assert_int_equal(audit_count(e, "revoked", "status", "revoked upstream"), 1);
    assert_non_null(strstr(g->logged, "\"event\":\"cert_revoked\""));
    /* the record's order: the revocation follows the drain's word */
    assert_true(audit_last(e, "revoked"));
}

static int let_go; /* the revocation that stay_until_let_go holds at the CA may answer */

/* The first revocation stays at the CA until the test lets it go (5 s at most). */
static void stay_until_let_go(int n)
{
    for (int i = 0; n == 1 && i < 500 && !__atomic_load_n(&let_go, __ATOMIC_SEQ_CST); i++)
        usleep(10 * 1000);
}

/* A withdrawal of race.cert at the CA, held there until the test lets it go. */
static void withdrawal_at_the_ca(void)
{
    __atomic_store_n(&let_go, 0, __ATOMIC_SEQ_CST);
    by_serial.during = stay_until_let_go;
    withdraw_race_cert();
    for (int i = 0; i < 500 && __atomic_load_n(&by_serial.revokes, __ATOMIC_SEQ_CST) < 1; i++)
        usleep(10 * 1000);
    assert_int_equal(__atomic_load_n(&by_serial.revokes, __ATOMIC_SEQ_CST), 1);
}

/*
 * A withdrawal of race.cert at the CA (answering |fails| once let go), then the drain giving up on it,
 * then the CA's answer; the log read.
 */
static void drain_gives_up_at_the_ca(struct gave_up *g, int fails)
{
    by_serial.fails = fails;
    by_serial.fail_info = OSSL_CMP_PKIFAILUREINFO_systemUnavail;
    withdrawal_at_the_ca();
    assert_false(cmp_withdrawals_drain(g->e->engine, gw_now_ms() + 100));
    __atomic_store_n(&let_go, 1, __ATOMIC_SEQ_CST);
    gw_cmp_engine_settle_withdrawals(g->e->engine); /* the CA answered by now */
    gave_up_read_log(g);
}

/* What the drain said of the withdrawal at the CA: its record and its line. */
static void assert_gave_up_asked(struct gave_up *g)
{
    assert_int_equal(audit_count(g->e, "revoke_failed", NULL, NULL), 1);
    assert_int_equal(
        audit_count_by(g->e, "revoke_failed", "status", "not revoked: " TEXT_GAVE_UP_ASKED, true), 1);
    assert_int_equal(occurrences(g->logged, "\"event\":\"revoke_failed\""), 1);
    assert_non_null(strstr(g->logged, "\"reason\":\"" TEXT_GAVE_UP_ASKED "\""));
    assert_non_null(strstr(g->logged, "may still be valid: check at the CA"));
    assert_null(strstr(g->logged, "the gateway stopped"));
    assert_null(strstr(g->logged, "is still valid: revoke it by hand"));
}

/*
 * A drain (a shutdown's, a reload's) gives up on a withdrawal whose CA has not answered yet: it is on
 * record as not revoked, with a word that it may be, to check at the CA. The CA revoking it after that
 * has its revoked record follow, the last word.
 */
static void test_drain_gives_up_on_withdrawal_at_the_ca(void **state)
{
    struct gave_up *g = *state;

    drain_gives_up_at_the_ca(g, 0);
    assert_gave_up_asked(g);
    assert_int_equal(audit_count(g->e, "revoked", "status", "revoked upstream"), 1);
    assert_true(audit_last(g->e, "revoked"));
}

/* The twin where the CA then fails: nothing more is said of it, its record says to check at the CA. */
static void test_drain_gives_up_on_withdrawal_the_ca_fails(void **state)
{
    struct gave_up *g = *state;

    drain_gives_up_at_the_ca(g, GW_ERR_UNAVAILABLE);
    assert_gave_up_asked(g);
    assert_int_equal(audit_count(g->e, "revoked", NULL, NULL), 0);
    assert_true(audit_last(g->e, "revoke_failed"));
}

/*
 * revoke_failed of a withdrawal the drain gave up on while it was still queued: its upstream was never
 * asked, and nothing will ask it.
 */
#define TEXT_GAVE_UP_QUEUED                                                                                  \
    "the drain gave up on it before the upstream was asked (the gateway stopping or its configuration "      \
    "retired)"

/* The log line of |hay| holding |needle| into |line| (|cap| bytes); NULL when none does. */
static const char *line_with(const char *hay, const char *needle, char *line, size_t cap)
{
    const char *at = strstr(hay, needle), *start, *end;

    if (at == NULL)
        return NULL;
    for (start = at; start > hay && start[-1] != '\n'; start--)
        ;
    if ((end = strchr(at, '\n')) == NULL)
        end = at + strlen(at);
    snprintf(line, cap, "%.*s", (int)(end - start), start);
    return line;
}

/*
 * A drain (a shutdown's, a reload's) gives up on a withdrawal still queued behind one at the CA: it is
 * never sent, and it is on record as not revoked, its upstream never asked, with a line that says to
 * revoke it by hand. The one at the CA is on record as drain_gives_up_at_the_ca says.
 */
static void test_drain_gives_up_on_queued_withdrawal(void **state)
{
    struct gave_up *g = *state;
    struct cmp_txn view;
    char line[2048];

    withdrawal_at_the_ca();
    /* another certificate's withdrawal, queued behind the one at the CA */
    memset(&view, 0, sizeof(view));
    view.up = gw_upstream_set_get0(g->e->ups, g->e->cfg->upstreams[0].name);
    snprintf(view.serial, sizeof(view.serial), "queued");
    cmp_withdraw(g->e->engine, &view, "0f0f", client_cert, CRL_REASON_CESSATION_OF_OPERATION);
    assert_false(cmp_withdrawals_drain(g->e->engine, gw_now_ms() + 100));
    __atomic_store_n(&let_go, 1, __ATOMIC_SEQ_CST);
    gw_cmp_engine_settle_withdrawals(g->e->engine); /* the thread ended: nothing was left to send */
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 1); /* the queued one never reached the CA */
    assert_int_equal(audit_count(g->e, "revoke_failed", NULL, NULL), 2);
    assert_int_equal(
        audit_count_by(g->e, "revoke_failed", "status", "not revoked: " TEXT_GAVE_UP_QUEUED, true), 1);
    assert_int_equal(
        audit_count_by(g->e, "revoke_failed", "status", "not revoked: " TEXT_GAVE_UP_ASKED, true), 1);
    assert_non_null(line_with(g->logged, "\"reason\":\"" TEXT_GAVE_UP_QUEUED "\"", line, sizeof(line)));
    assert_non_null(strstr(line, "\"event\":\"revoke_failed\""));
    assert_non_null(strstr(line, "\"tid\":\"0f0f\""));
    assert_non_null(strstr(line, "\"serial\":\"queued\""));
    assert_non_null(strstr(line, "a certificate that must not be used is still valid: revoke it by hand"));
}

/* The revocations from the second on pass: the first failed as by_serial.fails says. */
static void pass_from_second(int n)
{
    if (n >= 2)
        __atomic_store_n(&by_serial.fails, 0, __ATOMIC_SEQ_CST);
}

/*
 * A withdrawal whose upstream fails is asked again where the failure may pass (upstream.h), at most
 * three times in all, and only the last outcome goes on record: one revoked at a later attempt has one
 * revoked record, no revoke_failed, saying at which. A refusal for good, a certificate the CA does not
 * know, or the gateway denied is asked once. Before, every failure was final at once: a CA answering 503
 * once left a certificate that must not be used valid.
 */
static void test_withdrawal_retried(void **state)
{
    static const struct {
        int fails;
        bool once; /* it fails the first time only */
        int revokes;
        const char *revoked, *failed; /* the status of its one revoked or revoke_failed record */
    } cases[] = {
        {GW_ERR_BUSY, true, 2, "revoked upstream at attempt 2", NULL},
        {GW_ERR_UNAVAILABLE, true, 2, "revoked upstream at attempt 2", NULL},
        {GW_ERR_TIMEOUT, true, 2, "revoked upstream at attempt 2", NULL},
        {GW_ERR_IO, true, 2, "revoked upstream at attempt 2", NULL},
        {GW_ERR_UPSTREAM, true, 2, "revoked upstream at attempt 2", NULL},
        {GW_ERR_BUSY, false, 3, NULL, "not revoked after 3 attempts: " UPSTREAM_SAYS},
        {GW_ERR_REFUSED, true, 1, NULL, "not revoked: " UPSTREAM_SAYS},
        {GW_ERR_NOT_FOUND, true, 1, NULL, "not revoked: " UPSTREAM_SAYS},
        {GW_ERR_FORBIDDEN, true, 1, NULL, "not revoked: " UPSTREAM_SAYS},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *k = NULL;
        X509 *held = NULL;
        struct env *e = env_by_serial(NULL, &no_lookup_ops, &held, &k);

        gw_cmp_engine_set_withdrawal_backoff(e->engine, 10);
        race.env = e;
        race.cert = held;
        by_serial.fails = cases[i].fails;
        by_serial.fail_info = OSSL_CMP_PKIFAILUREINFO_badRequest;
        by_serial.during = cases[i].once ? pass_from_second : NULL;
        withdraw_race_cert();
        gw_cmp_engine_settle_withdrawals(e->engine);
        by_serial.during = NULL;
        assert_int_equal(by_serial.revokes, cases[i].revokes);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL), cases[i].revoked != NULL);
        assert_int_equal(audit_count(e, "revoke_failed", NULL, NULL), cases[i].failed != NULL);
        if (cases[i].revoked != NULL)
            assert_int_equal(audit_count_by(e, "revoked", "status", cases[i].revoked, true), 1);
        if (cases[i].failed != NULL)
            assert_int_equal(audit_count_by(e, "revoke_failed", "status", cases[i].failed, true), 1);
        X509_free(held);
        EVP_PKEY_free(k);
        env_by_serial_free(e);
    }
}

/* Whether the log captured so far holds |needle|. */
static bool logged_yet(const char *needle)
{
    char logged[8192];

    return tu_log_peek(&captured, logged, sizeof(logged)) == 0 && strstr(logged, needle) != NULL;
}

/* A withdrawal the upstream fails with |fails|, waiting (60 s, beyond any drain's deadline) to ask again. */
static void withdrawal_waiting(struct gave_up *g, int fails)
{
    gw_cmp_engine_set_withdrawal_backoff(g->e->engine, 60 * 1000);
    by_serial.fails = fails;
    withdraw_race_cert();
    for (int i = 0; i < 500 && !logged_yet("\"event\":\"revoke_retry\""); i++)
        usleep(10 * 1000);
    assert_true(logged_yet("\"event\":\"revoke_retry\""));
}

/*
 * A drain (a shutdown's, a reload's) while a withdrawal waits to ask its upstream again: the wait ends at
 * once, the upstream is asked a last time, and the drain ends by its deadline, the withdrawal on record as
 * not revoked after its two attempts. A wait that held the stop would outlast the drain's deadline.
 */
static void test_drain_during_withdrawal_backoff(void **state)
{
    struct gave_up *g = *state;
    uint64_t start;

    withdrawal_waiting(g, GW_ERR_BUSY);
    start = gw_now_ms();
    assert_true(cmp_withdrawals_drain(g->e->engine, start + 2000));
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 2);
    assert_int_equal(audit_count(g->e, "revoke_failed", NULL, NULL), 1);
    assert_int_equal(
        audit_count_by(g->e, "revoke_failed", "status", "not revoked after 2 attempts: " UPSTREAM_SAYS, true),
        1);
    assert_int_equal(audit_count(g->e, "revoked", NULL, NULL), 0);
    assert_int_equal(occurrences(g->logged, "\"event\":\"revoke_retry\""), 1);
    assert_non_null(strstr(g->logged, "\"attempts\":\"2\""));
}

/*
 * revoke_failed of a withdrawal whose upstream failed it for a reason that may pass, when the drain left no
 * time to ask it again: the upstream answered, and it is not revoked (not "before it answered").
 */
#define TEXT_GAVE_UP_FAILED_1                                                                                \
    "the upstream failed attempt 1 for a reason that may pass, and the drain left too little time to ask "   \
    "it again (the gateway stopping or its configuration retired)"

/* The first revocation takes 1.5 s at the CA before it fails (by_serial.fails). */
static void slow_first(int n)
{
    if (n == 1)
        usleep(1500 * 1000);
}

/*
 * The withdrawal's first attempt failed, slowly, and it waits to ask again: a drain whose deadline leaves
 * less than that attempt took does not ask the CA a last time, which would hold the drain past its
 * deadline, but puts it on record at once as not revoked, its upstream's failure and the stop said. Before,
 * the CA was asked again whatever time was left.
 */
static void test_drain_during_withdrawal_backoff_no_time_left(void **state)
{
    struct gave_up *g = *state;
    uint64_t start;

    by_serial.during = slow_first;
    withdrawal_waiting(g, GW_ERR_TIMEOUT);
    start = gw_now_ms();
    /* 1 s left, less than the failed attempt took; room for the record on a loaded machine */
    assert_true(cmp_withdrawals_drain(g->e->engine, start + 1000));
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 1);
    assert_int_equal(audit_count(g->e, "revoke_failed", NULL, NULL), 1);
    assert_int_equal(
        audit_count_by(g->e, "revoke_failed", "status", "not revoked: " TEXT_GAVE_UP_FAILED_1, true), 1);
    assert_int_equal(occurrences(g->logged, "\"event\":\"revoke_failed\""), 1);
    assert_non_null(strstr(g->logged, "\"reason\":\"" TEXT_GAVE_UP_FAILED_1 "\""));
    assert_non_null(strstr(g->logged, "is still valid: revoke it by hand"));
    assert_null(strstr(g->logged, TEXT_GAVE_UP_ASKED));
}

/*
 * A drain whose deadline has passed already gives up on a withdrawal that waits to ask its upstream again:
 * it is on record as the upstream's failure at its attempt and the stop before the next, not asked again.
 * Before, the record said the drain gave up before the upstream answered, which it had, with a failure.
 */
static void test_drain_past_deadline_during_withdrawal_backoff(void **state)
{
    struct gave_up *g = *state;

    withdrawal_waiting(g, GW_ERR_BUSY);
    /* the drain or the thread, whichever has the queue first, puts it on record, once; the thread asks
       nothing more, so the drain waits for it to end */
    assert_true(cmp_withdrawals_drain(g->e->engine, gw_now_ms()));
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 1);
    assert_int_equal(audit_count(g->e, "revoke_failed", NULL, NULL), 1);
    assert_int_equal(
        audit_count_by(g->e, "revoke_failed", "status", "not revoked: " TEXT_GAVE_UP_FAILED_1, true), 1);
    assert_int_equal(occurrences(g->logged, "\"event\":\"revoke_failed\""), 1);
    assert_null(strstr(g->logged, TEXT_GAVE_UP_ASKED));
    assert_int_equal(audit_count(g->e, "revoked", NULL, NULL), 0);
}

/*
 * revoke_failed of a withdrawal asked during a drain whose call reached the end the drain left it with no
 * answer: the CA may have acted on it, so not "revoke it by hand" alone, and not that the drain gave up
 * while the call went on.
 */
#define TEXT_CUT_SHORT                                                                                       \
    "the drain's deadline came while the upstream had not answered, which ended its call (the gateway "      \
    "stopping or its configuration retired); it may or may not be revoked: check at the CA"

static int silent_from; /* the revocations from this one on (1, 2, ...) get no answer from the CA */

/*
 * A CA that answers the revocations before silent_from at once (the first after 300 ms) and leaves the
 * others unanswered until the end their call was given, or 5 s without one (its upstream's timeout): they
 * fail then as a call that timed out.
 */
static void silent_until_end(int n)
{
    uint64_t until = __atomic_load_n(&by_serial.until_ms, __ATOMIC_SEQ_CST), start = gw_now_ms();

    if (n < silent_from) {
        usleep(n == 1 ? 300 * 1000 : 0);
        return;
    }
    while (gw_now_ms() < (until != 0 ? until : start + 5000))
        usleep(10 * 1000);
    __atomic_store_n(&by_serial.fails, GW_ERR_TIMEOUT, __ATOMIC_SEQ_CST);
}

/* What the drain left of the withdrawal cut short: one record and one line, and no word of giving up. */
static void assert_cut_short(struct gave_up *g, const char *status)
{
    assert_int_equal(audit_count(g->e, "revoke_failed", NULL, NULL), 1);
    assert_int_equal(audit_count_by(g->e, "revoke_failed", "status", status, true), 1);
    assert_int_equal(occurrences(g->logged, "\"event\":\"revoke_failed\""), 1);
    assert_non_null(strstr(g->logged, "\"reason\":\"" TEXT_CUT_SHORT "\""));
    assert_non_null(strstr(g->logged, "may still be valid: check at the CA"));
    assert_null(strstr(g->logged, TEXT_GAVE_UP_ASKED));
}

/*
 * A drain while a withdrawal waits to ask its upstream again: the last attempt is asked, and the CA does
 * not answer it. Its call ends before the drain's deadline, which it was given less the time for its
 * record, and the thread puts it on record as cut short: the drain ends by its deadline with the thread
 * done, and the engine is not left to the process's end. Before, the call ran for the upstream's timeout:
 * the drain gave up at its deadline, "before it answered", and left the engine running it.
 */
static void test_drain_cuts_last_attempt_short(void **state)
{
    struct gave_up *g = *state;
    uint64_t start;

    silent_from = 2;
    by_serial.during = silent_until_end;
    withdrawal_waiting(g, GW_ERR_BUSY);
    start = gw_now_ms();
    assert_true(cmp_withdrawals_drain(g->e->engine, start + 1500));
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 2);
    assert_true(by_serial.until_ms != 0 && by_serial.until_ms <= start + 1500 - GW_WITHDRAWAL_RECORD_MS);
    assert_cut_short(g, "not revoked after 2 attempts: " TEXT_CUT_SHORT);
    assert_int_equal(audit_count(g->e, "revoked", NULL, NULL), 0);
}

/*
 * The withdrawals queued when a drain begins are asked within it too: one the thread takes once the one at
 * the CA revoked is given the drain's deadline, and the CA not answering it ends its call before that, on
 * record as cut short. Before, it ran for the upstream's timeout past the drain's deadline. The twin: the
 * one that began before the drain keeps its upstream's timeout (no end given), and revokes.
 */
static void test_drain_cuts_queued_withdrawal_short(void **state)
{
    struct gave_up *g = *state;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *other = tu_make_cert(k, issuing_key, issuing_cert, "rr-device-21", 0x5121); /* the CA's too */
    struct cmp_txn view;
    uint64_t start;

    silent_from = 2;
    by_serial.during = silent_until_end;
    withdraw_race_cert();
    for (int i = 0; i < 500 && __atomic_load_n(&by_serial.revokes, __ATOMIC_SEQ_CST) < 1; i++)
        usleep(10 * 1000);
    assert_int_equal(__atomic_load_n(&by_serial.until_ms, __ATOMIC_SEQ_CST), 0);
    memset(&view, 0, sizeof(view));
    view.up = gw_upstream_set_get0(g->e->ups, g->e->cfg->upstreams[0].name);
    snprintf(view.serial, sizeof(view.serial), "queued");
    cmp_withdraw(g->e->engine, &view, "0f0f", other, CRL_REASON_CESSATION_OF_OPERATION);
    X509_free(other);
    EVP_PKEY_free(k);
    start = gw_now_ms();
    assert_true(cmp_withdrawals_drain(g->e->engine, start + 1500));
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 2);
    assert_true(by_serial.until_ms != 0 && by_serial.until_ms <= start + 1500 - GW_WITHDRAWAL_RECORD_MS);
    assert_int_equal(audit_count(g->e, "revoked", "status", "revoked upstream"), 1);
    assert_cut_short(g, "not revoked: " TEXT_CUT_SHORT);
}

/* A CA that does not answer a revocation until its end as it stands (a drain may lower it), or 5 s. */
static void silent_until_lowered_end(int n)
{
    const _Atomic uint64_t *end = __atomic_load_n(&by_serial.end, __ATOMIC_SEQ_CST);
    uint64_t start = gw_now_ms(), until;

    (void)n;
    while (gw_now_ms() < ((until = end != NULL ? atomic_load(end) : 0) != 0 ? until : start + 5000))
        usleep(10 * 1000);
    __atomic_store_n(&by_serial.fails, GW_ERR_TIMEOUT, __ATOMIC_SEQ_CST);
}

/*
 * A drain begun while a withdrawal is at the CA, asked before it with no end: the drain gives the call an
 * end, which the call reads as it runs, and the CA not answering ends it there, on record by its thread as
 * cut short; the drain ends before its deadline with the thread done. Before, the call kept its upstream's
 * timeout: the drain gave up at its deadline ("before it answered") and left the engine running it.
 */
static void test_drain_cuts_withdrawal_at_the_ca_short(void **state)
{
    struct gave_up *g = *state;
    uint64_t start;

    by_serial.during = silent_until_lowered_end;
    withdraw_race_cert();
    for (int i = 0; i < 500 && __atomic_load_n(&by_serial.revokes, __ATOMIC_SEQ_CST) < 1; i++)
        usleep(10 * 1000);
    assert_int_equal(__atomic_load_n(&by_serial.until_ms, __ATOMIC_SEQ_CST), 0);
    start = gw_now_ms();
    assert_true(cmp_withdrawals_drain(g->e->engine, start + 2500));
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 1);
    assert_cut_short(g, "not revoked: " TEXT_CUT_SHORT);
    assert_int_equal(audit_count(g->e, "revoked", NULL, NULL), 0);
}

#define TEXT_NOT_SENT                                                                                        \
    "the drain's deadline came before it was sent to the upstream, which was not asked (the gateway "        \
    "stopping or its configuration retired)"

static uint64_t drain_until; /* the deadline of drain_main's drain */
static bool drained;         /* what it returned */

static void *drain_main(void *arg)
{
    struct env *e = arg;

    drained = cmp_withdrawals_drain(e->engine, drain_until);
    return NULL;
}

static pthread_t drain_thread;
static bool drain_started; /* rr_outlasts_calls_end started drain_thread */
static int drain_waited;   /* the revocations waiting then */

/*
 * What the drains below leave for the record of a call they end (gw_cmp_engine_set_withdrawal_record_ms),
 * and their deadlines from their start: the rr that outlasts what they leave for calls answers 100 ms
 * after that, which leaves the withdrawal about 2 s to be on record and its thread to end.
 */
#define OUTLAST_RECORD_MS 2300
#define OUTLAST_DRAIN_MS 2700

/* The rr waits for a revocation of its certificate to wait for it (the test's thread checks). */
static void wait_for_waiting(void)
{
    for (int i = 0; i < 500 && gw_cmp_engine_revocations_waiting(race.env->engine) == 0; i++)
        usleep(10 * 1000);
    drain_waited = gw_cmp_engine_revocations_waiting(race.env->engine);
}

/* A drain begun on a thread of its own; the rr answers once what it leaves for calls has passed. */
static void drain_outlasted(void)
{
    gw_cmp_engine_set_withdrawal_record_ms(race.env->engine, OUTLAST_RECORD_MS);
    drain_until = gw_now_ms() + OUTLAST_DRAIN_MS;
    drain_started = pthread_create(&drain_thread, NULL, drain_main, race.env) == 0;
}

static void outlast_calls_end(void)
{
    usleep((OUTLAST_DRAIN_MS - OUTLAST_RECORD_MS + 100) * 1000);
}

/*
 * The holder's rr at the CA (n 1): a withdrawal of its certificate waits for it, and a drain begins on a
 * thread of its own; the rr answers once what the drain leaves for calls (its deadline less what it leaves
 * for a record) has passed, before the deadline. A later revocation answers as an adapter whose end had
 * passed: nothing sent.
 */
static void rr_outlasts_calls_end(int n)
{
    if (n != 1) {
        if (gw_now_ms() >= __atomic_load_n(&by_serial.until_ms, __ATOMIC_SEQ_CST))
            __atomic_store_n(&by_serial.fails, GW_ERR_IO, __ATOMIC_SEQ_CST);
        return;
    }
    withdraw_race_cert();
    wait_for_waiting();
    drain_outlasted();
    outlast_calls_end();
}

/*
 * A withdrawal whose wait for the holder's rr outlasted what the drain left for calls: it is not sent,
 * and on record as not revoked, to revoke by hand, for nothing reached the CA. Before, it was sent with
 * an end already passed, which the adapter does not send, and put on record as cut short, "may or may
 * not be revoked".
 */
static void test_drain_end_passed_before_withdrawal_sent(void **state)
{
    struct gave_up *g = *state;
    struct env *e = g->e;

    by_serial.fails = GW_ERR_REFUSED;
    by_serial.fail_info = OSSL_CMP_PKIFAILUREINFO_notAuthorized;
    drain_started = false;
    by_serial.during = rr_outlasts_calls_end;
    expect_rr(e, g->held, g->k, g->held, CRL_REASON_KEY_COMPROMISE, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
              NULL);
    assert_int_equal(drain_waited, 1);
    assert_true(drain_started);
    pthread_join(drain_thread, NULL);
    assert_true(drained);
    gave_up_read_log(g);
    assert_int_equal(audit_count(e, "revoke_failed", "serial", "race"), 1); /* the rr's aside */
    assert_int_equal(audit_count(e, "revoke_failed", "status", "not revoked: " TEXT_NOT_SENT), 1);
    assert_non_null(strstr(g->logged, "is still valid: revoke it by hand"));
    assert_null(strstr(g->logged, TEXT_CUT_SHORT));
    assert_int_equal(audit_count(e, "revoked", NULL, NULL), 0);
}

#define TEXT_NOT_SENT_AGAIN_1                                                                                \
    "attempt 1, whose outcome may be unknown, failed, and the drain's deadline came before it was asked "    \
    "again (the gateway stopping or its configuration retired); it may be revoked: check at the CA"

/*
 * The holder's rr at the CA (n 2), once the withdrawal's first attempt failed (n 1, by_serial.fails) and it
 * waits to ask again: a drain begins, which ends that wait; the withdrawal then waits for the rr, which
 * answers once what the drain leaves for calls has passed, refused.
 */
static void rr_outlasts_calls_end_after_attempt(int n)
{
    if (n != 2)
        return;
    __atomic_store_n(&by_serial.fails, GW_ERR_REFUSED, __ATOMIC_SEQ_CST);
    drain_outlasted();
    wait_for_waiting();
    outlast_calls_end();
}

/*
 * A withdrawal not sent again once what the drain left for calls had passed, its first attempt ended with
 * no answer in time: that attempt may have revoked it at the CA, so its record says so, and which attempt,
 * to check at the CA. Before, it said "which was not asked" and "revoke it by hand", as for one never sent.
 */
static void test_drain_end_passed_before_withdrawal_sent_again(void **state)
{
    struct gave_up *g = *state;
    struct env *e = g->e;

    drain_started = false;
    by_serial.fail_info = OSSL_CMP_PKIFAILUREINFO_notAuthorized;
    by_serial.during = rr_outlasts_calls_end_after_attempt;
    withdrawal_waiting(g, GW_ERR_TIMEOUT);
    expect_rr(e, g->held, g->k, g->held, CRL_REASON_KEY_COMPROMISE, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
              NULL);
    assert_true(drain_started);
    assert_int_equal(drain_waited, 1);
    pthread_join(drain_thread, NULL);
    assert_true(drained);
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 2);
    assert_int_equal(audit_count(e, "revoke_failed", "status", "not revoked: " TEXT_NOT_SENT_AGAIN_1), 1);
    assert_non_null(strstr(g->logged, "may still be valid: check at the CA"));
    assert_null(strstr(g->logged, TEXT_NOT_SENT));
    assert_int_equal(audit_count(e, "revoked", NULL, NULL), 0);
}

/* A CA not reached until the end its call was given, as it stands (a connection or TLS handshake not made
   by then): the call ends there, its adapter saying that nothing of it was sent. */
static void unreached_until_end(int n)
{
    const _Atomic uint64_t *end = __atomic_load_n(&by_serial.end, __ATOMIC_SEQ_CST);
    uint64_t start = gw_now_ms(), until;

    if (n < silent_from)
        return;
    while (gw_now_ms() < ((until = end != NULL ? atomic_load(end) : 0) != 0 ? until : start + 5000))
        usleep(10 * 1000);
    __atomic_store_n(&by_serial.unsent, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&by_serial.fails, GW_ERR_IO, __ATOMIC_SEQ_CST);
}

/*
 * A drain begun while a withdrawal's call has reached no CA yet: the end it gives the call cuts it there,
 * and the adapter says nothing was sent. It is on record as not sent, to revoke by hand, for the CA was not
 * asked. Before, the record was taken from the time alone: cut short, "may or may not be revoked: check at
 * the CA". The twin, test_drain_cuts_withdrawal_at_the_ca_short: a call the CA held is cut short.
 */
static void test_drain_cuts_withdrawal_unsent(void **state)
{
    struct gave_up *g = *state;
    uint64_t start;

    silent_from = 1;
    by_serial.during = unreached_until_end;
    withdraw_race_cert();
    for (int i = 0; i < 500 && __atomic_load_n(&by_serial.revokes, __ATOMIC_SEQ_CST) < 1; i++)
        usleep(10 * 1000);
    start = gw_now_ms();
    assert_true(cmp_withdrawals_drain(g->e->engine, start + 2500));
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 1);
    assert_int_equal(audit_count(g->e, "revoke_failed", NULL, NULL), 1);
    assert_int_equal(audit_count(g->e, "revoke_failed", "status", "not revoked: " TEXT_NOT_SENT), 1);
    assert_int_equal(occurrences(g->logged, "\"event\":\"revoke_failed\""), 1);
    assert_non_null(strstr(g->logged, "is still valid: revoke it by hand"));
    assert_null(strstr(g->logged, TEXT_CUT_SHORT));
    assert_int_equal(audit_count(g->e, "revoked", NULL, NULL), 0);
}

/*
 * The last attempt a drain lets a withdrawal make, after one that failed with no answer in time, reaches no
 * CA by the end it was given: nothing of it was sent, but the first attempt may have revoked the
 * certificate, so its record says which, to check at the CA, as one the drain's end let no call begin.
 * Before: "not revoked after 2 attempts", cut short.
 */
static void test_drain_cuts_last_attempt_unsent(void **state)
{
    struct gave_up *g = *state;
    uint64_t start;

    silent_from = 2;
    by_serial.during = unreached_until_end;
    withdrawal_waiting(g, GW_ERR_TIMEOUT);
    start = gw_now_ms();
    assert_true(cmp_withdrawals_drain(g->e->engine, start + 1500));
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 2);
    assert_int_equal(audit_count(g->e, "revoke_failed", NULL, NULL), 1);
    assert_int_equal(audit_count(g->e, "revoke_failed", "status", "not revoked: " TEXT_NOT_SENT_AGAIN_1), 1);
    assert_non_null(strstr(g->logged, "may still be valid: check at the CA"));
    assert_null(strstr(g->logged, TEXT_CUT_SHORT));
    assert_int_equal(audit_count(g->e, "revoked", NULL, NULL), 0);
}

/*
 * The twin of test_drain_cuts_last_attempt_unsent whose first attempt sent nothing either (a connection
 * refused): no attempt may have reached the CA, so its record says it was not sent, to revoke by hand.
 * Before, it said "attempt 1, whose outcome may be unknown, failed", to check at the CA.
 */
static void test_drain_cuts_last_attempt_none_sent(void **state)
{
    struct gave_up *g = *state;
    uint64_t start;

    silent_from = 2;
    by_serial.during = unreached_until_end;
    by_serial.unsent = 1;
    withdrawal_waiting(g, GW_ERR_IO);
    start = gw_now_ms();
    assert_true(cmp_withdrawals_drain(g->e->engine, start + 1500));
    gave_up_read_log(g);
    assert_int_equal(by_serial.revokes, 2);
    assert_int_equal(audit_count(g->e, "revoke_failed", NULL, NULL), 1);
    assert_int_equal(audit_count(g->e, "revoke_failed", "status", "not revoked: " TEXT_NOT_SENT), 1);
    assert_non_null(strstr(g->logged, "is still valid: revoke it by hand"));
    assert_null(strstr(g->logged, "whose outcome may be unknown"));
    assert_int_equal(audit_count(g->e, "revoked", NULL, NULL), 0);
}

/* ---- shim ------------------------------------------------------------------------------------ */

/* An rr as the client builds it (not sent), with |reason|. */
static OSSL_CMP_MSG *make_rr(struct env *e, int reason)
{
    OSSL_CMP_CTX *ctx;
    OSSL_CMP_MSG *m;

    no_send = 1;
    rr(e, client_cert, client_key, client_cert, reason, &ctx);
    no_send = 0;
    OSSL_CMP_CTX_free(ctx);
    m = last_req;
    last_req = NULL;
    assert_non_null(m);
    ERR_clear_error();
    return m;
}

static void test_shim_rr_reason(void **state)
{
    static const struct {
        int sent, rc, got;
    } cases[] = {
        {-1, 0, CRL_REASON_NONE},
        {CRL_REASON_KEY_COMPROMISE, 0, CRL_REASON_KEY_COMPROMISE},
        {CRL_REASON_AA_COMPROMISE, 0, CRL_REASON_AA_COMPROMISE},
        {7, GW_ERR_INVAL, CRL_REASON_NONE}, /* unused value (RFC 5280 §5.3.1) */
    };
    struct env *e = env_new(NULL, NULL);
    int reason;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        OSSL_CMP_MSG *m = make_rr(e, cases[i].sent);
        assert_int_equal(gw_shim_rr_reason(m, &reason), cases[i].rc);
        assert_int_equal(reason, cases[i].got);
        OSSL_CMP_MSG_free(m);
    }
    /* wrong type: a genm is not an rr */
    {
        OSSL_CMP_CTX *ctx = client_new(e, client_cert, client_key);
        const char *oids[] = {OID_CACERTS};
        no_send = 1;
        assert_null(genm(e, ctx, oids, 1, NULL));
        no_send = 0;
        assert_int_equal(gw_shim_rr_reason(last_req, &reason), GW_ERR_INVAL);
        assert_int_equal(gw_shim_rr_reason(NULL, &reason), GW_ERR_INVAL);
        OSSL_CMP_CTX_free(ctx);
        OSSL_CMP_MSG_free(last_req);
        last_req = NULL;
        ERR_clear_error();
    }
    env_free(e);
}

static X509_CRL *make_crl(int entries)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *now = ASN1_TIME_adj(NULL, time(NULL), 0, 0);

    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuing_cert));
    X509_CRL_set1_lastUpdate(crl, now);
    add_entries(crl, 0, entries, now);
    X509_CRL_sign(crl, issuing_key, EVP_sha256());
    ASN1_TIME_free(now);
    return crl;
}

/* ITAV builders: valid input round-trips, the CRL as it was encoded; more CRLs than a genp carries are
 * refused. */
static void test_shim_itavs(void **state)
{
    ASN1_OBJECT *type = OBJ_txt2obj(OID_CRLS, 1);
    X509_CRL *crl = make_crl(3), *two[GW_SHIM_MAX_CRLS + 1];
    unsigned char *der = NULL;
    int len = i2d_X509_CRL(crl, &der);
    const unsigned char *p;
    OSSL_CMP_ITAV *itav;
    STACK_OF(X509) *none = sk_X509_new_null();
    ASN1_TYPE *value;

    (void)state;
    assert_true(len > 0);
    for (int i = 0; i < GW_SHIM_MAX_CRLS + 1; i++)
        two[i] = crl;
    assert_non_null(itav = gw_shim_itav_x509_crls(type, &crl, 1));
    assert_int_equal(seq_count(value = OSSL_CMP_ITAV_get0_value(itav), V_ASN1_SEQUENCE), 1);
    p = value->value.sequence->data; /* SEQUENCE { CertificateList }: the CRL's own bytes inside */
    assert_true(value->value.sequence->length > len);
    assert_memory_equal(p + value->value.sequence->length - len, der, (size_t)len);
    OSSL_CMP_ITAV_free(itav);
    assert_non_null(itav = gw_shim_itav_x509_crls(type, two, 2)); /* one per CA asked for */
    assert_int_equal(seq_count(OSSL_CMP_ITAV_get0_value(itav), V_ASN1_SEQUENCE), 2);
    OSSL_CMP_ITAV_free(itav);
    assert_null(gw_shim_itav_x509_crls(type, two, GW_SHIM_MAX_CRLS + 1));
    assert_null(gw_shim_itav_x509_crls(type, two, -1));
    /* absent values */
    assert_non_null(itav = gw_shim_itav_x509_crls(type, NULL, 0));
    assert_null(OSSL_CMP_ITAV_get0_value(itav));
    OSSL_CMP_ITAV_free(itav);
    assert_non_null(itav = gw_shim_itav_root_update(type, NULL, NULL, NULL));
    assert_null(OSSL_CMP_ITAV_get0_value(itav));
    OSSL_CMP_ITAV_free(itav);
    assert_null(gw_shim_itav_certs(type, none)); /* an empty SEQUENCE OF is not a value: caller passes NULL */
    assert_null(gw_shim_itav_certs(NULL, NULL));
    ERR_clear_error();
    sk_X509_free(none);
    OPENSSL_free(der);
    X509_CRL_free(crl);
    ASN1_OBJECT_free(type);
}

/* Which CAs a crlStatusList names: a directoryName source only; an entry without thisUpdate is the oldest. */
static void test_shim_crl_status_names(void **state)
{
    static const struct {
        const char *hex;
        int named;
        time_t when;
    } cases[] = {
        /* this CA's without thisUpdate, then this CA's of 2025: the client has none of one */
        {"3021"
         "3006"
         "a104"
         "a4023000"
         "3017"
         "a104"
         "a4023000"
         "180f32303235303130313030303030305a",
         1, 0},
        /* another CA's (CN=x) only */
        {"3014"
         "3012"
         "a110"
         "a40e300c310a300806035504030c0178",
         0, 0},
        /* a distributionPoint [0] naming the empty Name: not an issuer */
        {"301b"
         "3019"
         "a006"
         "a004"
         "a4023000"
         "180f32303235303130313030303030305a",
         0, 0},
        {"3000", 0, 0}, /* malformed */
    };
    X509_NAME *issuer = X509_NAME_new();
    time_t when;
    int named;

    (void)state;
    assert_non_null(issuer);
    assert_false(gw_shim_crl_status_names(NULL, issuer));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long n = 0;
        ASN1_TYPE *v = ASN1_TYPE_new();
        ASN1_STRING *str = ASN1_STRING_new();
        unsigned char *bytes = OPENSSL_hexstr2buf(cases[i].hex, &n);

        assert_non_null(bytes);
        ASN1_STRING_set(str, bytes, (int)n);
        ASN1_TYPE_set(v, V_ASN1_SEQUENCE, str);
        assert_int_equal(gw_shim_crl_status_names(v, issuer), cases[i].named);
        if (cases[i].named) {
            assert_int_equal(gw_shim_crl_status_time(v, issuer, &when), 0);
            assert_int_equal(when, cases[i].when);
        }
        /* one read gives both as the two above do */
        (void)gw_shim_crl_status(v, issuer, &named, &when);
        assert_int_equal(named, cases[i].named);
        if (cases[i].named)
            assert_int_equal(when, cases[i].when);
        ASN1_TYPE_free(v);
        OPENSSL_free(bytes);
    }
    X509_NAME_free(issuer);
}

/* crlStatusList values: absent, thisUpdate present, of this CA or another, and malformed twins. */
static void test_shim_crl_status(void **state)
{
    static const struct {
        const char *hex; /* DER of the SEQUENCE OF CRLStatus */
        int rc;
        time_t when;
    } cases[] = {
        /* [{ issuer [1] { dirName [4] { empty Name } } }] */
        {"3008"
         "3006"
         "a104"
         "a4023000",
         0, 0},
        /* same, thisUpdate 20250101000000Z */
        {"3019"
         "3017"
         "a104"
         "a4023000"
         "180f32303235303130313030303030305a",
         0, 1735689600},
        {"3008"
         "3006"
         "a204"
         "a4023000",
         GW_ERR_INVAL, 0}, /* [2]: no such CRLSource */
        {"3009"
         "3006"
         "a104"
         "a4023000",
         GW_ERR_INVAL, 0}, /* length lies */
        {"3019"
         "3017"
         "a104"
         "a4023000"
         "180f32303235303130313030303030",
         GW_ERR_INVAL, 0},         /* truncated */
        {"3000", GW_ERR_INVAL, 0}, /* SIZE (1..MAX) */
        /* [1] EXPLICIT, as RFC 9810's module tags it: { SEQUENCE { dirName } } */
        {"301b"
         "3019"
         "a106"
         "3004"
         "a4023000"
         "180f32303235303130313030303030305a",
         0, 1735689600},
        /* the client's CRL of another CA (CN=x): it says nothing of this CA's */
        {"3025"
         "3023"
         "a110"
         "a40e300c310a300806035504030c0178"
         "180f32303235303130313030303030305a",
         0, 0},
        /* a distributionPoint [0] { fullName [0] { dirName } }: not matched */
        {"301b"
         "3019"
         "a006"
         "a004"
         "a4023000"
         "180f32303235303130313030303030305a",
         0, 0},
        /* two: another CA's, then this one's */
        {"3040"
         "3023"
         "a110"
         "a40e300c310a300806035504030c0178"
         "180f32303235303130313030303030305a"
         "3019"
         "a106"
         "3004"
         "a4023000"
         "180f32303234303130313030303030305a",
         0, 1704067200},
        /* a malformed second one refuses the whole value */
        {"300e"
         "3006"
         "a104"
         "a4023000"
         "3004"
         "a2023000",
         GW_ERR_INVAL, 0},
    };
    X509_NAME *issuer = X509_NAME_new(); /* the empty Name the cases' dirName holds */
    time_t when;

    (void)state;
    assert_non_null(issuer);
    assert_int_equal(gw_shim_crl_status_time(NULL, issuer, &when), 0);
    assert_int_equal(when, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char buf[128];
        long n = 0;
        ASN1_TYPE *v = ASN1_TYPE_new();
        ASN1_STRING *s = ASN1_STRING_new();
        unsigned char *bytes = OPENSSL_hexstr2buf(cases[i].hex, &n);

        assert_non_null(bytes);
        memcpy(buf, bytes, (size_t)n);
        ASN1_STRING_set(s, buf, (int)n);
        ASN1_TYPE_set(v, V_ASN1_SEQUENCE, s);
        assert_int_equal(gw_shim_crl_status_time(v, issuer, &when), cases[i].rc);
        assert_int_equal(when, cases[i].when);
        /* no issuer to match: the value is only checked */
        assert_int_equal(gw_shim_crl_status_time(v, NULL, &when), cases[i].rc);
        assert_int_equal(when, 0);
        ASN1_TYPE_free(v);
        OPENSSL_free(bytes);
    }
    X509_NAME_free(issuer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_genm_ca_certs),
        cmocka_unit_test(test_genm_root_update),
        cmocka_unit_test(test_root_update_config),
        cmocka_unit_test(test_genm_root_cert_malformed),
        cmocka_unit_test(test_genm_profile),
        cmocka_unit_test(test_genm_cert_template),
        cmocka_unit_test(test_genm_refusals),
        cmocka_unit_test(test_genm_crl_limits),
        cmocka_unit_test(test_genm_crl_not_published),
        cmocka_unit_test(test_genm_answer_too_large),
        cmocka_unit_test(test_genm_out_of_memory),
        cmocka_unit_test(test_genm_unknown_before_crl),
        cmocka_unit_test(test_genm_crl_reuse),
        cmocka_unit_test(test_genm_crl_too_large_filed),
        cmocka_unit_test_teardown(test_genm_crl_failure_lines_paced, log_release),
        cmocka_unit_test(test_genm_crl_single_flight),
        cmocka_unit_test(test_genm_crl_expires_cached),
        cmocka_unit_test(test_genm_crl_older),
        cmocka_unit_test_setup_teardown(test_genm_crl_hits, crl_hits_setup, crl_hits_teardown),
        cmocka_unit_test(test_rr_holder),
        cmocka_unit_test(test_rr_local_unsynced),
        cmocka_unit_test(test_rr_ra),
        cmocka_unit_test(test_rr_unknown),
        cmocka_unit_test(test_rr_ra_by_serial),
        cmocka_unit_test(test_rr_ra_ca_certificate),
        cmocka_unit_test(test_rr_ra_already_revoked),
        cmocka_unit_test(test_rr_holder_revoked_at_ca),
        cmocka_unit_test_teardown(test_rr_ra_without_lookup, log_release),
        cmocka_unit_test(test_rr_upstream_refuses),
        cmocka_unit_test(test_rr_outcome_unknown),
        cmocka_unit_test(test_rr_holder_forged_key_id),
        cmocka_unit_test(test_rr_migration_same_ca_name),
        cmocka_unit_test(test_rr_migration_same_ca_name_same_serial),
        cmocka_unit_test(test_genm_crl_revoked_elsewhere),
        cmocka_unit_test(test_genm_crl_two_cas_of_one_upstream),
        cmocka_unit_test(test_genm_crl_two_cas_of_two_upstreams),
        cmocka_unit_test(test_rr_crmf_upstream),
        cmocka_unit_test(test_rr_remove_from_crl),
        cmocka_unit_test(test_rr_during_withdrawal),
        cmocka_unit_test(test_rr_ra_expired_during_withdrawal),
        cmocka_unit_test_teardown(test_rr_waits_for_withdrawal, log_release),
        cmocka_unit_test_setup_teardown(test_drain_gives_up_on_withdrawal_waiting_for_rr, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_gives_up_then_withdrawal_revokes, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_gives_up_on_withdrawal_at_the_ca, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_gives_up_on_withdrawal_the_ca_fails, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_gives_up_on_queued_withdrawal, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test(test_withdrawal_retried),
        cmocka_unit_test_setup_teardown(test_drain_during_withdrawal_backoff, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_during_withdrawal_backoff_no_time_left, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_past_deadline_during_withdrawal_backoff, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_cuts_last_attempt_short, gave_up_setup, gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_cuts_queued_withdrawal_short, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_cuts_withdrawal_at_the_ca_short, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_end_passed_before_withdrawal_sent, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_end_passed_before_withdrawal_sent_again, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_cuts_withdrawal_unsent, gave_up_setup, gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_cuts_last_attempt_unsent, gave_up_setup, gave_up_teardown),
        cmocka_unit_test_setup_teardown(test_drain_cuts_last_attempt_none_sent, gave_up_setup,
                                        gave_up_teardown),
        cmocka_unit_test(test_shim_rr_reason),
        cmocka_unit_test(test_shim_itavs),
        cmocka_unit_test(test_shim_crl_status),
        cmocka_unit_test(test_shim_crl_status_names),
    };

    if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1)
        return 1; /* OpenSSL allocated before: blocks would be freed by another allocator than theirs */
    /* one test alone, as docs/performance.md counts one: CMPGW_TEST_FILTER=test_genm_crl_hits */
    if (getenv("CMPGW_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("CMPGW_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
