/*
 * OpenSSL 3.0 shim: a request decoded with fewer public-key decoders (docs/design.md O9). OpenSSL
 * 3.0 builds a decoder (every key manager and decoder of the providers looked up, under locks) for
 * each public key it parses: the certificates of extraCerts and the template's key of an ir, cr or
 * kur. The message is decoded without them and they are set from cheaper sources; anything that
 * does not go this way is decoded the plain way, so that what is accepted and refused does not
 * change.
 */
#include "gateway/cmp/shim.h"
#include "gateway/cmp/shim_local.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"

#include <limits.h>
#include <string.h>
#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/x509.h>

/*
 * Whether constructed |t| holds an AlgorithmIdentifier (an OID first), then a BIT STRING, and nothing else.
 * The BIT STRING may be constructed (in pieces, BER): OpenSSL joins them and decodes the key all the same.
 */
static int spki_shaped(const struct cmp_tlv *t)
{
    const unsigned char *p = t->cont, *end = t->cont + t->len, *q;
    struct cmp_tlv alg, key, id;

    if (!cmp_next_seq(&p, end, &alg) || !cmp_tlv_next(&p, end, &key) || p != end ||
        key.tag != V_ASN1_BIT_STRING || key.cls != V_ASN1_UNIVERSAL)
        return 0;
    q = alg.cont;
    return cmp_tlv_next(&q, alg.cont + alg.len, &id) && id.tag == V_ASN1_OBJECT && id.cls == V_ASN1_UNIVERSAL;
}

/*
 * The extensions OpenSSL 3.0 decodes as it decodes a CRL (a crlann's, a genm ITAV's currentCRL, an rp's),
 * before any check: the CRL's issuingDistributionPoint and authorityKeyIdentifier, each entry's
 * certificateIssuer (id-ce 28, 35, 29). Their GeneralNames lie in an OCTET STRING, which the walk does not
 * look into, yet cost as much as elements outside one: 60 KiB of them, 30 000 names, 90 000 allocations
 * where a message at GW_MAX_MSG_ELEMENTS has some 6000. Other extensions stay undecoded until asked for,
 * a certificate's too.
 */
static const unsigned char decoded_ext_ids[][3] = {
    {0x55, 0x1d, 0x1c}, {0x55, 0x1d, 0x23}, {0x55, 0x1d, 0x1d}};

/*
 * Whether constructed |t| is an Extension (RFC 5280 §4.1: extnID, critical BOOLEAN or none, extnValue OCTET
 * STRING) of decoded_ext_ids: 1 with its extnValue in *val, else 0.
 */
static int decoded_ext(const struct cmp_tlv *t, struct cmp_tlv *val)
{
    const unsigned char *p = t->cont, *end = t->cont + t->len;
    struct cmp_tlv id;

    if (t->tag != V_ASN1_SEQUENCE || t->cls != V_ASN1_UNIVERSAL || !cmp_tlv_next(&p, end, &id) ||
        id.tag != V_ASN1_OBJECT || id.cls != V_ASN1_UNIVERSAL || id.len != 3 || !cmp_tlv_next(&p, end, val))
        return 0;
    if (val->tag == V_ASN1_BOOLEAN && val->cls == V_ASN1_UNIVERSAL && !cmp_tlv_next(&p, end, val))
        return 0;
    if (p != end || val->tag != V_ASN1_OCTET_STRING || val->cls != V_ASN1_UNIVERSAL)
        return 0;
    for (size_t i = 0; i < sizeof(decoded_ext_ids) / sizeof(decoded_ext_ids[0]); i++)
        if (memcmp(id.cont, decoded_ext_ids[i], sizeof(decoded_ext_ids[i])) == 0)
            return 1;
    return 0;
}

/* What gw_shim_der_count counts. */
struct der_count {
    long keys, elements;
};

static int count_in(const unsigned char *p, const unsigned char *end, int depth, struct der_count *n);

/* gw_shim_der_count for element |t| and what it holds, |depth| levels down: adds to *n; 1, or 0 if not DER.
 */
