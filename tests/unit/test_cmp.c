/*
 * In-process client <-> engine tests (OpenSSL's own style): a real OSSL_CMP_CTX client whose
 * transfer callback DER-encodes each request, calls gw_cmp_process and decodes the answer.
 * The PKI comes from deploy/demo-pki.sh; each test builds its own engine over a config variant.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "gateway/cmp.h"
#include "gateway/cmp_shim.h"
#include "gateway/config.h"
#include "mappings/route.h"
#include "upstream/upstream.h"

#define TEXT_UNTRUSTED                                                                                       \
    "message protection could not be verified: the signer certificate is not issued by a CA "                \
    "trusted on this route"
#define CMP_DEFAULTS                                                                                         \
    "\"message_time_window\": \"300s\", \"transaction_ttl\": \"300s\", "                                     \
    "\"max_transactions_per_identity\": 100"

static char dir[64];
static char *base_json;
static X509 *client_cert, *ca_cert, *rogue_cert;
static EVP_PKEY *client_key, *rogue_key;
static unsigned char pbm_secret[256];
static size_t pbm_secret_len;

struct env {
    struct gw_config *cfg;
    struct gw_upstream_set *ups;
    struct gw_cmp_engine *engine;
    struct gw_route_match route;
};

/* Per-client transfer state. */
struct client {
    struct env *env;
    OSSL_CMP_MSG *(*tamper)(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl);
    OSSL_CMP_CTX *other; /* tamper helper: a second sender */
    int exchanges;
    int new_thread; /* process each exchange on a fresh thread */
    unsigned char *first_req;
    size_t first_req_len;
};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 65536);
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, 65535, f);
    fclose(f);
    if (len != NULL)
        *len = n;
    return buf;
}

static X509 *load_cert(const char *name)
{
    char path[128];
    FILE *f;
    X509 *x;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "r"));
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *load_key(const char *name)
{
    char path[128];
    FILE *f;
    EVP_PKEY *k;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "r"));
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

static X509 *self_signed(EVP_PKEY *key, const char *cn)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, n);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return x;
}

static int group_setup(void **state)
{
    char cmd[256], path[128];
    char *s;
    size_t n;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cmpgw-test-cmp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "../../deploy/demo-pki.sh %s >/dev/null 2>&1", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/cmpgw.json", dir);
    base_json = slurp(path, NULL);
    client_cert = load_cert("client.pem");
    ca_cert = load_cert("ca.pem");
    client_key = load_key("client.key");
    rogue_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    rogue_cert = self_signed(rogue_key, "demo-client");
    snprintf(path, sizeof(path), "%s/pbm.secret", dir);
    s = slurp(path, &n);
    memcpy(pbm_secret, s, n);
    pbm_secret_len = n;
    free(s);
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
    X509_free(rogue_cert);
    EVP_PKEY_free(client_key);
    EVP_PKEY_free(rogue_key);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* A config = the demo's with a "cmp" section inserted. */
static struct env *env_new(const char *cmp)
{
    struct env *e = calloc(1, sizeof(*e));
    size_t cap = strlen(base_json) + strlen(cmp) + 64;
    char err[GW_ERR_LEN] = "", *json = calloc(1, cap);
    const char *at = strstr(base_json, "\"default_path_policy\"");

    assert_non_null(at);
    memcpy(json, base_json, (size_t)(at - base_json));
    snprintf(json + (at - base_json), cap - (size_t)(at - base_json), "\"cmp\": {%s},\n  %s", cmp, at);
    e->cfg = gw_config_parse(json, strlen(json), dir, "test.json", err);
    if (e->cfg == NULL)
        fail_msg("config: %s", err);
    assert_non_null(e->ups = gw_upstream_set_new(e->cfg, err));
    assert_non_null(e->engine = gw_cmp_engine_new(e->cfg, e->ups, err));
    e->route.kind = GW_ROUTE_DEFAULT;
    e->route.role = e->cfg->default_path_policy.role;
    free(json);
    return e;
}

static void env_free(struct env *e)
{
    gw_cmp_engine_free(e->engine);
    gw_upstream_set_free(e->ups);
    gw_config_free(e->cfg);
    free(e);
}

/* Runs one request through the engine; returns the response DER (caller frees) and the HTTP status. */
static unsigned char *exchange(struct env *e, const unsigned char *der, size_t len, int *http,
                               size_t *out_len)
{
    struct gw_cmp_response rsp;
    unsigned char *out = NULL;

    gw_cmp_response_init(&rsp);
    gw_cmp_process(e->engine, &(struct gw_cmp_request){der, len, &e->route, NULL}, &rsp);
    *http = rsp.http_status;
    if (rsp.http_status == 200) {
        out = OPENSSL_memdup(rsp.der, rsp.len);
        *out_len = rsp.len;
    }
    gw_cmp_response_cleanup(&rsp);
    return out;
}

struct job {
    struct env *env;
    unsigned char *der, *out;
    size_t len, out_len;
    int http;
};

static void *job_run(void *arg)
{
    struct job *j = arg;

    j->out = exchange(j->env, j->der, j->len, &j->http, &j->out_len);
    return NULL;
}

static OSSL_CMP_MSG *transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    struct client *cl = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    OSSL_CMP_MSG *sent = OSSL_CMP_MSG_dup(req), *rsp = NULL;
    struct job j = {.env = cl->env};
    const unsigned char *p;
    pthread_t th;
    int len;

    if (cl->tamper != NULL)
        sent = cl->tamper(ctx, sent, cl);
    if ((len = i2d_OSSL_CMP_MSG(sent, &j.der)) <= 0)
        goto out;
    j.len = (size_t)len;
    if (cl->exchanges++ == 0) {
        cl->first_req = OPENSSL_memdup(j.der, j.len);
        cl->first_req_len = j.len;
    }
    if (cl->new_thread) { /* the gateway's worker pool: any message of a transaction on any thread */
        pthread_create(&th, NULL, job_run, &j);
        pthread_join(th, NULL);
    } else {
        job_run(&j);
    }
    p = j.out;
    if (j.http == 200)
        rsp = d2i_OSSL_CMP_MSG(NULL, &p, (long)j.out_len);
out:
    OSSL_CMP_MSG_free(sent);
    OPENSSL_free(j.der);
    OPENSSL_free(j.out);
    return rsp;
}

