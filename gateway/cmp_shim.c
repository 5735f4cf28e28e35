/*
 * OpenSSL 3.0 shim: DER walks over public i2d output (openssl-cmp-3.0 notes §9). Every walk goes
 * through tlv_next(), which bounds each element by its parent, so truncated or lying lengths end
 * the walk with GW_ERR_INVAL instead of reading past the buffer.
 */
#include "cmp_shim.h"
#include "err.h"

#include <string.h>
#include <openssl/asn1.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static const char *const body_names[GW_CMP_BODY_MAX + 1] = {
    "ir",     "ip",      "cr",     "cp",   "p10cr", "popdecc", "popdecr",  "kur",     "kup",
    "krr",    "krp",     "rr",     "rp",   "ccr",   "ccp",     "ckuann",   "cann",    "rann",
    "crlann", "pkiconf", "nested", "genm", "genp",  "error",   "certConf", "pollReq", "pollRep",
};

const char *gw_shim_body_name(int type)
{
    return type >= 0 && type <= GW_CMP_BODY_MAX ? body_names[type] : "unknown";
}

/* One TLV inside [p, end): its whole encoding is [p, p+total), its content [cont, cont+len). */
struct tlv {
    const unsigned char *p, *cont;
    long len, total;
    int tag, cls, constructed;
};

/* Reads the TLV at *pp (bounded by |end|), advances *pp past it. 1 on success, 0 at end or on bad DER. */
static int tlv_next(const unsigned char **pp, const unsigned char *end, struct tlv *t)
{
    const unsigned char *q = *pp;
    int ret;

    if (q >= end)
        return 0;
    ret = ASN1_get_object(&q, &t->len, &t->tag, &t->cls, end - *pp);
    if ((ret & 0x80) != 0 || ret == (V_ASN1_CONSTRUCTED | 1)) /* error, or indefinite length (not DER) */
        return 0;
    t->p = *pp;
    t->cont = q;
    t->constructed = (ret & V_ASN1_CONSTRUCTED) != 0;
    t->total = (long)(q - *pp) + t->len;
    *pp = q + t->len;
    return 1;
}

/* Opens the outer SEQUENCE of |der|: on success [*pp, *end) is its content and nothing trails it. */
static int open_seq(const unsigned char *der, long len, const unsigned char **pp, const unsigned char **end)
{
    const unsigned char *p = der;
    struct tlv t;

    if (der == NULL || len <= 0 || !tlv_next(&p, der + len, &t) || t.tag != V_ASN1_SEQUENCE ||
        t.cls != V_ASN1_UNIVERSAL || !t.constructed || p != der + len)
        return 0;
    *pp = t.cont;
    *end = t.cont + t.len;
    return 1;
}

/* Copies an OCTET STRING TLV (the content of an EXPLICIT tag) into |buf|; 0 or GW_ERR_INVAL. */
static int get_octets(const struct tlv *tag, unsigned char *buf, size_t cap, size_t *out_len)
{
    const unsigned char *p = tag->cont;
    ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &p, tag->len);
    int rc = GW_ERR_INVAL;

    if (os == NULL || p != tag->cont + tag->len || os->length < 0 || (size_t)os->length > cap)
        goto out;
    if (os->length > 0)
        memcpy(buf, os->data, (size_t)os->length);
    *out_len = (size_t)os->length;
    rc = 0;
out:
    ASN1_OCTET_STRING_free(os);
    return rc;
}

static int get_time(const struct tlv *tag, time_t *out)
{
    const unsigned char *p = tag->cont;
    ASN1_GENERALIZEDTIME *gt = d2i_ASN1_GENERALIZEDTIME(NULL, &p, tag->len);
    struct tm tm;
    int rc = GW_ERR_INVAL;

    if (gt == NULL || p != tag->cont + tag->len || ASN1_TIME_to_tm(gt, &tm) != 1)
        goto out;
    *out = timegm(&tm);
    rc = 0;
out:
    ASN1_GENERALIZEDTIME_free(gt);
    return rc;
}

/*
 * PBMParameter ::= SEQUENCE { salt OCTET STRING, owf AlgorithmIdentifier, iterationCount INTEGER,
 * mac AlgorithmIdentifier } (RFC 9810 §5.1.3.1). Read before OpenSSL sees the message: a wrong
 * parameter type crashed 3.0 < 3.0.22 (CVE-2026-63076), and the count is the cost an
 * unauthenticated sender can make the server pay.
 */
