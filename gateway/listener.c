/*
 * Listener lifecycle: h2o global config, sockets, loop threads and graceful shutdown.
 *
 * Each loop thread owns an h2o_evloop_t, an h2o_context_t and one SO_REUSEPORT socket per
 * configured listener, so the kernel spreads connections over threads (docs/design.md H2).
 * Sockets are bound on the caller's thread so that bind errors reach gw_server_start's caller.
 */
#include "gateway/listener_local.h"
#include "gateway/proxy.h"
#include "base/cidr.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Connections accepted per wakeup of a listening socket, as h2o's own src/main.c does. */
#define ACCEPT_BATCH 16
/* How often a draining loop looks at its deadline, at most (ms). */
#define DRAIN_POLL_MS 100

union gw_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
};

/* Fills |addr| from a numeric IPv4 or IPv6 literal; GW_ERR_INVAL otherwise. */
static int parse_addr(const char *host, uint16_t port, union gw_sockaddr *addr, socklen_t *len)
{
    memset(addr, 0, sizeof(*addr));
    if (inet_pton(AF_INET, host, &addr->sin.sin_addr) == 1) {
        addr->sin.sin_family = AF_INET;
        addr->sin.sin_port = htons(port);
        *len = sizeof(addr->sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &addr->sin6.sin6_addr) == 1) {
        addr->sin6.sin6_family = AF_INET6;
        addr->sin6.sin6_port = htons(port);
        *len = sizeof(addr->sin6);
        return 0;
    }
    return GW_ERR_INVAL;
}

/*
 * Binds one socket for |lc|; |*port| is the port to use and, when 0, receives the kernel's choice
 * so that the other loop threads join the same port. A |probe| socket is bound without
 * SO_REUSEPORT and not listened on: it fails when any other process holds the port, which a
 * SO_REUSEPORT bind would silently share with a second gateway of the same user. Returns the fd
 * or -1.
 */
