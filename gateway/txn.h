/*
 * Transaction table: transactionID -> open transaction (the SRV_CTX awaiting certConf or pollReq).
 * Thread-safe (one mutex). Entries are checked out exclusively: a worker takes an entry, uses it,
 * and puts it back or frees it, so two messages of one transaction never run at once.
 * Caps: total entries and entries per identity. Pure data structure: knows nothing of CMP.
 */
#ifndef GW_TXN_H
#define GW_TXN_H

#include <stddef.h>
#include <time.h>
#include "limits.h"

struct gw_txn_table;

/* What the table stores; |data| is opaque and released with |free_data| by whoever owns the entry. */
struct gw_txn {
    unsigned char tid[GW_MAX_TID_LEN];
    size_t tid_len;
    char identity[GW_IDENTITY_LEN];
    time_t expires;
    void *data;
};

typedef void (*gw_txn_expired_fn)(void *arg, struct gw_txn *txn); /* takes ownership of |txn| */

struct gw_txn_table *gw_txn_table_new(size_t max_total, size_t max_per_identity);
/* gw_txn_table_free hands every remaining entry to |cb| (may be NULL: entries are then just freed). */
void gw_txn_table_free(struct gw_txn_table *t, gw_txn_expired_fn cb, void *arg);

/*
 * gw_txn_put stores |txn| (the table takes ownership on success only). Returns 0, GW_ERR_EXISTS
 * if the transactionID is already open, or GW_ERR_LIMIT if a cap is reached.
 */
int gw_txn_put(struct gw_txn_table *t, struct gw_txn *txn);

/* gw_txn_take removes and returns the entry for |tid| (caller owns it), or NULL. */
struct gw_txn *gw_txn_take(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len);

/* gw_txn_contains tells whether |tid| is open (or checked out). */
int gw_txn_contains(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len);

/* gw_txn_count counts the entries in the table (checked-out ones excluded). */
size_t gw_txn_count(struct gw_txn_table *t);

/* gw_txn_expire hands every entry with expires <= now to |cb|. Returns how many. */
size_t gw_txn_expire(struct gw_txn_table *t, time_t now, gw_txn_expired_fn cb, void *arg);

#endif
