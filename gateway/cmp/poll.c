/*
 * Polling for slow upstreams (docs/polling.md, docs/design.md O7). With a role's
 * "poll_after", the sign call runs on a call thread (gw_upstream_sign_async); the worker waits up
 * to poll_after, then the request is answered "waiting" and its transaction is parked with the
 * call. pollReq asks here whether the result has come; in a cluster with transaction records the
 * result also goes beside the shared record, where a pollReq on any instance finds it (share.c).
 *
 * A call is shared by the worker (then the parked transaction) and its completion, and freed by
 * whichever lets go last (refs), so a completion that arrives after the transaction expired lands
 * on live memory. A completion that arrives after the worker stopped waiting checks the certificate
 * as deliver() would (check_arrival) and writes its record itself, fsync'd, before the result becomes
 * visible to a pollReq: a certificate issued upstream meanwhile is on record even if the client never
 * polls again or the gateway stops (docs/design.md D8), as "issued" if it passed the checks, else as
 * "rejected" and withdrawn at once.
 *
 * The call's deadline and its completion agree under the call's lock: whichever comes first wins.
 * A completion that comes first holds the result (|landing|) while it writes the record, and a
 * pollReq meanwhile gets a pollRep, never the deadline's systemUnavail; a deadline that came first
 * (|gave_up|, the client told systemUnavail) makes the certificate returned later a late one: on
 * record as not delivered, then withdrawn (revoked at the upstream where it can be). So is one whose
 * shared transaction another instance closed first (publish).
 *
 * Lock order: detach_lock, then a call's lock. detach_lock guards every engine's list of calls
 * and each call's |e|, and is held while a completion writes to the engine's audit log, so that
 * the engine cannot go away under it.
 */
#include "gateway/cmp/poll.h"
#include "gateway/cmp/poll_local.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/policy.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/status.h"
#include "gateway/cmp/txn.h"
#include "base/err.h"
#include "base/log.h"
#include "base/clock.h"
#include "base/x509.h"
#include "mappings/policy.h"

#include <errno.h>
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#define DETACH_POLL_MS 10
#define TEXT_AFTER_DEADLINE "issued after the deadline; not delivered"
#define TEXT_AFTER_CLOSE "issued after its transaction was closed; not delivered"

struct cmp_pending {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs;             /* the worker or the parked transaction, and the completion */
    int done;             /* |res| holds the outcome (or it was taken) */
    int deferred;         /* the worker stopped waiting: the completion writes the record */
    int on_record;        /* the completion wrote the "issued" record */
    int gave_up;          /* the deadline passed first: a later certificate is not delivered */
    int closed;           /* its transaction closed while the call ran, or its certificate was withdrawn
                             uncollected: a later certificate is neither delivered nor shared */
    int landing;          /* the completion came first and writes the record: the deadline is past it */
    int published;        /* the result is beside the shared record (or being put there) */
    int put_failed;       /* a try to put it there failed once sent: it may have got there all the same */
    const char *left;     /* its transaction closed here, left to its record (cmp_poll_leave): the event
                             that logs a certificate a put then loses; NULL while not left */
    int stopped;          /* left as the gateway stopped: that certificate stays valid */
    const char *stop;     /* its unshared transaction closed at a stop while the call ran (cmp_poll_closed):
                             the event that logs the certificate that comes, on record as not delivered */
    uint64_t deadline_ms; /* the upstream's timeout from the start of the call */
    int64_t check_after;  /* seconds: what a pollRep asks for while the call runs */
    struct gw_sign_result *res;
    /* a copy of the request's, for check_arrival; its pubkey is the requested key: a refused answer's
       certificate is withdrawn only if for it */
    struct gw_cert_plan plan;
    /* guarded by detach_lock */
    struct gw_cmp_engine *e; /* NULL once the engine is gone */
    struct cmp_pending *prev, *next;
    int linked;
    /* the transaction's audit fields, copied: the completion must not touch the transaction */
    struct cmp_txn view;
    char tid[2 * GW_MAX_TID_LEN + 1];
    char upstream[GW_MAX_NAME_LEN + 1]; /* for logs after the upstream set is gone */
    /* a shared transaction (cmp_poll_share): the result goes beside its record for any instance */
    struct gw_cluster *cl; /* guarded by |lock|; used under detach_lock while |e| is set */
    unsigned char tid_raw[GW_MAX_TID_LEN];
    size_t tid_len;
    time_t ttl;
    int returned; /* the completion has begun: the call no longer runs */
    /* under |lock|: the slot of its closed transaction, which the completion ends (cmp_poll_hold_slot) */
    int holds_slot;
    unsigned char slot_tid[GW_MAX_TID_LEN];
    size_t slot_tid_len;
    char slot_quota[GW_QUOTA_KEY_LEN];
};

/* A deferred request rebuilt from its record: the call runs, or ran, on another instance. */
struct cmp_remote {
    uint64_t deadline_ms; /* wall clock (ms since the epoch): the instances' clocks agree */
    int64_t check_after;
    struct gw_sign_result *res; /* NULL until that instance wrote the result */
    int recorded;               /* its certificate's "issued" record is on that instance's audit log */
    int seen;                   /* the result was beside the record when this instance read it */
    char upstream[GW_MAX_NAME_LEN + 1];
};

static pthread_mutex_t detach_lock = PTHREAD_MUTEX_INITIALIZER;
/* completions writing their result to the shared state or withdrawing a late certificate, outside
   detach_lock but with their engine (detach_lock) */
static int publishing;