static int bind_one(const struct gw_listener_conf *lc, uint16_t *port, bool probe, char *err)
{
    union gw_sockaddr addr;
    socklen_t len;
    int fd = -1, on = 1;
    const char *what = "socket";

    if (parse_addr(lc->address, *port, &addr, &len) != 0) {
        snprintf(err, GW_ERR_LEN, "%s:%u: not a numeric IPv4 or IPv6 address", lc->address,
                 (unsigned)lc->port);
        return -1;
    }
    if ((fd = socket(addr.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
        goto err;
    what = "setsockopt";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (!probe && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0))
        goto err;
    /* "::" must not also take the IPv4 port: a separate 0.0.0.0 listener would then fail */
    if (addr.sa.sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0)
        goto err;
    what = NULL;
    if (bind(fd, &addr.sa, len) != 0 || (!probe && listen(fd, SOMAXCONN) != 0))
        goto err;
    if (*port == 0 && getsockname(fd, &addr.sa, &len) == 0)
        *port = ntohs(addr.sa.sa_family == AF_INET ? addr.sin.sin_port : addr.sin6.sin6_port);
    return fd;

err:
    /* "127.0.0.1:8443: Address already in use" */
    snprintf(err, GW_ERR_LEN, "%s%s%s:%u: %s%s%s", addr.sa.sa_family == AF_INET6 ? "[" : "", lc->address,
             addr.sa.sa_family == AF_INET6 ? "]" : "", (unsigned)lc->port, what != NULL ? what : "",
             what != NULL ? ": " : "", strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Appends a listening socket of listener |i| (of s->keys) to loop |lt| (before the loops start). */
static int add_listen(struct gw_loop *lt, size_t i, int fd)
{
    const struct gw_listen_key *k = &lt->server->keys[i];

    if (lt->n_listens >= GW_LOOP_LISTENS) {
        close(fd);
        errno = EMFILE;
        return GW_ERR_LIMIT;
    }
    lt->listens[lt->n_listens++] =
        (struct gw_listen){.loop = lt, .listener = i, .id = k->id, .admin = k->admin, .fd = fd};
    return 0;
}

/* Whether |fd| is a listening TCP socket bound where |lc| says (a port of 0 matches any). */
static bool inherited_matches(int fd, const struct gw_listener_conf *lc)
{
    union gw_sockaddr want, got;
    socklen_t want_len, got_len = sizeof(got), optlen = sizeof(int);
    int listening = 0;

    if (parse_addr(lc->address, lc->port, &want, &want_len) != 0 || getsockname(fd, &got.sa, &got_len) != 0 ||
        got.sa.sa_family != want.sa.sa_family ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) != 0 || !listening)
        return false;
    if (want.sa.sa_family == AF_INET)
        return want.sin.sin_addr.s_addr == got.sin.sin_addr.s_addr &&
               (lc->port == 0 || want.sin.sin_port == got.sin.sin_port);
    return memcmp(&want.sin6.sin6_addr, &got.sin6.sin6_addr, sizeof(want.sin6.sin6_addr)) == 0 &&
           (lc->port == 0 || want.sin6.sin6_port == got.sin6.sin6_port);
}

/*
 * Gives listener |i| the inherited sockets that match it (taken out of |inh|): each loop one of
 * them, or a duplicate of one (loops then share its queue), and the rest to the loops in turn, so
 * that every socket is served: one that nobody accepts from would hold its connections forever.
 * Returns how many matched, or a negative gw_err.
 */
static int take_inherited(struct gw_server *s, size_t i, struct gw_inherited *inh, uint16_t *port)
{
    const struct gw_listener_conf *lc = gw_listener_conf(s->boot, i);
    int taken[GW_MAX_INHERITED_FDS];
    size_t k = 0;
    union gw_sockaddr addr;
    socklen_t len = sizeof(addr);

    for (size_t j = 0; inh != NULL && j < inh->n && k < GW_MAX_INHERITED_FDS; j++) {
        if (inh->fds[j] >= 0 && inherited_matches(inh->fds[j], lc)) {
            taken[k++] = inh->fds[j];
            inh->fds[j] = -1;
        }
    }
    for (size_t j = 0; j < k; j++) /* systemd passes them blocking and inheritable */
        if (fcntl(taken[j], F_SETFL, fcntl(taken[j], F_GETFL) | O_NONBLOCK) != 0 ||
            fcntl(taken[j], F_SETFD, FD_CLOEXEC) != 0)
            return GW_ERR_IO;
    for (size_t t = 0; t < s->n_loops && k > 0; t++) {
        int fd = t < k ? taken[t] : fcntl(taken[t % k], F_DUPFD_CLOEXEC, 0);
        if (fd < 0 || add_listen(&s->loops[t], i, fd) != 0)
            return GW_ERR_IO;
    }
    for (size_t j = s->n_loops; j < k; j++)
        if (add_listen(&s->loops[j % s->n_loops], i, taken[j]) != 0)
            return GW_ERR_NOMEM;
    if (k > 0 && getsockname(taken[0], &addr.sa, &len) == 0)
        *port = ntohs(addr.sa.sa_family == AF_INET ? addr.sin.sin_port : addr.sin6.sin6_port);
    return (int)k;
}

/*
 * Binds one socket of |lc| per loop thread into |fds| (all on one port: |*port|, or the kernel's
 * choice for 0). A first socket bound without SO_REUSEPORT and never listened on fails when any
 * other process holds the port, which a SO_REUSEPORT bind would silently share with a second
 * gateway of the same user. 0, or GW_ERR_IO with |err| (nothing left open).
 */
static int bind_loops(struct gw_server *s, const struct gw_listener_conf *lc, uint16_t *port, int *fds,
                      char *err)
{
    int probe = bind_one(lc, port, true, err);

    if (probe < 0)
        return GW_ERR_IO;
    close(probe); /* bound, never listened: the port is free again at once */
    for (size_t t = 0; t < s->n_loops; t++) {
        if ((fds[t] = bind_one(lc, port, false, err)) < 0) {
            while (t-- > 0)
                close(fds[t]);
            return GW_ERR_IO;
        }
    }
    return 0;
}

static void log_listening(const struct gw_listener_conf *lc, const struct gw_listen_key *k, uint16_t port,
                          const char *how)
{
    bool v6 = strchr(lc->address, ':') != NULL;

    gw_log(GW_LOG_INFO, "listening", "%s%s%s:%u %s client_auth=%s%s%s", v6 ? "[" : "", lc->address,
           v6 ? "]" : "", (unsigned)port, k->tls ? "https" : "http",
           lc->client_auth == GW_CLIENT_AUTH_REQUIRE    ? "require"
           : lc->client_auth == GW_CLIENT_AUTH_OPTIONAL ? "optional"
                                                        : "none",
           k->admin ? " admin: /healthz /readyz /metrics /reload" : "", how);
}

/*
 * Binds every listener of the configuration on every loop thread (listener i uses the same port on
 * all threads), or takes the sockets |inh| has for it; closes inherited sockets no listener wants.
 */
static int bind_all(struct gw_server *s, struct gw_inherited *inh, char *err)
{
    for (size_t i = 0; i < s->n_keys; i++) {
        const struct gw_listener_conf *lc = gw_listener_conf(s->boot, i);
        uint16_t port = lc->port;
        int got = take_inherited(s, i, inh, &port);

        if (got < 0) {
            snprintf(err, GW_ERR_LEN, "%s:%u: an inherited socket: %s", lc->address, (unsigned)lc->port,
                     strerror(errno));
            return got;
        }
        if (got == 0) {
            int fds[GW_LOOP_LISTENS];
            if (bind_loops(s, lc, &port, fds, err) != 0)
                return GW_ERR_IO;
            for (size_t t = 0; t < s->n_loops; t++)
                if (add_listen(&s->loops[t], i, fds[t]) != 0)
                    return GW_ERR_IO;
        }
        log_listening(lc, &s->keys[i], port, got > 0 ? " (inherited socket)" : "");
    }
    for (size_t j = 0; inh != NULL && j < inh->n; j++) {
        if (inh->fds[j] < 0)
            continue;
        gw_log(GW_LOG_WARN, "listening", "an inherited socket (fd %d) matches no listener: closed",
               inh->fds[j]);
        close(inh->fds[j]);
        inh->fds[j] = -1;
    }
    return 0;
}

/*
 * A flood of refused connections must not become a flood of log lines: connection_refused is paced
 * (gw_log_pace_due), as is proxy_header_refused, each line with the count of those held back.
 */
static struct gw_log_pace refused_pace = GW_LOG_PACE_INIT, proxy_pace = GW_LOG_PACE_INIT;

static void log_refused(const char *why)
{
    char held[GW_LOG_HELD_LEN];

    if (gw_log_pace_due(&refused_pace, time(NULL), held))
        gw_log_kv(GW_LOG_WARN, "connection_refused", "reason", why, "suppressed", held, (const char *)NULL);
}

_Static_assert(GW_MAX_ADMIN_CONNECTIONS == 16, "connection_refused's text names the admin listener's cap");

/* one line an address and window already; paced too, for an attacker has as many as addresses */
static struct gw_log_pace exhausted_pace = GW_LOG_PACE_INIT;

/* Says that the address |peer| used up its budget of failed authentications, |what| the last (any thread). */
static void log_exhausted(const char *peer, const char *what)
{
    char held[GW_LOG_HELD_LEN];

    if (!gw_log_pace_due(&exhausted_pace, time(NULL), held))
        return;
    gw_log_kv(GW_LOG_WARN, "auth_budget_exhausted", "peer", peer, "last", what, "reason",
              "this address failed to authenticate limits.auth_failures_per_address times within "
              "limits.auth_failure_window: until the window ends, its new connections to a TLS listener "
              "are closed at accept and its requests get HTTP 429",
              "suppressed", held, (const char *)NULL);
}

/*
 * |sa|, an IPv4 address or an IPv6 one with the bits past its first |bits| zero, as the range the guard
 * shut out: the address alone, an IPv6 one with its prefix length ("2001:db8::/64").
 */
static void range_string(const struct sockaddr *sa, uint32_t bits, char *peer, size_t size)
{
    char addr[INET6_ADDRSTRLEN] = "";

    if (sa->sa_family == AF_INET) {
        (void)inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
        snprintf(peer, size, "%s", addr);
        return;
    }
    (void)inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
    snprintf(peer, size, "%s/%u", addr, (unsigned)bits);
}

void gw_server_auth_failed(struct gw_server *s, const struct sockaddr *sa, socklen_t len, const char *what)
{
    char peer[INET6_ADDRSTRLEN + 8];
    uint32_t bits = gw_guard_auth_failed(s->guard, sa, len, time(NULL));
    struct sockaddr_in6 site;

    if (bits == 0)
        return;
    if (bits != GW_GUARD_SITE_BITS || sa->sa_family != AF_INET6 || len < (socklen_t)sizeof(site)) {
        gw_sockaddr_string(sa, peer, sizeof(peer));
    } else { /* the client's whole site, by its prefix */
        memcpy(&site, sa, sizeof(site));
        memset(&site.sin6_addr.s6_addr[GW_GUARD_SITE_BITS / 8], 0, 16 - GW_GUARD_SITE_BITS / 8);
        range_string((struct sockaddr *)&site, bits, peer, sizeof(peer));
    }
    log_exhausted(peer, what);
}

/*
 * An address a reload's lower budget shuts out within its open window: said as one whose failure used
 * the budget up is, by its address alone (an IPv6 one by its prefix or its site, as the guard counts it:
 * the prefix it started with, not the reloaded file's), for no connection of it is at hand. Under the
 * guard's lock (the reloading thread).
 */
static void reload_shut_out(void *arg, const struct sockaddr *sa, socklen_t len, uint32_t bits)
{
    char peer[INET6_ADDRSTRLEN + 8];

    (void)arg;
    (void)len;
    range_string(sa, bits, peer, sizeof(peer));
    log_exhausted(peer, "a reload lowered limits.auth_failures_per_address under the failures this address "
                        "made in its window");
}

/*
 * Whether |sock| comes to a TLS listener from an address over its budget of failed authentications:
 * closed before its handshake, the work a client without credentials can make the gateway repeat
 * most cheaply (some 12 ms of CPU for a client chain that does not verify). Without a word: the
 * address was logged once as it used its budget up (gw_server_auth_failed). A plain listener answers
 * HTTP 429 instead, which costs it nothing more and tells a balancer in front a refusal from a failure.
 */
static bool over_budget(const struct gw_listen *l, h2o_socket_t *sock)
{
    struct sockaddr_storage sa;
    socklen_t len;
    uint32_t wait;

    if (l->admin || l->accept.ssl_ctx == NULL ||
        (len = h2o_socket_getpeername(sock, (struct sockaddr *)&sa)) == 0)
        return false;
    return gw_guard_auth_check(l->loop->server->guard, (struct sockaddr *)&sa, len, time(NULL), &wait) != 0;
}

/* loop thread: admits |sock| by its client's address, then TLS and HTTP take it. */
static void admit(struct gw_listen *l, h2o_socket_t *sock)
{
    int rc;

    if (over_budget(l, sock)) {
        h2o_socket_close(sock);
        return;
    }
    if ((rc = gw_conn_attach(l->loop, sock, l->id, l->admin)) != 0) {
        log_refused(rc == GW_ERR_LIMIT && l->admin
                        ? "the admin listener holds its 16 connections (per loop thread)"
                    : rc == GW_ERR_LIMIT ? "the server holds max_connections connections"
                    : rc == GW_ERR_BUSY  ? "this client address holds max_connections_per_address connections"
                                         : "out of memory");
        h2o_socket_close(sock);
        return;
    }
    h2o_accept(&l->accept, sock);
}

/* ---- the PROXY protocol (docs/operations.md, "Behind a load balancer") ---- */

/* A connection of a trusted proxy whose PROXY header has not all arrived (loop thread). */
struct proxied {
    struct gw_loop *loop;
    unsigned listen_id; /* looked up again when the header is in: a reload may have moved it */
    h2o_socket_t *sock;
    uint64_t accepted_at; /* ms (gw_now_ms): the sweep closes it GW_PROXY_HEADER_TIMEOUT_MS later */
    h2o_linklist_t link;  /* loop->proxy_pending, the oldest first */
};

/* Whether |sock| comes from a "trusted_proxies" range of |l|'s listener (the current generation). */
static bool from_trusted_proxy(const struct gw_listen *l, h2o_socket_t *sock)
{
    const struct gw_listener_conf *lc;
    struct sockaddr_storage sa;

    if (l->admin || l->loop->gen == NULL)
        return false;
    lc = gw_listener_conf(l->loop->gen->cfg, l->listener);
    if (lc->n_trusted_proxies == 0 || h2o_socket_getpeername(sock, (struct sockaddr *)&sa) == 0)
        return false;
    for (size_t i = 0; i < lc->n_trusted_proxies; i++)
        if (gw_cidr_contains_addr(lc->trusted_proxies[i], (struct sockaddr *)&sa))
            return true;
    return false;
}

/* Whether |l| is a plain HTTP listener off loopback, which only its trusted proxies may reach. */
static bool plain_to_proxies_only(const struct gw_listen *l)
{
    return !l->admin && l->loop->gen != NULL &&
           gw_listener_conf(l->loop->gen->cfg, l->listener)->proxies_only;
}

/* Lets go of |p|; its socket stays open, for the caller. */
static void proxy_forget(struct proxied *p)
{
    h2o_linklist_unlink(&p->link);
    p->loop->n_proxy_pending--;
    p->sock->data = NULL;
    free(p);
}

/* Closes |p|'s connection; says why (paced) unless the proxy closed it itself. */
static void proxy_drop(struct proxied *p, const char *why)
{
    h2o_socket_t *sock = p->sock;
    struct sockaddr_storage sa;
    char addr[INET6_ADDRSTRLEN + 8] = "", held[GW_LOG_HELD_LEN];

    if (why != NULL && gw_log_pace_due(&proxy_pace, time(NULL), held)) {
        if (h2o_socket_getpeername(sock, (struct sockaddr *)&sa) != 0)
            gw_sockaddr_string((struct sockaddr *)&sa, addr, sizeof(addr));
        gw_log_kv(GW_LOG_WARN, "proxy_header_refused", "proxy", addr[0] != '\0' ? addr : "?", "reason", why,
                  "suppressed", held, (const char *)NULL);
    }
    proxy_forget(p);
    h2o_socket_close(sock);
}

_Static_assert(GW_PROXY_HEADER_TIMEOUT_MS == 12000, "gw_loop_proxy_sweep's text names the bound");

void gw_loop_proxy_sweep(struct gw_loop *lt, uint64_t now)
{
    struct proxied *p;

    while (!h2o_linklist_is_empty(&lt->proxy_pending)) {
        p = H2O_STRUCT_FROM_MEMBER(struct proxied, link, lt->proxy_pending.next);
        if (now - p->accepted_at < GW_PROXY_HEADER_TIMEOUT_MS)
            return; /* and so are the later ones */
        proxy_drop(p, "no complete PROXY protocol header within 12 s");
    }
}

static struct gw_listen *listen_by_id(struct gw_loop *lt, unsigned id)
{
    for (size_t j = 0; j < lt->n_listens; j++)
        if (lt->listens[j].id == id && lt->listens[j].sock != NULL)
            return &lt->listens[j];
    return NULL;
}

/* loop thread: the header, then the connection goes on as the client's (its address, its limits). */
static void on_proxy_read(h2o_socket_t *sock, const char *err)
{
    struct proxied *p = sock->data;
    struct gw_loop *lt = p->loop;
    unsigned id = p->listen_id;
    struct gw_proxy_hdr h;
    struct gw_listen *l;
    const char *why;

    if (err != NULL) {
        proxy_drop(p, NULL);
        return;
    }
    switch (gw_proxy_parse((const unsigned char *)sock->input->bytes, sock->input->size, &h, &why)) {
    case GW_PROXY_MORE:
        return;
    case GW_PROXY_INVALID:
        proxy_drop(p, why);
        return;
    default:
        break;
    }
    h2o_socket_read_stop(sock);
    h2o_buffer_consume(&sock->input, h.len);
    if (h.has_addr) /* else LOCAL: the proxy's own connection, as its address */
        h2o_socket_setpeername(sock, (struct sockaddr *)&h.src, h.src_len);
    proxy_forget(p);
    if ((l = listen_by_id(lt, id)) == NULL) { /* a reload closed the listener meanwhile */
        h2o_socket_close(sock);
        return;
    }
    admit(l, sock);
}

/* loop thread: reads |sock|'s PROXY header before anything else; 0 or GW_ERR_LIMIT (close it). */
static int proxy_wait(struct gw_listen *l, h2o_socket_t *sock)
{
    struct gw_loop *lt = l->loop;
    struct proxied *p;

    if (lt->n_proxy_pending >= GW_MAX_PROXY_PENDING || (p = calloc(1, sizeof(*p))) == NULL)
        return GW_ERR_LIMIT;
    *p = (struct proxied){.loop = lt, .listen_id = l->id, .sock = sock, .accepted_at = gw_now_ms()};
    h2o_linklist_insert(&lt->proxy_pending, &p->link); /* at the tail */
    lt->n_proxy_pending++;
    sock->data = p;
    h2o_socket_read_start(sock, on_proxy_read);
    return 0;
}

/* loop thread: at shutdown, connections still waiting for their header just close. */
static void proxy_drop_all(struct gw_loop *lt)
{
    while (!h2o_linklist_is_empty(&lt->proxy_pending))
        proxy_drop(H2O_STRUCT_FROM_MEMBER(struct proxied, link, lt->proxy_pending.next), NULL);
}

/* loop thread */
static void on_accept(h2o_socket_t *listener, const char *err)
{
    struct gw_listen *l = listener->data;
    h2o_socket_t *sock;

    if (err != NULL)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
            return;
        if (!from_trusted_proxy(l, sock)) {
            if (plain_to_proxies_only(l)) { /* plain HTTP off loopback: the balancer's connections only */
                log_refused(
                    "a plain HTTP listener off loopback takes connections from its trusted_proxies only");
                h2o_socket_close(sock);
                continue;
            }
            admit(l, sock);
        } else if (proxy_wait(l, sock) != 0) {
            log_refused(
                "trusted proxies' connections already wait for their PROXY protocol header, as many as "
                "may at once");
            h2o_socket_close(sock);
        }
    }
}

/* loop thread: starts accepting on |l|, whose fd is open. */
static void listen_start(struct gw_loop *lt, struct gw_listen *l)
{
    struct gw_server *s = lt->server;

    l->accept = (h2o_accept_ctx_t){.ctx = &lt->ctx, .hosts = l->admin ? s->admin_hosts : s->cmp_hosts};
    l->sock = h2o_evloop_socket_create(lt->ctx.loop, l->fd, H2O_SOCKET_FLAG_DONT_READ); /* owns l->fd */
    h2o_socket_read_start(l->sock, on_accept);
}

/* loop thread: stops accepting on |l| and closes its socket (the kernel's, if this was the last fd). */
static void listen_close(struct gw_listen *l)
{
    h2o_socket_read_stop(l->sock);
    h2o_socket_close(l->sock);
    l->sock = NULL;
    l->fd = -1;
}

/*
 * loop thread: the listening sockets of |g|'s listeners. A listener kept keeps its sockets (same id);
 * a new one takes the socket the reload bound for this loop; the sockets of a listener |g| does not
 * have close, after the new ones accept (docs/operations.md, "Reload").
 */
static void relayout(struct gw_loop *lt, struct gw_gen *g)
{
    struct gw_server *s = lt->server;
    struct gw_listen next[GW_LOOP_LISTENS];
    size_t t = (size_t)(lt - s->loops), n = 0;

    for (size_t i = 0; i < g->n_ssl_ctx; i++) {
        bool have = false;
        for (size_t j = 0; j < lt->n_listens && n < GW_LOOP_LISTENS; j++) {
            if (lt->listens[j].id != g->keys[i].id)
                continue;
            next[n] = lt->listens[j];
            next[n++].listener = i;
            have = true;
        }
        if (!have && g->bound != NULL && g->bound[i * s->n_loops + t] >= 0 && n < GW_LOOP_LISTENS) {
            next[n] = (struct gw_listen){.loop = lt,
                                         .listener = i,
                                         .id = g->keys[i].id,
                                         .admin = g->keys[i].admin,
                                         .fd = g->bound[i * s->n_loops + t]};
            g->bound[i * s->n_loops + t] = -1;
            listen_start(lt, &next[n++]);
        }
    }
    pthread_mutex_lock(&s->layout_lock); /* a hand-over copies the fds: none closes while it does */
    for (size_t j = 0; j < lt->n_listens; j++) {
        bool kept = false;
        for (size_t i = 0; i < n && !kept; i++)
            kept = next[i].sock == lt->listens[j].sock;
        if (!kept)
            listen_close(&lt->listens[j]);
    }
    memcpy(lt->listens, next, n * sizeof(*next));
    lt->n_listens = n;
    for (size_t j = 0; j < n; j++)
        lt->listens[j].sock->data = &lt->listens[j];
    pthread_mutex_unlock(&s->layout_lock);
}

void gw_loop_post(struct gw_loop *lt, h2o_multithread_receiver_t *rx, h2o_multithread_message_t *msg)
{
    pthread_mutex_lock(&lt->post_lock);
    if (!lt->closed)
        h2o_multithread_send_message(rx, msg);
    pthread_mutex_unlock(&lt->post_lock);
}

void gw_loop_refresh(struct gw_loop *lt)
{
    struct gw_server *s = lt->server;
    struct gw_gen *g;

    if (lt->gen != NULL && lt->gen->id == gw_gens_current_id(s->gens))
        return;
    g = gw_gens_acquire(s->gens);
    relayout(lt, g);
    /* a connection's SSL holds its SSL_CTX: those accepted before keep the old certificate */
    for (size_t j = 0; j < lt->n_listens; j++)
        lt->listens[j].accept.ssl_ctx = g->ssl_ctx[lt->listens[j].listener];
    gw_gen_drop(lt->gen);
    lt->gen = g;
    atomic_store(&lt->seen, g->id);
}

/* loop thread: context, receivers and listening sockets of one loop. */
static void loop_setup(struct gw_loop *lt)
{
    struct gw_server *s = lt->server;

    h2o_context_init(&lt->ctx, h2o_evloop_create(), &s->h2o);
    h2o_multithread_register_receiver(lt->ctx.queue, &lt->done_rx, gw_http_on_done);
    h2o_multithread_register_receiver(lt->ctx.queue, &lt->admin_rx, gw_admin_on_reloaded);
    h2o_linklist_init_anchor(&lt->proxy_pending);
    h2o_linklist_init_anchor(&lt->conns);
    for (size_t j = 0; j < lt->n_listens; j++)
        listen_start(lt, &lt->listens[j]);
    gw_loop_refresh(lt);
    gw_sweep_start(lt);
}

/*
 * loop thread: graceful shutdown (docs/design.md H7). Stop accepting, ask HTTP/2 peers to go away
 * (GOAWAY) and HTTP/1 to close after the next response, then run until every connection closed
 * and every job came back, or GW_DRAIN_TIMEOUT_MS passed. Idle HTTP/1.1 keep-alive connections
 * close at http1.req_timeout, which is below the drain deadline (docs/design.md H8.12); the sweep goes
 * on meanwhile, so that a client which takes none of its answers is ended after limits.send_timeout.
 */
static void loop_drain(struct gw_loop *lt)
{
    uint64_t deadline = gw_now_ms() + GW_DRAIN_TIMEOUT_MS;

    for (size_t j = 0; j < lt->n_listens; j++)
        listen_close(&lt->listens[j]);
    proxy_drop_all(lt);
    h2o_context_request_shutdown(&lt->ctx);
    while ((lt->num_conns != 0 || lt->jobs_inflight != 0) && gw_now_ms() < deadline) {
        int32_t wait = gw_sweep_due(lt);
        h2o_evloop_run(lt->ctx.loop, wait < DRAIN_POLL_MS ? wait : DRAIN_POLL_MS);
    }
    if (lt->num_conns != 0 || lt->jobs_inflight != 0) {
        /* h2o_context_dispose asserts while connections live: leave the context to exit() */
        gw_log(GW_LOG_WARN, "drain_timeout", "%zu connections and %zu jobs still open after %d ms",
               lt->num_conns, lt->jobs_inflight, GW_DRAIN_TIMEOUT_MS);
        return;
    }
    gw_sweep_stop(lt);
    /* request_shutdown leaves the GOAWAY-resend timer linked; dispose asserts on it (docs/design.md H8.11) */
    if (h2o_timeout_is_linked(&lt->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&lt->ctx.http2._graceful_shutdown_timeout);
    pthread_mutex_lock(&lt->post_lock); /* a post still writing to the queue's pipe ends first */
    lt->closed = true;
    pthread_mutex_unlock(&lt->post_lock);
    h2o_multithread_unregister_receiver(lt->ctx.queue, &lt->done_rx);
    h2o_multithread_unregister_receiver(lt->ctx.queue, &lt->admin_rx);
    gw_gen_drop(lt->gen);
    lt->gen = NULL;
    h2o_loop_t *loop = lt->ctx.loop;
    h2o_context_dispose(&lt->ctx);
    h2o_evloop_destroy(loop);
    lt->drained = true;
}

/* loop thread */
static void *loop_main(void *arg)
{
    struct gw_loop *lt = arg;
    struct gw_server *s = lt->server;

    loop_setup(lt);
    h2o_barrier_wait(&s->ready);
    /* one turn at a time, the sweep due between them: none of its bounds waits for an h2o timer (sweep.c) */
    while (!atomic_load(&s->stopping)) {
        h2o_evloop_run(lt->ctx.loop, gw_sweep_due(lt));
        gw_loop_refresh(lt); /* gw_server_wake: let go of the old generation */
    }
    loop_drain(lt);
    return NULL;
}

const struct gw_listener_conf *gw_listener_conf(const struct gw_config *cfg, size_t i)
{
    return i < cfg->n_listeners ? &cfg->listeners[i] : &cfg->admin.listen;
}

/* A host of one catch-all path served by |on_req|; NULL when out of memory. */
static h2o_hostconf_t *catch_all(struct gw_server *s, const char *name,
                                 int (*on_req)(h2o_handler_t *, h2o_req_t *))
{
    h2o_hostconf_t *host = h2o_config_register_host(&s->h2o, h2o_iovec_init(name, strlen(name)), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->on_req = on_req;
    return host;
}

/*
 * The h2o global config: limits, server name, and two hosts of one catch-all path each: CMP
 * (routing is gw_route_match) and the admin listener's. Each listener's accept context names the
 * one it serves, so no Host header can reach the other.
 */
static int h2o_setup(struct gw_server *s, char *err)
{
    h2o_config_init(&s->h2o);
    s->h2o_inited = true;
    s->h2o.max_request_entity_size = GW_MAX_CMP_BODY; /* default is 1 GiB (docs/design.md H8.5) */
    s->h2o.server_name = h2o_iovec_init(H2O_STRLIT("cmpgw"));
    s->h2o.http1.req_timeout = GW_HTTP1_REQ_TIMEOUT_MS;
    s->h2o.handshake_timeout = GW_H2O_HANDSHAKE_TIMEOUT_MS; /* limits.handshake_timeout ends it first */
    /* h2o upgrades plain HTTP/1.1 to HTTP/2 on "Upgrade: h2c" by default: HTTP/2 only where a TLS
       listener offers it in ALPN ("http2"), with its body sweep (docs/design.md H8.13) */
    s->h2o.http1.upgrade_to_http2 = 0;
    if ((s->cmp_hosts[0] = catch_all(s, "default", gw_http_on_req)) == NULL ||
        (s->admin_hosts[0] = catch_all(s, "admin", gw_admin_on_req)) == NULL) {
        snprintf(err, GW_ERR_LEN, "listener: out of memory");
        return GW_ERR_NOMEM;
    }
    return 0;
}

/* Frees what gw_server_start built, whatever stage it reached. Loops are joined already. */
static void server_free(struct gw_server *s)
{
    if (s->loops != NULL) {
        for (size_t t = 0; t < s->n_loops; t++) {
            for (size_t j = 0; j < s->loops[t].n_listens; j++)
                if (s->loops[t].listens[j].sock == NULL && s->loops[t].listens[j].fd >= 0)
                    close(s->loops[t].listens[j].fd);
            free(s->loops[t].listens);
            pthread_mutex_destroy(&s->loops[t].post_lock);
        }
        free(s->loops);
    }
    free(s->keys);
    pthread_mutex_destroy(&s->layout_lock);
    if (s->h2o_inited)
        h2o_config_dispose(&s->h2o);
    gw_guard_free(s->guard);
    free(s);
}

/* How many listeners |cfg| has, the admin listener's among them: the last (gw_listener_conf). */
static size_t n_listen_confs(const struct gw_config *cfg)
{
    return cfg->n_listeners + (cfg->admin.listen.port != 0 ? 1 : 0);
}

/* The keys of |cfg|'s listeners, each with the id of the socket in |prev| (n_prev) it keeps, or a new one. */
static struct gw_listen_key *keys_of(struct gw_server *s, const struct gw_config *cfg,
                                     const struct gw_listen_key *prev, size_t n_prev, size_t *n)
{
    struct gw_listen_key *keys;

    *n = n_listen_confs(cfg);
    if ((keys = calloc(*n + 1, sizeof(*keys))) == NULL)
        return NULL;
    for (size_t i = 0; i < *n; i++) {
        const struct gw_listener_conf *lc = gw_listener_conf(cfg, i);
        struct gw_listen_key *k = &keys[i];

        snprintf(k->address, sizeof(k->address), "%s", lc->address);
        k->port = lc->port;
        k->tls = lc->tls_cert != NULL;
        k->http2 = lc->http2;
        k->admin = i == cfg->n_listeners;
        for (size_t j = 0; j < n_prev && k->id == 0; j++)
            if (strcmp(prev[j].address, k->address) == 0 && prev[j].port == k->port &&
                prev[j].tls == k->tls && prev[j].http2 == k->http2 && prev[j].admin == k->admin)
                k->id = prev[j].id;
        if (k->id == 0)
            k->id = ++s->last_id;
    }
    return keys;
}

/* Allocates the loops (each with room for GW_LOOP_LISTENS sockets) and the keys of |cfg|'s listeners. */
static int server_alloc(struct gw_server *s, const struct gw_config *cfg, char *err)
{
    pthread_mutex_init(&s->layout_lock, NULL);
    if ((s->keys = keys_of(s, cfg, NULL, 0, &s->n_keys)) == NULL ||
        (s->loops = calloc(s->n_loops, sizeof(*s->loops))) == NULL)
        goto nomem;
    for (size_t t = 0; t < s->n_loops; t++) {
        s->loops[t].server = s;
        pthread_mutex_init(&s->loops[t].post_lock, NULL);
        atomic_init(&s->loops[t].seen, 0);
        if ((s->loops[t].listens = calloc(GW_LOOP_LISTENS, sizeof(struct gw_listen))) == NULL)
            goto nomem;
    }
    return 0;

nomem:
    snprintf(err, GW_ERR_LEN, "listener: out of memory");
    return GW_ERR_NOMEM;
}

/* Starts workers and loop threads with every signal blocked: signals belong to main (docs/design.md
 * H7). */
static int start_threads(struct gw_server *s, char *err)
{
    sigset_t all, saved;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    s->pool = gw_pool_new(s->workers, s->queue_depth, err);
    if (s->pool != NULL) {
        h2o_barrier_init(&s->ready, s->n_loops + 1);
        /* before the loops: their threads, and the reloads a POST /reload on one of them starts, read it */
        s->running = true;
        for (size_t t = 0; t < s->n_loops; t++) /* aborts on failure */
            h2o_multithread_create_thread(&s->loops[t].tid, NULL, loop_main, &s->loops[t]);
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (s->pool == NULL)
        return GW_ERR_NOMEM;
    h2o_barrier_wait(&s->ready); /* every receiver is registered before anyone may signal it */
    return 0;
}

/* Binds, one per loop thread, the listeners of |next| that the running ones do not have (a reload). */
static int bind_new(struct gw_server *s, struct gw_gen *next, char *err)
{
    if ((next->bound = calloc(next->n_ssl_ctx * s->n_loops + 1, sizeof(int))) == NULL) {
        snprintf(err, GW_ERR_LEN, "listener: out of memory");
        return GW_ERR_NOMEM;
    }
    next->n_bound = next->n_ssl_ctx * s->n_loops;
    for (size_t i = 0; i < next->n_bound; i++)
        next->bound[i] = -1;
    for (size_t i = 0; i < next->n_ssl_ctx; i++) {
        const struct gw_listener_conf *lc = gw_listener_conf(next->cfg, i);
        uint16_t port = lc->port;
        bool running = false;

        for (size_t j = 0; j < s->n_keys && !running; j++)
            running = s->keys[j].id == next->keys[i].id;
        if (running)
            continue;
        if (bind_loops(s, lc, &port, &next->bound[i * s->n_loops], err) != 0)
            return GW_ERR_IO;
        log_listening(lc, &next->keys[i], port, " (added by a reload)");
    }
    return 0;
}

/*
 * The admission limits of |cfg| with the requests the gateway can hold in flight at once: each worker's,
 * a full queue (|s|'s pool: both apply at a restart only), and a request suspended on every upstream
 * call of |cfg| (docs/design.md D24).
 */
static struct gw_guard_conf admission_of(const struct gw_server *s, const struct gw_config *cfg)
{
    struct gw_guard_conf gc = cfg->limits.admission;
    uint64_t held = (uint64_t)s->workers + s->queue_depth;

    for (size_t i = 0; i < cfg->n_upstreams; i++)
        held += cfg->upstreams[i].max_inflight;
    gc.max_requests = held > UINT32_MAX ? UINT32_MAX : (uint32_t)held;
    return gc;
}

int gw_server_prepare(struct gw_server *s, struct gw_gen *next, char *err)
{
    const struct gw_config *cfg = next->cfg;
    size_t n;
    int rc;

    if ((next->keys = keys_of(s, cfg, s->keys, s->n_keys, &n)) == NULL ||
        (next->ssl_ctx = calloc(n + 1, sizeof(*next->ssl_ctx))) == NULL) {
        snprintf(err, GW_ERR_LEN, "listener: out of memory");
        return GW_ERR_NOMEM;
    }
    next->n_ssl_ctx = n;
    for (size_t i = 0; i < n; i++) {
        const struct gw_listener_conf *lc = gw_listener_conf(cfg, i);
        if (lc->tls_cert != NULL &&
            (rc = gw_tls_ctx_new(lc, i == cfg->n_listeners, &next->ssl_ctx[i], err)) != 0)
            return rc;
    }
    return s->running ? bind_new(s, next, err) : 0;
}

int gw_server_check_tls(const struct gw_config *cfg, char *err)
{
    SSL_CTX *ctx;
    int rc;

    for (size_t i = 0; i < n_listen_confs(cfg); i++) {
        const struct gw_listener_conf *lc = gw_listener_conf(cfg, i);
        if (lc->tls_cert == NULL)
            continue;
        rc = gw_tls_ctx_new(lc, i == cfg->n_listeners, &ctx, err);
        SSL_CTX_free(ctx);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int gw_server_apply(struct gw_server *s, struct gw_gen *g)
{
    struct gw_listen_key *keys = malloc((g->n_ssl_ctx + 1) * sizeof(*keys));
    uint64_t deadline = gw_now_ms() + GW_APPLY_TIMEOUT_MS;
    size_t t = 0;

    if (keys != NULL) {
        memcpy(keys, g->keys, g->n_ssl_ctx * sizeof(*keys));
        free(s->keys);
        s->keys = keys;
        s->n_keys = g->n_ssl_ctx;
    }
    /* upstreams and their max_inflight change at a reload: so does what the requests in flight may be */
    if (gw_guard_set_max_requests(s->guard, admission_of(s, g->cfg).max_requests) != 0)
        gw_log(GW_LOG_WARN, "reload", "out of memory: requests in flight stay bounded as before the reload");
    /* the budget of failed authentications sizes nothing, so a reload applies it (its window is never 0) */
    (void)gw_guard_set_auth_budget(s->guard, g->cfg->limits.admission.auth_failures,
                                   g->cfg->limits.admission.auth_failure_window, time(NULL), reload_shut_out,
                                   NULL);
    gw_server_wake(s);
    while (t < s->n_loops && gw_now_ms() < deadline) {
        if (atomic_load(&s->loops[t].seen) >= g->id)
            t++;
        else
            gw_sleep_ms(1);
    }
    return keys != NULL && t == s->n_loops ? 0 : GW_ERR_TIMEOUT;
}

void gw_server_wake(struct gw_server *s)
{
    for (size_t t = 0; s != NULL && s->running && t < s->n_loops; t++)
        gw_loop_post(&s->loops[t], &s->loops[t].done_rx, NULL); /* NULL only wakes the loop */
}

struct gw_server *gw_server_start(struct gw_gens *gens, int (*reload)(void *arg, char *err), void *reload_arg,
                                  struct gw_inherited *inherited, int *failed, char *err)
{
    struct gw_guard_conf admission;
    struct gw_server *s = NULL;
    struct gw_gen *g = gw_gens_acquire(gens);
    const struct gw_config *cfg = g->cfg;
    int rc;

    *failed = GW_ERR_UNAVAILABLE; /* a port in use, out of memory: unless the TLS contexts say otherwise */
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        snprintf(err, GW_ERR_LEN, "listener: out of memory");
        gw_gen_drop(g);
        return NULL;
    }
    s->gens = gens;
    s->boot = cfg;
    s->reload = reload;
    s->reload_arg = reload_arg;
    s->workers = cfg->workers;
    s->queue_depth = cfg->queue_depth;
    s->n_loops = cfg->loop_threads != 0 ? cfg->loop_threads : GW_DEFAULT_LOOP_THREADS;
    atomic_init(&s->stopping, false);
    atomic_init(&s->admin_reloading, false);
    if (cfg->n_listeners == 0) {
        snprintf(err, GW_ERR_LEN, "listener: no listeners configured");
        goto err;
    }
    admission = admission_of(s, cfg);
    if ((s->guard = gw_guard_new(&admission)) == NULL) {
        snprintf(err, GW_ERR_LEN, "listener: out of memory for the connection table");
        goto err;
    }
    if (server_alloc(s, cfg, err) != 0)
        goto err;
    if ((rc = gw_server_prepare(s, g, err)) != 0) {
        *failed = rc; /* a certificate or key libssl refuses is GW_ERR_INVAL: as `cmpgw check` takes it */
        goto err;
    }
    if (h2o_setup(s, err) != 0 || bind_all(s, inherited, err) != 0)
        goto err;
    s->boot = NULL;
    gw_gen_drop(g);
    return s;

err:
    gw_gen_drop(g);
    server_free(s);
    return NULL;
}

int gw_server_run(struct gw_server *s, char *err)
{
    return start_threads(s, err) != 0 ? GW_ERR_NOMEM : 0;
}

int gw_server_listen_fds(struct gw_server *s, int **fds, size_t *n)
{
    size_t k = 0;
    int rc = 0;

    *n = 0;
    if ((*fds = calloc(s->n_loops * GW_LOOP_LISTENS + 1, sizeof(**fds))) == NULL)
        return GW_ERR_NOMEM;
    /* copies, made under the lock: a relayout may close a listener's socket once it is released, and
       the number be reused by another file, before the hand-over sends them */
    pthread_mutex_lock(&s->layout_lock);
    for (size_t t = 0; t < s->n_loops && rc == 0; t++)
        for (size_t j = 0; j < s->loops[t].n_listens && rc == 0; j++)
            if (((*fds)[k] = fcntl(s->loops[t].listens[j].fd, F_DUPFD_CLOEXEC, 0)) < 0)
                rc = GW_ERR_IO;
            else
                k++;
    pthread_mutex_unlock(&s->layout_lock);
    if (rc != 0) {
        while (k > 0)
            close((*fds)[--k]);
        free(*fds);
        *fds = NULL;
        return rc;
    }
    *n = k;
    return 0;
}

void gw_server_stop(struct gw_server *s, bool successor)
{
    size_t undrained = 0;

    if (s == NULL)
        return;
    atomic_store(&s->successor, successor);
    if (!s->running) { /* bound, never served: nothing to drain */
        server_free(s);
        return;
    }
    atomic_store(&s->stopping, true);
    gw_server_wake(s);
    for (size_t t = 0; t < s->n_loops; t++) {
        pthread_join(s->loops[t].tid, NULL);
        undrained += !s->loops[t].drained;
    }
    /*
     * A drained loop has no job left in the pool. After a drain timeout, jobs still queued run
     * now and post to a loop that no longer reads: their answers are taken back here once the pool
     * is gone (a certificate one carried is withdrawn), their connections abandoned to process
     * exit, as h2o_context_dispose would assert on them. A request whose upstream call runs
     * without a worker comes back through the pool once the call ends (each has its deadline), and
     * the pool waits for it, so that its certificate is recorded before the engines go (design.md
     * D24).
     */
    if (undrained != 0)
        gw_log(GW_LOG_INFO, "shutdown", "running the requests still queued or waiting for an upstream");
    gw_pool_free(s->pool);
    for (size_t t = 0; t < s->n_loops && undrained != 0; t++)
        if (!s->loops[t].drained)
            gw_http_abandon(&s->loops[t].done_rx);
    if (undrained != 0) {
        gw_log(GW_LOG_WARN, "shutdown", "%zu loop threads did not drain in time", undrained);
        return;
    }
    server_free(s);
}

size_t gw_server_queued(struct gw_server *s)
{
    return s != NULL ? gw_pool_queued(s->pool) : 0;
}
