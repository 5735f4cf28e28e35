/*
 * The "cmp" upstream: cmpgw as a CMP RA (RFC 9483 §5) in front of a CA that speaks CMP.
 *
 * Design in docs/cmp-relay.md: the gateway has already verified the client's request (protection,
 * POPO, authorization, policy), so it asks the upstream as a client of its own, on OpenSSL 3.0's
 * public client API. CRMF goes upstream as an ir carrying the plan and POPO raVerified; p10cr goes
 * as a p10cr with the client's CSR unchanged; revocation is an rr. One OSSL_CMP_CTX per call (the
 * client ctx holds per-transaction state); the HTTP transfer is libcurl with the upstream's TLS
 * settings and one deadline for the whole exchange, polling included.
 *
 * Before OpenSSL's client confirms a certificate upstream, the gateway's check of the result
 * (gw_policy_check_issued, which the engine runs again before release) decides: a certificate the
 * gateway would never release is rejected in the certConf (RFC 9810), and the CA revokes it or
 * never publishes it. The engine withdraws it here (rr) only if the CA did not confirm that
 * rejection, or if our client later rejects a certificate the gateway released.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <curl/curl.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "upstream/upstream.h"
#include "upstream/upstream_int.h"
#include "upstream/http_client.h"
#include "upstream/field.h"
#include "base/conf.h"
#include "base/pem.h"
#include "base/clock.h"
#include "mappings/policy.h"

#define CMP_CONTENT_TYPE "application/pkixcmp"
#define PREFIX "upstream CA: "
/* PKIBody CHOICE tags (RFC 9810 §5.1.2), which OpenSSL 3.0 keeps internal */
#define BODY_PKICONF 19
#define BODY_CERTCONF 24

struct cmp_up {
    const struct gw_upstream_conf *conf;
    const struct gw_cmp_up_conf *cc;         /* its "cmp" section */
    const struct gw_upstream_signer *signer; /* the gateway's, where no PBM secret is configured */
    char *url;                               /* url + path */
};

/*
 * Why no usable answer came, in the words the client gets (map_failure): the CA was not reached (nothing
 * of the message left: it issued nothing), or it was and did not answer, or its answer is no CMP answer
 * (either way it may have issued).
 */
enum xfer_fault { XFER_UNREACHED, XFER_UNANSWERED, XFER_UNUSABLE, XFER_NOT_ASKED };
static const char *const xfer_said[] = {
    [XFER_UNREACHED] = "could not be reached, it is unavailable: ",
    [XFER_NOT_ASKED] = "was not asked: ",  /* its caller's end came before a message left (TEXT_NOT_ASKED) */
    [XFER_UNANSWERED] = "did not answer ", /* then "in time (...)" or "(...)" */
    [XFER_UNUSABLE] = "gave no usable answer, it is unavailable: ",
};

/* One exchange's transfer state, the transfer callback's argument. */
struct xfer {
    const struct cmp_up *cu;
    uint64_t deadline_ms;
    struct gw_http_end end; /* a revocation's end, which may be lowered while it runs (NULL: none) */
    int by_end;             /* |deadline_ms| is that end's, not the upstream timeout's */
    CURL *curl;             /* one handle per exchange: servers keep a transaction to its connection */
    int failed;             /* no usable answer came: |fault| says how, |err| what failed */
    enum xfer_fault fault;  /* then why */
    int sent;               /* a message of this exchange (some of it at least) left: the CA was reached */
    int conf_answered;      /* our certConf got a pkiconf (not yet verified: see rejection_confirmed) */
    char err[GW_ERR_LEN];
};

/* A growing response body with a cap. */
struct sink {
    unsigned char *buf;
    size_t len;
    int too_big;
};

static uint32_t timeout_of(const struct gw_upstream_conf *conf)
{
    return conf->timeout_ms != 0 ? conf->timeout_ms : GW_DEFAULT_UPSTREAM_TIMEOUT_MS;
}

/* What the drain's deadline did to an exchange it ended (x->by_end): the words beside xfer_said. */
#define TEXT_NOT_ASKED "the drain's deadline came before its request was sent"
#define TEXT_CUT_SHORT "before the drain's deadline cut the exchange short"

/* The exchange's end as it stands now: its end, if lowered below the upstream timeout's (x->by_end). */
static void read_end(struct xfer *x)
{
    uint64_t end = x->end.end != NULL ? atomic_load(x->end.end) : 0;

    if (end != 0 && end < x->deadline_ms) {
        x->deadline_ms = end;
        x->by_end = 1;
    }
}

/* ---- transfer: one POST of application/pkixcmp over libcurl (RFC 9811) ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;
    unsigned char *grown;

    if (n > GW_MAX_UPSTREAM_BODY - s->len) {
        s->too_big = 1;
        return 0;
    }
    if ((grown = realloc(s->buf, s->len + n)) == NULL)
        return 0;
    memcpy(grown + s->len, data, n);
    s->buf = grown;
    s->len += n;
    return n;
}

#define SET(opt, val)                                                                                        \
    do {                                                                                                     \
        if ((rc = curl_easy_setopt(curl, opt, val)) != CURLE_OK)                                             \
            return rc;                                                                                       \
    } while (0)

static CURLcode set_options(CURL *curl, const struct xfer *x, const unsigned char *der, long len,
                            struct curl_slist *hdrs, struct sink *sink, long timeout_ms)
{
    CURLcode rc;

    if ((rc = gw_http_setopt_base(curl, x->cu->url, &x->cu->cc->http, timeout_ms)) != CURLE_OK)
        return rc;
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, der);
    SET(CURLOPT_POSTFIELDSIZE, len);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, sink);
    return CURLE_OK;
}

static void xfer_fail(struct xfer *x, enum xfer_fault fault, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void xfer_fail(struct xfer *x, enum xfer_fault fault, const char *fmt, ...)
{
    va_list ap;

    x->failed = 1;
    x->fault = fault;
    va_start(ap, fmt);
    vsnprintf(x->err, sizeof(x->err), fmt, ap);
    va_end(ap);
}

/* RFC 9811 §3: a CMP answer is HTTP 200 with Content-Type application/pkixcmp (parameters aside). */
static int answer_ok(CURL *curl, struct xfer *x)
{
    long status = 0;
    char *ct = NULL;

    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
    if (status != 200) {
        xfer_fail(x, XFER_UNUSABLE, "it answered HTTP %ld", status);
        return 0;
    }
    if (ct == NULL || strncasecmp(ct, CMP_CONTENT_TYPE, strlen(CMP_CONTENT_TYPE)) != 0 ||
        (ct[strlen(CMP_CONTENT_TYPE)] != '\0' && ct[strlen(CMP_CONTENT_TYPE)] != ';')) {
        xfer_fail(x, XFER_UNUSABLE, "its answer is not " CMP_CONTENT_TYPE);
        return 0;
    }
    return 1;
}

