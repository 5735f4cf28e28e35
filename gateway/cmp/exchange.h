/*
 * One HTTP exchange as the CMP engine sees it: the request a listener hands to a worker and the
 * response it gets back (gateway/cmp/engine.h).
 */
#ifndef GW_CMP_EXCHANGE_H
#define GW_CMP_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/cmp.h>
#include <openssl/x509.h>
#include "base/limits.h"
#include "mappings/route.h"

/* One HTTP request as the listener hands it to a worker (all borrowed for the call). */
struct gw_cmp_request {
    const unsigned char *der;
    size_t len;
    const struct gw_route_match *route;
    X509 *tls_peer; /* verified TLS client certificate, or NULL */
    /* gw_cmp_tls_client of |tls_peer|, made once for its connection; NULL: made here for the request */
    const char *tls_client;
    const char *path; /* request path, for the audit log; NULL = described from |route| */
    /* the caller resumes a suspended request (gw_cmp_suspended_arm), as gateway/http.c always does.
       false (in-process callers: tests, fuzzers): a role without poll_after holds the worker in
       gw_upstream_sign_wait, whose certificate after the deadline is only logged, not withdrawn */
    bool may_suspend;
    /* set: |route| is a retired configuration's, for a path the running one no longer serves; only an
       open transaction's own certConf, pollReq or error message is answered (as its role were removed),
       anything else gets HTTP 404 with this reason, the one an unknown path gets */
    const char *gone;
};

/*
 * gw_cmp_tls_client writes the TLS client a transaction is bound to (GW_TLS_CLIENT_LEN bytes into
 * |out|): "sha256:" and the hash of the whole certificate |peer| in hex, not its subject (a CA may
 * issue several certificates with one name); "none" without one (a plain listener, a TLS one that
 * asks for none). Returns 0, or GW_ERR_CRYPTO when the hash could not be made (out of memory): |out|
 * then holds "unknown", which matches no transaction.
 */
int gw_cmp_tls_client(const X509 *peer, char *out);

/* What gw_cmp_tls_client writes when the hash could not be made: it matches nothing. */
#define GW_CMP_TLS_CLIENT_UNKNOWN "unknown"

/*
 * The HTTP 413 line for a body over GW_MAX_CMP_BODY: libh2o's own words, as it answers such a body on
 * its Content-Length (max_request_entity_size) before the gateway sees the request; the gateway's own
 * checks behind it say the same, so a client reads one text whichever refused.
 */
#define GW_CMP_TEXT_TOO_LARGE "request entity is too large"
/* The HTTP 400 of a body that is not one DER PKIMessage (docs/errors.md http_not_der). */
#define GW_CMP_TEXT_NOT_DER "body is not a DER-encoded PKIMessage"

/*
 * A request whose upstream call is still running (docs/design.md D24): gw_cmp_process returned
 * without an answer and with |rsp->suspended| set, and the worker is free. The caller arms it,
 * and once the call completes, calls gw_cmp_process again with the same request and response: that
 * second pass answers.
 */
struct gw_cmp_suspended;
typedef void (*gw_cmp_resume_fn)(void *arg);

/*
 * gw_cmp_suspended_arm: |fn(arg)| is called once, when the upstream call completes: on the thread
 * that completes it, or on this one at once if it already has (any thread).
 */
void gw_cmp_suspended_arm(struct gw_cmp_suspended *s, gw_cmp_resume_fn fn, void *arg);

/*
 * What the engine keeps of the certificate an answer carries, in case the answer never leaves (the
 * engine counts the certificate as delivered once the answer is built). Freed with the response.
 */
struct gw_cmp_carried;
void gw_cmp_carried_free(struct gw_cmp_carried *k);

