/*
 * The cfssl adapter (docs/design.md D11): `cfssl serve` signs the client's PKCS#10 CSR, unchanged.
 *
 *   POST /api/v1/cfssl/sign      {"certificate_request": <PEM>, "profile": <profile>, "hosts": [...]}
 *   POST /api/v1/cfssl/authsign  {"token": b64(HMAC-SHA256(key, REQ)), "request": b64(REQ)}  (auth_key)
 *   POST /api/v1/cfssl/info      {"profile": ""} -> the CA certificate (cfssl returns no chain)
 *   POST /api/v1/cfssl/revoke    {"serial": <decimal>, "authority_key_id": <hex>, "reason": <name>}
 *   GET  /api/v1/cfssl/crl       -> "result": base64 of the DER CRL (needs cfssl's certdb)
 *
 * What cfssl does to a request (verified against cfssl 1.2.0, docs/design.md U4): it
 * rebuilds the subject from the CSR in its own RDN order, `hosts` replaces the CSR's SANs (so the
 * plan's SANs are always sent, an empty list included, or the CSR's would be copied), key usages
 * come from the profile, and an unknown profile silently falls back to the default one. The
 * engine's result check judges the certificate; this file returns it and its chain intact.
 * A sign call runs on the HTTP client's transfer thread and completes there (docs/design.md D24);
 * the other calls run synchronously on the calling worker, each thread with its own handle.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/x509.h"
#include "upstream/answers.h"
#include "upstream/field.h"
#include "upstream/http_client.h"
#include "upstream/store.h"
#include "upstream/upstream.h"
#include "upstream/upstream_int.h"
#include "base/conf.h"

#define EP_SIGN "/api/v1/cfssl/sign"
#define EP_AUTHSIGN "/api/v1/cfssl/authsign"
#define EP_INFO "/api/v1/cfssl/info"
#define EP_REVOKE "/api/v1/cfssl/revoke"
#define EP_CRL "/api/v1/cfssl/crl"

/* cfssl error codes are category * 1000 + reason (cfssl errors/error.go). */
#define CFSSL_POLICY_ERROR 5000
#define CFSSL_API_CLIENT_ERROR 7000
#define CFSSL_CSR_ERROR 9000
#define CFSSL_CERT_STORE_ERROR 11000

struct cfssl {
    struct gw_http_client *http;
    pthread_mutex_t lock;  /* guards |chain| and |fetches|; never held across a call to cfssl */
    STACK_OF(X509) *chain; /* cfssl's CA (info), then the issuer_ca certificates; NULL until fetched */
    unsigned long fetches; /* chains published: a fetch publishes only if none was since it began */
};

/* What an endpoint's answer holds beside the envelope, and which parser reads it (answers.h). */
enum reading {
    READ_ENVELOPE, /* revoke: nothing */
    READ_SIGN,     /* sign, authsign: the certificate */
    READ_INFO,     /* info: cfssl's CA certificate */
    READ_CRL,      /* crl: a DER CRL */
};

/* One cfssl answer, reduced: status 0 with what it holds, or an error. Owned; answer_cleanup frees it. */
struct answer {
    int status;    /* 0 or a negative enum gw_err */
    int fail_info; /* OSSL_CMP_PKIFAILUREINFO_* */
    long code;     /* cfssl's errors[0].code, 0 if none */
    long http;     /* the answer's HTTP status, 0 if none came */
    char reason[GW_ERR_LEN];
    X509 *cert;         /* READ_SIGN, READ_INFO */
    unsigned char *der; /* READ_CRL */
    size_t der_len;
    bool unread;   /* READ_SIGN: an answer too large, or of too many objects and arrays, to be read */
    bool not_sent; /* no answer, and nothing of the request left (gw_http_response.not_sent) */
};

/* How a cfssl error becomes a CMP failInfo: by code range, then by message for the HTTP-level code 400. */
static const struct {
    long lo, hi;
    const char *message; /* NULL: any message in the range */
    int status;
    int fail_info;
    const char *what;
} error_map[] = {
    {CFSSL_POLICY_ERROR, CFSSL_POLICY_ERROR + 999, NULL, GW_ERR_POLICY,
     OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "refused by the cfssl profile's policy"},
    {CFSSL_CSR_ERROR, CFSSL_CSR_ERROR + 999, NULL, GW_ERR_POLICY, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
     "cfssl refused the CSR"},
    {CFSSL_API_CLIENT_ERROR, CFSSL_API_CLIENT_ERROR + 999, NULL, GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemUnavail, "operator problem: the gateway's cfssl authentication failed"},
    {400, 400, "authentication required", GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
     "operator problem: the cfssl profile has an auth_key; set auth_key_file on the upstream"},
    {400, 400, "invalid token", GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
     "operator problem: auth_key_file does not match the cfssl profile's auth_key"},
    {400, 400, "no authentication provider", GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
     "operator problem: the cfssl profile has no auth_key; remove auth_key_file or add one"},
};

/* CRLReason (RFC 5280 §5.3.1) -> cfssl's reason names (ocsp.ReasonStringToCode); 7 is unused. */
static const char *const reason_names[] = {
    "unspecified",   "keycompromise",        "cacompromise",    "affiliationchanged",
    "superseded",    "cessationofoperation", "certificatehold", NULL,
    "removefromcrl", "privilegewithdrawn",   "aacompromise",
};

static void answer_cleanup(struct answer *a)
{
    X509_free(a->cert);
    free(a->der);
    memset(a, 0, sizeof(*a));
}