static int count_one(const struct cmp_tlv *t, int depth, struct der_count *n)
{
    struct cmp_tlv val;

    n->elements++;
    if (!t->constructed) {
        /* a SEQUENCE or SET is constructed (X.690 §8.9.1, §8.11.1), but OpenSSL decodes a SEQUENCE OF or
           SET OF sent primitive, contents this walk does not look into */
        if (t->cls == V_ASN1_UNIVERSAL && (t->tag == V_ASN1_SEQUENCE || t->tag == V_ASN1_SET))
            return 0;
        /* so is one under an IMPLICIT tag (a template's extensions, a CSR's attributes): as many elements
           as its contents could hold, two bytes each at least (none holds a key) */
        if (t->cls != V_ASN1_UNIVERSAL)
            n->elements += t->len / 2;
        return 1;
    }
    n->keys += spki_shaped(t);
    /* an extension OpenSSL decodes with its CRL: as many elements as its value could hold, two bytes each
       at least, whole or in pieces (BER), whatever GeneralName they are */
    if (decoded_ext(t, &val))
        n->elements += val.len / 2;
    return depth >= GW_DER_SCAN_DEPTH || count_in(t->cont, t->cont + t->len, depth + 1, n);
}

/* count_one for each element of [p, end), |depth| levels down; 1, or 0 if not DER. */
static int count_in(const unsigned char *p, const unsigned char *end, int depth, struct der_count *n)
{
    struct cmp_tlv t;

    while (cmp_tlv_next(&p, end, &t))
        if (!count_one(&t, depth, n))
            return 0;
    return p == end;
}

int gw_shim_der_count(const unsigned char *der, size_t len, int *keys, int *elements)
{
    const unsigned char *p = der;
    struct cmp_tlv t;
    struct der_count n = {0, 0};

    *keys = *elements = 0;
    if (der == NULL || len > INT_MAX || !cmp_tlv_next(&p, der + len, &t) || !count_one(&t, 0, &n))
        return GW_ERR_INVAL;
    *keys = (int)n.keys; /* at most one a byte of |len| */
    *elements = (int)n.elements;
    return 0;
}

/* Appends the certificates of extraCerts |tagged| ([1] EXPLICIT SEQUENCE OF CMPCertificate) to |out|;
 * 1, or 0 if malformed or past the caps. */
static int add_certs(const struct cmp_tlv *tagged, STACK_OF(X509) *out)
{
    const unsigned char *p = tagged->cont, *end = tagged->cont + tagged->len;
    struct cmp_tlv seq, t;
    X509 *x;

    if (!cmp_next_seq(&p, end, &seq) || p != end || seq.total > GW_MAX_EXTRA_CERTS_BYTES)
        return 0;
    p = seq.cont, end = seq.cont + seq.len;
    while (cmp_tlv_next(&p, end, &t)) {
        if (sk_X509_num(out) >= GW_MAX_EXTRA_CERTS || (x = gw_x509_parse_cached(t.p, t.total)) == NULL)
            return 0;
        if (sk_X509_push(out, x) <= 0) {
            X509_free(x);
            return 0;
        }
    }
    return p == end;
}

STACK_OF(X509) *gw_shim_get1_extra_certs(const OSSL_CMP_MSG *msg, const unsigned char *der, size_t der_len)
{
    unsigned char *own = NULL;
    const unsigned char *p, *end;
    STACK_OF(X509) *out = sk_X509_new_null();
    struct cmp_tlv t;
    int ok = 0;

    /* PKIMessage ::= SEQUENCE { header, body, protection [0] OPTIONAL, extraCerts [1] OPTIONAL } */
    if (out == NULL || msg == NULL || !cmp_open_msg(msg, der, der_len, &own, &p, &end) ||
        !cmp_tlv_next(&p, end, &t) || !cmp_tlv_next(&p, end, &t))
        goto out;
    ok = 1;
    while (ok && cmp_tlv_next(&p, end, &t))
        if (t.cls == V_ASN1_CONTEXT_SPECIFIC && t.tag == 1)
            ok = add_certs(&t, out);
out:
    OPENSSL_free(own);
    if (!ok) {
        sk_X509_pop_free(out, X509_free);
        return NULL;
    }
    return out;
}

/* Where decoded |msg| keeps its extraCerts; NULL as gw_asn1_field. */
static STACK_OF(X509) **extra_certs_slot(OSSL_CMP_MSG *msg)
{
    const ASN1_TEMPLATE *tt =
        gw_asn1_field(ASN1_ITEM_rptr(OSSL_CMP_MSG), "extraCerts", 1, ASN1_TFLG_SEQUENCE_OF);

    if (tt == NULL || (tt->flags & ASN1_TFLG_TAG_MASK) != ASN1_TFLG_EXPTAG ||
        ASN1_ITEM_ptr(tt->item) != ASN1_ITEM_rptr(X509))
        return NULL;
    return (STACK_OF(X509) **)((char *)msg + tt->offset);
}

