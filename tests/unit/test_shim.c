/*
 * OpenSSL 3.0 shim: the DER walks against messages built by a real OpenSSL client, and their
 * adversarial twins (truncated, garbage, wrong types, oversized fields).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <openssl/asn1t.h>
#include <openssl/cmp.h>
#include <openssl/core_names.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "gateway/cmp/shim.h"
#include "gateway/cmp/shim_local.h"
#include "base/err.h"
#include "base/x509.h"

static EVP_PKEY *key, *new_key;
static X509 *cert;
static OSSL_CMP_MSG *captured;

static OSSL_CMP_MSG *capture(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    (void)ctx;
    OSSL_CMP_MSG_free(captured);
    captured = OSSL_CMP_MSG_dup(req);
    return NULL; /* the client stops here: we only want its request */
}

static int quiet(const char *f, const char *file, int line, OSSL_CMP_severity l, const char *msg)
{
    (void)f, (void)file, (void)line, (void)l, (void)msg;
    return 1;
}

static X509 *self_signed(EVP_PKEY *k, const char *cn)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_get_subject_name(x);
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, k, EVP_sha256());
    return x;
}

/* An ir from a real client: signed with |cert|, or PBM with reference "ref-1". */
static OSSL_CMP_CTX *client(int pbm)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);

    OSSL_CMP_CTX_set_log_cb(ctx, quiet);
    OSSL_CMP_CTX_set_transfer_cb(ctx, capture);
    if (pbm) {
        OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)"ref-1", 5);
        OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *)"secret-secret", 13);
        OSSL_CMP_CTX_set1_recipient(ctx, X509_get_subject_name(cert));
    } else {
        OSSL_CMP_CTX_set1_cert(ctx, cert);
        OSSL_CMP_CTX_set1_pkey(ctx, key);
    }
    EVP_PKEY_up_ref(new_key);
    OSSL_CMP_CTX_set0_newPkey(ctx, 1, new_key);
    OSSL_CMP_CTX_set1_subjectName(ctx, X509_get_subject_name(cert));
    return ctx;
}

static OSSL_CMP_MSG *make_ir(OSSL_CMP_CTX *ctx)
{
    OSSL_CMP_MSG *m;

    assert_null(OSSL_CMP_exec_IR_ses(ctx));
    assert_non_null(captured);
    m = captured;
    captured = NULL;
    ERR_clear_error();
    return m;
}

static int setup(void **state)
{
    (void)state;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    new_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    cert = self_signed(key, "shim-client");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(key);
    EVP_PKEY_free(new_key);
    X509_free(cert);
    OSSL_CMP_MSG_free(captured);
    return 0;
}

static const OSSL_CRMF_MSG *first_crm(const OSSL_CMP_MSG *m, OSSL_CRMF_MSGS **keep)
{
    /* no getter for the body in 3.0: decode it from the DER of the whole message */
    unsigned char *der = NULL;
    const unsigned char *p;
    int len = i2d_OSSL_CMP_MSG(m, &der);
    long l;
    int tag, cls;

    p = der;
    ASN1_get_object(&p, &l, &tag, &cls, len); /* PKIMessage */
    ASN1_get_object(&p, &l, &tag, &cls, len); /* header */
    p += l;
    ASN1_get_object(&p, &l, &tag, &cls, len); /* [0] ir */
    assert_int_equal(tag, 0);
    *keep = d2i_OSSL_CRMF_MSGS(NULL, &p, l);
    OPENSSL_free(der);
    assert_non_null(*keep);
    return sk_OSSL_CRMF_MSG_value(*keep, 0);
}

static void test_hdr_info(void **state)
{
    OSSL_CMP_CTX *sig = client(0), *pbm = client(1);
    OSSL_CMP_MSG *a = make_ir(sig), *b = make_ir(pbm);
    struct gw_hdr_info h;
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(cert);

    (void)state;
    assert_int_equal(gw_shim_hdr_info(a, &h), 0);
    assert_non_null(h.sender);
    assert_int_equal(X509_NAME_cmp(h.sender, X509_get_subject_name(cert)), 0);
    assert_true(h.has_message_time);
    assert_true(labs((long)(h.message_time - time(NULL))) < 60);
    assert_int_not_equal(h.protection_nid, NID_id_PasswordBasedMAC);
    assert_int_not_equal(h.protection_nid, NID_undef);
    assert_int_equal(h.pbm_iterations, 0);
    assert_int_equal(h.sender_kid_len, (size_t)skid->length);
    assert_memory_equal(h.sender_kid, skid->data, h.sender_kid_len);
    assert_int_equal(h.tid_len, 16);
    assert_int_equal(h.sender_nonce_len, 16);
    gw_shim_hdr_info_cleanup(&h);

    assert_int_equal(gw_shim_hdr_info(b, &h), 0);
    assert_int_equal(h.protection_nid, NID_id_PasswordBasedMAC);
    assert_int_equal(h.pbm_iterations, 500); /* OpenSSL 3.0's fixed count */
    assert_int_equal(h.sender_kid_len, 5);
    assert_memory_equal(h.sender_kid, "ref-1", 5);
    gw_shim_hdr_info_cleanup(&h);
    assert_int_equal(gw_shim_hdr_info(NULL, &h), GW_ERR_INVAL);
    gw_shim_hdr_info_cleanup(NULL);
    OSSL_CMP_MSG_free(a);
    OSSL_CMP_MSG_free(b);
    OSSL_CMP_CTX_free(sig);
    OSSL_CMP_CTX_free(pbm);
}

/* |m| as a request reaches the engine: decoded from its DER. */
static OSSL_CMP_MSG *from_wire(OSSL_CMP_MSG *m)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int len = i2d_OSSL_CMP_MSG(m, &der);
    OSSL_CMP_MSG *out;

    assert_true(len > 0);
    p = der;
    assert_non_null(out = d2i_OSSL_CMP_MSG(NULL, &p, len));
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(m);
    return out;
}

/* Where |m|'s decoded header keeps its field |name| [tag] (-1: untagged). */
static void **hdr_slot(OSSL_CMP_MSG *m, const char *name, long tag)
{
    const ASN1_TEMPLATE *tt = gw_asn1_field(ASN1_ITEM_rptr(OSSL_CMP_PKIHEADER), name, tag, 0);

    assert_non_null(tt);
    return (void **)((char *)OSSL_CMP_MSG_get0_header(m) + tt->offset);
}

/* gw_shim_hdr_info of |m| says what the walk of its encoding says, its sender |m|'s own; returns rc. */
static int same_as_walk(OSSL_CMP_MSG *m)
{
    struct gw_hdr_info in, walked;
    int rc = gw_shim_hdr_info(m, &in);

    assert_int_equal(cmp_hdr_walk(m, &walked), rc);
    assert_null(in.own_sender); /* read in place: not decoded apart */
    assert_int_equal(in.over, walked.over);
    assert_int_equal(in.over_len, walked.over_len);
    assert_int_equal(in.over != GW_HDR_NONE, rc == GW_ERR_LIMIT);
    if (rc == 0) {
        assert_true((in.sender == NULL) == (walked.sender == NULL));
        if (in.sender != NULL)
            assert_int_equal(X509_NAME_cmp(in.sender, walked.sender), 0);
        assert_int_equal(in.has_message_time, walked.has_message_time);
        assert_true(in.message_time == walked.message_time);
        assert_int_equal(in.protection_nid, walked.protection_nid);
        assert_string_equal(in.protection_oid, walked.protection_oid);
        assert_int_equal(in.pbm_iterations, walked.pbm_iterations);
        assert_int_equal(in.protection_hash_bits, walked.protection_hash_bits);
        assert_int_equal(in.sender_kid_len, walked.sender_kid_len);
        assert_memory_equal(in.sender_kid, walked.sender_kid, in.sender_kid_len);
        assert_int_equal(in.sender_nonce_len, walked.sender_nonce_len);
        assert_memory_equal(in.sender_nonce, walked.sender_nonce, in.sender_nonce_len);
        assert_int_equal(in.tid_len, walked.tid_len);
        assert_memory_equal(in.tid, walked.tid, in.tid_len);
    }
    gw_shim_hdr_info_cleanup(&in);
    gw_shim_hdr_info_cleanup(&walked);
    return rc;
}

/* The header of |m| is over the cap of |field|, |len| bytes long, in place and walked alike. */
static void assert_hdr_over(OSSL_CMP_MSG *m, enum gw_hdr_field field, size_t len)
{
    struct gw_hdr_info h;

    assert_int_equal(same_as_walk(m), GW_ERR_LIMIT);
    assert_int_equal(gw_shim_hdr_info(m, &h), GW_ERR_LIMIT);
    assert_int_equal(h.over, field);
    assert_int_equal(h.over_len, len);
    gw_shim_hdr_info_cleanup(&h);
}

/*
 * The header read in place equals its walk, field by field, refusals included: signature and PBM
 * requests, one without messageTime or protection, a sender that is no directoryName, an unreadable
 * messageTime, a senderKID, a transactionID and a senderNonce over their caps (each named, with its
 * length, for the engine's answer).
 */
static void test_hdr_in_place(void **state)
{
    OSSL_CMP_CTX *sig = client(0), *pbm = client(1);
    OSSL_CMP_MSG *m = from_wire(make_ir(sig));
    unsigned char big[GW_MAX_KID_LEN + GW_MAX_TID_LEN + 1];
    ASN1_OCTET_STRING *os;
    GENERAL_NAME *dns, *was;
    void **slot, *kept;

    (void)state;
    memset(big, 't', sizeof(big));
    assert_int_equal(same_as_walk(m), 0);
    slot = hdr_slot(m, "protectionAlg", 1), kept = *slot, *slot = NULL;
    assert_int_equal(same_as_walk(m), 0);
    *slot = kept;
    slot = hdr_slot(m, "messageTime", 0), kept = *slot, *slot = NULL;
    assert_int_equal(same_as_walk(m), 0);
    *slot = kept;
    assert_int_equal(ASN1_STRING_set(kept, "20261305010203Z", -1), 1); /* month 13 */
    assert_int_equal(same_as_walk(m), GW_ERR_INVAL);
    OSSL_CMP_MSG_free(m);

    m = from_wire(make_ir(sig));
    slot = hdr_slot(m, "sender", -1), was = *slot;
    assert_non_null(dns = GENERAL_NAME_new());
    assert_non_null(os = ASN1_IA5STRING_new());
    assert_int_equal(ASN1_STRING_set(os, "device.example", -1), 1);
    GENERAL_NAME_set0_value(dns, GEN_DNS, os);
    *slot = dns;
    assert_int_equal(same_as_walk(m), 0);
    *slot = was;
    GENERAL_NAME_free(dns);
    os = *(ASN1_OCTET_STRING **)hdr_slot(m, "transactionID", 4);
    assert_int_equal(ASN1_OCTET_STRING_set(os, big, GW_MAX_TID_LEN), 1); /* at the cap */
    assert_int_equal(same_as_walk(m), 0);
    assert_int_equal(ASN1_OCTET_STRING_set(os, big, sizeof(big)), 1);
    assert_hdr_over(m, GW_HDR_TID, sizeof(big));
    assert_int_equal(ASN1_OCTET_STRING_set(os, big, GW_MAX_TID_LEN), 1);
    os = *(ASN1_OCTET_STRING **)hdr_slot(m, "senderNonce", 5);
    assert_int_equal(ASN1_OCTET_STRING_set(os, big, GW_MAX_NONCE_LEN), 1); /* at the cap */
    assert_int_equal(same_as_walk(m), 0);
    assert_int_equal(ASN1_OCTET_STRING_set(os, big, GW_MAX_NONCE_LEN + 1), 1);
    assert_hdr_over(m, GW_HDR_SENDER_NONCE, GW_MAX_NONCE_LEN + 1);
    OSSL_CMP_MSG_free(m);

    m = from_wire(make_ir(pbm));
    assert_int_equal(same_as_walk(m), 0);
    os = *(ASN1_OCTET_STRING **)hdr_slot(m, "senderKID", 2);
    assert_int_equal(ASN1_OCTET_STRING_set(os, big, GW_MAX_KID_LEN + 1), 1);
    assert_hdr_over(m, GW_HDR_SENDER_KID, GW_MAX_KID_LEN + 1);
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_CTX_free(sig);
    OSSL_CMP_CTX_free(pbm);
}