static void answer_fail(struct answer *a, int status, int fail_info, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void answer_fail(struct answer *a, int status, int fail_info, const char *fmt, ...)
{
    va_list ap;

    a->status = status;
    a->fail_info = fail_info;
    va_start(ap, fmt);
    vsnprintf(a->reason, sizeof(a->reason), fmt, ap);
    va_end(ap);
}

/*
 * |a| fails with the reason "<head>: <msg> (code <code>)": cfssl's message |msg| (printable already:
 * the envelope's) gives way to the words after it, cut between UTF-8 characters to GW_MAX_CFSSL_QUOTE
 * bytes or less (gw_field_reason), for the reason becomes a statusString (a UTF8String) and a log line.
 */
static void answer_quote(struct answer *a, int status, int fail_info, const char *head, const char *msg,
                         long code)
{
    char tail[sizeof(" (code -9223372036854775808)")];

    a->status = status;
    a->fail_info = fail_info;
    snprintf(tail, sizeof(tail), " (code %ld)", code);
    gw_field_reason(a->reason, GW_MAX_CFSSL_QUOTE, msg, tail, "%s: ", head);
}

/* An error envelope (any status), or none (|env| NULL) -> failInfo and a reason naming cfssl's message and
 * code. */
static void classify_error(struct answer *a, const char *up, long http_status,
                           const struct gw_cfssl_envelope *env)
{
    const char *msg = env != NULL ? env->message : "";
    char head[GW_ERR_LEN];
    size_t i;

    a->code = env != NULL ? env->code : 0;
    if (http_status >= 500) {
        snprintf(head, sizeof(head), "cfssl %s failed (HTTP %ld)", up, http_status);
        answer_quote(a, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, head,
                     msg[0] ? msg : "no message", a->code);
        return;
    }
    for (i = 0; http_status == 400 && i < sizeof(error_map) / sizeof(error_map[0]); i++) {
        if (a->code < error_map[i].lo || a->code > error_map[i].hi)
            continue;
        if (error_map[i].message != NULL && strcmp(msg, error_map[i].message) != 0)
            continue;
        snprintf(head, sizeof(head), "cfssl %s: %s", up, error_map[i].what);
        answer_quote(a, error_map[i].status, error_map[i].fail_info, head, msg, a->code);
        return;
    }
    snprintf(head, sizeof(head), "cfssl %s: HTTP %ld", up, http_status);
    answer_quote(a, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, head,
                 msg[0] ? msg : "unexpected answer", a->code);
}

/*
 * An answer to |endpoint| refused whole for |why|, and cfssl's own error beside, where its envelope
 * read and says one: a "success": false refused for the certificate it holds all the same is still a
 * refusal, which the client and the operator learn the words of. |why| is cut as cfssl's message is
 * (gw_field_reason), between UTF-8 characters: it may quote a value of the answer.
 */
static void answer_refused(struct answer *a, const char *up, const char *endpoint, long http_status,
                           const char *why, const struct gw_cfssl_envelope *env)
{
    char head[GW_ERR_LEN];

    gw_field_reason(head, GW_MAX_CFSSL_WHY, why, "", "cfssl %s: the %s answer (HTTP %ld) is refused: ", up,
                    strrchr(endpoint, '/') + 1, http_status);
    if (env->success || env->message[0] == '\0') {
        answer_fail(a, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "%s", head);
        return;
    }
    snprintf(head + strlen(head), sizeof(head) - strlen(head), "; cfssl's error");
    answer_quote(a, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, head, env->message, env->code);
}

/* Has |what|'s parser read |rsp| into |a|: 0, or the parser's gw_err with the reason in |why|. */
static int read_answer(const struct gw_http_response *rsp, enum reading what, struct gw_cfssl_envelope *env,
                       struct answer *a, char *why)
{
    struct gw_cfssl_cert cert;
    struct gw_cfssl_crl crl;
    int rc;

    switch (what) {
    case READ_SIGN:
    case READ_INFO:
        rc = what == READ_SIGN ? gw_cfssl_parse_sign(rsp->body, rsp->body_len, &cert, why)
                               : gw_cfssl_parse_info(rsp->body, rsp->body_len, &cert, why);
        *env = cert.env;
        a->cert = cert.cert;
        return rc;
    case READ_CRL:
        rc = gw_cfssl_parse_crl(rsp->body, rsp->body_len, &crl, why);
        *env = crl.env;
        a->der = crl.der;
        a->der_len = crl.len;
        return rc;
    case READ_ENVELOPE:
        break;
    }
    return gw_cfssl_parse_envelope(rsp->body, rsp->body_len, env, why);
}

#define CUT_NOT_SENT "not sent: the drain's deadline came first"

/*
 * A call to |endpoint| its caller's end cut short (|rc|: GW_ERR_TIMEOUT once sent), into |a|. Only a
 * withdrawal (a revocation, READ_ENVELOPE) is given the drain's deadline; any other call's end is a stop
 * (a health probe's as its configuration is retired, the CA certificate's fetch of a reload the gateway's
 * stop ended), which is no failure of cfssl: said in the reason only, never logged as one.
 */
static void reduce_cut(const struct gw_upstream_conf *conf, const char *endpoint, enum reading what, int rc,
                       struct answer *a)
{
    const char *name = gw_upstream_conf_name(conf);

    if (what != READ_ENVELOPE && rc == GW_ERR_TIMEOUT) {
        answer_fail(a, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                    "cfssl %s did not answer %s before a stop cut the call short", name, endpoint);
    } else if (what != READ_ENVELOPE) {
        answer_fail(a, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                    "cfssl %s was not asked %s: a stop came first", name, endpoint);
    } else if (rc == GW_ERR_TIMEOUT) {
        answer_fail(
            a, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
            "cfssl %s did not answer %s before the drain's deadline cut the call short; the outcome is "
            "unknown",
            name, endpoint);
    } else {
        gw_log_kv(GW_LOG_WARN, "cfssl_unavailable", "upstream", name, "url",
                  ((const struct gw_http_conf *)conf->impl)->url, "endpoint", endpoint, "error", CUT_NOT_SENT,
                  NULL);
        answer_fail(a, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                    "cfssl %s could not be reached, it is unavailable: %s", name, CUT_NOT_SENT);
    }
}

/*
 * reduce turns the answer |rsp| (or the failure |rc|) to a call of |endpoint| into |a| with |what|'s
 * parser: a success needs HTTP 200, "success": true and a result that reads. Error bodies come as
 * text/plain but are JSON (Go http.Error), so the body is parsed whatever the Content-Type says.
 */
static void reduce(const struct gw_upstream_conf *conf, const char *endpoint, enum reading what, int rc,
                   const struct gw_http_response *rsp, struct answer *a)
{
    struct gw_cfssl_envelope env;
    char why[GW_ERR_LEN];

    memset(a, 0, sizeof(*a));
    a->http = rsp->status;
    a->not_sent = rc != 0 && rsp->not_sent;
    if (rc != 0 && rsp->cut_short) {
        reduce_cut(conf, endpoint, what, rc, a);
        goto out;
    }
    if (rc == GW_ERR_TIMEOUT) {
        answer_fail(a, GW_ERR_TIMEOUT, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                    "cfssl %s did not answer %s in time; the outcome is unknown, not retried",
                    gw_upstream_conf_name(conf), endpoint);
        goto out;
    }
    if (rc != 0) {
        /* the reason reaches the client: the URL goes to the log only */
        gw_log_kv(GW_LOG_WARN, "cfssl_unavailable", "upstream", gw_upstream_conf_name(conf), "url",
                  ((const struct gw_http_conf *)conf->impl)->url, "endpoint", endpoint, "error",
                  rsp->error[0] ? rsp->error : gw_err_str(rc), NULL);
        /* a sign that went out (then its connection closed, or the answer was too large): cfssl may
           have issued the certificate, which "could not be reached" would deny */
        a->unread = what == READ_SIGN && rsp->too_large; /* result.certificate not read either */
        if (what == READ_SIGN && !rsp->not_sent)
            answer_fail(a, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                        "cfssl %s did not answer %s (%s); the outcome is unknown, not retried",
                        gw_upstream_conf_name(conf), endpoint, rsp->error[0] ? rsp->error : gw_err_str(rc));
        else
            answer_fail(a, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                        "cfssl %s could not be reached, it is unavailable: %s", gw_upstream_conf_name(conf),
                        rsp->error[0] ? rsp->error : gw_err_str(rc));
        goto out;
    }
    if (what == READ_SIGN && gw_field_unread(rsp->body, rsp->body_len, why) != 0) {
        /* not a field of it is read, result.certificate neither: a certificate cfssl may have issued is
           neither recorded nor withdrawn, which only cfssl can tell */
        answer_fail(a, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                    "cfssl %s: the %s answer (HTTP %ld) could not be read (%s); the outcome is unknown "
                    "(cfssl may have issued: see its database), not retried",
                    gw_upstream_conf_name(conf), strrchr(endpoint, '/') + 1, rsp->status, why);
        a->unread = true;
        goto out;
    }
    rc = read_answer(rsp, what, &env, a, why);
    if (rc == 0 && env.success && rsp->status == 200)
        goto out;
    if (rc == GW_ERR_NOMEM)
        answer_fail(a, rc, OSSL_CMP_PKIFAILUREINFO_systemFailure, "cfssl %s: out of memory",
                    gw_upstream_conf_name(conf));
    /* a broken 5xx body says no more than its status, unless it holds a certificate (then the
       reason says why the certificate is withdrawn) */
    else if (rc != 0 && (rsp->status < 500 || a->cert != NULL))
        answer_refused(a, gw_upstream_conf_name(conf), endpoint, rsp->status, why, &env);
    else
        classify_error(a, gw_upstream_conf_name(conf), rsp->status, rc == 0 ? &env : NULL);
out:
    if (a->status != 0) {
        if (what != READ_SIGN) { /* a refused sign answer's certificate was issued: kept (answers.h) */
            X509_free(a->cert);
            a->cert = NULL;
        }
        free(a->der);
        a->der = NULL;
        a->der_len = 0;
    }
}

/* call_as sends |method| to |endpoint| by *end (gw_http_request_until; NULL: the timeout alone) and reduces
 * the answer (worker). */
static void call_as(struct cfssl *c, const struct gw_upstream_conf *conf, const char *method,
                    const char *endpoint, const char *body, enum reading what, const _Atomic uint64_t *end,
                    struct answer *a)
{
    struct gw_http_response rsp;
    int rc = gw_http_request_until(c->http, method, endpoint, body, NULL, 0, end, &rsp);

    reduce(conf, endpoint, what, rc, &rsp, a);
    gw_http_response_cleanup(&rsp);
}

/* ---- the CA chain (info) ---- */

/* cfssl's CA certificate, then the configured issuer_ca certificates that differ from it. */
static STACK_OF(X509) *make_chain(X509 *ca, const struct gw_upstream_conf *conf)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    int i;

    if (chain == NULL || sk_X509_push(chain, ca) <= 0)
        goto err;
    X509_up_ref(ca);
    for (i = 0; i < sk_X509_num(conf->issuer_certs); i++) {
        X509 *x = sk_X509_value(conf->issuer_certs, i);

        if (X509_cmp(x, ca) == 0)
            continue;
        if (sk_X509_push(chain, x) <= 0)
            goto err;
        X509_up_ref(x);
    }
    return chain;
err:
    sk_X509_pop_free(chain, X509_free);
    return NULL;
}

