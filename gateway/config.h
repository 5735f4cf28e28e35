/*
 * Configuration: one JSON file, parsed strictly into an immutable snapshot (struct gw_config).
 *
 * The snapshot holds both the parsed values and the crypto material they name (certificates,
 * keys, trust stores, PBM secrets), loaded once at load time so that workers only read it. Each
 * section's types belong to the part that uses it (mappings/role.h, upstream/upstream.h,
 * gateway/cmp/conf.h); this file composes them with the listener's.
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
#include "base/log.h"
#include "mappings/role.h"
#include "mappings/route.h"
#include "upstream/upstream.h"
#include "gateway/cmp/conf.h"
#include "gateway/guard.h"

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
    char *tls_key_passphrase_file; /* "key_passphrase_file": the passphrase of an encrypted tls_key */
    /* tls_cert and tls_key as loaded and checked: the listener's TLS context takes these, never the
       files, which are read once per load (the listener needs no file after start) */
    X509 *cert;
    STACK_OF(X509) *chain; /* the certificates after the first in tls_cert */
    EVP_PKEY *key;
    char *client_ca; /* PEM bundle; required unless client_auth is none */
    /* client_ca as loaded and checked, certificates alone: the TLS context's trust anchors and CA
       names are these, never the file read again */
    STACK_OF(X509) *client_cas;
    enum gw_client_auth client_auth;
    bool http2;        /* "http2": offer h2 in ALPN (TLS listeners); off by default */
    bool plain_http;   /* "plain_http": a CMP listener without TLS (loopback, or behind trusted_proxies) */
    bool proxies_only; /* plain HTTP off loopback: only trusted_proxies may connect (set by the check) */
    /* "ticket_keys_file": the TLS session ticket keys every instance shares (GW_TICKET_KEY_LEN bytes
       each, the first encrypts); none: OpenSSL's own, per process and configuration generation */
    char *ticket_keys_file;
    unsigned char *ticket_keys;
    size_t n_ticket_keys;
    /* "trusted_proxies": CIDRs whose connections begin with a PROXY protocol header naming the
       client (gateway/proxy.h); none: no header is read from anyone */
    char **trusted_proxies;
    size_t n_trusted_proxies;
};

/* "admin": the listener for operators (gateway/admin.c). */
struct gw_admin_conf {
    struct gw_listener_conf listen; /* address, port, optional tls */
    char **ready_requires;          /* "ready_requires": upstreams that must be up for /readyz */
    size_t n_ready_requires;
    char *token_file; /* "token_file": the bearer token of POST /reload; NULL: POST /reload is refused */
    unsigned char token_sha256[32]; /* SHA-256 of that token, read at load; the token itself is wiped */
};

/* "limits": what one client, or all of them, may hold (docs/security.md, "Bounded work"). */
struct gw_limits_conf {
    struct gw_guard_conf admission; /* connections and failed authentications per address */
    uint32_t body_timeout;          /* seconds an HTTP/2 request may take to reach the handler */
    uint32_t send_timeout;          /* seconds a connection's pending output may make no progress */
    uint32_t handshake_timeout; /* seconds to a TLS handshake's end, or a plain listener's first request */
};

/* What runs of a gateway a reload cannot change (restart-only), which some of the reload's checks need. */
struct gw_config_running {
    uint32_t loop_threads; /* 0: not a reload */
    bool handover;         /* it serves a hand-over socket */
};

struct gw_config {
    char *path; /* file it was loaded from */
    /* a reload's: what runs of the restart-only keys the checks of the running gateway judge with */
    struct gw_config_running running;
    struct gw_listener_conf *listeners;
    size_t n_listeners;
    struct gw_admin_conf admin; /* "admin": health, readiness, metrics; port 0 = none */
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
    uint32_t log_sample_success;       /* "log_sample_success": log 1 of N successful requests */
    char *user;                        /* "user": started as root, run as this user once bound */
    char *group;                       /* "group": and this group; NULL = the user's own */
    uid_t uid;                         /* the uid it serves as: files it writes are its or root's */
    gid_t gid;                         /* and its gid (both set by the load: gw_config_resolve_ids) */
    bool run_as_root;                  /* "run_as_root": keep root (tests, throwaway demos) */
    char *handover_socket;             /* "handover_socket": listening sockets to a successor */
    struct gw_root_update root_update; /* "root_ca_update" for roles without their own */
    struct gw_routes routes;           /* what routing reads of the above (mappings/route.h) */
    struct gw_route_upstream *route_ups;
    struct gw_upstream_signer upstream_signer; /* what the upstreams may use of |signer| */
};

/*
 * gw_config_reload is gw_config_load for a reload of a running gateway, which keeps what |run| says of
 * it (restart-only keys): the hand-over's count of listening sockets is judged with the loop threads
 * that run and the hand-over socket that is served, not with the file's. |run| NULL: gw_config_load.
 * NULL on failure with *|failed| (|failed| may be NULL) its class: GW_ERR_INVAL for the file refused,
 * GW_ERR_UNAVAILABLE for what the system lacks at this moment and another try may find (a PKCS#11 token
 * not present yet, a Vault token_file not written yet), GW_ERR_NOMEM (struct gw_conf_ctx's |failed|).
 */
struct gw_config *gw_config_reload(const char *path, const struct gw_config_running *run, int *failed,
                                   char *err);

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

/* The role of that name (|len| bytes), a borrowed pointer into |cfg|, or NULL. */
const struct gw_role *gw_config_role(const struct gw_config *cfg, const char *name, size_t len);

/* The file descriptors a configuration may hold open at once, by what holds them (gw_config_fds). */
struct gw_config_fds {
    size_t connections; /* limits.max_connections, the admin listener's, those awaiting a PROXY header */
    size_t listening;   /* loop_threads x listeners, the admin listener among them */
    size_t upstream;    /* the HTTP upstreams' connections (gw_upstream_conf_connections) */
    size_t redis;       /* cmp.state "redis": one per thread that asks it */
    size_t total;       /* those and GW_FD_RESERVE */
};

/*
 * gw_config_fds counts into |out| the descriptors |cfg| may hold open at once, from above: what the
 * soft RLIMIT_NOFILE must allow (docs/operations.md, "Open files").
 */
void gw_config_fds(const struct gw_config *cfg, struct gw_config_fds *out);

/* gw_config_cmp_settings fills |out| with what the CMP layer reads of |cfg| (borrowed from |cfg|). */
void gw_config_cmp_settings(const struct gw_config *cfg, struct gw_cmp_settings *out);

#endif