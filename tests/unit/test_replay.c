/* Replay cache: replay vs reuse, TTL expiry, bounded when full, clearing, bad lengths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "gateway/err.h"
#include "gateway/limits.h"
#include "gateway/replay.h"

struct step {
    const char *tid, *nonce;
    time_t now;
    int want;
};

static void run(struct gw_replay *r, const struct step *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = gw_replay_check_add(r, (const unsigned char *)s[i].tid, strlen(s[i].tid),
                                     (const unsigned char *)s[i].nonce, strlen(s[i].nonce), s[i].now);
        if (rc != s[i].want)
            fail_msg("step %zu (%s/%s@%ld): got %d, want %d", i, s[i].tid, s[i].nonce, (long)s[i].now, rc,
                     s[i].want);
    }
}

static void test_replay_and_reuse(void **state)
{
    static const struct step steps[] = {
        {"t1", "n1", 100, 0},
        {"t1", "n1", 101, GW_ERR_REPLAY}, /* byte-identical resend */
        {"t1", "n2", 102, GW_ERR_EXISTS}, /* tid reuse with a fresh nonce */
        {"t1", "", 102, GW_ERR_EXISTS},
        {"t2", "", 103, 0}, /* no nonce at all */
        {"t2", "", 104, GW_ERR_REPLAY},
        {"t1", "n1", 159, GW_ERR_REPLAY}, /* just inside the TTL */
        {"t1", "n1", 160, 0},             /* TTL 60 passed: forgotten */
    };
    struct gw_replay *r = gw_replay_new(16, 60);

    (void)state;
    run(r, steps, sizeof(steps) / sizeof(steps[0]));
    gw_replay_free(r);
}

static void test_full(void **state)
{
    static const struct step steps[] = {
        {"a", "1", 10, 0},
        {"b", "1", 20, 0},
        {"c", "1", 30, 0},
        {"d", "1", 30, GW_ERR_LIMIT},  /* full of live entries: refuse, do not forget */
        {"a", "1", 30, GW_ERR_REPLAY}, /* ... so "a" is still known */
        {"d", "1", 70, 0},             /* "a" expired at 70: room again */
        {"e", "1", 70, GW_ERR_LIMIT},
        {"e", "1", 80, 0}, /* expiry in arrival order: "b" goes next */
    };
    struct gw_replay *r = gw_replay_new(3, 60);

    (void)state;
    run(r, steps, 7);
    assert_int_equal(gw_replay_count(r), 3);
    run(r, steps + 7, 1);
    assert_int_equal(gw_replay_check_add(r, (const unsigned char *)"b", 1, (const unsigned char *)"1", 1, 90),
                     0);
    assert_int_equal(gw_replay_check_add(r, (const unsigned char *)"d", 1, (const unsigned char *)"1", 1, 90),
                     GW_ERR_REPLAY);
    gw_replay_free(r);
}

/* After a clear every transactionID is new again, also after the ring wrapped around. */
static void test_clear(void **state)
{
    static const struct step before[] = {
        {"a", "1", 10, 0},
        {"b", "1", 20, 0},
        {"c", "1", 30, 0},
        {"d", "1", 70, 0}, /* "a" expired: "d" takes its slot at the start of the ring */
    };
    static const struct step after[] = {
        {"b", "1", 71, 0},
        {"d", "1", 71, 0},
        {"a", "1", 71, 0},
        {"d", "1", 72, GW_ERR_REPLAY},
        {"e", "1", 72, GW_ERR_LIMIT}, /* the cap holds as before */
    };
    struct gw_replay *r = gw_replay_new(3, 60);

    (void)state;
    run(r, before, sizeof(before) / sizeof(before[0]));
    assert_int_equal(gw_replay_count(r), 3);
    gw_replay_clear(r);
    assert_int_equal(gw_replay_count(r), 0);
    run(r, after, sizeof(after) / sizeof(after[0]));
    gw_replay_free(r);
    gw_replay_clear(NULL);
}

static void test_lengths(void **state)
{
    unsigned char big[GW_MAX_TID_LEN + GW_MAX_NONCE_LEN + 2];
    struct gw_replay *r = gw_replay_new(4, 10);

    (void)state;
    memset(big, 7, sizeof(big));
    assert_int_equal(gw_replay_check_add(r, big, 0, big, 1, 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_check_add(r, NULL, 1, big, 1, 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_check_add(r, big, GW_MAX_TID_LEN + 1, big, 1, 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_check_add(r, big, 1, big, GW_MAX_NONCE_LEN + 1, 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_check_add(r, big, 1, NULL, 3, 1), GW_ERR_INVAL);
    assert_int_equal(gw_replay_count(r), 0);
    assert_int_equal(gw_replay_check_add(r, big, GW_MAX_TID_LEN, big, GW_MAX_NONCE_LEN, 1), 0);
    assert_int_equal(gw_replay_check_add(r, big, GW_MAX_TID_LEN, big, GW_MAX_NONCE_LEN, 2), GW_ERR_REPLAY);
    assert_int_equal(gw_replay_check_add(r, big, GW_MAX_TID_LEN - 1, big, GW_MAX_NONCE_LEN, 2), 0);
    assert_null(gw_replay_new(0, 10));
    assert_null(gw_replay_new(10, 0));
    gw_replay_free(r);
    gw_replay_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_and_reuse),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