static int quiet(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
    (void)func, (void)file, (void)line, (void)level, (void)msg;
    return 1;
}

enum prot { SIG, PBM };

/* A client: signature with |cert|/|key|, or PBM with |ref|/|secret|; trusts the demo root. */
static OSSL_CMP_CTX *client_new(struct client *cl, enum prot prot, X509 *cert, EVP_PKEY *key, const char *ref,
                                const unsigned char *secret, size_t secret_len)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
    X509_STORE *store = X509_STORE_new();
    X509_NAME *subj = X509_NAME_new();

    X509_STORE_add_cert(store, ca_cert);
    assert_int_equal(OSSL_CMP_CTX_set0_trustedStore(ctx, store), 1);
    OSSL_CMP_CTX_set_log_cb(ctx, quiet);
    OSSL_CMP_CTX_set_transfer_cb(ctx, transfer);
    OSSL_CMP_CTX_set_transfer_cb_arg(ctx, cl);
    if (prot == SIG) {
        assert_int_equal(OSSL_CMP_CTX_set1_cert(ctx, cert), 1);
        assert_int_equal(OSSL_CMP_CTX_set1_pkey(ctx, key), 1);
    } else {
        OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)ref, (int)strlen(ref));
        OSSL_CMP_CTX_set1_secretValue(ctx, secret, (int)secret_len);
    }
    OSSL_CMP_CTX_set0_newPkey(ctx, 1, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
    X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)"test-device", -1, -1, 0);
    OSSL_CMP_CTX_set1_subjectName(ctx, subj);
    X509_NAME_free(subj);
    return ctx;
}

static void client_cleanup(struct client *cl)
{
    OPENSSL_free(cl->first_req);
    OSSL_CMP_CTX_free(cl->other);
}

/* Asserts the answer's PKIStatus, failInfo bit (-1: none) and a piece of its statusString. */
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

/* Describes a raw answer: its PKIStatusInfo printed by OpenSSL (error and ip/cp/kup bodies). */
static void describe(const unsigned char *der, size_t len, char *out, size_t cap)
{
    const unsigned char *p = der;
    OSSL_CMP_MSG *m = d2i_OSSL_CMP_MSG(NULL, &p, (long)len);
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);

    /* no getter for a message's PKISI in 3.0: the printed form of the whole message is enough */
    assert_non_null(m);
    snprintf(out, cap, "%s", gw_shim_body_name(OSSL_CMP_MSG_get_bodytype(m)));
    {
        BIO *b = BIO_new(BIO_s_mem());
        char *data;
        long n;
        ASN1_item_print(b, (ASN1_VALUE *)m, 0, ASN1_ITEM_rptr(OSSL_CMP_MSG), NULL);
        n = BIO_get_mem_data(b, &data);
        snprintf(out + strlen(out), cap - strlen(out), " %.*s", (int)(n < 3500 ? n : 3500), data);
        BIO_free(b);
    }
    OSSL_CMP_CTX_free(ctx);
    OSSL_CMP_MSG_free(m);
}

