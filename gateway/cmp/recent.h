/*
 * The certificates this process let through lately (the last GW_RECENT_ISSUED that passed the checks of
 * what an upstream returned), each by its issuer and serial and by the hash of its DER: another certificate
 * under the issuer name and serial of one of them (its CA issuing the serial again, or another CA under
 * the same name) is caught (policy.c cmp_check_serial_reused), and one of them an upstream returns again in
 * another transaction is not withdrawn there (record.c): it is the earlier transaction's.
 * Shared by every generation of the configuration, as the revoked set is; kept in memory only.
 */
#ifndef GW_CMP_RECENT_H
#define GW_CMP_RECENT_H

#include <openssl/x509.h>

#include "base/limits.h"
#include "gateway/cmp/revoked.h"

struct cmp_recent;

/*
 * cmp_recent_new: an empty ring; NULL when out of memory or its lock cannot be made. cmp_recent_free is
 * NULL-safe.
 */
struct cmp_recent *cmp_recent_new(void);
void cmp_recent_free(struct cmp_recent *r);

/*
 * cmp_recent_note: |cert|, whose cmp_revoked_id is |id|, let through in the transaction |tid| (hex),
 * against the ring. 0: no other certificate in it has |cert|'s issuer and serial, and |cert| is in it
 * now (the newest, or where it was: the same certificate returned again is no reuse). 1: another one
 * has, let through in the transaction |earlier| (hex, 2 * GW_MAX_TID_LEN + 1) says; |cert| is not
 * added. GW_ERR_CRYPTO: |cert| cannot be hashed. Worker or call thread: one lock, held for the lookup
 * and the insertion alone.
 */
int cmp_recent_note(struct cmp_recent *r, const unsigned char id[CMP_REVOKED_ID_LEN], X509 *cert,
                    const char *tid, char *earlier);

/*
 * cmp_recent_elsewhere: whether a certificate whose cmp_revoked_id is |id| was let through lately in a
 * transaction other than |tid| (hex): 1, that transaction in |earlier| (hex, 2 * GW_MAX_TID_LEN + 1;
 * empty where unknown), else 0. Any thread: one lock, held for the lookup alone.
 */
int cmp_recent_elsewhere(struct cmp_recent *r, const unsigned char id[CMP_REVOKED_ID_LEN], const char *tid,
                         char *earlier);

#endif
