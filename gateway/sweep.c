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
 * The same walk ends a connection that has not completed its TLS handshake (on a plain listener: had
 * a request reach a handler) within limits.handshake_timeout: one that sends nothing would otherwise
 * hold its share of max_connections until libh2o's own timeouts, which are neither configurable nor
 * seen by the budget of failed authentications (tls.c counts the TLS ones ended here).
 * It also ends a CMP connection holding more request input than a request takes, a head of
 * GW_MAX_HEAD_INPUT and a CMP body: libh2o 2.2.5 buffers an HTTP/1 request head up to H2O_MAX_REQLEN (some
 * 408 KiB) until its request timer, which starts again with each request, so that a client could hold that
 * much for each of its connections, again and again; now for a sweep at most. An admin connection is held
 * to its input buffer (GW_ADMIN_INPUT_BUFFER): libh2o reads on while the socket has more, so one that
 * pipelines requests and reads no answer held all it sent, megabytes each.
 * And it closes the connections of trusted proxies whose PROXY header has not all arrived in time.
 * The sweep keeps the monotonic clock (gw_now_ms) and is run by the loop itself (gw_sweep_due), not by an
 * h2o timer: libh2o 2.2.5's event loop reads the wall clock (gettimeofday) for its timers, so that a
 * clock stepped back D seconds (NTP correcting a clock that ran ahead) would hold for D every one linked
 * before the step, the sweep's among them, and those of the same timeout linked after it, which run in
 * order: no handshake_timeout, send_timeout or input bound, and a peer could fill max_connections with
 * connections that send nothing. libh2o's own timers (its HTTP/1 request timeout,
 * HTTP/2 idle timeout, handshake timeout, GOAWAY resend) stay on its clock: the sweep's bounds, which
 * come first, are what protect the gateway (docs/operations.md, "The clock").
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

    m_ended =
        gw_metric_new("cmpgw_slow_connections_ended_total",
                      "Connections ended for a slow client: no TLS handshake (tls) or first request "
                      "(http1) within handshake_timeout, a request not all received within "
                      "body_timeout (HTTP/2), output that made no progress for send_timeout, or more "
                      "request input held than a request head and a CMP body take, on the admin listener "
                      "than its input buffer (input).",
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

/* Whether |c| has not got past its opening within |secs| at |now|: a completed TLS handshake (or one the
 * gateway refused, which libh2o closes), on a plain listener a request that reached a handler. */
static bool opening_late(const struct gw_conn *c, uint64_t now, uint32_t secs)
{
    bool opened = c->sock->ssl != NULL ? c->handshaken || c->refused : c->requested;

    return !opened && !c->ended && now - c->accepted_at >= (uint64_t)secs * 1000;
}

/* Shuts down |c|, late in its opening (opening_late) for |secs|: logged (paced) and counted; a TLS one
 * is counted against its address's budget as it closes (tls.c). */
static void end_opening(struct gw_conn *c, uint32_t secs)
{
    static struct gw_log_pace pace = GW_LOG_PACE_INIT; /* anyone who connects causes it: paced */
    struct sockaddr_storage ss;
    char peer[INET6_ADDRSTRLEN + 8] = "", s[12], held[GW_LOG_HELD_LEN];
    int fd = h2o_socket_get_fd(c->sock);
    bool tls = c->sock->ssl != NULL;
    const char *why = tls ? "no TLS handshake completed within limits.handshake_timeout"
                          : "no request within limits.handshake_timeout";

    if (fd < 0 || shutdown(fd, SHUT_RDWR) != 0)
        return;
    c->ended = true;
    c->handshake_late = tls;
    pthread_once(&m_once, metrics_init);
    gw_metric_add(m_ended, (const char *const[]){tls ? "tls" : "http1", "handshake_timeout"}, 1);
    if (!gw_log_pace_due(&pace, time(NULL), held))
        return;
    if (h2o_socket_getpeername(c->sock, (struct sockaddr *)&ss) != 0)
        gw_sockaddr_string((struct sockaddr *)&ss, peer, sizeof(peer));
    snprintf(s, sizeof(s), "%u", secs);
    gw_log_kv(GW_LOG_WARN, "handshake_timeout", "peer", peer, "listener", c->admin ? "admin" : "cmp",
              "reason", why, "timeout_s", s, "suppressed", held, (const char *)NULL);
}

_Static_assert(GW_MAX_HEAD_INPUT == 16 * 1024 && GW_MAX_CMP_BODY == 64 * 1024 &&
                   GW_ADMIN_INPUT_BUFFER / 1024 == 476,
               "overfed's texts name the bounds");

/*
 * Why |c| is to be ended for the request input it holds, or NULL: on a CMP listener more than one request
 * takes; on the admin listener more than its input buffer, allocated whole as large as any request h2o takes
 * (tls.c), which libh2o has then moved out of the token wipe's reach.
 */
static const char *overfed(const struct gw_conn *c)
{
    if (c->ended)
        return NULL;
    if (c->admin)
        return c->sock->input->size > GW_ADMIN_INPUT_BUFFER
                   ? "more request input held than the admin listener's input buffer (476 KiB) takes"
                   : NULL;
    return c->sock->input->size > GW_MAX_HEAD_INPUT + GW_MAX_CMP_BODY
               ? "more request input held than a request head (16 KiB) and a CMP body (64 KiB) take"
               : NULL;
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
 * handshake is limits.handshake_timeout's (opening_late).
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

/* One pass over |lt|'s connections at |now| (loop thread). */
static void sweep(struct gw_loop *lt, uint64_t now)
{
    uint32_t send_s = lt->gen->cfg->limits.send_timeout, open_s = lt->gen->cfg->limits.handshake_timeout;
    const char *why;

    gw_loop_proxy_sweep(lt, now);
    for (h2o_linklist_t *n = lt->conns.next; n != &lt->conns; n = n->next) {
        struct gw_conn *c = H2O_STRUCT_FROM_MEMBER(struct gw_conn, link, n);
        if (opening_late(c, now, open_s))
            end_opening(c, open_s);
        else if ((why = overfed(c)) != NULL)
            gw_sweep_end(c, "input", 0, why);
        else if (stalled(c, now, send_s))
            gw_sweep_end(c, "send_timeout", send_s, "no output taken by the client within send_timeout");
    }
    gw_h2sweep_run(lt, now);
}

void gw_sweep_start(struct gw_loop *lt)
{
    lt->sweep_at = gw_now_ms() + GW_SWEEP_MS;
}

int32_t gw_sweep_due(struct gw_loop *lt)
{
    uint64_t now = gw_now_ms();

    if (now >= lt->sweep_at) {
        sweep(lt, now);
        lt->sweep_at = now + GW_SWEEP_MS;
    }
    return (int32_t)(lt->sweep_at - now);
}

void gw_sweep_stop(struct gw_loop *lt)
{
    gw_h2sweep_cleanup(lt);
}
