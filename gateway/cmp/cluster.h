/*
 * What several gateway instances share ("cmp.state": "redis"; docs/operations.md, "Several
 * instances"): the transactionIDs seen (the replay check) and the transactions open, with the
 * per-identity caps, in one Redis, so that a request replayed to another instance is refused and
 * a cap holds across instances; with a "mac_key_file", the records from which any instance
 * continues a transaction another began. Each step is one Lua script, atomic in Redis.
 *
 * Thread-safe: each thread has its own connection, opened on first use and again after an error.
 * Every call that cannot reach Redis returns GW_ERR_UNAVAILABLE with a one-line reason: the
 * engine then refuses the request (systemUnavail) rather than serve it unchecked.
 */
#ifndef GW_CMP_CLUSTER_H
#define GW_CMP_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "gateway/cmp/conf.h"
#include "base/limits.h"
#include "base/log.h"

struct gw_cluster;

/*
 * gw_cluster_new connects to the Redis of |conf| (copied) and checks that it keeps what it is given:
 * maxmemory-policy noeviction (an evicted replay key reopens a replay) and appendonly yes (a
 * restart must not forget them). NULL with |err| when it cannot, or when cmpgw was built without
 * hiredis.
 */
struct gw_cluster *gw_cluster_new(const struct gw_state_conf *conf, char *err);
void gw_cluster_free(struct gw_cluster *cl);

/* A message's messageTime, and the seconds it may lag and lead Redis's clock (gw_cluster_seen) */
struct gw_cluster_msg_time {
    time_t at;
    time_t behind, ahead;
    time_t elapsed; /* s since the instance read its clock for the request: it may lag as much further */
    long long off;  /* set when refused: |at| less Redis's clock */
};

/*
 * gw_cluster_seen records |tid| with |nonce| for |ttl| seconds, as the replay cache does across
 * instances: 0 if new; GW_ERR_TIME, nothing recorded, when |mt| (NULL: the message has no messageTime)
 * is outside its window on Redis's clock (mt->off set); GW_ERR_REPLAY (same nonce), GW_ERR_EXISTS
 * (another nonce); GW_ERR_LIMIT when |max_recent| live ones count under |quota| (the sender's share:
 * cmp_quota_key); GW_ERR_UNAVAILABLE with |err|. |ttl| must exceed mt->behind + mt->elapsed + mt->ahead:
 * the record then outlives the window on Redis's clock, whatever the instances' clocks say.
 */
int gw_cluster_seen(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                    const unsigned char *nonce, size_t nonce_len, struct gw_cluster_msg_time *mt,
                    const char *quota, time_t ttl, unsigned max_recent, char *err);

/*
 * gw_cluster_reserve marks |tid| open under |quota| for |ttl| + GW_STATE_GRACE seconds on Redis's clock
 * (as every count of a share: an instance's own clock plays no part): 0,
 * GW_ERR_EXISTS (open on any instance), GW_ERR_LIMIT (|max_open| count under |quota| already),
 * GW_ERR_UNAVAILABLE with |err|.
 */
int gw_cluster_reserve(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *quota,
                       time_t ttl, unsigned max_open, char *err);

/*
 * gw_cluster_release ends this instance's reservation of |tid| (best effort: it expires anyway), counted
 * under |quota| no more; while a record, result or lease of |tid| lives, the reservation stays until it
 * expires (gw_cluster_put_record). This instance's: the one it made, or that of a record it ended
 * (gw_cluster_end_record, gw_cluster_drop_record), whichever instance made it. One another instance
 * holds is left as it is, counted as it is: this one's ran out, and the other reserved |tid| for a
 * transaction of its own. Not sent while the last failure found Redis unreachable; sent while Redis
 * refuses writes (maxmemory: it takes this one, which frees memory).
 */
void gw_cluster_release(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *quota);

/*
 * Transaction records ("mac_key_file"): what lets another instance continue a transaction whose
 * certificate this one issued: the request as the client sent it, the certificate, the senderNonce
 * of the answer the client got, the role and the upstream. Authenticated with HMAC-SHA256 under
 * the key every instance shares, so that what Redis holds cannot make an instance accept a
 * certificate no instance issued.
 *
 * A deferred request (docs/polling.md) has a record without a certificate while its upstream call
 * runs on the instance that made it; that instance writes the call's result next to the record
 * (gw_cluster_put_result) after the "issued" line is on its audit log, and whichever instance a
 * pollReq reaches delivers it. Each answer that changes the senderNonce the client holds (a
 * pollRep, the certificate's release) rewrites the record and bumps |step|: a copy of the
 * transaction an instance kept in memory is current only while its step is the record's.
 */
