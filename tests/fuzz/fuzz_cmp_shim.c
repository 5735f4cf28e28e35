/*
 * fuzz_cmp_shim: the DER walks of gateway/cmp/shim*.c on whatever OpenSSL decodes, without the
 * engine's signature checks in front of them (cheaper per input than fuzz_cmp_request, and every
 * walk is reached, not only those an authenticated request gets to). The input is one PKIMessage;
 * the parts OpenSSL hands the engine's callbacks (CertReqMsg, PKIStatusInfo, ITAV values) are cut
 * out of it here as OpenSSL would pass them. gw_shim_d2i_msg, which decodes a request in parts, must
 * decode every input as d2i_OSSL_CMP_MSG does (gw_shim_d2i_msg_later, its first part, may decode more only
 * where gw_shim_set_extra_certs, its second, refuses), and the header read in place say what its walk says.
 * What the engine reads in the received bytes before or beside OpenSSL must agree with what OpenSSL
 * decoded: the counts of gw_shim_der_count bound it, gw_shim_body_count finds as many entries in the
 * bytes as in OpenSSL's encoding, and a crlStatusList names the demo CAs as its own reading says.
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/cmp.h>
#include <openssl/core_names.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "base/err.h"
#include "base/x509.h"
#include "gateway/cmp/shim.h"
#include "gateway/cmp/shim_local.h"

/* The names a crlStatusList is read against: the empty Name, the demo's root and issuing CAs. */
#define N_ISSUERS 3
static X509_NAME *issuers[N_ISSUERS];
static ASN1_OBJECT *cert_profile_oid; /* id-it-certProfile: 3.0 has no NID for it */

static void free_issuers(void)
{
    for (int i = 0; i < N_ISSUERS; i++)
        X509_NAME_free(issuers[i]);
    ASN1_OBJECT_free(cert_profile_oid);
}

/* The subject of the PEM certificate |name| of the fuzzing PKI. */
static X509_NAME *pki_subject(const char *name)
{
    size_t len;
    char *pem = fuzz_pki_file(name, &len);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    X509_NAME *subject = x != NULL ? X509_NAME_dup(X509_get_subject_name(x)) : NULL;

    if (subject == NULL)
        fuzz_die("cannot read the subject of %s", name);
    X509_free(x);
    BIO_free(bio);
    free(pem);
    return subject;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    if ((issuers[0] = X509_NAME_new()) == NULL)
        fuzz_die("out of memory");
    issuers[1] = pki_subject("ca.pem");
    issuers[2] = pki_subject("issuing.pem");
    if ((cert_profile_oid = OBJ_txt2obj("1.3.6.1.5.5.7.4.21", 1)) == NULL)
        fuzz_die("out of memory");
    atexit(free_issuers);
    return 0;
}

/* One DER element: [start, start + total) whole, [cont, cont + len) its content. */
struct elem {
    const unsigned char *start, *cont;
    long len, total;
    int tag;
};

/* The element at *pp within |end|; advances *pp past it. 1, or 0 at the end or on bad DER. */
static int next(const unsigned char **pp, const unsigned char *end, struct elem *e)
{
    const unsigned char *q = *pp;
    int cls, ret;

    if (q >= end)
        return 0;
    ret = ASN1_get_object(&q, &e->len, &e->tag, &cls, end - q);
    if ((ret & 0x80) != 0 || ret == (V_ASN1_CONSTRUCTED | 1))
        return 0;
    e->start = *pp;
    e->cont = q;
    e->total = (long)(q - *pp) + e->len;
    *pp = q + e->len;
    return 1;
}

/* ir, cr, kur: CertReqMessages; the certificate-request callback gets one OSSL_CRMF_MSG of it. */
static void cert_requests(const struct elem *content)
{
    const unsigned char *p = content->start;
    OSSL_CRMF_MSGS *msgs = d2i_OSSL_CRMF_MSGS(NULL, &p, content->total);
    time_t not_before, not_after;

    for (int i = 0; i < sk_OSSL_CRMF_MSG_num(msgs); i++) {
        const OSSL_CRMF_MSG *crm = sk_OSSL_CRMF_MSG_value(msgs, i);

        EVP_PKEY_free(gw_shim_tmpl_get1_pubkey(crm));
        (void)gw_shim_tmpl_validity(crm, &not_before, &not_after);
        (void)gw_shim_popo_type(crm);
        (void)gw_shim_popo_hash_bits(crm);
    }
    OSSL_CRMF_MSGS_free(msgs);
}

