/*
 * HTTP/2 requests bounded in time. libh2o 2.2.5 advertises 100 concurrent streams and a 16 MiB
 * window, has no per-stream body timeout, and runs its HTTP/2 idle timeout only while no stream is
 * open: a client that sends one body byte every few seconds keeps its streams, and their buffered
 * bodies, as long as it likes. Every GW_H2_SWEEP_MS each loop thread walks its HTTP/2 requests with
 * the protocol's public foreach_request and shuts down the connection of any request that has not
 * reached the handler (its headers or body still arriving, or queued behind the connection's
 * others) for longer than limits.body_timeout. libh2o 2.2.5 keeps no start time for an HTTP/2
 * request and exposes no stream reset outside its internal headers, so the sweep remembers when it
 * first saw each such request, and ends the connection the way a peer's close would: shutdown(2)
 * of its socket, which libh2o then reads as the end of the connection and cleans up itself.
 */
#include "gateway/listener_local.h"
#include "base/log.h"

#include <stdlib.h>
#include <sys/socket.h>

/* An HTTP/2 request not yet handed to the handler, and since when (ms) the sweep has seen it so. */
struct seen {
    uint64_t conn_id; /* h2o's connection id: a freed connection's address may be reused */
    const h2o_req_t *req;
    uint64_t since;
    h2o_conn_t *conn; /* valid during one sweep only */
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

/* foreach_request callback: collects only (the streams are being walked: nothing may close now). */
static int collect(h2o_req_t *req, void *arg)
{
    struct sweep_state *st = arg;
    struct seen key, *found;

    if (req->processed_at.at.tv_sec != 0) /* in the handler or answered: the gateway's own deadlines */
        return 0;
    if (st->n == st->cap) {
        size_t cap = st->cap != 0 ? 2 * st->cap : 64;
        struct seen *v = realloc(st->v, cap * sizeof(*v));
        if (v == NULL)
            return 0; /* looked at again at the next sweep */
        st->v = v;
        st->cap = cap;
    }
    key = (struct seen){.conn_id = req->conn->id, .req = req, .conn = req->conn};
    found = st->n_prev != 0 ? bsearch(&key, st->prev, st->n_prev, sizeof(key), by_key) : NULL;
    key.since = found != NULL ? found->since : st->now;
    st->v[st->n++] = key;
    return 0;
}

/* Shuts down each connection holding a request past |timeout_ms| once; returns how many. */
static size_t shut_late(const struct seen *v, size_t n, uint64_t now, uint64_t timeout_ms)
{
    size_t shut = 0;
    bool any = false;
    uint64_t last = 0; /* |v| is sorted by connection: one shutdown per connection */

    for (size_t i = 0; i < n; i++) {
        h2o_socket_t *sock;

        if (now - v[i].since < timeout_ms || (any && v[i].conn_id == last))
            continue;
        any = true;
        last = v[i].conn_id;
        if ((sock = v[i].conn->callbacks->get_socket(v[i].conn)) != NULL && h2o_socket_get_fd(sock) >= 0 &&
            shutdown(h2o_socket_get_fd(sock), SHUT_RDWR) == 0)
            shut++;
    }
    return shut;
}

/* loop thread */
static void on_sweep(h2o_timeout_entry_t *entry)
{
    struct gw_loop *lt = H2O_STRUCT_FROM_MEMBER(struct gw_loop, h2_sweep_entry, entry);
    uint32_t timeout = lt->gen->cfg->limits.body_timeout;
    struct sweep_state st = {.prev = lt->h2_seen, .n_prev = lt->n_h2_seen, .now = gw_now_ms()};
    size_t shut;

    lt->ctx.globalconf->http2.callbacks.foreach_request(&lt->ctx, collect, &st);
    if (st.n > 1)
        qsort(st.v, st.n, sizeof(*st.v), by_key);
    shut = shut_late(st.v, st.n, st.now, (uint64_t)timeout * 1000);
    free(lt->h2_seen);
    lt->h2_seen = st.v;
    lt->n_h2_seen = st.n;
    if (shut > 0)
        gw_log(GW_LOG_WARN, "http2_connection_closed",
               "%zu connections held a request unfinished for over %u s", shut, timeout);
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
