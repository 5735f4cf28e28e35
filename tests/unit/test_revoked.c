/*
 * Unit tests for the set of certificates revoked through the gateway (gateway/cmp/revoked.c) and the
 * engine's withdrawal queue (gateway/cmp/record.c), the two conditions whose waits run on
 * CLOCK_MONOTONIC: what their construction leaves behind when a step of it fails. The condition
 * attributes are this executable's own, which count what is made of them and fail where a case says,
 * and forward to the C library's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "gateway/cmp/cmp_local.h"
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
 * Once, a clock that could not be set (or a condition that could not be made) left them.
 */
static void test_new_destroys_the_condattr(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[GW_ERR_LEN] = "";
        struct cmp_revoked *rs;

        shim.attrs_live = 0;
        shim.fail_setclock = cases[i].fail_setclock;
        shim.fail_cond_init = cases[i].fail_cond_init;
        rs = cmp_revoked_new(NULL, getuid(), 0, err);
        shim.fail_setclock = shim.fail_cond_init = false;
        if ((rs != NULL) != cases[i].made || shim.attrs_live != 0)
            fail_msg("%s: set %s, %d condition attributes left", cases[i].name,
                     rs != NULL ? "made" : "not made", shim.attrs_live);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_destroys_the_condattr),
        cmocka_unit_test(test_withdrawals_init_checks_the_condition),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
