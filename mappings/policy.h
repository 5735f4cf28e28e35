/*
 * Authorization and policy checks of a role. Pure: no I/O, no h2o, no curl (CRLs are in the
 * X509_STOREs the configuration loaded). Deny by default: every check that has something configured
 * must pass. Each failing check returns GW_ERR_POLICY with an OSSL_CMP_PKIFAILUREINFO_* bit in
 * |*fail_info| and a reason fit for a CMP statusString in |err| (GW_ERR_LEN): what was refused and
 * what to do, never an OpenSSL internal.
 */
#ifndef GW_POLICY_H
#define GW_POLICY_H

#include <time.h>
#include <openssl/x509.h>
#include "base/x509.h"
#include "mappings/profile.h"
#include "mappings/role.h"

/* Who is asking: the TLS client certificate and the CMP identity, as the engine established them. */
struct gw_identity {
    X509 *tls_peer;      /* verified by the listener, or NULL */
    X509 *signer;        /* CMP signature protection: the signer certificate; NULL for PBM */
    const char *pbm_ref; /* PBM: the reference (senderKID); NULL for signature */
};

/*
 * gw_policy_authorize checks |id| against |role|'s authorization at |now|: TLS client certificate
 * required / chaining to tls_trust (with CRLs) / subject and SAN patterns, TLS certificate equal to
 * the CMP signer, signer subject patterns. notAuthorized on failure, with *|code| a static snake_case
 * name of the check that refused (docs/errors.md's row: "tls_subject", "signer_subject", ...) for the
 * log, which a text with the client's names and the role's patterns cannot be searched by; NULL on
 * success.
 */
int gw_policy_authorize(const struct gw_role *role, const struct gw_identity *id, time_t now, int *fail_info,
                        char *err, const char **code);

/*
 * gw_policy_check_request checks what a request asks for (|plan|, after the profile) against the
 * role: common name, DNS/URI/email/IP SAN patterns, key type and size. badCertTemplate (names, key)
 * or notAuthorized (a name the identity may not have) on failure.
 */
int gw_policy_check_request(const struct gw_role *role, const struct gw_cert_plan *plan, int *fail_info,
                            char *err);

/*
 * gw_policy_check_names checks the names of an existing certificate |cert| (its subject's common
 * names and its subjectAltNames, and its whole subject against allowed_subjects) against |role|'s
 * patterns and SAN types, as gw_policy_check_request and gw_policy_check_issued check a request's and
 * a certificate's: whether the role could have released a certificate with these names (an RA revokes
 * only certificates of its role). Every subjectAltName, a copy of a common name too, must be of a type
 * the role allows. With |cn_in_sans| (|cert|'s upstream copies the common name into the
 * subjectAltNames, gw_policy_check_cn_copy) and without the role's exclude_cn_from_sans, the last
 * common name is also checked as that copy, carried or not. A role without name patterns or
 * allowed_subjects allows any; an empty subject is left to the other names; a CA certificate
 * (gw_policy_check_issued refuses one from every upstream) is no role's. 0, or notAuthorized with
 * |err| naming the first name outside the role, or what makes it a CA certificate.
 */
int gw_policy_check_names(const struct gw_role *role, X509 *cert, int cn_in_sans, int *fail_info, char *err);

/* What an upstream role writes into a certificate in place of the request's (gw_policy_check_upstream_role).
 */
struct gw_upstream_names {
    X509_NAME *subject;     /* the caller's to free */
    GENERAL_NAMES *sans;    /* the request's and the one the role adds for the CN; NULL: the request's */
    unsigned key_usage;     /* KU_* bits the role writes into every certificate, never keyCertSign/cRLSign */
    unsigned ext_key_usage; /* enum gw_eku bits it writes likewise (its flags, names and known OIDs) */
};

/*
 * gw_policy_check_cn_copy checks the name an upstream that copies the common name into the
 * subjectAltNames (Vault, unless |role|'s exclude_cn_from_sans) adds for |plan|'s last CN (an email
 * address as an email name, a hostname as a DNS name; none when the plan lists it already) as a
 * requested one: its type in |role|'s allowed_san_types, its value within the role's patterns, an
 * email address in ASCII. badCertTemplate otherwise: such a certificate would come back with a name
 * the role does not issue.
 */
int gw_policy_check_cn_copy(const struct gw_role *role, const struct gw_cert_plan *plan, int *fail_info,
                            char *err);

