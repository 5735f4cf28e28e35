/*
 * Upstream CAs behind one interface (upstream/upstream.h): creation by adapter, in-flight cap, and
 * the synchronous wait of in-process callers (tests). The adapters and their configuration:
 * upstream/conf.c.
 *
 * The waiter is shared by the waiting worker and the completion and freed by whichever lets go
 * last, so a completion that arrives after the deadline lands on live memory. Such a late
 * certificate exists at the CA but reaches no client: it is logged ("late_issue") so that it can
 * be found and revoked by hand. It is not audited nor withdrawn here (this layer has neither), which
 * is why no request the gateway serves waits this way (upstream.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/metrics.h"
#include "upstream/store.h"
#include "upstream/upstream.h"
#include "upstream/upstream_int.h"
#include "upstream/upstream_test.h"
#include "base/clock.h"
#include "base/x509.h"

#define DRAIN_POLL_MS 10

struct gw_upstream {
    const struct gw_upstream_conf *conf;
    const struct gw_upstream_ops *ops;
    const struct gw_upstream_signer *signer;
    pthread_mutex_t health_lock; /* guards |health| */
    struct gw_upstream_health health;
    void *impl;
    atomic_uint inflight;
    STACK_OF(X509) *cas;   /* the CAs it issues under (gw_upstream_conf_issuing_cas): all it may revoke */
    time_t (*clock)(void); /* its wall clock (gw_upstream_now): NULL = time(); set by tests only */
};

/* One submit: counts the call in flight until the adapter completes it. */
struct call {
    struct gw_upstream *up;
    gw_upstream_done_fn done;
    void *arg;
    uint64_t start_ms;
};

/* ---- metrics (base/metrics.h) ---- */

static struct gw_metric *m_calls, *m_duration, *m_inflight;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
    static const char *const call_labels[] = {"upstream", "result", NULL};
    static const char *const up_labels[] = {"upstream", NULL};
    static const double secs[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

    m_calls = gw_metric_new("cmpgw_upstream_sign_calls_total",
                            "Sign calls to upstreams by result: issued, refused (the CA said no), timeout "
                            "(no answer in time: outcome unknown), unavailable (not reachable), busy (at "
                            "max_inflight, not sent).",
                            GW_METRIC_COUNTER, call_labels, NULL, 0);
    m_duration = gw_metric_new("cmpgw_upstream_sign_duration_seconds",
                               "Time a sign call took until the upstream answered.", GW_METRIC_HISTOGRAM,
                               up_labels, secs, sizeof(secs) / sizeof(secs[0]));
    m_inflight =
        gw_metric_new("cmpgw_upstream_inflight_calls", "Sign calls sent to an upstream and not answered.",
                      GW_METRIC_GAUGE, up_labels, NULL, 0);
}

static void count_call(const struct gw_upstream *up, const char *result)
{
    pthread_once(&m_once, metrics_init);
    gw_metric_add(m_calls, (const char *const[]){gw_upstream_conf_name(up->conf), result}, 1);
}

/* What a finished sign call's |res| was, as a label. */
static const char *result_of(const struct gw_sign_result *res)
{
    if (res->status == 0 && res->cert != NULL)
        return "issued";
    if (res->status == GW_ERR_TIMEOUT)
        return "timeout";
    return res->status == GW_ERR_IO || res->status == GW_ERR_BUSY ? "unavailable" : "refused";
}

/* One gw_upstream_sign_wait, shared with its completion. */
struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs;
    int completed; /* a result arrived in time and is in |res| */
    int abandoned; /* the worker stopped waiting */
    uint64_t deadline_ms;
    struct gw_sign_result *res;
    char upstream[GW_MAX_NAME_LEN + 1];
    char request_id[2 * GW_MAX_TID_LEN + 1];
};

const char *gw_upstream_conf_name(const struct gw_upstream_conf *conf)
{
    return conf != NULL && conf->name != NULL ? conf->name : "?";
}

void gw_sign_result_init(struct gw_sign_result *r)
{
    memset(r, 0, sizeof(*r));
}

void gw_sign_result_cleanup(struct gw_sign_result *r)
{
    if (r == NULL)
        return;
    X509_free(r->cert);
    sk_X509_pop_free(r->chain, X509_free);
    gw_sign_result_init(r);
}

/* gw_upstream_new_ops whose adapter's start ends by *end as well (its init; NULL: none); *|rc| the class of
   a failure, the adapter's own (gw_upstream_set_new). */
static struct gw_upstream *new_until(const struct gw_upstream_conf *conf, const struct gw_upstream_ops *ops,
                                     const struct gw_upstream_signer *signer, const _Atomic uint64_t *end,
                                     int *rc, char *err)
{
    struct gw_upstream *up = NULL;

    *rc = GW_ERR_INVAL;
    if (conf == NULL || ops == NULL || ops->sign == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: no adapter", gw_upstream_conf_name(conf));
        goto fail;
    }
    if ((up = calloc(1, sizeof(*up))) == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: out of memory", gw_upstream_conf_name(conf));
        *rc = GW_ERR_NOMEM;
        goto fail;
    }
    up->conf = conf;
    up->ops = ops;
    up->signer = signer;
    pthread_mutex_init(&up->health_lock, NULL);
    up->health.up = true; /* until a probe says otherwise */
    atomic_init(&up->inflight, 0);
    if ((up->cas = gw_upstream_conf_issuing_cas(conf)) == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: out of memory", gw_upstream_conf_name(conf));
        *rc = GW_ERR_NOMEM;
        goto fail;
    }
    if (ops->init != NULL && (*rc = ops->init(up, end, err)) != 0)
        goto fail;
    *rc = 0;
    return up;
fail:
    if (up != NULL) { /* init failed: nothing else to clean up */
        sk_X509_pop_free(up->cas, X509_free);
        pthread_mutex_destroy(&up->health_lock);
    }
    free(up);
    return NULL;
}