STACK_OF(X509) *gw_shim_swap_extra_certs(OSSL_CMP_MSG *msg, STACK_OF(X509) *certs, int *ok)
{
    STACK_OF(X509) **slot = extra_certs_slot(msg), *old;

    *ok = slot != NULL;
    if (slot == NULL)
        return NULL;
    old = *slot;
    *slot = certs;
    return old;
}

/* The levels down to a cut: the message, its body, CertReqMessages, CertReqMsg, CertRequest,
 * CertTemplate. */
#define CUT_LEVELS 6

/*
 * The DER of |n| nested TLVs |up| (each inside the one before) without |what| (inside the last;
 * NULL: nothing), each length written anew; up[0]'s content may end before its TLV does (the
 * elements after it left out). OPENSSL_malloc'ed, NULL on failure.
 */
static unsigned char *der_cut(const struct cmp_tlv *up, int n, const struct cmp_tlv *what, int *out_len)
{
    long content[CUT_LEVELS], old = what != NULL ? what->total : 0, now = 0;
    const unsigned char *from;
    unsigned char *buf, *q;

    for (int i = n - 1; i >= 0; i--) {
        content[i] = up[i].len - old + now;
        if (content[i] < 0 || content[i] > INT_MAX / 2 ||
            (now = ASN1_object_size(1, (int)content[i], up[i].tag)) <= 0)
            return NULL;
        old = up[i].total;
    }
    if ((buf = OPENSSL_malloc((size_t)now)) == NULL)
        return NULL;
    q = buf;
    for (int i = 0; i < n; i++) { /* each header, and what comes before the next level */
        from = i + 1 < n ? up[i + 1].p : what != NULL ? what->p : up[i].cont + up[i].len;
        ASN1_put_object(&q, 1, (int)content[i], up[i].tag, up[i].cls);
        memcpy(q, up[i].cont, (size_t)(from - up[i].cont));
        q += from - up[i].cont;
    }
    for (int i = n - 1; i >= 0; i--) { /* what comes after it, innermost first */
        from = i + 1 < n      ? up[i + 1].p + up[i + 1].total
               : what != NULL ? what->p + what->total
                              : up[i].cont + up[i].len;
        memcpy(q, from, (size_t)(up[i].cont + up[i].len - from));
        q += up[i].cont + up[i].len - from;
    }
    *out_len = (int)(q - buf);
    return buf;
}

/* The template's publicKey of the message with levels |up|, up[1] its body, if it has one to take out. */
static int find_key(struct cmp_tlv *up, struct cmp_tlv *key)
{
    const unsigned char *p = up[1].cont, *end = up[1].cont + up[1].len;

    /* PKIBody is an EXPLICIT [n] around CertReqMessages for an ir, a cr or a kur */
    if (up[1].cls != V_ASN1_CONTEXT_SPECIFIC || !up[1].constructed ||
        (up[1].tag != GW_CMP_BODY_IR && up[1].tag != GW_CMP_BODY_CR && up[1].tag != GW_CMP_BODY_KUR) ||
        !cmp_next_seq(&p, end, &up[2]) || p != end)
        return 0;
    /* [6] IMPLICIT SubjectPublicKeyInfo, its tag in one byte (DER) */
    return cmp_crm_tmpl_key(&up[2], &up[3], key) == 1 && key->p[0] == 0xa6;
}

/* Where decoded |msg| (body |body|) keeps the publicKey of its first template; NULL if elsewhere. */
static X509_PUBKEY **msg_key_slot(const OSSL_CMP_MSG *msg, int body)
{
    const STACK_OF(OSSL_CRMF_MSG) *crms = cmp_decoded_body(msg, body);

    return crms != NULL && sk_OSSL_CRMF_MSG_num(crms) > 0
               ? cmp_tmpl_key_slot(OSSL_CRMF_MSG_get0_tmpl(sk_OSSL_CRMF_MSG_value(crms, 0)))
               : NULL;
}

