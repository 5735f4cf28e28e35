/*
 * Authorization and policy checks of a role (mappings/policy.h). Pure: no I/O.
 *
 * Every refusal says what was refused, on which role, and what is allowed, because the text ends
 * up in the CMP statusString (RFC 9483 §3.6.4) and is all a device operator sees. Values that come
 * from the client are shown printable-only and cut short.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <openssl/cmp.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include "base/cidr.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/policy_local.h"

/* ---- messages ---- */

const char *policy_rname(const struct gw_role *role)
{
    return role != NULL && role->name != NULL ? role->name : "?";
}

/* policy_shown copies |len| bytes of |s| for a message: printable ASCII only, long values cut with "...". */
const char *policy_shown(char buf[SHOWN_LEN], const char *s, size_t len)
{
    size_t i, n = len < SHOWN_LEN - 1 ? len : SHOWN_LEN - 4;

    for (i = 0; i < n; i++)
        buf[i] = s[i] >= 0x20 && s[i] <= 0x7e ? s[i] : '?';
    memcpy(buf + n, n < len ? "..." : "", n < len ? 4 : 1);
    return buf;
}

/* policy_join lists |ps| as "a, b, c" in |buf|, cut with "..." when it does not fit. */
const char *policy_join(char *buf, size_t size, const struct gw_patterns *ps)
{
    size_t i, off = 0;
    int n;

    buf[0] = '\0';
    for (i = 0; i < ps->n; i++) {
        n = snprintf(buf + off, size - off, "%s%s", i > 0 ? ", " : "", ps->v[i]);
        if (n < 0 || (size_t)n >= size - off) {
            if (size > 4)
                memcpy(buf + size - 4, "...", 4);
            break;
        }
        off += (size_t)n;
    }
    return buf;
}

/* policy_say fills |err| and |*fail_info| and returns GW_ERR_POLICY: the one way a check refuses. */
int policy_say(int *fail_info, int bit, char *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, GW_ERR_LEN, fmt, ap);
    va_end(ap);
    *fail_info = bit;
    return GW_ERR_POLICY;
}

/* ---- glob patterns ---- */

static int is_sep(char c)
{
    return c == '.' || c == '/' || c == '=';
}

static unsigned char fold_c(char c, int fold)
{
    unsigned char u = (unsigned char)c;

    return fold && u >= 'A' && u <= 'Z' ? (unsigned char)(u + 32) : u;
}

/*
 * policy_glob matches |s| against |p| where '*' matches any run of characters: one backtrack point, so
 * O(|p| * |s|) however many '*' there are (no exponential blowup).
 */
int policy_glob(const char *p, size_t pn, const char *s, size_t sn, int fold)
{
    size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;

    while (si < sn) {
        if (pi < pn && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < pn && fold_c(p[pi], fold) == fold_c(s[si], fold)) {
            pi++;
            si++;
        } else if (star != SIZE_MAX) {
            pi = star + 1;
            si = ++mark;
        } else {
            return 0;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

/* policy_eq_fold: ASCII case-insensitive equality of two byte strings (DNS names, RFC 4343). */
int policy_eq_fold(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i;

    if (an != bn)
        return 0;
    for (i = 0; i < an; i++) {
        if (fold_c(a[i], 1) != fold_c(b[i], 1))
            return 0;
    }
    return 1;
}

static size_t seg_len(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && !is_sep(s[i]))
        i++;
    return i;
}

/*
 * pattern_match: '*' never crosses '.', '/' or '=', so the separators of |pat| and |s| must line up
 * one for one and each segment is a plain glob. A segment that is a lone '*' ("*.example.com",
 * "/CN=*") stands for one non-empty label or value.
 */
static int pattern_match(const char *pat, const char *s, size_t len, int fold)
{
    size_t pi = 0, si = 0, pn, pl, sl;

    if (pat == NULL || s == NULL || memchr(s, '\0', len) != NULL)
        return 0;
    pn = strlen(pat);
    for (;;) {
        pl = seg_len(pat + pi, pn - pi);
        sl = seg_len(s + si, len - si);
        if (pl == 1 && pat[pi] == '*' && sl == 0)
            return 0;
        if (!policy_glob(pat + pi, pl, s + si, sl, fold))
            return 0;
        pi += pl;
        si += sl;
        if (pi == pn || si == len)
            return pi == pn && si == len;
        if (pat[pi] != s[si])
            return 0;
        pi++;
        si++;
    }
}

int gw_pattern_match(const char *pat, const char *s, size_t len)
{
    return pattern_match(pat, s, len, 0);
}

static int match_any(const struct gw_patterns *ps, const char *s, size_t len, int fold)
{
    size_t i;

    for (i = 0; i < ps->n; i++) {
        if (pattern_match(ps->v[i], s, len, fold))
            return 1;
    }
    return 0;
}

/* ---- authorization: who may use the role ---- */

static int check_subject(const struct gw_role *role, const struct gw_patterns *ps, const char *key,
                         const char *who, const X509_NAME *name, int *fail_info, char *err)
{
    char buf[SHOWN_LEN], list[GW_ERR_LEN / 2];
    char *line;
    int rc = 0;

    if (ps->n == 0)
        return 0;
    /* the whole line, or NULL where a value holds a '/' ("O=x/CN=admin" would read as two) or a
       backslash (the text "\x31" would read as the escape of a byte) */
    if ((line = gw_x509_name_line(name)) == NULL)
        return policy_say(fail_info, DENY, err,
                          "%s subject has a '/' or a backslash in an attribute value and cannot be matched "
                          "against %s of role %s",
                          who, key, policy_rname(role));
    if (!match_any(ps, line, strlen(line), 0))
        rc = policy_say(fail_info, DENY, err, "%s subject %s is not allowed on role %s (allowed: %s)", who,
                        policy_shown(buf, line, strlen(line)), policy_rname(role),
                        policy_join(list, sizeof(list), ps));
    OPENSSL_free(line);
    return rc;
}

/*
 * TLS SANs: one DNS, URI or email name matching one pattern of its type authorizes (DNS names fold case).
 * A pattern with a '@' is an email's, with a ':' a URI's, else a DNS name's: across types, the email
 * "x@dev.example.com" would match the DNS pattern "*.example.com".
 */
static int pattern_type(const char *pat)
{
    return strchr(pat, '@') != NULL ? GEN_EMAIL : strchr(pat, ':') != NULL ? GEN_URI : GEN_DNS;
}

static int check_tls_sans(const struct gw_role *role, X509 *cert, int *fail_info, char *err)
{
    const struct gw_patterns *ps = &role->authz.tls_sans;
    GENERAL_NAMES *sans;
    char list[GW_ERR_LEN / 2];
    int i, ok = 0;

    if (ps->n == 0)
        return 0;
    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (i = 0; !ok && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);

        for (size_t k = 0; !ok && k < ps->n; k++)
            ok = pattern_type(ps->v[k]) == gn->type &&
                 pattern_match(ps->v[k], (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length,
                               gn->type == GEN_DNS);
    }
    GENERAL_NAMES_free(sans);
    if (ok)
        return 0;
    return policy_say(fail_info, DENY, err,
                      "TLS client certificate has no subjectAltName allowed on role %s (allowed: %s)",
                      policy_rname(role), policy_join(list, sizeof(list), ps));
}

static const struct {
    int code;
    const char *leaf; /* the certificate itself */
    const char *ca;   /* a CA certificate above it */
} verify_reasons[] = {
    {X509_V_ERR_CERT_REVOKED, "is revoked", "chains to a revoked CA certificate"},
    {X509_V_ERR_CERT_HAS_EXPIRED, "has expired", "chains to an expired CA certificate"},
    {X509_V_ERR_CERT_NOT_YET_VALID, "is not yet valid", "chains to a CA certificate not yet valid"},
    {X509_V_ERR_UNABLE_TO_GET_CRL, "cannot be checked: no CRL of its issuer is loaded",
     "cannot be checked: no CRL of a CA above it is loaded"},
    {X509_V_ERR_CRL_HAS_EXPIRED, "cannot be checked: the CRL of its issuer has expired",
     "cannot be checked: a CRL of a CA above it has expired"},
    {X509_V_ERR_CRL_NOT_YET_VALID, "cannot be checked: the CRL of its issuer is not yet valid",
     "cannot be checked: a CRL of a CA above it is not yet valid"},
    {X509_V_ERR_INVALID_PURPOSE, "is not for TLS client authentication (extendedKeyUsage)",
     "chains to a CA certificate not for TLS client authentication"},
};

/* policy_verify_why says why X509_verify_cert failed with |code| at |depth|, in words a person can act on. */
const char *policy_verify_why(int code, int depth)
{
    size_t i;

    for (i = 0; i < sizeof(verify_reasons) / sizeof(verify_reasons[0]); i++) {
        if (verify_reasons[i].code == code)
            return depth == 0 ? verify_reasons[i].leaf : verify_reasons[i].ca;
    }
    switch (code) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
        return "does not chain to a trusted CA";
    default:
        return X509_verify_cert_error_string(code);
    }
}

/*
 * For what an upstream returned, a critical extension OpenSSL does not know is the role's to judge
 * (its allowed_extensions, else outside policy and revoked), not a broken chain.
 */
static int issued_verify_cb(int ok, X509_STORE_CTX *ctx)
{
    if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION &&
        X509_STORE_CTX_get_error_depth(ctx) == 0)
        return 1;
    return ok;
}

