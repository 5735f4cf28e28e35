/*
 * The revocation status of the certificates that authenticate a request, asked of the upstream
 * that issued them (status.c says how), with a CRL cache per CA of each upstream.
 */
#ifndef GW_CMP_STATUS_H
#define GW_CMP_STATUS_H

#include "gateway/cmp/cmp_local.h"
#include "base/log.h"

#include <stdbool.h>

/*
 * cmp_check_credentials checks the revocation status of the certificates that authenticate a
 * request (t->signer, the TLS client certificate): 0 if both may be used (t->credential_status says
 * how that was known), else refused with certRevoked, systemUnavail (status unknown: fail closed)
 * or notAuthorized. A status unknown is logged status_unknown, paced by its outage per CA of each upstream
 * (gw_log_outage_due); the next status had of a certificate of that CA ends it, logged status_recovered.
 */
int cmp_check_credentials(struct cmp_call *c, struct cmp_txn *t, struct cmp_refusal *r);

/*
 * cmp_credentials_code names the docs/errors.md row of |r|, a refusal of cmp_check_credentials, for a
 * log line's reason: credential_revoked, credential_status_unknown, credential_issuer_unchecked, or
 * internal_error (a chain that ends at no trust entry of the role). A static string.
 */
const char *cmp_credentials_code(const struct cmp_refusal *r);

/*
 * cmp_status_invalidate: after |cert| was revoked at |up| through cmpgw, the next check or genm reads a
 * fresh CRL of |cert|'s CA (by name and signature), under any of its keys (an upstream's CAs of that name
 * beside it), at |up| and at every other upstream that issues under it. |cert| NULL: of every CA of |up|,
 * and of no other upstream's.
 */
void cmp_status_invalidate(struct gw_cmp_engine *e, const struct gw_upstream *up, X509 *cert);

/*
 * cmp_status_revoked: |cert| was revoked at |up| through |e| (request |tid|): refused from now on by every
 * generation and instance (revoked.h), and the next checks read fresh CRLs (cmp_status_invalidate). What
 * cannot be kept is logged (revocation_not_kept).
 */
void cmp_status_revoked(struct gw_cmp_engine *e, const struct gw_upstream *up, X509 *cert, const char *tid);

/*
 * cmp_status_withdrawer: the upstream of |e| that can withdraw |cert|: |up| if one of its CAs signed
 * it, else the first of |e| whose CA did (a reload may have removed |up|'s name, or pointed it at
 * another CA); NULL if none. NULL-safe in |up|.
 */
struct gw_upstream *cmp_status_withdrawer(const struct gw_cmp_engine *e, struct gw_upstream *up, X509 *cert);

/*
 * cmp_status_check_crl: |der| as a CRL an upstream may be taken at its word for, with the index in |cas|
 * of the CA that signed it in *ca: one DER CRL of at most GW_MAX_UPSTREAM_BODY bytes, whose issuer
 * is one of |cas| by name and signature, complete (no delta CRL, no issuingDistributionPoint, no
 * critical extension the gateway does not read: it lists every revoked certificate of its CA, RFC
 * 5280 §5.2), with a nextUpdate and a thisUpdate not ahead of |now| by more than the clock skew.
 * The caller frees it. NULL with why in |err| (GW_ERR_LEN), which names no file of the gateway.
 */
X509_CRL *cmp_status_check_crl(const unsigned char *der, size_t len, const STACK_OF(X509) *cas, time_t now,
                               int *ca, char *err);

/*
 * cmp_status_crl_current: whether |crl|, which passed cmp_status_check_crl, may be handed to a client at
 * |now|: its thisUpdate not ahead of |now| by more than the clock skew, and its nextUpdate ahead. 0, or
 * -1 with why in |err| (GW_ERR_LEN).
 */
int cmp_status_crl_current(const X509_CRL *crl, time_t now, char *err);

