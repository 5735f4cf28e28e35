/* What the client is told when OpenSSL's CMP server answered with an error of its own (reasons.h). */
#include "gateway/cmp/reasons.h"
#include "gateway/cmp/auth.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/shim.h"
#include "base/log.h"

#include <openssl/cmperr.h>
#include <openssl/crmferr.h>
#include <openssl/err.h>

/* ir, cr and kur: OpenSSL 3.0 answers exactly one CertReqMsg (certReqId 0) */
#define TEXT_ONE_CERT_REQUEST "send exactly one certificate request per message"

/* OpenSSL reasons of its own error messages -> what the client is told. */
static const struct {
    int lib, reason, bit;
    const char *text;
} reasons[] = {
    {ERR_LIB_CMP, CMP_R_NO_SUITABLE_SENDER_CERT, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, TEXT_UNTRUSTED},
    {ERR_LIB_CMP, CMP_R_ERROR_VALIDATING_PROTECTION, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, TEXT_UNTRUSTED},
    {ERR_LIB_CMP, CMP_R_POTENTIALLY_INVALID_CERTIFICATE, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
     TEXT_UNTRUSTED},
    {ERR_LIB_CMP, CMP_R_MISSING_TRUST_STORE, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
     TEXT_SIGNATURE_NOT_ACCEPTED},
    /* a signature that does not verify says no more than an untrusted signer (auth.c): the pinned
       signer's refusals are cmp_signature_refused's, these the rest */
    {ERR_LIB_CMP, CMP_R_ERROR_VALIDATING_SIGNATURE, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, TEXT_UNTRUSTED},
    /* 3.0 queues ASN1_item_verify's failure first when a trusted signer's signature is wrong */
    {ERR_LIB_ASN1, ERR_R_EVP_LIB, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, TEXT_UNTRUSTED},
    {ERR_LIB_CMP, CMP_R_SRVCERT_DOES_NOT_VALIDATE_MSG, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
     TEXT_OTHER_SENDER},
    {ERR_LIB_CMP, CMP_R_WRONG_PBM_VALUE, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, TEXT_PBM_FAILED},
    {ERR_LIB_CMP, CMP_R_MISSING_PBM_SECRET, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
     "PBM protection is not accepted here"},
    /* OpenSSL checks the key usage before the signature: nothing shows the client holds the key */
    {ERR_LIB_CMP, CMP_R_MISSING_KEY_USAGE_DIGITALSIGNATURE, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
     TEXT_UNTRUSTED},
    {ERR_LIB_CMP, CMP_R_MISSING_PROTECTION, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
     "message is not protected: sign it with a certificate or protect it with a PBM secret"},
    /* its text depends on the body: one_per_message */
    {ERR_LIB_CMP, CMP_R_MULTIPLE_REQUESTS_NOT_SUPPORTED, OSSL_CMP_PKIFAILUREINFO_badRequest, NULL},
    {ERR_LIB_CMP, CMP_R_UNEXPECTED_PVNO, OSSL_CMP_PKIFAILUREINFO_unsupportedVersion,
     "only CMP version 2 (pvno 2) is supported"},
    {ERR_LIB_CMP, CMP_R_SENDER_GENERALNAME_TYPE_NOT_SUPPORTED, OSSL_CMP_PKIFAILUREINFO_badRequest,
     TEXT_SENDER_NOT_DN},
    {ERR_LIB_CMP, CMP_R_BAD_REQUEST_ID, OSSL_CMP_PKIFAILUREINFO_badRequest, "certReqId must be 0"},
    {ERR_LIB_CMP, CMP_R_UNEXPECTED_PKIBODY, OSSL_CMP_PKIFAILUREINFO_badRequest,
     "unexpected message in this transaction"},
    {ERR_LIB_CMP, CMP_R_RECIPNONCE_UNMATCHED, OSSL_CMP_PKIFAILUREINFO_badRecipientNonce,
     CMP_TEXT_RECIP_NONCE},
    {ERR_LIB_CMP, CMP_R_ERROR_UNEXPECTED_CERTCONF, OSSL_CMP_PKIFAILUREINFO_badRequest,
     "unexpected certConf: this transaction expects no confirmation"},
    {ERR_LIB_CRMF, CRMF_R_BAD_PBM_ITERATIONCOUNT, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
     "PBM iterationCount must be between 100 and 100000"},
    {ERR_LIB_CRMF, CRMF_R_POPO_INCONSISTENT_PUBLIC_KEY, OSSL_CMP_PKIFAILUREINFO_badPOP,
     "proof of possession failed"},
    {ERR_LIB_CRMF, CRMF_R_POPO_MISSING, OSSL_CMP_PKIFAILUREINFO_badPOP, "proof of possession is missing"},
    {ERR_LIB_CRMF, CRMF_R_UNSUPPORTED_POPO_METHOD, OSSL_CMP_PKIFAILUREINFO_badPOP,
     "proof of possession method not supported: sign the request with the new key"},
};

/* OpenSSL 3.0 raises CMP_R_MULTIPLE_REQUESTS_NOT_SUPPORTED for every body whose entries it counts (other
   than one): each text names what that body must hold one of (RFC 9483 §4.1.1, §4.2, §4.4). */
static const char *const one_per_message[GW_CMP_BODY_MAX + 1] = {
    [GW_CMP_BODY_IR] = TEXT_ONE_CERT_REQUEST,
    [GW_CMP_BODY_CR] = TEXT_ONE_CERT_REQUEST,
    [GW_CMP_BODY_KUR] = TEXT_ONE_CERT_REQUEST,
    [GW_CMP_BODY_RR] = "name exactly one certificate per revocation request",
    [GW_CMP_BODY_POLLREQ] = "poll for exactly one request per pollReq",
};

/* The text of reasons[i] for a message of body type |body|. */
static const char *reason_text(size_t i, int body)
{
    if (reasons[i].text != NULL)
        return reasons[i].text;
    if (body >= 0 && body <= GW_CMP_BODY_MAX && one_per_message[body] != NULL)
        return one_per_message[body];
    return TEXT_ONE_CERT_REQUEST;
}

/* Why OpenSSL answered with an error, from its errorCode (the first error it queued). */
void cmp_classify_error(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r)
{
    long code = gw_shim_error_code(msg);

    cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "the request could not be processed");
    if (code < 0)
        return;
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (ERR_GET_LIB((unsigned long)code) == reasons[i].lib &&
            ERR_GET_REASON((unsigned long)code) == reasons[i].reason) {
            cmp_refuse(r, reasons[i].bit, "%s", reason_text(i, c->body));
            return;
        }
    }
    gw_log_kv(GW_LOG_DEBUG, "cmp_error_unmapped", "tid", c->rsp->tid, "diag", c->diag, NULL);
}
