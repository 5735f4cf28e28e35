/*
 * Upstream calls that do not hold a worker (docs/design.md D24). The first pass of a request runs
 * every check, records the intent and submits the sign call; if the upstream does not complete it
 * at once, the pass ends without an answer and the request is suspended with its transaction.
 * When the call completes, the caller runs the request again on a worker: the second pass
 * authenticates it again on a fresh context (the same signer as the first) and delivers the result
 * through the same checks as a call that completed at once, without a second replay check,
 * reservation or record of intent.
 */
#ifndef GW_CMP_SUSPEND_H
#define GW_CMP_SUSPEND_H

#include "gateway/cmp/cmp_local.h"
#include "upstream/upstream.h"

/*
 * cmp_suspend_sign submits |req| for |t|: 0 with |out| filled (the call completed at once, or was
 * refused), or 1: the call runs on, c->suspend holds it, and the pass must end (cmp_suspend_park).
 * (worker)
 */
int cmp_suspend_sign(struct cmp_call *c, struct cmp_txn *t, const struct gw_sign_req *req,
                     struct gw_sign_result *out);

/*
 * cmp_suspend_park hands the suspended call and |t| (its plan, upstream and slot; freed with
 * |t_free| once the second pass ends) to c->rsp.
 */
void cmp_suspend_park(struct cmp_call *c, struct cmp_txn *t, void (*t_free)(void *t));

/* cmp_suspend_keep_msg: the request as the first pass decoded it (taken) goes with |s|. */
void cmp_suspend_keep_msg(struct gw_cmp_suspended *s, OSSL_CMP_MSG *msg);

/* cmp_suspend_begin: the second pass of a suspended request takes it over from c->rsp. */
void cmp_suspend_begin(struct cmp_call *c);

/* cmp_suspend_msg: the second pass's request, decoded by the first (the caller's to free). */
OSSL_CMP_MSG *cmp_suspend_msg(struct cmp_call *c);

/* cmp_suspend_first: the first pass's transaction of a second pass (its signer, its plan); else NULL. */
const struct cmp_txn *cmp_suspend_first(const struct cmp_call *c);

/*
 * cmp_suspend_take moves the call's result into |out| (once) and sets |*t1| to the first pass's
 * transaction (its plan and upstream). 0, or -1 if it was taken already.
 */
int cmp_suspend_take(struct cmp_call *c, struct gw_sign_result *out, const struct cmp_txn **t1);

/*
 * cmp_suspend_end closes the second pass: a certificate it did not deliver (the request was refused
 * before the callback, e.g. its signer no longer validates) is recorded and withdrawn at the CA.
 */
void cmp_suspend_end(struct cmp_call *c);

#endif
