/*
 * Listening sockets handed from a running gateway to its successor over a Unix socket (handover.h).
 *
 * The exchange, on one stream connection opened by the successor:
 *   predecessor -> successor   "CMPGW-HANDOVER 1 <n> confirm\n" with <n> listening sockets (SCM_RIGHTS)
 *   successor -> predecessor   "ready confirm\n" once it serves them (or it closes: the predecessor
 *                              serves on)
 *   predecessor -> successor   "draining\n": it stops accepting (or it closes: the successor stops)
 * A gateway of an earlier version sends no " confirm" (and drains on "ready\n", confirming nothing),
 * or reads past it and answers "ready\n" (and serves on whatever follows): each is answered as it
 * expects, so that a hand-over between versions goes either way, unconfirmed.
 *
 * The confirmation keeps the two from both serving for good: a predecessor that gave up waiting
 * (GW_HANDOVER_READY_SECS) serves on and closes, and a successor that is not told "draining"
 * within GW_HANDOVER_CONFIRM_SECS of its "ready" stops. The successor's socket takes the
 * hand-over path only once it is told, so that a successor that stops leaves the path to the
 * gateway that serves on.
 *
 * A predecessor told to stop (SIGTERM) after it sent the sockets stops accepting whatever comes: it
 * says "draining" at once, before any "ready" (the successor reads it after its own "ready", or
 * finds it there when that "ready" finds the connection closed), and waits GW_HANDOVER_STOP_WAIT_SECS more
 * for the "ready", to answer what still arrives on its open connections as for a successor. A
 * successor whose predecessor closed without "draining" and then exited serves on: nobody else does.
 */
#include "gateway/handover.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HANDOVER_MAGIC "CMPGW-HANDOVER 1 "
#define HANDOVER_CONFIRM " confirm\n"
#define HANDOVER_READY "ready\n"                 /* from a successor of an earlier version */
#define HANDOVER_READY_CONFIRM "ready confirm\n" /* from one that waits for "draining" */
#define HANDOVER_DRAINING "draining\n"

struct gw_handover {
    char *path, *tmp; /* |tmp|: where the socket is bound until publish() renames it to |path| */
    int fd;           /* the listening Unix socket */
    dev_t dev;
    ino_t ino; /* of the socket's file as this gateway bound it */
    bool published;
    struct gw_server *server;
    pthread_t tid;
    atomic_bool done, stopping;
    int wake[2]; /* a pipe: readable once gw_handover_stop began */
};

static int unix_addr(const char *path, struct sockaddr_un *a)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(a->sun_path))
        return GW_ERR_INVAL;
    memcpy(a->sun_path, path, strlen(path) + 1);
    return 0;
}

static void set_timeout(int fd, int secs)
{
    struct timeval tv = {secs, 0};

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * Whoever may add names to the socket's directory could rename the running gateway's socket away
 * and put one of their own at its name, or take the name first: the rule of the files the gateway
 * writes (gw_conf_check_dir) keeps the directory to |owner| and root, or to each name's owner.
 */
int gw_handover_check(const char *path, uid_t owner, char *err)
{
    return gw_conf_check_dir("handover_socket", path, owner, err);
}

/* ---- the successor's side ---- */

/* Reads the predecessor's message: the header and the sockets. 0 or an error with |err|. */
static int receive_fds(int fd, const char *path, struct gw_inherited *out, bool *confirms, char *err)
{
    char buf[64] = "", ctl[CMSG_SPACE(sizeof(int) * GW_MAX_HANDOVER_FDS)];
    struct iovec iov = {buf, sizeof(buf) - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    struct cmsghdr *cm;
    size_t n = 0, want;
    ssize_t got;
    char *end;

    while ((got = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    for (cm = got > 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            if ((out->fds = calloc(n + 1, sizeof(int))) == NULL)
                n = 0; /* the descriptors leak into a start that fails anyway */
            else
                memcpy(out->fds, CMSG_DATA(cm), n * sizeof(int));
            break;
        }
    }
    out->n = n;
    if (got <= 0 || strncmp(buf, HANDOVER_MAGIC, strlen(HANDOVER_MAGIC)) != 0) {
        snprintf(err, GW_ERR_LEN, "handover_socket %s: the running gateway sent no sockets (%s)", path,
                 got < 0 ? strerror(errno) : "not a hand-over");
        return GW_ERR_IO;
    }
    want = strtoul(buf + strlen(HANDOVER_MAGIC), &end, 10);
    if (want != n || (msg.msg_flags & MSG_CTRUNC) != 0 || n == 0) {
        snprintf(err, GW_ERR_LEN, "handover_socket %s: %zu of %zu listening sockets received", path, n, want);
        return GW_ERR_IO;
    }
    *confirms = strcmp(end, HANDOVER_CONFIRM) == 0;
    return 0;
}

/*
 * Whether the process that listens at the other end of |fd| may hand this gateway its sockets: the
 * kernel's record of who called listen() there, not the socket file (anybody able to create it could
 * otherwise give the gateway a listener they also accept() from). |*uid|: the peer's, or -1.
 */
static bool peer_may_hand_over(int fd, uid_t user, long *uid, pid_t *pid)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    *uid = -1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred))
        return false;
    *uid = (long)cred.uid;
    *pid = cred.pid;
    return cred.uid == user || cred.uid == 0;
}

