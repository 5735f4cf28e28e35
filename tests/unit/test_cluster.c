/*
 * The shared state's Redis client (gateway/cmp/cluster.c) against a fake Redis on loopback that
 * answers the gateway's start (CONFIG GET) and readiness ping (its script, with the epoch) as Redis
 * does, then answers a check the way a peer on the path to Redis, or a broken Redis, could: an answer
 * larger than any the gateway takes, one trickled a byte at a time so that no single read times out,
 * garbage. Each must leave the check refused (fail closed) with the reason, never the thread held or
 * the memory filled. With a password, each connection authenticates, the password never in hiredis's
 * buffers, nor in the reason given when what answers echoes it.
 *
 * Then what Redis hands back as a transaction record or an upstream result (cluster_record.c): one
 * whose metadata is anything but the numbers an instance writes is refused, even under a valid MAC.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <dlfcn.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/limits.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/cluster_local.h"
#include <openssl/evp.h>

enum answer { HUGE, TRICKLE, GARBAGE, ODD, THEN_CLOSE };

struct fake {
    int lfd;
    uint16_t port;
    enum answer answer;
    pthread_t tid;
    atomic_bool stop;
    atomic_int conns;  /* connections still served */
    atomic_int closed; /* connections closed after an answer() */
    atomic_int auths;  /* AUTH commands that named PASSWORD (and USERNAME, with three arguments) */
    atomic_int auth;   /* how AUTH is answered: enum auth_answer */
    atomic_int pings;  /* readiness pings answered */
};

/*
 * How the fake answers AUTH: as Redis does (+OK for PASSWORD, else WRONGPASS); with the command echoed
 * as an error, as Redis does an unknown command's arguments (a renamed AUTH); or with its bytes echoed
 * back, as a service that is no Redis could (hiredis reads them as an array).
 */
enum auth_answer { AUTH_CHECK, AUTH_ECHO_ERROR, AUTH_ECHO_RAW };

#define PASSWORD "pw-0123456789-only-the-gateway-knows"
#define USERNAME "cmpgw"
#define ID                                                                                                   \
    "00112233445566778899aabbccddeeff" /* a certificate's id (revoked.c), with no CA key: one for both */

/*
 * Commands the gateway handed to hiredis that held PASSWORD: hiredis formats each into a buffer of
 * its own and copies it into its output buffer, both freed as they are. The test binary's definition
 * comes before libhiredis's, for cluster.c's calls too, and passes each on.
 */
static atomic_int handed_password;

#if __has_include(<hiredis/hiredis.h>)
#include <hiredis/hiredis.h>

int redisAppendCommandArgv(redisContext *c, int argc, const char **argv, const size_t *argvlen)
{
    int (*real)(redisContext *, int, const char **, const size_t *) =
        (int (*)(redisContext *, int, const char **, const size_t *))dlsym(RTLD_NEXT,
                                                                           "redisAppendCommandArgv");

    for (int i = 0; i < argc; i++)
        if (memmem(argv[i], argvlen[i], PASSWORD, strlen(PASSWORD)) != NULL)
            atomic_fetch_add(&handed_password, 1);
    return real(c, argc, argv, argvlen);
}
#endif

/*
 * The conditions made to time their waits by CLOCK_MONOTONIC, and the timed waits while a test watches (the
 * pinger's: nothing else of this binary waits so): how many, and how many of them were not until a deadline
 * on that condition's clock within a ping's interval of gw_now_ms. The test binary's definitions come before
 * libc's, for cluster.c's calls too, and pass each on.
 */
#define MONO_CONDS 64
static pthread_cond_t *mono_conds[MONO_CONDS];
static atomic_int n_mono_conds;
static atomic_bool watching;
static atomic_int watched_waits, watched_off_clock;

int pthread_cond_init(pthread_cond_t *cond, const pthread_condattr_t *attr)
{
    static int (*real)(pthread_cond_t *, const pthread_condattr_t *);
    clockid_t clock;
    int i;

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_cond_init");
    if (attr != NULL && pthread_condattr_getclock(attr, &clock) == 0 && clock == CLOCK_MONOTONIC &&
        (i = atomic_fetch_add(&n_mono_conds, 1)) < MONO_CONDS)
        mono_conds[i] = cond;
    return real(cond, attr);
}