/*
 * policy_verify runs X509_verify_cert of |cert| against |store| at |now|. |purpose| 0 = any. |issued|
 * is for what an upstream returned: every certificate in |store| is an anchor (an issuing CA need
 * not be a root), and X509_STRICT is off, because a certificate with CA:TRUE or keyCertSign must
 * come out as outside policy (revoked upstream), not as foreign (dropped and left valid). Returns
 * 1 if it verifies (with |path|, the chain found into *path, leaf first), else 0 with the error and
 * its depth.
 */
int policy_verify(X509_STORE *store, X509 *cert, STACK_OF(X509) *untrusted, time_t now, int purpose,
                  int issued, int *code, int *depth, STACK_OF(X509) **path)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = 0;

    *code = X509_V_ERR_OUT_OF_MEM;
    *depth = 0;
    if (ctx == NULL || X509_STORE_CTX_init(ctx, store, cert, untrusted) != 1)
        goto out;
    X509_STORE_CTX_set_time(ctx, 0, now);
    if (purpose != 0 && X509_STORE_CTX_set_purpose(ctx, purpose) != 1)
        goto out;
    if (issued &&
        (X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN) != 1 ||
         X509_VERIFY_PARAM_clear_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT) != 1))
        goto out;
    if (issued)
        X509_STORE_CTX_set_verify_cb(ctx, issued_verify_cb);
    ok = X509_verify_cert(ctx) == 1;
    *code = X509_STORE_CTX_get_error(ctx);
    *depth = X509_STORE_CTX_get_error_depth(ctx);
    if (ok && path != NULL && (*path = X509_STORE_CTX_get1_chain(ctx)) == NULL) {
        ok = 0;
        *code = X509_V_ERR_OUT_OF_MEM;
    }
out:
    X509_STORE_CTX_free(ctx);
    return ok;
}

static int tls_constrained(const struct gw_authz *a)
{
    return a->tls_required || a->tls_store != NULL || a->tls_subjects.n > 0 || a->tls_sans.n > 0 ||
           a->tls_must_be_signer;
}

/*
 * authorize_tls: deny by default, so a role that constrains TLS client certificates in any way
 * (tls_trust, tls_subjects, tls_sans, tls_must_be_signer) refuses a connection without one, even
 * with "tls_client": "optional".
 */
static int authorize_tls(const struct gw_role *role, X509 *peer, time_t now, int *fail_info, char *err)
{
    const struct gw_authz *a = &role->authz;
    char buf[SHOWN_LEN];
    char *line;
    int code, depth, rc;

    if (peer == NULL) {
        if (!tls_constrained(a))
            return 0;
        return policy_say(fail_info, DENY, err, "role %s requires a TLS client certificate; connect with one",
                          policy_rname(role));
    }
    if (a->tls_store != NULL && !policy_verify(a->tls_store, peer, a->tls_untrusted, now,
                                               X509_PURPOSE_SSL_CLIENT, 0, &code, &depth, NULL)) {
        line = X509_NAME_oneline(X509_get_subject_name(peer), NULL, 0);
        rc = policy_say(fail_info, DENY, err, "TLS client certificate %s %s (tls_trust of role %s)",
                        line != NULL ? policy_shown(buf, line, strlen(line)) : "?",
                        policy_verify_why(code, depth), policy_rname(role));
        OPENSSL_free(line);
        return rc;
    }
    if ((rc = check_subject(role, &a->tls_subjects, "tls_subjects", "TLS client certificate",
                            X509_get_subject_name(peer), fail_info, err)) != 0)
        return rc;
    return check_tls_sans(role, peer, fail_info, err);
}

static int pbm_accepted(const struct gw_role *role, const char *ref)
{
    size_t i;

    for (i = 0; i < role->n_pbm; i++) {
        if (role->pbm_refs[i] != NULL && strcmp(role->pbm_refs[i], ref) == 0)
            return 1;
    }
    return 0;
}

static int authorize_cmp(const struct gw_role *role, const struct gw_identity *id, int *fail_info, char *err)
{
    const struct gw_authz *a = &role->authz;
    char buf[SHOWN_LEN];

    if (id->signer == NULL && id->pbm_ref == NULL)
        return policy_say(fail_info, DENY, err,
                          "the request is not protected; role %s needs a signature or PBM",
                          policy_rname(role));
    if (a->tls_must_be_signer && id->signer == NULL)
        return policy_say(fail_info, DENY, err,
                          "role %s requires the CMP request to be signed with the TLS client "
                          "certificate's key; password-based MAC is not accepted",
                          policy_rname(role));
    if (a->tls_must_be_signer && X509_cmp(id->tls_peer, id->signer) != 0)
        return policy_say(fail_info, DENY, err,
                          "the CMP signer certificate is not the TLS client certificate; role %s "
                          "requires them to be the same certificate",
                          policy_rname(role));
    if (id->signer == NULL) {
        if (pbm_accepted(role, id->pbm_ref))
            return 0;
        return policy_say(fail_info, DENY, err, "PBM reference %s is not accepted on role %s",
                          policy_shown(buf, id->pbm_ref, strlen(id->pbm_ref)), policy_rname(role));
    }
    if (role->store == NULL)
        return policy_say(fail_info, DENY, err,
                          "role %s accepts no signed requests (it names no trust); use PBM",
                          policy_rname(role));
    return check_subject(role, &a->signer_subjects, "signer_subjects", "CMP signer certificate",
                         X509_get_subject_name(id->signer), fail_info, err);
}

int gw_policy_authorize(const struct gw_role *role, const struct gw_identity *id, time_t now, int *fail_info,
                        char *err)
{
    int rc;

    err[0] = '\0';
    if (role == NULL || id == NULL)
        return policy_say(fail_info, DENY, err, "no role or identity to authorize");
    if ((rc = authorize_tls(role, id->tls_peer, now, fail_info, err)) != 0 ||
        (rc = authorize_cmp(role, id, fail_info, err)) != 0)
        return rc;
    *fail_info = 0;
    return 0;
}

/* ---- what a request may ask for ---- */

static int check_ip(const struct gw_role *role, const ASN1_OCTET_STRING *ip, int *fail_info, char *err)
{
    const struct gw_patterns *ps = &role->authz.ip_ranges;
    char text[INET6_ADDRSTRLEN], list[GW_ERR_LEN / 2];
    size_t i, n = (size_t)ip->length;
    int v6 = 0, v4 = 0, mapped;

    if (n != 4 && n != 16)
        return policy_say(fail_info, BADT, err, "subjectAltName IP address is malformed");
    /* ::ffff:a.b.c.d (RFC 4291 §2.5.5.2) is an IPv6 address to OpenSSL and a.b.c.d to Go's crypto/x509:
       both readings must be allowed, or "::/0" beside "10.0.0.0/8" would let any IPv4 address through */
    for (i = 0; i < ps->n && !v6; i++)
        v6 = gw_cidr_contains(ps->v[i], ip->data, n);
    mapped = n == 16 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)ip->data);
    for (i = 0; mapped && i < ps->n && !v4; i++)
        v4 = gw_cidr_contains(ps->v[i], ip->data + 12, 4);
    if (ps->n == 0 || (v6 && (!mapped || v4)))
        return 0;
    if (inet_ntop(n == 4 ? AF_INET : AF_INET6, ip->data, text, sizeof(text)) == NULL)
        memcpy(text, "?", 2);
    return policy_say(fail_info, BADT, err, "IP address %s is not allowed on role %s (allowed: %s%s)", text,
                      policy_rname(role), policy_join(list, sizeof(list), ps),
                      mapped ? "; an IPv4-mapped address as IPv4 too" : "");
}

static const struct {
    int gen_type;
    unsigned bit;
    const char *what;
    size_t off; /* of the struct gw_patterns in struct gw_authz */
    int fold;   /* DNS names compare case-insensitively (RFC 4343) */
} name_kinds[] = {
    {GEN_DNS, GW_SAN_DNS, "DNS name", offsetof(struct gw_authz, dns_names), 1},
    {GEN_URI, GW_SAN_URI, "URI", offsetof(struct gw_authz, uris), 0},
    {GEN_EMAIL, GW_SAN_EMAIL, "email address", offsetof(struct gw_authz, emails), 0},
};

/* policy_cn_copy: |gn| is a DNS name or email equal to a CN of |subject|: what Vault adds on its own. */
int policy_cn_copy(const X509_NAME *subject, const GENERAL_NAME *gn)
{
    int i = -1;

    if (subject == NULL || (gn->type != GEN_DNS && gn->type != GEN_EMAIL))
        return 0;
    while ((i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0) {
        const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));

        if (policy_eq_fold((const char *)ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn),
                           (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length))
            return 1;
    }
    return 0;
}

