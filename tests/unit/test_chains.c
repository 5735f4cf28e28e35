/*
 * The validated-chain cache (gateway/cmp/chains.c): a chain once verified is remembered for its
 * store and the intermediates offered with it (without them it fails as the first time), a failure
 * never is, and nothing is remembered for a store that verifies at a fixed time or without a cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <unistd.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>

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

/* ---- stores that check CRLs ---- */

static int (*default_check_crl)(X509_STORE_CTX *ctx, X509_CRL *crl);
static int crl_checks; /* CRLs OpenSSL checked, each with its signature (X509_CRL_verify) */

/* OpenSSL's own check_crl, counted. */
static int counted_check_crl(X509_STORE_CTX *ctx, X509_CRL *crl)
{
    crl_checks++;
    return default_check_crl(ctx, crl);
}

/* |x| made a CA that signs certificates and CRLs, signed again by |signer|. */
static void make_crl_ca(X509 *x, EVP_PKEY *signer)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();

    bc->ca = 1;
    ASN1_BIT_STRING_set_bit(ku, 5, 1); /* keyCertSign */
    ASN1_BIT_STRING_set_bit(ku, 6, 1); /* cRLSign */
    assert_int_equal(X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, 0), 1);
    assert_int_equal(X509_add1_ext_i2d(x, NID_key_usage, ku, 1, 0), 1);
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(ku);
}

/*
 * A CRL of |issuer| signed with |key|, current until |next| seconds from now, listing |entries| serials
 * (|revoked| among them if not 0), parsed from its DER as a configuration's is.
 */
static X509_CRL *make_crl(X509 *issuer, EVP_PKEY *key, long entries, long revoked, long next)
{
    X509_CRL *crl = X509_CRL_new(), *parsed;
    ASN1_TIME *t = ASN1_TIME_new();
    unsigned char *der = NULL;
    const unsigned char *p;
    int len;

    assert_int_equal(X509_CRL_set_version(crl, 1), 1);
    assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)), 1);
    assert_non_null(X509_gmtime_adj(t, -60));
    assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
    for (long i = 0; i < entries; i++) {
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_INTEGER *sn = ASN1_INTEGER_new();

        assert_int_equal(ASN1_INTEGER_set(sn, i == 0 && revoked != 0 ? revoked : 1000000 + i), 1);
        assert_int_equal(X509_REVOKED_set_serialNumber(r, sn), 1);
        assert_int_equal(X509_REVOKED_set_revocationDate(r, t), 1);
        assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
        ASN1_INTEGER_free(sn);
    }
    assert_non_null(X509_gmtime_adj(t, next));
    assert_int_equal(X509_CRL_set1_nextUpdate(crl, t), 1);
    assert_int_equal(X509_CRL_sort(crl), 1);
    assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
    assert_true((len = i2d_X509_CRL(crl, &der)) > 0);
    p = der;
    assert_non_null(parsed = d2i_X509_CRL(NULL, &p, len));
    OPENSSL_free(der);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return parsed;
}

