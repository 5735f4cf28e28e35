/*
 * The CMP engine: decode, refuse what OpenSSL must never see (precheck.c, docs/design.md O10.1),
 * dispatch by body type to a fresh or a parked SRV_CTX, and rewrite OpenSSL's error messages
 * (always badRequest plus OpenSSL internals in 3.0) into a failInfo and a statusString in plain
 * words. After decoding, every answer is a protected PKIMessage with HTTP 200 (docs/design.md D13).
 * A transaction another instance began is rebuilt from its record in engine_rebuild.c.
 */
#include "gateway/cmp/engine.h"
#include "gateway/cmp/auth.h"
#include "gateway/cmp/carry.h"
#include "gateway/cmp/cmp_local.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/engine_local.h"
#include "gateway/cmp/engine_test.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/reasons.h"
#include "gateway/cmp/recent.h"
#include "gateway/cmp/policy.h"
#include "gateway/cmp/precheck.h"
#include "gateway/cmp/poll.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/replay.h"
#include "gateway/cmp/rr.h"
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/suspend.h"
#include "gateway/cmp/share.h"
#include "gateway/cmp/signer.h"
#include "gateway/cmp/srv.h"
#include "gateway/cmp/status.h"
#include "gateway/cmp/txn.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/x509.h"
#include "base/log.h"
#include "mappings/route.h"
#include "upstream/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/cmperr.h>
#include <openssl/crmferr.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define TEXT_NO_TXN "no open transaction with this transactionID: it was completed, expired, or never started"
#define TEXT_NOT_KEPT "the gateway could not keep this transaction open for its certConf; retry later"
#define TEXT_BAD_POP                                                                                         \
    "proof of possession failed or missing: sign the request with the private key of the requested "         \
    "public key"

/*
 * What the engines of successive configurations share: open transactions, replay cache, revocations, the
 * certificates let through lately.
 */
struct cmp_shared {
    atomic_int refs;
    struct gw_txn_table *txns;
    struct gw_replay *replay;
    struct cmp_revoked *revoked;
    struct cmp_recent *recent;
    struct gw_cluster *cluster; /* "cmp.state": "redis"; a reload keeps the first one (restart to change) */
    struct cmp_started started; /* the first configuration's restart-only settings too */
};

/*
 * |cc|'s window and TTLs into |t|. A transactionID counts as seen for twice the messageTime window (older
 * messages fail badTime) and GW_REPLAY_MARGIN, at least a transaction TTL; without a window, as long as
 * with the default one (its margin left out), and the messageTime check (policy.c) bounded by what that
 * covers.
 */
static void started_init(struct cmp_started *t, const struct gw_cmp_conf *cc)
{
    time_t window = cc->message_time_window;

    *t = (struct cmp_started){.message_time_window = cc->message_time_window,
                              .transaction_ttl = cc->transaction_ttl,
                              .behind = window,
                              .ahead = window,
                              .open_per_identity = cc->max_transactions_per_identity,
                              .recent_per_identity = cc->max_recent_per_identity};
    if (window != 0) {
        /*
         * A request let through at t with a messageTime |window| ahead is let through again, that
         * messageTime now |window| behind, until t + 2 * window: a cache that forgot it then would serve
         * it again. The margin covers the whole-second clock reads and Redis's clock.
         */
        t->replay_ttl = 2 * window + GW_REPLAY_MARGIN;
        if (t->replay_ttl < (time_t)cc->transaction_ttl)
            t->replay_ttl = cc->transaction_ttl;
        return;
    }
    window = GW_DEFAULT_MSGTIME_WINDOW;
    if (2 * window < (time_t)cc->transaction_ttl)
        window = (cc->transaction_ttl + 1) / 2;
    t->replay_ttl = 2 * window;
    /*
     * A request let through at t with a messageTime up to |ahead| on is forgotten at t + replay_ttl, when
     * that messageTime is replay_ttl - ahead old: refused from GW_REPLAY_MARGIN before, so that nothing the
     * cache forgot is served again, here or (Redis's clock) on another instance.
     */
    t->ahead = GW_MSGTIME_AHEAD_NO_WINDOW;
    t->behind = t->replay_ttl - GW_MSGTIME_AHEAD_NO_WINDOW - GW_REPLAY_MARGIN;
}

/* The state every engine of the process shares; NULL with |err| and *|rc| (gw_cmp_engine_new's). */
static struct cmp_shared *shared_new(const struct gw_cmp_settings *cfg, int *rc, char *err)
{
    struct cmp_shared *sh = calloc(1, sizeof(*sh));

    snprintf(err, GW_ERR_LEN, "CMP engine: out of memory");
    *rc = GW_ERR_NOMEM;
    if (sh == NULL)
        return NULL;
    atomic_init(&sh->refs, 1);
    started_init(&sh->started, cfg->cmp);
    sh->txns = gw_txn_table_new(cfg->cmp->max_transactions, sh->started.open_per_identity);
    sh->replay =
        gw_replay_new(GW_REPLAY_MAX_ENTRIES, sh->started.recent_per_identity, sh->started.replay_ttl);
    sh->recent = cmp_recent_new();
    if (sh->txns == NULL || sh->replay == NULL || sh->recent == NULL)
        goto fail;
    /* the file it names, or what another try may mend (memory, descriptors) */
    if ((sh->revoked = cmp_revoked_new(cfg->cmp->revoked_file, cfg->uid, time(NULL), rc, err)) == NULL) {
        *rc = gw_err_file_class(*rc);
        goto fail;
    }
    *rc =
        GW_ERR_UNAVAILABLE; /* Redis, which may come (or be set right) without the gateway's file changing */
    if (cfg->cmp->state.backend == GW_STATE_REDIS &&
        (sh->cluster = gw_cluster_new(&cfg->cmp->state, err)) == NULL)
        goto fail;
    *rc = 0;
    return sh;
fail:
    gw_txn_table_free(sh->txns, NULL, NULL);
    gw_replay_free(sh->replay);
    cmp_revoked_free(sh->revoked);
    cmp_recent_free(sh->recent);
    free(sh);
    return NULL;
}

struct gw_cmp_engine *gw_cmp_engine_new(const struct gw_cmp_settings *cfg, struct gw_upstream_set *ups,
                                        struct gw_cmp_engine *prev, int *rc, char *err)
{
    struct gw_cmp_engine *e;
    int why = GW_ERR_INVAL, *code = rc != NULL ? rc : &why;