/*
 * check_wildcard: a '*' in a DNS name or common name asks for a wildcard certificate (RFC 6125
 * §6.4.3), good for every host it covers, so only a role that says so issues one (Vault's
 * allow_wildcard_certificates); and then only as a whole first label before one or more others
 * ("*.example.com"), the one form a request's DNS name may take (mappings/profile.c) and RFC 9525
 * §6.3 still lets clients match. Any '*' counts, whatever the case, trailing dot or A-label around it.
 */
static int check_wildcard(const struct gw_role *role, const char *what, const char *s, size_t len,
                          int *fail_info, char *err)
{
    char buf[SHOWN_LEN];

    if (memchr(s, '*', len) == NULL)
        return 0;
    if (!role->allow_wildcard_certificates)
        return policy_say(
            fail_info, BADT, err,
            "%s %s is a wildcard, which role %s does not issue (allow_wildcard_certificates): ask "
            "for each host's own name",
            what, policy_shown(buf, s, len), policy_rname(role));
    if (len < 3 || s[0] != '*' || s[1] != '.' || memchr(s + 1, '*', len - 1) != NULL)
        return policy_say(
            fail_info, BADT, err,
            "%s %s has a '*' that is not its whole first label: a wildcard name is \"*.\" and a "
            "domain, as in *.example.com",
            what, policy_shown(buf, s, len));
    return 0;
}

/*
 * check_san: the type must be one the role allows (a DNS/email copy of the CN is exempt when
 * |cn_source| is given: Vault adds it unless exclude_cn_from_sans), the value one of its patterns.
 */
static int check_san(const struct gw_role *role, const GENERAL_NAME *gn, const X509_NAME *cn_source,
                     int *fail_info, char *err)
{
    const struct gw_patterns *ps;
    char buf[SHOWN_LEN], list[GW_ERR_LEN / 2];
    size_t k;

    if (gn->type == GEN_IPADD) {
        if ((role->allowed_san_types & GW_SAN_IP) == 0)
            return policy_say(fail_info, BADT, err, "subjectAltName type ip is not allowed on role %s",
                              policy_rname(role));
        return check_ip(role, gn->d.iPAddress, fail_info, err);
    }
    for (k = 0; k < sizeof(name_kinds) / sizeof(name_kinds[0]); k++) {
        if (name_kinds[k].gen_type == gn->type)
            break;
    }
    if (k == sizeof(name_kinds) / sizeof(name_kinds[0]))
        return policy_say(fail_info, BADT, err, "a subjectAltName of this type is not allowed on role %s",
                          policy_rname(role));
    if ((role->allowed_san_types & name_kinds[k].bit) == 0 && !policy_cn_copy(cn_source, gn))
        return policy_say(fail_info, BADT, err, "subjectAltName type %s is not allowed on role %s",
                          name_kinds[k].what, policy_rname(role));
    if (gn->type == GEN_DNS && check_wildcard(role, name_kinds[k].what, (const char *)gn->d.ia5->data,
                                              (size_t)gn->d.ia5->length, fail_info, err) != 0)
        return GW_ERR_POLICY;
    ps = (const struct gw_patterns *)((const char *)&role->authz + name_kinds[k].off);
    if (ps->n == 0 ||
        match_any(ps, (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length, name_kinds[k].fold))
        return 0;
    return policy_say(fail_info, BADT, err, "%s %s is not allowed on role %s (allowed: %s)",
                      name_kinds[k].what,
                      policy_shown(buf, (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length),
                      policy_rname(role), policy_join(list, sizeof(list), ps));
}

/* policy_entry_utf8 returns the |i|th entry of |name| as UTF-8 (OPENSSL_free) or NULL; |*len| its length. */
char *policy_entry_utf8(const X509_NAME *name, int i, size_t *len)
{
    unsigned char *s = NULL;
    int n = ASN1_STRING_to_UTF8(&s, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));

    *len = n > 0 ? (size_t)n : 0;
    if (n < 0)
        return NULL;
    return (char *)s;
}

/*
 * policy_vault_hostname is Vault's hostnameRegex (builtin/logical/pki/cert_util.go) on ASCII: LDH labels
 * that neither start nor end with '-', one optional trailing dot. IA5 names need no IDNA step.
 */
int policy_vault_hostname(const char *s)
{
    size_t i, label = 0, n = strlen(s);

    if (n > 0 && s[n - 1] == '.')
        n--;
    for (i = 0; i < n; i++) {
        unsigned char c = fold_c(s[i], 1);

        if (c == '.' && label > 0 && s[i - 1] != '-') {
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && label > 0)))
            return 0;
        label++;
    }
    return label > 0 && s[n - 1] != '-';
}

/*
 * The subject's common names, or its emailAddress attributes (|nid|), against the role's patterns. Where
 * a certificate has no SAN of the type, OpenSSL's X509_check_email takes a subject emailAddress as its
 * email address (RFC 5280 §4.1.2.6 deprecates it) and X509_check_host a CN as its host name: so an
 * emailAddress is held to the role's email rules, refused where it allows no email, and without
 * allowed_common_names a CN that is a host name with a dot (or a wildcard) to allowed_dns_names.
 */
