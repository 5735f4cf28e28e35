/*
 * OpenSSL 3.0 shim: DER walks over public i2d output (docs/design.md O9). Every walk goes
 * through cmp_tlv_next(), which bounds each element by its parent, so truncated or lying lengths end
 * the walk with GW_ERR_INVAL instead of reading past the buffer. The PKIHeader is read in shim_hdr.c.
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

X509_ALGOR *cmp_algor_at(const struct cmp_tlv *t)
{
    const unsigned char *p = t->p;
    X509_ALGOR *alg = d2i_X509_ALGOR(NULL, &p, t->total);

    if (alg != NULL && p != t->p + t->total) {
        X509_ALGOR_free(alg);
        return NULL;
    }
    return alg;
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
    if ((a_owf = cmp_algor_at(&owf)) != NULL && (a_mac = cmp_algor_at(&mac)) != NULL) {
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
    if (t.cls == V_ASN1_UNIVERSAL && t.tag == V_ASN1_SEQUENCE && (alg = cmp_algor_at(&t)) != NULL)
        bits = gw_shim_alg_hash_bits(alg);
out:
    X509_ALGOR_free(alg);
    OPENSSL_free(der);
    return bits;
}

int gw_shim_popo_signs_input(const OSSL_CRMF_MSG *crm)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    struct cmp_tlv t;
    int len, found = 0;

    /* popo [1] POPOSigningKey, IMPLICIT: { poposkInput [0] OPTIONAL, algorithmIdentifier, signature } */
    if (crm != NULL && (len = i2d_OSSL_CRMF_MSG(crm, &der)) > 0 && cmp_der_open_seq(der, len, &p, &end) &&
        cmp_tlv_next(&p, end, &t) && cmp_tlv_next(&p, end, &t) && t.cls == V_ASN1_CONTEXT_SPECIFIC &&
        t.tag == OSSL_CRMF_POPO_SIGNATURE && t.constructed) {
        p = t.cont;
        end = t.cont + t.len;
        found = cmp_tlv_next(&p, end, &t) && t.cls == V_ASN1_CONTEXT_SPECIFIC && t.tag == 0;
    }
    OPENSSL_free(der);
    return found;
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
