/*
 * The DER walk the OpenSSL 3.0 shim's files share (shim.c, shim_hdr.c, shim_itav.c, shim_d2i.c):
 * bounded TLV reads over public i2d output and received bytes, one TLV built around parts, and where
 * OpenSSL keeps the parts of a decoded message it has no getter or setter for.
 */
#ifndef GW_CMP_SHIM_LOCAL_H
#define GW_CMP_SHIM_LOCAL_H

#include <stddef.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>

/* One TLV inside [p, end): its whole encoding is [p, p+total), its content [cont, cont+len). */
struct cmp_tlv {
    const unsigned char *p, *cont;
    long len, total;
    int tag, cls, constructed;
};

/* Reads the TLV at *pp (bounded by |end|), advances *pp past it. 1 on success, 0 at end or on bad DER. */
int cmp_tlv_next(const unsigned char **pp, const unsigned char *end, struct cmp_tlv *t);

/* Reads the next TLV of [*pp, end) as cmp_tlv_next does, if it is a SEQUENCE; 1, else 0. */
int cmp_next_seq(const unsigned char **pp, const unsigned char *end, struct cmp_tlv *t);

/* Opens the outer SEQUENCE of |der|: on success [*pp, *end) is its content and nothing trails it. */
int cmp_der_open_seq(const unsigned char *der, long len, const unsigned char **pp, const unsigned char **end);

/* The AlgorithmIdentifier TLV |t| decoded (new); NULL if malformed. */
X509_ALGOR *cmp_algor_at(const struct cmp_tlv *t);

/* One TLV around |n| concatenated |parts| (each |lens| bytes; a NULL part is skipped). OPENSSL_malloc'ed. */
unsigned char *cmp_der_wrap(int tag, int cls, unsigned char *const *parts, const int *lens, int n,
                            int *out_len);

/*
 * Opens PKIMessage |msg| for a walk: [*p, *end) is the content of its outer SEQUENCE, read from
 * |der|, the bytes OpenSSL decoded it from, or, when those are not one DER SEQUENCE, from its own
 * encoding (*own, which the caller frees). 1, or 0.
 */
int cmp_open_msg(const OSSL_CMP_MSG *msg, const unsigned char *der, size_t der_len, unsigned char **own,
                 const unsigned char **p, const unsigned char **end);

/*
 * The content of the body of decoded |msg|, |body| an ir, cr or kur (CertReqMessages) or a p10cr
 * (X509_REQ), as OpenSSL decoded it; NULL if this OpenSSL places it otherwise.
 */
const void *cmp_decoded_body(const OSSL_CMP_MSG *msg, int body);

/* Where decoded |tmpl| keeps its publicKey; NULL as gw_asn1_field. */
X509_PUBKEY **cmp_tmpl_key_slot(const OSSL_CRMF_CERTTEMPLATE *tmpl);

/*
 * Finds the publicKey ([6]) of the template of the first CertReqMsg of CertReqMessages |msgs|
 * (RFC 4211 §3), in place: up[] gets the CertReqMsg, its CertRequest and its CertTemplate. 1 with
 * *key, 0 if the template has none, -1 if the structure is not as expected (the template's fields
 * out of order among them).
 */
int cmp_crm_tmpl_key(const struct cmp_tlv *msgs, struct cmp_tlv up[3], struct cmp_tlv *key);

/*
 * gw_shim_hdr_info the slow way, whatever the OpenSSL: the header of |msg| encoded and its DER
 * walked, the sender decoded apart (owned). What the fields read in place must equal (test_shim).
 */
int cmp_hdr_walk(const OSSL_CMP_MSG *msg, struct gw_hdr_info *out);

/* The [6] IMPLICIT SubjectPublicKeyInfo |t| of a template, from gw_x509_pubkey_d2i; NULL if it is not one. */
X509_PUBKEY *cmp_tmpl_spki(const struct cmp_tlv *t);

#endif