/* A store of |anchor| and |crls| that checks them for the whole chain, as a trust with crl_file; counted. */
static X509_STORE *store_with_crls(X509 *anchor, X509_CRL *crls[], size_t n)
{
    X509_STORE *s = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();

    assert_int_equal(X509_STORE_CTX_init(ctx, s, NULL, NULL), 1);
    default_check_crl = X509_STORE_CTX_get_check_crl(ctx); /* OpenSSL's: the store sets none */
    X509_STORE_CTX_free(ctx);
    assert_int_equal(X509_STORE_add_cert(s, anchor), 1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(X509_STORE_add_crl(s, crls[i]), 1);
    assert_int_equal(X509_STORE_set_flags(s, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL), 1);
    X509_STORE_set_check_crl(s, counted_check_crl);
    return s;
}

/* A root and an intermediate that issue CRLs, and a leaf under them of serial |serial|. */
struct crl_pki {
    X509 *root, *mid, *leaf;
};

static void crl_pki_init(struct crl_pki *p, long serial)
{
    p->root = tu_make_cert(root_key, root_key, NULL, "crl root", 1);
    make_crl_ca(p->root, root_key);
    p->mid = tu_make_cert(mid_key, root_key, p->root, "crl intermediate", 2);
    make_crl_ca(p->mid, root_key);
    p->leaf = tu_make_cert(leaf_key, mid_key, p->mid, "crl leaf", serial);
}

static void crl_pki_cleanup(struct crl_pki *p)
{
    X509_free(p->root), X509_free(p->mid), X509_free(p->leaf);
}

/*
 * A chain validated against a store that checks CRLs is remembered too: OpenSSL verifies each CRL's
 * signature with every validation, and a CRL of 50 000 entries would cost that again with each message
 * of the same signer. Twins: other intermediates offered with the same certificate (a client's junk in
 * extraCerts) find the answer of the chain found, without a CRL checked again; a certificate whose
 * signature fails is refused before any CRL is checked; a revoked certificate is refused each time; an
 * intermediate whose CRL is missing fails every certificate it issued; a trust anchor validated again (a
 * client naming the CA as the sender) is remembered as any chain.
 */
static void test_crl_checked_remembered(void **state)
{
    struct cmp_chains *cc = cmp_chains_new();
    struct crl_pki p;
    X509_CRL *crls[2];
    X509_STORE *s, *no_mid_crl;
    STACK_OF(X509) *u = sk_X509_new_null(), *junk = sk_X509_new_null();
    X509 *forged, *revoked;
    int first, code = -1, depth = -1;

    (void)state;
    crl_pki_init(&p, 3);
    crls[0] = make_crl(p.mid, mid_key, 50000, 77, 3600);
    crls[1] = make_crl(p.root, root_key, 10, 0, 3600);
    s = store_with_crls(p.root, crls, 2);
    no_mid_crl = store_with_crls(p.root, &crls[1], 1);
    sk_X509_push(u, p.mid);
    sk_X509_push(junk, stranger);
    sk_X509_push(junk, p.mid);
    forged = tu_make_cert(leaf_key, other_key, p.mid, "crl leaf", 3); /* the leaf's names, not its CA's key */
    revoked = tu_make_cert(leaf_key, mid_key, p.mid, "crl revoked", 77);

    crl_checks = 0;
    assert_int_equal(cmp_chains_valid(cc, s, u, p.leaf), 1);
    assert_true((first = crl_checks) > 0);
    assert_int_equal(cmp_chains_valid(cc, s, u, p.leaf), 1);
    assert_int_equal(crl_checks, first); /* remembered */
    assert_int_equal(cmp_chains_valid(cc, s, junk, p.leaf), 1);
    assert_int_equal(crl_checks, first); /* the chain found is the one remembered */
    assert_int_equal(cmp_chains_verify(cc, s, u, forged, NULL, &code, &depth), 0);
    assert_int_equal(code, X509_V_ERR_CERT_SIGNATURE_FAILURE);
    assert_int_equal(crl_checks, first); /* refused before any CRL */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cmp_chains_verify(cc, s, u, revoked, NULL, &code, &depth), 0);
        assert_int_equal(code, X509_V_ERR_CERT_REVOKED);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cmp_chains_verify(cc, no_mid_crl, u, p.leaf, NULL, &code, &depth), 0);
        assert_int_equal(code, X509_V_ERR_UNABLE_TO_GET_CRL);
    }
    assert_int_equal(cmp_chains_valid(cc, s, u, p.leaf), 1);
    first = crl_checks;
    for (int i = 0; i < 2; i++) /* a CA of the trust named as the sender: its own chain, checked once */
        assert_int_equal(cmp_chains_valid(cc, s, u, p.root), 1);
    assert_int_equal(crl_checks, first + 1);

    X509_free(forged), X509_free(revoked);
    X509_CRL_free(crls[0]), X509_CRL_free(crls[1]);
    sk_X509_free(u), sk_X509_free(junk);
    X509_STORE_free(s), X509_STORE_free(no_mid_crl);
    crl_pki_cleanup(&p);
    cmp_chains_free(cc);
}

/*
 * A chain checked against CRLs is remembered no longer than they are current: past the nextUpdate of one
 * of them it is checked again, and refused as OpenSSL refuses it then.
 */
static void test_crl_checked_until_next_update(void **state)
{
    struct cmp_chains *cc = cmp_chains_new();
    struct crl_pki p;
    X509_CRL *crls[2];
    X509_STORE *s;
    STACK_OF(X509) *u = sk_X509_new_null();
    int code = -1, depth = -1;

    (void)state;
    crl_pki_init(&p, 3);
    crls[0] = make_crl(p.mid, mid_key, 1, 0, 2);
    crls[1] = make_crl(p.root, root_key, 1, 0, 3600);
    s = store_with_crls(p.root, crls, 2);
    sk_X509_push(u, p.mid);
    assert_int_equal(cmp_chains_valid(cc, s, u, p.leaf), 1);
    sleep(3);
    assert_int_equal(cmp_chains_verify(cc, s, u, p.leaf, NULL, &code, &depth), 0);
    assert_int_equal(code, X509_V_ERR_CRL_HAS_EXPIRED);

    X509_CRL_free(crls[0]), X509_CRL_free(crls[1]);
    sk_X509_free(u);
    X509_STORE_free(s);
    crl_pki_cleanup(&p);
    cmp_chains_free(cc);
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
        cmocka_unit_test(test_crl_checked_remembered),
        cmocka_unit_test(test_crl_checked_until_next_update),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
