/*
 * The audit log (docs/design.md D8): JSON lines appended to one file, which must reach the disk
 * before a certificate leaves.
 *
 * Each line is built in a heap buffer (capped at GW_AUDIT_LINE_MAX: a CSR in PEM can be most of a
 * GW_MAX_CMP_BODY request) and written with one write(2) under the lock, so lines from workers
 * never interleave. The names a certificate holds are its CA's to choose, a hostile upstream's too:
 * each audit_fields value is cut at GW_AUDIT_FIELD_MAX (the csr at GW_AUDIT_CSR_MAX), so that no
 * certificate makes a line over the cap, which would refuse every record of it; and each of the
 * transaction's own fields at GW_AUDIT_TXN_FIELD_MAX, whatever the caller passes. A record refused
 * all the same (out of memory) says nothing of the disk and leaves readiness alone. A line torn by a failed
 * write is closed with a newline before the next one, so every other line still parses; a failed write
 * that wrote nothing tears no line, and adds none, and one that got out only that newline closed it. Reopen
 * opens the new file first and swaps the descriptor under the same lock: a failed reopen keeps logging to the
 * old file.
 *
 * Group commit: a record that must be on disk waits for the next fsync to start after its write;
 * one writer runs it, outside the lock, for every record written until then, and the others wait
 * for its result. Concurrent issuances share one fsync, and "on disk before the response" holds
 * for each. An fsync's result is kept per generation (GW_AUDIT_SYNC_RING), so each waiter learns
 * whether the fsync that covered its record succeeded; a reopen's fsync of the old file is one.
 */
#include "gateway/cmp/audit.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/user.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

struct gw_audit {
    atomic_int refs;      /* gw_audit_open and each gw_audit_share */
    pthread_mutex_t lock; /* guards everything below */
    int fd;
    bool torn;                          /* the last line was cut short by a failed write */
    char failing[GW_ERR_LEN / 2];       /* why the last write failed; "" after a success */
    char sync_failing[GW_ERR_LEN / 2];  /* why the last fsync of |fd| failed; "" after a successful one or a
                                           reopen: a write alone says nothing of what fsync will do */
    char reopen_failed[GW_ERR_LEN / 2]; /* why the last reopen failed; "" after a successful one:
                                           records still go to the rotated file until then */
    time_t last_err_log;                /* rate limit of the error log line */
    /* group commit: generations of fsync, one running at a time (|syncing|) */
    pthread_cond_t synced;
    bool syncing;
    bool retrying; /* a thread of gw_audit_probe's runs (or waits to run) its fsync, holding a reference */
    uint64_t gen_started, gen_done;
    bool gen_ok[GW_AUDIT_SYNC_RING];
    unsigned long errs_suppressed;
    char *path;
    char shown[GW_ERR_LEN]; /* |path| as its log lines name it (gw_conf_show_file) */
    uid_t owner;            /* who may own the file and its directory, besides root: the gateway's user */
    gid_t group;            /* with |owner|, whom a log created as root is created as */
    unsigned fields;        /* enum gw_audit_field */
};

/* ---- a growable buffer with a cap ---- */

struct buf {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory or over GW_AUDIT_LINE_MAX: the line is not written */
    bool cut;    /* a value was cut (put_capped): the line says "truncated" */
};

