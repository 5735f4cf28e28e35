/*
 * Unit tests for whether the signer's key signs (gateway/cmp/signer.c): a key is taken to sign as it was
 * loaded, and the prober does not make it sign while its last signature is fresh; a failed signature
 * makes it fail, until the prober's test signature succeeds (a key that signs) or fails again (one
 * without its private half, as a key whose token is gone); one test signature in GW_SIGNER_CHECK_MS at
 * most. OpenSSL's failed protection is found in its CMP log line and in its error queue, and nothing
 * else is taken for it.
 */
/* RSA_METHOD, which the build hides: a key that signs as libp11's engine makes a token's key sign */
#undef OPENSSL_NO_DEPRECATED
#undef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 10100
#define OPENSSL_SUPPRESS_DEPRECATED
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include <openssl/cmperr.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "base/err.h"
#include "base/limits.h"
#include "base/pem.h"
#include "gateway/cmp/signer.h"

static EVP_PKEY *signs, *public_only, *pss_only;
static RSA_METHOD *pss_method;

/* The RSA private operation of a key a token lets sign only with PSS: PKCS#1 v1.5 is refused (libp11's
 * engine reaches the token through such a method), PSS, padded before it comes here, is made. */
static int refuse_pkcs1(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
    if (padding == RSA_PKCS1_PADDING)
        return -1;
    return RSA_meth_get_priv_enc(RSA_PKCS1_OpenSSL())(flen, from, to, rsa, padding);
}

/* An RSA key that signs only with PSS, as above; NULL on failure. */
static EVP_PKEY *pss_only_key(void)
{
    EVP_PKEY *gen = EVP_RSA_gen(2048), *key = NULL;
    RSA *rsa = NULL;

    if (gen == NULL || (rsa = EVP_PKEY_get1_RSA(gen)) == NULL ||
        (pss_method = RSA_meth_dup(RSA_PKCS1_OpenSSL())) == NULL ||
        RSA_meth_set_priv_enc(pss_method, refuse_pkcs1) != 1 || RSA_set_method(rsa, pss_method) != 1 ||
        (key = EVP_PKEY_new()) == NULL || EVP_PKEY_assign_RSA(key, rsa) != 1) {
        EVP_PKEY_free(key);
        key = NULL;
        RSA_free(rsa);
    }
    EVP_PKEY_free(gen);
    return key;
}

static int group_setup(void **state)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int len;

    (void)state;
    signs = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (signs == NULL || (len = i2d_PUBKEY(signs, &der)) <= 0)
        return 1;
    p = der;
    public_only = d2i_PUBKEY(NULL, &p, len);
    OPENSSL_free(der);
    pss_only = pss_only_key();
    return public_only == NULL || pss_only == NULL;
}

static int group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(signs);
    EVP_PKEY_free(public_only);
    EVP_PKEY_free(pss_only);
    RSA_meth_free(pss_method);
    return 0;
}

static bool ready(struct cmp_signer_health *h, char *why, size_t cap)
{
    why[0] = '\0';
    return cmp_signer_status(h, why, cap) == 0;
}

/* Fresh from its load, the key is not asked to sign: a key that cannot stays ready until it is used. */
static void test_fresh_not_probed(void **state)
{
    struct cmp_signer_health *h = cmp_signer_health_new(public_only);
    char why[GW_ERR_LEN];

    (void)state;
    assert_non_null(h);
    assert_true(ready(h, why, sizeof(why)));
    cmp_signer_probe(h);
    assert_true(ready(h, why, sizeof(why)));
    cmp_signer_health_free(h);
}

/* A failed signature: not ready, with why; the prober's test signature fails again and says so. */
static void test_failed_stays_failed(void **state)
{
    struct cmp_signer_health *h = cmp_signer_health_new(public_only);
    char why[GW_ERR_LEN];

    (void)state;
    cmp_signer_note(h, false, "Object handle invalid");
    assert_false(ready(h, why, sizeof(why)));
    assert_non_null(strstr(why, "Object handle invalid"));
    cmp_signer_probe(h);
    assert_false(ready(h, why, sizeof(why)));
    assert_non_null(strstr(why, "a test signature failed"));
    cmp_signer_health_free(h);
}

/* A key that signs again is ready again at the prober's next test; one test in GW_SIGNER_CHECK_MS. */
static void test_recovers_once_per_span(void **state)
{
    struct cmp_signer_health *h = cmp_signer_health_new(signs);
    char why[GW_ERR_LEN];

    (void)state;
    cmp_signer_note(h, false, "the signature failed");
    cmp_signer_probe(h);
    assert_true(ready(h, why, sizeof(why)));
    cmp_signer_note(h, false, "the signature failed");
    cmp_signer_probe(h); /* the last test was just now: none again */
    assert_false(ready(h, why, sizeof(why)));
    cmp_signer_note(h, true, ""); /* an answer signed */
    assert_true(ready(h, why, sizeof(why)));
    cmp_signer_health_free(h);
}

