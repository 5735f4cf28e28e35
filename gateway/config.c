/*
 * Configuration: strict JSON into an immutable snapshot, with its crypto material loaded.
 *
 * The reader (base/conf.h) fills the structs by table; references between sections (role ->
 * upstream/trust/pbm, policy -> role) are resolved in one final cross-field pass here.
 */
#include "gateway/config.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/pem.h"
#include "base/limits.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define SIGN_VERBATIM "sign-verbatim" /* Vault's path policy, and the name of the role it selects */

/* A PBM reference is the senderKID (RFC 9810 §5.1.1): any printable ASCII, as it is compared bytewise. */
static bool kid_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > GW_MAX_KID_LEN)
        return false;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static const struct gw_conf_names names_kid = {kid_ok, "a reference of 1..128 printable ASCII characters"};

/* "role:<name>" or "forbid" into a struct gw_path_policy; the role is resolved in the final pass. */
static int p_policy(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                    const struct gw_conf_field *f)
{
    struct gw_path_policy *pol = gw_conf_at(base, f->off);
    const char *s = f->sdef;
    char buf[GW_CONF_SHOW_BUF];

    if (v != NULL && (s = gw_conf_want_string(pc, path, v, "\"role:<name>\" or \"forbid\"")) == NULL)
        return GW_ERR_INVAL;
    if (strcmp(s, "forbid") == 0) {
        pol->forbid = true;
        return 0;
    }
    /* Vault's "sign-verbatim" names the role of that name: its upstream and trust must be spelled out */
    if (strcmp(s, SIGN_VERBATIM) == 0)
        s = "role:" SIGN_VERBATIM;
    if (strncmp(s, "role:", 5) != 0 || !gw_conf_name_ok(s + 5, strlen(s + 5)))
        return gw_conf_fail(pc, path, "expected \"role:<name>\", \"sign-verbatim\" or \"forbid\", got %s",
                            gw_conf_show(v, buf, sizeof(buf)));
    if ((pol->role_name = strdup(s + 5)) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* A profile's value: "role:<name>" only. A profile selects a role; refusing is a path's policy. */
static int p_profile_role(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                          const struct gw_conf_field *f)
{
    struct gw_path_policy *pol = gw_conf_at(base, f->off);
    const char *s;
    char buf[GW_CONF_SHOW_BUF];

    if ((s = gw_conf_want_string(pc, path, v, "\"role:<name>\"")) == NULL)
        return GW_ERR_INVAL;
    if (strncmp(s, "role:", 5) != 0 || !gw_conf_name_ok(s + 5, strlen(s + 5)))
        return gw_conf_fail(pc, path, "expected \"role:<name>\", got %s", gw_conf_show(v, buf, sizeof(buf)));
    return (pol->role_name = strdup(s + 5)) != NULL ? 0 : GW_ERR_NOMEM;
}

/* A pattern: 1..GW_MAX_PATTERN_LEN bytes, no control characters (UTF-8 is fine: subjects may hold it). */
static bool pattern_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > GW_MAX_PATTERN_LEN || strlen(s) != len)
        return false;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return false;
    return true;
}

/* Digits of a CIDR prefix length, 0..|max|, no sign, no leading zero. */
static bool prefix_len_ok(const char *s, int max, int *out)
{
    int n = 0;

    if (*s == '\0' || (s[0] == '0' && s[1] != '\0') || strlen(s) > 3)
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        n = n * 10 + (*s - '0');
    }
    *out = n;
    return n <= max;
}

/* "10.0.0.0/8" or "fd00::/8": an address, a prefix length, and no host bits set (a likely typo). */
static bool cidr_ok(const char *s, size_t len)
{
    unsigned char addr[16];
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = memchr(s, '/', len);
    size_t alen, i;
    int bits, max, af;

    if (!pattern_ok(s, len) || slash == NULL || (alen = (size_t)(slash - s)) == 0 || alen >= sizeof(host))
        return false;
    memcpy(host, s, alen);
    host[alen] = '\0';
    af = strchr(host, ':') != NULL ? AF_INET6 : AF_INET;
    max = af == AF_INET6 ? 128 : 32;
    if (inet_pton(af, host, addr) != 1 || !prefix_len_ok(slash + 1, max, &bits))
        return false;
    for (i = (size_t)bits; i < (size_t)max; i++)
        if ((addr[i / 8] & (0x80u >> (i % 8))) != 0)
            return false;
    return true;
}

static const struct gw_conf_names names_pattern = {pattern_ok, "a pattern of 1..256 characters"};
static const struct gw_conf_names names_cidr = {
    cidr_ok, "a CIDR like \"10.0.0.0/8\" or \"fd00::/8\" (no host bits set)"};

/* An array of patterns (struct gw_patterns) checked by the namekind in |f->aux|; no duplicates. */
static int p_patterns(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                      const struct gw_conf_field *f)
{
    const struct gw_conf_names *kind = f->aux;
    struct gw_patterns *pt = gw_conf_at(base, f->off);
    char ipath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];
    size_t len, i, j;

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > GW_MAX_PATTERNS)
        return gw_conf_fail(pc, path, "expected an array of at most %d patterns, got %s", GW_MAX_PATTERNS,
                            gw_conf_show(v, buf, sizeof(buf)));
    if ((len = json_object_array_length(v)) == 0)
        return 0;
    if ((pt->v = calloc(len, sizeof(*pt->v))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < len; i++) {
        struct json_object *el = json_object_array_get_idx(v, i);
        gw_conf_join_index(ipath, path, i);
        if (!json_object_is_type(el, json_type_string) ||
            !kind->ok(json_object_get_string(el), (size_t)json_object_get_string_len(el)))
            return gw_conf_fail(pc, ipath, "expected %s, got %s", kind->desc,
                                gw_conf_show(el, buf, sizeof(buf)));
        for (j = 0; j < i; j++)
            if (strcmp(pt->v[j], json_object_get_string(el)) == 0)
                return gw_conf_fail(pc, ipath, "duplicate entry %s", gw_conf_show(el, buf, sizeof(buf)));
        if ((pt->v[i] = strdup(json_object_get_string(el))) == NULL)
            return GW_ERR_NOMEM;
        pt->n = i + 1;
    }
    return 0;
}

/* Key types by name; "rsa:<bits>" is parsed apart (RFC 8017 moduli: a minimum size). */
static const struct {
    const char *name;
    int pkey_type, curve_nid;
} key_types[] = {
    {"ec:P-256", EVP_PKEY_EC, NID_X9_62_prime256v1},
    {"ec:P-384", EVP_PKEY_EC, NID_secp384r1},
    {"ec:P-521", EVP_PKEY_EC, NID_secp521r1},
    {"ed25519", EVP_PKEY_ED25519, NID_undef},
    {"ed448", EVP_PKEY_ED448, NID_undef},
};

static bool key_rule_parse(const char *s, struct gw_key_rule *out)
{
    size_t i;
    int bits = 0;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++) {
        if (strcmp(s, key_types[i].name) == 0) {
            out->pkey_type = key_types[i].pkey_type;
            out->curve_nid = key_types[i].curve_nid;
            return true;
        }
    }
    if (strncmp(s, "rsa:", 4) != 0 || strlen(s + 4) > 5 || s[4] == '0' || s[4] == '\0')
        return false;
    for (s += 4; *s >= '0' && *s <= '9'; s++)
        bits = bits * 10 + (*s - '0');
    if (*s != '\0' || bits < GW_MIN_RSA_BITS || bits > GW_MAX_RSA_BITS)
        return false;
    out->pkey_type = EVP_PKEY_RSA;
    out->min_bits = bits;
    return true;
}

/* "allowed_key_types": 1..GW_MAX_KEY_RULES rules, one per key type (and curve). */
static int p_key_types(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                       const struct gw_conf_field *f)
{
    struct gw_key_rule **dst = gw_conf_at(base, f->off), k;
    size_t *n = gw_conf_at(base, f->off_n), len, i, j;
    char ipath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_array) || (len = json_object_array_length(v)) == 0 ||
        len > GW_MAX_KEY_RULES)
        return gw_conf_fail(pc, path, "expected an array of 1..%d key types, got %s", GW_MAX_KEY_RULES,
                            gw_conf_show(v, buf, sizeof(buf)));
    if ((*dst = calloc(len, sizeof(**dst))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < len; i++) {
        struct json_object *el = json_object_array_get_idx(v, i);
        gw_conf_join_index(ipath, path, i);
        if (!json_object_is_type(el, json_type_string) || !key_rule_parse(json_object_get_string(el), &k))
            return gw_conf_fail(pc, ipath,
                                "expected \"rsa:<bits>\" (%d..%d), \"ec:P-256\", \"ec:P-384\", \"ec:P-521\", "
                                "\"ed25519\" or \"ed448\", got %s",
                                GW_MIN_RSA_BITS, GW_MAX_RSA_BITS, gw_conf_show(el, buf, sizeof(buf)));
        for (j = 0; j < i; j++)
            if ((*dst)[j].pkey_type == k.pkey_type && (*dst)[j].curve_nid == k.curve_nid)
                return gw_conf_fail(pc, ipath, "duplicate key type %s", gw_conf_show(el, buf, sizeof(buf)));
        (*dst)[i] = k;
        *n = i + 1;
    }
    return 0;
}

/*
 * A dotted OID: decimal arcs without leading zeros, at least two, the first 0..2 and the second at
 * most 39 under 0 and 1 (X.690 §8.19.4 packs them into one subidentifier).
 */
static bool oid_ok(const char *s, size_t len)
{
    unsigned long arc[2] = {0, 0};
    size_t i, arcs = 0, digits = 0;

    if (len == 0 || len > GW_MAX_OID_TEXT || strlen(s) != len)
        return false;
    for (i = 0; i <= len; i++) {
        if (i < len && s[i] >= '0' && s[i] <= '9') {
            if (arcs < 2 && arc[arcs] < 1000) /* enough to tell the bounds below; no overflow */
                arc[arcs] = arc[arcs] * 10 + (unsigned long)(s[i] - '0');
            digits++;
            continue;
        }
        if ((i < len && s[i] != '.') || digits == 0 || (digits > 1 && s[i - digits] == '0'))
            return false;
        arcs++;
        digits = 0;
    }
    return arcs >= 2 && arc[0] <= 2 && (arc[0] == 2 || arc[1] <= 39);
}

/* "allowed_extensions": dotted OIDs, 0..GW_MAX_ALLOWED_EXTS, no repeats (however they are spelled). */
static int p_ext_oids(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                      const struct gw_conf_field *f)
{
    ASN1_OBJECT ***dst = gw_conf_at(base, f->off), *obj;
    size_t *n = gw_conf_at(base, f->off_n), len, i, j;
    char ipath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_array) || (len = json_object_array_length(v)) > GW_MAX_ALLOWED_EXTS)
        return gw_conf_fail(pc, path, "expected an array of at most %d OIDs, got %s", GW_MAX_ALLOWED_EXTS,
                            gw_conf_show(v, buf, sizeof(buf)));
    if (len == 0)
        return 0;
    if ((*dst = calloc(len, sizeof(**dst))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < len; i++) {
        struct json_object *el = json_object_array_get_idx(v, i);
        gw_conf_join_index(ipath, path, i);
        if (!json_object_is_type(el, json_type_string) ||
            !oid_ok(json_object_get_string(el), (size_t)json_object_get_string_len(el)))
            return gw_conf_fail(pc, ipath, "expected a dotted OID like \"1.3.6.1.4.1.11129.2.4.3\", got %s",
                                gw_conf_show(el, buf, sizeof(buf)));
        if ((obj = OBJ_txt2obj(json_object_get_string(el), 1)) == NULL)
            return GW_ERR_NOMEM;
        for (j = 0; j < i; j++) {
            if (OBJ_cmp((*dst)[j], obj) == 0) {
                ASN1_OBJECT_free(obj);
                return gw_conf_fail(pc, ipath, "duplicate entry %s", gw_conf_show(el, buf, sizeof(buf)));
            }
        }
        (*dst)[i] = obj;
        *n = i + 1;
    }
    return 0;
}

/*
 * "crl_url": an http(s) URL with a path, of printable ASCII without spaces, quotes or backslashes
 * (it becomes an IA5String URI in a CRL distribution point: RFC 5280 §4.2.1.13 and §4.2.1.6).
 */