/* Fetches cfssl's CA certificate and makes the chain: a call to cfssl, made with no lock held, by *end
 * (NULL: the timeout alone). NULL with the failure in |a|. */
static STACK_OF(X509) *fetch_chain(struct cfssl *c, const struct gw_upstream_conf *conf,
                                   const _Atomic uint64_t *end, struct answer *a)
{
    STACK_OF(X509) *chain;

    call_as(c, conf, "POST", EP_INFO, "{\"profile\":\"\"}", READ_INFO, end, a);
    if (a->status != 0)
        return NULL;
    if ((chain = make_chain(a->cert, conf)) == NULL)
        answer_fail(a, GW_ERR_NOMEM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "cfssl %s: out of memory",
                    gw_upstream_conf_name(conf));
    return chain;
}

/*
 * get1_chain returns the cached chain, fetching it if the server was down at start, or again if
 * |refresh| (the CA changed under us). The fetch runs outside the lock, so a slow or hanging
 * cfssl holds up only the calls that need its CA, never every other call through this upstream.
 * Several callers may fetch at once: the first to finish publishes its chain, a later one keeps
 * its own for its call only (both read cfssl's CA after the need arose). NULL with the reason in
 * |a|. Worker, or a thread of the call's own.
 */
static STACK_OF(X509) *get1_chain(struct cfssl *c, const struct gw_upstream_conf *conf, int refresh,
                                  struct answer *a)
{
    STACK_OF(X509) *out = NULL, *fresh, *old = NULL;
    unsigned long since;
    bool cached;

