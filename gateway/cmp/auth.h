/*
 * Who signed a request: the one certificate that names the sender and chains to the role's trust,
 * chosen and pinned before OpenSSL verifies the signature (auth.c says why).
 */
#ifndef GW_CMP_AUTH_H
#define GW_CMP_AUTH_H

#include <openssl/cmp.h>
#include <openssl/evp.h>
#include "gateway/cmp/cmp_local.h"

/* no certificate naming the sender chains to the route's trust, or the signature does not verify with the
   one that does: one answer, or it would tell which names the route's CAs have (auth.c) */
#define TEXT_UNTRUSTED                                                                                       \
    "message protection could not be verified: the signer certificate is not issued by a CA "                \
    "trusted on this route, or the signature does not match it"
/* followed by gw_policy_weak_why's reason */
#define TEXT_WEAK_SIGNER "message protection could not be verified: the signer certificate"
#define TEXT_SIGNATURE_NOT_ACCEPTED "signature protection is not accepted on this route"
#define TEXT_SENDER_NOT_DN "the sender must be a directoryName"
/* told only once the signature verified with it */
#define TEXT_NO_DIGITAL_SIGNATURE "the signer certificate lacks the digitalSignature key usage"

#define TEXT_OTHER_SENDER                                                                                    \
    "this transaction belongs to another sender: send certConf, pollReq and error messages as the "          \
    "sender of its request"
#define TEXT_PINNED_SIGNER "message protection could not be verified against the signer of this transaction"
#define TEXT_OTHER_TLS_CLIENT                                                                                \
    "this transaction was begun over a TLS connection with another client certificate (or none): send "      \
    "certConf, pollReq and error messages over a connection with the TLS client certificate of its request"

#define TEXT_KEY_LIMITS                                                                                      \
    "a key in this request is above this server's limits: RSA keys up to 8192 bits with a public "           \
    "exponent below 2^32"

/* cmp_key_affordable tells whether a signature check with |key| has a bounded cost (RSA size, exponent). */
int cmp_key_affordable(const EVP_PKEY *key);

/*
 * cmp_take_extra_certs sets the extraCerts of |msg|, which gw_cmp_decode left out (c->certs_later), before
 * anything authenticates it; nothing where they are set already. 0, or 1 with c->rsp the HTTP 400 of a body
 * that does not decode (GW_CMP_TEXT_NOT_DER), counted against the address as that is.
 */
int cmp_take_extra_certs(struct cmp_call *c, const OSSL_CMP_MSG *msg);

/*
 * cmp_authenticate chooses the one certificate that signed |msg| among those naming its sender and
 * chaining to the role's trust, and pins it on |t|'s context (t->signer). 0 if authenticated or
 * left to OpenSSL (PBM); else refused with |r|: a signature on a role without trust, or of a sender that
 * is no directoryName, too.
 */
int cmp_authenticate(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r);

/*
 * cmp_signature_refused tells whether OpenSSL's error answer |rsp| to |req| refused its protection with
 * |t|'s pinned signer (a signature that does not verify, a key usage without digitalSignature), and then
 * sets |r| to what the client is told (auth.c says why: TEXT_NO_DIGITAL_SIGNATURE only if the signature
 * verifies with it, else TEXT_UNTRUSTED) and logs what happened (signer_refused). 1 if so, else 0.
 */
int cmp_signature_refused(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *req,
                          const OSSL_CMP_MSG *rsp, struct cmp_refusal *r);

/*
 * cmp_signer_chain_on validates |t|'s pinned signer again, against |role|'s trust with c->e's chain
 * cache: its chain (up-referenced, the caller frees it), or NULL when it no longer validates there.
 */
STACK_OF(X509) *cmp_signer_chain_on(struct cmp_call *c, const struct cmp_txn *t, const struct gw_role *role);

/*
 * cmp_signer_chains_to tells whether |t|'s pinned signer chains to |store| (one trust entry's), with the
 * intermediates it was validated with and those of its role: 1 or 0.
 */
int cmp_signer_chains_to(struct cmp_call *c, const struct cmp_txn *t, X509_STORE *store);

/*
 * cmp_check_protection_hash refuses a message signed (not PBM-protected) with a hash under
 * GW_MIN_PROTECTION_HASH_BITS (SHA-1, MD5): OpenSSL 3.0's OSSL_CMP_validate_msg verifies any
 * signature algorithm it knows; and one protected by neither PasswordBasedMac nor a signature
 * algorithm OpenSSL knows (PBMAC1). 0, or refused with |r| (badAlg) and logged.
 */
int cmp_check_protection_hash(const struct cmp_call *c, struct cmp_refusal *r);

/*
 * cmp_check_ids refuses a message whose transactionID (badRequest) or senderNonce (badSenderNonce) is
 * missing or shorter than 16 bytes (GW_MIN_TID_LEN, GW_MIN_NONCE_LEN), before any transaction state is
 * looked up. 0, or refused with |r|.
 */