static bool made_monotonic(const pthread_cond_t *cond)
{
    int n = atomic_load(&n_mono_conds);

    for (int i = 0; i < n && i < MONO_CONDS; i++)
        if (mono_conds[i] == cond)
            return true;
    return false;
}

int pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *until)
{
    static int (*real)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
    uint64_t now = gw_now_ms(), at = (uint64_t)until->tv_sec * 1000 + (uint64_t)until->tv_nsec / 1000000;

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_cond_timedwait");
    if (atomic_load(&watching)) {
        atomic_fetch_add(&watched_waits, 1);
        if (!made_monotonic(cond) || at + GW_STATE_PING_SECS * 1000 < now ||
            at > now + GW_STATE_PING_SECS * 1000)
            atomic_fetch_add(&watched_off_clock, 1);
    }
    return real(cond, mutex, until);
}

struct conn {
    struct fake *f;
    int fd;
};

static bool send_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return true;
}

/* One "\r\n"-terminated line into |buf| (without it); false at the end of the stream. */
static bool read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    char ch;

    while (read(fd, &ch, 1) == 1) {
        if (ch == '\n') {
            buf[n > 0 && buf[n - 1] == '\r' ? n - 1 : n] = '\0';
            return true;
        }
        if (n + 1 < cap)
            buf[n++] = ch;
    }
    return false;
}

/* One command (an array of bulk strings): its first |keep| arguments into |argv| (each 256 bytes). */
static int read_command(int fd, char argv[][256], int keep)
{
    char line[64];
    int argc;

    if (!read_line(fd, line, sizeof(line)) || line[0] != '*')
        return -1;
    argc = atoi(line + 1);
    for (int i = 0; i < argc; i++) {
        long len;
        char ch;

        if (!read_line(fd, line, sizeof(line)) || line[0] != '$')
            return -1;
        len = atol(line + 1);
        for (long j = 0; j < len + 2; j++) { /* the value and its "\r\n" */
            if (read(fd, &ch, 1) != 1)
                return -1;
            if (i < keep && j < 255 && j < len) {
                argv[i][j] = ch;
                argv[i][j + 1] = '\0';
            }
        }
        if (i < keep && len == 0)
            argv[i][0] = '\0';
    }
    return argc;
}

static void answer(struct conn *c)
{
    static char chunk[65536];

    switch (c->f->answer) {
    case HUGE: /* 64 MiB: far past GW_STATE_MAX_REPLY */
        if (send_all(c->fd, "$67108864\r\n", 11))
            for (int i = 0; i < 1024 && !atomic_load(&c->f->stop) && send_all(c->fd, chunk, sizeof(chunk));
                 i++)
                ;
        break;
    case TRICKLE: /* 100 of 1000 bytes promised, one every 50 ms: each read well within the timeout */
        if (send_all(c->fd, "$1000\r\n", 7))
            for (int i = 0; i < 100 && !atomic_load(&c->f->stop) && send_all(c->fd, "x", 1); i++)
                gw_sleep_ms(50);
        break;
    case GARBAGE:
        (void)send_all(c->fd, "?what\r\n", 7);
        break;
    case ODD: /* an integer no script of the gateway answers */
        (void)send_all(c->fd, ":5\r\n", 4);
        break;
    case THEN_CLOSE: /* a whole answer (not revoked), then the connection closed, as a restart closes it */
        (void)send_all(c->fd, ":0\r\n", 4);
        break;
    }
}

/* AUTH and its |argc| - 1 arguments |argv| sent back: as the command was, or quoted in an error. */
static bool echo_auth(int fd, char argv[][256], int argc, bool raw)
{
    char out[1024];
    int n = raw ? snprintf(out, sizeof(out), "*%d\r\n", argc)
                : snprintf(out, sizeof(out), "-ERR unknown command 'AUTH', with args beginning with:");

    for (int i = raw ? 0 : 1; i < argc && i < 4; i++)
        n += raw ? snprintf(out + n, sizeof(out) - (size_t)n, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i])
                 : snprintf(out + n, sizeof(out) - (size_t)n, " '%s'", argv[i]);
    if (!raw)
        n += snprintf(out + n, sizeof(out) - (size_t)n, "\r\n");
    return send_all(fd, out, (size_t)n);
}

