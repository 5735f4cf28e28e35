/*
 * Internal sharing of the polling module: poll.c (the calls, their results, their withdrawal) and
 * poll_reread.c (the ends of shared records whose answers were lost, read back at the expiry ticks).
 */
#ifndef GW_CMP_POLL_LOCAL_H
#define GW_CMP_POLL_LOCAL_H

#include <openssl/x509.h>
#include "gateway/cmp/cmp_local.h"

/*
 * cmp_poll_withdraw_undelivered: |cert| of |t| (audit fields: |view|), which nobody received, goes on record
 * as not delivered ("expired_undelivered", |aborted|: the client aborted the transaction) and is withdrawn;
 * logged as |event| first unless NULL.
 */
void cmp_poll_withdraw_undelivered(struct gw_cmp_engine *e, struct cmp_txn *t, struct cmp_txn *view,
                                   const char *tid, const char *event, int aborted, X509 *cert);

#endif
