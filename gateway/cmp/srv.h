/* One OSSL_CMP_SRV_CTX per transaction, and the callbacks that continue a transaction (srv.c). */
#ifndef GW_CMP_SRV_H
#define GW_CMP_SRV_H

#include "gateway/cmp/cmp_local.h"

/*
 * cmp_txn_new makes the transaction state of the request |c|: a context with the gateway's signer
 * and either the PBM secret or the role's trust; with |refusal|, neither: a context that can
 * validate nothing, only answer with an error. NULL on failure.
 */
struct cmp_txn *cmp_txn_new(struct cmp_call *c, int refusal);

/* cmp_txn_free frees a struct cmp_txn (void *: the transaction table's free_data). NULL-safe. */
void cmp_txn_free(void *txn);

/*
 * cmp_process is OSSL_CMP_SRV_process_request on |t|'s context. |verified|: |msg|'s signature was
 * verified already against the signer pinned on this context (by the engine just before, for a
 * certConf or pollReq; by OpenSSL in the first pass of a suspended request with the same signer),
 * and OpenSSL does not verify it again (docs/design.md O12). A PBM-protected message is verified
 * again either way.
 */
OSSL_CMP_MSG *cmp_process(struct cmp_txn *t, const OSSL_CMP_MSG *msg, int verified);

/*
 * cmp_txn_set_nonce makes |nonce| the senderNonce of the last answer |t|'s client got (a transaction
 * rebuilt from its record): its next message must answer it. 1 on success.
 */
int cmp_txn_set_nonce(struct cmp_txn *t, const unsigned char *nonce, size_t nonce_len);

/*
 * cmp_check_nonce: 0 if |msg| answers the last answer of |t| (its recipNonce is that answer's
 * senderNonce), else 1 with |r| (badRecipientNonce). A replayed or out-of-order certConf, pollReq or
 * error message is refused so, before OpenSSL sees it: OpenSSL would close the transaction.
 */
int cmp_check_nonce(const struct cmp_txn *t, const OSSL_CMP_MSG *msg, struct cmp_refusal *r);

/* cmp_log_capture_begin: OpenSSL's diagnostics on this thread go to |c| until cmp_log_capture_end. */
void cmp_log_capture_begin(struct cmp_call *c);
/* cmp_log_capture_end stops the capture of cmp_log_capture_begin. */
void cmp_log_capture_end(void);

#endif
