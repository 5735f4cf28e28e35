/*
 * Upstream calls that do not hold a worker (suspend.h, docs/design.md D24).
 *
 * A suspension is shared by the request (the listener's job holds it through c->rsp) and the
 * upstream's completion. The completion only stores the result and calls the armed resume
 * function: it never touches the suspension after unlocking, and the request frees it after the
 * second pass, which can only start once the completion has run. So no reference count is needed.
 */
#include "gateway/cmp/suspend.h"
#include "gateway/cmp/record.h"
#include "base/err.h"
#include "base/log.h"
#include "base/x509.h"

#include <pthread.h>
#include <stdlib.h>
#include <openssl/x509v3.h>

struct gw_cmp_suspended {
    pthread_mutex_t lock;
    bool done;                 /* |res| holds the call's outcome */
    bool taken;                /* the second pass took |res| */
    struct gw_sign_result res; /* the outcome, once |done| */
    gw_cmp_resume_fn fn;       /* armed: called once |done| */
    void *arg;
    OSSL_CMP_MSG *msg; /* the request, decoded once for both passes */
    struct cmp_txn *t; /* the first pass's transaction: plan, upstream, who asked */
    void (*t_free)(void *t);
};

static void suspended_free(struct gw_cmp_suspended *s)
{
    if (s == NULL)
        return;
    gw_sign_result_cleanup(&s->res);
    OSSL_CMP_MSG_free(s->msg);
    if (s->t != NULL)
        s->t_free(s->t);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* The upstream's completion (any thread, possibly inside submit). */
static void call_done(void *arg, struct gw_sign_result *res)
{
    struct gw_cmp_suspended *s = arg;
    gw_cmp_resume_fn fn;
    void *fn_arg;

    pthread_mutex_lock(&s->lock);
    s->res = *res; /* moved */
    free(res);
    s->done = true;
    fn = s->fn;
    fn_arg = s->arg;
    pthread_mutex_unlock(&s->lock);
    if (fn != NULL) /* |s| may be gone from here on: the second pass may already run */
        fn(fn_arg);
}

void gw_cmp_suspended_arm(struct gw_cmp_suspended *s, gw_cmp_resume_fn fn, void *arg)
{
    bool done;

    pthread_mutex_lock(&s->lock);
    done = s->done;
    if (!done) {
        s->fn = fn;
        s->arg = arg;
    }
    pthread_mutex_unlock(&s->lock);
    if (done)
        fn(arg);
}

int cmp_suspend_sign(struct cmp_call *c, struct cmp_txn *t, const struct gw_sign_req *req,
                     struct gw_sign_result *out)
{
    struct gw_cmp_suspended *s = calloc(1, sizeof(*s));
    bool done;
    int rc;

    gw_sign_result_init(out);
    if (s == NULL) {
        gw_upstream_refusal(t->up, GW_ERR_NOMEM, out);
        return 0;
    }
    pthread_mutex_init(&s->lock, NULL);
    gw_sign_result_init(&s->res);
    if ((rc = gw_upstream_sign_submit(t->up, req, call_done, s)) != 0) {
        gw_upstream_refusal(t->up, rc, out);
        suspended_free(s);
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    done = s->done;
    if (done) { /* completed at once (an in-process issuer): answer in this pass */
        *out = s->res;
        gw_sign_result_init(&s->res);
    }
    pthread_mutex_unlock(&s->lock);
    if (done) {
        suspended_free(s);
        return 0;
    }
    c->suspend = s;
    return 1;
}

void cmp_suspend_park(struct cmp_call *c, struct cmp_txn *t, void (*t_free)(void *t))
{
    struct gw_cmp_suspended *s = c->suspend;

    t->call = NULL;
    s->t = t;
    s->t_free = t_free;
    c->suspend = NULL;
    c->reserved = 0; /* the second pass holds the slot */
    c->rsp->suspended = s;
    gw_log_kv(GW_LOG_DEBUG, "upstream_suspended", "tid", c->rsp->tid, "identity", t->identity, "upstream",
              gw_upstream_conf_name(gw_upstream_get0_conf(t->up)), NULL);
}

void cmp_suspend_keep_msg(struct gw_cmp_suspended *s, OSSL_CMP_MSG *msg)
{
    s->msg = msg;
}

OSSL_CMP_MSG *cmp_suspend_msg(struct cmp_call *c)
{
    OSSL_CMP_MSG *msg = c->resume->msg;

    c->resume->msg = NULL;
    return msg;
}

void cmp_suspend_begin(struct cmp_call *c)
{
    c->resume = c->rsp->suspended;
    c->rsp->suspended = NULL;
    c->reserved = 1; /* reserved by the first pass */
}

const struct cmp_txn *cmp_suspend_first(const struct cmp_call *c)
{
    return c->resume != NULL ? c->resume->t : NULL;
}

int cmp_suspend_take(struct cmp_call *c, struct gw_sign_result *out, const struct cmp_txn **t1)
{
    struct gw_cmp_suspended *s = c->resume;

    if (s == NULL || s->taken)
        return -1;
    s->taken = true;
    *out = s->res; /* moved */
    gw_sign_result_init(&s->res);
    *t1 = s->t;
    return 0;
}

void cmp_suspend_end(struct cmp_call *c)
{
    struct gw_cmp_suspended *s = c->resume;
    struct cmp_txn *t;

    if (s == NULL)
        return;
    c->resume = NULL;
    t = s->t;
    if (!s->taken && s->res.cert != NULL) { /* a refused answer's certificate too (issue.c) */
        gw_x509_cert_serial_hex(s->res.cert, t->serial, sizeof(t->serial));
        gw_log_kv(GW_LOG_ERROR, "resumed_request_refused", "tid", c->rsp->tid, "identity", t->identity,
                  "serial", t->serial, "msg",
                  "the request was refused when the upstream's certificate came; it is withdrawn", NULL);
        (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected", c->rsp->outcome, s->res.cert, 1);
        /* unchecked: perhaps not even for the requested key, nor issued for this request */
        if (s->res.status != 0)
            cmp_withdraw_answered(c->e, t, c->rsp->tid, &s->res, t->plan, CRL_REASON_UNSPECIFIED);
        else
            cmp_withdraw_returned(c->e, t, c->rsp->tid, s->res.cert, t->plan, CRL_REASON_UNSPECIFIED);
    }
    suspended_free(s);
}