/* The next DER TLV within |end|: *p moves to its content, *len is that content's length. */
static int der_next(const unsigned char **p, const unsigned char *end, long *len)
{
    int tag, cls, ret = ASN1_get_object(p, len, &tag, &cls, end - *p);

    return (ret & 0x80) == 0 && ret != 0x21; /* no error, and no indefinite length (not DER) */
}

/*
 * The number of certificates in the extraCerts of the PKIMessage |der| (RFC 9810 §5.1: SEQUENCE {
 * header, body, protection [0] OPTIONAL, extraCerts [1] OPTIONAL }), -1 if it is not DER. OpenSSL
 * adds each to the exchange's untrusted certificates (compared with every one before it) and builds
 * a chain for each that names the answer's sender, before the answer's protection is known good: a
 * CA's answer needs its signer's chain and the new certificate's there, no more.
 */
static int extra_certs(const unsigned char *der, size_t der_len)
{
    const unsigned char *p = der, *end = der + der_len, *q, *list_end;
    long len, n;
    int count = 0;

    if (!der_next(&p, end, &len))
        return -1;
    for (end = p + len; p < end; p += len) {
        q = p;
        if (!der_next(&p, end, &len))
            return -1;
        if (*q != (V_ASN1_CONTEXT_SPECIFIC | V_ASN1_CONSTRUCTED | 1))
            continue;
        q = p;
        if (!der_next(&q, p + len, &n))
            return -1;
        for (list_end = q + n; q < list_end; q += n, count++)
            if (!der_next(&q, list_end, &n))
                return -1;
    }
    return count;
}

/*
 * A POST that failed with |rc|: the CA was not reached where nothing of it, nor of an earlier message of
 * the exchange, left (gw_http_nothing_sent); else it was (an ir it answered may have issued), and no
 * answer came (in time), or the one that came was too large (|too_big|).
 */
static void transfer_failed(struct xfer *x, CURL *curl, CURLcode rc, int too_big)
{
    int cut = x->end.cut || (x->by_end && rc == CURLE_OPERATION_TIMEDOUT);

    if (!x->sent && gw_http_nothing_sent(curl, rc)) {
        if (cut)
            xfer_fail(x, XFER_NOT_ASKED, TEXT_NOT_ASKED);
        else if (rc == CURLE_OPERATION_TIMEDOUT)
            xfer_fail(x, XFER_UNREACHED, "no connection within %u ms", timeout_of(x->cu->conf));
        else
            xfer_fail(x, XFER_UNREACHED, "%s", curl_easy_strerror(rc));
        return;
    }
    x->sent = 1;
    if (too_big)
        xfer_fail(x, XFER_UNUSABLE, "its answer is too large");
    else if (cut)
        xfer_fail(x, XFER_UNANSWERED, TEXT_CUT_SHORT);
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        xfer_fail(x, XFER_UNANSWERED, "in time (none within %u ms)", timeout_of(x->cu->conf));
    else
        xfer_fail(x, XFER_UNANSWERED, "(%s)", curl_easy_strerror(rc));
}

/*
 * The gateway could not send a message of the exchange for a reason of its own (|what|): the CA was not
 * reached if no earlier message left; else it took one (an ir it answered may have issued) and the
 * exchange ends unanswered. No test forces these paths: they need libcurl or OpenSSL to run out of memory
 * between two messages of one exchange.
 */
static void send_failed(struct xfer *x, const char *what)
{
    if (x->sent)
        xfer_fail(x, XFER_UNANSWERED, "(the gateway could not send its next message: %s)", what);
    else
        xfer_fail(x, XFER_UNREACHED, "%s", what);
}

/* The OSSL_CMP_transfer_cb_t: NULL on any failure, with the reason in the xfer (worker). */
static OSSL_CMP_MSG *transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    struct xfer *x = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    struct curl_slist *hdrs = NULL, *h;
    struct sink sink = {NULL, 0, 0};
    unsigned char *der = NULL;
    const unsigned char *p;
    OSSL_CMP_MSG *rsp = NULL;
    CURL *curl = x->curl;
    uint64_t now = gw_now_ms();
    CURLcode rc;
    int len, n_extra;

    read_end(x);
    if (now >= x->deadline_ms && x->by_end) { /* the drain's: before this message, as below */
        xfer_fail(x, x->sent ? XFER_UNANSWERED : XFER_NOT_ASKED, x->sent ? TEXT_CUT_SHORT : TEXT_NOT_ASKED);
        return NULL;
    }
    if (now >= x->deadline_ms) { /* before this message: an earlier one may have reached the CA */
        xfer_fail(x, x->sent ? XFER_UNANSWERED : XFER_UNREACHED,
                  x->sent ? "in time (none within %u ms)" : "no time left within %u ms",
                  timeout_of(x->cu->conf));
        return NULL;
    }
    /* OpenSSL's mock (and others) drop the transaction when its connection closes (RFC 9811 §3.2) */
    if (curl == NULL)
        curl = x->curl = curl_easy_init();
    if ((len = i2d_OSSL_CMP_MSG(req, &der)) <= 0 || curl == NULL ||
        (h = curl_slist_append(NULL, "Content-Type: " CMP_CONTENT_TYPE)) == NULL) {
        send_failed(x, "out of memory");
        goto out;
    }
    hdrs = h;
    /* no "Expect: 100-continue": CMP servers (OpenSSL's among them) do not answer it */
    if ((h = curl_slist_append(hdrs, "Expect:")) != NULL)
        hdrs = h;
    if ((rc = set_options(curl, x, der, len, hdrs, &sink, (long)(x->deadline_ms - now))) != CURLE_OK ||
        (rc = gw_http_setopt_end(curl, &x->end)) != CURLE_OK) {
        send_failed(x, curl_easy_strerror(rc));
        goto out;
    }
    if ((rc = curl_easy_perform(curl)) != CURLE_OK) {
        transfer_failed(x, curl, rc, sink.too_big);
        goto out;
    }
    x->sent = 1;
    if (!answer_ok(curl, x))
        goto out;
    p = sink.buf;
    if ((rsp = d2i_OSSL_CMP_MSG(NULL, &p, (long)sink.len)) == NULL || p != sink.buf + sink.len ||
        (n_extra = extra_certs(sink.buf, sink.len)) < 0)
        xfer_fail(x, XFER_UNUSABLE, "its answer is not a PKIMessage in DER");
    else if (n_extra > GW_MAX_UPSTREAM_EXTRA_CERTS)
        xfer_fail(x, XFER_UNUSABLE, "its answer carries %d extraCerts, more than %d", n_extra,
                  GW_MAX_UPSTREAM_EXTRA_CERTS);
    else {
        if (OSSL_CMP_MSG_get_bodytype(req) == BODY_CERTCONF)
            x->conf_answered = OSSL_CMP_MSG_get_bodytype(rsp) == BODY_PKICONF;
        goto out;
    }
    OSSL_CMP_MSG_free(rsp);
    rsp = NULL;
