/*
 * X.509 helpers every layer uses (base/x509.h).
 */
#include "base/x509.h"
#include "base/err.h"
#include "base/limits.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1t.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

/* Whether a value of |name| holds the byte |ch|. */
static int name_holds(const X509_NAME *name, int ch)
{
    for (int i = 0; i < X509_NAME_entry_count(name); i++) {
        const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));

        if (memchr(ASN1_STRING_get0_data(v), ch, (size_t)ASN1_STRING_length(v)) != NULL)
            return 1;
    }
    return 0;
}

char *gw_x509_name_line(const X509_NAME *name)
{
    char *line;

    if (name == NULL || name_holds(name, '/') || name_holds(name, '\\'))
        return NULL;
    ERR_set_mark(); /* a name too long to write out is an answer (no line), not an error to report */
    line = X509_NAME_oneline(name, NULL, 0); /* no buffer: it grows to the whole name */
    ERR_pop_to_mark();
    return line;
}

int gw_x509_name_last_index(const X509_NAME *name, int nid)
{
    int i = -1, last = -1;

    while (name != NULL && (i = X509_NAME_get_index_by_NID(name, nid, i)) >= 0)
        last = i;
    return last;
}

int gw_x509_name_entry_same(const X509_NAME_ENTRY *a, const X509_NAME_ENTRY *b)
{
    const ASN1_STRING *va = X509_NAME_ENTRY_get_data(a), *vb = X509_NAME_ENTRY_get_data(b);
    unsigned char *ua = NULL, *ub = NULL;
    int na, nb, same;

    if (OBJ_cmp(X509_NAME_ENTRY_get_object(a), X509_NAME_ENTRY_get_object(b)) != 0)
        return 0;
    if (ASN1_STRING_cmp(va, vb) == 0)
        return 1;
    ERR_set_mark(); /* a value that is no text is an answer here (not the same), not an error */
    na = ASN1_STRING_to_UTF8(&ua, va);
    nb = ASN1_STRING_to_UTF8(&ub, vb);
    ERR_pop_to_mark();
    same = na >= 0 && na == nb && memcmp(ua, ub, (size_t)na) == 0;
    OPENSSL_free(ua);
    OPENSSL_free(ub);
    return same;
}

/* Whether entry |i| of |name| opens an RDN of its own (a multi-valued RDN's later values do not). */
static int rdn_starts(const X509_NAME *name, int i)
{
    return i == 0 || X509_NAME_ENTRY_set(X509_NAME_get_entry(name, i)) !=
                         X509_NAME_ENTRY_set(X509_NAME_get_entry(name, i - 1));
}

int gw_x509_name_same(const X509_NAME *a, const X509_NAME *b)
{
    int n = a != NULL ? X509_NAME_entry_count(a) : 0;

    if (n != (b != NULL ? X509_NAME_entry_count(b) : 0))
        return 0;
    for (int i = 0; i < n; i++)
        if (!gw_x509_name_entry_same(X509_NAME_get_entry(a, i), X509_NAME_get_entry(b, i)) ||
            rdn_starts(a, i) != rdn_starts(b, i))
            return 0;
    return 1;
}

int gw_x509_name_identity(const X509_NAME *name, char *out)
{
    static const char hexdig[] = "0123456789abcdef";
    char *line = gw_x509_name_line(name); /* NULL for a value with a '/' or a backslash */
    const unsigned char *der = NULL;
    unsigned char h[32];
    unsigned int n = 0;
    size_t der_len = 0, len;

    out[0] = '\0';
    if (line != NULL && strlen(line) < GW_IDENTITY_LEN) {
        memcpy(out, line, strlen(line) + 1);
        OPENSSL_free(line);
        return 0;
    }
    if (name == NULL || X509_NAME_get0_der(name, &der, &der_len) != 1 ||
        EVP_Digest(der, der_len, h, &n, gw_sha256(), NULL) != 1 || n != sizeof(h)) {
        OPENSSL_free(line);
        return GW_ERR_INVAL;
    }
    if (line == NULL) { /* a value with a '/' or a backslash: the start of it as a log shows it */
        ERR_set_mark();
        line = X509_NAME_oneline(name, NULL, 0);
        ERR_pop_to_mark();
    }
    len = snprintf(out, GW_IDENTITY_PREFIX + 1, "%s", line != NULL ? line : "");
    len = len > GW_IDENTITY_PREFIX ? GW_IDENTITY_PREFIX : len;
    len += (size_t)snprintf(out + len, GW_IDENTITY_LEN - len, "/#sha256=");
    for (size_t i = 0; i < sizeof(h) && len + 2 < GW_IDENTITY_LEN; i++) {
        out[len++] = hexdig[h[i] >> 4];
        out[len++] = hexdig[h[i] & 15];
    }
    out[len] = '\0';
    OPENSSL_free(line);
    return 0;
}