/* The slot holds the protectionAlg the message is encoded with; emptied, the header has none. */
static void test_hdr_protection_alg_slot(void **state)
{
    OSSL_CMP_CTX *sig = client(0);
    OSSL_CMP_MSG *m = make_ir(sig);
    X509_ALGOR **slot = gw_shim_hdr_protection_alg_slot(OSSL_CMP_MSG_get0_header(m)), *alg;
    const ASN1_OBJECT *oid;
    struct gw_hdr_info h;

    (void)state;
    assert_non_null(slot);
    assert_non_null(alg = *slot);
    X509_ALGOR_get0(&oid, NULL, NULL, alg);
    assert_int_equal(gw_shim_hdr_info(m, &h), 0);
    assert_int_equal(OBJ_obj2nid(oid), h.protection_nid);
    gw_shim_hdr_info_cleanup(&h);
    *slot = NULL;
    assert_int_equal(gw_shim_hdr_info(m, &h), 0);
    assert_int_equal(h.protection_nid, NID_undef);
    assert_string_equal(h.protection_oid, ""); /* unprotected */
    gw_shim_hdr_info_cleanup(&h);
    *slot = alg; /* back: the signature verifies again */
    assert_int_equal(OSSL_CMP_CTX_set1_srvCert(sig, cert), 1);
    assert_int_equal(OSSL_CMP_validate_msg(sig, m), 1);
    assert_null(gw_shim_hdr_protection_alg_slot(NULL));
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_CTX_free(sig);
}

/* The senderNonce read in place is the one the header walk finds; one that does not fit is refused. */
static void test_sender_nonce(void **state)
{
    OSSL_CMP_CTX *sig = client(0);
    OSSL_CMP_MSG *m = make_ir(sig);
    unsigned char buf[GW_MAX_NONCE_LEN], small[8] = {0};
    struct gw_hdr_info h;
    size_t len = 99;

    (void)state;
    assert_int_equal(gw_shim_hdr_info(m, &h), 0);
    assert_int_equal(gw_shim_sender_nonce(m, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, h.sender_nonce_len);
    assert_int_equal(len, 16);
    assert_memory_equal(buf, h.sender_nonce, len);
    gw_shim_hdr_info_cleanup(&h);
    assert_int_equal(gw_shim_sender_nonce(m, small, sizeof(small), &len), GW_ERR_INVAL);
    assert_int_equal(len, 0);
    assert_int_equal(small[0], 0); /* untouched */
    assert_int_equal(gw_shim_sender_nonce(NULL, buf, sizeof(buf), &len), GW_ERR_INVAL);
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_CTX_free(sig);
}

/* Oversized senderKID (above GW_MAX_KID_LEN): refused, not truncated. */
static void test_hdr_oversized(void **state)
{
    OSSL_CMP_CTX *ctx = client(1);
    unsigned char big[GW_MAX_KID_LEN + 1];
    OSSL_CMP_MSG *m;
    struct gw_hdr_info h;

    (void)state;
    memset(big, 'k', sizeof(big));
    OSSL_CMP_CTX_set1_referenceValue(ctx, big, sizeof(big));
    m = make_ir(ctx);
    assert_int_equal(gw_shim_hdr_info(m, &h), GW_ERR_LIMIT);
    assert_int_equal(h.over, GW_HDR_SENDER_KID);
    assert_null(h.sender);
    OSSL_CMP_CTX_set1_referenceValue(ctx, big, GW_MAX_KID_LEN); /* twin: exactly at the cap */
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_CTX_reinit(ctx);
    m = make_ir(ctx);
    assert_int_equal(gw_shim_hdr_info(m, &h), 0);
    assert_int_equal(h.sender_kid_len, GW_MAX_KID_LEN);
    gw_shim_hdr_info_cleanup(&h);
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_CTX_free(ctx);
}

static void test_template(void **state)
{
    OSSL_CMP_CTX *ctx = client(0);
    OSSL_CMP_MSG *m = make_ir(ctx);
    OSSL_CRMF_MSGS *msgs = NULL;
    const OSSL_CRMF_MSG *crm = first_crm(m, &msgs);
    EVP_PKEY *pk = gw_shim_tmpl_get1_pubkey(crm);
    time_t nb = 1, na = 1;

    (void)state;
    assert_non_null(pk);
    assert_int_equal(EVP_PKEY_eq(pk, new_key), 1);
    assert_int_equal(EVP_PKEY_eq(pk, key), 0);
    assert_int_equal(gw_shim_tmpl_validity(crm, &nb, &na), 0);
    assert_true(nb == 0 && na == 0); /* not requested */
    assert_int_equal(gw_shim_popo_type(crm), OSSL_CRMF_POPO_SIGNATURE);
    assert_int_equal(gw_shim_popo_signs_input(crm), 0); /* over the certReq (test_errors: one that is not) */
    assert_null(gw_shim_tmpl_get1_pubkey(NULL));
    assert_int_equal(gw_shim_popo_type(NULL), -1);
    assert_int_equal(gw_shim_popo_signs_input(NULL), 0);
    assert_int_equal(gw_shim_tmpl_validity(NULL, &nb, &na), GW_ERR_INVAL);
    EVP_PKEY_free(pk);
    sk_OSSL_CRMF_MSG_pop_free(msgs, OSSL_CRMF_MSG_free);
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_CTX_free(ctx);
}

/* The requested key read in place from the bytes received, or from the message encoded again. */
static void test_requested_key(void **state)
{
    OSSL_CMP_CTX *ctx = client(0);
    OSSL_CMP_MSG *m = make_ir(ctx);
    unsigned char *der = NULL;
    int len = i2d_OSSL_CMP_MSG(m, &der), has = -1;
    EVP_PKEY *a = gw_shim_get1_requested_key(m, der, (size_t)len, &has), *b;

    (void)state;
    assert_int_equal(has, 1);
    assert_non_null(a);
    assert_int_equal(EVP_PKEY_eq(a, new_key), 1);
    has = -1;
    b = gw_shim_get1_requested_key(m, NULL, 0, &has); /* no bytes: encoded again */
    assert_int_equal(has, 1);
    assert_int_equal(EVP_PKEY_eq(b, new_key), 1);
    EVP_PKEY_free(b);
    /* bytes that are not one DER SEQUENCE (a trailing byte): the message's own encoding is read */
    der = OPENSSL_realloc(der, (size_t)len + 1);
    der[len] = 0;
    has = -1;
    b = gw_shim_get1_requested_key(m, der, (size_t)len + 1, &has);
    assert_int_equal(has, 1);
    assert_int_equal(EVP_PKEY_eq(b, new_key), 1);
    EVP_PKEY_free(b);
    EVP_PKEY_free(a);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_CTX_free(ctx);
}

/* The requested key of message |der| as OpenSSL decodes it, read twice: the same object both times
 * (the one OpenSSL decoded, not a decode of its own), equal to |want|. */
static void decoded_key_is(const unsigned char *der, int len, const EVP_PKEY *want)
{
    const unsigned char *p = der;
    OSSL_CMP_MSG *m = d2i_OSSL_CMP_MSG(NULL, &p, len);
    EVP_PKEY *a, *b;
    int has = -1;

    assert_non_null(m);
    assert_non_null(a = gw_shim_get1_requested_key(m, der, (size_t)len, &has));
    assert_int_equal(has, 1);
    assert_non_null(b = gw_shim_get1_requested_key(m, der, (size_t)len, &has));
    assert_ptr_equal(a, b);
    assert_int_equal(EVP_PKEY_eq(a, want), 1);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    OSSL_CMP_MSG_free(m);
}

static void test_requested_key_decoded(void **state)
{
    OSSL_CMP_CTX *ctx = client(0);
    OSSL_CMP_MSG *m = make_ir(ctx);
    X509_REQ *csr = X509_REQ_new();
    unsigned char *der = NULL;
    int len = i2d_OSSL_CMP_MSG(m, &der);

    (void)state;
    decoded_key_is(der, len, new_key);
    OPENSSL_free(der);
    der = NULL;
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_CTX_free(ctx);

    ctx = client(0);
    assert_int_equal(X509_REQ_set_pubkey(csr, new_key), 1);
    assert_int_equal(X509_REQ_set_subject_name(csr, X509_get_subject_name(cert)), 1);
    assert_true(X509_REQ_sign(csr, new_key, EVP_sha256()) > 0);
    assert_int_equal(OSSL_CMP_CTX_set1_p10CSR(ctx, csr), 1);
    assert_null(OSSL_CMP_exec_P10CR_ses(ctx));
    assert_non_null(m = captured);
    captured = NULL;
    ERR_clear_error();
    assert_int_equal(OSSL_CMP_MSG_get_bodytype(m), GW_CMP_BODY_P10CR);
    len = i2d_OSSL_CMP_MSG(m, &der);
    decoded_key_is(der, len, new_key);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(m);
    X509_REQ_free(csr);
    OSSL_CMP_CTX_free(ctx);
}

static void test_validity(void **state)
{
    OSSL_CMP_CTX *ctx = client(0);
    OSSL_CMP_MSG *m;
    OSSL_CRMF_MSGS *msgs = NULL;
    const OSSL_CRMF_MSG *crm;
    time_t nb, na, before = time(NULL);

    (void)state;
    OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_VALIDITY_DAYS, 10);
    m = make_ir(ctx);
    crm = first_crm(m, &msgs);
    assert_int_equal(gw_shim_tmpl_validity(crm, &nb, &na), 0);
    assert_true(nb >= before - 5 && nb <= time(NULL) + 5);
    assert_true(na - nb == 10 * 24 * 3600);
    sk_OSSL_CRMF_MSG_pop_free(msgs, OSSL_CRMF_MSG_free);
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_CTX_free(ctx);
}