struct gw_upstream *gw_upstream_new_ops(const struct gw_upstream_conf *conf,
                                        const struct gw_upstream_ops *ops,
                                        const struct gw_upstream_signer *signer, char *err)
{
    int rc;

    return new_until(conf, ops, signer, NULL, &rc, err);
}

/* gw_upstream_new whose adapter's start ends by *end as well (NULL: none); *|rc| as new_until's. */
static struct gw_upstream *upstream_new_until(const struct gw_upstream_conf *conf,
                                              const struct gw_upstream_signer *signer,
                                              const _Atomic uint64_t *end, int *rc, char *err)
{
    if (conf == NULL || conf->ops == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: no adapter", gw_upstream_conf_name(conf));
        *rc = GW_ERR_INVAL;
        return NULL;
    }
    return new_until(conf, conf->ops, signer, end, rc, err);
}

struct gw_upstream *gw_upstream_new(const struct gw_upstream_conf *conf,
                                    const struct gw_upstream_signer *signer, char *err)
{
    int rc;

    return upstream_new_until(conf, signer, NULL, &rc, err);
}

/* gw_upstream_free, waiting for calls in flight up to |until_ms| (gw_now_ms) at most. */
static bool free_until(struct gw_upstream *up, uint64_t until_ms)
{
    if (up == NULL)
        return true;
    /* A completion still to come would touch |up|: let it land, but never hang shutdown. */
    while (atomic_load(&up->inflight) != 0 && gw_now_ms() < until_ms)
        gw_sleep_ms(DRAIN_POLL_MS);
    if (atomic_load(&up->inflight) != 0) {
        gw_log(GW_LOG_ERROR, "upstream_leak", "upstream %s still has %u calls in flight; not freed",
               gw_upstream_conf_name(up->conf), atomic_load(&up->inflight));
        return false;
    }
    if (up->ops->cleanup != NULL)
        up->ops->cleanup(up);
    sk_X509_pop_free(up->cas, X509_free);
    pthread_mutex_destroy(&up->health_lock);
    free(up);
    return true;
}

bool gw_upstream_free(struct gw_upstream *up)
{
    return free_until(up, gw_now_ms() + GW_DRAIN_TIMEOUT_MS);
}

const struct gw_upstream_conf *gw_upstream_get0_conf(const struct gw_upstream *up)
{
    return up->conf;
}

const struct gw_upstream_signer *gw_upstream_get0_signer(const struct gw_upstream *up)
{
    return up->signer;
}

const char *gw_upstream_conf_type(const struct gw_upstream_conf *conf)
{
    return conf != NULL && conf->ops != NULL ? conf->ops->dialect : "?";
}

void *gw_upstream_get0_impl(const struct gw_upstream *up)
{
    return up->impl;
}

void gw_upstream_set0_impl(struct gw_upstream *up, void *impl)
{
    up->impl = impl;
}

time_t gw_upstream_now(const struct gw_upstream *up)
{
    return up->clock != NULL ? up->clock() : time(NULL);
}

/* Takes one of |up|'s in-flight slots: 0, or GW_ERR_BUSY at its max_inflight. */
static int slot_take(struct gw_upstream *up);

static unsigned max_inflight(const struct gw_upstream *up)
{
    return up->conf->max_inflight != 0 ? up->conf->max_inflight : GW_DEFAULT_UPSTREAM_MAX_INFLIGHT;
}

/*
 * call_done counts the call, releases its in-flight slot, then hands the result on. Any thread.
 * Nothing of |c->up| is read after the release: gw_upstream_free may free it at once.
 */
static void call_done(void *arg, struct gw_sign_result *res)
{
    struct call *c = arg;
    gw_upstream_done_fn done = c->done;
    void *done_arg = c->arg;

    pthread_once(&m_once, metrics_init);
    gw_metric_add(m_inflight, (const char *const[]){gw_upstream_conf_name(c->up->conf)}, -1);
    gw_metric_observe(m_duration, (const char *const[]){gw_upstream_conf_name(c->up->conf)},
                      (double)(gw_now_ms() - c->start_ms) / 1000.0);
    count_call(c->up, result_of(res));
    atomic_fetch_sub(&c->up->inflight, 1);
    free(c);
    done(done_arg, res);
}

/* Whether calls to |up| are refused at once: its probes say it is down, and it fails fast. */
static bool known_down(struct gw_upstream *up)
{
    bool down;

    if (!up->conf->fail_fast)
        return false;
    pthread_mutex_lock(&up->health_lock);
    down = !up->health.up;
    pthread_mutex_unlock(&up->health_lock);
    return down;
}

