/*
 * cmpload: a CMP load client. N threads each loop ir + certConf transactions (RFC 9483 §4.1.1)
 * through OpenSSL's CMP client API in-process, over one keep-alive libcurl connection per thread
 * (RFC 9811 HTTP transfer). The `openssl cmp` CLI spends a process per transaction, so it cannot
 * load a server; this tool spends one OSSL_CMP_CTX per transaction (fresh transactionID and
 * nonces) and one pre-generated EC P-256 key per enrolment, so the server sees real work.
 *
 * Output: one JSON line on stdout, a human summary on stderr. Exit 0 only if every enrolment
 * succeeded; errors are counted and the first few are printed, never hidden. SIGTERM or SIGINT ends
 * the timed phase as its deadline would: the transactions under way end, and the results are printed.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "base/limits.h"
#include "gateway/cmp/shim.h"

/* Caps of the tool (curl's rule: every growable thing has a named cap). */
#define LOAD_MAX_THREADS 1024
#define LOAD_MAX_DURATION_S 3600 /* bounded run time, whatever the options say */
#define LOAD_MAX_COUNT 10000000L
#define LOAD_MAX_RATE 100000L
#define LOAD_MAX_KEYS 1000000L               /* pre-generated key pool, all threads together */
#define LOAD_KEYS_PER_SEC 1500               /* pool estimate for --duration: above any rate seen */
#define LOAD_MAX_SAMPLES (16L * 1024 * 1024) /* latency samples kept, all threads together */
#define LOAD_MAX_RESPONSE GW_MAX_RESPONSE    /* openssl cmp's own cap: 100 KiB */
#define LOAD_MAX_SECRET 1024
#define LOAD_DEFAULT_TIMEOUT_MS 10000
#define LOAD_CONNECT_TIMEOUT_MS 5000
#define LOAD_DEFAULT_DURATION_S 10.0
#define LOAD_ERRORS_SHOWN 5 /* error lines printed; the rest are only counted */
#define LOAD_ERR_LEN 256

enum load_fail { FAIL_NONE, FAIL_TRANSPORT, FAIL_HTTP, FAIL_CMP };

struct load_opts {
    const char *url, *cafile, *tls_cert, *tls_key, *cert, *key, *ref, *secret_file, *trusted, *srvcert;
    const char *alt_url; /* --alt-url: every second message goes there (another instance) */
    const char *subject;
    int threads, implicit_confirm, accept_any_key;
    int per_message, no_resume; /* a new connection per message; TLS sessions not resumed */
    int p10cr;                  /* p10cr (a PKCS#10 CSR) instead of ir */
    double duration;
    long count, keys, timeout_ms;
    long rate; /* --rate: enrolments per second, open loop (0: each thread as fast as it can) */
};

/* Read-only after setup; shared by all workers. */
struct load_shared {
    const struct load_opts *o;
    X509 *cert, *srvcert;
    EVP_PKEY *key;
    STACK_OF(X509) *tls_chain; /* --tls-cert, leaf first: parsed once, not per connection */
    EVP_PKEY *tls_key;
    X509_STORE *trusted;
    X509_NAME *subject;
    unsigned char secret[LOAD_MAX_SECRET];
    size_t secret_len;
    pthread_barrier_t start;
    struct timespec deadline;
    double start_ms;     /* the timed phase's start: --rate schedules from it */
    atomic_long claimed; /* --count: enrolments handed out */
    atomic_int shown;    /* error lines printed so far */
};

struct load_buf {
    unsigned char data[LOAD_MAX_RESPONSE];
    size_t len;
    int overflow;
};

struct load_worker {
    pthread_t thread;
    struct load_shared *sh;
    CURL *curl;
    struct curl_slist *headers;
    EVP_PKEY **keys;
    long want_keys, nkeys, next_key, inline_keys;
    struct lat_sample *lat;
    long nlat, cap_lat, max_lat;
    double in_transfer_ms; /* this transaction's time in curl_easy_perform: request out, answer in */
    long connects;         /* new TCP connections: shows whether keep-alive holds */
    int index;             /* of the worker, for --rate's schedule */
    long attempts;         /* enrolments begun */
    long resumed;          /* TLS handshakes that resumed a session */
    unsigned long sent;    /* messages sent, for --alt-url */
    long ok, err[FAIL_CMP + 1];
    enum load_fail fail;    /* what the transfer callback saw in this transaction */
    char why[LOAD_ERR_LEN]; /* first error line of this transaction */
    char curl_err[CURL_ERROR_SIZE];
    struct load_buf *rsp;
    int setup_ok;
};

/* One enrolment's latency: all of it, and the part spent waiting for the server (sent to received). */
struct lat_sample {
    double total_ms, server_ms;
};

static _Thread_local struct load_worker *tl_worker; /* for the CMP log callback, which has no arg */

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int past(const struct timespec *t)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec > t->tv_sec || (ts.tv_sec == t->tv_sec && ts.tv_nsec >= t->tv_nsec);
}

/*
 * Remembers the first failure the transport saw in a transaction. It wins over CMP log lines
 * captured before it: those are consequences or unrelated, the transport failure is the cause.
 */
static void note(struct load_worker *w, enum load_fail f, const char *msg)
{
    if (w->fail != FAIL_NONE)
        return;
    w->fail = f;
    snprintf(w->why, sizeof(w->why), "%s", msg);
}

