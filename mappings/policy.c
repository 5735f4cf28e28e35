/*
 * Authorization and the checks of a request's names and key (mappings/policy.h), and what the other
 * policy checks share (policy_local.h: messages, name patterns, chain verification): an upstream
 * role's rules are in policy_vault.c, usages and extensions in policy_exts.c, the verdict on a
 * returned certificate in policy_issued.c. Pure: no I/O.
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
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include "base/cidr.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/names.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/policy_local.h"
#include "mappings/subject.h"

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

/*
 * How a pattern reads one kind of name: the bytes that end a segment, which a '*' never matches, and
 * whether case folds. A URI's '*' stays inside one host label or path segment: a URL parser ends the host
 * at a '?', '#', backslash (WHATWG reads it as '/') or ':' (a port), takes it from after a '@' (userinfo)
 * and decodes a '%' (RFC 3986 §3.2): a '*' for the first host label of https URIs under example.com must
 * not admit "https://evil#.example.com/x", whose host is "evil", nor one for a path segment the two
 * segments of "spiffe://x/ns/a%2Fb". An email's '*' stops at '@': mailers differ on which of two ends the
 * local part, so "*@example.com" must not admit "a@evil@example.com" (a request may hold only one '@',
 * but a TLS client's certificate, a subject emailAddress or what an upstream returns may hold more), and
 * matches only an address: "**@example.com", whose "**" matches nothing too, must not admit "@example.com".
 */
struct pat_syntax {
    const char *seps;
    int fold;
    int address; /* the name must be an email address (gw_subject_email_flaw), or it matches nothing */
};

static const struct pat_syntax pat_text = {"./=", 0, 0};
static const struct pat_syntax pat_host = {"./=", 1, 0}; /* DNS names fold case (RFC 4343) */
static const struct pat_syntax pat_uri = {"./=?#@%\\:", 0, 0};
static const struct pat_syntax pat_email = {"./=@", 0, 1};

static int is_sep(const struct pat_syntax *syn, char c)
{
    return memchr(syn->seps, c, strlen(syn->seps)) != NULL;
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

static size_t seg_len(const struct pat_syntax *syn, const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && !is_sep(syn, s[i]))
        i++;
    return i;
}

/*
 * pattern_match_n: '*' never crosses a separator of |syn| ('.', '/', '=', and a URI's others), so the
 * separators of |pat| (|pn| bytes) and |s| must line up one for one and each segment is a plain glob. A
 * segment that is a lone '*' ("*.example.com", "/CN=*") stands for one non-empty label or value.
 */
