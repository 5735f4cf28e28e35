/*
 * Upstream calls that outlive their request (docs/polling.md): with a role's poll_after, the sign
 * call runs on a call thread, a slow one is answered "waiting", and pollReq collects its result.
 */
#ifndef GW_CMP_POLL_H
#define GW_CMP_POLL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "gateway/cmp/cmp_local.h"
#include "gateway/cmp/cluster.h"
#include "upstream/upstream.h"

/*
 * cmp_poll_sign runs the sign call on a call thread and waits up to the role's poll_after:
 * 0 with |out| filled (in time, or refused), or 1: deferred, t->pending holds the call.
 */
int cmp_poll_sign(struct cmp_txn *t, struct cmp_call *c, const struct gw_sign_req *req,
                  struct gw_sign_result *out);

/*
 * cmp_poll_take moves the result of |t|'s call (here, or on another instance) into |out|
 * (*on_record: the "issued" record is written): 1, or 0 if none.
 */
int cmp_poll_take(struct cmp_txn *t, struct gw_sign_result *out, int *on_record);

/*
 * cmp_poll_ready: 1 once |t|'s call has a result (pollReq may release it; past the call's deadline,
 * its timeout), else 0 with *check_after (s).
 */
int cmp_poll_ready(struct cmp_txn *t, int64_t *check_after);

/*
 * A transaction shared with the other instances (engine.c): cmp_poll_describe gives what its record
 * says of the call (deadline, ms since the epoch; checkAfter), and cmp_poll_share has the call's
 * result written beside that record once the "issued" record is on disk (at once if it has come).
 */
void cmp_poll_describe(const struct cmp_txn *t, long long *deadline_ms, long long *check_after);
void cmp_poll_share(struct gw_cmp_engine *e, struct cmp_pending *p, struct gw_cluster *cl,
                    const unsigned char *tid, size_t tid_len, time_t ttl);

/* Whether a put of a deferred request's result that fails is tried again (result_not_shared says which) */
enum cmp_poll_try {
    CMP_POLL_TRY_AGAIN,      /* when this instance next answers the transaction, or expires it */
    CMP_POLL_LAST_AT_EXPIRY, /* no: the transaction expires here now (cmp_poll_leave next) */
    CMP_POLL_LAST_AT_STOP,   /* no: the gateway stops (cmp_poll_leave next, stopping) */
};

/* cmp_poll_republish shares a result not shared before (Redis failed); |when| as above. NULL-safe. */
void cmp_poll_republish(struct gw_cmp_engine *e, struct cmp_pending *p, enum cmp_poll_try when);

/*
 * cmp_poll_leave: |p|'s shared transaction closes here without its client: it expires, or with |stopping|
 * the gateway stops. true when the certificate its call returned in time, uncollected, is on this instance
 * alone: no try put it beside the record, and none may have (each was refused before it went out whole:
 * gw_cluster_put_result's GW_ERR_UNAVAILABLE), so no other instance can deliver it; the caller closes it as
 * an unshared one. Else false: the transaction is left to its record, and a put still to come or in flight
 * (the call still runs, or its result is on its way) that then never reaches Redis, no try before it having
 * gone out, has the completion or thread that tried it log |event| (a static string) and record the
 * certificate as not delivered: withdrawn, as at expiry, or with |stopping| valid, as at a stop
 * (cmp_poll_closed). NULL-safe.
 */
bool cmp_poll_leave(struct cmp_pending *p, const char *event, bool stopping);

/*
 * cmp_poll_remote: what a pollReq on this instance knows of a call another instance made, from its
 * record (NULL: out of memory, or a result that does not decode). Freed with cmp_poll_remote_free.
 */
struct cmp_remote *cmp_poll_remote(const struct gw_txn_record *rec);
void cmp_poll_remote_free(struct cmp_remote *r);

/* cmp_poll_extra_ttl: how long a deferred transaction stays parked beyond transaction_ttl (s). */
time_t cmp_poll_extra_ttl(const struct cmp_txn *t);

/*
 * cmp_poll_abandon: the transaction of |p| closes here for good while its call still runs (expiry, the
 * client's abort, a certConf or malformed pollReq, a failure to park it), shared or not: a certificate the
 * call returns is then on record as not delivered and withdrawn, as after the deadline, and never put beside
 * the shared record (which goes with the transaction). NULL-safe.
 */
void cmp_poll_abandon(struct cmp_pending *p);