static void *serve_conn(void *arg)
{
    struct conn *c = arg;
    char argv[4][256];
    int argc;

    memset(argv, 0, sizeof(argv));
    while ((argc = read_command(c->fd, argv, 4)) > 0) {
        if (strcmp(argv[0], "AUTH") == 0 && atomic_load(&c->f->auth) != AUTH_CHECK) {
            if (!echo_auth(c->fd, argv, argc, atomic_load(&c->f->auth) == AUTH_ECHO_RAW))
                break;
        } else if (strcmp(argv[0], "AUTH") == 0) { /* AUTH [username] password, as Redis 6 reads it */
            bool ok = strcmp(argv[argc - 1], PASSWORD) == 0 && (argc == 2 || strcmp(argv[1], USERNAME) == 0);

            atomic_fetch_add(&c->f->auths, ok);
            if (!send_all(c->fd, ok ? "+OK\r\n" : "-WRONGPASS invalid username-password pair\r\n",
                          ok ? 5 : 43))
                break;
        } else if (strcmp(argv[0], "INFO") == 0) { /* each new connection's: a Redis that evicts nothing */
            static const char info[] = "# Memory\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n";
            char out[128];
            int n = snprintf(out, sizeof(out), "$%zu\r\n%s\r\n", sizeof(info) - 1, info);

            if (!send_all(c->fd, out, (size_t)n))
                break;
        } else if (strcmp(argv[0], "CONFIG") == 0) {
            const char *v = strcmp(argv[2], "appendonly") == 0 ? "yes" : "noeviction";
            char out[128];
            int n = snprintf(out, sizeof(out), "*2\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(argv[2]), argv[2],
                             strlen(v), v);
            if (!send_all(c->fd, out, (size_t)n))
                break;
        } else if (argc >= 4 && strlen(argv[3]) >= 5 && strcmp(argv[3] + strlen(argv[3]) - 5, "epoch") == 0) {
            if (!send_all(c->fd, "$7\r\nfirst:1\r\n", 13)) /* readiness: the ping's script, its epoch */
                break;
            atomic_fetch_add(&c->f->pings, 1);
        } else {
            answer(c);
            shutdown(c->fd, SHUT_RDWR);
            atomic_fetch_add(&c->f->closed, 1);
            break;
        }
    }
    close(c->fd);
    atomic_fetch_sub(&c->f->conns, 1);
    free(c);
    return NULL;
}

static void *accept_loop(void *arg)
{
    struct fake *f = arg;
    int fd;

    while (!atomic_load(&f->stop) && (fd = accept(f->lfd, NULL, NULL)) >= 0) {
        struct conn *c = malloc(sizeof(*c));
        pthread_t t;

        assert_non_null(c);
        *c = (struct conn){f, fd};
        atomic_fetch_add(&f->conns, 1);
        assert_int_equal(pthread_create(&t, NULL, serve_conn, c), 0);
        pthread_detach(t);
    }
    return NULL;
}

static void fake_start(struct fake *f, enum answer a)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);

    memset(f, 0, sizeof(*f));
    f->answer = a;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->tid, NULL, accept_loop, f), 0);
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, true);
    shutdown(f->lfd, SHUT_RDWR);
    pthread_join(f->tid, NULL);
    close(f->lfd);
    while (atomic_load(&f->conns) > 0) /* each ends when the gateway's side closes, or at |stop| */
        gw_sleep_ms(10);
}

/* A replay check against a fake Redis answering |a|: refused, with its reason in |err|. */
static void check_refused(enum answer a, uint32_t timeout_ms, const char *want)
{
    struct fake f;
    struct gw_state_conf conf = {.backend = GW_STATE_REDIS, .address = "127.0.0.1", .key_prefix = "t:"};
    struct gw_cluster *cl;
    char err[GW_ERR_LEN] = "", why[GW_ERR_LEN] = "";
    int pings;

    fake_start(&f, a);
    conf.port = f.port;
    conf.timeout_ms = timeout_ms;
    if ((cl = gw_cluster_new(&conf, err)) == NULL && strstr(err, "without hiredis") != NULL) {
        fake_stop(&f);
        skip();
    }
    assert_non_null(cl);
    pings = atomic_load(&f.pings);
    assert_int_equal(gw_cluster_seen(cl, (const unsigned char *)"tid", 3, (const unsigned char *)"n", 1, NULL,
                                     "id", 60, 0, err),
                     GW_ERR_UNAVAILABLE);
    if (strstr(err, want) == NULL)
        fail_msg("reason \"%s\", want \"%s\"", err, want);
    /* readiness says so until Redis answers again: the fake answers the pinger's ping, which may come
       between the two */
    if (gw_cluster_status(cl, why, sizeof(why)) != GW_ERR_UNAVAILABLE && atomic_load(&f.pings) == pings)
        fail_msg("readiness ready after \"%s\" with no ping answered since", err);
    gw_cluster_free(cl);
    fake_stop(&f);
}

