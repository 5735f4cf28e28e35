/*
 * Configuration: one JSON file, parsed strictly into an immutable snapshot (struct gw_config).
 *
 * The snapshot holds both the parsed values and the crypto material they name (certificates,
 * keys, trust stores, PBM secrets), loaded once at load time so that workers only read it.
 * Every error names the JSON path and the offending value, e.g.
 *   cmpgw.json: $.roles.default.max_ttl: expected a duration such as "720h", got "forever"
 * The reference is docs/configuration.md; keep the two in step.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include "gateway/guard.h"
#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>
#include <openssl/evp.h>
#include "base/log.h"

enum gw_client_auth {
    GW_CLIENT_AUTH_NONE = 0,
    GW_CLIENT_AUTH_OPTIONAL,
    GW_CLIENT_AUTH_REQUIRE,
};

struct gw_listener_conf {
    char *address; /* numeric IPv4 or IPv6 literal */
    uint16_t port;
    char *tls_cert; /* PEM: server certificate followed by its chain */
    char *tls_key;
    char *client_ca; /* PEM bundle; required unless client_auth is none */
    enum gw_client_auth client_auth;
    bool http2; /* "http2": offer h2 in ALPN (TLS listeners); off by default */
};

/* A named set of trust anchors for CMP signature protection ("trust": {"name": {...}}). */
/*
 * How a trust entry learns that a certificate its CAs signed directly was revoked (docs/security.md).
 * Certificates a configured upstream issued are always checked at that upstream, whatever this says.
 */
enum gw_revocation_source {
    GW_REVOCATION_UNSET = 0, /* valid only with crl_file */
    GW_REVOCATION_NONE,      /* "none": such certificates are not checked (an explicit choice) */
    GW_REVOCATION_UPSTREAM,  /* "upstream": only certificates of configured upstreams are accepted */
};

struct gw_trust_conf {
    char *name;
    char *ca_file;        /* PEM bundle of trust anchors */
    char *untrusted_file; /* optional PEM bundle of intermediates */
    char *crl_file;       /* optional PEM CRLs: with it, revoked certificates are refused (CRL check on
                             the whole chain, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) */
    enum gw_revocation_source revocation; /* "revocation" */
    X509_STORE *store;                    /* loaded; X509_V_FLAG_X509_STRICT, partial chains off */
    STACK_OF(X509) *untrusted; /* loaded; never empty when non-NULL (docs/design.md, OpenSSL 3.0 §10.3) */
    STACK_OF(X509) *cas;       /* anchors and intermediates: which certificates it covers */
};

/* A PBM credential, selected by the request's senderKID (its "reference"). */
struct gw_pbm_conf {
    char *reference; /* the senderKID bytes as a string */
    char *secret_file;
    unsigned char *secret; /* loaded, trailing newline stripped; never logged */
    size_t secret_len;
};

enum gw_upstream_type {
    GW_UPSTREAM_LOCAL = 0, /* in-process issuer */
    GW_UPSTREAM_VAULT,     /* Vault / OpenBao PKI secrets engine */
    GW_UPSTREAM_CFSSL,     /* cfssl serve */
    GW_UPSTREAM_CMP,       /* an upstream CMP CA: the gateway forwards as an RA (docs/cmp-relay.md) */
};

struct gw_signer_conf;