out:
    if (curl != NULL)
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    OPENSSL_free(der);
    free(sink.buf);
    return rsp;
}

/*
 * OpenSSL 3.0 refuses an answer from an unexpected sender with nothing on the error queue: it says
 * which name came and which was expected only to the log callback, which takes no argument. The
 * exchange runs on one thread from start to end, so that thread keeps what was said for its reason.
 */
static _Thread_local char name_mismatch[GW_ERR_LEN / 2];

/* OpenSSL's CMP client diagnostics go to our debug log; the error queue is read after the call. */
static int log_cb(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
    (void)file;
    (void)line;
    /* its two lines on the sender name only (check_name also reports on candidate signers) */
    if (func != NULL && strcmp(func, "check_name") == 0 &&
        (strstr(msg, "sender DN field") != NULL || strstr(msg, "expected sender") != NULL)) {
        size_t len = strlen(name_mismatch);

        while (*msg == ' ')
            msg++;
        snprintf(name_mismatch + len, sizeof(name_mismatch) - len, "%s%s", len > 0 ? " " : "", msg);
    }
    if (level <= OSSL_CMP_LOG_WARNING)
        gw_log(GW_LOG_DEBUG, "cmp_upstream", "%s: %s", func, msg);
    return 1;
}

/* ---- the upstream request ---- */

/* Protection towards the upstream (RFC 9483 §5.1.1): PBM if configured, else the gateway's signer. */
static int set_protection(OSSL_CMP_CTX *ctx, const struct cmp_up *cu)
{
    const struct gw_cmp_up_conf *cc = cu->cc;
    const struct gw_upstream_signer *s = cu->signer;

    if (cc->cmp_secret != NULL)
        return OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)cc->cmp_ref,
                                                (int)strlen(cc->cmp_ref)) == 1 &&
               OSSL_CMP_CTX_set1_secretValue(ctx, cc->cmp_secret, (int)cc->cmp_secret_len) == 1;
    if (s == NULL || s->cert == NULL || s->key == NULL)
        return 0;
    if (OSSL_CMP_CTX_set1_cert(ctx, s->cert) != 1 || OSSL_CMP_CTX_set1_pkey(ctx, s->key) != 1)
        return 0;
    /* never an empty stack (docs/design.md O10.3); the chain goes to extraCerts */
    return sk_X509_num(s->chain) <= 0 || OSSL_CMP_CTX_set1_untrusted(ctx, s->chain) == 1;
}

/*
 * Who may answer. OpenSSL 3.0 checks the sender name of a response only against expected_sender
 * (or the pinned srvCert's subject) and, with neither, takes any certificate that chains to the
 * trust store under any name: a device certificate of the same CA could then answer for it. So
 * either the pinned "server_cert" (its signature, its subject), or the expected sender name
 * (check_cmp: "expected_sender" or issuer_ca's subject) with "trusted". PBM answers too must bear
 * that name.
 */
static int set_responder(OSSL_CMP_CTX *ctx, const struct gw_cmp_up_conf *cc)
{
    X509_STORE *store;

    if (cc->cmp_server_cert != NULL)
        return OSSL_CMP_CTX_set1_srvCert(ctx, cc->cmp_server_cert) == 1;
    if (cc->cmp_expected_sender == NULL ||
        OSSL_CMP_CTX_set1_expected_sender(ctx, cc->cmp_expected_sender) != 1)
        return 0;
    if (cc->cmp_anchors == NULL)
        return 1;
    /* a store for this exchange only: OpenSSL 3.0 adds the caPubs of every PBM-protected
       ip/cp/kup/ccp to the context's store (OSSL_CMP_validate_msg), so a shared one would let
       whoever holds the PBM secret plant anchors for every later exchange; a few certificates added
       by reference cost microseconds, nothing next to an exchange's signatures and round trips */
    if ((store = gw_pem_anchor_store(cc->cmp_anchors)) == NULL)
        return 0;
    if (OSSL_CMP_CTX_set0_trustedStore(ctx, store) != 1) {
        X509_STORE_free(store);
        return 0;
    }
    return 1;
}

/* A fresh client context for one exchange with the upstream; NULL on failure. */
static OSSL_CMP_CTX *new_ctx(const struct cmp_up *cu, struct xfer *x)
{
    const struct gw_upstream_conf *conf = cu->conf;
    int secs = (int)((timeout_of(conf) + 999) / 1000);
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);

    if (ctx == NULL)
        return NULL;
    name_mismatch[0] = '\0';
    x->cu = cu;
    /* a little inside the upstream timeout, so that our precise reason beats the waiter's deadline */
    x->deadline_ms = gw_now_ms() + timeout_of(conf) - timeout_of(conf) / 10;
    if (OSSL_CMP_CTX_set_log_cb(ctx, log_cb) != 1 || OSSL_CMP_CTX_set_transfer_cb(ctx, transfer) != 1 ||
        OSSL_CMP_CTX_set_transfer_cb_arg(ctx, x) != 1 || !set_protection(ctx, cu) ||
        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT, secs) != 1 ||
        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_TOTAL_TIMEOUT, secs) != 1)
        goto err;
    if (!set_responder(ctx, cu->cc))
        goto err;
    /* the CA the certificates come from is the recipient (RFC 9810 §5.1.1) */
    if (sk_X509_num(conf->issuer_certs) > 0 &&
        OSSL_CMP_CTX_set1_recipient(ctx, X509_get_subject_name(sk_X509_value(conf->issuer_certs, 0))) != 1)
        goto err;
    return ctx;
err:
    OSSL_CMP_CTX_free(ctx);
    return NULL;
}

static int push_ext(X509_EXTENSIONS *exts, int nid, void *value, int crit)
{
    X509_EXTENSION *e = X509V3_EXT_i2d(nid, crit, value);
    int ok = e != NULL && sk_X509_EXTENSION_push(exts, e) > 0;

    if (!ok)
        X509_EXTENSION_free(e);
    return ok;
}

/*
 * OpenSSL fills what a template leaves out from the certificate that signs the request, the gateway's
 * own: a template without subjectAltNames would carry the gateway's names, one without an issuer name
 * the CA of the gateway's certificate. It is told to leave both out (the NULL-DN: no issuer).
 */
static int no_defaults(OSSL_CMP_CTX *ctx)
{
    X509_NAME *none = X509_NAME_new();
    int ok = none != NULL && OSSL_CMP_CTX_set1_issuer(ctx, none) == 1 &&
             OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_SUBJECTALTNAME_NODEFAULT, 1) == 1;

    X509_NAME_free(none);
    return ok;
}

