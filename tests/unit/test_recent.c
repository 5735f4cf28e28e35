/*
 * Unit tests for the ring of the certificates a gateway process let through lately
 * (gateway/cmp/recent.c): a second certificate under the issuer and serial of one in it is caught, the
 * same certificate again is not, a transaction other than the one that let a certificate through is told
 * so, the ring forgets its oldest entry and no more once full, and two
 * certificates with one serial noted at once on several threads cannot both pass; a ring whose lock cannot
 * be made is not made.
 */
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/testutil.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/err.h"
#include "base/limits.h"
#include "gateway/cmp/recent.h"
#include "gateway/cmp/revoked.h"

#define THREADS 8

static EVP_PKEY *key;
static bool fail_mutex_init; /* pthread_mutex_init fails while set */

int pthread_mutex_init(pthread_mutex_t *mutex, const pthread_mutexattr_t *attr)
{
    static int (*real)(pthread_mutex_t *, const pthread_mutexattr_t *);

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_mutex_init");
    return fail_mutex_init ? EAGAIN : real(mutex, attr);
}

static int group_setup(void **state)
{
    (void)state;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return key == NULL;
}

static int group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(key);
    return 0;
}

/*
 * A certificate of issuer "CN=ring CA" with |serial|, told apart from another of that serial by |cn|, as
 * an upstream's answer is: parsed from its DER.
 */
static X509 *cert_of(long serial, const char *cn)
{
    X509 *x = X509_new(), *y;
    X509_NAME *issuer = X509_NAME_new(), *subject = X509_NAME_new();

    assert_non_null(x);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(issuer, "CN", MBSTRING_ASC, (const unsigned char *)"ring CA", -1, -1, 0),
        1);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0), 1);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
    assert_int_equal(X509_set_issuer_name(x, issuer), 1);
    assert_int_equal(X509_set_subject_name(x, subject), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    X509_NAME_free(issuer);
    X509_NAME_free(subject);
    y = tu_reparsed(x);
    X509_free(x);
    return y;
}

/* cmp_recent_note of |x|, named as the revoked set names it. */
static int note_cert(struct cmp_recent *r, X509 *x, const char *tid, char *earlier)
{
    unsigned char id[CMP_REVOKED_ID_LEN];

    assert_int_equal(cmp_revoked_id(x, id), 0);
    return cmp_recent_note(r, id, x, tid, earlier);
}

/* One certificate noted: what cmp_recent_note says, |earlier| the transaction it names. */
static int note(struct cmp_recent *r, long serial, const char *cn, const char *tid, char *earlier)
{
    X509 *x = cert_of(serial, cn);
    int rc = note_cert(r, x, tid, earlier);

    X509_free(x);
    return rc;
}

static void test_reuse_and_same(void **state)
{
    struct cmp_recent *r = cmp_recent_new();
    char earlier[2 * GW_MAX_TID_LEN + 1];
    X509 *first = cert_of(7, "first");

    (void)state;
    assert_non_null(r);
    assert_int_equal(note_cert(r, first, "0a0b", earlier), 0);
    assert_string_equal(earlier, "");
    /* the same certificate again: no reuse, whoever returns it */
    assert_int_equal(note_cert(r, first, "0c0d", earlier), 0);
    /* another with its issuer and serial: the first one's transaction named */
    assert_int_equal(note(r, 7, "second", "0e0f", earlier), 1);
    assert_string_equal(earlier, "0a0b");
    /* refused, so not noted: the first one stays the one named */
    assert_int_equal(note(r, 7, "third", "1011", earlier), 1);
    assert_string_equal(earlier, "0a0b");
    /* another serial of that issuer */
    assert_int_equal(note(r, 8, "second", "1213", earlier), 0);
    X509_free(first);
    cmp_recent_free(r);
    cmp_recent_free(NULL);
}

/*
 * Which transaction let a certificate through, for a withdrawal to ask (record.c): one it let through is
 * another transaction's to all but its own (the same one returned again changes nothing); a serial it
 * never noted is nobody's.
 */
