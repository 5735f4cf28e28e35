/*
 * The vault adapter: Vault / OpenBao PKI secrets engine (notes/upstream-apis.md §1).
 *
 * A p10cr's CSR goes to sign/<role> or sign-verbatim[/<role>] unchanged: Vault verifies its
 * self-signature, so a CRMF request (no CSR) is refused here and left to the route's crmf setting
 * (DESIGN.md decision 5). Calls run synchronously on the calling worker; |done| is called before
 * sign returns.
 *
 * Authentication: a token from token_file (re-read once on 403), or a cert-auth login with the
 * gateway's TLS client certificate whose token is cached and re-obtained
 * GW_VAULT_TOKEN_RENEW_MARGIN seconds before its lease ends, one login at a time (the others wait
 * for it). The token never reaches a log.
 *
 * Retries: only answers that guarantee nothing happened (412, 429, 503) are retried, with doubling
 * backoff, inside the upstream's deadline. A timeout or transport error on sign has an unknown
 * outcome and is reported as such, never repeated.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "gateway/err.h"
#include "gateway/limits.h"
#include "gateway/log.h"
#include "upstream/http_client.h"
#include "upstream/upstream.h"
#include "../gateway/clock.h"

#define SERIAL_HEX_LEN (3 * 20 + 1)     /* RFC 5280 §4.1.2.2: at most 20 octets, "aa:" each */
#define SAN_LIST_LEN (GW_MAX_SANS * 80) /* one comma-separated SAN list of a request */

struct vault {
    const struct gw_upstream_conf *conf;
    struct gw_http_client *http;
    const char *mount;
    uint32_t timeout_ms;
    pthread_mutex_t lock; /* guards the token state below */
    pthread_cond_t cond;  /* a login or token re-read finished */
    char *token;          /* NULL until obtained; never logged */
    time_t refresh_at;    /* re-obtain at this time; 0 = only when Vault says 403 */
    unsigned gen;         /* bumped on every new token */
    int refreshing;       /* one refresh at a time (single flight) */
    unsigned attempts;    /* refreshes finished, so that waiters see the outcome of theirs */
    int last_rc;
    char last_err[GW_ERR_LEN];
};

static const char *up_name(const struct vault *v)
{
    return v->conf->name != NULL ? v->conf->name : "vault";
}

static void set_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(char *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, GW_ERR_LEN, fmt, ap);
    va_end(ap);
}

static void free_token(char *t)
{
    if (t != NULL)
        OPENSSL_clear_free(t, strlen(t));
}

/* ---- JSON helpers ---- */

static json_object *parse_json(const char *s, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = NULL;

    if (tok == NULL || s == NULL || len > INT32_MAX)
        goto out;
    o = json_tokener_parse_ex(tok, s, (int)len);
    if (json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != len ||
        !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
    }
out:
    json_tokener_free(tok);
    return o;
}

/* The member |key| of |o| if it has type |type|, else NULL (borrowed). */
static json_object *member(json_object *o, const char *key, json_type type)
{
    json_object *m = NULL;

    if (o == NULL || !json_object_object_get_ex(o, key, &m) || !json_object_is_type(m, type))
        return NULL;
    return m;
}

static const char *member_str(json_object *o, const char *key)
{
    json_object *m = member(o, key, json_type_string);

    return m != NULL ? json_object_get_string(m) : NULL;
}

/* Joins the strings of array |key| of |o| with "; " into |buf|; "" when there are none. */
static void join_strings(json_object *o, const char *key, char *buf, size_t cap)
{
    json_object *a = member(o, key, json_type_array);
    size_t i, n = a != NULL ? json_object_array_length(a) : 0, used = 0;

    buf[0] = '\0';
    for (i = 0; i < n && used + 1 < cap; i++) {
        json_object *e = json_object_array_get_idx(a, i);

        if (!json_object_is_type(e, json_type_string))
            continue;
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", used != 0 ? "; " : "",
                                 json_object_get_string(e));
        if (used >= cap)
            used = cap - 1;
    }
}

/* ---- token state ---- */

static int read_token_file(const char *path, char **out, char *err)
{
    char buf[GW_MAX_VAULT_TOKEN_LEN + 2];
    FILE *f = fopen(path, "r");
    size_t n;
    int rc = GW_ERR_IO;

    if (f == NULL) {
        set_err(err, "cannot read token_file %s: %s", path, strerror(errno));
        return GW_ERR_IO;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (n == 0 || n > GW_MAX_VAULT_TOKEN_LEN || strpbrk(buf, "\r\n") != NULL) {
        set_err(err, "token_file %s: expected one token of 1 to %d characters", path, GW_MAX_VAULT_TOKEN_LEN);
        goto out;
    }
    rc = (*out = strdup(buf)) != NULL ? 0 : GW_ERR_NOMEM;
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    fclose(f);
    return rc;
}

static int add_namespace(const struct vault *v, char *hdr, size_t cap, const char **headers, size_t *n)
{
    if (v->conf->vault_namespace == NULL)
        return 0;
    if ((size_t)snprintf(hdr, cap, "X-Vault-Namespace: %s", v->conf->vault_namespace) >= cap)
        return GW_ERR_INVAL;
    headers[(*n)++] = hdr;
    return 0;
}

/* POST auth/<mount>/login with the TLS client certificate (notes/upstream-apis.md §1.7). */
static int cert_login(struct vault *v, char **token, uint32_t *lease, char *err)
{
    char path[GW_MAX_PATH_LEN], ns[GW_MAX_MOUNT_LEN + 32];
    const char *headers[2] = {NULL, NULL};
    struct gw_http_response rsp;
    json_object *req = json_object_new_object(), *root = NULL, *auth;
    const char *tok;
    char msg[GW_ERR_LEN];
    size_t nh = 0;
    int rc = GW_ERR_UPSTREAM;

    memset(&rsp, 0, sizeof(rsp));
    if (req == NULL || add_namespace(v, ns, sizeof(ns), headers, &nh) != 0) {
        set_err(err, "Vault cert login: cannot build the request");
        goto out;
    }
    if (v->conf->auth_cert_role != NULL)
        json_object_object_add(req, "name", json_object_new_string(v->conf->auth_cert_role));
    snprintf(path, sizeof(path), "/v1/auth/%s/login", v->conf->auth_cert_mount);
    if ((rc = gw_http_request(v->http, "POST", path,
                              json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN), headers, &rsp)) !=
        0) {
        set_err(err, "Vault cert login: %s", rsp.error);
        goto out;
    }
    root = parse_json(rsp.body, rsp.body_len);
    join_strings(root, "errors", msg, sizeof(msg));
    auth = member(root, "auth", json_type_object);
    if (rsp.status != 200 || (tok = member_str(auth, "client_token")) == NULL || tok[0] == '\0' ||
        strlen(tok) > GW_MAX_VAULT_TOKEN_LEN) {
        set_err(err, "Vault cert login refused the gateway (HTTP %ld): %s", rsp.status,
                msg[0] != '\0' ? msg : "no client_token in the answer");
        rc = rsp.status == 403 || rsp.status == 400 ? GW_ERR_FORBIDDEN : GW_ERR_UPSTREAM;
        goto out;
    }
    *lease = (uint32_t)json_object_get_int64(member(auth, "lease_duration", json_type_int));
    rc = (*token = strdup(tok)) != NULL ? 0 : GW_ERR_NOMEM;
out:
    if (root != NULL) /* the token is inside: wipe the answer */
        OPENSSL_cleanse(rsp.body, rsp.body_len);
    json_object_put(root);
    json_object_put(req);
    gw_http_response_cleanup(&rsp);
    return rc;
}

