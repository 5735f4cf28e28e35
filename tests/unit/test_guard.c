/*
 * Admission by client address: connections in total and per address, requests in flight per
 * address, the failed-authentication budget; what an address is (IPv6 by its prefix, IPv4-mapped
 * IPv6 as IPv4).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/limits.h"
#include "gateway/guard.h"

static struct sockaddr_storage v4(const char *ip, uint16_t port, socklen_t *len)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    inet_pton(AF_INET, ip, &sin->sin_addr);
    *len = sizeof(*sin);
    return ss;
}

static struct sockaddr_storage v6(const char *ip, socklen_t *len)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &sin6->sin6_addr);
    *len = sizeof(*sin6);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* The |i|th address of an IPv4 flood, 10.<i as three bytes>. */
static struct sockaddr_storage flood_v4(int i, socklen_t *l)
{
    char ip[32];

    snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16, (i >> 8) & 0xff, i & 0xff);
    return v4(ip, 1, l);
}

/* The |i|th /64 of a carrier's /48, 2001:db8:c:<i>::/64. */
static struct sockaddr_storage carrier_v6(int i, socklen_t *l)
{
    char ip[64];

    snprintf(ip, sizeof(ip), "2001:db8:c:%x::1", i);
    return v6(ip, l);
}

/* The |k|th IPv4 address of 10.<net>.0.0/16, 250 to a /24. */
static struct sockaddr_storage nth_v4(int net, int k, socklen_t *l)
{
    char ip[32];

    snprintf(ip, sizeof(ip), "10.%d.%d.%d", net, k / 250, k % 250 + 1);
    return v4(ip, 1, l);
}

static void test_connections(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 5,
                                 .max_connections_per_address = 2,
                                 .max_requests_per_address = 1,
                                 .ipv6_prefix = 128};
    struct gw_guard *g = gw_guard_new(&conf);
    socklen_t la, lb, lc, l6, lbad = sizeof(struct sockaddr);
    struct sockaddr_storage a = v4("127.0.0.1", 1000, &la), a2 = v4("127.0.0.1", 2000, &la),
                            b = v4("127.0.0.2", 1000, &lb), c = v4("127.0.0.3", 1000, &lc),
                            six = v6("::1", &l6), bad;

    (void)state;
    memset(&bad, 0, sizeof(bad));
    bad.ss_family = AF_UNIX;
    assert_non_null(g);
    assert_int_equal(gw_guard_conn_open(g, SA(a), la), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(a2), la), 0);          /* another port, same address */
    assert_int_equal(gw_guard_conn_open(g, SA(a), la), GW_ERR_BUSY); /* its share is 2 */
    assert_int_equal(gw_guard_conn_open(g, SA(b), lb), 0);           /* the others still get in */
    assert_int_equal(gw_guard_conn_open(g, SA(six), l6), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(six), l6), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(c), lc), GW_ERR_LIMIT); /* 5 in total */
    /* at its own cap as well: that one is said first, so that room is made among its own connections */
    assert_int_equal(gw_guard_conn_open(g, SA(a), la), GW_ERR_BUSY);
    gw_guard_conn_close(g, SA(a), la);
    assert_int_equal(gw_guard_conn_open(g, SA(c), lc), 0); /* room again */
    assert_int_equal(gw_guard_conn_open(g, SA(bad), lbad), GW_ERR_INVAL);
    gw_guard_conn_close(g, SA(bad), lbad); /* ignored */
    gw_guard_conn_close(g, SA(b), lb);
    gw_guard_conn_close(g, SA(b), lb); /* a second close does not go below zero */
    assert_int_equal(gw_guard_conn_open(g, SA(b), lb), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(b), lb), GW_ERR_LIMIT);
    gw_guard_free(g);
    gw_guard_free(NULL);
}

static void test_auth_budget(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 8,
                                 .max_connections_per_address = 8,
                                 .max_requests_per_address = 1,
                                 .auth_failures = 3,
                                 .auth_failure_window = 60,
                                 .ipv6_prefix = 64};
    struct gw_guard *g = gw_guard_new(&conf);
    socklen_t la, lb;
    struct sockaddr_storage a = v4("10.0.0.1", 1, &la), b = v4("10.0.0.2", 1, &lb);
    uint32_t wait = 99;

    (void)state;
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1000, &wait), 0);
    assert_int_equal(wait, 0);
    /* the third failure uses the budget up, and only it says so: not those before, nor those after */
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_guard_auth_failed(g, SA(a), la, 1000 + i), i == 2 ? 32 : 0);
    assert_false(gw_guard_auth_failed(g, SA(a), la, 1005));
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1010, &wait), GW_ERR_LIMIT);
    assert_int_equal(wait, 50);                                          /* the window opened at 1000 */
    assert_int_equal(gw_guard_auth_check(g, SA(b), lb, 1010, &wait), 0); /* another address */
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1060, &wait), 0); /* the window ended */
    assert_false(gw_guard_auth_failed(g, SA(a), la, 1060));              /* a new window ... */
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1061, &wait), 0);
    assert_false(gw_guard_auth_failed(g, SA(a), la, 1061));
    assert_true(gw_guard_auth_failed(g, SA(a), la, 1062)); /* ... used up again, and said again */
    gw_guard_free(g);

    conf.auth_failures = 0; /* no budget */
    g = gw_guard_new(&conf);
    for (int i = 0; i < 10; i++)
        assert_false(gw_guard_auth_failed(g, SA(a), la, 1000));
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1000, &wait), 0);
    gw_guard_free(g);
}

/* A reload's budget applies at once: an open window keeps its start and failures, judged by the new values.
 */