/* known_down for a sign call, counted as one refused so. */
static bool fast_failing(struct gw_upstream *up)
{
    if (!known_down(up))
        return false;
    count_call(up, "unavailable");
    return true;
}

static int slot_take(struct gw_upstream *up)
{
    if (atomic_fetch_add(&up->inflight, 1) < max_inflight(up))
        return 0;
    atomic_fetch_sub(&up->inflight, 1);
    count_call(up, "busy");
    return GW_ERR_BUSY;
}

/*
 * The adapter's sign for call |c| (which holds its slot): 0, and |c| completes through call_done;
 * else the adapter refused it without calling back, and |c| and its slot are the caller's again.
 */
static int call_sign(struct call *c, const struct gw_sign_req *req)
{
    const char *name[] = {gw_upstream_conf_name(c->up->conf)};
    int rc;

    c->start_ms = gw_now_ms();
    pthread_once(&m_once, metrics_init);
    gw_metric_add(m_inflight, name, 1);
    if ((rc = c->up->ops->sign(c->up, req, call_done, c)) != 0) {
        gw_metric_add(m_inflight, name, -1);
        count_call(c->up, "refused");
    }
    return rc;
}

int gw_upstream_sign_submit(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                            void *arg)
{
    struct call *c;
    int rc;

    if (up == NULL || req == NULL || req->plan == NULL || done == NULL)
        return GW_ERR_INVAL;
    if (fast_failing(up))
        return GW_ERR_UNAVAILABLE;
    if (slot_take(up) != 0)
        return GW_ERR_BUSY;
    if ((c = malloc(sizeof(*c))) == NULL) {
        atomic_fetch_sub(&up->inflight, 1);
        return GW_ERR_NOMEM;
    }
    c->up = up;
    c->done = done;
    c->arg = arg;
    if ((rc = call_sign(c, req)) != 0) {
        atomic_fetch_sub(&up->inflight, 1);
        free(c);
    }
    return rc;
}

/* ---- the synchronous wait ---- */

