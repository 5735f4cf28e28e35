/*
 * The "upstreams" section (upstream/upstream.h): the keys every adapter takes, the HTTP keys of
 * those that speak to an API, and the adapter's own section, which its table and check describe
 * (upstream/upstream_int.h). Also what a role may ask of the upstreams it names.
 *
 * One JSON object holds all three kinds of keys. They are told apart by table: a key of none of
 * them that another adapter takes is "not valid for a <type> upstream", anything else unknown.
 */
#include "upstream/upstream.h"
#include "upstream/upstream_int.h"
#include "base/cidr.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/pem.h"
#include "base/pkcs11.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/role.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define GW_UPSTREAM_OPS_ADDRESS(type) &gw_upstream_##type##_ops,
static const struct gw_upstream_ops *const adapters[] = {GW_UPSTREAM_ADAPTERS(GW_UPSTREAM_OPS_ADDRESS)};
#define N_ADAPTERS (sizeof(adapters) / sizeof(adapters[0]))

static const struct gw_conf_field common_fields[] = {
    GW_CONF_OPT("timeout", gw_conf_p_dur_ms, struct gw_upstream_conf, timeout_ms, .min = 1,
                .max = GW_MAX_UPSTREAM_TIMEOUT_MS, .def = GW_DEFAULT_UPSTREAM_TIMEOUT_MS),
    GW_CONF_OPT("max_inflight", gw_conf_p_u32, struct gw_upstream_conf, max_inflight, .min = 1,
                .max = GW_MAX_UPSTREAM_INFLIGHT, .def = GW_DEFAULT_UPSTREAM_MAX_INFLIGHT),
    GW_CONF_OPT("check_revocation", gw_conf_p_bool, struct gw_upstream_conf, check_revocation, .def = true),
    GW_CONF_OPT("probe_interval", gw_conf_p_dur_s, struct gw_upstream_conf, probe_interval, .min = 0,
                .max = GW_MAX_PROBE_INTERVAL, .def = GW_DEFAULT_PROBE_INTERVAL),
    GW_CONF_OPT("fail_fast", gw_conf_p_bool, struct gw_upstream_conf, fail_fast, .def = true),
};
GW_CONF_OBJDEF(common_def, common_fields, NULL);

static const struct gw_conf_field http_fields[] = {
    GW_CONF_REQ("url", gw_conf_p_url, struct gw_http_conf, url),
    GW_CONF_REQ("issuer_ca", gw_conf_p_file, struct gw_http_conf, issuer_ca_file),
    GW_CONF_OPT("tls_ca", gw_conf_p_file, struct gw_http_conf, ca_file),
    GW_CONF_OPT("tls_cert", gw_conf_p_file, struct gw_http_conf, client_cert_file),
    GW_CONF_OPT("tls_key", gw_conf_p_file, struct gw_http_conf, client_key_file),
    GW_CONF_OPT("tls_key_passphrase_file", gw_conf_p_file, struct gw_http_conf, client_key_passphrase_file),
    GW_CONF_OPT("max_connections", gw_conf_p_u32, struct gw_http_conf, max_connections, .min = 1,
                .max = GW_MAX_UPSTREAM_CONNECTIONS, .def = GW_DEFAULT_UPSTREAM_CONNECTIONS),
    GW_CONF_OPT("allow_plaintext_http", gw_conf_p_bool, struct gw_http_conf, allow_plaintext_http,
                .def = false),
};
GW_CONF_OBJDEF(http_def, http_fields, NULL);

static const struct gw_conf_field *def_find(const struct gw_conf_obj *def, const char *key)
{
    for (size_t i = 0; def != NULL && i < def->n; i++)
        if (strcmp(def->fields[i].key, key) == 0)
            return &def->fields[i];
    return NULL;
}

/* Whether |key| is one of the TLS client certificate's, which only GW_UPSTREAM_HTTP_CERT adapters take. */
static bool client_cert_key(const char *key)
{
    return strcmp(key, "tls_cert") == 0 || strcmp(key, "tls_key") == 0 ||
           strcmp(key, "tls_key_passphrase_file") == 0;
}

/* Where |key| belongs for an upstream of adapter |ops|: its common, HTTP or own section, or none. */
static const struct gw_conf_obj *section_of(const struct gw_upstream_ops *ops, const char *key)
{
    if (def_find(&common_def, key) != NULL)
        return &common_def;
    if (ops->http != 0 && def_find(&http_def, key) != NULL &&
        ((ops->http & GW_UPSTREAM_HTTP_CERT) != 0 || !client_cert_key(key)))
        return &http_def;
    return def_find(ops->conf_def, key) != NULL ? ops->conf_def : NULL;
}