static void test_auth_budget_reloaded(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 8,
                                 .max_connections_per_address = 8,
                                 .max_requests_per_address = 1,
                                 .auth_failures = 2,
                                 .auth_failure_window = 60,
                                 .ipv6_prefix = 64};
    struct gw_guard *g = gw_guard_new(&conf);
    socklen_t la;
    struct sockaddr_storage a = v4("10.0.0.1", 1, &la);
    uint32_t wait;

    (void)state;
    assert_false(gw_guard_auth_failed(g, SA(a), la, 1000));
    assert_true(gw_guard_auth_failed(g, SA(a), la, 1001));
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1010, &wait), GW_ERR_LIMIT);
    assert_int_equal(gw_guard_set_auth_budget(g, 5, 60, 1010, NULL, NULL), 0); /* raised: in again, 3 to go */
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1010, &wait), 0);
    assert_false(gw_guard_auth_failed(g, SA(a), la, 1011));
    assert_false(gw_guard_auth_failed(g, SA(a), la, 1012));
    assert_true(gw_guard_auth_failed(g, SA(a), la, 1013));
    assert_int_equal(gw_guard_set_auth_budget(g, 5, 20, 1020, NULL, NULL),
                     0); /* shorter: the window opened at 1000 ended */
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1020, &wait), 0);
    assert_int_equal(gw_guard_set_auth_budget(g, 5, 0, 1020, NULL, NULL),
                     GW_ERR_INVAL);                                           /* a budget needs a window */
    assert_int_equal(gw_guard_set_auth_budget(g, 0, 0, 1020, NULL, NULL), 0); /* none */
    for (int i = 0; i < 10; i++)
        assert_false(gw_guard_auth_failed(g, SA(a), la, 1030));
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1030, &wait), 0);
    gw_guard_free(g);
}

/* The addresses a reload's budget shut out, as gw_sockaddr_string would not: address alone. */
struct shut {
    int n;
    char addr[4][INET6_ADDRSTRLEN];
};

static void on_shut_out(void *arg, const struct sockaddr *sa, socklen_t len, uint32_t bits)
{
    struct shut *sh = arg;
    const void *a = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                             : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;

    assert_true(sh->n < 4);
    assert_int_equal(bits, sa->sa_family == AF_INET ? 32 : 64);
    assert_int_equal(len,
                     sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    assert_non_null(inet_ntop(sa->sa_family, a, sh->addr[sh->n++], INET6_ADDRSTRLEN));
}

/*
 * A reload that lowers the budget under an address's failures in its open window shuts it out, and says
 * so once, as the failure that uses a budget up does: not for an address already out, one under the new
 * budget, or one whose window ended; nor again at its next failure.
 */
static void test_auth_budget_lowered(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 8,
                                 .max_connections_per_address = 8,
                                 .max_requests_per_address = 1,
                                 .auth_failures = 5,
                                 .auth_failure_window = 60,
                                 .ipv6_prefix = 64};
    struct gw_guard *g = gw_guard_new(&conf);
    socklen_t la, lb, lc, ld, le;
    struct sockaddr_storage a = v4("10.0.0.1", 1, &la), b = v4("10.0.0.2", 1, &lb),
                            c = v6("2001:db8::1", &lc), d = v4("10.0.0.4", 1, &ld),
                            e = v4("10.0.0.5", 1, &le);
    struct shut sh = {0};
    uint32_t wait;

    (void)state;
    for (int i = 0; i < 4; i++)
        assert_false(gw_guard_auth_failed(g, SA(d), ld, 900)); /* a window ended by 1010 */
    for (int i = 0; i < 4; i++) {
        assert_false(gw_guard_auth_failed(g, SA(a), la, 1000));
        assert_false(gw_guard_auth_failed(g, SA(c), lc, 1000)); /* on its /64 */
        assert_false(gw_guard_auth_failed(g, SA(e), le, 1000));
    }
    assert_true(gw_guard_auth_failed(g, SA(e), le, 1000));  /* its fifth: out, and said */
    assert_false(gw_guard_auth_failed(g, SA(b), lb, 1000)); /* 1 */
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1010, &wait), 0);
    assert_int_equal(gw_guard_set_auth_budget(g, 3, 60, 1010, on_shut_out, &sh), 0);
    assert_int_equal(sh.n, 2);
    assert_true((strcmp(sh.addr[0], "10.0.0.1") == 0 && strcmp(sh.addr[1], "2001:db8::") == 0) ||
                (strcmp(sh.addr[1], "10.0.0.1") == 0 && strcmp(sh.addr[0], "2001:db8::") == 0));
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1010, &wait), GW_ERR_LIMIT);
    assert_int_equal(gw_guard_auth_check(g, SA(b), lb, 1010, &wait), 0);
    assert_false(gw_guard_auth_failed(g, SA(a), la, 1011)); /* said already */
    sh.n = 0;
    assert_int_equal(gw_guard_set_auth_budget(g, 2, 60, 1012, on_shut_out, &sh), 0); /* out already */
    assert_int_equal(sh.n, 0);
    assert_int_equal(gw_guard_set_auth_budget(g, 1, 60, 1013, on_shut_out, &sh), 0); /* b now too */
    assert_int_equal(sh.n, 1);
    assert_string_equal(sh.addr[0], "10.0.0.2");
    gw_guard_free(g);
}

/*
 * Each caller reads the clock before it takes the lock, so a failure may be counted at a second before
 * one another thread has already counted: the window that later failure opened is live, not over,
 * and the earlier caller must neither reuse its slot nor trim it away. 40 addresses used up their
 * budget at 1001; 40 others fail once under a clock read at 1000, their probes crossing those slots.
 */
static void test_auth_window_from_a_later_read(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 8,
                                 .max_connections_per_address = 8,
                                 .max_requests_per_address = 1,
                                 .auth_failures = 2,
                                 .auth_failure_window = 60,
                                 .ipv6_prefix = 64};
    struct gw_guard *g = gw_guard_new(&conf);
    struct sockaddr_storage x;
    socklen_t l;
    uint32_t wait;

    (void)state;
    for (int i = 0; i < 40; i++) {
        x = nth_v4(2, i, &l);
        assert_false(gw_guard_auth_failed(g, SA(x), l, 1001));
        assert_true(gw_guard_auth_failed(g, SA(x), l, 1001));
    }
    for (int i = 0; i < 40; i++) {
        x = nth_v4(3, i, &l);
        assert_false(gw_guard_auth_failed(g, SA(x), l, 1000));
    }
    for (int i = 0; i < 40; i++) {
        x = nth_v4(2, i, &l);
        assert_int_equal(gw_guard_auth_check(g, SA(x), l, 1001, &wait), GW_ERR_LIMIT);
        assert_int_equal(wait, 60);
    }
    gw_guard_free(g);
}

