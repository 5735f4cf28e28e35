/*
 * The audit records of a transaction (docs/audit.md): the fields every record carries,
 * the record of a refusal, the record of a certificate, and a certificate withdrawn: revoked
 * upstream where the upstream can, and on record either way.
 */
#include "gateway/cmp/record.h"
#include "gateway/cmp/recent.h"
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/status.h"
#include "mappings/policy.h"
#include "base/err.h"
#include "base/clock.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/metrics.h"
#include "upstream/upstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/x509v3.h>

#define TEXT_OTHER_KEY "the certificate the upstream returned does not certify the requested key"
#define TEXT_LET_THROUGH                                                                                     \
    "the certificate the upstream returned has the issuer name and serial of one the gateway let through "   \
    "lately in another transaction: revoking it would revoke that one"
#define TEXT_REJECTED_TO_CA                                                                                  \
    "the gateway rejected it to the CA in its certConf, which the CA confirmed: the CA revokes it or "       \
    "never publishes it"
#define TEXT_UNDELIVERED "not delivered: the answer carrying the certificate could not be built"

/*
 * Whether a field of |n| bytes with its NUL is whole in a record: six times as long escaped at worst
 * (gw_json_escape_n), within GW_AUDIT_TXN_FIELD_MAX, where gw_audit_write cuts a field.
 */
#define WHOLE_IN_RECORD(n) (6 * ((n)-1) <= GW_AUDIT_TXN_FIELD_MAX)
#define TXN_FIELD_SIZE(f) sizeof(((const struct cmp_txn *)NULL)->f)

/*
 * What a client or an upstream may put in a record's transaction fields reaches it through buffers of a
 * fixed size, each whole in a record: the path, the identity (the signer's subject or "pbm:" and the
 * senderKID, cut at GW_IDENTITY_LEN), the TLS client's subject, how its credentials' status was known, the
 * body type, the serial as the CA wrote it (GW_SERIAL_HEX_LEN), the transactionID in hex (at most
 * GW_MAX_TID_LEN bytes), and a status of the upstream's words or the client's (at most 2 * GW_ERR_LEN: a
 * refusal's text, a reason, an outcome). Role and upstream are configured names (GW_MAX_NAME_LEN).
 */
_Static_assert(WHOLE_IN_RECORD(TXN_FIELD_SIZE(route)) && WHOLE_IN_RECORD(TXN_FIELD_SIZE(identity)) &&
                   WHOLE_IN_RECORD(TXN_FIELD_SIZE(tls_subject)) &&
                   WHOLE_IN_RECORD(TXN_FIELD_SIZE(credential_status)) &&
                   WHOLE_IN_RECORD(TXN_FIELD_SIZE(body)) && WHOLE_IN_RECORD(TXN_FIELD_SIZE(serial)) &&
                   WHOLE_IN_RECORD(2 * GW_MAX_TID_LEN + 1) && WHOLE_IN_RECORD(2 * GW_ERR_LEN) &&
                   WHOLE_IN_RECORD(GW_MAX_NAME_LEN + 1),
               "the transaction fields the gateway records are never cut");

/* The fields every record of a transaction carries. */
void cmp_audit_rec_init(struct gw_audit_rec *r, const struct cmp_txn *t, const char *tid, const char *event,
                        const char *status)
{
    memset(r, 0, sizeof(*r));
    r->event = event;
    r->tid = tid;
    r->route = t->route[0] != '\0' ? t->route : NULL;
    r->role = t->role != NULL ? t->role->name : NULL;
    r->identity = t->identity[0] != '\0' ? t->identity : NULL;
    r->credential_status = t->credential_status[0] != '\0' ? t->credential_status : NULL;
    r->tls_subject = t->tls_subject[0] != '\0' ? t->tls_subject : NULL;
    r->body_type = t->body[0] != '\0' ? t->body : NULL;
    r->upstream = t->up != NULL ? gw_upstream_conf_name(gw_upstream_get0_conf(t->up)) : NULL;
    r->serial = t->serial[0] != '\0' ? t->serial : NULL;
    r->status = status;
    r->exclude_cn_from_sans = t->role != NULL && t->role->exclude_cn_from_sans;
}

void cmp_audit_view(struct cmp_txn *v, const struct cmp_txn *t)
{
    memset(v, 0, sizeof(*v));
    v->role = t->role;
    v->up = t->up;
    memcpy(v->identity, t->identity, sizeof(v->identity));
    memcpy(v->credential_status, t->credential_status, sizeof(v->credential_status));
    memcpy(v->serial, t->serial, sizeof(v->serial));
    memcpy(v->route, t->route, sizeof(v->route));
    memcpy(v->tls_subject, t->tls_subject, sizeof(v->tls_subject));
    memcpy(v->body, t->body, sizeof(v->body));
    memcpy(v->quota, t->quota, sizeof(v->quota));
}

void cmp_audit_refusal(struct cmp_call *c, const struct cmp_txn *t)
{
    struct gw_audit_rec r;

    if (c->audited)
        return;
    cmp_audit_rec_init(&r, t, c->rsp->tid, "rejected", c->rsp->outcome);
    (void)cmp_audit_write(c->e, &r, 0);
    c->audited = 1;
}

static struct gw_metric *m_certs, *m_fsync;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
    static const char *const cert_labels[] = {"upstream", "event", NULL};
    static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};

    m_certs = gw_metric_new("cmpgw_certificates_total",
                            "Certificates on the audit record, by upstream and event (issued, revoked).",
                            GW_METRIC_COUNTER, cert_labels, NULL, 0);
    m_fsync =
        gw_metric_new("cmpgw_audit_write_seconds", "Time an audit record took to reach the disk (fsync'd).",
                      GW_METRIC_HISTOGRAM, NULL, secs, sizeof(secs) / sizeof(secs[0]));
}

