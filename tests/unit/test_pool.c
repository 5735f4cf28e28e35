/*
 * Worker pool: a full queue refuses at once, every accepted job runs exactly once and in FIFO
 * order, gw_pool_free drains what is queued and refuses new work while it does, and concurrent
 * producers never lose or duplicate a job. A suspended job comes back ahead of the queue, and
 * gw_pool_free waits for it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "gateway/pool.h"

/* A job that counts its runs; optionally blocks on a gate or submits into the pool itself. */
struct tjob {
    struct gw_job job;
    atomic_int runs;
    int seq;                  /* FIFO check: the order it ran in */
    struct gate *gate;        /* block here first when non-NULL */
    struct gw_pool *resubmit; /* try gw_pool_submit(resubmit, extra) when non-NULL */
    struct tjob *extra;
    int resubmit_rc;
};

/*
 * A gate a job waits at until the test opens it, at most GATE_MAX_S: a test that failed before it
 * opened leaves no worker held. Gates are static, so that a job let go late finds its gate.
 */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open, entered;
};

#define GATE_WAIT_S 30 /* for a job to enter the gate (a loaded sanitizer build is slow) */
#define GATE_MAX_S 60  /* for the test to open it */

/* The gw_now_ms instant |s| seconds from now, for pthread_cond_clockwait on CLOCK_MONOTONIC. */
static struct timespec gate_deadline(int s)
{
    return gw_timespec_ms(gw_now_ms() + (uint64_t)s * 1000);
}

static atomic_int run_seq;

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = g->entered = false;
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/*
 * Waits (up to GATE_WAIT_S) until a job is blocked inside the gate, so the worker is known to be
 * busy; else opens it and fails the test.
 */
static void gate_wait_entered(struct gate *g)
{
    struct timespec until = gate_deadline(GATE_WAIT_S);
    bool entered;

    pthread_mutex_lock(&g->lock);
    while (!g->entered && pthread_cond_clockwait(&g->cond, &g->lock, CLOCK_MONOTONIC, &until) == 0)
        ;
    entered = g->entered;
    pthread_mutex_unlock(&g->lock);
    if (entered)
        return;
    gate_open(g);
    fail_msg("no job entered the gate within GATE_WAIT_S");
}

static void gate_pass(struct gate *g)
{
    struct timespec until = gate_deadline(GATE_MAX_S);

    pthread_mutex_lock(&g->lock);
    g->entered = true;
    pthread_cond_broadcast(&g->cond);
    while (!g->open && pthread_cond_clockwait(&g->cond, &g->lock, CLOCK_MONOTONIC, &until) == 0)
        ;
    pthread_mutex_unlock(&g->lock);
}

static void tjob_run(struct gw_job *j)
{
    struct tjob *t = (struct tjob *)((char *)j - offsetof(struct tjob, job));

    if (t->gate != NULL)
        gate_pass(t->gate);
    t->seq = atomic_fetch_add(&run_seq, 1);
    if (t->resubmit != NULL)
        t->resubmit_rc = gw_pool_submit(t->resubmit, &t->extra->job);
    atomic_fetch_add(&t->runs, 1);
}

static void tjobs_init(struct tjob *t, size_t n)
{
    memset(t, 0, n * sizeof(*t));
    for (size_t i = 0; i < n; i++)
        t[i].job.run = tjob_run;
}

/* A job that leaves its worker (gw_pool_suspend) and comes back from another thread after a while. */
struct away {
    struct gw_job job;
    struct gw_pool *pool;
    atomic_int runs; /* 1: the first run (it suspends), 2: it came back and ran again */
    pthread_t th;
};

static void *come_back(void *arg)
{
    struct away *a = arg;
    struct timespec ts = {0, 200 * 1000 * 1000};

    nanosleep(&ts, NULL);
    gw_pool_resume(a->pool, &a->job);
    return NULL;
}

static void away_run(struct gw_job *j)
{
    struct away *a = (struct away *)((char *)j - offsetof(struct away, job));

    if (atomic_fetch_add(&a->runs, 1) == 0) {
        gw_pool_suspend(a->pool);
        assert_int_equal(pthread_create(&a->th, NULL, come_back, a), 0);
    }
}

