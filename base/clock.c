/* Monotonic time (base/clock.h). */
#include "base/clock.h"
#include "base/err.h"

#include <errno.h>
#include <stdbool.h>
#include <time.h>

uint64_t gw_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct timespec gw_timespec_ms(uint64_t ms)
{
    return (struct timespec){.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
}

void gw_sleep_ms(uint64_t ms)
{
    struct timespec ts = gw_timespec_ms(ms);

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int gw_cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    bool ok;

    if (pthread_condattr_init(&attr) != 0)
        return GW_ERR_NOMEM;
    /* the attributes are destroyed whether or not the condition was made of them */
    ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 && pthread_cond_init(cond, &attr) == 0;
    pthread_condattr_destroy(&attr);
    return ok ? 0 : GW_ERR_NOMEM;
}