int cmp_check_ids(const struct cmp_call *c, struct cmp_refusal *r);

/*
 * cmp_refuse_header fills |r| for a header gw_shim_hdr_info could not read, its |rc| and what it read
 * into |h|: a transactionID (badRequest) or senderNonce (badSenderNonce) over its cap (GW_MAX_TID_LEN,
 * GW_MAX_NONCE_LEN) is told the limit, as a short one is (cmp_check_ids); anything else (a senderKID
 * over GW_MAX_KID_LEN, a field of the wrong type) is a malformed header (badRequest). Returns 1.
 */
int cmp_refuse_header(const struct gw_hdr_info *h, int rc, struct cmp_refusal *r);

/*
 * cmp_check_pbm_algs refuses a PBM-protected message whose owf or mac is not on the allow-list (RFC 9481
 * §6.1.1), before its key is derived: the owf is iterated, and its cost is the sender's to choose. 0, or
 * refused with |r| (badAlg) and logged.
 */
int cmp_check_pbm_algs(const struct cmp_call *c, struct cmp_refusal *r);

/*
 * cmp_pbm_spend derives and throws away the keys OpenSSL derives for |c|'s PBM message under a known
 * reference with a wrong secret, from a secret no reference has: the one it verifies the message with
 * (its owf, mac and iterationCount, already within the allow-list and the cap), and the one it MACs its
 * error with before the engine throws that away for a signed refusal (cmp_pbm_answer_algs, with OpenSSL
 * 3.0's own salt length and iterationCount). A message refused for its reference then takes as long as
 * one with a wrong secret, and the time of the answer tells no more than its text which references exist.
 */
void cmp_pbm_spend(const struct cmp_call *c);

/*
 * cmp_pbm_answer_algs gives the owf and mac (NIDs) that answers to a PBM-protected request on |role|
 * (NULL: none) are MAC'ed with: OpenSSL 3.0's context defaults to HMAC-SHA1; at least SHA-256 here, and
 * at least the role's min_hash (3GPP TS 33.310 §9.5), as the client is asked.
 */
void cmp_pbm_answer_algs(const struct gw_role *role, int *owf, int *mac);

/*
 * cmp_sender_is tells whether the header |h| names the sender a transaction is pinned to: the PBM
 * reference |kid| (|pbm|), or the directoryName |sender|.
 */
int cmp_sender_is(const struct gw_hdr_info *h, int pbm, const unsigned char *kid, size_t kid_len,
                  const X509_NAME *sender);

/*
 * cmp_check_tls_client: whether |c| comes from the TLS client |bound| (a transaction's tls_client, or
 * its record's) that began the transaction: 0, or refused with |r| (notAuthorized) and logged. A
 * transaction bound to none ("", rebuilt from a record of an older instance) passes.
 */
int cmp_check_tls_client(const struct cmp_call *c, const char *bound, struct cmp_refusal *r);

/*
 * cmp_authenticated: |c|'s message is authenticated, by |t|'s pinned signer or PBM reference: its
 * response says so (gw_cmp_response.authenticated), and with which credential (its request line is
 * paced per credential: gateway/http.c).
 */
void cmp_authenticated(struct cmp_call *c, const struct cmp_txn *t);

/*
 * cmp_check_pinned: whether |msg| (certConf, pollReq, error) comes from |t|'s sender, over a
 * connection of its TLS client, signed by its pinned signer (or with its PBM secret): 0, or refused
 * with |r|. Another trusted certificate with the sender's subject passes the sender check only;
 * another device with the same PBM secret or signing key passes all but the TLS client. Passed, the
 * response says the sender is authenticated (gw_cmp_response.authenticated).
 */
int cmp_check_pinned(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *msg, struct cmp_refusal *r);

/*
 * cmp_signed_like tells, from its request |req| (decoded from |der|, header |rh|) alone, whether |msg|
 * can pass the check of a transaction's pinned signer, without building a chain: with a PBM request,
 * whether it verifies with |t|'s secret (the one of the reference both name: cmp_sender_is); else
 * whether it is signed with the key of one of the certificates that signer was chosen from on |role|
 * (cmp_authenticate), which the request brought or |role| holds (without |role| or its trust, one the
 * request brought). 1 or 0. |t| lends its context, and a signed |msg| that passes leaves there the
 * certificate whose key signed it as t->signer, the request's extraCerts as t->signer_chain: what
 * cmp_check_record builds its chain from.
 */
int cmp_signed_like(struct cmp_txn *t, const struct gw_role *role, const OSSL_CMP_MSG *msg,
                    const OSSL_CMP_MSG *req, const unsigned char *der, size_t len,
                    const struct gw_hdr_info *rh);

#endif
