/*
 * OpenSSL 3.0 shim: DER walks over public i2d output (docs/design.md O9). Every walk goes
 * through cmp_tlv_next(), which bounds each element by its parent, so truncated or lying lengths end
 * the walk with GW_ERR_INVAL instead of reading past the buffer.
 */
#include "gateway/cmp/shim.h"
#include "gateway/cmp/shim_local.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
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

int cmp_tlv_next(const unsigned char **pp, const unsigned char *end, struct cmp_tlv *t)
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

int cmp_der_open_seq(const unsigned char *der, long len, const unsigned char **pp, const unsigned char **end)
{
    const unsigned char *p = der;
    struct cmp_tlv t;

    if (der == NULL || len <= 0 || !cmp_tlv_next(&p, der + len, &t) || t.tag != V_ASN1_SEQUENCE ||
        t.cls != V_ASN1_UNIVERSAL || !t.constructed || p != der + len)
        return 0;
    *pp = t.cont;
    *end = t.cont + t.len;
    return 1;
}

unsigned char *cmp_der_wrap(int tag, int cls, unsigned char *const *parts, const int *lens, int n,
                            int *out_len)
{
    int inner = 0, total;
    unsigned char *buf, *q;

    for (int i = 0; i < n; i++) {
        if (parts[i] == NULL)
            continue;
        if (lens[i] <= 0 || inner > INT32_MAX / 2 - lens[i])
            return NULL;
        inner += lens[i];
    }
    if ((total = ASN1_object_size(1, inner, tag)) <= 0 || (buf = OPENSSL_malloc((size_t)total)) == NULL)
        return NULL;
    q = buf;
    ASN1_put_object(&q, 1, inner, tag, cls);
    for (int i = 0; i < n; i++) {
        if (parts[i] == NULL)
            continue;
        memcpy(q, parts[i], (size_t)lens[i]);
        q += lens[i];
    }
    *out_len = (int)(q - buf);
    return buf;
}

/* Copies an OCTET STRING TLV (the content of an EXPLICIT tag) into |buf|; 0 or GW_ERR_INVAL. */
static int get_octets(const struct cmp_tlv *tag, unsigned char *buf, size_t cap, size_t *out_len)
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

static int get_time(const struct cmp_tlv *tag, time_t *out)
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

/* The AlgorithmIdentifier TLV |t| decoded; NULL if malformed. */
static X509_ALGOR *algor_at(const struct cmp_tlv *t)
{
    const unsigned char *p = t->p;
    X509_ALGOR *alg = d2i_X509_ALGOR(NULL, &p, t->total);

    if (alg != NULL && p != t->p + t->total) {
        X509_ALGOR_free(alg);
        return NULL;
    }
    return alg;
}

/*
 * PBMParameter ::= SEQUENCE { salt OCTET STRING, owf AlgorithmIdentifier, iterationCount INTEGER,
 * mac AlgorithmIdentifier } (RFC 9810 §5.1.3.1). Read before OpenSSL sees the message: a wrong
 * parameter type crashed 3.0 < 3.0.22 (CVE-2026-63076), and the count and the owf are the cost an
 * unauthenticated sender can make the server pay. An owf or mac that is absent, malformed or unknown
 * is NID_undef, for the engine to refuse.
 */
static int pbm_params(const X509_ALGOR *alg, struct gw_hdr_info *h)
{
    const ASN1_TYPE *param = alg->parameter;
    const unsigned char *p, *end;
    struct cmp_tlv salt, owf, it, mac;
    ASN1_INTEGER *n = NULL;
    X509_ALGOR *a_owf = NULL, *a_mac = NULL;
    int64_t v;
    int rc = GW_ERR_INVAL;

    if (param == NULL || param->type != V_ASN1_SEQUENCE || param->value.sequence == NULL)
        return GW_ERR_INVAL;
    if (!cmp_der_open_seq(param->value.sequence->data, param->value.sequence->length, &p, &end) ||
        !cmp_tlv_next(&p, end, &salt) || salt.tag != V_ASN1_OCTET_STRING || salt.cls != V_ASN1_UNIVERSAL ||
        !cmp_tlv_next(&p, end, &owf) || owf.tag != V_ASN1_SEQUENCE || !cmp_tlv_next(&p, end, &it) ||
        it.tag != V_ASN1_INTEGER || it.cls != V_ASN1_UNIVERSAL)
        return GW_ERR_INVAL;
    if ((a_owf = algor_at(&owf)) != NULL)
        h->pbm_owf_nid = OBJ_obj2nid(a_owf->algorithm);
    if (cmp_tlv_next(&p, end, &mac) && (a_mac = algor_at(&mac)) != NULL)
        h->pbm_mac_nid = OBJ_obj2nid(a_mac->algorithm);
    p = it.p;
    if ((n = d2i_ASN1_INTEGER(NULL, &p, it.total)) == NULL || ASN1_INTEGER_get_int64(&v, n) != 1 || v < 0 ||
        v > INT32_MAX)
        goto out;
    h->pbm_iterations = (int)v;
    rc = 0;
out:
    ASN1_INTEGER_free(n);
    X509_ALGOR_free(a_owf);
    X509_ALGOR_free(a_mac);
    return rc;
}

static int get_protection_alg(const struct cmp_tlv *tag, struct gw_hdr_info *h)
{
    const unsigned char *p = tag->cont;
    X509_ALGOR *alg = d2i_X509_ALGOR(NULL, &p, tag->len);
    int rc = GW_ERR_INVAL;

    if (alg == NULL || p != tag->cont + tag->len)
        goto out;
    h->protection_nid = OBJ_obj2nid(alg->algorithm);
    (void)OBJ_obj2txt(h->protection_oid, sizeof(h->protection_oid), alg->algorithm, 1);
    h->protection_hash_bits = gw_shim_alg_hash_bits(alg);
    rc = 0;
    if (h->protection_nid == NID_id_PasswordBasedMAC)
        rc = pbm_params(alg, h);
out:
    X509_ALGOR_free(alg);
    return rc;
}

