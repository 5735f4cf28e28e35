/*
 * Internal sharing of the shared-state module: cluster.c (Redis: keys, connections), cluster_scripts.c
 * (the Lua script of each step) and cluster_record.c (a transaction record and a deferred request's
 * result as the bytes kept in Redis, MAC'ed under the shared "mac_key_file" key).
 */
#ifndef GW_CMP_CLUSTER_LOCAL_H
#define GW_CMP_CLUSTER_LOCAL_H

#include <stddef.h>

struct gw_txn_record;
struct gw_txn_result;

/* The steps, each one script of cluster_scripts[] */
enum {
    S_SEEN,
    S_RESERVE,
    S_RELEASE,
    S_PUT,
    S_TAKE,
    S_DROP,
    S_UNLEASE,
    S_PING,
    S_CLAIM,
    S_RESULT,
    S_UPDATE,
    S_REVOKED,
    S_REVOKING,
    S_UNMARK,
    S_PUT_REVOKED,
    N_SCRIPTS
};

/* The Lua of each step, by its enum value above */
extern const char *const cluster_scripts[N_SCRIPTS];

/*
 * |rec| of transactionID |tid| as one blob (malloc'ed, *out_len bytes) MAC'ed under |key|; NULL when
 * out of memory or the MAC cannot be made.
 */
unsigned char *cluster_record_encode(const unsigned char *key, size_t key_len, const unsigned char *tid,
                                     size_t tid_len, const struct gw_txn_record *rec, size_t *out_len);

/*
 * The record of transactionID |tid| from |blob| (a version 3 or 2 record whose MAC under |key| holds)
 * into |rec| (gw_txn_record_cleanup); GW_ERR_INVAL, |rec| zeroed, when it is not ours.
 */
int cluster_record_decode(const unsigned char *key, size_t key_len, const unsigned char *tid, size_t tid_len,
                          const unsigned char *blob, size_t len, struct gw_txn_record *rec);

/* |res| of transactionID |tid| as one blob, as cluster_record_encode. */
unsigned char *cluster_result_encode(const unsigned char *key, size_t key_len, const unsigned char *tid,
                                     size_t tid_len, const struct gw_txn_result *res, size_t *out_len);

/* The result of transactionID |tid| from |blob| into |res| (present set), as cluster_record_decode. */
int cluster_result_decode(const unsigned char *key, size_t key_len, const unsigned char *tid, size_t tid_len,
                          const unsigned char *blob, size_t len, struct gw_txn_result *res);

/*
 * The transactionID of the record key |key| (|len| bytes: "<prefix>rec:<tid hex>", lower-case hex) into
 * |tid|: its length, or 0 when |key| is no such key or the transactionID is longer than GW_MAX_TID_LEN.
 */
size_t cluster_record_key_tid(const char *key, size_t len, const char *prefix, unsigned char *tid);

/*
 * |blob| of |*len| bytes, read once |blob| is built (an encode's answer), named |what| in |err|: NULL, with
 * |err|, when it was not built or is larger than |max|, which no instance would take (freed here then).
 */
unsigned char *cluster_blob_within(unsigned char *blob, const size_t *len, size_t max, const char *what,
                                   char *err);

#endif
