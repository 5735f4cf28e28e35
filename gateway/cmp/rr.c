/*
 * rr (RFC 9483 §4.2): revocation by the holder of the certificate or by an RA identity of the
 * route (docs/design.md D7), through the upstream that issued it. OpenSSL 3.0 passes issuer and
 * serial but not crlEntryDetails: the reason code comes from the shim, goes upstream where the
 * upstream takes one, and into the audit record in every case (docs/design.md D8).
 */
#include "gateway/cmp/rr.h"
#include "gateway/cmp/auth.h"
#include "gateway/cmp/cmp_local.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/policy.h"
#include "gateway/cmp/reasons.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/status.h"
#include "gateway/cmp/urole.h"
#include "base/err.h"
#include "base/log.h"
#include "base/names.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "upstream/upstream.h"

#include <stdio.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* CRLReason names (RFC 5280 §5.3.1), for the audit record and the log. */
static const char *const reason_names[] = {
    "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
    "superseded",    "cessationOfOperation", "certificateHold", "",
    "removeFromCRL", "privilegeWithdrawn",   "aACompromise",
};

static const char *reason_name(int reason)
{
    if (reason < 0 || (size_t)reason >= sizeof(reason_names) / sizeof(reason_names[0]))
        return "none";
    return reason_names[reason];
}

/*
 * The whole one-line subject (gw_x509_name_line): cut to a buffer, "/O=x/CN=ra/OU=<long>" would match
 * "/O=x/CN=ra"; a value holding '/' would let "/O=x/CN=y" be forged inside one attribute, one holding
 * a backslash an escape of another name. Such names never match.
 */
static int ra_subject_matches(const struct gw_patterns *ps, const X509_NAME *name)
{
    char *line = gw_x509_name_line(name);
    int found = 0;

    for (size_t i = 0; line != NULL && i < ps->n && !found; i++)
        found = gw_subject_match(ps->v[i], line, strlen(line));
    OPENSSL_free(line);
    return found;
}

/* RFC 9483 §4.2 and docs/design.md D7: an RA is known by the id-kp-cmcRA EKU (RFC 6402 §2.10). */
static int has_cmc_ra(X509 *cert)
{
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
    int found = 0;

    for (int i = 0; eku != NULL && i < sk_ASN1_OBJECT_num(eku) && !found; i++)
        found = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)) == NID_cmcRA;
    EXTENDED_KEY_USAGE_free(eku);
    return found;
}

/*
 * An RA revokes every certificate of its role, so its certificate must come from the role's own PKI
 * (docs/security.md, "Revocation"): a CA of the role's upstreams signed it, or it chains to a trust
 * entry the role names in ra_trust. Any other entry of the role's trust (a vendor's or bootstrap CA,
 * trusted for enrolment) could mint a certificate with an RA's subject and id-kp-cmcRA. 0, or refused
 * with |r|; the log names the first trust entry of the role the RA chains to.
 */
static int check_ra_issuer(struct cmp_txn *t, struct cmp_call *c, struct cmp_refusal *r)
{
    const struct gw_role *role = t->role;
    const struct gw_trust_conf *entry;
    const char *chained = NULL;

    if (cmp_issued_for_role(c, role, t->signer))
        return 0;
    for (size_t i = 0; i < role->n_trust; i++) {
        entry = gw_trust_conf_find(c->e->cfg.trust, c->e->cfg.n_trust, role->trust_names[i]);
        if (entry == NULL || !cmp_signer_chains_to(c, t, entry->store))
            continue;
        if (gw_names_has(role->authz.ra_trust_names, role->authz.n_ra_trust, entry->name))
            return 0;
        if (chained == NULL)
            chained = entry->name;
    }
    gw_log_kv(GW_LOG_WARN, "rr_ra_untrusted", "tid", c->rsp->tid, "role", role->name, "identity", t->identity,
              "trust", chained != NULL ? chained : "none", "msg",
              "an RA certificate of a CA that is neither the role's upstreams' nor in its ra_trust", NULL);
    return cmp_deny(
        c, t, "rr_ra_untrusted", r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
        "the RA certificate was not issued by a CA of role %.64s's upstreams, nor does it chain to "
        "a trust entry the role names in ra_trust",
        role->name);
}