int gw_handover_take(const char *path, uid_t user, struct gw_inherited *out, struct gw_handover_peer *peer,
                     char *err)
{
    struct sockaddr_un a;
    long uid;
    int fd, e;

    *peer = (struct gw_handover_peer){-1, false, 0};
    *out = (struct gw_inherited){NULL, 0};
    if (unix_addr(path, &a) != 0 || (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        snprintf(err, GW_ERR_LEN, "handover_socket %s: %s", path, strerror(errno));
        return GW_ERR_IO;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return 0; /* nobody to take over from: bind */
        snprintf(err, GW_ERR_LEN, "handover_socket %s: %s", path, strerror(e));
        return GW_ERR_IO;
    }
    if (!peer_may_hand_over(fd, user, &uid, &peer->pid)) {
        snprintf(err, GW_ERR_LEN,
                 "handover_socket %s: refused the sockets of uid %ld: only this gateway's user (uid %ld) or "
                 "root may hand them over",
                 path, uid, (long)user);
        close(fd);
        return GW_ERR_IO;
    }
    set_timeout(fd, GW_HANDOVER_TAKE_SECS);
    if (receive_fds(fd, path, out, &peer->confirms, err) != 0) {
        for (size_t i = 0; i < out->n; i++)
            close(out->fds[i]);
        free(out->fds);
        *out = (struct gw_inherited){NULL, 0};
        close(fd);
        return GW_ERR_IO;
    }
    gw_log(GW_LOG_INFO, "handover", "took %zu listening sockets from the gateway at %s", out->n, path);
    peer->fd = fd;
    return 0;
}

/*
 * Whether the predecessor |pid|, which closed the connection unconfirmed, has exited (within
 * GW_HANDOVER_GONE_WAIT_MS: its connection closes as it exits, a moment before it is gone): then it
 * serves nothing. A pid the kernel cannot name counts as alive, so that a doubt stops this gateway.
 */
static bool predecessor_gone(pid_t pid)
{
    struct pollfd p = {-1, POLLIN, 0};
    int rc;

    if (pid <= 0)
        return false;
    if ((p.fd = pidfd_open(pid, 0)) < 0)
        return errno == ESRCH;
    while ((rc = poll(&p, 1, GW_HANDOVER_GONE_WAIT_MS)) < 0 && errno == EINTR)
        ;
    close(p.fd);
    return rc == 1;
}

/* |peer| closed without confirming: 0 if it exited (logged), else an error with |err| saying |what|. */
static int unconfirmed(struct gw_handover_peer peer, const char *what, char *err)
{
    if (predecessor_gone(peer.pid)) {
        gw_log(GW_LOG_WARN, "handover",
               "the predecessor (pid %ld) %s and exited: this gateway serves the listening sockets alone",
               (long)peer.pid, what);
        return 0;
    }
    snprintf(err, GW_ERR_LEN, "the predecessor %s: it serves on", what);
    return GW_ERR_IO;
}

/* Whether the rest of "draining" (|have| of |want| bytes in |buf| already) waits unread on |fd|. */
static bool late_draining(int fd, char *buf, size_t have, size_t want)
{
    ssize_t more = recv(fd, buf + have, want - have, MSG_DONTWAIT);

    return more > 0 && have + (size_t)more == want && memcmp(buf, HANDOVER_DRAINING, want) == 0;
}

/* The successor's "ready" and the predecessor's confirmation; closes |peer|. 0 or an error with |err|. */
static int ready(struct gw_handover_peer peer, char *err)
{
    const char *say = peer.confirms ? HANDOVER_READY_CONFIRM : HANDOVER_READY;
    char buf[sizeof(HANDOVER_DRAINING)] = "", what[128];
    size_t want = strlen(HANDOVER_DRAINING);
    ssize_t got = 0;
    int rc, sent;

    if (peer.fd < 0)
        return 0;
    set_timeout(peer.fd, GW_HANDOVER_CONFIRM_SECS);
    sent = send(peer.fd, say, strlen(say), MSG_NOSIGNAL) == (ssize_t)strlen(say) ? 0 : errno;
    /* a predecessor told to stop said "draining" before it closed: it is read even when "ready" was not */
    if (sent != 0 && !peer.confirms) {
        snprintf(what, sizeof(what), "was not told that this gateway serves (%s)", strerror(sent));
        rc = unconfirmed(peer, what, err);
        goto out;
    }
    if (!peer.confirms) { /* an earlier version drains on "ready", or it serves on and is gone */
        rc = 0;
        goto out;
    }
    while ((got = recv(peer.fd, buf, want, MSG_WAITALL)) < 0 && errno == EINTR)
        ;
    if (got == (ssize_t)want && memcmp(buf, HANDOVER_DRAINING, want) == 0) {
        rc = 0;
        goto out;
    }
    snprintf(what, sizeof(what), "did not confirm that it drains (%s)",
             got < 0 ? strerror(errno) : "it closed the connection");
    /* From here its "draining" fails (EPIPE), and it serves on; one it sent before is read still (a
       closed connection's data stays readable), so that the two never both stop. */
    shutdown(peer.fd, SHUT_RDWR);
    if (late_draining(peer.fd, buf, got > 0 ? (size_t)got : 0, want)) {
        rc = 0;
        goto out;
    }
    rc = unconfirmed(peer, what, err);
out:
    close(peer.fd);
    return rc;
}

/* ---- the running gateway's side ---- */

/* Sends every listening socket to |conn|. 0 or -1 (logged). */
static int send_fds(struct gw_handover *h, int conn, pid_t pid)
{
    char head[64], ctl[CMSG_SPACE(sizeof(int) * GW_MAX_HANDOVER_FDS)];
    struct iovec iov = {head, 0};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl};
    struct cmsghdr *cm;
    int *fds = NULL, rc = -1;
    size_t n = 0;

    if (gw_server_listen_fds(h->server, &fds, &n) != 0 || n == 0 || n > GW_MAX_HANDOVER_FDS) {
        gw_log(GW_LOG_ERROR, "handover", "cannot hand %zu listening sockets to pid %ld", n, (long)pid);
        goto out;
    }
    iov.iov_len = (size_t)snprintf(head, sizeof(head), HANDOVER_MAGIC "%zu" HANDOVER_CONFIRM, n);
    memset(ctl, 0, sizeof(ctl));
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
    if (sendmsg(conn, &msg, MSG_NOSIGNAL) != (ssize_t)iov.iov_len) {
        gw_log(GW_LOG_ERROR, "handover", "sending the listening sockets to pid %ld: %s", (long)pid,
               strerror(errno));
        goto out;
    }
    gw_log(GW_LOG_INFO, "handover", "%zu listening sockets sent to pid %ld; waiting for it to serve", n,
           (long)pid);
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        close(fds[i]); /* copies: the server's stay open */
    free(fds);
    return rc;
}

