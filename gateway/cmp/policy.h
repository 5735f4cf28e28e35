/*
 * The CMP engine's policy glue (policy.c): engine-wide state, the checks every request passes,
 * authorization, the upstream that signs, and the 3GPP checks.
 */
#ifndef GW_CMP_POLICY_H
#define GW_CMP_POLICY_H

#include <openssl/cmp.h>
#include <openssl/x509.h>
#include "gateway/cmp/cmp_local.h"

#define TEXT_TID_IN_USE "transactionID already in use: start a new transaction with a fresh transactionID"
/* What a reload since a transaction began took from its sender (cmp_check_current, cmp_check_record). */
#define TEXT_SECRET_CHANGED                                                                                  \
    "the secret of this PBM reference was changed by a configuration reload after this transaction began: "  \
    "start a new transaction with the current secret"
#define TEXT_SECRET_REMOVED                                                                                  \
    "this PBM reference was removed by a configuration reload after this transaction began: start a new "    \
    "transaction with a reference the route accepts"
#define TEXT_NO_LONGER_TRUSTED                                                                               \
    "the signer certificate no longer chains to a CA trusted on this route (the configuration was reloaded " \
    "after this transaction began): start a new transaction with credentials the route trusts"
/* A transaction's later message on a path that does not serve its role (cmp_check_path). */
#define TEXT_OTHER_PATH                                                                                      \
    "this transaction was begun on a path of another role: send its certConf, pollReq and error messages "   \
    "to the path of its request"

/* cmp_policy_init opens the audit log and builds the issuer stores and caches: 0 or a gw_err with |err|. */
int cmp_policy_init(struct gw_cmp_engine *e, char *err);

/* cmp_policy_cleanup frees what cmp_policy_init made; safe on a partly built engine. */
void cmp_policy_cleanup(struct gw_cmp_engine *e);

/* cmp_describe_call fills what the audit records of this request say about where it came from. */
void cmp_describe_call(struct cmp_call *c);

/*
 * cmp_quota_key: whose share of the per-identity caps (cmp.max_transactions_per_identity,
 * max_recent_per_identity) a request of |identity| over |tls_client| (cmp_call.tls_client) takes, into
 * |out| (GW_QUOTA_KEY_LEN). With a TLS client certificate, "<tls_client> <identity>": devices sharing
 * a credential (a batch's PBM secret) each have a share, and none can use up another's. Without one,
 * or when its hash could not be made, the identity alone, as older instances count. A client has one
 * share per identity and TLS certificate it holds, and nothing else it sends gets it another. No
 * identity begins with "sha256:" ('/', "pbm:", "unknown") and a tls_client has one length: no key of
 * one reads as another's.
 */
void cmp_quota_key(char *out, const char *identity, const char *tls_client);

/*
 * cmp_identity_of: into |out| (GW_IDENTITY_LEN) the identity of a sender: "pbm:<kid>" for |pbm|, else
 * |name| as gw_x509_name_identity writes it, or "unknown" without one.
 */
void cmp_identity_of(char *out, int pbm, const unsigned char *kid, size_t kid_len, const X509_NAME *name);

/*
 * cmp_identify: who sent the request: the authenticated signer's subject (auth.c), or "pbm:<ref>";
 * and, from that and t->tls_client, its share of the caps (t->quota).
 */
void cmp_identify(struct cmp_txn *t, struct cmp_call *c);

/* cmp_check_request (freshness.c), once the caller has said who sent it (cmp_identify): in this order
 * messageTime, the replays this instance knows, credentials, authorization, replay (recorded, and in a
 * cluster asked of the shared state). 0, and the sender proven (gw_cmp_response.proven); or 1, refused with
 * |r|. */
int cmp_check_request(struct cmp_txn *t, struct cmp_call *c, struct cmp_refusal *r);

/* cmp_authorize: both the TLS client certificate and the CMP identity must be allowed on the role: 0, or
 * refused with |r|, which is written only then. */
int cmp_authorize(struct cmp_call *c, const struct cmp_txn *t, struct cmp_refusal *r);

/* cmp_role_named is the role of |e| named |name|, or NULL. */
const struct gw_role *cmp_role_named(const struct gw_cmp_engine *e, const char *name);

/*
 * cmp_issued_for_role tells whether one of |role|'s upstreams (gw_role_issuers: those rr revokes its
 * certificates through) issued |cert|: a CA it issues under, or one above that in its configuration
 * (issuer_certs: a local issuer's cert and chain, issuer_ca), signed it. An operator's certificate, not
 * a vendor's.
 */