    *code = GW_ERR_INVAL;
    if (cfg == NULL || cfg->signer == NULL || cfg->signer->cert == NULL || cfg->signer->key == NULL) {
        snprintf(err, GW_ERR_LEN, "CMP engine: no signer certificate and key");
        return NULL;
    }
    if ((e = calloc(1, sizeof(*e))) == NULL)
        goto nomem;
    e->cfg = *cfg;
    e->ups = ups;
    atomic_init(&e->live, 0);
    if (prev != NULL) {
        e->shared = prev->shared;
        atomic_fetch_add(&e->shared->refs, 1);
        e->audit = gw_audit_share(prev->audit, cfg->audit); /* NULL: the file changed, opened anew */
    } else if ((e->shared = shared_new(cfg, code, err)) == NULL) {
        goto fail;
    }
    e->txns = e->shared->txns;
    e->replay = e->shared->replay;
    e->cluster = e->shared->cluster;
    e->started = &e->shared->started;
    e->revoked = e->shared->revoked;
    e->recent = e->shared->recent;
    if (cmp_withdrawals_init(e) != 0) {
        snprintf(err, GW_ERR_LEN,
                 "CMP engine: its withdrawal queue cannot be made (out of memory, or no "
                 "condition on CLOCK_MONOTONIC)");
        *code = GW_ERR_NOMEM;
        goto fail;
    }
    if ((e->signer = cmp_signer_health_new(cfg->signer->key)) == NULL)
        goto nomem;
    /* the audit log it names (opened here: its class), or memory for the issuers' stores */
    if ((*code = cmp_policy_init(e, err)) != 0) {
        *code = gw_err_file_class(*code);
        goto fail;
    }
    return e;
nomem:
    snprintf(err, GW_ERR_LEN, "CMP engine: out of memory");
    *code = GW_ERR_NOMEM;
fail:
    gw_cmp_engine_free(e);
    return NULL;
}

/* How a parked transaction ended without its client: the log event and the audit status. */
struct closing {
    const char *event;
    const char *status;
    const char *pending_event; /* a deferred request still waiting for its pollReq (docs/polling.md) */
    bool leave_to_cluster; /* shutting down: a transaction another instance can continue stays open there */
};

/*
 * Shared |t| of |txn| closing as |how| says, left to the other instances: 1, |txn| freed. Shutting down,
 * its record and reservation stay for the instance its next message reaches; a deferred request, which
 * other instances may have answered since, expires from its record. But a certificate its call returned
 * here that Redis never took, nor may have (cmp_poll_leave), closes as an unshared one (0): no record
 * says it came, and no other instance can deliver it.
 */
static int left_to_cluster(const struct closing *how, struct gw_txn *txn, struct cmp_txn *t, const char *tid)
{
    char why[GW_ERR_LEN];

    if (!t->shared || (!how->leave_to_cluster && t->request == NULL))
        return 0;
    /* a result Redis refused before: the others need it. Not tried again while Redis is known unreachable:
       the main thread (the watchdog's) waits no timeout per expiring transaction. Nor later: a certificate
       no try took to Redis then closes here as an unshared one (cmp_poll_leave), as one whose every put
       failed, and the record ends with its TTL */
    if (gw_cluster_status(t->e->cluster, why, sizeof(why)) == 0)
        cmp_poll_republish(t->e, t->pending,
                           how->leave_to_cluster ? CMP_POLL_LAST_AT_STOP : CMP_POLL_LAST_AT_EXPIRY);
    if (cmp_poll_leave(t->pending, how->pending_event, how->leave_to_cluster))
        return 0;
    if (!how->leave_to_cluster)
        gw_cluster_release(t->e->cluster, txn->tid, txn->tid_len, txn->quota);
    gw_log_kv(GW_LOG_INFO, "txn_left_to_cluster", "tid", tid, "identity", txn->identity, "serial", t->serial,
              "msg",
              how->leave_to_cluster ? "another instance can answer its next message"
                                    : "its expiry is recorded from its shared record",
              NULL);
    gw_txn_free(txn);
    return 1;
}

/* An issued certificate whose certConf never came: it stays valid, so it goes on record. */
static void log_closed(void *arg, struct gw_txn *txn)
{
    const struct closing *how = arg;
    struct cmp_txn *t = txn->data;
    char tid[2 * GW_MAX_TID_LEN + 1];
    int dropped;

    gw_hex(tid, txn->tid, txn->tid_len);
    if (t != NULL && left_to_cluster(how, txn, t, tid))
        return;
    /* recorded by the engine it began under, whose configuration it names; a certificate of a call
       still running is withdrawn, but at shutdown (docs/polling.md, Restarts) */
    if (t != NULL && t->pending != NULL && t->issued == NULL) {
        if (!how->leave_to_cluster)
            cmp_poll_abandon(t->pending);
        if (how->leave_to_cluster || !cmp_poll_withdraw_uncollected(t->e, t, tid, how->pending_event, 0))
            cmp_poll_closed(t->e, t, tid, how->pending_event);
    }
    /* the record before the release: its end passes the reservation to this instance, whichever took it,
       for the release to end it and the transactionID with it (released first, one another instance held
       was left alone, then passed here by the end and counted until it expired) */
    dropped =
        t != NULL && t->shared ? gw_cluster_drop_record(t->e->cluster, txn->tid, txn->tid_len, t->holder) : 1;
    if (t != NULL)
        gw_cluster_release(t->e->cluster, txn->tid, txn->tid_len, txn->quota);
    /* its record gone: another instance continued and closed it (that one has it on record); or
       another is answering it now (it records the outcome, or leaves the record to be claimed) */
    if (dropped != 1 && dropped != GW_ERR_UNAVAILABLE) {
        gw_log_kv(GW_LOG_INFO, dropped == 0 ? "txn_closed_elsewhere" : "txn_answered_elsewhere", "tid", tid,
                  "identity", txn->identity, NULL);
        gw_txn_free(txn);
        return;
    }
    if (t != NULL && t->issued != NULL) {
        gw_log_kv(GW_LOG_WARN, how->event, "tid", tid, "identity", txn->identity, "serial", t->serial, "msg",
                  "certificate issued but never confirmed; it stays valid", NULL);
        (void)cmp_audit_cert(t->e, t, tid, "expired_unconfirmed", how->status, t->issued, 0);
    }
    gw_txn_free(txn);
}

static const struct closing abandoned = {"txn_abandoned", "the gateway stopped before the certConf arrived",
                                         "txn_abandoned_pending", true};
static const struct closing expired = {"txn_expired", "no certConf within the transaction TTL",
                                       "txn_expired_pending", false};

