/*
 * The upstream HTTP client (upstream/http_client.h) on libcurl's easy interface.
 *
 * Each worker thread gets its own easy handle per client (a pthread key), created on first use
 * and reset before every call: curl_easy_reset keeps the live connections, so keep-alive works
 * without any sharing between threads (libcurl: "a handle must not be used by two threads at
 * once"). Every handle is also on the client's list so gw_http_client_free can release the
 * handles of threads that are still alive.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include "base/clock.h"
#include "base/err.h"
#include "base/limits.h"
#include "upstream/http_client.h"
#include "upstream/upstream_int.h"

/* One thread's easy handle for one client. */
struct handle {
    CURL *curl;
    struct gw_http_client *client;
    struct handle *prev, *next;
};

/*
 * The body being received; capped at GW_MAX_UPSTREAM_BODY (curl: every buffer has a cap). It may hold
 * a secret (a Vault login's token), also when it ends early (cut off, too large, too late): it is
 * OpenSSL's memory, grown by copying, and every copy is wiped before it is freed (sink_free).
 */
struct sink {
    char *buf;
    size_t len, cap;
    int overflow;
};

/* The body of a call as libcurl reads it (on_send), and how much of it it has read. */
struct source {
    const char *data;
    size_t len, off;
};

/* One gw_http_request_async call: an easy handle of its own, and what it points at. */
struct transfer {
    CURL *curl;
    struct curl_slist *hdrs;
    char *url;
    char *body; /* |src|'s data: a copy, the caller's need not outlive the call */
    struct source src;
    struct sink sink;
    gw_http_done_fn done;
    void *arg;
    struct transfer *next;
};

struct gw_http_client {
    char *base_url;
    const struct gw_http_conf *tls; /* borrowed: tls_ca, tls_cert, tls_key */
    long timeout_ms;
    unsigned flags; /* enum gw_http_flag */
    pthread_key_t key;
    pthread_mutex_t lock; /* guards |handles| and the transfer thread's fields below */
    struct handle *handles;
    /* asynchronous calls: one multi handle driven by one thread, started on first use */
    CURLM *multi;
    pthread_t thread;
    bool started, stopping;
    struct transfer *queued; /* submitted, not yet on |multi| */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void handle_unlink(struct gw_http_client *c, struct handle *h)
{
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        c->handles = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
}

/* Thread exit: the thread's handle leaves the client's list. */
static void handle_destroy(void *arg)
{
    struct handle *h = arg;
    struct gw_http_client *c = h->client;

    pthread_mutex_lock(&c->lock);
    handle_unlink(c, h);
    pthread_mutex_unlock(&c->lock);
    curl_easy_cleanup(h->curl);
    free(h);
}

struct gw_http_client *gw_http_client_new(const char *name, const struct gw_http_conf *conf,
                                          uint32_t timeout_ms, unsigned flags, int *rc, char *err)
{
    struct gw_http_client *c = NULL;
    int why;

    rc = rc != NULL ? rc : &why;
    *rc = GW_ERR_UNAVAILABLE;
    name = name != NULL ? name : "?";
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        snprintf(err, GW_ERR_LEN, "upstream %s: curl_global_init: %s", name, curl_easy_strerror(global_rc));
        return NULL;
    }
    if (conf == NULL || conf->url == NULL || conf->url[0] == '\0') {
        snprintf(err, GW_ERR_LEN, "upstream %s: no url", name);
        *rc = GW_ERR_INVAL;
        return NULL;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL)
        goto nomem;
    c->tls = conf;
    if ((c->base_url = strdup(conf->url)) == NULL)
        goto nomem;
    /* the base URL has no trailing slash: every path starts with one */
    while (strlen(c->base_url) > 0 && c->base_url[strlen(c->base_url) - 1] == '/')
        c->base_url[strlen(c->base_url) - 1] = '\0';
    c->timeout_ms = timeout_ms != 0 ? (long)timeout_ms : GW_DEFAULT_UPSTREAM_TIMEOUT_MS;
    c->flags = flags;
    if (pthread_key_create(&c->key, handle_destroy) != 0) {
        snprintf(err, GW_ERR_LEN, "upstream %s: no thread key left", name);
        goto fail;
    }
    pthread_mutex_init(&c->lock, NULL);
    return c;
nomem:
    snprintf(err, GW_ERR_LEN, "upstream %s: out of memory", name);
    *rc = GW_ERR_NOMEM;
fail:
    if (c != NULL) {
        free(c->base_url);
        free(c);
    }
    return NULL;
}

