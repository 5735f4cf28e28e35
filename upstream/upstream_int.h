/*
 * What an upstream adapter implements, and what it may use (the adapter header; the engine and the
 * gateway see upstream/upstream.h only). An adapter is one .c file: its calls, its configuration
 * section (a table for base/conf.h's reader, a struct declared below, a check that loads what the
 * section names), and the capability bits that tell the rest of the program what it can do. Nothing
 * outside upstream/ compares adapter types; they ask for capabilities.
 *
 * A new adapter: upstream/<type>.c defining `const struct gw_upstream_ops gw_upstream_<type>_ops`,
 * its section's struct here, and <type> in GW_UPSTREAM_ADAPTERS.
 */
#ifndef GW_UPSTREAM_INT_H
#define GW_UPSTREAM_INT_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "base/conf.h"
#include "upstream/upstream.h"

/* Every adapter, by the "type" that selects it. */
#define GW_UPSTREAM_ADAPTERS(X) X(local) X(vault) X(cfssl) X(cmp)

/* The role keys an adapter gives a meaning to (enum gw_role_key bits); elsewhere they are refused. */
enum gw_role_key {
    GW_ROLE_KEY_UPSTREAM_ROLE = 1u << 0, /* "upstream_role": the upstream's role or profile name */
    GW_ROLE_KEY_SIGN = 1u << 1,          /* "sign": "role" | "verbatim" */
    GW_ROLE_KEY_ISSUER_REF = 1u << 2,    /* "issuer_ref" */
    GW_ROLE_KEY_EXCLUDE_CN = 1u << 3,    /* "exclude_cn_from_sans" */
    GW_ROLE_KEY_CRMF = 1u << 4,          /* "crmf": "reject" | "delegate" (a CSR-only upstream) */
    GW_ROLE_KEY_DELEGATE = 1u << 5,      /* "delegate" */
};

/* The HTTP keys of upstream/conf.c an adapter takes. */
enum gw_upstream_http {
    GW_UPSTREAM_HTTP_API = 1u << 0,  /* "url", "issuer_ca", "tls_ca" */
    GW_UPSTREAM_HTTP_CERT = 1u << 1, /* "tls_cert", "tls_key": a TLS client certificate */
};

struct gw_upstream_ops {
    const char *dialect; /* the "type" of its configuration section */
    unsigned caps;       /* enum gw_upstream_cap */
    unsigned role_keys;  /* enum gw_role_key */
    /* Configuration. |conf_def| holds the section's own keys (upstream/conf.c parses the common
       ones, and the HTTP ones when |http| is set, into the struct's first member, struct
       gw_http_conf). |conf_check| runs once they are parsed: it loads what they name and fills the
       common issuer fields of struct gw_upstream_conf. |conf_free| releases the section (NULL-safe). */
    size_t conf_size;
    const struct gw_conf_obj *conf_def;
    unsigned http; /* enum gw_upstream_http: which HTTP keys it takes; 0 = none */
    int (*conf_check)(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u);
    void (*conf_free)(void *impl);
    /* Optional: the files of its section read again after start are readable now (0), else why. */
    int (*conf_access)(const struct gw_upstream_conf *u, char *err);
    /* Calls. */
    /* Blocking calls it makes (cfssl's CA certificate) end by *end too (gw_http_request_until; NULL:
       none), which its caller may set while it runs: a reload a stop ends. */
    int (*init)(struct gw_upstream *up, const _Atomic uint64_t *end, char *err);
    void (*cleanup)(struct gw_upstream *up);
    int (*sign)(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done, void *arg);
    /* Optional (NULL unless caps say so). Synchronous; worker threads; bounded by the upstream timeout. */
    /* A refusal for good (GW_ERR_REFUSED) may name its failInfo in *fail_info (else badRequest). A
       revocation ends by *end (gw_now_ms; 0: none; NULL for none at all) as well, which its caller may
       lower while it runs (gw_upstream_revoke_by): past it nothing more is sent, and a call under way is
       cut short, a failure that may pass (a withdrawal during a drain), its text saying so. A failed one
       sets *not_sent (0 on entry) only where no request of it left; one answered, whatever it said (a 503
       of a proxy that passed it on), may have been acted on. Where unsure, it leaves it 0. */
    int (*revoke)(struct gw_upstream *up, const X509 *cert, int reason, const _Atomic uint64_t *end,
                  int *fail_info, int *not_sent, char *err);
    int (*role_policy)(struct gw_upstream *up, const char *role, struct gw_role_policy *out, char *err);
    int (*cert_status)(struct gw_upstream *up, const X509 *cert, int *revoked, char *err);
    /* GW_UP_REVOKE: revoke by issuer and serial (rr carries only a CertTemplate). */
    int (*revoke_serial)(struct gw_upstream *up, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                         int reason, const _Atomic uint64_t *end, int *fail_info, int *not_sent, char *err);
    /* GW_UP_CERT_LOOKUP: the certificate it issued with |serial|, into *cert (the caller's). */
    int (*cert_by_serial)(struct gw_upstream *up, const ASN1_INTEGER *serial, X509 **cert, char *err);
    /* GW_UP_CRL: the current CRL of issuer |issuer_ref| (NULL: the default), DER, malloc'd (free()). */
    int (*crl)(struct gw_upstream *up, const char *issuer_ref, unsigned char **der, size_t *len, char *err);
    /* Optional: is the upstream serving? 0, or a gw_err with why in |err|; cheap, no state changed. Ends
       by *end too (gw_http_request_until; NULL: none), which its caller may set while it runs. */
    int (*probe)(struct gw_upstream *up, const _Atomic uint64_t *end, char *err);
};

