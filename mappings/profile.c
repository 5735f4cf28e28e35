/*
 * Certificate profile and request field mapping (mappings/profile.h). Pure: no I/O.
 *
 * The role decides everything but the identity: subject, allow-listed SANs and the public key come
 * from the request, key usage, extended key usage, basicConstraints (always CA:FALSE) and the
 * validity cap from the role. Refusals say why, because the text ends up in the CMP statusString
 * (RFC 9483 §3.6.4) and is all a device operator sees.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"
#include "mappings/profile.h"
#include "mappings/subject.h"

void gw_cert_req_init(struct gw_cert_req *r)
{
    memset(r, 0, sizeof(*r));
}

void gw_cert_req_cleanup(struct gw_cert_req *r)
{
    if (r == NULL)
        return;
    X509_NAME_free(r->subject);
    GENERAL_NAMES_free(r->sans);
    EVP_PKEY_free(r->pubkey);
    X509_PUBKEY_free(r->spki);
    sk_X509_EXTENSION_pop_free(r->csr_exts, X509_EXTENSION_free);
    gw_cert_req_init(r);
}

void gw_cert_plan_init(struct gw_cert_plan *p)
{
    memset(p, 0, sizeof(*p));
}

void gw_cert_plan_cleanup(struct gw_cert_plan *p)
{
    if (p == NULL)
        return;
    X509_NAME_free(p->subject);
    GENERAL_NAMES_free(p->sans);
    EVP_PKEY_free(p->pubkey);
    X509_PUBKEY_free(p->spki);
    sk_X509_EXTENSION_pop_free(p->csr_exts, X509_EXTENSION_free);
    gw_cert_plan_init(p);
}

int gw_cert_plan_copy(const struct gw_cert_plan *src, struct gw_cert_plan *dst)
{
    *dst = *src;
    dst->subject = NULL;
    dst->sans = NULL;
    dst->spki = NULL;
    dst->csr_exts = NULL;
    if (dst->pubkey != NULL && EVP_PKEY_up_ref(dst->pubkey) != 1)
        dst->pubkey = NULL;
    else if ((src->spki == NULL || (dst->spki = gw_x509_pubkey_copy(src->spki)) != NULL) &&
             (src->subject == NULL || (dst->subject = X509_NAME_dup(src->subject)) != NULL) &&
             (src->sans == NULL ||
              (dst->sans = ASN1_item_dup(ASN1_ITEM_rptr(GENERAL_NAMES), (void *)src->sans)) != NULL) &&
             (src->csr_exts == NULL || (dst->csr_exts = sk_X509_EXTENSION_deep_copy(
                                            src->csr_exts, X509_EXTENSION_dup, X509_EXTENSION_free)) != NULL))
        return 0;
    gw_cert_plan_cleanup(dst);
    return GW_ERR_NOMEM;
}

/* ---- the plan ---- */

static int refuse(int *fail_info, char *err, const char *what)
{
    *fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
    snprintf(err, GW_ERR_LEN, "%s", what);
    return GW_ERR_POLICY;
}

static const struct {
    int gen_type;
    unsigned san_type;
    const char *name;
} san_types[] = {
    {GEN_DNS, GW_SAN_DNS, "dns"},       {GEN_IPADD, GW_SAN_IP, "ip"},      {GEN_URI, GW_SAN_URI, "uri"},
    {GEN_EMAIL, GW_SAN_EMAIL, "email"}, {GEN_OTHERNAME, 0, "otherName"},   {GEN_X400, 0, "x400Address"},
    {GEN_DIRNAME, 0, "directoryName"},  {GEN_EDIPARTY, 0, "ediPartyName"}, {GEN_RID, 0, "registeredID"},
};

/* IA5String names: non-empty, printable ASCII, no spaces (RFC 5280 §4.2.1.6 preferred syntaxes). */
static int ia5_ok(const ASN1_STRING *s)
{
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int i, n = ASN1_STRING_length(s);

    if (n <= 0)
        return 0;
    for (i = 0; i < n; i++) {
        if (d[i] < 0x21 || d[i] > 0x7e)
            return 0;
    }
    return 1;
}