struct gw_upstream_conf {
    char *name;
    enum gw_upstream_type type;
    uint32_t timeout_ms;
    uint32_t max_inflight;
    bool check_revocation; /* "check_revocation": false accepts its certificates as credentials unchecked */
    /* local */
    char *cert_file, *key_file, *chain_file;
    X509 *cert; /* issuing CA certificate */
    EVP_PKEY *key;
    STACK_OF(X509) *chain; /* issuing CA's chain up to (and incl.) the root; may be empty */
    uint32_t delay_ms;     /* "delay": hold each sign call this long (tests, demos); 0 = off */
    char *store_dir;       /* "store": durable inventory, one <serial hex>.pem per certificate issued,
                              written and fsync'd before the certificate is released; required for a
                              delegate issuer (docs/design.md, decision 5) */
    char *crl_url;         /* "crl_url": http(s) URL put as CRL distribution point (RFC 5280 §4.2.1.13)
                              into every certificate it issues, e.g. where cmpgw serves its CRL
                              (<prefix>/crl/<name>); NULL = none */
    /* vault, cfssl: the upstream's HTTP(S) API */
    char *url;              /* base URL, e.g. "https://127.0.0.1:8200"; no trailing slash */
    char *ca_file;          /* "tls_ca": CA bundle to verify the upstream's TLS server certificate */
    char *client_cert_file; /* "tls_cert"/"tls_key": TLS client certificate (Vault cert auth, mTLS) */
    char *client_key_file;
    char *issuer_ca_file;         /* "issuer_ca": PEM CA certificate(s) the upstream issues under; every
                                     returned certificate must chain to one of them (required) */
    X509_STORE *issuer_store;     /* loaded from issuer_ca_file */
    STACK_OF(X509) *issuer_certs; /* the same certificates, for chain building; never empty when set */
    /* vault */
    char *mount;           /* "mount": PKI mount path, default "pki" */
    char *token_file;      /* "token_file": X-Vault-Token, read at start and re-read on 403 */
    char *vault_namespace; /* "namespace": X-Vault-Namespace; NULL if none */
    char *auth_cert_mount; /* "auth": {"cert": {"mount": "cert", "role": ...}}: cert-auth login with
                              tls_cert/tls_key at POST /v1/auth/<mount>/login; NULL if token_file */
    char *auth_cert_role;  /* the login "name"; NULL if none */
    /* cfssl */
    char *auth_key_file;     /* "auth_key_file": hex HMAC key: use authsign instead of sign */
    unsigned char *auth_key; /* loaded; never logged */
    size_t auth_key_len;
    /* cmp (also url, tls_ca, tls_cert/tls_key, issuer_ca) */
    char *cmp_path;            /* "path": the CMP path at |url|, e.g. "/.well-known/cmp" or "/pkix/" */
    char *cmp_trusted_file;    /* "trusted": PEM anchors for the upstream's response signatures */
    X509_STORE *cmp_trusted;   /* loaded; NULL if none (then responses must be PBM with the secret) */
    char *cmp_ref;             /* "ref": PBM senderKID towards the upstream; with "secret_file" */
    char *cmp_secret_file;     /* "secret_file": PBM secret; without it, requests are signed by |signer| */
    unsigned char *cmp_secret; /* loaded; never logged */
    size_t cmp_secret_len;
    const struct gw_signer_conf *signer; /* borrowed: the gateway's signer (set for cmp upstreams) */
};

/* Extended key usages a role may grant, as a bit set. */
enum gw_eku {
    GW_EKU_SERVER_AUTH = 1u << 0,
    GW_EKU_CLIENT_AUTH = 1u << 1,
    GW_EKU_CODE_SIGNING = 1u << 2,
    GW_EKU_EMAIL_PROTECTION = 1u << 3,
    GW_EKU_TIME_STAMPING = 1u << 4,
    GW_EKU_OCSP_SIGNING = 1u << 5,
    GW_EKU_CMC_RA = 1u << 6,
};

/* SAN types a role may grant, as a bit set. */
enum gw_san_type {
    GW_SAN_DNS = 1u << 0,
    GW_SAN_IP = 1u << 1,
    GW_SAN_URI = 1u << 2,
    GW_SAN_EMAIL = 1u << 3,
};

/* A list of glob patterns ('*' matches any run of characters except '.', "*." prefix for one label). */
struct gw_patterns {
    char **v;
    size_t n;
};

/* Key types a role accepts, e.g. "rsa:2048" (2048 bits or more), "ec:P-256", "ed25519". */
struct gw_key_rule {
    int pkey_type; /* EVP_PKEY_RSA, EVP_PKEY_EC, EVP_PKEY_ED25519, EVP_PKEY_ED448 */
    int min_bits;  /* RSA: minimum modulus size */
    int curve_nid; /* EC: the curve */
};

/*
 * Authorization of a role, deny by default ("authorization": {...}). Both sides are checked: the TLS
 * client certificate and the CMP identity (the role's "trust" and "pbm" lists, plus the patterns here).
 */