static void test_ir_signature_certconf(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    X509 *cert;

    (void)state;
    cert = OSSL_CMP_exec_IR_ses(ctx);
    assert_non_null(cert);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(cl.exchanges, 2); /* ir + certConf */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

static void test_ir_pbm_cr_p10cr(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
    X509_REQ *csr = X509_REQ_new();
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    (void)state;
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_reinit(ctx); /* a fresh transactionID per transaction */
    assert_non_null(OSSL_CMP_exec_CR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    OSSL_CMP_CTX_reinit(ctx);
    X509_REQ_set_pubkey(csr, k);
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(csr), "CN", MBSTRING_ASC,
                               (const unsigned char *)"p10", -1, -1, 0);
    assert_true(X509_REQ_sign(csr, k, EVP_sha256()) > 0);
    OSSL_CMP_CTX_set1_p10CSR(ctx, csr);
    EVP_PKEY_up_ref(k); /* the client checks the certificate against its newPkey */
    OSSL_CMP_CTX_set0_newPkey(ctx, 1, k);
    assert_non_null(OSSL_CMP_exec_P10CR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(cl.exchanges, 6);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    X509_REQ_free(csr);
    EVP_PKEY_free(k);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

static void test_implicit_confirm(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(cl.exchanges, 1); /* no certConf */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* kur by the old certificate's holder works; kur signed by another certificate is notAuthorized. */
static void test_kur(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e}, cl2 = {.env = e}, cl3 = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0), *kur, *bad;
    X509 *old;
    EVP_PKEY *old_key;

    (void)state;
    assert_non_null(old = OSSL_CMP_exec_IR_ses(ctx));
    old_key = OSSL_CMP_CTX_get0_newPkey(ctx, 1);
    kur = client_new(&cl2, SIG, old, old_key, NULL, NULL, 0);
    OSSL_CMP_CTX_set1_oldCert(kur, old);
    assert_non_null(OSSL_CMP_exec_KUR_ses(kur));
    assert_status(kur, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    /* twin: the demo client signs a kur for the device's certificate */
    bad = client_new(&cl3, SIG, client_cert, client_key, NULL, NULL, 0);
    OSSL_CMP_CTX_set1_oldCert(bad, old);
    assert_null(OSSL_CMP_exec_KUR_ses(bad));
    assert_status(bad, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "oldCertID");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    client_cleanup(&cl2);
    client_cleanup(&cl3);
    OSSL_CMP_CTX_free(ctx);
    OSSL_CMP_CTX_free(kur);
    OSSL_CMP_CTX_free(bad);
    env_free(e);
}

struct refusal_case {
    const char *name;
    const char *cmp; /* config variant */
    enum prot prot;
    int rogue; /* sign with a self-signed look-alike of the demo client */
    const char *ref;
    int wrong_secret;
    int fail_bit;
    const char *text;
};

static void test_refusals(void **state)
{
    static const struct refusal_case cases[] = {
        {"untrusted signer", CMP_DEFAULTS, SIG, 1, NULL, 0, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
         TEXT_UNTRUSTED},
        {"wrong PBM secret", CMP_DEFAULTS, PBM, 0, "demo-device", 1, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
         "PBM protection could not be verified"},
        {"unknown PBM reference", CMP_DEFAULTS, PBM, 0, "nobody", 0, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
         "PBM protection could not be verified"},
        {"PBM iterations over the cap", CMP_DEFAULTS ", \"pbm_max_iterations\": 200", PBM, 0, "demo-device",
         0, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "cap of 200"},
    };
    static const unsigned char wrong[] = "0123456789abcdef0123456789abcdef";

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct refusal_case *rc = &cases[i];
        struct env *e = env_new(rc->cmp);
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx =
            rc->prot == SIG ? client_new(&cl, SIG, rc->rogue ? rogue_cert : client_cert,
                                         rc->rogue ? rogue_key : client_key, NULL, NULL, 0)
                            : client_new(&cl, PBM, NULL, NULL, rc->ref, rc->wrong_secret ? wrong : pbm_secret,
                                         rc->wrong_secret ? sizeof(wrong) - 1 : pbm_secret_len);

        print_message("case: %s\n", rc->name);
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, rc->fail_bit, rc->text);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

static time_t skewed_clock(void)
{
    return time(NULL) + 1000;
}

static void test_message_time(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    gw_cmp_engine_set_clock(e->engine, skewed_clock);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badTime, "off the server clock");
    gw_cmp_engine_set_clock(e->engine, NULL);
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx)); /* twin: same client, right clock */
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* A byte-identical resend of a completed ir is a replay: transactionIdInUse, no second certificate. */
static void test_replay(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    unsigned char *out;
    size_t out_len = 0;
    char desc[4096];
    int http;

    (void)state;
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    out = exchange(e, cl.first_req, cl.first_req_len, &http, &out_len);
    assert_int_equal(http, 200);
    describe(out, out_len, desc, sizeof(desc));
    assert_non_null(strstr(desc, "replayed message"));
    assert_null(strstr(desc, "certificate:")); /* no certificate in it */
    OPENSSL_free(out);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Flips a byte of the certHash in a certConf and re-protects it with the client's own credentials. */
static OSSL_CMP_MSG *tamper_certhash(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    ASN1_OCTET_STRING *h;
    unsigned char *der = NULL, *hit;
    const unsigned char *p;
    OSSL_CMP_MSG *out;
    int len;

    (void)cl;
    if (OSSL_CMP_MSG_get_bodytype(req) != GW_CMP_BODY_CERTCONF)
        return req;
    h = X509_digest_sig(OSSL_CMP_CTX_get0_newCert(ctx), NULL, NULL);
    len = i2d_OSSL_CMP_MSG(req, &der);
    hit = memmem(der, (size_t)len, h->data, (size_t)h->length);
    assert_non_null(hit);
    hit[0] ^= 0x55;
    p = der;
    out = d2i_OSSL_CMP_MSG(NULL, &p, len);
    assert_int_equal(OSSL_CMP_MSG_update_transactionID(ctx, out), 1);
    ASN1_OCTET_STRING_free(h);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(req);
    return out;
}

static void test_certconf_wrong_hash(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e, .tamper = tamper_certhash};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertId,
                  "certHash does not match");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Re-protects the certConf with another sender's credentials (a PBM secret). */
static OSSL_CMP_MSG *tamper_sender(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)ctx;
    if (OSSL_CMP_MSG_get_bodytype(req) != GW_CMP_BODY_CERTCONF)
        return req;
    OSSL_CMP_CTX_set1_transactionID(cl->other,
                                    OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(req)));
    assert_int_equal(OSSL_CMP_MSG_update_transactionID(cl->other, req), 1);
    return req;
}

