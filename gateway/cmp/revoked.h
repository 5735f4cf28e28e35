/*
 * The certificates revoked through this gateway (a holder's or an RA's rr, a withdrawal), known at
 * once wherever a credential is checked (status.c): in every generation of the configuration (the
 * set outlives a reload, as the open transactions do) and, with a shared state, on every instance
 * (cluster.c). A CRL cached before the revocation, or one the CA has not brought up to date yet,
 * cannot let such a certificate authenticate. Each is kept until it expires, and with cmp.revoked_file
 * across restarts and from a hand-over's predecessor to its successor and back.
 */
#ifndef GW_CMP_REVOKED_H
#define GW_CMP_REVOKED_H

#include <stdint.h>
#include <time.h>
#include <sys/types.h>
#include <openssl/x509.h>

#include "gateway/cmp/cmp_local.h"

struct cmp_revoked;

/*
 * cmp_revoked_id: |cert|'s name by issuer and serial, 128 bits of SHA-256 over its issuer name and serial
 * number (DER), what a CRL and an rr name it by; 0, or GW_ERR_CRYPTO. Any thread. The set keeps a
 * certificate that names its CA's key (authorityKeyIdentifier) by that as well, and decides by it: two CAs
 * of one name (a migration's, a CA rekeyed) may each issue one serial (revoked.c).
 */
#define CMP_REVOKED_ID_LEN 16
int cmp_revoked_id(X509 *cert, unsigned char id[CMP_REVOKED_ID_LEN]);

/*
 * cmp_revoked_new: a set of what |file| (cmp.revoked_file; NULL: none, the set starts empty) kept from
 * earlier runs, unexpired at |now|; the file is rewritten with that alone (unless another gateway
 * appends to it) and kept open for the revocations to come, this gateway's and the other's. Only
 * |owner| (the user the gateway serves as) and root may write it, or add names to its directory but
 * where the sticky bit keeps each name to its owner (cmp_revoked_file_check). NULL with |err| and *|rc|
 * (set on failure alone) the failure: GW_ERR_NOMEM for its own allocations; GW_ERR_UNAVAILABLE for
 * descriptors run out in the walk of the file's directory; another for what the file says (gw_err_file_class
 * classes it), and, as yet, for a failure to open, read or rewrite the file itself whatever its errno (a full
 * disk or EIO too: GW_ERR_IO).
 */
struct cmp_revoked *cmp_revoked_new(const char *file, uid_t owner, time_t now, int *rc, char *err);

/*
 * cmp_revoked_file_check: what a start would refuse of |file| as it stands (`cmpgw check`): 0 when it
 * is absent (the start creates it) or a regular file only |owner| or root may write, in a directory
 * only they may write or one with the sticky bit, else an error with |err|. Anyone else could add a
 * line that refuses a certificate, or one that refuses the next start, or plant a link where the start
 * writes.
 */
int cmp_revoked_file_check(const char *file, uid_t owner, char *err);
void cmp_revoked_free(struct cmp_revoked *rs);

#define CMP_REVOKED_NOT_HERE 1   /* not in this instance's set: full (cmp.max_revoked), or no memory */
#define CMP_REVOKED_NOT_SHARED 2 /* not in the shared state: it failed, or keeps cmp.max_revoked */
#define CMP_REVOKED_NOT_SAVED 4  /* in this instance's set, not in cmp.revoked_file: a restart forgets it */
#define CMP_REVOKED_UNMARKED 8   /* with another bit: no revocation of it under way, so none remembered */

/*
 * cmp_revoked_add: |cert| was revoked at its CA through |e| at |now|. 0 when it is kept wherever |e|
 * keeps revocations (or expired by |now|: not kept here, as it authenticates nothing here; with a shared
 * state, kept there unless expired on Redis's clock too, gw_cluster_put_revoked), else the
 * CMP_REVOKED_NOT_* bits of where it is not, with |err| saying why: there it is known once the CA's CRL says
 * so. What is not kept is noted on the revocation's mark, for cmp_revoked_end, which has it known a while
 * (remembered here, or the shared mark left "done"); with CMP_REVOKED_UNMARKED where there was no mark
 * (cmp_revoked_begin failed), and so nothing is known of it until then.
 */