struct gw_txn_result {
    bool present;                /* the call has returned */
    unsigned char *cert, *chain; /* DER; the chain's certificates back to back */
    size_t cert_len, chain_len;
    int status, fail_info, modified; /* as struct gw_sign_result's */
    int recorded; /* the "issued" record of |cert| is on disk; else whoever collects it withdraws it */
    char reason[GW_ERR_LEN];
    /* gw_cluster_end_record: the answers of both its tries were lost, Redis may have run it: the end's
       id, for gw_cluster_reread_end; else 0 */
    unsigned long long unread;
    /* with |unread|: until when (gw_now_ms) Redis keeps what the end took at least, GW_STATE_TOOK_SECS from
       before its first try went out (Redis ran it after that, if at all) */
    uint64_t unread_until_ms;
    /* with |unread|: the shared state's epoch read before its first try went out ("": none read), for
       gw_cluster_reread_end to tell what Redis lost since from an end that never ran */
    char unread_epoch[GW_STATE_EPOCH_LEN];
};

struct gw_txn_record {
    unsigned char *req, *cert; /* DER; no certificate while a deferred request waits */
    size_t req_len, cert_len;
    unsigned char nonce[GW_MAX_NONCE_LEN];
    size_t nonce_len;
    char role[GW_MAX_NAME_LEN + 1];
    char upstream[GW_MAX_NAME_LEN + 1];
    /* the TLS client its messages must come from (cmp_call.tls_client); "" in a record of an older
       instance, which bound none (docs/operations.md, "Upgrading a cluster") */
    char tls_client[GW_TLS_CLIENT_LEN];
    unsigned step;          /* bumped by every rewrite */
    long long requested_at; /* when the request came (s since the epoch): its plan is made for then */
    long long deadline_ms;  /* a deferred request: when its upstream call gives up (ms since the epoch) */
    long long check_after;  /* a deferred request: the checkAfter of its pollReps (s) */
    struct gw_txn_result result; /* filled by gw_cluster_take_record and the expiry claim */
    /* gw_cluster_take_record, gw_cluster_read_record: the instance that holds the transactionID's
       reservation, whose transaction the record is ("": none read), for the end of a copy rebuilt from it
       (gw_cluster_drop_record) */
    char holder[GW_STATE_OWNER_LEN];
};

/* Whether |cl| keeps transaction records (a "mac_key_file" is configured). NULL-safe. */
bool gw_cluster_keeps_records(const struct gw_cluster *cl);

/*
 * gw_cluster_put_record stores |rec| for |tid| until |ttl| + GW_STATE_GRACE seconds from now, its
 * deadline (|ttl| from now, on Redis's clock) among those gw_cluster_claim_expired looks at, and keeps
 * |tid| reserved (gw_cluster_reserve) for as long, counted as open under |quota| as long: no instance
 * opens a transaction under it while the record may be continued. 0; GW_ERR_EXISTS when another instance
 * reserved |tid| meanwhile (this instance's reservation ran out during the upstream call): nothing is
 * written; GW_ERR_UNAVAILABLE; each with |err|.
 */
int gw_cluster_put_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *quota,
                          const struct gw_txn_record *rec, time_t ttl, char *err);

/*
 * gw_cluster_update_record rewrites |tid|'s record as |rec| (its step bumped by the caller), keeping
 * its deadline, if this instance still holds its lease: 0; GW_ERR_NOT_FOUND (it is gone),
 * GW_ERR_BUSY (the lease ran out), GW_ERR_UNAVAILABLE, each with |err|.
 */
int gw_cluster_update_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                             const struct gw_txn_record *rec, char *err);

/*
 * gw_cluster_put_result stores a deferred request's result next to its record, for |ttl| +
 * GW_STATE_GRACE seconds, |tid| reserved for as long at least: 1, 0 when the record is gone (the
 * transaction was closed: nobody will collect it); with |err|, GW_ERR_UNAVAILABLE when it was certainly
 * not written (Redis not reached: the script never went out whole), GW_ERR_IO when it may have been
 * (sent, and the answer an error, lost or late). 1 also while another instance holds the record to
 * close the transaction: the record's end (gw_cluster_end_record) hands the result to that instance,
 * which withdraws it.
 */
int gw_cluster_put_result(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                          const struct gw_txn_result *res, time_t ttl, char *err);

typedef void (*gw_cluster_expired_fn)(void *arg, const unsigned char *tid, size_t tid_len,
                                      const struct gw_txn_record *rec);