/* Whether the rr names the certificate that signed it (|issuer| and |serial| are not NULL). */
static int names_signer(const struct cmp_txn *t, const X509_NAME *issuer, const ASN1_INTEGER *serial)
{
    return !t->pbm && t->signer != NULL && X509_NAME_cmp(issuer, X509_get_issuer_name(t->signer)) == 0 &&
           ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(t->signer)) == 0;
}

/* The holder (signer is the certificate named) or an RA of the role. */
static int authorize_rr(struct cmp_txn *t, struct cmp_call *c, const X509_NAME *issuer,
                        const ASN1_INTEGER *serial, int *as_ra, struct cmp_refusal *r)
{
    const struct gw_patterns *ras = &t->role->authz.ra_subjects;

    *as_ra = 0;
    if (t->pbm || t->signer == NULL)
        return cmp_deny(c, t, "rr_pbm", r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                        "a revocation request must be signed by the certificate to revoke or by an RA "
                        "certificate; PBM protection is not accepted for rr");
    if (names_signer(t, issuer, serial))
        return 0;
    if (ras->n > 0 && ra_subject_matches(ras, X509_get_subject_name(t->signer)) && has_cmc_ra(t->signer)) {
        if (check_ra_issuer(t, c, r) != 0)
            return 1;
        *as_ra = 1;
        return 0;
    }
    return cmp_deny(c, t, "rr_not_holder", r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                    "only the holder of a certificate (signing the rr with it) or an RA of role %.64s may "
                    "revoke it",
                    t->role->name);
}

/* An rr naming a serial its CA does not know (badCertId); %s is the serial. */
#define TEXT_NO_SERIAL "the CA has issued no certificate with serial %.60s: check issuer and serial"
#define TEXT_REVOKED "the certificate is already revoked" /* RFC 9810 §5.2.3 certRevoked */
/*
 * The rr's answer when a check found the certificate named (issuer |issuer|, serial t->serial) revoked
 * already, logged through cmp_log_already_revoked with |source| and |how|, as every such answer is. 1.
 */
static int already_revoked(const struct cmp_txn *t, const struct cmp_call *c, const X509_NAME *issuer,
                           const char *source, const char *how, struct cmp_refusal *r)
{
    cmp_log_already_revoked(c, t->serial, issuer, source, how);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_certRevoked, TEXT_REVOKED);
}

/* The CA refused the revocation itself; its answer is for the log only. %s is the serial. */
#define TEXT_REFUSED                                                                                         \
    "the CA refused to revoke the certificate with serial %.60s; retrying will not help: ask the CA's "      \
    "operator why"

/*
 * The upstreams that may have issued it, by its issuer name (rr names no key identifier): the
 * delegate, a migration's "to", the role's upstream ("from") and its crmf_upstream, those issuing
 * under a CA of that name, in that order, so that certificates stay revocable whatever the cohort
 * and mode say now (docs/migration.md). "to" and "from" may have CAs of one name (not of one key):
 * which of them issued it is then told by the certificate itself (the holder's, or the one an RA's
 * lookup finds). No fallback to the role's upstream: Vault revokes by serial within its mount
 * whatever issuer the rr names, so a name of no CA of its would revoke whichever certificate has
 * that serial. The count.
 */
static size_t revokers(struct cmp_call *c, const struct gw_role *role, const X509_NAME *issuer,
                       struct gw_upstream *out[GW_ROLE_ISSUERS])
{
    const char *names[GW_ROLE_ISSUERS];
    struct gw_upstream *up;
    size_t n = 0;

    gw_role_issuers(role, names);
    for (size_t i = 0; i < GW_ROLE_ISSUERS; i++) {
        up = names[i] != NULL ? gw_upstream_set_get0(c->e->ups, names[i]) : NULL;
        if (up != NULL && gw_upstream_issues_under(up, issuer))
            out[n++] = up;
    }
    return n;
}

/*
 * Whether |up| says |cert| is revoked, asked before every revocation call of an rr (an RA's, the holder's),
 * under its mark: Vault answers the revocation of a revoked certificate as it answers the first, cfssl
 * records it again, and the audit log would get a second revocation with another reason. The holder's
 * credential check does not tell: it reads no status where the upstream says "check_revocation": false,
 * and a CRL up to GW_STATUS_REFRESH_SECS old where it does. A status it cannot tell lets the revocation
 * go ahead.
 */