static const struct gw_upstream_ops *adapter_named(const char *type)
{
    for (size_t i = 0; i < N_ADAPTERS; i++)
        if (strcmp(adapters[i]->dialect, type) == 0)
            return adapters[i];
    return NULL;
}

/* "type": the adapter, or an error listing the types there are. */
static const struct gw_upstream_ops *parse_type(struct gw_conf_ctx *pc, const char *path,
                                                struct json_object *v)
{
    const struct gw_upstream_ops *ops;
    char tpath[GW_CONF_PATH_LEN], list[160], buf[GW_CONF_SHOW_BUF];
    struct json_object *t = NULL;
    size_t used = 0;

    gw_conf_join_key(tpath, path, "type");
    if (!json_object_object_get_ex(v, "type", &t)) {
        gw_conf_fail(pc, tpath, "missing required key");
        return NULL;
    }
    if (json_object_is_type(t, json_type_string) && (ops = adapter_named(json_object_get_string(t))) != NULL)
        return ops;
    list[0] = '\0';
    for (size_t i = 0; i < N_ADAPTERS; i++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s\"%s\"", i > 0 ? "|" : "",
                                 adapters[i]->dialect);
    gw_conf_fail(pc, tpath, "expected one of %s, got %s", list,
                 t != NULL ? gw_conf_show(t, buf, sizeof(buf)) : "null");
    return NULL;
}

/*
 * The keys of |v| that belong to |def|, as a new object (values shared); NULL if out of memory.
 * Before that, a key that fits no section is refused, and a required key of |def| missing.
 */
static struct json_object *section(struct gw_conf_ctx *pc, const char *path, struct json_object *v,
                                   const struct gw_upstream_ops *ops, const struct gw_conf_obj *def, int *rc)
{
    struct json_object *out = json_object_new_object();
    char kpath[GW_CONF_PATH_LEN];

    *rc = out != NULL ? 0 : GW_ERR_NOMEM;
    json_object_object_foreach(v, key, val)
    {
        const struct gw_conf_obj *sec = strcmp(key, "type") == 0 ? NULL : section_of(ops, key);
        if (*rc != 0 || strcmp(key, "type") == 0)
            continue;
        gw_conf_join_key(kpath, path, key);
        if (sec == NULL) {
            bool elsewhere = def_find(&http_def, key) != NULL;
            for (size_t i = 0; i < N_ADAPTERS && !elsewhere; i++)
                elsewhere = def_find(adapters[i]->conf_def, key) != NULL;
            *rc = elsewhere ? gw_conf_fail(pc, kpath, "not valid for a \"%s\" upstream", ops->dialect)
                            : gw_conf_fail_key(pc, path, key, "unknown key");
        } else if (sec == def && json_object_object_add(out, key, json_object_get(val)) != 0) {
            *rc = GW_ERR_NOMEM;
        }
    }
    for (size_t i = 0; *rc == 0 && def != NULL && i < def->n; i++) {
        if (!def->fields[i].required || json_object_object_get_ex(v, def->fields[i].key, NULL))
            continue;
        gw_conf_join_key(kpath, path, def->fields[i].key);
        *rc = gw_conf_fail(pc, kpath, "missing: required for a \"%s\" upstream", ops->dialect);
    }
    if (*rc != 0) {
        json_object_put(out);
        return NULL;
    }
    return out;
}

/* Parses the keys of |v| that |def| describes into |dst|. */
static int parse_section(struct gw_conf_ctx *pc, const char *path, struct json_object *v,
                         const struct gw_upstream_ops *ops, const struct gw_conf_obj *def, void *dst)
{
    struct gw_conf_field f = {.parse = gw_conf_p_obj, .aux = def};
    struct json_object *sub;
    int rc;

    if ((sub = section(pc, path, v, ops, def, &rc)) == NULL)
        return rc;
    rc = f.parse(pc, path, sub, dst, &f);
    json_object_put(sub);
    return rc;
}

/* Whether the host of |url| ("http://host[:port]", as gw_conf_p_url checked it) is this machine. */
static bool url_host_loopback(const char *url)
{
    const char *h = strstr(url, "://") + 3, *end;
    char host[GW_MAX_URL_LEN + 1];

    if (*h == '[')
        end = strchr(++h, ']');
    else if ((end = strchr(h, ':')) == NULL)
        end = h + strlen(h);
    if (end == NULL || (size_t)(end - h) >= sizeof(host))
        return false;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = '\0';
    return strcasecmp(host, "localhost") == 0 || gw_cidr_loopback(host);
}