static bool buf_reserve(struct buf *b, size_t n)
{
    size_t want = b->len + n + 1, cap = b->cap != 0 ? b->cap : 1024;
    char *p;

    if (b->failed || n > GW_AUDIT_LINE_MAX || want > GW_AUDIT_LINE_MAX) {
        b->failed = true;
        return false;
    }
    if (want <= b->cap)
        return true;
    while (cap < want)
        cap *= 2;
    if (cap > GW_AUDIT_LINE_MAX)
        cap = GW_AUDIT_LINE_MAX;
    if ((p = realloc(b->p, cap)) == NULL) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void put_bytes(struct buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put_raw(struct buf *b, const char *s)
{
    put_bytes(b, s, strlen(s));
}

/* Appends |n| bytes of |s| JSON-escaped; an embedded NUL (possible in an IA5String) becomes \u0000. */
static void put_escaped(struct buf *b, const char *s, size_t n)
{
    if (n > 0 && buf_reserve(b, 6 * n)) /* at most 6 output bytes per input byte (\u00XX, \ufffd) */
        b->len += gw_json_escape_n(b->p + b->len, b->cap - b->len, s, n);
}

/* Appends the |n| bytes of |s| as a JSON string. */
static void put_string(struct buf *b, const char *s, size_t n)
{
    put_raw(b, "\"");
    put_escaped(b, s, n);
    put_raw(b, "\"");
}

/*
 * put_string of at most |max| bytes escaped: a longer value is cut, never inside an escape or a
 * character, and ends in GW_AUDIT_TRUNCATED (b->cut). An escape of |max| + 8 bytes tells: it stops
 * only past |max| (no escape or character is over 6 bytes), so one within |max| is the whole value.
 */
static void put_capped(struct buf *b, const char *s, size_t n, size_t max)
{
    size_t mark = strlen(GW_AUDIT_TRUNCATED), k;

    if (n <= max / 6) { /* whole even if every byte is a \u00XX */
        put_string(b, s, n);
        return;
    }
    put_raw(b, "\"");
    if (buf_reserve(b, max + 8)) {
        k = gw_json_escape_n(b->p + b->len, max + 8, s, n);
        if (k > max) {
            k = gw_json_escape_n(b->p + b->len, max - mark + 1, s, n);
            memcpy(b->p + b->len + k, GW_AUDIT_TRUNCATED, mark + 1);
            k += mark;
            b->cut = true;
        }
        b->len += k;
    }
    put_raw(b, "\"");
}

/* The bytes of a name kept for a field: one past GW_AUDIT_FIELD_MAX is enough for put_capped to cut it
   there (no byte escapes to less than itself), and a certificate's name may be most of a MiB. */
static size_t upto(size_t n)
{
    return n <= GW_AUDIT_FIELD_MAX ? n : GW_AUDIT_FIELD_MAX + 1;
}

static void put_key(struct buf *b, const char *key)
{
    put_raw(b, ",\"");
    put_raw(b, key);
    put_raw(b, "\":");
}

/* A string field, cut at GW_AUDIT_TXN_FIELD_MAX escaped: one past it is all put_capped reads of |value|. */
static void put_str_field(struct buf *b, const char *key, const char *value)
{
    if (value == NULL)
        return;
    put_key(b, key);
    put_capped(b, value, strnlen(value, GW_AUDIT_TXN_FIELD_MAX + 1), GW_AUDIT_TXN_FIELD_MAX);
}

static void put_int_field(struct buf *b, const char *key, long v)
{
    char num[24];

    snprintf(num, sizeof(num), "%ld", v);
    put_key(b, key);
    put_raw(b, num);
}

static void put_bool_field(struct buf *b, const char *key, bool v)
{
    put_key(b, key);
    put_raw(b, v ? "true" : "false");
}

/* Joins |s| (|n| bytes) onto the raw list |b| with Vault's "," separator; nothing once the list is
   over GW_AUDIT_FIELD_MAX, which put_capped cuts anyway. */
static void join(struct buf *b, const unsigned char *s, size_t n)
{
    if (b->len > GW_AUDIT_FIELD_MAX)
        return;
    if (b->len > 0)
        put_bytes(b, ",", 1);
    put_bytes(b, (const char *)s, upto(n));
}

/* Joins an ASN.1 string converted to UTF-8. */
static void join_asn1(struct buf *b, const ASN1_STRING *s)
{
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);

    if (n < 0) {
        join(b, (const unsigned char *)"?", 1);
        return;
    }
    join(b, utf8, (size_t)n);
    OPENSSL_free(utf8);
}

/* ---- where audit_fields come from ---- */

/* The record's subject, SANs and key, or, where it has none, the CSR's. */
struct src {
    const struct gw_audit_rec *r;
    const X509_NAME *subject;
    GENERAL_NAMES *csr_sans; /* owned: decoded from the CSR when the record has no SANs */
    const GENERAL_NAMES *sans;
    const EVP_PKEY *pubkey;
};

static void src_init(struct src *s, const struct gw_audit_rec *r)
{
    X509_REQ *csr = (X509_REQ *)r->csr; /* 3.0 getters take no const; none of them modifies */
    STACK_OF(X509_EXTENSION) *exts = NULL;

    memset(s, 0, sizeof(*s));
    s->r = r;
    s->subject = r->subject != NULL || csr == NULL ? r->subject : X509_REQ_get_subject_name(csr);
    s->pubkey = r->pubkey != NULL || csr == NULL ? r->pubkey : X509_REQ_get0_pubkey(csr);
    s->sans = r->sans;
    if (s->sans == NULL && csr != NULL && (exts = X509_REQ_get_extensions(csr)) != NULL) {
        s->csr_sans = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
        s->sans = s->csr_sans;
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
}

static void src_cleanup(struct src *s)
{
    GENERAL_NAMES_free(s->csr_sans);
}

/* A subject attribute's values joined with ","; |last| keeps only the last (Go's, hence Vault's, CN). */
static void put_name_attr(struct buf *b, const char *key, const X509_NAME *name, int nid, bool last)
{
    struct buf list = {0};
    int i = -1, found = -1;

    while (name != NULL && (i = X509_NAME_get_index_by_NID(name, nid, i)) >= 0) {
        if (last)
            found = i;
        else
            join_asn1(&list, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    }
    if (found >= 0)
        join_asn1(&list, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, found)));
    put_key(b, key);
    put_capped(b, list.p != NULL ? list.p : "", list.len, GW_AUDIT_FIELD_MAX);
    b->failed |= list.failed;
    free(list.p);
}

/* An IP SAN in its usual text form (Go's net.IP.String()); other lengths in hex. */
static void join_ip(struct buf *list, const ASN1_OCTET_STRING *ip)
{
    char text[INET6_ADDRSTRLEN], hex[2 * 32 + 1];
    int n = ASN1_STRING_length(ip);
    const unsigned char *d = ASN1_STRING_get0_data(ip);

    if ((n == 4 && inet_ntop(AF_INET, d, text, sizeof(text)) != NULL) ||
        (n == 16 && inet_ntop(AF_INET6, d, text, sizeof(text)) != NULL)) {
        join(list, (const unsigned char *)text, strlen(text));
        return;
    }
    gw_hex(hex, d, n > 0 && n <= 32 ? (size_t)n : 0);
    join(list, (const unsigned char *)hex, strlen(hex));
}

/* An otherName SAN as Vault writes other_sans: "<oid>;UTF8:<value>", other value types as DER hex. */
static void join_other(struct buf *list, const OTHERNAME *on)
{
    char oid[128], *hex = NULL;
    unsigned char *der = NULL;
    struct buf item = {0};
    int n;

    OBJ_obj2txt(oid, sizeof(oid), on->type_id, 1);
    put_raw(&item, oid);
    if (on->value != NULL && on->value->type == V_ASN1_UTF8STRING) {
        put_raw(&item, ";UTF8:");
        put_bytes(&item, (const char *)ASN1_STRING_get0_data(on->value->value.utf8string),
                  upto((size_t)ASN1_STRING_length(on->value->value.utf8string)));
    } else if ((n = i2d_ASN1_TYPE(on->value, &der)) > 0 && (hex = malloc(2 * upto((size_t)n) + 1)) != NULL) {
        gw_hex(hex, der, upto((size_t)n));
        put_raw(&item, ";HEX:");
        put_raw(&item, hex);
    }
    join(list, (const unsigned char *)(item.p != NULL ? item.p : ""), item.len);
    list->failed |= item.failed;
    free(item.p);
    free(hex);
    OPENSSL_free(der);
}

/* The SANs of types |t1|/|t2| joined with ",": alt_names are DNS and email, as Vault has them. */
static void put_sans(struct buf *b, const char *key, const GENERAL_NAMES *sans, int t1, int t2)
{
    struct buf list = {0};
    int i;

    for (i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);

        if (gn->type != t1 && gn->type != t2)
            continue;
        if (gn->type == GEN_IPADD)
            join_ip(&list, gn->d.iPAddress);
        else if (gn->type == GEN_OTHERNAME)
            join_other(&list, gn->d.otherName);
        else
            join(&list, ASN1_STRING_get0_data(gn->d.ia5), (size_t)ASN1_STRING_length(gn->d.ia5));
    }
    put_key(b, key);
    put_capped(b, list.p != NULL ? list.p : "", list.len, GW_AUDIT_FIELD_MAX);
    b->failed |= list.failed;
    free(list.p);
}

