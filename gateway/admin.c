/*
 * The admin listener ("admin" in the configuration): what an operator's tooling asks of a running
 * gateway, never CMP. It runs on the loop threads and answers at once, without the worker pool, so
 * that a saturated gateway still says how it is.
 *
 *   GET /healthz   200 "ok": the process serves requests
 *   GET /readyz    200 or 503, with a JSON detail: the configuration is loaded, the audit log takes
 *                  records, the shared state (if any) answers, the signer's key made its last
 *                  signature (gateway/cmp/signer.h), the listeners are up, the gateway is
 *                  not draining, and the upstreams in "ready_requires" answer their probes (every
 *                  upstream's last probe is in the detail)
 *   GET /metrics   Prometheus text format 0.0.4 (base/metrics.h)
 *   POST /reload   loads the configuration file again, like SIGHUP; answers once it is in use (200)
 *                  or refused (500, with the error; the running configuration stays)
 *
 * What only reads (/healthz, /readyz, /metrics) is open to whoever reaches the listener, as a
 * Prometheus scraper or a balancer's probe expects. What changes the gateway (POST /reload: it reads
 * every file and key again) needs "Authorization: Bearer <token>" with the token of
 * "admin.token_file" (its value wiped once compared, and one any other request sends, at once; the
 * listener speaks HTTP/1 only): wrong or missing is 401, counted and logged without the token; without a
 * token_file it is 403, and SIGHUP stays the way to reload. One reload runs at a time: another POST /reload
 * meanwhile is 409.
 */
#include "gateway/listener_local.h"
#include "base/cidr.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/names.h"
#include "gateway/cmp/engine.h"
#include "upstream/upstream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

static void send_body(h2o_req_t *req, int status, const char *reason, const char *type, const char *body,
                      size_t len)
{
    char *copy = h2o_mem_alloc_pool(&req->pool, len);

    memcpy(copy, body, len);
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len; /* h2o_send_inline leaves it unset (docs/design.md H5) */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, copy, len);
}

static void send_text(h2o_req_t *req, int status, const char *reason, const char *text)
{
    send_body(req, status, reason, "text/plain; charset=utf-8", text, strlen(text));
}

/*
 * A reason of the detail as a JSON string. It may quote a CA's words (a cfssl probe's error message),
 * and json-c escapes only ASCII controls: what a reader would not see as itself, and bytes that are
 * not UTF-8, become U+FFFD first (gw_utf8_repair), as in every other text the gateway shows.
 */
static struct json_object *reason_string(const char *s)
{
    char buf[3 * (GW_ERR_LEN + 64) + 1];

    gw_utf8_repair(buf, sizeof(buf), s);
    return json_object_new_string(buf);
}

/* One check of readiness into |checks|: "ok", or why not. Returns whether it passed. */
static bool check(struct json_object *checks, const char *name, bool ok, const char *why)
{
    json_object_object_add(checks, name, ok ? json_object_new_string("ok") : reason_string(why));
    return ok;
}

/*
 * Every upstream's last probe in the detail ("upstreams"); only those in "ready_requires" can make
 * the gateway not ready: one CA down must not take every instance out of a balancer.
 */
static bool upstreams(struct json_object *checks, struct json_object *root, const struct gw_gen *g)
{
    struct json_object *all = json_object_new_object();
    bool ready = all != NULL; /* not knowing is not ready */
    char why[GW_ERR_LEN + 64];

    for (size_t i = 0; all != NULL && i < g->cfg->n_upstreams; i++) {
        const char *name = g->cfg->upstreams[i].name;
        struct gw_upstream *up = gw_upstream_set_get0(g->ups, name);
        struct json_object *o = json_object_new_object();
        struct gw_upstream_health h;

        if (up == NULL || o == NULL) {
            json_object_put(o);
            ready = false;
            continue;
        }
        gw_upstream_health(up, &h);
        json_object_object_add(o, "up", json_object_new_boolean(h.up));
        json_object_object_add(o, "probed", json_object_new_boolean(h.probed));
        json_object_object_add(o, "last_probe", json_object_new_int64((int64_t)h.last_probe));
        json_object_object_add(o, "last_ok", json_object_new_int64((int64_t)h.last_ok));
        json_object_object_add(o, "failures", json_object_new_int64(h.failures));
        if (h.error[0] != '\0')
            json_object_object_add(o, "error", reason_string(h.error));
        json_object_object_add(all, name, o);
        if (gw_names_has(g->cfg->admin.ready_requires, g->cfg->admin.n_ready_requires, name)) {
            char key[GW_MAX_NAME_LEN + 16];
            snprintf(key, sizeof(key), "upstream:%s", name);
            snprintf(why, sizeof(why), "upstream %s is down: %s", name, h.error);
            ready &= check(checks, key, h.up, why);
        }
    }
    json_object_object_add(root, "upstreams", all);
    return ready;
}

