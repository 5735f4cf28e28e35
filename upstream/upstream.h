/*
 * Upstream CAs behind one interface. Each adapter (dialect) implements struct gw_upstream_ops.
 *
 * Calls complete asynchronously: gw_upstream_sign_submit() hands the request over and returns;
 * the adapter calls |done| exactly once, on any thread, possibly before submit returns (the local
 * issuer does). The gateway's requests take the completion without waiting for it (a suspended
 * request, gateway/cmp/suspend.h; a polling role's call, gw_upstream_sign_async). The blocking
 * wrapper gw_upstream_sign_wait() is for in-process callers only (below).
 *
 * Each upstream caps its calls in flight (max_inflight); at the cap, submit fails with
 * GW_ERR_BUSY at once.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>
#include <openssl/x509.h>
#include "base/limits.h"
#include "mappings/profile.h"

struct gw_upstream;
struct gw_upstream_ops; /* upstream/upstream_int.h: what an adapter implements */
struct gw_conf_ctx;
struct gw_conf_field;
struct json_object;

/*
 * An upstream's configuration ("upstreams": {"<name>": {"type": ..., ...}}): the keys every adapter
 * takes are here; the adapter's own section is behind |impl| (upstream/upstream_int.h).
 */
struct gw_upstream_conf {
    char *name;
    const struct gw_upstream_ops *ops; /* the adapter its "type" names */
    uint32_t timeout_ms;
    uint32_t max_inflight;
    bool check_revocation;   /* "check_revocation": false accepts its certificates as credentials unchecked */
    uint32_t probe_interval; /* "probe_interval": seconds between health probes; 0 = none */
    bool fail_fast;          /* "fail_fast": while probes say it is down, refuse at once (systemUnavail) */
    void *impl;              /* the adapter's section */
    /* What every adapter states about the CAs it issues under (filled by its configuration check). */
    X509 *own_ca;                 /* the CA certificate whose key cmpgw holds (a local issuer); else NULL */
    STACK_OF(X509) *issuer_certs; /* what its certificates chain to: own_ca and its chain, or "issuer_ca" */
    X509_STORE *issuer_store;     /* the same, as a store (partial chains); never NULL once checked */
    const char *store_dir;        /* its durable inventory of issued certificates, or NULL */
    bool shared_store;            /* "shared_store": every instance of a cluster sees the same store */
    uid_t owner;                  /* the gateway's user (the process's, unless set): its store's owner */
};

/*
 * The gateway's own signing credential, borrowed by the upstreams (a cmp upstream protects its
 * requests with it unless it has a PBM secret). Outlives them.
 */
struct gw_upstream_signer {
    X509 *cert;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;
};

/* A sign request. The adapter copies or up-refs what it keeps. */
struct gw_sign_req {
    const struct gw_role *role;
    const struct gw_cert_plan *plan; /* the certificate the route wants issued */
    const X509_REQ *csr;             /* p10cr: the client's CSR, unchanged; else NULL */
    const char *request_id;          /* for logs: the transactionID in hex */
};

/* The outcome of a sign call. Owned by whoever holds it; gw_sign_result_cleanup frees it. */
struct gw_sign_result {
    int status;              /* 0, or a negative enum gw_err */
    int fail_info;           /* OSSL_CMP_PKIFAILUREINFO_* bit to report when status != 0 */
    X509 *cert;              /* issued certificate; with status != 0, one the CA issued in an answer the
                                adapter refused: the engine records and withdraws it, never delivers it */
    int rejected_to_ca;      /* with status != 0: |cert| was rejected to the CA in the adapter's certConf,
                                which the CA confirmed (a CMP CA's pkiconf): it revokes the certificate
                                or never publishes it, so the engine records it and does not withdraw it */
    int modified;            /* 1 if the adapter changed the plan (e.g. validity clamped to the CA's) */
    STACK_OF(X509) *chain;   /* issuing CA chain (issuer first); may be NULL */
    char reason[GW_ERR_LEN]; /* human-readable reason when status != 0 */
};

