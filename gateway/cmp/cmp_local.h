/*
 * Internal sharing of the CMP engine: cmp_engine.c (per-request dispatch, pre-checks, refusals,
 * error rewriting), cmp_srv.c (per-transaction SRV_CTX and its OpenSSL callbacks) and
 * cmp_policy.c (authorization, upstream choice, result checks and audit records around them).
 */
#ifndef GW_CMP_LOCAL_H
#define GW_CMP_LOCAL_H

#include <pthread.h>
#include <openssl/cmp.h>
#include "gateway/cmp/audit.h"
#include "gateway/cmp/engine.h"
#include "gateway/cmp/shim.h"
#include "gateway/cmp/replay.h"
#include "gateway/cmp/txn.h"
#include "mappings/profile.h"
#include "gateway/cmp/cert_req.h"
#include "upstream/store.h"
#include "upstream/upstream.h"

/* An upstream role's policy, read for a delegate issuer or for the usages it grants, and kept
 * GW_ROLE_POLICY_TTL seconds. */
struct cmp_role_policy {
    pthread_mutex_t lock; /* held across a fetch: one fetch per role at a time, not one per request */
    int valid;
    time_t fetched;
    time_t failed; /* when the last read failed; 0 after a success */
    struct gw_role_policy policy;
};

struct gw_cmp_engine {
    struct gw_cmp_settings cfg; /* a copy; what it points to is borrowed */
    struct gw_upstream_set *ups;
    struct gw_txn_table *txns;
    struct gw_replay *replay;
    struct gw_audit *audit;
    X509_STORE **issuer_stores;            /* per cfg.upstreams[i]: what its certificates must chain to */
    struct cmp_role_policy *role_policies; /* per cfg.roles[i] */
    time_t (*clock)(void);                 /* tests only; NULL = time(NULL) */
    struct cmp_pending *pending;           /* upstream calls still running (cmp_poll.c's lock) */
    struct cmp_crl_cache *crls;            /* per cfg.upstreams[i]: its CRL (cmp_status.c) */
};

/*
 * How a check refuses a request, everywhere in gateway/cmp: it returns 0 to let the request go on,
 * or fills a struct cmp_refusal (the failInfo bit and the statusString the client gets) and
 * returns nonzero. cmp_refuse fills one and returns 1, so that a check ends in
 * "return cmp_refuse(r, ...)"; cmp_reject and cmp_fail turn a refusal into OpenSSL's answer.
 */
struct cmp_refusal {
    int fail_info; /* OSSL_CMP_PKIFAILUREINFO_* bit */
    char text[GW_ERR_LEN];
};

/* How a certConf ended, as the callback saw it. */
enum cmp_confirm {
    CMP_CONFIRM_NONE = 0, /* the callback did not run (3.0: an empty CertStatus list is a rejection) */
    CMP_CONFIRM_ACCEPTED,
    CMP_CONFIRM_REJECTED,
    CMP_CONFIRM_FAILED, /* certHash mismatch */
};

struct cmp_pending;

/* One request being processed on a worker; lives on that worker's stack. */
struct cmp_call {
    struct gw_cmp_engine *e;
    const struct gw_cmp_request *req;
    struct gw_cmp_response *rsp;
    const struct gw_role *role;
    const struct gw_pbm_conf *pbm; /* PBM: the credential the senderKID names, allowed on the role */
    struct gw_hdr_info hdr;
    int body;
    time_t now;
    int reserved; /* holds a slot for hdr.tid in the txn table */
    int audited;  /* the outcome record of this request is written */
    int released; /* this pollReq delivered the certificate of a deferred request */
    enum cmp_confirm confirm;
    struct cmp_refusal fail; /* fail_info >= 0: a callback chose the error's failInfo and text */
    char diag[GW_ERR_LEN];   /* first OpenSSL diagnostic captured by the log cb */
    char route[GW_MAX_PATH_LEN];
    char tls_subject[GW_IDENTITY_LEN];
};