static void readyz(h2o_req_t *req, struct gw_loop *lt)
{
    struct gw_server *s = lt->server;
    struct json_object *root = json_object_new_object(), *checks = json_object_new_object();
    char why[GW_ERR_LEN] = "";
    const char *text;
    bool ready = true;

    if (root == NULL || checks == NULL) {
        json_object_put(root);
        json_object_put(checks);
        send_text(req, 503, "Service Unavailable", "not ready: out of memory");
        return;
    }
    ready &= check(checks, "config", lt->gen != NULL, "not loaded");
    ready &= check(checks, "audit", gw_cmp_engine_audit_status(lt->gen->engine, why, sizeof(why)) == 0, why);
    ready &= check(checks, "shared_state", gw_cmp_engine_state_status(lt->gen->engine, why, sizeof(why)) == 0,
                   why);
    ready &=
        check(checks, "signer", gw_cmp_engine_signer_status(lt->gen->engine, why, sizeof(why)) == 0, why);
    /* the loop threads accept only once every listener is bound: this one answering is the proof */
    ready &= check(checks, "listeners", true, "");
    ready &= check(checks, "draining", !atomic_load(&s->stopping), "shutting down");
    ready &= upstreams(checks, root, lt->gen);
    json_object_object_add(root, "ready", json_object_new_boolean(ready));
    json_object_object_add(root, "generation", json_object_new_int64((int64_t)lt->gen->id));
    json_object_object_add(root, "checks", checks);
    text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    send_body(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", "application/json", text,
              strlen(text));
    json_object_put(root);
}

static void metrics(h2o_req_t *req)
{
    char *text = NULL;
    size_t len = 0;

    if (gw_metrics_render(&text, &len) != 0) {
        send_text(req, 500, "Internal Server Error", "metrics: out of memory\n");
        return;
    }
    send_body(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static bool path_is(const h2o_req_t *req, const char *path)
{
    size_t len = strlen(path);

    return h2o_memis(req->path_normalized.base, req->path_normalized.len, path, len);
}

/* ---- what changes the gateway needs the bearer token of "admin.token_file" ---- */

static struct gw_metric *m_auth_failures;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
    static const char *const labels[] = {"reason", NULL};

    m_auth_failures = gw_metric_new("cmpgw_admin_auth_failures_total",
                                    "Requests to a state-changing admin endpoint (POST /reload) refused for "
                                    "their bearer token, by reason (missing, wrong).",
                                    GW_METRIC_COUNTER, labels, NULL, 0);
}

/* Whether |v| is "Bearer <token>" (the scheme in any case, RFC 7235) with the token whose SHA-256 is
 * |want|; |*missing| when it carries no bearer token at all. */
static bool bearer_matches(const h2o_iovec_t *v, const unsigned char *want, bool *missing)
{
    static const char scheme[] = "bearer ";
    unsigned char got[SHA256_DIGEST_LENGTH];
    size_t off = sizeof(scheme) - 1;
    bool ok;

    *missing = v == NULL || v->len <= off || !h2o_lcstris(v->base, off, scheme, off);
    if (*missing)
        return false;
    while (off < v->len && v->base[off] == ' ')
        off++;
    if (off == v->len || SHA256((const unsigned char *)v->base + off, v->len - off, got) == NULL)
        return false;
    /* digests of equal length: the time taken tells nothing of the token, not even its length */
    ok = CRYPTO_memcmp(got, want, sizeof(got)) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return ok;
}

/*
 * Over HTTP/1 a header value is the bytes picohttpparser parsed in place in the connection's input
 * buffer. For a request with a body (a Content-Length, even of 0, or chunked) libh2o 2.2.5 copies the
 * head's strings into the request's pool before it reads the body, and the values point there; the
 * bytes it parsed stay at the start of the input buffer, the body right after them (req->entity), until
 * the answer is sent and the buffer is given back to its allocator as it is. Nothing reads either after
 * the handler: the gateway gives h2o no access log, the strings h2o still uses are its copies, and the
 * answer is made of the response's headers.
 */
static void wipe_parsed_head(h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    h2o_buffer_t *in = sock != NULL ? sock->input : NULL;

    if (req->entity.base == NULL || in == NULL || in->bytes == NULL)
        return;
    /* the body of this request, read whole before the handler ran (docs/design.md H5): its head before it */
    if (req->entity.base < in->bytes || req->entity.base > in->bytes + in->size)
        return;
    OPENSSL_cleanse(in->bytes, (size_t)(req->entity.base - in->bytes));
}

/*
 * Over HTTP/2 the value may be an entry of the connection's HPACK table too, which a later request on
 * the connection refers to instead of sending the token again: wiped, it would arrive as zeros. The
 * admin listener never offers HTTP/2 ("http2" in "admin.tls" fails the load): left as it is, if ever.
 */
static void wipe_authorization(h2o_req_t *req)
{
    bool any = false;

    if (req->version >= 0x200)
        return;
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, i)) != -1; any = true)
        OPENSSL_cleanse(req->headers.entries[i].value.base, req->headers.entries[i].value.len);
    if (any)
        wipe_parsed_head(req);
}