static void status_info(const struct elem *e)
{
    const unsigned char *p = e->start;
    OSSL_CMP_PKISI *si = d2i_OSSL_CMP_PKISI(NULL, &p, e->total);

    if (si != NULL)
        (void)gw_shim_pkisi_status(si);
    OSSL_CMP_PKISI_free(si);
}

/* certConf: SEQUENCE OF CertStatus { certHash, certReqId, statusInfo PKIStatusInfo OPTIONAL } */
static void cert_confirms(const struct elem *content)
{
    const unsigned char *p = content->cont, *q;
    struct elem status, field;

    while (next(&p, content->cont + content->len, &status)) {
        q = status.cont;
        while (next(&q, status.cont + status.len, &field))
            if (field.tag == V_ASN1_SEQUENCE)
                status_info(&field);
    }
}

/* error: ErrorMsgContent { pKIStatusInfo, errorCode OPTIONAL, errorDetails OPTIONAL } */
static void error_status(const struct elem *content)
{
    const unsigned char *p = content->cont;
    struct elem si;

    if (next(&p, content->cont + content->len, &si))
        status_info(&si);
}

/*
 * A crlStatusList value (or any other: each is read as one) against each issuer: whether it is malformed
 * does not depend on the issuer; one naming an issuer is well-formed; the thisUpdate of an issuer it does
 * not name is 0, and without an issuer nothing is named.
 */
static void crl_statuses(const ASN1_TYPE *any)
{
    time_t t = 1;
    int rc = gw_shim_crl_status_time(any, NULL, &t), rc_i, named;

    if (rc > 0 || (rc == 0 && t != 0))
        fuzz_die("gw_shim_crl_status_time: %d, thisUpdate %lld for no issuer", rc, (long long)t);
    for (int i = 0; i < N_ISSUERS; i++) {
        rc_i = gw_shim_crl_status_time(any, issuers[i], &t);
        named = gw_shim_crl_status_names(any, issuers[i]);
        if (rc_i != rc)
            fuzz_die("gw_shim_crl_status_time: %d for issuer %d, %d for none", rc_i, i, rc);
        if (named && rc != 0)
            fuzz_die("gw_shim_crl_status_names: issuer %d named in a list refused as malformed", i);
        if (!named && t != 0)
            fuzz_die("gw_shim_crl_status_time: thisUpdate %lld of issuer %d, which is not named",
                     (long long)t, i);
    }
}

/* genm: SEQUENCE OF InfoTypeAndValue { infoType OID, infoValue ANY OPTIONAL }, values as OpenSSL holds them
 */
static void info_values(const struct elem *content)
{
    const unsigned char *p = content->cont, *q, *v;
    struct elem itav, type, value;
    ASN1_TYPE *any;

    while (next(&p, content->cont + content->len, &itav)) {
        q = itav.cont;
        if (!next(&q, itav.cont + itav.len, &type) || type.tag != V_ASN1_OBJECT ||
            !next(&q, itav.cont + itav.len, &value))
            continue;
        v = value.start;
        any = d2i_ASN1_TYPE(NULL, &v, value.total);
        crl_statuses(any);
        ASN1_TYPE_free(any);
    }
}

/* The point form of EC key |k| ("uncompressed", ...) in |buf|; "" for another key. */
static const char *ec_form(const EVP_PKEY *k, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (k != NULL && EVP_PKEY_is_a(k, "EC"))
        (void)EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, buf, cap, NULL);
    return buf;
}

/*
 * gw_shim_d2i_msg against d2i_OSSL_CMP_MSG on the input: the same message accepted or refused, the
 * same bytes consumed, the same encoding, and the same requested key (the one it decodes itself).
 */
