/*
 * Unit tests for upstream/vault.c, vault_token.c and upstream/http_client.c against an in-process
 * fake Vault (plain HTTP on 127.0.0.1, or TLS, one thread per connection, answers chosen by each test): paths
 * and fields sent, Vault's error statuses as CMP failInfo, retries only where nothing happened,
 * token re-read and cert-login single flight, revoke / role policy / cert status, token header
 * lines wiped before libcurl frees them, answers wiped before the HTTP client frees them, and the
 * TLS records OpenSSL decrypted wiped before it frees them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/cmp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "base/clock.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "upstream/answers.h"
#include "upstream/http_client.h"
#include "upstream/upstream.h"
#include "upstream/upstream_test.h"
#include "upstream/vault_local.h"
#include "tests/unit/testutil.h"
#include "tests/unit/testsign.h"

#define MAX_REQS 64
#define WAIT_S                                                                                               \
    30 /* for what the test waits on: a call's end, the fake's (a loaded sanitizer build is slow) */
#define REQ_MAX (64 * 1024)

/* ---- the fake Vault ---- */

struct seen {
    char method[8];
    char path[256];
    char token[128];
    char ns[64];
    char body[32768]; /* a sign with 100 names of 256 bytes in its lists, and the CSR */
};

struct answer {
    int status;
    const char *body; /* NULL: the test's sign success body */
    int delay_ms;
};

/* The fake's copy of an answer; |cut|: its body is the one fake_set_cut names. */
struct scripted {
    struct answer a;
    bool cut;
};

/*
 * The test's thread and the fake's connection threads meet only through the socket, an ordering
 * ThreadSanitizer does not see: everything below |thread| is read and written under |lock| alone,
 * the test's side through fake_script, fake_set_login, fake_set_cut, fake_n_reqs and fake_req. The
 * answers are the fake's copies, freed once no connection thread is left (fake_settle): a
 * connection thread never reads the test's buffers, which the test rewrites or leaves on its stack.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t idle; /* |active| fell to 0 */
    int fd;
    uint16_t port;
    pthread_t thread;
    int active; /* connection threads not yet ended */
    /* per test */
    struct scripted script[8]; /* answers in order; the last one repeats */
    int n_script;
    struct scripted login; /* for /v1/auth/... */
    int n_reqs, n_logins;
    struct seen reqs[MAX_REQS];
    char *big; /* an oversized body when set */
    /* an answer with this body gets only |cut| bytes of it, then |stall_ms| of silence, then the end */
    const char *cut_body;
    size_t cut;
    int stall_ms;
    SSL_CTX *tls;    /* set: the fake speaks TLS */
    bool keep_alive; /* a connection answers request after request, as Vault's does (fake_set_keep_alive) */
} fake;

/* One connection of the fake: its socket, and its TLS session when the fake speaks TLS. */
struct fconn {
    int fd;
    SSL *ssl;
};

static ssize_t fc_read(struct fconn *c, void *buf, size_t n)
{
    return c->ssl != NULL ? SSL_read(c->ssl, buf, (int)n) : read(c->fd, buf, n);
}

static ssize_t fc_write(struct fconn *c, const void *buf, size_t n)
{
    return c->ssl != NULL ? SSL_write(c->ssl, buf, (int)n) : write(c->fd, buf, n);
}

static X509 *ca_cert, *leaf;
static EVP_PKEY *ca_key, *leaf_key;
static X509_REQ *csr;
static char *ok_body, *ok_body_no_chain;
static char token_path[64] = "/tmp/test_vault_tokenXXXXXX";

static void header_value(const char *req, const char *name, char *out, size_t cap)
{
    const char *p = strcasestr(req, name), *e;

    out[0] = '\0';
    if (p == NULL)
        return;
    p += strlen(name);
    while (*p == ' ')
        p++;
    e = strstr(p, "\r\n");
    snprintf(out, cap, "%.*s", (int)(e != NULL ? e - p : (ptrdiff_t)strlen(p)), p);
}

/* How an answer ends: if |on|, after |len| bytes and |stall_ms| of silence (fake_set_cut). */
struct cut {
    bool on;
    size_t len;
    int stall_ms;
};

static void record(const char *req, const char *body, struct answer *a, struct cut *cut)
{
    const struct scripted *sc;
    struct seen *s;
    int is_login;

    pthread_mutex_lock(&fake.lock);
    is_login = strstr(req, " /v1/auth/") != NULL;
    if (is_login)
        fake.n_logins++;
    sc = is_login ? &fake.login : &fake.script[fake.n_reqs < fake.n_script ? fake.n_reqs : fake.n_script - 1];
    *a = sc->a;
    *cut = (struct cut){sc->cut, fake.cut, fake.stall_ms};
    if (fake.n_reqs < MAX_REQS) {
        s = &fake.reqs[fake.n_reqs];
        const char *sp = strchr(req, ' '), *sp2 = sp != NULL ? strchr(sp + 1, ' ') : NULL;

        if (sp != NULL && sp2 != NULL) {
            snprintf(s->method, sizeof(s->method), "%.*s", (int)(sp - req), req);
            snprintf(s->path, sizeof(s->path), "%.*s", (int)(sp2 - sp - 1), sp + 1);
        }
        header_value(req, "X-Vault-Token:", s->token, sizeof(s->token));
        header_value(req, "X-Vault-Namespace:", s->ns, sizeof(s->ns));
        snprintf(s->body, sizeof(s->body), "%s", body);
    }
    if (!is_login)
        fake.n_reqs++;
    pthread_mutex_unlock(&fake.lock);
}

static void send_answer(struct fconn *fc, const struct answer *a, const struct cut *cut, bool keep)
{
    const char *body = a->body != NULL ? a->body : ok_body;
    char head[256];
    size_t len = strlen(body), off = 0;
    ssize_t n;

    if (a->delay_ms > 0)
        usleep((useconds_t)a->delay_ms * 1000);
    snprintf(
        head, sizeof(head),
        "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: %s\r\n\r\n",
        a->status, len, keep ? "keep-alive" : "close");
    if (fc_write(fc, head, strlen(head)) <= 0)
        return;
    if (cut->on && cut->len < len)
        len = cut->len;
    while (off < len && (n = fc_write(fc, body + off, len - off)) > 0)
        off += (size_t)n;
    if (cut->on && cut->stall_ms > 0)
        usleep((useconds_t)cut->stall_ms * 1000);
}

static void *conn_main(void *arg)
{
    struct fconn fc = {(int)(intptr_t)arg, NULL};
    char *buf = calloc(1, REQ_MAX + 1), *end, cl[32];
    size_t got = 0, want;
    ssize_t n;
    struct answer a;
    SSL_CTX *tls;
    struct cut cut;
    bool keep;

    pthread_mutex_lock(&fake.lock);
    tls = fake.tls;
    keep = fake.keep_alive;
    pthread_mutex_unlock(&fake.lock);
    if (keep) /* an idle connection ends by itself: a test that failed before closing its own settles */
        setsockopt(fc.fd, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){3, 0}, sizeof(struct timeval));
    if (tls != NULL &&
        ((fc.ssl = SSL_new(tls)) == NULL || SSL_set_fd(fc.ssl, fc.fd) != 1 || SSL_accept(fc.ssl) != 1)) {
        free(buf);
        buf = NULL; /* the handshake failed: the connection is closed */
    }
    while (buf != NULL && got < REQ_MAX && (n = fc_read(&fc, buf + got, REQ_MAX - got)) > 0) {
        got += (size_t)n;
        buf[got] = '\0';
        if ((end = strstr(buf, "\r\n\r\n")) == NULL)
            continue;
        header_value(buf, "Content-Length:", cl, sizeof(cl));
        want = (size_t)(end - buf) + 4 + strtoul(cl, NULL, 10);
        if (got < want)
            continue;
        *end = '\0';
        record(buf, end + 4, &a, &cut);
        if (a.status == -1) /* drop the connection: a transport error */
            break;
        send_answer(&fc, &a, &cut, keep);
        if (!keep)
            break;
        got = 0; /* the next request on this connection (the client sends one at a time) */
    }
    SSL_free(fc.ssl);
    close(fc.fd);
    free(buf);
    pthread_mutex_lock(&fake.lock);
    if (--fake.active == 0)
        pthread_cond_broadcast(&fake.idle);
    pthread_mutex_unlock(&fake.lock);
    return NULL;
}

static void *accept_main(void *arg)
{
    int fd;
    pthread_t t;

    (void)arg;
    while ((fd = accept(fake.fd, NULL, NULL)) >= 0) {
        pthread_mutex_lock(&fake.lock);
        fake.active++;
        pthread_mutex_unlock(&fake.lock);
        if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) == 0) {
            pthread_detach(t);
            continue;
        }
        close(fd);
        pthread_mutex_lock(&fake.lock);
        fake.active--;
        pthread_mutex_unlock(&fake.lock);
    }
    return NULL;
}

