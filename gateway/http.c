/*
 * The request path of the listener: checks on the loop thread, CMP on a worker, answer back on
 * the loop thread, one log line per request.
 *
 * Errors found before CMP parsing are HTTP errors with a one-line text/plain reason; everything
 * after is the engine's business (RFC 9811 §3: a CMP error message travels with HTTP 200).
 * Responses always carry Content-Length and are never chunked: `openssl cmp` speaks HTTP/1.0
 * and decodes no chunked bodies (docs/design.md C1.2).
 *
 * One GET path beside CMP: a local issuer's CRL (mappings/route.h), built on a worker (signing is
 * not loop-thread work) and sent as application/pkix-crl (RFC 5280 §4.2.1.13, RFC 2585 §4.2).
 */
#include "gateway/listener_local.h"
#include "gateway/cmp/engine.h"
#include "base/cidr.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "mappings/route.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

#define CMP_CONTENT_TYPE "application/pkixcmp"
#define CRL_CONTENT_TYPE "application/pkix-crl"

/* What the request log line needs, copied out of the request (which may die first). */
struct reqlog {
    uint64_t start_ms;
    char peer[INET6_ADDRSTRLEN + 8];
    char subject[GW_IDENTITY_LEN];
    char method[16];
    char path[GW_MAX_PATH_LEN + 1];
};

struct req_ref;

/* One request in flight: built on the loop thread, run on a worker, answered on the loop thread. */
struct http_job {
    struct gw_job job;
    h2o_multithread_message_t msg; /* link must start zeroed (docs/design.md H8.10) */
    struct gw_loop *owner;
    h2o_req_t *req; /* NULL once the request was disposed (loop thread only) */
    struct req_ref *ref;
    struct gw_gen *gen; /* held: the configuration the request began in, to its end */
    unsigned char *der; /* owned copy of the body */
    size_t len;
    struct gw_route_match match;        /* role borrowed from the config snapshot */
    X509 *peer;                         /* up-ref of the connection's verified client certificate */
    char tls_client[GW_TLS_CLIENT_LEN]; /* the connection's description of |peer| (gw_conn), or "" */
    struct sockaddr_storage addr;       /* the client's: its failed authentications are counted */
    socklen_t addr_len;
    bool counted;          /* one of its address's requests in flight (gw_guard_req_begin) until freed */
    char gone[GW_ERR_LEN]; /* a path only a retired generation serves: the 404 it gets otherwise */
    struct gw_cmp_response rsp;
    bool rsp_inited;
    struct reqlog log;
};

/* Lives in req->pool; its dispose hook tells a pending job that the request is gone (docs/design.md H6). */
struct req_ref {
    struct http_job *job;
    struct gw_conn *conn; /* whose in_flight counts the request until answered (h2o disposes of it before the
                             connection), or NULL */
};

enum extra_header {
    HDR_NONE = 0,
    HDR_ALLOW_POST,  /* 405 (RFC 9110 §15.5.6) */
    HDR_ALLOW_GET,   /* 405 on the CRL path */
    HDR_RETRY_AFTER, /* 503 busy (RFC 9110 §10.2.3) */
    HDR_CLOSE,       /* 503 shutting down, 403 client certificate no longer trusted */
};

struct refusal {
    int status;
    enum extra_header hdr;
    uint32_t retry_after; /* HDR_RETRY_AFTER: seconds; 0 = GW_RETRY_AFTER_SECS */
    char reason[GW_ERR_LEN];
};

