/*
 * OpenSSL's own error messages, translated: the reasons OpenSSL 3.0's CMP server queues when it
 * answers with an error itself, mapped to the failInfo and statusString the client is told.
 */
#ifndef GW_CMP_REASONS_H
#define GW_CMP_REASONS_H

#include <openssl/cmp.h>
#include "gateway/cmp/cmp_local.h"

/* One text for every PBM failure, so that a client without the secret cannot probe which references exist. */
#define TEXT_PBM_FAILED                                                                                      \
    "PBM protection could not be verified: check the reference (senderKID) and the shared secret"

/* cmp_classify_error: why OpenSSL answered with an error (its errorCode, the first error it queued),
 * as the failInfo and text the client is told; a generic badRequest for a code not in the table. */
void cmp_classify_error(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r);

#endif