/* CMP log callback: keeps the first ERROR-level line of the running transaction. */
static int cmp_log(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
    (void)func;
    (void)file;
    (void)line;
    if (tl_worker != NULL && level <= OSSL_CMP_LOG_ERR && tl_worker->why[0] == '\0')
        snprintf(tl_worker->why, sizeof(tl_worker->why), "%s", msg);
    return 1;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct load_buf *b = arg;
    size_t n = size * nmemb;

    if (n > sizeof(b->data) - b->len) {
        b->overflow = 1;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    return n;
}

/* Checks what openssl cmp checks (docs/design.md C1.2): status 200, exact content type. */
static int check_http(struct load_worker *w)
{
    long status = 0;
    char *ctype = NULL;
    char msg[LOAD_ERR_LEN];

    curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(w->curl, CURLINFO_CONTENT_TYPE, &ctype);
    if (status != 200) {
        snprintf(msg, sizeof(msg), "HTTP status %ld", status);
        note(w, FAIL_HTTP, msg);
        return 0;
    }
    if (ctype == NULL || strcasecmp(ctype, "application/pkixcmp") != 0) {
        snprintf(msg, sizeof(msg), "unexpected Content-Type: %s", ctype != NULL ? ctype : "(none)");
        note(w, FAIL_HTTP, msg);
        return 0;
    }
    return 1;
}

/* OSSL_CMP_transfer_cb_t: one POST on the worker's persistent curl handle. Returns the response or NULL. */
static OSSL_CMP_MSG *transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    struct load_worker *w = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    unsigned char *der = NULL;
    const unsigned char *p;
    OSSL_CMP_MSG *rsp = NULL;
    CURLcode rc;
    long nconn = 0;
    double t0;
    int len;

    if ((len = i2d_OSSL_CMP_MSG(req, &der)) <= 0) {
        note(w, FAIL_CMP, "cannot encode request");
        goto out;
    }
    w->rsp->len = 0;
    w->rsp->overflow = 0;
    w->curl_err[0] = '\0';
    if (w->sh->o->alt_url != NULL) /* curl keeps one keep-alive connection to each */
        curl_easy_setopt(w->curl, CURLOPT_URL, (w->sent++ & 1) != 0 ? w->sh->o->alt_url : w->sh->o->url);
    curl_easy_setopt(w->curl, CURLOPT_POSTFIELDS, (char *)der);
    curl_easy_setopt(w->curl, CURLOPT_POSTFIELDSIZE, (long)len);
    t0 = now_ms();
    rc = curl_easy_perform(w->curl);
    w->in_transfer_ms += now_ms() - t0;
    if (curl_easy_getinfo(w->curl, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK)
        w->connects += nconn;
    if (rc != CURLE_OK) {
        note(w, FAIL_TRANSPORT,
             w->rsp->overflow ? "response too large"
                              : (w->curl_err[0] != '\0' ? w->curl_err : curl_easy_strerror(rc)));
        goto out;
    }
    if (!check_http(w))
        goto out;
    p = w->rsp->data;
    /*
     * The gateway's decoder: the same messages accepted as by d2i_OSSL_CMP_MSG, but the
     * certificates of extraCerts, the same in every response, parsed once. OpenSSL 3.0 builds a
     * key decoder for each certificate it parses; the plain way, that was nearly a third of this
     * client's CPU, and the client shares the machine with the server it measures.
     */
    rsp = gw_shim_d2i_msg(&p, (long)w->rsp->len);
    if (rsp == NULL || p != w->rsp->data + w->rsp->len) {
        note(w, FAIL_CMP, "response is not one DER PKIMessage");
        OSSL_CMP_MSG_free(rsp);
        rsp = NULL;
    }
out:
    OPENSSL_free(der);
    return rsp;
}

/*
 * certConf callback. By default it keeps OpenSSL's verdict (a certificate for another key is
 * rejected, docs/design.md C1.3). --accept-any-key overrules it for OpenSSL's mock server,
 * which returns one canned certificate: the certConf is then positive, as from a real client.
 */
static int certconf(OSSL_CMP_CTX *ctx, X509 *cert, int fail_info, const char **txt)
{
    const struct load_opts *o = OSSL_CMP_CTX_get_certConf_cb_arg(ctx);

    (void)cert;
    (void)txt;
    return o->accept_any_key ? 0 : fail_info;
}

/* Applies the shared identity, trust and request options to a fresh client ctx. Returns 1 on success. */
static int ctx_configure(OSSL_CMP_CTX *ctx, const struct load_shared *sh)
{
    if (sh->cert != NULL &&
        (OSSL_CMP_CTX_set1_cert(ctx, sh->cert) != 1 || OSSL_CMP_CTX_set1_pkey(ctx, sh->key) != 1))
        return 0;
    if (sh->o->ref != NULL &&
        (OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)sh->o->ref, strlen(sh->o->ref)) != 1 ||
         OSSL_CMP_CTX_set1_secretValue(ctx, sh->secret, (int)sh->secret_len) != 1))
        return 0;
    if (sh->trusted != NULL) {
        if (X509_STORE_up_ref(sh->trusted) != 1)
            return 0;
        if (OSSL_CMP_CTX_set0_trustedStore(ctx, sh->trusted) != 1) {
            X509_STORE_free(sh->trusted);
            return 0;
        }
    }
    if (sh->srvcert != NULL && OSSL_CMP_CTX_set1_srvCert(ctx, sh->srvcert) != 1)
        return 0;
    if (sh->subject != NULL && OSSL_CMP_CTX_set1_subjectName(ctx, sh->subject) != 1)
        return 0;
    if (sh->o->implicit_confirm && OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1) != 1)
        return 0;
    return 1;
}

