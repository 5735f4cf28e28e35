/*
 * The CMP engine of fuzz_cmp_request and fuzz_cmp_signed: requests as the body of a POST to
 * /pki/cmp of the demo configuration (tests/fuzz/pki, local issuer) with one certProfile for its
 * default role, over TLS with the demo client certificate, answered in-process by gw_cmp_process.
 *
 * An input may hold up to FUZZ_MAX_MESSAGES requests joined by FUZZ_SEPARATOR, answered in order,
 * so that a certConf, pollReq or error can meet the transaction its ir opened (the *.seq seeds).
 *
 * One engine serves the whole run. After each input it is reset (gw_cmp_engine_reset) and the
 * audit log truncated, so that an input is answered alike whatever ran before it: a crash
 * reproduces from its one input. The engine's clock, the local issuer's (its CRL's dates) and the
 * trust stores' verification time are the seeds' capture time, so the seeds pass the messageTime
 * window and certificate validity whenever this runs, and get as far as a real client's requests do
 * (a crlStatusList is answered with a CRL, not refused as one from the future).
 *
 * Beyond the sanitizers, an input fails when the engine breaks a promise of gateway/cmp/engine.h: an HTTP
 * 200 that is not one DER PKIMessage, an internal error (5xx), or a transaction slot still held
 * after every request was answered (it would count against the sender's cap until a restart).
 *
 * CMPGW_FUZZ_VERBOSE=1 prints each answer (request type, HTTP status, response type, outcome).
 */
#ifndef GW_FUZZ_ENGINE_H
#define GW_FUZZ_ENGINE_H

#include "tests/fuzz/fuzz.h"

#include <json-c/json.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include "gateway/cmp/engine.h"
#include "gateway/cmp/engine_test.h"
#include "mappings/route.h"
#include "upstream/upstream.h"
#include "upstream/upstream_test.h"

#define FUZZ_SEPARATOR "-CMPGW-NEXT-MESSAGE-" /* also in make_seeds.sh and fuzz_cmp_*.dict */
#define FUZZ_MAX_MESSAGES 4
#define FUZZ_PROFILE "fuzz" /* a certProfile served by the default role, as in make_seeds.sh */

/* Turns one request of an input into the body sent (a new buffer of *len bytes), or NULL: send as is. */
typedef unsigned char *(*fuzz_rewrite_fn)(const uint8_t *data, size_t size, size_t *len);

static struct {
    struct gw_config *cfg;
    struct gw_upstream_set *ups;
    struct gw_cmp_engine *engine;
    struct gw_route_match route;
    X509 *tls_peer;
    time_t capture_time;
    char audit[FUZZ_PATH_LEN];
    int verbose;
} fz;

static inline time_t fuzz_clock(void)
{
    return fz.capture_time;
}

static inline void fuzz_verify_time(X509_STORE *store)
{
    if (store != NULL)
        X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(store), fz.capture_time);
}

static inline void fuzz_engine_free(void)
{
    gw_cmp_engine_free(fz.engine);
    gw_upstream_set_free(fz.ups);
    gw_config_free(fz.cfg);
    X509_free(fz.tls_peer);
}

static inline X509 *fuzz_pki_cert(const char *name)
{
    char path[FUZZ_PATH_LEN];
    FILE *f;
    X509 *x;

    snprintf(path, sizeof(path), "%s/%s", FUZZ_PKI, name);
    if ((f = fopen(path, "r")) == NULL || (x = PEM_read_X509(f, NULL, NULL, NULL)) == NULL)
        fuzz_die("cannot read a certificate from %s", path);
    fclose(f);
    return x;
}

