/*
 * Internal sharing of the listener module: listener.c (lifecycle, sockets, loop threads), tls.c
 * (SSL_CTX per listener, per-connection state, peer certificate) and http.c (request checks,
 * hand-off to the worker pool, responses, request log). See docs/design.md H2-H8.
 */
#ifndef GW_LISTENER_LOCAL_H
#define GW_LISTENER_LOCAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <pthread.h>
#include <h2o.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "gateway/config.h"
#include "gateway/gen.h"
#include "gateway/guard.h"
#include "base/limits.h"
#include "gateway/listener.h"
#include "gateway/pool.h"

struct gw_loop;

/* Per accepted connection; hung on sock->on_close and freed there (loop thread). */
struct gw_conn {
    struct gw_loop *loop;
    struct sockaddr_storage addr; /* the client's, counted in the server's guard */
    socklen_t addr_len;
    bool admin;                         /* on the admin listener: outside the CMP admission limits */
    bool handshaken;                    /* its TLS handshake completed (counted once) */
    bool refused;                       /* ... or ended by the gateway's fatal alert (counted once) */
    bool flight_sent;                   /* its handshake flight for the ClientHello went out (tls.c) */
    bool handshake_late;                /* its TLS handshake ended by limits.handshake_timeout (sweep.c) */
    bool requested;                     /* a request of it reached a handler (a plain listener's opening) */
    uint64_t proven_at;                 /* ms (gw_now_ms): its last answer proven (gw_cmp_response.proven) */
    uint64_t grace_until;               /* ms: its client certificate keeps it till then, or a first answer */
    unsigned in_flight;                 /* its requests handed to the workers, until answered */
    bool released;                      /* its place in the guard given back early, to make room (tls.c) */
    uint64_t accepted_at;               /* ms (gw_now_ms): when it was admitted */
    unsigned listener;                  /* the id of its listener's socket (struct gw_listen_key) */
    unsigned long gen;                  /* the generation whose client CAs verified |peer| */
    X509 *peer;                         /* verified TLS client certificate, or NULL */
    time_t peer_until;                  /* ... which, with the chain it verified with, is valid until then */
    bool peer_expired;                  /* a session's certificate, out of its validity: not kept */
    bool peer_required;                 /* ... on a listener that requires one (as the last reload left it):
                                           requests refused */
    int shut;                           /* what gw_conn_recheck refuses each of its requests with, or 0 */
    STACK_OF(X509) *peer_chain;         /* what the client sent with it, for gw_conn_recheck */
    char tls_client[GW_TLS_CLIENT_LEN]; /* gw_cmp_tls_client of |peer|, or "" (none, or not made) */
    char subject[GW_IDENTITY_LEN];      /* its subject, X509_NAME_oneline form, or "" */
    /* the send sweep (sweep.c) */
    h2o_socket_t *sock;     /* borrowed: this state is freed as it closes */
    h2o_linklist_t link;    /* loop->conns */
    uint64_t acked;         /* the bytes its client had acknowledged at the last sweep */
    uint64_t stalled_since; /* ms: output pending, and none delivered, since then; 0: none pending */
    bool moved;             /* output delivered since the last sweep (HTTP/2 streams wait behind it) */
    bool ended;             /* shut down by a sweep (or gw_conn_end_after): libh2o closes it */
    bool evicted;           /* ... or to make room on the admin listener (tls.c), and counted so */
    bool answer_owed;       /* admin: its POST /reload runs, and it is not one to make room with */
};

/*
 * One listening socket of one loop thread. Bound here, each loop has its own SO_REUSEPORT socket
 * per listener; taken over (socket activation, hand-over), a loop may share one or serve several.
 */
struct gw_listen {
    struct gw_loop *loop;
    size_t listener; /* index of its listener in the loop's generation (the admin listener is the last) */
    unsigned id;     /* its listener's gw_listen_key id: the same across reloads */
    bool admin;      /* the admin listener's socket */
    int fd;          /* owned until |sock| wraps it; then still its number, for a hand-over */
    h2o_socket_t *sock;
    h2o_accept_ctx_t accept;
};

struct gw_loop {
    struct gw_server *server;
    struct gw_gen *gen; /* held: the generation new requests and connections use (gw_loop_refresh) */
    pthread_t tid;
    bool drained; /* false: context left undisposed (drain timeout) */
    h2o_context_t ctx;
    h2o_multithread_receiver_t done_rx;  /* completed jobs from workers; NULL message = wake */
    h2o_multithread_receiver_t admin_rx; /* finished POST /reload (admin.c) */
    pthread_mutex_t post_lock;           /* held by gw_loop_post and by the drain while it sets |closed| */
    bool closed;                         /* its queue is gone (post_lock) */
    struct gw_listen *listens;           /* at least one per listener; GW_LOOP_LISTENS_CAP room */
    size_t n_listens;
    atomic_ulong seen;               /* the id of the generation it took up (gw_server_apply waits) */
    size_t num_conns, jobs_inflight; /* loop thread only */
    size_t admin_conns;              /* of num_conns, on the admin listener */
    size_t admin_evicted;            /* of admin_conns, shut down to make room and not yet closed */
    h2o_linklist_t proxy_pending;    /* connections of trusted proxies awaiting their PROXY header */
    size_t n_proxy_pending;
    h2o_linklist_t conns; /* its gw_conns, for the sweep */
    uint64_t sweep_at;    /* ms (gw_now_ms): when the sweep of slow clients is due (sweep.c, h2sweep.c) */
    struct seen *h2_seen; /* HTTP/2 requests unfinished or unsent at the last sweep, sorted */
    size_t n_h2_seen;
};

