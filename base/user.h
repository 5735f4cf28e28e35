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
 * The class of a failed gw_user_ids or gw_group_id that returned |rc|: GW_ERR_NOMEM, else
 * GW_ERR_UNAVAILABLE (NSS, sssd or LDAP not answering yet at boot), which another try may mend. A name
 * NSS does not have (GW_ERR_NOT_FOUND) is no more the file's: glibc says so too where a directory service
 * did not answer and a later source (`passwd: sss files`) has no such name, and which it was cannot be told.
 */
int gw_user_lookup_class(int rc);

/*
 * openat(2) of |name| from directory |dir| (AT_FDCWD: a path) with |flags| and |mode| as |uid| and |gid|
 * when the process is root and |uid| is another user, else as the process: a file it creates is theirs
 * from the start, and the kernel judges each directory on the way by their rights, not root's (the
 * gateway creates some files before it gives up root, in directories that user may change). The groups
 * judged are |gid| alone, what the process keeps once it gives up root (gw_drop_privileges), not root's:
 * a directory only a group of root's may write is not the user's to create in. Only the calling thread's
 * filesystem ids (setfsuid(2)) and supplementary groups (the setgroups system call, not libc's, which
 * changes every thread's) change, with every signal blocked, and they are set back before it returns; if
 * they cannot be, the open fails. fd, or -1 with errno.
 */
int gw_user_openat_as(int dir, const char *name, int flags, mode_t mode, uid_t uid, gid_t gid);

#endif
