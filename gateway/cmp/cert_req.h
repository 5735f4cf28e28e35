/*
 * The certificate request of a CMP message as struct gw_cert_req (mappings/profile.h), what the
 * role's profile turns into a plan: the CRMF template of an ir, cr or kur, or the PKCS#10 CSR of a
 * p10cr. Only what the client asked for is read here; the role decides in gw_cert_plan_make.
 */
#ifndef GW_CMP_CERT_REQ_H
#define GW_CMP_CERT_REQ_H

#include <openssl/crmf.h>
#include <openssl/x509.h>
#include "mappings/profile.h"

/*
 * gw_cert_req_from_crmf fills |out| from a CRMF CertReqMsg (ir, cr, kur). The template public key
 * (|key| when it was decoded from this template already, else NULL) and validity are read through
 * the OpenSSL 3.0 shim. Returns 0 or GW_ERR_INVAL with |err|.
 */
int gw_cert_req_from_crmf(enum gw_req_kind kind, const OSSL_CRMF_MSG *crm, EVP_PKEY *key,
                          struct gw_cert_req *out, char *err);

/* gw_cert_req_from_p10 fills |out| from a PKCS#10 request (already verified by OpenSSL). */
int gw_cert_req_from_p10(const X509_REQ *csr, struct gw_cert_req *out, char *err);

/*
 * gw_cert_req_subject_from gives |req| the subject of |signer| when the request names none (3GPP
 * TS 33.310 §9.5.4.2: the base station's vendor certificate names it). No change when the request
 * has a subject or |signer| is NULL. Returns 0 or GW_ERR_NOMEM.
 */
int gw_cert_req_subject_from(struct gw_cert_req *req, const X509 *signer);

#endif