static inline EVP_PKEY *fuzz_pki_key(const char *name)
{
    char path[FUZZ_PATH_LEN];
    FILE *f;
    EVP_PKEY *k;

    snprintf(path, sizeof(path), "%s/%s", FUZZ_PKI, name);
    if ((f = fopen(path, "r")) == NULL || (k = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL)
        fuzz_die("cannot read a key from %s", path);
    fclose(f);
    return k;
}

/* The demo configuration with the profile FUZZ_PROFILE for its default role (RFC 9483 §3.1 certProfile). */
static inline struct gw_config *fuzz_engine_config(void)
{
    char *demo = fuzz_pki_file("cmpgw.json", NULL);
    struct json_object *root = json_tokener_parse(demo), *profiles = json_object_new_object();
    struct gw_config *cfg;

    if (root == NULL || profiles == NULL)
        fuzz_die("%s/cmpgw.json is not the demo configuration", FUZZ_PKI);
    json_object_object_add(profiles, FUZZ_PROFILE, json_object_new_string("role:default"));
    json_object_object_add(root, "profiles", profiles);
    cfg = fuzz_config(json_object_to_json_string(root));
    json_object_put(root);
    free(demo);
    return cfg;
}

static inline void fuzz_engine_init(void)
{
    char err[GW_ERR_LEN] = "";
    struct gw_cmp_settings settings;

    fuzz_quiet();
    fz.verbose = getenv("CMPGW_FUZZ_VERBOSE") != NULL;
    fz.capture_time = fuzz_capture_time();
    fz.cfg = fuzz_engine_config();
    free(fz.cfg->audit.file);
    fz.cfg->audit.file = strdup(fuzz_scratch("audit.log", fz.audit, sizeof(fz.audit)));
    for (size_t i = 0; i < fz.cfg->n_trust; i++)
        fuzz_verify_time(fz.cfg->trust[i].store);
    for (size_t i = 0; i < fz.cfg->n_roles; i++) {
        fuzz_verify_time(fz.cfg->roles[i].store);
        fuzz_verify_time(fz.cfg->roles[i].authz.tls_store);
    }
    gw_config_cmp_settings(fz.cfg, &settings);
    if ((fz.ups = gw_upstream_set_new(fz.cfg->upstreams, fz.cfg->n_upstreams, fz.cfg->roles, fz.cfg->n_roles,
                                      &fz.cfg->upstream_signer, NULL, NULL, err)) == NULL ||
        (fz.engine = gw_cmp_engine_new(&settings, fz.ups, NULL, NULL, err)) == NULL)
        fuzz_die("engine: %s", err);
    gw_cmp_engine_set_clock(fz.engine, fuzz_clock);
    gw_upstream_set_clock(fz.ups, fuzz_clock); /* the local issuer's CRL: not from the engine's future */
    fz.route.kind = GW_ROUTE_DEFAULT;
    fz.route.role = fz.cfg->default_path_policy.role;
    fz.tls_peer = fuzz_pki_cert("client.pem");
    atexit(fuzz_engine_free);
}

/* An HTTP 200 carries exactly one DER PKIMessage (gw_cmp_process's promise). */
static inline int fuzz_is_pkimessage(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    OSSL_CMP_MSG *msg;
    int ok;

    if (der == NULL || len == 0 || len > GW_MAX_RESPONSE)
        return 0;
    msg = d2i_OSSL_CMP_MSG(NULL, &p, (long)len);
    ok = msg != NULL && p == der + len;
    OSSL_CMP_MSG_free(msg);
    ERR_clear_error();
    return ok;
}

static inline void fuzz_answer(const uint8_t *data, size_t size, fuzz_rewrite_fn rewrite)
{
    unsigned char *body = rewrite != NULL ? rewrite(data, size, &size) : NULL;
    struct gw_cmp_request req = {
        .len = size, .route = &fz.route, .tls_peer = fz.tls_peer, .path = "/pki/cmp"};
    struct gw_cmp_response rsp;

    /* a copy of exactly |size| bytes: a read past the body is a read past an allocation */
    if (body == NULL && size > 0 && (body = malloc(size)) != NULL)
        memcpy(body, data, size);
    if (size > 0 && body == NULL)
        fuzz_die("out of memory");
    req.der = body;
    gw_cmp_response_init(&rsp);
    gw_cmp_process(fz.engine, &req, &rsp);
    if (fz.verbose)
        fprintf(stderr, "fuzz: %s -> %d %s: %s\n", rsp.req_type, rsp.http_status, rsp.rsp_type, rsp.outcome);
    if (rsp.http_status == 200 && !fuzz_is_pkimessage(rsp.der, rsp.len))
        fuzz_die("HTTP 200 without a PKIMessage (%zu bytes) for a %s: %s", rsp.len, rsp.req_type,
                 rsp.outcome);
    if (rsp.http_status >= 500)
        fuzz_die("HTTP %d for a %s: %s", rsp.http_status, rsp.req_type, rsp.http_reason);
    gw_cmp_response_cleanup(&rsp);
    free(body);
}

/* Answers each request of the input (through |rewrite| if not NULL), then resets the engine. */
static inline void fuzz_engine_input(const uint8_t *data, size_t size, fuzz_rewrite_fn rewrite)
{
    const uint8_t *p = data, *end = data + size, *sep;
    size_t held;

    for (int i = 0; i < FUZZ_MAX_MESSAGES; i++) {
        sep = i + 1 < FUZZ_MAX_MESSAGES ? memmem(p, (size_t)(end - p), FUZZ_SEPARATOR, strlen(FUZZ_SEPARATOR))
                                        : NULL;
        fuzz_answer(p, sep != NULL ? (size_t)(sep - p) : (size_t)(end - p), rewrite);
        if (sep == NULL)
            break;
        p = sep + strlen(FUZZ_SEPARATOR);
    }
    if ((held = gw_cmp_engine_reset(fz.engine)) != 0)
        fuzz_die("%zu transaction slot(s) still held after every request was answered", held);
    if (truncate(fz.audit, 0) != 0)
        fuzz_die("cannot truncate %s", fz.audit);
}

#endif
