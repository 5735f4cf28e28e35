/*
 * Unit tests for the set of certificates revoked through the gateway (gateway/cmp/revoked.c) and the
 * engine's withdrawal queue (gateway/cmp/record.c), the two conditions whose waits run on
 * CLOCK_MONOTONIC: what their construction leaves behind when a step of it fails. The condition
 * attributes are this executable's own, which count what is made of them and fail where a case says,
 * and forward to the C library's. Then the marks of the revocations under way, on an engine that holds
 * the set alone (no shared state): what a revocation the set could not keep leaves for the next, and for
 * the credential check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/limits.h"
#include "gateway/cmp/cmp_local.h"
#include "gateway/cmp/conf.h"
#include "gateway/cmp/engine_test.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/revoked.h"

static struct {
    bool fail_setclock, fail_cond_init;
    int attrs_live; /* condition attributes initialized and not destroyed */
} shim;

int pthread_condattr_init(pthread_condattr_t *attr)
{
    static int (*real)(pthread_condattr_t *);
    int rc;

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_condattr_init");
    if ((rc = real(attr)) == 0)
        shim.attrs_live++;
    return rc;
}

int pthread_condattr_destroy(pthread_condattr_t *attr)
{
    static int (*real)(pthread_condattr_t *);

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_condattr_destroy");
    shim.attrs_live--;
    return real(attr);
}

int pthread_condattr_setclock(pthread_condattr_t *attr, clockid_t clock)
{
    static int (*real)(pthread_condattr_t *, clockid_t);

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_condattr_setclock");
    return shim.fail_setclock ? EINVAL : real(attr, clock);
}

int pthread_cond_init(pthread_cond_t *cond, const pthread_condattr_t *attr)
{
    static int (*real)(pthread_cond_t *, const pthread_condattr_t *);

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_cond_init");
    return shim.fail_cond_init ? ENOMEM : real(cond, attr);
}

/* The steps of making a condition on CLOCK_MONOTONIC, each failing in turn; whether the object is made. */
static const struct {
    const char *name;
    bool fail_setclock, fail_cond_init, made;
} cases[] = {
    {"every step passes", false, false, true},
    {"the clock cannot be set", true, false, false},
    {"the condition cannot be made", false, true, false},
};

/*
 * Whichever step of making the set's condition fails, its attributes are destroyed as when none does.
 * Once, a clock that could not be set (or a condition that could not be made) left them. A set not made
 * says GW_ERR_NOMEM, not the file's (there is none here): the engine took any failure for the
 * configuration's, and a start exited 78 for it.
 */
static void test_new_destroys_the_condattr(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[GW_ERR_LEN] = "";
        struct cmp_revoked *rs;
        int rc = 1;

        shim.attrs_live = 0;
        shim.fail_setclock = cases[i].fail_setclock;
        shim.fail_cond_init = cases[i].fail_cond_init;
        rs = cmp_revoked_new(NULL, getuid(), 0, &rc, err);
        shim.fail_setclock = shim.fail_cond_init = false;
        if ((rs != NULL) != cases[i].made || shim.attrs_live != 0)
            fail_msg("%s: set %s, %d condition attributes left", cases[i].name,
                     rs != NULL ? "made" : "not made", shim.attrs_live);
        if (!cases[i].made && rc != GW_ERR_NOMEM)
            fail_msg("%s: %d", cases[i].name, rc);
        cmp_revoked_free(rs);
    }
}

/*
 * The withdrawal queue is made only with a condition on CLOCK_MONOTONIC, its attributes destroyed on
 * every path. Once, a clock that could not be set left the drain's deadline on the realtime clock (and a
 * condition that could not be made was waited on all the same), and the engine was made regardless.
 */
static void test_withdrawals_init_checks_the_condition(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_cmp_engine e = {0};
        int rc;

        shim.attrs_live = 0;
        shim.fail_setclock = cases[i].fail_setclock;
        shim.fail_cond_init = cases[i].fail_cond_init;
        rc = cmp_withdrawals_init(&e);
        shim.fail_setclock = shim.fail_cond_init = false;
        if ((rc == 0) != cases[i].made || (e.withdrawals != NULL) != cases[i].made || shim.attrs_live != 0)
            fail_msg("%s: init %d, queue %s, %d condition attributes left", cases[i].name, rc,
                     e.withdrawals != NULL ? "made" : "not made", shim.attrs_live);
        if (rc != 0 && rc != GW_ERR_NOMEM)
            fail_msg("%s: init %d, not GW_ERR_NOMEM", cases[i].name, rc);
        assert_true(cmp_withdrawals_drain(&e, gw_now_ms())); /* frees the queue, if any; NULL-safe */
        assert_null(e.withdrawals);
    }
}

/* ---- the marks of revocations under way ---------------------------------------------------------- */