/*
 * OpenSSL 3.0 protects a CMP answer with an RSA key in PKCS#1 v1.5 (sha256WithRSAEncryption), never PSS: a
 * key its token lets sign only with PSS fails every answer, and so must the test signature, else the
 * check would swing back to ready at each test and to not ready at each answer.
 */
static void test_pss_only_stays_failed(void **state)
{
    struct cmp_signer_health *h = cmp_signer_health_new(pss_only);
    char why[GW_ERR_LEN];

    (void)state;
    assert_non_null(h);
    assert_true(gw_pem_key_signs(pss_only, GW_PEM_KEY_TLS, why, sizeof(why))); /* a TLS 1.3 listener's key */
    cmp_signer_note(h, false, "the signature failed");
    cmp_signer_probe(h);
    assert_false(ready(h, why, sizeof(why)));
    assert_non_null(strstr(why, "a test signature failed"));
    cmp_signer_health_free(h);
}

/*
 * Each use tries a key as it signs: a TLS key may sign with PSS alone, a key that protects CMP messages
 * (the signer, which a cmp upstream's requests are protected with too) or signs certificates and CRLs (a
 * local issuer's) must sign with PKCS#1 v1.5, which is what the load of a key in a token tries.
 */
static void test_signs_by_use(void **state)
{
    static const struct {
        EVP_PKEY **key;
        enum gw_pem_key_use use;
        bool signs;
    } cases[] = {
        {&pss_only, GW_PEM_KEY_TLS, true},     {&pss_only, GW_PEM_KEY_CERTS, false},
        {&pss_only, GW_PEM_KEY_CMP, false},    {&signs, GW_PEM_KEY_TLS, true},
        {&signs, GW_PEM_KEY_CERTS, true},      {&signs, GW_PEM_KEY_CMP, true},
        {&public_only, GW_PEM_KEY_TLS, false}, {&public_only, GW_PEM_KEY_CMP, false},
    };
    char why[GW_ERR_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        why[0] = '\0';
        assert_int_equal(gw_pem_key_signs(*cases[i].key, cases[i].use, why, sizeof(why)), cases[i].signs);
        assert_true(cases[i].signs || why[0] != '\0');
        assert_int_equal(ERR_peek_error(), 0);
    }
}

/* A test signature's reason is its own, never an error an earlier call left in the thread's queue. */
static void test_reason_is_its_own(void **state)
{
    struct cmp_signer_health *h = cmp_signer_health_new(public_only);
    char why[GW_ERR_LEN], own[GW_ERR_LEN];

    (void)state;
    assert_false(gw_pem_key_signs(public_only, GW_PEM_KEY_CMP, own, sizeof(own)));
    ERR_raise(ERR_LIB_CMP, CMP_R_ERROR_CREATING_CERTREP); /* left behind by something else */
    cmp_signer_note(h, false, "the signature failed");
    cmp_signer_probe(h);
    assert_false(ready(h, why, sizeof(why)));
    assert_non_null(strstr(why, own));
    assert_null(strstr(why, ERR_reason_error_string(ERR_PACK(ERR_LIB_CMP, 0, CMP_R_ERROR_CREATING_CERTREP))));
    assert_int_equal(ERR_peek_error(), 0);
    cmp_signer_health_free(h);
}

static void test_failed_in_log_line(void **state)
{
    (void)state;
    assert_true(cmp_signer_failed_in("error protecting message"));
    assert_true(cmp_signer_failed_in("error protecting message : some detail"));
    assert_false(cmp_signer_failed_in("error creating certrep"));
    assert_false(cmp_signer_failed_in("Object handle invalid"));
    assert_false(cmp_signer_failed_in(""));
    assert_false(cmp_signer_failed_in(NULL));
}

static void test_failed_in_queue(void **state)
{
    char why[GW_ERR_LEN];

    (void)state;
    ERR_clear_error();
    assert_false(cmp_signer_failed_in_queue(why, sizeof(why)));
    ERR_raise(ERR_LIB_EVP, EVP_R_OPERATION_NOT_SUPPORTED_FOR_THIS_KEYTYPE);
    ERR_raise(ERR_LIB_CMP, CMP_R_ERROR_PROTECTING_MESSAGE);
    assert_true(cmp_signer_failed_in_queue(why, sizeof(why)));
    assert_string_equal(why, ERR_reason_error_string(
                                 ERR_PACK(ERR_LIB_EVP, 0, EVP_R_OPERATION_NOT_SUPPORTED_FOR_THIS_KEYTYPE)));
    assert_int_equal(ERR_peek_error(), 0);
    ERR_raise(ERR_LIB_CMP, CMP_R_ERROR_CREATING_CERTREP);
    assert_false(cmp_signer_failed_in_queue(why, sizeof(why)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_not_probed),       cmocka_unit_test(test_failed_stays_failed),
        cmocka_unit_test(test_recovers_once_per_span), cmocka_unit_test(test_pss_only_stays_failed),
        cmocka_unit_test(test_failed_in_log_line),     cmocka_unit_test(test_failed_in_queue),
        cmocka_unit_test(test_signs_by_use),           cmocka_unit_test(test_reason_is_its_own),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
