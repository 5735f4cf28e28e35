/*
 * TLS for the listener: one SSL_CTX per listener conf, and the verified client certificate of each
 * connection, captured when its handshake completes (docs/design.md H3, H4).
 */
#include "gateway/listener_local.h"
#include "gateway/cmp/exchange.h"
#include "base/cidr.h"
#include "base/clock.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/x509.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* What the session id context is computed from first: a new form of it resumes nothing made before. */
static const char sid_ctx_tag[] = "cmpgw TLS session 2";

static void handshake_abandoned(struct gw_conn *c);

static void conn_on_close(void *data)
{
    struct gw_conn *c = data;

    if ((c->flight_sent || c->handshake_late) && !c->handshaken && !c->refused)
        handshake_abandoned(c);
    c->loop->num_conns--;
    h2o_linklist_unlink(&c->link);
    if (c->admin) { /* never counted in the guard */
        c->loop->admin_conns--;
        c->loop->admin_evicted -= c->evicted;
    } else if (!c->released)
        gw_guard_conn_close(c->loop->server->guard, (struct sockaddr *)&c->addr, c->addr_len);
    X509_free(c->peer);
    sk_X509_pop_free(c->peer_chain, X509_free);
    free(c);
}

_Static_assert(GW_MAX_ADMIN_CONNECTIONS == 16,
               "admin_connection_evicted's text names the admin listener's cap");

/* Whether |o|, an admin connection, may be shut down to make room: not already, not the one whose POST
 * /reload runs, and with an answer on its way (|writing|) or nothing to send. */
static bool evictable(const struct gw_conn *o, bool writing)
{
    return o->admin && !o->ended && !o->answer_owed && (h2o_socket_is_writing(o->sock) != 0) == writing;
}

/*
 * loop thread: room for one more connection on the admin listener, at its cap. Whoever reaches the
 * listener (any local account, on loopback) could otherwise fill it with connections that send nothing
 * and, connecting again as libh2o's request timeout closes them, keep /healthz refused for good. The
 * oldest connection with nothing to send (idle, or its request still arriving) is shut down (libh2o
 * closes it), so that holding the cap takes a new connection for every one that comes. Where there is
 * none, the oldest whose answer is on its way: pipelined requests whose answers the client reads slowly
 * enough to stay within send_timeout, or not at all, hold the cap as well. false if there is neither.
 */
static bool admin_make_room(struct gw_loop *loop)
{
    static struct gw_log_pace pace = GW_LOG_PACE_INIT; /* anyone who reaches the listener causes it */
    static const char *const why[] = {
        "the admin listener holds its 16 connections (per loop thread): the oldest with nothing to send was "
        "closed for a new one",
        "the admin listener holds its 16 connections (per loop thread), each with an answer on its way: the "
        "oldest, whose answer was not read, was closed for a new one"};
    char held[GW_LOG_HELD_LEN];

    for (int writing = 0; writing <= 1; writing++) {
        for (h2o_linklist_t *n = loop->conns.next; n != &loop->conns; n = n->next) { /* oldest first */
            struct gw_conn *o = H2O_STRUCT_FROM_MEMBER(struct gw_conn, link, n);
            int fd = evictable(o, writing) ? h2o_socket_get_fd(o->sock) : -1;

            if (fd < 0 || shutdown(fd, SHUT_RDWR) != 0)
                continue;
            o->ended = o->evicted = true;
            loop->admin_evicted++;
            if (gw_log_pace_due(&pace, time(NULL), held))
                gw_log_kv(GW_LOG_WARN, "admin_connection_evicted", "reason", why[writing], "suppressed", held,
                          (const char *)NULL);
            return true;
        }
    }
    return false;
}

/*
 * Whether |o|, a CMP connection, may be shut down for a newcomer at a connection cap: past its opening (a
 * completed TLS handshake, on a plain listener a request; before it limits.handshake_timeout bounds it), with
 * no request handed to the workers and not yet answered, and none of its requests past every check of its
 * sender (gw_cmp_response.proven) answered within GW_PROVEN_HOLD_MS: one trusted certificate and a genm a
 * connection would otherwise hold every place for good. A client without credentials can hold a connection
 * past its opening for good: a request to an unknown path every few seconds (libh2o's HTTP/1 request timer
 * starts again with each), or over HTTP/2 no stream and a PING now and then (libh2o's idle timer starts again
 * with each read). A verified TLS client certificate proves nothing by itself (it may be revoked: looked up
 * per request), but keeps its connection GW_PEER_GRACE_MS after the handshake until its first answer: libh2o
 * hands a request over only once its body arrived, and devices behind one address re-enrolling at once would
 * otherwise close each other part-way through their uploads. An answer not proven ends that grace.
 */
static bool unproven(const struct gw_conn *o)
{
    bool opened = o->sock->ssl != NULL ? o->handshaken : o->requested;

    return !o->admin && !o->ended && opened && o->in_flight == 0 &&
           !gw_guard_conn_kept(gw_now_ms(), o->proven_at, o->grace_until);
}

_Static_assert(GW_PROVEN_HOLD_MS == 30000 && GW_PEER_GRACE_MS == 5000,
               "connection_evicted's text names the bounds that keep a connection");

/*
 * loop thread: room for one more CMP connection from |sa|, at max_connections (|per_address| false) or at its
 * address's max_connections_per_address. Clients without credentials could otherwise hold every place for
 * good (unproven) and have every newcomer closed at accept. The loop's oldest unproven connection (of |sa|'s
 * address, at its cap) is shut down (libh2o closes it) and its place given back at once, so that holding the
 * cap takes a new connection for every one that comes, and a client that proved itself keeps its place. The
 * connections of the other loop threads are theirs: a newcomer whose thread holds none is refused. false if
 * there is none.
 */
