/*
 * OpenSSL 3.0 shim: every workaround for a getter or setter that OpenSSL 3.0's CMP API lacks,
 * in one place (docs/design.md O9, O11). Each is a small DER walk over public i2d output
 * with ASN1_get_object. On OpenSSL >= 3.2/3.3 most of these become one-line calls to the real
 * getters (named beside each function); nothing else in cmpgw walks CMP DER.
 */
#ifndef GW_CMP_SHIM_H
#define GW_CMP_SHIM_H

#include <stddef.h>
#include <time.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include "base/limits.h"

/* PKIBody CHOICE tags (RFC 9810 §5.1.2); 3.0 keeps its OSSL_CMP_PKIBODY_* names internal. */
enum gw_cmp_body {
    GW_CMP_BODY_IR = 0,
    GW_CMP_BODY_IP = 1,
    GW_CMP_BODY_CR = 2,
    GW_CMP_BODY_CP = 3,
    GW_CMP_BODY_P10CR = 4,
    GW_CMP_BODY_KUR = 7,
    GW_CMP_BODY_KUP = 8,
    GW_CMP_BODY_RR = 11,
    GW_CMP_BODY_RP = 12,
    GW_CMP_BODY_PKICONF = 19,
    GW_CMP_BODY_NESTED = 20,
    GW_CMP_BODY_GENM = 21,
    GW_CMP_BODY_GENP = 22,
    GW_CMP_BODY_ERROR = 23,
    GW_CMP_BODY_CERTCONF = 24,
    GW_CMP_BODY_POLLREQ = 25,
    GW_CMP_BODY_POLLREP = 26,
    GW_CMP_BODY_MAX = 26,
};

/* gw_shim_body_name returns the RFC name of a PKIBody type ("ir", "certConf", ...) or "unknown". */
const char *gw_shim_body_name(int type);

/* The header fields gw_shim_hdr_info caps (GW_MAX_KID_LEN, GW_MAX_TID_LEN, GW_MAX_NONCE_LEN). */
enum gw_hdr_field {
    GW_HDR_NONE = 0,
    GW_HDR_SENDER_KID,
    GW_HDR_TID,
    GW_HDR_SENDER_NONCE,
};

/* Header fields with no getter in 3.0. */
struct gw_hdr_info {
    const X509_NAME *sender; /* NULL unless the sender is a directoryName; the message's, or |own_sender| */
    X509_NAME *own_sender;   /* owned: the sender decoded apart (a header walked), else NULL */
    int has_message_time;
    time_t message_time;
    int protection_nid; /* NID of protectionAlg, NID_undef if unprotected or unknown to OpenSSL */
    char protection_oid[GW_OID_TEXT_LEN]; /* protectionAlg in dotted form, "" if unprotected */
    int pbm_iterations;                   /* PBM only: iterationCount, else 0 */
    int pbm_owf_nid;          /* PBM only: the owf's NID, NID_undef if absent, malformed or unknown */
    int pbm_mac_nid;          /* PBM only: the mac's NID, likewise */
    int protection_hash_bits; /* weakest hash in protectionAlg (gw_shim_alg_hash_bits), 0 if unknown */
    unsigned char sender_kid[GW_MAX_KID_LEN];
    size_t sender_kid_len; /* 0 if absent */
    unsigned char sender_nonce[GW_MAX_NONCE_LEN];
    size_t sender_nonce_len;
    unsigned char tid[GW_MAX_TID_LEN];
    size_t tid_len;
    enum gw_hdr_field over; /* GW_ERR_LIMIT: the field over its cap (the first, in header order) */
    size_t over_len;        /* and its length */
};

/*
 * gw_shim_hdr_info reads the header of |msg|: from where OpenSSL's decoded header keeps its fields,
 * or, on an OpenSSL that keeps them otherwise, by encoding it and walking the DER. |out->sender| may
 * be |msg|'s own: use it while |msg| lives, and clean |out| up before freeing |msg|. 0; GW_ERR_LIMIT
 * if the senderKID, transactionID or senderNonce is over its cap (|out->over| names it, |out->over_len|
 * is its length); GW_ERR_INVAL if a field is malformed.
 */
