/*
 * The vault adapter's token and its authenticated calls (vault_local.h): a token from token_file
 * (re-read once on 403), or a cert-auth login with the gateway's TLS client certificate whose token
 * is cached and re-obtained GW_VAULT_TOKEN_RENEW_MARGIN seconds before its lease ends, one login at
 * a time (the others wait for it); and one API call that sends it, retried only on the answers that
 * guarantee nothing happened (403 with a new token, 412, 429, 503; for a sign, only Vault's own:
 * vault_send_again). The token never reaches a log, not even quoted by an answer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include "base/clock.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "upstream/answers.h"
#include "upstream/field.h"
#include "upstream/http_client.h"
#include "upstream/upstream_int.h"
#include "upstream/vault_local.h"

void vault_free_token(char *t)
{
    if (t != NULL)
        OPENSSL_clear_free(t, strlen(t));
}

/* ---- token state ---- */

/*
 * The token of |path| into a new *out. Through the opener of every secret at each read, the re-read
 * after a 403 too: a token file others may read is refused then as at start.
 */
int vault_read_token_file(const char *path, char **out, char *err)
{
    char why[GW_ERR_LEN] = "";
    struct gw_conf_ctx pc = {.name = "vault", .err = why};
    unsigned char *buf = NULL;
    size_t n = 0;
    int rc = GW_ERR_INVAL;

    *out = NULL;
    /* |err| reaches the client: the file's path and mode go to the log only */
    if (gw_conf_read_secret(&pc, "token_file", path, GW_MAX_VAULT_TOKEN_LEN, &buf, &n) != 0) {
        /* the read's class (gw_err_errno_class: a failing disk, no descriptor left); of the file's, errno as
           its open left it (gw_conf_read_secret), read before anything else may change it: ENOENT, not
           written yet */
        rc = pc.failed != GW_ERR_INVAL ? pc.failed : errno == ENOENT ? GW_ERR_UNAVAILABLE : GW_ERR_INVAL;
        gw_log_kv(GW_LOG_WARN, "vault_token_file", "path", path, "error", why, NULL);
        vault_set_err(err,
                      "cannot read the gateway's token_file (missing, unreadable, or open to others: the log "
                      "says which)");
        return rc;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    if (n == 0 || n > GW_MAX_VAULT_TOKEN_LEN || memchr(buf, '\n', n) != NULL ||
        memchr(buf, '\r', n) != NULL || memchr(buf, '\0', n) != NULL) {
        gw_log_kv(GW_LOG_WARN, "vault_token_file", "path", path, "error", "not one token", NULL);
        vault_set_err(err, "the gateway's token_file: expected one token of 1 to %d characters",
                      GW_MAX_VAULT_TOKEN_LEN);
        goto out;
    }
    rc = (*out = strndup((const char *)buf, n)) != NULL ? 0 : GW_ERR_NOMEM;
out:
    OPENSSL_clear_free(buf, GW_MAX_VAULT_TOKEN_LEN + 3);
    return rc;
}

static int add_namespace(const struct vault *v, char *hdr, size_t cap, const char **headers, size_t *n)
{
    if (v->vc->vault_namespace == NULL)
        return 0;
    if ((size_t)snprintf(hdr, cap, "X-Vault-Namespace: %s", v->vc->vault_namespace) >= cap)
        return GW_ERR_INVAL;
    headers[(*n)++] = hdr;
    return 0;
}

/* When to fetch a new token for one that lives |lease| seconds: the margin before it ends, or halfway. */
static time_t refresh_time(uint32_t lease)
{
    if (lease == 0)
        return 0; /* root-like token without expiry */
    if (lease > 2 * GW_VAULT_TOKEN_RENEW_MARGIN)
        return time(NULL) + lease - GW_VAULT_TOKEN_RENEW_MARGIN;
    return time(NULL) + lease / 2;
}

/* A refresh ended with |rc|: its token |fresh| (taken over) or its failure |err| for every waiter. */
static void refresh_end(struct vault *v, int rc, char *fresh, time_t refresh_at, const char *err)
{
    pthread_mutex_lock(&v->lock);
    v->refreshing = 0;
    v->attempts++;
    v->last_rc = rc;
    snprintf(v->last_err, sizeof(v->last_err), "%s", rc != 0 ? err : "");
    if (rc == 0) {
        vault_free_token(v->token);
        v->token = fresh;
        fresh = NULL;
        v->refresh_at = refresh_at;
        v->gen++;
    }
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    vault_free_token(fresh);
}

/* A copy of the token held (vault_free_token), or NULL: none, or no memory. */
static char *held_token(struct vault *v)
{
    char *held = NULL;

    pthread_mutex_lock(&v->lock);
    if (v->token != NULL)
        held = strdup(v->token);
    pthread_mutex_unlock(&v->lock);
    return held;
}

/*
 * What the answer to a cert login says: 0 with a new *token and its |lease|, else a gw_err with |err|.
 * The text of a login Vault refused goes into the reason, the log and a client's statusString as a sign
 * answer's errors do (gw_vault_map_error): masked of the token the gateway holds (one renewed before its
 * lease ends is still good) in the body and in the strings parsed from it, and cut short enough
 * (GW_MAX_VAULT_QUOTE) that the reason keeps what it tells the operator. Every text of Vault or libcurl
 * in a login's reason is cut between UTF-8 characters (gw_field_reason), never by the buffer's end.
 */
static int login_answer(struct vault *v, int rc, const struct gw_http_response *rsp, char **token,
                        uint32_t *lease, char *err)
{
    char why[GW_ERR_LEN], *held = NULL;
    struct gw_vault_login login;
    struct gw_vault_error e;

    memset(&login, 0, sizeof(login));
    if (rc != 0) {
        gw_field_reason(err, GW_MAX_VAULT_WHY, rsp->error, "", "Vault cert login: ");
        goto out;
    }
    rc = GW_ERR_UPSTREAM;
    if (rsp->status != 200) {
        if ((held = held_token(v)) != NULL)
            vault_mask_token(rsp, held);
        if (gw_vault_parse_error(rsp->body, rsp->body_len, held, &e, why) != 0)
            snprintf(e.message, sizeof(e.message), "%s", why);
        gw_field_reason(err, GW_MAX_VAULT_QUOTE, e.message[0] != '\0' ? e.message : "no error message", "",
                        "Vault cert login refused the gateway (HTTP %ld): ", rsp->status);
        rc = rsp->status == 403 || rsp->status == 400 ? GW_ERR_FORBIDDEN : GW_ERR_UPSTREAM;
        goto out;
    }
    if ((rc = gw_vault_parse_login(rsp->body, rsp->body_len, &login, why)) != 0) {
        gw_field_reason(err, GW_MAX_VAULT_WHY, why, "", "Vault cert login: the answer is refused: ");
        goto out;
    }
    *lease = login.lease_duration;
    rc = (*token = strdup(login.client_token)) != NULL ? 0 : GW_ERR_NOMEM;
out:
    vault_free_token(held);
    gw_vault_login_cleanup(&login);
    return rc;
}

/* The end of a cert login: its answer (wiped by the HTTP client, the token inside) read. Transfer thread. */
static void login_done(void *arg, int rc, const struct gw_http_response *rsp)
{
    struct vault *v = arg;
    char err[GW_ERR_LEN] = "", *token = NULL;
    uint32_t lease = 0;

    if ((rc = login_answer(v, rc, rsp, &token, &lease, err)) == 0)
        gw_log(GW_LOG_INFO, "vault_login", "upstream %s: cert login, token lease %u s", vault_up_name(v),
               lease);
    refresh_end(v, rc, token, rc == 0 ? refresh_time(lease) : 0, err);
}

/*
 * POST auth/<mount>/login with the TLS client certificate (docs/design.md U1.7), on the HTTP client's
 * transfer thread with a whole timeout of its own: the login is shared, so it does not end with the time
 * left to the call that happened to start it, and that call, like every other waiting for it, can leave
 * at its own deadline while the login goes on. 0, or a gw_err with |err| (login_done is not called).
 */
static int login_start(struct vault *v, char *err)
{
    char path[GW_MAX_PATH_LEN], ns[GW_MAX_MOUNT_LEN + 32];
    const char *headers[2] = {NULL, NULL};
    json_object *req = json_object_new_object();
    size_t nh = 0;
    int rc = GW_ERR_UPSTREAM;

    if (req == NULL || add_namespace(v, ns, sizeof(ns), headers, &nh) != 0) {
        vault_set_err(err, "Vault cert login: cannot build the request");
        goto out;
    }
    if (v->vc->auth_cert_role != NULL)
        json_object_object_add(req, "name", json_object_new_string(v->vc->auth_cert_role));
    snprintf(path, sizeof(path), "/v1/auth/%s/login", v->vc->auth_cert_mount);
    if ((rc = gw_http_request_async(v->http, "POST", path,
                                    json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN), headers,
                                    login_done, v)) != 0)
        vault_set_err(err, "Vault cert login: cannot send it (%s)", gw_err_str(rc));
out:
    json_object_put(req);
    return rc;
}