static int pbm_iterations(const X509_ALGOR *alg, int *out)
{
    const ASN1_TYPE *param = alg->parameter;
    const unsigned char *p, *end;
    struct tlv salt, owf, it;
    ASN1_INTEGER *n = NULL;
    int64_t v;
    int rc = GW_ERR_INVAL;

    if (param == NULL || param->type != V_ASN1_SEQUENCE || param->value.sequence == NULL)
        return GW_ERR_INVAL;
    if (!open_seq(param->value.sequence->data, param->value.sequence->length, &p, &end) ||
        !tlv_next(&p, end, &salt) || salt.tag != V_ASN1_OCTET_STRING || salt.cls != V_ASN1_UNIVERSAL ||
        !tlv_next(&p, end, &owf) || owf.tag != V_ASN1_SEQUENCE || !tlv_next(&p, end, &it) ||
        it.tag != V_ASN1_INTEGER || it.cls != V_ASN1_UNIVERSAL)
        return GW_ERR_INVAL;
    p = it.p;
    if ((n = d2i_ASN1_INTEGER(NULL, &p, it.total)) == NULL || ASN1_INTEGER_get_int64(&v, n) != 1 || v < 0 ||
        v > INT32_MAX)
        goto out;
    *out = (int)v;
    rc = 0;
out:
    ASN1_INTEGER_free(n);
    return rc;
}

static int get_protection_alg(const struct tlv *tag, struct gw_hdr_info *h)
{
    const unsigned char *p = tag->cont;
    X509_ALGOR *alg = d2i_X509_ALGOR(NULL, &p, tag->len);
    int rc = GW_ERR_INVAL;

    if (alg == NULL || p != tag->cont + tag->len)
        goto out;
    h->protection_nid = OBJ_obj2nid(alg->algorithm);
    rc = 0;
    if (h->protection_nid == NID_id_PasswordBasedMAC)
        rc = pbm_iterations(alg, &h->pbm_iterations);
out:
    X509_ALGOR_free(alg);
    return rc;
}

static int get_sender(const struct tlv *t, struct gw_hdr_info *h)
{
    const unsigned char *p = t->p;
    GENERAL_NAME *gn = d2i_GENERAL_NAME(NULL, &p, t->total);
    int rc = GW_ERR_INVAL;

    if (gn == NULL)
        return GW_ERR_INVAL;
    if (gn->type != GEN_DIRNAME) {
        rc = 0; /* OpenSSL refuses it later with a protected error */
        goto out;
    }
    if ((h->sender = X509_NAME_dup(gn->d.directoryName)) != NULL)
        rc = 0;
out:
    GENERAL_NAME_free(gn);
    return rc;
}

/* The optional, EXPLICIT-tagged header fields [0]..[8] (RFC 9810 §5.1.1). */
static int hdr_optional(const struct tlv *t, struct gw_hdr_info *h)
{
    if (t->cls != V_ASN1_CONTEXT_SPECIFIC || !t->constructed)
        return GW_ERR_INVAL;
    switch (t->tag) {
    case 0:
        h->has_message_time = 1;
        return get_time(t, &h->message_time);
    case 1:
        return get_protection_alg(t, h);
    case 2:
        return get_octets(t, h->sender_kid, sizeof(h->sender_kid), &h->sender_kid_len);
    case 4:
        return get_octets(t, h->tid, sizeof(h->tid), &h->tid_len);
    case 5:
        return get_octets(t, h->sender_nonce, sizeof(h->sender_nonce), &h->sender_nonce_len);
    default:
        return 0; /* recipKID, recipNonce, freeText, generalInfo: not needed here */
    }
}

int gw_shim_hdr_info(const OSSL_CMP_MSG *msg, struct gw_hdr_info *out)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    struct tlv t;
    int len, rc = GW_ERR_INVAL;

    memset(out, 0, sizeof(*out));
    out->protection_nid = NID_undef;
    if (msg == NULL || (len = i2d_OSSL_CMP_PKIHEADER(OSSL_CMP_MSG_get0_header(msg), &der)) <= 0)
        goto out;
    /* pvno, sender, recipient */
    if (!open_seq(der, len, &p, &end) || !tlv_next(&p, end, &t) || t.tag != V_ASN1_INTEGER ||
        !tlv_next(&p, end, &t) || get_sender(&t, out) != 0 || !tlv_next(&p, end, &t))
        goto out;
    while (tlv_next(&p, end, &t))
        if (hdr_optional(&t, out) != 0)
            goto out;
    if (p != end)
        goto out;
    rc = 0;
out:
    OPENSSL_free(der);
    if (rc != 0)
        gw_shim_hdr_info_cleanup(out);
    return rc;
}

void gw_shim_hdr_info_cleanup(struct gw_hdr_info *h)
{
    if (h == NULL)
        return;
    X509_NAME_free(h->sender);
    h->sender = NULL;
}