/* Why a genm's fetch of a CRL gave none to pass on, for its log line. */
enum cmp_crl_fault {
    CMP_CRL_UNSAID = 0, /* the answer says it all (a CRL too large): no log line */
    CMP_CRL_NOT_SERVED, /* the upstream served none */
    CMP_CRL_NOT_PASSED, /* it served one that failed the checks */
};

/* What a genm's fetch of a CRL came to when it gave none to pass on: told alike to those that waited. */
struct cmp_crl_failure {
    struct cmp_refusal refusal; /* the client's answer */
    enum cmp_crl_fault fault;
    char why[GW_ERR_LEN]; /* the log line's reason */
};

enum cmp_relay {
    CMP_RELAY_FETCH,  /* fetch it now, then cmp_status_relay_put */
    CMP_RELAY_HIT,    /* a CRL fetched a moment ago */
    CMP_RELAY_FAILED, /* a fetch a moment ago gave none */
};

/*
 * cmp_status_relay_get: the CRL of |up|'s issuer |ref| (NULL: the default issuer's) for a genm to pass
 * on, in one fetch per GW_GENM_CRL_SECS however many genms ask. CMP_RELAY_HIT with *crl (the caller
 * frees it) when a fetch of |ref| less than that ago gave the CRL of one of |up|'s CAs: that CA's
 * newest, held for the revocation check too, unless a revocation through cmpgw came after it or its
 * nextUpdate passed; CMP_RELAY_FAILED with *f when the fetch it waited for, or one of |ref| less than
 * GW_STATUS_RETRY_SECS ago, gave none (a revocation through cmpgw forgets it); else
 * CMP_RELAY_FETCH: the caller fetches it and then must call cmp_status_relay_put with *ticket, and any
 * other worker asking for a CRL of |up| meanwhile waits for that (single flight). Worker.
 */
int cmp_status_relay_get(struct cmp_call *c, struct gw_upstream *up, const char *ref, X509_CRL **crl,
                         struct cmp_crl_failure *f, unsigned long *ticket);

/*
 * cmp_status_relay_put: what the fetch cmp_status_relay_get asked for came to: |crl| (borrowed), which
 * passed cmp_status_check_crl as the CRL of |up|'s CA |ca| and is filed for that CA unless a newer one
 * is (then *newer is that one, the caller's to free and to pass on instead: the CA served an older CRL
 * than it did before), or NULL and |f|. Wakes the workers that wait. Worker.
 */
void cmp_status_relay_put(struct cmp_call *c, struct gw_upstream *up, const char *ref, X509_CRL *crl, int ca,
                          unsigned long ticket, const struct cmp_crl_failure *f, X509_CRL **newer);

/*
 * cmp_status_issued_due: whether the status_unknown line of a certificate |up| returned goes out now, whose
 * issuer and serial could not be looked up among those revoked through the gateway (cmp_check_serial_reused;
 * not for GW_ERR_UNAVAILABLE: gw_cluster_unavailable_due). Every certificate of |up| meets such a failure
 * while it lasts, so its lines are paced by it, per upstream (gw_log_outage_due), |held| the count of those
 * held back since the last one out (its "suppressed"); cmp_status_issued_known, the next lookup of a
 * certificate of |up| that succeeds, ends the outage, logged status_recovered. An upstream not of |e|'s
 * configuration: always, held "0". Thread-safe.
 */
bool cmp_status_issued_due(struct gw_cmp_engine *e, const struct gw_upstream *up, char held[GW_LOG_HELD_LEN]);
void cmp_status_issued_known(struct gw_cmp_engine *e, const struct gw_upstream *up);

/* cmp_status_init sets up the CRL caches of every upstream. 0 or GW_ERR_NOMEM with |err|. */
int cmp_status_init(struct gw_cmp_engine *e, char *err);

/*
 * cmp_status_cleanup frees the CRL caches. An outage of status_unknown lines still open says the lines it
 * held back since its last one in one more. Safe on a partly built engine.
 */
void cmp_status_cleanup(struct gw_cmp_engine *e);

#endif