int gw_shim_central_keygen(const OSSL_CMP_MSG *msg)
{
    int body = msg != NULL ? OSSL_CMP_MSG_get_bodytype(msg) : -1, len = -1;
    X509_PUBKEY **slot;
    const unsigned char *bits = NULL;

    if ((body != GW_CMP_BODY_IR && body != GW_CMP_BODY_CR && body != GW_CMP_BODY_KUR) ||
        (slot = msg_key_slot(msg, body)) == NULL)
        return 0;
    return *slot == NULL || (X509_PUBKEY_get0_param(NULL, &bits, &len, NULL, *slot) == 1 && len == 0);
}

/* The PKIMessage at |der| (|len| bytes) as der_cut's outermost level, its contents |cont|..|end|. */
static struct cmp_tlv whole_message(const unsigned char *der, long len, const unsigned char *cont,
                                    const unsigned char *end)
{
    return (struct cmp_tlv){.p = der,
                            .cont = cont,
                            .len = end - cont,
                            .total = len,
                            .tag = V_ASN1_SEQUENCE,
                            .cls = V_ASN1_UNIVERSAL,
                            .constructed = 1};
}

/*
 * A certConf whose first CertStatus ends in hashAlg ([0], RFC 9810 §5.3.18, CMP version 3), which OpenSSL
 * 3.0's CertStatus lacks: the message is decoded without it and without its extraCerts (the lengths around
 * them written anew). Its protection, over the bytes as sent, cannot be verified so.
 */
OSSL_CMP_MSG *gw_shim_d2i_hash_alg(const unsigned char *der, long len)
{
    const unsigned char *p, *end, *q, *rest;
    struct cmp_tlv up[4], t = {0}, last = {0};
    OSSL_CMP_MSG *msg = NULL;
    unsigned char *buf = NULL;
    int buf_len, n = 0;

    ERR_set_mark();
    if (der == NULL || len > INT_MAX || !cmp_der_open_seq(der, len, &p, &end))
        goto out;
    up[0] = whole_message(der, len, p, end);
    /* PKIMessage { header, body [24] CertConfirmContent ::= SEQUENCE OF CertStatus, ... } */
    if (!cmp_tlv_next(&p, end, &t) || !cmp_tlv_next(&p, end, &up[1]) ||
        up[1].cls != V_ASN1_CONTEXT_SPECIFIC || up[1].tag != GW_CMP_BODY_CERTCONF || !up[1].constructed)
        goto out;
    /* nor its extraCerts, last: the message is refused before anything would look at them */
    for (rest = p; cmp_tlv_next(&rest, end, &t);)
        if (rest == end && t.cls == V_ASN1_CONTEXT_SPECIFIC && t.tag == 1)
            up[0].len = t.p - up[0].cont;
    p = up[1].cont;
    if (!cmp_next_seq(&p, up[1].cont + up[1].len, &up[2]))
        goto out;
    p = up[2].cont;
    if (!cmp_next_seq(&p, up[2].cont + up[2].len, &up[3]))
        goto out;
    /* CertStatus { certHash, certReqId, statusInfo OPTIONAL, hashAlg [0] OPTIONAL }: [0] comes last */
    for (p = up[3].cont; n < 5 && cmp_tlv_next(&p, up[3].cont + up[3].len, &t); n++)
        last = t;
    if (n < 3 || n > 4 || p != up[3].cont + up[3].len || last.cls != V_ASN1_CONTEXT_SPECIFIC ||
        last.tag != 0 || (buf = der_cut(up, 4, &last, &buf_len)) == NULL)
        goto out;
    q = buf;
    if ((msg = d2i_OSSL_CMP_MSG(NULL, &q, buf_len)) != NULL && q != buf + buf_len) {
        OSSL_CMP_MSG_free(msg);
        msg = NULL;
    }
out:
    OPENSSL_free(buf);
    ERR_pop_to_mark();
    return msg;
}

/*
 * The extraCerts of a request are mostly the same few certificates (a device's own, its CA's): they
 * are set from the certificates parsed lately (gw_x509_parse_cached: the same DER, so the same
 * certificates), and only once the engine's first checks passed (gw_shim_set_extra_certs): a message
 * those refuse costs none of them, however many new ones it carries. The template's key is new with
 * each request: gw_x509_pubkey_d2i reads an EC key without a decoder. The message is decoded with
 * neither (their enclosing lengths written anew), then the key is set where OpenSSL keeps it.
 */