/* |res| is handed over: the callee owns it and must call gw_sign_result_cleanup and free(). */
typedef void (*gw_upstream_done_fn)(void *arg, struct gw_sign_result *res);

/* What an adapter can do; a route that asks for more fails `cmpgw check` (docs/design.md D11). */
enum gw_upstream_cap {
    GW_UP_SIGN_CSR = 1u << 0,    /* signs a PKCS#10 CSR (p10cr) */
    GW_UP_SIGN_KEY = 1u << 1,    /* signs a bare public key / plan (CRMF ir, cr, kur) */
    GW_UP_REVOKE = 1u << 2,      /* revokes by certificate */
    GW_UP_ROLE_POLICY = 1u << 3, /* can describe an upstream role's policy (delegate issuers) */
    GW_UP_CERT_STATUS = 1u << 4, /* can tell whether a certificate it issued is revoked (kur) */
    GW_UP_CRL = 1u << 5,         /* publishes a CRL (gw_upstream_crl) */
    GW_UP_STATUS_AT_ONCE =
        1u << 6, /* cert_status answers from local state without network: ask it every time */
    GW_UP_REVOKE_REASON = 1u << 7, /* records the CRLReason a revocation gives (Vault takes none) */
    GW_UP_CERT_LOOKUP = 1u << 8,   /* finds a certificate it issued by its serial (an RA's rr) */
    GW_UP_ISSUER_CRLS = 1u << 9,   /* serves each issuer's CRL by its issuer_ref (gw_upstream_crl) */
    GW_UP_CN_IN_SANS = 1u << 10,   /* adds an email or hostname CN to the SANs unless exclude_cn_from_sans */
};

/* gw_upstream_new creates the upstream described by |conf| with the gateway's |signer| (both
 * borrowed: they must outlive it; |signer| may be NULL). */
struct gw_upstream *gw_upstream_new(const struct gw_upstream_conf *conf,
                                    const struct gw_upstream_signer *signer, char *err);
/* gw_upstream_free waits (up to GW_DRAIN_TIMEOUT_MS) for calls in flight to complete. NULL-safe.
 * false: calls were still out, and |up| was left alive for them (so must its configuration be). */
bool gw_upstream_free(struct gw_upstream *up);
const struct gw_upstream_conf *gw_upstream_get0_conf(const struct gw_upstream *up);
/* gw_upstream_conf_name is |conf|'s name for logs and reasons, "?" if it has none (NULL-safe). */
const char *gw_upstream_conf_name(const struct gw_upstream_conf *conf);
/* gw_upstream_conf_issuing_ca: the CA that signs |conf|'s certificates: a local issuer's own, else
 * the first of its "issuer_ca"; NULL-safe. */
X509 *gw_upstream_conf_issuing_ca(const struct gw_upstream_conf *conf);
/*
 * gw_upstream_conf_issuing_cas: the CAs |conf| issues end-entity certificates under, up-ref'd (free
 * with sk_X509_pop_free; NULL without memory): a local issuer's own certificate, else those of its
 * issuer_ca that issued no other certificate of that bundle. A root listed only so that chains can be
 * built does not make the certificates it signed directly the upstream's.
 */
STACK_OF(X509) *gw_upstream_conf_issuing_cas(const struct gw_upstream_conf *conf);
/* gw_upstream_conf_type is the "type" of |conf| ("local", "vault", ...), for messages. */
const char *gw_upstream_conf_type(const struct gw_upstream_conf *conf);

/* Returns 0 (|done| will be called exactly once) or GW_ERR_BUSY / GW_ERR_INVAL / GW_ERR_NOMEM (|done| is
 * not called). */
int gw_upstream_sign_submit(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                            void *arg);