void gw_cmp_engine_close_all(struct gw_cmp_engine *e)
{
    if (e != NULL)
        (void)gw_txn_table_clear(e->txns, log_closed, (void *)&abandoned);
}

bool gw_cmp_engine_free(struct gw_cmp_engine *e)
{
    return gw_cmp_engine_free_until(e, gw_now_ms() + GW_DRAIN_TIMEOUT_MS);
}

bool gw_cmp_engine_free_until(struct gw_cmp_engine *e, uint64_t until_ms)
{
    if (e == NULL)
        return true;
    /* upstream calls still running write to the audit log and the shared state */
    cmp_poll_detach(e, until_ms);
    /* after the calls, whose late certificates it withdraws; a revocation still running uses |e| */
    if (!cmp_withdrawals_drain(e, until_ms))
        return false;
    if (e->shared != NULL && atomic_fetch_sub(&e->shared->refs, 1) == 1) {
        /* the last engine: what is still open ends here */
        gw_txn_table_free(e->shared->txns, log_closed, (void *)&abandoned);
        gw_replay_free(e->shared->replay);
        cmp_revoked_free(e->shared->revoked);
        cmp_recent_free(e->shared->recent);
        cmp_poll_reread_drop(e->shared->cluster);
        gw_cluster_free(e->shared->cluster);
        free(e->shared);
    }
    cmp_policy_cleanup(e);
    cmp_signer_health_free(e->signer);
    free(e);
    return true;
}

/* What a call holds once it is answered: the header it read, the requested key it decoded. */
void cmp_call_cleanup(struct cmp_call *c)
{
    gw_shim_hdr_info_cleanup(&c->hdr);
    EVP_PKEY_free(c->req_key);
    c->req_key = NULL;
}

void gw_cmp_engine_expire(struct gw_cmp_engine *e, time_t now)
{
    if (e == NULL)
        return;
    (void)gw_txn_expire(e->txns, now, log_closed, (void *)&expired);
    /* those of instances that are gone, some seconds after their own tick would have come */
    (void)gw_cluster_claim_expired(e->cluster, now, cmp_record_orphan, e);
    cmp_poll_reread(e); /* ends of records whose answers were lost */
}

size_t gw_cmp_engine_reset(struct gw_cmp_engine *e)
{
    struct closing how = {"txn_abandoned", "the engine was reset before the certConf arrived",
                          "txn_abandoned_pending", false};
    size_t held;

    if (e == NULL)
        return 0;
    held = gw_txn_table_clear(e->txns, log_closed, &how);
    gw_replay_clear(e->replay);
    return held;
}

/* Sends |msg| (consumed) as the answer. */
static void emit(struct cmp_call *c, OSSL_CMP_MSG *msg)
{
    unsigned char *der = NULL;
    int len;

    if (msg == NULL || (len = i2d_OSSL_CMP_MSG(msg, &der)) <= 0) {
        OSSL_CMP_MSG_free(msg);
        gw_cmp_http_error(c->rsp, 500,
                          c->unsigned_answer ? CMP_TEXT_UNSIGNED
                                             : "internal error: could not build the CMP response");
        return;
    }
    snprintf(c->rsp->rsp_type, sizeof(c->rsp->rsp_type), "%s",
             gw_shim_body_name(OSSL_CMP_MSG_get_bodytype(msg)));
    c->rsp->der = der;
    c->rsp->len = (size_t)len;
    c->rsp->http_status = 200;
    OSSL_CMP_MSG_free(msg);
}

/*
 * What an answer |rsp| that |t|'s context built, or failed to build (NULL), says of the signer's key:
 * it signed, or (|failed|) its protection signature failed, for |why|. A PBM answer is MAC'ed, and says
 * nothing; nor does one not built for another reason.
 */
static void note_signature(struct cmp_call *c, const struct cmp_txn *t, const OSSL_CMP_MSG *rsp, bool failed,
                           const char *why)
{
    if (t->pbm || (rsp == NULL && !failed))
        return;
    cmp_signer_note(t->e->signer, rsp != NULL, why[0] != '\0' ? why : "the signature failed");
    if (rsp == NULL)
        c->unsigned_answer = 1;
}

/* |verified| as cmp_process: |msg|'s signature was verified already against |t|'s pinned signer. */
OSSL_CMP_MSG *cmp_run(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *msg, int verified)
{
    OSSL_CMP_MSG *rsp;

    t->call = c;
    c->protect_failed = 0;
    cmp_log_capture_begin(c);
    rsp = cmp_process(t, msg, verified);
    cmp_log_capture_end();
    t->call = NULL;
    note_signature(c, t, rsp, c->protect_failed, c->diag);
    ERR_clear_error();
    return rsp;
}

/* Puts the refusal |r| into the error message |*msg| and re-protects it with |t|'s context. */
static void rewrite_error(struct cmp_call *c, struct cmp_txn *t, OSSL_CMP_MSG **msg,
                          const struct cmp_refusal *r)
{
    OSSL_CMP_PKISI *si = cmp_rejection(r);
    const unsigned char *tid = c->hdr.tid_len > 0 ? c->hdr.tid : NULL;
    char why[GW_ERR_LEN];
    bool failed;

    cmp_set_outcome(c, "error", r);
    if (si == NULL ||
        gw_shim_error_set_status(OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv), msg, si, tid, c->hdr.tid_len) != 0) {
        OSSL_CMP_MSG_free(*msg);
        *msg = NULL;
    }
    OSSL_CMP_PKISI_free(si);
    failed = cmp_signer_failed_in_queue(why, sizeof(why)); /* it signs the error anew */
    note_signature(c, t, *msg, failed, why);
    ERR_clear_error();
}

static void refuse(struct cmp_call *c, const OSSL_CMP_MSG *msg, const struct cmp_refusal *r);

/*
 * Every OpenSSL-built error gets our failInfo and statusString; other answers pass unchanged.
 * A PBM request whose protection failed is answered by the (signing) refusal context: an error
 * MAC'ed with the secret the client does not have is one it cannot read.
 */
static void finish(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *req, OSSL_CMP_MSG *msg)
{
    struct cmp_refusal r = {0};

    if (msg != NULL && OSSL_CMP_MSG_get_bodytype(msg) == GW_CMP_BODY_ERROR) {
        if (c->fail.fail_info >= 0)
            r = c->fail;
        else if (!cmp_signature_refused(c, t, req, msg, &r))
            cmp_classify_error(c, msg, &r);
        if (t->pbm && r.fail_info == OSSL_CMP_PKIFAILUREINFO_badMessageCheck) {
            OSSL_CMP_MSG_free(msg);
            refuse(c, req, &r);
            return;
        }
        rewrite_error(c, t, &msg, &r);
    }
    emit(c, msg);
}

