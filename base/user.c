/* User and group lookups (base/user.h). */
#include "base/user.h"

#include "base/err.h"
#include "base/limits.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One getpwnam_r or getgrnam_r into |ent|, |buf| of |len| bytes holding its strings. */
typedef int (*lookup_fn)(const char *name, void *ent, char *buf, size_t len, bool *found);

static int passwd_r(const char *name, void *ent, char *buf, size_t len, bool *found)
{
    struct passwd *res = NULL;
    int rc = getpwnam_r(name, ent, buf, len, &res);

    *found = res != NULL;
    return rc;
}

static int group_r(const char *name, void *ent, char *buf, size_t len, bool *found)
{
    struct group *res = NULL;
    int rc = getgrnam_r(name, ent, buf, len, &res);

    *found = res != NULL;
    return rc;
}

/* What sysconf suggests for |which| (_SC_GETPW_R_SIZE_MAX, _SC_GETGR_R_SIZE_MAX): it may not say. */
static size_t first_size(int which)
{
    long n = sysconf(which);

    return n > 0 && n <= GW_USER_ENTRY_MAX ? (size_t)n : 1024;
}

/*
 * |kind| |name| into |ent| by |fn|, its buffer doubled on ERANGE up to GW_USER_ENTRY_MAX. Only the
 * ids of |ent| stay valid after: its strings were in the buffer, freed here.
 */
static int lookup(const char *kind, const char *name, lookup_fn fn, int size_hint, void *ent, char *err)
{
    size_t len = first_size(size_hint);
    char *buf = NULL, *grown;
    bool found = false;
    int rc;

    for (;;) {
        if ((grown = realloc(buf, len)) == NULL) {
            free(buf);
            snprintf(err, GW_ERR_LEN, "out of memory looking up %s \"%s\"", kind, name);
            return GW_ERR_NOMEM;
        }
        buf = grown;
        while ((rc = fn(name, ent, buf, len, &found)) == EINTR)
            ;
        if (rc != ERANGE || len >= GW_USER_ENTRY_MAX)
            break;
        len = len * 2 < GW_USER_ENTRY_MAX ? len * 2 : GW_USER_ENTRY_MAX;
    }
    free(buf);
    if (rc == 0 && found)
        return 0;
    if (rc == 0) {
        /* glibc says the same where a directory service did not answer and a later source (files) has
           no such name: the hint keeps the reader from taking it for a typo alone */
        snprintf(
            err, GW_ERR_LEN,
            "unknown %s \"%s\" (or a directory service, sssd or LDAP, not answering yet: they read the same)",
            kind, name);
        return GW_ERR_NOT_FOUND;
    }
    snprintf(err, GW_ERR_LEN, "cannot look up %s \"%s\": %s", kind, name,
             rc == ERANGE ? "its entry is over 1 MiB" : strerror(rc));
    return GW_ERR_IO;
}

int gw_user_ids(const char *name, uid_t *uid, gid_t *gid, char *err)
{
    struct passwd pw;
    int rc = lookup("user", name, passwd_r, _SC_GETPW_R_SIZE_MAX, &pw, err);

    if (rc != 0)
        return rc;
    *uid = pw.pw_uid;
    if (gid != NULL)
        *gid = pw.pw_gid;
    return 0;
}

int gw_group_id(const char *name, gid_t *gid, char *err)
{
    struct group gr;
    int rc = lookup("group", name, group_r, _SC_GETGR_R_SIZE_MAX, &gr, err);

    if (rc == 0)
        *gid = gr.gr_gid;
    return rc;
}

int gw_user_lookup_class(int rc)
{
    return rc == GW_ERR_NOMEM ? GW_ERR_NOMEM : GW_ERR_UNAVAILABLE;
}

/*
 * Sets the calling thread's filesystem ids: 0, or -1 if either did not take. setfsuid and setfsgid
 * return the id before, never an error; asked again with an invalid id they change nothing and say
 * the one in force.
 */
static int set_fs_ids(uid_t uid, gid_t gid)
{
    (void)setfsuid(uid);
    (void)setfsgid(gid);
    return (uid_t)setfsuid((uid_t)-1) == uid && (gid_t)setfsgid((gid_t)-1) == gid ? 0 : -1;
}

/*
 * Sets the calling thread's supplementary groups to the |n| of |list|: the system call itself, which
 * changes this thread's alone (Linux keeps credentials per thread). glibc's setgroups() has every thread
 * of the process do the same (its setxid broadcast): the others would hold the user's groups meanwhile.
 * 0, or -1 with errno.
 */
static int set_thread_groups(size_t n, const gid_t *list)
{
#ifdef SYS_setgroups32 /* where SYS_setgroups takes 16-bit ids (i386, 32-bit Arm) */
    return (int)syscall(SYS_setgroups32, n, list);
#else
    return (int)syscall(SYS_setgroups, n, list);
#endif
}

/* The calling thread's supplementary groups into |*list| (the caller frees it), |*n| of them: 0, or -1. */
static int thread_groups(gid_t **list, size_t *n)
{
    int had = getgroups(0, NULL), got = -1;

    *list = NULL;
    /* getgroups(0, ...) counts and fills nothing */
    if (had >= 0 && (*list = malloc(((size_t)had + 1) * sizeof(gid_t))) != NULL)
        got = had > 0 ? getgroups(had, *list) : 0;
    if (got < 0) {
        free(*list);
        *list = NULL;
        return -1;
    }
    *n = (size_t)got;
    return 0;
}

/*
 * Becomes |uid| with |gid| as its one group, what gw_drop_privileges leaves the process (setgroups of
 * that group alone), for this thread's file accesses: 0, or -1. The groups first, while the ids are
 * root's still.
 */
static int become_for_files(uid_t uid, gid_t gid)
{
    return set_thread_groups(1, &gid) == 0 && set_fs_ids(uid, gid) == 0 ? 0 : -1;
}

/* Back to the filesystem ids and groups this thread had: 0, or -1 if either did not take (both tried). */
static int come_back(uid_t uid, gid_t gid, const gid_t *groups, size_t n)
{
    int ids = set_fs_ids(uid, gid);

    return set_thread_groups(n, groups) == 0 && ids == 0 ? 0 : -1;
}

int gw_user_openat_as(int dir, const char *name, int flags, mode_t mode, uid_t uid, gid_t gid)
{
    gid_t *groups = NULL;
    size_t n_groups = 0;
    uid_t was_uid;
    gid_t was_gid;
    sigset_t all, saved;
    int fd = -1, e;

    if (geteuid() != 0 || uid == 0)
        return openat(dir, name, flags, mode);
    if (thread_groups(&groups, &n_groups) != 0)
        return -1;
    /* no signal handler runs on this thread with the user's ids and groups */
    sigfillset(&all);
    if ((e = pthread_sigmask(SIG_SETMASK, &all, &saved)) != 0) {
        free(groups);
        errno = e;
        return -1;
    }
    was_uid = (uid_t)setfsuid((uid_t)-1);
    was_gid = (gid_t)setfsgid((gid_t)-1);
    e = EPERM;
    if (become_for_files(uid, gid) == 0) {
        fd = openat(dir, name, flags, mode);
        e = fd < 0 ? errno : 0;
    }
    /* not back to root's: the thread would go on with the user's ids or groups for files; fail the open */
    if (come_back(was_uid, was_gid, groups, n_groups) != 0 && fd >= 0) {
        close(fd);
        fd = -1;
        e = EPERM;
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    free(groups);
    errno = e;
    return fd;
}