/* Vault's key_type names; Ed keys have no key_bits in Vault (0). */
static const char *key_type(const EVP_PKEY *k, int *bits)
{
    int id = k != NULL ? EVP_PKEY_get_base_id(k) : NID_undef;

    *bits = k != NULL ? EVP_PKEY_get_bits(k) : 0;
    switch (id) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        return "rsa";
    case EVP_PKEY_EC:
        return "ec";
    case EVP_PKEY_ED25519:
        *bits = 0;
        return "ed25519";
    case EVP_PKEY_ED448:
        *bits = 0;
        return "ed448";
    default:
        *bits = 0;
        return k != NULL ? "unknown" : "";
    }
}

/* The CSR's signature digest size in bits (Vault's signature_bits); 0 for Ed25519 or no CSR. */
static int signature_bits(const X509_REQ *csr, bool *pss)
{
    const X509_ALGOR *alg = NULL;
    RSA_PSS_PARAMS *pp = NULL;
    const EVP_MD *md;
    int md_nid = NID_undef, pk_nid, sig_nid, bits = 0;

    *pss = false;
    if (csr == NULL)
        return 0;
    X509_REQ_get0_signature(csr, NULL, &alg);
    if (alg == NULL)
        return 0;
    sig_nid = OBJ_obj2nid(alg->algorithm);
    if (sig_nid == NID_rsassaPss) {
        *pss = true;
        md_nid = NID_sha1; /* RFC 4055 §3.1: the default hash */
        if (alg->parameter != NULL && alg->parameter->type == V_ASN1_SEQUENCE &&
            (pp = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(RSA_PSS_PARAMS), alg->parameter)) != NULL &&
            pp->hashAlgorithm != NULL)
            md_nid = OBJ_obj2nid(pp->hashAlgorithm->algorithm);
    } else if (OBJ_find_sigid_algs(sig_nid, &md_nid, &pk_nid) != 1) {
        md_nid = NID_undef;
    }
    if (md_nid != NID_undef && (md = EVP_get_digestbynid(md_nid)) != NULL)
        bits = 8 * EVP_MD_get_size(md);
    RSA_PSS_PARAMS_free(pp);
    return bits;
}

/* Whether the CSR asks for basicConstraints cA TRUE (Vault's add_basic_constraints). Never granted. */
static bool asks_basic_constraints(const X509_REQ *csr)
{
    STACK_OF(X509_EXTENSION) *exts;
    BASIC_CONSTRAINTS *bc;
    bool ca = false;

    if (csr == NULL || (exts = X509_REQ_get_extensions((X509_REQ *)csr)) == NULL)
        return false;
    if ((bc = X509V3_get_d2i(exts, NID_basic_constraints, NULL, NULL)) != NULL) {
        ca = bc->ca != 0;
        BASIC_CONSTRAINTS_free(bc);
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return ca;
}

static void put_csr(struct buf *b, const X509_REQ *csr)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long n = 0;

    if (mem != NULL && csr != NULL && PEM_write_bio_X509_REQ(mem, csr) == 1)
        n = BIO_get_mem_data(mem, &pem);
    if (csr != NULL && n <= 0)
        b->failed = true; /* a configured field is never silently dropped */
    put_key(b, "csr");
    put_capped(b, n > 0 ? pem : "", n > 0 ? (size_t)n : 0, GW_AUDIT_CSR_MAX);
    BIO_free(mem);
}

