/*
 * Configuration: strict JSON into an immutable snapshot, with its crypto material loaded.
 *
 * The reader (base/conf.h) fills the structs by table; references between sections (role ->
 * upstream/trust/pbm, policy -> role) are resolved in one final cross-field pass here.
 */
#include "gateway/config.h"
#include "gateway/config_local.h"
#include "base/cidr.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/names.h"
#include "base/pem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#define SIGN_VERBATIM "sign-verbatim" /* Vault's path policy, and the name of the role it selects */

/*
 * "ticket_keys_file": one key per line, GW_TICKET_KEY_LEN bytes in hex (`openssl rand -hex 80`), at
 * most GW_MAX_TICKET_KEYS; the first encrypts new tickets, each decrypts (docs/operations.md).
 */
static int load_ticket_keys(struct gw_conf_ctx *pc, const char *path, struct gw_listener_conf *l)
{
    const size_t line = 2 * GW_TICKET_KEY_LEN, cap = GW_MAX_TICKET_KEYS * (line + 2);
    char kpath[GW_CONF_PATH_LEN], hex[2 * GW_TICKET_KEY_LEN + 1] = "";
    unsigned char *buf = NULL;
    size_t len = 0, n = 0, off = 0;
    int rc;

    gw_conf_join_key(kpath, path, "ticket_keys_file");
    if ((rc = gw_conf_read_secret(pc, kpath, l->ticket_keys_file, cap, &buf, &len)) != 0)
        return rc;
    if ((l->ticket_keys = OPENSSL_secure_zalloc(GW_MAX_TICKET_KEYS * GW_TICKET_KEY_LEN)) == NULL) {
        OPENSSL_clear_free(buf, cap + 3);
        return GW_ERR_NOMEM;
    }
    while (off < len && rc == 0) {
        size_t end = off;

        while (end < len && buf[end] != '\n')
            end++;
        if (end - off == line + 1 && buf[end - 1] == '\r')
            end--;
        if (end - off == line)
            memcpy(hex, buf + off, line);
        if (end - off != line || n == GW_MAX_TICKET_KEYS ||
            OPENSSL_hexstr2buf_ex(l->ticket_keys + n * GW_TICKET_KEY_LEN, GW_TICKET_KEY_LEN, NULL, hex,
                                  '\0') != 1)
            rc = gw_conf_fail(pc, kpath,
                              "line %zu: each line must be one key of %d bytes in hex (`openssl rand -hex "
                              "%d`), at most %d lines",
                              n + 1, GW_TICKET_KEY_LEN, GW_TICKET_KEY_LEN, GW_MAX_TICKET_KEYS);
        n++;
        off = end + 1 + (end < len && buf[end] == '\r');
    }
    OPENSSL_clear_free(buf, cap + 3);
    OPENSSL_cleanse(hex, sizeof(hex));
    if (rc == 0 && n == 0)
        rc = gw_conf_fail(pc, kpath, "no key in it");
    l->n_ticket_keys = rc == 0 ? n : 0;
    return rc;
}

static int check_tls(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_listener_conf *l = base;
    char cpath[GW_CONF_PATH_LEN];
    int rc;

    gw_conf_join_key(cpath, path, "client_ca");
    if (l->client_auth != GW_CLIENT_AUTH_NONE && l->client_ca == NULL)
        return gw_conf_fail(pc, cpath, "missing: required unless client_auth is \"none\"");
    /* kept: tls.c hands them to the SSL_CTX */
    rc = gw_pem_load_pair(pc, path, l->tls_cert, l->tls_key, l->tls_key_passphrase_file, GW_PEM_KEY_TLS,
                          &l->cert, &l->chain, &l->key);
    /* kept for tls.c, certificates alone: a CRL there was never checked in a handshake, and a
       "TRUSTED CERTIFICATE" the load skipped was trusted in one; both are refused, not skipped */
    if (rc == 0 && l->client_ca != NULL)
        rc = gw_pem_load_cert_bundle(pc, cpath, l->client_ca, &l->client_cas);
    if (rc == 0 && l->ticket_keys_file != NULL)
        rc = load_ticket_keys(pc, path, l);
    return rc;
}

/* ---- the schema ------------------------------------------------------------------------ */

static const struct gw_conf_enum client_auth_names[] = {
    {"none", GW_CLIENT_AUTH_NONE, NULL},
    {"optional", GW_CLIENT_AUTH_OPTIONAL, NULL},
    {"require", GW_CLIENT_AUTH_REQUIRE, NULL},
    {NULL, 0, NULL},
};

static const struct gw_conf_enum log_levels[] = {
    {"debug", GW_LOG_DEBUG, NULL},
    {"info", GW_LOG_INFO, NULL},
    {"warn", GW_LOG_WARN, NULL},
    {"error", GW_LOG_ERROR, NULL},
    {NULL, 0, NULL},
};