#define NOW 1800000000 /* the engine's clock at the start of each case */
#define WAIT_MS 1000   /* the upstream's timeout each revocation is begun with */
/* how long a revocation the set did not keep is remembered, in the engine clock's seconds: as long as its
   shared mark lives, twice the timeout (the CA's status of the certificate, then the revocation) and the
   slack; once it was one timeout and the slack */
#define REMEMBERED_SECS ((2 * WAIT_MS + GW_STATE_REVOKING_SLACK_MS + 999) / 1000)

static time_t now_is = NOW;

static time_t test_clock(void)
{
    return now_is;
}

/* An engine with only a revoked set, of cmp.max_revoked |max|, and no shared state. */
struct marks {
    struct gw_cmp_conf conf;
    struct gw_cmp_engine e;
    EVP_PKEY *key;
};

static void marks_open(struct marks *m, uint32_t max)
{
    char err[GW_ERR_LEN] = "";

    memset(m, 0, sizeof(*m));
    now_is = NOW;
    m->conf.max_revoked = max;
    m->e.cfg.cmp = &m->conf;
    m->e.clock = test_clock;
    assert_non_null(m->e.revoked = cmp_revoked_new(NULL, getuid(), NOW, &(int){0}, err));
    assert_non_null(m->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
}

static void marks_close(struct marks *m)
{
    cmp_revoked_free(m->e.revoked);
    EVP_PKEY_free(m->key);
}

/* A certificate of serial |serial| good until |not_after| (the engine's clock). */
static X509 *cert_until(struct marks *m, long serial, time_t not_after)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();

    assert_non_null(x);
    assert_non_null(n);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"revoked-test", -1, -1, 0);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, n);
    ASN1_TIME_set(X509_getm_notBefore(x), NOW - 86400);
    ASN1_TIME_set(X509_getm_notAfter(x), not_after);
    X509_set_pubkey(x, m->key);
    assert_true(X509_sign(x, m->key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return x;
}

/* A revocation of |x| that reached the CA: begun, added (what cmp_revoked_add says), ended. */
static int revoked_at_ca(struct marks *m, X509 *x)
{
    char err[GW_ERR_LEN] = "";
    int missed;

    assert_int_equal(cmp_revoked_begin(&m->e, x, WAIT_MS, err), 0);
    missed = cmp_revoked_add(&m->e, x, now_is, err);
    cmp_revoked_end(&m->e, x);
    return missed;
}

/* What cmp_revoked_begin says of |x| now; a revocation it marked ended without reaching the CA. */
static int begins(struct marks *m, X509 *x)
{
    char err[GW_ERR_LEN] = "";
    int rc = cmp_revoked_begin(&m->e, x, WAIT_MS, err);

    if (rc == 0)
        cmp_revoked_end(&m->e, x);
    return rc;
}

/* A second revocation of a certificate, begun on its own thread while the first holds the mark. */
struct second {
    struct marks *m;
    X509 *x;
    int rc;
};

static void *second_begins(void *arg)
{
    struct second *s = arg;
    char err[GW_ERR_LEN] = "";

    s->rc = cmp_revoked_begin(&s->m->e, s->x, 5000, err);
    if (s->rc == 0)
        cmp_revoked_end(&s->m->e, s->x);
    return NULL;
}

/*
 * |x|'s revocation begun, and a second one begun on another thread, which waits for the first's mark; the
 * first then ends at |at| (now_is), cmp_revoked_add saying |added| of it. Returns what the second's
 * cmp_revoked_begin said.
 */
static int raced_by_second(struct marks *m, X509 *x, time_t at, int added)
{
    struct second s = {.m = m, .x = x, .rc = -100};
    char err[GW_ERR_LEN] = "";
    pthread_t th;

    assert_int_equal(cmp_revoked_begin(&m->e, x, WAIT_MS, err), 0);
    assert_int_equal(pthread_create(&th, NULL, second_begins, &s), 0);
    /* the second waits for the mark (5 s at most, its own wait) */
    for (int i = 0; i < 500 && gw_cmp_engine_revocations_waiting(&m->e) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(gw_cmp_engine_revocations_waiting(&m->e), 1);
    now_is = at;
    assert_int_equal(cmp_revoked_add(&m->e, x, now_is, err), added);
    cmp_revoked_end(&m->e, x);
    assert_int_equal(pthread_join(th, NULL), 0);
    return s.rc;
}

/*
 * Without a shared state, a revocation the full set (cmp.max_revoked) did not keep is remembered for as
 * long as a shared mark lives: the second revocation of that certificate, which waited for the first's
 * mark, finds it revoked (1) rather than revoke it again, and so does one begun meanwhile. Before, it
 * found nothing in the set and the CA was asked again. The adversarial twins: a revocation the CA refused
 * (never added) leaves nothing, so the next may revoke; once the time is past, it is forgotten; and past
 * GW_MAX_REVOKED_UNKEPT remembered the one that ends first goes, so memory stays bounded.
 */
static void test_unkept_revocation_remembered(void **state)
{
    struct marks m;
    char err[GW_ERR_LEN] = "";
    X509 *kept, *unkept, *refused, *many[GW_MAX_REVOKED_UNKEPT + 1];

    (void)state;
    marks_open(&m, 1);
    kept = cert_until(&m, 1, NOW + 86400);
    unkept = cert_until(&m, 2, NOW + 86400);
    refused = cert_until(&m, 3, NOW + 86400);
    assert_int_equal(revoked_at_ca(&m, kept), 0);
    assert_int_equal(begins(&m, kept), 1);
    /* the set is full: the second revocation of |unkept| waits for the first's mark, then finds it */
    assert_int_equal(raced_by_second(&m, unkept, now_is, CMP_REVOKED_NOT_HERE), 1);
    now_is += REMEMBERED_SECS - 1;
    assert_int_equal(begins(&m, unkept), 1);
    now_is += 1; /* the time a shared mark lives is past */
    assert_int_equal(begins(&m, unkept), 0);
    /* the CA refused it: not revoked, nothing remembered */
    assert_int_equal(cmp_revoked_begin(&m.e, refused, WAIT_MS, err), 0);
    cmp_revoked_end(&m.e, refused);
    assert_int_equal(begins(&m, refused), 0);
    /* one more than are remembered: the first, which ends first, is forgotten, the others are not */
    for (size_t i = 0; i <= GW_MAX_REVOKED_UNKEPT; i++) {
        many[i] = cert_until(&m, 100 + (long)i, NOW + 86400);
        assert_int_equal(revoked_at_ca(&m, many[i]), CMP_REVOKED_NOT_HERE);
    }
    assert_int_equal(begins(&m, many[0]), 0);
    assert_int_equal(begins(&m, many[1]), 1);
    assert_int_equal(begins(&m, many[GW_MAX_REVOKED_UNKEPT]), 1);
    for (size_t i = 0; i <= GW_MAX_REVOKED_UNKEPT; i++)
        X509_free(many[i]);
    X509_free(kept);
    X509_free(unkept);
    X509_free(refused);
    marks_close(&m);
}

/*
 * An expired certificate is kept in no set (it authenticates nothing), so cmp_revoked_add says 0 of it; but
 * its revocation is remembered like one the set could not keep. Once, it left no trace, and a second
 * revocation (an RA's rr of an expired certificate racing another, or one whose certificate expired
 * while the first was at the CA) found nothing once the mark went, and asked the CA again.
 */
static void test_expired_revocation_remembered(void **state)
{
    struct marks m;
    X509 *expired, *expiring, *valid;

    (void)state;
    marks_open(&m, 8);
    expired = cert_until(&m, 1, NOW - 60);
    expiring = cert_until(&m, 2, NOW + 5);
    valid = cert_until(&m, 3, NOW + 86400);
    assert_int_equal(revoked_at_ca(&m, expired), 0);
    assert_int_equal(begins(&m, expired), 1);
    /* expiring while at the CA: the second, which waited for the mark, finds it revoked */
    assert_int_equal(raced_by_second(&m, expiring, NOW + 10, 0), 1);
    /* the twin: a valid one kept in the set, found there; remembered ones forgotten in time */
    assert_int_equal(revoked_at_ca(&m, valid), 0);
    now_is += REMEMBERED_SECS;
    assert_int_equal(begins(&m, valid), 1);
    assert_int_equal(begins(&m, expired), 0);
    assert_int_equal(begins(&m, expiring), 0);
    X509_free(expired);
    X509_free(expiring);
    X509_free(valid);
    marks_close(&m);
}

/*
 * A revocation the full set did not keep refuses its certificate as a credential (cmp_revoked_check, what
 * a signer and a TLS client are checked by) from when the CA revoked it until it is forgotten, as it stops
 * a second revocation: a kur, an rr or an ir signed with it right after is refused though its CA's CRL
 * does not list it yet. Before, only cmp_revoked_begin looked at what is remembered, and the certificate
 * authenticated at once. The twins: a revocation under way that the CA has not answered, or refused,
 * leaves the certificate valid; one kept in the set is refused there; once forgotten, the certificate is
 * left to its CA's CRL (revocation_not_kept).
 */
static void test_unkept_revocation_refused_as_credential(void **state)
{
    struct marks m;
    char err[GW_ERR_LEN] = "";
    X509 *kept, *unkept, *refused;

    (void)state;
    marks_open(&m, 1);
    kept = cert_until(&m, 1, NOW + 86400);
    unkept = cert_until(&m, 2, NOW + 86400);
    refused = cert_until(&m, 3, NOW + 86400);
    assert_int_equal(revoked_at_ca(&m, kept), 0);
    assert_int_equal(cmp_revoked_check(&m.e, kept, now_is, err), 1);
    /* the set is full: under way, valid until the CA revoked it; then refused, its mark held or not */
    assert_int_equal(cmp_revoked_begin(&m.e, unkept, WAIT_MS, err), 0);
    assert_int_equal(cmp_revoked_check(&m.e, unkept, now_is, err), 0);
    assert_int_equal(cmp_revoked_add(&m.e, unkept, now_is, err), CMP_REVOKED_NOT_HERE);
    assert_int_equal(cmp_revoked_check(&m.e, unkept, now_is, err), 1);
    cmp_revoked_end(&m.e, unkept);
    assert_int_equal(cmp_revoked_check(&m.e, unkept, now_is, err), 1);
    now_is += REMEMBERED_SECS - 1;
    assert_int_equal(cmp_revoked_check(&m.e, unkept, now_is, err), 1);
    now_is += 1; /* forgotten: left to its CA's CRL */
    assert_int_equal(cmp_revoked_check(&m.e, unkept, now_is, err), 0);
    /* the CA refused it: not revoked, nothing remembered */
    assert_int_equal(cmp_revoked_begin(&m.e, refused, WAIT_MS, err), 0);
    cmp_revoked_end(&m.e, refused);
    assert_int_equal(cmp_revoked_check(&m.e, refused, now_is, err), 0);
    X509_free(kept);
    X509_free(unkept);
    X509_free(refused);
    marks_close(&m);
}

/*
 * OpenSSL 3.0 takes a certificate at its very notAfter (a notAfter equal to the time of the check is no
 * expiry), and a request's chain is verified a moment before or after the set is asked: the set keeps a
 * revoked certificate through its notAfter and a second past it, and makes room by dropping only what is
 * past that. Once, it dropped it at its notAfter (and made room so), and for that second the certificate
 * authenticated where its CA's CRL is not read. The twins: a minute later it is gone, and its room taken.
 */
static void test_kept_through_not_after(void **state)
{
    struct marks m;
    char err[GW_ERR_LEN] = "";
    X509 *ending, *other, *third;

    (void)state;
    marks_open(&m, 1);
    ending = cert_until(&m, 1, NOW + 10);
    other = cert_until(&m, 2, NOW + 86400);
    third = cert_until(&m, 3, NOW + 86400);
    assert_int_equal(revoked_at_ca(&m, ending), 0);
    now_is = NOW + 10;
    assert_int_equal(cmp_revoked_check(&m.e, ending, now_is, err), 1);
    /* the set (cmp.max_revoked 1) is full: no room made by dropping it */
    assert_int_equal(revoked_at_ca(&m, other), CMP_REVOKED_NOT_HERE);
    assert_int_equal(cmp_revoked_check(&m.e, ending, now_is, err), 1);
    now_is = NOW + 11;
    assert_int_equal(cmp_revoked_check(&m.e, ending, now_is, err), 1);
    now_is = NOW + 70;
    assert_int_equal(cmp_revoked_check(&m.e, ending, now_is, err), 0);
    assert_int_equal(revoked_at_ca(&m, third), 0);
    assert_int_equal(cmp_revoked_check(&m.e, third, now_is, err), 1);
    X509_free(ending);
    X509_free(other);
    X509_free(third);
    marks_close(&m);
}

/*
 * A revocation that held no mark (a withdrawal whose cmp_revoked_begin failed goes ahead all the same) and
 * that the full set did not keep is remembered nowhere: cmp_revoked_add says so (CMP_REVOKED_UNMARKED), so
 * that revocation_not_kept does not say its certificate is refused a while. Before, it said
 * CMP_REVOKED_NOT_HERE alone, as of one remembered. The twin: one that held its mark says that alone, and
 * is refused.
 */
static void test_unmarked_revocation_said(void **state)
{
    struct marks m;
    char err[GW_ERR_LEN] = "";
    X509 *kept, *unmarked, *marked;

    (void)state;
    marks_open(&m, 1);
    kept = cert_until(&m, 1, NOW + 86400);
    unmarked = cert_until(&m, 2, NOW + 86400);
    marked = cert_until(&m, 3, NOW + 86400);
    assert_int_equal(revoked_at_ca(&m, kept), 0);
    assert_int_equal(cmp_revoked_add(&m.e, unmarked, now_is, err),
                     CMP_REVOKED_NOT_HERE | CMP_REVOKED_UNMARKED);
    assert_int_equal(cmp_revoked_check(&m.e, unmarked, now_is, err), 0);
    assert_int_equal(revoked_at_ca(&m, marked), CMP_REVOKED_NOT_HERE);
    assert_int_equal(cmp_revoked_check(&m.e, marked, now_is, err), 1);
    X509_free(kept);
    X509_free(unmarked);
    X509_free(marked);
    marks_close(&m);
}

/* ---- two CAs of one name: the keyed entries ------------------------------------------------------ */

#define TWIN_SERIAL 7
#define LAST_X509_TIME 253402300799LL /* 9999-12-31T23:59:59Z: the line of a marked entry is past it */

/*
 * A certificate of issuer "CN=twin-ca" and serial TWIN_SERIAL, good until NOW + 86400, whose CA's key
 * identifier (authorityKeyIdentifier) is |key_id|, or that names none (NULL).
 */
static X509 *twin(struct marks *m, const char *key_id)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();

    assert_non_null(x);
    assert_non_null(n);
    assert_non_null(akid);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"twin-ca", -1, -1, 0);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), TWIN_SERIAL);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, n);
    ASN1_TIME_set(X509_getm_notBefore(x), NOW - 86400);
    ASN1_TIME_set(X509_getm_notAfter(x), NOW + 86400);
    X509_set_pubkey(x, m->key);
    if (key_id != NULL) {
        assert_non_null(akid->keyid = ASN1_OCTET_STRING_new());
        assert_int_equal(
            ASN1_OCTET_STRING_set(akid->keyid, (const unsigned char *)key_id, (int)strlen(key_id)), 1);
        assert_int_equal(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0), 1);
    }
    assert_true(X509_sign(x, m->key, EVP_sha256()) > 0);
    AUTHORITY_KEYID_free(akid);
    X509_NAME_free(n);
    return x;
}

