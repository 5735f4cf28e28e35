/*
 * The service manager's protocol (sd_notify): READY=1 once every listener is bound, RELOADING=1
 * when a reload begins and READY=1 again when it ended (applied or refused), WATCHDOG=1 while the
 * main loop turns (when the unit sets WatchdogSec), STOPPING=1 when shutdown begins.
 * Without libsystemd at build time, or without NOTIFY_SOCKET at run time, these do nothing.
 */
#ifndef GW_NOTIFY_H
#define GW_NOTIFY_H

#include <stdbool.h>

/* gw_notify_ready says the gateway serves; |status| is a one-line STATUS= for `systemctl status`. */
void gw_notify_ready(const char *status);

/* gw_notify_watchdog pets the watchdog when the unit has one (call it at least every second). */
void gw_notify_watchdog(void);

/* gw_notify_reloading says a reload has begun (gw_notify_ready ends it). */
void gw_notify_reloading(void);

/* gw_notify_stopping says shutdown has begun. */
void gw_notify_stopping(void);

/*
 * gw_notify_listen_fds takes the listening sockets of socket activation (LISTEN_FDS, for this
 * process): their count, and a new array of them in |*fds|; 0 when there are none.
 */
int gw_notify_listen_fds(int **fds);

/* gw_notify_enabled tells whether this build speaks the protocol at all. */
bool gw_notify_enabled(void);

#endif
