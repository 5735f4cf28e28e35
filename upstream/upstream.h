/*
 * Upstream CAs behind one interface. Each adapter (dialect) implements struct gw_upstream_ops.
 *
 * Calls complete asynchronously: gw_upstream_sign_submit() hands the request over and returns;
 * the adapter calls |done| exactly once, on any thread, possibly before submit returns (the local
 * issuer does). gw_upstream_sign_wait() is the synchronous wrapper a CMP worker uses today; it
 * waits at most the upstream's timeout, and a late completion is disposed of safely (and logged:
 * a certificate issued after the deadline is never silently dropped).
 *
 * Each upstream caps its calls in flight (max_inflight); at the cap, submit fails with
 * GW_ERR_BUSY at once.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stddef.h>
#include <openssl/x509.h>
#include "base/limits.h"
#include "mappings/profile.h"

struct gw_upstream;
struct gw_signer_conf; /* gateway/cmp/conf.h: the gateway's own signer, for a cmp upstream */

enum gw_upstream_type {
    GW_UPSTREAM_LOCAL = 0, /* in-process issuer */
    GW_UPSTREAM_VAULT,     /* Vault / OpenBao PKI secrets engine */
    GW_UPSTREAM_CFSSL,     /* cfssl serve */
    GW_UPSTREAM_CMP,       /* an upstream CMP CA: the gateway forwards as an RA (docs/cmp-relay.md) */
};

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

/* A sign request. The adapter copies or up-refs what it keeps. */
struct gw_sign_req {
    const struct gw_role *role;
    const struct gw_cert_plan *plan; /* the certificate the route wants issued */
    const X509_REQ *csr;             /* p10cr: the client's CSR, unchanged; else NULL */
    const char *request_id;          /* for logs: the transactionID in hex */
};

/* The outcome of a sign call. Owned by whoever holds it; gw_sign_result_cleanup frees it. */
struct gw_sign_result {
    int status;              /* 0, or a negative enum gw_err */
    int fail_info;           /* OSSL_CMP_PKIFAILUREINFO_* bit to report when status != 0 */
    X509 *cert;              /* issued certificate */
    int modified;            /* 1 if the adapter changed the plan (e.g. validity clamped to the CA's) */
    STACK_OF(X509) *chain;   /* issuing CA chain (issuer first); may be NULL */
    char reason[GW_ERR_LEN]; /* human-readable reason when status != 0 */
};

/* |res| is handed over: the callee owns it and must call gw_sign_result_cleanup and free(). */
typedef void (*gw_upstream_done_fn)(void *arg, struct gw_sign_result *res);

/* What an adapter can do; a route that asks for more fails `cmpgw check` (docs/design.md, decision 11). */
enum gw_upstream_cap {
    GW_UP_SIGN_CSR = 1u << 0,    /* signs a PKCS#10 CSR (p10cr) */
    GW_UP_SIGN_KEY = 1u << 1,    /* signs a bare public key / plan (CRMF ir, cr, kur) */
    GW_UP_REVOKE = 1u << 2,      /* revokes by certificate */
    GW_UP_ROLE_POLICY = 1u << 3, /* can describe an upstream role's policy (delegate issuers) */
    GW_UP_CERT_STATUS = 1u << 4, /* can tell whether a certificate it issued is revoked (kur) */
    GW_UP_CRL = 1u << 5,         /* publishes a CRL (gw_upstream_crl) */
    GW_UP_STATUS_AT_ONCE =
        1u << 6, /* cert_status answers from local state without network: ask it every time */
};

/*
 * An upstream role's policy as the upstream states it (Vault GET <mount>/roles/<name>), for a
 * delegate issuer, so it is not written twice. Owned; gw_role_policy_cleanup frees it.
 */