static struct waiter *waiter_new(const struct gw_upstream *up, const struct gw_sign_req *req,
                                 uint32_t timeout_ms)
{
    struct waiter *w;

    if ((w = calloc(1, sizeof(*w))) == NULL)
        return NULL;
    pthread_mutex_init(&w->lock, NULL);
    if (gw_cond_init_monotonic(&w->cond) != 0) { /* the wait ends at a gw_now_ms deadline */
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    w->refs = 2; /* the worker and the completion */
    w->deadline_ms = gw_now_ms() + timeout_ms;
    snprintf(w->upstream, sizeof(w->upstream), "%s", gw_upstream_conf_name(up->conf));
    snprintf(w->request_id, sizeof(w->request_id), "%s", req->request_id != NULL ? req->request_id : "");
    return w;
}

static void waiter_release(struct waiter *w)
{
    int last;

    pthread_mutex_lock(&w->lock);
    last = --w->refs == 0;
    pthread_mutex_unlock(&w->lock);
    if (!last)
        return;
    if (w->res != NULL) {
        gw_sign_result_cleanup(w->res);
        free(w->res);
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* A certificate nobody will receive: say so, with what it takes to find and revoke it. */
static void log_late_issue(const struct waiter *w, const X509 *cert)
{
    char hex[GW_SERIAL_HEX_LEN];

    gw_x509_cert_serial_hex(cert, hex, sizeof(hex));
    gw_log_kv(GW_LOG_WARN, "late_issue", "serial", hex[0] != '\0' ? hex : "?", "upstream", w->upstream,
              "request_id", w->request_id, "msg", "certificate issued after the deadline; not delivered",
              NULL);
}

/* wait_done is the completion of a sign_wait call (any thread, possibly inside submit). */
static void wait_done(void *arg, struct gw_sign_result *res)
{
    struct waiter *w = arg;
    int late;

    pthread_mutex_lock(&w->lock);
    late = w->abandoned || gw_now_ms() > w->deadline_ms;
    if (!late) {
        w->res = res;
        w->completed = 1;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    if (late) {
        if (res->cert != NULL)
            log_late_issue(w, res->cert);
        gw_sign_result_cleanup(res);
        free(res);
    }
    waiter_release(w);
}

/* Blocks until the completion or the deadline; returns 1 if a result arrived in time. Worker. */
static int wait_result(struct waiter *w, struct gw_sign_result *out)
{
    struct timespec ts = gw_timespec_ms(w->deadline_ms); /* gw_now_ms is the condition's clock (waiter_new) */
    int got = 0;

    pthread_mutex_lock(&w->lock);
    while (!w->completed) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &ts) == ETIMEDOUT && !w->completed)
            break;
    }
    if (w->completed) {
        *out = *w->res; /* moves ownership of cert and chain */
        free(w->res);
        w->res = NULL;
        got = 1;
    } else {
        w->abandoned = 1;
    }
    pthread_mutex_unlock(&w->lock);
    return got;
}

uint32_t gw_upstream_timeout_ms(const struct gw_upstream *up)
{
    return up != NULL && up->conf->timeout_ms != 0 ? up->conf->timeout_ms : GW_DEFAULT_UPSTREAM_TIMEOUT_MS;
}

void gw_upstream_refusal(const struct gw_upstream *up, int rc, struct gw_sign_result *out)
{
    const char *name = up != NULL ? gw_upstream_conf_name(up->conf) : "?";

    gw_sign_result_init(out);
    if (rc == GW_ERR_BUSY)
        gw_sign_result_fail(out, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                            "upstream %s is at its limit of %u calls in flight", name,
                            up != NULL ? max_inflight(up) : 0);
    else if (rc == GW_ERR_UNAVAILABLE)
        gw_sign_result_fail(out, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                            "upstream CA %s is unavailable: its health probes fail; nothing was sent to it, "
                            "retry later",
                            name);
    else
        gw_sign_result_fail(out, rc, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                            "upstream %s refused the request: %s", name, gw_err_str(rc));
}

/* worker; in-process callers only: a late certificate is only logged (upstream.h) */
void gw_upstream_sign_wait(struct gw_upstream *up, const struct gw_sign_req *req, struct gw_sign_result *out)
{
    const char *name = up != NULL ? gw_upstream_conf_name(up->conf) : "?";
    uint32_t timeout_ms;
    struct waiter *w = NULL;
    int rc;

    gw_sign_result_init(out);
    if (up == NULL || req == NULL) {
        gw_sign_result_fail(out, GW_ERR_INVAL, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                            "upstream %s: no request", name);
        return;
    }
    timeout_ms = gw_upstream_timeout_ms(up);
    if ((w = waiter_new(up, req, timeout_ms)) == NULL) {
        gw_sign_result_fail(out, GW_ERR_NOMEM, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                            "upstream %s: out of memory", name);
        return;
    }
    if ((rc = gw_upstream_sign_submit(up, req, wait_done, w)) != 0) {
        w->refs = 1; /* |done| will not be called */
        gw_upstream_refusal(up, rc, out);
        goto out;
    }
    if (!wait_result(w, out))
        gw_sign_result_fail(
            out, GW_ERR_TIMEOUT, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
            "upstream %s did not answer within %u ms; the outcome is unknown, do not retry blindly", name,
            timeout_ms);
out:
    waiter_release(w);
}

/* ---- calls on a thread of their own (polling) ---- */

/* How many more allocations of asynchronous calls succeed: -1 all (gw_upstream_test_fail_async_allocs). */
static atomic_int async_allocs_left = -1;

void gw_upstream_test_fail_async_allocs(int n)
{
    atomic_store(&async_allocs_left, n);
}

/* calloc for an asynchronous call's own memory, failing where a test says. (worker) */
static void *async_alloc(size_t size)
{
    int left = atomic_load(&async_allocs_left);

    while (left > 0 && !atomic_compare_exchange_weak(&async_allocs_left, &left, left - 1))
        ;
    return left == 0 ? NULL : calloc(1, size);
}

/*
 * One gw_upstream_sign_async call: owned copies of the request, for the call thread, and what that
 * thread needs to answer, made before it starts: out of memory there, the request would get no answer.
 */
struct async_call {
    struct gw_upstream *up;
    struct call *call; /* the adapter's completion context, call_done's once the adapter takes it */
    struct gw_sign_result *spare; /* the refusal's, where the adapter does not take it */
    struct gw_sign_req req;
    struct gw_cert_plan plan;
    X509_REQ *csr;
    char request_id[2 * GW_MAX_TID_LEN + 1];
    gw_upstream_done_fn done;
    void *arg;
};

static void async_free(struct async_call *a)
{
    if (a == NULL)
        return;
    gw_cert_plan_cleanup(&a->plan);
    X509_REQ_free(a->csr);
    free(a->call);
    free(a->spare);
    free(a);
}

static struct async_call *async_new(struct gw_upstream *up, const struct gw_sign_req *req,
                                    gw_upstream_done_fn done, void *arg)
{
    struct async_call *a = async_alloc(sizeof(*a));

    if (a == NULL)
        return NULL;
    gw_cert_plan_init(&a->plan);
    a->up = up;
    a->done = done;
    a->arg = arg;
    /* the plan's objects are the worker's, and go away when it answers its client */
    if ((a->call = async_alloc(sizeof(*a->call))) == NULL ||
        (a->spare = async_alloc(sizeof(*a->spare))) == NULL || gw_cert_plan_copy(req->plan, &a->plan) != 0 ||
        (req->csr != NULL && (a->csr = X509_REQ_dup(req->csr)) == NULL)) {
        async_free(a);
        return NULL;
    }
    snprintf(a->request_id, sizeof(a->request_id), "%s", req->request_id != NULL ? req->request_id : "");
    a->req =
        (struct gw_sign_req){.role = req->role, .plan = &a->plan, .csr = a->csr, .request_id = a->request_id};
    return a;
}

/* The result of an adapter's sign, handed from wherever the adapter completes to the call thread. */
struct async_result {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct gw_sign_result *res;
};

static void async_result_done(void *arg, struct gw_sign_result *res)
{
    struct async_result *r = arg;

    pthread_mutex_lock(&r->lock);
    r->res = res;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/*
 * The call thread: the adapter's sign, and a result through |done| whatever happens, on this
 * thread even when the adapter completes on its own (vault's transfer thread): |done| may write
 * records and reach the shared state, which must not hold up the adapter's other calls.
 */
static void *async_run(void *arg)
{
    struct async_call *a = arg;
    struct async_result r = {.res = NULL};
    struct gw_sign_result *res;
    int rc;

    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.cond, NULL);
    *a->call = (struct call){a->up, async_result_done, &r, 0};
    rc = call_sign(a->call, &a->req);
    /* the adapter completes within its timeout: its |done| is called exactly once, and frees the call */
    if (rc == 0) {
        a->call = NULL;
        pthread_mutex_lock(&r.lock);
        while (r.res == NULL)
            pthread_cond_wait(&r.cond, &r.lock);
        pthread_mutex_unlock(&r.lock);
        a->done(a->arg, r.res);
    }
    pthread_cond_destroy(&r.cond);
    pthread_mutex_destroy(&r.lock);
    if (rc != 0) { /* |done| was not called: the slot is still ours */
        /* the refusal reads |a->up|, which gw_upstream_free may free once the slot is released */
        res = a->spare;
        a->spare = NULL;
        gw_upstream_refusal(a->up, rc, res);
        atomic_fetch_sub(&a->up->inflight, 1);
        a->done(a->arg, res);
    }
    async_free(a);
    return NULL;
}

int gw_upstream_detach(void *(*fn)(void *arg), void *arg)
{
    pthread_attr_t attr;
    pthread_t th;
    int rc;

    if (pthread_attr_init(&attr) != 0)
        return GW_ERR_NOMEM;
    rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
                 pthread_create(&th, &attr, fn, arg) == 0
             ? 0
             : GW_ERR_NOMEM;
    pthread_attr_destroy(&attr);
    return rc;
}

/* worker */
int gw_upstream_sign_async(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                           void *arg)
{
    struct async_call *a;
    int rc;

    if (up == NULL || req == NULL || req->plan == NULL || done == NULL)
        return GW_ERR_INVAL;
    /* the slot is taken here, so that a full upstream is refused at once, not on the call thread */
    if (fast_failing(up))
        return GW_ERR_UNAVAILABLE;
    if (slot_take(up) != 0)
        return GW_ERR_BUSY;
    if ((a = async_new(up, req, done, arg)) == NULL) {
        atomic_fetch_sub(&up->inflight, 1);
        return GW_ERR_NOMEM;
    }
    if ((rc = gw_upstream_detach(async_run, a)) != 0) {
        atomic_fetch_sub(&up->inflight, 1);
        async_free(a);
    }
    return rc;
}

/* ---- what a role may ask of its upstream ---- */

/* True when the role restricts the names it issues itself (config "authorization"). */
static int role_restricts_names(const struct gw_role *role)
{
    const struct gw_authz *a = &role->authz;

    return a->common_names.n > 0 && (role->allowed_san_types == 0 || a->dns_names.n > 0 || a->uris.n > 0 ||
                                     a->emails.n > 0 || a->ip_ranges.n > 0);
}

const struct gw_upstream_conf *gw_upstream_delegated_for(const struct gw_role *role)
{
    const struct gw_upstream_conf *up = role != NULL ? role->upstream : NULL;

    if (up != NULL && (up->ops->caps & GW_UP_SIGN_KEY) != 0 && role->migration.to != NULL)
        return role->migration.to;
    return up;
}

int gw_upstream_check_role(const struct gw_upstream_conf *up, const struct gw_role *role, char *err)
{
    const struct gw_upstream_ops *ops = up != NULL ? up->ops : NULL, *dops;

    if (ops == NULL || role == NULL) {
        snprintf(err, GW_ERR_LEN, "role %s: no adapter for its upstream", role != NULL ? role->name : "?");
        return GW_ERR_INVAL;
    }
    if (role->crmf != GW_CRMF_DELEGATE)
        return 0; /* CRMF to a CSR-only upstream is refused with a CMP error asking for p10cr */
    /* a migration may move the role from an upstream that signs CRMF to a CSR-only one */
    if (up == role->upstream) {
        up = gw_upstream_delegated_for(role);
        ops = up->ops;
    }
    if ((ops->caps & GW_UP_SIGN_KEY) != 0) {
        snprintf(err, GW_ERR_LEN,
                 "role %s: upstream %s (%s) signs CRMF requests itself: \"crmf\": \"delegate\" "
                 "would bypass it",
                 role->name, gw_upstream_conf_name(up), ops->dialect);
        return GW_ERR_INVAL;
    }
    if (role->delegate == NULL || (dops = role->delegate->ops) == NULL ||
        (dops->caps & GW_UP_SIGN_KEY) == 0) {
        snprintf(err, GW_ERR_LEN,
                 "role %s: \"crmf\": \"delegate\" needs a delegate upstream that signs CRMF "
                 "requests",
                 role->name);
        return GW_ERR_INVAL;
    }
    /* docs/design.md D5: the delegate applies the upstream role's policy; without it, only ours */
    if ((ops->caps & GW_UP_ROLE_POLICY) == 0)
        gw_log(
            GW_LOG_WARN, "config",
            "role %s: upstream %s (%s) cannot describe its roles: the delegate %s applies only this role's "
            "authorization%s",
            role->name, gw_upstream_conf_name(up), ops->dialect, gw_upstream_conf_name(role->delegate),
            role_restricts_names(role) ? "" : ", which restricts no names");
    return 0;
}

/* ---- the upstreams of a config snapshot ---- */

struct gw_upstream_set {
    struct gw_upstream **ups;
    size_t n;
};

struct gw_upstream_set *gw_upstream_set_new(const struct gw_upstream_conf *confs, size_t n,
                                            const struct gw_role *roles, size_t n_roles,
                                            const struct gw_upstream_signer *signer,
                                            const _Atomic uint64_t *end, int *rc, char *err)
{
    struct gw_upstream_set *set;
    int why, *code = rc != NULL ? rc : &why;
    size_t i;

    *code = GW_ERR_NOMEM;
    if ((set = calloc(1, sizeof(*set))) == NULL)
        goto nomem;
    *code = 0;
    if (n == 0)
        return set;
    if ((set->ups = calloc(n, sizeof(*set->ups))) == NULL)
        goto nomem;
    for (i = 0; i < n_roles; i++)
        if ((*code = gw_upstream_check_role(roles[i].upstream, &roles[i], err)) != 0)
            goto fail;
    for (i = 0; i < n; i++) {
        if ((set->ups[i] = upstream_new_until(&confs[i], signer, end, code, err)) == NULL)
            goto fail;
        set->n++;
    }
    return set;
nomem:
    *code = GW_ERR_NOMEM;
    snprintf(err, GW_ERR_LEN, "upstreams: out of memory");
fail:
    gw_upstream_set_free(set);
    return NULL;
}

bool gw_upstream_set_free(struct gw_upstream_set *set)
{
    return gw_upstream_set_free_until(set, gw_now_ms() + GW_DRAIN_TIMEOUT_MS);
}

bool gw_upstream_set_free_until(struct gw_upstream_set *set, uint64_t until_ms)
{
    bool all = true;

    if (set == NULL)
        return true;
    for (size_t i = 0; i < set->n; i++)
        all &= free_until(set->ups[i], until_ms);
    free(set->ups);
    free(set);
    return all;
}

bool gw_upstream_set_busy(const struct gw_upstream_set *set)
{
    for (size_t i = 0; set != NULL && i < set->n; i++)
        if (atomic_load(&set->ups[i]->inflight) != 0)
            return true;
    return false;
}

struct gw_upstream *gw_upstream_set_get0(const struct gw_upstream_set *set, const char *name)
{
    size_t i;

    if (set == NULL || name == NULL)
        return NULL;
    for (i = 0; i < set->n; i++) {
        if (set->ups[i]->conf->name != NULL && strcmp(set->ups[i]->conf->name, name) == 0)
            return set->ups[i];
    }
    return NULL;
}

unsigned gw_upstream_caps(const struct gw_upstream *up)
{
    return up != NULL ? up->ops->caps : 0;
}

/*
 * The synchronous extras: refused with GW_ERR_INVAL when the adapter lacks the capability (an
 * adapter that declares a capability sets its function).
 */
static int lacks(const struct gw_upstream *up, unsigned cap, const char *what, char *err)
{
    if (up != NULL && (up->ops->caps & cap) != 0)
        return 0;
    snprintf(err, GW_ERR_LEN, "upstream %s (%s) cannot %s",
             up != NULL ? gw_upstream_conf_name(up->conf) : "?", up != NULL ? up->ops->dialect : "?", what);
    return 1;
}

/*
 * A revocation that |up| is not asked for (|issuer| and |serial| name a certificate of no CA of its):
 * GW_ERR_NOT_FOUND (it issued no such certificate) with what to do by hand in |err|, and an error
 * logged: whoever asked (a transaction rebuilt from a shared record, an upstream name a reload
 * pointed at another CA) has a certificate that stays valid until revoked where it was issued.
 */
static int not_its_ca(const struct gw_upstream *up, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                      char *err)
{
    char by[256] = "?", hex[GW_SERIAL_HEX_LEN], shown[2 * GW_MAX_SERIAL_OCTETS + sizeof(GW_X509_SERIAL_CUT)];

    if (issuer != NULL)
        X509_NAME_oneline(issuer, by, sizeof(by)); /* for a person to read only */
    gw_x509_serial_hex(serial, hex, sizeof(hex));
    gw_x509_serial_hex(serial, shown, sizeof(shown)); /* a longer one whole in the log line only */
    snprintf(err, GW_ERR_LEN, "not the CA of upstream %s: revoke serial %s by hand at its issuer %.120s",
             gw_upstream_conf_name(up->conf), shown, by);
    gw_log_kv(GW_LOG_ERROR, "revoke_not_sent", "upstream", gw_upstream_conf_name(up->conf), "serial", hex,
              "issuer", by, "msg", "the certificate is of another CA; nothing was sent to this upstream",
              NULL);
    return GW_ERR_NOT_FOUND;
}

/*
 * Vault and cfssl revoke by serial within their CA whatever issuer a request names, and a CMP CA may
 * too: asked about another CA's certificate they would answer "revoked" for nothing, or revoke
 * another holder's certificate of that serial. Hence both checks before any revocation.
 */
int gw_upstream_issues_under(const struct gw_upstream *up, const X509_NAME *issuer)
{
    for (int i = 0; up != NULL && issuer != NULL && i < sk_X509_num(up->cas); i++)
        if (X509_NAME_cmp(issuer, X509_get_subject_name(sk_X509_value(up->cas, i))) == 0)
            return 1;
    return 0;
}

int gw_upstream_issued(const struct gw_upstream *up, const X509 *cert)
{
    for (int i = 0; up != NULL && cert != NULL && i < sk_X509_num(up->cas); i++)
        if (gw_x509_signed_by((X509 *)cert, sk_X509_value(up->cas, i)))
            return 1;
    return 0;
}

int gw_upstream_is_own_ca(const struct gw_upstream *up, const X509 *ca)
{
    for (int i = 0; up != NULL && ca != NULL && i < sk_X509_num(up->cas); i++)
        if (sk_X509_value(up->cas, i) == ca) /* the object, not a certificate alike */
            return 1;
    return 0;
}

int gw_upstream_check_signer(const struct gw_upstream *up, const X509 *cert, char *err)
{
    char by[128] = "?";

    if (gw_upstream_issued(up, cert))
        return 0;
    if (cert != NULL)
        X509_NAME_oneline(X509_get_issuer_name(cert), by, sizeof(by)); /* for a person to read only */
    snprintf(err, GW_ERR_LEN,
             "the certificate upstream %.48s returned is signed by %.110s, not by a CA it issues under "
             "(issuer_ca)",
             up != NULL ? gw_upstream_conf_name(up->conf) : "?", by);
    return GW_ERR_POLICY;
}

/* gw_upstream_revoke_cert ended by *end as well (NULL: none), with what its adapter says of *not_sent. */
static int revoke_cert(struct gw_upstream *up, const X509 *cert, int reason, const _Atomic uint64_t *end,
                       int *fail_info, int *not_sent, char *err)
{
    *fail_info = OSSL_CMP_PKIFAILUREINFO_badRequest; /* unless the upstream names its own */
    *not_sent = 1;                                   /* until the adapter is called */
    if (lacks(up, GW_UP_REVOKE, "revoke certificates", err))
        return GW_ERR_INVAL;
    if (cert == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: no certificate to revoke", gw_upstream_conf_name(up->conf));
        return GW_ERR_INVAL;
    }
    if (!gw_upstream_issued(up, cert))
        return not_its_ca(up, X509_get_issuer_name(cert), X509_get0_serialNumber(cert), err);
    *not_sent = 0; /* what the adapter cannot tell may have reached the CA */
    return up->ops->revoke != NULL
               ? up->ops->revoke(up, cert, reason, end, fail_info, not_sent, err)
               : up->ops->revoke_serial(up, X509_get_issuer_name(cert), X509_get0_serialNumber(cert), reason,
                                        end, fail_info, not_sent, err);
}

int gw_upstream_revoke_cert(struct gw_upstream *up, const X509 *cert, int reason, int *fail_info,
                            int *not_sent, char *err)
{
    int unsent;

    return revoke_cert(up, cert, reason, NULL, fail_info, not_sent != NULL ? not_sent : &unsent, err);
}

int gw_upstream_revoke(struct gw_upstream *up, const X509 *cert, int reason, char *err)
{
    return gw_upstream_revoke_until(up, cert, reason, 0, err);
}

int gw_upstream_revoke_until(struct gw_upstream *up, const X509 *cert, int reason, uint64_t until_ms,
                             char *err)
{
    _Atomic uint64_t end = until_ms;
    int not_sent;

    return gw_upstream_revoke_by(up, cert, reason, &end, &not_sent, err);
}

int gw_upstream_revoke_by(struct gw_upstream *up, const X509 *cert, int reason, const _Atomic uint64_t *end,
                          int *not_sent, char *err)
{
    int fail_info, rc = revoke_cert(up, cert, reason, end, &fail_info, not_sent, err);

    /* withdrawn already, or recorded where a crash may lose it (its adapter logged that): what the caller
       wants */
    return rc == GW_ERR_EXISTS || rc == GW_ERR_NOT_DURABLE ? 0 : rc;
}

int gw_upstream_revoke_serial(struct gw_upstream *up, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                              int reason, int *fail_info, int *not_sent, char *err)
{
    int unsent;

    not_sent = not_sent != NULL ? not_sent : &unsent;
    *not_sent = 1; /* until the adapter is called */
    *fail_info = OSSL_CMP_PKIFAILUREINFO_badRequest;
    if (lacks(up, GW_UP_REVOKE, "revoke certificates", err))
        return GW_ERR_INVAL;
    if (serial == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: no serial number to revoke", gw_upstream_conf_name(up->conf));
        return GW_ERR_INVAL;
    }
    if (up->ops->revoke_serial == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s (%s) cannot revoke by serial number",
                 gw_upstream_conf_name(up->conf), up->ops->dialect);
        return GW_ERR_INVAL;
    }
    if (issuer != NULL && !gw_upstream_issues_under(up, issuer))
        return not_its_ca(up, issuer, serial, err);
    *not_sent = 0; /* what the adapter cannot tell may have reached the CA */
    return up->ops->revoke_serial(up, issuer, serial, reason, NULL, fail_info, not_sent, err);
}