/* RFC 5280 §4.2.1.6 / RFC 1034 §3.5 preferred name syntax: LDH labels of 1..63, an optional "*." first. */
static int dns_ok(const ASN1_STRING *s)
{
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int i, n = ASN1_STRING_length(s), label = 0;

    if (n > 253)
        return 0;
    if (n > 2 && d[0] == '*' && d[1] == '.') {
        d += 2;
        n -= 2;
    }
    for (i = 0; i < n; i++) {
        int ldh = (d[i] >= 'a' && d[i] <= 'z') || (d[i] >= 'A' && d[i] <= 'Z') ||
                  (d[i] >= '0' && d[i] <= '9') || d[i] == '-';

        if (d[i] == '.' && label > 0 && d[i - 1] != '-') {
            label = 0;
            continue;
        }
        if (!ldh || (label == 0 && d[i] == '-') || ++label > 63)
            return 0;
    }
    return label > 0 && d[n - 1] != '-';
}

static int scheme_char(unsigned char c, int first)
{
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

    return alpha || (!first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
}

/*
 * The authority is what follows "//" up to the next '/' (RFC 3986 §3.2), read before a '?' or '#' would
 * end it: "https://intranet?.example.com/x" is the host "intranet" to a URL parser, though a reader and a
 * pattern see example.com. So a query must follow a path: "https://example.com?x=1" cannot be told from
 * it. A '#' or backslash anywhere is refused before this is asked.
 */
static const char *authority_why(const unsigned char *d, size_t n)
{
    const unsigned char *slash = memchr(d, '/', n);
    size_t len = slash != NULL ? (size_t)(slash - d) : n;

    if (memchr(d, '@', len) != NULL)
        return "its authority holds a '@' (userinfo): URL parsers take the host from after it";
    if (memchr(d, '?', len) != NULL)
        return "it has a '?' before the '/' that would end its authority, where URL parsers end the host: a "
               "query must follow a path";
    if (memchr(d, '%', len) != NULL)
        return "its authority holds a '%', which URL parsers decode";
    return NULL;
}

/*
 * WHATWG's special schemes: its parser reads a host after any run of slashes that follows the ':', none
 * included ("https:intranet/x" and "https:////intranet/x" are https://intranet/x), where RFC 3986 sees a
 * path. file: is special too, but its host may be empty ("file:///etc/hosts").
 */
static const char *const special_schemes[] = {"http", "https", "ws", "wss", "ftp", "file"};

static int is_special(const unsigned char *d, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof(special_schemes) / sizeof(special_schemes[0]); i++) {
        if (strlen(special_schemes[i]) == n && strncasecmp((const char *)d, special_schemes[i], n) == 0)
            return 1;
    }
    return 0;
}

/*
 * |d| is what follows a special scheme's ':': exactly "//" and a non-empty authority that does not begin
 * with '/', or for file: "///" and a path whose first segment is not empty ("file:////evil/x" is a UNC
 * share to Windows).
 */
static const char *special_slashes_why(const unsigned char *d, size_t n, int file)
{
    int two = n >= 2 && d[0] == '/' && d[1] == '/';

    if (two && n > 2 && d[2] != '/')
        return NULL;
    if (file && two && n > 2 && (n == 3 || d[3] != '/'))
        return NULL;
    return file
               ? "a URL parser adds or skips slashes after \"file:\": it must have \"//\" and a host, or "
                 "\"///\" and a path"
               : "a URL parser adds or skips slashes after the scheme of an http, https, ws, wss or ftp URI: "
                 "it must have \"//\" and a host";
}