/*
 * An http:// "url" sends the Vault token, the cfssl auth MAC'd requests and every CSR and certificate
 * in cleartext: fine on loopback (a sidecar, tests), refused elsewhere unless the upstream opts in.
 */
static int check_http_plaintext(struct gw_conf_ctx *pc, const char *path, const struct gw_http_conf *u)
{
    char upath[GW_CONF_PATH_LEN];

    if (strncmp(u->url, "http://", 7) != 0 || url_host_loopback(u->url))
        return 0;
    gw_conf_join_key(upath, path, "url");
    if (!u->allow_plaintext_http)
        return gw_conf_fail(
            pc, upath,
            "\"%s\" is plain HTTP off loopback (tokens and CSRs in cleartext): use an https:// "
            "\"url\" with \"tls_ca\", or set \"allow_plaintext_http\": true",
            u->url);
    gw_log(GW_LOG_WARN, "config",
           "%s: %s: \"%s\" is plain HTTP off loopback (allow_plaintext_http): its traffic "
           "crosses the network in cleartext",
           pc->name, upath, u->url);
    return 0;
}

/* The bytes written to memory BIO |b| as a new buffer (free with OPENSSL_clear_free). */
static int bio_bytes(BIO *b, unsigned char **out, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);

    if (n <= 0 || (*out = OPENSSL_memdup(data, (size_t)n)) == NULL)
        return GW_ERR_NOMEM;
    *len = (size_t)n;
    return 0;
}

/* |certs| as PEM, written anew from what was parsed: a new buffer (free with OPENSSL_free). */
static int certs_pem(const STACK_OF(X509) *certs, unsigned char **out, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    int rc = GW_ERR_NOMEM;

    for (int i = 0; b != NULL && i < sk_X509_num(certs); i++)
        if (PEM_write_bio_X509(b, sk_X509_value(certs, i)) != 1)
            goto out;
    if (b != NULL)
        rc = bio_bytes(b, out, len);
out:
    BIO_free(b);
    return rc;
}

/*
 * Keeps |certs| (the tls_cert file, leaf first) and |key| in |u|, taking both: what libcurl presents is what
 * was checked here, whatever becomes of the files later. A key in a PKCS#11 token is kept the same way, as
 * the key loaded here (base/pkcs11.c) and never its URI: libcurl would load it by name at each new
 * connection, on the threads that make them, outside base/pkcs11.c's lock and without its PIN.
 */
static void keep_client(struct gw_http_conf *u, STACK_OF(X509) **certs, EVP_PKEY **key)
{
    u->client_certs = *certs;
    u->client_key = *key;
    *certs = NULL;
    *key = NULL;
}

/*
 * "tls_ca": certificates alone, kept as PEM written anew from what was parsed here. These bytes are
 * all libcurl trusts, whatever becomes of the file later.
 */