void gw_x509_serial_hex(const ASN1_INTEGER *serial, char *out, size_t cap)
{
    BIGNUM *bn = serial != NULL ? ASN1_INTEGER_to_BN(serial, NULL) : NULL;
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    size_t keep = cap > sizeof(GW_X509_SERIAL_CUT) ? cap - sizeof(GW_X509_SERIAL_CUT) : 0;

    if (hex != NULL && strlen(hex) >= cap)
        snprintf(out, cap, "%.*s" GW_X509_SERIAL_CUT, (int)keep, hex);
    else
        snprintf(out, cap, "%s", hex != NULL ? hex : "");
    for (char *p = out; *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    OPENSSL_free(hex);
    BN_free(bn);
}

void gw_x509_cert_serial_hex(const X509 *cert, char *out, size_t cap)
{
    gw_x509_serial_hex(X509_get0_serialNumber(cert), out, cap);
}

int gw_x509_serial_hex_checked(const ASN1_INTEGER *serial, char *out, size_t cap)
{
    BIGNUM *bn = serial != NULL ? ASN1_INTEGER_to_BN(serial, NULL) : NULL;
    int ok = bn != NULL && !BN_is_negative(bn) && !BN_is_zero(bn) && BN_num_bytes(bn) <= 20 &&
             (size_t)BN_num_bytes(bn) * 2 < cap;

    BN_free(bn);
    out[0] = '\0';
    if (!ok)
        return -1;
    gw_x509_serial_hex(serial, out, cap);
    return out[0] != '\0' ? 0 : -1;
}

int gw_x509_serial_hex_colons(const ASN1_INTEGER *serial, char *out, size_t cap)
{
    unsigned char buf[32];
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    int n = bn != NULL ? BN_num_bytes(bn) : -1, i;
    size_t pos = 0;

    out[0] = '\0';
    if (n <= 0 || (size_t)n > sizeof(buf) || (size_t)n * 3 > cap || BN_bn2bin(bn, buf) != n) {
        BN_free(bn);
        return GW_ERR_INVAL;
    }
    for (i = 0; i < n; i++)
        pos += (size_t)snprintf(out + pos, cap - pos, i != 0 ? ":%02x" : "%02x", buf[i]);
    BN_free(bn);
    return 0;
}

int gw_asn1_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = timegm(&tm);
    return 0;
}

int gw_x509_ec_curve(const EVP_PKEY *pkey)
{
    char name[64];
    size_t len = 0;
    int nid, spelled = 1;

    /* RFC 5480 §2.1.1: named curves only. OpenSSL 3.0 gives explicit parameters equal to a named curve's
       that curve's name, so the name alone does not tell: a certificate would carry them as they came */
    if (EVP_PKEY_get_int_param(pkey, OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS, &spelled) != 1 ||
        spelled != 0 ||
        EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name), &len) != 1)
        return NID_undef;
    nid = OBJ_sn2nid(name);
    return nid != NID_undef ? nid : EC_curve_nist2nid(name);
}

static EVP_MD *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *gw_sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256 != NULL ? sha256 : EVP_sha256();
}

/*
 * Certificates parsed before, by the SHA-256 of their DER (gw_x509_parse_cached): a signer sends
 * the same extraCerts with every message, and OpenSSL 3.0 builds a decoder for each public key it
 * parses. Direct-mapped, GW_CERT_CACHE_SLOTS entries, a newer certificate taking the slot of an
 * older one; a certificate is immutable once parsed, and shared by reference.
 */
struct cert_slot {
    unsigned char hash[32];
    X509 *cert;
};