/* When to fetch a new token for one that lives |lease| seconds: the margin before it ends, or halfway. */
static time_t refresh_time(uint32_t lease)
{
    if (lease == 0)
        return 0; /* root-like token without expiry */
    if (lease > 2 * GW_VAULT_TOKEN_RENEW_MARGIN)
        return time(NULL) + lease - GW_VAULT_TOKEN_RENEW_MARGIN;
    return time(NULL) + lease / 2;
}

/* Obtains a new token (file or login) outside the lock. */
static int obtain_token(struct vault *v, char **token, time_t *refresh_at, char *err)
{
    uint32_t lease = 0;
    int rc;

    *token = NULL;
    *refresh_at = 0;
    if (v->conf->auth_cert_mount != NULL) {
        if ((rc = cert_login(v, token, &lease, err)) == 0)
            *refresh_at = refresh_time(lease);
        if (rc == 0)
            gw_log(GW_LOG_INFO, "vault_login", "upstream %s: cert login, token lease %u s", up_name(v),
                   lease);
        return rc;
    }
    if (v->conf->token_file != NULL)
        return read_token_file(v->conf->token_file, token, err);
    return 0; /* no authentication configured */
}

static int token_usable(const struct vault *v)
{
    return v->token != NULL && (v->refresh_at == 0 || time(NULL) < v->refresh_at);
}

/*
 * token_get copies the current token into |*out| (NULL: none configured), obtaining a new one
 * first if needed. One refresh at a time; callers arriving meanwhile wait and share its outcome.
 */
static int token_get(struct vault *v, char **out, unsigned *gen, char *err)
{
    char *fresh = NULL;
    time_t refresh_at = 0;
    unsigned attempt;
    int rc;

    *out = NULL;
    if (v->conf->auth_cert_mount == NULL && v->conf->token_file == NULL)
        return 0;
    pthread_mutex_lock(&v->lock);
    while (!token_usable(v) && v->refreshing) {
        attempt = v->attempts;
        while (v->refreshing && v->attempts == attempt)
            pthread_cond_wait(&v->cond, &v->lock);
        if (v->attempts != attempt && v->last_rc != 0) {
            rc = v->last_rc;
            set_err(err, "%s", v->last_err);
            goto out;
        }
    }
    if (!token_usable(v)) {
        v->refreshing = 1;
        pthread_mutex_unlock(&v->lock);
        rc = obtain_token(v, &fresh, &refresh_at, err);
        pthread_mutex_lock(&v->lock);
        v->refreshing = 0;
        v->attempts++;
        v->last_rc = rc;
        snprintf(v->last_err, sizeof(v->last_err), "%s", rc != 0 ? err : "");
        pthread_cond_broadcast(&v->cond);
        if (rc != 0)
            goto out;
        free_token(v->token);
        v->token = fresh;
        v->refresh_at = refresh_at;
        v->gen++;
    }
    rc = (*out = strdup(v->token)) != NULL ? 0 : GW_ERR_NOMEM;
    *gen = v->gen;
out:
    pthread_mutex_unlock(&v->lock);
    return rc;
}

/* Vault said 403 to token generation |gen|: the next token_get fetches a new one (once per generation). */
static void token_invalidate(struct vault *v, unsigned gen)
{
    pthread_mutex_lock(&v->lock);
    if (v->gen == gen && v->token != NULL) {
        free_token(v->token);
        v->token = NULL;
    }
    pthread_mutex_unlock(&v->lock);
}

/* ---- one API call with authentication and retries ---- */

static int retryable(long status)
{
    /* 412 (eventual consistency), 429 (quota), 503 (sealed, standby): nothing was done */
    return status == 412 || status == 429 || status == 503;
}

/* Sends one request with the current token. */
static int send_once(struct vault *v, const char *method, const char *path, const char *body,
                     struct gw_http_response *rsp, unsigned *gen, char *err)
{
    char ns[GW_MAX_MOUNT_LEN + 32], *tok = NULL, *tok_hdr = NULL;
    const char *headers[3] = {NULL, NULL, NULL};
    size_t nh = 0, len;
    int rc;

    memset(rsp, 0, sizeof(*rsp));
    if ((rc = token_get(v, &tok, gen, err)) != 0) /* nothing was sent: not an unknown outcome */
        return rc == GW_ERR_FORBIDDEN || rc == GW_ERR_NOMEM ? rc : GW_ERR_UPSTREAM;
    if (add_namespace(v, ns, sizeof(ns), headers, &nh) != 0) {
        set_err(err, "namespace too long");
        rc = GW_ERR_INVAL;
        goto out;
    }
    if (tok != NULL) {
        len = strlen(tok) + sizeof("X-Vault-Token: ");
        if ((tok_hdr = malloc(len)) == NULL) {
            rc = GW_ERR_NOMEM;
            goto out;
        }
        snprintf(tok_hdr, len, "X-Vault-Token: %s", tok);
        headers[nh++] = tok_hdr;
    }
    if ((rc = gw_http_request(v->http, method, path, body, headers, rsp)) != 0)
        set_err(err, "%s", rsp->error);
out:
    free_token(tok);
    free_token(tok_hdr);
    return rc;
}

