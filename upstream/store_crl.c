/*
 * The local issuer's CRL on disk (store_int.h: what it shares with store.c): crl.state (the number and
 * thisUpdate of the last CRL signed), crl.gen (the generation instances sharing the store tell each other
 * a revocation by), crl.lock (held while either is changed and revoked/ read), the next CRL's number and
 * entries taken under it, and their check with the store at start and in `cmpgw check`.
 */
#include "upstream/store.h"
#include "base/clock.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "upstream/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CRL_STATE_FILE "crl.state"
#define CRL_GEN_FILE "crl.gen"
#define CRL_LOCK_FILE "crl.lock"
#define CRL_STATE_MAX 128

/* ---- the local issuer's CRL state ---- */

/* Reads the small file <dirfd>/|name| into |buf| as a string. Its length, or -1 with errno. */
static ssize_t read_small(int dirfd, const char *name, char *buf, size_t cap)
{
    ssize_t len;
    int fd, e;

    if ((fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return -1;
    len = read(fd, buf, cap - 1);
    e = errno;
    close(fd);
    errno = e;
    if (len >= 0)
        buf[len] = '\0';
    return len;
}

/* Replaces <dirfd>/|name| with |rec| as a whole: after a crash it holds the old or the new. 0, or -1 with
 * errno. */
static int replace_file(int dirfd, const char *name, const char *rec, size_t len)
{
    char tmp[TMP_NAME_MAX];
    int e;

    store_tmp_name(tmp, sizeof(tmp), name);
    if (store_write_tmp(dirfd, tmp, rec, len) != 0)
        return -1;
    if (renameat(dirfd, tmp, dirfd, name) == 0 && fsync(dirfd) == 0)
        return 0;
    e = errno;
    unlinkat(dirfd, tmp, 0);
    errno = e;
    return -1;
}

int gw_store_crl_state_get(const char *dir, uint64_t *number, time_t *this_update, char *err)
{
    char buf[CRL_STATE_MAX];
    const char *p = buf;
    long long n, t;
    ssize_t len;
    int dirfd;

    *number = 0;
    *this_update = 0;
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        goto io;
    len = read_small(dirfd, CRL_STATE_FILE, buf, sizeof(buf));
    close(dirfd);
    if (len < 0 && errno == ENOENT)
        return GW_ERR_NOT_FOUND;
    if (len < 0)
        goto io;
    /* "number=<decimal> this_update=<unix seconds>\n" and nothing else */
    if (!store_parse_field(&p, "number", 1, INT64_MAX, &n) ||
        !store_parse_field(&p, "this_update", 0, INT64_MAX, &t) || *p != '\0') {
        store_fail(err, dir, ": %s is malformed: refusing to guess a CRL number", CRL_STATE_FILE);
        return GW_ERR_IO;
    }
    *number = (uint64_t)n;
    *this_update = (time_t)t;
    return 0;
io:
    store_fail(err, dir, ": cannot read %s: %s", CRL_STATE_FILE, strerror(errno));
    return GW_ERR_IO;
}

int gw_store_crl_state_put(const char *dir, uint64_t number, time_t this_update, char *err)
{
    char rec[CRL_STATE_MAX];
    int dirfd, len, rc = GW_ERR_IO;

    len = snprintf(rec, sizeof(rec), "number=%llu this_update=%lld\n", (unsigned long long)number,
                   (long long)this_update);
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0 &&
        replace_file(dirfd, CRL_STATE_FILE, rec, (size_t)len) == 0)
        rc = 0;
    if (rc != 0)
        store_fail(err, dir, ": cannot write %s: %s", CRL_STATE_FILE, strerror(errno));
    if (dirfd >= 0)
        close(dirfd);
    return rc;
}

/* ---- what instances sharing the store tell each other ---- */

/*
 * crl.lock as found: a regular file of the gateway's user (|owner|, the one it runs as) or root that its
 * group and others may not open, as crl_lock creates it. One left 0644 (restored from a backup) or
 * another's lets any local user hold it. 0, or GW_ERR_FORBIDDEN with |err|.
 */
static int check_lock_file(int fd, const char *dir, uid_t owner, char *err)
{
    char path[PATH_MAX];
    struct stat st;

    if (fstat(fd, &st) != 0) {
        store_fail(err, dir, ": cannot read %s: %s", CRL_LOCK_FILE, strerror(errno));
        return GW_ERR_IO;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        store_fail(err, dir, ": %s is not a regular file of mode 0600 (mode %04o): remove it", CRL_LOCK_FILE,
                   (unsigned)(st.st_mode & 07777));
        return GW_ERR_FORBIDDEN;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, CRL_LOCK_FILE);
    return gw_conf_check_owner("store", "", path, &st, owner, err);
}

/*
 * Opens <dirfd>/crl.lock, judges it (check_lock_file) and takes its exclusive lock into *fd (closing it
 * lets go): 0, or a gw_err with |err|: GW_ERR_TIMEOUT when another holder kept it GW_CRL_LOCK_WAIT_MS.
 * Read-write, as NFS locks it the way fcntl(2) does. Never a blocking wait: a holder that is frozen
 * (SIGSTOP, a paused container) or stuck in NFS I/O would hold every worker asking for a CRL or
 * revoking, and the stop behind them.
 */
static int crl_lock(int dirfd, const char *dir, int *fd, char *err)
{
    uint64_t deadline = gw_now_ms() + GW_CRL_LOCK_WAIT_MS, pause_ms = 1;
    int rc;

    if ((*fd = openat(dirfd, CRL_LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        store_fail(err, dir, ": cannot lock %s: %s", CRL_LOCK_FILE, strerror(errno));
        return GW_ERR_IO;
    }
    if ((rc = check_lock_file(*fd, dir, geteuid(), err)) != 0)
        goto fail;
    while (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EINTR && errno != EWOULDBLOCK) {
            store_fail(err, dir, ": cannot lock %s: %s", CRL_LOCK_FILE, strerror(errno));
            rc = GW_ERR_IO;
            goto fail;
        }
        if (errno == EWOULDBLOCK && gw_now_ms() >= deadline) {
            store_fail(err, dir, ": cannot lock %s: another holder kept it %d ms", CRL_LOCK_FILE,
                       GW_CRL_LOCK_WAIT_MS);
            rc = GW_ERR_TIMEOUT;
            goto fail;
        }
        gw_sleep_ms(pause_ms);
        pause_ms = pause_ms * 2 < GW_CRL_LOCK_PAUSE_MS ? pause_ms * 2 : GW_CRL_LOCK_PAUSE_MS;
    }
    return 0;
fail:
    close(*fd);
    *fd = -1;
    return rc;
}

/* The generation in <dirfd>/crl.gen: 0 and *gen (0 when there is none), GW_ERR_IO (errno), or GW_ERR_INVAL
   (malformed). */
static int read_gen(int dirfd, uint64_t *gen)
{
    char buf[CRL_STATE_MAX];
    const char *p = buf;
    long long g;

    *gen = 0;
    if (read_small(dirfd, CRL_GEN_FILE, buf, sizeof(buf)) < 0)
        return errno == ENOENT ? 0 : GW_ERR_IO;
    /* "generation=<decimal>\n" and nothing else */
    if (!store_parse_field(&p, "generation", 1, INT64_MAX, &g) || *p != '\0')
        return GW_ERR_INVAL;
    *gen = (uint64_t)g;
    return 0;
}

int gw_store_revocations_gen(const char *dir, uint64_t *gen, char *err)
{
    int dirfd, rc;

    *gen = 0;
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        store_fail(err, dir, ": %s", strerror(errno));
        return GW_ERR_IO;
    }
    rc = read_gen(dirfd, gen);
    if (rc == GW_ERR_IO)
        store_fail(err, dir, ": cannot read %s: %s", CRL_GEN_FILE, strerror(errno));
    else if (rc != 0)
        store_fail(err, dir, ": %s is malformed: remove it", CRL_GEN_FILE);
    close(dirfd);
    return rc == 0 ? 0 : GW_ERR_IO;
}

int gw_store_revocations_bump(const char *dir, char *err)
{
    char rec[CRL_STATE_MAX];
    struct timespec ts;
    uint64_t gen, now_us;
    int dirfd, lock = -1, len, rc = GW_ERR_IO;

    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        goto out;
    if ((rc = crl_lock(dirfd, dir, &lock, err)) != 0)
        goto done;
    rc = GW_ERR_IO;
    if (read_gen(dirfd, &gen) != 0 || gen >= INT64_MAX)
        gen = 0; /* replaced by one past the clock below */
    clock_gettime(CLOCK_REALTIME, &ts);
    now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    gen = gen + 1 > now_us ? gen + 1 : now_us;
    len = snprintf(rec, sizeof(rec), "generation=%llu\n", (unsigned long long)gen);
    if (replace_file(dirfd, CRL_GEN_FILE, rec, (size_t)len) == 0)
        rc = 0;
out:
    if (rc != 0)
        store_fail(err, dir, ": cannot write %s: %s", CRL_GEN_FILE, strerror(errno));
done:
    if (lock >= 0)
        close(lock);
    if (dirfd >= 0)
        close(dirfd);
    return rc;
}

int gw_store_crl_next(const char *dir, struct gw_store_crl_next *next, char *err)
{
    uint64_t last = 0;
    int dirfd, lock = -1, rc = GW_ERR_IO;

    next->gen = 0;
    next->last_update = 0;
    next->v = NULL;
    next->n = 0;
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        store_fail(err, dir, ": %s", strerror(errno));
        goto out;
    }
    if ((rc = crl_lock(dirfd, dir, &lock, err)) != 0)
        goto out;
    if ((rc = gw_store_revocations_gen(dir, &next->gen, err)) != 0)
        goto out;
    if ((rc = gw_store_crl_state_get(dir, &last, &next->last_update, err)) != 0 && rc != GW_ERR_NOT_FOUND)
        goto out;
    if (next->number <= last)
        next->number = last + 1; /* |last| is at most INT64_MAX */
    /* a peer's clock a little ahead (within what a reader allows): held to, so that the CRL with the higher
       number is not dated before the one it follows; further ahead, a clock's step: the clock is followed */
    if (next->last_update > next->this_update &&
        next->last_update - next->this_update <= GW_CRL_CLOCK_SKEW_SECS)
        next->this_update = next->last_update;
    if ((rc = gw_store_revocations(dir, next->this_update - GW_CRL_EXPIRED_KEEP_SECS, &next->v, &next->n,
                                   err)) != 0)
        goto out;
    rc = gw_store_crl_state_put(dir, next->number, next->this_update, err);
out:
    if (lock >= 0)
        close(lock);
    if (dirfd >= 0)
        close(dirfd);
    if (rc != 0) {
        free(next->v);
        next->v = NULL;
        next->n = 0;
    }
    return rc;
}