static const struct gw_conf_field tls_fields[] = {
    GW_CONF_REQ("cert", gw_conf_p_file, struct gw_listener_conf, tls_cert),
    GW_CONF_REQ("key", gw_conf_p_file, struct gw_listener_conf, tls_key),
    GW_CONF_OPT("key_passphrase_file", gw_conf_p_file, struct gw_listener_conf, tls_key_passphrase_file),
    GW_CONF_OPT("client_ca", gw_conf_p_file, struct gw_listener_conf, client_ca),
    GW_CONF_OPT("client_auth", gw_conf_p_enum, struct gw_listener_conf, client_auth,
                .def = GW_CLIENT_AUTH_REQUIRE, .aux = client_auth_names),
    GW_CONF_OPT("http2", gw_conf_p_bool, struct gw_listener_conf, http2, .def = false),
    GW_CONF_OPT("ticket_keys_file", gw_conf_p_file, struct gw_listener_conf, ticket_keys_file),
};
GW_CONF_OBJDEF(tls_def, tls_fields, check_tls);

/* A "trusted_proxies" entry: a CIDR of at most 64 characters. */
static bool proxy_range_ok(const char *s, size_t len)
{
    return len <= 64 && gw_cidr_valid(s, len);
}

static const struct gw_conf_names names_proxy_range = {
    proxy_range_ok, "a CIDR like \"10.0.0.0/8\" or \"::1/128\" (no host bits set)"};

/*
 * A CMP listener speaks TLS, or plain HTTP when it says so ("plain_http"): on loopback (a
 * benchmark, a sidecar), or behind a balancer that terminates TLS and names each client in a PROXY
 * header ("trusted_proxies"). Plain HTTP on an open address would let anyone on the path read and
 * replay the traffic, and make every client the balancer for the per-address limits.
 */
static int check_listener(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_listener_conf *l = base;
    char kpath[GW_CONF_PATH_LEN];

    gw_conf_join_key(kpath, path, "trusted_proxies");
    if (l->n_trusted_proxies > GW_MAX_TRUSTED_PROXIES)
        return gw_conf_fail(pc, kpath, "%zu ranges: at most %d", l->n_trusted_proxies,
                            GW_MAX_TRUSTED_PROXIES);
    for (size_t i = 0; i < l->n_trusted_proxies; i++) {
        const char *slash = strrchr(l->trusted_proxies[i], '/');

        if (slash != NULL && strcmp(slash, "/0") == 0) /* a balancer's address is known: this is a slip */
            gw_log(GW_LOG_WARN, "config",
                   "%s: %s: a range of every address (\"%s\"): any client that reaches the listener may "
                   "name itself any address, past the per-address limits and into the request log",
                   pc->name, kpath, l->trusted_proxies[i]);
    }
    gw_conf_join_key(kpath, path, l->plain_http ? "plain_http" : "tls");
    if (l->plain_http && l->tls_cert != NULL)
        return gw_conf_fail(pc, kpath, "true together with \"tls\": choose one");
    if (!l->plain_http && l->tls_cert == NULL)
        return gw_conf_fail(pc, kpath, "missing: a CMP listener speaks TLS unless \"plain_http\" is true");
    l->proxies_only = l->plain_http && !gw_cidr_loopback(l->address);
    if (l->proxies_only && l->n_trusted_proxies == 0)
        return gw_conf_fail(pc, kpath,
                            "plain HTTP only on a loopback address, or behind a balancer that terminates TLS "
                            "and is named in \"trusted_proxies\"");
    return 0;
}

static const struct gw_conf_field listener_fields[] = {
    GW_CONF_REQ("address", gw_conf_p_address, struct gw_listener_conf, address),
    GW_CONF_REQ("port", gw_conf_p_port, struct gw_listener_conf, port, .min = 1, .max = 65535),
    /* "tls" fills the same struct: .off 0 */
    {.key = "tls", .parse = gw_conf_p_opt_obj, .off = 0, .aux = &tls_def},
    GW_CONF_OPT("plain_http", gw_conf_p_bool, struct gw_listener_conf, plain_http, .def = false),
    GW_CONF_OPT("trusted_proxies", gw_conf_p_names, struct gw_listener_conf, trusted_proxies,
                .off_n = offsetof(struct gw_listener_conf, n_trusted_proxies), .aux = &names_proxy_range),
};
GW_CONF_OBJDEF(listener_def, listener_fields, check_listener);

/*
 * "admin": health, readiness and metrics, never CMP. Loopback and plain HTTP by default; on any
 * other address only over TLS with a required client certificate: what it tells is for the
 * operator alone. Never HTTP/2: the bearer token of POST /reload is wiped where h2o holds it only
 * over HTTP/1, as HPACK may keep it in the connection's header table for later requests to refer to.
 */
/*
 * "admin.token_file": the bearer token that POST /reload must carry. Only its owner may read the
 * file (anyone who can read it can reload the gateway); only its SHA-256 is kept, for comparing in
 * constant time, and the token is wiped.
 */