/* Finds the element of the CertTemplate with context tag |tag| (IMPLICIT: RFC 4211 §5). */
static int tmpl_find(const OSSL_CRMF_MSG *crm, int tag, unsigned char **der, struct tlv *found)
{
    const OSSL_CRMF_CERTTEMPLATE *tmpl = crm != NULL ? OSSL_CRMF_MSG_get0_tmpl(crm) : NULL;
    const unsigned char *p, *end;
    int len;

    *der = NULL;
    if (tmpl == NULL || (len = i2d_OSSL_CRMF_CERTTEMPLATE(tmpl, der)) <= 0 || !open_seq(*der, len, &p, &end))
        return 0;
    while (tlv_next(&p, end, found))
        if (found->cls == V_ASN1_CONTEXT_SPECIFIC && found->tag == tag)
            return 1;
    return 0;
}

EVP_PKEY *gw_shim_tmpl_get1_pubkey(const OSSL_CRMF_MSG *crm)
{
    unsigned char *der = NULL, *spki = NULL;
    const unsigned char *p;
    EVP_PKEY *pkey = NULL;
    struct tlv t;

    /* [6] IMPLICIT SubjectPublicKeyInfo: the same bytes as the SEQUENCE but for the tag */
    if (!tmpl_find(crm, 6, &der, &t) || !t.constructed ||
        (spki = OPENSSL_memdup(t.p, (size_t)t.total)) == NULL)
        goto out;
    spki[0] = V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED;
    p = spki;
    pkey = d2i_PUBKEY(NULL, &p, t.total);
    if (pkey != NULL && p != spki + t.total) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    OPENSSL_free(spki);
    OPENSSL_free(der);
    return pkey;
}

/* OptionalValidity's [0]/[1] tag a CHOICE (Time), hence EXPLICIT whatever the module default. */
static int validity_time(const struct tlv *t, time_t *out)
{
    const unsigned char *p = t->cont;
    ASN1_TIME *tm = d2i_ASN1_TIME(NULL, &p, t->len);
    struct tm parts;
    int rc = GW_ERR_INVAL;

    if (tm == NULL || p != t->cont + t->len || ASN1_TIME_to_tm(tm, &parts) != 1)
        goto out;
    *out = timegm(&parts);
    rc = 0;
out:
    ASN1_TIME_free(tm);
    return rc;
}

int gw_shim_tmpl_validity(const OSSL_CRMF_MSG *crm, time_t *not_before, time_t *not_after)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    struct tlv v, t;
    int rc = 0;

    *not_before = *not_after = 0;
    if (crm == NULL || OSSL_CRMF_MSG_get0_tmpl(crm) == NULL)
        return GW_ERR_INVAL;
    if (!tmpl_find(crm, 4, &der, &v))
        goto out; /* absent */
    p = v.cont;
    end = v.cont + v.len;
    while (rc == 0 && tlv_next(&p, end, &t)) {
        if (t.cls != V_ASN1_CONTEXT_SPECIFIC || (t.tag != 0 && t.tag != 1))
            rc = GW_ERR_INVAL;
        else
            rc = validity_time(&t, t.tag == 0 ? not_before : not_after);
    }
    if (rc == 0 && p != end)
        rc = GW_ERR_INVAL;
out:
    if (rc != 0)
        *not_before = *not_after = 0;
    OPENSSL_free(der);
    return rc;
}

int gw_shim_popo_type(const OSSL_CRMF_MSG *crm)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    struct tlv t;
    int len, type = -1;

    /* CertReqMsg ::= SEQUENCE { certReq, popo ProofOfPossession OPTIONAL, regInfo SEQUENCE OPTIONAL } */
    if (crm == NULL || (len = i2d_OSSL_CRMF_MSG(crm, &der)) <= 0 || !open_seq(der, len, &p, &end) ||
        !tlv_next(&p, end, &t))
        goto out;
    if (tlv_next(&p, end, &t) && t.cls == V_ASN1_CONTEXT_SPECIFIC && t.tag <= OSSL_CRMF_POPO_KEYAGREE)
        type = t.tag;
out:
    OPENSSL_free(der);
    return type;
}

/* Whether |cert| could be the signer: subject == sender, SKID == senderKID when both are there. */
static int signer_candidate(X509 *cert, const struct gw_hdr_info *h)
{
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(cert);

    if (h->sender == NULL || X509_NAME_cmp(X509_get_subject_name(cert), h->sender) != 0)
        return 0;
    if (h->sender_kid_len == 0 || skid == NULL)
        return 1;
    return (size_t)skid->length == h->sender_kid_len &&
           memcmp(skid->data, h->sender_kid, h->sender_kid_len) == 0;
}