static int revoked_already(struct gw_upstream *up, const X509 *cert)
{
    char err[GW_ERR_LEN];
    int revoked = 0;

    return (gw_upstream_caps(up) & GW_UP_CERT_STATUS) != 0 &&
           gw_upstream_cert_status(up, cert, &revoked, err) == 0 && revoked;
}

/*
 * Whether t->up, signing for the role, adds the common name to the subjectAltNames (Vault), as
 * check_grants asks before it signs: a certificate it issued for the role carries the copy.
 */
static int copies_cn(struct cmp_call *c, const struct cmp_txn *t)
{
    return (gw_upstream_caps(t->up) & GW_UP_CN_IN_SANS) != 0 && cmp_urole_signs_for(c->e, t->role, t->up);
}

/* Whether |cert|, found at |up| by |serial|, is the one an rr naming |issuer| and |serial| means. */
static int is_named(const struct gw_upstream *up, const X509 *cert, const X509_NAME *issuer,
                    const ASN1_INTEGER *serial)
{
    return ASN1_INTEGER_cmp(X509_get0_serialNumber(cert), serial) == 0 &&
           X509_NAME_cmp(X509_get_issuer_name(cert), issuer) == 0 && gw_upstream_issued(up, cert);
}

/* An RA's rr refused as a CA it may name cannot look a certificate up by serial at all. 1. */
static int no_lookup(const struct cmp_txn *t, const struct cmp_call *c, struct cmp_refusal *r)
{
    return cmp_deny(c, t, "rr_ra_no_lookup", r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                    "an RA may revoke on this route only the certificate it signs with: the CA cannot "
                    "look a certificate up by its serial");
}

/* An RA's rr refused as |up| could not look its serial up now (|err|, logged). 1. */
static int lookup_failed(const struct cmp_txn *t, const struct cmp_call *c, const struct gw_upstream *up,
                         const char *err, struct cmp_refusal *r)
{
    gw_log_kv(GW_LOG_WARN, "rr_lookup_failed", "tid", c->rsp->tid, "upstream",
              gw_upstream_conf_name(gw_upstream_get0_conf(up)), "serial", t->serial, "reason", err, NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      "the certificate to revoke cannot be looked up at the CA now; retry later");
}

/*
 * An RA revokes certificates of its role only (docs/security.md, "Revocation"). An rr names issuer
 * and serial, and Vault revokes by serial alone: so the certificate is looked up at the upstream
 * first, and it must be the one the rr names (that serial, signed by a CA of the upstream's with the
 * issuer name the rr gives) with names the role could have issued. An upstream that cannot look a
 * certificate up lets an RA revoke nothing it does not hold. 0, or refused with |r|; *elsewhere when
 * the upstream did not issue it (it knows no such serial, or its certificate of that serial is not
 * the one named), so that another upstream under that issuer name may be asked. *target: the
 * certificate found, when not refused (the caller's to free).
 */
static int check_ra_target(struct cmp_txn *t, struct cmp_call *c, const X509_NAME *issuer,
                           const ASN1_INTEGER *serial, int *elsewhere, X509 **target, struct cmp_refusal *r)
{
    char err[GW_ERR_LEN] = "", why[GW_ERR_LEN] = "";
    X509 *cert = NULL;
    int fi = 0, refused = 0, rc = gw_upstream_cert_by_serial(t->up, serial, &cert, err);

    *elsewhere = 0;
    if (rc == GW_ERR_NOT_FOUND)
        refused = *elsewhere = cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badCertId, TEXT_NO_SERIAL, t->serial);
    else if (rc == GW_ERR_INVAL)
        refused = no_lookup(t, c, r);
    else if (rc != 0)
        refused = lookup_failed(t, c, t->up, err, r);
    else if (!is_named(t->up, cert, issuer, serial))
        refused = *elsewhere =
            cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badCertId,
                       "the certificate with serial %.60s was not issued by the CA the revocation request "
                       "names: check issuer and serial",
                       t->serial);
    else if (gw_policy_check_names(t->role, cert, copies_cn(c, t), &fi, why) != 0)
        refused = cmp_deny(c, t, "rr_ra_outside_role", r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                           "an RA of role %.64s may revoke only certificates of its role: %.200s",
                           t->role->name, why);
    if (refused)
        X509_free(cert);
    else
        *target = cert;
    return refused;
}