/* Addresses that only failed, many more than the table holds, do not crowd out a new connection. */
static void test_table_reuse(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 1,
                                 .max_connections_per_address = 1,
                                 .max_requests_per_address = 1,
                                 .auth_failures = 1,
                                 .auth_failure_window = 10,
                                 .ipv6_prefix = 64};
    struct gw_guard *g = gw_guard_new(&conf);
    struct sockaddr_storage x;
    socklen_t l;

    (void)state;
    for (int i = 0; i < 1000; i++) {
        x = nth_v4(1, i, &l);
        gw_guard_auth_failed(g, SA(x), l, 100);
    }
    x = v4("192.0.2.1", 1, &l);
    /* the table is full of failure windows (live or not): a connection takes a slot all the same */
    assert_int_equal(gw_guard_conn_open(g, SA(x), l), 0);
    gw_guard_free(g);

    conf.max_connections = 0;
    assert_null(gw_guard_new(&conf));
    conf.max_connections = 1;
    conf.auth_failure_window = 0;
    assert_null(gw_guard_new(&conf));
    conf.auth_failure_window = 10;
    conf.max_requests_per_address = 0;
    assert_null(gw_guard_new(&conf));
    conf.max_requests_per_address = 1;
    conf.ipv6_prefix = 0;
    assert_null(gw_guard_new(&conf));
    conf.ipv6_prefix = 129;
    assert_null(gw_guard_new(&conf));
}

/* Requests in flight per address, across its connections: one address's share, the others unaffected. */
static void test_requests_in_flight(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 8,
                                 .max_connections_per_address = 4,
                                 .max_requests_per_address = 2,
                                 .ipv6_prefix = 64};
    struct gw_guard *g = gw_guard_new(&conf);
    socklen_t la, lb, lbad = sizeof(struct sockaddr);
    struct sockaddr_storage a1 = v4("127.0.0.1", 1000, &la), a2 = v4("127.0.0.1", 2000, &la),
                            b = v4("127.0.0.2", 1000, &lb), bad;

    (void)state;
    memset(&bad, 0, sizeof(bad));
    bad.ss_family = AF_UNIX;
    assert_non_null(g);
    assert_int_equal(gw_guard_conn_open(g, SA(a1), la), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(a2), la), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(b), lb), 0);
    assert_int_equal(gw_guard_req_begin(g, SA(a1), la), 0);
    assert_int_equal(gw_guard_req_begin(g, SA(a2), la), 0);           /* another connection, same address */
    assert_int_equal(gw_guard_req_begin(g, SA(a1), la), GW_ERR_BUSY); /* its share is 2 */
    assert_int_equal(gw_guard_req_begin(g, SA(a2), la), GW_ERR_BUSY);
    assert_int_equal(gw_guard_req_begin(g, SA(b), lb), 0); /* another address is still served */
    gw_guard_req_end(g, SA(a1), la);
    assert_int_equal(gw_guard_req_begin(g, SA(a2), la), 0); /* room again once one is answered */
    assert_int_equal(gw_guard_req_begin(g, SA(bad), lbad), GW_ERR_INVAL);
    gw_guard_req_end(g, SA(bad), lbad); /* ignored */

    /* the connections go, the requests stay in flight (their clients left before the answers) */
    gw_guard_conn_close(g, SA(a1), la);
    gw_guard_conn_close(g, SA(a2), la);
    assert_int_equal(gw_guard_conn_open(g, SA(a1), la), 0);
    assert_int_equal(gw_guard_req_begin(g, SA(a1), la), GW_ERR_BUSY); /* still counted */
    gw_guard_req_end(g, SA(a1), la);
    gw_guard_req_end(g, SA(a1), la);
    gw_guard_req_end(g, SA(a1), la); /* one end too many does not go below zero */
    assert_int_equal(gw_guard_req_begin(g, SA(a1), la), 0);
    assert_int_equal(gw_guard_req_begin(g, SA(a1), la), 0);
    assert_int_equal(gw_guard_req_begin(g, SA(a1), la), GW_ERR_BUSY);
    gw_guard_free(g);
}

/*
 * Clients that leave with their requests still in flight (each from an address of its own) keep those
 * addresses' slots until the answers; however many come and go, a new address is let in: the table
 * has room for every request the guard lets be in flight (max_requests, max_connections unless set),
 * and past that the request is refused (GW_ERR_LIMIT), never the next address's connection.
 */
static void test_orphaned_requests_leave_room(void **state)
{
    static const struct {
        uint32_t max_connections, max_requests; /* 0: max_connections */
        int clients, in_flight;
    } cases[] = {
        {4, 0, 1000, 4}, {2, 300, 600, 300}, /* what the workers, the queue and the upstream calls hold */
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct gw_guard_conf conf = {.max_connections = cases[c].max_connections,
                                     .max_connections_per_address = 1,
                                     .max_requests_per_address = 1,
                                     .max_requests = cases[c].max_requests,
                                     .ipv6_prefix = 64};
        struct gw_guard *g = gw_guard_new(&conf);
        struct sockaddr_storage x;
        socklen_t l;
        char ip[64];
        int in_flight = 0;

        assert_non_null(g);
        for (int i = 0; i < cases[c].clients; i++) {
            int rc;

            snprintf(ip, sizeof(ip), "2001:db8:%x::1", i + 1); /* a /64 of its own each */
            x = v6(ip, &l);
            if (gw_guard_conn_open(g, SA(x), l) != 0)
                fail_msg("case %zu: client %d (%s) refused with no connection open", c, i, ip);
            rc = gw_guard_req_begin(g, SA(x), l);
            assert_int_equal(rc, in_flight < cases[c].in_flight ? 0 : GW_ERR_LIMIT);
            in_flight += rc == 0;
            gw_guard_conn_close(g, SA(x), l); /* its client leaves before the answer */
        }
        x = v4("192.0.2.1", 1, &l);
        assert_int_equal(gw_guard_conn_open(g, SA(x), l), 0);
        assert_int_equal(gw_guard_req_begin(g, SA(x), l), GW_ERR_LIMIT);
        x = v6("2001:db8:1::1", &l); /* the first one is answered: room for another request */
        gw_guard_req_end(g, SA(x), l);
        x = v4("192.0.2.1", 1, &l);
        assert_int_equal(gw_guard_req_begin(g, SA(x), l), 0);
        gw_guard_free(g);
    }
}