static int64_t clamp_secs(uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;

    return s < 1 ? 1 : s > GW_MAX_CHECK_AFTER ? GW_MAX_CHECK_AFTER : (int64_t)s;
}

static struct cmp_pending *pending_new(const struct cmp_txn *t, const struct cmp_call *c)
{
    struct cmp_pending *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    gw_cert_plan_init(&p->plan);
    pthread_mutex_init(&p->lock, NULL);
    if (gw_cond_init_monotonic(&p->cond) != 0) { /* wait_for's deadline is a gw_now_ms one */
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    p->refs = 2;
    p->deadline_ms = gw_now_ms() + gw_upstream_timeout_ms(t->up);
    /* ask again after the time the client was already kept waiting: the CA is that slow */
    p->check_after = clamp_secs(t->role->poll_after_ms);
    p->view.role = t->role;
    p->view.up = t->up;
    snprintf(p->view.identity, sizeof(p->view.identity), "%s", t->identity);
    snprintf(p->view.route, sizeof(p->view.route), "%s", t->route);
    snprintf(p->view.tls_subject, sizeof(p->view.tls_subject), "%s", t->tls_subject);
    snprintf(p->view.body, sizeof(p->view.body), "%s", t->body);
    snprintf(p->view.quota, sizeof(p->view.quota), "%s", t->quota); /* its withdrawal counts there */
    snprintf(p->tid, sizeof(p->tid), "%s", c->rsp->tid);
    snprintf(p->upstream, sizeof(p->upstream), "%s", gw_upstream_conf_name(gw_upstream_get0_conf(t->up)));
    return p;
}

void cmp_poll_release(struct cmp_pending *p)
{
    int last;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    last = --p->refs == 0;
    pthread_mutex_unlock(&p->lock);
    if (!last)
        return;
    if (p->res != NULL) {
        gw_sign_result_cleanup(p->res);
        free(p->res);
    }
    gw_cert_plan_cleanup(&p->plan);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void link_call(struct gw_cmp_engine *e, struct cmp_pending *p)
{
    pthread_mutex_lock(&detach_lock);
    p->e = e;
    p->next = e->pending;
    if (e->pending != NULL)
        e->pending->prev = p;
    e->pending = p;
    p->linked = 1;
    pthread_mutex_unlock(&detach_lock);
}

static void unlink_call(struct cmp_pending *p)
{
    pthread_mutex_lock(&detach_lock);
    if (p->linked) {
        if (p->prev != NULL)
            p->prev->next = p->next;
        else
            p->e->pending = p->next;
        if (p->next != NULL)
            p->next->prev = p->prev;
        p->linked = 0;
    }
    p->e = NULL;
    pthread_mutex_unlock(&detach_lock);
}

/*
 * The record of a certificate nobody was waiting for any more (completion; detach_lock held): |late|
 * says why it is not delivered, or NULL when the next pollReq collects it.
 */
static int record_issue(struct cmp_pending *p, X509 *cert, const char *late)
{
    const char *status = late != NULL ? late : "awaiting the client's pollReq";

    if (p->e == NULL) { /* the gateway stopped and its drain deadline passed */
        gw_log_kv(GW_LOG_WARN, "late_issue", "tid", p->tid, "serial", p->view.serial, "upstream", p->upstream,
                  "msg", "certificate issued after shutdown; not delivered", NULL);
        return GW_ERR_IO;
    }
    if (late != NULL)
        gw_log_kv(GW_LOG_WARN, "late_issue", "tid", p->tid, "serial", p->view.serial, "upstream", p->upstream,
                  "msg", late, NULL);
    else
        gw_log_kv(GW_LOG_INFO, "cert_issued_pending", "tid", p->tid, "identity", p->view.identity, "serial",
                  p->view.serial, "upstream", p->upstream, NULL);
    return cmp_audit_cert(p->e, &p->view, p->tid, "issued", status, cert, 1);
}

static int der_append(unsigned char **buf, size_t *len, X509 *x)
{
    int n = i2d_X509(x, NULL);
    unsigned char *nb, *q;

    if (n <= 0 || (nb = realloc(*buf, *len + (size_t)n)) == NULL)
        return GW_ERR_NOMEM;
    *buf = nb;
    q = nb + *len;
    if (i2d_X509(x, &q) != n)
        return GW_ERR_CRYPTO;
    *len += (size_t)n;
    return 0;
}

/*
 * |res| as the other instances read it. A certificate whose "issued" record could not be written
 * goes as such: whichever instance collects it refuses and withdraws it, as this one would
 * (docs/design.md D8).
 */
static int shared_result(const struct gw_sign_result *res, int recorded, struct gw_txn_result *sr)
{
    memset(sr, 0, sizeof(*sr));
    sr->present = true;
    sr->status = res->status;
    sr->fail_info = res->fail_info;
    sr->modified = res->modified;
    sr->recorded = recorded;
    snprintf(sr->reason, sizeof(sr->reason), "%s", res->reason);
    if (res->status != 0 || res->cert == NULL)
        return 0;
    if (der_append(&sr->cert, &sr->cert_len, res->cert) != 0)
        goto fail;
    for (int i = 0; i < sk_X509_num(res->chain); i++)
        if (der_append(&sr->chain, &sr->chain_len, sk_X509_value(res->chain, i)) != 0)
            goto fail;
    return 0;
fail:
    gw_txn_result_cleanup(sr);
    return GW_ERR_NOMEM;
}

/*
 * Whether |p|'s result is there to share and not shared yet: then |sr| holds it and |p| counts as
 * published (publish puts that back on failure). p->lock held.
 */
static int to_publish(struct cmp_pending *p, struct gw_txn_result *sr)
{
    if (p->cl == NULL || !p->done || p->res == NULL || p->gave_up || p->closed || p->published ||
        shared_result(p->res, p->on_record, sr) != 0)
        return 0;
    p->published = 1;
    return 1;
}

static void stopped_undelivered(struct gw_cmp_engine *e, const struct cmp_txn *view, const char *tid,
                                const char *event, X509 *cert);

/*
 * After a put of |p|'s result that failed (|rc|): the certificate, up-ref'd, when the put certainly never
 * reached Redis, nor did any before it, and the transaction was left to its record meanwhile
 * (cmp_poll_leave), which then shows no result: no instance can deliver it, and none tries to put it again.
 * Else NULL, and the result waits for the next try. p->lock held.
 */
static X509 *lost_in_put(struct cmp_pending *p, int rc)
{
    p->published = 0;
    p->put_failed |= rc == GW_ERR_IO; /* else none of it reached Redis: as if never tried */
    if (p->left == NULL || p->put_failed || p->closed || p->res == NULL || p->res->cert == NULL ||
        X509_up_ref(p->res->cert) != 1)
        return NULL;
    p->closed = 1; /* withdrawn here, once */
    return p->res->cert;
}

/*
 * Whether |p|'s certificate, which its call returned in time, uncollected, is on this instance alone: no
 * try put it beside the record, and none may have (each was refused before it went out whole). p->lock held.
 */
static bool alone_here(const struct cmp_pending *p)
{
    return p->cl != NULL && p->done && p->res != NULL && p->res->cert != NULL && !p->gave_up && !p->closed &&
           !p->published && !p->put_failed;
}

/* result_not_shared's msg for the last try (|when|), by whether the certificate is then alone_here */
static const char *const last_try_msg[][2] = {
    [CMP_POLL_LAST_AT_EXPIRY] =
        {"its transaction expires here now, so it is not tried again: left to its record, "
         "from which its expiry is recorded",
         "its transaction expires here now, so it is not tried again: no try reached Redis, "
         "so no other instance can deliver it; it expires here as an unshared one (withdrawn)"},
    [CMP_POLL_LAST_AT_STOP] =
        {"the gateway stops, so it is not tried again: left to its record, for another "
         "instance to answer",
         "the gateway stops, so it is not tried again: no try reached Redis, so no other "
         "instance can deliver it; on record here as not delivered (valid), as at a single gateway's stop"},
};

/* result_not_shared's msg: what becomes of a result whose put failed (|lost|, |event|: publish's) */
static const char *unshared_msg(enum cmp_poll_try when, const X509 *lost, const char *event, bool alone)
{
    if (lost != NULL)
        return "its transaction closed here meanwhile; no instance can deliver it";
    if (event != NULL)
        return "its transaction closed here meanwhile; not tried again";
    if (when != CMP_POLL_TRY_AGAIN)
        return last_try_msg[when][alone];
    return "tried again when this instance next answers the transaction or expires it";
}

/*
 * Puts the result beside the transaction's record; |e| (alive: see publishing) records and withdraws a
 * certificate whose transaction another instance closed meanwhile (its deadline won there, or the
 * client aborted it). Retried (cmp_poll_republish) when Redis fails, unless |when| says this try is the
 * last; a certificate that then never reached Redis while its transaction expired here is withdrawn
 * (lost_in_put, or by the caller of the last try: cmp_poll_leave).
 */
static void publish(struct cmp_pending *p, struct gw_cmp_engine *e, struct gw_txn_result *sr,
                    enum cmp_poll_try when)
{
    char err[GW_ERR_LEN] = "";
    int rc = gw_cluster_put_result(p->cl, p->tid_raw, p->tid_len, sr, p->ttl, err), unseen, withdrawn, left;
    bool alone;
    const char *event = NULL;
    X509 *lost = NULL;

    /* never shared before, nor taken by a pollReq here (which came before the record went, if at all):
       no client can have it. A try that failed once sent may have reached Redis all the same, and a
       client through another instance: then it stays valid, on record */
    pthread_mutex_lock(&p->lock);
    unseen = !p->put_failed && p->res != NULL;
    withdrawn = p->closed; /* by its transaction's close here (uncollected), which dropped the record */
    pthread_mutex_unlock(&p->lock);
    /* another instance gave up on it at the deadline, or it was aborted */
    if (rc == 0 && sr->cert_len > 0 && !withdrawn) {
        const unsigned char *q = sr->cert;
        X509 *cert = d2i_X509(NULL, &q, (long)sr->cert_len);

        gw_log_kv(GW_LOG_WARN, "late_issue", "tid", p->tid, "serial", p->view.serial, "upstream", p->upstream,
                  "msg",
                  "certificate issued after its transaction was closed on another instance; not delivered",
                  NULL);
        (void)cmp_audit_cert(e, &p->view, p->tid, "expired_undelivered",
                             "its transaction was closed on another instance before the certificate came",
                             cert, 0);
        /* nobody can collect it any more: withdrawn, as a certificate after the deadline here is */
        if (cert != NULL && unseen)
            cmp_withdraw(e, &p->view, p->tid, cert, CRL_REASON_CESSATION_OF_OPERATION);
        X509_free(cert);
    } else if (rc < 0) {
        pthread_mutex_lock(&p->lock);
        lost = lost_in_put(p, rc);
        event = p->left;
        left = p->stopped;
        alone = alone_here(p);
        pthread_mutex_unlock(&p->lock);
        gw_log_kv(GW_LOG_ERROR, "result_not_shared", "tid", p->tid, "reason", err, "msg",
                  unshared_msg(when, lost, event, alone), NULL);
        if (lost != NULL && left)
            stopped_undelivered(e, &p->view, p->tid, event, lost);
        else if (lost != NULL)
            cmp_poll_withdraw_undelivered(e, &p->view, &p->view, p->tid, event, 0, lost);
        X509_free(lost);
    }
    gw_txn_result_cleanup(sr);
}

/*
 * The engine of |p| held for work outside detach_lock (cmp_poll_detach waits for it), or NULL when
 * it is gone. Let go with let_engine_go.
 */
static struct gw_cmp_engine *hold_engine(struct cmp_pending *p)
{
    struct gw_cmp_engine *e;

    pthread_mutex_lock(&detach_lock);
    if ((e = p->e) != NULL)
        publishing++;
    pthread_mutex_unlock(&detach_lock);
    return e;
}

static void let_engine_go(void)
{
    pthread_mutex_lock(&detach_lock);
    publishing--;
    pthread_mutex_unlock(&detach_lock);
}

/* |res| without its certificate and chain, which are on record: not delivered, nor withdrawn again. */
static void drop_cert(struct gw_sign_result *res)
{
    X509_free(res->cert);
    res->cert = NULL;
    sk_X509_pop_free(res->chain, X509_free);
    res->chain = NULL;
}

/*
 * A refused answer that carried a certificate (upstream.h), once the client has been told to poll: on
 * record and withdrawn now, and the result left a plain refusal for the pollReq (and the other
 * instances) to collect. Call thread.
 */
static void withdraw_refused(struct cmp_pending *p, struct gw_sign_result *res)
{
    struct gw_cmp_engine *e;

    if (res->status == 0 || res->cert == NULL)
        return;
    if ((e = hold_engine(p)) != NULL) {
        (void)cmp_audit_cert(e, &p->view, p->tid, "rejected", res->reason, res->cert, 1);
        cmp_withdraw_answered(e, &p->view, p->tid, res, &p->plan, CRL_REASON_UNSPECIFIED);
        let_engine_go();
    } else {
        gw_log_kv(GW_LOG_WARN, "late_issue", "tid", p->tid, "serial", p->view.serial, "upstream", p->upstream,
                  "msg", "certificate in a refused answer after shutdown; not delivered", NULL);
    }
    drop_cert(res);
}

/*
 * A certificate with the serial of one revoked through this gateway or let through lately
 * (cmp_check_serial_reused), |e| held: on record, and dropped from |res| so that it is not withdrawn
 * (issue.c refuse_reused) nor recorded as issued. Call thread.
 */
static void drop_reused(struct gw_cmp_engine *e, struct cmp_pending *p, struct gw_sign_result *res)
{
    (void)cmp_audit_cert(e, &p->view, p->tid, "rejected", res->reason, res->cert, 1);
    drop_cert(res);
}

/*
 * What deliver() checks (issue.c), on a certificate that came after the client was told to poll: one
 * that fails becomes a refused answer here, on record and withdrawn at once (withdraw_refused), not
 * when a pollReq that may never come collects it; one with the serial of a certificate revoked through
 * this gateway or let through lately is on record only. The pollReq gets the refusal. Call thread.
 */
static void check_arrival(struct cmp_pending *p, struct gw_sign_result *res)
{
    struct gw_cmp_engine *e;
    char err[GW_ERR_LEN] = "";
    enum gw_issued_verdict v;
    time_t now;
    int reused = 0;

    if (res->status != 0 || res->cert == NULL || (e = hold_engine(p)) == NULL)
        return; /* no engine: the gateway stopped, and record_issue says the certificate is not delivered */
    now = e->clock != NULL ? e->clock() : time(NULL);
    v = cmp_check_issued(e, p->view.role, p->view.up, &p->plan, res->cert, res->chain, now, NULL, err);
    if (v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED)
        reused = cmp_check_serial_reused(e, p->view.up, res->cert, now, p->tid, &res->fail_info, res->reason);
    if (reused != 0)
        res->status = reused == CMP_SERIAL_REUSED ? GW_ERR_POLICY : GW_ERR_UNAVAILABLE;
    if (reused == CMP_SERIAL_REUSED)
        drop_reused(e, p, res);
    let_engine_go();
    if (reused != 0 || v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED)
        return;
    res->status = GW_ERR_POLICY;
    res->fail_info = gw_policy_issued_refusal(v, err, res->reason);
}

/*
 * Ends the slot the closed transaction of |p| left to its call (cmp_poll_hold_slot), if it still holds one,
 * in |e|'s table and cluster: by the completion, or by cmp_poll_detach for a call the stop cut loose.
 */
static void release_held_slot(struct gw_cmp_engine *e, struct cmp_pending *p)
{
    int held;

    pthread_mutex_lock(&p->lock);
    held = p->holds_slot;
    p->holds_slot = 0;
    pthread_mutex_unlock(&p->lock);
    if (!held)
        return;
    gw_txn_release(e->txns, p->slot_tid, p->slot_tid_len);
    gw_cluster_release(e->cluster, p->slot_tid, p->slot_tid_len, p->slot_quota);
}

/* A slot cmp_poll_detach took from its call, ended once detach_lock is let go. */
struct held_slot {
    struct held_slot *next;
    unsigned char tid[GW_MAX_TID_LEN];
    size_t tid_len;
    char quota[GW_QUOTA_KEY_LEN];
};

/*
 * The slot |p| holds, taken from it onto |*list| (under detach_lock: its call no longer ends it). Without
 * memory to carry it past the lock, it ends here, under it: a slot left taken would outlive |e|.
 */
static void collect_held_slot(struct gw_cmp_engine *e, struct cmp_pending *p, struct held_slot **list)
{
    struct held_slot *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        release_held_slot(e, p);
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (p->holds_slot) {
        memcpy(s->tid, p->slot_tid, s->tid_len = p->slot_tid_len);
        snprintf(s->quota, sizeof(s->quota), "%s", p->slot_quota);
        p->holds_slot = 0;
        s->next = *list;
        *list = s;
        s = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    free(s);
}

/* Ends and frees the slots of |list| in |e|'s table and cluster (a Redis script each): outside detach_lock.
 */
static void release_held_slots(struct gw_cmp_engine *e, struct held_slot *list)
{
    struct held_slot *next;

    for (; list != NULL; list = next) {
        next = list->next;
        gw_txn_release(e->txns, list->tid, list->tid_len);
        gw_cluster_release(e->cluster, list->tid, list->tid_len, list->quota);
        free(list);
    }
}

/* The slot ends with the call (call thread); the engine gone, cmp_poll_detach ended it. */
static void end_held_slot(struct cmp_pending *p)
{
    struct gw_cmp_engine *e = hold_engine(p);

    if (e == NULL)
        return;
    release_held_slot(e, p);
    let_engine_go();
}

/* The completion of a deferrable call (call thread). */
static void pending_done(void *arg, struct gw_sign_result *res)
{
    struct cmp_pending *p = arg;
    struct gw_cmp_engine *e = NULL;
    struct gw_txn_result sr;
    const char *late = NULL, *stop = NULL;
    int recorded = 0, share = 0;

    pthread_mutex_lock(&p->lock);
    p->returned = 1;
    if (res->cert != NULL)
        gw_x509_cert_serial_hex(res->cert, p->view.serial, sizeof(p->view.serial));
    if (!p->deferred) { /* the worker still waits: it delivers, and writes the records */
        p->res = res;
        p->done = 1;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
        goto out;
    }
    /* the deadline came first (a pollReq told the client it timed out), or the transaction is gone */
    if (p->gave_up || p->closed)
        late = p->gave_up ? TEXT_AFTER_DEADLINE : TEXT_AFTER_CLOSE;
    p->landing = late == NULL; /* else this result is the transaction's, whenever the next pollReq comes */
    pthread_mutex_unlock(&p->lock);
    if (late == NULL) /* else withdrawn below in any case */
        check_arrival(p, res);
    withdraw_refused(p, res);
    /* on disk before a pollReq can see it (docs/design.md D8) */
    pthread_mutex_lock(&detach_lock);
    if (res->cert != NULL)
        recorded = record_issue(p, res->cert, late) == 0;
    pthread_mutex_unlock(&detach_lock);
    pthread_mutex_lock(&p->lock);
    if (late == NULL && p->closed) /* closed while the record was written: no pollReq can collect it */
        late = TEXT_AFTER_CLOSE;
    if (late == NULL) {
        p->res = res;
        p->done = 1;
        p->on_record = recorded;
        share = to_publish(p, &sr);
        stop = p->stop;
    }
    p->landing = 0;
    pthread_mutex_unlock(&p->lock);
    /* no pollReq can come for it: its "issued" record alone would read as one still awaited */
    if (stop != NULL && res->cert != NULL && (e = hold_engine(p)) != NULL) {
        stopped_undelivered(e, &p->view, p->tid, stop, res->cert);
        let_engine_go();
    }
    if (late != NULL) { /* nobody will deliver it: withdrawn, with its engine held (an upstream call) */
        if (res->cert != NULL && (e = hold_engine(p)) != NULL) {
            /* unchecked: withdrawn only if it was issued for this request */
            cmp_withdraw_returned(e, &p->view, p->tid, res->cert, &p->plan,
                                  CRL_REASON_CESSATION_OF_OPERATION);
            let_engine_go();
        }
        gw_sign_result_cleanup(res);
        free(res);
        goto out;
    }
    if (share) { /* after the "issued" record, as for a pollReq here; Redis outside detach_lock */
        if ((e = hold_engine(p)) != NULL) {
            publish(p, e, &sr, CMP_POLL_TRY_AGAIN);
            let_engine_go();
        } else {
            gw_txn_result_cleanup(&sr);
        }
    }
out:
    end_held_slot(p);
    unlink_call(p);
    cmp_poll_release(p);
}

/* Waits up to |ms| for the result; 1 with it moved into |out|, else 0 and the call is deferred. */
static int wait_for(struct cmp_pending *p, uint32_t ms, struct gw_sign_result *out)
{
    uint64_t until = gw_now_ms() + ms;
    struct timespec ts = gw_timespec_ms(until); /* gw_now_ms is the condition's clock (pending_new) */
    int got = 0;

    pthread_mutex_lock(&p->lock);
    while (!p->done && pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
        ;
    if (p->done) {
        *out = *p->res; /* moves the certificate and chain */
        free(p->res);
        p->res = NULL;
        got = 1;
    } else {
        p->deferred = 1;
    }
    pthread_mutex_unlock(&p->lock);
    return got;
}

/* worker */
int cmp_poll_sign(struct cmp_txn *t, struct cmp_call *c, const struct gw_sign_req *req,
                  struct gw_sign_result *out)
{
    struct cmp_pending *p = pending_new(t, c);
    int rc;

    gw_sign_result_init(out);
    if (p == NULL) {
        gw_upstream_refusal(t->up, GW_ERR_NOMEM, out);
        return 0;
    }
    if (req->plan == NULL || gw_cert_plan_copy(req->plan, &p->plan) != 0) {
        p->refs = 1;
        cmp_poll_release(p);
        gw_upstream_refusal(t->up, GW_ERR_NOMEM, out);
        return 0;
    }
    link_call(c->e, p);
    if ((rc = gw_upstream_sign_async(t->up, req, pending_done, p)) != 0) {
        unlink_call(p);
        p->refs = 1; /* |done| will not be called */
        cmp_poll_release(p);
        gw_upstream_refusal(t->up, rc, out);
        return 0;
    }
    if (wait_for(p, t->role->poll_after_ms, out)) {
        cmp_poll_release(p);
        return 0;
    }
    gw_log_kv(GW_LOG_INFO, "upstream_deferred", "tid", c->rsp->tid, "identity", t->identity, "upstream",
              gw_upstream_conf_name(gw_upstream_get0_conf(t->up)), NULL);
    t->pending = p;
    return 1;
}

/* A call past its deadline fails as gw_upstream_sign_wait's would. */
static struct gw_sign_result *timed_out(const char *upstream)
{
    struct gw_sign_result *res = malloc(sizeof(*res));

    if (res != NULL) {
        gw_sign_result_init(res);
        res->status = GW_ERR_TIMEOUT;
        res->fail_info = OSSL_CMP_PKIFAILUREINFO_systemUnavail;
        snprintf(res->reason, sizeof(res->reason),
                 "upstream %s did not answer in time; the outcome is unknown, do not retry blindly",
                 upstream);
    }
    return res;
}

/* pollRep's checkAfter while a call runs: the role's, never past |left_ms| (the call's deadline). */
static int64_t check_after_within(int64_t check_after, uint64_t left_ms)
{
    return check_after > clamp_secs(left_ms) ? clamp_secs(left_ms) : check_after;
}

static uint64_t wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* the result of a call another instance made, from its record (NULL until it was written) */
static int remote_ready(struct cmp_remote *r, int64_t *check_after)
{
    uint64_t now = wall_ms();

    if (r->res == NULL && now >= r->deadline_ms + GW_STATE_CLOCK_SKEW_MS)
        r->res = timed_out(r->upstream); /* that instance is gone, or its call outlived the deadline */
    *check_after = r->res != NULL
                       ? 0
                       : check_after_within(r->check_after, r->deadline_ms + GW_STATE_CLOCK_SKEW_MS - now);
    return r->res != NULL;
}

int cmp_poll_ready(struct cmp_txn *t, int64_t *check_after)
{
    struct cmp_pending *p = t->pending;
    uint64_t now = gw_now_ms();
    int ready;

    if (p == NULL)
        return remote_ready(t->remote, check_after);
    pthread_mutex_lock(&p->lock);
    if (!p->done && !p->landing && now >= p->deadline_ms) { /* the deadline wins: see pending_done */
        p->res = timed_out(p->upstream);
        p->gave_up = 1;
        p->done = 1;
    }
    ready = p->done;
    /* landing: the certificate came in time and is being recorded; it is there in a moment */
    *check_after = ready ? 0 : p->landing ? 1 : check_after_within(p->check_after, p->deadline_ms - now);
    pthread_mutex_unlock(&p->lock);
    return ready;
}

int cmp_poll_take(struct cmp_txn *t, struct gw_sign_result *out, int *on_record)
{
    struct cmp_pending *p = t->pending;
    struct gw_sign_result **res = p != NULL ? &p->res : &t->remote->res;
    int got = 0;

    gw_sign_result_init(out);
    if (p != NULL)
        pthread_mutex_lock(&p->lock);
    if (*res != NULL) {
        *out = **res;
        free(*res);
        *res = NULL;
        got = 1;
    }
    /* the instance that made the call wrote the "issued" record before it shared the certificate */
    *on_record = p != NULL ? p->on_record : t->remote->recorded;
    if (p != NULL)
        pthread_mutex_unlock(&p->lock);
    return got;
}

void cmp_poll_describe(const struct cmp_txn *t, long long *deadline_ms, long long *check_after)
{
    uint64_t now = gw_now_ms();

    if (t->pending == NULL) { /* rebuilt: as its record said */
        *deadline_ms = t->remote != NULL ? (long long)t->remote->deadline_ms : 0;
        *check_after = t->remote != NULL ? t->remote->check_after : 0;
        return;
    }
    *deadline_ms =
        (long long)(wall_ms() + (t->pending->deadline_ms > now ? t->pending->deadline_ms - now : 0));
    *check_after = t->pending->check_after;
}

void cmp_poll_share(struct gw_cmp_engine *e, struct cmp_pending *p, struct gw_cluster *cl,
                    const unsigned char *tid, size_t tid_len, time_t ttl)
{
    pthread_mutex_lock(&p->lock);
    p->cl = cl;
    memcpy(p->tid_raw, tid, p->tid_len = tid_len < sizeof(p->tid_raw) ? tid_len : sizeof(p->tid_raw));
    p->ttl = ttl;
    pthread_mutex_unlock(&p->lock);
    /* the call returned since the worker stopped waiting: its completion shared nothing */
    cmp_poll_republish(e, p, CMP_POLL_TRY_AGAIN);
}

void cmp_poll_republish(struct gw_cmp_engine *e, struct cmp_pending *p, enum cmp_poll_try when)
{
    struct gw_txn_result sr;
    int now;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    now = to_publish(p, &sr);
    pthread_mutex_unlock(&p->lock);
    if (now)
        publish(p, e, &sr, when); /* a worker or the main thread: the engine lives */
}

bool cmp_poll_leave(struct cmp_pending *p, const char *event, bool stopping)
{
    bool held;

    if (p == NULL)
        return false;
    pthread_mutex_lock(&p->lock);
    held = alone_here(p);
    if (!held) { /* a put in flight, or one of a call still running, sees it when it fails */
        p->left = event;
        p->stopped = stopping;
    }
    pthread_mutex_unlock(&p->lock);
    return held;
}

struct cmp_remote *cmp_poll_remote(const struct gw_txn_record *rec)
{
    struct cmp_remote *r = calloc(1, sizeof(*r));
    const struct gw_txn_result *sr = &rec->result;
    const unsigned char *q, *end;
    X509 *x;

    if (r == NULL)
        return NULL;
    r->deadline_ms = rec->deadline_ms > 0 ? (uint64_t)rec->deadline_ms : 0;
    r->check_after = rec->check_after;
    snprintf(r->upstream, sizeof(r->upstream), "%s", rec->upstream);
    if (!(r->seen = sr->present))
        return r;
    if ((r->res = malloc(sizeof(*r->res))) == NULL)
        goto fail;
    gw_sign_result_init(r->res);
    r->res->status = sr->status;
    r->res->fail_info = sr->fail_info;
    r->res->modified = sr->modified;
    r->recorded = sr->recorded;
    snprintf(r->res->reason, sizeof(r->res->reason), "%s", sr->reason);
    if (sr->cert_len == 0)
        return r;
    if ((r->res->cert = gw_x509_d2i_exact(sr->cert, (long)sr->cert_len)) == NULL ||
        (r->res->chain = sk_X509_new_null()) == NULL)
        goto fail;
    for (q = sr->chain, end = sr->chain + sr->chain_len; q < end;)
        if ((x = d2i_X509(NULL, &q, (long)(end - q))) == NULL || sk_X509_push(r->res->chain, x) <= 0) {
            X509_free(x);
            goto fail;
        }
    return r;
fail:
    cmp_poll_remote_free(r);
    return NULL;
}

void cmp_poll_remote_free(struct cmp_remote *r)
{
    if (r == NULL)
        return;
    if (r->res != NULL) {
        gw_sign_result_cleanup(r->res);
        free(r->res);
    }
    free(r);
}

time_t cmp_poll_extra_ttl(const struct cmp_txn *t)
{
    return t->pending != NULL ? (time_t)((gw_upstream_timeout_ms(t->up) + 999) / 1000) : 0;
}

void cmp_poll_abandon(struct cmp_pending *p)
{
    if (p == NULL)
        return;
    /* shared too: its transaction closes here, and the record its result would go beside is being
       dropped with it; put there before the drop, it would go with the record, never withdrawn */
    pthread_mutex_lock(&p->lock);
    if (!p->done)
        p->closed = 1;
    pthread_mutex_unlock(&p->lock);
}

bool cmp_poll_hold_slot(struct cmp_pending *p, const unsigned char *tid, size_t tid_len, const char *quota)
{
    bool held;

    if (p == NULL || tid_len > sizeof(p->slot_tid))
        return false;
    pthread_mutex_lock(&p->lock);
    /* the completion sets |returned| before it reads |holds_slot|, both under the lock: one side ends it */
    held = p->closed && !p->returned;
    if (held) {
        memcpy(p->slot_tid, tid, p->slot_tid_len = tid_len);
        snprintf(p->slot_quota, sizeof(p->slot_quota), "%s", quota);
        p->holds_slot = 1;
    }
    pthread_mutex_unlock(&p->lock);
    return held;
}

/*
 * The certificate |t|'s call returned in time that no pollReq took, up-ref'd (NULL if none), and in
 * *view the transaction's audit fields: the call's own copy for a call made here.
 */
static X509 *uncollected(struct cmp_txn *t, struct cmp_txn **view)
{
    struct cmp_pending *p = t->pending;
    const struct gw_sign_result *res = p == NULL && t->remote != NULL ? t->remote->res : NULL;
    X509 *cert = NULL;

    *view = t;
    if (p == NULL) { /* rebuilt: a certificate beside the record came in time (else none was shared) */
        if (res != NULL && res->cert != NULL && X509_up_ref(res->cert) == 1)
            cert = res->cert;
        if (cert != NULL)
            gw_x509_cert_serial_hex(cert, t->serial, sizeof(t->serial));
        return cert;
    }
    pthread_mutex_lock(&p->lock);
    if (p->done && p->res != NULL && p->res->cert != NULL && !p->gave_up && !p->closed &&
        X509_up_ref(p->res->cert) == 1) {
        cert = p->res->cert;
        p->closed = 1; /* withdrawn here: not shared, nor withdrawn again by a publish that finds no record */
    }
    pthread_mutex_unlock(&p->lock);
    *view = &p->view;
    return cert;
}

void cmp_poll_withdraw_undelivered(struct gw_cmp_engine *e, struct cmp_txn *t, struct cmp_txn *view,
                                   const char *tid, const char *event, int aborted, X509 *cert)
{
    if (event != NULL)
        gw_log_kv(GW_LOG_WARN, event, "tid", tid, "identity", t->identity, "serial", view->serial, "msg",
                  "certificate issued but never collected by a pollReq; withdrawn", NULL);
    (void)cmp_audit_cert(e, view, tid, "expired_undelivered",
                         aborted ? "the client aborted the transaction before a pollReq collected it"
                                 : "no pollReq collected it before its transaction closed",
                         cert, 1);
    cmp_withdraw(e, view, tid, cert, CRL_REASON_CESSATION_OF_OPERATION);
}

int cmp_poll_withdraw_uncollected(struct gw_cmp_engine *e, struct cmp_txn *t, const char *tid,
                                  const char *event, int aborted)
{
    struct cmp_txn *view;
    X509 *cert = uncollected(t, &view);

    if (cert == NULL)
        return 0;
    cmp_poll_withdraw_undelivered(e, t, view, tid, event, aborted, cert);
    X509_free(cert);
    return 1;
}

int cmp_poll_withdraw_left(struct gw_cmp_engine *e, struct cmp_txn *t, const char *tid,
                           struct gw_txn_result *left, int aborted)
{
    const struct cmp_remote *r = t->remote;
    X509 *cert = NULL;

    /* a call made here sees the close itself (cmp_poll_abandon); a result read with the record is that
       same one, the call's only one, dealt with already */
    if (t->pending == NULL && r != NULL && !r->seen && left->present && left->cert_len > 0)
        cert = gw_x509_d2i_exact(left->cert, (long)left->cert_len);
    else if (t->pending == NULL && r != NULL && !r->seen)
        cmp_poll_reread_later(e, t, r->upstream, tid, left, aborted);
    gw_txn_result_cleanup(left);
    if (cert == NULL)
        return 0;
    gw_x509_cert_serial_hex(cert, t->serial, sizeof(t->serial));
    /* through the upstream whose CA issued it, as one read with the record (cmp_share_upstream) */
    t->up = cmp_status_withdrawer(e, t->up, cert);
    cmp_poll_withdraw_undelivered(e, t, t, tid, NULL, aborted, cert);
    X509_free(cert);
    return 1;
}

void cmp_poll_drop_uncollected(struct gw_cmp_engine *e, struct cmp_txn *t, const char *tid, int aborted)
{
    cmp_poll_abandon(t->pending);
    (void)cmp_poll_withdraw_uncollected(e, t, tid, NULL, aborted);
}

/* |cert| (audit fields: |view|), which nobody received as the gateway stops: on record; it stays valid. */
static void stopped_undelivered(struct gw_cmp_engine *e, const struct cmp_txn *view, const char *tid,
                                const char *event, X509 *cert)
{
    gw_log_kv(GW_LOG_WARN, event, "tid", tid, "identity", view->identity, "serial", view->serial, "msg",
              "certificate issued but never collected by a pollReq; it stays valid", NULL);
    (void)cmp_audit_cert(e, view, tid, "expired_undelivered",
                         "the gateway stopped before a pollReq collected it", cert, 0);
}

void cmp_poll_closed(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, const char *event)
{
    struct cmp_pending *p = t->pending;

    pthread_mutex_lock(&p->lock);
    /* a certificate that came and was not collected gets here at shutdown only (docs/polling.md) */
    if (p->done && p->res != NULL && p->res->cert != NULL && !p->gave_up) {
        stopped_undelivered(e, &p->view, tid, event, p->res->cert);
    } else if (!p->done) {
        if (!p->closed)
            p->stop = event;
        gw_log_kv(GW_LOG_WARN, event, "tid", tid, "identity", t->identity, "upstream",
                  gw_upstream_conf_name(gw_upstream_get0_conf(t->up)), "msg",
                  p->closed ? "the upstream call still runs; a certificate it returns is withdrawn"
                            : "the upstream call still runs; a certificate it returns goes on the audit log, "
                              "not delivered",
                  NULL);
    } else {
        gw_log_kv(GW_LOG_INFO, event, "tid", tid, "identity", t->identity, "msg",
                  "closed with nothing issued", NULL);
    }
    pthread_mutex_unlock(&p->lock);
}

bool cmp_poll_busy(struct gw_cmp_engine *e)
{
    bool busy;

    pthread_mutex_lock(&detach_lock);
    busy = e->pending != NULL;
    pthread_mutex_unlock(&detach_lock);
    return busy;
}

/*
 * Waits for running calls to land until the stop's deadline; the rest are logged and cut loose. The slots
 * they hold end after detach_lock is let go: each is a Redis script of up to the shared state's timeout,
 * which every engine's calls would wait for (|e| lives on meanwhile: gw_cmp_engine_free_until).
 */
void cmp_poll_detach(struct gw_cmp_engine *e, uint64_t until_ms)
{
    struct cmp_pending *p, *next;
    struct held_slot *held = NULL;
    int busy = 1;

    while (gw_now_ms() < until_ms) {
        pthread_mutex_lock(&detach_lock);
        busy = e->pending != NULL;
        pthread_mutex_unlock(&detach_lock);
        if (!busy)
            return;
        gw_sleep_ms(DETACH_POLL_MS);
    }
    pthread_mutex_lock(&detach_lock);
    while (publishing > 0) { /* bounded by the shared state's timeout */
        pthread_mutex_unlock(&detach_lock);
        gw_sleep_ms(DETACH_POLL_MS);
        pthread_mutex_lock(&detach_lock);
    }
    for (p = e->pending; p != NULL; p = next) {
        next = p->next;
        gw_log_kv(GW_LOG_ERROR, "upstream_call_abandoned", "tid", p->tid, "upstream", p->upstream, "msg",
                  "still running at shutdown: a certificate it returns is logged, not audited", NULL);
        /* the table and the cluster outlive |e| (a reload's next engine, the other instances): the
           slot it holds there ends (below, past the lock), else its share and transactionID stay taken until
           they expire */
        collect_held_slot(e, p, &held);
        p->e = NULL;
        p->linked = 0;
        p->prev = p->next = NULL;
    }
    e->pending = NULL;
    pthread_mutex_unlock(&detach_lock);
    release_held_slots(e, held);
}
