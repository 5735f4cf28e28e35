/*
 * Roles: what a route issues, through which upstream, for whom; and how paths, labels and
 * certificate profiles select a role. The types of the "roles", "default_path_policy",
 * "label_to_path_policy" and "profiles" sections (docs/configuration.md).
 */
#ifndef GW_MAPPINGS_ROLE_H
#define GW_MAPPINGS_ROLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>
#include "base/conf.h"
#include "base/limits.h"
#include "mappings/migration.h"

struct gw_upstream_conf; /* upstream/upstream.h: a role names its upstreams, it does not look inside */

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
    struct gw_patterns
        subjects; /* "allowed_subjects": on the requested subject's one-line form; empty = any */
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
    /* "ra_trust": trust entries of the role's "trust" whose certificates may be RAs besides those a CA of
       the role's upstreams issued (docs/security.md, "Revocation") */
    char **ra_trust_names;
    size_t n_ra_trust;
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

/*
 * "key_reuse": may a request signed with a certificate the role issued (any kur) ask to certify the key that
 * certificate certifies? (RFC 9483 §4.1.3)
 */
enum gw_key_reuse {
    GW_KEY_REUSE_REFUSE = 0, /* badCertTemplate: a new certificate brings a new key pair */
    GW_KEY_REUSE_ALLOW,      /* certified again with the same key (RFC 9810 §5.3.5 allows it) */
};

/*
 * One "device_allowlist" line (docs/3gpp.md): a CMP signer certificate by its one-line subject or its
 * serial number, and the trust entry that certificate must chain to. Neither says which CA made the
 * certificate (a serial number is unique per CA, a subject is what a CA writes), so on a role that
 * trusts several CAs each line names its trust entry ("trust:<name> ...").
 */
struct gw_allow_entry {
    char *subject;  /* "/O=Vendor/CN=bs-1", as X509_NAME_oneline; NULL for a serial */
    BIGNUM *serial; /* "serial:<hex>"; NULL for a subject */
    int scope;      /* index in the role's allow_scopes; -1: none (a role with at most one trust entry) */
};

/* A trust entry that lines of a role's allow-list name ("trust:<name>"). */
struct gw_allow_scope {
    char *trust_name;
    long line;         /* the first line naming it, for a load error */
    X509_STORE *store; /* the trust entry's (borrowed; set when the role is resolved); NULL where the role
                          does not trust it, and its lines admit no one */
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
    /* "allow_wildcard_certificates": a '*' in a requested DNS name or CN (mappings/policy.c) */
    bool allow_wildcard_certificates;
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
    bool kur_any_signer;         /* "kur_any_signer": a kur may renew any certificate `trust` admits */
    enum gw_key_reuse key_reuse; /* "key_reuse": "refuse" | "allow" */
    /* 3GPP TS 33.310 base-station enrolment (docs/3gpp.md) */
    char *device_allowlist_file;  /* "device_allowlist": one CMP signer per line, read at (re)load */
    struct gw_allow_entry *allow; /* its entries, in file order */
    size_t n_allow;
    size_t n_allow_subjects;                                    /* of which one-line subjects */
    size_t n_allow_serials;                                     /* of which "serial:<hex>" */
    struct gw_allow_scope allow_scopes[GW_MAX_ALLOWLIST_TRUST]; /* the trust entries its lines name */
    size_t n_allow_scopes;
    bool subject_from_signer; /* "subject_from_signer": an empty template subject takes the signer's */
    char *ca_pubs_file;       /* "ca_pubs": PEM bundle sent as caPubs in ip (RFC 9810 §5.3.2) */
    STACK_OF(X509) *ca_pubs;  /* loaded; NULL if none */
    int min_hash_bits;        /* "min_hash": 256/384/512 = sha256/sha384/sha512; 0 = any */
    uint32_t poll_after_ms;   /* "poll_after": a sign call slower than this is answered "waiting" and
                                 delivered on a later pollReq (docs/polling.md); 0 = wait up to the
                                 upstream's timeout */
    /* "migration": a staged move to another upstream (docs/migration.md); to_name NULL = none */
    struct gw_migration migration;
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
/* Vault's cn_validations: which kinds of common name a role takes. */
enum gw_cn_validation {
    GW_CN_EMAIL = 1u << 0,
    GW_CN_HOSTNAME = 1u << 1,
    GW_CN_DISABLED = 1u << 2, /* the CN is not checked against the role's names at all */
};

/* The subject attributes a Vault role writes of its own ("organization", ...), in Vault's order. */
#define GW_UPSTREAM_SUBJECT_ATTRS 7
struct gw_upstream_subject_attr {
    const char *key; /* the role's field */
    int nid;
};
extern const struct gw_upstream_subject_attr gw_upstream_subject_attrs[GW_UPSTREAM_SUBJECT_ATTRS];

/*
 * An upstream role's policy as the upstream states it (Vault GET <mount>/roles/<name>), for a
 * delegate issuer, so it is not written twice. Owned; gw_role_policy_cleanup frees it.
 */
struct gw_role_policy {
    struct gw_patterns allowed_domains;
    bool allowed_domains_template;       /* its entries with "{{" are templates Vault fills in per caller */
    struct gw_patterns allowed_uri_sans; /* globs ('*' any run, case counts); none: no URI SAN */
    bool allowed_uri_sans_template;      /* its entries are templates Vault fills in per caller */
    bool allow_any_name, allow_subdomains, allow_bare_domains, allow_glob_domains, allow_localhost;
    bool allow_ip_sans;
    bool enforce_hostnames;
    bool no_wildcards;                      /* allow_wildcard_certificates false (Vault's default: true) */
    char key_type[GW_MAX_KEY_TYPE_LEN + 1]; /* "rsa", "ec", "ed25519", "any" */
    int key_bits;                           /* 0 = any */
    uint32_t max_ttl;                       /* seconds, 0 = the mount's (GW_VAULT_MAX_LEASE_TTL) */
    time_t not_after;                       /* Vault's not_after: no certificate ends later; 0 = none */
    unsigned key_usage;     /* KU_* bits: what it puts into every certificate, whatever the request */
    unsigned ext_key_usage; /* enum gw_eku bits: likewise */
    /* an extendedKeyUsage it grants that no role can allow, as the upstream names it (Vault "Any",
       an OID); "" if none */
    char other_eku[GW_MAX_OID_TEXT + 1];
    /* the issuer it signs with when the call names none (Vault's issuer_ref: an issuer's id or name,
       a plain path segment); "" = the upstream's default issuer */
    char issuer_ref[GW_MAX_ISSUER_REF_LEN + 1];