static void test_huge_answer_refused(void **state)
{
    (void)state;
    check_refused(HUGE, 5000, "an answer of more than");
}

static void test_trickled_answer_times_out(void **state)
{
    (void)state;
    check_refused(TRICKLE, 200, "no whole answer within 200 ms");
}

static void test_garbage_refused(void **state)
{
    (void)state;
    check_refused(GARBAGE, 1000, "unreachable");
}

/*
 * A revocation lookup (revoked.c) that gets no answer, or one EXISTS never gives, is refused: never
 * read as "not revoked". So is a revocation's mark: neither taken as marked (two instances would revoke
 * the certificate) nor as revoked (a certificate nobody revoked would be answered so).
 */
static void test_revocation_lookup_fails_closed(void **state)
{
    static const struct {
        enum answer a;
        const char *want, *want_mark;
    } cases[] = {{GARBAGE, "unreachable", "unreachable"},
                 {ODD, "answered 5 to a revocation lookup", "answered 5 to a revocation's mark"},
                 {TRICKLE, "no whole answer within 200 ms", "no whole answer within 200 ms"}};
    struct gw_state_conf conf = {.backend = GW_STATE_REDIS, .address = "127.0.0.1", .key_prefix = "t:"};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake f;
        struct gw_cluster *cl;
        char err[GW_ERR_LEN] = "";

        fake_start(&f, cases[i].a);
        conf.port = f.port;
        conf.timeout_ms = cases[i].a == TRICKLE ? 200 : 1000;
        if ((cl = gw_cluster_new(&conf, err)) == NULL && strstr(err, "without hiredis") != NULL) {
            fake_stop(&f);
            skip();
        }
        assert_non_null(cl);
        assert_int_equal(gw_cluster_revoked(cl, ID, ID, err), GW_ERR_UNAVAILABLE);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("reason \"%s\", want \"%s\"", err, cases[i].want);
        err[0] = '\0';
        while (atomic_load(&f.closed) < 1) /* the lookup's connection gone: the mark goes out on a new one */
            gw_sleep_ms(5);
        assert_int_equal(gw_cluster_mark_revoking(cl, ID, ID, 60000, err), GW_ERR_UNAVAILABLE);
        if (strstr(err, cases[i].want_mark) == NULL)
            fail_msg("mark: reason \"%s\", want \"%s\"", err, cases[i].want_mark);
        while (atomic_load(&f.closed) < 2)
            gw_sleep_ms(5);
        gw_cluster_unmark_revoking(cl, ID, true); /* it fails, logged */
        gw_cluster_free(cl);
        fake_stop(&f);
    }
}

/*
 * Between its pings the pinger waits GW_STATE_PING_SECS on the monotonic clock: until a gw_now_ms deadline,
 * on a condition made to time its waits by that clock. It waited on the wall clock, and a clock stepped back
 * D seconds (NTP correcting one that ran ahead) stopped it for D: after one failed command Redis was not
 * found reachable again for D, readiness said down, and leases and record ends were refused.
 */
static void test_pinger_waits_on_the_monotonic_clock(void **state)
{
    struct gw_state_conf conf = {
        .backend = GW_STATE_REDIS, .address = "127.0.0.1", .key_prefix = "t:", .timeout_ms = 1000};
    struct fake f;
    struct gw_cluster *cl;
    char err[GW_ERR_LEN] = "";
    uint64_t deadline;

    (void)state;
    fake_start(&f, GARBAGE);
    conf.port = f.port;
    if ((cl = gw_cluster_new(&conf, err)) == NULL && strstr(err, "without hiredis") != NULL) {
        fake_stop(&f);
        skip();
    }
    assert_non_null(cl);
    atomic_store(&watching, true);
    deadline = gw_now_ms() + 10000; /* a bound, not a speed: it waits once a ping */
    while (atomic_load(&watched_waits) < 1 && gw_now_ms() < deadline)
        gw_sleep_ms(10);
    atomic_store(&watching, false);
    gw_cluster_free(cl);
    fake_stop(&f);
    assert_true(atomic_load(&watched_waits) >= 1);
    assert_int_equal(atomic_load(&watched_off_clock), 0);
}