/* Begins a refresh (refreshing set): a cert login in flight, or the token file read; refresh_end ends it. */
static void refresh_start(struct vault *v)
{
    char err[GW_ERR_LEN] = "", *token = NULL;
    int rc;

    if (v->vc->auth_cert_mount != NULL) {
        if ((rc = login_start(v, err)) != 0)
            refresh_end(v, rc, NULL, 0, err);
        return;
    }
    rc = vault_read_token_file(v->vc->token_file, &token, err);
    refresh_end(v, rc, token, 0, err);
}

static int token_usable(const struct vault *v)
{
    return v->token != NULL && (v->refresh_at == 0 || time(NULL) < v->refresh_at);
}

/*
 * The sooner of a call's |deadline| and its caller's end as it stands now (*end; NULL or 0: none); *by_end
 * (may be NULL) says it is the end's.
 */
static uint64_t wait_end(uint64_t deadline, const _Atomic uint64_t *end, int *by_end)
{
    uint64_t e = end != NULL ? atomic_load(end) : 0;
    int its = e != 0 && e <= deadline;

    if (by_end != NULL)
        *by_end = its;
    return its ? e : deadline;
}

/*
 * Waits, lock held, for the refresh after |attempt| to end, until |deadline| or *end (wait_end): 0 when it
 * brought a token, else its failure, or GW_ERR_TIMEOUT when either came first (the refresh goes on for the
 * others). An end that may be lowered meanwhile is read again at least every GW_UPSTREAM_END_CHECK_MS, as
 * a transfer's is (gw_http_request_until): a drain begun while a revocation waits for a login ends it too.
 */