static int keep_ca_pem(struct gw_conf_ctx *pc, const char *path, struct gw_http_conf *u)
{
    STACK_OF(X509) *sk = NULL;
    int rc;

    if ((rc = gw_pem_load_cert_bundle(pc, path, u->ca_file, &sk)) == 0)
        rc = certs_pem(sk, &u->ca_pem, &u->ca_pem_len);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

/* The TLS settings of an HTTP upstream: an https URL, a loadable CA bundle, a matching client pair. */
static int check_http_tls(struct gw_conf_ctx *pc, const char *path, struct gw_http_conf *u)
{
    STACK_OF(X509) *certs = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    char cpath[GW_CONF_PATH_LEN], kpath[GW_CONF_PATH_LEN], key_shown[GW_ERR_LEN], cert_shown[GW_ERR_LEN];
    int rc;

    gw_conf_join_key(kpath, path, "tls_key_passphrase_file");
    if (u->client_key_passphrase_file != NULL && u->client_key_file == NULL)
        return gw_conf_fail(pc, kpath, "goes with \"tls_key\"");
    gw_conf_join_key(cpath, path, u->client_cert_file != NULL ? "tls_cert" : "tls_key");
    gw_conf_join_key(kpath, path, u->ca_file != NULL ? "tls_ca" : "url");
    if (strncmp(u->url, "https://", 8) != 0 &&
        (u->ca_file != NULL || u->client_cert_file != NULL || u->client_key_file != NULL))
        return gw_conf_fail(pc, u->ca_file != NULL ? kpath : cpath, "TLS settings need an https:// \"url\"");
    if ((u->client_cert_file == NULL) != (u->client_key_file == NULL))
        return gw_conf_fail(pc, cpath, "\"tls_cert\" and \"tls_key\" go together");
    if (u->ca_file != NULL && (rc = keep_ca_pem(pc, kpath, u)) != 0)
        return rc;
    if (u->client_cert_file == NULL)
        return 0;
    gw_conf_join_key(kpath, path, "tls_key");
    rc = GW_ERR_INVAL;
    if (gw_pem_load_certs(pc, cpath, u->client_cert_file, &certs) != 0 ||
        gw_pem_load_key(pc, kpath, u->client_key_file, u->client_key_passphrase_file, GW_PEM_KEY_TLS, &key) !=
            0)
        goto out;
    cert = sk_X509_value(certs, 0);
    if (X509_check_private_key(cert, key) != 1) {
        gw_conf_fail(pc, kpath, "key in \"%s\" does not match the certificate in \"%s\"",
                     gw_conf_show_file(u->client_key_file, key_shown, sizeof(key_shown)),
                     gw_conf_show_file(u->client_cert_file, cert_shown, sizeof(cert_shown)));
        goto out;
    }
    keep_client(u, &certs, &key);
    rc = 0;
out:
    sk_X509_pop_free(certs, X509_free);
    EVP_PKEY_free(key);
    return rc;
}

int gw_upstream_conf_set_issuers(struct gw_conf_ctx *pc, const char *path, const char *file,
                                 STACK_OF(X509) *certs, struct gw_upstream_conf *u)
{
    char shown[GW_ERR_LEN];

    u->issuer_certs = certs;
    if ((u->issuer_store = X509_STORE_new()) == NULL)
        return GW_ERR_NOMEM;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if ((X509_get_extension_flags(x) & EXFLAG_CA) == 0)
            return gw_conf_fail(pc, path,
                                "certificate %d in \"%s\" is not a CA certificate (basicConstraints CA:TRUE)",
                                i + 1, gw_conf_show_file(file, shown, sizeof(shown)));
        if (X509_STORE_add_cert(u->issuer_store, x) != 1)
            return gw_conf_fail(pc, path, "cannot add \"%s\" to a store",
                                gw_conf_show_file(file, shown, sizeof(shown)));
    }
    if (X509_STORE_set_flags(u->issuer_store, X509_V_FLAG_X509_STRICT | X509_V_FLAG_PARTIAL_CHAIN) != 1)
        return GW_ERR_CRYPTO;
    return 0;
}

/*
 * "issuer_ca": the CA(s) an HTTP upstream issues under. They anchor the check of every certificate
 * it returns.
 */
static int check_http(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    struct gw_http_conf *h = u->impl;
    STACK_OF(X509) *certs = NULL;
    char ipath[GW_CONF_PATH_LEN];

    if (check_http_plaintext(pc, path, h) != 0 || check_http_tls(pc, path, h) != 0)
        return GW_ERR_INVAL;
    gw_conf_join_key(ipath, path, "issuer_ca");
    if (gw_pem_load_certs(pc, ipath, h->issuer_ca_file, &certs) != 0)
        return GW_ERR_INVAL;
    return gw_upstream_conf_set_issuers(pc, ipath, h->issuer_ca_file, certs, u);
}

int gw_upstream_p_conf(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                       const struct gw_conf_field *f)
{
    struct gw_upstream_conf *u = gw_conf_at(base, f->off);
    const struct gw_upstream_ops *ops;
    char buf[GW_CONF_SHOW_BUF];
    int rc;

    if (!json_object_is_type(v, json_type_object))
        return gw_conf_fail(pc, path, "expected an object, got %s", gw_conf_show(v, buf, sizeof(buf)));
    if ((ops = parse_type(pc, path, v)) == NULL)
        return GW_ERR_INVAL;
    u->ops = ops;
    u->owner = geteuid();
    if ((u->impl = calloc(1, ops->conf_size)) == NULL)
        return GW_ERR_NOMEM;
    if ((rc = parse_section(pc, path, v, ops, &common_def, u)) != 0 ||
        (ops->http != 0 && (rc = parse_section(pc, path, v, ops, &http_def, u->impl)) != 0) ||
        (rc = parse_section(pc, path, v, ops, ops->conf_def, u->impl)) != 0)
        return rc;
    if (!u->check_revocation)
        gw_log(GW_LOG_WARN, "config",
               "%s: %s: check_revocation is false: its certificates authenticate requests even when revoked",
               pc->name, path);
    if (ops->http != 0 && (rc = check_http(pc, path, u)) != 0)
        return rc;
    return ops->conf_check(pc, path, u);
}