static struct cert_slot cert_cache[GW_CERT_CACHE_SLOTS];
static pthread_mutex_t cert_cache_lock = PTHREAD_MUTEX_INITIALIZER;

X509 *gw_x509_d2i_exact(const unsigned char *der, long len)
{
    const unsigned char *q = der;
    X509 *x = d2i_X509(NULL, &q, len);

    if (x != NULL && q != der + len) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* Where a certificate parsed by gw_x509_parse_cached keeps the SHA-256 of its DER (ex_data). */
static int sha256_idx = -1;
static pthread_once_t sha256_idx_once = PTHREAD_ONCE_INIT;

static void sha256_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    OPENSSL_free(ptr);
}

static void sha256_index(void)
{
    sha256_idx = X509_get_ex_new_index(0, NULL, NULL, NULL, sha256_free);
}

/* Records |h| on |x| as its SHA-256: 0, or GW_ERR_NOMEM (nothing recorded). */
static int sha256_set(X509 *x, const unsigned char h[32])
{
    unsigned char *copy;

    pthread_once(&sha256_idx_once, sha256_index);
    if (sha256_idx < 0 || (copy = OPENSSL_memdup(h, 32)) == NULL)
        return GW_ERR_NOMEM;
    if (X509_set_ex_data(x, sha256_idx, copy) != 1) {
        OPENSSL_free(copy);
        return GW_ERR_NOMEM;
    }
    return 0;
}

/*
 * Records |h|, the SHA-256 of |der|, on |x| parsed from it, before |x| is shared. Only if |x| encodes
 * to exactly |der| (X509_digest hashes that encoding); else nothing.
 */
static void sha256_keep(X509 *x, const unsigned char *der, long len, const unsigned char h[32])
{
    unsigned char *enc = NULL;
    int n = i2d_X509(x, &enc);

    if (n == len && memcmp(enc, der, (size_t)len) == 0)
        (void)sha256_set(x, h);
    OPENSSL_free(enc);
}

int gw_x509_sha256_keep(X509 *x)
{
    unsigned char h[32];
    unsigned int n = 0;

    if (X509_digest(x, gw_sha256(), h, &n) != 1 || n != sizeof(h))
        return GW_ERR_CRYPTO;
    return sha256_set(x, h);
}

int gw_x509_sha256(const X509 *x, unsigned char out[32])
{
    const unsigned char *kept = NULL;
    unsigned int n = 0;

    pthread_once(&sha256_idx_once, sha256_index);
    if (sha256_idx >= 0)
        kept = X509_get_ex_data(x, sha256_idx);
    if (kept != NULL) {
        memcpy(out, kept, 32);
        return 0;
    }
    return X509_digest(x, gw_sha256(), out, &n) == 1 && n == 32 ? 0 : GW_ERR_CRYPTO;
}

X509 *gw_x509_parse_cached(const unsigned char *der, long len)
{
    unsigned char h[32];
    unsigned int n = 0;
    struct cert_slot *s = NULL;
    X509 *x = NULL;

    if (EVP_Digest(der, (size_t)len, h, &n, gw_sha256(), NULL) == 1 && n == sizeof(h)) {
        s = &cert_cache[(h[0] | (size_t)h[1] << 8) % GW_CERT_CACHE_SLOTS];
        pthread_mutex_lock(&cert_cache_lock);
        if (s->cert != NULL && memcmp(s->hash, h, sizeof(h)) == 0 && X509_up_ref(s->cert) == 1)
            x = s->cert;
        pthread_mutex_unlock(&cert_cache_lock);
        if (x != NULL)
            return x;
    }
    if ((x = gw_x509_d2i_exact(der, len)) == NULL)
        return NULL;
    if (s != NULL)
        sha256_keep(x, der, len, h);
    if (s != NULL && X509_up_ref(x) == 1) {
        X509 *old;

        pthread_mutex_lock(&cert_cache_lock);
        old = s->cert;
        memcpy(s->hash, h, sizeof(h));
        s->cert = x;
        pthread_mutex_unlock(&cert_cache_lock);
        X509_free(old);
    }
    return x;
}

