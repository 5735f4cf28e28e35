/*
 * The HTTP(S) front: h2o evloop threads, TLS, client certificates, routing, request checks, and
 * the hand-off of CMP work to the worker pool (docs/design.md H2-H7).
 */
#ifndef GW_LISTENER_H
#define GW_LISTENER_H

#include "gateway/config.h"

struct gw_server;
struct gw_cmp_engine;
struct gw_upstream_set;

/*
 * gw_server_start binds every listener of |cfg|; nothing is served until gw_server_run starts the
 * loop threads and workers (in between, the caller may give up root). |cfg|, |engine| and |ups|
 * (whose health /readyz reports) are borrowed and must outlive the server. NULL with |err| on
 * failure (bind, TLS files).
 */
struct gw_server *gw_server_start(const struct gw_config *cfg, struct gw_cmp_engine *engine,
                                  struct gw_upstream_set *ups, char *err);

/* gw_server_run starts serving what gw_server_start bound. 0, or an error with |err|. */
int gw_server_run(struct gw_server *s, char *err);

/*
 * gw_server_stop shuts down gracefully: stops accepting, refuses new requests with 503, lets
 * requests in flight finish (up to GW_DRAIN_TIMEOUT_MS), joins threads and frees. NULL-safe.
 */
void gw_server_stop(struct gw_server *s);

/* gw_server_queued counts the jobs waiting for a worker (any thread). */
size_t gw_server_queued(struct gw_server *s);

#endif
