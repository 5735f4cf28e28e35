/*
 * The roles' configuration: "roles", "default_path_policy", "label_to_path_policy", "profiles"
 * and "root_ca_update" (mappings/role.h), as tables for base/conf.h's reader, with the checks
 * that need only a role itself. What a role needs of the rest (its upstreams, trust entries and
 * PBM credentials) is resolved where those are known (upstream/conf.c, gateway/config.c).
 */
#include "mappings/role.h"
#include "base/cidr.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/names.h"
#include "base/pem.h"
#include "mappings/subject.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#define SIGN_VERBATIM "sign-verbatim" /* Vault's path policy, and the name of the role it selects */

/* "role:<name>" or "forbid" into a struct gw_path_policy; the role is resolved in the final pass. */
int gw_role_p_policy(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
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

/* "10.0.0.0/8" or "fd00::/8": an address, a prefix length, and no host bits set (a likely typo). */
static bool cidr_ok(const char *s, size_t len)
{
    return pattern_ok(s, len) && gw_cidr_valid(s, len);
}

static const struct gw_conf_names names_pattern = {pattern_ok, "a pattern of 1..256 characters"};

static const struct gw_conf_names names_cidr = {
    cidr_ok, "a CIDR like \"10.0.0.0/8\" or \"fd00::/8\" (no host bits set)"};

/* An array of at most GW_MAX_PATTERNS patterns (struct gw_patterns), each checked by the name kind
 * in |f->aux|; no duplicates. */
static int p_patterns(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                      const struct gw_conf_field *f)
{
    struct gw_conf_field names = *f;
    char buf[GW_CONF_SHOW_BUF];

    if (v != NULL &&
        (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > GW_MAX_PATTERNS))
        return gw_conf_fail(pc, path, "expected an array of at most %d patterns, got %s", GW_MAX_PATTERNS,
                            gw_conf_show(v, buf, sizeof(buf)));
    names.off = offsetof(struct gw_patterns, v);
    names.off_n = offsetof(struct gw_patterns, n);
    return gw_conf_p_names(pc, path, v, gw_conf_at(base, f->off), &names);
}

/*
 * A list that bounds what a role admits, absent to admit any: written empty (a template's empty
 * variable, say) it would admit any too, where "[]" reads as "none". Refused, so that it fails closed.
 */
static int refuse_empty(struct gw_conf_ctx *pc, const char *path, struct json_object *v)
{
    if (v != NULL && json_object_is_type(v, json_type_array) && json_object_array_length(v) == 0)
        return gw_conf_fail(pc, path, "an empty list would admit any; leave the key out for that");
    return 0;
}

/* Patterns (p_patterns) that bound what a role admits: one at least. */
static int p_bounds(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                    const struct gw_conf_field *f)
{
    return refuse_empty(pc, path, v) != 0 ? GW_ERR_INVAL : p_patterns(pc, path, v, base, f);
}

/*
 * Subject pattern |i| of |ps| (of JSON array |v| at |path|): every backslash begins an escape of the one-line
 * form (gw_subject_pattern_bad_escape). Any other stands for nothing a subject's line holds: "\xc3" or
 * "\x41" matches no subject, and "\*" no literal star (but a backslash, and any run after it).
 */
static int refuse_bad_escape(struct gw_conf_ctx *pc, const char *path, struct json_object *v,
                             const struct gw_patterns *ps, size_t i)
{
    char ipath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];
    const char *bad = gw_subject_pattern_bad_escape(ps->v[i]);

    if (bad == NULL)
        return 0;
    gw_conf_join_index(ipath, path, i);
    return gw_conf_fail(pc, ipath,
                        "%s: the backslash at byte %zu begins no escape: a subject's line has only \"\\+\" "
                        "and \"\\xHH\" (upper-case hex, a byte outside printable ASCII)",
                        gw_conf_show(json_object_array_get_idx(v, i), buf, sizeof(buf)),
                        (size_t)(bad - ps->v[i]) + 1);
}