struct gw_role_policy {
    struct gw_patterns allowed_domains;
    bool allow_any_name, allow_subdomains, allow_bare_domains, allow_glob_domains, allow_localhost;
    bool allow_ip_sans;
    bool enforce_hostnames;
    char key_type[GW_MAX_KEY_TYPE_LEN + 1]; /* "rsa", "ec", "ed25519", "any" */
    int key_bits;                           /* 0 = any */
    uint32_t max_ttl;                       /* seconds, 0 = none */
    unsigned key_usage;     /* KU_* bits: what it puts into every certificate, whatever the request */
    unsigned ext_key_usage; /* enum gw_eku bits: likewise */
    /* an extendedKeyUsage it grants that no role can allow, as the upstream names it (Vault "Any",
       an OID); "" if none */
    char other_eku[GW_MAX_OID_TEXT + 1];
};

struct gw_upstream_ops {
    const char *dialect;
    unsigned caps; /* enum gw_upstream_cap */
    int (*init)(struct gw_upstream *up, char *err);
    void (*cleanup)(struct gw_upstream *up);
    int (*sign)(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done, void *arg);
    /* Optional (NULL unless caps say so). Synchronous; worker threads; bounded by the upstream timeout. */
    int (*revoke)(struct gw_upstream *up, const X509 *cert, int reason, char *err);
    int (*role_policy)(struct gw_upstream *up, const char *role, struct gw_role_policy *out, char *err);
    int (*cert_status)(struct gw_upstream *up, const X509 *cert, int *revoked, char *err);
    /* GW_UP_REVOKE: revoke by issuer and serial (rr carries only a CertTemplate). */
    int (*revoke_serial)(struct gw_upstream *up, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                         int reason, char *err);
    /* GW_UP_CRL: the current CRL, DER, malloc'd (free()). */
    int (*crl)(struct gw_upstream *up, unsigned char **der, size_t *len, char *err);
};

/* gw_upstream_new creates the upstream described by |conf| (borrowed: must outlive it). */
struct gw_upstream *gw_upstream_new(const struct gw_upstream_conf *conf, char *err);
/* gw_upstream_new_ops is gw_upstream_new with adapter |ops| instead of the one |conf->type| names
 * (adapters outside the table; tests). |ops| is borrowed. */
struct gw_upstream *gw_upstream_new_ops(const struct gw_upstream_conf *conf,
                                        const struct gw_upstream_ops *ops, char *err);
/* gw_upstream_free waits (up to GW_DRAIN_TIMEOUT_MS) for calls in flight to complete. NULL-safe. */
void gw_upstream_free(struct gw_upstream *up);
const struct gw_upstream_conf *gw_upstream_get0_conf(const struct gw_upstream *up);
/* gw_upstream_conf_name is |conf|'s name for logs and reasons, "?" if it has none (NULL-safe). */
const char *gw_upstream_conf_name(const struct gw_upstream_conf *conf);
void *gw_upstream_get0_impl(const struct gw_upstream *up);
void gw_upstream_set0_impl(struct gw_upstream *up, void *impl);

/* Returns 0 (|done| will be called exactly once) or GW_ERR_BUSY / GW_ERR_INVAL / GW_ERR_NOMEM (|done| is
 * not called). */
int gw_upstream_sign_submit(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                            void *arg);

/*
 * gw_upstream_sign_wait submits and waits up to the upstream's timeout (worker). |out| is
 * always filled: status 0 with a certificate, or an error with fail_info and reason.
 */
void gw_upstream_sign_wait(struct gw_upstream *up, const struct gw_sign_req *req, struct gw_sign_result *out);

/*
 * gw_upstream_sign_async is gw_upstream_sign_submit with the adapter's sign call run on a call
 * thread of its own (adapters do their blocking I/O inside sign), so that the caller can stop
 * waiting and come back later (polling, docs/polling.md). The request is copied: |req| need not
 * outlive the call; |req->role| is borrowed from the config snapshot, which outlives |up|. Call
 * threads are bounded by max_inflight. Returns 0 (|done| is called exactly once, on the call
 * thread, also when the adapter refuses the request) or GW_ERR_BUSY / GW_ERR_INVAL / GW_ERR_NOMEM
 * (|done| is not called). (worker)
 */
int gw_upstream_sign_async(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                           void *arg);

/* gw_upstream_refusal fills |out| with what a client is told when submit returned |rc| (!= 0). */
void gw_upstream_refusal(const struct gw_upstream *up, int rc, struct gw_sign_result *out);

