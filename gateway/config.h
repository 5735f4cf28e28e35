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
#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>
#include <openssl/evp.h>
#include "log.h"

enum gw_client_auth {
    GW_CLIENT_AUTH_NONE = 0,
    GW_CLIENT_AUTH_OPTIONAL,
    GW_CLIENT_AUTH_REQUIRE,
};

struct gw_listener_conf {
    char *address;              /* numeric IPv4 or IPv6 literal */
    uint16_t port;
    char *tls_cert;             /* PEM: server certificate followed by its chain */
    char *tls_key;
    char *client_ca;            /* PEM bundle; required unless client_auth is none */
    enum gw_client_auth client_auth;
};

/* A named set of trust anchors for CMP signature protection ("trust": {"name": {...}}). */
struct gw_trust_conf {
    char *name;
    char *ca_file;              /* PEM bundle of trust anchors */
    char *untrusted_file;       /* optional PEM bundle of intermediates */
    X509_STORE *store;          /* loaded; X509_V_FLAG_X509_STRICT, partial chains off */
    STACK_OF(X509) *untrusted;  /* loaded; never empty when non-NULL (openssl-cmp-3.0 §10.3) */
};

/* A PBM credential, selected by the request's senderKID (its "reference"). */
struct gw_pbm_conf {
    char *reference;            /* the senderKID bytes as a string */
    char *secret_file;
    unsigned char *secret;      /* loaded, trailing newline stripped; never logged */
    size_t secret_len;
};

enum gw_upstream_type {
    GW_UPSTREAM_LOCAL = 0,      /* in-process issuer */
};

struct gw_upstream_conf {
    char *name;
    enum gw_upstream_type type;
    uint32_t timeout_ms;
    uint32_t max_inflight;
    /* local */
    char *cert_file, *key_file, *chain_file;
    X509 *cert;                 /* issuing CA certificate */
    EVP_PKEY *key;
    STACK_OF(X509) *chain;      /* issuing CA's chain up to (and incl.) the root; may be empty */
    uint32_t delay_ms;          /* "delay": hold each sign call this long (tests, demos); 0 = off */
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

/* A role: what a route issues, through which upstream, for whom. */
struct gw_role {
    char *name;
    char *upstream_name;
    const struct gw_upstream_conf *upstream;    /* resolved */
    /* who may use it */
    char **trust_names;         /* trust entries accepted for signature protection */
    size_t n_trust;
    X509_STORE *store;          /* union of the named trust entries' anchors; NULL if none */
    STACK_OF(X509) *untrusted;  /* union of their intermediates; NULL if none */
    char **pbm_refs;            /* PBM references accepted on this role */
    size_t n_pbm;
    /* the certificate profile: the route's, never the client's */
    unsigned key_usage;         /* X509v3 KU_* bits (openssl/x509v3.h) */
    unsigned ext_key_usage;     /* enum gw_eku bits */
    unsigned allowed_san_types; /* enum gw_san_type bits; 0 = SANs are not copied */
    uint32_t ttl;               /* seconds, when the request asks for no validity */
    uint32_t max_ttl;           /* seconds, cap on any requested validity */
    bool require_subject;       /* refuse a request without a subject */
    bool implicit_confirm;      /* grant implicitConfirm when the client asks */
};

/* default_path_policy / label_to_path_policy value: "role:<name>" or "forbid" */
struct gw_path_policy {
    bool forbid;
    const struct gw_role *role; /* resolved; NULL when forbid */
    char *role_name;            /* the <name> of "role:<name>"; NULL when forbid */
};

struct gw_label {
    char *label;
    struct gw_path_policy policy;
};

struct gw_cmp_conf {
    uint32_t message_time_window;       /* seconds; 0 = do not require messageTime */
    bool require_message_time;
    uint32_t transaction_ttl;           /* seconds */
    uint32_t max_transactions;
    uint32_t max_transactions_per_identity;
    uint32_t pbm_max_iterations;
};

struct gw_signer_conf {
    char *cert_file, *key_file, *chain_file;
    X509 *cert;                 /* signs every CMP response */
    EVP_PKEY *key;
    STACK_OF(X509) *chain;      /* goes to extraCerts after the signer cert; may be empty */
};

struct gw_config {
    char *path;                 /* file it was loaded from */
    struct gw_listener_conf *listeners;
    size_t n_listeners;
    uint32_t loop_threads;
    uint32_t workers;
    uint32_t queue_depth;
    char *path_prefix;          /* "/pki"; no trailing slash */
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
    struct gw_cmp_conf cmp;
    enum gw_log_level log_level;        /* "log_level"; default info */
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
const struct gw_pbm_conf *gw_config_pbm(const struct gw_config *cfg, const unsigned char *ref, size_t len);

#endif