static void fake_start(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int one = 1;

    pthread_mutex_init(&fake.lock, NULL);
    pthread_cond_init(&fake.idle, NULL);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true((fake.fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    setsockopt(fake.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(bind(fake.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fake.fd, 64), 0);
    assert_int_equal(getsockname(fake.fd, (struct sockaddr *)&sa, &len), 0);
    fake.port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&fake.thread, NULL, accept_main, NULL), 0);
}

/*
 * Waits, lock held, until every connection thread has ended: none reads an answer any more. Past WAIT_S
 * the test fails, the lock let go.
 */
static void fake_settle(void)
{
    struct timespec until = tu_deadline(WAIT_S);

    while (fake.active > 0 && tu_wait_until(&fake.idle, &fake.lock, &until) == 0)
        ;
    if (fake.active == 0)
        return;
    pthread_mutex_unlock(&fake.lock);
    fail_msg("the fake Vault's connection threads did not end within WAIT_S");
}

/* The fake's copy of |a| into |to|, freeing the copy |to| held. Lock held, settled. */
static void answer_set(struct scripted *to, const struct answer *a)
{
    free((char *)to->a.body);
    to->a = *a;
    to->cut = a->body != NULL && a->body == fake.cut_body;
    if (a->body != NULL)
        assert_non_null(to->a.body = strdup(a->body));
}

static void fake_script(const struct answer *a, int n)
{
    pthread_mutex_lock(&fake.lock);
    fake_settle();
    for (int i = 0; i < n; i++)
        answer_set(&fake.script[i], &a[i]);
    fake.n_script = n;
    fake.keep_alive = false;
    fake.n_reqs = 0;
    fake.n_logins = 0;
    memset(fake.reqs, 0, sizeof(fake.reqs));
    pthread_mutex_unlock(&fake.lock);
}

/* The answer to the logins from now on. */
static void fake_set_login(struct answer login)
{
    pthread_mutex_lock(&fake.lock);
    fake_settle();
    answer_set(&fake.login, &login);
    pthread_mutex_unlock(&fake.lock);
}

/* An answer with |body| scripted from now on gets only |len| bytes of it, then |stall_ms| of silence. */
static void fake_set_cut(const char *body, size_t len, int stall_ms)
{
    pthread_mutex_lock(&fake.lock);
    fake.cut_body = body;
    fake.cut = len;
    fake.stall_ms = stall_ms;
    pthread_mutex_unlock(&fake.lock);
}

/* Whether connections stay open for the next request from now on, until fake_script (the client
 * closes them, or they end after 3 s idle). */
static void fake_set_keep_alive(bool on)
{
    pthread_mutex_lock(&fake.lock);
    fake.keep_alive = on;
    pthread_mutex_unlock(&fake.lock);
}

static int fake_n_reqs(void)
{
    int n;

    pthread_mutex_lock(&fake.lock);
    n = fake.n_reqs;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

static int fake_n_logins(void)
{
    int n;

    pthread_mutex_lock(&fake.lock);
    n = fake.n_logins;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

/* A copy of the |i|th request the fake saw (a login's until the next request takes its place). */
static const struct seen *fake_req(int i)
{
    static struct seen copy[MAX_REQS]; /* the test's thread's alone */

    assert_true(i >= 0 && i < MAX_REQS);
    pthread_mutex_lock(&fake.lock);
    copy[i] = fake.reqs[i];
    pthread_mutex_unlock(&fake.lock);
    return &copy[i];
}

/* ---- certificates ---- */

static char *success_body(int with_chain)
{
    json_object *root = json_object_new_object(), *data = json_object_new_object(), *chain;
    char *leaf_pem = tu_pem_of(leaf), *ca_pem = tu_pem_of(ca_cert), *out;

    json_object_object_add(data, "certificate", json_object_new_string(leaf_pem));
    json_object_object_add(data, "issuing_ca", json_object_new_string(ca_pem));
    if (with_chain) {
        chain = json_object_new_array();
        json_object_array_add(chain, json_object_new_string(ca_pem));
        json_object_object_add(data, "ca_chain", chain);
    }
    json_object_object_add(data, "serial_number", json_object_new_string("30:39"));
    json_object_object_add(data, "expiration", json_object_new_int64(1654105687));
    json_object_object_add(root, "data", data);
    json_object_object_add(root, "warnings", NULL);
    out = strdup(json_object_to_json_string(root));
    json_object_put(root);
    free(leaf_pem);
    free(ca_pem);
    return out;
}

static int global_setup(void **state)
{
    X509_NAME *n = X509_NAME_new();
    int fd;

    (void)state;
    signal(SIGPIPE, SIG_IGN); /* the fake writes to clients that gave up */
    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ca_cert = tu_make_cert(ca_key, ca_key, NULL, "Test Vault CA", 1);
    leaf = tu_make_cert(leaf_key, ca_key, ca_cert, "dev.example.com", 12345); /* 12345 = 30:39 */
    csr = X509_REQ_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"dev.example.com", -1, -1, 0);
    X509_REQ_set_subject_name(csr, n);
    X509_REQ_set_pubkey(csr, leaf_key);
    assert_true(X509_REQ_sign(csr, leaf_key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    ok_body = success_body(1);
    ok_body_no_chain = success_body(0);
    assert_true((fd = mkstemp(token_path)) >= 0);
    assert_int_equal(write(fd, "hvs.first\n", 10), 10);
    close(fd);
    fake_start();
    return 0;
}

static int global_teardown(void **state)
{
    (void)state;
    shutdown(fake.fd, SHUT_RDWR);
    close(fake.fd);
    pthread_join(fake.thread, NULL);
    pthread_mutex_lock(&fake.lock);
    fake_settle(); /* no connection thread sends ok_body or a copy any more */
    for (int i = 0; i < (int)(sizeof(fake.script) / sizeof(fake.script[0])); i++)
        free((char *)fake.script[i].a.body);
    free((char *)fake.login.a.body);
    pthread_mutex_unlock(&fake.lock);
    X509_free(ca_cert);
    X509_free(leaf);
    X509_REQ_free(csr);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(leaf_key);
    free(ok_body);
    free(ok_body_no_chain);
    free(fake.big);
    unlink(token_path);
    return 0;
}

/* ---- fixtures ---- */

struct fx {
    char url[64];
    struct gw_upstream_conf conf;
    struct gw_vault_conf vc; /* conf's section */
    struct gw_role role;
    struct gw_cert_plan plan;
    struct gw_upstream *up;
};

/* The token file with |t|, only its owner may read it (a secret others may read is refused). */
static void write_token(const char *t)
{
    FILE *f = fopen(token_path, "w");

    assert_non_null(f);
    assert_int_equal(fchmod(fileno(f), 0600), 0);
    fputs(t, f);
    fclose(f);
}

static void fx_init(struct fx *f, uint32_t timeout_ms)
{
    static STACK_OF(X509) *issuer_ca; /* kept for the process; |ca_cert| is borrowed */
    GENERAL_NAME *gn;
    ASN1_OCTET_STRING *ip = ASN1_OCTET_STRING_new();
    static const unsigned char lo[4] = {127, 0, 0, 1};
    char err[GW_ERR_LEN] = "";

    memset(f, 0, sizeof(*f));
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%u", fake.port);
    f->conf.name = "vault";
    f->conf.ops = &gw_upstream_vault_ops;
    f->conf.impl = &f->vc;
    f->vc.http.url = f->url;
    f->conf.timeout_ms = timeout_ms;
    f->vc.token_file = token_path;
    f->vc.vault_namespace = "ns1/";
    if (issuer_ca == NULL) /* "issuer_ca": the mount's CA, whose certificates alone it is asked to revoke */
        sk_X509_push(issuer_ca = sk_X509_new_null(), ca_cert);
    f->conf.issuer_certs = issuer_ca;
    f->role.name = "web";
    gw_cert_plan_init(&f->plan);
    f->plan.not_after = time(NULL) + 3600;
    f->plan.sans = sk_GENERAL_NAME_new_null();
    gn = GENERAL_NAME_new();
    ASN1_OCTET_STRING_set(ip, lo, 4);
    GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
    sk_GENERAL_NAME_push(f->plan.sans, gn);
    gn = GENERAL_NAME_new();
    gn->type = GEN_DNS;
    gn->d.dNSName = ASN1_IA5STRING_new();
    ASN1_STRING_set(gn->d.dNSName, "dev.example.com", -1);
    sk_GENERAL_NAME_push(f->plan.sans, gn);
    write_token("hvs.first\n");
    f->up = gw_upstream_new_ops(&f->conf, &gw_upstream_vault_ops, NULL, err);
    assert_non_null(f->up);
}

static void fx_restart(struct fx *f)
{
    char err[GW_ERR_LEN] = "";

    gw_upstream_free(f->up);
    assert_non_null(f->up = gw_upstream_new_ops(&f->conf, &gw_upstream_vault_ops, NULL, err));
}

static void fx_cleanup(struct fx *f)
{
    gw_upstream_free(f->up);
    gw_cert_plan_cleanup(&f->plan);
}

/* |f| with a timeout of |timeout_ms|, the fake answering |script| (|n| answers) on connections it keeps
 * open for the next request, as Vault does. */
static void fx_init_kept_alive(struct fx *f, uint32_t timeout_ms, const struct answer *script, int n)
{
    fx_init(f, timeout_ms);
    fake_script(script, n);
    fake_set_keep_alive(true);
}

/* |f| with a timeout of |timeout_ms|, its upstream logging in with the gateway's TLS certificate at the
 * "cert" auth mount rather than reading a token file. */
static void fx_init_cert_login(struct fx *f, uint32_t timeout_ms)
{
    fx_init(f, timeout_ms);
    f->vc.token_file = NULL;
    f->vc.auth_cert_mount = "cert";
    fx_restart(f);
}

static void sign(struct fx *f, struct gw_sign_result *res)
{
    struct gw_sign_req req = {.role = &f->role, .plan = &f->plan, .csr = csr, .request_id = "0011"};

    tu_sign_wait(f->up, &req, res);
}

/*
 * Case |i|: a sign answered |status| with |body|, first at once and then after a sealed Vault's 503: sent
 * again (and issued) when |vaults| (the answer is Vault's own), else ended as outcome unknown.
 */
static void sign_resent_if_vaults(struct fx *f, size_t i, int status, const char *body, bool vaults)
{
    const struct answer sealed = {503, "{\"errors\":[\"Vault is sealed\"]}", 0}, ok = {200, NULL, 0};
    struct gw_sign_result res;
    struct answer script[3];
    char what[64];

    snprintf(what, sizeof(what), "(HTTP %d, not Vault's own answer", status);
    for (int first_sealed = 0; first_sealed <= 1; first_sealed++) {
        int n = 0;

        if (first_sealed)
            script[n++] = sealed;
        script[n++] = (struct answer){status, body, 0};
        script[n++] = ok;
        fake_script(script, n);
        sign(f, &res);
        print_message("case %zu (%s): %s\n", i, first_sealed ? "repeated" : "first", res.reason);
        assert_int_equal(fake_n_reqs(), n - (vaults ? 0 : 1));
        if (vaults) {
            assert_int_equal(res.status, 0);
            assert_non_null(res.cert);
        } else {
            assert_int_equal(res.status, GW_ERR_IO);
            assert_null(res.cert);
            assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
            assert_non_null(strstr(res.reason, what));
            assert_non_null(strstr(res.reason, "the outcome is unknown, do not retry blindly"));
        }
        gw_sign_result_cleanup(&res);
    }
}

/* ---- sign: success ---- */

static void test_sign_role(void **state)
{
    struct answer ok = {200, NULL, 0};
    struct gw_sign_result res;
    struct fx f;
    char *pem;
    json_object *body;

    (void)state;
    fx_init(&f, 5000);
    fake_script(&ok, 1);
    sign(&f, &res);
    assert_int_equal(res.status, 0);
    assert_non_null(res.cert);
    assert_int_equal(X509_cmp(res.cert, leaf), 0);
    assert_int_equal(sk_X509_num(res.chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(res.chain, 0), ca_cert), 0);
    assert_int_equal(fake_n_reqs(), 1);
    assert_string_equal(fake_req(0)->method, "POST");
    assert_string_equal(fake_req(0)->path, "/v1/pki/sign/web");
    assert_string_equal(fake_req(0)->token, "hvs.first");
    assert_string_equal(fake_req(0)->ns, "ns1/");
    /* the CSR goes unchanged; fields as Vault names them */
    assert_non_null(body = json_tokener_parse(fake_req(0)->body));
    {
        BIO *b = BIO_new(BIO_s_mem());
        char *d = NULL;
        long n;

        PEM_write_bio_X509_REQ(b, csr);
        n = BIO_get_mem_data(b, &d);
        pem = strndup(d, (size_t)n);
        BIO_free(b);
    }
    assert_string_equal(json_object_get_string(json_object_object_get(body, "csr")), pem);
    assert_string_equal(json_object_get_string(json_object_object_get(body, "format")), "pem");
    assert_in_range(json_object_get_int64(json_object_object_get(body, "ttl")), 3590, 3600);
    assert_string_equal(json_object_get_string(json_object_object_get(body, "alt_names")), "dev.example.com");
    assert_string_equal(json_object_get_string(json_object_object_get(body, "ip_sans")), "127.0.0.1");
    assert_false(json_object_get_boolean(json_object_object_get(body, "exclude_cn_from_sans")));
    assert_null(json_object_object_get(body, "common_name"));
    assert_null(json_object_object_get(body, "uri_sans"));
    /* sign/<role>: the Vault role's usages apply, the call names none */
    assert_null(json_object_object_get(body, "key_usage"));
    assert_null(json_object_object_get(body, "ext_key_usage"));
    json_object_put(body);
    free(pem);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

/*
 * sign-verbatim: Vault gives a CSR without usages the call's key_usage and ext_key_usage, else its
 * own defaults (DigitalSignature, KeyAgreement, KeyEncipherment): the role's are sent, also none.
 */
static void test_sign_verbatim_usages(void **state)
{
    static const struct {
        unsigned ku, eku;
        const char *key_usage, *ext_key_usage, *oids;
    } cases[] = {
        {KU_DIGITAL_SIGNATURE, GW_EKU_CLIENT_AUTH, "[\"DigitalSignature\"]", "[\"ClientAuth\"]", "[]"},
        {KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION | KU_KEY_AGREEMENT,
         GW_EKU_SERVER_AUTH | GW_EKU_CLIENT_AUTH | GW_EKU_CMC_RA,
         "[\"DigitalSignature\",\"ContentCommitment\",\"KeyAgreement\"]", "[\"ServerAuth\",\"ClientAuth\"]",
         "[\"1.3.6.1.5.5.7.3.28\"]"},
        {0, 0, "[]", "[]", "[]"},
    };
    struct answer ok = {200, NULL, 0};
    struct gw_sign_result res;
    struct fx f;
    json_object *body;
    size_t i;

    (void)state;
    fx_init(&f, 5000);
    f.role.sign_policy = GW_SIGN_VERBATIM;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        f.plan.key_usage = cases[i].ku;
        f.plan.ext_key_usage = cases[i].eku;
        fake_script(&ok, 1);
        sign(&f, &res);
        assert_int_equal(res.status, 0);
        assert_string_equal(fake_req(0)->path, "/v1/pki/sign-verbatim");
        assert_non_null(body = json_tokener_parse(fake_req(0)->body));
        assert_string_equal(
            json_object_to_json_string_ext(json_object_object_get(body, "key_usage"), JSON_C_TO_STRING_PLAIN),
            cases[i].key_usage);
        assert_string_equal(json_object_to_json_string_ext(json_object_object_get(body, "ext_key_usage"),
                                                           JSON_C_TO_STRING_PLAIN),
                            cases[i].ext_key_usage);
        assert_string_equal(
            json_object_to_json_string_ext(json_object_object_get(body, "ext_key_usage_oids"),
                                           JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
            cases[i].oids);
        json_object_put(body);
        gw_sign_result_cleanup(&res);
    }
    fx_cleanup(&f);
}

/* Paths: role, upstream_role, issuer_ref, sign-verbatim with and without a role, another mount. */
static void test_sign_paths(void **state)
{
    static const struct {
        const char *upstream_role, *issuer_ref, *mount;
        enum gw_sign_policy policy;
        bool exclude_cn;
        const char *path;
    } cases[] = {
        {NULL, NULL, NULL, GW_SIGN_ROLE, false, "/v1/pki/sign/web"},
        {"servers", NULL, NULL, GW_SIGN_ROLE, false, "/v1/pki/sign/servers"},
        {"servers", "ca-2024", NULL, GW_SIGN_ROLE, true, "/v1/pki/issuer/ca-2024/sign/servers"},
        {NULL, NULL, NULL, GW_SIGN_VERBATIM, false, "/v1/pki/sign-verbatim"},
        {"sign-verbatim", NULL, NULL, GW_SIGN_VERBATIM, false, "/v1/pki/sign-verbatim"},
        {"ttl-only", NULL, "pki/int", GW_SIGN_VERBATIM, false, "/v1/pki/int/sign-verbatim/ttl-only"},
        {NULL, "default", "pki_int", GW_SIGN_VERBATIM, false, "/v1/pki_int/issuer/default/sign-verbatim"},
    };
    struct answer ok = {200, NULL, 0};
    struct gw_sign_result res;
    struct fx f;
    size_t i;

    (void)state;
    fx_init(&f, 5000);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        f.role.upstream_role = (char *)cases[i].upstream_role;
        f.role.issuer_ref = (char *)cases[i].issuer_ref;
        f.role.sign_policy = cases[i].policy;
        f.role.exclude_cn_from_sans = cases[i].exclude_cn;
        f.vc.mount = (char *)cases[i].mount;
        fx_restart(&f);
        fake_script(&ok, 1);
        sign(&f, &res);
        assert_int_equal(res.status, 0);
        assert_string_equal(fake_req(0)->path, cases[i].path);
        if (cases[i].exclude_cn)
            assert_non_null(strstr(fake_req(0)->body, "\"exclude_cn_from_sans\":true"));
        gw_sign_result_cleanup(&res);
    }
    fx_cleanup(&f);
}

/* Adversarial twins of the path: names that would leave the mount are refused before any call. */
static void test_sign_bad_names(void **state)
{
    static const char *const bad[] = {"../sys", "a/b", "", "x y", "..", "role?x=1"};
    struct answer ok = {200, NULL, 0};
    struct gw_sign_result res;
    struct gw_sign_req req;
    struct fx f;
    size_t i;

    (void)state;
    fx_init(&f, 5000);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fake_script(&ok, 1);
        f.role.upstream_role = (char *)bad[i];
        sign(&f, &res);
        assert_int_not_equal(res.status, 0);
        assert_non_null(strstr(res.reason, "not a plain name"));
        assert_int_equal(fake_n_reqs(), 0);
        gw_sign_result_cleanup(&res);
        f.role.upstream_role = NULL;
        f.role.issuer_ref = (char *)bad[i];
        sign(&f, &res);
        assert_int_not_equal(res.status, 0);
        assert_int_equal(fake_n_reqs(), 0);
        gw_sign_result_cleanup(&res);
        f.role.issuer_ref = NULL;
    }
    /* CRMF (no CSR) is not Vault's to sign: refused at submit */
    memset(&req, 0, sizeof(req));
    req.role = &f.role;
    req.plan = &f.plan;
    tu_sign_wait(f.up, &req, &res);
    assert_int_not_equal(res.status, 0);
    assert_int_equal(fake_n_reqs(), 0);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

/* The plan's names replaced by |n| DNS names of |len| bytes, the i-th starting with the digits of i. */
static void plan_long_names(struct fx *f, int n, size_t len)
{
    char name[GW_MAX_PATTERN_LEN + 1];
    GENERAL_NAME *gn;

    assert_true(len >= 16 && len <= GW_MAX_PATTERN_LEN);
    sk_GENERAL_NAME_pop_free(f->plan.sans, GENERAL_NAME_free);
    f->plan.sans = sk_GENERAL_NAME_new_null();
    for (int i = 0; i < n; i++) {
        memset(name, 'a', len);
        name[len] = '\0';
        for (size_t dot = 60; dot < len - 13; dot += 61) /* labels of 60 bytes or so: a host name's */
            name[dot] = '.';
        name[snprintf(name, 8, "n%03d", i)] = '-';
        memcpy(name + len - 12, ".example.com", 12);
        assert_non_null(gn = GENERAL_NAME_new());
        gn->type = GEN_DNS;
        gn->d.dNSName = ASN1_IA5STRING_new();
        assert_int_equal(ASN1_STRING_set(gn->d.dNSName, name, (int)len), 1);
        sk_GENERAL_NAME_push(f->plan.sans, gn);
    }
}

/* The plan's DNS names as the alt_names Vault is sent: comma-separated, in order. */
static char *plan_alt_names(const struct fx *f)
{
    size_t cap = (size_t)GW_MAX_SANS * (GW_MAX_PATTERN_LEN + 1) + 1, used = 0;
    char *out = calloc(1, cap);

    assert_non_null(out);
    for (int i = 0; i < sk_GENERAL_NAME_num(f->plan.sans); i++) {
        const ASN1_IA5STRING *s = sk_GENERAL_NAME_value(f->plan.sans, i)->d.dNSName;

        used += (size_t)snprintf(out + used, cap - used, "%s%.*s", used != 0 ? "," : "", s->length,
                                 (const char *)s->data);
    }
    return out;
}

/*
 * Names past 8000 bytes in all (the lists' old room) go to Vault whole: once, the name that crossed
 * it went as its prefix ("victim.com" of "victim.com.pad.example.com"), a name outside the role, and
 * the names after it were left out. 100 names of the longest a pattern allows fit; 101 do not, and
 * the sign is refused before any call (badCertTemplate), never sent with a list cut short.
 */
static void test_sign_long_san_lists(void **state)
{
    struct answer ok = {200, NULL, 0};
    struct gw_sign_result res;
    json_object *body;
    char *want;
    struct fx f;

    (void)state;
    fx_init(&f, 5000);
    fake_script(&ok, 1);
    plan_long_names(&f, GW_MAX_SANS, GW_MAX_PATTERN_LEN);
    want = plan_alt_names(&f);
    assert_true(strlen(want) > 8000);
    sign(&f, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(fake_n_reqs(), 1);
    assert_non_null(body = json_tokener_parse(fake_req(0)->body));
    assert_string_equal(json_object_get_string(json_object_object_get(body, "alt_names")), want);
    assert_null(json_object_object_get(body, "ip_sans"));
    json_object_put(body);
    free(want);
    gw_sign_result_cleanup(&res);

    fake_script(&ok, 1);
    plan_long_names(&f, GW_MAX_SANS + 1, GW_MAX_PATTERN_LEN);
    sign(&f, &res);
    assert_int_equal(res.status, GW_ERR_INVAL);
    assert_null(res.cert);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_badCertTemplate);
    assert_non_null(strstr(res.reason, "the subjectAltNames do not fit"));
    assert_int_equal(fake_n_reqs(), 0);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

static void test_sign_chain_from_issuing_ca(void **state)
{
    struct answer ok = {200, NULL, 0};
    struct gw_sign_result res;
    struct fx f;

    (void)state;
    ok.body = ok_body_no_chain;
    fx_init(&f, 5000);
    fake_script(&ok, 1);
    sign(&f, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(sk_X509_num(res.chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(res.chain, 0), ca_cert), 0);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

/* The CA's chain comes back with every answer: parsed once and shared; each leaf is parsed anew. */
static void test_sign_chain_parsed_once(void **state)
{
    struct answer ok[2] = {{200, NULL, 0}, {200, NULL, 0}};
    struct gw_sign_result a, b;
    struct fx f;

    (void)state;
    fx_init(&f, 5000);
    fake_script(ok, 2);
    sign(&f, &a);
    sign(&f, &b);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, 0);
    assert_int_equal(sk_X509_num(a.chain), 1);
    assert_ptr_equal(sk_X509_value(a.chain, 0), sk_X509_value(b.chain, 0));
    assert_int_equal(X509_cmp(a.cert, b.cert), 0);
    assert_ptr_not_equal(a.cert, b.cert);
    gw_sign_result_cleanup(&a);
    gw_sign_result_cleanup(&b);
    fx_cleanup(&f);
}

/* ---- sign: Vault's errors as CMP errors ---- */

static void test_sign_errors(void **state)
{
    static const struct {
        int status;
        const char *body;
        int fail_info;
        const char *reason;
        int requests; /* how many calls Vault saw: retries only on 412/429/503 */
    } cases[] = {
        {400, "{\"errors\":[\"common name x not allowed by this role\"]}",
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
         "Vault refused: common name x not allowed by this role (HTTP 400)", 1},
        {400, "{\"errors\":[]}", OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "Vault refused: no error message",
         1},
        {403, "{\"errors\":[\"permission denied\"]}", OSSL_CMP_PKIFAILUREINFO_systemUnavail,
         "Vault denied the gateway: permission denied (HTTP 403); the gateway's token", 2},
        {404, "{\"errors\":[]}", OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault role or mount not found", 1},
        {412, "{\"errors\":[\"required index state not present\"]}", OSSL_CMP_PKIFAILUREINFO_systemUnavail,
         "Vault is busy: required index state not present (HTTP 412); retry later", 3},
        {429, "{\"errors\":[\"request path \\\"pki/sign/web\\\": rate limit quota exceeded\"]}",
         OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault is busy: request path \"pki/sign/web\": rate limit",
         3},
        {503, "{\"errors\":[\"Vault is sealed\"]}", OSSL_CMP_PKIFAILUREINFO_systemUnavail,
         "Vault is unavailable: Vault is sealed (HTTP 503); retry later", 3},
        {500, "{\"errors\":[\"internal error\"]}", OSSL_CMP_PKIFAILUREINFO_systemFailure,
         "Vault failed: internal error (HTTP 500)", 1},
        {502, "<html>bad gateway</html>", OSSL_CMP_PKIFAILUREINFO_systemFailure,
         "Vault failed: not Vault JSON: unexpected character at byte 0 (HTTP 502)", 1},
        {405, "{\"errors\":[\"1 error occurred\"]}", OSSL_CMP_PKIFAILUREINFO_systemFailure,
         "Vault answered unexpectedly", 1},
        {200, "this is not json", OSSL_CMP_PKIFAILUREINFO_systemFailure, "not Vault JSON", 1},
        {200, "{\"data\":{}} trailing", OSSL_CMP_PKIFAILUREINFO_systemFailure, "not Vault JSON", 1},
        {200, "[1,2]", OSSL_CMP_PKIFAILUREINFO_systemFailure, "not Vault JSON", 1},
        {200, "{\"data\":null,\"warnings\":[\"TTL exceeds the issuer's expiry\"]}",
         OSSL_CMP_PKIFAILUREINFO_systemFailure,
         "Vault issued no certificate: TTL exceeds the issuer's expiry", 1},
        {200,
         "{\"data\":{\"certificate\":\"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\"}}",
         OSSL_CMP_PKIFAILUREINFO_systemFailure, "data.certificate holds an unreadable certificate", 1},
        {200, "{\"data\":{\"certificate\":\"-----BEGIN CERTIFICATE-----\\nAAAA\"}}",
         OSSL_CMP_PKIFAILUREINFO_systemFailure,
         "data.certificate holds an unreadable or encrypted certificate", 1},
        {200, "{\"data\":{\"certificate\":42}}", OSSL_CMP_PKIFAILUREINFO_systemFailure,
         "data.certificate is an integer, not a string", 1},
        {200, "", OSSL_CMP_PKIFAILUREINFO_systemFailure, "not Vault JSON", 1},
        {200, "{\"data\":{\"certificate\":\"x\",\"expiration\":-1}}", OSSL_CMP_PKIFAILUREINFO_systemFailure,
         "Vault's answer (HTTP 200) is refused: data.certificate holds no PEM certificate", 1},
        {400, "{\"errors\":[\"a\\u0000b\"]}", OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
         "Vault refused: errors[0] holds a NUL byte (HTTP 400)", 1},
    };
    struct gw_sign_result res;
    struct answer a;
    struct fx f;
    size_t i;

    (void)state;
    fx_init(&f, 5000);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        a.status = cases[i].status;
        a.body = cases[i].body;
        a.delay_ms = 0;
        fake_script(&a, 1);
        sign(&f, &res);
        print_message("case %zu: %s\n", i, res.reason);
        assert_int_not_equal(res.status, 0);
        assert_null(res.cert);
        assert_int_equal(res.fail_info, cases[i].fail_info);
        assert_non_null(strstr(res.reason, cases[i].reason));
        assert_int_equal(fake_n_reqs(), cases[i].requests);
        gw_sign_result_cleanup(&res);
    }
    fx_cleanup(&f);
}

/*
 * A long error message from Vault is cut so that the reason keeps the words after it, which tell the
 * operator what to do (the 403's and the 404's), and cut between characters: the reason becomes a
 * statusString, a UTF8String. Once, a 403's message of 160 bytes or more pushed "an operator must fix
 * it" out of the reason, and a two-byte character was cut in half.
 */
static void test_map_error_long_message(void **state)
{
    static const struct {
        long status;
        const char *end;
    } cases[] = {
        {400, " (HTTP 400)"},
        {403, " (HTTP 403); the gateway's token or policy is wrong: an operator must fix it"},
        {404, " (HTTP 404); the gateway's configuration names a role or mount Vault does not have"},
        {429, " (HTTP 429); retry later"},
        {503, " (HTTP 503); retry later"},
        {500, " (HTTP 500)"},
        {405, " (HTTP 405)"},
    };
    char body[1024], reason[GW_ERR_LEN], repaired[GW_ERR_LEN];
    int status, fail_info;
    size_t i, n, off;

    (void)state;
    for (off = 0; off < 2; off++) {
        /* "a" (or not), then 150 "é" of two bytes each: every cut at an even length splits one, or odd */
        n = (size_t)snprintf(body, sizeof(body), "{\"errors\":[\"%s", off ? "a" : "");
        for (i = 0; i < 150; i++)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "\xc3\xa9");
        snprintf(body + n, sizeof(body) - n, "\"]}");
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            gw_vault_map_error(cases[i].status, body, strlen(body), NULL, &status, &fail_info, reason);
            print_message("%ld: %s\n", cases[i].status, reason);
            n = strlen(reason);
            if (n < strlen(cases[i].end) || strcmp(reason + n - strlen(cases[i].end), cases[i].end) != 0)
                fail_msg("%ld: \"%s\" does not end with \"%s\"", cases[i].status, reason, cases[i].end);
            if (gw_utf8_repair(repaired, sizeof(repaired), reason) != n || strcmp(repaired, reason) != 0)
                fail_msg("%ld: \"%s\" is not whole UTF-8", cases[i].status, reason);
            assert_non_null(strstr(reason, "\xc3\xa9\xc3\xa9\xc3\xa9"));
        }
    }
}

/* The success answer with |key| of |obj| ("data" or the root) set to the JSON |value|, into |out|. */
static char *edited_body(const char *obj, const char *key, const char *value, char *out, size_t cap)
{
    json_object *root = json_tokener_parse(ok_body), *o;

    assert_non_null(root);
    o = strcmp(obj, "data") == 0 ? json_object_object_get(root, "data") : root;
    json_object_object_add(o, key, json_tokener_parse(value));
    assert_true(
        (size_t)snprintf(out, cap, "%s", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN)) < cap);
    json_object_put(root);
    return out;
}

/*
 * A sign answer with a certificate but a field out of range is refused whole, the certificate with
 * it; the same answer with the field in range issues.
 */
static void test_sign_answer_out_of_range(void **state)
{
    static const struct {
        const char *obj, *key, *value, *reason; /* reason NULL: accepted */
    } cases[] = {
        {"data", "expiration", "1654105687", NULL},
        {"data", "expiration", "-1", "data.expiration is -1, not 1 to 253402300799"},
        {"data", "expiration", "\"1654105687\"", "data.expiration is a string, not an integer"},
        {"data", "expiration", "1.6e9", "data.expiration is 1.6e9, not an integer"},
        {"data", "serial_number", "\"30:39\"", NULL},
        {"data", "serial_number", "42", "data.serial_number is an integer, not a string"},
        {"data", "serial_number", "\"30:39\\u0000\"", "data.serial_number holds a NUL byte"},
        {"data", "ca_chain", "[42]", "data.ca_chain[0] is an integer, not a string"},
        {"data", "ca_chain", "\"chain\"", "data.ca_chain is a string, not an array"},
        {"data", "issuing_ca", "\"not a certificate\"", "data.issuing_ca holds no PEM certificate"},
        {"root", "warnings", "[\"careful\"]", NULL},
        {"root", "warnings", "\"careful\"", "warnings is a string, not an array"},
        {"root", "warnings", "[1]", "warnings[0] is an integer, not a string"},
    };
    char body[2048];
    struct gw_sign_result res;
    struct answer a = {200, NULL, 0};
    struct fx f;
    size_t i;

    (void)state;
    fx_init(&f, 5000);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        a.body = edited_body(cases[i].obj, cases[i].key, cases[i].value, body, sizeof(body));
        fake_script(&a, 1);
        sign(&f, &res);
        if (cases[i].reason == NULL) {
            assert_int_equal(res.status, 0);
            assert_non_null(res.cert);
        } else {
            assert_int_equal(res.status, GW_ERR_UPSTREAM);
            assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
            /* the certificate was issued all the same, whatever else is refused: handed on to be revoked */
            assert_non_null(res.cert);
            assert_null(res.chain);
            if (strstr(res.reason, cases[i].reason) == NULL ||
                strstr(res.reason, "Vault's answer (HTTP 200) is refused: ") != res.reason)
                fail_msg("case %zu: reason \"%s\"", i, res.reason);
        }
        assert_int_equal(fake_n_reqs(), 1); /* refused, not asked again */
        gw_sign_result_cleanup(&res);
    }
    /* bytes after the whole answer: refused, and its certificate handed on to be recorded and revoked */
    snprintf(body, sizeof(body), "%s\n{\"data\":null}", ok_body);
    a.body = body;
    fake_script(&a, 1);
    sign(&f, &res);
    assert_int_equal(res.status, GW_ERR_UPSTREAM);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
    assert_non_null(res.cert);
    assert_null(res.chain);
    assert_non_null(
        strstr(res.reason, "Vault's answer (HTTP 200) is refused: not Vault JSON: trailing data"));
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

/* |body| (one JSON object) with a member of |n| empty objects added: one '{' each. */
static char *padded(const char *body, size_t n)
{
    size_t len = strlen(body), cap = len + 16 + 3 * n;
    char *out = malloc(cap), *p;

    assert_non_null(out);
    p = out + snprintf(out, cap, "%.*s,\"pad\":[", (int)(len - 1), body); /* its closing '}' left off */
    for (size_t i = 0; i < n; i++)
        p += snprintf(p, cap - (size_t)(p - out), i == 0 ? "{}" : ",{}");
    snprintf(p, cap - (size_t)(p - out), "]}");
    return out;
}

/*
 * A sign answer of more objects and arrays than the gateway lets json-c build is not read at all, its
 * data.certificate neither: Vault may have issued a certificate that is neither recorded nor withdrawn,
 * so the reason says the outcome is unknown rather than a refusal of what Vault said. Its twin, under
 * the cap, is read and delivered.
 */
static void test_sign_answer_unread(void **state)
{
    struct answer a = {200, NULL, 0};
    struct gw_sign_result res;
    struct fx f;
    char *body;

    (void)state;
    fx_init(&f, 5000);
    a.body = body = padded(ok_body, GW_MAX_UPSTREAM_CONTAINERS);
    fake_script(&a, 1);
    sign(&f, &res);
    assert_int_equal(res.status, GW_ERR_UPSTREAM);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
    assert_null(res.cert);
    if (strstr(res.reason,
               "Vault's answer (HTTP 200) could not be read (the answer holds more than 1024 '{' "
               "and '[' (objects and arrays)); the outcome is unknown (Vault may have issued: see "
               "its audit device), do not retry blindly") != res.reason)
        fail_msg("reason \"%s\"", res.reason);
    assert_int_equal(fake_n_reqs(), 1); /* not asked again */
    gw_sign_result_cleanup(&res);
    free(body);
    a.body = body = padded(ok_body, GW_MAX_UPSTREAM_CONTAINERS / 2);
    fake_script(&a, 1);
    sign(&f, &res);
    assert_int_equal(res.status, 0);
    assert_non_null(res.cert);
    gw_sign_result_cleanup(&res);
    free(body);
    fx_cleanup(&f);
}

/*
 * A sign answer over GW_MAX_UPSTREAM_BODY is not read either, data.certificate neither: the outcome is
 * unknown, and its vault_sign_failed line is an error, as for one of too many objects and arrays
 * (test_sign_answer_unread), for the operator must look for the certificate at Vault. Before, it was a
 * warning.
 */
static void test_sign_answer_over_cap(void **state)
{
    struct answer a = {200, NULL, 0};
    struct gw_sign_result res;
    struct tu_log l;
    struct fx f;
    char logged[4096], *big = malloc(GW_MAX_UPSTREAM_BODY + 2);

    (void)state;
    assert_non_null(big);
    memset(big, ' ', GW_MAX_UPSTREAM_BODY + 1);
    big[GW_MAX_UPSTREAM_BODY + 1] = '\0';
    a.body = big;
    fx_init(&f, 5000);
    fake_script(&a, 1); /* the fake answers its copy */
    free(big);
    tu_log_capture(&l, GW_LOG_ERROR, GW_LOG_INFO);
    sign(&f, &res);
    tu_log_release_into(&l, logged, sizeof(logged));
    assert_int_not_equal(res.status, 0);
    assert_null(res.cert);
    assert_non_null(strstr(res.reason, "larger than 1048576 bytes); the outcome is unknown"));
    assert_non_null(strstr(logged, "\"event\":\"vault_sign_failed\""));
    assert_int_equal(fake_n_reqs(), 1); /* not asked again */
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

/*
 * Vault signs with HTTP 200. Another 2xx (201, 202: a proxy's, or no answer of Vault's sign) with a
 * certificate is refused, and the certificate handed on to be recorded and revoked: as an error it
 * was dropped, the certificate issued and forgotten. One without a certificate is refused as well.
 */
static void test_sign_other_2xx(void **state)
{
    static const int statuses[] = {201, 202, 206, 299};
    struct gw_sign_result res;
    char want[64];
    struct fx f;

    (void)state;
    fx_init(&f, 5000);
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        fake_script(&(struct answer){statuses[i], NULL, 0}, 1);
        sign(&f, &res);
        assert_int_equal(res.status, GW_ERR_UPSTREAM);
        assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
        assert_non_null(res.cert);
        assert_int_equal(X509_cmp(res.cert, leaf), 0);
        assert_null(res.chain);
        snprintf(want, sizeof(want), "Vault's answer (HTTP %d) is refused: ", statuses[i]);
        if (strstr(res.reason, want) != res.reason || strstr(res.reason, "HTTP 200") == NULL)
            fail_msg("HTTP %d: reason \"%s\"", statuses[i], res.reason);
        assert_int_equal(fake_n_reqs(), 1);
        gw_sign_result_cleanup(&res);
    }
    fake_script(&(struct answer){201, "{\"data\":{}}", 0}, 1);
    sign(&f, &res);
    assert_int_not_equal(res.status, 0);
    assert_null(res.cert);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

/* Vault's 412 then 200: the retry succeeds; 200 with warnings and a certificate is a success. */
static void test_sign_retry_then_ok(void **state)
{
    struct answer script[2] = {{412, "{\"errors\":[\"required index state not present\"]}", 0},
                               {200, NULL, 0}};
    struct gw_sign_result res;
    struct fx f;

    (void)state;
    fx_init(&f, 5000);
    fake_script(script, 2);
    sign(&f, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(fake_n_reqs(), 2);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

#define ENVOY_503                                                                                            \
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination"

/*
 * A sign answered 503 is sent again only when the 503 is Vault's own, its JSON naming a sealed node or
 * a standby without an active one: Vault handled nothing. A 503 of anything else (a proxy in front of
 * Vault: Envoy's, an ingress's page, JSON of another shape) may come after it passed the call on to
 * Vault, which may have issued: the outcome is unknown, said so, and the sign is not sent again. Once,
 * every 503 was sent again, and a certificate Vault issued for the first went unrecorded. Each case
 * runs from the asynchronous call (the first answer) and from its synchronous repetition (a Vault
 * sealed first, then the answer). A revocation, which may be asked twice, repeats any 503.
 */
static void test_sign_503_not_vaults(void **state)
{
    static const struct {
        const char *body;
        bool vaults; /* sent again, then answered 200 */
    } cases[] = {
        {"{\"errors\":[\"Vault is sealed\"]}", true},
        {"{\"errors\":[\"Vault is sealed\"]}\n", true}, /* Go's json.Encoder ends with a newline */
        {"{\"errors\":[\"no active Vault instance found\"]}", true},
        {"{\"errors\":[\"node is not active\"]}", true},
        {ENVOY_503, false},
        {"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>", false},
        {"", false},
        {"{\"message\":\"no healthy upstream\"}", false},
        {"{\"errors\":[\"upstream unavailable\"]}", false},
        {"{\"errors\":[\"Vault is sealed\",\"x\"]}", false},
        {"{\"errors\":[\"failed to store certificate: Vault is sealed\"]}", false},
        {"{\"errors\":[\"Vault is sealed\\u0000 and more\"]}", false},
        {"{\"errors\":[\"Vault is sealed\"],\"data\":{}}", false},
        {"{\"errors\":\"Vault is sealed\"}", false},
        {"{\"errors\":[\"Vault is sealed\"]} trailing", false},
    };
    char err[GW_ERR_LEN];
    struct answer script[3];
    struct fx f;

    (void)state;
    fx_init(&f, 5000);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        sign_resent_if_vaults(&f, i, 503, cases[i].body, cases[i].vaults);
    script[0] = (struct answer){503, ENVOY_503, 0};
    script[1] = (struct answer){200, "{\"data\":{\"revocation_time\":1433269787,\"state\":\"revoked\"}}", 0};
    fake_script(script, 2);
    assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_KEY_COMPROMISE, err), 0);
    assert_int_equal(fake_n_reqs(), 2);
    fx_cleanup(&f);
}

/*
 * A sign answered 403, 412 or 429 is sent again only when the answer is Vault's own, the one message
 * its HTTP layer writes before the PKI engine sees the call: a 403 "permission denied" (a token Vault
 * does not know, in OpenBao's words and Vault's, or a policy that does not allow the path), a 412
 * "required index state not present", a 429 "request path ...: rate limit quota exceeded". The same
 * status from anything else (a proxy's or a WAF's page, JSON of another shape, Vault's words with more
 * beside them) may come after the call was passed on to Vault, which may have issued: the outcome is
 * unknown, said so, and the sign is not sent again. Once, every such answer was sent again, and a
 * certificate Vault issued for the first went unrecorded. Each case runs from the asynchronous call (the
 * first answer) and from its synchronous repetition (a Vault sealed first, then the answer). A
 * revocation, which may be asked twice, repeats any of them.
 */
static void test_sign_refusals_not_vaults(void **state)
{
    static const struct {
        int status;
        const char *body;
        bool vaults; /* sent again, then answered 200 */
    } cases[] = {
        {403, "{\"errors\":[\"permission denied\"]}", true},
        {403, "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}\n", true},
        {403, "{\"errors\":[\"2 errors occurred:\\n\\t* permission denied\\n\\t* invalid token\\n\\n\"]}\n",
         true},
        {403, "<html><head><title>403 Forbidden</title></head><body>Request blocked</body></html>", false},
        {403, "{\"message\":\"Forbidden\"}", false},
        {403, "", false},
        {403, "{\"errors\":[\"Permission denied\"]}", false},
        {403, "{\"errors\":[\"permission denied\",\"x\"]}", false},
        {403, "{\"errors\":[\"permission denied by the ingress\"]}", false},
        {403, "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"],\"data\":{}}", false},
        {412, "{\"errors\":[\"required index state not present\"]}\n", true},
        {412, "{\"errors\":[]}", false},
        {412, "<html><body><h1>412 Precondition Failed</h1></body></html>", false},
        {412, "{\"errors\":[\"required index state not present\\u0000\"]}", false},
        {429, "{\"errors\":[\"request path \\\"pki/sign/web\\\": rate limit quota exceeded\"]}\n", true},
        {429, "<html><head><title>429 Too Many Requests</title></head></html>", false},
        {429, "{\"errors\":[\"rate limit quota exceeded\"]}", false},
        {429, "{\"errors\":[\"request path \\\"\\\": rate limit quota exceeded\"]}", false},
        {429, "{\"errors\":[\"request path \\\"pki/sign/web\\\": rate limit quota exceeded.\"]}", false},
        {429, "{\"errors\":[\"request path \\\"pki/sign/web\\\": rate limit quota exceeded\"]} trailing",
         false},
        {429, "{\"errors\":[\"Vault is sealed\"]}", false},
    };
    static const int statuses[] = {403, 412, 429};
    char err[GW_ERR_LEN];
    struct answer script[3];
    struct fx f;

    (void)state;
    fx_init(&f, 5000);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        sign_resent_if_vaults(&f, i, cases[i].status, cases[i].body, cases[i].vaults);
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        script[0] = (struct answer){statuses[i], "<html>blocked by the ingress</html>", 0};
        script[1] =
            (struct answer){200, "{\"data\":{\"revocation_time\":1433269787,\"state\":\"revoked\"}}", 0};
        fake_script(script, 2);
        assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_KEY_COMPROMISE, err), 0);
        assert_int_equal(fake_n_reqs(), 2);
    }
    fx_cleanup(&f);
}