int gw_upstream_crl(struct gw_upstream *up, const char *issuer_ref, unsigned char **der, size_t *len,
                    char *err)
{
    if (der != NULL)
        *der = NULL;
    if (len != NULL)
        *len = 0;
    if (lacks(up, GW_UP_CRL, "publish a CRL", err))
        return GW_ERR_INVAL;
    if (der == NULL || len == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s: no place for the CRL", gw_upstream_conf_name(up->conf));
        return GW_ERR_INVAL;
    }
    /* a role's issuer_ref may be meant for its migration's Vault: an upstream of one issuer has no other */
    if ((up->ops->role_keys & GW_ROLE_KEY_ISSUER_REF) == 0)
        issuer_ref = NULL;
    return up->ops->crl(up, issuer_ref, der, len, err);
}

int gw_upstream_role_policy(struct gw_upstream *up, const char *role, struct gw_role_policy *out, char *err)
{
    if (lacks(up, GW_UP_ROLE_POLICY, "describe its roles", err))
        return GW_ERR_INVAL;
    /* as a sign call: not sent to wait out the timeout of an upstream its probes found down */
    if (known_down(up)) {
        snprintf(err, GW_ERR_LEN, "upstream %s is down (its probes): its role %.64s was not read",
                 gw_upstream_conf_name(up->conf), role != NULL ? role : "(null)");
        return GW_ERR_UNAVAILABLE;
    }
    return up->ops->role_policy(up, role, out, err);
}

