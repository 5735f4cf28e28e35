/*
 * The certificate an answer carries to its client, until the answer leaves (exchange.h,
 * gw_cmp_undelivered), and the end of a transaction's slot.
 */
#ifndef GW_CMP_CARRY_H
#define GW_CMP_CARRY_H

#include <stddef.h>
#include "gateway/cmp/cmp_local.h"
#include "gateway/cmp/txn.h"

struct gw_txn_result; /* cluster.h */

/*
 * cmp_carry: the answer of |c|, built, carries t->issued (if |t| has one) to its client; c->rsp keeps
 * what withdrawing it takes should the answer never leave. |parked|: |t| waits for the certConf, so
 * it is closed then too. Before |t| is open to other workers, or freed (worker).
 */
void cmp_carry(struct cmp_call *c, const struct cmp_txn *t, int parked);

/*
 * cmp_release_slot ends the transaction slot of |tid| here and, with a shared state, on every instance,
 * where it counted under |quota| (cmp_quota_key): the shared record of the transaction |holder| reserved
 * (gw_cluster_end_record: NULL, this instance). |left| (NULL: not wanted) as gw_cluster_end_record fills
 * it: the deferred request's result that went with the shared record.
 */
void cmp_release_slot(struct gw_cmp_engine *e, const unsigned char *tid, size_t tid_len, const char *holder,
                      const char *quota, struct gw_txn_result *left);

/*
 * cmp_close_slot is cmp_release_slot for |t| closing for good (cmp_poll_abandon first), but a deferred
 * request whose call still runs keeps its slot, here and in the cluster's reservation, counted under
 * |quota| against cmp.max_transactions_per_identity until the call returns (cmp_poll_hold_slot): else
 * a client ending each waiting transaction would have more calls running at its CA than that cap.
 * Its shared record ends now either way, before the slot is left to the call (which may end it at once,
 * and only a release after the record's end gives the transactionID back), and a later message under its
 * transactionID finds none open.
 */
void cmp_close_slot(struct gw_cmp_engine *e, const struct cmp_txn *t, const unsigned char *tid,
                    size_t tid_len, const char *quota, struct gw_txn_result *left);

/*
 * cmp_txn_return puts |txn|, checked out for the message |c| that does not end it, back where it was
 * open; if the answer carrying its certificate was lost meanwhile (gw_cmp_undelivered), it is closed
 * instead: that certificate is withdrawn.
 */
void cmp_txn_return(struct cmp_call *c, struct gw_txn *txn);

#endif