/*
 * cmp_poll_hold_slot: the transaction of |p|, abandoned (cmp_poll_abandon), closes while its call still
 * runs: the call keeps the transaction's slot (|tid| under |quota|: the table's, the cluster's
 * reservation) and its completion ends it, or cmp_poll_detach if the call outlives the engine. true if
 * it took it so; false when the call has returned
 * (or there is none: NULL), the caller's to end now.
 */
bool cmp_poll_hold_slot(struct cmp_pending *p, const unsigned char *tid, size_t tid_len, const char *quota);

/*
 * cmp_poll_withdraw_uncollected: |t| (a deferred request, its call made here or its result read from
 * its record) closes, by expiry or its client's abort (|aborted|), with a certificate that came in
 * time but that no pollReq collected: nobody received it, so it is on record as "expired_undelivered"
 * and withdrawn (revoked at the upstream where it can be). Logged as |event| unless NULL. 1 if
 * there was one, else 0 and nothing is done.
 */
int cmp_poll_withdraw_uncollected(struct gw_cmp_engine *e, struct cmp_txn *t, const char *tid,
                                  const char *event, int aborted);

/*
 * cmp_poll_withdraw_left: |t| (|aborted| as above), rebuilt from its shared record while the call another
 * instance made had no result there, closed here; |left| is the result that went with the record as it
 * ended (cmp_release_slot). A certificate in it came meanwhile: that instance put it beside the record,
 * still there, after this one leased it, and the record's end took it away. No instance can lease the
 * record in between, so nobody received it: on record as "expired_undelivered" and withdrawn here, once
 * (that instance, whose put succeeded, leaves it to this one). Nothing for a call made here (its completion
 * sees the close: cmp_poll_abandon) nor for a record read with its result (that one, the call's only one,
 * is dealt with as |t|'s). An end whose answers were all lost (left->unread) is read back later
 * (cmp_poll_reread_later). Cleans |left|. 1 if one was withdrawn.
 */
int cmp_poll_withdraw_left(struct gw_cmp_engine *e, struct cmp_txn *t, const char *tid,
                           struct gw_txn_result *left, int aborted);

/*
 * cmp_poll_reread_later: |left| (of gw_cluster_end_record) is of an end of |tid|'s record (hex) whose every
 * answer was lost (left->unread), the result it took |aborted|'s (as above) to withdraw: cmp_poll_reread
 * reads it back at the next ticks, for as long as Redis keeps it (left->unread_until_ms: past it, an end
 * not read back, or of which Redis keeps nothing, is logged lost), and withdraws a certificate in it as
 * cmp_poll_withdraw_left would have, through the upstream of that name whose CA issued it, |view| naming
 * the sender. Nothing when left->unread is 0. Any thread.
 */
void cmp_poll_reread_later(struct gw_cmp_engine *e, const struct cmp_txn *view, const char *upstream,
                           const char *tid, const struct gw_txn_result *left, int aborted);

/* cmp_poll_reread (the expiry tick): the ends of |e|'s shared state left by cmp_poll_reread_later, read back.
 */
void cmp_poll_reread(struct gw_cmp_engine *e);

/* cmp_poll_reread_drop: |cl| goes (the last engine is freed): the ends still to read back are logged lost. */
void cmp_poll_reread_drop(const struct gw_cluster *cl);

/*
 * cmp_poll_drop_uncollected: |t| closes (|aborted| as above) before a pollReq collected the
 * certificate of its deferred request, or while its call runs: nobody can receive the certificate,
 * so one still to come is withdrawn when it comes (cmp_poll_abandon), one that came now. NULL-safe on
 * t->pending.
 */
void cmp_poll_drop_uncollected(struct gw_cmp_engine *e, struct cmp_txn *t, const char *tid, int aborted);

/*
 * cmp_poll_closed logs and audits what is known of a deferred transaction closed without its client
 * (at shutdown, a certificate nobody collected stays valid and on record, and so does one its call still
 * running returns before the engine goes).
 */
void cmp_poll_closed(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, const char *event);

/* cmp_poll_release lets go of a reference to |p| (the last one frees it). NULL-safe. */
void cmp_poll_release(struct cmp_pending *p);

/* cmp_poll_busy tells whether upstream calls begun under |e| are still running. */
bool cmp_poll_busy(struct gw_cmp_engine *e);

/*
 * cmp_poll_detach (shutdown) waits until |until_ms| (gw_now_ms) for running calls, then cuts them loose,
 * ending the slots they hold (cmp_poll_hold_slot) in the table and the cluster, which outlive |e|.
 */
void cmp_poll_detach(struct gw_cmp_engine *e, uint64_t until_ms);

#endif