/* The three certificates of issuer "CN=twin-ca" and serial TWIN_SERIAL the tests below compare. */
struct twins {
    X509 *old_ca, *new_ca, *keyless; /* its CA's key identifier "old-ca-key", "new-ca-key", none */
};

static void twins_make(struct marks *m, struct twins *t)
{
    t->old_ca = twin(m, "old-ca-key");
    t->new_ca = twin(m, "new-ca-key");
    t->keyless = twin(m, NULL);
}

static void twins_free(struct twins *t)
{
    X509_free(t->old_ca);
    X509_free(t->new_ca);
    X509_free(t->keyless);
}

/* What cmp_revoked_check says of |x| now. */
static int check(struct marks *m, X509 *x)
{
    char err[GW_ERR_LEN] = "";

    return cmp_revoked_check(&m->e, x, now_is, err);
}

/*
 * Two CAs of one name (a migration's old and new CA, a CA rekeyed) each issued serial 7: revoking the one
 * CA's certificate leaves the other's valid, and free to be revoked in its turn. A certificate that names
 * no CA key is still refused by issuer and serial (fail closed). Before, the set named a certificate by
 * issuer and serial alone, and revoking one refused both (and the second's rr was "already revoked").
 */
static void test_twin_revocation_keyed(void **state)
{
    struct marks m;
    struct twins tw;

    (void)state;
    marks_open(&m, 16);
    twins_make(&m, &tw);
    assert_int_equal(revoked_at_ca(&m, tw.old_ca), 0);
    assert_int_equal(check(&m, tw.old_ca), 1);
    assert_int_equal(check(&m, tw.new_ca), 0);
    assert_int_equal(check(&m, tw.keyless), 1);
    assert_int_equal(begins(&m, tw.old_ca), 1);
    assert_int_equal(revoked_at_ca(&m, tw.new_ca), 0);
    assert_int_equal(check(&m, tw.new_ca), 1);
    twins_free(&tw);
    marks_close(&m);
}

