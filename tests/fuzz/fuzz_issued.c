/*
 * fuzz_issued: what an upstream returns, through gw_policy_check_issued. fuzz_profile checks only what the
 * local issuer makes, always well formed; a CA that is broken or grants more than it was asked for
 * returns anything. The input is one DER certificate, as such a CA might write it. It is held to four
 * plans, made at the seeds' capture time from two requests of the seeds (fuzz_profile's ir seeds: the
 * demo device's CN and DNS name; a CN with DNS, IPv4, IPv6 and URI names) for two roles of the demo
 * configuration: "default" as it is, and "strict" with name patterns, a required subject and a short
 * max_ttl. For each, the certificate gets the plan's key, the local issuer's name, the plan's validity
 * and a new signature of the local issuer's key, so that what its bytes say besides reaches
 * the policy's checks rather than failing the key, chain or time checks before them.
 *
 * Beyond the sanitizers, a certificate the policy lets through (GW_ISSUED_OK, GW_ISSUED_MODIFIED) must be
 * what mappings/policy.h promises: an end entity's (basicConstraints absent, readable and cA FALSE; no
 * keyCertSign or cRLSign; not a CA to OpenSSL either, X509_check_ca), with names its role could have
 * issued (gw_policy_check_names: an RA of the role may revoke it). A refusal says why.
 */
#include "tests/fuzz/fuzz.h"

#include <json-c/json.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "mappings/policy.h"
#include "mappings/profile.h"
#include "gateway/cmp/cert_req.h"
#include "upstream/upstream.h"

#define N_PLANS 4

/* "strict": the default role's usages (its certificates are the seeds), names held to patterns, a
   subject required, validity of a day at most */
static const char STRICT_ROLE[] =
    "{\"upstream\": \"local\", \"trust\": [\"demo\"], \"key_usage\": [\"digitalSignature\", "
    "\"keyAgreement\"], \"ext_key_usage\": [\"clientAuth\", \"serverAuth\"], \"allowed_san_types\": "
    "[\"dns\", \"ip\", \"uri\"], "
    "\"ttl\": \"1h\", \"max_ttl\": \"24h\", \"require_subject\": true, \"authorization\": "
    "{\"allowed_common_names\": [\"fuzz-*\", \"dev-*\"], \"allowed_dns_names\": [\"*.example.com\", "
    "\"fuzz.example\"], \"allowed_uris\": [\"urn:example:*\"], \"allowed_ip_ranges\": [\"10.0.0.0/8\", "
    "\"2001:db8::/32\"]}}";

/* the fuzz_profile seeds the plans are made from, and the role of each */
static const struct {
    const char *request, *role;
} plan_of[N_PLANS] = {
    {"seed-ir-sig.der", "default"},
    {"seed-ir-sans.der", "default"},
    {"seed-ir-sig.der", "strict"},
    {"seed-ir-sans.der", "strict"},
};

static struct gw_config *cfg;
static struct gw_upstream_set *ups;
static X509_STORE *issuer_store;
static const X509 *issuer; /* the local issuer's certificate (its upstream's) */
static EVP_PKEY *issuer_key;
static struct gw_cert_plan plans[N_PLANS];
static const struct gw_role *roles[N_PLANS];
static time_t now;

static void cleanup(void)
{
    for (int i = 0; i < N_PLANS; i++)
        gw_cert_plan_cleanup(&plans[i]);
    EVP_PKEY_free(issuer_key);
    X509_STORE_free(issuer_store);
    gw_upstream_set_free(ups);
    gw_config_free(cfg);
}

static EVP_PKEY *pki_key(const char *name)
{
    size_t len;
    char *pem = fuzz_pki_file(name, &len);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;

    if (key == NULL)
        fuzz_die("cannot read a key from %s", name);
    BIO_free(bio);
    OPENSSL_cleanse(pem, len);
    free(pem);
    return key;
}

