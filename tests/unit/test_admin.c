/*
 * Unit tests for the admin listener's bearer token check (gateway/admin.c) on requests made by hand:
 * the token compared by its digest, and the Authorization value wiped where h2o holds it once it
 * was compared, over HTTP/1, and left over HTTP/2, where HPACK may share its bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/sha.h>
#include "gateway/listener_local.h"

#define TOKEN "0123456789abcdef0123456789abcdef"

struct bearer_case {
    const char *name;
    int version;       /* h2o's req->version: 0x101 HTTP/1.1, 0x200 HTTP/2 */
    const char *value; /* the Authorization value; NULL: no header */
    bool ok, missing;
    bool wiped; /* the value's bytes are zeros afterwards */
};

static const struct bearer_case cases[] = {
    {"right token", 0x101, "Bearer " TOKEN, true, false, true},
    {"scheme in another case, HTTP/1.0", 0x100, "bEARER  " TOKEN, true, false, true},
    {"wrong token", 0x101, "Bearer " TOKEN "x", false, false, true},
    {"another scheme", 0x101, "Basic " TOKEN, false, true, true},
    {"no token after the scheme", 0x101, "Bearer ", false, true, true},
    {"no header", 0x101, NULL, false, true, false},
    {"right token over HTTP/2", 0x200, "Bearer " TOKEN, true, false, false},
    {"wrong token over HTTP/2", 0x200, "Bearer nope", false, false, false},
};

static bool all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\0')
            return false;
    return true;
}

static void test_bearer_checked_then_wiped(void **state)
{
    unsigned char want[SHA256_DIGEST_LENGTH];

    (void)state;
    assert_non_null(SHA256((const unsigned char *)TOKEN, strlen(TOKEN), want));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bearer_case *c = &cases[i];
        char buf[128] = "";
        size_t len = c->value != NULL ? strlen(c->value) : 0;
        bool missing = false, ok;
        h2o_req_t req;

        memset(&req, 0, sizeof(req));
        h2o_mem_init_pool(&req.pool);
        req.version = c->version;
        h2o_add_header(&req.pool, &req.headers, H2O_TOKEN_USER_AGENT, NULL, H2O_STRLIT("curl"));
        if (c->value != NULL) {
            memcpy(buf, c->value, len); /* as picohttpparser leaves it: in the input buffer */
            h2o_add_header(&req.pool, &req.headers, H2O_TOKEN_AUTHORIZATION, NULL, buf, len);
        }
        ok = gw_admin_bearer_ok(&req, want, &missing);
        if (ok != c->ok || missing != c->missing)
            fail_msg("%s: ok %d missing %d", c->name, ok, missing);
        if (c->value != NULL && all_zero(buf, len) != c->wiped)
            fail_msg("%s: the value is %s", c->name, c->wiped ? "not wiped" : "wiped");
        assert_memory_equal(req.headers.entries[0].value.base, "curl", 4); /* other headers stay */
        h2o_mem_clear_pool(&req.pool);
    }
}

/*
 * Every Authorization value of an HTTP/1 request is wiped, not the first alone, whether a token is
 * compared (POST /reload) or not (any other request: no digest to compare with); over HTTP/2 none is.
 */
static void test_every_authorization_wiped(void **state)
{
    static const struct {
        int version;
        bool compared, wiped;
    } wipes[] = {{0x101, true, true}, {0x101, false, true}, {0x200, false, false}};
    unsigned char want[SHA256_DIGEST_LENGTH];

    (void)state;
    assert_non_null(SHA256((const unsigned char *)TOKEN, strlen(TOKEN), want));
    for (size_t i = 0; i < sizeof(wipes) / sizeof(wipes[0]); i++) {
        char first[] = "Bearer " TOKEN, second[] = "Bearer two";
        bool missing = false;
        h2o_req_t req;

        memset(&req, 0, sizeof(req));
        h2o_mem_init_pool(&req.pool);
        req.version = wipes[i].version;
        h2o_add_header(&req.pool, &req.headers, H2O_TOKEN_AUTHORIZATION, NULL, first, strlen(first));
        h2o_add_header(&req.pool, &req.headers, H2O_TOKEN_AUTHORIZATION, NULL, second, strlen(second));
        /* only the right token passes, and only where it is compared */
        assert_int_equal(gw_admin_bearer_ok(&req, wipes[i].compared ? want : NULL, &missing),
                         wipes[i].compared);
        assert_int_equal(missing, !wipes[i].compared);
        if (all_zero(first, strlen("Bearer " TOKEN)) != wipes[i].wiped ||
            all_zero(second, strlen("Bearer two")) != wipes[i].wiped)
            fail_msg("case %zu: the values are %s", i, wipes[i].wiped ? "not wiped" : "wiped");
        h2o_mem_clear_pool(&req.pool);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bearer_checked_then_wiped),
        cmocka_unit_test(test_every_authorization_wiped),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