/* Returns a new client ctx for one transaction with |newkey| (taken on success only), or NULL. */
static OSSL_CMP_CTX *txn_ctx_new(struct load_worker *w, EVP_PKEY *newkey)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);

    if (ctx == NULL)
        return NULL;
    if (OSSL_CMP_CTX_set_log_cb(ctx, cmp_log) != 1 || OSSL_CMP_CTX_set_transfer_cb(ctx, transfer) != 1 ||
        OSSL_CMP_CTX_set_transfer_cb_arg(ctx, w) != 1 || OSSL_CMP_CTX_set_certConf_cb(ctx, certconf) != 1 ||
        OSSL_CMP_CTX_set_certConf_cb_arg(ctx, (void *)w->sh->o) != 1 || !ctx_configure(ctx, w->sh) ||
        OSSL_CMP_CTX_set0_newPkey(ctx, 1, newkey) != 1) {
        OSSL_CMP_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static EVP_PKEY *keygen(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* Takes the next pool key; generates one (and counts it) if the pool ran dry. */
static EVP_PKEY *take_key(struct load_worker *w)
{
    EVP_PKEY *k;

    if (w->next_key < w->nkeys) {
        k = w->keys[w->next_key];
        w->keys[w->next_key++] = NULL;
        return k;
    }
    w->inline_keys++;
    return keygen();
}

static void record_latency(struct load_worker *w, double ms, double server_ms)
{
    struct lat_sample *grown;
    long cap;

    if (w->nlat == w->cap_lat) {
        if (w->cap_lat >= w->max_lat)
            return; /* cap reached: counts stay exact, percentiles use the first samples */
        cap = w->cap_lat == 0 ? 1024 : w->cap_lat * 2;
        if (cap > w->max_lat)
            cap = w->max_lat;
        if ((grown = realloc(w->lat, (size_t)cap * sizeof(*grown))) == NULL)
            return;
        w->lat = grown;
        w->cap_lat = cap;
    }
    w->lat[w->nlat++] = (struct lat_sample){ms, server_ms};
}

/* Prints the first LOAD_ERRORS_SHOWN error lines of the whole run, with the OpenSSL reason. */
static void report_error(struct load_worker *w)
{
    static const char *const kind[] = {"", "transport", "http", "cmp"};
    char reason[LOAD_ERR_LEN] = "";
    unsigned long e;

    if ((e = ERR_peek_last_error()) != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    if (atomic_fetch_add(&w->sh->shown, 1) >= LOAD_ERRORS_SHOWN)
        return;
    fprintf(stderr, "cmpload: enrolment failed (%s): %s%s%s\n", kind[w->fail],
            w->why[0] != '\0' ? w->why : "no detail", reason[0] != '\0' ? " / " : "", reason);
}

/*
 * --rate: when this worker's next enrolment is due (the workers' schedules interleave), after
 * sleeping until then. Latency counts from the due time, so a server that falls behind is charged
 * for the queue it causes (no coordinated omission); without --rate, now.
 */
static double due(struct load_worker *w)
{
    const struct load_opts *o = w->sh->o;
    double at, now = now_ms();

    if (o->rate <= 0)
        return now;
    at = w->sh->start_ms + 1000.0 * ((double)w->attempts * o->threads + w->index) / (double)o->rate;
    if (at > now) {
        double ms = at - now;
        struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                              .tv_nsec = (long)((ms - floor(ms / 1000) * 1000) * 1e6)};

        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return at;
}

/* The p10cr of |w|'s transaction: a CSR for |k| with the configured subject, set on |ctx|. */
static int set_csr(struct load_worker *w, OSSL_CMP_CTX *ctx, EVP_PKEY *k)
{
    X509_REQ *csr = X509_REQ_new();
    int ok = csr != NULL && X509_REQ_set_version(csr, 0) == 1 && X509_REQ_set_pubkey(csr, k) == 1 &&
             (w->sh->subject == NULL || X509_REQ_set_subject_name(csr, w->sh->subject) == 1) &&
             X509_REQ_sign(csr, k, EVP_sha256()) > 0 && OSSL_CMP_CTX_set1_p10CSR(ctx, csr) == 1;

    X509_REQ_free(csr);
    return ok;
}

/* One ir (or p10cr) + certConf transaction, or the request alone with implicitConfirm. 1 on success. */
static int enrol_once(struct load_worker *w)
{
    double t0 = due(w);
    EVP_PKEY *k = take_key(w);
    OSSL_CMP_CTX *ctx = NULL;
    int ok = 0;

    w->attempts++;
    w->in_transfer_ms = 0;
    w->fail = FAIL_NONE;
    w->why[0] = '\0';
    if (k == NULL || (ctx = txn_ctx_new(w, k)) == NULL) {
        EVP_PKEY_free(k);
        note(w, FAIL_CMP, "cannot set up the client context");
        goto out;
    }
    if (!w->sh->o->p10cr)
        ok = OSSL_CMP_exec_IR_ses(ctx) != NULL;
    else if (set_csr(w, ctx, k))
        ok = OSSL_CMP_exec_P10CR_ses(ctx) != NULL;
    else
        note(w, FAIL_CMP, "cannot make the CSR");
out:
    if (ok) {
        w->ok++;
        record_latency(w, now_ms() - t0, w->in_transfer_ms);
    } else {
        w->err[w->fail == FAIL_NONE ? FAIL_CMP : w->fail]++;
        if (w->fail == FAIL_NONE)
            w->fail = FAIL_CMP;
        report_error(w);
    }
    OSSL_CMP_CTX_free(ctx);
    return ok;
}

/* Set by SIGTERM or SIGINT (main thread): no transaction starts after it. Lock-free, so safe to set in
   the handler and to read from the workers. */
static atomic_int stop_asked;

static void on_stop(int sig)
{
    (void)sig;
    atomic_store(&stop_asked, 1);
}

/* SIGTERM and SIGINT end the run as its deadline does; handled on the main thread only (the workers
   start with them blocked, |old| the mask to give it back once they run), so that no worker's I/O is
   interrupted. */
static int stop_on_signal(sigset_t *old)
{
    struct sigaction sa = {.sa_handler = on_stop};
    sigset_t set;

    sigemptyset(&sa.sa_mask);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return sigaction(SIGTERM, &sa, NULL) == 0 && sigaction(SIGINT, &sa, NULL) == 0 &&
           pthread_sigmask(SIG_BLOCK, &set, old) == 0;
}

static int more_work(struct load_worker *w)
{
    const struct load_opts *o = w->sh->o;

    if (atomic_load(&stop_asked) || past(&w->sh->deadline))
        return 0;
    return o->count == 0 || atomic_fetch_add(&w->sh->claimed, 1) < o->count;
}

/* Counts the handshakes that resumed a session (OpenSSL info callback; the worker's thread). */
static void on_tls_info(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if ((where & SSL_CB_HANDSHAKE_DONE) != 0 && tl_worker != NULL && SSL_session_reused((SSL *)ssl))
        tl_worker->resumed++;
}

/* Each new connection's SSL_CTX: the client certificate and key loaded once, up-referenced (libcurl
 * given the files would read and parse them again for every connection). */
static CURLcode on_ssl_ctx(CURL *curl, void *ssl_ctx, void *arg)
{
    const struct load_shared *sh = arg;

    (void)curl;
    SSL_CTX_set_info_callback(ssl_ctx, on_tls_info);
    if (sh->tls_key == NULL)
        return CURLE_OK;
    if (SSL_CTX_use_certificate(ssl_ctx, sk_X509_value(sh->tls_chain, 0)) != 1 ||
        SSL_CTX_use_PrivateKey(ssl_ctx, sh->tls_key) != 1)
        return CURLE_SSL_CERTPROBLEM;
    for (int i = 1; i < sk_X509_num(sh->tls_chain); i++)
        if (SSL_CTX_add1_chain_cert(ssl_ctx, sk_X509_value(sh->tls_chain, i)) != 1)
            return CURLE_SSL_CERTPROBLEM;
    return CURLE_OK;
}

static int curl_setup(struct load_worker *w)
{
    const struct load_opts *o = w->sh->o;
    CURL *c;

    if ((w->curl = c = curl_easy_init()) == NULL)
        return 0;
    w->headers = curl_slist_append(NULL, "Content-Type: application/pkixcmp");
    /* No "Expect: 100-continue": it costs a round trip (or a 1 s wait) on every large POST. */
    if (w->headers == NULL || (w->headers = curl_slist_append(w->headers, "Expect:")) == NULL)
        return 0;
    if (curl_easy_setopt(c, CURLOPT_URL, o->url) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_POST, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, w->headers) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)LOAD_CONNECT_TIMEOUT_MS) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, w->rsp) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, w->curl_err) != CURLE_OK)
        return 0;
    if (o->cafile != NULL && curl_easy_setopt(c, CURLOPT_CAINFO, o->cafile) != CURLE_OK)
        return 0;
    if (curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, w->sh) != CURLE_OK)
        return 0;
    /* --per-message: as openssl cmp 3.0 and HttpsURLConnection do against a server that closes */
    if (o->per_message && curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK)
        return 0;
    if (o->no_resume && curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L) != CURLE_OK)
        return 0;
    return 1;
}

