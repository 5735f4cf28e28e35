/* Replay cache: replay vs reuse, TTL expiry, bounded when full, a ring that grows to its cap with its
 * entries still found (also with threads adding at once), a share per identity, clearing, bad
 * lengths, a look that records nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/limits.h"
#include "gateway/cmp/replay.h"

struct step {
    const char *tid, *nonce;
    time_t now;
    int want;
    const char *who; /* NULL: the anonymous identity */
};

static void run(struct gw_replay *r, const struct step *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc =
            gw_replay_check_add(r, (const unsigned char *)s[i].tid, strlen(s[i].tid),
                                (const unsigned char *)s[i].nonce, strlen(s[i].nonce), s[i].who, s[i].now);
        if (rc != s[i].want)
            fail_msg("step %zu (%s/%s@%ld): got %d, want %d", i, s[i].tid, s[i].nonce, (long)s[i].now, rc,
                     s[i].want);
    }
}

static void test_replay_and_reuse(void **state)
{
    static const struct step steps[] = {
        {"t1", "n1", 100, 0, NULL},
        {"t1", "n1", 101, GW_ERR_REPLAY, NULL}, /* byte-identical resend */
        {"t1", "n2", 102, GW_ERR_EXISTS, NULL}, /* tid reuse with a fresh nonce */
        {"t1", "", 102, GW_ERR_EXISTS, NULL},
        {"t2", "", 103, 0, NULL}, /* no nonce at all */
        {"t2", "", 104, GW_ERR_REPLAY, NULL},
        {"t1", "n1", 159, GW_ERR_REPLAY, NULL}, /* just inside the TTL */
        {"t1", "n1", 160, 0, NULL},             /* TTL 60 passed: forgotten */
    };
    struct gw_replay *r = gw_replay_new(16, 16, 60);

    (void)state;
    run(r, steps, sizeof(steps) / sizeof(steps[0]));
    gw_replay_free(r);
}

static void test_full(void **state)
{
    static const struct step steps[] = {
        {"a", "1", 10, 0, NULL},
        {"b", "1", 20, 0, NULL},
        {"c", "1", 30, 0, NULL},
        {"d", "1", 30, GW_ERR_BUSY, NULL},   /* full of live entries: refuse, do not forget */
        {"a", "1", 30, GW_ERR_REPLAY, NULL}, /* ... so "a" is still known */
        {"d", "1", 70, 0, NULL},             /* "a" expired at 70: room again */
        {"e", "1", 70, GW_ERR_BUSY, NULL},
        {"e", "1", 80, 0, NULL}, /* expiry in arrival order: "b" goes next */
    };
    struct gw_replay *r = gw_replay_new(3, 10, 60);

    (void)state;
    run(r, steps, 7);
    assert_int_equal(gw_replay_count(r), 3);
    run(r, steps + 7, 1);
    assert_int_equal(
        gw_replay_check_add(r, (const unsigned char *)"b", 1, (const unsigned char *)"1", 1, NULL, 90), 0);
    assert_int_equal(
        gw_replay_check_add(r, (const unsigned char *)"d", 1, (const unsigned char *)"1", 1, NULL, 90),
        GW_ERR_REPLAY);
    gw_replay_free(r);
}

static int add(struct gw_replay *r, size_t i, time_t now)
{
    char tid[32];

    snprintf(tid, sizeof(tid), "tid-%zu", i);
    return gw_replay_check_add(r, (const unsigned char *)tid, strlen(tid), (const unsigned char *)"n", 1,
                               NULL, now);
}

/* The ring grows past its first slots (once it has wrapped: expiry moved its head), every entry still
 * found across the growth, up to its cap and no further. */
static void test_grows(void **state)
{
    const size_t max = 5 * GW_REPLAY_INITIAL_SLOTS + 7;
    struct gw_replay *r = gw_replay_new(max, max + 1, 100);
    size_t i;

    (void)state;
    for (i = 0; i < GW_REPLAY_INITIAL_SLOTS / 2; i++) /* these expire at 100 */
        assert_int_equal(add(r, i, 0), 0);
    for (; i < max + GW_REPLAY_INITIAL_SLOTS / 2; i++) /* live from 50 on: the ring wraps, then grows */
        assert_int_equal(add(r, i, 100), 0);
    assert_int_equal(gw_replay_count(r), max);
    assert_int_equal(add(r, i, 100), GW_ERR_BUSY); /* at the cap */
    for (size_t j = GW_REPLAY_INITIAL_SLOTS / 2; j < i; j++)
        assert_int_equal(add(r, j, 101), GW_ERR_REPLAY);
    for (size_t j = 0; j < GW_REPLAY_INITIAL_SLOTS / 2; j++) /* all expired at 200: room again */
        assert_int_equal(add(r, j, 200), 0);
    gw_replay_free(r);
}