/* The state of one transaction: its SRV_CTX and who may continue it. Owned by a struct gw_txn. */
struct cmp_txn {
    OSSL_CMP_SRV_CTX *srv;
    const struct gw_role *role;
    int pbm; /* PBM-protected: continue only with the same senderKID */
    unsigned char kid[GW_MAX_KID_LEN];
    size_t kid_len;
    char pbm_ref[GW_MAX_KID_LEN + 1]; /* |kid| as a string, for authorization */
    X509_NAME *sender;                /* the request's sender DN */
    X509 *signer;                     /* signature: who signed the request */
    X509 *issued;                     /* our reference to the certificate issued */
    struct gw_upstream *up;           /* the upstream that issued it (borrowed from the engine's set) */
    char identity[GW_IDENTITY_LEN];
    char credential_status[2 * GW_ERR_LEN]; /* how the signer's and TLS certificate's status was known */
    char serial[2 * 20 + 1];
    /* for the audit records of later messages (certConf, expiry) */
    char route[GW_MAX_PATH_LEN];
    char tls_subject[GW_IDENTITY_LEN];
    char body[16];
    struct cmp_call *call; /* the request in progress, NULL between requests */
    /* poll_after (docs/polling.md): a deferred request waits here for its upstream call */
    struct cmp_pending *pending; /* the call (one reference); NULL if nothing was deferred */
    OSSL_CMP_MSG *request;       /* the deferred request; OpenSSL re-runs it on release (cmp_poll.c) */
    struct gw_cert_plan *plan;   /* its plan, for the result checks on release */
    int release;                 /* pollReq found the result: the next cert-request callback delivers it */
    int on_record;               /* the completion wrote the "issued" record */
};

#define TEXT_UNTRUSTED                                                                                       \
    "message protection could not be verified: the signer certificate is not issued by a CA "                \
    "trusted on this route"
#define TEXT_BAD_SIGNATURE                                                                                   \
    "message protection could not be verified: the signature does not match the signer certificate"

#define TEXT_KEY_LIMITS                                                                                      \
    "a key in this request is above this server's limits: RSA keys up to 8192 bits with a public "           \
    "exponent below 2^32"

/* cmp_auth.c: whether verifying a signature with |key| has a bounded cost (RSA size and exponent). */
int cmp_key_affordable(const EVP_PKEY *key);

/*
 * cmp_auth.c: chooses the one certificate that signed |msg| among those naming its sender and
 * chaining to the role's trust, and pins it on |t|'s context (t->signer). 0 if authenticated or
 * left to OpenSSL (PBM, no trust on the role); else refused with |r|.
 */
int cmp_authenticate(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r);

/*
 * cmp_status.c: the revocation status of the certificates that authenticate a request (t->signer,
 * the TLS client certificate). 0 if both may be used (t->credential_status says how that was
 * known), else refused with certRevoked, systemUnavail (status unknown: fail closed) or notAuthorized.
 */
int cmp_check_credentials(struct cmp_call *c, struct cmp_txn *t, struct cmp_refusal *r);
/* The upstream whose CA (|*ca|, config index |*index|) issued |cert|, by issuer name and AKI; or NULL. */
struct gw_upstream *cmp_issuer_upstream(const struct gw_cmp_engine *e, const X509 *cert, X509 **ca,
                                        size_t *index);
/* After a revocation through cmpgw at |up|: its next status check reads a fresh CRL. */
void cmp_status_invalidate(struct gw_cmp_engine *e, const struct gw_upstream *up);
int cmp_status_init(struct gw_cmp_engine *e, char *err);
void cmp_status_cleanup(struct gw_cmp_engine *e);

/* cmp_srv.c */
struct cmp_txn *cmp_txn_new(struct cmp_call *c, int refusal);
void cmp_txn_free(void *txn);
void cmp_log_capture_begin(struct cmp_call *c);
void cmp_log_capture_end(void);

/* cmp_srv.c: who sent the request (t->identity), its credentials' status, then authorization, messageTime,
 * replay. */
int cmp_check_request(struct cmp_txn *t, struct cmp_call *c, struct cmp_refusal *r);

/* cmp_rr.c (RFC 9483 §4.2) and cmp_genm.c (§4.3): OpenSSL callbacks */
OSSL_CMP_PKISI *cmp_rr_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
                          const ASN1_INTEGER *serial);
