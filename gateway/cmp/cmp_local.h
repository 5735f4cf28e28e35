/*
 * The types the modules of gateway/cmp share: the engine, one request on its way through it
 * (struct cmp_call), one transaction (struct cmp_txn) and a refusal. Types only: each module
 * declares its functions in its own header, and this one includes none of those, so every module
 * may include it without closing an include cycle.
 *
 * The modules, each including only the ones after it (engine.h is the public API):
 *   engine           decode, dispatch, rewrite OpenSSL's errors; engine_rebuild: a transaction
 *                    begun on another instance, from its record
 *   precheck         refuse what OpenSSL must not see (step 2), what each body type gets
 *   srv              one OSSL_CMP_SRV_CTX per transaction; the certConf, pollReq and error callbacks
 *   issue, rr, genm  the cert-request, rr and genm callbacks
 *   poll             upstream calls that outlive their request
 *   policy           the checks every request passes, authorization, upstream choice, 3GPP checks
 *   record           the audit records of a transaction; a certificate withdrawn
 *   auth, status     who signed a request; the revocation status of its credentials
 *   outcome          refusals, and how a request ended
 *   cert_req, shim (and shim_itav), txn, replay, audit, signer, conf, exchange  the leaves
 */
#ifndef GW_CMP_LOCAL_H
#define GW_CMP_LOCAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>
#include <openssl/cmp.h>
#include <openssl/x509.h>
#include "base/limits.h"
#include "gateway/cmp/conf.h"
#include "gateway/cmp/exchange.h"
#include "gateway/cmp/shim.h"

struct gw_audit;
struct gw_cert_plan;
struct gw_replay;
struct gw_txn_table;
struct gw_upstream;
struct gw_upstream_set;
struct cmp_crl_cache;     /* status.c */
struct cmp_revoked;       /* revoked.c */
struct cmp_recent;        /* recent.c */
struct cmp_shared;        /* engine.c */
struct cmp_pending;       /* poll.c */
struct cmp_remote;        /* poll.c */
struct cmp_role_policy;   /* urole.h */
struct cmp_signer_health; /* signer.h */

struct gw_cluster;
struct gw_x509_links;

/*
 * The restart-only settings as the first configuration set them: a reload keeps them (a restart applies
 * a change). The messageTime check and the lifetimes beside it, for the replay cache they sized must
 * cover every messageTime the check lets through (engine.c started_init); the per-identity caps, with
 * which the transaction table and the replay cache were built, and which Redis counts a share against.
 */
struct cmp_started {
    uint32_t message_time_window; /* s; 0: none of its own, |behind| and |ahead| the replay cache's */
    uint32_t transaction_ttl;     /* s */
    time_t replay_ttl;            /* s a transactionID counts as seen, here and in Redis */
    time_t behind, ahead;         /* s a messageTime may lag and lead the gateway's clock */
    uint32_t open_per_identity;   /* cmp.max_transactions_per_identity */
    uint32_t recent_per_identity; /* cmp.max_recent_per_identity */
};