const ASN1_TEMPLATE *gw_asn1_field(const ASN1_ITEM *it, const char *name, long tag, unsigned long flags)
{
    const ASN1_TEMPLATE *tt;

    for (long i = 0; it != NULL && it->itype == ASN1_ITYPE_SEQUENCE && i < it->tcount; i++) {
        tt = &it->templates[i];
        if (tt->field_name != NULL && strcmp(tt->field_name, name) == 0 &&
            ((tt->flags & ASN1_TFLG_TAG_MASK) == 0 ? -1 : tt->tag) == tag &&
            (tt->flags & (ASN1_TFLG_SK_MASK | ASN1_TFLG_EMBED)) == flags)
            return tt;
    }
    return NULL;
}

/* |to| (a copy of a key's X509_PUBKEY) given algorithm |alg_obj| (|ptype|, |pval|) and BIT STRING
 * |bits| anew, as X509_PUBKEY_set0_param sets them (no unused bits); its EVP_PKEY is untouched. */
static int set_spki(X509_PUBKEY *to, const ASN1_OBJECT *alg_obj, int ptype, const void *pval,
                    const unsigned char *bits, int len)
{
    ASN1_OBJECT *obj = OBJ_dup(alg_obj), *param = NULL;
    unsigned char *copy = OPENSSL_memdup(bits, (size_t)len);

    if (obj != NULL && copy != NULL && (ptype != V_ASN1_OBJECT || (param = OBJ_dup(pval)) != NULL) &&
        X509_PUBKEY_set0_param(to, obj, ptype, param, copy, len) == 1)
        return 1;
    ASN1_OBJECT_free(obj);
    ASN1_OBJECT_free(param);
    OPENSSL_free(copy);
    return 0;
}

X509_PUBKEY *gw_x509_pubkey_copy(const X509_PUBKEY *spki)
{
    const ASN1_OBJECT *alg_obj;
    const unsigned char *bits;
    const void *pval;
    X509_ALGOR *alg;
    X509_PUBKEY *dup = NULL;
    int len, ptype, nid;

    if (spki == NULL || X509_PUBKEY_get0(spki) == NULL ||
        X509_PUBKEY_get0_param(NULL, &bits, &len, &alg, spki) != 1 || len <= 0)
        return NULL;
    X509_ALGOR_get0(&alg_obj, &ptype, &pval, alg);
    nid = OBJ_obj2nid(alg_obj);
    if (!(nid == NID_X9_62_id_ecPublicKey && ptype == V_ASN1_OBJECT) &&
        !((nid == NID_ED25519 || nid == NID_ED448) && ptype == V_ASN1_UNDEF))
        return NULL;
    /* X509_PUBKEY_dup copies the BIT STRING without its count of unused bits, and the encoder then
       trims the trailing zero bits of the last byte (another key): the algorithm and the bits are
       set again */
    ERR_set_mark();
    if ((dup = X509_PUBKEY_dup(spki)) == NULL || X509_PUBKEY_get0(dup) == NULL ||
        !set_spki(dup, alg_obj, ptype, pval, bits, len)) {
        X509_PUBKEY_free(dup);
        dup = NULL;
    }
    ERR_pop_to_mark();
    return dup;
}

/*
 * One key decoded the slow way per named curve (gw_x509_pubkey_d2i): its copies take each new point
 * of that curve. More slots than OpenSSL has named curves, so that no curve takes another's; never
 * freed (public keys, one per curve seen).
 */
struct curve_slot {
    atomic_int nid; /* set last, once |key| is: a reader that sees it sees the key */
    X509_PUBKEY *key;
};

static struct curve_slot curves[GW_CURVE_KEYS];
static pthread_mutex_t curves_lock = PTHREAD_MUTEX_INITIALIZER; /* writers only */

/* The key kept for curve |nid|, read without a lock (a slot, once filled, never changes). */
static X509_PUBKEY *curve_key(int nid)
{
    int n;

    for (size_t i = 0;
         i < GW_CURVE_KEYS && (n = atomic_load_explicit(&curves[i].nid, memory_order_acquire)) != 0; i++)
        if (n == nid)
            return curves[i].key;
    return NULL;
}

