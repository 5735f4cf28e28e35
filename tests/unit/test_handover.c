/*
 * The hand-over: whom the new gateway takes listening sockets from, and the running gateway's socket
 * file, private from the moment it exists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "gateway/handover.h"
#include "gateway/listener_local.h"

#define NOBODY_UID 65534

/* What the file a bind() named was as bind returned (mode 0: no bind seen), and a name to swap in there. */
static struct {
    mode_t mode;
    const char *swap_in;
} bound;

/*
 * bind(2) as libc does it, and then a look at the file it made, before the caller can do anything
 * to it: what another process could connect to, or put in its place, at that moment. With
 * |bound.swap_in| set, that process does: a symbolic link to it takes the socket's name.
 */
int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    int (*real)(int, const struct sockaddr *, socklen_t) =
        (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    const struct sockaddr_un *a = (const struct sockaddr_un *)addr;
    char link[sizeof(a->sun_path) + 8];
    struct stat st;
    int rc = real(fd, addr, len);

    if (rc != 0 || a->sun_family != AF_UNIX || lstat(a->sun_path, &st) != 0)
        return rc;
    bound.mode = st.st_mode;
    if (bound.swap_in != NULL) {
        snprintf(link, sizeof(link), "%s.swap", a->sun_path);
        if (symlink(bound.swap_in, link) != 0 || rename(link, a->sun_path) != 0)
            fail_msg("cannot put a link at %s", a->sun_path);
    }
    return rc;
}

struct fake {
    char dir[64], path[96];
    pid_t pid;
    int hold; /* the child, once done, waits for this end of a pipe to close: it runs (serves) on */
};

/* The running gateway's message: one socket, as gateway/handover.c sends it, or as an earlier version did. */
static void send_one(int conn, bool earlier)
{
    char ctl[CMSG_SPACE(sizeof(int))],
        *head = earlier ? "CMPGW-HANDOVER 1 1\n" : "CMPGW-HANDOVER 1 1 confirm\n";
    struct iovec iov = {head, strlen(head)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    struct cmsghdr *cm;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(ctl, 0, sizeof(ctl));
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    (void)sendmsg(conn, &msg, MSG_NOSIGNAL);
    close(fd);
}

/* What the would-be predecessor does after it sent the socket. */
enum fake_answer {
    FAKE_CONFIRMS, /* reads "ready" and confirms "draining" */
    FAKE_SILENT,   /* reads "ready" and closes: it gave up and serves on */
    FAKE_GONE,     /* closes at once: it gave up before the successor was ready, and serves on */
    FAKE_EARLIER,  /* an earlier version: offers no confirmation, reads "ready" and drains */
    FAKE_STOPPED,  /* told to stop before the successor was ready: says "draining" at once and closes */
    FAKE_EXITS,    /* reads "ready" and exits without a word (killed) */
};

/*
 * A would-be predecessor in a child process, listening at f->path as |uid| (-1: this process's),
 * that hands one socket to whoever connects, does |answer| and exits 0 if it was told "ready" (after
 * fake_end, when it serves on).
 */
static void fake_start(struct fake *f, long uid, enum fake_answer answer)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int ready[2], hold[2], s, conn, rc;
    char buf[16] = "";

    snprintf(f->dir, sizeof(f->dir), "/tmp/cmpgw-handover-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/handover.sock", f->dir);
    if (uid >= 0)
        assert_int_equal(chown(f->dir, (uid_t)uid, (gid_t)-1), 0);
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(hold), 0);
    assert_true((f->pid = fork()) >= 0);
    if (f->pid == 0) {
        close(ready[0]);
        close(hold[1]);
        if (uid >= 0 && setuid((uid_t)uid) != 0)
            _exit(2);
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", f->path);
        if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 ||
            listen(s, 1) != 0 || write(ready[1], "l", 1) != 1)
            _exit(3);
        close(ready[1]);
        if ((conn = accept(s, NULL, NULL)) < 0)
            _exit(4);
        send_one(conn, answer == FAKE_EARLIER);
        if (answer == FAKE_STOPPED || answer == FAKE_GONE) {
            rc = answer == FAKE_GONE ? 6 : write(conn, "draining\n", 9) == 9 ? 0 : 7;
            close(conn);
            (void)read(hold[0], buf, 1); /* it drains, or serves on */
            _exit(rc);
        }
        if (answer == FAKE_EARLIER)
            _exit(read(conn, buf, sizeof(buf) - 1) == 6 && strcmp(buf, "ready\n") == 0 ? 0 : 5);
        if (read(conn, buf, sizeof(buf) - 1) != 14 || strcmp(buf, "ready confirm\n") != 0)
            _exit(5);
        if (answer == FAKE_EXITS)
            _exit(0);
        rc = answer == FAKE_SILENT || write(conn, "draining\n", 9) == 9 ? 0 : 7;
        close(conn);
        if (answer == FAKE_SILENT)
            (void)read(hold[0], buf, 1);
        _exit(rc);
    }
    close(hold[0]);
    f->hold = hold[1];
    close(ready[1]);
    assert_int_equal(read(ready[0], buf, 1), 1); /* it listens */
    close(ready[0]);
}