int gw_shim_hdr_info(const OSSL_CMP_MSG *msg, struct gw_hdr_info *out);
void gw_shim_hdr_info_cleanup(struct gw_hdr_info *h);

/*
 * gw_shim_cert_profile reads the certificate profile a request names: id-it-certProfile in the
 * header's generalInfo, a SEQUENCE SIZE (1..MAX) OF UTF8String whose first entry counts
 * (RFC 9483 §3.1; 3.3+: OSSL_CMP_HDR_get0_geninfo_ITAVs and OSSL_CMP_ITAV_get0_certProfile). On 0, |name|
 * (|cap| >= GW_MAX_PROFILE_NAME_LEN + 1) holds it NUL-terminated, "" when the request names none.
 * GW_ERR_LIMIT: more than GW_MAX_GENERAL_INFO generalInfo entries, or a name longer than
 * GW_MAX_PROFILE_NAME_LEN bytes; GW_ERR_INVAL: malformed, empty, holding NUL, or named twice.
 */
int gw_shim_cert_profile(const OSSL_CMP_MSG *msg, char *name, size_t cap);

/* Template public key; 3.2+: OSSL_CRMF_CERTTEMPLATE_get0_publicKey. Returns a new key or NULL. */
EVP_PKEY *gw_shim_tmpl_get1_pubkey(const OSSL_CRMF_MSG *crm);

/*
 * gw_shim_tmpl_get0_spki returns the publicKey of |crm|'s template as OpenSSL decoded it (its
 * EVP_PKEY decoded with it), owned by |crm|; NULL if it has none, or this OpenSSL places it otherwise
 * (3.2+: OSSL_CRMF_CERTTEMPLATE_get0_publicKey).
 */
const X509_PUBKEY *gw_shim_tmpl_get0_spki(const OSSL_CRMF_MSG *crm);

/* Template validity ([4] OptionalValidity); 0 where absent. Returns 0 or GW_ERR_INVAL. */
int gw_shim_tmpl_validity(const OSSL_CRMF_MSG *crm, time_t *not_before, time_t *not_after);

/* POPO type of a CertReqMsg: OSSL_CRMF_POPO_* or -1 if none. */
int gw_shim_popo_type(const OSSL_CRMF_MSG *crm);

/*
 * gw_shim_alg_hash_bits rates a signature or PBM AlgorithmIdentifier by the output size in bits
 * of the weakest hash it uses (sha1WithRSAEncryption 160, ecdsa-with-SHA256 256, RSASSA-PSS by its
 * hashAlgorithm, PBM by the smaller of owf and mac; Ed25519/Ed448 count as 512). 0 if unknown.
 */
int gw_shim_alg_hash_bits(const X509_ALGOR *alg);

/*
 * POPO signature algorithm of a CertReqMsg (POPOSigningKey.algorithmIdentifier, RFC 4211 §4.1),
 * rated by gw_shim_alg_hash_bits; 3.0 has no getter. -1 if the POPO is not a signature.
 */
int gw_shim_popo_hash_bits(const OSSL_CRMF_MSG *crm);

/*
 * Whether the POPO signature of a CertReqMsg signs a poposkInput (POPOSigningKey [0], RFC 4211 §4.1)
 * instead of the certReq; 3.0 has no getter. 0 for any other POPO.
 */
int gw_shim_popo_signs_input(const OSSL_CRMF_MSG *crm);

/*
 * gw_shim_get1_requested_key returns the public key an ir, cr or kur asks to be certified (the first
 * CertReqMsg's template) or a p10cr's CSR key: the key OpenSSL verifies the proof of possession
 * with, read from |der| (the bytes |msg| was decoded from; NULL: |msg| is encoded again). *has_key
 * is 0 for other bodies and for requests that carry no key; a request that should carry one but
 * cannot be read gives NULL with *has_key 1.
 */
EVP_PKEY *gw_shim_get1_requested_key(const OSSL_CMP_MSG *msg, const unsigned char *der, size_t der_len,
                                     int *has_key);