struct gw_server {
    struct gw_gens *gens;                /* the configuration: requests use the current one */
    const struct gw_config *boot;        /* the one being started from, during gw_server_start */
    int (*reload)(void *arg, char *err); /* POST /reload on the admin listener */
    void *reload_arg;
    pthread_mutex_t layout_lock; /* the loops' listens arrays, against gw_server_listen_fds */
    struct gw_listen_key *keys;  /* the listeners being served: those of the current generation */
    size_t n_keys;
    unsigned last_id; /* of a listener's socket (gw_listen_key.id) */
    uint32_t workers, queue_depth;
    h2o_globalconf_t h2o;
    bool h2o_inited;
    h2o_hostconf_t *cmp_hosts[2];   /* what a CMP listener serves: the catch-all CMP handler */
    h2o_hostconf_t *admin_hosts[2]; /* what the admin listener serves (admin.c) */
    struct gw_loop *loops;
    size_t n_loops;
    struct gw_pool *pool;
    struct gw_guard *guard; /* connections and failed authentications per address */
    atomic_bool stopping;
    atomic_bool admin_reloading; /* a POST /reload runs (admin.c): another one is refused */
    atomic_bool successor;       /* stopping for a successor that serves the same sockets */
    bool running;                /* gw_server_run starts the threads: set before them, so they read it */
    h2o_barrier_t ready;
};

/* listener.c: takes up the current generation if it changed (loop thread) */
void gw_loop_refresh(struct gw_loop *lt);

/*
 * gw_loop_post sends |msg| (NULL: a wake) to |rx|, one of |lt|'s receivers, unless the loop's queue is
 * gone (any thread but |lt|'s). libh2o writes to the queue's pipe after it let go of the queue's lock,
 * when the loop may already have taken the message through another wake-up, drained and closed that
 * pipe (or its number been reused by another file): the drain takes |post_lock| before it closes it.
 * Only a wake finds the queue gone: a loop drains only once every job's and reload's answer came back.
 */
void gw_loop_post(struct gw_loop *lt, h2o_multithread_receiver_t *rx, h2o_multithread_message_t *msg);

/*
 * gw_server_auth_failed counts one failure of the client at |sa| against its address's budget of
 * failed authentications (gw_guard_auth_failed) and logs the failure that uses the budget up as
 * auth_budget_exhausted, with |what| failed: one line an address and window, never one a refusal
 * (loop thread).
 */
void gw_server_auth_failed(struct gw_server *s, const struct sockaddr *sa, socklen_t len, const char *what);

/* tls.c */

/* gw_tls_ctx_new builds the SSL_CTX of one listener conf into |*out| (the caller's); |secrets| when what
 * clients send over it carries a secret (the admin listener's bearer token): OpenSSL then wipes each record
 * it decrypted once it was read. 0, or with |err| and |*out| NULL: GW_ERR_INVAL where libssl refuses the
 * certificate or key for what they are (under its security level, a key not the certificate's), the file's;
 * GW_ERR_CRYPTO for the rest (out of memory). */
int gw_tls_ctx_new(const struct gw_listener_conf *lc, bool secrets, SSL_CTX **out, char *err);

/*
 * gw_conn_attach admits an accepted socket of the listener whose key id is |listener| (the server's
 * connection limits, by the client's address, at which the loop's oldest CMP connection of no proven client
 * is shut down to make room; on the admin listener, its own GW_MAX_ADMIN_CONNECTIONS per loop thread, at
 * which the oldest admin connection with nothing to send is) and hangs a new gw_conn on it. 0, or
 * GW_ERR_LIMIT / GW_ERR_BUSY (refused: close it) or GW_ERR_NOMEM (loop thread).
 */
int gw_conn_attach(struct gw_loop *loop, h2o_socket_t *sock, unsigned listener, bool admin);

/*
 * gw_conn_recheck, before a request on a connection accepted under an older generation: its
 * client certificate is verified again against the current generation's client CAs and mode, so
 * that a reload which removed a CA (or a CRL which now lists the certificate) applies to keep-alive
 * connections too. One that no longer verifies is dropped from the connection: 0 then if the
 * listener lets clients without one in, GW_ERR_FORBIDDEN if it requires one (refuse and close), as
 * for a connection accepted without one before the reload made its listener require one;
 * GW_ERR_NOT_FOUND when the reload removed the connection's listener (refuse and close too). Either
 * refusal is returned for every later request of the connection as well: an HTTP/2 connection ends
 * only once the answer is written (gw_conn_end_after), and its streams sent meanwhile come without the
 * certificate the listener requires, or to a listener that is gone. GW_ERR_FORBIDDEN also for a resumed
 * session whose certificate was out of its validity, and for a connection whose certificate, or a
 * certificate of the chain it verified with, has expired since its handshake (checked before every request:
 * a connection kept alive is not served with it past its notAfter), on a listener that requires one: as its
 * listener is now, a reload having made it require one or not since the handshake. 0 when nothing changed
 * (loop thread).
 */
