/*
 * Enrolment (ir, cr, p10cr, kur; RFC 9483 §4.1): OpenSSL's cert-request callback (issue.c).
 */
#ifndef GW_CMP_ISSUE_H
#define GW_CMP_ISSUE_H

#include <openssl/cmp.h>

/* cmp_issue_cb is the cert-request callback of every context (OSSL_CMP_SRV_cert_request_cb_t). */
OSSL_CMP_PKISI *cmp_issue_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                             const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
                             STACK_OF(X509) **chainOut, STACK_OF(X509) **caPubs);

#endif
