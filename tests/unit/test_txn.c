/* Transaction table: caps, duplicates, exclusive check-out, reservations, expiry order, clearing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "gateway/cmp/txn.h"

static int freed;

static void count_free(void *data)
{
    (void)data;
    freed++;
}

static struct gw_txn *mk(const char *tid, const char *who, time_t expires)
{
    return gw_txn_new((const unsigned char *)tid, strlen(tid), who, who, expires, NULL, count_free);
}

static void test_put_take_release(void **state)
{
    struct gw_txn_table *t = gw_txn_table_new(10, 0);
    struct gw_txn *x;

    (void)state;
    freed = 0;
    assert_int_equal(gw_txn_put(t, mk("a", "dev", 10)), 0);
    assert_int_equal(gw_txn_count(t), 1);
    x = mk("a", "dev", 10);
    assert_int_equal(gw_txn_put(t, x), GW_ERR_EXISTS); /* duplicate put: not taken over */
    gw_txn_free(x);
    x = gw_txn_take(t, (const unsigned char *)"a", 1);
    assert_non_null(x);
    assert_null(gw_txn_take(t, (const unsigned char *)"a", 1));     /* take twice */
    assert_true(gw_txn_contains(t, (const unsigned char *)"a", 1)); /* still held while checked out */
    assert_int_equal(gw_txn_count(t), 0);
    assert_int_equal(gw_txn_put(t, x), 0); /* put back */
    assert_int_equal(gw_txn_count(t), 1);
    x = gw_txn_take(t, (const unsigned char *)"a", 1);
    gw_txn_free(x);
    gw_txn_release(t, (const unsigned char *)"a", 1);
    assert_false(gw_txn_contains(t, (const unsigned char *)"a", 1));
    assert_null(gw_txn_take(t, (const unsigned char *)"zz", 2));
    gw_txn_table_free(t, NULL, NULL);
    assert_int_equal(freed, 2);
}

/* A closed transaction's slot its call still holds: found open by no message, yet counted and taken. */
static void test_end_held(void **state)
{
    struct gw_txn_table *t = gw_txn_table_new(10, 1);
    const unsigned char *a = (const unsigned char *)"a";

    (void)state;
    assert_int_equal(gw_txn_reserve(t, a, 1, "dev"), 0);
    assert_null(gw_txn_take(t, a, 1)); /* reserved: nothing to take */
    gw_txn_end_held(t, a, 1);
    assert_false(gw_txn_contains(t, a, 1));
    assert_int_equal(gw_txn_reserve(t, a, 1, "dev"), GW_ERR_EXISTS);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"b", 1, "dev"), GW_ERR_LIMIT);
    assert_int_equal(gw_txn_count_quota(t, "dev"), 1);
    gw_txn_release(t, a, 1);
    assert_int_equal(gw_txn_count_quota(t, "dev"), 0);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"b", 1, "dev"), 0);
    gw_txn_end_held(t, (const unsigned char *)"zz", 2); /* none: nothing happens */
    gw_txn_table_free(t, NULL, NULL);
}

/* Ended while another holds it: that holder's put closes the slot instead of opening it again. */
static void test_take_or_end(void **state)
{
    struct gw_txn_table *t = gw_txn_table_new(10, 0);
    const unsigned char *a = (const unsigned char *)"a";
    struct gw_txn *x, *held;
    int ended = -1;

    (void)state;
    assert_int_equal(gw_txn_put(t, mk("a", "dev", 10)), 0);
    x = gw_txn_take_or_end(t, a, 1, &ended); /* open: taken, as gw_txn_take */
    assert_non_null(x);
    assert_int_equal(ended, 0);
    assert_int_equal(gw_txn_put(t, x), 0);
    held = gw_txn_take(t, a, 1);
    assert_null(gw_txn_take_or_end(t, a, 1, &ended));
    assert_int_equal(ended, 1);
    assert_int_equal(gw_txn_put(t, held), GW_ERR_NOT_FOUND);
    assert_false(gw_txn_contains(t, a, 1));
    assert_int_equal(gw_txn_count_quota(t, "dev"), 0);
    gw_txn_free(held);
    /* a reservation is a request of its own, not ended */
    assert_int_equal(gw_txn_reserve(t, a, 1, "dev"), 0);
    assert_null(gw_txn_take_or_end(t, a, 1, &ended));
    assert_int_equal(ended, 0);
    assert_int_equal(gw_txn_put(t, mk("a", "dev", 10)), 0);
    gw_txn_table_free(t, NULL, NULL);
}