/* What keeps a subject pattern's emailAddress or mail value from matching (gw_subject_pattern_dead). */
static const char *const dead_subject_email[] = {
    [GW_EMAIL_TWO_AT] = "with more than one '@' is refused; write one '@'",
    [GW_EMAIL_NO_AT] = "without an '@' is refused; write one (a '*' matches none)",
    [GW_EMAIL_NO_LOCAL] = "with nothing before its '@' is refused; write a local part",
    [GW_EMAIL_NO_DOMAIN] = "with nothing after its '@' is refused; write a domain",
};

/*
 * Subject patterns (p_patterns): none that can never match. A subject's emailAddress or mail that is no
 * address (more than one '@', none, nothing on a side of it) is refused everywhere and matches no pattern
 * (gw_subject_match), so a pattern spelling one out admits nothing (nor does an emailAddress of "*": a
 * '*' there matches no '@'); nor does one with an RDN of more attributes than the matcher pairs off, nor one
 * with a backslash that begins no escape of the one-line form (refuse_bad_escape). Mistakes the load would
 * otherwise hide until every subject they were meant for is refused.
 */
static int p_subject_patterns(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                              const struct gw_conf_field *f)
{
    const struct gw_patterns *ps = gw_conf_at(base, f->off);
    char ipath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];
    enum gw_email_flaw flaw;
    const char *attr;
    int rc;

    if ((rc = p_patterns(pc, path, v, base, f)) != 0)
        return rc;
    for (size_t i = 0; i < ps->n; i++) {
        if ((rc = refuse_bad_escape(pc, path, v, ps, i)) != 0)
            return rc;
        attr = gw_subject_pattern_dead(ps->v[i], &flaw);
        if (attr == NULL && !gw_subject_pattern_crowded(ps->v[i]))
            continue;
        gw_conf_join_index(ipath, path, i);
        gw_conf_show(json_object_array_get_idx(v, i), buf, sizeof(buf));
        if (attr == NULL)
            return gw_conf_fail(pc, ipath,
                                "%s can never match: an RDN of more than %d attributes matches no subject; "
                                "write at most %d in one RDN",
                                buf, GW_MAX_RDN_ATTRS, GW_MAX_RDN_ATTRS);
        return gw_conf_fail(pc, ipath, "%s can never match: a subject's %s %s", buf, attr,
                            dead_subject_email[flaw]);
    }
    return 0;
}

/*
 * Why an email pattern can match no address, by its flaw (gw_subject_email_flaw): an email address with a
 * flaw is refused everywhere and matches no pattern, a '*' of an email pattern matches no '@', so a pattern
 * with a flaw matches only names with it. One without an '@' ("example.com", "*") admits no email address,
 * one with two none mailers agree on, and "*@" or "@example.com" none at all: each admits nothing it was
 * meant for, a mistake the load would otherwise hide until every address it was meant for is refused.
 */
static const char *const dead_email[] = {
    [GW_EMAIL_TWO_AT] = "can never match: an email address with more than one '@' is refused; write one '@'",
    [GW_EMAIL_NO_AT] = "holds no '@' and so matches no email address: write one '@', as in \"*@example.com\"",
    [GW_EMAIL_NO_LOCAL] =
        "can never match: an email address has a local part before its '@'; write one, or a "
        "'*', as in \"*@example.com\"",
    [GW_EMAIL_NO_DOMAIN] =
        "can never match: an email address has a domain after its '@'; write one, or a '*', "
        "as in \"*@example.com\"",
};

/*
 * Email patterns of |ps| (all of them, or with |tls_sans| those gw_role_tls_san_type reads as an email's,
 * which hold an '@': one without is a DNS name's): none that can match no address (dead_email).
 */
static int refuse_dead_email(struct gw_conf_ctx *pc, const char *path, struct json_object *v,
                             const struct gw_patterns *ps, bool tls_sans)
{
    char ipath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];
    enum gw_email_flaw flaw;

    for (size_t i = 0; i < ps->n; i++) {
        if (tls_sans && gw_role_tls_san_type(ps->v[i]) != GEN_EMAIL)
            continue;
        if ((flaw = gw_subject_email_flaw(ps->v[i], strlen(ps->v[i]))) == GW_EMAIL_OK)
            continue;
        gw_conf_join_index(ipath, path, i);
        return gw_conf_fail(pc, ipath, "%s %s",
                            gw_conf_show(json_object_array_get_idx(v, i), buf, sizeof(buf)),
                            dead_email[flaw]);
    }
    return 0;
}

