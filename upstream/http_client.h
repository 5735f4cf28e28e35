/*
 * The upstream HTTP client (libcurl), shared by the JSON adapters. One easy handle per worker
 * thread and upstream, reused so connections stay alive (docs/design.md H6); CURLOPT_NOSIGNAL, a
 * total timeout on every call, TLS verification with the upstream's CA bundle, optional client
 * certificate. No retries here: a sign call that timed out, or whose connection closed before the
 * answer, has an unknown outcome and is never repeated blindly, not even by libcurl on a new
 * connection (a body is never read twice); the caller decides: only idempotent reads and
 * 412/429/503 answers that guarantee nothing happened are retried, with backoff, by the adapter.
 */
#ifndef GW_HTTP_CLIENT_H
#define GW_HTTP_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include "base/err.h"

struct gw_http_conf;

struct gw_http_client;

struct gw_http_response {
    long status;   /* HTTP status; 0 if no answer (transport error or timeout) */
    int timed_out; /* 1 if the deadline passed (outcome unknown) */
    int cut_short; /* 1 if its caller's end (a drain's deadline, a stop) ended it before an answer came */
    int not_sent;  /* 1 if the request never left (connect or TLS handshake failed): nothing
                      happened upstream */
    int too_large; /* 1 if the answer was over GW_MAX_UPSTREAM_BODY: not read (outcome unknown) */
    char *body;    /* NUL-terminated; at most GW_MAX_UPSTREAM_BODY bytes */
    size_t body_len;
    char content_type[128];
    char error[GW_ERR_LEN]; /* transport error, "" if an answer came */
};

/* What an upstream's calls carry: gw_http_client_new's |flags|. */
enum gw_http_flag {
    /* A secret travels in the calls or their answers (Vault's token, a login's answer): OpenSSL wipes
       each TLS record it decrypted once libcurl has read it, and a connection's buffers when it ends. */
    GW_HTTP_SECRETS = 1u << 0,
};

/* gw_http_client_new: for upstream |name|'s API |conf| (url, tls_ca, tls_cert/key; borrowed, it must
 * outlive the client) with calls of at most |timeout_ms| (0: the default) and |flags| (enum
 * gw_http_flag). NULL with |err| and *|rc| (|rc| may be NULL) its class: GW_ERR_INVAL for no url,
 * GW_ERR_NOMEM, GW_ERR_UNAVAILABLE where libcurl would not start or no thread key is left (what the
 * system lacks: another try may mend it). */
struct gw_http_client *gw_http_client_new(const char *name, const struct gw_http_conf *conf,
                                          uint32_t timeout_ms, unsigned flags, int *rc, char *err);

/*
 * gw_http_setopt_base sets what every call to an upstream sets on |curl|: the URL, no proxy (none
 * from the environment either), no signals, http(s) only, no redirects, one deadline for connect
 * and transfer, TLS verified against |tls|'s trust anchors alone (else the system's CAs), with its
 * client certificate and key if any: all of them what was checked at load, which |curl| borrows (|tls|
 * outlives every transfer made with it). The trust anchors go as PEM bytes, the certificate and key as
 * objects into each new connection's SSL_CTX, by the CURLOPT_SSL_CTX_FUNCTION set here, which a caller
 * leaves in place (a key in a PKCS#11 token too: the key loaded at load, which signs there).
 * CURLE_OK or the first failure.
 */
CURLcode gw_http_setopt_base(CURL *curl, const char *url, const struct gw_http_conf *tls, long timeout_ms);

/*
 * gw_http_nothing_sent: whether nothing of the request on |curl| can have left when its transfer failed
 * with |rc|: a failure of the connection itself (refused, not made in time, the name not resolved, the
 * TLS handshake), or the transfer never began to send (none in time while waiting in line for a
 * connection, too). Then the upstream cannot have acted on it; otherwise it may have.
 */
int gw_http_nothing_sent(CURL *curl, CURLcode rc);
void gw_http_client_free(struct gw_http_client *c);

/*
 * gw_http_client_thread_done releases the calling thread's handle of |c| now, not at its exit: a
 * short-lived thread that lets go of its last hold on |c| (so that |c| may be freed) calls it first.
 */
void gw_http_client_thread_done(struct gw_http_client *c);