/* A directory of this test's and its cmp.revoked_file's path in it (freed by the caller). */
static char *revoked_file(void)
{
    char dir[] = "/tmp/cmpgw-test-revoked-XXXXXX", *file = malloc(sizeof(dir) + 16);

    assert_non_null(mkdtemp(dir));
    assert_non_null(file);
    snprintf(file, sizeof(dir) + 16, "%s/revoked", dir);
    return file;
}

static void revoked_file_remove(char *file)
{
    char *slash = strrchr(file, '/');

    (void)unlink(file);
    *slash = '\0';
    (void)rmdir(file);
    free(file);
}

/* |line| (no newline) is what a gateway of the earlier version reads: "<32 hex> <digits>", a positive time.
 */
static bool old_shape(const char *line, long long *t)
{
    char *end;

    if (strlen(line) <= 33 || strlen(line) > 54 || strspn(line, "0123456789abcdefABCDEF") != 32 ||
        line[32] != ' ' || line[33] < '0' || line[33] > '9')
        return false;
    errno = 0;
    *t = strtoll(line + 33, &end, 10);
    return errno == 0 && *end == '\0' && *t > 0;
}

/* The lines of |file|, each of the earlier version's shape, their times into |t| (at most |max|): how many.
 */
static size_t file_times(const char *file, long long *t, size_t max)
{
    char line[128];
    size_t n = 0;
    FILE *f = fopen(file, "r");

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (!old_shape(line, &t[n < max ? n : max - 1]))
            fail_msg("line \"%s\" is not one an earlier version reads", line);
        n++;
    }
    fclose(f);
    return n;
}