static void transfers_stop(struct gw_http_client *c);

void gw_http_client_free(struct gw_http_client *c)
{
    struct handle *h, *next;

    if (c == NULL)
        return;
    transfers_stop(c);
    /* after the key is gone no thread-exit destructor runs for it: the list is ours alone */
    pthread_key_delete(c->key);
    pthread_mutex_lock(&c->lock);
    for (h = c->handles; h != NULL; h = next) {
        next = h->next;
        curl_easy_cleanup(h->curl);
        free(h);
    }
    c->handles = NULL;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_destroy(&c->lock);
    free(c->base_url);
    free(c);
}

void gw_http_client_thread_done(struct gw_http_client *c)
{
    struct handle *h = pthread_getspecific(c->key);

    if (h != NULL) {
        pthread_setspecific(c->key, NULL);
        handle_destroy(h);
    }
}

/* The calling thread's handle, created on first use. Worker. */
static CURL *thread_handle(struct gw_http_client *c)
{
    struct handle *h = pthread_getspecific(c->key);

    if (h != NULL)
        return h->curl;
    if ((h = calloc(1, sizeof(*h))) == NULL)
        return NULL;
    if ((h->curl = curl_easy_init()) == NULL) {
        free(h);
        return NULL;
    }
    h->client = c;
    pthread_mutex_lock(&c->lock);
    h->next = c->handles;
    if (c->handles != NULL)
        c->handles->prev = h;
    c->handles = h;
    pthread_mutex_unlock(&c->lock);
    if (pthread_setspecific(c->key, h) != 0) {
        handle_destroy(h);
        return NULL;
    }
    return h->curl;
}