/* An OpenSSL-built error (a server with no trust refuses the ir), rewritten, validated by the client. */
static void test_error_set_status(void **state)
{
    OSSL_CMP_CTX *cl = client(0);
    OSSL_CMP_MSG *req = make_ir(cl), *rsp;
    OSSL_CMP_SRV_CTX *srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);
    OSSL_CMP_CTX *sctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(srv);
    EVP_PKEY *skey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *scert = self_signed(skey, "shim-server");
    OSSL_CMP_PKISI *si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection,
                                                 1 << OSSL_CMP_PKIFAILUREINFO_badTime, "clock is off");
    OSSL_CMP_CTX *check = OSSL_CMP_CTX_new(NULL, NULL);
    struct gw_hdr_info h;
    char buf[512];

    (void)state;
    OSSL_CMP_CTX_set_log_cb(sctx, quiet);
    OSSL_CMP_CTX_set1_cert(sctx, scert);
    OSSL_CMP_CTX_set1_pkey(sctx, skey);
    rsp = OSSL_CMP_SRV_process_request(srv, req);
    assert_non_null(rsp);
    assert_int_equal(OSSL_CMP_MSG_get_bodytype(rsp), GW_CMP_BODY_ERROR);
    assert_true(gw_shim_error_code(rsp) > 0); /* OpenSSL's packed code */
    assert_int_equal(gw_shim_hdr_info(req, &h), 0);
    /* twins first: wrong body, NULL status, oversized tid */
    assert_int_equal(gw_shim_error_set_status(sctx, &req, si, h.tid, h.tid_len), GW_ERR_INVAL);
    assert_int_equal(gw_shim_error_set_status(sctx, &rsp, NULL, h.tid, h.tid_len), GW_ERR_INVAL);
    assert_int_equal(gw_shim_error_set_status(sctx, &rsp, si, h.tid, GW_MAX_TID_LEN + 1), GW_ERR_INVAL);
    assert_int_equal(gw_shim_error_set_status(sctx, &rsp, si, h.tid, h.tid_len), 0);
    assert_int_equal(gw_shim_error_code(rsp), -1); /* OpenSSL internals gone */
    assert_int_equal(gw_shim_error_code(req), -1);
    /* the rewritten message validates against the server certificate and keeps the tid */
    OSSL_CMP_CTX_set_log_cb(check, quiet);
    OSSL_CMP_CTX_set1_srvCert(check, scert);
    assert_int_equal(OSSL_CMP_validate_msg(check, rsp), 1);
    assert_int_equal(ASN1_OCTET_STRING_cmp(OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(rsp)),
                                           OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(req))),
                     0);
    assert_int_equal(gw_shim_pkisi_status(si), OSSL_CMP_PKISTATUS_rejection);
    assert_int_equal(gw_shim_pkisi_status(NULL), -1);
    assert_non_null(OSSL_CMP_snprint_PKIStatusInfo(si, buf, sizeof(buf)));
    gw_shim_hdr_info_cleanup(&h);
    OSSL_CMP_PKISI_free(si);
    OSSL_CMP_MSG_free(rsp);
    OSSL_CMP_MSG_free(req);
    OSSL_CMP_SRV_CTX_free(srv);
    OSSL_CMP_CTX_free(check);
    OSSL_CMP_CTX_free(cl);
    X509_free(scert);
    EVP_PKEY_free(skey);
    ERR_clear_error();
}

/* A signed ir carrying |n| extra self-signed certificates (OpenSSL leaves a self-signed signer out). */
static OSSL_CMP_MSG *ir_with_extra(int n, STACK_OF(X509) **sent)
{
    OSSL_CMP_CTX *cl = client(0);
    OSSL_CMP_MSG *req;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char cn[32];

    *sent = sk_X509_new_null();
    for (int i = 0; i < n; i++) {
        snprintf(cn, sizeof(cn), "extra-%d", i);
        sk_X509_push(*sent, self_signed(k, cn));
    }
    OSSL_CMP_CTX_set1_extraCertsOut(cl, *sent);
    req = make_ir(cl);
    EVP_PKEY_free(k);
    OSSL_CMP_CTX_free(cl);
    return req;
}

/* extraCerts come back in order, from the bytes received or the message encoded again, parsed once
 * (a second read hands out the same objects); absent gives an empty stack; the count is capped. */
static void test_get1_extra_certs(void **state)
{
    STACK_OF(X509) *sent = NULL, *got, *again;
    OSSL_CMP_CTX *cl = client(1); /* PBM: no extraCerts */
    OSSL_CMP_MSG *req = make_ir(cl);
    unsigned char *der = NULL;
    int len;

    (void)state;
    assert_non_null(got = gw_shim_get1_extra_certs(req, NULL, 0));
    assert_int_equal(sk_X509_num(got), 0);
    sk_X509_free(got);
    OSSL_CMP_MSG_free(req);
    OSSL_CMP_CTX_free(cl);
    assert_null(gw_shim_get1_extra_certs(NULL, NULL, 0));

    req = ir_with_extra(GW_MAX_EXTRA_CERTS, &sent);
    len = i2d_OSSL_CMP_MSG(req, &der);
    assert_non_null(got = gw_shim_get1_extra_certs(req, der, (size_t)len));
    assert_non_null(again = gw_shim_get1_extra_certs(req, NULL, 0));
    assert_int_equal(sk_X509_num(got), GW_MAX_EXTRA_CERTS);
    for (int i = 0; i < GW_MAX_EXTRA_CERTS; i++) {
        assert_int_equal(X509_cmp(sk_X509_value(got, i), sk_X509_value(sent, i)), 0);
        assert_int_equal(X509_cmp(sk_X509_value(again, i), sk_X509_value(sent, i)), 0);
    }
    sk_X509_pop_free(got, X509_free);
    sk_X509_pop_free(again, X509_free);
    sk_X509_pop_free(sent, X509_free);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(req);

    /* one certificate (16 may share a slot of the direct-mapped cache): the same object twice */
    req = ir_with_extra(1, &sent);
    assert_non_null(got = gw_shim_get1_extra_certs(req, NULL, 0));
    assert_non_null(again = gw_shim_get1_extra_certs(req, NULL, 0));
    assert_ptr_equal(sk_X509_value(got, 0), sk_X509_value(again, 0));
    sk_X509_pop_free(got, X509_free);
    sk_X509_pop_free(again, X509_free);
    sk_X509_pop_free(sent, X509_free);
    OSSL_CMP_MSG_free(req);

    req = ir_with_extra(GW_MAX_EXTRA_CERTS + 1, &sent);
    assert_null(gw_shim_get1_extra_certs(req, NULL, 0));
    sk_X509_pop_free(sent, X509_free);
    OSSL_CMP_MSG_free(req);
}

/* Asserts that keys |a| and |b| are equal, EC ones with the same point form (as they encode again). */
static void same_key(const EVP_PKEY *a, const EVP_PKEY *b)
{
    char fa[32] = "", fb[32] = "";

    assert_int_equal(EVP_PKEY_eq(a, b), 1);
    if (EVP_PKEY_is_a(a, "EC")) {
        assert_int_equal(EVP_PKEY_get_utf8_string_param(a, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, fa,
                                                        sizeof(fa), NULL),
                         1);
        assert_int_equal(EVP_PKEY_get_utf8_string_param(b, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, fb,
                                                        sizeof(fb), NULL),
                         1);
        assert_string_equal(fa, fb);
    }
}

/* The first template's keys of |a| and |b|, if they are an ir: both absent, undecodable, or equal. */
static void same_template_key(const OSSL_CMP_MSG *a, const OSSL_CMP_MSG *b)
{
    EVP_PKEY *ka = NULL, *kb = NULL;
    int has_a, has_b;

    if (OSSL_CMP_MSG_get_bodytype(a) != GW_CMP_BODY_IR)
        return;
    ka = gw_shim_get1_requested_key(a, NULL, 0, &has_a);
    kb = gw_shim_get1_requested_key(b, NULL, 0, &has_b);
    assert_int_equal(has_a, has_b);
    assert_int_equal(ka == NULL, kb == NULL);
    if (ka != NULL)
        same_key(ka, kb);
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
}

/* gw_shim_d2i_msg and d2i_OSSL_CMP_MSG on |der|: both refuse it, or both decode the same message from
 * the same bytes. 1 if they decoded it. */
static int same_as_d2i(const unsigned char *der, long len)
{
    const unsigned char *p = der, *q = der;
    OSSL_CMP_MSG *a = d2i_OSSL_CMP_MSG(NULL, &p, len), *b = gw_shim_d2i_msg(&q, len);
    unsigned char *ea = NULL, *eb = NULL;
    int la, lb;

    assert_int_equal(a == NULL, b == NULL);
    if (a != NULL) {
        assert_ptr_equal(p, q);
        same_template_key(a, b);
        la = i2d_OSSL_CMP_MSG(a, &ea);
        lb = i2d_OSSL_CMP_MSG(b, &eb);
        assert_true(la > 0);
        assert_int_equal(la, lb);
        assert_memory_equal(ea, eb, (size_t)la);
    }
    OPENSSL_free(ea);
    OPENSSL_free(eb);
    OSSL_CMP_MSG_free(a);
    OSSL_CMP_MSG_free(b);
    ERR_clear_error();
    return a != NULL;
}

