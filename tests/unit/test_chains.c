/*
 * The validated-chain cache (gateway/cmp/chains.c): a chain once verified is remembered for its
 * store and the intermediates offered with it (without them it fails as the first time), a failure
 * never is, and nothing is remembered for a store that verifies at a fixed time or without a cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/x509v3.h>

#include "gateway/cmp/chains.h"
#include "base/x509.h"
#include "testutil.h"

static EVP_PKEY *root_key, *mid_key, *leaf_key, *other_key;
static X509 *root, *mid, *leaf, *stranger;

/* |x| made a CA (basicConstraints, keyCertSign) and signed again by |signer|. */
static void make_ca(X509 *x, EVP_PKEY *signer)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();

    bc->ca = 1;
    ASN1_BIT_STRING_set_bit(ku, 5, 1); /* keyCertSign */
    assert_int_equal(X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, 0), 1);
    assert_int_equal(X509_add1_ext_i2d(x, NID_key_usage, ku, 1, 0), 1);
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(ku);
}

static int setup(void **state)
{
    (void)state;
    root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    mid_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    root = tu_make_cert(root_key, root_key, NULL, "chains root", 1);
    make_ca(root, root_key);
    mid = tu_make_cert(mid_key, root_key, root, "chains intermediate", 2);
    make_ca(mid, root_key);
    leaf = tu_make_cert(leaf_key, mid_key, mid, "chains leaf", 3);
    stranger = tu_make_cert(leaf_key, other_key, NULL, "chains stranger", 4); /* signed by nobody known */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    X509_free(root), X509_free(mid), X509_free(leaf), X509_free(stranger);
    EVP_PKEY_free(root_key), EVP_PKEY_free(mid_key), EVP_PKEY_free(leaf_key), EVP_PKEY_free(other_key);
    return 0;
}

static X509_STORE *store_of_root(void)
{
    X509_STORE *s = X509_STORE_new();

    assert_int_equal(X509_STORE_add_cert(s, root), 1);
    return s;
}

static STACK_OF(X509) *with_mid(void)
{
    STACK_OF(X509) *u = sk_X509_new_null();

    sk_X509_push(u, mid);
    return u;
}

/* A hit is seen by a store that could no longer verify: its root removed after the first check. */
static void test_remembered_for_its_store(void **state)
{
    struct cmp_chains *cc = cmp_chains_new();
    X509_STORE *s = store_of_root(), *other = store_of_root();
    STACK_OF(X509) *u = with_mid(), *none = sk_X509_new_null();

    (void)state;
    assert_int_equal(cmp_chains_valid(cc, s, none, leaf), 0); /* no path without the intermediate */
    assert_int_equal(cmp_chains_valid(cc, s, u, leaf), 1);
    assert_int_equal(cmp_chains_valid(cc, s, none, leaf), 0);         /* not sent again: refused again */
    X509_OBJECT_free(sk_X509_OBJECT_pop(X509_STORE_get0_objects(s))); /* the root gone from the store */
    assert_int_equal(cmp_chains_valid(NULL, s, u, leaf), 0);          /* verified: no longer */
    assert_int_equal(cmp_chains_valid(cc, s, u, leaf), 1);            /* remembered */
    assert_int_equal(cmp_chains_valid(cc, other, u, leaf), 1);        /* another store: verified itself */
    sk_X509_free(u);
    sk_X509_free(none);
    X509_STORE_free(s);
    X509_STORE_free(other);
    cmp_chains_free(cc);
}

/* |x| parsed again from its DER by gw_x509_parse_cached (the caller frees it); the DER in *der. */
static X509 *parsed_again(X509 *x, unsigned char **der, int *len)
{
    X509 *y;

    *der = NULL;
    assert_true((*len = i2d_X509(x, der)) > 0);
    assert_non_null(y = gw_x509_parse_cached(*der, *len));
    return y;
}

/*
 * A certificate's SHA-256 in the key is what X509_digest makes, whether recorded when it was parsed or
 * made at the look-up: the same certificates parsed again (as a signer's extraCerts are with each
 * message) find the answer remembered for the first ones. Twins: one byte of the leaf's signature
 * changed is another key, verified afresh and refused; a DER whose outer length is not minimal (BER a
 * parse accepts) records nothing, and its SHA-256 is still that of the certificate's encoding.
 */