/* Confirms that |cert|'s key made the signature, on a scratch context pinned to |cert|. */
static int signed_by(X509 *cert, const OSSL_CMP_MSG *msg)
{
    OSSL_CMP_CTX *scratch = OSSL_CMP_CTX_new(NULL, NULL);
    int ok = scratch != NULL && OSSL_CMP_CTX_set1_srvCert(scratch, cert) == 1 &&
             OSSL_CMP_validate_msg(scratch, msg) == 1;

    OSSL_CMP_CTX_free(scratch);
    return ok;
}

X509 *gw_shim_get1_signer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *msg)
{
    STACK_OF(X509) *untrusted = ctx != NULL ? OSSL_CMP_CTX_get0_untrusted(ctx) : NULL;
    struct gw_hdr_info h;
    X509 *found = NULL;

    if (untrusted == NULL || gw_shim_hdr_info(msg, &h) != 0)
        return NULL;
    for (int i = 0; i < sk_X509_num(untrusted) && found == NULL; i++) {
        X509 *c = sk_X509_value(untrusted, i);
        if (signer_candidate(c, &h) && signed_by(c, msg) && X509_up_ref(c) == 1)
            found = c;
    }
    gw_shim_hdr_info_cleanup(&h);
    ERR_clear_error(); /* failed candidates leave noise in the queue */
    return found;
}

int gw_shim_pkisi_status(const OSSL_CMP_PKISI *si)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end, *q;
    ASN1_INTEGER *st = NULL;
    struct tlv t;
    int64_t v;
    int len, ret = -1;

    /* PKIStatusInfo ::= SEQUENCE { status PKIStatus (INTEGER), statusString OPTIONAL, failInfo OPTIONAL } */
    if (si == NULL || (len = i2d_OSSL_CMP_PKISI(si, &der)) <= 0 || !open_seq(der, len, &p, &end) ||
        !tlv_next(&p, end, &t) || t.tag != V_ASN1_INTEGER || t.cls != V_ASN1_UNIVERSAL)
        goto out;
    q = t.p;
    if ((st = d2i_ASN1_INTEGER(NULL, &q, t.total)) != NULL && ASN1_INTEGER_get_int64(&v, st) == 1 && v >= 0 &&
        v <= 6)
        ret = (int)v;
out:
    ASN1_INTEGER_free(st);
    OPENSSL_free(der);
    return ret;
}

/* Opens the body of an error message: |body| is the [23] TLV, [*pp, *end) its ErrorMsgContent. */
static int error_body(const unsigned char *der, long len, struct tlv *hdr, struct tlv *body,
                      const unsigned char **pp, const unsigned char **end)
{
    const unsigned char *p, *e;
    struct tlv content;

    if (!open_seq(der, len, &p, &e) || !tlv_next(&p, e, hdr) || hdr->tag != V_ASN1_SEQUENCE ||
        !tlv_next(&p, e, body) || body->cls != V_ASN1_CONTEXT_SPECIFIC || body->tag != GW_CMP_BODY_ERROR)
        return 0;
    p = body->cont;
    if (!tlv_next(&p, body->cont + body->len, &content) || content.tag != V_ASN1_SEQUENCE)
        return 0;
    *pp = content.cont;
    *end = content.cont + content.len;
    return 1;
}

long gw_shim_error_code(const OSSL_CMP_MSG *msg)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end, *q;
    struct tlv hdr, body, t;
    ASN1_INTEGER *code = NULL;
    long ret = -1;
    int len;

    /* ErrorMsgContent ::= SEQUENCE { pKIStatusInfo, errorCode INTEGER OPTIONAL, errorDetails OPTIONAL } */
    if (msg == NULL || OSSL_CMP_MSG_get_bodytype(msg) != GW_CMP_BODY_ERROR ||
        (len = i2d_OSSL_CMP_MSG((OSSL_CMP_MSG *)msg, &der)) <= 0 ||
        !error_body(der, len, &hdr, &body, &p, &end) || !tlv_next(&p, end, &t) || !tlv_next(&p, end, &t) ||
        t.tag != V_ASN1_INTEGER || t.cls != V_ASN1_UNIVERSAL)
        goto out;
    q = t.p;
    if ((code = d2i_ASN1_INTEGER(NULL, &q, t.total)) != NULL)
        ret = ASN1_INTEGER_get(code);
out:
    ASN1_INTEGER_free(code);
    OPENSSL_free(der);
    return ret;
}