/* What to send back, and what to log. Fill with gw_cmp_response_init, free with _cleanup. */
struct gw_cmp_response {
    int http_status;              /* 200: |der| is a PKIMessage; else an HTTP error */
    char http_reason[GW_ERR_LEN]; /* one line for a non-200 body */
    unsigned char *der;           /* OPENSSL_malloc'ed */
    size_t len;
    /* for the request log line */
    char req_type[16];                  /* "ir", "certConf", ... or "" */
    char rsp_type[16];                  /* "ip", "error", ... or "" */
    char tid[2 * GW_MAX_TID_LEN + 1];   /* transactionID in hex */
    char identity[GW_IDENTITY_LEN];     /* CMP sender identity: signer subject or "pbm:<ref>" */
    char outcome[GW_ERR_LEN];           /* "accepted", "rejection: badTime: ...", ... */
    char serial[GW_SERIAL_HEX_LEN];     /* issued serial in hex, or "" */
    bool auth_failed;                   /* the sender was not authenticated: counts against its address */
    struct gw_cmp_suspended *suspended; /* set: no answer yet; arm it, then process again to answer */
    struct gw_cmp_carried *carried;     /* set: the answer carries a certificate its client has not had */
    /* the message's protection verified (by OpenSSL before it called back, or by the engine against a
       transaction's pinned signer): its sender is known, and its request line is paced as its own (http.c) */
    bool authenticated;
    /* ... and the request passed every check of its sender: the messageTime, replay, revocation and
       authorization checks (cmp_check_request), for a certConf or pollReq its transaction's pinned signer and
       nonce as well. Only this proves its connection's client (http.c): a replayed message, or one signed by
       a revoked certificate, is authenticated and refused without counting a failure */
    bool proven;
    /* with which credential (cmp_authenticated): "sha256:" and the hash of its signer certificate (as
       gw_cmp_tls_client), or "pbm:" and its PBM reference; "" if not authenticated */
    char credential[GW_CREDENTIAL_LEN];
};

/* Why an answer never left the gateway. */
enum gw_cmp_lost {
    GW_CMP_LOST_CLIENT_GONE, /* its client went away before it was written */
    GW_CMP_LOST_STOPPED,     /* the gateway stopped: its loop gave up the drain before the answer came;
                                the withdrawal is waited for, within its upstream's timeout */
};

/*
 * gw_cmp_undelivered: the answer in |rsp| never left the gateway, for |why|. The certificate it
 * carried (rsp->carried) goes on record as not delivered and is withdrawn, and its transaction, if it
 * waits for a certConf nobody can now send, is closed. A no-op for an answer that carries none.
 * Worker (or the main thread once the workers are gone): it writes the audit log and may ask the
 * shared state.
 */
void gw_cmp_undelivered(struct gw_cmp_response *rsp, enum gw_cmp_lost why);

/* gw_cmp_response_init readies |rsp| for an answer (HTTP 500 until one is written). */
void gw_cmp_response_init(struct gw_cmp_response *rsp);
/* gw_cmp_response_cleanup frees the DER |rsp| holds and what it keeps of its certificate. NULL-safe. */
void gw_cmp_response_cleanup(struct gw_cmp_response *rsp);

/* gw_cmp_http_error makes |rsp| an HTTP |status| with the one-line |reason|, no CMP; its outcome says so. */
void gw_cmp_http_error(struct gw_cmp_response *rsp, int status, const char *reason);

/* gw_cmp_decode: the PKIMessage of |req|, a DER one with nothing before or after it (RFC 9811 §3); else
 * NULL, |rsp| an HTTP 400 (413 past GW_MAX_CMP_BODY) saying why. *hash_alg is 1 for a certConf decoded
 * without the hashAlg OpenSSL 3.0 cannot read (gw_shim_d2i_hash_alg), to be refused; else 0. *certs_later
 * is 1 for a message decoded without its extraCerts (gw_shim_d2i_msg_later): whoever authenticates it sets
 * them first (gw_shim_set_extra_certs), and a refusal of GW_CMP_TEXT_NOT_DER there is this one's. */
OSSL_CMP_MSG *gw_cmp_decode(const struct gw_cmp_request *req, struct gw_cmp_response *rsp, int *hash_alg,
                            int *certs_later);

#endif