static int refresh_wait(struct vault *v, unsigned attempt, uint64_t deadline, const _Atomic uint64_t *end,
                        char *err)
{
    struct timespec until;
    uint64_t now, by;
    int by_end;

    while (v->refreshing && v->attempts == attempt) {
        now = gw_now_ms();
        if (now >= (by = wait_end(deadline, end, &by_end))) {
            vault_set_err(err, "Vault cert login: no token %s",
                          by_end ? "before the drain's deadline" : "within the call's timeout");
            return GW_ERR_TIMEOUT;
        }
        if (end != NULL && by - now > GW_UPSTREAM_END_CHECK_MS)
            by = now + GW_UPSTREAM_END_CHECK_MS;
        until = gw_timespec_ms(by); /* gw_now_ms is the condition's clock (vault_init) */
        (void)pthread_cond_timedwait(&v->cond, &v->lock, &until);
    }
    if (v->attempts != attempt && v->last_rc != 0) {
        vault_set_err(err, "%s", v->last_err);
        return v->last_rc;
    }
    return 0;
}

/*
 * token_get copies the current token into |*out| (NULL: none configured), obtaining a new one first if
 * needed. One refresh at a time; callers arriving meanwhile share its outcome. Each waits at most until
 * its own |deadline|, or its end *end (NULL: none) as it stands while it waits (refresh_wait).
 */
static int token_get(struct vault *v, uint64_t deadline, const _Atomic uint64_t *end, char **out,
                     unsigned *gen, char *err)
{
    unsigned attempt;
    int rc = 0;

    *out = NULL;
    if (v->vc->auth_cert_mount == NULL && v->vc->token_file == NULL)
        return 0;
    pthread_mutex_lock(&v->lock);
    for (int round = 0; !token_usable(v); round++) {
        if (round > 0 &&
            gw_now_ms() >= wait_end(deadline, end, NULL)) { /* new tokens refused one after the other */
            vault_set_err(err, "no usable Vault token within the call's timeout");
            rc = GW_ERR_TIMEOUT;
            goto out;
        }
        attempt = v->attempts;
        if (!v->refreshing) {
            v->refreshing = 1;
            pthread_mutex_unlock(&v->lock); /* never held across a file read or a request */
            refresh_start(v);
            pthread_mutex_lock(&v->lock);
        }
        if ((rc = refresh_wait(v, attempt, deadline, end, err)) != 0)
            goto out;
        if (v->token != NULL) /* the token just had, even one whose lease is short of the margin */
            break;
    }
    rc = (*out = strdup(v->token)) != NULL ? 0 : GW_ERR_NOMEM;
    *gen = v->gen;
out:
    pthread_mutex_unlock(&v->lock);
    return rc;
}