enum field_kind {
    F_NAME,
    F_NAME_LAST,
    F_SANS,
    F_KEY_TYPE,
    F_KEY_BITS,
    F_SIG_BITS,
    F_CSR,
    F_EXCL_CN,
    F_PSS,
    F_BC
};

/* Vault's audit_fields, in Vault's order; |a|, |b| are a subject NID or two GEN_* SAN types. */
static const struct audit_field {
    unsigned bit;
    const char *name;
    enum field_kind kind;
    int a, b;
} audit_fields[] = {
    {GW_AUDIT_COMMON_NAME, "common_name", F_NAME_LAST, NID_commonName, 0},
    {GW_AUDIT_ALT_NAMES, "alt_names", F_SANS, GEN_DNS, GEN_EMAIL},
    {GW_AUDIT_IP_SANS, "ip_sans", F_SANS, GEN_IPADD, GEN_IPADD},
    {GW_AUDIT_URI_SANS, "uri_sans", F_SANS, GEN_URI, GEN_URI},
    {GW_AUDIT_OTHER_SANS, "other_sans", F_SANS, GEN_OTHERNAME, GEN_OTHERNAME},
    {GW_AUDIT_OU, "ou", F_NAME, NID_organizationalUnitName, 0},
    {GW_AUDIT_ORGANIZATION, "organization", F_NAME, NID_organizationName, 0},
    {GW_AUDIT_COUNTRY, "country", F_NAME, NID_countryName, 0},
    {GW_AUDIT_LOCALITY, "locality", F_NAME, NID_localityName, 0},
    {GW_AUDIT_PROVINCE, "province", F_NAME, NID_stateOrProvinceName, 0},
    {GW_AUDIT_STREET_ADDRESS, "street_address", F_NAME, NID_streetAddress, 0},
    {GW_AUDIT_POSTAL_CODE, "postal_code", F_NAME, NID_postalCode, 0},
    {GW_AUDIT_SERIAL_NUMBER, "serial_number", F_NAME, NID_serialNumber, 0},
    {GW_AUDIT_KEY_TYPE, "key_type", F_KEY_TYPE, 0, 0},
    {GW_AUDIT_KEY_BITS, "key_bits", F_KEY_BITS, 0, 0},
    {GW_AUDIT_SIGNATURE_BITS, "signature_bits", F_SIG_BITS, 0, 0},
    {GW_AUDIT_CSR, "csr", F_CSR, 0, 0},
    {GW_AUDIT_EXCLUDE_CN_FROM_SANS, "exclude_cn_from_sans", F_EXCL_CN, 0, 0},
    {GW_AUDIT_USE_PSS, "use_pss", F_PSS, 0, 0},
    {GW_AUDIT_ADD_BASIC_CONSTRAINTS, "add_basic_constraints", F_BC, 0, 0},
};

/* Every audit_fields value at its cap (a key and its quotes within 32 bytes) takes at most half a line:
   the other half is the transaction's own fields (txn_fields), each cut at GW_AUDIT_TXN_FIELD_MAX. */
_Static_assert(sizeof(audit_fields) / sizeof(audit_fields[0]) * (GW_AUDIT_FIELD_MAX + 32) +
                       GW_AUDIT_CSR_MAX <=
                   GW_AUDIT_LINE_MAX / 2,
               "audit_fields at their caps fit half an audit line");

static void put_audit_field(struct buf *b, const struct audit_field *f, const struct src *s)
{
    const X509_REQ *csr = s->r->csr;
    int bits = 0;
    bool pss = false;

    switch (f->kind) {
    case F_NAME:
    case F_NAME_LAST:
        put_name_attr(b, f->name, s->subject, f->a, f->kind == F_NAME_LAST);
        break;
    case F_SANS:
        put_sans(b, f->name, s->sans, f->a, f->b);
        break;
    case F_KEY_TYPE:
        put_str_field(b, f->name, key_type(s->pubkey, &bits));
        break;
    case F_KEY_BITS:
        key_type(s->pubkey, &bits);
        put_int_field(b, f->name, bits);
        break;
    case F_SIG_BITS:
        put_int_field(b, f->name, signature_bits(csr, &pss));
        break;
    case F_CSR:
        put_csr(b, csr);
        break;
    case F_EXCL_CN:
        put_bool_field(b, f->name, s->r->exclude_cn_from_sans != 0);
        break;
    case F_PSS:
        signature_bits(csr, &pss);
        put_bool_field(b, f->name, pss);
        break;
    case F_BC:
        put_bool_field(b, f->name, asks_basic_constraints(csr));
        break;
    }
}

/* ---- the line ---- */

static void put_time(struct buf *b)
{
    struct timespec ts;
    struct tm tm;
    char date[24], stamp[40];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp, sizeof(stamp), "{\"time\":\"%.20s.%03dZ\"", date, (int)(ts.tv_nsec / 1000000) % 1000);
    put_raw(b, stamp);
}

/* The transaction's own fields, in the record's order (build_line gives their values). */
static const char *const txn_fields[] = {
    "event",     "tid",      "route",  "role",  "identity", "tls_subject", "credential_status",
    "body_type", "upstream", "serial", "status"};

/* Those at their cap (a key and its quotes within 32 bytes), key_type, the time and "truncated" fit the other
   half: whatever a client, an upstream or a caller puts in them, no record is over GW_AUDIT_LINE_MAX. */