/*
 * vault_call performs |method| on |path|: a 403 fetches a new token and tries once more; 412, 429
 * and 503 are retried with backoff while the deadline allows. Returns 0 when an HTTP answer is in
 * |rsp| (any status), else a gw_err with |err| (timeout: outcome unknown, never retried).
 */
static int vault_call(struct vault *v, const char *method, const char *path, const char *body,
                      struct gw_http_response *rsp, char *err)
{
    uint64_t deadline = gw_now_ms() + v->timeout_ms, backoff = GW_UPSTREAM_BACKOFF_MS;
    int retries = 0, reauth = 0, rc;
    unsigned gen = 0;

    for (;;) {
        if ((rc = send_once(v, method, path, body, rsp, &gen, err)) != 0)
            return rc;
        if (rsp->status == 403 && !reauth &&
            (v->conf->token_file != NULL || v->conf->auth_cert_mount != NULL)) {
            reauth = 1;
            token_invalidate(v, gen);
            gw_http_response_cleanup(rsp);
            continue;
        }
        if (!retryable(rsp->status) || retries >= GW_UPSTREAM_RETRIES || gw_now_ms() + backoff >= deadline)
            return 0;
        gw_log(GW_LOG_WARN, "vault_retry", "upstream %s: HTTP %ld on %s; retry in %llu ms", up_name(v),
               rsp->status, path, (unsigned long long)backoff);
        gw_http_response_cleanup(rsp);
        gw_sleep_ms(backoff);
        backoff *= 2;
        retries++;
    }
}

/* ---- error answers ---- */