/* Keeps a copy of |key| for curve |nid| if no key is kept for it yet. */
static void curve_keep(int nid, const X509_PUBKEY *key)
{
    int n = 0;

    pthread_mutex_lock(&curves_lock);
    for (size_t i = 0; i < GW_CURVE_KEYS && n != nid; i++) {
        if ((n = atomic_load_explicit(&curves[i].nid, memory_order_relaxed)) != 0)
            continue;
        if ((curves[i].key = X509_PUBKEY_dup(key)) != NULL) /* the first free slot */
            atomic_store_explicit(&curves[i].nid, nid, memory_order_release);
        break;
    }
    pthread_mutex_unlock(&curves_lock);
}

/*
 * The EC point |bits| (|len| bytes) on curve |nid| as a copy of the key kept for the curve, its
 * algorithm and bits set as decoded from |alg|: EC_KEY_oct2key checks the point as OpenSSL's own
 * decoder does (on the curve, of the curve's length). NULL if no key is kept yet, or on failure.
 */
static X509_PUBKEY *ec_point_key(int nid, const X509_ALGOR *alg, const unsigned char *bits, int len)
{
    const ASN1_OBJECT *alg_obj;
    const void *pval;
    unsigned char back[GW_EC_POINT_MAX];
    size_t n = 0;
    int ptype, ok;
    X509_PUBKEY *proto = curve_key(nid), *x;
    EVP_PKEY *k;

    if (proto == NULL || (size_t)len > sizeof(back) || (x = X509_PUBKEY_dup(proto)) == NULL)
        return NULL;
    X509_ALGOR_get0(&alg_obj, &ptype, &pval, alg);
    k = X509_PUBKEY_get0(x);
    ok = k != NULL && EVP_PKEY_set1_encoded_public_key(k, bits, (size_t)len) == 1;
    /* read back: a key manager that ignored the point would leave the kept key's in place */
    ok =
        ok &&
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, back, sizeof(back), &n) == 1 &&
        n == (size_t)len && memcmp(back, bits, n) == 0;
    if (!ok || !set_spki(x, alg_obj, ptype, pval, bits, len)) {
        X509_PUBKEY_free(x);
        return NULL;
    }
    return x;
}

/* 1 if |x| encodes to |der|: what OpenSSL encodes again (a signature's input) is what came. */
static int encodes_to(const X509_PUBKEY *x, const unsigned char *der, long len)
{
    unsigned char *enc = NULL;
    int n = i2d_X509_PUBKEY(x, &enc), same = n == len && memcmp(enc, der, (size_t)n) == 0;

    OPENSSL_free(enc);
    return same;
}

X509_PUBKEY *gw_x509_pubkey_d2i(const unsigned char *der, long len)
{
    const unsigned char *p = der, *end = der + len;
    const ASN1_OBJECT *alg_obj;
    const void *pval;
    X509_ALGOR *alg = NULL;
    ASN1_BIT_STRING *bits = NULL;
    X509_PUBKEY *x = NULL;
    long inner;
    int ptype, tag, cls, nid = NID_undef;

    /* SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING };
       the BIT STRING is only read for an EC key on a named curve: any other key takes the slow way */
    ERR_set_mark();
    if (len > 0 && ASN1_get_object(&p, &inner, &tag, &cls, len) == V_ASN1_CONSTRUCTED &&
        tag == V_ASN1_SEQUENCE && cls == V_ASN1_UNIVERSAL && p + inner == end &&
        (alg = d2i_X509_ALGOR(NULL, &p, end - p)) != NULL) {
        X509_ALGOR_get0(&alg_obj, &ptype, &pval, alg);
        if (OBJ_obj2nid(alg_obj) == NID_X9_62_id_ecPublicKey && ptype == V_ASN1_OBJECT &&
            (bits = d2i_ASN1_BIT_STRING(NULL, &p, end - p)) != NULL && p == end &&
            (bits->flags & 0x07) == 0 && bits->length > 0)
            nid = OBJ_obj2nid(pval);
    }
    if (nid != NID_undef && (x = ec_point_key(nid, alg, bits->data, bits->length)) != NULL &&
        !encodes_to(x, der, len)) {
        X509_PUBKEY_free(x);
        x = NULL;
    }
    if (x == NULL) { /* the slow way, which any other key takes; a first key of a curve is kept */
        p = der;
        if ((x = d2i_X509_PUBKEY(NULL, &p, len)) != NULL && p != end) {
            X509_PUBKEY_free(x);
            x = NULL;
        }
        if (x != NULL && nid != NID_undef && X509_PUBKEY_get0(x) != NULL && encodes_to(x, der, len))
            curve_keep(nid, x);
    }
    X509_ALGOR_free(alg);
    ASN1_BIT_STRING_free(bits);
    ERR_pop_to_mark();
    return x;
}

