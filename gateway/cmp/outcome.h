/*
 * How a request ends: the refusals checks fill (struct cmp_refusal, gateway/cmp/cmp_local.h),
 * turned into a rejection PKIStatusInfo or into OpenSSL's error message, and the outcome the
 * request log line carries.
 */
#ifndef GW_CMP_OUTCOME_H
#define GW_CMP_OUTCOME_H

#include <openssl/cmp.h>
#include "gateway/cmp/cmp_local.h"

/* A certConf, pollReq or error message that does not answer the last message of its transaction. */
#define CMP_TEXT_RECIP_NONCE                                                                                 \
    "recipNonce does not match the senderNonce of this server's last message: answer the latest response"

/* An answer the signer's key could not sign (gateway/cmp/signer.h): HTTP 500, before any CMP. */
#define CMP_TEXT_UNSIGNED                                                                                    \
    "internal error: the gateway's signer key could not sign the CMP response (its token gone or "           \
    "failing?): retry later"

/* cmp_refuse fills |r| with failInfo |fail_info| and the formatted statusString; returns 1. */
__attribute__((format(printf, 3, 4))) int cmp_refuse(struct cmp_refusal *r, int fail_info, const char *fmt,
                                                     ...);

/*
 * cmp_deny is cmp_refuse for a refusal of who sent |t|'s message (an authorization refusal: notAuthorized,
 * or what a kur or rr may not do), logged by cmp_log_denied as the docs/errors.md row |code|. Returns 1.
 */
__attribute__((format(printf, 6, 7))) int cmp_deny(const struct cmp_call *c, const struct cmp_txn *t,
                                                   const char *code, struct cmp_refusal *r, int fail_info,
                                                   const char *fmt, ...);

/*
 * cmp_log_denied writes the not_authorized log line of the refusal |r| of |t|'s sender: who was refused
 * (its identity, TLS client subject and role, and the tid that ties it to the request line with its
 * address), why (|code|, a static docs/errors.md row id, as "reason") and what it was told ("msg", the
 * statusString). Every such refusal is logged through here, so that operators find them by one event.
 */
/*
 * cmp_log_already_revoked writes the one info line of an rr answered certRevoked (docs/errors.md
 * rr_already_revoked), whichever check found it revoked: the tid, the certificate's |serial| (hex) and
 * |issuer|, which |source| said so ("gateway": its own record of what it revoked; "upstream": the CA's
 * status of the holder's certificate, or its answer to the revocation; "ra_target": the CA's status of
 * the certificate an RA's lookup found) and |how| it was known. Without it, the answer would be in the
 * request line's outcome only.
 */
void cmp_log_already_revoked(const struct cmp_call *c, const char *serial, const X509_NAME *issuer,
                             const char *source, const char *how);

void cmp_log_denied(const struct cmp_call *c, const struct cmp_txn *t, const char *code,
                    const struct cmp_refusal *r);

/* cmp_set_outcome notes how the request ended: |status|, and the refusal |r| if there is one (or NULL). */
void cmp_set_outcome(struct cmp_call *c, const char *status, const struct cmp_refusal *r);

/*
 * cmp_rejection returns a rejection PKIStatusInfo saying |r| (new; NULL on OOM), its statusString
 * UTF-8 whatever the text took in (gw_utf8_scrub), which a client may refuse to decode otherwise, and
 * without a control byte or a character not shown as itself (each one '?': gw_utf8_scrub), which a
 * terminal may act on or a reader misread.
 */
OSSL_CMP_PKISI *cmp_rejection(const struct cmp_refusal *r);

/* cmp_reject returns cmp_rejection(r), the outcome noted. */
OSSL_CMP_PKISI *cmp_reject(struct cmp_call *c, const struct cmp_refusal *r);

/*
 * cmp_fail is for callbacks that can fail only as an error message in 3.0 (genm, certConf,
 * pollReq): notes |r|, which the engine puts into OpenSSL's error message, and returns 0.
 */
int cmp_fail(struct cmp_call *c, const struct cmp_refusal *r);

#endif