int cmp_issued_for_role(struct cmp_call *c, const struct gw_role *role, X509 *cert);

/*
 * cmp_signer_issued is cmp_issued_for_role(c, t->role, t->signer), chains verified once a message
 * (kept in c->signer_issued): a kur on a route with a device allow-list asks it for the list's
 * exemption and again for the kur rule. |t| is the one transaction of |c|, its signer set.
 */
int cmp_signer_issued(struct cmp_call *c, const struct cmp_txn *t);

/*
 * cmp_check_current holds a message continuing |t| (certConf, pollReq) to the configuration in
 * force, |now|, when a reload came since |t| began: its role must still be there, its pinned signer
 * chain to that role's trust (or its PBM reference keep its secret), and its credentials and
 * authorization pass as for a new request there. What refuses it goes to c->stale, for the certConf
 * (one that accepts) and pollReq callbacks to answer with: that closes |t|, its certificate
 * withdrawn through the upstream that issued it. Nonzero, refused with |r| and |t| left open, only
 * when that cannot be known now (systemUnavail). 0 at once when |t| began under |now|. On a path the
 * running configuration no longer serves (gw_cmp_request.gone) it is refused as its role were removed.
 */
int cmp_check_current(struct cmp_call *c, struct gw_cmp_engine *now, struct cmp_txn *t,
                      struct cmp_refusal *r);

/*
 * cmp_route_profile: gw_route_profile for the request of |c| naming the certProfile |name|, |*role| set
 * on 0; a refusal's statusString goes to |text| (GW_ERR_LEN) and is logged as profile_refused with
 * which it was (profile_unknown, profile_mismatch), since the client's answer is one for both; paced.
 */
int cmp_route_profile(struct cmp_call *c, const char *name, const struct gw_role **role, char *text);

/*
 * cmp_check_path: whether the path |c| came on serves the transaction of the role named |role| whose
 * request named the certProfile |profile| ("" for none), under the configuration of |now|, which
 * matched the path: the role that path gives that request must be |role|. RFC 9483 clients send every
 * message of a transaction to the path of its request; the paths that give it its role (the role's, a
 * label's, a default path's) are one, since they trust and authorize alike. 0, or refused with |r|
 * (badRequest, which costs the address nothing) and logged txn_other_path: the transaction is its own
 * sender's, and stays open for its message on its path. A role |now| lacks and a path it lost
 * (gw_cmp_request.gone) pass: cmp_check_current and the engine answer them as a reload's.
 */
int cmp_check_path(struct cmp_call *c, const struct gw_cmp_engine *now, const char *role, const char *profile,
                   struct cmp_refusal *r);

/*
 * cmp_check_record holds the sender of a transaction another instance began, on the role named |role|
 * (its record's), to the running configuration of c->e, as cmp_check_current holds one begun here: |t|
 * is its view from the record's request (made under c->e, with the signer found to sign the message
 * and the request's certificates as its chain), so a PBM secret is compared with none older: the
 * caller tells a changed one. 0, or refused with |r| (systemUnavail: not known now).
 */
int cmp_check_record(struct cmp_call *c, struct cmp_txn *t, const char *role, struct cmp_refusal *r);

/*
 * cmp_check_allowlist: a 3GPP route's device allow-list (TS 33.310 §9.5), part of the authorization of
 * the ir/cr/kur |crm| or the p10cr: 0 when the role has none or the signer passes it, or refused with
 * |r| (notAuthorized) and logged.
 */
int cmp_check_allowlist(struct cmp_call *c, const struct cmp_txn *t, const OSSL_CRMF_MSG *crm,
                        struct cmp_refusal *r);

/*
 * cmp_check_popo_hash refuses, on every route, a POPO signature of the ir/cr/kur |crm| or the
 * self-signature of the p10cr's CSR |p10cr| whose hash is under GW_MIN_POPO_HASH_BITS (SHA-1, MD5),
 * which OpenSSL 3.0 verifies as any other: 0, or refused with |r| (badAlg) and logged weak_popo.
 */
int cmp_check_popo_hash(struct cmp_call *c, const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr,
                        struct cmp_refusal *r);