int gw_x509_req_extensions(const X509_REQ *req, STACK_OF(X509_EXTENSION) **out, char *err)
{
    int found = 0;

    *out = NULL;
    for (int i = 0; req != NULL && i < X509_REQ_get_attr_count(req); i++) {
        X509_ATTRIBUTE *a = X509_REQ_get_attr(req, i);
        int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a)), n = X509_ATTRIBUTE_count(a);

        if (nid != NID_ext_req && nid != NID_ms_ext_req)
            continue;
        if (found++ || n != 1) {
            snprintf(err, GW_ERR_LEN, "%s", GW_TEXT_EXT_REQUESTS);
            return GW_ERR_INVAL;
        }
    }
    if (req == NULL) {
        snprintf(err, GW_ERR_LEN, "no CSR to read");
        return GW_ERR_INVAL;
    }
    ERR_set_mark(); /* an attribute that does not decode is an answer here, not an error to report later */
    *out = X509_REQ_get_extensions((X509_REQ *)req); /* 3.0 takes no const; it modifies nothing */
    ERR_pop_to_mark();
    if (*out != NULL)
        return 0;
    snprintf(err, GW_ERR_LEN, found ? "the extensions the CSR asks for cannot be decoded" : "out of memory");
    return found ? GW_ERR_INVAL : GW_ERR_NOMEM;
}

int gw_x509_ext_in(const STACK_OF(X509_EXTENSION) *exts, X509_EXTENSION *ext)
{
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);

        if (OBJ_cmp(X509_EXTENSION_get_object(e), X509_EXTENSION_get_object(ext)) == 0 &&
            ASN1_OCTET_STRING_cmp(X509_EXTENSION_get_data(e), X509_EXTENSION_get_data(ext)) == 0)
            return 1;
    }
    return 0;
}

int gw_x509_names_issuer(const X509 *cert, X509 *ca)
{
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id((X509 *)cert);
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(ca);

    if (X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(ca)) != 0)
        return 0;
    return akid == NULL || skid == NULL || ASN1_OCTET_STRING_cmp(akid, skid) == 0;
}

int gw_x509_signed_by(X509 *cert, X509 *ca)
{
    if (!gw_x509_names_issuer(cert, ca))
        return 0;
    if (X509_verify(cert, X509_get0_pubkey(ca)) == 1)
        return 1;
    ERR_clear_error();
    return 0;
}

int gw_x509_in_stack(const STACK_OF(X509) *sk, const X509 *x)
{
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (X509_cmp(sk_X509_value(sk, i), x) == 0)
            return 1;
    return 0;
}

/* A link: its certificate's DER, then its signer's, in one block. */
struct link {
    unsigned char *der;
    int cert_len, signer_len;
};

struct gw_x509_links {
    pthread_mutex_t lock;
    struct link slot[GW_X509_LINK_SLOTS]; /* der owned; NULL: none yet */
    size_t next;                          /* the slot the next link takes: the oldest */
};

struct gw_x509_links *gw_x509_links_new(void)
{
    struct gw_x509_links *l = calloc(1, sizeof(*l));

    if (l != NULL)
        pthread_mutex_init(&l->lock, NULL);
    return l;
}

void gw_x509_links_free(struct gw_x509_links *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < GW_X509_LINK_SLOTS; i++)
        OPENSSL_free(l->slot[i].der);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/*
 * Encodes the link from |x| to |signer| into |*k|: in |buf| (|cap| bytes) when it fits, else allocated.
 * 0, or -1 with k->der NULL. A parsed certificate keeps its to-be-signed part's encoding, so this is
 * mostly copying; and what it compares is all X509_verify reads: the to-be-signed bytes, the algorithm,
 * the signature's bits and unused-bits count, and the signer's key in its own to-be-signed bytes.
 */