    /* the subject Vault's sign/<role> writes (mappings/policy_vault.c): the request's last CN (unless
       no_csr_common_name) and serialNumber (unless serial_from_json), its UIDs, the role's values */
    bool no_csr_common_name; /* use_csr_common_name false: no CN from the request (the gateway sends none) */
    bool cn_optional;        /* require_cn false (Vault's default: true) */
    unsigned cn_validations; /* enum gw_cn_validation bits; 0 = none listed: the CN may be either kind */
    bool serial_from_json;   /* serial_number_source "json": the request's serialNumber is not taken */
    struct gw_patterns allowed_serial_numbers; /* globs ('*' any run, case counts); none: no serialNumber */
    struct gw_patterns allowed_user_ids;       /* case-insensitive names or '*' globs; none: no UID */
    /* values, not patterns, in the order of gw_upstream_subject_attrs */
    struct gw_patterns subject_values[GW_UPSTREAM_SUBJECT_ATTRS];
};

/* gw_role_policy_cleanup frees what |p| holds and zeroes it. NULL-safe. */
void gw_role_policy_cleanup(struct gw_role_policy *p);

/*
 * Configuration (mappings/role.c): the value parsers of the sections above, for the top-level
 * table; the checks of one role that need nothing else; and the frees of what they parsed.
 */
extern const struct gw_conf_map gw_role_conf_map;        /* "roles" */
extern const struct gw_conf_map gw_label_conf_map;       /* "label_to_path_policy" */
extern const struct gw_conf_map gw_profile_conf_map;     /* "profiles" */
extern const struct gw_conf_obj gw_root_update_conf_def; /* "root_ca_update", also per role */
/* "role:<name>", "forbid" or "sign-verbatim" into a struct gw_path_policy (its role resolved later). */
int gw_role_p_policy(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                     const struct gw_conf_field *f);
/* The authorization name lists of |r| name only SAN types the role allows. */
int gw_role_check_authz_sans(struct gw_conf_ctx *pc, const struct gw_role *r);

#define GW_ROLE_ISSUERS 4
/*
 * The upstreams that issue |r|'s certificates, by name, NULL where it has none: its delegate, a
 * migration's "to", its own upstream and its crmf_upstream, in that order (the order an rr looks for
 * the certificate's issuer in).
 */
void gw_role_issuers(const struct gw_role *r, const char *out[GW_ROLE_ISSUERS]);
/* The role of |roles| (|n| of them) named |name|, or NULL. */
const struct gw_role *gw_role_named(const struct gw_role *roles, size_t n, const char *name);
/*
 * gw_role_tls_san_type is the SAN type a pattern of "tls_sans" is for: GEN_URI for one with a scheme (a ':'
 * before any '@': "sip:alice@example.com", "ssh://git@host"), else GEN_EMAIL for one with a '@', else
 * GEN_DNS. Across types, the email "x@dev.example.com" would match the DNS pattern "*.example.com".
 */
int gw_role_tls_san_type(const char *pat);
/* Whether |r| accepts the PBM reference |ref| (|len| bytes, a senderKID: not NUL-terminated). */
bool gw_role_accepts_pbm(const struct gw_role *r, const unsigned char *ref, size_t len);
void gw_roles_free(struct gw_role *roles, size_t n);
void gw_labels_free(struct gw_label *labels, size_t n);
void gw_profiles_free(struct gw_profile *profiles, size_t n);
void gw_root_update_cleanup(struct gw_root_update *u);

#endif