/*
 * gw_http_request performs |method| ("GET", "POST") on |path| (appended to the base URL) with
 * optional JSON |body| and extra |headers| (NULL-terminated "Name: value" strings; secrets are
 * never logged). Fills |rsp| (free with gw_http_response_cleanup). Returns 0 if an HTTP answer
 * came (any status), or GW_ERR_TIMEOUT / GW_ERR_IO.
 */
int gw_http_request(struct gw_http_client *c, const char *method, const char *path, const char *body,
                    const char *const *headers, struct gw_http_response *rsp);

/*
 * gw_http_request_by is gw_http_request within |deadline_ms| (gw_now_ms; 0: none) as well as the
 * client's timeout: the attempts of one call share its deadline. Past it, nothing is sent: rsp->not_sent
 * and GW_ERR_IO.
 */
int gw_http_request_by(struct gw_http_client *c, const char *method, const char *path, const char *body,
                       const char *const *headers, uint64_t deadline_ms, struct gw_http_response *rsp);

/*
 * gw_http_request_until is gw_http_request_by within *end as well (gw_now_ms; 0 or NULL: none), an end its
 * caller may lower while the call runs (a drain's deadline, come to a withdrawal asked before it began): it
 * is read as the call begins and then by the transfer's progress check (gw_http_setopt_end). A call it
 * cut short has rsp->cut_short: GW_ERR_TIMEOUT once the request may have left (rsp->timed_out), else
 * rsp->not_sent and GW_ERR_IO. Its rsp->error then says GW_HTTP_CUT_NO_ANSWER or GW_HTTP_CUT_NOT_SENT,
 * naming no cause: only its caller knows what the end was (a drain's deadline, a prober's or a reload's
 * stop) and says so in its own words.
 */
#define GW_HTTP_CUT_NOT_SENT "not sent: cut short by its caller's end"
#define GW_HTTP_CUT_NO_ANSWER "no answer: cut short by its caller's end"
int gw_http_request_until(struct gw_http_client *c, const char *method, const char *path, const char *body,
                          const char *const *headers, uint64_t deadline_ms, const _Atomic uint64_t *end,
                          struct gw_http_response *rsp);

/*
 * An end a transfer checks while it runs: gw_http_setopt_end has libcurl's progress callback abort the
 * transfer on |curl| (CURLE_ABORTED_BY_CALLBACK) once gw_now_ms reaches *e->end (0: not yet), and set
 * e->cut. libcurl calls it at least every GW_UPSTREAM_END_CHECK_MS, also while no byte moves: an end
 * lowered during the transfer ends it that much later at most. |e| outlives the transfer.
 */
struct gw_http_end {
    const _Atomic uint64_t *end;
    int cut;
};
CURLcode gw_http_setopt_end(CURL *curl, struct gw_http_end *e);

/*
 * gw_http_response_cleanup wipes |rsp|'s body before it frees it: an answer may carry a secret (a
 * Vault login's token). What came of an answer that failed (cut off, too large, too late) is wiped
 * as well, inside the client, and so is every copy left behind as the body grew.
 */
void gw_http_response_cleanup(struct gw_http_response *rsp);

/*
 * gw_http_status_refuses tells whether an upstream's HTTP |status| refuses the request itself, so
 * that sending it again will not help: a 4xx, but 401 and 403 (the gateway's credentials, which an
 * operator fixes), 408 (too slow), 412 (Vault: not on this node yet) and 429 (too many requests).
 */
bool gw_http_status_refuses(long status);

/* The end of an asynchronous call: what gw_http_request returns and fills (|rsp| lives for the call). */
typedef void (*gw_http_done_fn)(void *arg, int rc, const struct gw_http_response *rsp);

/*
 * gw_http_request_async is gw_http_request without waiting: the call runs on the client's transfer
 * thread (one per client, libcurl's multi interface, started on first use), which calls |done|
 * exactly once, also when the call fails. |body| and |headers| are copied. Returns 0, or
 * GW_ERR_NOMEM / GW_ERR_INVAL (|done| is not called). gw_http_client_free waits for calls in
 * flight (each is bounded by the client's timeout).
 */
int gw_http_request_async(struct gw_http_client *c, const char *method, const char *path, const char *body,
                          const char *const *headers, gw_http_done_fn done, void *arg);

#endif