/*
 * Redis restarted (or closed an idle client) between two commands of one thread: the second goes out
 * on a new connection and is answered, not refused because the old one was closed under it.
 */
static void test_closed_connection_replaced(void **state)
{
    struct gw_state_conf conf = {
        .backend = GW_STATE_REDIS, .address = "127.0.0.1", .key_prefix = "t:", .timeout_ms = 1000};
    struct fake f;
    struct gw_cluster *cl;
    char err[GW_ERR_LEN] = "";

    (void)state;
    fake_start(&f, THEN_CLOSE);
    conf.port = f.port;
    if ((cl = gw_cluster_new(&conf, err)) == NULL && strstr(err, "without hiredis") != NULL) {
        fake_stop(&f);
        skip();
    }
    assert_non_null(cl);
    for (int i = 0; i < 3; i++) {
        if (gw_cluster_revoked(cl, ID, ID, err) != 0)
            fail_msg("lookup %d: \"%s\"", i, err);
        while (atomic_load(&f.closed) <= i) /* the lookup's connection closed behind its answer */
            gw_sleep_ms(5);
    }
    gw_cluster_free(cl);
    fake_stop(&f);
}

/*
 * Each new connection authenticates with the password, as the default user or as |username|: what
 * Redis reads is AUTH [username] password, and a wrong password is refused with Redis's reason. The
 * password never passes through hiredis's command buffers: the gateway writes that command itself,
 * from a buffer it wipes.
 */
static void test_auth_bypasses_hiredis_buffers(void **state)
{
    static const struct {
        const char *username, *password;
        int rc;
    } cases[] = {
        {NULL, PASSWORD, 0},
        {USERNAME, PASSWORD, 0},
        {NULL, "wrong", GW_ERR_UNAVAILABLE},
        {"someone", PASSWORD, GW_ERR_UNAVAILABLE},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_state_conf conf = {
            .backend = GW_STATE_REDIS, .address = "127.0.0.1", .key_prefix = "t:", .timeout_ms = 1000};
        struct fake f;
        struct gw_cluster *cl;
        char err[GW_ERR_LEN] = "";

        fake_start(&f, THEN_CLOSE);
        conf.port = f.port;
        conf.username = (char *)cases[i].username;
        conf.password = (unsigned char *)cases[i].password;
        conf.password_len = strlen(cases[i].password);
        atomic_store(&handed_password, 0);
        cl = gw_cluster_new(&conf, err);
        if (cl == NULL && strstr(err, "without hiredis") != NULL) {
            fake_stop(&f);
            skip();
        }
        if (cases[i].rc == 0) {
            if (cl == NULL)
                fail_msg("case %zu: %s", i, err);
            if (gw_cluster_revoked(cl, ID, ID, err) != 0)
                fail_msg("case %zu: lookup: \"%s\"", i, err);
            assert_true(atomic_load(&f.auths) >= 1);
        } else if (cl != NULL) {
            assert_int_equal(gw_cluster_revoked(cl, ID, ID, err), cases[i].rc);
        }
        if (cases[i].rc != 0 && strstr(err, "refused the gateway's AUTH: WRONGPASS") == NULL)
            fail_msg("case %zu: \"%s\"", i, err);
        assert_int_equal(atomic_load(&handed_password), 0);
        gw_cluster_free(cl);
        fake_stop(&f);
    }
}

/* Whether |s| holds PASSWORD, or a piece of it (its first eight bytes) as a cut echo would. */
static bool holds_password(const char *s)
{
    return strstr(s, PASSWORD) != NULL || strstr(s, "pw-01234") != NULL;
}

/*
 * What answers the gateway's AUTH at Redis's address may echo it: a Redis quoting a renamed AUTH's
 * arguments in its error, a service that is no Redis sending the bytes back. Either is refused, at start
 * and on a later connection, and the reason, which the gateway logs and readiness shows, says so
 * without the password.
 */