int cmp_revoked_add(struct gw_cmp_engine *e, X509 *cert, time_t now, char *err);

/*
 * cmp_revoked_check: whether |cert| was revoked through this gateway, by any generation, by another
 * gateway appending to the same cmp.revoked_file (a hand-over's other side) or (with a shared state) any
 * instance, its revocation kept or, where it was not, remembered still (cmp_revoked_end): 1 or 0;
 * GW_ERR_UNAVAILABLE with |err| when the shared state cannot say, GW_ERR_CRYPTO when |cert| cannot be
 * named.
 */
int cmp_revoked_check(struct gw_cmp_engine *e, X509 *cert, time_t now, char *err);

/*
 * cmp_revoked_check of any certificate whose cmp_revoked_id is |id|, whatever its CA's key: whether one of
 * that issuer name and serial was revoked through the gateway (an issued certificate's serial reused).
 */
int cmp_revoked_check_id(struct gw_cmp_engine *e, const unsigned char id[CMP_REVOKED_ID_LEN], time_t now,
                         char *err);

/*
 * cmp_revoked_begin: |cert| is to be revoked at its CA through |e| (an rr, a withdrawal), whose upstream's
 * timeout is |wait_ms|. 0: it is marked as under way (with a shared state, on every instance), and no other
 * revocation of it begins until the caller, once the CA answered (and after cmp_status_revoked where it
 * revoked), calls cmp_revoked_end. 1: revoked through this gateway already (cmp_revoked_check, or a
 * revocation of it this instance's set could not keep ended lately): nothing is to be sent. Another
 * revocation of it under way, here or on another instance, is waited for first, at most |wait_ms|:
 * GW_ERR_BUSY with |err| when it has not ended by then (or GW_MAX_REVOKING are under way). GW_ERR_UNAVAILABLE
 * with |err| when the shared state cannot say whether it was revoked or take the mark; GW_ERR_CRYPTO with
 * |err| as cmp_revoked_check. Unmarked but for 0. (worker)
 */
int cmp_revoked_begin(struct gw_cmp_engine *e, X509 *cert, uint32_t wait_ms, char *err);

/*
 * cmp_revoked_mark_ms: how long a revocation's shared mark lives, begun with the upstream's timeout
 * |wait_ms|, and how long one the set did not keep is remembered after it ended. An rr holds the mark
 * through two calls to its CA, a timeout each (the certificate's status, then the revocation), and
 * GW_STATE_REVOKING_SLACK_MS covers the rest (the audit records, the revoked set and file around them).
 * Another revocation waits for the mark one timeout only (cmp_revoked_begin): one held longer has it
 * refused for now (GW_ERR_BUSY), never sent a second time meanwhile.
 */
uint32_t cmp_revoked_mark_ms(uint32_t wait_ms);

/*
 * cmp_revoked_waiting: the cmp_revoked_begin calls of |rs| that wait for another revocation's mark now
 * (gw_cmp_engine_revocations_waiting). Any thread.
 */
size_t cmp_revoked_waiting(struct cmp_revoked *rs);

/*
 * cmp_revoked_end: the revocation cmp_revoked_begin marked ended. Its shared mark goes, or where
 * cmp_revoked_add could not put the certificate in the shared state meanwhile, stays as "done" until it
 * expires (gw_cluster_unmark_revoking): another instance waiting for it finds it revoked all the same.
 * Where cmp_revoked_add could not keep it in this instance's set, this instance remembers it for as long
 * (GW_MAX_REVOKED_UNKEPT such at most), for a revocation of it here that waited likewise.
 */
void cmp_revoked_end(struct gw_cmp_engine *e, X509 *cert);

#endif