/* gw_upstream_detach runs |fn(arg)| on a detached thread of its own: 0, or GW_ERR_NOMEM (not run). */
int gw_upstream_detach(void *(*fn)(void *arg), void *arg);

#define GW_UPSTREAM_DECLARE_OPS(type) extern const struct gw_upstream_ops gw_upstream_##type##_ops;
GW_UPSTREAM_ADAPTERS(GW_UPSTREAM_DECLARE_OPS)

/* The HTTP(S) API of an upstream (vault, cfssl, cmp): the first member of their sections. */
struct gw_http_conf {
    char *url;     /* base URL, e.g. "https://127.0.0.1:8200"; no trailing slash */
    char *ca_file; /* "tls_ca": CA bundle to verify the upstream's TLS server certificate */
    /* Its certificates as loaded and checked, PEM: libcurl trusts these bytes alone (no CA path, no
       system bundle), and never reads the file, so a file changed after the load is not used before
       a reload checks it. NULL without "tls_ca" (the system's CAs). */
    unsigned char *ca_pem;
    size_t ca_pem_len;
    char *client_cert_file; /* "tls_cert"/"tls_key": TLS client certificate (Vault cert auth, mTLS) */
    char *client_key_file;
    char *client_key_passphrase_file; /* "tls_key_passphrase_file": an encrypted key's passphrase, or the PIN
                                         of a PKCS#11 tls_key's token (base/pem.h) */
    /* The certificate (leaf first, then its chain) and key of "tls_cert"/"tls_key" as loaded and checked:
       each new connection's SSL_CTX takes these objects (gw_http_setopt_base), never the file names, so a
       file changed after the load is not used before a reload checks it, and no text of the key is
       parsed again. A key in a PKCS#11 token too: the key its load logged in to, never its URI. */
    STACK_OF(X509) *client_certs;
    EVP_PKEY *client_key;
    char *issuer_ca_file;      /* "issuer_ca": PEM CA certificate(s) the upstream issues under; every
                                  returned certificate must chain to one of them (required) */
    uint32_t max_connections;  /* "max_connections": connections of the asynchronous calls; more wait
                                  in line for one (0: the default) */
    bool allow_plaintext_http; /* "allow_plaintext_http": an http:// "url" off loopback is accepted
                                  (with a warning) rather than refused */
};

/* "type": "local": an in-process issuer whose key cmpgw holds. */
struct gw_local_conf {
    char *cert_file, *key_file, *chain_file;
    char *key_passphrase_file; /* "key_passphrase_file": the passphrase of an encrypted key */
    X509 *cert;                /* issuing CA certificate */
    EVP_PKEY *key;
    STACK_OF(X509) *chain; /* issuing CA's chain up to (and incl.) the root; may be empty */
    uint32_t delay_ms;     /* "delay": hold each sign call this long (tests, demos); 0 = off */
    char *store_dir;       /* "store": durable inventory, one <serial hex>.pem per certificate issued,
                              written and fsync'd before the certificate is released; required for a
                              delegate issuer */
    char *crl_url;         /* "crl_url": http(s) URL put as CRL distribution point (RFC 5280 §4.2.1.13)
                              into every certificate it issues, e.g. where cmpgw serves its CRL
                              (<prefix>/crl/<name>); NULL = none */
    bool shared_store;     /* "shared_store": the store is on storage every instance of a cluster sees */
};