static void same_decoding(const uint8_t *data, size_t size, const OSSL_CMP_MSG *plain,
                          const unsigned char *end)
{
    const unsigned char *q = data;
    OSSL_CMP_MSG *fast = gw_shim_d2i_msg(&q, (long)size);
    unsigned char *ea = NULL, *eb = NULL;
    EVP_PKEY *ka, *kb;
    char fa[32], fb[32];
    int la, lb, has_a, has_b;

    if ((plain == NULL) != (fast == NULL))
        fuzz_die("gw_shim_d2i_msg %s what d2i_OSSL_CMP_MSG %s", fast != NULL ? "accepted" : "refused",
                 plain != NULL ? "accepted" : "refused");
    if (plain == NULL)
        return;
    la = i2d_OSSL_CMP_MSG(plain, &ea);
    lb = i2d_OSSL_CMP_MSG(fast, &eb);
    if (q != end || la != lb || (la > 0 && memcmp(ea, eb, (size_t)la) != 0))
        fuzz_die("gw_shim_d2i_msg decoded another message than d2i_OSSL_CMP_MSG");
    ka = gw_shim_get1_requested_key(plain, NULL, 0, &has_a);
    kb = gw_shim_get1_requested_key(fast, NULL, 0, &has_b);
    if (has_a != has_b || (ka == NULL) != (kb == NULL) || (ka != NULL && EVP_PKEY_eq(ka, kb) != 1) ||
        strcmp(ec_form(ka, fa, sizeof(fa)), ec_form(kb, fb, sizeof(fb))) != 0)
        fuzz_die("gw_shim_d2i_msg decoded another requested key than d2i_OSSL_CMP_MSG");
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
    OPENSSL_free(ea);
    OPENSSL_free(eb);
    OSSL_CMP_MSG_free(fast);
    ERR_clear_error();
}

/* gw_shim_hdr_info (the header read in place) against the walk of its encoding: the same answer. */
static void same_header(const OSSL_CMP_MSG *msg)
{
    struct gw_hdr_info a, b;
    int ra = gw_shim_hdr_info(msg, &a), rb = cmp_hdr_walk(msg, &b);

    if (ra != rb)
        fuzz_die("the header read in place %s what its walk %s", ra == 0 ? "accepted" : "refused",
                 rb == 0 ? "accepted" : "refused");
    if (ra == 0 &&
        ((a.sender == NULL) != (b.sender == NULL) ||
         (a.sender != NULL && X509_NAME_cmp(a.sender, b.sender) != 0) ||
         a.has_message_time != b.has_message_time || a.message_time != b.message_time ||
         a.protection_nid != b.protection_nid || a.pbm_iterations != b.pbm_iterations ||
         a.protection_hash_bits != b.protection_hash_bits || a.sender_kid_len != b.sender_kid_len ||
         memcmp(a.sender_kid, b.sender_kid, a.sender_kid_len) != 0 || a.tid_len != b.tid_len ||
         memcmp(a.tid, b.tid, a.tid_len) != 0 || a.sender_nonce_len != b.sender_nonce_len ||
         memcmp(a.sender_nonce, b.sender_nonce, a.sender_nonce_len) != 0))
        fuzz_die("the header read in place differs from its walk");
    gw_shim_hdr_info_cleanup(&a);
    gw_shim_hdr_info_cleanup(&b);
    ERR_clear_error();
}

/* The elements of [p, end) and of the constructed ones among them, |depth| levels down as gw_shim_der_count
 * looks; -1 if they do not read. */
static long elements_in(const unsigned char *p, const unsigned char *end, int depth)
{
    struct elem e;
    long n = 0, inner;

    while (next(&p, end, &e)) {
        n++;
        if ((e.start[0] & V_ASN1_CONSTRUCTED) != 0 && depth < GW_DER_SCAN_DEPTH) {
            if ((inner = elements_in(e.cont, e.cont + e.len, depth + 1)) < 0)
                return -1;
            n += inner;
        }
    }
    return p == end ? n : -1;
}

/*
 * gw_shim_der_count on the input, which need not be DER: refused, or counted without reading past it. One
 * counted and decoded is counted again as OpenSSL encodes it (an ANY keeps what came, an indefinite length
 * too, so one refused may be encoded so again), and the counts of the input bound what OpenSSL decoded:
 * the keys it counts in the encoding, the elements of the encoding (each SEQUENCE OF constructed there).
 * They are the caps on what OpenSSL decodes, which takes a part in pieces (BER) or a SEQUENCE OF sent
 * primitive as well.
 */
static void counted(const uint8_t *data, size_t size, const OSSL_CMP_MSG *msg)
{
    unsigned char *der = NULL;
    int keys, elements, enc_keys, enc_elements, len, rc;

    if (gw_shim_der_count(data, size, &keys, &elements) != 0)
        return;
    if (elements < 1 || keys > elements)
        fuzz_die("gw_shim_der_count: %d keys in %d elements", keys, elements);
    if (msg == NULL || (len = i2d_OSSL_CMP_MSG(msg, &der)) <= 0)
        return;
    rc = gw_shim_der_count(der, (size_t)len, &enc_keys, &enc_elements);
    enc_elements = (int)elements_in(der, der + len, 0);
    OPENSSL_free(der);
    if (rc != 0 || enc_elements < 0)
        fuzz_die("gw_shim_der_count refused OpenSSL's encoding of what it counted");
    if (enc_keys > keys || enc_elements > elements)
        fuzz_die("gw_shim_der_count: %d keys and %d elements in the input, %d and %d in what OpenSSL decoded",
                 keys, elements, enc_keys, enc_elements);
}

