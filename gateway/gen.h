/*
 * Generations of the configuration (docs/operations.md, "Reload"). A generation is one loaded
 * configuration and what was built from it: its upstreams, its CMP engine, its TLS contexts and
 * its health prober. Exactly one is current; a reload builds the next one completely beside it and
 * then swaps it in, so a broken file never replaces a working one.
 *
 * A request holds the generation it began in until its response is sent, a loop thread the one it
 * accepts connections with, and a transaction its engine (gw_cmp_engine_busy). A generation that
 * is no longer current is retired, and freed by gw_gens_reap once nothing holds it.
 */
#ifndef GW_GEN_H
#define GW_GEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <openssl/ssl.h>

#include "gateway/config.h"

struct gw_cmp_engine;
struct gw_prober;
struct gw_upstream_set;

/* What a listener is made of that only a new socket can change (gateway/listener.c). */
struct gw_listen_key {
    unsigned id; /* the socket's: a listener kept by a reload keeps its id */
    char address[64];
    uint16_t port; /* as configured (0 = the kernel's choice) */
    bool tls, http2, admin;
};

struct gw_gen {
    unsigned long id; /* 1 for the configuration loaded at start, then one more per reload */
    time_t loaded;
    atomic_long refs;
    struct gw_config *cfg;
    struct gw_upstream_set *ups;
    struct gw_cmp_engine *engine;
    struct gw_prober *prober; /* started once current, stopped when retired */
    SSL_CTX **ssl_ctx;        /* per listener (gw_server_prepare); NULL entry = plain HTTP */
    size_t n_ssl_ctx;
    struct gw_listen_key *keys; /* per listener, as ssl_ctx */
    int *bound;                 /* per listener and loop thread: a socket a reload bound, not yet served */
    size_t n_bound;
    struct gw_gen *next; /* on the retired list */
};

/*
 * gw_gen_load loads the configuration at |path| and builds its upstreams and CMP engine; with
 * |prev| (the current generation), the engine shares prev's transactions, replay cache and audit
 * log. Nothing is served with it yet. |run|: a reload's, what runs of the restart-only keys
 * (gw_config_reload); NULL at a start. What its upstreams ask as they start ends by *end as well
 * (gw_upstream_set_new; NULL: none), which a stop sets. NULL with |err| on failure (the error names
 * the JSON path), and *|failed| the failing step's class: GW_ERR_INVAL where the configuration itself is
 * refused, as `cmpgw check` would refuse it (the file, what it names, a role its upstream cannot serve, the
 * audit log, the revoked file: no retry mends it), another where another try may succeed (what the system
 * lacks at this moment: a PKCS#11 token not present yet, a Vault token_file not written yet, the shared
 * state's Redis unreachable or refusing; out of memory).
 */
struct gw_gen *gw_gen_load(const char *path, const struct gw_gen *prev, const struct gw_config_running *run,
                           const _Atomic uint64_t *end, int *failed, char *err);

/* gw_gen_hold and gw_gen_drop count a holder of |g| (any thread; drop is NULL-safe). */
void gw_gen_hold(struct gw_gen *g);
void gw_gen_drop(struct gw_gen *g);

/* gw_gen_free frees |g| whatever holds it (a generation never served, or at exit). NULL-safe. */
void gw_gen_free(struct gw_gen *g);

/* The current generation and the retired ones still held. */
struct gw_gens;

/* gw_gens_new makes |first| current (taking it over). NULL when out of memory. */
struct gw_gens *gw_gens_new(struct gw_gen *first);

/* gw_gens_acquire returns the current generation, held: gw_gen_drop it when done (any thread). */
struct gw_gen *gw_gens_acquire(struct gw_gens *gs);

/* gw_gens_current_id is the current generation's id, for a cheap "has it changed" (any thread). */
unsigned long gw_gens_current_id(struct gw_gens *gs);

/*
 * gw_gens_swap makes |next| current and retires the one before in one step, then stops its prober
 * (one reload at a time). Requests already holding the old one finish with it.
 */
void gw_gens_swap(struct gw_gens *gs, struct gw_gen *next);

/* gw_gens_reap frees the retired generations nothing holds any more; returns how many are left
 * (main thread, the only one that frees them). */
size_t gw_gens_reap(struct gw_gens *gs);

/*
 * gw_gens_acquire_retired: the newest retired generation that still has transactions (or upstream
 * calls) begun under it and routes |path| (|len| bytes, no query) to a CMP role, held, with |m| its
 * match borrowed from it; NULL when none does. Its engine answers the open transactions' own messages
 * on a path a reload took away (any thread).
 */
struct gw_gen *gw_gens_acquire_retired(struct gw_gens *gs, const char *path, size_t len,
                                       struct gw_route_match *m);

/* gw_gens_retired counts the retired generations not yet freed (any thread). */
size_t gw_gens_retired(struct gw_gens *gs);

/*
 * gw_gens_free (shutdown, after the server stopped): ends the open transactions of every
 * generation, each logged by the engine it began under, then frees them all, the upstream calls
 * and withdrawals of all their engines bounded together by one GW_DRAIN_TIMEOUT_MS. False when an
 * upstream call still running kept a configuration alive (left to process exit). NULL-safe.
 */
bool gw_gens_free(struct gw_gens *gs);

#endif