static int read_admin_token(struct gw_conf_ctx *pc, const char *path, struct gw_admin_conf *ac)
{
    char tpath[GW_CONF_PATH_LEN], shown[GW_ERR_LEN];
    unsigned char *tok = NULL;
    size_t len = 0, i;
    int rc = 0;

    gw_conf_join_key(tpath, path, "token_file");
    if (gw_conf_read_private_secret(pc, tpath, ac->token_file, GW_MIN_ADMIN_TOKEN_LEN, GW_MAX_ADMIN_TOKEN_LEN,
                                    &tok, &len) != 0)
        return GW_ERR_INVAL;
    for (i = 0; i < len; i++) /* it is compared with what follows "Bearer " in a header line */
        if (tok[i] < 0x21 || tok[i] > 0x7e)
            break;
    if (i < len)
        rc = gw_conf_fail(pc, tpath, "the token in \"%s\" holds a character that is not visible ASCII",
                          gw_conf_show_file(ac->token_file, shown, sizeof(shown)));
    else if (SHA256(tok, len, ac->token_sha256) == NULL)
        rc = GW_ERR_NOMEM;
    OPENSSL_clear_free(tok, GW_MAX_ADMIN_TOKEN_LEN + 3);
    return rc;
}

static int check_admin(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_admin_conf *ac = base;
    struct gw_listener_conf *a = &ac->listen;
    char apath[GW_CONF_PATH_LEN], hpath[GW_CONF_PATH_LEN];

    if (a->address == NULL && (a->address = strdup("127.0.0.1")) == NULL)
        return GW_ERR_NOMEM;
    gw_conf_join_key(apath, path, "tls");
    if (!gw_cidr_loopback(a->address) && (a->tls_cert == NULL || a->client_auth != GW_CLIENT_AUTH_REQUIRE))
        return gw_conf_fail(pc, apath,
                            "required on a non-loopback address, with \"client_auth\": \"require\": the "
                            "admin listener is for operators only");
    gw_conf_join_key(hpath, apath, "http2");
    if (a->http2)
        return gw_conf_fail(pc, hpath,
                            "the admin listener speaks HTTP/1 only: its bearer token cannot be wiped "
                            "from memory over HTTP/2; remove \"http2\"");
    return ac->token_file != NULL ? read_admin_token(pc, path, ac) : 0;
}

static const struct gw_conf_field admin_fields[] = {
    GW_CONF_OPT("address", gw_conf_p_address, struct gw_admin_conf, listen.address),
    GW_CONF_REQ("port", gw_conf_p_port, struct gw_admin_conf, listen.port, .min = 1, .max = 65535),
    /* "tls" fills the listener part */
    GW_CONF_OPT("tls", gw_conf_p_opt_obj, struct gw_admin_conf, listen, .aux = &tls_def),
    GW_CONF_OPT("ready_requires", gw_conf_p_names, struct gw_admin_conf, ready_requires,
                .off_n = offsetof(struct gw_admin_conf, n_ready_requires), .aux = &gw_conf_names_plain),
    GW_CONF_OPT("token_file", gw_conf_p_file, struct gw_admin_conf, token_file),
};
GW_CONF_OBJDEF(admin_def, admin_fields, check_admin);