static bool cmp_make_room(struct gw_loop *loop, const struct sockaddr *sa, socklen_t len, bool per_address)
{
    static struct gw_log_pace pace = GW_LOG_PACE_INIT; /* anyone who connects causes it: paced */
    static const char *const why[] = {
        "the server holds max_connections connections: the oldest of no proven client (no request in flight, "
        "none that passed its checks answered in the last 30 s, not within 5 s after its TLS handshake with "
        "a verified client certificate before its first answer) was closed for a new one",
        "its address holds max_connections_per_address connections: the oldest of no proven client (no "
        "request in flight, none that passed its checks answered in the last 30 s, not within 5 s after its "
        "TLS handshake with a verified client certificate before its first answer) was closed for a new one "
        "of it"};
    struct gw_guard *guard = loop->server->guard;
    char peer[INET6_ADDRSTRLEN + 8], held[GW_LOG_HELD_LEN];

    for (h2o_linklist_t *n = loop->conns.next; n != &loop->conns; n = n->next) { /* oldest first */
        struct gw_conn *o = H2O_STRUCT_FROM_MEMBER(struct gw_conn, link, n);
        int fd = unproven(o) ? h2o_socket_get_fd(o->sock) : -1;

        if (fd < 0 ||
            (per_address && !gw_guard_same_address(guard, (struct sockaddr *)&o->addr, o->addr_len, sa, len)))
            continue;
        if (shutdown(fd, SHUT_RDWR) != 0)
            continue;
        o->ended = o->released = true;
        gw_guard_conn_close(guard, (struct sockaddr *)&o->addr, o->addr_len);
        if (gw_log_pace_due(&pace, time(NULL), held)) {
            gw_sockaddr_string((struct sockaddr *)&o->addr, peer, sizeof(peer));
            gw_log_kv(GW_LOG_WARN, "connection_evicted", "peer", peer, "reason", why[per_address],
                      "suppressed", held, (const char *)NULL);
        }
        return true;
    }
    return false;
}

/* loop thread: counts |c| in the server's guard, making room at a cap (cmp_make_room) at most twice: once for
 * max_connections, once for its address's. 0, or gw_guard_conn_open's refusal. */
static int cmp_admit(struct gw_loop *loop, struct gw_conn *c)
{
    const struct sockaddr *sa = (struct sockaddr *)&c->addr;
    int rc;

    for (int tries = 0; (rc = gw_guard_conn_open(loop->server->guard, sa, c->addr_len)) != 0; tries++)
        if ((rc != GW_ERR_LIMIT && rc != GW_ERR_BUSY) || tries == 2 ||
            !cmp_make_room(loop, sa, c->addr_len, rc == GW_ERR_BUSY))
            break;
    return rc;
}

_Static_assert(GW_ADMIN_INPUT_BUFFER >= H2O_MAX_REQLEN + GW_MAX_CMP_BODY + 4096,
               "an admin request h2o takes whole fits its input buffer with room for a read");

/*
 * The admin listener's input buffers (loop thread). libh2o moves a request that outgrows its input
 * buffer to one twice as large and frees the first as it is, the bearer token of a POST /reload in it,
 * out of the reach of admin.c's wipe: from h2o's default 8 KiB, any request of more than
 * 4 KiB arriving in more than one read (a long token, a padded header). Allocated at once as large as
 * the largest request h2o takes, none is moved, but by input that outgrows it at one read event:
 * libh2o reads on while each read fills what it asked for, and then moves it all (docs/security.md); the
 * sweep ends such a connection (sweep.c), which bounds its memory, not the move.
 * Kept by no allocator list, each is freed once the request in it was answered, its head wiped.
 */
static __thread h2o_buffer_prototype_t admin_input = {.allocator = {.max = 0},
                                                      ._initial_buf = {.capacity = GW_ADMIN_INPUT_BUFFER}};

int gw_conn_attach(struct gw_loop *loop, h2o_socket_t *sock, unsigned listener, bool admin)
{
    struct gw_conn *c;
    int rc;

    /* the admin listener has a small cap of its own: a CMP flood must not hide /healthz, nor an admin one */
    if (admin && loop->admin_conns - loop->admin_evicted >= GW_MAX_ADMIN_CONNECTIONS &&
        !admin_make_room(loop))
        return GW_ERR_LIMIT;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return GW_ERR_NOMEM;
    c->addr_len = h2o_socket_getpeername(sock, (struct sockaddr *)&c->addr);
    if (!admin && (rc = cmp_admit(loop, c)) != 0) {
        free(c);
        return rc;
    }
    c->loop = loop;
    c->admin = admin;
    c->listener = listener;
    c->gen = loop->gen->id;
    c->sock = sock;
    c->accepted_at = gw_now_ms();
    h2o_linklist_insert(&loop->conns, &c->link);
    loop->num_conns++;
    loop->admin_conns += admin;
    sock->on_close.cb = conn_on_close;
    sock->on_close.data = c;
    if (admin)
        h2o_buffer_set_prototype(&sock->input, &admin_input);
    return 0;
}

struct gw_conn *gw_conn_get0(h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);

    /* over HTTP/2 this is the connection's socket, shared by its streams */
    if (sock == NULL || sock->on_close.cb != conn_on_close)
        return NULL;
    return sock->on_close.data;
}

void gw_conn_mark_requested(h2o_req_t *req)
{
    struct gw_conn *c = gw_conn_get0(req);

    if (c != NULL)
        c->requested = true; /* past its opening: limits.handshake_timeout no longer applies */
}

/*
 * Info callback: at handshake end keep the peer certificate, only if it verified (with
 * SSL_VERIFY_PEER a failed verification already aborted the handshake; this is a second lock).
 * TLS 1.3 reports HANDSHAKE_DONE again after sending tickets (docs/design.md H8.4), hence the guard.
 */
