/*
 * The audit records a transaction leaves (docs/audit.md), written to the audit log of
 * gateway/cmp/audit.h.
 */
#ifndef GW_CMP_RECORD_H
#define GW_CMP_RECORD_H

#include <stdbool.h>
#include <stdint.h>
#include <openssl/x509.h>
#include "gateway/cmp/audit.h"
#include "gateway/cmp/cmp_local.h"
#include "upstream/upstream.h"

/* cmp_audit_rec_init fills |r| with the fields every record of |t| carries. */
void cmp_audit_rec_init(struct gw_audit_rec *r, const struct cmp_txn *t, const char *tid, const char *event,
                        const char *status);

/*
 * cmp_audit_view copies into |v| (zeroed first) what the records of |t| need once |t| is gone: its
 * audit fields, and its role and upstream (borrowed: their engine must live as long as |v|).
 */
void cmp_audit_view(struct cmp_txn *v, const struct cmp_txn *t);

/* cmp_audit_write appends |r|, fsync'd with |sync|: 0, or GW_ERR_IO (logged). */
int cmp_audit_write(struct gw_cmp_engine *e, const struct gw_audit_rec *r, int sync);

/* cmp_audit_refusal writes the "rejected" record of a request without one, its outcome as status. */
void cmp_audit_refusal(struct cmp_call *c, const struct cmp_txn *t);

/* cmp_audit_cert writes a record about |cert| (may be NULL): its subject, names and key fill audit_fields. */
int cmp_audit_cert(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, const char *event,
                   const char *status, X509 *cert, int sync);

/*
 * cmp_withdraw: a certificate that exists at the CA but must not be used (outside policy, unusable,
 * unaudited, rejected by the client, late) is revoked at t->up where it can be, and on record either
 * way ("revoked" or "revoke_failed"). It never waits for the upstream (any thread, also the main one
 * and an upstream's transfer thread): it queues a copy of |t|'s audit fields and tid and a reference
 * to |cert| (the caller keeps its own) for |e|'s withdrawal thread, and returns. The record saying why
 * the certificate is withdrawn is the caller's, written before. When the job cannot be queued (queue
 * full, out of memory, |e| stopping), "revoke_failed" is written at once with the serial and why.
 * t->up must live until |e| is freed (an upstream of |e|'s generation); |e| waits for the job.
 * |cert| passed the checks of what an upstream returned against the plan of |tid|'s request (it was
 * released, or would have been); one the gateway let through lately in another transaction
 * (cmp_recent_elsewhere) is that transaction's, which its client holds: it is put on record
 * ("not_withdrawn", why) and logged cert_not_withdrawn with that transaction, not revoked.
 */
void cmp_withdraw(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, X509 *cert, int reason);

/*
 * cmp_withdraw_returned: as cmp_withdraw, for a certificate an upstream returned that did not pass those
 * checks (or was never checked): withdrawn only if it certifies the key of |plan| besides (NULL: none
 * known, then it does not). One for another key may be another holder's certificate (a CA answering
 * with the wrong serial): it is put on record ("not_withdrawn", why) and logged, not revoked; the
 * caller's refusal stands.
 */
void cmp_withdraw_returned(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, X509 *cert,
                           const struct gw_cert_plan *plan, int reason);

/*
 * cmp_withdraw_answered: the certificate of an upstream answer |res| that was refused (upstream.h),
 * withdrawn as cmp_withdraw_returned says. One the adapter rejected to its CA already
 * (res->rejected_to_ca) is put on record as such ("rejected_to_ca") and logged: the CA confirmed the
 * rejection, and revokes it or never publishes it. Any thread; never waits for the upstream.
 */
void cmp_withdraw_answered(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid,
                           const struct gw_sign_result *res, const struct gw_cert_plan *plan, int reason);

/*
 * The engine's withdrawal queue: cmp_withdrawals_init gives |e| one (0; its thread starts with the
 * first job), or none (GW_ERR_NOMEM: out of memory, or its condition cannot wait on CLOCK_MONOTONIC).
 * cmp_withdrawals_busy: jobs are queued or running. cmp_withdrawals_settle waits until none is (tests).
 * cmp_withdrawals_set_backoff: the wait before a job's second attempt, |ms| instead of
 * GW_WITHDRAWAL_BACKOFF_MS (tests). cmp_withdrawals_set_over_cap: GW_MAX_WITHDRAWALS past the keys' shares,
 * |cap| instead (tests). cmp_withdrawals_set_record_ms: what a drain leaves for the record of a
 * call it ended, |ms| instead of GW_WITHDRAWAL_RECORD_MS (tests).
 * cmp_withdrawals_drain (engine free) stops taking jobs and waits for them until |until_ms|
 * (gw_now_ms), never longer: a stop gives all its engines one deadline, not one each. A job waiting to
 * ask its upstream again is asked a last time at once only if more is left than its failed attempt took.
 * A call begun during the drain (that last attempt, a job taken from the queue) ends
 * GW_WITHDRAWAL_RECORD_MS before |until_ms| (gw_upstream_revoke_until), and one cut short there is on
 * record by its own thread, which then ends: the drain need not leave |e| to it. One at its upstream
 * when the drain begins gets an end then, which its call reads as it runs (gw_upstream_revoke_by), early
 * enough by GW_UPSTREAM_END_CHECK_MS to be cut short and on record the same way; one whose wait to begin
 * outlasted the end for calls is not sent, and on record as not revoked.
 * Then every withdrawal not done gets "revoke_failed" and a log line with its serial and upstream, the
 * one whose upstream has not answered too. false: that one still runs, and |e| with all it uses must be
 * left to the process exit. NULL-safe on e->withdrawals.
 */
int cmp_withdrawals_init(struct gw_cmp_engine *e);
/*
 * cmp_withdrawals_owed: how many withdrawals of certificates of transactions counted under |quota|
 * (cmp_quota_key) are queued, running or waiting past the key's share of the queue on |e|, counted up
 * to GW_MAX_WITHDRAWALS_PER_KEY + 1 at most.
 * A withdrawal is never refused for its key: new issuing requests of that key are (issue.c).
 */
size_t cmp_withdrawals_owed(struct gw_cmp_engine *e, const char *quota);
/* cmp_withdrawals_crowded: GW_MAX_WITHDRAWALS wait past their keys' shares of |e|'s queue; one more fails. */
bool cmp_withdrawals_crowded(struct gw_cmp_engine *e);
bool cmp_withdrawals_busy(struct gw_cmp_engine *e);
void cmp_withdrawals_settle(struct gw_cmp_engine *e);
void cmp_withdrawals_set_backoff(struct gw_cmp_engine *e, uint64_t ms);
void cmp_withdrawals_set_record_ms(struct gw_cmp_engine *e, uint64_t ms);
void cmp_withdrawals_set_over_cap(struct gw_cmp_engine *e, size_t cap);
bool cmp_withdrawals_drain(struct gw_cmp_engine *e, uint64_t until_ms);

/* cmp_audit_closed writes the record of |t| closing with its certificate issued: confirmed, or
 * rejected and withdrawn (the certConf or pollReq closing it does not confirm it). */
void cmp_audit_closed(struct cmp_call *c, struct cmp_txn *t);

/*
 * cmp_withdraw_undelivered: the certificate |t| issued or released in the request |c| when its
 * answer did not leave as the ip/cp/kup carrying it (OpenSSL could not build or protect it, or it
 * could not be encoded): on record ("rejected"), withdrawn, and dropped from |t|. 1 if it was so.
 */
int cmp_withdraw_undelivered(struct cmp_call *c, struct cmp_txn *t);

#endif