/* The plan as an upstream ir template (docs/cmp-relay.md): the CA may still apply its own profile. */
static int set_template(OSSL_CMP_CTX *ctx, const struct gw_cert_plan *plan)
{
    X509_EXTENSIONS *exts = sk_X509_EXTENSION_new_null();
    time_t now = time(NULL);
    /* the plan's whole days, one short by a moment counted: OpenSSL's client counts "-days 3" from its
       own clock, a second or more before this one */
    time_t days = (plan->not_after - now + GW_ISSUED_DAYS_SLACK) / 86400;
    int ok = 0;

    if (exts == NULL || !no_defaults(ctx) || EVP_PKEY_up_ref(plan->pubkey) != 1)
        goto out;
    if (OSSL_CMP_CTX_set0_newPkey(ctx, 0, plan->pubkey) != 1) {
        EVP_PKEY_free(plan->pubkey);
        goto out;
    }
    if (X509_NAME_entry_count(plan->subject) > 0 && OSSL_CMP_CTX_set1_subjectName(ctx, plan->subject) != 1)
        goto out;
    if ((plan->sans != NULL && !push_ext(exts, NID_subject_alt_name, plan->sans, 0)) ||
        !gw_usage_exts_add(&exts, plan->key_usage, plan->ext_key_usage))
        goto out;
    /* CMP 3.0 offers whole days only; a shorter plan leaves validity to the CA (checked on return) */
    if (days > 0 && OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_VALIDITY_DAYS, (int)days) != 1)
        goto out;
    /* the gateway verified the client's POPO (OpenSSL did, on the gateway's server ctx) */
    if (OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_POPO_METHOD, OSSL_CRMF_POPO_RAVERIFIED) != 1)
        goto out;
    if (sk_X509_EXTENSION_num(exts) > 0) {
        if (OSSL_CMP_CTX_set0_reqExtensions(ctx, exts) != 1)
            goto out;
        exts = NULL;
    }
    ok = 1;
out:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return ok;
}

/* ---- the upstream answer ---- */

/*
 * Appends the upstream's statusString, each text quoted as every upstream's words are (gw_field_text:
 * a control is '?', a cut never inside a character): a CA's "Zertifikat für ..." reads as it says.
 * The characters a reader would not see as themselves are left to where it is shown (the statusString
 * and the log replace them).
 */
static void append_status_text(const OSSL_CMP_CTX *ctx, char *buf, size_t cap)
{
    OSSL_CMP_PKIFREETEXT *texts = OSSL_CMP_CTX_get0_statusString(ctx);
    size_t len = strlen(buf);

    for (int i = 0; i < sk_ASN1_UTF8STRING_num(texts) && len + 1 < cap; i++) {
        const ASN1_UTF8STRING *s = sk_ASN1_UTF8STRING_value(texts, i);

        if (i > 0 && len + 3 < cap) {
            memcpy(buf + len, "; ", 2);
            len += 2;
        }
        gw_field_text(buf + len, cap - len, (const char *)ASN1_STRING_get0_data(s),
                      (size_t)ASN1_STRING_length(s));
        len += strlen(buf + len);
    }
    buf[len] = '\0';
}

/* The lowest failInfo bit set in |code|, or |dflt|. */
static int lowest_fail_bit(int code, int dflt)
{
    for (int bit = 0; code > 0 && bit <= OSSL_CMP_PKIFAILUREINFO_MAX; bit++)
        if ((code & (1 << bit)) != 0)
            return bit;
    return dflt;
}

/* The lowest failInfo bit the upstream set, or |dflt|. */
static int first_fail_bit(const OSSL_CMP_CTX *ctx, int dflt)
{
    return lowest_fail_bit(OSSL_CMP_CTX_get_failInfoCode(ctx), dflt);
}

static const char *status_name(int status)
{
    static const char *const names[] = {"accepted",        "grantedWithMods",   "rejection",
                                        "waiting",         "revocationWarning", "revocationNotification",
                                        "keyUpdateWarning"};

    return status >= 0 && status < (int)(sizeof(names) / sizeof(names[0])) ? names[status] : "none";
}

/* The last OpenSSL reason, for answers the client API refused (bad protection, wrong body, sender). */
static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    if (r == NULL && name_mismatch[0] != '\0') {
        /* the names are the operator's to see: the client learns only what kind of failure it was */
        gw_log_kv(GW_LOG_WARN, "cmp_upstream_sender", "msg", name_mismatch, NULL);
        return "the answer's sender is not the one expected (names in the gateway's log)";
    }
    return r != NULL ? r : "protocol error";
}

/*
 * Maps a failed exchange into |status|/|fail_info|/|reason| (GW_ERR_LEN): an upstream rejection
 * keeps its failInfo and text; no usable answer is systemUnavail (RFC 9483 §3.6.4). |reason| reaches
 * the client: it names the upstream, never its URL (the caller logs that).
 */
static void map_failure(const struct cmp_up *cu, OSSL_CMP_CTX *ctx, const struct xfer *x, int *status,
                        int *fail_info, char *reason)
{
    int st = OSSL_CMP_CTX_get_status(ctx);

    *status = GW_ERR_UPSTREAM;
    if (x->failed) {
        *fail_info = OSSL_CMP_PKIFAILUREINFO_systemUnavail;
        /* whatever came back, if anything, the CA may have taken a request that left (an answer that is no
           CMP answer may have been a proxy's, the CA's ip garbled, or one over our caps) */
        snprintf(reason, GW_ERR_LEN, "upstream CA %.48s %s%.100s%s", gw_upstream_conf_name(cu->conf),
                 xfer_said[x->fault], x->err, x->sent ? "; the outcome is unknown" : "");
        return;
    }
    if (OSSL_CMP_CTX_get0_newCert(ctx) != NULL) {
        /* issued and accepted by our check (check_cert), then the certConf exchange failed */
        *fail_info = OSSL_CMP_PKIFAILUREINFO_systemFailure;
        snprintf(reason, GW_ERR_LEN,
                 PREFIX "did not confirm the certificate it issued (%.100s); it was not released",
                 openssl_reason());
        return;
    }
    if (st == OSSL_CMP_PKISTATUS_rejection || OSSL_CMP_CTX_get_failInfoCode(ctx) > 0) {
        *fail_info = first_fail_bit(ctx, OSSL_CMP_PKIFAILUREINFO_badRequest);
        snprintf(reason, GW_ERR_LEN, PREFIX);
        append_status_text(ctx, reason, GW_ERR_LEN);
        if (strlen(reason) == strlen(PREFIX))
            snprintf(reason, GW_ERR_LEN, PREFIX "request rejected (%s)", status_name(st));
        return;
    }
    *fail_info = OSSL_CMP_PKIFAILUREINFO_systemUnavail;
    if (!x->sent) { /* OpenSSL failed before the transfer: the request's protection (a signer's key out of
                       reach), its encoding */
        snprintf(reason, GW_ERR_LEN, "upstream CA %s was not asked (%s); nothing was sent",
                 gw_upstream_conf_name(cu->conf), openssl_reason());
        return;
    }
    /* an answer came, so the CA took the request: one OpenSSL refused (its protection, its sender, another
       transactionID) may have been the CA's ip with a certificate in it, which the gateway never read */
    snprintf(reason, GW_ERR_LEN,
             "upstream CA %s gave no usable answer (%s, status %s); the outcome is unknown",
             gw_upstream_conf_name(cu->conf), openssl_reason(), status_name(st));
}

