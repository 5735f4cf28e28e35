/*
 * Transaction table: transactionID -> open transaction (the SRV_CTX awaiting certConf or pollReq).
 * Thread-safe (one mutex). Entries are checked out exclusively: a worker takes an entry, uses it,
 * and puts it back or frees it, so two messages of one transaction never run at once.
 * Caps: total entries and entries per quota key (whose share of the per-identity cap an entry takes:
 * the caller's choice). Pure data structure: knows nothing of CMP.
 */
#ifndef GW_TXN_H
#define GW_TXN_H

#include <stddef.h>
#include <time.h>
#include "base/limits.h"

struct gw_txn_table;

/* What the table stores; |data| is opaque and released with |free_data| by whoever owns the entry. */
struct gw_txn {
    unsigned char tid[GW_MAX_TID_LEN];
    size_t tid_len;
    char identity[GW_IDENTITY_LEN]; /* for the caller's logs */
    char quota[GW_QUOTA_KEY_LEN];   /* the key the per-identity cap counts it under */
    time_t expires;
    void *data;
    void (*free_data)(void *data); /* may be NULL */
};

/*
 * gw_txn_new allocates an entry (identity and quota truncated to their fields). |data| is taken over
 * only on success. NULL if |tid_len| is 0 or above GW_MAX_TID_LEN, or out of memory.
 */
struct gw_txn *gw_txn_new(const unsigned char *tid, size_t tid_len, const char *identity, const char *quota,
                          time_t expires, void *data, void (*free_data)(void *data));

/* gw_txn_free releases |txn| and its data through free_data. NULL-safe. */
void gw_txn_free(struct gw_txn *txn);

typedef void (*gw_txn_expired_fn)(void *arg, struct gw_txn *txn); /* takes ownership of |txn| */

/* gw_txn_table_new creates a table with these caps (0 = no per-quota-key cap). NULL on bad args. */
struct gw_txn_table *gw_txn_table_new(size_t max_total, size_t max_per_identity);
/* gw_txn_table_free hands every remaining entry to |cb| (may be NULL: entries are then just freed). */
void gw_txn_table_free(struct gw_txn_table *t, gw_txn_expired_fn cb, void *arg);

/*
 * gw_txn_table_clear empties the table: every open entry goes to |cb| as in gw_txn_table_free, and
 * reserved and checked-out slots are dropped. Returns how many of those it dropped: slots a worker
 * still holds, so 0 whenever no request is in progress (else one leaked a slot).
 */
size_t gw_txn_table_clear(struct gw_txn_table *t, gw_txn_expired_fn cb, void *arg);

/*
 * gw_txn_reserve claims a slot for |tid| under |quota| before the work that fills it (an upstream
 * call), so that a certificate once issued can always be parked. The slot counts against both caps
 * and makes gw_txn_contains true. End it with gw_txn_put (same tid and quota) or gw_txn_release.
 * Returns 0, GW_ERR_EXISTS, GW_ERR_LIMIT or GW_ERR_INVAL.
 */
int gw_txn_reserve(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len, const char *quota);

/*
 * gw_txn_put stores |txn| (the table takes ownership on success only): into its reservation or
 * its checked-out slot if there is one (the quota key must match), else as a new entry. Returns
 * 0, GW_ERR_EXISTS if the transactionID is already open (or held under another quota key), or
 * GW_ERR_LIMIT if a cap is reached, GW_ERR_INVAL for a bad tid, GW_ERR_NOT_FOUND if its checked-out
 * slot was ended meanwhile (gw_txn_take_or_end): the slot is gone, |txn| is the caller's to close.
 */
int gw_txn_put(struct gw_txn_table *t, struct gw_txn *txn);

/*
 * gw_txn_take checks the entry for |tid| out exclusively and returns it (caller owns it), or NULL
 * if it is not open (absent, reserved or already checked out). The slot stays held, so the tid is
 * still "in use" and counted against the caps: end it with gw_txn_put or gw_txn_release.
 */
struct gw_txn *gw_txn_take(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len);

/*
 * gw_txn_take_or_end is gw_txn_take for one who ends the transaction whoever holds it: when another
 * worker has it checked out, its slot is marked ended instead (*ended set to 1), under the same lock,
 * so that the holder's gw_txn_put cannot open it again.
 */
struct gw_txn *gw_txn_take_or_end(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len,
                                  int *ended);

/*
 * gw_txn_take_expired takes the entry for |tid| out of the table (caller owns it, its slot gone) if it is
 * open and expires <= now, as gw_txn_expire would hand it over; else NULL, the table as it was.
 */
struct gw_txn *gw_txn_take_expired(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len,
                                   time_t now);

/* gw_txn_release ends a reservation or a check-out of |tid| (no-op on an open entry or none). */
void gw_txn_release(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len);

/*
 * gw_txn_end_held marks the reservation or check-out of |tid| ended: it stays counted, and |tid| taken,
 * until gw_txn_release, but no message finds it open any more (a closed transaction whose call runs on).
 */
void gw_txn_end_held(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len);

/* gw_txn_contains tells whether |tid| is open, reserved or checked out, and not ended. */
int gw_txn_contains(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len);

/* gw_txn_count counts the entries in the table (checked-out ones excluded). */
size_t gw_txn_count(struct gw_txn_table *t);

/* gw_txn_count_quota counts the slots held under |quota| (open, reserved, checked out). */
size_t gw_txn_count_quota(struct gw_txn_table *t, const char *quota);

/*
 * gw_txn_expire hands every open entry with expires <= now to |cb|, earliest first, outside the
 * lock. Reserved and checked-out slots are their worker's business and never expire. Returns how many.
 */
size_t gw_txn_expire(struct gw_txn_table *t, time_t now, gw_txn_expired_fn cb, void *arg);

#endif