static void test_certconf_other_sender(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e, .tamper = tamper_sender}, dummy = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    cl.other = client_new(&dummy, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "another sender");
    /* the transaction is untouched: still open for its real sender, until it expires */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    gw_cmp_engine_expire(e->engine, time(NULL) + 301);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * A certConf from the transaction's sender name but signed by another (trusted) key must not close
 * the transaction: the engine checks it against the pinned signer before OpenSSL sees it.
 */
static void test_certconf_forged_signer(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client twin = {.env = e}, cl = {.env = e, .tamper = tamper_sender}, dummy = {.env = e};
    OSSL_CMP_CTX *tw = client_new(&twin, SIG, client_cert, client_key, NULL, NULL, 0);
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    X509 *twin_cert;

    (void)state;
    /* a certificate with the client's own subject but another key, issued by the gateway */
    assert_int_equal(OSSL_CMP_CTX_set1_subjectName(tw, X509_get_subject_name(client_cert)), 1);
    assert_non_null(twin_cert = OSSL_CMP_exec_IR_ses(tw));
    cl.other = client_new(&dummy, SIG, twin_cert, OSSL_CMP_CTX_get0_newPkey(tw, 1), NULL, NULL, 0);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                  "signer of this transaction");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1); /* still the real sender's */
    client_cleanup(&cl);
    client_cleanup(&twin);
    OSSL_CMP_CTX_free(ctx);
    OSSL_CMP_CTX_free(tw);
    env_free(e);
}