static int get_sender(const struct cmp_tlv *t, struct gw_hdr_info *h)
{
    const unsigned char *p = t->p;
    GENERAL_NAME *gn = d2i_GENERAL_NAME(NULL, &p, t->total);

    if (gn == NULL)
        return GW_ERR_INVAL;
    /* another type: OpenSSL refuses it later with a protected error */
    if (gn->type == GEN_DIRNAME) {
        h->sender = h->own_sender = gn->d.directoryName; /* taken out of the decoded name, not copied */
        gn->d.directoryName = NULL;
    }
    GENERAL_NAME_free(gn);
    return 0;
}

/* The optional, EXPLICIT-tagged header fields [0]..[8] (RFC 9810 §5.1.1). */
static int hdr_optional(const struct cmp_tlv *t, struct gw_hdr_info *h)
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

/* The header of |msg| encoded and walked: what the fields read in place (below) must equal. */
static int hdr_walk(const OSSL_CMP_MSG *msg, struct gw_hdr_info *out)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    struct cmp_tlv t;
    int len, rc = GW_ERR_INVAL;

    if ((len = i2d_OSSL_CMP_PKIHEADER(OSSL_CMP_MSG_get0_header(msg), &der)) <= 0)
        goto out;
    /* pvno, sender, recipient */
    if (!cmp_der_open_seq(der, len, &p, &end) || !cmp_tlv_next(&p, end, &t) || t.tag != V_ASN1_INTEGER ||
        !cmp_tlv_next(&p, end, &t) || get_sender(&t, out) != 0 || !cmp_tlv_next(&p, end, &t))
        goto out;
    while (cmp_tlv_next(&p, end, &t))
        if (hdr_optional(&t, out) != 0)
            goto out;
    if (p != end)
        goto out;
    rc = 0;
out:
    OPENSSL_free(der);
    return rc;
}

/*
 * Where OpenSSL's decoded header keeps the fields the walk reads (its ASN.1 template: RFC 9810
 * §5.1.1's SEQUENCE, each optional field EXPLICIT-tagged); |ok| 0 if this OpenSSL keeps them
 * otherwise. Found once.
 */
static struct {
    int ok;
    size_t sender, message_time, protection_alg, sender_kid, tid, sender_nonce;
} hdr_layout;
static pthread_once_t hdr_layout_once = PTHREAD_ONCE_INIT;

/* The offset of |name| [tag] (-1: untagged; else EXPLICIT) holding an |item| in the header; 0 if none. */
static size_t hdr_offset(const char *name, long tag, const ASN1_ITEM *item)
{
    const ASN1_TEMPLATE *tt = gw_asn1_field(ASN1_ITEM_rptr(OSSL_CMP_PKIHEADER), name, tag, 0);

    if (tt == NULL || ASN1_ITEM_ptr(tt->item) != item ||
        (tag >= 0 && (tt->flags & ASN1_TFLG_TAG_MASK) != ASN1_TFLG_EXPTAG) || tt->offset == 0)
        return 0;
    return (size_t)tt->offset;
}

static void hdr_layout_find(void)
{
    hdr_layout.sender = hdr_offset("sender", -1, ASN1_ITEM_rptr(GENERAL_NAME));
    hdr_layout.message_time = hdr_offset("messageTime", 0, ASN1_ITEM_rptr(ASN1_GENERALIZEDTIME));
    hdr_layout.protection_alg = hdr_offset("protectionAlg", 1, ASN1_ITEM_rptr(X509_ALGOR));
    hdr_layout.sender_kid = hdr_offset("senderKID", 2, ASN1_ITEM_rptr(ASN1_OCTET_STRING));
    hdr_layout.tid = hdr_offset("transactionID", 4, ASN1_ITEM_rptr(ASN1_OCTET_STRING));
    hdr_layout.sender_nonce = hdr_offset("senderNonce", 5, ASN1_ITEM_rptr(ASN1_OCTET_STRING));
    hdr_layout.ok = hdr_layout.sender != 0 && hdr_layout.message_time != 0 &&
                    hdr_layout.protection_alg != 0 && hdr_layout.sender_kid != 0 && hdr_layout.tid != 0 &&
                    hdr_layout.sender_nonce != 0;
}

/* The pointer decoded |hdr| keeps at |offset| (hdr_layout). */
static const void *hdr_field(const OSSL_CMP_PKIHEADER *hdr, size_t offset)
{
    return *(const void *const *)((const char *)hdr + offset);
}

/* An OCTET STRING read in place as get_octets reads it (NULL: absent, left at 0 bytes). */
static int copy_octets(const ASN1_OCTET_STRING *os, unsigned char *buf, size_t cap, size_t *out_len)
{
    if (os == NULL)
        return 0;
    if (os->length < 0 || (size_t)os->length > cap)
        return GW_ERR_INVAL;
    if (os->length > 0)
        memcpy(buf, os->data, (size_t)os->length);
    *out_len = (size_t)os->length;
    return 0;
}

/*
 * The fields of decoded |hdr| read where they are, as the walk of its encoding reads them: the same
 * values (the walk decodes each from its encoding again, to what OpenSSL decoded), the same caps and
 * refusals, the sender the header's own. Neither the encoding nor the sender's second decoding
 * (an X509_NAME's, the costliest part) is made.
 */
static int hdr_in_place(const OSSL_CMP_PKIHEADER *hdr, struct gw_hdr_info *out)
{
    const GENERAL_NAME *sender = hdr_field(hdr, hdr_layout.sender);
    const ASN1_GENERALIZEDTIME *time = hdr_field(hdr, hdr_layout.message_time);
    const X509_ALGOR *alg = hdr_field(hdr, hdr_layout.protection_alg);
    struct tm tm;

    if (sender == NULL) /* required: a header without one does not encode */
        return GW_ERR_INVAL;
    if (sender->type == GEN_DIRNAME)
        out->sender = sender->d.directoryName;
    if (time != NULL) {
        out->has_message_time = 1;
        if (ASN1_TIME_to_tm(time, &tm) != 1)
            return GW_ERR_INVAL;
        out->message_time = timegm(&tm);
    }
    if (alg != NULL) {
        out->protection_nid = OBJ_obj2nid(alg->algorithm);
        (void)OBJ_obj2txt(out->protection_oid, sizeof(out->protection_oid), alg->algorithm, 1);
        out->protection_hash_bits = gw_shim_alg_hash_bits(alg);
        if (out->protection_nid == NID_id_PasswordBasedMAC && pbm_params(alg, out) != 0)
            return GW_ERR_INVAL;
    }
    if (copy_octets(hdr_field(hdr, hdr_layout.sender_kid), out->sender_kid, sizeof(out->sender_kid),
                    &out->sender_kid_len) != 0 ||
        copy_octets(hdr_field(hdr, hdr_layout.tid), out->tid, sizeof(out->tid), &out->tid_len) != 0 ||
        copy_octets(hdr_field(hdr, hdr_layout.sender_nonce), out->sender_nonce, sizeof(out->sender_nonce),
                    &out->sender_nonce_len) != 0)
        return GW_ERR_INVAL;
    return 0;
}

