/*
 * X.509 helpers every layer uses: the one way a serial number is written, a key's named curve.
 */
#ifndef GW_BASE_X509_H
#define GW_BASE_X509_H

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

/*
 * gw_x509_serial_hex writes |serial| as lowercase hex without separators, as every log and audit
 * line and the store's file names spell a serial ("" if unreadable). One too long for |cap| is cut
 * and ends in GW_X509_SERIAL_CUT, so that no record shows part of a serial as the whole of it
 * (GW_SERIAL_HEX_LEN holds GW_MAX_SERIAL_SHOWN octets whole). gw_x509_cert_serial_hex does it for
 * the serial of |cert|.
 */
#define GW_X509_SERIAL_CUT "..."

void gw_x509_serial_hex(const ASN1_INTEGER *serial, char *out, size_t cap);
void gw_x509_cert_serial_hex(const X509 *cert, char *out, size_t cap);

/*
 * gw_x509_serial_hex_checked is gw_x509_serial_hex for a serial from outside: 0, or -1 if |serial|
 * is not one RFC 5280 §4.1.2.2 allows (positive, at most 20 octets) or does not fit |cap|.
 */
int gw_x509_serial_hex_checked(const ASN1_INTEGER *serial, char *out, size_t cap);

/* Colon-separated lowercase hex of each octet ("39:dd:2e:..."), Vault's serial_number form; 0 or
 * GW_ERR_INVAL. */
int gw_x509_serial_hex_colons(const ASN1_INTEGER *serial, char *out, size_t cap);

/*
 * gw_x509_name_line returns |name| whole in X509_NAME_oneline's form ("/O=x/CN=y"), to free with
 * OPENSSL_free, for a comparison or pattern match that decides something. NULL if a value holds a
 * '/' ("O=x/CN=admin" would read as two attributes) or a backslash (written as it is, it would read as
 * an escape: the text "\xC3\xBC" as the UTF-8 "ü", "a\" then "O=b" in one RDN as the value "a+O=b"),
 * or if the line cannot be made. X509_NAME_oneline into
 * a buffer silently drops the attributes that do not fit, so "/O=x/CN=y/OU=<long>" would read as
 * "/O=x/CN=y": a fixed buffer is for logs only.
 */
char *gw_x509_name_line(const X509_NAME *name);

/*
 * gw_x509_name_identity writes |name| into |out| (GW_IDENTITY_LEN bytes) as the identity that names
 * a sender in logs and audit records and keys its limits (open transactions, replay-cache share):
 * its whole one-line form when it fits and no value holds a '/' or a backslash (then it reads as one
 * name only: X509_NAME_oneline writes a backslash in a value as it is, so "\x01" or "a\" and "O=b" in
 * one RDN would read as its escapes of the byte 1 or of the '+' in the value "a+O=b");
 * else the first GW_IDENTITY_PREFIX characters of that form, then "/#sha256=" and the SHA-256 of the
 * name's DER in hex. No one-line name reads as the second form ('#' starts no attribute type), and
 * two names that differ anywhere, past any cut too, differ there. 0, or GW_ERR_INVAL with |out| "".
 */
int gw_x509_name_identity(const X509_NAME *name, char *out);

/*
 * gw_x509_name_entry_same: the same attribute type and the same value as text, whatever string type
 * carries it (cfssl and Vault write PrintableString what was asked as UTF8String). Case and spaces
 * count, unlike X509_NAME_cmp's: a relying party may compare names byte for byte, so "O=VENDOR" is
 * not "O=Vendor".
 */
int gw_x509_name_entry_same(const X509_NAME_ENTRY *a, const X509_NAME_ENTRY *b);

/*
 * gw_x509_name_same: |a| and |b| hold the same attributes (gw_x509_name_entry_same) in the same order
 * and grouped alike into RDNs; an absent or empty name is the same as an empty one only.
 */
int gw_x509_name_same(const X509_NAME *a, const X509_NAME *b);