static void test_auth_echo_not_quoted(void **state)
{
    static const struct {
        enum auth_answer auth;
        const char *username;
    } cases[] = {
        {AUTH_ECHO_ERROR, NULL},
        {AUTH_ECHO_ERROR, USERNAME},
        {AUTH_ECHO_RAW, NULL},
        {AUTH_ECHO_RAW, USERNAME},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_state_conf conf = {.backend = GW_STATE_REDIS,
                                     .address = "127.0.0.1",
                                     .key_prefix = "t:",
                                     .timeout_ms = 1000,
                                     .username = (char *)cases[i].username,
                                     .password = (unsigned char *)PASSWORD,
                                     .password_len = strlen(PASSWORD)};
        struct fake f;
        struct gw_cluster *cl;
        char err[GW_ERR_LEN] = "", why[GW_ERR_LEN] = "";
        int rc = 0;

        fake_start(&f, THEN_CLOSE);
        conf.port = f.port;
        atomic_store(&f.auth, cases[i].auth);
        cl = gw_cluster_new(&conf, err);
        if (cl == NULL && strstr(err, "without hiredis") != NULL) {
            fake_stop(&f);
            skip();
        }
        if (cl != NULL || strstr(err, "AUTH") == NULL || holds_password(err))
            fail_msg("case %zu at start: \"%s\"", i, err);
        /* the first connection authenticates; the next, once the fake closed it, meets the echo (a command
           sent before the close is seen fails on its own) */
        atomic_store(&f.auth, AUTH_CHECK);
        if ((cl = gw_cluster_new(&conf, err)) == NULL)
            fail_msg("case %zu: %s", i, err);
        atomic_store(&f.auth, cases[i].auth);
        for (int n = 0; n < 5 && (rc == 0 || strstr(err, "AUTH") == NULL); n++)
            rc = gw_cluster_revoked(cl, ID, ID, err);
        assert_int_equal(rc, GW_ERR_UNAVAILABLE);
        assert_int_equal(gw_cluster_status(cl, why, sizeof(why)), GW_ERR_UNAVAILABLE);
        if (strstr(err, "AUTH") == NULL || holds_password(err) || holds_password(why))
            fail_msg("case %zu later: \"%s\", readiness \"%s\"", i, err, why);
        gw_cluster_free(cl);
        fake_stop(&f);
    }
}

#define MAC_KEY "record-mac-key-0123456789abcdef"
static const unsigned char rec_tid[] = {0x52, 0x45, 0x43, 0x4f, 0x52, 0x44, 0x2d, 0x54,
                                        0x49, 0x44, 0x2d, 0x30, 0x30, 0x30, 0x30, 0x31};

/*
 * A blob of |magic| and the |count| fields |f| (strings), MAC'ed as cluster_record.c does: HMAC-SHA256
 * under MAC_KEY over the transactionID's length (4 bytes, big-endian), the transactionID and the
 * fields. What an instance holding the shared key could write, whatever its metadata says.
 */
static unsigned char *forge(const char *magic, const char *const *f, int count, size_t *len)
{
    unsigned char buf[1024], *blob;
    size_t off = 4 + sizeof(rec_tid), mac_len = 0;

    buf[0] = buf[1] = buf[2] = 0;
    buf[3] = sizeof(rec_tid);
    memcpy(buf + 4, rec_tid, sizeof(rec_tid));
    memcpy(buf + off, magic, strlen(magic));
    off += strlen(magic);
    for (int i = 0; i < count; i++) {
        size_t n = strlen(f[i]);

        assert_true(off + 4 + n + 32 <= sizeof(buf));
        buf[off] = buf[off + 1] = 0;
        buf[off + 2] = (unsigned char)(n >> 8);
        buf[off + 3] = (unsigned char)n;
        memcpy(buf + off + 4, f[i], n);
        off += 4 + n;
    }
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, MAC_KEY, strlen(MAC_KEY), buf, off,
                              buf + off, 32, &mac_len));
    assert_int_equal(mac_len, 32);
    off += 32;
    *len = off - 4 - sizeof(rec_tid);
    blob = malloc(*len);
    assert_non_null(blob);
    memcpy(blob, buf + 4 + sizeof(rec_tid), *len);
    return blob;
}