/* The address of the |i|th client, a /64 of its own. */
static struct sockaddr_storage nth_v6(int i, socklen_t *l)
{
    char ip[64];

    snprintf(ip, sizeof(ip), "2001:db8:%x::1", i + 1);
    return v6(ip, l);
}

/*
 * A reload that adds upstream calls (gw_guard_set_max_requests) lets that many more requests be in
 * flight, with room in the table for each on an address of its own; the requests and connections
 * already counted stay counted; a lower bound lets no new request in until enough are answered.
 */
static void test_max_requests_reloaded(void **state)
{
    struct gw_guard *g = gw_guard_new(&(struct gw_guard_conf){.max_connections = 2,
                                                              .max_connections_per_address = 1,
                                                              .max_requests_per_address = 1,
                                                              .max_requests = 3,
                                                              .ipv6_prefix = 64});
    struct sockaddr_storage x;
    socklen_t l;

    (void)state;
    assert_non_null(g);
    for (int i = 0; i < 600; i++) { /* 3 in flight, then the rest refused as past max_requests */
        x = nth_v6(i, &l);
        assert_int_equal(gw_guard_req_begin(g, SA(x), l), i < 3 ? 0 : GW_ERR_LIMIT);
    }
    x = v4("192.0.2.1", 1, &l);
    assert_int_equal(gw_guard_conn_open(g, SA(x), l), 0);
    assert_int_equal(gw_guard_set_max_requests(g, 1000), 0); /* upstream calls added by a reload */
    for (int i = 0; i < 600; i++) { /* the first 3 still count (one each), the others come in now */
        x = nth_v6(i, &l);
        assert_int_equal(gw_guard_req_begin(g, SA(x), l), i < 3 ? GW_ERR_BUSY : 0);
    }
    x = v4("192.0.2.1", 1, &l);
    assert_int_equal(gw_guard_conn_open(g, SA(x), l), GW_ERR_BUSY); /* its connection is still counted */
    assert_int_equal(gw_guard_req_begin(g, SA(x), l), 0);
    assert_int_equal(gw_guard_set_max_requests(g, 10), 0); /* and taken away again */
    x = v4("192.0.2.2", 1, &l);
    assert_int_equal(gw_guard_req_begin(g, SA(x), l), GW_ERR_LIMIT);
    for (int i = 0; i < 600; i++) { /* answered: 1 left in flight */
        x = nth_v6(i, &l);
        gw_guard_req_end(g, SA(x), l);
    }
    x = v4("192.0.2.2", 1, &l);
    assert_int_equal(gw_guard_req_begin(g, SA(x), l), 0);
    gw_guard_free(g);
}

/* An IPv6 client is its /64 (ipv6_prefix), an IPv4-mapped IPv6 address is the IPv4 address it maps. */
static void test_address_key(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 64,
                                 .max_connections_per_address = 2,
                                 .max_requests_per_address = 1,
                                 .auth_failures = 2,
                                 .auth_failure_window = 60,
                                 .ipv6_prefix = 64};
    struct gw_guard *g = gw_guard_new(&conf);
    socklen_t l1, l2, l3, l4, lm, lv;
    struct sockaddr_storage x1 = v6("2001:db8:1:2::1", &l1), x2 = v6("2001:db8:1:2:ffff:ffff:ffff:ffff", &l2),
                            x3 = v6("2001:db8:1:2:abcd::7", &l3), y = v6("2001:db8:1:3::1", &l4),
                            mapped = v6("::ffff:192.0.2.7", &lm), plain = v4("192.0.2.7", 1, &lv);
    uint32_t wait;

    (void)state;
    assert_non_null(g);
    /* two addresses of one /64 share its connections ... */
    assert_int_equal(gw_guard_conn_open(g, SA(x1), l1), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(x2), l2), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(x3), l3), GW_ERR_BUSY);
    assert_int_equal(gw_guard_conn_open(g, SA(y), l4), 0); /* the next /64 is another client */
    /* ... its requests in flight ... */
    assert_int_equal(gw_guard_req_begin(g, SA(x1), l1), 0);
    assert_int_equal(gw_guard_req_begin(g, SA(x2), l2), GW_ERR_BUSY);
    assert_int_equal(gw_guard_req_begin(g, SA(y), l4), 0);
    gw_guard_req_end(g, SA(x3), l3); /* ended by any address of the /64 */
    assert_int_equal(gw_guard_req_begin(g, SA(x2), l2), 0);
    /* ... and its failed authentications */
    gw_guard_auth_failed(g, SA(x1), l1, 1000);
    gw_guard_auth_failed(g, SA(x2), l2, 1000);
    assert_int_equal(gw_guard_auth_check(g, SA(x3), l3, 1001, &wait), GW_ERR_LIMIT);
    assert_int_equal(gw_guard_auth_check(g, SA(y), l4, 1001, &wait), 0);

    /* an IPv4 client seen through a dual-stack socket is the same client as over IPv4 */
    assert_int_equal(gw_guard_conn_open(g, SA(mapped), lm), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(plain), lv), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(mapped), lm), GW_ERR_BUSY);
    assert_int_equal(gw_guard_conn_open(g, SA(plain), lv), GW_ERR_BUSY);
    gw_guard_conn_close(g, SA(mapped), lm);
    assert_int_equal(gw_guard_conn_open(g, SA(plain), lv), 0);
    gw_guard_free(g);

    /* ipv6_prefix 128: every IPv6 address on its own; 48: a whole site */
    conf.ipv6_prefix = 128;
    g = gw_guard_new(&conf);
    assert_int_equal(gw_guard_conn_open(g, SA(x1), l1), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(x1), l1), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(x2), l2), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(x1), l1), GW_ERR_BUSY);
    gw_guard_free(g);
    conf.ipv6_prefix = 48;
    g = gw_guard_new(&conf);
    assert_int_equal(gw_guard_conn_open(g, SA(x1), l1), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(y), l4), 0); /* 2001:db8:1::/48 both */
    assert_int_equal(gw_guard_conn_open(g, SA(x2), l2), GW_ERR_BUSY);
    gw_guard_free(g);
    /* a prefix that is not a whole number of bytes: /60 keeps 2001:db8:1:2:: apart from ...:12:: */
    conf.ipv6_prefix = 60;
    g = gw_guard_new(&conf);
    {
        socklen_t la, lb, lc;
        struct sockaddr_storage a = v6("2001:db8:1:2::1", &la), b = v6("2001:db8:1:12::1", &lb),
                                c = v6("2001:db8:1:f::1", &lc);
        assert_int_equal(gw_guard_conn_open(g, SA(a), la), 0);
        assert_int_equal(gw_guard_conn_open(g, SA(c), lc), 0); /* 2001:db8:1::/60 both */
        assert_int_equal(gw_guard_conn_open(g, SA(b), lb), 0); /* 2001:db8:1:10::/60 */
        assert_int_equal(gw_guard_conn_open(g, SA(a), la), GW_ERR_BUSY);
    }
    gw_guard_free(g);
}