/*
 * Whether an upstream of |ups| (|n|) other than t->up, under a CA of the name the rr gives, issued a
 * certificate of that serial too: "to" and "from" of a migration may have CAs of one name, and CAs that
 * number their certificates from 1 give the same serials. An RA's rr names issuer and serial only, which
 * then fits both, and revoking either may leave valid the one the RA meant (a compromised key). 0, or
 * refused with |r|; a lookup that fails refuses too, since the answer is not known, and so does an
 * upstream that cannot look a certificate up by serial (a CMP CA, cfssl, a local issuer without store),
 * which never knows it.
 */
static int issued_twice(const struct cmp_txn *t, const struct cmp_call *c, struct gw_upstream *const *ups,
                        size_t n, const X509_NAME *issuer, const ASN1_INTEGER *serial, struct cmp_refusal *r)
{
    char err[GW_ERR_LEN] = "";
    X509 *cert = NULL;
    int rc, twice = 0;

    for (size_t i = 0; i < n && !twice; i++) {
        if (ups[i] == t->up)
            continue;
        rc = gw_upstream_cert_by_serial(ups[i], serial, &cert, err);
        if (rc == GW_ERR_INVAL)
            return no_lookup(t, c, r);
        if (rc != 0 && rc != GW_ERR_NOT_FOUND)
            return lookup_failed(t, c, ups[i], err, r);
        twice = rc == 0 && is_named(ups[i], cert, issuer, serial);
        X509_free(cert);
        cert = NULL;
    }
    if (!twice)
        return 0;
    return cmp_refuse(
        r, OSSL_CMP_PKIFAILUREINFO_badCertId,
        "two CAs of this route with the issuer name the revocation request gives have both issued "
        "a certificate with serial %.60s: its holder must revoke it, signing the rr with it",
        t->serial);
}

/*
 * t->up: the upstream among |ups| (|n|) that issued the certificate the rr names: for the holder the
 * one whose CA signed its certificate, for an RA the one whose lookup finds it, unless another's does
 * too (*target, the caller's to free). 0, or refused.
 */
static int pick_revoker(struct cmp_txn *t, struct cmp_call *c, struct gw_upstream *const *ups, size_t n,
                        const X509_NAME *issuer, const ASN1_INTEGER *serial, int as_ra, X509 **target,
                        struct cmp_refusal *r)
{
    int refused = 1, elsewhere = 1;

    for (size_t i = 0; !as_ra && i < n; i++) {
        if (gw_upstream_issued(ups[i], t->signer)) {
            t->up = ups[i];
            return 0;
        }
    }
    if (!as_ra || n == 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badCertId,
                          "the certificate was not issued by this route's CA");
    for (size_t i = 0; i < n && refused && elsewhere; i++) {
        t->up = ups[i];
        refused = check_ra_target(t, c, issuer, serial, &elsewhere, target, r);
    }
    if (!refused && issued_twice(t, c, ups, n, issuer, serial, r) != 0) {
        X509_free(*target);
        *target = NULL;
        refused = 1;
    }
    return refused;
}

/*
 * |target|, which the gateway had no record of, found revoked at the CA already (|how|: its status, or its
 * answer to this revocation): a revocation confirmed, on record as the one asked for would have been
 * (cmp_status_revoked), lest it keep authenticating where its CA's status is not read ("check_revocation":
 * false) or read from a CRL cached before. The CA keeps its own reason and time. Answered certRevoked. 1.
 */
static int revoked_at_ca(struct cmp_txn *t, struct cmp_call *c, const X509_NAME *issuer, X509 *target,
                         const char *source, const char *how, struct cmp_refusal *refusal)
{
    struct gw_audit_rec r;
    char status[GW_ERR_LEN];

    cmp_status_revoked(c->e, t->up, target, c->rsp->tid); /* it authenticates nothing from now on */
    snprintf(status, sizeof(status), "revoked at the CA already (%s); the CA keeps its own reason", how);
    cmp_audit_rec_init(&r, t, c->rsp->tid, "revoked", status);
    if (cmp_audit_write(c->e, &r, 1) != 0)
        gw_log_kv(GW_LOG_ERROR, "audit_lost", "tid", c->rsp->tid, "serial", t->serial, "msg",
                  "the certificate was found revoked but the audit record could not be written", NULL);
    c->audited = 1; /* this record, not a rejected one */
    return already_revoked(t, c, issuer, source, how, refusal);
}

