/* Monotonic time for deadlines and waits (never the wall clock: it jumps). */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <stdint.h>

/* gw_now_ms returns CLOCK_MONOTONIC in milliseconds. */
uint64_t gw_now_ms(void);

/* gw_sleep_ms sleeps |ms| milliseconds, resuming after signals. */
void gw_sleep_ms(uint64_t ms);

#endif