/* gw_shim_body_count read in the received bytes (as the engine does) and in OpenSSL's encoding: the same. */
static void body_counted(const OSSL_CMP_MSG *msg, const uint8_t *der, size_t len)
{
    int in_bytes = gw_shim_body_count(msg, der, len), encoded = gw_shim_body_count(msg, NULL, 0);

    if (in_bytes != encoded)
        fuzz_die("gw_shim_body_count: %d entries in the %s's bytes, %d in its encoding", in_bytes,
                 gw_shim_body_name(OSSL_CMP_MSG_get_bodytype(msg)), encoded);
}

/*
 * The first UTF8String of the certProfile OpenSSL decoded in |msg|'s generalInfo (3.0 has no getter for
 * it: OSSL_CMP_HDR_get0_geninfo_ITAVs is 3.3+) into |name|: 1; 0 when it holds none; -1 when it holds
 * two, or one whose value does not read so.
 */
static int decoded_profile(const OSSL_CMP_MSG *msg, char *name, size_t cap)
{
    const ASN1_TEMPLATE *tt =
        gw_asn1_field(ASN1_ITEM_rptr(OSSL_CMP_PKIHEADER), "generalInfo", 8, ASN1_TFLG_SEQUENCE_OF);
    const STACK_OF(OSSL_CMP_ITAV) *info;
    const unsigned char *p, *end;
    struct elem seq, first;
    int found = 0;

    if (tt == NULL)
        fuzz_die("this OpenSSL keeps no generalInfo in its PKIHeader");
    info = *(STACK_OF(OSSL_CMP_ITAV) *const *)((const char *)OSSL_CMP_MSG_get0_header(msg) + tt->offset);
    for (int i = 0; i < sk_OSSL_CMP_ITAV_num(info); i++) {
        const OSSL_CMP_ITAV *itav = sk_OSSL_CMP_ITAV_value(info, i);
        const ASN1_TYPE *value = OSSL_CMP_ITAV_get0_value(itav);

        if (OBJ_cmp(OSSL_CMP_ITAV_get0_type(itav), cert_profile_oid) != 0)
            continue;
        if (found++ > 0 || value == NULL || value->type != V_ASN1_SEQUENCE)
            return -1;
        p = ASN1_STRING_get0_data(value->value.sequence);
        end = p + ASN1_STRING_length(value->value.sequence);
        if (!next(&p, end, &seq) || seq.tag != V_ASN1_SEQUENCE)
            return -1;
        p = seq.cont;
        if (!next(&p, seq.cont + seq.len, &first) || first.tag != V_ASN1_UTF8STRING ||
            (size_t)first.len >= cap)
            return -1;
        memcpy(name, first.cont, (size_t)first.len);
        name[first.len] = '\0';
    }
    return found;
}

/* gw_shim_cert_profile: its contract (shim.h), and a name it reads is the one OpenSSL decoded. */
static void cert_profile(const OSSL_CMP_MSG *msg)
{
    char name[GW_MAX_PROFILE_NAME_LEN + 1], decoded[GW_MAX_PROFILE_NAME_LEN + 1] = "";
    int rc = gw_shim_cert_profile(msg, name, sizeof(name)), found;

    if (strnlen(name, sizeof(name)) == sizeof(name))
        fuzz_die("gw_shim_cert_profile: a name not NUL-terminated within %zu bytes", sizeof(name));
    if (rc != 0 && rc != GW_ERR_INVAL && rc != GW_ERR_LIMIT)
        fuzz_die("gw_shim_cert_profile: returned %d", rc);
    if (rc != 0 && name[0] != '\0')
        fuzz_die("gw_shim_cert_profile: refused (%d) with the name \"%s\"", rc, name);
    if (rc != 0)
        return;
    found = decoded_profile(msg, decoded, sizeof(decoded));
    if (found != (name[0] != '\0') || strcmp(name, decoded) != 0)
        fuzz_die("gw_shim_cert_profile read \"%s\", OpenSSL decoded %d certProfile(s), the first \"%s\"",
                 name, found, decoded);
}