static int p_crl_url(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                     const struct gw_conf_field *f)
{
    const char *s;
    char buf[GW_CONF_SHOW_BUF];
    size_t i, n;

    if (v == NULL)
        return 0;
    if ((s = gw_conf_want_string(pc, path, v, "a URL")) == NULL)
        return GW_ERR_INVAL;
    n = strlen(s);
    for (i = 0; i < n && s[i] > 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\'; i++)
        ;
    if (i != n || n > GW_MAX_URL_LEN || (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) ||
        strchr(strchr(s, ':') + 3, '/') == NULL)
        return gw_conf_fail(pc, path,
                            "expected \"http(s)://host[:port]/path\" of at most %d printable bytes, got %s",
                            GW_MAX_URL_LEN, gw_conf_show(v, buf, sizeof(buf)));
    return (*(char **)gw_conf_at(base, f->off) = strdup(s)) != NULL ? 0 : GW_ERR_NOMEM;
}

/* A Vault mount or namespace path: segments of [A-Za-z0-9._-] joined by single "/", no "." or "..". */
static bool segments_ok(const char *s, size_t len)
{
    size_t i, seg = 0;

    if (len == 0 || len > GW_MAX_MOUNT_LEN || s[len - 1] == '/')
        return false;
    for (i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            if (seg == 0 || (seg == 1 && s[i - 1] == '.') || (seg == 2 && s[i - 1] == '.' && s[i - 2] == '.'))
                return false;
            seg = 0;
            continue;
        }
        if (!gw_conf_name_ok(&s[i], 1))
            return false;
        seg++;
    }
    return true;
}

static bool mount_ok(const char *s, size_t len)
{
    return strlen(s) == len && segments_ok(s, len);
}

/* Vault writes namespaces as "ns1/ns2/" (X-Vault-Namespace); the trailing "/" is optional there. */
static bool namespace_ok(const char *s, size_t len)
{
    return strlen(s) == len && segments_ok(s, len > 1 && s[len - 1] == '/' ? len - 1 : len);
}

static const struct gw_conf_names names_mount = {
    mount_ok, "a path like \"pki\" or \"pki/int\" ([A-Za-z0-9._-] segments)"};
static const struct gw_conf_names names_namespace = {
    namespace_ok, "a namespace like \"ns1/ns2/\" ([A-Za-z0-9._-] segments)"};

/* A cmp upstream's HTTP path: like a prefix, but "/" alone and a trailing "/" are fine ("/pkix/"). */
static bool cmp_path_ok(const char *s, size_t len)
{
    char buf[GW_MAX_PATH_PREFIX_LEN + 2];

    if (strlen(s) != len || len == 0 || s[0] != '/')
        return false;
    if (len == 1)
        return true;
    if (len > GW_MAX_PATH_PREFIX_LEN + 1 || strstr(s, "//") != NULL)
        return false;
    memcpy(buf, s, len + 1);
    if (buf[len - 1] == '/')
        buf[len - 1] = '\0';
    return gw_conf_prefix_ok(buf);
}

static const struct gw_conf_names names_cmp_path = {cmp_path_ok,
                                                    "a path like \"/.well-known/cmp\" or \"/pkix/\" "
                                                    "(characters [A-Za-z0-9._~/-])"};