int cmp_genm_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const STACK_OF(OSSL_CMP_ITAV) *in,
                STACK_OF(OSSL_CMP_ITAV) **out);

/*
 * cmp_poll.c: upstream calls that outlive their request (docs/polling.md, docs/design.md, OpenSSL 3.0 §7).
 * cmp_poll_sign runs the sign call on a call thread and waits up to the role's poll_after:
 * 0 with |out| filled (in time, or refused), or 1: deferred, t->pending holds the call.
 */
int cmp_poll_sign(struct cmp_txn *t, struct cmp_call *c, const struct gw_sign_req *req,
                  struct gw_sign_result *out);
/* 1 with the result moved into |out| (*on_record: the "issued" record is written), else 0. */
int cmp_poll_take(struct cmp_pending *p, struct gw_sign_result *out, int *on_record);
/* 1 once the call has a result (pollReq may release it), else 0 with *check_after in seconds. */
int cmp_poll_ready(struct cmp_pending *p, int64_t *check_after);
/* Seconds a deferred transaction stays parked beyond transaction_ttl: its upstream's timeout. */
time_t cmp_poll_extra_ttl(const struct cmp_txn *t);
/* A pending transaction closes without its client (expiry, shutdown): log and audit what is known. */
void cmp_poll_closed(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, const char *event);
void cmp_poll_release(struct cmp_pending *p);
/* Engine shutdown: let running calls land (GW_DRAIN_TIMEOUT_MS), then cut the others loose. */
void cmp_poll_detach(struct gw_cmp_engine *e);

/* cmp_engine.c */
/* Fills |r| with failInfo |fail_info| and the formatted statusString; returns 1. */
__attribute__((format(printf, 3, 4))) int cmp_refuse(struct cmp_refusal *r, int fail_info, const char *fmt,
                                                     ...);
/* Notes how the request ended: |status|, with the refusal |r| if there is one (else NULL). */
void cmp_set_outcome(struct cmp_call *c, const char *status, const struct cmp_refusal *r);
const char *cmp_fail_name(int bit);
/* A rejection PKIStatusInfo saying |r|, the outcome noted (new; NULL on OOM). */
OSSL_CMP_PKISI *cmp_reject(struct cmp_call *c, const struct cmp_refusal *r);
/*
 * For callbacks that can fail only as an error message in 3.0 (genm, certConf, pollReq): notes
 * |r|, which the engine puts into OpenSSL's error message, and returns 0.
 */
int cmp_fail(struct cmp_call *c, const struct cmp_refusal *r);

/* cmp_policy.c: engine lifetime */
int cmp_policy_init(struct gw_cmp_engine *e, char *err);
void cmp_policy_cleanup(struct gw_cmp_engine *e);

/* cmp_policy.c: per request. */
void cmp_describe_call(struct cmp_call *c);
int cmp_authorize(struct cmp_call *c, const struct cmp_txn *t, struct cmp_refusal *r);
int cmp_check_3gpp(struct cmp_call *c, const struct cmp_txn *t, const OSSL_CRMF_MSG *crm,
                   const X509_REQ *p10cr, struct cmp_refusal *r);
int cmp_pick_upstream(struct cmp_call *c, const struct cmp_txn *t, const struct gw_cert_plan *plan,
                      const X509_REQ *p10cr, struct gw_upstream **up, struct cmp_refusal *r);
X509_STORE *cmp_issuer_store(const struct gw_cmp_engine *e, const struct gw_upstream *up);
const char *cmp_upstream_name(const struct gw_upstream *up);

/* cmp_policy.c: audit records. 0 or GW_ERR_IO. */
void cmp_audit_rec_init(struct gw_audit_rec *r, const struct cmp_txn *t, const char *tid, const char *event,
                        const char *status);
int cmp_audit_write(struct gw_cmp_engine *e, const struct gw_audit_rec *r, int sync);
/* The "rejected" record of an authenticated request that got no other record (its outcome as status). */
void cmp_audit_refusal(struct cmp_call *c, const struct cmp_txn *t);
int cmp_audit_cert(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, const char *event,
                   const char *status, X509 *cert, int sync);
void cmp_withdraw(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, X509 *cert, int reason);

#endif
