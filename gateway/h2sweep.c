/*
 * HTTP/2 requests bounded in time. libh2o 2.2.5 advertises 100 concurrent streams and a 16 MiB
 * window, has no per-stream body timeout and no send timeout, and runs its HTTP/2 idle timeout only
 * while no stream is open: a client that sends one body byte every few seconds keeps its streams,
 * and their buffered bodies, as long as it likes; so does one that never opens its flow-control
 * window (SETTINGS_INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE) once its request is answered, since the
 * stream lives until its response is written. Every GW_H2_SWEEP_MS each loop thread walks its
 * HTTP/2 requests with the protocol's public foreach_request and shuts down the connection of any
 * request that has not reached the handler (its headers or body still arriving, or queued behind
 * the connection's others) for longer than limits.body_timeout, or whose answer has not all been
 * sent for longer than limits.send_timeout. A request in the handler is the gateway's own business
 * (the upstream deadlines): not looked at. libh2o 2.2.5 keeps no start time for an HTTP/2 request
 * and exposes no stream reset outside its internal headers, so the sweep remembers when it first
 * saw each request in either state, and ends the connection the way a peer's close would:
 * shutdown(2) of its socket, which libh2o then reads as the end of the connection and cleans up
 * itself.
 */
#include "gateway/listener_local.h"
#include "base/cidr.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

/*
 * An HTTP/2 request not yet handed to the handler, or answered and its response not all sent, and
 * since when (ms) the sweep has seen it so.
 */
struct seen {
    uint64_t conn_id; /* h2o's connection id: a freed connection's address may be reused */
    const h2o_req_t *req;
    uint64_t since;
    bool answered;         /* waiting for its response to be sent, not for its request to arrive */
    struct timeval begun;  /* when its headers began: tells apart two requests at one address */
    struct timeval handed; /* when it reached the handler: the same, once answered */
    h2o_conn_t *conn;      /* valid during one sweep only */
};

struct sweep_state {
    struct seen *v;
    size_t n, cap;
    const struct seen *prev; /* the last sweep's, sorted */
    size_t n_prev;
    uint64_t now;
};

static int by_key(const void *a, const void *b)
{
    const struct seen *x = a, *y = b;

    if (x->conn_id != y->conn_id)
        return x->conn_id < y->conn_id ? -1 : 1;
    return (uintptr_t)x->req < (uintptr_t)y->req ? -1 : (uintptr_t)x->req > (uintptr_t)y->req;
}

static bool same_time(const struct timeval *a, const struct timeval *b)
{
    return a->tv_sec == b->tv_sec && a->tv_usec == b->tv_usec;
}

/* foreach_request callback: collects only (the streams are being walked: nothing may close now). */
static int collect(h2o_req_t *req, void *arg)
{
    struct sweep_state *st = arg;
    struct seen key, *found;
    /* the handler (or h2o itself) set a status as it answered; the stream lives until all is sent */
    bool answered = req->res.status != 0;

    if (req->processed_at.at.tv_sec != 0 && !answered) /* in the handler: the gateway's own deadlines */
        return 0;
    if (st->n == st->cap) {
        size_t cap = st->cap != 0 ? 2 * st->cap : 64;
        struct seen *v = realloc(st->v, cap * sizeof(*v));
        if (v == NULL)
            return 0; /* looked at again at the next sweep */
        st->v = v;
        st->cap = cap;
    }
    key = (struct seen){.conn_id = req->conn->id,
                        .req = req,
                        .answered = answered,
                        .begun = req->timestamps.request_begin_at,
                        .handed = req->processed_at.at,
                        .conn = req->conn};
    found = st->n_prev != 0 ? bsearch(&key, st->prev, st->n_prev, sizeof(key), by_key) : NULL;
    /* the same request in the same state: a freed stream's memory may hold the next one (malloc gives
       it back at once to a client that sends one request after another), which began later */
    if (found != NULL && found->answered == answered && same_time(&found->begun, &key.begun) &&
        same_time(&found->handed, &key.handed))
        key.since = found->since;
    else
        key.since = st->now;
    st->v[st->n++] = key;
    return 0;
}