#define KIND_UNKNOWN "outcome unknown"

/*
 * What the client is told when the upstream did not revoke (RFC 9483 §4.2 failInfo; |fail_info| is the
 * upstream's for a refusal), and in *kind what the audit record and the log say: whether the same rr
 * may pass later. A client told to retry retries, so only the upstream's own trouble says so; unless
 * nothing of the call reached the CA (|unsent|), the CA may have acted on it all the same (KIND_UNKNOWN).
 */
static int upstream_failed(const struct cmp_txn *t, int rc, int fail_info, int unsent, const char *err,
                           const char **kind, struct cmp_refusal *r)
{
    *kind = "refused for good";
    if (rc == GW_ERR_NOT_FOUND)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badCertId, TEXT_NO_SERIAL, t->serial);
    if (rc == GW_ERR_REFUSED)
        return cmp_refuse(r, fail_info, TEXT_REFUSED, t->serial);
    *kind = unsent ? "retry later" : KIND_UNKNOWN;
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                      "the CA could not revoke the certificate now (%.150s); retry later", err);
}

/*
 * The upstream did not revoke |target| (|rc|, |fail_info|, |unsent|, its answer in |err|): the client told
 * as upstream_failed says, the log and the audit record what is known. One whose outcome is unknown (no
 * answer in time, a 5xx, an answer that does not read or confirms nothing) may have revoked it at the CA:
 * the CRLs of its CA are read afresh before it authenticates again (cmp_status_invalidate), and the record
 * says to check at the CA. Where its upstream says "check_revocation": false no status is read: the
 * client's retry, which it is told to make, puts the revocation on record (revoked_at_ca). 1.
 */
static int not_revoked(struct cmp_txn *t, struct cmp_call *c, X509 *target, int rc, int fail_info, int unsent,
                       const char *err, struct cmp_refusal *refusal)
{
    const char *up_name = gw_upstream_conf_name(gw_upstream_get0_conf(t->up)), *kind;
    struct gw_audit_rec r;
    char status[GW_ERR_LEN];

    (void)upstream_failed(t, rc, fail_info, unsent, err, &kind, refusal);
    /* the upstream's answer (bounded, control characters replaced by its adapter) stays here */
    gw_log_kv(GW_LOG_WARN, "rr_revoke_failed", "tid", c->rsp->tid, "upstream", up_name, "serial", t->serial,
              "outcome", kind, "reason", err, NULL);
    if (strcmp(kind, KIND_UNKNOWN) == 0) {
        cmp_status_invalidate(c->e, t->up, target);
        snprintf(status, sizeof(status),
                 KIND_UNKNOWN " (retry later): it may be revoked; check at the CA: %.180s", err);
    } else {
        snprintf(status, sizeof(status), "not revoked (%s): %.200s", kind, err);
    }
    cmp_audit_rec_init(&r, t, c->rsp->tid, "revoke_failed", status);
    (void)cmp_audit_write(c->e, &r, 1);
    return 1;
}

/*
 * Intent on record, the upstream call, the outcome on disk before the rp leaves (docs/design.md D8).
 * |target|: the certificate revoked (the holder's, or the one an RA's lookup found), marked as under way.
 */
static int revoke_marked(struct cmp_txn *t, struct cmp_call *c, const X509_NAME *issuer,
                         const ASN1_INTEGER *serial, X509 *target, int reason, int as_ra,
                         struct cmp_refusal *refusal)
{
    const char *up_name = gw_upstream_conf_name(gw_upstream_get0_conf(t->up));
    struct gw_audit_rec r;
    char err[GW_ERR_LEN] = "", status[GW_ERR_LEN];
    int rc, fail_info, unsent = 0;
    int dropped = t->up != NULL && (gw_upstream_caps(t->up) & GW_UP_REVOKE_REASON) == 0;
    int code = reason == CRL_REASON_NONE ? CRL_REASON_UNSPECIFIED : reason;