/* ---- the certificate, before the certConf ---- */

/* What the certConf callback judges a certificate by, and what it found. */
struct conf_check {
    const struct cmp_up *cu;
    const struct gw_upstream *up;
    const struct gw_sign_req *req;
    int fail_info;           /* the failInfo bit it rejected the certificate with; -1: none */
    char reason[GW_ERR_LEN]; /* then why: the statusString to the CA in the certConf, and to our client */
};

/*
 * The OSSL_CMP_certConf_cb_t: the check the engine runs before release (the key, the chain to
 * issuer_ca and the CA that signed it, the role's policy), run before the certConf. OpenSSL's own finding
 * |fail_info| (a certificate for another key) is one of the check's.
 */
static int check_cert(OSSL_CMP_CTX *ctx, X509 *cert, int fail_info, const char **text)
{
    struct conf_check *cc = OSSL_CMP_CTX_get_certConf_cb_arg(ctx);
    const struct gw_upstream_conf *conf = cc->cu->conf;
    char why[GW_ERR_LEN];
    enum gw_issued_verdict v = gw_policy_check_issued(cc->req->role, cc->req->plan, cert, conf->issuer_certs,
                                                      conf->issuer_store, NULL, time(NULL), NULL, why);

    (void)fail_info;
    if ((v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED) && gw_upstream_check_signer(cc->up, cert, why) != 0)
        v = GW_ISSUED_BAD;
    if (v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED)
        return 0;
    cc->fail_info = gw_policy_issued_refusal(v, why, cc->reason);
    *text = cc->reason;
    return 1 << cc->fail_info;
}

/*
 * Whether the CA confirmed our certConf's rejection (RFC 9810: it then revokes the certificate or
 * never publishes it): it answered with a pkiconf that OpenSSL verified, as a failure of that
 * exchange would be on the error queue before "certificate not accepted", the last error OpenSSL
 * adds. Without a certConf (a CA that granted implicitConfirm unasked) nothing was confirmed.
 */
static int rejection_confirmed(const struct xfer *x)
{
    unsigned long e = ERR_peek_error();

    return x->conf_answered && ERR_GET_LIB(e) == ERR_LIB_CMP &&
           ERR_GET_REASON(e) == CMP_R_CERTIFICATE_NOT_ACCEPTED;
}

/* ---- ops ---- */

#define FAIL_BIT(name) (1 << OSSL_CMP_PKIFAILUREINFO_##name)
/*
 * The CA could not take the gateway's message as its own (its protection, its signer, its clock, its
 * nonces, its recipient), or does not let its sender make the request (notAuthorized, "the sender
 * was not authorized to make the preceding request", RFC 9810 §5.2.3; RFC 9483 §3.5 has a CA check
 * such things of every message): the sender is the gateway, whose credentials at the CA are the
 * upstream's configuration, which an operator fixes, as an HTTP 401 or 403; the same request passes
 * then. The client, whom the gateway authenticated and authorized before asking, can change none of
 * it. A refusal of what was asked (badCertTemplate, badAlg of the client's key, ...) is not; badPOP
 * is the gateway's on an ir only (sign_refused_gateway).
 */
#define GATEWAY_REFUSED                                                                                      \
    (FAIL_BIT(badMessageCheck) | FAIL_BIT(badTime) | FAIL_BIT(wrongAuthority) | FAIL_BIT(signerNotTrusted) | \
     FAIL_BIT(badRecipientNonce) | FAIL_BIT(badSenderNonce) | FAIL_BIT(unsupportedVersion) |                 \
     FAIL_BIT(wrongIntegrity) | FAIL_BIT(notAuthorized))

/*
 * Whether any of the failInfo bits |bits| of a failed exchange is in |gateway|, the CA's refusal of the
 * gateway's own message: then the operator is told at level error what the CA said, which is for no client.
 */
static int refused_gateway(const struct cmp_up *cu, const OSSL_CMP_CTX *ctx, int bits, int gateway)
{
    char said[GW_ERR_LEN];

    if ((gateway & bits) == 0)
        return 0;
    if (OSSL_CMP_CTX_snprint_PKIStatus(ctx, said, sizeof(said)) == NULL)
        snprintf(said, sizeof(said), "(unprintable)");
    gw_log_kv(GW_LOG_ERROR, "cmp_upstream_refused_gateway", "upstream", gw_upstream_conf_name(cu->conf),
              "url", cu->url, "status", said, NULL);
    return 1;
}

/*
 * The failInfo bits of a failed exchange whose bit map_failure chose as |fi|: all the CA set where it
 * chose one of them, else |fi| alone.
 */
static int fail_bits(const OSSL_CMP_CTX *ctx, const struct xfer *x, int fi)
{
    int code = OSSL_CMP_CTX_get_failInfoCode(ctx);

    if (x->failed || OSSL_CMP_CTX_get0_newCert(ctx) != NULL || code <= 0)
        return 1 << fi;
    return code & OSSL_CMP_PKIFAILUREINFO_MAX_BIT_PATTERN;
}

/*
 * What the CA refuses as the gateway's own on a sign, any of its failInfo bits |bits|: an ir's POPO is
 * the gateway's raVerified (set_template), so its badPOP is about the gateway's standing as an RA at the
 * CA, its configuration there; a p10cr's POP is the CSR's own signature, so its badPOP is the client's.
 * Read whole: {badCertTemplate, notAuthorized} is the CA refusing the gateway, whatever else it says of
 * the request, and not for the client to mend.
 */
static int sign_refused_gateway(const struct cmp_up *cu, const OSSL_CMP_CTX *ctx,
                                const struct gw_sign_req *req, int bits)
{
    return refused_gateway(cu, ctx, bits, GATEWAY_REFUSED | (req->csr == NULL ? FAIL_BIT(badPOP) : 0));
}

/*
 * A failed exchange into |res|. A certificate our check refused is refused as the engine would
 * refuse it; with one that was issued, the engine records and withdraws it, unless the CA confirmed
 * its rejection.
 */