/* Wipes and frees what |s| holds (every byte written to it: the body and its NUL). */
static void sink_free(struct sink *s)
{
    if (s->buf != NULL)
        OPENSSL_clear_free(s->buf, s->len + 1);
    s->buf = NULL;
    s->cap = 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;
    char *p;

    if (n > GW_MAX_UPSTREAM_BODY - s->len) {
        s->overflow = 1;
        return 0; /* curl aborts with CURLE_WRITE_ERROR */
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap != 0 ? s->cap : 4096;

        while (cap < s->len + n + 1)
            cap *= 2;
        if (cap > GW_MAX_UPSTREAM_BODY + 1)
            cap = GW_MAX_UPSTREAM_BODY + 1;
        /* not realloc: that would free the old copy as it is */
        if ((p = OPENSSL_malloc(cap)) == NULL)
            return 0;
        if (s->buf != NULL)
            memcpy(p, s->buf, s->len);
        sink_free(s);
        s->buf = p;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

static size_t on_send(char *buf, size_t size, size_t nitems, void *arg)
{
    struct source *s = arg;
    size_t n = s->len - s->off;

    if (n > size * nitems)
        n = size * nitems;
    memcpy(buf, s->data + s->off, n);
    s->off += n;
    return n;
}

/*
 * CURLOPT_SEEKFUNCTION. libcurl rewinds a body only to send its request again, and does so by itself
 * when a kept-alive connection it reused closes before any answer, even after the whole request went
 * out: the upstream may have acted on it (Vault issued a certificate, which a second one would leave
 * valid and unknown). So a body once read is never rewound: the call fails (CURLE_SEND_FAIL_REWIND)
 * and its outcome is unknown, as after a timeout.
 */
static int no_resend(void *arg, curl_off_t offset, int origin)
{
    const struct source *s = arg;

    return offset == 0 && origin == SEEK_SET && s->off == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_CANTSEEK;
}

/*
 * Frees a header list made by make_headers. curl_slist_append copied each line, "X-Vault-Token:
 * <token>" among them, and curl_slist_free_all would free the copies as they are: each is wiped first.
 */
static void headers_free(struct curl_slist *list)
{
    for (struct curl_slist *h = list; h != NULL; h = h->next)
        if (h->data != NULL)
            OPENSSL_cleanse(h->data, strlen(h->data));
    curl_slist_free_all(list);
}

/* Builds the request header list; NULL on allocation failure. */
static struct curl_slist *make_headers(const char *body, const char *const *headers)
{
    struct curl_slist *list = NULL, *tmp;
    size_t i;

    /* no "Expect: 100-continue" round trip on larger bodies (a CSR PEM often is one) */
    if ((list = curl_slist_append(list, "Expect:")) == NULL)
        return NULL;
    if (body != NULL) {
        if ((tmp = curl_slist_append(list, "Content-Type: application/json")) == NULL)
            goto fail;
        list = tmp;
    }
    for (i = 0; headers != NULL && headers[i] != NULL; i++) {
        if ((tmp = curl_slist_append(list, headers[i])) == NULL)
            goto fail;
        list = tmp;
    }
    return list;
fail:
    headers_free(list);
    return NULL;
}

#define SET(opt, val)                                                                                        \
    do {                                                                                                     \
        if (rc == CURLE_OK)                                                                                  \
            rc = curl_easy_setopt(curl, opt, val);                                                           \
    } while (0)

/*
 * CURLOPT_SSL_CTX_FUNCTION, for each new connection (libcurl with OpenSSL: |ssl_ctx| is its SSL_CTX, before
 * its SSL is made; libcurl 7.88 calls it after it set what its own options name, which name no client
 * certificate or key). The "tls_cert" certificates and "tls_key" key of |arg|, a gw_http_conf, go in as the
 * objects its load checked. Handed to libcurl as PEM (CURLOPT_SSLKEY_BLOB), the key's text was parsed again
 * at each new connection, by OpenSSL's PEM reader, which frees its line buffers as they are. A key in a
 * PKCS#11 token goes in the same way, the one base/pkcs11.c loaded and logged in to: by its URI
 * (CURLOPT_SSLKEY) libcurl 7.88 reads it as a file and fails, and with the engine key type it would load it
 * again on the thread of each new connection, outside base/pkcs11.c's lock. The certificate and key are
 * checked as a pair again here, as the SSL_CTX holds them. libcurl does
 * not know of a certificate set here, so its reuse of connections and TLS sessions does not tell one client
 * certificate from another: that holds because a gw_http_client serves one gw_http_conf with handles and a
 * multi of its own, sharing nothing (no CURLSH) with another client.
 */
static CURLcode present_client(CURL *curl, void *ssl_ctx, void *arg)
{
    const struct gw_http_conf *tls = arg;

    (void)curl;
    if (tls == NULL || tls->client_key == NULL)
        return CURLE_OK;
    if (SSL_CTX_use_certificate(ssl_ctx, sk_X509_value(tls->client_certs, 0)) != 1)
        return CURLE_SSL_CERTPROBLEM;
    for (int i = 1; i < sk_X509_num(tls->client_certs); i++)
        if (SSL_CTX_add1_chain_cert(ssl_ctx, sk_X509_value(tls->client_certs, i)) != 1)
            return CURLE_SSL_CERTPROBLEM;
    if (SSL_CTX_use_PrivateKey(ssl_ctx, tls->client_key) != 1 || SSL_CTX_check_private_key(ssl_ctx) != 1)
        return CURLE_SSL_CERTPROBLEM;
    return CURLE_OK;
}

CURLcode gw_http_setopt_base(CURL *curl, const char *url, const struct gw_http_conf *tls, long timeout_ms)
{
    CURLcode rc = CURLE_OK;

    SET(CURLOPT_URL, url);
    /* never a proxy: libcurl would take one from http_proxy, https_proxy or ALL_PROXY in the
       environment and send the Vault token, the CSRs and the cfssl key's HMACs its way ("" turns
       that off; NO_PROXY then has nothing to except) */
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    /* the trust anchors, certificate and key as checked at load, not their files: curl would open
       those again at each new connection, and use whatever they hold by then (NOCOPY: the
       configuration outlives the client). The anchors replace the default bundle; the default CA
       path would be trusted beside them, so it goes too. */
    if (tls->ca_pem != NULL) {
        struct curl_blob ca = {tls->ca_pem, tls->ca_pem_len, CURL_BLOB_NOCOPY};
        SET(CURLOPT_CAINFO_BLOB, &ca);
        SET(CURLOPT_CAPATH, NULL);
    }
    if (tls->client_key != NULL) {
        SET(CURLOPT_SSL_CTX_FUNCTION, present_client);
        SET(CURLOPT_SSL_CTX_DATA, (void *)tls);
    }
    return rc;
}

/*
 * CURLOPT_SSL_CTX_FUNCTION, for each new connection (libcurl with OpenSSL: |ssl_ctx| is its SSL_CTX,
 * before its SSL is made). OpenSSL keeps what it decrypted in its read buffer after libcurl read it,
 * until the next record overwrites it: a login's answer, the token in it, stayed there for as long as
 * the connection lived. With SSL_OP_CLEANSE_PLAINTEXT each record is wiped once read, and the buffer
 * when the connection ends. What is sent needs nothing: OpenSSL encrypts a record in place in its
 * write buffer, so the X-Vault-Token line does not stay there as it was.
 */
static CURLcode cleanse_plaintext(CURL *curl, void *ssl_ctx, void *arg)
{
    SSL_CTX_set_options(ssl_ctx, SSL_OP_CLEANSE_PLAINTEXT);
    return present_client(curl, ssl_ctx, arg);
}

/* Sets every option of one call (|src|: its body, unless a GET); CURLE_OK or the first failure. */
static CURLcode set_options(struct gw_http_client *c, CURL *curl, const char *method, const char *url,
                            struct source *src, struct curl_slist *hdrs, struct sink *sink, long timeout_ms)
{
    CURLcode rc = gw_http_setopt_base(curl, url, c->tls, timeout_ms);

    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, sink);
    /* every connection of the client's handles has it: they share no connection with another client */
    if ((c->flags & GW_HTTP_SECRETS) != 0) {
        SET(CURLOPT_SSL_CTX_FUNCTION, cleanse_plaintext); /* in place of present_client, which it calls */
        SET(CURLOPT_SSL_CTX_DATA, (void *)c->tls);
    }
    if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_CUSTOMREQUEST, method);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)src->len);
        SET(CURLOPT_READFUNCTION, on_send);
        SET(CURLOPT_READDATA, src);
        SET(CURLOPT_SEEKFUNCTION, no_resend);
        SET(CURLOPT_SEEKDATA, src);
    }