static int link_encode(X509 *x, X509 *signer, unsigned char *buf, size_t cap, struct link *k)
{
    int xl = i2d_X509(x, NULL), sl = i2d_X509(signer, NULL);
    unsigned char *p;

    k->der = NULL;
    if (xl <= 0 || sl <= 0 || xl > INT_MAX - sl)
        return -1;
    k->der = (size_t)xl + (size_t)sl <= cap ? buf : OPENSSL_malloc((size_t)xl + (size_t)sl);
    if (k->der == NULL)
        return -1;
    p = k->der;
    if (i2d_X509(x, &p) != xl || i2d_X509(signer, &p) != sl) {
        if (k->der != buf)
            OPENSSL_free(k->der);
        k->der = NULL;
        return -1;
    }
    k->cert_len = xl;
    k->signer_len = sl;
    return 0;
}

/* Whether |a| and |b| are the same link: both certificates the same, byte for byte. */
static int same_link(const struct link *a, const struct link *b)
{
    return a->der != NULL && a->cert_len == b->cert_len && a->signer_len == b->signer_len &&
           memcmp(a->der, b->der, (size_t)a->cert_len + (size_t)a->signer_len) == 0;
}

static int link_known(struct gw_x509_links *l, const struct link *k)
{
    int known = 0;

    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; !known && i < GW_X509_LINK_SLOTS; i++)
        known = same_link(&l->slot[i], k);
    pthread_mutex_unlock(&l->lock);
    return known;
}

static void link_keep(struct gw_x509_links *l, const struct link *k)
{
    struct link kept = *k;
    unsigned char *old;
    size_t i;

    kept.der = OPENSSL_memdup(k->der, (size_t)k->cert_len + (size_t)k->signer_len);
    if (kept.der == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    i = l->next++ % GW_X509_LINK_SLOTS;
    old = l->slot[i].der;
    l->slot[i] = kept;
    pthread_mutex_unlock(&l->lock);
    OPENSSL_free(old);
}

/* Whether |signer|'s key verifies |x|'s signature; a link remembered in |links| (NULL: none) is not
 * verified again, one verified now is remembered. */
static int link_signed(struct gw_x509_links *links, X509 *x, X509 *signer)
{
    unsigned char buf[GW_X509_LINK_DER_INLINE];
    struct link k = {NULL, 0, 0};
    int ok;

    if (links != NULL)
        (void)link_encode(x, signer, buf, sizeof(buf), &k); /* not encoded: verified, not remembered */
    ok = k.der != NULL && link_known(links, &k);
    if (!ok && X509_verify(x, X509_get0_pubkey(signer)) == 1) {
        ok = 1;
        if (k.der != NULL)
            link_keep(links, &k);
    }
    if (k.der != buf)
        OPENSSL_free(k.der);
    return ok;
}

/* The first certificate of |from| that issued and signed |top| and is not in |chain| yet; NULL: none. */
static X509 *signer_in(STACK_OF(X509) *from, X509 *top, const STACK_OF(X509) *chain,
                       struct gw_x509_links *links)
{
    for (int i = 0; i < sk_X509_num(from); i++) {
        X509 *x = sk_X509_value(from, i);

        if (X509_check_issued(x, top) == X509_V_OK && !gw_x509_in_stack(chain, x) &&
            link_signed(links, top, x))
            return x;
    }
    return NULL;
}

void gw_x509_chain_extend(STACK_OF(X509) *chain, STACK_OF(X509) *pref, STACK_OF(X509) *from, int max,
                          struct gw_x509_links *links)
{
    X509 *top, *up;

    while (sk_X509_num(chain) > 0 && sk_X509_num(chain) < max) {
        top = sk_X509_value(chain, sk_X509_num(chain) - 1);
        if (X509_check_issued(top, top) == X509_V_OK) /* self-signed: the top */
            return;
        if ((up = signer_in(pref, top, chain, links)) == NULL)
            up = signer_in(from, top, chain, links);
        if (up == NULL || X509_add_cert(chain, up, X509_ADD_FLAG_UP_REF) != 1)
            return;
    }
}