int gw_shim_hdr_info(const OSSL_CMP_MSG *msg, struct gw_hdr_info *out)
{
    const OSSL_CMP_PKIHEADER *hdr = msg != NULL ? OSSL_CMP_MSG_get0_header(msg) : NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    out->protection_nid = NID_undef;
    if (hdr == NULL)
        return GW_ERR_INVAL;
    pthread_once(&hdr_layout_once, hdr_layout_find);
    rc = hdr_layout.ok ? hdr_in_place(hdr, out) : hdr_walk(msg, out);
    if (rc != 0)
        gw_shim_hdr_info_cleanup(out);
    return rc;
}

int cmp_hdr_walk(const OSSL_CMP_MSG *msg, struct gw_hdr_info *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    out->protection_nid = NID_undef;
    if (msg == NULL || OSSL_CMP_MSG_get0_header(msg) == NULL)
        return GW_ERR_INVAL;
    if ((rc = hdr_walk(msg, out)) != 0)
        gw_shim_hdr_info_cleanup(out);
    return rc;
}

void gw_shim_hdr_info_cleanup(struct gw_hdr_info *h)
{
    if (h == NULL)
        return;
    X509_NAME_free(h->own_sender);
    h->own_sender = NULL;
    h->sender = NULL;
}

/* ---- certProfile (RFC 9483 §3.1) ---------------------------------------------------------- */

/* id-it-certProfile (1.3.6.1.5.5.7.4.21) as OBJECT IDENTIFIER content octets: 3.0 has no NID for it. */
static const unsigned char oid_cert_profile[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x04, 0x15};

/* CertProfileValue ::= SEQUENCE SIZE (1..MAX) OF UTF8String in [p, end): the first entry into |name|. */
static int profile_value(const unsigned char *p, const unsigned char *end, char *name, size_t cap)
{
    const unsigned char *q, *qend;
    struct cmp_tlv seq, first, t;

    if (!cmp_tlv_next(&p, end, &seq) || p != end || seq.tag != V_ASN1_SEQUENCE ||
        seq.cls != V_ASN1_UNIVERSAL || !seq.constructed)
        return GW_ERR_INVAL;
    q = seq.cont;
    qend = seq.cont + seq.len;
    if (!cmp_tlv_next(&q, qend, &first) || first.tag != V_ASN1_UTF8STRING || first.cls != V_ASN1_UNIVERSAL ||
        first.constructed || first.len == 0 || memchr(first.cont, 0, (size_t)first.len) != NULL)
        return GW_ERR_INVAL;
    while (cmp_tlv_next(&q, qend, &t)) /* the others are not used, but must be well-formed */
        if (t.tag != V_ASN1_UTF8STRING || t.cls != V_ASN1_UNIVERSAL)
            return GW_ERR_INVAL;
    if (q != qend)
        return GW_ERR_INVAL;
    if (first.len > GW_MAX_PROFILE_NAME_LEN || (size_t)first.len >= cap)
        return GW_ERR_LIMIT;
    memcpy(name, first.cont, (size_t)first.len);
    name[first.len] = '\0';
    return 0;
}

/* generalInfo [8] { SEQUENCE SIZE (1..MAX) OF InfoTypeAndValue { infoType, infoValue OPTIONAL } }. */
static int general_info_profile(const struct cmp_tlv *tag, char *name, size_t cap)
{
    const unsigned char *p = tag->cont, *end = tag->cont + tag->len, *q, *qend;
    struct cmp_tlv seq, itav, type;
    int n = 0, found = 0, rc;

    if (!tag->constructed || !cmp_tlv_next(&p, end, &seq) || p != end || seq.tag != V_ASN1_SEQUENCE ||
        seq.cls != V_ASN1_UNIVERSAL || !seq.constructed)
        return GW_ERR_INVAL;
    p = seq.cont;
    end = seq.cont + seq.len;
    while (cmp_tlv_next(&p, end, &itav)) {
        if (++n > GW_MAX_GENERAL_INFO)
            return GW_ERR_LIMIT;
        q = itav.cont;
        qend = itav.cont + itav.len;
        if (itav.tag != V_ASN1_SEQUENCE || !itav.constructed || !cmp_tlv_next(&q, qend, &type) ||
            type.tag != V_ASN1_OBJECT || type.cls != V_ASN1_UNIVERSAL)
            return GW_ERR_INVAL;
        if (type.len != (long)sizeof(oid_cert_profile) ||
            memcmp(type.cont, oid_cert_profile, sizeof(oid_cert_profile)) != 0)
            continue;
        if (found++ > 0) /* two profiles: which one the client meant cannot be known */
            return GW_ERR_INVAL;
        if ((rc = profile_value(q, qend, name, cap)) != 0)
            return rc;
    }
    return p == end ? 0 : GW_ERR_INVAL;
}

/*
 * Whether decoded |hdr| has no generalInfo [8] at all, as OpenSSL's template of the header places it
 * (an OPTIONAL SEQUENCE OF: NULL when absent, a stack, empty or not, when present); 0 also if this
 * OpenSSL keeps it otherwise.
 */