static int check_attrs(const struct gw_role *role, const X509_NAME *subject, int nid, int *fail_info,
                       char *err)
{
    const struct gw_authz *a = &role->authz;
    int email = nid == NID_pkcs9_emailAddress, host = !email && a->common_names.n == 0, i = -1, rc;
    const struct gw_patterns *ps = email ? &a->emails : host ? &a->dns_names : &a->common_names;
    const char *what = email ? "subject emailAddress" : host ? "host name in the common name" : "common name";
    char buf[SHOWN_LEN], list[GW_ERR_LEN / 2], *v;
    size_t len;

    if (subject == NULL)
        return 0;
    while ((i = X509_NAME_get_index_by_NID(subject, nid, i)) >= 0) {
        if (email && (role->allowed_san_types & GW_SAN_EMAIL) == 0)
            return policy_say(fail_info, BADT, err,
                              "the subject holds an emailAddress, which role %s does not allow",
                              policy_rname(role));
        if ((v = policy_entry_utf8(subject, i, &len)) == NULL)
            return policy_say(fail_info, BADT, err, "the %s cannot be decoded", what);
        rc = email ? 0 : check_wildcard(role, "common name", v, len, fail_info, err);
        if (rc == 0 && ps->n > 0 &&
            (!host ||
             (strchr(v, '.') != NULL && policy_vault_hostname(v + (strncmp(v, "*.", 2) == 0 ? 2 : 0)))) &&
            !match_any(ps, v, len, host))
            rc = policy_say(fail_info, BADT, err, "%s %s is not allowed on role %s (allowed: %s)", what,
                            policy_shown(buf, v, len), policy_rname(role),
                            policy_join(list, sizeof(list), ps));
        OPENSSL_free(v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int policy_check_names(const struct gw_role *role, const X509_NAME *subject, const GENERAL_NAMES *sans,
                       const X509_NAME *cn_source, int *fail_info, char *err)
{
    int i, rc;

    if ((rc = check_attrs(role, subject, NID_commonName, fail_info, err)) != 0 ||
        (rc = check_attrs(role, subject, NID_pkcs9_emailAddress, fail_info, err)) != 0)
        return rc;
    if (sk_GENERAL_NAME_num(sans) > GW_MAX_SANS)
        return policy_say(fail_info, BADT, err, "too many subjectAltName entries (%d; the limit is %d)",
                          sk_GENERAL_NAME_num(sans), GW_MAX_SANS);
    for (i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        if ((rc = check_san(role, sk_GENERAL_NAME_value(sans, i), cn_source, fail_info, err)) != 0)
            return rc;
    }
    return 0;
}

/* ---- keys ---- */

static const char *curve_name(int nid)
{
    const char *s = EC_curve_nid2nist(nid);

    return s != NULL ? s : OBJ_nid2sn(nid);
}

/* policy_key_name describes |pkey| the way allowed_key_types spells it: "rsa:2048", "ec:P-256", "ed25519". */
const char *policy_key_name(char buf[SHOWN_LEN], const EVP_PKEY *pkey)
{
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        snprintf(buf, SHOWN_LEN, "rsa:%d", EVP_PKEY_get_bits(pkey));
        break;
    case EVP_PKEY_EC:
        snprintf(buf, SHOWN_LEN, "ec:%s",
                 gw_x509_ec_curve(pkey) != NID_undef ? curve_name(gw_x509_ec_curve(pkey)) : "explicit");
        break;
    case EVP_PKEY_ED25519:
        return "ed25519";
    case EVP_PKEY_ED448:
        return "ed448";
    default:
        snprintf(buf, SHOWN_LEN, "%s", OBJ_nid2sn(EVP_PKEY_get_base_id(pkey)));
    }
    return buf;
}

static const struct gw_key_rule builtin_rules[] = {
    {EVP_PKEY_RSA, 2048, 0},         {EVP_PKEY_EC, 0, NID_X9_62_prime256v1},
    {EVP_PKEY_EC, 0, NID_secp384r1}, {EVP_PKEY_EC, 0, NID_secp521r1},
    {EVP_PKEY_ED25519, 0, 0},        {EVP_PKEY_ED448, 0, 0},
};

static int rule_match(const struct gw_key_rule *r, const EVP_PKEY *pkey)
{
    if (EVP_PKEY_get_base_id(pkey) != r->pkey_type)
        return 0;
    if (r->pkey_type == EVP_PKEY_RSA)
        return EVP_PKEY_get_bits(pkey) >= r->min_bits &&
               EVP_PKEY_get_bits(pkey) <= OPENSSL_RSA_MAX_MODULUS_BITS;
    if (r->pkey_type == EVP_PKEY_EC)
        return gw_x509_ec_curve(pkey) != NID_undef && gw_x509_ec_curve(pkey) == r->curve_nid;
    return 1;
}

/* rule_name spells |r| the way allowed_key_types does. */
static const char *rule_name(char buf[SHOWN_LEN], const struct gw_key_rule *r)
{
    switch (r->pkey_type) {
    case EVP_PKEY_RSA:
        snprintf(buf, SHOWN_LEN, "rsa:%d", r->min_bits);
        return buf;
    case EVP_PKEY_EC:
        snprintf(buf, SHOWN_LEN, "ec:%s", curve_name(r->curve_nid));
        return buf;
    case EVP_PKEY_ED25519:
        return "ed25519";
    default:
        return "ed448";
    }
}

static void rules_text(char *buf, size_t size, const struct gw_key_rule *rules, size_t n)
{
    char one[SHOWN_LEN];
    size_t i, off = 0;
    int w;

    buf[0] = '\0';
    for (i = 0; i < n; i++) {
        w = snprintf(buf + off, size - off, "%s%s", i > 0 ? ", " : "", rule_name(one, &rules[i]));
        if (w < 0 || (size_t)w >= size - off)
            break;
        off += (size_t)w;
    }
}

static int check_key(const struct gw_role *role, const EVP_PKEY *pkey, int *fail_info, char *err)
{
    const struct gw_key_rule *rules = role->authz.key_rules;
    size_t i, n = role->authz.n_key_rules;
    char buf[SHOWN_LEN], list[GW_ERR_LEN / 2];

    if (rules == NULL || n == 0) {
        rules = builtin_rules;
        n = sizeof(builtin_rules) / sizeof(builtin_rules[0]);
    }
    for (i = 0; i < n; i++) {
        if (rule_match(&rules[i], pkey))
            return 0;
    }
    rules_text(list, sizeof(list), rules, n);
    return policy_say(fail_info, BADT, err, "key %s is not allowed on role %s (allowed: %s)",
                      policy_key_name(buf, pkey), policy_rname(role), list);
}

int gw_policy_check_request(const struct gw_role *role, const struct gw_cert_plan *plan, int *fail_info,
                            char *err)
{
    int rc;

    err[0] = '\0';
    if (role == NULL || plan == NULL || plan->pubkey == NULL)
        return policy_say(fail_info, OSSL_CMP_PKIFAILUREINFO_badRequest, err,
                          "no role or certificate plan to check");
    /* read as the subject allow-lists read a signer's: else a client could ask for another role's OU */
    if (X509_NAME_entry_count(plan->subject) > 0 &&
        (rc = check_subject(role, &role->authz.subjects, "allowed_subjects", "requested", plan->subject,
                            fail_info, err)) != 0) {
        *fail_info = BADT;
        return rc;
    }
    if ((rc = policy_check_names(role, plan->subject, plan->sans, NULL, fail_info, err)) != 0 ||
        (rc = check_key(role, plan->pubkey, fail_info, err)) != 0)
        return rc;
    *fail_info = 0;
    return 0;
}

int gw_policy_check_names(const struct gw_role *role, X509 *cert, int *fail_info, char *err)
{
    int crit = -1, rc;
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);

    if (sans == NULL && crit != -1)
        return policy_say(fail_info, DENY, err, "its subjectAltName extension is malformed or repeated");
    rc = policy_check_names(role, X509_get_subject_name(cert), sans, X509_get_subject_name(cert), fail_info,
                            err);
    GENERAL_NAMES_free(sans);
    *fail_info = rc != 0 ? DENY : 0;
    return rc;
}

/* ---- durations and times in messages ---- */

const char *policy_dur(char buf[SHOWN_LEN], long long secs)
{
    if (secs >= 86400 && secs % 86400 == 0)
        snprintf(buf, SHOWN_LEN, "%lldd", secs / 86400);
    else if (secs >= 3600 && secs % 3600 == 0)
        snprintf(buf, SHOWN_LEN, "%lldh", secs / 3600);
    else
        snprintf(buf, SHOWN_LEN, "%llds", secs);
    return buf;
}

const char *policy_when(char buf[SHOWN_LEN], time_t t)
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(buf, SHOWN_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, SHOWN_LEN, "%lld", (long long)t);
    return buf;
}

/* ---- an upstream role's policy, with Vault's semantics ---- */

static int streq_fold(const char *a, const char *b)
{
    return policy_eq_fold(a, strlen(a), b, strlen(b));
}

/* dot_suffix: |name| ends in "." + |domain| (allow_subdomains). */
static int dot_suffix(const char *name, const char *domain)
{
    size_t n = strlen(name), d = strlen(domain);

    return n > d + 1 && name[n - d - 1] == '.' && policy_eq_fold(name + n - d, d, domain, d);
}

struct vault_name {
    const char *name;         /* as asked */
    const char *reduced;      /* without "local@" and without a wildcard first label */
    const char *email_domain; /* NULL unless an email address */
    int wildcard;
};

static int vault_domain_ok(const struct gw_role_policy *p, const struct vault_name *v)
{
    size_t i;

    for (i = 0; i < p->allowed_domains.n; i++) {
        const char *d = p->allowed_domains.v[i];

        if (d == NULL || d[0] == '\0')
            continue;
        if (p->allow_bare_domains &&
            (streq_fold(v->name, d) || (v->email_domain != NULL && streq_fold(v->email_domain, d))))
            return 1;
        if (p->allow_subdomains && (dot_suffix(v->reduced, d) || (v->wildcard && streq_fold(v->reduced, d))))
            return 1;
        if (p->allow_glob_domains && strchr(d, '*') != NULL &&
            policy_glob(d, strlen(d), v->name, strlen(v->name), 1))
            return 1;
    }
    return 0;
}

/*
 * vault_name_ok follows Vault's validateNames: enforce_hostnames applies even with allow_any_name;
 * a wildcard only with allow_wildcard_certificates, as (part of) the first label, never in an email.
 */
static int vault_name_ok(const struct gw_role_policy *p, const char *name)
{
    struct vault_name v = {name, name, NULL, 0};
    const char *at = strchr(name, '@'), *dot;

    if (at != NULL) {
        if (strchr(at + 1, '@') != NULL)
            return 0;
        v.reduced = v.email_domain = at + 1;
    }
    dot = strchr(v.reduced, '.');
    if (strchr(v.reduced, '*') != NULL) {
        if (dot == NULL || v.email_domain != NULL || strchr(dot, '*') != NULL || p->no_wildcards)
            return 0;
        v.wildcard = 1;
        v.reduced = dot + 1;
    }
    if (p->enforce_hostnames && !policy_vault_hostname(v.reduced))
        return 0;
    if (p->allow_any_name)
        return 1;
    if (p->allow_localhost && (streq_fold(v.reduced, "localhost") || streq_fold(v.reduced, "localdomain")))
        return 1;
    return vault_domain_ok(p, &v);
}

static const char *vault_rules(char *buf, size_t size, const struct gw_role_policy *p)
{
    char list[GW_ERR_LEN / 2];

    snprintf(
        buf, size, "allowed_domains: %s%s%s%s%s%s",
        p->allowed_domains.n > 0 ? policy_join(list, sizeof(list), &p->allowed_domains) : "none",
        p->allow_bare_domains ? "; allow_bare_domains" : "", p->allow_subdomains ? "; allow_subdomains" : "",
        p->allow_glob_domains ? "; allow_glob_domains" : "", p->allow_localhost ? "; allow_localhost" : "",
        p->enforce_hostnames ? "; enforce_hostnames" : "");
    return buf;
}

static int vault_check_name(const struct gw_role_policy *p, const char *s, size_t len, int *fail_info,
                            char *err)
{
    char buf[SHOWN_LEN], rules[GW_ERR_LEN];
    char *name = NULL;
    int ok;

    if (memchr(s, '\0', len) == NULL)
        name = OPENSSL_strndup(s, len);
    ok = name != NULL && vault_name_ok(p, name);
    OPENSSL_free(name);
    if (ok)
        return 0;
    return policy_say(fail_info, BADT, err, "name %s is not allowed by the upstream role (%s)",
                      policy_shown(buf, s, len), vault_rules(rules, sizeof(rules), p));
}