/* A timeout or a dropped connection has an unknown outcome: one call only, said so. */
static void test_sign_timeout_not_retried(void **state)
{
    struct answer slow = {200, NULL, 1500}, drop = {-1, NULL, 0};
    struct gw_sign_result res;
    struct fx f;

    (void)state;
    fx_init(&f, 300);
    fake_script(&slow, 1);
    sign(&f, &res);
    assert_int_equal(res.status, GW_ERR_TIMEOUT);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_non_null(strstr(res.reason, "outcome is unknown"));
    assert_int_equal(fake_n_reqs(), 1);
    gw_sign_result_cleanup(&res);
    fake_script(&drop, 1);
    sign(&f, &res);
    assert_int_equal(res.status, GW_ERR_IO);
    assert_non_null(strstr(res.reason, "outcome is unknown"));
    assert_int_equal(fake_n_reqs(), 1);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
    pthread_mutex_lock(&fake.lock);
    fake_settle(); /* the slow answer finished before the next test */
    pthread_mutex_unlock(&fake.lock);
}

/*
 * A kept-alive connection that dies after the whole request went out, before any answer (Vault
 * issued, then crashed; a proxy cut it): libcurl would send the request again on a new connection
 * by itself, and a second certificate would be issued while the first one is valid at Vault, known
 * to nobody. Sent once: the outcome is unknown, as after a timeout. Through the sign calls (the
 * asynchronous client) and a synchronous call alike.
 */