static int pattern_match_n(const char *pat, size_t pn, const char *s, size_t len,
                           const struct pat_syntax *syn)
{
    size_t pi = 0, si = 0, pl, sl;

    for (;;) {
        pl = seg_len(syn, pat + pi, pn - pi);
        sl = seg_len(syn, s + si, len - si);
        if (pl == 1 && pat[pi] == '*' && sl == 0)
            return 0;
        if (!policy_glob(pat + pi, pl, s + si, sl, syn->fold))
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

static int pattern_match(const char *pat, const char *s, size_t len, const struct pat_syntax *syn)
{
    if (pat == NULL || s == NULL || memchr(s, '\0', len) != NULL)
        return 0;
    if (syn->address && gw_subject_email_flaw(s, len) != GW_EMAIL_OK)
        return 0;
    return pattern_match_n(pat, strlen(pat), s, len, syn);
}

int gw_pattern_match(const char *pat, const char *s, size_t len)
{
    return pattern_match(pat, s, len, &pat_text);
}

/*
 * One attribute ("CN=dev-1") against one of a pattern: an email address value (emailAddress, mail) is read
 * as an email pattern reads one ('*' stops at '@' too), and one that is no address matches nothing.
 */
static int attr_match(const char *pat, size_t pn, const char *s, size_t sn)
{
    if (!gw_subject_attr_is_email(s, sn))
        return pattern_match_n(pat, pn, s, sn, &pat_text);
    return gw_subject_attr_email_flaw(s, sn) == GW_EMAIL_OK && pattern_match_n(pat, pn, s, sn, &pat_email);
}

/*
 * Whether pattern attribute |p| can take a subject attribute of |ok| (row |p|): a free one, or one whose
 * holder takes another (Kuhn's augmenting path; |owner| says which pattern attribute holds each).
 */
static int pair_off(const unsigned char ok[][GW_MAX_RDN_ATTRS], int k, int p, int *owner, unsigned char *seen)
{
    for (int i = 0; i < k; i++) {
        if (!ok[p][i] || seen[i])
            continue;
        seen[i] = 1;
        if (owner[i] < 0 || pair_off(ok, k, owner[i], owner, seen)) {
            owner[i] = p;
            return 1;
        }
    }
    return 0;
}

/*
 * One RDN of a pattern against one of a subject: the same number of attributes, paired off one for one in
 * any order, each pair matching (attr_match). An RDN is a SET, which DER sorts by encoding (the shorter
 * first): "-subject /CN=dev-1+OU=ops" travels, and prints, as OU=ops+CN=dev-1. O(k^2) attribute matches.
 */
static int rdn_match(const char *pat, size_t pn, const char *s, size_t sn)
{
    struct gw_subject_attr pa[GW_MAX_RDN_ATTRS], sa[GW_MAX_RDN_ATTRS];
    unsigned char ok[GW_MAX_RDN_ATTRS][GW_MAX_RDN_ATTRS], seen[GW_MAX_RDN_ATTRS];
    int owner[GW_MAX_RDN_ATTRS], k = gw_subject_rdn_attrs(pat, pn, pa, GW_MAX_RDN_ATTRS);

    if (k < 0 || gw_subject_rdn_attrs(s, sn, sa, GW_MAX_RDN_ATTRS) != k)
        return 0;
    for (int p = 0; p < k; p++) {
        owner[p] = -1;
        for (int i = 0; i < k; i++)
            ok[p][i] = (unsigned char)attr_match(pat + pa[p].off, pa[p].len, s + sa[i].off, sa[i].len);
    }
    for (int p = 0; p < k; p++) {
        memset(seen, 0, sizeof(seen));
        if (!pair_off(ok, k, p, owner, seen))
            return 0;
    }
    return 1;
}

/*
 * gw_subject_match: the RDNs of |pat| and |s| line up one for one (each '/' the same), and so do the
 * attributes of each (rdn_match), so a '*' never reaches into another attribute.
 */
int gw_subject_match(const char *pat, const char *s, size_t len)
{
    size_t pi = 0, si = 0, pn, pl, sl;

    if (pat == NULL || s == NULL || memchr(s, '\0', len) != NULL)
        return 0;
    pn = strlen(pat);
    for (;;) {
        pl = gw_subject_rdn_len(pat + pi, pn - pi);
        sl = gw_subject_rdn_len(s + si, len - si);
        if (!rdn_match(pat + pi, pl, s + si, sl))
            return 0;
        pi += pl;
        si += sl;
        if (pi == pn || si == len)
            return pi == pn && si == len;
        pi++; /* both at a '/' */
        si++;
    }
}

static int match_any_subject(const struct gw_patterns *ps, const char *line)
{
    for (size_t i = 0; i < ps->n; i++) {
        if (gw_subject_match(ps->v[i], line, strlen(line)))
            return 1;
    }
    return 0;
}

static int match_any(const struct gw_patterns *ps, const char *s, size_t len, const struct pat_syntax *syn)
{
    size_t i;

    for (i = 0; i < ps->n; i++) {
        if (pattern_match(ps->v[i], s, len, syn))
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
    if (!match_any_subject(ps, line))
        rc = policy_say(fail_info, DENY, err, "%s subject %s is not allowed on role %s (allowed: %s)", who,
                        policy_shown(buf, line, strlen(line)), policy_rname(role),
                        policy_join(list, sizeof(list), ps));
    OPENSSL_free(line);
    return rc;
}

/* Read as the subject allow-lists read a signer's: else a client could ask for another role's OU. */
int policy_check_allowed_subject(const struct gw_role *role, const char *who, const X509_NAME *subject,
                                 int *fail_info, char *err)
{
    if (X509_NAME_entry_count(subject) == 0) /* left to require_subject */
        return 0;
    return check_subject(role, &role->authz.subjects, "allowed_subjects", who, subject, fail_info, err);
}

static const struct pat_syntax *san_syntax(int gen_type)
{
    return gen_type == GEN_DNS ? &pat_host : gen_type == GEN_URI ? &pat_uri : &pat_email;
}

/*
 * Whether TLS SAN |gn| matches pattern |pat| of tls_sans: one of its type (gw_role_tls_san_type), read as
 * policy_check_san reads it (DNS names fold case, a URI's '*' is one host label or path segment). An email
 * that is no address matches none (pat_email), as a subject's does (attr_match): mailers differ on which
 * '@' ends the local part, so "a@evil@example.com" may be mail for evil, and "@example.com" is no one's.
 */
static int tls_san_match(const char *pat, const GENERAL_NAME *gn)
{
    if (gw_role_tls_san_type(pat) != gn->type) /* so an IA5String: a DNS name, URI or email */
        return 0;
    return pattern_match(pat, (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length, san_syntax(gn->type));
}

/* TLS SANs: one DNS, URI or email name matching one pattern of its type authorizes (tls_san_match). */
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
            ok = tls_san_match(ps->v[k], gn);
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
    /* the security level (GW_ISSUED_AUTH_LEVEL): CA_MD_TOO_WEAK is any signature in the chain, the leaf's too
     */
    {X509_V_ERR_CA_MD_TOO_WEAK, "is signed with a hash under 112 bits of security (SHA-1, MD5)",
     "chains through a CA certificate signed with a hash under 112 bits of security (SHA-1, MD5)"},
    {X509_V_ERR_CA_KEY_TOO_SMALL, "chains to a CA key under 112 bits of security (RSA under 2048 bits)",
     "chains to a CA key under 112 bits of security (RSA under 2048 bits)"},
    {X509_V_ERR_EE_KEY_TOO_SMALL, "certifies a key under 112 bits of security (RSA under 2048 bits)",
     "certifies a key under 112 bits of security (RSA under 2048 bits)"},
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

const char *gw_policy_weak_why(int code, int depth)
{
    if (code != X509_V_ERR_CA_MD_TOO_WEAK && code != X509_V_ERR_CA_KEY_TOO_SMALL &&
        code != X509_V_ERR_EE_KEY_TOO_SMALL)
        return NULL;
    return policy_verify_why(code, depth);
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
 * come out as outside policy (revoked upstream), not as foreign (dropped and left valid); and it is
 * verified at GW_ISSUED_AUTH_LEVEL, which OpenSSL leaves unset (any hash, any key) outside TLS; a client's
 * certificate (tls_trust) at GW_SIGNER_AUTH_LEVEL, as a CMP signer's chain. Returns
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
    X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(ctx),
                                     issued ? GW_ISSUED_AUTH_LEVEL : GW_SIGNER_AUTH_LEVEL);
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

/* Always |rc|: a refusal of the authorization, named |code| for the log (gw_policy_authorize). */
static int refused(const char **why, const char *code, int rc)
{
    *why = code;
    return rc;
}

/*
 * authorize_tls: deny by default, so a role that constrains TLS client certificates in any way
 * (tls_trust, tls_subjects, tls_sans, tls_must_be_signer) refuses a connection without one, even
 * with "tls_client": "optional".
 */
static int authorize_tls(const struct gw_role *role, X509 *peer, time_t now, int *fail_info, char *err,
                         const char **why)
{
    const struct gw_authz *a = &role->authz;
    char buf[SHOWN_LEN];
    char *line;
    int code, depth, rc;

    if (peer == NULL) {
        if (!tls_constrained(a))
            return 0;
        return refused(why, "tls_required",
                       policy_say(fail_info, DENY, err,
                                  "role %s requires a TLS client certificate; connect with one",
                                  policy_rname(role)));
    }
    if (a->tls_store != NULL && !policy_verify(a->tls_store, peer, a->tls_untrusted, now,
                                               X509_PURPOSE_SSL_CLIENT, 0, &code, &depth, NULL)) {
        line = X509_NAME_oneline(X509_get_subject_name(peer), NULL, 0);
        rc = policy_say(fail_info, DENY, err, "TLS client certificate %s %s (tls_trust of role %s)",
                        line != NULL ? policy_shown(buf, line, strlen(line)) : "?",
                        policy_verify_why(code, depth), policy_rname(role));
        OPENSSL_free(line);
        return refused(why, "tls_trust", rc);
    }
    if ((rc = check_subject(role, &a->tls_subjects, "tls_subjects", "TLS client certificate",
                            X509_get_subject_name(peer), fail_info, err)) != 0)
        return refused(why, "tls_subject", rc);
    if ((rc = check_tls_sans(role, peer, fail_info, err)) != 0)
        return refused(why, "tls_san", rc);
    return 0;
}

/* An unprotected request, and a signed one on a role without trust, the engine refuses before this. */
static int authorize_cmp(const struct gw_role *role, const struct gw_identity *id, int *fail_info, char *err,
                         const char **why)
{
    const struct gw_authz *a = &role->authz;
    char buf[SHOWN_LEN];
    int rc;

    if (id->signer == NULL && id->pbm_ref == NULL)
        return refused(why, "unprotected",
                       policy_say(fail_info, DENY, err,
                                  "the request is not protected; role %s needs a signature or PBM",
                                  policy_rname(role)));
    if (a->tls_must_be_signer && id->signer == NULL)
        return refused(why, "tls_signer_pbm",
                       policy_say(fail_info, DENY, err,
                                  "role %s requires the CMP request to be signed with the TLS client "
                                  "certificate's key; password-based MAC is not accepted",
                                  policy_rname(role)));
    if (a->tls_must_be_signer && X509_cmp(id->tls_peer, id->signer) != 0)
        return refused(why, "tls_signer_other",
                       policy_say(fail_info, DENY, err,
                                  "the CMP signer certificate is not the TLS client certificate; role %s "
                                  "requires them to be the same certificate",
                                  policy_rname(role)));
    if (id->signer == NULL) {
        if (gw_names_has(role->pbm_refs, role->n_pbm, id->pbm_ref))
            return 0;
        return refused(why, "pbm_not_accepted",
                       policy_say(fail_info, DENY, err, "PBM reference %s is not accepted on role %s",
                                  policy_shown(buf, id->pbm_ref, strlen(id->pbm_ref)), policy_rname(role)));
    }
    if (role->store == NULL)
        return refused(why, "signature_not_accepted",
                       policy_say(fail_info, DENY, err,
                                  "role %s accepts no signed requests (it names no trust); use PBM",
                                  policy_rname(role)));
    if ((rc = check_subject(role, &a->signer_subjects, "signer_subjects", "CMP signer certificate",
                            X509_get_subject_name(id->signer), fail_info, err)) != 0)
        return refused(why, "signer_subject", rc);
    return 0;
}

int gw_policy_authorize(const struct gw_role *role, const struct gw_identity *id, time_t now, int *fail_info,
                        char *err, const char **code)
{
    int rc;

    err[0] = '\0';
    *code = NULL;
    if (role == NULL || id == NULL)
        return refused(code, "no_identity",
                       policy_say(fail_info, DENY, err, "no role or identity to authorize"));
    if ((rc = authorize_tls(role, id->tls_peer, now, fail_info, err, code)) != 0 ||
        (rc = authorize_cmp(role, id, fail_info, err, code)) != 0)
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
    const struct pat_syntax *syn;
} name_kinds[] = {
    {GEN_DNS, GW_SAN_DNS, "DNS name", offsetof(struct gw_authz, dns_names), &pat_host},
    {GEN_URI, GW_SAN_URI, "URI", offsetof(struct gw_authz, uris), &pat_uri},
    {GEN_EMAIL, GW_SAN_EMAIL, "email address", offsetof(struct gw_authz, emails), &pat_email},
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

/* What check_address says of each flaw of an email address (gw_subject_email_flaw). */
static const char *const email_flaws[] = {
    [GW_EMAIL_TWO_AT] = "holds more than one '@': mailers differ on which ends the local part",
    [GW_EMAIL_NO_AT] = "holds no '@': an email address is local-part@domain",
    [GW_EMAIL_NO_LOCAL] = "has nothing before its '@': an email address is local-part@domain",
    [GW_EMAIL_NO_DOMAIN] = "has nothing after its '@': an email address is local-part@domain",
};

/*
 * Email address |v| (|len| bytes, |kind| names it) is local-part@domain, one '@' (RFC 5280 §4.2.1.6),
 * whatever the patterns: "ceo@evil@bank.example" may be mail for evil, "ceo" or "ceo@" for a mailer's own.
 */
static int check_address(const char *kind, const char *v, size_t len, int *fail_info, char *err)
{
    enum gw_email_flaw flaw = gw_subject_email_flaw(v, len);
    char buf[SHOWN_LEN];

    return flaw == GW_EMAIL_OK ? 0
                               : policy_say(fail_info, BADT, err, "%s %s %s", kind, policy_shown(buf, v, len),
                                            email_flaws[flaw]);
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
 * policy_check_san: the type must be one the role allows, the value one of its patterns. A copy of a
 * common name is held to both like any other name: the role issues none of a type it does not allow
 * (gw_policy_check_cn_copy refuses the request, gw_policy_check_issued the certificate).
 */
int policy_check_san(const struct gw_role *role, const GENERAL_NAME *gn, int *fail_info, char *err)
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
    if ((role->allowed_san_types & name_kinds[k].bit) == 0)
        return policy_say(fail_info, BADT, err, "subjectAltName type %s is not allowed on role %s",
                          name_kinds[k].what, policy_rname(role));
    if (gn->type == GEN_DNS && check_wildcard(role, name_kinds[k].what, (const char *)gn->d.ia5->data,
                                              (size_t)gn->d.ia5->length, fail_info, err) != 0)
        return GW_ERR_POLICY;
    ps = (const struct gw_patterns *)((const char *)&role->authz + name_kinds[k].off);
    if (ps->n > 0 &&
        !match_any(ps, (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length, name_kinds[k].syn))
        return policy_say(fail_info, BADT, err, "%s %s is not allowed on role %s (allowed: %s)",
                          name_kinds[k].what,
                          policy_shown(buf, (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length),
                          policy_rname(role), policy_join(list, sizeof(list), ps));
    /* as a subject's (check_addresses): a request's is san_malformed already, not a CN the CA copies */
    return gn->type != GEN_EMAIL ? 0
                                 : check_address(name_kinds[k].what, (const char *)gn->d.ia5->data,
                                                 (size_t)gn->d.ia5->length, fail_info, err);
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
 * Whether common name |v| (|len| bytes, no control byte) is one X509_check_host compares with a host
 * name: it has a dot and no space. OpenSSL compares the bytes, so a '_' or a byte past ASCII in a label
 * is no way around allowed_dns_names.
 */
static int host_like(const char *v, size_t len)
{
    return memchr(v, '.', len) != NULL && memchr(v, ' ', len) == NULL;
}

/*
 * Whether common name |v| (|len| bytes) without a dot is a host name a client connects to ("vault",
 * "localhost", "db_1"): letters, digits, '-' and '_', or bytes past ASCII, which OpenSSL compares as
 * they are. "Device 17", "urn:x:y" or "alice@corp" is none: no URL has it as its host (RFC 3986 §3.2.2).
 */
static int bare_host(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = fold_c(v[i], 1);

        if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c < 0x80)
            return 0;
    }
    return len > 0;
}

/*
 * Whether X509_check_host reads the CN of a certificate of |role| with |sans| as a TLS server's host name:
 * it has no DNS SAN (with one, the DNS SANs alone), and its role grants serverAuth or no extendedKeyUsage
 * at all, which is any purpose (RFC 5280 §4.2.1.12; no role grants anyExtendedKeyUsage, and a certificate
 * that comes back with it is refused).
 */
static int cn_is_server_host(const struct gw_role *role, const GENERAL_NAMES *sans)
{
    if (role->ext_key_usage != 0 && (role->ext_key_usage & GW_EKU_SERVER_AUTH) == 0)
        return 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++)
        if (sk_GENERAL_NAME_value(sans, i)->type == GEN_DNS)
            return 0;
    return 1;
}

/*
 * A control byte has no place in a name, and a NUL ends it early for a relying party that reads it as a
 * C string: "www.bank.example\0.example.com" is www.bank.example there.
 */
int policy_has_control(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < ' ' || v[i] == 0x7f)
            return 1;
    return 0;
}

/*
 * The subject's common names, or its emailAddress or mail attributes (|nid|), against the role's patterns.
 * Where a certificate has no SAN of the type, OpenSSL's X509_check_email takes a subject emailAddress as its
 * email address (RFC 5280 §4.1.2.6 deprecates it) and X509_check_host a CN as its host name; LDAP
 * directories and mail software take a mail (rfc822Mailbox, RFC 4524 §2.16) as the holder's address: so
 * either address is held to the role's email rules, refused where it allows no email, and without
 * allowed_common_names a CN that is a host name to allowed_dns_names: one with a dot (or a wildcard), and
 * one without where |server| (cn_is_server_host): "vault" is the host of https://vault/ as much. Any of
 * them with a control byte is refused whatever the patterns (policy_has_control); an address that is none
 * (more than one '@', none, nothing on a side of it) is, after them, by check_addresses.
 */
static int check_attrs(const struct gw_role *role, const X509_NAME *subject, int nid, int server,
                       int *fail_info, char *err)
{
    const struct gw_authz *a = &role->authz;
    int mail = nid == NID_rfc822Mailbox, email = mail || nid == NID_pkcs9_emailAddress;
    int host = !email && a->common_names.n == 0, i = -1, rc;
    const struct gw_patterns *ps = email ? &a->emails : host ? &a->dns_names : &a->common_names;
    const struct pat_syntax *syn = email ? &pat_email : host ? &pat_host : &pat_text;
    const char *kind = mail ? "subject attribute mail" : email ? "subject emailAddress" : "common name";
    const char *what = host ? "host name in the common name" : kind;
    char buf[SHOWN_LEN], list[GW_ERR_LEN / 2], *v;
    size_t len;

    if (subject == NULL)
        return 0;
    while ((i = X509_NAME_get_index_by_NID(subject, nid, i)) >= 0) {
        if (email && (role->allowed_san_types & GW_SAN_EMAIL) == 0)
            return policy_say(fail_info, BADT, err, "the subject holds %s, which role %s does not allow",
                              mail ? "a mail attribute" : "an emailAddress", policy_rname(role));
        if ((v = policy_entry_utf8(subject, i, &len)) == NULL)
            return policy_say(fail_info, BADT, err, "the %s cannot be decoded", what);
        if (policy_has_control(v, len))
            rc = policy_say(fail_info, BADT, err, "%s %s holds a control character, which no name may hold",
                            kind, policy_shown(buf, v, len));
        else
            rc = email ? 0 : check_wildcard(role, kind, v, len, fail_info, err);
        if (rc == 0 && ps->n > 0 && (!host || host_like(v, len) || (server && bare_host(v, len))) &&
            !match_any(ps, v, len, syn))
            rc = policy_say(fail_info, BADT, err, "%s %s is not allowed on role %s (allowed: %s)", what,
                            policy_shown(buf, v, len), policy_rname(role),
                            policy_join(list, sizeof(list), ps));
        OPENSSL_free(v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * Every other attribute of a requested |subject| (O, OU, UID, serialNumber...): no control byte either
 * (policy_has_control), though no pattern may look at it. Not asked of a certificate issued already, which an
 * RA may still revoke.
 */
static int check_attr_bytes(const X509_NAME *subject, int *fail_info, char *err)
{
    char buf[SHOWN_LEN], *v;
    size_t len;
    int nid, rc = 0;

    for (int i = 0; rc == 0 && i < X509_NAME_entry_count(subject); i++) {
        nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(subject, i)));
        if (nid == NID_commonName || nid == NID_pkcs9_emailAddress || nid == NID_rfc822Mailbox)
            continue; /* check_attrs names them */
        if ((v = policy_entry_utf8(subject, i, &len)) == NULL)
            return policy_say(fail_info, BADT, err, "subject attribute %s cannot be decoded",
                              nid != NID_undef ? OBJ_nid2sn(nid) : "(unknown type)");
        if (policy_has_control(v, len))
            rc = policy_say(fail_info, BADT, err,
                            "subject attribute %s %s holds a control character, which no name may hold",
                            nid != NID_undef ? OBJ_nid2sn(nid) : "(unknown type)", policy_shown(buf, v, len));
        OPENSSL_free(v);
    }
    return rc;
}

/* How a refusal names attribute |nid| of a subject: "common name", "subject attribute O"... */
static const char *attr_kind(char buf[SHOWN_LEN], int nid)
{
    if (nid == NID_commonName)
        return "common name";
    if (nid == NID_pkcs9_emailAddress)
        return "subject emailAddress";
    snprintf(buf, SHOWN_LEN, "subject attribute %s", nid != NID_undef ? OBJ_nid2sn(nid) : "(unknown type)");
    return buf;
}

/* A subject's emailAddress and mail (rfc822Mailbox) attributes are addresses (check_address), as an email SAN
 * is: X509_check_email reads emailAddress, LDAP directories and mail software mail as the holder's address.
 */
static int check_addresses(const X509_NAME *subject, int *fail_info, char *err)
{
    static const int nids[] = {NID_pkcs9_emailAddress, NID_rfc822Mailbox};
    char kind[SHOWN_LEN], *v;
    size_t len;
    int i, rc = 0;

    for (size_t k = 0; rc == 0 && k < sizeof(nids) / sizeof(nids[0]); k++) {
        for (i = -1; rc == 0 && (i = X509_NAME_get_index_by_NID(subject, nids[k], i)) >= 0;) {
            if ((v = policy_entry_utf8(subject, i, &len)) == NULL)
                return policy_say(fail_info, BADT, err, "%s cannot be decoded", attr_kind(kind, nids[k]));
            rc = check_address(attr_kind(kind, nids[k]), v, len, fail_info, err);
            OPENSSL_free(v);
        }
    }
    return rc;
}

/*
 * No attribute of a requested |subject| may hold a character that a reader does not see as itself
 * (gw_utf8_hidden: a C1 control, a bidirectional control, a zero-width or other invisible format
 * character, a line separator): a CN "bank\u200b.example" or an O with U+202E reads, to an operator
 * approving it or a relying party's user, as another name, and no name needs one. The refusal says
 * which character and where, since the name as shown (policy_shown) cannot. Asked before the patterns,
 * so that it is the reason given; not asked of a certificate issued already, which an RA may still
 * revoke.
 */
static int check_attr_shown(const X509_NAME *subject, int *fail_info, char *err)
{
    char buf[SHOWN_LEN], kind[SHOWN_LEN], *v;
    size_t len, at;
    uint32_t cp;
    int nid, rc = 0;

    for (int i = 0; rc == 0 && i < X509_NAME_entry_count(subject); i++) {
        nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(subject, i)));
        if ((v = policy_entry_utf8(subject, i, &len)) == NULL)
            continue; /* policy_check_names and check_attr_bytes refuse it, each in its words */
        if ((cp = gw_utf8_hidden(v, &at)) != 0)
            rc = policy_say(fail_info, BADT, err,
                            "%s %s holds U+%04X at character %zu, an invisible, format or control character, "
                            "which no name may hold",
                            attr_kind(kind, nid), policy_shown(buf, v, len), (unsigned)cp, at);
        OPENSSL_free(v);
    }
    return rc;
}

int policy_check_names(const struct gw_role *role, const X509_NAME *subject, const GENERAL_NAMES *sans,
                       int *fail_info, char *err)
{
    int i, rc, server = cn_is_server_host(role, sans);

    if ((rc = check_attrs(role, subject, NID_commonName, server, fail_info, err)) != 0 ||
        (rc = check_attrs(role, subject, NID_pkcs9_emailAddress, 0, fail_info, err)) != 0 ||
        (rc = check_attrs(role, subject, NID_rfc822Mailbox, 0, fail_info, err)) != 0 ||
        (subject != NULL && (rc = check_addresses(subject, fail_info, err)) != 0))
        return rc;
    if (sk_GENERAL_NAME_num(sans) > GW_MAX_SANS)
        return policy_say(fail_info, BADT, err, "too many subjectAltName entries (%d; the limit is %d)",
                          sk_GENERAL_NAME_num(sans), GW_MAX_SANS);
    if (sans != NULL && (rc = i2d_GENERAL_NAMES((GENERAL_NAMES *)sans, NULL)) > GW_MAX_SAN_BYTES)
        return policy_say(fail_info, BADT, err, "subjectAltName entries of %d bytes in all (the limit is %d)",
                          rc, GW_MAX_SAN_BYTES);
    for (i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        if ((rc = policy_check_san(role, sk_GENERAL_NAME_value(sans, i), fail_info, err)) != 0)
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
    if ((rc = policy_check_allowed_subject(role, "requested", plan->subject, fail_info, err)) != 0) {
        *fail_info = BADT;
        return rc;
    }
    if ((rc = check_attr_shown(plan->subject, fail_info, err)) != 0 ||
        (rc = policy_check_names(role, plan->subject, plan->sans, fail_info, err)) != 0 ||
        (rc = check_attr_bytes(plan->subject, fail_info, err)) != 0 ||
        (rc = check_key(role, plan->pubkey, fail_info, err)) != 0)
        return rc;
    *fail_info = 0;
    return 0;
}

int gw_policy_check_names(const struct gw_role *role, X509 *cert, int cn_in_sans, int *fail_info, char *err)
{
    int crit = -1, rc;
    const char *ca = policy_issued_ca(cert);
    GENERAL_NAMES *sans;

    if (ca != NULL) /* a subordinate CA its CA signed, whatever its names */
        return policy_say(fail_info, DENY, err, "it is %s, which no role issues", ca);
    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    if (sans == NULL && crit != -1)
        return policy_say(fail_info, DENY, err, "its subjectAltName extension is malformed or repeated");
    rc = policy_check_names(role, X509_get_subject_name(cert), sans, fail_info, err);
    if (rc == 0 && cn_in_sans && !role->exclude_cn_from_sans)
        rc = policy_check_cn_as_san(role, X509_get_subject_name(cert), fail_info, err);
    /* the role released none outside it (gw_policy_check_issued): another role's on the same CA, told
       apart by allowed_subjects as its signers are by signer_subjects */
    if (rc == 0)
        rc = policy_check_allowed_subject(role, "the certificate's", X509_get_subject_name(cert), fail_info,
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