void gw_upstream_conf_cleanup(struct gw_upstream_conf *u)
{
    if (u == NULL)
        return;
    if (u->impl != NULL && u->ops != NULL) {
        if (u->ops->http != 0) {
            struct gw_http_conf *h = u->impl;
            free(h->url);
            free(h->ca_file);
            OPENSSL_free(h->ca_pem);
            free(h->client_cert_file);
            free(h->client_key_file);
            free(h->client_key_passphrase_file);
            sk_X509_pop_free(h->client_certs, X509_free);
            EVP_PKEY_free(h->client_key);
            free(h->issuer_ca_file);
        }
        u->ops->conf_free(u->impl);
    }
    free(u->impl);
    free(u->name);
    X509_free(u->own_ca);
    X509_STORE_free(u->issuer_store);
    sk_X509_pop_free(u->issuer_certs, X509_free);
    memset(u, 0, sizeof(*u));
}

int gw_upstream_conf_can(const char *name, const char *what, const char *file, int mode, char *err)
{
    char shown[GW_ERR_LEN];
    int why;

    if (file == NULL || access(file, mode) == 0)
        return 0;
    why = errno;
    gw_conf_bprintf(err, GW_ERR_LEN, "the %s %s of upstream %s is not %s: %s", what,
                    gw_conf_show_file(file, shown, sizeof(shown)), name,
                    mode == R_OK ? "readable" : "writable", strerror(why));
    return GW_ERR_IO;
}

uint32_t gw_upstream_conf_connections(const struct gw_upstream_conf *u, uint32_t threads)
{
    const struct gw_http_conf *h = u->impl;

    if (u->ops == NULL || u->ops->http == 0 || h == NULL)
        return 0;
    return (h->max_connections != 0 ? h->max_connections : GW_DEFAULT_UPSTREAM_CONNECTIONS) + threads;
}

int gw_upstream_conf_access(const struct gw_upstream_conf *u, char *err)
{
    /* tls_ca, tls_cert and tls_key are read (a token's key loaded) at load and set on each connection
       from memory: only a reload reads them again, and that is the caller's warning, not a reason to
       refuse the start */
    if (gw_upstream_conf_can(u->name, "store", u->store_dir, W_OK | X_OK, err) != 0)
        return GW_ERR_IO;
    return u->ops != NULL && u->ops->conf_access != NULL ? u->ops->conf_access(u, err) : 0;
}

/* ---- what a role may ask of the upstreams it names ---- */

static const struct gw_upstream_conf *find(const struct gw_upstream_conf *confs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (confs[i].name != NULL && strcmp(confs[i].name, name) == 0)
            return &confs[i];
    return NULL;
}

static uint32_t timeout_ms(const struct gw_upstream_conf *u)
{
    return u->timeout_ms != 0 ? u->timeout_ms : GW_DEFAULT_UPSTREAM_TIMEOUT_MS;
}

/* The adapters that take role key |bit|, as "vault" or "vault or cfssl", for an error. */
static const char *takers(unsigned bit, char *buf, size_t cap)
{
    size_t used = 0, n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < N_ADAPTERS; i++)
        if ((adapters[i]->role_keys & bit) != 0)
            n++;
    for (size_t i = 0, k = 0; i < N_ADAPTERS && used < cap; i++) {
        if ((adapters[i]->role_keys & bit) == 0)
            continue;
        k++;
        used += (size_t)snprintf(buf + used, cap - used, "%s%s",
                                 k == 1   ? ""
                                 : k == n ? " or "
                                          : ", ",
                                 adapters[i]->dialect);
    }
    return buf;
}

/*
 * Role keys only some adapters give a meaning to (the role's upstream, or a migration's "to"); the
 * upstream's own name for the role by default.
 */
