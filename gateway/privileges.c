/*
 * What the process may do and hold: the user it runs as once root has bound and loaded what only root
 * may (and `cmpgw check`'s view of that, as the user), and its limit of open files against what the
 * configuration may hold open.
 */
#include "gateway/privileges.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h> /* setgroups */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/conf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/user.h"
#include "upstream/upstream.h"

/*
 * Keeps the secrets in this process's memory (keys, the Vault token, PBM secrets, passphrases) out of
 * a core file and away from other processes of its user (ptrace, /proc/<pid>/mem): a crash would
 * otherwise write them to disk, and a process of the same user could read them. The kernel makes a
 * process dumpable again when it changes its user (fs.suid_dumpable decides then, 2 where
 * systemd-coredump is installed): called again after setuid.
 */
int gw_not_dumpable(void)
{
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
        return 0;
    fprintf(stderr, "cmpgw: cannot keep the process from dumping core (prctl PR_SET_DUMPABLE): %s\n",
            strerror(errno));
    return -1;
}

/*
 * Becomes |cfg|'s user and group for good (the process is root): the ids its load looked up as root
 * (gw_config_resolve_ids, which a failed lookup fails), those its files were judged against. 0, or
 * GW_ERR_FORBIDDEN with the reason logged where the change failed.
 */
static int become_user(const struct gw_config *cfg)
{
    uid_t uid = cfg->uid;
    gid_t gid = cfg->gid;

    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        gw_log(GW_LOG_ERROR, "privileges", "cannot become user %s: %s", cfg->user, strerror(errno));
        return GW_ERR_FORBIDDEN;
    }
    /* the load refuses a user of uid 0: this stops a process that could take root back all the same */
    if (setuid(0) == 0) {
        gw_log(GW_LOG_ERROR, "privileges", "as user %s (uid %ld), the process can still become root",
               cfg->user, (long)uid);
        return GW_ERR_FORBIDDEN;
    }
    if (gw_not_dumpable() != 0)
        return GW_ERR_FORBIDDEN;
    gw_log(GW_LOG_INFO, "privileges", "running as user %s (uid %ld, gid %ld)", cfg->user, (long)uid,
           (long)gid);
    return 0;
}

/* What the gateway reads or writes after start is within reach of the user it now runs as. */
static int check_access(const struct gw_config *cfg)
{
    char err[GW_ERR_LEN];
    struct gw_config *again;
    int rc = 0;

    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        if (gw_upstream_conf_access(&cfg->upstreams[i], err) != 0) {
            gw_log(GW_LOG_ERROR, "privileges", "as user %s, %s", cfg->user, err);
            rc = -1;
        }
    }
    /* a reload reads every file again, as this user: keys only root may read serve, but do not reload */
    if ((again = gw_config_load(cfg->path, err)) == NULL)
        gw_log(GW_LOG_WARN, "privileges", "as user %s, a reload would be refused: %s", cfg->user, err);
    gw_config_free(again);
    return rc;
}

/*
 * An audit log that is there and that this process (the user, root given up) cannot open to append: the
 * next reopen (SIGUSR1, a rotation's) would fail and take readiness down. A start as root gives the
 * log it creates to the user; one an earlier start or root by hand made is root's. 0, or -1 with |err|.
 */