/*
 * gw_upstream_sign_wait submits and waits up to the upstream's timeout (worker). |out| is
 * always filled: status 0 with a certificate, or an error with fail_info and reason.
 * In-process callers only (unit tests, fuzzers, the engine of a caller that cannot resume a request):
 * a certificate that completes after the deadline is only logged ("late_issue", with the request id),
 * neither audited nor withdrawn, as this layer has no audit log. No request the gateway serves waits
 * here: the HTTP path suspends (gw_cmp_request.may_suspend), a polling role calls gw_upstream_sign_async.
 */
void gw_upstream_sign_wait(struct gw_upstream *up, const struct gw_sign_req *req, struct gw_sign_result *out);

/*
 * gw_upstream_sign_async is gw_upstream_sign_submit with the adapter's sign call run on a call
 * thread of its own, which also calls |done| when the adapter completes elsewhere (vault's transfer
 * thread), so that the caller can stop waiting and come back later (polling, docs/polling.md). The request is
 * copied: |req| need not outlive the call; |req->role| is borrowed from the config snapshot, which outlives
 * |up|. Call threads are bounded by max_inflight. Returns 0 (|done| is called exactly once, on the call
 * thread, also when the adapter refuses the request) or GW_ERR_BUSY / GW_ERR_INVAL / GW_ERR_NOMEM
 * (|done| is not called). (worker)
 */
int gw_upstream_sign_async(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                           void *arg);

/*
 * Health (docs/operations.md). gw_upstream_probe asks the upstream whether it serves (the adapter's
 * cheapest call: Vault sys/health, cfssl info; an in-process issuer always does; a CMP CA is not
 * probed, see upstream/cmp_up.c) and records the answer; GW_UPSTREAM_DOWN_AFTER failures in a row make it
 * down, one success up again. A down upstream with fail_fast refuses sign calls at once with
 * GW_ERR_UNAVAILABLE instead of letting each wait for its timeout. (prober thread; bounded by the upstream's
 * timeout, and by *end (gw_now_ms; NULL or 0: none), which the prober sets as it stops: a probe in progress
 * then ends GW_UPSTREAM_END_CHECK_MS later at most, and one ended so, or begun after, records nothing)
 */
int gw_upstream_probe(struct gw_upstream *up, const _Atomic uint64_t *end, char *err);

struct gw_upstream_health {
    bool up;                /* true until probes say otherwise */
    bool probed;            /* a probe has answered since start */
    time_t last_probe;      /* when the last probe ended; 0 = never */
    time_t last_ok;         /* when one last succeeded; 0 = never */
    unsigned failures;      /* failed probes in a row */
    char error[GW_ERR_LEN]; /* why the last probe failed; "" after a success */
};

/* gw_upstream_health copies what the probes of |up| found (any thread). */
void gw_upstream_health(struct gw_upstream *up, struct gw_upstream_health *out);

/* gw_upstream_refusal fills |out| with what a client is told when submit returned |rc| (!= 0). */
void gw_upstream_refusal(const struct gw_upstream *up, int rc, struct gw_sign_result *out);

/* gw_upstream_timeout_ms is how long a sign call of |up| may take (its "timeout", or the default). */
uint32_t gw_upstream_timeout_ms(const struct gw_upstream *up);

/*
 * Synchronous extras (worker). Each returns 0, GW_ERR_INVAL if the adapter lacks the capability,
 * or another gw_err with a one-line reason in |err| (GW_ERR_LEN). |reason| is a CRLReason code
 * (CRL_REASON_* of openssl/x509v3.h); an adapter whose upstream takes none (Vault) drops it and the
 * caller records it in the audit log.
 */
unsigned gw_upstream_caps(const struct gw_upstream *up);
/*
 * The CAs an upstream issues under (gw_upstream_conf_issuing_cas: a local issuer's own CA, else those
 * of its issuer_ca that sign no other certificate of that bundle). gw_upstream_issues_under: one of
 * them is named |issuer| (an rr names a certificate by issuer and serial only).
 * gw_upstream_issued: one of them signed |cert| (issuer name, key identifier where both say one, and
 * the signature: a name and key identifier are only what |cert| says). Both 0 for a NULL argument.
 */