static const struct gw_conf_field limits_fields[] = {
    GW_CONF_OPT("max_connections", gw_conf_p_u32, struct gw_limits_conf, admission.max_connections, .min = 1,
                .max = GW_MAX_CONNECTIONS, .def = GW_DEFAULT_MAX_CONNECTIONS),
    GW_CONF_OPT("max_connections_per_address", gw_conf_p_u32, struct gw_limits_conf,
                admission.max_connections_per_address, .min = 1, .max = GW_MAX_CONNECTIONS,
                .def = GW_DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
    GW_CONF_OPT("max_requests_in_flight_per_address", gw_conf_p_u32, struct gw_limits_conf,
                admission.max_requests_per_address, .min = 1, .max = GW_MAX_CONNECTIONS,
                .def = GW_DEFAULT_MAX_REQUESTS_PER_ADDRESS),
    GW_CONF_OPT("ipv6_prefix", gw_conf_p_u32, struct gw_limits_conf, admission.ipv6_prefix,
                .min = GW_MIN_IPV6_PREFIX, .max = 128, .def = GW_DEFAULT_IPV6_PREFIX),
    GW_CONF_OPT("auth_failures_per_address", gw_conf_p_u32, struct gw_limits_conf, admission.auth_failures,
                .min = 0, .max = GW_MAX_AUTH_FAILURES, .def = GW_DEFAULT_AUTH_FAILURES),
    GW_CONF_OPT("auth_failure_window", gw_conf_p_dur_s, struct gw_limits_conf, admission.auth_failure_window,
                .min = 1, .max = GW_MAX_AUTH_FAILURE_WINDOW, .def = GW_DEFAULT_AUTH_FAILURE_WINDOW),
    GW_CONF_OPT("body_timeout", gw_conf_p_dur_s, struct gw_limits_conf, body_timeout, .min = 1,
                .max = GW_MAX_BODY_TIMEOUT, .def = GW_DEFAULT_BODY_TIMEOUT),
    GW_CONF_OPT("send_timeout", gw_conf_p_dur_s, struct gw_limits_conf, send_timeout, .min = 1,
                .max = GW_MAX_SEND_TIMEOUT, .def = GW_DEFAULT_SEND_TIMEOUT),
    GW_CONF_OPT("handshake_timeout", gw_conf_p_dur_s, struct gw_limits_conf, handshake_timeout, .min = 1,
                .max = GW_MAX_HANDSHAKE_TIMEOUT, .def = GW_DEFAULT_HANDSHAKE_TIMEOUT),
};
GW_CONF_OBJDEF(limits_def, limits_fields, NULL);

static int p_listeners(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                       const struct gw_conf_field *f);

/* "upstreams": each entry's parser is its adapter's (upstream/conf.c). */
static const struct gw_conf_map upstream_map = {sizeof(struct gw_upstream_conf),
                                                offsetof(struct gw_upstream_conf, name),
                                                &gw_conf_names_plain,
                                                gw_upstream_p_conf,
                                                0,
                                                NULL};

static const struct gw_conf_field top_fields[] = {
    GW_CONF_REQ("listeners", p_listeners, struct gw_config, listeners,
                .off_n = offsetof(struct gw_config, n_listeners), .min = 1, .max = GW_MAX_LISTENERS),
    GW_CONF_OPT("loop_threads", gw_conf_p_u32, struct gw_config, loop_threads, .min = 1,
                .max = GW_MAX_LOOP_THREADS, .def = GW_DEFAULT_LOOP_THREADS),
    GW_CONF_OPT("workers", gw_conf_p_u32, struct gw_config, workers, .min = 1, .max = GW_MAX_WORKERS,
                .def = GW_DEFAULT_WORKERS),
    GW_CONF_OPT("queue_depth", gw_conf_p_u32, struct gw_config, queue_depth, .min = 1,
                .max = GW_MAX_QUEUE_DEPTH, .def = GW_DEFAULT_QUEUE_DEPTH),
    GW_CONF_OPT("path_prefix", gw_conf_p_prefix, struct gw_config, path_prefix, .sdef = "/pki"),
    GW_CONF_REQ("signer", gw_conf_p_obj, struct gw_config, signer, .aux = &gw_signer_conf_def),
    GW_CONF_OPT("trust", gw_conf_p_map, struct gw_config, trust, .off_n = offsetof(struct gw_config, n_trust),
                .aux = &gw_trust_conf_map),
    GW_CONF_OPT("pbm", gw_conf_p_map, struct gw_config, pbm, .off_n = offsetof(struct gw_config, n_pbm),
                .aux = &gw_pbm_conf_map),
    GW_CONF_OPT("upstreams", gw_conf_p_map, struct gw_config, upstreams,
                .off_n = offsetof(struct gw_config, n_upstreams), .aux = &upstream_map),
    GW_CONF_OPT("roles", gw_conf_p_map, struct gw_config, roles, .off_n = offsetof(struct gw_config, n_roles),
                .aux = &gw_role_conf_map),
    GW_CONF_OPT("default_path_policy", gw_role_p_policy, struct gw_config, default_path_policy,
                .sdef = "forbid"),
    GW_CONF_OPT("label_to_path_policy", gw_conf_p_map, struct gw_config, labels,
                .off_n = offsetof(struct gw_config, n_labels), .aux = &gw_label_conf_map),
    GW_CONF_OPT("profiles", gw_conf_p_map, struct gw_config, profiles,
                .off_n = offsetof(struct gw_config, n_profiles), .aux = &gw_profile_conf_map),
    GW_CONF_OPT("cmp", gw_conf_p_obj, struct gw_config, cmp, .aux = &gw_cmp_conf_def),
    GW_CONF_OPT("limits", gw_conf_p_obj, struct gw_config, limits, .aux = &limits_def),
    GW_CONF_OPT("admin", gw_conf_p_opt_obj, struct gw_config, admin, .aux = &admin_def),
    GW_CONF_REQ("audit", gw_conf_p_obj, struct gw_config, audit, .aux = &gw_audit_conf_def),
    GW_CONF_OPT("user", gw_conf_p_name, struct gw_config, user, .aux = &gw_conf_names_plain),
    GW_CONF_OPT("group", gw_conf_p_name, struct gw_config, group, .aux = &gw_conf_names_plain),
    GW_CONF_OPT("run_as_root", gw_conf_p_bool, struct gw_config, run_as_root, .def = false),
    GW_CONF_OPT("handover_socket", gw_conf_p_file, struct gw_config, handover_socket),
    GW_CONF_OPT("log_sample_success", gw_conf_p_u32, struct gw_config, log_sample_success, .min = 1,
                .max = GW_MAX_LOG_SAMPLE, .def = 1),
    GW_CONF_OPT("log_level", gw_conf_p_enum, struct gw_config, log_level, .def = GW_LOG_INFO,
                .aux = log_levels),
    GW_CONF_OPT("root_ca_update", gw_conf_p_opt_obj, struct gw_config, root_update,
                .aux = &gw_root_update_conf_def),
};
static int check_config(struct gw_conf_ctx *pc, const char *path, void *base);
GW_CONF_OBJDEF(top_def, top_fields, check_config);

static int p_listeners(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                       const struct gw_conf_field *f)
{
    struct gw_config *cfg = base;
    struct gw_conf_field lf = {.parse = gw_conf_p_obj, .aux = &listener_def};
    char ipath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];
    size_t i, n;
    int rc;

    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) < (size_t)f->min ||
        json_object_array_length(v) > (size_t)f->max)
        return gw_conf_fail(pc, path, "expected an array of %lld..%lld listeners, got %s", (long long)f->min,
                            (long long)f->max, gw_conf_show(v, buf, sizeof(buf)));
    n = json_object_array_length(v);
    if ((cfg->listeners = calloc(n, sizeof(*cfg->listeners))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        gw_conf_join_index(ipath, path, i);
        if (json_object_array_get_idx(v, i) == NULL)
            return gw_conf_fail(pc, ipath, "expected a listener object, got null");
        cfg->n_listeners = i + 1;
        if ((rc = lf.parse(pc, ipath, json_object_array_get_idx(v, i), &cfg->listeners[i], &lf)) != 0)
            return rc;
    }
    return 0;
}