/* |x|'s line by issuer and serial as the earlier version writes it: "<cmp_revoked_id> <notAfter>". */
static void write_old_line(const char *file, X509 *x, const char *mode, long long add)
{
    unsigned char id[CMP_REVOKED_ID_LEN];
    FILE *f = fopen(file, mode);

    assert_non_null(f);
    assert_int_equal(cmp_revoked_id(x, id), 0);
    for (size_t i = 0; i < sizeof(id); i++)
        fprintf(f, "%02x", id[i]);
    fprintf(f, " %lld\n", (long long)(NOW + 86400) + add);
    fclose(f);
}

/* |m|'s set anew from |file|, as a restart reads it. */
static void reopen(struct marks *m, const char *file)
{
    char err[GW_ERR_LEN] = "";

    cmp_revoked_free(m->e.revoked);
    if ((m->e.revoked = cmp_revoked_new(file, geteuid(), NOW, &(int){0}, err)) == NULL)
        fail_msg("%s", err);
}

/*
 * cmp.revoked_file, which gateways of this version and the earlier one may both read (a hand-over, a
 * downgrade): a revocation of a certificate that names its CA's key is two lines of the one shape the
 * earlier version reads (any other refuses its start), its keyed entry and its entry by issuer and serial,
 * marked by a notAfter past any X.509 time, which the earlier version keeps as an entry (it refuses every
 * certificate of that issuer and serial, fail closed) and this one skips for a certificate with a key. A
 * start reads both back, and rewrites them so. An entry by issuer and serial the earlier version wrote
 * (unmarked) refuses every certificate of that issuer and serial, marked beside it or not. Before, a
 * revocation was one line by issuer and serial, and refused the other CA's certificate after a restart.
 */