/* |out| gets SEQUENCE { the elements of PKIMessage |der| in the order |order| names them }. */
static long reorder(const unsigned char *der, long len, const int *order, int n, unsigned char *out)
{
    const unsigned char *p = der, *el[4];
    long el_len[4], inner = 0, hl, plen;
    int tag, cls, count = 0;
    unsigned char *w = out;

    assert_int_equal(ASN1_get_object(&p, &plen, &tag, &cls, len) & 0x80, 0);
    while (p < der + len && count < 4) {
        const unsigned char *start = p;
        assert_int_equal(ASN1_get_object(&p, &plen, &tag, &cls, der + len - p) & 0x80, 0);
        p += plen;
        el[count] = start;
        el_len[count++] = p - start;
    }
    for (int i = 0; i < n; i++)
        inner += el_len[order[i]];
    ASN1_put_object(&w, 1, inner, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    hl = w - out;
    for (int i = 0; i < n; i++) {
        memcpy(w, el[order[i]], (size_t)el_len[order[i]]);
        w += el_len[order[i]];
    }
    return hl + inner;
}

/* The decode that takes extraCerts from the certificates parsed lately accepts and refuses exactly
 * what OpenSSL's own does: messages with and without extraCerts, past the cap, out of order, and
 * every truncation and bit flip of one. */
static void test_d2i_msg(void **state)
{
    STACK_OF(X509) *sent = NULL;
    OSSL_CMP_CTX *cl = client(1);
    OSSL_CMP_MSG *req = make_ir(cl);
    unsigned char *der = NULL, out[8192];
    int len = i2d_OSSL_CMP_MSG(req, &der);
    const int no_protection[] = {0, 1, 3}, swapped[] = {0, 1, 3, 2}, twice[] = {0, 1, 3, 3};

    (void)state;
    assert_true(same_as_d2i(der, len)); /* PBM: no extraCerts */
    OPENSSL_free(der);
    der = NULL;
    OSSL_CMP_MSG_free(req);
    OSSL_CMP_CTX_free(cl);

    req = ir_with_extra(GW_MAX_EXTRA_CERTS + 1, &sent); /* past the cap: decoded the plain way */
    len = i2d_OSSL_CMP_MSG(req, &der);
    assert_true(same_as_d2i(der, len));
    sk_X509_pop_free(sent, X509_free);
    OPENSSL_free(der);
    der = NULL;
    OSSL_CMP_MSG_free(req);

    req = ir_with_extra(2, &sent);
    len = i2d_OSSL_CMP_MSG(req, &der);
    assert_true((size_t)len <= sizeof(out) / 2);
    assert_true(same_as_d2i(der, len));
    assert_true(same_as_d2i(der, len)); /* now from the certificates parsed lately */
    assert_true(same_as_d2i(out, reorder(der, len, no_protection, 3, out)));
    assert_false(same_as_d2i(out, reorder(der, len, swapped, 4, out)));
    assert_false(same_as_d2i(out, reorder(der, len, twice, 4, out)));
    memcpy(out, der, (size_t)len); /* a trailing byte: both stop before it (the caller refuses it) */
    out[len] = 0;
    assert_true(same_as_d2i(out, len + 1));
    for (int cut = 0; cut < len; cut++)
        assert_false(same_as_d2i(der, cut));
    for (int i = 0; i < len; i++) { /* bit flips, the extraCerts' among them */
        der[i] ^= 0x04;
        (void)same_as_d2i(der, len);
        der[i] ^= 0x04;
    }
    sk_X509_pop_free(sent, X509_free);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(req);
}

/* |m| (an ir) with its one CertReqMsg |n| times in its body, all else as it was (its protection too). */
static OSSL_CMP_MSG *ir_times(const OSSL_CMP_MSG *m, int n)
{
    unsigned char *der = NULL, *out, *q;
    const unsigned char *p, *end, *in;
    struct cmp_tlv hdr, body, seq;
    int len = i2d_OSSL_CMP_MSG(m, &der), seq_len, body_len, total;
    OSSL_CMP_MSG *ret;

    assert_true(cmp_der_open_seq(der, len, &p, &end) && cmp_tlv_next(&p, end, &hdr) &&
                cmp_tlv_next(&p, end, &body));
    in = body.cont;
    assert_true(cmp_tlv_next(&in, body.cont + body.len, &seq));
    seq_len = n * (int)seq.len;
    body_len = ASN1_object_size(1, seq_len, V_ASN1_SEQUENCE);
    total = ASN1_object_size(1, (int)hdr.total + ASN1_object_size(1, body_len, 0) + (int)(end - p),
                             V_ASN1_SEQUENCE);
    q = out = OPENSSL_malloc(total);
    assert_non_null(out);
    ASN1_put_object(&q, 1, (int)hdr.total + ASN1_object_size(1, body_len, 0) + (int)(end - p),
                    V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(q, hdr.p, hdr.total);
    q += hdr.total;
    ASN1_put_object(&q, 1, body_len, 0, V_ASN1_CONTEXT_SPECIFIC);
    ASN1_put_object(&q, 1, seq_len, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    for (int i = 0; i < n; i++, q += seq.len)
        memcpy(q, seq.cont, seq.len);
    memcpy(q, p, end - p);
    in = out;
    ret = d2i_OSSL_CMP_MSG(NULL, &in, total);
    OPENSSL_free(out);
    OPENSSL_free(der);
    assert_non_null(ret);
    return ret;
}

/* The entries of a body's SEQUENCE OF: one, several, and nothing to count. */
static void test_body_count(void **state)
{
    OSSL_CMP_CTX *cl = client(0);
    OSSL_CMP_MSG *req = make_ir(cl);

    (void)state;
    assert_int_equal(gw_shim_body_count(req, NULL, 0), 1);
    for (int n = 2; n <= 3; n++) {
        OSSL_CMP_MSG *m = ir_times(req, n);
        unsigned char *der = NULL;
        int len = i2d_OSSL_CMP_MSG(m, &der);

        assert_int_equal(gw_shim_body_count(m, NULL, 0), n);
        assert_int_equal(gw_shim_body_count(m, der, (size_t)len), n); /* the bytes it came from */
        assert_int_equal(gw_shim_body_count(m, der, (size_t)len - 1), -1);
        OPENSSL_free(der);
        OSSL_CMP_MSG_free(m);
    }
    assert_int_equal(gw_shim_body_count(NULL, NULL, 0), -1);
    OSSL_CMP_MSG_free(req);
    OSSL_CMP_CTX_free(cl);
}

/* The keys gw_shim_der_count finds in |der|, or GW_ERR_INVAL. */
static int keys_of(const unsigned char *der, size_t len)
{
    int keys = -1, elements = -1, rc = gw_shim_der_count(der, len, &keys, &elements);

    return rc != 0 ? rc : keys;
}

/* SubjectPublicKeyInfo |spki| (|len| bytes) with its BIT STRING in one piece of a constructed one (BER),
 * OPENSSL_malloc'ed into *out_len bytes. */
static unsigned char *spki_in_pieces(const unsigned char *spki, int len, int *out_len)
{
    const unsigned char *cont = spki, *alg_end;
    unsigned char *out, *w;
    long n;
    int tag, cls, bits, inner;

    assert_int_equal(ASN1_get_object(&cont, &n, &tag, &cls, len), V_ASN1_CONSTRUCTED);
    alg_end = cont;
    assert_int_equal(ASN1_get_object(&alg_end, &n, &tag, &cls, spki + len - cont), V_ASN1_CONSTRUCTED);
    alg_end += n;
    bits = (int)(spki + len - alg_end);
    inner = (int)(alg_end - cont) + ASN1_object_size(1, bits, V_ASN1_BIT_STRING);
    *out_len = ASN1_object_size(1, inner, V_ASN1_SEQUENCE);
    assert_non_null(w = out = OPENSSL_malloc((size_t)*out_len));
    ASN1_put_object(&w, 1, inner, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(w, cont, (size_t)(alg_end - cont));
    w += alg_end - cont;
    ASN1_put_object(&w, 1, bits, V_ASN1_BIT_STRING, V_ASN1_UNIVERSAL);
    memcpy(w, alg_end, (size_t)bits);
    return out;
}

/* The keys and elements a request holds are counted before OpenSSL decodes it: each certificate of
 * extraCerts, the template's and its POPO's; a message with an indefinite length (which would hide them) or
 * truncated is not DER; a key whose BIT STRING comes in pieces (BER) counts; a key nested below
 * GW_DER_SCAN_DEPTH levels (inside an ANY, which OpenSSL leaves undecoded) is not looked for. */
static void test_der_keys(void **state)
{
    STACK_OF(X509) *sent = NULL;
    OSSL_CMP_MSG *req = ir_with_extra(0, &sent);
    unsigned char *der = NULL, *ber, *deep, *q, *pieces;
    int len = i2d_OSSL_CMP_MSG(req, &der), base = keys_of(der, (size_t)len), spki_len, pieces_len;
    const int levels = GW_DER_SCAN_DEPTH + 1;
    EVP_PKEY *pub;

    (void)state;
    assert_true(base >= 2); /* the template's key, its POPO (and the signer's certificate) */
    /* the same message with an indefinite outer length, and end-of-contents after it */
    assert_non_null(ber = OPENSSL_malloc((size_t)len + 4));
    q = der;
    assert_int_equal(ASN1_get_object((const unsigned char **)&q, &(long){0}, &(int){0}, &(int){0}, len),
                     0x20);
    ber[0] = 0x30, ber[1] = 0x80;
    memcpy(ber + 2, q, (size_t)(der + len - q));
    memset(ber + 2 + (der + len - q), 0, 2);
    assert_int_equal(keys_of(ber, (size_t)(der + len - q) + 4), GW_ERR_INVAL);
    assert_int_equal(keys_of(der, (size_t)len - 1), GW_ERR_INVAL);
    assert_int_equal(keys_of(der, 0), GW_ERR_INVAL);
    OPENSSL_free(ber);
    sk_X509_pop_free(sent, X509_free);
    OPENSSL_free(der);
    der = NULL;
    OSSL_CMP_MSG_free(req);

    for (int n = 1; n <= GW_MAX_MSG_KEYS; n += GW_MAX_MSG_KEYS - 1) {
        req = ir_with_extra(n, &sent);
        len = i2d_OSSL_CMP_MSG(req, &der);
        assert_int_equal(keys_of(der, (size_t)len), base + n);
        sk_X509_pop_free(sent, X509_free);
        OPENSSL_free(der);
        der = NULL;
        OSSL_CMP_MSG_free(req);
    }

    /* a SubjectPublicKeyInfo whose key is in a BIT STRING in pieces: OpenSSL decodes it all the same */
    spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    pieces = spki_in_pieces(der, spki_len, &pieces_len);
    q = pieces;
    assert_non_null(pub = d2i_PUBKEY(NULL, (const unsigned char **)&q, pieces_len));
    assert_int_equal(EVP_PKEY_eq(pub, X509_get0_pubkey(cert)), 1);
    assert_int_equal(keys_of(der, (size_t)spki_len), 1);
    assert_int_equal(keys_of(pieces, (size_t)pieces_len), 1);
    EVP_PKEY_free(pub);
    OPENSSL_free(pieces);
    /* one SubjectPublicKeyInfo at the deepest level looked into, then one level further down */
    for (int depth = GW_DER_SCAN_DEPTH; depth <= levels; depth++) {
        assert_non_null(deep = OPENSSL_malloc((size_t)spki_len + 4 * (size_t)depth));
        q = deep + 4 * depth;
        memcpy(q, der, (size_t)spki_len);
        for (int i = 0, inner = spki_len; i < depth; i++, inner += 4) {
            q -= 4;
            q[0] = 0x30, q[1] = 0x82, q[2] = (unsigned char)(inner >> 8), q[3] = (unsigned char)inner;
        }
        assert_int_equal(keys_of(deep, (size_t)spki_len + 4 * (size_t)depth),
                         depth == GW_DER_SCAN_DEPTH ? 1 : 0);
        OPENSSL_free(deep);
    }
    OPENSSL_free(der);
    /* its elements: a SEQUENCE of 100 NULLs is 101, and one element of nothing else, whatever follows */
    assert_non_null(deep = OPENSSL_zalloc(3 + 200 + 1));
    deep[0] = 0x30, deep[1] = 0x81, deep[2] = 200;
    for (int i = 0; i < 100; i++)
        deep[3 + 2 * i] = 0x05;
    assert_int_equal(gw_shim_der_count(deep, 203, &(int){0}, &spki_len), 0);
    assert_int_equal(spki_len, 101);
    assert_int_equal(gw_shim_der_count(deep, 204, &(int){0}, &spki_len), 0);
    assert_int_equal(spki_len, 101);
    deep[1] = 0x80; /* indefinite */
    assert_int_equal(gw_shim_der_count(deep, 204, &(int){0}, &spki_len), GW_ERR_INVAL);
    OPENSSL_free(deep);
}

/* The DER of |msg| with the SEQUENCE OF inside its extraCerts ([1]) sent primitive, into *len bytes. */
static unsigned char *extra_certs_primitive(const OSSL_CMP_MSG *msg, int *len)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    long n;
    int tag, cls;

    assert_true((*len = i2d_OSSL_CMP_MSG(msg, &der)) > 0);
    p = der;
    assert_int_equal(ASN1_get_object(&p, &n, &tag, &cls, *len), V_ASN1_CONSTRUCTED);
    for (end = p + n; p < end; p += n) {
        assert_int_equal(ASN1_get_object(&p, &n, &tag, &cls, end - p) & 0x80, 0);
        if (cls == V_ASN1_CONTEXT_SPECIFIC && tag == 1) {
            assert_int_equal(*p, 0x30);
            der[p - der] = V_ASN1_SEQUENCE; /* the constructed bit off */
            return der;
        }
    }
    fail_msg("no extraCerts");
    return NULL;
}

/* A SEQUENCE or SET must be constructed (X.690 §8.9.1), but OpenSSL decodes a SEQUENCE OF sent primitive:
 * extraCerts so, whose certificates the walk would not see, are not DER; under an IMPLICIT tag such a
 * primitive counts as many elements as its contents could hold; a primitive string counts once. */
static void test_der_primitive(void **state)
{
    STACK_OF(X509) *sent = NULL;
    OSSL_CMP_MSG *req = ir_with_extra(3, &sent), *decoded;
    unsigned char *der;
    const unsigned char *p;
    /* SEQUENCE { [9] IMPLICIT, primitive, of SEQUENCE { OID, OCTET STRING } }, its twin as an OCTET STRING */
    unsigned char implicit[] = {0x30, 0x0a, 0x89, 0x08, 0x30, 0x06, 0x06, 0x01, 0x2a, 0x04, 0x01, 0x00};
    unsigned char octets[] = {0x30, 0x0a, 0x04, 0x08, 0x30, 0x06, 0x06, 0x01, 0x2a, 0x04, 0x01, 0x00};
    int len, keys, elements;

    (void)state;
    der = extra_certs_primitive(req, &len);
    p = der;
    assert_non_null(decoded = d2i_OSSL_CMP_MSG(NULL, &p, len)); /* what OpenSSL takes */
    assert_int_equal(gw_shim_der_count(der, (size_t)len, &keys, &elements), GW_ERR_INVAL);
    assert_int_equal(gw_shim_der_count(implicit, sizeof(implicit), &keys, &elements), 0);
    assert_int_equal(elements, 2 + 8 / 2);
    assert_int_equal(gw_shim_der_count(octets, sizeof(octets), &keys, &elements), 0);
    assert_int_equal(elements, 2);
    octets[4] = V_ASN1_SEQUENCE; /* inside the OCTET STRING: not looked into */
    assert_int_equal(gw_shim_der_count(octets, sizeof(octets), &keys, &elements), 0);
    octets[2] = V_ASN1_SEQUENCE;
    assert_int_equal(gw_shim_der_count(octets, sizeof(octets), &keys, &elements), GW_ERR_INVAL);
    OSSL_CMP_MSG_free(decoded);
    OPENSSL_free(der);
    sk_X509_pop_free(sent, X509_free);
    OSSL_CMP_MSG_free(req);
}

/* DER (or BER) the deepest message below is built of. */
struct der {
    unsigned char *p;
    int len;
};

/* A copy of the |len| bytes at |p|. */
static struct der der_of(const void *p, int len)
{
    struct der out = {OPENSSL_malloc((size_t)len + 1), len};

    assert_non_null(out.p);
    memcpy(out.p, p, (size_t)len);
    return out;
}

/* |in| (freed) as the contents of a TLV of one-byte tag |tag|, its length in DER. */
static struct der der_wrap(unsigned char tag, struct der in)
{
    int hdr = in.len < 0x80 ? 2 : in.len < 0x100 ? 3 : 4;
    struct der out = {OPENSSL_malloc((size_t)(hdr + in.len)), hdr + in.len};

    assert_non_null(out.p);
    assert_true(in.len < 0x10000);
    out.p[0] = tag;
    if (hdr == 2)
        out.p[1] = (unsigned char)in.len;
    else if (hdr == 3)
        out.p[1] = 0x81, out.p[2] = (unsigned char)in.len;
    else
        out.p[1] = 0x82, out.p[2] = (unsigned char)(in.len >> 8), out.p[3] = (unsigned char)in.len;
    memcpy(out.p + hdr, in.p, (size_t)in.len);
    OPENSSL_free(in.p);
    return out;
}

/* |a| then |b| (both freed). */
static struct der der_cat(struct der a, struct der b)
{
    struct der out = {OPENSSL_realloc(a.p, (size_t)(a.len + b.len) + 1), a.len + b.len};

    assert_non_null(out.p);
    memcpy(out.p + a.len, b.p, (size_t)b.len);
    OPENSSL_free(b.p);
    return out;
}

/* A Name of one CN whose UTF8String comes in |pieces| constructed layers (BER), the last one primitive. */
static struct der name_in_pieces(int pieces)
{
    static const unsigned char cn[] = {0x06, 0x03, 0x55, 0x04, 0x03};
    struct der s = der_wrap(V_ASN1_UTF8STRING, der_of("deep", 4));

    for (int i = 0; i < pieces; i++)
        s = der_wrap(V_ASN1_UTF8STRING | V_ASN1_CONSTRUCTED, s);
    return der_wrap(0x30, der_wrap(0x31, der_wrap(0x30, der_cat(der_of(cn, sizeof(cn)), s))));
}

/* A PKIMessage: pvno 2, sender and recipient the empty directoryName, header fields |more| (freed, may be
 * empty), body |body| (freed). */
static struct der pkimessage(struct der more, struct der body)
{
    static const unsigned char start[] = {0x02, 0x01, 0x02, 0xa4, 0x02, 0x30, 0x00, 0xa4, 0x02, 0x30, 0x00};

    return der_wrap(0x30, der_cat(der_wrap(0x30, der_cat(der_of(start, sizeof(start)), more)), body));
}

/* An rp [12] (RFC 9810 §5.3.10) revoking one certificate, its CertId's issuer |issuer| (freed). */
static struct der rp_of(struct der issuer)
{
    static const unsigned char status[] = {0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00}; /* accepted */
    static const unsigned char serial[] = {0x02, 0x01, 0x01};
    /* revCerts [0] SEQUENCE OF CertId { issuer GeneralName (directoryName [4]), serialNumber } */
    struct der cert_id = der_wrap(0x30, der_cat(der_wrap(0xa4, issuer), der_of(serial, sizeof(serial))));

    return der_wrap(0xac, der_wrap(0x30, der_cat(der_of(status, sizeof(status)),
                                                 der_wrap(0xa0, der_wrap(0x30, cert_id)))));
}

/* |msgs| PKIMessages, each but the first in the generalInfo origPKIMessage (id-it 15, RFC 9810 §5.1.1.3)
 * of a pkiconf before it, the last an rp whose CertId names an issuer in name_in_pieces(|pieces|). */
static struct der nested_msgs(int msgs, int pieces)
{
    static const unsigned char orig[] = {0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x04, 0x0f};
    static const unsigned char pkiconf[] = {0xb3, 0x02, 0x05, 0x00};
    struct der m = pkimessage(der_of("", 0), rp_of(name_in_pieces(pieces))), itav;

    for (int i = 1; i < msgs; i++) {
        itav = der_wrap(0x30, der_cat(der_of(orig, sizeof(orig)), der_wrap(0x30, m)));
        m = pkimessage(der_wrap(0xa8, der_wrap(0x30, itav)), der_of(pkiconf, sizeof(pkiconf)));
    }
    return m;
}

/* The deepest level among the elements of [p, end), theirs |depth|, each looked into (counted in *n). */
static int deepest(const unsigned char *p, const unsigned char *end, int depth, int *n)
{
    int max = -1;

    while (p < end) {
        long len;
        int tag, cls, inner, r = ASN1_get_object(&p, &len, &tag, &cls, end - p);

        assert_int_equal(r & 0x81, 0); /* no error, no indefinite length */
        (*n)++;
        max = depth > max ? depth : max;
        if ((r & V_ASN1_CONSTRUCTED) != 0 && (inner = deepest(p, p + len, depth + 1, n)) > max)
            max = inner;
        p += len;
    }
    return max;
}

/*
 * The pre-scan looks GW_DER_SCAN_DEPTH levels down (base/limits.h): the deepest element OpenSSL 3.0
 * decodes in a PKIMessage is at level 52, in the 7th PKIMessage of a generalInfo origPKIMessage chain, an
 * rp whose CertId's issuer has its string in pieces six layers deep (ASN1_MAX_STRING_NEST). That message
 * decodes and the pre-scan counts each of its elements; a layer more, or an 8th PKIMessage (past the 30
 * items of ASN1_MAX_CONSTRUCTED_NEST), OpenSSL refuses. A cap under 52, or an OpenSSL that decodes
 * deeper, fails here.
 */
static void test_der_deepest(void **state)
{
    static const struct {
        int msgs, pieces, decodes;
    } cases[] = {
        {7, 6, 1},
        {7, 7, 0},
        {8, 0, 0},
        {8, 6, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct der m = nested_msgs(cases[i].msgs, cases[i].pieces);
        const unsigned char *p = m.p;
        OSSL_CMP_MSG *msg = d2i_OSSL_CMP_MSG(NULL, &p, m.len);
        int n = 0, keys, elements, depth = deepest(m.p, m.p + m.len, 0, &n);

        ERR_clear_error();
        /* each PKIMessage 6 levels below the one before, the issuer's string 10 below the last, in pieces */
        assert_int_equal(depth, 6 * (cases[i].msgs - 1) + 10 + cases[i].pieces);
        if ((msg != NULL) != cases[i].decodes)
            fail_msg("case %zu (level %d): %s", i, depth, msg != NULL ? "decoded" : "refused");
        assert_int_equal(gw_shim_der_count(m.p, (size_t)m.len, &keys, &elements), 0);
        if (msg != NULL) {
            assert_int_equal(elements, n); /* every element looked into */
            assert_int_equal(depth, 52);
        }
        OSSL_CMP_MSG_free(msg);
        OPENSSL_free(m.p);
    }
}

/* Where crl_with puts its extension, and how it shapes the extension's value around GeneralNames. */
enum crl_ext_at { ON_CRL, ON_ENTRY };
enum crl_ext_shape { GNS, AKID, IDP };

/* GeneralNames of |n| empty dNSNames, two bytes each, shaped as |shape|: itself (certificateIssuer), an
 * AuthorityKeyIdentifier's authorityCertIssuer ([1]), an IssuingDistributionPoint's fullName ([0] [0]). */
static struct der names_shaped(int n, enum crl_ext_shape shape)
{
    struct der gns = der_of("", 0);

    for (int i = 0; i < n; i++)
        gns = der_cat(gns, der_of("\x82\x00", 2));
    if (shape == AKID)
        return der_wrap(0x30, der_wrap(0xa1, gns));
    if (shape == IDP)
        return der_wrap(0x30, der_wrap(0xa0, der_wrap(0xa0, gns)));
    return der_wrap(0x30, gns);
}

/*
 * A CRL (RFC 5280 §5.1, unsigned: OpenSSL decodes it all the same) of one revoked entry, with one extension
 * of id-ce |id| (2.5.29.|id|), critical if |critical|, on the CRL or on its entry, its value |names|
 * GeneralNames shaped as |shape|; the extnValue in one piece of a constructed OCTET STRING if |pieces|.
 */
static struct der crl_with(int id, int critical, enum crl_ext_at at, enum crl_ext_shape shape, int names,
                           int pieces)
{
    static const unsigned char alg[] = {
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
        0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};           /* sha256WithRSAEncryption */
    static const unsigned char start[] = {0x02, 0x01, 0x01}; /* v2 */
    static const unsigned char serial[] = {0x02, 0x01, 0x07}, crit[] = {0x01, 0x01, 0xff},
                               sig[] = {0x03, 0x01, 0x00};
    static const char time[] = "\x17\x0d"
                               "250101000000Z";
    unsigned char oid[] = {0x06, 0x03, 0x55, 0x1d, (unsigned char)id};
    struct der value = der_wrap(V_ASN1_OCTET_STRING, names_shaped(names, shape)), ext, entry, tbs;

    if (pieces)
        value = der_wrap(V_ASN1_OCTET_STRING | V_ASN1_CONSTRUCTED, value);
    ext = der_wrap(
        0x30, der_cat(der_cat(der_of(oid, sizeof(oid)), der_of(crit, critical ? sizeof(crit) : 0)), value));
    entry = der_cat(der_of(serial, sizeof(serial)), der_of(time, 15));
    if (at == ON_ENTRY)
        entry = der_cat(entry, der_wrap(0x30, ext));
    tbs = der_cat(der_cat(der_of(start, sizeof(start)), der_of(alg, sizeof(alg))), der_of("\x30\x00", 2));
    tbs = der_cat(der_cat(tbs, der_of(time, 15)), der_wrap(0x30, der_wrap(0x30, entry)));
    if (at == ON_CRL)
        tbs = der_cat(tbs, der_wrap(0xa0, der_wrap(0x30, ext)));
    return der_wrap(
        0x30, der_cat(der_cat(der_wrap(0x30, tbs), der_of(alg, sizeof(alg))), der_of(sig, sizeof(sig))));
}

/* The elements gw_shim_der_count finds in |m| (freed), which OpenSSL must decode (as a whole). */
static int elements_decoded(struct der m)
{
    const unsigned char *p = m.p;
    OSSL_CMP_MSG *msg = d2i_OSSL_CMP_MSG(NULL, &p, m.len);
    int keys, elements;

    assert_non_null(msg);
    assert_int_equal(gw_shim_der_count(m.p, (size_t)m.len, &keys, &elements), 0);
    OSSL_CMP_MSG_free(msg);
    OPENSSL_free(m.p);
    return elements;
}

/*
 * OpenSSL 3.0 decodes a CRL's issuingDistributionPoint and authorityKeyIdentifier, and each entry's
 * certificateIssuer, as it decodes the CRL (a crlann's, a genm ITAV's currentCRL), before any check: 60 KiB
 * of GeneralNames in one cost 90 000 allocations, 15 times a message at GW_MAX_MSG_ELEMENTS. The pre-scan
 * counts such a value as the elements it could hold, critical or not, in pieces or not, in a crlann or a
 * genm; 20 000 names are over the cap. The twins: the same names in an extension OpenSSL leaves undecoded
 * (a CRL entry's subjectAltName, a CRL's issuerAltName) count as one element.
 */
static void test_der_crl_extensions(void **state)
{
    static const unsigned char current_crl[] = {0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x04, 0x06};
    static const struct {
        int id, critical;
        enum crl_ext_at at;
        enum crl_ext_shape shape;
        int pieces, counted;
    } cases[] = {
        {29, 0, ON_ENTRY, GNS, 0, 1}, /* certificateIssuer */
        {29, 1, ON_ENTRY, GNS, 0, 1}, /* critical, as RFC 5280 §5.3.3 has it */
        {29, 1, ON_ENTRY, GNS, 1, 1}, /* its value in pieces (BER), which OpenSSL joins */
        {35, 0, ON_CRL, AKID, 0, 1},  /* authorityKeyIdentifier */
        {28, 1, ON_CRL, IDP, 0, 1},   /* issuingDistributionPoint */
        {17, 0, ON_ENTRY, GNS, 0, 0}, /* subjectAltName: left undecoded, one element */
        {18, 1, ON_CRL, GNS, 0, 0},   /* issuerAltName of the CRL (RFC 5280 §5.2.2): the same */
        /* where OpenSSL leaves them undecoded, counted all the same: the walk knows the extension, not
           its place (a bound, and no conforming request carries a CRL) */
        {29, 0, ON_CRL, GNS, 0, 1},
        {35, 0, ON_ENTRY, AKID, 0, 1},
    };
    const int names = 1000;
    int base = elements_decoded(
        pkimessage(der_of("", 0), der_wrap(0xb2, der_wrap(0x30, crl_with(17, 0, ON_ENTRY, GNS, 0, 0)))));
    struct der crl, big;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n, in_genm, hidden = cases[i].counted ? names : 0;

        for (in_genm = 0; in_genm <= 1; in_genm++) {
            crl =
                crl_with(cases[i].id, cases[i].critical, cases[i].at, cases[i].shape, names, cases[i].pieces);
            /* crlann [18] CRLAnnContent, or genm [21] SEQUENCE OF InfoTypeAndValue { id-it-currentCRL, CRL }
             */
            if (in_genm)
                crl = der_wrap(
                    0xb5,
                    der_wrap(0x30, der_wrap(0x30, der_cat(der_of(current_crl, sizeof(current_crl)), crl))));
            else
                crl = der_wrap(0xb2, der_wrap(0x30, crl));
            n = elements_decoded(pkimessage(der_of("", 0), crl));
            /* the names, and the few elements by which the extension's place and form differ */
            if (n < base + hidden || n > base + hidden + 16)
                fail_msg("case %zu%s: %d elements, %d without", i, in_genm ? " in a genm" : "", n, base);
        }
    }
    /* 20 000 names, 40 KiB: over the cap where decoded, not where left undecoded */
    big = pkimessage(der_of("", 0), der_wrap(0xb2, der_wrap(0x30, crl_with(29, 0, ON_ENTRY, GNS, 20000, 0))));
    assert_true(elements_decoded(big) > GW_MAX_MSG_ELEMENTS);
    big = pkimessage(der_of("", 0), der_wrap(0xb2, der_wrap(0x30, crl_with(17, 0, ON_ENTRY, GNS, 20000, 0))));
    assert_true(elements_decoded(big) < 100);
}

/* A protected certConf [24] of CertStatus |statuses| (freed): the header as pkimessage's, protection [0]
 * after the body. */
static struct der certconf_of(struct der statuses)
{
    static const unsigned char start[] = {0x02, 0x01, 0x02, 0xa4, 0x02, 0x30, 0x00, 0xa4, 0x02, 0x30, 0x00};
    static const unsigned char protection[] = {0xa0, 0x03, 0x03, 0x01, 0x00};

    return der_wrap(0x30, der_cat(der_cat(der_wrap(0x30, der_of(start, sizeof(start))),
                                          der_wrap(0xb8, der_wrap(0x30, statuses))),
                                  der_of(protection, sizeof(protection))));
}

/*
 * A certConf of a CMP version 3 client (RFC 9810 §5.3.18: hashAlg [0] after certHash, certReqId and
 * statusInfo), which OpenSSL 3.0 refuses, is decoded without its hashAlg: the same message as one sent
 * without it, protection and all. Its twins are left to the plain decoding: no hashAlg, a [1], hashAlg twice,
 * hashAlg in the second CertStatus only, another body, truncated or trailing bytes.
 */
static void test_d2i_hash_alg(void **state)
{
    static const unsigned char hash[] = {0x04, 0x02, 0xab, 0xcd}, req_id[] = {0x02, 0x01, 0x00};
    static const unsigned char status[] = {0x30, 0x03, 0x02, 0x01, 0x00}; /* accepted */
    static const unsigned char sha512[] = {0xa0, 0x0d, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86,
                                           0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03};
    static const unsigned char other[] = {0xa1, 0x02, 0x05, 0x00};
    static const struct {
        int status, hash_algs, other, second, decodes;
    } cases[] = {
        {0, 1, 0, 0, 1}, {1, 1, 0, 0, 1}, /* hashAlg, with statusInfo or without */
        {1, 0, 0, 0, 0},                  /* none: OpenSSL decodes it (not this) */
        {1, 0, 1, 0, 0},                  /* [1] instead */
        {1, 2, 0, 0, 0},                  /* hashAlg twice */
        {1, 0, 0, 1, 0},                  /* in the second CertStatus only */
    };
    struct der rp;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct der plain = der_cat(der_of(hash, sizeof(hash)), der_of(req_id, sizeof(req_id))), sent, without;
        OSSL_CMP_MSG *msg, *direct;
        unsigned char *enc = NULL;
        const unsigned char *p;
        int len;

        if (cases[i].status)
            plain = der_cat(plain, der_of(status, sizeof(status)));
        sent = der_of(plain.p, plain.len);
        for (int k = 0; k < cases[i].hash_algs; k++)
            sent = der_cat(sent, der_of(sha512, sizeof(sha512)));
        if (cases[i].other)
            sent = der_cat(sent, der_of(other, sizeof(other)));
        sent = der_wrap(0x30, sent);
        if (cases[i].second) {
            OPENSSL_free(sent.p);
            sent =
                der_cat(der_wrap(0x30, der_of(plain.p, plain.len)),
                        der_wrap(0x30, der_cat(der_of(plain.p, plain.len), der_of(sha512, sizeof(sha512)))));
        }
        sent = certconf_of(sent);
        without = certconf_of(der_wrap(0x30, plain));
        p = sent.p;
        direct = d2i_OSSL_CMP_MSG(NULL, &p, sent.len);
        ERR_clear_error();
        msg = gw_shim_d2i_hash_alg(sent.p, sent.len);
        if ((msg != NULL) != cases[i].decodes)
            fail_msg("case %zu: %s", i, msg != NULL ? "decoded" : "not decoded");
        assert_int_equal(ERR_peek_error(), 0);
        if (msg != NULL) {
            assert_null(direct); /* what OpenSSL 3.0 refuses */
            assert_int_equal(OSSL_CMP_MSG_get_bodytype(msg), GW_CMP_BODY_CERTCONF);
            assert_int_equal(len = i2d_OSSL_CMP_MSG(msg, &enc), without.len);
            assert_memory_equal(enc, without.p, (size_t)len);
            assert_null(gw_shim_d2i_hash_alg(sent.p, sent.len - 1));
            OPENSSL_free(enc);
            enc = OPENSSL_realloc(sent.p, (size_t)sent.len + 1);
            assert_non_null(sent.p = enc);
            sent.p[sent.len] = 0;
            assert_null(gw_shim_d2i_hash_alg(sent.p, sent.len + 1));
        }
        OSSL_CMP_MSG_free(msg);
        OSSL_CMP_MSG_free(direct);
        OPENSSL_free(sent.p);
        OPENSSL_free(without.p);
    }
    /* another body: an rp */
    rp = pkimessage(der_of("", 0), rp_of(name_in_pieces(0)));
    assert_null(gw_shim_d2i_hash_alg(rp.p, rp.len));
    assert_null(gw_shim_d2i_hash_alg(NULL, 0));
    OPENSSL_free(rp.p);
}

/* extraCerts taken out of a decoded message and put back: it encodes without them, then as it was. */
static void test_swap_extra_certs(void **state)
{
    STACK_OF(X509) *sent = NULL, *taken;
    OSSL_CMP_MSG *req = ir_with_extra(3, &sent);
    unsigned char *before = NULL, *without = NULL, *after = NULL;
    int lb = i2d_OSSL_CMP_MSG(req, &before), lw, la, ok = 0;

    (void)state;
    taken = gw_shim_swap_extra_certs(req, NULL, &ok);
    assert_true(ok);
    assert_true(sk_X509_num(taken) >= 3);
    lw = i2d_OSSL_CMP_MSG(req, &without);
    assert_true(lw > 0 && lw < lb);
    assert_null(gw_shim_swap_extra_certs(req, NULL, &ok)); /* none while out */
    assert_null(gw_shim_swap_extra_certs(req, taken, &ok));
    la = i2d_OSSL_CMP_MSG(req, &after);
    assert_int_equal(la, lb);
    assert_memory_equal(after, before, (size_t)lb);
    OPENSSL_free(before), OPENSSL_free(without), OPENSSL_free(after);
    sk_X509_pop_free(sent, X509_free);
    OSSL_CMP_MSG_free(req);
}

/* Every truncation of a valid message either fails to decode or walks cleanly. */
static void test_truncated_and_garbage(void **state)
{
    OSSL_CMP_CTX *cl = client(1);
    OSSL_CMP_MSG *req = make_ir(cl);
    unsigned char *der = NULL;
    int len = i2d_OSSL_CMP_MSG(req, &der);
    size_t decoded = 0;

    (void)state;
    for (int cut = 0; cut < len; cut++) {
        const unsigned char *p = der;
        OSSL_CMP_MSG *m = d2i_OSSL_CMP_MSG(NULL, &p, cut);
        struct gw_hdr_info h;
        if (m == NULL)
            continue;
        decoded++;
        if (gw_shim_hdr_info(m, &h) == 0)
            gw_shim_hdr_info_cleanup(&h);
        (void)gw_shim_error_code(m);
        (void)gw_shim_body_count(m, NULL, 0);
        OSSL_CMP_MSG_free(m);
    }
    assert_int_equal(decoded, 0);
    for (int i = 0; i < len; i += 7) { /* bit flips: must never crash the walks */
        const unsigned char *p = der;
        OSSL_CMP_MSG *m;
        struct gw_hdr_info h;
        der[i] ^= 0x01;
        if ((m = d2i_OSSL_CMP_MSG(NULL, &p, len)) != NULL) {
            if (gw_shim_hdr_info(m, &h) == 0)
                gw_shim_hdr_info_cleanup(&h);
            (void)gw_shim_body_count(m, NULL, 0);
            OSSL_CMP_MSG_free(m);
        }
        der[i] ^= 0x01;
    }
    ERR_clear_error();
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(req);
    OSSL_CMP_CTX_free(cl);
}

/* An ITAV of |oid| whose value is the DER |der| (a complete TLV of tag |type|); NULL der: no value. */
static OSSL_CMP_ITAV *itav_der(const char *oid, int type, const unsigned char *der, int len)
{
    ASN1_TYPE *v = NULL;
    OSSL_CMP_ITAV *itav;

    if (der != NULL) {
        const unsigned char *p = der;
        assert_non_null(v = d2i_ASN1_TYPE(NULL, &p, len));
        assert_int_equal(v->type, type);
    }
    assert_non_null(itav = OSSL_CMP_ITAV_create(OBJ_txt2obj(oid, 1), v));
    return itav;
}

/* SEQUENCE OF UTF8String holding |names| (at most 4, each under 128 bytes) as DER in |out|. */
static int profile_der(unsigned char *out, const char *const *names, int n)
{
    int len = 0;

    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        out[2 + len] = V_ASN1_UTF8STRING;
        out[3 + len] = (unsigned char)l;
        memcpy(out + 4 + len, names[i], l);
        len += 2 + (int)l;
    }
    out[0] = V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED;
    out[1] = (unsigned char)len;
    return len + 2;
}

/* An ir whose header carries |n| generalInfo ITAVs (consumed). */
static OSSL_CMP_MSG *ir_with_geninfo(OSSL_CMP_ITAV **itavs, int n)
{
    OSSL_CMP_CTX *ctx = client(0);
    OSSL_CMP_MSG *m;

    for (int i = 0; i < n; i++)
        assert_int_equal(OSSL_CMP_CTX_push0_geninfo_ITAV(ctx, itavs[i]), 1);
    m = make_ir(ctx);
    OSSL_CMP_CTX_free(ctx);
    return m;
}

#define OID_PROFILE "1.3.6.1.5.5.7.4.21"

static int profile_of(const char *const *names, int n, char *name, size_t cap)
{
    unsigned char der[512];
    OSSL_CMP_ITAV *itav = itav_der(OID_PROFILE, V_ASN1_SEQUENCE, der, profile_der(der, names, n));
    OSSL_CMP_MSG *m = ir_with_geninfo(&itav, 1);
    int rc = gw_shim_cert_profile(m, name, cap);

    OSSL_CMP_MSG_free(m);
    return rc;
}

/* RFC 9483 §3.1: the first name of id-it-certProfile in generalInfo; none, and every malformed twin. */
static void test_cert_profile(void **state)
{
    static const char *const one[] = {"tls-server"}, *const two[] = {"first", "second"};
    char name[GW_MAX_PROFILE_NAME_LEN + 1], at_cap[GW_MAX_PROFILE_NAME_LEN + 1],
        over[GW_MAX_PROFILE_NAME_LEN + 2];
    const char *big[1] = {at_cap}, *bigger[1] = {over};
    unsigned char der[512], nul[] = {0x30, 0x05, 0x0c, 0x03, 'a', 0, 'b'}, empty[] = {0x30, 0x00},
                            zero[] = {0x30, 0x02, 0x0c, 0x00}, wrong[] = {0x30, 0x03, 0x02, 0x01, 0x05},
                            bare[] = {0x0c, 0x02, 'a', 'b'};
    OSSL_CMP_ITAV *itavs[GW_MAX_GENERAL_INFO + 1];
    OSSL_CMP_MSG *m;
    int len;

    (void)state;
    assert_int_equal(profile_of(one, 1, name, sizeof(name)), 0);
    assert_string_equal(name, "tls-server");
    assert_int_equal(profile_of(two, 2, name, sizeof(name)), 0);
    assert_string_equal(name, "first");
    memset(at_cap, 'p', GW_MAX_PROFILE_NAME_LEN);
    at_cap[GW_MAX_PROFILE_NAME_LEN] = '\0';
    assert_int_equal(profile_of(big, 1, name, sizeof(name)), 0);
    assert_int_equal(strlen(name), GW_MAX_PROFILE_NAME_LEN);
    memset(over, 'p', GW_MAX_PROFILE_NAME_LEN + 1);
    over[GW_MAX_PROFILE_NAME_LEN + 1] = '\0';
    assert_int_equal(profile_of(bigger, 1, name, sizeof(name)), GW_ERR_LIMIT);
    assert_string_equal(name, "");

    /* no generalInfo at all, and generalInfo without a profile (implicitConfirm) */
    m = ir_with_geninfo(NULL, 0);
    assert_int_equal(gw_shim_cert_profile(m, name, sizeof(name)), 0);
    assert_string_equal(name, "");
    OSSL_CMP_MSG_free(m);
    itavs[0] = itav_der("1.3.6.1.5.5.7.4.13", 0, NULL, 0);
    m = ir_with_geninfo(itavs, 1);
    assert_int_equal(gw_shim_cert_profile(m, name, sizeof(name)), 0);
    assert_string_equal(name, "");
    OSSL_CMP_MSG_free(m);

    /* malformed values: no value, empty list, empty name, NUL inside, not a UTF8String, no SEQUENCE */
    {
        const struct {
            const unsigned char *der;
            int len, type;
        } bad[] = {
            {NULL, 0, 0},
            {empty, sizeof(empty), V_ASN1_SEQUENCE},
            {zero, sizeof(zero), V_ASN1_SEQUENCE},
            {nul, sizeof(nul), V_ASN1_SEQUENCE},
            {wrong, sizeof(wrong), V_ASN1_SEQUENCE},
            {bare, sizeof(bare), V_ASN1_UTF8STRING},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            itavs[0] = itav_der(OID_PROFILE, bad[i].type, bad[i].der, bad[i].len);
            m = ir_with_geninfo(itavs, 1);
            assert_int_equal(gw_shim_cert_profile(m, name, sizeof(name)), GW_ERR_INVAL);
            OSSL_CMP_MSG_free(m);
        }
    }
    /* named twice */
    len = profile_der(der, one, 1);
    itavs[0] = itav_der(OID_PROFILE, V_ASN1_SEQUENCE, der, len);
    itavs[1] = itav_der(OID_PROFILE, V_ASN1_SEQUENCE, der, len);
    m = ir_with_geninfo(itavs, 2);
    assert_int_equal(gw_shim_cert_profile(m, name, sizeof(name)), GW_ERR_INVAL);
    OSSL_CMP_MSG_free(m);

    /* GW_MAX_GENERAL_INFO entries are read, one more is refused */
    for (int i = 0; i < GW_MAX_GENERAL_INFO; i++)
        itavs[i] =
            i == 0 ? itav_der(OID_PROFILE, V_ASN1_SEQUENCE, der, len) : itav_der("1.2.3.4", 0, NULL, 0);
    m = ir_with_geninfo(itavs, GW_MAX_GENERAL_INFO);
    assert_int_equal(gw_shim_cert_profile(m, name, sizeof(name)), 0);
    assert_string_equal(name, "tls-server");
    OSSL_CMP_MSG_free(m);
    for (int i = 0; i <= GW_MAX_GENERAL_INFO; i++)
        itavs[i] = i == GW_MAX_GENERAL_INFO ? itav_der(OID_PROFILE, V_ASN1_SEQUENCE, der, len)
                                            : itav_der("1.2.3.4", 0, NULL, 0);
    m = ir_with_geninfo(itavs, GW_MAX_GENERAL_INFO + 1);
    assert_int_equal(gw_shim_cert_profile(m, name, sizeof(name)), GW_ERR_LIMIT);
    OSSL_CMP_MSG_free(m);
    assert_int_equal(gw_shim_cert_profile(NULL, name, sizeof(name)), GW_ERR_INVAL);
}

/* RFC 9483 §4.3.2: RootCaCertValue is one Certificate, or absent. */
static void test_itav_cert(void **state)
{
    unsigned char *der = NULL, *longer;
    int len = i2d_X509(cert, &der);
    const unsigned char *p = der;
    ASN1_TYPE *v = d2i_ASN1_TYPE(NULL, &p, len), *i = ASN1_TYPE_new();
    ASN1_STRING *s;
    X509 *got = (X509 *)1;

    (void)state;
    assert_int_equal(gw_shim_itav_cert(NULL, &got), 0);
    assert_null(got);
    assert_int_equal(gw_shim_itav_cert(v, &got), 0);
    assert_non_null(got);
    assert_int_equal(X509_cmp(got, cert), 0);
    X509_free(got);
    /* trailing bytes after the certificate, a SEQUENCE that is no certificate, an INTEGER */
    s = v->value.sequence;
    longer = OPENSSL_malloc((size_t)len + 1);
    memcpy(longer, der, (size_t)len);
    longer[len] = 0;
    ASN1_STRING_set0(s, longer, len + 1);
    assert_int_equal(gw_shim_itav_cert(v, &got), GW_ERR_INVAL);
    assert_null(got);
    ASN1_STRING_set(s, "\x30\x03\x02\x01\x01", 5);
    assert_int_equal(gw_shim_itav_cert(v, &got), GW_ERR_INVAL);
    {
        ASN1_INTEGER *n = ASN1_INTEGER_new();
        ASN1_INTEGER_set(n, 5);
        ASN1_TYPE_set(i, V_ASN1_INTEGER, n);
    }
    assert_int_equal(gw_shim_itav_cert(i, &got), GW_ERR_INVAL);
    ASN1_TYPE_free(v);
    ASN1_TYPE_free(i);
    OPENSSL_free(der);
}

static void test_body_names(void **state)
{
    (void)state;
    assert_string_equal(gw_shim_body_name(GW_CMP_BODY_IR), "ir");
    assert_string_equal(gw_shim_body_name(GW_CMP_BODY_CERTCONF), "certConf");
    assert_string_equal(gw_shim_body_name(GW_CMP_BODY_POLLREP), "pollRep");
    assert_string_equal(gw_shim_body_name(-1), "unknown");
    assert_string_equal(gw_shim_body_name(GW_CMP_BODY_MAX + 1), "unknown");
}

/* gw_x509_pubkey_d2i against d2i_X509_PUBKEY on |der|: both refuse it, or both give the same key (or
 * none, when it does not decode) with the same encoding. */
static void same_as_pubkey_d2i(const unsigned char *der, long len)
{
    const unsigned char *p = der;
    X509_PUBKEY *a = d2i_X509_PUBKEY(NULL, &p, len), *b = gw_x509_pubkey_d2i(der, len);
    unsigned char *ea = NULL, *eb = NULL;

    if (a != NULL && p != der + len) {
        X509_PUBKEY_free(a);
        a = NULL;
    }
    assert_int_equal(a == NULL, b == NULL);
    if (a != NULL) {
        ERR_set_mark();
        assert_int_equal(X509_PUBKEY_get0(a) == NULL, X509_PUBKEY_get0(b) == NULL);
        if (X509_PUBKEY_get0(a) != NULL)
            same_key(X509_PUBKEY_get0(a), X509_PUBKEY_get0(b));
        ERR_pop_to_mark();
        assert_int_equal(i2d_X509_PUBKEY(b, &eb), i2d_X509_PUBKEY(a, &ea));
        assert_memory_equal(eb, ea, (size_t)i2d_X509_PUBKEY(a, NULL));
    }
    OPENSSL_free(ea);
    OPENSSL_free(eb);
    X509_PUBKEY_free(a);
    X509_PUBKEY_free(b);
    ERR_clear_error();
}

/* |k| as a SubjectPublicKeyInfo, its EC point |form| ("compressed"...) and parameters |enc|
 * ("explicit"...) as given (NULL: as it is). */
static int spki_of(EVP_PKEY *k, const char *form, const char *enc, unsigned char **der)
{
    if (form != NULL)
        assert_int_equal(EVP_PKEY_set_utf8_string_param(k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, form),
                         1);
    if (enc != NULL)
        assert_int_equal(EVP_PKEY_set_utf8_string_param(k, OSSL_PKEY_PARAM_EC_ENCODING, enc), 1);
    *der = NULL;
    return i2d_PUBKEY(k, der);
}

/* |k| as a SubjectPublicKeyInfo (spki_of), read by both. */
static void same_spki(EVP_PKEY *k, const char *form, const char *enc)
{
    unsigned char *der;
    int len = spki_of(k, form, enc, &der);

    same_as_pubkey_d2i(der, len);
    OPENSSL_free(der);
}

/* EC keys on named curves are read without a decoder (after the curve's first); every other key,
 * and every damaged one, as d2i_X509_PUBKEY reads it. */
static void test_pubkey_d2i(void **state)
{
    static const char *const curves[] = {"P-256", "P-256", "P-256", "P-384", "P-521", "P-384"};
    EVP_PKEY *k;
    unsigned char *der = NULL, buf[256];
    int len;

    (void)state;
    for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
        assert_non_null(k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curves[i]));
        same_spki(k, NULL, NULL);
        same_spki(k, "compressed", NULL);
        same_spki(k, "uncompressed", "explicit"); /* not a named curve: the slow way */
        EVP_PKEY_free(k);
    }
    assert_non_null(k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"));
    same_spki(k, NULL, NULL);
    EVP_PKEY_free(k);
    assert_non_null(k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024));
    same_spki(k, NULL, NULL);
    EVP_PKEY_free(k);

    /* a P-256 key damaged every way: points off the curve, other curves, lengths, tags, trailing bytes */
    assert_non_null(k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
    len = spki_of(k, NULL, NULL, &der);
    assert_true((size_t)len < sizeof(buf));
    for (int cut = 0; cut <= len; cut++)
        same_as_pubkey_d2i(der, cut);
    memcpy(buf, der, (size_t)len);
    buf[len] = 0;
    same_as_pubkey_d2i(buf, len + 1);
    for (int i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(buf, der, (size_t)len);
            buf[i] ^= (unsigned char)(1u << bit);
            same_as_pubkey_d2i(buf, len);
        }
    OPENSSL_free(der);
    EVP_PKEY_free(k);
}