/* gw_guard_same_address: one client address as the connections are counted, table-driven, and never an
 * address that is not one (the connection cap's room is made among a newcomer's address only). */
static void test_same_address(void **state)
{
    static const struct {
        const char *a, *b;
        bool same;
    } cases[] = {
        {"192.0.2.7", "192.0.2.7", true},
        {"192.0.2.7", "192.0.2.8", false},
        {"192.0.2.7", "::ffff:192.0.2.7", true}, /* a dual-stack socket's view of it */
        {"::ffff:192.0.2.7", "::ffff:192.0.2.8", false},
        {"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true}, /* one /64 */
        {"2001:db8:1:2::1", "2001:db8:1:3::1", false},
        {"192.0.2.7", "2001:db8:1:2::1", false},
        {"::ffff:0.0.0.0", "0.0.0.0", true},
    };
    struct gw_guard_conf conf = {.max_connections = 8,
                                 .max_connections_per_address = 2,
                                 .max_requests_per_address = 1,
                                 .auth_failures = 2,
                                 .auth_failure_window = 60,
                                 .ipv6_prefix = 64};
    struct gw_guard *g = gw_guard_new(&conf);
    struct sockaddr_storage unix_sa = {.ss_family = AF_UNIX};

    (void)state;
    assert_non_null(g);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        socklen_t la, lb;
        struct sockaddr_storage a = strchr(cases[i].a, ':') != NULL ? v6(cases[i].a, &la)
                                                                    : v4(cases[i].a, 1, &la),
                                b = strchr(cases[i].b, ':') != NULL ? v6(cases[i].b, &lb)
                                                                    : v4(cases[i].b, 2, &lb);

        assert_int_equal(gw_guard_same_address(g, SA(a), la, SA(b), lb), cases[i].same);
        assert_int_equal(gw_guard_same_address(g, SA(b), lb, SA(a), la), cases[i].same);
        assert_false(gw_guard_same_address(g, SA(a), la, SA(unix_sa), sizeof(unix_sa)));
        assert_false(gw_guard_same_address(g, SA(a), 2, SA(a), 2)); /* truncated: no address */
    }
    assert_false(gw_guard_same_address(g, SA(unix_sa), sizeof(unix_sa), SA(unix_sa), sizeof(unix_sa)));
    gw_guard_free(g);
}

/*
 * A fleet of clients that each connect once: many more addresses over time than the table has slots.
 * A slot once taken was never given back to the probe chains, so once every slot had held an address,
 * each new address searched the whole table under the lock (a full scan per connection, of 32 768
 * slots here, millions with a large max_connections). Slots no lookup needs go back as it passes.
 */
static void test_many_addresses_over_time(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 4096,
                                 .max_connections_per_address = 64,
                                 .max_requests_per_address = 64,
                                 .auth_failures = 50,
                                 .auth_failure_window = 60,
                                 .ipv6_prefix = 64};
    struct gw_guard *g = gw_guard_new(&conf);
    socklen_t l, lh;
    struct sockaddr_storage x, held = v4("192.0.2.1", 1, &lh);
    time_t now = time(NULL); /* the conn and req calls take the clock's */
    uint32_t wait = 0;
    uint64_t before;

    (void)state;
    assert_non_null(g);
    assert_int_equal(gw_guard_conn_open(g, SA(held), lh), 0);
    before = gw_guard_probes(g);
    for (int i = 0; i < 400000; i++) {
        x = flood_v4(i, &l);
        assert_int_equal(gw_guard_conn_open(g, SA(x), l), 0);
        assert_int_equal(gw_guard_req_begin(g, SA(x), l), 0);
        gw_guard_req_end(g, SA(x), l);
        gw_guard_conn_close(g, SA(x), l);
        if (i % 1000 == 0) /* some fail too: their windows keep their slots for a while */
            gw_guard_auth_failed(g, SA(x), l, now);
    }
    /* four lookups a connection, some 1.2 slots each; 10 where idle slots never went back to the chains */
    assert_true(gw_guard_probes(g) - before < 400000 * 4 * 2);
    assert_true(gw_guard_probes(g) - before > 0); /* counted: the test can fail */
    /* what is held is still found */
    assert_int_equal(gw_guard_conn_open(g, SA(held), lh), 0);
    for (int i = 2; i < 64; i++)
        assert_int_equal(gw_guard_conn_open(g, SA(held), lh), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(held), lh), GW_ERR_BUSY);
    x = v4("10.0.0.0", 1, &l); /* failed first of all: its window lives, wherever its slot went */
    for (int i = 1; i < 50; i++)
        gw_guard_auth_failed(g, SA(x), l, now);
    assert_int_equal(gw_guard_auth_check(g, SA(x), l, now, &wait), GW_ERR_LIMIT);
    assert_int_equal(wait, 60);
    gw_guard_free(g);
}