/* The child's exit status. */
static int fake_end(struct fake *f)
{
    int status;

    close(f->hold);
    while (waitpid(f->pid, &status, 0) < 0 && errno == EINTR)
        ;
    unlink(f->path);
    rmdir(f->dir);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Nobody at the path: start by binding. */
static void test_nobody_there(void **state)
{
    struct gw_inherited out;
    char err[GW_ERR_LEN] = "";
    struct gw_handover_peer peer;

    (void)state;
    assert_int_equal(gw_handover_take("/tmp/cmpgw-handover-none/handover.sock", geteuid(), &out, &peer, err),
                     0);
    assert_int_equal(out.n, 0);
    assert_int_equal(peer.fd, -1);
}

/*
 * A gateway of this user: its socket is taken, and it is told that it is served; it confirms that it
 * drains, or, of an earlier version, drains unasked (and is not waited for).
 */
static void test_same_user(void **state)
{
    static const enum fake_answer answers[] = {FAKE_CONFIRMS, FAKE_EARLIER};
    struct gw_handover_peer peer;
    struct gw_inherited out;
    struct fake f;
    char err[GW_ERR_LEN] = "";

    (void)state;
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        fake_start(&f, -1, answers[i]);
        assert_int_equal(gw_handover_take(f.path, geteuid(), &out, &peer, err), 0);
        assert_int_equal(out.n, 1);
        assert_true(peer.fd >= 0);
        assert_int_equal(peer.confirms, answers[i] == FAKE_CONFIRMS);
        close(out.fds[0]);
        free(out.fds);
        assert_int_equal(gw_handover_finish(NULL, &peer, err), 0);
        assert_int_equal(peer.fd, -1);
        assert_int_equal(fake_end(&f), 0);
    }
}

/*
 * A predecessor that does not confirm that it drains serves on, whether it read "ready" or gave up
 * before: the successor is told to stop, so that the two do not both serve for good.
 */
static void test_unconfirmed_stops(void **state)
{
    static const struct {
        enum fake_answer answer;
        int status;
    } cases[] = {{FAKE_SILENT, 0}, {FAKE_GONE, 6}};
    struct gw_inherited out;
    struct fake f;
    char err[GW_ERR_LEN];
    struct gw_handover_peer peer;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        fake_start(&f, -1, cases[i].answer);
        assert_int_equal(gw_handover_take(f.path, geteuid(), &out, &peer, err), 0);
        assert_int_equal(out.n, 1);
        close(out.fds[0]);
        free(out.fds);
        assert_int_equal(gw_handover_finish(NULL, &peer, err), GW_ERR_IO);
        assert_int_equal(peer.fd, -1);
        assert_non_null(strstr(err, "it serves on"));
        assert_int_equal(fake_end(&f), cases[i].status);
    }
}