int gw_conn_recheck(struct gw_conn *c);

/*
 * gw_conn_end_after: |req|, on |c|, is answered with gw_conn_recheck's refusal. Over HTTP/2, whose
 * connection outlives the answer, |c| is shut down once that answer is written (|req|'s memory freed):
 * none of its later streams is served. HTTP/1 closes after the answer itself (loop thread).
 */
void gw_conn_end_after(h2o_req_t *req, struct gw_conn *c);

/* gw_conn_get0 returns the connection state of |req| (borrowed, lives with the connection). */
struct gw_conn *gw_conn_get0(h2o_req_t *req);

/*
 * gw_conn_mark_requested, first in each handler: a request of |req|'s connection reached one, which ends
 * a plain listener's opening for the sweep (|requested|) (loop thread).
 */
void gw_conn_mark_requested(h2o_req_t *req);

/*
 * sweep.c: every GW_SWEEP_MS of the monotonic clock, ends the connections that have not completed their
 * TLS handshake (on a plain listener: had a request reach a handler) within limits.handshake_timeout, those
 * holding more request input than a head and a CMP body take, those whose output has made no progress for
 * limits.send_timeout, (h2sweep.c) those holding an HTTP/2 request past its timeouts, and (listener.c)
 * trusted proxies' connections past GW_PROXY_HEADER_TIMEOUT_MS without their header. From the loop's start
 * until its context is disposed, through the drain (loop thread): gw_sweep_start schedules the first;
 * gw_sweep_due, called between turns of the loop, runs the sweep once it is due and returns the ms until the
 * next, the longest the loop may wait for events (h2o_evloop_run's max_wait); gw_sweep_stop frees what it
 * remembers.
 */
void gw_sweep_start(struct gw_loop *lt);
int32_t gw_sweep_due(struct gw_loop *lt);
void gw_sweep_stop(struct gw_loop *lt);

/* sweep.c: shuts down |c|'s socket (libh2o then closes the connection), logs (rate-limited) and counts
 * it as ended for |timeout| ("body_timeout", "send_timeout") of |secs|, with |why|; once (loop thread) */
void gw_sweep_end(struct gw_conn *c, const char *timeout, uint32_t secs, const char *why);

/* h2sweep.c: one pass over the loop's HTTP/2 requests at |now| (ms), after the connections' (loop
 * thread); gw_h2sweep_cleanup frees what it remembers */
void gw_h2sweep_run(struct gw_loop *lt, uint64_t now);
void gw_h2sweep_cleanup(struct gw_loop *lt);

/* listener.c: at |now| (ms, gw_now_ms), closes the connections of trusted proxies whose PROXY header has not
 * all arrived within GW_PROXY_HEADER_TIMEOUT_MS of their accept, logged proxy_header_refused (loop thread) */
void gw_loop_proxy_sweep(struct gw_loop *lt, uint64_t now);

/* listener.c: the configuration of listener |i| of |cfg| (the admin listener is the last, if any) */
const struct gw_listener_conf *gw_listener_conf(const struct gw_config *cfg, size_t i);

/* admin.c: the admin listener's handler (loop thread): /healthz, /readyz, /metrics, POST /reload */
int gw_admin_on_req(h2o_handler_t *self, h2o_req_t *req);

/*
 * gw_admin_bearer_ok tells whether |req| carries "Authorization: Bearer <token>" with the token whose
 * SHA-256 is |want|; |*missing| when it carries no bearer token at all. |want| NULL compares nothing:
 * false, |*missing| true. Either way it then wipes every Authorization value of |req| where h2o holds
 * it, over HTTP/1; over HTTP/2 it leaves them, as HPACK may share their bytes with the connection's
 * header table. The admin handler calls it once for every request, before it answers.
 */
bool gw_admin_bearer_ok(h2o_req_t *req, const unsigned char *want, bool *missing);

/* admin.c: receiver of finished reloads (loop thread) */
void gw_admin_on_reloaded(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages);

/* http.c */

/* The catch-all "/" handler (loop thread). */
int gw_http_on_req(h2o_handler_t *self, h2o_req_t *req);

/* Receiver of finished jobs (loop thread). */
void gw_http_on_done(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages);

/* The answers of a loop that gave up its drain, once the workers are gone (main thread). */
void gw_http_abandon(h2o_multithread_receiver_t *rx);

static inline struct gw_loop *gw_loop_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(struct gw_loop, ctx, req->conn->ctx);
}

#endif