struct tid_case {
    size_t len;
    int want;
};

static void test_tid_lengths(void **state)
{
    static const struct tid_case cases[] = {
        {0, GW_ERR_INVAL},
        {1, 0},
        {GW_MAX_TID_LEN, 0},
        {GW_MAX_TID_LEN + 1, GW_ERR_INVAL},
    };
    unsigned char tid[GW_MAX_TID_LEN + 1];
    struct gw_txn_table *t = gw_txn_table_new(10, 0);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(tid, (int)('a' + i), sizeof(tid));
        assert_int_equal(gw_txn_reserve(t, tid, cases[i].len, "x"), cases[i].want);
        if (cases[i].want != 0)
            assert_null(gw_txn_new(tid, cases[i].len, "x", "x", 0, NULL, NULL));
    }
    assert_null(gw_txn_take(t, tid, 0));
    assert_false(gw_txn_contains(t, tid, GW_MAX_TID_LEN + 1));
    gw_txn_table_free(t, NULL, NULL);
}

static void test_caps(void **state)
{
    struct gw_txn_table *t = gw_txn_table_new(3, 2);
    struct gw_txn *x;

    (void)state;
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"1", 1, "a"), 0);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"1", 1, "b"), GW_ERR_EXISTS);
    assert_int_equal(gw_txn_put(t, mk("2", "a", 5)), 0);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"3", 1, "a"), GW_ERR_LIMIT); /* per identity */
    x = mk("3", "a", 5);
    assert_int_equal(gw_txn_put(t, x), GW_ERR_LIMIT);
    gw_txn_free(x);
    assert_int_equal(gw_txn_count_quota(t, "a"), 2);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"3", 1, "b"), 0);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"4", 1, "c"), GW_ERR_LIMIT); /* total */
    /* a reservation is filled only by its own identity */
    x = mk("1", "b", 5);
    assert_int_equal(gw_txn_put(t, x), GW_ERR_EXISTS);
    gw_txn_free(x);
    assert_int_equal(gw_txn_put(t, mk("1", "a", 5)), 0);
    gw_txn_release(t, (const unsigned char *)"1", 1); /* no-op on an open entry */
    assert_true(gw_txn_contains(t, (const unsigned char *)"1", 1));
    gw_txn_release(t, (const unsigned char *)"3", 1);
    assert_int_equal(gw_txn_count_quota(t, "b"), 0);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"4", 1, "c"), 0);
    gw_txn_release(t, (const unsigned char *)"4", 1);
    assert_null(gw_txn_table_new(0, 0));
    gw_txn_table_free(t, NULL, NULL);
}

static time_t seen[8];
static size_t n_seen;

static void on_expired(void *arg, struct gw_txn *txn)
{
    (void)arg;
    seen[n_seen++] = txn->expires;
    gw_txn_free(txn);
}

static void test_expiry_order(void **state)
{
    struct gw_txn_table *t = gw_txn_table_new(16, 0);

    (void)state;
    n_seen = 0;
    assert_int_equal(gw_txn_put(t, mk("c", "x", 30)), 0);
    assert_int_equal(gw_txn_put(t, mk("a", "x", 10)), 0);
    assert_int_equal(gw_txn_put(t, mk("b", "x", 20)), 0);
    assert_int_equal(gw_txn_put(t, mk("d", "x", 40)), 0);
    gw_txn_free(gw_txn_take(t, (const unsigned char *)"d", 1)); /* checked out: never expires */
    assert_int_equal(gw_txn_expire(t, 5, on_expired, NULL), 0);
    assert_int_equal(gw_txn_expire(t, 30, on_expired, NULL), 3);
    assert_int_equal(n_seen, 3);
    assert_true(seen[0] == 10 && seen[1] == 20 && seen[2] == 30);
    assert_int_equal(gw_txn_expire(t, 1000, on_expired, NULL), 0);
    assert_true(gw_txn_contains(t, (const unsigned char *)"d", 1));
    assert_int_equal(gw_txn_count_quota(t, "x"), 1);
    gw_txn_table_free(t, on_expired, NULL);
}

/*
 * One entry taken out once it expired, as the expiry would hand it over: not before (the table as it was),
 * nor a reserved or checked-out one, whatever its time.
 */
