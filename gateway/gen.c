/*
 * Generations of the configuration: load one beside the running one, swap, free the old one once
 * nothing holds it (gen.h).
 */
#include "gateway/gen.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "gateway/cmp/engine.h"
#include "gateway/probe.h"
#include "mappings/route.h"
#include "upstream/upstream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct gw_gens {
    pthread_mutex_t lock; /* guards |current| (a swap between its load and its hold) and |retired| */
    struct gw_gen *current;
    atomic_ulong current_id;
    struct gw_gen *retired;
    atomic_size_t n_retired; /* of them, for the metrics */
};

struct gw_gen *gw_gen_load(const char *path, const struct gw_gen *prev, const struct gw_config_running *run,
                           const _Atomic uint64_t *end, int *failed, char *err)
{
    struct gw_gen *g = calloc(1, sizeof(*g));
    struct gw_cmp_settings settings;
    int rc = 0;

    *failed = 0;
    if (g == NULL) {
        snprintf(err, GW_ERR_LEN, "out of memory");
        *failed = GW_ERR_NOMEM;
        return NULL;
    }
    g->id = prev != NULL ? prev->id + 1 : 1;
    g->loaded = time(NULL);
    atomic_init(&g->refs, 0);
    /* each step gives the class of its failure: the file and what it names (a token not present yet is
       not the file's), the upstreams (a role asking more than its upstream does, a CA key that does not
       match, a store: refused; a token file not written yet, out of memory: not), the engine */
    if ((g->cfg = gw_config_reload(path, run, &rc, err)) == NULL)
        goto fail;
    gw_config_cmp_settings(g->cfg, &settings);
    if ((g->ups = gw_upstream_set_new(g->cfg->upstreams, g->cfg->n_upstreams, g->cfg->roles, g->cfg->n_roles,
                                      &g->cfg->upstream_signer, end, &rc, err)) == NULL)
        goto fail;
    if ((g->engine = gw_cmp_engine_new(&settings, g->ups, prev != NULL ? prev->engine : NULL, &rc, err)) ==
        NULL)
        goto fail;
    return g;
fail:
    *failed = rc != 0 ? rc : GW_ERR_UNAVAILABLE; /* a step that said no class: when unsure, not the file's */
    gw_gen_free(g);
    return NULL;
}

void gw_gen_hold(struct gw_gen *g)
{
    atomic_fetch_add(&g->refs, 1);
}

void gw_gen_drop(struct gw_gen *g)
{
    if (g != NULL)
        atomic_fetch_sub(&g->refs, 1);
}

/* Frees |g|, its engine's work bounded by |until_ms| (gw_cmp_engine_free_until); false when an
 * upstream call still running keeps its upstreams (and so its configuration) alive: those are then
 * left to process exit, with the engine when a revocation runs on it past the deadline. */
static bool gen_free(struct gw_gen *g, uint64_t until_ms)
{
    bool all;

    if (g == NULL)
        return true;
    gw_prober_stop(g->prober);
    all = gw_cmp_engine_free_until(g->engine, until_ms) && gw_upstream_set_free_until(g->ups, until_ms);
    for (size_t i = 0; i < g->n_ssl_ctx; i++)
        SSL_CTX_free(g->ssl_ctx[i]);
    free(g->ssl_ctx);
    free(g->keys);
    for (size_t i = 0; i < g->n_bound; i++) /* a reload refused after binding */
        if (g->bound[i] >= 0)
            close(g->bound[i]);
    free(g->bound);
    if (all)
        gw_config_free(g->cfg);
    free(g);
    return all;
}

void gw_gen_free(struct gw_gen *g)
{
    (void)gen_free(g, gw_now_ms() + GW_DRAIN_TIMEOUT_MS);
}

struct gw_gens *gw_gens_new(struct gw_gen *first)
{
    struct gw_gens *gs = calloc(1, sizeof(*gs));

    if (gs == NULL)
        return NULL;
    pthread_mutex_init(&gs->lock, NULL);
    gs->current = first;
    atomic_init(&gs->current_id, first->id);
    return gs;
}