static bool say_draining(int conn)
{
    return send(conn, HANDOVER_DRAINING, strlen(HANDOVER_DRAINING), MSG_NOSIGNAL) ==
           (ssize_t)strlen(HANDOVER_DRAINING);
}

static time_t now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/*
 * Reads the successor's "ready" into |buf| (|len| with its NUL), waiting GW_HANDOVER_READY_SECS; once
 * gw_handover_stop began, this gateway stops accepting whatever the successor does: |*told| it
 * "draining" at once, and the wait ends GW_HANDOVER_STOP_WAIT_SECS later. What read() returns (-1 with
 * errno ETIMEDOUT when the wait ended).
 */
static ssize_t wait_ready(struct gw_handover *h, int conn, char *buf, size_t len, bool *told)
{
    struct pollfd p[2] = {{conn, POLLIN, 0}, {h->wake[0], POLLIN, 0}};
    time_t end = now_s() + GW_HANDOVER_READY_SECS;
    ssize_t got;

    for (;;) {
        if (p[1].fd >= 0 && atomic_load(&h->stopping)) {
            p[1].fd = -1; /* the pipe stays readable */
            *told = say_draining(conn);
            if (end > now_s() + GW_HANDOVER_STOP_WAIT_SECS)
                end = now_s() + GW_HANDOVER_STOP_WAIT_SECS;
        }
        if (now_s() >= end) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (poll(p, 2, (int)(end - now_s()) * 1000) < 0 && errno != EINTR)
            return -1;
        if (p[0].revents != 0)
            break;
    }
    while ((got = read(conn, buf, len - 1)) < 0 && errno == EINTR)
        ;
    return got;
}