/* Worker setup outside the timed phase: curl handle and this thread's share of the key pool. */
static int worker_setup(struct load_worker *w)
{
    if ((w->rsp = calloc(1, sizeof(*w->rsp))) == NULL || !curl_setup(w))
        return 0;
    if (w->want_keys > 0 && (w->keys = calloc((size_t)w->want_keys, sizeof(*w->keys))) == NULL)
        return 0;
    for (; w->nkeys < w->want_keys; w->nkeys++)
        if ((w->keys[w->nkeys] = keygen()) == NULL)
            return 0;
    return 1;
}

static void *worker_main(void *arg)
{
    struct load_worker *w = arg;

    tl_worker = w;
    w->setup_ok = worker_setup(w);
    /* Two rendezvous: all keys made, then the main thread has set the deadline. */
    pthread_barrier_wait(&w->sh->start);
    pthread_barrier_wait(&w->sh->start);
    if (w->setup_ok)
        while (more_work(w))
            enrol_once(w);
    ERR_clear_error();
    return NULL;
}

static void worker_cleanup(struct load_worker *w)
{
    long i;

    for (i = 0; w->keys != NULL && i < w->nkeys; i++)
        EVP_PKEY_free(w->keys[i]);
    free(w->keys);
    free(w->lat);
    curl_easy_cleanup(w->curl);
    curl_slist_free_all(w->headers);
    free(w->rsp);
}

