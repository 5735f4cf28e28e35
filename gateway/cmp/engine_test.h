/*
 * Test hooks of the CMP engine (gateway/cmp/engine.c). Only tests, fuzz targets and benchmarks
 * include this header; the gateway itself never calls these.
 */
#ifndef GW_CMP_ENGINE_TEST_H
#define GW_CMP_ENGINE_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct gw_cmp_engine;
struct gw_txn_table;

/* gw_cmp_engine_set_clock replaces the engine's clock (messageTime, TTLs); NULL = time(). */
void gw_cmp_engine_set_clock(struct gw_cmp_engine *e, time_t (*clock)(void));

/*
 * gw_cmp_engine_reset closes every open transaction (logged as abandoned) and forgets the replay
 * cache, so that the next request meets the engine as new (each test or fuzz input alike). Only
 * while no request runs. Returns the transaction slots a finished request left held: 0 unless one
 * leaked a slot, or a deferred request closed while its call runs keeps one (cmp_close_slot).
 */
size_t gw_cmp_engine_reset(struct gw_cmp_engine *e);

/* gw_cmp_engine_calls_running: upstream calls begun under |e| whose completion has not ended yet. */
bool gw_cmp_engine_calls_running(struct gw_cmp_engine *e);

/* gw_cmp_engine_settle_withdrawals waits until the revocations queued under |e| have ended. */
void gw_cmp_engine_settle_withdrawals(struct gw_cmp_engine *e);

/* gw_cmp_engine_set_withdrawal_backoff: the wait before a withdrawal's second attempt, |ms| (each next
 * one four times as long) instead of GW_WITHDRAWAL_BACKOFF_MS. */
void gw_cmp_engine_set_withdrawal_backoff(struct gw_cmp_engine *e, uint64_t ms);

/* gw_cmp_engine_set_withdrawal_record_ms: what a drain leaves for the record of a withdrawal's call it
 * ended, |ms| before its deadline instead of GW_WITHDRAWAL_RECORD_MS. */
void gw_cmp_engine_set_withdrawal_record_ms(struct gw_cmp_engine *e, uint64_t ms);

/* gw_cmp_engine_set_withdrawal_over_cap: how many withdrawals may wait past their keys' shares of the
 * queue, |cap| instead of GW_MAX_WITHDRAWALS. */
void gw_cmp_engine_set_withdrawal_over_cap(struct gw_cmp_engine *e, size_t cap);

/*
 * gw_cmp_engine_revocations_waiting: the revocations under |e| (an rr, a withdrawal) that wait for another
 * revocation of the same certificate to end now, for a test to go on once one waits.
 */
size_t gw_cmp_engine_revocations_waiting(struct gw_cmp_engine *e);

/* gw_cmp_engine_txns: the table of |e|'s open transactions, for a test to hold one as a message would. */
struct gw_txn_table *gw_cmp_engine_txns(struct gw_cmp_engine *e);

#endif