int cmp_audit_write(struct gw_cmp_engine *e, const struct gw_audit_rec *r, int sync)
{
    uint64_t start = gw_now_ms();

    pthread_once(&m_once, metrics_init);
    if (gw_audit_write(e->audit, r, sync) == 0) {
        if (sync)
            gw_metric_observe(m_fsync, NULL, (double)(gw_now_ms() - start) / 1000.0);
        if (strcmp(r->event, "issued") == 0 || strcmp(r->event, "revoked") == 0)
            gw_metric_add(m_certs, (const char *const[]){r->upstream != NULL ? r->upstream : "", r->event},
                          1);
        return 0;
    }
    gw_log_kv(GW_LOG_ERROR, "audit_write_failed", "record", r->event, "tid", r->tid, "serial", r->serial,
              NULL);
    return GW_ERR_IO;
}

/* A record about |cert| (may be NULL): its subject, names and key fill the audit_fields. */
int cmp_audit_cert(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, const char *event,
                   const char *status, X509 *cert, int sync)
{
    struct gw_audit_rec r;
    GENERAL_NAMES *sans = cert != NULL ? X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL) : NULL;
    int rc;

    cmp_audit_rec_init(&r, t, tid, event, status);
    if (cert != NULL) {
        r.subject = X509_get_subject_name(cert);
        r.sans = sans;
        r.pubkey = X509_get0_pubkey(cert);
    }
    rc = cmp_audit_write(e, &r, sync);
    GENERAL_NAMES_free(sans);
    return rc;
}

/*
 * Withdrawals run on a thread of the engine's own, never on the caller's: a revocation is an upstream
 * call that may take the upstream's whole timeout, and its callers are the main thread (expiry, whose
 * tick pings the watchdog) and an upstream's transfer thread (a late or refused certificate), which
 * must not wait for it. Each job is a copy of what its records need, the certificate up-ref'd; the
 * engine waits for its jobs before it goes (cmp_withdrawals_drain).
 */
struct withdrawal {
    struct withdrawal *next;
    struct cmp_txn view; /* the transaction's audit fields (inline), its upstream and role borrowed */
    char tid[2 * GW_MAX_TID_LEN + 1];
    X509 *cert;
    int reason;
    int attempts;     /* calls to its upstream begun so far (under the queue's lock: a drain reads it) */
    uint64_t took_ms; /* how long its last call to its upstream took */
    bool reached;     /* one of its calls may have reached its CA (not not_sent); its thread's own */
    /* its last call's end, which the call reads as it runs (gw_upstream_revoke_by): calls_end when it
       began during a drain, lowered by a drain begun while it ran (cut_in), else 0 */
    _Atomic uint64_t until_ms;
};

struct cmp_withdrawals {
    pthread_mutex_t lock;             /* guards everything below */
    pthread_cond_t cond;              /* a job queued or ended, or the queue stopping */
    struct withdrawal *head, **tailp; /* FIFO: |tailp| is where the next job goes */
    size_t queued;
    /* a quota key's jobs past its share of the FIFO (enqueue), oldest first: each moves to the FIFO's tail
       when a job of its key ends (bring_forward); at most |over_cap| (GW_MAX_WITHDRAWALS) of them, |overs| */
    struct withdrawal *over, **over_tailp;
    size_t overs, over_cap;
    int running;               /* a job the thread took and has not ended yet */
    struct withdrawal *asking; /* that job, until its upstream answered */
    int asked;                 /* |asking| was sent to its upstream (not waiting to begin still) */
    int failed;                /* its upstream failed it, and it waits to ask again (ask_again) */
    int given_up;              /* |asking| is on record as not revoked: the drain's end came first */
    int started, stopping;
    uint64_t until_ms;   /* once stopping: the drain's deadline (gw_now_ms) */
    uint64_t backoff_ms; /* the wait before a job's second attempt: GW_WITHDRAWAL_BACKOFF_MS, or a test's */
    uint64_t record_ms;  /* what calls_end leaves for a record: GW_WITHDRAWAL_RECORD_MS, or a test's */
    pthread_t thread;
};

static void withdrawal_free(struct withdrawal *w)
{
    if (w == NULL)
        return;
    X509_free(w->cert);
    free(w);
}

/*
 * The record of a withdrawal not revoked (yet), and the log line's advice |msg| to its operator. One its
 * upstream was asked more than once says so (the last answer is |why|). Its caller holds the queue's lock
 * or is the thread that counts its attempts.
 */
static void not_revoked_said(struct gw_cmp_engine *e, const struct withdrawal *w, const char *why,
                             const char *msg)
{
    const struct cmp_txn *t = &w->view;
    const char *up = t->up != NULL ? gw_upstream_conf_name(gw_upstream_get0_conf(t->up)) : "?";
    char status[GW_ERR_LEN], attempts[16];

    if (w->attempts > 1)
        snprintf(status, sizeof(status), "not revoked after %d attempts: %.200s", w->attempts, why);
    else
        snprintf(status, sizeof(status), "not revoked: %.200s", why);
    snprintf(attempts, sizeof(attempts), "%d", w->attempts);
    (void)cmp_audit_cert(e, t, w->tid, "revoke_failed", status, w->cert, 1);
    gw_log_kv(GW_LOG_ERROR, "revoke_failed", "tid", w->tid, "serial", t->serial, "upstream", up, "reason",
              why, "attempts", attempts, "msg", msg, NULL);
}

/* The record of a withdrawal that did not revoke: the certificate stays valid until revoked by hand. */
static void not_revoked(struct gw_cmp_engine *e, const struct withdrawal *w, const char *why)
{
    not_revoked_said(e, w, why, "a certificate that must not be used is still valid: revoke it by hand");
}

#define TEXT_CHECK_AT_CA                                                                                     \
    "a certificate that must not be used may still be valid: check at the CA and revoke it by hand if it "   \
    "is not revoked"

/*
 * The end of a call to an upstream begun during a drain (lock held): GW_WITHDRAWAL_RECORD_MS (record_ms)
 * before the drain's deadline, so that a call cut short there is on record by the deadline, by its own
 * thread (cut_short), and the drain need not leave the engine to it. Never 0, which is no end.
 */
static uint64_t calls_end(const struct cmp_withdrawals *q)
{
    return q->until_ms > q->record_ms + 1 ? q->until_ms - q->record_ms : 1;
}