/* Parses "/type=value/type=value" (the openssl -subject form; no '/' or '+' inside values). */
static X509_NAME *parse_dn(const char *s)
{
    X509_NAME *n = NULL;
    char *copy = NULL, *p, *end, *eq;

    if (s == NULL || s[0] != '/' || (copy = strdup(s + 1)) == NULL || (n = X509_NAME_new()) == NULL)
        goto err;
    for (p = copy; *p != '\0'; p = end) {
        if ((end = strchr(p, '/')) != NULL)
            *end++ = '\0';
        else
            end = p + strlen(p);
        if ((eq = strchr(p, '=')) == NULL || eq == p || eq[1] == '\0')
            goto err;
        *eq = '\0';
        if (X509_NAME_add_entry_by_txt(n, p, MBSTRING_UTF8, (unsigned char *)eq + 1, -1, -1, 0) != 1)
            goto err;
    }
    /*
     * Encode once, here, before any thread exists: an X509_NAME caches its DER on first use, and
     * threads that dup a never-encoded shared name race to fill that cache (a leak ASan caught).
     */
    if (X509_NAME_entry_count(n) == 0 || i2d_X509_NAME(n, NULL) <= 0)
        goto err;
    free(copy);
    return n;
err:
    free(copy);
    X509_NAME_free(n);
    return NULL;
}

static EVP_PKEY *load_key(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    return k;
}

/* Every certificate of the PEM file at |path|, in order; NULL if there is none. */
static STACK_OF(X509) *load_certs(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    STACK_OF(X509) *sk = b != NULL ? sk_X509_new_null() : NULL;
    X509 *x;

    while (sk != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            break;
        }
    ERR_clear_error(); /* the end of the file */
    BIO_free(b);
    if (sk != NULL && sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        sk = NULL;
    }
    return sk;
}

/* The first certificate of the PEM file at |path| (a chain may follow it). */
static X509 *load_cert(const char *path)
{
    STACK_OF(X509) *sk = load_certs(path);
    X509 *x = sk != NULL ? sk_X509_shift(sk) : NULL;

    sk_X509_pop_free(sk, X509_free);
    return x;
}

/* The PBM secret is the first line of the file, as with `openssl cmp -secret file:PATH`. */
static int load_secret(struct load_shared *sh, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[LOAD_MAX_SECRET + 2];
    size_t n;

    if (f == NULL)
        return 0;
    if (fgets(line, sizeof(line), f) == NULL) {
        fclose(f);
        return 0;
    }
    fclose(f);
    n = strcspn(line, "\r\n");
    if (n == 0 || n > LOAD_MAX_SECRET)
        return 0;
    memcpy(sh->secret, line, n);
    sh->secret_len = n;
    OPENSSL_cleanse(line, sizeof(line));
    return 1;
}

static int setup_fail(const char *what, const char *path)
{
    fprintf(stderr, "cmpload: cannot load %s from %s\n", what, path);
    ERR_print_errors_fp(stderr);
    return 0;
}

/* Loads every file named by the options into |sh|. Returns 1 on success, else prints why. */
static int shared_load(struct load_shared *sh, const struct load_opts *o)
{
    sh->o = o;
    if (o->cert != NULL && (sh->cert = load_cert(o->cert)) == NULL)
        return setup_fail("the CMP signer certificate", o->cert);
    if (o->key != NULL && (sh->key = load_key(o->key)) == NULL)
        return setup_fail("the CMP signer key", o->key);
    if (o->srvcert != NULL && (sh->srvcert = load_cert(o->srvcert)) == NULL)
        return setup_fail("the pinned server certificate", o->srvcert);
    if (o->tls_cert != NULL && (sh->tls_chain = load_certs(o->tls_cert)) == NULL)
        return setup_fail("the TLS client certificate", o->tls_cert);
    if (o->tls_key != NULL && (sh->tls_key = load_key(o->tls_key)) == NULL)
        return setup_fail("the TLS client key", o->tls_key);
    if (sh->tls_key != NULL && X509_check_private_key(sk_X509_value(sh->tls_chain, 0), sh->tls_key) != 1) {
        fprintf(stderr, "cmpload: the TLS client key in %s is not the key of the certificate in %s\n",
                o->tls_key, o->tls_cert);
        return 0;
    }
    if (o->trusted != NULL &&
        ((sh->trusted = X509_STORE_new()) == NULL || X509_STORE_load_file(sh->trusted, o->trusted) != 1))
        return setup_fail("trust anchors", o->trusted);
    if (o->secret_file != NULL && !load_secret(sh, o->secret_file))
        return setup_fail("the PBM secret (first line, 1..1024 bytes)", o->secret_file);
    if (o->subject != NULL && (sh->subject = parse_dn(o->subject)) == NULL)
        return setup_fail("the subject (form /type=value/...)", o->subject);
    return 1;
}