struct gw_authz {
    bool tls_required;      /* "tls_client": "require" | "optional" (default optional) */
    char **tls_trust_names; /* "tls_trust": trust entries the TLS client certificate must chain to */
    size_t n_tls_trust;
    X509_STORE *tls_store; /* union of those anchors (and their CRLs); NULL = any listener-verified */
    STACK_OF(X509) *tls_untrusted;
    struct gw_patterns tls_subjects; /* "tls_subjects": patterns on the one-line subject ("/O=x/CN=dev-*") */
    struct gw_patterns tls_sans;     /* "tls_sans": patterns on the TLS certificate's DNS/URI/email SANs */
    bool tls_must_be_signer;         /* "tls_must_be_signer": TLS client certificate == CMP signer cert */
    struct gw_patterns signer_subjects; /* "signer_subjects": patterns on the CMP signer's subject */
    /* what a request may ask for */
    struct gw_patterns common_names; /* "allowed_common_names"; empty = any */
    struct gw_patterns dns_names; /* "allowed_dns_names"; empty = any (type must be in allowed_san_types) */
    struct gw_patterns uris;      /* "allowed_uris" */
    struct gw_patterns emails;    /* "allowed_emails" */
    struct gw_patterns ip_ranges; /* "allowed_ip_ranges": CIDRs ("127.0.0.0/8", "::1/128"); empty = any */
    struct gw_key_rule
        *key_rules; /* "allowed_key_types"; NULL = the built-in list (RSA>=2048, EC P-256/384/521, Ed) */
    size_t n_key_rules;
    /* rr (RFC 9483 §4.2): besides the holder, signers matching these that carry the id-kp-cmcRA EKU */
    struct gw_patterns ra_subjects; /* "ra_subjects": patterns on the RA signer's one-line subject */
};

/*
 * "root_ca_update": a root CA key update answered to genm id-it-rootCaCert (RFC 9483 §4.3.2), per
 * role or top-level. new_with_new NULL = nothing to announce (the ITAV's value is absent).
 */
struct gw_root_update {
    char *new_with_new_file, *new_with_old_file, *old_with_new_file;
    X509 *new_with_new; /* the new root, self-signed */
    X509 *new_with_old; /* the new root's key certified by the old root: who signed it is the old root */
    X509 *old_with_new; /* the old root's key certified by the new root; may be NULL */
};

enum gw_sign_policy {
    GW_SIGN_ROLE = 0, /* vault: sign/<upstream_role>; cfssl: profile <upstream_role> */
    GW_SIGN_VERBATIM, /* vault: sign-verbatim/<upstream_role> */
};

enum gw_crmf_mode {
    GW_CRMF_REJECT = 0, /* CRMF to a CSR-only upstream: CMP error asking for p10cr */
    GW_CRMF_DELEGATE,   /* issue from the role's delegate local issuer */
};

