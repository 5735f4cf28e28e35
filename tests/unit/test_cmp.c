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

#include "tests/unit/testutil.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <json-c/json.h>

#include "gateway/cmp/audit.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/engine.h"
#include "gateway/cmp/engine_test.h"
#include "gateway/cmp/poll.h"
#include "gateway/cmp/policy.h"
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/shim.h"
#include "gateway/cmp/status.h"
#include "gateway/cmp/txn.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/metrics.h"
#include "gateway/config.h"
#include "mappings/route.h"
#include "upstream/upstream.h"
#include "upstream/upstream_int.h"
#include "upstream/upstream_test.h"

#define TEXT_UNTRUSTED                                                                                       \
    "message protection could not be verified: the signer certificate is not issued by a CA "                \
    "trusted on this route, or the signature does not match it"
#define TEXT_STALE_NONCE                                                                                     \
    "recipNonce does not match the senderNonce of this server's last message: answer the latest response"
/* revocation_not_kept where cmp.max_revoked is 1 */
#define TEXT_ONE_KEPT "this instance keeps 1 unexpired revocations already (cmp.max_revoked)"
/* key_reuse: a kur cites RFC 9483 §4.1.3, an ir, cr or p10cr (held to the kur's rule) no section */
#define TEXT_KEY_REUSE_TAIL                                                                                  \
    " must certify a new key: the requested public key is the one the signing certificate certifies; "       \
    "generate a new key pair and send its public key"
#define TEXT_KEY_REUSE "a key update (RFC 9483 §4.1.3)" TEXT_KEY_REUSE_TAIL
#define TEXT_KEY_REUSE_ISSUED(body)                                                                          \
    body " signed with a certificate a CA of this route issued" TEXT_KEY_REUSE_TAIL
#define TEXT_HERE_A_WHILE                                                                                    \
    "this instance refuses this certificate for twice its upstream's timeout plus 15 s, then only once its " \
    "CA's CRL lists it"
#define TEXT_ALL_A_WHILE                                                                                     \
    "this instance refuses this certificate for twice its upstream's timeout plus 15 s, the others at most " \
    "until the revocation's mark expires; then only once its CA's CRL lists it"
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
    X509 *tls;              /* TLS client certificate of the next request */
    const char *tls_client; /* its connection's description of it (gw_cmp_request.tls_client), or NULL */
    char audit_path[160];
    const char *gone; /* set: |route| is a path the running configuration lost (gw_cmp_request.gone) */
    /* Counts of answers, atomic as concurrent requests (job_run) add to them: those that count against
       the client's address (gw_cmp_response.auth_failed), those that were the HTTP 404 of |gone|, and
       those whose sender was authenticated (gw_cmp_response.authenticated), of them those with another
       credential than |credential| when it is set, and those whose sender passed every check
       (gw_cmp_response.proven). */
    atomic_int auth_failures, gone_answers, authenticated, other_credential, proven;
    const char *credential;
    /* The slow adapter (slow_put) of this engine's upstream, which borrows it: each engine has its own,
       as the calls of another (a second instance of a test, or a test before) may still be reading
       theirs while this one is written. */
    struct gw_upstream_ops slow_ops;
};

/* A config variant: the demo's, with these pieces inserted. */
struct env_opts {
    const char *cmp;         /* the "cmp" section's members */
    const char *role_extra;  /* members appended to the default role, e.g. "authorization": {...} */
    int deleg;               /* add a second local upstream "deleg" */
    int confirm;             /* the default role grants no implicitConfirm */
    const char *trust_extra; /* members put first into the demo trust entry, e.g. "crl_file": ... */
    const char *trust_entry; /* another trust entry ("name": {...}); the role trusts it too */
    int entry_first;         /* ... listed before "demo" in the role's "trust" */
    const char *upstream;    /* another upstream ("name": {...}) */
    const char *replace[8];  /* pairs: every replace[2i] of the configuration becomes replace[2i + 1] */
};

/* Per-client transfer state. */
struct client {
    struct env *env;
    OSSL_CMP_MSG *(*tamper)(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl);
    OSSL_CMP_CTX *other; /* tamper helper: a second sender */
    int exchanges;
    int new_thread;              /* process each exchange on a fresh thread */
    int stale_error;             /* that thread's error queue holds an error an earlier call left */
    X509 *tls_first, *tls_later; /* TLS client certificate of the first / later exchanges */
    unsigned char *first_req;
    size_t first_req_len;
    unsigned char *first_rsp; /* the gateway's answer to the first request (DER) */
    size_t first_rsp_len;
    unsigned char *held; /* tamper helper: the message it sent in place of this one (DER) */
    size_t held_len;
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

/* The log's level for |quiet|: everything with CMPGW_TEST_DEBUG set. */
static enum gw_log_level quiet_level(enum gw_log_level quiet)
{
    return getenv("CMPGW_TEST_DEBUG") != NULL ? GW_LOG_DEBUG : quiet;
}

/* The log from here on: |quiet| and above, everything with CMPGW_TEST_DEBUG set. */
static void log_level(enum gw_log_level quiet)
{
    gw_log_set_level(quiet_level(quiet));
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
    base_json = tu_widen_demo(slurp(path, NULL));
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
    log_level(GW_LOG_ERROR);
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

/* |json| with every |from| in it made |to| (|json| is freed). */
static char *replace_all(char *json, const char *from, const char *to)
{
    size_t from_len = strlen(from), to_len = strlen(to), off = 0;
    char *at, *out;

    while ((at = strstr(json + off, from)) != NULL) {
        size_t head = (size_t)(at - json), rest = strlen(at + from_len);

        assert_non_null(out = malloc(head + to_len + rest + 1));
        memcpy(out, json, head);
        memcpy(out + head, to, to_len);
        memcpy(out + head + to_len, at + from_len, rest + 1);
        free(json);
        json = out;
        off = head + to_len;
    }
    return json;
}

static char *env_json(const struct env_opts *o)
{
    char *json = strdup(base_json), piece[2048];

    for (size_t i = 0; i + 1 < sizeof(o->replace) / sizeof(o->replace[0]) && o->replace[i] != NULL; i += 2)
        json = replace_all(json, o->replace[i], o->replace[i + 1]);

    snprintf(piece, sizeof(piece), "\"cmp\": {%s},\n  ", o->cmp != NULL ? o->cmp : "");
    json = tu_insert_at(json, "\"default_path_policy\"", 0, piece);
    if (strstr(json, "\"audit\"") == NULL) /* the file is replaced per engine in env_parse */
        json = tu_insert_at(json, "\"default_path_policy\"", 0, "\"audit\": {\"file\": \"audit.log\"},\n  ");
    if (o->role_extra != NULL) {
        snprintf(piece, sizeof(piece), ",\n      %s", o->role_extra);
        json = tu_insert_at(json, "\"implicit_confirm\": true", 1, piece);
    }
    if (o->trust_extra != NULL)
        json = tu_insert_at(json, "\"ca_file\": \"ca.pem\", \"untrusted_file\"", 0, o->trust_extra);
    if (o->trust_entry != NULL) {
        snprintf(piece, sizeof(piece), "\n    %s,", o->trust_entry);
        json = tu_insert_at(json, "\"trust\": {", 1, piece);
        snprintf(piece, sizeof(piece), o->entry_first ? "\"%.*s\", " : ", \"%.*s\"",
                 (int)strcspn(o->trust_entry + 1, "\""), o->trust_entry + 1);
        json = o->entry_first ? tu_insert_at(json, "\"trust\": [", 1, piece)
                              : tu_insert_at(json, "\"trust\": [\"demo\"", 1, piece);
    }
    if (o->upstream != NULL) {
        snprintf(piece, sizeof(piece), "\n    %s,", o->upstream);
        json = tu_insert_at(json, "\"upstreams\": {", 1, piece);
    }
    if (o->deleg)
        json = tu_insert_at(json, "\"upstreams\": {", 1,
                            "\n    \"deleg\": { \"type\": \"local\", \"cert\": \"issuing.pem\", "
                            "\"key\": \"issuing.key\", \"chain\": \"ca.pem\" },");
    return json;
}

/* Parses the variant; the engine is started by env_start (tests may change the snapshot first). */
static struct env *env_parse(const struct env_opts *o)
{
    static int n;
    struct env *e = calloc(1, sizeof(*e));
    char err[GW_ERR_LEN] = "", *json = env_json(o);

    e->cfg = gw_config_parse(json, strlen(json), dir, "test.json", err);
    if (e->cfg == NULL)
        fail_msg("config: %s\n%s", err, json);
    free(json);
    /* each engine its own audit log, so that a test reads only its own records */
    snprintf(e->audit_path, sizeof(e->audit_path), "%s/audit-%d.log", dir, ++n);
    free(e->cfg->audit.file);
    e->cfg->audit.file = strdup(e->audit_path);
    if (o->confirm)
        ((struct gw_role *)e->cfg->default_path_policy.role)->implicit_confirm = false;
    return e;
}

/* An engine over |cfg|'s settings, as gateway/gen.c builds it (|prev|: the running one, at a reload). */
static struct gw_cmp_engine *engine_after(const struct gw_config *cfg, struct gw_upstream_set *ups,
                                          struct gw_cmp_engine *prev, char *err)
{
    struct gw_cmp_settings settings;

    gw_config_cmp_settings(cfg, &settings);
    return gw_cmp_engine_new(&settings, ups, prev, NULL, err);
}

static struct gw_cmp_engine *engine_new(const struct gw_config *cfg, struct gw_upstream_set *ups, char *err)
{
    return engine_after(cfg, ups, NULL, err);
}

static void env_start_after(struct env *e, struct gw_cmp_engine *prev)
{
    char err[GW_ERR_LEN] = "";

    if ((e->ups = gw_upstream_set_new(e->cfg->upstreams, e->cfg->n_upstreams, e->cfg->roles, e->cfg->n_roles,
                                      &e->cfg->upstream_signer, NULL, NULL, err)) == NULL)
        fail_msg("upstreams: %s", err);
    if ((e->engine = engine_after(e->cfg, e->ups, prev, err)) == NULL)
        fail_msg("engine: %s", err);
    e->route.kind = GW_ROUTE_DEFAULT;
    e->route.role = e->cfg->default_path_policy.role;
}

static void env_start(struct env *e)
{
    env_start_after(e, NULL);
}

static struct env *env_open(const struct env_opts *o)
{
    struct env *e = env_parse(o);

    env_start(e);
    return e;
}

/* The configuration |o| loaded by a reload while |prev| runs: its engine shares |prev|'s transactions. */
static struct env *env_reload(const struct env *prev, const struct env_opts *o)
{
    struct env *e = env_parse(o);

    env_start_after(e, prev->engine);
    return e;
}

static struct env *env_new(const char *cmp)
{
    return env_open(&(struct env_opts){.cmp = cmp});
}

static void env_free(struct env *e)
{
    gw_cmp_engine_free(e->engine);
    gw_upstream_set_free(e->ups);
    gw_config_free(e->cfg);
    free(e);
}

/*
 * Every PBM key derived while the engine processes a request (exchange), and the sum of their
 * iterationCounts: OpenSSL's, to verify a message under a known reference (the message's PBMParameter)
 * and to MAC the error it builds when that fails (its context's own), and the gateway's, for a message
 * under a reference it refuses (cmp_pbm_spend). Interposed on libcrypto's own symbol, as
 * ASN1_item_sign_ex is.
 */
static _Thread_local int engine_busy;

/* The NID of an AlgorithmIdentifier held in |t| (a SEQUENCE), or NID_undef. */
static int owf_of(const ASN1_TYPE *t)
{
    const unsigned char *p = t->value.sequence->data;
    X509_ALGOR *alg = d2i_X509_ALGOR(NULL, &p, t->value.sequence->length);
    const ASN1_OBJECT *obj = NULL;
    int nid;

    if (alg != NULL)
        X509_ALGOR_get0(&obj, NULL, NULL, alg);
    nid = obj != NULL ? OBJ_obj2nid(obj) : NID_undef;
    X509_ALGOR_free(alg);
    return nid;
}
static struct {
    int keys;
    long iterations;
    int owf[4]; /* of the first four keys, in order */
} pbm_work;

int OSSL_CRMF_pbm_new(OSSL_LIB_CTX *libctx, const char *propq, const OSSL_CRMF_PBMPARAMETER *pbmp,
                      const unsigned char *msg, size_t msglen, const unsigned char *sec, size_t seclen,
                      unsigned char **mac, size_t *maclen)
{
    static int (*real)(OSSL_LIB_CTX *, const char *, const OSSL_CRMF_PBMPARAMETER *, const unsigned char *,
                       size_t, const unsigned char *, size_t, unsigned char **, size_t *);
    unsigned char *der = NULL;
    const unsigned char *p;
    STACK_OF(ASN1_TYPE) *seq = NULL;
    int len;

    if (engine_busy && (len = i2d_OSSL_CRMF_PBMPARAMETER(pbmp, &der)) > 0) {
        p = der; /* PBMParameter (RFC 4211 §4.4): salt, owf, iterationCount, mac */
        seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, len);
        if (pbm_work.keys < 4 && seq != NULL && sk_ASN1_TYPE_num(seq) == 4 &&
            sk_ASN1_TYPE_value(seq, 1)->type == V_ASN1_SEQUENCE)
            pbm_work.owf[pbm_work.keys] = owf_of(sk_ASN1_TYPE_value(seq, 1));
        pbm_work.keys++;
        pbm_work.iterations +=
            seq != NULL && sk_ASN1_TYPE_num(seq) == 4 && sk_ASN1_TYPE_value(seq, 2)->type == V_ASN1_INTEGER
                ? ASN1_INTEGER_get(sk_ASN1_TYPE_value(seq, 2)->value.integer)
                : -1000000;
        sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    }
    OPENSSL_free(der);
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "OSSL_CRMF_pbm_new");
    return real(libctx, propq, pbmp, msg, msglen, sec, seclen, mac, maclen);
}

/* Runs one request through the engine; returns the response DER (caller frees) and the HTTP status. */
static unsigned char *exchange(struct env *e, const unsigned char *der, size_t len, int *http,
                               size_t *out_len)
{
    struct gw_cmp_response rsp;
    unsigned char *out = NULL;

    gw_cmp_response_init(&rsp);
    engine_busy = 1;
    gw_cmp_process(e->engine,
                   &(struct gw_cmp_request){.der = der,
                                            .len = len,
                                            .route = &e->route,
                                            .tls_peer = e->tls,
                                            .tls_client = e->tls_client,
                                            .gone = e->gone},
                   &rsp);
    engine_busy = 0;
    *http = rsp.http_status;
    e->auth_failures += rsp.auth_failed;
    e->authenticated += rsp.authenticated;
    e->proven += rsp.proven;
    assert_true(!rsp.proven || rsp.authenticated);
    e->other_credential +=
        rsp.authenticated && e->credential != NULL && strcmp(rsp.credential, e->credential) != 0;
    e->gone_answers += e->gone != NULL && rsp.http_status == 404 && strcmp(rsp.http_reason, e->gone) == 0;
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
    int stale_error;
};

static void *job_run(void *arg)
{
    struct job *j = arg;

    if (j->stale_error)
        ERR_raise(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE);
    j->out = exchange(j->env, j->der, j->len, &j->http, &j->out_len);
    return NULL;
}

static OSSL_CMP_MSG *transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    struct client *cl = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    OSSL_CMP_MSG *sent = OSSL_CMP_MSG_dup(req), *rsp = NULL;
    struct job j = {0};
    const unsigned char *p;
    pthread_t th;
    int len;

    if (cl->tamper != NULL)
        sent = cl->tamper(ctx, sent, cl);
    j.env = cl->env; /* a tamper may send the message to another engine */
    if ((len = i2d_OSSL_CMP_MSG(sent, &j.der)) <= 0)
        goto out;
    j.len = (size_t)len;
    if (cl->tls_first != NULL)
        cl->env->tls = cl->exchanges == 0 || cl->tls_later == NULL ? cl->tls_first : cl->tls_later;
    if (cl->exchanges++ == 0) {
        cl->first_req = OPENSSL_memdup(j.der, j.len);
        cl->first_req_len = j.len;
    }
    j.stale_error = cl->stale_error;
    if (cl->new_thread) { /* the gateway's worker pool: any message of a transaction on any thread */
        pthread_create(&th, NULL, job_run, &j);
        pthread_join(th, NULL);
    } else {
        job_run(&j);
    }
    p = j.out;
    if (j.http == 200 && cl->first_rsp == NULL) {
        cl->first_rsp = OPENSSL_memdup(j.out, j.out_len);
        cl->first_rsp_len = j.out_len;
    }
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
    OPENSSL_free(cl->first_rsp);
    OPENSSL_free(cl->held);
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

/* Sends |cl|'s first request again, byte for byte: the answer (HTTP 200) described into |desc|. */
static void resend_first(struct env *e, const struct client *cl, char *desc, size_t cap)
{
    size_t len = 0;
    int http;
    unsigned char *out = exchange(e, cl->first_req, cl->first_req_len, &http, &len);

    assert_int_equal(http, 200);
    describe(out, len, desc, cap);
    OPENSSL_free(out);
}

static void test_ir_signature_certconf(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char signer[GW_TLS_CLIENT_LEN];
    X509 *cert;

    (void)state;
    assert_int_equal(gw_cmp_tls_client(client_cert, signer), 0);
    e->credential = signer; /* its request lines are paced by the certificate that signed */
    cert = OSSL_CMP_exec_IR_ses(ctx);
    assert_non_null(cert);
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(cl.exchanges, 2); /* ir + certConf */
    assert_int_equal(e->authenticated, 2);
    assert_int_equal(e->proven, 2);
    assert_int_equal(e->other_credential, 0);
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
    e->credential = "pbm:demo-device"; /* its request lines are paced by its reference */
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
    assert_int_equal(e->authenticated, 6);
    assert_int_equal(e->other_credential, 0);
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
    int off_role; /* the role's "pbm" list is empty: the reference exists but the role does not accept it */
    int fail_bit;
    const char *text;
    int pbm_refused; /* refused for its PBM reference or secret: it cost what a wrong secret costs */
};

/*
 * Each refusal with its failInfo and text, and the PBM work it cost the engine. A message under a
 * reference that does not exist, or one the role does not accept, costs what one under an accepted
 * reference with a wrong secret costs, so that the time of the answer tells no more than its text which
 * references exist: OpenSSL derives the message's key (its owf, SHA-512 here, and iterationCount, 500 from
 * OpenSSL's client) and, for the error it builds, a key with its context's parameters (owf SHA-256, 500
 * iterations), whose MAC'ed error the engine throws away for a signed refusal. One over the iteration cap
 * costs none.
 */
static void test_refusals(void **state)
{
    static const struct refusal_case cases[] = {
        {"untrusted signer", CMP_DEFAULTS, SIG, 1, NULL, 0, 0, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
         TEXT_UNTRUSTED, 0},
        {"wrong PBM secret", CMP_DEFAULTS, PBM, 0, "demo-device", 1, 0,
         OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "PBM protection could not be verified", 1},
        {"unknown PBM reference", CMP_DEFAULTS, PBM, 0, "nobody", 0, 0,
         OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "PBM protection could not be verified", 1},
        {"PBM reference the role does not accept", CMP_DEFAULTS, PBM, 0, "demo-device", 0, 1,
         OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "PBM protection could not be verified", 1},
        {"PBM iterations over the cap", CMP_DEFAULTS ", \"pbm_max_iterations\": 200", PBM, 0, "demo-device",
         0, 0, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "cap of 200", 0},
    };
    static const unsigned char wrong[] = "0123456789abcdef0123456789abcdef";

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct refusal_case *rc = &cases[i];
        struct env *e = env_open(&(struct env_opts){
            .cmp = rc->cmp, .replace = {rc->off_role ? "\"pbm\": [\"demo-device\"]," : NULL, ""}});
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx =
            rc->prot == SIG ? client_new(&cl, SIG, rc->rogue ? rogue_cert : client_cert,
                                         rc->rogue ? rogue_key : client_key, NULL, NULL, 0)
                            : client_new(&cl, PBM, NULL, NULL, rc->ref, rc->wrong_secret ? wrong : pbm_secret,
                                         rc->wrong_secret ? sizeof(wrong) - 1 : pbm_secret_len);

        print_message("case: %s\n", rc->name);
        assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_OWF_ALGNID, NID_sha512), 1);
        memset(&pbm_work, 0, sizeof(pbm_work));
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, rc->fail_bit, rc->text);
        assert_int_equal(pbm_work.keys, rc->pbm_refused ? 2 : 0);
        if (rc->pbm_refused) {
            assert_int_equal(pbm_work.iterations, 500 + 500);
            assert_int_equal(pbm_work.owf[0], NID_sha512); /* the message's */
            assert_int_equal(pbm_work.owf[1], NID_sha256); /* the error's, as OpenSSL's context MACs it */
        }
        assert_int_equal(e->authenticated, 0);
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
    assert_int_equal(e->authenticated, 1); /* refused once its signature verified */
    assert_int_equal(e->proven, 0);        /* ... which proves nothing: its connection is not kept for it */
    gw_cmp_engine_set_clock(e->engine, NULL);
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx)); /* twin: same client, right clock */
    assert_int_equal(e->proven, 2);             /* its ir and certConf */
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
    char desc[4096];

    (void)state;
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(e->proven, 2);
    resend_first(e, &cl, desc, sizeof(desc));
    assert_non_null(strstr(desc, "replayed message"));
    assert_null(strstr(desc, "certificate:")); /* no certificate in it */
    assert_int_equal(e->authenticated, 3);     /* the replay's protection verifies ... */
    assert_int_equal(e->proven, 2);            /* ... and proves nothing */
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * A certConf with a byte XORed with |mask|, re-protected with the client's own credentials: the first
 * byte of its certHash, or (|req_id|) the value of the certReqId that follows it (INTEGER 0).
 */
static OSSL_CMP_MSG *tamper_certconf(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, int req_id, unsigned char mask)
{
    ASN1_OCTET_STRING *h;
    unsigned char *der = NULL, *hit;
    const unsigned char *p;
    OSSL_CMP_MSG *out;
    int len;

    if (OSSL_CMP_MSG_get_bodytype(req) != GW_CMP_BODY_CERTCONF)
        return req;
    h = X509_digest_sig(OSSL_CMP_CTX_get0_newCert(ctx), NULL, NULL);
    len = i2d_OSSL_CMP_MSG(req, &der);
    hit = memmem(der, (size_t)len, h->data, (size_t)h->length);
    assert_non_null(hit);
    if (req_id) {
        hit += h->length;
        assert_memory_equal(hit, "\x02\x01\x00", 3);
        hit += 2;
    }
    hit[0] ^= mask;
    p = der;
    out = d2i_OSSL_CMP_MSG(NULL, &p, len);
    assert_int_equal(OSSL_CMP_MSG_update_transactionID(ctx, out), 1);
    ASN1_OCTET_STRING_free(h);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(req);
    return out;
}

/* A certConf naming another certificate: a byte of its certHash flipped. */
static OSSL_CMP_MSG *tamper_certhash(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)cl;
    return tamper_certconf(ctx, req, 0, 0x55);
}

/* A certConf of certReqId 1. */
static OSSL_CMP_MSG *tamper_certreqid(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)cl;
    return tamper_certconf(ctx, req, 1, 0x01);
}

/* An ir whose certConf |tamper| changes: refused with |fail_bit| and |text|, |open| transactions left;
   |authenticated|: the certConf's sender was (its protection verified), besides the ir's. */
static void certconf_refused(OSSL_CMP_MSG *(*tamper)(OSSL_CMP_CTX *, OSSL_CMP_MSG *, struct client *),
                             int fail_bit, const char *text, int open, int authenticated)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e, .tamper = tamper};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, fail_bit, text);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), open);
    assert_int_equal(e->authenticated, 1 + authenticated);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

static void test_certconf_wrong_hash(void **state)
{
    (void)state;
    certconf_refused(tamper_certhash, OSSL_CMP_PKIFAILUREINFO_badCertId, "certHash does not match", 0, 1);
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
    assert_int_equal(e->authenticated, 1); /* the ir; the certConf was refused before its MAC was checked */
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
    assert_int_equal(e->authenticated, 3); /* the twin's ir and certConf, the ir; not the forged certConf */
    client_cleanup(&cl);
    client_cleanup(&twin);
    OSSL_CMP_CTX_free(ctx);
    OSSL_CMP_CTX_free(tw);
    env_free(e);
}

/* Sends the certConf without protection (the client's own context, told so for this message). */
static OSSL_CMP_MSG *tamper_unprotected(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)cl;
    if (OSSL_CMP_MSG_get_bodytype(req) != GW_CMP_BODY_CERTCONF)
        return req;
    assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_UNPROTECTED_SEND, 1), 1);
    assert_int_equal(OSSL_CMP_MSG_update_transactionID(ctx, req), 1);
    assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_UNPROTECTED_SEND, 0), 1);
    return req;
}

/*
 * An unprotected certConf is refused and leaves the transaction open: OpenSSL runs a certConf whose
 * signature the engine verified as if unprotected (cmp_process), so none may get there unverified.
 */
static void test_certconf_unprotected(void **state)
{
    (void)state;
    /* the transaction is still the real sender's */
    certconf_refused(tamper_unprotected, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "message is not protected",
                     1, 0);
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
    STACK_OF(OSSL_CMP_ITAV) *itavs;

    (void)state;
    itavs = OSSL_CMP_exec_GENM_ses(ctx);
    assert_null(itavs);
    /* rr and genm are served (tests/unit/test_rrgenm.c); an empty genm and a foreign rr are refused */
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "a genm must ask for 1 to 8 infoTypes");
    OSSL_CMP_CTX_reinit(ctx);
    OSSL_CMP_CTX_set1_oldCert(ctx, client_cert);
    assert_int_equal(OSSL_CMP_exec_RR_ses(ctx), 0);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertId,
                  "not issued by this route's CA");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * An answer fed back as a request: "ip is not a request", refused before its sender is known and
 * counted against its address as a failed authentication; the replayed ir it answered, refused after
 * its signature verified, is not.
 */
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
    assert_int_equal(e->auth_failures, 0);
    assert_int_equal(e->authenticated, 2);
    out = exchange(e, ip, ip_len, &http, &out_len);
    assert_int_equal(http, 200);
    describe(out, out_len, desc, sizeof(desc));
    assert_non_null(strstr(desc, "PKIBody type ip is not a request"));
    assert_int_equal(e->auth_failures, 1);
    assert_int_equal(e->authenticated, 2);
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
    int http, refused = 0;

    (void)state;
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(e->auth_failures, 0);
    n = cl.first_req_len;
    buf = malloc(n + 1);
    memcpy(buf, cl.first_req, n);
    /* every truncation of a valid ir is an HTTP 400, never a crash or a CMP answer; each counts against
       its address as a failed authentication (an empty body is refused before the engine: http.c) */
    for (size_t cut = 0; cut < n; cut += (cut < 16 ? 1 : 37), refused++) {
        assert_null(exchange(e, buf, cut, &http, &(size_t){0}));
        assert_int_equal(http, 400);
    }
    buf[n] = 0; /* trailing byte */
    assert_null(exchange(e, buf, n + 1, &http, &(size_t){0}));
    assert_int_equal(http, 400);
    memset(buf, 0x30, n); /* garbage */
    assert_null(exchange(e, buf, n, &http, &(size_t){0}));
    assert_int_equal(http, 400);
    assert_int_equal(e->auth_failures, refused + 2);
    assert_int_equal(e->authenticated, 1); /* the ir alone */
    free(buf);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* A body over GW_MAX_CMP_BODY is a 413 with docs/errors.md's text (http_too_large), libh2o's own. */
static void test_too_large(void **state)
{
    size_t n = GW_MAX_CMP_BODY + 1;
    unsigned char *buf = calloc(1, n);
    struct gw_cmp_response rsp;

    (void)state;
    assert_non_null(buf);
    buf[0] = 0x30;
    gw_cmp_response_init(&rsp);
    assert_null(gw_cmp_decode(&(struct gw_cmp_request){.der = buf, .len = n}, &rsp, &(int){0}, &(int){0}));
    assert_int_equal(rsp.http_status, 413);
    assert_string_equal(rsp.http_reason, "request entity is too large");
    gw_cmp_response_cleanup(&rsp);
    /* its twin at the limit is read, and refused as what it is: not DER */
    gw_cmp_response_init(&rsp);
    assert_null(
        gw_cmp_decode(&(struct gw_cmp_request){.der = buf, .len = n - 1}, &rsp, &(int){0}, &(int){0}));
    assert_int_equal(rsp.http_status, 400);
    gw_cmp_response_cleanup(&rsp);
    free(buf);
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

/* ---- authorization, request policy, upstream choice, result checks, audit ---- */

/* The test adapter: the local issuer with switchable capabilities and misbehaviour. */
enum fake_mode { FK_PLAIN = 0, FK_OTHER_KEY, FK_RENAME, FK_CA_TRUE, FK_OTHER_CA, FK_WIDE, FK_EARLIER };

static struct {
    enum fake_mode mode;
    int revoked;                  /* cert_status answer */
    int policy_fails;             /* role_policy fails */
    int policy_hangs;             /* role_policy waits for hang_release (or HANG_MS), then times out */
    unsigned grant_ku, grant_eku; /* what role_policy says the upstream role grants */
    const char *org;              /* the upstream role's organization, which its subject carries */
    int revoke_fails;             /* revoke fails */
    int sign_calls, csr_calls, revoke_calls, policy_calls, status_calls, crl_calls;
    const unsigned char *crl; /* what crl serves (DER, borrowed) */
    size_t crl_len;
    struct env *env; /* for during_sign */
    void (*during_sign)(struct env *e);
    int break_signing;   /* once the certificate is signed, OpenSSL's answer cannot be protected */
    int refuse_answer;   /* the adapter refuses the answer but hands its certificate up (upstream.h) */
    int taken_back;      /* and says the CA confirmed its rejection in the certConf (rejected_to_ca) */
    const char *refusal; /* the adapter's reason for an answer without a certificate */
    const char *domain;  /* the upstream role's allowed_domains entry; NULL: "example.com" */
    void (*during_revoke)(void); /* called as the test CA revokes */
    int revoked_first; /* the certificate's issuer and serial are revoked through the gateway before it
                          is handed up: a CA issuing the serial of a revoked certificate again */
    const ASN1_INTEGER *serial; /* the certificate gets this serial (borrowed): a CA issuing one again */
    const X509 *again;          /* handed up in place of the certificate (borrowed): the same one twice */
} fake;

/*
 * While set, every signature libcrypto makes off the thread |signing_thread| (the client's) fails:
 * the gateway's OpenSSL cannot protect its answer. Interposed on libcrypto's own symbol, so that
 * OSSL_CMP_SRV_process_request fails exactly where it protects the ip it built around a certificate
 * the cert-request callback accepted.
 */
static int signing_fails;
static pthread_t signing_thread;

int ASN1_item_sign_ex(const ASN1_ITEM *it, X509_ALGOR *algor1, X509_ALGOR *algor2, ASN1_BIT_STRING *signature,
                      const void *data, const ASN1_OCTET_STRING *id, EVP_PKEY *pkey, const EVP_MD *md,
                      OSSL_LIB_CTX *libctx, const char *propq)
{
    static int (*real)(const ASN1_ITEM *, X509_ALGOR *, X509_ALGOR *, ASN1_BIT_STRING *, const void *,
                       const ASN1_OCTET_STRING *, EVP_PKEY *, const EVP_MD *, OSSL_LIB_CTX *, const char *);

    if (__atomic_load_n(&signing_fails, __ATOMIC_SEQ_CST) && !pthread_equal(pthread_self(), signing_thread))
        return 0;
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "ASN1_item_sign_ex");
    return real(it, algor1, algor2, signature, data, id, pkey, md, libctx, propq);
}

static void break_signing(int on)
{
    signing_thread = pthread_self();
    __atomic_store_n(&signing_fails, on, __ATOMIC_SEQ_CST);
}

static struct gw_upstream_ops fake_ops;

struct fake_call {
    struct gw_upstream *up;
    gw_upstream_done_fn done;
    void *arg;
};

static void fake_done(void *arg, struct gw_sign_result *res)
{
    struct fake_call *fc = arg;
    BASIC_CONSTRAINTS *bc;

    if (res->cert != NULL && fake.mode == FK_CA_TRUE) {
        bc = BASIC_CONSTRAINTS_new();
        bc->ca = 1;
        X509_add1_ext_i2d(res->cert, NID_basic_constraints, bc, 1, X509V3_ADD_REPLACE);
        BASIC_CONSTRAINTS_free(bc);
        assert_true(X509_sign(res->cert,
                              ((const struct gw_local_conf *)gw_upstream_get0_conf(fc->up)->impl)->key,
                              EVP_sha256()) > 0);
    } else if (res->cert != NULL && fake.mode == FK_WIDE) {
        /* a CA role that grants more than the gateway's role: code signing on top */
        EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();

        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth));
        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_code_sign));
        X509_add1_ext_i2d(res->cert, NID_ext_key_usage, eku, 0, X509V3_ADD_REPLACE);
        sk_ASN1_OBJECT_free(eku);
        assert_true(X509_sign(res->cert,
                              ((const struct gw_local_conf *)gw_upstream_get0_conf(fc->up)->impl)->key,
                              EVP_sha256()) > 0);
    } else if (res->cert != NULL && fake.mode == FK_EARLIER) {
        /* the requested key's certificate of a month ago, still valid: the holder's earlier one */
        X509_gmtime_adj(X509_getm_notBefore(res->cert), -30 * 86400);
        assert_true(X509_sign(res->cert,
                              ((const struct gw_local_conf *)gw_upstream_get0_conf(fc->up)->impl)->key,
                              EVP_sha256()) > 0);
    } else if (res->cert != NULL && fake.mode == FK_OTHER_CA) {
        X509_set_issuer_name(res->cert, X509_get_subject_name(rogue_cert));
        assert_true(X509_sign(res->cert, rogue_key, EVP_sha256()) > 0);
    }
    if (res->cert != NULL && fake.serial != NULL) {
        assert_int_equal(X509_set_serialNumber(res->cert, (ASN1_INTEGER *)fake.serial), 1);
        assert_true(X509_sign(res->cert,
                              ((const struct gw_local_conf *)gw_upstream_get0_conf(fc->up)->impl)->key,
                              EVP_sha256()) > 0);
    }
    if (res->cert != NULL && fake.again != NULL) {
        X509_free(res->cert);
        assert_non_null(res->cert = X509_dup(fake.again));
    }
    if (res->cert != NULL && fake.revoked_first) {
        char err[GW_ERR_LEN] = "";

        assert_int_equal(cmp_revoked_add(fake.env->engine, res->cert, time(NULL), err), 0);
    }
    if (fake.refusal != NULL) {
        X509_free(res->cert);
        res->cert = NULL;
        res->status = -12; /* GW_ERR_UPSTREAM */
        res->fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
        snprintf(res->reason, sizeof(res->reason), "%s", fake.refusal);
    }
    if (res->cert != NULL && fake.refuse_answer) {
        res->status = -12; /* GW_ERR_UPSTREAM */
        res->fail_info = OSSL_CMP_PKIFAILUREINFO_systemFailure;
        snprintf(res->reason, sizeof(res->reason), "the test CA's answer has a field out of range");
        res->rejected_to_ca = fake.taken_back;
    }
    fc->done(fc->arg, res);
}

/* |plan| (a shallow copy) for a new key in place of the requested one: the key, for the caller to free. */
static EVP_PKEY *plan_other_key(struct gw_cert_plan *plan)
{
    plan->pubkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    plan->spki = NULL; /* the request's, which the issuer would copy */
    return plan->pubkey;
}

static int fake_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                     void *arg)
{
    struct gw_cert_plan plan = *req->plan; /* shallow: the local issuer only reads it */
    struct gw_sign_req r = *req;
    struct fake_call fc = {up, done, arg};
    X509_NAME *name = NULL;
    EVP_PKEY *other = NULL;
    int rc;

    fake.sign_calls++;
    fake.csr_calls += req->csr != NULL;
    if (fake.mode == FK_OTHER_KEY)
        other = plan_other_key(&plan);
    if (fake.mode == FK_RENAME) {
        name = X509_NAME_new();
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"renamed-device", -1, -1,
                                   0);
        plan.subject = name;
    }
    if (fake.during_sign != NULL)
        fake.during_sign(fake.env);
    r.plan = &plan;
    rc = gw_upstream_local_ops.sign(up, &r, fake_done, &fc); /* completes before it returns */
    if (fake.break_signing)
        __atomic_store_n(&signing_fails, 1, __ATOMIC_SEQ_CST);
    X509_NAME_free(name);
    EVP_PKEY_free(other);
    return rc;
}

static int fake_revoke(struct gw_upstream *up, const X509 *cert, int reason, const _Atomic uint64_t *end,
                       int *fail_info, int *not_sent, char *err)
{
    (void)up, (void)cert, (void)reason, (void)end, (void)fail_info, (void)not_sent;
    fake.revoke_calls++;
    if (fake.during_revoke != NULL)
        fake.during_revoke();
    if (!fake.revoke_fails)
        return 0;
    snprintf(err, GW_ERR_LEN, "the test CA refuses to revoke");
    return -12;
}

#define HANG_MS 2000 /* the timeout of a read of a role that does not answer */

/* A role read that does not answer: how many began (entered), and whether the test let them end. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int entered, released;
} hang = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

/* A read of a hung role: it waits to be released, HANG_MS at most (its timeout). */
static void hang_wait(void)
{
    struct timespec until;

    until = tu_deadline(HANG_MS / 1000);
    pthread_mutex_lock(&hang.lock);
    hang.entered++;
    pthread_cond_broadcast(&hang.cond);
    while (!hang.released && tu_wait_until(&hang.cond, &hang.lock, &until) == 0)
        ;
    pthread_mutex_unlock(&hang.lock);
}

/* Waits until |n| reads have begun hanging. */
static void hang_entered(int n)
{
    pthread_mutex_lock(&hang.lock);
    while (hang.entered < n)
        pthread_cond_wait(&hang.cond, &hang.lock);
    pthread_mutex_unlock(&hang.lock);
}

static void hang_release(void)
{
    pthread_mutex_lock(&hang.lock);
    hang.released = 1;
    pthread_cond_broadcast(&hang.cond);
    pthread_mutex_unlock(&hang.lock);
}

static int fake_role_policy(struct gw_upstream *up, const char *role, struct gw_role_policy *out, char *err)
{
    (void)up, (void)role;
    fake.policy_calls++;
    if (fake.policy_hangs) {
        hang_wait();
        snprintf(err, GW_ERR_LEN, "the test CA did not answer in time");
        return GW_ERR_TIMEOUT;
    }
    if (fake.policy_fails) {
        snprintf(err, GW_ERR_LEN, "the test CA is sealed");
        return -12;
    }
    memset(out, 0, sizeof(*out));
    out->allowed_domains.v = calloc(1, sizeof(char *));
    out->allowed_domains.v[0] = strdup(fake.domain != NULL ? fake.domain : "example.com");
    out->allowed_domains.n = 1;
    out->allow_subdomains = true;
    snprintf(out->key_type, sizeof(out->key_type), "any");
    out->key_usage = fake.grant_ku;
    out->ext_key_usage = fake.grant_eku;
    for (size_t a = 0; fake.org != NULL && a < GW_UPSTREAM_SUBJECT_ATTRS; a++) {
        if (strcmp(gw_upstream_subject_attrs[a].key, "organization") == 0) {
            out->subject_values[a].v = calloc(1, sizeof(char *));
            out->subject_values[a].v[0] = strdup(fake.org);
            out->subject_values[a].n = 1;
        }
    }
    return 0;
}

static int fake_cert_status(struct gw_upstream *up, const X509 *cert, int *revoked, char *err)
{
    (void)up, (void)cert, (void)err;
    fake.status_calls++;
    *revoked = fake.revoked;
    return 0;
}

static int fake_crl(struct gw_upstream *up, const char *issuer_ref, unsigned char **der, size_t *len,
                    char *err)
{
    (void)up, (void)issuer_ref;
    fake.crl_calls++;
    if (fake.crl == NULL) {
        snprintf(err, GW_ERR_LEN, "the test CA serves no CRL");
        return -12;
    }
    *der = malloc(fake.crl_len);
    memcpy(*der, fake.crl, fake.crl_len);
    *len = fake.crl_len;
    return 0;
}

/* Replaces the "local" upstream of |e| (same configuration) with the test adapter of |caps|. */
static void env_fake(struct env *e, unsigned caps, enum fake_mode mode)
{
    char err[GW_ERR_LEN] = "";
    const struct gw_upstream_conf *uc = NULL;
    struct gw_upstream *up;

    memset(&fake, 0, sizeof(fake));
    fake.mode = mode;
    fake.env = e;
    fake_ops = gw_upstream_local_ops;
    fake_ops.dialect = "fake";
    fake_ops.caps = caps;
    fake_ops.sign = fake_sign;
    fake_ops.revoke = fake_revoke;
    fake_ops.role_policy = fake_role_policy;
    fake_ops.cert_status = fake_cert_status;
    fake_ops.crl = fake_crl;
    for (size_t i = 0; i < e->cfg->n_upstreams; i++)
        if (strcmp(e->cfg->upstreams[i].name, "local") == 0)
            uc = &e->cfg->upstreams[i];
    assert_non_null(uc);
    assert_non_null(up = gw_upstream_new_ops(uc, &fake_ops, NULL, err));
    assert_int_equal(gw_upstream_set_put0(e->ups, up), 0);
}

/* The audit records of |e| with |event| (and |serial| if not NULL); |field|=|value| if not NULL. */
/* The revocations the test CA was asked for, once those queued under |e| have ended. */
static int revoke_calls(const struct env *e)
{
    gw_cmp_engine_settle_withdrawals(e->engine);
    return fake.revoke_calls;
}

/* audit_count without waiting for the revocations queued under |e|. */
static int audit_count_now(const struct env *e, const char *event, const char *serial, const char *field,
                           const char *value)
{
    FILE *f;
    char line[16384];
    int n = 0;

    if ((f = fopen(e->audit_path, "r")) == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        struct json_object *o = json_tokener_parse(line), *v;

        if (o == NULL)
            fail_msg("audit line is not JSON: %s", line);
        if (json_object_object_get_ex(o, "event", &v) && strcmp(json_object_get_string(v), event) == 0 &&
            (serial == NULL || (json_object_object_get_ex(o, "serial", &v) &&
                                strcmp(json_object_get_string(v), serial) == 0)) &&
            (field == NULL ||
             (json_object_object_get_ex(o, field, &v) && strstr(json_object_get_string(v), value) != NULL)))
            n++;
        json_object_put(o);
    }
    fclose(f);
    return n;
}

static int audit_count(const struct env *e, const char *event, const char *serial, const char *field,
                       const char *value)
{
    gw_cmp_engine_settle_withdrawals(e->engine); /* revocations run on the engine's own thread */
    return audit_count_now(e, event, serial, field, value);
}

static time_t ahead_secs; /* how far ahead_clock runs */

static time_t ahead_clock(void)
{
    return time(NULL) + ahead_secs;
}

/* Moves the engine's clock |ahead_secs| on just before the certConf is sent. */
static OSSL_CMP_MSG *tamper_late_conf(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)ctx;
    if (OSSL_CMP_MSG_get_bodytype(req) == GW_CMP_BODY_CERTCONF)
        gw_cmp_engine_set_clock(cl->env->engine, ahead_clock);
    return req;
}

/*
 * A certConf that comes after its transaction's TTL, before the expiry sweep (once a second) closed the
 * transaction, finds it closed all the same: "no open transaction", the certificate on record as
 * expired_unconfirmed (it stays valid), as the sweep would have left it. Twin: within the TTL it confirms.
 */
static void test_certconf_after_ttl(void **state)
{
    static const struct {
        time_t ahead;
        bool expired;
    } cases[] = {{11, true}, {5, false}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_new("\"transaction_ttl\": \"10s\"");
        struct client cl = {.env = e, .tamper = tamper_late_conf};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        X509 *cert;

        ahead_secs = cases[i].ahead;
        cert = OSSL_CMP_exec_IR_ses(ctx);
        if (cases[i].expired) {
            assert_null(cert);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "no open transaction with this transactionID");
            assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 1);
            assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 0);
        } else {
            assert_non_null(cert);
            assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 1);
            assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 0);
        }
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 0); /* valid either way */
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/* The serial of the first record of |e| with |event|: 0, or -1 if there is none. */
static int audit_serial(const struct env *e, const char *event, char *out, size_t cap)
{
    FILE *f;
    char line[16384];
    int rc = -1;

    gw_cmp_engine_settle_withdrawals(e->engine);
    f = fopen(e->audit_path, "r");
    while (f != NULL && rc != 0 && fgets(line, sizeof(line), f) != NULL) {
        struct json_object *o = json_tokener_parse(line), *v, *sn;

        if (o != NULL && json_object_object_get_ex(o, "event", &v) &&
            strcmp(json_object_get_string(v), event) == 0 && json_object_object_get_ex(o, "serial", &sn)) {
            snprintf(out, cap, "%s", json_object_get_string(sn));
            rc = 0;
        }
        json_object_put(o);
    }
    if (f != NULL)
        fclose(f);
    return rc;
}

static void serial_of(const X509 *x, char *out, size_t cap)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = BN_bn2hex(bn);

    snprintf(out, cap, "%s", hex);
    for (char *p = out; *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    OPENSSL_free(hex);
    BN_free(bn);
}

struct authz_case {
    const char *name;
    const char *authz; /* "authorization" members */
    enum prot prot;
    int tls;      /* 0: none, 1: the client's certificate, 2: the gateway signer's (another cert) */
    int fail_bit; /* -1: must be issued */
    const char *text;
};

static X509 *signer_cert;

static void test_authorization(void **state)
{
    static const struct authz_case cases[] = {
        {"TLS required, none", "\"tls_client\": \"require\"", SIG, 0, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "requires a TLS client certificate"},
        {"TLS required, present", "\"tls_client\": \"require\"", SIG, 1, -1, NULL},
        {"TLS subject outside the patterns", "\"tls_subjects\": [\"/O=cmpgw demo/CN=dev-*\"]", SIG, 1,
         OSSL_CMP_PKIFAILUREINFO_notAuthorized, "/O=cmpgw demo/CN=demo-client"},
        {"TLS subject within the patterns", "\"tls_subjects\": [\"/O=cmpgw demo/CN=demo-*\"]", SIG, 1, -1,
         NULL},
        {"TLS cert is not the signer", "\"tls_must_be_signer\": true", SIG, 2,
         OSSL_CMP_PKIFAILUREINFO_notAuthorized, "not the TLS client certificate"},
        {"TLS cert is the signer", "\"tls_must_be_signer\": true", SIG, 1, -1, NULL},
        {"TLS must be signer, PBM", "\"tls_must_be_signer\": true", PBM, 1,
         OSSL_CMP_PKIFAILUREINFO_notAuthorized, "signed with the TLS client"},
        {"signer subject outside the patterns", "\"signer_subjects\": [\"/O=cmpgw demo/CN=device-*\"]", SIG,
         0, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "/O=cmpgw demo/CN=demo-client"},
        {"signer subject within the patterns", "\"signer_subjects\": [\"/O=cmpgw demo/CN=demo-*\"]", SIG, 0,
         -1, NULL},
    };
    char role[512];

    (void)state;
    signer_cert = load_cert("signer.pem");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct authz_case *ac = &cases[i];
        struct env *e;
        struct client cl;
        OSSL_CMP_CTX *ctx;
        X509 *cert;

        print_message("case: %s\n", ac->name);
        snprintf(role, sizeof(role), "\"authorization\": {%s}", ac->authz);
        e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = role});
        cl = (struct client){.env = e,
                             .tls_first = ac->tls == 1   ? client_cert
                                          : ac->tls == 2 ? signer_cert
                                                         : NULL};
        ctx = ac->prot == SIG ? client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0)
                              : client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
        cert = OSSL_CMP_exec_IR_ses(ctx);
        if (ac->fail_bit < 0) {
            assert_non_null(cert);
            assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 1);
        } else {
            assert_null(cert);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, ac->fail_bit, ac->text);
            /* refused before the upstream: no intent, one rejection on record */
            assert_int_equal(audit_count(e, "intent", NULL, NULL, NULL), 0);
            assert_int_equal(audit_count(e, "rejected", NULL, "status", "notAuthorized"), 1);
        }
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
    X509_free(signer_cert);
}

/*
 * The certConf of a tls_must_be_signer role comes over another TLS certificate: refused, txn kept
 * (by the binding to the ir's TLS client, which comes before the authorization of the role).
 */
static void test_authorization_certconf(void **state)
{
    struct env *e =
        env_open(&(struct env_opts){.cmp = CMP_DEFAULTS,
                                    .confirm = 1,
                                    .role_extra = "\"authorization\": {\"tls_must_be_signer\": true}"});
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx;

    (void)state;
    signer_cert = load_cert("signer.pem");
    cl.tls_first = client_cert;
    cl.tls_later = signer_cert;
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                  "another client certificate");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1); /* still the real client's */
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 0);
    /* twin: the same over the right TLS certificate is confirmed */
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    cl = (struct client){.env = e, .tls_first = client_cert};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(cl.exchanges, 2);
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    X509_free(signer_cert);
    env_free(e); /* the first one is abandoned: expired_unconfirmed */
}

static void push_dns(OSSL_CMP_CTX *ctx, const char *dns)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();

    ASN1_STRING_set(s, dns, -1);
    GENERAL_NAME_set0_value(gn, GEN_DNS, s);
    assert_int_equal(OSSL_CMP_CTX_push1_subjectAltName(ctx, gn), 1);
    GENERAL_NAME_free(gn);
}

/* allowed_dns_names: a SAN outside it never reaches the upstream; one inside is issued. */
static void test_request_policy(void **state)
{
    static const struct {
        const char *dns;
        int ok;
    } cases[] = {{"evil.example.org", 0}, {"a.example.com", 1}, {"a.b.example.com", 0}, {"example.com", 0}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_open(&(struct env_opts){
            .cmp = CMP_DEFAULTS,
            .role_extra = "\"authorization\": {\"allowed_dns_names\": [\"*.example.com\"]}"});
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        X509 *cert;

        print_message("case: %s\n", cases[i].dns);
        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY, FK_PLAIN);
        push_dns(ctx, cases[i].dns);
        cert = OSSL_CMP_exec_IR_ses(ctx);
        assert_int_equal(cert != NULL, cases[i].ok);
        assert_int_equal(fake.sign_calls, cases[i].ok);
        if (!cases[i].ok)
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                          cases[i].dns);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

static X509_REQ *make_csr(EVP_PKEY *k, const char *cn)
{
    X509_REQ *csr = X509_REQ_new();

    X509_REQ_set_pubkey(csr, k);
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(csr), "CN", MBSTRING_ASC, (const unsigned char *)cn,
                               -1, -1, 0);
    assert_true(X509_REQ_sign(csr, k, EVP_sha256()) > 0);
    return csr;
}

/* Sends a p10cr for |cn| with a fresh key; returns the certificate or NULL. */
static X509 *p10cr(OSSL_CMP_CTX *ctx, const char *cn)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509_REQ *csr = make_csr(k, cn);
    X509 *cert;

    OSSL_CMP_CTX_reinit(ctx);
    OSSL_CMP_CTX_set1_p10CSR(ctx, csr);
    OSSL_CMP_CTX_set0_newPkey(ctx, 1, k);
    cert = OSSL_CMP_exec_P10CR_ses(ctx);
    X509_REQ_free(csr);
    return cert;
}

/* A CSR-only upstream with crmf "reject": CRMF gets an actionable error, p10cr goes through unchanged. */
static void test_crmf_reject(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR, FK_PLAIN);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                  "signs PKCS#10 requests only: send a p10cr (openssl cmp -cmd p10cr");
    OSSL_CMP_CTX_reinit(ctx);
    assert_null(OSSL_CMP_exec_KUR_ses(ctx));
    assert_int_equal(fake.sign_calls, 0);
    /* twin: the same route takes a p10cr, and the CSR reaches the upstream */
    assert_non_null(p10cr(ctx, "p10-device"));
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.csr_calls, 1);
    /* and an upstream that signs keys only refuses p10cr with the opposite advice */
    env_fake(e, GW_UP_SIGN_KEY, FK_PLAIN);
    assert_null(p10cr(ctx, "p10-device"));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "send an ir");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* The configuration of |e|'s upstream |name|. */
static struct gw_upstream_conf *upstream_conf(struct env *e, const char *name)
{
    for (size_t i = 0; i < e->cfg->n_upstreams; i++)
        if (strcmp(e->cfg->upstreams[i].name, name) == 0)
            return &e->cfg->upstreams[i];
    fail_msg("no upstream %s", name);
    return NULL;
}

/* Makes the default role of |e| (with "deleg") delegate CRMF to the "deleg" local upstream. */
static struct env *delegating(struct env *e)
{
    struct gw_role *role = (struct gw_role *)e->cfg->default_path_policy.role;

    /* set after the upstreams' own check, which rightly refuses delegate on a local upstream */
    role->crmf = GW_CRMF_DELEGATE;
    role->delegate_name = strdup("deleg");
    role->delegate = upstream_conf(e, "deleg");
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_ROLE_POLICY, FK_PLAIN);
    /* an upstream role granting the role's usages, which the delegate writes: one granting none would
       have it write no keyUsage (any usage), which the role refuses */
    fake.grant_ku = role->key_usage;
    fake.grant_eku = role->ext_key_usage;
    return e;
}

static struct env *env_delegate(void)
{
    return delegating(env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .deleg = 1}));
}

static void set_cn(OSSL_CMP_CTX *ctx, const char *cn)
{
    X509_NAME *n = X509_NAME_new();

    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    OSSL_CMP_CTX_set1_subjectName(ctx, n);
    X509_NAME_free(n);
}

static time_t later_clock(void)
{
    return time(NULL) + GW_ROLE_POLICY_TTL + 1;
}

/* crmf "delegate": the upstream role's policy (fetched once per TTL) decides, the local issuer signs. */
static void test_crmf_delegate(void **state)
{
    struct env *e = env_delegate();
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    set_cn(ctx, "dev.example.com");
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_grantedWithMods, -1, NULL); /* the CN among the SANs */
    assert_int_equal(fake.sign_calls, 0); /* the delegate signed, not the upstream */
    assert_int_equal(audit_count(e, "issued", NULL, "upstream", "deleg"), 1);
    /* twin: with exclude_cn_from_sans, what was asked for */
    ((struct gw_role *)e->cfg->default_path_policy.role)->exclude_cn_from_sans = true;
    OSSL_CMP_CTX_reinit(ctx);
    set_cn(ctx, "dev.example.com");
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    ((struct gw_role *)e->cfg->default_path_policy.role)->exclude_cn_from_sans = false;
    OSSL_CMP_CTX_reinit(ctx);
    set_cn(ctx, "test-device"); /* twin: outside the upstream role's allowed_domains */
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "test-device");
    assert_int_equal(fake.policy_calls, 1); /* cached */
    /* the cache expires: the policy is read again, and one that cannot be read refuses */
    fake.policy_fails = 1;
    gw_cmp_engine_set_clock(e->engine, later_clock);
    OSSL_CMP_CTX_reinit(ctx);
    set_cn(ctx, "dev.example.com");
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "sealed");
    assert_int_equal(fake.policy_calls, 2);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * A Vault role granting no usages ("key_usage": [], no flags, no ext_key_usage) has Vault write no
 * keyUsage and no extendedKeyUsage: any usage, which a role listing its usages does not allow. It is
 * refused before the delegate signs: nothing is issued, so nothing is withdrawn.
 */
static time_t much_later_clock(void);

static void test_crmf_delegate_grants_any_usage(void **state)
{
    struct env *e = env_delegate();
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    const struct gw_role *role = e->cfg->default_path_policy.role;

    (void)state;
    assert_int_not_equal(role->key_usage, 0);
    assert_int_not_equal(role->ext_key_usage, 0);
    fake.grant_ku = 0;
    fake.grant_eku = 0;
    set_cn(ctx, "dev.example.com");
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "upstream role default grants any keyUsage (it writes none) and any extendedKeyUsage (it "
                  "writes none), which role default does not allow; restrict the Vault role (key_usage, "
                  "ext_key_usage)");
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 0);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 0);
    /* twin: a Vault role granting the role's keyUsage but no extendedKeyUsage is refused for that alone */
    fake.grant_ku = role->key_usage;
    gw_cmp_engine_set_clock(e->engine, later_clock);
    OSSL_CMP_CTX_reinit(ctx);
    set_cn(ctx, "dev.example.com");
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "upstream role default grants any extendedKeyUsage (it writes none), which role default "
                  "does not allow; restrict the Vault role (ext_key_usage)");
    /* twin: granting the role's usages, it is issued */
    fake.grant_eku = role->ext_key_usage;
    gw_cmp_engine_set_clock(e->engine, much_later_clock);
    OSSL_CMP_CTX_reinit(ctx);
    set_cn(ctx, "dev.example.com");
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(audit_count(e, "issued", NULL, "upstream", "deleg"), 1);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * What an upstream says is no more trusted than what a client says: a Vault role's allowed_domains entry
 * with a control byte (an escape sequence) is quoted to the client with '?' for it, as a CA's message is.
 */
static void test_crmf_delegate_text_controls(void **state)
{
    struct env *e = env_delegate();
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    fake.domain = "example.com\x1b[2J\x07";
    set_cn(ctx, "test-device");
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    fake.domain = NULL;
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                  "(allowed_domains: example.com?[2J?; allow_subdomains)");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

static void test_crmf_delegate_policy_down(void **state)
{
    struct env *e = env_delegate();
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    fake.policy_fails = 1;
    set_cn(ctx, "dev.example.com");
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  " could not be read: the test CA is sealed");
    /* the upstream is back, but for GW_ROLE_POLICY_RETRY the failure stands: refused at once, not read */
    fake.policy_fails = 0;
    OSSL_CMP_CTX_reinit(ctx);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  " could not be read a moment ago: the CA's role definition is needed to issue; retry in a "
                  "few seconds");
    assert_int_equal(fake.policy_calls, 1);
    /* twin: past it, read again */
    ahead_secs = GW_ROLE_POLICY_RETRY;
    gw_cmp_engine_set_clock(e->engine, ahead_clock);
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(fake.policy_calls, 2);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

#define HANG_CLIENTS 3

/* An ir on a delegating role, on a thread of its own, and how long it took. */
struct hung_ir {
    struct client cl;
    OSSL_CMP_CTX *ctx;
    X509 *got;
    uint64_t ms;
};

static void hung_ir_init(struct hung_ir *h, struct env *e)
{
    h->cl = (struct client){.env = e};
    h->ctx = client_new(&h->cl, SIG, client_cert, client_key, NULL, NULL, 0);
    set_cn(h->ctx, "dev.example.com");
}

static void *hung_ir_run(void *arg)
{
    struct hung_ir *h = arg;
    uint64_t start = gw_now_ms();

    h->got = OSSL_CMP_exec_IR_ses(h->ctx);
    h->ms = gw_now_ms() - start;
    return NULL;
}

static void hung_ir_cleanup(struct hung_ir *h)
{
    client_cleanup(&h->cl);
    OSSL_CMP_CTX_free(h->ctx);
}

/*
 * A Vault whose roles/ does not answer must not take the workers: while one request reads the
 * delegate's upstream role (up to the upstream's timeout, HANG_MS here), the others are refused
 * within GW_ROLE_POLICY_WAIT_MS rather than each waiting for it and then reading again itself (N
 * requests, N times the timeout, the pool full); once the read failed, the next is refused at once,
 * without a read, for GW_ROLE_POLICY_RETRY.
 */
static void test_crmf_delegate_policy_hangs(void **state)
{
    struct env *e = env_delegate();
    struct hung_ir first, other[HANG_CLIENTS];
    pthread_t th, oth[HANG_CLIENTS];
    uint64_t start;

    (void)state;
    hang.entered = hang.released = 0;
    fake.policy_hangs = 1;
    hung_ir_init(&first, e);
    assert_int_equal(pthread_create(&th, NULL, hung_ir_run, &first), 0);
    hang_entered(1);
    start = gw_now_ms();
    for (int i = 0; i < HANG_CLIENTS; i++) {
        hung_ir_init(&other[i], e);
        assert_int_equal(pthread_create(&oth[i], NULL, hung_ir_run, &other[i]), 0);
    }
    for (int i = 0; i < HANG_CLIENTS; i++)
        assert_int_equal(pthread_join(oth[i], NULL), 0);
    if (gw_now_ms() - start >= HANG_MS)
        fail_msg("%d requests took %llu ms while one read hung", HANG_CLIENTS,
                 (unsigned long long)(gw_now_ms() - start));
    for (int i = 0; i < HANG_CLIENTS; i++) {
        assert_null(other[i].got);
        assert_status(other[i].ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      " is being read for another request: retry in a few seconds");
    }
    assert_int_equal(fake.policy_calls, 1);
    hang_release();
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_null(first.got);
    assert_status(first.ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "could not be read: the test CA did not answer in time");
    /* the read failed: the next is refused at once, not read again */
    OSSL_CMP_CTX_reinit(other[0].ctx);
    set_cn(other[0].ctx, "dev.example.com");
    hung_ir_run(&other[0]);
    assert_null(other[0].got);
    assert_status(other[0].ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "could not be read a moment ago");
    assert_int_equal(fake.policy_calls, 1);
    hung_ir_cleanup(&first);
    for (int i = 0; i < HANG_CLIENTS; i++)
        hung_ir_cleanup(&other[i]);
    env_free(e);
}

static int fake_probe(struct gw_upstream *up, const _Atomic uint64_t *end, char *err)
{
    (void)up, (void)end;
    snprintf(err, GW_ERR_LEN, "the test CA does not answer its health check");
    return GW_ERR_UNAVAILABLE;
}

/*
 * While its probes say the upstream is down (fail_fast, the default), its role is not read: the
 * delegate is refused at once, as a sign call would be. Twin: without fail_fast it is read.
 */
static void test_crmf_delegate_upstream_down(void **state)
{
    struct env *e = env_delegate();
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    struct gw_upstream *up = gw_upstream_set_get0(e->ups, "local");
    char err[GW_ERR_LEN];

    (void)state;
    fake_ops.probe = fake_probe;
    for (int i = 0; i < GW_UPSTREAM_DOWN_AFTER; i++)
        assert_int_not_equal(gw_upstream_probe(up, NULL, err), 0);
    set_cn(ctx, "dev.example.com");
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "could not be read: upstream local is down (its probes)");
    assert_int_equal(fake.policy_calls, 0);
    upstream_conf(e, "local")->fail_fast = false;
    ahead_secs = GW_ROLE_POLICY_RETRY;
    gw_cmp_engine_set_clock(e->engine, ahead_clock);
    OSSL_CMP_CTX_reinit(ctx);
    set_cn(ctx, "dev.example.com");
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(fake.policy_calls, 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

struct result_case {
    const char *name;
    enum fake_mode mode;
    int status; /* PKIStatus the client sees */
    int fail_bit;
    const char *text;
    int revoked;       /* the upstream was asked to revoke */
    int not_withdrawn; /* not revoked: it certifies another key, perhaps another holder's */
};

/* What the upstream returns is checked: wrong key, CA:TRUE, another CA, a renamed subject, usages. */
static void test_result_checks(void **state)
{
    static const struct result_case cases[] = {
        {"as planned", FK_PLAIN, OSSL_CMP_PKISTATUS_accepted, -1, NULL, 0, 0},
        /* a subject the request did not ask for: withdrawn like any other certificate outside policy */
        {"renamed subject", FK_RENAME, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
         "the CA issued a certificate outside this route's policy (the CA changed the subject to "
         "/CN=renamed-device, which the request did not ask for); it was not released",
         1, 0},
        {"certificate for another key", FK_OTHER_KEY, OSSL_CMP_PKISTATUS_rejection,
         OSSL_CMP_PKIFAILUREINFO_systemFailure, "unusable certificate", 0, 1},
        {"CA:TRUE certificate", FK_CA_TRUE, OSSL_CMP_PKISTATUS_rejection,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "outside this route's policy", 1, 0},
        /* not asked of the upstream: by its serial, it would revoke a certificate of the upstream's own CA */
        {"certificate from another CA", FK_OTHER_CA, OSSL_CMP_PKISTATUS_rejection,
         OSSL_CMP_PKIFAILUREINFO_systemFailure, "unusable certificate", 0, 0},
        {"extendedKeyUsage beyond the role", FK_WIDE, OSSL_CMP_PKISTATUS_rejection,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
         "the CA issued a certificate outside this route's policy (extendedKeyUsage codeSigning is outside "
         "role "
         "default (allowed: serverAuth, clientAuth)); it was not released",
         1, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct result_case *rc = &cases[i];
        struct env *e = env_new(CMP_DEFAULTS);
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        X509 *cert;

        print_message("case: %s\n", rc->name);
        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, rc->mode);
        cert = OSSL_CMP_exec_IR_ses(ctx);
        assert_int_equal(cert != NULL, rc->status != OSSL_CMP_PKISTATUS_rejection);
        assert_status(ctx, rc->status, rc->fail_bit, rc->text);
        assert_int_equal(revoke_calls(e), rc->revoked);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), rc->revoked);
        assert_int_equal(audit_count(e, "not_withdrawn", NULL, NULL, NULL), rc->not_withdrawn);
        assert_int_equal(
            audit_count(e, "revoke_failed", NULL, "status", "not the CA of upstream local: revoke serial "),
            rc->mode == FK_OTHER_CA);
        assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), cert != NULL);
        if (cert == NULL) /* the refused certificate's serial is on record */
            assert_int_equal(audit_count(e, "rejected", NULL, "serial", ""), 1);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * A refused answer that still carries a certificate: on record, and revoked only if it certifies the
 * requested key. One for another key may be another holder's (a CA answering with the wrong serial):
 * it is on record as not withdrawn, and the CA is not asked to revoke it. One of the requested key valid
 * from long before the request is revoked: its notBefore does not tell a holder's earlier certificate
 * from a backdated new one. One the adapter rejected to its CA, which confirmed that, is on record as
 * rejected to the CA, and not revoked again.
 */
static void test_refused_answer_other_key(void **state)
{
    static const struct {
        const char *name;
        enum fake_mode mode;
        int taken_back, revoked;
    } cases[] = {
        {"the requested key", FK_PLAIN, 0, 1},
        {"another key", FK_OTHER_KEY, 0, 0},
        {"a backdated certificate of the requested key", FK_EARLIER, 0, 1},
        {"rejected to the CA", FK_PLAIN, 1, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_new(CMP_DEFAULTS);
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

        print_message("case: %s\n", cases[i].name);
        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cases[i].mode);
        fake.refuse_answer = 1;
        fake.taken_back = cases[i].taken_back;
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                      "field out of range");
        assert_int_equal(audit_count(e, "rejected", NULL, "serial", ""), 1);
        assert_int_equal(revoke_calls(e), cases[i].revoked);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), cases[i].revoked);
        assert_int_equal(
            audit_count(e, "not_withdrawn", NULL, "status", "does not certify the requested key"),
            cases[i].mode == FK_OTHER_KEY);
        assert_int_equal(audit_count(e, "rejected_to_ca", NULL, "status", "which the CA confirmed"),
                         cases[i].taken_back);
        fake.refuse_answer = 0;
        fake.taken_back = 0;
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * A CA answering success with a certificate of the requested key valid from a month ago: refused as
 * backdated, on record, and revoked, as a new certificate outside the role's policy is. It may be the
 * holder's earlier one (a client enrolling again with the key it has), but its notBefore cannot tell
 * that from a CA that backdates; one the gateway let through itself is not revoked
 * (test_refused_answer_let_through).
 */
static void test_success_answer_backdated(void **state)
{
    static const struct {
        const char *name;
        enum fake_mode mode;
        const char *text;
        int revoked;
    } cases[] = {
        {"a backdated certificate of the requested key", FK_EARLIER, "the upstream backdated the certificate",
         1},
        {"a new certificate outside policy", FK_CA_TRUE, "outside this route's policy", 1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_new(CMP_DEFAULTS);
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

        print_message("case: %s\n", cases[i].name);
        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cases[i].mode);
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                      cases[i].text);
        assert_int_equal(audit_count(e, "rejected", NULL, "serial", ""), 1);
        assert_int_equal(revoke_calls(e), cases[i].revoked);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), cases[i].revoked);
        assert_int_equal(audit_count(e, "not_withdrawn", NULL, NULL, NULL), 0);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

static void log_capture_start(void);
static char *log_capture_end(void);
static bool logged_reason(const char *logged, const char *event, const char *reason);

/* |ctx|'s ir under the transactionID |tid| (16 bytes, for a log to name): a copy of its certificate. */
static X509 *ir_under(OSSL_CMP_CTX *ctx, const char *tid)
{
    ASN1_OCTET_STRING *t = ASN1_OCTET_STRING_new();
    X509 *cert;

    assert_int_equal(ASN1_OCTET_STRING_set(t, (const unsigned char *)tid, 16), 1);
    assert_int_equal(OSSL_CMP_CTX_set1_transactionID(ctx, t), 1);
    ASN1_OCTET_STRING_free(t);
    assert_non_null(cert = OSSL_CMP_exec_IR_ses(ctx));
    assert_non_null(cert = X509_dup(cert));
    return cert;
}

/*
 * A refused answer carrying the very certificate the gateway let through lately in another transaction
 * (fresh, of the requested key): not issued for this request, so on record as not withdrawn, logged
 * with that transaction, and not revoked: revoking it would revoke the certificate its client holds.
 * Twin: a refused answer with a certificate of its own is revoked.
 */
static void test_refused_answer_let_through(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    X509 *first;
    char want[512];
    char *logged;

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    first = ir_under(ctx, "let-through-once");

    print_message("case: the certificate let through, in a refused answer\n");
    fake.again = first;
    fake.refuse_answer = 1;
    OSSL_CMP_CTX_reinit(ctx);
    log_capture_start();
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                  "field out of range");
    assert_int_equal(revoke_calls(e), 0);
    logged = log_capture_end();
    assert_int_equal(audit_count(e, "not_withdrawn", NULL, "status",
                                 "has the issuer name and serial of one the gateway let through lately "
                                 "in another transaction"),
                     1);
    /* "let-through-once" in hex */
    snprintf(want, sizeof(want), "\"earlier_tid\":\"%s\"", "6c65742d7468726f7567682d6f6e6365");
    if (strstr(logged, "\"event\":\"cert_not_withdrawn\"") == NULL || strstr(logged, want) == NULL)
        fail_msg("no cert_not_withdrawn naming %s in: %s", want, logged);
    free(logged);

    print_message("case: a certificate of its own, in a refused answer\n");
    fake.again = NULL;
    OSSL_CMP_CTX_reinit(ctx);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(revoke_calls(e), 1);
    assert_int_equal(audit_count(e, "not_withdrawn", NULL, NULL, NULL), 1);
    fake.refuse_answer = 0;
    X509_free(first);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* The one statusString of |ctx|'s last answer reads as UTF-8, as a strict decoder reads a UTF8String. */
static void assert_status_utf8(OSSL_CMP_CTX *ctx)
{
    OSSL_CMP_PKIFREETEXT *ss = OSSL_CMP_CTX_get0_statusString(ctx);
    const ASN1_UTF8STRING *s;

    assert_int_equal(sk_ASN1_UTF8STRING_num(ss), 1);
    s = sk_ASN1_UTF8STRING_value(ss, 0);
    if (ASN1_mbstring_copy(NULL, ASN1_STRING_get0_data(s), ASN1_STRING_length(s), MBSTRING_UTF8,
                           B_ASN1_UTF8STRING) <= 0)
        fail_msg("statusString is not UTF-8: %.*s", ASN1_STRING_length(s), ASN1_STRING_get0_data(s));
}

/* An ir the upstream refuses with |reason|: the client is told |want| (in its statusString, UTF-8). */
static void assert_refusal_text(const char *reason, const char *want)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY, FK_PLAIN);
    fake.refusal = reason;
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    fake.refusal = NULL;
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, want);
    assert_status_utf8(ctx);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * The statusString is a UTF8String. An upstream's text cut to a length inside a character (Vault's
 * message, quoted up to 160 bytes: a "é" at byte 160 leaves its first byte) reaches the client as
 * UTF-8 all the same, with what does not read as '?'.
 */
static void test_refusal_text_utf8(void **state)
{
    char reason[256], cut[160];

    (void)state;
    memset(cut, 'a', sizeof(cut) - 1);
    cut[sizeof(cut) - 1] = '\0';
    snprintf(reason, sizeof(reason), "Vault refused: %s\xc3 (HTTP 400)", cut);
    assert_refusal_text(reason, "aaa? (HTTP 400)");
}

/*
 * An upstream's text with Unicode bidirectional controls (valid UTF-8) would read in the client's UI
 * as other than it says: "\u202emoc.elpmaxe\u202c" shows as "example.com". Each becomes '?'.
 */
static void test_refusal_text_bidi(void **state)
{
    (void)state;
    assert_refusal_text("Vault refused: \xe2\x80\xae"
                        "moc.elpmaxe\xe2\x80\xac is \xe2\x81\xa6"
                        "allowed\xe2\x81\xa9"
                        "\xe2\x80\x8f\xd8\x9c (HTTP 400)",
                        "Vault refused: ?moc.elpmaxe? is ?allowed??? (HTTP 400)");
}

/*
 * So do the invisible ones and the separators: "bank\u200b.example" reads as bank.example, a U+2028
 * starts a line of its own in many UIs, tag characters carry text no one sees. Letters stay.
 */
static void test_refusal_text_invisible(void **state)
{
    (void)state;
    assert_refusal_text("Vault refused: bank\xe2\x80\x8b.example\xe2\x80\xa8"
                        "OK\xef\xbb\xbf\xc2\xad\xf3\xa0\x81\xa8\xf3\xa0\x81\xa9 M\xc3\xbcller (HTTP 400)",
                        "Vault refused: bank?.example?OK???? M\xc3\xbcller (HTTP 400)");
}

/*
 * So it is where a refusal's text is written by the policy, not through cmp_refuse: the list of a
 * role's patterns, cut to its room inside a character ("(allowed: a.example.com, é...") reaches the
 * client as UTF-8 too.
 */
static void test_policy_text_utf8(void **state)
{
    char role[512], many[2 * 60 + 1] = "";
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;

    (void)state;
    for (int i = 0; i < 60; i++) /* the list's cut lands inside one of them */
        strcat(many, "\xc3\xa9");
    snprintf(role, sizeof(role),
             "\"authorization\": {\"allowed_dns_names\": [\"a.example.com\", \"%s.example.com\"]}", many);
    e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = role});
    cl = (struct client){.env = e};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY, FK_PLAIN);
    push_dns(ctx, "evil.example.org");
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                  "(allowed: a.example.com, \xc3\xa9");
    assert_status_utf8(ctx);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Set: transfer_gone checks the transaction out before the listener's news, as another message would. */
static int gone_hold;
static struct gw_txn *gone_held;
/* Set: transfer_gone calls it before the listener's news (another instance taking the record, say). */
static void (*gone_before)(struct client *cl);

/* A transfer whose client goes away before the answer leaves: the listener tells the engine so. */
static OSSL_CMP_MSG *transfer_gone(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    struct client *cl = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    const ASN1_OCTET_STRING *tid = OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(req));
    struct gw_cmp_response rsp;
    unsigned char *der = NULL;
    int len = i2d_OSSL_CMP_MSG(req, &der);

    assert_true(len > 0);
    if (cl->exchanges++ == 0) { /* as the usual transfer keeps it (record_key) */
        cl->first_req = OPENSSL_memdup(der, (size_t)len);
        cl->first_req_len = (size_t)len;
    }
    gw_cmp_response_init(&rsp);
    gw_cmp_process(cl->env->engine,
                   &(struct gw_cmp_request){
                       .der = der, .len = (size_t)len, .route = &cl->env->route, .tls_peer = cl->env->tls},
                   &rsp);
    assert_int_equal(rsp.http_status, 200);
    assert_non_null(rsp.carried);
    if (gone_hold)
        assert_non_null(gone_held =
                            gw_txn_take(gw_cmp_engine_txns(cl->env->engine), tid->data, (size_t)tid->length));
    if (gone_before != NULL)
        gone_before(cl);
    gw_cmp_undelivered(&rsp, GW_CMP_LOST_CLIENT_GONE);
    gw_cmp_response_cleanup(&rsp);
    OPENSSL_free(der);
    return NULL;
}

/*
 * The one certificate issued under |e| is on record as not delivered, its client gone, and revoked once;
 * no transaction is left open, nor held by what the answer kept of it. Then the client, its context and
 * the engine are freed.
 */
static void assert_gone_withdrawn_and_free(struct env *e, struct client *cl, OSSL_CMP_CTX *ctx)
{
    char serial[64];

    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
    assert_int_equal(audit_count(e, "rejected", serial, "status",
                                 "not delivered: the client left before its answer was sent"),
                     1);
    assert_int_equal(revoke_calls(e), 1);
    assert_int_equal(audit_count(e, "revoked", serial, NULL, NULL), 1);
    assert_false(gw_cmp_engine_busy(e->engine));
    client_cleanup(cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * The answer carrying a certificate never left (its client went away first): the certificate goes on
 * record as not delivered and is revoked, and a transaction waiting for the certConf is closed, with
 * implicitConfirm or without. An answer that left is not withdrawn (test_result_checks).
 */
static void test_client_gone(void **state)
{
    (void)state;
    for (int implicit = 0; implicit <= 1; implicit++) {
        struct env *e = env_new(CMP_DEFAULTS);
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

        print_message("implicitConfirm: %d\n", implicit);
        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, implicit);
        OSSL_CMP_CTX_set_transfer_cb(ctx, transfer_gone);
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_gone_withdrawn_and_free(e, &cl, ctx);
    }
}

/*
 * As test_client_gone, while another message of the transaction holds it (checked out, to be refused
 * for its nonce): that message cannot open it again, so it never expires as a certificate that stays
 * valid.
 */
static void test_client_gone_while_held(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    int rc;

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    OSSL_CMP_CTX_set_transfer_cb(ctx, transfer_gone);
    gone_hold = 1;
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    gone_hold = 0;
    rc = gw_txn_put(gw_cmp_engine_txns(e->engine), gone_held); /* the message done with it */
    if (rc != 0)
        gw_txn_free(gone_held);
    gw_cmp_engine_expire(e->engine, time(NULL) + 24 * 3600);
    assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 0);
    assert_int_equal(rc, GW_ERR_NOT_FOUND);
    assert_gone_withdrawn_and_free(e, &cl, ctx);
}

#define NOT_KEPT_TID "a transaction not kept"

/* The slot of the transaction NOT_KEPT_TID lost while its request runs, and held for another identity. */
static void lose_slot(struct env *e)
{
    assert_int_equal(gw_cmp_engine_reset(e->engine), 1);
    assert_int_equal(gw_txn_reserve(gw_cmp_engine_txns(e->engine), (const unsigned char *)NOT_KEPT_TID,
                                    strlen(NOT_KEPT_TID), "someone else"),
                     0);
}

/*
 * A certificate issued for a transaction that cannot be kept open for its certConf (out of memory in
 * production; here its slot lost): no answer carries a certificate no certConf could confirm. The
 * client is told to retry, the certificate withdrawn.
 */
static void test_park_failed(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    ASN1_OCTET_STRING *tid = ASN1_OCTET_STRING_new();

    (void)state;
    assert_int_equal(ASN1_OCTET_STRING_set(tid, (const unsigned char *)NOT_KEPT_TID, strlen(NOT_KEPT_TID)),
                     1);
    assert_int_equal(OSSL_CMP_CTX_set1_transactionID(ctx, tid), 1);
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    fake.during_sign = lose_slot;
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "the gateway could not keep this transaction open for its certConf; retry later");
    assert_int_equal(audit_count(e, "rejected", NULL, "status", "not delivered"), 1);
    assert_int_equal(revoke_calls(e), 1);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 1);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    ASN1_OCTET_STRING_free(tid);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

static time_t much_later_clock(void)
{
    return time(NULL) + 2 * GW_ROLE_POLICY_TTL + 2;
}

/*
 * An upstream that can describe its roles is asked before it signs: a role granting more usages
 * than the gateway's is refused up front (nothing issued, nothing to revoke); the twin within
 * is issued; an unreadable role is no refusal, the certificate is checked when it comes back.
 */
static void test_upstream_grants_upfront(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE | GW_UP_ROLE_POLICY, FK_PLAIN);
    fake.grant_ku = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | KU_KEY_ENCIPHERMENT;
    fake.grant_eku = GW_EKU_CLIENT_AUTH;
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "upstream role default grants keyUsage keyEncipherment, which role default does not allow; "
                  "restrict the Vault role (key_usage)");
    assert_int_equal(fake.sign_calls, 0);
    assert_int_equal(revoke_calls(e), 0);
    assert_int_equal(audit_count(e, "rejected", NULL, "status", "grants keyUsage keyEncipherment"), 1);
    /* twin: the upstream role narrowed (read again once the cache expires) */
    fake.grant_ku = KU_DIGITAL_SIGNATURE;
    gw_cmp_engine_set_clock(e->engine, later_clock);
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(fake.sign_calls, 1);
    assert_int_equal(fake.policy_calls, 2);
    /* the role cannot be read: asked anyway, and what comes back outside the role is refused, revoked */
    fake.policy_fails = 1;
    fake.mode = FK_WIDE;
    gw_cmp_engine_set_clock(e->engine, much_later_clock);
    OSSL_CMP_CTX_reinit(ctx);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                  "extendedKeyUsage codeSigning is outside role default");
    assert_int_equal(fake.sign_calls, 2);
    assert_int_equal(fake.policy_calls, 3);
    assert_int_equal(revoke_calls(e), 1);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 1);
    /* a read that failed is not tried on every request: the next one goes straight to the upstream */
    fake.mode = FK_PLAIN;
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(fake.sign_calls, 3);
    assert_int_equal(fake.policy_calls, 3);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* A p10cr with |cn| and the extendedKeyUsage |eku| (NULL: none) in the CSR; the certificate or NULL. */
static X509 *p10cr_eku(OSSL_CMP_CTX *ctx, const char *cn, const char *eku)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509_REQ *csr = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509 *cert;

    X509_REQ_set_pubkey(csr, k);
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(csr), "CN", MBSTRING_ASC, (const unsigned char *)cn,
                               -1, -1, 0);
    if (eku != NULL) {
        sk_X509_EXTENSION_push(exts, X509V3_EXT_nconf_nid(NULL, NULL, NID_ext_key_usage, eku));
        X509_REQ_add_extensions(csr, exts);
    }
    assert_true(X509_REQ_sign(csr, k, EVP_sha256()) > 0);
    OSSL_CMP_CTX_reinit(ctx);
    OSSL_CMP_CTX_set1_p10CSR(ctx, csr);
    OSSL_CMP_CTX_set0_newPkey(ctx, 1, k);
    cert = OSSL_CMP_exec_P10CR_ses(ctx);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(csr);
    return cert;
}

/* sign-verbatim copies the CSR's extensions: one outside the role is refused before the upstream call. */
static void test_verbatim_csr_upfront(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    struct gw_role *role = (struct gw_role *)e->cfg->default_path_policy.role;

    (void)state;
    role->sign_policy = GW_SIGN_VERBATIM; /* set after the config's check, which keeps it to vault roles */
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_ROLE_POLICY, FK_PLAIN);
    fake.grant_ku = KU_KEY_ENCIPHERMENT; /* a Vault role's usages do not apply to sign-verbatim */
    assert_null(p10cr_eku(ctx, "verbatim-device", "clientAuth,codeSigning"));
    assert_status(
        ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
        "extendedKeyUsage codeSigning is outside role default (allowed: serverAuth, clientAuth); this "
        "route's CA copies the CSR's extensions: leave it out of the CSR");
    assert_int_equal(fake.sign_calls, 0);
    /* twins: usages within the role, and none */
    assert_non_null(p10cr_eku(ctx, "verbatim-device", "clientAuth"));
    assert_non_null(p10cr_eku(ctx, "verbatim-device", NULL));
    assert_int_equal(fake.sign_calls, 2);
    assert_int_equal(fake.policy_calls, 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Outside policy, and the upstream cannot revoke: rejected all the same, revoke_failed on record. */
static void test_result_unrevocable(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_CA_TRUE);
    fake.revoke_fails = 1;
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, NULL);
    assert_int_equal(audit_count(e, "revoke_failed", NULL, "status", "refuses to revoke"), 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * POPO raVerified (RFC 4211 §4.1) says an RA checked the proof of possession; nothing in front of the
 * gateway did, so it is refused from anyone, an RA of the role included (docs/design.md D3), before
 * the upstream is asked.
 */
static void test_ra_verified_refused(void **state)
{
    struct env *e = env_open(&(struct env_opts){
        .cmp = CMP_DEFAULTS,
        .role_extra = "\"authorization\": {\"ra_subjects\": [\"/O=cmpgw demo/CN=cmpgw demo CMP signer\"]}"});
    X509 *ra = load_cert("signer.pem");
    EVP_PKEY *ra_key = load_key("signer.key");

    (void)state;
    for (int as_ra = 0; as_ra < 2; as_ra++) {
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx =
            client_new(&cl, SIG, as_ra ? ra : client_cert, as_ra ? ra_key : client_key, NULL, NULL, 0);

        print_message("case: %s\n", as_ra ? "an RA of the role" : "a client");
        assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_POPO_METHOD, OSSL_CRMF_POPO_RAVERIFIED),
                         1);
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badPOP, NULL);
        assert_int_equal(e->authenticated, as_ra + 1); /* OpenSSL refused it once the signature verified */
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
    }
    assert_int_equal(audit_count(e, "intent", NULL, NULL, NULL), 0);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    X509_free(ra);
    EVP_PKEY_free(ra_key);
    env_free(e);
}

/*
 * An ir whose body carries its CertReqMsg twice, re-protected with the client's own credentials: the
 * message is taken apart and put together with OpenSSL's own DER codecs (ASN1_SEQUENCE_ANY keeps the
 * tagged body whole, OSSL_CRMF_MSGS reads what it holds).
 */
static OSSL_CMP_MSG *tamper_two_cert_reqs(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    unsigned char *der = NULL, *body = NULL, *q;
    const unsigned char *p, *inner;
    ASN1_SEQUENCE_ANY *parts;
    OSSL_CRMF_MSGS *msgs;
    ASN1_TYPE *b;
    OSSL_CMP_MSG *out;
    long inner_len;
    int len, tag, cls, body_len;

    (void)cl;
    if (OSSL_CMP_MSG_get_bodytype(req) != GW_CMP_BODY_IR)
        return req;
    len = i2d_OSSL_CMP_MSG(req, &der);
    p = der;
    assert_non_null(parts = d2i_ASN1_SEQUENCE_ANY(NULL, &p, len));
    b = sk_ASN1_TYPE_value(parts, 1); /* the body, [0] EXPLICIT CertReqMessages */
    assert_int_equal(b->type, V_ASN1_OTHER);
    inner = b->value.asn1_string->data;
    assert_int_equal(ASN1_get_object(&inner, &inner_len, &tag, &cls, b->value.asn1_string->length) & 0x80, 0);
    assert_non_null(msgs = d2i_OSSL_CRMF_MSGS(NULL, &inner, inner_len));
    assert_true(sk_OSSL_CRMF_MSG_push(msgs, OSSL_CRMF_MSG_dup(sk_OSSL_CRMF_MSG_value(msgs, 0))) == 2);
    inner_len = i2d_OSSL_CRMF_MSGS(msgs, NULL);
    body_len = ASN1_object_size(1, (int)inner_len, tag);
    assert_non_null(q = body = OPENSSL_malloc((size_t)body_len));
    ASN1_put_object(&q, 1, (int)inner_len, tag, cls);
    assert_int_equal(i2d_OSSL_CRMF_MSGS(msgs, &q), inner_len);
    ASN1_STRING_set0(b->value.asn1_string, body, body_len);
    OPENSSL_free(der);
    der = NULL;
    len = i2d_ASN1_SEQUENCE_ANY(parts, &der);
    p = der;
    assert_non_null(out = d2i_OSSL_CMP_MSG(NULL, &p, len));
    assert_int_equal(OSSL_CMP_MSG_update_transactionID(ctx, out), 1);
    sk_OSSL_CRMF_MSG_pop_free(msgs, OSSL_CRMF_MSG_free);
    sk_ASN1_TYPE_pop_free(parts, ASN1_TYPE_free);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(req);
    return out;
}

/*
 * OpenSSL 3.0 refuses an ir of two CertReqMsgs itself, and only once its protection verified: its sender is
 * authenticated, as one whose POPO it refused (test_ra_verified_refused).
 */
static void test_two_cert_reqs_authenticated(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e, .tamper = tamper_two_cert_reqs};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest, "exactly one");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(e->authenticated, 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * The answer to a PBM-protected request is MAC'ed with the client's secret (RFC 9483 §3.2). OpenSSL
 * 3.0's server takes its context's defaults for it, HMAC-SHA1: the gateway answers with at least
 * SHA-256 for the OWF and the MAC, and at least the route's min_hash, as it asks of the client.
 */
static void test_pbm_answer_mac(void **state)
{
    static const struct {
        const char *name, *role_extra;
        int owf_nid, mac_nid, want_bits;
    } cases[] = {
        {"OpenSSL's client defaults", NULL, 0, 0, 256},
        {"hmac-sha256", NULL, NID_sha256, NID_hmacWithSHA256, 256},
        {"sha384 route", "\"min_hash\": \"sha384\"", NID_sha384, NID_hmacWithSHA384, 384},
        {"sha512 route", "\"min_hash\": \"sha512\"", NID_sha512, NID_hmacWithSHA512, 512},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = cases[i].role_extra});
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
        const unsigned char *p;
        OSSL_CMP_MSG *ip;
        struct gw_hdr_info h;

        print_message("case: %s\n", cases[i].name);
        if (cases[i].owf_nid != 0)
            assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_OWF_ALGNID, cases[i].owf_nid), 1);
        if (cases[i].mac_nid != 0)
            assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MAC_ALGNID, cases[i].mac_nid), 1);
        if (cases[i].role_extra != NULL) /* the POPO's hash too */
            assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_DIGEST_ALGNID, cases[i].owf_nid), 1);
        assert_non_null(OSSL_CMP_exec_IR_ses(ctx)); /* the client verified the answer's MAC */
        p = cl.first_rsp;
        assert_non_null(ip = d2i_OSSL_CMP_MSG(NULL, &p, (long)cl.first_rsp_len));
        assert_int_equal(gw_shim_hdr_info(ip, &h), 0);
        assert_int_equal(h.protection_nid, NID_id_PasswordBasedMAC);
        if (h.protection_hash_bits < cases[i].want_bits)
            fail_msg("the ip is MAC'ed with a %d-bit hash, want %d", h.protection_hash_bits,
                     cases[i].want_bits);
        gw_shim_hdr_info_cleanup(&h);
        OSSL_CMP_MSG_free(ip);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * (n, 65539) with its own private exponent: the RSA key |k| (n, 65537) certifies, under another exponent. Its
 * holder knows n's factors, so it is |k| under another name; it signs (a POPO) with its own d.
 */
static EVP_PKEY *rsa_other_exponent(const EVP_PKEY *k)
{
    BIGNUM *n = NULL, *p = NULL, *q = NULL, *iqmp = NULL, *e = BN_new(), *d = NULL, *p1 = BN_new(),
           *q1 = BN_new(), *phi = BN_new(), *dp = BN_new(), *dq = BN_new();
    BN_CTX *bc = BN_CTX_new();
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *out = NULL;

    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_FACTOR1, &p), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_FACTOR2, &q), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, &iqmp), 1);
    assert_int_equal(BN_set_word(e, 65539), 1);
    assert_true(BN_copy(p1, p) != NULL && BN_sub_word(p1, 1) == 1);
    assert_true(BN_copy(q1, q) != NULL && BN_sub_word(q1, 1) == 1);
    assert_int_equal(BN_mul(phi, p1, q1, bc), 1);
    d = BN_mod_inverse(NULL, e, phi, bc); /* NULL when 65539 divides phi: the caller takes another key */
    if (d != NULL && BN_mod(dp, d, p1, bc) == 1 && BN_mod(dq, d, q1, bc) == 1 &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, e) == 1 &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_D, d) == 1 &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_FACTOR1, p) == 1 &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_FACTOR2, q) == 1 &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp) == 1 &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq) == 1 &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, iqmp) == 1 &&
        (params = OSSL_PARAM_BLD_to_param(b)) != NULL && EVP_PKEY_fromdata_init(pc) == 1)
        assert_int_equal(EVP_PKEY_fromdata(pc, &out, EVP_PKEY_KEYPAIR, params), 1);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(pc);
    BN_CTX_free(bc);
    BN_free(n), BN_free(p), BN_free(q), BN_free(iqmp), BN_free(e), BN_free(d), BN_free(p1), BN_free(q1);
    BN_free(phi), BN_free(dp), BN_free(dq);
    return out;
}

/* An RSA-2048 key (n, 65537) and its rsa_other_exponent twin (n, 65539), into |twin|. */
static EVP_PKEY *rsa_with_twin(EVP_PKEY **twin)
{
    EVP_PKEY *k;

    for (;;) {
        assert_non_null(k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048));
        if ((*twin = rsa_other_exponent(k)) != NULL)
            return k;
        EVP_PKEY_free(k);
    }
}

enum reuse_key { NEW_KEY, OLD_KEY, OLD_COMPRESSED, OLD_MODULUS };

/* The key a key_reuse case asks for, given the old certificate |old|, its |old_key| and that key's RSA
 * |twin|. */
static EVP_PKEY *reuse_asked(enum reuse_key which, EVP_PKEY *old_key, EVP_PKEY *twin, X509 *old)
{
    EVP_PKEY *asked = NULL;
    unsigned char *der = NULL;

    switch (which) {
    case NEW_KEY:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    case OLD_KEY:
        assert_int_equal(EVP_PKEY_up_ref(old_key), 1);
        return old_key;
    case OLD_MODULUS:
        assert_int_equal(EVP_PKEY_up_ref(twin), 1);
        assert_int_not_equal(EVP_PKEY_eq(twin, old_key), 1); /* another key to EVP_PKEY_eq */
        return twin;
    case OLD_COMPRESSED:
        assert_non_null(asked = EVP_PKEY_dup(old_key));
        assert_int_equal(EVP_PKEY_set_utf8_string_param(asked, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                                        OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_COMPRESSED),
                         1);
        /* the template then carries other bytes than the certificate's key */
        assert_int_not_equal(i2d_PUBKEY(asked, &der), i2d_X509_PUBKEY(X509_get_X509_PUBKEY(old), NULL));
        OPENSSL_free(der);
        return asked;
    }
    return NULL;
}

/* Sends the key_reuse request |body| for |asked| (taken) with |ctx|, signed with the old certificate. */
static X509 *reuse_send(OSSL_CMP_CTX *ctx, int body, EVP_PKEY *asked, X509 *old)
{
    X509_REQ *csr;
    X509 *got;

    switch (body) {
    case GW_CMP_BODY_KUR:
        assert_int_equal(OSSL_CMP_CTX_set1_oldCert(ctx, old), 1);
        assert_int_equal(OSSL_CMP_CTX_set0_newPkey(ctx, 1, asked), 1);
        return OSSL_CMP_exec_KUR_ses(ctx);
    case GW_CMP_BODY_CR:
        assert_int_equal(OSSL_CMP_CTX_set0_newPkey(ctx, 1, asked), 1);
        return OSSL_CMP_exec_CR_ses(ctx);
    case GW_CMP_BODY_IR:
        assert_int_equal(OSSL_CMP_CTX_set0_newPkey(ctx, 1, asked), 1);
        return OSSL_CMP_exec_IR_ses(ctx);
    default: /* p10cr: a CSR of |asked|, signed with it */
        csr = make_csr(asked, "test-device");
        OSSL_CMP_CTX_set1_p10CSR(ctx, csr);
        assert_int_equal(OSSL_CMP_CTX_set0_newPkey(ctx, 1, asked), 1); /* the client checks the cert's key */
        got = OSSL_CMP_exec_P10CR_ses(ctx);
        X509_REQ_free(csr);
        return got;
    }
}

/*
 * A request signed with a certificate the role issued, asking for that certificate's key (RFC 9483 §4.1.3:
 * a new key pair SHOULD be used): a kur renewing it, and an ir, cr or p10cr, which would renew it as well,
 * are refused with badCertTemplate before the CA is asked, logged not_authorized key_reuse. So is that key
 * with its EC point compressed, another encoding of the same key, and an RSA key of the same modulus under
 * another exponent, which shares its factors. Twins: a new key is certified; a role with "key_reuse":
 * "allow" certifies the same key.
 */
/* The statusString of a key_reuse refusal of a request of type |body|. */
static const char *key_reuse_text(int body)
{
    switch (body) {
    case GW_CMP_BODY_KUR:
        return TEXT_KEY_REUSE;
    case GW_CMP_BODY_IR:
        return TEXT_KEY_REUSE_ISSUED("an ir");
    case GW_CMP_BODY_CR:
        return TEXT_KEY_REUSE_ISSUED("a cr");
    default:
        return TEXT_KEY_REUSE_ISSUED("a p10cr");
    }
}

static void test_key_reuse(void **state)
{
    static const struct {
        const char *name;
        int body;
        const char *role_extra;
        int rsa; /* the old certificate certifies an RSA key, not an EC one */
        enum reuse_key key;
        int fail_bit; /* -1: certified */
    } cases[] = {
        {"kur, the old certificate's key", GW_CMP_BODY_KUR, NULL, 0, OLD_KEY,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"kur, the old key, its point compressed", GW_CMP_BODY_KUR, NULL, 0, OLD_COMPRESSED,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"kur, a new key", GW_CMP_BODY_KUR, NULL, 0, NEW_KEY, -1},
        {"kur, the old key, reuse refused by name", GW_CMP_BODY_KUR, "\"key_reuse\": \"refuse\"", 0, OLD_KEY,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"kur, the old key, reuse allowed", GW_CMP_BODY_KUR, "\"key_reuse\": \"allow\"", 0, OLD_KEY, -1},
        {"kur, the old key compressed, reuse allowed", GW_CMP_BODY_KUR, "\"key_reuse\": \"allow\"", 0,
         OLD_COMPRESSED, -1},
        {"kur, the old RSA key", GW_CMP_BODY_KUR, NULL, 1, OLD_KEY, OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"kur, the old RSA modulus, e = 65539", GW_CMP_BODY_KUR, NULL, 1, OLD_MODULUS,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"kur, the old RSA modulus, reuse allowed", GW_CMP_BODY_KUR, "\"key_reuse\": \"allow\"", 1,
         OLD_MODULUS, -1},
        {"kur, a new key after an RSA one", GW_CMP_BODY_KUR, NULL, 1, NEW_KEY, -1},
        {"cr, the old certificate's key", GW_CMP_BODY_CR, NULL, 0, OLD_KEY,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"cr, the old key, its point compressed", GW_CMP_BODY_CR, NULL, 0, OLD_COMPRESSED,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"cr, the old RSA modulus, e = 65539", GW_CMP_BODY_CR, NULL, 1, OLD_MODULUS,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"cr, a new key", GW_CMP_BODY_CR, NULL, 0, NEW_KEY, -1},
        {"cr, the old key, reuse allowed", GW_CMP_BODY_CR, "\"key_reuse\": \"allow\"", 0, OLD_KEY, -1},
        {"ir, the old certificate's key", GW_CMP_BODY_IR, NULL, 0, OLD_KEY,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"ir, a new key", GW_CMP_BODY_IR, NULL, 0, NEW_KEY, -1},
        {"p10cr, the old certificate's key", GW_CMP_BODY_P10CR, NULL, 0, OLD_KEY,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"p10cr, the old RSA modulus, e = 65539", GW_CMP_BODY_P10CR, NULL, 1, OLD_MODULUS,
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate},
        {"p10cr, a new key", GW_CMP_BODY_P10CR, NULL, 0, NEW_KEY, -1},
        {"p10cr, the old key, reuse allowed", GW_CMP_BODY_P10CR, "\"key_reuse\": \"allow\"", 0, OLD_KEY, -1},
    };
    EVP_PKEY *twin = NULL, *rsa = rsa_with_twin(&twin);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = cases[i].role_extra});
        struct client cl = {.env = e}, cl2 = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0), *again;
        EVP_PKEY *old_key;
        X509 *old, *got;
        char *logged;
        int intents;

        print_message("case: %s\n", cases[i].name);
        if (cases[i].rsa) {
            assert_int_equal(EVP_PKEY_up_ref(rsa), 1);
            assert_int_equal(OSSL_CMP_CTX_set0_newPkey(ctx, 1, rsa), 1);
        }
        assert_non_null(old = OSSL_CMP_exec_IR_ses(ctx));
        old_key = OSSL_CMP_CTX_get0_newPkey(ctx, 1);
        again = client_new(&cl2, SIG, old, old_key, NULL, NULL, 0);
        intents = audit_count(e, "intent", NULL, NULL, NULL);
        log_capture_start();
        log_level(GW_LOG_INFO);
        got = reuse_send(again, cases[i].body, reuse_asked(cases[i].key, old_key, twin, old), old);
        logged = log_capture_end();
        if (cases[i].fail_bit < 0) {
            if (got == NULL)
                fail_msg("%s: not certified", cases[i].name);
            assert_status(again, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
            assert_int_equal(audit_count(e, "intent", NULL, NULL, NULL), intents + 1);
        } else {
            if (got != NULL)
                fail_msg("%s: certified", cases[i].name);
            assert_status(again, OSSL_CMP_PKISTATUS_rejection, cases[i].fail_bit,
                          key_reuse_text(cases[i].body));
            assert_int_equal(audit_count(e, "intent", NULL, NULL, NULL), intents); /* the CA never asked */
            if (!logged_reason(logged, "not_authorized", "key_reuse"))
                fail_msg("%s: no not_authorized line with reason key_reuse in: %s", cases[i].name, logged);
        }
        free(logged);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        client_cleanup(&cl);
        client_cleanup(&cl2);
        OSSL_CMP_CTX_free(ctx);
        OSSL_CMP_CTX_free(again);
        env_free(e);
    }
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(twin);
}

/*
 * kur of an expired certificate: it authenticates nothing, so it renews nothing (RFC 4210 §5.3.5);
 * its twin, the same certificate re-signed within its validity, renews.
 */
static void test_kur_expired(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    EVP_PKEY *ca_key = load_key("ca.key");

    (void)state;
    assert_non_null(ca_key);
    for (int valid = 0; valid < 2; valid++) {
        struct client cl = {.env = e};
        X509 *old = X509_dup(client_cert);
        OSSL_CMP_CTX *kur;

        print_message("case: %s\n", valid ? "within its validity" : "expired");
        X509_gmtime_adj(X509_getm_notBefore(old), -7200);
        X509_gmtime_adj(X509_getm_notAfter(old), valid ? 3600 : -3600);
        assert_true(X509_sign(old, ca_key, EVP_sha256()) > 0);
        kur = client_new(&cl, SIG, old, client_key, NULL, NULL, 0);
        OSSL_CMP_CTX_set1_oldCert(kur, old);
        if (valid) {
            assert_non_null(OSSL_CMP_exec_KUR_ses(kur));
        } else {
            assert_null(OSSL_CMP_exec_KUR_ses(kur));
            assert_status(kur, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                          TEXT_UNTRUSTED);
            assert_int_equal(audit_count(e, "intent", NULL, NULL, NULL), 0);
        }
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(kur);
        X509_free(old);
    }
    EVP_PKEY_free(ca_key);
    env_free(e);
}

/*
 * A certificate's holder at the fake CA of |caps| (with GW_UP_CERT_STATUS, its status is asked for): a
 * client enrolled with the test client's certificate (|cl|, |ctx|), and a second (|cl2|, |req|) that signs
 * with the certificate it got (|cert|), for a kur, rr or genm. Returns |req|.
 */
struct holder {
    struct env *e;
    struct client cl, cl2;
    OSSL_CMP_CTX *ctx, *req;
    X509 *cert;
};

static OSSL_CMP_CTX *holder_new(struct holder *h, unsigned caps)
{
    h->e = env_new(CMP_DEFAULTS);
    h->cl = (struct client){.env = h->e};
    h->cl2 = (struct client){.env = h->e};
    h->ctx = client_new(&h->cl, SIG, client_cert, client_key, NULL, NULL, 0);
    env_fake(h->e, caps, FK_PLAIN);
    assert_non_null(h->cert = OSSL_CMP_exec_IR_ses(h->ctx));
    return h->req = client_new(&h->cl2, SIG, h->cert, OSSL_CMP_CTX_get0_newPkey(h->ctx, 1), NULL, NULL, 0);
}

static void holder_free(struct holder *h)
{
    client_cleanup(&h->cl);
    client_cleanup(&h->cl2);
    OSSL_CMP_CTX_free(h->ctx);
    OSSL_CMP_CTX_free(h->req);
    env_free(h->e);
}

/* kur: the upstream's view of the old certificate (the signer) counts; revoked -> certRevoked. */
static void test_kur_revoked(void **state)
{
    struct holder h;
    OSSL_CMP_CTX *kur = holder_new(&h, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CERT_STATUS);
    X509 *old = h.cert;

    (void)state;
    OSSL_CMP_CTX_set1_oldCert(kur, old);
    fake.revoked = 1;
    assert_null(OSSL_CMP_exec_KUR_ses(kur));
    assert_status(kur, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
                  "the signer certificate (serial ");
    assert_int_equal(fake.sign_calls, 1);
    fake.revoked = 0; /* twin */
    OSSL_CMP_CTX_reinit(kur);
    assert_non_null(OSSL_CMP_exec_KUR_ses(kur));
    assert_int_equal(fake.status_calls, 3); /* the ir's signer, then each kur's */
    holder_free(&h);
}

/*
 * A request whose messageTime is off is refused before its signer's revocation status is looked up: that
 * lookup may be a call to the CA (or to Redis), and the answer is badTime whatever it says. The signer is
 * a certificate the test CA issued, whose status the CA is asked for. Twin: the same kur on time.
 */
static void test_message_time_before_status(void **state)
{
    struct holder h;
    OSSL_CMP_CTX *kur = holder_new(&h, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CERT_STATUS);
    struct env *e = h.e;
    X509 *old = h.cert;

    (void)state;
    OSSL_CMP_CTX_set1_oldCert(kur, old);
    fake.status_calls = 0;
    gw_cmp_engine_set_clock(e->engine, skewed_clock);
    assert_null(OSSL_CMP_exec_KUR_ses(kur));
    assert_status(kur, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badTime, "off the server clock");
    assert_int_equal(fake.status_calls, 0);
    gw_cmp_engine_set_clock(e->engine, NULL);
    OSSL_CMP_CTX_reinit(kur);
    assert_non_null(OSSL_CMP_exec_KUR_ses(kur));
    assert_int_equal(fake.status_calls, 2); /* the kur's signer, then its certConf's */
    holder_free(&h);
}

/*
 * A byte-identical resend of a request is refused as a replay before its signer's revocation status is
 * looked up again, as a stale one is (test_message_time_before_status). Twin: the first kur was looked up.
 */
static void test_replay_before_status(void **state)
{
    struct holder h;
    OSSL_CMP_CTX *kur = holder_new(&h, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CERT_STATUS);
    struct env *e = h.e;
    X509 *old = h.cert;
    char desc[4096];

    (void)state;
    OSSL_CMP_CTX_set1_oldCert(kur, old);
    fake.status_calls = 0;
    assert_non_null(OSSL_CMP_exec_KUR_ses(kur));
    assert_int_equal(fake.status_calls, 2); /* the kur's signer, then its certConf's */
    resend_first(e, &h.cl2, desc, sizeof(desc));
    assert_non_null(strstr(desc, "replayed message"));
    assert_int_equal(fake.status_calls, 2);
    assert_int_equal(fake.sign_calls, 2); /* the ir's and the kur's */
    holder_free(&h);
}

/*
 * A request its credentials refused is not on record as seen: the replay cache is read before them but
 * written only once they passed, so the same bytes sent again are judged anew, not refused as a replay.
 * Twin: the resend of a kur that was answered is a replay (test_replay_before_status).
 */
static void test_refused_resend_no_replay(void **state)
{
    struct holder h;
    OSSL_CMP_CTX *kur = holder_new(&h, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CERT_STATUS);
    struct env *e = h.e;
    X509 *old = h.cert;
    char desc[4096];

    (void)state;
    OSSL_CMP_CTX_set1_oldCert(kur, old);
    fake.revoked = 1;
    assert_null(OSSL_CMP_exec_KUR_ses(kur));
    assert_status(kur, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
                  "the signer certificate (serial ");
    fake.revoked = 0;
    resend_first(e, &h.cl2, desc, sizeof(desc));
    assert_null(strstr(desc, "replayed message"));
    assert_non_null(strstr(desc, "certificate:"));
    assert_int_equal(fake.sign_calls, 2); /* the ir's and the resent kur's */
    holder_free(&h);
}

/*
 * The holder's rr for its own certificate, answered (revoked), sent again byte for byte is a replay, refused
 * as one before its signer's revocation status is read; a new rr for it is told by that read that the
 * certificate is already revoked (docs/errors.md rr_already_revoked). Neither asks the CA to revoke again.
 */
static void test_rr_resent_replay(void **state)
{
    struct holder h;
    OSSL_CMP_CTX *rr = holder_new(&h, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE | GW_UP_CERT_STATUS);
    struct env *e = h.e;
    X509 *cert = h.cert;
    char desc[4096];

    (void)state;
    OSSL_CMP_CTX_set1_oldCert(rr, cert);
    assert_non_null(OSSL_CMP_exec_RR_ses(rr));
    assert_int_equal(revoke_calls(e), 1);
    fake.status_calls = 0;
    resend_first(e, &h.cl2, desc, sizeof(desc));
    assert_non_null(strstr(desc, "replayed message"));
    assert_null(strstr(desc, "already revoked"));
    assert_int_equal(fake.status_calls, 0);
    OSSL_CMP_CTX_reinit(rr);
    assert_null(OSSL_CMP_exec_RR_ses(rr));
    assert_status(rr, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
                  "the certificate is already revoked");
    assert_int_equal(revoke_calls(e), 1);
    holder_free(&h);
}

/*
 * An rr whose reason is removeFromCRL is refused before its signer's revocation status is looked up: the
 * reason is in the message, and the answer is that refusal whatever the CA says. Twin: the holder's rr with
 * another reason, looked up (its credential, then whether the CA revoked it already) and revoked.
 */
static void test_rr_reason_before_status(void **state)
{
    struct holder h;
    OSSL_CMP_CTX *rr = holder_new(&h, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE | GW_UP_CERT_STATUS);
    struct env *e = h.e;
    X509 *cert = h.cert;

    (void)state;
    OSSL_CMP_CTX_set1_oldCert(rr, cert);
    OSSL_CMP_CTX_set_option(rr, OSSL_CMP_OPT_REVOCATION_REASON, CRL_REASON_REMOVE_FROM_CRL);
    fake.status_calls = 0;
    assert_null(OSSL_CMP_exec_RR_ses(rr));
    assert_status(rr, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "revocation reason removeFromCRL releases a certificate from hold");
    assert_int_equal(fake.status_calls, 0);
    OSSL_CMP_CTX_reinit(rr);
    OSSL_CMP_CTX_set_option(rr, OSSL_CMP_OPT_REVOCATION_REASON, CRL_REASON_KEY_COMPROMISE);
    assert_non_null(OSSL_CMP_exec_RR_ses(rr));
    assert_status(rr, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.status_calls, 2);
    assert_int_equal(revoke_calls(e), 1);
    holder_free(&h);
}

/*
 * A genm asking for an infoType the gateway does not answer is refused before its signer's revocation
 * status is looked up: its answer does not depend on it. Twin: a genm for caCerts, looked up and answered.
 */
static void test_genm_unknown_before_status(void **state)
{
    struct holder h;
    OSSL_CMP_CTX *genm = holder_new(&h, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CERT_STATUS);
    STACK_OF(OSSL_CMP_ITAV) *itavs;

    (void)state;
    assert_int_equal(
        OSSL_CMP_CTX_push0_genm_ITAV(genm, OSSL_CMP_ITAV_create(OBJ_txt2obj("1.2.3.4.5", 1), NULL)), 1);
    fake.status_calls = 0;
    assert_null(OSSL_CMP_exec_GENM_ses(genm));
    assert_status(genm, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "infoType 1.2.3.4.5 is not supported");
    assert_int_equal(fake.status_calls, 0);
    OSSL_CMP_CTX_reinit(genm);
    assert_int_equal(
        OSSL_CMP_CTX_push0_genm_ITAV(genm, OSSL_CMP_ITAV_create(OBJ_txt2obj("1.3.6.1.5.5.7.4.17", 1), NULL)),
        1);
    assert_non_null(itavs = OSSL_CMP_exec_GENM_ses(genm));
    assert_int_equal(fake.status_calls, 1);
    sk_OSSL_CMP_ITAV_pop_free(itavs, OSSL_CMP_ITAV_free);
    holder_free(&h);
}

/* An upstream that issues under two CAs (a Vault mount during a rotation) and serves one CRL. */
static time_t two_ca_now;

static time_t two_ca_clock(void)
{
    return two_ca_now;
}

/* A certificate of |key| named |cn|, signed by |ca| with |ca_key| (NULL: by the demo root), with key ids. */
static X509 *cert_under(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key, const char *cn, long serial, int is_ca)
{
    X509 *x = tu_make_cert(key, ca_key, ca, cn, serial);
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    static const struct {
        int nid;
        const char *ca, *ee;
    } exts[] = {
        {NID_basic_constraints, "critical,CA:TRUE,pathlen:0", "critical,CA:FALSE"},
        {NID_key_usage, "critical,keyCertSign,cRLSign", "critical,digitalSignature"},
        {NID_subject_key_identifier, "hash", "hash"},
        {NID_authority_key_identifier, "keyid:always", "keyid:always"},
    };

    X509V3_set_ctx(&v3, ca != NULL ? ca : x, x, NULL, NULL, 0); /* no |ca|: self-signed */
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        assert_non_null(ext = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, is_ca ? exts[i].ca : exts[i].ee));
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    return x;
}

/*
 * Two certificates of the signer's key and name under the route's trust, one without digitalSignature
 * (the same key certified for key encipherment too): the one that may sign is the signer, as it is
 * where the client sends it alone. Twin: where only the one without it is sent, the signature verifies
 * with it and the client is told of the key usage.
 */
static void test_signer_twin_key_usage(void **state)
{
    EVP_PKEY *ca_key = load_key("ca.key");
    X509 *twin = X509_dup(client_cert);
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    STACK_OF(X509) *extra = sk_X509_new_null();

    (void)state;
    assert_int_equal(ASN1_BIT_STRING_set_bit(ku, 2, 1), 1); /* keyEncipherment */
    assert_int_equal(X509_add1_ext_i2d(twin, NID_key_usage, ku, 1, X509V3_ADD_REPLACE), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(twin), 0x7717), 1);
    assert_true(X509_sign(twin, ca_key, EVP_sha256()) > 0);
    assert_int_equal(sk_X509_push(extra, twin), 1);
    for (int alone = 0; alone <= 1; alone++) {
        struct env *e = env_new(CMP_DEFAULTS);
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, alone ? twin : client_cert, client_key, NULL, NULL, 0);
        X509 *issued;

        if (!alone)
            assert_int_equal(OSSL_CMP_CTX_set1_extraCertsOut(ctx, extra), 1);
        issued = OSSL_CMP_exec_IR_ses(ctx);
        if (alone)
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                          "the signer certificate lacks the digitalSignature key usage");
        else
            assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
        X509_free(issued);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
    sk_X509_free(extra);
    ASN1_BIT_STRING_free(ku);
    X509_free(twin);
    EVP_PKEY_free(ca_key);
}

/*
 * A signer's chain is verified at security level 2 (GW_SIGNER_AUTH_LEVEL): a signer certificate the
 * trusted CA signed with SHA-1, one under an intermediate signed with SHA-1 that the client sends in
 * extraCerts, and one for an RSA key of 1024 bits authenticate no ir nor kur, each refused naming why;
 * and a message protected with a SHA-1 signature is refused whatever signed it. Twins: the same
 * certificates signed with SHA-256, and the demo client's SHA-256 protection, issue.
 */
static void test_weak_signer(void **state)
{
    EVP_PKEY *ca_key = load_key("ca.key"), *mid_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    X509 *mid = cert_under(ca_cert, ca_key, mid_key, "weak intermediate", 0x5EC1, 1);
    struct {
        const char *name;
        X509 *issuer;  /* NULL: the demo root */
        EVP_PKEY *key; /* the signer's */
        const EVP_MD *md, *mid_md;
        int digest_nid; /* the client's protection digest; 0 = SHA-256 */
        int fail_bit;   /* -1: issued */
        const char *text;
    } cases[] = {
        {"signer signed with SHA-1", NULL, client_key, EVP_sha1(), NULL, 0,
         OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
         "message protection could not be verified: the signer certificate is signed with a hash under 112 "
         "bits of security (SHA-1, MD5)"},
        {"signer signed with SHA-256", NULL, client_key, EVP_sha256(), NULL, 0, -1, NULL},
        {"intermediate signed with SHA-1", mid, client_key, EVP_sha256(), EVP_sha1(), 0,
         OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
         "message protection could not be verified: the signer certificate chains through a CA certificate "
         "signed with a hash under 112 bits of security (SHA-1, MD5)"},
        {"intermediate signed with SHA-256", mid, client_key, EVP_sha256(), EVP_sha256(), 0, -1, NULL},
        {"signer key RSA 1024", NULL, rsa1024, EVP_sha256(), NULL, 0, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
         "message protection could not be verified: the signer certificate certifies a key under 112 bits of "
         "security (RSA under 2048 bits)"},
        {"signer key RSA 2048", NULL, rsa2048, EVP_sha256(), NULL, 0, -1, NULL},
        {"protection signed with SHA-1", NULL, client_key, EVP_sha256(), NULL, NID_sha1,
         OSSL_CMP_PKIFAILUREINFO_badAlg,
         "message protection is signed with a hash under 112 bits of security (ecdsa-with-SHA1): sign with "
         "SHA-256 or stronger"},
        {"protection signed with SHA-224", NULL, client_key, EVP_sha256(), NULL, NID_sha224, -1, NULL},
    };

    (void)state;
    assert_true(ca_key != NULL && mid_key != NULL && rsa1024 != NULL && rsa2048 != NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* kur_any_signer: a signer under the test's intermediate is no certificate the upstream issued */
        struct env *e =
            env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = "\"kur_any_signer\": true"});
        EVP_PKEY *by = cases[i].issuer != NULL ? mid_key : ca_key;
        X509 *signer = cert_under(cases[i].issuer != NULL ? cases[i].issuer : ca_cert, by, cases[i].key,
                                  "weak-signer", 0x5EC2 + (long)i, 0);
        STACK_OF(X509) *chain = sk_X509_new_null();

        print_message("case: %s\n", cases[i].name);
        assert_true(X509_sign(signer, by, cases[i].md) > 0);
        if (cases[i].issuer != NULL) {
            assert_true(X509_sign(mid, ca_key, cases[i].mid_md) > 0);
            assert_int_equal(sk_X509_push(chain, mid), 1);
        }
        for (int kur = 0; kur < 2; kur++) {
            struct client cl = {.env = e};
            OSSL_CMP_CTX *ctx = client_new(&cl, SIG, signer, cases[i].key, NULL, NULL, 0);
            X509 *got;

            /* never an empty stack: 3.0 then leaves the context's untrusted list NULL */
            if (sk_X509_num(chain) > 0)
                assert_int_equal(OSSL_CMP_CTX_set1_untrusted(ctx, chain), 1);
            if (cases[i].digest_nid != 0)
                assert_int_equal(
                    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_DIGEST_ALGNID, cases[i].digest_nid), 1);
            if (kur)
                assert_int_equal(OSSL_CMP_CTX_set1_oldCert(ctx, signer), 1);
            got = kur ? OSSL_CMP_exec_KUR_ses(ctx) : OSSL_CMP_exec_IR_ses(ctx);
            if (cases[i].fail_bit < 0) {
                assert_non_null(got);
            } else {
                assert_null(got);
                assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, cases[i].fail_bit, cases[i].text);
                assert_int_equal(audit_count(e, "intent", NULL, NULL, NULL), 0);
            }
            client_cleanup(&cl);
            OSSL_CMP_CTX_free(ctx);
        }
        sk_X509_free(chain);
        X509_free(signer);
        env_free(e);
    }
    X509_free(mid);
    EVP_PKEY_free(ca_key), EVP_PKEY_free(mid_key), EVP_PKEY_free(rsa1024), EVP_PKEY_free(rsa2048);
}

/*
 * The twin of test_key_reuse: a certificate the role did not issue (under an intermediate no upstream
 * holds, as a vendor's is) enrols its holder with a cr for its own key; a kur of it for that key, on a
 * role that takes such a kur ("kur_any_signer"), is still refused key_reuse.
 */
static void test_key_reuse_other_signer(void **state)
{
    EVP_PKEY *ca_key = load_key("ca.key"), *mid_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *mid = cert_under(ca_cert, ca_key, mid_key, "vendor intermediate", 0x5EC5, 1);
    X509 *signer = cert_under(mid, mid_key, key, "vendor-device", 0x5EC6, 0);
    struct env *e =
        env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = "\"kur_any_signer\": true"});
    STACK_OF(X509) *chain = sk_X509_new_null();

    (void)state;
    assert_int_equal(sk_X509_push(chain, mid), 1);
    for (int kur = 0; kur < 2; kur++) {
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, signer, key, NULL, NULL, 0);
        X509 *got;

        assert_int_equal(OSSL_CMP_CTX_set1_untrusted(ctx, chain), 1);
        assert_int_equal(EVP_PKEY_up_ref(key), 1);
        got = reuse_send(ctx, kur ? GW_CMP_BODY_KUR : GW_CMP_BODY_CR, key, signer);
        if (kur) {
            assert_null(got);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                          TEXT_KEY_REUSE);
        } else {
            assert_non_null(got);
            assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
        }
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
    }
    sk_X509_free(chain);
    X509_free(signer);
    X509_free(mid);
    env_free(e);
    EVP_PKEY_free(ca_key), EVP_PKEY_free(mid_key), EVP_PKEY_free(key);
}

/* crl_of with extension |ext| (may be NULL; taken) on the CRL, or with |on_entry| on |revoked|'s entry. */
static unsigned char *crl_ext_of(X509 *ca, EVP_PKEY *key, time_t this_update, time_t next_update,
                                 X509 *revoked, X509_EXTENSION *ext, int on_entry, size_t *len)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = ASN1_TIME_set(NULL, this_update), *n = ASN1_TIME_set(NULL, next_update);
    unsigned char *der = NULL;
    int l;

    X509_CRL_set_version(crl, X509_CRL_VERSION_2);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca));
    X509_CRL_set1_lastUpdate(crl, t);
    X509_CRL_set1_nextUpdate(crl, n);
    if (revoked != NULL) {
        X509_REVOKED *rev = X509_REVOKED_new();

        X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(revoked));
        X509_REVOKED_set_revocationDate(rev, t);
        if (on_entry)
            assert_int_equal(X509_REVOKED_add_ext(rev, ext, -1), 1);
        X509_CRL_add0_revoked(crl, rev);
    }
    if (ext != NULL && !on_entry)
        assert_int_equal(X509_CRL_add_ext(crl, ext, -1), 1);
    X509_EXTENSION_free(ext);
    assert_true(X509_CRL_sort(crl) == 1 && X509_CRL_sign(crl, key, EVP_sha256()) > 0);
    assert_true((l = i2d_X509_CRL(crl, &der)) > 0);
    *len = (size_t)l;
    ASN1_TIME_free(t);
    ASN1_TIME_free(n);
    X509_CRL_free(crl);
    return der;
}

/* A CRL of |ca| made at |this_update|, good until |next_update|, revoking |revoked| (may be NULL); DER. */
static unsigned char *crl_of(X509 *ca, EVP_PKEY *key, time_t this_update, time_t next_update, X509 *revoked,
                             size_t *len)
{
    return crl_ext_of(ca, key, this_update, next_update, revoked, NULL, 0, len);
}

struct two_cas {
    struct env *env;
    X509 *own_ca; /* the local conf's, set aside while the upstream issues under two CAs */
    X509 *ca1, *ca2, *x1, *x1b, *x2;
    EVP_PKEY *ca1_key, *ca2_key, *x1_key, *x1b_key, *x2_key;
};

/* The configuration of |e|'s "local" upstream. */
static struct gw_upstream_conf *local_conf(const struct env *e)
{
    for (size_t i = 0; i < e->cfg->n_upstreams; i++)
        if (strcmp(e->cfg->upstreams[i].name, "local") == 0)
            return &e->cfg->upstreams[i];
    fail_msg("no upstream \"local\"");
    return NULL;
}

/*
 * The "local" upstream as a CRL-publishing adapter of |caps| that issues under two CAs: the demo
 * issuing CA (CA1) and a second one under the same root (CA2; |rekeyed|: CA1's name with another key, CA1
 * rekeyed); x1 and x1b are CA1's, x2 is CA2's. |cmp|: the "cmp" section's members.
 */
static void two_cas_open_as(struct two_cas *t, unsigned caps, const char *cmp, int rekeyed)
{
    EVP_PKEY *root_key = load_key("ca.key");
    struct gw_upstream_conf *uc;

    memset(t, 0, sizeof(*t));
    t->env = env_parse(&(struct env_opts){.cmp = cmp});
    uc = local_conf(t->env);
    t->ca1 = load_cert("issuing.pem");
    t->ca1_key = load_key("issuing.key");
    t->ca2_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    t->ca2 = cert_under(ca_cert, root_key, t->ca2_key, "cmpgw test issuing CA 2", 2001, 1);
    if (rekeyed) {
        assert_int_equal(X509_set_subject_name(t->ca2, X509_get_subject_name(t->ca1)), 1);
        assert_true(X509_sign(t->ca2, root_key, EVP_sha256()) > 0);
    }
    t->x1_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    t->x1 = cert_under(t->ca1, t->ca1_key, t->x1_key, "device-of-ca1", 3001, 0);
    t->x1b_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    t->x1b = cert_under(t->ca1, t->ca1_key, t->x1b_key, "revoked-device-of-ca1", 3002, 0);
    t->x2_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    t->x2 = cert_under(t->ca2, t->ca2_key, t->x2_key, "revoked-device-of-ca2", 3003, 0);
    /* an issuer_ca bundle of root, CA1 and CA2: CA1 and CA2 issue end-entity certificates */
    t->own_ca = uc->own_ca;
    uc->own_ca = NULL;
    assert_int_equal(X509_add_cert(uc->issuer_certs, t->ca2, X509_ADD_FLAG_UP_REF), 1);
    env_start(t->env);
    env_fake(t->env, caps, FK_PLAIN);
    two_ca_now = time(NULL);
    gw_cmp_engine_set_clock(t->env->engine, two_ca_clock);
    EVP_PKEY_free(root_key);
}

static void two_cas_open_cmp(struct two_cas *t, unsigned caps, const char *cmp)
{
    two_cas_open_as(t, caps, cmp, 0);
}

static void two_cas_open(struct two_cas *t, unsigned caps)
{
    two_cas_open_cmp(t, caps, CMP_DEFAULTS);
}

static void two_cas_close(struct two_cas *t)
{
    local_conf(t->env)->own_ca = t->own_ca;
    env_free(t->env);
    X509_free(t->ca1);
    X509_free(t->ca2);
    X509_free(t->x1);
    X509_free(t->x1b);
    X509_free(t->x2);
    EVP_PKEY_free(t->ca1_key);
    EVP_PKEY_free(t->ca2_key);
    EVP_PKEY_free(t->x1_key);
    EVP_PKEY_free(t->x1b_key);
    EVP_PKEY_free(t->x2_key);
}

/* An ir signed with |cert| (its CA sent along in extraCerts): the answer's status, failInfo bit and text. */
static void ir_as(struct two_cas *t, X509 *cert, EVP_PKEY *key, X509 *ca, int status, int fail_bit,
                  const char *text)
{
    struct client cl = {.env = t->env};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, cert, key, NULL, NULL, 0);
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *issued;

    sk_X509_push(chain, ca);
    assert_int_equal(OSSL_CMP_CTX_set1_untrusted(ctx, chain), 1);
    issued = OSSL_CMP_exec_IR_ses(ctx);
    assert_status(ctx, status, fail_bit, text);
    X509_free(issued);
    sk_X509_free(chain);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
}

/*
 * A certificate is looked up only in the CRL of the CA that issued it: with CA1's CRL cached, a
 * certificate of CA2 is not "not revoked" but of unknown status (refused) until the upstream serves
 * CA2's CRL; and each CA keeps its newest CRL, so that a replayed older CRL of CA1 cannot undo a
 * revocation after CA2's was served in between.
 */
static void test_status_two_cas_crl(void **state)
{
    struct two_cas t;
    unsigned char *crl1, *crl1_old, *crl2;
    size_t crl1_len, crl1_old_len, crl2_len;
    time_t now;

    (void)state;
    two_cas_open(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL);
    now = two_ca_now;
    crl1 = crl_of(t.ca1, t.ca1_key, now - 60, now + 20, t.x1b, &crl1_len);
    crl1_old = crl_of(t.ca1, t.ca1_key, now - 120, now + 3600, NULL, &crl1_old_len);
    crl2 = crl_of(t.ca2, t.ca2_key, now - 60, now + 86400, t.x2, &crl2_len);

    fake.crl = crl1, fake.crl_len = crl1_len;
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.crl_calls, 1);
    /* CA1's CRL says nothing about CA2's certificates */
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
          "cannot be checked now (no CRL of upstream local for its CA \"cmpgw test issuing CA 2\"");
    assert_int_equal(fake.crl_calls, 2);
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
          "(it serves the CRL of its CA \"cmpgw demo issuing CA\" only)");
    assert_int_equal(fake.crl_calls, 2); /* not asked again at once */
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");

    /* the upstream serves CA2's CRL now (its default issuer changed) */
    two_ca_now = now + 10;
    fake.crl = crl2, fake.crl_len = crl2_len;
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    assert_int_equal(fake.crl_calls, 3);
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          NULL); /* CA1's CRL is still current: kept */
    assert_int_equal(fake.crl_calls, 3);

    /* past CA1's nextUpdate (within the grace) an older CRL of CA1 is replayed: refused */
    two_ca_now = now + 30;
    fake.crl = crl1_old, fake.crl_len = crl1_old_len;
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          NULL);
    assert_int_equal(fake.crl_calls, 4);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);

    /* a revocation through cmpgw: no CRL of either CA serves until one fetched after it */
    two_ca_now = now + 40;
    fake.crl = crl2, fake.crl_len = crl2_len;
    cmp_status_invalidate(t.env->engine, gw_upstream_set_get0(t.env->ups, "local"), NULL);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
          "no CRL of upstream local since a revocation");
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked, NULL);

    free(crl1);
    free(crl1_old);
    free(crl2);
    two_cas_close(&t);
}

/* crl_of numbered |number| (RFC 5280 §5.2.3). */
static unsigned char *numbered_crl_of(X509 *ca, EVP_PKEY *key, time_t this_update, time_t next_update,
                                      X509 *revoked, long number, size_t *len)
{
    ASN1_INTEGER *n = ASN1_INTEGER_new();
    X509_EXTENSION *ext;

    assert_int_equal(ASN1_INTEGER_set(n, number), 1);
    assert_non_null(ext = X509V3_EXT_i2d(NID_crl_number, 0, n));
    ASN1_INTEGER_free(n);
    return crl_ext_of(ca, key, this_update, next_update, revoked, ext, 0, len);
}

/*
 * A CA's CRLs are ordered by their numbers where they carry them, not by their dates: one numbered past
 * the CRL held but dated before it (the CA's clock stepped back since it signed that one, within the
 * clock skew allowed) replaces it, and its revocation counts; the twin, one numbered below the CRL held
 * but dated after it, is refused as older, and the revocation stands.
 */
static void test_status_crl_numbers(void **state)
{
    struct two_cas t;
    unsigned char *ahead, *newer, *lower;
    size_t ahead_len, newer_len, lower_len;
    time_t now;

    (void)state;
    two_cas_open(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL);
    now = two_ca_now;
    ahead = numbered_crl_of(t.ca1, t.ca1_key, now + 200, now + 86400, NULL, 5, &ahead_len);
    newer = numbered_crl_of(t.ca1, t.ca1_key, now + 100, now + 86400, t.x1b, 6, &newer_len);
    lower = numbered_crl_of(t.ca1, t.ca1_key, now + 250, now + 86400, NULL, 4, &lower_len);
    fake.crl = ahead, fake.crl_len = ahead_len;
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    two_ca_now = now + GW_STATUS_REFRESH_SECS;
    fake.crl = newer, fake.crl_len = newer_len;
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    two_ca_now = now; /* a clock gone back fetches again: a client's messageTime allows no later one */
    fake.crl = lower, fake.crl_len = lower_len;
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    assert_int_equal(fake.crl_calls, 3);
    free(ahead);
    free(newer);
    free(lower);
    two_cas_close(&t);
}

/* How many times |needle| occurs in |hay|. */
static int occurrences(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/*
 * A CA whose status cannot be had refuses every request of its certificates, as fast as they come: its
 * status_unknown lines are paced by that outage, the first at once and the rest held back and counted. The
 * outage is the CA's: the other CA of the upstream, whose CRL serves, neither ends it nor is held back by it.
 * An outage still open as the engine goes says its count in one line more.
 */
static void test_status_unknown_paced(void **state)
{
    struct two_cas t;
    unsigned char *crl1;
    size_t crl1_len;
    char *logged;

    (void)state;
    two_cas_open(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL);
    crl1 = crl_of(t.ca1, t.ca1_key, two_ca_now - 60, two_ca_now + 3600, NULL, &crl1_len);
    fake.crl = crl1, fake.crl_len = crl1_len;
    log_capture_start();
    for (int k = 0; k < 3; k++) {
        ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
              "cannot be checked now (no CRL of upstream local for its CA \"cmpgw test issuing CA 2\"");
        ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    }
    logged = log_capture_end();
    if (occurrences(logged, "\"event\":\"status_unknown\"") != 1 ||
        strstr(logged, "\"suppressed\":\"0\"") == NULL || strstr(logged, "status_recovered") != NULL)
        fail_msg("not one status_unknown line and no end in: %s", logged);
    free(logged);
    log_capture_start();
    two_cas_close(&t);
    logged = log_capture_end();
    if (occurrences(logged, "\"event\":\"status_unknown\"") != 1 ||
        strstr(logged, "\"upstream\":\"local\",\"suppressed\":\"2\"") == NULL)
        fail_msg("no status_unknown line with the 2 held back in: %s", logged);
    free(logged);
    free(crl1);
}

/*
 * A revocation through cmpgw makes stale the CRL of the revoked certificate's CA only: another CA's CRL of
 * the same upstream cannot list it and is used on. Once, every CA's of the revoking upstream was marked,
 * and the next check of each fetched its CRL again.
 */
static void test_status_revoked_marks_its_ca(void **state)
{
    struct two_cas t;
    unsigned char *crl1, *crl2;
    size_t crl1_len, crl2_len;

    (void)state;
    two_cas_open(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL);
    crl1 = crl_of(t.ca1, t.ca1_key, two_ca_now - 60, two_ca_now + 3600, NULL, &crl1_len);
    crl2 = crl_of(t.ca2, t.ca2_key, two_ca_now - 60, two_ca_now + 3600, NULL, &crl2_len);
    fake.crl = crl1, fake.crl_len = crl1_len;
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    fake.crl = crl2, fake.crl_len = crl2_len;
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.crl_calls, 2);

    /* x1b revoked through "local": CA2's CRL is not fetched again; CA1's is, and the upstream serves CA2's */
    cmp_status_invalidate(t.env->engine, gw_upstream_set_get0(t.env->ups, "local"), t.x1b);
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.crl_calls, 2);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
          "no CRL of upstream local since a revocation");
    assert_int_equal(fake.crl_calls, 3);

    free(crl1);
    free(crl2);
    two_cas_close(&t);
}

/* The index of |ca| among the CAs the "local" upstream of |e| issues under, as its CRL cache numbers them. */
static int local_ca_index(const struct env *e, X509 *ca)
{
    STACK_OF(X509) *cas = gw_upstream_conf_issuing_cas(local_conf(e));
    int at = -1;

    for (int j = 0; j < sk_X509_num(cas) && at < 0; j++)
        if (X509_cmp(sk_X509_value(cas, j), ca) == 0)
            at = j;
    sk_X509_pop_free(cas, X509_free);
    assert_true(at >= 0);
    return at;
}

/*
 * A CA rekeyed under its name (CA2: CA1's name, another key) may sign with its new key the CRL that lists
 * a certificate of its old one: a revocation of CA1's x1b through cmpgw makes the next genm fetch again
 * where the last filed a CRL of CA2. Once, only the slot of the key that signed x1b was marked, and genms
 * were answered with CA2's CRL of before the revocation for up to GW_GENM_CRL_SECS. Its twin: a
 * certificate of that name that none of the upstream's CAs signed (a namesake's) marks nothing.
 */
static void test_status_revoked_marks_rekeyed_ca(void **state)
{
    struct two_cas t;
    struct gw_upstream *up;
    struct cmp_call c = {0};
    struct cmp_crl_failure f = {.fault = CMP_CRL_NOT_SERVED, .why = "the test CA is down"};
    EVP_PKEY *other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *namesake, *by_namesake;
    X509_CRL *filed, *crl = NULL, *newer = NULL;
    const unsigned char *p;
    unsigned char *der;
    unsigned long ticket = 0;
    size_t len;

    (void)state;
    two_cas_open_as(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL, CMP_DEFAULTS, 1);
    up = gw_upstream_set_get0(t.env->ups, "local");
    c.e = t.env->engine;
    c.now = two_ca_now;
    namesake = cert_under(ca_cert, other_key, other_key, "namesake", 2002, 1);
    assert_int_equal(X509_set_subject_name(namesake, X509_get_subject_name(t.ca1)), 1);
    by_namesake = cert_under(namesake, other_key, t.x1_key, "device-of-namesake", 3004, 0);
    /* a genm's fetch files CA2's CRL */
    der = crl_of(t.ca2, t.ca2_key, two_ca_now - 60, two_ca_now + 3600, NULL, &len);
    p = der;
    assert_non_null(filed = d2i_X509_CRL(NULL, &p, (long)len));
    assert_int_equal(cmp_status_relay_get(&c, up, NULL, &crl, &f, &ticket), CMP_RELAY_FETCH);
    cmp_status_relay_put(&c, up, NULL, filed, local_ca_index(t.env, t.ca2), ticket, NULL, &newer);
    assert_null(newer);

    cmp_status_invalidate(t.env->engine, up, by_namesake);
    assert_int_equal(cmp_status_relay_get(&c, up, NULL, &crl, &f, &ticket), CMP_RELAY_HIT);
    assert_ptr_equal(crl, filed);
    X509_CRL_free(crl);
    crl = NULL;
    cmp_status_invalidate(t.env->engine, up, t.x1b);
    assert_int_equal(cmp_status_relay_get(&c, up, NULL, &crl, &f, &ticket), CMP_RELAY_FETCH);
    assert_null(crl);
    cmp_status_relay_put(&c, up, NULL, NULL, -1, ticket, &f, &newer);

    X509_CRL_free(filed);
    free(der);
    X509_free(namesake);
    X509_free(by_namesake);
    EVP_PKEY_free(other_key);
    two_cas_close(&t);
}

/* A genm's fetch of the CRL of "local" in flight (cmp_status_relay_get), ended after a while with none. */
struct genm_flight {
    struct gw_cmp_engine *engine;
    struct gw_upstream *up;
    atomic_int started;
};

static void *genm_flight_fails(void *arg)
{
    struct genm_flight *g = arg;
    struct cmp_call c = {.e = g->engine, .now = two_ca_now};
    struct cmp_crl_failure f = {.fault = CMP_CRL_NOT_SERVED, .why = "the test CA is down"};
    X509_CRL *crl = NULL;
    unsigned long ticket = 0;
    int got = cmp_status_relay_get(&c, g->up, NULL, &crl, &f, &ticket);

    g->started = 1;
    if (got != CMP_RELAY_FETCH)
        return NULL;
    usleep(300 * 1000); /* the signer's check comes meanwhile, and waits */
    cmp_status_relay_put(&c, g->up, NULL, NULL, -1, ticket, &f, &crl);
    return crl == NULL ? g : NULL;
}

/*
 * A signer's revocation check that finds a genm fetching the CRL waits for that fetch; when it ends with
 * none of the signer's CA (it failed, gave another CA's, or one too large to pass on), the check fetches
 * its own rather than refuse a certificate of unknown status.
 */
static void test_status_after_genm_fetch(void **state)
{
    struct two_cas t;
    struct genm_flight g = {0};
    unsigned char *crl1;
    size_t crl1_len;
    pthread_t th;
    void *fetched;

    (void)state;
    two_cas_open(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL);
    crl1 = crl_of(t.ca1, t.ca1_key, two_ca_now - 60, two_ca_now + 3600, t.x1b, &crl1_len);
    fake.crl = crl1, fake.crl_len = crl1_len;
    g.engine = t.env->engine;
    g.up = gw_upstream_set_get0(t.env->ups, "local");
    assert_int_equal(pthread_create(&th, NULL, genm_flight_fails, &g), 0);
    while (!g.started)
        usleep(1000);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(pthread_join(th, &fetched), 0);
    assert_ptr_equal(fetched, &g);
    assert_int_equal(fake.crl_calls, 1);
    free(crl1);
    two_cas_close(&t);
}

/*
 * Only a complete CRL of the CA says a certificate is not revoked: a delta CRL lists the revocations
 * since its base only, one with an issuingDistributionPoint a part of the CA's certificates or
 * reasons, and one with a critical extension the gateway does not read, on itself or on an entry,
 * may narrow it in a way it cannot tell (RFC 5280 §5.2: not to be used). Each is refused: none of
 * them lists x1b, which stays refused until a complete CRL says it is revoked.
 */
static void test_status_partial_crl(void **state)
{
    ASN1_OCTET_STRING *empty = ASN1_OCTET_STRING_new();
    ASN1_INTEGER *base = ASN1_INTEGER_new();
    ASN1_OBJECT *unknown = OBJ_txt2obj("1.3.6.1.4.1.99999.1", 1);
    struct {
        X509_EXTENSION *ext;
        int on_entry; /* of x1's entry, not of the CRL */
        const char *why;
    } partial[] = {
        {ASN1_INTEGER_set(base, 1) == 1 ? X509V3_EXT_i2d(NID_delta_crl, 1, base) : NULL, 0,
         "it serves a delta CRL"},
        {X509V3_EXT_conf_nid(NULL, NULL, NID_issuing_distribution_point, "critical,onlyuser:TRUE"), 0,
         "it serves a partial CRL (issuingDistributionPoint)"},
        {X509_EXTENSION_create_by_OBJ(NULL, unknown, 1, empty), 0,
         "unknown critical extension 1.3.6.1.4.1.99999.1"},
        {X509_EXTENSION_create_by_OBJ(NULL, unknown, 1, empty), 1,
         "unknown critical extension 1.3.6.1.4.1.99999.1"},
    };
    struct two_cas t;
    unsigned char *der;
    size_t len;

    (void)state;
    two_cas_open(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL);
    for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
        assert_non_null(partial[i].ext);
        two_ca_now += GW_STATUS_RETRY_SECS; /* past the wait after the last refused fetch */
        der = crl_ext_of(t.ca1, t.ca1_key, two_ca_now - 60, two_ca_now + 3600,
                         partial[i].on_entry ? t.x1 : NULL, partial[i].ext, partial[i].on_entry, &len);
        fake.crl = der, fake.crl_len = len;
        ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection,
              OSSL_CMP_PKIFAILUREINFO_systemUnavail, partial[i].why);
        assert_int_equal(fake.crl_calls, (int)i + 1);
        free(der);
    }
    two_ca_now += GW_STATUS_RETRY_SECS;
    der = crl_of(t.ca1, t.ca1_key, two_ca_now - 60, two_ca_now + 3600, t.x1b, &len);
    fake.crl = der, fake.crl_len = len;
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          NULL);
    fake.crl = NULL;
    free(der);
    ASN1_OBJECT_free(unknown);
    ASN1_INTEGER_free(base);
    ASN1_OCTET_STRING_free(empty);
    two_cas_close(&t);
}

/* The holder's rr of |cert| (its CA sent along): accepted. */
static void rr_as(struct two_cas *t, X509 *cert, EVP_PKEY *key, X509 *ca)
{
    struct client cl = {.env = t->env};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, cert, key, NULL, NULL, 0);
    STACK_OF(X509) *chain = sk_X509_new_null();

    sk_X509_push(chain, ca);
    assert_int_equal(OSSL_CMP_CTX_set1_untrusted(ctx, chain), 1);
    assert_int_equal(OSSL_CMP_CTX_set1_oldCert(ctx, cert), 1);
    assert_non_null(OSSL_CMP_exec_RR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    sk_X509_free(chain);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
}

/*
 * The log (stderr) captured from here to log_capture_end, at GW_LOG_WARN (warnings included), the group's
 * level after. log_so_far and log_capture_end answer what it said meanwhile, its first TU_SLURP_MAX - 1
 * bytes (to free).
 */
static struct tu_log captured = {.fd = -1, .saved = -1};

static void log_capture_start(void)
{
    tu_log_capture(&captured, quiet_level(GW_LOG_WARN), quiet_level(GW_LOG_ERROR));
}

static char *log_so_far(void)
{
    char *logged = malloc(TU_SLURP_MAX);

    assert_non_null(logged);
    assert_int_equal(tu_log_peek(&captured, logged, TU_SLURP_MAX), 0);
    return logged;
}

static char *log_capture_end(void)
{
    char *logged = malloc(TU_SLURP_MAX);

    assert_non_null(logged);
    tu_log_release_into(&captured, logged, TU_SLURP_MAX);
    return logged;
}

/* Whether |logged| has a line of |event| whose reason is |reason|. */
static bool logged_reason(const char *logged, const char *event, const char *reason)
{
    char ev[96], why[96];

    snprintf(ev, sizeof(ev), "\"event\":\"%s\"", event);
    snprintf(why, sizeof(why), "\"reason\":\"%s\"", reason);
    for (const char *p = logged; (p = strstr(p, ev)) != NULL; p++) {
        const char *end = strchr(p, '\n'), *at = strstr(p, why);

        if (at != NULL && (end == NULL || at < end))
            return true;
    }
    return false;
}

/* |logged| has a revocation_not_kept line of |level| for |cert|, with |reason| and |msg|. */
static void assert_not_kept(const char *logged, const X509 *cert, const char *level, const char *reason,
                            const char *msg)
{
    char head[96], serial[64];

    snprintf(head, sizeof(head), "\"level\":\"%s\",\"event\":\"revocation_not_kept\"", level);
    serial_of(cert, serial, sizeof(serial));
    if (strstr(logged, head) == NULL || strstr(logged, serial) == NULL || strstr(logged, reason) == NULL ||
        strstr(logged, msg) == NULL)
        fail_msg("no %s revocation_not_kept of %s for \"%s\" (\"%s\") in: %s", level, serial, reason, msg,
                 logged);
}

/*
 * A certificate with the issuer and serial of one revoked through the gateway (the CA issued a revoked
 * serial again): revoked on arrival, so not released (systemFailure, logged cert_serial_reused), on record
 * as rejected with its serial, and not revoked again. Twin: the same answer with a serial of its own.
 */
static void test_issued_serial_revoked(void **state)
{
    (void)state;
    for (int reused = 0; reused <= 1; reused++) {
        struct env *e = env_new(CMP_DEFAULTS);
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        X509 *cert;
        char *logged;

        print_message("case: %s\n", reused ? "a revoked serial" : "a serial of its own");
        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
        fake.revoked_first = reused;
        log_capture_start();
        cert = OSSL_CMP_exec_IR_ses(ctx);
        assert_int_equal(revoke_calls(e), 0);
        logged = log_capture_end();
        assert_int_equal(cert == NULL, reused);
        if (reused) {
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                          "a certificate with this issuer name and serial ");
            assert_status(
                ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                " was revoked through this gateway: where revocation goes by issuer and serial, this "
                "one counts as revoked; it was not released: tell the PKI's operator");
        }
        assert_int_equal(audit_count(e, "rejected", NULL, "serial", ""), reused);
        assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), !reused);
        assert_int_equal(strstr(logged, "\"event\":\"cert_serial_reused\"") != NULL, reused);
        assert_null(strstr(logged, "earlier_tid")); /* no transaction let the revoked one through lately */
        /* true also of two CAs under one issuer name, not only of one that issued the serial twice */
        assert_int_equal(strstr(logged,
                                "\"msg\":\"the upstream returned a certificate with the issuer name and "
                                "serial of one revoked through cmpgw: ") != NULL,
                         reused);
        assert_int_equal(strstr(logged,
                                "find out whether its CA reused the serial or another CA shares the issuer "
                                "name, and which certificates carry it") != NULL,
                         reused);
        assert_null(strstr(logged, "revoke_not_repeated"));
        free(logged);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * A certificate with the issuer and serial of another one the gateway let through earlier, never revoked
 * (the CA issued the serial again): not released (systemFailure, logged cert_serial_reused with the
 * earlier transaction), on record as rejected, and not revoked (that would revoke the earlier one too).
 * Twins: the very certificate let through before, returned again, is no reuse; a serial of its own issues.
 */
static void test_issued_serial_reissued(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    X509 *first, *cert;
    char want[512];
    char *logged;

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    first = ir_under(ctx, "reissued-serial!");

    print_message("case: the same certificate again\n");
    fake.again = first;
    OSSL_CMP_CTX_reinit(ctx);
    log_capture_start();
    cert = OSSL_CMP_exec_IR_ses(ctx);
    logged = log_capture_end();
    assert_non_null(cert);
    assert_int_equal(X509_cmp(cert, first), 0);
    assert_null(strstr(logged, "cert_serial_reused"));
    free(logged);
    fake.again = NULL;

    print_message("case: another certificate with its serial\n");
    fake.serial = X509_get0_serialNumber(first);
    OSSL_CMP_CTX_reinit(ctx);
    log_capture_start();
    cert = OSSL_CMP_exec_IR_ses(ctx);
    logged = log_capture_end();
    assert_null(cert);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                  " went out through this gateway: where revocation goes by issuer and serial, revoking one "
                  "revokes both; this one was not released: tell the PKI's operator");
    /* "reissued-serial!" in hex */
    snprintf(want, sizeof(want), "\"earlier_tid\":\"%s\"", "72656973737565642d73657269616c21");
    if (strstr(logged, "\"event\":\"cert_serial_reused\"") == NULL || strstr(logged, want) == NULL ||
        strstr(logged, "\"upstream\":\"local\"") == NULL || strstr(logged, "\"issuer\":") == NULL)
        fail_msg("no cert_serial_reused naming the upstream, issuer and %s in: %s", want, logged);
    /* true also of two CAs under one issuer name, not only of one that issued the serial twice */
    if (strstr(logged,
               "\"msg\":\"the upstream returned a certificate with the issuer name and serial of another "
               "one cmpgw let through lately (earlier_tid): ") == NULL ||
        strstr(logged,
               "find out whether its CA reused the serial or another CA shares the issuer name, and which "
               "certificates carry it") == NULL)
        fail_msg("cert_serial_reused does not say what holds of two CAs under one issuer name in: %s",
                 logged);
    free(logged);
    assert_int_equal(revoke_calls(e), 0);
    assert_int_equal(audit_count(e, "rejected", NULL, NULL, NULL), 1);
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 2);

    print_message("case: a serial of its own\n");
    fake.serial = NULL;
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 3);
    assert_int_equal(revoke_calls(e), 0);
    X509_free(first);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * Another certificate with the issuer and serial of one let through under a transactionID the ring could
 * not keep (not hex): refused all the same, logged cert_serial_reused without an earlier_tid rather than
 * with an empty one. Twin: the first of the two is let through.
 */
static void test_issued_serial_reissued_unknown_tid(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    const struct gw_upstream *up = gw_upstream_set_get0(e->ups, "local");
    X509 *first = tu_make_cert(client_key, client_key, NULL, "reused", 77);
    X509 *second = tu_make_cert(rogue_key, rogue_key, NULL, "reused", 77);
    char text[GW_ERR_LEN] = "";
    int fail_info = 0;
    char *logged;

    (void)state;
    assert_non_null(up);
    assert_int_equal(cmp_check_serial_reused(e->engine, up, first, time(NULL), "not hex", &fail_info, text),
                     0);
    log_capture_start();
    assert_int_equal(
        cmp_check_serial_reused(e->engine, up, second, time(NULL), "0011223344556677", &fail_info, text),
        CMP_SERIAL_REUSED);
    logged = log_capture_end();
    assert_int_equal(fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
    if (strstr(logged, "\"event\":\"cert_serial_reused\"") == NULL ||
        strstr(logged, "earlier_tid\":") != NULL)
        fail_msg("no cert_serial_reused without an earlier_tid in: %s", logged);
    free(logged);
    X509_free(second);
    X509_free(first);
    env_free(e);
}

/*
 * A revocation through one engine is seen at once by the engines of every other generation: the next one
 * (built before it, with a CRL of its own cached from before it) and one built after it whose CA's CRL
 * does not list the certificate yet. Each once took it until its CRL was read again.
 */
static void test_status_revoked_across_generations(void **state)
{
    struct two_cas t;
    struct gw_cmp_settings settings;
    struct gw_cmp_engine *first, *next, *later;
    unsigned char *clean, *listed;
    size_t clean_len, listed_len;
    char err[GW_ERR_LEN] = "";
    time_t now;

    (void)state;
    two_cas_open(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL | GW_UP_REVOKE);
    now = two_ca_now;
    clean = crl_of(t.ca1, t.ca1_key, now - 60, now + 3600, NULL, &clean_len);
    listed = crl_of(t.ca1, t.ca1_key, now + 5, now + 3600, t.x1, &listed_len);
    fake.crl = clean, fake.crl_len = clean_len;
    first = t.env->engine;
    gw_config_cmp_settings(t.env->cfg, &settings);
    assert_non_null(next = gw_cmp_engine_new(&settings, t.env->ups, first, NULL, err));
    gw_cmp_engine_set_clock(next, two_ca_clock);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    t.env->engine = next;
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.crl_calls, 2); /* one each, kept */

    /* the holder revokes it through the first engine; the CA's CRL lists it from then on */
    t.env->engine = first;
    rr_as(&t, t.x1, t.x1_key, t.ca1);
    assert_int_equal(fake.revoke_calls, 1);
    two_ca_now = now + 10;
    fake.crl = listed, fake.crl_len = listed_len;
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    t.env->engine = next; /* its CRL from before the revocation is current for minutes yet */
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");

    /* a generation built after it, from a CA whose CRL is behind */
    fake.crl = clean, fake.crl_len = clean_len;
    assert_non_null(later = gw_cmp_engine_new(&settings, t.env->ups, next, NULL, err));
    gw_cmp_engine_set_clock(later, two_ca_clock);
    t.env->engine = later;
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL); /* its others are not */

    gw_cmp_engine_free(next);
    gw_cmp_engine_free(later);
    t.env->engine = first;
    free(clean);
    free(listed);
    two_cas_close(&t);
}

/*
 * An upstream that can tell no status ("check_revocation": false): its certificates authenticate unchecked,
 * but one revoked through cmpgw is refused. It once renewed and signed on after its holder's rr.
 */
static void test_status_revoked_unchecked_upstream(void **state)
{
    struct two_cas t;

    (void)state;
    two_cas_open(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE);
    local_conf(t.env)->check_revocation = false;
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    rr_as(&t, t.x1, t.x1_key, t.ca1);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.revoke_calls, 1);
    local_conf(t.env)->check_revocation = true;
    two_cas_close(&t);
}

/*
 * cmp.max_revoked reached without Redis: a further rr is accepted and its revocation stands at the CA,
 * but once this instance forgets it (twice the upstream's timeout and GW_STATE_REVOKING_SLACK_MS after
 * it ended, cmp_revoked_mark_ms) no instance refuses the certificate before its CA's CRL lists it (here
 * never: its upstream checks no revocation), which revocation_not_kept says as an error; the one kept is not
 * dropped for it. The full set's branch was once never run by any test.
 */
static void test_status_revoked_set_full(void **state)
{
    struct two_cas t;
    char *logged;
    time_t was;

    (void)state;
    two_cas_open_cmp(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, CMP_DEFAULTS ", \"max_revoked\": 1");
    local_conf(t.env)->check_revocation = false;
    rr_as(&t, t.x1, t.x1_key, t.ca1);
    log_capture_start();
    rr_as(&t, t.x1b, t.x1b_key, t.ca1);
    logged = log_capture_end();
    assert_int_equal(fake.revoke_calls, 2);
    assert_not_kept(logged, t.x1b, "error", TEXT_ONE_KEPT, TEXT_HERE_A_WHILE);
    free(logged);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    was = two_ca_now;
    two_ca_now += (time_t)((cmp_revoked_mark_ms(local_conf(t.env)->timeout_ms) + 999) / 1000);
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    two_ca_now = was;
    local_conf(t.env)->check_revocation = true;
    two_cas_close(&t);
}

/* |t|'s gateway restarted: an engine that shares nothing with the last one. */
static void two_cas_restart(struct two_cas *t)
{
    char err[GW_ERR_LEN] = "";

    gw_cmp_engine_free(t->env->engine);
    if ((t->env->engine = engine_new(t->env->cfg, t->env->ups, err)) == NULL)
        fail_msg("engine: %s", err);
    gw_cmp_engine_set_clock(t->env->engine, two_ca_clock);
}

/* The lines of |file|, or -1 if its last one has no newline. */
static int lines_of(const char *file)
{
    char *text = slurp(file, NULL), *p;
    int n = 0;

    for (p = text; (p = strchr(p, '\n')) != NULL; p++)
        n++;
    n = text[0] == '\0' || text[strlen(text) - 1] == '\n' ? n : -1;
    free(text);
    return n;
}

/*
 * With cmp.revoked_file a certificate revoked through cmpgw is still refused after a restart, though
 * its upstream checks no revocation; it was once taken again. The start keeps the file's unexpired
 * entries alone (a last line a crash cut short is dropped), but while another gateway appends to it (a
 * hand-over's predecessor, holding it shared) keeps it as it is and appends to it too. A line that is
 * no entry refuses the start.
 */
static void test_status_revoked_across_restart(void **state)
{
    static const char expired[] = "00112233445566778899aabbccddeeff 1000\n";
    struct two_cas t;
    char cmp[256], file[128], err[GW_ERR_LEN] = "", *text;
    FILE *f;
    int held;

    (void)state;
    snprintf(file, sizeof(file), "%s/revoked.list", dir);
    snprintf(cmp, sizeof(cmp), CMP_DEFAULTS ", \"revoked_file\": \"%s\"", file);
    two_cas_open_cmp(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cmp);
    local_conf(t.env)->check_revocation = false;
    rr_as(&t, t.x1, t.x1_key, t.ca1);
    assert_non_null(f = fopen(file, "a"));
    fprintf(f, "%s0123", expired); /* an append cut short */
    fclose(f);
    two_cas_restart(&t);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(lines_of(file), 2); /* x1's two: keyed, and marked by issuer and serial */

    /* held by a predecessor: kept as it is, expired entry and all, and appended to */
    assert_non_null(f = fopen(file, "a"));
    fputs(expired, f);
    fclose(f);
    assert_true((held = open(file, O_RDONLY)) >= 0);
    assert_int_equal(flock(held, LOCK_SH), 0);
    two_cas_restart(&t);
    rr_as(&t, t.x1b, t.x1b_key, t.ca1);
    assert_int_equal(lines_of(file), 5);
    close(held);
    two_cas_restart(&t);
    assert_int_equal(lines_of(file), 4);
    text = slurp(file, NULL);
    assert_null(strstr(text, expired));
    free(text);
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");

    assert_non_null(f = fopen(file, "a"));
    fputs("0123 not an entry\n", f);
    fclose(f);
    gw_cmp_engine_free(t.env->engine);
    assert_null(t.env->engine = engine_new(t.env->cfg, t.env->ups, err));
    if (strstr(err, "cmp.revoked_file: line 5 of ") == NULL)
        fail_msg("%s", err);
    assert_non_null(f = fopen(file, "w"));
    fputs(expired, f);
    fputc('\0', f); /* a line that begins with a NUL byte: no entry, and read within the line */
    fputs(expired, f);
    fclose(f);
    assert_null(engine_new(t.env->cfg, t.env->ups, err));
    if (strstr(err, "cmp.revoked_file: line 2 of ") == NULL)
        fail_msg("%s", err);
    unlink(file);
    assert_int_equal(mkdir(file, 0700), 0); /* replaced at start: a directory never is */
    assert_null(engine_new(t.env->cfg, t.env->ups, err));
    if (strstr(err, "cannot open") == NULL || strstr(err, "Is a directory") == NULL)
        fail_msg("%s", err);
    rmdir(file);
    assert_int_equal(mkfifo(file, 0600), 0); /* refused at once, not waited on for a reader */
    alarm(10);
    assert_null(engine_new(t.env->cfg, t.env->ups, err));
    alarm(0);
    if (strstr(err, "not a regular file (a FIFO)") == NULL)
        fail_msg("%s", err);
    unlink(file);
    two_cas_restart(&t);
    local_conf(t.env)->check_revocation = true;
    two_cas_close(&t);
}

struct engine_start {
    struct two_cas *t;
    struct gw_cmp_engine *engine;
    char err[GW_ERR_LEN];
};

static void *engine_start_run(void *arg)
{
    struct engine_start *s = arg;

    s->engine = engine_new(s->t->env->cfg, s->t->env->ups, s->err);
    return NULL;
}

/* Waits until a lock on |fd|'s file waits (/proc/locks: "-> FLOCK ... <dev>:<inode>"). */
static void await_lock_waiter(int fd)
{
    struct stat st;
    char ino[32], line[256];

    assert_int_equal(fstat(fd, &st), 0);
    snprintf(ino, sizeof(ino), ":%lu ", (unsigned long)st.st_ino);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen("/proc/locks", "r");
        int seen = 0;

        assert_non_null(f);
        while (!seen && fgets(line, sizeof(line), f) != NULL)
            seen = strstr(line, "-> FLOCK") != NULL && strstr(line, ino) != NULL;
        fclose(f);
        if (seen)
            return;
        usleep(10000);
    }
    fail_msg("no lock waits on %s", ino);
}

/*
 * A start that opens cmp.revoked_file just before another start (or the test, here) replaces it, and
 * gets its lock once that one lets the replaced file go, takes the file by its name again: it once
 * kept appending to the replaced file, which no start reads, and so forgot the revocations after.
 */
static void test_status_revoked_file_replaced(void **state)
{
    static const char other[] = "00112233445566778899aabbccddeeff 99999999999\n";
    struct two_cas t;
    struct engine_start s = {.t = &t};
    char cmp[256], file[128], tmp[160], *text;
    pthread_t th;
    int before, after;
    FILE *f;

    (void)state;
    snprintf(file, sizeof(file), "%s/revoked.replaced", dir);
    snprintf(tmp, sizeof(tmp), "%s.test", file);
    snprintf(cmp, sizeof(cmp), CMP_DEFAULTS ", \"revoked_file\": \"%s\"", file);
    two_cas_open_cmp(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cmp);
    local_conf(t.env)->check_revocation = false;
    gw_cmp_engine_free(t.env->engine);
    /* another start holds the file exclusively, rewriting it: this one waits for its lock */
    assert_true((before = open(file, O_RDONLY)) >= 0);
    assert_int_equal(flock(before, LOCK_EX), 0);
    assert_int_equal(pthread_create(&th, NULL, engine_start_run, &s), 0);
    await_lock_waiter(before);
    assert_non_null(f = fopen(tmp, "w"));
    fputs(other, f);
    fclose(f);
    assert_true((after = open(tmp, O_RDONLY)) >= 0);
    assert_int_equal(flock(after, LOCK_SH), 0); /* that start appends to its new file */
    assert_int_equal(rename(tmp, file), 0);
    close(before);
    assert_int_equal(pthread_join(th, NULL), 0);
    if ((t.env->engine = s.engine) == NULL)
        fail_msg("engine: %s", s.err);
    gw_cmp_engine_set_clock(t.env->engine, two_ca_clock);
    rr_as(&t, t.x1, t.x1_key, t.ca1);
    assert_int_equal(lines_of(file), 3); /* the other start's and x1's two, in the file of that name */
    text = slurp(file, NULL);
    assert_non_null(strstr(text, other));
    free(text);
    close(after);
    two_cas_restart(&t);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    local_conf(t.env)->check_revocation = true;
    two_cas_close(&t);
    unlink(file);
}

/* |cert|'s line in cmp.revoked_file, as another gateway appends it: the id, a far notAfter. */
static void entry_of(X509 *cert, char line[64])
{
    const unsigned char *name = NULL;
    unsigned char *serial = NULL, *buf, md[32];
    size_t name_len = 0;
    int serial_len = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &serial);

    assert_int_equal(X509_NAME_get0_der(X509_get_issuer_name(cert), &name, &name_len), 1);
    assert_non_null(buf = malloc(name_len + (size_t)serial_len));
    memcpy(buf, name, name_len);
    memcpy(buf + name_len, serial, (size_t)serial_len);
    assert_int_equal(EVP_Q_digest(NULL, "SHA256", NULL, buf, name_len + (size_t)serial_len, md, NULL), 1);
    for (int i = 0; i < 16; i++)
        sprintf(line + 2 * i, "%02x", md[i]);
    strcpy(line + 32, " 99999999999\n");
    free(buf);
    OPENSSL_free(serial);
}

static void append_to(const char *file, const char *bytes, size_t len)
{
    FILE *f = fopen(file, "a");

    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
}

/*
 * A hand-over's predecessor and successor (two engines over one cmp.revoked_file) each refuse at once
 * what the other revoked: it once waited for the next start. What another writer appends is read as at
 * start: a line not whole yet waits for its end, and one that is no entry (a NUL byte, past any
 * entry's length, not "<id> <notAfter>") is said once and skipped, the lines after it read.
 */
static void test_status_revoked_file_followed(void **state)
{
    struct two_cas t;
    struct gw_cmp_engine *before, *after;
    char cmp[256], file[128], err[GW_ERR_LEN] = "", line[64], *logged, *p, lines[3][32];
    char nul[] = "\0 not an entry\n", long_line[5000]; /* longer than a read (4 KiB) too */
    int n = 0;

    (void)state;
    snprintf(file, sizeof(file), "%s/revoked.followed", dir);
    snprintf(cmp, sizeof(cmp), CMP_DEFAULTS ", \"revoked_file\": \"%s\"", file);
    two_cas_open_cmp(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cmp);
    local_conf(t.env)->check_revocation = false;
    before = t.env->engine;
    assert_non_null(after = engine_new(t.env->cfg, t.env->ups, err));
    gw_cmp_engine_set_clock(after, two_ca_clock);
    rr_as(&t, t.x1, t.x1_key, t.ca1); /* on the predecessor */
    t.env->engine = after;
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    rr_as(&t, t.x1b, t.x1b_key, t.ca1); /* on the successor */
    t.env->engine = before;
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");

    /* after x1's and x1b's two lines each, lines 5 to 7 are no entry; line 8, x2's, is appended in two writes
     */
    append_to(file, nul, sizeof(nul) - 1);
    memset(long_line, 'f', sizeof(long_line) - 1);
    long_line[sizeof(long_line) - 1] = '\n';
    append_to(file, long_line, sizeof(long_line));
    append_to(file, "0123 not an entry\n", 18);
    entry_of(t.x2, line);
    append_to(file, line, 20);
    log_capture_start();
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    append_to(file, line + 20, strlen(line + 20));
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    logged = log_capture_end();
    for (int i = 0; i < 3; i++)
        snprintf(lines[i], sizeof(lines[i]), "line %d of", i + 5);
    for (p = logged; (p = strstr(p, "\"event\":\"revoked_file_unread\"")) != NULL; p++)
        n++;
    if (n != 3 || strstr(logged, lines[0]) == NULL || strstr(logged, lines[1]) == NULL ||
        strstr(logged, lines[2]) == NULL || strstr(logged, "that line is skipped") == NULL)
        fail_msg("not three lines skipped: %s", logged);
    free(logged);
    gw_cmp_engine_free(after);
    local_conf(t.env)->check_revocation = true;
    two_cas_close(&t);
    unlink(file);
}

/* An engine over |t|'s configuration fails to start on its cmp.revoked_file, with |want| in its error. */
static void revoked_file_refused(struct two_cas *t, const char *want)
{
    char err[GW_ERR_LEN] = "";

    gw_cmp_engine_free(t->env->engine);
    assert_null(t->env->engine = engine_new(t->env->cfg, t->env->ups, err));
    if (strncmp(err, "cmp.revoked_file: ", 18) != 0 || strstr(err, want) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

/* An engine over |t|'s configuration that fails to start: the class its rc gives (exit_status maps it). */
static int engine_failure_class(struct two_cas *t, bool fds_run_out)
{
    struct gw_cmp_settings settings;
    char err[GW_ERR_LEN] = "";
    int rc = 0;

    gw_cmp_engine_free(t->env->engine);
    gw_config_cmp_settings(t->env->cfg, &settings);
    if (fds_run_out)
        tu_fds_exhaust();
    t->env->engine = gw_cmp_engine_new(&settings, t->env->ups, NULL, &rc, err);
    if (fds_run_out)
        tu_fds_back();
    if (t->env->engine != NULL)
        fail_msg("started");
    return rc;
}

/*
 * An engine that cannot open cmp.revoked_file or the audit log for descriptors run out is not refused for
 * its configuration: GW_ERR_UNAVAILABLE, which a start exits 1 for and the unit retries, as it does for
 * the configuration's own reads. The twin, a revoked file others may write, stays the file's
 * (GW_ERR_INVAL, 78). Both were GW_ERR_INVAL: the engine said so for any failure of cmp_revoked_new, and
 * the audit log's open was GW_ERR_IO, made GW_ERR_INVAL.
 */
static void test_engine_start_failure_class(void **state)
{
    struct two_cas t;
    char cmp[256], file[128];

    (void)state;
    snprintf(file, sizeof(file), "%s/revoked.class", dir);
    snprintf(cmp, sizeof(cmp), CMP_DEFAULTS ", \"revoked_file\": \"%s\"", file);
    two_cas_open_cmp(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cmp);
    assert_int_equal(chmod(file, 0620), 0);
    assert_int_equal(engine_failure_class(&t, false), GW_ERR_INVAL);
    assert_int_equal(chmod(file, 0600), 0);
    assert_int_equal(engine_failure_class(&t, true), GW_ERR_UNAVAILABLE);
    /* no revoked file: the audit log's open is the first to need a descriptor */
    free(t.env->cfg->cmp.revoked_file);
    t.env->cfg->cmp.revoked_file = NULL;
    assert_int_equal(engine_failure_class(&t, true), GW_ERR_UNAVAILABLE);
    two_cas_restart(&t);
    two_cas_close(&t);
    unlink(file);
}

/*
 * cmp.revoked_file is refused at start, as a secret file is, when its group or others may write it, or
 * a user other than the gateway's (or root) owns it: they could add a line that refuses a device's
 * certificate, or one that is no entry and refuses the next start. Once, it was read whoever could
 * write it. Reading it stays anyone's. One that becomes writable while a hand-over's other gateway
 * appends to it is read no more: its lines are taken by the next start, once it is mended.
 */
static void test_status_revoked_file_writers(void **state)
{
    struct two_cas t;
    struct gw_cmp_engine *other;
    struct passwd *nobody = getpwnam("nobody");
    char cmp[256], file[128], err[GW_ERR_LEN] = "", line[64], *logged;

    (void)state;
    snprintf(file, sizeof(file), "%s/revoked.writers", dir);
    snprintf(cmp, sizeof(cmp), CMP_DEFAULTS ", \"revoked_file\": \"%s\"", file);
    two_cas_open_cmp(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cmp);
    local_conf(t.env)->check_revocation = false;
    assert_int_equal(chmod(file, 0620), 0);
    revoked_file_refused(&t, "is writable by group or others (mode 620): make it 0600");
    assert_int_equal(chmod(file, 0602), 0);
    revoked_file_refused(&t, "is writable by group or others (mode 602)");
    assert_int_equal(chmod(file, 0644), 0);
    two_cas_restart(&t);
    if (geteuid() == 0 && nobody != NULL) {
        assert_int_equal(chown(file, nobody->pw_uid, (gid_t)-1), 0);
        revoked_file_refused(&t, "neither the gateway's user");
        /* started as root, the gateway runs as nobody (the ids its load looked up): its file */
        t.env->cfg->user = strdup("nobody");
        t.env->cfg->uid = nobody->pw_uid;
        t.env->cfg->gid = nobody->pw_gid;
        /* and its directory, where root creates the audit log as nobody */
        assert_int_equal(chown(dir, nobody->pw_uid, (gid_t)-1), 0);
        two_cas_restart(&t);
        assert_int_equal(chown(dir, 0, (gid_t)-1), 0);
        free(t.env->cfg->user);
        t.env->cfg->user = NULL;
        t.env->cfg->uid = geteuid();
        t.env->cfg->gid = getegid();
        assert_int_equal(chown(file, 0, (gid_t)-1), 0);
    }

    two_cas_restart(&t);
    assert_non_null(other = engine_new(t.env->cfg, t.env->ups, err)); /* a hand-over's other side */
    assert_int_equal(chmod(file, 0660), 0);
    entry_of(t.x1, line);
    append_to(file, line, strlen(line));
    log_capture_start();
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(chmod(file, 0600), 0);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    logged = log_capture_end();
    if (strstr(logged, "\"event\":\"revoked_file_unread\"") == NULL ||
        strstr(logged, "is writable by group or others (mode 660)") == NULL)
        fail_msg("no revoked_file_unread for the writable file: %s", logged);
    free(logged);
    two_cas_restart(&t);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    gw_cmp_engine_free(other);
    local_conf(t.env)->check_revocation = true;
    two_cas_close(&t);

    /* `cmpgw check` says what the start would refuse; a file not there yet the start creates */
    assert_int_equal(cmp_revoked_file_check(file, geteuid(), err), 0);
    assert_int_equal(chmod(file, 0620), 0);
    assert_int_equal(cmp_revoked_file_check(file, geteuid(), err), GW_ERR_FORBIDDEN);
    if (strstr(err, "is writable by group or others (mode 620): make it 0600") == NULL)
        fail_msg("%s", err);
    unlink(file);
    assert_int_equal(cmp_revoked_file_check(file, geteuid(), err), 0);
    assert_int_equal(symlink("revoked.list", file), 0);
    assert_int_not_equal(cmp_revoked_file_check(file, geteuid(), err), 0);
    if (strstr(err, "is not a regular file") == NULL)
        fail_msg("%s", err);
    unlink(file);
}

/* |file| holds |want|, whole. */
static void holds_text(const char *file, const char *want)
{
    char *text = slurp(file, NULL);

    if (strcmp(text, want) != 0)
        fail_msg("\"%s\" holds \"%s\", not \"%s\"", file, text, want);
    free(text);
}

/*
 * The temporary a start replaces cmp.revoked_file with is a new file of the gateway's: a link planted
 * at its name (or a stale one a crash left) is taken away, not written through. It was once opened
 * without O_EXCL, so that a hard link there had the start truncate the file it names, and a symbolic
 * one refused the start. The file's directory is refused, as the file is, when group or others may
 * add names to it (they could plant such a link, or rename the file away), unless the sticky bit keeps
 * each name to its owner, as in /tmp, or when another user owns it.
 */
static void test_status_revoked_file_dir(void **state)
{
    static const char precious[] = "not the gateway's to write\n";
    struct two_cas t;
    struct passwd *nobody = getpwnam("nobody");
    char sub[96], cmp[256], file[128], tmp[160], victim[128], err[GW_ERR_LEN] = "";
    struct stat st;
    FILE *f;

    (void)state;
    snprintf(sub, sizeof(sub), "%s/revoked.dir", dir);
    snprintf(file, sizeof(file), "%s/revoked.list", sub);
    snprintf(tmp, sizeof(tmp), "%s.new", file);
    snprintf(victim, sizeof(victim), "%s/victim", sub);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_non_null(f = fopen(victim, "w"));
    fputs(precious, f);
    fclose(f);
    snprintf(cmp, sizeof(cmp), CMP_DEFAULTS ", \"revoked_file\": \"%s\"", file);
    two_cas_open_cmp(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cmp);
    local_conf(t.env)->check_revocation = false;
    rr_as(&t, t.x1, t.x1_key, t.ca1);

    assert_int_equal(symlink(victim, tmp), 0);
    two_cas_restart(&t);
    assert_int_equal(link(victim, tmp), 0);
    two_cas_restart(&t);
    holds_text(victim, precious);
    assert_int_equal(lstat(tmp, &st), -1);
    assert_int_equal(lines_of(file), 2); /* x1's two */
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");

    assert_int_equal(chmod(sub, 0777), 0);
    revoked_file_refused(&t, "the directory \"");
    if (cmp_revoked_file_check(file, geteuid(), err) != GW_ERR_FORBIDDEN ||
        strstr(err, "is writable by group or others without the sticky bit (mode 0777): make it 0755") ==
            NULL)
        fail_msg("cmpgw check: %s", err);
    assert_int_equal(chmod(sub, 0770), 0);
    revoked_file_refused(&t, "without the sticky bit (mode 0770)");
    assert_int_equal(chmod(sub, 01777), 0); /* as /tmp */
    two_cas_restart(&t);
    assert_int_equal(cmp_revoked_file_check(file, geteuid(), err), 0);
    assert_int_equal(chmod(sub, 0755), 0);
    two_cas_restart(&t);
    if (geteuid() == 0 && nobody != NULL) {
        assert_int_equal(chown(sub, nobody->pw_uid, (gid_t)-1), 0);
        revoked_file_refused(&t, "the directory \"");
        revoked_file_refused(&t, "is owned by uid");
        assert_int_equal(chown(sub, 0, (gid_t)-1), 0);
        two_cas_restart(&t);
    }
    local_conf(t.env)->check_revocation = true;
    two_cas_close(&t);
    unlink(file);
    unlink(victim);
    rmdir(sub);
}

/*
 * An append to cmp.revoked_file that fails (here past RLIMIT_FSIZE, which a large file reaches and the
 * small audit log does not): the rr is accepted, revocation_not_kept says this instance forgets the
 * certificate when it restarts, and so it does; the file takes the next revocation, which the restart
 * reads.
 */
static void test_status_revoked_not_saved(void **state)
{
    struct two_cas t;
    char cmp[256], file[128], *logged;
    FILE *f;

    (void)state;
    snprintf(file, sizeof(file), "%s/revoked.full", dir);
    assert_non_null(f = fopen(file, "w"));
    for (int i = 0; i < 4000; i++) /* others' revocations, unexpired: some 176 000 bytes */
        fprintf(f, "%032x %lld\n", i, (long long)time(NULL) + 86400);
    fclose(f);
    snprintf(cmp, sizeof(cmp), CMP_DEFAULTS ", \"revoked_file\": \"%s\"", file);
    two_cas_open_cmp(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cmp);
    local_conf(t.env)->check_revocation = false;
    log_capture_start();
    tu_cap_files(100000);
    rr_as(&t, t.x1, t.x1_key, t.ca1);
    tu_uncap_files();
    logged = log_capture_end();
    assert_not_kept(
        logged, t.x1, "error", "cannot append to cmp.revoked_file",
        "this instance refuses this certificate until it restarts, then once its CA's CRL lists it");
    free(logged);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    rr_as(&t, t.x1b, t.x1b_key, t.ca1);
    two_cas_restart(&t);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    local_conf(t.env)->check_revocation = true;
    two_cas_close(&t);
    unlink(file);
}

/* Where the upstream answers status queries, a certificate of a CA whose CRL it does not serve is asked
 * about. */
static void test_status_two_cas_query(void **state)
{
    struct two_cas t;
    unsigned char *crl1;
    size_t crl1_len;

    (void)state;
    two_cas_open(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL | GW_UP_CERT_STATUS);
    crl1 = crl_of(t.ca1, t.ca1_key, two_ca_now - 60, two_ca_now + 3600, t.x1b, &crl1_len);
    fake.crl = crl1, fake.crl_len = crl1_len;
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.status_calls, 0); /* CA1's CRL answered */
    fake.revoked = 1;
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    assert_int_equal(fake.status_calls, 1);
    assert_int_equal(
        audit_count(t.env, "credential_revoked", NULL, "source", "status query at upstream local"),
        audit_count(t.env, "credential_revoked", NULL, NULL, NULL));
    fake.revoked = 0;
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.status_calls, 3); /* the ir's signer and the certConf's */
    free(crl1);
    two_cas_close(&t);
}

/*
 * A certificate no upstream issued, signed by an intermediate that is in no trust entry and that the
 * client sends in extraCerts: its validated chain leads to the demo entry's anchor, so that entry's
 * "revocation" decides. Under "upstream" it is refused; it was once taken unchecked, as if no entry
 * spoke for it. Under "none" it is taken, and the record says why it was not checked.
 */
static void test_status_trust_intermediate(void **state)
{
    EVP_PKEY *root_key = load_key("ca.key");
    EVP_PKEY *int_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *dev_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *inter = cert_under(ca_cert, root_key, int_key, "cmpgw test unlisted intermediate", 4001, 1);
    X509 *dev = cert_under(inter, int_key, dev_key, "device-of-unlisted", 4002, 0);
    static const enum gw_revocation_source modes[] = {GW_REVOCATION_UPSTREAM, GW_REVOCATION_NONE};

    (void)state;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct two_cas t = {.env = env_parse(&(struct env_opts){.cmp = CMP_DEFAULTS})};
        struct gw_trust_conf *demo = NULL;

        for (size_t j = 0; j < t.env->cfg->n_trust; j++)
            if (strcmp(t.env->cfg->trust[j].name, "demo") == 0)
                demo = &t.env->cfg->trust[j];
        assert_non_null(demo);
        demo->revocation = modes[i];
        env_start(t.env);
        if (modes[i] == GW_REVOCATION_UPSTREAM) {
            ir_as(&t, dev, dev_key, inter, OSSL_CMP_PKISTATUS_rejection,
                  OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                  "the signer certificate was not issued by a CA this gateway can ask about revocation; "
                  "trust demo accepts certificates of its upstreams only");
            /* the same again: a chain remembered by the cache is attributed as the first time */
            ir_as(&t, dev, dev_key, inter, OSSL_CMP_PKISTATUS_rejection,
                  OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                  "trust demo accepts certificates of its upstreams only");
            assert_int_equal(audit_count(t.env, "issued", NULL, NULL, NULL), 0);
        } else {
            ir_as(&t, dev, dev_key, inter, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
            assert_int_equal(audit_count(t.env, "issued", NULL, "credential_status",
                                         "signer: not checked (trust demo: revocation none)"),
                             1);
        }
        env_free(t.env);
    }
    X509_free(inter);
    X509_free(dev);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(int_key);
    EVP_PKEY_free(dev_key);
}

/*
 * The same, by an intermediate that took the name and subjectKeyIdentifier of the local upstream's CA:
 * its certificates name that CA as their issuer, with its key identifier. Once, name and key
 * identifier were taken as proof that the upstream had issued them: their status was asked of the
 * upstream, and the demo entry's "upstream" never had its say. The signature decides now.
 */
static void test_status_forged_upstream_key_id(void **state)
{
    EVP_PKEY *root_key = load_key("ca.key");
    EVP_PKEY *int_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *dev_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *issuing = load_cert("issuing.pem");
    X509 *inter = cert_under(ca_cert, root_key, int_key, "cmpgw test look-alike", 4301, 1), *dev;
    struct two_cas t = {.env = env_parse(&(struct env_opts){.cmp = CMP_DEFAULTS})};

    (void)state;
    assert_int_equal(X509_set_subject_name(inter, X509_get_subject_name(issuing)), 1);
    assert_int_equal(X509_add1_ext_i2d(inter, NID_subject_key_identifier,
                                       (void *)X509_get0_subject_key_id(issuing), 0, X509V3_ADD_REPLACE),
                     1);
    assert_true(X509_sign(inter, root_key, EVP_sha256()) > 0);
    dev = cert_under(inter, int_key, dev_key, "device-look-alike", 4302, 0);
    assert_int_equal(X509_check_issued(issuing, dev), X509_V_OK); /* by name and key identifier */
    for (size_t j = 0; j < t.env->cfg->n_trust; j++)
        if (strcmp(t.env->cfg->trust[j].name, "demo") == 0)
            t.env->cfg->trust[j].revocation = GW_REVOCATION_UPSTREAM;
    env_start(t.env);
    ir_as(&t, dev, dev_key, inter, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
          "trust demo accepts certificates of its upstreams only");
    assert_int_equal(audit_count(t.env, "issued", NULL, NULL, NULL), 0);
    env_free(t.env);
    X509_free(issuing);
    X509_free(inter);
    X509_free(dev);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(int_key);
    EVP_PKEY_free(dev_key);
}

/* Writes the CRLs |ders| (|n|, DER) as one PEM file |name| in the test directory. */
static void write_crls(const char *name, unsigned char **ders, const size_t *lens, size_t n)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "w"));
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = ders[i];
        X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)lens[i]);

        assert_non_null(crl);
        assert_int_equal(PEM_write_X509_CRL(f, crl), 1);
        X509_CRL_free(crl);
    }
    fclose(f);
}

/*
 * The same under a trust entry with a crl_file: chain validation checks every certificate of the chain
 * against the entry's CRLs, the one the client's intermediate signed included. Without a CRL of that
 * intermediate the certificate does not validate (fail closed); with one that lists it, it is refused;
 * with one that does not, it is taken, and the record names the crl_file that was checked.
 */
static void test_status_trust_intermediate_crl(void **state)
{
    EVP_PKEY *root_key = load_key("ca.key");
    EVP_PKEY *int_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *dev_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *inter = cert_under(ca_cert, root_key, int_key, "cmpgw test unlisted intermediate", 4101, 1);
    X509 *dev = cert_under(inter, int_key, dev_key, "device-of-unlisted", 4102, 0);
    time_t now = time(NULL);
    unsigned char *ders[3];
    size_t lens[3];
    static const struct {
        size_t n_crls; /* the root's, then the intermediate's: empty, or listing the device */
        int listed, status, fail_bit;
        const char *text;
    } cases[] = {
        {1, 0, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, TEXT_UNTRUSTED},
        {2, 1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, TEXT_UNTRUSTED},
        {2, 0, OSSL_CMP_PKISTATUS_accepted, -1, NULL},
    };

    (void)state;
    ders[0] = crl_of(ca_cert, root_key, now - 60, now + 3600, NULL, &lens[0]);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct two_cas t = {0};

        ders[1] = crl_of(inter, int_key, now - 60, now + 3600, cases[i].listed ? dev : NULL, &lens[1]);
        write_crls("unlisted-crls.pem", ders, lens, cases[i].n_crls);
        t.env = env_open(
            &(struct env_opts){.cmp = CMP_DEFAULTS, .trust_extra = "\"crl_file\": \"unlisted-crls.pem\", "});
        ir_as(&t, dev, dev_key, inter, cases[i].status, cases[i].fail_bit, cases[i].text);
        if (cases[i].status == OSSL_CMP_PKISTATUS_accepted)
            assert_int_equal(
                audit_count(t.env, "issued", NULL, "credential_status", "signer: crl_file of trust demo"), 1);
        env_free(t.env);
        free(ders[1]);
    }
    free(ders[0]);
    X509_free(inter);
    X509_free(dev);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(int_key);
    EVP_PKEY_free(dev_key);
}

/*
 * Two entries speak for a certificate no upstream issued: "demo" with a crl_file that does not list it,
 * and "strict" (the same anchor, its CRLs too) that takes certificates of configured upstreams only.
 * "strict" refuses it whichever comes first in the role's "trust" (docs/configuration.md); once, an
 * entry with a crl_file listed first accepted it before "strict" had its say.
 */
static void test_status_trust_upstream_entry_wins(void **state)
{
    EVP_PKEY *root_key = load_key("ca.key");
    EVP_PKEY *int_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *dev_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *inter = cert_under(ca_cert, root_key, int_key, "cmpgw test unlisted intermediate", 4201, 1);
    X509 *dev = cert_under(inter, int_key, dev_key, "device-of-unlisted", 4202, 0);
    time_t now = time(NULL);
    unsigned char *ders[2];
    size_t lens[2];
    static const struct {
        const char *strict; /* the "strict" entry */
        int first, status, fail_bit;
        const char *text;
    } cases[] = {
        {"\"strict\": {\"ca_file\": \"ca.pem\", \"crl_file\": \"unlisted-crls.pem\", \"revocation\": "
         "\"upstream\"}",
         0, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "trust strict accepts certificates of its upstreams only"},
        {"\"strict\": {\"ca_file\": \"ca.pem\", \"crl_file\": \"unlisted-crls.pem\", \"revocation\": "
         "\"upstream\"}",
         1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "trust strict accepts certificates of its upstreams only"},
        /* the twin: an entry of the same anchor that says "none" takes nothing away */
        {"\"lax\": {\"ca_file\": \"ca.pem\", \"crl_file\": \"unlisted-crls.pem\", \"revocation\": \"none\"}",
         1, OSSL_CMP_PKISTATUS_accepted, -1, NULL},
    };

    (void)state;
    ders[0] = crl_of(ca_cert, root_key, now - 60, now + 3600, NULL, &lens[0]);
    ders[1] = crl_of(inter, int_key, now - 60, now + 3600, NULL, &lens[1]);
    write_crls("unlisted-crls.pem", ders, lens, 2);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct two_cas t = {0};

        t.env = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS,
                                            .trust_extra = "\"crl_file\": \"unlisted-crls.pem\", ",
                                            .trust_entry = cases[i].strict,
                                            .entry_first = cases[i].first});
        ir_as(&t, dev, dev_key, inter, cases[i].status, cases[i].fail_bit, cases[i].text);
        assert_int_equal(audit_count(t.env, "issued", NULL, NULL, NULL), cases[i].fail_bit < 0);
        env_free(t.env);
    }
    free(ders[0]);
    free(ders[1]);
    X509_free(inter);
    X509_free(dev);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(int_key);
    EVP_PKEY_free(dev_key);
}

/* A reset engine has no open transaction and has forgotten every transactionID it saw. */
static void test_engine_reset(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char desc[4096];

    (void)state;
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_DISABLE_CONFIRM, 1);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    assert_int_equal(gw_cmp_engine_reset(e->engine), 0);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 1);
    /* the same ir again: a new transaction, not a replay */
    resend_first(e, &cl, desc, sizeof(desc));
    assert_null(strstr(desc, "replayed message"));
    assert_non_null(strstr(desc, "certificate:"));
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    assert_int_equal(gw_cmp_engine_reset(NULL), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* A reload between the ir and its certConf: the engine built from the running one takes over. */
static struct gw_cmp_engine *reload_next, *reload_prev;
static int prev_busy_at_certconf;

static OSSL_CMP_MSG *reload_before_certconf(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)ctx;
    if (cl->exchanges == 1) {
        prev_busy_at_certconf = gw_cmp_engine_busy(reload_prev);
        cl->env->engine = reload_next;
    }
    return req;
}

static void test_reload_shares_transactions(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e, .tamper = reload_before_certconf};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    struct gw_cmp_settings settings;
    char err[GW_ERR_LEN] = "", desc[4096];

    (void)state;
    reload_prev = e->engine;
    gw_config_cmp_settings(e->cfg, &settings);
    reload_next = gw_cmp_engine_new(&settings, e->ups, reload_prev, NULL, err);
    assert_non_null(reload_next);
    assert_false(gw_cmp_engine_busy(reload_prev));
    /* ir under the running engine, certConf under the next one */
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(cl.exchanges, 2);
    assert_true(prev_busy_at_certconf); /* its transaction held the running engine */
    assert_false(gw_cmp_engine_busy(reload_prev));
    assert_false(gw_cmp_engine_busy(reload_next));
    assert_int_equal(gw_cmp_engine_open_transactions(reload_next), 0);
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 1); /* one audit log, shared */
    /* the replay cache is shared too: the ir again is a replay under the next engine */
    resend_first(e, &cl, desc, sizeof(desc));
    assert_non_null(strstr(desc, "replayed message"));
    gw_cmp_engine_free(reload_prev); /* not the last: the shared state stays with the next */
    assert_int_equal(gw_cmp_engine_open_transactions(reload_next), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Whether an ir with implicitConfirm under |e| gets the demo root sent along, above the issuing CA. */
static int root_sent(struct env *e)
{
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    STACK_OF(X509) *in;
    int sent = 0;

    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(cl.exchanges, 1); /* the ip's extraCerts are the last received */
    in = OSSL_CMP_CTX_get1_extraCertsIn(ctx);
    for (int i = 0; i < sk_X509_num(in); i++)
        sent |= X509_cmp(sk_X509_value(in, i), ca_cert) == 0;
    sk_X509_pop_free(in, X509_free);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    return sent;
}

/*
 * The chain above an issued certificate climbs through the issuer certificates its engine listed when
 * its configuration loaded, not those of another: a reload that takes the local issuer's chain (the
 * demo root) out of its issuer store sends the root no more, while the engine it replaced, still
 * serving, sends it; a reload that puts it back sends it again.
 */
static void test_reload_issuer_chain(void **state)
{
    struct env_opts with = {.cmp = CMP_DEFAULTS},
                    without = {.cmp = CMP_DEFAULTS, .replace = {", \"chain\": \"ca.pem\"", ""}};
    struct env *first = env_open(&with), *second, *third;

    (void)state;
    assert_true(root_sent(first));
    second = env_reload(first, &without);
    assert_false(root_sent(second));
    assert_true(root_sent(first));
    third = env_reload(second, &with);
    assert_true(root_sent(third));
    assert_false(root_sent(second));
    env_free(third);
    env_free(second);
    env_free(first);
}

/* One intent, one issued (serial = the certificate's) and one confirmed line per transaction. */
static void test_audit_lines(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e, .tls_first = client_cert};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char serial[64];
    X509 *cert;

    (void)state;
    push_dns(ctx, "audit.example.com");
    assert_non_null(cert = OSSL_CMP_exec_IR_ses(ctx));
    serial_of(cert, serial, sizeof(serial));
    assert_int_equal(audit_count(e, "intent", NULL, "alt_names", "audit.example.com"), 1);
    assert_int_equal(audit_count(e, "issued", serial, "common_name", "test-device"), 1);
    assert_int_equal(audit_count(e, "issued", serial, "identity", "/O=cmpgw demo/CN=demo-client"), 1);
    assert_int_equal(audit_count(e, "issued", serial, "tls_subject", "/O=cmpgw demo/CN=demo-client"), 1);
    assert_int_equal(audit_count(e, "issued", serial, "body_type", "ir"), 1);
    assert_int_equal(audit_count(e, "issued", serial, "route", "/cmp"), 1);
    assert_int_equal(audit_count(e, "confirmed", serial, NULL, NULL), 1);
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 1);
    /* a certificate never confirmed is on record when its transaction expires */
    OSSL_CMP_CTX_reinit(ctx);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_DISABLE_CONFIRM, 1);
    assert_non_null(cert = OSSL_CMP_exec_IR_ses(ctx));
    serial_of(cert, serial, sizeof(serial));
    gw_cmp_engine_expire(e->engine, time(NULL) + 301);
    assert_int_equal(audit_count(e, "expired_unconfirmed", serial, NULL, NULL), 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* The client rejects the certificate in its certConf: on record, and revoked where the upstream can. */
static int reject_cert(OSSL_CMP_CTX *ctx, X509 *cert, int fail_info, const char **text)
{
    (void)ctx, (void)cert, (void)fail_info;
    *text = "not what I asked for";
    return 1 << OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
}

static void test_audit_client_rejects(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    OSSL_CMP_CTX_set_certConf_cb(ctx, reject_cert);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(cl.exchanges, 2);
    assert_int_equal(audit_count(e, "rejected_by_client", NULL, NULL, NULL), 1);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 1);
    assert_int_equal(revoke_calls(e), 1);
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * A certificate the gateway withdrew (its client rejected it) authenticates nothing from then on, though
 * its CA's status query does not say so yet. It once signed the next request.
 */
static void test_withdrawn_refused_as_credential(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e}, cl2 = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0), *ctx2;
    X509 *withdrawn;

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE | GW_UP_CERT_STATUS, FK_PLAIN);
    OSSL_CMP_CTX_set_certConf_cb(ctx, reject_cert);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(revoke_calls(e), 1);
    assert_non_null(withdrawn = OSSL_CMP_CTX_get0_newCert(ctx));
    ctx2 = client_new(&cl2, SIG, withdrawn, OSSL_CMP_CTX_get0_newPkey(ctx, 1), NULL, NULL, 0);
    assert_null(OSSL_CMP_exec_IR_ses(ctx2));
    assert_status(ctx2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
                  "the signer certificate (serial ");
    client_cleanup(&cl);
    client_cleanup(&cl2);
    OSSL_CMP_CTX_free(ctx);
    OSSL_CMP_CTX_free(ctx2);
    env_free(e);
}

/*
 * A certConf that does not confirm the certificate issued: its certHash names another certificate
 * (accepting it or rejecting it), or OpenSSL refuses it (certReqId 1). Its client holds something else
 * or nothing as confirmed, so the one issued is withdrawn (docs/errors.md cert_hash, cert_req_id).
 */
static void test_certconf_other_hash_withdrawn(void **state)
{
    static const struct {
        OSSL_CMP_MSG *(*tamper)(OSSL_CMP_CTX *, OSSL_CMP_MSG *, struct client *);
        int reject, fail_bit;
        const char *text;
    } cases[] = {
        {tamper_certhash, 0, OSSL_CMP_PKIFAILUREINFO_badCertId, "certHash does not match"},
        {tamper_certhash, 1, OSSL_CMP_PKIFAILUREINFO_badCertId, "certHash does not match"},
        {tamper_certreqid, 0, OSSL_CMP_PKIFAILUREINFO_badRequest, "certReqId must be 0"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
        struct client cl = {.env = e, .tamper = cases[i].tamper};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

        print_message("case: %s%s\n", cases[i].text, cases[i].reject ? ", rejecting" : "");
        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
        if (cases[i].reject)
            OSSL_CMP_CTX_set_certConf_cb(ctx, reject_cert);
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, cases[i].fail_bit, cases[i].text);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        assert_int_equal(revoke_calls(e), 1);
        assert_int_equal(audit_count(e, "rejected", NULL, NULL, NULL), 1);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 1);
        assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 0);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * Sends, in place of the message of body |type|, one with the DER PKIBody |body| under its header,
 * protected with |cl->other|'s credentials; the message is kept in |cl->held| to be sent later.
 */
static OSSL_CMP_MSG *tamper_body_for(int type, const unsigned char *body, size_t body_len, OSSL_CMP_CTX *ctx,
                                     OSSL_CMP_MSG *req, struct client *cl)
{
    const OSSL_CMP_PKIHEADER *hdr = OSSL_CMP_MSG_get0_header(req);
    unsigned char *hdr_der = NULL, *der = NULL, *q;
    const unsigned char *p;
    OSSL_CMP_MSG *out;
    int hdr_len, inner, len;

    (void)ctx;
    if (OSSL_CMP_MSG_get_bodytype(req) != type)
        return req;
    assert_true((len = i2d_OSSL_CMP_MSG(req, &der)) > 0);
    cl->held = der;
    cl->held_len = (size_t)len;
    assert_true((hdr_len = i2d_OSSL_CMP_PKIHEADER(hdr, &hdr_der)) > 0);
    inner = hdr_len + (int)body_len;
    len = ASN1_object_size(1, inner, V_ASN1_SEQUENCE);
    assert_non_null(der = q = OPENSSL_malloc((size_t)len));
    ASN1_put_object(&q, 1, inner, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(q, hdr_der, (size_t)hdr_len);
    memcpy(q + hdr_len, body, body_len);
    p = der;
    assert_non_null(out = d2i_OSSL_CMP_MSG(NULL, &p, len));
    /* the header keeps its protectionAlg: re-protected (extraCerts, senderKID) by the other sender */
    OSSL_CMP_CTX_set1_transactionID(cl->other, OSSL_CMP_HDR_get0_transactionID(hdr));
    assert_int_equal(OSSL_CMP_MSG_update_transactionID(cl->other, out), 1);
    OPENSSL_free(der);
    OPENSSL_free(hdr_der);
    OSSL_CMP_MSG_free(req);
    return out;
}

/* tamper_body_for with an error message (status rejection): the client aborts. */
static OSSL_CMP_MSG *tamper_error_for(int type, OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    /* [23] ErrorMsgContent { PKIStatusInfo { rejection } } */
    static const unsigned char body[] = {0xb7, 0x07, 0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02};

    return tamper_body_for(type, body, sizeof(body), ctx, req, cl);
}

/* An error message in place of the certConf, its header and so its recipNonce the certConf's. */
static OSSL_CMP_MSG *tamper_error(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    return tamper_error_for(GW_CMP_BODY_CERTCONF, ctx, req, cl);
}

/* Sends |cl|'s held certConf; asserts its answer has |body| and, if not NULL, |text|. */
static void send_held(struct client *cl, const char *body, const char *text)
{
    unsigned char *out;
    size_t out_len = 0;
    char desc[4096];
    int http;

    assert_non_null(cl->held);
    out = exchange(cl->env, cl->held, cl->held_len, &http, &out_len);
    assert_int_equal(http, 200);
    describe(out, out_len, desc, sizeof(desc));
    if (strncmp(desc, body, strlen(body)) != 0 || desc[strlen(body)] != ' ')
        fail_msg("answer %.60s, want %s", desc, body);
    if (text != NULL && strstr(desc, text) == NULL)
        fail_msg("answer lacks \"%s\": %.400s", text, desc);
    OPENSSL_free(out);
}

/*
 * An error message naming the transaction's sender but signed by another trusted certificate with
 * the same subject (here one the gateway issued) must not abort the transaction: closing it would
 * revoke the certificate its client was just given. It is refused like such a certConf, and the
 * client's own certConf still confirms.
 */
static void test_error_forged_signer(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client twin = {.env = e}, cl = {.env = e, .tamper = tamper_error}, dummy = {.env = e};
    OSSL_CMP_CTX *tw, *ctx;
    X509 *twin_cert;

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    tw = client_new(&twin, SIG, client_cert, client_key, NULL, NULL, 0);
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_int_equal(OSSL_CMP_CTX_set1_subjectName(tw, X509_get_subject_name(client_cert)), 1);
    assert_non_null(twin_cert = OSSL_CMP_exec_IR_ses(tw));
    cl.other = client_new(&dummy, SIG, twin_cert, OSSL_CMP_CTX_get0_newPkey(tw, 1), NULL, NULL, 0);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(cl.exchanges, 2); /* ir, and the error in place of the certConf */
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                  "signer of this transaction");
    /* untouched: still open, nothing revoked, nothing on record as rejected */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    assert_int_equal(revoke_calls(e), 0);
    assert_int_equal(audit_count(e, "rejected_by_client", NULL, NULL, NULL), 0);
    /* the client's own certConf closes it */
    send_held(&cl, "pkiconf", NULL);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 2); /* the twin's and the client's */
    assert_int_equal(revoke_calls(e), 0);
    client_cleanup(&cl);
    client_cleanup(&twin);
    OSSL_CMP_CTX_free(ctx);
    OSSL_CMP_CTX_free(tw);
    env_free(e);
}

/* An error message from another sender (a PBM reference) is refused too; the transaction stays open. */
static void test_error_other_sender(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e, .tamper = tamper_error}, dummy = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    cl.other = client_new(&dummy, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "another sender");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    assert_int_equal(revoke_calls(e), 0);
    send_held(&cl, "pkiconf", NULL);
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Keeps a copy of the certConf in |cl->held|, to be sent again over another connection. */
static OSSL_CMP_MSG *keep_certconf(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    int len;

    (void)ctx;
    if (OSSL_CMP_MSG_get_bodytype(req) == GW_CMP_BODY_CERTCONF) {
        assert_true((len = i2d_OSSL_CMP_MSG(req, &cl->held)) > 0);
        cl->held_len = (size_t)len;
    }
    return req;
}

/* |der|, a PKIMessage whose last element is its extraCerts, with extraCerts that hold no certificate (a
   SEQUENCE { INTEGER 1 }): DER all the same, which d2i_OSSL_CMP_MSG refuses. OPENSSL_malloc'ed. */
static unsigned char *bad_extra_certs(const unsigned char *der, size_t len, size_t *out_len)
{
    static const unsigned char bad[] = {0xa1, 0x07, 0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x01};
    const unsigned char *p = der, *cont, *end, *last = NULL;
    unsigned char *out, *q;
    long n = 0;
    int tag = -1, cls = -1, inner;

    assert_false(ASN1_get_object(&p, &n, &tag, &cls, (long)len) & 0x80);
    cont = p;
    for (end = cont + n; p < end; p += n) {
        last = p;
        assert_false(ASN1_get_object(&p, &n, &tag, &cls, end - p) & 0x80);
    }
    assert_true(last != NULL && tag == 1 && cls == V_ASN1_CONTEXT_SPECIFIC);
    inner = (int)(last - cont) + (int)sizeof(bad);
    *out_len = (size_t)ASN1_object_size(1, inner, V_ASN1_SEQUENCE);
    assert_non_null(out = q = OPENSSL_malloc(*out_len));
    ASN1_put_object(&q, 1, inner, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(q, cont, (size_t)(last - cont));
    memcpy(q + (last - cont), bad, sizeof(bad));
    return out;
}

/*
 * An ir (|prot|) over its TLS client's connection (client_cert), its next message (made by |tamper|,
 * which keeps the certConf in cl->held) over another TLS client's, as from another device with the
 * same PBM secret or signing key: refused, and nothing changed, not even by an error message; nor
 * without a TLS client certificate. The held certConf over the ir's own TLS client then confirms.
 */
static void other_tls_client_refused(enum prot prot,
                                     OSSL_CMP_MSG *(*tamper)(OSSL_CMP_CTX *, OSSL_CMP_MSG *, struct client *))
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e, .tamper = tamper, .tls_first = client_cert}, dummy = {.env = e};
    OSSL_CMP_CTX *ctx = prot == PBM
                            ? client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len)
                            : client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0); /* tamper_error's signer */
    cl.tls_later = load_cert("signer.pem");
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(cl.exchanges, 2);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                  "begun over a TLS connection with another client certificate");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    assert_int_equal(revoke_calls(e), 0);
    assert_int_equal(audit_count(e, "rejected_by_client", NULL, NULL, NULL), 0);
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 0);
    e->tls = NULL; /* a plain listener's */
    send_held(&cl, "error", "another client certificate (or none)");
    e->tls = client_cert;
    send_held(&cl, "pkiconf", NULL);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 1);
    X509_free(cl.tls_later);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Keeps the certConf (keep_certconf); the connections after the ir's have no description of their own. */
static OSSL_CMP_MSG *keep_certconf_undescribed(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    if (OSSL_CMP_MSG_get_bodytype(req) == GW_CMP_BODY_CERTCONF)
        cl->env->tls_client = NULL;
    return keep_certconf(ctx, req, cl);
}

/*
 * The TLS client a transaction is bound to is its connection's description (made once per connection
 * by the listener) when the request carries one, not made again from the certificate: an ir whose
 * connection says "signer.pem" over client.pem is bound to signer.pem's hash, so its certConf over
 * client.pem, described from the certificate here, is another TLS client's; over the ir's
 * description, it confirms. gw_cmp_tls_client's forms: "sha256:" and the certificate's hash, "none".
 */
static void test_tls_client_of_connection(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e, .tamper = keep_certconf_undescribed, .tls_first = client_cert};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    X509 *signer = load_cert("signer.pem");
    char mine[GW_TLS_CLIENT_LEN], other[GW_TLS_CLIENT_LEN], want[GW_TLS_CLIENT_LEN];
    unsigned char md[32];
    unsigned int n = 0;

    (void)state;
    assert_int_equal(gw_cmp_tls_client(NULL, mine), 0);
    assert_string_equal(mine, "none");
    assert_int_equal(X509_digest(client_cert, EVP_sha256(), md, &n), 1);
    memcpy(want, "sha256:", 7);
    gw_hex(want + 7, md, n);
    assert_int_equal(gw_cmp_tls_client(client_cert, mine), 0);
    assert_string_equal(mine, want);
    assert_int_equal(gw_cmp_tls_client(signer, other), 0);
    assert_string_not_equal(other, mine);

    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    e->tls_client = other;
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(cl.exchanges, 2);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                  "begun over a TLS connection with another client certificate");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    e->tls_client = mine; /* the certificate's own description: still not the ir's connection's */
    send_held(&cl, "error", "another client certificate");
    e->tls_client = other;
    send_held(&cl, "pkiconf", NULL);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 1);
    X509_free(signer);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Two devices share one PBM secret: the other's certConf for one's transaction (it can make the MAC). */
static void test_certconf_other_tls_client(void **state)
{
    (void)state;
    other_tls_client_refused(PBM, keep_certconf);
}

/* Two devices share one signing key: the other's error message, which would abort the transaction. */
static void test_error_other_tls_client(void **state)
{
    (void)state;
    other_tls_client_refused(SIG, tamper_error);
}

/* The client's own error message aborts its transaction: on record, and the certificate revoked. */
static void test_error_aborts(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e, .tamper = tamper_error}, dummy = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
    /* the pkiconf answering the error is taken by the client for its certConf's */
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(cl.exchanges, 2);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(audit_count(e, "rejected_by_client", NULL, NULL, NULL), 1);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 1);
    assert_int_equal(revoke_calls(e), 1);
    /* closed: a certConf after it finds nothing to confirm */
    send_held(&cl, "error", "no open transaction");
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* tamper_error, the engine's clock moved |ahead_secs| on first. */
static OSSL_CMP_MSG *tamper_late_error(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    if (OSSL_CMP_MSG_get_bodytype(req) == GW_CMP_BODY_CERTCONF)
        gw_cmp_engine_set_clock(cl->env->engine, ahead_clock);
    return tamper_error(ctx, req, cl);
}

/*
 * An error message after the TTL, before the expiry tick: the transaction has expired, the error aborts
 * nothing, and the certificate its client was given is on record as expired_unconfirmed and stays valid,
 * not revoked as test_error_aborts's is (its twin, within the TTL).
 */
static void test_error_after_ttl(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = "\"transaction_ttl\": \"10s\"", .confirm = 1});
    struct client cl = {.env = e, .tamper = tamper_late_error}, dummy = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
    ahead_secs = 11;
    (void)OSSL_CMP_exec_IR_ses(ctx);
    assert_int_equal(cl.exchanges, 2);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 1);
    assert_int_equal(audit_count(e, "rejected_by_client", NULL, NULL, NULL), 0);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 0);
    assert_int_equal(revoke_calls(e), 0);
    /* what it was answered, sent again: no transaction to abort, and still nothing revoked */
    send_held(&cl, "error", "no open transaction with this transactionID");
    assert_int_equal(revoke_calls(e), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * OpenSSL fails to build the answer after the cert-request callback accepted the certificate (here
 * its protection fails, and so does the error's: HTTP 500). The client never gets the certificate:
 * it is on record as not delivered and revoked at the CA, and no transaction stays open; with a
 * certConf to come as with implicitConfirm.
 */
static void test_undelivered_withdrawn(void **state)
{
    (void)state;
    for (int implicit = 0; implicit <= 1; implicit++) {
        struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = !implicit});
        struct client cl = {.env = e, .new_thread = 1};
        OSSL_CMP_CTX *ctx;
        char serial[64] = "";

        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
        ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, implicit);
        break_signing(0);
        fake.break_signing = 1;
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        break_signing(0);
        assert_int_equal(fake.sign_calls, 1);
        assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 1);
        assert_int_equal(audit_count(e, "rejected", NULL, "status", "not delivered"), 1);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 1);
        assert_int_equal(revoke_calls(e), 1);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        /* the same certificate throughout */
        assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
        assert_int_equal(audit_count(e, "rejected", serial, NULL, NULL), 1);
        assert_int_equal(audit_count(e, "revoked", serial, NULL, NULL), 1);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * The reason the signer's check gives for an answer that could not be protected is that call's own,
 * never an error an earlier call left in the worker's queue.
 */
static void test_unsigned_reason_its_own(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS});
    struct client cl = {.env = e, .new_thread = 1, .stale_error = 1};
    const char *stale = ERR_reason_error_string(ERR_PACK(ERR_LIB_X509, 0, X509_R_CERT_ALREADY_IN_HASH_TABLE));
    OSSL_CMP_CTX *ctx;
    char why[GW_ERR_LEN] = "";

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1);
    break_signing(0);
    fake.break_signing = 1;
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    break_signing(0);
    fake.break_signing = 0;
    assert_int_equal(gw_cmp_engine_signer_status(e->engine, why, sizeof(why)), GW_ERR_UNAVAILABLE);
    assert_null(strstr(why, stale));
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* The disk is full: every later write to the audit log fails (EFBIG), until tu_uncap_files. */
static void audit_full(struct env *e)
{
    (void)e;
    tu_cap_files(0);
}

/* No audit record, no certificate: before the upstream call nothing is issued; after it, withdrawn. */
static void test_audit_unwritable(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx)); /* twin: a writable log */
    audit_full(e);
    OSSL_CMP_CTX_reinit(ctx);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    tu_uncap_files();
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "the audit log cannot be written; nothing was issued");
    assert_int_equal(fake.sign_calls, 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

static void test_audit_lost_after_sign(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    fake.during_sign = audit_full; /* the intent is written, the issued record is not */
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    tu_uncap_files();
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "the audit log cannot be written; the certificate was not released");
    assert_int_equal(fake.sign_calls, 1);
    assert_int_equal(revoke_calls(e), 1);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* An audit log that cannot be opened stops the engine from starting. */
static void test_audit_unopenable(void **state)
{
    struct env *e = env_parse(&(struct env_opts){.cmp = CMP_DEFAULTS});
    char err[GW_ERR_LEN] = "";

    (void)state;
    free(e->cfg->audit.file);
    e->cfg->audit.file = strdup(dir); /* a directory */
    assert_non_null(e->ups = gw_upstream_set_new(e->cfg->upstreams, e->cfg->n_upstreams, e->cfg->roles,
                                                 e->cfg->n_roles, &e->cfg->upstream_signer, NULL, NULL, err));
    assert_null(engine_new(e->cfg, e->ups, err));
    assert_non_null(strstr(err, "CMP engine"));
    free(e->cfg->audit.file);
    e->cfg->audit.file = NULL;
    assert_null(engine_new(e->cfg, e->ups, err));
    assert_non_null(strstr(err, "no audit log"));
    env_free(e);
}

/* No engine starts over |e|'s configuration as it stands: the audit log is refused, |want| in why. */
static void audit_refused(struct env *e, const char *want)
{
    struct gw_upstream_set *ups;
    char err[GW_ERR_LEN] = "";

    assert_non_null(ups = gw_upstream_set_new(e->cfg->upstreams, e->cfg->n_upstreams, e->cfg->roles,
                                              e->cfg->n_roles, &e->cfg->upstream_signer, NULL, NULL, err));
    if (engine_new(e->cfg, ups, err) != NULL || strstr(err, want) == NULL)
        fail_msg("audit.file not refused with \"%s\": \"%s\"", want, err);
    gw_upstream_set_free(ups);
}

/* Neither a start nor a reopen of |e|'s audit log takes the link at its path: the file it names keeps. */
static void audit_link_refused(struct env *e, const char *victim, const char *want)
{
    audit_refused(e, want);
    if (e->engine != NULL)
        assert_int_equal(gw_cmp_engine_reopen_audit(e->engine), GW_ERR_IO);
    holds_text(victim, "root:x:0:0:root:/root:/bin/sh\n");
}

/*
 * Whoever may write the audit log itself could append forged records or cut it short: a log its
 * group or others may write, or one of another owner, is refused by a start, a reload, a reopen and
 * `cmpgw check` alike. A log the start creates is 0600; a group may be given reading (0640).
 */
static void test_audit_file_writers(void **state)
{
    static const struct {
        mode_t mode;
        long uid; /* -1: this process's; another needs root */
        const char *why;
    } cases[] = {
        {0600, -1, NULL},
        {0640, -1, NULL},
        {0644, -1, NULL},
        {0620, -1, "is writable by group or others (mode 0620): make it 0600"},
        {0602, -1, "is writable by group or others (mode 0602): make it 0600"},
        {0666, -1, "is writable by group or others (mode 0666): make it 0600"},
        {0600, 65534, "is owned by uid 65534"},
    };
    struct env *e = env_parse(&(struct env_opts){.cmp = CMP_DEFAULTS});
    char err[GW_ERR_LEN], want[GW_ERR_LEN];
    struct gw_cmp_engine *next;
    struct stat st;
    mode_t mask = umask(0);

    (void)state;
    env_start(e);
    umask(mask);
    assert_int_equal(stat(e->audit_path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].uid >= 0 && geteuid() != 0)
            continue;
        assert_int_equal(chmod(e->audit_path, cases[i].mode), 0);
        if (cases[i].uid >= 0)
            assert_int_equal(chown(e->audit_path, (uid_t)cases[i].uid, (gid_t)-1), 0);
        err[0] = '\0';
        next = engine_after(e->cfg, e->ups, e->engine, err);
        if (cases[i].why == NULL) {
            if (next == NULL || gw_audit_file_check(e->audit_path, geteuid(), err) != 0 ||
                gw_cmp_engine_reopen_audit(e->engine) != 0)
                fail_msg("case %zu refused: %s", i, err);
            gw_cmp_engine_free(next);
            continue;
        }
        snprintf(want, sizeof(want), "audit.file: \"%s\" %s", e->audit_path, cases[i].why);
        if (next != NULL || strstr(err, want) == NULL)
            fail_msg("case %zu: not refused by a reload: %s", i, err);
        assert_int_equal(gw_audit_file_check(e->audit_path, geteuid(), err), GW_ERR_FORBIDDEN);
        assert_non_null(strstr(err, want));
        assert_int_equal(gw_cmp_engine_reopen_audit(e->engine), GW_ERR_IO);
        audit_refused(e, want);
        if (cases[i].uid >= 0)
            assert_int_equal(chown(e->audit_path, geteuid(), (gid_t)-1), 0);
    }
    assert_int_equal(chmod(e->audit_path, 0600), 0);
    unlink(e->audit_path);
    env_free(e);
}

/*
 * Whoever may add names to the audit log's directory could plant a symbolic or a hard link at its path,
 * before a start (perhaps as root) or after a rotation, and have the records appended to a file of
 * their choice. Neither is written through: the start is refused, a reopen keeps the rotated file. A
 * directory its group or others may write, but for the sticky bit, is refused as cmp.revoked_file's is.
 */
static void test_audit_planted(void **state)
{
    struct env *e = env_parse(&(struct env_opts){.cmp = CMP_DEFAULTS});
    struct client cl = {.env = e};
    char sub[96], log[128], victim[128], err[GW_ERR_LEN] = "", want[GW_ERR_LEN];
    OSSL_CMP_CTX *ctx;
    FILE *f;

    (void)state;
    snprintf(sub, sizeof(sub), "%s/audit.dir", dir);
    snprintf(log, sizeof(log), "%s/audit.log", sub);
    snprintf(victim, sizeof(victim), "%s/passwd", sub);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_non_null(f = fopen(victim, "w"));
    fputs("root:x:0:0:root:/root:/bin/sh\n", f);
    fclose(f);
    free(e->cfg->audit.file);
    e->cfg->audit.file = strdup(log);
    assert_int_equal(symlink(victim, log), 0);
    audit_link_refused(e, victim, "a symbolic link");
    assert_int_equal(unlink(log), 0);
    assert_int_equal(link(victim, log), 0);
    audit_link_refused(e, victim, "has 2 names (a hard link)");
    assert_int_equal(unlink(log), 0);

    env_start(e);
    assert_int_equal(rename(log, e->audit_path), 0); /* rotated: what follows goes to the new file */
    assert_int_equal(symlink(victim, log), 0);
    audit_link_refused(e, victim, "a symbolic link");
    assert_int_equal(unlink(log), 0);
    assert_int_equal(link(victim, log), 0);
    audit_link_refused(e, victim, "has 2 names (a hard link)");
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 1); /* in the rotated file */
    holds_text(victim, "root:x:0:0:root:/root:/bin/sh\n");
    assert_int_equal(unlink(log), 0);

    snprintf(want, sizeof(want),
             "audit.file: the directory \"%s\" is writable by group or others without the sticky bit "
             "(mode 0777): make it 0755",
             sub);
    assert_int_equal(chmod(sub, 0777), 0);
    audit_refused(e, want);
    assert_int_equal(gw_cmp_engine_reopen_audit(e->engine), GW_ERR_IO);
    assert_int_equal(gw_audit_file_check(log, geteuid(), err), GW_ERR_FORBIDDEN);
    assert_string_equal(err, want);
    assert_int_equal(chmod(sub, 01777), 0); /* as /tmp */
    assert_int_equal(gw_audit_file_check(log, geteuid(), err), 0);
    assert_int_equal(gw_cmp_engine_reopen_audit(e->engine), 0);
    assert_int_equal(chmod(sub, 0700), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    unlink(e->audit_path);
    env_free(e);
    unlink(log);
    unlink(victim);
    rmdir(sub);
}

/* ---- 3GPP TS 33.310 (docs/3gpp.md): allow-list, min_hash, caPubs ---- */

struct tgpp_case {
    const char *name;
    const char *allowlist; /* file content; NULL = no "device_allowlist" */
    const char *min_hash;  /* NULL = unset */
    enum prot prot;
    int digest_nid, mac_nid; /* the client's protection/POPO digest and PBM MAC; 0 = OpenSSL's default */
    int fail_bit;            /* -1: issued */
    const char *text;        /* a name with "trust entry": the role trusts "other" too (TGPP_OTHER) */
};

static void write_text(const char *name, const char *text)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

static char *tgpp_role(const struct tgpp_case *tc, char *buf, size_t cap)
{
    size_t n = 0;

    buf[0] = '\0';
    if (tc->allowlist != NULL) {
        write_text("tgpp.allow", tc->allowlist);
        n += (size_t)snprintf(buf, cap, "\"device_allowlist\": \"tgpp.allow\", \"ca_pubs\": \"ca.pem\"");
    }
    if (tc->min_hash != NULL)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"min_hash\": \"%s\"", n > 0 ? ", " : "", tc->min_hash);
    return n > 0 ? buf : NULL;
}

/* A second trust entry: a CA of its own, which could write the demo client's subject and serial. */
#define TGPP_OTHER "\"other\": {\"ca_file\": \"tgpp-other.pem\", \"revocation\": \"none\"}"

static void write_other_ca(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *ca = cert_under(NULL, key, key, "cmpgw test other vendor CA", 4301, 1);
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/tgpp-other.pem", dir);
    assert_non_null(f = fopen(path, "w"));
    assert_int_equal(PEM_write_X509(f, ca), 1);
    fclose(f);
    X509_free(ca);
    EVP_PKEY_free(key);
}

static void test_3gpp_roles(void **state)
{
    static const struct tgpp_case cases[] = {
        {"listed by subject", "# ops\n/O=cmpgw demo/CN=demo-client\n", NULL, SIG, 0, 0, -1, NULL},
        {"not listed", "/O=cmpgw demo/CN=someone-else\n", NULL, SIG, 0, 0,
         OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "device /O=cmpgw demo/CN=demo-client is not on this route's allow-list"},
        {"listed by serial", NULL, NULL, SIG, 0, 0, -1, NULL}, /* file written from the client's serial */
        {"empty list", "# nobody\n", NULL, SIG, 0, 0, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "allow-list"},
        {"PBM on a listed route", "/O=cmpgw demo/CN=demo-client\n", NULL, PBM, 0, 0,
         OSSL_CMP_PKIFAILUREINFO_notAuthorized, "signature-protected requests only"},
        /* SHA-1 is under the floor of every route (GW_MIN_PROTECTION_HASH_BITS), refused before min_hash */
        {"SHA-1 signature", NULL, "sha256", SIG, NID_sha1, 0, OSSL_CMP_PKIFAILUREINFO_badAlg,
         "message protection is signed with a hash under 112 bits of security (ecdsa-with-SHA1)"},
        {"SHA-224 signature", NULL, "sha256", SIG, NID_sha224, 0, OSSL_CMP_PKIFAILUREINFO_badAlg,
         "SHA-224 is not accepted on this route: sign with SHA-256 or stronger (3GPP TS 33.310)"},
        {"SHA-256 under sha384", NULL, "sha384", SIG, NID_sha256, 0, OSSL_CMP_PKIFAILUREINFO_badAlg,
         "SHA-256 is not accepted on this route: sign with SHA-384 or stronger"},
        {"SHA-512 signature", NULL, "sha256", SIG, NID_sha512, 0, -1, NULL},
        {"SHA-1 without min_hash", NULL, NULL, SIG, NID_sha1, 0, OSSL_CMP_PKIFAILUREINFO_badAlg,
         "message protection is signed with a hash under 112 bits of security (ecdsa-with-SHA1)"},
        {"SHA-224 without min_hash", NULL, NULL, SIG, NID_sha224, 0, -1, NULL},
        {"PBM with hmac-sha1", NULL, "sha256", PBM, 0, NID_hmac_sha1, OSSL_CMP_PKIFAILUREINFO_badAlg,
         "SHA-1 is not accepted"},
        {"PBM with hmac-sha256", NULL, "sha256", PBM, 0, NID_hmacWithSHA256, -1, NULL},
        /* SHA-224 is on PBM's allow-list (RFC 9481 §2, §6.2.1): min_hash refuses it as a signature's */
        {"PBM with owf SHA-224", NULL, "sha256", PBM, 0, NID_hmacWithSHA256, OSSL_CMP_PKIFAILUREINFO_badAlg,
         "SHA-224 is not accepted on this route: sign with SHA-256 or stronger (3GPP TS 33.310)"},
        {"PBM with owf SHA-224 without min_hash", NULL, NULL, PBM, 0, NID_hmacWithSHA256, -1, NULL},
        {"PBM with hmac-sha224", NULL, "sha256", PBM, 0, NID_hmacWithSHA224, OSSL_CMP_PKIFAILUREINFO_badAlg,
         "SHA-224 is not accepted on this route"},
        {"PBM with hmac-sha224 without min_hash", NULL, NULL, PBM, 0, NID_hmacWithSHA224, -1, NULL},
        /* the POPO's hash has a floor on every route too (GW_MIN_POPO_HASH_BITS), checked before min_hash;
           OpenSSL signs the POPO with the digest of its protection, which PBM leaves out of its MAC */
        {"SHA-1 POPO under PBM without min_hash", NULL, NULL, PBM, NID_sha1, NID_hmacWithSHA256,
         OSSL_CMP_PKIFAILUREINFO_badAlg,
         "the proof-of-possession signature uses a hash under 112 bits of security (SHA-1): sign the request "
         "with SHA-256 or stronger"},
        {"SHA-1 POPO under PBM", NULL, "sha256", PBM, NID_sha1, NID_hmacWithSHA256,
         OSSL_CMP_PKIFAILUREINFO_badAlg,
         "the proof-of-possession signature uses a hash under 112 bits of security (SHA-1)"},
        {"SHA-224 POPO under PBM without min_hash", NULL, NULL, PBM, NID_sha224, NID_hmacWithSHA256, -1,
         NULL},
        /* authorization first: a client the route does not take learns nothing of its algorithm rules */
        {"SHA-1 POPO under PBM on a listed route", "/O=cmpgw demo/CN=demo-client\n", "sha256", PBM, NID_sha1,
         NID_hmacWithSHA256, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "signature-protected requests only"},
        /* a line names the trust entry its device chains to: another entry's CA may write the same names */
        {"listed with its trust entry", "trust:demo /O=cmpgw demo/CN=demo-client\n", NULL, SIG, 0, 0, -1,
         NULL},
        {"listed for another trust entry", "trust:other /O=cmpgw demo/CN=demo-client\n", NULL, SIG, 0, 0,
         OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "device /O=cmpgw demo/CN=demo-client is not on this route's allow-list"},
        {"serial listed for another trust entry", NULL, NULL, SIG, 0, 0,
         OSSL_CMP_PKIFAILUREINFO_notAuthorized, "is not on this route's allow-list"},
        {"serial listed with its trust entry", NULL, NULL, SIG, 0, 0, -1, NULL},
    };
    char role[512], serial_list[160];

    (void)state;
    write_other_ca();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tgpp_case tc = cases[i];
        const char *other = strstr(tc.name, "trust entry") != NULL ? TGPP_OTHER : NULL;
        struct env *e;
        struct client cl;
        OSSL_CMP_CTX *ctx;
        X509 *cert;

        print_message("case: %s\n", tc.name);
        if (strstr(tc.name, "serial") != NULL) {
            BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(client_cert), NULL);
            char *hex = BN_bn2hex(bn);
            const char *scope = other == NULL                        ? ""
                                : strstr(tc.name, "another") != NULL ? "trust:other "
                                                                     : "trust:demo ";

            snprintf(serial_list, sizeof(serial_list), "%s/O=other/CN=x\n  %sserial:%s\r\n", scope, scope,
                     hex);
            tc.allowlist = serial_list;
            OPENSSL_free(hex);
            BN_free(bn);
        }
        e = env_open(&(struct env_opts){
            .cmp = CMP_DEFAULTS, .role_extra = tgpp_role(&tc, role, sizeof(role)), .trust_entry = other});
        cl = (struct client){.env = e};
        ctx = tc.prot == SIG ? client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0)
                             : client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
        if (tc.digest_nid != 0)
            assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_DIGEST_ALGNID, tc.digest_nid), 1);
        if (tc.mac_nid != 0)
            assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MAC_ALGNID, tc.mac_nid), 1);
        if (strstr(tc.name, "owf SHA-224") != NULL)
            assert_int_equal(OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_OWF_ALGNID, NID_sha224), 1);
        cert = OSSL_CMP_exec_IR_ses(ctx);
        if (tc.fail_bit < 0) {
            assert_non_null(cert);
            /* caPubs where configured (ip only): the operator root */
            if (tc.allowlist != NULL) {
                STACK_OF(X509) *pubs = OSSL_CMP_CTX_get1_caPubs(ctx);

                assert_int_equal(sk_X509_num(pubs), 1);
                assert_int_equal(X509_cmp(sk_X509_value(pubs, 0), ca_cert), 0);
                sk_X509_pop_free(pubs, X509_free);
            }
        } else {
            assert_null(cert);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, tc.fail_bit, tc.text);
            assert_int_equal(audit_count(e, "intent", NULL, NULL, NULL), 0); /* never reached the CA */
        }
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/* Drops the certConf: its transaction stays open, awaiting it. */
static OSSL_CMP_MSG *drop_certconf(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)ctx, (void)cl;
    if (OSSL_CMP_MSG_get_bodytype(req) != GW_CMP_BODY_CERTCONF)
        return req;
    OSSL_CMP_MSG_free(req);
    return NULL;
}

/* client_cert's subject and key with a 250-character OU and then OU=|tail|, signed by the demo root. */
static X509 *long_signer(EVP_PKEY *ca_key, const char *tail)
{
    X509 *x = X509_dup(client_cert);
    X509_NAME *name = X509_NAME_dup(X509_get_subject_name(client_cert));
    unsigned char ou[251];

    memset(ou, 'A', sizeof(ou) - 1);
    ou[sizeof(ou) - 1] = '\0';
    assert_true(x != NULL && name != NULL);
    assert_int_equal(
        X509_NAME_add_entry_by_NID(name, NID_organizationalUnitName, V_ASN1_UTF8STRING, ou, -1, -1, 0), 1);
    assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_organizationalUnitName, V_ASN1_UTF8STRING,
                                                (const unsigned char *)tail, -1, -1, 0),
                     1);
    assert_int_equal(X509_set_subject_name(x, name), 1);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    X509_NAME_free(name);
    return x;
}

/* The identity of each record of |e| with |event|, in |ids| (up to |max|); how many. */
static int audit_identities(const struct env *e, const char *event, char ids[][GW_IDENTITY_LEN], int max)
{
    FILE *f = fopen(e->audit_path, "r");
    char line[16384];
    int n = 0;

    while (f != NULL && n < max && fgets(line, sizeof(line), f) != NULL) {
        struct json_object *o = json_tokener_parse(line), *v, *id;

        if (o != NULL && json_object_object_get_ex(o, "event", &v) &&
            strcmp(json_object_get_string(v), event) == 0 && json_object_object_get_ex(o, "identity", &id))
            snprintf(ids[n++], GW_IDENTITY_LEN, "%s", json_object_get_string(id));
        json_object_put(o);
    }
    if (f != NULL)
        fclose(f);
    return n;
}

/*
 * Two signers whose subjects are the same for their first 255 characters and differ after: two
 * identities, each with its own max_transactions_per_identity (1 here), told apart in the audit
 * log; and neither is the identity of the short subject they both begin with.
 */
static void test_long_identities_apart(void **state)
{
    struct env *e = env_open(
        &(struct env_opts){.cmp = "\"message_time_window\": \"300s\", \"transaction_ttl\": \"300s\", "
                                  "\"max_transactions_per_identity\": 1",
                           .confirm = 1});
    EVP_PKEY *ca_key = load_key("ca.key");
    X509 *signers[3] = {long_signer(ca_key, "device-1"), long_signer(ca_key, "device-2"), client_cert};
    char ids[3][GW_IDENTITY_LEN];

    (void)state;
    for (int i = 0; i < 3; i++) {
        struct client cl = {.env = e, .tamper = drop_certconf};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, signers[i], client_key, NULL, NULL, 0);

        assert_null(OSSL_CMP_exec_IR_ses(ctx)); /* issued; its certConf never reaches the gateway */
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), i + 1);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
    }
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 3);
    assert_int_equal(audit_identities(e, "issued", ids, 3), 3);
    assert_string_not_equal(ids[0], ids[1]);
    assert_string_not_equal(ids[0], ids[2]);
    assert_string_not_equal(ids[1], ids[2]);
    assert_string_equal(ids[2], "/O=cmpgw demo/CN=demo-client");
    for (int i = 0; i < 2; i++) { /* bounded, readable, and marked as cut */
        assert_true(strlen(ids[i]) < GW_IDENTITY_LEN);
        assert_true(strncmp(ids[i], "/O=cmpgw demo/CN=demo-client/OU=AAAA", 36) == 0);
        assert_non_null(strstr(ids[i], "/#sha256="));
    }
    /* the cap holds per identity: a second open transaction of the first signer is refused */
    {
        struct client cl = {.env = e, .tamper = drop_certconf};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, signers[0], client_key, NULL, NULL, 0);

        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      "too many open transactions");
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
    }
    X509_free(signers[0]);
    X509_free(signers[1]);
    EVP_PKEY_free(ca_key);
    env_free(e);
}

/* A sender of the quota tests: the demo's signature or PBM secret, over a TLS client (NULL: none). */
struct quota_sender {
    const char *name;
    enum prot prot;
    X509 *tls;
};

#define QUOTA_CMP "\"message_time_window\": \"300s\", \"transaction_ttl\": \"300s\", "
#define QUOTA_OPEN_CMP QUOTA_CMP "\"max_transactions_per_identity\": 2"
#define QUOTA_RECENT_CMP QUOTA_CMP "\"max_recent_per_identity\": 2"

#define QUOTA_SENDERS 4
#define QUOTA_SENDERS_TLS 3 /* the first ones, over a TLS client */

/* The senders of the quota tests into |s|, |tls2| a second TLS client. */
static void quota_senders(struct quota_sender s[QUOTA_SENDERS], X509 *tls2)
{
    s[0] = (struct quota_sender){"PBM over TLS client 1", PBM, client_cert};
    s[1] = (struct quota_sender){"the same PBM secret over TLS client 2", PBM, tls2};
    s[2] = (struct quota_sender){"TLS client 1 with a signature", SIG, client_cert};
    s[3] = (struct quota_sender){"the same PBM secret without a TLS client", PBM, NULL};
}

/*
 * One ir of |s| on |e|, confirmed implicitly (|implicit|) or never (its transaction stays open):
 * whether it got its certificate; if not, it must have been refused with systemUnavail and |refusal|.
 */
static int ir_quota(struct env *e, const struct quota_sender *s, int implicit, const char *refusal)
{
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = s->prot == SIG
                            ? client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0)
                            : client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
    X509 *cert;

    e->tls = s->tls;
    OSSL_CMP_CTX_set_option(ctx, implicit ? OSSL_CMP_OPT_IMPLICIT_CONFIRM : OSSL_CMP_OPT_DISABLE_CONFIRM, 1);
    if ((cert = OSSL_CMP_exec_IR_ses(ctx)) == NULL)
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail, refusal);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    return cert != NULL;
}

/*
 * Each of the |n| senders in turn takes its whole share of a per-identity cap of 2 (open transactions,
 * or with |implicit| recent transactionIDs): an ir on |a|, one on |b|, and a third, on |a|, refused with
 * |refusal|. Each begins only once the one before holds its whole share. |a| and |b|: two instances
 * sharing their state, or one engine twice.
 */
static void take_shares(struct env *a, struct env *b, const struct quota_sender *senders, size_t n,
                        int implicit, const char *refusal)
{
    for (size_t i = 0; i < n; i++) {
        print_message("sender: %s\n", senders[i].name);
        assert_true(ir_quota(a, &senders[i], implicit, refusal));
        assert_true(ir_quota(b, &senders[i], implicit, refusal));
        assert_false(ir_quota(a, &senders[i], implicit, refusal));
    }
}

/*
 * Devices of a batch share one PBM secret, each over its own TLS client certificate: one that holds its
 * share of max_transactions_per_identity, or of max_recent_per_identity, locks none of the others
 * out. The share is the identity's over that certificate: one TLS client with another identity (its
 * signature) has that identity's share, capped all the same; without a TLS client, the identity's.
 */
static void test_quota_per_tls_client(void **state)
{
    X509 *tls2 = load_cert("signer.pem");
    struct quota_sender senders[QUOTA_SENDERS];
    struct env *e = env_open(&(struct env_opts){.cmp = QUOTA_OPEN_CMP, .confirm = 1});

    (void)state;
    quota_senders(senders, tls2);
    take_shares(e, e, senders, QUOTA_SENDERS, 0, "too many open transactions for ");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 2 * QUOTA_SENDERS);
    env_free(e); /* those left open: freed as abandoned */
    e = env_new(QUOTA_RECENT_CMP);
    take_shares(e, e, senders, QUOTA_SENDERS, 1, "too many recent transactions from ");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    env_free(e);
    X509_free(tls2);
}

/* |cert| issued by the request of |ctx|, or (|refusal| set) refused with notAuthorized and |refusal|. */
static void expect_listed(OSSL_CMP_CTX *ctx, X509 *cert, const char *refusal)
{
    if (refusal == NULL) {
        assert_non_null(cert);
        return;
    }
    assert_null(cert);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized, refusal);
}

/*
 * A signer whose one-line subject is longer than a fixed buffer: cut to one, "/O=cmpgw demo/CN=demo-client/
 * OU=AAA..." would read as the listed "/O=cmpgw demo/CN=demo-client" and pass the allow-list.
 */
static void test_3gpp_long_subject(void **state)
{
    struct tgpp_case tc = {"long subject", "/O=cmpgw demo/CN=demo-client\n", NULL, SIG, 0, 0, -1, NULL};
    EVP_PKEY *ca_key = load_key("ca.key");
    X509 *longer = X509_dup(client_cert);
    X509_NAME *name = X509_NAME_dup(X509_get_subject_name(client_cert));
    unsigned char ou[251];
    char role[512];

    (void)state;
    assert_true(ca_key != NULL && longer != NULL && name != NULL);
    memset(ou, 'A', sizeof(ou) - 1);
    ou[sizeof(ou) - 1] = '\0';
    /* past the 64 characters of ub-organizational-unit-name: a string type, not MBSTRING, to get it in */
    assert_int_equal(
        X509_NAME_add_entry_by_NID(name, NID_organizationalUnitName, V_ASN1_UTF8STRING, ou, -1, -1, 0), 1);
    assert_int_equal(X509_set_subject_name(longer, name), 1);
    assert_true(X509_sign(longer, ca_key, EVP_sha256()) > 0);
    for (int twin = 0; twin < 2; twin++) {
        struct env *e = env_open(
            &(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = tgpp_role(&tc, role, sizeof(role))});
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, twin ? client_cert : longer, client_key, NULL, NULL, 0);
        X509 *cert = OSSL_CMP_exec_IR_ses(ctx);

        print_message("case: %s\n", twin ? "the listed device" : "a longer subject");
        expect_listed(ctx, cert,
                      twin ? NULL : "is not on this route's allow-list"); /* twin: the listed device */
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
    X509_NAME_free(name);
    X509_free(longer);
    EVP_PKEY_free(ca_key);
}

/*
 * A kur signed by an operator certificate is exempt from the allow-list because it renews that
 * certificate: one that asks for another subject or for names the certificate does not carry is
 * a new device's enrolment, checked against the list as an ir is (the operator certificate is not
 * on it). Else any holder of an operator certificate, a device taken off the list included, would
 * get a certificate for any name the role allows.
 */
static void test_3gpp_kur_names(void **state)
{
    struct tgpp_case tc = {"kur", "/O=cmpgw demo/CN=demo-client\n", NULL, SIG, 0, 0, -1, NULL};
    static const struct {
        const char *name, *cn, *dns; /* NULL cn: the operator certificate's; NULL dns: no SAN */
        int refused;
    } cases[] = {
        {"the same subject", NULL, NULL, 0},
        {"another device's subject", "other-device", NULL, 1},
        {"a name the certificate does not carry", NULL, "other-device.example", 1},
    };
    char role[512];
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    X509 *op;

    (void)state;
    e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = tgpp_role(&tc, role, sizeof(role))});
    cl = (struct client){.env = e};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0); /* the listed vendor certificate */
    assert_non_null(op = OSSL_CMP_exec_IR_ses(ctx));                    /* the operator certificate */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct client cl2 = {.env = e};
        OSSL_CMP_CTX *kur = client_new(&cl2, SIG, op, OSSL_CMP_CTX_get0_newPkey(ctx, 1), NULL, NULL, 0);
        X509 *cert;

        print_message("case: %s\n", cases[i].name);
        OSSL_CMP_CTX_set1_oldCert(kur, op);
        if (cases[i].cn != NULL) {
            X509_NAME *n = X509_NAME_new();

            X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cases[i].cn, -1, -1, 0);
            OSSL_CMP_CTX_set1_subjectName(kur, n);
            X509_NAME_free(n);
        }
        if (cases[i].dns != NULL) {
            GENERAL_NAME *gn = GENERAL_NAME_new();
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();

            ASN1_STRING_set(s, cases[i].dns, -1);
            GENERAL_NAME_set0_value(gn, GEN_DNS, s);
            assert_int_equal(OSSL_CMP_CTX_push1_subjectAltName(kur, gn), 1);
            GENERAL_NAME_free(gn);
        }
        cert = OSSL_CMP_exec_KUR_ses(kur);
        if (!cases[i].refused) {
            assert_non_null(cert);
            assert_status(kur, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
        } else {
            assert_null(cert);
            assert_status(kur, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                          "device /CN=test-device is not on this route's allow-list");
        }
        client_cleanup(&cl2);
        OSSL_CMP_CTX_free(kur);
    }
    assert_int_equal(audit_count(e, "intent", NULL, NULL, NULL), 2); /* the ir and the renewal only */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* The successful chain verifications of |issuer_checked| against the store counting them. */
static X509 *issuer_checked;
static int issuer_checks;

static int count_issuer_checks(int ok, X509_STORE_CTX *ctx)
{
    if (ok == 1 && X509_STORE_CTX_get_error_depth(ctx) == 0 &&
        X509_cmp(X509_STORE_CTX_get_current_cert(ctx), issuer_checked) == 0)
        issuer_checks++;
    return ok;
}

/*
 * A kur of an operator certificate on a route with an allow-list asks twice whether the role's CA
 * issued its signer (for the list's exemption, then for the kur rule): the chain is verified against
 * the role's issuer store once. Twin: the same kur on a route without a list asks once all the same.
 */
static void test_3gpp_kur_verified_once(void **state)
{
    (void)state;
    for (int listed = 1; listed >= 0; listed--) {
        struct tgpp_case tc = {"kur", listed ? "/O=cmpgw demo/CN=demo-client\n" : NULL, NULL, SIG, 0, 0, -1,
                               NULL};
        char role[512];
        struct env *e = env_open(
            &(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = tgpp_role(&tc, role, sizeof(role))});
        struct client cl = {.env = e}, cl2 = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0), *kur;
        X509_STORE *store = cmp_issuer_store(e->engine, gw_upstream_set_get0(e->ups, "local"));

        print_message("case: %s\n", listed ? "an allow-list" : "no allow-list");
        assert_non_null(store);
        assert_non_null(issuer_checked = OSSL_CMP_exec_IR_ses(ctx)); /* the operator certificate */
        X509_STORE_set_verify_cb(store, count_issuer_checks);
        issuer_checks = 0;
        kur = client_new(&cl2, SIG, issuer_checked, OSSL_CMP_CTX_get0_newPkey(ctx, 1), NULL, NULL, 0);
        OSSL_CMP_CTX_set1_oldCert(kur, issuer_checked);
        assert_non_null(OSSL_CMP_exec_KUR_ses(kur));
        assert_int_equal(issuer_checks, 1);
        X509_STORE_set_verify_cb(store, NULL);
        client_cleanup(&cl2);
        OSSL_CMP_CTX_free(kur);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * An operator certificate whose revocation the gateway cannot check (an upstream whose CA issued it says
 * "check_revocation": false) renews only while the allow-list names it: taking a device off the list
 * is then the one way to stop a revoked one renewing (docs/migration.md). Once, it was exempt as a
 * renewal and renewed whatever the list said; and it still was when the role's upstream checked
 * revocation but another upstream of the same CA, the one the credential check asks, did not.
 */
static void test_3gpp_kur_unchecked(void **state)
{
    static const struct {
        const char *name, *list;
        int deleg; /* "deleg", a local upstream of the same CA listed before the role's, unchecked */
    } cases[] = {
        {"the role's upstream unchecked, not listed", "/O=cmpgw demo/CN=demo-client\n", 0},
        {"the role's upstream unchecked, listed", "/O=cmpgw demo/CN=demo-client\n/CN=test-device\n", 0},
        {"another upstream of its CA unchecked, not listed", "/O=cmpgw demo/CN=demo-client\n", 1},
    };
    char role[512];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tgpp_case tc = {"kur", cases[i].list, NULL, SIG, 0, 0, -1, NULL};
        struct env *e = env_parse(&(struct env_opts){
            .cmp = CMP_DEFAULTS, .role_extra = tgpp_role(&tc, role, sizeof(role)), .deleg = cases[i].deleg});
        struct client cl = {.env = e}, cl2 = {.env = e};
        OSSL_CMP_CTX *ctx, *kur;
        X509 *op, *cert;

        print_message("case: %s\n", cases[i].name);
        e->cfg->upstreams[0].check_revocation = false;
        env_start(e);
        ctx =
            client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0); /* the listed vendor certificate */
        assert_non_null(op = OSSL_CMP_exec_IR_ses(ctx));                  /* the operator certificate */
        kur = client_new(&cl2, SIG, op, OSSL_CMP_CTX_get0_newPkey(ctx, 1), NULL, NULL, 0);
        OSSL_CMP_CTX_set1_oldCert(kur, op);
        cert = OSSL_CMP_exec_KUR_ses(kur);
        expect_listed(kur, cert,
                      strstr(cases[i].list, "test-device") != NULL
                          ? NULL
                          : "device /CN=test-device is not on this route's allow-list");
        client_cleanup(&cl2);
        OSSL_CMP_CTX_free(kur);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * An operator certificate of the role's crmf_upstream (where its ir and kur go, under another issuing
 * CA than the role's upstream) is the role's as much as one of its upstream's: rr revokes through it,
 * and its kur renews without the allow-list naming it. Once, that kur was checked against the list of
 * vendor certificates and refused.
 */
static void test_3gpp_kur_crmf_upstream(void **state)
{
    /* the role trusts "crmf" too: the line names the entry of the vendor certificate */
    struct tgpp_case tc = {"kur", "trust:demo /O=cmpgw demo/CN=demo-client\n", NULL, SIG, 0, 0, -1, NULL};
    EVP_PKEY *root_key = load_key("ca.key"), *ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *ca = cert_under(ca_cert, root_key, ca_key, "cmpgw test crmf CA", 4301, 1), *op, *cert;
    char role[512], extra[640], path[128], *pem = tu_pem_of(ca);
    struct env *e;
    struct client cl, cl2;
    OSSL_CMP_CTX *ctx, *kur;
    FILE *f;

    (void)state;
    write_text("crmf-ca.pem", pem);
    snprintf(path, sizeof(path), "%s/crmf-ca.key", dir);
    assert_non_null(f = fopen(path, "w"));
    assert_int_equal(PEM_write_PrivateKey(f, ca_key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    snprintf(extra, sizeof(extra), "%s, \"crmf_upstream\": \"crmf\"", tgpp_role(&tc, role, sizeof(role)));
    e = env_open(&(struct env_opts){
        .cmp = CMP_DEFAULTS,
        .role_extra = extra,
        .upstream = "\"crmf\": {\"type\": \"local\", \"cert\": \"crmf-ca.pem\", \"key\": \"crmf-ca.key\", "
                    "\"chain\": \"ca.pem\"}",
        .trust_entry = "\"crmf\": {\"ca_file\": \"ca.pem\", \"untrusted_file\": \"crmf-ca.pem\", "
                       "\"revocation\": \"none\"}"});
    cl = (struct client){.env = e};
    cl2 = (struct client){.env = e};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0); /* the listed vendor certificate */
    assert_non_null(op = OSSL_CMP_exec_IR_ses(ctx));                    /* the operator certificate */
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(op), X509_get_subject_name(ca)), 0);
    kur = client_new(&cl2, SIG, op, OSSL_CMP_CTX_get0_newPkey(ctx, 1), NULL, NULL, 0);
    OSSL_CMP_CTX_set1_oldCert(kur, op);
    assert_non_null(cert = OSSL_CMP_exec_KUR_ses(kur));
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(ca)), 0);
    client_cleanup(&cl2);
    OSSL_CMP_CTX_free(kur);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
    free(pem);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(root_key);
}

#define ALLOW_KEY "\"device_allowlist\": \"tgpp.allow\""

/* Allow-list files the config refuses, with the line that is wrong. */
static void test_3gpp_config(void **state)
{
    static const struct {
        const char *file, *role_extra, *want;
    } cases[] = {
        {"CN=no-slash\n", "\"device_allowlist\": \"tgpp.allow\"", "line 1: expected a one-line subject"},
        {"# ok\nserial:xyz\n", "\"device_allowlist\": \"tgpp.allow\"", "line 2: expected \"serial:<hex>\""},
        {"serial:\n", "\"device_allowlist\": \"tgpp.allow\"", "line 1"},
        {"serial:0102030405060708090a0b0c0d0e0f101112131415\n", "\"device_allowlist\": \"tgpp.allow\"",
         "at most 20 octets"},
        {"", "\"device_allowlist\": \"no-such.allow\"", "no-such.allow"},
        {"", "\"min_hash\": \"sha1\"", "min_hash"},
        {"", "\"min_hash\": 256", "min_hash"},
        {"", "\"subject_from_signer\": \"yes\"", "subject_from_signer"},
        {"", "\"ca_pubs\": \"tgpp.allow\"", "no PEM certificate"},
    };
    /* a role trusting two CAs ("demo", "other"): a bare line could be of either */
    static const char *const two[][2] = {
        {"trust:demo serial:0a\nserial:0b\n",
         "line 2: no \"trust:<name> \" before \"serial:0b\", and the role trusts 2 entries"},
        {"# c\n/O=cmpgw demo/CN=demo-client\n",
         "line 2: no \"trust:<name> \" before \"/O=cmpgw demo/CN=demo-client\""},
        {"trust:demo serial:0a\n\ntrust:nope serial:0b\n", "tgpp.allow\" line 3: unknown trust \"nope\""},
        {"trust:de/mo serial:0a\n", "line 1: expected \"trust:<name> \" and an entry"},
        {"trust:demo\n", "line 1: expected \"trust:<name> \" and an entry"},
        {"trust: serial:0a\n", "line 1: expected \"trust:<name> \" and an entry"},
        {"trust:demo CN=x\n", "line 1: expected a one-line subject"},
        {"trust:t1 serial:1\ntrust:t2 serial:1\ntrust:t3 serial:1\ntrust:t4 serial:1\ntrust:t5 serial:1\n"
         "trust:t6 serial:1\ntrust:t7 serial:1\ntrust:t8 serial:1\ntrust:t9 serial:1\ntrust:t10 serial:1\n"
         "trust:t11 serial:1\ntrust:t12 serial:1\ntrust:t13 serial:1\ntrust:t14 serial:1\ntrust:t15 "
         "serial:1\n"
         "trust:t16 serial:1\ntrust:t16 serial:2\ntrust:t17 serial:1\n",
         "line 18: names more than 16 trust entries"},
    };
    char *json, err[GW_ERR_LEN];
    struct gw_config *cfg;

    (void)state;
    write_other_ca();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case: %s\n", cases[i].want);
        write_text("tgpp.allow", cases[i].file);
        json = env_json(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = cases[i].role_extra});
        err[0] = '\0';
        cfg = gw_config_parse(json, strlen(json), dir, "test.json", err);
        free(json);
        if (cfg != NULL)
            fail_msg("accepted: %s", cases[i].role_extra);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("error \"%s\" lacks \"%s\"", err, cases[i].want);
    }
    for (size_t i = 0; i < sizeof(two) / sizeof(two[0]); i++) {
        print_message("case: %s\n", two[i][1]);
        write_text("tgpp.allow", two[i][0]);
        json = env_json(
            &(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = ALLOW_KEY, .trust_entry = TGPP_OTHER});
        err[0] = '\0';
        cfg = gw_config_parse(json, strlen(json), dir, "test.json", err);
        free(json);
        if (cfg != NULL)
            fail_msg("accepted: %s", two[i][0]);
        if (strstr(err, two[i][1]) == NULL)
            fail_msg("error \"%s\" lacks \"%s\"", err, two[i][1]);
    }
    /* the twin: a long line of 20 octets with colons and comments is fine */
    write_text("tgpp.allow", "# c\n\n serial:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14 \n");
    json = env_json(&(struct env_opts){
        .cmp = CMP_DEFAULTS, .role_extra = "\"device_allowlist\": \"tgpp.allow\", \"min_hash\": \"sha512\""});
    cfg = gw_config_parse(json, strlen(json), dir, "test.json", err);
    free(json);
    if (cfg == NULL)
        fail_msg("refused: %s", err);
    assert_int_equal(cfg->default_path_policy.role->n_allow_serials, 1);
    assert_int_equal(cfg->default_path_policy.role->min_hash_bits, 512);
    gw_config_free(cfg);
    /* and on a role trusting two CAs, lines naming their trust entry, blanks between */
    write_text("tgpp.allow", "trust:demo serial:0a\ntrust:other\t /O=x/CN=y\n  trust:demo  /O=x/CN=y\n");
    json =
        env_json(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = ALLOW_KEY, .trust_entry = TGPP_OTHER});
    cfg = gw_config_parse(json, strlen(json), dir, "test.json", err);
    free(json);
    if (cfg == NULL)
        fail_msg("refused: %s", err);
    assert_int_equal(cfg->default_path_policy.role->n_allow, 3);
    assert_int_equal(cfg->default_path_policy.role->n_allow_scopes, 2);
    assert_string_equal(cfg->default_path_policy.role->allow[1].subject, "/O=x/CN=y");
    assert_int_equal(cfg->default_path_policy.role->allow[2].scope, 0);
    assert_non_null(cfg->default_path_policy.role->allow_scopes[1].store);
    gw_config_free(cfg);
}

/* The algorithm ratings min_hash relies on, including what must rate 0 (unknown = refused). */
static void test_3gpp_alg_hash_bits(void **state)
{
    static const struct {
        int nid, bits;
    } cases[] = {
        {NID_sha1WithRSAEncryption, 160},
        {NID_ecdsa_with_SHA1, 160},
        {NID_md5WithRSAEncryption, 128},
        {NID_sha256WithRSAEncryption, 256},
        {NID_ecdsa_with_SHA384, 384},
        {NID_ecdsa_with_SHA512, 512},
        {NID_ED25519, 512},
        {NID_ED448, 512},
        {NID_rsaEncryption, 0},
        {NID_id_PasswordBasedMAC, 0}, /* no PBMParameter: unknown */
        {NID_rsassaPss, 0},           /* no RSASSA-PSS-params: unknown */
    };

    (void)state;
    assert_int_equal(gw_shim_alg_hash_bits(NULL), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509_ALGOR *alg = X509_ALGOR_new();

        assert_int_equal(X509_ALGOR_set0(alg, OBJ_nid2obj(cases[i].nid), V_ASN1_UNDEF, NULL), 1);
        if (gw_shim_alg_hash_bits(alg) != cases[i].bits)
            fail_msg("%s: %d bits, want %d", OBJ_nid2sn(cases[i].nid), gw_shim_alg_hash_bits(alg),
                     cases[i].bits);
        X509_ALGOR_free(alg);
    }
    assert_int_equal(gw_shim_popo_hash_bits(NULL), -1);
}

/* ---- polling for slow upstreams (docs/polling.md) ---- */

/* The test adapter: the local issuer, held on its call thread until the test opens the gate. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open, fail, calls, completed;
    int hold_record; /* the completion's "issued" record waits in its fsync until hold_release */
    int refuse; /* the answer is refused but carries its certificate: 1 of the requested key, 2 another */
    void (*during)(struct env *e); /* run on the call thread before it waits at the gate */
    struct env *env;
    void (*before_done)(struct gw_sign_result *res); /* called with the issuer's result */
    struct gw_cmp_engine *engine;                    /* of the env the adapter serves */
} slow = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/*
 * An fsync held: armed by the test before the call can complete (hold_arm), the first fsync on the
 * thread that then hands the call's result up (its completion's "issued" record) waits until
 * hold_release. Every wait here is bounded: a release the test never got to lets the fsync go after
 * HOLD_MAX_S, and a release disarms the hold for good, so a result that comes after the test gave up
 * waiting is never held. hold_release says whether the hold did what the test relies on.
 */
#define HOLD_WAIT_S 30 /* for the armed fsync to be reached (a loaded sanitizer build is slow) */
#define HOLD_MAX_S 60  /* for the test to release it */
#define CALL_WAIT_S 30 /* for a call the slow adapter let go to complete, and its completion to end */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread; /* the call's, once its result is handed up */
    int armed, on_thread, held, released;
    const char *missed; /* why the record was not held throughout, or NULL */
} hold = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

int fsync(int fd)
{
    static int (*real)(int);
    struct timespec until;

    pthread_mutex_lock(&hold.lock);
    if (hold.armed && hold.on_thread && pthread_equal(pthread_self(), hold.thread)) {
        hold.armed = 0;
        hold.held = 1;
        pthread_cond_broadcast(&hold.cond);
        until = tu_deadline(HOLD_MAX_S);
        while (!hold.released && tu_wait_until(&hold.cond, &hold.lock, &until) == 0)
            ;
        if (!hold.released)
            hold.missed = "the held fsync was not released within HOLD_MAX_S";
    }
    pthread_mutex_unlock(&hold.lock);
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

/* Arms the hold for the next call whose result is handed up (slow.hold_record): before the gate opens. */
static void hold_arm(void)
{
    pthread_mutex_lock(&hold.lock);
    hold.armed = 1;
    hold.on_thread = hold.held = hold.released = 0;
    hold.missed = NULL;
    pthread_mutex_unlock(&hold.lock);
    slow.hold_record = 1;
}

/* Waits (up to HOLD_WAIT_S) until the armed fsync is held; else notes it for hold_release. */
static void hold_wait(void)
{
    struct timespec until;

    until = tu_deadline(HOLD_WAIT_S);
    pthread_mutex_lock(&hold.lock);
    while (!hold.held && tu_wait_until(&hold.cond, &hold.lock, &until) == 0)
        ;
    if (!hold.held && hold.missed == NULL)
        hold.missed = "the call's \"issued\" record did not reach its fsync within HOLD_WAIT_S";
    pthread_mutex_unlock(&hold.lock);
}

/* Lets the held fsync go and disarms the hold; NULL if it held the record throughout, else why not. */
static const char *hold_release(void)
{
    const char *missed;

    pthread_mutex_lock(&hold.lock);
    hold.armed = 0;
    hold.released = 1;
    missed = hold.missed;
    pthread_cond_broadcast(&hold.cond);
    pthread_mutex_unlock(&hold.lock);
    return missed;
}

/* Fails the test if the hold released (hold_release's answer) did not hold the record throughout. */
static void assert_held(const char *missed)
{
    if (missed != NULL)
        fail_msg("%s", missed);
}

struct slow_call {
    gw_upstream_done_fn done;
    void *arg;
};

/* The issuer's result on its way to the completion: with |hold_record|, its record's fsync is held. */
static void slow_done(void *arg, struct gw_sign_result *res)
{
    struct slow_call *sc = arg;

    if (res->cert != NULL && slow.refuse) {
        res->status = -12; /* GW_ERR_UPSTREAM */
        res->fail_info = OSSL_CMP_PKIFAILUREINFO_systemFailure;
        snprintf(res->reason, sizeof(res->reason), "the test CA's answer has a field out of range");
    }
    if (slow.before_done != NULL)
        slow.before_done(res);
    if (slow.hold_record) { /* the completion runs on this thread: its record's fsync is held */
        pthread_mutex_lock(&hold.lock);
        hold.thread = pthread_self();
        hold.on_thread = hold.armed;
        pthread_mutex_unlock(&hold.lock);
    }
    sc->done(sc->arg, res);
}

/* The gate opened within HOLD_MAX_S, or the call fails as the CA down: a test that failed with it shut
   leaves no call waiting. */
static int slow_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                     void *arg)
{
    struct gw_sign_result *res;
    struct timespec until;
    int rc = 0, shut;

    if (slow.during != NULL)
        slow.during(slow.env);
    until = tu_deadline(HOLD_MAX_S);
    pthread_mutex_lock(&slow.lock);
    slow.calls++; /* after |during|: slow_wait_calls */
    pthread_cond_broadcast(&slow.cond);
    while (!slow.open && tu_wait_until(&slow.cond, &slow.lock, &until) == 0)
        ;
    shut = !slow.open;
    pthread_mutex_unlock(&slow.lock);
    if (slow.fail || shut) {
        res = calloc(1, sizeof(*res));
        res->status = -5;
        res->fail_info = OSSL_CMP_PKIFAILUREINFO_systemUnavail;
        snprintf(res->reason, sizeof(res->reason), "the test CA is down");
        done(arg, res);
    } else {
        struct slow_call sc = {done, arg};
        struct gw_cert_plan plan = *req->plan; /* shallow: the local issuer only reads it */
        struct gw_sign_req r = *req;
        EVP_PKEY *other = slow.refuse == 2 ? plan_other_key(&plan) : NULL;

        r.plan = &plan;
        rc = gw_upstream_local_ops.sign(up, &r, slow_done, &sc); /* completes before it returns */
        EVP_PKEY_free(other);
    }
    pthread_mutex_lock(&slow.lock);
    slow.completed++; /* after |done|: the completion has stored (and recorded) the result */
    pthread_cond_broadcast(&slow.cond);
    pthread_mutex_unlock(&slow.lock);
    return rc;
}

static void slow_gate(int open)
{
    pthread_mutex_lock(&slow.lock);
    slow.open = open;
    pthread_cond_broadcast(&slow.cond);
    pthread_mutex_unlock(&slow.lock);
}

/* Waits (up to CALL_WAIT_S) until |n| sign calls began: what their slow.during did is then the caller's to
 * read. */
static void slow_wait_calls(int n)
{
    struct timespec until = tu_deadline(CALL_WAIT_S);
    int calls;

    pthread_mutex_lock(&slow.lock);
    while (slow.calls < n && tu_wait_until(&slow.cond, &slow.lock, &until) == 0)
        ;
    calls = slow.calls;
    pthread_mutex_unlock(&slow.lock);
    if (calls < n)
        fail_msg("%d sign calls began within CALL_WAIT_S, not %d", calls, n);
}

/* Whether |engine|'s completions of calls have all ended by |until| (a tu_deadline), asked every 10 ms. */
static bool calls_end_by(struct gw_cmp_engine *engine, const struct timespec *until)
{
    while (gw_cmp_engine_calls_running(engine) && !tu_past(until))
        usleep(10000);
    return !gw_cmp_engine_calls_running(engine);
}

/*
 * Waits (up to CALL_WAIT_S) until |n| sign calls completed and |e|'s completions of them ended (on the
 * call threads, after the adapter's).
 */
static void slow_wait_completed(struct env *e, int n)
{
    struct timespec until;
    int completed;

    until = tu_deadline(CALL_WAIT_S);
    pthread_mutex_lock(&slow.lock);
    while (slow.completed < n && tu_wait_until(&slow.cond, &slow.lock, &until) == 0)
        ;
    completed = slow.completed;
    pthread_mutex_unlock(&slow.lock);
    if (completed != n)
        fail_msg("%d sign calls completed within CALL_WAIT_S, not %d", completed, n);
    if (!calls_end_by(e->engine, &until))
        fail_msg("the completions of the calls did not end within CALL_WAIT_S");
}

/* Replaces the upstream of |uc| in |e| with the slow adapter. */
static void slow_put(struct env *e, const struct gw_upstream_conf *uc)
{
    char err[GW_ERR_LEN] = "";
    struct gw_upstream *up;

    e->slow_ops = gw_upstream_local_ops;
    e->slow_ops.dialect = "slow";
    e->slow_ops.sign = slow_sign;
    assert_non_null(up = gw_upstream_new_ops(uc, &e->slow_ops, NULL, err));
    assert_int_equal(gw_upstream_set_put0(e->ups, up), 0);
}

/*
 * An engine with the "cmp" members |cmp| whose role polls after |poll_after| (NULL: unset), over
 * the slow adapter; gate closed.
 */
static struct env *env_slow_cmp(const char *cmp, const char *poll_after, uint32_t timeout_ms)
{
    char extra[64];
    struct env *e;
    struct gw_upstream_conf *uc;

    snprintf(extra, sizeof(extra), "\"poll_after\": \"%s\"", poll_after != NULL ? poll_after : "0s");
    e = env_parse(&(struct env_opts){.cmp = cmp, .role_extra = extra, .confirm = 1});
    uc = upstream_conf(e, "local");
    if (timeout_ms != 0)
        uc->timeout_ms = timeout_ms;
    env_start(e);
    (void)hold_release(); /* a test that failed while it held a record leaves nothing held */
    slow_gate(0);
    slow.fail = slow.calls = slow.completed = slow.hold_record = slow.refuse = 0;
    slow.during = NULL;
    slow.env = e;
    slow.before_done = NULL;
    slow.engine = e->engine;
    slow_put(e, uc);
    return e;
}

static struct env *env_slow(const char *poll_after, uint32_t timeout_ms)
{
    return env_slow_cmp(CMP_DEFAULTS, poll_after, timeout_ms);
}

/* |e|'s slow adapter revokes, each call counted in fake.revoke_calls. Before |e|'s first request. */
static void slow_revokes(struct env *e)
{
    memset(&fake, 0, sizeof(fake));
    e->slow_ops.caps |= GW_UP_REVOKE;
    e->slow_ops.revoke = fake_revoke;
}

/* The one certificate issued under |e| (its serial into |serial|) is on record as not delivered,
   saying |why|, and was revoked at the CA once. */
static void assert_uncollected_withdrawn(struct env *e, char *serial, size_t cap, const char *why)
{
    assert_int_equal(audit_serial(e, "issued", serial, cap), 0);
    assert_int_equal(audit_count(e, "expired_undelivered", serial, "status", why), 1);
    assert_int_equal(audit_count(e, "revoked", serial, NULL, NULL), 1);
    assert_int_equal(revoke_calls(e), 1);
}

/*
 * A revocation the test holds until it lets it go (held_revoke_release; at most HOLD_MAX_S), so that
 * what the caller does meanwhile shows. One asked on the test's own thread is not held (it would wait
 * for itself): it is counted in |on_caller| and returns at once.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t caller;
    int entered, released, on_caller, permits; /* permits: held ones let go one by one (held_revoke_step) */
} held_revoke = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int held_revoke_fn(struct gw_upstream *up, const X509 *cert, int reason, const _Atomic uint64_t *end,
                          int *fail_info, int *not_sent, char *err)
{
    struct timespec until;

    pthread_mutex_lock(&held_revoke.lock);
    if (pthread_equal(pthread_self(), held_revoke.caller)) {
        held_revoke.on_caller++;
    } else {
        held_revoke.entered++;
        pthread_cond_broadcast(&held_revoke.cond);
        until = tu_deadline(HOLD_MAX_S);
        while (!held_revoke.released && held_revoke.permits == 0 &&
               tu_wait_until(&held_revoke.cond, &held_revoke.lock, &until) == 0)
            ;
        if (!held_revoke.released && held_revoke.permits > 0)
            held_revoke.permits--;
    }
    pthread_mutex_unlock(&held_revoke.lock);
    return fake_revoke(up, cert, reason, end, fail_info, not_sent, err);
}

/* |e|'s slow adapter's revocations are held (it revokes: slow_revokes first). */
static void held_revokes(struct env *e)
{
    e->slow_ops.revoke = held_revoke_fn;
    held_revoke.caller = pthread_self();
    held_revoke.entered = held_revoke.released = held_revoke.on_caller = held_revoke.permits = 0;
}

/* Waits (up to HOLD_WAIT_S) until a revocation is held: 1, or 0 if none came. */
static int held_revoke_wait_entered(void)
{
    struct timespec until;
    int entered;

    until = tu_deadline(HOLD_WAIT_S);
    pthread_mutex_lock(&held_revoke.lock);
    while (held_revoke.entered == 0 && tu_wait_until(&held_revoke.cond, &held_revoke.lock, &until) == 0)
        ;
    entered = held_revoke.entered > 0;
    pthread_mutex_unlock(&held_revoke.lock);
    return entered;
}

/* Lets the one held revocation go and waits (up to HOLD_WAIT_S) for the next to be held: 1, 0 if none. */
static int held_revoke_step(void)
{
    struct timespec until;
    int next, entered;

    until = tu_deadline(HOLD_WAIT_S);
    pthread_mutex_lock(&held_revoke.lock);
    next = held_revoke.entered + 1;
    held_revoke.permits++;
    pthread_cond_broadcast(&held_revoke.cond);
    while (held_revoke.entered < next && tu_wait_until(&held_revoke.cond, &held_revoke.lock, &until) == 0)
        ;
    entered = held_revoke.entered >= next;
    pthread_mutex_unlock(&held_revoke.lock);
    return entered;
}

static void held_revoke_release(void)
{
    pthread_mutex_lock(&held_revoke.lock);
    held_revoke.released = 1;
    pthread_cond_broadcast(&held_revoke.cond);
    pthread_mutex_unlock(&held_revoke.lock);
}

/* One step of the client's transaction: 1 certificate, 0 failed, -1 waiting (check_after set). */
static int poll_step(OSSL_CMP_CTX *ctx, int *check_after)
{
    *check_after = -1;
    return OSSL_CMP_try_certreq(ctx, GW_CMP_BODY_IR, NULL, check_after);
}

/* The client's next pollReq collects the certificate and its certConf closes the transaction; then
   the client, its context and the engine are freed. */
static void poll_collect_and_free(struct env *e, struct client *cl, OSSL_CMP_CTX *ctx)
{
    int after;

    assert_int_equal(poll_step(ctx, &after), 1); /* pollReq -> ip, certConf -> pkiconf */
    assert_non_null(OSSL_CMP_CTX_get0_newCert(ctx));
    assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 1);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* slow.before_done: the result's certificate revoked through the gateway before it is handed up. */
static void revoked_first(struct gw_sign_result *res)
{
    char err[GW_ERR_LEN] = "";

    if (res->cert != NULL)
        assert_int_equal(cmp_revoked_add(slow.engine, res->cert, time(NULL), err), 0);
}

/*
 * A certificate that lands after the client was told to poll, with the issuer and serial of one revoked
 * through the gateway: on record as rejected when it lands, neither issued nor revoked again, and the
 * pollReq gets the refusal.
 */
static void test_poll_serial_revoked(void **state)
{
    struct env *e = env_slow("100ms", 0);
    struct client cl = {.env = e, .new_thread = 1};
    OSSL_CMP_CTX *ctx;
    int after;

    (void)state;
    slow_revokes(e);
    slow.before_done = revoked_first;
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_int_equal(poll_step(ctx, &after), -1);
    slow_gate(1);
    slow_wait_completed(e, 1);
    assert_int_equal(audit_count(e, "rejected", NULL, "serial", ""), 1);
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 0);
    assert_int_equal(poll_step(ctx, &after), 0);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                  " was revoked through this gateway: where revocation goes by issuer and serial, this one ");
    assert_int_equal(revoke_calls(e), 0);
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* ir -> waiting; pollReq -> pollRep(checkAfter); the certificate lands; pollReq -> ip; certConf -> pkiconf.
 */
static void test_poll_waiting_then_ip(void **state)
{
    struct env *e = env_slow("100ms", 0);
    struct client cl = {.env = e, .new_thread = 1};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char serial[64];
    int after;

    (void)state;
    assert_int_equal(poll_step(ctx, &after), -1);
    assert_int_equal(OSSL_CMP_CTX_get_status(ctx), OSSL_CMP_PKISTATUS_waiting);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    assert_int_equal(audit_count(e, "waiting", NULL, NULL, NULL), 1);
    assert_int_equal(audit_count(e, "rejected", NULL, NULL, NULL), 0);
    assert_int_equal(cl.exchanges, 2);            /* the 3.0 client polls once at once: ir, pollReq */
    assert_int_equal(after, 1);                   /* pollRep checkAfter: poll_after in whole seconds */
    assert_int_equal(poll_step(ctx, &after), -1); /* pollReq -> pollRep */
    assert_int_equal(after, 1);
    assert_int_equal(cl.exchanges, 3);
    slow_gate(1);
    slow_wait_completed(e, 1);
    /* on record before any pollReq came for it */
    assert_int_equal(audit_count(e, "issued", NULL, "status", "awaiting the client's pollReq"), 1);
    assert_int_equal(poll_step(ctx, &after), 1); /* pollReq -> ip, certConf -> pkiconf */
    assert_non_null(OSSL_CMP_CTX_get0_newCert(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(cl.exchanges, 5); /* ..., pollReq -> ip, certConf */
    serial_of(OSSL_CMP_CTX_get0_newCert(ctx), serial, sizeof(serial));
    assert_int_equal(audit_count(e, "issued", serial, NULL, NULL), 1); /* once: the completion's */
    assert_int_equal(audit_count(e, "confirmed", serial, NULL, NULL), 1);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(slow.calls, 1); /* the release did not ask the upstream again */
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * The pollReq that collects a deferred certificate, its answer lost (the client went away first): the
 * certificate is withdrawn and the transaction closed, whether implicitConfirm was granted or a
 * certConf was to come.
 */
static void test_poll_release_client_gone(void **state)
{
    (void)state;
    for (int implicit = 0; implicit <= 1; implicit++) {
        struct env *e = env_slow("100ms", 0);
        struct client cl = {.env = e, .new_thread = 1};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        int after;

        print_message("implicitConfirm: %d\n", implicit);
        ((struct gw_role *)e->cfg->default_path_policy.role)->implicit_confirm = implicit;
        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, implicit);
        slow_revokes(e);
        assert_int_equal(poll_step(ctx, &after), -1);
        slow_gate(1);
        slow_wait_completed(e, 1);
        OSSL_CMP_CTX_set_transfer_cb(ctx, transfer_gone);
        assert_int_equal(poll_step(ctx, &after), 0); /* pollReq -> ip, never sent */
        assert_gone_withdrawn_and_free(e, &cl, ctx);
    }
}

/* Keeps a copy (DER) of the client's first pollReq in |cl->held|, and sends it on unchanged. */
static OSSL_CMP_MSG *keep_first_pollreq(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    unsigned char *der = NULL;
    int len;

    (void)ctx;
    if (OSSL_CMP_MSG_get_bodytype(req) == GW_CMP_BODY_POLLREQ && cl->held == NULL) {
        assert_true((len = i2d_OSSL_CMP_MSG(req, &der)) > 0);
        cl->held = der;
        cl->held_len = (size_t)len;
    }
    return req;
}

/*
 * Sends |cl|'s held message; asserts its answer is an error with the failInfo bit |fail_bit| (found
 * as the DER of the one-bit BIT STRING: 3.0 has no getter for an error's PKIStatusInfo) and |text|.
 */
static void send_held_refused(struct client *cl, int fail_bit, const char *text)
{
    unsigned char *out, bits[5] = {0x03, 0x03, 0x00, 0x00, 0x00};
    size_t out_len = 0;
    char desc[8192];
    int http, found = 0;

    bits[2] = (unsigned char)(7 - fail_bit % 8); /* unused bits of the last byte */
    bits[3 + fail_bit / 8] = (unsigned char)(0x80 >> (fail_bit % 8));
    assert_true(fail_bit >= 8 && fail_bit < 16);
    assert_non_null(cl->held);
    out = exchange(cl->env, cl->held, cl->held_len, &http, &out_len);
    assert_int_equal(http, 200);
    describe(out, out_len, desc, sizeof(desc));
    for (size_t i = 0; i + sizeof(bits) <= out_len && !found; i++)
        found = memcmp(out + i, bits, sizeof(bits)) == 0;
    if (strncmp(desc, "error ", 6) != 0 || strstr(desc, text) == NULL || !found)
        fail_msg("want an error with failInfo bit %d and \"%s\": %s", fail_bit, text, desc);
    OPENSSL_free(out);
}

/*
 * A pollReq captured and sent again (its recipNonce answers an older pollRep) is refused without
 * touching the transaction: the client's own next pollReq still collects the certificate, and a
 * replay while the certificate awaits its certConf does not close the transaction either.
 */
static void test_poll_replayed_pollreq(void **state)
{
    struct env *e = env_slow("100ms", 0);
    struct client cl = {.env = e, .tamper = keep_first_pollreq};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    int after;

    (void)state;
    assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
    assert_int_equal(poll_step(ctx, &after), -1); /* pollReq -> pollRep: the first one is now old */
    send_held_refused(&cl, OSSL_CMP_PKIFAILUREINFO_badRecipientNonce, TEXT_STALE_NONCE);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    slow_gate(1);
    slow_wait_completed(e, 1);
    send_held_refused(&cl, OSSL_CMP_PKIFAILUREINFO_badRecipientNonce,
                      TEXT_STALE_NONCE); /* the result is there: a replay still does not take it */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    poll_collect_and_free(e, &cl, ctx); /* the client's own pollReq still collects it */
}

/*
 * The pollReq that releases a deferred certificate gets no ip (OpenSSL cannot protect it): the
 * certificate, on record as issued by the call's completion, is on record as not delivered and
 * revoked at the CA.
 */
static void test_poll_undelivered_withdrawn(void **state)
{
    struct env *e = env_slow("100ms", 0);
    struct client cl = {.env = e, .new_thread = 1};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char serial[64] = "";
    int after;

    (void)state;
    slow_revokes(e);
    assert_int_equal(poll_step(ctx, &after), -1);
    slow_gate(1);
    slow_wait_completed(e, 1);
    break_signing(1);
    assert_int_equal(poll_step(ctx, &after), 0); /* pollReq -> HTTP 500 */
    break_signing(0);
    assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
    assert_int_equal(audit_count(e, "rejected", serial, "status", "not delivered"), 1);
    assert_int_equal(audit_count(e, "revoked", serial, NULL, NULL), 1);
    assert_int_equal(revoke_calls(e), 1);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * A refused answer that carries a certificate, come after the client was told to poll: on record and
 * revoked at the CA when it certifies the requested key, which the deferred call kept; for another
 * key (another holder's, perhaps) on record as not withdrawn and left alone. The pollReq gets the
 * refusal either way.
 */
static void test_poll_refused_answer_withdrawn(void **state)
{
    static const struct {
        const char *name;
        int refuse, revoked;
    } cases[] = {
        {"the requested key", 1, 1},
        {"another key", 2, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_slow("100ms", 0);
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        int after;

        print_message("case: %s\n", cases[i].name);
        slow_revokes(e);
        slow.refuse = cases[i].refuse;
        assert_int_equal(poll_step(ctx, &after), -1);
        slow_gate(1);
        slow_wait_completed(e, 1);
        assert_int_equal(revoke_calls(e), cases[i].revoked);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), cases[i].revoked);
        assert_int_equal(
            audit_count(e, "not_withdrawn", NULL, "status", "does not certify the requested key"),
            !cases[i].revoked);
        assert_int_equal(poll_step(ctx, &after), 0);
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                      "field out of range");
        assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 0);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/* Twins of the waiting case: a fast answer, or poll_after unset, never polls. */
static void test_poll_not_needed(void **state)
{
    const char *cases[] = {"2s", NULL};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_slow(cases[i], 0);
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

        slow_gate(1);
        assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_int_equal(cl.exchanges, 2); /* ir + certConf: no pollReq */
        assert_int_equal(audit_count(e, "waiting", NULL, NULL, NULL), 0);
        assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 1);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/* The upstream's failure reaches the client through the pollReq that collects it. */
static void test_poll_upstream_failure(void **state)
{
    struct env *e = env_slow("100ms", 0);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    int after;

    (void)state;
    assert_int_equal(poll_step(ctx, &after), -1);
    slow.fail = 1;
    slow_gate(1);
    slow_wait_completed(e, 1);
    assert_int_equal(poll_step(ctx, &after), 0);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "the test CA is down");
    assert_int_equal(audit_count(e, "rejected", NULL, "status", "the test CA is down"), 1);
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 0);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Past the upstream's timeout a pollReq gets systemUnavail; a later certificate is still on record. */
static void test_poll_deadline(void **state)
{
    struct env *e = env_slow("100ms", 600);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char serial[64] = "";
    int after;

    (void)state;
    slow_revokes(e);
    assert_int_equal(poll_step(ctx, &after), -1);
    usleep(700 * 1000);
    assert_int_equal(poll_step(ctx, &after), 0);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "did not answer");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    slow_gate(1);
    slow_wait_completed(e, 1);
    assert_int_equal(audit_count(e, "issued", NULL, "status", "after the deadline; not delivered"), 1);
    /* the deadline won: the certificate nobody will deliver is withdrawn */
    assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
    assert_int_equal(audit_count(e, "revoked", serial, NULL, NULL), 1);
    assert_int_equal(revoke_calls(e), 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * The deadline passes while the completion writes the "issued" record of a certificate that came
 * in time: the completion came first and wins. The pollReq meanwhile gets a pollRep (not
 * systemUnavail), and the next one delivers the certificate; nothing is withdrawn.
 */
static void test_poll_deadline_race(void **state)
{
    struct env *e = env_slow("100ms", 600);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char serial[64];
    const char *missed;
    int after, during, late_after;

    (void)state;
    slow_revokes(e);
    assert_int_equal(poll_step(ctx, &after), -1);
    hold_arm();
    slow_gate(1);
    hold_wait();
    usleep(700 * 1000); /* past the upstream's 600 ms */
    during = poll_step(ctx, &after);
    late_after = after;
    missed = hold_release(); /* before any assertion: the completion holds detach_lock */
    assert_held(missed);
    slow_wait_completed(e, 1);
    assert_int_equal(during, -1); /* pollRep */
    assert_int_equal(late_after, 1);
    assert_int_equal(audit_count(e, "issued", NULL, "status", "awaiting the client's pollReq"), 1);
    assert_int_equal(poll_step(ctx, &after), 1); /* pollReq -> ip, certConf -> pkiconf */
    serial_of(OSSL_CMP_CTX_get0_newCert(ctx), serial, sizeof(serial));
    assert_int_equal(audit_count(e, "confirmed", serial, NULL, NULL), 1);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 0);
    assert_int_equal(revoke_calls(e), 0);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * A certificate nobody collects: the pending transaction outlives transaction_ttl by the upstream
 * timeout, then the certificate, which no client received, is on record as not delivered and
 * withdrawn at the CA, off the expiring thread (which does not wait for the CA).
 */
static void test_poll_expiry(void **state)
{
    struct env *e = env_slow("100ms", 0);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char serial[64] = "";
    int after, entered, undelivered, revoked, busy;

    (void)state;
    slow_revokes(e);
    held_revokes(e);
    assert_int_equal(poll_step(ctx, &after), -1);
    slow_gate(1);
    slow_wait_completed(e, 1);
    gw_cmp_engine_expire(e->engine, time(NULL) + 300 + 5); /* past transaction_ttl, not the upstream's 10 s */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    gw_cmp_engine_expire(e->engine, time(NULL) + 300 + 12);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    /* the expiry tick (the main thread's, which pings the watchdog) did not revoke: it returned while
       the CA still holds the revocation, which ends on the engine's own thread */
    entered = held_revoke_wait_entered();
    undelivered = audit_count_now(e, "expired_undelivered", NULL, NULL, NULL);
    revoked = audit_count_now(e, "revoked", NULL, NULL, NULL);
    busy = gw_cmp_engine_busy(e->engine); /* a reload keeps this engine until it ends */
    held_revoke_release();                /* before any assertion: it would hold the engine's thread */
    assert_int_equal(held_revoke.on_caller, 0);
    if (!entered)
        fail_msg("the withdrawal did not reach the CA within HOLD_WAIT_S");
    assert_int_equal(undelivered, 1);
    assert_int_equal(revoked, 0);
    assert_true(busy);
    assert_uncollected_withdrawn(e, serial, sizeof(serial),
                                 "no pollReq collected it before its transaction closed");
    assert_int_equal(poll_step(ctx, &after), 0); /* gone: the pollReq is refused */
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                  "no open transaction");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* An error message in place of a pollReq: the client aborts its deferred request. */
static OSSL_CMP_MSG *tamper_poll_error(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    return tamper_error_for(GW_CMP_BODY_POLLREQ, ctx, req, cl);
}

/* A certConf without CertStatus (a rejection of nothing: no certificate was delivered) in place of a pollReq.
 */
static OSSL_CMP_MSG *tamper_poll_certconf(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    /* [24] CertConfirmContent {} */
    static const unsigned char body[] = {0xb8, 0x02, 0x30, 0x00};

    return tamper_body_for(GW_CMP_BODY_POLLREQ, body, sizeof(body), ctx, req, cl);
}

/*
 * A deferred request whose transaction closes while its call still runs (expired past
 * transaction_ttl and the upstream's timeout, aborted by the client's error message, or ended by a
 * certConf in place of its pollReq): no pollReq can collect the certificate the call returns after
 * that, so it is on record as not delivered and withdrawn at the CA, as one that comes after the
 * deadline.
 */
static void test_poll_closed_while_call_runs(void **state)
{
    static const char *const hows[] = {"expiry", "the client's error message", "a certConf"};

    (void)state;
    for (int how = 0; how < 3; how++) {
        struct env *e = env_slow("100ms", 0);
        struct client cl = {.env = e}, dummy = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        char serial[64] = "";
        int after;

        print_message("closed by %s\n", hows[how]);
        slow_revokes(e);
        assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
        if (how > 0) {
            cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
            cl.tamper = how == 1 ? tamper_poll_error : tamper_poll_certconf;
            (void)poll_step(ctx, &after); /* its next pollReq goes as that message */
        } else {
            gw_cmp_engine_expire(e->engine, time(NULL) + 300 + 12);
        }
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        /* its call still runs: a reload frees this engine only once the call has landed, so it never
           cuts the call loose as a stop does ("certificate issued after shutdown" stays a stop's) */
        assert_true(gw_cmp_engine_busy(e->engine));
        slow_gate(1);
        slow_wait_completed(e, 1);
        assert_int_equal(
            audit_count(e, "issued", NULL, "status", "after its transaction was closed; not delivered"), 1);
        assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
        assert_int_equal(audit_count(e, "revoked", serial, NULL, NULL), 1);
        assert_int_equal(revoke_calls(e), 1);
        client_cleanup(&cl);
        client_cleanup(&dummy);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * A deferred request whose transaction cannot be kept open for its pollReq (out of memory in
 * production; here its slot lost while the worker waited): the client is told to retry, and the
 * certificate its call returns later, which no pollReq can collect, is on record as not delivered
 * and withdrawn at the CA.
 */
static struct {
    size_t held;
    int reserved;
} lost;

/* lose_slot on the call thread, its findings kept for the test's thread to check (no assert there). */
static void lose_slot_on_call(struct env *e)
{
    lost.held = gw_cmp_engine_reset(e->engine);
    lost.reserved = gw_txn_reserve(gw_cmp_engine_txns(e->engine), (const unsigned char *)NOT_KEPT_TID,
                                   strlen(NOT_KEPT_TID), "someone else");
}

static void test_poll_park_failed(void **state)
{
    /* poll_after well past the call thread's start: the slot is lost while the worker still waits */
    struct env *e = env_slow("500ms", 0);
    struct client cl = {.env = e, .new_thread = 1};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    ASN1_OCTET_STRING *tid = ASN1_OCTET_STRING_new();
    char serial[64] = "";
    int after;

    (void)state;
    assert_int_equal(ASN1_OCTET_STRING_set(tid, (const unsigned char *)NOT_KEPT_TID, strlen(NOT_KEPT_TID)),
                     1);
    assert_int_equal(OSSL_CMP_CTX_set1_transactionID(ctx, tid), 1);
    slow_revokes(e);
    slow.during = lose_slot_on_call;
    lost.held = 0;
    lost.reserved = -1;
    assert_int_equal(poll_step(ctx, &after), 0);
    slow_wait_calls(1); /* |lost| is the call thread's until then */
    assert_int_equal(lost.held, 1);
    assert_int_equal(lost.reserved, 0);
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "the gateway could not keep this transaction open for its certConf; retry later");
    slow_gate(1);
    slow_wait_completed(e, 1);
    assert_int_equal(
        audit_count(e, "issued", NULL, "status", "after its transaction was closed; not delivered"), 1);
    assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
    assert_int_equal(audit_count(e, "revoked", serial, NULL, NULL), 1);
    assert_int_equal(revoke_calls(e), 1);
    ASN1_OCTET_STRING_free(tid);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * The client aborts its deferred request (an error message in place of a pollReq), or ends it with
 * a certConf there, after the certificate came but before it collected it: nobody received it, so
 * it is withdrawn.
 */
static void test_poll_aborted_after_result(void **state)
{
    (void)state;
    for (int conf = 0; conf <= 1; conf++) {
        struct env *e = env_slow("100ms", 0);
        struct client cl = {.env = e}, dummy = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        char serial[64] = "";
        int after;

        slow_revokes(e);
        assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
        slow_gate(1);
        slow_wait_completed(e, 1);
        cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
        cl.tamper = conf ? tamper_poll_certconf : tamper_poll_error;
        (void)poll_step(ctx, &after); /* its next pollReq goes as that message */
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        assert_uncollected_withdrawn(
            e, serial, sizeof(serial),
            conf ? "no pollReq collected it before its transaction closed"
                 : "the client aborted the transaction before a pollReq collected it");
        assert_int_equal(audit_count(e, "issued", serial, "status", "awaiting the client's pollReq"), 1);
        client_cleanup(&cl);
        client_cleanup(&dummy);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/* Shutdown with a call still running: the engine waits for it, and its certificate is on record, as not
 * delivered (nothing can collect it). */
static void *open_gate_later(void *arg)
{
    (void)arg;
    usleep(300 * 1000);
    slow_gate(1);
    return NULL;
}

/* One ir of |ctx|'s client whose certificate it rejects in its certConf: refused by the client. */
static void ir_rejected_by_client(OSSL_CMP_CTX *ctx)
{
    OSSL_CMP_CTX_reinit(ctx);
    OSSL_CMP_CTX_set_certConf_cb(ctx, reject_cert);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(OSSL_CMP_CTX_get_status(ctx), OSSL_CMP_PKISTATUS_rejection);
}

/*
 * A client that rejects its own certificates over and over queues a revocation for each on the engine's
 * one withdrawal thread, which a slow CA drains slowly. Past GW_MAX_WITHDRAWALS_PER_KEY of its own
 * waiting, its next ir is refused (the queue stays for the withdrawals of others); another client's is
 * not, its own withdrawals are all done, and once they are its ir is served again.
 */
static void test_withdrawals_per_key(void **state)
{
    struct env *e = env_slow(NULL, 0);
    struct client cl = {.env = e}, other = {.env = e};
    OSSL_CMP_CTX *ctx, *ctx2;
    int n = GW_MAX_WITHDRAWALS_PER_KEY + 1;

    (void)state;
    slow_revokes(e);
    held_revokes(e);
    slow_gate(1);
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    ctx2 = client_new(&other, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
    for (int i = 0; i < n; i++)
        ir_rejected_by_client(ctx);
    assert_int_equal(held_revoke_wait_entered(), 1); /* the first at its CA, the others queued */
    OSSL_CMP_CTX_reinit(ctx);
    OSSL_CMP_CTX_set_certConf_cb(ctx, NULL);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "too many revocations of certificates ");
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx2)); /* another share of the caps */
    held_revoke_release();
    assert_int_equal(revoke_calls(e), n); /* none of its own refused */
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), n);
    OSSL_CMP_CTX_reinit(ctx);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    client_cleanup(&cl);
    client_cleanup(&other);
    OSSL_CMP_CTX_free(ctx);
    OSSL_CMP_CTX_free(ctx2);
    env_free(e);
}

/*
 * A client past its share of the withdrawal queue waits outside it, but only for its own places to free:
 * each of its jobs that ends brings its oldest waiting one into the queue. Here B rejects
 * GW_MAX_WITHDRAWALS_PER_KEY + 1 (one at the CA, the last past its share) while A keeps its full share
 * queued at a held CA, replacing each of its own as it ends, so the queue never empties: B's last is
 * revoked all the same, after the ones of A queued before it ended; B, owing no more than its share
 * once its first ended, is served again.
 */
static void test_withdrawals_overflow_not_starved(void **state)
{
    struct env *e = env_slow(NULL, 0);
    struct client a = {.env = e}, b = {.env = e};
    OSSL_CMP_CTX *ctx_a, *ctx_b;
    int n = GW_MAX_WITHDRAWALS_PER_KEY;

    (void)state;
    slow_revokes(e);
    held_revokes(e);
    slow_gate(1);
    ctx_a = client_new(&a, SIG, client_cert, client_key, NULL, NULL, 0);
    ctx_b = client_new(&b, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
    for (int i = 0; i < n + 1; i++)
        ir_rejected_by_client(ctx_b);
    assert_int_equal(held_revoke_wait_entered(), 1); /* B's first at the CA, n - 1 queued, 1 past them */
    for (int i = 0; i < n; i++)
        ir_rejected_by_client(ctx_a);
    OSSL_CMP_CTX_reinit(ctx_b);
    OSSL_CMP_CTX_set_certConf_cb(ctx_b, NULL);
    assert_null(OSSL_CMP_exec_IR_ses(ctx_b));
    assert_status(ctx_b, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "too many revocations of certificates ");
    assert_int_equal(held_revoke_step(), 1); /* B's first done: it owes n, and is served again */
    OSSL_CMP_CTX_reinit(ctx_b);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx_b));
    for (int i = 1; i < n; i++) /* B's n - 1 queued after its first */
        assert_int_equal(held_revoke_step(), 1);
    for (int i = 0; i < n + 1; i++) { /* A's n and B's last: A queues one for each of its own ended */
        assert_int_equal(held_revoke_step(), 1);
        if (i < n - 1)
            ir_rejected_by_client(ctx_a);
    }
    assert_int_equal(audit_count_now(e, "revoked", NULL, "identity", "demo-device"), n + 1);
    held_revoke_release();
    assert_int_equal(audit_count(e, "revoke_failed", NULL, NULL, NULL), 0);
    client_cleanup(&a);
    client_cleanup(&b);
    OSSL_CMP_CTX_free(ctx_a);
    OSSL_CMP_CTX_free(ctx_b);
    env_free(e);
}

/* Of the "revoked" records in |e|'s audit log, the index of the first whose identity has |who|; -1: none. */
static int revoked_index(const struct env *e, const char *who)
{
    FILE *f = fopen(e->audit_path, "r");
    char line[16384];
    int n = 0, at = -1;

    assert_non_null(f);
    while (at < 0 && fgets(line, sizeof(line), f) != NULL) {
        struct json_object *o = json_tokener_parse(line), *v;

        assert_non_null(o);
        if (json_object_object_get_ex(o, "event", &v) && strcmp(json_object_get_string(v), "revoked") == 0) {
            if (json_object_object_get_ex(o, "identity", &v) &&
                strstr(json_object_get_string(v), who) != NULL)
                at = n;
            n++;
        }
        json_object_put(o);
    }
    fclose(f);
    return at;
}

enum { OPEN_AT_ONCE = 2 * GW_MAX_WITHDRAWALS_PER_KEY };
static pthread_barrier_t all_issued;

/* The client rejects its certificate once every transaction of open_all_reject has one. */
static int reject_once_all_issued(OSSL_CMP_CTX *ctx, X509 *cert, int fail_info, const char **text)
{
    (void)pthread_barrier_wait(&all_issued);
    return reject_cert(ctx, cert, fail_info, text);
}

static void *ir_rejected_once_all_issued(void *arg)
{
    OSSL_CMP_CTX *ctx = arg;

    OSSL_CMP_CTX_set_certConf_cb(ctx, reject_once_all_issued);
    return OSSL_CMP_exec_IR_ses(ctx) == NULL && OSSL_CMP_CTX_get_status(ctx) == OSSL_CMP_PKISTATUS_rejection
               ? ctx
               : NULL;
}

/*
 * The cap on a key's withdrawals is judged when an issuing request is decided, so a client with several
 * transactions open at once has each certificate issued, then rejects them all: here twice
 * GW_MAX_WITHDRAWALS_PER_KEY (with a raised max_transactions_per_identity, enough to fill the engine's
 * queue). Those past its share wait behind the others' withdrawals: another client's, queued after them,
 * is revoked once the key's first GW_MAX_WITHDRAWALS_PER_KEY are, not after all of them. All of them are
 * revoked, none refused, and meanwhile the client gets no new certificate.
 */
static void test_withdrawals_per_key_open_at_once(void **state)
{
    struct env *e = env_slow(NULL, 0);
    struct client cl[OPEN_AT_ONCE], other = {.env = e};
    OSSL_CMP_CTX *ctx[OPEN_AT_ONCE], *ctx2;
    pthread_t th[OPEN_AT_ONCE];
    void *rejected;

    (void)state;
    slow_revokes(e);
    held_revokes(e);
    slow_gate(1);
    assert_int_equal(pthread_barrier_init(&all_issued, NULL, OPEN_AT_ONCE), 0);
    for (int i = 0; i < OPEN_AT_ONCE; i++) {
        cl[i] = (struct client){.env = e};
        ctx[i] = client_new(&cl[i], SIG, client_cert, client_key, NULL, NULL, 0);
    }
    ctx2 = client_new(&other, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
    for (int i = 0; i < OPEN_AT_ONCE; i++)
        assert_int_equal(pthread_create(&th[i], NULL, ir_rejected_once_all_issued, ctx[i]), 0);
    for (int i = 0; i < OPEN_AT_ONCE; i++) {
        assert_int_equal(pthread_join(th[i], &rejected), 0);
        assert_non_null(rejected);
    }
    pthread_barrier_destroy(&all_issued);
    assert_int_equal(held_revoke_wait_entered(), 1); /* the first at its CA, the others waiting */
    ir_rejected_by_client(ctx2);                     /* another share of the caps */
    OSSL_CMP_CTX_reinit(ctx[0]);
    OSSL_CMP_CTX_set_certConf_cb(ctx[0], NULL);
    assert_null(OSSL_CMP_exec_IR_ses(ctx[0]));
    assert_status(ctx[0], OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "too many revocations of certificates ");
    held_revoke_release();
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), OPEN_AT_ONCE + 1);
    assert_int_equal(audit_count(e, "revoke_failed", NULL, NULL, NULL), 0);
    assert_int_equal(revoked_index(e, "demo-device"), GW_MAX_WITHDRAWALS_PER_KEY);
    for (int i = 0; i < OPEN_AT_ONCE; i++) {
        client_cleanup(&cl[i]);
        OSSL_CMP_CTX_free(ctx[i]);
    }
    client_cleanup(&other);
    OSSL_CMP_CTX_free(ctx2);
    env_free(e);
}

/*
 * The withdrawals waiting past their keys' shares of the queue are bounded too (here at 1): once full,
 * one more of a key past its share fails at once (on record, as a full queue's does), a key owing any
 * gets no new certificate, and one owing none still does.
 */
static void test_withdrawals_overflow_full(void **state)
{
    struct env *e = env_slow(NULL, 0);
    struct client cl[2], other = {.env = e};
    OSSL_CMP_CTX *ctx[2], *ctx2;
    pthread_t th[2];
    void *rejected;

    (void)state;
    slow_revokes(e);
    held_revokes(e);
    slow_gate(1);
    gw_cmp_engine_set_withdrawal_over_cap(e->engine, 1);
    for (int i = 0; i < 2; i++) {
        cl[i] = (struct client){.env = e};
        ctx[i] = client_new(&cl[i], SIG, client_cert, client_key, NULL, NULL, 0);
    }
    ctx2 = client_new(&other, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
    for (int i = 0; i < GW_MAX_WITHDRAWALS_PER_KEY; i++) /* its share: one at the CA, the others queued */
        ir_rejected_by_client(ctx[0]);
    assert_int_equal(held_revoke_wait_entered(), 1);
    assert_int_equal(pthread_barrier_init(&all_issued, NULL, 2), 0);
    OSSL_CMP_CTX_reinit(ctx[0]);
    for (int i = 0; i < 2; i++) /* both issued while it owes its share: one waits past it, one fails */
        assert_int_equal(pthread_create(&th[i], NULL, ir_rejected_once_all_issued, ctx[i]), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], &rejected), 0);
        assert_non_null(rejected);
    }
    pthread_barrier_destroy(&all_issued);
    assert_int_equal(audit_count_now(e, "revoke_failed", NULL, "status",
                                     "too many withdrawals are waiting for their upstreams"),
                     1);
    ir_rejected_by_client(ctx2); /* owing none: served, its withdrawal in its own share */
    OSSL_CMP_CTX_reinit(ctx2);
    OSSL_CMP_CTX_set_certConf_cb(ctx2, NULL);
    assert_null(OSSL_CMP_exec_IR_ses(ctx2)); /* owing one while the list is full */
    assert_status(ctx2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "too many revocations of certificates ");
    held_revoke_release();
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), GW_MAX_WITHDRAWALS_PER_KEY + 2);
    OSSL_CMP_CTX_reinit(ctx2);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx2));
    for (int i = 0; i < 2; i++) {
        client_cleanup(&cl[i]);
        OSSL_CMP_CTX_free(ctx[i]);
    }
    client_cleanup(&other);
    OSSL_CMP_CTX_free(ctx2);
    env_free(e);
}

static void test_poll_shutdown(void **state)
{
    struct env *e = env_slow("100ms", 0);
    struct client cl = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char path[sizeof(e->audit_path)];
    struct env copy = {0};
    pthread_t th;
    int after;

    (void)state;
    assert_int_equal(poll_step(ctx, &after), -1);
    snprintf(path, sizeof(path), "%s", e->audit_path);
    pthread_create(&th, NULL, open_gate_later, NULL);
    gw_cmp_engine_close_all(e->engine); /* as the gateway's stop does first: logs txn_abandoned_pending */
    env_free(e);                        /* waits for the call */
    pthread_join(th, NULL);
    assert_int_equal(slow.completed, 1);
    snprintf(copy.audit_path, sizeof(copy.audit_path), "%s", path);
    assert_int_equal(audit_count(&copy, "issued", NULL, NULL, NULL), 1);
    /* no pollReq can collect it: on record as such, not as one still awaited */
    assert_int_equal(audit_count(&copy, "expired_undelivered", NULL, "status",
                                 "the gateway stopped before a pollReq collected it"),
                     1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
}

/* ---- a redis-server of the test's own on loopback, for the shared transaction records ---- */

static pid_t redis_pid;
static unsigned redis_port;

/* One command (|argc| strings) to the test's Redis; the first line of its answer into |out|. */
static int redis_cmd(char *out, size_t cap, int argc, const char *const *argv)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)redis_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[1024];
    int fd = socket(AF_INET, SOCK_STREAM, 0), n, len;
    ssize_t got = 0;

    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    len = snprintf(buf, sizeof(buf), "*%d\r\n", argc);
    for (int i = 0; i < argc; i++)
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
    n = len < (int)sizeof(buf) && write(fd, buf, (size_t)len) == len ? 0 : -1;
    while (n == 0 && (size_t)got < cap - 1 && memchr(out, '\n', (size_t)got) == NULL) {
        ssize_t r = read(fd, out + got, cap - 1 - (size_t)got);
        if (r <= 0)
            break;
        got += r;
    }
    close(fd);
    out[got] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return n == 0 && got > 0 ? 0 : -1;
}

/*
 * Runs redis-server on redis_port, append-only, with |maxmemory| and |policy|: 0 once it answers, or -1 (none
 * here).
 */
static int redis_spawn(const char *maxmemory, const char *policy)
{
    char port[8], out[64] = "";

    snprintf(port, sizeof(port), "%u", redis_port);
    if ((redis_pid = fork()) == 0) {
        int null = open("/dev/null", O_WRONLY);

        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", dir,
               "--appendonly", "yes", "--maxmemory", maxmemory, "--maxmemory-policy", policy, "--save", "",
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && redis_pid > 0; i++) { /* up to 10 s */
        if (redis_cmd(out, sizeof(out), 1, (const char *const[]){"PING"}) == 0 && strcmp(out, "+PONG") == 0)
            return 0;
        if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid)
            break;
        usleep(100 * 1000);
    }
    if (redis_pid > 0 && waitpid(redis_pid, NULL, WNOHANG) == 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
    }
    redis_pid = 0;
    return -1;
}

/* Starts redis-server as the gateway wants it (append-only, no eviction): 0, or -1 (none here). */
static int redis_start(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    redis_port = ntohs(sa.sin_port);
    return redis_spawn("0", "noeviction");
}

/* Teardown: the test's Redis stops whether the test passed or failed. */
static int redis_stop(void **state)
{
    (void)state;
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
    }
    redis_pid = 0;
    return 0;
}

/*
 * The "cmp" section's members |defaults| (CMP_DEFAULTS' keys) with those that share an engine's state in
 * the test's Redis (records on), into |cmp|.
 */
static const char *shared_cmp_with(char *cmp, size_t cap, const char *defaults)
{
    char key_path[128];
    FILE *f;

    snprintf(key_path, sizeof(key_path), "%s/state-mac.key", dir);
    assert_non_null(f = fopen(key_path, "w"));
    fputs("a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5\n", f);
    fclose(f);
    assert_int_equal(chmod(key_path, 0600), 0);
    snprintf(cmp, cap,
             "%s, \"state\": {\"backend\": \"redis\", \"address\": \"127.0.0.1\", \"port\": %u, "
             "\"mac_key_file\": \"%s\", \"key_prefix\": \"unit%d:\"}",
             defaults, redis_port, key_path, (int)getpid());
    return cmp;
}

static const char *shared_cmp(char *cmp, size_t cap)
{
    return shared_cmp_with(cmp, cap, CMP_DEFAULTS);
}

/*
 * An engine over the slow adapter (polling after |poll_after|, NULL: never) whose transactions are
 * shared in the test's Redis (records on).
 */
static struct env *env_shared(const char *poll_after)
{
    char cmp[512];

    return env_slow_cmp(shared_cmp(cmp, sizeof(cmp)), poll_after, 0);
}

/* The Redis key of the record of |cl|'s transaction (of its first request) into |out|. */
static void record_key(const struct client *cl, char *out, size_t cap)
{
    const unsigned char *p = cl->first_req;
    OSSL_CMP_MSG *req = d2i_OSSL_CMP_MSG(NULL, &p, (long)cl->first_req_len);
    const ASN1_OCTET_STRING *tid =
        req != NULL ? OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(req)) : NULL;
    int n = snprintf(out, cap, "unit%d:rec:", (int)getpid());

    assert_non_null(tid);
    for (int i = 0; i < ASN1_STRING_length(tid) && (size_t)n + 2 < cap; i++)
        n += snprintf(out + n, cap - (size_t)n, "%02x", ASN1_STRING_get0_data(tid)[i]);
    OSSL_CMP_MSG_free(req);
}

/* |ctx| starts its transactions under the transactionID |name| (the test's Redis keeps them across tests). */
static void use_tid(OSSL_CMP_CTX *ctx, const char *name)
{
    ASN1_OCTET_STRING *tid = ASN1_OCTET_STRING_new();

    assert_int_equal(ASN1_OCTET_STRING_set(tid, (const unsigned char *)name, strlen(name)), 1);
    assert_int_equal(OSSL_CMP_CTX_set1_transactionID(ctx, tid), 1);
    ASN1_OCTET_STRING_free(tid);
}

/* Stamps |req| with the messageTime |at|, re-protected with the client's own credentials. */
static OSSL_CMP_MSG *stamp_at(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, time_t at)
{
    ASN1_GENERALIZEDTIME *when = ASN1_GENERALIZEDTIME_set(NULL, at);
    unsigned char *der = NULL, *hit;
    const unsigned char *p;
    OSSL_CMP_MSG *out;
    int len = i2d_OSSL_CMP_MSG(req, &der);

    assert_non_null(when);
    assert_int_equal(ASN1_STRING_length(when), 15);
    /* messageTime [0] EXPLICIT GeneralizedTime, the header's first time: before any of the body's */
    hit = memmem(der, (size_t)len, "\xa0\x11\x18\x0f", 4);
    assert_non_null(hit);
    memcpy(hit + 4, ASN1_STRING_get0_data(when), 15);
    p = der;
    out = d2i_OSSL_CMP_MSG(NULL, &p, len);
    assert_non_null(out);
    assert_int_equal(OSSL_CMP_MSG_update_transactionID(ctx, out), 1); /* protected again */
    ASN1_GENERALIZEDTIME_free(when);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(req);
    return out;
}

/* Stamps |req| with the messageTime ahead_clock reads now: a device clock that keeps up with the gateway's
   moved clock. */
static OSSL_CMP_MSG *stamp_ahead(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)cl;
    return stamp_at(ctx, req, ahead_clock());
}

static time_t pinned_now; /* what pinned_clock reads: a gateway clock that moves only when told */

static time_t pinned_clock(void)
{
    return pinned_now;
}

/* Stamps |req| with the messageTime ahead_secs past pinned_clock's. */
static OSSL_CMP_MSG *stamp_pinned_ahead(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)cl;
    return stamp_at(ctx, req, pinned_now + ahead_secs);
}

/*
 * An ir under the transactionID of a transaction past its TTL, which the expiry sweep (once a second) has not
 * closed yet, finds it closed as the sweep would have (expired_unconfirmed, the certificate valid) and is
 * judged as a new request: issued. Once, it was refused as one whose transactionID is in use. The replay
 * cache (twice the messageTime window: 600 s without one) has forgotten the first ir by then; the second
 * client's clock keeps up with the gateway's, for a messageTime that old is refused. Twin: within the TTL
 * it is refused, the first transaction open.
 */
static void test_tid_reused_after_ttl(void **state)
{
    static const struct {
        time_t ahead;
        bool expired;
    } cases[] = {{601, true}, {5, false}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_new("\"message_time_window\": \"0s\", \"transaction_ttl\": \"10s\"");
        struct client first = {.env = e, .tamper = drop_certconf}, again = {.env = e, .tamper = stamp_ahead};
        OSSL_CMP_CTX *ctx = client_new(&first, SIG, client_cert, client_key, NULL, NULL, 0);
        OSSL_CMP_CTX *ctx2 = client_new(&again, SIG, client_cert, client_key, NULL, NULL, 0);
        X509 *cert;

        use_tid(ctx, "reused after its TTL");
        use_tid(ctx2, "reused after its TTL");
        assert_null(OSSL_CMP_exec_IR_ses(ctx)); /* issued; its certConf never reaches the gateway */
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
        ahead_secs = cases[i].ahead;
        gw_cmp_engine_set_clock(e->engine, ahead_clock);
        cert = OSSL_CMP_exec_IR_ses(ctx2);
        if (cases[i].expired) {
            assert_non_null(cert);
            assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 1);
            assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 1);
            assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        } else {
            assert_null(cert);
            assert_status(ctx2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_transactionIdInUse,
                          NULL);
            assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 0);
            assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
        }
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 0);
        client_cleanup(&first);
        client_cleanup(&again);
        OSSL_CMP_CTX_free(ctx);
        OSSL_CMP_CTX_free(ctx2);
        env_free(e);
    }
}

/*
 * message_time_window 0 checks messageTime only as far as the replay cache needs: a messageTime further
 * ahead than GW_MSGTIME_AHEAD_NO_WINDOW, or older than the cache's TTL (600 s here) less that and
 * GW_REPLAY_MARGIN, is refused, so that no request the cache forgot is let through. Once, any was: the
 * first ir sent again 601 s later, its transactionID forgotten, was issued a second certificate. Twins:
 * a messageTime 2 s inside either bound is served.
 */
static void test_no_window_bounds(void **state)
{
    enum {
        TTL = 2 * GW_DEFAULT_MSGTIME_WINDOW,
        BEHIND = TTL - GW_MSGTIME_AHEAD_NO_WINDOW - GW_REPLAY_MARGIN
    };
    static const struct {
        time_t off; /* the messageTime, from the gateway's clock */
        bool served;
    } cases[] = {
        {-(BEHIND - 2), true},
        {-(BEHIND + 2), false},
        {GW_MSGTIME_AHEAD_NO_WINDOW - 2, true},
        {GW_MSGTIME_AHEAD_NO_WINDOW + 2, false},
    };
    char allowed[64], desc[4096];

    (void)state;
    snprintf(allowed, sizeof(allowed), "(allowed: %d s behind to %d s ahead)", BEHIND,
             GW_MSGTIME_AHEAD_NO_WINDOW);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_new("\"message_time_window\": \"0s\", \"transaction_ttl\": \"10s\"");
        struct client cl = {.env = e, .tamper = stamp_ahead};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

        print_message("messageTime %lld s off\n", (long long)cases[i].off);
        ahead_secs = cases[i].off;
        if (cases[i].served) {
            assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
        } else {
            assert_null(OSSL_CMP_exec_IR_ses(ctx));
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badTime, allowed);
        }
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
    {
        struct env *e = env_new("\"message_time_window\": \"0s\", \"transaction_ttl\": \"10s\"");
        struct client cl = {.env = e};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);

        assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
        ahead_secs = TTL + 1; /* the replay cache forgot the ir */
        gw_cmp_engine_set_clock(e->engine, ahead_clock);
        resend_first(e, &cl, desc, sizeof(desc));
        assert_non_null(strstr(desc, allowed));
        assert_null(strstr(desc, "certificate:"));
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * The messageTime window is the one the gateway started with, as the replay cache's TTL is: a reload
 * from 300 s to 3600 s applies neither (the reload warns so). Once, the check took the new window at
 * once while the cache kept its 600 s: the first ir sent again 1000 s later, under the reloaded
 * engine, was issued a second certificate. Twin: under the first engine, refused as well.
 */
static void test_reload_keeps_message_time_window(void **state)
{
    struct env *first = env_new(CMP_DEFAULTS), *second;
    struct client cl = {.env = first};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char desc[4096];

    (void)state;
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    second = env_reload(first, &(struct env_opts){.cmp = "\"message_time_window\": \"3600s\", "
                                                         "\"transaction_ttl\": \"300s\", "
                                                         "\"max_transactions_per_identity\": 100"});
    ahead_secs = 1000;
    for (int i = 0; i < 2; i++) {
        struct env *e = i == 0 ? second : first;

        gw_cmp_engine_set_clock(e->engine, ahead_clock);
        resend_first(e, &cl, desc, sizeof(desc));
        assert_non_null(strstr(desc, "off the server clock"));
        assert_non_null(strstr(desc, "300 s)")); /* the window that runs (the text's ± printed escaped) */
        assert_null(strstr(desc, "certificate:"));
    }
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(second);
    env_free(first);
}

/*
 * transaction_ttl is the one the gateway started with too: a transaction opened after a reload from 300 s
 * to 10 s still waits 300 s for its certConf. Once, the reload applied it to new transactions (though it
 * warned it would not), beside a replay cache sized by the first.
 */
static void test_reload_keeps_transaction_ttl(void **state)
{
    struct env *first = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1}), *second;
    struct client cl;
    OSSL_CMP_CTX *ctx;

    (void)state;
    second = env_reload(first, &(struct env_opts){.cmp = "\"message_time_window\": \"300s\", "
                                                         "\"transaction_ttl\": \"10s\", "
                                                         "\"max_transactions_per_identity\": 100",
                                                  .confirm = 1});
    cl = (struct client){.env = second, .tamper = drop_certconf};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_null(OSSL_CMP_exec_IR_ses(ctx)); /* issued; its certConf never reaches the gateway */
    assert_int_equal(gw_cmp_engine_open_transactions(second->engine), 1);
    gw_cmp_engine_expire(second->engine, time(NULL) + 10 + 2);
    assert_int_equal(gw_cmp_engine_open_transactions(second->engine), 1);
    gw_cmp_engine_expire(second->engine, time(NULL) + 300 + 2);
    assert_int_equal(gw_cmp_engine_open_transactions(second->engine), 0);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(second);
    env_free(first);
}

/*
 * A deferred request of |cl|'s client (new) on |e| under the transactionID |tid| (NULL: one of its own),
 * answered waiting and polled once: its context.
 */
static OSSL_CMP_CTX *shared_waiting(struct env *e, struct client *cl, const char *tid)
{
    OSSL_CMP_CTX *ctx;
    int after;

    *cl = (struct client){.env = e};
    ctx = client_new(cl, SIG, client_cert, client_key, NULL, NULL, 0);
    if (tid != NULL)
        use_tid(ctx, tid);
    assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
    return ctx;
}

/*
 * A record older than the instance's own copy (another writer's late write, or writes a failed-over
 * Redis lost) does not replace the copy: the client's next pollReq, which answers the copy's last
 * pollRep, still collects the certificate.
 */
static void test_shared_older_record_kept_out(void **state)
{
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char key[160], saved[176], out[256];
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = env_shared("100ms");
    ctx = shared_waiting(e, &cl, NULL);
    record_key(&cl, key, sizeof(key));
    snprintf(saved, sizeof(saved), "%s:old", key);
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"COPY", key, saved}), 0);
    assert_string_equal(out, ":1");
    assert_int_equal(poll_step(ctx, &after), -1); /* pollReq -> pollRep: the record one step on */
    assert_int_equal(redis_cmd(out, sizeof(out), 4, (const char *const[]){"COPY", saved, key, "REPLACE"}), 0);
    assert_string_equal(out, ":1"); /* the record one step back: its senderNonce an older pollRep's */
    slow_gate(1);
    slow_wait_completed(e, 1);
    poll_collect_and_free(e, &cl, ctx);
}

/*
 * A shared deferred request of |cl| whose certificate came and lies beside its record, uncollected:
 * its engine, and the client's context in *ctx.
 */
static struct env *shared_result_waiting(struct client *cl, OSSL_CMP_CTX **ctx)
{
    struct env *e = env_shared("100ms");

    slow_revokes(e);
    *ctx = shared_waiting(e, cl, NULL);
    slow_gate(1);
    slow_wait_completed(e, 1); /* the result is beside the record */
    return e;
}

/* The record of |cl|'s transaction due (ZADD's answer in |out|: ":0" moved, ":1" added), then expired. */
static void expire_record(struct env *e, const struct client *cl, char *out, size_t cap)
{
    char key[160], deadlines[64];

    record_key(cl, key, sizeof(key));
    snprintf(deadlines, sizeof(deadlines), "unit%d:deadlines", (int)getpid());
    assert_int_equal(redis_cmd(out, cap, 4, (const char *const[]){"ZADD", deadlines, "0", key}), 0);
    gw_cmp_engine_expire(e->engine, time(NULL));
}

/*
 * A shared deferred request whose instance is gone (its record's deadline long past, no lease) with
 * a certificate beside the record that no pollReq collected: the instance that claims the expiry
 * records it as not delivered and withdraws it at the CA.
 */
static void test_shared_expiry_withdraws(void **state)
{
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char out[256], serial[64] = "";

    (void)state;
    if (redis_start() != 0)
        skip();
    e = shared_result_waiting(&cl, &ctx);
    expire_record(e, &cl, out, sizeof(out));
    assert_string_equal(out, ":0"); /* its deadline moved to the distant past */
    assert_uncollected_withdrawn(e, serial, sizeof(serial),
                                 "no pollReq collected it before its transaction closed");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* The test's Redis killed at once (SIGKILL): whatever it holds unanswered never runs. */
static void redis_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
    }
    redis_pid = 0;
}

/*
 * A shared deferred request whose certificate came while Redis was down, then expired here uncollected,
 * Redis still down. When every try to put the result beside the record was refused before any of it
 * went out (Redis stopped: the connection refused), no other instance can have delivered it: it expires
 * as an unshared one, on record as not delivered and withdrawn. When a try went out and its answer never
 * came (Redis paused past the gateway's timeout, then killed), it may have landed and been delivered
 * elsewhere: it stays valid, left to the record's expiry. Once, both stayed valid, nobody to withdraw
 * the first.
 */
static void test_shared_unsent_result_withdrawn(void **state)
{
    static const struct {
        const char *name;
        bool sent;
    } cases[] = {{"refused: nothing sent", false}, {"sent, its answer late", true}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e;
        struct client cl;
        OSSL_CMP_CTX *ctx;
        char out[64], serial[64] = "", *logged;
        const char *missed;
        int rc = 0;

        if (redis_start() != 0)
            skip();
        e = env_shared("100ms");
        slow_revokes(e);
        ctx = shared_waiting(e, &cl, NULL); /* the record shared, no result beside it */
        log_capture_start();
        hold_arm(); /* Redis down once the certificate passed its checks, which ask it */
        slow_gate(1);
        hold_wait();
        if (cases[i].sent) /* the put goes out; no answer within the 1 s timeout */
            rc = redis_cmd(out, sizeof(out), 4, (const char *const[]){"CLIENT", "PAUSE", "3000", "ALL"});
        else
            (void)redis_stop(NULL);
        missed = hold_release(); /* before any assertion: the completion holds detach_lock */
        assert_held(missed);
        assert_int_equal(rc, 0);
        slow_wait_completed(e, 1);
        redis_kill();
        gw_cmp_engine_expire(e->engine, time(NULL) + 300 + 12); /* the copy's expiry, Redis down */
        logged = log_capture_end();
        assert_non_null(strstr(logged, "\"event\":\"result_not_shared\""));
        if (!cases[i].sent) {
            assert_uncollected_withdrawn(e, serial, sizeof(serial),
                                         "no pollReq collected it before its transaction closed");
        } else {
            assert_null(strstr(logged, "\"event\":\"txn_expired_pending\""));
            assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 1);
            assert_int_equal(audit_count(e, "expired_undelivered", NULL, NULL, NULL), 0);
            assert_int_equal(revoke_calls(e), 0);
        }
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        print_message("%s: as expected\n", cases[i].name);
        free(logged);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * The commands the gateway hands hiredis: while |drop_hook.fn| is set, the one sent from the test's
 * thread that ends a transaction's record (the only script whose keys are a record's lease and the
 * deadlines) first runs |fn|, once: what another instance does while this one closes the transaction;
 * with |fn_skip|, that many ends (a try whose answer is lost, and its retry, are two) go out before it.
 * With |after_end|, |fn| runs once that end's answer came (redisBufferRead) instead: the record is gone by
 * then, and the close goes on (a deferred request's reservation is its call's to end). With |lose_answer|,
 * the end's answer is lost once it came (redisBufferRead): Redis ran it, the gateway cannot know. With
 * |lose_unrun|, the end goes out whole but Redis never runs it (a PING goes in its stead), and its answer is
 * lost: the connection dropped before Redis read it. While |put_fn| is set, the next put of a deferred
 * request's result (the only script whose keys are a record and its result), from any thread, first runs
 * |put_fn|, once, and then never goes out: Redis certainly never ran it. With |lose_claims|, the answers of
 * that many expiry claims sent from |thread| (the only script with the deadlines and no record among its
 * keys) are lost once they came. With |lose_put|, the answers of that many puts of a result sent from
 * |thread| are lost once they came: Redis may have run them. |sent| counts the commands sent from |thread|,
 * whatever they are, |ends| the ends (and read-backs of ends) among them.
 */
static struct {
    pthread_t thread;
    void (*fn)(void);
    int fn_skip; /* how many ends go out before |fn| runs */
    bool after_end, lose_unrun;
    bool fn_after_read; /* |after_end|: the end went out, |fn| runs once its answer came */
    int lose_answer;    /* how many ends' answers are lost */
    bool losing;        /* the next read on |thread| fails */
    void (*put_fn)(void);
    int lose_claims;
    int lose_put;
    int sent, ends;
} drop_hook;

/* Whether one of the |argc| arguments ends with |s| (|suffix|), or holds it. */
static bool arg_has(int argc, const char **argv, const size_t *argvlen, const char *s, bool suffix)
{
    size_t n = strlen(s);

    for (int i = 0; i < argc; i++)
        if (suffix ? argvlen[i] >= n && memcmp(argv[i] + argvlen[i] - n, s, n) == 0
                   : memmem(argv[i], argvlen[i], s, n) != NULL)
            return true;
    return false;
}

#if __has_include(<hiredis/hiredis.h>)
#include <hiredis/hiredis.h>

static pthread_t test_thread; /* the one cmocka runs every test on: set by main before any other starts */

/*
 * Whether the caller is |drop_hook|'s thread. Every test sets drop_hook on its own thread, and only that
 * thread reads it here: any other (a cluster's pinger, a withdrawal, a call) would race those writes.
 */
static bool on_hooked_thread(void)
{
    return pthread_equal(pthread_self(), test_thread) && pthread_equal(drop_hook.thread, test_thread);
}

int redisAppendCommandArgv(redisContext *c, int argc, const char **argv, const size_t *argvlen)
{
    int (*real)(redisContext *, int, const char **, const size_t *) =
        (int (*)(redisContext *, int, const char **, const size_t *))dlsym(RTLD_NEXT,
                                                                           "redisAppendCommandArgv");
    bool mine = on_hooked_thread();
    void (*fn)(void) = mine ? drop_hook.fn : NULL, (*put_fn)(void) = NULL;
    bool end = mine && arg_has(argc, argv, argvlen, ":deadlines", true) &&
               arg_has(argc, argv, argvlen, ":lease:", false);
    bool put = arg_has(argc, argv, argvlen, ":rec:", false) && arg_has(argc, argv, argvlen, ":res:", false);

    if (mine)
        drop_hook.sent++;
    if (end)
        drop_hook.ends++;

    if (fn != NULL && end && !drop_hook.after_end && drop_hook.fn_skip > 0) {
        drop_hook.fn_skip--;
        fn = NULL;
    }
    if (fn != NULL && end && drop_hook.after_end) {
        drop_hook.fn_after_read = true;
    } else if (fn != NULL && end) {
        drop_hook.fn = NULL;
        fn();
    }
    if (put && (put_fn = drop_hook.put_fn) != NULL) { /* from any thread: the call's */
        drop_hook.put_fn = NULL;
        put_fn();
        c->err = REDIS_ERR_OTHER;
        snprintf(c->errstr, sizeof(c->errstr), "the test kept the put from going out");
        return REDIS_ERR;
    }
    if (mine && drop_hook.lose_put > 0 && put) {
        drop_hook.lose_put--;
        drop_hook.losing = true;
    }
    if (mine && drop_hook.lose_claims > 0 && arg_has(argc, argv, argvlen, ":deadlines", true) &&
        !arg_has(argc, argv, argvlen, ":rec:", false) && !arg_has(argc, argv, argvlen, ":lease:", false)) {
        drop_hook.lose_claims--;
        drop_hook.losing = true;
    }
    if (end && drop_hook.lose_answer > 0) {
        drop_hook.lose_answer--;
        drop_hook.losing = true;
    }
    if (end && drop_hook.lose_unrun) {
        drop_hook.lose_unrun = false;
        drop_hook.losing = true;
        return real(c, 1, (const char *[]){"PING"}, (const size_t[]){4});
    }
    return real(c, argc, argv, argvlen);
}

int redisBufferRead(redisContext *c)
{
    int (*real)(redisContext *) = (int (*)(redisContext *))dlsym(RTLD_NEXT, "redisBufferRead");

    void (*fn)(void);
    int rc;

    if (!on_hooked_thread())
        return real(c);
    fn = drop_hook.fn;
    if (drop_hook.losing) {
        drop_hook.losing = false;
        c->err = REDIS_ERR_IO;
        snprintf(c->errstr, sizeof(c->errstr), "the test lost the answer");
        return REDIS_ERR;
    }
    rc = real(c);
    if (drop_hook.fn_after_read && fn != NULL) {
        drop_hook.fn_after_read = false;
        drop_hook.fn = NULL;
        fn();
    }
    return rc;
}
#endif

static int landed; /* drop_hook's: the call's result came and its completion ended */

/* drop_hook: the upstream call of the instance that made it returns now, its completion to its end. */
static void call_lands(void)
{
    struct timespec until;
    int completed;

    until = tu_deadline(CALL_WAIT_S);
    slow_gate(1);
    pthread_mutex_lock(&slow.lock);
    while (slow.completed < 1 && tu_wait_until(&slow.cond, &slow.lock, &until) == 0)
        ;
    completed = slow.completed;
    pthread_mutex_unlock(&slow.lock);
    landed = completed == 1 && calls_end_by(slow.engine, &until);
}

/*
 * A shared deferred request whose transaction this instance closes (the client's error message, or a
 * certConf in place of its pollReq) before its call's certificate is on record: the call's result
 * goes beside a record that is being dropped, where nobody would find it. Whether the certificate
 * comes after the close, is being recorded during it (its "issued" record held in its fsync), or comes
 * once the record ended and before the close is done with the call, it is withdrawn here, once, and
 * never said to be closed by another instance. Once, a certConf's close ended the record before it
 * marked the call closed: a certificate in between found the record gone, was withdrawn as closed on
 * another instance, and then again as one no pollReq collected.
 */
static void test_shared_closed_while_call_runs(void **state)
{
    static const char *const when[] = {"before its certificate came", "while its certificate is recorded",
                                       "its certificate coming once the record ended"};

    (void)state;
    if (redis_start() != 0)
        skip();
    for (int i = 0; i < 6; i++) {
        int conf = i & 1, landing = i >> 1;
        struct env *e = env_shared("100ms");
        struct client cl, dummy = {.env = e};
        OSSL_CMP_CTX *ctx;
        char serial[64] = "";
        const char *missed = NULL;
        int after;

        print_message("closed by %s, %s\n", conf ? "a certConf" : "the client's error message",
                      when[landing]);
        slow_revokes(e);
        ctx = shared_waiting(e, &cl, NULL);
        cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
        cl.tamper = conf ? tamper_poll_certconf : tamper_poll_error;
        if (landing == 1) {
            hold_arm();
            slow_gate(1);
            hold_wait();
        }
        landed = landing == 2 ? 0 : 1;
        drop_hook.thread = pthread_self();
        drop_hook.after_end = true;
        drop_hook.fn = landing == 2 ? call_lands : NULL;
        (void)poll_step(ctx, &after); /* its next pollReq goes as that message */
        drop_hook.fn = NULL;
        drop_hook.fn_after_read = false;
        if (landing == 1)
            missed = hold_release(); /* before any assertion: the completion holds detach_lock */
        else
            slow_gate(1);
        assert_held(missed);
        if (!landed)
            fail_msg("the call did not land within CALL_WAIT_S");
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        slow_wait_completed(e, 1);
        assert_int_equal(audit_count(e, "issued", NULL, "status",
                                     landing == 1 ? "awaiting the client's pollReq"
                                                  : "issued after its transaction was closed; not delivered"),
                         1);
        assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
        assert_int_equal(audit_count(e, "expired_undelivered", NULL, NULL, NULL), 0);
        assert_int_equal(audit_count(e, "revoked", serial, NULL, NULL), 1);
        assert_int_equal(revoke_calls(e), 1);
        client_cleanup(&cl);
        client_cleanup(&dummy);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * Waits up to 5 s for |e|'s pinger to find the test's Redis unreachable (paused, or refusing writes) or,
 * with |reachable|, reachable again (resumed): whether it did.
 */
static bool state_is(struct env *e, bool reachable)
{
    char why[GW_ERR_LEN];

    for (int i = 0; i < 50; i++) {
        if ((gw_cmp_engine_state_status(e->engine, why, sizeof(why)) == 0) == reachable)
            return true;
        usleep(100 * 1000);
    }
    return false;
}

/*
 * A shared transaction whose certConf never came expires while Redis is known to be unreachable (paused:
 * the pinger's PING found no answer): the expiry, on the main thread that also sends the watchdog, sends
 * Redis nothing; the certificate goes on record as expired_unconfirmed, the record left to its TTL. Before,
 * the record's end went out all the same (and its retry), each waiting out the Redis timeout: the main
 * thread stalled that long for every such transaction.
 */
static void test_shared_expiry_skips_unreachable(void **state)
{
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char cmp[512];
    bool down;
    int sent;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
    cl = (struct client){.env = e};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_DISABLE_CONFIRM, 1);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    kill(redis_pid, SIGSTOP);
    down = state_is(e, false);
    drop_hook.thread = pthread_self();
    drop_hook.sent = 0;
    gw_cmp_engine_expire(e->engine, time(NULL) + 301);
    sent = drop_hook.sent;
    kill(redis_pid, SIGCONT);
    assert_true(down);
    assert_int_equal(sent, 0);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * Waits up to 5 s for |cl|'s pinger to find Redis reachable again after an answer the test lost, which
 * marked it unreachable: a read-back is not sent until then (the expiry tick asks it again later). Whether
 * it did.
 */
static bool cluster_up(struct gw_cluster *cl)
{
    char why[GW_ERR_LEN];

    for (int i = 0; i < 50; i++) {
        if (gw_cluster_status(cl, why, sizeof(why)) == 0)
            return true;
        usleep(100 * 1000);
    }
    return false;
}

/*
 * A shared engine on a started Redis, with one end (of the record "0123") whose answers were lost waiting
 * to be read back, in the epoch Redis is in.
 */
static struct env *end_unread(void)
{
    struct cmp_txn view = {.up = NULL};
    struct gw_txn_result left = {.unread = 7};
    char key[64], epoch[GW_STATE_EPOCH_LEN + 1];
    struct env *e = env_shared("100ms");

    snprintf(view.identity, sizeof(view.identity), "/CN=unread");
    snprintf(key, sizeof(key), "unit%d:epoch", (int)getpid()); /* as a status line: "+<epoch>" */
    assert_int_equal(
        redis_cmd(epoch, sizeof(epoch), 4,
                  (const char *const[]){"EVAL", "return {ok = redis.call('GET', KEYS[1])}", "1", key}),
        0);
    assert_int_equal(epoch[0], '+');
    snprintf(left.unread_epoch, sizeof(left.unread_epoch), "%s", epoch + 1);
    left.unread_until_ms = gw_now_ms() + (uint64_t)GW_STATE_TOOK_SECS * 1000;
    cmp_poll_reread_later(e->engine, &view, "local", "30313233", &left, 0);
    return e;
}

/*
 * An end of a shared record whose answers were lost waits to be read back while Redis is known to be
 * unreachable (paused: the pinger's PING found no answer): the expiry tick, on the main thread that also
 * sends the watchdog, sends Redis nothing for it and keeps it; once Redis answers again, a later tick reads
 * it back, once, within the 30 s Redis keeps what the end took: nothing said, the end never ran. Before, the
 * read-back went out at every tick all the same, each of up to 64 such ends waiting out the Redis timeout.
 */
static void test_shared_reread_skips_unreachable(void **state)
{
    struct env *e;
    char *logged;
    bool down, up;
    int sent, ends, again;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = end_unread();
    kill(redis_pid, SIGSTOP);
    down = state_is(e, false);
    log_capture_start();
    drop_hook.thread = pthread_self();
    drop_hook.sent = 0;
    gw_cmp_engine_expire(e->engine, time(NULL));
    sent = drop_hook.sent;
    kill(redis_pid, SIGCONT);
    up = state_is(e, true);
    drop_hook.ends = 0;
    gw_cmp_engine_expire(e->engine, time(NULL));
    ends = drop_hook.ends;
    drop_hook.ends = 0;
    gw_cmp_engine_expire(e->engine, time(NULL)); /* done with at the first: nothing more */
    again = drop_hook.ends;
    logged = log_capture_end();
    memset(&drop_hook, 0, sizeof(drop_hook));
    assert_true(down);
    assert_int_equal(sent, 0);
    assert_true(up);
    assert_true(ends > 0); /* its EVALSHA, and its EVAL when Redis has no such script yet */
    assert_int_equal(again, 0);
    assert_null(strstr(logged, "\"event\":\"txn_end_unread\""));
    free(logged);
    env_free(e);
}

/* drop_hook: a put of a deferred request's result that never goes out, and nothing else. */
static void put_nothing(void)
{
}

/*
 * A shared deferred request whose result no put took to Redis (every try refused before it went out)
 * expires here uncollected while Redis is known to be unreachable (paused: the pinger's PING found no
 * answer): the expiry, on the main thread that also sends the watchdog, sends Redis nothing, the put not
 * tried again; no other instance can have the certificate, so it expires as an unshared one, on record as
 * not delivered and withdrawn. Before, the put went out from the expiry and waited out the Redis timeout;
 * its answer lost, the certificate may have reached Redis, and stayed valid.
 */
static void test_shared_republish_skips_unreachable(void **state)
{
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char serial[64] = "";
    bool down;
    int sent;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = env_shared("100ms");
    slow_revokes(e);
    ctx = shared_waiting(e, &cl, NULL); /* the record shared, the call running */
    drop_hook.put_fn = put_nothing;
    slow_gate(1);
    slow_wait_completed(e, 1);
    assert_null(drop_hook.put_fn);
    assert_true(state_is(e, true)); /* the put's failure over: only the pause below makes Redis unreachable */
    kill(redis_pid, SIGSTOP);
    down = state_is(e, false);
    drop_hook.thread = pthread_self();
    drop_hook.sent = 0;
    gw_cmp_engine_expire(e->engine, time(NULL) + 300 + 12); /* the copy's expiry, past its TTL and call */
    sent = drop_hook.sent;
    kill(redis_pid, SIGCONT);
    memset(&drop_hook, 0, sizeof(drop_hook));
    assert_true(down);
    assert_int_equal(sent, 0);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_uncollected_withdrawn(e, serial, sizeof(serial),
                                 "no pollReq collected it before its transaction closed");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * A shared deferred request whose result no put took to Redis yet (the completion's refused before it went
 * out) expires here uncollected, Redis answering again, and the put tried at the expiry fails too: that try
 * is the last, and the log says what follows it. Refused before it went out, no other instance can have the
 * certificate: it expires here as an unshared one, withdrawn. Sent, its answer lost, Redis may hold it: the
 * transaction is left to its record. Before, both said the result would be tried again when this instance
 * next answered the transaction or expired it, though the expiry was that moment and nothing tried again.
 */
static void test_shared_put_fails_at_expiry(void **state)
{
    static const struct {
        const char *name, *msg;
        bool sent;
    } cases[] = {
        {"refused: nothing sent", "no try reached Redis, so no other instance can deliver it", false},
        {"sent, its answer lost", "left to its record, from which its expiry is recorded", true}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e;
        struct client cl;
        OSSL_CMP_CTX *ctx;
        char serial[64] = "", *logged;
        const char *line;
        bool unsent, answer_lost;

        if (redis_start() != 0)
            skip();
        print_message("%s\n", cases[i].name);
        e = env_shared("100ms");
        slow_revokes(e);
        ctx = shared_waiting(e, &cl, NULL); /* the record shared, the call running */
        drop_hook.put_fn = put_nothing;
        slow_gate(1);
        slow_wait_completed(e, 1);
        assert_null(drop_hook.put_fn);
        assert_true(state_is(e, true)); /* the put's failure over: the expiry tries it again */
        log_capture_start();
        drop_hook.thread = pthread_self();
        if (cases[i].sent)
            drop_hook.lose_put = 1;
        else
            drop_hook.put_fn = put_nothing;
        gw_cmp_engine_expire(e->engine, time(NULL) + 300 + 12); /* the copy's expiry, past its TTL and call */
        logged = log_capture_end();
        unsent = drop_hook.put_fn == NULL;
        answer_lost = drop_hook.lose_put == 0;
        memset(&drop_hook, 0, sizeof(drop_hook));
        assert_true(unsent && answer_lost); /* the expiry tried the put */
        assert_non_null(line = strstr(logged, "\"event\":\"result_not_shared\""));
        assert_non_null(strstr(line, "its transaction expires here now, so it is not tried again"));
        assert_non_null(strstr(line, cases[i].msg));
        assert_null(strstr(logged, "tried again when"));
        if (!cases[i].sent) {
            assert_uncollected_withdrawn(e, serial, sizeof(serial),
                                         "no pollReq collected it before its transaction closed");
        } else { /* left to its record: neither withdrawn nor on record here */
            assert_null(strstr(logged, "\"event\":\"txn_expired_pending\""));
            assert_int_equal(audit_count(e, "expired_undelivered", NULL, NULL, NULL), 0);
            assert_int_equal(revoke_calls(e), 0);
        }
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        free(logged);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
        (void)redis_stop(NULL); /* the next case starts a Redis of its own */
    }
}

/* The transactions counted open in the shares of the test's Redis under slot_cmp's prefix (its "open:" sets).
 */
static long long redis_open_count(void)
{
    static const char sum[] =
        "local n = 0\n"
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do n = n + redis.call('ZCARD', k) end\n"
        "return n\n";
    char pattern[64], out[64];

    snprintf(pattern, sizeof(pattern), "unit%dslot:open:*", (int)getpid());
    assert_int_equal(redis_cmd(out, sizeof(out), 4, (const char *const[]){"EVAL", sum, "0", pattern}), 0);
    assert_int_equal(out[0], ':');
    return strtoll(out + 1, NULL, 10);
}

/* shared_cmp_with under a key prefix of its own: no earlier test's reservations count against the cap. */
static const char *slot_cmp(char *cmp, size_t cap, const char *defaults)
{
    char *prefix = strstr(shared_cmp_with(cmp, cap, defaults), "\"key_prefix\"");

    assert_non_null(prefix);
    snprintf(prefix, cap - (size_t)(prefix - cmp), "\"key_prefix\": \"unit%dslot:\"}", (int)getpid());
    return cmp;
}

/*
 * A deferred request its client ends (an error message, a certConf in place of its pollReq) while its call
 * still runs keeps its slot under cmp.max_transactions_per_identity until the call returns, here and
 * (|shared|) in its share of the cluster's count: a client that ends each waiting transaction and sends
 * the next ir has no more calls running at its CA than the cap, nor takes the upstream's max_inflight from
 * the others. Once the calls returned, the slots are free and it is served again.
 */
static void closed_keeps_slot(bool shared)
{
    enum { CAP = 2 };
    char defaults[256], cmp[512];
    long long open0 = 0;

    snprintf(defaults, sizeof(defaults),
             "\"message_time_window\": \"300s\", \"transaction_ttl\": \"300s\", "
             "\"max_transactions_per_identity\": %d",
             CAP);
    for (int conf = 0; conf < 2; conf++) {
        struct env *e = env_slow_cmp(shared ? slot_cmp(cmp, sizeof(cmp), defaults) : defaults, "100ms", 0);
        struct client cl[CAP + 1], dummy[CAP + 1];
        OSSL_CMP_CTX *ctx[CAP + 1];
        long long counted;
        size_t open;
        int after, refused, calls;

        print_message("ended by %s\n", conf ? "a certConf" : "the client's error message");
        slow_revokes(e);
        if (shared)
            open0 = redis_open_count(); /* 0, or what a failed run left, until it expires */
        for (int i = 0; i <= CAP; i++) {
            cl[i] = (struct client){.env = e};
            dummy[i] = (struct client){.env = e};
            ctx[i] = client_new(&cl[i], SIG, client_cert, client_key, NULL, NULL, 0);
            cl[i].other = client_new(&dummy[i], SIG, client_cert, client_key, NULL, NULL, 0);
        }
        for (int i = 0; i < CAP; i++) {
            assert_int_equal(poll_step(ctx[i], &after), -1); /* ir -> waiting: its call runs */
            cl[i].tamper = conf ? tamper_poll_certconf : tamper_poll_error;
            (void)poll_step(ctx[i], &after); /* its next pollReq goes as that message */
        }
        open = gw_cmp_engine_open_transactions(e->engine);
        counted = shared ? redis_open_count() - open0 : CAP;
        refused = poll_step(ctx[CAP], &after);
        pthread_mutex_lock(&slow.lock);
        calls = slow.calls;
        pthread_mutex_unlock(&slow.lock);
        slow_gate(1); /* before any assertion: calls left running would fail the tests after this one */
        slow_wait_completed(e, calls);
        assert_int_equal(open, 0);
        assert_int_equal(counted, CAP);
        assert_int_equal(refused, 0);
        assert_status(ctx[CAP], OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      "too many open transactions for ");
        assert_int_equal(calls, CAP);           /* the refused ir asked no CA */
        assert_int_equal(revoke_calls(e), CAP); /* what they returned after the close is withdrawn */
        if (shared)
            assert_int_equal(redis_open_count(), open0);
        OSSL_CMP_CTX_reinit(ctx[CAP]);
        assert_int_equal(poll_step(ctx[CAP], &after), 1); /* the slots went with the calls */
        for (int i = 0; i <= CAP; i++) {
            client_cleanup(&cl[i]);
            client_cleanup(&dummy[i]);
            OSSL_CMP_CTX_free(ctx[i]);
        }
        env_free(e);
    }
}

static void test_poll_closed_keeps_slot(void **state)
{
    (void)state;
    closed_keeps_slot(false);
}

static void test_shared_closed_keeps_slot(void **state)
{
    (void)state;
    if (redis_start() != 0)
        skip();
    closed_keeps_slot(true);
}

/*
 * A deferred request its client ended keeps its slot while its call runs (closed_keeps_slot). When the stop's
 * drain gives up on that call, the engine goes without it, but the cluster does not: the slot's reservation
 * there ends with the engine, as the open transactions' do at the stop. Else the client's share of the cap
 * and the transactionID stayed taken on every instance until they expired, after a restart too.
 */
static void test_shared_held_slot_at_stop(void **state)
{
    char defaults[] = "\"message_time_window\": \"300s\", \"transaction_ttl\": \"300s\"", cmp[512];
    struct env *e;
    struct client cl, dummy;
    OSSL_CMP_CTX *ctx;
    long long open0, held, left;
    bool freed;
    int after, completed;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = env_slow_cmp(slot_cmp(cmp, sizeof(cmp), defaults), "100ms", 0);
    slow_revokes(e);
    open0 = redis_open_count(); /* 0, or what a failed run left, until it expires */
    cl = (struct client){.env = e};
    dummy = (struct client){.env = e};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting: its call runs */
    cl.tamper = tamper_poll_error;
    (void)poll_step(ctx, &after); /* the transaction ends, its slot held by the call */
    held = redis_open_count() - open0;
    gw_cmp_engine_close_all(e->engine);
    freed = gw_cmp_engine_free_until(e->engine, gw_now_ms() + 200); /* the call outlives the drain */
    e->engine = NULL;
    left = redis_open_count() - open0;
    slow_gate(1); /* before any assertion: a call left running would fail the tests after this one */
    pthread_mutex_lock(&slow.lock);
    for (int i = 0; i < CALL_WAIT_S * 100 && slow.completed < 1; i++) {
        pthread_mutex_unlock(&slow.lock);
        usleep(10000);
        pthread_mutex_lock(&slow.lock);
    }
    completed = slow.completed;
    pthread_mutex_unlock(&slow.lock);
    assert_int_equal(completed, 1);
    assert_true(freed);
    assert_int_equal(held, 1);
    assert_int_equal(left, 0);
    client_cleanup(&cl);
    client_cleanup(&dummy);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

static void *expire_copy(void *arg)
{
    gw_cmp_engine_expire(arg, time(NULL) + 300 + 12); /* the transaction's copy, past its TTL and call */
    return NULL;
}

/* drop_hook: the instance's copy of the transaction expires now, on the main thread's stead. */
static void copy_expires(void)
{
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, expire_copy, slow.engine), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

/*
 * A shared deferred request whose result is on its way to Redis when the instance's copy of the transaction
 * expires, and whose put then never goes out: no other instance can have the certificate, and the copy that
 * would have tried again is gone. It is on record as not delivered and withdrawn, as one whose every put
 * Redis refused before the copy expired. Once, it was neither: issued, then forgotten.
 */
static void test_shared_put_unsent_after_expiry(void **state)
{
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char serial[64] = "", *logged;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = env_shared("100ms");
    slow_revokes(e);
    ctx = shared_waiting(e, &cl, NULL); /* the record shared, the call running */
    log_capture_start();
    drop_hook.put_fn = copy_expires;
    slow_gate(1);
    slow_wait_completed(e, 1);
    logged = log_capture_end();
    assert_null(drop_hook.put_fn);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_non_null(strstr(logged, "\"event\":\"txn_expired_pending\""));
    assert_uncollected_withdrawn(e, serial, sizeof(serial),
                                 "no pollReq collected it before its transaction closed");
    free(logged);
    memset(&drop_hook, 0, sizeof(drop_hook));
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * A shared deferred request whose certificate Redis never took (every put refused before it went out: Redis
 * stopped) as the gateway stops: no record says it came, and no other instance can deliver it. Whether it
 * came before the stop or during the stop's wait for running calls, the stop says it is lost: on record as
 * not delivered, and valid, as a single gateway's at a stop. Once, it was left to the cluster unsaid.
 */
static void test_shared_unsent_result_at_stop(void **state)
{
    static const char *const when[] = {"before the stop", "during the stop's wait for the call"};

    (void)state;
    for (int i = 0; i < 2; i++) {
        struct env *e;
        struct client cl;
        OSSL_CMP_CTX *ctx;
        char serial[64] = "", *logged;
        const char *missed;

        if (redis_start() != 0)
            skip();
        print_message("its certificate came %s\n", when[i]);
        e = env_shared("100ms");
        slow_revokes(e);
        ctx = shared_waiting(e, &cl, NULL); /* the record shared, no result beside it */
        log_capture_start();
        if (i == 1)
            gw_cmp_engine_close_all(e->engine); /* the stop, its call running */
        hold_arm(); /* Redis down once the certificate passed its checks, which ask it */
        slow_gate(1);
        hold_wait();
        (void)redis_stop(NULL);
        missed = hold_release(); /* before any assertion: the completion holds detach_lock */
        assert_held(missed);
        slow_wait_completed(e, 1);
        if (i == 0)
            gw_cmp_engine_close_all(e->engine);
        logged = log_capture_end();
        assert_non_null(strstr(logged, "\"event\":\"result_not_shared\""));
        assert_non_null(strstr(logged, "\"event\":\"txn_abandoned_pending\""));
        assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
        assert_int_equal(audit_count(e, "expired_undelivered", serial, "status",
                                     "the gateway stopped before a pollReq collected it"),
                         1);
        assert_int_equal(revoke_calls(e), 0);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        free(logged);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * The expiry claim of a shared deferred request whose certificate lies beside its record, uncollected, its
 * answer lost once Redis ran it (the record taken out of Redis), and in a second case its retry's too: the
 * claim is asked again under its id, at once and then on a later tick, and Redis answers what it took. The
 * expiry is recorded and the certificate withdrawn, once. Once, the record went with the lost answer: the
 * expiry was never recorded, the certificate never withdrawn.
 */
static void test_shared_claim_answer_lost(void **state)
{
    (void)state;
    for (int n = 1; n <= 2; n++) {
        struct env *e;
        struct client cl;
        OSSL_CMP_CTX *ctx;
        char out[256], serial[64] = "";

        if (redis_start() != 0)
            skip();
        print_message("answers lost: %d\n", n);
        e = shared_result_waiting(&cl, &ctx);
        gw_cmp_engine_expire(e->engine, time(NULL)); /* a claim of nothing: Redis has the script since */
        drop_hook.thread = pthread_self();
        drop_hook.lose_claims = n;
        expire_record(e, &cl, out, sizeof(out));
        assert_string_equal(out, ":0");
        /* the next ticks: the claim waits until readiness saw Redis again (GW_STATE_PING_SECS) */
        for (int i = 0; i < 50 && audit_count(e, "expired_undelivered", NULL, NULL, NULL) == 0; i++) {
            usleep(100 * 1000);
            gw_cmp_engine_expire(e->engine, time(NULL));
        }
        assert_int_equal(drop_hook.lose_claims, 0);
        for (int i = 0; i < 3; i++) /* nothing claimed twice */
            gw_cmp_engine_expire(e->engine, time(NULL));
        assert_uncollected_withdrawn(e, serial, sizeof(serial),
                                     "no pollReq collected it before its transaction closed");
        memset(&drop_hook, 0, sizeof(drop_hook));
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
        (void)redis_stop(NULL); /* the next case starts a Redis of its own */
    }
}

/*
 * An instance of the test's Redis (started), records on, its keys under a prefix of the test process's;
 * |rec| (64 bytes) the key of the record of transactionID "0123" there. Skips the test without hiredis.
 */
static struct gw_cluster *unit_cluster(char *rec)
{
    static unsigned char mac[] = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5";
    char prefix[32], err[GW_ERR_LEN] = "";
    struct gw_state_conf conf = {.backend = GW_STATE_REDIS,
                                 .address = "127.0.0.1",
                                 .port = (uint16_t)redis_port,
                                 .key_prefix = prefix,
                                 .timeout_ms = 1000,
                                 .mac_key = mac,
                                 .mac_key_len = sizeof(mac) - 1};
    struct gw_cluster *cl;

    snprintf(prefix, sizeof(prefix), "unit%d:", (int)getpid());
    snprintf(rec, 64, "%srec:30313233", prefix);
    if ((cl = gw_cluster_new(&conf, err)) == NULL && strstr(err, "without hiredis") != NULL)
        skip();
    assert_non_null(cl);
    return cl;
}

/* The test's Redis started and an instance of it (unit_cluster); skips the test without a redis-server. */
static struct gw_cluster *redis_cluster(char *rec)
{
    if (redis_start() != 0)
        skip();
    return unit_cluster(rec);
}

/*
 * The test's Redis a replica of a primary that is not there (|readonly|: it refuses each write with
 * READONLY), or a primary again.
 */
static void redis_readonly(bool readonly)
{
    char out[64];

    if (readonly)
        assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"REPLICAOF", "127.0.0.1", "1"}),
                         0);
    else
        assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"REPLICAOF", "NO", "ONE"}), 0);
}

/*
 * An end whose answers were lost is read back while Redis answers but refuses writes (a replica after a
 * failover: READONLY), readiness down: the read-back only reads. Before, it was skipped as for a Redis
 * that does not answer, until the 30 s Redis keeps what the end took had passed, and the certificate the
 * call put beside the record was then neither delivered nor withdrawn.
 */
static void test_shared_reread_while_refusing(void **state)
{
    struct env *e;
    bool down, up;
    int ends;
    char *logged;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = end_unread();
    redis_readonly(true);
    down = state_is(e, false);
    log_capture_start();
    drop_hook.thread = pthread_self();
    drop_hook.ends = 0;
    gw_cmp_engine_expire(e->engine, time(NULL));
    ends = drop_hook.ends;
    logged = log_capture_end();
    memset(&drop_hook, 0, sizeof(drop_hook));
    redis_readonly(false);
    up = state_is(e, true);
    assert_true(down);
    assert_true(ends > 0);
    assert_true(up);
    assert_null(strstr(logged, "\"event\":\"txn_end_unread\""));
    free(logged);
    env_free(e);
}

/*
 * A certificate that names no CA key, revoked where the other CA's certificate of its issuer and serial
 * left the entry by issuer and serial marked ("keyed"): that entry is its own now, "1", the member of the
 * counted set, as an earlier version's is, and refuses every certificate of that issuer and serial (it
 * cannot say which CA's it was), as the set in memory does. Its TTL, the longer one, stays. Before, the
 * marked value stayed, uncounted, and a certificate of the other CA's key was let through by it.
 */
static void test_shared_keyless_revocation_unmarks(void **state)
{
    static const char k1[] = "11111111111111111111111111111111", k2[] = "22222222222222222222222222222222",
                      plain[] = "33333333333333333333333333333333";
    char rec[64], key[160], set[96], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    snprintf(set, sizeof(set), "%.*srevoked", (int)(strstr(rec, "rec:") - rec), rec);
    snprintf(key, sizeof(key), "%s:%s", set, plain);
    assert_int_equal(gw_cluster_put_revoked(cl, k1, plain, time(NULL) + 6000, 100, err), 0);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"GET", key}), 0);
    assert_string_equal(out, "$5");
    assert_int_equal(gw_cluster_revoked(cl, k2, plain, err), 0);
    assert_int_equal(gw_cluster_put_revoked(cl, plain, plain, time(NULL) + 600, 100, err), 0);
    assert_int_equal(gw_cluster_revoked(cl, k2, plain, err), 1);
    assert_int_equal(gw_cluster_revoked(cl, plain, plain, err), 1);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"GET", key}), 0);
    assert_string_equal(out, "$1");
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"ZSCORE", set, key}), 0);
    assert_string_not_equal(out, "$-1");
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"TTL", key}), 0);
    assert_true(strtol(out + 1, NULL, 10) > 600);
    gw_cluster_free(cl);
}

/* The score of |member| in the test's Redis sorted set |set|, in whole seconds; -1 when it is no member. */
static long long redis_score(const char *set, const char *member)
{
    char out[64];

    assert_int_equal(redis_cmd(out, sizeof(out), 5,
                               (const char *const[]){
                                   "EVAL", "return tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or -1)",
                                   "1", set, member}),
                     0);
    assert_int_equal(out[0], ':');
    return strtoll(out + 1, NULL, 10);
}

/* Every score of the test's Redis sorted set |set| |secs| earlier: as if that much time passed for its
 * count (the keys it counts keep their TTLs). */
static void set_scores_back(const char *set, long secs)
{
    char n[24], out[64];

    snprintf(n, sizeof(n), "%ld", -secs);
    assert_int_equal(
        redis_cmd(out, sizeof(out), 5,
                  (const char *const[]){"EVAL",
                                        "for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do "
                                        "redis.call('ZINCRBY', KEYS[1], ARGV[1], m) end return 0",
                                        "1", set, n}),
        0);
    assert_string_equal(out, ":0");
}

/*
 * A revoked: entry a later revocation of its certificate keeps longer (another CA's certificate of its
 * issuer and serial, a keyed entry taken as the keyless one's) is counted as long: its member's score in
 * the counted set is its expiry, and the set lives as long. Before, the score stayed the first TTL's: a
 * revocation after it dropped the member while the entry lived, and cmp.max_revoked counted low.
 */
static void test_shared_revoked_counted_while_kept(void **state)
{
    static const char k1[] = "44444444444444444444444444444444", p1[] = "55555555555555555555555555555555",
                      k2[] = "66666666666666666666666666666666", p2[] = "77777777777777777777777777777777",
                      k3[] = "88888888888888888888888888888888", p3[] = "99999999999999999999999999999999";
    char rec[64], set[96], key1[160], key2[160], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;
    time_t now = time(NULL);

    (void)state;
    cl = redis_cluster(rec);
    snprintf(set, sizeof(set), "%.*srevoked", (int)(strstr(rec, "rec:") - rec), rec);
    snprintf(key1, sizeof(key1), "%s:%s", set, k1);
    snprintf(key2, sizeof(key2), "%s:%s", set, p2);
    /* a keyed entry there already, kept longer */
    assert_int_equal(gw_cluster_put_revoked(cl, k1, p1, time(NULL) + 60, 100, err), 0);
    assert_true(redis_score(set, key1) >=
                (long long)now + 60 + GW_STATE_GRACE); /* Redis's clock, read since */
    assert_true(redis_score(set, key1) <= (long long)time(NULL) + 60 + GW_STATE_GRACE);
    assert_int_equal(gw_cluster_put_revoked(cl, k1, p1, time(NULL) + 6000, 100, err), 0);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"TTL", key1}), 0);
    assert_true(strtol(out + 1, NULL, 10) > 5000);
    assert_true(redis_score(set, key1) >= (long long)now + 5999 + GW_STATE_GRACE);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"TTL", set}), 0);
    assert_true(strtol(out + 1, NULL, 10) > 5000);
    /* a marked entry taken as a keyless certificate's, its longer TTL kept */
    assert_int_equal(gw_cluster_put_revoked(cl, k2, p2, time(NULL) + 6000, 100, err), 0);
    assert_int_equal(gw_cluster_put_revoked(cl, p2, p2, time(NULL) + 600, 100, err), 0);
    assert_true(redis_score(set, key2) >= (long long)now + 5999 + GW_STATE_GRACE);
    /* a revocation past the first TTLs (the set's scores moved back as much) leaves both counted */
    set_scores_back(set, 700);
    assert_int_equal(gw_cluster_put_revoked(cl, k3, p3, time(NULL) + 60, 100, err), 0);
    assert_true(redis_score(set, key1) > 0);
    assert_true(redis_score(set, key2) > 0);
    gw_cluster_free(cl);
}

/* Redis's clock in whole seconds, as a script's redis.call('TIME')[1] reads it. */
static long long redis_now(void)
{
    char out[64];

    assert_int_equal(redis_cmd(out, sizeof(out), 3,
                               (const char *const[]){"EVAL", "return tonumber(redis.call('TIME')[1])", "0"}),
                     0);
    assert_int_equal(out[0], ':');
    return strtoll(out + 1, NULL, 10);
}

/* Waits until Redis's clock reads |secs| or later (up to 10 s past the wait's start). */
static void redis_wait_until(long long secs)
{
    for (int i = 0; i < 200 && redis_now() < secs; i++)
        usleep(50 * 1000);
    assert_true(redis_now() >= secs);
}

/* The count of the test's Redis sorted set |set| (ZCARD). */
static long long redis_card(const char *set)
{
    char out[64];

    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"ZCARD", set}), 0);
    assert_int_equal(out[0], ':');
    return strtoll(out + 1, NULL, 10);
}

/*
 * A revoked: entry there already whose member of the counted set has gone is counted again only under
 * cmp.max_revoked, as a new entry is: with the set full, 3 (GW_ERR_LIMIT), nothing written, the entry still
 * found. Twin: an entry whose member is there counts nothing new, and is taken with the set full. Before,
 * the entry's member was added back past the cap.
 */
static void test_shared_revoked_readded_under_cap(void **state)
{
    static const char k1[] = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", p1[] = "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1",
                      k2[] = "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2", p2[] = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
                      k3[] = "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3", p3[] = "b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3";
    char rec[64], set[96], key1[160], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    snprintf(set, sizeof(set), "%.*srevoked", (int)(strstr(rec, "rec:") - rec), rec);
    snprintf(key1, sizeof(key1), "%s:%s", set, k1);
    assert_int_equal(gw_cluster_put_revoked(cl, k1, p1, time(NULL) + 600, 2, err), 0);
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"ZREM", set, key1}), 0);
    assert_int_equal(gw_cluster_put_revoked(cl, k2, p2, time(NULL) + 600, 2, err), 0);
    assert_int_equal(gw_cluster_put_revoked(cl, k3, p3, time(NULL) + 600, 2, err), 0);
    assert_int_equal(redis_card(set), 2);
    assert_int_equal(gw_cluster_put_revoked(cl, k1, p1, time(NULL) + 600, 2, err), GW_ERR_LIMIT);
    assert_non_null(strstr(err, "cmp.max_revoked"));
    assert_int_equal(redis_card(set), 2);
    assert_int_equal(redis_score(set, key1), -1);
    assert_int_equal(gw_cluster_revoked(cl, k1, p1, err), 1);
    assert_int_equal(gw_cluster_put_revoked(cl, k2, p2, time(NULL) + 6000, 2, err), 0);
    assert_int_equal(redis_card(set), 2);
    gw_cluster_free(cl);
}

/*
 * The shared revoked set (cmp.max_revoked) counts on Redis's clock alone, which scores every entry and
 * sweeps the set: another instance's live entry stays counted (the cap of 1 refuses the next), and an
 * expired one is not (an entry whose certificate's expiry and GW_STATE_GRACE are 2 s ahead of Redis's clock
 * is scored then; once Redis's clock reads it, the next is taken under a cap of 2, scored by Redis's clock).
 * Before, the set was scored and swept on the calling instance's clock (an argument): an instance an hour
 * ahead swept the live entry and took the next over the cap, one an hour behind counted the expired entry and
 * refused the next (GW_ERR_LIMIT: that revocation not shared). The instance passes no clock now.
 */
static void test_shared_revoked_on_redis_clock(void **state)
{
    static const char k1[] = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1", p1[] = "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1",
                      k2[] = "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2", p2[] = "d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2",
                      k3[] = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3", p3[] = "d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3",
                      k4[] = "c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4", p4[] = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";
    char rec[64], set[96], key3[160], key4[160], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;
    time_t before;
    long long ends;

    (void)state;
    cl = redis_cluster(rec);
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    snprintf(set, sizeof(set), "%.*srevoked", (int)(strstr(rec, "rec:") - rec), rec);
    snprintf(key3, sizeof(key3), "%s:%s", set, k3);
    snprintf(key4, sizeof(key4), "%s:%s", set, k4);
    assert_int_equal(gw_cluster_put_revoked(cl, k1, p1, time(NULL) + 600, 1, err), 0);
    assert_int_equal(gw_cluster_put_revoked(cl, k2, p2, time(NULL) + 600, 1, err), GW_ERR_LIMIT);
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    assert_int_equal(gw_cluster_put_revoked(cl, k1, p1, time(NULL) + 600, 2, err), 0); /* keeps the set */
    /* the short entry's end counted from Redis's clock, which the script judges it by: from time(), a second
       ahead of that clock's, the put could find it ended already (time() lags the clock Redis reads by up
       to a tick, and a second may turn before the script runs). Ahead by 2, it is still open however Redis's
       clock turns once before the put */
    ends = redis_now() + 2;
    assert_int_equal(gw_cluster_put_revoked(cl, k3, p3, (time_t)ends - GW_STATE_GRACE, 2, err), 0);
    assert_int_equal(redis_score(set, key3), ends);
    redis_wait_until(ends);
    before = time(NULL);
    assert_int_equal(gw_cluster_put_revoked(cl, k4, p4, time(NULL) + 600, 2, err), 0);
    assert_int_equal(redis_score(set, key3), -1);
    assert_true(redis_score(set, key4) >= (long long)before + 600 + GW_STATE_GRACE);
    assert_true(redis_score(set, key4) <= (long long)time(NULL) + 600 + GW_STATE_GRACE);
    gw_cluster_free(cl);
}

/*
 * A TTL of 0 or less, which Redis refuses in SET ... EX (the whole script failing), is taken as 1 s by the
 * scripts that write one: a replay entry and a reservation are written, and live 1 s. Before, each failed as
 * the shared state being unavailable. A revocation whose expiry and GW_STATE_GRACE are reached on Redis's
 * clock is not written (1); one a second or two short of it lives that long.
 */
static void test_shared_ttl_at_least_one_second(void **state)
{
    static const unsigned char tid[] = "ttl0", nonce[] = "n";
    char rec[64], key[160], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, NULL, "ttl", 0, 10, err), 0);
    assert_int_equal(gw_cluster_reserve(cl, tid, 4, "ttl", -GW_STATE_GRACE - 5, 10, err), 0);
    snprintf(key, sizeof(key), "%.*srevoked:c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0",
             (int)(strstr(rec, "rec:") - rec), rec);
    assert_int_equal(gw_cluster_put_revoked(cl, "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0",
                                            "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0", time(NULL) - GW_STATE_GRACE,
                                            10, err),
                     1);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    assert_string_equal(out, ":0");
    assert_int_equal(gw_cluster_put_revoked(cl, "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0",
                                            "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0",
                                            time(NULL) + 2 - GW_STATE_GRACE, 10, err),
                     0);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"PTTL", key}), 0);
    /* there, for 2 s at most (read within it): never -1 (no TTL), nor -2 (not written) */
    assert_true(out[0] == ':' && strtol(out + 1, NULL, 10) > 0 && strtol(out + 1, NULL, 10) <= 2000);
    gw_cluster_free(cl);
}

/*
 * The replay entry's messageTime window holds on Redis's clock, the one its TTL runs on: a messageTime 100 s
 * behind or ahead of it, inside the window on an instance's clock as skewed, is refused (GW_ERR_TIME, the
 * offset on Redis's clock) and nothing is written; one inside it, or none, is recorded as before.
 */
static void test_shared_seen_window_on_redis_clock(void **state)
{
    static const unsigned char tid[] = "mtim", nonce[] = "n";
    struct gw_cluster_msg_time mt = {.behind = 10, .ahead = 10};
    char rec[64], key[160], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;
    time_t now;

    (void)state;
    cl = redis_cluster(rec);
    snprintf(key, sizeof(key), "%.*sreplay:6d74696d", (int)(strstr(rec, "rec:") - rec), rec);
    for (int sign = -1; sign <= 1; sign += 2) {
        now = time(NULL);
        mt.at = now + sign * 100;
        mt.off = 0;
        assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, &mt, "mt", 60, 10, err), GW_ERR_TIME);
        assert_true(mt.off * sign >= 98 && mt.off * sign <= 101);
        assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
        assert_string_equal(out, ":0");
    }
    mt.at = time(NULL) - 5;
    assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, &mt, "mt", 60, 10, err), 0);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    assert_string_equal(out, ":1");
    assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, &mt, "mt", 60, 10, err), GW_ERR_REPLAY);
    assert_int_equal(gw_cluster_seen(cl, (const unsigned char *)"none", 4, nonce, 1, NULL, "mt", 60, 10, err),
                     0);
    gw_cluster_free(cl);
}

/*
 * The window on Redis's clock lags further by the seconds the instance's checks took since it read its own
 * clock (mt.elapsed: the revocation lookups at the CA may take seconds): a messageTime behind Redis's clock
 * by the window and those seconds, less one, is recorded; one more than that behind is refused, nothing
 * written. The lead stays the window's: the time the checks took makes a messageTime no younger.
 */
static void test_shared_seen_window_lags_by_elapsed(void **state)
{
    static const unsigned char tid[] = "lagd", nonce[] = "n";
    struct gw_cluster_msg_time mt = {.behind = 10, .ahead = 10, .elapsed = 20};
    char rec[64], key[160], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    snprintf(key, sizeof(key), "%.*sreplay:6c616764", (int)(strstr(rec, "rec:") - rec), rec);
    mt.at = time(NULL) - (10 + 20 + 1);
    assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, &mt, "lag", 60, 10, err), GW_ERR_TIME);
    assert_true(mt.off <= -31 && mt.off >= -32);
    mt.at = time(NULL) + 10 + 2;
    assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, &mt, "lag", 60, 10, err), GW_ERR_TIME);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    assert_string_equal(out, ":0");
    mt.at = time(NULL) - (10 + 20 - 1);
    assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, &mt, "lag", 60, 10, err), 0);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    assert_string_equal(out, ":1");
    gw_cluster_free(cl);
}

/* How many lines of |event| |logged| has. */
static int logged_events(const char *logged, const char *event)
{
    char ev[96];
    int n = 0;

    snprintf(ev, sizeof(ev), "\"event\":\"%s\"", event);
    for (const char *p = logged; (p = strstr(p, ev)) != NULL; p++)
        n++;
    return n;
}

/* Waits up to 5 s for the pinger to find the test's Redis taking writes: gw_cluster_status's 0, or not. */
static int cluster_ready(struct gw_cluster *cl)
{
    char why[GW_ERR_LEN];
    int rc = GW_ERR_UNAVAILABLE;

    for (int i = 0; i < 50 && (rc = gw_cluster_status(cl, why, sizeof(why))) != 0; i++)
        usleep(100 * 1000);
    return rc;
}

/* Waits up to 5 s for the reason |cl| gives for its outage to hold |text|: whether it did. */
static bool down_for(struct gw_cluster *cl, const char *text)
{
    char why[GW_ERR_LEN] = "";

    for (int i = 0; i < 50; i++) {
        if (gw_cluster_status(cl, why, sizeof(why)) != 0 && strstr(why, text) != NULL)
            return true;
        usleep(100 * 1000);
    }
    return false;
}

/*
 * A reservation's release, on the main thread among others, goes to a Redis that refuses writes (a replica:
 * it answers, and takes a delete), but not to one that went silent since: the pinger's PING, unanswered,
 * ends the refusal, and the release then sends nothing. Its twin: while Redis refuses, it is sent.
 */
static void test_shared_release_refusing_then_silent(void **state)
{
    static const unsigned char tid[] = "silent";
    char rec[64];
    struct gw_cluster *cl;
    bool refusing, silent;
    int sent_refusing, sent_silent;

    (void)state;
    cl = redis_cluster(rec);
    assert_int_equal(cluster_ready(cl), 0);
    redis_readonly(true);
    refusing = down_for(cl, "refused a command");
    drop_hook.thread = pthread_self();
    drop_hook.sent = 0;
    gw_cluster_release(cl, tid, sizeof(tid) - 1, "silent");
    sent_refusing = drop_hook.sent;
    kill(redis_pid, SIGSTOP);
    silent = down_for(cl, "is unreachable");
    drop_hook.sent = 0;
    gw_cluster_release(cl, tid, sizeof(tid) - 1, "silent");
    sent_silent = drop_hook.sent;
    kill(redis_pid, SIGCONT);
    redis_readonly(false);
    gw_cluster_free(cl);
    assert_true(refusing);
    assert_true(sent_refusing >= 1); /* an EVALSHA, and an EVAL where Redis had not the script */
    assert_true(silent);
    assert_int_equal(sent_silent, 0);
}

/* An outage of the test's Redis that refuses writes (redis_readonly), the log captured at GW_LOG_INFO. */
static void readonly_outage_begin(void)
{
    log_capture_start();
    log_level(GW_LOG_INFO);
    redis_readonly(true);
}

/* Its end: Redis a primary again, |cl| ready on it; what the log said meanwhile (to free). */
static char *readonly_outage_end(struct gw_cluster *cl)
{
    redis_readonly(false);
    assert_int_equal(cluster_ready(cl), 0);
    return log_capture_end();
}

/*
 * A Redis that answers lookups and refuses writes (a replica after a failover: READONLY) keeps the outage
 * of shared_state_unavailable open, and readiness not ready: a request's lookup that goes through ends
 * nothing, and the line of the write after it is held. The ping that goes through again ends it, counting
 * that line. Before, each lookup ended the outage (shared_state_recovered) and set readiness ready, and
 * the write after it began another: two lines a request.
 */
static void test_shared_lookup_ends_no_outage(void **state)
{
    static const unsigned char tid[] = "ro01", nonce[] = "n";
    static const char id[] = "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0", plain[] = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";
    char rec[64], held[GW_LOG_HELD_LEN], why[GW_ERR_LEN], err[GW_ERR_LEN] = "", *logged;
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    readonly_outage_begin();
    for (int i = 0; i < 2; i++) { /* a request's lookup, then its write */
        assert_int_equal(gw_cluster_revoked(cl, id, plain, err), 0);
        if (i > 0) /* not ready for that lookup: the write before it failed */
            assert_int_equal(gw_cluster_status(cl, why, sizeof(why)), GW_ERR_UNAVAILABLE);
        assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, NULL, "ro", 60, 10, err), GW_ERR_UNAVAILABLE);
        assert_non_null(strstr(err, "READONLY"));
        assert_int_equal(gw_cluster_unavailable_due(cl, held), i == 0);
    }
    logged = readonly_outage_end(cl);
    assert_int_equal(logged_events(logged, "shared_state_recovered"), 1);
    assert_non_null(strstr(logged, "\"suppressed\":\"1\""));
    free(logged);
    gw_cluster_free(cl);
}

/* The transactions counted open in the shares of the test's Redis under unit_cluster's prefix. */
static long long unit_open_count(void)
{
    static const char sum[] =
        "local n = 0\n"
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do n = n + redis.call('ZCARD', k) end\n"
        "return n\n";
    char pattern[64], out[64];

    snprintf(pattern, sizeof(pattern), "unit%d:open:*", (int)getpid());
    assert_int_equal(redis_cmd(out, sizeof(out), 4, (const char *const[]){"EVAL", sum, "0", pattern}), 0);
    assert_int_equal(out[0], ':');
    return strtoll(out + 1, NULL, 10);
}

/*
 * The test's Redis at its maxmemory (1 MB, noeviction, filled past it: |fill| 1) refuses every write that
 * takes memory (OOM), or (0) takes them again, the filling gone.
 */
static void redis_full(int fill)
{
    static const char lua[] =
        "for i = 1, 64 do\n"
        "  if ARGV[1] == '1' then redis.call('SET', KEYS[1] .. i, string.rep('x', 65536))\n"
        "  else redis.call('DEL', KEYS[1] .. i) end\n"
        "end\n"
        "return 0\n";
    char prefix[64], out[128];

    snprintf(prefix, sizeof(prefix), "unit%d:fill:", (int)getpid());
    if (!fill) { /* the limit first: the DELs of a full Redis go through all the same */
        assert_int_equal(
            redis_cmd(out, sizeof(out), 4, (const char *const[]){"CONFIG", "SET", "maxmemory", "0"}), 0);
        assert_string_equal(out, "+OK");
    }
    assert_int_equal(
        redis_cmd(out, sizeof(out), 5, (const char *const[]){"EVAL", lua, "1", prefix, fill ? "1" : "0"}), 0);
    assert_string_equal(out, ":0");
    if (fill) { /* 4 MB written: past the limit set after them */
        assert_int_equal(
            redis_cmd(out, sizeof(out), 4, (const char *const[]){"CONFIG", "SET", "maxmemory", "1mb"}), 0);
        assert_string_equal(out, "+OK");
    }
}

/*
 * A reservation taken just before Redis began refusing writes (its maxmemory reached: OOM) is released while
 * readiness is down for it: the release deletes and takes a member out, which Redis allows at its
 * maxmemory, so the transaction counts no more against cmp.max_transactions_per_identity once Redis takes
 * writes again. Before, a release was skipped while readiness was down, and the reservation counted until
 * its TTL: the next transaction under a cap of 1 was refused. The twin: a reservation while Redis is full
 * is refused, counted nowhere.
 */
static void test_shared_release_at_maxmemory(void **state)
{
    static const unsigned char tid[] = "mm01", tid2[] = "mm02";
    char rec[64], out[64], why[GW_ERR_LEN], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;

    (void)state;
    if (redis_start() != 0)
        skip();
    /* the test Redis keeps its keys (append-only): a failed run's reservations and filling, out */
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    cl = unit_cluster(rec);
    assert_int_equal(gw_cluster_reserve(cl, tid, 4, "full", 300, 1, err), 0);
    assert_int_equal(unit_open_count(), 1);
    redis_full(1);
    for (int i = 0; i < 50 && gw_cluster_status(cl, why, sizeof(why)) == 0; i++) /* the next ping's SET */
        usleep(100 * 1000);
    assert_non_null(strstr(why, "OOM"));
    gw_cluster_release(cl, tid, 4, "full");
    assert_int_equal(unit_open_count(), 0);
    redis_full(0);
    assert_int_equal(cluster_ready(cl), 0);
    assert_int_equal(gw_cluster_reserve(cl, tid2, 4, "full", 300, 1, err), 0);
    gw_cluster_release(cl, tid2, 4, "full");
    assert_int_equal(unit_open_count(), 0);
    gw_cluster_free(cl);
}

/*
 * A Redis at its maxmemory under noeviction refuses a script's first write that takes memory (OOM; a script
 * that wrote already runs to its end, past the limit). Neither way reads as a key not there: a record's
 * write refused so fails closed (GW_ERR_UNAVAILABLE, the request refused systemUnavail) and takes readiness
 * down; the replay check's key, where Redis takes it, is there, and the replay is refused while Redis is
 * full. The twin: the record written once Redis takes writes again.
 */
static void test_shared_oom_fails_closed(void **state)
{
    static const unsigned char tid[] = "oo01", nonce[] = "n1";
    struct gw_txn_record r = {.req = (unsigned char *)"req", .req_len = 3};
    char rec[64], out[64], why[GW_ERR_LEN] = "", err[GW_ERR_LEN] = "", err2[GW_ERR_LEN] = "";
    struct gw_cluster *cl;
    int seen, again = 0, put;

    (void)state;
    if (redis_start() != 0)
        skip();
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    cl = unit_cluster(rec);
    snprintf(r.role, sizeof(r.role), "default");
    redis_full(1);
    put = gw_cluster_put_record(cl, tid, 4, "oom", &r, 300, err2);
    (void)gw_cluster_status(cl, why, sizeof(why));
    if ((seen = gw_cluster_seen(cl, tid, 4, nonce, 2, NULL, "oom", 300, 100, err)) == 0)
        again = gw_cluster_seen(cl, tid, 4, nonce, 2, NULL, "oom", 300, 100, err);
    redis_full(0);
    assert_int_equal(put, GW_ERR_UNAVAILABLE);
    assert_non_null(strstr(err2, "OOM"));
    assert_non_null(strstr(why, "OOM"));
    assert_true(seen == GW_ERR_UNAVAILABLE || (seen == 0 && again == GW_ERR_REPLAY));
    assert_int_equal(cluster_ready(cl), 0);
    assert_int_equal(gw_cluster_put_record(cl, tid, 4, "oom", &r, 300, err2), 0);
    assert_int_equal(gw_cluster_end_record(cl, tid, 4, NULL, NULL), 1);
    gw_cluster_release(cl, tid, 4, "oom");
    gw_cluster_free(cl);
}

/* Whether the rendered metrics hold |line| ("name value") as a line of its own. */
static bool metric_line(const char *line)
{
    char *text = NULL, want[128];
    size_t len = 0;
    bool found;

    assert_int_equal(gw_metrics_render(&text, &len), 0);
    snprintf(want, sizeof(want), "\n%s\n", line);
    found = strstr(text, want) != NULL;
    free(text);
    return found;
}

/*
 * An instance started on a Redis that keeps its keys (noeviction) whose Redis comes back, restarted (or a
 * replica taking over) with a maxmemory and a policy that evicts keys with a TTL, as all of the gateway's
 * are: the connections made to it then read INFO memory, and the warning shared_state_evicting names the
 * policy, once however many threads connect (here the pinger's and this one's, and again after another
 * restart so set); cmpgw_shared_state_evicting says 1. The twins: noeviction with a maxmemory, and an
 * evicting policy without one (nothing to evict for), warn of nothing, and the gauge is 0.
 */
static void test_shared_evicting_redis_warned(void **state)
{
    static const struct {
        const char *maxmemory, *policy;
        bool warned;
    } cases[] = {{"64mb", "allkeys-lru", true},
                 {"64mb", "volatile-ttl", true},
                 {"64mb", "noeviction", false},
                 {"0", "allkeys-lru", false}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char rec[64], err[GW_ERR_LEN] = "", *logged;
        struct gw_cluster *cl;
        int rc = GW_ERR_UNAVAILABLE;

        print_message("maxmemory %s, maxmemory-policy %s\n", cases[i].maxmemory, cases[i].policy);
        cl = redis_cluster(rec);
        log_capture_start();
        for (int restart = 0; restart < 2; restart++) {
            (void)redis_stop(NULL);
            assert_int_equal(redis_spawn(cases[i].maxmemory, cases[i].policy), 0);
            for (int t = 0; t < 50 && (rc = gw_cluster_revoked(cl, "aa", "bb", err)) < 0; t++)
                usleep(100 * 1000);
            assert_int_equal(cluster_ready(cl), 0); /* the pinger connected again too */
        }
        logged = log_capture_end();
        assert_int_equal(rc, 0);
        assert_int_equal(logged_events(logged, "shared_state_evicting"), cases[i].warned);
        assert_int_equal(logged_events(logged, "shared_state_eviction_unchecked"), 0);
        if (cases[i].warned)
            assert_non_null(strstr(logged, cases[i].policy));
        assert_true(
            metric_line(cases[i].warned ? "cmpgw_shared_state_evicting 1" : "cmpgw_shared_state_evicting 0"));
        free(logged);
        gw_cluster_free(cl);
        (void)redis_stop(NULL);
    }
}

/*
 * The twin with an ACL that refuses INFO (no +info): the connections made from then on cannot tell whether
 * Redis evicts keys, which shared_state_eviction_unchecked says once (here the pinger's and this thread's,
 * both dropped by Redis); they serve all the same.
 */
static void test_shared_eviction_unchecked(void **state)
{
    char rec[64], out[64], err[GW_ERR_LEN] = "", *logged;
    struct gw_cluster *cl;
    int rc = GW_ERR_UNAVAILABLE;

    (void)state;
    cl = redis_cluster(rec);
    log_capture_start();
    assert_int_equal(
        redis_cmd(out, sizeof(out), 4, (const char *const[]){"ACL", "SETUSER", "default", "-info"}), 0);
    assert_string_equal(out, "+OK");
    assert_int_equal(
        redis_cmd(out, sizeof(out), 4, (const char *const[]){"CLIENT", "KILL", "TYPE", "normal"}), 0);
    assert_int_equal(out[0], ':'); /* the connections it dropped: this thread's, the pinger's if open then */
    for (int t = 0; t < 50 && (rc = gw_cluster_revoked(cl, "aa", "bb", err)) < 0; t++)
        usleep(100 * 1000);
    assert_int_equal(cluster_ready(cl), 0); /* the pinger connected again too */
    logged = log_capture_end();
    assert_int_equal(rc, 0);
    assert_int_equal(logged_events(logged, "shared_state_eviction_unchecked"), 1);
    assert_non_null(strstr(logged, "+info"));
    assert_int_equal(logged_events(logged, "shared_state_evicting"), 0);
    free(logged);
    gw_cluster_free(cl);
}

/* Whether the test's Redis holds the reservation (txn:) of transactionID |tid| under unit_cluster's prefix.
 */
static bool unit_reserved(const char *tid)
{
    char key[96], out[64];
    int n = snprintf(key, sizeof(key), "unit%d:txn:", (int)getpid());

    for (const char *p = tid; *p != '\0'; p++)
        n += snprintf(key + n, sizeof(key) - (size_t)n, "%02x", (unsigned char)*p);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    return strcmp(out, ":1") == 0;
}

/*
 * An instance whose reservation of a transactionID ran out (a transaction it holds outlived it, as a
 * deferred request's long call does) releases it once another instance reserved that transactionID for a
 * transaction of its own: the other's reservation stays, counted in its share. Its own release then ends it.
 * Before, the release deleted whatever reservation it found: a third transaction could open under the
 * transactionID while the second was open, and the second no longer counted against the cap.
 */
static void test_shared_release_leaves_anothers(void **state)
{
    static const unsigned char tid[] = "rl01";
    char rec[64], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl, *other;
    bool kept, ended;
    long long counted;

    (void)state;
    cl = redis_cluster(rec);
    other = unit_cluster(rec);
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    /* for 1 s: its transaction's TTL and the grace, 1 s in all */
    assert_int_equal(gw_cluster_reserve(cl, tid, 4, "rl", 1 - GW_STATE_GRACE, 10, err), 0);
    usleep(1500 * 1000);
    assert_false(unit_reserved("rl01"));
    assert_int_equal(gw_cluster_reserve(other, tid, 4, "rl", 300, 10, err), 0);
    gw_cluster_release(cl, tid, 4, "rl");
    kept = unit_reserved("rl01");
    counted = unit_open_count();
    gw_cluster_release(other, tid, 4, "rl");
    ended = !unit_reserved("rl01");
    assert_true(kept);
    assert_int_equal(counted, 1);
    assert_true(ended);
    assert_int_equal(unit_open_count(), 0);
    gw_cluster_free(other);
    gw_cluster_free(cl);
}

/*
 * The twin: a transaction reserved and recorded by one instance, continued and closed by another (its
 * record ended there), has its reservation released by that other instance: the transactionID is free, and
 * counted no more, as when the instance that reserved it closes it.
 */
static void test_shared_release_after_end_elsewhere(void **state)
{
    static const unsigned char tid[] = "rl02";
    struct gw_txn_record r = {.req = (unsigned char *)"req", .req_len = 3}, got;
    struct gw_txn_result left;
    char rec[64], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl, *other;

    (void)state;
    cl = redis_cluster(rec);
    other = unit_cluster(rec);
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    snprintf(r.role, sizeof(r.role), "default");
    assert_int_equal(gw_cluster_reserve(cl, tid, 4, "rl", 300, 10, err), 0);
    assert_int_equal(gw_cluster_put_record(cl, tid, 4, "rl", &r, 300, err), 0);
    /* as a copy rebuilt from the record ends it: naming the instance the record says reserved it */
    assert_int_equal(gw_cluster_read_record(other, tid, 4, &got, err), 0);
    assert_int_equal(gw_cluster_end_record(other, tid, 4, got.holder, &left), 1);
    gw_txn_record_cleanup(&got);
    gw_txn_result_cleanup(&left);
    gw_cluster_release(other, tid, 4, "rl");
    assert_false(unit_reserved("rl02"));
    assert_int_equal(unit_open_count(), 0);
    gw_cluster_free(other);
    gw_cluster_free(cl);
}

/*
 * An instance whose transaction outlived its record and reservation (a deferred request's call longer than
 * the transaction's TTL and grace) ends that record once another instance has reserved the transactionID
 * and recorded a transaction of its own under it. That record is not the ending instance's: neither the end
 * nor a drop touches it (0: its own record is gone), nor the other's reservation, and so neither does the
 * end of a copy a third instance rebuilt from the old record (naming the old holder). The new record's own
 * end, there or on the instance continuing it (naming its holder), removes it. Before, the end removed
 * whatever record it found, its result with it, and passed the other instance's reservation to the ending
 * one, whose release then ended it: the second transaction could not be continued anywhere, and a third
 * could open under the transactionID while it was open.
 */
static void test_shared_end_leaves_anothers_record(void **state)
{
    static const unsigned char tid[] = "dr01";
    struct gw_txn_record r = {.req = (unsigned char *)"req", .req_len = 3}, got;
    struct gw_txn_result left;
    char rec[64], out[64], key[64], err[GW_ERR_LEN] = "", old[GW_STATE_OWNER_LEN],
                                    now[GW_STATE_OWNER_LEN] = "";
    struct gw_cluster *cl, *other, *third;
    int ended, dropped, copy, found;
    bool reserved;

    (void)state;
    cl = redis_cluster(rec);
    other = unit_cluster(rec);
    third = unit_cluster(rec);
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    snprintf(r.role, sizeof(r.role), "default");
    assert_int_equal(gw_cluster_reserve(cl, tid, 4, "dr", 300, 10, err), 0);
    assert_int_equal(gw_cluster_put_record(cl, tid, 4, "dr", &r, 300, err), 0);
    /* a copy of it rebuilt on the third; then its record and reservation run out (in 1 s, here) */
    assert_int_equal(gw_cluster_read_record(third, tid, 4, &got, err), 0);
    snprintf(old, sizeof(old), "%s", got.holder);
    gw_txn_record_cleanup(&got);
    assert_int_equal(strlen(old), GW_STATE_OWNER_LEN - 1);
    snprintf(key, sizeof(key), "unit%d:rec:64723031", (int)getpid());
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"EXPIRE", key, "1"}), 0);
    snprintf(key, sizeof(key), "unit%d:txn:64723031", (int)getpid());
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"EXPIRE", key, "1"}), 0);
    usleep(1500 * 1000);
    assert_false(unit_reserved("dr01"));
    assert_int_equal(gw_cluster_reserve(other, tid, 4, "dr", 300, 10, err), 0);
    assert_int_equal(gw_cluster_put_record(other, tid, 4, "dr", &r, 300, err), 0);
    ended = gw_cluster_end_record(cl, tid, 4, NULL, &left);
    gw_txn_result_cleanup(&left);
    dropped = gw_cluster_drop_record(cl, tid, 4, NULL);
    copy = gw_cluster_end_record(third, tid, 4, old, &left);
    gw_txn_result_cleanup(&left);
    gw_cluster_release(cl, tid, 4, "dr");
    reserved = unit_reserved("dr01");
    if ((found = gw_cluster_read_record(third, tid, 4, &got, err)) == 0) {
        snprintf(now, sizeof(now), "%s", got.holder);
        gw_txn_record_cleanup(&got);
    }
    assert_int_equal(ended, 0);
    assert_int_equal(dropped, 0);
    assert_int_equal(copy, 0);
    assert_true(reserved);
    assert_int_equal(found, 0);
    assert_string_not_equal(now, old);
    assert_int_equal(unit_open_count(), 1);
    /* the twin: the third instance, continuing the other's transaction, ends it there */
    assert_int_equal(gw_cluster_end_record(third, tid, 4, now, &left), 1);
    gw_txn_result_cleanup(&left);
    gw_cluster_release(third, tid, 4, "dr");
    assert_false(unit_reserved("dr01"));
    assert_int_equal(unit_open_count(), 0);
    gw_cluster_free(third);
    gw_cluster_free(other);
    gw_cluster_free(cl);
}

/*
 * The record and reservation of transactionID |tid| (unit_cluster's
 * prefix) ran out, its member in its share past and swept, as the share's next count sweeps it.
 */
static void unit_ran_out(const char *tid)
{
    static const char lua[] =
        "redis.call('DEL', KEYS[1], KEYS[2])\n"
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('ZREM', k, KEYS[2]) end\n"
        "return 0\n";
    char rec[96], txn[96], pattern[64], out[64];
    int n = snprintf(rec, sizeof(rec), "unit%d:rec:", (int)getpid()),
        m = snprintf(txn, sizeof(txn), "unit%d:txn:", (int)getpid());

    for (const char *p = tid; *p != '\0'; p++) {
        n += snprintf(rec + n, sizeof(rec) - (size_t)n, "%02x", (unsigned char)*p);
        m += snprintf(txn + m, sizeof(txn) - (size_t)m, "%02x", (unsigned char)*p);
    }
    snprintf(pattern, sizeof(pattern), "unit%d:open:*", (int)getpid());
    assert_int_equal(
        redis_cmd(out, sizeof(out), 6, (const char *const[]){"EVAL", lua, "2", rec, txn, pattern}), 0);
    assert_string_equal(out, ":0");
}

/*
 * A shared transaction whose certConf never comes, expired on its instance: its record ends, and its
 * reservation with it, counted under max_transactions_per_identity no more. One of its own was kept while
 * the record lived, the transactionID taken until then, had the release come before the record's end.
 * The twin: this one's record and reservation ran out first (its expiry came late), and another instance
 * reserved the transactionID for a transaction of its own since: that one's reservation and record stay,
 * counted in its share; the expiry here finds its own record gone (txn_closed_elsewhere). Before, the end
 * here removed the other's record and took its reservation, which the release then ended.
 */
static void test_shared_expired_reservation_ends(void **state)
{
    static const char *const tids[] = {"expiry-own-00001", "expiry-held-0001"};

    (void)state;
    if (redis_start() != 0)
        skip();
    for (int i = 0; i < 2; i++) {
        char cmp[512], rec[64], err[GW_ERR_LEN] = "";
        struct env *e = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
        struct client cl = {.env = e, .tamper = drop_certconf};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        struct gw_txn_record r = {.req = (unsigned char *)"req", .req_len = 3}, got;
        const unsigned char *tid = (const unsigned char *)tids[i];
        struct gw_cluster *other = NULL;
        long long counted;
        bool reserved;
        int found = GW_ERR_NOT_FOUND;

        print_message("the reservation %s\n", i == 1 ? "another instance's since" : "this one's");
        use_tid(ctx, tids[i]);
        assert_null(OSSL_CMP_exec_IR_ses(ctx)); /* issued; its certConf never reaches the gateway */
        assert_int_equal(unit_open_count(), 1);
        if (i == 1) {
            unit_ran_out(tids[i]);
            other = unit_cluster(rec);
            snprintf(r.role, sizeof(r.role), "default");
            assert_int_equal(gw_cluster_reserve(other, tid, strlen(tids[i]), "another", 300, 10, err), 0);
            assert_int_equal(gw_cluster_put_record(other, tid, strlen(tids[i]), "another", &r, 300, err), 0);
        }
        gw_cmp_engine_expire(e->engine, time(NULL) + 301);
        counted = unit_open_count();
        reserved = unit_reserved(tids[i]);
        if (other != NULL && (found = gw_cluster_read_record(other, tid, strlen(tids[i]), &got, err)) == 0)
            gw_txn_record_cleanup(&got);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), i == 0);
        assert_int_equal(counted, i);
        assert_int_equal(reserved, i == 1);
        assert_int_equal(found, i == 1 ? 0 : GW_ERR_NOT_FOUND);
        if (other != NULL) {
            assert_int_equal(gw_cluster_end_record(other, tid, strlen(tids[i]), NULL, NULL), 1);
            gw_cluster_release(other, tid, strlen(tids[i]), "another");
            assert_int_equal(unit_open_count(), 0);
        }
        gw_cluster_free(other);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * A shared deferred request its client ends here while its call runs, the call returning as the record's end
 * goes out: the slot the call held ends after the record, and the transactionID is given back with it. Once,
 * the call could end the slot between its hold and the record's end: the release found the record still
 * there and kept the reservation, which the end then left in place, the transactionID taken until it expired.
 */
static void test_shared_closed_slot_ends_after_record(void **state)
{
    static const char tid[] = "closed-landing-01";
    struct env *e;
    struct client cl, dummy;
    OSSL_CMP_CTX *ctx;
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = env_shared("100ms");
    dummy = (struct client){.env = e};
    slow_revokes(e);
    ctx = shared_waiting(e, &cl, tid);
    cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
    cl.tamper = tamper_poll_error;
    landed = 0;
    drop_hook.thread = pthread_self();
    drop_hook.after_end = false;
    drop_hook.fn = call_lands;
    (void)poll_step(ctx, &after); /* its next pollReq goes as the error message */
    drop_hook.fn = NULL;
    if (!landed)
        fail_msg("the call did not land within CALL_WAIT_S");
    slow_wait_completed(e, 1);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(unit_open_count(), 0);
    assert_false(unit_reserved(tid));
    memset(&drop_hook, 0, sizeof(drop_hook));
    client_cleanup(&cl);
    client_cleanup(&dummy);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * The warnings of steps that fail in Redis while an outage lasts (here shared_state_unmark_failed: a
 * revocation's end, once a transaction's) are paced by that outage: the first goes out at once, even just
 * after the outage's shared_state_unavailable line, the others are counted in its end's `suppressed`.
 * Before, each failure wrote its own line (three here) and the end counted none of them.
 */
static void test_shared_failed_paced_by_outage(void **state)
{
    static const unsigned char tid[] = "wf01", nonce[] = "n";
    static const char id[] = "a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7", plain[] = "b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7b7";
    char rec[64], held[GW_LOG_HELD_LEN], err[GW_ERR_LEN] = "", *logged;
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    assert_int_equal(gw_cluster_mark_revoking(cl, id, plain, 60000, err), 0);
    readonly_outage_begin();
    assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, NULL, "wf", 60, 10, err), GW_ERR_UNAVAILABLE);
    assert_true(gw_cluster_unavailable_due(cl, held)); /* the outage's first line, as a request writes it */
    for (int i = 0; i < 3; i++) /* the mark stays this instance's: each end's DEL is refused */
        gw_cluster_unmark_revoking(cl, plain, false);
    logged = readonly_outage_end(cl);
    assert_int_equal(logged_events(logged, "shared_state_unmark_failed"), 1);
    assert_int_equal(logged_events(logged, "shared_state_recovered"), 1);
    assert_non_null(strstr(logged, "\"suppressed\":\"2\""));
    free(logged);
    gw_cluster_free(cl);
}

/* Whether |logged| has a line of |event| with the field |key| holding |value|. */
static bool logged_field(const char *logged, const char *event, const char *key, const char *value)
{
    char ev[96], pair[96];

    snprintf(ev, sizeof(ev), "\"event\":\"%s\"", event);
    snprintf(pair, sizeof(pair), "\"%s\":\"%s\"", key, value);
    for (const char *p = logged; (p = strstr(p, ev)) != NULL; p++) {
        const char *end = strchr(p, '\n'), *at = strstr(p, pair);

        if (at != NULL && (end == NULL || at < end))
            return true;
    }
    return false;
}

static void no_expired(void *arg, const unsigned char *tid, size_t tid_len, const struct gw_txn_record *rec)
{
    (void)arg, (void)tid, (void)tid_len, (void)rec;
    fail_msg("nothing to claim");
}

/*
 * Redis gone, the claim of expired records (every second) is most often the first step to fail: its
 * shared_state_claim_failed goes out, and the first shared_state_unavailable of a request after it goes
 * out at once too, the next one paced. Before, the warning took the outage's pace: the request's line
 * was held, and an outage shorter than GW_LOG_OUTAGE_SECS never wrote one.
 */
static void test_shared_unavailable_after_failed_step(void **state)
{
    static const unsigned char tid[] = "wf02", nonce[] = "n";
    char rec[64], held[GW_LOG_HELD_LEN], err[GW_ERR_LEN] = "", *logged;
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    log_capture_start();
    (void)redis_stop(NULL);
    assert_int_equal(gw_cluster_claim_expired(cl, time(NULL), no_expired, NULL), 0);
    assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, NULL, "wf", 60, 10, err), GW_ERR_UNAVAILABLE);
    assert_true(gw_cluster_unavailable_due(cl, held));
    assert_string_equal(held, "0");
    assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, NULL, "wf", 60, 10, err), GW_ERR_UNAVAILABLE);
    assert_false(gw_cluster_unavailable_due(cl, held));
    logged = log_capture_end();
    assert_int_equal(logged_events(logged, "shared_state_claim_failed"), 1);
    free(logged);
    gw_cluster_free(cl);
}

/*
 * The other order: a request's shared_state_unavailable first (one more held back), then a step's
 * warning, out at once with its own count (none), the request's line held back said by the end with the
 * warning held back after it. Before, the warning said the request's count as its own, and the end
 * counted the second warning alone.
 */
static void test_shared_failed_step_keeps_outage_count(void **state)
{
    static const unsigned char tid[] = "wf03", nonce[] = "n";
    static const char id[] = "a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8", plain[] = "b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8";
    char rec[64], held[GW_LOG_HELD_LEN], err[GW_ERR_LEN] = "", *logged;
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    assert_int_equal(gw_cluster_mark_revoking(cl, id, plain, 60000, err), 0);
    readonly_outage_begin();
    for (int i = 0; i < 2; i++) {
        assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, NULL, "wf", 60, 10, err), GW_ERR_UNAVAILABLE);
        assert_int_equal(gw_cluster_unavailable_due(cl, held), i == 0);
    }
    for (int i = 0; i < 2; i++) /* the mark stays this instance's: each end's DEL is refused */
        gw_cluster_unmark_revoking(cl, plain, false);
    logged = readonly_outage_end(cl);
    assert_int_equal(logged_events(logged, "shared_state_unmark_failed"), 1);
    assert_true(logged_field(logged, "shared_state_unmark_failed", "suppressed", "0"));
    assert_true(logged_field(logged, "shared_state_recovered", "suppressed", "2"));
    free(logged);
    gw_cluster_free(cl);
}

/*
 * An outage still open when the cluster goes (the gateway stopping, Redis away) says the lines it held back,
 * in one shared_state_unavailable line with their count. Before, they were neither out nor counted.
 */
static void test_shared_outage_said_at_stop(void **state)
{
    static const unsigned char tid[] = "st01", nonce[] = "n";
    char rec[64], held[GW_LOG_HELD_LEN], err[GW_ERR_LEN] = "", *logged;
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    (void)redis_stop(NULL);
    for (int i = 0; i < 3; i++) { /* the first line out, two held */
        assert_int_equal(gw_cluster_seen(cl, tid, 4, nonce, 1, NULL, "st", 60, 10, err), GW_ERR_UNAVAILABLE);
        assert_int_equal(gw_cluster_unavailable_due(cl, held), i == 0);
    }
    log_capture_start();
    gw_cluster_free(cl);
    logged = log_capture_end();
    assert_int_equal(logged_events(logged, "shared_state_unavailable"), 1);
    assert_non_null(strstr(logged, "\"suppressed\":\"2\""));
    assert_non_null(strstr(logged, "still open as the gateway stopped"));
    free(logged);
}

/*
 * A share's open transactions (max_transactions_per_identity) count on Redis's clock alone, which scores
 * every reservation and sweeps the set: a reservation is not swept by the next one while it lives, and a
 * 1-s one is gone 2 s later. Before, each reservation was scored, and the set swept, on the calling
 * instance's clock (an argument): with that clock an hour behind the first was swept at once (a second
 * reservation taken over the cap of 1), an hour ahead the 1-s one was counted for an hour (the cap refused
 * every reservation meanwhile). The instance passes no clock now.
 */
static void test_shared_open_on_redis_clock(void **state)
{
    char rk[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rk);
    assert_int_equal(gw_cluster_reserve(cl, (const unsigned char *)"skb1", 4, "behind", 10, 1, err), 0);
    assert_int_equal(gw_cluster_reserve(cl, (const unsigned char *)"skb2", 4, "behind", 10, 1, err),
                     GW_ERR_LIMIT);
    assert_int_equal(
        gw_cluster_reserve(cl, (const unsigned char *)"ska1", 4, "ahead", 1 - GW_STATE_GRACE, 1, err), 0);
    sleep(2);
    assert_int_equal(gw_cluster_reserve(cl, (const unsigned char *)"ska2", 4, "ahead", 10, 1, err), 0);
    gw_cluster_free(cl);
}

/* Every score of the shares' open: sets in the test's Redis |secs| earlier: as if that much time passed
 * for the count (the reservations' own keys keep their TTLs). */
static void open_scores_back(const char *rk, long secs)
{
    char pattern[80], n[24], out[64];

    snprintf(pattern, sizeof(pattern), "%.*sopen:*", (int)(strstr(rk, "rec:") - rk), rk);
    snprintf(n, sizeof(n), "%ld", -secs);
    assert_int_equal(redis_cmd(out, sizeof(out), 5,
                               (const char *const[]){"EVAL",
                                                     "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                                                     "for _, m in ipairs(redis.call('ZRANGE', k, 0, -1)) do "
                                                     "redis.call('ZINCRBY', k, ARGV[2], m) end end return 0",
                                                     "0", pattern, n}),
                     0);
    assert_string_equal(out, ":0");
}

/*
 * A transaction's record written after a long upstream call keeps it counted as open under its share
 * (max_transactions_per_identity) while the record lives: a reservation 100 s later (the set's scores
 * moved back as much), past the first reservation's 10 s and grace, is refused with the cap at 1; one past
 * the record's 600 s and grace is taken. Before, the record's write took the reservation longer but left
 * its score in the count, which then swept it while the transaction was open.
 */
static void test_shared_record_keeps_its_count(void **state)
{
    static const unsigned char first[] = "opn1", second[] = "opn2", third[] = "opn3";
    struct gw_txn_record rec = {.req = (unsigned char *)"req", .req_len = 3};
    char rk[64], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rk);
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    snprintf(rec.role, sizeof(rec.role), "default");
    assert_int_equal(gw_cluster_reserve(cl, first, 4, "slow", 10, 1, err), 0);
    assert_int_equal(gw_cluster_put_record(cl, first, 4, "slow", &rec, 600, err), 0);
    open_scores_back(rk, 100);
    assert_int_equal(gw_cluster_reserve(cl, second, 4, "slow", 10, 1, err), GW_ERR_LIMIT);
    open_scores_back(rk, 600);
    assert_int_equal(gw_cluster_reserve(cl, third, 4, "slow", 10, 1, err), 0);
    gw_cluster_free(cl);
}

/*
 * An end of a transactionID whose first try went out whole and never ran (its connection dropped before
 * Redis read it) is asked again. The record is gone (another instance closed the transaction), and what
 * this instance's earlier end of the same transactionID took (a client may open a new transaction under
 * it once the old one is closed) still lies under took:. That is not this end's: the retry answers that
 * the record was gone, and hands back nothing, so a result already handed back is never withdrawn twice.
 */
static void test_shared_end_retry_not_handed_an_earlier_end(void **state)
{
    static const unsigned char tid[] = "0123";
    char rec[64], out[64], err[GW_ERR_LEN] = "";
    /* a call's refusal: its status a gw_err, as an instance writes it (a PKIStatus is no status there) */
    struct gw_txn_result res = {.present = true, .status = GW_ERR_REFUSED}, left;
    struct gw_cluster *cl;

    (void)state;
    cl = redis_cluster(rec);
    snprintf(res.reason, sizeof(res.reason), "the first transaction's");
    /* the first transaction's record, its result beside it; this instance ends it and is handed that */
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", rec, "x"}), 0);
    assert_int_equal(gw_cluster_put_result(cl, tid, 4, &res, 60, err), 1);
    assert_int_equal(gw_cluster_end_record(cl, tid, 4, NULL, &left), 1);
    assert_true(left.present);
    assert_string_equal(left.reason, "the first transaction's");
    gw_txn_result_cleanup(&left);
    /* a second transaction under it, closed on another instance: its record gone. This instance's end of
       it never runs, its answer lost */
    drop_hook.thread = pthread_self();
    drop_hook.lose_unrun = true;
    assert_int_equal(gw_cluster_end_record(cl, tid, 4, NULL, &left), 0);
    assert_false(drop_hook.lose_unrun);
    assert_false(left.present);
    gw_txn_result_cleanup(&left);
    memset(&drop_hook, 0, sizeof(drop_hook));
    gw_cluster_free(cl);
}

/* test_shared_end_retry_leaves_a_later_record's second instance, and the key of its record */
static struct gw_cluster *later_instance;
static char later_rec[64];

/*
 * The start of a test of an end's retry (Redis started, else the test skipped): an instance, and with
 * |later| another as later_instance; an end of nothing (end 1: Redis has the script since, the ends the
 * test counts are the end's own); with |result|, the record of transactionID "0123" and a result beside
 * it ("the first transaction's"). The next end's first try on this thread then runs, its answer lost, and
 * |before_retry| runs before its retry goes out.
 */
static struct gw_cluster *end_retry_start(bool later, bool result, void (*before_retry)(void))
{
    static const unsigned char tid[] = "0123";
    struct gw_txn_result res = {.present = true, .status = GW_ERR_REFUSED};
    char rec[64], out[64], err[GW_ERR_LEN] = "";
    struct gw_cluster *cl;

    cl = redis_cluster(rec);
    if (later)
        later_instance = unit_cluster(later_rec);
    snprintf(res.reason, sizeof(res.reason), "the first transaction's");
    assert_int_equal(gw_cluster_drop_record(cl, tid, 4, NULL), 0);
    if (result) {
        assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", rec, "x"}), 0);
        assert_int_equal(gw_cluster_put_result(cl, tid, 4, &res, 60, err), 1);
    }
    drop_hook.thread = pthread_self();
    drop_hook.lose_answer = 1;
    drop_hook.fn = before_retry;
    drop_hook.fn_skip = 1;
    return cl;
}

/* The end's first answer was lost and before_retry ran (end_retry_start); the hook goes. */
static void end_retry_done(void)
{
    assert_int_equal(drop_hook.lose_answer, 0);
    assert_null(drop_hook.fn);
    memset(&drop_hook, 0, sizeof(drop_hook));
}

/* drop_hook: Redis flushed (or restarted without its data) before the end's retry goes out. */
static void redis_flushed(void)
{
    char out[16];

    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    assert_string_equal(out, "+OK");
}

/*
 * An end that Redis ran, taking the result beside the record, its answer lost; Redis is flushed before the
 * retry goes out. The retry finds nothing kept under the end's id and no record, and the shared state's
 * epoch changed since the first try went out: what the first try took is unknown, logged txn_end_unread
 * (error). Before, the retry read that as a record another instance had ended: the certificate in the
 * result was neither withdrawn nor logged.
 */
static void test_shared_end_retry_after_flush(void **state)
{
    static const unsigned char tid[] = "0123";
    struct gw_txn_result left;
    struct gw_cluster *cl;
    char *logged;

    (void)state;
    cl = end_retry_start(false, true, redis_flushed);
    log_capture_start();
    assert_int_equal(gw_cluster_end_record(cl, tid, 4, NULL, &left), 0);
    logged = log_capture_end();
    end_retry_done();
    assert_false(left.present);
    gw_txn_result_cleanup(&left);
    assert_non_null(strstr(logged, "\"level\":\"error\",\"event\":\"txn_end_unread\""));
    assert_non_null(strstr(logged, "lost what it kept between the end's first try"));
    free(logged);
    gw_cluster_free(cl);
}

/* drop_hook: another instance opens a later transaction under transactionID "0123", its record and a
   result beside it. */
static void later_record_opens(void)
{
    static const unsigned char tid[] = "0123";
    struct gw_txn_result res = {.present = true, .status = GW_ERR_REFUSED};
    char out[64], err[GW_ERR_LEN] = "";

    snprintf(res.reason, sizeof(res.reason), "the later transaction's");
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", later_rec, "y"}), 0);
    assert_int_equal(gw_cluster_put_result(later_instance, tid, 4, &res, 60, err), 1);
}

/* The later record (later_record_opens) is there, and its own end is handed its result; its instance goes. */
static void later_record_ends(const unsigned char *tid)
{
    struct gw_txn_result left;
    char out[64];

    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", later_rec}), 0);
    assert_string_equal(out, ":1");
    assert_int_equal(gw_cluster_end_record(later_instance, tid, 4, NULL, &left), 1);
    assert_true(left.present);
    assert_string_equal(left.reason, "the later transaction's");
    gw_txn_result_cleanup(&left);
    gw_cluster_free(later_instance);
    later_instance = NULL;
}

/*
 * An end that Redis ran, its answer lost, is asked again; before the retry goes out, a later transaction
 * under the same transactionID has a record of its own, and a result beside it. (The first's reservation,
 * held until the end returns, keeps that from happening; the end's retry must not rest on it.) The retry
 * finds what its first try took and answers that, touching nothing: the later record and its result stay
 * for that transaction's own end, and what the first try took stays to be read back. Before, the retry
 * ended the later record as well, handed back its result in place of the first's, and wrote it over what
 * the first try took.
 */
static void test_shared_end_retry_leaves_a_later_record(void **state)
{
    static const unsigned char tid[] = "0123";
    char err[GW_ERR_LEN] = "";
    struct gw_txn_result left;
    struct gw_cluster *cl;

    (void)state;
    /* end 2: its first try runs, its answer lost; the later record opens before the retry goes out */
    cl = end_retry_start(true, true, later_record_opens);
    assert_int_equal(gw_cluster_end_record(cl, tid, 4, NULL, &left), 1);
    end_retry_done();
    assert_true(left.present);
    assert_string_equal(left.reason, "the first transaction's");
    gw_txn_result_cleanup(&left);
    /* what the first try took is still there to be read back */
    assert_true(cluster_up(cl));
    assert_int_equal(gw_cluster_reread_end(cl, tid, 4, 2, "", &left, err), 1);
    assert_true(left.present);
    assert_string_equal(left.reason, "the first transaction's");
    gw_txn_result_cleanup(&left);
    later_record_ends(tid);
    gw_cluster_free(cl);
}

/*
 * The same with a first try that found no record (ended elsewhere before): it took nothing, and its retry
 * answers that, touching nothing. Before, the retry, finding no took: key, ended the later transaction's
 * record and handed back its result, for this instance to withdraw the later transaction's certificate.
 */
static void test_shared_end_retry_of_nothing_leaves_a_later_record(void **state)
{
    static const unsigned char tid[] = "0123";
    char err[GW_ERR_LEN] = "";
    struct gw_txn_result left;
    struct gw_cluster *cl;

    (void)state;
    /* end 2 finds no record either, its answer lost; the later record opens before the retry goes out */
    cl = end_retry_start(true, false, later_record_opens);
    assert_int_equal(gw_cluster_end_record(cl, tid, 4, NULL, &left), 0);
    end_retry_done();
    assert_false(left.present);
    /* read back, it took nothing */
    assert_true(cluster_up(cl));
    assert_int_equal(gw_cluster_reread_end(cl, tid, 4, 2, "", &left, err), 0);
    assert_false(left.present);
    later_record_ends(tid);
    gw_cluster_free(cl);
}

/*
 * An end whose tries' answers were both lost once Redis ran it: what it took (here a result beside the
 * record) waits in Redis for this instance's read-back at its next tick. Before that tick, a later
 * transaction under the same transactionID ends too, on this instance or on another. The read-back still
 * finds what the first end took. Once, this instance's later end deleted it unread, and another's wrote
 * its own over it: a certificate in it was neither delivered nor withdrawn, and nothing said so.
 */
static void test_shared_unread_end_outlives_a_later_end(void **state)
{
    static const unsigned char tid[] = "0123";
    char rec[64], out[64], err[GW_ERR_LEN] = "";
    struct gw_txn_result res = {.present = true, .status = GW_ERR_REFUSED}, left;

    (void)state;
    if (redis_start() != 0)
        skip();
    snprintf(res.reason, sizeof(res.reason), "the first transaction's");
    for (int other = 0; other <= 1; other++) {
        struct gw_cluster *cl = unit_cluster(rec), *later;
        unsigned long long id;
        char epoch[GW_STATE_EPOCH_LEN];

        print_message("the later end on %s instance\n", other ? "another" : "this");
        later = other ? unit_cluster(rec) : cl;
        /* an end of nothing: Redis has the script since, the answers lost below are the end's own */
        assert_int_equal(gw_cluster_drop_record(cl, tid, 4, NULL), 0);
        assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", rec, "x"}), 0);
        assert_int_equal(gw_cluster_put_result(cl, tid, 4, &res, 60, err), 1);
        drop_hook.thread = pthread_self();
        drop_hook.lose_answer = 2;
        assert_int_equal(gw_cluster_end_record(cl, tid, 4, NULL, &left), GW_ERR_UNAVAILABLE);
        assert_int_equal(drop_hook.lose_answer, 0);
        assert_false(left.present);
        assert_true((id = left.unread) != 0);
        snprintf(epoch, sizeof(epoch), "%s", left.unread_epoch);
        gw_txn_result_cleanup(&left);
        memset(&drop_hook, 0, sizeof(drop_hook));
        /* a later transaction under it, ended before the read-back comes */
        assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", rec, "x"}), 0);
        assert_int_equal(gw_cluster_end_record(later, tid, 4, NULL, &left), 1);
        assert_false(left.present);
        gw_txn_result_cleanup(&left);
        assert_true(cluster_up(cl));
        assert_int_equal(gw_cluster_reread_end(cl, tid, 4, id, epoch, &left, err), 1);
        assert_true(left.present);
        assert_string_equal(left.reason, "the first transaction's");
        gw_txn_result_cleanup(&left);
        if (other)
            gw_cluster_free(later);
        gw_cluster_free(cl);
    }
}

/*
 * An end whose answers were all lost, handed to the read-back, of which Redis keeps nothing, in the epoch
 * the end went out in. Answered while Redis would still keep what the end took (GW_STATE_TOOK_SECS from
 * before the end went out), that end never ran: nothing is said. Answered only after that, what the end took
 * may have expired there: txn_end_unread (error). Once, the 30 s counted from when the loss was noticed, a
 * timeout or two later, and a read-back answered with nothing past them took the end as never run, without a
 * line.
 */
static void test_shared_unread_end_window(void **state)
{
    (void)state;
    if (redis_start() != 0)
        skip();
    for (int late = 0; late <= 1; late++) {
        struct env *e = env_shared("100ms");
        struct cmp_txn view = {.up = NULL};
        struct gw_txn_result left = {.unread = 7};
        char *logged, *p, key[64], epoch[GW_STATE_EPOCH_LEN + 1];
        int n = 0;

        print_message("Redis answers %s the 30 s\n", late ? "after" : "within");
        snprintf(view.identity, sizeof(view.identity), "/CN=unread");
        snprintf(key, sizeof(key), "unit%d:epoch", (int)getpid()); /* as a status line: "+<epoch>" */
        assert_int_equal(
            redis_cmd(epoch, sizeof(epoch), 4,
                      (const char *const[]){"EVAL", "return {ok = redis.call('GET', KEYS[1])}", "1", key}),
            0);
        assert_int_equal(epoch[0], '+');
        snprintf(left.unread_epoch, sizeof(left.unread_epoch), "%s", epoch + 1);
        left.unread_until_ms = late ? gw_now_ms() - 1 : gw_now_ms() + (uint64_t)GW_STATE_TOOK_SECS * 1000;
        log_capture_start();
        cmp_poll_reread_later(e->engine, &view, "local", "30313233", &left, 0);
        gw_cmp_engine_expire(e->engine, time(NULL));
        gw_cmp_engine_expire(e->engine, time(NULL)); /* done with at the first: nothing more */
        logged = log_capture_end();
        for (p = logged; (p = strstr(p, "\"event\":\"txn_end_unread\"")) != NULL; p++)
            n++;
        assert_int_equal(n, late);
        assert_int_equal(late, strstr(logged, "may have expired there") != NULL);
        free(logged);
        env_free(e);
    }
}

/*
 * A shared deferred request that another instance closes (the client's error message, or a certConf in
 * place of its pollReq, answered there from the record it leased while the call had no result), the call
 * returning while it closes: after the lease, before the record ends. Its instance puts the certificate
 * beside the record, which still is there; the record's end takes it away. Nobody received it, so the
 * instance that ended the record has it on record as not delivered and withdraws it, once; the instance
 * that made the call neither withdraws it nor says it was closed elsewhere. Once, the certificate went
 * with the record, on record as "awaiting the client's pollReq", and stayed valid. So also when Redis ran
 * the record's end and its answer was lost: the end asked again answers what the first took. Once, that
 * certificate stayed valid, handed back to nobody. And when the retry's answer was lost too: what the end
 * took is read back at the next tick. Once, it lay in Redis until it expired, unread.
 */
static void test_shared_closed_elsewhere_while_result_lands(void **state)
{
    static const char *const why[] = {"the client aborted the transaction before a pollReq collected it",
                                      "no pollReq collected it before its transaction closed"};

    (void)state;
    if (redis_start() != 0)
        skip();
    for (int i = 0; i < 6; i++) {
        int conf = i & 1, lose = i >> 1;
        struct env *b = env_shared("100ms"), *a = env_shared("100ms"); /* the adapter's engine: a's */
        struct client cl, dummy = {.env = b};
        OSSL_CMP_CTX *ctx;
        char serial[64] = "";
        int after;

        print_message("closed on another instance by %s%s\n",
                      conf ? "a certConf" : "the client's error message",
                      lose == 2   ? ", the record's end answered and the answers of both its tries lost"
                      : lose == 1 ? ", the record's end answered and its answer lost"
                                  : "");
        slow_revokes(b);
        slow_revokes(a);
        ctx = shared_waiting(a, &cl, NULL);
        cl.env = b; /* its next message goes to the other instance */
        cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
        cl.tamper = conf ? tamper_poll_certconf : tamper_poll_error;
        landed = 0;
        drop_hook.thread = pthread_self();
        drop_hook.after_end = false;
        drop_hook.fn = call_lands;
        drop_hook.lose_answer = lose;
        (void)poll_step(ctx, &after); /* its next pollReq goes as that message */
        drop_hook.fn = NULL;
        assert_false(drop_hook.lose_answer || drop_hook.losing); /* lost, if so */
        if (!landed)
            fail_msg("the call did not land within CALL_WAIT_S");
        /* the next ticks: the read-back waits until readiness saw Redis again (GW_STATE_PING_SECS) */
        for (int j = 0; lose == 2 && j < 50 && audit_count(b, "expired_undelivered", NULL, NULL, NULL) == 0;
             j++) {
            usleep(100 * 1000);
            gw_cmp_engine_expire(b->engine, time(NULL));
        }
        assert_int_equal(audit_count(a, "issued", NULL, "status", "awaiting the client's pollReq"), 1);
        assert_int_equal(audit_serial(a, "issued", serial, sizeof(serial)), 0);
        assert_int_equal(audit_count(a, "expired_undelivered", NULL, NULL, NULL), 0);
        assert_int_equal(audit_count(a, "revoked", NULL, NULL, NULL), 0);
        assert_int_equal(audit_count(b, "expired_undelivered", serial, "status", why[conf]), 1);
        assert_int_equal(audit_count(b, "revoked", serial, NULL, NULL), 1);
        (void)revoke_calls(a);
        assert_int_equal(revoke_calls(b), 1);
        client_cleanup(&cl);
        client_cleanup(&dummy);
        OSSL_CMP_CTX_free(ctx);
        env_free(b);
        env_free(a);
    }
}

/*
 * As above, the answers of both tries of the record's end lost, and then Redis flushed (or restarted
 * without its data) before the read-back: what the end took, kept under took:, is gone with the rest.
 * The read-back finds nothing, and the shared state's epoch changed since the end went out: that is no
 * end that never ran, but one whose take is lost. It is logged txn_end_unread (error), nothing withdrawn.
 * Before, the read-back took the empty answer for an end that never ran: the certificate the end took
 * was neither withdrawn nor logged.
 */
static void test_shared_unread_end_after_flush(void **state)
{
    struct env *b, *a;
    struct client cl, dummy;
    OSSL_CMP_CTX *ctx;
    char out[64], *logged = NULL;
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    b = env_shared("100ms");
    a = env_shared("100ms"); /* the adapter's engine: a's */
    dummy = (struct client){.env = b};
    slow_revokes(b);
    slow_revokes(a);
    ctx = shared_waiting(a, &cl, NULL);
    cl.env = b; /* its next message goes to the other instance */
    cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
    cl.tamper = tamper_poll_error;
    landed = 0;
    drop_hook.thread = pthread_self();
    drop_hook.fn = call_lands;
    drop_hook.lose_answer = 2;
    (void)poll_step(ctx, &after); /* its next pollReq goes as that message */
    drop_hook.fn = NULL;
    assert_false(drop_hook.lose_answer || drop_hook.losing);
    if (!landed)
        fail_msg("the call did not land within CALL_WAIT_S");
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    assert_string_equal(out, "+OK");
    log_capture_start();
    /* the next ticks: the read-back waits until readiness saw Redis again (GW_STATE_PING_SECS) */
    for (int j = 0; j < 50 && (logged == NULL || strstr(logged, "txn_end_unread") == NULL); j++) {
        free(logged);
        usleep(100 * 1000);
        gw_cmp_engine_expire(b->engine, time(NULL));
        logged = log_so_far();
    }
    free(logged);
    logged = log_capture_end();
    assert_non_null(strstr(logged, "\"level\":\"error\",\"event\":\"txn_end_unread\""));
    assert_non_null(strstr(logged, "lost what it kept"));
    assert_int_equal(audit_count(b, "expired_undelivered", NULL, NULL, NULL), 0);
    assert_int_equal(audit_count(b, "revoked", NULL, NULL, NULL), 0);
    assert_int_equal(revoke_calls(b), 0);
    (void)revoke_calls(a);
    free(logged);
    memset(&drop_hook, 0, sizeof(drop_hook));
    client_cleanup(&cl);
    client_cleanup(&dummy);
    OSSL_CMP_CTX_free(ctx);
    env_free(b);
    env_free(a);
}

/*
 * The configuration a reload brings while the shared deferred request of |prev| waits (|replace|: the
 * changes to its own), records on and the role's poll_after kept, with |prev|'s slow adapter (revoking)
 * in place of its upstream |up|.
 */
static struct env *env_shared_reload(const struct env *prev, const char *const replace[8], const char *up)
{
    char cmp[512], err[GW_ERR_LEN] = "";
    struct env_opts o = {
        .cmp = shared_cmp(cmp, sizeof(cmp)), .role_extra = "\"poll_after\": \"100ms\"", .confirm = 1};
    struct gw_upstream *slow_up = NULL;
    struct env *e;

    for (size_t i = 0; i < 8 && replace[i] != NULL; i++)
        o.replace[i] = replace[i];
    e = env_reload(prev, &o);
    e->slow_ops = prev->slow_ops;
    for (size_t i = 0; i < e->cfg->n_upstreams; i++)
        if (strcmp(e->cfg->upstreams[i].name, up) == 0)
            assert_non_null(slow_up = gw_upstream_new_ops(&e->cfg->upstreams[i], &e->slow_ops, NULL, err));
    assert_int_equal(gw_upstream_set_put0(e->ups, slow_up), 0);
    return e;
}

/*
 * A shared deferred request whose uncollected certificate expires from its record after a reload
 * changed what its record names: withdrawn through the upstream of the running configuration whose
 * CA issued it, whatever it is called now and whether or not its role is still there; never through
 * an upstream of the record's name that is another CA's now (by serial, it would revoke a certificate
 * of that CA): on record as not revoked then, with where to revoke it by hand.
 */
static void test_shared_expiry_after_reload(void **state)
{
    static const struct {
        const char *name, *replace[8], *up, *event, *status;
        int revoked;
    } cases[] = {
        {"its upstream renamed",
         {"\"local\": {", "\"moved\": {", "\"upstream\": \"local\"", "\"upstream\": \"moved\""},
         "moved",
         "revoked",
         "revoked upstream",
         1},
        {"its role and upstream renamed",
         {"\"local\": {", "\"moved\": {", "\"upstream\": \"local\"", "\"upstream\": \"moved\"",
          "\"default\": {", "\"renamed\": {", "role:default", "role:renamed"},
         "moved",
         "revoked",
         "revoked upstream",
         1},
        {"its upstream's name another CA's",
         {"\"cert\": \"issuing.pem\", \"key\": \"issuing.key\"", "\"cert\": \"ca.pem\", \"key\": \"ca.key\""},
         "local",
         "revoke_failed",
         "no upstream of this configuration has the CA that issued it: revoke it by hand at its issuer "
         "/O=cmpgw demo/CN=cmpgw demo issuing CA",
         0},
    };

    (void)state;
    if (redis_start() != 0)
        skip();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct client cl;
        OSSL_CMP_CTX *ctx;
        char out[256], serial[64] = "";
        struct env *e = shared_result_waiting(&cl, &ctx), *next;

        print_message("case: %s\n", cases[i].name);
        next = env_shared_reload(e, cases[i].replace, cases[i].up);
        assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
        expire_record(next, &cl, out, sizeof(out));
        assert_int_equal(audit_count(next, "expired_undelivered", serial, "status",
                                     "no pollReq collected it before its transaction closed"),
                         1);
        assert_int_equal(audit_count(next, cases[i].event, serial, "status", cases[i].status), 1);
        assert_int_equal(audit_count(next, "revoked", NULL, NULL, NULL), cases[i].revoked);
        assert_int_equal(revoke_calls(next), cases[i].revoked);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(next);
        env_free(e);
    }
}

/*
 * How the client of test_shared_withdrawals_after_reload ends the transaction whose certificate its
 * pollReq collects: the records that say so.
 */
enum lose_how { LOSE_REJECTED, LOSE_ANSWER, LOSE_ABORTED };
static const struct {
    const char *name, *event, *status;
} lose[] = {
    [LOSE_REJECTED] = {"its certConf rejects it", "rejected_by_client",
                       "the client rejected the certificate"},
    [LOSE_ANSWER] = {"its answer never leaves", "rejected",
                     "not delivered: the client left before its answer was sent"},
    [LOSE_ABORTED] = {"an error message aborts it", "rejected_by_client",
                      "the client aborted the transaction with an error message"},
};

/* |cl| (of |ctx|) set to lose the certificate its next pollReq collects as |how| says. */
static void lose_cert(struct client *cl, OSSL_CMP_CTX *ctx, struct client *dummy, enum lose_how how)
{
    if (how == LOSE_REJECTED) {
        OSSL_CMP_CTX_set_certConf_cb(ctx, reject_cert);
    } else if (how == LOSE_ANSWER) {
        OSSL_CMP_CTX_set_transfer_cb(ctx, transfer_gone);
    } else {
        cl->tamper = tamper_error;
        cl->other = client_new(dummy, SIG, client_cert, client_key, NULL, NULL, 0); /* its signer */
    }
}

/*
 * A shared deferred request continued from its record on an instance whose reload renamed its
 * upstream, or pointed that name at another CA and gave the CA that issued it another name: the
 * certificate a pollReq collects there is withdrawn through the upstream of that instance whose CA
 * issued it, whether its certConf rejects it, the answer carrying it never leaves, or the client
 * aborts. Once, the transaction was not continued after the rename, and after the other change the
 * withdrawal asked the upstream of the record's name, which refused it as not its CA's (revoke_failed).
 */
static void test_shared_withdrawals_after_reload(void **state)
{
    static const struct {
        const char *name, *replace[8];
    } cases[] = {
        {"its upstream renamed",
         {"\"local\": {", "\"moved\": {", "\"upstream\": \"local\"", "\"upstream\": \"moved\""}},
        {"its upstream's name another CA's, its CA under another name",
         {"\"cert\": \"issuing.pem\", \"key\": \"issuing.key\"", "\"cert\": \"ca.pem\", \"key\": \"ca.key\"",
          "\"upstreams\": {",
          "\"upstreams\": {\n    \"moved\": { \"type\": \"local\", \"cert\": \"issuing.pem\", "
          "\"key\": \"issuing.key\", \"chain\": \"ca.pem\" },"}},
    };

    (void)state;
    if (redis_start() != 0)
        skip();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (enum lose_how how = LOSE_REJECTED; how <= LOSE_ABORTED; how++) {
            struct client cl, dummy;
            OSSL_CMP_CTX *ctx;
            char serial[64] = "";
            struct env *e = shared_result_waiting(&cl, &ctx), *next;
            int after;

            print_message("case: %s, %s\n", cases[i].name, lose[how].name);
            next = env_shared_reload(e, cases[i].replace, "moved");
            dummy = (struct client){.env = next};
            assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
            (void)gw_cmp_engine_reset(e->engine); /* no copy here: the record is all there is */
            cl.env = next;
            lose_cert(&cl, ctx, &dummy, how);
            (void)poll_step(ctx, &after); /* pollReq -> ip, then the certificate is lost */
            assert_int_equal(audit_count(next, lose[how].event, serial, "status", lose[how].status), 1);
            assert_int_equal(audit_count(next, "revoked", serial, "upstream", "moved"), 1);
            assert_int_equal(audit_count(next, "revoke_failed", NULL, NULL, NULL), 0);
            assert_int_equal(revoke_calls(next), 1);
            client_cleanup(&cl);
            OSSL_CMP_CTX_free(ctx);
            env_free(next);
            env_free(e);
        }
    }
}

/*
 * A shared deferred request whose certificate no upstream of the reloaded instance has the CA of (the
 * name of its record's upstream now another CA's): a pollReq there is told "no open transaction" and
 * nothing is withdrawn; the record stays for its expiry (test_shared_expiry_after_reload). Once, it
 * was continued through the upstream of that name, which refused each withdrawal as not its CA's. Over
 * a TLS client certificate the record binds, the same: once, that pollReq was answered with failInfo
 * badAlg and no text, what the authorization of its sender, which passed, left in the refusal.
 */
static void test_shared_not_continued_without_its_ca(void **state)
{
    static const char *const replace[8] = {"\"cert\": \"issuing.pem\", \"key\": \"issuing.key\"",
                                           "\"cert\": \"ca.pem\", \"key\": \"ca.key\""};
    X509 *const tls[] = {NULL, client_cert};
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char key[160], out[256], *logged;
    struct env *e, *next;
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++) {
        e = env_shared("100ms");
        slow_revokes(e);
        e->tls = tls[i]; /* the record binds it */
        ctx = shared_waiting(e, &cl, NULL);
        slow_gate(1);
        slow_wait_completed(e, 1); /* the result is beside the record */
        next = env_shared_reload(e, replace, "local");
        next->tls = tls[i];
        (void)gw_cmp_engine_reset(e->engine); /* no copy here: the record is all there is */
        cl.env = next;
        OSSL_CMP_CTX_set_certConf_cb(ctx, reject_cert);
        log_capture_start();
        assert_int_equal(poll_step(ctx, &after), 0);
        logged = log_capture_end();
        assert_non_null(strstr(logged, "\"event\":\"txn_not_continued\""));
        assert_non_null(strstr(logged, "no upstream here has its certificate's CA"));
        free(logged);
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                      "no open transaction");
        assert_int_equal(audit_count(next, "revoke_failed", NULL, NULL, NULL), 0);
        assert_int_equal(revoke_calls(next), 0);
        record_key(&cl, key, sizeof(key));
        assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
        assert_string_equal(out, ":1");
        assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"DEL", key}), 0);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(next);
        env_free(e);
    }
}

/* The Redis key of the lease on the record of |cl|'s transaction into |out|. */
static void lease_key(const struct client *cl, char *out, size_t cap)
{
    char rec[160];

    record_key(cl, rec, sizeof(rec));
    snprintf(out, cap, "unit%d:lease:%s", (int)getpid(), strstr(rec, ":rec:") + 5);
}

static struct env *elsewhere; /* the engine of tamper_error_elsewhere: another instance */
static int elsewhere_down;    /* ... with Redis stopped, rather than the record leased by a third */

/*
 * The error message in place of the certConf (tamper_error) goes to |elsewhere|, the transaction's
 * record leased meanwhile by a third instance (or Redis stopped: |elsewhere_down|).
 */
static OSSL_CMP_MSG *tamper_error_elsewhere(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    char lease[176], out[64];

    if (OSSL_CMP_MSG_get_bodytype(req) != GW_CMP_BODY_CERTCONF)
        return req;
    cl->env = elsewhere;
    lease_key(cl, lease, sizeof(lease));
    if (elsewhere_down)
        (void)redis_stop(NULL);
    else
        assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", lease, "third"}), 0);
    return tamper_error(ctx, req, cl);
}

/*
 * A client's error message on another instance than its transaction's, while a third instance holds
 * the transaction's record (answering another of its messages), or while Redis is down: it aborts
 * nothing, and the client is told so and to retry (systemUnavail), as on a single instance
 * (held_here), not answered pkiconf. Its own certConf confirms the certificate after.
 */
static void test_shared_error_not_aborted(void **state)
{
    (void)state;
    for (elsewhere_down = 0; elsewhere_down <= 1; elsewhere_down++) {
        struct env *a, *b;
        struct client cl, dummy;
        OSSL_CMP_CTX *ctx;
        char lease[176], out[64];

        if (redis_start() != 0)
            skip();
        a = env_shared(NULL);
        b = elsewhere = env_shared(NULL);
        slow_gate(1);
        cl = (struct client){.env = a, .tamper = tamper_error_elsewhere};
        dummy = (struct client){.env = a};
        ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0);
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        assert_int_equal(cl.exchanges, 2); /* the ir to |a|, the error to |b| */
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      elsewhere_down ? "cannot reach its cluster" : "being answered now; retry in a moment");
        assert_int_equal(audit_count(b, "rejected_by_client", NULL, NULL, NULL), 0);
        assert_int_equal(gw_cmp_engine_open_transactions(a->engine), 1);
        if (!elsewhere_down) { /* the third instance done: the client's certConf confirms on |b| */
            lease_key(&cl, lease, sizeof(lease));
            assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"DEL", lease}), 0);
            send_held(&cl, "pkiconf", NULL);
            assert_int_equal(audit_count(b, "confirmed", NULL, NULL, NULL), 1);
        }
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(b);
        env_free(a);
        (void)redis_stop(NULL);
    }
}

/* The record of |cl|'s transaction past its deadline on Redis's clock (as the expiry claim reads it). */
static void record_past_deadline(const struct client *cl)
{
    char key[160], deadlines[64], out[64];

    record_key(cl, key, sizeof(key));
    snprintf(deadlines, sizeof(deadlines), "unit%d:deadlines", (int)getpid());
    assert_int_equal(redis_cmd(out, sizeof(out), 4, (const char *const[]){"ZADD", deadlines, "1", key}), 0);
    assert_string_equal(out, ":0"); /* moved */
}

static struct env *late_to; /* the engine of tamper_late_elsewhere: another instance, or the same */
static bool late_past;      /* ... the record past its deadline first */

/* The certConf goes to |late_to|, its record's deadline passed first if |late_past|. */
static OSSL_CMP_MSG *tamper_late_elsewhere(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)ctx;
    if (OSSL_CMP_MSG_get_bodytype(req) != GW_CMP_BODY_CERTCONF)
        return req;
    if (late_past)
        record_past_deadline(cl);
    cl->env = late_to;
    return req;
}

/*
 * A certConf after its shared transaction's deadline (on Redis's clock, before the expiry claim took the
 * record) is served on no instance: one without a copy finds no open transaction and leaves the record to
 * the claim, which records the expiry (expired_unconfirmed, the certificate valid) once; the instance with
 * the copy closes the copy as expired. Once, any instance confirmed it from the record until the claim
 * took it. Twin: before the deadline, another instance confirms it.
 */
static void test_shared_certconf_past_deadline(void **state)
{
    static const struct {
        bool elsewhere, past;
    } cases[] = {{true, true}, {false, true}, {true, false}};

    (void)state;
    if (redis_start() != 0)
        skip();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *a = env_shared(NULL), *b = env_shared(NULL);
        struct client cl = {.env = a, .tamper = tamper_late_elsewhere};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        char key[160], out[64];
        X509 *cert;

        late_to = cases[i].elsewhere ? b : a;
        late_past = cases[i].past;
        slow_gate(1);
        cert = OSSL_CMP_exec_IR_ses(ctx);
        assert_int_equal(cl.exchanges, 2);
        if (!cases[i].past) {
            assert_non_null(cert);
            assert_int_equal(audit_count(b, "confirmed", NULL, NULL, NULL), 1);
        } else {
            assert_null(cert);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "no open transaction with this transactionID");
            assert_int_equal(audit_count(late_to, "confirmed", NULL, NULL, NULL), 0);
            record_key(&cl, key, sizeof(key));
            assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
            assert_string_equal(out, cases[i].elsewhere ? ":1" : ":0"); /* left to the claim, or closed */
            gw_cmp_engine_expire(b->engine, time(NULL));                /* the claim, on |b| */
            gw_cmp_engine_expire(a->engine, time(NULL) + 400);          /* |a|'s copy, if any, is gone */
            assert_int_equal(audit_count(a, "expired_unconfirmed", NULL, NULL, NULL) +
                                 audit_count(b, "expired_unconfirmed", NULL, NULL, NULL),
                             1);
            assert_int_equal(gw_cmp_engine_open_transactions(a->engine), 0);
        }
        assert_int_equal(
            audit_count(a, "revoked", NULL, NULL, NULL) + audit_count(b, "revoked", NULL, NULL, NULL), 0);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(b);
        env_free(a);
    }
}

/*
 * A pollReq captured and replayed to another instance (its recipNonce answers an older pollRep) is
 * refused from the record's senderNonce before that instance leases the record and replays its
 * request: while a third instance holds the lease, the replay is told its recipNonce is stale, not to
 * retry. Once, it took the lease first (and, on a free record, kept the client's own next message
 * waiting), only for the nonce check to refuse it after the replay.
 */
static void test_shared_replay_refused_before_lease(void **state)
{
    struct env *a, *b;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char lease[176], out[64];
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    a = env_shared("100ms");
    b = env_shared("100ms");
    cl = (struct client){.env = a, .tamper = keep_first_pollreq};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
    assert_int_equal(poll_step(ctx, &after), -1); /* pollReq -> pollRep: the first one is now old */
    lease_key(&cl, lease, sizeof(lease));
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", lease, "third"}), 0);
    cl.env = b;
    send_held_refused(&cl, OSSL_CMP_PKIFAILUREINFO_badRecipientNonce, TEXT_STALE_NONCE);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"DEL", lease}), 0);
    assert_string_equal(out, ":1"); /* the third instance's lease was left alone */
    cl.env = a;
    slow_gate(1);
    slow_wait_completed(a, 1);
    env_free(b);
    poll_collect_and_free(a, &cl, ctx); /* the client's own pollReq still collects it */
}

/*
 * A copy of a shared transaction rebuilt from its record on an instance without one (here for a pollReq,
 * answered pollRep) answers that one message and is dropped: the instance keeps no copy, and its client's
 * next message there is judged by the record, and its deadline, again, not by a TTL the rebuilt copy
 * would have counted from that pollReq.
 */
static void test_shared_rebuilt_copy_not_kept(void **state)
{
    struct env *a, *b;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    a = env_shared("100ms");
    b = env_shared("100ms");
    ctx = shared_waiting(a, &cl, NULL); /* ir -> waiting, pollReq -> pollRep, on |a| */
    cl.env = b;
    assert_int_equal(poll_step(ctx, &after), -1); /* pollReq -> pollRep, rebuilt on |b| */
    assert_true(after >= 1);
    assert_int_equal(gw_cmp_engine_open_transactions(b->engine), 0);
    cl.env = a;
    slow_gate(1);
    slow_wait_completed(a, 1);
    env_free(b);
    poll_collect_and_free(a, &cl, ctx); /* |a|'s copy, older than the record, is rebuilt from it */
}

/* Keeps the certConf (keep_certconf) and drops it: the transaction stays open for it. */
static OSSL_CMP_MSG *keep_drop_certconf(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    return drop_certconf(ctx, keep_certconf(ctx, req, cl), cl);
}

/* The DER of the error message in place of |cl|'s held certConf (tamper_error: signed by cl->other). */
static unsigned char *held_error(OSSL_CMP_CTX *ctx, struct client *cl, size_t *len)
{
    unsigned char *conf = cl->held, *der = NULL;
    const unsigned char *p = conf;
    OSSL_CMP_MSG *req = d2i_OSSL_CMP_MSG(NULL, &p, (long)cl->held_len), *err;
    int n;

    assert_non_null(req);
    err = tamper_error(ctx, req, cl);
    OPENSSL_free(cl->held); /* the certConf again, as tamper_error keeps it */
    cl->held = conf;
    assert_true((n = i2d_OSSL_CMP_MSG(err, &der)) > 0);
    OSSL_CMP_MSG_free(err);
    *len = (size_t)n;
    return der;
}

/* The error message in place of the certConf (held_error) kept in |cl->held| and not sent: the transaction
   stays open for it. */
static OSSL_CMP_MSG *keep_drop_error(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    unsigned char *err;
    size_t len;

    if (OSSL_CMP_MSG_get_bodytype(req) != GW_CMP_BODY_CERTCONF)
        return req;
    (void)keep_certconf(ctx, req, cl);
    err = held_error(ctx, cl, &len);
    OPENSSL_free(cl->held);
    cl->held = err;
    cl->held_len = len;
    OSSL_CMP_MSG_free(req);
    return NULL;
}

/*
 * test_extra_certs_decoded_late with the transactions shared: an instance without a copy decodes a certConf's
 * extraCerts only once its record was read. With one, extraCerts that are no certificates are a body that
 * does not decode (counted), and the transaction stays its client's; with none, the answer of no open
 * transaction, whatever they hold, to an error message too.
 */
static void test_shared_extra_certs_decoded_late(void **state)
{
    char cmp[512];
    struct env *a, *b;
    struct client cl, dummy;
    OSSL_CMP_CTX *ctx;
    unsigned char *bad, *err;
    size_t len, err_len;
    int http;

    (void)state;
    if (redis_start() != 0)
        skip();
    a = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
    b = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
    cl = (struct client){.env = a, .tamper = keep_drop_certconf};
    dummy = (struct client){.env = b};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_null(OSSL_CMP_exec_IR_ses(ctx)); /* issued on |a|; its certConf never reaches it */
    bad = bad_extra_certs(cl.held, cl.held_len, &len);
    assert_null(exchange(b, bad, len, &http, &(size_t){0}));
    assert_int_equal(http, 400);
    assert_int_equal(b->auth_failures, 1);
    cl.env = b;
    send_held(&cl, "pkiconf", NULL); /* its own, from the record: closed */
    cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0); /* held_error's signer */
    err = held_error(ctx, &cl, &err_len);
    OPENSSL_free(cl.held);
    cl.held = bad;
    cl.held_len = len;
    send_held(&cl, "error", "no open transaction");
    /* nor an error message's, which has nothing to abort */
    OPENSSL_free(cl.held);
    cl.held = bad_extra_certs(err, err_len, &cl.held_len);
    send_held(&cl, "error", "no open transaction");
    assert_int_equal(b->auth_failures, 1);
    OPENSSL_free(err);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(b);
    env_free(a);
}

/*
 * A shared deferred request answered here from its record, as an instance without its copy answers it:
 * the pollReq that collects the certificate, its answer never sent (the client gone), ends the record as
 * well. Once, the record stayed open, and its expiry recorded as valid ("expired_unconfirmed") the
 * certificate just withdrawn.
 */
static void test_shared_client_gone_from_record(void **state)
{
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char key[160], out[256];
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = shared_result_waiting(&cl, &ctx);
    assert_int_equal(gw_cmp_engine_reset(e->engine), 0); /* this instance's copy gone, the record stays */
    OSSL_CMP_CTX_set_transfer_cb(ctx, transfer_gone);
    assert_int_equal(poll_step(ctx, &after), 0); /* pollReq -> ip, never sent */
    record_key(&cl, key, sizeof(key));
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    assert_string_equal(out, ":0");
    expire_record(e, &cl, out, sizeof(out));
    assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 0);
    assert_gone_withdrawn_and_free(e, &cl, ctx);
}

/*
 * A shared deferred request of a client over a TLS client certificate, whose certificate another instance
 * releases from the record to a pollReq whose answer never leaves (the client gone): that instance ends
 * the transaction, and its count in the sender's share of max_transactions_per_identity with it, the
 * share being the identity's over that TLS client (cmp_quota_key). Once, it released the share of the
 * identity alone: the client's next transaction was refused as one too many until the first's
 * reservation ran out.
 */
static void test_shared_client_gone_quota(void **state)
{
    struct quota_sender sender = {"TLS client 1 with a signature", SIG, client_cert};
    struct env *a, *b;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char cmp[512], out[64];
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    /* the share starts empty: transactions of this sender that earlier tests left open stay in Redis */
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    a = env_slow_cmp(shared_cmp_with(cmp, sizeof(cmp), QUOTA_CMP "\"max_transactions_per_identity\": 1"),
                     "100ms", 0);
    b = env_slow_cmp(cmp, "100ms", 0);
    slow_revokes(a);
    slow_revokes(b);
    a->tls = b->tls = client_cert;
    ctx = shared_waiting(a, &cl, NULL);
    slow_gate(1);
    slow_wait_completed(a, 1); /* the result is beside the record */
    cl.env = b;
    OSSL_CMP_CTX_set_transfer_cb(ctx, transfer_gone);
    assert_int_equal(poll_step(ctx, &after), 0); /* pollReq -> ip on b, never sent */
    assert_int_equal(audit_count(b, "rejected", NULL, "status",
                                 "not delivered: the client left before its answer was sent"),
                     1);
    assert_true(ir_quota(b, &sender, 1, "too many open transactions for "));
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(b);
    env_free(a);
}

/* gone_before: a third instance leases the record, answering another message of the transaction. */
static void lease_to_third(struct client *cl)
{
    char lease[176], out[64];

    lease_key(cl, lease, sizeof(lease));
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", lease, "third"}), 0);
}

/*
 * A shared transaction ended (its certificate's answer never sent, the client gone) while another
 * message holds it: here, its copy checked out and then given up as claim_copy gives up a copy its
 * record replaces (the slot released, the rebuilt transaction dropped), or on a third instance, the
 * record leased. Its record ends at once, whoever holds it: once, the mark on the slot went with the
 * slot, or the lease kept the record, and the transaction lived on for any instance, its expiry
 * putting on record as valid ("expired_unconfirmed") the certificate just withdrawn.
 */
static void test_shared_ended_while_held(void **state)
{
    (void)state;
    for (int third = 0; third <= 1; third++) {
        struct env *e;
        struct client cl;
        OSSL_CMP_CTX *ctx;
        char key[160], lease[176], out[256];

        print_message("held by %s\n", third ? "a third instance" : "another message here");
        if (redis_start() != 0)
            skip();
        e = env_shared(NULL);
        slow_revokes(e);
        slow_gate(1);
        cl = (struct client){.env = e};
        ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        OSSL_CMP_CTX_set_transfer_cb(ctx, transfer_gone);
        gone_hold = !third;
        gone_before = third ? lease_to_third : NULL;
        assert_null(OSSL_CMP_exec_IR_ses(ctx)); /* ir -> ip, never sent */
        gone_hold = 0;
        gone_before = NULL;
        record_key(&cl, key, sizeof(key));
        assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
        assert_string_equal(out, ":0");
        if (third) { /* done: its lease, left alone, given back */
            lease_key(&cl, lease, sizeof(lease));
            assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"DEL", lease}), 0);
            assert_string_equal(out, ":1");
        } else {
            gw_txn_release(gw_cmp_engine_txns(e->engine), gone_held->tid, gone_held->tid_len);
            gw_txn_free(gone_held);
        }
        expire_record(e, &cl, out, sizeof(out));
        assert_int_equal(audit_count(e, "expired_unconfirmed", NULL, NULL, NULL), 0);
        assert_gone_withdrawn_and_free(e, &cl, ctx);
        (void)redis_stop(NULL);
    }
}

/*
 * Redis's clock run on |secs| seconds for the test's keys, as while an upstream call or a client takes
 * its time: each key with a TTL loses |secs| of it, and goes when none is left.
 */
static void redis_age(int secs)
{
    static const char lua[] =
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do\n"
        "  local t = redis.call('PTTL', k)\n"
        "  if t > tonumber(ARGV[2]) then redis.call('PEXPIRE', k, t - tonumber(ARGV[2]))\n"
        "  elseif t > 0 then redis.call('DEL', k) end\n"
        "end\n"
        "return 0\n";
    char pattern[32], ms[24], out[64];

    snprintf(pattern, sizeof(pattern), "unit%d:*", (int)getpid());
    snprintf(ms, sizeof(ms), "%d", secs * 1000);
    assert_int_equal(redis_cmd(out, sizeof(out), 5, (const char *const[]){"EVAL", lua, "0", pattern, ms}), 0);
    assert_string_equal(out, ":0");
}

/* fake.during_sign: the upstream call takes 50 s. */
static void slow_upstream(struct env *e)
{
    (void)e;
    redis_age(50);
}

/*
 * An ir on |a| whose messageTime leads the gateway's clock by the whole window (300 s), sent again byte for
 * byte to |b| twice the window later, when that messageTime lags by the whole window: refused as a replay.
 * A second later its messageTime is out of the window. |shared|: |a| and |b| share their state in Redis,
 * whose keys age as the clock moves.
 */
static void replay_window_edge(struct env *a, struct env *b, int shared)
{
    struct client cl = {.env = a, .tamper = stamp_pinned_ahead};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char desc[4096];

    pinned_now = time(NULL);
    ahead_secs = 300;
    gw_cmp_engine_set_clock(a->engine, pinned_clock);
    gw_cmp_engine_set_clock(b->engine, pinned_clock);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    for (int late = 0; late < 2; late++) {
        pinned_now += late ? 1 : 2 * 300;
        if (shared)
            redis_age(late ? 1 : 2 * 300);
        resend_first(b, &cl, desc, sizeof(desc));
        if (strstr(desc, late ? "off the server clock" : "replayed message") == NULL ||
            strstr(desc, "certificate:") != NULL)
            fail_msg("%d s after the ir: %s", late ? 2 * 300 + 1 : 2 * 300, desc);
    }
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
}

/*
 * The replay cache keeps a transactionID GW_REPLAY_MARGIN longer than the window lets its messageTime
 * through (replay_window_edge). Once, it kept it for twice the window exactly and forgot it in the very
 * second the messageTime of a request sent with it the window ahead still passed: that request, sent
 * again then, was issued a second certificate.
 */
static void test_replay_window_edge(void **state)
{
    struct env *e = env_new(CMP_DEFAULTS);

    (void)state;
    replay_window_edge(e, e, 0);
    env_free(e);
}

/* test_replay_window_edge across two instances: Redis keeps the transactionID as long. */
static void test_shared_replay_window_edge(void **state)
{
    char cmp[512];
    struct env *a, *b;

    (void)state;
    if (redis_start() != 0)
        skip();
    a = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp))});
    b = env_open(&(struct env_opts){.cmp = cmp});
    replay_window_edge(a, b, 1);
    env_free(b);
    env_free(a);
}

/* A replay window (300 s: cmp_started.replay_ttl) shorter than a shared transaction's record lives. */
#define SHORT_WINDOW_CMP                                                                                     \
    "\"message_time_window\": \"10s\", \"transaction_ttl\": \"300s\", \"max_transactions_per_identity\": "   \
    "100"

/* A transaction under a transactionID another client tries to reuse, and the instance it tries. */
struct reuse {
    const char *tid;
    struct env *a, *b; /* the transaction's instance, and another */
    struct client cl;  /* the transaction's client, and its context */
    OSSL_CMP_CTX *ctx;
    char cmp[512];
};

/* |r|'s client on |a| (whose "cmp" members are r->cmp), its messages made by |tamper|, under |tid|. */
static void reuse_start(struct reuse *r, struct env *a, const char *tid,
                        OSSL_CMP_MSG *(*tamper)(OSSL_CMP_CTX *, OSSL_CMP_MSG *, struct client *))
{
    r->tid = tid;
    r->a = a;
    r->b = env_open(&(struct env_opts){.cmp = r->cmp, .confirm = 1});
    r->cl = (struct client){.env = a, .tamper = tamper};
    r->ctx = client_new(&r->cl, SIG, client_cert, client_key, NULL, NULL, 0);
    use_tid(r->ctx, tid);
}

/*
 * Another client (PBM) starts a transaction on the other instance under |r|'s transactionID: refused,
 * in use, the record of |r|'s transaction untouched. Then |r| is freed.
 */
static void reuse_refused_and_free(struct reuse *r)
{
    struct client cl = {.env = r->b};
    OSSL_CMP_CTX *ctx = client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
    char key[160], out[64];

    use_tid(ctx, r->tid);
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_transactionIdInUse,
                  "transactionID already in use: start a new transaction with a fresh transactionID");
    record_key(&r->cl, key, sizeof(key));
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    assert_string_equal(out, ":1");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    client_cleanup(&r->cl);
    OSSL_CMP_CTX_free(r->ctx);
    env_free(r->b);
    env_free(r->a);
}

/*
 * A shared transaction whose upstream call took 50 s keeps its transactionID reserved as long as its
 * record lives: once the reservation ran out up to the upstream call's time before the record, its
 * replay key gone too, and another client could open a transaction under that transactionID on any
 * instance, then end or overwrite the record. Such a request is refused (transactionIdInUse) until the
 * record goes.
 */
static void test_shared_tid_reserved_with_record(void **state)
{
    struct reuse r;

    (void)state;
    if (redis_start() != 0)
        skip();
    reuse_start(&r,
                env_open(&(struct env_opts){.cmp = shared_cmp_with(r.cmp, sizeof(r.cmp), SHORT_WINDOW_CMP),
                                            .confirm = 1}),
                "reserved with its record", drop_certconf);
    env_fake(r.a, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    fake.during_sign = slow_upstream;
    assert_null(OSSL_CMP_exec_IR_ses(r.ctx)); /* issued; its certConf never reaches the gateway */
    redis_age(300 + GW_STATE_GRACE - 50 + 1); /* the replay key gone, and the reservation as it once was */
    reuse_refused_and_free(&r);
}

/*
 * A shared deferred request that expires on its instance while its call runs leaves its record, whose
 * expiry an instance records once its deadline is past on Redis's clock; its transactionID stays
 * reserved meanwhile. Once, the instance released the reservation with the transaction, and another
 * client could open one under that transactionID before the record's expiry was claimed.
 */
static void test_shared_tid_reserved_after_local_expiry(void **state)
{
    struct reuse r;
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    reuse_start(&r, env_slow_cmp(shared_cmp_with(r.cmp, sizeof(r.cmp), SHORT_WINDOW_CMP), "100ms", 0),
                "reserved after local expiry", NULL);
    assert_int_equal(poll_step(r.ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
    redis_age(300 + 1); /* the replay key gone; the record lives on (plus the upstream's timeout) */
    gw_cmp_engine_expire(r.a->engine, time(NULL) + 300 + 10 + 1);
    assert_int_equal(gw_cmp_engine_open_transactions(r.a->engine), 0);
    slow_gate(1);
    slow_wait_completed(r.a, 1);
    reuse_refused_and_free(&r);
}

#define TAKEN_TID "reserved elsewhere during the call"

/* fake.during_sign: the reservation ran out during the call, and another instance took TAKEN_TID. */
static void reservation_taken(struct env *e)
{
    char key[160], out[64];
    int n = snprintf(key, sizeof(key), "unit%d:txn:", (int)getpid());

    (void)e;
    for (size_t i = 0; i < strlen(TAKEN_TID); i++)
        n += snprintf(key + n, sizeof(key) - (size_t)n, "%02x", (unsigned char)TAKEN_TID[i]);
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", key, "another"}), 0);
}

/*
 * A transactionID another instance reserved while the upstream call ran (this one's reservation ran out
 * meanwhile) is that instance's: no record is written over it, nor the reservation taken back, and the
 * transaction goes on here alone (txn_not_shared says why).
 */
static void test_shared_tid_taken_during_call(void **state)
{
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char cmp[512], key[160], out[64], *logged;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    fake.during_sign = reservation_taken;
    cl = (struct client){.env = e, .tamper = drop_certconf};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    use_tid(ctx, TAKEN_TID);
    log_capture_start();
    assert_null(OSSL_CMP_exec_IR_ses(ctx)); /* issued; its certConf never reaches the gateway */
    logged = log_capture_end();
    if (strstr(logged, "\"event\":\"txn_not_shared\"") == NULL ||
        strstr(logged, "another instance reserved the transactionID meanwhile") == NULL)
        fail_msg("no txn_not_shared for the reservation taken in: %s", logged);
    free(logged);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1); /* open here */
    record_key(&cl, key, sizeof(key));
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    assert_string_equal(out, ":0");
    memcpy(strstr(key, ":rec:"), ":txn:", 5);
    assert_int_equal(
        redis_cmd(out, sizeof(out), 4,
                  (const char *const[]){"EVAL", "return redis.call('GET', KEYS[1]) == 'another' and 1 or 0",
                                        "1", key}),
        0);
    assert_string_equal(out, ":1");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* The integer answer of |cmd| (PTTL, PEXPIRETIME) on the key |kind| ("txn", "res", "lease") of |cl|'s
   transaction. */
static long long key_int(const struct client *cl, const char *cmd, const char *kind)
{
    char rec[160], key[176], out[64];

    record_key(cl, rec, sizeof(rec));
    snprintf(key, sizeof(key), "unit%d:%s:%s", (int)getpid(), kind, strstr(rec, ":rec:") + 5);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){cmd, key}), 0);
    assert_int_equal(out[0], ':');
    return atoll(out + 1);
}

/* The milliseconds left to the key |kind| of |cl|'s transaction; -2: none. */
static long long pttl_of(const struct client *cl, const char *kind)
{
    return key_int(cl, "PTTL", kind);
}

/*
 * When the key |kind| of |cl|'s transaction expires, in Unix milliseconds (PEXPIRETIME, Redis 7); -2:
 * none, -1: never. Two keys' ends compare exactly so, where their PTTLs would not: read one after the
 * other, the second is smaller by the time between the reads (milliseconds under a sanitizer), though
 * a script gave both keys the same end.
 */
static long long expiry_of(const struct client *cl, const char *kind)
{
    return key_int(cl, "PEXPIRETIME", kind);
}

/*
 * The replay keys in Redis live as long as the replay cache here: the time the first configuration set,
 * whatever a reload says. Once, a reload from a 300 s window to 3600 s gave them 7200 s, while this
 * instance's own cache kept the first window's time (twice 300 s, and GW_REPLAY_MARGIN).
 */
static void test_shared_reload_keeps_replay_ttl(void **state)
{
    struct env *first, *second;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char cmp[512];
    long long left;

    (void)state;
    if (redis_start() != 0)
        skip();
    first = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp))});
    second = env_reload(first,
                        &(struct env_opts){.cmp = shared_cmp_with(cmp, sizeof(cmp),
                                                                  "\"message_time_window\": \"3600s\", "
                                                                  "\"transaction_ttl\": \"300s\", "
                                                                  "\"max_transactions_per_identity\": 100")});
    cl = (struct client){.env = second};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx));
    left = pttl_of(&cl, "replay");
    assert_true(left > (2 * 300 + GW_REPLAY_MARGIN - 10) * 1000LL);
    assert_true(left <= (2 * 300 + GW_REPLAY_MARGIN) * 1000LL);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(second);
    env_free(first);
}

/*
 * What lies beside a shared record, a lease on it and its deferred request's result, keeps the
 * transactionID reserved while it lives: once, a lease taken when the record had 5 s left outlived the
 * reservation by 25 s, and the result of a call that returned then by the transaction's whole time; a
 * transaction opened meanwhile under the same transactionID would have had its record rewritten or
 * ended by the lease's holder, or been given that result.
 */
static void test_shared_nothing_outlives_reservation(void **state)
{
    static const char tid[] = "nothing outlives its reservation";
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    struct gw_cluster *other;
    struct gw_txn_record rec;
    char err[GW_ERR_LEN] = "";
    long long txn_end;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = env_shared("100ms");
    ctx = shared_waiting(e, &cl, tid);
    redis_age((int)(pttl_of(&cl, "rec") / 1000) - 5); /* the call runs until the record has 5 s left */
    assert_non_null(other = gw_cluster_new(&e->cfg->cmp.state, err)); /* another instance */
    assert_int_equal(gw_cluster_take_record(other, (const unsigned char *)tid, strlen(tid), &rec, err), 0);
    assert_true((txn_end = expiry_of(&cl, "txn")) > 0); /* else the range below is up to UINTMAX_MAX */
    assert_in_range(expiry_of(&cl, "lease"), 1, txn_end);
    gw_txn_record_cleanup(&rec);
    gw_cluster_unlease(other, (const unsigned char *)tid, strlen(tid));
    gw_cluster_free(other);
    slow_gate(1);
    slow_wait_completed(e, 1); /* the result is beside the record */
    assert_true((txn_end = expiry_of(&cl, "txn")) > 0);
    assert_in_range(expiry_of(&cl, "res"), 1, txn_end);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* Two CAs (two_cas_open) behind an engine whose state is shared in the test's Redis; CA1's CRL lists none. */
static unsigned char *two_cas_open_shared(struct two_cas *t, size_t *crl_len)
{
    char cmp[512];
    unsigned char *crl;

    two_cas_open_cmp(t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_CRL | GW_UP_REVOKE,
                     shared_cmp(cmp, sizeof(cmp)));
    crl = crl_of(t->ca1, t->ca1_key, two_ca_now - 60, two_ca_now + 3600, NULL, crl_len);
    fake.crl = crl, fake.crl_len = *crl_len;
    return crl;
}

/*
 * A holder's rr whose revocation Redis does not take (a write it refuses, or its set of them full):
 * the certificate stays revoked at the CA and the rr is answered accepted, revocation_not_kept says
 * why, and this instance still refuses the certificate, in this generation and the next, while its
 * CA's CRL does not list it yet: the set in memory holds it.
 */
static void test_shared_revocation_not_kept(void **state)
{
    static const struct {
        const char *lua, *reason;
    } cases[] = {
        {"return redis.call('SET', KEYS[1], 'not a set')", "refused a command: WRONGTYPE"},
        {"redis.call('DEL', KEYS[1])\n"
         "for i = 1, tonumber(ARGV[1]) do redis.call('ZADD', KEYS[1], 9999999999, i) end\n"
         "return redis.call('ZCARD', KEYS[1])",
         "the shared state keeps"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct two_cas t;
        struct gw_cmp_settings settings;
        struct gw_cmp_engine *first;
        char set[64], pattern[64], max[16], out[64], kept[64], err[GW_ERR_LEN] = "", *logged;
        unsigned char *crl;
        size_t crl_len;

        if (redis_start() != 0)
            skip();
        /* the test Redis keeps its keys (append-only): the last case's revocation of x1, which the set did
           not take, left its mark "done" */
        assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
        crl = two_cas_open_shared(&t, &crl_len);
        snprintf(set, sizeof(set), "unit%d:revoked", (int)getpid());
        snprintf(max, sizeof(max), "%d", GW_DEFAULT_MAX_REVOKED);
        assert_int_equal(
            redis_cmd(out, sizeof(out), 5, (const char *const[]){"EVAL", cases[i].lua, "1", set, max}), 0);
        assert_true(out[0] == '+' || out[0] == ':');
        snprintf(pattern, sizeof(pattern), "unit%d:revoked:*", (int)getpid());
        assert_int_equal(redis_cmd(kept, sizeof(kept), 2, (const char *const[]){"KEYS", pattern}), 0);
        log_capture_start();
        rr_as(&t, t.x1, t.x1_key, t.ca1);
        logged = log_capture_end();
        assert_int_equal(fake.revoke_calls, 1);
        /* this instance keeps it: the other instances find its mark "done" a while, then are left to the CRL
         */
        assert_not_kept(
            logged, t.x1, "error", cases[i].reason,
            "the other instances refuse this certificate at most until the revocation's mark expires "
            "(twice its upstream's timeout plus 15 s), then only once its CA's CRL lists it");
        free(logged);
        assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"KEYS", pattern}), 0);
        assert_string_equal(out, kept); /* none more in Redis */

        ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
              "the signer certificate (serial ");
        first = t.env->engine; /* and the next generation, built after it */
        gw_config_cmp_settings(t.env->cfg, &settings);
        assert_non_null(t.env->engine = gw_cmp_engine_new(&settings, t.env->ups, first, NULL, err));
        gw_cmp_engine_set_clock(t.env->engine, two_ca_clock);
        ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
              "the signer certificate (serial ");
        gw_cmp_engine_free(t.env->engine);
        t.env->engine = first;
        assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"DEL", set}), 0);
        free(crl);
        two_cas_close(&t);
        (void)redis_stop(NULL);
    }
}

/*
 * test_quota_per_tls_client across two instances sharing their state: Redis counts a share by the
 * identity over its TLS client as the instances do (of the senders, those over a TLS client: the
 * test's Redis keeps what other tests left under an identity alone).
 */
static void test_shared_quota_per_tls_client(void **state)
{
    struct quota_sender senders[QUOTA_SENDERS];
    char cmp[512];
    struct env *a, *b;
    X509 *tls2;

    (void)state;
    if (redis_start() != 0)
        skip();
    quota_senders(senders, tls2 = load_cert("signer.pem"));
    /* the recent transactionIDs first: the open transactions' stay recent for the replay window */
    shared_cmp_with(cmp, sizeof(cmp), QUOTA_RECENT_CMP);
    a = env_open(&(struct env_opts){.cmp = cmp});
    b = env_open(&(struct env_opts){.cmp = cmp});
    take_shares(a, b, senders, QUOTA_SENDERS_TLS, 1, "too many recent transactions from ");
    env_free(a);
    env_free(b);
    shared_cmp_with(cmp, sizeof(cmp), QUOTA_OPEN_CMP);
    a = env_open(&(struct env_opts){.cmp = cmp, .confirm = 1});
    b = env_open(&(struct env_opts){.cmp = cmp, .confirm = 1});
    take_shares(a, b, senders, QUOTA_SENDERS_TLS, 0, "too many open transactions for ");
    assert_int_equal(gw_cmp_engine_open_transactions(a->engine), QUOTA_SENDERS_TLS);
    env_free(a);
    env_free(b);
    X509_free(tls2);
}

/*
 * The per-identity caps Redis counts against are the ones the gateway started with, as the table's and
 * the cache's are: a reload from 2 to 1000 applies neither (the reload warns so). An identity holding
 * its share of 2, one transaction on each of two instances, is refused a third on the reloaded one.
 * Once, Redis was given the reloaded cap while the instances kept theirs: the third was served. Twin:
 * the instance not reloaded refuses it too.
 */
static void test_shared_reload_keeps_identity_caps(void **state)
{
    static const struct {
        const char *started, *reloaded, *refusal;
        int implicit; /* recent transactionIDs, not open transactions */
    } caps[] = {
        {QUOTA_RECENT_CMP, QUOTA_CMP "\"max_recent_per_identity\": 1000",
         "too many recent transactions from ", 1},
        {QUOTA_OPEN_CMP, QUOTA_CMP "\"max_transactions_per_identity\": 1000",
         "too many open transactions for ", 0},
    };
    struct quota_sender sender = {"a signature", SIG, NULL};
    char cmp[512], reloaded[512], out[64];

    (void)state;
    if (redis_start() != 0)
        skip();
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        struct env *first, *a, *b;

        print_message("cap: %s\n", caps[i].refusal);
        /* the share starts empty: transactions of this sender that earlier tests left stay in Redis */
        assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
        shared_cmp_with(cmp, sizeof(cmp), caps[i].started);
        first = env_open(&(struct env_opts){.cmp = cmp, .confirm = !caps[i].implicit});
        b = env_open(&(struct env_opts){.cmp = cmp, .confirm = !caps[i].implicit});
        a = env_reload(
            first, &(struct env_opts){.cmp = shared_cmp_with(reloaded, sizeof(reloaded), caps[i].reloaded),
                                      .confirm = !caps[i].implicit});
        take_shares(a, b, &sender, 1, caps[i].implicit, caps[i].refusal);
        assert_false(ir_quota(b, &sender, caps[i].implicit, caps[i].refusal));
        env_free(first); /* the older generation first: the transactions left open are the newer's */
        env_free(a);
        env_free(b);
    }
}

static void revoking_key(const X509 *cert, char *out, size_t cap);

/*
 * cmp.max_revoked caps this instance's set and Redis's alike. With it at 1, behind an upstream that checks
 * no revocation: a revocation Redis refused (a broken set) is kept here alone; the next finds this
 * instance's set full and is kept in Redis alone, which still has every instance refuse it (a warning);
 * the one after finds both full (an error: no instance refuses it once this one forgets it, twice the
 * upstream's timeout and GW_STATE_REVOKING_SLACK_MS after it ended). Each rr is accepted, its revocation
 * stands at the CA, and none kept is dropped for a later one. The full set's branch was once never run by any
 * test.
 */
static void test_shared_revoked_set_full(void **state)
{
    struct two_cas t;
    char cmp[512], set[64], mark[160], out[64], *logged;
    time_t was;

    (void)state;
    if (redis_start() != 0)
        skip();
    /* as test_shared_revocation_not_kept's cases: its last revocation of x1 left its mark "done" */
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    shared_cmp(cmp, sizeof(cmp));
    strncat(cmp, ", \"max_revoked\": 1", sizeof(cmp) - strlen(cmp) - 1);
    two_cas_open_cmp(&t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, cmp);
    local_conf(t.env)->check_revocation = false;
    snprintf(set, sizeof(set), "unit%d:revoked", (int)getpid());
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"SET", set, "not a set"}), 0);
    log_capture_start();
    rr_as(&t, t.x1, t.x1_key, t.ca1);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"DEL", set}), 0);
    rr_as(&t, t.x1b, t.x1b_key, t.ca1);
    rr_as(&t, t.x2, t.x2_key, t.ca2);
    logged = log_capture_end();
    assert_int_equal(fake.revoke_calls, 3);
    assert_not_kept(logged, t.x1b, "warn", TEXT_ONE_KEPT,
                    "this instance refuses this certificate through the shared state alone");
    assert_not_kept(logged, t.x2, "error", TEXT_ONE_KEPT, TEXT_ALL_A_WHILE);
    free(logged);
    /* x1 here, x1b in Redis: both refused; x2, remembered here a while, then left to a CRL this upstream
       does not read (its mark, left "done", gone with its TTL) */
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    ir_as(&t, t.x1b, t.x1b_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    was = two_ca_now;
    two_ca_now += (time_t)((cmp_revoked_mark_ms(local_conf(t.env)->timeout_ms) + 999) / 1000);
    revoking_key(t.x2, mark, sizeof(mark));
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"DEL", mark}), 0);
    ir_as(&t, t.x2, t.x2_key, t.ca2, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    two_ca_now = was;
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"ZCARD", set}), 0);
    assert_string_equal(out, ":1");
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"DEL", set}), 0);
    local_conf(t.env)->check_revocation = true;
    two_cas_close(&t);
}

/* ---- a revocation's mark across the instances of a cluster (revoked.c, cluster.c) ---- */

/* The Redis key of the mark of a revocation of |cert| under way: revoking:<issuer and serial hashed>. */
static void revoking_key(const X509 *cert, char *out, size_t cap)
{
    unsigned char *serial = NULL, md[EVP_MAX_MD_SIZE];
    const unsigned char *name = NULL;
    size_t name_len = 0;
    unsigned int md_len = 0;
    int serial_len = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &serial), n;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    assert_true(serial_len > 0);
    assert_int_equal(X509_NAME_get0_der(X509_get_issuer_name(cert), &name, &name_len), 1);
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    assert_int_equal(EVP_DigestUpdate(ctx, name, name_len), 1);
    assert_int_equal(EVP_DigestUpdate(ctx, serial, (size_t)serial_len), 1);
    assert_int_equal(EVP_DigestFinal_ex(ctx, md, &md_len), 1);
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(serial);
    n = snprintf(out, cap, "unit%d:revoking:", (int)getpid());
    for (int i = 0; i < 16; i++)
        n += snprintf(out + n, cap - (size_t)n, "%02x", md[i]);
}

/* The holder's rr of |cert| (its CA sent along), answered |status| with |fail_bit| and |text|. */
static void rr_answered(struct two_cas *t, X509 *cert, EVP_PKEY *key, X509 *ca, int status, int fail_bit,
                        const char *text)
{
    struct client cl = {.env = t->env};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, cert, key, NULL, NULL, 0);
    STACK_OF(X509) *chain = sk_X509_new_null();

    sk_X509_push(chain, ca);
    assert_int_equal(OSSL_CMP_CTX_set1_untrusted(ctx, chain), 1);
    assert_int_equal(OSSL_CMP_CTX_set1_oldCert(ctx, cert), 1);
    (void)OSSL_CMP_exec_RR_ses(ctx);
    assert_status(ctx, status, fail_bit, text);
    sk_X509_free(chain);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
}

/* Two CAs behind an upstream that revokes and checks no revocation, shared in the test's Redis (emptied);
   each revocation waits 500 ms at most for another. */
static void revoking_open(struct two_cas *t)
{
    char cmp[512], out[64];

    /* the test Redis keeps its keys across the tests (append-only): what an earlier one revoked, out */
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    two_cas_open_cmp(t, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, shared_cmp(cmp, sizeof(cmp)));
    local_conf(t->env)->check_revocation = false;
    local_conf(t->env)->timeout_ms = 500;
}

static struct two_cas revoking_cas;

/* The fixture of the cases of a revocation's mark: the test's Redis, and revoking_open's CAs in *state
   (NULL without a redis-server: the case skips). */
static int revoking_setup(void **state)
{
    *state = NULL;
    if (redis_start() != 0)
        return 0;
    revoking_open(&revoking_cas);
    *state = &revoking_cas;
    return 0;
}

static int revoking_teardown(void **state)
{
    if (*state != NULL)
        two_cas_close(*state);
    return redis_stop(state);
}

static char revoking_at[160]; /* the mark of the revocation the other instance ends, revoked */

/* Another instance ends its revocation 300 ms from now: the certificate in the revoked set, then its mark
 * gone; or, with |arg| (its revoked set full), its mark left "done". */
static void *other_instance_ends(void *arg)
{
    char revoked[160], out[64];

    usleep(300 * 1000);
    if (arg != NULL) {
        assert_int_equal(
            redis_cmd(out, sizeof(out), 4, (const char *const[]){"SET", revoking_at, "done", "KEEPTTL"}), 0);
        return NULL;
    }
    snprintf(revoked, sizeof(revoked), "unit%d:revoked:%s", (int)getpid(), strrchr(revoking_at, ':') + 1);
    assert_int_equal(redis_cmd(out, sizeof(out), 5, (const char *const[]){"SET", revoked, "1", "EX", "600"}),
                     0);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"DEL", revoking_at}), 0);
    return NULL;
}

/*
 * A revocation another instance holds the mark of is waited for: told to retry when that one does not end
 * within the upstream's timeout, answered certRevoked when it ends with the certificate revoked, and sent
 * once the mark of an instance that never ended it (killed during its call) expires. None is sent while the
 * mark holds. Before the mark was shared, each was sent at once, and two instances could revoke one
 * certificate twice.
 */
static void test_shared_revoking_waits_for_other_instance(void **state)
{
    struct two_cas *t = *state;
    char key[160], out[64];
    pthread_t th;

    if (t == NULL)
        skip();
    revoking_key(t->x1, key, sizeof(key));
    assert_int_equal(
        redis_cmd(out, sizeof(out), 5, (const char *const[]){"SET", key, "another", "PX", "60000"}), 0);
    rr_answered(
        t, t->x1, t->x1_key, t->ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
        "the gateway cannot begin this revocation now (another instance's revocation of it did not end "
        "within 500 ms); retry later");
    assert_int_equal(fake.revoke_calls, 0);
    assert_int_equal(audit_count(t->env, "intent", NULL, NULL, NULL), 0);
    /* the other instance revokes it meanwhile */
    snprintf(revoking_at, sizeof(revoking_at), "%s", key);
    local_conf(t->env)->timeout_ms = 5000;
    assert_int_equal(pthread_create(&th, NULL, other_instance_ends, NULL), 0);
    rr_answered(t, t->x1, t->x1_key, t->ca1, OSSL_CMP_PKISTATUS_rejection,
                OSSL_CMP_PKIFAILUREINFO_certRevoked, "the certificate is already revoked");
    pthread_join(th, NULL);
    assert_int_equal(fake.revoke_calls, 0);
    /* the other instance's mark of x1b outlives it by 300 ms */
    revoking_key(t->x1b, key, sizeof(key));
    assert_int_equal(
        redis_cmd(out, sizeof(out), 5, (const char *const[]){"SET", key, "another", "PX", "300"}), 0);
    rr_as(t, t->x1b, t->x1b_key, t->ca1);
    assert_int_equal(fake.revoke_calls, 1);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    assert_string_equal(out, ":0");
}

static char mark_key[160], mark_len[16], mark_ttl[32];

/* As the test CA revokes: the mark's length (RESP: "$32" for an instance's name) and time left, and a copy.
 */
static void read_mark(void)
{
    char saved[176], out[64];

    snprintf(saved, sizeof(saved), "%s-saved", mark_key);
    assert_int_equal(redis_cmd(mark_len, sizeof(mark_len), 2, (const char *const[]){"GET", mark_key}), 0);
    assert_int_equal(redis_cmd(mark_ttl, sizeof(mark_ttl), 2, (const char *const[]){"PTTL", mark_key}), 0);
    assert_int_equal(
        redis_cmd(out, sizeof(out), 4, (const char *const[]){"COPY", mark_key, saved, "REPLACE"}), 0);
}

/* As the test CA revokes: the mark ran out, and another instance took it. */
static void mark_taken(void)
{
    char out[64];

    assert_int_equal(
        redis_cmd(out, sizeof(out), 5, (const char *const[]){"SET", mark_key, "another", "PX", "60000"}), 0);
}

/* Whether the mark |key| holds |value|: ":1" or ":0" into |out|. */
static void mark_is(const char *key, const char *value, char *out, size_t cap)
{
    assert_int_equal(
        redis_cmd(out, cap, 5,
                  (const char *const[]){"EVAL", "return redis.call('GET', KEYS[1]) == ARGV[1] and 1 or 0",
                                        "1", key, value}),
        0);
}

/*
 * The mark of this instance's revocation: taken before the CA is asked, naming the instance, with a TTL of
 * twice the upstream's timeout and GW_STATE_REVOKING_SLACK_MS at most (an instance that dies during its
 * calls holds the certificate no longer), and deleted at its end only while it is still this instance's. A
 * mark of its own left over (its end never reached Redis) is taken again, not waited for. The TTL left as
 * the revocation is sent is more than one timeout and the slack: the status query before it took one
 * timeout of the mark's life at most, the revocation may take another. Once it was one timeout and the
 * slack from the start, and a slow CA let it expire during the revocation, which another instance then
 * sent again.
 */
static void test_shared_revoking_mark_own(void **state)
{
    struct two_cas *t = *state;
    char out[64], saved[176];
    long ttl;

    if (t == NULL)
        skip();
    revoking_key(t->x1, mark_key, sizeof(mark_key));
    fake.during_revoke = read_mark;
    rr_as(t, t->x1, t->x1_key, t->ca1);
    assert_int_equal(fake.revoke_calls, 1);
    assert_string_equal(mark_len, "$32");
    ttl = mark_ttl[0] == ':' ? strtol(mark_ttl + 1, NULL, 10) : -1;
    if (ttl <= 500 + GW_STATE_REVOKING_SLACK_MS || ttl > 2 * 500 + GW_STATE_REVOKING_SLACK_MS)
        fail_msg("the mark's TTL is %s ms", mark_ttl);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", mark_key}), 0);
    assert_string_equal(out, ":0");
    /* another instance took the mark meanwhile: it stays that one's */
    revoking_key(t->x1b, mark_key, sizeof(mark_key));
    fake.during_revoke = mark_taken;
    rr_as(t, t->x1b, t->x1b_key, t->ca1);
    mark_is(mark_key, "another", out, sizeof(out));
    assert_string_equal(out, ":1");
    /* x2's revocation fails at the CA, and its end does not reach Redis: its own mark is taken again */
    revoking_key(t->x2, mark_key, sizeof(mark_key));
    snprintf(saved, sizeof(saved), "%s-saved", mark_key);
    fake.during_revoke = read_mark;
    fake.revoke_fails = 1;
    rr_answered(t, t->x2, t->x2_key, t->ca2, OSSL_CMP_PKISTATUS_rejection, -1, NULL);
    fake.revoke_fails = 0;
    fake.during_revoke = NULL;
    assert_int_equal(
        redis_cmd(out, sizeof(out), 4, (const char *const[]){"COPY", saved, mark_key, "REPLACE"}), 0);
    assert_int_equal(redis_cmd(out, sizeof(out), 3, (const char *const[]){"PEXPIRE", mark_key, "60000"}), 0);
    rr_as(t, t->x2, t->x2_key, t->ca2);
    assert_int_equal(fake.revoke_calls, 4);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", mark_key}), 0);
    assert_string_equal(out, ":0");
}

/*
 * A revocation the shared revoked set cannot keep (cmp.max_revoked reached there) leaves its mark "done" for
 * the rest of its TTL rather than deleting it, and a revocation of the certificate that waited for that mark
 * is answered certRevoked, the CA not asked. Before, the mark went, and the one that waited found nothing
 * in the set and revoked the certificate again. A revocation the CA refused leaves no "done" (the next may
 * revoke it), and one whose mark another instance took meanwhile leaves that mark as it is.
 */
static void test_shared_revoking_done_when_not_kept(void **state)
{
    struct two_cas *t = *state;
    char set[64], key[160], out[64];
    pthread_t th;
    long ttl;

    if (t == NULL)
        skip();
    t->env->cfg->cmp.max_revoked = 1;
    snprintf(set, sizeof(set), "unit%d:revoked", (int)getpid());
    assert_int_equal(
        redis_cmd(out, sizeof(out), 4, (const char *const[]){"ZADD", set, "9999999999", "filler"}), 0);
    revoking_key(t->x1, mark_key, sizeof(mark_key));
    rr_as(t, t->x1, t->x1_key, t->ca1);
    assert_int_equal(fake.revoke_calls, 1);
    mark_is(mark_key, "done", out, sizeof(out));
    assert_string_equal(out, ":1");
    assert_int_equal(redis_cmd(mark_ttl, sizeof(mark_ttl), 2, (const char *const[]){"PTTL", mark_key}), 0);
    ttl = mark_ttl[0] == ':' ? strtol(mark_ttl + 1, NULL, 10) : -1;
    if (ttl <= 0 || ttl > 2 * 500 + GW_STATE_REVOKING_SLACK_MS)
        fail_msg("the done mark's TTL is %s ms", mark_ttl);
    /* the CA refuses x1b: its mark goes */
    revoking_key(t->x1b, mark_key, sizeof(mark_key));
    fake.revoke_fails = 1;
    rr_answered(t, t->x1b, t->x1b_key, t->ca1, OSSL_CMP_PKISTATUS_rejection, -1, NULL);
    fake.revoke_fails = 0;
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", mark_key}), 0);
    assert_string_equal(out, ":0");
    /* x1b revoked, while another instance took the mark: it stays that one's */
    fake.during_revoke = mark_taken;
    rr_as(t, t->x1b, t->x1b_key, t->ca1);
    fake.during_revoke = NULL;
    assert_int_equal(fake.revoke_calls, 3);
    mark_is(mark_key, "another", out, sizeof(out));
    assert_string_equal(out, ":1");
    /* x2: another instance's revocation, which its revoked set did not keep, ends while this one waits */
    revoking_key(t->x2, key, sizeof(key));
    assert_int_equal(
        redis_cmd(out, sizeof(out), 5, (const char *const[]){"SET", key, "another", "PX", "60000"}), 0);
    snprintf(revoking_at, sizeof(revoking_at), "%s", key);
    local_conf(t->env)->timeout_ms = 5000;
    assert_int_equal(pthread_create(&th, NULL, other_instance_ends, "done"), 0);
    rr_answered(t, t->x2, t->x2_key, t->ca2, OSSL_CMP_PKISTATUS_rejection,
                OSSL_CMP_PKIFAILUREINFO_certRevoked, "the certificate is already revoked");
    pthread_join(th, NULL);
    assert_int_equal(fake.revoke_calls, 3);
}

static time_t expires_at; /* the notAfter of the certificate whose revocation cert_expires runs out */

/* As the test CA revokes: the engine's clock passes the certificate's notAfter. */
static void cert_expires(void)
{
    two_ca_now = expires_at;
}

/* How many revoked: entries the test's Redis holds (under the test's prefix). */
static long long revoked_entries(void)
{
    char pattern[64], out[64];

    snprintf(pattern, sizeof(pattern), "unit%d:revoked:*", (int)getpid());
    assert_int_equal(
        redis_cmd(out, sizeof(out), 4,
                  (const char *const[]){"EVAL", "return #redis.call('KEYS', ARGV[1])", "0", pattern}),
        0);
    assert_int_equal(out[0], ':');
    return strtoll(out + 1, NULL, 10);
}

/*
 * A certificate expired on this instance's clock as its revocation is at the CA (the clock 300 s past the
 * notAfter; on Redis's, the certificate has an hour to run) is kept in this instance's set no more (it
 * authenticates nothing here), but it is shared: an instance whose clock is right refuses it until its
 * notAfter. Its mark is deleted, as any shared one's; this instance remembers it too. Before, the
 * revocation was kept nowhere, its mark left "done" for the mark's TTL alone: the other instances let the
 * certificate in for the hour. The twin: x1b, valid here too, kept in the shared set; its mark deleted.
 */
static void test_shared_revoked_when_expired_here(void **state)
{
    struct two_cas *t = *state;
    char out[64];
    time_t was = two_ca_now;
    struct tm tm;

    if (t == NULL)
        skip();
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(t->x1), &tm), 1);
    expires_at = timegm(&tm) + 300;
    revoking_key(t->x1, mark_key, sizeof(mark_key));
    fake.during_revoke = cert_expires;
    rr_as(t, t->x1, t->x1_key, t->ca1);
    fake.during_revoke = NULL;
    two_ca_now = was;
    assert_int_equal(fake.revoke_calls, 1);
    assert_int_equal(revoked_entries(), 2); /* keyed, and by issuer and serial */
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", mark_key}), 0);
    assert_string_equal(out, ":0");
    /* its holder asking again is answered, the CA not asked */
    rr_answered(t, t->x1, t->x1_key, t->ca1, OSSL_CMP_PKISTATUS_rejection,
                OSSL_CMP_PKIFAILUREINFO_certRevoked, "the certificate is already revoked");
    assert_int_equal(fake.revoke_calls, 1);
    /* the twin: x1b, valid, kept in the shared set; its mark deleted */
    revoking_key(t->x1b, mark_key, sizeof(mark_key));
    rr_as(t, t->x1b, t->x1b_key, t->ca1);
    assert_int_equal(fake.revoke_calls, 2);
    assert_int_equal(revoked_entries(), 4);
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", mark_key}), 0);
    assert_string_equal(out, ":0");
}

/*
 * A revocation shared by an instance whose clock runs 120 s ahead of Redis's (within the messageTime window)
 * keeps the certificate in the shared revoked set until its notAfter on Redis's clock, which every instance
 * reads alike, and GW_STATE_GRACE (an instance whose clock lags Redis's takes it as valid that much longer):
 * its entries' TTLs and its score in the counted set end then. Before, the TTL was
 * counted from the instance's own clock (the notAfter less its now), and the entries ended 120 s early on
 * every instance: the certificate authenticated there again before it expired.
 */
static void test_shared_revoked_until_not_after(void **state)
{
    static const char min_ttl[] = "local m = -1\n"
                                  "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do\n"
                                  "  local t = redis.call('TTL', k)\n"
                                  "  if m < 0 or t < m then m = t end\n"
                                  "end\n"
                                  "return m\n";
    static const char score[] = "local s = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
                                "return #s == 2 and tonumber(s[2]) or -1\n";
    struct two_cas *t = *state;
    char pattern[64], set[64], out[64];
    time_t was = two_ca_now, not_after;
    struct tm tm;

    if (t == NULL)
        skip();
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(t->x1), &tm), 1);
    not_after = timegm(&tm);
    two_ca_now = time(NULL) + 120;
    rr_as(t, t->x1, t->x1_key, t->ca1);
    two_ca_now = was;
    assert_int_equal(fake.revoke_calls, 1);
    snprintf(set, sizeof(set), "unit%d:revoked", (int)getpid());
    assert_int_equal(redis_cmd(out, sizeof(out), 4, (const char *const[]){"EVAL", score, "1", set}), 0);
    assert_int_equal(strtoll(out + 1, NULL, 10), (long long)not_after + GW_STATE_GRACE);
    snprintf(pattern, sizeof(pattern), "unit%d:revoked:*", (int)getpid());
    assert_int_equal(redis_cmd(out, sizeof(out), 4, (const char *const[]){"EVAL", min_ttl, "0", pattern}), 0);
    assert_in_range(strtoll(out + 1, NULL, 10), (long long)(not_after + GW_STATE_GRACE - time(NULL)) - 1,
                    (long long)(not_after + GW_STATE_GRACE - time(NULL)) + 1);
}

/*
 * A mark another instance left "done" (its revocation of the certificate stands at the CA, but the shared
 * revoked set did not keep it) refuses that certificate as a credential on every instance while it lives,
 * as it stops a second revocation: an ir signed with it is certRevoked, as for one in the set, though the
 * upstream checks no revocation. Before, the lookup asked the set alone, and the certificate authenticated
 * until its CA's CRL listed it. The twins: a mark naming an instance (a revocation under way, the CA not
 * answered yet) leaves the certificate valid, and so does no mark.
 */
static void test_shared_done_mark_refuses_credential(void **state)
{
    struct two_cas *t = *state;
    char key[160], out[64];

    if (t == NULL)
        skip();
    revoking_key(t->x1, key, sizeof(key));
    assert_int_equal(redis_cmd(out, sizeof(out), 5, (const char *const[]){"SET", key, "done", "PX", "60000"}),
                     0);
    ir_as(t, t->x1, t->x1_key, t->ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
          "the signer certificate (serial ");
    revoking_key(t->x1b, key, sizeof(key));
    assert_int_equal(
        redis_cmd(out, sizeof(out), 5, (const char *const[]){"SET", key, "another", "PX", "60000"}), 0);
    ir_as(t, t->x1b, t->x1b_key, t->ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    ir_as(t, t->x2, t->x2_key, t->ca2, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    assert_int_equal(fake.revoke_calls, 0);
}

/*
 * The test Redis's default user may use the test's keys but write the revocations' marks (it reads them, as
 * the credential's lookup does), or again all keys.
 */
static void marks_forbidden(bool forbidden)
{
    char a[64], b[64], c[64], d[64], out[128];
    int pid = (int)getpid();

    snprintf(a, sizeof(a), "~unit%d:[^r]*", pid);
    snprintf(b, sizeof(b), "~unit%d:re[^v]*", pid);
    snprintf(c, sizeof(c), "~unit%d:revoked*", pid);
    snprintf(d, sizeof(d), "%%R~unit%d:revoking*", pid);
    if (forbidden)
        assert_int_equal(redis_cmd(out, sizeof(out), 6,
                                   (const char *const[]){"ACL", "SETUSER", "default", "resetkeys", a, b}),
                         0);
    if (forbidden)
        assert_int_equal(
            redis_cmd(out, sizeof(out), 5, (const char *const[]){"ACL", "SETUSER", "default", c, d}), 0);
    else
        assert_int_equal(
            redis_cmd(out, sizeof(out), 4, (const char *const[]){"ACL", "SETUSER", "default", "allkeys"}), 0);
    assert_string_equal(out, "+OK");
}

/*
 * Where the shared state does not let the mark be taken (here its ACL lets the key be read, not written; as
 * well Redis gone between the credential's lookup and the mark), the holder's rr sends nothing and is told to
 * retry (systemUnavail), and a withdrawal goes ahead all the same, logged: the certificate its client never
 * took must not stay valid, and nobody would ask again. Before, both were sent unmarked.
 */
static void test_shared_revoking_unmarkable(void **state)
{
    struct two_cas *t = *state;
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char cmp[512], *logged;

    if (t == NULL)
        skip();
    marks_forbidden(true);
    rr_answered(
        t, t->x1, t->x1_key, t->ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
        "the gateway cannot begin this revocation now (the cluster's shared state cannot say whether it "
        "was revoked, nor mark it as under way); retry later");
    assert_int_equal(fake.revoke_calls, 0);
    assert_int_equal(audit_count(t->env, "intent", NULL, NULL, NULL), 0);
    e = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
    cl = (struct client){.env = e};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    OSSL_CMP_CTX_set_certConf_cb(ctx, reject_cert);
    log_capture_start();
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_int_equal(revoke_calls(e), 1);
    logged = log_capture_end();
    marks_forbidden(false);
    if (strstr(logged, "\"event\":\"revoke_not_marked\"") == NULL)
        fail_msg("no revoke_not_marked in: %s", logged);
    assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), 1);
    free(logged);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * With Redis down, whether a credential was revoked through another instance cannot be looked up: the
 * request is refused with systemUnavail, though its CA's CRL clears it, never taken as not revoked. The
 * client is not told where Redis is or what it answered (the log is, as an error like every other
 * shared-state failure: it once was a warning of its own).
 */
static void test_shared_revoked_lookup_down(void **state)
{
    struct two_cas t;
    unsigned char *crl;
    size_t crl_len;
    char out[64], *logged;

    (void)state;
    if (redis_start() != 0)
        skip();
    /* the test Redis keeps its keys: test_shared_revoked_set_full's revocation of x1 left its mark "done" */
    assert_int_equal(redis_cmd(out, sizeof(out), 1, (const char *const[]){"FLUSHALL"}), 0);
    crl = two_cas_open_shared(&t, &crl_len);
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
    (void)redis_stop(NULL);
    log_capture_start();
    ir_as(&t, t.x1, t.x1_key, t.ca1, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
          "the revocation status of the signer certificate cannot be checked now (whether it was revoked "
          "through this gateway cannot be looked up); retry later");
    logged = log_capture_end();
    if (strstr(logged, "\"level\":\"error\",\"event\":\"shared_state_unavailable\"") == NULL ||
        strstr(logged, "\"certificate\":\"signer\"") == NULL || strstr(logged, "status_unknown") != NULL)
        fail_msg("no shared_state_unavailable error for the revocation lookup in: %s", logged);
    free(logged);
    free(crl);
    two_cas_close(&t);
}

/* slow.before_done: the shared state goes away while the CA signs. */
static void redis_gone(struct gw_sign_result *res)
{
    (void)res;
    (void)redis_stop(NULL);
}

/*
 * The shared state gone after the transaction was opened, as the CA signs: whether the certificate's
 * serial is one revoked through the cluster cannot be looked up, so it is not released (systemUnavail,
 * retry later) and is withdrawn as any certificate not released.
 */
static void test_shared_serial_unchecked(void **state)
{
    struct env *e;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char *logged;

    (void)state;
    if (redis_start() != 0)
        skip();
    e = env_shared(NULL);
    cl = (struct client){.env = e};
    slow_revokes(e);
    slow.before_done = redis_gone;
    slow_gate(1);
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    log_capture_start();
    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    logged = log_capture_end();
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                  "whether a certificate with this issuer name and serial ");
    assert_status(
        ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
        " was revoked through this gateway cannot be checked now; it was not released: retry later");
    if (strstr(logged, "\"event\":\"shared_state_unavailable\"") == NULL ||
        strstr(logged, "\"certificate\":\"issued\"") == NULL)
        fail_msg("no shared_state_unavailable error for the serial's lookup in: %s", logged);
    free(logged);
    assert_int_equal(audit_count(e, "rejected", NULL, "serial", ""), 1);
    assert_int_equal(audit_count(e, "issued", NULL, NULL, NULL), 0);
    assert_int_equal(revoke_calls(e), 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* "poll_after": a duration below the upstream's timeout. */
static void test_poll_config(void **state)
{
    static const struct {
        const char *value, *err;
    } cases[] = {
        {"\"9s\"", NULL},
        {"\"10s\"", "is not below the timeout of upstream"},
        {"\"1h\"", "is not below the timeout"},
        {"true", "expected a duration"},
        {"\"-1s\"", "expected a duration"},
        {"\"soon\"", "expected a duration"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char extra[64], err[GW_ERR_LEN] = "", *json;
        struct gw_config *cfg;

        snprintf(extra, sizeof(extra), "\"poll_after\": %s", cases[i].value);
        json = env_json(&(struct env_opts){.cmp = CMP_DEFAULTS, .role_extra = extra});
        cfg = gw_config_parse(json, strlen(json), dir, "test.json", err);
        if (cases[i].err == NULL) {
            assert_non_null(cfg);
        } else {
            assert_null(cfg);
            if (strstr(err, cases[i].err) == NULL || strstr(err, "poll_after") == NULL)
                fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].value, err, cases[i].err);
        }
        gw_config_free(cfg);
        free(json);
    }
}

/* A client of |cl| that signs with the demo client certificate, or (PBM) uses the demo-device reference. */
static OSSL_CMP_CTX *demo_client(struct client *cl, enum prot prot)
{
    return prot == SIG ? client_new(cl, SIG, client_cert, client_key, NULL, NULL, 0)
                       : client_new(cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
}

/* The files a reload's configuration points at instead of the demo's (test_reload_continuing). */
static void write_reload_files(void)
{
    EVP_PKEY *ca_key = load_key("ca.key"), *other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *other = self_signed(other_key, "cmpgw test other CA");
    char *pem = tu_pem_of(other), path[128];
    size_t len = 0;
    unsigned char *crl = crl_of(ca_cert, ca_key, time(NULL) - 60, time(NULL) + 3600, client_cert, &len);

    write_text("other-ca.pem", pem);
    write_crls("client-crl.pem", &crl, &len, 1);
    write_text("pbm2.secret", "a rotated secret of the demo-device reference\n");
    snprintf(path, sizeof(path), "%s/pbm2.secret", dir);
    assert_int_equal(chmod(path, 0600), 0);
    free(crl);
    OPENSSL_free(pem);
    X509_free(other);
    EVP_PKEY_free(other_key);
    EVP_PKEY_free(ca_key);
}

static struct env *reload_to;

static OSSL_CMP_MSG *certconf_after_reload(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    (void)ctx;
    if (cl->exchanges == 1)
        cl->env = reload_to;
    return req;
}

/*
 * A reload between an ir and its certConf: the certConf is held to the configuration in force when
 * it arrives, not the one the ir began under. One that takes the sender's right away is refused and
 * closes the transaction, its certificate withdrawn through the upstream that issued it; once, each
 * of these certConfs confirmed the certificate. The certConf is its transaction's own: a refusal the
 * operator's reload caused does not count against the client's address (once, a rotated secret or
 * trust anchor did, badMessageCheck; a deleted PBM reference did too, and left the transaction open).
 */
static void test_reload_continuing(void **state)
{
    static const struct {
        const char *what;
        enum prot prot;
        const char *role_extra;
        const char *replace[8];
        int fail_bit; /* -1: confirmed */
        const char *text;
        const char *logged;  /* the reason of its not_authorized log line, if it has one */
        const char *refused; /* the reason of its txn_sender_refused log line, if refused */
    } cases[] = {
        {"nothing changed", SIG, NULL, {NULL}, -1, NULL, NULL, NULL},
        {"nothing changed, PBM", PBM, NULL, {NULL}, -1, NULL, NULL, NULL},
        {"signer no longer allowed",
         SIG,
         "\"authorization\": {\"signer_subjects\": [\"/O=cmpgw demo/CN=another-client\"]}",
         {NULL},
         OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "is not allowed on role default",
         "signer_subject",
         "signer_subject"},
        {"trust anchor replaced",
         SIG,
         NULL,
         {"\"ca_file\": \"ca.pem\"", "\"ca_file\": \"other-ca.pem\""},
         OSSL_CMP_PKIFAILUREINFO_signerNotTrusted,
         "the signer certificate no longer chains to a CA trusted on this route (the configuration was "
         "reloaded after this transaction began): start a new transaction with credentials the route trusts",
         NULL,
         "txn_signer_untrusted"},
        {"signer on the trust's new CRL",
         SIG,
         NULL,
         {"\"revocation\": \"none\"", "\"crl_file\": \"client-crl.pem\""},
         OSSL_CMP_PKIFAILUREINFO_signerNotTrusted,
         "the signer certificate no longer chains to a CA trusted on this route (the configuration was "
         "reloaded after this transaction began): start a new transaction with credentials the route trusts",
         NULL,
         "txn_signer_untrusted"},
        {"PBM reference taken off the role",
         PBM,
         NULL,
         {"\"pbm\": [\"demo-device\"],", ""},
         OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "PBM reference demo-device is not accepted on role default",
         "pbm_not_accepted",
         "pbm_not_accepted"},
        {"PBM secret rotated",
         PBM,
         NULL,
         {"pbm.secret", "pbm2.secret"},
         OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "the secret of this PBM reference was changed by a configuration reload after this transaction "
         "began: "
         "start a new transaction with the current secret",
         NULL,
         "txn_secret_changed"},
        {"PBM reference deleted",
         PBM,
         NULL,
         {"\"pbm\": [\"demo-device\"],", "", "\"demo-device\": { \"secret_file\": \"pbm.secret\" }",
          "\"other-device\": { \"secret_file\": \"pbm2.secret\" }"},
         OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "this PBM reference was removed by a configuration reload after this transaction began: start a new "
         "transaction with a reference the route accepts",
         NULL,
         "txn_secret_removed"},
        {"role and its upstream removed",
         SIG,
         NULL,
         {"\"default\": {", "\"renamed\": {", "role:default", "role:renamed", "\"local\": {", "\"other\": {",
          "\"upstream\": \"local\"", "\"upstream\": \"other\""},
         OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "role default was removed by a configuration reload after this transaction began: enrol again on a "
         "route that exists",
         NULL,
         "txn_role_removed"},
    };

    (void)state;
    write_reload_files();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
        struct client cl = {.env = e, .tamper = certconf_after_reload};
        OSSL_CMP_CTX *ctx = demo_client(&cl, cases[i].prot);
        X509 *cert;
        char *logged;

        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN); /* it counts revocations */
        reload_to = env_reload(
            e, &(struct env_opts){.cmp = CMP_DEFAULTS,
                                  .confirm = 1,
                                  .role_extra = cases[i].role_extra,
                                  .replace = {cases[i].replace[0], cases[i].replace[1], cases[i].replace[2],
                                              cases[i].replace[3], cases[i].replace[4], cases[i].replace[5],
                                              cases[i].replace[6], cases[i].replace[7]}});
        log_capture_start();
        log_level(GW_LOG_INFO);
        cert = OSSL_CMP_exec_IR_ses(ctx);
        logged = log_capture_end();
        if (cases[i].logged != NULL && !logged_reason(logged, "not_authorized", cases[i].logged))
            fail_msg("%s: no not_authorized line with reason %s in: %s", cases[i].what, cases[i].logged,
                     logged);
        if (cases[i].refused != NULL && !logged_reason(logged, "txn_sender_refused", cases[i].refused))
            fail_msg("%s: no txn_sender_refused line with reason %s in: %s", cases[i].what, cases[i].refused,
                     logged);
        free(logged);
        if (cases[i].fail_bit < 0) {
            if (cert == NULL)
                fail_msg("%s: not confirmed", cases[i].what);
            assert_status(ctx, OSSL_CMP_PKISTATUS_accepted, -1, NULL);
        } else {
            if (cert != NULL)
                fail_msg("%s: confirmed", cases[i].what);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, cases[i].fail_bit, cases[i].text);
        }
        assert_int_equal(cl.exchanges, 2);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
        /* recorded, and withdrawn through the upstream that issued it, by the engine the ir began under */
        assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), cases[i].fail_bit < 0);
        assert_int_equal(audit_count(e, "rejected", NULL, NULL, NULL), cases[i].fail_bit >= 0);
        assert_int_equal(revoke_calls(e), cases[i].fail_bit >= 0);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), cases[i].fail_bit >= 0);
        if (e->auth_failures + reload_to->auth_failures != 0)
            fail_msg("%s: counted as a failed authentication", cases[i].what);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(reload_to); /* not the last: the transactions stay with the engine they began under */
        env_free(e);
    }
}

/* A certConf after the reload, protected with neither the old nor the new secret of its reference. */
static OSSL_CMP_MSG *forged_after_reload(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    static const char guess[] = "a guess at the secret of the demo-device reference";

    if (cl->exchanges != 1)
        return req;
    cl->env = reload_to;
    assert_int_equal(OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *)guess, sizeof(guess) - 1), 1);
    assert_int_equal(OSSL_CMP_MSG_update_transactionID(ctx, req), 1);
    return req;
}

static const char *unknown_txn_ref;

/* A certConf for a transactionID nobody opened, protected with a guess, naming |unknown_txn_ref|. */
static OSSL_CMP_MSG *certconf_unknown_txn(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    static const char guess[] = "a guess at the secret";

    if (cl->exchanges != 1)
        return req;
    assert_int_equal(OSSL_CMP_CTX_set1_transactionID(ctx, NULL), 1); /* a fresh one on update */
    assert_int_equal(OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)unknown_txn_ref,
                                                      strlen(unknown_txn_ref)),
                     1);
    assert_int_equal(OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *)guess, sizeof(guess) - 1), 1);
    assert_int_equal(OSSL_CMP_MSG_update_transactionID(ctx, req), 1);
    return req;
}

/*
 * A certConf or pollReq for no open transaction is answered alike whether its PBM reference is known
 * or not: else a client without any secret could tell which references exist. Nothing was checked,
 * and it counts against its address for neither: after a restart, the transaction's expiry or a reload
 * it is its own client's, and a fleet behind one address must not lose its budget to them.
 */
static void test_no_txn_hides_references(void **state)
{
    static const char *const refs[] = {"demo-device", "no-such-device"};

    (void)state;
    for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
        struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
        struct client cl = {.env = e, .tamper = certconf_unknown_txn};
        OSSL_CMP_CTX *ctx = client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);

        unknown_txn_ref = refs[i];
        if (OSSL_CMP_exec_IR_ses(ctx) != NULL)
            fail_msg("%s: confirmed", refs[i]);
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badRequest,
                      "no open transaction");
        if (e->auth_failures != 0)
            fail_msg("%s: %d failed authentications counted", refs[i], e->auth_failures);
        gw_cmp_engine_expire(e->engine, time(NULL) + 301);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(e);
    }
}

/*
 * A certConf of no open transaction costs its address nothing, and the gateway no decoding of its extraCerts
 * either (however many certificates no one sent before it carries): one whose extraCerts hold no certificate
 * gets the same answer. A message that goes on to be authenticated, an ir, is refused as a body that does
 * not decode, counted, as before.
 */
static void test_extra_certs_decoded_late(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e, .tamper = keep_certconf};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    unsigned char *bad;
    size_t len;
    int http;

    (void)state;
    assert_non_null(OSSL_CMP_exec_IR_ses(ctx)); /* confirmed: nothing is open */
    send_held(&cl, "error", "no open transaction");
    bad = bad_extra_certs(cl.held, cl.held_len, &len);
    OPENSSL_free(cl.held);
    cl.held = bad;
    cl.held_len = len;
    send_held(&cl, "error", "no open transaction");
    assert_int_equal(e->auth_failures, 0);
    bad = bad_extra_certs(cl.first_req, cl.first_req_len, &len);
    assert_null(exchange(e, bad, len, &http, &(size_t){0}));
    assert_int_equal(http, 400);
    assert_int_equal(e->auth_failures, 1);
    OPENSSL_free(bad);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/*
 * test_extra_certs_decoded_late for an error message: of an open transaction, its extraCerts are decoded
 * before it is authenticated (holding no certificate: a body that does not decode, counted, the transaction
 * left open), and its own aborts it; of none, it is refused as a certConf of none is, uncounted, whatever
 * its extraCerts hold, for it has nothing to abort. Once, it was authenticated as a request first: its junk
 * extraCerts an HTTP 400, counted, and the error itself answered pkiconf.
 */
static void test_error_extra_certs_decoded_late(void **state)
{
    struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
    struct client cl = {.env = e, .tamper = keep_drop_error}, dummy = {.env = e};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    unsigned char *bad;
    size_t len;
    int http;

    (void)state;
    env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
    cl.other = client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0); /* tamper_error's signer */
    assert_null(OSSL_CMP_exec_IR_ses(ctx)); /* its error message kept, not sent */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    bad = bad_extra_certs(cl.held, cl.held_len, &len);
    assert_null(exchange(e, bad, len, &http, &(size_t){0}));
    assert_int_equal(http, 400);
    assert_int_equal(e->auth_failures, 1);
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
    send_held(&cl, "pkiconf", NULL); /* its own: aborted */
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_int_equal(audit_count(e, "rejected_by_client", NULL, NULL, NULL), 1);
    send_held(&cl, "error", "no open transaction");
    OPENSSL_free(cl.held);
    cl.held = bad;
    cl.held_len = len;
    send_held(&cl, "error", "no open transaction");
    assert_int_equal(e->auth_failures, 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(e);
}

/* The replacements of a reload that gives the demo trust another anchor (write_reload_files). */
static const char *const anchor[8] = {"\"ca_file\": \"ca.pem\"", "\"ca_file\": \"other-ca.pem\""};

/* The replacements of a reload that rotates the secret of the demo-device reference, or deletes it. */
static const char *const rotated[8] = {"pbm.secret", "pbm2.secret"};
static const char *const deleted[8] = {"\"pbm\": [\"demo-device\"],", "",
                                       "\"demo-device\": { \"secret_file\": \"pbm.secret\" }",
                                       "\"other-device\": { \"secret_file\": \"pbm2.secret\" }"};

/*
 * A reload rotates or deletes the PBM reference of an open transaction: a certConf that is not the
 * transaction's own (a guessed secret, or the right one over another TLS client's connection) is
 * refused as a failed protection, which counts against its address, and the transaction stays open
 * for its client. Only its own message is excused (test_reload_continuing).
 */
static void test_reload_foreign_continuing(void **state)
{
    static const struct {
        const char *what;
        const char *const *replace;
        int other_tls;
        const char *text;
    } cases[] = {
        {"secret rotated, guessed", rotated, 0,
         "could not be verified against the signer of this transaction"},
        {"reference deleted, guessed", deleted, 0, "PBM protection could not be verified"},
        {"reference deleted, another TLS client", deleted, 1, "PBM protection could not be verified"},
    };

    (void)state;
    write_reload_files();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const *rp = cases[i].replace;
        struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
        struct client cl = {.env = e,
                            .tamper = cases[i].other_tls ? certconf_after_reload : forged_after_reload,
                            .tls_first = client_cert,
                            .tls_later = cases[i].other_tls ? rogue_cert : NULL};
        OSSL_CMP_CTX *ctx = client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);

        reload_to = env_reload(
            e, &(struct env_opts){.cmp = CMP_DEFAULTS,
                                  .confirm = 1,
                                  .replace = {rp[0], rp[1], rp[2], rp[3], rp[4], rp[5], rp[6], rp[7]}});
        if (OSSL_CMP_exec_IR_ses(ctx) != NULL)
            fail_msg("%s: confirmed", cases[i].what);
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                      cases[i].text);
        if (reload_to->auth_failures != 1)
            fail_msg("%s: %d failed authentications counted, want 1", cases[i].what,
                     reload_to->auth_failures);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 1);
        assert_int_equal(audit_count(e, "rejected", NULL, NULL, NULL), 0);
        gw_cmp_engine_expire(e->engine, time(NULL) + 301);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(reload_to);
        env_free(e);
    }
}

/* An error message in place of the certConf, sent after the reload: the client gives its certificate up. */
static OSSL_CMP_MSG *error_after_reload(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    return tamper_error(ctx, certconf_after_reload(ctx, req, cl), cl);
}

/*
 * A reload between an ir and the error message its client gives the certificate up with: the message
 * is judged by its transaction's pin, as a certConf is, not by the running configuration. Its own (the
 * secret or signer the transaction began with, over its TLS client) aborts it, the certificate
 * withdrawn, and counts against no one; once, a deleted reference was refused as pbm_failed, and a
 * rotated secret or a trust anchor taken away failed the protection, all counted and leaving the
 * transaction to its TTL. Another's (a guessed secret, another TLS client) is refused as ever, counted,
 * and leaves the transaction open.
 */
static void test_reload_error_aborts(void **state)
{
    static const char guess[] = "a guess at the secret of the demo-device reference";
    static const struct {
        const char *what;
        enum prot prot;
        const char *const *replace;
        int guessed, other_tls;
        const char *text; /* NULL: aborted */
    } cases[] = {
        {"reference deleted", PBM, deleted, 0, 0, NULL},
        {"secret rotated", PBM, rotated, 0, 0, NULL},
        {"trust anchor replaced", SIG, anchor, 0, 0, NULL},
        {"reference deleted, guessed", PBM, deleted, 1, 0, "PBM protection could not be verified"},
        {"reference deleted, another TLS client", PBM, deleted, 0, 1, "PBM protection could not be verified"},
    };

    (void)state;
    write_reload_files();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const *rp = cases[i].replace;
        const unsigned char *secret = cases[i].guessed ? (const unsigned char *)guess : pbm_secret;
        size_t secret_len = cases[i].guessed ? sizeof(guess) - 1 : pbm_secret_len;
        int aborted = cases[i].text == NULL;
        struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
        struct client cl = {.env = e,
                            .tamper = error_after_reload,
                            .tls_first = client_cert,
                            .tls_later = cases[i].other_tls ? rogue_cert : NULL},
                      dummy = {.env = e};
        OSSL_CMP_CTX *ctx = demo_client(&cl, cases[i].prot);
        X509 *cert;

        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
        cl.other = cases[i].prot == SIG
                       ? client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0)
                       : client_new(&dummy, PBM, NULL, NULL, "demo-device", secret, secret_len);
        reload_to = env_reload(
            e, &(struct env_opts){.cmp = CMP_DEFAULTS,
                                  .confirm = 1,
                                  .replace = {rp[0], rp[1], rp[2], rp[3], rp[4], rp[5], rp[6], rp[7]}});
        /* the pkiconf answering the error is taken by the client for its certConf's */
        cert = OSSL_CMP_exec_IR_ses(ctx);
        assert_int_equal(cl.exchanges, 2);
        if (aborted && cert == NULL)
            fail_msg("%s: not aborted", cases[i].what);
        if (!aborted) {
            assert_null(cert);
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                          cases[i].text);
        }
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), !aborted);
        assert_int_equal(audit_count(e, "rejected_by_client", NULL, NULL, NULL), aborted);
        assert_int_equal(revoke_calls(e), aborted);
        if (e->auth_failures + reload_to->auth_failures != !aborted)
            fail_msg("%s: %d failed authentications counted, want %d", cases[i].what,
                     e->auth_failures + reload_to->auth_failures, !aborted);
        gw_cmp_engine_expire(e->engine, time(NULL) + 301);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(reload_to);
        env_free(e);
    }
}

/* What test_reload_path_removed sends, and from which exchange on its path is one the reload took away. */
static OSSL_CMP_MSG *(*gone_path_tamper)(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl);
static struct env *gone_path_env;
static int gone_path_at;

#define GONE_404 "unknown path /roles/default/cmp: CMP is served at /cmp"

static OSSL_CMP_MSG *on_gone_path(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl)
{
    if (gone_path_tamper != NULL)
        req = gone_path_tamper(ctx, req, cl);
    if (cl->exchanges == gone_path_at) { /* the listener hands it to the retired engine that has the path */
        cl->env = gone_path_env;
        gone_path_env->gone = GONE_404;
    }
    return req;
}

/*
 * A reload takes away the path of a transaction's role: the listener hands what comes on it to the
 * engine of the retired configuration that still serves it. The transaction's own certConf is refused
 * as its role were removed, closing it and withdrawing its certificate, its own error message aborts it,
 * both uncounted; anything else (a new ir, a guessed secret, another TLS client, an unknown
 * transactionID) gets the 404 of an unknown path, uncounted too, and the transaction stays open for
 * its client. Once, the listener answered every one of them 404, and the certificate stayed valid.
 */
static void test_reload_path_removed(void **state)
{
    enum expect { ROLE_REMOVED, ABORTED, NOT_FOUND };
    static const struct {
        const char *what;
        enum prot prot;
        OSSL_CMP_MSG *(*tamper)(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG *req, struct client *cl);
        int at, other_tls;
        enum expect expect;
    } cases[] = {
        {"own certConf", SIG, NULL, 1, 0, ROLE_REMOVED},
        {"own certConf, PBM", PBM, NULL, 1, 0, ROLE_REMOVED},
        {"own error message", PBM, tamper_error, 1, 0, ABORTED},
        {"new ir", SIG, NULL, 0, 0, NOT_FOUND},
        {"guessed secret", PBM, forged_after_reload, 1, 0, NOT_FOUND},
        {"another TLS client", PBM, NULL, 1, 1, NOT_FOUND},
        {"unknown transactionID", PBM, certconf_unknown_txn, 1, 0, NOT_FOUND},
    };

    (void)state;
    unknown_txn_ref = "demo-device";
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env *e = env_open(&(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
        struct client cl = {.env = e,
                            .tamper = on_gone_path,
                            .tls_first = client_cert,
                            .tls_later = cases[i].other_tls ? rogue_cert : NULL},
                      dummy = {.env = e};
        OSSL_CMP_CTX *ctx = demo_client(&cl, cases[i].prot);
        enum expect want = cases[i].expect;
        X509 *cert;

        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
        if (cases[i].tamper == tamper_error) /* it re-protects the error message */
            cl.other = client_new(&dummy, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
        reload_to = env_reload(e, &(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
        gone_path_tamper = cases[i].tamper;
        gone_path_env = e;
        gone_path_at = cases[i].at;
        cert = OSSL_CMP_exec_IR_ses(ctx);
        if ((cert != NULL) != (want == ABORTED)) /* the pkiconf is taken for the certConf's */
            fail_msg("%s: %s", cases[i].what, cert != NULL ? "confirmed" : "not aborted");
        if (want == ROLE_REMOVED)
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                          "role default was removed by a configuration reload after this transaction began: "
                          "enrol again on a route that exists");
        if (e->gone_answers != (want == NOT_FOUND))
            fail_msg("%s: %d answers were the 404 of an unknown path", cases[i].what, e->gone_answers);
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), want == NOT_FOUND && cases[i].at == 1);
        assert_int_equal(audit_count(e, "rejected", NULL, NULL, NULL), want == ROLE_REMOVED);
        assert_int_equal(audit_count(e, "rejected_by_client", NULL, NULL, NULL), want == ABORTED);
        assert_int_equal(revoke_calls(e), want != NOT_FOUND);
        if (e->auth_failures + reload_to->auth_failures != 0)
            fail_msg("%s: counted as a failed authentication", cases[i].what);
        gw_cmp_engine_expire(e->engine, time(NULL) + 301);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(reload_to);
        env_free(e);
    }
}

/*
 * The replacements of a reload that renames the default role, leaves it no trust, or takes the
 * demo-device reference off it.
 */
static const char *const renamed[8] = {"\"default\": {", "\"renamed\": {", "role:default", "role:renamed"};
static const char *const untrusting[8] = {"\"trust\": [\"demo\"],", "\"trust\": [],"};
static const char *const off_role[8] = {"\"pbm\": [\"demo-device\"],", ""};
static const char *const unchanged[8] = {NULL};

/* How a certConf reaches the reloaded instance of test_shared_reload_continuing. */
enum over_tls { OVER_BOUND, OVER_OTHER, OVER_NONE };

/*
 * A reload of one instance rotates a PBM secret, deletes a PBM reference, replaces the trust anchor,
 * removes the role, takes the signer or the PBM reference off the role's authorization, or leaves the
 * role no trust, for a transaction another instance began; its certConf reaches the reloaded instance,
 * which has no copy of it. Over the TLS client the record binds the transaction to, the message is its
 * own: answered as on a single gateway (test_reload_continuing), costing its address nothing, the
 * transaction closed and its certificate withdrawn. Over another TLS client, or when the record binds
 * none (the instance cannot tell who sends it then), nothing closes and the answer is today's. Once,
 * the rotation was badMessageCheck (a reload blocked a NAT'd fleet), the no-trust role's too, and every
 * other "no open transaction", the transaction left open to its TTL.
 */
static void test_shared_reload_continuing(void **state)
{
    static const struct {
        const char *what;
        enum prot prot;
        const char *const *replace;
        const char *role_extra;
        int fail_bit;
        const char *text, *other, *none; /* the answer over the bound TLS client, another, none */
        int other_counted, none_counted;
    } cases[] = {
        {"PBM secret rotated", PBM, rotated, NULL, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "the secret of this PBM reference was changed by a configuration reload after this transaction "
         "began: start a new transaction with the current secret",
         "was begun over a TLS connection with another client certificate",
         "could not be verified against the signer of this transaction", 0, 1},
        {"PBM reference deleted", PBM, deleted, NULL, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "this PBM reference was removed by a configuration reload after this transaction began: start a new "
         "transaction with a reference the route accepts",
         "PBM protection could not be verified", "no open transaction", 1, 0},
        {"trust anchor replaced", SIG, anchor, NULL, OSSL_CMP_PKIFAILUREINFO_signerNotTrusted,
         "the signer certificate no longer chains to a CA trusted on this route (the configuration was "
         "reloaded after this transaction began): start a new transaction with credentials the route trusts",
         "was begun over a TLS connection with another client certificate", "no open transaction", 0, 0},
        {"role removed", SIG, renamed, NULL, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "role default was removed by a configuration reload after this transaction began: enrol again on a "
         "route that exists",
         "was begun over a TLS connection with another client certificate", "no open transaction", 0, 0},
        {"role removed, PBM", PBM, renamed, NULL, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "role default was removed by a configuration reload after this transaction began",
         "was begun over a TLS connection with another client certificate", "no open transaction", 0, 0},
        {"signer no longer allowed", SIG, unchanged,
         "\"authorization\": {\"signer_subjects\": [\"/O=cmpgw demo/CN=another-client\"]}",
         OSSL_CMP_PKIFAILUREINFO_notAuthorized, "is not allowed on role default",
         "was begun over a TLS connection with another client certificate", "is not allowed on role default",
         0, 0},
        {"PBM reference taken off the role", PBM, off_role, NULL, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
         "PBM reference", "was begun over a TLS connection with another client certificate",
         "no open transaction", 0, 0},
        {"role left no trust", SIG, untrusting, NULL, OSSL_CMP_PKIFAILUREINFO_signerNotTrusted,
         "the signer certificate no longer chains to a CA trusted on this route",
         "was begun over a TLS connection with another client certificate", "no open transaction", 0, 0},
    };

    (void)state;
    if (redis_start() != 0)
        skip();
    write_reload_files();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (enum over_tls over = OVER_BOUND; over <= OVER_NONE; over++) {
            const char *const *rp = cases[i].replace;
            char cmp[512], key[160], out[64];
            struct env *a = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
            struct env *b0 = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
            struct client cl = {.env = a,
                                .tamper = certconf_after_reload,
                                .tls_first = over != OVER_NONE ? client_cert : NULL,
                                .tls_later = over == OVER_OTHER ? rogue_cert : NULL};
            OSSL_CMP_CTX *ctx =
                cases[i].prot == SIG
                    ? client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0)
                    : client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);

            print_message("case: %s, over %s\n", cases[i].what,
                          over == OVER_BOUND   ? "its TLS client"
                          : over == OVER_OTHER ? "another"
                                               : "none");
            reload_to = env_reload(
                b0, &(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)),
                                       .confirm = 1,
                                       .role_extra = cases[i].role_extra,
                                       .replace = {rp[0], rp[1], rp[2], rp[3], rp[4], rp[5], rp[6], rp[7]}});
            env_fake(a, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
            env_fake(reload_to, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN); /* it counts */
            if (OSSL_CMP_exec_IR_ses(ctx) != NULL)
                fail_msg("confirmed");
            assert_int_equal(cl.exchanges, 2); /* the ir to |a|, the certConf to the reloaded instance */
            record_key(&cl, key, sizeof(key));
            assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
            if (over == OVER_BOUND) /* its own: closed on every instance, costing its address nothing */
                assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, cases[i].fail_bit, cases[i].text);
            else /* still open for its client */
                assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, -2,
                              over == OVER_OTHER ? cases[i].other : cases[i].none);
            assert_string_equal(out, over == OVER_BOUND ? ":0" : ":1");
            assert_int_equal(reload_to->auth_failures, over == OVER_BOUND   ? 0
                                                       : over == OVER_OTHER ? cases[i].other_counted
                                                                            : cases[i].none_counted);
            assert_int_equal(audit_count(reload_to, "rejected", NULL, "status", cases[i].text),
                             over == OVER_BOUND);
            assert_int_equal(audit_count(reload_to, "revoked", NULL, NULL, NULL), over == OVER_BOUND);
            assert_int_equal(revoke_calls(reload_to), over == OVER_BOUND);
            OSSL_CMP_CTX_free(ctx);
            client_cleanup(&cl);
            env_free(reload_to);
            env_free(b0);
            env_free(a);
        }
    }
}

/*
 * test_shared_reload_continuing for an error message: the client gives its certificate up after a reload
 * of the instance its message reaches, which has no copy of the transaction. Over the TLS client the
 * record binds, the message is the transaction's own, and that instance, which cannot verify what the
 * reload took away, aborts the transaction as a single gateway does (test_reload_error_aborts): pkiconf,
 * costing the address nothing, the record ended, the certificate on record as rejected_by_client and
 * withdrawn. Once, it was authenticated as a new request of the running configuration first, which
 * refused it, counted, and left the transaction to its TTL; then it got the reload's refusal, as a certConf
 * does, on record as rejected.
 */
static void test_shared_reload_error(void **state)
{
    static const struct {
        const char *what;
        enum prot prot;
        const char *const *replace;
    } cases[] = {
        {"PBM secret rotated", PBM, rotated},
        {"PBM reference deleted", PBM, deleted},
        {"trust anchor replaced", SIG, anchor},
    };

    (void)state;
    if (redis_start() != 0)
        skip();
    write_reload_files();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const *rp = cases[i].replace;
        char cmp[512], key[160], out[64];
        X509 *cert;
        struct env *a = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
        struct env *b0 = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)), .confirm = 1});
        struct client cl = {.env = a, .tamper = error_after_reload, .tls_first = client_cert},
                      dummy = {.env = a};
        OSSL_CMP_CTX *ctx = cases[i].prot == SIG
                                ? client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0)
                                : client_new(&cl, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);

        print_message("case: %s\n", cases[i].what);
        cl.other = cases[i].prot == SIG
                       ? client_new(&dummy, SIG, client_cert, client_key, NULL, NULL, 0)
                       : client_new(&dummy, PBM, NULL, NULL, "demo-device", pbm_secret, pbm_secret_len);
        reload_to = env_reload(
            b0, &(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)),
                                   .confirm = 1,
                                   .replace = {rp[0], rp[1], rp[2], rp[3], rp[4], rp[5], rp[6], rp[7]}});
        env_fake(a, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
        env_fake(reload_to, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN); /* it counts */
        cert = OSSL_CMP_exec_IR_ses(ctx);  /* the pkiconf answering the error is taken for its certConf's */
        assert_int_equal(cl.exchanges, 2); /* the ir to |a|, the error message to the reloaded instance */
        if (cert == NULL)
            fail_msg("%s: not aborted", cases[i].what);
        record_key(&cl, key, sizeof(key)); /* closed on every instance */
        assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
        assert_string_equal(out, ":0");
        if (reload_to->auth_failures != 0)
            fail_msg("%s: %d failed authentications counted", cases[i].what, reload_to->auth_failures);
        assert_int_equal(audit_count(reload_to, "rejected_by_client", NULL, NULL, NULL), 1);
        assert_int_equal(audit_count(reload_to, "rejected", NULL, NULL, NULL), 0);
        assert_int_equal(audit_count(reload_to, "revoked", NULL, NULL, NULL), 1);
        assert_int_equal(revoke_calls(reload_to), 1);
        OSSL_CMP_CTX_free(ctx);
        client_cleanup(&cl);
        env_free(reload_to);
        env_free(b0);
        env_free(a);
    }
}

/*
 * test_shared_reload_continuing for a pollReq: a deferred request's certificate lies uncollected beside
 * its record when a reload of another instance, which has no copy, replaces its trust anchor. The pollReq
 * over the bound TLS client collects nothing there (signerNotTrusted, not counted), and the certificate
 * is on record as not delivered and withdrawn. Once, it was "no open transaction", and the certificate
 * waited for the record's expiry.
 */
static void test_shared_reload_pollreq(void **state)
{
    struct env *e, *next;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    char key[160], out[64], serial[64] = "";
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    write_reload_files();
    e = env_shared("100ms");
    slow_revokes(e);
    cl = (struct client){.env = e, .tls_first = client_cert};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
    slow_gate(1);
    slow_wait_completed(e, 1); /* the result is beside the record */
    next = env_shared_reload(e, anchor, "local");
    (void)gw_cmp_engine_reset(e->engine); /* no copy here: the record is all there is */
    cl.env = next;
    assert_int_equal(poll_step(ctx, &after), 0);
    assert_null(OSSL_CMP_CTX_get0_newCert(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_signerNotTrusted,
                  "no longer chains to a CA trusted on this route");
    assert_int_equal(next->auth_failures, 0);
    assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
    assert_int_equal(audit_count(next, "expired_undelivered", serial, "status",
                                 "no pollReq collected it before its transaction closed"),
                     1);
    assert_int_equal(audit_count(next, "revoked", serial, NULL, NULL), 1);
    assert_int_equal(revoke_calls(next), 1);
    record_key(&cl, key, sizeof(key)); /* closed on every instance */
    assert_int_equal(redis_cmd(out, sizeof(out), 2, (const char *const[]){"EXISTS", key}), 0);
    assert_string_equal(out, ":0");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(next);
    env_free(e);
}

/*
 * test_shared_reload_pollreq with the certificate landing while the reloaded instance closes the
 * transaction: that instance took the record while the call had no result, and the certificate is put
 * beside it before the record ends, which takes it along. The instance that ended it has it on record as
 * not delivered and withdraws it, once. Once, it went with the record and stayed valid, on record as
 * "awaiting the client's pollReq". So also when the answer to the record's end is lost once Redis ran it
 * (the end asked again answers what the first took), and when the retry's answer is lost too: what the end
 * took is read back at the next ticks (txn_end_unread) and withdrawn.
 */
static void test_shared_reload_pollreq_while_result_lands(void **state)
{
    (void)state;
    if (redis_start() != 0)
        skip();
    write_reload_files();
    /* in this order: the first case's end leaves Redis the script, so the answers lost are the end's own */
    for (int n_lost = 0; n_lost <= 2; n_lost++) {
        struct env *e = env_shared("100ms"), *next;
        struct client cl;
        OSSL_CMP_CTX *ctx;
        char serial[64] = "", *logged;
        int after;

        print_message("answers of the record's end lost: %d\n", n_lost);
        slow_revokes(e);
        cl = (struct client){.env = e, .tls_first = client_cert};
        ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
        assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
        next = env_shared_reload(e, anchor, "local");
        (void)gw_cmp_engine_reset(e->engine); /* no copy here: the record is all there is; the call runs */
        cl.env = next;
        landed = 0;
        drop_hook.thread = pthread_self();
        drop_hook.after_end = false;
        drop_hook.fn = call_lands;
        drop_hook.lose_answer = n_lost;
        log_capture_start();
        assert_int_equal(poll_step(ctx, &after), 0);
        drop_hook.fn = NULL;
        assert_false(drop_hook.lose_answer || drop_hook.losing); /* lost, if so */
        if (!landed)
            fail_msg("the call did not land within CALL_WAIT_S");
        /* the next ticks: the read-back waits until readiness saw Redis again (GW_STATE_PING_SECS) */
        for (int j = 0;
             n_lost == 2 && j < 50 && audit_count(next, "expired_undelivered", NULL, NULL, NULL) == 0; j++) {
            usleep(100 * 1000);
            gw_cmp_engine_expire(next->engine, time(NULL));
        }
        logged = log_capture_end();
        assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_signerNotTrusted,
                      "no longer chains to a CA trusted on this route");
        assert_int_equal(audit_count(e, "issued", NULL, "status", "awaiting the client's pollReq"), 1);
        assert_int_equal(audit_serial(e, "issued", serial, sizeof(serial)), 0);
        assert_int_equal(audit_count(next, "expired_undelivered", serial, "status",
                                     "no pollReq collected it before its transaction closed"),
                         1);
        assert_int_equal(audit_count(next, "revoked", serial, NULL, NULL), 1);
        assert_int_equal(revoke_calls(next), 1);
        assert_true((strstr(logged, "\"event\":\"txn_end_unread\"") != NULL) == (n_lost == 2));
        free(logged);
        memset(&drop_hook, 0, sizeof(drop_hook));
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(next);
        env_free(e);
    }
}

/*
 * An engine of a cluster (test's Redis) whose role delegates CRMF to "deleg", over the slow adapter,
 * polling after 100ms; the upstream role's subject has its own O.
 */
static struct env *env_shared_delegate(void)
{
    char cmp[512];
    struct env *e = env_open(&(struct env_opts){.cmp = shared_cmp(cmp, sizeof(cmp)),
                                                .role_extra = "\"poll_after\": \"100ms\"",
                                                .deleg = 1,
                                                .confirm = 1});

    delegating(e);
    fake.org = "Role Org";
    slow_put(e, upstream_conf(e, "deleg"));
    return e;
}

/*
 * A delegate's deferred request, released on another instance than the one it began on: that
 * instance plans it again as the first did, with the upstream role's subject (its O) and the CN
 * among the SANs, and the certificate it collects passes, granted with modifications. Once, the
 * plan there had the client's subject, and the certificate was refused at release.
 */
static void test_shared_delegate_released_elsewhere(void **state)
{
    struct env *a, *b;
    struct client cl;
    OSSL_CMP_CTX *ctx;
    X509 *cert;
    GENERAL_NAMES *sans;
    char *line;
    int after;

    (void)state;
    if (redis_start() != 0)
        skip();
    a = env_shared_delegate();
    slow_gate(0);
    slow.fail = slow.calls = slow.completed = slow.hold_record = slow.refuse = 0;
    cl = (struct client){.env = a};
    ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    set_cn(ctx, "dev.example.com");
    assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
    b = env_shared_delegate();
    cl.env = b;
    assert_int_equal(poll_step(ctx, &after), -1); /* pollReq -> pollRep: b planned it again */
    slow_gate(1);
    slow_wait_completed(a, 1);
    assert_int_equal(poll_step(ctx, &after), 1); /* pollReq -> ip on b, certConf -> pkiconf */
    assert_status(ctx, OSSL_CMP_PKISTATUS_grantedWithMods, -1, NULL);
    assert_non_null(cert = OSSL_CMP_CTX_get0_newCert(ctx));
    line = X509_NAME_oneline(X509_get_subject_name(cert), NULL, 0);
    assert_string_equal(line, "/O=Role Org/CN=dev.example.com");
    OPENSSL_free(line);
    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(sans), 1);
    assert_int_equal(sk_GENERAL_NAME_value(sans, 0)->type, GEN_DNS);
    GENERAL_NAMES_free(sans);
    assert_int_equal(audit_count(b, "confirmed", NULL, NULL, NULL), 1);
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(b);
    env_free(a);
}

/*
 * A reload while a deferred request waits: the pollReq that would collect its certificate is held to
 * the configuration in force. One that no longer admits the sender gets nothing, and the certificate
 * is withdrawn through the upstream that issued it; once, that pollReq collected it.
 */
static void test_reload_pollreq(void **state)
{
    struct env *e = env_slow("100ms", 0), *now;
    struct client cl = {.env = e, .new_thread = 1};
    OSSL_CMP_CTX *ctx = client_new(&cl, SIG, client_cert, client_key, NULL, NULL, 0);
    char serial[64];
    int after;

    (void)state;
    slow_revokes(e);
    assert_int_equal(poll_step(ctx, &after), -1); /* ir -> waiting, pollReq -> pollRep */
    slow_gate(1);
    slow_wait_completed(e, 1);
    cl.env = now = env_reload(
        e, &(struct env_opts){.cmp = CMP_DEFAULTS,
                              .confirm = 1,
                              .role_extra =
                                  "\"authorization\": {\"signer_subjects\": [\"/CN=another-client\"]}"});
    assert_int_equal(poll_step(ctx, &after), 0); /* pollReq -> error */
    assert_null(OSSL_CMP_CTX_get0_newCert(ctx));
    assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                  "is not allowed on role default");
    assert_int_equal(gw_cmp_engine_open_transactions(e->engine), 0);
    assert_uncollected_withdrawn(e, serial, sizeof(serial),
                                 "no pollReq collected it before its transaction closed");
    client_cleanup(&cl);
    OSSL_CMP_CTX_free(ctx);
    env_free(now);
    env_free(e);
}

/*
 * A reload that turns check_revocation on between an ir and its certConf: the signer, a certificate
 * of the role's upstream, is checked as a new request's would be. Listed in its CA's CRL, the
 * certConf is refused and the certificate withdrawn by the engine the ir began under; with no
 * status to be had, the client is told to retry and the transaction stays open. Once, both
 * certConfs confirmed it unchecked.
 */
static void test_reload_check_revocation(void **state)
{
    EVP_PKEY *ca_key = load_key("issuing.key"), *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *ca = load_cert("issuing.pem"), *dev = cert_under(ca, ca_key, key, "device-of-local", 5101, 0);
    size_t crl_len = 0;
    unsigned char *crl = crl_of(ca, ca_key, time(NULL) - 60, time(NULL) + 3600, dev, &crl_len);

    (void)state;
    for (int listed = 0; listed <= 1; listed++) {
        struct env *e = env_open(&(struct env_opts){
            .cmp = CMP_DEFAULTS,
            .confirm = 1,
            .replace = {"\"chain\": \"ca.pem\" }", "\"chain\": \"ca.pem\", \"check_revocation\": false }"}});
        struct client cl = {.env = e, .tamper = certconf_after_reload};
        OSSL_CMP_CTX *ctx = client_new(&cl, SIG, dev, key, NULL, NULL, 0);

        reload_to = env_reload(e, &(struct env_opts){.cmp = CMP_DEFAULTS, .confirm = 1});
        env_fake(e, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE, FK_PLAIN);
        env_fake(reload_to, GW_UP_SIGN_CSR | GW_UP_SIGN_KEY | GW_UP_REVOKE | GW_UP_CRL, FK_PLAIN);
        fake.crl = listed ? crl : NULL, fake.crl_len = crl_len;
        assert_null(OSSL_CMP_exec_IR_ses(ctx));
        if (listed)
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_certRevoked,
                          "the signer certificate (serial 13ed) is revoked; authenticate with a valid one");
        else
            assert_status(ctx, OSSL_CMP_PKISTATUS_rejection, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "the revocation status of the signer certificate cannot be checked now");
        assert_int_equal(gw_cmp_engine_open_transactions(e->engine), !listed);
        assert_int_equal(audit_count(e, "confirmed", NULL, NULL, NULL), 0);
        assert_int_equal(audit_count(e, "revoked", NULL, NULL, NULL), listed);
        client_cleanup(&cl);
        OSSL_CMP_CTX_free(ctx);
        env_free(reload_to);
        env_free(e);
    }
    free(crl);
    X509_free(dev);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ir_signature_certconf),
        cmocka_unit_test(test_ir_pbm_cr_p10cr),
        cmocka_unit_test(test_implicit_confirm),
        cmocka_unit_test(test_kur),
        cmocka_unit_test(test_ra_verified_refused),
        cmocka_unit_test(test_two_cert_reqs_authenticated),
        cmocka_unit_test(test_pbm_answer_mac),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_message_time),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_engine_reset),
        cmocka_unit_test(test_reload_shares_transactions),
        cmocka_unit_test(test_reload_issuer_chain),
        cmocka_unit_test(test_reload_continuing),
        cmocka_unit_test(test_reload_path_removed),
        cmocka_unit_test(test_reload_foreign_continuing),
        cmocka_unit_test(test_reload_error_aborts),
        cmocka_unit_test(test_no_txn_hides_references),
        cmocka_unit_test(test_extra_certs_decoded_late),
        cmocka_unit_test(test_error_extra_certs_decoded_late),
        cmocka_unit_test(test_reload_pollreq),
        cmocka_unit_test(test_reload_check_revocation),
        cmocka_unit_test(test_certconf_wrong_hash),
        cmocka_unit_test(test_certconf_other_sender),
        cmocka_unit_test(test_certconf_forged_signer),
        cmocka_unit_test(test_certconf_after_ttl),
        cmocka_unit_test(test_tid_reused_after_ttl),
        cmocka_unit_test(test_no_window_bounds),
        cmocka_unit_test(test_reload_keeps_message_time_window),
        cmocka_unit_test(test_reload_keeps_transaction_ttl),
        cmocka_unit_test(test_replay_window_edge),
        cmocka_unit_test(test_error_forged_signer),
        cmocka_unit_test(test_error_other_sender),
        cmocka_unit_test(test_certconf_other_tls_client),
        cmocka_unit_test(test_tls_client_of_connection),
        cmocka_unit_test(test_error_other_tls_client),
        cmocka_unit_test(test_error_aborts),
        cmocka_unit_test(test_error_after_ttl),
        cmocka_unit_test(test_undelivered_withdrawn),
        cmocka_unit_test(test_unsigned_reason_its_own),
        cmocka_unit_test(test_certconf_unprotected),
        cmocka_unit_test(test_caps_and_expiry),
        cmocka_unit_test(test_body_not_allowed),
        cmocka_unit_test(test_ip_as_request),
        cmocka_unit_test(test_bad_der),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_parallel),
        cmocka_unit_test(test_authorization),
        cmocka_unit_test(test_authorization_certconf),
        cmocka_unit_test(test_request_policy),
        cmocka_unit_test(test_crmf_reject),
        cmocka_unit_test(test_crmf_delegate),
        cmocka_unit_test(test_crmf_delegate_policy_down),
        cmocka_unit_test(test_crmf_delegate_policy_hangs),
        cmocka_unit_test(test_crmf_delegate_upstream_down),
        cmocka_unit_test(test_crmf_delegate_grants_any_usage),
        cmocka_unit_test(test_crmf_delegate_text_controls),
        cmocka_unit_test(test_result_checks),
        cmocka_unit_test(test_refused_answer_other_key),
        cmocka_unit_test(test_success_answer_backdated),
        cmocka_unit_test(test_refused_answer_let_through),
        cmocka_unit_test(test_issued_serial_revoked),
        cmocka_unit_test(test_issued_serial_reissued),
        cmocka_unit_test(test_issued_serial_reissued_unknown_tid),
        cmocka_unit_test(test_refusal_text_utf8),
        cmocka_unit_test(test_refusal_text_bidi),
        cmocka_unit_test(test_refusal_text_invisible),
        cmocka_unit_test(test_policy_text_utf8),
        cmocka_unit_test(test_client_gone),
        cmocka_unit_test(test_client_gone_while_held),
        cmocka_unit_test(test_park_failed),
        cmocka_unit_test(test_upstream_grants_upfront),
        cmocka_unit_test(test_verbatim_csr_upfront),
        cmocka_unit_test(test_result_unrevocable),
        cmocka_unit_test(test_kur_revoked),
        cmocka_unit_test(test_message_time_before_status),
        cmocka_unit_test(test_replay_before_status),
        cmocka_unit_test(test_refused_resend_no_replay),
        cmocka_unit_test(test_rr_resent_replay),
        cmocka_unit_test(test_rr_reason_before_status),
        cmocka_unit_test(test_genm_unknown_before_status),
        cmocka_unit_test(test_kur_expired),
        cmocka_unit_test(test_key_reuse),
        cmocka_unit_test(test_key_reuse_other_signer),
        cmocka_unit_test(test_weak_signer),
        cmocka_unit_test(test_signer_twin_key_usage),
        cmocka_unit_test(test_status_two_cas_crl),
        cmocka_unit_test(test_status_crl_numbers),
        cmocka_unit_test(test_status_unknown_paced),
        cmocka_unit_test(test_status_revoked_marks_its_ca),
        cmocka_unit_test(test_status_revoked_marks_rekeyed_ca),
        cmocka_unit_test(test_status_after_genm_fetch),
        cmocka_unit_test(test_status_partial_crl),
        cmocka_unit_test(test_status_two_cas_query),
        cmocka_unit_test(test_status_revoked_across_generations),
        cmocka_unit_test(test_status_revoked_unchecked_upstream),
        cmocka_unit_test(test_status_revoked_set_full),
        cmocka_unit_test(test_status_revoked_across_restart),
        cmocka_unit_test(test_status_revoked_not_saved),
        cmocka_unit_test(test_status_revoked_file_replaced),
        cmocka_unit_test(test_status_revoked_file_followed),
        cmocka_unit_test(test_status_revoked_file_writers),
        cmocka_unit_test(test_engine_start_failure_class),
        cmocka_unit_test(test_status_revoked_file_dir),
        cmocka_unit_test(test_status_trust_intermediate),
        cmocka_unit_test(test_status_trust_intermediate_crl),
        cmocka_unit_test(test_status_trust_upstream_entry_wins),
        cmocka_unit_test(test_status_forged_upstream_key_id),
        cmocka_unit_test(test_audit_lines),
        cmocka_unit_test(test_audit_client_rejects),
        cmocka_unit_test(test_withdrawn_refused_as_credential),
        cmocka_unit_test(test_certconf_other_hash_withdrawn),
        cmocka_unit_test(test_audit_unwritable),
        cmocka_unit_test(test_audit_lost_after_sign),
        cmocka_unit_test(test_audit_unopenable),
        cmocka_unit_test(test_audit_planted),
        cmocka_unit_test(test_audit_file_writers),
        cmocka_unit_test(test_3gpp_roles),
        cmocka_unit_test(test_3gpp_long_subject),
        cmocka_unit_test(test_3gpp_kur_names),
        cmocka_unit_test(test_3gpp_kur_verified_once),
        cmocka_unit_test(test_3gpp_kur_unchecked),
        cmocka_unit_test(test_3gpp_kur_crmf_upstream),
        cmocka_unit_test(test_long_identities_apart),
        cmocka_unit_test(test_quota_per_tls_client),
        cmocka_unit_test(test_3gpp_config),
        cmocka_unit_test(test_3gpp_alg_hash_bits),
        cmocka_unit_test(test_poll_waiting_then_ip),
        cmocka_unit_test(test_poll_serial_revoked),
        cmocka_unit_test(test_poll_release_client_gone),
        cmocka_unit_test(test_poll_replayed_pollreq),
        cmocka_unit_test(test_poll_undelivered_withdrawn),
        cmocka_unit_test(test_poll_refused_answer_withdrawn),
        cmocka_unit_test(test_poll_not_needed),
        cmocka_unit_test(test_poll_upstream_failure),
        cmocka_unit_test(test_poll_deadline),
        cmocka_unit_test(test_poll_deadline_race),
        cmocka_unit_test(test_poll_expiry),
        cmocka_unit_test(test_poll_closed_while_call_runs),
        cmocka_unit_test(test_poll_closed_keeps_slot),
        cmocka_unit_test(test_poll_aborted_after_result),
        cmocka_unit_test(test_poll_park_failed),
        cmocka_unit_test(test_poll_shutdown),
        cmocka_unit_test(test_withdrawals_per_key),
        cmocka_unit_test(test_withdrawals_per_key_open_at_once),
        cmocka_unit_test(test_withdrawals_overflow_not_starved),
        cmocka_unit_test(test_withdrawals_overflow_full),
        cmocka_unit_test(test_poll_config),
        cmocka_unit_test_teardown(test_shared_older_record_kept_out, redis_stop),
        cmocka_unit_test_teardown(test_shared_expiry_withdraws, redis_stop),
        cmocka_unit_test_teardown(test_shared_expiry_skips_unreachable, redis_stop),
        cmocka_unit_test_teardown(test_shared_reread_skips_unreachable, redis_stop),
        cmocka_unit_test_teardown(test_shared_reread_while_refusing, redis_stop),
        cmocka_unit_test_teardown(test_shared_republish_skips_unreachable, redis_stop),
        cmocka_unit_test_teardown(test_shared_put_fails_at_expiry, redis_stop),
        cmocka_unit_test_teardown(test_shared_unsent_result_withdrawn, redis_stop),
        cmocka_unit_test_teardown(test_shared_put_unsent_after_expiry, redis_stop),
        cmocka_unit_test_teardown(test_shared_unsent_result_at_stop, redis_stop),
        cmocka_unit_test_teardown(test_shared_claim_answer_lost, redis_stop),
        cmocka_unit_test_teardown(test_shared_closed_while_call_runs, redis_stop),
        cmocka_unit_test_teardown(test_shared_closed_keeps_slot, redis_stop),
        cmocka_unit_test_teardown(test_shared_held_slot_at_stop, redis_stop),
        cmocka_unit_test_teardown(test_shared_closed_elsewhere_while_result_lands, redis_stop),
        cmocka_unit_test_teardown(test_shared_unread_end_after_flush, redis_stop),
        cmocka_unit_test_teardown(test_shared_end_retry_not_handed_an_earlier_end, redis_stop),
        cmocka_unit_test_teardown(test_shared_keyless_revocation_unmarks, redis_stop),
        cmocka_unit_test_teardown(test_shared_revoked_counted_while_kept, redis_stop),
        cmocka_unit_test_teardown(test_shared_revoked_readded_under_cap, redis_stop),
        cmocka_unit_test_teardown(test_shared_revoked_on_redis_clock, redis_stop),
        cmocka_unit_test_teardown(test_shared_ttl_at_least_one_second, redis_stop),
        cmocka_unit_test_teardown(test_shared_seen_window_on_redis_clock, redis_stop),
        cmocka_unit_test_teardown(test_shared_seen_window_lags_by_elapsed, redis_stop),
        cmocka_unit_test_teardown(test_shared_release_refusing_then_silent, redis_stop),
        cmocka_unit_test_teardown(test_shared_lookup_ends_no_outage, redis_stop),
        cmocka_unit_test_teardown(test_shared_release_at_maxmemory, redis_stop),
        cmocka_unit_test_teardown(test_shared_oom_fails_closed, redis_stop),
        cmocka_unit_test_teardown(test_shared_evicting_redis_warned, redis_stop),
        cmocka_unit_test_teardown(test_shared_eviction_unchecked, redis_stop),
        cmocka_unit_test_teardown(test_shared_release_leaves_anothers, redis_stop),
        cmocka_unit_test_teardown(test_shared_release_after_end_elsewhere, redis_stop),
        cmocka_unit_test_teardown(test_shared_end_leaves_anothers_record, redis_stop),
        cmocka_unit_test_teardown(test_shared_expired_reservation_ends, redis_stop),
        cmocka_unit_test_teardown(test_shared_closed_slot_ends_after_record, redis_stop),
        cmocka_unit_test_teardown(test_shared_outage_said_at_stop, redis_stop),
        cmocka_unit_test_teardown(test_shared_failed_paced_by_outage, redis_stop),
        cmocka_unit_test_teardown(test_shared_unavailable_after_failed_step, redis_stop),
        cmocka_unit_test_teardown(test_shared_failed_step_keeps_outage_count, redis_stop),
        cmocka_unit_test_teardown(test_shared_open_on_redis_clock, redis_stop),
        cmocka_unit_test_teardown(test_shared_record_keeps_its_count, redis_stop),
        cmocka_unit_test_teardown(test_shared_end_retry_leaves_a_later_record, redis_stop),
        cmocka_unit_test_teardown(test_shared_end_retry_of_nothing_leaves_a_later_record, redis_stop),
        cmocka_unit_test_teardown(test_shared_end_retry_after_flush, redis_stop),
        cmocka_unit_test_teardown(test_shared_unread_end_outlives_a_later_end, redis_stop),
        cmocka_unit_test_teardown(test_shared_unread_end_window, redis_stop),
        cmocka_unit_test_teardown(test_shared_expiry_after_reload, redis_stop),
        cmocka_unit_test_teardown(test_shared_withdrawals_after_reload, redis_stop),
        cmocka_unit_test_teardown(test_shared_not_continued_without_its_ca, redis_stop),
        cmocka_unit_test_teardown(test_shared_reload_continuing, redis_stop),
        cmocka_unit_test_teardown(test_shared_reload_error, redis_stop),
        cmocka_unit_test_teardown(test_shared_reload_pollreq, redis_stop),
        cmocka_unit_test_teardown(test_shared_reload_pollreq_while_result_lands, redis_stop),
        cmocka_unit_test_teardown(test_shared_delegate_released_elsewhere, redis_stop),
        cmocka_unit_test_teardown(test_shared_error_not_aborted, redis_stop),
        cmocka_unit_test_teardown(test_shared_certconf_past_deadline, redis_stop),
        cmocka_unit_test_teardown(test_shared_rebuilt_copy_not_kept, redis_stop),
        cmocka_unit_test_teardown(test_shared_extra_certs_decoded_late, redis_stop),
        cmocka_unit_test_teardown(test_shared_client_gone_from_record, redis_stop),
        cmocka_unit_test_teardown(test_shared_client_gone_quota, redis_stop),
        cmocka_unit_test_teardown(test_shared_ended_while_held, redis_stop),
        cmocka_unit_test_teardown(test_shared_replay_refused_before_lease, redis_stop),
        cmocka_unit_test_teardown(test_shared_tid_reserved_with_record, redis_stop),
        cmocka_unit_test_teardown(test_shared_tid_reserved_after_local_expiry, redis_stop),
        cmocka_unit_test_teardown(test_shared_replay_window_edge, redis_stop),
        cmocka_unit_test_teardown(test_shared_tid_taken_during_call, redis_stop),
        cmocka_unit_test_teardown(test_shared_nothing_outlives_reservation, redis_stop),
        cmocka_unit_test_teardown(test_shared_reload_keeps_replay_ttl, redis_stop),
        cmocka_unit_test_teardown(test_shared_revocation_not_kept, redis_stop),
        cmocka_unit_test_teardown(test_shared_revoked_set_full, redis_stop),
        cmocka_unit_test_teardown(test_shared_quota_per_tls_client, redis_stop),
        cmocka_unit_test_teardown(test_shared_reload_keeps_identity_caps, redis_stop),
        cmocka_unit_test_teardown(test_shared_revoked_lookup_down, redis_stop),
        cmocka_unit_test_teardown(test_shared_serial_unchecked, redis_stop),
        cmocka_unit_test_setup_teardown(test_shared_revoking_waits_for_other_instance, revoking_setup,
                                        revoking_teardown),
        cmocka_unit_test_setup_teardown(test_shared_revoking_mark_own, revoking_setup, revoking_teardown),
        cmocka_unit_test_setup_teardown(test_shared_revoking_done_when_not_kept, revoking_setup,
                                        revoking_teardown),
        cmocka_unit_test_setup_teardown(test_shared_revoked_when_expired_here, revoking_setup,
                                        revoking_teardown),
        cmocka_unit_test_setup_teardown(test_shared_revoked_until_not_after, revoking_setup,
                                        revoking_teardown),
        cmocka_unit_test_setup_teardown(test_shared_revoking_unmarkable, revoking_setup, revoking_teardown),
        cmocka_unit_test_setup_teardown(test_shared_done_mark_refuses_credential, revoking_setup,
                                        revoking_teardown),
    };
#if __has_include(<hiredis/hiredis.h>)
    test_thread = pthread_self();
#endif
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