const char *gw_cert_uri_why(const unsigned char *d, size_t n)
{
    const char *bad;
    size_t i;
    int file;

    for (i = 0; i < n; i++) {
        if (d[i] < 0x21 || d[i] > 0x7e)
            return "it holds a space, a control character or a byte outside ASCII";
    }
    if (memchr(d, '\\', n) != NULL) /* WHATWG's special schemes read it as '/' */
        return "it holds a backslash, which URL parsers read as '/'";
    if (memchr(d, '#', n) != NULL)
        return "it holds a '#', which begins a fragment";
    for (i = 0; i < n && scheme_char(d[i], i == 0); i++)
        ;
    if (i == 0 || i == n || d[i] != ':')
        return "it does not begin with a scheme: a letter, then letters, digits, '+', '-' or '.', and a ':'";
    file = i == 4 && strncasecmp((const char *)d, "file", 4) == 0;
    if (is_special(d, i) && (bad = special_slashes_why(d + i + 1, n - i - 1, file)) != NULL)
        return bad;
    if (n - i < 3 || d[i + 1] != '/' || d[i + 2] != '/')
        return NULL; /* no authority: urn:..., sip:user@host */
    return authority_why(d + i + 3, n - i - 3);
}

static int san_value_ok(const GENERAL_NAME *gn)
{
    const ASN1_STRING *s = gn->d.ia5;

    switch (gn->type) {
    case GEN_IPADD:
        return gn->d.iPAddress->length == 4 || gn->d.iPAddress->length == 16;
    case GEN_DNS:
        return ia5_ok(s) && dns_ok(s);
    case GEN_URI: /* the rest is check_san's, which names the URI and says why (gw_cert_uri_why) */
        return ia5_ok(s);
    case GEN_EMAIL: /* local-part@domain (RFC 5280 §4.2.1.6), one '@': mailers differ on which ends it */
        return ia5_ok(s) && gw_subject_email_flaw((const char *)s->data, (size_t)s->length) == GW_EMAIL_OK;
    default:
        return 0;
    }
}

/* check_uri names the URI |s| (printable: san_value_ok held it to ia5_ok) and says why it is refused. */
static int check_uri(const ASN1_STRING *s, int *fail_info, char *err)
{
    const char *bad = gw_cert_uri_why(s->data, (size_t)s->length);
    int cut = s->length > GW_ERR_NAME_SHOWN;
    char why[GW_ERR_LEN];

    if (bad == NULL)
        return 0;
    snprintf(why, sizeof(why), "subjectAltName URI %.*s%s is refused: %s",
             cut ? GW_ERR_NAME_SHOWN - 3 : s->length, (const char *)s->data, cut ? "..." : "", bad);
    return refuse(fail_info, err, why);
}

/* check_san refuses a SAN whose type the role does not allow: refused, not dropped, so the
 * client learns why its certificate would lack a name. */
static int check_san(const struct gw_role *role, const GENERAL_NAME *gn, int *fail_info, char *err)
{
    char why[GW_ERR_LEN];
    size_t i;

    for (i = 0; i < sizeof(san_types) / sizeof(san_types[0]); i++) {
        if (san_types[i].gen_type != gn->type)
            continue;
        if ((role->allowed_san_types & san_types[i].san_type) == 0 || san_types[i].san_type == 0) {
            snprintf(why, sizeof(why), "subjectAltName type %s is not allowed on role %.*s",
                     san_types[i].name, GW_MAX_NAME_LEN, role->name != NULL ? role->name : "?");
            return refuse(fail_info, err, why);
        }
        if (!san_value_ok(gn)) {
            snprintf(why, sizeof(why), "subjectAltName %s entry is malformed", san_types[i].name);
            return refuse(fail_info, err, why);
        }
        return gn->type == GEN_URI ? check_uri(gn->d.ia5, fail_info, err) : 0;
    }
    return refuse(fail_info, err, "subjectAltName entry of unknown type");
}

static int plan_sans(const struct gw_role *role, const struct gw_cert_req *req, struct gw_cert_plan *out,
                     int *fail_info, char *err)
{
    int i, n, rc;

    n = req->sans != NULL ? sk_GENERAL_NAME_num(req->sans) : 0;
    if (n <= 0)
        return 0;
    if (n > GW_MAX_SANS) {
        char why[GW_ERR_LEN];

        snprintf(why, sizeof(why), "too many subjectAltName entries (%d; the limit is %d)", n, GW_MAX_SANS);
        return refuse(fail_info, err, why);
    }
    for (i = 0; i < n; i++) {
        if ((rc = check_san(role, sk_GENERAL_NAME_value(req->sans, i), fail_info, err)) != 0)
            return rc;
    }
    if ((out->sans = ASN1_item_dup(ASN1_ITEM_rptr(GENERAL_NAMES), req->sans)) == NULL) {
        snprintf(err, GW_ERR_LEN, "out of memory");
        return GW_ERR_NOMEM;
    }
    return 0;
}