/* A protected error from a context that can validate nothing (docs/design.md O10.1), with our status in it.
 */
static void refuse(struct cmp_call *c, const OSSL_CMP_MSG *msg, const struct cmp_refusal *r)
{
    struct cmp_txn *t = cmp_txn_new(c, 1);
    OSSL_CMP_MSG *rsp = NULL, *own = (OSSL_CMP_MSG *)msg; /* this call's, decoded by it */
    int swapped = 0;
    /* OpenSSL would look for the signer among the extraCerts of a signed message, parsing each one's
       extensions (8 ms for 32 KiB of subjectAltNames), before it fails as it must here: it never sees them */
    STACK_OF(X509) *extra = gw_shim_swap_extra_certs(own, NULL, &swapped);

    if (t != NULL)
        rsp = cmp_run(t, c, msg, 0);
    if (swapped)
        sk_X509_pop_free(gw_shim_swap_extra_certs(own, extra, &swapped), X509_free);

    if (rsp != NULL && OSSL_CMP_MSG_get_bodytype(rsp) != GW_CMP_BODY_ERROR) {
        OSSL_CMP_MSG_free(rsp); /* cannot happen: nothing validates on a refusal context */
        rsp = NULL;
    }
    if (rsp != NULL)
        rewrite_error(c, t, &rsp, r);
    if (rsp != NULL)
        emit(c, rsp);
    else
        gw_cmp_http_error(c->rsp, 500,
                          c->unsigned_answer ? CMP_TEXT_UNSIGNED
                                             : "internal error: could not build the CMP error response");
    if (c->rsp->http_status == 200)
        cmp_set_outcome(c, "error", r);
    cmp_txn_free(t);
}

/* The slot this request reserved (issue.c) for its new transaction, whose TLS client is this request's. */
static void end_slot(struct cmp_call *c)
{
    char quota[GW_QUOTA_KEY_LEN];

    if (c->reserved) {
        cmp_quota_key(quota, c->rsp->identity, c->tls_client);
        cmp_release_slot(c->e, c->hdr.tid, c->hdr.tid_len, NULL, quota, NULL);
    }
    c->reserved = 0;
}

/* end_slot for |t|, not parked: a deferred request's call still running keeps it (cmp_close_slot). */
static void close_slot(struct cmp_call *c, const struct cmp_txn *t)
{
    char quota[GW_QUOTA_KEY_LEN];

    if (c->reserved) {
        cmp_quota_key(quota, c->rsp->identity, c->tls_client);
        cmp_close_slot(c->e, t, c->hdr.tid, c->hdr.tid_len, quota, NULL);
    }
    c->reserved = 0;
}

/*
 * After an ip/cp/kup awaiting certConf: pin the sender, then park the context (docs/design.md O6),
 * with t->nonce the senderNonce of the answer the client got. 1 when it cannot be kept (out of
 * memory): |t| stays the caller's.
 */
static int park(struct cmp_call *c, struct cmp_txn *t)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv);
    time_t ttl = (time_t)c->e->started->transaction_ttl + cmp_poll_extra_ttl(t);
    struct gw_txn *txn = NULL;

    if ((t->pbm || (t->signer != NULL && OSSL_CMP_CTX_set1_srvCert(ctx, t->signer) == 1)) &&
        (txn = gw_txn_new(c->hdr.tid, c->hdr.tid_len, t->identity, t->quota, c->now + ttl, t,
                          cmp_txn_free)) != NULL) {
        cmp_share_txn(c, t, ttl); /* before it is open here: another instance may take it */
        cmp_carry(c, t, 1);       /* and another worker */
        if (gw_txn_put(c->e->txns, txn) == 0) {
            c->reserved = 0; /* the slot now holds the transaction */
            return 0;
        }
        (void)gw_cluster_drop_record(c->e->cluster, c->hdr.tid, c->hdr.tid_len, NULL);
        txn->free_data = NULL; /* |t| stays the caller's */
    }
    gw_log_kv(GW_LOG_ERROR, "txn_park_failed", "tid", c->rsp->tid, "identity", t->identity, "serial",
              t->serial, "msg", "certificate issued but the transaction could not be kept; it is withdrawn",
              NULL);
    gw_txn_free(txn);
    return 1;
}

/*
 * A fresh context configured from the route's role, its signer chosen and pinned before OpenSSL runs
 * (auth.c). NULL when the request was answered instead: no context could be made, or it is refused.
 */
static struct cmp_txn *start_authenticated(struct cmp_call *c, const OSSL_CMP_MSG *msg)
{
    struct cmp_txn *t = cmp_txn_new(c, 0);
    struct cmp_refusal r = {0};

    if (t == NULL) {
        gw_cmp_http_error(c->rsp, 500, "internal error: could not set up the CMP transaction");
        return NULL;
    }
    if (cmp_authenticate(t, c, msg, &r) == 0)
        return t;
    c->rsp->auth_failed = true; /* nothing that came with the message could be trusted */
    cmp_txn_free(t);
    refuse(c, msg, &r);
    return NULL;
}

int cmp_is_cert_response(int body)
{
    return body == GW_CMP_BODY_IP || body == GW_CMP_BODY_CP || body == GW_CMP_BODY_KUP;
}

/*
 * A second pass whose signer is the first pass's: OpenSSL verified this message's signature against
 * it before the first pass's callback ran (the one that suspended), so cmp_run() need not again.
 */
static int verified_before(const struct cmp_call *c, const struct cmp_txn *t)
{
    const struct cmp_txn *t1 = cmp_suspend_first(c);

    return t1 != NULL && !t->pbm && !t1->pbm && t->signer != NULL && t1->signer != NULL &&
           X509_cmp(t->signer, t1->signer) == 0;
}

/*
 * The transaction open here under |c|'s transactionID, closed if its TTL has passed: the expiry tick comes
 * once a second, and a message in between finds it closed as the tick would have closed it
 * (gw_cmp_engine_expire), not open past its TTL.
 */
static void close_expired(struct cmp_call *c)
{
    struct gw_txn *txn = gw_txn_take_expired(c->e->txns, c->hdr.tid, c->hdr.tid_len, c->now);

    if (txn != NULL)
        log_closed((void *)&expired, txn);
}

/*
 * 1 when OpenSSL 3.0 answered |rsp| refusing a request of several entries (CertReqMsgs, RevDetails): its
 * process_cert_request and process_rr count them only after ossl_cmp_msg_check_update verified the
 * protection, and no callback ran to mark the sender authenticated (srv.c called_back). Every other
 * refusal OpenSSL makes itself may come before that check.
 */