/* Vault's error statuses as CMP failInfo (notes/upstream-apis.md §1.1). */
static const struct {
    long lo, hi;
    int status;
    int fail_info;
    const char *prefix, *suffix;
} vault_errors[] = {
    {400, 400, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "Vault refused", ""},
    {403, 403, GW_ERR_FORBIDDEN, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault denied the gateway",
     "; the gateway's token or policy is wrong: an operator must fix it"},
    {404, 404, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault role or mount not found",
     "; the gateway's configuration names a role or mount Vault does not have"},
    {412, 412, GW_ERR_BUSY, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault is busy", "; retry later"},
    {429, 429, GW_ERR_BUSY, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault is busy", "; retry later"},
    {503, 503, GW_ERR_BUSY, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault is unavailable", "; retry later"},
    {500, 599, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "Vault failed", ""},
    {0, 999, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "Vault answered unexpectedly", ""},
};

/* map_error fills |status|, |fail_info| and |reason| for an answer that is not a success. */
static void map_error(const struct gw_http_response *rsp, int *status, int *fail_info, char *reason)
{
    json_object *root = parse_json(rsp->body, rsp->body_len);
    char msg[GW_ERR_LEN];
    long st = rsp->status;
    size_t i;

    join_strings(root, "errors", msg, sizeof(msg));
    if (root == NULL)
        snprintf(msg, sizeof(msg), "the answer is not Vault JSON");
    else if (msg[0] == '\0')
        snprintf(msg, sizeof(msg), "no error message");
    if (strstr(msg, "Vault is sealed") != NULL)
        st = 503;
    for (i = 0; i < sizeof(vault_errors) / sizeof(vault_errors[0]); i++) {
        if (st >= vault_errors[i].lo && st <= vault_errors[i].hi)
            break;
    }
    if (i == sizeof(vault_errors) / sizeof(vault_errors[0]))
        i--;
    *status = vault_errors[i].status;
    *fail_info = vault_errors[i].fail_info;
    snprintf(reason, GW_ERR_LEN, "%s: %.160s (HTTP %ld)%s", vault_errors[i].prefix, msg, rsp->status,
             vault_errors[i].suffix);
    json_object_put(root);
}

/* ---- sign ---- */

static int safe_segment(const char *s)
{
    if (s == NULL || s[0] == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == strlen(s);
}

/* A mount path: plain names separated by single slashes ("pki", "pki/int"). */
static int safe_mount(const char *m)
{
    char seg[GW_MAX_MOUNT_LEN + 1];
    const char *p = m, *slash;
    size_t n;

    if (m == NULL || strlen(m) > GW_MAX_MOUNT_LEN)
        return 0;
    do {
        slash = strchr(p, '/');
        n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        snprintf(seg, sizeof(seg), "%.*s", (int)n, p);
        if (!safe_segment(seg))
            return 0;
        p = slash + 1;
    } while (slash != NULL);
    return 1;
}

/* The sign path of |role| (notes/upstream-apis.md §1.2, §1.3); 0 or GW_ERR_INVAL with |err|. */
static int sign_path(const struct vault *v, const struct gw_role *role, char *path, size_t cap, char *err)
{
    const char *urole = role->upstream_role != NULL ? role->upstream_role : role->name;
    char issuer[GW_MAX_NAME_LEN + 16] = "";
    int n;

    if (role->issuer_ref != NULL) {
        if (!safe_segment(role->issuer_ref)) {
            set_err(err, "issuer_ref %.64s is not a plain name", role->issuer_ref);
            return GW_ERR_INVAL;
        }
        snprintf(issuer, sizeof(issuer), "issuer/%.64s/", role->issuer_ref);
    }
    if (role->sign_policy == GW_SIGN_VERBATIM) {
        /*
         * sign-verbatim/<role> when a Vault role is named (it then sets ttl, max_ttl, issuer); the
         * upstream role "sign-verbatim" (the default of the role Vault's default_path_policy
         * "sign-verbatim" names) means Vault's plain sign-verbatim.
         */
        const char *vr = role->upstream_role != NULL && strcmp(role->upstream_role, "sign-verbatim") != 0
                             ? role->upstream_role
                             : NULL;

        if (vr != NULL && !safe_segment(vr))
            goto bad_role;
        n = snprintf(path, cap, "/v1/%s/%ssign-verbatim%s%s", v->mount, issuer, vr != NULL ? "/" : "",
                     vr != NULL ? vr : "");
    } else {
        if (!safe_segment(urole))
            goto bad_role;
        n = snprintf(path, cap, "/v1/%s/%ssign/%s", v->mount, issuer, urole);
    }
    if (n < 0 || (size_t)n >= cap) {
        set_err(err, "sign path too long");
        return GW_ERR_INVAL;
    }
    return 0;
bad_role:
    set_err(err, "upstream role %.64s is not a plain name", urole);
    return GW_ERR_INVAL;
}

static void append(char *buf, size_t cap, const char *s)
{
    size_t used = strlen(buf);

    if (used + 1 < cap)
        snprintf(buf + used, cap - used, "%s%s", used != 0 ? "," : "", s);
}

/* The plan's SANs as Vault's alt_names (DNS, email), ip_sans and uri_sans. */
static void add_sans(json_object *req, const GENERAL_NAMES *sans)
{
    char alt[SAN_LIST_LEN] = "", ips[SAN_LIST_LEN] = "", uris[SAN_LIST_LEN] = "", one[INET6_ADDRSTRLEN];
    int i;

    for (i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        const ASN1_OCTET_STRING *ip = gn->d.iPAddress;

        if (gn->type == GEN_DNS || gn->type == GEN_EMAIL || gn->type == GEN_URI) {
            const ASN1_IA5STRING *s = gn->d.ia5;
            char name[GW_MAX_PATTERN_LEN + 1];

            /* a name with a comma or NUL would change the list: the route refused those already */
            if (s->length <= 0 || (size_t)s->length > GW_MAX_PATTERN_LEN ||
                memchr(s->data, ',', (size_t)s->length) != NULL ||
                memchr(s->data, 0, (size_t)s->length) != NULL)
                continue;
            snprintf(name, sizeof(name), "%.*s", s->length, (const char *)s->data);
            append(gn->type == GEN_URI ? uris : alt, SAN_LIST_LEN, name);
        } else if (gn->type == GEN_IPADD && (ip->length == 4 || ip->length == 16) &&
                   inet_ntop(ip->length == 4 ? AF_INET : AF_INET6, ip->data, one, sizeof(one)) != NULL) {
            append(ips, SAN_LIST_LEN, one);
        }
    }
    if (alt[0] != '\0')
        json_object_object_add(req, "alt_names", json_object_new_string(alt));
    if (ips[0] != '\0')
        json_object_object_add(req, "ip_sans", json_object_new_string(ips));
    if (uris[0] != '\0')
        json_object_object_add(req, "uri_sans", json_object_new_string(uris));
}

static char *csr_pem(const X509_REQ *csr)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *out = NULL;
    long n;

    if (b != NULL && PEM_write_bio_X509_REQ(b, (X509_REQ *)csr) == 1 && (n = BIO_get_mem_data(b, &data)) > 0)
        out = strndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

/* Vault's key_usage names (Go x509.KeyUsage without prefix) as KU_* bits. */
static const struct {
    const char *name;
    unsigned bit;
} ku_names[] =
    {
        {"DigitalSignature", KU_DIGITAL_SIGNATURE},
        {"ContentCommitment", KU_NON_REPUDIATION},
        {"KeyEncipherment", KU_KEY_ENCIPHERMENT},
        {"DataEncipherment", KU_DATA_ENCIPHERMENT},
        {"KeyAgreement", KU_KEY_AGREEMENT},
        {"CertSign", KU_KEY_CERT_SIGN},
        {"CRLSign", KU_CRL_SIGN},
        {"EncipherOnly", KU_ENCIPHER_ONLY},
        {"DecipherOnly", KU_DECIPHER_ONLY},
},
  eku_names[] = {
      {"ServerAuth", GW_EKU_SERVER_AUTH},     {"ClientAuth", GW_EKU_CLIENT_AUTH},
      {"CodeSigning", GW_EKU_CODE_SIGNING},   {"EmailProtection", GW_EKU_EMAIL_PROTECTION},
      {"TimeStamping", GW_EKU_TIME_STAMPING}, {"OCSPSigning", GW_EKU_OCSP_SIGNING},
};

/*
 * sign-verbatim puts key_usage and ext_key_usage of the call into a certificate whose CSR names none,
 * and Vault's defaults (DigitalSignature, KeyAgreement, KeyEncipherment) when the call names none
 * either: the role's usages are sent, so that a plain CSR comes back within the role. cmcRA has no
 * Vault name: it goes as an OID (RFC 6402 §2.10).
 */
static void add_usages(json_object *o, const struct gw_cert_plan *plan)
{
    json_object *ku = json_object_new_array(), *eku = json_object_new_array(),
                *oids = json_object_new_array();
    char cmc_ra[GW_MAX_OID_TEXT];
    size_t i;

    for (i = 0; ku != NULL && i < sizeof(ku_names) / sizeof(ku_names[0]); i++) {
        if ((plan->key_usage & ku_names[i].bit) != 0)
            json_object_array_add(ku, json_object_new_string(ku_names[i].name));
    }
    for (i = 0; eku != NULL && i < sizeof(eku_names) / sizeof(eku_names[0]); i++) {
        if ((plan->ext_key_usage & eku_names[i].bit) != 0)
            json_object_array_add(eku, json_object_new_string(eku_names[i].name));
    }
    if (oids != NULL && (plan->ext_key_usage & GW_EKU_CMC_RA) != 0 &&
        OBJ_obj2txt(cmc_ra, sizeof(cmc_ra), OBJ_nid2obj(NID_cmcRA), 1) > 0)
        json_object_array_add(oids, json_object_new_string(cmc_ra));
    json_object_object_add(o, "key_usage", ku);
    json_object_object_add(o, "ext_key_usage", eku);
    json_object_object_add(o, "ext_key_usage_oids", oids);
}

/* The JSON body of a sign call; NULL with |err|. The CN comes from the CSR, so none is sent. */
static char *sign_body(const struct gw_sign_req *req, char *err)
{
    json_object *o = json_object_new_object();
    char *pem = csr_pem(req->csr), *out = NULL;
    time_t ttl = req->plan->not_after - time(NULL);

    if (o == NULL || pem == NULL) {
        set_err(err, "cannot encode the CSR");
        goto out;
    }
    if (ttl <= 0) {
        set_err(err, "the planned validity has already ended");
        goto out;
    }
    json_object_object_add(o, "csr", json_object_new_string(pem));
    json_object_object_add(o, "ttl", json_object_new_int64((int64_t)ttl));
    json_object_object_add(o, "format", json_object_new_string("pem"));
    json_object_object_add(o, "exclude_cn_from_sans",
                           json_object_new_boolean(req->role->exclude_cn_from_sans));
    add_sans(o, req->plan->sans);
    if (req->role->sign_policy == GW_SIGN_VERBATIM)
        add_usages(o, req->plan);
    if ((out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN))) == NULL)
        set_err(err, "out of memory");
out:
    free(pem);
    json_object_put(o);
    return out;
}

/* Appends every certificate of PEM text |pem| to |chain|; returns how many were read. */
static int add_pem_certs(STACK_OF(X509) *chain, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x;
    int n = 0;

    while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_push(chain, x) <= 0) {
            X509_free(x);
            break;
        }
        n++;
    }
    BIO_free(b);
    ERR_clear_error(); /* the loop ends on "no start line" */
    return n;
}