    pthread_mutex_lock(&c->lock);
    cached = c->chain != NULL && !refresh;
    if (cached)
        out = X509_chain_up_ref(c->chain);
    since = c->fetches;
    pthread_mutex_unlock(&c->lock);
    if (!cached && (fresh = fetch_chain(c, conf, NULL, a)) != NULL) {
        pthread_mutex_lock(&c->lock);
        if (c->fetches == since) {
            old = c->chain;
            c->chain = fresh;
            c->fetches++;
            out = X509_chain_up_ref(fresh);
        } else {
            out = fresh;
            fresh = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        sk_X509_pop_free(old, X509_free);
        if (fresh != NULL && out == NULL)
            answer_fail(a, GW_ERR_NOMEM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "cfssl %s: out of memory",
                        gw_upstream_conf_name(conf));
    } else if (cached && out == NULL) {
        answer_fail(a, GW_ERR_NOMEM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "cfssl %s: out of memory",
                    gw_upstream_conf_name(conf));
    }
    if (out == NULL && a->status == 0)
        answer_fail(a, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                    "cfssl %s: its CA certificate is not known", gw_upstream_conf_name(conf));
    return out;
}

/* ---- init / cleanup ---- */

static void cfssl_free(struct cfssl *c)
{
    if (c == NULL)
        return;
    gw_http_client_free(c->http);
    sk_X509_pop_free(c->chain, X509_free);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int cfssl_init(struct gw_upstream *up, const _Atomic uint64_t *end, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    struct cfssl *c;
    struct answer a;
    int rc;

    if ((c = calloc(1, sizeof(*c))) == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: out of memory", gw_upstream_conf_name(conf));
        return GW_ERR_NOMEM;
    }
    pthread_mutex_init(&c->lock, NULL);
    /* no GW_HTTP_SECRETS: an authsign call carries the auth key's HMAC of that one request, never the key */
    if ((c->http = gw_http_client_new(conf->name, conf->impl, conf->timeout_ms, 0, &rc, err)) == NULL) {
        cfssl_free(c);
        return rc;
    }
    /* A cfssl that is down at start is fetched from again on the first sign call. */
    c->chain = fetch_chain(c, conf, end, &a);
    if (a.status != 0 && !(end != NULL && atomic_load(end) != 0)) /* not when a stop cut it short */
        gw_log(GW_LOG_WARN, "upstream_ca", "%s; will retry on the first request", a.reason);
    answer_cleanup(&a);
    gw_upstream_set0_impl(up, c);
    return 0;
}

static void cfssl_cleanup(struct gw_upstream *up)
{
    cfssl_free(gw_upstream_get0_impl(up));
    gw_upstream_set0_impl(up, NULL);
}

/* ---- sign ---- */

/* One SAN as a cfssl host, or NULL: cfssl 1.2 turns anything but an IP or an email into a DNS name. */
static const char *host_of(const GENERAL_NAME *gn, char *buf, size_t cap)
{
    const ASN1_STRING *s = NULL;
    int af;

    switch (gn->type) {
    case GEN_DNS:
        s = gn->d.dNSName;
        break;
    case GEN_EMAIL:
        s = gn->d.rfc822Name;
        break;
    case GEN_IPADD:
        af = ASN1_STRING_length(gn->d.iPAddress) == 4 ? AF_INET : AF_INET6;
        if (ASN1_STRING_length(gn->d.iPAddress) != 4 && ASN1_STRING_length(gn->d.iPAddress) != 16)
            return NULL;
        return inet_ntop(af, ASN1_STRING_get0_data(gn->d.iPAddress), buf, (socklen_t)cap);
    default:
        return NULL;
    }
    /* an embedded NUL or an overlong name is not a host name */
    if (ASN1_STRING_length(s) <= 0 || (size_t)ASN1_STRING_length(s) >= cap ||
        memchr(ASN1_STRING_get0_data(s), '\0', (size_t)ASN1_STRING_length(s)) != NULL)
        return NULL;
    memcpy(buf, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
    buf[ASN1_STRING_length(s)] = '\0';
    return buf;
}

/* The plan's SANs as cfssl "hosts" (always an array: an absent one keeps the CSR's SANs). */
static json_object *make_hosts(const struct gw_cert_plan *plan, struct answer *a, const char *up)
{
    json_object *hosts = json_object_new_array();
    char buf[256];
    const char *h;
    int i;

    for (i = 0; hosts != NULL && plan->sans != NULL && i < sk_GENERAL_NAME_num(plan->sans); i++) {
        if ((h = host_of(sk_GENERAL_NAME_value(plan->sans, i), buf, sizeof(buf))) == NULL) {
            answer_fail(a, GW_ERR_POLICY, OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                        "cfssl %s takes only DNS names, IP addresses and email addresses as subjectAltNames",
                        up);
            json_object_put(hosts);
            return NULL;
        }
        if (json_object_array_add(hosts, json_object_new_string(h)) != 0) {
            json_object_put(hosts);
            hosts = NULL;
        }
    }
    if (hosts == NULL)
        answer_fail(a, GW_ERR_NOMEM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "cfssl %s: out of memory", up);
    return hosts;
}

static char *csr_pem(const X509_REQ *csr)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *out = NULL;
    long n;

    if (bio == NULL || PEM_write_bio_X509_REQ(bio, (X509_REQ *)csr) != 1)
        goto out;
    if ((n = BIO_get_mem_data(bio, &data)) <= 0 || (out = malloc((size_t)n + 1)) == NULL)
        goto out;
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
out:
    BIO_free(bio);
    return out;
}

/* Serializes |obj| and drops it; NULL on allocation failure. */
static char *to_json(json_object *obj)
{
    const char *s =
        obj != NULL
            ? json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
            : NULL;
    char *out = s != NULL ? strdup(s) : NULL;

    json_object_put(obj);
    return out;
}

static int add_str(json_object *obj, const char *key, const char *val)
{
    json_object *v = json_object_new_string(val);

    if (v == NULL || json_object_object_add(obj, key, v) != 0) {
        json_object_put(v);
        return 0;
    }
    return 1;
}

/* REQ: {"certificate_request", "profile", "hosts"}; NULL with the reason in |a|. */
static char *make_sign_request(const struct gw_sign_req *req, const char *up, struct answer *a)
{
    json_object *obj = json_object_new_object(), *hosts = NULL;
    const char *profile = req->role->upstream_role != NULL ? req->role->upstream_role : req->role->name;
    char *pem = csr_pem(req->csr), *out = NULL;

    if (obj == NULL || pem == NULL || !add_str(obj, "certificate_request", pem) ||
        !add_str(obj, "profile", profile != NULL ? profile : ""))
        goto nomem;
    if ((hosts = make_hosts(req->plan, a, up)) == NULL)
        goto out;
    if (json_object_object_add(obj, "hosts", hosts) != 0) {
        json_object_put(hosts);
        goto nomem;
    }
    out = to_json(obj);
    obj = NULL;
    if (out == NULL)
        goto nomem;
    goto out;
nomem:
    answer_fail(a, GW_ERR_NOMEM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "cfssl %s: out of memory", up);
out:
    json_object_put(obj);
    free(pem);
    return out;
}

static char *b64(const unsigned char *in, size_t len)
{
    char *out;

    if (len > (size_t)GW_MAX_UPSTREAM_BODY || (out = malloc(4 * ((len + 2) / 3) + 1)) == NULL)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

/* authsign wraps REQ: the HMAC covers exactly the bytes that are base64-encoded (docs/design.md
 * U4). */
static char *make_authsign_request(const struct gw_cfssl_conf *cc, const char *sign_req)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    json_object *obj = NULL;
    char *token = NULL, *request = NULL, *out = NULL;

    if (HMAC(EVP_sha256(), cc->auth_key, (int)cc->auth_key_len, (const unsigned char *)sign_req,
             strlen(sign_req), mac, &mac_len) == NULL)
        goto out;
    if ((token = b64(mac, mac_len)) == NULL ||
        (request = b64((const unsigned char *)sign_req, strlen(sign_req))) == NULL)
        goto out;
    if ((obj = json_object_new_object()) == NULL || !add_str(obj, "token", token) ||
        !add_str(obj, "request", request))
        goto out;
    out = to_json(obj);
    obj = NULL;
out:
    OPENSSL_cleanse(mac, sizeof(mac));
    json_object_put(obj);
    free(token);
    free(request);
    return out;
}

/* The failure |a| describes as the sign result. */
static void set_error(struct gw_sign_result *res, const struct answer *a)
{
    gw_sign_result_fail(res, a->status != 0 ? a->status : GW_ERR_UPSTREAM, a->fail_info, "%s", a->reason);
}

/* Whether |cert| was signed by the first certificate of |chain| (a cfssl restarted with another CA). */
static int signed_by(X509 *cert, STACK_OF(X509) *chain)
{
    EVP_PKEY *pk = X509_get0_pubkey(sk_X509_value(chain, 0));

    return pk != NULL && X509_verify(cert, pk) == 1;
}

/* The issued certificate |cert| (taken over) and its chain into |res|. */
static void take_certificate(struct cfssl *c, const struct gw_upstream_conf *conf, X509 *cert,
                             STACK_OF(X509) *chain, struct gw_sign_result *res)
{
    struct answer again;

    memset(&again, 0, sizeof(again));
    if (!signed_by(cert, chain)) {
        sk_X509_pop_free(chain, X509_free);
        if ((chain = get1_chain(c, conf, 1, &again)) == NULL || !signed_by(cert, chain)) {
            if (again.status == 0)
                answer_fail(&again, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                            "cfssl %s: the certificate is not signed by cfssl's CA (info)",
                            gw_upstream_conf_name(conf));
            set_error(res, &again);
            res->cert = cert; /* cfssl issued it all the same: the engine records and revokes it */
            cert = NULL;
            goto out;
        }
    }
    res->cert = cert;
    res->chain = chain;
    cert = NULL;
    chain = NULL;
out:
    answer_cleanup(&again);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
}

/*
 * One sign call in flight without a thread (docs/design.md D24): the chain and the body are made on
 * the worker, the POST runs on the HTTP client's transfer thread, and the answer is read there. A
 * certificate that is not signed by the cached CA (cfssl restarted with another) goes on to a thread
 * of its own, which fetches the CA again the synchronous way.
 */
struct sign_call {
    struct cfssl *c;
    const struct gw_upstream_conf *conf;
    STACK_OF(X509) *chain;
    X509 *cert; /* the answer's, for the thread that checks it against a fetched chain */
    char rid[2 * GW_MAX_TID_LEN + 1];
    const char *endpoint;
    struct gw_sign_result *res; /* allocated up front: a completion cannot fail to report */
    gw_upstream_done_fn done;
    void *arg;
};

static void sign_call_end(struct sign_call *sc)
{
    struct gw_sign_result *res = sc->res;
    gw_upstream_done_fn done = sc->done;
    void *arg = sc->arg;

    if (res->status != 0)
        gw_log_kv(GW_LOG_DEBUG, "upstream_refused", "upstream", gw_upstream_conf_name(sc->conf), "request_id",
                  sc->rid, "reason", res->reason, NULL);
    sk_X509_pop_free(sc->chain, X509_free);
    X509_free(sc->cert);
    free(sc);
    done(arg, res);
}

/* The certificate |cert| (taken over) and the call's chain into its result. */
static void sign_call_take(struct sign_call *sc, X509 *cert)
{
    take_certificate(sc->c, sc->conf, cert, sc->chain, sc->res);
    sc->chain = NULL;
}

/* The thread of a certificate whose CA must be fetched again. */
static void *sign_call_recheck(void *arg)
{
    struct sign_call *sc = arg;

    sign_call_take(sc, sc->cert);
    sc->cert = NULL;
    gw_http_client_thread_done(sc->c->http); /* |done| may let the client be freed */
    sign_call_end(sc);
    return NULL;
}

/* The answer to a sign call (the transfer thread, or the caller's when it could not be submitted). */
static void sign_call_done(void *arg, int rc, const struct gw_http_response *rsp)
{
    struct sign_call *sc = arg;
    struct answer a;

    reduce(sc->conf, sc->endpoint, READ_SIGN, rc, rsp, &a);
    if (a.unread) /* the operator must look at cfssl: the client's refusal says no more than that */
        gw_log_kv(GW_LOG_ERROR, "cfssl_sign_unread", "upstream", gw_upstream_conf_name(sc->conf),
                  "request_id", sc->rid, "reason", a.reason, NULL);
    if (a.status != 0) {
        set_error(sc->res, &a);
        sc->res->cert = a.cert; /* issued all the same, if set: the engine records and revokes it */
        a.cert = NULL;
        answer_cleanup(&a);
    } else if (signed_by(a.cert, sc->chain)) {
        sign_call_take(sc, a.cert);
    } else { /* cfssl's CA is fetched again, synchronously: not on the transfer thread */
        sc->cert = a.cert;
        if (gw_upstream_detach(sign_call_recheck, sc) != 0)
            (void)sign_call_recheck(sc);
        return;
    }
    sign_call_end(sc);
}

/*
 * sign_prepare makes what a sign call sends: the chain (fetched if not yet known) and the body.
 * 0, or the refusal in |a|. Worker.
 */
static int sign_prepare(struct cfssl *c, const struct gw_upstream_conf *conf, const struct gw_sign_req *req,
                        STACK_OF(X509) **chain, char **body, struct answer *a)
{
    const struct gw_cfssl_conf *cc = conf->impl;
    char *sign_req;

    *chain = NULL;
    *body = NULL;
    memset(a, 0, sizeof(*a));
    if (req->csr == NULL || req->role == NULL) {
        /* docs/design.md D5: cfssl verifies a CSR signature; a CRMF request carries none */
        answer_fail(a, GW_ERR_INVAL, OSSL_CMP_PKIFAILUREINFO_badRequest,
                    "cfssl %s signs PKCS#10 requests only: send p10cr", gw_upstream_conf_name(conf));
        return 1;
    }
    /* the chain first: if cfssl's CA cannot be read, nothing is issued, and the client may retry */
    if ((*chain = get1_chain(c, conf, 0, a)) == NULL) {
        char why[GW_ERR_LEN];

        snprintf(why, sizeof(why), "%s", a->reason);
        answer_fail(a, a->status != 0 ? a->status : GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                    "cannot read cfssl's CA certificate (info), nothing was issued: %s", why);
        return 1;
    }
    answer_cleanup(a);
    if ((sign_req = make_sign_request(req, gw_upstream_conf_name(conf), a)) == NULL)
        return 1;
    *body = cc->auth_key != NULL ? make_authsign_request(cc, sign_req) : sign_req;
    if (*body != sign_req)
        free(sign_req);
    if (*body == NULL) {
        answer_fail(a, GW_ERR_CRYPTO, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                    "cfssl %s: cannot authenticate the request", gw_upstream_conf_name(conf));
        return 1;
    }
    return 0;
}

static int cfssl_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                      void *arg)
{
    struct cfssl *c = gw_upstream_get0_impl(up);
    struct gw_http_response rsp;
    struct sign_call *sc;
    struct answer a;
    char *body = NULL;

    if (c == NULL || req == NULL || req->plan == NULL)
        return GW_ERR_INVAL;
    if ((sc = calloc(1, sizeof(*sc))) == NULL || (sc->res = malloc(sizeof(*sc->res))) == NULL) {
        free(sc);
        return GW_ERR_NOMEM;
    }
    gw_sign_result_init(sc->res);
    sc->c = c;
    sc->conf = gw_upstream_get0_conf(up);
    sc->done = done;
    sc->arg = arg;
    sc->endpoint = ((const struct gw_cfssl_conf *)sc->conf->impl)->auth_key != NULL ? EP_AUTHSIGN : EP_SIGN;
    snprintf(sc->rid, sizeof(sc->rid), "%s", req->request_id != NULL ? req->request_id : "");
    if (sign_prepare(c, sc->conf, req, &sc->chain, &body, &a) != 0) {
        set_error(sc->res, &a);
        answer_cleanup(&a);
        sign_call_end(sc);
    } else if (gw_http_request_async(c->http, "POST", sc->endpoint, body, NULL, sign_call_done, sc) != 0) {
        int rc = gw_http_request(c->http, "POST", sc->endpoint, body, NULL, &rsp); /* here, then */

        sign_call_done(sc, rc, &rsp);
        gw_http_response_cleanup(&rsp);
    }
    free(body);
    return 0;
}

/* ---- revoke ---- */

/* {"serial": <decimal>, "authority_key_id": |aki|, "reason": |reason|}; NULL on allocation failure. */
static char *make_revoke_request(const ASN1_INTEGER *serial_int, const char *aki, const char *reason)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial_int, NULL);
    char *serial = bn != NULL ? BN_bn2dec(bn) : NULL, *out = NULL;
    json_object *obj = NULL;

    if (serial == NULL || (obj = json_object_new_object()) == NULL || !add_str(obj, "serial", serial) ||
        !add_str(obj, "authority_key_id", aki) || !add_str(obj, "reason", reason))
        goto out;
    out = to_json(obj);
    obj = NULL;
