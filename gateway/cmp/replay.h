/*
 * Replay cache: transactionIDs (with the senderNonce that opened them) seen recently.
 * A message that starts a transaction with a transactionID seen within the TTL is a replay
 * (same senderNonce) or a transactionID reuse (other nonce); both answer transactionIdInUse
 * (RFC 9483 §3.6.4). The TTL must cover twice the messageTime window and GW_REPLAY_MARGIN: older
 * messages fail badTime.
 * Thread-safe. Bounded: when full of live entries, new ones are refused (GW_ERR_BUSY) rather than
 * forgetting a live one, which would re-open the replay window. So that one sender cannot fill it
 * and lock everyone else out, each may hold at most |per_identity| live entries (GW_ERR_LIMIT for it
 * alone), counted by the key the caller names it with (the engine's: cmp_quota_key).
 */
#ifndef GW_REPLAY_H
#define GW_REPLAY_H

#include <stddef.h>
#include <time.h>

struct gw_replay;

struct gw_replay *gw_replay_new(size_t max_entries, size_t per_identity, time_t ttl);
void gw_replay_free(struct gw_replay *r);

/*
 * gw_replay_check_add records (tid, nonce) for |identity| (the authenticated sender's key; NULL
 * counts as one anonymous sender) at |now|. Returns 0 if the tid is new, GW_ERR_REPLAY if the same
 * (tid, nonce) was seen, GW_ERR_EXISTS if the tid was seen with another nonce, GW_ERR_LIMIT if
 * |identity| holds its share of live entries, GW_ERR_BUSY if the cache is full of live entries,
 * GW_ERR_INVAL for bad lengths.
 */
int gw_replay_check_add(struct gw_replay *r, const unsigned char *tid, size_t tid_len,
                        const unsigned char *nonce, size_t nonce_len, const char *identity, time_t now);

/*
 * gw_replay_seen: what gw_replay_check_add would say of (tid, nonce) at |now| for a tid seen before
 * (GW_ERR_REPLAY, GW_ERR_EXISTS), recording nothing: 0 for a tid not seen, GW_ERR_INVAL for bad lengths.
 */
int gw_replay_seen(struct gw_replay *r, const unsigned char *tid, size_t tid_len, const unsigned char *nonce,
                   size_t nonce_len, time_t now);

size_t gw_replay_count(struct gw_replay *r);

/* gw_replay_clear forgets every entry: the cache is as new (fuzzing: each input meets the same cache). */
void gw_replay_clear(struct gw_replay *r);

#endif