/* One successor: may it have the sockets, are they sent, does it serve. True once it does. */
static bool serve_one(struct gw_handover *h, int conn)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    char buf[16] = "";
    ssize_t got;
    bool confirm, told = false;

    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != geteuid() && cred.uid != 0)) {
        gw_log(GW_LOG_WARN, "handover",
               "refused a hand-over to uid %ld: only this user or root may take the sockets",
               len == sizeof(cred) ? (long)cred.uid : -1L);
        return false;
    }
    set_timeout(conn, GW_HANDOVER_STOP_WAIT_SECS); /* the sends */
    if (send_fds(h, conn, cred.pid) != 0)
        return false;
    got = wait_ready(h, conn, buf, sizeof(buf), &told);
    confirm = got > 0 && strcmp(buf, HANDOVER_READY_CONFIRM) == 0;
    if (!confirm && (got < 6 || strncmp(buf, HANDOVER_READY, 6) != 0)) {
        gw_log(GW_LOG_WARN, "handover", "pid %ld did not start serving (%s); this gateway %s", (long)cred.pid,
               got < 0 ? strerror(errno) : "it closed the connection",
               told ? "stops, as it was told to, without a successor" : "serves on");
        return false;
    }
    /* unconfirmed, the successor stops: this one must then serve on */
    if (confirm && !told && !say_draining(conn)) {
        gw_log(GW_LOG_WARN, "handover",
               "pid %ld was not told that this gateway drains (%s); this gateway serves on", (long)cred.pid,
               strerror(errno));
        return false;
    }
    gw_log(GW_LOG_INFO, "handover", "pid %ld serves the listening sockets; this gateway drains and stops",
           (long)cred.pid);
    return true;
}

