/*
 * OpenSSL 3.0 shim, the genp side: ITAV values built from DER (RFC 9483 §4.3) and read from it,
 * where 3.0 has no typed builders or getters (docs/design.md O9, O11).
 */
#include "gateway/cmp/shim.h"
#include "gateway/cmp/shim_local.h"
#include "base/err.h"
#include "base/x509.h"

#include <stdint.h>
#include <string.h>
#include <time.h>
#include <openssl/asn1.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* An ITAV of |type| whose value is the DER SEQUENCE |der| (taken over, also on failure); NULL: absent. */
static OSSL_CMP_ITAV *itav_of(const ASN1_OBJECT *type, unsigned char *der, int len)
{
    ASN1_OBJECT *obj = type != NULL ? OBJ_dup(type) : NULL;
    ASN1_STRING *str = NULL;
    ASN1_TYPE *val = NULL;
    OSSL_CMP_ITAV *itav = NULL;

    if (obj == NULL)
        goto err;
    if (der != NULL) {
        if ((str = ASN1_STRING_new()) == NULL || (val = ASN1_TYPE_new()) == NULL)
            goto err;
        ASN1_STRING_set0(str, der, len);
        der = NULL;
        ASN1_TYPE_set(val, V_ASN1_SEQUENCE, str);
        str = NULL;
    }
    if ((itav = OSSL_CMP_ITAV_create(obj, val)) == NULL)
        goto err;
    return itav;
err:
    OPENSSL_free(der);
    ASN1_STRING_free(str);
    ASN1_TYPE_free(val);
    ASN1_OBJECT_free(obj);
    return NULL;
}

OSSL_CMP_ITAV *gw_shim_itav_certs(const ASN1_OBJECT *type, const STACK_OF(X509) *certs)
{
    int n = certs != NULL ? sk_X509_num(certs) : 0, len = 0;
    unsigned char **parts = NULL, *der = NULL;
    int *lens = NULL;
    OSSL_CMP_ITAV *itav = NULL;

    if (certs == NULL)
        return itav_of(type, NULL, 0);
    if (n <= 0 || (parts = OPENSSL_zalloc(sizeof(*parts) * (size_t)n)) == NULL ||
        (lens = OPENSSL_zalloc(sizeof(*lens) * (size_t)n)) == NULL)
        goto out;
    for (int i = 0; i < n; i++)
        if ((lens[i] = i2d_X509(sk_X509_value(certs, i), &parts[i])) <= 0)
            goto out;
    if ((der = cmp_der_wrap(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, parts, lens, n, &len)) != NULL)
        itav = itav_of(type, der, len);
out:
    for (int i = 0; parts != NULL && i < n; i++)
        OPENSSL_free(parts[i]);
    OPENSSL_free(parts);
    OPENSSL_free(lens);
    return itav;
}

OSSL_CMP_ITAV *gw_shim_itav_root_update(const ASN1_OBJECT *type, X509 *nwn, X509 *nwo, X509 *own)
{
    unsigned char *c[3] = {NULL, NULL, NULL}, *parts[3] = {NULL, NULL, NULL}, *der = NULL;
    int cl[3] = {0, 0, 0}, lens[3] = {0, 0, 0}, len = 0;
    OSSL_CMP_ITAV *itav = NULL;

    if (nwn == NULL)
        return itav_of(type, NULL, 0);
    /* newWithNew CMPCertificate, newWithOld [0] CMPCertificate OPTIONAL, oldWithNew [1] ... (EXPLICIT) */
    if ((lens[0] = i2d_X509(nwn, &parts[0])) <= 0 || (nwo != NULL && (cl[1] = i2d_X509(nwo, &c[1])) <= 0) ||
        (own != NULL && (cl[2] = i2d_X509(own, &c[2])) <= 0))
        goto out;
    if ((c[1] != NULL &&
         (parts[1] = cmp_der_wrap(0, V_ASN1_CONTEXT_SPECIFIC, &c[1], &cl[1], 1, &lens[1])) == NULL) ||
        (c[2] != NULL &&
         (parts[2] = cmp_der_wrap(1, V_ASN1_CONTEXT_SPECIFIC, &c[2], &cl[2], 1, &lens[2])) == NULL))
        goto out;
    if ((der = cmp_der_wrap(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, parts, lens, 3, &len)) != NULL)
        itav = itav_of(type, der, len);
out:
    for (int i = 0; i < 3; i++) {
        OPENSSL_free(c[i]);
        OPENSSL_free(parts[i]);
    }
    return itav;
}

