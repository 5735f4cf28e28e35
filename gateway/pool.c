/*
 * Bounded worker pool (nginx src/core/ngx_thread_pool.c shape): a fixed set of threads taking jobs
 * from one FIFO under one lock. The queue has a hard cap and submit never waits: a full queue is
 * the overload signal the listener turns into 503 + Retry-After (docs/design.md D4).
 */
#include "gateway/pool.h"
#include "base/err.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct gw_pool {
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;  /* signalled on submit and on stop */
    struct gw_job *head, *tail;
    size_t queued, cap;
    size_t suspended; /* admitted jobs waiting outside the pool to come back (gw_pool_suspend) */
    bool stopping;
    pthread_t *threads;
    size_t n_threads; /* threads actually started */
};

/*
 * Takes the oldest job, waiting for one; NULL once the pool stops, the queue is empty and no
 * suspended job is still to come back.
 */
static struct gw_job *take(struct gw_pool *p)
{
    struct gw_job *job;

    pthread_mutex_lock(&p->lock);
    while (p->head == NULL && (!p->stopping || p->suspended != 0))
        pthread_cond_wait(&p->cond, &p->lock);
    job = p->head;
    if (job != NULL) {
        p->head = job->next;
        if (p->head == NULL)
            p->tail = NULL;
        p->queued--;
        job->next = NULL;
    } else {
        pthread_cond_broadcast(&p->cond); /* the last suspended job came back: the others stop too */
    }
    pthread_mutex_unlock(&p->lock);
    return job;
}

/* worker */
static void *worker_main(void *arg)
{
    struct gw_pool *p = arg;
    struct gw_job *job;

    while ((job = take(p)) != NULL)
        job->run(job);
    return NULL;
}

struct gw_pool *gw_pool_new(size_t workers, size_t queue_depth, char *err)
{
    struct gw_pool *p = NULL;
    int rc;

    if (workers == 0 || queue_depth == 0) {
        snprintf(err, GW_ERR_LEN, "worker pool: workers and queue_depth must be at least 1");
        return NULL;
    }
    if ((p = calloc(1, sizeof(*p))) == NULL || (p->threads = calloc(workers, sizeof(*p->threads))) == NULL)
        goto nomem;
    p->cap = queue_depth;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (; p->n_threads < workers; p->n_threads++) {
        if ((rc = pthread_create(&p->threads[p->n_threads], NULL, worker_main, p)) != 0) {
            snprintf(err, GW_ERR_LEN, "worker pool: starting thread %zu: %s", p->n_threads + 1, strerror(rc));
            gw_pool_free(p);
            return NULL;
        }
    }
    return p;

nomem:
    if (p != NULL)
        free(p->threads);
    free(p);
    snprintf(err, GW_ERR_LEN, "worker pool: out of memory");
    return NULL;
}

int gw_pool_submit(struct gw_pool *p, struct gw_job *job)
{
    int ret = GW_ERR_BUSY;

    job->next = NULL;
    job->enqueued_ms = gw_now_ms();
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->queued >= p->cap)
        goto out;
    if (p->tail != NULL)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    p->queued++;
    ret = 0;
out:
    pthread_mutex_unlock(&p->lock);
    if (ret == 0)
        pthread_cond_signal(&p->cond); /* after the unlock: the woken worker does not block on the lock */
    return ret;
}

void gw_pool_suspend(struct gw_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->suspended++;
    pthread_mutex_unlock(&p->lock);
}

void gw_pool_resume(struct gw_pool *p, struct gw_job *job)
{
    job->enqueued_ms = gw_now_ms();
    pthread_mutex_lock(&p->lock);
    p->suspended--;
    job->next = p->head;
    p->head = job;
    if (p->tail == NULL)
        p->tail = job;
    p->queued++;
    /* under the lock, unlike submit's: this may be the job gw_pool_free waits for, on a thread it does
       not join (an upstream's), and once the lock is let go a worker may run it, the pool end and free
       |p| before a signal sent after the unlock touched it */
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

size_t gw_pool_queued(struct gw_pool *p)
{
    size_t n;

    pthread_mutex_lock(&p->lock);
    n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void gw_pool_free(struct gw_pool *p)
{
    size_t i;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    /* workers keep taking jobs until the queue is empty and every suspended job came back, so every
       accepted job runs to its end */
    for (i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}