/*
 * A predecessor that will not serve on leaves the successor serving: one told to stop before the
 * successor was ready (it said "draining" at once and closed, so that "ready" finds the connection
 * closed), or one that read "ready" and exited without a word.
 */
static void test_predecessor_gone_serves(void **state)
{
    static const enum fake_answer answers[] = {FAKE_STOPPED, FAKE_EXITS};
    struct gw_handover_peer peer;
    struct gw_inherited out;
    struct fake f;
    char err[GW_ERR_LEN] = "";

    (void)state;
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        fake_start(&f, -1, answers[i]);
        assert_int_equal(gw_handover_take(f.path, geteuid(), &out, &peer, err), 0);
        assert_int_equal(out.n, 1);
        close(out.fds[0]);
        free(out.fds);
        if (answers[i] == FAKE_STOPPED) { /* closed before "ready" */
            struct pollfd p = {peer.fd, POLLRDHUP, 0};
            assert_int_equal(poll(&p, 1, 10000), 1);
        }
        assert_int_equal(gw_handover_finish(NULL, &peer, err), 0);
        assert_int_equal(peer.fd, -1);
        assert_int_equal(fake_end(&f), 0);
    }
}

/*
 * A listener of another user (not root) at the path: nothing is taken from it. As root, the child
 * becomes nobody; otherwise this gateway says it serves as another uid than the child's.
 */
static void test_other_user_refused(void **state)
{
    struct gw_inherited out;
    struct fake f;
    char err[GW_ERR_LEN] = "", want[64];
    bool root = geteuid() == 0;
    long peer_uid = root ? NOBODY_UID : (long)geteuid();
    struct gw_handover_peer peer;

    (void)state;
    fake_start(&f, root ? NOBODY_UID : -1, FAKE_CONFIRMS);
    assert_int_equal(gw_handover_take(f.path, root ? 0 : geteuid() + 1, &out, &peer, err), GW_ERR_IO);
    assert_int_equal(out.n, 0);
    assert_null(out.fds);
    assert_int_equal(peer.fd, -1);
    snprintf(want, sizeof(want), "refused the sockets of uid %ld", peer_uid);
    assert_non_null(strstr(err, want));
    assert_int_equal(fake_end(&f), 5); /* it was never told "ready" */
}

/*
 * The running gateway's socket is 0600 from its bind on, whatever the umask: its file never has the
 * umask's mode, not even before the mode is set.
 */
static void test_serve_private_from_bind(void **state)
{
    char dir[] = "/tmp/cmpgw-handover-XXXXXX", path[64], err[GW_ERR_LEN] = "";
    struct gw_handover *h;
    struct stat st;
    mode_t old = umask(0);
    struct gw_handover_peer none = {-1, false, 0};

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/handover.sock", dir);
    bound.mode = 0;
    h = gw_handover_serve(path, NULL, err);
    umask(old);
    assert_non_null(h);
    assert_int_equal(gw_handover_finish(h, &none, err), 0); /* no predecessor: at once */
    assert_true(S_ISSOCK(bound.mode));
    assert_int_equal(bound.mode & 07777, 0600);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    gw_handover_stop(h);
    assert_int_equal(lstat(path, &st), -1); /* its own socket is removed with it */
    assert_int_equal(rmdir(dir), 0);
}

/*
 * Another process that replaces the new socket's name with a link, between bind and whatever comes
 * next, changes nothing the link points at: the socket's mode is never set by name.
 */