OSSL_CMP_ITAV *gw_shim_itav_x509_crls(const ASN1_OBJECT *type, X509_CRL *const *crls, int n)
{
    unsigned char *parts[GW_SHIM_MAX_CRLS] = {NULL}, *seq;
    int lens[GW_SHIM_MAX_CRLS] = {0}, slen = 0;
    OSSL_CMP_ITAV *itav = NULL;

    if (n == 0)
        return itav_of(type, NULL, 0);
    if (n < 0 || n > GW_SHIM_MAX_CRLS)
        return NULL;
    /* a parsed CRL keeps the encoding of its signed part: written out, not encoded again */
    for (int i = 0; i < n; i++)
        if ((lens[i] = i2d_X509_CRL(crls[i], &parts[i])) <= 0 || lens[i] > INT32_MAX / (2 * GW_SHIM_MAX_CRLS))
            goto out;
    if ((seq = cmp_der_wrap(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, parts, lens, n, &slen)) != NULL)
        itav = itav_of(type, seq, slen);
out:
    for (int i = 0; i < n; i++)
        OPENSSL_free(parts[i]);
    return itav;
}

unsigned char *gw_shim_attr(const char *oid, const unsigned char *value, int value_len, int *out_len)
{
    ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
    unsigned char *parts[2] = {NULL, (unsigned char *)value}, *der = NULL;
    int lens[2] = {0, value_len};

    if (obj != NULL && value != NULL && (lens[0] = i2d_ASN1_OBJECT(obj, &parts[0])) > 0)
        der = cmp_der_wrap(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, parts, lens, 2, out_len);
    OPENSSL_free(parts[0]);
    ASN1_OBJECT_free(obj);
    return der;
}

OSSL_CMP_ITAV *gw_shim_itav_cert_template(const ASN1_OBJECT *type, const STACK_OF(X509_EXTENSION) *exts,
                                          unsigned char *const *spec, const int *spec_len, int n_spec)
{
    unsigned char *ext_der = NULL, *parts[2] = {NULL, NULL}, *der = NULL;
    int ext_len = 0, lens[2] = {0, 0}, len = 0;
    OSSL_CMP_ITAV *itav = NULL;

    /* CertTemplate ::= SEQUENCE { ... extensions [9] IMPLICIT Extensions OPTIONAL } (RFC 4211, IMPLICIT) */
    if (sk_X509_EXTENSION_num(exts) > 0) {
        if ((ext_len = i2d_X509_EXTENSIONS(exts, &ext_der)) <= 0)
            goto out;
        ext_der[0] = V_ASN1_CONTEXT_SPECIFIC | V_ASN1_CONSTRUCTED | 9;
    }
    if (ext_der != NULL)
        parts[0] = cmp_der_wrap(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &ext_der, &ext_len, 1, &lens[0]);
    else if ((parts[0] = OPENSSL_malloc(2)) != NULL) { /* an empty template: nothing is prescribed */
        parts[0][0] = V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED;
        parts[0][1] = 0;
        lens[0] = 2;
    }
    if (parts[0] == NULL)
        goto out;
    /* keySpec Controls ::= SEQUENCE SIZE (1..MAX) OF AttributeTypeAndValue */
    if (n_spec > 0 && (parts[1] = cmp_der_wrap(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, spec, spec_len, n_spec,
                                               &lens[1])) == NULL)
        goto out;
    if ((der = cmp_der_wrap(V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, parts, lens, 2, &len)) != NULL)
        itav = itav_of(type, der, len);
out:
    OPENSSL_free(ext_der);
    OPENSSL_free(parts[0]);
    OPENSSL_free(parts[1]);
    return itav;
}

int gw_shim_itav_cert(const ASN1_TYPE *value, X509 **cert)
{
    X509 *x;

    *cert = NULL;
    if (value == NULL)
        return 0;
    if (value->type != V_ASN1_SEQUENCE || value->value.sequence == NULL || value->value.sequence->length <= 0)
        return GW_ERR_INVAL;
    if ((x = gw_x509_d2i_exact(value->value.sequence->data, value->value.sequence->length)) == NULL) {
        ERR_clear_error();
        return GW_ERR_INVAL;
    }
    *cert = x;
    return 0;
}

/*
 * Whether CRLSource |source| names |issuer|: an issuer [1] whose GeneralNames hold it as a directoryName.
 * RFC 9810's module tags explicitly ([1] around the SEQUENCE); an implicit [1] holds the names directly.
 * A distributionPoint [0] names no issuer the gateway can compare.
 */