static int vault_check_san(const struct gw_role_policy *p, const GENERAL_NAME *gn, int *fail_info, char *err)
{
    switch (gn->type) {
    case GEN_DNS:
    case GEN_EMAIL:
        return vault_check_name(p, (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length, fail_info, err);
    case GEN_IPADD:
        if (p->allow_ip_sans)
            return 0;
        return policy_say(fail_info, BADT, err,
                          "IP subjectAltNames are not allowed by the upstream role "
                          "(allow_ip_sans is false)");
    case GEN_URI:
        return 0; /* Vault's allowed_uri_sans is not part of the role policy read */
    default:
        return policy_say(fail_info, BADT, err,
                          "a subjectAltName of this type is not allowed by the upstream role");
    }
}

static int vault_check_names(const struct gw_role_policy *p, const struct gw_cert_plan *plan, int *fail_info,
                             char *err)
{
    char *cn;
    size_t len;
    int i = -1, rc;

    while (plan->subject != NULL && (i = X509_NAME_get_index_by_NID(plan->subject, NID_commonName, i)) >= 0) {
        if ((cn = policy_entry_utf8(plan->subject, i, &len)) == NULL)
            return policy_say(fail_info, BADT, err, "the common name cannot be decoded");
        rc = vault_check_name(p, cn, len, fail_info, err);
        OPENSSL_free(cn);
        if (rc != 0)
            return rc;
    }
    for (i = 0; i < sk_GENERAL_NAME_num(plan->sans); i++) {
        if ((rc = vault_check_san(p, sk_GENERAL_NAME_value(plan->sans, i), fail_info, err)) != 0)
            return rc;
    }
    return 0;
}

static int ec_bits_curve(int bits)
{
    switch (bits) {
    case 224:
        return NID_secp224r1;
    case 256:
        return NID_X9_62_prime256v1;
    case 384:
        return NID_secp384r1;
    case 521:
        return NID_secp521r1;
    default:
        return NID_undef;
    }
}

/* vault_key_ok: Vault's key_type/key_bits: "any"; "rsa" with at least key_bits; "ec" whose key_bits
 * names the curve; "ed25519". key_bits 0 = Vault's choice, which the built-in rules stand for. */
static int vault_key_ok(const struct gw_role_policy *p, const EVP_PKEY *pkey)
{
    int base = EVP_PKEY_get_base_id(pkey), curve;

    if (strcmp(p->key_type, "any") == 0)
        return 1;
    if (strcmp(p->key_type, "rsa") == 0)
        return base == EVP_PKEY_RSA && EVP_PKEY_get_bits(pkey) >= (p->key_bits > 0 ? p->key_bits : 2048);
    if (strcmp(p->key_type, "ed25519") == 0)
        return base == EVP_PKEY_ED25519;
    if (strcmp(p->key_type, "ec") != 0 || base != EVP_PKEY_EC ||
        (curve = gw_x509_ec_curve(pkey)) == NID_undef)
        return 0;
    if (p->key_bits == 0)
        return curve == NID_X9_62_prime256v1 || curve == NID_secp384r1 || curve == NID_secp521r1;
    return curve == ec_bits_curve(p->key_bits);
}

int gw_policy_check_upstream_role(const struct gw_role_policy *p, const struct gw_cert_plan *plan, time_t now,
                                  int *fail_info, char *err)
{
    char b1[SHOWN_LEN], b2[SHOWN_LEN], b3[SHOWN_LEN];
    int rc;

    err[0] = '\0';
    if (p == NULL || plan == NULL || plan->pubkey == NULL)
        return policy_say(fail_info, OSSL_CMP_PKIFAILUREINFO_badRequest, err,
                          "no upstream role or plan to check");
    if ((rc = vault_check_names(p, plan, fail_info, err)) != 0)
        return rc;
    if (!vault_key_ok(p, plan->pubkey))
        return policy_say(fail_info, BADT, err,
                          "key %s is not allowed by the upstream role (key_type %.16s, key_bits %d)",
                          policy_key_name(b1, plan->pubkey), p->key_type, p->key_bits);
    if (p->max_ttl != 0 && plan->not_after - now > (time_t)p->max_ttl)
        return policy_say(fail_info, BADT, err,
                          "the validity asked for (until %s, %s) exceeds the upstream role's "
                          "max_ttl of %s; ask for a shorter one",
                          policy_when(b1, plan->not_after),
                          policy_dur(b2, (long long)(plan->not_after - now)), policy_dur(b3, p->max_ttl));
    *fail_info = 0;
    return 0;
}

/* ---- usages and extensions: what a CA puts into a certificate beyond the names ---- */

/* append adds |item| to the ", "-separated list in |buf|, ending it in "..." when it does not fit. */
static void append(char *buf, size_t size, const char *item)
{
    size_t off = strlen(buf);
    int n = snprintf(buf + off, size - off, "%s%s", off > 0 ? ", " : "", item);

    if ((n < 0 || (size_t)n >= size - off) && size > 4)
        memcpy(buf + size - 4, "...", 4);
}

/* The names of the KU_* bits |ku| in RFC 5280 §4.2.1.3 order, or "none". */
static const char *ku_list(char *buf, size_t size, unsigned ku)
{
    buf[0] = '\0';
    for (int n = 0; gw_ku_from_bit(n) != 0; n++) {
        if ((ku & gw_ku_from_bit(n)) != 0)
            append(buf, size, gw_ku_name(gw_ku_from_bit(n)));
    }
    return buf[0] != '\0' ? buf : "none";
}

/* The names of the enum gw_eku bits |eku|, then |other| (purposes no role can allow), or "none". */
static const char *eku_list(char *buf, size_t size, unsigned eku, const char *other)
{
    buf[0] = '\0';
    for (unsigned bit = 1; gw_eku_name(bit) != NULL; bit <<= 1) {
        if ((eku & bit) != 0)
            append(buf, size, gw_eku_name(bit));
    }
    if (other != NULL && other[0] != '\0')
        append(buf, size, other);
    return buf[0] != '\0' ? buf : "none";
}

/* oid_text: "nameConstraints (2.5.29.30)" for an OID OpenSSL knows, else the dotted form. */
static const char *oid_text(char buf[SHOWN_LEN], const ASN1_OBJECT *obj)
{
    char num[SHOWN_LEN];
    int nid = OBJ_obj2nid(obj);

    if (OBJ_obj2txt(num, sizeof(num), obj, 1) <= 0)
        snprintf(num, sizeof(num), "?");
    if (nid != NID_undef)
        snprintf(buf, SHOWN_LEN, "%.40s (%.36s)", OBJ_nid2sn(nid), num);
    else
        snprintf(buf, SHOWN_LEN, "%s", num);
    return buf;
}

/*
 * The extensions an end-entity certificate of any role may carry (RFC 5280 §4.2); a role adds
 * more with "allowed_extensions". The four the role shapes are checked for their content too.
 */
static const int std_exts[] = {
    NID_subject_key_identifier,   /* RFC 5280 §4.2.1.2 */
    NID_authority_key_identifier, /* RFC 5280 §4.2.1.1 */
    NID_key_usage,                /* RFC 5280 §4.2.1.3: within the role's key_usage */
    NID_ext_key_usage,            /* RFC 5280 §4.2.1.12: within the role's ext_key_usage */
    NID_subject_alt_name,         /* RFC 5280 §4.2.1.6: within the role's names and the request */
    NID_basic_constraints,        /* RFC 5280 §4.2.1.9: cA FALSE, no pathLenConstraint */
    NID_crl_distribution_points,  /* RFC 5280 §4.2.1.13 */
    NID_info_access,              /* RFC 5280 §4.2.2.1 */
    NID_certificate_policies,     /* RFC 5280 §4.2.1.4 */
    NID_ct_precert_scts,          /* RFC 6962 §3.3: signed certificate timestamps */
};

/*
 * ext_allowed's list for a CSR the CA copies (sign-verbatim; std_exts is an issued certificate's):
 * what the role shapes, and a subjectKeyIdentifier. Not what a CA writes of its own: the client's
 * CRL, AIA or AKI would send relying parties to its servers or issuer, its policies or SCTs would
 * assert what nobody checked. allowed_extensions adds to either list.
 */
static const int csr_exts[] = {
    NID_subject_key_identifier, NID_key_usage, NID_ext_key_usage, NID_subject_alt_name, NID_basic_constraints,
};

static int ext_allowed(const struct gw_role *role, const ASN1_OBJECT *obj, int issued)
{
    const int *std = issued ? std_exts : csr_exts;
    size_t i, n = issued ? sizeof(std_exts) / sizeof(std_exts[0]) : sizeof(csr_exts) / sizeof(csr_exts[0]);
    int nid = OBJ_obj2nid(obj);

    for (i = 0; nid != NID_undef && i < n; i++) {
        if (std[i] == nid)
            return 1;
    }
    for (i = 0; i < role->n_allowed_exts; i++) {
        if (role->allowed_exts[i] != NULL && OBJ_cmp(role->allowed_exts[i], obj) == 0)
            return 1;
    }
    return 0;
}

/* What the usages of a set of extensions add up to. */
struct usages {
    unsigned ku, eku;
    int has_ku, has_eku;        /* the extension is there (it may name no usage of a role's) */
    char other[GW_ERR_LEN / 2]; /* extendedKeyUsage purposes no role can allow */
};

/* ku_of adds a keyUsage extension's bits to |u|; GW_ERR_POLICY (with |why|) for a bit past decipherOnly. */
static int ku_of(const struct gw_role *role, const ASN1_BIT_STRING *bs, struct usages *u, char *why)
{
    int fi;

    for (int n = 0; n < ASN1_STRING_length(bs) * 8; n++) {
        if (!ASN1_BIT_STRING_get_bit(bs, n))
            continue;
        if (gw_ku_from_bit(n) == 0)
            return policy_say(&fi, BADT, why,
                              "keyUsage bit %d is outside role %s (RFC 5280 §4.2.1.3 names bits 0 to 8)", n,
                              policy_rname(role));
        u->ku |= gw_ku_from_bit(n);
    }
    return 0;
}

static void eku_of(const EXTENDED_KEY_USAGE *eku, struct usages *u)
{
    char buf[SHOWN_LEN];
    unsigned bit;

    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
        const ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, i);

        if ((bit = gw_eku_from_nid(OBJ_obj2nid(o))) == 0)
            append(u->other, sizeof(u->other), oid_text(buf, o));
        u->eku |= bit;
    }
}