struct gw_gen *gw_gens_acquire(struct gw_gens *gs)
{
    struct gw_gen *g;

    pthread_mutex_lock(&gs->lock);
    g = gs->current;
    gw_gen_hold(g);
    pthread_mutex_unlock(&gs->lock);
    return g;
}

unsigned long gw_gens_current_id(struct gw_gens *gs)
{
    return atomic_load(&gs->current_id);
}

void gw_gens_swap(struct gw_gens *gs, struct gw_gen *next)
{
    struct gw_gen *old;

    /* retired as it stops being current: a message of a transaction begun under it, on a path it
       alone routes, finds it on the list (gw_gens_acquire_retired) from the moment the swap is seen */
    pthread_mutex_lock(&gs->lock);
    old = gs->current;
    gs->current = next;
    atomic_store(&gs->current_id, next->id);
    gw_gen_hold(old); /* not reaped while its prober stops */
    old->next = gs->retired;
    gs->retired = old;
    atomic_fetch_add(&gs->n_retired, 1);
    pthread_mutex_unlock(&gs->lock);
    /* its upstreams' health is no longer what /readyz reports (only the reloader touches it); out of
       the lock, for a probe in progress ends first */
    gw_prober_stop(old->prober);
    old->prober = NULL;
    gw_gen_drop(old);
}

struct gw_gen *gw_gens_acquire_retired(struct gw_gens *gs, const char *path, size_t len,
                                       struct gw_route_match *m)
{
    char why[GW_ERR_LEN];
    struct gw_gen *g;

    pthread_mutex_lock(&gs->lock); /* against gw_gens_reap: a generation held here is not idle */
    for (g = gs->retired; g != NULL; g = g->next)
        if (gw_cmp_engine_busy(g->engine) && gw_route_match(&g->cfg->routes, path, len, m, why) == 0 &&
            !gw_route_is_get(m)) {
            gw_gen_hold(g);
            break;
        }
    pthread_mutex_unlock(&gs->lock);
    return g;
}

size_t gw_gens_retired(struct gw_gens *gs)
{
    return atomic_load(&gs->n_retired);
}

/* Nothing holds |g|: no request, no loop thread, no transaction and no upstream call. */
static bool idle(struct gw_gen *g)
{
    return atomic_load(&g->refs) == 0 && !gw_cmp_engine_busy(g->engine) && !gw_upstream_set_busy(g->ups);
}

size_t gw_gens_reap(struct gw_gens *gs)
{
    struct gw_gen **pp, *g, *done = NULL;
    size_t left = 0;

    pthread_mutex_lock(&gs->lock);
    for (pp = &gs->retired; (g = *pp) != NULL;) {
        if (!idle(g)) {
            pp = &g->next;
            left++;
            continue;
        }
        *pp = g->next;
        g->next = done;
        done = g;
        atomic_fetch_sub(&gs->n_retired, 1);
    }
    pthread_mutex_unlock(&gs->lock);
    /* freed outside the lock: requests acquire the current generation meanwhile */
    while ((g = done) != NULL) {
        done = g->next;
        gw_log(GW_LOG_DEBUG, "config_retired", "configuration generation %lu freed", g->id);
        gw_gen_free(g); /* idle: nothing to wait for */
    }
    return left;
}

bool gw_gens_free(struct gw_gens *gs)
{
    /* one deadline for every engine's calls and withdrawals, which run side by side meanwhile: one
       each would make a stop last as long as the reloads before it were many */
    uint64_t until = gw_now_ms() + GW_DRAIN_TIMEOUT_MS;
    struct gw_gen *g, *next;
    bool all = true;

    if (gs == NULL)
        return true;
    /* while every engine lives: each transaction is recorded by the one it began under */
    gw_cmp_engine_close_all(gs->current->engine);
    for (g = gs->retired; g != NULL; g = next) {
        next = g->next;
        all &= gen_free(g, until);
    }
    all &= gen_free(gs->current, until);
    pthread_mutex_destroy(&gs->lock);
    free(gs);
    return all;
}