out:
    json_object_put(obj);
    OPENSSL_free(serial);
    BN_free(bn);
    return out;
}

/*
 * One revoke call with |aki|, by *end (NULL: the timeout alone); 0 or a gw_err with |err|; *not_found
 * says cfssl does not know it, *not_sent that nothing of the request left. A 4xx is cfssl refusing this
 * revocation (GW_ERR_REFUSED), but for what error_map calls an operator problem (systemUnavail): fixed, the
 * same request passes.
 */
static int revoke_once(struct cfssl *c, const struct gw_upstream_conf *conf, const ASN1_INTEGER *serial,
                       const char *aki, const char *reason, const _Atomic uint64_t *end, int *not_found,
                       int *not_sent, char *err)
{
    char *body = make_revoke_request(serial, aki, reason);
    struct answer a;
    int rc;

    *not_found = 0;
    *not_sent = 0;
    if (body == NULL) {
        snprintf(err, GW_ERR_LEN, "cfssl %s: out of memory", gw_upstream_conf_name(conf));
        return GW_ERR_NOMEM;
    }
    call_as(c, conf, "POST", EP_REVOKE, body, READ_ENVELOPE, end, &a);
    free(body);
    rc = a.status;
    *not_sent = a.not_sent;
    if (rc != 0) {
        *not_found = a.code / 1000 * 1000 == CFSSL_CERT_STORE_ERROR && strstr(a.reason, "not found") != NULL;
        snprintf(err, GW_ERR_LEN, "%s", a.reason);
        if (*not_found)
            rc = GW_ERR_NOT_FOUND;
        else if (gw_http_status_refuses(a.http) && a.fail_info != OSSL_CMP_PKIFAILUREINFO_systemUnavail)
            rc = GW_ERR_REFUSED;
    }
    answer_cleanup(&a);
    return rc;
}

