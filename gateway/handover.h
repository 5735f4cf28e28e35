/*
 * Restart without refusing a connection (docs/operations.md, "Restart and upgrade").
 *
 * A gateway configured with "handover_socket" serves that Unix socket. A new gateway started with
 * the same setting connects to it before binding anything and receives every listening socket
 * (SCM_RIGHTS); once it serves them it says "ready", and the old gateway stops accepting and
 * drains. The kernel's listening sockets never close, so no connection is refused or reset (a
 * closing SO_REUSEPORT socket resets the connections queued on it: overlapping two processes that
 * bind the port themselves is not enough). Only a process of the same user, or root, is given the
 * sockets, and only from a gateway of that user or root are they taken.
 */
#ifndef GW_HANDOVER_H
#define GW_HANDOVER_H

#include <stdbool.h>
#include <sys/types.h>
#include "gateway/listener.h"

/*
 * gw_handover_check: 0 when no one but |owner| (the user the gateway serves as) or root may add names
 * to the directory of |path|, or the sticky bit keeps each name to its owner; else an error with |err|.
 * The start runs it before it asks for any socket, gw_handover_serve before it binds, and `cmpgw
 * check` as well; gw_handover_take itself judges who listens, not the file.
 */
int gw_handover_check(const char *path, uid_t owner, char *err);

/*
 * The new gateway's side. gw_handover_take asks the gateway serving |path| for its listening
 * sockets: 0 with |out| filled (a new array, the caller's) and |*peer| the connection to answer
 * with gw_handover_ready; 0 with out->n == 0 and |*peer| -1 when no gateway serves |path| (start
 * by binding); or an error with |err| (a gateway answered but the hand-over failed: starting
 * anyway would fight it for the ports). |user| is the uid this gateway serves as (the "user" it
 * becomes when started as root): a process of another user than that or root, listening at
 * |path|, is refused before anything is read from it.
 */
int gw_handover_take(const char *path, uid_t user, struct gw_inherited *out, int *peer, char *err);

/* gw_handover_ready tells the predecessor that its sockets are served, and closes |peer|. */
void gw_handover_ready(int peer);

/* The running gateway's side: serves |path| on a thread of its own. */
struct gw_handover;

/*
 * gw_handover_serve binds |path| (replacing the file of a predecessor atomically) and hands
 * |server|'s sockets to whoever connects and may have them. When a successor says "ready", the
 * process is sent SIGTERM: gw_handover_done then tells the shutdown that a successor serves.
 * NULL with |err| on failure.
 */
struct gw_handover *gw_handover_serve(const char *path, struct gw_server *server, char *err);

/* gw_handover_done: a successor took the sockets and serves them (any thread). */
bool gw_handover_done(struct gw_handover *h);

/* gw_handover_stop ends the thread and removes |path| if it is still this gateway's. NULL-safe. */
void gw_handover_stop(struct gw_handover *h);

#endif