/*
 * gw_shim_get1_extra_certs returns the extraCerts of |msg| (RFC 9810 §5.1; 3.2+:
 * OSSL_CMP_MSG_get0_extraCerts) as a new stack, empty when there are none; NULL when they are
 * malformed or exceed GW_MAX_EXTRA_CERTS certificates or GW_MAX_EXTRA_CERTS_BYTES. Read from |der|,
 * the bytes |msg| was decoded from (NULL: |msg| is encoded again); a certificate parsed lately is
 * not parsed again.
 */
STACK_OF(X509) *gw_shim_get1_extra_certs(const OSSL_CMP_MSG *msg, const unsigned char *der, size_t der_len);

/*
 * gw_shim_der_count counts, in the first element of |der| (a request body, before OpenSSL decodes it),
 * its elements (TLVs, itself included) and those shaped as a SubjectPublicKeyInfo (any tag around an
 * AlgorithmIdentifier SEQUENCE that begins with an OID, then a BIT STRING, whole or in pieces): upper bounds
 * on what d2i_OSSL_CMP_MSG would decode, some 0.5 us an element and 0.2 ms a key in OpenSSL 3.0
 * (certificates, templates, CSRs and proofs of possession), before any check. Elements below
 * GW_DER_SCAN_DEPTH levels are not looked into (OpenSSL leaves them in an ANY undecoded, or refuses). 0
 * with *keys and *elements, or GW_ERR_INVAL if its elements do not read as TLVs of definite length, each
 * within the one around it, or one is a SEQUENCE or SET sent primitive (either would hide its contents from
 * this walk, and OpenSSL decodes both). The other forms of BER OpenSSL decodes, a string in pieces or a
 * length in more bytes than needed, are walked and counted; a primitive element under a tag not universal,
 * which may be an IMPLICIT SEQUENCE OF sent primitive, counts as many elements as its contents could hold,
 * and so does the value of an extension OpenSSL decodes with its CRL (issuingDistributionPoint,
 * authorityKeyIdentifier, certificateIssuer: GeneralNames in an OCTET STRING, which the walk does not open).
 */
int gw_shim_der_count(const unsigned char *der, size_t len, int *keys, int *elements);

/*
 * gw_shim_swap_extra_certs sets the extraCerts of decoded |msg| to |certs| (NULL: none; taken over) and
 * returns those it had (the caller's now); 3.0 has no setter. *ok is 0, and nothing changes, where this
 * OpenSSL keeps them elsewhere.
 */
STACK_OF(X509) *gw_shim_swap_extra_certs(OSSL_CMP_MSG *msg, STACK_OF(X509) *certs, int *ok);

/*
 * gw_shim_central_keygen tells whether |msg| is an ir, cr or kur whose first template asks for central key
 * generation (RFC 9483 §4.1.6): no publicKey, or one with an empty subjectPublicKey. 1 or 0 (also when
 * this OpenSSL keeps the template where the shim does not look).
 */
int gw_shim_central_keygen(const OSSL_CMP_MSG *msg);

/*
 * gw_shim_d2i_msg is d2i_OSSL_CMP_MSG(NULL, pp, len), the same message accepted or refused, but the
 * certificates of its extraCerts come from those parsed lately instead of being parsed again, and
 * the key of an ir's, cr's or kur's first template from gw_x509_pubkey_d2i.
 */
OSSL_CMP_MSG *gw_shim_d2i_msg(const unsigned char **pp, long len);

/*
 * gw_shim_d2i_msg_later is gw_shim_d2i_msg but for the extraCerts: a message it would set them in is
 * decoded without them, *later 1, and whoever goes on with it sets them first (gw_shim_set_extra_certs);
 * *later 0 where the message is as gw_shim_d2i_msg gives it. It may accept a message whose extraCerts
 * d2i_OSSL_CMP_MSG refuses: gw_shim_set_extra_certs refuses it then.
 */
OSSL_CMP_MSG *gw_shim_d2i_msg_later(const unsigned char **pp, long len, int *later);

