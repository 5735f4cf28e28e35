/* Monotonic time for deadlines and waits (never the wall clock: it jumps). */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* gw_now_ms returns CLOCK_MONOTONIC in milliseconds. */
uint64_t gw_now_ms(void);

/* gw_sleep_ms sleeps |ms| milliseconds, resuming after signals. */
void gw_sleep_ms(uint64_t ms);

/*
 * gw_timespec_ms is |ms| milliseconds as a struct timespec: a gw_now_ms deadline, as pthread_cond_timedwait
 * takes it on a gw_cond_init_monotonic condition, or a span of time.
 */
struct timespec gw_timespec_ms(uint64_t ms);

/*
 * gw_cond_init_monotonic initialises |cond| to time its waits by gw_now_ms's clock, so that a wait until a
 * gw_now_ms deadline ends there whatever the wall clock does: 0, or GW_ERR_NOMEM with |cond| not made.
 */
int gw_cond_init_monotonic(pthread_cond_t *cond);

#endif
