/*
 * fuzz_profile: a client's certificate request through the profile, the request policy and the
 * local issuer, without the signatures in front of them (fuzz_cmp_signed reaches this only with
 * templates whose POPO still verifies). The input is one DER CertReqMsg (ir, cr, kur) or PKCS#10
 * request (p10cr), as OpenSSL hands them to the engine's callback, planned at the seeds' capture
 * time for three roles of the demo configuration: "default" as it is, "strict" with every name,
 * key and validity rule set, and "hosts", a server role with subject and DNS rules but no common name
 * rules, which holds a common name that reads as a host name to its DNS rules and issues wildcards.
 * Or one DER certificate, an RA's rr target, whose names gw_policy_check_names holds to each role:
 * the names of a certificate come from its upstream, unchecked by the profile (an IP address of any
 * length among them).
 *
 * Beyond the sanitizers, a plan must keep the promises of mappings/profile.h: no keyCertSign or
 * cRLSign, only the role's SAN types, a subject or a SAN, validity from the backdate to at most
 * max_ttl. A plan that passes the request policy is issued by the local upstream, and what it
 * issues must pass gw_policy_check_issued, not be a CA, and be the role's to revoke
 * (gw_policy_check_names). A certificate's names are refused with notAuthorized and a reason, and
 * never accepted for a CA or with a SAN of a type the role does not allow.
 */
#include "tests/fuzz/fuzz.h"

#include <json-c/json.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/profile.h"
#include "gateway/cmp/cert_req.h"
#include "upstream/upstream.h"

static struct gw_config *cfg;
static struct gw_upstream_set *ups;
static X509_STORE *issuer_store;
static time_t now;

static void cleanup(void)
{
    X509_STORE_free(issuer_store);
    gw_upstream_set_free(ups);
    gw_config_free(cfg);
}

/* "strict": the default role with every rule the profile and the request policy know set. Every
   IPv4-mapped address is in its IPv6 ranges, so such an address is held to its IPv4 ranges as well. */
static const char STRICT_ROLE[] =
    "{\"upstream\": \"local\", \"trust\": [\"demo\"], \"key_usage\": [\"digitalSignature\", "
    "\"keyEncipherment\"], \"ext_key_usage\": [\"clientAuth\", \"emailProtection\"], \"allowed_san_types\": "
    "[\"dns\", \"ip\", \"uri\", \"email\"], \"ttl\": \"1h\", \"max_ttl\": \"24h\", \"require_subject\": "
    "true, "
    "\"authorization\": {\"allowed_common_names\": [\"fuzz-*\", \"dev-*\"], \"allowed_dns_names\": "
    "[\"*.example.com\", \"fuzz.example\"], \"allowed_uris\": [\"urn:example:*\"], \"allowed_emails\": "
    "[\"*@example.com\"], \"allowed_ip_ranges\": [\"10.0.0.0/8\", \"2001:db8::/32\", \"::ffff:0:0/96\"], "
    "\"allowed_key_types\": "
    "[\"ec:P-256\", \"rsa:2048\", \"ed25519\"]}}";

/* "hosts": a TLS server's role. Without allowed_common_names a host-name CN is held to allowed_dns_names,
   and with serverAuth one without a dot too where there is no DNS SAN (mappings/policy.c, check_attrs);
   the whole subject to allowed_subjects. */