int gw_upstream_issues_under(const struct gw_upstream *up, const X509_NAME *issuer);
int gw_upstream_issued(const struct gw_upstream *up, const X509 *cert);
/*
 * gw_upstream_check_signer: 0 if one of |up|'s CAs signed |cert| (gw_upstream_issued), else
 * GW_ERR_POLICY with the reason in |err| (GW_ERR_LEN). A certificate that chains to issuer_ca through
 * another CA under the same root is not one the upstream issues: it could neither withdraw nor
 * revoke it.
 */
int gw_upstream_check_signer(const struct gw_upstream *up, const X509 *cert, char *err);
/*
 * gw_upstream_is_own_ca: whether |ca| is one of the very certificate objects |up| issues under (its
 * issuer_ca's, which its issuer store holds): a chain OpenSSL verified through that store, whose first
 * CA is |ca|, was signed by one of |up|'s CAs, and gw_upstream_check_signer need not verify it again.
 */
int gw_upstream_is_own_ca(const struct gw_upstream *up, const X509 *ca);
/*
 * gw_upstream_revoke_serial revokes the certificate |issuer| (may be NULL: the upstream's own CA)
 * issued with |serial|, as an RA's rr names it (RFC 9483 §4.2). GW_ERR_NOT_FOUND when the upstream
 * issued no such certificate (answer badCertId); GW_ERR_EXISTS when it knows the certificate was
 * already revoked (answer certRevoked; Vault and cfssl cannot tell and answer 0); GW_ERR_REFUSED when
 * the upstream refused this revocation itself, so that asking again will not help (an HTTP 4xx but
 * for the gateway's credentials and the "wait" ones, 408, 412 and 429; a CMP CA's rejection but for
 * its own trouble), with the failInfo a client may be told in *fail_info: badRequest, or the CMP CA's
 * own where it speaks of the revocation asked for. A CMP CA's failInfo is read whole: its certRevoked
 * and badCertId count only alone, and a bit of its refusal of the gateway's own message, or of its own
 * trouble, makes the failure one that may pass. Any other failure may pass: the CA unreachable,
 * late, busy or failing. |err| has the upstream's answer, for the log only. GW_ERR_NOT_DURABLE (a local
 * issuer only): revoked, its record in the store and on its CRLs, but the store could not make the record
 * durable (a failed fsync of its directory; logged at level error, |err| says so): a crash may lose it;
 * gw_upstream_revoke and gw_upstream_revoke_by take it as done (0).
 * gw_upstream_revoke_cert revokes |cert| itself, the same way: by the certificate where the upstream
 * takes one (a CMP CA's rr carries it; OpenSSL 3.0 builds none from issuer and serial alone), else by
 * its issuer and serial; for its holder's rr. gw_upstream_revoke is gw_upstream_revoke_cert that
 * takes an already revoked certificate as done (0), for a withdrawal; gw_upstream_revoke_until is
 * that call ended by |until_ms| (gw_now_ms; 0: none) as well as by the upstream's timeout, for a
 * withdrawal during a drain: past it nothing more is sent, and a call under way is cut short, a
 * failure that may pass whose outcome is unknown. gw_upstream_revoke_by is that call with an end its
 * caller may lower while it runs (*end; 0: none, written with atomic_store): a withdrawal asked before
 * a drain began, whose answer no longer matters once the drain's deadline came. The call reads it before
 * each request it sends and while a transfer waits (GW_UPSTREAM_END_CHECK_MS later at most): an end
 * lowered meanwhile cuts it short there. A failed revocation (any of these; *not_sent NULL for
 * gw_upstream_revoke_serial and gw_upstream_revoke_cert: not wanted) sets *not_sent to 1 where nothing of
 * it the upstream may have acted on reached it (no request left: a check here refused it, a connection or
 * TLS handshake not made, a Vault login waited for; any request answered, a 503 too, counts as sent, since
 * what answered may have passed it on), else to 0: it may have revoked the certificate. Only a revocation
 * gets one: never a sign call, whose certificate the gateway must hear of. Each asks the upstream only about
 * a certificate of its own CAs (gw_upstream_conf_issuing_cas): |cert| signed by one of them, |issuer| the
 * name of one; else nothing is sent, an error is logged, and the answer is GW_ERR_NOT_FOUND with "not the CA
 * of upstream X: revoke ... by hand at its issuer ..." in |err|. (worker)
 */