/* A name of |n| entries: type, value, value length, and whether it joins the RDN before it. */
static X509_NAME *name_of(int n, const char *const *type, const char *const *value, const int *len,
                          const int *joins)
{
    X509_NAME *name = X509_NAME_new();

    assert_non_null(name);
    for (int i = 0; i < n; i++)
        assert_int_equal(X509_NAME_add_entry_by_txt(name, type[i], V_ASN1_UTF8STRING,
                                                    (const unsigned char *)value[i], len[i], -1,
                                                    joins[i] ? -1 : 0),
                         1);
    return name;
}

/*
 * X509_NAME_oneline escapes a byte outside ' '..'~' as "\xHH" and a '+' in a value as "\+", but
 * writes a backslash in a value as it is: a value holding "\x01" read as the byte 1, "a\" then
 * "O=b" in one RDN as the value "a+O=b". Each pair is two subjects, and must be two identities;
 * a name without a backslash keeps its plain one-line form.
 */
static void test_name_identity_escapes(void **state)
{
    struct {
        int n[2];
        const char *type[2][2], *value[2][2];
        int len[2][2], joins[2][2];
    } pairs[] = {
        {{1, 1}, {{"CN"}, {"CN"}}, {{"\x01"}, {"\\x01"}}, {{1}, {4}}, {{0}, {0}}},
        {{2, 1}, {{"CN", "O"}, {"CN"}}, {{"a\\", "b"}, {"a+O=b"}}, {{2, 1}, {5}}, {{0, 1}, {0}}},
    };
    char id[2][GW_IDENTITY_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        for (int k = 0; k < 2; k++) {
            X509_NAME *name = name_of(pairs[i].n[k], pairs[i].type[k], pairs[i].value[k], pairs[i].len[k],
                                      pairs[i].joins[k]);

            assert_int_equal(gw_x509_name_identity(name, id[k]), 0);
            X509_NAME_free(name);
        }
        print_message("pair %zu: %s | %s\n", i, id[0], id[1]);
        assert_string_not_equal(id[0], id[1]);
    }
    {
        X509_NAME *plain =
            name_of(2, (const char *const[]){"O", "CN"}, (const char *const[]){"cmpgw demo", "a+b \x01"},
                    (const int[]){-1, 5}, (const int[]){0, 0});

        assert_int_equal(gw_x509_name_identity(plain, id[0]), 0);
        assert_string_equal(id[0], "/O=cmpgw demo/CN=a\\+b \\x01");
        X509_NAME_free(plain);
    }
}

