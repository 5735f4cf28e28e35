/*
 * What the process may do and hold: its user once root's work is done, and its limit of open files.
 */
#ifndef GW_PRIVILEGES_H
#define GW_PRIVILEGES_H

#include "gateway/config.h"

/*
 * gw_not_dumpable keeps the process's secrets out of a core file and away from other processes of its
 * user (PR_SET_DUMPABLE 0). 0, or -1 with the reason on stderr. Called again after a change of user.
 */
int gw_not_dumpable(void);

/* Why a process of this euid may not run |cfg|, or NULL: root without "user" stops unless "run_as_root". */
const char *gw_root_refusal(const struct gw_config *cfg);

/*
 * gw_drop_privileges becomes |cfg|'s "user" (and "group") for good when started as root, after the
 * listeners are bound and the keys loaded, and checks what is read or written later is within that
 * user's reach. 0, or an error with the reason logged, and the start stops: GW_ERR_INVAL where the
 * configuration is what stops it, as `cmpgw check` would (root without "user" nor "run_as_root", a user
 * or group the system does not have, a file the user cannot reach), another where the change of user
 * failed. The user and group are those the load looked up (a lookup that failed failed the load).
 */
int gw_drop_privileges(const struct gw_config *cfg);

/* `cmpgw check` as root with "user": the checks of a start, as that user, in a child. 0 or -1. */
int gw_check_as_user(const struct gw_config *cfg);

/* gw_fit_fd_limit raises the soft RLIMIT_NOFILE to the hard one where |cfg| may hold more files open. */
void gw_fit_fd_limit(const struct gw_config *cfg);

/* gw_show_fds prints, for `cmpgw check` of |path|, what |cfg|'s open files ask of this process's limit. */
void gw_show_fds(const char *path, const struct gw_config *cfg);

#endif
