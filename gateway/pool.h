/*
 * Bounded worker pool (nginx's ngx_thread_pool shape): a fixed number of threads and a queue with
 * a hard cap that refuses when full, so overload answers 503 at once instead of queueing forever.
 * Jobs are opaque; the pool calls job->run(job) on a worker and nothing else.
 */
#ifndef GW_POOL_H
#define GW_POOL_H

#include <stddef.h>
#include <stdint.h>
#include "base/clock.h"

struct gw_job {
    void (*run)(struct gw_job *job); /* worker */
    struct gw_job *next;             /* pool-private */
    uint64_t enqueued_ms;            /* set by gw_pool_submit (monotonic clock) */
};

struct gw_pool;

struct gw_pool *gw_pool_new(size_t workers, size_t queue_depth, char *err);

/* gw_pool_submit queues |job|. 0, or GW_ERR_BUSY when the queue is full or the pool is stopping. */
int gw_pool_submit(struct gw_pool *p, struct gw_job *job);

/* gw_pool_free stops accepting, runs every queued job and every suspended one once it comes back,
 * joins the workers. NULL-safe. */
void gw_pool_free(struct gw_pool *p);

/*
 * A job that leaves its worker to come back later (a request whose upstream call runs without a
 * worker) says so with gw_pool_suspend before it can come back, and comes back with
 * gw_pool_resume: queued ahead of every other, past the cap, also while the pool stops (it was
 * admitted once). gw_pool_free waits for every suspended job to come back and run. Any thread.
 */
void gw_pool_suspend(struct gw_pool *p);
void gw_pool_resume(struct gw_pool *p, struct gw_job *job);

size_t gw_pool_queued(struct gw_pool *p);

#endif