int gw_upstream_revoke_serial(struct gw_upstream *up, const X509_NAME *issuer, const ASN1_INTEGER *serial,
                              int reason, int *fail_info, int *not_sent, char *err);
int gw_upstream_revoke_cert(struct gw_upstream *up, const X509 *cert, int reason, int *fail_info,
                            int *not_sent, char *err);
int gw_upstream_revoke(struct gw_upstream *up, const X509 *cert, int reason, char *err);
int gw_upstream_revoke_until(struct gw_upstream *up, const X509 *cert, int reason, uint64_t until_ms,
                             char *err);
int gw_upstream_revoke_by(struct gw_upstream *up, const X509 *cert, int reason, const _Atomic uint64_t *end,
                          int *not_sent, char *err);
/*
 * gw_upstream_crl fetches (local: builds or returns the cached) current CRL of |up| as DER into a
 * malloc'd *der of *len bytes (caller free()s); *der is NULL on failure. GW_ERR_INVAL without
 * GW_UP_CRL. |issuer_ref| names which of the upstream's issuers (a role's "issuer_ref": a Vault
 * mount's issuer); NULL is its default issuer, and an upstream that takes no issuer_ref has only
 * that one (|issuer_ref| is not used).
 * (worker; the local issuer's is also fine on a loop thread: no network I/O)
 */
int gw_upstream_crl(struct gw_upstream *up, const char *issuer_ref, unsigned char **der, size_t *len,
                    char *err);
/*
 * gw_upstream_role_policy reads the policy of the upstream's role |role| into |out| (Vault
 * roles/<name>); while probes say |up| is down and it fails fast, nothing is sent and the answer is
 * GW_ERR_UNAVAILABLE. (worker)
 */
int gw_upstream_role_policy(struct gw_upstream *up, const char *role, struct gw_role_policy *out, char *err);
int gw_upstream_cert_status(struct gw_upstream *up, const X509 *cert, int *revoked, char *err);
/*
 * gw_upstream_cert_by_serial finds the certificate |up| issued with |serial| (Vault cert/<serial>, a
 * local issuer's store) into *cert (the caller frees it), as the upstream answers: the caller checks
 * that it is the one it asked for. GW_ERR_NOT_FOUND when the upstream knows no such serial;
 * GW_ERR_INVAL when it cannot look certificates up (no GW_UP_CERT_LOOKUP, a local issuer without a
 * store). (worker)
 */
int gw_upstream_cert_by_serial(struct gw_upstream *up, const ASN1_INTEGER *serial, X509 **cert, char *err);