/* The |i|th prefix of a flood from one /48: a /64 of its own each, 2001:db8:1:<i>::/64. */
static struct sockaddr_storage flood_v6(int i, socklen_t *l)
{
    char ip[64];

    snprintf(ip, sizeof(ip), "2001:db8:1:%x::1", i);
    return v6(ip, l);
}

/*
 * flood_v6's prefixes |from| to |from| + |n| - 1 fail once each at |now|: how many of those failures
 * gw_guard_auth_failed answered with |what|.
 */
static int flood_failed(struct gw_guard *g, int from, int n, time_t now, uint32_t what)
{
    struct sockaddr_storage x;
    socklen_t l;
    int got = 0;

    for (int i = from; i < from + n; i++) {
        x = flood_v6(i, &l);
        got += gw_guard_auth_failed(g, SA(x), l, now) == what;
    }
    return got;
}

/* The defaults' table (16 384 slots) and budget. */
static const struct gw_guard_conf flood_conf = {.max_connections = 4096,
                                                .max_connections_per_address = 64,
                                                .max_requests_per_address = 64,
                                                .max_requests = 4000,
                                                .auth_failures = 50,
                                                .auth_failure_window = 60,
                                                .ipv6_prefix = 64};

/*
 * More prefixes than the table has slots fail once each within a window (a ClientHello with no TLS
 * version the listener speaks, from each /64 of a /48). Slots that hold a live failure are never idle,
 * so the table filled up: a failure that found no room was not counted, and an address that then
 * failed 50 times was never shut out.
 */
static void test_repeat_offender_after_a_flood(void **state)
{
    struct gw_guard *g = gw_guard_new(&flood_conf);
    struct sockaddr_storage x;
    time_t now = 1000;
    uint32_t wait;
    socklen_t l;
    char ip[64];

    (void)state;
    assert_non_null(g);
    assert_int_equal(flood_failed(g, 0, 20000, now, 64), 0); /* its site's may be used up */
    for (int k = 0; k < 100; k++) { /* offenders of their own, half IPv4, half IPv6 */
        if (k % 2 == 0)
            snprintf(ip, sizeof(ip), "198.51.100.%d", k + 1);
        else
            snprintf(ip, sizeof(ip), "2001:db8:ff:%x::1", k);
        x = k % 2 == 0 ? v4(ip, 1, &l) : v6(ip, &l);
        for (int i = 1; i <= 50; i++)
            if ((gw_guard_auth_failed(g, SA(x), l, now + 1) != 0) != (i == 50))
                fail_msg("%s: failure %d", ip, i);
        if (gw_guard_auth_check(g, SA(x), l, now + 2, &wait) != GW_ERR_LIMIT)
            fail_msg("%s: not shut out after 50 failures", ip);
        assert_int_equal(wait, 60 - 1);
    }
    gw_guard_free(g);
}

/*
 * Once the table is full of live failure windows, a lookup of an address it does not hold went on to
 * the end of the chain: all of it, some 16 000 slots, under the lock every loop thread takes for each
 * connection (180 us a lookup measured). Each lookup now looks at GW_GUARD_PROBES slots at most.
 */
static void test_probes_bounded(void **state)
{
    struct gw_guard *g = gw_guard_new(&flood_conf);
    struct sockaddr_storage x;
    uint64_t before, most = 0;
    time_t now = time(NULL); /* the conn calls read the clock */
    uint32_t wait;
    socklen_t l;

    (void)state;
    assert_non_null(g);
    for (int i = 0; i < 40000; i++) {
        x = flood_v6(i, &l);
        before = gw_guard_probes(g);
        gw_guard_auth_failed(g, SA(x), l, now);
        most = gw_guard_probes(g) - before > most ? gw_guard_probes(g) - before : most;
    }
    for (int k = 0; k < 1000; k++) {
        x = nth_v4(9, k, &l);
        before = gw_guard_probes(g);
        assert_int_equal(gw_guard_auth_check(g, SA(x), l, now, &wait), 0);
        assert_int_equal(gw_guard_conn_open(g, SA(x), l), 0);
        assert_int_equal(gw_guard_req_begin(g, SA(x), l), 0);
        gw_guard_req_end(g, SA(x), l);
        gw_guard_conn_close(g, SA(x), l);
        assert_true(gw_guard_probes(g) - before <= 5 * GW_GUARD_PROBES); /* five lookups */
        assert_true(gw_guard_probes(g) - before > 0);                    /* counted: the test can fail */
    }
    assert_true(most <= 2 * GW_GUARD_PROBES); /* the address, and its site while the table is crowded */
    assert_true(most > GW_GUARD_PROBES);      /* the table was crowded */
    gw_guard_free(g);
}

/*
 * Connections and requests keep their counts through a flood of failures from more prefixes than the
 * table has slots: a failure may take the place of another failure, never of a connection or request.
 * Every address of max_connections gets in, each address's cap holds, and all are given back.
 */