/*
 * gw_cluster_claim_expired takes up to GW_STATE_CLAIM_BATCH records whose deadline passed
 * GW_STATE_CLAIM_SLACK seconds ago on Redis's clock and that no instance closed or holds, each for
 * exactly one caller across the cluster, and hands each (verified) to |cb|: the expiry of a
 * transaction whose own instance is gone is recorded once. A claim whose answer is lost once Redis
 * may have run it is asked again under its id, at once and at the next calls (GW_STATE_TOOK_SECS), and
 * Redis answers what it took: the records it took out are handed over all the same. |now| paces its
 * failure logs. Returns how many. Its one caller's thread only.
 */
int gw_cluster_claim_expired(struct gw_cluster *cl, time_t now, gw_cluster_expired_fn cb, void *arg);

/*
 * gw_cluster_take_record leases |tid|'s record to this instance (GW_STATE_LEASE_SECS, |tid| reserved
 * for as long at least: no transaction under |tid| opens while the lease's holder may rewrite or end
 * the record) and fills |out|, with the result of a deferred request if there is one (free with
 * gw_txn_record_cleanup): 0; GW_ERR_NOT_FOUND (no record); GW_ERR_BUSY (another instance holds it);
 * GW_ERR_INVAL (it does not verify); GW_ERR_TIMEOUT (its deadline, the one gw_cluster_claim_expired reads,
 * has passed on Redis's clock: the transaction has expired, and is not leased, so that the claim takes it
 * and records its expiry once; this without a round trip of its own); GW_ERR_UNAVAILABLE with |err|.
 */
int gw_cluster_take_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           struct gw_txn_record *out, char *err);

/*
 * gw_cluster_read_record is gw_cluster_take_record without the lease (never GW_ERR_BUSY): what a
 * message for the transaction is checked against before it may hold the record.
 */
int gw_cluster_read_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           struct gw_txn_record *out, char *err);

/* gw_cluster_unlease gives a taken record back (the transaction goes on elsewhere or later). */
void gw_cluster_unlease(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len);

/*
 * gw_cluster_drop_record ends |tid|'s record of the transaction reserved by |holder| (NULL or "": this
 * instance; a copy rebuilt from another's record: its gw_txn_record.holder): 1 if this call removed it, 0
 * if it was gone (another instance closed the transaction: an expiry is then not this instance's to
 * record), also when the transactionID's reservation is another's now (that transaction's record ran out,
 * and another instance reserved the transactionID for one of its own: its record stays), GW_ERR_BUSY
 * if another instance holds its lease (it is answering it now: the record stays), or
 * GW_ERR_UNAVAILABLE, at once while Redis is known to be unreachable (nothing sent: the record ends with
 * its TTL). An answer lost once Redis may have run the end is asked for once more, and Redis
 * answers it as it would have (what an end took is kept for that: GW_STATE_TOOK_SECS).
 */
int gw_cluster_drop_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           const char *holder);

/*
 * gw_cluster_end_record is gw_cluster_drop_record for a transaction that ended (closed, or its
 * certificate withdrawn): the record goes even while another instance holds its lease, so that no
 * instance continues it. That lease is left to its holder, whose rewrite then finds the record gone
 * (GW_ERR_NOT_FOUND). Never GW_ERR_BUSY. A deferred request's result beside the record goes with it,
 * in the same step: unless |left| is NULL, it is handed back there (verified; present false if there
 * was none, or on failure; free with gw_txn_result_cleanup), for the caller to withdraw a certificate
 * the instance that made the call put there while this one was closing the transaction. A retry whose
 * first try's answer was lost, finding nothing kept and the shared state's epoch changed since the first
 * try went out (Redis flushed, or restarted without its data), logs txn_end_unread: what that try took
 * is unknown.
 */
int gw_cluster_end_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *holder,
                          struct gw_txn_result *left);

/*
 * gw_cluster_reread_end reads back what this instance's end |id| of |tid|'s record took (left->unread of
 * gw_cluster_end_record, both its answers lost; |epoch| its left->unread_epoch), while it is kept
 * (GW_STATE_TOOK_SECS; no later end of |tid|, here or on another instance, touches it): 1 with |left|
 * filled as the end would have, present or not; 0 when nothing is kept under |id| and Redis's epoch is
 * still |epoch| (that end never ran: the record, and a result beside it, are still there for their
 * expiry; or it is gone); GW_ERR_IO with |err| when nothing is kept and the epoch changed or went (Redis
 * was flushed, or restarted without its data, since the end went out: what it took is unknown, and asking
 * again tells no more); GW_ERR_UNAVAILABLE with |err|, at once while Redis is known to be unreachable
 * (nothing sent: its caller, the expiry tick on the main thread, asks again at a later tick). One round
 * trip; it touches nothing but that end's own.
 */