static int check_role_keys(struct gw_conf_ctx *pc, struct gw_role *r)
{
    const struct {
        const char *key;
        bool set;
        unsigned bit;
    } keys[] = {
        {"upstream_role", r->upstream_role != NULL, GW_ROLE_KEY_UPSTREAM_ROLE},
        {"sign", r->sign_policy != GW_SIGN_ROLE, GW_ROLE_KEY_SIGN},
        {"issuer_ref", r->issuer_ref != NULL, GW_ROLE_KEY_ISSUER_REF},
        {"exclude_cn_from_sans", r->exclude_cn_from_sans, GW_ROLE_KEY_EXCLUDE_CN},
        {"crmf", r->crmf != GW_CRMF_REJECT, GW_ROLE_KEY_CRMF},
        {"delegate", r->delegate_name != NULL, GW_ROLE_KEY_DELEGATE},
    };
    const struct gw_upstream_conf *up = r->upstream, *to = r->migration.to;
    unsigned taken = up->ops->role_keys | (to != NULL ? to->ops->role_keys : 0);
    char path[GW_CONF_PATH_LEN], names[64];

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!keys[i].set || (taken & keys[i].bit) != 0)
            continue;
        gw_conf_bprintf(path, sizeof(path), "$.roles.%s.%s", r->name, keys[i].key);
        return gw_conf_fail(pc, path, "only for roles on %s upstreams; \"%s\" is a %s upstream",
                            takers(keys[i].bit, names, sizeof(names)), r->upstream_name, up->ops->dialect);
    }
    /* a threshold at or past the upstream's own timeout would never start polling */
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.poll_after", r->name);
    if (r->poll_after_ms != 0 && r->poll_after_ms >= timeout_ms(up))
        return gw_conf_fail(pc, path, "%ums is not below the timeout of upstream \"%s\" (%ums)",
                            r->poll_after_ms, r->upstream_name, timeout_ms(up));
    /* an upstream with roles or profiles of its own (not an issuer of ours) names them like ours */
    if ((up->own_ca == NULL || (to != NULL && to->own_ca == NULL)) && r->upstream_role == NULL &&
        (r->upstream_role = strdup(r->name)) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/*
 * 1 if |cert| chains (with |untrusted|) to |store| at GW_ISSUED_AUTH_LEVEL, the level every certificate
 * an upstream returns is held to; else 0 with OpenSSL's reason in |why|, or -1 with what falls short of
 * that level (gw_policy_weak_why) there.
 */
static int chains_to(X509_STORE *store, X509 *cert, STACK_OF(X509) *untrusted, const char **why)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    const char *weak;
    int ok = 0;

    *why = "out of memory";
    if (ctx != NULL && X509_STORE_CTX_init(ctx, store, cert, untrusted) == 1) {
        X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(ctx), GW_ISSUED_AUTH_LEVEL);
        ok = X509_verify_cert(ctx) == 1;
        *why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
        weak = gw_policy_weak_why(X509_STORE_CTX_get_error(ctx), X509_STORE_CTX_get_error_depth(ctx));
        if (!ok && weak != NULL) {
            *why = weak;
            ok = -1;
        }
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/*
 * A delegate issuer is an online CA outside the upstream's inventory (docs/design.md, "CRMF in front
 * of CSR-only CAs"): it must not issue CAs (pathLen 0), it must chain to the upstream's CA, and it
 * should be constrained in names and life. The last two are warnings: the operator may not control
 * the upstream's profile.
 */
static int check_delegate_cert(struct gw_conf_ctx *pc, const char *path, const struct gw_upstream_conf *up,
                               const struct gw_upstream_conf *d)
{
    const char *why;
    int days = 0, secs = 0, rc;

    if (X509_get_pathlen(d->own_ca) != 0)
        return gw_conf_fail(
            pc, path,
            "the certificate of \"%s\" must have basicConstraints pathlen:0: a delegate issuer "
            "must not issue CA certificates",
            d->name);
    if ((rc = chains_to(up->issuer_store, d->own_ca, d->issuer_certs, &why)) < 0)
        return gw_conf_fail(pc, path,
                            "the certificate of \"%s\" %s: a delegate issuer's chain must pass the security "
                            "level the upstream's own answers are held to",
                            d->name, why);
    if (rc == 0)
        return gw_conf_fail(pc, path,
                            "the certificate of \"%s\" does not chain to the issuer_ca of \"%s\": %s",
                            d->name, up->name, why);
    if (X509_get_ext_by_NID(d->own_ca, NID_name_constraints, -1) < 0)
        gw_log(GW_LOG_WARN, "config",
               "%s: %s: the certificate of \"%s\" has no name constraints: it can issue any name", pc->name,
               path, d->name);
    if (ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(d->own_ca), X509_get0_notAfter(d->own_ca)) == 1 &&
        (days > GW_DELEGATE_MAX_DAYS || (days == GW_DELEGATE_MAX_DAYS && secs > 0)))
        gw_log(GW_LOG_WARN, "config",
               "%s: %s: the certificate of \"%s\" is valid for %d days: a delegate issuer should live at "
               "most %d",
               pc->name, path, d->name, days, GW_DELEGATE_MAX_DAYS);
    return 0;
}

