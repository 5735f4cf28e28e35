/*
 * Internal sharing of the vault adapter: vault.c (the calls the engine makes: sign, revoke, role
 * policy, certificate status, CRL; life cycle) and vault_token.c (the token, from token_file or a
 * cert-auth login, and one API call with authentication and retries).
 */
#ifndef GW_UPSTREAM_VAULT_LOCAL_H
#define GW_UPSTREAM_VAULT_LOCAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "base/limits.h"

struct gw_http_client;
struct gw_http_response;
struct gw_upstream_conf;
struct gw_vault_conf;

struct vault {
    const struct gw_upstream_conf *conf;
    const struct gw_vault_conf *vc;
    struct gw_http_client *http;
    const char *mount;
    uint32_t timeout_ms;
    pthread_mutex_t lock; /* guards the token state below */
    pthread_cond_t cond;  /* a login or token re-read finished (CLOCK_MONOTONIC: waits end at deadlines) */
    char *token;          /* NULL until obtained; never logged */
    time_t refresh_at;    /* re-obtain at this time; 0 = only when Vault says 403 */
    unsigned gen;         /* bumped on every new token */
    int refreshing;       /* one refresh at a time (single flight); a login's runs on the transfer thread */
    unsigned attempts;    /* refreshes finished, so that waiters see the outcome of theirs */
    int last_rc;
    char last_err[GW_ERR_LEN];
};

/* The headers a call sends beside its body. */
struct call_headers {
    char ns[GW_MAX_MOUNT_LEN + 32];
    char *tok_hdr; /* a secret: vault_free_token */
    const char *list[3];
};

/* Where a call stands in its attempts: the deadline, the next backoff, what was tried. */
struct attempts {
    uint64_t deadline, backoff;
    int retries, reauth;
    unsigned gen; /* the token generation last sent */
    char *tok;    /* the token last sent (vault_free_token), or NULL: its answer is masked of it */
    /* a sign's: an attempt sent before the deadline has the client's whole timeout, so that a
       certificate Vault issues late is still heard of (recorded, withdrawn), not forgotten; and a 403,
       412, 429 or 503 is sent again only when Vault's own (vault_send_again) */
    bool whole_sends;
    /* a revocation's: an end its caller may lower while it runs (gw_http_request_until); NULL: none */
    const _Atomic uint64_t *end;
    /* a request of the call may have reached Vault, to act on: one that may have left with no answer, or
       any answer, a 412, 429 or 503 that vault_send_again sends again too (what answered may be a proxy) */
    bool sent;
};

/* The upstream's name for logs and errors: its configured name, else "vault". */
const char *vault_up_name(const struct vault *v);

/* Writes one formatted line into |err| (GW_ERR_LEN bytes). */
void vault_set_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- vault_token.c ---- */

/* Wipes and frees a token (or a header that holds one); NULL-safe. */
void vault_free_token(char *t);

/* The token of |path| into a new *out (vault_free_token): 0, or with |err| the class of its failure:
   GW_ERR_UNAVAILABLE where there is no such file (not written yet: another try may find it), GW_ERR_NOMEM,
   GW_ERR_INVAL for any other (unreadable, open to others, not one token). */
int vault_read_token_file(const char *path, char **out, char *err);

/* The current token without waiting: 0 with it (or NULL: none configured), else -1 (one must be had). */
int vault_token_peek(struct vault *v, char **out, unsigned *gen);

/* Fills |h| with the namespace and the token |tok| (NULL: none); vault_headers_cleanup in every case. */
int vault_headers_make(const struct vault *v, const char *tok, struct call_headers *h, char *err);
void vault_headers_cleanup(struct call_headers *h);

/* Every copy of the token |tok| in the body of the answer |rsp| becomes asterisks: before anything reads it.
 */
void vault_mask_token(const struct gw_http_response *rsp, const char *tok);

/* A call's first attempt: its deadline the upstream's timeout from now. vault_attempts_cleanup after. */
struct attempts vault_attempts_start(const struct vault *v);
void vault_attempts_cleanup(struct attempts *a);

/* The statuses an answer is sent again on, Vault's word that it acted on nothing: 403 (with a new token),
   412, 429, 503; for a sign only when the answer is Vault's own (gw_vault_own_refusal). */
bool vault_resent_status(long status);

/* Whether the answer |rsp| to |path| is to be sent again, after *sleep_ms (a 403: a new token). */
int vault_send_again(struct vault *v, struct attempts *a, const char *path,
                     const struct gw_http_response *rsp, uint64_t *sleep_ms);

/*
 * |method| on |path| from where |a| stands: 0 when an HTTP answer is in |rsp| (any status), its body
 * masked of |a->tok| (the answer's parser masks its strings of it too), else a gw_err with |err|
 * (timeout: outcome unknown, never retried). vault_call: from a first attempt, for an answer that is
 * not JSON.
 */
int vault_call_on(struct vault *v, const char *method, const char *path, const char *body,
                  struct gw_http_response *rsp, char *err, struct attempts *a);
int vault_call(struct vault *v, const char *method, const char *path, const char *body,
               struct gw_http_response *rsp, char *err);

#endif
