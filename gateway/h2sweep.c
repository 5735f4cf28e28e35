/*
 * HTTP/2 requests bounded in time. libh2o 2.2.5 advertises 100 concurrent streams and a 16 MiB
 * window, has no per-stream body timeout and no send timeout, and runs its HTTP/2 idle timeout only
 * while no stream is open: a client that sends one body byte every few seconds keeps its streams,
 * and their buffered bodies, as long as it likes; so does one that never opens its flow-control
 * window (SETTINGS_INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE) once its request is answered, since the
 * stream lives until its response is written, and its socket has nothing to write (sweep.c's pass
 * sees no pending output). At each sweep (sweep.c) the loop thread walks its HTTP/2 requests with the
 * protocol's public foreach_request and shuts down the connection of any request that has not
 * reached the handler (its headers or body still arriving, or queued behind the connection's others)
 * for longer than limits.body_timeout, or whose answer has not moved for limits.send_timeout: none of
 * its DATA framed (req->bytes_sent, which libh2o counts as the window lets each frame out), nor any of
 * another stream of the connection, nor any byte of the connection's socket output taken by the client
 * (gw_conn.moved). The PING or SETTINGS frames a client may make the gateway answer are no progress of
 * an answer. A request in the handler is the gateway's own business (the upstream deadlines): not
 * looked at. libh2o 2.2.5 keeps no start time for an HTTP/2 request and exposes no stream reset
 * outside its internal headers, so the sweep remembers when it first saw each request in either state
 * (and how much of its answer was sent), and ends the connection the way a peer's close would.
 *
 * The same walk bounds the bodies a connection makes the gateway hold: libh2o buffers each stream's
 * body up to GW_MAX_CMP_BODY before the handler sees it, for up to 100 streams a connection, and offers
 * no lower limit on them (its max_concurrent_requests_per_connection counts requests in the handler
 * only); it keeps a body until its stream ends, after the answer is all sent. A CMP client sends one
 * request at a time, so a connection found with more than GW_MAX_H2_OPEN requests arriving, queued or
 * answered with their answers not all sent since the last sweep is ended: beyond that, a client holds
 * only what it can send within one sweep, and its answers for one sweep more. An answer is counted only
 * from the second sweep that finds it unsent: a client that multiplexes requests over a slow link, or
 * whose flow-control window opens an RTT late, takes answers written as a sweep comes by the next.
 */
#include "gateway/listener_local.h"

#include <stdlib.h>

/*
 * An HTTP/2 request not yet handed to the handler, or answered and its response not all sent, and
 * since when (ms) the sweep has seen it so, without its answer moving.
 */
struct seen {
    uint64_t conn_id; /* h2o's connection id: a freed connection's address may be reused */
    const h2o_req_t *req;
    uint64_t since;
    bool answered;         /* waiting for its response to be sent, not for its request to arrive */
    bool held_over;        /* answered, and so at the last sweep too: its body held a sweep already */
    struct timeval begun;  /* when its headers began: tells apart two requests at one address */
    struct timeval handed; /* when it reached the handler: the same, once answered */
    size_t sent;           /* of its answer's body, framed */
    struct gw_conn *gc;    /* valid during one sweep only; NULL if the socket is not one of ours */
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
    bool answered = req->res.status != 0, same;

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
                        .sent = req->bytes_sent,
                        .gc = gw_conn_get0(req)};
    found = st->n_prev != 0 ? bsearch(&key, st->prev, st->n_prev, sizeof(key), by_key) : NULL;
    /* the same request in the same state: a freed stream's memory may hold the next one (malloc gives
       it back at once to a client that sends one request after another), which began later */
    same = found != NULL && found->answered == answered && same_time(&found->begun, &key.begun) &&
           same_time(&found->handed, &key.handed);
    key.since = same ? found->since : st->now;
    key.held_over = same && answered;
    if (same && answered && found->sent != key.sent && key.gc != NULL)
        key.gc->moved = true; /* the connection's answers share its window and socket: all move on */
    st->v[st->n++] = key;
    return 0;
}

/*
 * Shuts down each connection holding a request past its timeout (|body_s| arriving, |send_s|
 * answered and its answer still) once. An answer's clock starts again where its connection moved.
 */
static void shut_late(struct seen *v, size_t n, uint64_t now, uint32_t body_s, uint32_t send_s)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t timeout = v[i].answered ? send_s : body_s;

        if (v[i].gc == NULL)
            continue;
        if (v[i].answered && v[i].gc->moved)
            v[i].since = now;
        if (now - v[i].since < (uint64_t)timeout * 1000)
            continue;
        if (v[i].answered)
            gw_sweep_end(v[i].gc, "send_timeout", timeout,
                         "an answer the client took no byte of (its flow-control window kept shut) "
                         "within send_timeout");
        else
            gw_sweep_end(v[i].gc, "body_timeout", timeout, "a request not all received within body_timeout");
    }
}

_Static_assert(GW_MAX_H2_OPEN == 4, "shut_crowded's text names the bound");

/*
 * Shuts down each connection with more than GW_MAX_H2_OPEN requests in |v| (sorted): each arriving,
 * queued, or answered and its answer not all sent since the last sweep, its body held either way. A
 * client that takes its answers has its streams end as soon as they are written.
 */
static void shut_crowded(const struct seen *v, size_t n)
{
    for (size_t i = 0, held = 0; i < n; i++) {
        size_t counted = !v[i].answered || v[i].held_over;

        held = i > 0 && v[i].conn_id == v[i - 1].conn_id ? held + counted : counted;
        if (held > GW_MAX_H2_OPEN && v[i].gc != NULL)
            gw_sweep_end(v[i].gc, "streams", 0,
                         "more HTTP/2 requests open at once (arriving, or their answers not taken) than a "
                         "CMP client has (at most 4 a connection)");
    }
}

/* loop thread */
void gw_h2sweep_run(struct gw_loop *lt, uint64_t now)
{
    const struct gw_limits_conf *lim = &lt->gen->cfg->limits;
    struct sweep_state st = {.prev = lt->h2_seen, .n_prev = lt->n_h2_seen, .now = now};

    lt->ctx.globalconf->http2.callbacks.foreach_request(&lt->ctx, collect, &st);
    shut_late(st.v, st.n, st.now, lim->body_timeout, lim->send_timeout);
    if (st.n > 1)
        qsort(st.v, st.n, sizeof(*st.v), by_key);
    shut_crowded(st.v, st.n);
    free(lt->h2_seen);
    lt->h2_seen = st.v;
    lt->n_h2_seen = st.n;
}

void gw_h2sweep_cleanup(struct gw_loop *lt)
{
    free(lt->h2_seen);
    lt->h2_seen = NULL;
    lt->n_h2_seen = 0;
}