static struct gw_metric *m_handshakes;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
    static const char *const labels[] = {"listener", "result", "reason", NULL};

    m_handshakes =
        gw_metric_new("cmpgw_tls_handshakes_total",
                      "TLS handshakes by listener (cmp, admin) and result (ok, failed, abandoned: ended "
                      "by the client or a timeout after the listener's flight, timeout: ended by "
                      "limits.handshake_timeout before it); a failed one by the fatal "
                      "alert OpenSSL chose for it (e.g. \"unknown CA\"), which the client does not read: "
                      "the listener closes the connection.",
                      GW_METRIC_COUNTER, labels, NULL, 0);
}

static void count_handshake(const struct gw_conn *c, const char *result, const char *reason)
{
    pthread_once(&m_once, metrics_init);
    gw_metric_add(m_handshakes, (const char *const[]){c->admin ? "admin" : "cmp", result, reason}, 1);
}

/* |c|'s listener as configured, "address:port" ("[address]:port" for IPv6), into |buf|; its kind (cmp,
   admin) where the loop's configuration no longer has it (a reload removed it). Loop thread. */
static const char *listener_named(const struct gw_conn *c, char *buf, size_t cap)
{
    const struct gw_gen *g = c->loop->gen;

    for (size_t i = 0; i < g->n_ssl_ctx; i++) {
        const struct gw_listen_key *k = &g->keys[i];
        bool v6 = strchr(k->address, ':') != NULL;

        if (k->id != c->listener)
            continue;
        snprintf(buf, cap, "%s%s%s:%u", v6 ? "[" : "", k->address, v6 ? "]" : "", (unsigned)k->port);
        return buf;
    }
    return c->admin ? "admin" : "cmp";
}

/*
 * An internal_error the gateway ended a handshake with: its own failure, which no client causes nor
 * reads (the listener's key in a token that went away fails each signature). The metric counts it, and
 * this line says which listener and OpenSSL's reasons, the first of its queue (the cause, a token's) and
 * the last (the handshake's step), read without taking them from the queue, which libh2o's
 * SSL_get_error reads after. Every client's handshake fails so: paced, as each connection causes one.
 */
static void log_internal_error(const struct gw_conn *c)
{
    static struct gw_log_pace pace = GW_LOG_PACE_INIT;
    unsigned long first = ERR_peek_error(), last = ERR_peek_last_error();
    char held[GW_LOG_HELD_LEN], listener[96] /* a gw_listen_key's address, [], :port */, cause[256],
        step[256], reason[520];

    if (!gw_log_pace_due(&pace, time(NULL), held))
        return;
    ERR_error_string_n(first, cause, sizeof(cause));
    ERR_error_string_n(last, step, sizeof(step));
    if (first == 0)
        snprintf(reason, sizeof(reason), "OpenSSL gave no reason");
    else
        snprintf(reason, sizeof(reason), "%s%s%s", cause, last != first ? "; " : "",
                 last != first ? step : "");
    gw_log_kv(
        GW_LOG_ERROR, "tls_handshake_internal_error", "listener",
        listener_named(c, listener, sizeof(listener)), "reason", reason, "msg",
        "the gateway ended a TLS handshake with internal_error, its own failure (a listener's key in a token "
        "that went away: restart once it is back); not counted against the client",
        "suppressed", held, (const char *)NULL);
}

/*
 * A handshake the gateway ended with a fatal alert (the one OpenSSL chose; libh2o closes the
 * connection without sending it): a client chain that does not verify costs up to some 12 ms
 * (GW_MAX_TLS_CLIENT_CHAIN), and a client could repeat it as fast as it connects. So it
 * counts as a failed authentication of its address, whose budget, once used up, closes the address's
 * next connections before their handshake (listener.c). Not on the admin listener, which the guard
 * does not count. Nor an internal_error (RFC 8446 §6.2), the gateway's own failure (its key in a token
 * that fails to sign): every client's handshake ends so, and counting it would shut out a balancer's
 * address and blame it in the log; the metric and a paced line say it (log_internal_error). Marked
 * refused all the same: the close does not count it as abandoned either.
 */
static void handshake_refused(struct gw_conn *c, int alert)
{
    char what[64];

    c->refused = true;
    count_handshake(c, "failed", SSL_alert_desc_string_long(alert));
    if ((alert & 0xff) == SSL_AD_INTERNAL_ERROR)
        log_internal_error(c);
    if (c->admin || (alert & 0xff) == SSL_AD_INTERNAL_ERROR)
        return;
    snprintf(what, sizeof(what), "TLS handshake: %s", SSL_alert_desc_string_long(alert));
    gw_server_auth_failed(c->loop->server, (struct sockaddr *)&c->addr, c->addr_len, what);
}

/*
 * A handshake that ended (the client's close or reset, limits.handshake_timeout, a stalled send) after the
 * gateway sent its flight for a ClientHello, and before it completed: a full handshake's flight carries a
 * signature, some 0.8 ms, which a client without credentials could otherwise have the gateway make as fast
 * as it connects and leaves. So it counts as a failed authentication of its address, as a refused one does;
 * so does a resumed session's flight, which carries none.
 * One that limits.handshake_timeout ended before any flight (nothing sent, or no whole ClientHello) counts
 * too: it held its share of max_connections all that time, and an address re-opening such connections
 * would hold them for free. A connection its client closed before a whole ClientHello (a balancer's TCP
 * check, a port scan) made no flight and held its place a moment only: it does not count. Not on the
 * admin listener, which the guard does not count.
 */