#undef SET
    return rc;
}

static char *join_url(const struct gw_http_client *c, const char *path)
{
    size_t n = strlen(c->base_url) + strlen(path) + 2;
    char *url = malloc(n);

    if (url != NULL)
        snprintf(url, n, "%s%s%s", c->base_url, path[0] == '/' ? "" : "/", path);
    return url;
}

/* Failures before the request could leave: the upstream cannot have acted on it. */
static int never_sent(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
        return 1;
    default:
        return 0;
    }
}

/*
 * libcurl stamps the point where a transfer begins to send (pretransfer) before the first byte of the
 * request; the bytes it counts as sent are not reliable across its versions.
 */
int gw_http_nothing_sent(CURL *curl, CURLcode rc)
{
    curl_off_t pretransfer = -1;

    return never_sent(rc) ||
           (curl_easy_getinfo(curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) == CURLE_OK &&
            pretransfer == 0);
}

/* CURLOPT_XFERINFOFUNCTION: non-zero aborts the transfer once its end came (gw_http_setopt_end). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    struct gw_http_end *e = arg;
    uint64_t end = atomic_load(e->end);

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    if (end == 0 || gw_now_ms() < end)
        return 0;
    e->cut = 1;
    return 1;
}

CURLcode gw_http_setopt_end(CURL *curl, struct gw_http_end *e)
{
    CURLcode rc;

    e->cut = 0;
    if (e->end == NULL)
        return CURLE_OK;
    if ((rc = curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress)) != CURLE_OK ||
        (rc = curl_easy_setopt(curl, CURLOPT_XFERINFODATA, e)) != CURLE_OK)
        return rc;
    return curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
}

/* Copies what the answer said into |rsp|, its call ended by its caller's end with |cut|; returns 0 or
 * GW_ERR_TIMEOUT / GW_ERR_IO. */