/*
 * gw_shim_set_extra_certs sets the extraCerts of |msg|, which gw_shim_d2i_msg_later decoded from |der| (|len|
 * bytes, the whole message) with *later 1, as d2i_OSSL_CMP_MSG decodes them: 0, or GW_ERR_INVAL where it
 * refuses |der| (|msg| unchanged).
 */
int gw_shim_set_extra_certs(OSSL_CMP_MSG *msg, const unsigned char *der, long len);

/*
 * gw_shim_d2i_hash_alg decodes |der| (|len| bytes, one DER PKIMessage) if it is a certConf that OpenSSL 3.0
 * refuses for the hashAlg of its first CertStatus (RFC 9810 §5.3.18, CMP version 3; later OpenSSL versions
 * decode it): the message without that hashAlg and without its extraCerts, to be refused with a CMP error
 * (its protection no longer verifies). NULL for any other message, or one that does not decode without them
 * either.
 */
OSSL_CMP_MSG *gw_shim_d2i_hash_alg(const unsigned char *der, long len);

/*
 * gw_shim_hdr_protection_alg_slot returns where decoded |hdr| keeps its protectionAlg, for the engine
 * to hide a signature it has verified from OpenSSL's second check of it (docs/design.md O12); no
 * OpenSSL version has a setter. NULL if this OpenSSL keeps it otherwise.
 */
X509_ALGOR **gw_shim_hdr_protection_alg_slot(OSSL_CMP_PKIHEADER *hdr);

/*
 * gw_shim_sender_nonce copies the senderNonce of |msg|'s header into |buf| (|cap| bytes) and its
 * length into *len (0: none), as gw_shim_hdr_info reads it, without encoding and walking the whole
 * header: OpenSSL 3.0 has no getter for it. 0, or GW_ERR_INVAL (no message, a nonce above |cap|),
 * |buf| then untouched.
 */
int gw_shim_sender_nonce(const OSSL_CMP_MSG *msg, unsigned char *buf, size_t cap, size_t *len);

/* gw_shim_pkisi_status returns the PKIStatus of |si| (OSSL_CMP_PKISTATUS_*), or -1 if unreadable. */
int gw_shim_pkisi_status(const OSSL_CMP_PKISI *si);

/* gw_shim_error_code returns the errorCode of an error message, or -1 if absent/not an error. */
long gw_shim_error_code(const OSSL_CMP_MSG *msg);

/*
 * gw_shim_error_set_status replaces the PKIStatusInfo of the error message |*msg| (built by
 * OpenSSL, which always says badRequest in 3.0) with |si|, drops errorCode/errorDetails (OpenSSL
 * internals), and re-protects it with |ctx| (OSSL_CMP_MSG_update_transactionID re-signs with the
 * ctx's key or PBM secret and re-adds extraCerts). |tid| is the transactionID to keep (NULL: a
 * fresh random one, for a request that had none). On success
 * |*msg| is replaced; returns 0 or a gw_err.
 */
int gw_shim_error_set_status(OSSL_CMP_CTX *ctx, OSSL_CMP_MSG **msg, const OSSL_CMP_PKISI *si,
                             const unsigned char *tid, size_t tid_len);

/*
 * gw_shim_rr_reason reads the CRLReason of the first RevDetails of an rr (crlEntryDetails,
 * RFC 9483 §4.2), which 3.0's rr callback does not pass. 0 with *reason = CRL_REASON_NONE (-1) when absent,
 * else the code (0..10, never 7); GW_ERR_INVAL if the body is malformed or the code is out of range.
 */
int gw_shim_rr_reason(const OSSL_CMP_MSG *msg, int *reason);

/*
 * gw_shim_body_count returns how many entries the SEQUENCE OF in |msg|'s body holds (the CertStatus
 * of a certConf, the RevDetails of an rr, ...), which 3.0 has no getter for: its certConf callback
 * sees the first CertStatus only. Read from |der| (|der_len| bytes) when given, the bytes |msg| was
 * decoded from, else from |msg| encoded again. -1 if |msg| is NULL or its body is not a SEQUENCE that
 * reads (or |der| holds another body than |msg|).
 */
int gw_shim_body_count(const OSSL_CMP_MSG *msg, const unsigned char *der, size_t der_len);