/* Vault said 403 to token generation |gen|: the next token_get fetches a new one (once per generation). */
static void token_invalidate(struct vault *v, unsigned gen)
{
    pthread_mutex_lock(&v->lock);
    if (v->gen == gen && v->token != NULL) {
        vault_free_token(v->token);
        v->token = NULL;
    }
    pthread_mutex_unlock(&v->lock);
}

/* ---- one API call with authentication and retries ---- */

static int retryable(long status)
{
    /* 412 (eventual consistency), 429 (quota), 503 (sealed, standby): Vault did nothing; each may be a
       proxy's too, after it passed the call on: a sign sends it again only when Vault's (vault_send_again) */
    return status == 412 || status == 429 || status == 503;
}

bool vault_resent_status(long status)
{
    return status == 403 || retryable(status);
}

/*
 * Fills |h| with the namespace and the token |tok| (NULL: none) for a call: 0, or GW_ERR_INVAL /
 * GW_ERR_NOMEM with |err|. headers_cleanup in every case.
 */
int vault_headers_make(const struct vault *v, const char *tok, struct call_headers *h, char *err)
{
    size_t nh = 0, len;

    memset(h, 0, sizeof(*h));
    if (add_namespace(v, h->ns, sizeof(h->ns), h->list, &nh) != 0) {
        vault_set_err(err, "namespace too long");
        return GW_ERR_INVAL;
    }
    if (tok != NULL) {
        len = strlen(tok) + sizeof("X-Vault-Token: ");
        if ((h->tok_hdr = malloc(len)) == NULL)
            return GW_ERR_NOMEM;
        snprintf(h->tok_hdr, len, "X-Vault-Token: %s", tok);
        h->list[nh++] = h->tok_hdr;
    }
    return 0;
}

void vault_headers_cleanup(struct call_headers *h)
{
    vault_free_token(h->tok_hdr);
    h->tok_hdr = NULL;
}

/*
 * No answer to a call has a reason to hold the token it was sent with, but one that echoes the request
 * (an error message quoting the X-Vault-Token header, from a plugin or a proxy in front of Vault) would
 * carry it into the log and, through the failure's reason, into a CMP client's statusString. A copy
 * written with JSON escapes is not seen here: the answer's parser masks the strings it decodes
 * (answers.h).
 */
void vault_mask_token(const struct gw_http_response *rsp, const char *tok)
{
    gw_field_mask(rsp->body, rsp->body_len, tok);
}

/* The deadline of an attempt sent now: the call's, or for whole_sends the client's timeout from now if the
   call's has not passed (gw_http_request_by: past it, nothing is sent). */
static uint64_t send_by(const struct attempts *a)
{
    return a->whole_sends && gw_now_ms() < a->deadline ? 0 : a->deadline;
}

/* Sends one request with the current token, both by |a|'s deadline: what is left of the call's timeout. */
static int send_once(struct vault *v, const char *method, const char *path, const char *body,
                     struct gw_http_response *rsp, struct attempts *a, char *err)
{
    struct call_headers h;
    char *tok = NULL;
    int rc;

    memset(rsp, 0, sizeof(*rsp));
    if ((rc = token_get(v, a->deadline, a->end, &tok, &a->gen, err)) !=
        0) /* nothing was sent: not an unknown outcome */
        return rc == GW_ERR_FORBIDDEN || rc == GW_ERR_NOMEM ? rc : GW_ERR_UPSTREAM;
    if ((rc = vault_headers_make(v, tok, &h, err)) == 0 &&
        (rc = gw_http_request_until(v->http, method, path, body, h.list, send_by(a), a->end, rsp)) != 0) {
        /* a->end is a withdrawal's: the drain's deadline */
        vault_set_err(err, "%s",
                      !rsp->cut_short ? rsp->error
                      : rsp->not_sent ? "not sent: the drain's deadline came first"
                                      : "no answer: the drain's deadline cut the call short");
        a->sent = a->sent || !rsp->not_sent;
    }
    if (tok != NULL)
        vault_mask_token(rsp, tok);
    vault_headers_cleanup(&h);
    vault_free_token(a->tok);
    a->tok = tok;
    return rc;
}

struct attempts vault_attempts_start(const struct vault *v)
{
    return (struct attempts){.deadline = gw_now_ms() + v->timeout_ms, .backoff = GW_UPSTREAM_BACKOFF_MS};
}

void vault_attempts_cleanup(struct attempts *a)
{
    vault_free_token(a->tok);
    a->tok = NULL;
}

/* Whether |rsp| holds a certificate (gw_vault_answer_cert). */
static bool holds_cert(const struct gw_http_response *rsp)
{
    X509 *cert = gw_vault_answer_cert(rsp->body, rsp->body_len);

    X509_free(cert);
    return cert != NULL;
}