/* The extensions whose content a role shapes: they must decode. */
static int shaped(int nid)
{
    return nid == NID_key_usage || nid == NID_ext_key_usage || nid == NID_basic_constraints ||
           nid == NID_subject_alt_name;
}

/* decode returns the value of |ext| (free_value), NULL if it cannot be decoded; no OpenSSL error stays. */
static void *decode(X509_EXTENSION *ext)
{
    void *v;

    ERR_set_mark(); /* a failed decode is an answer here, not an error to report later */
    v = X509V3_EXT_d2i(ext);
    ERR_pop_to_mark();
    return v;
}

static void free_value(int nid, void *v)
{
    switch (nid) {
    case NID_key_usage:
        ASN1_BIT_STRING_free(v);
        break;
    case NID_ext_key_usage:
        EXTENDED_KEY_USAGE_free(v);
        break;
    case NID_basic_constraints:
        BASIC_CONSTRAINTS_free(v);
        break;
    default:
        GENERAL_NAMES_free(v);
    }
}

/*
 * policy_exts_malformed: more than GW_MAX_CERT_EXTS extensions (they are compared pairwise), one twice
 * (RFC 5280 §4.2), or a shaped one that does not decode. 0, or GW_ERR_POLICY with |why|.
 */
int policy_exts_malformed(const STACK_OF(X509_EXTENSION) *exts, char *why)
{
    char b1[SHOWN_LEN];
    int i, j, n = sk_X509_EXTENSION_num(exts), nid, fi;
    void *v;

    if (n > GW_MAX_CERT_EXTS)
        return policy_say(&fi, BADT, why, "%d extensions are more than this gateway checks (at most %d)", n,
                          GW_MAX_CERT_EXTS);
    for (i = 0; i < n; i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        const ASN1_OBJECT *obj = X509_EXTENSION_get_object(ext);

        for (j = 0; j < i; j++) {
            if (OBJ_cmp(obj, X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, j))) == 0)
                return policy_say(&fi, BADT, why,
                                  "extension %s appears twice (RFC 5280 §4.2 allows one of each)",
                                  oid_text(b1, obj));
        }
        if (!shaped(nid = OBJ_obj2nid(obj)))
            continue;
        if ((v = decode(ext)) == NULL)
            return policy_say(&fi, BADT, why, "its %s extension cannot be decoded", OBJ_nid2sn(nid));
        free_value(nid, v);
    }
    return 0;
}

/*
 * ext_content checks what a shaped |ext| says: keyUsage and extendedKeyUsage are collected into
 * |u|, basicConstraints must be an end entity's (RFC 5280 §4.2.1.9).
 */
static int ext_content(const struct gw_role *role, X509_EXTENSION *ext, struct usages *u, char *why)
{
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext)), fi, rc = 0;
    BASIC_CONSTRAINTS *bc;
    void *v;

    if (!shaped(nid))
        return 0;
    if ((v = decode(ext)) == NULL)
        return policy_say(&fi, BADT, why, "its %s extension cannot be decoded", OBJ_nid2sn(nid));
    if (nid == NID_key_usage) {
        u->has_ku = 1;
        rc = ku_of(role, v, u, why);
    } else if (nid == NID_ext_key_usage) {
        u->has_eku = 1;
        eku_of(v, u);
    } else if (nid == NID_basic_constraints && (bc = v)->ca)
        rc = policy_say(&fi, BADT, why,
                        "basicConstraints cA TRUE is outside role %s (end-entity certificates only)",
                        policy_rname(role));
    else if (nid == NID_basic_constraints && bc->pathlen != NULL)
        rc = policy_say(
            &fi, BADT, why,
            "basicConstraints with a pathLenConstraint is outside role %s (end-entity certificates "
            "only, RFC 5280 §4.2.1.9)",
            policy_rname(role));
    free_value(nid, v);
    return rc;
}

/*
 * policy_exts_outside checks well-formed |exts| (an issued certificate's, or those of a CSR the CA copies
 * into the certificate) against |role|: each in std_exts (for a CSR csr_exts) or the role's
 * allowed_extensions, none outside csr_exts a copy of one the CSR asked for (|asked|: a CA may write
 * its own CRL or policies, not copy the client's), keyUsage and extendedKeyUsage within the role's,
 * basicConstraints an end entity's. With |issued|, a keyUsage or extendedKeyUsage the role constrains
 * must be there (without one a certificate is good for any purpose, RFC 5280 §4.2.1.3, §4.2.1.12);
 * a CSR may lack them: the CA adds the plan's. 0, or GW_ERR_POLICY with |why| (GW_ERR_LEN).
 */
int policy_exts_outside(const struct gw_role *role, const STACK_OF(X509_EXTENSION) *exts,
                        const STACK_OF(X509_EXTENSION) *asked, int issued, char *why)
{
    struct usages u = {0, 0, 0, 0, ""};
    char b1[SHOWN_LEN], got[GW_ERR_LEN / 2], allowed[GW_ERR_LEN / 2];
    int i, fi, rc;

    for (i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        const ASN1_OBJECT *obj = X509_EXTENSION_get_object(ext);

        if (!ext_allowed(role, obj, issued))
            return policy_say(&fi, BADT, why,
                              "extension %s is outside role %s (not in its allowed_extensions)",
                              oid_text(b1, obj), policy_rname(role));
        if (!ext_allowed(role, obj, 0) && gw_x509_ext_in(asked, ext))
            return policy_say(&fi, BADT, why,
                              "the CA copied the CSR's %s, outside role %s (not in its allowed_extensions)",
                              oid_text(b1, obj), policy_rname(role));
        if ((rc = ext_content(role, ext, &u, why)) != 0)
            return rc;
    }
    if ((u.ku & ~role->key_usage) != 0)
        return policy_say(&fi, BADT, why, "keyUsage %s is outside role %s (allowed: %s)",
                          ku_list(got, sizeof(got), u.ku & ~role->key_usage), policy_rname(role),
                          ku_list(allowed, sizeof(allowed), role->key_usage));
    if ((u.eku & ~role->ext_key_usage) != 0 || u.other[0] != '\0')
        return policy_say(&fi, BADT, why, "extendedKeyUsage %s is outside role %s (allowed: %s)",
                          eku_list(got, sizeof(got), u.eku & ~role->ext_key_usage, u.other),
                          policy_rname(role), eku_list(allowed, sizeof(allowed), role->ext_key_usage, NULL));
    if (issued && role->key_usage != 0 && !u.has_ku)
        return policy_say(&fi, BADT, why,
                          "keyUsage any (the certificate has none) is outside role %s (allowed: %s)",
                          policy_rname(role), ku_list(allowed, sizeof(allowed), role->key_usage));
    if (issued && role->ext_key_usage != 0 && !u.has_eku)
        return policy_say(&fi, BADT, why,
                          "extendedKeyUsage any (the certificate has none) is outside role %s (allowed: %s)",
                          policy_rname(role), eku_list(allowed, sizeof(allowed), role->ext_key_usage, NULL));
    return 0;
}