static int resolve_delegate(struct gw_conf_ctx *pc, struct gw_role *r, const struct gw_upstream_conf *confs,
                            size_t n)
{
    const struct gw_upstream_conf *d, *over = gw_upstream_delegated_for(r);
    char path[GW_CONF_PATH_LEN];

    if (r->delegate_name == NULL)
        return 0;
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.delegate", r->name);
    if ((d = find(confs, n, r->delegate_name)) == NULL)
        return gw_conf_fail(pc, path, "unknown upstream \"%s\"", r->delegate_name);
    if (d->own_ca == NULL || (d->ops->caps & GW_UP_SIGN_KEY) == 0)
        return gw_conf_fail(pc, path, "\"%s\" is a %s upstream: a delegate issuer must be a local upstream",
                            d->name, d->ops->dialect);
    if (d->store_dir == NULL)
        return gw_conf_fail(
            pc, path, "\"%s\" has no \"store\": a delegate issuer must keep every certificate it issues",
            d->name);
    /* it issues under one CA, "from"'s unless it stands in for "to": between two CAs that sign CSRs only,
       the cohort's ir, cr and kur would go on getting "from"'s certificates (docs/migration.md) */
    if (r->migration.to != NULL && over == r->upstream && (r->migration.to->ops->caps & GW_UP_SIGN_KEY) == 0)
        return gw_conf_fail(
            pc, path,
            "the role migrates from \"%s\" to \"%s\", and neither signs CRMF: a delegate issues "
            "under one CA for every device, so the cohort's ir, cr and kur would stay with \"%s\"; "
            "migrate to a local or cmp upstream, or drop \"crmf\": \"delegate\" (CRMF refused: devices send "
            "p10cr)",
            r->upstream_name, r->migration.to_name, r->upstream_name);
    if (check_delegate_cert(pc, path, over, d) != 0)
        return GW_ERR_INVAL;
    r->delegate = d;
    return 0;
}

/*
 * "crmf_upstream": CRMF goes to an upstream that signs bare keys (cmp or local) while
 * "upstream" keeps the p10cr; a delegate would be a second answer to the same question.
 */
static int resolve_crmf_upstream(struct gw_conf_ctx *pc, struct gw_role *r,
                                 const struct gw_upstream_conf *confs, size_t n)
{
    const struct gw_upstream_conf *u;
    char path[GW_CONF_PATH_LEN];

    if (r->crmf_upstream_name == NULL)
        return 0;
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.crmf_upstream", r->name);
    if ((u = find(confs, n, r->crmf_upstream_name)) == NULL)
        return gw_conf_fail(pc, path, "unknown upstream \"%s\"", r->crmf_upstream_name);
    if ((u->ops->caps & GW_UP_SIGN_KEY) == 0)
        return gw_conf_fail(pc, path, "\"%s\" is a %s upstream: CRMF requests need a cmp or local upstream",
                            u->name, u->ops->dialect);
    if (r->crmf == GW_CRMF_DELEGATE)
        return gw_conf_fail(pc, path, "set together with \"crmf\": \"delegate\": choose one");
    r->crmf_upstream = u;
    return 0;
}

/* Whether some other certificate of |certs| names |ca| as its issuer. */
static int issues_within(const STACK_OF(X509) *certs, X509 *ca)
{
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);

        if (x != ca && X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca)) == 0)
            return 1;
    }
    return 0;
}

STACK_OF(X509) *gw_upstream_conf_issuing_cas(const struct gw_upstream_conf *uc)
{
    STACK_OF(X509) *out = sk_X509_new_null();
    int ok = out != NULL;

    if (ok && uc->own_ca != NULL)
        ok = X509_add_cert(out, uc->own_ca, X509_ADD_FLAG_UP_REF) == 1;
    for (int i = 0; ok && uc->own_ca == NULL && i < sk_X509_num(uc->issuer_certs); i++) {
        X509 *ca = sk_X509_value(uc->issuer_certs, i);

        if (!issues_within(uc->issuer_certs, ca))
            ok = X509_add_cert(out, ca, X509_ADD_FLAG_UP_REF) == 1;
    }
    if (!ok) {
        sk_X509_pop_free(out, X509_free);
        return NULL;
    }
    return out;
}

X509 *gw_upstream_conf_issuing_ca(const struct gw_upstream_conf *uc)
{
    return uc == NULL ? NULL : uc->own_ca != NULL ? uc->own_ca : sk_X509_value(uc->issuer_certs, 0);
}