/*
 * cfssl's certdb keys certificates by (serial, AKI); cfssl 1.2.0 records an empty AKI, so a "not
 * found" is retried once with "" (revocation is idempotent: a second call changes nothing). Both end
 * by *end (NULL: each by the timeout), which may be lowered meanwhile. *not_sent is the first call's: one
 * retried was answered, so a retry not sent leaves it 0, the cautious side.
 */
static int revoke_by(struct gw_upstream *up, const ASN1_INTEGER *serial, const char *aki, int reason,
                     const _Atomic uint64_t *end, int *not_sent, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    struct cfssl *c = gw_upstream_get0_impl(up);
    const char *name;
    int not_found = 0, again_not_sent, rc;

    if (c == NULL || serial == NULL || ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER) {
        snprintf(err, GW_ERR_LEN, "cfssl %s: no serial number to revoke", gw_upstream_conf_name(conf));
        return GW_ERR_INVAL;
    }
    if (reason == CRL_REASON_NONE)
        reason = CRL_REASON_UNSPECIFIED;
    if (reason < 0 || (size_t)reason >= sizeof(reason_names) / sizeof(reason_names[0]) ||
        (name = reason_names[reason]) == NULL) {
        snprintf(err, GW_ERR_LEN, "cfssl %s: CRLReason %d has no cfssl name", gw_upstream_conf_name(conf),
                 reason);
        return GW_ERR_INVAL;
    }
    rc = revoke_once(c, conf, serial, aki, name, end, &not_found, not_sent, err);
    if (rc != 0 && not_found && aki[0] != '\0')
        rc = revoke_once(c, conf, serial, "", name, end, &not_found, &again_not_sent, err);
    return rc;
}