struct gw_cmp_engine {
    struct gw_cmp_settings cfg; /* a copy; what it points to is borrowed */
    struct gw_upstream_set *ups;
    /* shared by every engine built from this one's predecessor (a reload): the open transactions
       and the replay cache outlive a configuration; the audit log too while its file stays */
    struct cmp_shared *shared;
    struct gw_txn_table *txns;  /* shared->txns */
    struct gw_replay *replay;   /* shared->replay */
    struct gw_cluster *cluster; /* shared->cluster: other instances' view ("cmp.state"); NULL = memory */
    const struct cmp_started *started; /* shared's: the window, TTLs and caps, restart-only */
    struct gw_audit *audit;
    atomic_size_t live;                    /* transactions begun under this engine and not yet freed */
    X509_STORE **issuer_stores;            /* per cfg.upstreams[i]: what its certificates must chain to */
    STACK_OF(X509) **issuer_certs;         /* per cfg.upstreams[i]: its issuer store's certificates, listed
                                              once for the chains above issued certificates; every worker
                                              reads them, none changes them */
    struct cmp_role_policy *role_policies; /* per cfg.roles[i]: [2i] its upstream, [2i+1] migration's to */
    time_t (*clock)(void);                 /* tests only; NULL = time(NULL) */
    struct cmp_pending *pending;           /* upstream calls still running (poll.c's lock) */
    struct cmp_crl_cache *crls;            /* per cfg.upstreams[i]: its CRLs, one per CA (status.c) */
    struct cmp_revoked *revoked;           /* shared->revoked: the certificates revoked through cmpgw */
    struct cmp_recent *recent;             /* shared->recent: the certificates let through lately */
    struct cmp_chains *chains;             /* validated client chains (chains.c); NULL: none kept */
    struct gw_x509_links *links;           /* upstream chains' links found signed; NULL: none kept */
    struct cmp_withdrawals *withdrawals;   /* revocations waiting for their upstream (record.c) */
    struct cmp_signer_health *signer;      /* whether cfg.signer's key signs (signer.c) */
};

/*
 * How a check refuses a request, everywhere in gateway/cmp: it returns 0 to let the request go on,
 * or fills a struct cmp_refusal (the failInfo bit and the statusString the client gets) and
 * returns nonzero. cmp_refuse (outcome.h) fills one and returns 1, so that a check ends in
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

/* One request being processed on a worker; lives on that worker's stack. */
struct cmp_call {
    struct gw_cmp_engine *e;    /* the engine the request runs under: its own, or its transaction's */
    struct gw_cmp_engine *held; /* a transaction's older engine |e| switched to, held to the end */
    const struct gw_cmp_request *req;
    struct gw_cmp_response *rsp;
    const struct gw_role *role;
    const struct gw_pbm_conf *pbm; /* PBM: the credential the senderKID names, allowed on the role */
    int pbm_gone; /* a certConf, pollReq or error whose PBM reference the running configuration lacks
                     (cmp_check_pbm) */
    struct gw_hdr_info hdr;
    int body;
    time_t now;
    int reserved; /* holds a slot for hdr.tid in the txn table */
    int audited;  /* the outcome record of this request is written */
    int released; /* this pollReq delivered the certificate of a deferred request */
    int own;      /* passed check_continuing: its transaction's own message */
    int hash_alg; /* a certConf decoded without its hashAlg (gw_cmp_decode): refused by cmp_precheck */
    /* decoded without its extraCerts (gw_cmp_decode): they are set once it is to be authenticated */
    int certs_later;
    enum cmp_confirm confirm;
    struct cmp_refusal fail;          /* fail_info >= 0: a callback chose the error's failInfo and text */
    struct cmp_refusal stale;         /* fail_info >= 0: the configuration in force refuses the sender of the
                                         transaction this message continues, begun under an older one */
    struct gw_cmp_suspended *suspend; /* first pass: the sign call runs on without this worker */
    struct gw_cmp_suspended *resume;  /* second pass: the suspended call's result (suspend.c) */
    char diag[GW_ERR_LEN];            /* first OpenSSL diagnostic captured by the log cb */
    int protect_failed;               /* OpenSSL logged a failed protection while it ran (cmp_run) */
    int unsigned_answer;              /* an answer not made for the signer's failed signature */
    EVP_PKEY *req_key; /* the key an ir, cr or kur asks for, decoded once (cmp_precheck) for the plan */
    int signer_issued; /* cmp_signer_issued's answer for this message: 0 not asked yet, 1 yes, -1 no */
    char profile[GW_MAX_PROFILE_NAME_LEN + 1]; /* the certProfile the message names (cmp_precheck), or "" */
    char route[GW_MAX_PATH_LEN];
    char tls_subject[GW_IDENTITY_LEN];
    char tls_client[GW_TLS_CLIENT_LEN]; /* its TLS client: "sha256:<certificate hash>", or "none" */
};