int gw_policy_check_csr(const struct gw_role *role, const X509_REQ *csr, int *fail_info, char *err)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    char why[GW_ERR_LEN];
    int rc = 0;

    err[0] = '\0';
    if (role == NULL || csr == NULL)
        return policy_say(fail_info, OSSL_CMP_PKIFAILUREINFO_badRequest, err, "no role or CSR to check");
    if ((rc = gw_x509_req_extensions(csr, &exts, why)) != 0) /* GW_ERR_NOMEM: "out of memory" */
        return policy_say(fail_info, rc == GW_ERR_NOMEM ? OSSL_CMP_PKIFAILUREINFO_systemFailure : BADT, err,
                          "%s", why);
    if (policy_exts_malformed(exts, why) != 0 || policy_exts_outside(role, exts, NULL, 0, why) != 0)
        rc = policy_say(fail_info, BADT, err,
                        "%.170s; this route's CA copies the CSR's extensions: leave it out of the CSR", why);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (rc == 0)
        *fail_info = 0;
    return rc;
}

/* The Vault role settings that grant each extendedKeyUsage besides its ext_key_usage list. */
static const struct {
    unsigned eku;
    const char *field;
} eku_fields[] = {
    {GW_EKU_SERVER_AUTH, "server_flag"},
    {GW_EKU_CLIENT_AUTH, "client_flag"},
    {GW_EKU_CODE_SIGNING, "code_signing_flag"},
    {GW_EKU_EMAIL_PROTECTION, "email_protection_flag"},
};

int gw_policy_check_upstream_grants(const struct gw_role *role, const char *upstream_role,
                                    const struct gw_role_policy *p, int *fail_info, char *err)
{
    char what[GW_ERR_LEN / 2] = "", fields[GW_ERR_LEN / 2] = "", list[GW_ERR_LEN / 2];
    unsigned ku, eku;
    size_t i;

    err[0] = '\0';
    if (role == NULL || p == NULL)
        return policy_say(fail_info, OSSL_CMP_PKIFAILUREINFO_badRequest, err,
                          "no role or upstream role to check");
    ku = p->key_usage & ~role->key_usage;
    eku = p->ext_key_usage & ~role->ext_key_usage;
    if (ku == 0 && eku == 0 && p->other_eku[0] == '\0') {
        *fail_info = 0;
        return 0;
    }
    if (ku != 0) {
        snprintf(what, sizeof(what), "keyUsage %s", ku_list(list, sizeof(list), ku));
        append(fields, sizeof(fields), "key_usage");
    }
    if (eku != 0 || p->other_eku[0] != '\0') {
        snprintf(what + strlen(what), sizeof(what) - strlen(what), "%sextendedKeyUsage %s",
                 ku != 0 ? " and " : "", eku_list(list, sizeof(list), eku, p->other_eku));
        for (i = 0; i < sizeof(eku_fields) / sizeof(eku_fields[0]); i++) {
            if ((eku & eku_fields[i].eku) != 0)
                append(fields, sizeof(fields), eku_fields[i].field);
        }
        append(fields, sizeof(fields), "ext_key_usage");
        if (p->other_eku[0] >= '0' && p->other_eku[0] <= '9')
            append(fields, sizeof(fields), "ext_key_usage_oids");
    }
    /* the client can change nothing: the operator must narrow one of the two roles */
    return policy_say(
        fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail, err,
        "upstream role %.64s grants %s, which role %s does not allow; restrict the Vault role (%s)",
        upstream_role != NULL ? upstream_role : "?", what, policy_rname(role), fields);
}

/* ---- what an upstream returned ---- */

static enum gw_issued_verdict issued_bad(const struct gw_role *role, const struct gw_cert_plan *plan,
                                         X509 *cert, STACK_OF(X509) *chain, X509_STORE *store, time_t now,
                                         STACK_OF(X509) **path, char *err)
{
    EVP_PKEY *pk = X509_get0_pubkey(cert);
    char why[GW_ERR_LEN];
    int code, depth;

    if (pk == NULL || plan->pubkey == NULL || EVP_PKEY_eq(pk, plan->pubkey) != 1) {
        snprintf(err, GW_ERR_LEN,
                 "the upstream returned a certificate for another public key than requested");
        return GW_ISSUED_BAD;
    }
    if (store == NULL) {
        snprintf(err, GW_ERR_LEN, "upstream %s has no issuer_ca to check its certificates against",
                 role->upstream_name != NULL ? role->upstream_name : "?");
        return GW_ISSUED_BAD;
    }
    /* before the chain: OpenSSL reads a repeated or undecodable extension as no issuer found */
    if (policy_exts_malformed(X509_get0_extensions(cert), why) != 0) {
        snprintf(err, GW_ERR_LEN, "the certificate upstream %s returned is malformed: %.170s",
                 role->upstream_name != NULL ? role->upstream_name : "?", why);
        return GW_ISSUED_BAD;
    }
    if (!policy_verify(store, cert, chain, now, 0, 1, &code, &depth, path)) {
        snprintf(err, GW_ERR_LEN, "the certificate upstream %s returned %s (issuer_ca)",
                 role->upstream_name != NULL ? role->upstream_name : "?", policy_verify_why(code, depth));
        return GW_ISSUED_BAD;
    }
    return GW_ISSUED_OK;
}

/* issued_ca: basicConstraints cA TRUE (or the extension twice or malformed), keyCertSign or cRLSign. */
static const char *issued_ca(X509 *cert)
{
    BASIC_CONSTRAINTS *bc;
    int crit = -1, ca;

    bc = X509_get_ext_d2i(cert, NID_basic_constraints, &crit, NULL);
    ca = (bc != NULL && bc->ca) || (bc == NULL && crit != -1);
    BASIC_CONSTRAINTS_free(bc);
    if (ca)
        return "a CA certificate (basicConstraints cA TRUE)";
    if ((X509_get_extension_flags(cert) & EXFLAG_KUSAGE) != 0 &&
        (X509_get_key_usage(cert) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != 0)
        return "a certificate with keyCertSign or cRLSign";
    return NULL;
}

/*
 * entry_same: the same attribute type and the same value as text, whatever string type carries it
 * (cfssl and Vault write PrintableString what was asked as UTF8String). Case and spaces count: a
 * relying party may compare names byte for byte, so "O=VENDOR" is not the "O=Vendor" that was asked.
 */
static int entry_same(const X509_NAME_ENTRY *a, const X509_NAME_ENTRY *b)
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

enum subject_fit {
    SUBJ_SAME,    /* the planned subject */
    SUBJ_REDUCED, /* planned attributes only, each once: some left out, reordered or regrouped */
    SUBJ_OTHER,   /* an attribute or a value the plan does not have */
};

/*
 * subject_fit compares the subject |got| of an issued certificate with the planned one |want|, what
 * the gateway asked the CA for. A reduced subject is one the requester could have asked for itself
 * (the role checks the CNs, and those of |got| are some of the plan's), so it is a change the role
 * can grant; anything else names the holder as the request did not, and the role never checked it.
 */
static enum subject_fit subject_fit(const X509_NAME *want, const X509_NAME *got)
{
    int nw = X509_NAME_entry_count(want), ng = X509_NAME_entry_count(got), i, j, same = nw == ng;
    unsigned char used[GW_MAX_SUBJECT_ATTRS] = {0};

    for (i = 0; same && i < ng; i++)
        same = entry_same(X509_NAME_get_entry(want, i), X509_NAME_get_entry(got, i));
    if (same && X509_NAME_cmp(want, got) == 0) /* also the same grouping into RDNs */
        return SUBJ_SAME;
    if (ng > nw || nw > GW_MAX_SUBJECT_ATTRS)
        return SUBJ_OTHER;
    for (i = 0; i < ng; i++) {
        for (j = 0; j < nw; j++) {
            if (!used[j] && entry_same(X509_NAME_get_entry(want, j), X509_NAME_get_entry(got, i)))
                break;
        }
        if (j == nw)
            return SUBJ_OTHER;
        used[j] = 1;
    }
    return SUBJ_REDUCED;
}

static int san_in(const GENERAL_NAMES *set, const GENERAL_NAME *gn)
{
    int i;

    for (i = 0; i < sk_GENERAL_NAME_num(set); i++) {
        if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(set, i), (GENERAL_NAME *)gn) == 0)
            return 1;
    }
    return 0;
}