/* Appends a TLV header for |len| content bytes to |out| (|out| NULL: just measure). Returns its size. */
static int put_hdr(unsigned char **out, int constructed, int len, int tag, int cls)
{
    int n = ASN1_object_size(constructed, len, tag) - len;

    if (out != NULL)
        ASN1_put_object(out, constructed, len, tag, cls);
    return n;
}

/*
 * Builds SEQUENCE { header, [23] { SEQUENCE { si } }, protection } (extraCerts dropped: the
 * re-protection adds the signer's). The old protection is kept only so that
 * OSSL_CMP_MSG_update_transactionID, which re-protects only protected messages, recomputes it.
 */
static unsigned char *build_error(const struct tlv *hdr, const struct tlv *prot, const unsigned char *si,
                                  int si_len, int *out_len)
{
    int seq_len = put_hdr(NULL, 1, si_len, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL) + si_len;
    int body_len = put_hdr(NULL, 1, seq_len, GW_CMP_BODY_ERROR, V_ASN1_CONTEXT_SPECIFIC) + seq_len;
    int inner = (int)hdr->total + body_len + (prot != NULL ? (int)prot->total : 0);
    int total = ASN1_object_size(1, inner, V_ASN1_SEQUENCE);
    unsigned char *buf, *q;

    if (total <= 0 || (buf = OPENSSL_malloc((size_t)total)) == NULL)
        return NULL;
    q = buf;
    put_hdr(&q, 1, inner, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(q, hdr->p, (size_t)hdr->total);
    q += hdr->total;
    put_hdr(&q, 1, seq_len, GW_CMP_BODY_ERROR, V_ASN1_CONTEXT_SPECIFIC);
    put_hdr(&q, 1, si_len, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(q, si, (size_t)si_len);
    q += si_len;
    if (prot != NULL) {
        memcpy(q, prot->p, (size_t)prot->total);
        q += prot->total;
    }
    *out_len = (int)(q - buf);
    return buf;
}

/* Finds the [0] protection element that follows the body, if any. */
static int find_protection(const unsigned char *der, long len, struct tlv *prot)
{
    const unsigned char *p, *end;
    struct tlv t;

    if (!open_seq(der, len, &p, &end) || !tlv_next(&p, end, &t) || !tlv_next(&p, end, &t))
        return 0;
    return tlv_next(&p, end, prot) && prot->cls == V_ASN1_CONTEXT_SPECIFIC && prot->tag == 0;
}

int gw_shim_error_set_status(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG **msg, const OSSL_CMP_PKISI *si,
                             const unsigned char *tid, size_t tid_len)
{
    unsigned char *der = NULL, *si_der = NULL, *out = NULL;
    const unsigned char *p, *end, *q;
    struct tlv hdr, body, prot;
    ASN1_OCTET_STRING *tid_os = NULL;
    OSSL_CMP_MSG *rewritten = NULL;
    int len, si_len, out_len = 0, has_prot, rc = GW_ERR_INVAL;

    if (ctx == NULL || msg == NULL || *msg == NULL || si == NULL || (tid != NULL && tid_len == 0) ||
        tid_len > GW_MAX_TID_LEN || OSSL_CMP_MSG_get_bodytype(*msg) != GW_CMP_BODY_ERROR)
        return GW_ERR_INVAL;
    if ((len = i2d_OSSL_CMP_MSG(*msg, &der)) <= 0 || !error_body(der, len, &hdr, &body, &p, &end) ||
        (si_len = i2d_OSSL_CMP_PKISI(si, &si_der)) <= 0)
        goto out;
    has_prot = find_protection(der, len, &prot);
    rc = GW_ERR_CRYPTO;
    if ((out = build_error(&hdr, has_prot ? &prot : NULL, si_der, si_len, &out_len)) == NULL)
        goto out;
    q = out;
    if ((rewritten = d2i_OSSL_CMP_MSG(NULL, &q, out_len)) == NULL ||
        (tid != NULL && ((tid_os = ASN1_OCTET_STRING_new()) == NULL ||
                         ASN1_OCTET_STRING_set(tid_os, tid, (int)tid_len) != 1)) ||
        OSSL_CMP_CTX_set1_transactionID(ctx, tid_os) != 1 ||
        OSSL_CMP_MSG_update_transactionID(ctx, rewritten) != 1)
        goto out;
    OSSL_CMP_MSG_free(*msg);
    *msg = rewritten;
    rewritten = NULL;
    rc = 0;
out:
    ASN1_OCTET_STRING_free(tid_os);
    OSSL_CMP_MSG_free(rewritten);
    OPENSSL_free(out);
    OPENSSL_free(si_der);
    OPENSSL_free(der);
    return rc;
}