/* ---- cross-field checks ------------------------------------------------------------------ */

/*
 * Adds the anchors, CRLs and intermediates of |t| to a union store and stack (a role's "trust", an
 * authorization's "tls_trust"). CRL checking carries over with the CRLs.
 */
static int trust_union_add(X509_STORE **store, STACK_OF(X509) **untrusted, const struct gw_trust_conf *t)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(t->store);
    X509_OBJECT *o;
    int i;

    if (*store == NULL && (*store = X509_STORE_new()) == NULL)
        return GW_ERR_NOMEM;
    /* a client's chain is built from certificates it sent: bound how far it can make us go */
    if (X509_STORE_set_flags(*store, X509_V_FLAG_X509_STRICT) != 1 ||
        X509_STORE_set_depth(*store, GW_MAX_CHAIN_DEPTH) != 1)
        return GW_ERR_CRYPTO;
    if (t->crl_file != NULL &&
        X509_STORE_set_flags(*store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) != 1)
        return GW_ERR_CRYPTO;
    for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        o = sk_X509_OBJECT_value(objs, i);
        /* a certificate in two trust entries is added once: X509_STORE_add_cert ignores repeats */
        if (X509_OBJECT_get0_X509(o) != NULL && X509_STORE_add_cert(*store, X509_OBJECT_get0_X509(o)) != 1)
            return GW_ERR_CRYPTO;
        if (X509_OBJECT_get0_X509_CRL(o) != NULL &&
            X509_STORE_add_crl(*store, X509_OBJECT_get0_X509_CRL(o)) != 1)
            return GW_ERR_CRYPTO;
    }
    for (i = 0; i < sk_X509_num(t->untrusted); i++) {
        if (*untrusted == NULL && (*untrusted = sk_X509_new_null()) == NULL)
            return GW_ERR_NOMEM;
        if (!X509_add_cert(*untrusted, sk_X509_value(t->untrusted, i),
                           X509_ADD_FLAG_UP_REF | X509_ADD_FLAG_NO_DUP))
            return GW_ERR_NOMEM;
    }
    return 0;
}

/*
 * Resolves trust names |names| (at |path|) into one union store. CRL checking is a property of the
 * whole store, so entries with and without crl_file cannot be mixed: the latter would never verify.
 */
static int trust_union(struct gw_conf_ctx *pc, const struct gw_config *cfg, const char *path, char **names,
                       size_t n, X509_STORE **store, STACK_OF(X509) **untrusted)
{
    const struct gw_trust_conf *t;
    char ipath[GW_CONF_PATH_LEN];
    size_t i, with_crl = 0;
    int rc;

    for (i = 0; i < n; i++) {
        gw_conf_join_index(ipath, path, i);
        if ((t = gw_trust_conf_find(cfg->trust, cfg->n_trust, names[i])) == NULL)
            return gw_conf_fail(pc, ipath, "unknown trust \"%s\"", names[i]);
        if ((rc = trust_union_add(store, untrusted, t)) != 0)
            return gw_conf_fail(pc, ipath, "cannot build the trust store: %s", gw_err_str(rc));
        with_crl += t->crl_file != NULL;
    }
    if (with_crl != 0 && with_crl != n)
        return gw_conf_fail(
            pc, path,
            "mixes trust entries with and without \"crl_file\": with CRL checking on, certificates "
            "of the entries without CRLs would never verify");
    return 0;
}

/*
 * The trust entries lines of the role's device allow-list name: unknown is an error; one the role does
 * not trust admits no device there (another role naming the same file may trust it).
 */
static int resolve_allow_scopes(struct gw_conf_ctx *pc, const struct gw_config *cfg, struct gw_role *r)
{
    char path[GW_CONF_PATH_LEN], shown[GW_ERR_LEN];
    const struct gw_trust_conf *t;
    struct gw_allow_scope *sc;

    for (size_t i = 0; i < r->n_allow_scopes; i++) {
        sc = &r->allow_scopes[i];
        if ((t = gw_trust_conf_find(cfg->trust, cfg->n_trust, sc->trust_name)) == NULL) {
            gw_conf_bprintf(path, sizeof(path), "$.roles.%s.device_allowlist", r->name);
            return gw_conf_fail(pc, path, "\"%s\" line %ld: unknown trust \"%s\"",
                                gw_conf_show_file(r->device_allowlist_file, shown, sizeof(shown)), sc->line,
                                sc->trust_name);
        }
        sc->store = gw_names_has(r->trust_names, r->n_trust, t->name) ? t->store : NULL;
    }
    return 0;
}

