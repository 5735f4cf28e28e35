/*
 * User and group names to their ids, safe beside other threads: a reload looks the configured user
 * up while workers run, and OpenSSL or libc there may call getpw* or getgr* too, whose non-_r forms
 * share one static entry.
 */
#ifndef GW_USER_H
#define GW_USER_H

#include <sys/types.h>

/* Above this an entry is refused rather than read (ERANGE grows the buffer up to it). */
#define GW_USER_ENTRY_MAX (1024 * 1024)

/*
 * User |name|'s uid into |*uid| and, unless |gid| is NULL, its group into |*gid|. 0;
 * GW_ERR_NOT_FOUND for no such user, or another GW_ERR_ with |err| (GW_ERR_LEN) saying why.
 */
int gw_user_ids(const char *name, uid_t *uid, gid_t *gid, char *err);

/* Group |name|'s gid into |*gid|: 0, or a GW_ERR_ with |err| (GW_ERR_NOT_FOUND: no such group). */
int gw_group_id(const char *name, gid_t *gid, char *err);

/*
 * |fd|, a file this process has just created, given to |uid|:|gid| when the process is root creating
 * it for another user: the gateway creates some of its files before it gives up root, and reopens or
 * replaces them later as that user (a rotated audit log). Otherwise left as it is. 0, or -1 with errno.
 */
int gw_user_give(int fd, uid_t uid, gid_t gid);

#endif
