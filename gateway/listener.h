/*
 * The HTTP(S) front: h2o evloop threads, TLS, client certificates, routing, request checks, and
 * the hand-off of CMP work to the worker pool (docs/design.md H2-H7).
 */
#ifndef GW_LISTENER_H
#define GW_LISTENER_H

#include "gateway/config.h"
#include "gateway/gen.h"

struct gw_server;

/*
 * Listening sockets the gateway did not bind: from the service manager (socket activation) or
 * from the gateway it replaces (gateway/handover.h). Each is matched to a listener by its address
 * and port; the server takes them over (closing those no listener wants).
 */
struct gw_inherited {
    int *fds;
    size_t n;
};

/*
 * gw_server_start binds every listener of the current generation of |gens| (or takes it from
 * |inherited|, which may be NULL) and builds its TLS contexts; nothing is served until
 * gw_server_run starts the loop threads and workers (in between, the caller may give up root).
 * |gens| is borrowed and must outlive the server. |reload| answers POST /reload on the admin
 * listener (on a thread of its own; NULL: not offered). NULL with |err| on failure (bind, TLS files), and
 * *|failed| its class: GW_ERR_INVAL where the configuration itself is refused, as `cmpgw check` refuses it
 * (a certificate or key libssl refuses for what it is: gw_server_check_tls), another where another try may
 * succeed (a port in use, out of memory).
 */
struct gw_server *gw_server_start(struct gw_gens *gens, int (*reload)(void *arg, char *err), void *reload_arg,
                                  struct gw_inherited *inherited, int *failed, char *err);

/*
 * gw_server_check_tls builds, and frees, the TLS context of each TLS listener of |cfg| (the admin
 * listener's too), as a start does: libssl applies its security level to each certificate and key there,
 * which the load does not. For `cmpgw check`. 0, or with |err|: GW_ERR_INVAL where libssl refuses a
 * certificate or key for what it is (an RSA key under 2048 bits at level 2, a SHA-1 signature, a key not
 * the certificate's), GW_ERR_CRYPTO otherwise (out of memory).
 */
int gw_server_check_tls(const struct gw_config *cfg, char *err);

/*
 * gw_server_listen_fds lists every listening socket, for a hand-over to a successor: a new array of
 * new fds (close-on-exec), copies of the server's, which a reload may close meanwhile (the caller's:
 * close each, free the array). 0, or GW_ERR_NOMEM or GW_ERR_IO with none. Any thread while the
 * server runs.
 */
int gw_server_listen_fds(struct gw_server *s, int **fds, size_t *n);

/*
 * gw_server_prepare readies |next| to be served: the TLS contexts of its listeners, built from its
 * files (certificates, keys, client CAs), and for each listener the running server does not have
 * (another address, port, TLS or not, HTTP/2) its sockets, bound now: a port that cannot be had
 * fails the reload while the running listeners serve on. 0, or an error with |err|.
 */
int gw_server_prepare(struct gw_server *s, struct gw_gen *next, char *err);

/*
 * gw_server_apply, once |g| is current (gw_gens_swap), makes every loop thread take it up and
 * waits until they did: the new listeners accept, then those |g| no longer has close. One reload
 * at a time. 0, or GW_ERR_TIMEOUT when a loop did not within GW_APPLY_TIMEOUT_MS (it takes |g| up
 * at its next turn).
 */
int gw_server_apply(struct gw_server *s, struct gw_gen *g);

/* gw_server_wake makes every loop thread take up the current generation now (any thread). */
void gw_server_wake(struct gw_server *s);

/* gw_server_run starts serving what gw_server_start bound. 0, or an error with |err|. */
int gw_server_run(struct gw_server *s, char *err);

/*
 * gw_server_stop shuts down gracefully: stops accepting, refuses new requests with 503, lets
 * requests in flight finish (up to GW_DRAIN_TIMEOUT_MS), joins threads and frees. With
 * |successor| (a hand-over: another gateway serves the same sockets), requests still arriving on
 * open connections are served instead, each connection closed after its answer. NULL-safe.
 */
void gw_server_stop(struct gw_server *s, bool successor);

/* gw_server_queued counts the jobs waiting for a worker (any thread). */
size_t gw_server_queued(struct gw_server *s);

#endif