static int finish(CURL *curl, CURLcode rc, int cut, struct sink *sink, struct gw_http_response *rsp)
{
    char *ct = NULL;

    rsp->cut_short = cut && (rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_ABORTED_BY_CALLBACK);
    if (rc != CURLE_OK && gw_http_nothing_sent(curl, rc)) { /* the upstream cannot have acted on it */
        rsp->not_sent = 1;
        snprintf(rsp->error, sizeof(rsp->error), "%s",
                 rsp->cut_short                   ? GW_HTTP_CUT_NOT_SENT
                 : rc == CURLE_OPERATION_TIMEDOUT ? "no connection within the timeout"
                                                  : curl_easy_strerror(rc));
        return GW_ERR_IO;
    }
    if (rsp->cut_short || rc == CURLE_OPERATION_TIMEDOUT) {
        rsp->timed_out = 1;
        snprintf(rsp->error, sizeof(rsp->error), "%s",
                 rsp->cut_short ? GW_HTTP_CUT_NO_ANSWER : "no answer within the timeout");
        return GW_ERR_TIMEOUT;
    }
    if (sink->overflow) {
        rsp->too_large = 1;
        snprintf(rsp->error, sizeof(rsp->error), "answer larger than %d bytes", GW_MAX_UPSTREAM_BODY);
        return GW_ERR_IO;
    }
    if (rc != CURLE_OK) {
        snprintf(rsp->error, sizeof(rsp->error), "%s", curl_easy_strerror(rc));
        return GW_ERR_IO;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &rsp->status);
    if (curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL)
        snprintf(rsp->content_type, sizeof(rsp->content_type), "%s", ct);
    rsp->body = sink->buf != NULL ? sink->buf : OPENSSL_zalloc(1);
    rsp->body_len = sink->len;
    sink->buf = NULL;
    return rsp->body != NULL ? 0 : GW_ERR_NOMEM;
}

/* worker */
int gw_http_request(struct gw_http_client *c, const char *method, const char *path, const char *body,
                    const char *const *headers, struct gw_http_response *rsp)
{
    return gw_http_request_until(c, method, path, body, headers, 0, NULL, rsp);
}

/* worker */
int gw_http_request_by(struct gw_http_client *c, const char *method, const char *path, const char *body,
                       const char *const *headers, uint64_t deadline_ms, struct gw_http_response *rsp)
{
    return gw_http_request_until(c, method, path, body, headers, deadline_ms, NULL, rsp);
}

/* The sooner of two ends (gw_now_ms; 0: none). */
static uint64_t sooner(uint64_t a, uint64_t b)
{
    return a == 0 || (b != 0 && b < a) ? b : a;
}