_Static_assert((sizeof(txn_fields) / sizeof(txn_fields[0]) + 1) * (GW_AUDIT_TXN_FIELD_MAX + 32) + 128 <=
                   GW_AUDIT_LINE_MAX / 2,
               "the transaction's fields at their caps fit half an audit line");

/* Builds the whole line of |r| into |b|, newline included; b->failed if it could not be. */
static void build_line(struct buf *b, const struct gw_audit_rec *r, unsigned fields)
{
    const char *const values[] = {
        r->event,     r->tid,      r->route,  r->role,  r->identity, r->tls_subject, r->credential_status,
        r->body_type, r->upstream, r->serial, r->status};
    struct src s;
    size_t i;

    _Static_assert(sizeof(values) / sizeof(values[0]) == sizeof(txn_fields) / sizeof(txn_fields[0]),
                   "a value for each transaction field");
    put_time(b);
    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        put_str_field(b, txn_fields[i], values[i]);
    src_init(&s, r);
    for (i = 0; i < sizeof(audit_fields) / sizeof(audit_fields[0]); i++) {
        if ((fields & audit_fields[i].bit) != 0)
            put_audit_field(b, &audit_fields[i], &s);
    }
    src_cleanup(&s);
    if (b->cut)
        put_bool_field(b, "truncated", true);
    put_raw(b, "}\n");
}

/* ---- the file ---- */

/*
 * Whoever may add names to the log's directory could plant a symbolic or a hard link at its path,
 * before a start (perhaps as root) or a reopen, and have records appended to a file of their choice:
 * the directory is held to gw_conf_check_dir, the path is never followed, and what it names must be
 * a regular file of the gateway's user or root with no other name. Whoever else may write the file
 * could append forged records or cut it short: group and others may not. 0, or GW_ERR_FORBIDDEN with
 * |err|.
 */
static int check_log(const char *path, const struct stat *st, uid_t owner, char *err)
{
    char shown[GW_ERR_LEN];

    gw_conf_show_file(path, shown, sizeof(shown));
    if (!S_ISREG(st->st_mode))
        gw_conf_bprintf(err, GW_ERR_LEN, "audit.file: \"%s\" is not a regular file", shown);
    else if (st->st_nlink != 1)
        gw_conf_bprintf(err, GW_ERR_LEN,
                        "audit.file: \"%s\" has %lu names (a hard link): give the log a name of its own",
                        shown, (unsigned long)st->st_nlink);
    else if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
        gw_conf_bprintf(err, GW_ERR_LEN,
                        "audit.file: \"%s\" is writable by group or others (mode %04o): make it 0600", shown,
                        (unsigned)(st->st_mode & 07777));
    else
        return gw_conf_check_owner("audit.file", "", path, st, owner, err);
    return GW_ERR_FORBIDDEN;
}

/*
 * |name| opened to append from the directory |dir| that was judged (gw_conf_open_dir), created 0600 if
 * absent; never through a link. O_EXCL first, and once more should another rename or remove the name
 * between the two opens. From |dir|, not by the path again: the directories on the way may be that
 * user's, who could otherwise swap one for a link to any directory between the check and the open, and
 * have root append to a file of root's there. Created as |owner| and |group| (gw_user_openat_as): the
 * file is born theirs, to reopen once root is given up, and where that user may not write root makes
 * none. fd, or -1 with errno.
 */
static int open_append(int dir, const char *name, uid_t owner, gid_t group)
{
    /* O_NONBLOCK: a FIFO at the path is refused at once (ENXIO, or by check_log), not waited on */
    const int flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
    int fd = -1;

    for (int tries = 0; tries < 2; tries++) {
        fd = gw_user_openat_as(dir, name, flags | O_CREAT | O_EXCL, 0600, owner, group);
        if (fd >= 0 || errno != EEXIST)
            return fd;
        if ((fd = openat(dir, name, flags)) >= 0 || errno != ENOENT)
            return fd;
    }
    return fd;
}