static void test_serve_follows_no_name(void **state)
{
    char dir[] = "/tmp/cmpgw-handover-XXXXXX", path[64], victim[64], err[GW_ERR_LEN] = "";
    struct gw_handover *h;
    struct stat st;
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/handover.sock", dir);
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    assert_true((fd = open(victim, O_WRONLY | O_CREAT | O_EXCL, 0644)) >= 0);
    assert_int_equal(fchmod(fd, 0644), 0);
    close(fd);
    bound.swap_in = victim;
    h = gw_handover_serve(path, NULL, err);
    bound.swap_in = NULL;
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    gw_handover_stop(h);
    unlink(path);
    assert_int_equal(unlink(victim), 0);
    assert_int_equal(rmdir(dir), 0);
}

/*
 * A socket directory others may add names to, without the sticky bit: they could rename the socket
 * away and put their own at its name. Nothing is bound there; the sticky bit (each name its owner's)
 * passes.
 */
static void test_serve_refuses_open_directory(void **state)
{
    char dir[] = "/tmp/cmpgw-handover-XXXXXX", path[64], err[GW_ERR_LEN] = "";
    struct gw_handover *h;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/handover.sock", dir);
    assert_int_equal(chmod(dir, 0777), 0);
    assert_null(gw_handover_serve(path, NULL, err));
    assert_non_null(strstr(err, "handover_socket: the directory"));
    assert_non_null(strstr(err, "without the sticky bit (mode 0777)"));
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(chmod(dir, 01777), 0);
    assert_non_null(h = gw_handover_serve(path, NULL, err));
    gw_handover_stop(h);
    assert_int_equal(rmdir(dir), 0);
}

/*
 * Until it publishes, a new gateway leaves the path to its predecessor's socket, and one that stops
 * unpublished (its predecessor did not confirm) removes only its own: the gateway serving on can
 * still be found by the next one.
 */
static void test_serve_unpublished_leaves_path(void **state)
{
    char dir[] = "/tmp/cmpgw-handover-XXXXXX", path[64], err[GW_ERR_LEN] = "";
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    struct stat before, after;
    struct gw_handover *h;
    int s;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/handover.sock", dir);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    assert_true((s = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0); /* the predecessor's */
    assert_int_equal(lstat(path, &before), 0);
    assert_non_null(h = gw_handover_serve(path, NULL, err));
    assert_int_equal(lstat(path, &after), 0);
    assert_true(after.st_ino == before.st_ino);
    gw_handover_stop(h);
    assert_int_equal(lstat(path, &after), 0);
    assert_true(after.st_ino == before.st_ino);
    close(s);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0); /* nothing else left there */
}

/*
 * The sockets listed for a hand-over are its own copies: a reload that closes a listener's socket
 * before they are sent (freeing its number for whatever opens next) leaves them open and listening.
 */