static int resolve_role(struct gw_conf_ctx *pc, struct gw_config *cfg, struct gw_role *r)
{
    char path[GW_CONF_PATH_LEN];
    size_t i;
    int rc;

    if ((rc = gw_upstream_resolve_role(pc, r, cfg->upstreams, cfg->n_upstreams)) != 0)
        return rc;
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.trust", r->name);
    if ((rc = trust_union(pc, cfg, path, r->trust_names, r->n_trust, &r->store, &r->untrusted)) != 0 ||
        (rc = resolve_allow_scopes(pc, cfg, r)) != 0)
        return rc;
    gw_config_warn_migration(pc, r);
    gw_config_warn_any_host(pc, r);
    for (i = 0; i < r->n_pbm; i++) {
        gw_conf_bprintf(path, sizeof(path), "$.roles.%s.pbm[%zu]", r->name, i);
        if (gw_pbm_conf_find(cfg->pbm, cfg->n_pbm, (const unsigned char *)r->pbm_refs[i],
                             strlen(r->pbm_refs[i])) == NULL)
            return gw_conf_fail(pc, path, "unknown pbm reference \"%s\"", r->pbm_refs[i]);
    }
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.authorization.tls_trust", r->name);
    if ((rc = trust_union(pc, cfg, path, r->authz.tls_trust_names, r->authz.n_tls_trust, &r->authz.tls_store,
                          &r->authz.tls_untrusted)) != 0)
        return rc;
    return gw_role_check_authz_sans(pc, r);
}

static int resolve_policy(struct gw_conf_ctx *pc, const struct gw_config *cfg, const char *path,
                          struct gw_path_policy *pol)
{
    if (pol->forbid)
        return 0;
    if ((pol->role = gw_config_role(cfg, pol->role_name, strlen(pol->role_name))) != NULL)
        return 0;
    if (strcmp(pol->role_name, SIGN_VERBATIM) == 0)
        return gw_conf_fail(pc, path,
                            "\"" SIGN_VERBATIM "\" names the role \"" SIGN_VERBATIM
                            "\", which does not exist: add it "
                            "with \"sign\": \"verbatim\"");
    return gw_conf_fail(pc, path, "unknown role \"%s\" in \"role:%s\"", pol->role_name, pol->role_name);
}

/*
 * Instances sharing their state ("cmp.state": "redis") must share what a local issuer revokes too: a
 * certificate revoked through one instance must not authenticate on another.
 */
static int check_cluster_stores(struct gw_conf_ctx *pc, const struct gw_config *cfg)
{
    char path[GW_CONF_PATH_LEN];

    if (cfg->cmp.state.backend != GW_STATE_REDIS)
        return 0;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct gw_upstream_conf *u = &cfg->upstreams[i];

        if (u->store_dir == NULL || u->shared_store)
            continue;
        gw_conf_bprintf(path, sizeof(path), "$.upstreams.%s.store", u->name);
        return gw_conf_fail(pc, path,
                            "with \"cmp.state\" \"redis\" every instance must see the same store (its "
                            "revocations): put it on storage they share and set \"shared_store\": true");
    }
    return 0;
}

/* Two listeners on one address and port would fail at bind time: say so at check time. */
static int check_listeners(struct gw_conf_ctx *pc, const struct gw_config *cfg)
{
    char path[GW_CONF_PATH_LEN];
    size_t i, j;

    for (i = 0; i < cfg->n_listeners; i++) {
        for (j = 0; j < i; j++) {
            if (cfg->listeners[i].port != cfg->listeners[j].port ||
                strcmp(cfg->listeners[i].address, cfg->listeners[j].address) != 0)
                continue;
            gw_conf_join_index(path, "$.listeners", i);
            return gw_conf_fail(pc, path, "same address and port as $.listeners[%zu]: \"%s\" port %u", j,
                                cfg->listeners[i].address, cfg->listeners[i].port);
        }
        if (cfg->admin.listen.port != 0 && cfg->admin.listen.port == cfg->listeners[i].port &&
            strcmp(cfg->admin.listen.address, cfg->listeners[i].address) == 0)
            return gw_conf_fail(pc, "$.admin", "same address and port as $.listeners[%zu]: \"%s\" port %u", i,
                                cfg->admin.listen.address, cfg->admin.listen.port);
    }
    for (i = 0; i < cfg->admin.n_ready_requires; i++) {
        bool known = false;
        for (j = 0; j < cfg->n_upstreams && !known; j++)
            known = strcmp(cfg->upstreams[j].name, cfg->admin.ready_requires[i]) == 0;
        gw_conf_join_index(path, "$.admin.ready_requires", i);
        if (!known)
            return gw_conf_fail(pc, path, "unknown upstream \"%s\"", cfg->admin.ready_requires[i]);
    }
    return 0;
}

/* What routing reads (mappings/route.h): pointers into |cfg|, and each upstream's name. */
static int routes_init(struct gw_config *cfg)
{
    struct gw_routes *rt = &cfg->routes;

    if (cfg->n_upstreams > 0 && (cfg->route_ups = calloc(cfg->n_upstreams, sizeof(*cfg->route_ups))) == NULL)
        return GW_ERR_NOMEM;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        cfg->route_ups[i].name = cfg->upstreams[i].name;
        cfg->route_ups[i].own_ca = cfg->upstreams[i].own_ca != NULL;
    }
    rt->path_prefix = cfg->path_prefix;
    rt->roles = cfg->roles;
    rt->n_roles = cfg->n_roles;
    rt->default_policy = &cfg->default_path_policy;
    rt->labels = cfg->labels;
    rt->n_labels = cfg->n_labels;
    rt->profiles = cfg->profiles;
    rt->n_profiles = cfg->n_profiles;
    rt->upstreams = cfg->route_ups;
    rt->n_upstreams = cfg->n_upstreams;
    return 0;
}