/* "allowed_emails": patterns (p_bounds), each one that can match an address (refuse_dead_email). */
static int p_email_bounds(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                          const struct gw_conf_field *f)
{
    int rc = p_bounds(pc, path, v, base, f);

    return rc != 0 ? rc : refuse_dead_email(pc, path, v, gw_conf_at(base, f->off), false);
}

/* "tls_sans": patterns (p_bounds), each email pattern among them one that can match an address. */
static int p_tls_san_bounds(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                            const struct gw_conf_field *f)
{
    int rc = p_bounds(pc, path, v, base, f);

    return rc != 0 ? rc : refuse_dead_email(pc, path, v, gw_conf_at(base, f->off), true);
}

/* Subject patterns (p_subject_patterns) that bound what a role admits: one at least. */
static int p_subject_bounds(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                            const struct gw_conf_field *f)
{
    return refuse_empty(pc, path, v) != 0 ? GW_ERR_INVAL : p_subject_patterns(pc, path, v, base, f);
}

/* Names (gw_conf_p_names) that bound what a role admits: one at least. */
static int p_bound_names(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                         const struct gw_conf_field *f)
{
    return refuse_empty(pc, path, v) != 0 ? GW_ERR_INVAL : gw_conf_p_names(pc, path, v, base, f);
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
 * most 39 under 0 and 1 (X.690 clause 8.19.4 packs them into one subidentifier).
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

/*
 * The "trust:<name> " a line of a device allow-list starts with, at *|s| (moved past it): its index
 * in |r|'s allow_scopes (added at its first line) into *|scope|, or -1 without one. A bare line is
 * ambiguous on a role trusting several CAs: any of them can write a subject and choose a serial.
 */
static int allow_scope(struct gw_conf_ctx *pc, const char *fpath, const char *file, long lineno,
                       const char **s, struct gw_role *r, int *scope)
{
    const char *name;
    size_t len;

    *scope = -1;
    if (strncmp(*s, "trust:", 6) != 0) {
        if (r->n_trust <= 1)
            return 0;
        return gw_conf_fail(
            pc, fpath,
            "\"%s\" line %ld: no \"trust:<name> \" before \"%.40s\", and the role trusts %zu entries: "
            "name the one its device chains to",
            file, lineno, *s, r->n_trust);
    }
    name = *s + 6; /* past "trust:", which the line holds */
    len = strcspn(name, " \t");
    if (!gw_conf_names_plain.ok(name, len) || name[len] == '\0')
        return gw_conf_fail(pc, fpath,
                            "\"%s\" line %ld: expected \"trust:<name> \" and an entry, got \"%.48s\"", file,
                            lineno, *s);
    for (size_t i = 0; i < r->n_allow_scopes && *scope < 0; i++)
        if (strlen(r->allow_scopes[i].trust_name) == len &&
            strncmp(r->allow_scopes[i].trust_name, name, len) == 0)
            *scope = (int)i;
    if (*scope < 0) {
        if (r->n_allow_scopes >= GW_MAX_ALLOWLIST_TRUST)
            return gw_conf_fail(pc, fpath, "\"%s\" line %ld: names more than %d trust entries", file, lineno,
                                GW_MAX_ALLOWLIST_TRUST);
        if ((r->allow_scopes[r->n_allow_scopes].trust_name = strndup(name, len)) == NULL)
            return GW_ERR_NOMEM;
        r->allow_scopes[r->n_allow_scopes].line = lineno;
        *scope = (int)r->n_allow_scopes++;
    }
    for (*s = name + len; **s == ' ' || **s == '\t'; (*s)++)
        ;
    return 0;
}

/* One non-comment line of a device allow-list into |r|. */
static int allow_entry(struct gw_conf_ctx *pc, const char *fpath, const char *file, long lineno,
                       const char *s, struct gw_role *r)
{
    struct gw_allow_entry *e;
    int scope, rc;

    if (r->n_allow >= GW_MAX_ALLOWLIST_ENTRIES)
        return gw_conf_fail(pc, fpath, "\"%s\": more than %d entries", file, GW_MAX_ALLOWLIST_ENTRIES);
    if ((rc = allow_scope(pc, fpath, file, lineno, &s, r, &scope)) != 0)
        return rc;
    if (strncmp(s, "serial:", 7) != 0 && s[0] != '/')
        return gw_conf_fail(pc, fpath,
                            "\"%s\" line %ld: expected a one-line subject (\"/O=.../CN=...\") or "
                            "\"serial:<hex>\", got \"%.40s\"",
                            file, lineno, s);
    if ((e = realloc(r->allow, (r->n_allow + 1) * sizeof(*e))) == NULL)
        return GW_ERR_NOMEM;
    r->allow = e;
    e = &r->allow[r->n_allow];
    memset(e, 0, sizeof(*e));
    e->scope = scope;
    if (s[0] == '/') {
        if ((e->subject = strdup(s)) == NULL)
            return GW_ERR_NOMEM;
        r->n_allow_subjects++;
    } else {
        if ((e->serial = allow_serial(s + 7)) == NULL)
            return gw_conf_fail(
                pc, fpath, "\"%s\" line %ld: expected \"serial:<hex>\" of at most 20 octets, got \"%.48s\"",
                file, lineno, s);
        r->n_allow_serials++;
    }
    r->n_allow++;
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
    char fpath[GW_CONF_PATH_LEN], buf[GW_MAX_ALLOWLIST_LINE + 2], *s, shown[GW_ERR_LEN];
    long lineno = 0;
    int len, rc = 0;
    BIO *bio;

    gw_conf_join_key(fpath, path, "device_allowlist");
    if ((bio = gw_conf_open(pc, fpath, r->device_allowlist_file)) == NULL)
        return GW_ERR_INVAL;
    gw_conf_show_file(r->device_allowlist_file, shown, sizeof(shown)); /* the file as its errors name it */
    while (rc == 0 && (len = BIO_gets(bio, buf, sizeof(buf))) > 0) {
        lineno++;
        if (buf[len - 1] != '\n' && len == (int)sizeof(buf) - 1) {
            rc = gw_conf_fail(pc, fpath, "\"%s\" line %ld: longer than %d characters", shown, lineno,
                              GW_MAX_ALLOWLIST_LINE);
            break;
        }
        s = trim_line(buf);
        if (s[0] != '\0' && s[0] != '#')
            rc = allow_entry(pc, fpath, shown, lineno, s, r);
    }
    BIO_free(bio);
    if (rc == 0 && r->n_allow == 0)
        gw_log(GW_LOG_WARN, "config", "%s: %s: \"%s\" lists no device: every request is refused", pc->name,
               fpath, shown);
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

/*
 * "ra_trust" widens who may be an RA of the role to certificates of some of the role's own trust
 * entries: one it does not trust at all could never authenticate an rr, and without ra_subjects the
 * role has no RA.
 */
static int check_ra_trust(struct gw_conf_ctx *pc, const char *path, const struct gw_role *r)
{
    char kpath[GW_CONF_PATH_LEN], ipath[GW_CONF_PATH_LEN];

    gw_conf_bprintf(kpath, sizeof(kpath), "%s.authorization.ra_trust", path);
    if (r->authz.n_ra_trust > 0 && r->authz.ra_subjects.n == 0)
        return gw_conf_fail(pc, kpath, "set, but \"ra_subjects\" is not: the role has no RA");
    for (size_t i = 0; i < r->authz.n_ra_trust; i++) {
        gw_conf_join_index(ipath, kpath, i);
        if (!gw_names_has(r->trust_names, r->n_trust, r->authz.ra_trust_names[i]))
            return gw_conf_fail(pc, ipath,
                                "\"%s\" is not in the role's \"trust\": an RA signs with a "
                                "certificate the role trusts",
                                r->authz.ra_trust_names[i]);
    }
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
    /* a migration moves the role off its upstream: "from" is that upstream, by name */
    gw_conf_join_key(kpath, path, "migration");
    if (gw_migration_configured(&r->migration)) {
        if (strcmp(r->migration.from_name, r->upstream_name) != 0)
            return gw_conf_fail(pc, kpath, "\"from\" is \"%s\", not the role's upstream \"%s\"",
                                r->migration.from_name, r->upstream_name);
        if (r->migration.name == NULL && (r->migration.name = strdup(r->name)) == NULL)
            return GW_ERR_NOMEM;
    }
    if (check_ra_trust(pc, path, r) != 0)
        return GW_ERR_INVAL;
    return check_role_3gpp(pc, path, r);
}

static const struct gw_conf_enum sign_names[] = {
    {"role", GW_SIGN_ROLE, NULL}, {"verbatim", GW_SIGN_VERBATIM, NULL}, {NULL, 0, NULL}};

/* 3GPP TS 33.310: SHA-256 shall, SHA-384 should; the value is the digest size in bits. */
static const struct gw_conf_enum min_hash_names[] = {
    {"sha256", 256, NULL}, {"sha384", 384, NULL}, {"sha512", 512, NULL}, {NULL, 0, NULL}};

static const struct gw_conf_enum crmf_names[] = {
    {"reject", GW_CRMF_REJECT, NULL}, {"delegate", GW_CRMF_DELEGATE, NULL}, {NULL, 0, NULL}};

static const struct gw_conf_enum key_reuse_names[] = {
    {"refuse", GW_KEY_REUSE_REFUSE, NULL}, {"allow", GW_KEY_REUSE_ALLOW, NULL}, {NULL, 0, NULL}};

static const struct gw_conf_enum tls_client_names[] = {
    {"optional", 0, NULL}, {"require", 1, NULL}, {NULL, 0, NULL}};

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

static const struct gw_conf_field authz_fields[] = {
    GW_CONF_OPT("tls_client", gw_conf_p_enum_bool, struct gw_authz, tls_required, .def = 0,
                .aux = tls_client_names),
    GW_CONF_OPT("tls_trust", p_bound_names, struct gw_authz, tls_trust_names,
                .off_n = offsetof(struct gw_authz, n_tls_trust), .aux = &gw_conf_names_plain),
    GW_CONF_OPT("tls_subjects", p_subject_bounds, struct gw_authz, tls_subjects, .aux = &names_pattern),
    GW_CONF_OPT("tls_sans", p_tls_san_bounds, struct gw_authz, tls_sans, .aux = &names_pattern),
    GW_CONF_OPT("tls_must_be_signer", gw_conf_p_bool, struct gw_authz, tls_must_be_signer, .def = false),
    GW_CONF_OPT("signer_subjects", p_subject_bounds, struct gw_authz, signer_subjects, .aux = &names_pattern),
    GW_CONF_OPT("allowed_subjects", p_subject_bounds, struct gw_authz, subjects, .aux = &names_pattern),
    GW_CONF_OPT("allowed_common_names", p_bounds, struct gw_authz, common_names, .aux = &names_pattern),
    GW_CONF_OPT("allowed_dns_names", p_bounds, struct gw_authz, dns_names, .aux = &names_pattern),
    GW_CONF_OPT("allowed_uris", p_bounds, struct gw_authz, uris, .aux = &names_pattern),
    GW_CONF_OPT("allowed_emails", p_email_bounds, struct gw_authz, emails, .aux = &names_pattern),
    GW_CONF_OPT("allowed_ip_ranges", p_bounds, struct gw_authz, ip_ranges, .aux = &names_cidr),
    GW_CONF_OPT("allowed_key_types", p_key_types, struct gw_authz, key_rules,
                .off_n = offsetof(struct gw_authz, n_key_rules)),
    GW_CONF_OPT("ra_subjects", p_subject_patterns, struct gw_authz, ra_subjects, .aux = &names_pattern),
    GW_CONF_OPT("ra_trust", gw_conf_p_names, struct gw_authz, ra_trust_names,
                .off_n = offsetof(struct gw_authz, n_ra_trust), .aux = &gw_conf_names_plain),
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

const struct gw_conf_obj gw_root_update_conf_def = {
    root_update_fields, sizeof(root_update_fields) / sizeof(root_update_fields[0]), check_root_update};

static const struct gw_conf_field role_fields[] = {
    GW_CONF_REQ("upstream", gw_conf_p_name, struct gw_role, upstream_name, .aux = &gw_conf_names_plain),
    GW_CONF_OPT("trust", gw_conf_p_names, struct gw_role, trust_names,
                .off_n = offsetof(struct gw_role, n_trust), .aux = &gw_conf_names_plain),
    GW_CONF_OPT("pbm", gw_conf_p_names, struct gw_role, pbm_refs, .off_n = offsetof(struct gw_role, n_pbm),
                .aux = &gw_conf_names_kid),
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
    GW_CONF_OPT("allow_wildcard_certificates", gw_conf_p_bool, struct gw_role, allow_wildcard_certificates,
                .def = false),
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
    GW_CONF_OPT("kur_any_signer", gw_conf_p_bool, struct gw_role, kur_any_signer, .def = false),
    GW_CONF_OPT("key_reuse", gw_conf_p_enum, struct gw_role, key_reuse, .def = GW_KEY_REUSE_REFUSE,
                .aux = key_reuse_names),
    GW_CONF_OPT("root_ca_update", gw_conf_p_opt_obj, struct gw_role, root_update,
                .aux = &gw_root_update_conf_def),
    /* 3GPP TS 33.310 (docs/3gpp.md) */
    GW_CONF_OPT("device_allowlist", gw_conf_p_file, struct gw_role, device_allowlist_file),
    GW_CONF_OPT("subject_from_signer", gw_conf_p_bool, struct gw_role, subject_from_signer, .def = false),
    GW_CONF_OPT("ca_pubs", gw_conf_p_file, struct gw_role, ca_pubs_file),
    GW_CONF_OPT("min_hash", gw_conf_p_enum, struct gw_role, min_hash_bits, .def = 0, .aux = min_hash_names),
    /* polling for slow upstreams (docs/polling.md) */
    GW_CONF_OPT("migration", gw_conf_p_opt_obj, struct gw_role, migration, .aux = &gw_migration_conf_def),
    GW_CONF_OPT("poll_after", gw_conf_p_dur_ms, struct gw_role, poll_after_ms, .min = 0,
                .max = GW_MAX_UPSTREAM_TIMEOUT_MS, .def = 0),
};

GW_CONF_OBJDEF(role_def, role_fields, check_role);

/* A role's or a label's name is a segment of its path, where "." and ".." are refused as dot segments
 * (mappings/route.c): a role or label of such a name could never be reached on it. */
static bool path_name_ok(const char *s, size_t len)
{
    return gw_conf_name_ok(s, len) && gw_conf_segment_ok(s, len);
}

static const struct gw_conf_names names_role = {
    path_name_ok, "a name of 1..64 characters [A-Za-z0-9._-] other than \".\" and \"..\" (a path segment)"};

const struct gw_conf_map gw_role_conf_map = {
    sizeof(struct gw_role), offsetof(struct gw_role, name), &names_role, gw_conf_p_obj, 0, &role_def};

static const struct gw_conf_names names_label = {
    path_name_ok, "a label of 1..64 characters [A-Za-z0-9._-] other than \".\" and \"..\" (a path segment)"};

const struct gw_conf_map gw_label_conf_map = {
    sizeof(struct gw_label), offsetof(struct gw_label, label),  &names_label,
    gw_role_p_policy,        offsetof(struct gw_label, policy), NULL};

static const struct gw_conf_names names_profile = {gw_conf_name_ok,
                                                   "a profile name of 1..64 characters [A-Za-z0-9._-]"};

const struct gw_conf_map gw_profile_conf_map = {sizeof(struct gw_profile),
                                                offsetof(struct gw_profile, name),
                                                &names_profile,
                                                p_profile_role,
                                                offsetof(struct gw_profile, policy),
                                                NULL};

/* Names a role may ask for per SAN type are dead configuration unless that type is copied at all. */
int gw_role_check_authz_sans(struct gw_conf_ctx *pc, const struct gw_role *r)
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

static void free_patterns(struct gw_patterns *p)
{
    gw_conf_free_strings(p->v, p->n);
}

static void free_authz(struct gw_authz *a)
{
    gw_conf_free_strings(a->tls_trust_names, a->n_tls_trust);
    X509_STORE_free(a->tls_store);
    sk_X509_pop_free(a->tls_untrusted, X509_free);
    free_patterns(&a->tls_subjects);
    free_patterns(&a->tls_sans);
    free_patterns(&a->signer_subjects);
    free_patterns(&a->subjects);
    free_patterns(&a->common_names);
    free_patterns(&a->dns_names);
    free_patterns(&a->uris);
    free_patterns(&a->emails);
    free_patterns(&a->ip_ranges);
    free(a->key_rules);
    free_patterns(&a->ra_subjects);
    gw_conf_free_strings(a->ra_trust_names, a->n_ra_trust);
}

void gw_root_update_cleanup(struct gw_root_update *u)
{
    free(u->new_with_new_file);
    free(u->new_with_old_file);
    free(u->old_with_new_file);
    X509_free(u->new_with_new);
    X509_free(u->new_with_old);
    X509_free(u->old_with_new);
}

void gw_roles_free(struct gw_role *roles, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(roles[i].name);
        free(roles[i].upstream_name);
        gw_conf_free_strings(roles[i].trust_names, roles[i].n_trust);
        gw_conf_free_strings(roles[i].pbm_refs, roles[i].n_pbm);
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
        for (size_t j = 0; j < roles[i].n_allow; j++) {
            free(roles[i].allow[j].subject);
            BN_free(roles[i].allow[j].serial);
        }
        free(roles[i].allow);
        for (size_t j = 0; j < roles[i].n_allow_scopes; j++)
            free(roles[i].allow_scopes[j].trust_name);
        free(roles[i].ca_pubs_file);
        sk_X509_pop_free(roles[i].ca_pubs, X509_free);
        gw_root_update_cleanup(&roles[i].root_update);
        gw_migration_cleanup(&roles[i].migration);
    }
    free(roles);
}

void gw_labels_free(struct gw_label *labels, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(labels[i].label);
        free(labels[i].policy.role_name);
    }
    free(labels);
}

void gw_profiles_free(struct gw_profile *profiles, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(profiles[i].name);
        free(profiles[i].policy.role_name);
    }
    free(profiles);
}

const struct gw_role *gw_role_named(const struct gw_role *roles, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(roles[i].name, name) == 0)
            return &roles[i];
    return NULL;
}

int gw_role_tls_san_type(const char *pat)
{
    const char *colon = strchr(pat, ':'), *at = strchr(pat, '@');

    if (colon != NULL && (at == NULL || colon < at))
        return GEN_URI; /* a scheme first: "sip:alice@example.com", "ssh://git@host" */
    return at != NULL ? GEN_EMAIL : GEN_DNS;
}

bool gw_role_accepts_pbm(const struct gw_role *r, const unsigned char *ref, size_t len)
{
    for (size_t i = 0; i < r->n_pbm; i++)
        if (strlen(r->pbm_refs[i]) == len && memcmp(r->pbm_refs[i], ref, len) == 0)
            return true;
    return false;
}

void gw_role_issuers(const struct gw_role *r, const char *out[GW_ROLE_ISSUERS])
{
    out[0] = r->delegate_name;
    out[1] = gw_migration_configured(&r->migration) ? r->migration.to_name : NULL;
    out[2] = r->upstream_name;
    out[3] = r->crmf_upstream_name;
}