static int hdr_no_general_info(const OSSL_CMP_PKIHEADER *hdr)
{
    const ASN1_TEMPLATE *tt =
        gw_asn1_field(ASN1_ITEM_rptr(OSSL_CMP_PKIHEADER), "generalInfo", 8, ASN1_TFLG_SEQUENCE_OF);

    if (hdr == NULL || tt == NULL || (tt->flags & ASN1_TFLG_TAG_MASK) != ASN1_TFLG_EXPTAG ||
        (tt->flags & ASN1_TFLG_OPTIONAL) == 0)
        return 0;
    return *(void *const *)((const char *)hdr + tt->offset) == NULL;
}

int gw_shim_cert_profile(const OSSL_CMP_MSG *msg, char *name, size_t cap)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    struct cmp_tlv t;
    int len, rc = GW_ERR_INVAL;

    if (name == NULL || cap == 0)
        return GW_ERR_INVAL;
    name[0] = '\0';
    /* no generalInfo decoded, none in the encoding below: no profile named, without encoding the header */
    if (msg != NULL && hdr_no_general_info(OSSL_CMP_MSG_get0_header(msg)))
        return 0;
    if (msg == NULL || (len = i2d_OSSL_CMP_PKIHEADER(OSSL_CMP_MSG_get0_header(msg), &der)) <= 0 ||
        !cmp_der_open_seq(der, len, &p, &end))
        goto out;
    rc = 0;
    while (rc == 0 && cmp_tlv_next(&p, end, &t))
        if (t.cls == V_ASN1_CONTEXT_SPECIFIC && t.tag == 8)
            rc = general_info_profile(&t, name, cap);
    if (rc == 0 && p != end)
        rc = GW_ERR_INVAL;
out:
    if (rc != 0)
        name[0] = '\0';
    OPENSSL_free(der);
    return rc;
}

const void *cmp_decoded_body(const OSSL_CMP_MSG *msg, int body)
{
    const ASN1_TEMPLATE *tb = gw_asn1_field(ASN1_ITEM_rptr(OSSL_CMP_MSG), "body", -1, 0), *tv;
    const ASN1_ITEM *choice,
        *want = body == GW_CMP_BODY_P10CR ? ASN1_ITEM_rptr(X509_REQ) : ASN1_ITEM_rptr(OSSL_CRMF_MSGS);
    const char *name = body == GW_CMP_BODY_IR    ? "value.ir"
                       : body == GW_CMP_BODY_CR  ? "value.cr"
                       : body == GW_CMP_BODY_KUR ? "value.kur"
                                                 : "value.p10cr";
    const char *content;

    if (tb == NULL || (content = *(char *const *)((const char *)msg + tb->offset)) == NULL)
        return NULL;
    choice = ASN1_ITEM_ptr(tb->item);
    if (choice->itype != ASN1_ITYPE_CHOICE || body >= choice->tcount ||
        *(const int *)(content + choice->utype) != body)
        return NULL;
    tv = &choice->templates[body];
    if (tv->field_name == NULL || strcmp(tv->field_name, name) != 0 || ASN1_ITEM_ptr(tv->item) != want ||
        (tv->flags & (ASN1_TFLG_SK_MASK | ASN1_TFLG_EMBED)) != 0)
        return NULL;
    return *(void *const *)(content + tv->offset);
}

X509_ALGOR **gw_shim_hdr_protection_alg_slot(OSSL_CMP_PKIHEADER *hdr)
{
    const ASN1_TEMPLATE *tt = gw_asn1_field(ASN1_ITEM_rptr(OSSL_CMP_PKIHEADER), "protectionAlg", 1, 0);

    if (hdr == NULL || tt == NULL || (tt->flags & ASN1_TFLG_TAG_MASK) != ASN1_TFLG_EXPTAG ||
        ASN1_ITEM_ptr(tt->item) != ASN1_ITEM_rptr(X509_ALGOR))
        return NULL;
    return (X509_ALGOR **)((char *)hdr + tt->offset);
}

/* Where decoded |hdr| keeps its senderNonce [5] (RFC 9810 §5.1.1), or NULL if this OpenSSL keeps it
 * otherwise. */
static ASN1_OCTET_STRING *const *hdr_sender_nonce_slot(const OSSL_CMP_PKIHEADER *hdr)
{
    const ASN1_TEMPLATE *tt = gw_asn1_field(ASN1_ITEM_rptr(OSSL_CMP_PKIHEADER), "senderNonce", 5, 0);

    if (hdr == NULL || tt == NULL || (tt->flags & ASN1_TFLG_TAG_MASK) != ASN1_TFLG_EXPTAG ||
        ASN1_ITEM_ptr(tt->item) != ASN1_ITEM_rptr(ASN1_OCTET_STRING))
        return NULL;
    return (ASN1_OCTET_STRING *const *)((const char *)hdr + tt->offset);
}

int gw_shim_sender_nonce(const OSSL_CMP_MSG *msg, unsigned char *buf, size_t cap, size_t *len)
{
    ASN1_OCTET_STRING *const *slot =
        msg != NULL ? hdr_sender_nonce_slot(OSSL_CMP_MSG_get0_header(msg)) : NULL;
    struct gw_hdr_info h;
    int rc = GW_ERR_INVAL;

    *len = 0;
    if (msg == NULL)
        return GW_ERR_INVAL;
    if (slot == NULL) { /* the slow way: the whole header encoded and walked */
        if (gw_shim_hdr_info(msg, &h) == 0 && h.sender_nonce_len <= cap) {
            memcpy(buf, h.sender_nonce, h.sender_nonce_len);
            *len = h.sender_nonce_len;
            rc = 0;
        }
        gw_shim_hdr_info_cleanup(&h);
        return rc;
    }
    return copy_octets(*slot, buf, cap, len);
}

X509_PUBKEY **cmp_tmpl_key_slot(const OSSL_CRMF_CERTTEMPLATE *tmpl)
{
    const ASN1_TEMPLATE *tt = gw_asn1_field(ASN1_ITEM_rptr(OSSL_CRMF_CERTTEMPLATE), "publicKey", 6, 0);

    if (tmpl == NULL || tt == NULL || (tt->flags & ASN1_TFLG_TAG_MASK) != ASN1_TFLG_IMPTAG ||
        ASN1_ITEM_ptr(tt->item) != ASN1_ITEM_rptr(X509_PUBKEY))
        return NULL;
    return (X509_PUBKEY **)((const char *)tmpl + tt->offset);
}

