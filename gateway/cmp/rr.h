/*
 * Revocation (rr, RFC 9483 §4.2): OpenSSL's rr callback (rr.c).
 */
#ifndef GW_CMP_RR_H
#define GW_CMP_RR_H

#include <openssl/cmp.h>

/* cmp_rr_cb is the rr callback of every context (OSSL_CMP_SRV_rr_cb_t). */
OSSL_CMP_PKISI *cmp_rr_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
                          const ASN1_INTEGER *serial);

#endif