int gw_upstream_cert_status(struct gw_upstream *up, const X509 *cert, int *revoked, char *err)
{
    if (lacks(up, GW_UP_CERT_STATUS, "report certificate status", err))
        return GW_ERR_INVAL;
    return up->ops->cert_status(up, cert, revoked, err);
}

int gw_upstream_cert_by_serial(struct gw_upstream *up, const ASN1_INTEGER *serial, X509 **cert, char *err)
{
    *cert = NULL;
    if (lacks(up, GW_UP_CERT_LOOKUP, "look a certificate up by its serial", err))
        return GW_ERR_INVAL;
    return up->ops->cert_by_serial(up, serial, cert, err);
}

int gw_upstream_set_put0(struct gw_upstream_set *set, struct gw_upstream *up)
{
    struct gw_upstream **grown;

    if (set == NULL || up == NULL || up->conf->name == NULL)
        return GW_ERR_INVAL;
    for (size_t i = 0; i < set->n; i++) {
        if (set->ups[i]->conf->name != NULL && strcmp(set->ups[i]->conf->name, up->conf->name) == 0) {
            gw_upstream_free(set->ups[i]);
            set->ups[i] = up;
            return 0;
        }
    }
    if ((grown = realloc(set->ups, (set->n + 1) * sizeof(*grown))) == NULL)
        return GW_ERR_NOMEM;
    set->ups = grown;
    set->ups[set->n++] = up;
    return 0;
}