/*
 * The whole one-line subject an allow-list entry or a pattern is compared with: a value holding a
 * backslash gives none, since it could spell an escape of another name ("/CN=M\xC3\xBCller" is both
 * the UTF-8 "Müller" and the ASCII text of those twelve characters).
 */
static void test_name_line_escapes(void **state)
{
    X509_NAME *utf8 = name_of(1, (const char *const[]){"CN"}, (const char *const[]){"M\xC3\xBCller"},
                              (const int[]){-1}, (const int[]){0});
    X509_NAME *ascii = name_of(1, (const char *const[]){"CN"}, (const char *const[]){"M\\xC3\\xBCller"},
                               (const int[]){-1}, (const int[]){0});
    char *line = gw_x509_name_line(utf8);

    (void)state;
    assert_non_null(line);
    assert_string_equal(line, "/CN=M\\xC3\\xBCller");
    OPENSSL_free(line);
    assert_null(gw_x509_name_line(ascii));
    X509_NAME_free(utf8);
    X509_NAME_free(ascii);
}

/* A name of |n| entries of string type |type| each, one RDN each but where |joins| says it joins the one
 * before. */
static X509_NAME *name_typed(int n, int type, const char *const *attr, const char *const *value,
                             const int *joins)
{
    X509_NAME *name = X509_NAME_new();

    assert_non_null(name);
    for (int i = 0; i < n; i++)
        assert_int_equal(X509_NAME_add_entry_by_txt(name, attr[i], type, (const unsigned char *)value[i], -1,
                                                    -1, joins[i] ? -1 : 0),
                         1);
    return name;
}