/* The plan of |role| for the CertReqMsg of fuzz_profile's seed |request|: one the gateway would send. */
static void make_plan(int i, const char *request, const char *role_name)
{
    char name[64], err[GW_ERR_LEN] = "";
    size_t len;
    char *der;
    const unsigned char *p;
    OSSL_CRMF_MSG *crm;
    struct gw_cert_req req;
    int fail_info;

    snprintf(name, sizeof(name), "../corpus/fuzz_profile/%s", request); /* beside the PKI */
    der = fuzz_pki_file(name, &len);
    p = (const unsigned char *)der;
    if ((roles[i] = gw_config_role(cfg, role_name, strlen(role_name))) == NULL ||
        (crm = d2i_OSSL_CRMF_MSG(NULL, &p, (long)len)) == NULL)
        fuzz_die("no role %s or no CertReqMsg in %s", role_name, request);
    gw_cert_req_init(&req);
    if (gw_cert_req_from_crmf(GW_REQ_IR, crm, NULL, &req, err) != 0 ||
        gw_cert_plan_make(roles[i], &req, now, &plans[i], &fail_info, err) != 0 ||
        gw_policy_check_request(roles[i], &plans[i], &fail_info, err) != 0)
        fuzz_die("role %s refuses %s: %s", role_name, request, err);
    gw_cert_req_cleanup(&req);
    OSSL_CRMF_MSG_free(crm);
    free(der);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *demo = fuzz_pki_file("cmpgw.json", NULL), err[GW_ERR_LEN] = "";
    struct json_object *root = json_tokener_parse(demo), *role_list;
    const struct gw_upstream_conf *local;

    (void)argc;
    (void)argv;
    fuzz_quiet();
    now = fuzz_capture_time();
    if (root == NULL || !json_object_object_get_ex(root, "roles", &role_list))
        fuzz_die("%s/cmpgw.json is not the demo configuration", FUZZ_PKI);
    json_object_object_add(role_list, "strict", json_tokener_parse(STRICT_ROLE));
    cfg = fuzz_config(json_object_to_json_string(root));
    json_object_put(root);
    free(demo);
    if ((ups = gw_upstream_set_new(cfg->upstreams, cfg->n_upstreams, cfg->roles, cfg->n_roles,
                                   &cfg->upstream_signer, NULL, NULL, err)) == NULL)
        fuzz_die("upstreams: %s", err);
    /* the engine's store for a local issuer (cmp_policy.c): its own certificate is the anchor */
    local = gw_upstream_get0_conf(gw_upstream_set_get0(ups, "local"));
    issuer = local->own_ca;
    if ((issuer_store = X509_STORE_new()) == NULL || X509_STORE_add_cert(issuer_store, local->own_ca) != 1 ||
        X509_STORE_set_flags(issuer_store, X509_V_FLAG_PARTIAL_CHAIN) != 1)
        fuzz_die("cannot build the local issuer's store");
    issuer_key = pki_key("issuing.key");
    atexit(cleanup);
    for (int i = 0; i < N_PLANS; i++)
        make_plan(i, plan_of[i].request, plan_of[i].role);
    return 0;
}

/* What makes |cert| a CA to mappings/policy.h, or to OpenSSL; NULL if nothing. */
static const char *ca_why(X509 *cert)
{
    BASIC_CONSTRAINTS *bc;
    int crit = -1, ca;

    bc = X509_get_ext_d2i(cert, NID_basic_constraints, &crit, NULL);
    ca = bc != NULL ? bc->ca != 0 : crit != -1; /* present but unreadable or twice: no end entity's */
    BASIC_CONSTRAINTS_free(bc);
    if (ca)
        return "basicConstraints cA TRUE, unreadable or twice";
    if ((X509_get_extension_flags(cert) & EXFLAG_KUSAGE) != 0 &&
        (X509_get_key_usage(cert) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != 0)
        return "keyCertSign or cRLSign";
    if (X509_check_ca(cert) != 0)
        return "a CA to X509_check_ca";
    return NULL;
}

/* |cert| as the local issuer would have signed it for plan |i|, held to its role. */
static void check(X509 *cert, int i)
{
    const struct gw_role *role = roles[i];
    enum gw_issued_verdict v;
    char err[GW_ERR_LEN] = "";
    const char *why;
    int fail_info;
    size_t n;

    if (X509_set_pubkey(cert, plans[i].pubkey) != 1 ||
        X509_set_issuer_name(cert, X509_get_subject_name(issuer)) != 1 ||
        ASN1_TIME_set(X509_getm_notBefore(cert), plans[i].not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(cert), plans[i].not_after) == NULL ||
        X509_sign(cert, issuer_key, EVP_sha256()) <= 0) {
        ERR_clear_error();
        return; /* what OpenSSL cannot encode again no CA sends either */
    }
    v = gw_policy_check_issued(role, &plans[i], cert, NULL, issuer_store, NULL, now, NULL, err);
    n = strnlen(err, sizeof(err));
    if (v == GW_ISSUED_BAD || v == GW_ISSUED_OUTSIDE_POLICY) {
        if (n == 0 || n == sizeof(err) || memchr(err, '\n', n) != NULL)
            fuzz_die("role %s: refused (%d) without a one-line reason", role->name, (int)v);
        return;
    }
    if (v != GW_ISSUED_OK && v != GW_ISSUED_MODIFIED)
        fuzz_die("role %s: verdict %d", role->name, (int)v);
    if ((why = ca_why(cert)) != NULL)
        fuzz_die("role %s: accepted a certificate with %s", role->name, why);
    if (gw_policy_check_names(role, cert, 0, &fail_info, err) != 0)
        fuzz_die("role %s: accepted a certificate whose names it refuses: %s", role->name, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int i = 0; i < N_PLANS; i++) {
        const unsigned char *p = data;
        X509 *cert = d2i_X509(NULL, &p, (long)size); /* each plan its own: nothing cached of another's */

        if (cert == NULL)
            break;
        check(cert, i);
        X509_free(cert);
    }
    ERR_clear_error();
    return 0;
}