static const char HOSTS_ROLE[] =
    "{\"upstream\": \"local\", \"trust\": [\"demo\"], \"key_usage\": [\"digitalSignature\"], "
    "\"ext_key_usage\": [\"serverAuth\"], \"allowed_san_types\": [\"dns\", \"ip\"], \"ttl\": \"1h\", "
    "\"max_ttl\": \"24h\", \"allow_wildcard_certificates\": true, \"authorization\": {\"allowed_subjects\": "
    "[\"/O=cmpgw demo/CN=*\", \"/O=cmpgw demo/CN=*.example.com\"], \"allowed_dns_names\": "
    "[\"*.example.com\", \"fuzz-*\", \"dev-*\"], \"allowed_ip_ranges\": [\"10.0.0.0/8\"]}}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *demo = fuzz_pki_file("cmpgw.json", NULL), err[GW_ERR_LEN] = "";
    struct json_object *root = json_tokener_parse(demo), *roles;
    const struct gw_upstream_conf *local;

    (void)argc;
    (void)argv;
    fuzz_quiet();
    now = fuzz_capture_time();
    if (root == NULL || !json_object_object_get_ex(root, "roles", &roles))
        fuzz_die("%s/cmpgw.json is not the demo configuration", FUZZ_PKI);
    json_object_object_add(roles, "strict", json_tokener_parse(STRICT_ROLE));
    json_object_object_add(roles, "hosts", json_tokener_parse(HOSTS_ROLE));
    cfg = fuzz_config(json_object_to_json_string(root));
    json_object_put(root);
    free(demo);
    if ((ups = gw_upstream_set_new(cfg->upstreams, cfg->n_upstreams, cfg->roles, cfg->n_roles,
                                   &cfg->upstream_signer, NULL, NULL, err)) == NULL)
        fuzz_die("upstreams: %s", err);
    /* the engine's store for a local issuer (cmp_policy.c): its own certificate is the anchor */
    local = gw_upstream_get0_conf(gw_upstream_set_get0(ups, "local"));
    if ((issuer_store = X509_STORE_new()) == NULL || X509_STORE_add_cert(issuer_store, local->own_ca) != 1 ||
        X509_STORE_set_flags(issuer_store, X509_V_FLAG_PARTIAL_CHAIN) != 1)
        fuzz_die("cannot build the local issuer's store");
    atexit(cleanup);
    return 0;
}

static unsigned san_type(int gen_type)
{
    switch (gen_type) {
    case GEN_DNS:
        return GW_SAN_DNS;
    case GEN_IPADD:
        return GW_SAN_IP;
    case GEN_URI:
        return GW_SAN_URI;
    case GEN_EMAIL:
        return GW_SAN_EMAIL;
    default:
        return 0;
    }
}