/*
 * The end of a call a drain finds under way (lock held): calls_end, less the time libcurl may take to see
 * an end lowered while a transfer runs (GW_UPSTREAM_END_CHECK_MS), so that the call cut short there is on
 * record by the deadline, as one begun during the drain is (calls_end). Never 0, which is no end.
 */
static uint64_t cut_in(const struct cmp_withdrawals *q)
{
    uint64_t end = calls_end(q);

    return end > GW_UPSTREAM_END_CHECK_MS + 1 ? end - GW_UPSTREAM_END_CHECK_MS : 1;
}

/*
 * Why a withdrawal was not sent to its upstream during a drain: what the drain left of it was gone
 * (calls_end) when it was to be sent, once it had waited for another revocation of it, or came while its
 * adapter had sent nothing yet (cut_short: a connection not made, a login waited for). Nothing reached
 * the CA: not revoked, unlike one cut short (TEXT_CUT_SHORT), whose request may have. Unless it was to be
 * asked again (TEXT_NOT_SENT_AGAIN): its failed attempt may have reached the CA (a call with no answer in
 * time, cut off), and revoked it, which is not known; not when every attempt of it sent nothing (a
 * connection refused): TEXT_NOT_SENT.
 */
#define TEXT_NOT_SENT                                                                                        \
    "the drain's deadline came before it was sent to the upstream, which was not asked (the gateway "        \
    "stopping or its configuration retired)"
#define TEXT_NOT_SENT_AGAIN                                                                                  \
    "attempt %d, whose outcome may be unknown, failed, and the drain's deadline came before it was asked "   \
    "again (the gateway stopping or its configuration retired); it may be revoked: check at the CA"

/* |w| not sent (sending) on record as not revoked (lock held): TEXT_NOT_SENT, or TEXT_NOT_SENT_AGAIN. */
static void not_sent(struct gw_cmp_engine *e, const struct withdrawal *w)
{
    char why[GW_ERR_LEN];

    if (!w->reached) { /* no attempt, or none that may have reached the CA */
        not_revoked(e, w, TEXT_NOT_SENT);
        return;
    }
    snprintf(why, sizeof(why), TEXT_NOT_SENT_AGAIN, w->attempts);
    not_revoked_said(e, w, why, TEXT_CHECK_AT_CA);
}

/*
 * worker: the job |w| it is asking goes to its upstream now (it waited to begin until then, or again):
 * 0. Once a drain began, its call ends by calls_end (w->until_ms); before, by its upstream's timeout, or
 * by the end a drain begun meanwhile gives it (cut_in). GW_ERR_TIMEOUT: calls_end passed already, and
 * nothing is sent; unless the drain gave up on it first, it is on record as not sent (not_sent).
 */