    snprintf(status, sizeof(status), "revocation requested by the %s; reason %s", as_ra ? "RA" : "holder",
             reason_name(reason));
    cmp_audit_rec_init(&r, t, c->rsp->tid, "intent", status);
    if (cmp_audit_write(c->e, &r, 0) != 0)
        return cmp_refuse(refusal, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "the audit log cannot be written; nothing was revoked");
    c->audited = 1; /* each outcome below writes its own record */
    /* the holder's is the certificate the rr names (authorize_rr): a CMP CA needs it whole */
    rc = as_ra ? gw_upstream_revoke_serial(t->up, issuer, serial, code, &fail_info, &unsent, err)
               : gw_upstream_revoke_cert(t->up, t->signer, code, &fail_info, &unsent, err);
    if (rc == GW_ERR_EXISTS)
        return revoked_at_ca(t, c, issuer, target, "upstream", "the CA's answer to the revocation", refusal);
    if (rc != 0 && rc != GW_ERR_NOT_DURABLE)
        return not_revoked(t, c, target, rc, fail_info, unsent, err, refusal);
    cmp_status_revoked(c->e, t->up, target, c->rsp->tid); /* it authenticates nothing from now on */
    /* Vault takes no reason code (docs/design.md U1.5): this record is where it is kept. A local issuer's
       record its store could not make durable stands and is on its CRLs (it logged that at level error) */
    snprintf(status, sizeof(status), "revoked; reason %s%s%s%.160s", reason_name(reason),
             dropped ? " (kept here only: the upstream takes no reason)" : "",
             rc == GW_ERR_NOT_DURABLE ? "; its record may not outlive a crash of the CA's store: " : "",
             rc == GW_ERR_NOT_DURABLE ? err : "");
    cmp_audit_rec_init(&r, t, c->rsp->tid, "revoked", status);
    if (cmp_audit_write(c->e, &r, 1) != 0)
        gw_log_kv(GW_LOG_ERROR, "audit_lost", "tid", c->rsp->tid, "serial", t->serial, "msg",
                  "the certificate was revoked but the audit record could not be written", NULL);
    gw_log_kv(GW_LOG_INFO, "cert_revoked", "tid", c->rsp->tid, "identity", t->identity, "serial", t->serial,
              "reason", reason_name(reason), "upstream", up_name, NULL);
    return 0;
}

/*
 * |target| revoked unless the gateway revoked it already (its holder's rr, an RA's, a withdrawal), or its
 * CA's status says it is (then on record as revoked, revoked_at_ca): the CA is not asked twice. cfssl and a
 * CMP CA cannot say so, and cfssl would record the second's reason and time over the first's; one under way
 * (a withdrawal of the certificate, an rr on another instance of the cluster) is waited for, at most this
 * upstream's timeout, so that it is not sent in the meantime either. Where the cluster's shared state cannot
 * say or mark it, nothing is sent (fail closed).
 */
static int revoke(struct cmp_txn *t, struct cmp_call *c, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                  X509 *target, int reason, int as_ra, struct cmp_refusal *refusal)
{
    char err[GW_ERR_LEN] = "";
    int rc = cmp_revoked_begin(c->e, target, gw_upstream_timeout_ms(t->up), err);

    if (rc == 1)
        return already_revoked(t, c, issuer, "gateway", "revoked through cmpgw", refusal);
    if (rc != 0) {
        gw_log_kv(GW_LOG_WARN, "rr_not_begun", "tid", c->rsp->tid, "serial", t->serial, "reason", err, NULL);
        /* where the shared state is and what it answered are the operator's (docs/security.md) */
        return cmp_refuse(refusal, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "the gateway cannot begin this revocation now (%.150s); retry later",
                          rc == GW_ERR_BUSY ? err
                          : rc == GW_ERR_UNAVAILABLE
                              ? "the cluster's shared state cannot say whether it was revoked, nor mark it "
                                "as under way"
                              : "whether it was revoked through this gateway cannot be looked up");
    }
    /* asked under the mark: what it finds is on record before another revocation of it begins */
    if (revoked_already(t->up, target))
        rc = revoked_at_ca(t, c, issuer, target, as_ra ? "ra_target" : "upstream",
                           "the CA's status of the certificate", refusal);
    else
        rc = revoke_marked(t, c, issuer, serial, target, reason, as_ra, refusal);
    cmp_revoked_end(c->e, target); /* after cmp_status_revoked: who waited finds it revoked */
    return rc;
}