/* gw_shim_d2i_hash_alg on the input: a certConf, and only where d2i_OSSL_CMP_MSG refused it (|plain|). */
static void hash_alg_cut(const uint8_t *data, size_t size, const OSSL_CMP_MSG *plain)
{
    OSSL_CMP_MSG *cut = gw_shim_d2i_hash_alg(data, (long)size);

    if (cut != NULL && (plain != NULL || OSSL_CMP_MSG_get_bodytype(cut) != GW_CMP_BODY_CERTCONF))
        fuzz_die("gw_shim_d2i_hash_alg decoded a message d2i_OSSL_CMP_MSG %s, of body %d",
                 plain != NULL ? "decoded" : "refused", OSSL_CMP_MSG_get_bodytype(cut));
    OSSL_CMP_MSG_free(cut);
}

/*
 * gw_shim_d2i_msg_later against d2i_OSSL_CMP_MSG on the input (|plain|): whatever that decodes, and where
 * it decodes more, only a message whose extraCerts gw_shim_set_extra_certs then refuses (the engine's
 * refusals before it cost no certificate; once they pass, the message is refused as it was).
 */
static void later_decoding(const uint8_t *data, size_t size, const OSSL_CMP_MSG *plain)
{
    const unsigned char *q = data;
    int later = 0;
    OSSL_CMP_MSG *msg = gw_shim_d2i_msg_later(&q, (long)size, &later);

    if (plain != NULL && msg == NULL)
        fuzz_die("gw_shim_d2i_msg_later refused what d2i_OSSL_CMP_MSG decoded");
    if (plain == NULL && msg != NULL && (!later || gw_shim_set_extra_certs(msg, data, (long)(q - data)) == 0))
        fuzz_die("gw_shim_d2i_msg_later decoded what d2i_OSSL_CMP_MSG refused, and not for its extraCerts");
    OSSL_CMP_MSG_free(msg);
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *p = data;
    OSSL_CMP_MSG *msg = d2i_OSSL_CMP_MSG(NULL, &p, (long)size);
    unsigned char *der = NULL;
    struct gw_hdr_info hdr;
    struct elem top, header, body, content;
    int len, reason;

    same_decoding(data, size, msg, p);
    later_decoding(data, size, msg);
    counted(data, size, msg);
    hash_alg_cut(data, size, msg);
    if (msg == NULL)
        goto out;
    (void)gw_shim_body_name(OSSL_CMP_MSG_get_bodytype(msg));
    if (gw_shim_hdr_info(msg, &hdr) == 0)
        gw_shim_hdr_info_cleanup(&hdr);
    same_header(msg);
    cert_profile(msg);
    sk_X509_pop_free(gw_shim_get1_extra_certs(msg, NULL, 0), X509_free);
    sk_X509_pop_free(gw_shim_get1_extra_certs(msg, data, (size_t)(p - data)), X509_free);
    (void)gw_shim_rr_reason(msg, &reason);
    (void)gw_shim_error_code(msg);
    body_counted(msg, data, (size_t)(p - data));
    {
        int has_key; /* read in place from the fuzzer's bytes, which need not be DER */

        EVP_PKEY_free(gw_shim_get1_requested_key(msg, data, (size_t)(p - data), &has_key));
        EVP_PKEY_free(gw_shim_get1_requested_key(msg, NULL, 0, &has_key));
    }
    /* PKIMessage { header, body [type] EXPLICIT content, ... } as OpenSSL encodes what it decoded */
    if ((len = i2d_OSSL_CMP_MSG(msg, &der)) <= 0)
        goto out;
    p = der;
    if (!next(&p, der + len, &top))
        goto out;
    p = top.cont;
    if (!next(&p, top.cont + top.len, &header) || !next(&p, top.cont + top.len, &body))
        goto out;
    p = body.cont;
    if (!next(&p, body.cont + body.len, &content))
        goto out;
    switch (OSSL_CMP_MSG_get_bodytype(msg)) {
    case GW_CMP_BODY_IR:
    case GW_CMP_BODY_CR:
    case GW_CMP_BODY_KUR:
        cert_requests(&content);
        break;
    case GW_CMP_BODY_CERTCONF:
        cert_confirms(&content);
        break;
    case GW_CMP_BODY_ERROR:
        error_status(&content);
        break;
    case GW_CMP_BODY_GENM:
        info_values(&content);
        break;
    default:
        break;
    }
out:
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(msg);
    ERR_clear_error();
    return 0;
}
