/* Unit tests for mappings/migration.c: the cohort (stable hash by percent, allow-list). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "mappings/migration.h"

#define N_DEVICES 2000

static struct gw_migration by_percent(char *name, uint32_t percent)
{
    struct gw_migration m = {.name = name, .to_name = "new", .mode = GW_MIGRATION_LIVE};

    m.cohort.percent = percent;
    return m;
}

static void device(char *buf, size_t cap, int i)
{
    snprintf(buf, cap, "/O=fleet/CN=dev%d.example.com", i);
}

/* The hash is the documented one: values worked out independently (Python hashlib). */
static void test_known_values(void **state)
{
    /* first 8 bytes of SHA-256("m1" 0x00 key) mod 10000: dev1 5808, dev2 1645, dev4 1569 */
    struct gw_migration m16 = by_percent("m1", 16), m17 = by_percent("m1", 17), m59 = by_percent("m1", 59);

    (void)state;
    assert_false(gw_migration_in_cohort(&m16, "/CN=dev2.example.com")); /* 1645 >= 1600 */
    assert_true(gw_migration_in_cohort(&m17, "/CN=dev2.example.com"));  /* 1645 < 1700 */
    assert_true(gw_migration_in_cohort(&m16, "/CN=dev4.example.com"));  /* 1569 < 1600 */
    assert_false(gw_migration_in_cohort(&m17, "/CN=dev1.example.com")); /* 5808 */
    assert_true(gw_migration_in_cohort(&m59, "/CN=dev1.example.com"));
}

/* 0 % is nobody, 100 % everybody; a smaller cohort is inside a larger one; about the share asked. */
static void test_percent_nested_and_sized(void **state)
{
    struct gw_migration m0 = by_percent("fleet-a", 0), m10 = by_percent("fleet-a", 10);
    struct gw_migration m50 = by_percent("fleet-a", 50), m100 = by_percent("fleet-a", 100);
    int n10 = 0, n50 = 0;
    char key[64];

    (void)state;
    for (int i = 0; i < N_DEVICES; i++) {
        bool in10, in50;

        device(key, sizeof(key), i);
        in10 = gw_migration_in_cohort(&m10, key);
        in50 = gw_migration_in_cohort(&m50, key);
        assert_false(gw_migration_in_cohort(&m0, key));
        assert_true(gw_migration_in_cohort(&m100, key));
        assert_true(!in10 || in50);
        assert_int_equal(in10, gw_migration_in_cohort(&m10, key)); /* the same answer every time */
        n10 += in10;
        n50 += in50;
    }
    /* binomial: 200 +- 4 sigma (13.4), 1000 +- 4 sigma (22.4) */
    assert_in_range(n10, 146, 254);
    assert_in_range(n50, 910, 1090);
}

/* The migration's name is hashed in: two migrations of one fleet pick different devices. */
static void test_name_changes_cohort(void **state)
{
    struct gw_migration a = by_percent("fleet-a", 50), b = by_percent("fleet-b", 50);
    int differ = 0;
    char key[64];

    (void)state;
    for (int i = 0; i < 200; i++) {
        device(key, sizeof(key), i);
        differ += gw_migration_in_cohort(&a, key) != gw_migration_in_cohort(&b, key);
    }
    assert_true(differ > 50);
}

/* An allow-list cohort is exactly its (sorted) entries; an empty key is in no cohort but the whole fleet. */
static void test_allowlist(void **state)
{
    char *allow[] = {"/CN=a.example.com", "/CN=b.example.com", "/O=x/CN=c"};
    struct gw_migration m = {.name = "l", .to_name = "new", .mode = GW_MIGRATION_LIVE};
    struct gw_migration all = by_percent("l", 100), most = by_percent("l", 99);

    (void)state;
    m.cohort.allowlist_file = "cohort.txt";
    m.cohort.allow = allow;
    m.cohort.n_allow = 3;
    assert_true(gw_migration_in_cohort(&m, "/CN=b.example.com"));
    assert_true(gw_migration_in_cohort(&m, "/O=x/CN=c"));
    assert_false(gw_migration_in_cohort(&m, "/CN=b.example.co"));
    assert_false(gw_migration_in_cohort(&m, "/CN=B.example.com"));
    assert_false(gw_migration_in_cohort(&m, ""));
    assert_false(gw_migration_in_cohort(&most, ""));
    assert_false(gw_migration_in_cohort(&most, NULL));
    /* at 100 % a subject that cannot be written out (NULL) or none ("") moves too: none stays behind */
    assert_true(gw_migration_in_cohort(&all, ""));
    assert_true(gw_migration_in_cohort(&all, NULL));
    m.cohort.n_allow = 0;
    assert_false(gw_migration_in_cohort(&m, "/CN=a.example.com"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_percent_nested_and_sized),
        cmocka_unit_test(test_name_changes_cohort),
        cmocka_unit_test(test_allowlist),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