static int source_names(const struct cmp_tlv *source, const X509_NAME *issuer)
{
    const unsigned char *p = source->cont, *end = source->cont + source->len, *q;
    struct cmp_tlv gn, seq;
    GENERAL_NAME *g;
    int found = 0;

    if (issuer == NULL || source->tag != 1)
        return 0;
    q = p;
    if (cmp_tlv_next(&q, end, &seq) && seq.cls == V_ASN1_UNIVERSAL && seq.tag == V_ASN1_SEQUENCE &&
        q == end) {
        p = seq.cont;
        end = seq.cont + seq.len;
    }
    while (!found && cmp_tlv_next(&p, end, &gn)) {
        q = gn.p;
        g = d2i_GENERAL_NAME(NULL, &q, gn.total);
        found = g != NULL && q == gn.p + gn.total && g->type == GEN_DIRNAME &&
                X509_NAME_cmp(g->d.directoryName, issuer) == 0;
        GENERAL_NAME_free(g);
    }
    ERR_clear_error();
    return found;
}

/* One CRLStatus { source CRLSource, thisUpdate Time OPTIONAL } in |status|: 0 (*when 0 if no thisUpdate,
 * *source its CRLSource), or GW_ERR_INVAL. */
static int read_crl_status(const struct cmp_tlv *status, struct cmp_tlv *source, time_t *when)
{
    const unsigned char *p = status->cont, *end = status->cont + status->len, *q;
    struct cmp_tlv t;
    ASN1_TIME *tm = NULL;
    struct tm parts;
    int rc = GW_ERR_INVAL;

    *when = 0;
    if (status->tag != V_ASN1_SEQUENCE || !status->constructed || !cmp_tlv_next(&p, end, source) ||
        source->cls != V_ASN1_CONTEXT_SPECIFIC || source->tag > 1)
        return GW_ERR_INVAL;
    if (!cmp_tlv_next(&p, end, &t))
        return p == end ? 0 : GW_ERR_INVAL;
    q = t.p;
    if (p != end || (tm = d2i_ASN1_TIME(NULL, &q, t.total)) == NULL || q != t.p + t.total ||
        ASN1_TIME_to_tm(tm, &parts) != 1)
        goto out;
    *when = timegm(&parts);
    rc = 0;
out:
    ASN1_TIME_free(tm);
    ERR_clear_error();
    return rc;
}

/*
 * Reads crlStatusList |value|: of the entries naming |issuer| (none when NULL), whether any does
 * (*named) and the oldest thisUpdate among them (*oldest, 0 if none has one); GW_ERR_INVAL if any entry
 * is malformed or the list is empty.
 */
static int scan_crl_statuses(const ASN1_TYPE *value, const X509_NAME *issuer, int *named, time_t *oldest)
{
    const unsigned char *p, *end;
    struct cmp_tlv status, source;
    time_t when;
    int n = 0;

    *named = 0;
    *oldest = 0;
    if (value == NULL)
        return 0; /* RFC 9483 §4.3.4 wants a list, but an absent one asks for the current CRL */
    /* SEQUENCE SIZE (1..MAX) OF CRLStatus */
    if (value->type != V_ASN1_SEQUENCE || value->value.sequence == NULL ||
        !cmp_der_open_seq(value->value.sequence->data, value->value.sequence->length, &p, &end))
        return GW_ERR_INVAL;
    for (; p < end; n++) {
        if (!cmp_tlv_next(&p, end, &status) || read_crl_status(&status, &source, &when) != 0) {
            *named = 0;
            *oldest = 0;
            return GW_ERR_INVAL;
        }
        if (!source_names(&source, issuer))
            continue;
        /* of the statuses naming |issuer|, the oldest: the client is sent the CRL if any is behind */
        if (!*named || when < *oldest) /* no thisUpdate (0): the client has none, the oldest of all */
            *oldest = when;
        *named = 1;
    }
    return n > 0 ? 0 : GW_ERR_INVAL;
}

int gw_shim_crl_status(const ASN1_TYPE *value, const X509_NAME *issuer, int *named, time_t *this_update)
{
    return scan_crl_statuses(value, issuer, named, this_update);
}

int gw_shim_crl_status_time(const ASN1_TYPE *value, const X509_NAME *issuer, time_t *this_update)
{
    int named;

    return scan_crl_statuses(value, issuer, &named, this_update);
}

int gw_shim_crl_status_names(const ASN1_TYPE *value, const X509_NAME *issuer)
{
    time_t oldest;
    int named;

    return scan_crl_statuses(value, issuer, &named, &oldest) == 0 && named;
}