/*
 * Whether the answer |rsp| to |path| is to be sent again: a 403 fetches a new token and tries
 * once more; 412, 429 and 503 are retried after *sleep_ms while the deadline allows. None is that holds
 * a certificate: Vault issued it, and another call would issue another. Nor is a sign's (whole_sends)
 * that is not Vault's own refusal (gw_vault_own_refusal): what answered, a proxy or a WAF, may have
 * passed the call on to Vault, which may have issued, and another call would issue another; its outcome
 * is unknown.
 */
int vault_send_again(struct vault *v, struct attempts *a, const char *path,
                     const struct gw_http_response *rsp, uint64_t *sleep_ms)
{
    long status = rsp->status;

    *sleep_ms = 0;
    if (vault_resent_status(status) && holds_cert(rsp))
        return 0;
    if (vault_resent_status(status) && a->whole_sends &&
        !gw_vault_own_refusal(status, rsp->body, rsp->body_len))
        return 0;
    if (status == 403 && !a->reauth && (v->vc->token_file != NULL || v->vc->auth_cert_mount != NULL)) {
        a->reauth = 1;
        token_invalidate(v, a->gen);
        return 1;
    }
    if (!retryable(status) || a->retries >= GW_UPSTREAM_RETRIES || gw_now_ms() + a->backoff >= a->deadline)
        return 0;
    gw_log(GW_LOG_WARN, "vault_retry", "upstream %s: HTTP %ld on %s; retry in %llu ms", vault_up_name(v),
           status, path, (unsigned long long)a->backoff);
    *sleep_ms = a->backoff;
    a->backoff *= 2;
    a->retries++;
    return 1;
}

/*
 * The pause of |ms| before a call is sent again (vault_send_again), ended by *a->end as it stands while it
 * sleeps (wait_end), read again every GW_UPSTREAM_PAUSE_CHECK_MS as a login wait reads it (refresh_wait): 0
 * when the pause is over, else GW_ERR_IO with |err|, the call not sent again (a drain's deadline came).
 */
static int pause_until(const struct attempts *a, uint64_t ms, char *err)
{
    uint64_t until = gw_now_ms() + ms, now, by;
    int by_end;

    while ((now = gw_now_ms()) < (by = wait_end(until, a->end, &by_end)))
        gw_sleep_ms(a->end != NULL && by - now > GW_UPSTREAM_PAUSE_CHECK_MS ? GW_UPSTREAM_PAUSE_CHECK_MS
                                                                            : by - now);
    if (!by_end)
        return 0;
    vault_set_err(err, "not sent: the drain's deadline came first");
    return GW_ERR_IO;
}

/*
 * vault_call_on performs |method| on |path| from where |a| stands (send_again). Returns 0 when an
 * HTTP answer is in |rsp| (any status), else a gw_err with |err| (timeout: outcome unknown, never
 * retried).
 */
int vault_call_on(struct vault *v, const char *method, const char *path, const char *body,
                  struct gw_http_response *rsp, char *err, struct attempts *a)
{
    uint64_t sleep_ms;
    int rc;

    for (;;) {
        if ((rc = send_once(v, method, path, body, rsp, a, err)) != 0)
            return rc;
        a->sent =
            true; /* answered: what answered may have acted on it, whatever it said (a 503 of a proxy) */
        if (!vault_send_again(v, a, path, rsp, &sleep_ms))
            return 0;
        gw_http_response_cleanup(rsp);
        if ((rc = pause_until(a, sleep_ms, err)) != 0)
            return rc;
    }
}

int vault_call(struct vault *v, const char *method, const char *path, const char *body,
               struct gw_http_response *rsp, char *err)
{
    struct attempts a = vault_attempts_start(v);
    int rc = vault_call_on(v, method, path, body, rsp, err, &a);

    vault_attempts_cleanup(&a);
    return rc;
}

/* The current token without waiting: 0 with it (or NULL: none configured), else -1 (one must be had). */
int vault_token_peek(struct vault *v, char **out, unsigned *gen)
{
    int rc = 0;

    *out = NULL;
    if (v->vc->auth_cert_mount == NULL && v->vc->token_file == NULL)
        return 0;
    pthread_mutex_lock(&v->lock);
    if (!token_usable(v) || (*out = strdup(v->token)) == NULL)
        rc = -1;
    *gen = v->gen;
    pthread_mutex_unlock(&v->lock);
    return rc;
}