static void test_revoked_file_twins(void **state)
{
    struct marks m;
    char *file = revoked_file();
    long long t[4];
    struct twins tw;

    (void)state;
    marks_open(&m, 16);
    twins_make(&m, &tw);
    reopen(&m, file);
    assert_int_equal(revoked_at_ca(&m, tw.old_ca), 0);
    assert_int_equal(file_times(file, t, 4), 2);
    assert_int_equal(t[0], NOW + 86400);
    assert_true(t[1] > LAST_X509_TIME && t[1] - (LAST_X509_TIME + 1) == NOW + 86400);
    reopen(&m, file); /* read back, and rewritten */
    assert_int_equal(file_times(file, t, 4), 2);
    assert_int_equal(check(&m, tw.old_ca), 1);
    assert_int_equal(check(&m, tw.new_ca), 0);
    assert_int_equal(check(&m, tw.keyless), 1);
    /* the earlier version's line of the other CA's certificate, appended to it: it decides, fail closed */
    write_old_line(file, tw.new_ca, "a", 0);
    reopen(&m, file);
    assert_int_equal(check(&m, tw.new_ca), 1);
    /* that line alone, and then the marked one after it: still unmarked */
    write_old_line(file, tw.old_ca, "w", 0);
    write_old_line(file, tw.old_ca, "a", LAST_X509_TIME + 1);
    reopen(&m, file);
    assert_int_equal(check(&m, tw.old_ca), 1);
    assert_int_equal(check(&m, tw.new_ca), 1);
    assert_int_equal(check(&m, tw.keyless), 1);
    /* a marked line alone: its certificate's keyed entry decides, and there is none */
    write_old_line(file, tw.old_ca, "w", LAST_X509_TIME + 1);
    reopen(&m, file);
    assert_int_equal(check(&m, tw.old_ca), 0);
    assert_int_equal(check(&m, tw.new_ca), 0);
    assert_int_equal(check(&m, tw.keyless), 1);
    twins_free(&tw);
    marks_close(&m);
    revoked_file_remove(file);
}

/*
 * cmp.revoked_file with a second name (a hard link at its name to another file, which whoever may add
 * names to the directory can make where the kernel lets them link what they may not write): refused at
 * start before any of it is read or appended to. Before, the start opened it, locked it shared where the
 * other file's holder held a lock, and appended every revocation to that file.
 */