bool gw_admin_bearer_ok(h2o_req_t *req, const unsigned char *want, bool *missing)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    bool ok = false;

    *missing = true;
    if (want != NULL)
        ok = bearer_matches(i >= 0 ? &req->headers.entries[i].value : NULL, want, missing);
    wipe_authorization(req);
    return ok;
}

/*
 * Whether |req| may change the gateway, given what its token was found to be (|token_ok|, |missing|);
 * otherwise it is answered (403 without a token_file, 401 for a missing or wrong token: counted, and
 * logged with the client's address, never the token).
 */
static bool authorized(h2o_req_t *req, struct gw_loop *lt, const char *what, bool token_ok, bool missing)
{
    const struct gw_admin_conf *ac = &lt->gen->cfg->admin;
    static struct gw_log_pace pace = GW_LOG_PACE_INIT; /* the token is not known yet: paced */
    struct sockaddr_storage ss;
    char peer[64] = "", held[GW_LOG_HELD_LEN];

    if (ac->token_file == NULL) {
        send_text(req, 403, "Forbidden", "admin token_file not configured; use SIGHUP\n");
        return false;
    }
    if (token_ok)
        return true;
    pthread_once(&m_once, metrics_init);
    gw_metric_add(m_auth_failures, (const char *const[]){missing ? "missing" : "wrong"}, 1);
    if (req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) != 0)
        gw_sockaddr_string((struct sockaddr *)&ss, peer, sizeof(peer));
    if (gw_log_pace_due(&pace, time(NULL), held))
        gw_log_kv(GW_LOG_WARN, "admin_auth_failed", "peer", peer, "request", what, "reason",
                  missing ? "no bearer token" : "wrong token", "suppressed", held, NULL);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                   H2O_STRLIT("Bearer realm=\"cmpgw admin\""));
    send_text(req, 401, "Unauthorized",
              missing ? "unauthorized: send \"Authorization: Bearer <the token of admin.token_file>\"\n"
                      : "unauthorized: wrong admin token\n");
    return false;
}

/* ---- POST /reload: the reload runs on a thread of its own; the loop answers when it is done ---- */

struct reload_call;

/* Hung on the request's pool: tells the call when the request is gone (the client went away). */
struct reload_ref {
    struct reload_call *call;
};

struct reload_call {
    h2o_multithread_message_t msg; /* link must start zeroed */
    struct gw_loop *loop;
    h2o_req_t *req; /* NULL once the request was disposed (loop thread only) */
    struct reload_ref *ref;
    int rc;
    char err[GW_ERR_LEN];
};

static void on_reload_req_disposed(void *p)
{
    struct reload_ref *ref = p;

    if (ref->call != NULL)
        ref->call->req = NULL;
}

/* its own thread: every signal is blocked in it, as in the loop thread that started it */
static void *reload_main(void *arg)
{
    struct reload_call *call = arg;
    struct gw_server *s = call->loop->server;

    call->rc = s->reload(s->reload_arg, call->err);
    atomic_store(&s->admin_reloading, false);
    gw_loop_post(call->loop, &call->loop->admin_rx, &call->msg);
    return NULL;
}

/* loop thread */
void gw_admin_on_reloaded(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    (void)rx;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        struct reload_call *call = H2O_STRUCT_FROM_MEMBER(struct reload_call, msg, m);
        char text[GW_ERR_LEN + 32];

        h2o_linklist_unlink(&m->link);
        call->loop->jobs_inflight--;
        if (call->req != NULL) {
            struct gw_conn *gc = gw_conn_get0(call->req);

            if (gc != NULL)
                gc->answer_owed = false;
            call->ref->call = NULL;
            snprintf(text, sizeof(text), "%s%s\n", call->rc == 0 ? "" : "reload refused: ", call->err);
            send_text(call->req, call->rc == 0 ? 200 : 500, call->rc == 0 ? "OK" : "Internal Server Error",
                      text);
        }
        free(call);
    }
}