static void check_plan(const struct gw_role *role, const struct gw_cert_plan *plan)
{
    time_t max_ttl = role->max_ttl != 0 ? (time_t)role->max_ttl : GW_DEFAULT_MAX_TTL;

    if (plan->subject == NULL || plan->pubkey == NULL)
        fuzz_die("role %s: a plan without a subject or a key", role->name);
    if ((plan->key_usage & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != 0)
        fuzz_die("role %s: a plan with a CA's key usage 0x%x", role->name, plan->key_usage);
    if (X509_NAME_entry_count(plan->subject) == 0 && sk_GENERAL_NAME_num(plan->sans) <= 0)
        fuzz_die("role %s: a plan that names no one", role->name);
    for (int i = 0; i < sk_GENERAL_NAME_num(plan->sans); i++) {
        unsigned t = san_type(sk_GENERAL_NAME_value(plan->sans, i)->type);

        if (t == 0 || (role->allowed_san_types & t) == 0)
            fuzz_die("role %s: a plan with a SAN of type %d", role->name,
                     sk_GENERAL_NAME_value(plan->sans, i)->type);
    }
    if (plan->not_before != now - GW_BACKDATE_SECS || plan->not_after <= now ||
        plan->not_after > now + max_ttl)
        fuzz_die("role %s: validity %lld..%lld planned at %lld", role->name, (long long)plan->not_before,
                 (long long)plan->not_after, (long long)now);
}

/* What the local issuer makes of an accepted plan: within the policy, never a CA. */
static void issue(const struct gw_role *role, const struct gw_cert_plan *plan, const X509_REQ *csr)
{
    struct gw_sign_req sreq = {.role = role, .plan = plan, .csr = csr, .request_id = "fuzz"};
    struct gw_sign_result res;
    enum gw_issued_verdict v;
    char err[GW_ERR_LEN] = "";
    int fail_info;

    gw_upstream_sign_wait(gw_upstream_set_get0(ups, "local"), &sreq, &res);
    if (res.status == 0 && res.cert != NULL) {
        v = gw_policy_check_issued(role, plan, res.cert, res.chain, issuer_store, NULL, now, NULL, err);
        if (v != GW_ISSUED_OK && v != GW_ISSUED_MODIFIED)
            fuzz_die("role %s: the local issuer's certificate is refused (%d): %s", role->name, (int)v, err);
        if (X509_check_ca(res.cert) != 0)
            fuzz_die("role %s: the local issuer made a CA certificate", role->name);
        if (gw_policy_check_names(role, res.cert, 0, &fail_info, err) != 0)
            fuzz_die("role %s: an RA of the role may not revoke what it issued: %s", role->name, err);
    }
    gw_sign_result_cleanup(&res);
}

/* A plan takes the request's copies of the key and the subject: each role's plan is given its own. */
static void plan_for(const char *role_name, struct gw_cert_req *req, const X509_REQ *csr)
{
    const struct gw_role *role = gw_config_role(cfg, role_name, strlen(role_name));
    struct gw_cert_plan plan;
    X509_PUBKEY *kept = req->spki;
    X509_NAME *kept_subject = req->subject;
    char err[GW_ERR_LEN] = "";
    int fail_info;

    req->spki = gw_x509_pubkey_copy(kept);
    req->subject = kept_subject != NULL ? X509_NAME_dup(kept_subject) : NULL;
    if (gw_cert_plan_make(role, req, now, &plan, &fail_info, err) == 0) {
        check_plan(role, &plan);
        if (gw_policy_check_request(role, &plan, &fail_info, err) == 0)
            issue(role, &plan, csr);
    } else if (err[0] == '\0') {
        fuzz_die("role %s: a refused plan without a reason", role_name);
    }
    gw_cert_plan_cleanup(&plan);
    X509_PUBKEY_free(req->spki);  /* NULL unless the plan was refused */
    X509_NAME_free(req->subject); /* NULL unless refused or empty */
    req->spki = kept;
    req->subject = kept_subject;
}

/* |csr|: the p10cr the request was read from, else NULL */
static void plan_all(struct gw_cert_req *req, const X509_REQ *csr)
{
    plan_for("default", req, csr);
    plan_for("strict", req, csr);
    plan_for("hosts", req, csr);
}

/* |cert|'s names held to |role| as an RA's rr target; with |cn_in_sans|, its CN as a SAN too */
static void names_for(const char *role_name, X509 *cert, int cn_in_sans)
{
    const struct gw_role *role = gw_config_role(cfg, role_name, strlen(role_name));
    GENERAL_NAMES *sans;
    char err[GW_ERR_LEN] = "";
    int fail_info = -1;

    if (gw_policy_check_names(role, cert, cn_in_sans, &fail_info, err) != 0) {
        if (err[0] == '\0' || fail_info != OSSL_CMP_PKIFAILUREINFO_notAuthorized)
            fuzz_die("role %s: names refused with failInfo %d and reason \"%s\"", role_name, fail_info, err);
        return;
    }
    if (X509_check_ca(cert) == 1 || ((X509_get_extension_flags(cert) & EXFLAG_KUSAGE) != 0 &&
                                     (X509_get_key_usage(cert) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != 0))
        fuzz_die("role %s: the names of a CA certificate accepted", role_name);
    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        if ((role->allowed_san_types & san_type(sk_GENERAL_NAME_value(sans, i)->type)) == 0)
            fuzz_die("role %s: a certificate with a SAN of type %d accepted", role_name,
                     sk_GENERAL_NAME_value(sans, i)->type);
    }
    GENERAL_NAMES_free(sans);
}

static void names_all(X509 *cert)
{
    static const char *const roles[] = {"default", "strict", "hosts"};

    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        names_for(roles[i], cert, 0);
        names_for(roles[i], cert, 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum gw_req_kind kinds[] = {GW_REQ_IR, GW_REQ_CR, GW_REQ_KUR};
    const unsigned char *p = data;
    OSSL_CRMF_MSG *crm = d2i_OSSL_CRMF_MSG(NULL, &p, (long)size);
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    struct gw_cert_req req;
    char err[GW_ERR_LEN];

    if (crm != NULL) {
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            gw_cert_req_init(&req);
            if (gw_cert_req_from_crmf(kinds[i], crm, NULL, &req, err) == 0)
                plan_all(&req, NULL);
            gw_cert_req_cleanup(&req);
        }
    } else if (p = data, (csr = d2i_X509_REQ(NULL, &p, (long)size)) != NULL) {
        gw_cert_req_init(&req);
        if (gw_cert_req_from_p10(csr, &req, err) == 0)
            plan_all(&req, csr);
        gw_cert_req_cleanup(&req);
    } else if (p = data, (cert = d2i_X509(NULL, &p, (long)size)) != NULL) {
        names_all(cert);
    }
    OSSL_CRMF_MSG_free(crm);
    X509_REQ_free(csr);
    X509_free(cert);
    ERR_clear_error();
    return 0;
}