static const struct {
    int status;
    const char *phrase;
} phrases[] = {
    {200, "OK"},
    {400, "Bad Request"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {413, "Payload Too Large"},
    {415, "Unsupported Media Type"},
    {429, "Too Many Requests"},
    {500, "Internal Server Error"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

static const char *phrase_of(int status)
{
    for (size_t i = 0; i < sizeof(phrases) / sizeof(phrases[0]); i++)
        if (phrases[i].status == status)
            return phrases[i].phrase;
    return status < 500 ? "Client Error" : "Server Error";
}

/* Always returns -1, so a check can `return refuse(...)`. */
__attribute__((format(printf, 4, 5))) static int refuse(struct refusal *r, int status, enum extra_header hdr,
                                                        const char *fmt, ...)
{
    va_list ap;

    r->status = status;
    r->hdr = hdr;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    return -1;
}

/*
 * loop thread: |line| + "\n" as text/plain with Content-Length, written by the shared escaper
 * (gw_text_escape): what it quotes of the client's (a Content-Type, a path) or a CA's reads as it is,
 * or as U+FFFD where a reader would not see it as itself, never as a control or a second line.
 */
static void send_text(h2o_req_t *req, int status, enum extra_header hdr, uint32_t retry_after,
                      const char *line)
{
    size_t cap = 6 * strlen(line) + 2; /* the escaper's worst case, and the newline */
    char *body = h2o_mem_alloc_pool(&req->pool, cap);
    size_t len = gw_text_escape(body, cap - 1, line, strlen(line));

    body[len] = '\n';
    req->res.status = status;
    req->res.reason = phrase_of(status);
    req->res.content_length = len + 1;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; charset=utf-8"));
    if (hdr == HDR_ALLOW_POST)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
    if (hdr == HDR_ALLOW_GET)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
    if (hdr == HDR_RETRY_AFTER) {
        char *secs = h2o_mem_alloc_pool(&req->pool, 12);
        int n = snprintf(secs, 12, "%u", retry_after != 0 ? retry_after : (uint32_t)GW_RETRY_AFTER_SECS);

        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, secs, (size_t)n);
    }
    /* HTTP/1 answers "Connection: close"; HTTP/2 got GOAWAY if the gateway stops, and otherwise keeps
       the connection, but for gw_conn_recheck's refusal (gw_conn_end_after) */
    if (hdr == HDR_CLOSE)
        req->http1_is_persistent = 0;
    h2o_send_inline(req, body, len + 1);
}

/* loop thread: a PKIMessage (or a CRL: |crl|), never chunked. */
static void send_der(h2o_req_t *req, const unsigned char *der, size_t len, bool crl)
{
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = len; /* h2o_send_inline leaves it unset (docs/design.md H5) */
    if (crl)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT(CRL_CONTENT_TYPE));
    else
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT(CMP_CONTENT_TYPE));
    h2o_send_inline(req, (const char *)der, len);
}

static void peer_string(h2o_req_t *req, char *out, size_t cap)
{
    struct sockaddr_storage ss;

    out[0] = '\0';
    if (req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) != 0)
        gw_sockaddr_string((struct sockaddr *)&ss, out, cap);
}

static size_t path_len(const h2o_req_t *req)
{
    return req->query_at != SIZE_MAX ? req->query_at : req->path.len;
}