void gw_upstream_set_clock(struct gw_upstream_set *set, time_t (*clock)(void))
{
    for (size_t i = 0; set != NULL && i < set->n; i++)
        set->ups[i]->clock = clock;
}

void gw_sign_result_fail(struct gw_sign_result *r, int status, int fail_info, const char *fmt, ...)
{
    va_list ap;

    X509_free(r->cert);
    sk_X509_pop_free(r->chain, X509_free);
    r->cert = NULL;
    r->chain = NULL;
    r->status = status;
    r->fail_info = fail_info;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

/* ---- health ---- */

static struct gw_metric *m_up;
static pthread_once_t m_up_once = PTHREAD_ONCE_INIT;

static void up_metric_init(void)
{
    static const char *const labels[] = {"upstream", NULL};

    m_up =
        gw_metric_new("cmpgw_upstream_up", "1 while an upstream's health probes succeed, 0 once it is down.",
                      GW_METRIC_GAUGE, labels, NULL, 0);
}

int gw_upstream_probe(struct gw_upstream *up, const _Atomic uint64_t *end, char *err)
{
    const char *name = gw_upstream_conf_name(up->conf);
    int rc = up->ops->probe != NULL ? up->ops->probe(up, end, err) : 0;
    bool was, now;

    if (end != NULL && atomic_load(end) != 0) /* cut short, or not: nobody asks for its answer any more */
        return rc;
    pthread_mutex_lock(&up->health_lock);
    was = up->health.up;
    up->health.probed = true;
    up->health.last_probe = time(NULL);
    if (rc == 0) {
        up->health.failures = 0;
        up->health.last_ok = up->health.last_probe;
        up->health.error[0] = '\0';
        up->health.up = true;
    } else {
        up->health.failures++;
        snprintf(up->health.error, sizeof(up->health.error), "%s", err);
        up->health.up = up->health.failures < GW_UPSTREAM_DOWN_AFTER;
    }
    now = up->health.up;
    pthread_mutex_unlock(&up->health_lock);
    pthread_once(&m_up_once, up_metric_init);
    gw_metric_set(m_up, (const char *const[]){name}, now ? 1 : 0);
    if (was && !now)
        gw_log(GW_LOG_ERROR, "upstream_down", "upstream %s is down after %d failed probes: %s%s", name,
               GW_UPSTREAM_DOWN_AFTER, err,
               up->conf->fail_fast ? "; its sign calls and role reads are refused at once" : "");
    else if (!was && now)
        gw_log(GW_LOG_INFO, "upstream_up", "upstream %s answers its probes again", name);
    return rc;
}

void gw_upstream_health(struct gw_upstream *up, struct gw_upstream_health *out)
{
    pthread_mutex_lock(&up->health_lock);
    *out = up->health;
    pthread_mutex_unlock(&up->health_lock);
}