/*
 * cmp_check_popo_input refuses, on every route, an ir/cr/kur |crm| whose POPO signature signs a
 * poposkInput (RFC 4211 §4.1) instead of the certReq, which OpenSSL 3.0 verifies whatever the
 * template holds: 0, or refused with |r| (badPOP) and logged popo_input.
 */
int cmp_check_popo_input(struct cmp_call *c, const OSSL_CRMF_MSG *crm, struct cmp_refusal *r);

/*
 * cmp_check_min_hash holds the request's protection and its POPO or CSR signature to the role's
 * "min_hash" (3GPP TS 33.310 §9.5), the stricter floor of a route: 0, or refused with |r| (badAlg).
 */
int cmp_check_min_hash(struct cmp_call *c, const struct cmp_txn *t, const OSSL_CRMF_MSG *crm,
                       const X509_REQ *p10cr, struct cmp_refusal *r);

/*
 * cmp_pick_upstream chooses the upstream that signs |plan| into |*up|: the role's for a p10cr; for
 * CRMF the role's if it signs bare keys, else as the role's "crmf" says (refused, or its delegate,
 * which issues |plan| with the subject and SANs its upstream's role writes: plan->subject and
 * plan->sans are replaced). A migrating role's request goes where its cohort says now.
 */
int cmp_pick_upstream(struct cmp_call *c, const struct cmp_txn *t, struct gw_cert_plan *plan,
                      const X509_REQ *p10cr, struct gw_upstream **up, struct cmp_refusal *r);

/*
 * cmp_replan_upstream plans a deferred request another instance began for |up|, the upstream its record
 * names (whose call made it), as cmp_pick_upstream planned it there: a delegate's plan gets the subject
 * and SANs of the upstream role it stands in for. Not for the upstream this configuration would pick now:
 * a migration's next step, reloaded here first, must not plan for another CA the certificate its record's
 * upstream issues. Without the checks and records that happened there (shadow mode, the usages granted).
 * 0, or refused with |r|.
 */
int cmp_replan_upstream(struct cmp_call *c, const struct cmp_txn *t, struct gw_cert_plan *plan,
                        struct gw_upstream *up, struct cmp_refusal *r);

/* cmp_issuer_store is what certificates from |up| must chain to, or NULL if nothing is configured. */
X509_STORE *cmp_issuer_store(const struct gw_cmp_engine *e, const struct gw_upstream *up);

/*
 * cmp_check_issued: the verdict on |cert| (and the |chain| sent with it) that |up| returned for
 * |plan|, a request to |role|, at |now|: gw_policy_check_issued against |up|'s issuer_ca, then
 * whether |up| signed it itself (gw_upstream_check_signer). Worker or call thread, with |e| alive.
 * On GW_ISSUED_OK or GW_ISSUED_MODIFIED *path (unless |path| is NULL) gets the chain verified up to
 * issuer_ca (the caller's); otherwise the reason is in |err| (GW_ERR_LEN).
 */
enum gw_issued_verdict cmp_check_issued(const struct gw_cmp_engine *e, const struct gw_role *role,
                                        const struct gw_upstream *up, const struct gw_cert_plan *plan,
                                        X509 *cert, STACK_OF(X509) *chain, time_t now, STACK_OF(X509) **path,
                                        char *err);

/*
 * cmp_check_serial_reused: whether |cert|, which |up| returned in the transaction |tid| and
 * cmp_check_issued released, has the issuer and serial of a certificate revoked through this gateway
 * (cmp_revoked_check, the shared set included), or of another certificate among the last
 * GW_RECENT_ISSUED this process let through (cmp_recent_note, which then takes |cert| in): its CA issued
 * that serial again, or another CA under the same issuer name did, and wherever revocation goes by issuer
 * and serial the two are one. 0: it has not.
 * CMP_SERIAL_REUSED: it has, logged cert_serial_reused; not to be revoked (the serial is revoked already,
 * or revoking it would revoke the earlier, valid certificate). CMP_SERIAL_UNCHECKED: it cannot be told
 * (the shared state does not answer), logged. Either way *fail_info and |text| (GW_ERR_LEN) say what the
 * client is told. Worker or call thread, with |e| alive.
 */
#define CMP_SERIAL_REUSED 1
#define CMP_SERIAL_UNCHECKED 2
int cmp_check_serial_reused(struct gw_cmp_engine *e, const struct gw_upstream *up, X509 *cert, time_t now,
                            const char *tid, int *fail_info, char *text);

#endif