/* The public key of |tmpl| as OpenSSL decoded it (a reference), in *key; 0 if the template has none,
 * -1 if this OpenSSL places it otherwise. */
static int decoded_tmpl_key(const OSSL_CRMF_CERTTEMPLATE *tmpl, EVP_PKEY **key)
{
    X509_PUBKEY *const *slot = cmp_tmpl_key_slot(tmpl);

    *key = NULL;
    if (slot == NULL)
        return -1;
    if (*slot == NULL)
        return 0;
    ERR_set_mark();
    *key = X509_PUBKEY_get(*slot); /* NULL: a key OpenSSL could not decode */
    ERR_pop_to_mark();
    return 1;
}

const X509_PUBKEY *gw_shim_tmpl_get0_spki(const OSSL_CRMF_MSG *crm)
{
    X509_PUBKEY *const *slot = crm != NULL ? cmp_tmpl_key_slot(OSSL_CRMF_MSG_get0_tmpl(crm)) : NULL;

    return slot != NULL ? *slot : NULL;
}

/* Finds the element of the CertTemplate with context tag |tag| (IMPLICIT: RFC 4211 §5). */
static int tmpl_find(const OSSL_CRMF_MSG *crm, int tag, unsigned char **der, struct cmp_tlv *found)
{
    const OSSL_CRMF_CERTTEMPLATE *tmpl = crm != NULL ? OSSL_CRMF_MSG_get0_tmpl(crm) : NULL;
    const unsigned char *p, *end;
    int len;

    *der = NULL;
    if (tmpl == NULL || (len = i2d_OSSL_CRMF_CERTTEMPLATE(tmpl, der)) <= 0 ||
        !cmp_der_open_seq(*der, len, &p, &end))
        return 0;
    while (cmp_tlv_next(&p, end, found))
        if (found->cls == V_ASN1_CONTEXT_SPECIFIC && found->tag == tag)
            return 1;
    return 0;
}

X509_PUBKEY *cmp_tmpl_spki(const struct cmp_tlv *t)
{
    unsigned char *spki;
    X509_PUBKEY *x;

    if (!t->constructed || (spki = OPENSSL_memdup(t->p, (size_t)t->total)) == NULL)
        return NULL;
    spki[0] = V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED; /* the SEQUENCE's bytes but for the tag */
    x = gw_x509_pubkey_d2i(spki, t->total);
    OPENSSL_free(spki);
    return x;
}

/* The key of a template's [6] IMPLICIT SubjectPublicKeyInfo |t|; NULL if it does not decode. */
static EVP_PKEY *spki_key(const struct cmp_tlv *t)
{
    X509_PUBKEY *x = cmp_tmpl_spki(t);
    EVP_PKEY *pkey = x != NULL ? X509_PUBKEY_get(x) : NULL;

    X509_PUBKEY_free(x);
    return pkey;
}

EVP_PKEY *gw_shim_tmpl_get1_pubkey(const OSSL_CRMF_MSG *crm)
{
    unsigned char *der = NULL;
    EVP_PKEY *pkey = NULL;
    struct cmp_tlv t;

    if (crm != NULL && decoded_tmpl_key(OSSL_CRMF_MSG_get0_tmpl(crm), &pkey) >= 0)
        return pkey;
    if (tmpl_find(crm, 6, &der, &t))
        pkey = spki_key(&t);
    OPENSSL_free(der);
    return pkey;
}

int cmp_next_seq(const unsigned char **pp, const unsigned char *end, struct cmp_tlv *t)
{
    return cmp_tlv_next(pp, end, t) && t->cls == V_ASN1_UNIVERSAL && t->tag == V_ASN1_SEQUENCE &&
           t->constructed;
}

int cmp_crm_tmpl_key(const struct cmp_tlv *msgs, struct cmp_tlv up[3], struct cmp_tlv *key)
{
    const unsigned char *p = msgs->cont, *end = msgs->cont + msgs->len;
    struct cmp_tlv id, f;
    int found = 0, prev = -1;

    if (!cmp_next_seq(&p, end, &up[0])) /* CertReqMsg */
        return -1;
    p = up[0].cont, end = up[0].cont + up[0].len;
    if (!cmp_next_seq(&p, end, &up[1])) /* certReq CertRequest */
        return -1;
    p = up[1].cont, end = up[1].cont + up[1].len;
    if (!cmp_tlv_next(&p, end, &id) || id.tag != V_ASN1_INTEGER || id.cls != V_ASN1_UNIVERSAL ||
        !cmp_next_seq(&p, end, &up[2]))
        return -1;
    /* CertTemplate: fields [0] to [9], each OPTIONAL, in this order */
    for (p = up[2].cont, end = up[2].cont + up[2].len; cmp_tlv_next(&p, end, &f); prev = f.tag) {
        if (f.cls != V_ASN1_CONTEXT_SPECIFIC || f.tag <= prev)
            return -1;
        if (f.tag == 6) {
            *key = f;
            found = 1;
        }
    }
    return p == end ? found : -1;
}

/* The key of the first CertReqMsg of CertReqMessages |msgs|, read in place: 1 with *key (NULL:
 * unreadable), 0 when the template has none, -1 when the structure is not as expected. */
static int crm_key(const struct cmp_tlv *msgs, EVP_PKEY **key)
{
    struct cmp_tlv up[3], f;
    int found = cmp_crm_tmpl_key(msgs, up, &f);

    if (found == 1)
        *key = spki_key(&f);
    return found;
}