/* ---- judged with the store (gw_store_check) ---- */

/*
 * What the CRL is built from, as it would be read at run time: crl.lock (check_lock_file), crl.state,
 * crl.gen and every record of revoked/, so that a store restored from a backup, or damaged, is refused
 * as the gateway starts or is checked, not when its CRL is next asked for. 0, or an error with |err|
 * (|key|, then the file).
 */
int store_check_crl_files(const char *key, const char *dir, uid_t owner, char *err)
{
    char why[GW_ERR_LEN] = "";
    struct gw_store_revocation *v = NULL;
    uint64_t number, gen;
    time_t this_update;
    size_t n = 0;
    int dirfd, fd, rc = 0;

    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        store_fail(why, dir, ": %s", strerror(errno));
        rc = GW_ERR_IO;
        goto out;
    }
    /* O_NONBLOCK: a FIFO planted there must not hold the check */
    if ((fd = openat(dirfd, CRL_LOCK_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) >= 0) {
        rc = check_lock_file(fd, dir, owner, why);
        close(fd);
    } else if (errno != ENOENT) { /* made when the first CRL is */
        store_fail(why, dir, ": cannot open %s: %s: remove it", CRL_LOCK_FILE, strerror(errno));
        rc = GW_ERR_FORBIDDEN;
    }
    close(dirfd);
    if (rc == 0 && (rc = gw_store_crl_state_get(dir, &number, &this_update, why)) == GW_ERR_NOT_FOUND)
        rc = 0;
    if (rc == 0)
        rc = gw_store_revocations_gen(dir, &gen, why);
    /* with or without not_after, each record is parsed; those a CRL would leave out are not counted */
    if (rc == 0)
        rc = gw_store_revocations(dir, time(NULL) - GW_CRL_EXPIRED_KEEP_SECS, &v, &n, why);
    free(v);
out:
    if (rc != 0)
        gw_conf_bprintf(err, GW_ERR_LEN, "%s: %s", key, why);
    return rc;
}
