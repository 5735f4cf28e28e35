/*
 * Connections whose output makes no progress. libh2o 2.2.5 has no send timeout on either protocol:
 * its HTTP/1 request timeout runs only while a request is being read, so a client that pipelines
 * requests (or asks for an answer larger than the socket buffers, with a small SO_RCVBUF) and never
 * reads keeps its connection, the responses buffered for it and its share of the per-address
 * connection cap forever, and holds a drain until its deadline; an HTTP/2 connection whose socket
 * write never completes is not closed either, even once idle. Every GW_SWEEP_MS each loop thread
 * walks its connections: one whose socket has output waiting, and whose client has acknowledged no
 * byte of it for limits.send_timeout, is shut down (shutdown(2): libh2o sees the write fail and
 * cleans up itself). A stall timer, not a deadline: a client that reads slowly but steadily keeps its
 * connection, one that stops reading loses it send_timeout later. What the kernel holds does not
 * count: once libh2o's write is taken whole the connection is back to reading, under libh2o's own
 * request timeout. Progress is the socket's TCP_INFO bytes_acked, what the client's TCP took (a
 * reader that frees less than a segment or half its receive buffer reopens no window, and shows
 * none); h2o's own byte counter counts a write when it begins, not as it drains. The HTTP/2 streams
 * (flow-control windows kept shut, bodies still arriving) are h2sweep.c's, run after this pass.
 */
#include "gateway/listener_local.h"
#include "base/cidr.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"

#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked (Linux 4.1), which glibc's lacks */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static struct gw_metric *m_ended;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
    static const char *const labels[] = {"protocol", "timeout", NULL};

    m_ended = gw_metric_new("cmpgw_slow_connections_ended_total",
                            "Connections ended for a slow client: a request not all received within "
                            "body_timeout (HTTP/2), or output that made no progress for send_timeout.",
                            GW_METRIC_COUNTER, labels, NULL, 0);
}

/* Whether |sock| speaks HTTP/2: negotiated by ALPN, the only way a listener offers it. */
static bool is_http2(h2o_socket_t *sock)
{
    h2o_iovec_t alpn =
        sock->ssl != NULL ? h2o_socket_ssl_get_selected_protocol(sock) : h2o_iovec_init(NULL, 0);

    return alpn.len == 2 && memcmp(alpn.base, "h2", 2) == 0;
}

void gw_sweep_end(struct gw_conn *c, const char *timeout, uint32_t secs, const char *why)
{
    struct sockaddr_storage ss;
    static struct gw_log_pace pace = GW_LOG_PACE_INIT; /* any client can stall: paced */
    char peer[INET6_ADDRSTRLEN + 8] = "", s[12], held[GW_LOG_HELD_LEN];
    int fd = h2o_socket_get_fd(c->sock);
    bool h2 = is_http2(c->sock);

    if (c->ended || fd < 0 || shutdown(fd, SHUT_RDWR) != 0)
        return;
    c->ended = true;
    pthread_once(&m_once, metrics_init);
    gw_metric_add(m_ended, (const char *const[]){h2 ? "http2" : "http1", timeout}, 1);
    if (!gw_log_pace_due(&pace, time(NULL), held))
        return;
    if (h2o_socket_getpeername(c->sock, (struct sockaddr *)&ss) != 0)
        gw_sockaddr_string((struct sockaddr *)&ss, peer, sizeof(peer));
    snprintf(s, sizeof(s), "%u", secs);
    gw_log_kv(GW_LOG_WARN, h2 ? "http2_connection_closed" : "http1_connection_closed", "peer", peer, "reason",
              why, "timeout", timeout, "timeout_s", s, "suppressed", held, (const char *)NULL);
}

/* The bytes of |sock|'s output its client's TCP has acknowledged; h2o's count where TCP_INFO fails. */
static uint64_t acked(h2o_socket_t *sock)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (getsockopt(h2o_socket_get_fd(sock), IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return sock->bytes_written;
    return ti.tcpi_bytes_acked;
}

/*
 * Whether |c|'s pending output has made no progress for |send_s| at |now|; keeps its marks. A TLS
 * handshake is libh2o's (its handshake timeout).
 */
static bool stalled(struct gw_conn *c, uint64_t now, uint32_t send_s)
{
    uint64_t a;
    bool was = c->stalled_since != 0;

    c->moved = false;
    if (c->ended || !h2o_socket_is_writing(c->sock) || (c->sock->ssl != NULL && !c->handshaken)) {
        c->stalled_since = 0;
        return false;
    }
    a = acked(c->sock);
    if (!was || a != c->acked) {
        c->moved = was;
        c->acked = a;
        c->stalled_since = now;
        return false;
    }
    return now - c->stalled_since >= (uint64_t)send_s * 1000;
}

/* loop thread */
static void on_sweep(h2o_timeout_entry_t *entry)
{
    struct gw_loop *lt = H2O_STRUCT_FROM_MEMBER(struct gw_loop, sweep_entry, entry);
    uint32_t send_s = lt->gen->cfg->limits.send_timeout;
    uint64_t now = gw_now_ms();

    for (h2o_linklist_t *n = lt->conns.next; n != &lt->conns; n = n->next) {
        struct gw_conn *c = H2O_STRUCT_FROM_MEMBER(struct gw_conn, link, n);
        if (stalled(c, now, send_s))
            gw_sweep_end(c, "send_timeout", send_s, "no output taken by the client within send_timeout");
    }
    gw_h2sweep_run(lt, now);
    h2o_timeout_link(lt->ctx.loop, &lt->sweep, &lt->sweep_entry);
}

void gw_sweep_start(struct gw_loop *lt)
{
    h2o_timeout_init(lt->ctx.loop, &lt->sweep, GW_SWEEP_MS);
    lt->sweep_entry = (h2o_timeout_entry_t){.cb = on_sweep};
    h2o_timeout_link(lt->ctx.loop, &lt->sweep, &lt->sweep_entry);
}

void gw_sweep_stop(struct gw_loop *lt)
{
    if (h2o_timeout_is_linked(&lt->sweep_entry))
        h2o_timeout_unlink(&lt->sweep_entry);
    h2o_timeout_dispose(lt->ctx.loop, &lt->sweep);
    gw_h2sweep_cleanup(lt);
}
