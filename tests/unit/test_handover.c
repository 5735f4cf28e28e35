/* The new gateway's side of the hand-over: whom it takes listening sockets from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/err.h"
#include "gateway/handover.h"

#define NOBODY_UID 65534

struct fake {
    char dir[64], path[96];
    pid_t pid;
};

/* The running gateway's message: one socket, as gateway/handover.c sends it. */
static void send_one(int conn)
{
    char ctl[CMSG_SPACE(sizeof(int))], head[] = "CMPGW-HANDOVER 1 1\n";
    struct iovec iov = {head, sizeof(head) - 1};
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

/*
 * A would-be predecessor in a child process, listening at f->path as |uid| (-1: this process's),
 * that hands one socket to whoever connects and exits 0 once told "ready".
 */
static void fake_start(struct fake *f, long uid)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int ready[2], s, conn;
    char buf[8] = "";

    snprintf(f->dir, sizeof(f->dir), "/tmp/cmpgw-handover-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/handover.sock", f->dir);
    if (uid >= 0)
        assert_int_equal(chown(f->dir, (uid_t)uid, (gid_t)-1), 0);
    assert_int_equal(pipe(ready), 0);
    assert_true((f->pid = fork()) >= 0);
    if (f->pid == 0) {
        close(ready[0]);
        if (uid >= 0 && setuid((uid_t)uid) != 0)
            _exit(2);
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", f->path);
        if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 ||
            listen(s, 1) != 0 || write(ready[1], "l", 1) != 1)
            _exit(3);
        close(ready[1]);
        if ((conn = accept(s, NULL, NULL)) < 0)
            _exit(4);
        send_one(conn);
        _exit(read(conn, buf, sizeof(buf) - 1) == 6 && strcmp(buf, "ready\n") == 0 ? 0 : 5);
    }
    close(ready[1]);
    assert_int_equal(read(ready[0], buf, 1), 1); /* it listens */
    close(ready[0]);
}

/* The child's exit status. */
static int fake_end(struct fake *f)
{
    int status;

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
    int peer;

    (void)state;
    assert_int_equal(gw_handover_take("/tmp/cmpgw-handover-none/handover.sock", geteuid(), &out, &peer, err),
                     0);
    assert_int_equal(out.n, 0);
    assert_int_equal(peer, -1);
}

/* A gateway of this user: its socket is taken, and it is told that it is served. */
static void test_same_user(void **state)
{
    struct gw_inherited out;
    struct fake f;
    char err[GW_ERR_LEN] = "";
    int peer;

    (void)state;
    fake_start(&f, -1);
    assert_int_equal(gw_handover_take(f.path, geteuid(), &out, &peer, err), 0);
    assert_int_equal(out.n, 1);
    assert_true(peer >= 0);
    close(out.fds[0]);
    free(out.fds);
    gw_handover_ready(peer);
    assert_int_equal(fake_end(&f), 0);
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
    int peer;

    (void)state;
    fake_start(&f, root ? NOBODY_UID : -1);
    assert_int_equal(gw_handover_take(f.path, root ? 0 : geteuid() + 1, &out, &peer, err), GW_ERR_IO);
    assert_int_equal(out.n, 0);
    assert_null(out.fds);
    assert_int_equal(peer, -1);
    snprintf(want, sizeof(want), "refused the sockets of uid %ld", peer_uid);
    assert_non_null(strstr(err, want));
    assert_int_equal(fake_end(&f), 5); /* it was never told "ready" */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nobody_there),
        cmocka_unit_test(test_same_user),
        cmocka_unit_test(test_other_user_refused),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
