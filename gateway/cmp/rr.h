/*
 * Revocation (rr, RFC 9483 §4.2): OpenSSL's rr callback (rr.c).
 */
#ifndef GW_CMP_RR_H
#define GW_CMP_RR_H

#include <openssl/cmp.h>
#include "gateway/cmp/cmp_local.h"

/* cmp_rr_cb is the rr callback of every context (OSSL_CMP_SRV_rr_cb_t). */
OSSL_CMP_PKISI *cmp_rr_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
                          const ASN1_INTEGER *serial);

/*
 * cmp_rr_audit_unread puts on record (rejected, naming its signer and no serial) the rr of |c| that OpenSSL
 * refused with |rsp| before the rr callback ran, once it had verified its protection: one without exactly
 * one RevDetails (RFC 9483 §4.2), several or none; the caller has read that refusal off |rsp| (the engine's
 * refused_once_verified). Every other rr refusal is on record through the callback; any other message
 * than an rr is left as it is.
 */
void cmp_rr_audit_unread(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *rsp);

#endif