/*
 * ITAV builders for genp (RFC 9483 §4.3); 3.2+ has typed ones (OSSL_CMP_ITAV_new_caCerts,
 * OSSL_CMP_ITAV_new_rootCaKeyUpdate, OSSL_CMP_ITAV_new0_certReqTemplate, OSSL_CMP_ITAV_new_crls).
 * Each returns a new ITAV or NULL; |type| is borrowed (copied). A NULL value input gives an
 * ITAV whose infoValue is absent, as RFC 9483 asks where there is nothing to deliver.
 */
/* SEQUENCE OF Certificate (id-it-caCerts) */
OSSL_CMP_ITAV *gw_shim_itav_certs(const ASN1_OBJECT *type, const STACK_OF(X509) *certs);
/* RootCaKeyUpdateContent (id-it-rootCaKeyUpdate); |nwn| NULL = absent value */
OSSL_CMP_ITAV *gw_shim_itav_root_update(const ASN1_OBJECT *type, X509 *nwn, X509 *nwo, X509 *own);
/* SEQUENCE SIZE (1..MAX) OF CertificateList (id-it-crls) of the |n| parsed CRLs |crls| (borrowed), at most
 * GW_SHIM_MAX_CRLS, each as it was parsed (not parsed again); none (n 0) = absent */
#define GW_SHIM_MAX_CRLS 4
OSSL_CMP_ITAV *gw_shim_itav_x509_crls(const ASN1_OBJECT *type, X509_CRL *const *crls, int n);
/*
 * CertReqTemplateContent (id-it-certReqTemplate): a CertTemplate holding only |exts| ([9], may be
 * NULL), and keySpec Controls of |n_spec| AttributeTypeAndValue DER blobs (may be 0).
 */
OSSL_CMP_ITAV *gw_shim_itav_cert_template(const ASN1_OBJECT *type, const STACK_OF(X509_EXTENSION) *exts,
                                          unsigned char *const *spec, const int *spec_len, int n_spec);
/* AttributeTypeAndValue { |oid|, value DER } as a new malloc'd DER blob; NULL on error. */
unsigned char *gw_shim_attr(const char *oid, const unsigned char *value, int value_len, int *out_len);

/*
 * gw_shim_itav_cert reads an ITAV value that must be one Certificate: the RootCaCertValue of
 * id-it-rootCaCert (RFC 9483 §4.3.2; 3.2+: OSSL_CMP_ITAV_get0_rootCaCert). 0 with *cert NULL when
 * the value is absent, 0 with a new certificate, GW_ERR_INVAL for anything else.
 */
int gw_shim_itav_cert(const ASN1_TYPE *value, X509 **cert);

/*
 * gw_shim_crl_status_time reads an id-it-crlStatusList value (RFC 9483 §4.3.4): 0 with *this_update the
 * thisUpdate the client holds of the CRL of |issuer| (the oldest of the CRLStatus entries whose CRLSource
 * names it as an issuer directoryName), or 0 when the value is absent, no entry names |issuer| (a
 * distribution point name is never matched), an entry naming it has no thisUpdate, or |issuer| is NULL;
 * GW_ERR_INVAL if any entry is malformed.
 */
int gw_shim_crl_status_time(const ASN1_TYPE *value, const X509_NAME *issuer, time_t *this_update);
/* gw_shim_crl_status_names: whether an entry of crlStatusList |value| names |issuer| as its CRLSource (as
 * gw_shim_crl_status_time matches it); 0 for an absent or malformed value. */
int gw_shim_crl_status_names(const ASN1_TYPE *value, const X509_NAME *issuer);
/*
 * gw_shim_crl_status reads crlStatusList |value| once for both: *named, whether an entry names |issuer|
 * as its CRLSource (gw_shim_crl_status_names), and *this_update as gw_shim_crl_status_time gives it;
 * returns as gw_shim_crl_status_time does (GW_ERR_INVAL, with both 0, if any entry is malformed).
 */
int gw_shim_crl_status(const ASN1_TYPE *value, const X509_NAME *issuer, int *named, time_t *this_update);

#endif