/* gw_upstream_timeout_ms is how long a sign call of |up| may take (its "timeout", or the default). */
uint32_t gw_upstream_timeout_ms(const struct gw_upstream *up);

/*
 * Synchronous extras (worker). Each returns 0, GW_ERR_INVAL if the adapter lacks the capability,
 * or another gw_err with a one-line reason in |err| (GW_ERR_LEN). |reason| is a CRLReason code
 * (CRL_REASON_* of openssl/x509v3.h); an adapter whose upstream takes none (Vault) drops it and the
 * caller records it in the audit log.
 */
unsigned gw_upstream_caps(const struct gw_upstream *up);
int gw_upstream_revoke(struct gw_upstream *up, const X509 *cert, int reason, char *err);
/*
 * gw_upstream_revoke_serial revokes the certificate |issuer| (may be NULL: the upstream's own CA)
 * issued with |serial|, as an rr names it (RFC 9483 §4.2). GW_ERR_NOT_FOUND when the upstream
 * issued no such certificate (answer badCertId); GW_ERR_EXISTS when it knows the certificate was
 * already revoked (answer certRevoked; Vault and cfssl cannot tell and answer 0). gw_upstream_revoke
 * takes an already revoked certificate as done (0). (worker)
 */
int gw_upstream_revoke_serial(struct gw_upstream *up, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                              int reason, char *err);
/*
 * gw_upstream_crl fetches (local: builds or returns the cached) current CRL of |up| as DER into a
 * malloc'd *der of *len bytes (caller free()s); *der is NULL on failure. GW_ERR_INVAL without
 * GW_UP_CRL. (worker; the local issuer's is also fine on a loop thread: no network I/O)
 */
int gw_upstream_crl(struct gw_upstream *up, unsigned char **der, size_t *len, char *err);
int gw_upstream_role_policy(struct gw_upstream *up, const char *role, struct gw_role_policy *out, char *err);
int gw_upstream_cert_status(struct gw_upstream *up, const X509 *cert, int *revoked, char *err);
void gw_role_policy_cleanup(struct gw_role_policy *p);

void gw_sign_result_init(struct gw_sign_result *r);
void gw_sign_result_cleanup(struct gw_sign_result *r);

/*
 * gw_upstream_check_role checks that the adapter of |up| (the role's upstream) can do what |role|
 * asks, by its caps (docs/design.md, decision 11): a CRMF delegate only where the upstream cannot sign
 * CRMF itself, and a delegate that can. Returns 0 or GW_ERR_INVAL with a one-line reason in |err|
 * (GW_ERR_LEN); what is allowed but weaker (a delegate without the upstream role's policy) is
 * logged as a warning. Called by gw_upstream_set_new and `cmpgw check`.
 */
int gw_upstream_check_role(const struct gw_upstream_conf *up, const struct gw_role *role, char *err);

/* The upstreams of a config snapshot (|confs|, borrowed), by name; every role is checked with
 * gw_upstream_check_role. */
struct gw_upstream_set;
struct gw_upstream_set *gw_upstream_set_new(const struct gw_upstream_conf *confs, size_t n,
                                            const struct gw_role *roles, size_t n_roles, char *err);
void gw_upstream_set_free(struct gw_upstream_set *set);
struct gw_upstream *gw_upstream_set_get0(const struct gw_upstream_set *set, const char *name);
/* gw_upstream_set_put0 puts |up| into |set| under its conf's name, replacing (and freeing) the one of
 * that name, else adding it (adapters outside the table; tests). Takes |up| over on success only.
 * 0 or GW_ERR_NOMEM / GW_ERR_INVAL. */
int gw_upstream_set_put0(struct gw_upstream_set *set, struct gw_upstream *up);

/* Adapters. */
extern const struct gw_upstream_ops gw_upstream_local_ops;
extern const struct gw_upstream_ops gw_upstream_vault_ops;
extern const struct gw_upstream_ops gw_upstream_cfssl_ops;
extern const struct gw_upstream_ops gw_upstream_cmp_ops;

#endif