static void handshake_abandoned(struct gw_conn *c)
{
    count_handshake(c, c->flight_sent ? "abandoned" : "timeout", "");
    if (!c->admin)
        gw_server_auth_failed(c->loop->server, (struct sockaddr *)&c->addr, c->addr_len,
                              c->flight_sent ? "TLS handshake: left unfinished after the gateway's flight"
                                             : "TLS handshake: none within limits.handshake_timeout");
}

static bool valid_at(const X509 *x, time_t now)
{
    return X509_cmp_time(X509_get0_notBefore(x), &now) < 0 && X509_cmp_time(X509_get0_notAfter(x), &now) > 0;
}

/*
 * A session carries its client certificate but not the chain it verified with, whose certificates may
 * expire before it: a ticket carries none of it, and what a cached session keeps, the certificates the
 * client sent, may lack an intermediate CA the chain took from client_ca and hold others of no bearing on
 * it (unverified, as the client chose them). So the times within which all of the verified chain is valid
 * go with the session (its ticket application data, CHAIN_TIMES_LEN bytes: the latest notBefore, the
 * earliest notAfter, each 8 bytes big-endian), set as the chain verifies (verify_client), before a ticket
 * or the listener's cache takes the session. A resumed session's new session keeps those its session came
 * with (OpenSSL copies them with it).
 */
#define CHAIN_TIMES_LEN 16

/* Gives |sess| the chain times of |chain|; 0 if it cannot (the session is then held to its leaf). */
static int set_chain_times(SSL_SESSION *sess, const STACK_OF(X509) *chain)
{
    int64_t t[2] = {INT64_MIN, INT64_MAX};
    time_t v[2];
    unsigned char d[CHAIN_TIMES_LEN];

    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);

        if (gw_asn1_time(X509_get0_notBefore(x), &v[0]) != 0 ||
            gw_asn1_time(X509_get0_notAfter(x), &v[1]) != 0)
            return 0; /* it verified, so this does not happen */
        t[0] = v[0] > t[0] ? v[0] : t[0];
        t[1] = v[1] < t[1] ? v[1] : t[1];
    }
    for (int i = 0; i < CHAIN_TIMES_LEN; i++)
        d[i] = (unsigned char)((uint64_t)t[i / 8] >> (56 - 8 * (i % 8)));
    return SSL_SESSION_set1_ticket_appdata(sess, d, sizeof(d));
}

/*
 * loop thread: OpenSSL's verification of a client's chain (in place of the X509_verify_cert it makes
 * itself), whose chain times then go with the handshake's session. That they could not (out of memory)
 * fails the handshake: a session without them would be held to its leaf, past its chain's expiry.
 */
static int verify_client(X509_STORE_CTX *sc, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(sc, SSL_get_ex_data_X509_STORE_CTX_idx());

    (void)arg;
    if (X509_verify_cert(sc) != 1)
        return 0; /* as OpenSSL takes its own: -1, an error, is a failure */
    if (ssl == NULL || SSL_get_session(ssl) == NULL ||
        set_chain_times(SSL_get_session(ssl), X509_STORE_CTX_get0_chain(sc)) != 1) {
        X509_STORE_CTX_set_error(sc, X509_V_ERR_OUT_OF_MEM);
        return 0;
    }
    return 1;
}

/* Reads |sess|'s chain times (set_chain_times) into |t|: false if it has none, as a ticket of an earlier
   build. */
static bool chain_times(SSL_SESSION *sess, int64_t t[2])
{
    const unsigned char *d;
    size_t len = 0;
    uint64_t u[2] = {0, 0};

    if (SSL_SESSION_get0_ticket_appdata(sess, (void **)&d, &len) != 1 || len != CHAIN_TIMES_LEN)
        return false;
    for (int i = 0; i < CHAIN_TIMES_LEN; i++)
        u[i / 8] = u[i / 8] << 8 | d[i];
    t[0] = (int64_t)u[0];
    t[1] = (int64_t)u[1];
    return true;
}

/* Whether |now| is within the chain times of |sess|; a ticket without them is held to its leaf only. */
static bool chain_times_hold(SSL_SESSION *sess, time_t now)
{
    int64_t t[2];

    return !chain_times(sess, t) || (t[0] <= (int64_t)now && (int64_t)now < t[1]); /* as valid_at */
}

/*
 * Until when |sess|'s client certificate |peer| and the chain it verified with are valid: the earlier of
 * their notAfters, so that a connection kept alive stops being served with it then (gw_conn_recheck).
 * 0, at once, if |peer|'s cannot be read (it verified, so this does not happen).
 */
static time_t session_until(SSL_SESSION *sess, const X509 *peer)
{
    int64_t t[2];
    time_t until;

    if (gw_asn1_time(X509_get0_notAfter(peer), &until) != 0)
        return 0;
    return chain_times(sess, t) && t[1] < (int64_t)until ? (time_t)t[1] : until;
}

/* Whether |now| is within the validity of |sess|'s client certificate and of the chain it verified with. */
static bool session_valid(SSL_SESSION *sess, time_t now)
{
    X509 *peer = SSL_SESSION_get0_peer(sess);

    return peer == NULL || (valid_at(peer, now) && chain_times_hold(sess, now));
}

/*
 * Says that a connection's client certificate is no longer taken, |why|. A client whose certificate
 * has since expired resumes every session it made while the certificate was valid (up to the cache's
 * GW_TLS_SESSION_CACHE), each on as many connections as it opens before the first of them completes:
 * a resumption costs no signature and counts against no failed-auth budget. So it is paced, as the
 * other events a peer without credentials causes.
 */