/* A role: what a route issues, through which upstream, for whom. */
struct gw_role {
    char *name;
    char *upstream_name;
    const struct gw_upstream_conf *upstream; /* resolved */
    /* who may use it */
    char **trust_names; /* trust entries accepted for signature protection */
    size_t n_trust;
    X509_STORE *store;         /* union of the named trust entries' anchors; NULL if none */
    STACK_OF(X509) *untrusted; /* union of their intermediates; NULL if none */
    char **pbm_refs;           /* PBM references accepted on this role */
    size_t n_pbm;
    /* the certificate profile: the route's, never the client's */
    unsigned key_usage;         /* X509v3 KU_* bits (openssl/x509v3.h) */
    unsigned ext_key_usage;     /* enum gw_eku bits */
    unsigned allowed_san_types; /* enum gw_san_type bits; 0 = SANs are not copied */
    uint32_t ttl;               /* seconds, when the request asks for no validity */
    uint32_t max_ttl;           /* seconds, cap on any requested validity */
    bool require_subject;       /* refuse a request without a subject */
    bool implicit_confirm;      /* grant implicitConfirm when the client asks */
    /* "allowed_extensions": what an issued certificate may carry beyond the standard extensions
       mappings/policy.c allows every role */
    ASN1_OBJECT **allowed_exts;
    size_t n_allowed_exts;
    /* how the upstream is asked */
    char *upstream_role; /* "upstream_role": role (vault) or profile (cfssl) upstream; default = name */
    enum gw_sign_policy sign_policy; /* "sign": "role" | "verbatim" */
    char *issuer_ref;                /* "issuer_ref": vault issuer/<ref>/sign...; NULL = the role's issuer */
    bool exclude_cn_from_sans;       /* vault "exclude_cn_from_sans" */
    enum gw_crmf_mode crmf;          /* "crmf": "reject" | "delegate"; only for CSR-only upstreams */
    char *delegate_name; /* "delegate": a local upstream (with "store") chaining to this upstream's CA */
    const struct gw_upstream_conf *delegate; /* resolved */
    char *crmf_upstream_name; /* "crmf_upstream": an upstream that signs this role's CRMF requests
                                 (a cmp or local upstream) while "upstream" signs its p10cr */
    const struct gw_upstream_conf *crmf_upstream; /* resolved; NULL if none */
    struct gw_authz authz;                        /* "authorization" */
    struct gw_root_update root_update;            /* "root_ca_update"; unset = the top-level one */
    /* 3GPP TS 33.310 base-station enrolment (docs/3gpp.md) */
    char *device_allowlist_file; /* "device_allowlist": one CMP signer per line, read at (re)load */
    char **allow_subjects;       /* its one-line subjects ("/O=Vendor/CN=bs-1"), as X509_NAME_oneline */
    size_t n_allow_subjects;
    BIGNUM **allow_serials; /* its "serial:<hex>" entries */
    size_t n_allow_serials;
    bool subject_from_signer; /* "subject_from_signer": an empty template subject takes the signer's */
    char *ca_pubs_file;       /* "ca_pubs": PEM bundle sent as caPubs in ip (RFC 9810 §5.3.2) */
    STACK_OF(X509) *ca_pubs;  /* loaded; NULL if none */
    int min_hash_bits;        /* "min_hash": 256/384/512 = sha256/sha384/sha512; 0 = any */
    uint32_t poll_after_ms;   /* "poll_after": a sign call slower than this is answered "waiting" and
                                 delivered on a later pollReq (docs/polling.md); 0 = wait up to the
                                 upstream's timeout */
};

/*
 * default_path_policy / label_to_path_policy value: "role:<name>", "forbid", or Vault's
 * "sign-verbatim", which names the role called "sign-verbatim" (it must exist and have
 * "sign": "verbatim": cmpgw needs its upstream, trust and profile spelled out).
 */
struct gw_path_policy {
    bool forbid;
    const struct gw_role *role; /* resolved; NULL when forbid */
    char *role_name;            /* the <name> of "role:<name>"; NULL when forbid */
};

struct gw_label {
    char *label;
    struct gw_path_policy policy;
};

/* "profiles": a certificate profile a request names (RFC 9483 §3.1) -> the role that serves it. */
struct gw_profile {
    char *name;
    struct gw_path_policy policy; /* always a role */
};

struct gw_cmp_conf {
    uint32_t message_time_window; /* seconds; 0 = do not require messageTime */
    bool require_message_time;
    uint32_t transaction_ttl; /* seconds */
    uint32_t max_transactions;
    uint32_t max_transactions_per_identity;
    uint32_t pbm_max_iterations;
    uint32_t revocation_grace;        /* seconds past a CRL's nextUpdate it may still be used */
    uint32_t max_recent_per_identity; /* replay cache entries one identity may hold */
};