static int plan_subject(const struct gw_role *role, const struct gw_cert_req *req, struct gw_cert_plan *out,
                        int *fail_info, char *err)
{
    int empty = req->subject == NULL || X509_NAME_entry_count(req->subject) == 0;

    if (empty && role->require_subject)
        return refuse(fail_info, err, "the certificate template has no subject; this role requires one");
    /* RFC 5280 §4.2.1.6: an empty subject needs a subjectAltName, or the certificate names no one. */
    if (empty && out->sans == NULL)
        return refuse(fail_info, err, "the request has neither a subject nor a subjectAltName");
    if (!empty)
        return 0; /* gw_cert_plan_make hands it over once the plan is made */
    if ((out->subject = X509_NAME_new()) == NULL) {
        snprintf(err, GW_ERR_LEN, "out of memory");
        return GW_ERR_NOMEM;
    }
    return 0;
}

/* EC keys on P-256, P-384 and P-521; explicit curve parameters are refused. */
static int ec_curve_ok(const EVP_PKEY *pkey)
{
    int nid = gw_x509_ec_curve(pkey);

    return nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 || nid == NID_secp521r1;
}

/*
 * An RSA public exponent that is odd and at least 65537: the CA/Browser Forum Baseline Requirements
 * §6.1.6 (odd, SHALL; 2^16 + 1 or more, SHOULD). With e = 1 a "signature" is its own padded message, so
 * a proof of possession proves nothing; an even e has no private key. OpenSSL decodes either as sent.
 */
static int rsa_exponent_ok(const EVP_PKEY *pkey)
{
    BIGNUM *e = NULL;
    int ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) == 1 && BN_is_odd(e) &&
             BN_get_word(e) >= GW_MIN_RSA_EXPONENT; /* BN_get_word: all ones if e has more bits */

    BN_free(e);
    return ok;
}

/* Keys: RSA >= 2048 bits with an odd exponent >= 65537, EC P-256/P-384/P-521, Ed25519, Ed448. */
static int key_ok(const EVP_PKEY *pkey)
{
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        return EVP_PKEY_get_bits(pkey) >= GW_MIN_RSA_BITS &&
               EVP_PKEY_get_bits(pkey) <= OPENSSL_RSA_MAX_MODULUS_BITS && rsa_exponent_ok(pkey);
    case EVP_PKEY_EC:
        return ec_curve_ok(pkey);
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        return 1;
    default:
        return 0;
    }
}

static int plan_key(const struct gw_cert_req *req, struct gw_cert_plan *out, int *fail_info, char *err)
{
    if (req->pubkey == NULL)
        return refuse(fail_info, err, "certificate template has no public key");
    if (!key_ok(req->pubkey))
        return refuse(
            fail_info, err,
            "key type/size not allowed: use RSA >= 2048 bits with an odd public exponent >= 65537, EC "
            "P-256/P-384/P-521, Ed25519 or Ed448");
    if (EVP_PKEY_up_ref(req->pubkey) != 1) {
        snprintf(err, GW_ERR_LEN, "out of memory");
        return GW_ERR_NOMEM;
    }
    out->pubkey = req->pubkey;
    return 0;
}

/*
 * plan_validity: notBefore is now minus the backdate (clients' clocks drift), whatever was asked:
 * an earlier start would make a certificate valid for a time before it was issued, a later one is not
 * honoured; either is a modification (grantedWithMods), as a notAfter capped at now + max_ttl is.
 * Without a notAfter, now + ttl.
 */