void gw_sign_result_init(struct gw_sign_result *r);
void gw_sign_result_cleanup(struct gw_sign_result *r);
/* gw_sign_result_fail makes |r| a failure: no certificate, |status|, |fail_info| and the reason. */
void gw_sign_result_fail(struct gw_sign_result *r, int status, int fail_info, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * gw_upstream_check_role checks that the adapter of |up| (the role's upstream) can do what |role|
 * asks, by its caps (docs/design.md D11): a CRMF delegate only where the upstream cannot sign
 * CRMF itself, and a delegate that can. Returns 0 or GW_ERR_INVAL with a one-line reason in |err|
 * (GW_ERR_LEN); what is allowed but weaker (a delegate without the upstream role's policy) is
 * logged as a warning. Called by gw_upstream_set_new and `cmpgw check`.
 */
int gw_upstream_check_role(const struct gw_upstream_conf *up, const struct gw_role *role, char *err);

/*
 * gw_upstream_delegated_for is the upstream a role's CRMF delegate stands in for: the role's
 * upstream, or, when that one signs CRMF itself, its migration's "to" (a move from a CMP CA or a
 * local issuer to a CSR-only CA). NULL-safe.
 */
const struct gw_upstream_conf *gw_upstream_delegated_for(const struct gw_role *role);

/* The upstreams of a config snapshot (|confs|, borrowed), by name; every role is checked with
 * gw_upstream_check_role. What an adapter asks of its upstream as it starts ends by *end as well
 * (gw_now_ms; NULL or 0: none), which its caller may set while it runs (a stop during a reload). NULL
 * with |err| on failure and *|rc| (|rc| may be NULL) its class, the adapter's own: GW_ERR_INVAL for what
 * the configuration asks (a role its upstream cannot serve, a CA key that does not match, a store),
 * GW_ERR_UNAVAILABLE for what the system lacks at this moment (a token_file not written yet),
 * GW_ERR_NOMEM. */
struct gw_upstream_set;
struct gw_upstream_set *gw_upstream_set_new(const struct gw_upstream_conf *confs, size_t n,
                                            const struct gw_role *roles, size_t n_roles,
                                            const struct gw_upstream_signer *signer,
                                            const _Atomic uint64_t *end, int *rc, char *err);
/* gw_upstream_set_free frees every upstream of |set|; false if one was left alive (gw_upstream_free).
 * gw_upstream_set_free_until waits for their calls in flight until |until_ms| (gw_now_ms), all told. */
bool gw_upstream_set_free(struct gw_upstream_set *set);
bool gw_upstream_set_free_until(struct gw_upstream_set *set, uint64_t until_ms);
/* gw_upstream_set_busy tells whether a call to one of |set|'s upstreams is still in flight. */
bool gw_upstream_set_busy(const struct gw_upstream_set *set);
struct gw_upstream *gw_upstream_set_get0(const struct gw_upstream_set *set, const char *name);
/*
 * Configuration (upstream/conf.c). gw_upstream_p_conf is the value parser of one entry of
 * "upstreams" (base/conf.h): the common keys, then the section of the adapter its "type" names,
 * checked by that adapter. gw_upstream_conf_cleanup frees what a parsed |conf| holds.
 */
int gw_upstream_p_conf(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                       const struct gw_conf_field *f);
void gw_upstream_conf_cleanup(struct gw_upstream_conf *conf);

/*
 * gw_upstream_conf_connections is how many connections |conf|'s calls may hold open at once while
 * |threads| threads call it synchronously: an HTTP upstream's "max_connections" for its asynchronous
 * calls and one for each such thread, which keeps a connection of its own; 0 for a local issuer.
 */
uint32_t gw_upstream_conf_connections(const struct gw_upstream_conf *conf, uint32_t threads);

/*
 * gw_upstream_conf_access checks, as the process now runs, what |conf| needs between reloads: its
 * store writable, and the files read again readable (a Vault token read again on 403). Files only
 * a reload reads are not its business. 0, or GW_ERR_IO with the first problem in |err| (GW_ERR_LEN).
 */
int gw_upstream_conf_access(const struct gw_upstream_conf *conf, char *err);

/*
 * gw_upstream_resolve_role finds the upstreams |role| names among |confs| and checks that they can
 * do what it asks: role keys only their adapters take, a delegate that is an issuer cmpgw holds
 * the key of, chaining to the upstream's CA, a crmf_upstream that signs CRMF, poll_after below the
 * timeout. Fills role->upstream, delegate, crmf_upstream and the default upstream_role. 0 or a
 * gw_err with the error set in |pc|.
 */
int gw_upstream_resolve_role(struct gw_conf_ctx *pc, struct gw_role *role,
                             const struct gw_upstream_conf *confs, size_t n);

#endif
