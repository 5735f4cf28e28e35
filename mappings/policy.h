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
#include "../gateway/config.h"
#include "profile.h"

struct gw_role_policy;

/* Who is asking: the TLS client certificate and the CMP identity, as the engine established them. */
struct gw_identity {
    X509 *tls_peer;      /* verified by the listener, or NULL */
    X509 *signer;        /* CMP signature protection: the signer certificate; NULL for PBM */
    const char *pbm_ref; /* PBM: the reference (senderKID); NULL for signature */
};

/*
 * gw_policy_authorize checks |id| against |role|'s authorization at |now|: TLS client certificate
 * required / chaining to tls_trust (with CRLs) / subject and SAN patterns, TLS certificate equal to
 * the CMP signer, signer subject patterns. notAuthorized on failure.
 */
int gw_policy_authorize(const struct gw_role *role, const struct gw_identity *id, time_t now, int *fail_info,
                        char *err);

/*
 * gw_policy_check_request checks what a request asks for (|plan|, after the profile) against the
 * role: common name, DNS/URI/email/IP SAN patterns, key type and size. badCertTemplate (names, key)
 * or notAuthorized (a name the identity may not have) on failure.
 */
int gw_policy_check_request(const struct gw_role *role, const struct gw_cert_plan *plan, int *fail_info,
                            char *err);

/*
 * gw_policy_check_upstream_role checks |plan| against an upstream role's own policy (a delegate
 * issuer applies the upstream's rules it issues on behalf of): names (allowed_domains and the
 * allow_* switches, Vault semantics), IP SANs, key type/bits, validity (max_ttl from |now|).
 */
int gw_policy_check_upstream_role(const struct gw_role_policy *p, const struct gw_cert_plan *plan, time_t now,
                                  int *fail_info, char *err);

/* The verdict on a certificate an upstream returned. */
enum gw_issued_verdict {
    GW_ISSUED_OK = 0,         /* as planned */
    GW_ISSUED_MODIFIED,       /* changed (subject rewritten, names reordered, validity cut) but within
                                 the role's policy: grantedWithMods */
    GW_ISSUED_BAD,            /* wrong key, or does not chain to the upstream's issuer CA: reject */
    GW_ISSUED_OUTSIDE_POLICY, /* names or validity outside the role's policy: revoke upstream, reject */
};

/*
 * gw_policy_check_issued judges |cert| returned by an upstream for |plan|: it must certify the plan's
 * public key, chain (with |chain| as intermediates) to |issuer_store|, and its names, validity, CA
 * flag and key usages must stay within |role|'s policy. Returns the verdict; |err| says why.
 */
enum gw_issued_verdict gw_policy_check_issued(const struct gw_role *role, const struct gw_cert_plan *plan,
                                              X509 *cert, STACK_OF(X509) *chain, X509_STORE *issuer_store,
                                              time_t now, char *err);

/*
 * gw_pattern_match matches |s| (|len| bytes) against glob |pat|: '*' matches any run of characters
 * other than '.', '/' and '='; a '*' that is a whole label or value ("*.example.com", "/CN=*")
 * matches a non-empty one. Exact bytes (the policy checks fold case for DNS names); |s| holding a
 * NUL never matches; O(|pat| * |len|). Exported for tests and config validation.
 */
int gw_pattern_match(const char *pat, const char *s, size_t len);

#endif
