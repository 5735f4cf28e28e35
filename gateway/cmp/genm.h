/*
 * General messages (genm -> genp, RFC 9483 §4.3): OpenSSL's genm callback (genm.c).
 */
#ifndef GW_CMP_GENM_H
#define GW_CMP_GENM_H

#include <openssl/cmp.h>

/* cmp_genm_cb is the genm callback of every context (OSSL_CMP_SRV_genm_cb_t). */
int cmp_genm_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const STACK_OF(OSSL_CMP_ITAV) *in,
                STACK_OF(OSSL_CMP_ITAV) **out);

#endif