static int sending(struct gw_cmp_engine *e, struct withdrawal *w)
{
    struct cmp_withdrawals *q = e->withdrawals;
    int rc = 0;

    pthread_mutex_lock(&q->lock);
    if (q->stopping && !q->given_up && gw_now_ms() >= calls_end(q)) {
        q->failed = 1; /* nothing more is asked: a drain need not wait for the thread */
        q->given_up = 1;
        not_sent(e, w);
        rc = GW_ERR_TIMEOUT;
    } else {
        q->asked = 1;
        q->failed = 0;
        w->attempts++;
        atomic_store(&w->until_ms, q->stopping ? calls_end(q) : 0);
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

/* worker: the upstream answered the job it was asking; 1 if the drain gave up on it meanwhile. */
static int answered(struct cmp_withdrawals *q)
{
    int given_up;

    pthread_mutex_lock(&q->lock);
    q->asking = NULL;
    given_up = q->given_up;
    pthread_mutex_unlock(&q->lock);
    return given_up;
}

/*
 * A withdrawal with no upstream to ask: its transaction was rebuilt or expired from a shared record
 * whose upstream the running configuration does not have, nor any of the CA that issued it.
 */
static int no_upstream(const X509 *cert, char *err)
{
    char by[256];

    X509_NAME_oneline(X509_get_issuer_name(cert), by, sizeof(by)); /* for a person to read only */
    snprintf(err, GW_ERR_LEN,
             "no upstream of this configuration has the CA that issued it: revoke it by hand "
             "at its issuer %.150s",
             by);
    return GW_ERR_NOT_FOUND;
}

/*
 * A withdrawal of a certificate the gateway revoked already (its holder's rr, an RA's): not sent again.
 * One the drain gave up on while it waited for that revocation is on record as not revoked, to check at
 * the CA, which is what was known when the process could end: it says nothing more, and the revocation
 * it found is on record as its maker's own.
 */
static void not_repeated(struct gw_cmp_engine *e, const struct withdrawal *w)
{
    const struct cmp_txn *t = &w->view;

    if (answered(e->withdrawals))
        return;
    gw_log_kv(GW_LOG_INFO, "revoke_not_repeated", "tid", w->tid, "serial", t->serial, "upstream",
              gw_upstream_conf_name(gw_upstream_get0_conf(t->up)), "msg",
              "revoked through this gateway already: the CA is not asked again", NULL);
}

/*
 * Whether a withdrawal that failed with |rc| is asked again (upstream.h): not one its upstream refused for
 * good, knows no such certificate of, or cannot revoke at all, nor one it denies the gateway (its
 * credentials, which an operator fixes, not seconds later). Any other failure may pass: the CA busy (HTTP
 * 429, 503), unreachable or cut off (502, 504, a connection refused or reset), late or failing, as an rr's
 * client is told to retry (rr.c). One whose outcome is unknown is asked again too: gw_upstream_revoke
 * takes a certificate revoked already as done.
 */
static bool may_pass(int rc)
{
    return rc != GW_ERR_REFUSED && rc != GW_ERR_NOT_FOUND && rc != GW_ERR_INVAL && rc != GW_ERR_FORBIDDEN;
}

/*
 * Why a withdrawal asked during a drain did not revoke: the call, its request sent (or maybe sent),
 * reached the end the drain left it (calls_end) with no answer, or with one that may pass at the last moment,
 * and ended there. The upstream may have acted on it all the same: not "revoke it by hand" alone.
 */
#define TEXT_CUT_SHORT                                                                                       \
    "the drain's deadline came while the upstream had not answered, which ended its call (the gateway "      \
    "stopping or its configuration retired); it may or may not be revoked: check at the CA"

/*
 * worker: |w|'s call, which failed with |rc|, was cut short by the drain's deadline: on record at once, as
 * near that end as its thread can be, unless the drain gave up on it first; its thread asks nothing more
 * (ask_again: the queue is stopping). One whose adapter says nothing of it reached the CA (|unsent|: a
 * connection not made by then, a login waited for) asked nothing: on record as one the end let no call
 * begin (sending, not_sent), this attempt not counted. Any other may have reached the CA (TEXT_CUT_SHORT).
 */
static void cut_short(struct gw_cmp_engine *e, struct withdrawal *w, int rc, int unsent)
{
    struct cmp_withdrawals *q = e->withdrawals;
    uint64_t end = atomic_load(&w->until_ms);

    if (rc >= 0 || end == 0 || gw_now_ms() < end || !may_pass(rc))
        return;
    pthread_mutex_lock(&q->lock);
    q->failed = 1; /* nothing more is asked: a drain need not wait for the thread */
    if (q->given_up) {
        pthread_mutex_unlock(&q->lock);
        return;
    }
    q->given_up = 1;
    if (unsent) {
        w->attempts--; /* it asked nothing: no attempt, as sending counts none it stops */
        not_sent(e, w);
    } else {
        not_revoked_said(e, w, TEXT_CUT_SHORT, TEXT_CHECK_AT_CA);
    }
    pthread_mutex_unlock(&q->lock);
}

/*
 * Why a withdrawal whose upstream failed it for a reason that may pass was not asked again: the drain's
 * deadline passed while it waited to, or what was left of it was no longer than that failed attempt took,
 * so that asking would likely end with no answer (TEXT_CUT_SHORT). Its last answer was a failure (or none in
 * time, taken as one, as after a last attempt): not "before it answered" (TEXT_GAVE_UP_ASKED).
 */
#define TEXT_GAVE_UP_FAILED                                                                                  \
    "the upstream failed attempt %d for a reason that may pass, and the drain left too little time to ask "  \
    "it again (the gateway stopping or its configuration retired)"

/* |w|, whose upstream failed it, on record as not asked again (TEXT_GAVE_UP_FAILED); lock held. */
static void not_asked_again(struct gw_cmp_engine *e, struct cmp_withdrawals *q, const struct withdrawal *w)
{
    char why[GW_ERR_LEN];

    q->given_up = 1;
    snprintf(why, sizeof(why), TEXT_GAVE_UP_FAILED, w->attempts);
    not_revoked(e, w, why);
}

/*
 * Whether |w|, waiting to ask its upstream again once a drain ended the wait, is asked a last time (lock
 * held): only when what is left for its call (calls_end) is longer than its failed attempt took. A CA that
 * let that attempt run its whole timeout would likely run this one to that end, which leaves the outcome
 * unknown (TEXT_CUT_SHORT); not asked, |w| is on record now as not revoked, the CA's failure known, and
 * the drain need not wait for it.
 */
static bool last_ask_fits(struct gw_cmp_engine *e, struct cmp_withdrawals *q, const struct withdrawal *w)
{
    if (q->given_up)
        return false;
    if (!q->stopping || gw_now_ms() + w->took_ms < calls_end(q))
        return true;
    not_asked_again(e, q, w);
    return false;
}

/*
 * worker: whether |w|, whose attempt failed with |rc| and |err|, is asked again: not after its last
 * attempt, nor when its failure will not pass, nor once a drain stopped the queue. The wait in between
 * (the queue's backoff_ms, four times as long before each next attempt) is on the queue's condition, so
 * that a drain ends it at once: that next attempt is then the last, if it fits in the drain's deadline
 * (last_ask_fits), unless the drain gave up on |w| first (on record then). The jobs queued behind |w| wait
 * meanwhile: its upstream is likely theirs, whose trouble would fail them too, and the queue refuses jobs
 * beyond GW_MAX_WITHDRAWALS.
 */
static bool ask_again(struct gw_cmp_engine *e, const struct withdrawal *w, int rc, const char *err)
{
    struct cmp_withdrawals *q = e->withdrawals;
    const struct cmp_txn *t = &w->view;
    char attempt[16], wait[24];
    struct timespec until;
    uint64_t ms;
    bool again;

    if (!may_pass(rc) || w->attempts >= GW_WITHDRAWAL_ATTEMPTS)
        return false;
    pthread_mutex_lock(&q->lock);
    q->failed = 1;        /* a drain giving up from now on says that the upstream answered */
    again = !q->stopping; /* a job not sent (sending) has no attempt yet: only ever when stopping */
    ms = again ? q->backoff_ms << (2 * (w->attempts - 1)) : 0;
    pthread_mutex_unlock(&q->lock);
    if (!again)
        return false;
    snprintf(attempt, sizeof(attempt), "%d", w->attempts);
    snprintf(wait, sizeof(wait), "%llu", (unsigned long long)ms);
    gw_log_kv(GW_LOG_WARN, "revoke_retry", "tid", w->tid, "serial", t->serial, "upstream",
              t->up != NULL ? gw_upstream_conf_name(gw_upstream_get0_conf(t->up)) : "?", "attempt", attempt,
              "reason", err, "retry_in_ms", wait, NULL);
    until = gw_timespec_ms(gw_now_ms() + ms); /* gw_now_ms is the condition's clock (cmp_withdrawals_init) */
    pthread_mutex_lock(&q->lock);
    while (!q->stopping && pthread_cond_timedwait(&q->cond, &q->lock, &until) == 0)
        ;
    if ((again = last_ask_fits(e, q, w))) {
        q->failed = 0;
        q->asked = 0; /* until sending: it may wait for another revocation of it first (attempt) */
    }
    pthread_mutex_unlock(&q->lock);
    return again;
}

/*
 * worker: one attempt of |w|, marked as under way (cmp_revoked_begin) while its upstream is asked, not
 * while it waits to ask again: its holder's rr meanwhile is not held back. 0 revoked, 1 revoked through
 * this gateway already (nothing sent), else the upstream's failure with |err|.
 */
static int attempt(struct gw_cmp_engine *e, struct withdrawal *w, char *err)
{
    const struct cmp_txn *t = &w->view;
    int mine = t->up != NULL ? cmp_revoked_begin(e, w->cert, gw_upstream_timeout_ms(t->up), err) : -1;
    uint64_t start;
    int unsent = 0, rc;

    if (mine == 1)
        return 1;
    if (mine < 0 && t->up != NULL)
        gw_log_kv(GW_LOG_WARN, "revoke_not_marked", "tid", w->tid, "serial", t->serial, "reason", err, "msg",
                  "withdrawn all the same: another revocation of it may reach the CA too", NULL);
    if ((rc = sending(e, w)) != 0)
        goto out;
    start = gw_now_ms();
    rc = t->up != NULL ? gw_upstream_revoke_by(t->up, w->cert, w->reason, &w->until_ms, &unsent, err)
                       : no_upstream(w->cert, err);
    w->took_ms = gw_now_ms() - start;
    w->reached = w->reached || !unsent;
    cut_short(e, w, rc, unsent);
    if (rc == 0)
        cmp_status_revoked(e, t->up, w->cert, w->tid);
out:
    if (mine == 0)
        cmp_revoked_end(e, w->cert); /* after cmp_status_revoked: who waited finds it revoked */
    return rc;
}

/*
 * worker (the engine's withdrawal thread). A revocation of the certificate under way (its holder's rr,
 * here or on another instance of the cluster) is waited for, at most the upstream's timeout, and one that
 * ended found; one that did not end by then, or a shared state that cannot say or mark it, lets this one
 * go on unmarked: a second revocation at worst, never none. Unlike an rr, nobody would ask again: the
 * certificate the client never took would stay valid. Hence a failure that may pass is asked again
 * (ask_again), GW_WITHDRAWAL_ATTEMPTS times in all, and only the outcome goes on record.
 */
static void revoke(struct gw_cmp_engine *e, struct withdrawal *w)
{
    const struct cmp_txn *t = &w->view;
    char err[GW_ERR_LEN] = "", attempts[16], status[48];
    int rc;

    while ((rc = attempt(e, w, err)) < 0 && ask_again(e, w, rc, err))
        ;
    if (rc == 1) {
        not_repeated(e, w);
        return;
    }
    if (answered(e->withdrawals) && rc != 0) /* on record as not revoked already */
        return;
    if (rc != 0) {
        not_revoked(e, w, err);
        return;
    }
    snprintf(attempts, sizeof(attempts), "%d", w->attempts);
    if (w->attempts > 1)
        snprintf(status, sizeof(status), "revoked upstream at attempt %d", w->attempts);
    (void)cmp_audit_cert(e, t, w->tid, "revoked", w->attempts > 1 ? status : "revoked upstream", w->cert, 1);
    gw_log_kv(GW_LOG_WARN, "cert_revoked", "tid", w->tid, "serial", t->serial, "upstream",
              gw_upstream_conf_name(gw_upstream_get0_conf(t->up)), "attempts", attempts, NULL);
}

/* The link to |quota|'s oldest job waiting past its share of the FIFO; *link NULL if it has none. */
static struct withdrawal **first_over(struct cmp_withdrawals *q, const char *quota)
{
    struct withdrawal **pp = &q->over;

    while (*pp != NULL && strcmp((*pp)->view.quota, quota) != 0)
        pp = &(*pp)->next;
    return pp;
}

/*
 * |quota|'s oldest job past its share of the FIFO, moved to the FIFO's tail: one of its jobs ended, so
 * the place it held is this one's, whatever the other keys keep queued (else those could keep the FIFO
 * from ever emptying, and this job waiting for ever). The place was counted already: no cap applies.
 */
static void bring_forward(struct cmp_withdrawals *q, const char *quota)
{
    struct withdrawal **pp, *w;

    if (quota[0] == '\0')
        return;
    pp = first_over(q, quota);
    if ((w = *pp) == NULL)
        return;
    if ((*pp = w->next) == NULL)
        q->over_tailp = pp;
    q->overs--;
    w->next = NULL;
    *q->tailp = w;
    q->tailp = &w->next;
    q->queued++;
}

/*
 * The job after |done| (the one that just ended, NULL at first; freed here), or NULL once the queue is
 * stopped and empty, or its drain left no time for a call (calls_end): what is still queued then is the
 * drain's to put on record (give_up).
 */
static struct withdrawal *take(struct cmp_withdrawals *q, struct withdrawal *done)
{
    struct withdrawal *w;

    pthread_mutex_lock(&q->lock);
    if (done != NULL)
        bring_forward(q, done->view.quota);
    q->running = 0;
    pthread_cond_broadcast(&q->cond); /* a drain or a test waits for the queue to empty */
    while (q->head == NULL && q->over == NULL && !q->stopping)
        pthread_cond_wait(&q->cond, &q->lock);
    if (q->stopping && gw_now_ms() >= calls_end(q))
        w = NULL;
    else if ((w = q->head) != NULL) {
        if ((q->head = w->next) == NULL)
            q->tailp = &q->head;
        q->queued--;
    } else if ((w = q->over) != NULL) {
        /* its key has no job left in the FIFO to end: a drain gave up on them */
        if ((q->over = w->next) == NULL)
            q->over_tailp = &q->over;
        q->overs--;
    }
    if (w != NULL) {
        q->running = 1;
        q->asking = w;
        q->asked = 0;
        q->failed = 0;
        q->given_up = 0;
    }
    pthread_mutex_unlock(&q->lock);
    withdrawal_free(done);
    return w;
}

/* worker */
static void *withdrawals_main(void *arg)
{
    struct gw_cmp_engine *e = arg;
    struct withdrawal *w;

    w = NULL;
    while ((w = take(e->withdrawals, w)) != NULL)
        revoke(e, w);
    return NULL;
}

/* A job for |cert| of |t|: a copy of its audit fields; NULL without memory. */
static struct withdrawal *withdrawal_new(const struct cmp_txn *t, const char *tid, X509 *cert, int reason)
{
    struct withdrawal *w = calloc(1, sizeof(*w));

    if (w == NULL || X509_up_ref(cert) != 1) {
        free(w);
        return NULL;
    }
    w->cert = cert;
    w->reason = reason;
    cmp_audit_view(&w->view, t);
    snprintf(w->tid, sizeof(w->tid), "%s", tid);
    return w;
}

/* How many jobs counted under |quota| run or wait in |q|'s FIFO (and, |over|, past it), up to |cap|. */
static size_t count_key(const struct cmp_withdrawals *q, const char *quota, bool over, size_t cap)
{
    size_t n = 0;

    if (q->running && q->asking != NULL && strcmp(q->asking->view.quota, quota) == 0)
        n++;
    for (const struct withdrawal *w = q->head; w != NULL && n < cap; w = w->next)
        n += strcmp(w->view.quota, quota) == 0;
    for (const struct withdrawal *w = over ? q->over : NULL; w != NULL && n < cap; w = w->next)
        n += strcmp(w->view.quota, quota) == 0;
    return n;
}

/*
 * Queues |w| on |e|'s thread, started on first use: 0, or the reason it cannot be in |why|. A quota key
 * with GW_MAX_WITHDRAWALS_PER_KEY of its own in the FIFO already (certificates it was issued before it
 * rejected them, as many as its open transactions), or with some waiting past it, waits past it, behind
 * its own, where it neither fills the FIFO for the others nor goes before them, and moves up as its own
 * end (bring_forward). GW_MAX_WITHDRAWALS wait there at most: the keys owing any get no new certificate
 * meanwhile (issue.c), and one more still fails, as a full FIFO does: memory stays bounded.
 */
static int enqueue(struct gw_cmp_engine *e, struct withdrawal *w, const char **why)
{
    struct cmp_withdrawals *q = e->withdrawals;
    int rc = GW_ERR_BUSY;
    bool over;

    if (q == NULL) { /* the engine is going: nothing runs after its drain */
        *why = "the gateway is stopping";
        return rc;
    }
    pthread_mutex_lock(&q->lock);
    over = w->view.quota[0] != '\0' &&
           (*first_over(q, w->view.quota) != NULL ||
            count_key(q, w->view.quota, false, GW_MAX_WITHDRAWALS_PER_KEY) >= GW_MAX_WITHDRAWALS_PER_KEY);
    if (q->stopping) {
        *why = "the gateway is stopping";
    } else if (over ? q->overs >= q->over_cap : q->queued >= GW_MAX_WITHDRAWALS) {
        *why = "too many withdrawals are waiting for their upstreams";
    } else if (!q->started && pthread_create(&q->thread, NULL, withdrawals_main, e) != 0) {
        *why = "no thread to revoke it on";
    } else {
        q->started = 1;
        *(over ? q->over_tailp : q->tailp) = w;
        if (over)
            q->over_tailp = &w->next;
        else
            q->tailp = &w->next;
        q->queued += !over;
        q->overs += over;
        pthread_cond_broadcast(&q->cond);
        rc = 0;
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

/* The revocation of |cert| queued, or, when it cannot be, on record as not revoked. */
static void withdraw(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, X509 *cert,
                     int reason)
{
    struct withdrawal *w = withdrawal_new(t, tid, cert, reason);
    struct withdrawal fallback = {.view = *t, .cert = cert};
    const char *why = "out of memory";

    if (w != NULL && enqueue(e, w, &why) == 0)
        return;
    withdrawal_free(w);
    snprintf(fallback.tid, sizeof(fallback.tid), "%s", tid);
    not_revoked(e, &fallback, why);
}

/* Why a returned certificate stays valid: the record's status, the log line's reason and hint. */
struct kept {
    const char *status, *why, *msg;
};

/* a broken or hostile CA answering with another certificate: another holder's serial */
static const struct kept kept_other_key = {
    "not revoked: " TEXT_OTHER_KEY, TEXT_OTHER_KEY,
    "check at the CA whose certificate this serial is before revoking it"};
/* the one another transaction let through lately, answered again: its client holds it */
static const struct kept kept_let_through = {
    "not revoked: " TEXT_LET_THROUGH, TEXT_LET_THROUGH,
    "its client (earlier_tid) holds it: ask the CA why it answered with it again before revoking it"};

/*
 * Why |cert|, which an upstream returned for the transaction |tid|, was not issued for it, so that
 * revoking it would revoke a certificate someone holds; NULL if it was. One |checked| passed the checks
 * against its plan already (released, or about to be); else it has to certify the key of |plan| (NULL:
 * none known). Either way, one another transaction let through lately (recent.h) is that one's:
 * |earlier| (hex) gets it. Its notBefore decides nothing: a CA that backdates what it issues (outside
 * the plan, so refused) is told from one answering with a holder's earlier certificate only by what the
 * gateway let through itself, and a certificate outside policy left valid is what withdrawing prevents.
 */
static const struct kept *not_issued_here(struct gw_cmp_engine *e, const char *tid, X509 *cert,
                                          const struct gw_cert_plan *plan, bool checked, char *earlier)
{
    const EVP_PKEY *pk = X509_get0_pubkey(cert);
    unsigned char id[CMP_REVOKED_ID_LEN];

    if (!checked &&
        (pk == NULL || plan == NULL || plan->pubkey == NULL || EVP_PKEY_eq(pk, plan->pubkey) != 1))
        return &kept_other_key;
    if (e->recent != NULL && cmp_revoked_id(cert, id) == 0 &&
        cmp_recent_elsewhere(e->recent, id, tid, earlier))
        return &kept_let_through;
    return NULL;
}

/* |cert| withdrawn, unless not_issued_here says why not: then on record and logged, for an operator. */
static void withdraw_issued_here(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid,
                                 X509 *cert, const struct gw_cert_plan *plan, bool checked, int reason)
{
    char earlier[2 * GW_MAX_TID_LEN + 1] = "";
    const struct kept *k = not_issued_here(e, tid, cert, plan, checked, earlier);
    const char *up = t->up != NULL ? gw_upstream_conf_name(gw_upstream_get0_conf(t->up)) : "?";

    if (k == NULL) {
        withdraw(e, t, tid, cert, reason);
        return;
    }
    (void)cmp_audit_cert(e, t, tid, "not_withdrawn", k->status, cert, 1);
    /* earlier_tid last, only where known: its NULL key ends the list */
    gw_log_kv(GW_LOG_ERROR, "cert_not_withdrawn", "tid", tid, "serial", t->serial, "upstream", up, "reason",
              k->why, "msg", k->msg, earlier[0] != '\0' ? "earlier_tid" : NULL, earlier, NULL);
}

void cmp_withdraw(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, X509 *cert, int reason)
{
    withdraw_issued_here(e, t, tid, cert, NULL, true, reason);
}

void cmp_withdraw_returned(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, X509 *cert,
                           const struct gw_cert_plan *plan, int reason)
{
    withdraw_issued_here(e, t, tid, cert, plan, false, reason);
}

void cmp_withdraw_answered(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid,
                           const struct gw_sign_result *res, const struct gw_cert_plan *plan, int reason)
{
    const char *up = t->up != NULL ? gw_upstream_conf_name(gw_upstream_get0_conf(t->up)) : "?";

    if (res->rejected_to_ca) {
        (void)cmp_audit_cert(e, t, tid, "rejected_to_ca", "not revoked: " TEXT_REJECTED_TO_CA, res->cert, 1);
        gw_log_kv(GW_LOG_WARN, "cert_rejected_to_ca", "tid", tid, "serial", t->serial, "upstream", up,
                  "reason", TEXT_REJECTED_TO_CA, NULL);
        return;
    }
    cmp_withdraw_returned(e, t, tid, res->cert, plan, reason);
}

int cmp_withdrawals_init(struct gw_cmp_engine *e)
{
    struct cmp_withdrawals *q = calloc(1, sizeof(*q));

    if (q == NULL)
        return GW_ERR_NOMEM;
    q->tailp = &q->head;
    q->over_tailp = &q->over;
    q->backoff_ms = GW_WITHDRAWAL_BACKOFF_MS;
    q->record_ms = GW_WITHDRAWAL_RECORD_MS;
    q->over_cap = GW_MAX_WITHDRAWALS;
    pthread_mutex_init(&q->lock, NULL);
    /* the drain's deadline (gw_now_ms) ignores clock steps: a condition on the realtime clock would not */
    if (gw_cond_init_monotonic(&q->cond) != 0) { /* e->withdrawals stays NULL: no queue to drain */
        pthread_mutex_destroy(&q->lock);
        free(q);
        return GW_ERR_NOMEM;
    }
    e->withdrawals = q;
    return 0;
}

bool cmp_withdrawals_busy(struct gw_cmp_engine *e)
{
    struct cmp_withdrawals *q = e->withdrawals;
    bool busy;

    if (q == NULL)
        return false;
    pthread_mutex_lock(&q->lock);
    busy = q->head != NULL || q->over != NULL || q->running;
    pthread_mutex_unlock(&q->lock);
    return busy;
}

void cmp_withdrawals_set_backoff(struct gw_cmp_engine *e, uint64_t ms)
{
    struct cmp_withdrawals *q = e->withdrawals;

    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->backoff_ms = ms;
    pthread_mutex_unlock(&q->lock);
}

void cmp_withdrawals_set_record_ms(struct gw_cmp_engine *e, uint64_t ms)
{
    struct cmp_withdrawals *q = e->withdrawals;

    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->record_ms = ms;
    pthread_mutex_unlock(&q->lock);
}

/* The scan is bounded by GW_MAX_WITHDRAWALS, and stops at the cap: a short walk under the queue's lock. */
size_t cmp_withdrawals_owed(struct gw_cmp_engine *e, const char *quota)
{
    struct cmp_withdrawals *q = e->withdrawals;
    size_t n = 0;

    if (q == NULL || quota[0] == '\0')
        return 0;
    pthread_mutex_lock(&q->lock);
    n = count_key(q, quota, true, GW_MAX_WITHDRAWALS_PER_KEY + 1);
    pthread_mutex_unlock(&q->lock);
    return n;
}

void cmp_withdrawals_set_over_cap(struct gw_cmp_engine *e, size_t cap)
{
    struct cmp_withdrawals *q = e->withdrawals;

    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->over_cap = cap;
    pthread_mutex_unlock(&q->lock);
}

bool cmp_withdrawals_crowded(struct gw_cmp_engine *e)
{
    struct cmp_withdrawals *q = e->withdrawals;
    bool full;

    if (q == NULL)
        return false;
    pthread_mutex_lock(&q->lock);
    full = q->overs >= q->over_cap;
    pthread_mutex_unlock(&q->lock);
    return full;
}

void cmp_withdrawals_settle(struct gw_cmp_engine *e)
{
    struct cmp_withdrawals *q = e->withdrawals;

    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    while (q->head != NULL || q->over != NULL || q->running)
        pthread_cond_wait(&q->cond, &q->lock);
    pthread_mutex_unlock(&q->lock);
}

/*
 * Why a withdrawal the drain gave up on did not revoke: its upstream was asked, it waited to begin, or
 * it was still queued. The drain is an engine's end, at a shutdown or once a reload retired its
 * configuration generation, and cannot tell which. One asked goes on until its upstream answers: the
 * CA may revoke the certificate (its "revoked" record then follows this one) or not. One waiting to
 * begin goes on once its wait ends: the revocation it waited for may revoke the certificate; by then the
 * drain's end for calls has passed (sending), which no adapter over the network sends, and only a local
 * upstream, whose store no end cuts short, may still revoke it with this withdrawal. One asked during the
 * drain, or at its upstream as it began (its end lowered then: cut_in), is not "asked" here unless its
 * adapter overran the end it was given (calls_end): it ended GW_WITHDRAWAL_RECORD_MS before the deadline, and
 * its thread, not the drain, put it on record (cut_short), so that its answer coming at the deadline, before
 * the thread takes the lock, is not taken for none.
 */
#define TEXT_GAVE_UP_ASKED                                                                                   \
    "the drain gave up on it after the upstream was asked, before it answered (the gateway stopping or its " \
    "configuration retired); it may or may not be revoked: check at the CA"
#define TEXT_GAVE_UP_WAITING                                                                                 \
    "the drain gave up on it while it waited for another revocation of it to end, before the upstream was "  \
    "asked (the gateway stopping or its configuration retired); it may still be revoked: check at the CA"
#define TEXT_GAVE_UP_QUEUED                                                                                  \
    "the drain gave up on it before the upstream was asked (the gateway stopping or its configuration "      \
    "retired)"
/*
 * Past the drain's deadline (lock held): the jobs no upstream was asked for, off the queue for the
 * caller to put on record, and the one whose upstream has not answered on record now.
 */
static struct withdrawal *give_up(struct gw_cmp_engine *e, struct cmp_withdrawals *q)
{
    struct withdrawal *left;

    *q->tailp = q->over; /* those past the FIFO after it */
    left = q->head;
    q->head = NULL;
    q->tailp = &q->head;
    q->queued = 0;
    q->over = NULL;
    q->over_tailp = &q->over;
    q->overs = 0;
    if (q->asking == NULL || q->given_up) /* its thread put it on record already (last_ask_fits) */
        return left;
    if (q->failed) { /* its upstream answered: it will not be asked again (ask_again) */
        not_asked_again(e, q, q->asking);
        return left;
    }
    q->given_up = 1;
    /* either may end revoked: one asked by its upstream's answer yet; one still waiting to begin
       (cmp_revoked_begin) by the rr it waits for, or, its end passed, by a local upstream once that ends */
    not_revoked_said(e, q->asking, q->asked ? TEXT_GAVE_UP_ASKED : TEXT_GAVE_UP_WAITING, TEXT_CHECK_AT_CA);
    return left;
}

bool cmp_withdrawals_drain(struct gw_cmp_engine *e, uint64_t until_ms)
{
    struct cmp_withdrawals *q = e->withdrawals;
    /* gw_now_ms is the condition's clock (cmp_withdrawals_init) */
    struct timespec until = gw_timespec_ms(until_ms);
    struct withdrawal *left, *next;
    bool asking;

    if (q == NULL)
        return true;
    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    q->until_ms = until_ms;
    /* one at its upstream already: its answer no longer matters past the deadline, and its call ends */
    if (q->asking != NULL && q->asked && atomic_load(&q->asking->until_ms) == 0)
        atomic_store(&q->asking->until_ms, cut_in(q));
    pthread_cond_broadcast(&q->cond);
    /* the thread signals |cond| as each job ends (take) */
    while ((q->head != NULL || q->over != NULL || q->running) &&
           pthread_cond_timedwait(&q->cond, &q->lock, &until) == 0)
        ;
    left = give_up(e, q);
    /* one its upstream failed asks nothing more (ask_again): its thread ends without waiting for it */
    asking = q->asking != NULL && !q->failed;
    pthread_mutex_unlock(&q->lock);
    for (; left != NULL; left = next) {
        next = left->next;
        not_revoked(e, left, TEXT_GAVE_UP_QUEUED);
        withdrawal_free(left);
    }
    if (asking) { /* its upstream may answer for as long as its timeout: the process ends first */
        pthread_detach(q->thread);
        return false;
    }
    if (q->started)
        pthread_join(q->thread, NULL);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
    e->withdrawals = NULL;
    return true;
}

/*
 * The record of a transaction that closes with a certificate issued. A message that closes it without
 * confirming it leaves it to no one: a certConf whose client rejects it (in 3.0 an empty CertStatus
 * list, the client's rejection, is answered without the callback: docs/design.md O4), or whose
 * certHash names another certificate, or that OpenSSL refuses (a wrong certReqId); or a pollReq where
 * the certConf was due, which the client sends only once it has the certificate (its recipNonce
 * answers the ip). It is revoked where the upstream can.
 */
void cmp_audit_closed(struct cmp_call *c, struct cmp_txn *t)
{
    int rejected = c->confirm == CMP_CONFIRM_REJECTED ||
                   (c->confirm == CMP_CONFIRM_NONE && strcmp(c->rsp->rsp_type, "pkiconf") == 0);

    if (t->issued == NULL)
        return;
    if (c->confirm == CMP_CONFIRM_ACCEPTED) {
        (void)cmp_audit_cert(c->e, t, c->rsp->tid, "confirmed", c->rsp->outcome, t->issued, 0);
        return;
    }
    if (rejected && c->body == GW_CMP_BODY_CERTCONF)
        (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected_by_client",
                             "the client rejected the certificate", t->issued, 1);
    else
        (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected", c->rsp->outcome, t->issued, 1);
    cmp_withdraw(c->e, t, c->rsp->tid, t->issued, CRL_REASON_CESSATION_OF_OPERATION);
}

int cmp_withdraw_undelivered(struct cmp_call *c, struct cmp_txn *t)
{
    const char *type = c->rsp->rsp_type;

    if (t->issued == NULL ||
        (c->rsp->http_status == 200 &&
         (strcmp(type, "ip") == 0 || strcmp(type, "cp") == 0 || strcmp(type, "kup") == 0)))
        return 0;
    gw_log_kv(GW_LOG_ERROR, "cert_undelivered", "tid", c->rsp->tid, "identity", t->identity, "serial",
              t->serial, "outcome", c->rsp->outcome, "msg",
              "the answer carrying the certificate could not be built", NULL);
    (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected", TEXT_UNDELIVERED, t->issued, 1);
    cmp_withdraw(c->e, t, c->rsp->tid, t->issued, CRL_REASON_CESSATION_OF_OPERATION);
    X509_free(t->issued);
    t->issued = NULL;
    return 1;
}
