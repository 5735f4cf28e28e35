/*
 * The verdict on a certificate an upstream returned (gw_policy_check_issued, mappings/policy.h):
 * not the one asked for, outside the role's policy, changed within it, or as planned. Pure: no I/O.
 * Refusals are worded as policy.c's top comment says.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <openssl/asn1.h>
#include <openssl/cmp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/policy_local.h"

/*
 * RFC 5280 §4.1.2.2: a serial number is a positive integer of at most 20 octets. Another is the CA's
 * fault: Vault, which names serials in colon hex of at most 20 octets, cannot be asked to revoke it, so
 * its holder's rr would fail for good. Its refusal's records keep the whole serial (GW_SERIAL_HEX_LEN),
 * for its operator to revoke it by hand.
 */
static bool serial_ok(const X509 *cert)
{
    char hex[2 * GW_MAX_SERIAL_OCTETS + 1];

    return gw_x509_serial_hex_checked(X509_get0_serialNumber(cert), hex, sizeof(hex)) == 0;
}

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
    if (!serial_ok(cert)) {
        snprintf(err, GW_ERR_LEN,
                 "the certificate upstream %s returned is malformed: its serial number is not a positive "
                 "integer of at most 20 octets",
                 role->upstream_name != NULL ? role->upstream_name : "?");
        return GW_ISSUED_BAD;
    }
    if (!policy_verify(store, cert, chain, now, 0, 1, &code, &depth, path)) {
        snprintf(err, GW_ERR_LEN, "the certificate upstream %s returned %s (issuer_ca)",
                 role->upstream_name != NULL ? role->upstream_name : "?", policy_verify_why(code, depth));
        return GW_ISSUED_BAD;
    }
    return GW_ISSUED_OK;
}

/* What makes |cert| a CA: basicConstraints cA TRUE (or the extension twice or malformed), keyCertSign
 * or cRLSign. */
