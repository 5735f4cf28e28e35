/*
 * The upstreams' health probes (gateway/probe.h). One thread, one probe at a time: probes are
 * cheap and few, and a slow one only delays the next.
 */
#include "gateway/probe.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "gateway/cmp/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define PROBE_TICK_MS 1000 /* how often the thread looks for a probe that is due */

struct gw_prober {
    const struct gw_config *cfg;
    struct gw_upstream_set *ups;
    struct gw_cmp_engine *engine;
    uint64_t *due_ms; /* per cfg->upstreams[i]: when it is probed next */
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* signalled by gw_prober_stop */
    bool stopping;
    _Atomic uint64_t end; /* 0, then when gw_prober_stop was called: ends a probe in progress */
};

static bool stopping(struct gw_prober *p)
{
    bool s;

    pthread_mutex_lock(&p->lock);
    s = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return s;
}

/* Probes every upstream whose time has come; stops when asked to, a probe in progress cut short. */
static void probe_due(struct gw_prober *p)
{
    char err[GW_ERR_LEN];

    for (size_t i = 0; i < p->cfg->n_upstreams && !stopping(p); i++) {
        const struct gw_upstream_conf *uc = &p->cfg->upstreams[i];
        struct gw_upstream *up = gw_upstream_set_get0(p->ups, uc->name);
        uint64_t now = gw_now_ms();

        if (up == NULL || uc->probe_interval == 0 || now < p->due_ms[i])
            continue;
        err[0] = '\0';
        (void)gw_upstream_probe(up, &p->end, err);
        p->due_ms[i] = gw_now_ms() + (uint64_t)uc->probe_interval * 1000;
    }
}

static void *prober_main(void *arg)
{
    struct gw_prober *p = arg;
    struct timespec until;

    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        pthread_mutex_unlock(&p->lock);
        gw_cmp_engine_probe_signer(p->engine); /* first: an upstream's probe may take its timeout */
        gw_cmp_engine_probe_audit(p->engine);
        probe_due(p);
        pthread_mutex_lock(&p->lock);
        until = gw_timespec_ms(gw_now_ms() + PROBE_TICK_MS); /* the condition's clock (gw_prober_start) */
        while (!p->stopping && pthread_cond_timedwait(&p->cond, &p->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct gw_prober *gw_prober_start(const struct gw_config *cfg, struct gw_upstream_set *ups,
                                  struct gw_cmp_engine *engine, char *err)
{
    struct gw_prober *p = calloc(1, sizeof(*p));

    if (p == NULL ||
        (cfg->n_upstreams > 0 && (p->due_ms = calloc(cfg->n_upstreams, sizeof(*p->due_ms))) == NULL)) {
        free(p);
        snprintf(err, GW_ERR_LEN, "upstream probes: out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->ups = ups;
    p->engine = engine;
    pthread_mutex_init(&p->lock, NULL);
    if (gw_cond_init_monotonic(&p->cond) != 0) { /* the wall clock jumps */
        pthread_mutex_destroy(&p->lock);
        free(p->due_ms);
        free(p);
        snprintf(err, GW_ERR_LEN, "upstream probes: out of memory");
        return NULL;
    }
    if (pthread_create(&p->tid, NULL, prober_main, p) != 0) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p->due_ms);
        free(p);
        snprintf(err, GW_ERR_LEN, "upstream probes: cannot start a thread");
        return NULL;
    }
    return p;
}

void gw_prober_stop(struct gw_prober *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    /* a probe in progress (an upstream that holds it lasts its timeout, up to an hour) ends as well,
       GW_UPSTREAM_END_CHECK_MS later at most: a reload waits for this join */
    atomic_store(&p->end, gw_now_ms());
    pthread_join(p->tid, NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->due_ms);
    free(p);
}