static void test_sign_not_resent_on_a_reused_connection(void **state)
{
    struct answer script[] = {{200, NULL, 0}, {200, NULL, 0}, {-1, NULL, 0}, {200, NULL, 0}};
    struct gw_http_response rsp;
    struct gw_http_client *c;
    struct gw_sign_result res;
    char err[GW_ERR_LEN];
    struct fx f;

    (void)state;
    fx_init_kept_alive(&f, 3000, script, 4);
    for (int i = 0; i < 2; i++) { /* the second at least is asynchronous, its connection kept */
        sign(&f, &res);
        assert_int_equal(res.status, 0);
        gw_sign_result_cleanup(&res);
    }
    sign(&f, &res); /* on that connection, which dies */
    assert_int_equal(res.status, GW_ERR_IO);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_non_null(strstr(res.reason, "outcome is unknown"));
    assert_null(res.cert);
    assert_int_equal(fake_n_reqs(), 3);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f); /* its connections closed: the fake's threads end */
    fx_init_kept_alive(&f, 3000, script + 1, 3);
    assert_non_null(c = gw_http_client_new(f.conf.name, &f.vc.http, f.conf.timeout_ms, 0, NULL, err));
    assert_int_equal(gw_http_request(c, "POST", "/v1/pki/sign/web", "{}", NULL, &rsp), 0);
    assert_int_equal(rsp.status, 200);
    gw_http_response_cleanup(&rsp);
    assert_int_equal(gw_http_request(c, "POST", "/v1/pki/sign/web", "{}", NULL, &rsp), GW_ERR_IO);
    assert_int_equal(rsp.not_sent, 0);
    gw_http_response_cleanup(&rsp);
    assert_int_equal(fake_n_reqs(), 2);
    gw_http_client_free(c);
    fx_cleanup(&f);
}

/* Retries stop at the deadline: a 503 storm with a short timeout ends early. */
static void test_sign_retry_bounded_by_deadline(void **state)
{
    struct answer sealed = {503, "{\"errors\":[\"Vault is sealed\"]}", 0};
    struct gw_sign_result res;
    struct fx f;

    (void)state;
    fx_init(&f, 550); /* room for the first backoff (200 ms) and two slow answers, not the second (400 ms) */
    fake_script(&sealed, 1);
    sign(&f, &res);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_non_null(strstr(res.reason, "Vault is sealed"));
    assert_int_equal(fake_n_reqs(), 2);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

/* A revocation of |f| that fails; its length in milliseconds. */
static uint64_t revoke_failed_ms(struct fx *f)
{
    char err[GW_ERR_LEN] = "";
    uint64_t t0 = gw_now_ms();

    assert_int_not_equal(gw_upstream_revoke(f->up, leaf, CRL_REASON_KEY_COMPROMISE, err), 0);
    return gw_now_ms() - t0;
}

/*
 * The upstream's timeout bounds a whole call, its re-login and retries included: each attempt has
 * only what is left of it, or a revocation outlives the cluster-wide mark that holds other instances
 * off it (a TTL of the timeout and some slack). Here a slow 403, a slow login, a slow answer: some
 * 2.8 s with a timeout per attempt, 1 s with one for the call; a slow 503, then a slow answer: 1.9 s
 * against 1 s. Measured on a revocation, whose caller waits for its end (a sign's stops waiting at the
 * timeout, whatever the adapter still does).
 */
static void test_call_bounded_by_timeout(void **state)
{
    static const char login[] = "{\"auth\":{\"client_token\":\"hvb.login\",\"lease_duration\":3600}}";
    const struct answer ok = {200, NULL, 0}, slow_ok = {200, NULL, 1500};
    const struct answer denied = {403, "{\"errors\":[\"permission denied\"]}", 900};
    const struct answer sealed = {503, "{\"errors\":[\"Vault is sealed\"]}", 700};
    struct gw_sign_result res;
    struct fx f;
    uint64_t ms;

    (void)state;
    fx_init_cert_login(&f, 1000);
    fake_set_login((struct answer){200, login, 0});
    fake_script(&ok, 1);
    sign(&f, &res); /* the token in hand */
    assert_int_equal(res.status, 0);
    gw_sign_result_cleanup(&res);
    fake_set_login((struct answer){200, login, 900});
    fake_script((struct answer[]){denied, slow_ok}, 2);
    if ((ms = revoke_failed_ms(&f)) >= 2000)
        fail_msg("403, re-login, answer: %llu ms with a timeout of 1000 ms", (unsigned long long)ms);
    fake_set_login((struct answer){200, login, 0});
    fake_script((struct answer[]){sealed, slow_ok}, 2);
    if ((ms = revoke_failed_ms(&f)) >= 1600)
        fail_msg("503, retry: %llu ms with a timeout of 1000 ms", (unsigned long long)ms);
    assert_int_equal(fake_n_reqs(), 2);
    fx_cleanup(&f);
}

/* A sign's completion, whenever it comes (gw_upstream_sign_submit's |done|). */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct gw_sign_result *res;
} ended = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL};

static void sign_ended(void *arg, struct gw_sign_result *res)
{
    (void)arg;
    pthread_mutex_lock(&ended.lock);
    ended.res = res;
    pthread_cond_signal(&ended.cond);
    pthread_mutex_unlock(&ended.lock);
}

/*
 * The exception: a sign sent again before the deadline runs to a timeout of its own, so that a
 * certificate Vault issues late still reaches the engine (recorded, withdrawn), rather than being cut
 * off unheard. A 503 after 300 ms, the retry sent at 500 ms of 1000, answered 900 ms later: past the
 * deadline however late the fake's sleeps end, and sent before it with 500 ms to spare for a loaded
 * sanitizer build (the 100 ms this once left was missed: no retry, and nothing to hear).
 */
static void test_sign_retry_heard_late(void **state)
{
    const struct answer script[2] = {{503, "{\"errors\":[\"Vault is sealed\"]}", 300}, {200, NULL, 900}};
    struct gw_sign_req req;
    struct fx f;
    struct timespec until;

    (void)state;
    fx_init(&f, 1000);
    fake_script(script, 2);
    req = (struct gw_sign_req){.role = &f.role, .plan = &f.plan, .csr = csr, .request_id = "0011"};
    assert_int_equal(gw_upstream_sign_submit(f.up, &req, sign_ended, NULL), 0);
    until = tu_deadline(WAIT_S);
    pthread_mutex_lock(&ended.lock);
    while (ended.res == NULL && tu_wait_until(&ended.cond, &ended.lock, &until) == 0)
        ;
    pthread_mutex_unlock(&ended.lock);
    if (ended.res == NULL) /* the call still uses |f| */
        tu_end_run("the retried sign call did not end within WAIT_S");
    assert_int_equal(ended.res->status, 0);
    assert_non_null(ended.res->cert);
    assert_int_equal(fake_n_reqs(), 2);
    gw_sign_result_cleanup(ended.res);
    free(ended.res);
    ended.res = NULL;
    fx_cleanup(&f);
}

static void test_connection_refused(void **state)
{
    struct gw_sign_result res;
    struct fx f;
    char url[64];

    (void)state;
    fx_init(&f, 2000);
    snprintf(url, sizeof(url), "http://127.0.0.1:1");
    f.vc.http.url = url;
    fx_restart(&f);
    sign(&f, &res);
    assert_int_equal(res.status, GW_ERR_IO);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_non_null(strstr(res.reason, "unreachable"));
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
}

/* An answer over GW_MAX_UPSTREAM_BODY is cut off, not buffered. */
static void test_oversized_answer(void **state)
{
    struct answer big = {200, NULL, 0};
    struct gw_http_response rsp;
    struct fx f;
    struct gw_http_client *c;
    char err[GW_ERR_LEN];
    int rc = 0;

    (void)state;
    fake.big = malloc(GW_MAX_UPSTREAM_BODY + 2);
    memset(fake.big, 'a', GW_MAX_UPSTREAM_BODY + 1);
    fake.big[GW_MAX_UPSTREAM_BODY + 1] = '\0';
    big.body = fake.big;
    fx_init(&f, 5000);
    fake_script(&big, 1);
    assert_non_null(
        c = gw_http_client_new(f.conf.name, &f.vc.http, f.conf.timeout_ms, GW_HTTP_SECRETS, NULL, err));
    assert_int_equal(gw_http_request(c, "GET", "/v1/x", NULL, NULL, &rsp), GW_ERR_IO);
    assert_non_null(strstr(rsp.error, "larger than"));
    assert_null(rsp.body);
    gw_http_response_cleanup(&rsp);
    /* exactly the cap is fine (scripted anew: the fake answers its copy) */
    fake.big[GW_MAX_UPSTREAM_BODY] = '\0';
    fake_script(&big, 1);
    assert_int_equal(gw_http_request(c, "GET", "/v1/x", NULL, NULL, &rsp), 0);
    assert_int_equal(rsp.status, 200);
    assert_int_equal(rsp.body_len, GW_MAX_UPSTREAM_BODY);
    assert_string_equal(rsp.content_type, "application/json");
    gw_http_response_cleanup(&rsp);
    gw_http_client_free(c);
    /* no URL: refused at creation, the configuration's */
    f.vc.http.url = NULL;
    assert_null(gw_http_client_new(f.conf.name, &f.vc.http, f.conf.timeout_ms, GW_HTTP_SECRETS, &rc, err));
    assert_int_equal(rc, GW_ERR_INVAL);
    fx_cleanup(&f);
}

/* ---- authentication ---- */

/*
 * 403: the token file is read again once, through the same checks as at start: a new token is sent;
 * a file gone or one others may read ends the request with no second call (an operator problem).
 */
static void test_token_reread_on_403(void **state)
{
    enum { REWRITE, REMOVE, OPEN_TO_OTHERS };
    static const int cases[] = {REWRITE, REMOVE, OPEN_TO_OTHERS};
    struct answer script[2] = {{403, "{\"errors\":[\"permission denied\"]}", 0}, {200, NULL, 0}};
    struct gw_sign_result res;
    struct fx f;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fx_init(&f, 5000);
        write_token("hvs.second\n");
        if (cases[i] == REMOVE)
            unlink(token_path);
        if (cases[i] == OPEN_TO_OTHERS)
            assert_int_equal(chmod(token_path, 0644), 0);
        fake_script(script, 2);
        sign(&f, &res);
        assert_string_equal(fake_req(0)->token, "hvs.first");
        if (cases[i] == REWRITE) {
            assert_int_equal(res.status, 0);
            assert_int_equal(fake_n_reqs(), 2);
            assert_string_equal(fake_req(1)->token, "hvs.second");
        } else {
            assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
            assert_non_null(strstr(res.reason, "token_file"));
            assert_null(strstr(res.reason, token_path)); /* the file's path is the log's only */
            assert_int_equal(fake_n_reqs(), 1);          /* the token of a refused file is never sent */
        }
        gw_sign_result_cleanup(&res);
        write_token("hvs.first\n");
        fx_cleanup(&f);
    }
}

/*
 * A token file that is not one token refuses the start as the configuration's (GW_ERR_INVAL: exit 78), one
 * not there yet is the system's (GW_ERR_UNAVAILABLE: exit 1, retried until Vault Agent writes it), whatever
 * errno said before: the class is vault_read_token_file's own. The start read errno after it, which only
 * the open's failure sets, so an empty file after a lookup that left ENOENT was GW_ERR_UNAVAILABLE, and a
 * garbled token file was retried for ever.
 */
static void test_token_file_bad(void **state)
{
    static const char *const bad[] = {"", "\n", "two\nlines\n"};
    struct gw_vault_conf vc = {.http.url = "http://127.0.0.1:1", .token_file = token_path};
    struct gw_upstream_conf conf = {.name = "vault", .ops = &gw_upstream_vault_ops, .impl = &vc};
    char err[GW_ERR_LEN], *token = NULL;
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_token(bad[i]);
        for (int stale = 0; stale <= 1; stale++) {
            errno = stale ? ENOENT : 0; /* what an earlier lookup may have left */
            rc = 0;
            assert_null(gw_upstream_set_new(&conf, 1, NULL, 0, NULL, NULL, &rc, err));
            if (rc != GW_ERR_INVAL)
                fail_msg("case %zu, errno %s before: %d, not GW_ERR_INVAL", i, stale ? "ENOENT" : "0", rc);
            assert_non_null(strstr(err, "token_file"));
            errno = ENOENT;
            assert_int_equal(vault_read_token_file(token_path, &token, err), GW_ERR_INVAL);
            assert_null(token);
        }
    }
    /* open to others: refused by its mode, the configuration's */
    write_token("hvs.first\n");
    assert_int_equal(chmod(token_path, 0644), 0);
    errno = ENOENT;
    assert_int_equal(vault_read_token_file(token_path, &token, err), GW_ERR_INVAL);
    assert_null(token);
    vc.token_file = "/nonexistent/token";
    errno = 0;
    assert_null(gw_upstream_set_new(&conf, 1, NULL, 0, NULL, NULL, &rc, err));
    assert_int_equal(rc, GW_ERR_UNAVAILABLE);
    assert_int_equal(vault_read_token_file(vc.token_file, &token, err), GW_ERR_UNAVAILABLE);
    vc.token_file = NULL;
    vc.mount = "../sys";
    assert_null(gw_upstream_new_ops(&conf, &gw_upstream_vault_ops, NULL, err));
    write_token("hvs.first\n");
}