/* policy_san_text describes |gn| for a message: "DNS name a.example.com", "IP address 10.0.0.1". */
const char *policy_san_text(char buf[GW_ERR_LEN / 2], const GENERAL_NAME *gn)
{
    char b[SHOWN_LEN], ip[INET6_ADDRSTRLEN];
    size_t k;

    if (gn->type == GEN_IPADD) {
        int n = gn->d.iPAddress->length;

        if ((n != 4 && n != 16) ||
            inet_ntop(n == 4 ? AF_INET : AF_INET6, gn->d.iPAddress->data, ip, sizeof(ip)) == NULL)
            memcpy(ip, "?", 2);
        snprintf(buf, GW_ERR_LEN / 2, "IP address %s", ip);
        return buf;
    }
    for (k = 0; k < sizeof(name_kinds) / sizeof(name_kinds[0]); k++) {
        if (name_kinds[k].gen_type == gn->type) {
            snprintf(buf, GW_ERR_LEN / 2, "%s %s", name_kinds[k].what,
                     policy_shown(b, (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length));
            return buf;
        }
    }
    snprintf(buf, GW_ERR_LEN / 2, "a subjectAltName of another type");
    return buf;
}

/*
 * san_added finds a name in |got| the plan does not have and that is no copy of a planned CN (Vault
 * adds that unless exclude_cn_from_sans; issued_modified judges it): a name the requester did not
 * ask for and may not have, even if the role's patterns allow it. Only the plan's CNs count: a CN
 * the CA made up would otherwise bring its own name past the check.
 */
static const GENERAL_NAME *san_added(const struct gw_cert_plan *plan, const GENERAL_NAMES *got)
{
    int i;

    for (i = 0; i < sk_GENERAL_NAME_num(got); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(got, i);

        if (!san_in(plan->sans, gn) && !policy_cn_copy(plan->subject, gn))
            return gn;
    }
    return NULL;
}

/*
 * subject_outside: a subject other than the planned one or a reduction of it (subject_fit), or
 * reduced to nothing where the role requires a subject. Returns NULL, or the reason, also in |err|.
 */
static const char *subject_outside(const struct gw_role *role, const struct gw_cert_plan *plan,
                                   const X509_NAME *got, char *err)
{
    char b1[SHOWN_LEN];
    char *line;

    if (plan->subject == NULL)
        return NULL; /* gw_cert_plan_make always sets one */
    switch (subject_fit(plan->subject, got)) {
    case SUBJ_SAME:
        return NULL;
    case SUBJ_REDUCED:
        if (X509_NAME_entry_count(got) > 0 || !role->require_subject)
            return NULL;
        snprintf(err, GW_ERR_LEN, "the CA left the subject empty, which role %s requires",
                 policy_rname(role));
        return err;
    default:
        line = X509_NAME_oneline(got, NULL, 0);
        snprintf(err, GW_ERR_LEN, "the CA changed the subject to %s, which the request did not ask for",
                 line != NULL ? policy_shown(b1, line, strlen(line)) : "?");
        OPENSSL_free(line);
        return err;
    }
}

static enum gw_issued_verdict issued_outside(const struct gw_role *role, const struct gw_cert_plan *plan,
                                             X509 *cert, time_t now, char *err)
{
    time_t max_ttl = role->max_ttl != 0 ? (time_t)role->max_ttl : GW_DEFAULT_MAX_TTL, na = 0, nb = 0;
    char why[GW_ERR_LEN], b1[SHOWN_LEN], b2[SHOWN_LEN], name[GW_ERR_LEN / 2];
    const GENERAL_NAME *added = NULL;
    const char *what;
    GENERAL_NAMES *sans;
    int crit = -1, fi, rc;

    if ((what = issued_ca(cert)) != NULL) {
        snprintf(err, GW_ERR_LEN, "the upstream returned %s; role %s issues end-entity certificates only",
                 what, policy_rname(role));
        return GW_ISSUED_OUTSIDE_POLICY;
    }
    if (policy_exts_outside(role, X509_get0_extensions(cert), plan->csr_exts, 1, why) != 0) {
        snprintf(err, GW_ERR_LEN, "%s", why);
        return GW_ISSUED_OUTSIDE_POLICY;
    }
    if ((what = subject_outside(role, plan, X509_get_subject_name(cert), err)) != NULL)
        return GW_ISSUED_OUTSIDE_POLICY;
    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    if (sans == NULL && crit != -1)
        rc = policy_say(&fi, BADT, why, "its subjectAltName extension is malformed or repeated");
    else
        rc = policy_check_names(role, X509_get_subject_name(cert), sans, plan->subject, &fi, why);
    if (rc == 0 && (added = san_added(plan, sans)) != NULL)
        policy_san_text(name, added);
    GENERAL_NAMES_free(sans);
    if (rc != 0) {
        snprintf(err, GW_ERR_LEN, "the upstream's certificate is outside role policy: %.200s", why);
        return GW_ISSUED_OUTSIDE_POLICY;
    }
    if (added != NULL) {
        snprintf(err, GW_ERR_LEN, "the CA added %s, which the request did not ask for", name);
        return GW_ISSUED_OUTSIDE_POLICY;
    }
    if (gw_asn1_time(X509_get0_notAfter(cert), &na) != 0 || na > now + max_ttl + GW_ISSUED_TTL_SLACK) {
        snprintf(err, GW_ERR_LEN,
                 "the upstream's certificate is valid until %s, beyond role %s's max_ttl of %s",
                 policy_when(b1, na), policy_rname(role), policy_dur(b2, max_ttl));
        return GW_ISSUED_OUTSIDE_POLICY;
    }
    if (gw_asn1_time(X509_get0_notBefore(cert), &nb) != 0 ||
        nb < plan->not_before - GW_ISSUED_BACKDATE_SLACK) {
        snprintf(err, GW_ERR_LEN, "the upstream backdated the certificate to %s (planned: %s)",
                 policy_when(b1, nb), policy_when(b2, plan->not_before));
        return GW_ISSUED_OUTSIDE_POLICY;
    }
    return GW_ISSUED_OK;
}

/* sans_same compares as sets (order is no change); a copy of the CN the upstream added is tolerated
 * unless the role asked it not to (exclude_cn_from_sans). */
static int sans_same(const struct gw_role *role, const struct gw_cert_plan *plan, const GENERAL_NAMES *got)
{
    int i;

    for (i = 0; i < sk_GENERAL_NAME_num(plan->sans); i++) {
        if (!san_in(got, sk_GENERAL_NAME_value(plan->sans, i)))
            return 0;
    }
    for (i = 0; i < sk_GENERAL_NAME_num(got); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(got, i);

        if (!san_in(plan->sans, gn) && (role->exclude_cn_from_sans || !policy_cn_copy(plan->subject, gn)))
            return 0;
    }
    return 1;
}

static enum gw_issued_verdict issued_modified(const struct gw_role *role, const struct gw_cert_plan *plan,
                                              X509 *cert, char *err)
{
    char b1[SHOWN_LEN], b2[SHOWN_LEN];
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int same = sans_same(role, plan, sans);
    char *line;
    time_t na = 0;

    GENERAL_NAMES_free(sans);
    /* issued_outside refused any other change of the subject */
    if (plan->subject != NULL && subject_fit(plan->subject, X509_get_subject_name(cert)) != SUBJ_SAME) {
        line = X509_NAME_oneline(X509_get_subject_name(cert), NULL, 0);
        snprintf(err, GW_ERR_LEN, "the upstream left out or reordered subject attributes: %s",
                 line != NULL ? policy_shown(b1, line, strlen(line)) : "?");
        OPENSSL_free(line);
        return GW_ISSUED_MODIFIED;
    }
    if (!same) {
        snprintf(err, GW_ERR_LEN, "the upstream changed the subjectAltNames");
        return GW_ISSUED_MODIFIED;
    }
    if (gw_asn1_time(X509_get0_notAfter(cert), &na) == 0 && na < plan->not_after - GW_ISSUED_SHORTEN_SLACK) {
        snprintf(err, GW_ERR_LEN, "the upstream shortened the validity to %s (planned: %s)",
                 policy_when(b1, na), policy_when(b2, plan->not_after));
        return GW_ISSUED_MODIFIED;
    }
    return GW_ISSUED_OK;
}

enum gw_issued_verdict gw_policy_check_issued(const struct gw_role *role, const struct gw_cert_plan *plan,
                                              X509 *cert, STACK_OF(X509) *chain, X509_STORE *issuer_store,
                                              time_t now, STACK_OF(X509) **path, char *err)
{
    STACK_OF(X509) *found = NULL;
    enum gw_issued_verdict v;

    err[0] = '\0';
    if (path != NULL)
        *path = NULL;
    if (role == NULL || plan == NULL || cert == NULL) {
        snprintf(err, GW_ERR_LEN, "the upstream returned no certificate");
        return GW_ISSUED_BAD;
    }
    if ((v = issued_bad(role, plan, cert, chain, issuer_store, now, &found, err)) == GW_ISSUED_OK &&
        (v = issued_outside(role, plan, cert, now, err)) == GW_ISSUED_OK)
        v = issued_modified(role, plan, cert, err);
    if (path != NULL && (v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED)) {
        X509_free(sk_X509_shift(found));                           /* the certificate itself */
        gw_x509_chain_extend(found, chain, GW_MAX_UPSTREAM_CHAIN); /* the CAs above issuer_ca */
        *path = found;
        found = NULL;
    }
    sk_X509_pop_free(found, X509_free);
    return v;
}

void gw_role_policy_cleanup(struct gw_role_policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->allowed_domains.n; i++)
        free(p->allowed_domains.v[i]);
    free(p->allowed_domains.v);
    memset(p, 0, sizeof(*p));
}