static void copy_bounded(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    if (len != 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

static void reqlog_init(struct reqlog *l, h2o_req_t *req)
{
    struct gw_conn *c = gw_conn_get0(req);

    l->start_ms = gw_now_ms();
    peer_string(req, l->peer, sizeof(l->peer));
    copy_bounded(l->subject, sizeof(l->subject), c != NULL ? c->subject : "",
                 c != NULL ? strlen(c->subject) : 0);
    copy_bounded(l->method, sizeof(l->method), req->method.base, req->method.len);
    copy_bounded(l->path, sizeof(l->path), req->path.base, path_len(req));
}

/* ---- metrics (base/metrics.h) ---- */

static struct gw_metric *m_requests, *m_duration;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
    static const char *const req_labels[] = {"route", "role", "body", "status", "outcome", "fail_info", NULL};
    static const char *const dur_labels[] = {"role", NULL};
    static const double secs[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

    m_requests =
        gw_metric_new("cmpgw_requests_total",
                      "Requests on the CMP listeners by route kind, role, CMP body type, HTTP status, "
                      "outcome and failInfo.",
                      GW_METRIC_COUNTER, req_labels, NULL, 0);
    m_duration = gw_metric_new("cmpgw_request_duration_seconds",
                               "Time from a request's arrival to its response, by the role its path chose.",
                               GW_METRIC_HISTOGRAM, dur_labels, secs, sizeof(secs) / sizeof(secs[0]));
}

static const char *route_kind(const struct gw_route_match *m)
{
    static const char *const kinds[] = {
        [GW_ROUTE_DEFAULT] = "default", [GW_ROUTE_ROLE] = "role", [GW_ROUTE_WELLKNOWN] = "wellknown",
        [GW_ROUTE_LABEL] = "label",     [GW_ROUTE_CRL] = "crl",
    };

    if (m == NULL || (m->role == NULL && m->kind != GW_ROUTE_CRL) ||
        (size_t)m->kind >= sizeof(kinds) / sizeof(kinds[0]))
        return "none";
    return kinds[m->kind];
}

/* The kinds of outcome the engine writes (gateway/cmp/), as label values; a kind is followed by the
 * end, ": " or " (" in the outcome text. */
static const char *const outcome_kinds[] = {
    "accepted",
    "grantedWithMods",
    "rejection",
    "error",
    "waiting",
    "confirmed",
    "answered",
    "cert_rejected_by_client",
    "closed without certificate status",
    "crl failed",
    "crl",
    "http",
};

/*
 * The engine's outcome ("rejection: badTime: <text>", "accepted", "crl (812 bytes)", ...) as two
 * bounded labels: its kind if it is one the engine writes, else "other", and for a rejection or an
 * error the failInfo name. The rest is free text (parts of it from the client or the CA): never a
 * label.
 */
static void outcome_labels(const char *outcome, const char **kind, char *fail, size_t cap)
{
    size_t n = 0;

    *kind = "other";
    fail[0] = '\0';
    for (size_t i = 0; i < sizeof(outcome_kinds) / sizeof(outcome_kinds[0]); i++) {
        size_t len = strlen(outcome_kinds[i]);
        if (strncmp(outcome, outcome_kinds[i], len) == 0 &&
            (outcome[len] == '\0' || outcome[len] == ':' || outcome[len] == ' ')) {
            *kind = outcome_kinds[i]; /* the first that fits: "crl failed" comes before "crl" */
            n = len;
            break;
        }
    }
    if ((strcmp(*kind, "rejection") == 0 || strcmp(*kind, "error") == 0) && outcome[n] == ':' &&
        outcome[n + 1] == ' ') {
        const char *f = outcome + n + 2;
        size_t m = strspn(f, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
        snprintf(fail, cap, "%.*s", (int)(m < cap ? m : cap - 1), f);
    }
}

/*
 * Counts one answered request; |rsp| NULL: refused before the engine saw it. |gone|: the answer was
 * never sent (log_unsent); one that carried a certificate is "undelivered", whatever the engine made
 * of it, for the certificate is withdrawn.
 */
static void count_request(const struct reqlog *l, const struct gw_route_match *m, int status,
                          const struct gw_cmp_response *rsp, bool gone)
{
    char st[12], fail[32] = "";
    const char *kind = "refused", *role = m != NULL && m->role != NULL ? m->role->name : "";

    pthread_once(&m_once, metrics_init);
    snprintf(st, sizeof(st), "%d", status);
    if (gone && rsp != NULL && rsp->carried != NULL)
        kind = "undelivered";
    else if (rsp != NULL && rsp->outcome[0] != '\0')
        outcome_labels(rsp->outcome, &kind, fail, sizeof(fail));
    gw_metric_add(
        m_requests,
        (const char *const[]){route_kind(m), role, rsp != NULL ? rsp->req_type : "", st, kind, fail}, 1);
    gw_metric_observe(m_duration, (const char *const[]){role}, (double)(gw_now_ms() - l->start_ms) / 1000.0);
}

/* Whether a request's answer is a plain success: HTTP 200, sent, its outcome one that says nothing else. */
static bool plain_success(int status, const struct gw_cmp_response *rsp, bool gone)
{
    static const char *const plain[] = {"accepted", "confirmed", "answered", "waiting"};

    if (status != 200 || rsp == NULL || gone)
        return false;
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        if (strcmp(rsp->outcome, plain[i]) == 0)
            return true;
    return false;
}

/*
 * Whether the line of a request is written: 1 in "log_sample_success" of the plain successes
 * (accepted, confirmed, answered, waiting: nothing else to say), every other one (refusals, errors,
 * a client that rejected its certificate or went away), so that a busy gateway's log keeps what
 * needs looking at; those of a peer not authenticated, and those of an authenticated one but its plain
 * successes, paced (log_request). The audit log is never sampled.
 */
static bool log_sampled(const struct gw_config *cfg, int status, const struct gw_cmp_response *rsp, bool gone)
{
    static atomic_ulong successes;

    return cfg->log_sample_success <= 1 || !plain_success(status, rsp, gone) ||
           atomic_fetch_add(&successes, 1) % cfg->log_sample_success == 0;
}

/*
 * A peer that holds no credential can send requests as fast as it likes, each refused and each a line:
 * a wrong path, method or Content-Type, a body that is no PKIMessage, a CMP message unprotected or
 * whose protection does not verify, the 429 of an address over its failed-auth budget (its message
 * never looked at: what an attacker that used the budget up gets from then on), or a CRL fetched
 * again and again. So the lines of a request whose peer is not authenticated are paced as the other
 * events such a peer causes (gw_log_pace_due), the lines held back counted in the next one's
 * "suppressed"; the metrics count every request. Authenticated is a TLS client certificate that
 * verified, and is still accepted (gw_conn_recheck drops one a reload no longer trusts, or that
 * expired: the 403 that refuses it is the line of a peer without one), or the message's protection
 * verified (gw_cmp_response.authenticated): such a line names who sent it.
 *
 * An authenticated client can send as fast: with a trusted TLS certificate, HTTP/1.1 requests pipelined
 * to an unknown path, each a 404 and a line some 12 times as long as a short request; with a trusted CMP
 * signing certificate or PBM secret alone, requests refused after their protection verified, and so can
 * anyone who captured one of its messages, each replay refused as one and each a line. Paced with the
 * others as one event, its flood would hold back their lines, which name who they are; so its lines are
 * paced per client (gw_log_peer_pace_due), by the credential that authenticated it (request_client),
 * "suppressed" counting its own lines held back. Its plain successes are not paced: each is work the
 * gateway did for a client it knows (an issuance is in the audit log besides), which log_sample_success
 * thins where that is too much. The count of a client whose place in the table went to another is said
 * then, in a request_lines_held line that names it: under another's line it would read as that one's.
 */
static struct gw_log_pace unauthenticated_pace = GW_LOG_PACE_INIT;
static struct gw_log_peer_pace client_pace = GW_LOG_PEER_PACE_INIT;

/*
 * The name the lines of an authenticated peer are paced under (log_request): the TLS client certificate
 * |tls_client| (gw_conn's tls_client) when it has one, else the credential of its message's protection
 * (gw_cmp_response.credential) when that verified; NULL for a peer not authenticated. One that could
 * not be told is GW_CMP_TLS_CLIENT_UNKNOWN, the same for all such.
 */
static const char *request_client(const X509 *peer, const char *tls_client, const struct gw_cmp_response *rsp)
{
    const char *name = peer != NULL ? tls_client : rsp != NULL && rsp->authenticated ? rsp->credential : NULL;

    return name == NULL || name[0] != '\0' ? name : GW_CMP_TLS_CLIENT_UNKNOWN;
}

/* One JSON line per request, and its count: never a body, secret or key. |rsp| is NULL for early
 * refusals. |gone|: the answer never left, its client gone or the gateway stopped (log_unsent).
 * |client|: the name its authenticated peer is paced under (request_client), or NULL; the line names
 * it ("client", "" for none), so that it joins the request_lines_held lines of that client. */
static void log_request(const struct gw_config *cfg, const struct reqlog *l, const struct gw_route_match *m,
                        int status, const struct gw_cmp_response *rsp, const char *outcome, bool gone,
                        const char *client)
{
    char st[12], dur[24], held[GW_LOG_HELD_LEN] = "";
    struct gw_log_peer_held other = {.name = ""};
    bool paced = client == NULL || !plain_success(status, rsp, gone), due = true;

    count_request(l, m, status, rsp, gone);
    if (!log_sampled(cfg, status, rsp, gone))
        return;
    if (client == NULL && !gw_log_pace_due(&unauthenticated_pace, time(NULL), held))
        return;
    if (client != NULL && paced)
        due = gw_log_peer_pace_due(&client_pace, client, time(NULL), held, &other);
    if (other.name[0] != '\0')
        gw_log_kv(GW_LOG_INFO, "request_lines_held", "client", other.name, "suppressed", other.held, NULL);
    if (!due)
        return;
    snprintf(st, sizeof(st), "%d", status);
    snprintf(dur, sizeof(dur), "%" PRIu64, gw_now_ms() - l->start_ms);
    /* a line not paced ends before "suppressed" */
    gw_log_kv(GW_LOG_INFO, "request", "peer", l->peer, "tls_subject", l->subject, "method", l->method, "path",
              l->path, "status", st, "req_type", rsp != NULL ? rsp->req_type : "", "rsp_type",
              rsp != NULL ? rsp->rsp_type : "", "tid", rsp != NULL ? rsp->tid : "", "identity",
              rsp != NULL ? rsp->identity : "", "outcome", outcome, "serial", rsp != NULL ? rsp->serial : "",
              "client", client != NULL ? client : "", "duration_ms", dur,
              paced ? "suppressed" : (const char *)NULL, held, (const char *)NULL);
}

/* Content-Type must be exactly application/pkixcmp, once, no parameters (RFC 9811 §3.4). */
static int check_content_type(const h2o_req_t *req, struct refusal *r)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    const h2o_iovec_t *v;

    if (i == -1)
        return refuse(r, 415, HDR_NONE, "missing Content-Type: expected " CMP_CONTENT_TYPE);
    if (h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, i) != -1)
        return refuse(r, 415, HDR_NONE, "more than one Content-Type: expected one " CMP_CONTENT_TYPE);
    v = &req->headers.entries[i].value;
    if (!h2o_lcstris(v->base, v->len, H2O_STRLIT(CMP_CONTENT_TYPE)))
        return refuse(r, 415, HDR_NONE, "unsupported Content-Type \"%.*s\": expected " CMP_CONTENT_TYPE,
                      (int)(v->len > 64 ? 64 : v->len), v->base);
    return 0;
}

/*
 * Whether a request must be refused because the gateway stops. Handing over to a successor that
 * serves the same sockets, it is answered instead, and its connection closed after the answer: the
 * client's next request opens a connection the successor accepts.
 */
static bool draining(struct gw_server *s, h2o_req_t *req)
{
    if (!atomic_load(&s->stopping))
        return false;
    if (!atomic_load(&s->successor))
        return true;
    req->http1_is_persistent = 0;
    return false;
}

/* The checks of check_request once the path chose |match|. 0, or -1 with |r| filled. */
static int check_method(struct gw_server *s, h2o_req_t *req, const struct gw_route_match *match,
                        struct refusal *r)
{
    if (gw_route_is_get(match)) {
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")))
            return refuse(r, 405, HDR_ALLOW_GET, "method %.*s not allowed: a CRL is fetched with GET",
                          (int)(req->method.len > 16 ? 16 : req->method.len), req->method.base);
        if (draining(s, req))
            return refuse(r, 503, HDR_CLOSE, "shutting down");
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")))
        return refuse(r, 405, HDR_ALLOW_POST, "method %.*s not allowed: CMP requests use POST",
                      (int)(req->method.len > 16 ? 16 : req->method.len), req->method.base);
    if (check_content_type(req, r) != 0)
        return -1;
    if (req->entity.base == NULL || req->entity.len == 0)
        return refuse(r, 400, HDR_NONE, "empty body: expected a DER-encoded PKIMessage");
    if (req->entity.len > GW_MAX_CMP_BODY) /* libh2o refuses it first (max_request_entity_size) */
        return refuse(r, 413, HDR_NONE, "%s", GW_CMP_TEXT_TOO_LARGE);
    if (draining(s, req))
        return refuse(r, 503, HDR_CLOSE, "shutting down");
    return 0;
}

/* loop thread: every check before CMP, in the documented order. 0, or -1 with |r| filled. */
static int check_request(struct gw_loop *lt, h2o_req_t *req, struct gw_route_match *match, struct refusal *r)
{
    struct gw_conn *c = gw_conn_get0(req);
    int rc;

    r->reason[0] = '\0';
    if (c != NULL && (rc = gw_conn_recheck(c)) != 0) {
        gw_conn_end_after(req, c); /* an HTTP/2 stream after it would get the same refusal, for nothing */
        return refuse(r, 403, HDR_CLOSE, "%s",
                      rc == GW_ERR_NOT_FOUND
                          ? "this listener was removed by a configuration reload"
                          : "TLS client certificate no longer accepted (expired, or not trusted since "
                            "the configuration was reloaded): reconnect with one this listener accepts");
    }
    rc = gw_route_match(&lt->gen->cfg->routes, req->path.base, path_len(req), match, r->reason);
    if (rc != 0) {
        r->status = rc == GW_ERR_FORBIDDEN ? 403 : rc == GW_ERR_NOT_FOUND ? 404 : 400;
        if (r->reason[0] == '\0')
            snprintf(r->reason, sizeof(r->reason), "path refused: %s", gw_err_str(rc));
        return -1;
    }
    return check_method(lt->server, req, match, r);
}

/* An address that failed to authenticate too often waits out its window: HTTP 429 before any work. */
static int check_budget(struct gw_server *s, h2o_req_t *req, const struct gw_route_match *match,
                        struct refusal *r)
{
    struct gw_conn *c = gw_conn_get0(req);
    uint32_t wait = 0;

    if (gw_route_is_get(match) || c == NULL ||
        gw_guard_auth_check(s->guard, (struct sockaddr *)&c->addr, c->addr_len, time(NULL), &wait) == 0)
        return 0;
    r->retry_after = wait > 0 ? wait : 1;
    return refuse(r, 429, HDR_RETRY_AFTER,
                  "too many failed authentications from this address: retry after %u seconds",
                  r->retry_after);
}

static void job_free(struct http_job *job)
{
    if (job == NULL)
        return;
    if (job->counted)
        gw_guard_req_end(job->owner->server->guard, (struct sockaddr *)&job->addr, job->addr_len);
    if (job->rsp_inited)
        gw_cmp_response_cleanup(&job->rsp);
    X509_free(job->peer);
    free(job->der);
    gw_gen_drop(job->gen);
    free(job);
}

/* The request of |job| as the engine sees it: the job's owned copies, never h2o objects. */
static struct gw_cmp_request cmp_request_of(const struct http_job *job)
{
    return (struct gw_cmp_request){
        .der = job->der,
        .len = job->len,
        .route = &job->match,
        .tls_peer = job->peer,
        .tls_client = job->peer != NULL && job->tls_client[0] != '\0' ? job->tls_client : NULL,
        .path = job->log.path,
        .may_suspend = true,
        .gone = job->gone[0] != '\0' ? job->gone : NULL};
}

/* worker: the second pass of a suspended request, once its upstream call completed. */
static void job_resume(struct gw_job *j)
{
    struct http_job *job = H2O_STRUCT_FROM_MEMBER(struct http_job, job, j);
    struct gw_cmp_request creq = cmp_request_of(job);

    gw_cmp_process(job->gen->engine, &creq, &job->rsp);
    gw_loop_post(job->owner, &job->owner->done_rx, &job->msg);
}

/* worker: its answer never left (the client went away first): the engine withdraws the certificate */
static void job_undelivered(struct gw_job *j)
{
    struct http_job *job = H2O_STRUCT_FROM_MEMBER(struct http_job, job, j);

    gw_cmp_undelivered(&job->rsp, GW_CMP_LOST_CLIENT_GONE);
    gw_loop_post(job->owner, &job->owner->done_rx, &job->msg);
}

/* The upstream call of a suspended job completed (any thread): back to a worker, first in line. */
static void job_wake(void *arg)
{
    struct http_job *job = arg;

    job->job.run = job_resume;
    gw_pool_resume(job->owner->server->pool, &job->job);
}

/* worker: sees only the job's owned copies, never h2o objects (docs/design.md H8.7). */
static void job_run(struct gw_job *j)
{
    struct http_job *job = H2O_STRUCT_FROM_MEMBER(struct http_job, job, j);
    struct gw_cmp_request creq = cmp_request_of(job);

    gw_cmp_response_init(&job->rsp);
    job->rsp_inited = true;
    /* h2o has no handler deadline (docs/design.md H8.9): a request that queued too long is refused */
    if (gw_now_ms() - j->enqueued_ms > GW_QUEUE_WAIT_MS) {
        job->rsp.http_status = 503;
        snprintf(job->rsp.http_reason, sizeof(job->rsp.http_reason), "server busy: retry later");
        snprintf(job->rsp.outcome, sizeof(job->rsp.outcome), "queue wait over %d ms", GW_QUEUE_WAIT_MS);
    } else if (gw_route_is_get(&job->match)) {
        gw_cmp_engine_crl(job->gen->engine, job->match.upstream, &job->rsp);
    } else {
        gw_cmp_process(job->gen->engine, &creq, &job->rsp);
        if (job->rsp.suspended != NULL) {              /* the upstream answers later; this worker is free */
            gw_pool_suspend(job->owner->server->pool); /* gw_pool_free waits for it to come back */
            gw_cmp_suspended_arm(job->rsp.suspended, job_wake, job);
            return;
        }
    }
    gw_loop_post(job->owner, &job->owner->done_rx, &job->msg);
}

static void on_req_disposed(void *p)
{
    struct req_ref *ref = p;

    if (ref->job != NULL)
        ref->job->req = NULL;
    if (ref->conn != NULL)
        ref->conn->in_flight--;
}

/*
 * loop thread: copy what the worker needs and queue it. 0, or -1 with |r| filled. An address holds
 * at most limits.max_requests_in_flight_per_address requests from here to their answer, across its
 * connections and HTTP/2 streams: past it, HTTP 429 before anything is copied.
 */
static int submit(struct gw_loop *lt, struct gw_gen *gen, h2o_req_t *req, const struct gw_route_match *match,
                  const struct reqlog *log, const char *gone, struct refusal *r)
{
    struct http_job *job;
    struct gw_conn *c = gw_conn_get0(req);
    struct gw_guard *guard = lt->server->guard;
    int rc = c != NULL ? gw_guard_req_begin(guard, (struct sockaddr *)&c->addr, c->addr_len) : 0;

    if (rc == GW_ERR_LIMIT) /* as many in flight as the workers, their queue and the upstreams hold */
        return refuse(r, 503, HDR_RETRY_AFTER, "server busy: retry later");
    if (rc != 0)
        return refuse(r, 429, HDR_RETRY_AFTER,
                      "too many requests in flight from this address: retry once one is answered");
    if ((job = calloc(1, sizeof(*job))) == NULL ||
        (!gw_route_is_get(match) && (job->der = malloc(req->entity.len)) == NULL)) {
        if (c != NULL)
            gw_guard_req_end(guard, (struct sockaddr *)&c->addr, c->addr_len);
        job_free(job);
        return refuse(r, 500, HDR_NONE, "out of memory");
    }
    job->owner = lt;
    job->counted = c != NULL;
    if (job->der != NULL) {
        memcpy(job->der, req->entity.base, req->entity.len);
        job->len = req->entity.len;
    }
    job->job.run = job_run;
    job->gen = gen;
    gw_gen_hold(job->gen);
    if (gone != NULL)
        snprintf(job->gone, sizeof(job->gone), "%s", gone);
    job->match = *match;
    job->log = *log;
    if (c != NULL && c->peer != NULL && X509_up_ref(c->peer) == 1) {
        job->peer = c->peer;
        memcpy(job->tls_client, c->tls_client, sizeof(job->tls_client));
    }
    if (c != NULL) {
        job->addr = c->addr;
        job->addr_len = c->addr_len;
    }
    job->req = req;
    job->ref = h2o_mem_alloc_shared(&req->pool, sizeof(*job->ref), on_req_disposed);
    job->ref->job = job;
    job->ref->conn = NULL;
    if (gw_pool_submit(lt->server->pool, &job->job) != 0) {
        job->ref->job = NULL;
        job_free(job);
        return refuse(r, 503, HDR_RETRY_AFTER, "server busy: retry later");
    }
    lt->jobs_inflight++;
    if (c != NULL) { /* not one to make room with (gw_conn_attach) until h2o is done with it */
        c->in_flight++;
        job->ref->conn = c;
    }
    return 0;
}

/*
 * loop thread: a path the running configuration answers 404 (|r|) that a retired one still draining
 * serves: its engine answers the messages of the transactions begun there (gw_cmp_request.gone).
 * Refused on the way, or by that engine, it is what the 404 is: the path tells no one it was there.
 * Only such a path costs more than the 404.
 */
static int submit_retired(struct gw_loop *lt, h2o_req_t *req, const struct reqlog *log,
                          const struct refusal *r)
{
    struct gw_route_match match = {.role = NULL};
    struct refusal ignored = {0};
    struct gw_gen *g;
    int rc = -1;

    if (r->status != 404 ||
        (g = gw_gens_acquire_retired(lt->server->gens, req->path.base, path_len(req), &match)) == NULL)
        return -1;
    if (check_method(lt->server, req, &match, &ignored) == 0 &&
        check_budget(lt->server, req, &match, &ignored) == 0)
        rc = submit(lt, g, req, &match, log, r->reason, &ignored);
    gw_gen_drop(g); /* the job holds it */
    return rc;
}

/*
 * loop thread: whether |req| came over an HTTP/1 connection the sweep ended (sweep.c), and is answered
 * for libh2o to close it. libh2o 2.2.5 ignores an answer's failed write and takes the next request the
 * client pipelined: every one it had read was served, upstream calls and all, for nobody, and the
 * connection kept its place until they ran out. HTTP/2 closes the connection on a failed write.
 */
static bool ended_http1(h2o_req_t *req)
{
    const struct gw_conn *c = gw_conn_get0(req);

    if (c == NULL || !c->ended || req->version >= 0x200)
        return false;
    req->http1_is_persistent = 0;
    send_text(req, 503, HDR_CLOSE, 0, "connection closed"); /* its write fails: nobody reads it */
    return true;
}

/* loop thread */
int gw_http_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct gw_loop *lt = gw_loop_of(req);
    struct gw_route_match match = {.role = NULL};
    struct refusal r = {0};
    struct reqlog log;
    int rc;

    (void)self;
    gw_conn_mark_requested(req);
    gw_loop_refresh(lt);
    if (ended_http1(req))
        return 0;
    reqlog_init(&log, req);
    if (check_request(lt, req, &match, &r) != 0)
        rc = submit_retired(lt, req, &log, &r);
    else
        rc = check_budget(lt->server, req, &match, &r) != 0
                 ? -1
                 : submit(lt, lt->gen, req, &match, &log, NULL, &r);
    if (rc != 0) {
        const struct gw_conn *c = gw_conn_get0(req); /* its certificate as the checks left it */

        /* logged and counted before the answer leaves: a client that reads the metrics next sees it */
        log_request(lt->gen->cfg, &log, &match, r.status, NULL, r.reason, false,
                    c != NULL ? request_client(c->peer, c->tls_client, NULL) : NULL);
        send_text(req, r.status, r.hdr, r.retry_after, r.reason);
    }
    return 0;
}

/* The engine's status, made safe to send: 200 with a body, or an error status with a reason. */
static int final_status(const struct gw_cmp_response *rsp, const char **reason)
{
    *reason = rsp->http_reason;
    if (rsp->http_status == 200 && rsp->der != NULL && rsp->len != 0)
        return 200;
    if (rsp->http_status >= 400 && rsp->http_status <= 599)
        return rsp->http_status;
    *reason = "internal error: no CMP response";
    return 500;
}

/*
 * loop thread: a job whose client went away before its answer was written, and whose answer carried a
 * certificate: back to a worker, first in line (it was admitted once), for the engine to withdraw it.
 * Only an answer never handed to h2o is so: one written may have reached the client.
 */
static void undelivered(struct http_job *job)
{
    struct gw_pool *pool = job->owner->server->pool;

    job->job.run = job_undelivered;
    gw_pool_suspend(pool);
    gw_pool_resume(pool, &job->job);
}

/* The request line of |job|, whose answer never left because |who| (before the response). */
static void log_unsent(struct http_job *job, const char *who)
{
    const struct gw_cmp_response *rsp = &job->rsp;
    const char *reason;
    int status = final_status(rsp, &reason);
    char line[GW_ERR_LEN + 72]; /* room for the prefix and suffix: truncation only shortens a log value */

    /* "accepted" alone would read as a certificate delivered: one carried is withdrawn instead */
    snprintf(line, sizeof(line), "%s before the response; %s%s", who,
             rsp->outcome[0] != '\0' ? rsp->outcome : reason,
             rsp->carried != NULL ? "; its certificate is withdrawn" : "");
    log_request(job->gen->cfg, &job->log, &job->match, status, rsp, line, true,
                request_client(job->peer, job->tls_client, rsp));
}

/* loop thread: answer one finished job, or only log it when the client went away. 1: the job went back
 * to a worker (undelivered), and comes back to be freed. */
static int respond(struct http_job *job)
{
    const struct gw_cmp_response *rsp = &job->rsp;
    const char *reason;
    int status = final_status(rsp, &reason);
    struct gw_conn *c;

    /* counted also when the client went away: resetting the stream must not escape the budget */
    if (rsp->auth_failed)
        gw_server_auth_failed(job->owner->server, (struct sockaddr *)&job->addr, job->addr_len,
                              rsp->outcome[0] != '\0' ? rsp->outcome : rsp->http_reason);
    if (job->req == NULL) {
        log_unsent(job, "client gone");
        if (rsp->carried == NULL)
            return 0;
        undelivered(job);
        return 1;
    }
    job->ref->job = NULL;
    if ((c = gw_conn_get0(job->req)) != NULL) {
        /* a proven client's, for GW_PROVEN_HOLD_MS: not one to make room with (gw_conn_attach). An answer
           that is not proven (a revoked certificate's, a replay's) ends its certificate's grace */
        if (rsp->proven)
            c->proven_at = gw_now_ms();
        c->grace_until = 0;
    }
    /* answered: it no longer protects its connection. An answer its client never takes (an HTTP/2 window
       kept shut, a CRL read slowly) is not disposed of, and would protect it as long as the client liked */
    if (job->ref->conn != NULL) {
        job->ref->conn->in_flight--;
        job->ref->conn = NULL; /* on_req_disposed does not count it again */
    }
    log_request(job->gen->cfg, &job->log, &job->match, status, rsp,
                rsp->outcome[0] != '\0' ? rsp->outcome : reason, false,
                request_client(job->peer, job->tls_client, rsp)); /* before it leaves, as above */
    if (status == 200)
        send_der(job->req, rsp->der, rsp->len, gw_route_is_get(&job->match));
    else
        send_text(job->req, status, status == 503 ? HDR_RETRY_AFTER : HDR_NONE, 0, reason);
    return 0;
}

/* loop thread: must consume every message (docs/design.md H8.10); a NULL message only woke the loop.
 */
void gw_http_on_done(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    (void)rx;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        struct http_job *job = H2O_STRUCT_FROM_MEMBER(struct http_job, msg, m);
        h2o_linklist_unlink(&m->link);
        /* back from job_undelivered: logged already, nothing to answer */
        if (job->job.run != job_undelivered && respond(job) != 0)
            continue;
        job->owner->jobs_inflight--;
        job_free(job);
    }
}

/*
 * main thread, the workers gone: the answers that came back after |rx|'s loop gave up its drain
 * (gw_server_stop), which nobody will send. A certificate one carried is withdrawn before the
 * process ends. h2o has no call that hands over a receiver's pending messages; no thread touches
 * them any more.
 */
void gw_http_abandon(h2o_multithread_receiver_t *rx)
{
    while (!h2o_linklist_is_empty(&rx->_messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, rx->_messages.next);
        struct http_job *job = H2O_STRUCT_FROM_MEMBER(struct http_job, msg, m);

        h2o_linklist_unlink(&m->link);
        if (job->job.run != job_undelivered) /* one back from there was logged and withdrawn already */
            log_unsent(job, "gateway stopped");
        gw_cmp_undelivered(&job->rsp, GW_CMP_LOST_STOPPED);
        job_free(job);
    }
}