static void log_dropped(const struct gw_conn *c, const char *subject, const char *why)
{
    static struct gw_log_pace pace = GW_LOG_PACE_INIT;
    char held[GW_LOG_HELD_LEN], peer[INET6_ADDRSTRLEN + 8];

    if (!gw_log_pace_due(&pace, time(NULL), held))
        return;
    gw_sockaddr_string((const struct sockaddr *)&c->addr, peer, sizeof(peer));
    gw_log_kv(GW_LOG_INFO, "tls_peer_dropped", "peer", peer, "tls_subject", subject, "msg", why, "suppressed",
              held, (const char *)NULL);
}

/*
 * A resumed session whose client certificate, or a certificate of the chain it verified with, is no longer
 * valid: the connection keeps no client certificate (refused where one is required: gw_conn_recheck), the
 * session leaves the cache and no new ticket carries it on (withhold_ticket), so that the client's next
 * connection makes a full handshake.
 */
static void refuse_resumed(SSL *ssl, struct gw_conn *c, X509 *peer)
{
    char subject[GW_IDENTITY_LEN];

    if (X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof(subject)) == NULL)
        subject[0] = '\0';
    log_dropped(c, subject,
                "the client certificate of a resumed TLS session, or a certificate of the chain it verified "
                "with, is expired or not yet valid");
    c->peer_expired = true;
    c->peer_required = (SSL_get_verify_mode(ssl) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT) != 0;
    (void)SSL_CTX_remove_session(SSL_get_SSL_CTX(ssl), SSL_get0_session(ssl));
    (void)SSL_set_num_tickets(ssl, 0);
}

/*
 * A session whose client certificate, or a certificate of the chain it verified with, is no longer valid
 * gets no ticket: decided once the client's Finished is read, as TLS 1.3 writes its ticket next, before it
 * reports the handshake done (refuse_resumed). A resumed session's ticket would carry it on for as long as
 * the client resumes it; a new one's certificate, which verified as it came, may have expired while the
 * client held back its Finished. TLS 1.2 offers no such choice: its ticket is refused when it comes back.
 */
static void withhold_ticket(const SSL *ssl)
{
    if (!session_valid(SSL_get_session(ssl), time(NULL)))
        (void)SSL_set_num_tickets((SSL *)ssl, 0);
}

/* Whether |ssl|'s server has just read the client's Finished. */
static bool finished_read(const SSL *ssl, int where)
{
    return where == SSL_CB_ACCEPT_LOOP && SSL_get_state(ssl) == TLS_ST_SR_FINISHED;
}

/*
 * Whether |ssl|'s server has just written the last message of its flight for the client's: Finished,
 * after the signature of a full handshake's CertificateVerify (TLS 1.3) or ServerHelloDone, after its
 * ServerKeyExchange (TLS 1.2). A HelloRetryRequest is not a flight: the client's ClientHello comes again.
 */
static bool flight_written(const SSL *ssl, int where)
{
    OSSL_HANDSHAKE_STATE st;

    if (where != SSL_CB_ACCEPT_LOOP)
        return false;
    st = SSL_get_state(ssl);
    return st == TLS_ST_SW_FINISHED || st == TLS_ST_SW_SRVR_DONE;
}

static void on_ssl_info(const SSL *ssl, int where, int ret)
{
    h2o_socket_t *sock;
    struct gw_conn *c;
    X509 *peer;
    bool flight = flight_written(ssl, where);

    if (finished_read(ssl, where)) {
        withhold_ticket(ssl);
        return;
    }
    /* called at each state of each handshake: anything else returns here, at the cost of a compare */
    if ((where & (SSL_CB_HANDSHAKE_DONE | SSL_CB_ALERT)) == 0 && !flight)
        return;
    /* libh2o 2.2.5 sets the h2o_socket_t as the BIO data (lib/common/socket.c setup_bio) */
    sock = BIO_get_data(SSL_get_rbio(ssl));
    if (sock == NULL || sock->on_close.cb != conn_on_close)
        return;
    c = sock->on_close.data;
    if (flight) {
        c->flight_sent = true;
        return;
    }
    if ((where & SSL_CB_ALERT) != 0) {
        /* a fatal alert OpenSSL writes before the handshake is done ends it: its description is the reason */
        if ((where & SSL_CB_WRITE) != 0 && (ret >> 8) == SSL3_AL_FATAL && !c->handshaken && !c->refused)
            handshake_refused(c, ret);
        return;
    }
    if (!c->handshaken) { /* TLS 1.3 reports HANDSHAKE_DONE again after sending tickets */
        c->handshaken = true;
        count_handshake(c, "ok", "");
    }
    if (c->peer != NULL || c->peer_expired || SSL_get_verify_result(ssl) != X509_V_OK)
        return;
    if ((peer = SSL_get1_peer_certificate(ssl)) == NULL)
        return;
    /* a resumed session's certificate was verified when the session began, perhaps an hour or, with
       TLS 1.3's new ticket at each resumption, far longer ago; against the same client CAs (the
       session id context), so time is what can have changed */
    if (SSL_session_reused((SSL *)ssl) && !session_valid(SSL_get_session(ssl), time(NULL))) {
        refuse_resumed((SSL *)ssl, c, peer);
        X509_free(peer);
        return;
    }
    c->peer = peer;
    c->peer_until = session_until(SSL_get_session(ssl), peer);
    c->grace_until = gw_now_ms() + GW_PEER_GRACE_MS; /* its first request's upload (unproven) */
    c->peer_required = (SSL_get_verify_mode(ssl) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT) != 0;
    c->peer_chain = X509_chain_up_ref(SSL_get_peer_cert_chain(ssl)); /* NULL: recheck with the leaf */
    /* what binds a transaction to its TLS client, made once for the connection's requests: its
       certificate cannot change after the handshake, renegotiation being off (SSL_OP_NO_RENEGOTIATION)
       and TLS 1.3 post-handshake authentication never requested (no SSL_VERIFY_POST_HANDSHAKE); were
       either allowed, this would have to be made again with each new certificate. Only dropped with
       |peer| (gw_conn_recheck); not made (out of memory): each request makes it */
    if (gw_cmp_tls_client(peer, c->tls_client) != 0)
        c->tls_client[0] = '\0';
    /* the same one-line form as the engine's CMP identity, so that log lines compare */
    if (X509_NAME_oneline(X509_get_subject_name(peer), c->subject, sizeof(c->subject)) == NULL)
        c->subject[0] = '\0';
}