/* OptionalValidity's [0]/[1] tag a CHOICE (Time), hence EXPLICIT whatever the module default. */
static int validity_time(const struct cmp_tlv *t, time_t *out)
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
    struct cmp_tlv v, t;
    int rc = 0;

    *not_before = *not_after = 0;
    if (crm == NULL || OSSL_CRMF_MSG_get0_tmpl(crm) == NULL)
        return GW_ERR_INVAL;
    if (!tmpl_find(crm, 4, &der, &v))
        goto out; /* absent */
    p = v.cont;
    end = v.cont + v.len;
    while (rc == 0 && cmp_tlv_next(&p, end, &t)) {
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
    struct cmp_tlv t;
    int len, type = -1;

    /* CertReqMsg ::= SEQUENCE { certReq, popo ProofOfPossession OPTIONAL, regInfo SEQUENCE OPTIONAL } */
    if (crm == NULL || (len = i2d_OSSL_CRMF_MSG(crm, &der)) <= 0 || !cmp_der_open_seq(der, len, &p, &end) ||
        !cmp_tlv_next(&p, end, &t))
        goto out;
    if (cmp_tlv_next(&p, end, &t) && t.cls == V_ASN1_CONTEXT_SPECIFIC && t.tag <= OSSL_CRMF_POPO_KEYAGREE)
        type = t.tag;
out:
    OPENSSL_free(der);
    return type;
}

/* Output size in bits of the digest |md_nid|, 0 if unknown. */
static int md_bits(int md_nid)
{
    const EVP_MD *md = md_nid != NID_undef ? EVP_get_digestbynid(md_nid) : NULL;

    return md != NULL ? EVP_MD_get_size(md) * 8 : 0;
}

/* HMAC algorithm identifiers of a PBM mac (RFC 9481 §6.1.1, RFC 8018), by their hash size. */
static int hmac_bits(int nid)
{
    static const struct {
        int hmac, md;
    } macs[] = {
        {NID_hmac_sha1, NID_sha1},        {NID_hmacWithSHA1, NID_sha1},     {NID_hmac_md5, NID_md5},
        {NID_hmacWithMD5, NID_md5},       {NID_hmacWithSHA224, NID_sha224}, {NID_hmacWithSHA256, NID_sha256},
        {NID_hmacWithSHA384, NID_sha384}, {NID_hmacWithSHA512, NID_sha512},
    };

    for (size_t i = 0; i < sizeof(macs) / sizeof(macs[0]); i++)
        if (macs[i].hmac == nid)
            return md_bits(macs[i].md);
    return 0;
}

/* PBMParameter (RFC 9810 §5.1.3.1): the weaker of owf and mac. */
static int pbm_hash_bits(const X509_ALGOR *alg)
{
    const ASN1_TYPE *param = alg->parameter;
    const unsigned char *p, *end;
    struct cmp_tlv salt, owf, it, mac;
    X509_ALGOR *a_owf = NULL, *a_mac = NULL;
    int bits = 0, mbits;

    if (param == NULL || param->type != V_ASN1_SEQUENCE || param->value.sequence == NULL ||
        !cmp_der_open_seq(param->value.sequence->data, param->value.sequence->length, &p, &end) ||
        !cmp_tlv_next(&p, end, &salt) || !cmp_tlv_next(&p, end, &owf) || !cmp_tlv_next(&p, end, &it) ||
        !cmp_tlv_next(&p, end, &mac))
        return 0;
    if ((a_owf = algor_at(&owf)) != NULL && (a_mac = algor_at(&mac)) != NULL) {
        bits = md_bits(OBJ_obj2nid(a_owf->algorithm));
        mbits = hmac_bits(OBJ_obj2nid(a_mac->algorithm));
        bits = mbits < bits ? mbits : bits;
    }
    X509_ALGOR_free(a_owf);
    X509_ALGOR_free(a_mac);
    return bits;
}

/* RSASSA-PSS-params (RFC 4055 §3.1): hashAlgorithm, SHA-1 when absent. */
static int pss_hash_bits(const X509_ALGOR *alg)
{
    RSA_PSS_PARAMS *pss = NULL;
    int bits = 0;

    if (alg->parameter == NULL || alg->parameter->type != V_ASN1_SEQUENCE)
        return 0;
    pss = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(RSA_PSS_PARAMS), alg->parameter);
    if (pss != NULL)
        bits = pss->hashAlgorithm == NULL ? md_bits(NID_sha1)
                                          : md_bits(OBJ_obj2nid(pss->hashAlgorithm->algorithm));
    RSA_PSS_PARAMS_free(pss);
    return bits;
}

int gw_shim_alg_hash_bits(const X509_ALGOR *alg)
{
    int nid, md_nid = NID_undef, pkey_nid = NID_undef;

    if (alg == NULL)
        return 0;
    nid = OBJ_obj2nid(alg->algorithm);
    if (nid == NID_id_PasswordBasedMAC)
        return pbm_hash_bits(alg);
    if (nid == NID_rsassaPss)
        return pss_hash_bits(alg);
    if (OBJ_find_sigid_algs(nid, &md_nid, &pkey_nid) != 1)
        return 0;
    /* RFC 8032: EdDSA hashes internally (SHA-512, SHAKE256), so the identifier names no digest */
    if (md_nid == NID_undef)
        return pkey_nid == NID_ED25519 || pkey_nid == NID_ED448 ? 512 : 0;
    return md_bits(md_nid);
}

int gw_shim_popo_hash_bits(const OSSL_CRMF_MSG *crm)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    struct cmp_tlv t;
    X509_ALGOR *alg = NULL;
    int len, bits = -1;

    /* popo [1] POPOSigningKey, IMPLICIT: { poposkInput [0] OPTIONAL, algorithmIdentifier, signature } */
    if (crm == NULL || (len = i2d_OSSL_CRMF_MSG(crm, &der)) <= 0 || !cmp_der_open_seq(der, len, &p, &end) ||
        !cmp_tlv_next(&p, end, &t) || !cmp_tlv_next(&p, end, &t) || t.cls != V_ASN1_CONTEXT_SPECIFIC ||
        t.tag != OSSL_CRMF_POPO_SIGNATURE || !t.constructed)
        goto out;
    bits = 0;
    p = t.cont;
    end = t.cont + t.len;
    if (!cmp_tlv_next(&p, end, &t))
        goto out;
    if (t.cls == V_ASN1_CONTEXT_SPECIFIC && t.tag == 0 && !cmp_tlv_next(&p, end, &t))
        goto out;
    if (t.cls == V_ASN1_UNIVERSAL && t.tag == V_ASN1_SEQUENCE && (alg = algor_at(&t)) != NULL)
        bits = gw_shim_alg_hash_bits(alg);
