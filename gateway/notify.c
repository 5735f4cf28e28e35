/*
 * sd_notify through libsystemd (gateway/notify.h). The watchdog interval is read once: a ping
 * per main-loop tick (one second) is well inside any WatchdogSec worth setting.
 */
#include "gateway/notify.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef CMPGW_WITH_SYSTEMD
#include <systemd/sd-daemon.h>

void gw_notify_ready(const char *status)
{
    (void)sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void gw_notify_watchdog(void)
{
    static int enabled = -1;
    uint64_t usec;

    if (enabled < 0)
        enabled = sd_watchdog_enabled(0, &usec) > 0;
    if (enabled)
        (void)sd_notify(0, "WATCHDOG=1");
}

void gw_notify_reloading(void)
{
    struct timespec ts;

    /* MONOTONIC_USEC: what systemd 253's Type=notify-reload asks for; older ones ignore it */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    (void)sd_notifyf(0, "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
                     (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
}

void gw_notify_stopping(void)
{
    (void)sd_notify(0, "STOPPING=1\nSTATUS=draining");
}

int gw_notify_listen_fds(int **fds)
{
    int n = sd_listen_fds(1); /* 1: unset LISTEN_FDS, so that children do not take them too */

    if (n <= 0 || (*fds = calloc((size_t)n, sizeof(int))) == NULL)
        return 0;
    for (int i = 0; i < n; i++)
        (*fds)[i] = SD_LISTEN_FDS_START + i;
    return n;
}

bool gw_notify_enabled(void)
{
    return true;
}

#else

void gw_notify_ready(const char *status)
{
    (void)status;
}

void gw_notify_watchdog(void)
{
}

void gw_notify_reloading(void)
{
}

void gw_notify_stopping(void)
{
}

int gw_notify_listen_fds(int **fds)
{
    (void)fds;
    return 0;
}

bool gw_notify_enabled(void)
{
    return false;
}

#endif
