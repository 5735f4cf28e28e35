/*
 * The configuration sections the CMP layer owns: trust anchors and PBM credentials for message
 * protection, the gateway's signer, the "cmp" settings and the audit log (docs/configuration.md).
 */
#ifndef GW_CMP_CONF_H
#define GW_CMP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "base/conf.h"

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
    STACK_OF(X509) *untrusted;            /* loaded; never empty when non-NULL (docs/design.md O10.3) */
    STACK_OF(X509) *cas;                  /* anchors and intermediates: which certificates it covers */
};

/* A PBM credential, selected by the request's senderKID (its "reference"). */
struct gw_pbm_conf {
    char *reference; /* the senderKID bytes as a string */
    char *secret_file;
    unsigned char *secret; /* loaded, trailing newline stripped; never logged */
    size_t secret_len;
};

/* "cmp.state": where the replay keys and transaction reservations live (gateway/cmp/cluster.h). */
enum gw_state_backend {
    GW_STATE_MEMORY = 0, /* this process only */
    GW_STATE_REDIS,      /* shared by every instance using the same Redis and key prefix */
};

struct gw_state_conf {
    enum gw_state_backend backend;
    char *address; /* Redis: numeric IPv4 or IPv6 address */
    uint16_t port;
    char *username;      /* Redis ACL user; NULL: "default" (AUTH with a password only) */
    char *password_file; /* the ACL password; never logged */
    unsigned char *password;
    size_t password_len;
    char *key_prefix;    /* every key begins with it: instances of one cluster share it */
    uint32_t timeout_ms; /* a Redis command's connect and reply timeout */
    char *mac_key_file;  /* "mac_key_file": authenticates the transaction records any instance may
                            continue from; NULL: a transaction ends where it began */
    unsigned char *mac_key;
    size_t mac_key_len;
};

struct gw_cmp_conf {
    uint32_t message_time_window; /* seconds either side; 0: as the replay cache needs (started_init) */
    bool require_message_time;
    uint32_t transaction_ttl; /* seconds */
    uint32_t max_transactions;
    uint32_t max_transactions_per_identity;
    uint32_t pbm_max_iterations;
    uint32_t revocation_grace;        /* seconds past a CRL's nextUpdate it may still be used */
    uint32_t max_recent_per_identity; /* replay cache entries one identity may hold */
    uint32_t max_revoked;             /* unexpired revocations through cmpgw kept (revoked.c) */
    char *revoked_file;               /* "revoked_file": those kept across restarts; NULL: none */
    struct gw_state_conf state;       /* "state" */
};

/* gw_cmp_conf_cleanup frees what the "cmp" section loaded (the state's strings and password). */
void gw_cmp_conf_cleanup(struct gw_cmp_conf *c);

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
    char *key_passphrase_file; /* "key_passphrase_file": the passphrase of an encrypted key */
    X509 *cert;                /* signs every CMP response */
    EVP_PKEY *key;
    STACK_OF(X509) *chain; /* goes to extraCerts after the signer cert; may be empty */
};

/* Configuration (gateway/cmp/conf.c): the value parsers of these sections for the top-level table. */
extern const struct gw_conf_obj gw_signer_conf_def; /* "signer" */
extern const struct gw_conf_map gw_trust_conf_map;  /* "trust" */
extern const struct gw_conf_map gw_pbm_conf_map;    /* "pbm" */
extern const struct gw_conf_obj gw_cmp_conf_def;    /* "cmp" */
extern const struct gw_conf_obj gw_audit_conf_def;  /* "audit" */
void gw_trust_conf_free(struct gw_trust_conf *trust, size_t n);
void gw_pbm_conf_free(struct gw_pbm_conf *pbm, size_t n);
void gw_signer_conf_cleanup(struct gw_signer_conf *s);

/* Lookups by name (a PBM credential by its senderKID bytes); borrowed pointers into the array or NULL. */
const struct gw_trust_conf *gw_trust_conf_find(const struct gw_trust_conf *trust, size_t n, const char *name);
const struct gw_pbm_conf *gw_pbm_conf_find(const struct gw_pbm_conf *pbm, size_t n, const unsigned char *ref,
                                           size_t len);

struct gw_role;
struct gw_root_update;
struct gw_routes;
struct gw_upstream_conf;

/*
 * What the CMP layer reads of a configuration snapshot (gw_config_cmp_settings fills it): pointers
 * and counts borrowed from the snapshot, which must outlive whatever is built over them. The CMP
 * layer sees these sections and nothing else of the configuration.
 */
struct gw_cmp_settings {
    const char *path_prefix;             /* "/pki"; NULL = none; for the request path in audit records */
    const struct gw_signer_conf *signer; /* signs every response */
    const struct gw_trust_conf *trust;   /* the trust entries, for the revocation of what their CAs signed */
    size_t n_trust;
    const struct gw_pbm_conf *pbm; /* PBM credentials, chosen by senderKID */
    size_t n_pbm;
    const struct gw_cmp_conf *cmp;
    const struct gw_audit_conf *audit;
    const struct gw_root_update *root_update; /* for roles without their own */
    const struct gw_role *roles;              /* an upstream role's policy is cached per role */
    size_t n_roles;
    const struct gw_routes *routes;           /* a certProfile chooses the role on the default paths */
    const struct gw_upstream_conf *upstreams; /* issuer stores and CRL caches are kept per upstream */
    size_t n_upstreams;
    /* the ids the gateway serves as (gw_config_resolve_ids): cmp.revoked_file and audit.file are the
       uid's or root's, and are given the gid when created as root */
    uid_t uid;
    gid_t gid;
};

#endif