static int check_tls(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_listener_conf *l = base;
    STACK_OF(X509) *sk = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    char cpath[GW_CONF_PATH_LEN];
    int rc;

    gw_conf_join_key(cpath, path, "client_ca");
    if (l->client_auth != GW_CLIENT_AUTH_NONE && l->client_ca == NULL)
        return gw_conf_fail(pc, cpath, "missing: required unless client_auth is \"none\"");
    rc = gw_pem_load_pair(pc, path, l->tls_cert, l->tls_key, &cert, &key);
    if (rc == 0 && l->client_ca != NULL)
        rc = gw_pem_load_certs(pc, cpath, l->client_ca, &sk);
    sk_X509_pop_free(sk, X509_free);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

static int check_signer(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_signer_conf *s = base;

    if (gw_pem_load_pair(pc, path, s->cert_file, s->key_file, &s->cert, &s->key) != 0)
        return GW_ERR_INVAL;
    /* RFC 9483 §3.1: the protection key must be usable for signing */
    if ((X509_get_extension_flags(s->cert) & EXFLAG_KUSAGE) != 0 &&
        (X509_get_key_usage(s->cert) & KU_DIGITAL_SIGNATURE) == 0)
        gw_log(GW_LOG_WARN, "config",
               "%s: %s.cert: the signer certificate lacks the digitalSignature key usage", pc->name, path);
    return gw_pem_load_chain(pc, path, s->chain_file, &s->chain);
}

/* Warns about a CA of |cas| that issued no CRL in |crls|: with CRL_CHECK_ALL all it issued is refused. */
static void warn_missing_crls(struct gw_conf_ctx *pc, const char *path, STACK_OF(X509) *cas,
                              STACK_OF(X509_CRL) *crls)
{
    char name[GW_IDENTITY_LEN];
    int i, j, found;

    for (i = 0; i < sk_X509_num(cas); i++) {
        X509 *ca = sk_X509_value(cas, i);
        for (j = 0, found = 0; j < sk_X509_CRL_num(crls) && !found; j++)
            found = X509_NAME_cmp(X509_CRL_get_issuer(sk_X509_CRL_value(crls, j)),
                                  X509_get_subject_name(ca)) == 0;
        if (found)
            continue;
        X509_NAME_oneline(X509_get_subject_name(ca), name, sizeof(name));
        gw_log(GW_LOG_WARN, "config",
               "%s: %s: no CRL issued by \"%s\": every certificate it issued is refused", pc->name, path,
               name);
    }
}

/*
 * Loads |t->crl_file| into the trust store and turns CRL checking on for the whole chain
 * (RFC 5280 §6.3): a revoked client or intermediate certificate is refused.
 */
static int load_crls(struct gw_conf_ctx *pc, const char *path, struct gw_trust_conf *t,
                     STACK_OF(X509) *anchors)
{
    STACK_OF(X509_CRL) *crls = NULL;
    int i, rc = GW_ERR_INVAL;

    if (gw_pem_load_crls(pc, path, t->crl_file, &crls) != 0)
        return GW_ERR_INVAL;
    for (i = 0; i < sk_X509_CRL_num(crls); i++) {
        X509_CRL *crl = sk_X509_CRL_value(crls, i);
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
        if (X509_STORE_add_crl(t->store, crl) != 1)
            goto out;
        if (next != NULL && X509_cmp_current_time(next) < 0)
            gw_log(GW_LOG_WARN, "config",
                   "%s: %s: a CRL in \"%s\" is past its nextUpdate: verification fails", pc->name, path,
                   t->crl_file);
    }
    warn_missing_crls(pc, path, anchors, crls);
    warn_missing_crls(pc, path, t->untrusted, crls);
    if (X509_STORE_set_flags(t->store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) != 1)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        gw_conf_fail(pc, path, "cannot add the CRLs of \"%s\" to the trust store", t->crl_file);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return rc;
}

static int check_trust(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_trust_conf *t = base;
    STACK_OF(X509) *anchors = NULL;
    char fpath[GW_CONF_PATH_LEN];
    int i, rc = GW_ERR_INVAL;

    gw_conf_join_key(fpath, path, "ca_file");
    if (gw_pem_load_certs(pc, fpath, t->ca_file, &anchors) != 0)
        goto out;
    if ((t->store = X509_STORE_new()) == NULL)
        goto out;
    for (i = 0; i < sk_X509_num(anchors); i++)
        if (X509_STORE_add_cert(t->store, sk_X509_value(anchors, i)) != 1)
            goto out;
    /* reject malformed certificates in client chains rather than guess (docs/design.md, OpenSSL 3.0) */
    if (X509_STORE_set_flags(t->store, X509_V_FLAG_X509_STRICT) != 1)
        goto out;
    gw_conf_join_key(fpath, path, "untrusted_file");
    if (t->untrusted_file != NULL && gw_pem_load_certs(pc, fpath, t->untrusted_file, &t->untrusted) != 0)
        goto out;
    gw_conf_join_key(fpath, path, "crl_file");
    if (t->crl_file != NULL && load_crls(pc, fpath, t, anchors) != 0)
        goto out;
    if (t->revocation == GW_REVOCATION_UNSET && t->crl_file == NULL) {
        gw_conf_join_key(fpath, path, "revocation");
        gw_conf_fail(pc, fpath,
                     "say how revoked client certificates are recognised: a \"crl_file\", \"upstream\" (only "
                     "certificates of configured upstreams, checked there) or \"none\"");
        goto out;
    }
    /* the CAs whose directly signed certificates this entry's "revocation" speaks for */
    if (t->untrusted != NULL && X509_add_certs(anchors, t->untrusted, X509_ADD_FLAG_UP_REF) != 1)
        goto out;
    t->cas = anchors;
    anchors = NULL;
    rc = 0;
out:
    sk_X509_pop_free(anchors, X509_free);
    return rc;
}

static int check_pbm(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_pbm_conf *p = base;
    unsigned char *buf = NULL;
    char fpath[GW_CONF_PATH_LEN];
    size_t len = 0;

    gw_conf_join_key(fpath, path, "secret_file");
    if (gw_conf_read_secret(pc, fpath, p->secret_file, GW_MAX_PBM_SECRET_LEN, &buf, &len) != 0)
        return GW_ERR_INVAL;
    if (len < GW_MIN_PBM_SECRET_LEN || len > GW_MAX_PBM_SECRET_LEN) {
        OPENSSL_clear_free(buf, GW_MAX_PBM_SECRET_LEN + 3);
        return gw_conf_fail(pc, fpath, "the secret in \"%s\" must be %d..%d bytes", p->secret_file,
                            GW_MIN_PBM_SECRET_LEN, GW_MAX_PBM_SECRET_LEN);
    }
    p->secret = buf;
    p->secret_len = len;
    return 0;
}

#define T_LOCAL (1u << GW_UPSTREAM_LOCAL)
#define T_VAULT (1u << GW_UPSTREAM_VAULT)
#define T_CFSSL (1u << GW_UPSTREAM_CFSSL)
#define T_HTTP (T_VAULT | T_CFSSL)
#define T_CMP (1u << GW_UPSTREAM_CMP)

static const char *const upstream_type_names[] = {[GW_UPSTREAM_LOCAL] = "local",
                                                  [GW_UPSTREAM_VAULT] = "vault",
                                                  [GW_UPSTREAM_CFSSL] = "cfssl",
                                                  [GW_UPSTREAM_CMP] = "cmp"};

/* Which types take (and need) each upstream key; the parsed value is the string at |off|. */
static const struct {
    const char *key;
    size_t off;
    unsigned allowed, required;
} upstream_keys[] = {
    {"cert", offsetof(struct gw_upstream_conf, cert_file), T_LOCAL, T_LOCAL},
    {"key", offsetof(struct gw_upstream_conf, key_file), T_LOCAL, T_LOCAL},
    {"chain", offsetof(struct gw_upstream_conf, chain_file), T_LOCAL, 0},
    {"store", offsetof(struct gw_upstream_conf, store_dir), T_LOCAL, 0},
    {"crl_url", offsetof(struct gw_upstream_conf, crl_url), T_LOCAL, 0},
    {"url", offsetof(struct gw_upstream_conf, url), T_HTTP | T_CMP, T_HTTP | T_CMP},
    {"issuer_ca", offsetof(struct gw_upstream_conf, issuer_ca_file), T_HTTP | T_CMP, T_HTTP | T_CMP},
    {"tls_ca", offsetof(struct gw_upstream_conf, ca_file), T_HTTP | T_CMP, 0},
    {"tls_cert", offsetof(struct gw_upstream_conf, client_cert_file), T_VAULT | T_CMP, 0},
    {"tls_key", offsetof(struct gw_upstream_conf, client_key_file), T_VAULT | T_CMP, 0},
    {"mount", offsetof(struct gw_upstream_conf, mount), T_VAULT, 0},
    {"token_file", offsetof(struct gw_upstream_conf, token_file), T_VAULT, 0},
    {"namespace", offsetof(struct gw_upstream_conf, vault_namespace), T_VAULT, 0},
    {"auth", offsetof(struct gw_upstream_conf, auth_cert_mount), T_VAULT, 0},
    {"auth_key_file", offsetof(struct gw_upstream_conf, auth_key_file), T_CFSSL, 0},
    {"path", offsetof(struct gw_upstream_conf, cmp_path), T_CMP, T_CMP},
    {"trusted", offsetof(struct gw_upstream_conf, cmp_trusted_file), T_CMP, 0},
    {"ref", offsetof(struct gw_upstream_conf, cmp_ref), T_CMP, 0},
    {"secret_file", offsetof(struct gw_upstream_conf, cmp_secret_file), T_CMP, 0},
};

static int check_upstream_keys(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    const char *type = upstream_type_names[u->type];
    unsigned t = 1u << u->type;
    char kpath[GW_CONF_PATH_LEN];
    size_t i;
    bool set;

    for (i = 0; i < sizeof(upstream_keys) / sizeof(upstream_keys[0]); i++) {
        set = *(char **)gw_conf_at(u, upstream_keys[i].off) != NULL;
        gw_conf_join_key(kpath, path, upstream_keys[i].key);
        if (set && (upstream_keys[i].allowed & t) == 0)
            return gw_conf_fail(pc, kpath, "not valid for a \"%s\" upstream", type);
        if (!set && (upstream_keys[i].required & t) != 0)
            return gw_conf_fail(pc, kpath, "missing: required for a \"%s\" upstream", type);
    }
    gw_conf_join_key(kpath, path, "delay");
    if (u->delay_ms != 0 && u->type != GW_UPSTREAM_LOCAL)
        return gw_conf_fail(pc, kpath, "not valid for a \"%s\" upstream", type);
    return 0;
}

/* The inventory directory of a local issuer: it must exist and be writable (nothing issued is lost). */
static int check_store(struct gw_conf_ctx *pc, const char *path, const char *dirname)
{
    char spath[GW_CONF_PATH_LEN];
    struct stat st;

    gw_conf_join_key(spath, path, "store");
    if (stat(dirname, &st) != 0)
        return gw_conf_fail(pc, spath, "cannot use \"%s\": %s", dirname, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return gw_conf_fail(pc, spath, "\"%s\" is not a directory", dirname);
    if (access(dirname, W_OK | X_OK) != 0)
        return gw_conf_fail(pc, spath, "\"%s\" is not writable: %s", dirname, strerror(errno));
    return 0;
}

static int check_local(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    char cpath[GW_CONF_PATH_LEN];

    if (gw_pem_load_pair(pc, path, u->cert_file, u->key_file, &u->cert, &u->key) != 0)
        return GW_ERR_INVAL;
    gw_conf_join_key(cpath, path, "cert");
    if ((X509_get_extension_flags(u->cert) & EXFLAG_CA) == 0)
        return gw_conf_fail(pc, cpath, "\"%s\" is not a CA certificate (basicConstraints CA:TRUE)",
                            u->cert_file);
    if (u->store_dir != NULL && check_store(pc, path, u->store_dir) != 0)
        return GW_ERR_INVAL;
    return gw_pem_load_chain(pc, path, u->chain_file, &u->chain);
}

/* The TLS settings of an HTTP upstream: an https URL, a loadable CA bundle, a matching client pair. */
static int check_http_tls(struct gw_conf_ctx *pc, const char *path, const struct gw_upstream_conf *u)
{
    STACK_OF(X509) *sk = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    char cpath[GW_CONF_PATH_LEN], kpath[GW_CONF_PATH_LEN];
    int rc = GW_ERR_INVAL;

    gw_conf_join_key(cpath, path, u->client_cert_file != NULL ? "tls_cert" : "tls_key");
    gw_conf_join_key(kpath, path, u->ca_file != NULL ? "tls_ca" : "url");
    if (strncmp(u->url, "https://", 8) != 0 &&
        (u->ca_file != NULL || u->client_cert_file != NULL || u->client_key_file != NULL))
        return gw_conf_fail(pc, u->ca_file != NULL ? kpath : cpath, "TLS settings need an https:// \"url\"");
    if ((u->client_cert_file == NULL) != (u->client_key_file == NULL))
        return gw_conf_fail(pc, cpath, "\"tls_cert\" and \"tls_key\" go together");
    if (u->ca_file != NULL && gw_pem_load_certs(pc, kpath, u->ca_file, &sk) != 0)
        goto out;
    gw_conf_join_key(kpath, path, "tls_key");
    if (u->client_cert_file != NULL && (gw_pem_load_cert(pc, cpath, u->client_cert_file, &cert) != 0 ||
                                        gw_pem_load_key(pc, kpath, u->client_key_file, &key) != 0))
        goto out;
    if (cert != NULL && X509_check_private_key(cert, key) != 1) {
        gw_conf_fail(pc, kpath, "key in \"%s\" does not match the certificate in \"%s\"", u->client_key_file,
                     u->client_cert_file);
        goto out;
    }
    rc = 0;
out:
    sk_X509_pop_free(sk, X509_free);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/*
 * "issuer_ca": the CA(s) the upstream issues under. They anchor the check of every certificate the
 * upstream returns; an issuing CA is usually an intermediate, hence partial chains.
 */
static int load_issuer(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    char ipath[GW_CONF_PATH_LEN];
    int i;

    gw_conf_join_key(ipath, path, "issuer_ca");
    if (gw_pem_load_certs(pc, ipath, u->issuer_ca_file, &u->issuer_certs) != 0)
        return GW_ERR_INVAL;
    if ((u->issuer_store = X509_STORE_new()) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < sk_X509_num(u->issuer_certs); i++) {
        X509 *x = sk_X509_value(u->issuer_certs, i);
        if ((X509_get_extension_flags(x) & EXFLAG_CA) == 0)
            return gw_conf_fail(pc, ipath,
                                "certificate %d in \"%s\" is not a CA certificate (basicConstraints CA:TRUE)",
                                i + 1, u->issuer_ca_file);
        if (X509_STORE_add_cert(u->issuer_store, x) != 1)
            return gw_conf_fail(pc, ipath, "cannot add \"%s\" to a store", u->issuer_ca_file);
    }
    if (X509_STORE_set_flags(u->issuer_store, X509_V_FLAG_X509_STRICT | X509_V_FLAG_PARTIAL_CHAIN) != 1)
        return GW_ERR_CRYPTO;
    return 0;
}

/* A file the gateway reads later (a token): readable now; a warning when others may read it. */
static int check_readable(struct gw_conf_ctx *pc, const char *fpath, const char *file)
{
    struct stat st;
    int fd;

    if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
        return gw_conf_fail(pc, fpath, "cannot open \"%s\": %s", file, strerror(errno));
    if (fstat(fd, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0)
        gw_log(GW_LOG_WARN, "config", "%s: %s: \"%s\" is readable by group or others", pc->name, fpath, file);
    close(fd);
    return 0;
}

static int check_vault(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    char kpath[GW_CONF_PATH_LEN];

    if (check_http_tls(pc, path, u) != 0 || load_issuer(pc, path, u) != 0)
        return GW_ERR_INVAL;
    if ((u->token_file != NULL) == (u->auth_cert_mount != NULL))
        return gw_conf_fail(pc, path, "a vault upstream needs exactly one of \"token_file\" and \"auth\"");
    gw_conf_join_key(kpath, path, "auth");
    if (u->auth_cert_mount != NULL && u->client_cert_file == NULL)
        return gw_conf_fail(
            pc, kpath, "cert auth logs in with the client certificate: set \"tls_cert\" and \"tls_key\"");
    gw_conf_join_key(kpath, path, "token_file");
    if (u->token_file != NULL && check_readable(pc, kpath, u->token_file) != 0)
        return GW_ERR_INVAL;
    if (u->mount == NULL && (u->mount = strdup("pki")) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* cfssl's authsign key: hex in a file (cfssl's "key" of an auth provider), decoded; never quoted. */
static int load_hmac_key(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    const size_t cap = 2 * GW_MAX_HMAC_KEY_LEN;
    unsigned char *hex = NULL, *key = NULL;
    char kpath[GW_CONF_PATH_LEN];
    size_t len = 0, i;
    int hi, lo, rc = GW_ERR_INVAL;

    gw_conf_join_key(kpath, path, "auth_key_file");
    if (gw_conf_read_secret(pc, kpath, u->auth_key_file, cap, &hex, &len) != 0)
        return GW_ERR_INVAL;
    if (len % 2 != 0 || len / 2 < GW_MIN_HMAC_KEY_LEN || len / 2 > GW_MAX_HMAC_KEY_LEN) {
        gw_conf_fail(pc, kpath, "the key in \"%s\" must be %d..%d bytes, in hex", u->auth_key_file,
                     GW_MIN_HMAC_KEY_LEN, GW_MAX_HMAC_KEY_LEN);
        goto out;
    }
    if ((key = OPENSSL_zalloc(len / 2)) == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < len / 2; i++) {
        if ((hi = OPENSSL_hexchar2int(hex[2 * i])) < 0 || (lo = OPENSSL_hexchar2int(hex[2 * i + 1])) < 0) {
            gw_conf_fail(pc, kpath, "the key in \"%s\" is not hex", u->auth_key_file);
            goto out;
        }
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    u->auth_key = key;
    u->auth_key_len = len / 2;
    key = NULL;
    rc = 0;
out:
    OPENSSL_clear_free(key, len / 2);
    OPENSSL_clear_free(hex, cap + 3);
    return rc;
}

static int check_cfssl(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    if (check_http_tls(pc, path, u) != 0 || load_issuer(pc, path, u) != 0)
        return GW_ERR_INVAL;
    return u->auth_key_file != NULL ? load_hmac_key(pc, path, u) : 0;
}

/* "trusted": anchors for the upstream CMP CA's response signatures (docs/cmp-relay.md). */
static int load_cmp_trusted(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    STACK_OF(X509) *anchors = NULL;
    char fpath[GW_CONF_PATH_LEN];
    int i, rc = GW_ERR_INVAL;

    gw_conf_join_key(fpath, path, "trusted");
    if (gw_pem_load_certs(pc, fpath, u->cmp_trusted_file, &anchors) != 0)
        goto out;
    if ((u->cmp_trusted = X509_STORE_new()) == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < sk_X509_num(anchors); i++)
        if (X509_STORE_add_cert(u->cmp_trusted, sk_X509_value(anchors, i)) != 1)
            goto out;
    rc = X509_STORE_set_flags(u->cmp_trusted, X509_V_FLAG_X509_STRICT) == 1 ? 0 : GW_ERR_CRYPTO;
out:
    sk_X509_pop_free(anchors, X509_free);
    return rc;
}

/*
 * A cmp upstream: requests are protected with the PBM "ref"/"secret_file" pair, or else with the
 * gateway's signer (set in the final pass); responses are checked against "trusted" (signatures)
 * or the secret (PBM), so at least one of the two is needed.
 */
static int check_cmp(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *u)
{
    char kpath[GW_CONF_PATH_LEN];

    if (check_http_tls(pc, path, u) != 0 || load_issuer(pc, path, u) != 0)
        return GW_ERR_INVAL;
    gw_conf_join_key(kpath, path, u->cmp_ref != NULL ? "secret_file" : "ref");
    if ((u->cmp_ref == NULL) != (u->cmp_secret_file == NULL))
        return gw_conf_fail(pc, kpath, "\"ref\" and \"secret_file\" go together");
    if (u->cmp_trusted_file == NULL && u->cmp_secret_file == NULL)
        return gw_conf_fail(
            pc, path,
            "a cmp upstream needs \"trusted\" (its response signer's CA) or \"ref\"/\"secret_file\" "
            "(PBM): its answers could not be verified");
    if (u->cmp_trusted_file != NULL && load_cmp_trusted(pc, path, u) != 0)
        return GW_ERR_INVAL;
    if (u->cmp_secret_file == NULL)
        return 0;
    gw_conf_join_key(kpath, path, "secret_file");
    if (gw_conf_read_secret(pc, kpath, u->cmp_secret_file, GW_MAX_PBM_SECRET_LEN, &u->cmp_secret,
                            &u->cmp_secret_len) != 0)
        return GW_ERR_INVAL;
    if (u->cmp_secret_len < GW_MIN_PBM_SECRET_LEN || u->cmp_secret_len > GW_MAX_PBM_SECRET_LEN)
        return gw_conf_fail(pc, kpath, "the secret in \"%s\" must be %d..%d bytes", u->cmp_secret_file,
                            GW_MIN_PBM_SECRET_LEN, GW_MAX_PBM_SECRET_LEN);
    return 0;
}

static int (*const upstream_checks[])(struct gw_conf_ctx *, const char *,
                                      struct gw_upstream_conf *) = {[GW_UPSTREAM_LOCAL] = check_local,
                                                                    [GW_UPSTREAM_VAULT] = check_vault,
                                                                    [GW_UPSTREAM_CFSSL] = check_cfssl,
                                                                    [GW_UPSTREAM_CMP] = check_cmp};

static int check_upstream(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_upstream_conf *u = base;

    if (check_upstream_keys(pc, path, u) != 0)
        return GW_ERR_INVAL;
    if (!u->check_revocation)
        gw_log(GW_LOG_WARN, "config",
               "%s: %s: check_revocation is false: its certificates authenticate requests even when revoked",
               pc->name, path);
    return upstream_checks[u->type](pc, path, u);
}

/* "auth" has one method today: {"cert": {...}}. */
static int check_upstream_auth(struct gw_conf_ctx *pc, const char *path, void *base)
{
    const struct gw_upstream_conf *u = base;

    if (u->auth_cert_mount == NULL)
        return gw_conf_fail(pc, path, "expected {\"cert\": {...}}: cert auth is the login method supported");
    return 0;
}

/* "audit.file": appendable now, or creatable in its directory; `cmpgw check` creates nothing. */
static int check_audit(struct gw_conf_ctx *pc, const char *path, void *base)
{
    const struct gw_audit_conf *a = base;
    char fpath[GW_CONF_PATH_LEN], *dir;
    struct stat st;
    int rc = 0;

    gw_conf_join_key(fpath, path, "file");
    if (stat(a->file, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return gw_conf_fail(pc, fpath, "\"%s\" is not a regular file", a->file);
        if (access(a->file, W_OK) != 0)
            return gw_conf_fail(pc, fpath, "\"%s\" is not writable: %s", a->file, strerror(errno));
        return 0;
    }
    if (errno != ENOENT)
        return gw_conf_fail(pc, fpath, "cannot use \"%s\": %s", a->file, strerror(errno));
    if ((dir = gw_conf_dir_of(a->file)) == NULL)
        return GW_ERR_NOMEM;
    if (access(dir, W_OK | X_OK) != 0)
        rc = gw_conf_fail(pc, fpath, "cannot create \"%s\": %s", a->file, strerror(errno));
    free(dir);
    return rc;
}

/* ---- 3GPP TS 33.310 role keys (docs/3gpp.md) ------------------------------------------- */

/* "serial:<hex>" (colons allowed, as `openssl x509 -serial` or a browser prints it) into a BIGNUM. */
static BIGNUM *allow_serial(const char *s)
{
    char hex[2 * 20 + 1]; /* RFC 5280 §4.1.2.2: at most 20 octets */
    size_t n = 0;
    BIGNUM *bn = NULL;

    for (; *s != '\0'; s++) {
        if (*s == ':')
            continue;
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')) ||
            n + 1 >= sizeof(hex))
            return NULL;
        hex[n++] = *s;
    }
    hex[n] = '\0';
    if (n > 0 && BN_hex2bn(&bn, hex) == (int)n)
        return bn;
    BN_free(bn);
    return NULL;
}

/* One non-comment line of a device allow-list into |r|. */
static int allow_entry(struct gw_conf_ctx *pc, const char *fpath, const char *file, long lineno,
                       const char *s, struct gw_role *r)
{
    size_t *n = strncmp(s, "serial:", 7) == 0 ? &r->n_allow_serials : &r->n_allow_subjects;
    void **tmp;

    if (r->n_allow_serials + r->n_allow_subjects >= GW_MAX_ALLOWLIST_ENTRIES)
        return gw_conf_fail(pc, fpath, "\"%s\": more than %d entries", file, GW_MAX_ALLOWLIST_ENTRIES);
    if (n == &r->n_allow_subjects && s[0] != '/')
        return gw_conf_fail(pc, fpath,
                            "\"%s\" line %ld: expected a one-line subject (\"/O=.../CN=...\") or "
                            "\"serial:<hex>\", got \"%.40s\"",
                            file, lineno, s);
    tmp = n == &r->n_allow_serials ? (void **)r->allow_serials : (void **)r->allow_subjects;
    if ((tmp = realloc(tmp, (*n + 1) * sizeof(*tmp))) == NULL)
        return GW_ERR_NOMEM;
    if (n == &r->n_allow_serials) {
        r->allow_serials = (BIGNUM **)tmp;
        if ((r->allow_serials[*n] = allow_serial(s + 7)) == NULL)
            return gw_conf_fail(
                pc, fpath, "\"%s\" line %ld: expected \"serial:<hex>\" of at most 20 octets, got \"%.48s\"",
                file, lineno, s);
    } else {
        r->allow_subjects = (char **)tmp;
        if ((r->allow_subjects[*n] = strdup(s)) == NULL)
            return GW_ERR_NOMEM;
    }
    (*n)++;
    return 0;
}

/* Trims |line| in place: leading blanks, trailing blanks and the line end. */
static char *trim_line(char *line)
{
    size_t len;

    while (*line == ' ' || *line == '\t')
        line++;
    len = strlen(line);
    while (len > 0 &&
           (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        line[--len] = '\0';
    return line;
}

/* "device_allowlist": one entry per line, '#' comments; read at every (re)load of the config. */
static int load_allowlist(struct gw_conf_ctx *pc, const char *path, struct gw_role *r)
{
    char fpath[GW_CONF_PATH_LEN], buf[GW_MAX_ALLOWLIST_LINE + 2], *s;
    long lineno = 0;
    int len, rc = 0;
    BIO *bio;

    gw_conf_join_key(fpath, path, "device_allowlist");
    if ((bio = gw_conf_open(pc, fpath, r->device_allowlist_file)) == NULL)
        return GW_ERR_INVAL;
    while (rc == 0 && (len = BIO_gets(bio, buf, sizeof(buf))) > 0) {
        lineno++;
        if (buf[len - 1] != '\n' && len == (int)sizeof(buf) - 1) {
            rc = gw_conf_fail(pc, fpath, "\"%s\" line %ld: longer than %d characters",
                              r->device_allowlist_file, lineno, GW_MAX_ALLOWLIST_LINE);
            break;
        }
        s = trim_line(buf);
        if (s[0] != '\0' && s[0] != '#')
            rc = allow_entry(pc, fpath, r->device_allowlist_file, lineno, s, r);
    }
    BIO_free(bio);
    if (rc == 0 && r->n_allow_subjects + r->n_allow_serials == 0)
        gw_log(GW_LOG_WARN, "config", "%s: %s: \"%s\" lists no device: every request is refused", pc->name,
               fpath, r->device_allowlist_file);
    return rc;
}

/* The 3GPP keys of a role: the allow-list and caPubs files are loaded here. */
static int check_role_3gpp(struct gw_conf_ctx *pc, const char *path, struct gw_role *r)
{
    char kpath[GW_CONF_PATH_LEN];

    if (r->device_allowlist_file != NULL && load_allowlist(pc, path, r) != 0)
        return GW_ERR_INVAL;
    gw_conf_join_key(kpath, path, "ca_pubs");
    if (r->ca_pubs_file != NULL && gw_pem_load_certs(pc, kpath, r->ca_pubs_file, &r->ca_pubs) != 0)
        return GW_ERR_INVAL;
    return 0;
}

static int check_role(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_role *r = base;
    char kpath[GW_CONF_PATH_LEN];

    gw_conf_join_key(kpath, path, "ttl");
    if (r->ttl > r->max_ttl)
        return gw_conf_fail(pc, kpath, "ttl (%us) exceeds max_ttl (%us)", r->ttl, r->max_ttl);
    /* with neither, no CMP protection could ever be verified on this role */
    if (r->n_trust == 0 && r->n_pbm == 0)
        return gw_conf_fail(pc, path, "a role needs at least one \"trust\" or \"pbm\" entry");
    gw_conf_join_key(kpath, path, "delegate");
    if (r->crmf == GW_CRMF_DELEGATE && r->delegate_name == NULL)
        return gw_conf_fail(pc, kpath, "missing: required with \"crmf\": \"delegate\"");
    if (r->crmf != GW_CRMF_DELEGATE && r->delegate_name != NULL)
        return gw_conf_fail(pc, kpath, "set, but \"crmf\" is not \"delegate\"");
    /* Vault's "sign-verbatim" policy selects this role by name: it must sign verbatim (config.h) */
    gw_conf_join_key(kpath, path, "sign");
    if (strcmp(r->name, SIGN_VERBATIM) == 0 && r->sign_policy != GW_SIGN_VERBATIM)
        return gw_conf_fail(pc, kpath, "the role \"" SIGN_VERBATIM "\" must have \"sign\": \"verbatim\"");
    return check_role_3gpp(pc, path, r);
}

/* ---- the schema ------------------------------------------------------------------------ */

static const struct gw_conf_enum client_auth_names[] = {
    {"none", GW_CLIENT_AUTH_NONE, NULL},
    {"optional", GW_CLIENT_AUTH_OPTIONAL, NULL},
    {"require", GW_CLIENT_AUTH_REQUIRE, NULL},
    {NULL, 0, NULL},
};

static const struct gw_conf_enum upstream_types[] = {
    {"local", GW_UPSTREAM_LOCAL, NULL},
    {"vault", GW_UPSTREAM_VAULT, NULL},
    {"cfssl", GW_UPSTREAM_CFSSL, NULL},
    {"cmp", GW_UPSTREAM_CMP, NULL},
    {NULL, 0, NULL},
};

static const struct gw_conf_enum sign_names[] = {
    {"role", GW_SIGN_ROLE, NULL}, {"verbatim", GW_SIGN_VERBATIM, NULL}, {NULL, 0, NULL}};
/* 3GPP TS 33.310: SHA-256 shall, SHA-384 should; the value is the digest size in bits. */
static const struct gw_conf_enum min_hash_names[] = {
    {"sha256", 256, NULL}, {"sha384", 384, NULL}, {"sha512", 512, NULL}, {NULL, 0, NULL}};
static const struct gw_conf_enum crmf_names[] = {
    {"reject", GW_CRMF_REJECT, NULL}, {"delegate", GW_CRMF_DELEGATE, NULL}, {NULL, 0, NULL}};
static const struct gw_conf_enum tls_client_names[] = {
    {"optional", 0, NULL}, {"require", 1, NULL}, {NULL, 0, NULL}};

/* Vault's audit_fields names (CMPv2 configuration). */
static const struct gw_conf_enum audit_field_names[] = {
    {"csr", GW_AUDIT_CSR, NULL},
    {"common_name", GW_AUDIT_COMMON_NAME, NULL},
    {"alt_names", GW_AUDIT_ALT_NAMES, NULL},
    {"ip_sans", GW_AUDIT_IP_SANS, NULL},
    {"uri_sans", GW_AUDIT_URI_SANS, NULL},
    {"other_sans", GW_AUDIT_OTHER_SANS, NULL},
    {"signature_bits", GW_AUDIT_SIGNATURE_BITS, NULL},
    {"exclude_cn_from_sans", GW_AUDIT_EXCLUDE_CN_FROM_SANS, NULL},
    {"ou", GW_AUDIT_OU, NULL},
    {"organization", GW_AUDIT_ORGANIZATION, NULL},
    {"country", GW_AUDIT_COUNTRY, NULL},
    {"locality", GW_AUDIT_LOCALITY, NULL},
    {"province", GW_AUDIT_PROVINCE, NULL},
    {"street_address", GW_AUDIT_STREET_ADDRESS, NULL},
    {"postal_code", GW_AUDIT_POSTAL_CODE, NULL},
    {"serial_number", GW_AUDIT_SERIAL_NUMBER, NULL},
    {"use_pss", GW_AUDIT_USE_PSS, NULL},
    {"key_type", GW_AUDIT_KEY_TYPE, NULL},
    {"key_bits", GW_AUDIT_KEY_BITS, NULL},
    {"add_basic_constraints", GW_AUDIT_ADD_BASIC_CONSTRAINTS, NULL},
    {NULL, 0, NULL},
};
#define AUDIT_DEFAULT_FIELDS                                                                                 \
    (GW_AUDIT_COMMON_NAME | GW_AUDIT_ALT_NAMES | GW_AUDIT_IP_SANS | GW_AUDIT_URI_SANS)

static const struct gw_conf_enum log_levels[] = {
    {"debug", GW_LOG_DEBUG, NULL},
    {"info", GW_LOG_INFO, NULL},
    {"warn", GW_LOG_WARN, NULL},
    {"error", GW_LOG_ERROR, NULL},
    {NULL, 0, NULL},
};

/* RFC 5280 §4.2.1.3 names; certificate-signing usages are refused: a role never issues a CA. */
static const struct gw_conf_enum key_usages[] = {
    {"digitalSignature", KU_DIGITAL_SIGNATURE, NULL},
    {"nonRepudiation", KU_NON_REPUDIATION, NULL},
    {"contentCommitment", KU_NON_REPUDIATION, NULL},
    {"keyEncipherment", KU_KEY_ENCIPHERMENT, NULL},
    {"dataEncipherment", KU_DATA_ENCIPHERMENT, NULL},
    {"keyAgreement", KU_KEY_AGREEMENT, NULL},
    {"keyCertSign", -1, "a role never issues CA certificates"},
    {"cRLSign", -1, "a role never issues CA certificates"},
    {NULL, 0, NULL},
};

static const struct gw_conf_enum ext_key_usages[] = {
    {"serverAuth", GW_EKU_SERVER_AUTH, NULL},
    {"clientAuth", GW_EKU_CLIENT_AUTH, NULL},
    {"codeSigning", GW_EKU_CODE_SIGNING, NULL},
    {"emailProtection", GW_EKU_EMAIL_PROTECTION, NULL},
    {"timeStamping", GW_EKU_TIME_STAMPING, NULL},
    {"OCSPSigning", GW_EKU_OCSP_SIGNING, NULL},
    {"cmcRA", GW_EKU_CMC_RA, NULL},
    {NULL, 0, NULL},
};

static const struct gw_conf_enum san_types[] = {
    {"dns", GW_SAN_DNS, NULL},     {"ip", GW_SAN_IP, NULL}, {"uri", GW_SAN_URI, NULL},
    {"email", GW_SAN_EMAIL, NULL}, {NULL, 0, NULL},
};

static const struct gw_conf_field tls_fields[] = {
    GW_CONF_REQ("cert", gw_conf_p_file, struct gw_listener_conf, tls_cert),
    GW_CONF_REQ("key", gw_conf_p_file, struct gw_listener_conf, tls_key),
    GW_CONF_OPT("client_ca", gw_conf_p_file, struct gw_listener_conf, client_ca),
    GW_CONF_OPT("client_auth", gw_conf_p_enum, struct gw_listener_conf, client_auth,
                .def = GW_CLIENT_AUTH_REQUIRE, .aux = client_auth_names),
    GW_CONF_OPT("http2", gw_conf_p_bool, struct gw_listener_conf, http2, .def = false),
};
GW_CONF_OBJDEF(tls_def, tls_fields, check_tls);

static const struct gw_conf_field listener_fields[] = {
    GW_CONF_REQ("address", gw_conf_p_address, struct gw_listener_conf, address),
    GW_CONF_REQ("port", gw_conf_p_port, struct gw_listener_conf, port, .min = 1, .max = 65535),
    /* "tls" fills the same struct: .off 0 */
    {.key = "tls", .required = true, .parse = gw_conf_p_obj, .off = 0, .aux = &tls_def},
};
GW_CONF_OBJDEF(listener_def, listener_fields, NULL);

static const struct gw_conf_field signer_fields[] = {
    GW_CONF_REQ("cert", gw_conf_p_file, struct gw_signer_conf, cert_file),
    GW_CONF_REQ("key", gw_conf_p_file, struct gw_signer_conf, key_file),
    GW_CONF_OPT("chain", gw_conf_p_file, struct gw_signer_conf, chain_file),
};
GW_CONF_OBJDEF(signer_def, signer_fields, check_signer);

static const struct gw_conf_enum revocation_names[] = {
    {"none", GW_REVOCATION_NONE, NULL}, {"upstream", GW_REVOCATION_UPSTREAM, NULL}, {NULL, 0, NULL}};

static const struct gw_conf_field trust_fields[] = {
    GW_CONF_REQ("ca_file", gw_conf_p_file, struct gw_trust_conf, ca_file),
    GW_CONF_OPT("untrusted_file", gw_conf_p_file, struct gw_trust_conf, untrusted_file),
    GW_CONF_OPT("crl_file", gw_conf_p_file, struct gw_trust_conf, crl_file),
    GW_CONF_OPT("revocation", gw_conf_p_enum, struct gw_trust_conf, revocation, .def = GW_REVOCATION_UNSET,
                .aux = revocation_names),
};
GW_CONF_OBJDEF(trust_def, trust_fields, check_trust);

static const struct gw_conf_field pbm_fields[] = {
    GW_CONF_REQ("secret_file", gw_conf_p_file, struct gw_pbm_conf, secret_file),
};
GW_CONF_OBJDEF(pbm_def, pbm_fields, check_pbm);

static const struct gw_conf_field upstream_auth_cert_fields[] = {
    GW_CONF_OPT("mount", gw_conf_p_str, struct gw_upstream_conf, auth_cert_mount, .sdef = "cert",
                .aux = &names_mount),
    GW_CONF_OPT("role", gw_conf_p_name, struct gw_upstream_conf, auth_cert_role, .aux = &gw_conf_names_plain),
};
GW_CONF_OBJDEF(upstream_auth_cert_def, upstream_auth_cert_fields, NULL);

static const struct gw_conf_field upstream_auth_fields[] = {
    {.key = "cert", .parse = gw_conf_p_opt_obj, .off = 0, .aux = &upstream_auth_cert_def},
};
GW_CONF_OBJDEF(upstream_auth_def, upstream_auth_fields, check_upstream_auth);

/* Which keys each type takes is upstream_keys' job (check_upstream). */
static const struct gw_conf_field upstream_fields[] = {
    GW_CONF_REQ("type", gw_conf_p_enum, struct gw_upstream_conf, type, .aux = upstream_types),
    GW_CONF_OPT("cert", gw_conf_p_file, struct gw_upstream_conf, cert_file),
    GW_CONF_OPT("key", gw_conf_p_file, struct gw_upstream_conf, key_file),
    GW_CONF_OPT("chain", gw_conf_p_file, struct gw_upstream_conf, chain_file),
    GW_CONF_OPT("store", gw_conf_p_file, struct gw_upstream_conf, store_dir),
    GW_CONF_OPT("crl_url", p_crl_url, struct gw_upstream_conf, crl_url),
    GW_CONF_OPT("url", gw_conf_p_url, struct gw_upstream_conf, url),
    GW_CONF_OPT("tls_ca", gw_conf_p_file, struct gw_upstream_conf, ca_file),
    GW_CONF_OPT("tls_cert", gw_conf_p_file, struct gw_upstream_conf, client_cert_file),
    GW_CONF_OPT("tls_key", gw_conf_p_file, struct gw_upstream_conf, client_key_file),
    GW_CONF_OPT("issuer_ca", gw_conf_p_file, struct gw_upstream_conf, issuer_ca_file),
    GW_CONF_OPT("mount", gw_conf_p_str, struct gw_upstream_conf, mount, .aux = &names_mount),
    GW_CONF_OPT("token_file", gw_conf_p_file, struct gw_upstream_conf, token_file),
    GW_CONF_OPT("namespace", gw_conf_p_str, struct gw_upstream_conf, vault_namespace,
                .aux = &names_namespace),
    /* "auth" fills the same struct: .off 0 */
    {.key = "auth", .parse = gw_conf_p_opt_obj, .off = 0, .aux = &upstream_auth_def},
    GW_CONF_OPT("auth_key_file", gw_conf_p_file, struct gw_upstream_conf, auth_key_file),
    GW_CONF_OPT("path", gw_conf_p_str, struct gw_upstream_conf, cmp_path, .aux = &names_cmp_path),
    GW_CONF_OPT("trusted", gw_conf_p_file, struct gw_upstream_conf, cmp_trusted_file),
    GW_CONF_OPT("ref", gw_conf_p_str, struct gw_upstream_conf, cmp_ref, .aux = &names_kid),
    GW_CONF_OPT("secret_file", gw_conf_p_file, struct gw_upstream_conf, cmp_secret_file),
    GW_CONF_OPT("timeout", gw_conf_p_dur_ms, struct gw_upstream_conf, timeout_ms, .min = 1,
                .max = GW_MAX_UPSTREAM_TIMEOUT_MS, .def = GW_DEFAULT_UPSTREAM_TIMEOUT_MS),
    GW_CONF_OPT("max_inflight", gw_conf_p_u32, struct gw_upstream_conf, max_inflight, .min = 1,
                .max = GW_MAX_UPSTREAM_INFLIGHT, .def = GW_DEFAULT_UPSTREAM_MAX_INFLIGHT),
    GW_CONF_OPT("delay", gw_conf_p_dur_ms, struct gw_upstream_conf, delay_ms, .min = 0,
                .max = GW_MAX_UPSTREAM_DELAY_MS),
    GW_CONF_OPT("check_revocation", gw_conf_p_bool, struct gw_upstream_conf, check_revocation, .def = true),
};
GW_CONF_OBJDEF(upstream_def, upstream_fields, check_upstream);

static const struct gw_conf_field authz_fields[] = {
    GW_CONF_OPT("tls_client", gw_conf_p_enum_bool, struct gw_authz, tls_required, .def = 0,
                .aux = tls_client_names),
    GW_CONF_OPT("tls_trust", gw_conf_p_names, struct gw_authz, tls_trust_names,
                .off_n = offsetof(struct gw_authz, n_tls_trust), .aux = &gw_conf_names_plain),
    GW_CONF_OPT("tls_subjects", p_patterns, struct gw_authz, tls_subjects, .aux = &names_pattern),
    GW_CONF_OPT("tls_sans", p_patterns, struct gw_authz, tls_sans, .aux = &names_pattern),
    GW_CONF_OPT("tls_must_be_signer", gw_conf_p_bool, struct gw_authz, tls_must_be_signer, .def = false),
    GW_CONF_OPT("signer_subjects", p_patterns, struct gw_authz, signer_subjects, .aux = &names_pattern),
    GW_CONF_OPT("allowed_common_names", p_patterns, struct gw_authz, common_names, .aux = &names_pattern),
    GW_CONF_OPT("allowed_dns_names", p_patterns, struct gw_authz, dns_names, .aux = &names_pattern),
    GW_CONF_OPT("allowed_uris", p_patterns, struct gw_authz, uris, .aux = &names_pattern),
    GW_CONF_OPT("allowed_emails", p_patterns, struct gw_authz, emails, .aux = &names_pattern),
    GW_CONF_OPT("allowed_ip_ranges", p_patterns, struct gw_authz, ip_ranges, .aux = &names_cidr),
    GW_CONF_OPT("allowed_key_types", p_key_types, struct gw_authz, key_rules,
                .off_n = offsetof(struct gw_authz, n_key_rules)),
    GW_CONF_OPT("ra_subjects", p_patterns, struct gw_authz, ra_subjects, .aux = &names_pattern),
};
GW_CONF_OBJDEF(authz_def, authz_fields, NULL);

/*
 * RFC 9483 §4.3.2: the three certificates of RootCaKeyUpdateContent, and that they fit together
 * (RFC 4210 §4.4): newWithOld certifies the new root's key and is signed by another key, the old
 * root's, which is what a client's current root is recognised by; oldWithNew, if given, certifies
 * that old key and is signed by the new one.
 */
static int check_root_update(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_root_update *u = base;
    char fpath[GW_CONF_PATH_LEN];
    int ok;

    gw_conf_bprintf(fpath, sizeof(fpath), "%s.new_with_new", path);
    if (gw_pem_load_cert(pc, fpath, u->new_with_new_file, &u->new_with_new) != 0)
        return GW_ERR_INVAL;
    gw_conf_bprintf(fpath, sizeof(fpath), "%s.new_with_old", path);
    if (gw_pem_load_cert(pc, fpath, u->new_with_old_file, &u->new_with_old) != 0)
        return GW_ERR_INVAL;
    gw_conf_bprintf(fpath, sizeof(fpath), "%s.old_with_new", path);
    if (u->old_with_new_file != NULL &&
        gw_pem_load_cert(pc, fpath, u->old_with_new_file, &u->old_with_new) != 0)
        return GW_ERR_INVAL;
    if (X509_check_issued(u->new_with_new, u->new_with_new) != X509_V_OK)
        return gw_conf_fail(pc, path, "new_with_new must be a self-signed root CA certificate");
    ok = EVP_PKEY_eq(X509_get0_pubkey(u->new_with_old), X509_get0_pubkey(u->new_with_new)) == 1 &&
         X509_verify(u->new_with_old, X509_get0_pubkey(u->new_with_new)) != 1;
    ERR_clear_error();
    if (!ok)
        return gw_conf_fail(
            pc, path,
            "new_with_old must certify the key of new_with_new and be signed by the old root's key");
    if (u->old_with_new == NULL)
        return 0;
    ok = X509_verify(u->old_with_new, X509_get0_pubkey(u->new_with_new)) == 1 &&
         X509_verify(u->new_with_old, X509_get0_pubkey(u->old_with_new)) == 1;
    ERR_clear_error();
    if (!ok)
        return gw_conf_fail(
            pc, path,
            "old_with_new must certify the key that signed new_with_old and be signed by the key of "
            "new_with_new");
    return 0;
}

static const struct gw_conf_field root_update_fields[] = {
    GW_CONF_REQ("new_with_new", gw_conf_p_file, struct gw_root_update, new_with_new_file),
    GW_CONF_REQ("new_with_old", gw_conf_p_file, struct gw_root_update, new_with_old_file),
    GW_CONF_OPT("old_with_new", gw_conf_p_file, struct gw_root_update, old_with_new_file),
};
GW_CONF_OBJDEF(root_update_def, root_update_fields, check_root_update);

static const struct gw_conf_field role_fields[] = {
    GW_CONF_REQ("upstream", gw_conf_p_name, struct gw_role, upstream_name, .aux = &gw_conf_names_plain),
    GW_CONF_OPT("trust", gw_conf_p_names, struct gw_role, trust_names,
                .off_n = offsetof(struct gw_role, n_trust), .aux = &gw_conf_names_plain),
    GW_CONF_OPT("pbm", gw_conf_p_names, struct gw_role, pbm_refs, .off_n = offsetof(struct gw_role, n_pbm),
                .aux = &names_kid),
    GW_CONF_OPT("key_usage", gw_conf_p_flags, struct gw_role, key_usage, .aux = key_usages),
    GW_CONF_OPT("ext_key_usage", gw_conf_p_flags, struct gw_role, ext_key_usage, .aux = ext_key_usages),
    GW_CONF_OPT("allowed_san_types", gw_conf_p_flags, struct gw_role, allowed_san_types, .aux = san_types),
    GW_CONF_OPT("allowed_extensions", p_ext_oids, struct gw_role, allowed_exts,
                .off_n = offsetof(struct gw_role, n_allowed_exts)),
    GW_CONF_OPT("ttl", gw_conf_p_dur_s, struct gw_role, ttl, .min = 1, .max = GW_MAX_CERT_TTL,
                .def = GW_DEFAULT_TTL),
    GW_CONF_OPT("max_ttl", gw_conf_p_dur_s, struct gw_role, max_ttl, .min = 1, .max = GW_MAX_CERT_TTL,
                .def = GW_DEFAULT_MAX_TTL),
    GW_CONF_OPT("require_subject", gw_conf_p_bool, struct gw_role, require_subject, .def = false),
    GW_CONF_OPT("implicit_confirm", gw_conf_p_bool, struct gw_role, implicit_confirm, .def = true),
    GW_CONF_OPT("upstream_role", gw_conf_p_name, struct gw_role, upstream_role, .aux = &gw_conf_names_plain),
    GW_CONF_OPT("sign", gw_conf_p_enum, struct gw_role, sign_policy, .def = GW_SIGN_ROLE, .aux = sign_names),
    GW_CONF_OPT("issuer_ref", gw_conf_p_name, struct gw_role, issuer_ref, .aux = &gw_conf_names_plain),
    GW_CONF_OPT("exclude_cn_from_sans", gw_conf_p_bool, struct gw_role, exclude_cn_from_sans, .def = false),
    GW_CONF_OPT("crmf", gw_conf_p_enum, struct gw_role, crmf, .def = GW_CRMF_REJECT, .aux = crmf_names),
    GW_CONF_OPT("delegate", gw_conf_p_name, struct gw_role, delegate_name, .aux = &gw_conf_names_plain),
    GW_CONF_OPT("crmf_upstream", gw_conf_p_name, struct gw_role, crmf_upstream_name,
                .aux = &gw_conf_names_plain),
    GW_CONF_OPT("authorization", gw_conf_p_obj, struct gw_role, authz, .aux = &authz_def),
    GW_CONF_OPT("root_ca_update", gw_conf_p_opt_obj, struct gw_role, root_update, .aux = &root_update_def),
    /* 3GPP TS 33.310 (docs/3gpp.md) */
    GW_CONF_OPT("device_allowlist", gw_conf_p_file, struct gw_role, device_allowlist_file),
    GW_CONF_OPT("subject_from_signer", gw_conf_p_bool, struct gw_role, subject_from_signer, .def = false),
    GW_CONF_OPT("ca_pubs", gw_conf_p_file, struct gw_role, ca_pubs_file),
    GW_CONF_OPT("min_hash", gw_conf_p_enum, struct gw_role, min_hash_bits, .def = 0, .aux = min_hash_names),
    /* polling for slow upstreams (docs/polling.md) */
    GW_CONF_OPT("poll_after", gw_conf_p_dur_ms, struct gw_role, poll_after_ms, .min = 0,
                .max = GW_MAX_UPSTREAM_TIMEOUT_MS, .def = 0),
};
GW_CONF_OBJDEF(role_def, role_fields, check_role);

static const struct gw_conf_field cmp_fields[] = {
    GW_CONF_OPT("message_time_window", gw_conf_p_dur_s, struct gw_cmp_conf, message_time_window, .min = 0,
                .max = GW_MAX_MSGTIME_WINDOW, .def = GW_DEFAULT_MSGTIME_WINDOW),
    GW_CONF_OPT("require_message_time", gw_conf_p_bool, struct gw_cmp_conf, require_message_time,
                .def = false),
    GW_CONF_OPT("transaction_ttl", gw_conf_p_dur_s, struct gw_cmp_conf, transaction_ttl, .min = 1,
                .max = GW_MAX_TXN_TTL, .def = GW_DEFAULT_TXN_TTL),
    GW_CONF_OPT("max_transactions", gw_conf_p_u32, struct gw_cmp_conf, max_transactions, .min = 1,
                .max = GW_MAX_TXNS, .def = GW_DEFAULT_MAX_TXNS),
    GW_CONF_OPT("max_transactions_per_identity", gw_conf_p_u32, struct gw_cmp_conf,
                max_transactions_per_identity, .min = 1, .max = GW_MAX_TXNS,
                .def = GW_DEFAULT_MAX_TXNS_PER_IDENTITY),
    GW_CONF_OPT("pbm_max_iterations", gw_conf_p_u32, struct gw_cmp_conf, pbm_max_iterations,
                .min = GW_MIN_PBM_ITER, .max = GW_MAX_PBM_ITER, .def = GW_DEFAULT_PBM_MAX_ITER),
    GW_CONF_OPT("max_recent_per_identity", gw_conf_p_u32, struct gw_cmp_conf, max_recent_per_identity,
                .min = 1, .max = GW_REPLAY_MAX_ENTRIES, .def = GW_DEFAULT_REPLAY_PER_IDENTITY),
    GW_CONF_OPT("revocation_grace", gw_conf_p_dur_s, struct gw_cmp_conf, revocation_grace, .min = 0,
                .max = GW_MAX_REVOCATION_GRACE, .def = GW_DEFAULT_REVOCATION_GRACE),
};
GW_CONF_OBJDEF(cmp_def, cmp_fields, NULL);

static const struct gw_conf_field limits_fields[] = {
    GW_CONF_OPT("max_connections", gw_conf_p_u32, struct gw_limits_conf, admission.max_connections, .min = 1,
                .max = GW_MAX_CONNECTIONS, .def = GW_DEFAULT_MAX_CONNECTIONS),
    GW_CONF_OPT("max_connections_per_address", gw_conf_p_u32, struct gw_limits_conf,
                admission.max_connections_per_address, .min = 1, .max = GW_MAX_CONNECTIONS,
                .def = GW_DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
    GW_CONF_OPT("auth_failures_per_address", gw_conf_p_u32, struct gw_limits_conf, admission.auth_failures,
                .min = 0, .max = GW_MAX_AUTH_FAILURES, .def = GW_DEFAULT_AUTH_FAILURES),
    GW_CONF_OPT("auth_failure_window", gw_conf_p_dur_s, struct gw_limits_conf, admission.auth_failure_window,
                .min = 1, .max = GW_MAX_AUTH_FAILURE_WINDOW, .def = GW_DEFAULT_AUTH_FAILURE_WINDOW),
    GW_CONF_OPT("body_timeout", gw_conf_p_dur_s, struct gw_limits_conf, body_timeout, .min = 1,
                .max = GW_MAX_BODY_TIMEOUT, .def = GW_DEFAULT_BODY_TIMEOUT),
};
GW_CONF_OBJDEF(limits_def, limits_fields, NULL);

static const struct gw_conf_field audit_fields[] = {
    GW_CONF_REQ("file", gw_conf_p_file, struct gw_audit_conf, file),
    GW_CONF_OPT("audit_fields", gw_conf_p_flags, struct gw_audit_conf, fields, .def = AUDIT_DEFAULT_FIELDS,
                .aux = audit_field_names),
};
GW_CONF_OBJDEF(audit_def, audit_fields, check_audit);

static const struct gw_conf_map trust_map = {sizeof(struct gw_trust_conf),
                                             offsetof(struct gw_trust_conf, name),
                                             &gw_conf_names_plain,
                                             gw_conf_p_obj,
                                             0,
                                             &trust_def};
static const struct gw_conf_map pbm_map = {sizeof(struct gw_pbm_conf),
                                           offsetof(struct gw_pbm_conf, reference),
                                           &names_kid,
                                           gw_conf_p_obj,
                                           0,
                                           &pbm_def};
static const struct gw_conf_map upstream_map = {sizeof(struct gw_upstream_conf),
                                                offsetof(struct gw_upstream_conf, name),
                                                &gw_conf_names_plain,
                                                gw_conf_p_obj,
                                                0,
                                                &upstream_def};
static const struct gw_conf_map role_map = {sizeof(struct gw_role),
                                            offsetof(struct gw_role, name),
                                            &gw_conf_names_plain,
                                            gw_conf_p_obj,
                                            0,
                                            &role_def};
static const struct gw_conf_names names_label = {gw_conf_name_ok,
                                                 "a label of 1..64 characters [A-Za-z0-9._-]"};
static const struct gw_conf_map label_map = {sizeof(struct gw_label),
                                             offsetof(struct gw_label, label),
                                             &names_label,
                                             p_policy,
                                             offsetof(struct gw_label, policy),
                                             NULL};

static const struct gw_conf_names names_profile = {gw_conf_name_ok,
                                                   "a profile name of 1..64 characters [A-Za-z0-9._-]"};
static const struct gw_conf_map profile_map = {sizeof(struct gw_profile),
                                               offsetof(struct gw_profile, name),
                                               &names_profile,
                                               p_profile_role,
                                               offsetof(struct gw_profile, policy),
                                               NULL};

static int p_listeners(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                       const struct gw_conf_field *f);

static const struct gw_conf_field top_fields[] = {
    GW_CONF_REQ("listeners", p_listeners, struct gw_config, listeners,
                .off_n = offsetof(struct gw_config, n_listeners), .min = 1, .max = GW_MAX_LISTENERS),
    GW_CONF_OPT("loop_threads", gw_conf_p_u32, struct gw_config, loop_threads, .min = 1,
                .max = GW_MAX_LOOP_THREADS, .def = GW_DEFAULT_LOOP_THREADS),
    GW_CONF_OPT("workers", gw_conf_p_u32, struct gw_config, workers, .min = 1, .max = GW_MAX_WORKERS,
                .def = GW_DEFAULT_WORKERS),
    GW_CONF_OPT("queue_depth", gw_conf_p_u32, struct gw_config, queue_depth, .min = 1,
                .max = GW_MAX_QUEUE_DEPTH, .def = GW_DEFAULT_QUEUE_DEPTH),
    GW_CONF_OPT("path_prefix", gw_conf_p_prefix, struct gw_config, path_prefix, .sdef = "/pki"),
    GW_CONF_REQ("signer", gw_conf_p_obj, struct gw_config, signer, .aux = &signer_def),
    GW_CONF_OPT("trust", gw_conf_p_map, struct gw_config, trust, .off_n = offsetof(struct gw_config, n_trust),
                .aux = &trust_map),
    GW_CONF_OPT("pbm", gw_conf_p_map, struct gw_config, pbm, .off_n = offsetof(struct gw_config, n_pbm),
                .aux = &pbm_map),
    GW_CONF_OPT("upstreams", gw_conf_p_map, struct gw_config, upstreams,
                .off_n = offsetof(struct gw_config, n_upstreams), .aux = &upstream_map),
    GW_CONF_OPT("roles", gw_conf_p_map, struct gw_config, roles, .off_n = offsetof(struct gw_config, n_roles),
                .aux = &role_map),
    GW_CONF_OPT("default_path_policy", p_policy, struct gw_config, default_path_policy, .sdef = "forbid"),
    GW_CONF_OPT("label_to_path_policy", gw_conf_p_map, struct gw_config, labels,
                .off_n = offsetof(struct gw_config, n_labels), .aux = &label_map),
    GW_CONF_OPT("profiles", gw_conf_p_map, struct gw_config, profiles,
                .off_n = offsetof(struct gw_config, n_profiles), .aux = &profile_map),
    GW_CONF_OPT("cmp", gw_conf_p_obj, struct gw_config, cmp, .aux = &cmp_def),
    GW_CONF_OPT("limits", gw_conf_p_obj, struct gw_config, limits, .aux = &limits_def),
    GW_CONF_REQ("audit", gw_conf_p_obj, struct gw_config, audit, .aux = &audit_def),
    GW_CONF_OPT("log_level", gw_conf_p_enum, struct gw_config, log_level, .def = GW_LOG_INFO,
                .aux = log_levels),
    GW_CONF_OPT("root_ca_update", gw_conf_p_opt_obj, struct gw_config, root_update, .aux = &root_update_def),
};
static int check_config(struct gw_conf_ctx *pc, const char *path, void *base);
GW_CONF_OBJDEF(top_def, top_fields, check_config);

static int p_listeners(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                       const struct gw_conf_field *f)
{
    struct gw_config *cfg = base;
    struct gw_conf_field lf = {.parse = gw_conf_p_obj, .aux = &listener_def};
    char ipath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];
    size_t i, n;
    int rc;

    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) < (size_t)f->min ||
        json_object_array_length(v) > (size_t)f->max)
        return gw_conf_fail(pc, path, "expected an array of %lld..%lld listeners, got %s", (long long)f->min,
                            (long long)f->max, gw_conf_show(v, buf, sizeof(buf)));
    n = json_object_array_length(v);
    if ((cfg->listeners = calloc(n, sizeof(*cfg->listeners))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        gw_conf_join_index(ipath, path, i);
        if (json_object_array_get_idx(v, i) == NULL)
            return gw_conf_fail(pc, ipath, "expected a listener object, got null");
        cfg->n_listeners = i + 1;
        if ((rc = lf.parse(pc, ipath, json_object_array_get_idx(v, i), &cfg->listeners[i], &lf)) != 0)
            return rc;
    }
    return 0;
}

/* ---- cross-field checks ------------------------------------------------------------------ */

const struct gw_trust_conf *gw_config_trust(const struct gw_config *cfg, const char *name)
{
    size_t i;

    for (i = 0; cfg != NULL && name != NULL && i < cfg->n_trust; i++)
        if (strcmp(cfg->trust[i].name, name) == 0)
            return &cfg->trust[i];
    return NULL;
}

static const struct gw_upstream_conf *upstream_find(const struct gw_config *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->n_upstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    return NULL;
}

/*
 * Adds the anchors, CRLs and intermediates of |t| to a union store and stack (a role's "trust", an
 * authorization's "tls_trust"). CRL checking carries over with the CRLs.
 */
static int trust_union_add(X509_STORE **store, STACK_OF(X509) **untrusted, const struct gw_trust_conf *t)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(t->store);
    X509_OBJECT *o;
    int i;

    if (*store == NULL && (*store = X509_STORE_new()) == NULL)
        return GW_ERR_NOMEM;
    /* a client's chain is built from certificates it sent: bound how far it can make us go */
    if (X509_STORE_set_flags(*store, X509_V_FLAG_X509_STRICT) != 1 ||
        X509_STORE_set_depth(*store, GW_MAX_CHAIN_DEPTH) != 1)
        return GW_ERR_CRYPTO;
    if (t->crl_file != NULL &&
        X509_STORE_set_flags(*store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) != 1)
        return GW_ERR_CRYPTO;
    for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        o = sk_X509_OBJECT_value(objs, i);
        /* a certificate in two trust entries is added once: X509_STORE_add_cert ignores repeats */
        if (X509_OBJECT_get0_X509(o) != NULL && X509_STORE_add_cert(*store, X509_OBJECT_get0_X509(o)) != 1)
            return GW_ERR_CRYPTO;
        if (X509_OBJECT_get0_X509_CRL(o) != NULL &&
            X509_STORE_add_crl(*store, X509_OBJECT_get0_X509_CRL(o)) != 1)
            return GW_ERR_CRYPTO;
    }
    for (i = 0; i < sk_X509_num(t->untrusted); i++) {
        if (*untrusted == NULL && (*untrusted = sk_X509_new_null()) == NULL)
            return GW_ERR_NOMEM;
        if (!X509_add_cert(*untrusted, sk_X509_value(t->untrusted, i),
                           X509_ADD_FLAG_UP_REF | X509_ADD_FLAG_NO_DUP))
            return GW_ERR_NOMEM;
    }
    return 0;
}

/*
 * Resolves trust names |names| (at |path|) into one union store. CRL checking is a property of the
 * whole store, so entries with and without crl_file cannot be mixed: the latter would never verify.
 */
static int trust_union(struct gw_conf_ctx *pc, const struct gw_config *cfg, const char *path, char **names,
                       size_t n, X509_STORE **store, STACK_OF(X509) **untrusted)
{
    const struct gw_trust_conf *t;
    char ipath[GW_CONF_PATH_LEN];
    size_t i, with_crl = 0;
    int rc;

    for (i = 0; i < n; i++) {
        gw_conf_join_index(ipath, path, i);
        if ((t = gw_config_trust(cfg, names[i])) == NULL)
            return gw_conf_fail(pc, ipath, "unknown trust \"%s\"", names[i]);
        if ((rc = trust_union_add(store, untrusted, t)) != 0)
            return gw_conf_fail(pc, ipath, "cannot build the trust store: %s", gw_err_str(rc));
        with_crl += t->crl_file != NULL;
    }
    if (with_crl != 0 && with_crl != n)
        return gw_conf_fail(
            pc, path,
            "mixes trust entries with and without \"crl_file\": with CRL checking on, certificates "
            "of the entries without CRLs would never verify");
    return 0;
}

/* Names a role may ask for per SAN type are dead configuration unless that type is copied at all. */
static int check_authz_sans(struct gw_conf_ctx *pc, const struct gw_role *r)
{
    const struct {
        const char *key, *type;
        size_t n;
        unsigned bit;
    } lists[] = {
        {"allowed_dns_names", "dns", r->authz.dns_names.n, GW_SAN_DNS},
        {"allowed_uris", "uri", r->authz.uris.n, GW_SAN_URI},
        {"allowed_emails", "email", r->authz.emails.n, GW_SAN_EMAIL},
        {"allowed_ip_ranges", "ip", r->authz.ip_ranges.n, GW_SAN_IP},
    };
    char path[GW_CONF_PATH_LEN];
    size_t i;

    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        if (lists[i].n == 0 || (r->allowed_san_types & lists[i].bit) != 0)
            continue;
        gw_conf_bprintf(path, sizeof(path), "$.roles.%s.authorization.%s", r->name, lists[i].key);
        return gw_conf_fail(pc, path, "set, but \"%s\" is not in the role's \"allowed_san_types\"",
                            lists[i].type);
    }
    return 0;
}

/* What a role may ask of its upstream's type (docs/design.md, decision 11); |r->upstream| is resolved. */
static uint32_t upstream_timeout_ms(const struct gw_upstream_conf *u)
{
    return u->timeout_ms != 0 ? u->timeout_ms : GW_DEFAULT_UPSTREAM_TIMEOUT_MS;
}

static int check_role_upstream(struct gw_conf_ctx *pc, struct gw_role *r)
{
    const struct {
        const char *key;
        bool set;
        unsigned allowed;
    } keys[] = {
        {"upstream_role", r->upstream_role != NULL, T_HTTP},
        {"sign", r->sign_policy != GW_SIGN_ROLE, T_VAULT},
        {"issuer_ref", r->issuer_ref != NULL, T_VAULT},
        {"exclude_cn_from_sans", r->exclude_cn_from_sans, T_VAULT},
        {"crmf", r->crmf != GW_CRMF_REJECT, T_HTTP},
        {"delegate", r->delegate_name != NULL, T_HTTP},
    };
    enum gw_upstream_type type = r->upstream->type;
    char path[GW_CONF_PATH_LEN];
    size_t i;

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!keys[i].set || (keys[i].allowed & (1u << type)) != 0)
            continue;
        gw_conf_bprintf(path, sizeof(path), "$.roles.%s.%s", r->name, keys[i].key);
        return gw_conf_fail(pc, path, "only for roles on %s upstreams; \"%s\" is a %s upstream",
                            keys[i].allowed == T_VAULT ? "vault" : "vault or cfssl", r->upstream_name,
                            upstream_type_names[type]);
    }
    /* a threshold at or past the upstream's own timeout would never start polling */
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.poll_after", r->name);
    if (r->poll_after_ms != 0 && r->poll_after_ms >= upstream_timeout_ms(r->upstream))
        return gw_conf_fail(pc, path, "%ums is not below the timeout of upstream \"%s\" (%ums)",
                            r->poll_after_ms, r->upstream_name, upstream_timeout_ms(r->upstream));
    /* the upstream's role (vault) or profile (cfssl) defaults to the role's own name */
    if (type != GW_UPSTREAM_LOCAL && r->upstream_role == NULL && (r->upstream_role = strdup(r->name)) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* 1 if |cert| chains (with |untrusted|) to |store|; else 0 with OpenSSL's reason in |why|. */
static int chains_to(X509_STORE *store, X509 *cert, STACK_OF(X509) *untrusted, const char **why)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = 0;

    *why = "out of memory";
    if (ctx != NULL && X509_STORE_CTX_init(ctx, store, cert, untrusted) == 1) {
        ok = X509_verify_cert(ctx) == 1;
        *why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/*
 * A delegate issuer is an online CA outside the upstream's inventory (docs/design.md, decision 5): it
 * must not issue CAs (pathLen 0), it must chain to the upstream's CA, and it should be constrained
 * in names and life. The last two are warnings: the operator may not control the upstream's profile.
 */
static int check_delegate_cert(struct gw_conf_ctx *pc, const char *path, const struct gw_upstream_conf *up,
                               const struct gw_upstream_conf *d)
{
    const char *why;
    int days = 0, secs = 0;

    if (X509_get_pathlen(d->cert) != 0)
        return gw_conf_fail(
            pc, path,
            "the certificate of \"%s\" must have basicConstraints pathlen:0: a delegate issuer "
            "must not issue CA certificates",
            d->name);
    if (!chains_to(up->issuer_store, d->cert, d->chain, &why))
        return gw_conf_fail(pc, path,
                            "the certificate of \"%s\" does not chain to the issuer_ca of \"%s\": %s",
                            d->name, up->name, why);
    if (X509_get_ext_by_NID(d->cert, NID_name_constraints, -1) < 0)
        gw_log(GW_LOG_WARN, "config",
               "%s: %s: the certificate of \"%s\" has no name constraints: it can issue any name", pc->name,
               path, d->name);
    if (ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(d->cert), X509_get0_notAfter(d->cert)) == 1 &&
        (days > GW_DELEGATE_MAX_DAYS || (days == GW_DELEGATE_MAX_DAYS && secs > 0)))
        gw_log(GW_LOG_WARN, "config",
               "%s: %s: the certificate of \"%s\" is valid for %d days: a delegate issuer should live at "
               "most %d",
               pc->name, path, d->name, days, GW_DELEGATE_MAX_DAYS);
    return 0;
}

static int resolve_delegate(struct gw_conf_ctx *pc, const struct gw_config *cfg, struct gw_role *r)
{
    const struct gw_upstream_conf *d;
    char path[GW_CONF_PATH_LEN];

    if (r->delegate_name == NULL)
        return 0;
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.delegate", r->name);
    if ((d = upstream_find(cfg, r->delegate_name)) == NULL)
        return gw_conf_fail(pc, path, "unknown upstream \"%s\"", r->delegate_name);
    if (d->type != GW_UPSTREAM_LOCAL)
        return gw_conf_fail(pc, path, "\"%s\" is a %s upstream: a delegate issuer must be a local upstream",
                            d->name, upstream_type_names[d->type]);
    if (d->store_dir == NULL)
        return gw_conf_fail(
            pc, path, "\"%s\" has no \"store\": a delegate issuer must keep every certificate it issues",
            d->name);
    if (check_delegate_cert(pc, path, r->upstream, d) != 0)
        return GW_ERR_INVAL;
    r->delegate = d;
    return 0;
}

/*
 * "crmf_upstream": CRMF goes to an upstream that signs bare keys (cmp or local) while
 * "upstream" keeps the p10cr; a delegate would be a second answer to the same question.
 */
static int resolve_crmf_upstream(struct gw_conf_ctx *pc, const struct gw_config *cfg, struct gw_role *r)
{
    const struct gw_upstream_conf *u;
    char path[GW_CONF_PATH_LEN];

    if (r->crmf_upstream_name == NULL)
        return 0;
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.crmf_upstream", r->name);
    if ((u = upstream_find(cfg, r->crmf_upstream_name)) == NULL)
        return gw_conf_fail(pc, path, "unknown upstream \"%s\"", r->crmf_upstream_name);
    if (u->type != GW_UPSTREAM_CMP && u->type != GW_UPSTREAM_LOCAL)
        return gw_conf_fail(pc, path, "\"%s\" is a %s upstream: CRMF requests need a cmp or local upstream",
                            u->name, upstream_type_names[u->type]);
    if (r->crmf == GW_CRMF_DELEGATE)
        return gw_conf_fail(pc, path, "set together with \"crmf\": \"delegate\": choose one");
    r->crmf_upstream = u;
    return 0;
}

static int resolve_role(struct gw_conf_ctx *pc, struct gw_config *cfg, struct gw_role *r)
{
    char path[GW_CONF_PATH_LEN];
    size_t i;
    int rc;

    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.upstream", r->name);
    if ((r->upstream = upstream_find(cfg, r->upstream_name)) == NULL)
        return gw_conf_fail(pc, path, "unknown upstream \"%s\"", r->upstream_name);
    if ((rc = check_role_upstream(pc, r)) != 0)
        return rc;
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.trust", r->name);
    if ((rc = trust_union(pc, cfg, path, r->trust_names, r->n_trust, &r->store, &r->untrusted)) != 0)
        return rc;
    for (i = 0; i < r->n_pbm; i++) {
        gw_conf_bprintf(path, sizeof(path), "$.roles.%s.pbm[%zu]", r->name, i);
        if (gw_config_pbm(cfg, (const unsigned char *)r->pbm_refs[i], strlen(r->pbm_refs[i])) == NULL)
            return gw_conf_fail(pc, path, "unknown pbm reference \"%s\"", r->pbm_refs[i]);
    }
    gw_conf_bprintf(path, sizeof(path), "$.roles.%s.authorization.tls_trust", r->name);
    if ((rc = trust_union(pc, cfg, path, r->authz.tls_trust_names, r->authz.n_tls_trust, &r->authz.tls_store,
                          &r->authz.tls_untrusted)) != 0)
        return rc;
    if ((rc = check_authz_sans(pc, r)) != 0)
        return rc;
    if ((rc = resolve_crmf_upstream(pc, cfg, r)) != 0)
        return rc;
    return resolve_delegate(pc, cfg, r);
}

static int resolve_policy(struct gw_conf_ctx *pc, const struct gw_config *cfg, const char *path,
                          struct gw_path_policy *pol)
{
    if (pol->forbid)
        return 0;
    if ((pol->role = gw_config_role(cfg, pol->role_name, strlen(pol->role_name))) != NULL)
        return 0;
    if (strcmp(pol->role_name, SIGN_VERBATIM) == 0)
        return gw_conf_fail(pc, path,
                            "\"" SIGN_VERBATIM "\" names the role \"" SIGN_VERBATIM
                            "\", which does not exist: add it "
                            "with \"sign\": \"verbatim\"");
    return gw_conf_fail(pc, path, "unknown role \"%s\" in \"role:%s\"", pol->role_name, pol->role_name);
}

/* Two listeners on one address and port would fail at bind time: say so at check time. */
static int check_listeners(struct gw_conf_ctx *pc, const struct gw_config *cfg)
{
    char path[GW_CONF_PATH_LEN];
    size_t i, j;

    for (i = 0; i < cfg->n_listeners; i++) {
        for (j = 0; j < i; j++) {
            if (cfg->listeners[i].port != cfg->listeners[j].port ||
                strcmp(cfg->listeners[i].address, cfg->listeners[j].address) != 0)
                continue;
            gw_conf_join_index(path, "$.listeners", i);
            return gw_conf_fail(pc, path, "same address and port as $.listeners[%zu]: \"%s\" port %u", j,
                                cfg->listeners[i].address, cfg->listeners[i].port);
        }
    }
    return 0;
}

/* What routing reads (mappings/route.h): pointers into |cfg|, and each upstream's name. */
static int routes_init(struct gw_config *cfg)
{
    struct gw_routes *rt = &cfg->routes;

    if (cfg->n_upstreams > 0 && (cfg->route_ups = calloc(cfg->n_upstreams, sizeof(*cfg->route_ups))) == NULL)
        return GW_ERR_NOMEM;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        cfg->route_ups[i].name = cfg->upstreams[i].name;
        cfg->route_ups[i].own_ca = cfg->upstreams[i].type == GW_UPSTREAM_LOCAL;
    }
    rt->path_prefix = cfg->path_prefix;
    rt->roles = cfg->roles;
    rt->n_roles = cfg->n_roles;
    rt->default_policy = &cfg->default_path_policy;
    rt->labels = cfg->labels;
    rt->n_labels = cfg->n_labels;
    rt->profiles = cfg->profiles;
    rt->n_profiles = cfg->n_profiles;
    rt->upstreams = cfg->route_ups;
    rt->n_upstreams = cfg->n_upstreams;
    return 0;
}

static int check_config(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_config *cfg = base;
    char lpath[GW_CONF_PATH_LEN];
    size_t i;
    int rc;

    (void)path;
    if ((rc = check_listeners(pc, cfg)) != 0)
        return rc;
    /* a cmp upstream protects its requests with the gateway's own key unless it has a PBM secret */
    for (i = 0; i < cfg->n_upstreams; i++)
        if (cfg->upstreams[i].type == GW_UPSTREAM_CMP)
            cfg->upstreams[i].signer = &cfg->signer;
    for (i = 0; i < cfg->n_roles; i++)
        if ((rc = resolve_role(pc, cfg, &cfg->roles[i])) != 0)
            return rc;
    if ((rc = resolve_policy(pc, cfg, "$.default_path_policy", &cfg->default_path_policy)) != 0)
        return rc;
    for (i = 0; i < cfg->n_labels; i++) {
        gw_conf_join_key(lpath, "$.label_to_path_policy", cfg->labels[i].label);
        if ((rc = resolve_policy(pc, cfg, lpath, &cfg->labels[i].policy)) != 0)
            return rc;
    }
    for (i = 0; i < cfg->n_profiles; i++) {
        gw_conf_join_key(lpath, "$.profiles", cfg->profiles[i].name);
        if ((rc = resolve_policy(pc, cfg, lpath, &cfg->profiles[i].policy)) != 0)
            return rc;
    }
    return routes_init(cfg);
}

struct gw_config *gw_config_parse(const char *json, size_t len, const char *base_dir, const char *name,
                                  char *err)
{
    char errbuf[GW_ERR_LEN];
    struct gw_conf_ctx pc = {
        .name = name != NULL ? name : "config", .base_dir = base_dir, .err = err != NULL ? err : errbuf};
    struct gw_config *cfg;
    int rc = GW_ERR_NOMEM;

    pc.err[0] = '\0';
    if ((cfg = calloc(1, sizeof(*cfg))) != NULL && (rc = gw_conf_read(&pc, json, len, &top_def, cfg)) == 0)
        return cfg;
    if (rc == GW_ERR_NOMEM)
        gw_conf_fail(&pc, NULL, "out of memory");
    gw_config_free(cfg);
    return NULL;
}

struct gw_config *gw_config_load(const char *path, char *err)
{
    char errbuf[GW_ERR_LEN];
    struct gw_conf_ctx pc = {.name = path, .err = err != NULL ? err : errbuf};
    struct gw_config *cfg = NULL;
    char *buf = NULL, *dir = NULL;
    size_t len = 0;

    pc.err[0] = '\0';
    if ((buf = gw_conf_read_file(&pc, path, &len)) == NULL)
        goto out;
    if ((dir = gw_conf_dir_of(path)) == NULL) {
        gw_conf_fail(&pc, NULL, "out of memory");
        goto out;
    }
    if ((cfg = gw_config_parse(buf, len, dir, path, pc.err)) == NULL)
        goto out;
    if ((cfg->path = strdup(path)) == NULL) {
        gw_config_free(cfg);
        cfg = NULL;
        gw_conf_fail(&pc, NULL, "out of memory");
    }
out:
    free(dir);
    free(buf);
    return cfg;
}

/* ---- free and lookups --------------------------------------------------------------------- */

static void free_strings(char **v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_patterns(struct gw_patterns *p)
{
    free_strings(p->v, p->n);
}

static void free_authz(struct gw_authz *a)
{
    free_strings(a->tls_trust_names, a->n_tls_trust);
    X509_STORE_free(a->tls_store);
    sk_X509_pop_free(a->tls_untrusted, X509_free);
    free_patterns(&a->tls_subjects);
    free_patterns(&a->tls_sans);
    free_patterns(&a->signer_subjects);
    free_patterns(&a->common_names);
    free_patterns(&a->dns_names);
    free_patterns(&a->uris);
    free_patterns(&a->emails);
    free_patterns(&a->ip_ranges);
    free(a->key_rules);
    free_patterns(&a->ra_subjects);
}

static void free_root_update(struct gw_root_update *u)
{
    free(u->new_with_new_file);
    free(u->new_with_old_file);
    free(u->old_with_new_file);
    X509_free(u->new_with_new);
    X509_free(u->new_with_old);
    X509_free(u->old_with_new);
}

static void free_roles(struct gw_role *roles, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(roles[i].name);
        free(roles[i].upstream_name);
        free_strings(roles[i].trust_names, roles[i].n_trust);
        free_strings(roles[i].pbm_refs, roles[i].n_pbm);
        X509_STORE_free(roles[i].store);
        sk_X509_pop_free(roles[i].untrusted, X509_free);
        free(roles[i].upstream_role);
        free(roles[i].issuer_ref);
        free(roles[i].delegate_name);
        free(roles[i].crmf_upstream_name);
        free_authz(&roles[i].authz);
        for (size_t j = 0; j < roles[i].n_allowed_exts; j++)
            ASN1_OBJECT_free(roles[i].allowed_exts[j]);
        free(roles[i].allowed_exts);
        free(roles[i].device_allowlist_file);
        free_strings(roles[i].allow_subjects, roles[i].n_allow_subjects);
        for (size_t j = 0; j < roles[i].n_allow_serials; j++)
            BN_free(roles[i].allow_serials[j]);
        free(roles[i].allow_serials);
        free(roles[i].ca_pubs_file);
        sk_X509_pop_free(roles[i].ca_pubs, X509_free);
        free_root_update(&roles[i].root_update);
    }
    free(roles);
}

static void free_upstreams(struct gw_upstream_conf *ups, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(ups[i].name);
        free(ups[i].cert_file);
        free(ups[i].key_file);
        free(ups[i].chain_file);
        X509_free(ups[i].cert);
        EVP_PKEY_free(ups[i].key);
        sk_X509_pop_free(ups[i].chain, X509_free);
        free(ups[i].store_dir);
        free(ups[i].crl_url);
        free(ups[i].url);
        free(ups[i].ca_file);
        free(ups[i].client_cert_file);
        free(ups[i].client_key_file);
        free(ups[i].issuer_ca_file);
        X509_STORE_free(ups[i].issuer_store);
        sk_X509_pop_free(ups[i].issuer_certs, X509_free);
        free(ups[i].mount);
        free(ups[i].token_file);
        free(ups[i].vault_namespace);
        free(ups[i].auth_cert_mount);
        free(ups[i].auth_cert_role);
        free(ups[i].auth_key_file);
        OPENSSL_clear_free(ups[i].auth_key, ups[i].auth_key_len);
        free(ups[i].cmp_path);
        free(ups[i].cmp_trusted_file);
        X509_STORE_free(ups[i].cmp_trusted);
        free(ups[i].cmp_ref);
        free(ups[i].cmp_secret_file);
        OPENSSL_clear_free(ups[i].cmp_secret, ups[i].cmp_secret_len);
    }
    free(ups);
}

static void free_trust_pbm(struct gw_config *cfg)
{
    size_t i;

    for (i = 0; i < cfg->n_trust; i++) {
        free(cfg->trust[i].name);
        free(cfg->trust[i].ca_file);
        free(cfg->trust[i].untrusted_file);
        free(cfg->trust[i].crl_file);
        sk_X509_pop_free(cfg->trust[i].cas, X509_free);
        X509_STORE_free(cfg->trust[i].store);
        sk_X509_pop_free(cfg->trust[i].untrusted, X509_free);
    }
    free(cfg->trust);
    for (i = 0; i < cfg->n_pbm; i++) {
        free(cfg->pbm[i].reference);
        free(cfg->pbm[i].secret_file);
        OPENSSL_clear_free(cfg->pbm[i].secret, GW_MAX_PBM_SECRET_LEN + 3);
    }
    free(cfg->pbm);
}

void gw_config_free(struct gw_config *cfg)
{
    size_t i;

    if (cfg == NULL)
        return;
    free(cfg->route_ups);
    for (i = 0; i < cfg->n_listeners; i++) {
        free(cfg->listeners[i].address);
        free(cfg->listeners[i].tls_cert);
        free(cfg->listeners[i].tls_key);
        free(cfg->listeners[i].client_ca);
    }
    free(cfg->listeners);
    free(cfg->signer.cert_file);
    free(cfg->signer.key_file);
    free(cfg->signer.chain_file);
    X509_free(cfg->signer.cert);
    EVP_PKEY_free(cfg->signer.key);
    sk_X509_pop_free(cfg->signer.chain, X509_free);
    free_trust_pbm(cfg);
    free_upstreams(cfg->upstreams, cfg->n_upstreams);
    free_roles(cfg->roles, cfg->n_roles);
    for (i = 0; i < cfg->n_labels; i++) {
        free(cfg->labels[i].label);
        free(cfg->labels[i].policy.role_name);
    }
    free(cfg->labels);
    for (i = 0; i < cfg->n_profiles; i++) {
        free(cfg->profiles[i].name);
        free(cfg->profiles[i].policy.role_name);
    }
    free(cfg->profiles);
    free(cfg->default_path_policy.role_name);
    free_root_update(&cfg->root_update);
    free(cfg->audit.file);
    free(cfg->path_prefix);
    free(cfg->path);
    free(cfg);
}

const struct gw_role *gw_config_role(const struct gw_config *cfg, const char *name, size_t len)
{
    size_t i;

    for (i = 0; cfg != NULL && i < cfg->n_roles; i++)
        if (strlen(cfg->roles[i].name) == len && memcmp(cfg->roles[i].name, name, len) == 0)
            return &cfg->roles[i];
    return NULL;
}

const struct gw_label *gw_config_label(const struct gw_config *cfg, const char *label, size_t len)
{
    size_t i;

    for (i = 0; cfg != NULL && i < cfg->n_labels; i++)
        if (strlen(cfg->labels[i].label) == len && memcmp(cfg->labels[i].label, label, len) == 0)
            return &cfg->labels[i];
    return NULL;
}

const struct gw_profile *gw_config_profile(const struct gw_config *cfg, const char *name, size_t len)
{
    size_t i;

    for (i = 0; cfg != NULL && name != NULL && i < cfg->n_profiles; i++)
        if (strlen(cfg->profiles[i].name) == len && memcmp(cfg->profiles[i].name, name, len) == 0)
            return &cfg->profiles[i];
    return NULL;
}

const struct gw_pbm_conf *gw_config_pbm(const struct gw_config *cfg, const unsigned char *ref, size_t len)
{
    size_t i;

    for (i = 0; cfg != NULL && i < cfg->n_pbm; i++)
        if (strlen(cfg->pbm[i].reference) == len && memcmp(cfg->pbm[i].reference, ref, len) == 0)
            return &cfg->pbm[i];
    return NULL;
}

/* ---- what the CMP layer reads (gateway/cmp/conf.h) ---------------------------------------- */

void gw_config_cmp_settings(const struct gw_config *cfg, struct gw_cmp_settings *out)
{
    *out = (struct gw_cmp_settings){
        .path_prefix = cfg->path_prefix,
        .signer = &cfg->signer,
        .trust = cfg->trust,
        .n_trust = cfg->n_trust,
        .pbm = cfg->pbm,
        .n_pbm = cfg->n_pbm,
        .cmp = &cfg->cmp,
        .audit = &cfg->audit,
        .root_update = &cfg->root_update,
        .roles = cfg->roles,
        .n_roles = cfg->n_roles,
        .routes = &cfg->routes,
        .upstreams = cfg->upstreams,
        .n_upstreams = cfg->n_upstreams,
    };
}