static void sign_failed(const struct cmp_up *cu, OSSL_CMP_CTX *ctx, const struct xfer *x,
                        const struct conf_check *cc, struct gw_sign_result *res)
{
    X509 *cert = OSSL_CMP_CTX_get0_newCert(ctx);
    int bits;

    map_failure(cu, ctx, x, &res->status, &res->fail_info, res->reason);
    bits = fail_bits(ctx, x, res->fail_info);
    if (sign_refused_gateway(cu, ctx, cc->req, bits)) {
        /* not the client's failInfo: a client told badMessageCheck takes its own credentials for
           wrong, and its address would pay for a failed authentication */
        res->fail_info = OSSL_CMP_PKIFAILUREINFO_systemUnavail;
        snprintf(res->reason, sizeof(res->reason),
                 "upstream CA %.48s did not accept the gateway's own request (its credentials or "
                 "configuration at the CA); nothing was issued, retry later",
                 gw_upstream_conf_name(cu->conf));
    } else if ((bits & FAIL_BIT(transactionIdInUse)) != 0) {
        /* the upstream transactionID is one OpenSSL drew for this exchange (new_ctx sets none), never
           the client's: a client told transactionIdInUse would start over with a fresh one in vain */
        res->fail_info = OSSL_CMP_PKIFAILUREINFO_systemUnavail;
        snprintf(res->reason, sizeof(res->reason),
                 "upstream CA %.48s had the gateway's own transactionID in use; nothing was issued, "
                 "retry later",
                 gw_upstream_conf_name(cu->conf));
    }
    if (cc->fail_info >= 0) {
        res->fail_info = cc->fail_info;
        snprintf(res->reason, sizeof(res->reason), "%s", cc->reason);
        res->rejected_to_ca = rejection_confirmed(x);
    }
    if (cert != NULL && X509_up_ref(cert) == 1)
        res->cert = cert;
}

/* One exchange: ir (CRMF, raVerified) or p10cr (the client's CSR), then the upstream certConf. */
static void sign_now(const struct gw_upstream *up, const struct cmp_up *cu, const struct gw_sign_req *req,
                     struct gw_sign_result *res)
{
    struct xfer x = {0};
    struct conf_check cc = {.cu = cu, .up = up, .req = req, .fail_info = -1};
    OSSL_CMP_CTX *ctx = new_ctx(cu, &x);
    X509 *cert = NULL;
    int ok;

    ERR_clear_error();
    if (ctx == NULL || OSSL_CMP_CTX_set_certConf_cb(ctx, check_cert) != 1 ||
        OSSL_CMP_CTX_set_certConf_cb_arg(ctx, &cc) != 1) {
        res->status = GW_ERR_CRYPTO;
        res->fail_info = OSSL_CMP_PKIFAILUREINFO_systemFailure;
        snprintf(res->reason, sizeof(res->reason), "upstream CA %s: cannot set up the request",
                 gw_upstream_conf_name(cu->conf));
        goto out;
    }
    if (req->csr != NULL)
        ok = OSSL_CMP_CTX_set1_p10CSR(ctx, req->csr) == 1;
    else
        ok = set_template(ctx, req->plan);
    if (ok)
        cert = req->csr != NULL ? OSSL_CMP_exec_P10CR_ses(ctx) : OSSL_CMP_exec_IR_ses(ctx);
    if (cert != NULL && X509_up_ref(cert) == 1) {
        res->cert = cert;
        res->chain = X509_chain_up_ref(cu->conf->issuer_certs);
        res->modified = OSSL_CMP_CTX_get_status(ctx) == OSSL_CMP_PKISTATUS_grantedWithMods;
        goto out;
    }
    if (ok) {
        sign_failed(cu, ctx, &x, &cc, res);
    } else {
        res->status = GW_ERR_CRYPTO;
        res->fail_info = OSSL_CMP_PKIFAILUREINFO_systemFailure;
        snprintf(res->reason, sizeof(res->reason), "upstream CA %s: the request could not be built",
                 gw_upstream_conf_name(cu->conf));
    }
    gw_log_kv(GW_LOG_WARN, "cmp_upstream_failed", "upstream", gw_upstream_conf_name(cu->conf), "url", cu->url,
              "request_id", req->request_id != NULL ? req->request_id : "", "reason", res->reason, NULL);
out:
    ERR_clear_error();
    OSSL_CMP_CTX_free(ctx);
    curl_easy_cleanup(x.curl);
}

/* worker: completes before it returns */
static int cmp_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                    void *arg)
{
    const struct cmp_up *cu = gw_upstream_get0_impl(up);
    struct gw_sign_result *res;

    if (cu == NULL || req == NULL || req->role == NULL || req->plan == NULL ||
        (req->csr == NULL && req->plan->pubkey == NULL))
        return GW_ERR_INVAL;
    if ((res = malloc(sizeof(*res))) == NULL)
        return GW_ERR_NOMEM;
    gw_sign_result_init(res);
    sign_now(up, cu, req, res);
    done(arg, res);
    return 0;
}

/* The CA's own trouble: the same rr may pass later (RFC 9810 §5.2.3). */
#define RR_TRANSIENT                                                                                         \
    (FAIL_BIT(systemUnavail) | FAIL_BIT(systemFailure) | FAIL_BIT(transactionIdInUse) |                      \
     FAIL_BIT(timeNotAvailable))
/* An rr carries nothing of the client's that an algorithm could name: its badAlg is about the
 * gateway's protection too. */
#define RR_GATEWAY (GATEWAY_REFUSED | FAIL_BIT(badAlg))
/* A refusal of the revocation asked for (the certificate, the reason), which the client may be told;
 * any other is about what the gateway built of it, of which it knows nothing. */
#define RR_CLIENT_SEES (FAIL_BIT(badRequest) | FAIL_BIT(incorrectData) | FAIL_BIT(unacceptedExtension))

/*
 * What the failInfo bits |bits| of a failed rr that the CA did not refuse as the gateway's (RR_GATEWAY,
 * any of its bits) mean (map_failure: systemUnavail when no usable answer came): its own trouble may
 * pass, whatever else it says; its certRevoked and badCertId keep their meaning (upstream.h) only alone,
 * as "already revoked" beside anything else is no confirmation to keep a revocation on; any other
 * rejection is for good, with the lowest of its bits that the client may see, else badRequest.
 */
static int revoke_outcome(int bits, int status, int *fail_info)
{
    if ((bits & RR_TRANSIENT) != 0)
        return status;
    if (bits == FAIL_BIT(certRevoked))
        return GW_ERR_EXISTS;
    if (bits == FAIL_BIT(badCertId))
        return GW_ERR_NOT_FOUND;
    *fail_info = lowest_fail_bit(bits & RR_CLIENT_SEES, OSSL_CMP_PKIFAILUREINFO_badRequest);
    return GW_ERR_REFUSED;
}

/* rr (RFC 9483 §4.2) for |cert| with CRLReason |reason|, by *end too (NULL or 0: none), which may be lowered
 * while it runs (read before each message and during each transfer); *not_sent when no message of it left
 * (x.sent), one that could not be set up too. Worker, synchronous. */