/* worker */
int gw_http_request_until(struct gw_http_client *c, const char *method, const char *path, const char *body,
                          const char *const *headers, uint64_t deadline_ms, const _Atomic uint64_t *end,
                          struct gw_http_response *rsp)
{
    struct sink sink = {0};
    struct source src = {body != NULL ? body : "", body != NULL ? strlen(body) : 0, 0};
    struct gw_http_end check = {end, 0};
    int by_end = 0; /* its timeout is what is left until *end, not the client's */
    struct curl_slist *hdrs = NULL;
    char *url = NULL;
    uint64_t now = gw_now_ms(), end_ms = end != NULL ? atomic_load(end) : 0;
    long timeout_ms;
    CURL *curl;
    CURLcode rc;
    int ret = GW_ERR_NOMEM;

    memset(rsp, 0, sizeof(*rsp));
    if (c == NULL || method == NULL || path == NULL)
        return GW_ERR_INVAL;
    timeout_ms = c->timeout_ms;
    if ((deadline_ms = sooner(deadline_ms, end_ms)) != 0 && deadline_ms <= now) { /* libcurl: 0 is none */
        rsp->not_sent = 1;
        rsp->cut_short = deadline_ms == end_ms;
        snprintf(rsp->error, sizeof(rsp->error), "%s",
                 rsp->cut_short ? GW_HTTP_CUT_NOT_SENT : "no time left within the timeout");
        return GW_ERR_IO;
    }
    if (deadline_ms != 0 && deadline_ms - now < (uint64_t)timeout_ms) {
        timeout_ms = (long)(deadline_ms - now);
        by_end = deadline_ms == end_ms;
    }
    if ((curl = thread_handle(c)) == NULL || (url = join_url(c, path)) == NULL ||
        (hdrs = make_headers(body, headers)) == NULL) {
        snprintf(rsp->error, sizeof(rsp->error), "out of memory");
        goto out;
    }
    curl_easy_reset(curl);
    if ((rc = set_options(c, curl, method, url, &src, hdrs, &sink, timeout_ms)) == CURLE_OK &&
        (rc = gw_http_setopt_end(curl, &check)) == CURLE_OK)
        rc = curl_easy_perform(curl);
    ret = finish(curl, rc, check.cut || (by_end && rc == CURLE_OPERATION_TIMEDOUT), &sink, rsp);
    /* the handle keeps nothing that points at this call's memory */
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 1L);
out:
    headers_free(hdrs);
    free(url);
    sink_free(&sink); /* what came of an answer that failed (cut off, too large, too late) */
    return ret;
}

void gw_http_response_cleanup(struct gw_http_response *rsp)
{
    if (rsp == NULL)
        return;
    if (rsp->body != NULL)
        OPENSSL_clear_free(rsp->body, rsp->body_len + 1);
    memset(rsp, 0, sizeof(*rsp));
}

bool gw_http_status_refuses(long status)
{
    return status >= 400 && status < 500 && status != 401 && status != 403 && status != 408 &&
           status != 412 && status != 429;
}

/* ---- asynchronous calls ---- */

static void transfer_free(struct transfer *tr)
{
    if (tr == NULL)
        return;
    curl_easy_cleanup(tr->curl);
    headers_free(tr->hdrs);
    free(tr->url);
    free(tr->body);
    sink_free(&tr->sink);
    free(tr);
}

/* A transfer ended with |rc|: its caller hears what gw_http_request would have said. */
static void transfer_complete(struct transfer *tr, CURLcode rc)
{
    struct gw_http_response rsp;
    int ret;

    memset(&rsp, 0, sizeof(rsp));
    ret = finish(tr->curl, rc, 0, &tr->sink, &rsp);
    tr->done(tr->arg, ret, &rsp);
    gw_http_response_cleanup(&rsp);
    transfer_free(tr);
}

/* Moves the submitted transfers onto the multi handle; false once stopping and nothing is left. */
static bool transfers_take(struct gw_http_client *c, int running)
{
    struct transfer *tr, *next;
    bool stopping;

    pthread_mutex_lock(&c->lock);
    tr = c->queued;
    c->queued = NULL;
    stopping = c->stopping;
    pthread_mutex_unlock(&c->lock);
    for (; tr != NULL; tr = next, running++) {
        next = tr->next;
        if (curl_multi_add_handle(c->multi, tr->curl) != CURLM_OK)
            transfer_complete(tr, CURLE_OUT_OF_MEMORY);
    }
    return !stopping || running > 0;
}