static int refused_once_verified(const OSSL_CMP_MSG *rsp)
{
    long code = gw_shim_error_code(rsp);

    return code >= 0 && ERR_GET_LIB((unsigned long)code) == ERR_LIB_CMP &&
           ERR_GET_REASON((unsigned long)code) == CMP_R_MULTIPLE_REQUESTS_NOT_SUPPORTED;
}

/*
 * ir, cr, p10cr, kur: a fresh context configured from the route's role. A transaction under the same
 * transactionID whose TTL has passed is closed first, as the expiry tick would have: the request is then
 * judged as one after the tick, not refused as one whose transactionID is in use.
 */
static void start_txn(struct cmp_call *c, const OSSL_CMP_MSG *msg)
{
    struct cmp_txn *t;
    OSSL_CMP_MSG *rsp;
    int open;

    close_expired(c);
    if ((t = start_authenticated(c, msg)) == NULL)
        return;
    rsp = cmp_run(t, c, msg, verified_before(c, t));
    if (c->suspend != NULL) { /* no answer yet: the second pass gives it (suspend.h) */
        OSSL_CMP_MSG_free(rsp);
        cmp_suspend_park(c, t, cmp_txn_free);
        return;
    }
    if (rsp != NULL && !c->audited && cmp_is_cert_response(OSSL_CMP_MSG_get_bodytype(rsp))) {
        /* no callback ran: OpenSSL refused the POPO itself, quoting its own reason (docs/design.md
         * O4), once the protection verified */
        cmp_authenticated(c, t);
        OSSL_CMP_MSG_free(rsp);
        cmp_txn_free(t);
        end_slot(c);
        refuse(c, msg, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badPOP, TEXT_BAD_POP});
        return;
    }
    /* issued and awaiting certConf, or deferred and awaiting pollReq (docs/polling.md); t->nonce, the
       senderNonce its client's next message must answer, read from |rsp| as it was made */
    if (refused_once_verified(rsp)) {
        cmp_authenticated(c, t);
        cmp_rr_audit_unread(c, t, rsp); /* who tried to revoke what, where OpenSSL refused it unread */
    }
    open = (t->issued != NULL || t->pending != NULL) &&
           OSSL_CMP_CTX_get_status(OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv)) != -1 && rsp != NULL &&
           OSSL_CMP_MSG_get_bodytype(rsp) != GW_CMP_BODY_ERROR && t->nonce_len > 0;
    finish(c, t, msg, rsp);
    if (open && c->rsp->http_status == 200) {
        if (park(c, t) == 0)
            return;
        /* a certificate no certConf could reach: none goes out, the client may try again */
        gw_cmp_response_cleanup(c->rsp);
        refuse(c, msg, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_NOT_KEPT});
    }
    /* implicitConfirm granted, rejected, or error: 3.0 leaves a rejected ip "open" (docs/design.md O10.4) */
    cmp_withdraw_undelivered(c, t);
    /* a deferred request not parked: no pollReq can collect what its call returns */
    cmp_poll_drop_uncollected(c->e, t, c->rsp->tid, 0);
    cmp_carry(c, t, 0);
    close_slot(c, t);
    cmp_txn_free(t);
}

/*
 * A message continuing a transaction begun under an older engine (before a reload) runs under
 * that engine from here on. The call holds it like a transaction does, until gw_cmp_process
 * returns: the transaction may be freed before the call is done with the engine.
 */
static void cmp_call_switch(struct cmp_call *c, struct gw_cmp_engine *owner)
{
    if (owner == c->e)
        return;
    if (c->held == NULL) {
        c->held = owner;
        atomic_fetch_add(&owner->live, 1);
    }
    c->e = owner;
}

/* 1 with |r| when the transaction is here but another of its messages holds it: "no open
   transaction" would have its client give up on one that goes on (as cmp_share_refused). */
static int held_here(struct cmp_call *c, struct cmp_refusal *r)
{
    if (!gw_txn_contains(c->e->txns, c->hdr.tid, c->hdr.tid_len))
        return 0;
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_TXN_BUSY);
}

/* The transaction open here under |c|'s transactionID, checked out (gw_txn_take); NULL when there is none,
 * or when its TTL has passed (close_expired). */
static struct gw_txn *take_unexpired(struct cmp_call *c)
{
    close_expired(c);
    return gw_txn_take(c->e->txns, c->hdr.tid, c->hdr.tid_len);
}

/*
 * A transaction checked out for a message that does not end it: back where it was open (a rebuilt
 * one is dropped: its record stays, for the next try on any instance), its lease given back.
 */
static void put_back(struct cmp_call *c, struct gw_txn *txn, int rebuilt, int leased)
{
    if (!rebuilt)
        cmp_txn_return(c, txn);
    else
        gw_txn_free(txn);
    if (leased)
        gw_cluster_unlease(c->e->cluster, c->hdr.tid, c->hdr.tid_len);
}

/*
 * cmp_check_pinned; a message whose PBM reference a reload deleted passes only as its own
 * transaction's (then cmp_check_current tells its client so, which costs its address nothing), any
 * other is refused as cmp_check_pbm refuses an unknown reference: naming one holds no open transaction
 * hostage and counts as a failed authentication.
 */
static int check_signer(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *msg, struct cmp_refusal *r)
{
    if (cmp_check_pinned(c, t, msg, r) == 0)
        return 0;
    if (c->pbm_gone)
        (void)cmp_pbm_refused(c, "unknown PBM reference", r);
    return 1;
}

/* check_signer, then cmp_check_path (|now| matched the path): only |t|'s sender learns its path is wrong. */
static int check_own(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *msg,
                     const struct gw_cmp_engine *now, struct cmp_refusal *r)
{
    return check_signer(c, t, msg, r) != 0 || cmp_check_path(c, now, t->role->name, t->profile, r) != 0;
}

/*
 * Whether |msg| may continue or close |t|, which stays as it was: 0, or refused with |r|. |claimed|:
 * check_own passed on this very |t| already (claim_copy kept the copy), and is not run again.
 */