OSSL_CMP_MSG *gw_shim_d2i_msg_later(const unsigned char **pp, long len, int *later)
{
    const unsigned char *p, *end;
    struct cmp_tlv up[CUT_LEVELS], el[5], key;
    X509_PUBKEY *xk, **kslot;
    OSSL_CMP_MSG *msg = NULL;
    unsigned char *buf = NULL;
    const unsigned char *q;
    int n = 0, has_extra, has_key, buf_len;

    *later = 0;
    ERR_set_mark(); /* the walks' errors come with input the plain way refuses too, and it reports them */
    if (len > INT_MAX || !cmp_der_open_seq(*pp, len, &p, &end)) /* der_cut counts in int */
        goto plain;
    /* PKIMessage ::= SEQUENCE { header, body, protection [0] OPTIONAL, extraCerts [1] OPTIONAL } */
    up[0] = whole_message(*pp, len, p, end);
    while (n < 5 && cmp_tlv_next(&p, end, &el[n]))
        n++;
    if (p != end || n < 2 || n > 4)
        goto plain;
    has_extra =
        n >= 3 && el[n - 1].cls == V_ASN1_CONTEXT_SPECIFIC && el[n - 1].tag == 1 && el[n - 1].constructed;
    up[1] = el[1];
    has_key = find_key(up, &key);
    if (!has_extra && !has_key)
        goto plain;
    if (has_extra)
        up[0].len = el[n - 1].p - up[0].cont;
    /* with the key, cut down to its template; else the message alone, shortened before extraCerts */
    if ((buf = der_cut(up, has_key ? CUT_LEVELS : 1, has_key ? &key : NULL, &buf_len)) == NULL)
        goto plain;
    q = buf;
    if ((msg = d2i_OSSL_CMP_MSG(NULL, &q, buf_len)) == NULL || q != buf + buf_len)
        goto plain;
    if (has_extra && extra_certs_slot(msg) == NULL)
        goto plain;
    /* the key last, once the rest decoded: a message refused anyway costs no key */
    if (has_key) {
        if ((kslot = msg_key_slot(msg, up[1].tag)) == NULL || *kslot != NULL ||
            (xk = cmp_tmpl_spki(&key)) == NULL)
            goto plain;
        *kslot = xk;
    }
    OPENSSL_free(buf);
    ERR_pop_to_mark();
    *pp = end;
    *later = has_extra;
    return msg;

plain:
    OSSL_CMP_MSG_free(msg);
    OPENSSL_free(buf);
    ERR_pop_to_mark();
    return d2i_OSSL_CMP_MSG(NULL, pp, len);
}

int gw_shim_set_extra_certs(OSSL_CMP_MSG *msg, const unsigned char *der, long len)
{
    const unsigned char *p, *end, *q = der;
    STACK_OF(X509) **slot = msg != NULL ? extra_certs_slot(msg) : NULL, *certs = NULL;
    struct cmp_tlv t, last = {0};
    OSSL_CMP_MSG *plain = NULL;
    int n = 0, ok = 0;

    if (slot == NULL || *slot != NULL || der == NULL || !cmp_der_open_seq(der, len, &p, &end))
        return GW_ERR_INVAL;
    for (; cmp_tlv_next(&p, end, &t); n++)
        last = t;
    /* after the header and the body (whose tag may be [1] too: an ip) */
    if (p != end || n < 3 || last.cls != V_ASN1_CONTEXT_SPECIFIC || last.tag != 1)
        return GW_ERR_INVAL;
    if ((certs = sk_X509_new_null()) != NULL && add_certs(&last, certs)) {
        *slot = certs;
        return 0;
    }
    sk_X509_pop_free(certs, X509_free);
    /* malformed or past the caps: as OpenSSL decodes them, if it does (the signer's check refuses them) */
    ERR_set_mark();
    if ((plain = d2i_OSSL_CMP_MSG(NULL, &q, len)) != NULL && q == der + len)
        *slot = gw_shim_swap_extra_certs(plain, NULL, &ok);
    OSSL_CMP_MSG_free(plain);
    ERR_pop_to_mark();
    return ok ? 0 : GW_ERR_INVAL;
}

OSSL_CMP_MSG *gw_shim_d2i_msg(const unsigned char **pp, long len)
{
    const unsigned char *der = *pp;
    int later = 0;
    OSSL_CMP_MSG *msg = gw_shim_d2i_msg_later(pp, len, &later);

    if (msg != NULL && later && gw_shim_set_extra_certs(msg, der, (long)(*pp - der)) != 0) {
        OSSL_CMP_MSG_free(msg);
        *pp = der;
        return NULL;
    }
    return msg;
}