/*
 * An HTTP client that cannot be made for what the system lacks (here no thread key left; likewise out of
 * memory, libcurl that would not start) fails the start as the system's, which another try may mend
 * (exit 1): vault_init said GW_ERR_INVAL for any, the configuration refused (exit 78, not restarted).
 */
static void test_init_without_a_thread_key(void **state)
{
    struct gw_vault_conf vc = {.http.url = "http://127.0.0.1:1", .token_file = token_path};
    struct gw_upstream_conf conf = {.name = "vault", .ops = &gw_upstream_vault_ops, .impl = &vc};
    char err[GW_ERR_LEN] = "";
    struct gw_upstream_set *set;
    int rc = 0;

    (void)state;
    write_token("hvs.first\n");
    tu_keys_exhaust();
    set = gw_upstream_set_new(&conf, 1, NULL, 0, NULL, NULL, &rc, err);
    tu_keys_back();
    assert_null(set);
    assert_int_equal(rc, GW_ERR_UNAVAILABLE);
    assert_non_null(strstr(err, "no thread key left"));
}

/* One sign() through |f|, on a thread of its own or not: its status, reason and the time it returned. */
struct signer_arg {
    struct fx *f;
    int status;
    uint64_t end_ms;
    char reason[GW_ERR_LEN];
};

static void *signer_main(void *arg)
{
    struct signer_arg *a = arg;
    struct gw_sign_result res;

    sign(a->f, &res);
    a->end_ms = gw_now_ms();
    a->status = res.status;
    snprintf(a->reason, sizeof(a->reason), "%s", res.reason);
    gw_sign_result_cleanup(&res);
    return NULL;
}

/* Cert login: one login for many concurrent callers; the token is reused until near expiry. */
static void test_cert_login_single_flight(void **state)
{
    struct answer ok = {200, NULL, 0};
    struct signer_arg args[6];
    pthread_t t[6];
    struct fx f;
    int i;

    (void)state;
    fx_init_cert_login(&f, 5000);
    f.vc.auth_cert_role = "cmpgw";
    fx_restart(&f);
    fake_set_login(
        (struct answer){200, "{\"auth\":{\"client_token\":\"hvb.login\",\"lease_duration\":3600}}", 300});
    fake_script(&ok, 1);
    for (i = 0; i < 6; i++) {
        args[i].f = &f;
        assert_int_equal(pthread_create(&t[i], NULL, signer_main, &args[i]), 0);
    }
    for (i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].status, 0);
    }
    assert_int_equal(fake_n_logins(), 1);
    assert_int_equal(fake_n_reqs(), 6);
    assert_string_equal(fake_req(0)->token, "hvb.login");
    /* a lease inside the renewal margin is re-obtained on the next call */
    fake_set_login(
        (struct answer){200, "{\"auth\":{\"client_token\":\"hvb.short\",\"lease_duration\":1}}", 0});
    fx_restart(&f);
    fake_script(&ok, 1);
    signer_main(&args[0]);
    signer_main(&args[1]);
    assert_int_equal(fake_n_logins(), 2);
    fx_cleanup(&f);
}

/*
 * A login is shared, so it does not end with the time of the call that happened to start it: A's token
 * is refused (403) with 500 ms of A's 2 s left, A starts a login that takes 1 s, and B, arriving with
 * its whole timeout, waits for that login. A leaves at its own deadline, the login goes on, and B signs
 * with its token, 500 ms after A left (a loaded machine may wake A late). Once, the login had only
 * what was left of A's timeout and failed for B too.
 */
static void test_cert_login_outlives_its_starter(void **state)
{
    struct answer script[2] = {{403, "{\"errors\":[\"permission denied\"]}", 500}, {200, NULL, 0}};
    struct signer_arg a = {0}, b = {0};
    struct timespec until;
    pthread_t ta;
    struct fx f;

    (void)state;
    fx_init_cert_login(&f, 2000);
    fake_set_login(
        (struct answer){200, "{\"auth\":{\"client_token\":\"hvb.login\",\"lease_duration\":3600}}", 1000});
    fake_script(script, 2);
    a.f = b.f = &f;
    assert_int_equal(pthread_create(&ta, NULL, signer_main, &a), 0);
    until = tu_deadline(WAIT_S);
    while (fake_n_logins() < 2 && !tu_past(&until)) /* until A's second login has reached Vault */
        gw_sleep_ms(10);
    assert_int_equal(fake_n_logins(), 2);
    signer_main(&b);
    pthread_join(ta, NULL);
    if (b.status != 0)
        fail_msg("B: %s", b.reason);
    assert_int_not_equal(a.status, 0);
    /* A's own deadline: the login's wait, or the blocking wait around the call, which ends at the same
       moment and, on a loaded machine, may be first */
    if (strstr(a.reason, "no token within the call's timeout") == NULL &&
        strstr(a.reason, "did not answer within 2000 ms") == NULL)
        fail_msg("A: %s", a.reason);
    assert_true(a.end_ms < b.end_ms); /* A did not wait for the login beyond its own deadline */
    assert_int_equal(fake_n_logins(), 2);
    assert_int_equal(fake_n_reqs(), 2);
    assert_string_equal(fake_req(1)->token, "hvb.login");
    fx_cleanup(&f);
}

/*
 * A refused login is an operator problem; waiting callers share its outcome, nothing is signed. A login
 * answer out of range is refused whole: a negative lease would never be renewed, a huge one wraps.
 */
static void test_cert_login_refused(void **state)
{
    static const struct {
        struct answer a;
        const char *reason;
    } logins[] = {
        {{400, "{\"errors\":[\"invalid certificate or no client certificate supplied\"]}", 0},
         "Vault cert login refused the gateway (HTTP 400): invalid certificate"},
        {{200, "{\"auth\":null}", 0}, "auth is missing or null"},
        {{200, "garbage", 0}, "not Vault JSON"},
        {{500, "{\"errors\":[\"internal error\"]}", 0}, "(HTTP 500): internal error"},
        {{200, "{\"auth\":{\"client_token\":\"hvb.x\",\"lease_duration\":-1}}", 0},
         "Vault cert login: the answer is refused: auth.lease_duration is -1, not 0 to 315360000"},
        {{200, "{\"auth\":{\"client_token\":\"hvb.x\",\"lease_duration\":4294967296}}", 0},
         "auth.lease_duration is 4294967296, not 0 to 315360000"},
        {{200, "{\"auth\":{\"client_token\":\"hvb.x\",\"lease_duration\":\"3600\"}}", 0},
         "auth.lease_duration is a string, not an integer"},
        {{200, "{\"auth\":{\"client_token\":\"hvb.x\\r\\nX-Evil: 1\",\"lease_duration\":60}}", 0},
         "auth.client_token holds a character that is not visible ASCII"},
        {{200, "{\"auth\":{\"client_token\":\"hvb.x\",\"lease_duration\":60}}\n{}", 0},
         "not Vault JSON: trailing data"},
    };
    struct answer ok = {200, NULL, 0};
    struct gw_sign_result res;
    struct fx f;
    size_t i;

    (void)state;
    fx_init_cert_login(&f, 5000);
    for (i = 0; i < sizeof(logins) / sizeof(logins[0]); i++) {
        fx_restart(&f);
        fake_set_login(logins[i].a);
        fake_script(&ok, 1);
        sign(&f, &res);
        assert_int_not_equal(res.status, 0);
        assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
        assert_non_null(strstr(res.reason, "login"));
        if (strstr(res.reason, logins[i].reason) == NULL)
            fail_msg("case %zu: reason \"%s\"", i, res.reason);
        assert_int_equal(fake_n_reqs(), 0);
        assert_int_equal(fake_n_logins(), 1);
        gw_sign_result_cleanup(&res);
    }
    fx_cleanup(&f);
}

/* |tok| in a JSON string, every |step|th character as a \u escape, from the first: all of them at 1. */
static const char *escaped(const char *tok, size_t step, char *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; tok[i] != '\0'; i++)
        n += (size_t)snprintf(out + n, cap - n, i % step == 0 ? "\\u%04x" : "%c", (unsigned)tok[i]);
    assert_true(n < cap);
    return out;
}

/*
 * A refused login's message is treated like a sign answer's error: capped, so that the reason keeps what
 * it tells the operator, and masked of the token the gateway holds (one renewed before its lease ends is
 * still good), which would otherwise reach the log and the client's statusString: as it stands, and
 * written with JSON escapes, whole or in part (json-c decodes them into the token).
 */
static void test_cert_login_refusal_masked(void **state)
{
    static const char held[] = "hvb.HeldTokenOfTheGatewayE2E";
    static const size_t steps[] = {0, 1, 3}; /* 0: no escape */
    struct answer ok = {200, NULL, 0};
    char body[1024], msg[600], esc[256];
    struct gw_sign_result res;
    struct fx f;

    (void)state;
    fx_init_cert_login(&f, 5000);
    /* a lease of 1 s: the token is renewed at the next call, and held meanwhile */
    snprintf(body, sizeof(body), "{\"auth\":{\"client_token\":\"%s\",\"lease_duration\":1}}", held);
    fake_set_login((struct answer){200, body, 0});
    fake_script(&ok, 1);
    sign(&f, &res);
    assert_int_equal(res.status, 0);
    gw_sign_result_cleanup(&res);
    memset(msg, 'x', 300);
    msg[300] = '\0';
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        snprintf(body, sizeof(body), "{\"errors\":[\"permission denied: %s is expiring; %s\"]}",
                 steps[i] == 0 ? held : escaped(held, steps[i], esc, sizeof(esc)), msg);
        fake_set_login((struct answer){403, body, 0});
        fake_script(&ok, 1);
        sign(&f, &res); /* the token held is past its renewal: a login again */
        assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
        if (strstr(res.reason, "HeldToken") != NULL || strstr(res.reason, "permission denied: ****") == NULL)
            fail_msg("step %zu: reason \"%s\"", steps[i], res.reason);
        assert_non_null(strstr(res.reason, "xxx: an operator must fix the gateway's Vault login"));
        assert_int_equal(fake_n_reqs(), 0);
        gw_sign_result_cleanup(&res);
    }
    fx_cleanup(&f);
}

/* ---- revoke, role policy, cert status ---- */

/*
 * What Vault's answer to a revoke means: revoked, unknown, refused for good (GW_ERR_REFUSED: the
 * client is told not to retry), or a failure that may pass (Vault busy, sealed, failing, a 2xx that
 * confirms nothing, the gateway's token). Once, a 400 and an expired certificate had the client retry
 * forever.
 */
static void test_revoke(void **state)
{
    static const struct {
        struct answer a;
        int rc;
    } cases[] = {
        {{200, "{\"data\":{\"revocation_time\":1433269787,\"state\":\"revoked\"}}", 0}, 0},
        /* Vault puts no expired certificate on its CRL, however often asked */
        {{200, "{\"data\":null,\"warnings\":[\"certificate already expired; refusing to add to CRL\"]}", 0},
         GW_ERR_REFUSED},
        /* a 200 that names no revocation is not one: the rr is not confirmed, a withdrawal is revoke_failed
         */
        {{200, "{\"data\":{}}", 0}, GW_ERR_UPSTREAM},
        {{200, "{\"data\":{\"revocation_time\":0}}", 0}, GW_ERR_UPSTREAM},
        {{200, "{\"data\":{\"state\":\"pending\"}}", 0}, GW_ERR_UPSTREAM},
        {{400, "{\"errors\":[\"certificate with serial 30:39 not found.\"]}", 0}, GW_ERR_NOT_FOUND},
        {{404, "{\"errors\":[]}", 0}, GW_ERR_NOT_FOUND},
        {{200, "nope", 0}, GW_ERR_UPSTREAM},
        {{400, "{\"errors\":[\"serial number 30:39 is the CA's own: cannot revoke it\"]}", 0},
         GW_ERR_REFUSED},
        {{405, "{\"errors\":[]}", 0}, GW_ERR_REFUSED},
        {{429, "{\"errors\":[\"request path \\\"pki/revoke\\\": rate limit quota exceeded\"]}", 0},
         GW_ERR_BUSY},
        {{503, "{\"errors\":[\"Vault is sealed\"]}", 0}, GW_ERR_BUSY},
        {{500, "{\"errors\":[\"internal error\"]}", 0}, GW_ERR_UPSTREAM},
        {{403, "{\"errors\":[\"permission denied\"]}", 0}, GW_ERR_FORBIDDEN},
    };
    struct fx f;
    char err[GW_ERR_LEN];
    size_t i;

    (void)state;
    fx_init(&f, 5000);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_script(&cases[i].a, 1);
        assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_KEY_COMPROMISE, err), cases[i].rc);
        assert_string_equal(fake_req(0)->path, "/v1/pki/revoke");
        assert_string_equal(fake_req(0)->body, "{\"serial_number\":\"30:39\"}");
    }
    fx_cleanup(&f);
}

#define REVOKED_BODY "{\"data\":{\"revocation_time\":1433269787,\"state\":\"revoked\"}}"

/*
 * A revocation given an end (a withdrawal during a drain) ends by it, Vault answering or not: a failure
 * that may pass, and nothing sent once it has passed. Before, it ran for the upstream's timeout whatever a
 * drain's deadline was. The twin: without an end, a slow answer within the timeout revokes.
 */
static void test_revoke_until(void **state)
{
    static const struct answer slow = {200, REVOKED_BODY, 1500};
    static const struct answer late = {200, REVOKED_BODY, 600};
    struct fx f;
    char err[GW_ERR_LEN];
    int rc;

    (void)state;
    fx_init(&f, 5000);
    fake_script(&slow, 1);
    /* Vault's answer would revoke, within the upstream's timeout: the end alone cut the call */
    rc = gw_upstream_revoke_until(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, gw_now_ms() + 300, err);
    assert_int_equal(rc, GW_ERR_TIMEOUT);
    assert_int_equal(fake_n_reqs(), 1);
    fake_script(&slow, 1);
    rc = gw_upstream_revoke_until(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, gw_now_ms() - 1, err);
    assert_int_not_equal(rc, 0);
    assert_int_not_equal(rc, GW_ERR_REFUSED);
    assert_int_not_equal(rc, GW_ERR_NOT_FOUND);
    assert_int_equal(fake_n_reqs(), 0);
    fake_script(&late, 1);
    assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, err), 0);
    assert_int_equal(fake_n_reqs(), 1);
    fx_cleanup(&f);
}

/*
 * A revocation at Vault when its caller lowers its end (a drain begun while it runs, for a withdrawal
 * asked before it): the call ends by that end, GW_UPSTREAM_END_CHECK_MS later at most, cut short, and
 * says that the drain's deadline cut it. Before, the call read its end only as it began, and waited for
 * Vault's answer (2.5 s here), which revoked. The twin: an end never lowered leaves the call alone.
 */
static void test_revoke_end_lowered(void **state)
{
    static const struct answer slow = {200, REVOKED_BODY, 2500};
    struct tu_lowered l = {0, 200, 200};
    struct fx f;
    char err[GW_ERR_LEN];
    int unsent = -1;
    pthread_t t;
    int rc;

    (void)state;
    fx_init(&f, 5000);
    fake_script(&slow, 1);
    assert_int_equal(pthread_create(&t, NULL, tu_lowered_main, &l), 0);
    rc = gw_upstream_revoke_by(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, &l.end, &unsent, err);
    pthread_join(t, NULL);
    assert_int_equal(rc, GW_ERR_TIMEOUT); /* Vault's answer, had it been waited for, revokes */
    assert_non_null(strstr(err, "the drain's deadline cut the call short"));
    assert_int_equal(fake_n_reqs(), 1);
    assert_int_equal(unsent, 0); /* Vault had the request: it may have revoked */
    atomic_store(&l.end, 0);
    fake_script(&(struct answer){200, REVOKED_BODY, 600}, 1);
    assert_int_equal(
        gw_upstream_revoke_by(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, &l.end, &unsent, err), 0);
    fx_cleanup(&f);
}

/*
 * A health probe that Vault holds when its prober stops (a reload retiring its configuration): the probe
 * ends by the end the prober sets, GW_UPSTREAM_END_CHECK_MS later at most, and records nothing. Before, it
 * waited for Vault's answer (2.5 s here; an upstream's whole timeout for one that never answers). The
 * twin: with no end set, the same slow answer is waited for and recorded.
 */