static int cmp_revoke(struct gw_upstream *up, const X509 *cert, int reason, const _Atomic uint64_t *end,
                      int *fail_info, int *not_sent, char *err)
{
    const struct cmp_up *cu = gw_upstream_get0_impl(up);
    struct xfer x = {0};
    OSSL_CMP_CTX *ctx = NULL;
    int rc = GW_ERR_CRYPTO, status, fi, bits;

    ERR_clear_error();
    if (cu == NULL || cert == NULL || (ctx = new_ctx(cu, &x)) == NULL ||
        OSSL_CMP_CTX_set1_oldCert(ctx, (X509 *)cert) != 1 ||
        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_REVOCATION_REASON, reason) != 1) {
        snprintf(err, GW_ERR_LEN,
                 "upstream CA %s was not asked (cannot set up the revocation request); "
                 "nothing was sent",
                 gw_upstream_conf_name(cu != NULL ? cu->conf : NULL));
        *not_sent = 1; /* no message was made, none left */
        goto out;
    }
    x.end.end = end; /* the transfer sends nothing past it, and cuts it short */
    if (OSSL_CMP_exec_RR_ses(ctx) == 1) {
        rc = 0;
        goto out;
    }
    map_failure(cu, ctx, &x, &status, &fi, err);
    gw_log_kv(GW_LOG_WARN, "cmp_upstream_failed", "upstream", gw_upstream_conf_name(cu->conf), "url", cu->url,
              "reason", err, NULL);
    *not_sent = !x.sent;
    bits = fail_bits(ctx, &x, fi);
    rc = refused_gateway(cu, ctx, bits, RR_GATEWAY) ? status : revoke_outcome(bits, status, fail_info);
out:
    ERR_clear_error();
    OSSL_CMP_CTX_free(ctx);
    curl_easy_cleanup(x.curl);
    return rc;
}

static void cmp_cleanup(struct gw_upstream *up)
{
    struct cmp_up *cu = gw_upstream_get0_impl(up);

    if (cu == NULL)
        return;
    free(cu->url);
    free(cu);
    gw_upstream_set0_impl(up, NULL);
    curl_global_cleanup();
}

static int cmp_init(struct gw_upstream *up, const _Atomic uint64_t *end, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    const struct gw_cmp_up_conf *cc = conf->impl;
    const struct gw_upstream_signer *signer = gw_upstream_get0_signer(up);
    struct cmp_up *cu;
    size_t n;

    (void)end; /* nothing it does as it starts waits for its upstream */
    if (cc->http.url == NULL || cc->cmp_path == NULL || conf->issuer_store == NULL ||
        (cc->cmp_secret == NULL && (signer == NULL || signer->key == NULL))) {
        snprintf(err, GW_ERR_LEN,
                 "upstream %s: a cmp upstream needs url, path, issuer_ca and a signer or secret",
                 gw_upstream_conf_name(conf));
        return GW_ERR_INVAL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, GW_ERR_LEN, "upstream %s: cannot initialise libcurl", gw_upstream_conf_name(conf));
        return GW_ERR_NOMEM;
    }
    n = strlen(cc->http.url) + strlen(cc->cmp_path) + 1;
    if ((cu = calloc(1, sizeof(*cu))) == NULL || (cu->url = malloc(n)) == NULL) {
        free(cu);
        curl_global_cleanup();
        snprintf(err, GW_ERR_LEN, "upstream %s: out of memory", gw_upstream_conf_name(conf));
        return GW_ERR_NOMEM;
    }
    snprintf(cu->url, n, "%s%s", cc->http.url, cc->cmp_path);
    cu->conf = conf;
    cu->cc = cc;
    cu->signer = signer;
    gw_upstream_set0_impl(up, cu);
    return 0;
}

/* ---- configuration: the "cmp" section ---- */

/* A cmp upstream's HTTP path: like a prefix, but "/" alone and a trailing "/" are fine ("/pkix/"). */
static bool cmp_path_ok(const char *s, size_t len)
{
    char buf[GW_MAX_PATH_PREFIX_LEN + 2];

    if (strlen(s) != len || len == 0 || s[0] != '/')
        return false;
    if (len == 1)
        return true;
    if (len > GW_MAX_PATH_PREFIX_LEN + 1 || strstr(s, "//") != NULL)
        return false;
    memcpy(buf, s, len + 1);
    if (buf[len - 1] == '/')
        buf[len - 1] = '\0';
    return gw_conf_prefix_ok(buf);
}

static const struct gw_conf_names names_cmp_path = {cmp_path_ok,
                                                    "a path like \"/.well-known/cmp\" or \"/pkix/\" "
                                                    "(characters [A-Za-z0-9._~/-])"};

/*
 * A one-line distinguished name as X509_NAME_oneline writes it and `openssl cmp -expect_sender`
 * takes it: "/O=Example/CN=CMP RA", each "/" starting an attribute of a type OpenSSL knows, with a
 * non-empty value. No value can hold a "/" or "+" (the one-line form cannot tell them from a next
 * attribute) or a control character: such a name is pinned with "server_cert" instead of being read
 * one of two ways. NULL if |s| is not such a name.
 */
static X509_NAME *parse_dn(const char *s, size_t len)
{
    X509_NAME *name;
    char buf[GW_MAX_DN_LEN + 1], *p, *next, *eq;

    if (strlen(s) != len || len < 4 || len > GW_MAX_DN_LEN || s[0] != '/' || strchr(s, '+') != NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return NULL;
    if ((name = X509_NAME_new()) == NULL)
        return NULL;
    memcpy(buf, s, len + 1);
    for (p = buf + 1; p != NULL; p = next) {
        int nid;

        if ((next = strchr(p, '/')) != NULL)
            *next++ = '\0';
        if ((eq = strchr(p, '=')) == NULL || eq == p || eq[1] == '\0')
            goto err;
        *eq = '\0';
        if ((nid = OBJ_txt2nid(p)) == NID_undef ||
            X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8, (unsigned char *)eq + 1, -1, -1, 0) != 1)
            goto err;
    }
    return name;
err:
    X509_NAME_free(name);
    return NULL;
}

static bool dn_ok(const char *s, size_t len)
{
    X509_NAME *name = parse_dn(s, len);

    X509_NAME_free(name);
    return name != NULL;
}

static const struct gw_conf_names names_dn = {dn_ok, "a distinguished name like \"/O=Example/CN=CMP RA\""};