/* Right after a doubling the old ring's entries are still found, and those that expire before they
 * moved are dropped where they are: the cache stays exact while the old ring empties. */
static void test_expires_while_moving(void **state)
{
    const size_t n = GW_REPLAY_INITIAL_SLOTS;
    struct gw_replay *r = gw_replay_new(4 * n, 4 * n, 100);

    (void)state;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(add(r, i, 0), 0);
    assert_int_equal(add(r, n, 1), 0); /* the ring doubles: n entries left in the old one */
    assert_int_equal(add(r, n - 1, 1), GW_ERR_REPLAY);
    assert_int_equal(add(r, n / 2, 1), GW_ERR_REPLAY);
    assert_int_equal(gw_replay_count(r), n + 1);
    assert_int_equal(add(r, n + 1, 100), 0); /* the first n expired, most before they moved */
    assert_int_equal(gw_replay_count(r), 2);
    assert_int_equal(add(r, n, 100), GW_ERR_REPLAY);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(add(r, i, 100), 0);
    assert_int_equal(gw_replay_count(r), n + 2);
    gw_replay_free(r);
}

#define RACERS 4
#define RACER_ADDS (4 * GW_REPLAY_INITIAL_SLOTS + 3)

struct racer {
    struct gw_replay *r;
    size_t first;
    int failed;
};

static void *race(void *arg)
{
    struct racer *x = arg;

    for (size_t i = x->first; i < x->first + RACER_ADDS; i++)
        x->failed |= add(x->r, i, 100) != 0;
    return NULL;
}

/* Threads adding at once while the ring doubles four times: every entry kept, none twice. */
static void test_grows_concurrently(void **state)
{
    struct gw_replay *r = gw_replay_new(RACERS * RACER_ADDS, RACERS * RACER_ADDS + 1, 100);
    struct racer x[RACERS];
    pthread_t t[RACERS];

    (void)state;
    for (size_t k = 0; k < RACERS; k++) {
        x[k] = (struct racer){r, k * RACER_ADDS, 0};
        assert_int_equal(pthread_create(&t[k], NULL, race, &x[k]), 0);
    }
    for (size_t k = 0; k < RACERS; k++) {
        assert_int_equal(pthread_join(t[k], NULL), 0);
        assert_false(x[k].failed);
    }
    assert_int_equal(gw_replay_count(r), RACERS * RACER_ADDS);
    for (size_t i = 0; i < RACERS * RACER_ADDS; i++)
        assert_int_equal(add(r, i, 101), GW_ERR_REPLAY);
    assert_int_equal(add(r, RACERS * RACER_ADDS, 101), GW_ERR_BUSY); /* at the cap */
    gw_replay_free(r);
}

/* One identity over its share is refused; the others are not; its share frees as its entries expire. */
static void test_identity_share(void **state)
{
    static const struct step steps[] = {
        {"a1", "1", 10, 0, "CN=greedy"},
        {"a2", "1", 11, 0, "CN=greedy"},
        {"a3", "1", 12, GW_ERR_LIMIT, "CN=greedy"}, /* its share is 2 */
        {"b1", "1", 12, 0, "CN=other"},             /* everyone else still gets in */
        {"b2", "1", 12, 0, "CN=other"},
        {"c1", "1", 13, 0, NULL},
        {"a1", "1", 13, GW_ERR_REPLAY, "CN=greedy"}, /* refusing the share forgets nothing */
        {"a3", "1", 70, 0, "CN=greedy"},             /* a1 expired at 70 */
        {"a4", "1", 70, GW_ERR_LIMIT, "CN=greedy"},
    };
    struct gw_replay *r = gw_replay_new(8, 2, 60);

    (void)state;
    run(r, steps, sizeof(steps) / sizeof(steps[0]));
    gw_replay_free(r);
    assert_null(gw_replay_new(8, 0, 60));
}

/* After a clear every transactionID is new again, also after the ring wrapped around. */
static void test_clear(void **state)
{
    static const struct step before[] = {
        {"a", "1", 10, 0, NULL},
        {"b", "1", 20, 0, "CN=x"},
        {"c", "1", 30, 0, "CN=x"},
        {"d", "1", 70, 0, NULL},              /* "a" expired: "d" takes its slot at the start of the ring */
        {"e", "1", 70, GW_ERR_LIMIT, "CN=x"}, /* b and c: its share is 2 */
    };
    static const struct step after[] = {
        {"b", "1", 71, 0, "CN=x"},           {"d", "1", 71, 0, NULL},
        {"e", "1", 71, 0, "CN=x"}, /* the share is forgotten too */
        {"d", "1", 72, GW_ERR_REPLAY, NULL}, {"f", "1", 72, GW_ERR_BUSY, NULL}, /* the cap holds as before */
    };
    struct gw_replay *r = gw_replay_new(3, 2, 60);

    (void)state;
    run(r, before, sizeof(before) / sizeof(before[0]));
    assert_int_equal(gw_replay_count(r), 3);
    gw_replay_clear(r);
    assert_int_equal(gw_replay_count(r), 0);
    run(r, after, sizeof(after) / sizeof(after[0]));
    gw_replay_free(r);
    gw_replay_clear(NULL);
}