static void test_probe_end_lowered(void **state)
{
    static const struct answer slow = {200, "{}", 2500};
    struct tu_lowered l = {0, 200, 0};
    struct gw_upstream_health h;
    struct fx f;
    char err[GW_ERR_LEN] = "";
    pthread_t t;

    (void)state;
    fx_init(&f, 5000);
    fake_script(&slow, 1);
    assert_int_equal(pthread_create(&t, NULL, tu_lowered_main, &l), 0);
    /* Vault's answer, had it been waited for, is a good probe (the twin below) */
    assert_int_not_equal(gw_upstream_probe(f.up, &l.end, err), 0);
    pthread_join(t, NULL);
    assert_int_equal(fake_n_reqs(), 1);
    gw_upstream_health(f.up, &h);
    assert_false(h.probed);
    assert_int_equal(h.failures, 0);
    atomic_store(&l.end, 0);
    fake_script(&slow, 1);
    assert_int_equal(gw_upstream_probe(f.up, &l.end, err), 0);
    gw_upstream_health(f.up, &h);
    assert_true(h.probed);
    assert_true(h.up);
    fx_cleanup(&f);
}

/*
 * A revocation waiting for a cert login (no token yet) when its caller lowers its end: the wait reads the
 * end again, GW_UPSTREAM_END_CHECK_MS later at most, and ends there, nothing sent to Vault, saying that
 * the drain's deadline came first. Before, the wait kept the deadline its call began with, and the call
 * went on to revoke once the login (2.5 s here) brought a token. It tells its caller that nothing was sent
 * (not_sent), which before it could not. The twin: a revocation with no end waits for that login, which
 * went on for the others, and revokes with its token.
 */
static void test_revoke_login_wait_end_lowered(void **state)
{
    static const char login[] = "{\"auth\":{\"client_token\":\"hvb.login\",\"lease_duration\":3600}}";
    struct tu_lowered l = {0, 200, 200};
    _Atomic uint64_t none = 0;
    struct fx f;
    char err[GW_ERR_LEN];
    int unsent = -1;
    pthread_t t;
    uint64_t start;
    int rc;

    (void)state;
    fx_init_cert_login(&f, 5000);
    fake_set_login((struct answer){200, login, 2500});
    fake_script(&(struct answer){200, REVOKED_BODY, 0}, 1);
    start = gw_now_ms();
    assert_int_equal(pthread_create(&t, NULL, tu_lowered_main, &l), 0);
    rc = gw_upstream_revoke_by(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, &l.end, &unsent, err);
    pthread_join(t, NULL);
    if (rc == 0 || gw_now_ms() - start >= 400 + GW_UPSTREAM_END_CHECK_MS + 200)
        fail_msg("rc %d after %llu ms: %s", rc, (unsigned long long)(gw_now_ms() - start), err);
    assert_non_null(strstr(err, "Vault cert login: no token before the drain's deadline"));
    assert_int_equal(fake_n_reqs(), 0);
    assert_int_equal(unsent, 1);
    assert_int_equal(
        gw_upstream_revoke_by(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, &none, &unsent, err), 0);
    assert_int_equal(fake_n_logins(), 1);
    assert_int_equal(fake_n_reqs(), 1);
    assert_string_equal(fake_req(0)->token, "hvb.login");
    fx_cleanup(&f);
}

/*
 * A revocation answered 503 whose retry its caller's end, lowered during the backoff, left unsent: the
 * retry was not sent, but the first request was answered, and what answered 503 (Vault sealed, or a proxy
 * in front of it that had passed it on) may have acted on it, so it does not tell its caller that nothing
 * was sent (not_sent 0): a withdrawal is on record as "may or may not be revoked", the cautious side. The
 * twin is test_revoke_login_wait_end_lowered: a call cut before any request left says not_sent.
 */
static void test_revoke_retry_not_sent(void **state)
{
    static const struct answer script[] = {{503, "{\"errors\":[\"Vault is sealed\"]}", 0},
                                           {200, REVOKED_BODY, 0}};
    struct tu_lowered l = {0, 50, 20};
    struct fx f;
    char err[GW_ERR_LEN];
    int unsent = -1, rc;
    pthread_t t;

    (void)state;
    fx_init(&f, 5000);
    fake_script(script, 2);
    assert_int_equal(pthread_create(&t, NULL, tu_lowered_main, &l), 0);
    rc = gw_upstream_revoke_by(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, &l.end, &unsent, err);
    pthread_join(t, NULL);
    assert_int_not_equal(rc, 0);
    assert_int_equal(fake_n_reqs(), 1);
    assert_non_null(strstr(err, "not sent: the drain's deadline came first"));
    assert_int_equal(unsent, 0);
    fx_cleanup(&f);
}

/*
 * A revocation in its second backoff (400 ms, after two 503s) when its caller lowers its end: the pause
 * reads the end as it sleeps and stops there, the retry not sent, as a login wait does
 * (test_revoke_login_wait_end_lowered). Before, the pause slept the backoff its call began with, 600 ms in
 * all, past the drain's deadline. The requests answered 503 may have been acted on (not_sent 0).
 */
static void test_revoke_backoff_end_lowered(void **state)
{
    static const struct answer script[] = {{503, "{\"errors\":[\"Vault is sealed\"]}", 0},
                                           {503, "{\"errors\":[\"Vault is sealed\"]}", 0},
                                           {200, REVOKED_BODY, 0}};
    struct tu_lowered l = {0, 300, 20};
    struct fx f;
    char err[GW_ERR_LEN];
    int unsent = -1, rc;
    pthread_t t;
    uint64_t start;

    (void)state;
    fx_init(&f, 5000);
    fake_script(script, 3);
    start = gw_now_ms();
    assert_int_equal(pthread_create(&t, NULL, tu_lowered_main, &l), 0);
    rc = gw_upstream_revoke_by(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, &l.end, &unsent, err);
    pthread_join(t, NULL);
    if (rc == 0 || gw_now_ms() - start >= 480)
        fail_msg("rc %d after %llu ms: %s", rc, (unsigned long long)(gw_now_ms() - start), err);
    assert_int_equal(fake_n_reqs(), 2);
    assert_non_null(strstr(err, "not sent: the drain's deadline came first"));
    assert_int_equal(unsent, 0);
    fx_cleanup(&f);
}

/* Vault's router for a mount the gateway's configuration names and Vault does not have. */
#define NO_ROUTE "{\"errors\":[\"no handler for route \\\"pki/revoke\\\". route entry not found.\"]}"

/*
 * A 404 to a revoke that is not Vault's "nothing there": its router (no such mount, a mount without
 * that path), or not Vault at all. Vault answers an unknown serial with a 400: this is the gateway's
 * configuration, to retry later, and the client is not told Vault's words. Once, it was "unknown
 * certificate", which a client does not retry.
 */
static void test_revoke_no_route(void **state)
{
    static const struct answer cases[] = {
        {404, NO_ROUTE, 0},
        {404, "{\"errors\":[\"1 error occurred:\\n\\t* unsupported path\\n\\n\"]}", 0},
        {404, "<html>404 page not found</html>", 0},
    };
    struct fx f;
    char err[GW_ERR_LEN];

    (void)state;
    fx_init(&f, 5000);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_script(&cases[i], 1);
        assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_KEY_COMPROMISE, err), GW_ERR_UPSTREAM);
        assert_string_equal(err, "Vault has no such path (HTTP 404): the gateway's configuration is wrong");
    }
    fx_cleanup(&f);
}

/* |reason| is whole UTF-8 (a statusString is a UTF8String, and the log repairs a split into '?'). */
static void assert_whole_utf8(const char *what, const char *reason)
{
    char repaired[GW_ERR_LEN];

    print_message("%s: %s\n", what, reason);
    if (gw_utf8_repair(repaired, sizeof(repaired), reason) != strlen(reason) || strcmp(repaired, reason) != 0)
        fail_msg("%s: \"%s\" is not whole UTF-8", what, reason);
}

/*
 * Vault's words in a revoke's or a lookup's reason are cut between characters, as a sign answer's are:
 * an expired certificate's warning, and the message of a refused login under the call's path. Once,
 * they were cut at a byte count ("%.150s", "%.120s") that split an "é" in two, and the lookup's reason
 * was written over itself while being quoted.
 */
static void test_reasons_cut_between_characters(void **state)
{
    char body[1024], msg[512], end[600];
    struct gw_role_policy p;
    struct answer a;
    struct fx f;
    char err[GW_ERR_LEN];
    size_t n, off;

    (void)state;
    for (off = 0; off < 2; off++) {
        /* "a" (or not), then 150 "é" of two bytes each: every cut at an even length splits one, or odd */
        n = (size_t)snprintf(msg, sizeof(msg), "%s", off ? "a" : "");
        for (size_t i = 0; i < 150; i++)
            n += (size_t)snprintf(msg + n, sizeof(msg) - n, "\xc3\xa9");
        fx_init(&f, 5000);
        snprintf(body, sizeof(body), "{\"data\":null,\"warnings\":[\"%s\"]}", msg);
        a = (struct answer){200, body, 0};
        fake_script(&a, 1);
        assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_KEY_COMPROMISE, err), GW_ERR_REFUSED);
        assert_whole_utf8("revoke", err);
        snprintf(end, sizeof(end), "Vault did not revoke 30:39: it has expired (Vault: %s", off ? "a" : "");
        assert_non_null(strstr(err, end));
        assert_non_null(strstr(err, "\xc3\xa9\xc3\xa9)"));
        fx_cleanup(&f);

        fx_init_cert_login(&f, 5000);
        snprintf(body, sizeof(body), "{\"errors\":[\"%s\"]}", msg);
        fake_set_login((struct answer){403, body, 0});
        a = (struct answer){200, NULL, 0};
        fake_script(&a, 1);
        assert_int_not_equal(gw_upstream_role_policy(f.up, "servers", &p, err), 0);
        assert_whole_utf8("role policy", err);
        assert_non_null(strstr(err, ": GET /v1/pki/roles/servers: Vault cert login refused the gateway (HTTP "
                                    "403): "));
        assert_non_null(strstr(err, "\xc3\xa9\xc3\xa9\xc3\xa9"));
        assert_int_equal(fake_n_reqs(), 0);
        assert_int_equal(fake_n_logins(), 1);
        fx_cleanup(&f);
    }
}

/*
 * A refused cert login's reason reaches a sign's statusString under the sign's own words, Vault's message
 * in it cut between characters under a named cap, as every reason quoting Vault is: never split by the
 * end of the reason's buffer, which the log and the statusString would repair into a '?'.
 */
static void test_login_reasons_cut_between_characters(void **state)
{
    static const struct {
        long status;
        const char *words, *tail;
    } logins[] = {
        {403, "Vault cert login refused the gateway (HTTP 403): ",
         ": an operator must fix the gateway's Vault login"},
        {500, "Vault could not be asked: Vault cert login refused the gateway (HTTP 500): ", NULL},
    };
    struct answer ok = {200, NULL, 0};
    char body[1024], msg[600];
    struct gw_sign_result res;
    struct fx f;
    size_t n, off, i;

    (void)state;
    fx_init_cert_login(&f, 5000);
    for (i = 0; i < sizeof(logins) / sizeof(logins[0]); i++) {
        for (off = 0; off < 3; off++) {
            /* 0 to 2 "a", then 150 "€" of three bytes each: a cut at any length splits one but every third */
            n = (size_t)snprintf(msg, sizeof(msg), "%.*s", (int)off, "aa");
            for (size_t k = 0; k < 150; k++)
                n += (size_t)snprintf(msg + n, sizeof(msg) - n, "\xe2\x82\xac");
            snprintf(body, sizeof(body), "{\"errors\":[\"%s\"]}", msg);
            fx_restart(&f);
            fake_set_login((struct answer){logins[i].status, body, 0});
            fake_script(&ok, 1);
            sign(&f, &res);
            assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
            assert_whole_utf8("sign after a refused login", res.reason);
            assert_null(strchr(res.reason, '?'));
            assert_non_null(strstr(res.reason, logins[i].words));
            assert_non_null(strstr(res.reason, "\xe2\x82\xac\xe2\x82\xac"));
            if (logins[i].tail != NULL)
                assert_non_null(strstr(res.reason, logins[i].tail));
            assert_int_equal(fake_n_reqs(), 0);
            gw_sign_result_cleanup(&res);
        }
    }
    fx_cleanup(&f);
}

static void test_role_policy(void **state)
{
    struct answer a = {
        200,
        "{\"data\":{\"allowed_domains\":[\"example.com\",\"corp.example\"],\"allow_subdomains\":true,"
        "\"allow_ip_sans\":true,\"key_type\":\"ec\",\"key_bits\":256,\"max_ttl\":86400,"
        "\"key_usage\":[\"DigitalSignature\",\"KeyAgreement\"],\"ext_key_usage\":[\"ServerAuth\","
        "\"clientauth\",\"Bogus\"],\"allow_any_name\":false}}",
        0};
    struct answer missing = {404, "{\"errors\":[]}", 0}, bad = {200, "{\"data\":\"x\"}", 0},
                  huge_ttl = {200, "{\"data\":{\"key_type\":\"ec\",\"max_ttl\":-1}}", 0},
                  odd_bits = {200, "{\"data\":{\"key_type\":\"ec\",\"key_bits\":\"256\"}}", 0};
    struct gw_role_policy p;
    struct fx f;
    char err[GW_ERR_LEN];

    (void)state;
    fx_init(&f, 5000);
    fake_script(&a, 1);
    assert_int_equal(gw_upstream_role_policy(f.up, "servers", &p, err), 0);
    assert_string_equal(fake_req(0)->method, "GET");
    assert_string_equal(fake_req(0)->path, "/v1/pki/roles/servers");
    assert_int_equal(p.allowed_domains.n, 2);
    assert_string_equal(p.allowed_domains.v[1], "corp.example");
    assert_true(p.allow_subdomains);
    assert_true(p.allow_ip_sans);
    assert_false(p.allow_any_name);
    assert_string_equal(p.key_type, "ec");
    assert_int_equal(p.key_bits, 256);
    assert_int_equal(p.max_ttl, 86400);
    assert_int_equal(p.key_usage, KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT);
    assert_int_equal(p.ext_key_usage, GW_EKU_SERVER_AUTH | GW_EKU_CLIENT_AUTH);
    assert_string_equal(p.other_eku, "Bogus"); /* a purpose no role can allow is kept by name */
    gw_role_policy_cleanup(&p);
    fake_script(&missing, 1);
    assert_int_equal(gw_upstream_role_policy(f.up, "nope", &p, err), GW_ERR_NOT_FOUND);
    fake_script(&bad, 1);
    assert_int_equal(gw_upstream_role_policy(f.up, "servers", &p, err), GW_ERR_UPSTREAM);
    /* a max_ttl out of range is refused, not read as 0 (none) */
    fake_script(&huge_ttl, 1);
    assert_int_equal(gw_upstream_role_policy(f.up, "servers", &p, err), GW_ERR_UPSTREAM);
    assert_non_null(strstr(err, "GET /v1/pki/roles/servers: the answer is refused: data.max_ttl is -1"));
    fake_script(&odd_bits, 1);
    assert_int_equal(gw_upstream_role_policy(f.up, "servers", &p, err), GW_ERR_UPSTREAM);
    assert_non_null(strstr(err, "data.key_bits is a string, not an integer"));
    fake_script(&a, 1);
    assert_int_equal(gw_upstream_role_policy(f.up, "../sys/raw", &p, err), GW_ERR_INVAL);
    assert_int_equal(fake_n_reqs(), 0);
    fx_cleanup(&f);
}

/*
 * What a Vault role grants every certificate: key_usage, ext_key_usage, the four *_flag switches and
 * ext_key_usage_oids. An answer without them reads as Vault's defaults, never as narrower.
 */
#define R5(x) x "," x "," x "," x "," x
#define R65(x) R5(R5(x)) "," R5(R5(x)) "," R5(x) "," R5(x) "," R5(x) /* GW_MAX_ROLE_USAGES + 1 */