static void test_flood_leaves_connections_counted(void **state)
{
    struct gw_guard *g = gw_guard_new(&flood_conf);
    socklen_t l, lone;
    struct sockaddr_storage x, one = v4("192.0.2.1", 1, &lone);
    time_t now = time(NULL);

    (void)state;
    assert_non_null(g);
    for (int round = 0; round < 2; round++) {
        (void)flood_failed(g, round * 20000, 20000, now, 0); /* before the connections, and among them */
        for (int k = 0; k < 4096; k++) {
            x = nth_v4(8, k, &l);
            if (gw_guard_conn_open(g, SA(x), l) != 0)
                fail_msg("round %d: address %d refused", round, k);
            x = flood_v6(40000 + round * 4096 + k, &l);
            gw_guard_auth_failed(g, SA(x), l, now);
        }
        assert_int_equal(gw_guard_conn_open(g, SA(one), lone), GW_ERR_LIMIT); /* 4096 in total */
        (void)flood_failed(g, 50000 + round * 20000, 20000, now, 0);
        for (int k = 0; k < 4096; k++) { /* each still found, and given back */
            x = nth_v4(8, k, &l);
            gw_guard_conn_close(g, SA(x), l);
        }
    }
    for (int i = 0; i < 64; i++) /* room for all again, and one address's cap */
        assert_int_equal(gw_guard_conn_open(g, SA(one), lone), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(one), lone), GW_ERR_BUSY);
    gw_guard_free(g);
}

/*
 * A reload that grows a table crowded with failures (gw_guard_set_max_requests) moves each address
 * within reach of where a lookup now finds it: connections stay counted, a shut-out address stays out.
 */
static void test_crowded_table_grown(void **state)
{
    struct gw_guard *g = gw_guard_new(&(struct gw_guard_conf){.max_connections = 100,
                                                              .max_connections_per_address = 1,
                                                              .max_requests_per_address = 1,
                                                              .auth_failures = 5,
                                                              .auth_failure_window = 60,
                                                              .ipv6_prefix = 64});
    socklen_t lh, lo;
    struct sockaddr_storage held = v4("192.0.2.1", 1, &lh), out = v4("192.0.2.2", 1, &lo);
    time_t now = time(NULL);
    uint32_t wait;

    (void)state;
    assert_non_null(g);
    assert_int_equal(gw_guard_conn_open(g, SA(held), lh), 0);
    for (int i = 0; i < 5; i++)
        gw_guard_auth_failed(g, SA(out), lo, now);
    (void)flood_failed(g, 0, 5000, now, 0);
    assert_int_equal(gw_guard_set_max_requests(g, 100000), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(held), lh), GW_ERR_BUSY); /* its one, still counted */
    assert_int_equal(gw_guard_auth_check(g, SA(out), lo, now, &wait), GW_ERR_LIMIT);
    gw_guard_conn_close(g, SA(held), lh);
    assert_int_equal(gw_guard_conn_open(g, SA(held), lh), 0);
    gw_guard_free(g);
}

/*
 * A crowded table keeps only so many of one site's prefixes, each failing a few times, and each it
 * keeps has a budget of its own: while it is crowded their failures count together too, so a flood
 * from one /48 is shut out as a whole (a new /64 of it included), said once as the /48; another site,
 * and an uncrowded table's /48, are not.
 */
static void test_crowded_site_shut_out(void **state)
{
    struct gw_guard *g = gw_guard_new(&flood_conf);
    socklen_t l, lo, ln;
    struct sockaddr_storage x, other = v6("2001:db8:2::1", &lo), fresh = v6("2001:db8:1:ffff::1", &ln);
    time_t now = 1000;
    uint32_t wait, crossed = 0, said = 0;

    (void)state;
    assert_non_null(g);
    assert_int_equal(flood_failed(g, 0, 100, now, 0), 100); /* room for all: each its own */
    assert_int_equal(gw_guard_auth_check(g, SA(fresh), ln, now, &wait), 0);
    for (int i = 100; i < 40000; i++) {
        x = flood_v6(i, &l);
        crossed = gw_guard_auth_failed(g, SA(x), l, now + 1);
        said += crossed != 0;
        if (crossed != 0)
            assert_int_equal(crossed, 48);
    }
    assert_int_equal(said, 1);
    assert_int_equal(gw_guard_auth_check(g, SA(fresh), ln, now + 2, &wait), GW_ERR_LIMIT);
    assert_int_equal(wait, 59);
    assert_int_equal(gw_guard_auth_check(g, SA(other), lo, now + 2, &wait), 0);
    assert_int_equal(gw_guard_auth_check(g, SA(fresh), ln, now + 61, &wait), 0); /* its window ended */
    gw_guard_free(g);

    g = gw_guard_new(&(struct gw_guard_conf){.max_connections = 4096,
                                             .max_connections_per_address = 64,
                                             .max_requests_per_address = 64,
                                             .auth_failures = 50,
                                             .auth_failure_window = 60,
                                             .ipv6_prefix = 48}); /* the address is the site */
    assert_int_equal(flood_failed(g, 0, 49, now, 0), 49);
    assert_int_equal(gw_guard_auth_failed(g, SA(fresh), ln, now), 48);
    gw_guard_free(g);
}

/*
 * A flood from elsewhere (60 000 IPv4 addresses failing once each) crowds the table, but merges no
 * /48 by itself: a carrier /48 whose 50 /64s each failed once after it (abandoned handshakes, each
 * /64 connecting first) has a fresh /64 let in, and nothing is said for the /48. Its twin: a /48
 * whose own /64s, connecting and failing the same way, take each other's places is shut out as one.
 */
static void test_crowded_elsewhere_site_apart(void **state)
{
    struct gw_guard *g = gw_guard_new(&flood_conf);
    socklen_t l, ln;
    struct sockaddr_storage x, fresh = v6("2001:db8:c:ffff::1", &ln);
    time_t now = time(NULL); /* the conn calls read the clock */
    uint32_t wait, said = 0;

    (void)state;
    assert_non_null(g);
    for (int i = 0; i < 60000; i++) {
        x = flood_v4(i, &l);
        assert_int_equal(gw_guard_auth_failed(g, SA(x), l, now), 0);
    }
    for (int i = 0; i < 50; i++) {
        x = carrier_v6(i, &l);
        assert_int_equal(gw_guard_conn_open(g, SA(x), l), 0);
        if (gw_guard_auth_failed(g, SA(x), l, now + 1) != 0)
            fail_msg("the carrier's /64 %d: its failure used a budget up", i);
        gw_guard_conn_close(g, SA(x), l);
    }
    assert_int_equal(gw_guard_auth_check(g, SA(fresh), ln, now + 2, &wait), 0);
    assert_int_equal(gw_guard_conn_open(g, SA(fresh), ln), 0);

    for (int i = 0; i < 40000; i++) {
        x = flood_v6(i, &l);
        assert_int_equal(gw_guard_conn_open(g, SA(x), l), 0);
        said += gw_guard_auth_failed(g, SA(x), l, now + 2) == 48;
        gw_guard_conn_close(g, SA(x), l);
    }
    assert_int_equal(said, 1);
    x = v6("2001:db8:1:ffff::1", &l);
    assert_int_equal(gw_guard_auth_check(g, SA(x), l, now + 3, &wait), GW_ERR_LIMIT);
    assert_int_equal(gw_guard_auth_check(g, SA(fresh), ln, now + 3, &wait), 0);
    gw_guard_free(g);
}