static int plan_validity(const struct gw_role *role, const struct gw_cert_req *req, time_t now,
                         struct gw_cert_plan *out, int *fail_info, char *err)
{
    time_t max_ttl = role->max_ttl != 0 ? (time_t)role->max_ttl : GW_DEFAULT_MAX_TTL;
    time_t ttl = role->ttl != 0 ? (time_t)role->ttl : GW_DEFAULT_TTL;

    if (ttl > max_ttl)
        ttl = max_ttl;
    out->not_before = now - GW_BACKDATE_SECS;
    if (req->not_before != 0 &&
        (req->not_before > now + GW_BACKDATE_SECS || req->not_before < now - GW_BACKDATE_SECS))
        out->modified = 1;
    if (req->not_after == 0) {
        out->not_after = now + ttl;
        return 0;
    }
    if (req->not_after <= now || (req->not_before != 0 && req->not_after <= req->not_before))
        return refuse(fail_info, err, "the requested validity ends in the past or before it starts");
    out->not_after = req->not_after;
    out->not_after_asked = 1;
    if (out->not_after > now + max_ttl) {
        out->not_after = now + max_ttl;
        out->modified = 1;
    }
    return 0;
}

int gw_cert_plan_make(const struct gw_role *role, struct gw_cert_req *req, time_t now,
                      struct gw_cert_plan *out, int *fail_info, char *err)
{
    int rc = GW_ERR_INVAL;

    gw_cert_plan_init(out);
    *fail_info = OSSL_CMP_PKIFAILUREINFO_badRequest;
    err[0] = '\0';
    if (role == NULL || req == NULL) {
        snprintf(err, GW_ERR_LEN, "no role or request to plan a certificate from");
        goto out;
    }
    if ((rc = plan_sans(role, req, out, fail_info, err)) != 0 ||
        (rc = plan_subject(role, req, out, fail_info, err)) != 0 ||
        (rc = plan_key(req, out, fail_info, err)) != 0 ||
        (rc = plan_validity(role, req, now, out, fail_info, err)) != 0)
        goto out;
    /* RFC 5280 §4.2.1.3: keyCertSign/cRLSign only with cA TRUE, which this gateway never issues. */
    out->key_usage = role->key_usage & ~(unsigned)(KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    out->ext_key_usage = role->ext_key_usage;
    if (req->other_exts > 0)
        out->modified = 1; /* e.g. basicConstraints CA:TRUE was asked for: ignored */
    if (req->csr_exts != NULL && (out->csr_exts = sk_X509_EXTENSION_deep_copy(
                                      req->csr_exts, X509_EXTENSION_dup, X509_EXTENSION_free)) == NULL) {
        rc = GW_ERR_NOMEM;
        snprintf(err, GW_ERR_LEN, "out of memory");
        goto out;
    }
    /* the request's subject and key are not read again: the plan takes them, copies cost a decoding
       each (NULL spki: the issuer encodes the key itself) */
    if (out->subject == NULL) {
        out->subject = req->subject;
        req->subject = NULL;
    }
    out->spki = req->spki;
    req->spki = NULL;
    *fail_info = 0;
out:
    if (rc == GW_ERR_NOMEM)
        *fail_info = OSSL_CMP_PKIFAILUREINFO_systemFailure;
    if (rc != 0)
        gw_cert_plan_cleanup(out);
    return rc;
}

/* KeyUsage named bits (RFC 5280 §4.2.1.3) in OpenSSL's KU_* encoding, by bit number, with the names
 * the role configuration ("key_usage") and the refusals use. */
static const struct {
    unsigned ku;
    const char *name;
} ku_bits[] = {
    {KU_DIGITAL_SIGNATURE, "digitalSignature"},
    {KU_NON_REPUDIATION, "nonRepudiation"},
    {KU_KEY_ENCIPHERMENT, "keyEncipherment"},
    {KU_DATA_ENCIPHERMENT, "dataEncipherment"},
    {KU_KEY_AGREEMENT, "keyAgreement"},
    {KU_KEY_CERT_SIGN, "keyCertSign"},
    {KU_CRL_SIGN, "cRLSign"},
    {KU_ENCIPHER_ONLY, "encipherOnly"},
    {KU_DECIPHER_ONLY, "decipherOnly"},
};

/* The extendedKeyUsage purposes a role may grant (RFC 5280 §4.2.1.12, RFC 6402 §2.10 for cmcRA). */
static const struct {
    unsigned eku;
    int nid;
    const char *name;
} ekus[] = {
    {GW_EKU_SERVER_AUTH, NID_server_auth, "serverAuth"},
    {GW_EKU_CLIENT_AUTH, NID_client_auth, "clientAuth"},
    {GW_EKU_CODE_SIGNING, NID_code_sign, "codeSigning"},
    {GW_EKU_EMAIL_PROTECTION, NID_email_protect, "emailProtection"},
    {GW_EKU_TIME_STAMPING, NID_time_stamp, "timeStamping"},
    {GW_EKU_OCSP_SIGNING, NID_OCSP_sign, "OCSPSigning"},
    {GW_EKU_CMC_RA, NID_cmcRA, "cmcRA"},
};

const char *gw_ku_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof(ku_bits) / sizeof(ku_bits[0]); i++) {
        if (ku_bits[i].ku == bit)
            return ku_bits[i].name;
    }
    return NULL;
}