static void test_role_policy_grants(void **state)
{
    static const struct {
        const char *data;
        unsigned ku, eku;
        const char *other;
    } cases[] = {
        /* Vault's defaults: absent fields are not "none" */
        {"{}", KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | KU_KEY_ENCIPHERMENT,
         GW_EKU_SERVER_AUTH | GW_EKU_CLIENT_AUTH, ""},
        {"{\"key_usage\":[],\"ext_key_usage\":[],\"server_flag\":false,\"client_flag\":false}", 0, 0, ""},
        {"{\"key_usage\":[\"DigitalSignature\"],\"server_flag\":false,\"client_flag\":true}",
         KU_DIGITAL_SIGNATURE, GW_EKU_CLIENT_AUTH, ""},
        /* older Vaults answer a comma-separated string; names Vault does not know grant nothing */
        {"{\"key_usage\":\"DigitalSignature, CertSign,NoSuchUsage\",\"server_flag\":false,"
         "\"client_flag\":false}",
         KU_DIGITAL_SIGNATURE | KU_KEY_CERT_SIGN, 0, ""},
        {"{\"key_usage\":[],\"server_flag\":false,\"client_flag\":false,\"code_signing_flag\":true,"
         "\"email_protection_flag\":true}",
         0, GW_EKU_CODE_SIGNING | GW_EKU_EMAIL_PROTECTION, ""},
        {"{\"key_usage\":[],\"server_flag\":false,\"client_flag\":false,\"ext_key_usage\":[\"Any\","
         "\"TimeStamping\"]}",
         0, GW_EKU_TIME_STAMPING, "Any"},
        {"{\"key_usage\":[],\"server_flag\":false,\"client_flag\":false,"
         "\"ext_key_usage_oids\":[\"1.3.6.1.5.5.7.3.28\",\"1.3.6.1.5.5.7.3.17\"]}",
         0, GW_EKU_CMC_RA, "1.3.6.1.5.5.7.3.17"},
        {"{\"key_usage\":[],\"server_flag\":false,\"client_flag\":false,\"ext_key_usage_oids\":[\"not an "
         "oid\"]}",
         0, 0, "not an oid"},
        {"{\"key_usage\":\" DigitalSignature , KeyAgreement \",\"server_flag\":false,\"client_flag\":false,"
         "\"ext_key_usage\":\"ClientAuth , ServerAuth\"}",
         KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT, GW_EKU_CLIENT_AUTH | GW_EKU_SERVER_AUTH, ""},
        /* lists longer than are read may grant anything: never read as narrower */
        {"{\"key_usage\":[" R65("\"DigitalSignature\"") "],\"server_flag\":false,\"client_flag\":false}",
         KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION | KU_KEY_ENCIPHERMENT | KU_DATA_ENCIPHERMENT |
             KU_KEY_AGREEMENT | KU_KEY_CERT_SIGN | KU_CRL_SIGN | KU_ENCIPHER_ONLY | KU_DECIPHER_ONLY,
         0, ""},
        {"{\"key_usage\":[],\"server_flag\":false,\"client_flag\":false,\"ext_key_usage\":[" R65(
             "\"ClientAuth\"") "]}",
         0, GW_EKU_CLIENT_AUTH, "ext_key_usage beyond 64 entries"},
    };
    struct gw_role_policy p;
    struct fx f;
    char body[2048];
    char err[GW_ERR_LEN];
    size_t i;

    (void)state;
    fx_init(&f, 5000);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct answer a = {200, body, 0};

        snprintf(body, sizeof(body), "{\"data\":%s}", cases[i].data);
        fake_script(&a, 1);
        assert_int_equal(gw_upstream_role_policy(f.up, "devices", &p, err), 0);
        if (p.key_usage != cases[i].ku || p.ext_key_usage != cases[i].eku ||
            strcmp(p.other_eku, cases[i].other) != 0)
            fail_msg("case %zu: key_usage %#x ext_key_usage %#x other \"%s\"", i, p.key_usage,
                     p.ext_key_usage, p.other_eku);
        gw_role_policy_cleanup(&p);
    }
    fx_cleanup(&f);
}

/* {"data": {"certificate": <|x| as PEM>, "revocation_time": |t|}} into |out|. */
static void cert_answer(char *out, size_t cap, X509 *x, long t)
{
    char *pem = tu_pem_of(x);
    json_object *o = json_object_new_string(pem);

    snprintf(out, cap, "{\"data\":{\"certificate\":%s,\"revocation_time\":%ld}}",
             json_object_to_json_string(o), t);
    json_object_put(o);
    free(pem);
}

/*
 * GET cert/<serial>: the revocation time of the certificate asked about. The answer must be that
 * certificate: Vault answers cert/ca with its CA certificate (a serial 0xca is "ca" in its colon hex),
 * and a revocation time of another certificate says nothing about this one.
 */
static void test_cert_status(void **state)
{
    char good[8192], revoked_ans[8192], other_ans[8192], ca_ans[8192];
    struct {
        struct answer a;
        int rc, revoked;
    } cases[] = {
        {{200, good, 0}, 0, 0},
        {{200, revoked_ans, 0}, 0, 1},
        {{404, "{\"errors\":[]}", 0}, GW_ERR_NOT_FOUND, 0},
        {{404, NO_ROUTE, 0}, GW_ERR_UPSTREAM, 0}, /* not "unknown": the mount is wrong */
        {{200, "{\"data\":{}}", 0}, GW_ERR_UPSTREAM, 0},
        {{503, "{\"errors\":[\"Vault is sealed\"]}", 0}, GW_ERR_BUSY, 0},
        /* a status Vault did not state is not "not revoked" */
        {{200, "{\"data\":{\"certificate\":\"x\"}}", 0}, GW_ERR_UPSTREAM, 0},
        {{200, "{\"data\":{\"certificate\":\"x\",\"revocation_time\":-1}}", 0}, GW_ERR_UPSTREAM, 0},
        {{200, "{\"data\":{\"certificate\":\"x\",\"revocation_time\":\"0\"}}", 0}, GW_ERR_UPSTREAM, 0},
        /* the status of some other certificate: not this one's */
        {{200, "{\"data\":{\"certificate\":\"x\",\"revocation_time\":0}}", 0}, GW_ERR_UPSTREAM, 0},
        {{200, other_ans, 0}, GW_ERR_UPSTREAM, 0},
        {{200, ca_ans, 0}, GW_ERR_UPSTREAM, 0},
    };
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *other = tu_make_cert(k, k, ca_cert, "dev.example.com", 12345); /* same serial and issuer */
    struct fx f;
    char err[GW_ERR_LEN];
    int revoked;
    size_t i;

    (void)state;
    cert_answer(good, sizeof(good), leaf, 0);
    cert_answer(revoked_ans, sizeof(revoked_ans), leaf, 1433269787);
    cert_answer(other_ans, sizeof(other_ans), other, 0);
    cert_answer(ca_ans, sizeof(ca_ans), ca_cert, 0);
    fx_init(&f, 5000);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_script(&cases[i].a, 1);
        if (gw_upstream_cert_status(f.up, leaf, &revoked, err) != cases[i].rc)
            fail_msg("case %zu: %s", i, err);
        assert_int_equal(revoked, cases[i].revoked);
        assert_string_equal(fake_req(0)->path, "/v1/pki/cert/30:39");
    }
    assert_int_equal(gw_upstream_caps(f.up), GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_ROLE_POLICY |
                                                 GW_UP_CERT_STATUS | GW_UP_CRL | GW_UP_CERT_LOOKUP |
                                                 GW_UP_ISSUER_CRLS | GW_UP_CN_IN_SANS);
    fx_cleanup(&f);
    X509_free(other);
    EVP_PKEY_free(k);
}

/*
 * libcurl's allocator, hooked (curl_global_init_mem, before the client's curl_global_init): the
 * copies curl_slist_append makes of "X-Vault-Token: ..." lines are watched, and each must be
 * wiped when it is freed.
 */
#define MAX_WATCHED 256

static struct {
    pthread_mutex_t lock;
    void *p[MAX_WATCHED];
    size_t seen, unwiped;
} watched = {.lock = PTHREAD_MUTEX_INITIALIZER};

static char *hook_strdup(const char *str)
{
    char *d = strdup(str);

    pthread_mutex_lock(&watched.lock);
    if (d != NULL && strncmp(d, "X-Vault-Token:", 14) == 0) {
        watched.seen++;
        for (size_t i = 0; i < MAX_WATCHED; i++)
            if (watched.p[i] == NULL) {
                watched.p[i] = d;
                break;
            }
    }
    pthread_mutex_unlock(&watched.lock);
    return d;
}

static void hook_free(void *ptr)
{
    pthread_mutex_lock(&watched.lock);
    for (size_t i = 0; ptr != NULL && i < MAX_WATCHED; i++)
        if (watched.p[i] == ptr) {
            watched.p[i] = NULL;
            if (strncmp(ptr, "X-Vault-Token:", 14) == 0)
                watched.unwiped++;
        }
    pthread_mutex_unlock(&watched.lock);
    free(ptr);
}

/* The token header lines libcurl copied are wiped before they are freed, on the asynchronous path
 * (a token in hand) and the synchronous one (after a cert login). */
static void test_token_header_wiped(void **state)
{
    struct answer ok = {200, NULL, 0};
    struct gw_sign_result res;
    struct fx f;

    (void)state;
    pthread_mutex_lock(&watched.lock);
    watched.seen = watched.unwiped = 0;
    pthread_mutex_unlock(&watched.lock);
    fx_init(&f, 5000);
    fake_script(&ok, 1);
    sign(&f, &res);
    assert_int_equal(res.status, 0);
    gw_sign_result_cleanup(&res);
    f.vc.token_file = NULL;
    f.vc.auth_cert_mount = "cert";
    fx_restart(&f);
    fake_set_login(
        (struct answer){200, "{\"auth\":{\"client_token\":\"hvb.wiped\",\"lease_duration\":3600}}", 0});
    fake_script(&ok, 1);
    sign(&f, &res);
    assert_int_equal(res.status, 0);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f); /* the transfer thread has freed what it held */
    assert_string_equal(fake_req(fake_n_reqs() - 1)->token, "hvb.wiped");
    pthread_mutex_lock(&watched.lock);
    assert_true(watched.seen >= 2);
    assert_int_equal(watched.unwiped, 0);
    pthread_mutex_unlock(&watched.lock);
}

/*
 * OpenSSL's allocator, hooked (CRYPTO_set_mem_functions, first thing in main): the HTTP client keeps
 * what it receives in OpenSSL's memory, and no block freed through it may still hold SECRET_TOKEN (a
 * realloc frees the old block as it is, so it counts as a free). New blocks are filled first, so
 * that what an earlier owner left in one is not taken for this one's.
 */
#define SECRET_TOKEN "hvs.wipe-me-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

static struct {
    pthread_mutex_t lock;
    size_t client_frees;     /* blocks freed by upstream/http_client.c */
    size_t unwiped;          /* blocks freed with SECRET_TOKEN in them */
    const char *key_bits[8]; /* while set: 16 characters each of a key's PEM text */
    size_t n_key_bits;
    size_t key_unwiped; /* blocks freed with one of |key_bits| in them */
} ossl_mem = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void ossl_mem_freed(void *p, const char *file)
{
    size_t size;

    if (p == NULL)
        return;
    size = malloc_usable_size(p);
    pthread_mutex_lock(&ossl_mem.lock);
    if (file != NULL && strstr(file, "http_client.c") != NULL)
        ossl_mem.client_frees++;
    if (memmem(p, size, SECRET_TOKEN, strlen(SECRET_TOKEN)) != NULL)
        ossl_mem.unwiped++;
    for (size_t i = 0; i < ossl_mem.n_key_bits; i++)
        if (memmem(p, size, ossl_mem.key_bits[i], 16) != NULL) {
            ossl_mem.key_unwiped++;
            break;
        }
    pthread_mutex_unlock(&ossl_mem.lock);
}

static void *ossl_malloc(size_t num, const char *file, int line)
{
    void *p = malloc(num);

    (void)file;
    (void)line;
    if (p != NULL)
        memset(p, 0x5a, malloc_usable_size(p));
    return p;
}

static void *ossl_realloc(void *addr, size_t num, const char *file, int line)
{
    size_t old = addr != NULL ? malloc_usable_size(addr) : 0, now;
    void *p;

    (void)line;
    ossl_mem_freed(addr, file);
    if ((p = realloc(addr, num)) != NULL && (now = malloc_usable_size(p)) > old)
        memset((char *)p + old, 0x5a, now - old);
    return p;
}

static void ossl_free(void *addr, const char *file, int line)
{
    (void)line;
    ossl_mem_freed(addr, file);
    free(addr);
}

/* Runs |f|'s sign against |login| (the cert login's answer) and |script|, then frees the client (its
 * transfer thread is done with every answer): none may be left unwiped, and the client freed some. */
static void sign_then_check(struct fx *f, const struct answer *login, const struct answer *script, int n,
                            const char *what)
{
    struct gw_sign_result res;
    size_t frees, unwiped;

    pthread_mutex_lock(&ossl_mem.lock);
    ossl_mem.client_frees = ossl_mem.unwiped = 0;
    pthread_mutex_unlock(&ossl_mem.lock);
    fx_restart(f);
    fake_set_login(*login);
    fake_script(script, n);
    for (int i = 0; i < (n > 1 ? 2 : 1); i++) { /* the second with the token in hand: the transfer thread's */
        sign(f, &res);
        gw_sign_result_cleanup(&res);
    }
    fx_restart(f);
    pthread_mutex_lock(&ossl_mem.lock);
    frees = ossl_mem.client_frees;
    unwiped = ossl_mem.unwiped;
    pthread_mutex_unlock(&ossl_mem.lock);
    if (unwiped != 0)
        fail_msg("%s: %zu blocks freed with the token in them", what, unwiped);
    if (frees == 0)
        fail_msg("%s: the HTTP client freed no answer of OpenSSL's memory", what);
}

/*
 * What the HTTP client received is wiped before it is freed, however the answer ended: a cert
 * login's answer (a token inside) cut off, too late, too large, refused or complete, on the caller's
 * thread; a sign answer cut off or refused, on the transfer thread.
 */
static void test_answer_wiped(void **state)
{
    static const char login_ok[] =
        "{\"auth\":{\"client_token\":\"" SECRET_TOKEN "\",\"lease_duration\":3600}}";
    static const char refused[] = "{\"errors\":[\"" SECRET_TOKEN "\"]}";
    static const char login_cut[] =
        "{\"auth\":{\"client_token\":\"" SECRET_TOKEN "\",\"lease_duration\":3600}}";
    const struct answer ok = {200, NULL, 0}, good_login = {200, login_ok, 0}, cut = {200, login_cut, 0};
    struct answer big_login = {200, NULL, 0};
    char *big = malloc(GW_MAX_UPSTREAM_BODY + 64);
    struct fx f;

    (void)state;
    fake_set_cut(login_cut, sizeof(login_cut) - 10, 0); /* past the token */
    assert_non_null(big);
    /* the token first, then more than the cap: the buffer grows a few times before it overflows */
    snprintf(big, GW_MAX_UPSTREAM_BODY + 64, "%.*s,\"pad\":\"", (int)strlen(login_ok) - 1, login_ok);
    memset(big + strlen(big), 'a', GW_MAX_UPSTREAM_BODY + 64 - strlen(big) - 3);
    memcpy(big + GW_MAX_UPSTREAM_BODY + 64 - 3, "\"}", 3);
    big_login.body = big;
    fx_init_cert_login(&f, 500);
    sign_then_check(&f, &cut, &ok, 1, "login cut off");
    fake_set_cut(login_cut, sizeof(login_cut) - 10, 1500);
    sign_then_check(&f, &cut, &ok, 1, "login too late");
    fake_set_cut(login_cut, sizeof(login_cut) - 10, 0);
    sign_then_check(&f, &big_login, &ok, 1, "login too large");
    sign_then_check(&f, &(struct answer){403, refused, 0}, &ok, 1, "login refused");
    sign_then_check(&f, &good_login, &ok, 1, "login");
    assert_string_equal(fake_req(0)->token, SECRET_TOKEN);
    sign_then_check(&f, &good_login, (struct answer[]){ok, cut}, 2, "sign cut off");
    sign_then_check(&f, &good_login, (struct answer[]){ok, {500, refused, 0}}, 2, "sign refused");
    assert_int_equal(fake_n_reqs(), 2);
    fx_cleanup(&f);
    fake_set_cut(NULL, 0, 0);
    free(big);
}

/* A TLS server context for the fake, its certificate self-signed for 127.0.0.1; its PEM into |pem|. */
static SSL_CTX *fake_tls_new(char **pem)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = tu_make_cert(key, key, NULL, "127.0.0.1", 7);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "IP:127.0.0.1");
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    assert_non_null(san);
    assert_int_equal(X509_add_ext(x, san, -1), 1);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    /* the fake's own records hold the token too: they must not be taken for the client's */
    SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
    *pem = tu_pem_of(x);
    X509_EXTENSION_free(san);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

/*
 * Over TLS, what OpenSSL decrypted for the client is wiped too: a login's answer, the token inside,
 * stayed in the read buffer of the connection's SSL (OpenSSL's memory, freed when the connection
 * ends) unless its records are cleansed once read. The sign call after it sends the token: what
 * OpenSSL encrypts is not left behind as it was either.
 */
static void test_tls_records_wiped(void **state)
{
    static const char login_ok[] =
        "{\"auth\":{\"client_token\":\"" SECRET_TOKEN "\",\"lease_duration\":3600}}";
    const struct answer ok = {200, NULL, 0}, good_login = {200, login_ok, 0};
    char *pem = NULL;
    struct fx f;

    (void)state;
    fx_init(&f, 5000);
    pthread_mutex_lock(&fake.lock);
    fake.tls = fake_tls_new(&pem);
    pthread_mutex_unlock(&fake.lock);
    snprintf(f.url, sizeof(f.url), "https://127.0.0.1:%u", fake.port);
    f.vc.http.ca_pem = (unsigned char *)pem;
    f.vc.http.ca_pem_len = strlen(pem);
    f.vc.token_file = NULL;
    f.vc.auth_cert_mount = "cert";
    sign_then_check(&f, &good_login, (struct answer[]){ok, ok}, 2, "over TLS");
    assert_string_equal(fake.reqs[0].token, SECRET_TOKEN);
    assert_int_equal(fake.n_logins, 1);
    fx_cleanup(&f);
    pthread_mutex_lock(&fake.lock);
    SSL_CTX_free(fake.tls);
    fake.tls = NULL;
    pthread_mutex_unlock(&fake.lock);
    free(pem);
}