/*
 * Each loop thread binds its own socket per listener, the admin listener's too, and a hand-over sends
 * them all in one message, which carries at most GW_MAX_HANDOVER_FDS: with more, every hand-over would
 * fail (the old gateway serving on), which only an upgrade would show. At a reload, loop_threads and
 * handover_socket are restart-only while listeners are added: the count is the running gateway's.
 */
static int check_handover_count(struct gw_conf_ctx *pc, const struct gw_config *cfg)
{
    const struct gw_config_running *run = &cfg->running;
    size_t per_loop = cfg->n_listeners + (cfg->admin.listen.port != 0);
    size_t loops = run->loop_threads != 0 ? run->loop_threads : cfg->loop_threads, n = loops * per_loop;
    bool handover = run->loop_threads != 0 ? run->handover : cfg->handover_socket != NULL;
    const char *admin = cfg->admin.listen.port != 0 ? ", the admin listener's among them" : "";

    if (!handover || n <= GW_MAX_HANDOVER_FDS)
        return 0;
    if (run->loop_threads != 0)
        return gw_conf_fail(
            pc, "$.listeners",
            "the running loop_threads (%zu: restart-only) x listening sockets per loop thread "
            "(%zu%s) = %zu, more than one hand-over carries (%d): have fewer listeners",
            loops, per_loop, admin, n, GW_MAX_HANDOVER_FDS);
    return gw_conf_fail(pc, "$.handover_socket",
                        "loop_threads (%zu) x listening sockets per loop thread (%zu%s) = %zu, more than one "
                        "hand-over carries (%d): lower loop_threads to %zu or fewer, or have fewer listeners",
                        loops, per_loop, admin, n, GW_MAX_HANDOVER_FDS, GW_MAX_HANDOVER_FDS / per_loop);
}

static int check_config(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_config *cfg = base;
    char lpath[GW_CONF_PATH_LEN];
    size_t i;
    int rc;

    (void)path;
    if ((rc = check_listeners(pc, cfg)) != 0 || (rc = check_cluster_stores(pc, cfg)) != 0)
        return rc;
    /* a Unix socket's path, with room for the temporary name it is bound under (gateway/handover.c) */
    if (cfg->handover_socket != NULL && strlen(cfg->handover_socket) > GW_MAX_UNIX_PATH)
        return gw_conf_fail(pc, "$.handover_socket", "a Unix socket path of at most %d bytes, got %zu",
                            GW_MAX_UNIX_PATH, strlen(cfg->handover_socket));
    if ((rc = check_handover_count(pc, cfg)) != 0)
        return rc;
    gw_config_warn_handover(pc, cfg);
    gw_config_warn_fds(pc, cfg);
    /* whom a local issuer's store must belong to (or root): the user the gateway will serve as */
    if ((rc = gw_config_resolve_ids(pc, cfg)) != 0)
        return rc;
    for (i = 0; i < cfg->n_upstreams; i++)
        cfg->upstreams[i].owner = cfg->uid;
    /* what the upstreams may use of the gateway: its own key (a cmp upstream signs with it) */
    cfg->upstream_signer.cert = cfg->signer.cert;
    cfg->upstream_signer.key = cfg->signer.key;
    cfg->upstream_signer.chain = cfg->signer.chain;
    for (i = 0; i < cfg->n_roles; i++)
        if ((rc = resolve_role(pc, cfg, &cfg->roles[i])) != 0)
            return rc;
    if ((rc = resolve_policy(pc, cfg, "$.default_path_policy", &cfg->default_path_policy)) != 0)
        return rc;
    for (i = 0; i < cfg->n_labels; i++) {
        gw_conf_join_key(lpath, "$.label_to_path_policy", cfg->labels[i].label);
        if ((rc = resolve_policy(pc, cfg, lpath, &cfg->labels[i].policy)) != 0)
            return rc;
    }
    for (i = 0; i < cfg->n_profiles; i++) {
        gw_conf_join_key(lpath, "$.profiles", cfg->profiles[i].name);
        if ((rc = resolve_policy(pc, cfg, lpath, &cfg->profiles[i].policy)) != 0)
            return rc;
    }
    gw_config_warn_free_subjects(pc, cfg);
    return routes_init(cfg);
}

/* gw_config_parse, for a reload of the gateway |run| says runs (NULL: not a reload); *|failed| the class of
   a failure (struct gw_conf_ctx). */