const char *policy_issued_ca(X509 *cert)
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
    int nw = X509_NAME_entry_count(want), ng = X509_NAME_entry_count(got), i, j;
    unsigned char used[GW_MAX_SUBJECT_ATTRS] = {0};

    if (gw_x509_name_same(want, got))
        return SUBJ_SAME;
    if (ng > nw || nw > GW_MAX_SUBJECT_ATTRS)
        return SUBJ_OTHER;
    for (i = 0; i < ng; i++) {
        for (j = 0; j < nw; j++) {
            if (!used[j] &&
                gw_x509_name_entry_same(X509_NAME_get_entry(want, j), X509_NAME_get_entry(got, i)))
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
 * A URI no request may hold (gw_cert_uri_why), whatever the role's patterns: one a URL parser reads with
 * another host than it seems to name. Not asked of a certificate an rr names, which an RA may still revoke.
 */
static int uri_refused(const GENERAL_NAMES *sans, char *why)
{
    char buf[SHOWN_LEN];
    const char *bad;

    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);

        if (gn->type != GEN_URI ||
            (bad = gw_cert_uri_why(gn->d.ia5->data, (size_t)gn->d.ia5->length)) == NULL)
            continue;
        snprintf(why, GW_ERR_LEN, "URI %s is refused: %s",
                 policy_shown(buf, (const char *)gn->d.ia5->data, (size_t)gn->d.ia5->length), bad);
        return GW_ERR_POLICY;
    }
    return 0;
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

/*
 * Where max_ttl counts from: the certificate's notBefore |nb| (no later than the check: it verified
 * at that time), but no earlier than the plan's, when the request came (a backdated one is refused on
 * its own). Not the check's time: a certificate a pollReq collects long after it was issued would
 * have the wait added to the validity it may carry.
 */
static time_t validity_start(const struct gw_cert_plan *plan, time_t nb)
{
    return nb > plan->not_before ? nb : plan->not_before;
}

static enum gw_issued_verdict issued_outside(const struct gw_role *role, const struct gw_cert_plan *plan,
                                             X509 *cert, char *err)
{
    time_t max_ttl = role->max_ttl != 0 ? (time_t)role->max_ttl : GW_DEFAULT_MAX_TTL, na = 0, nb = 0;
    char why[GW_ERR_LEN], b1[SHOWN_LEN], b2[SHOWN_LEN], name[GW_ERR_LEN / 2];
    const GENERAL_NAME *added = NULL;
    const char *what;
    GENERAL_NAMES *sans;
    int crit = -1, fi, rc;

    if ((what = policy_issued_ca(cert)) != NULL) {
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
    /* the plan may hold what the upstream's role wrote (a delegate's), a reduction what no request may */
    if (policy_check_allowed_subject(role, "the certificate's", X509_get_subject_name(cert), &fi, why) != 0) {
        snprintf(err, GW_ERR_LEN, "%s", why);
        return GW_ISSUED_OUTSIDE_POLICY;
    }
    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    if (sans == NULL && crit != -1)
        rc = policy_say(&fi, BADT, why, "its subjectAltName extension is malformed or repeated");
    else
        /* a copy of the CN too: its type is one the role allows, or the request was refused
           (gw_policy_check_cn_copy) */
        rc = policy_check_names(role, X509_get_subject_name(cert), sans, &fi, why);
    if (rc == 0)
        rc = uri_refused(sans, why);
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
    if (gw_asn1_time(X509_get0_notBefore(cert), &nb) != 0 ||
        nb < plan->not_before - GW_ISSUED_BACKDATE_SLACK) {
        snprintf(err, GW_ERR_LEN, "the upstream backdated the certificate to %s (planned: %s)",
                 policy_when(b1, nb), policy_when(b2, plan->not_before));
        return GW_ISSUED_OUTSIDE_POLICY;
    }
    if (gw_asn1_time(X509_get0_notAfter(cert), &na) != 0 ||
        na > validity_start(plan, nb) + max_ttl + GW_ISSUED_TTL_SLACK) {
        snprintf(err, GW_ERR_LEN,
                 "the upstream's certificate is valid until %s, beyond role %s's max_ttl of %s",
                 policy_when(b1, na), policy_rname(role), policy_dur(b2, max_ttl));
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
    if (gw_asn1_time(X509_get0_notAfter(cert), &na) != 0)
        return GW_ISSUED_OK; /* issued_outside refused a notAfter that does not read */
    if (na < plan->not_after - GW_ISSUED_SHORTEN_SLACK) {
        snprintf(err, GW_ERR_LEN, "the upstream shortened the validity to %s (planned: %s)",
                 policy_when(b1, na), policy_when(b2, plan->not_after));
        return GW_ISSUED_MODIFIED;
    }
    /* within max_ttl (issued_outside), but not "exactly what you asked for" (RFC 9810 §5.2.3); a
       client that asked no validity asked nothing a longer one changes */
    if (plan->not_after_asked && na > plan->not_after + GW_ISSUED_SHORTEN_SLACK) {
        snprintf(err, GW_ERR_LEN, "the upstream lengthened the validity to %s (asked: %s)",
                 policy_when(b1, na), policy_when(b2, plan->not_after));
        return GW_ISSUED_MODIFIED;
    }
    return GW_ISSUED_OK;
}

/*
 * Continues |path|, verified up to a certificate of issuer_ca, with the CAs that signed its last one:
 * those of |issuer_certs| (issuer_ca's) first, then those of the upstream's |chain|. An upstream can
 * make a certificate with a root's name and key and sign it with a root of its own, and no signature
 * check tells that from a real cross-certificate: where the operator configured the CA above, that one
 * goes out, and the upstream's only where the configuration has none. Without |issuer_certs| (no memory
 * to list them) the path ends at issuer_ca.
 */
static void climb(STACK_OF(X509) *path, STACK_OF(X509) *issuer_certs, STACK_OF(X509) *chain,
                  struct gw_x509_links *links)
{
    if (issuer_certs != NULL)
        gw_x509_chain_extend(path, issuer_certs, chain, GW_MAX_UPSTREAM_CHAIN, links);
}

enum gw_issued_verdict gw_policy_check_issued_with(const struct gw_role *role,
                                                   const struct gw_cert_plan *plan, X509 *cert,
                                                   STACK_OF(X509) *chain, X509_STORE *issuer_store,
                                                   STACK_OF(X509) *issuer_certs, struct gw_x509_links *links,
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
        (v = issued_outside(role, plan, cert, err)) == GW_ISSUED_OK)
        v = issued_modified(role, plan, cert, err);
    if (path != NULL && (v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED)) {
        X509_free(sk_X509_shift(found)); /* the certificate itself */
        climb(found, issuer_certs, chain, links);
        *path = found;
        found = NULL;
    }
    sk_X509_pop_free(found, X509_free);
    return v;
}

enum gw_issued_verdict gw_policy_check_issued(const struct gw_role *role, const struct gw_cert_plan *plan,
                                              X509 *cert, STACK_OF(X509) *chain, X509_STORE *issuer_store,
                                              struct gw_x509_links *links, time_t now, STACK_OF(X509) **path,
                                              char *err)
{
    STACK_OF(X509) *listed = NULL;
    enum gw_issued_verdict v;

    if (path != NULL && issuer_store != NULL)
        listed = X509_STORE_get1_all_certs(issuer_store); /* NULL: the path ends at issuer_ca */
    v = gw_policy_check_issued_with(role, plan, cert, chain, issuer_store, listed, links, now, path, err);
    sk_X509_pop_free(listed, X509_free);
    return v;
}

int gw_policy_issued_refusal(enum gw_issued_verdict v, const char *why, char *text)
{
    if (v == GW_ISSUED_OUTSIDE_POLICY) {
        snprintf(text, GW_ERR_LEN,
                 "the CA issued a certificate outside this route's policy (%.170s); it was not released",
                 why);
        return OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
    }
    snprintf(text, GW_ERR_LEN, "the CA returned an unusable certificate (%.170s); it was not released", why);
    return OSSL_CMP_PKIFAILUREINFO_systemFailure;
}
