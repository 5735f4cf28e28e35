/*
 * An upstream role's own policy, with Vault's semantics (gw_policy_check_upstream_role,
 * mappings/policy.h): the rules a delegate issuer applies for the Vault role it issues on behalf
 * of, and the subject that role writes. Pure: no I/O. Refusals are worded as policy.c's top comment
 * says.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/policy_local.h"

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

/*
 * A template entry (allowed_domains_template) is filled in with the identity that calls Vault, the
 * gateway's, so it stands for no client, as in vault_check_uri; taken as a literal domain, with
 * allow_subdomains it would admit "x.{{identity.entity.name}}.example.com".
 */
static int vault_domain_ok(const struct gw_role_policy *p, const struct vault_name *v)
{
    size_t i;

    for (i = 0; i < p->allowed_domains.n; i++) {
        const char *d = p->allowed_domains.v[i];

        if (d == NULL || d[0] == '\0' || (p->allowed_domains_template && strstr(d, "{{") != NULL))
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

/*
 * Vault's validateURISANs: a URI must match one glob of allowed_uri_sans, none by default. A template
 * entry is filled in with the identity that calls Vault, the gateway's, so it stands for no client.
 */
static int vault_check_uri(const struct gw_role_policy *p, const ASN1_IA5STRING *uri, int *fail_info,
                           char *err)
{
    char buf[SHOWN_LEN], list[GW_ERR_LEN / 2];

    for (size_t i = 0; i < p->allowed_uri_sans.n; i++) {
        const char *g = p->allowed_uri_sans.v[i];

        if (p->allowed_uri_sans_template && strstr(g, "{{") != NULL)
            continue;
        if (policy_glob(g, strlen(g), (const char *)uri->data, (size_t)uri->length, 0))
            return 0;
    }
    return policy_say(
        fail_info, BADT, err, "URI %s is not allowed by the upstream role (allowed_uri_sans: %s)",
        policy_shown(buf, (const char *)uri->data, (size_t)uri->length),
        p->allowed_uri_sans.n > 0 ? policy_join(list, sizeof(list), &p->allowed_uri_sans) : "none");
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
        return vault_check_uri(p, gn->d.uniformResourceIdentifier, fail_info, err);
    default:
        return policy_say(fail_info, BADT, err,
                          "a subjectAltName of this type is not allowed by the upstream role");
    }
}

/* Whether Vault copies a common name into the DNS names (Vault 1.x: a wildcard first label too). */
static int vault_cn_hostname(const char *cn)
{
    const char *dot = strchr(cn, '.');

    return policy_vault_hostname(cn) ||
           (dot != NULL && memchr(cn, '*', (size_t)(dot - cn)) != NULL && policy_vault_hostname(dot + 1));
}

/*
 * Vault's validateCommonName: the CN's names as any other name, then the kind cn_validations takes
 * (none listed: either). "disabled" checks nothing but what Vault copies into the subjectAltNames,
 * unless exclude_cn_from_sans.
 */
static int vault_check_cn_text(const struct gw_role *role, const struct gw_role_policy *p, const char *cn,
                               size_t len, int *fail_info, char *err)
{
    char buf[SHOWN_LEN];
    int email = memchr(cn, '@', len) != NULL, rc;

    if ((p->cn_validations & GW_CN_DISABLED) != 0 && strlen(cn) == len &&
        (role->exclude_cn_from_sans || !(email || vault_cn_hostname(cn))))
        return 0;
    if ((rc = vault_check_name(p, cn, len, fail_info, err)) != 0 || p->cn_validations == 0 ||
        (p->cn_validations & (GW_CN_DISABLED | (email ? GW_CN_EMAIL : GW_CN_HOSTNAME))) != 0)
        return rc;
    return policy_say(fail_info, BADT, err,
                      "common name %s is %s, which the upstream role does not take (cn_validations: %s)",
                      policy_shown(buf, cn, len), email ? "an email address" : "a hostname",
                      email ? "hostname" : "email");
}

/*
 * The common name Vault writes: the request's last (Go's pkix.Name, which Vault reads a request into,
 * keeps the last of a repeated CN or serialNumber), unless use_csr_common_name is false (none is sent).
 */
static int vault_check_cn(const struct gw_role *role, const struct gw_role_policy *p,
                          const struct gw_cert_plan *plan, int *fail_info, char *err)
{
    int i = p->no_csr_common_name ? -1 : gw_x509_name_last_index(plan->subject, NID_commonName), rc;
    size_t len;
    char *cn;

    if (i < 0 && p->cn_optional)
        return 0;
    if (i < 0)
        return policy_say(fail_info, BADT, err, "the upstream role requires a common name (require_cn) %s",
                          p->no_csr_common_name
                              ? "and takes none from a request (use_csr_common_name is false)"
                              : "and the request has none");
    if ((cn = policy_entry_utf8(plan->subject, i, &len)) == NULL)
        return policy_say(fail_info, BADT, err, "the common name cannot be decoded");
    rc = vault_check_cn_text(role, p, cn, len, fail_info, err);
    OPENSSL_free(cn);
    return rc;
}

/* Vault's allowed_serial_numbers (globs) and allowed_user_ids (names, any case, or globs) on |v|. */
static int vault_value_ok(const struct gw_patterns *ps, const char *v, size_t len, int fold)
{
    for (size_t i = 0; i < ps->n; i++) {
        const char *g = ps->v[i];

        if ((strchr(g, '*') != NULL && policy_glob(g, strlen(g), v, len, 0)) ||
            (fold ? policy_eq_fold(g, strlen(g), v, len) : strlen(g) == len && memcmp(g, v, len) == 0))
            return 1;
    }
    return 0;
}

static int vault_check_value(const struct gw_patterns *ps, const X509_NAME *subject, int i, const char *what,
                             const char *key, int fold, int *fail_info, char *err)
{
    char buf[SHOWN_LEN], list[GW_ERR_LEN / 2];
    size_t len;
    char *v = policy_entry_utf8(subject, i, &len);
    int ok = v != NULL && vault_value_ok(ps, v, len, fold);

    if (!ok)
        policy_say(fail_info, BADT, err, "%s %s is not allowed by the upstream role (%s: %s)", what,
                   v != NULL ? policy_shown(buf, v, len) : "(undecodable)", key,
                   ps->n > 0 ? policy_join(list, sizeof(list), ps) : "none");
    OPENSSL_free(v);
    return ok ? 0 : GW_ERR_POLICY;
}

/* The serialNumber and the UIDs Vault takes from a request, each refused unless the role allows it. */
static int vault_check_ids(const struct gw_role_policy *p, const X509_NAME *subject, int *fail_info,
                           char *err)
{
    int i = p->serial_from_json ? -1 : gw_x509_name_last_index(subject, NID_serialNumber), rc;

    if (i >= 0 && (rc = vault_check_value(&p->allowed_serial_numbers, subject, i, "serialNumber",
                                          "allowed_serial_numbers", 0, fail_info, err)) != 0)
        return rc;
    for (i = -1; subject != NULL && (i = X509_NAME_get_index_by_NID(subject, NID_userId, i)) >= 0;) {
        if ((rc = vault_check_value(&p->allowed_user_ids, subject, i, "user ID", "allowed_user_ids", 1,
                                    fail_info, err)) != 0)
            return rc;
    }
    return 0;
}

static int vault_check_names(const struct gw_role *role, const struct gw_role_policy *p,
                             const struct gw_cert_plan *plan, int *fail_info, char *err)
{
    int i, rc;

    if ((rc = vault_check_cn(role, p, plan, fail_info, err)) != 0 ||
        (rc = vault_check_ids(p, plan->subject, fail_info, err)) != 0)
        return rc;
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

/* Go's pkix.Name order, which Vault's subject is written in: these, then CN, serialNumber and UIDs. */
const struct gw_upstream_subject_attr gw_upstream_subject_attrs[GW_UPSTREAM_SUBJECT_ATTRS] = {
    {"country", NID_countryName},       {"province", NID_stateOrProvinceName},
    {"locality", NID_localityName},     {"street_address", NID_streetAddress},
    {"postal_code", NID_postalCode},    {"organization", NID_organizationName},
    {"ou", NID_organizationalUnitName},
};

/*
 * A role's values of one attribute, each once, in one RDN (multi-valued when several), as Go writes them.
 * One with a control byte or a character a reader does not see as itself is refused as a requested
 * attribute is (policy_has_control, gw_utf8_hidden): the upstream's answer would otherwise put into a
 * certificate the delegate signs what no client may ask for.
 */
static int add_role_values(X509_NAME *out, const struct gw_patterns *vs, int nid, const char *key, char *err)
{
    char buf[SHOWN_LEN];
    size_t at;
    int set = 0; /* the first value opens an RDN, the others join it */

    for (size_t i = 0; i < vs->n; i++) {
        size_t j = 0;

        while (j < i && strcmp(vs->v[j], vs->v[i]) != 0)
            j++;
        if (j < i)
            continue;
        if (policy_has_control(vs->v[i], strlen(vs->v[i])) || gw_utf8_hidden(vs->v[i], &at) != 0 ||
            X509_NAME_add_entry_by_NID(out, nid, MBSTRING_UTF8, (const unsigned char *)vs->v[i], -1, -1,
                                       set) != 1) {
            ERR_clear_error();
            snprintf(err, GW_ERR_LEN, "the upstream role's %s %s cannot be written into a certificate", key,
                     policy_shown(buf, vs->v[i], strlen(vs->v[i])));
            return GW_ERR_POLICY;
        }
        set = -1;
    }
    return 0;
}

static int add_asked(X509_NAME *out, const X509_NAME *asked, int i)
{
    return i < 0 || X509_NAME_add_entry(out, X509_NAME_get_entry(asked, i), -1, 0) == 1;
}

/*
 * vault_subject builds the subject sign/<role> writes (generateCreationBundle): the role's own
 * attributes, the request's CN and serialNumber where Vault takes them, and its UIDs; nothing
 * else of the request. The checks before it allowed each value taken from the request.
 */
static X509_NAME *vault_subject(const struct gw_role_policy *p, const X509_NAME *asked, char *err)
{
    X509_NAME *out = X509_NAME_new(), *dup;
    int i = -1, ok = out != NULL;

    for (size_t a = 0; ok && a < GW_UPSTREAM_SUBJECT_ATTRS; a++) {
        if (add_role_values(out, &p->subject_values[a], gw_upstream_subject_attrs[a].nid,
                            gw_upstream_subject_attrs[a].key, err) != 0) {
            X509_NAME_free(out);
            return NULL;
        }
    }
    ok = ok &&
         add_asked(out, asked, p->no_csr_common_name ? -1 : gw_x509_name_last_index(asked, NID_commonName)) &&
         add_asked(out, asked, p->serial_from_json ? -1 : gw_x509_name_last_index(asked, NID_serialNumber));
    while (ok && (i = X509_NAME_get_index_by_NID(asked, NID_userId, i)) >= 0)
        ok = add_asked(out, asked, i);
    /* its values in the order DER writes a multi-valued RDN, so that the certificate's compares the same */
    dup = ok ? X509_NAME_dup(out) : NULL;
    X509_NAME_free(out);
    if (dup != NULL)
        return dup;
    snprintf(err, GW_ERR_LEN, "out of memory building the upstream role's subject");
    return NULL;
}

/*
 * The subjectAltName Vault adds for common name |cn| (generateCreationBundle): an email address when
 * it holds '@', a DNS name when it is a hostname, else none (*gn NULL). An email address must be
 * ASCII, as Go's IA5String must be, or Vault refuses the request.
 */
static int vault_cn_san(const char *cn, GENERAL_NAME **gn, int *fail_info, char *err)
{
    int email = strchr(cn, '@') != NULL;
    char buf[SHOWN_LEN];

    *gn = NULL;
    if (!email && !vault_cn_hostname(cn))
        return 0;
    for (const char *s = cn; email && *s != '\0'; s++) {
        if ((unsigned char)*s >= 0x80)
            return policy_say(fail_info, BADT, err,
                              "common name %s cannot be the email subjectAltName the upstream role adds for "
                              "it: it is not ASCII",
                              policy_shown(buf, cn, strlen(cn)));
    }
    if ((*gn = GENERAL_NAME_new()) == NULL || (gn[0]->d.ia5 = ASN1_IA5STRING_new()) == NULL ||
        ASN1_STRING_set(gn[0]->d.ia5, cn, -1) != 1) {
        GENERAL_NAME_free(*gn);
        *gn = NULL;
        return policy_say(fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure, err, "out of memory");
    }
    gn[0]->type = email ? GEN_EMAIL : GEN_DNS;
    return 0;
}

/* Whether |sans| hold |gn|'s name, in any case (a DNS name and an email address never match). */
static int san_has(const GENERAL_NAMES *sans, const GENERAL_NAME *gn)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *s = sk_GENERAL_NAME_value(sans, i);

        if (s->type == gn->type && policy_eq_fold((const char *)s->d.ia5->data, (size_t)s->d.ia5->length,
                                                  (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length))
            return 1;
    }
    return 0;
}

/*
 * The CN Vault adds to |plan|'s SANs unless exclude_cn_from_sans (*gn NULL when none: no CN at index
 * |i|, one neither an email address nor a hostname, or one the plan lists already), checked as a
 * name the client asked for: its type must be one of the role's allowed_san_types, else the role
 * would issue a name of a type it never grants, and the role's patterns must allow it.
 */
static int cn_copy(const struct gw_role *role, const struct gw_cert_plan *plan, int i, GENERAL_NAME **gn,
                   int *fail_info, char *err)
{
    char why[GW_ERR_LEN], buf[SHOWN_LEN];
    size_t len;
    char *cn;
    int rc, email;

    *gn = NULL;
    if (i < 0 || role->exclude_cn_from_sans)
        return 0;
    if ((cn = policy_entry_utf8(plan->subject, i, &len)) == NULL)
        return policy_say(fail_info, BADT, err, "the common name cannot be decoded");
    rc = vault_cn_san(cn, gn, fail_info, err);
    OPENSSL_free(cn);
    if (rc != 0 || *gn == NULL || san_has(plan->sans, *gn)) {
        GENERAL_NAME_free(*gn);
        *gn = NULL;
        return rc;
    }
    email = gn[0]->type == GEN_EMAIL;
    if ((role->allowed_san_types & (email ? GW_SAN_EMAIL : GW_SAN_DNS)) == 0)
        rc = policy_say(fail_info, BADT, err,
                        "common name %s would become %s subjectAltName (the CA adds it), a type role %s does "
                        "not allow: set exclude_cn_from_sans on the role, or \"%s\" in its allowed_san_types",
                        policy_shown(buf, (const char *)gn[0]->d.ia5->data, (size_t)gn[0]->d.ia5->length),
                        email ? "an email" : "a DNS", policy_rname(role), email ? "email" : "dns");
    else if ((rc = policy_check_san(role, *gn, fail_info, why)) != 0)
        /* the role's rule first, whole: the suffix says why a name the client did not list is checked */
        snprintf(
            err, GW_ERR_LEN,
            "%.*s (the CN, which the upstream role adds as a subjectAltName unless exclude_cn_from_sans)",
            GW_ERR_LEN - 96, why);
    if (rc != 0) {
        GENERAL_NAME_free(*gn);
        *gn = NULL;
    }
    return rc;
}

int gw_policy_check_cn_copy(const struct gw_role *role, const struct gw_cert_plan *plan, int *fail_info,
                            char *err)
{
    GENERAL_NAME *gn;
    int rc;

    err[0] = '\0';
    if (plan->subject == NULL)
        return 0;
    rc = cn_copy(role, plan, gw_x509_name_last_index(plan->subject, NID_commonName), &gn, fail_info, err);
    GENERAL_NAME_free(gn);
    return rc;
}

/*
 * Of a certificate issued already (gw_policy_check_names): its CN as the name the upstream copied, or
 * would have copied, into its SANs, whether the certificate carries that copy or not. A role that
 * refuses the copy never issued that CN there (cn_copy), so a certificate holding it is another
 * role's, which an RA of this one may not revoke.
 */
int policy_check_cn_as_san(const struct gw_role *role, const X509_NAME *subject, int *fail_info, char *err)
{
    char why[GW_ERR_LEN], *cn;
    GENERAL_NAME *gn = NULL;
    size_t len;
    int i = gw_x509_name_last_index(subject, NID_commonName), rc;

    if (i < 0)
        return 0;
    if ((cn = policy_entry_utf8(subject, i, &len)) == NULL)
        return policy_say(fail_info, BADT, err, "the common name cannot be decoded");
    rc = vault_cn_san(cn, &gn, fail_info, err);
    OPENSSL_free(cn);
    if (rc == 0 && gn != NULL && (rc = policy_check_san(role, gn, fail_info, why)) != 0)
        snprintf(err, GW_ERR_LEN, "%.*s (the common name, which the CA copies into the subjectAltNames)",
                 GW_ERR_LEN - 80, why);
    GENERAL_NAME_free(gn);
    return rc;
}

/*
 * vault_sans: the plan's SANs and the CN Vault adds to them unless exclude_cn_from_sans, where the
 * plan lacks it (*out NULL when nothing is added). The upstream role's rules checked that name
 * (vault_check_cn_text); the role's own SAN types and patterns must allow it too (cn_copy), as they
 * must in a certificate Vault signed (gw_policy_check_issued).
 */
static int vault_sans(const struct gw_role *role, const struct gw_role_policy *p,
                      const struct gw_cert_plan *plan, GENERAL_NAMES **out, int *fail_info, char *err)
{
    int i = p->no_csr_common_name ? -1 : gw_x509_name_last_index(plan->subject, NID_commonName), rc;
    GENERAL_NAME *gn;

    *out = NULL;
    if ((rc = cn_copy(role, plan, i, &gn, fail_info, err)) != 0 || gn == NULL)
        return rc;
    *out = plan->sans != NULL ? sk_GENERAL_NAME_deep_copy(plan->sans, GENERAL_NAME_dup, GENERAL_NAME_free)
                              : GENERAL_NAMES_new();
    if (*out == NULL || sk_GENERAL_NAME_push(*out, gn) <= 0) {
        GENERAL_NAME_free(gn);
        GENERAL_NAMES_free(*out);
        *out = NULL;
        return policy_say(fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure, err, "out of memory");
    }
    return 0;
}

/*
 * Vault's getCertificateNotAfter: the role's max_ttl, or where it has none the mount's max lease TTL
 * (GW_VAULT_MAX_LEASE_TTL, Vault's default: the mount's tune is not read); and the role's not_after,
 * which Vault writes in place of a ttl (the gateway's sign call sends one, which Vault then refuses):
 * the delegate ends no later.
 */
static int vault_check_validity(const struct gw_role_policy *p, const struct gw_cert_plan *plan, time_t now,
                                int *fail_info, char *err)
{
    char b1[SHOWN_LEN], b2[SHOWN_LEN], b3[SHOWN_LEN];
    time_t max_ttl = p->max_ttl != 0 ? (time_t)p->max_ttl : GW_VAULT_MAX_LEASE_TTL;

    if (plan->not_after - now > max_ttl)
        return policy_say(
            fail_info, BADT, err,
            "the validity asked for (until %s, %s) exceeds the upstream role's max_ttl of %s%s; "
            "ask for a shorter one",
            policy_when(b1, plan->not_after), policy_dur(b2, (long long)(plan->not_after - now)),
            policy_dur(b3, (long long)max_ttl),
            p->max_ttl != 0 ? "" : " (it sets none: Vault's default max lease TTL)");
    if (p->not_after != 0 && plan->not_after > p->not_after)
        return policy_say(fail_info, BADT, err,
                          "the validity asked for (until %s) ends after the upstream role's not_after of %s; "
                          "ask for a shorter one",
                          policy_when(b1, plan->not_after), policy_when(b2, p->not_after));
    return 0;
}

int gw_policy_check_upstream_role(const struct gw_role *role, const struct gw_role_policy *p,
                                  const struct gw_cert_plan *plan, time_t now, struct gw_upstream_names *out,
                                  int *fail_info, char *err)
{
    char b1[SHOWN_LEN];
    GENERAL_NAMES *sans = NULL;
    int rc;

    err[0] = '\0';
    if (role == NULL || p == NULL || plan == NULL || plan->pubkey == NULL || plan->subject == NULL)
        return policy_say(fail_info, OSSL_CMP_PKIFAILUREINFO_badRequest, err,
                          "no upstream role or plan to check");
    if ((rc = vault_check_names(role, p, plan, fail_info, err)) != 0)
        return rc;
    if (!vault_key_ok(p, plan->pubkey))
        return policy_say(fail_info, BADT, err,
                          "key %s is not allowed by the upstream role (key_type %.16s, key_bits %d)",
                          policy_key_name(b1, plan->pubkey), p->key_type, p->key_bits);
    if ((rc = vault_check_validity(p, plan, now, fail_info, err)) != 0 ||
        (rc = vault_sans(role, p, plan, &sans, fail_info, err)) != 0)
        return rc;
    *fail_info = 0;
    if (out == NULL) {
        GENERAL_NAMES_free(sans);
        return 0;
    }
    /* a role value OpenSSL cannot encode (a country of three letters) is the operator's to fix */
    if ((out->subject = vault_subject(p, plan->subject, err)) == NULL) {
        GENERAL_NAMES_free(sans);
        *fail_info = OSSL_CMP_PKIFAILUREINFO_systemUnavail;
        return GW_ERR_POLICY;
    }
    /* held to allowed_subjects before the delegate signs, as the certificate is after (policy_issued.c):
       a subject from the upstream role's organization or ou outside the role is refused, not issued */
    if (policy_check_allowed_subject(role, "the certificate's", out->subject, fail_info, err) != 0) {
        X509_NAME_free(out->subject);
        out->subject = NULL;
        GENERAL_NAMES_free(sans);
        *fail_info = BADT;
        return GW_ERR_POLICY;
    }
    out->sans = sans;
    out->key_usage = p->key_usage & ~(unsigned)(KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    out->ext_key_usage = p->ext_key_usage;
    return 0;
}

static void patterns_free(struct gw_patterns *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->v[i]);
    free(ps->v);
}

void gw_role_policy_cleanup(struct gw_role_policy *p)
{
    if (p == NULL)
        return;
    patterns_free(&p->allowed_domains);
    patterns_free(&p->allowed_uri_sans);
    patterns_free(&p->allowed_serial_numbers);
    patterns_free(&p->allowed_user_ids);
    for (size_t a = 0; a < GW_UPSTREAM_SUBJECT_ATTRS; a++)
        patterns_free(&p->subject_values[a]);
    memset(p, 0, sizeof(*p));
}