/* gw_x509_name_last_index: the index of |name|'s last entry of type |nid|, -1 if none (or |name| NULL). */
int gw_x509_name_last_index(const X509_NAME *name, int nid);

/* gw_asn1_time converts |t| to seconds since the epoch into |out|: 0, or -1 if |t| is NULL or unreadable. */
int gw_asn1_time(const ASN1_TIME *t, time_t *out);

/* The NID of the named curve of EC key |pkey|; NID_undef for explicit curve parameters, a named curve's too.
 */
int gw_x509_ec_curve(const EVP_PKEY *pkey);

/* SHA-256, fetched once: OpenSSL 3.0 fetches EVP_sha256() again (a look-up under a lock) at each use. */
const EVP_MD *gw_sha256(void);

/* gw_x509_d2i_exact parses the certificate that is all of |der| (|len| bytes); NULL if it is not one. */
X509 *gw_x509_d2i_exact(const unsigned char *der, long len);

/*
 * gw_x509_parse_cached returns the certificate whose DER is all of |der| (|len| bytes), parsed or
 * from a small cache keyed by the SHA-256 of the DER (shared, immutable: the caller holds a
 * reference); NULL if it is not one. Thread-safe.
 */
X509 *gw_x509_parse_cached(const unsigned char *der, long len);

/*
 * gw_x509_sha256 writes into |out| the SHA-256 of |x|'s DER, as X509_digest makes it: the one
 * gw_x509_parse_cached recorded when it parsed |x| (whose DER it was) or gw_x509_sha256_keep
 * recorded, else made now. 0, or
 * GW_ERR_CRYPTO. Thread-safe.
 */
int gw_x509_sha256(const X509 *x, unsigned char out[32]);

/*
 * gw_x509_sha256_keep records on |x| its SHA-256 (X509_digest), for gw_x509_sha256 to read it
 * without making it again: for a certificate kept and used many times, such as a configuration's.
 * Before |x| is shared between threads, which read it without a lock; |x| must not change after.
 * 0, or GW_ERR_CRYPTO / GW_ERR_NOMEM (nothing recorded: gw_x509_sha256 makes it each time).
 */
int gw_x509_sha256_keep(X509 *x);

/*
 * gw_asn1_field returns the template of field |name| of SEQUENCE type |it|, tagged |tag| (-1:
 * untagged), whose ASN1_TFLG_SK_MASK and ASN1_TFLG_EMBED bits are |flags|, as OpenSSL's own ASN.1
 * template for the type describes it (<openssl/asn1t.h>): where an object of the type keeps a field
 * OpenSSL 3.0 has no getter or setter for (docs/design.md O9). NULL if this OpenSSL describes it
 * otherwise; the caller then takes the slow way, and checks the field's type itself.
 */
const ASN1_TEMPLATE *gw_asn1_field(const ASN1_ITEM *it, const char *name, long tag, unsigned long flags);

/*
 * gw_x509_pubkey_copy returns a copy of |spki| with its decoded EVP_PKEY, for a certificate that
 * carries the key as a request did, without encoding the key again (OpenSSL 3.0 builds an encoder
 * and a decoder for that). Only where the request's bytes can only be the canonical DER of the key:
 * an EC key on a named curve (the point's length is fixed by its form, and its coordinates are
 * checked against the field) or Ed25519/Ed448 (fixed length). NULL for any other key (an RSA
 * key's integers decode leniently: padded, unsigned, with trailing bytes), or on failure.
 */
X509_PUBKEY *gw_x509_pubkey_copy(const X509_PUBKEY *spki);

/*
 * gw_x509_pubkey_d2i decodes the SubjectPublicKeyInfo that is all of |der| (|len| bytes) as
 * d2i_X509_PUBKEY does (with its EVP_PKEY, or without one if the key does not decode), but an EC key
 * on a named curve, its point uncompressed, without OpenSSL 3.0's decoder: a copy of a key of that
 * curve decoded before takes the new point, which the key manager checks as the decoder would, and
 * the copy must encode to |der| again. NULL if |der| is not one SubjectPublicKeyInfo. Thread-safe.
 */