static struct gw_config *parse(const char *json, size_t len, const char *base_dir, const char *name,
                               const struct gw_config_running *run, int *failed, char *err)
{
    char errbuf[GW_ERR_LEN];
    struct gw_conf_ctx pc = {
        .name = name != NULL ? name : "config", .base_dir = base_dir, .err = err != NULL ? err : errbuf};
    struct gw_config *cfg;
    int rc = GW_ERR_NOMEM;

    pc.err[0] = '\0';
    *failed = 0;
    if ((cfg = calloc(1, sizeof(*cfg))) != NULL && run != NULL)
        cfg->running = *run;
    if (cfg != NULL && (rc = gw_conf_read(&pc, json, len, &top_def, cfg)) == 0)
        return cfg;
    if (rc == GW_ERR_NOMEM)
        gw_conf_fail_as(&pc, GW_ERR_NOMEM, NULL, "out of memory");
    *failed = pc.failed != 0 ? pc.failed : GW_ERR_INVAL;
    gw_config_free(cfg);
    return NULL;
}

struct gw_config *gw_config_parse(const char *json, size_t len, const char *base_dir, const char *name,
                                  char *err)
{
    int failed;

    return parse(json, len, base_dir, name, NULL, &failed, err);
}

static struct gw_config *load(const char *path, const struct gw_config_running *run, int *failed, char *err)
{
    char errbuf[GW_ERR_LEN];
    struct gw_conf_ctx pc = {.name = path, .err = err != NULL ? err : errbuf};
    struct gw_config *cfg = NULL;
    char *buf = NULL, *dir = NULL;
    size_t len = 0;

    pc.err[0] = '\0';
    *failed = GW_ERR_INVAL;
    if ((buf = gw_conf_read_file(&pc, path, &len)) == NULL) {
        *failed = pc.failed; /* out of memory is not the file's */
        goto out;
    }
    if ((dir = gw_conf_dir_of(path)) == NULL) {
        *failed = gw_conf_fail_as(&pc, GW_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    if ((cfg = parse(buf, len, dir, path, run, failed, pc.err)) == NULL)
        goto out;
    if ((cfg->path = strdup(path)) == NULL) {
        gw_config_free(cfg);
        cfg = NULL;
        *failed = gw_conf_fail_as(&pc, GW_ERR_NOMEM, NULL, "out of memory");
    }
out:
    free(dir);
    free(buf);
    return cfg;
}

struct gw_config *gw_config_load(const char *path, char *err)
{
    int failed;

    return load(path, NULL, &failed, err);
}

struct gw_config *gw_config_reload(const char *path, const struct gw_config_running *run, int *failed,
                                   char *err)
{
    int why;

    return load(path, run, failed != NULL ? failed : &why, err);
}

/* ---- free and lookups --------------------------------------------------------------------- */

static void listener_cleanup(struct gw_listener_conf *l)
{
    free(l->address);
    free(l->tls_cert);
    free(l->tls_key);
    free(l->tls_key_passphrase_file);
    X509_free(l->cert);
    sk_X509_pop_free(l->chain, X509_free);
    EVP_PKEY_free(l->key);
    free(l->client_ca);
    sk_X509_pop_free(l->client_cas, X509_free);
    free(l->ticket_keys_file);
    OPENSSL_secure_clear_free(l->ticket_keys,
                              l->ticket_keys != NULL ? GW_MAX_TICKET_KEYS * GW_TICKET_KEY_LEN : 0);
    gw_conf_free_strings(l->trusted_proxies, l->n_trusted_proxies);
}

void gw_config_free(struct gw_config *cfg)
{
    size_t i;

    if (cfg == NULL)
        return;
    free(cfg->route_ups);
    for (i = 0; i < cfg->n_listeners; i++)
        listener_cleanup(&cfg->listeners[i]);
    free(cfg->listeners);
    listener_cleanup(&cfg->admin.listen);
    gw_conf_free_strings(cfg->admin.ready_requires, cfg->admin.n_ready_requires);
    free(cfg->admin.token_file);
    OPENSSL_cleanse(cfg->admin.token_sha256, sizeof(cfg->admin.token_sha256));
    gw_signer_conf_cleanup(&cfg->signer);
    gw_trust_conf_free(cfg->trust, cfg->n_trust);
    gw_pbm_conf_free(cfg->pbm, cfg->n_pbm);
    for (i = 0; i < cfg->n_upstreams; i++)
        gw_upstream_conf_cleanup(&cfg->upstreams[i]);
    free(cfg->upstreams);
    gw_roles_free(cfg->roles, cfg->n_roles);
    gw_labels_free(cfg->labels, cfg->n_labels);
    gw_profiles_free(cfg->profiles, cfg->n_profiles);
    free(cfg->default_path_policy.role_name);
    gw_root_update_cleanup(&cfg->root_update);
    free(cfg->audit.file);
    gw_cmp_conf_cleanup(&cfg->cmp);
    free(cfg->path_prefix);
    free(cfg->user);
    free(cfg->group);
    free(cfg->handover_socket);
    free(cfg->path);
    free(cfg);
}

/* ---- lookups ------------------------------------------------------------------------------ */

const struct gw_role *gw_config_role(const struct gw_config *cfg, const char *name, size_t len)
{
    for (size_t i = 0; cfg != NULL && name != NULL && i < cfg->n_roles; i++)
        if (strlen(cfg->roles[i].name) == len && memcmp(cfg->roles[i].name, name, len) == 0)
            return &cfg->roles[i];
    return NULL;
}