/* Lowercase hex of a key identifier into |aki| (2 * 64 + 1), "" if it has none or an odd size. */
static void aki_hex(const ASN1_OCTET_STRING *kid, char *aki)
{
    aki[0] = '\0';
    if (kid != NULL && ASN1_STRING_length(kid) > 0 && ASN1_STRING_length(kid) <= 64)
        gw_hex(aki, ASN1_STRING_get0_data(kid), (size_t)ASN1_STRING_length(kid));
}

/* worker: the certificate's own AKID says which CA key cfssl recorded. */
static int cfssl_revoke(struct gw_upstream *up, const X509 *cert, int reason, const _Atomic uint64_t *end,
                        int *fail_info, int *not_sent, char *err)
{
    char aki[2 * 64 + 1];

    (void)fail_info; /* cfssl names no failInfo: a refusal is badRequest */
    if (cert == NULL) {
        snprintf(err, GW_ERR_LEN, "cfssl %s: no certificate to revoke",
                 gw_upstream_conf_name(gw_upstream_get0_conf(up)));
        return GW_ERR_INVAL;
    }
    aki_hex(X509_get0_authority_key_id((X509 *)cert), aki);
    return revoke_by(up, X509_get0_serialNumber(cert), aki, reason, end, not_sent, err);
}

/*
 * worker: an rr names issuer and serial only; the AKI is the SKID of the issuer_ca certificate of
 * that name (the first one when |issuer| is NULL). No such issuer: cfssl did not issue it.
 */