/* gw_pool_free waits for a suspended job to come back and run, however late, with one worker or many. */
static void test_free_waits_for_suspended(void **state)
{
    (void)state;
    for (size_t workers = 1; workers <= 3; workers++) {
        char err[GW_ERR_LEN];
        struct gw_pool *p = gw_pool_new(workers, 4, err);
        struct away a = {.job.run = away_run};

        assert_non_null(p);
        a.pool = p;
        assert_int_equal(gw_pool_submit(p, &a.job), 0);
        while (atomic_load(&a.runs) == 0)
            sched_yield();
        gw_pool_free(p); /* returns only after the second run */
        assert_int_equal(atomic_load(&a.runs), 2);
        pthread_join(a.th, NULL);
    }
}

/* A job that comes back goes ahead of the queue, past its cap. */
static void test_resume_ahead_of_the_queue(void **state)
{
    char err[GW_ERR_LEN];
    struct gw_pool *p = gw_pool_new(1, 2, err);
    static struct gate g;
    struct tjob t[3], back;

    (void)state;
    assert_non_null(p);
    gate_init(&g);
    tjobs_init(t, 3);
    tjobs_init(&back, 1);
    t[0].gate = &g;
    atomic_store(&run_seq, 0);
    assert_int_equal(gw_pool_submit(p, &t[0].job), 0);
    gate_wait_entered(&g);
    assert_int_equal(gw_pool_submit(p, &t[1].job), 0);
    assert_int_equal(gw_pool_submit(p, &t[2].job), 0);
    assert_int_equal(gw_pool_submit(p, &back.job), GW_ERR_BUSY); /* the queue is full */
    gw_pool_suspend(p);
    gw_pool_resume(p, &back.job); /* admitted before: past the cap */
    gate_open(&g);
    gw_pool_free(p);
    assert_int_equal(back.seq, 1); /* right after the job that was running */
    assert_int_equal(t[1].seq, 2);
    assert_int_equal(t[2].seq, 3);
}

static void test_new_params(void **state)
{
    static const struct {
        size_t workers, depth;
        bool ok;
    } cases[] = {
        {1, 1, true}, {4, 64, true}, {0, 1, false}, {1, 0, false}, {0, 0, false},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[GW_ERR_LEN] = "";
        struct gw_pool *p = gw_pool_new(cases[i].workers, cases[i].depth, err);
        if (cases[i].ok) {
            assert_non_null(p);
            assert_int_equal(gw_pool_queued(p), 0);
        } else {
            assert_null(p);
            assert_true(strlen(err) > 0);
        }
        gw_pool_free(p);
    }
    gw_pool_free(NULL);
}

/* One busy worker, queue depth 3: three jobs queue, the fourth is refused at once. */
static void test_full_queue_refuses(void **state)
{
    struct tjob t[5];
    static struct gate g;
    struct gw_pool *p;
    char err[GW_ERR_LEN];
    (void)state;

    tjobs_init(t, 5);
    gate_init(&g);
    t[0].gate = &g;
    assert_non_null(p = gw_pool_new(1, 3, err));
    assert_int_equal(gw_pool_submit(p, &t[0].job), 0);
    gate_wait_entered(&g);
    for (int i = 1; i <= 3; i++)
        assert_int_equal(gw_pool_submit(p, &t[i].job), 0);
    assert_int_equal(gw_pool_queued(p), 3);
    /* refused, not waited: a submit that waited for room would wait for ever, the worker held at the gate */
    assert_int_equal(gw_pool_submit(p, &t[4].job), GW_ERR_BUSY);
    assert_int_equal(gw_pool_queued(p), 3);
    gate_open(&g);
    gw_pool_free(p);
    for (int i = 0; i <= 3; i++)
        assert_int_equal(atomic_load(&t[i].runs), 1);
    assert_int_equal(atomic_load(&t[4].runs), 0);
}

/* One worker runs jobs in submit order, each once; enqueued_ms comes from the monotonic clock. */
static void test_fifo_exactly_once(void **state)
{
    enum { N = 200 };
    static struct tjob t[N];
    struct gw_pool *p;
    char err[GW_ERR_LEN];
    uint64_t before = gw_now_ms();
    (void)state;

    tjobs_init(t, N);
    atomic_store(&run_seq, 0);
    assert_non_null(p = gw_pool_new(1, N, err));
    for (int i = 0; i < N; i++)
        assert_int_equal(gw_pool_submit(p, &t[i].job), 0);
    gw_pool_free(p);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&t[i].runs), 1);
        assert_int_equal(t[i].seq, i);
        assert_true(t[i].job.enqueued_ms >= before && t[i].job.enqueued_ms <= gw_now_ms());
    }
}