/* Vault's audit_fields names, as bits. */
enum gw_audit_field {
    GW_AUDIT_CSR = 1u << 0,
    GW_AUDIT_COMMON_NAME = 1u << 1,
    GW_AUDIT_ALT_NAMES = 1u << 2,
    GW_AUDIT_IP_SANS = 1u << 3,
    GW_AUDIT_URI_SANS = 1u << 4,
    GW_AUDIT_OTHER_SANS = 1u << 5,
    GW_AUDIT_SIGNATURE_BITS = 1u << 6,
    GW_AUDIT_EXCLUDE_CN_FROM_SANS = 1u << 7,
    GW_AUDIT_OU = 1u << 8,
    GW_AUDIT_ORGANIZATION = 1u << 9,
    GW_AUDIT_COUNTRY = 1u << 10,
    GW_AUDIT_LOCALITY = 1u << 11,
    GW_AUDIT_PROVINCE = 1u << 12,
    GW_AUDIT_STREET_ADDRESS = 1u << 13,
    GW_AUDIT_POSTAL_CODE = 1u << 14,
    GW_AUDIT_SERIAL_NUMBER = 1u << 15,
    GW_AUDIT_USE_PSS = 1u << 16,
    GW_AUDIT_KEY_TYPE = 1u << 17,
    GW_AUDIT_KEY_BITS = 1u << 18,
    GW_AUDIT_ADD_BASIC_CONSTRAINTS = 1u << 19,
};

/* "audit": {"file": ..., "audit_fields": [...]}; required. */
struct gw_audit_conf {
    char *file;      /* JSON lines, appended; fsync'd before a certificate leaves */
    unsigned fields; /* enum gw_audit_field bits; default common_name, alt_names, ip_sans, uri_sans */
};

struct gw_signer_conf {
    char *cert_file, *key_file, *chain_file;
    X509 *cert; /* signs every CMP response */
    EVP_PKEY *key;
    STACK_OF(X509) *chain; /* goes to extraCerts after the signer cert; may be empty */
};

/* "limits": what one client, or all of them, may hold (docs/security.md, "Bounded work"). */
struct gw_limits_conf {
    struct gw_guard_conf admission; /* connections and failed authentications per address */
    uint32_t body_timeout;          /* seconds an HTTP/2 request may take to reach the handler */
};

struct gw_config {
    char *path; /* file it was loaded from */
    struct gw_listener_conf *listeners;
    size_t n_listeners;
    uint32_t loop_threads;
    uint32_t workers;
    uint32_t queue_depth;
    char *path_prefix; /* "/pki"; no trailing slash */
    struct gw_signer_conf signer;
    struct gw_trust_conf *trust;
    size_t n_trust;
    struct gw_pbm_conf *pbm;
    size_t n_pbm;
    struct gw_upstream_conf *upstreams;
    size_t n_upstreams;
    struct gw_role *roles;
    size_t n_roles;
    struct gw_path_policy default_path_policy;
    struct gw_label *labels;
    size_t n_labels;
    struct gw_profile *profiles; /* "profiles", in configuration order */
    size_t n_profiles;
    struct gw_cmp_conf cmp;
    struct gw_limits_conf limits; /* "limits" */
    struct gw_audit_conf audit;
    enum gw_log_level log_level;       /* "log_level"; default info */
    struct gw_root_update root_update; /* "root_ca_update" for roles without their own */
};

/*
 * gw_config_load reads, validates and loads the file at |path|. Returns a new snapshot or NULL
 * with a one-line reason (file, JSON path, value) in |err| (GW_ERR_LEN bytes).
 */
struct gw_config *gw_config_load(const char *path, char *err);

/* gw_config_parse is gw_config_load on a buffer; relative file names resolve against |base_dir|. */
struct gw_config *gw_config_parse(const char *json, size_t len, const char *base_dir, const char *name,
                                  char *err);

/* gw_config_free releases a snapshot and wipes its secrets. NULL-safe. */
void gw_config_free(struct gw_config *cfg);

/* Lookups by name; each returns a borrowed pointer into |cfg| or NULL. */
const struct gw_role *gw_config_role(const struct gw_config *cfg, const char *name, size_t len);
const struct gw_label *gw_config_label(const struct gw_config *cfg, const char *label, size_t len);
const struct gw_profile *gw_config_profile(const struct gw_config *cfg, const char *name, size_t len);
const struct gw_pbm_conf *gw_config_pbm(const struct gw_config *cfg, const unsigned char *ref, size_t len);
const struct gw_trust_conf *gw_config_trust(const struct gw_config *cfg, const char *name);

#endif