/*
 * |peer| (with what the client sent beside it) verifies against |ctx|'s client CAs, as a handshake would:
 * libssl verifies a client's chain at the context's security level, which X509_verify_cert alone leaves
 * unset (any hash, any key).
 */
static bool verifies(SSL_CTX *ctx, X509 *peer, STACK_OF(X509) *chain)
{
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    bool ok = sc != NULL && X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(ctx), peer, chain) == 1 &&
              X509_STORE_CTX_set_default(sc, "ssl_client") == 1;

    if (ok)
        X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(sc), SSL_CTX_get_security_level(ctx));
    ok = ok && X509_verify_cert(sc) == 1;
    X509_STORE_CTX_free(sc);
    ERR_clear_error();
    return ok;
}

/* |c|'s client certificate is no longer taken, |why|: its requests go on without one. */
static void drop_peer(struct gw_conn *c, const char *why)
{
    log_dropped(c, c->subject, why);
    X509_free(c->peer);
    c->peer = NULL;
    c->subject[0] = '\0';
    c->tls_client[0] = '\0';
}

/*
 * What a reload changed for |c| (its listener gone, its client certificate no longer trusted, one required
 * now): the refusal, kept for its later requests, or 0. Whether its listener requires a certificate now
 * goes with the connection: one dropped later (its expiry) is refused or not by the listener as it is.
 */
static int recheck_reloaded(struct gw_conn *c)
{
    const struct gw_gen *g = c->loop->gen;
    SSL_CTX *ctx = NULL;
    bool listed = false;
    int mode;

    if (c->gen == g->id)
        return 0;
    c->gen = g->id;
    for (size_t i = 0; i < g->n_ssl_ctx && !listed; i++)
        if ((listed = g->keys[i].id == c->listener))
            ctx = g->ssl_ctx[i];
    if (!listed) /* its listener is gone with the reload */
        return c->shut = GW_ERR_NOT_FOUND;
    if (ctx == NULL)
        return 0;
    mode = SSL_CTX_get_verify_mode(ctx);
    c->peer_required = (mode & SSL_VERIFY_FAIL_IF_NO_PEER_CERT) != 0;
    if (c->peer == NULL) { /* accepted without one, before a reload made the listener require one */
        if (c->peer_required)
            c->shut = GW_ERR_FORBIDDEN;
        return c->shut;
    }
    if ((mode & SSL_VERIFY_PEER) != 0 && verifies(ctx, c->peer, c->peer_chain))
        return 0;
    drop_peer(c, "the client certificate of a connection opened before a reload no longer verifies");
    if (c->peer_required)
        c->shut = GW_ERR_FORBIDDEN;
    return c->shut;
}

int gw_conn_recheck(struct gw_conn *c)
{
    int rc;

    if (c->shut != 0)
        return c->shut;
    if (c->peer != NULL && time(NULL) >= c->peer_until) {
        /* what verified at the handshake has expired since: a connection kept alive, or one whose client
           held back the end of its handshake */
        drop_peer(c, "the client certificate of this connection, or a certificate of the chain it verified "
                     "with, has expired since its TLS handshake");
        c->peer_expired = true;
    }
    if ((rc = recheck_reloaded(c)) != 0)
        return rc;
    return c->peer_expired && c->peer_required ? GW_ERR_FORBIDDEN : 0;
}

/* The request a refusal answered is freed: libh2o frees an HTTP/2 stream's once its answer is written. */
static void end_refused(void *data)
{
    struct gw_conn *c = *(struct gw_conn **)data; /* a connection frees its streams before itself */
    int fd = h2o_socket_get_fd(c->sock);

    if (c->ended || fd < 0 || shutdown(fd, SHUT_RDWR) != 0)
        return;
    c->ended = true; /* libh2o reads the end and closes the connection */
}

void gw_conn_end_after(h2o_req_t *req, struct gw_conn *c)
{
    struct gw_conn **ref;

    if (req->version < 0x200)
        return;
    ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), end_refused);
    *ref = c;
}

/*
 * Session tickets under the listener's shared keys ("ticket_keys_file"), so that a client that
 * connects per message resumes its session on any instance: the first key encrypts, each one
 * decrypts, and a ticket under another than the first is renewed (rotation: a new first line, then
 * a reload of every instance). The keys hang off the SSL_CTX (ex_data) and go with it.
 */
struct ticket_keys {
    size_t n;
    unsigned char k[GW_MAX_TICKET_KEYS][GW_TICKET_KEY_LEN]; /* name 16, AES-256 32, HMAC-SHA256 32 */
};

static int ticket_idx = -1;
static pthread_once_t ticket_once = PTHREAD_ONCE_INIT;

static void ticket_keys_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    OPENSSL_clear_free(ptr, sizeof(struct ticket_keys));
}

static void ticket_index(void)
{
    ticket_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ticket_keys_free);
}