static int check_continuing(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *msg, int claimed,
                            const struct gw_cmp_engine *now, struct cmp_refusal *r)
{
    /* on a path that is gone, a transaction of another role is none of the path's (gone_unless_own) */
    if (c->req->gone != NULL && strcmp(t->role->name, c->role->name) != 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, TEXT_NO_TXN);
    /* its signer and path, then whether it answers the last answer (OpenSSL closes the transaction
       on a replay), and only then any upstream status lookup: the TLS side may have changed, a
       certificate been revoked */
    if ((!claimed && check_own(c, t, msg, now, r) != 0) || cmp_check_nonce(t, msg, r) != 0 ||
        cmp_check_credentials(c, t, r) != 0 || cmp_authorize(c, t, r) != 0)
        return 1;
    c->own = 1;
    return 0;
}

/*
 * The lease on a shared transaction's record, for its own copy here (*txn), so that one message is
 * answered once across the instances, once |msg| is found to come from its signer, on its path
 * (check_own; else anyone naming the transaction would hold it): 0 (leased, or the record does not verify and
 * this copy stands; a copy older than the record, which another instance answered since, is replaced by one
 * rebuilt from it: *rebuilt; a record older than the copy leaves the copy, and the copy's next
 * answer writes the record anew), GW_ERR_NOT_FOUND (another instance closed it: the copy is freed; or the
 * record's deadline passed: the copy is closed as expired, as take_unexpired closes one past its own),
 * or refused with |r| (held elsewhere, Redis out of reach, another signer: the copy is back in the
 * table).
 */
static int claim_copy(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct gw_txn **txnp, int *leased,
                      int *rebuilt, struct cmp_refusal *r)
{
    struct gw_txn *txn = *txnp;
    struct gw_txn_record rec;
    char err[GW_ERR_LEN] = "";
    int rc;

    if (check_own(c, txn->data, msg, c->e, r) != 0) {
        cmp_txn_return(c, txn);
        return GW_ERR_FORBIDDEN;
    }
    rc = gw_cluster_take_record(c->e->cluster, c->hdr.tid, c->hdr.tid_len, &rec, err);
    *leased = rc == 0;
    if (rc ==
        GW_ERR_TIMEOUT) { /* past the record's deadline, on Redis's clock: closed as the tick closes it */
        gw_txn_release(c->e->txns, c->hdr.tid, c->hdr.tid_len);
        log_closed((void *)&expired, txn);
        return GW_ERR_NOT_FOUND;
    }
    /* only a record further on replaces the copy: an older one is a late write or one Redis lost */
    if (rc == 0 && rec.step < ((struct cmp_txn *)txn->data)->step)
        gw_log_kv(GW_LOG_WARN, "txn_record_stale", "tid", c->rsp->tid, "identity", txn->identity, "msg",
                  "the shared record is older than this instance's copy; the copy answers", NULL);
    if (rc == 0 && rec.step > ((struct cmp_txn *)txn->data)->step) {
        gw_log_kv(GW_LOG_INFO, "txn_copy_replaced", "tid", c->rsp->tid, "identity", txn->identity, "msg",
                  "another instance answered it since; rebuilt from its record", NULL);
        /* a result Redis refused before */
        cmp_poll_republish(c->e, ((struct cmp_txn *)txn->data)->pending, CMP_POLL_TRY_AGAIN);
        gw_txn_free(txn);
        gw_txn_release(c->e->txns, c->hdr.tid, c->hdr.tid_len);
        *leased = *rebuilt = (*txnp = cmp_rebuild_from(c, &rec)) != NULL;
        rc = *txnp != NULL ? 0 : GW_ERR_NOT_FOUND;
        gw_txn_record_cleanup(&rec);
        return rc;
    }
    gw_txn_record_cleanup(&rec);
    if (rc == 0 || rc == GW_ERR_INVAL)
        return 0;
    if (rc == GW_ERR_NOT_FOUND) {
        gw_log_kv(GW_LOG_INFO, "txn_closed_elsewhere", "tid", c->rsp->tid, "identity", txn->identity, NULL);
        gw_txn_free(txn);
        gw_txn_release(c->e->txns, c->hdr.tid, c->hdr.tid_len);
        return rc;
    }
    cmp_txn_return(c, txn);
    (void)cmp_share_refused(c, rc, err, r);
    return rc;
}

/* claim_copy for a certConf or pollReq: 0, go on; 1, answered (closed elsewhere, or refused). */
static int claim_shared(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct gw_txn **txn, int *leased,
                        int *rebuilt)
{
    struct cmp_refusal why = {OSSL_CMP_PKIFAILUREINFO_badRequest, TEXT_NO_TXN};

    if (claim_copy(c, msg, txn, leased, rebuilt, &why) == 0)
        return 0;
    refuse(c, msg, &why);
    return 1;
}

