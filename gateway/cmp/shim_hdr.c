/*
 * OpenSSL 3.0 shim: the PKIHeader read (docs/design.md O9): the fields the engine checks before
 * OpenSSL sees a message (protection algorithm and PBM parameters, sender, senderKID,
 * transactionID, nonces, messageTime), read in place from OpenSSL's decoded header where this
 * OpenSSL keeps them as expected and by a bounded DER walk otherwise; the certProfile of its
 * generalInfo (RFC 9483 §3.1), its senderNonce, and where it keeps its protectionAlg.
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
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* An OCTET STRING into |buf| (NULL: absent, left at 0 bytes): 0, GW_ERR_LIMIT over |cap|, else GW_ERR_INVAL.
 */
static int copy_octets(const ASN1_OCTET_STRING *os, unsigned char *buf, size_t cap, size_t *out_len)
{
    if (os == NULL)
        return 0;
    if (os->length < 0)
        return GW_ERR_INVAL;
    if ((size_t)os->length > cap)
        return GW_ERR_LIMIT;
    if (os->length > 0)
        memcpy(buf, os->data, (size_t)os->length);
    *out_len = (size_t)os->length;
    return 0;
}

/*
 * |os| into the header field |f| of |h| (copy_octets). One over its cap is noted in |h| (over,
 * over_len), for the engine to tell the client which field and how long: an RFC 9483 §3.1 client
 * sends 16 bytes, and one that sends more is told the limit, as one that sends fewer is.
 */
static int put_field(struct gw_hdr_info *h, enum gw_hdr_field f, const ASN1_OCTET_STRING *os)
{
    int rc;

    switch (f) {
    case GW_HDR_SENDER_KID:
        rc = copy_octets(os, h->sender_kid, sizeof(h->sender_kid), &h->sender_kid_len);
        break;
    case GW_HDR_TID:
        rc = copy_octets(os, h->tid, sizeof(h->tid), &h->tid_len);
        break;
    default:
        rc = copy_octets(os, h->sender_nonce, sizeof(h->sender_nonce), &h->sender_nonce_len);
        break;
    }
    if (rc == GW_ERR_LIMIT) {
        h->over = f;
        h->over_len = (size_t)os->length;
    }
    return rc;
}

/* An OCTET STRING TLV (the content of an EXPLICIT tag) into the header field |f| of |h| (put_field). */
static int get_octets(const struct cmp_tlv *tag, struct gw_hdr_info *h, enum gw_hdr_field f)
{
    const unsigned char *p = tag->cont;
    ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &p, tag->len);
    int rc = GW_ERR_INVAL;

    if (os != NULL && p == tag->cont + tag->len)
        rc = put_field(h, f, os);
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
    if ((a_owf = cmp_algor_at(&owf)) != NULL)
        h->pbm_owf_nid = OBJ_obj2nid(a_owf->algorithm);
    if (cmp_tlv_next(&p, end, &mac) && (a_mac = cmp_algor_at(&mac)) != NULL)
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
        return get_octets(t, h, GW_HDR_SENDER_KID);
    case 4:
        return get_octets(t, h, GW_HDR_TID);
    case 5:
        return get_octets(t, h, GW_HDR_SENDER_NONCE);
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
        if ((rc = hdr_optional(&t, out)) != 0)
            goto out;
    rc = p == end ? 0 : GW_ERR_INVAL;
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
    int rc;

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
    /* in the walk's order: the first field over its cap is the one noted */
    if ((rc = put_field(out, GW_HDR_SENDER_KID, hdr_field(hdr, hdr_layout.sender_kid))) != 0 ||
        (rc = put_field(out, GW_HDR_TID, hdr_field(hdr, hdr_layout.tid))) != 0)
        return rc;
    return put_field(out, GW_HDR_SENDER_NONCE, hdr_field(hdr, hdr_layout.sender_nonce));
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
    return copy_octets(*slot, buf, cap, len) == 0 ? 0 : GW_ERR_INVAL;
}
