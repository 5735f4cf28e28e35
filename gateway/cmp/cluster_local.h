/*
 * Internal sharing of the shared-state module: cluster.c (Redis: keys, connections, transactions),
 * cluster_revoked.c (the revocations the instances share), cluster_memory.c (whether Redis evicts keys),
 * cluster_scripts.c (the Lua script of each step)
 * and cluster_record.c (a transaction record and a deferred request's result as the bytes kept in Redis,
 * MAC'ed under the shared "mac_key_file" key).
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

#ifdef CMPGW_WITH_HIREDIS
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/time.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include "base/limits.h"
#include "base/log.h"

/* A key: the prefix (64 bytes at most), its kind, and a transactionID in hex */
#define CLUSTER_KEY_LEN (64 + 8 + 2 * GW_MAX_TID_LEN + 1)

struct gw_cluster {
    char *address, *username, *prefix;
    unsigned char *password;
    size_t password_len;
    int port;
    struct timeval timeout;
    char owner[GW_STATE_OWNER_LEN]; /* this instance, in the leases and reservations it holds */
    atomic_ullong ends;             /* the id of this instance's last end of a record (S_DROP's took:) */
    unsigned char *mac_key;         /* "mac_key_file": transaction records; NULL: none are kept */
    size_t mac_key_len;
    char sha[N_SCRIPTS][41];
    pthread_key_t conn; /* each thread's redisContext */
    atomic_bool reachable;
    /* while not |reachable|: the last failure was Redis's own refusal (OOM at its maxmemory, READONLY),
       not a connection's: it answers, and takes what takes no memory (gw_cluster_release) */
    atomic_bool refusing;
    atomic_ulong downs; /* mark_down's count: a ping answered before a later failure proves nothing */
    struct gw_log_outage outage; /* the shared_state_unavailable lines (gw_cluster_unavailable_due) */
    /* the pinger: readiness follows Redis even while no request comes */
    pthread_t pinger;
    bool pinging;
    pthread_mutex_t lock; /* stop, last_err, epoch, eviction */
    pthread_cond_t wake;
    bool stop;
    char last_err[GW_ERR_LEN];
    char epoch[GW_STATE_EPOCH_LEN]; /* the epoch as the last ping read it; "": none read yet */
    /* what the last new connection's INFO memory found: "" fine (or none read), "unchecked", or the
       evicting policy (cluster_eviction_read: each change logged) */
    char eviction[GW_STATE_POLICY_LEN];
    unsigned long long epochs;   /* the pings' count: the value of the epoch a ping sets */
    time_t claim_logged;         /* gw_cluster_claim_expired's last failure log (its one caller's thread) */
    unsigned long long claim_id; /* its claim's id (S_CLAIM): the next one once an answer came */
};

/*
 * cluster_eval runs script |s| with the keys |k1| and |k2| and |argc| (up to six) NUL-terminated
 * arguments: its answer (caller frees), or NULL with |err| when Redis could not be asked or answered an
 * error (readiness then down). Any thread, on its own connection.
 */
redisReply *cluster_eval(struct gw_cluster *cl, int s, const char *k1, const char *k2, int argc,
                         const char *const *args, char *err);

/* cluster_integer_of: the integer a script answered (|r|, consumed), or GW_ERR_UNAVAILABLE with |err|. */
long long cluster_integer_of(struct gw_cluster *cl, redisReply *r, char *err);

/* cluster_run runs script |s| with two keys and four arguments: its integer answer, or GW_ERR_UNAVAILABLE. */
long long cluster_run(struct gw_cluster *cl, int s, const char *k1, const char *k2, const char *a1,
                      long long a2, long long a3, long long a4, char *err);

/*
 * cluster_eviction_read: whether Redis evicts the gateway's keys under memory pressure, as |r| (borrowed),
 * the answer to INFO memory on a new connection of |cl|, says: a maxmemory with a maxmemory-policy other
 * than noeviction is logged shared_state_evicting and sets the gauge cmpgw_shared_state_evicting; an
 * answer that does not say (refused) shared_state_eviction_unchecked; each once per change. Any thread.
 */
void cluster_eviction_read(struct gw_cluster *cl, const redisReply *r);

/*
 * cluster_warn_failed: a step that failed in Redis, said as the warning |event| (a static string) with |err|
 * (and |msg| unless NULL), paced by the outage of shared_state_unavailable.
 */
void cluster_warn_failed(struct gw_cluster *cl, const char *event, const char *err, const char *msg);
#endif /* CMPGW_WITH_HIREDIS */

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