static int cfssl_revoke_serial(struct gw_upstream *up, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                               int reason, const _Atomic uint64_t *end, int *fail_info, int *not_sent,
                               char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    X509 *ca = NULL;
    char aki[2 * 64 + 1];

    (void)fail_info;
    for (int i = 0; ca == NULL && i < sk_X509_num(conf->issuer_certs); i++) {
        X509 *x = sk_X509_value(conf->issuer_certs, i);

        if (issuer == NULL || X509_NAME_cmp(issuer, X509_get_subject_name(x)) == 0)
            ca = x;
    }
    if (ca == NULL) {
        snprintf(err, GW_ERR_LEN, "cfssl %s did not issue it: the issuer is none of its issuer_ca",
                 gw_upstream_conf_name(conf));
        return GW_ERR_NOT_FOUND;
    }
    aki_hex(X509_get0_subject_key_id(ca), aki);
    return revoke_by(up, serial, aki, reason, end, not_sent, err);
}

/* worker: GET crl, a base64 DER CRL as the result (docs/design.md U4). */
/* POST info: cfssl answers with its CA certificate while it serves. Prober thread. */
static int cfssl_probe(struct gw_upstream *up, const _Atomic uint64_t *end, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    struct cfssl *c = gw_upstream_get0_impl(up);
    struct answer a;
    int rc;

    call_as(c, conf, "POST", EP_INFO, "{\"profile\":\"\"}", READ_INFO, end, &a);
    rc = a.status;
    if (rc != 0)
        snprintf(err, GW_ERR_LEN, "%s", a.reason);
    answer_cleanup(&a);
    return rc;
}

static int cfssl_crl(struct gw_upstream *up, const char *issuer_ref, unsigned char **der, size_t *len,
                     char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    struct cfssl *c = gw_upstream_get0_impl(up);
    struct answer a;
    int rc = 0;

    (void)issuer_ref; /* always NULL: cfssl takes no issuer_ref */
    *der = NULL;
    *len = 0;
    call_as(c, conf, "GET", EP_CRL, NULL, READ_CRL, NULL, &a);
    if (a.status != 0) {
        snprintf(err, GW_ERR_LEN, "%s", a.reason);
        rc = a.status == GW_ERR_POLICY ? GW_ERR_UPSTREAM : a.status;
    } else {
        *der = a.der;
        *len = a.der_len;
        a.der = NULL;
    }
    answer_cleanup(&a);
    return rc;
}

/* ---- configuration: the "cfssl" section ---- */

/* cfssl's authsign key: hex in a file (cfssl's "key" of an auth provider), decoded; never quoted. */
static int load_hmac_key(struct gw_conf_ctx *pc, const char *path, struct gw_cfssl_conf *u)
{
    const size_t cap = 2 * GW_MAX_HMAC_KEY_LEN;
    unsigned char *hex = NULL, *key = NULL;
    char kpath[GW_CONF_PATH_LEN], shown[GW_ERR_LEN];
    size_t len = 0, i;
    int hi, lo, rc = GW_ERR_INVAL;

    gw_conf_join_key(kpath, path, "auth_key_file");
    gw_conf_show_file(u->auth_key_file, shown, sizeof(shown));
    if (gw_conf_read_secret(pc, kpath, u->auth_key_file, cap, &hex, &len) != 0)
        return GW_ERR_INVAL;
    if (len % 2 != 0 || len / 2 < GW_MIN_HMAC_KEY_LEN || len / 2 > GW_MAX_HMAC_KEY_LEN) {
        gw_conf_fail(pc, kpath, "the key in \"%s\" must be %d..%d bytes, in hex", shown, GW_MIN_HMAC_KEY_LEN,
                     GW_MAX_HMAC_KEY_LEN);
        goto out;
    }
    if ((key = OPENSSL_zalloc(len / 2)) == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < len / 2; i++) {
        if ((hi = OPENSSL_hexchar2int(hex[2 * i])) < 0 || (lo = OPENSSL_hexchar2int(hex[2 * i + 1])) < 0) {
            gw_conf_fail(pc, kpath, "the key in \"%s\" is not hex", shown);
            goto out;
        }
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    u->auth_key = key;
    u->auth_key_len = len / 2;
    key = NULL;
    rc = 0;
out:
    OPENSSL_clear_free(key, len / 2);
    OPENSSL_clear_free(hex, cap + 3);
    return rc;
}

static int check_cfssl(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *uc)
{
    struct gw_cfssl_conf *u = uc->impl;

    return u->auth_key_file != NULL ? load_hmac_key(pc, path, u) : 0;
}

static void free_cfssl(void *impl)
{
    struct gw_cfssl_conf *cc = impl;

    free(cc->auth_key_file);
    OPENSSL_clear_free(cc->auth_key, cc->auth_key_len);
}

static const struct gw_conf_field cfssl_fields[] = {
    GW_CONF_OPT("auth_key_file", gw_conf_p_file, struct gw_cfssl_conf, auth_key_file),
};
GW_CONF_OBJDEF(cfssl_def, cfssl_fields, NULL);

const struct gw_upstream_ops gw_upstream_cfssl_ops = {
    .dialect = "cfssl",
    .caps = GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_CRL | GW_UP_REVOKE_REASON,
    .role_keys = GW_ROLE_KEY_UPSTREAM_ROLE | GW_ROLE_KEY_CRMF | GW_ROLE_KEY_DELEGATE,
    .conf_size = sizeof(struct gw_cfssl_conf),
    .conf_def = &cfssl_def,
    .http = GW_UPSTREAM_HTTP_API,
    .conf_check = check_cfssl,
    .conf_free = free_cfssl,
    .init = cfssl_init,
    .cleanup = cfssl_cleanup,
    .sign = cfssl_sign,
    .revoke = cfssl_revoke,
    .revoke_serial = cfssl_revoke_serial,
    .crl = cfssl_crl,
    .probe = cfssl_probe,
};