/*
 * The request's checks refused it (|r|). Its holder asking again to revoke its own certificate, revoked
 * already (through the gateway, or found so at its CA), was refused for its signer's revocation; it is
 * told what it asked about instead, as every rr for a revoked certificate is (the same failInfo, and
 * nothing its signer's refusal would not have told it), logged as such by the credential check
 * (cmp_log_already_revoked, as t->signer_named asks). Only then:
 * the request was checked no further, and no other certificate is revoked, nor the CA asked, on the word
 * of a revoked credential. 1.
 */
static int refused(struct cmp_txn *t, struct cmp_call *c, const ASN1_INTEGER *serial, struct cmp_refusal *r)
{
    if (!t->signer_revoked || !t->signer_named)
        return 1;
    gw_x509_serial_hex(serial, t->serial, sizeof(t->serial));
    snprintf(c->rsp->serial, sizeof(c->rsp->serial), "%s", t->serial);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_certRevoked, TEXT_REVOKED);
}

/*
 * What the rr itself must say: the certificate's issuer and serial (into t->serial), one reason this
 * server revokes with. Nothing is looked up for it: it comes before the request's checks, which ask the
 * CA (or Redis) about the signer.
 */
static int check_named(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *req,
                       const X509_NAME *issuer, const ASN1_INTEGER *serial, int *reason,
                       struct cmp_refusal *r)
{
    if (issuer == NULL || serial == NULL)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badCertId,
                          "the revocation request must name the certificate's issuer and serial number");
    gw_x509_serial_hex(serial, t->serial, sizeof(t->serial));
    snprintf(c->rsp->serial, sizeof(c->rsp->serial), "%s", t->serial);
    if (gw_shim_rr_reason(req, reason) != 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "crlEntryDetails must hold one valid CRLReason (RFC 5280 §5.3.1)");
    /* an un-revocation: a CMP CA may release the hold, Vault and cfssl would revoke instead */
    if (*reason == CRL_REASON_REMOVE_FROM_CRL)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "revocation reason removeFromCRL releases a certificate from hold, which this "
                          "server does not do: ask the CA's operator");
    return 0;
}

/*
 * Who asks, which certificate (an RA's in *target, the caller's to free), why, and which upstream
 * revokes it.
 */
static int check_rr(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
                    const ASN1_INTEGER *serial, int *reason, int *as_ra, X509 **target, struct cmp_refusal *r)
{
    struct gw_upstream *ups[GW_ROLE_ISSUERS];
    size_t n;

    cmp_identify(t, c); /* the refusal's audit record names the signer */
    if (check_named(t, c, req, issuer, serial, reason, r) != 0)
        return 1;
    /* the credential check logs a revoked signer as what refused() answers */
    t->signer_named = names_signer(t, issuer, serial);
    if (cmp_check_request(t, c, r) != 0)
        return refused(t, c, serial, r);
    if (authorize_rr(t, c, issuer, serial, as_ra, r) != 0)
        return 1;
    n = revokers(c, t->role, issuer, ups);
    return pick_revoker(t, c, ups, n, issuer, serial, *as_ra, target, r);
}

OSSL_CMP_PKISI *cmp_rr_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
                          const ASN1_INTEGER *serial)
{
    struct cmp_txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
    struct cmp_call *c = t->call;
    struct cmp_refusal r = {0};
    int reason = CRL_REASON_NONE, as_ra = 0;
    X509 *target = NULL;
    OSSL_CMP_PKISI *si;

    if (check_rr(t, c, req, issuer, serial, &reason, &as_ra, &target, &r) != 0 ||
        revoke(t, c, issuer, serial, as_ra ? target : t->signer, reason, as_ra, &r) != 0) {
        si = cmp_reject(c, &r);
    } else {
        cmp_set_outcome(c, "accepted", NULL);
        si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
    }
    /* refusals are on record too: who tried to revoke what */
    cmp_audit_refusal(c, t);
    X509_free(target);
    return si;
}

void cmp_rr_audit_unread(struct cmp_call *c, struct cmp_txn *t, const OSSL_CMP_MSG *rsp)
{
    struct cmp_refusal r = {0};

    /* OpenSSL 3.0's process_rr counts the RevDetails only after it verified the protection: the signer
       is the one pinned, and tried to revoke what it named */
    if (c->body != GW_CMP_BODY_RR || c->audited)
        return;
    cmp_identify(t, c);
    cmp_classify_error(c, rsp, &r);
    cmp_set_outcome(c, "error", &r);
    cmp_audit_refusal(c, t);
}