unsigned gw_ku_from_bit(int n)
{
    return n >= 0 && (size_t)n < sizeof(ku_bits) / sizeof(ku_bits[0]) ? ku_bits[n].ku : 0;
}

const char *gw_eku_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof(ekus) / sizeof(ekus[0]); i++) {
        if (ekus[i].eku == bit)
            return ekus[i].name;
    }
    return NULL;
}

unsigned gw_eku_from_nid(int nid)
{
    for (size_t i = 0; nid != NID_undef && i < sizeof(ekus) / sizeof(ekus[0]); i++) {
        if (ekus[i].nid == nid)
            return ekus[i].eku;
    }
    return 0;
}

static ASN1_BIT_STRING *ku_new(unsigned ku)
{
    ASN1_BIT_STRING *bs = ASN1_BIT_STRING_new();

    for (size_t i = 0; bs != NULL && i < sizeof(ku_bits) / sizeof(ku_bits[0]); i++) {
        if ((ku & ku_bits[i].ku) != 0 && ASN1_BIT_STRING_set_bit(bs, (int)i, 1) != 1) {
            ASN1_BIT_STRING_free(bs);
            return NULL;
        }
    }
    return bs;
}

static EXTENDED_KEY_USAGE *eku_new(unsigned eku)
{
    EXTENDED_KEY_USAGE *ext = sk_ASN1_OBJECT_new_null();

    for (size_t i = 0; ext != NULL && i < sizeof(ekus) / sizeof(ekus[0]); i++) {
        if ((eku & ekus[i].eku) != 0 && sk_ASN1_OBJECT_push(ext, OBJ_nid2obj(ekus[i].nid)) <= 0) {
            sk_ASN1_OBJECT_free(ext);
            return NULL;
        }
    }
    return ext;
}

/* Appends a copy of the extension |nid| with |value|. */
static int ext_add(STACK_OF(X509_EXTENSION) **exts, int nid, int crit, void *value)
{
    X509_EXTENSION *ext = X509V3_EXT_i2d(nid, crit, value);
    int ok = ext != NULL && X509v3_add_ext(exts, ext, -1) != NULL;

    X509_EXTENSION_free(ext);
    return ok;
}

int gw_usage_exts_add(STACK_OF(X509_EXTENSION) **exts, unsigned ku, unsigned eku)
{
    ASN1_BIT_STRING *bs = NULL;
    EXTENDED_KEY_USAGE *ext = NULL;
    int ok = 1;

    if (ku != 0)
        ok = (bs = ku_new(ku)) != NULL && ext_add(exts, NID_key_usage, 1, bs);
    if (ok && eku != 0)
        ok = (ext = eku_new(eku)) != NULL && ext_add(exts, NID_ext_key_usage, 0, ext);
    ASN1_BIT_STRING_free(bs);
    sk_ASN1_OBJECT_free(ext); /* OBJ_nid2obj objects are static */
    return ok;
}