/*
 * The subject a kur asks for is its old certificate's only where gw_x509_name_same says so: the same
 * text whatever string type carries it (a CA writes PrintableString what a client asks as UTF8String),
 * but not another case, other spaces (X509_NAME_cmp takes both for the same name), other RDNs or another
 * grouping into RDNs.
 */
static void test_name_same(void **state)
{
    static const char *const on[] = {"O", "CN"};
    static const int apart[] = {0, 0}, joined[] = {0, 1};
    struct {
        int type;
        const char *value[2];
        const int *joins;
        int n, same;
    } cases[] = {
        {V_ASN1_UTF8STRING, {"Vendor Inc", "bs-0002"}, apart, 2, 1},
        {V_ASN1_PRINTABLESTRING, {"Vendor Inc", "bs-0002"}, apart, 2, 1},
        {V_ASN1_UTF8STRING, {"Vendor Inc", "BS-0002"}, apart, 2, 0},
        {V_ASN1_UTF8STRING, {"Vendor  Inc", "bs-0002"}, apart, 2, 0},
        {V_ASN1_UTF8STRING, {"Vendor Inc", "bs-0002 "}, apart, 2, 0},
        {V_ASN1_UTF8STRING, {"Vendor Inc", "bs-0002"}, joined, 2, 0},
        {V_ASN1_UTF8STRING, {"Vendor Inc"}, apart, 1, 0},
    };
    X509_NAME *held = name_typed(2, V_ASN1_UTF8STRING, on, cases[0].value, apart), *empty = X509_NAME_new(),
              *decoded = NULL;
    unsigned char *der = NULL;
    const unsigned char *p;
    int len = i2d_X509_NAME(held, &der);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509_NAME *asked = name_typed(cases[i].n, cases[i].type, on, cases[i].value, cases[i].joins);

        print_message("case %zu\n", i);
        assert_int_equal(gw_x509_name_same(asked, held), cases[i].same);
        assert_int_equal(gw_x509_name_same(held, asked), cases[i].same);
        X509_NAME_free(asked);
    }
    /* a name as it arrives in a message, decoded, is the name it was encoded from */
    assert_true(len > 0);
    p = der;
    assert_non_null(decoded = d2i_X509_NAME(NULL, &p, len));
    assert_true(gw_x509_name_same(decoded, held));
    assert_true(gw_x509_name_same(NULL, empty));
    assert_false(gw_x509_name_same(held, empty));
    OPENSSL_free(der);
    X509_NAME_free(decoded);
    X509_NAME_free(empty);
    X509_NAME_free(held);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_info),
        cmocka_unit_test(test_hdr_oversized),
        cmocka_unit_test(test_hdr_protection_alg_slot),
        cmocka_unit_test(test_sender_nonce),
        cmocka_unit_test(test_hdr_in_place),
        cmocka_unit_test(test_template),
        cmocka_unit_test(test_validity),
        cmocka_unit_test(test_requested_key),
        cmocka_unit_test(test_requested_key_decoded),
        cmocka_unit_test(test_error_set_status),
        cmocka_unit_test(test_get1_extra_certs),
        cmocka_unit_test(test_body_count),
        cmocka_unit_test(test_truncated_and_garbage),
        cmocka_unit_test(test_body_names),
        cmocka_unit_test(test_cert_profile),
        cmocka_unit_test(test_itav_cert),
        cmocka_unit_test(test_d2i_msg),
        cmocka_unit_test(test_der_keys),
        cmocka_unit_test(test_der_primitive),
        cmocka_unit_test(test_der_deepest),
        cmocka_unit_test(test_der_crl_extensions),
        cmocka_unit_test(test_d2i_hash_alg),
        cmocka_unit_test(test_swap_extra_certs),
        cmocka_unit_test(test_pubkey_d2i),
        cmocka_unit_test(test_name_identity_escapes),
        cmocka_unit_test(test_name_line_escapes),
        cmocka_unit_test(test_name_same),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