static void shared_cleanup(struct load_shared *sh)
{
    X509_free(sh->cert);
    X509_free(sh->srvcert);
    EVP_PKEY_free(sh->key);
    sk_X509_pop_free(sh->tls_chain, X509_free);
    EVP_PKEY_free(sh->tls_key);
    X509_STORE_free(sh->trusted);
    X509_NAME_free(sh->subject);
    OPENSSL_cleanse(sh->secret, sizeof(sh->secret));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array; 0 when empty. */
static double pct(const double *v, long n, double p)
{
    long i;

    if (n == 0)
        return 0;
    i = (long)ceil(p * (double)n) - 1;
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

struct load_totals {
    long ok, err[FAIL_CMP + 1], inline_keys, pool_keys, setup_failed, connects, resumed;
    double seconds, client_cpu_s, p50, p99, max, server_p50, server_p99;
};

/* Sums the workers and computes latency percentiles over all kept samples. Returns 1 on success. */
static int summarize(struct load_worker *ws, int n, struct load_totals *t)
{
    double *all = NULL, *srv = NULL;
    long nall = 0, i;
    int k, f;

    for (k = 0; k < n; k++)
        nall += ws[k].nlat;
    if (nall > 0 && ((all = malloc((size_t)nall * sizeof(*all))) == NULL ||
                     (srv = malloc((size_t)nall * sizeof(*srv))) == NULL)) {
        free(all);
        return 0;
    }
    nall = 0;
    for (k = 0; k < n; k++) {
        t->ok += ws[k].ok;
        for (f = FAIL_TRANSPORT; f <= FAIL_CMP; f++)
            t->err[f] += ws[k].err[f];
        t->inline_keys += ws[k].inline_keys;
        t->connects += ws[k].connects;
        t->resumed += ws[k].resumed;
        t->pool_keys += ws[k].nkeys;
        t->setup_failed += !ws[k].setup_ok;
        for (i = 0; i < ws[k].nlat; i++, nall++) {
            all[nall] = ws[k].lat[i].total_ms;
            srv[nall] = ws[k].lat[i].server_ms;
        }
    }
    if (nall > 0) {
        qsort(all, (size_t)nall, sizeof(*all), cmp_double);
        qsort(srv, (size_t)nall, sizeof(*srv), cmp_double);
    }
    t->p50 = pct(all, nall, 0.50);
    t->p99 = pct(all, nall, 0.99);
    t->max = nall > 0 ? all[nall - 1] : 0;
    t->server_p50 = pct(srv, nall, 0.50);
    t->server_p99 = pct(srv, nall, 0.99);
    free(all);
    free(srv);
    return 1;
}

static void print_results(const struct load_opts *o, const struct load_totals *t)
{
    long errors = t->err[FAIL_TRANSPORT] + t->err[FAIL_HTTP] + t->err[FAIL_CMP];
    double rate = t->seconds > 0 ? (double)t->ok / t->seconds : 0;

    printf(
        "{\"enrolments\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"rate\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
        "\"max_ms\":%.2f,\"server_p50_ms\":%.2f,\"server_p99_ms\":%.2f,\"threads\":%d,\"connections\":%ld,"
        "\"resumed\":%ld,\"transport_errors\":%ld,"
        "\"http_errors\":%ld,\"cmp_errors\":%ld,\"client_cpu_s\":%.3f}\n",
        t->ok, errors, t->seconds, rate, t->p50, t->p99, t->max, t->server_p50, t->server_p99, o->threads,
        t->connects, t->resumed, t->err[FAIL_TRANSPORT], t->err[FAIL_HTTP], t->err[FAIL_CMP],
        t->client_cpu_s);
    fflush(stdout);
    fprintf(
        stderr,
        "cmpload: %ld enrolments, %ld errors (transport %ld, http %ld, cmp %ld) in %.2f s with %d threads: "
        "%.1f/s; latency p50 %.2f ms, p99 %.2f ms, max %.2f ms (waiting for the server: p50 %.2f ms, "
        "p99 %.2f ms); %ld TCP connections; client CPU %.2f s; keys: %ld pre-generated, %ld made in the "
        "timed phase\n",
        t->ok, errors, t->err[FAIL_TRANSPORT], t->err[FAIL_HTTP], t->err[FAIL_CMP], t->seconds, o->threads,
        rate, t->p50, t->p99, t->max, t->server_p50, t->server_p99, t->connects, t->client_cpu_s,
        t->pool_keys, t->inline_keys);
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: cmpload --url URL (--cert F --key F | --ref R --secret-file F) (--trusted F | --srvcert F)\n"
        "               [options]\n"
        "Loops ir + certConf transactions (OpenSSL CMP client API, one fresh context, transactionID,\n"
        "nonces and EC P-256 key per enrolment) over one keep-alive connection per thread.\n"
        "Prints one JSON line on stdout and a summary on stderr; exits 1 if any enrolment failed.\n"
        "\n"
        "  --url URL             http:// or https:// CMP endpoint, e.g. https://127.0.0.1:8443/pki/cmp\n"
        "  --alt-url URL         every second message (each certConf) goes there: another instance\n"
        "  --cafile F            TLS: CA bundle to verify the server certificate\n"
        "  --tls-cert F          TLS: client certificate (PEM)\n"
        "  --tls-key F           TLS: client key (PEM)\n"
        "  --cert F              CMP signature protection: signer certificate (PEM)\n"
        "  --key F               CMP signature protection: signer key (PEM)\n"
        "  --ref R               CMP PBM protection: reference (senderKID)\n"
        "  --secret-file F       CMP PBM protection: secret, first line of F\n"
        "  --trusted F           trust anchors (PEM) for signed responses\n"
        "  --srvcert F           pinned response signer certificate (PEM), instead of --trusted\n"
        "  --subject DN          requested subject, /type=value/... (default: from --cert, or /CN=cmpload)\n"
        "  --implicit-confirm    ask for implicitConfirm (no certConf round trip if granted)\n"
        "  --per-message         a new connection for every message (TLS sessions resumed)\n"
        "  --no-resume           never resume a TLS session (with --per-message: a full handshake each)\n"
        "  --p10cr               p10cr with a PKCS#10 CSR (the subject of --subject) instead of ir (a\n"
        "                        CSR-only CA such as Vault)\n"
        "  --accept-any-key      confirm a certificate for another public key (OpenSSL's mock server\n"
        "                        returns one canned certificate); default: such a certificate is an error\n"
        "  --threads N           client threads, 1..%d (default 1)\n"
        "  --duration S          run S seconds (default %.0f; at most %d); SIGTERM or SIGINT ends it\n"
        "                        sooner, the results printed\n"
        "  --count N             stop after N enrolments (with --duration: whichever comes first;\n"
        "                        not reaching N is an error)\n"
        "  --keys N              keys to pre-generate before the timed phase (default: N of --count, or\n"
        "                        %d per second of --duration; keys beyond the pool are made inline\n"
        "                        and reported)\n"
        "  --timeout MS          per HTTP request (default %d)\n"
        "  --rate N              open loop: N enrolments per second in all, on a fixed schedule; latency\n"
        "                        counts from when each was due (use enough --threads to keep up)\n"
        "  --help                this text\n",
        LOAD_MAX_THREADS, LOAD_DEFAULT_DURATION_S, LOAD_MAX_DURATION_S, LOAD_KEYS_PER_SEC,
        LOAD_DEFAULT_TIMEOUT_MS);
}

/* Strict integer in [lo, hi]: the whole string, no sign tricks, no overflow. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static int parse_secs(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v > 0) || v > LOAD_MAX_DURATION_S)
        return 0;
    *out = v;
    return 1;
}

enum {
    OPT_URL = 256,
    OPT_CAFILE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_CERT,
    OPT_KEY,
    OPT_REF,
    OPT_SECRET_FILE,
    OPT_TRUSTED,
    OPT_SRVCERT,
    OPT_SUBJECT,
    OPT_ALT_URL,
    OPT_IMPLICIT,
    OPT_ANY_KEY,
    OPT_PER_MESSAGE,
    OPT_NO_RESUME,
    OPT_P10CR,
    OPT_THREADS,
    OPT_DURATION,
    OPT_COUNT,
    OPT_KEYS,
    OPT_TIMEOUT,
    OPT_RATE,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"cafile", required_argument, NULL, OPT_CAFILE},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"ref", required_argument, NULL, OPT_REF},
    {"secret-file", required_argument, NULL, OPT_SECRET_FILE},
    {"trusted", required_argument, NULL, OPT_TRUSTED},
    {"srvcert", required_argument, NULL, OPT_SRVCERT},
    {"subject", required_argument, NULL, OPT_SUBJECT},
    {"alt-url", required_argument, NULL, OPT_ALT_URL},
    {"implicit-confirm", no_argument, NULL, OPT_IMPLICIT},
    {"accept-any-key", no_argument, NULL, OPT_ANY_KEY},
    {"per-message", no_argument, NULL, OPT_PER_MESSAGE},
    {"no-resume", no_argument, NULL, OPT_NO_RESUME},
    {"p10cr", no_argument, NULL, OPT_P10CR},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"count", required_argument, NULL, OPT_COUNT},
    {"keys", required_argument, NULL, OPT_KEYS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"rate", required_argument, NULL, OPT_RATE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Handles one numeric option. Returns 1 if valid. */
static int set_number(struct load_opts *o, int c, const char *arg)
{
    long v;

    switch (c) {
    case OPT_THREADS:
        if (!parse_long(arg, 1, LOAD_MAX_THREADS, &v))
            return 0;
        o->threads = (int)v;
        return 1;
    case OPT_DURATION:
        return parse_secs(arg, &o->duration);
    case OPT_COUNT:
        return parse_long(arg, 1, LOAD_MAX_COUNT, &o->count);
    case OPT_KEYS:
        return parse_long(arg, 0, LOAD_MAX_KEYS, &o->keys);
    case OPT_TIMEOUT:
        return parse_long(arg, 1, (long)LOAD_MAX_DURATION_S * 1000, &o->timeout_ms);
    case OPT_RATE:
        return parse_long(arg, 1, LOAD_MAX_RATE, &o->rate);
    default:
        return 0;
    }
}

/* Stores one string option. Returns 1 if |c| is one. */
static int set_string(struct load_opts *o, int c, const char *arg)
{
    const char **slot[] = {
        [OPT_URL - OPT_URL] = &o->url,           [OPT_CAFILE - OPT_URL] = &o->cafile,
        [OPT_TLS_CERT - OPT_URL] = &o->tls_cert, [OPT_TLS_KEY - OPT_URL] = &o->tls_key,
        [OPT_CERT - OPT_URL] = &o->cert,         [OPT_KEY - OPT_URL] = &o->key,
        [OPT_REF - OPT_URL] = &o->ref,           [OPT_SECRET_FILE - OPT_URL] = &o->secret_file,
        [OPT_TRUSTED - OPT_URL] = &o->trusted,   [OPT_SRVCERT - OPT_URL] = &o->srvcert,
        [OPT_SUBJECT - OPT_URL] = &o->subject,   [OPT_ALT_URL - OPT_URL] = &o->alt_url,
    };

    if (c < OPT_URL || c > OPT_ALT_URL)
        return 0;
    *slot[c - OPT_URL] = arg;
    return 1;
}

/* The cross-option check: one protection, one response trust, a URL. Returns 1 if consistent. */
static int check_opts(struct load_opts *o)
{
    const char *why = NULL;

    if (o->url == NULL)
        why = "--url is required";
    else if (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0)
        why = "--url must start with http:// or https://";
    else if (o->alt_url != NULL && strncmp(o->alt_url, "http://", 7) != 0 &&
             strncmp(o->alt_url, "https://", 8) != 0)
        why = "--alt-url must start with http:// or https://";
    else if ((o->cert == NULL) != (o->key == NULL))
        why = "--cert and --key go together";
    else if ((o->ref == NULL) != (o->secret_file == NULL))
        why = "--ref and --secret-file go together";
    else if (o->cert == NULL && o->ref == NULL)
        why = "give --cert/--key or --ref/--secret-file";
    else if (o->trusted == NULL && o->srvcert == NULL && o->ref == NULL)
        why = "give --trusted or --srvcert to verify signed responses";
    else if ((o->tls_cert == NULL) != (o->tls_key == NULL))
        why = "--tls-cert and --tls-key go together";
    if (why != NULL) {
        fprintf(stderr, "cmpload: %s (see --help)\n", why);
        return 0;
    }
    if (o->subject == NULL && o->cert == NULL)
        o->subject = "/CN=cmpload";
    if (o->duration == 0)
        o->duration = o->count > 0 ? LOAD_MAX_DURATION_S : LOAD_DEFAULT_DURATION_S;
    if (o->keys < 0)
        o->keys = o->count > 0 ? o->count : (long)(o->duration * LOAD_KEYS_PER_SEC);
    if (o->keys > LOAD_MAX_KEYS)
        o->keys = LOAD_MAX_KEYS;
    return 1;
}

/* Returns 0 to run, 1 after --help, -1 on a usage error. */
static int parse_opts(int argc, char **argv, struct load_opts *o)
{
    int c;

    *o = (struct load_opts){.threads = 1, .keys = -1, .timeout_ms = LOAD_DEFAULT_TIMEOUT_MS};
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            usage(stdout);
            return 1;
        }
        if (c >= OPT_IMPLICIT && c <= OPT_P10CR) {
            int *flag[] = {&o->implicit_confirm, &o->accept_any_key, &o->per_message, &o->no_resume,
                           &o->p10cr};

            *flag[c - OPT_IMPLICIT] = 1;
            continue;
        }
        if (set_string(o, c, optarg) || (c >= OPT_THREADS && set_number(o, c, optarg)))
            continue;
        if (c != '?')
            fprintf(stderr, "cmpload: bad value for --%s: %s\n", long_opts[c - OPT_URL].name, optarg);
        usage(stderr);
        return -1;
    }
    if (optind != argc) {
        fprintf(stderr, "cmpload: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    return check_opts(o) ? 0 : -1;
}

static double cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/*
 * Starts the workers, times the run between the second rendezvous and the last join. The client's
 * own CPU is taken over the same span (key generation excluded): on a machine shared by client and
 * server, it says how much of the CPU the server could not have.
 */
static int run(struct load_shared *sh, struct load_worker *ws, int n, struct load_totals *t)
{
    double t0, c0;
    int k, started = 0, rc = 0;
    sigset_t old;

    for (k = 0; k < n; k++) {
        ws[k].sh = sh;
        ws[k].index = k;
        ws[k].want_keys = sh->o->keys / n + (k < sh->o->keys % n);
        ws[k].max_lat = LOAD_MAX_SAMPLES / n;
    }
    if (!stop_on_signal(&old))
        return 0;
    if (pthread_barrier_init(&sh->start, NULL, (unsigned)n + 1) != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return 0;
    }
    for (; started < n; started++)
        if (pthread_create(&ws[started].thread, NULL, worker_main, &ws[started]) != 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL); /* the workers keep them blocked */
    if (started < n) {
        /* Cannot rendezvous with threads that do not exist: a setup failure, bail out loudly. */
        fprintf(stderr, "cmpload: cannot start %d threads\n", n);
        exit(2);
    }
    pthread_barrier_wait(&sh->start);
    clock_gettime(CLOCK_MONOTONIC, &sh->deadline);
    sh->deadline.tv_sec += (time_t)sh->o->duration;
    sh->deadline.tv_nsec += (long)((sh->o->duration - floor(sh->o->duration)) * 1e9);
    if (sh->deadline.tv_nsec >= 1000000000L) {
        sh->deadline.tv_sec++;
        sh->deadline.tv_nsec -= 1000000000L;
    }
    t0 = sh->start_ms = now_ms();
    c0 = cpu_seconds();
    pthread_barrier_wait(&sh->start);
    for (k = 0; k < n; k++)
        pthread_join(ws[k].thread, NULL);
    t->seconds = (now_ms() - t0) / 1e3;
    t->client_cpu_s = cpu_seconds() - c0;
    rc = summarize(ws, n, t);
    pthread_barrier_destroy(&sh->start);
    return rc;
}

int main(int argc, char **argv)
{
    struct load_opts o;
    struct load_shared sh = {0};
    struct load_worker *ws = NULL;
    struct load_totals t = {0};
    int rc = 2, k;

    if ((k = parse_opts(argc, argv, &o)) != 0)
        return k > 0 ? 0 : 2;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    if (!shared_load(&sh, &o) || (ws = calloc((size_t)o.threads, sizeof(*ws))) == NULL)
        goto out;
    if (!run(&sh, ws, o.threads, &t))
        goto out;
    print_results(&o, &t);
    rc = 0;
    if (t.setup_failed > 0) {
        fprintf(stderr, "cmpload: %ld threads failed to set up (curl or key generation)\n", t.setup_failed);
        rc = 1;
    }
    if (t.err[FAIL_TRANSPORT] + t.err[FAIL_HTTP] + t.err[FAIL_CMP] > 0 || t.ok == 0)
        rc = 1;
    if (o.count > 0 && t.ok + t.err[FAIL_TRANSPORT] + t.err[FAIL_HTTP] + t.err[FAIL_CMP] < o.count) {
        fprintf(stderr, "cmpload: the deadline came before --count %ld was reached\n", o.count);
        rc = 1;
    }
out:
    for (k = 0; ws != NULL && k < o.threads; k++)
        worker_cleanup(&ws[k]);
    free(ws);
    shared_cleanup(&sh);
    curl_global_cleanup();
    return rc;
}