out:
    X509_ALGOR_free(alg);
    OPENSSL_free(der);
    return bits;
}

int cmp_open_msg(const OSSL_CMP_MSG *msg, const unsigned char *der, size_t der_len, unsigned char **own,
                 const unsigned char **p, const unsigned char **end)
{
    int len;

    *own = NULL;
    if (der != NULL && der_len <= INT_MAX && cmp_der_open_seq(der, (long)der_len, p, end))
        return 1;
    return (len = i2d_OSSL_CMP_MSG(msg, own)) > 0 && cmp_der_open_seq(*own, len, p, end);
}

/* The requested key of PKIBody content |t| (|body| ir, cr, kur or p10cr), as gw_shim_get1_requested_key. */
static EVP_PKEY *body_key(const struct cmp_tlv *t, int body, int *has_key)
{
    const unsigned char *q = t->cont, *end = t->cont + t->len;
    OSSL_CRMF_MSGS *crms = NULL;
    X509_REQ *csr = NULL;
    EVP_PKEY *key = NULL;
    struct cmp_tlv msgs;
    int found;

    if (body == GW_CMP_BODY_P10CR) {
        if ((csr = d2i_X509_REQ(NULL, &q, t->len)) != NULL && (key = X509_REQ_get_pubkey(csr)) == NULL)
            *has_key = 0; /* a CSR without a readable key fails its self-signature check anyway */
        X509_REQ_free(csr);
        return key;
    }
    /* read in place: decoding the whole CertReqMessages would decode the key a second time */
    if (cmp_next_seq(&q, end, &msgs) && q == end && (found = crm_key(&msgs, &key)) >= 0) {
        *has_key = found; /* 0: no key in the template (RFC 9483 central key generation) */
        return key;
    }
    q = t->cont;
    if ((crms = d2i_OSSL_CRMF_MSGS(NULL, &q, t->len)) != NULL && sk_OSSL_CRMF_MSG_num(crms) > 0 &&
        (key = gw_shim_tmpl_get1_pubkey(sk_OSSL_CRMF_MSG_value(crms, 0))) == NULL)
        *has_key = 0;
    sk_OSSL_CRMF_MSG_pop_free(crms, OSSL_CRMF_MSG_free);
    return key;
}

EVP_PKEY *gw_shim_get1_requested_key(const OSSL_CMP_MSG *msg, const unsigned char *der, size_t der_len,
                                     int *has_key)
{
    unsigned char *own = NULL;
    const unsigned char *p, *end;
    EVP_PKEY *key = NULL;
    const void *content;
    struct cmp_tlv t;
    int body = OSSL_CMP_MSG_get_bodytype(msg), found;

    *has_key = 0;
    if (body != GW_CMP_BODY_IR && body != GW_CMP_BODY_CR && body != GW_CMP_BODY_KUR &&
        body != GW_CMP_BODY_P10CR)
        return NULL;
    *has_key = 1;
    /* as OpenSSL decoded it: a key decoded again costs a decoder of its own in 3.0 */
    if ((content = cmp_decoded_body(msg, body)) != NULL) {
        if (body == GW_CMP_BODY_P10CR) {
            if ((key = X509_REQ_get_pubkey((X509_REQ *)content)) == NULL)
                *has_key = 0; /* as below */
            return key;
        }
        if (sk_OSSL_CRMF_MSG_num(content) > 0 &&
            (found = decoded_tmpl_key(OSSL_CRMF_MSG_get0_tmpl(sk_OSSL_CRMF_MSG_value(content, 0)), &key)) >=
                0) {
            *has_key = found;
            return key;
        }
    }
    /* PKIBody is an EXPLICIT [n] around CertReqMessages (ir, cr, kur) or a CertificationRequest (p10cr) */
    if (cmp_open_msg(msg, der, der_len, &own, &p, &end) && cmp_tlv_next(&p, end, &t) &&
        cmp_tlv_next(&p, end, &t) && t.cls == V_ASN1_CONTEXT_SPECIFIC)
        key = body_key(&t, body, has_key);
    OPENSSL_free(own);
    return key;
}

int gw_shim_pkisi_status(const OSSL_CMP_PKISI *si)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end, *q;
    ASN1_INTEGER *st = NULL;
    struct cmp_tlv t;
    int64_t v;
    int len, ret = -1;

    /* PKIStatusInfo ::= SEQUENCE { status PKIStatus (INTEGER), statusString OPTIONAL, failInfo OPTIONAL } */
    if (si == NULL || (len = i2d_OSSL_CMP_PKISI(si, &der)) <= 0 || !cmp_der_open_seq(der, len, &p, &end) ||
        !cmp_tlv_next(&p, end, &t) || t.tag != V_ASN1_INTEGER || t.cls != V_ASN1_UNIVERSAL)
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

/* Opens the body of a PKIMessage of body |type|: |body| is its [type] TLV, [*pp, *end) the content of
   the SEQUENCE (OF) inside, e.g. an error's ErrorMsgContent. */
static int open_body(const unsigned char *der, long len, int type, struct cmp_tlv *hdr, struct cmp_tlv *body,
                     const unsigned char **pp, const unsigned char **end)
{
    const unsigned char *p, *e;
    struct cmp_tlv content;

    if (!cmp_der_open_seq(der, len, &p, &e) || !cmp_tlv_next(&p, e, hdr) || hdr->tag != V_ASN1_SEQUENCE ||
        !cmp_tlv_next(&p, e, body) || body->cls != V_ASN1_CONTEXT_SPECIFIC || body->tag != type)
        return 0;
    p = body->cont;
    if (!cmp_tlv_next(&p, body->cont + body->len, &content) || content.tag != V_ASN1_SEQUENCE)
        return 0;
    *pp = content.cont;
    *end = content.cont + content.len;
    return 1;
}