/* cluster_record_decode of a version 3 record with metadata |meta|. */
static int decode_record(const char *meta, struct gw_txn_record *rec)
{
    const char *f[] = {"req", "cert", "nonce", "default", "local", meta, "sha256:00"};
    size_t len;
    unsigned char *blob = forge("cmpgw-txn-3", f, 7, &len);
    int rc = cluster_record_decode((const unsigned char *)MAC_KEY, strlen(MAC_KEY), rec_tid, sizeof(rec_tid),
                                   blob, len, rec);

    free(blob);
    return rc;
}

/* cluster_result_decode of a result with metadata |meta|. */
static int decode_result(const char *meta, struct gw_txn_result *res)
{
    const char *f[] = {"cert", "chain", meta, "reason"};
    size_t len;
    unsigned char *blob = forge("cmpgw-res-1", f, 4, &len);
    int rc = cluster_result_decode((const unsigned char *)MAC_KEY, strlen(MAC_KEY), rec_tid, sizeof(rec_tid),
                                   blob, len, res);

    free(blob);
    return rc;
}

/*
 * A record's metadata (step, requested at, deadline, checkAfter) is read as an instance writes it: what
 * a corrupted or hostile Redis (with the shared key) could hold instead is refused, not read in part,
 * wrapped or taken negative.
 */
static void test_record_meta_strict(void **state)
{
    static const char *const bad[] = {
        "3 1700000000 0 0 junk",      /* trailing junk */
        "3 1700000000 0 0x",          /* junk right after a number */
        "3 1700000000 0 0 ",          /* a trailing blank */
        " 3 1700000000 0 0",          /* a leading blank */
        "3  1700000000 0 0",          /* two blanks */
        "3\t1700000000 0 0",          /* not a space */
        "+3 1700000000 0 0",          /* a sign */
        "-1 1700000000 0 0",          /* a negative step, read as 4294967295 */
        "4294967296 1700000000 0 0",  /* a step beyond unsigned */
        "3 99999999999999999999 0 0", /* beyond long long */
        "3 -1700000000 0 0",          /* requested before the epoch */
        "3 1700000000 -1 0",          /* a negative deadline */
        "3 1700000000 0 -5",          /* a negative checkAfter */
        "3 1700000000 0 61",          /* a checkAfter above GW_MAX_CHECK_AFTER */
        "3 1700000000 0",             /* too few */
        "",
    };
    struct gw_txn_record rec;

    (void)state;
    assert_int_equal(decode_record("7 1700000000 1700000010000 5", &rec), 0);
    assert_int_equal(rec.step, 7);
    assert_int_equal(rec.requested_at, 1700000000LL);
    assert_int_equal(rec.deadline_ms, 1700000010000LL);
    assert_int_equal(rec.check_after, 5);
    assert_string_equal(rec.role, "default");
    gw_txn_record_cleanup(&rec);
    assert_int_equal(decode_record("4294967295 0 0 60", &rec), 0); /* the bounds themselves */
    assert_int_equal(rec.step, 4294967295u);
    gw_txn_record_cleanup(&rec);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (decode_record(bad[i], &rec) != GW_ERR_INVAL)
            fail_msg("record metadata \"%s\" accepted", bad[i]);
        assert_null(rec.req); /* nothing kept of it */
    }
}

/* A result's metadata (status, failInfo, modified, recorded) likewise. */
static void test_result_meta_strict(void **state)
{
    static const char *const bad[] = {
        "0 0 0 0 junk",      /* trailing junk */
        "0 0 0 1x",          /* junk right after a number */
        "1 0 0 0",           /* a positive status: ours are 0 or negative */
        "-2147483649 0 0 0", /* a status beyond int */
        "-12 -1 0 0",        /* a negative failInfo bit */
        "-12 27 0 0",        /* beyond OSSL_CMP_PKIFAILUREINFO_MAX */
        "0 0 2 0",           /* modified is 0 or 1 */
        "0 0 0 99999999999", /* recorded beyond int */
        "0 0 -0 0",          /* a sign where none belongs */
        "0 0 0",             /* too few */
    };
    struct gw_txn_result res;

    (void)state;
    assert_int_equal(decode_result("-12 26 1 1", &res), 0);
    assert_true(res.present);
    assert_int_equal(res.status, -12);
    assert_int_equal(res.fail_info, 26);
    assert_int_equal(res.modified, 1);
    assert_int_equal(res.recorded, 1);
    assert_string_equal(res.reason, "reason");
    gw_txn_result_cleanup(&res);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (decode_result(bad[i], &res) != GW_ERR_INVAL)
            fail_msg("result metadata \"%s\" accepted", bad[i]);
        assert_false(res.present);
    }
}

