/* Admission by client address: connections in total and per address, the failed-authentication budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
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

static void test_connections(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 5, .max_connections_per_address = 2};
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
                                 .auth_failures = 3,
                                 .auth_failure_window = 60};
    struct gw_guard *g = gw_guard_new(&conf);
    socklen_t la, lb;
    struct sockaddr_storage a = v4("10.0.0.1", 1, &la), b = v4("10.0.0.2", 1, &lb);
    uint32_t wait = 99;

    (void)state;
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1000, &wait), 0);
    assert_int_equal(wait, 0);
    for (int i = 0; i < 3; i++)
        gw_guard_auth_failed(g, SA(a), la, 1000 + i);
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1010, &wait), GW_ERR_LIMIT);
    assert_int_equal(wait, 50);                                          /* the window opened at 1000 */
    assert_int_equal(gw_guard_auth_check(g, SA(b), lb, 1010, &wait), 0); /* another address */
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1060, &wait), 0); /* the window ended */
    gw_guard_auth_failed(g, SA(a), la, 1060);                            /* a new window */
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1061, &wait), 0);
    gw_guard_free(g);

    conf.auth_failures = 0; /* no budget */
    g = gw_guard_new(&conf);
    for (int i = 0; i < 10; i++)
        gw_guard_auth_failed(g, SA(a), la, 1000);
    assert_int_equal(gw_guard_auth_check(g, SA(a), la, 1000, &wait), 0);
    gw_guard_free(g);
}

/* Addresses that only failed, many more than the table holds, do not crowd out a new connection. */
static void test_table_reuse(void **state)
{
    struct gw_guard_conf conf = {.max_connections = 1,
                                 .max_connections_per_address = 1,
                                 .auth_failures = 1,
                                 .auth_failure_window = 10};
    struct gw_guard *g = gw_guard_new(&conf);
    struct sockaddr_storage x;
    socklen_t l;
    char ip[32];

    (void)state;
    for (int i = 0; i < 1000; i++) {
        snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 250, i % 250 + 1);
        x = v4(ip, 1, &l);
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connections),
        cmocka_unit_test(test_auth_budget),
        cmocka_unit_test(test_table_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
