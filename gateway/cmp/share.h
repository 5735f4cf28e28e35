/*
 * Transaction records for the instances of a cluster (share.c; docs/operations.md, "Several
 * instances"). Without a "mac_key_file" nothing is shared: a transaction goes on where it began.
 */
#ifndef GW_CMP_SHARE_H
#define GW_CMP_SHARE_H

#include <stddef.h>
#include <time.h>
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/cmp_local.h"

/*
 * cmp_share_txn writes the record of |t|, parked for |ttl| seconds after the answer whose senderNonce
 * is t->nonce: its certificate awaits a certConf, or its deferred request a pollReq (whose result is
 * then written beside the record when the call returns). On failure |t| goes on here only (logged).
 */
void cmp_share_txn(struct cmp_call *c, struct cmp_txn *t, time_t ttl);

/*
 * cmp_reshare rewrites the record of shared |t| (its lease held) after an answer that left it open (a
 * pollRep, or the certificate released): its senderNonce t->nonce, its certificate, one step on.
 */
void cmp_reshare(struct cmp_call *c, struct cmp_txn *t);

/*
 * cmp_share_take leases to this instance the record of the transaction |msg| (of |c|) continues (as
 * gw_cluster_take_record, into |rec|), but only once |msg| is found able to pass the checks of its
 * sender, its TLS client (the record's) and its pinned signer, from the record's request
 * (cmp_signed_like), to come on a path of its role (cmp_check_path), and to answer the record's senderNonce
 * (a captured message replayed does not): anyone may name a transactionID, and neither the replay of its
 * request here nor the lease, which keeps its client waiting, may be had for that. gw_cluster_take_record's
 * answers, or GW_ERR_FORBIDDEN refused with |r|; CMP_SHARE_OTHER_CLIENT refused with |r| as from another
 * sender or TLS client than the record's, found before any protection was checked (an error message is then
 * authenticated first: a forgery's failure counts against its address). A message naming a PBM reference the
 * running configuration lacks (cmp_call.pbm_gone) is refused as check_signer refuses it (GW_ERR_FORBIDDEN)
 * unless it comes from the record's sender over its TLS client; then, on a record that binds no TLS client
 * certificate, GW_ERR_NOT_FOUND ("no open transaction": it cannot be replayed).
 *
 * A reload of this instance may have taken from the sender what its request was allowed with: its
 * role, the secret of its PBM reference (changed, or the reference deleted), the trust its signer
 * chained to, its authorization. Then the request may not replay here, and a secret this instance
 * never had cannot be checked; but a message of the record's sender, answering its senderNonce, over
 * the TLS client certificate the record binds (which TLS authenticated: no other client has it) and,
 * when signed, with the signer's key, is the transaction's own. Its sender is held to the running
 * configuration as a single gateway holds it (cmp_check_record, as cmp_check_current), and a refusal
 * closes it: the record ended, its certificate on record and withdrawn through the upstream
 * cmp_share_upstream names; CMP_SHARE_RELOADED with |r| the refusal its client gets, which does not
 * count against its address (one that cannot be known now, systemUnavail, is GW_ERR_FORBIDDEN and
 * the transaction stays open). A record bound to no TLS client certificate never is. Its own error
 * message is not refused (a single gateway holds none to its running configuration): it closes the
 * transaction as its client asked, the certificate on record as rejected_by_client (or expired_undelivered)
 * and withdrawn the same way; CMP_SHARE_ABORTED, |r| refusing nothing (fail_info -1): answer a pkiconf.
 * The extraCerts of |msg| are taken (cmp_take_extra_certs) only once there is a record: CMP_SHARE_NOT_DER
 * when they do not decode, |c| answered.
 */
enum cmp_share_rc {
    CMP_SHARE_RELOADED = 1, /* refused by this instance's configuration, closed */
    CMP_SHARE_ABORTED,      /* its own error message closed it */
    CMP_SHARE_OTHER_CLIENT, /* refused: another sender or TLS client */
    CMP_SHARE_NOT_DER,      /* answered: its extraCerts, taken once the record was read, do not decode */
};
int cmp_share_take(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct gw_txn_record *rec,
                   struct cmp_refusal *r, char *err);

/* Another message of the transaction holds it, on this instance or another (which is no matter of the
 * client's). */
#define TEXT_TXN_BUSY "another message of this transaction is being answered now; retry in a moment"

/*
 * cmp_share_refused: the answer, in |r|, to a message whose transaction's record this instance could not
 * lease (|rc| of gw_cluster_take_record, |err|): another instance holds it, or Redis cannot be asked
 * (logged). 1, or 0 for any other |rc|.
 */
int cmp_share_refused(struct cmp_call *c, int rc, const char *err, struct cmp_refusal *r);

/*
 * cmp_share_upstream: the upstream of |e| that answers for the transaction of |rec|, rebuilt here
 * (cmp_status_withdrawer): the one whose CA issued the certificate of |rec| (the one its client got,
 * else a deferred request's result beside it), the record's own first, whatever a reload since
 * renamed or repointed; NULL if none has that CA. Without a certificate yet, the record's own (NULL
 * if |e| has none of that name). Every withdrawal of the rebuilt transaction goes through it.
 */
struct gw_upstream *cmp_share_upstream(const struct gw_cmp_engine *e, const struct gw_txn_record *rec);

/*
 * cmp_share_expired records the expiry of |t|, rebuilt from its record |rec| (t->up as
 * cmp_share_upstream), as log_closed would; a certificate no pollReq collected is withdrawn.
 */
void cmp_share_expired(struct gw_cmp_engine *e, struct cmp_txn *t, const char *tid,
                       const struct gw_txn_record *rec);

/*
 * cmp_share_unreplayed records the expiry of the record |rec| that cannot be replayed here (its role
 * is not in the running configuration, or its request does not pass there): a certificate no pollReq
 * collected is on record as not delivered and withdrawn as by cmp_share_expired (through the upstream
 * cmp_share_upstream names); one its client got stays valid, logged.
 */
void cmp_share_unreplayed(struct gw_cmp_engine *e, const char *tid, const struct gw_txn_record *rec);

#endif