/* The transfer thread: drives every asynchronous call of |c| until the client is freed. */
static void *transfers_main(void *arg)
{
    struct gw_http_client *c = arg;
    struct transfer *tr;
    CURLMsg *m;
    int running = 0, left;

    while (transfers_take(c, running)) {
        curl_multi_perform(c->multi, &running);
        while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *curl = m->easy_handle;
            CURLcode rc = m->data.result;

            curl_easy_getinfo(curl, CURLINFO_PRIVATE, (char **)&tr);
            curl_multi_remove_handle(c->multi, curl);
            transfer_complete(tr, rc);
        }
        curl_multi_poll(c->multi, NULL, 0, 1000, NULL);
    }
    return NULL;
}

/* Ends the transfer thread once every call in flight completed (each has a deadline). */
static void transfers_stop(struct gw_http_client *c)
{
    bool started;

    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    started = c->started;
    pthread_mutex_unlock(&c->lock);
    if (started) {
        curl_multi_wakeup(c->multi);
        pthread_join(c->thread, NULL);
    }
    curl_multi_cleanup(c->multi);
}

/* Queues |tr| for the transfer thread, starting it on first use; 0, GW_ERR_NOMEM, or GW_ERR_INVAL once
 * the client stops. */
static int transfers_submit(struct gw_http_client *c, struct transfer *tr)
{
    int rc = 0;

    pthread_mutex_lock(&c->lock);
    if (c->stopping) {
        rc = GW_ERR_INVAL;
    } else if (!c->started) {
        long conns =
            c->tls->max_connections != 0 ? (long)c->tls->max_connections : GW_DEFAULT_UPSTREAM_CONNECTIONS;

        /* a bounded pool of kept-alive connections: calls beyond it wait in line inside libcurl, rather
           than open a connection (and a TLS handshake) each at the upstream */
        if ((c->multi = curl_multi_init()) == NULL ||
            curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, conns) != CURLM_OK ||
            pthread_create(&c->thread, NULL, transfers_main, c) != 0) {
            curl_multi_cleanup(c->multi);
            c->multi = NULL;
            rc = GW_ERR_NOMEM;
        } else {
            c->started = true;
        }
    }
    if (rc == 0) {
        tr->next = c->queued;
        c->queued = tr;
    }
    pthread_mutex_unlock(&c->lock);
    if (rc == 0)
        curl_multi_wakeup(c->multi);
    return rc;
}

int gw_http_request_async(struct gw_http_client *c, const char *method, const char *path, const char *body,
                          const char *const *headers, gw_http_done_fn done, void *arg)
{
    struct transfer *tr;
    CURLcode rc;
    int ret;

    if (c == NULL || method == NULL || path == NULL || done == NULL)
        return GW_ERR_INVAL;
    if ((tr = calloc(1, sizeof(*tr))) == NULL || (tr->curl = curl_easy_init()) == NULL ||
        (tr->url = join_url(c, path)) == NULL || (tr->hdrs = make_headers(body, headers)) == NULL ||
        (tr->body = strdup(body != NULL ? body : "")) == NULL) {
        transfer_free(tr);
        return GW_ERR_NOMEM;
    }
    tr->done = done;
    tr->arg = arg;
    tr->src = (struct source){tr->body, strlen(tr->body), 0};
    rc = set_options(c, tr->curl, method, tr->url, &tr->src, tr->hdrs, &tr->sink, c->timeout_ms);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(tr->curl, CURLOPT_PRIVATE, (char *)tr);
    if (rc != CURLE_OK) {
        transfer_free(tr);
        return GW_ERR_INVAL;
    }
    if ((ret = transfers_submit(c, tr)) != 0)
        transfer_free(tr);
    return ret;
}