/* Whether CA certificates |a| and |b| are one CA: the same subject name and key. */
static bool same_ca(const X509 *a, const X509 *b)
{
    return X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) == 0 &&
           EVP_PKEY_eq(X509_get0_pubkey(a), X509_get0_pubkey(b)) == 1;
}

/*
 * |name| to show in a configuration error (free with OPENSSL_free): X509_NAME_oneline's form, or, for a
 * name that form cannot write (a '/' or '\\' in it), RFC 2253's with controls and non-ASCII escaped, or
 * "(unprintable)"; NULL only when out of memory.
 */
static char *ca_name_text(const X509_NAME *name)
{
    char *line = gw_x509_name_line(name), *text = NULL;
    BIO *mem;
    long n;

    if (line != NULL)
        return line;
    if ((mem = BIO_new(BIO_s_mem())) != NULL && X509_NAME_print_ex(mem, name, 0, XN_FLAG_RFC2253) >= 0 &&
        (n = BIO_get_mem_data(mem, &text)) > 0)
        line = OPENSSL_strndup(text, (size_t)n);
    else
        line = OPENSSL_strdup("(unprintable)");
    BIO_free(mem);
    return line;
}

/*
 * The subject of a CA both |a| and |b| issue under (gw_upstream_conf_issuing_cas: every one, not only
 * the first of an issuer_ca), into *shared (free with OPENSSL_free): 0, with *shared NULL if they share
 * none; GW_ERR_NOMEM.
 */
static int shared_issuing_ca(const struct gw_upstream_conf *a, const struct gw_upstream_conf *b,
                             char **shared)
{
    STACK_OF(X509) *as = gw_upstream_conf_issuing_cas(a), *bs = gw_upstream_conf_issuing_cas(b);
    int rc = as != NULL && bs != NULL ? 0 : GW_ERR_NOMEM;

    *shared = NULL;
    for (int i = 0; rc == 0 && *shared == NULL && i < sk_X509_num(as); i++)
        for (int j = 0; rc == 0 && *shared == NULL && j < sk_X509_num(bs); j++)
            if (same_ca(sk_X509_value(as, i), sk_X509_value(bs, j)) &&
                (*shared = ca_name_text(X509_get_subject_name(sk_X509_value(as, i)))) == NULL)
                rc = GW_ERR_NOMEM;
    sk_X509_pop_free(as, X509_free);
    sk_X509_pop_free(bs, X509_free);
    return rc;
}

/*
 * "migration": "to" names an upstream other than the role's, able to sign what the role asks. Its
 * certificates and "from"'s are told apart by their issuer (rr and status checks follow the
 * issuer, among every CA each issues under), so the two may not share an issuing CA name and key.
 */
static int resolve_migration(struct gw_conf_ctx *pc, struct gw_role *r, const struct gw_upstream_conf *confs,
                             size_t n)
{
    struct gw_migration *m = &r->migration;
    char path[GW_CONF_PATH_LEN];
    char *shared = NULL;
    int rc;

    if (!gw_migration_configured(m))
        return 0;
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.migration.to", r->name);
    if ((m->to = find(confs, n, m->to_name)) == NULL)
        return gw_conf_fail(pc, path, "unknown upstream \"%s\"", m->to_name);
    m->from = r->upstream;
    if (shared_issuing_ca(m->from, m->to, &shared) != 0)
        return gw_conf_fail(pc, path, "out of memory");
    if (shared == NULL)
        return 0;
    rc = gw_conf_fail(pc, path,
                      "\"%s\" and \"%s\" issue under the same CA name and key (%s): their certificates "
                      "could not be told apart",
                      m->from_name, m->to_name, shared);
    OPENSSL_free(shared);
    return rc;
}

int gw_upstream_resolve_role(struct gw_conf_ctx *pc, struct gw_role *r, const struct gw_upstream_conf *confs,
                             size_t n)
{
    char path[GW_CONF_PATH_LEN];
    int rc;

    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.upstream", r->name);
    if ((r->upstream = find(confs, n, r->upstream_name)) == NULL)
        return gw_conf_fail(pc, path, "unknown upstream \"%s\"", r->upstream_name);
    if ((rc = resolve_migration(pc, r, confs, n)) != 0 || (rc = check_role_keys(pc, r)) != 0 ||
        (rc = resolve_crmf_upstream(pc, r, confs, n)) != 0)
        return rc;
    return resolve_delegate(pc, r, confs, n);
}