/* What an instance writes reads back (the twin of the two above). */
static void test_record_round_trip(void **state)
{
    struct gw_txn_record rec = {.req = (unsigned char *)"req",
                                .req_len = 3,
                                .step = 4294967295u,
                                .requested_at = 1700000000,
                                .deadline_ms = 1700000010000LL,
                                .check_after = 60},
                         out;
    struct gw_txn_result res = {.status = -15, .fail_info = 26, .modified = 1, .recorded = 0}, back;
    unsigned char *blob;
    size_t len;

    (void)state;
    snprintf(rec.role, sizeof(rec.role), "default");
    blob = cluster_record_encode((const unsigned char *)MAC_KEY, strlen(MAC_KEY), rec_tid, sizeof(rec_tid),
                                 &rec, &len);
    assert_non_null(blob);
    assert_int_equal(cluster_record_decode((const unsigned char *)MAC_KEY, strlen(MAC_KEY), rec_tid,
                                           sizeof(rec_tid), blob, len, &out),
                     0);
    free(blob);
    assert_int_equal(out.step, rec.step);
    assert_int_equal(out.requested_at, rec.requested_at);
    assert_int_equal(out.deadline_ms, rec.deadline_ms);
    assert_int_equal(out.check_after, rec.check_after);
    gw_txn_record_cleanup(&out);
    blob = cluster_result_encode((const unsigned char *)MAC_KEY, strlen(MAC_KEY), rec_tid, sizeof(rec_tid),
                                 &res, &len);
    assert_non_null(blob);
    assert_int_equal(cluster_result_decode((const unsigned char *)MAC_KEY, strlen(MAC_KEY), rec_tid,
                                           sizeof(rec_tid), blob, len, &back),
                     0);
    free(blob);
    assert_int_equal(back.status, res.status);
    assert_int_equal(back.fail_info, res.fail_info);
    assert_int_equal(back.modified, res.modified);
    assert_int_equal(back.recorded, res.recorded);
    gw_txn_result_cleanup(&back);
}

/* A record's key names its transactionID: the prefix, "rec:", lower-case hex; anything else names none. */
static void test_record_key_tid(void **state)
{
    static const struct {
        const char *key;
        size_t want; /* 0: none */
    } cases[] = {
        {"p:rec:0aff", 2}, {"p:rec:", 0},     {"p:rec:0af", 0},   {"p:rec:0AFF", 0}, {"p:rec:0afg", 0},
        {"q:rec:0aff", 0}, {"p:res:0aff", 0}, {"p:rec:0a ff", 0}, {"p:", 0},         {"p:rec:-1", 0},
    };
    unsigned char tid[GW_MAX_TID_LEN];
    char big[6 + 2 * (GW_MAX_TID_LEN + 1) + 1] = "p:rec:";

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = cluster_record_key_tid(cases[i].key, strlen(cases[i].key), "p:", tid);

        if (n != cases[i].want)
            fail_msg("%s: %zu, want %zu", cases[i].key, n, cases[i].want);
    }
    assert_int_equal(cluster_record_key_tid("p:rec:0aff", 10, "p:", tid), 2);
    assert_true(tid[0] == 0x0a && tid[1] == 0xff);
    memset(big + 6, 'a', 2 * GW_MAX_TID_LEN);
    assert_int_equal(cluster_record_key_tid(big, strlen(big), "p:", tid), GW_MAX_TID_LEN);
    memset(big + 6, 'a', 2 * (GW_MAX_TID_LEN + 1)); /* one byte too long */
    assert_int_equal(cluster_record_key_tid(big, strlen(big), "p:", tid), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_huge_answer_refused),
        cmocka_unit_test(test_trickled_answer_times_out),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_revocation_lookup_fails_closed),
        cmocka_unit_test(test_closed_connection_replaced),
        cmocka_unit_test(test_pinger_waits_on_the_monotonic_clock),
        cmocka_unit_test(test_auth_bypasses_hiredis_buffers),
        cmocka_unit_test(test_auth_echo_not_quoted),
        cmocka_unit_test(test_record_meta_strict),
        cmocka_unit_test(test_result_meta_strict),
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_key_tid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