long gw_shim_error_code(const OSSL_CMP_MSG *msg)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end, *q;
    struct cmp_tlv hdr, body, t;
    ASN1_INTEGER *code = NULL;
    long ret = -1;
    int len;

    /* ErrorMsgContent ::= SEQUENCE { pKIStatusInfo, errorCode INTEGER OPTIONAL, errorDetails OPTIONAL } */
    if (msg == NULL || OSSL_CMP_MSG_get_bodytype(msg) != GW_CMP_BODY_ERROR ||
        (len = i2d_OSSL_CMP_MSG((OSSL_CMP_MSG *)msg, &der)) <= 0 ||
        !open_body(der, len, GW_CMP_BODY_ERROR, &hdr, &body, &p, &end) || !cmp_tlv_next(&p, end, &t) ||
        !cmp_tlv_next(&p, end, &t) || t.tag != V_ASN1_INTEGER || t.cls != V_ASN1_UNIVERSAL)
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
static unsigned char *build_error(const struct cmp_tlv *hdr, const struct cmp_tlv *prot,
                                  const unsigned char *si, int si_len, int *out_len)
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
static int find_protection(const unsigned char *der, long len, struct cmp_tlv *prot)
{
    const unsigned char *p, *end;
    struct cmp_tlv t;

    if (!cmp_der_open_seq(der, len, &p, &end) || !cmp_tlv_next(&p, end, &t) || !cmp_tlv_next(&p, end, &t))
        return 0;
    return cmp_tlv_next(&p, end, prot) && prot->cls == V_ASN1_CONTEXT_SPECIFIC && prot->tag == 0;
}

int gw_shim_error_set_status(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG **msg, const OSSL_CMP_PKISI *si,
                             const unsigned char *tid, size_t tid_len)
{
    unsigned char *der = NULL, *si_der = NULL, *out = NULL;
    const unsigned char *p, *end, *q;
    struct cmp_tlv hdr, body, prot;
    ASN1_OCTET_STRING *tid_os = NULL;
    OSSL_CMP_MSG *rewritten = NULL;
    int len, si_len, out_len = 0, has_prot, rc = GW_ERR_INVAL;

    if (ctx == NULL || msg == NULL || *msg == NULL || si == NULL || (tid != NULL && tid_len == 0) ||
        tid_len > GW_MAX_TID_LEN || OSSL_CMP_MSG_get_bodytype(*msg) != GW_CMP_BODY_ERROR)
        return GW_ERR_INVAL;
    if ((len = i2d_OSSL_CMP_MSG(*msg, &der)) <= 0 ||
        !open_body(der, len, GW_CMP_BODY_ERROR, &hdr, &body, &p, &end) ||
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

/* ---- rr: the reason code (RFC 9483 §4.2) ------------------------------------------------- */

/* Reads the CRLReason out of a DER Extensions TLV; 0 with CRL_REASON_NONE when it holds none. */
static int reason_of_exts(const struct cmp_tlv *ext, int *reason)
{
    const unsigned char *q = ext->p;
    X509_EXTENSIONS *exts = d2i_X509_EXTENSIONS(NULL, &q, ext->total);
    ASN1_ENUMERATED *e = NULL;
    int crit = -1, rc = GW_ERR_INVAL;
    long v;

    if (exts == NULL || q != ext->p + ext->total)
        goto out;
    if ((e = X509V3_get_d2i(exts, NID_crl_reason, &crit, NULL)) == NULL) {
        rc = crit == -1 ? 0 : GW_ERR_INVAL; /* -1: not there; -2: twice; >= 0: undecodable */
        goto out;
    }
    v = ASN1_ENUMERATED_get(e);
    /* RFC 5280 §5.3.1: 0..10, 7 unused */
    if (v < CRL_REASON_UNSPECIFIED || v > CRL_REASON_AA_COMPROMISE || v == 7)
        goto out;
    *reason = (int)v;
    rc = 0;
out:
    ASN1_ENUMERATED_free(e);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

int gw_shim_rr_reason(const OSSL_CMP_MSG *msg, int *reason)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    struct cmp_tlv hdr, body, details, tmpl, ext;
    int len, rc = GW_ERR_INVAL;

    *reason = CRL_REASON_NONE;
    /* [11] RevReqContent ::= SEQUENCE OF RevDetails
     *     { certDetails CertTemplate, crlEntryDetails Extensions OPTIONAL } */
    if (msg == NULL || OSSL_CMP_MSG_get_bodytype(msg) != GW_CMP_BODY_RR ||
        (len = i2d_OSSL_CMP_MSG((OSSL_CMP_MSG *)msg, &der)) <= 0 ||
        !open_body(der, len, GW_CMP_BODY_RR, &hdr, &body, &p, &end) || !cmp_tlv_next(&p, end, &details) ||
        details.tag != V_ASN1_SEQUENCE || !details.constructed)
        goto out;
    p = details.cont;
    end = details.cont + details.len;
    if (!cmp_tlv_next(&p, end, &tmpl) || tmpl.tag != V_ASN1_SEQUENCE)
        goto out;
    if (!cmp_tlv_next(&p, end, &ext)) {
        rc = p == end ? 0 : GW_ERR_INVAL; /* no crlEntryDetails */
        goto out;
    }
    if (ext.tag != V_ASN1_SEQUENCE || ext.cls != V_ASN1_UNIVERSAL || p != end)
        goto out;
    rc = reason_of_exts(&ext, reason);
out:
    if (rc != 0)
        *reason = CRL_REASON_NONE;
    OPENSSL_free(der);
    return rc;
}

int gw_shim_body_count(const OSSL_CMP_MSG *msg, const unsigned char *der, size_t der_len)
{
    unsigned char *own = NULL;
    const unsigned char *p = NULL, *end = NULL;
    struct cmp_tlv hdr, body, t;
    int len, n = 0;

    /* the bytes |msg| was decoded from, when given: a certConf encoded again costs more than its walk */
    if (der == NULL || der_len > INT_MAX) {
        len = msg != NULL ? i2d_OSSL_CMP_MSG((OSSL_CMP_MSG *)msg, &own) : 0;
        der = own;
    } else {
        len = (int)der_len;
    }
    if (msg == NULL || len <= 0 ||
        !open_body(der, len, OSSL_CMP_MSG_get_bodytype(msg), &hdr, &body, &p, &end))
        n = -1;
    while (n >= 0 && p < end)
        n = cmp_tlv_next(&p, end, &t) ? n + 1 : -1;
    OPENSSL_free(own);
    return n;
}