/* "type": "vault": the Vault / OpenBao PKI secrets engine. */
struct gw_vault_conf {
    struct gw_http_conf http;
    char *mount;           /* "mount": PKI mount path, default "pki" */
    char *token_file;      /* "token_file": X-Vault-Token, read at start and re-read on 403 */
    char *vault_namespace; /* "namespace": X-Vault-Namespace; NULL if none */
    char *auth_cert_mount; /* "auth": {"cert": {"mount": "cert", "role": ...}}: cert-auth login with
                              tls_cert/tls_key at POST /v1/auth/<mount>/login; NULL if token_file */
    char *auth_cert_role;  /* the login "name"; NULL if none */
};

/* Its section's keys, check, access check and release (upstream/vault_conf.c). */
extern const struct gw_conf_obj gw_vault_conf_def;
int gw_vault_conf_check(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u);
int gw_vault_conf_access(const struct gw_upstream_conf *u, char *err);
void gw_vault_conf_free(void *impl);

/* "type": "cfssl": cfssl serve. */
struct gw_cfssl_conf {
    struct gw_http_conf http;
    char *auth_key_file;     /* "auth_key_file": hex HMAC key: use authsign instead of sign */
    unsigned char *auth_key; /* loaded; never logged */
    size_t auth_key_len;
};

/* "type": "cmp": an upstream CMP CA; the gateway forwards as an RA (docs/cmp-relay.md). */
struct gw_cmp_up_conf {
    struct gw_http_conf http;
    char *cmp_path;                 /* "path": the CMP path at |url|, e.g. "/.well-known/cmp" or "/pkix/" */
    char *cmp_trusted_file;         /* "trusted": PEM anchors for the upstream's response signatures */
    STACK_OF(X509) *cmp_anchors;    /* loaded; NULL if none. Never a store of its own: each exchange gets
                                       a fresh one, since OpenSSL adds a PBM answer's caPubs to it */
    char *cmp_server_cert_file;     /* "server_cert": the one certificate the upstream signs with */
    X509 *cmp_server_cert;          /* loaded (pinned as srvCert); NULL if none */
    char *cmp_expected_sender_str;  /* "expected_sender": one-line DN ("/O=Example/CN=CMP RA") */
    X509_NAME *cmp_expected_sender; /* who may answer: "expected_sender", else issuer_ca's subject;
                                       NULL when "server_cert" pins it (its subject) */
    char *cmp_ref;                  /* "ref": PBM senderKID towards the upstream; with "secret_file" */
    char *cmp_secret_file;          /* "secret_file": PBM secret; without it, requests are signed by the
                                       gateway's signer */
    unsigned char *cmp_secret;      /* loaded; never logged */
    size_t cmp_secret_len;
};

/* For conf_access: |file| (NULL: nothing to check) can be opened now with access() |mode| (R_OK or
 * W_OK | X_OK); 0, or GW_ERR_IO with "the <what> <file> of upstream <name> is not ..." in |err|. */
int gw_upstream_conf_can(const char *name, const char *what, const char *file, int mode, char *err);

/* The adapter's state of |up|, set by its init. */
void *gw_upstream_get0_impl(const struct gw_upstream *up);
void gw_upstream_set0_impl(struct gw_upstream *up, void *impl);

/* The wall clock of |up|'s dates (a CRL's thisUpdate): time(), unless a test set another
 * (gw_upstream_set_clock). */
time_t gw_upstream_now(const struct gw_upstream *up);

/* The gateway's signing credential |up| was created with; NULL if none was given. */
const struct gw_upstream_signer *gw_upstream_get0_signer(const struct gw_upstream *up);

/*
 * For adapters' configuration checks (upstream/conf.c): every certificate of |certs| (each must be
 * a CA) becomes what |u|'s certificates chain to: its issuer_certs and issuer_store (partial
 * chains: an issuing CA is usually an intermediate). Takes |certs| over.
 */
int gw_upstream_conf_set_issuers(struct gw_conf_ctx *pc, const char *path, const char *file,
                                 STACK_OF(X509) *certs, struct gw_upstream_conf *u);

#endif