/* certConf, pollReq: the parked context, checked out exclusively (here, or rebuilt from its record). */
static void continue_txn(struct cmp_call *c, const OSSL_CMP_MSG *msg)
{
    struct gw_cmp_engine *now = c->e; /* the configuration in force */
    struct gw_txn *txn = take_unexpired(c);
    struct cmp_txn *t;
    OSSL_CMP_MSG *rsp;
    struct cmp_refusal r = {0}, why = {.fail_info = -1};
    struct gw_txn_result left;
    int rebuilt = 0, leased = 0, claimed = 0, open, rc;

    if (txn != NULL && cmp_take_extra_certs(c, msg) != 0) {
        cmp_txn_return(c, txn); /* still open for its real client */
        return;
    }
    if (txn != NULL && ((struct cmp_txn *)txn->data)->shared) {
        if (claim_shared(c, msg, &txn, &leased, &rebuilt) != 0)
            return;
        claimed = !rebuilt; /* its signer and path checked on this copy */
    }
    /* a path that is gone serves only the transactions open here, begun on it */
    if (txn == NULL && c->req->gone == NULL && !held_here(c, &why) &&
        gw_cluster_keeps_records(c->e->cluster)) {
        leased = rebuilt = (txn = cmp_rebuild(c, msg, &why, &rc)) != NULL;
        if (rc == CMP_SHARE_NOT_DER) /* answered: its record was there, its extraCerts do not decode */
            return;
    }
    if (txn == NULL) {
        /* none anywhere: not counted against the address, since after a restart, a transaction's expiry or
           a reload (with cmp.state, another instance's record) it is its own client's certConf or pollReq */
        refuse(c, msg,
               why.fail_info >= 0 ? &why
                                  : &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badRequest, TEXT_NO_TXN});
        return;
    }
    t = txn->data;
    cmp_call_switch(c, t->e); /* it ends under the configuration it began in */
    snprintf(c->rsp->identity, sizeof(c->rsp->identity), "%s", t->identity);
    snprintf(c->rsp->serial, sizeof(c->rsp->serial), "%s", t->serial);
    if (check_continuing(c, t, msg, claimed, now, &r) != 0 || cmp_check_current(c, now, t, &r) != 0) {
        put_back(c, txn, rebuilt, leased); /* back untouched: still open for its real client */
        refuse(c, msg, &r);
        return;
    }
    c->rsp->proven = true; /* its transaction's signer, answering its last answer, still authorized */
    cmp_set_outcome(c, "closed without certificate status", NULL);
    rsp = cmp_run(t, c, msg, 1);
    /* still waiting (pollRep), or the released certificate now awaits its certConf */
    open = rsp != NULL && OSSL_CMP_CTX_get_status(OSSL_CMP_SRV_CTX_get0_cmp_ctx(t->srv)) != -1 &&
           (OSSL_CMP_MSG_get_bodytype(rsp) == GW_CMP_BODY_POLLREP || c->released);
    if (open && t->shared) /* the client's next message may go to any instance */
        cmp_reshare(c, t);
    finish(c, t, msg, rsp);
    if (open && c->rsp->http_status == 200) {
        if (c->released)
            cmp_carry(c, t, 1);
        put_back(c, txn, rebuilt, leased);
        return;
    }
    gw_log_kv(GW_LOG_INFO, "txn_closed", "tid", c->rsp->tid, "identity", t->identity, "serial", t->serial,
              "outcome", c->rsp->outcome, NULL);
    /* closed for good before the record goes: a result of its call still to come, which would find the
       record gone, is withdrawn as one after the close, not as one another instance closed */
    cmp_poll_abandon(t->pending);
    /* the record goes first: no other instance may answer this transaction while its outcome (a
       revocation at the upstream, say) is being written */
    cmp_close_slot(c->e, t, c->hdr.tid, c->hdr.tid_len, t->quota, &left);
    if (!c->released) {
        cmp_audit_closed(c, t);
        /* a deferred request ended by a certConf, or a malformed pollReq, before a pollReq collected it */
        cmp_poll_drop_uncollected(c->e, t, c->rsp->tid, 0);
    } else { /* released with implicitConfirm: its "issued" record says it all, if the answer leaves */
        cmp_withdraw_undelivered(c, t);
        cmp_carry(c, t, 0);
    }
    /* or one its call's instance put beside the record since this one leased it */
    (void)cmp_poll_withdraw_left(c->e, t, c->rsp->tid, &left, 0);
    gw_txn_free(txn);
}

/* The client aborted its transaction: a certificate it was given will not be used (RFC 9810 §5.3.21). */
static void abort_txn(struct cmp_call *c, struct gw_txn *txn)
{
    struct cmp_txn *old = txn->data;
    struct gw_txn_result left;

    gw_log_kv(GW_LOG_INFO, "txn_aborted_by_client", "tid", c->rsp->tid, "identity", txn->identity, "serial",
              old->serial, NULL);
    if (old->issued != NULL) {
        (void)cmp_audit_cert(c->e, old, c->rsp->tid, "rejected_by_client",
                             "the client aborted the transaction with an error message", old->issued, 1);
        cmp_withdraw(c->e, old, c->rsp->tid, old->issued, CRL_REASON_CESSATION_OF_OPERATION);
    }
    cmp_poll_drop_uncollected(c->e, old, c->rsp->tid, 1);
    cmp_close_slot(c->e, old, c->hdr.tid, c->hdr.tid_len, txn->quota, &left);
    /* one its call's instance put beside the record since this one leased it went with the record */
    (void)cmp_poll_withdraw_left(c->e, old, c->rsp->tid, &left, 1);
    gw_txn_free(txn);
}

/* An error message for |txn|, open here (or |rebuilt| from its record; a shared copy leased first), judged
 * as a certConf is, by its pin, not by the running configuration (which may have lost the signer's trust
 * anchor or PBM reference since): its own aborts it, answered from its context; any other is refused and
 * leaves it open. false: another instance closed it meanwhile, nothing was answered. */
static bool abort_own(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct gw_txn *txn, int rebuilt)
{
    struct gw_cmp_engine *own = c->e;
    struct cmp_refusal why = {.fail_info = -1};
    int leased = rebuilt, claimed = 0, rc = 0;

    if (!rebuilt && ((struct cmp_txn *)txn->data)->shared) {
        if ((rc = claim_copy(c, msg, &txn, &leased, &rebuilt, &why)) != 0 && why.fail_info < 0)
            return false;
        claimed = !rebuilt; /* its signer and path checked on this copy */
    }
    if (rc == 0) {
        cmp_call_switch(c, ((struct cmp_txn *)txn->data)->e); /* closed under the configuration it began in */
        if ((rc = check_continuing(c, txn->data, msg, claimed, own, &why)) != 0)
            put_back(c, txn, rebuilt, leased); /* back untouched: still open for its real client */
    }
    if (rc == 0) {
        finish(c, txn->data, msg, cmp_run(txn->data, c, msg, 1));
        abort_txn(c, txn);
    }
    c->e = own;
    if (rc != 0)
        refuse(c, msg, &why);
    return true;
}

/* The pkiconf to an error message that closed its transaction from its shared record (CMP_SHARE_ABORTED),
 * from a context of the gateway's signer alone, as a refusal's: this instance may lack the trust or the
 * secret the message's transaction began with. true. */
static bool confirm_abort(struct cmp_call *c, const OSSL_CMP_MSG *msg)
{
    struct cmp_txn *t = cmp_txn_new(c, 1);

    if (t != NULL)
        finish(c, t, msg, cmp_run(t, c, msg, 1));
    else
        gw_cmp_http_error(c->rsp, 500, "internal error: could not set up the CMP transaction");
    cmp_txn_free(t);
    return true;
}

/*
 * An error message for a transaction this instance knows from its shared record only (none held here by
 * another message: a single gateway tells that after authenticating it, held_here): judged by the record
 * and then by its pin, as a certConf is, not first as a request on the path's role, which would refuse its
 * own sender on another role's path as one that role does not trust (counted) where the instance with its
 * copy says txn_other_path; one a reload here refuses the sender of is closed as its client asked, as on a
 * single gateway (CMP_SHARE_ABORTED). true when answered. false with |*later| set when the message is to be
 * authenticated first, then answered so: held here by another message, Redis out of reach, or another sender
 * or TLS client, which the record refuses before it checks the protection (CMP_SHARE_OTHER_CLIENT: a
 * forgery's failed authentication counts against its address); false with it unset when there is nothing to
 * abort (no record, or one whose request does not replay here). The record is read once for the message.
 */