/*
 * gw_replay_seen says what gw_replay_check_add would of a tid seen before, and records nothing: a tid it
 * was asked about is still new to gw_replay_check_add, and so is one whose entry expired (not dropped yet).
 */
static void test_seen(void **state)
{
    static const struct {
        const char *tid, *nonce;
        time_t now;
        int want;
    } looks[] = {
        {"t1", "n1", 101, GW_ERR_REPLAY},
        {"t1", "n2", 101, GW_ERR_EXISTS},
        {"t1", "", 101, GW_ERR_EXISTS},
        {"t1", "n1", 159, GW_ERR_REPLAY},
        {"t1", "n1", 160, 0}, /* TTL 60 passed */
        {"t2", "n1", 101, 0},
        {"t3", "", 101, 0},
    };
    static const struct step added[] = {
        {"t1", "n1", 100, 0, NULL},
        {"t2", "n1", 101, 0, NULL}, /* looked at, not recorded */
        {"t2", "n1", 102, GW_ERR_REPLAY, NULL},
    };
    unsigned char big[GW_MAX_TID_LEN + 1];
    struct gw_replay *r = gw_replay_new(16, 16, 60);

    (void)state;
    run(r, added, 1);
    for (size_t i = 0; i < sizeof(looks) / sizeof(looks[0]); i++) {
        int rc = gw_replay_seen(r, (const unsigned char *)looks[i].tid, strlen(looks[i].tid),
                                (const unsigned char *)looks[i].nonce, strlen(looks[i].nonce), looks[i].now);
        if (rc != looks[i].want)
            fail_msg("look %zu (%s/%s@%ld): got %d, want %d", i, looks[i].tid, looks[i].nonce,
                     (long)looks[i].now, rc, looks[i].want);
    }
    assert_int_equal(gw_replay_count(r), 1);
    run(r, added + 1, 2);
    memset(big, 7, sizeof(big));
    assert_int_equal(gw_replay_seen(r, big, 0, big, 1, 101), GW_ERR_INVAL);
    assert_int_equal(gw_replay_seen(r, big, GW_MAX_TID_LEN + 1, big, 1, 101), GW_ERR_INVAL);
    assert_int_equal(gw_replay_seen(r, big, 1, NULL, 3, 101), GW_ERR_INVAL);
    assert_int_equal(gw_replay_seen(NULL, big, 1, big, 1, 101), GW_ERR_INVAL);
    gw_replay_free(r);
}

static void test_lengths(void **state)
{
    unsigned char big[GW_MAX_TID_LEN + GW_MAX_NONCE_LEN + 2];
    struct gw_replay *r = gw_replay_new(4, 4, 10);

    (void)state;
    memset(big, 7, sizeof(big));
    assert_int_equal(gw_replay_check_add(r, big, 0, big, 1, "x", 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_check_add(r, NULL, 1, big, 1, "x", 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_check_add(r, big, GW_MAX_TID_LEN + 1, big, 1, "x", 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_check_add(r, big, 1, big, GW_MAX_NONCE_LEN + 1, "x", 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_check_add(r, big, 1, NULL, 3, "x", 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_count(r), 0);
    assert_int_equal(gw_replay_check_add(r, big, GW_MAX_TID_LEN, big, GW_MAX_NONCE_LEN, "x", 1), 0);
    assert_int_equal(gw_replay_check_add(r, big, GW_MAX_TID_LEN, big, GW_MAX_NONCE_LEN, "x", 2),
                     GW_ERR_REPLAY);
    assert_int_equal(gw_replay_check_add(r, big, GW_MAX_TID_LEN - 1, big, GW_MAX_NONCE_LEN, "x", 2), 0);
    assert_null(gw_replay_new(0, 1, 10));
    assert_null(gw_replay_new(10, 1, 0));
    gw_replay_free(r);
    gw_replay_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_and_reuse),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_identity_share),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_seen),
        cmocka_unit_test(test_grows),
        cmocka_unit_test(test_expires_while_moving),
        cmocka_unit_test(test_grows_concurrently),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