static void reload(h2o_req_t *req, struct gw_loop *lt)
{
    struct reload_call *call;
    struct gw_conn *gc;
    pthread_attr_t attr;
    pthread_t tid;
    int rc;

    if (lt->server->reload == NULL || atomic_load(&lt->server->stopping)) {
        send_text(req, 503, "Service Unavailable", "reload is not available: the gateway is stopping\n");
        return;
    }
    /* one at a time: each waiting POST would hold a thread, and a reload reads every key again */
    if (atomic_exchange(&lt->server->admin_reloading, true)) {
        send_text(req, 409, "Conflict", "a reload is already in progress; retry once it has ended\n");
        return;
    }
    if ((call = calloc(1, sizeof(*call))) == NULL) {
        atomic_store(&lt->server->admin_reloading, false);
        send_text(req, 503, "Service Unavailable", "reload: out of memory\n");
        return;
    }
    call->loop = lt;
    call->req = req;
    call->ref = h2o_mem_alloc_shared(&req->pool, sizeof(*call->ref), on_reload_req_disposed);
    call->ref->call = call;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, reload_main, call);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        call->ref->call = NULL;
        free(call);
        atomic_store(&lt->server->admin_reloading, false);
        send_text(req, 503, "Service Unavailable", "reload: cannot start a thread; retry later\n");
        return;
    }
    lt->jobs_inflight++; /* a drain waits for the answer */
    if ((gc = gw_conn_get0(req)) != NULL)
        gc->answer_owed = true; /* the reload's answer is not dropped to make room (tls.c) */
}

int gw_admin_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct gw_loop *lt = gw_loop_of(req);
    struct gw_conn *c = gw_conn_get0(req);
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
               h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    bool post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    bool is_reload = path_is(req, "/reload"), token_ok, missing;
    const struct gw_admin_conf *ac;
    int rc;

    (void)self;
    gw_conn_mark_requested(req);
    gw_loop_refresh(lt);
    /* The one place the Authorization value is read, and wiped, before anything answers, whatever the
       request: a token where none is compared (a scraper's GET /metrics, a GET /reload, a POST /reload
       on a connection refused below) is a token all the same. Only POST /reload compares it. */
    ac = is_reload && post ? &lt->gen->cfg->admin : NULL;
    token_ok =
        gw_admin_bearer_ok(req, ac != NULL && ac->token_file != NULL ? ac->token_sha256 : NULL, &missing);
    /* shut down to make room (tls.c) or by the sweep: libh2o 2.2.5 takes the next of the requests its
       client pipelined after each answer whose write failed, and keeps the socket open for as long as
       they last. None is served any more: this answer, which nobody reads, is its last. */
    if (c != NULL && c->ended) {
        req->http1_is_persistent = 0;
        send_text(req, 503, "Service Unavailable", "connection closed\n");
        return 0;
    }
    if (c != NULL && (rc = gw_conn_recheck(c)) != 0) {
        req->http1_is_persistent = 0;
        send_text(req, 403, "Forbidden",
                  rc == GW_ERR_NOT_FOUND
                      ? "this listener was removed by a configuration reload\n"
                      : "TLS client certificate no longer accepted (expired, or not trusted "
                        "since the configuration was reloaded)\n");
        return 0;
    }
    if (!path_is(req, "/healthz") && !path_is(req, "/readyz") && !path_is(req, "/metrics") && !is_reload) {
        send_text(req, 404, "Not Found",
                  "not found: the admin listener serves /healthz, /readyz, /metrics and POST /reload\n");
        return 0;
    }
    if (is_reload ? !post : !get) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, is_reload ? "POST" : "GET",
                       is_reload ? 4 : 3);
        send_text(req, 405, "Method Not Allowed",
                  is_reload ? "method not allowed: use POST\n" : "method not allowed: use GET\n");
        return 0;
    }
    if (is_reload) {
        if (authorized(req, lt, "POST /reload", token_ok, missing))
            reload(req, lt);
    } else if (path_is(req, "/healthz"))
        send_text(req, 200, "OK", "ok\n");
    else if (path_is(req, "/readyz"))
        readyz(req, lt);
    else
        metrics(req);
    return 0;
}