static bool abort_shared(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *later)
{
    struct gw_txn *txn;
    int rc;

    if (!gw_cluster_keeps_records(c->e->cluster) || held_here(c, later))
        return false;
    if ((txn = cmp_rebuild(c, msg, later, &rc)) != NULL)
        return abort_own(c, msg, txn, 1);
    if (rc == CMP_SHARE_NOT_DER) /* answered: its record was there, its extraCerts do not decode */
        return true;
    if (rc == CMP_SHARE_ABORTED)
        return confirm_abort(c, msg);
    if (rc == GW_ERR_UNAVAILABLE || rc == CMP_SHARE_OTHER_CLIENT || later->fail_info < 0)
        return false; /* |later| once authenticated; or none, or one that does not replay here */
    refuse(c, msg, later);
    return true;
}

/* An error message from the client: answered with pkiconf, closing its open transaction if it is its own,
 * here (abort_own) or, in a cluster, known from its shared record (abort_shared). One of no open transaction
 * is refused as a certConf of none is, before its extraCerts are decoded: it has nothing to abort. One held
 * by another message, here or elsewhere, or whose shared record is out of reach, has its reference and
 * protection checked as a request's, and only then is it told to retry: nothing was aborted. */
static void client_error(struct cmp_call *c, const OSSL_CMP_MSG *msg)
{
    struct gw_txn *txn = take_unexpired(c);
    struct cmp_refusal why = {.fail_info = -1}, later = {.fail_info = -1};
    struct cmp_txn *t;
    OSSL_CMP_MSG *rsp;

    if (txn != NULL && cmp_take_extra_certs(c, msg) != 0) {
        cmp_txn_return(c, txn); /* still open for its real client */
        return;
    }
    if ((txn != NULL && abort_own(c, msg, txn, 0)) || c->req->gone != NULL || abort_shared(c, msg, &later))
        return;
    /* none anywhere: not counted against the address, as continue_txn's, for it may be its own client's */
    if (later.fail_info < 0 && !held_here(c, &later)) {
        refuse(c, msg, &(struct cmp_refusal){OSSL_CMP_PKIFAILUREINFO_badRequest, TEXT_NO_TXN});
        return;
    }
    if (cmp_take_extra_certs(c, msg) != 0)
        return;
    if (c->hdr.protection_nid == NID_id_PasswordBasedMAC &&
        (c->pbm_gone || !gw_role_accepts_pbm(c->role, c->hdr.sender_kid, c->hdr.sender_kid_len))) {
        (void)cmp_pbm_refused(c, "unknown PBM reference, or not this role's", &why);
        refuse(c, msg, &why);
        return;
    }
    if ((t = start_authenticated(c, msg)) == NULL)
        return;
    rsp = cmp_run(t, c, msg, 0);
    if (rsp != NULL && OSSL_CMP_MSG_get_bodytype(rsp) == GW_CMP_BODY_PKICONF) {
        OSSL_CMP_MSG_free(rsp);
        refuse(c, msg, &later);
    } else {
        finish(c, t, msg, rsp);
    }
    cmp_txn_free(t);
}

/*
 * On a path that is gone (gw_cmp_request.gone) whatever is not an open transaction's own message gets
 * the answer of an unknown path, and costs its address nothing as that does: the path tells no one
 * whether it was there, or what was open on it.
 */
static void gone_unless_own(struct cmp_call *c)
{
    if (c->req->gone == NULL || c->own)
        return;
    gw_cmp_response_cleanup(c->rsp);
    gw_cmp_response_init(c->rsp);
    gw_cmp_http_error(c->rsp, 404, c->req->gone);
}

static void dispatch(struct cmp_call *c, const OSSL_CMP_MSG *msg)
{
    struct cmp_refusal r;
    int rc = gw_shim_hdr_info(msg, &c->hdr);

    if (rc != 0) {
        c->rsp->auth_failed = true; /* as cmp_precheck's refusals of a form */
        (void)cmp_refuse_header(&c->hdr, rc, &r);
        refuse(c, msg, &r);
        return;
    }
    gw_hex(c->rsp->tid, c->hdr.tid, c->hdr.tid_len);
    if (cmp_precheck(c, msg, &r) != 0) {
        refuse(c, msg, &r);
        return;
    }
    switch (cmp_bodies[c->body]) {
    case CMP_ACT_START:
        if (c->req->gone == NULL && cmp_take_extra_certs(c, msg) == 0) /* nothing new begins on a path gone */
            start_txn(c, msg);
        break;
    case CMP_ACT_CONTINUE:
        continue_txn(c, msg);
        break;
    default:
        client_error(c, msg);
        break;
    }
}

void gw_cmp_process(struct gw_cmp_engine *e, const struct gw_cmp_request *req, struct gw_cmp_response *rsp)
{
    struct cmp_call c;
    OSSL_CMP_MSG *msg;

    memset(&c, 0, sizeof(c));
    c.e = e;
    c.req = req;
    c.rsp = rsp;
    c.now = e->clock != NULL ? e->clock() : time(NULL);
    c.fail.fail_info = c.stale.fail_info = -1;
    c.role = req->route != NULL ? req->route->role : NULL;
    if (rsp->suspended != NULL)
        cmp_suspend_begin(&c);
    if (c.role != NULL)
        cmp_describe_call(&c);
    if ((msg = c.resume != NULL ? cmp_suspend_msg(&c)
                                : gw_cmp_decode(req, rsp, &c.hash_alg, &c.certs_later)) == NULL) {
        rsp->auth_failed = rsp->http_status == 400; /* no PKIMessage, from no one known: as dispatch's */
        cmp_suspend_end(&c); /* a second pass always has its message: nothing is left behind */
        gone_unless_own(&c);
        return;
    }
    c.body = OSSL_CMP_MSG_get_bodytype(msg);
    snprintf(rsp->req_type, sizeof(rsp->req_type), "%s", gw_shim_body_name(c.body));
    if (c.role == NULL)
        gw_cmp_http_error(rsp, 404, "no CMP role serves this path");
    else
        dispatch(&c, msg);
    gone_unless_own(&c);
    if (c.resume != NULL) {
        cmp_suspend_end(&c);
        end_slot(&c);
    }
    cmp_call_cleanup(&c);
    if (rsp->suspended != NULL) /* the second pass runs on the message decoded here */
        cmp_suspend_keep_msg(rsp->suspended, msg);
    else
        OSSL_CMP_MSG_free(msg);
    ERR_clear_error();
    if (c.held != NULL) /* the last touch of an older engine: it may be freed from now on */
        atomic_fetch_sub(&c.held->live, 1);
}