static void *open_later(void *arg)
{
    struct timespec ts = {0, 50 * 1000 * 1000};

    nanosleep(&ts, NULL);
    gate_open(arg);
    return NULL;
}

/*
 * gw_pool_free is called while the only worker is blocked and the queue is full: it must run every
 * queued job before returning, and a job submitted during the drain is refused.
 */
static void test_free_drains(void **state)
{
    enum { DEPTH = 8 };
    struct tjob t[DEPTH + 2];
    static struct gate g;
    struct gw_pool *p;
    pthread_t opener;
    char err[GW_ERR_LEN];
    (void)state;

    tjobs_init(t, DEPTH + 2);
    gate_init(&g);
    t[0].gate = &g;
    assert_non_null(p = gw_pool_new(1, DEPTH, err));
    assert_int_equal(gw_pool_submit(p, &t[0].job), 0);
    gate_wait_entered(&g);
    for (int i = 1; i <= DEPTH; i++)
        assert_int_equal(gw_pool_submit(p, &t[i].job), 0);
    t[DEPTH].resubmit = p;
    t[DEPTH].extra = &t[DEPTH + 1];
    t[DEPTH].resubmit_rc = 1;
    assert_int_equal(pthread_create(&opener, NULL, open_later, &g), 0);
    gw_pool_free(p); /* returns only after the gate opened and the queue drained */
    pthread_join(opener, NULL);
    for (int i = 0; i <= DEPTH; i++)
        assert_int_equal(atomic_load(&t[i].runs), 1);
    assert_int_equal(t[DEPTH].resubmit_rc, GW_ERR_BUSY);
    assert_int_equal(atomic_load(&t[DEPTH + 1].runs), 0);
}

enum { PRODUCERS = 4, PER_PRODUCER = 2000 };

struct producer {
    struct gw_pool *pool;
    struct tjob *jobs;
    int accepted, refused;
    pthread_t tid;
};

static void *produce(void *arg)
{
    struct producer *pr = arg;

    for (int i = 0; i < PER_PRODUCER; i++) {
        int rc = gw_pool_submit(pr->pool, &pr->jobs[i].job);
        if (rc == 0)
            pr->accepted++;
        else if (rc == GW_ERR_BUSY)
            pr->refused++;
        pr->jobs[i].resubmit_rc = rc; /* read only by the producer and after free */
    }
    return NULL;
}

/* Producers race workers on a small queue: accepted jobs run once, refused ones never. */
static void test_stress(void **state)
{
    static struct tjob jobs[PRODUCERS][PER_PRODUCER];
    struct producer pr[PRODUCERS];
    struct gw_pool *p;
    char err[GW_ERR_LEN];
    int accepted = 0, refused = 0;
    (void)state;

    assert_non_null(p = gw_pool_new(3, 16, err));
    for (int k = 0; k < PRODUCERS; k++) {
        tjobs_init(jobs[k], PER_PRODUCER);
        pr[k] = (struct producer){.pool = p, .jobs = jobs[k]};
        assert_int_equal(pthread_create(&pr[k].tid, NULL, produce, &pr[k]), 0);
    }
    for (int k = 0; k < PRODUCERS; k++) {
        pthread_join(pr[k].tid, NULL);
        accepted += pr[k].accepted;
        refused += pr[k].refused;
    }
    gw_pool_free(p);
    assert_int_equal(accepted + refused, PRODUCERS * PER_PRODUCER);
    assert_true(accepted > 0);
    for (int k = 0; k < PRODUCERS; k++)
        for (int i = 0; i < PER_PRODUCER; i++)
            assert_int_equal(atomic_load(&jobs[k][i].runs), jobs[k][i].resubmit_rc == 0 ? 1 : 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_params),
        cmocka_unit_test(test_full_queue_refuses),
        cmocka_unit_test(test_fifo_exactly_once),
        cmocka_unit_test(test_free_drains),
        cmocka_unit_test(test_stress),
        cmocka_unit_test(test_free_waits_for_suspended),
        cmocka_unit_test(test_resume_ahead_of_the_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