/* The chain from ca_chain (issuer first), else issuing_ca; NULL if neither parses. */
static STACK_OF(X509) *parse_chain(json_object *data)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    json_object *a = member(data, "ca_chain", json_type_array);
    const char *issuing = member_str(data, "issuing_ca");
    size_t i;

    for (i = 0; chain != NULL && a != NULL && i < json_object_array_length(a); i++) {
        json_object *e = json_object_array_get_idx(a, i);

        if (json_object_is_type(e, json_type_string))
            add_pem_certs(chain, json_object_get_string(e));
    }
    if (chain != NULL && sk_X509_num(chain) == 0 && issuing != NULL)
        add_pem_certs(chain, issuing);
    if (chain != NULL && sk_X509_num(chain) == 0) {
        sk_X509_free(chain);
        chain = NULL;
    }
    return chain;
}

/* Colon-separated lowercase hex, Vault's serial_number form ("39:dd:2e:..."). */
static int serial_hex(const ASN1_INTEGER *serial, char *out, size_t cap)
{
    unsigned char buf[32];
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    int n = bn != NULL ? BN_num_bytes(bn) : -1, i;
    size_t pos = 0;

    out[0] = '\0';
    if (n <= 0 || (size_t)n > sizeof(buf) || (size_t)n * 3 > cap || BN_bn2bin(bn, buf) != n) {
        BN_free(bn);
        return GW_ERR_INVAL;
    }
    for (i = 0; i < n; i++)
        pos += (size_t)snprintf(out + pos, cap - pos, i != 0 ? ":%02x" : "%02x", buf[i]);
    BN_free(bn);
    return 0;
}