static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    const struct ticket_keys *tk = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ticket_idx);
    const unsigned char *k = NULL;
    size_t i = 0;
    OSSL_PARAM params[3];

    if (tk == NULL || tk->n == 0)
        return -1;
    if (enc) {
        k = tk->k[0];
        memcpy(name, k, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1)
            return -1;
    } else {
        for (i = 0; i < tk->n && k == NULL; i++)
            if (CRYPTO_memcmp(name, tk->k[i], 16) == 0)
                k = tk->k[i];
        if (k == NULL)
            return 0; /* not ours, or retired: a full handshake, and a new ticket */
        i--;
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(k + 48), 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1 ||
        (enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k + 16, iv)
             : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k + 16, iv)) != 1)
        return -1;
    /* 2: a new ticket, under the first key; TLS 1.3 always (a client uses each ticket once) */
    return enc || (i == 0 && SSL_version(ssl) != TLS1_3_VERSION) ? 1 : 2;
}

/*
 * A ticket whose client certificate, or a certificate of the chain it verified with (its chain times), is
 * out of its validity is not used: a full handshake instead, where the client can present its current
 * certificate (the info callback catches the same for a session from the cache, which has no such
 * hook).
 */
static SSL_TICKET_RETURN on_ticket(SSL *ssl, SSL_SESSION *sess, const unsigned char *name, size_t name_len,
                                   SSL_TICKET_STATUS status, void *arg)
{
    (void)ssl, (void)name, (void)name_len, (void)arg;
    switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
        if (!session_valid(sess, time(NULL)))
            return SSL_TICKET_RETURN_IGNORE_RENEW;
        return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    default:
        return SSL_TICKET_RETURN_ABORT;
    }
}

static int set_ticket_keys(SSL_CTX *ctx, const struct gw_listener_conf *lc)
{
    struct ticket_keys *tk;

    pthread_once(&ticket_once, ticket_index);
    if (ticket_idx < 0 || (tk = OPENSSL_zalloc(sizeof(*tk))) == NULL)
        return GW_ERR_NOMEM;
    tk->n = lc->n_ticket_keys < GW_MAX_TICKET_KEYS ? lc->n_ticket_keys : GW_MAX_TICKET_KEYS;
    memcpy(tk->k, lc->ticket_keys, tk->n * GW_TICKET_KEY_LEN);
    if (SSL_CTX_set_ex_data(ctx, ticket_idx, tk) != 1) {
        OPENSSL_clear_free(tk, sizeof(*tk));
        return GW_ERR_NOMEM;
    }
    return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) == 1 &&
                   SSL_CTX_set_session_ticket_cb(ctx, NULL, on_ticket, NULL) == 1
               ? 0
               : GW_ERR_CRYPTO;
}

/* Formats "<what> <file>: <first OpenSSL error>" into |err| and clears the error queue. */
static void tls_error(char *err, const struct gw_listener_conf *lc, const char *what, const char *file)
{
    char reason[128] = "unknown error", shown[GW_ERR_LEN];
    unsigned long e = ERR_peek_last_error();

    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, GW_ERR_LEN, "listener %s:%u: %s %s: %s", lc->address, (unsigned)lc->port, what,
             file != NULL ? gw_conf_show_file(file, shown, sizeof(shown)) : "(none)", reason);
}

static bool has_name(const STACK_OF(X509_NAME) *names, const X509_NAME *name)
{
    for (int i = 0; i < sk_X509_NAME_num(names); i++)
        if (X509_NAME_cmp(sk_X509_NAME_value(names, i), name) == 0)
            return true;
    return false;
}

/*
 * The subject names of |cas|, each once and in their order (as SSL_load_client_CA_file lists them):
 * the CA names a CertificateRequest sends, which let clients pick the right certificate.
 */
static STACK_OF(X509_NAME) *ca_names(const STACK_OF(X509) *cas)
{
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();

    for (int i = 0; names != NULL && i < sk_X509_num(cas); i++) {
        const X509_NAME *subject = X509_get_subject_name(sk_X509_value(cas, i));
        X509_NAME *n = NULL;

        if (has_name(names, subject))
            continue;
        if ((n = X509_NAME_dup(subject)) == NULL || sk_X509_NAME_push(names, n) <= 0) {
            X509_NAME_free(n);
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            names = NULL;
        }
    }
    return names;
}

/*
 * The client CAs the configuration loaded and checked (certificates alone), into the context's own
 * store, whose verification flags stay OpenSSL's defaults: the file is not read again, so the
 * clients a handshake admits are those the load saw trusted, until a reload.
 */
static int add_client_cas(SSL_CTX *ctx, const struct gw_listener_conf *lc)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names;

    if (sk_X509_num(lc->client_cas) <= 0)
        return GW_ERR_INVAL;
    for (int i = 0; i < sk_X509_num(lc->client_cas); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(lc->client_cas, i)) != 1)
            return GW_ERR_CRYPTO;
    if ((names = ca_names(lc->client_cas)) == NULL)
        return GW_ERR_NOMEM;
    SSL_CTX_set_client_CA_list(ctx, names);
    return 0;
}

/* Client-certificate policy (docs/design.md D7): none, optional or require. */
static int set_client_auth(SSL_CTX *ctx, const struct gw_listener_conf *lc, char *err)
{
    int mode = SSL_VERIFY_PEER;

    if (lc->client_auth == GW_CLIENT_AUTH_NONE) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    if (add_client_cas(ctx, lc) != 0) {
        tls_error(err, lc, "client_ca", lc->client_ca);
        return GW_ERR_CRYPTO;
    }
    if (lc->client_auth == GW_CLIENT_AUTH_REQUIRE)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, verify_client, NULL);
    /* OpenSSL decodes every certificate of the client's chain before it verifies one, some 0.2 ms each
       in 3.0: its default of 100 KiB let a client without credentials spend 65 ms a handshake */
    SSL_CTX_set_max_cert_list(ctx, GW_MAX_TLS_CLIENT_CHAIN);
    return 0;
}