/*
 * gw_policy_check_upstream_role checks |plan| of |role| against an upstream role's own policy |p| (a
 * delegate issuer applies the upstream's rules it issues on behalf of), as Vault's sign/<role> does:
 * the common name it takes (use_csr_common_name, require_cn, cn_validations, with |role|'s
 * exclude_cn_from_sans), serialNumber (allowed_serial_numbers unless serial_number_source is "json")
 * and UIDs (allowed_user_ids), names (allowed_domains and the allow_* switches), IP SANs, URI SANs
 * (allowed_uri_sans), key type/bits, validity (max_ttl from |now|); badCertTemplate naming the rule.
 * With |out|, out->subject is then the subject Vault would write instead of the requested one: the
 * role's country, province, locality, street_address, postal_code, organization and ou, then the
 * request's last CN and serialNumber where Vault takes them, and its UIDs; systemUnavail if it
 * cannot be built (a role value OpenSSL cannot encode). And out->sans the request's SANs with the
 * CN Vault adds unless |role|'s exclude_cn_from_sans (an email address, or a hostname as a DNS name),
 * where the plan lacks it: badCertTemplate if |role|'s SAN types or patterns do not allow it
 * (gw_policy_check_cn_copy). That subject must be within |role|'s allowed_subjects, as the
 * certificate's is (badCertTemplate, gw_policy_check_issued's reason). And out->key_usage and
 * out->ext_key_usage the usages the upstream role writes into every certificate (|p|'s, without
 * keyCertSign and cRLSign: the certificate is an end entity's), in place of |role|'s: whether they
 * are within |role|'s is gw_policy_check_upstream_grants's to say, before this.
 */
int gw_policy_check_upstream_role(const struct gw_role *role, const struct gw_role_policy *p,
                                  const struct gw_cert_plan *plan, time_t now, struct gw_upstream_names *out,
                                  int *fail_info, char *err);

/*
 * gw_policy_check_csr checks the extensions |csr| asks for against |role|, for a CA that copies
 * them into the certificate (Vault's sign-verbatim), deny by default: one extensionRequest
 * attribute with one value (gw_x509_req_extensions), no extension twice, and each one the role
 * shapes (subjectAltName, keyUsage and extendedKeyUsage within the role's, basicConstraints an end
 * entity's), a subjectKeyIdentifier, or one of the role's allowed_extensions; not what a CA writes of
 * its own (cRLDistributionPoints, authorityInfoAccess, certificatePolicies, ...). badCertTemplate on
 * failure: the client can send a CSR without them.
 */
int gw_policy_check_csr(const struct gw_role *role, const X509_REQ *csr, int *fail_info, char *err);

/*
 * gw_policy_check_upstream_grants checks the usages upstream role |upstream_role| puts into every
 * certificate it signs (|p|: key_usage, ext_key_usage, other_eku) against |role|'s key_usage and
 * ext_key_usage, before it is asked to sign. systemUnavail on failure, naming what it grants and
 * the upstream role's settings to restrict: the client can change nothing, an operator must.
 */
int gw_policy_check_upstream_grants(const struct gw_role *role, const char *upstream_role,
                                    const struct gw_role_policy *p, int *fail_info, char *err);

/* The verdict on a certificate an upstream returned. */
enum gw_issued_verdict {
    GW_ISSUED_OK = 0,         /* as planned */
    GW_ISSUED_MODIFIED,       /* changed (subject attributes left out or reordered, a name dropped,
                                 validity cut, or longer than asked) but within the role's policy:
                                 grantedWithMods */
    GW_ISSUED_BAD,            /* wrong key, or does not chain to the upstream's issuer CA: reject */
    GW_ISSUED_OUTSIDE_POLICY, /* names, usages, extensions or validity outside the role's policy, or a
                                 name or subject attribute the request did not ask for: revoke
                                 upstream, reject */
};