static int check_audit_reopen(const struct gw_config *cfg, char *err)
{
    char shown[GW_ERR_LEN];
    struct stat st;
    int fd, why;

    /* absent (the start makes it) or out of this user's sight: not the file's own refusal */
    if (cfg->audit.file == NULL || lstat(cfg->audit.file, &st) != 0)
        return 0;
    fd = open(cfg->audit.file, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    why = errno;
    if (fd >= 0)
        close(fd);
    if (fd >= 0 || (why != EACCES && why != EPERM)) /* the rest the start refuses itself */
        return 0;
    gw_conf_show_file(cfg->audit.file, shown, sizeof(shown));
    gw_conf_bprintf(err, GW_ERR_LEN,
                    "as user %s, audit.file \"%s\" (owned by uid %ld) cannot be opened to append: %s; a "
                    "reopen (SIGUSR1, a rotation) would fail: chown it to %s",
                    cfg->user, shown, (long)st.st_uid, strerror(why), cfg->user);
    return -1;
}

/* Why a process of this euid may not run |cfg|, or NULL: root without "user" stops unless "run_as_root". */
const char *gw_root_refusal(const struct gw_config *cfg)
{
    if (geteuid() != 0 || cfg->user != NULL || cfg->run_as_root)
        return NULL;
    return "refusing to run as root: set \"user\" (root binds and loads keys, then the gateway runs as that "
           "user) or \"run_as_root\": true";
}

/*
 * Root is needed only to bind low ports and read keys only root may read, both done by now (files
 * read again later must be readable by the user: check_access). With "user", the process becomes
 * that user (and "group", or the user's own group) for good; without it, a process started as
 * root stops unless the configuration says "run_as_root" (root_refusal, which `cmpgw check` asks too).
 */
int gw_drop_privileges(const struct gw_config *cfg)
{
    const char *why = gw_root_refusal(cfg);
    char err[GW_ERR_LEN];
    int rc;

    if (geteuid() != 0) {
        if (cfg->user != NULL)
            gw_log(GW_LOG_WARN, "privileges", "not started as root: \"user\": \"%s\" has nothing to drop",
                   cfg->user);
        return 0;
    }
    if (why != NULL) {
        gw_log(GW_LOG_ERROR, "privileges", "%s", why);
        return GW_ERR_INVAL;
    }
    if (cfg->user == NULL)
        return 0;
    if ((rc = become_user(cfg)) != 0)
        return rc;
    if (check_access(cfg) != 0)
        return GW_ERR_INVAL;
    if (check_audit_reopen(cfg, err) != 0) /* open already, the log serves until it is rotated */
        gw_log(GW_LOG_WARN, "privileges", "%s", err);
    return 0;
}

/* The child of check_as_user: what a start checks as the user, and that the audit log can be reopened. */
static int checked_as_user(const struct gw_config *cfg)
{
    char err[GW_ERR_LEN];

    if (become_user(cfg) != 0 || check_access(cfg) != 0)
        return -1;
    if (check_audit_reopen(cfg, err) != 0) {
        gw_log(GW_LOG_ERROR, "privileges", "%s", err);
        return -1;
    }
    return 0;
}

/*
 * Raises the soft RLIMIT_NOFILE to the hard one where |cfg| may hold more descriptors than it allows
 * (gw_config_fds), as h2o and nginx's worker_rlimit_nofile do: a soft limit under max_connections would
 * fail connections at accept. To the hard limit, not to the count: a reload may add listeners and
 * upstreams, and a soft limit reserves nothing. Nothing here selects on a descriptor (select(2) and its
 * FD_SETSIZE), so no descriptor is too high for its poll. The hard limit is the operator's (LimitNOFILE);
 * below the count, the load said so (gw_config_warn_fds). Up to the hard limit needs no privilege: a
 * reload after root was given up raises it too.
 */
void gw_fit_fd_limit(const struct gw_config *cfg)
{
    struct gw_config_fds n;
    struct rlimit rl;
    rlim_t was;

    gw_config_fds(cfg, &n);
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= n.total ||
        rl.rlim_cur >= rl.rlim_max)
        return;
    was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        gw_log(GW_LOG_WARN, "fd_limit",
               "the configuration may hold %zu files open at once, above the soft limit of open files "
               "(RLIMIT_NOFILE) of %llu, which cannot be raised to the hard limit of %llu: %s",
               n.total, (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
        return;
    }
    gw_log(GW_LOG_INFO, "fd_limit",
           "raised the soft limit of open files (RLIMIT_NOFILE) from %llu to the hard limit of %llu: the "
           "configuration may hold %zu files open at once",
           (unsigned long long)was, (unsigned long long)rl.rlim_max, n.total);
}

/* `cmpgw check` as root with "user": the checks of check_access, as that user, in a child. */
int gw_check_as_user(const struct gw_config *cfg)
{
    pid_t pid;
    int status;

    if (geteuid() != 0 || cfg->user == NULL)
        return 0;
    if ((pid = fork()) < 0)
        return -1;
    if (pid == 0)
        _exit(checked_as_user(cfg) == 0 ? 0 : 1);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* A limit as printed: its number, or "unlimited". */
static const char *limit_str(rlim_t v, char *buf, size_t cap)
{
    if (v == RLIM_INFINITY)
        snprintf(buf, cap, "unlimited");
    else
        snprintf(buf, cap, "%llu", (unsigned long long)v);
    return buf;
}

/* What the descriptors |cfg| may hold ask of this process's RLIMIT_NOFILE (a service's: its LimitNOFILE);
   a hard limit below them is the load's warning (gw_config_warn_fds). */
void gw_show_fds(const char *path, const struct gw_config *cfg)
{
    struct gw_config_fds n;
    struct rlimit rl;
    char soft[24], hard[24];

    gw_config_fds(cfg, &n);
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    printf("%s: open files: the configuration may hold %zu at once; this process's limit (RLIMIT_NOFILE) is "
           "%s soft, %s hard, and a start raises the soft one to the hard one when it is below (a service's "
           "limits are its LimitNOFILE)\n",
           path, n.total, limit_str(rl.rlim_cur, soft, sizeof(soft)),
           limit_str(rl.rlim_max, hard, sizeof(hard)));
}