/* "server_cert": exactly one certificate, able to sign (OpenSSL would refuse every answer otherwise). */
static int load_server_cert(struct gw_conf_ctx *pc, const char *path, struct gw_cmp_up_conf *u)
{
    STACK_OF(X509) *certs = NULL;
    char shown[GW_ERR_LEN];
    int rc;

    if (gw_pem_load_certs(pc, path, u->cmp_server_cert_file, &certs) != 0)
        return GW_ERR_INVAL;
    gw_conf_show_file(u->cmp_server_cert_file, shown, sizeof(shown));
    if (sk_X509_num(certs) != 1)
        rc = gw_conf_fail(pc, path, "\"%s\" holds %d certificates: the one the upstream signs with is pinned",
                          shown, sk_X509_num(certs));
    else if ((X509_get_extension_flags(sk_X509_value(certs, 0)) & EXFLAG_KUSAGE) != 0 &&
             (X509_get_key_usage(sk_X509_value(certs, 0)) & KU_DIGITAL_SIGNATURE) == 0)
        rc = gw_conf_fail(pc, path, "the certificate in \"%s\" lacks keyUsage digitalSignature", shown);
    else
        rc = (u->cmp_server_cert = sk_X509_shift(certs)) != NULL ? 0 : GW_ERR_NOMEM;
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

/*
 * Without "server_cert" or "expected_sender", the CA the certificates come from answers under its
 * own name (it is also the recipient of every request): issuer_ca's subject, if it has one.
 */
static int default_sender(struct gw_conf_ctx *pc, const char *path, const struct gw_upstream_conf *uc,
                          struct gw_cmp_up_conf *u)
{
    const X509_NAME *first = X509_get_subject_name(sk_X509_value(uc->issuer_certs, 0));

    for (int i = 1; i < sk_X509_num(uc->issuer_certs); i++)
        if (X509_NAME_cmp(X509_get_subject_name(sk_X509_value(uc->issuer_certs, i)), first) != 0)
            return gw_conf_fail(pc, path,
                                "\"issuer_ca\" holds CAs of several names: say which one answers with "
                                "\"expected_sender\" or \"server_cert\"");
    return (u->cmp_expected_sender = X509_NAME_dup(first)) != NULL ? 0 : GW_ERR_NOMEM;
}

/*
 * A cmp upstream: requests are protected with the PBM "ref"/"secret_file" pair, or else with the
 * gateway's signer (given when the upstream is created). Responses are verified with the pinned
 * "server_cert", or against "trusted" (signatures) or the secret (PBM), and must come from the
 * pinned certificate's subject or the expected sender ("expected_sender", by default issuer_ca's
 * subject). Two settings that would each decide who answers are refused rather than ranked.
 */
static int check_cmp(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *uc)
{
    struct gw_cmp_up_conf *u = uc->impl;
    char kpath[GW_CONF_PATH_LEN];

    gw_conf_join_key(kpath, path, u->cmp_ref != NULL ? "secret_file" : "ref");
    if ((u->cmp_ref == NULL) != (u->cmp_secret_file == NULL))
        return gw_conf_fail(pc, kpath, "\"ref\" and \"secret_file\" go together");
    if (u->cmp_trusted_file == NULL && u->cmp_server_cert_file == NULL && u->cmp_secret_file == NULL)
        return gw_conf_fail(pc, path,
                            "a cmp upstream needs \"trusted\" (its response signer's CA), \"server_cert\" "
                            "(its response signer) or \"ref\"/\"secret_file\" (PBM): its answers could "
                            "not be verified");
    gw_conf_join_key(kpath, path, "server_cert");
    if (u->cmp_server_cert_file != NULL && u->cmp_expected_sender_str != NULL)
        return gw_conf_fail(pc, kpath,
                            "not together with \"expected_sender\": the pinned certificate's subject is "
                            "the expected sender");
    /* OpenSSL uses a pinned certificate as it is: "trusted" would be read and never used */
    if (u->cmp_server_cert_file != NULL && u->cmp_trusted_file != NULL)
        return gw_conf_fail(pc, kpath,
                            "not together with \"trusted\": the pinned certificate is trusted as it is");
    if (u->cmp_server_cert_file != NULL && load_server_cert(pc, kpath, u) != 0)
        return GW_ERR_INVAL;
    gw_conf_join_key(kpath, path, "expected_sender");
    if (u->cmp_expected_sender_str != NULL &&
        (u->cmp_expected_sender = parse_dn(u->cmp_expected_sender_str, strlen(u->cmp_expected_sender_str))) ==
            NULL)
        return GW_ERR_NOMEM; /* dn_ok parsed it already */
    gw_conf_join_key(kpath, path, "issuer_ca");
    if (u->cmp_server_cert == NULL && u->cmp_expected_sender == NULL && default_sender(pc, kpath, uc, u) != 0)
        return GW_ERR_INVAL;
    /* "trusted": anchors for the upstream CMP CA's response signatures (docs/cmp-relay.md) */
    gw_conf_join_key(kpath, path, "trusted");
    if (u->cmp_trusted_file != NULL &&
        gw_pem_load_certs(pc, kpath, u->cmp_trusted_file, &u->cmp_anchors) != 0)
        return GW_ERR_INVAL;
    if (u->cmp_secret_file == NULL)
        return 0;
    gw_conf_join_key(kpath, path, "secret_file");
    return gw_conf_read_secret_sized(pc, kpath, u->cmp_secret_file, GW_MIN_PBM_SECRET_LEN,
                                     GW_MAX_PBM_SECRET_LEN, &u->cmp_secret, &u->cmp_secret_len);
}

static void free_cmp(void *impl)
{
    struct gw_cmp_up_conf *cc = impl;

    free(cc->cmp_path);
    free(cc->cmp_trusted_file);
    sk_X509_pop_free(cc->cmp_anchors, X509_free);
    free(cc->cmp_server_cert_file);
    X509_free(cc->cmp_server_cert);
    free(cc->cmp_expected_sender_str);
    X509_NAME_free(cc->cmp_expected_sender);
    free(cc->cmp_ref);
    free(cc->cmp_secret_file);
    OPENSSL_clear_free(cc->cmp_secret, GW_MAX_PBM_SECRET_LEN + 3);
}

static const struct gw_conf_field cmp_fields[] = {
    GW_CONF_REQ("path", gw_conf_p_str, struct gw_cmp_up_conf, cmp_path, .aux = &names_cmp_path),
    GW_CONF_OPT("trusted", gw_conf_p_file, struct gw_cmp_up_conf, cmp_trusted_file),
    GW_CONF_OPT("server_cert", gw_conf_p_file, struct gw_cmp_up_conf, cmp_server_cert_file),
    GW_CONF_OPT("expected_sender", gw_conf_p_str, struct gw_cmp_up_conf, cmp_expected_sender_str,
                .aux = &names_dn),
    GW_CONF_OPT("ref", gw_conf_p_str, struct gw_cmp_up_conf, cmp_ref, .aux = &gw_conf_names_kid),
    GW_CONF_OPT("secret_file", gw_conf_p_file, struct gw_cmp_up_conf, cmp_secret_file),
};
GW_CONF_OBJDEF(cmp_def, cmp_fields, NULL);

const struct gw_upstream_ops gw_upstream_cmp_ops = {
    .dialect = "cmp",
    .caps = GW_UP_SIGN_KEY | GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_REVOKE_REASON,
    .conf_size = sizeof(struct gw_cmp_up_conf),
    .conf_def = &cmp_def,
    .http = GW_UPSTREAM_HTTP_API | GW_UPSTREAM_HTTP_CERT,
    .conf_check = check_cmp,
    .conf_free = free_cmp,
    .init = cmp_init,
    .cleanup = cmp_cleanup,
    .sign = cmp_sign,
    .revoke = cmp_revoke,
    /* no .probe: a CMP server may serve one connection at a time (OpenSSL's does) and wait for a
       request on it, so even a bare connection would hold up the requests queued behind it */
};