/*
 * gw_policy_check_issued judges |cert| returned by an upstream for |plan|: it must certify the plan's
 * public key, chain (with |chain| as intermediates) to |issuer_store|, and stay within |role|'s
 * policy: end entity only (basicConstraints absent or cA FALSE), keyUsage and extendedKeyUsage within
 * the role's (and present where the role has any: absent is any usage), only standard extensions
 * and the role's allowed_extensions, no copy (the same OID and value) of an extension the CSR asked
 * for (plan->csr_exts) that a CSR the CA copies may not carry (gw_policy_check_csr), names within
 * the role's patterns and no name the plan lacks (a copy of a planned CN aside), the planned subject
 * or some of its attributes (the same type and text, each once, in any order; none only if the role
 * does not require a subject), validity within max_ttl from its notBefore or, if earlier, the plan's
 * (never from |now|, the time of the check: a certificate released long after it was issued would
 * carry the wait on top), notBefore no earlier than the plan's by more
 * than GW_ISSUED_BACKDATE_SLACK (CAs backdate a little: Vault 30 s, cfssl 5 min; the plan's, not |now|,
 * since a deferred certificate is judged when a pollReq collects it). A reduced subject, a dropped name,
 * a shorter validity, or a longer one than the client asked for (plan->not_after_asked) is
 * GW_ISSUED_MODIFIED. Returns the verdict; |err| says why. With |path|, a
 * certificate that may be released (GW_ISSUED_OK, GW_ISSUED_MODIFIED) has the chain it was verified on
 * into *path (the caller's): its issuer first, up to the issuer_store certificate it ends at, then
 * the CAs that signed that one (gw_x509_chain_extend, the links in |links| not verified again), each
 * of issuer_store where it has one, else of |chain|; none of |chain|'s other certificates; else *path
 * is NULL. Those of |chain| are the upstream's word, checked by signature only: a root of its own may
 * sit above a certificate it made with the real root's name and key, so none of them is a trust anchor.
 */
enum gw_issued_verdict gw_policy_check_issued(const struct gw_role *role, const struct gw_cert_plan *plan,
                                              X509 *cert, STACK_OF(X509) *chain, X509_STORE *issuer_store,
                                              struct gw_x509_links *links, time_t now, STACK_OF(X509) **path,
                                              char *err);
/*
 * gw_policy_check_issued_with is gw_policy_check_issued with |issuer_certs|, the certificates of
 * |issuer_store| as X509_STORE_get1_all_certs lists them, which the path above issuer_store's
 * certificate takes first; NULL: the path ends there. gw_policy_check_issued lists them on each call
 * with |path|; a caller that checks many certificates against one store lists them once (the CMP engine,
 * at each configuration load) and shares the list, which this only reads, with every thread.
 */
enum gw_issued_verdict gw_policy_check_issued_with(const struct gw_role *role,
                                                   const struct gw_cert_plan *plan, X509 *cert,
                                                   STACK_OF(X509) *chain, X509_STORE *issuer_store,
                                                   STACK_OF(X509) *issuer_certs, struct gw_x509_links *links,
                                                   time_t now, STACK_OF(X509) **path, char *err);

/*
 * gw_policy_weak_why says why a chain fails OpenSSL's security level (X509_verify_cert's error |code|
 * at |depth|: a signature or key under 112 bits of security), in the words of an upstream's refused
 * chain ("is signed with a hash under 112 bits of security (SHA-1, MD5)"); NULL for any other error.
 */
const char *gw_policy_weak_why(int code, int depth);

/*
 * gw_policy_issued_refusal is what a client is told of a certificate gw_policy_check_issued refused
 * with verdict |v| (GW_ISSUED_BAD or GW_ISSUED_OUTSIDE_POLICY) and reason |why|: the failInfo bit it
 * returns and the statusString in |text| (GW_ERR_LEN). Content outside the role's policy is
 * badCertTemplate, whether the CA derived it from the request or added it (the text names what to
 * narrow); a certificate for another key, not under issuer_ca or malformed is the CA's fault, not the
 * request's: systemFailure (RFC 9810 §5.2.3), the client can change nothing to fix it.
 */
int gw_policy_issued_refusal(enum gw_issued_verdict v, const char *why, char *text);

/*
 * gw_pattern_match matches |s| (|len| bytes) against glob |pat|: '*' matches any run of characters
 * other than '.', '/' and '='; a '*' that is a whole label or value ("*.example.com", "/CN=*")
 * matches a non-empty one. Exact bytes (the policy checks fold case for DNS names, and stop a URI's '*'
 * at '?', '#', '@', '%', ':' and a backslash too); |s| holding a NUL never matches; O(|pat| * |len|).
 * Exported for tests and config validation.
 */
int gw_pattern_match(const char *pat, const char *s, size_t len);

/*
 * gw_subject_match matches one-line subject |s| (|len| bytes, as gw_x509_name_line writes it: no '/' or
 * backslash inside a value) against subject pattern |pat| ("/O=x/CN=dev-*"): RDN by RDN ('/' before each),
 * the attributes of each (a '+' between them; a value's "\+" is no boundary) paired off one for one in any
 * order (a SET, which DER sorts), at most GW_MAX_RDN_ATTRS, each read as gw_pattern_match reads it, so a '*'
 * never reaches into another attribute. In an emailAddress value a '*' matches no '@' either, and a value
 * with more than one '@' matches no pattern. |s| holding a NUL never matches; O(|pat| * |len|).
 */
int gw_subject_match(const char *pat, const char *s, size_t len);

#endif
