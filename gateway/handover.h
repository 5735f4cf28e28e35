/*
 * Restart without refusing a connection (docs/operations.md, "Restart and upgrade").
 *
 * A gateway configured with "handover_socket" serves that Unix socket. A new gateway started with
 * the same setting connects to it before binding anything and receives every listening socket
 * (SCM_RIGHTS); once it serves them it says "ready", and the old gateway confirms ("draining"),
 * stops accepting and drains; a new gateway that is not confirmed stops (the old one serves on), unless
 * the old one exited. An old gateway told to stop meanwhile says "draining" at once. The kernel's
 * listening sockets never close, so no connection is refused or reset (a closing SO_REUSEPORT socket resets
 * the connections queued on it: overlapping two processes that bind the port themselves is not enough). Only
 * a process of the same user, or root, is given the sockets, and only from a gateway of that user or root are
 * they taken.
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

/* The gateway a new one took its sockets from, to be answered by gw_handover_finish. */
struct gw_handover_peer {
    int fd;        /* the connection to it; -1: none */
    bool confirms; /* it answers "ready" with "draining" (a gateway of an earlier version drains unasked) */
    pid_t pid;     /* its process (SO_PEERCRED): one that closes unconfirmed and exits serves nothing */
};

/*
 * The new gateway's side. gw_handover_take asks the gateway serving |path| for its listening
 * sockets: 0 with |out| filled (a new array, the caller's) and |*peer| the predecessor to answer
 * with gw_handover_finish; 0 with out->n == 0 and peer->fd -1 when no gateway serves |path| (start
 * by binding); or an error with |err| (a gateway answered but the hand-over failed: starting
 * anyway would fight it for the ports). |user| is the uid this gateway serves as (the "user" it
 * becomes when started as root): a process of another user than that or root, listening at
 * |path|, is refused before anything is read from it.
 */
int gw_handover_take(const char *path, uid_t user, struct gw_inherited *out, struct gw_handover_peer *peer,
                     char *err);

/* The running gateway's side: serves |path| on a thread of its own. */
struct gw_handover;

/*
 * gw_handover_serve binds a socket beside |path| and hands |server|'s sockets to whoever connects to
 * it and may have them; gw_handover_finish then puts it at |path|. When a successor says "ready", the
 * process is sent SIGTERM: gw_handover_done then tells the shutdown that a successor serves.
 * NULL with |err| on failure.
 */
struct gw_handover *gw_handover_serve(const char *path, struct gw_server *server, char *err);

/*
 * gw_handover_finish, once this gateway serves: tells the predecessor |*peer| (fd -1: none) so and
 * waits (a bounded time) for it to confirm that it drains (or, closing unconfirmed, to exit), closing
 * peer->fd and setting it to -1; then renames |h|'s socket over its path (replacing the predecessor's
 * file atomically). 0, or an error with |err|: the predecessor serves on, and this gateway must stop.
 * |h| may be NULL.
 */
int gw_handover_finish(struct gw_handover *h, struct gw_handover_peer *peer, char *err);

/* gw_handover_done: a successor took the sockets and serves them (any thread). */
bool gw_handover_done(struct gw_handover *h);

/*
 * gw_handover_stop ends the thread and removes |path| if it is still this gateway's. A successor that
 * was sent the sockets is told "draining" and waited for a bounded time (its "ready" makes
 * gw_handover_done true), so that it serves on. Returns gw_handover_done as it stands once the thread
 * ended (a "ready" during that wait included): what the shutdown must drain for. NULL-safe (false).
 */
bool gw_handover_stop(struct gw_handover *h);

#endif