/* Caps: with confirmation disabled each ir stays open; the third is refused (per identity: 2). */
static void test_caps_and_expiry(void **state)
{
    struct env *e = env_new("\"transaction_ttl\": \"60s\", \"max_transactions_per_identity\": 2");
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_DISABLE_CONFIRM, 1);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 2);
    OSSL_CMP_CTX_reinit(ctx);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "too many open transactions for /O=cmpgw demo/CN=demo-client");
    gw_cmp_engine_expire(e->engine, time(NULL) + 30); /* not yet */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 2);
    gw_cmp_engine_expire(e->engine, time(NULL) + 61);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx)); /* room again */
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e); /* one left open: freed as abandoned */
}

static void test_body_not_allowed(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    STACK_OF(OSSL_CMP_ITAV) * itavs;

    (void)state;
    itavs = OSSL_CMP_exec_GENM_ses(ctx);
    assert_null(itavs);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "general messages are not supported yet");
    OSSL_CMP_CTX_reinit(ctx);
    OSSL_CMP_CTX_set1_oldCert(ctx, client_cert);
    assert_int_equal(OSSL_CMP_exec_RR_ses(ctx), 0);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "revocation is not supported yet");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* An answer fed back as a request: "ip is not a request". And a certConf with no transaction. */
static void test_ip_as_request(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    unsigned char *ip, *out;
    size_t ip_len = 0, out_len = 0;
    char desc[4096];
    int http;
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    /* resending the ir gets an ip (rejected as a replay): feed that ip back as a request */
    ip = exchange(e, cl.first_req, cl.first_req_len, &http, &ip_len);
    assert_int_equal(http, 200);
    out = exchange(e, ip, ip_len, &http, &out_len);
    assert_int_equal(http, 200);
    describe(out, out_len, desc, sizeof(desc));
    assert_non_null(strstr(desc, "PKIBody type ip is not a request"));
    OPENSSL_free(ip);
    OPENSSL_free(out);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

static void test_bad_der(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    unsigned char *buf;
    size_t n;
    int http;

    (void)state;
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    n = cl.first_req_len;
    buf = malloc(n + 1);
    memcpy(buf, cl.first_req, n);
    /* every truncation of a valid ir is an HTTP 400, never a crash or a CMP answer */
    for (size_t cut = 0; cut < n; cut += (cut < 16 ? 1 : 37)) {
        assert_null(exchange(e, buf, cut, &http, &(size_t){0}));
        assert_int_equal(http, 400);
    }
    buf[n] = 0; /* trailing byte */
    assert_null(exchange(e, buf, n + 1, &http, &(size_t){0}));
    assert_int_equal(http, 400);
    memset(buf, 0x30, n); /* garbage */
    assert_null(exchange(e, buf, n, &http, &(size_t){0}));
    assert_int_equal(http, 400);
    free(buf);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

#define CLIENT_THREADS 4
#define TXNS_PER_THREAD 10

struct par {
    struct env *env;
    int ok, pbm;
};

static void *par_client(void *arg)
{
    struct par *p = arg;

    for (int i = 0; i < TXNS_PER_THREAD; i++) {
        struct client cl = {.env = p->env, .new_thread = 1};
        OSSL_CMP_CTX *ctx = p->pbm
                                ? client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len)
                                : client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        X509 *c = (i % 2) ? OSSL_CMP_exec_CR_ses(ctx) : OSSL_CMP_exec_IR_ses(ctx);
        if (c != NULL && cl.exchanges == 2)
            p->ok++;
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
    }
    return NULL;
}

static void test_parallel(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    pthread_t th[CLIENT_THREADS];
    struct par p[CLIENT_THREADS];
    int total = 0;

    (void)state;
    for (int i = 0; i < CLIENT_THREADS; i++) {
        p[i] = (struct par){.env = e, .pbm = i % 2};
        assert_int_equal(pthread_create(&th[i], NULL, par_client, &p[i]), 0);
    }
    for (int i = 0; i < CLIENT_THREADS; i++) {
        pthread_join(th[i], NULL);
        total += p[i].ok;
    }
    assert_int_equal(total, CLIENT_THREADS * TXNS_PER_THREAD);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ir_signature_certconf),
        cmocka_unit_test(test_ir_pbm_cr_p10cr),
        cmocka_unit_test(test_implicit_confirm),
        cmocka_unit_test(test_kur),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_message_time),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_certconf_wrong_hash),
        cmocka_unit_test(test_certconf_other_sender),
        cmocka_unit_test(test_certconf_forged_signer),
        cmocka_unit_test(test_caps_and_expiry),
        cmocka_unit_test(test_body_not_allowed),
        cmocka_unit_test(test_ip_as_request),
        cmocka_unit_test(test_bad_der),
        cmocka_unit_test(test_parallel),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