/*
 * The session id context: a digest of what a session's client certificate was verified against (the
 * listener's client_auth and the certificates of its client_ca). OpenSSL resumes a session only
 * where the contexts are equal, so a ticket made on another listener, or before a reload that
 * changed the client CAs, makes a full handshake there; instances with the same configuration
 * resume each other's tickets. Required with SSL_VERIFY_PEER, else resumed handshakes abort.
 */
static int set_session_id_context(SSL_CTX *ctx, const struct gw_listener_conf *lc)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    unsigned char d[EVP_MAX_MD_SIZE], sid[32];
    unsigned int n = 0, len = 0;
    unsigned char mode = (unsigned char)lc->client_auth;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestInit_ex(md, gw_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, sid_ctx_tag, sizeof(sid_ctx_tag)) == 1 &&
             EVP_DigestUpdate(md, &mode, 1) == 1;

    for (int i = 0; ok && lc->client_auth != GW_CLIENT_AUTH_NONE && i < sk_X509_OBJECT_num(objs); i++) {
        /* certificates alone: add_client_cas puts nothing else there */
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));

        ok = x != NULL && X509_digest(x, gw_sha256(), d, &n) == 1 && EVP_DigestUpdate(md, d, n) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(md, sid, &len) == 1 && len == sizeof(sid) &&
         SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid)) == 1;
    EVP_MD_CTX_free(md);
    return ok ? 0 : GW_ERR_CRYPTO;
}

/*
 * libssl's reasons to refuse a certificate and key for what they are (ssl_set_cert_and_key): under the
 * security level (ssl_security_cert: an RSA key too small, a SHA-1 signature, the certificate's or a CA's
 * of its chain), a key that is not the certificate's, a key type no TLS serves. The file's: no retry mends
 * them.
 */
static const int cert_refusals[] = {
    SSL_R_EE_KEY_TOO_SMALL,     SSL_R_CA_KEY_TOO_SMALL,         SSL_R_CA_MD_TOO_WEAK,
    SSL_R_PRIVATE_KEY_MISMATCH, SSL_R_UNKNOWN_CERTIFICATE_TYPE,
};

/* The class of SSL_CTX_use_cert_and_key's failure, from the error it queued: GW_ERR_INVAL for the
   certificate's or key's own (cert_refusals), else GW_ERR_CRYPTO (out of memory). */
static int cert_failure_class(void)
{
    unsigned long e = ERR_peek_last_error();

    for (size_t i = 0; ERR_GET_LIB(e) == ERR_LIB_SSL && i < sizeof(cert_refusals) / sizeof(cert_refusals[0]);
         i++)
        if (ERR_GET_REASON(e) == cert_refusals[i])
            return GW_ERR_INVAL;
    return GW_ERR_CRYPTO;
}

int gw_tls_ctx_new(const struct gw_listener_conf *lc, bool secrets, SSL_CTX **out, char *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int rc = GW_ERR_CRYPTO;

    *out = NULL;
    if (ctx == NULL) {
        tls_error(err, lc, "SSL_CTX_new", "");
        goto err;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* OpenSSL keeps a record's plaintext in its read buffer after h2o has read it, until the next
       record overwrites it: the admin listener's carry the bearer token of POST /reload, so each is
       wiped once read, and the buffer when the connection ends. Not on a CMP listener, whose
       plaintext holds no secret of the gateway's (a PBM-protected request carries a MAC, never the
       secret, RFC 9481 §6.1; central key generation, which would send a private key back, is
       refused): there it would be a pass over every request for nothing. */
    if (secrets)
        SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
    /* an idle connection holds no record buffers (about 34 KiB each otherwise): see docs/performance.md */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* the certificates and key the configuration loaded and checked (a key decrypted, or in a token):
       no file is read again by name, where it may since have changed, and no passphrase prompted for */
    if (lc->cert == NULL || lc->key == NULL ||
        SSL_CTX_use_cert_and_key(ctx, lc->cert, lc->key, lc->chain, 1) != 1) {
        rc = cert_failure_class();
        tls_error(err, lc, "tls.cert", lc->tls_cert);
        goto err;
    }
    if (set_client_auth(ctx, lc, err) != 0)
        goto err;
    if (set_session_id_context(ctx, lc) != 0) {
        tls_error(err, lc, "session id context", "");
        goto err;
    }
    /* resumption (tickets, or the cache for clients without) skips the handshake's signature and
       the client chain's verification; its bounds: docs/operations.md, "TLS sessions" */
    SSL_CTX_set_timeout(ctx, GW_TLS_SESSION_SECS);
    SSL_CTX_sess_set_cache_size(ctx, GW_TLS_SESSION_CACHE);
    /* one per connection: a client resumes once per connection. It leaves right after the handshake,
       which also acknowledges the client's Finished at once: held back for the first response, a
       client with Nagle's algorithm on waited for the delayed ACK (docs/performance.md) */
    (void)SSL_CTX_set_num_tickets(ctx, 1);
    /* without keys to share, sessions stay in the cache (TLS 1.3 stateful tickets, TLS 1.2 session
       IDs): a resumption then finds the session in memory instead of decoding it, and its client
       certificate, from a ticket (a quarter of a per-message client's CPU; docs/performance.md) */
    if (lc->n_ticket_keys == 0)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (lc->n_ticket_keys > 0 && set_ticket_keys(ctx, lc) != 0) {
        tls_error(err, lc, "ticket_keys_file", lc->ticket_keys_file);
        goto err;
    }
    SSL_CTX_set_info_callback(ctx, on_ssl_info);
    /* HTTP/2 multiplexes streams that libh2o 2.2.5 bounds by no body timeout: offered on request only */
    if (lc->http2)
        h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    *out = ctx;
    return 0;

err:
    SSL_CTX_free(ctx);
    return rc;
}
