/*
 * Usages and extensions (mappings/policy.h): what a CA puts into a certificate beyond the names,
 * checked in a CSR the CA copies (gw_policy_check_csr), in what an upstream role grants
 * (gw_policy_check_upstream_grants) and in a certificate an upstream returned (policy_issued.c,
 * through policy_exts_malformed and policy_exts_outside). Pure: no I/O. Refusals are worded as
 * policy.c's top comment says.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/policy_local.h"

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
    int any_ku, any_eku;
    size_t i;

    err[0] = '\0';
    if (role == NULL || p == NULL)
        return policy_say(fail_info, OSSL_CMP_PKIFAILUREINFO_badRequest, err,
                          "no role or upstream role to check");
    ku = p->key_usage & ~role->key_usage;
    eku = p->ext_key_usage & ~role->ext_key_usage;
    /* Vault writes no keyUsage for none granted ("key_usage": []), and no extendedKeyUsage for no flag,
       ext_key_usage or OID: any usage, which a role listing its usages does not allow */
    any_ku = p->key_usage == 0 && role->key_usage != 0;
    any_eku = p->ext_key_usage == 0 && p->other_eku[0] == '\0' && role->ext_key_usage != 0;
    if (ku == 0 && eku == 0 && p->other_eku[0] == '\0' && !any_ku && !any_eku) {
        *fail_info = 0;
        return 0;
    }
    if (any_ku)
        snprintf(what, sizeof(what), "any keyUsage (it writes none)");
    else if (ku != 0)
        snprintf(what, sizeof(what), "keyUsage %s", ku_list(list, sizeof(list), ku));
    if (any_ku || ku != 0)
        append(fields, sizeof(fields), "key_usage");
    if (any_eku) {
        snprintf(what + strlen(what), sizeof(what) - strlen(what), "%sany extendedKeyUsage (it writes none)",
                 what[0] != '\0' ? " and " : "");
        append(fields, sizeof(fields), "ext_key_usage");
    } else if (eku != 0 || p->other_eku[0] != '\0') {
        snprintf(what + strlen(what), sizeof(what) - strlen(what), "%sextendedKeyUsage %s",
                 what[0] != '\0' ? " and " : "", eku_list(list, sizeof(list), eku, p->other_eku));
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