static void test_listen_fds_are_copies(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct gw_listen listens[2];
    struct gw_loop loop;
    struct gw_server *s = calloc(1, sizeof(*s));
    socklen_t len;
    size_t n = 0;
    int *fds = NULL, on;

    (void)state;
    assert_non_null(s);
    memset(listens, 0, sizeof(listens));
    memset(&loop, 0, sizeof(loop));
    for (size_t i = 0; i < 2; i++) {
        assert_true((listens[i].fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
        assert_int_equal(bind(listens[i].fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(listens[i].fd, 1), 0);
    }
    loop.listens = listens;
    loop.n_listens = 2;
    s->loops = &loop;
    s->n_loops = 1;
    pthread_mutex_init(&s->layout_lock, NULL);
    assert_int_equal(gw_server_listen_fds(s, &fds, &n), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < 2; i++)
        close(listens[i].fd); /* the reload's relayout */
    for (size_t i = 0; i < n; i++) {
        len = sizeof(on);
        on = 0;
        assert_int_equal(getsockopt(fds[i], SOL_SOCKET, SO_ACCEPTCONN, &on, &len), 0);
        assert_int_equal(on, 1);
        assert_true(fcntl(fds[i], F_GETFD) & FD_CLOEXEC); /* nothing the gateway runs inherits them */
        close(fds[i]);
    }
    free(fds);
    pthread_mutex_destroy(&s->layout_lock);
    free(s);
}

static bool stopped_with_successor;

static void *stop_main(void *h)
{
    stopped_with_successor = gw_handover_stop(h);
    return NULL;
}

/*
 * A gateway stopped (SIGTERM) after it sent its sockets and before its successor said "ready" stops
 * accepting anyway: it tells the successor "draining" at once, without cutting the connection, and
 * waits for its "ready", so that the successor serves on instead of both stopping; its socket file
 * is left for the successor's. A successor that says nothing is waited for 10 s, not the 120 s of a
 * gateway that serves on, and the file goes with the gateway.
 */
static void stop_tells_successor(bool say_ready)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    char dir[] = "/tmp/cmpgw-handover-XXXXXX", err[GW_ERR_LEN] = "", buf[64] = "",
         ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {buf, sizeof(buf) - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    struct gw_handover_peer none = {-1, false, 0};
    struct timeval tv = {20, 0};
    struct gw_listen listen1;
    struct gw_loop loop;
    struct gw_server srv;
    struct gw_handover *h;
    pthread_t stopper;
    struct timespec t0, t1;
    int conn, fd;

    memset(&srv, 0, sizeof(srv));
    memset(&loop, 0, sizeof(loop));
    memset(&listen1, 0, sizeof(listen1));
    assert_true((listen1.fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    assert_int_equal(bind(listen1.fd, (struct sockaddr *)&in, sizeof(in)), 0);
    assert_int_equal(listen(listen1.fd, 1), 0);
    loop.listens = &listen1;
    loop.n_listens = 1;
    srv.loops = &loop;
    srv.n_loops = 1;
    pthread_mutex_init(&srv.layout_lock, NULL);
    assert_non_null(mkdtemp(dir));
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/handover.sock", dir);
    assert_non_null(h = gw_handover_serve(a.sun_path, &srv, err));
    assert_int_equal(gw_handover_finish(h, &none, err), 0);
    assert_true((conn = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
    assert_int_equal(setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    assert_int_equal(connect(conn, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_true(recvmsg(conn, &msg, 0) > 0);
    assert_non_null(CMSG_FIRSTHDR(&msg));
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
    close(fd);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(pthread_create(&stopper, NULL, stop_main, h), 0);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(recv(conn, buf, 9, MSG_WAITALL), 9); /* before "ready" */
    assert_string_equal(buf, "draining\n");
    if (say_ready)
        assert_int_equal(send(conn, "ready confirm\n", 14, MSG_NOSIGNAL), 14);
    assert_int_equal(pthread_join(stopper, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* what the shutdown is told: a successor's "ready" during the wait makes it drain as for one */
    assert_int_equal(stopped_with_successor, say_ready);
    if (!say_ready)
        assert_in_range(t1.tv_sec - t0.tv_sec, 8, 15);
    assert_int_equal(access(a.sun_path, F_OK), say_ready ? 0 : -1);
    close(conn);
    close(listen1.fd);
    pthread_mutex_destroy(&srv.layout_lock);
    unlink(a.sun_path); /* the successor's now, had it bound one */
    assert_int_equal(rmdir(dir), 0);
}

static void test_stop_tells_successor(void **state)
{
    (void)state;
    stop_tells_successor(true);
    stop_tells_successor(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nobody_there),          cmocka_unit_test(test_same_user),
        cmocka_unit_test(test_other_user_refused),    cmocka_unit_test(test_serve_private_from_bind),
        cmocka_unit_test(test_serve_follows_no_name), cmocka_unit_test(test_serve_refuses_open_directory),
        cmocka_unit_test(test_unconfirmed_stops),     cmocka_unit_test(test_serve_unpublished_leaves_path),
        cmocka_unit_test(test_listen_fds_are_copies), cmocka_unit_test(test_predecessor_gone_serves),
        cmocka_unit_test(test_stop_tells_successor),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