/* Makes a newly created log's directory entry durable too (fsync(2): the file's own fsync does not). */
static void sync_dir(int dir)
{
    int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/*
 * Whether |owner| (|group|) reaches the directory |dir| of |path| by its path: the opens from |dir| judge
 * that user's rights on |dir| alone, not on the directories above it, and the user reopens the log by
 * its path once root is given up. 0, or -1 with errno (EXDEV: the path leads elsewhere by now).
 */
static int user_reaches(int dir, const char *path, uid_t owner, gid_t group)
{
    char *named = gw_conf_dir_of(path);
    int fd = named != NULL
                 ? gw_user_openat_as(AT_FDCWD, named, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, owner, group)
                 : -1,
        e = named != NULL ? errno : ENOMEM;
    struct stat a, b;

    free(named);
    if (fd < 0) {
        errno = e;
        return -1;
    }
    e = fstat(fd, &a) == 0 && fstat(dir, &b) == 0 ? (a.st_dev == b.st_dev && a.st_ino == b.st_ino ? 0 : EXDEV)
                                                  : errno;
    close(fd);
    errno = e;
    return e == 0 ? 0 : -1;
}

/*
 * Whether |fd|, opened as |name| in |dir|, is still the one name there of what it opened: a hard link to
 * another file put at the name, then taken away between the open and its fstat, would pass check_log's
 * count of names with the file opened through it. 0, or GW_ERR_FORBIDDEN with |err|.
 */
static int still_one_name(int fd, int dir, const char *name, const char *shown, char *err)
{
    struct stat named;

    if (gw_conf_still_named(fd, dir, name, &named) == 1 && named.st_nlink == 1)
        return 0;
    gw_conf_bprintf(err, GW_ERR_LEN,
                    "audit.file: \"%s\" was replaced, or given another name, as it was opened", shown);
    return GW_ERR_FORBIDDEN;
}

/*
 * The log at |path| opened to append, as check_log allows, its directory entry synced: fd, or -1 with
 * |err| and *|rc| the failure: gw_conf_open_dir's, a failed system call's by its errno (gw_err_errno_io:
 * GW_ERR_NOMEM and GW_ERR_UNAVAILABLE are not the file's), else the file's. One it creates as root is
 * |owner|'s and |group|'s from the start (open_append): that user reopens it once root is given up (SIGUSR1),
 * and logrotate run as that user ("su") renames and compresses it.
 */
static int open_log(const char *path, uid_t owner, gid_t group, int *rc, char *err)
{
    char shown[GW_ERR_LEN];
    const char *name;
    struct stat st;
    int fd = -1, dir;

    if ((*rc = gw_conf_open_dir("audit.file", path, owner, &dir, &name, err)) != 0)
        return -1;
    gw_conf_show_file(path, shown, sizeof(shown));
    if (user_reaches(dir, path, owner, group) != 0) {
        *rc = errno == EXDEV ? GW_ERR_IO : gw_err_errno_io(errno);
        gw_conf_bprintf(
            err, GW_ERR_LEN,
            "audit.file: the gateway's user cannot reach the directory of \"%s\" by its path (%s): "
            "it reopens the log there once root is given up",
            shown, errno == EXDEV ? "it leads elsewhere" : strerror(errno));
        goto out;
    }
    if ((fd = open_append(dir, name, owner, group)) < 0) {
        *rc = gw_err_errno_io(errno);
        gw_conf_bprintf(err, GW_ERR_LEN, "audit.file: cannot open \"%s\": %s", shown,
                        errno == ELOOP ? "a symbolic link" : strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        *rc = gw_err_errno_io(errno);
        gw_conf_bprintf(err, GW_ERR_LEN, "audit.file: cannot read \"%s\": %s", shown, strerror(errno));
        goto fail;
    }
    if ((*rc = check_log(path, &st, owner, err)) != 0 ||
        (*rc = still_one_name(fd, dir, name, shown, err)) != 0)
        goto fail;
    sync_dir(dir);
    goto out;
fail:
    close(fd);
    fd = -1;
out:
    close(dir);
    return fd;
}

int gw_audit_file_check(const char *file, uid_t owner, char *err)
{
    struct stat st;
    int rc = gw_conf_stat_written("audit.file", file, owner, &st, err);

    return rc <= 0 ? rc : check_log(file, &st, owner, err);
}

enum failure {
    FAIL_WRITE,  /* readiness down until a write works */
    FAIL_FSYNC,  /* until an fsync works: a write does not clear it */
    FAIL_RECORD, /* a record not built (out of memory): nothing of the disk, readiness left alone */
};

/*
 * Keeps why for readiness (FAIL_RECORD apart) and logs an audit failure at most once per
 * GW_AUDIT_ERR_LOG_SECS; called with the lock held.
 */
static void log_failure(struct gw_audit *a, enum failure kind, const char *what, int errnum)
{
    char *why = kind == FAIL_FSYNC ? a->sync_failing : a->failing;
    size_t cap = kind == FAIL_FSYNC ? sizeof(a->sync_failing) : sizeof(a->failing);
    time_t now = time(NULL);

    if (kind != FAIL_RECORD)
        snprintf(why, cap, "%s%s%s", what, errnum != 0 ? ": " : "", errnum != 0 ? strerror(errnum) : "");
    if (now - a->last_err_log < GW_AUDIT_ERR_LOG_SECS) {
        a->errs_suppressed++;
        return;
    }
    gw_log(GW_LOG_ERROR, "audit_failed", "audit log %s: %s%s%s; %lu more failures since the last report",
           a->shown, what, errnum != 0 ? ": " : "", errnum != 0 ? strerror(errnum) : "", a->errs_suppressed);
    a->last_err_log = now;
    a->errs_suppressed = 0;
}

/*
 * The fsyncs are counted here, and the registry reads the count when rendered: the prober's fsync, on a
 * detached thread, may return after the stop freed the registry (gw_metrics_free_all), and must then
 * touch nothing of it. A count in static storage outlives every teardown.
 */
static atomic_ulong fsyncs;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static double fsyncs_value(void *arg)
{
    (void)arg;
    return (double)atomic_load(&fsyncs);
}

static void metrics_init(void)
{
    (void)gw_metric_new_counter_fn(
        "cmpgw_audit_fsyncs_total",
        "fsyncs of the audit log: concurrent records that must be on disk share one.", fsyncs_value, NULL);
}

struct gw_audit *gw_audit_open(const struct gw_audit_conf *conf, uid_t owner, gid_t group, int *rc, char *err)
{
    struct gw_audit *a = NULL;
    int why, *code = rc != NULL ? rc : &why;

    *code = GW_ERR_INVAL;
    if (conf == NULL || conf->file == NULL || conf->file[0] == '\0') {
        snprintf(err, GW_ERR_LEN, "audit: no file configured");
        return NULL;
    }
    if ((a = calloc(1, sizeof(*a))) == NULL || (a->path = strdup(conf->file)) == NULL)
        goto nomem;
    gw_conf_show_file(a->path, a->shown, sizeof(a->shown));
    a->fields = conf->fields;
    a->owner = owner;
    a->group = group;
    if ((a->fd = open_log(a->path, owner, group, code, err)) < 0) {
        free(a->path);
        free(a);
        return NULL;
    }
    pthread_once(&m_once, metrics_init); /* on the thread that opens it: never on a prober's */
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->synced, NULL);
    atomic_init(&a->refs, 1);
    *code = 0;
    return a;
nomem:
    snprintf(err, GW_ERR_LEN, "audit: out of memory");
    *code = GW_ERR_NOMEM;
    if (a != NULL)
        free(a->path);
    free(a);
    return NULL;
}

/*
 * Whether the log |a| writes still passes what open_log asks of a log (a reload judges it as a start
 * does); a chmod or a chown since it was opened fails it. The descriptor is read under the lock: a
 * reopen (SIGUSR1, on the main thread) replaces it while a reload (POST /reload, a thread of its own)
 * runs this.
 */
static bool still_fit(struct gw_audit *a)
{
    char err[GW_ERR_LEN];
    struct stat st;
    bool stat_ok;

    pthread_mutex_lock(&a->lock);
    stat_ok = fstat(a->fd, &st) == 0;
    pthread_mutex_unlock(&a->lock);
    return stat_ok && check_log(a->path, &st, a->owner, err) == 0 &&
           gw_conf_check_dir("audit.file", a->path, a->owner, err) == 0;
}

struct gw_audit *gw_audit_share(struct gw_audit *a, const struct gw_audit_conf *conf)
{
    if (a == NULL || conf == NULL || conf->file == NULL || strcmp(a->path, conf->file) != 0 ||
        a->fields != conf->fields || !still_fit(a))
        return NULL;
    atomic_fetch_add(&a->refs, 1);
    return a;
}

void gw_audit_close(struct gw_audit *a)
{
    if (a == NULL || atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    (void)fsync(a->fd);
    close(a->fd);
    pthread_cond_destroy(&a->synced);
    pthread_mutex_destroy(&a->lock);
    free(a->path);
    free(a);
}

/* Writes all of |p| to the log; called with the lock held. 0 or an errno value, with *done the bytes that
   reached the file all the same (a write cut short: a disk filling up, a file size limit). */
static int write_all(struct gw_audit *a, const char *p, size_t n, size_t *done)
{
    ssize_t w;

    *done = 0;
    while (n > 0) {
        w = write(a->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
        *done += (size_t)w;
    }
    return 0;
}

unsigned long gw_audit_fsyncs(void)
{
    return atomic_load(&fsyncs);
}

/*
 * Runs the next fsync generation of |fd| (lock held, none running): the lock is let go meanwhile.
 * Its result is kept for the writers whose records it covers, and they are woken. A |retry| of the
 * prober's (gw_audit_probe), which runs only while the last one failed, logs no failure of its own.
 */
static void sync_generation(struct gw_audit *a, int fd, bool retry)
{
    uint64_t g = ++a->gen_started;
    int e;

    a->syncing = true;
    pthread_mutex_unlock(&a->lock);
    e = fsync(fd) != 0 ? errno : 0;
    atomic_fetch_add(&fsyncs, 1);
    pthread_mutex_lock(&a->lock);
    a->gen_ok[g % GW_AUDIT_SYNC_RING] = e == 0;
    a->gen_done = g;
    a->syncing = false;
    /* the log written now fails (readiness says so until an fsync works); a retry's failure was
       logged when it began */
    if (e != 0 && fd == a->fd && !retry)
        log_failure(a, FAIL_FSYNC, "fsync", e);
    else if (e == 0 && fd == a->fd) /* whatever was written to it is on disk now */
        a->sync_failing[0] = '\0';
    else if (e != 0 && fd != a->fd) /* a rotated file's: its writers are told; the new file is not at fault */
        gw_log(GW_LOG_ERROR, "audit_fsync_failed", "audit log %s before its reopen: fsync: %s", a->shown,
               strerror(e));
    pthread_cond_broadcast(&a->synced);
}

/* Waits (lock held) until a record written just now is on disk: true, or false if its fsync failed. */
static bool await_sync(struct gw_audit *a)
{
    uint64_t mine = a->gen_started + 1; /* the first fsync to start after the write */

    while (a->gen_done < mine) {
        if (!a->syncing)
            sync_generation(a, a->fd, false);
        else
            pthread_cond_wait(&a->synced, &a->lock);
    }
    return a->gen_done - mine < GW_AUDIT_SYNC_RING && a->gen_ok[mine % GW_AUDIT_SYNC_RING];
}

/* worker */
int gw_audit_write(struct gw_audit *a, const struct gw_audit_rec *r, int sync)
{
    struct buf b = {0};
    const char *line;
    size_t done;
    int e, rc = GW_ERR_IO;

    if (a == NULL || r == NULL)
        return GW_ERR_IO;
    put_raw(&b, "\n"); /* b.p[0] is only written after a torn line (below) */
    build_line(&b, r, a->fields);
    pthread_mutex_lock(&a->lock);
    if (b.failed) {
        log_failure(a, FAIL_RECORD,
                    "record too large or out of memory (not written; the disk is not at fault)", 0);
        goto out;
    }
    line = a->torn ? b.p : b.p + 1;
    if ((e = write_all(a, line, a->torn ? b.len : b.len - 1, &done)) != 0) {
        /* the file ends mid-line unless the last byte out is a newline (the one closing a torn line; the
           record holds none else): a write that wrote nothing leaves it as it was, an earlier torn line
           still open and nothing to close else (no blank line) */
        if (done > 0)
            a->torn = line[done - 1] != '\n';
        log_failure(a, FAIL_WRITE, "write", e);
        goto out;
    }
    a->torn = false;
    a->failing[0] = '\0'; /* not sync_failing: only an fsync that works clears that (sync_generation) */
    if (sync && !await_sync(a))
        goto out; /* logged by the writer that ran it */
    rc = 0;
out:
    pthread_mutex_unlock(&a->lock);
    free(b.p);
    return rc;
}

/* The retry of gw_audit_probe, on a detached thread of its own: it holds a reference to |arg| (its last).
 * Its fsync may return after the stop freed everything else: it touches |arg| and |fsyncs| alone. */
static void *retry_main(void *arg)
{
    struct gw_audit *a = arg;

    pthread_mutex_lock(&a->lock);
    /* an fsync running already tells as much; a reopen waits for ours (|syncing|) before it swaps |fd| */
    if (a->sync_failing[0] != '\0' && !a->syncing)
        sync_generation(a, a->fd, true);
    a->retrying = false;
    pthread_cond_broadcast(&a->synced);
    pthread_mutex_unlock(&a->lock);
    gw_audit_close(a); /* frees it if the log was closed meanwhile */
    return NULL;
}

/* prober thread */
void gw_audit_probe(struct gw_audit *a)
{
    pthread_attr_t attr;
    pthread_t tid;
    bool start;

    if (a == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    start = a->sync_failing[0] != '\0' && !a->syncing && !a->retrying;
    a->retrying = a->retrying || start;
    pthread_mutex_unlock(&a->lock);
    if (!start)
        return;
    /* not on the prober's thread: an fsync on a hung disk (multipath queue_if_no_path, a hard NFS
       mount) lasts as long as the disk, and would stop the upstreams' probes and hold a reload's or
       shutdown's join of the prober; the thread is never joined, its reference keeps |a| alive */
    atomic_fetch_add(&a->refs, 1);
    if (pthread_attr_init(&attr) == 0) {
        start = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
                pthread_create(&tid, &attr, retry_main, a) == 0;
        pthread_attr_destroy(&attr);
    } else {
        start = false;
    }
    if (start)
        return;
    pthread_mutex_lock(&a->lock); /* no thread: the next tick tries again */
    a->retrying = false;
    pthread_cond_broadcast(&a->synced);
    pthread_mutex_unlock(&a->lock);
    atomic_fetch_sub(&a->refs, 1); /* not the last: the caller holds one */
}

void gw_audit_probe_wait(struct gw_audit *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    while (a->retrying)
        pthread_cond_wait(&a->synced, &a->lock);
    pthread_mutex_unlock(&a->lock);
}

/* main thread (SIGUSR1) */
int gw_audit_reopen(struct gw_audit *a)
{
    char why[GW_ERR_LEN];
    int fd, old, rc;

    if (a == NULL)
        return GW_ERR_IO;
    if ((fd = open_log(a->path, a->owner, a->group, &rc, why)) < 0) {
        gw_log(GW_LOG_ERROR, "audit_reopen_failed",
               "audit log %s: cannot reopen (still writing to the old file): %s", a->shown, why);
        pthread_mutex_lock(&a->lock);
        gw_conf_bprintf(a->reopen_failed, sizeof(a->reopen_failed), "reopen: %s", why);
        pthread_mutex_unlock(&a->lock);
        return GW_ERR_IO;
    }
    pthread_mutex_lock(&a->lock);
    while (a->syncing) /* no fsync of the old descriptor may be running when it is closed */
        pthread_cond_wait(&a->synced, &a->lock);
    old = a->fd;
    a->fd = fd;
    a->torn = false;
    a->failing[0] = '\0';
    a->sync_failing[0] = '\0';
    a->reopen_failed[0] = '\0';
    /* what went to the rotated file is on disk before we let go of it: the next generation, which
       the writers waiting on those records take as theirs */
    sync_generation(a, old, false);
    pthread_mutex_unlock(&a->lock);
    close(old);
    gw_log(GW_LOG_INFO, "audit_reopened", "audit log %s reopened", a->shown);
    return 0;
}

int gw_audit_status(struct gw_audit *a, char *why, size_t cap)
{
    int rc;

    if (a == NULL) {
        snprintf(why, cap, "not open");
        return GW_ERR_IO;
    }
    pthread_mutex_lock(&a->lock);
    rc = a->failing[0] != '\0' || a->sync_failing[0] != '\0' || a->reopen_failed[0] != '\0' ? GW_ERR_IO : 0;
    snprintf(why, cap, "%s",
             a->failing[0] != '\0'        ? a->failing
             : a->sync_failing[0] != '\0' ? a->sync_failing
                                          : a->reopen_failed);
    pthread_mutex_unlock(&a->lock);
    return rc;
}