/* The state of one transaction: its SRV_CTX and who may continue it. Owned by a struct gw_txn. */
struct cmp_txn {
    struct gw_cmp_engine *e; /* the engine it began under: it ends under it (a reload may come between) */
    OSSL_CMP_SRV_CTX *srv;
    const struct gw_role *role;
    int pbm; /* PBM-protected: continue only with the same senderKID */
    unsigned char kid[GW_MAX_KID_LEN];
    size_t kid_len;
    char pbm_ref[GW_MAX_KID_LEN + 1]; /* |kid| as a string, for authorization */
    X509_NAME *sender;                /* the request's sender DN */
    X509 *signer;                     /* signature: who signed the request */
    STACK_OF(X509) *signer_chain;     /* its chain as validated: signer first, trust anchor last */
    X509 *issued;                     /* our reference to the certificate issued */
    struct gw_upstream *up;           /* the upstream that issued it (borrowed from the engine's set) */
    char identity[GW_IDENTITY_LEN];
    char quota[GW_QUOTA_KEY_LEN]; /* whose share of the per-identity caps it takes (cmp_quota_key) */
    char credential_status[2 * GW_ERR_LEN]; /* how the signer's and TLS certificate's status was known */
    int signer_revoked; /* cmp_check_credentials refused the signer for its revocation (certRevoked) */
    /* an rr naming its signer's own certificate (rr.c): a revoked signer is that rr's answer, and is
       logged as it (rr_already_revoked), not as a credential refused (credential_revoked) */
    int signer_named;
    char serial[GW_SERIAL_HEX_LEN];
    /* the senderNonce of the last answer its client got: the recipNonce its next message must carry */
    unsigned char nonce[GW_MAX_NONCE_LEN];
    size_t nonce_len;
    /* for the audit records of later messages (certConf, expiry) */
    char route[GW_MAX_PATH_LEN];
    char tls_subject[GW_IDENTITY_LEN];
    /* the certProfile its request named, or "": the path of a later message must choose |role| with it
       (cmp_check_path) */
    char profile[GW_MAX_PROFILE_NAME_LEN + 1];
    /* the TLS client its first message came from (cmp_call.tls_client): every later message must come
       from it; "" only when rebuilt from a record of an older instance, which bound none */
    char tls_client[GW_TLS_CLIENT_LEN];
    char body[16];
    struct cmp_call *call; /* the request in progress, NULL between requests */
    /* poll_after (docs/polling.md): a deferred request waits here for its upstream call */
    struct cmp_pending *pending; /* the call (one reference); NULL if nothing was deferred */
    OSSL_CMP_MSG *request;       /* the deferred request; OpenSSL re-runs it on release (poll.c) */
    struct gw_cert_plan *plan;   /* its plan, for the result checks on release */
    int release;                 /* pollReq found the result: the next cert-request callback delivers it */
    int on_record;               /* the completion wrote the "issued" record */
    X509 *rebuilt; /* rebuilding a transaction another instance began: the certificate it issued, which
                      the cert-request callback hands OpenSSL again without any check (engine_rebuild.c) */
    int rewait;    /* rebuilding a deferred request: the cert-request callback plans it and answers waiting */
    struct cmp_remote *remote; /* rebuilt deferred request: its call runs (or ran) on another instance */
    time_t requested_at;       /* when the request came: a deferred request is planned for that time again */
    int shared; /* its record is in the shared state: any instance may continue it (engine.c) */
    /* rebuilt from another instance's record: the instance that reserved its transactionID, whose
       transaction it is (gw_txn_record.holder); "": this one */
    char holder[GW_STATE_OWNER_LEN];
    unsigned step; /* the record's step this copy reflects: another is current once another instance
                      answered (a pollRep) */
};

#endif