static void test_revoked_file_with_two_names_refused(void **state)
{
    char *file = revoked_file(), other[80], err[GW_ERR_LEN] = "";
    struct cmp_revoked *rs;
    int fd;

    (void)state;
    snprintf(other, sizeof(other), "%s.other", file);
    assert_true((fd = open(other, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0);
    close(fd);
    assert_int_equal(link(other, file), 0);
    assert_null(rs = cmp_revoked_new(file, geteuid(), NOW, &(int){0}, err));
    assert_non_null(strstr(err, "has more than one name (a hard link)"));
    unlink(other);
    revoked_file_remove(file);
}

/*
 * A certificate that names no CA key, found revoked (at its CA, cmp_status_revoked) where the other CA's
 * certificate of its issuer and serial left a marked entry: that entry is its own now, unmarked, and
 * refuses every certificate of that issuer and serial (it cannot say which CA's it was), after a restart
 * too. Before, the set unmarked it but the file kept the marked line alone: once read back, the keyed
 * certificate of the other CA was let through again.
 */
static void test_keyless_over_marked_line(void **state)
{
    struct marks m;
    char *file = revoked_file();
    char err[GW_ERR_LEN] = "";
    struct twins tw;

    (void)state;
    marks_open(&m, 16);
    twins_make(&m, &tw);
    reopen(&m, file);
    assert_int_equal(revoked_at_ca(&m, tw.old_ca), 0);
    assert_int_equal(check(&m, tw.new_ca), 0);
    assert_int_equal(cmp_revoked_add(&m.e, tw.keyless, now_is, err), 0);
    assert_int_equal(check(&m, tw.new_ca), 1);
    reopen(&m, file);
    assert_int_equal(check(&m, tw.keyless), 1);
    assert_int_equal(check(&m, tw.new_ca), 1);
    assert_int_equal(check(&m, tw.old_ca), 1);
    twins_free(&tw);
    marks_close(&m);
    revoked_file_remove(file);
}

/*
 * A start on a file of marked lines whose keyed ones are not in it (cut off, written by hand) keeps more
 * marked entries than cmp.max_revoked allows (a cap lowered since drops nothing): the array grows past
 * twice that cap. Unmarked entries taken after it, each within the cap, fill it to its end and then need
 * it larger, never smaller. Before, it was reallocated to twice the cap, below what it held, and the next
 * entry written past its end (ASan: heap-buffer-overflow).
 */
static void test_room_past_twice_the_cap(void **state)
{
    struct marks m;
    char *file = revoked_file(), err[GW_ERR_LEN] = "";
    FILE *f = fopen(file, "w");
    X509 *x;

    (void)state;
    assert_non_null(f);
    for (int i = 0; i < 60; i++) /* FIRST_CAP is 64: the array holds 64 once they are read */
        fprintf(f, "%032x %lld\n", i + 1, (long long)(NOW + 86400) + LAST_X509_TIME + 1);
    fclose(f);
    marks_open(&m, 16);
    reopen(&m, file);
    for (long serial = 1; serial <= 8; serial++) {
        x = cert_until(&m, serial, NOW + 86400);
        assert_int_equal(cmp_revoked_add(&m.e, x, now_is, err), 0);
        assert_int_equal(check(&m, x), 1);
        X509_free(x);
    }
    marks_close(&m);
    revoked_file_remove(file);
}

#define DAY 86400
#define AHEAD (3 * DAY) /* a clock ahead of the right one (NOW) by this: a VM before its time sync */

/*
 * A start on a clock ahead by days (a VM's hardware clock, before its time sync) keeps, and writes back,
 * the lines of certificates that expired on that clock but not on the right one: once the clock is set
 * right, they are refused again, without a restart and after one. 65 lines, past the first array's
 * FIRST_CAP (64): the set that grows keeps them too. The twin: a line past its notAfter by more than
 * GW_REVOKED_KEEP_SECS on that clock is dropped, and is not written back. Before, the start skipped every
 * line expired on its clock (and the set, growing, would have dropped them) and rewrote the file empty:
 * those certificates authenticated again once the clock was set right.
 */
static void test_clock_ahead_start_keeps_entries(void **state)
{
    struct marks m;
    char *file = revoked_file(), err[GW_ERR_LEN] = "";
    long long t[80];
    FILE *f;
    X509 *x;

    (void)state;
    marks_open(&m, 16);
    x = cert_until(&m, 1, NOW + DAY);
    write_old_line(file, x, "w", 0); /* notAfter NOW + DAY: expired on the clock ahead */
    assert_non_null(f = fopen(file, "a"));
    for (int i = 0; i < 64; i++)
        fprintf(f, "%032x %lld\n", i + 1, (long long)NOW + DAY);
    fprintf(f, "%032x %lld\n", 1000, (long long)NOW + AHEAD - GW_REVOKED_KEEP_SECS - 10);
    fclose(f);
    cmp_revoked_free(m.e.revoked);
    if ((m.e.revoked = cmp_revoked_new(file, geteuid(), NOW + AHEAD, &(int){0}, err)) == NULL)
        fail_msg("%s", err);
    now_is = NOW + AHEAD;
    assert_int_equal(check(&m, x), 0); /* expired on that clock: its chain is refused too */
    assert_int_equal(file_times(file, t, 80), 65);
    for (size_t i = 0; i < 65; i++)
        assert_int_equal(t[i], NOW + DAY);
    now_is = NOW; /* the clock set right */
    assert_int_equal(check(&m, x), 1);
    reopen(&m, file);
    assert_int_equal(check(&m, x), 1);
    X509_free(x);
    marks_close(&m);
    revoked_file_remove(file);
}

/*
 * A full set (cmp.max_revoked) makes room for a live revocation by dropping the entry that expired first,
 * and that one alone: the other, expired later, is still refused should the clock step back to before its
 * notAfter. The twins: that one gives way in its turn; a set of live entries alone takes no more. Before,
 * room was made by dropping every expired entry at once.
 */
static void test_room_made_from_the_oldest_expired(void **state)
{
    struct marks m;
    X509 *first = NULL, *later = NULL, *live[3];

    (void)state;
    marks_open(&m, 2);
    first = cert_until(&m, 1, NOW + 10);
    later = cert_until(&m, 2, NOW + 20);
    for (int i = 0; i < 3; i++)
        live[i] = cert_until(&m, 10 + i, NOW + DAY);
    assert_int_equal(revoked_at_ca(&m, first), 0);
    assert_int_equal(revoked_at_ca(&m, later), 0);
    now_is = NOW + 100;
    assert_int_equal(revoked_at_ca(&m, live[0]), 0);
    now_is = NOW + 5; /* the clock stepped back */
    assert_int_equal(check(&m, later), 1);
    assert_int_equal(check(&m, first), 0);
    now_is = NOW + 100;
    assert_int_equal(revoked_at_ca(&m, live[1]), 0);
    assert_int_equal(revoked_at_ca(&m, live[2]), CMP_REVOKED_NOT_HERE);
    now_is = NOW + 5;
    assert_int_equal(check(&m, later), 0);
    assert_int_equal(check(&m, live[0]), 1);
    assert_int_equal(check(&m, live[1]), 1);
    X509_free(first);
    X509_free(later);
    for (int i = 0; i < 3; i++)
        X509_free(live[i]);
    marks_close(&m);
}

/*
 * A certificate revoked while this instance's clock runs days ahead, expired on that clock alone, is kept and
 * written to the file: once the clock is set right it is valid again, and refused, after a restart too. The
 * twin: one past its notAfter by more than GW_REVOKED_KEEP_SECS is not kept. Before, such a revocation was
 * only remembered for a second revocation's sake, and the certificate authenticated again once the clock was
 * set right.
 */
static void test_revoked_on_a_clock_ahead_kept(void **state)
{
    struct marks m;
    char *file = revoked_file();
    X509 *x, *old;

    (void)state;
    marks_open(&m, 8);
    reopen(&m, file);
    x = cert_until(&m, 1, NOW + DAY);
    old = cert_until(&m, 2, NOW + AHEAD - GW_REVOKED_KEEP_SECS - 10);
    now_is = NOW + AHEAD;
    assert_int_equal(revoked_at_ca(&m, x), 0);
    (void)revoked_at_ca(&m, old);
    now_is = NOW; /* the clock set right */
    assert_int_equal(check(&m, x), 1);
    reopen(&m, file);
    assert_int_equal(check(&m, x), 1);
    now_is = NOW - GW_REVOKED_KEEP_SECS; /* before old's notAfter: not kept, left to its CA's CRL */
    assert_int_equal(check(&m, old), 0);
    X509_free(x);
    X509_free(old);
    marks_close(&m);
    revoked_file_remove(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_destroys_the_condattr),
        cmocka_unit_test(test_withdrawals_init_checks_the_condition),
        cmocka_unit_test(test_unkept_revocation_remembered),
        cmocka_unit_test(test_expired_revocation_remembered),
        cmocka_unit_test(test_unkept_revocation_refused_as_credential),
        cmocka_unit_test(test_unmarked_revocation_said),
        cmocka_unit_test(test_kept_through_not_after),
        cmocka_unit_test(test_twin_revocation_keyed),
        cmocka_unit_test(test_revoked_file_twins),
        cmocka_unit_test(test_revoked_file_with_two_names_refused),
        cmocka_unit_test(test_keyless_over_marked_line),
        cmocka_unit_test(test_room_past_twice_the_cap),
        cmocka_unit_test(test_clock_ahead_start_keeps_entries),
        cmocka_unit_test(test_room_made_from_the_oldest_expired),
        cmocka_unit_test(test_revoked_on_a_clock_ahead_kept),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