static void fail_res(struct gw_sign_result *res, int status, int fail_info, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail_res(struct gw_sign_result *res, int status, int fail_info, const char *fmt, ...)
{
    va_list ap;

    X509_free(res->cert);
    sk_X509_pop_free(res->chain, X509_free);
    res->cert = NULL;
    res->chain = NULL;
    res->status = status;
    res->fail_info = fail_info;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
    va_end(ap);
}

/* Logs what Vault said beside the certificate: serial, expiration, warnings. */
static void log_issued(const struct vault *v, const struct gw_sign_req *req, json_object *root,
                       json_object *data, X509 *cert)
{
    char want[SERIAL_HEX_LEN], warn[GW_ERR_LEN], exp[32];
    const char *got = member_str(data, "serial_number");
    json_object *e = member(data, "expiration", json_type_int);
    const char *rid = req->request_id != NULL ? req->request_id : "";

    snprintf(exp, sizeof(exp), "%lld", e != NULL ? (long long)json_object_get_int64(e) : 0LL);
    if (serial_hex(X509_get0_serialNumber(cert), want, sizeof(want)) != 0)
        want[0] = '\0';
    if (got != NULL && strcmp(got, want) != 0)
        gw_log_kv(GW_LOG_WARN, "vault_serial_mismatch", "upstream", up_name(v), "request_id", rid,
                  "serial_number", got, "certificate_serial", want, NULL);
    join_strings(root, "warnings", warn, sizeof(warn));
    if (warn[0] != '\0')
        gw_log_kv(GW_LOG_WARN, "vault_warning", "upstream", up_name(v), "request_id", rid, "warnings", warn,
                  NULL);
    gw_log_kv(GW_LOG_INFO, "vault_issued", "upstream", up_name(v), "request_id", rid, "serial", want,
              "expiration", exp, NULL);
}

/* parse_signed turns a 200/204 answer into |res|. */
static void parse_signed(const struct vault *v, const struct gw_sign_req *req,
                         const struct gw_http_response *rsp, struct gw_sign_result *res)
{
    json_object *root = parse_json(rsp->body, rsp->body_len), *data;
    const char *pem;
    char warn[GW_ERR_LEN];
    STACK_OF(X509) *one = NULL;

    if (root == NULL) {
        fail_res(res, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                 "Vault answered HTTP %ld with a body that is not Vault JSON", rsp->status);
        goto out;
    }
    data = member(root, "data", json_type_object);
    if ((pem = member_str(data, "certificate")) == NULL) {
        join_strings(root, "warnings", warn, sizeof(warn));
        fail_res(res, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                 "Vault issued no certificate: %s",
                 warn[0] != '\0' ? warn : "the answer has no data.certificate");
        goto out;
    }
    if ((one = sk_X509_new_null()) == NULL || add_pem_certs(one, pem) < 1) {
        fail_res(res, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                 "Vault's data.certificate is not a PEM certificate");
        goto out;
    }
    res->cert = sk_X509_shift(one);
    res->chain = parse_chain(data);
    res->status = 0;
    log_issued(v, req, root, data, res->cert);
out:
    sk_X509_pop_free(one, X509_free);
    json_object_put(root);
}

/* worker: one sign call, |res| filled in every case. */
static void sign_now(struct vault *v, const struct gw_sign_req *req, struct gw_sign_result *res)
{
    char path[GW_MAX_PATH_LEN], err[GW_ERR_LEN] = "";
    struct gw_http_response rsp;
    char *body = NULL;
    int rc;

    memset(&rsp, 0, sizeof(rsp));
    if (sign_path(v, req->role, path, sizeof(path), err) != 0 || (body = sign_body(req, err)) == NULL) {
        fail_res(res, GW_ERR_INVAL, OSSL_CMP_PKIFAILUREINFO_systemFailure, "upstream %s: %s", up_name(v),
                 err);
        goto out;
    }
    rc = vault_call(v, "POST", path, body, &rsp, err);
    if (rc == GW_ERR_IO && rsp.not_sent) {
        fail_res(res, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                 "Vault is unreachable (%s); nothing was sent", err);
    } else if (rc == GW_ERR_TIMEOUT || rc == GW_ERR_IO) {
        /* a sign request may have reached Vault: never repeat it blindly */
        fail_res(res, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                 "Vault did not answer (%s); the outcome is unknown, do not retry blindly", err);
    } else if (rc == GW_ERR_FORBIDDEN) {
        fail_res(res, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                 "%s: an operator must fix the gateway's Vault login", err);
    } else if (rc != 0) {
        fail_res(res, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault could not be asked: %s", err);
    } else if (rsp.status == 200 || rsp.status == 204) {
        parse_signed(v, req, &rsp, res);
    } else {
        map_error(&rsp, &res->status, &res->fail_info, res->reason);
    }
out:
    if (res->status != 0)
        gw_log_kv(GW_LOG_WARN, "vault_sign_failed", "upstream", up_name(v), "request_id",
                  req->request_id != NULL ? req->request_id : "", "path", path, "reason", res->reason, NULL);
    gw_http_response_cleanup(&rsp);
    free(body);
}

static int vault_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                      void *arg)
{
    struct vault *v = gw_upstream_get0_impl(up);
    struct gw_sign_result *res;

    /* Vault signs CSRs only: a CRMF request is the route's to reject or delegate */
    if (v == NULL || req->csr == NULL || req->role == NULL || req->plan == NULL)
        return GW_ERR_INVAL;
    if ((res = malloc(sizeof(*res))) == NULL)
        return GW_ERR_NOMEM;
    gw_sign_result_init(res);
    sign_now(v, req, res);
    done(arg, res);
    return 0;
}

/* ---- revoke, role policy, certificate status ---- */

/* Runs one synchronous call and maps a non-2xx answer into |err|; 0 with the 2xx body in |root|. */
static int simple_call(struct vault *v, const char *method, const char *path, const char *body,
                       json_object **root, long *status, char *err)
{
    struct gw_http_response rsp;
    int st, fi, rc;

    *root = NULL;
    if ((rc = vault_call(v, method, path, body, &rsp, err)) != 0) {
        set_err(err, "upstream %s: %s %s: %.120s", up_name(v), method, path, err);
        goto out;
    }
    *status = rsp.status;
    if (rsp.status != 200 && rsp.status != 204) {
        map_error(&rsp, &st, &fi, err);
        rc = rsp.status == 404 ? GW_ERR_NOT_FOUND : st;
        goto out;
    }
    if ((*root = parse_json(rsp.body, rsp.body_len)) == NULL) {
        set_err(err, "upstream %s: %s %s: the answer is not Vault JSON", up_name(v), method, path);
        rc = GW_ERR_UPSTREAM;
    }
out:
    gw_http_response_cleanup(&rsp);
    return rc;
}

static int cert_serial(const X509 *cert, char *hex, size_t cap, char *err)
{
    if (cert == NULL || serial_hex(X509_get0_serialNumber(cert), hex, cap) != 0) {
        set_err(err, "certificate has no usable serial number");
        return GW_ERR_INVAL;
    }
    return 0;
}

/*
 * POST revoke by serial: Vault takes no reason code (the caller audits it), and revokes by serial
 * within the mount, whatever |issuer| says. Unknown serial: GW_ERR_NOT_FOUND. Worker.
 */
static int vault_revoke_serial(struct gw_upstream *up, const X509_NAME *issuer,
                               const ASN1_INTEGER *serial_int, int reason, char *err)
{
    struct vault *v = gw_upstream_get0_impl(up);
    char path[GW_MAX_PATH_LEN], serial[SERIAL_HEX_LEN], warn[GW_ERR_LEN];
    json_object *req = NULL, *root = NULL;
    long status = 0;
    int rc;

    (void)issuer;
    (void)reason;
    if (serial_int == NULL || ASN1_STRING_type(serial_int) == V_ASN1_NEG_INTEGER ||
        serial_hex(serial_int, serial, sizeof(serial)) != 0) {
        set_err(err, "not a serial number Vault issues");
        return GW_ERR_NOT_FOUND;
    }
    if ((req = json_object_new_object()) == NULL)
        return GW_ERR_NOMEM;
    json_object_object_add(req, "serial_number", json_object_new_string(serial));
    snprintf(path, sizeof(path), "/v1/%s/revoke", v->mount);
    rc = simple_call(v, "POST", path, json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN), &root,
                     &status, err);
    if (rc != 0 && status == 400 && strstr(err, "not found") != NULL)
        rc = GW_ERR_NOT_FOUND; /* "certificate with serial ... not found." (notes/upstream-apis.md §1.5) */
    if (rc != 0)
        goto out;
    if (member(root, "data", json_type_object) == NULL) {
        /* 200 with only a warning: the certificate has expired, and Vault puts no expired one on its CRL */
        join_strings(root, "warnings", warn, sizeof(warn));
        set_err(err, "Vault did not revoke %s: it has expired (Vault: %.150s)", serial,
                warn[0] != '\0' ? warn : "no data in the answer");
        rc = GW_ERR_UPSTREAM;
        goto out;
    }
    gw_log_kv(GW_LOG_INFO, "vault_revoked", "upstream", up_name(v), "serial", serial, NULL);
out:
    json_object_put(root);
    json_object_put(req);
    return rc;
}