int gw_cluster_reread_end(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                          unsigned long long id, const char *epoch, struct gw_txn_result *left, char *err);

void gw_txn_record_cleanup(struct gw_txn_record *rec);
void gw_txn_result_cleanup(struct gw_txn_result *res);

/*
 * A certificate is named by two ids (hex, revoked.c): |id| with its CA's key identifier, |plain| by issuer
 * name and serial alone (the same for a certificate that names no CA key), as an earlier version named it.
 *
 * gw_cluster_put_revoked: the certificate named |id| and |plain| was revoked through this instance; every
 * instance refuses it until |not_after| (its expiry, seconds since the epoch) and GW_STATE_GRACE on Redis's
 * clock (an instance whose clock lags Redis's by that much still takes it as valid), an earlier version by
 * |plain|: 0; 1, nothing written, when that time has passed; GW_ERR_LIMIT when |max| unexpired ones are kept
 * already, counted on Redis's clock (an instance's own plays no part in any of these: |not_after| is sent
 * even where this instance's clock says it passed), or GW_ERR_UNAVAILABLE, each with |err|.
 */
int gw_cluster_put_revoked(struct gw_cluster *cl, const char *id, const char *plain, time_t not_after,
                           uint32_t max, char *err);

/*
 * gw_cluster_revoked: whether an instance revoked the certificate named |id| and |plain|, kept in the
 * revoked set by |id|, or by |plain| where an earlier version (or a certificate without a CA key) wrote
 * it, or by a mark left "done" (gw_cluster_unmark_revoking) while that lives: 1, 0, or GW_ERR_UNAVAILABLE
 * with |err|. One round trip.
 */
int gw_cluster_revoked(struct gw_cluster *cl, const char *id, const char *plain, char *err);

/*
 * gw_cluster_mark_revoking: the certificate named |id| and |plain| is to be revoked through this instance
 * (marked by |plain|, as an earlier version marks it), which holds its own mark of it (its revocations of
 * one certificate run one at a time). 0: marked
 * across the cluster for |ttl_ms| at most (should its end never reach Redis); 1: an instance revoked it
 * (gw_cluster_put_revoked, or a mark it left "done": gw_cluster_unmark_revoking), nothing marked;
 * GW_ERR_BUSY: another instance's revocation of it holds the mark; GW_ERR_UNAVAILABLE with |err|, also for
 * an answer the script never gives (not taken as either).
 */
int gw_cluster_mark_revoking(struct gw_cluster *cl, const char *id, const char *plain, uint32_t ttl_ms,
                             char *err);

/*
 * gw_cluster_unmark_revoking ends this instance's mark of |id| (a |plain| one), after the revocation's
 * outcome is in (with gw_cluster_put_revoked): a compare-and-delete, which leaves another instance's mark
 * (this one's ran out) in place. With |unshared| (the certificate was revoked, but gw_cluster_put_revoked
 * failed) the mark is not deleted but left "done" until it expires: gw_cluster_mark_revoking answers 1 to
 * whoever waited for it, which would find no revocation otherwise and send one again. Best effort: a mark not
 * ended expires.
 */
void gw_cluster_unmark_revoking(struct gw_cluster *cl, const char *id, bool unshared);

/*
 * gw_cluster_status: 0 while Redis answers: the PING sent every GW_STATE_PING_SECS (a write) went through,
 * and no command of any thread failed since; else GW_ERR_UNAVAILABLE with the last reason in |why|.
 * NULL-safe (0).
 */
int gw_cluster_status(struct gw_cluster *cl, char *why, size_t cap);

/*
 * gw_cluster_unavailable_due: whether the shared_state_unavailable line of a request refused for a call
 * of |cl| that returned GW_ERR_UNAVAILABLE goes out now. Every request meets an outage, so its lines are
 * paced by it (gw_log_outage_due): one a GW_LOG_OUTAGE_SECS, the first at once unless an earlier
 * outage's last line went out within the interval, |held| the count of those held back since the last one
 * out (its "suppressed"). The next PING that goes through (it writes: a lookup Redis answers proves
 * nothing of the writes a request makes after it) ends the outage, logged shared_state_recovered with the
 * count held back since. NULL |cl|: always, held "0". Thread-safe.
 */
bool gw_cluster_unavailable_due(struct gw_cluster *cl, char held[GW_LOG_HELD_LEN]);

#endif