static void test_key_of_parsed_certs(void **state)
{
    struct cmp_chains *cc = cmp_chains_new();
    X509_STORE *s = store_of_root();
    STACK_OF(X509) *u = with_mid(), *u2 = sk_X509_new_null();
    unsigned char *der_leaf, *der_mid, *ber, want[32], got[32], of_ber[32];
    int len_leaf, len_mid;
    unsigned int n = 0;
    X509 *leaf2 = parsed_again(leaf, &der_leaf, &len_leaf), *mid2 = parsed_again(mid, &der_mid, &len_mid),
         *bad, *x;

    (void)state;
    assert_int_equal(X509_digest(leaf, EVP_sha256(), want, &n), 1);
    assert_int_equal(gw_x509_sha256(leaf2, got), 0);
    assert_memory_equal(got, want, 32);
    assert_int_equal(gw_x509_sha256(leaf, got), 0); /* not parsed here: made now */
    assert_memory_equal(got, want, 32);
    assert_int_equal(gw_x509_sha256_keep(mid), 0); /* a configuration's, recorded */
    assert_int_equal(X509_digest(mid, EVP_sha256(), of_ber, &n), 1);
    assert_int_equal(gw_x509_sha256(mid, got), 0);
    assert_memory_equal(got, of_ber, 32);
    sk_X509_push(u2, mid2);
    assert_int_equal(cmp_chains_valid(cc, s, u, leaf), 1);
    der_leaf[len_leaf - 1] ^= 1; /* the last byte of the signature */
    assert_non_null(bad = gw_x509_parse_cached(der_leaf, len_leaf));
    assert_int_equal(cmp_chains_valid(cc, s, u2, bad), 0);
    X509_OBJECT_free(sk_X509_OBJECT_pop(X509_STORE_get0_objects(s))); /* the root gone from the store */
    assert_int_equal(cmp_chains_valid(cc, s, u2, leaf2), 1);          /* remembered */
    assert_int_equal(cmp_chains_valid(cc, s, u2, bad), 0);
    der_leaf[len_leaf - 1] ^= 1;

    /* 30 82 LL LL ... as 30 83 00 LL LL ... */
    assert_true(der_leaf[1] == 0x82);
    assert_non_null(ber = OPENSSL_malloc((size_t)len_leaf + 1));
    ber[0] = 0x30, ber[1] = 0x83, ber[2] = 0x00;
    memcpy(ber + 3, der_leaf + 2, (size_t)len_leaf - 2);
    assert_non_null(x = gw_x509_parse_cached(ber, len_leaf + 1));
    assert_int_equal(EVP_Digest(ber, (size_t)len_leaf + 1, of_ber, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(gw_x509_sha256(x, got), 0);
    assert_memory_equal(got, want, 32);
    assert_memory_not_equal(got, of_ber, 32);

    X509_free(x), X509_free(bad), X509_free(leaf2), X509_free(mid2);
    OPENSSL_free(ber), OPENSSL_free(der_leaf), OPENSSL_free(der_mid);
    sk_X509_free(u), sk_X509_free(u2);
    X509_STORE_free(s);
    cmp_chains_free(cc);
}

static void test_failure_never_remembered(void **state)
{
    struct cmp_chains *cc = cmp_chains_new();
    X509_STORE *s = store_of_root();
    STACK_OF(X509) *u = with_mid();

    (void)state;
    assert_int_equal(cmp_chains_valid(cc, s, u, stranger), 0);
    assert_int_equal(cmp_chains_valid(cc, s, u, stranger), 0);
    sk_X509_free(u);
    X509_STORE_free(s);
    cmp_chains_free(cc);
}

static void test_fixed_time_store_not_remembered(void **state)
{
    struct cmp_chains *cc = cmp_chains_new();
    X509_STORE *s = store_of_root();
    STACK_OF(X509) *u = with_mid(), *none = sk_X509_new_null();

    (void)state;
    X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(s), time(NULL));
    assert_int_equal(cmp_chains_valid(cc, s, u, leaf), 1);
    assert_int_equal(cmp_chains_valid(cc, s, none, leaf), 0);
    sk_X509_free(u);
    sk_X509_free(none);
    X509_STORE_free(s);
    cmp_chains_free(cc);
}

static void test_expired_leaf(void **state)
{
    struct cmp_chains *cc = cmp_chains_new();
    X509_STORE *s = store_of_root();
    STACK_OF(X509) *u = with_mid();
    X509 *old = tu_make_cert(leaf_key, mid_key, mid, "chains expired", 5);

    (void)state;
    X509_gmtime_adj(X509_getm_notBefore(old), -7200);
    X509_gmtime_adj(X509_getm_notAfter(old), -3600);
    assert_true(X509_sign(old, mid_key, EVP_sha256()) > 0);
    assert_int_equal(cmp_chains_valid(cc, s, u, old), 0);
    X509_free(old);
    sk_X509_free(u);
    X509_STORE_free(s);
    cmp_chains_free(cc);
}

/* A certificate of |key| under |issuer| (NULL: self-signed), signed with |md|; a CA if |ca|. */
static X509 *signed_with(EVP_PKEY *key, EVP_PKEY *signer, X509 *issuer, const char *cn, int ca,
                         const EVP_MD *md)
{
    X509 *x = tu_make_cert(key, signer, issuer, cn, 10);

    if (ca)
        make_ca(x, signer);
    assert_true(X509_sign(x, signer, md) > 0);
    return x;
}

/*
 * Verified at GW_SIGNER_AUTH_LEVEL (112 bits): a SHA-1 signature on the signer or on an intermediate,
 * an RSA key of 1024 bits in either, fails with the error that says so and its depth; the trust
 * anchor's own SHA-1 signature is not checked (OpenSSL's rule), and the same chain signed with SHA-256
 * validates.
 */
static void test_security_level(void **state)
{
    EVP_PKEY *rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    X509 *sha1_root = signed_with(root_key, root_key, NULL, "chains root", 1, EVP_sha1());
    X509 *sha1_mid = signed_with(mid_key, root_key, root, "chains intermediate", 1, EVP_sha1());
    X509 *small_mid = signed_with(rsa1024, root_key, root, "chains intermediate", 1, EVP_sha256());
    struct {
        const char *name;
        X509 *anchor, *mid;
        EVP_PKEY *mid_key, *leaf_key;
        const EVP_MD *leaf_md;
        int code, depth;
    } cases[] = {
        {"SHA-256 throughout", root, mid, mid_key, leaf_key, EVP_sha256(), X509_V_OK, 0},
        {"leaf signed with SHA-1", root, mid, mid_key, leaf_key, EVP_sha1(), X509_V_ERR_CA_MD_TOO_WEAK, 0},
        {"intermediate signed with SHA-1", root, sha1_mid, mid_key, leaf_key, EVP_sha256(),
         X509_V_ERR_CA_MD_TOO_WEAK, 1},
        {"leaf key RSA 1024", root, mid, mid_key, rsa1024, EVP_sha256(), X509_V_ERR_EE_KEY_TOO_SMALL, 0},
        {"intermediate key RSA 1024", root, small_mid, rsa1024, leaf_key, EVP_sha256(),
         X509_V_ERR_CA_KEY_TOO_SMALL, 1},
        {"anchor self-signed with SHA-1", sha1_root, mid, mid_key, leaf_key, EVP_sha256(), X509_V_OK, 0},
    };

    (void)state;
    assert_non_null(rsa1024);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cmp_chains *cc = cmp_chains_new();
        X509_STORE *s = X509_STORE_new();
        STACK_OF(X509) *u = sk_X509_new_null(), *chain = NULL;
        X509 *x = signed_with(cases[i].leaf_key, cases[i].mid_key, cases[i].mid, "chains leaf", 0,
                              cases[i].leaf_md);
        int code = -1, depth = -1, ok;

        print_message("case: %s\n", cases[i].name);
        assert_int_equal(X509_STORE_add_cert(s, cases[i].anchor), 1);
        sk_X509_push(u, cases[i].mid);
        ok = cmp_chains_verify(cc, s, u, x, &chain, &code, &depth);
        assert_int_equal(ok, cases[i].code == X509_V_OK);
        assert_int_equal(code, cases[i].code);
        assert_int_equal(depth, cases[i].depth);
        assert_int_equal(chain != NULL, ok);
        assert_int_equal(cmp_chains_valid(cc, s, u, x), ok); /* a refusal is never remembered as valid */
        sk_X509_pop_free(chain, X509_free);
        X509_free(x);
        sk_X509_free(u);
        X509_STORE_free(s);
        cmp_chains_free(cc);
    }
    X509_free(sha1_root), X509_free(sha1_mid), X509_free(small_mid);
    EVP_PKEY_free(rsa1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remembered_for_its_store),
        cmocka_unit_test(test_key_of_parsed_certs),
        cmocka_unit_test(test_failure_never_remembered),
        cmocka_unit_test(test_fixed_time_store_not_remembered),
        cmocka_unit_test(test_expired_leaf),
        cmocka_unit_test(test_security_level),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