/* GET <mount>/crl: the mount's CRL, DER (notes/upstream-apis.md §1.6). Worker. */
static int vault_crl(struct gw_upstream *up, unsigned char **der, size_t *len, char *err)
{
    struct vault *v = gw_upstream_get0_impl(up);
    struct gw_http_response rsp;
    const unsigned char *p;
    X509_CRL *crl = NULL;
    char path[GW_MAX_PATH_LEN];
    int rc;

    snprintf(path, sizeof(path), "/v1/%s/crl", v->mount);
    if ((rc = vault_call(v, "GET", path, NULL, &rsp, err)) != 0) {
        set_err(err, "upstream %s: GET %s: %.120s", up_name(v), path, err);
        goto out;
    }
    rc = GW_ERR_UPSTREAM;
    if (rsp.status != 200) {
        set_err(err, "upstream %s: GET %s: HTTP %ld", up_name(v), path, rsp.status);
        goto out;
    }
    p = (const unsigned char *)rsp.body;
    if (rsp.body_len == 0 || (crl = d2i_X509_CRL(NULL, &p, (long)rsp.body_len)) == NULL ||
        p != (const unsigned char *)rsp.body + rsp.body_len) {
        set_err(err, "upstream %s: GET %s: the answer is not a DER CRL", up_name(v), path);
        goto out;
    }
    if ((*der = malloc(rsp.body_len)) == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    memcpy(*der, rsp.body, rsp.body_len);
    *len = rsp.body_len;
    rc = 0;
out:
    X509_CRL_free(crl);
    gw_http_response_cleanup(&rsp);
    return rc;
}

static unsigned name_bit(const char *s, size_t len, int eku)
{
    size_t j, n = eku ? sizeof(eku_names) / sizeof(eku_names[0]) : sizeof(ku_names) / sizeof(ku_names[0]);

    for (j = 0; j < n; j++) {
        const char *name = eku ? eku_names[j].name : ku_names[j].name;

        if (strlen(name) == len && strncasecmp(s, name, len) == 0)
            return eku ? eku_names[j].bit : ku_names[j].bit;
    }
    return 0;
}

/*
 * The names of a role field given as a list or, as older Vaults answer, one comma-separated string:
 * the first |cap| into |names| and |lens|; returns how many there are, which may be more than |cap|.
 */
static size_t field_names(json_object *data, const char *key, const char **names, size_t *lens, size_t cap)
{
    json_object *m = NULL;
    const char *p, *end, *last;
    size_t n = 0, i;

    if (!json_object_object_get_ex(data, key, &m) || m == NULL)
        return 0;
    if (json_object_is_type(m, json_type_array)) {
        for (i = 0; i < json_object_array_length(m); i++) {
            if ((p = json_object_get_string(json_object_array_get_idx(m, i))) == NULL)
                continue;
            if (n < cap) {
                names[n] = p;
                lens[n] = strlen(p);
            }
            n++;
        }
        return n;
    }
    for (p = json_object_get_string(m); p != NULL && *p != '\0'; p = *end != '\0' ? end + 1 : end) {
        end = p + strcspn(p, ",");
        for (last = end; last > p && last[-1] == ' '; last--)
            ;
        while (p < last && *p == ' ')
            p++;
        if (last > p && n < cap) {
            names[n] = p;
            lens[n] = (size_t)(last - p);
        }
        n += last > p;
    }
    return n;
}

static bool member_flag(json_object *o, const char *key, bool dflt)
{
    json_object *m = member(o, key, json_type_boolean);

    return m != NULL ? json_object_get_boolean(m) : dflt;
}

static void other_eku(struct gw_role_policy *out, const char *s, size_t len)
{
    if (out->other_eku[0] == '\0')
        snprintf(out->other_eku, sizeof(out->other_eku), "%.*s", (int)len, s);
}

/* A list longer than is read may grant anything: it stands as a purpose no role can allow. */
static void too_many(struct gw_role_policy *out, const char *key)
{
    char what[GW_MAX_OID_TEXT + 1];

    snprintf(what, sizeof(what), "%s beyond %d entries", key, GW_MAX_ROLE_USAGES);
    other_eku(out, what, strlen(what));
}

/*
 * What the role puts into every certificate it signs, whatever the CSR asks (Vault's parseKeyUsages
 * and parseExtKeyUsages): key_usage; ext_key_usage, the four *_flag switches and ext_key_usage_oids.
 * A field the answer lacks takes Vault's default (key_usage DigitalSignature, KeyAgreement,
 * KeyEncipherment; server_flag and client_flag true): an answer never reads narrower than the role.
 */
static void parse_grants(json_object *data, struct gw_role_policy *out)
{
    const char *names[GW_MAX_ROLE_USAGES];
    size_t lens[GW_MAX_ROLE_USAGES], n, i;
    ASN1_OBJECT *obj;
    unsigned bit;

    if (!json_object_object_get_ex(data, "key_usage", NULL))
        out->key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | KU_KEY_ENCIPHERMENT;
    /* more names than read: whatever the rest say, take them as every usage there is */
    if ((n = field_names(data, "key_usage", names, lens, GW_MAX_ROLE_USAGES)) > GW_MAX_ROLE_USAGES)
        for (int b = 0; gw_ku_from_bit(b) != 0; b++)
            out->key_usage |= gw_ku_from_bit(b);
    for (i = 0; i < n && i < GW_MAX_ROLE_USAGES; i++)
        out->key_usage |= name_bit(names[i], lens[i], 0); /* Vault ignores names it does not know */
    if ((n = field_names(data, "ext_key_usage", names, lens, GW_MAX_ROLE_USAGES)) > GW_MAX_ROLE_USAGES)
        too_many(out, "ext_key_usage");
    for (i = 0; i < n && i < GW_MAX_ROLE_USAGES; i++) {
        if ((bit = name_bit(names[i], lens[i], 1)) == 0)
            other_eku(out, names[i], lens[i]); /* "Any", the IPsec and Microsoft purposes */
        out->ext_key_usage |= bit;
    }
    out->ext_key_usage |= (member_flag(data, "server_flag", true) ? GW_EKU_SERVER_AUTH : 0) |
                          (member_flag(data, "client_flag", true) ? GW_EKU_CLIENT_AUTH : 0) |
                          (member_flag(data, "code_signing_flag", false) ? GW_EKU_CODE_SIGNING : 0) |
                          (member_flag(data, "email_protection_flag", false) ? GW_EKU_EMAIL_PROTECTION : 0);
    if ((n = field_names(data, "ext_key_usage_oids", names, lens, GW_MAX_ROLE_USAGES)) > GW_MAX_ROLE_USAGES)
        too_many(out, "ext_key_usage_oids");
    for (i = 0; i < n && i < GW_MAX_ROLE_USAGES; i++) {
        char oid[GW_MAX_OID_TEXT + 1];

        snprintf(oid, sizeof(oid), "%.*s", (int)lens[i], names[i]);
        obj = OBJ_txt2obj(oid, 1);
        if ((bit = obj != NULL ? gw_eku_from_nid(OBJ_obj2nid(obj)) : 0) == 0)
            other_eku(out, names[i], lens[i]);
        out->ext_key_usage |= bit;
        ASN1_OBJECT_free(obj);
        ERR_clear_error();
    }
}

/* allowed_domains: a list, or the comma-separated string older Vaults return. */
static int parse_domains(json_object *data, struct gw_patterns *out)
{
    json_object *a = member(data, "allowed_domains", json_type_array);
    size_t i, n = a != NULL ? json_object_array_length(a) : 0;

    if (n > GW_MAX_PATTERNS)
        return GW_ERR_LIMIT;
    if (n == 0)
        return 0;
    if ((out->v = calloc(n, sizeof(*out->v))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        const char *s = json_object_get_string(json_object_array_get_idx(a, i));

        if (s == NULL || strlen(s) > GW_MAX_PATTERN_LEN)
            return GW_ERR_INVAL;
        if ((out->v[out->n] = strdup(s)) == NULL)
            return GW_ERR_NOMEM;
        out->n++;
    }
    return 0;
}

static uint32_t parse_ttl(json_object *data, const char *key)
{
    json_object *m = NULL;
    int64_t n;

    if (!json_object_object_get_ex(data, key, &m) || m == NULL)
        return 0;
    n = json_object_get_int64(m); /* a number, or a numeric string */
    return n > 0 && n <= (int64_t)GW_MAX_CERT_TTL ? (uint32_t)n : 0;
}

/* GET roles/<name> (notes/upstream-apis.md §1.7). Worker. */
static int vault_role_policy(struct gw_upstream *up, const char *role, struct gw_role_policy *out, char *err)
{
    struct vault *v = gw_upstream_get0_impl(up);
    char path[GW_MAX_PATH_LEN];
    json_object *root = NULL, *data;
    const char *kt;
    long status = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!safe_segment(role)) {
        set_err(err, "upstream role %.64s is not a plain name", role != NULL ? role : "(null)");
        return GW_ERR_INVAL;
    }
    snprintf(path, sizeof(path), "/v1/%s/roles/%s", v->mount, role);
    if ((rc = simple_call(v, "GET", path, NULL, &root, &status, err)) != 0)
        goto out;
    if ((data = member(root, "data", json_type_object)) == NULL) {
        set_err(err, "Vault role %.64s: the answer has no data", role);
        rc = GW_ERR_UPSTREAM;
        goto out;
    }
    if ((rc = parse_domains(data, &out->allowed_domains)) != 0) {
        set_err(err, "Vault role %.64s: allowed_domains unusable", role);
        goto out;
    }
    out->allow_any_name = member_flag(data, "allow_any_name", false);
    out->allow_subdomains = member_flag(data, "allow_subdomains", false);
    out->allow_bare_domains = member_flag(data, "allow_bare_domains", false);
    out->allow_glob_domains = member_flag(data, "allow_glob_domains", false);
    out->allow_localhost = member_flag(data, "allow_localhost", false);
    out->allow_ip_sans = member_flag(data, "allow_ip_sans", false);
    out->enforce_hostnames = member_flag(data, "enforce_hostnames", false);
    kt = member_str(data, "key_type");
    snprintf(out->key_type, sizeof(out->key_type), "%s", kt != NULL ? kt : "rsa");
    out->key_bits = (int)json_object_get_int64(member(data, "key_bits", json_type_int));
    out->max_ttl = parse_ttl(data, "max_ttl");
    parse_grants(data, out);
out:
    if (rc != 0)
        gw_role_policy_cleanup(out);
    json_object_put(root);
    return rc;
}

/* GET cert/<serial>: revoked when revocation_time != 0 (notes/upstream-apis.md §1.6). Worker. */
static int vault_cert_status(struct gw_upstream *up, const X509 *cert, int *revoked, char *err)
{
    struct vault *v = gw_upstream_get0_impl(up);
    char path[GW_MAX_PATH_LEN], serial[SERIAL_HEX_LEN];
    json_object *root = NULL, *data, *rt;
    long status = 0;
    int rc;

    *revoked = 0;
    if ((rc = cert_serial(cert, serial, sizeof(serial), err)) != 0)
        return rc;
    snprintf(path, sizeof(path), "/v1/%s/cert/%s", v->mount, serial);
    if ((rc = simple_call(v, "GET", path, NULL, &root, &status, err)) != 0) {
        if (rc == GW_ERR_NOT_FOUND)
            set_err(err, "Vault does not know certificate %s", serial);
        goto out;
    }
    data = member(root, "data", json_type_object);
    if (data == NULL || member_str(data, "certificate") == NULL) {
        set_err(err, "Vault's answer for certificate %s has no data", serial);
        rc = GW_ERR_UPSTREAM;
        goto out;
    }
    rt = NULL;
    json_object_object_get_ex(data, "revocation_time", &rt);
    *revoked = rt != NULL && json_object_get_int64(rt) != 0;
out:
    json_object_put(root);
    return rc;
}

/* ---- life cycle ---- */

static void vault_free(struct vault *v)
{
    if (v == NULL)
        return;
    gw_http_client_free(v->http);
    free_token(v->token);
    pthread_cond_destroy(&v->cond);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

static int vault_init(struct gw_upstream *up, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    struct vault *v;

    if ((v = calloc(1, sizeof(*v))) == NULL) {
        set_err(err, "upstream %s: out of memory", conf->name);
        return GW_ERR_NOMEM;
    }
    pthread_mutex_init(&v->lock, NULL);
    pthread_cond_init(&v->cond, NULL);
    v->conf = conf;
    v->mount = conf->mount != NULL ? conf->mount : "pki";
    v->timeout_ms = conf->timeout_ms != 0 ? conf->timeout_ms : GW_DEFAULT_UPSTREAM_TIMEOUT_MS;
    if (!safe_mount(v->mount)) {
        set_err(err, "upstream %s: mount %.64s is not a plain path", conf->name, v->mount);
        goto fail;
    }
    if (conf->auth_cert_mount == NULL && conf->token_file != NULL &&
        read_token_file(conf->token_file, &v->token, err) != 0)
        goto fail;
    if (conf->auth_cert_mount != NULL && !safe_segment(conf->auth_cert_mount)) {
        set_err(err, "upstream %s: auth cert mount %.64s is not a plain name", conf->name,
                conf->auth_cert_mount);
        goto fail;
    }
    if ((v->http = gw_http_client_new(conf, err)) == NULL)
        goto fail;
    gw_upstream_set0_impl(up, v);
    return 0;
fail:
    vault_free(v);
    return GW_ERR_INVAL;
}

static void vault_cleanup(struct gw_upstream *up)
{
    vault_free(gw_upstream_get0_impl(up));
    gw_upstream_set0_impl(up, NULL);
}

const struct gw_upstream_ops gw_upstream_vault_ops = {
    .dialect = "vault",
    .caps = GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_ROLE_POLICY | GW_UP_CERT_STATUS | GW_UP_CRL,
    .init = vault_init,
    .cleanup = vault_cleanup,
    .sign = vault_sign,
    .revoke_serial = vault_revoke_serial,
    .crl = vault_crl,
    .role_policy = vault_role_policy,
    .cert_status = vault_cert_status,
};