/* The fake's check of a client certificate: any will do, but one there must be (FAIL_IF_NO_PEER_CERT). */
static int any_client_cert(int ok, X509_STORE_CTX *ctx)
{
    (void)ok;
    (void)ctx;
    return 1;
}

/* The 16 characters from the middle and from the end of each base64 line of PEM |text| into |bits|. */
static size_t pem_bits(const char *text, const char **bits, size_t cap)
{
    const char *line, *end;
    size_t n = 0;

    for (line = text; *line != '\0' && n + 2 <= cap; line = *end != '\0' ? end + 1 : end) {
        end = line + strcspn(line, "\n");
        if (line[0] == '-' || end - line < 48)
            continue;
        bits[n++] = line + 32;
        bits[n++] = end - 16;
    }
    return n;
}

/* A GET through a client of |http| without GW_HTTP_SECRETS (a cmp upstream's calls are set up so, by
 * gw_http_setopt_base alone): the HTTP status, 0 when none came. */
static long plain_get(const struct gw_http_conf *http)
{
    struct gw_http_response rsp;
    char err[GW_ERR_LEN] = "";
    struct gw_http_client *c = gw_http_client_new("plain", http, 5000, 0, NULL, err);
    long status;

    assert_non_null(c);
    gw_http_request(c, "GET", "/v1/sys/health", NULL, NULL, &rsp);
    status = rsp.status;
    gw_http_response_cleanup(&rsp);
    gw_http_client_free(c);
    return status;
}

/*
 * A Vault cert login over mTLS, and a call of a client without GW_HTTP_SECRETS: the upstream's client
 * certificate and key reach each new connection as the objects its load checked, so no text of the key
 * is parsed again, by OpenSSL's PEM reader that frees its line buffers as they are (the key was handed to
 * libcurl as PEM, for every connection). The fake refuses a connection without a client certificate:
 * the calls that went through presented it, and without one they do not.
 */
static void test_tls_client_key_text_not_left(void **state)
{
    static const char login_ok[] =
        "{\"auth\":{\"client_token\":\"" SECRET_TOKEN "\",\"lease_duration\":3600}}";
    const struct answer ok = {200, NULL, 0}, good_login = {200, login_ok, 0};
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *cert;
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL, *text, *data;
    struct gw_sign_result res;
    size_t key_unwiped;
    long len;
    struct fx f;

    (void)state;
    assert_non_null(key);
    assert_non_null(b);
    cert = tu_make_cert(key, key, NULL, "gateway", 9);
    /* the key's text, PEM as it was handed to libcurl: what parsing it again would leave */
    assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
    assert_true((len = BIO_get_mem_data(b, &data)) > 0);
    assert_non_null(text = strndup(data, (size_t)len));
    BIO_free(b);
    fx_init(&f, 5000);
    pthread_mutex_lock(&fake.lock);
    fake.tls = fake_tls_new(&pem);
    SSL_CTX_set_verify(fake.tls, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, any_client_cert);
    pthread_mutex_unlock(&fake.lock);
    snprintf(f.url, sizeof(f.url), "https://127.0.0.1:%u", fake.port);
    f.vc.http.ca_pem = (unsigned char *)pem;
    f.vc.http.ca_pem_len = strlen(pem);
    assert_non_null(f.vc.http.client_certs = sk_X509_new_null());
    assert_true(sk_X509_push(f.vc.http.client_certs, cert) > 0);
    f.vc.http.client_key = key;
    f.vc.token_file = NULL;
    f.vc.auth_cert_mount = "cert";
    pthread_mutex_lock(&ossl_mem.lock);
    ossl_mem.n_key_bits = pem_bits(text, ossl_mem.key_bits, 8);
    ossl_mem.key_unwiped = 0;
    pthread_mutex_unlock(&ossl_mem.lock);
    assert_true(ossl_mem.n_key_bits >= 4);
    sign_then_check(&f, &good_login, (struct answer[]){ok, ok}, 2, "over mTLS");
    assert_int_equal(fake.n_logins, 1);
    fake_script(&ok, 1);
    assert_int_equal(plain_get(&f.vc.http), 200);
    pthread_mutex_lock(&ossl_mem.lock);
    key_unwiped = ossl_mem.key_unwiped;
    ossl_mem.n_key_bits = 0;
    pthread_mutex_unlock(&ossl_mem.lock);
    if (key_unwiped != 0)
        fail_msg("%zu blocks freed with the client key's text in them", key_unwiped);
    /* the twin: no client certificate, no connection */
    f.vc.http.client_key = NULL;
    fx_restart(&f);
    sign(&f, &res);
    assert_int_not_equal(res.status, 0);
    assert_int_equal(plain_get(&f.vc.http), 0);
    gw_sign_result_cleanup(&res);
    fx_cleanup(&f);
    pthread_mutex_lock(&fake.lock);
    SSL_CTX_free(fake.tls);
    fake.tls = NULL;
    pthread_mutex_unlock(&fake.lock);
    free(pem);
    free(text);
    sk_X509_pop_free(f.vc.http.client_certs, X509_free);
    EVP_PKEY_free(key);
}

/* GET cert/<serial> for an RA's rr: the certificate itself, exactly one, or nothing. */
static void test_cert_by_serial(void **state)
{
    char *pem = tu_pem_of(leaf), *two = NULL, good[8192], pair[16384];
    struct {
        struct answer a;
        int rc;
    } cases[] = {
        {{200, good, 0}, 0},
        {{404, "{\"errors\":[]}", 0}, GW_ERR_NOT_FOUND},
        {{200, "{\"data\":{\"certificate\":\"x\",\"revocation_time\":0}}", 0}, GW_ERR_UPSTREAM},
        {{200, pair, 0}, GW_ERR_UPSTREAM}, /* two certificates: which one would it be? */
        {{200, "{\"data\":{\"revocation_time\":0}}", 0}, GW_ERR_UPSTREAM},
    };
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    json_object *o, *p2;
    struct fx f;
    char err[GW_ERR_LEN];
    X509 *got;

    (void)state;
    assert_non_null(two = malloc(2 * strlen(pem) + 1));
    snprintf(two, 2 * strlen(pem) + 1, "%s%s", pem, pem);
    o = json_object_new_string(pem);
    p2 = json_object_new_string(two);
    snprintf(good, sizeof(good), "{\"data\":{\"certificate\":%s,\"revocation_time\":0}}",
             json_object_to_json_string(o));
    snprintf(pair, sizeof(pair), "{\"data\":{\"certificate\":%s,\"revocation_time\":0}}",
             json_object_to_json_string(p2));
    ASN1_INTEGER_set(serial, 12345);
    fx_init(&f, 5000);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_script(&cases[i].a, 1);
        if (gw_upstream_cert_by_serial(f.up, serial, &got, err) != cases[i].rc)
            fail_msg("case %zu: %s", i, err);
        assert_string_equal(fake_req(0)->path, "/v1/pki/cert/30:39");
        if (cases[i].rc == 0)
            assert_int_equal(X509_cmp(got, leaf), 0);
        else
            assert_null(got);
        X509_free(got);
    }
    fx_cleanup(&f);
    json_object_put(o);
    json_object_put(p2);
    ASN1_INTEGER_free(serial);
    free(two);
    free(pem);
}

/*
 * An answer that quotes the token its call sent has it masked, but a short token (Vault's dev mode
 * lets one choose "root") inside a longer run of base64, hex or digits is part of other data: a
 * certificate's PEM keeps its bytes, or a sign answer that quotes nothing would lose its certificate. A
 * long token is masked wherever it is, glued to other text too.
 */
static void test_token_mask(void **state)
{
    static const struct {
        const char *tok, *body, *want;
    } cases[] = {
        {"root", "{\"errors\":[\"bad request for token root\"]}",
         "{\"errors\":[\"bad request for token ****\"]}"},
        {"root", "root", "****"},
        {"root", "X-Vault-Token: root\r\nroot", "X-Vault-Token: ****\r\n****"},
        {"root", "token=root&b, invalid token root.", "token=****&b, invalid token ****."},
        {"root", "{\"certificate\":\"MIIBroot+q/rootZ\\nrootAB/x+root\\n==\"}",
         "{\"certificate\":\"MIIBroot+q/rootZ\\nrootAB/x+root\\n==\"}"},
        {"root", "rootroot 1root root2", "rootroot 1root root2"},
        {"hvs.CAESIGatewayTokenForE2E", "Bearerhvs.CAESIGatewayTokenForE2Ex hvs.CAESIGatewayTokenForE2E",
         "Bearer***************************x ***************************"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *body = strdup(cases[i].body);
        struct gw_http_response rsp = {.body = body, .body_len = strlen(body)};

        assert_non_null(body);
        vault_mask_token(&rsp, cases[i].tok);
        if (strcmp(body, cases[i].want) != 0)
            fail_msg("case %zu: \"%s\", not \"%s\"", i, body, cases[i].want);
        free(body);
    }
}

/*
 * An answer may quote the token with JSON escapes ("\u0068vs."), which the mask of its body does not
 * see and json-c decodes into the token itself: the strings parsed from it are masked too, before a
 * message cuts them, or a cut would leave the token's first characters. Each case is a short token
 * (masked as a word of its own) and a long one; whole and partial escapes. Once, a sign's reason, a
 * revocation's, a role's and a sign answer's warnings quoted the token.
 */
static void test_token_escaped_masked(void **state)
{
    static const char *const toks[] = {"hvs.first", "hvs.CAESIEscapedGatewayTokenE2E"};
    static const size_t steps[] = {1, 3};
    char tok_file[64], esc[256], body[1024], issued[8192], err[GW_ERR_LEN], pad[141];
    const char *w;
    struct gw_vault_signed sig;
    struct gw_role_policy p;
    struct gw_sign_result res;
    struct fx f;

    (void)state;
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (size_t t = 0; t < sizeof(toks) / sizeof(toks[0]); t++) {
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            const char *e = escaped(toks[t], steps[s], esc, sizeof(esc));

            fx_init(&f, 5000);
            snprintf(tok_file, sizeof(tok_file), "%s\n", toks[t]);
            write_token(tok_file);
            fx_restart(&f); /* the token file is read at start */
            /* the error a client is told: Vault's message quoted in the statusString */
            snprintf(body, sizeof(body), "{\"errors\":[\"bad request for token %s\"]}", e);
            fake_script(&(struct answer){400, body, 0}, 1);
            sign(&f, &res);
            assert_string_equal(fake_req(0)->token, toks[t]);
            if (strstr(res.reason, "hvs.") != NULL || strstr(res.reason, "for token ****") == NULL)
                fail_msg("%s step %zu: reason \"%s\"", toks[t], steps[s], res.reason);
            gw_sign_result_cleanup(&res);
            /* cut at GW_MAX_VAULT_QUOTE inside the token: none of it is left (a 404's reason, whose words
               around the quote are as long as a 403's, with three bytes fewer of pad before the token: a 403
               that is not Vault's own is not quoted) */
            snprintf(body, sizeof(body), "{\"errors\":[\"%.*s %s is expiring\"]}", (int)sizeof(pad) - 4, pad,
                     e);
            fake_script(&(struct answer){404, body, 0}, 1);
            sign(&f, &res);
            if (strstr(res.reason, "hvs.") != NULL || strstr(res.reason, "x ****") == NULL)
                fail_msg("%s step %zu: cut reason \"%s\"", toks[t], steps[s], res.reason);
            gw_sign_result_cleanup(&res);
            /* a sign answer's warnings without a certificate, and with one (they are logged) */
            snprintf(body, sizeof(body), "{\"data\":null,\"warnings\":[\"token %s expires soon\"]}", e);
            fake_script(&(struct answer){200, body, 0}, 1);
            sign(&f, &res);
            if (strstr(res.reason, "hvs.") != NULL || strstr(res.reason, "token ****") == NULL)
                fail_msg("%s step %zu: warnings reason \"%s\"", toks[t], steps[s], res.reason);
            gw_sign_result_cleanup(&res);
            assert_non_null(w = strstr(ok_body, "\"warnings\": null"));
            snprintf(issued, sizeof(issued), "%.*s\"warnings\": [\"token %s\"] }", (int)(w - ok_body),
                     ok_body, e);
            assert_int_equal(gw_vault_parse_sign(issued, strlen(issued), toks[t], &sig, err), 0);
            if (strstr(sig.warnings, "hvs.") != NULL || strstr(sig.warnings, "token ****") == NULL)
                fail_msg("%s step %zu: warnings \"%s\"", toks[t], steps[s], sig.warnings);
            gw_vault_signed_cleanup(&sig);
            /* a revocation's warnings, and a role's fields, which the policy's reasons name */
            snprintf(body, sizeof(body), "{\"data\":null,\"warnings\":[\"token %s; expired\"]}", e);
            fake_script(&(struct answer){200, body, 0}, 1);
            assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_KEY_COMPROMISE, err), GW_ERR_REFUSED);
            if (strstr(err, "hvs.") != NULL || strstr(err, "token ****") == NULL)
                fail_msg("%s step %zu: revoke \"%s\"", toks[t], steps[s], err);
            snprintf(body, sizeof(body), "{\"data\":{\"max_ttl\":\"%s\"}}", e);
            fake_script(&(struct answer){200, body, 0}, 1);
            assert_int_equal(gw_upstream_role_policy(f.up, "web", &p, err), GW_ERR_UPSTREAM);
            if (strstr(err, "hvs.") != NULL || strstr(err, "the string \"****") == NULL)
                fail_msg("%s step %zu: role \"%s\"", toks[t], steps[s], err);
            snprintf(body, sizeof(body), "{\"data\":{\"ext_key_usage\":[\"%s\"]}}", e);
            fake_script(&(struct answer){200, body, 0}, 1);
            assert_int_equal(gw_upstream_role_policy(f.up, "web", &p, err), 0);
            if (strstr(p.other_eku, "hvs.") != NULL || strncmp(p.other_eku, "****", 4) != 0)
                fail_msg("%s step %zu: other_eku \"%s\"", toks[t], steps[s], p.other_eku);
            gw_role_policy_cleanup(&p);
            fx_cleanup(&f);
        }
    }
    write_token("hvs.first\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_role),
        cmocka_unit_test(test_cert_by_serial),
        cmocka_unit_test(test_sign_verbatim_usages),
        cmocka_unit_test(test_sign_paths),
        cmocka_unit_test(test_sign_bad_names),
        cmocka_unit_test(test_sign_long_san_lists),
        cmocka_unit_test(test_sign_chain_from_issuing_ca),
        cmocka_unit_test(test_sign_chain_parsed_once),
        cmocka_unit_test(test_sign_errors),
        cmocka_unit_test(test_map_error_long_message),
        cmocka_unit_test(test_sign_answer_out_of_range),
        cmocka_unit_test(test_sign_answer_unread),
        cmocka_unit_test(test_sign_answer_over_cap),
        cmocka_unit_test(test_sign_other_2xx),
        cmocka_unit_test(test_sign_retry_then_ok),
        cmocka_unit_test(test_sign_503_not_vaults),
        cmocka_unit_test(test_sign_refusals_not_vaults),
        cmocka_unit_test(test_sign_timeout_not_retried),
        cmocka_unit_test(test_sign_not_resent_on_a_reused_connection),
        cmocka_unit_test(test_sign_retry_bounded_by_deadline),
        cmocka_unit_test(test_call_bounded_by_timeout),
        cmocka_unit_test(test_sign_retry_heard_late),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_oversized_answer),
        cmocka_unit_test(test_token_reread_on_403),
        cmocka_unit_test(test_token_file_bad),
        cmocka_unit_test(test_init_without_a_thread_key),
        cmocka_unit_test(test_cert_login_single_flight),
        cmocka_unit_test(test_cert_login_outlives_its_starter),
        cmocka_unit_test(test_cert_login_refused),
        cmocka_unit_test(test_cert_login_refusal_masked),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_revoke_no_route),
        cmocka_unit_test(test_revoke_until),
        cmocka_unit_test(test_revoke_end_lowered),
        cmocka_unit_test(test_probe_end_lowered),
        cmocka_unit_test(test_revoke_login_wait_end_lowered),
        cmocka_unit_test(test_revoke_retry_not_sent),
        cmocka_unit_test(test_revoke_backoff_end_lowered),
        cmocka_unit_test(test_reasons_cut_between_characters),
        cmocka_unit_test(test_login_reasons_cut_between_characters),
        cmocka_unit_test(test_role_policy),
        cmocka_unit_test(test_role_policy_grants),
        cmocka_unit_test(test_cert_status),
        cmocka_unit_test(test_token_header_wiped),
        cmocka_unit_test(test_answer_wiped),
        cmocka_unit_test(test_tls_records_wiped),
        cmocka_unit_test(test_tls_client_key_text_not_left),
        cmocka_unit_test(test_token_mask),
        cmocka_unit_test(test_token_escaped_masked),
    };

    if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1)
        return 1; /* OpenSSL allocated before: the hooks would see only part of its blocks */
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, hook_free, realloc, hook_strdup, calloc) !=
        CURLE_OK)
        return 1;
    return cmocka_run_group_tests(tests, global_setup, global_teardown);
}