static void *handover_main(void *arg)
{
    struct gw_handover *h = arg;
    int conn;

    while (!atomic_load(&h->stopping)) {
        if ((conn = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break; /* shut down by gw_handover_stop */
        }
        bool ok = serve_one(h, conn);
        close(conn);
        if (ok) {
            atomic_store(&h->done, true);
            if (!atomic_load(&h->stopping))
                kill(getpid(), SIGTERM); /* main drains, knowing a successor serves */
            break;
        }
    }
    return NULL;
}

/*
 * Binds a temporary name beside |h->path|, which publish() renames over it, so that the
 * path never points nowhere, and points to a predecessor until this gateway took over. The
 * file is 0600 from its creation: Linux gives the file bind() creates the mode of the socket's own
 * inode (less the umask), so fchmod before bind leaves no moment with the umask's mode, and no
 * chmod by name follows whatever another process put at that name meanwhile. A process-wide umask
 * would do the same but this runs beside the workers, which create files of their own.
 */
static int bind_path(struct gw_handover *h, char *err)
{
    struct sockaddr_un a;
    struct stat st;
    size_t len = strlen(h->path) + 32;

    if ((h->tmp = malloc(len)) == NULL) {
        snprintf(err, GW_ERR_LEN, "handover_socket: out of memory");
        return GW_ERR_NOMEM;
    }
    snprintf(h->tmp, len, "%s.%ld", h->path, (long)getpid());
    if (unix_addr(h->tmp, &a) != 0) {
        snprintf(err, GW_ERR_LEN, "handover_socket %s: the path is too long", h->path);
        return GW_ERR_INVAL;
    }
    (void)unlink(h->tmp);
    if ((h->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || fchmod(h->fd, 0600) != 0 ||
        bind(h->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(h->fd, 4) != 0 ||
        lstat(h->tmp, &st) != 0) {
        snprintf(err, GW_ERR_LEN, "handover_socket %s: %s", h->path, strerror(errno));
        (void)unlink(h->tmp);
        return GW_ERR_IO;
    }
    h->dev = st.st_dev;
    h->ino = st.st_ino;
    return 0;
}

/* Renames the socket from its temporary name over |h->path|. 0 or an error with |err|. */
static int publish(struct gw_handover *h, char *err)
{
    if (h == NULL || h->published)
        return 0;
    if (rename(h->tmp, h->path) != 0) {
        snprintf(err, GW_ERR_LEN, "handover_socket %s: %s", h->path, strerror(errno));
        return GW_ERR_IO;
    }
    h->published = true;
    return 0;
}

int gw_handover_finish(struct gw_handover *h, struct gw_handover_peer *peer, char *err)
{
    bool took_over = peer->fd >= 0;
    int rc = ready(*peer, err);

    peer->fd = -1;
    if (rc != 0)
        return rc;
    if (publish(h, err) != 0) {
        if (!took_over)
            return GW_ERR_IO;
        /* the predecessor drains: this gateway is the only one serving, and serves on */
        gw_log(GW_LOG_ERROR, "handover", "%s: this gateway serves on, but no successor can find it", err);
    }
    return 0;
}

struct gw_handover *gw_handover_serve(const char *path, struct gw_server *server, char *err)
{
    struct gw_handover *h = calloc(1, sizeof(*h));
    sigset_t all, saved;
    int rc;

    if (h == NULL || (h->path = strdup(path)) == NULL) {
        free(h);
        snprintf(err, GW_ERR_LEN, "handover_socket: out of memory");
        return NULL;
    }
    h->fd = -1;
    h->wake[0] = h->wake[1] = -1;
    h->server = server;
    if (pipe2(h->wake, O_CLOEXEC) != 0) {
        snprintf(err, GW_ERR_LEN, "handover_socket: %s", strerror(errno));
        gw_handover_stop(h);
        return NULL;
    }
    if (gw_handover_check(path, geteuid(), err) != 0 || bind_path(h, err) != 0) {
        gw_handover_stop(h);
        return NULL;
    }
    sigfillset(&all); /* signals belong to main */
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    rc = pthread_create(&h->tid, NULL, handover_main, h);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (rc != 0) {
        snprintf(err, GW_ERR_LEN, "handover_socket: cannot start a thread");
        gw_handover_stop(h);
        return NULL;
    }
    return h;
}

bool gw_handover_done(struct gw_handover *h)
{
    return h != NULL && atomic_load(&h->done);
}

bool gw_handover_stop(struct gw_handover *h)
{
    struct stat st;
    const char *name;
    bool done;

    if (h == NULL)
        return false;
    atomic_store(&h->stopping, true);
    if (h->fd >= 0)
        shutdown(h->fd, SHUT_RDWR); /* wakes accept() */
    /* wakes a wait for "ready", which is not cut short: the successor that has the sockets is told
       "draining" and waited for (GW_HANDOVER_STOP_WAIT_SECS), so that it serves them */
    if (h->wake[1] >= 0 && write(h->wake[1], "s", 1) != 1)
        gw_log(GW_LOG_ERROR, "handover", "waking the hand-over's thread: %s", strerror(errno));
    if (h->tid != 0)
        pthread_join(h->tid, NULL);
    if (h->fd >= 0)
        close(h->fd);
    for (int i = 0; i < 2; i++)
        if (h->wake[i] >= 0)
            close(h->wake[i]);
    done = atomic_load(&h->done);
    /* a successor renames (or renamed) its own socket over the path: that one stays */
    name = h->published ? h->path : h->tmp;
    if (h->ino != 0 && (!h->published || !done) && lstat(name, &st) == 0 && st.st_dev == h->dev &&
        st.st_ino == h->ino)
        (void)unlink(name);
    free(h->tmp);
    free(h->path);
    free(h);
    return done;
}