X509_PUBKEY *gw_x509_pubkey_d2i(const unsigned char *der, long len);

/*
 * gw_x509_req_extensions puts into |*out| the extensions CSR |req| asks for (an empty stack for
 * none; free with sk_X509_EXTENSION_pop_free), read from its one extensionRequest attribute (or a
 * Microsoft one) holding one value (PKCS#9 makes it single-valued, RFC 2985 §5.4.2). 0, or
 * GW_ERR_INVAL with |err| (GW_ERR_LEN, fit for a statusString) for a CSR with two such attributes,
 * one with other than one value, or extensions that do not decode; GW_ERR_NOMEM. The one reader of a
 * CSR's extensions: X509_REQ_get_extensions reads the first attribute's first value only, while Go's
 * crypto/x509 (Vault) appends those of every extensionRequest attribute, so a second attribute would
 * go unchecked here and into the certificate there.
 */
int gw_x509_req_extensions(const X509_REQ *req, STACK_OF(X509_EXTENSION) **out, char *err);
/* gw_x509_ext_in: whether |exts| (NULL: none) holds an extension with the OID and value of |ext|. */
int gw_x509_ext_in(const STACK_OF(X509_EXTENSION) *exts, X509_EXTENSION *ext);
/* gw_x509_names_issuer: whether |cert| names |ca| its issuer, by name and by key identifier where both
 * say one (RFC 5280 §4.2.1.1). What a certificate says only: anyone can write it. */
int gw_x509_names_issuer(const X509 *cert, X509 *ca);
/*
 * gw_x509_signed_by: whether |ca| issued |cert|: it names |ca| (gw_x509_names_issuer) and |ca|'s key
 * verifies its signature. CAs may share a name (a key rotated under the same subject), and another CA
 * can write this one's name and key identifier into a certificate of its own.
 */
int gw_x509_signed_by(X509 *cert, X509 *ca);
/* gw_x509_in_stack: whether |x| is one of |sk| (the same certificate, X509_cmp; not one with its name). */
int gw_x509_in_stack(const STACK_OF(X509) *sk, const X509 *x);
/*
 * struct gw_x509_links remembers the links of a chain gw_x509_chain_extend found signed: a certificate
 * and the one whose key verified its signature. An upstream sends the same CAs with every answer and
 * a signature that verified once verifies again, so each link is verified once, not per request.
 * Only links that verified are kept, as both certificates' DER, and a link is known again only if both
 * are the same byte for byte (signature and its unused-bits count included, nothing resting on a hash):
 * nothing an upstream sends makes a link pass that would fail. GW_X509_LINK_SLOTS of them, the oldest
 * replaced; thread-safe.
 */
struct gw_x509_links;

struct gw_x509_links *gw_x509_links_new(void);
void gw_x509_links_free(struct gw_x509_links *links);
/*
 * gw_x509_chain_extend continues |chain| (issuer order, a verified path that may end below a root)
 * with certificates that each issued and signed the last one: one of |pref| where there is one, else
 * one of |from| (either may be NULL), until a self-signed one, none found, or |max| certificates;
 * whatever else the lists hold stays out. Up-references what it adds, and reads both lists without
 * changing them: they may be shared, immutable ones, read by several threads at once. A link in
 * |links| (NULL: none remembered) is not verified again; one it verifies goes there.
 */
void gw_x509_chain_extend(STACK_OF(X509) *chain, STACK_OF(X509) *pref, STACK_OF(X509) *from, int max,
                          struct gw_x509_links *links);

#define GW_TEXT_EXT_REQUESTS                                                                                 \
    "the CSR asks for extensions in more than one extensionRequest attribute or value: put every extension " \
    "into one (RFC 2985 §5.4.2)"

#endif