static void test_take_expired(void **state)
{
    struct gw_txn_table *t = gw_txn_table_new(16, 0);
    struct gw_txn *x;

    (void)state;
    assert_int_equal(gw_txn_put(t, mk("a", "x", 10)), 0);
    assert_int_equal(gw_txn_put(t, mk("b", "x", 10)), 0);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"r", 1, "x"), 0);
    assert_null(gw_txn_take_expired(t, (const unsigned char *)"a", 1, 9));
    assert_int_equal(gw_txn_count(t), 2);
    assert_non_null(x = gw_txn_take_expired(t, (const unsigned char *)"a", 1, 10));
    assert_int_equal(x->expires, 10);
    gw_txn_free(x);
    assert_false(gw_txn_contains(t, (const unsigned char *)"a", 1)); /* its slot is gone */
    assert_int_equal(gw_txn_count_quota(t, "x"), 2);
    assert_null(gw_txn_take_expired(t, (const unsigned char *)"a", 1, 1000)); /* none */
    assert_null(gw_txn_take_expired(t, (const unsigned char *)"r", 1, 1000)); /* reserved */
    x = gw_txn_take(t, (const unsigned char *)"b", 1);
    assert_null(gw_txn_take_expired(t, (const unsigned char *)"b", 1, 1000)); /* checked out */
    assert_true(gw_txn_contains(t, (const unsigned char *)"b", 1));
    gw_txn_free(x);
    gw_txn_table_free(t, NULL, NULL);
}

/* Clearing hands every open entry over and counts the slots still reserved or checked out. */
static void test_clear(void **state)
{
    struct gw_txn_table *t = gw_txn_table_new(4, 2);

    (void)state;
    n_seen = 0;
    assert_int_equal(gw_txn_put(t, mk("a", "x", 10)), 0);
    assert_int_equal(gw_txn_put(t, mk("b", "x", 20)), 0);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"c", 1, "y"), 0);
    assert_int_equal(gw_txn_put(t, mk("d", "y", 40)), 0);
    gw_txn_free(gw_txn_take(t, (const unsigned char *)"d", 1));
    assert_int_equal(gw_txn_table_clear(t, on_expired, NULL), 2); /* "c" reserved, "d" checked out */
    assert_int_equal(n_seen, 2);
    assert_true(seen[0] == 10 && seen[1] == 20);
    assert_int_equal(gw_txn_count(t), 0);
    assert_int_equal(gw_txn_count_quota(t, "x"), 0);
    assert_int_equal(gw_txn_count_quota(t, "y"), 0);
    assert_false(gw_txn_contains(t, (const unsigned char *)"c", 1));
    /* the caps count from zero again */
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"c", 1, "x"), 0);
    assert_int_equal(gw_txn_reserve(t, (const unsigned char *)"e", 1, "x"), 0);
    assert_int_equal(gw_txn_table_clear(t, NULL, NULL), 2);
    assert_int_equal(gw_txn_table_clear(t, NULL, NULL), 0);
    assert_int_equal(gw_txn_table_clear(NULL, NULL, NULL), 0);
    gw_txn_table_free(t, NULL, NULL);
}

#define THREADS 4
#define PER_THREAD 200

static void *worker(void *arg)
{
    struct gw_txn_table *t = arg;
    char tid[32];

    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(tid, sizeof(tid), "%p-%d", (void *)&tid, i);
        if (gw_txn_reserve(t, (unsigned char *)tid, strlen(tid), "same") == 0) {
            struct gw_txn *x = gw_txn_new((unsigned char *)tid, strlen(tid), "same", "same", 1, NULL, NULL);
            if (gw_txn_put(t, x) != 0)
                gw_txn_free(x);
            gw_txn_free(gw_txn_take(t, (unsigned char *)tid, strlen(tid)));
            gw_txn_release(t, (unsigned char *)tid, strlen(tid));
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct gw_txn_table *t = gw_txn_table_new(8, 3);
    pthread_t th[THREADS];

    (void)state;
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, t), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(gw_txn_count_quota(t, "same"), 0);
    assert_int_equal(gw_txn_count(t), 0);
    gw_txn_table_free(t, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_take_release),
        cmocka_unit_test(test_take_or_end),
        cmocka_unit_test(test_end_held),
        cmocka_unit_test(test_tid_lengths),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_expiry_order),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_take_expired),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
