/*
 * Internal sharing of the CMP engine: engine.c (decode, dispatch, the run step and the rewriting of
 * OpenSSL's errors) and engine_rebuild.c (a transaction another instance began, rebuilt from its
 * record in the shared state: to continue it here, or to record its expiry).
 */
#ifndef GW_CMP_ENGINE_LOCAL_H
#define GW_CMP_ENGINE_LOCAL_H

#include <stddef.h>
#include <openssl/cmp.h>
#include "gateway/cmp/cmp_local.h"

struct gw_txn;
struct gw_txn_record;

/* ---- engine.c ---- */

/* Runs |msg| through |t|'s SRV_CTX for call |c|; |verified|: its signature was checked already. */
OSSL_CMP_MSG *cmp_run(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *msg, int verified);

/* Whether |body| is an ip, cp or kup. */
int cmp_is_cert_response(int body);

/* Frees what a call holds once it is answered: the header it read, the requested key it decoded. */
void cmp_call_cleanup(struct cmp_call *c);

/* ---- engine_rebuild.c ---- */

/*
 * gw_cluster_expired_fn of engine |arg|: records the expiry of a shared transaction whose deadline
 * passed on no instance, or of a deferred request, from its record.
 */
void cmp_record_orphan(void *arg, const unsigned char *tid, size_t tid_len, const struct gw_txn_record *rec);

/* The transaction of |rec|, whose lease this instance holds (given back when it cannot be rebuilt). */
struct gw_txn *cmp_rebuild_from(struct cmp_call *c, struct gw_txn_record *rec);

/*
 * The transaction of |c| another instance began, taken from its record for |msg| (cmp_share_take,
 * whose result is *rcp); NULL when there is nothing to continue, with |r| set when the answer is
 * other than "no open transaction".
 */
struct gw_txn *cmp_rebuild(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r, int *rcp);

#endif