/*
 * A flood from elsewhere keeps the table full of one-off failures, always the newest, while a carrier
 * /48 has one /64 after another fail once in between. The oldest, cheapest slots are then the
 * carrier's: a new /64 of it took an older failure of another of its /64s, marking the /48, and a fresh
 * /64 that never failed was refused within a minute or two. A tie goes against another address first,
 * so the /48 stays apart while others' slots are as cheap as its own.
 */
static void test_interleaved_flood_site_apart(void **state)
{
    struct gw_guard *g = gw_guard_new(&flood_conf);
    socklen_t l, ln;
    struct sockaddr_storage x, fresh = v6("2001:db8:c:ffff::1", &ln);
    time_t now = 1000;
    uint32_t wait;
    int flood = 0, carrier = 0, said = 0;

    (void)state;
    assert_non_null(g);
    for (int sec = 0; sec < 180; sec++, now++) {
        for (int i = 0; i < 2000; i++, flood++) { /* 2000 IPv4 failures a second, 10 of the carrier's */
            x = flood_v4(flood, &l);
            assert_int_equal(gw_guard_auth_failed(g, SA(x), l, now), 0);
            if (i % 200 != 0)
                continue;
            x = carrier_v6(carrier++, &l);
            said += gw_guard_auth_failed(g, SA(x), l, now) != 0;
        }
        if (gw_guard_auth_check(g, SA(fresh), ln, now, &wait) != 0)
            fail_msg("a fresh /64 of the carrier refused at second %d", sec);
    }
    assert_int_equal(said, 0); /* nothing said for a /64 or the /48 either */
    gw_guard_free(g);
}

/* A reload's lower budget says a site it shuts out as the site. */
static void on_site_shut_out(void *arg, const struct sockaddr *sa, socklen_t len, uint32_t bits)
{
    char addr[INET6_ADDRSTRLEN];

    (void)len;
    if (sa->sa_family != AF_INET6 || bits != 48)
        return;
    assert_non_null(inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr)));
    assert_string_equal(addr, "2001:db8:1::");
    (*(int *)arg)++;
}

static void test_crowded_site_lowered(void **state)
{
    struct gw_guard_conf conf = flood_conf;
    struct gw_guard *g;
    int sites = 0;

    (void)state;
    conf.auth_failures = 100000;
    g = gw_guard_new(&conf);
    assert_non_null(g);
    (void)flood_failed(g, 0, 40000, 1000, 0);
    assert_int_equal(gw_guard_set_auth_budget(g, 50, 60, 1001, on_site_shut_out, &sites), 0);
    assert_int_equal(sites, 1);
    gw_guard_free(g);
}

/* A proven request keeps its connection GW_PROVEN_HOLD_MS, no longer; a certificate's grace until its end. */
static void test_conn_kept(void **state)
{
    static const struct {
        uint64_t now, proven_at, grace_until;
        bool kept;
    } cases[] = {
        {100000, 0, 0, false},                               /* nothing shown */
        {100000, 100000, 0, true},                           /* proven just now */
        {100000 + GW_PROVEN_HOLD_MS - 1, 100000, 0, true},   /* ... within the bound */
        {100000 + GW_PROVEN_HOLD_MS, 100000, 0, false},      /* ... idle since: evictable */
        {100000 + 10 * GW_PROVEN_HOLD_MS, 100000, 0, false}, /* one genm long ago keeps nothing */
        {99999, 100000, 0, true},                            /* a clock read before it */
        {100000, 0, 100000 + GW_PEER_GRACE_MS, true},        /* a certificate before its first answer */
        {100000 + GW_PEER_GRACE_MS, 0, 100000 + GW_PEER_GRACE_MS, false}, /* ... its grace over */
        {100000 + GW_PEER_GRACE_MS, 100000, 0, true}, /* proven: the bound, not the grace */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(gw_guard_conn_kept(cases[i].now, cases[i].proven_at, cases[i].grace_until),
                         cases[i].kept);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connections),
        cmocka_unit_test(test_auth_budget),
        cmocka_unit_test(test_auth_budget_reloaded),
        cmocka_unit_test(test_auth_budget_lowered),
        cmocka_unit_test(test_auth_window_from_a_later_read),
        cmocka_unit_test(test_table_reuse),
        cmocka_unit_test(test_requests_in_flight),
        cmocka_unit_test(test_orphaned_requests_leave_room),
        cmocka_unit_test(test_max_requests_reloaded),
        cmocka_unit_test(test_address_key),
        cmocka_unit_test(test_same_address),
        cmocka_unit_test(test_many_addresses_over_time),
        cmocka_unit_test(test_repeat_offender_after_a_flood),
        cmocka_unit_test(test_probes_bounded),
        cmocka_unit_test(test_flood_leaves_connections_counted),
        cmocka_unit_test(test_crowded_table_grown),
        cmocka_unit_test(test_crowded_site_shut_out),
        cmocka_unit_test(test_crowded_site_lowered),
        cmocka_unit_test(test_crowded_elsewhere_site_apart),
        cmocka_unit_test(test_interleaved_flood_site_apart),
        cmocka_unit_test(test_conn_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