static void test_elsewhere(void **state)
{
    struct cmp_recent *r = cmp_recent_new();
    char earlier[2 * GW_MAX_TID_LEN + 1];
    unsigned char id[CMP_REVOKED_ID_LEN];
    X509 *first = cert_of(7, "first"), *other = cert_of(9, "other");

    (void)state;
    assert_non_null(r);
    assert_int_equal(note_cert(r, first, "0a0b", earlier), 0);
    assert_int_equal(note_cert(r, first, "0c0d", earlier), 0);
    assert_int_equal(cmp_revoked_id(first, id), 0);
    assert_int_equal(cmp_recent_elsewhere(r, id, "0a0b", earlier), 0);
    assert_string_equal(earlier, "");
    assert_int_equal(cmp_recent_elsewhere(r, id, "0A0B", earlier), 0); /* hex is hex in either case */
    assert_int_equal(cmp_recent_elsewhere(r, id, "0c0d", earlier), 1);
    assert_string_equal(earlier, "0a0b");
    assert_int_equal(cmp_revoked_id(other, id), 0);
    assert_int_equal(cmp_recent_elsewhere(r, id, "0c0d", earlier), 0);
    assert_string_equal(earlier, "");
    X509_free(first);
    X509_free(other);
    cmp_recent_free(r);
}

/* Full, the ring forgets its oldest entry and that one alone. */
static void test_bounded(void **state)
{
    struct cmp_recent *r = cmp_recent_new();
    char earlier[2 * GW_MAX_TID_LEN + 1];

    (void)state;
    assert_non_null(r);
    for (long i = 1; i <= GW_RECENT_ISSUED; i++)
        assert_int_equal(note(r, i, "one", "aa", earlier), 0);
    /* all of them in it: the oldest and the newest caught */
    assert_int_equal(note(r, 1, "two", "bb", earlier), 1);
    assert_int_equal(note(r, GW_RECENT_ISSUED, "two", "bb", earlier), 1);
    /* one more: the first one goes, the second stays */
    assert_int_equal(note(r, GW_RECENT_ISSUED + 1, "one", "aa", earlier), 0);
    assert_int_equal(note(r, 1, "two", "bb", earlier), 0);
    assert_int_equal(note(r, 3, "two", "bb", earlier), 1);
    cmp_recent_free(r);
}

struct racer {
    struct cmp_recent *r;
    X509 *cert;
    pthread_barrier_t *start;
    int rc;
};

static void *race(void *arg)
{
    struct racer *rc = arg;
    char earlier[2 * GW_MAX_TID_LEN + 1];

    pthread_barrier_wait(rc->start);
    rc->rc = note_cert(rc->r, rc->cert, "ab", earlier);
    return NULL;
}

/* Certificates with one serial noted at once on several threads: one passes, the others are caught. */
static void test_threads(void **state)
{
    struct cmp_recent *r = cmp_recent_new();
    struct racer racers[THREADS];
    pthread_t th[THREADS];
    pthread_barrier_t start;
    int passed = 0;

    (void)state;
    assert_non_null(r);
    pthread_barrier_init(&start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        char cn[16];

        snprintf(cn, sizeof(cn), "racer %d", i);
        racers[i] = (struct racer){.r = r, .cert = cert_of(42, cn), .start = &start};
        assert_int_equal(pthread_create(&th[i], NULL, race, &racers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_true(racers[i].rc == 0 || racers[i].rc == 1);
        passed += racers[i].rc == 0;
        X509_free(racers[i].cert);
    }
    assert_int_equal(passed, 1);
    pthread_barrier_destroy(&start);
    cmp_recent_free(r);
}

/* The ring's lock cannot be made (EAGAIN): no ring, rather than one whose lock was never made. */
static void test_new_without_lock(void **state)
{
    struct cmp_recent *r;
    bool made;

    (void)state;
    fail_mutex_init = true;
    r = cmp_recent_new();
    fail_mutex_init = false;
    made = r != NULL;
    cmp_recent_free(r);
    assert_false(made);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_and_same),   cmocka_unit_test(test_elsewhere),
        cmocka_unit_test(test_bounded),          cmocka_unit_test(test_threads),
        cmocka_unit_test(test_new_without_lock),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
