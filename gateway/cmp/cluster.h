/*
 * What several gateway instances share ("cmp.state": "redis"; docs/operations.md, "Several
 * instances"): the transactionIDs seen (the replay check) and the transactions open, with the
 * per-identity caps, in one Redis, so that a request replayed to another instance is refused and
 * a cap holds across instances. Each step is one Lua script, atomic in Redis. The open
 * transactions' contexts stay in the memory of the instance that began them: a client's messages
 * must reach that instance (a balancer hashing the client's address).
 *
 * Thread-safe: each thread has its own connection, opened on first use and again after an error.
 * Every call that cannot reach Redis returns GW_ERR_UNAVAILABLE with a one-line reason: the
 * engine then refuses the request (systemUnavail) rather than serve it unchecked.
 */
#ifndef GW_CMP_CLUSTER_H
#define GW_CMP_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "gateway/cmp/conf.h"

struct gw_cluster;

/*
 * gw_cluster_new connects to the Redis of |conf| (copied) and checks that it keeps what it is given:
 * maxmemory-policy noeviction (an evicted replay key reopens a replay) and appendonly yes (a
 * restart must not forget them). NULL with |err| when it cannot, or when cmpgw was built without
 * hiredis.
 */
struct gw_cluster *gw_cluster_new(const struct gw_state_conf *conf, char *err);
void gw_cluster_free(struct gw_cluster *cl);

/*
 * gw_cluster_seen records |tid| with |nonce| for |ttl| seconds, as the replay cache does across
 * instances: 0 if new; GW_ERR_REPLAY (same nonce), GW_ERR_EXISTS (another nonce); GW_ERR_LIMIT when
 * |identity| holds |max_recent| live ones; GW_ERR_UNAVAILABLE with |err|.
 */
int gw_cluster_seen(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                    const unsigned char *nonce, size_t nonce_len, const char *identity, time_t now,
                    time_t ttl, unsigned max_recent, char *err);

/*
 * gw_cluster_reserve marks |tid| open for |identity| until |now| + |ttl| + GW_STATE_GRACE: 0,
 * GW_ERR_EXISTS (open on any instance), GW_ERR_LIMIT (|identity| holds |max_open|),
 * GW_ERR_UNAVAILABLE with |err|.
 */
int gw_cluster_reserve(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *identity,
                       time_t now, time_t ttl, unsigned max_open, char *err);

/* gw_cluster_release ends this instance's reservation of |tid| (best effort: it expires anyway). */
void gw_cluster_release(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                        const char *identity);

/*
 * gw_cluster_status: 0 while Redis answers (the last command of any thread, or the PING sent every
 * GW_STATE_PING_SECS), else GW_ERR_UNAVAILABLE with the last reason in |why|. NULL-safe (0).
 */
int gw_cluster_status(struct gw_cluster *cl, char *why, size_t cap);

#endif