/* One line per connection ended, with its client's address: what an operator greps for. */
static void log_shut(h2o_conn_t *conn, const struct seen *v, uint32_t timeout)
{
    static struct gw_log_pace pace = GW_LOG_PACE_INIT; /* any client can stall its streams: paced */
    struct sockaddr_storage ss;
    char peer[INET6_ADDRSTRLEN + 8] = "", secs[12], held[GW_LOG_HELD_LEN];

    if (!gw_log_pace_due(&pace, time(NULL), held))
        return;
    if (conn->callbacks->get_peername(conn, (struct sockaddr *)&ss) != 0)
        gw_sockaddr_string((struct sockaddr *)&ss, peer, sizeof(peer));
    snprintf(secs, sizeof(secs), "%u", timeout);
    gw_log_kv(GW_LOG_WARN, "http2_connection_closed", "peer", peer, "reason",
              v->answered ? "a response not all sent (the client's flow-control window stayed shut) "
                            "within send_timeout"
                          : "a request not all received within body_timeout",
              "timeout_s", secs, "suppressed", held, (const char *)NULL);
}

/*
 * Shuts down each connection holding a request past its timeout (|body_s| arriving, |send_s|
 * answered and unsent) once, and logs it.
 */
static void shut_late(const struct seen *v, size_t n, uint64_t now, uint32_t body_s, uint32_t send_s)
{
    bool any = false;
    uint64_t last = 0; /* |v| is sorted by connection: one shutdown per connection */

    for (size_t i = 0; i < n; i++) {
        h2o_socket_t *sock;
        uint32_t timeout = v[i].answered ? send_s : body_s;

        if (now - v[i].since < (uint64_t)timeout * 1000 || (any && v[i].conn_id == last))
            continue;
        any = true;
        last = v[i].conn_id;
        if ((sock = v[i].conn->callbacks->get_socket(v[i].conn)) != NULL && h2o_socket_get_fd(sock) >= 0 &&
            shutdown(h2o_socket_get_fd(sock), SHUT_RDWR) == 0)
            log_shut(v[i].conn, &v[i], timeout);
    }
}

/* loop thread */
static void on_sweep(h2o_timeout_entry_t *entry)
{
    struct gw_loop *lt = H2O_STRUCT_FROM_MEMBER(struct gw_loop, h2_sweep_entry, entry);
    const struct gw_limits_conf *lim = &lt->gen->cfg->limits;
    struct sweep_state st = {.prev = lt->h2_seen, .n_prev = lt->n_h2_seen, .now = gw_now_ms()};

    lt->ctx.globalconf->http2.callbacks.foreach_request(&lt->ctx, collect, &st);
    if (st.n > 1)
        qsort(st.v, st.n, sizeof(*st.v), by_key);
    shut_late(st.v, st.n, st.now, lim->body_timeout, lim->send_timeout);
    free(lt->h2_seen);
    lt->h2_seen = st.v;
    lt->n_h2_seen = st.n;
    if (!atomic_load(&lt->server->stopping))
        h2o_timeout_link(lt->ctx.loop, &lt->h2_sweep, &lt->h2_sweep_entry);
}

void gw_h2sweep_start(struct gw_loop *lt)
{
    h2o_timeout_init(lt->ctx.loop, &lt->h2_sweep, GW_H2_SWEEP_MS);
    lt->h2_sweep_entry = (h2o_timeout_entry_t){.cb = on_sweep};
    h2o_timeout_link(lt->ctx.loop, &lt->h2_sweep, &lt->h2_sweep_entry);
}

void gw_h2sweep_stop(struct gw_loop *lt)
{
    if (h2o_timeout_is_linked(&lt->h2_sweep_entry))
        h2o_timeout_unlink(&lt->h2_sweep_entry);
    h2o_timeout_dispose(lt->ctx.loop, &lt->h2_sweep);
    free(lt->h2_seen);
    lt->h2_seen = NULL;
    lt->n_h2_seen = 0;
}
