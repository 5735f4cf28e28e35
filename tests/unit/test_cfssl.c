/*
 * Unit tests for upstream/cfssl.c against a scripted cfssl on loopback: the exact request bytes
 * (sign, authsign HMAC, revoke), and every kind of answer (success, policy and CSR refusals,
 * authentication problems, 5xx, garbage, truncation, timeout, a certificate from another CA,
 * cfssl down at start).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "base/clock.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "upstream/upstream.h"
#include "upstream/upstream_test.h"
#include "tests/unit/testutil.h"
#include "tests/unit/testsign.h"

#define TIMEOUT_MS 400
/* for what the test waits on, a call's end, the fake's threads' (a loaded sanitizer build is slow) */
#define WAIT_S 30
#define MAX_REQS 8
#define REQ_MAX (256 * 1024)

static const unsigned char auth_key[] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                         0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};

/* ---- crypto fixtures ---- */

static EVP_PKEY *ca_key, *other_ca_key, *leaf_key;
static X509 *ca, *other_ca, *leaf, *foreign_leaf;
static X509_REQ *csr;
static char *ca_pem, *leaf_pem, *foreign_leaf_pem, *csr_pem_str;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *e;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    assert_non_null(e = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value));
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

static X509_NAME *cn_name(const char *cn)
{
    X509_NAME *n = X509_NAME_new();

    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    return n;
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, long serial)
{
    X509 *x = X509_new();
    X509_NAME *name = cn_name(cn);

    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
    X509_set_pubkey(x, key);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    if (issuer == NULL) {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_subject_key_identifier, "hash");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, issuer, NID_authority_key_identifier, "keyid");
    }
    assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
    X509_NAME_free(name);
    return x;
}

static char *pem_of(X509 *x, X509_REQ *r)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *out;
    long n;

    assert_int_equal(x != NULL ? PEM_write_bio_X509(bio, x) : PEM_write_bio_X509_REQ(bio, r), 1);
    n = BIO_get_mem_data(bio, &data);
    out = strndup(data, (size_t)n);
    BIO_free(bio);
    return out;
}

/* A JSON string literal for |s| (PEM newlines escaped). */
static char *json_quote(const char *s)
{
    json_object *o = json_object_new_string(s);
    char *out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));

    json_object_put(o);
    return out;
}

/* ---- the scripted cfssl ---- */

struct reply {
    int status;
    const char *ctype;
    const char *body;
    int delay_ms; /* or HELD */
};

#define HELD -1 /* a reply's delay_ms: answered once the test lets it go (srv_release), not before */

struct request {
    char path[128];
    char *body;
};

/*
 * The test's thread and the server's threads meet only through the socket, an ordering
 * ThreadSanitizer does not see: the replies and the requests are read and written under |lock| alone,
 * the test's side through srv_set, srv_n_reqs, srv_req and clear_requests. The replies' bodies are
 * the server's copies, replaced once no connection thread is left (srv_settle): a connection thread
 * never reads the test's buffers, which the test rewrites or leaves on its stack.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t idle;    /* |active| fell to 0 */
    pthread_cond_t release; /* |released| became true */
    bool released;          /* held replies may go */
    pthread_t thread;
    int fd;
    int port;
    atomic_int stop;
    int active; /* connection threads not yet ended */
    struct reply sign, info, revoke[2];
    struct reply sign_foreign; /* for a sign request with "profile": "foreign", when set */
    int n_revoke;
    struct request reqs[MAX_REQS];
    int n_reqs;
} srv;

static char *info_ok_body, *sign_ok_body, *sign_foreign_body;

static void record(const char *path, const char *body)
{
    pthread_mutex_lock(&srv.lock);
    if (srv.n_reqs < MAX_REQS) {
        snprintf(srv.reqs[srv.n_reqs].path, sizeof(srv.reqs[0].path), "%s", path);
        srv.reqs[srv.n_reqs].body = strdup(body);
        srv.n_reqs++;
    }
    pthread_mutex_unlock(&srv.lock);
}

static void clear_requests(void)
{
    pthread_mutex_lock(&srv.lock);
    for (int i = 0; i < srv.n_reqs; i++)
        free(srv.reqs[i].body);
    srv.n_reqs = 0;
    srv.n_revoke = 0;
    pthread_mutex_unlock(&srv.lock);
}

/*
 * Waits, lock held, until every connection thread has ended: none reads a reply any more. Past WAIT_S
 * the test fails, the lock let go.
 */
static void srv_settle(void)
{
    struct timespec until = tu_deadline(WAIT_S);

    while (srv.active > 0 && tu_wait_until(&srv.idle, &srv.lock, &until) == 0)
        ;
    if (srv.active == 0)
        return;
    pthread_mutex_unlock(&srv.lock);
    fail_msg("the fake cfssl's connection threads did not end within WAIT_S");
}

/* |reply| (srv.sign, srv.info, ...) becomes a copy of |r| for the requests from now on. */
static void srv_set(struct reply *reply, struct reply r)
{
    pthread_mutex_lock(&srv.lock);
    srv_settle();
    if (r.delay_ms == HELD)
        srv.released = false;
    free((char *)reply->body);
    *reply = r;
    if (r.body != NULL)
        assert_non_null(reply->body = strdup(r.body));
    pthread_mutex_unlock(&srv.lock);
}

/* The held replies (delay_ms HELD) go now, and any held from now on at once. */
static void srv_release(void)
{
    pthread_mutex_lock(&srv.lock);
    srv.released = true;
    pthread_cond_broadcast(&srv.release);
    pthread_mutex_unlock(&srv.lock);
}

/* A connection thread's wait for srv_release, at most WAIT_S: a test that fails first leaves none behind. */
static void srv_hold(void)
{
    struct timespec until = tu_deadline(WAIT_S);

    pthread_mutex_lock(&srv.lock);
    while (!srv.released && tu_wait_until(&srv.release, &srv.lock, &until) == 0)
        ;
    pthread_mutex_unlock(&srv.lock);
}

static int srv_n_reqs(void)
{
    int n;

    pthread_mutex_lock(&srv.lock);
    n = srv.n_reqs;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

/* A copy of the |i|th request the server saw; its body is the server's until clear_requests. */
static const struct request *srv_req(int i)
{
    static struct request copy[MAX_REQS]; /* the test's thread's alone */

    assert_true(i >= 0 && i < MAX_REQS);
    pthread_mutex_lock(&srv.lock);
    copy[i] = srv.reqs[i];
    pthread_mutex_unlock(&srv.lock);
    return &copy[i];
}

static struct reply pick(const char *path, const char *body)
{
    struct reply r = {404, "text/plain", "404 page not found\n", 0};

    pthread_mutex_lock(&srv.lock);
    if (strcmp(path, "/api/v1/cfssl/info") == 0)
        r = srv.info;
    else if (strcmp(path, "/api/v1/cfssl/sign") == 0 || strcmp(path, "/api/v1/cfssl/authsign") == 0)
        r = srv.sign_foreign.body != NULL && strstr(body, "\"profile\":\"foreign\"") != NULL
                ? srv.sign_foreign
                : srv.sign;
    else if (strcmp(path, "/api/v1/cfssl/revoke") == 0)
        r = srv.revoke[srv.n_revoke < 2 ? srv.n_revoke++ : 1];
    pthread_mutex_unlock(&srv.lock);
    return r;
}

/* Reads one request (headers + Content-Length body) into |buf|; returns the body or NULL. */
static char *read_request(int fd, char *buf, size_t cap, char *path, size_t path_cap)
{
    size_t len = 0, want = 0;
    char *hdr_end = NULL, *cl, *sp;

    while (len < cap - 1) {
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);

        if (n <= 0)
            return NULL;
        len += (size_t)n;
        buf[len] = '\0';
        if (hdr_end == NULL && (hdr_end = strstr(buf, "\r\n\r\n")) != NULL) {
            *hdr_end = '\0';
            cl = strcasestr(buf, "\r\nContent-Length:");
            want = cl != NULL ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
            hdr_end += 4;
        }
        if (hdr_end != NULL && (size_t)(buf + len - hdr_end) >= want)
            break;
    }
    if (hdr_end == NULL || (sp = strchr(buf, ' ')) == NULL)
        return NULL;
    snprintf(path, path_cap, "%.*s", (int)strcspn(sp + 1, " "), sp + 1);
    hdr_end[want] = '\0';
    return hdr_end;
}

/* One connection, on a thread of its own: a slow answer holds up no other request. */
static void *serve_one(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(REQ_MAX);
    char path[128], head[256];
    char *body = buf != NULL ? read_request(fd, buf, REQ_MAX, path, sizeof(path)) : NULL;
    struct reply r;

    if (body == NULL)
        goto out;
    record(path, body);
    r = pick(path, body);
    if (r.status == -1) /* the request read, the connection closed without an answer */
        goto out;
    if (r.delay_ms > 0)
        usleep((useconds_t)r.delay_ms * 1000);
    if (r.delay_ms == HELD)
        srv_hold();
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
             r.status, r.ctype, strlen(r.body));
    send(fd, head, strlen(head), MSG_NOSIGNAL);
    send(fd, r.body, strlen(r.body), MSG_NOSIGNAL);
out:
    free(buf);
    close(fd);
    pthread_mutex_lock(&srv.lock);
    if (--srv.active == 0)
        pthread_cond_broadcast(&srv.idle);
    pthread_mutex_unlock(&srv.lock);
    return NULL;
}

static void *serve(void *arg)
{
    (void)arg;
    while (!atomic_load(&srv.stop)) {
        struct pollfd p = {.fd = srv.fd, .events = POLLIN};
        int c;

        if (poll(&p, 1, 50) <= 0)
            continue;
        pthread_t t;

        if ((c = accept(srv.fd, NULL, NULL)) < 0)
            continue;
        pthread_mutex_lock(&srv.lock);
        srv.active++;
        pthread_mutex_unlock(&srv.lock);
        if (pthread_create(&t, NULL, serve_one, (void *)(intptr_t)c) == 0) {
            pthread_detach(t);
            continue;
        }
        close(c);
        pthread_mutex_lock(&srv.lock);
        srv.active--;
        pthread_mutex_unlock(&srv.lock);
    }
    return NULL;
}

/* A loopback socket bound to a free port; listening if |listen_too|. */
static int bound_socket(int *port, int listen_too)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    if (listen_too)
        assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static char *envelope_ok(const char *cert_pem)
{
    char *q = json_quote(cert_pem);
    size_t n = strlen(q) + 128;
    char *out = malloc(n);

    snprintf(out, n, "{\"success\":true,\"result\":{\"certificate\":%s},\"errors\":[],\"messages\":[]}\n", q);
    free(q);
    return out;
}

static int setup(void **state)
{
    (void)state;
    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    other_ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ca = make_cert("cfssl test CA", ca_key, NULL, ca_key, 1);
    other_ca = make_cert("another CA", other_ca_key, NULL, other_ca_key, 2);
    leaf = make_cert("dev1.example.com", leaf_key, ca, ca_key, 0x1234567890L);
    foreign_leaf = make_cert("dev1.example.com", leaf_key, other_ca, other_ca_key, 77);
    csr = X509_REQ_new();
    X509_NAME *n = cn_name("dev1.example.com");
    X509_REQ_set_subject_name(csr, n);
    X509_NAME_free(n);
    X509_REQ_set_pubkey(csr, leaf_key);
    assert_true(X509_REQ_sign(csr, leaf_key, EVP_sha256()) > 0);
    ca_pem = pem_of(ca, NULL);
    leaf_pem = pem_of(leaf, NULL);
    foreign_leaf_pem = pem_of(foreign_leaf, NULL);
    csr_pem_str = pem_of(NULL, csr);
    info_ok_body = envelope_ok(ca_pem);
    sign_ok_body = envelope_ok(leaf_pem);
    sign_foreign_body = envelope_ok(foreign_leaf_pem);

    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.idle, NULL);
    pthread_cond_init(&srv.release, NULL);
    srv.fd = bound_socket(&srv.port, 1);
    srv_set(&srv.info, (struct reply){200, "application/json", info_ok_body, 0});
    assert_int_equal(pthread_create(&srv.thread, NULL, serve, NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&srv.stop, 1);
    pthread_join(srv.thread, NULL);
    close(srv.fd);
    clear_requests();
    pthread_mutex_lock(&srv.lock);
    srv_settle(); /* no connection thread sends a reply any more */
    free((char *)srv.sign.body), free((char *)srv.info.body), free((char *)srv.sign_foreign.body);
    free((char *)srv.revoke[0].body), free((char *)srv.revoke[1].body);
    pthread_mutex_unlock(&srv.lock);
    pthread_cond_destroy(&srv.idle);
    pthread_cond_destroy(&srv.release);
    pthread_mutex_destroy(&srv.lock);
    X509_free(ca), X509_free(other_ca), X509_free(leaf), X509_free(foreign_leaf);
    X509_REQ_free(csr);
    EVP_PKEY_free(ca_key), EVP_PKEY_free(other_ca_key), EVP_PKEY_free(leaf_key);
    free(ca_pem), free(leaf_pem), free(foreign_leaf_pem), free(csr_pem_str);
    free(info_ok_body), free(sign_ok_body), free(sign_foreign_body);
    return 0;
}

/* ---- the adapter under test ---- */

struct fixture {
    char url[64];
    struct gw_upstream_conf conf;
    struct gw_cfssl_conf cc; /* conf's section */
    struct gw_role role;
    struct gw_cert_plan plan;
    struct gw_upstream *up;
};

static void fixture_init(struct fixture *f, int port, int with_auth_key)
{
    char err[GW_ERR_LEN] = "";

    memset(f, 0, sizeof(*f));
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", port);
    f->conf.name = "cf";
    f->conf.ops = &gw_upstream_cfssl_ops;
    f->conf.impl = &f->cc;
    f->cc.http.url = f->url;
    f->conf.timeout_ms = TIMEOUT_MS;
    if (with_auth_key) {
        f->cc.auth_key = (unsigned char *)auth_key;
        f->cc.auth_key_len = sizeof(auth_key);
    }
    f->role.name = "devices";
    f->role.upstream_role = "client";
    gw_cert_plan_init(&f->plan);
    f->plan.pubkey = leaf_key;
    f->plan.subject = NULL;
    srv_set(&srv.info, (struct reply){200, "application/json", info_ok_body, 0});
    clear_requests();
    f->up = gw_upstream_new(&f->conf, NULL, err);
    assert_non_null(f->up);
    assert_string_equal(err, "");
}

/* fixture_init with "issuer_ca": cfssl's CA, whose certificates alone it is asked to revoke. */
static void fixture_init_revoking(struct fixture *f, int port)
{
    static STACK_OF(X509) *issuer_ca; /* kept for the process; |ca| is borrowed */
    char err[GW_ERR_LEN] = "";

    fixture_init(f, port, 0);
    gw_upstream_free(f->up);
    if (issuer_ca == NULL)
        sk_X509_push(issuer_ca = sk_X509_new_null(), ca);
    f->conf.issuer_certs = issuer_ca;
    clear_requests(); /* the first upstream's info call: the tests count this one's */
    assert_non_null(f->up = gw_upstream_new(&f->conf, NULL, err));
}

static void fixture_cleanup(struct fixture *f)
{
    gw_upstream_free(f->up);
    GENERAL_NAMES_free(f->plan.sans);
}

static void add_san(struct fixture *f, int type, const char *value)
{
    GENERAL_NAME *gn = a2i_GENERAL_NAME(NULL, NULL, NULL, type, value, 0);

    assert_non_null(gn);
    if (f->plan.sans == NULL)
        f->plan.sans = GENERAL_NAMES_new();
    sk_GENERAL_NAME_push(f->plan.sans, gn);
}

/* The adapter's completion, on whichever thread it completes. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct gw_sign_result *res;
} done_at = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL};

static void on_done(void *arg, struct gw_sign_result *res)
{
    (void)arg;
    pthread_mutex_lock(&done_at.lock);
    done_at.res = res;
    pthread_cond_signal(&done_at.cond);
    pthread_mutex_unlock(&done_at.lock);
}

/*
 * Signs through the adapter with |csr_or_null| and waits for its completion (on its transfer
 * thread, or inside sign), at most WAIT_S; the caller frees the result.
 */
static struct gw_sign_result *sign(struct fixture *f, const X509_REQ *r)
{
    struct gw_sign_req req = {.role = &f->role, .plan = &f->plan, .csr = r, .request_id = "00ff"};
    struct timespec until;
    struct gw_sign_result *res;

    done_at.res = NULL;
    assert_int_equal(gw_upstream_cfssl_ops.sign(f->up, &req, on_done, NULL), 0);
    until = tu_deadline(WAIT_S);
    pthread_mutex_lock(&done_at.lock);
    while (done_at.res == NULL && tu_wait_until(&done_at.cond, &done_at.lock, &until) == 0)
        ;
    res = done_at.res;
    pthread_mutex_unlock(&done_at.lock);
    if (res == NULL) /* the call still uses |f| */
        tu_end_run("the sign call did not complete within WAIT_S");
    return res;
}

static void result_free(struct gw_sign_result *res)
{
    gw_sign_result_cleanup(res);
    free(res);
}

static json_object *request_json(int i)
{
    json_object *o;

    assert_true(i < srv_n_reqs());
    assert_non_null(o = json_tokener_parse(srv_req(i)->body));
    return o;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;

    assert_true(json_object_object_get_ex(o, key, &v));
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

/* ---- tests ---- */

static void test_caps(void **state)
{
    (void)state;
    assert_int_equal(gw_upstream_cfssl_ops.caps,
                     GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_CRL | GW_UP_REVOKE_REASON);
    assert_non_null(gw_upstream_cfssl_ops.revoke);
    assert_null(gw_upstream_cfssl_ops.role_policy);
}

/* sign: the CSR goes unchanged, the profile is the role's upstream_role, hosts are the plan's SANs. */
static void test_sign_ok_request_bytes(void **state)
{
    struct fixture f;
    struct gw_sign_result *res;
    json_object *req, *hosts;
    static const char *const want_hosts[] = {"a.example.com", "192.0.2.1", "2001:db8::1", "x@example.com"};

    (void)state;
    srv_set(&srv.sign, (struct reply){200, "application/json", sign_ok_body, 0});
    fixture_init(&f, srv.port, 0);
    add_san(&f, GEN_DNS, "a.example.com");
    add_san(&f, GEN_IPADD, "192.0.2.1");
    add_san(&f, GEN_IPADD, "2001:db8::1");
    add_san(&f, GEN_EMAIL, "x@example.com");
    res = sign(&f, csr);
    assert_int_equal(res->status, 0);
    assert_int_equal(X509_cmp(res->cert, leaf), 0);
    assert_int_equal(sk_X509_num(res->chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(res->chain, 0), ca), 0);
    /* requests: info at init, then sign */
    assert_int_equal(srv_n_reqs(), 2);
    assert_string_equal(srv_req(0)->path, "/api/v1/cfssl/info");
    assert_string_equal(srv_req(1)->path, "/api/v1/cfssl/sign");
    req = request_json(1);
    assert_string_equal(jstr(req, "certificate_request"), csr_pem_str);
    assert_string_equal(jstr(req, "profile"), "client");
    assert_true(json_object_object_get_ex(req, "hosts", &hosts));
    assert_int_equal(json_object_array_length(hosts), 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(json_object_get_string(json_object_array_get_idx(hosts, i)), want_hosts[i]);
    json_object_put(req);
    result_free(res);
    fixture_cleanup(&f);
}

/* No SANs in the plan: "hosts" is still sent, empty, or cfssl would copy the CSR's SANs. */
static void test_sign_no_sans_sends_empty_hosts(void **state)
{
    struct fixture f;
    struct gw_sign_result *res;
    json_object *req, *hosts;

    (void)state;
    srv_set(&srv.sign, (struct reply){200, "application/json", sign_ok_body, 0});
    fixture_init(&f, srv.port, 0);
    f.role.upstream_role = NULL; /* the profile defaults to the role name */
    res = sign(&f, csr);
    assert_int_equal(res->status, 0);
    req = request_json(1);
    assert_string_equal(jstr(req, "profile"), "devices");
    assert_true(json_object_object_get_ex(req, "hosts", &hosts));
    assert_true(json_object_is_type(hosts, json_type_array));
    assert_int_equal(json_object_array_length(hosts), 0);
    json_object_put(req);
    result_free(res);
    fixture_cleanup(&f);
}

/* A SAN cfssl cannot express (it would turn a URI into a DNS name) is refused before any call. */
static void test_sign_uri_san_refused(void **state)
{
    struct fixture f;
    struct gw_sign_result *res;

    (void)state;
    fixture_init(&f, srv.port, 0);
    add_san(&f, GEN_DNS, "a.example.com");
    add_san(&f, GEN_URI, "spiffe://example.org/x");
    res = sign(&f, csr);
    assert_int_equal(res->status, GW_ERR_POLICY);
    assert_int_equal(res->fail_info, OSSL_CMP_PKIFAILUREINFO_badCertTemplate);
    assert_non_null(strstr(res->reason, "only DNS names, IP addresses and email"));
    assert_int_equal(srv_n_reqs(), 1); /* info only */
    assert_null(res->cert);
    result_free(res);
    fixture_cleanup(&f);
}

/* CRMF (no CSR) never reaches cfssl. */
static void test_sign_crmf_refused(void **state)
{
    struct fixture f;
    struct gw_sign_result *res;

    (void)state;
    fixture_init(&f, srv.port, 0);
    res = sign(&f, NULL);
    assert_int_equal(res->fail_info, OSSL_CMP_PKIFAILUREINFO_badRequest);
    assert_non_null(strstr(res->reason, "send p10cr"));
    assert_int_equal(srv_n_reqs(), 1);
    result_free(res);
    fixture_cleanup(&f);
}

/* authsign: token = HMAC-SHA256(key, REQ) over exactly the bytes of "request". */
static void test_authsign_token(void **state)
{
    struct fixture f;
    struct gw_sign_result *res;
    json_object *outer, *inner;
    unsigned char reqbuf[8192], tokbuf[64], mac[32];
    unsigned int mac_len = 0;
    int req_len, tok_len;
    const char *req_b64, *tok_b64;

    (void)state;
    srv_set(&srv.sign, (struct reply){200, "application/json", sign_ok_body, 0});
    fixture_init(&f, srv.port, 1);
    add_san(&f, GEN_DNS, "s.example.com");
    res = sign(&f, csr);
    assert_int_equal(res->status, 0);
    assert_string_equal(srv_req(1)->path, "/api/v1/cfssl/authsign");
    outer = request_json(1);
    req_b64 = jstr(outer, "request");
    tok_b64 = jstr(outer, "token");
    assert_true(strlen(req_b64) < sizeof(reqbuf) * 3 / 4);
    req_len = EVP_DecodeBlock(reqbuf, (const unsigned char *)req_b64, (int)strlen(req_b64));
    tok_len = EVP_DecodeBlock(tokbuf, (const unsigned char *)tok_b64, (int)strlen(tok_b64));
    assert_true(req_len > 0);
    assert_int_equal(tok_len, 33); /* 32 bytes, padded to a multiple of 3 by DecodeBlock */
    while (req_len > 0 && reqbuf[req_len - 1] == '\0')
        req_len--; /* DecodeBlock keeps the padding bytes as NULs */
    HMAC(EVP_sha256(), auth_key, sizeof(auth_key), reqbuf, (size_t)req_len, mac, &mac_len);
    assert_memory_equal(mac, tokbuf, 32);
    reqbuf[req_len] = '\0';
    assert_non_null(inner = json_tokener_parse((const char *)reqbuf));
    assert_string_equal(jstr(inner, "profile"), "client");
    assert_string_equal(jstr(inner, "certificate_request"), csr_pem_str);
    /* the key itself is not in the request */
    assert_null(strstr(srv_req(1)->body, "00112233445566778899aabbccddeeff"));
    json_object_put(inner);
    json_object_put(outer);
    result_free(res);
    fixture_cleanup(&f);
}

/* Every kind of answer to a sign call -> status, failInfo and the words the reason must carry. */
static const struct {
    const char *name;
    struct reply reply;
    int status;
    int fail_info;
    const char *reason1, *reason2;
} answers[] = {
    {"policy whitelist",
     {400, "text/plain; charset=utf-8",
      "{\"success\":false,\"result\":null,\"errors\":[{\"code\":5500,\"message\":\"Request does not match "
      "policy "
      "whitelist\"}],\"messages\":[]}\n",
      0},
     GW_ERR_POLICY,
     OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
     "Request does not match policy whitelist",
     "5500"},
    {"csr decode",
     {400, "text/plain; charset=utf-8",
      "{\"success\":false,\"result\":null,\"errors\":[{\"code\":9002,\"message\":\"CSR Decode failed\"}]}",
      0},
     GW_ERR_POLICY,
     OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
     "cfssl refused the CSR: CSR Decode failed",
     "(code 9002)"},
    {"authentication required",
     {400, "text/plain; charset=utf-8",
      "{\"success\":false,\"result\":null,\"errors\":[{\"code\":400,\"message\":\"authentication "
      "required\"}]}",
      0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemUnavail,
     "operator problem: the cfssl profile has an auth_key; set auth_key_file on the upstream: authentication "
     "required (code 400)",
     "cfssl cf: operator problem: "},
    {"invalid token",
     {400, "text/plain", "{\"success\":false,\"errors\":[{\"code\":400,\"message\":\"invalid token\"}]}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemUnavail,
     "operator problem: auth_key_file does not match the cfssl profile's auth_key: invalid token (code 400)",
     "cfssl cf: operator problem: "},
    {"no provider",
     {400, "text/plain",
      "{\"success\":false,\"errors\":[{\"code\":400,\"message\":\"no authentication provider\"}]}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemUnavail,
     "operator problem: the cfssl profile has no auth_key; remove auth_key_file or add one: no "
     "authentication "
     "provider (code 400)",
     "cfssl cf: operator problem: "},
    {"7100",
     {400, "text/plain", "{\"success\":false,\"errors\":[{\"code\":7100,\"message\":\"bad auth\"}]}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemUnavail,
     "operator problem: the gateway's cfssl authentication failed: bad auth (code 7100)",
     "cfssl cf: operator problem: "},
    {"other 400 message",
     {400, "text/plain", "{\"success\":false,\"errors\":[{\"code\":400,\"message\":\"Unable to parse\"}]}",
      0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "Unable to parse",
     "code 400"},
    {"500 envelope",
     {500, "text/plain", "{\"success\":false,\"errors\":[{\"code\":1000,\"message\":\"signing failed\"}]}",
      0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "HTTP 500",
     "signing failed"},
    {"502 garbage",
     {502, "text/html", "<html>bad gateway</html>", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "HTTP 502",
     "no message"},
    {"200 not json",
     {200, "application/json", "certificate please", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "not a cfssl envelope",
     NULL},
    {"200 truncated json",
     {200, "application/json", "{\"success\":true,\"result\":{\"certificate\":\"---", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "not a cfssl envelope",
     NULL},
    {"200 json array",
     {200, "application/json", "[1,2,3]", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "not a cfssl envelope",
     NULL},
    {"200 success false",
     {200, "application/json", "{\"success\":false,\"result\":{}}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "HTTP 200",
     NULL},
    {"200 result wrong type",
     {200, "application/json", "{\"success\":true,\"result\":\"cert\"}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "HTTP 200",
     NULL},
    {"200 certificate garbage",
     {200, "application/json",
      "{\"success\":true,\"result\":{\"certificate\":\"-----BEGIN CERTIFICATE-----\\nAAAA\"}}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "the sign answer (HTTP 200) is refused",
     "result.certificate holds an unreadable or encrypted certificate"},
    {"200 certificate wrong type",
     {200, "application/json", "{\"success\":true,\"result\":{\"certificate\":42}}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "the sign answer (HTTP 200) is refused",
     "result.certificate is an integer, not a string"},
    {"404",
     {404, "text/plain", "404 page not found\n", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "HTTP 404",
     NULL},
    {"control chars in message",
     {400, "text/plain",
      "{\"success\":false,\"errors\":[{\"code\":5300,\"message\":\"bad\\nline\\u0001x\"}]}", 0},
     GW_ERR_POLICY,
     OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
     "bad?line?x",
     NULL},
    {"400 trailing data",
     {400, "text/plain",
      "{\"success\":false,\"errors\":[{\"code\":5500,\"message\":\"whitelist\"}]}\n{\"success\":true}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "the sign answer (HTTP 400) is refused: not a cfssl envelope: trailing data after the JSON document",
     NULL},
    {"400 code negative",
     {400, "text/plain", "{\"success\":false,\"errors\":[{\"code\":-5500,\"message\":\"m\"}]}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "the sign answer (HTTP 400) is refused: errors[0].code is -5500, not 0 to 99999",
     NULL},
    {"400 code a string",
     {400, "text/plain", "{\"success\":false,\"errors\":[{\"code\":\"5500\",\"message\":\"m\"}]}", 0},
     GW_ERR_UPSTREAM,
     OSSL_CMP_PKIFAILUREINFO_systemFailure,
     "errors[0].code is a string, not an integer",
     NULL},
    {"timeout",
     {200, "application/json", "{}", 3 * TIMEOUT_MS},
     GW_ERR_TIMEOUT,
     OSSL_CMP_PKIFAILUREINFO_systemUnavail,
     "outcome is unknown",
     "not retried"},
    /* it reached cfssl, which may have issued: not "could not be reached" */
    {"closed after the request",
     {-1, "application/json", "", 0},
     GW_ERR_IO,
     OSSL_CMP_PKIFAILUREINFO_systemUnavail,
     "did not answer /api/v1/cfssl/sign (",
     "); the outcome is unknown, not retried"},
};

static void test_sign_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        struct fixture f;
        struct gw_sign_result *res;

        print_message("case %s\n", answers[i].name);
        srv_set(&srv.sign, answers[i].reply);
        fixture_init(&f, srv.port, 0);
        res = sign(&f, csr);
        assert_int_equal(res->status, answers[i].status);
        assert_int_equal(res->fail_info, answers[i].fail_info);
        assert_null(res->cert);
        assert_null(res->chain);
        if (strstr(res->reason, answers[i].reason1) == NULL ||
            (answers[i].reason2 != NULL && strstr(res->reason, answers[i].reason2) == NULL))
            fail_msg("case %s: reason \"%s\"", answers[i].name, res->reason);
        assert_non_null(strstr(res->reason, "cfssl cf"));
        /* a timed-out sign call is never repeated */
        if (answers[i].status == GW_ERR_TIMEOUT) {
            usleep(4 * TIMEOUT_MS * 1000);
            assert_int_equal(srv_n_reqs(), 2);
        }
        result_free(res);
        fixture_cleanup(&f);
    }
}

/*
 * A success answer is taken only as cfssl writes it: one envelope, "success" a boolean, one
 * certificate. Each twin of the issuing answer is refused and nothing is delivered; each still holds a
 * certificate cfssl may have issued (bytes after it, "success" no boolean or missing, a second
 * certificate after the one issued), which is handed on to be withdrawn.
 */
static void test_sign_envelope_strict(void **state)
{
    char *q = json_quote(leaf_pem), *two_pem = malloc(strlen(leaf_pem) + strlen(ca_pem) + 1), *two;
    char bodies[7][8192];
    static const long http[] = {200, 200, 200, 200, 200, 200, 500};
    static const char *const reasons[] = {
        NULL, /* as cfssl writes it, with the newline of Go's json.Encoder */
        "the sign answer (HTTP 200) is refused: not a cfssl envelope: trailing data after the JSON document",
        "the sign answer (HTTP 200) is refused: success is a string, not true or false",
        "the sign answer (HTTP 200) is refused: success is an integer, not true or false",
        "the sign answer (HTTP 200) is refused: result.certificate holds more than 1 certificate",
        "the sign answer (HTTP 200) is refused: success is missing or null",
        "the sign answer (HTTP 500) is refused: success is a string, not true or false",
    };

    (void)state;
    sprintf(two_pem, "%s%s", leaf_pem, ca_pem);
    two = json_quote(two_pem);
    snprintf(bodies[0], sizeof(bodies[0]), "%s", sign_ok_body);
    snprintf(bodies[1], sizeof(bodies[1]), "%s{\"success\":false}", sign_ok_body);
    snprintf(bodies[2], sizeof(bodies[2]), "{\"success\":\"true\",\"result\":{\"certificate\":%s}}", q);
    snprintf(bodies[3], sizeof(bodies[3]), "{\"success\":1,\"result\":{\"certificate\":%s}}", q);
    snprintf(bodies[4], sizeof(bodies[4]), "{\"success\":true,\"result\":{\"certificate\":%s}}", two);
    snprintf(bodies[5], sizeof(bodies[5]),
             "{\"result\":{\"certificate\":%s},\"errors\":[],\"messages\":[]}\n", q);
    snprintf(bodies[6], sizeof(bodies[6]), "{\"success\":\"false\",\"result\":{\"certificate\":%s}}", q);
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        struct fixture f;
        struct gw_sign_result *res;

        srv_set(&srv.sign, (struct reply){http[i], "application/json", bodies[i], 0});
        fixture_init(&f, srv.port, 0);
        res = sign(&f, csr);
        if (reasons[i] == NULL) {
            assert_int_equal(res->status, 0);
            assert_int_equal(X509_cmp(res->cert, leaf), 0);
        } else {
            assert_int_equal(res->status, GW_ERR_UPSTREAM);
            assert_int_equal(res->fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
            assert_true(res->cert != NULL && X509_cmp(res->cert, leaf) == 0);
            assert_null(res->chain);
            if (strstr(res->reason, reasons[i]) == NULL)
                fail_msg("case %zu: reason \"%s\"", i, res->reason);
        }
        result_free(res);
        fixture_cleanup(&f);
    }
    free(q);
    free(two);
    free(two_pem);
}

/*
 * A sign answer of more objects and arrays than the gateway lets json-c build is not read at all, its
 * result.certificate neither: cfssl may have issued a certificate that is neither recorded nor withdrawn,
 * so the reason says the outcome is unknown rather than a refusal of what cfssl said. Its twin, under
 * the cap, is read and delivered.
 */
static void test_sign_answer_unread(void **state)
{
    static const size_t pads[] = {GW_MAX_UPSTREAM_CONTAINERS, GW_MAX_UPSTREAM_CONTAINERS / 2};
    char *q = json_quote(leaf_pem), *body;
    size_t cap = strlen(q) + 128 + 3 * GW_MAX_UPSTREAM_CONTAINERS;

    (void)state;
    assert_non_null(body = malloc(cap));
    for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
        struct fixture f;
        struct gw_sign_result *res;
        size_t len =
            (size_t)snprintf(body, cap, "{\"success\":true,\"result\":{\"certificate\":%s},\"pad\":[", q);

        for (size_t n = 0; n < pads[i]; n++)
            len += (size_t)snprintf(body + len, cap - len, n == 0 ? "{}" : ",{}");
        snprintf(body + len, cap - len, "],\"errors\":[],\"messages\":[]}\n");
        srv_set(&srv.sign, (struct reply){200, "application/json", body, 0});
        fixture_init(&f, srv.port, 0);
        res = sign(&f, csr);
        if (i == 0) {
            assert_int_equal(res->status, GW_ERR_UPSTREAM);
            assert_int_equal(res->fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
            assert_null(res->cert);
            if (strstr(res->reason,
                       "cfssl cf: the sign answer (HTTP 200) could not be read (the answer holds "
                       "more than 1024 '{' and '[' (objects and arrays)); the outcome is unknown "
                       "(cfssl may have issued: see its database), not retried") != res->reason)
                fail_msg("reason \"%s\"", res->reason);
        } else {
            assert_int_equal(res->status, 0);
            assert_int_equal(X509_cmp(res->cert, leaf), 0);
        }
        result_free(res);
        fixture_cleanup(&f);
    }
    free(body);
    free(q);
}

/*
 * A sign answer over GW_MAX_UPSTREAM_BODY is not read either, result.certificate neither: the outcome is
 * unknown, and it is logged cfssl_sign_unread, an error, as one of too many objects and arrays is
 * (test_sign_answer_unread), for the operator must look for the certificate at cfssl. Before, only the
 * warning cfssl_unavailable said it.
 */
static void test_sign_answer_over_cap(void **state)
{
    char logged[4096], *body = malloc(GW_MAX_UPSTREAM_BODY + 2);
    struct gw_sign_result *res;
    struct fixture f;
    struct tu_log l;

    (void)state;
    assert_non_null(body);
    memset(body, ' ', GW_MAX_UPSTREAM_BODY + 1);
    body[GW_MAX_UPSTREAM_BODY + 1] = '\0';
    srv_set(&srv.sign, (struct reply){200, "application/json", body, 0}); /* a copy */
    free(body);
    fixture_init(&f, srv.port, 0);
    tu_log_capture(&l, GW_LOG_ERROR, GW_LOG_INFO);
    res = sign(&f, csr);
    tu_log_release_into(&l, logged, sizeof(logged));
    assert_int_not_equal(res->status, 0);
    assert_null(res->cert);
    assert_non_null(strstr(res->reason, "larger than 1048576 bytes); the outcome is unknown"));
    assert_non_null(strstr(logged, "\"event\":\"cfssl_sign_unread\""));
    result_free(res);
    fixture_cleanup(&f);
}

/*
 * cfssl writes every error with "result": null. An error answer that holds a certificate all the same
 * (a broken or altered cfssl) is refused as systemFailure whatever its status and code, and its
 * certificate handed on to be recorded and withdrawn; the reason still says cfssl's error. Each twin
 * without the certificate is cfssl's error.
 */
static void test_sign_error_with_certificate(void **state)
{
    static const struct {
        long http;
        const char *error; /* errors[0] */
        const char *said;  /* what the reason quotes of it */
        int fail_info;     /* of the twin without a certificate */
        const char *twin;  /* its reason */
    } cases[] = {
        {200, "{\"code\":1000,\"message\":\"signing failed\"}", "signing failed (code 1000)",
         OSSL_CMP_PKIFAILUREINFO_systemFailure, "cfssl cf: HTTP 200: signing failed (code 1000)"},
        {400, "{\"code\":5500,\"message\":\"whitelist\"}", "whitelist (code 5500)",
         OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
         "refused by the cfssl profile's policy: whitelist (code 5500)"},
        {500, "{\"code\":1000,\"message\":\"signing failed\"}", "signing failed (code 1000)",
         OSSL_CMP_PKIFAILUREINFO_systemFailure, "cfssl cf failed (HTTP 500): signing failed (code 1000)"},
    };
    char *q = json_quote(leaf_pem), body[8192], reason[GW_ERR_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int with = 1; with >= 0; with--) {
            struct fixture f;
            struct gw_sign_result *res;

            print_message("case HTTP %ld, %s a certificate\n", cases[i].http, with ? "with" : "without");
            snprintf(body, sizeof(body),
                     "{\"success\":false,\"result\":%s%s%s,\"errors\":[%s],\"messages\":[]}\n",
                     with ? "{\"certificate\":" : "null", with ? q : "", with ? "}" : "", cases[i].error);
            srv_set(&srv.sign, (struct reply){cases[i].http, "application/json", body, 0});
            fixture_init(&f, srv.port, 0);
            res = sign(&f, csr);
            assert_int_equal(res->status, with || cases[i].http != 400 ? GW_ERR_UPSTREAM : GW_ERR_POLICY);
            assert_null(res->chain);
            if (with) {
                snprintf(reason, sizeof(reason),
                         "cfssl cf: the sign answer (HTTP %ld) is refused: result.certificate holds a "
                         "certificate beside \"success\": false; cfssl's error: %s",
                         cases[i].http, cases[i].said);
                assert_int_equal(res->fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
                assert_true(res->cert != NULL && X509_cmp(res->cert, leaf) == 0);
                assert_string_equal(res->reason, reason);
            } else {
                assert_int_equal(res->fail_info, cases[i].fail_info);
                assert_null(res->cert);
                if (strstr(res->reason, cases[i].twin) == NULL)
                    fail_msg("reason \"%s\"", res->reason);
            }
            result_free(res);
            fixture_cleanup(&f);
        }
    }
    free(q);
}

/*
 * cfssl's message is a hostile string that reaches a statusString and the log: each reason quotes at
 * most GW_MAX_CFSSL_QUOTE bytes of it, cut between UTF-8 characters, control characters as '?', and the
 * words after it (its code) whole. A refusal, a 5xx and a certificate beside "success": false alike.
 */
static void test_sign_message_bounded(void **state)
{
    static const struct {
        long http;
        int with; /* a certificate beside "success": false */
        const char *head;
    } cases[] = {
        {400, 0, "cfssl cf: refused by the cfssl profile's policy: "},
        {500, 0, "cfssl cf failed (HTTP 500): "},
        {400, 1,
         "cfssl cf: the sign answer (HTTP 400) is refused: result.certificate holds a certificate beside "
         "\"success\": false; cfssl's error: "},
    };
    char *q = json_quote(leaf_pem), msg[1024], body[8192], repaired[GW_ERR_LEN];
    size_t n, i, quoted;

    (void)state;
    /* a terminal's escape and a line break a log reader would take as a new line, then 300 "é" of two
       bytes each (every cut at an odd length splits one), then what would read as another field */
    n = (size_t)snprintf(msg, sizeof(msg), "\\n\\u001b[31m");
    for (i = 0; i < 300; i++)
        n += (size_t)snprintf(msg + n, sizeof(msg) - n, "\xc3\xa9");
    snprintf(msg + n, sizeof(msg) - n, " serial=\\\"00\\\"");
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fixture f;
        struct gw_sign_result *res;
        const char *r;

        snprintf(body, sizeof(body),
                 "{\"success\":false,\"result\":%s%s%s,\"errors\":[{\"code\":5500,\"message\":\"%s\"}],"
                 "\"messages\":[]}\n",
                 cases[i].with ? "{\"certificate\":" : "null", cases[i].with ? q : "",
                 cases[i].with ? "}" : "", msg);
        srv_set(&srv.sign, (struct reply){cases[i].http, "application/json", body, 0});
        fixture_init(&f, srv.port, 0);
        res = sign(&f, csr);
        r = res->reason;
        n = strlen(r);
        print_message("HTTP %ld%s: %s\n", cases[i].http, cases[i].with ? " with a certificate" : "", r);
        assert_int_equal(res->cert != NULL, cases[i].with);
        assert_int_equal(strncmp(r, cases[i].head, strlen(cases[i].head)), 0);
        assert_true(n > strlen(cases[i].head) + strlen(" (code 5500)"));
        assert_string_equal(r + n - strlen(" (code 5500)"), " (code 5500)");
        quoted = n - strlen(cases[i].head) - strlen(" (code 5500)");
        assert_true(quoted <= GW_MAX_CFSSL_QUOTE);
        assert_int_equal(strncmp(r + strlen(cases[i].head), "??[31m\xc3\xa9", 8), 0);
        if (gw_utf8_repair(repaired, sizeof(repaired), r) != n || strcmp(repaired, r) != 0)
            fail_msg("\"%s\" is not whole UTF-8", r);
        for (const char *c = r; *c != '\0'; c++)
            assert_false((unsigned char)*c < 0x20 || *c == 0x7f);
        assert_null(strstr(r, "serial="));
        result_free(res);
        fixture_cleanup(&f);
    }
    free(q);
}

/* A certificate from a CA other than cfssl's (info): the CA is re-read once, then it is refused. */
static void test_sign_foreign_issuer(void **state)
{
    struct fixture f;
    struct gw_sign_result *res;

    (void)state;
    srv_set(&srv.sign, (struct reply){200, "application/json", sign_foreign_body, 0});
    fixture_init(&f, srv.port, 0);
    res = sign(&f, csr);
    assert_int_equal(res->fail_info, OSSL_CMP_PKIFAILUREINFO_systemFailure);
    assert_non_null(strstr(res->reason, "not signed by cfssl's CA"));
    assert_non_null(res->cert); /* refused, and handed on to be recorded and revoked */
    assert_null(res->chain);
    assert_int_equal(srv_n_reqs(), 3);
    assert_string_equal(srv_req(2)->path, "/api/v1/cfssl/info");
    result_free(res);
    fixture_cleanup(&f);
}

/* A sign call of its own (role |role|), completed on |done|: for calls that overlap. */
struct overlapping {
    struct fixture *f;
    struct gw_role role;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct gw_sign_result *res;
};

static void overlapping_done(void *arg, struct gw_sign_result *res)
{
    struct overlapping *o = arg;

    pthread_mutex_lock(&o->lock);
    o->res = res;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

static void overlapping_start(struct overlapping *o, struct fixture *f, const char *upstream_role)
{
    struct gw_sign_req req = {.role = &o->role, .plan = &f->plan, .csr = csr, .request_id = "00fe"};

    o->f = f;
    o->role = (struct gw_role){.name = "devices", .upstream_role = (char *)upstream_role};
    o->res = NULL;
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->cond, NULL);
    assert_int_equal(gw_upstream_cfssl_ops.sign(f->up, &req, overlapping_done, o), 0);
}

/* |o|'s result, waited for at most WAIT_S. */
static struct gw_sign_result *overlapping_wait(struct overlapping *o)
{
    struct timespec until = tu_deadline(WAIT_S);
    struct gw_sign_result *res;

    pthread_mutex_lock(&o->lock);
    while (o->res == NULL && tu_wait_until(&o->cond, &o->lock, &until) == 0)
        ;
    res = o->res;
    pthread_mutex_unlock(&o->lock);
    if (res == NULL) /* the call still uses |o| and its fixture */
        tu_end_run("an overlapping call did not complete within WAIT_S");
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    return res;
}

/* Whether |o|'s call has ended, without waiting. */
static bool overlapping_done_yet(struct overlapping *o)
{
    bool done;

    pthread_mutex_lock(&o->lock);
    done = o->res != NULL;
    pthread_mutex_unlock(&o->lock);
    return done;
}

static int count_path(const char *path)
{
    int n = 0;

    pthread_mutex_lock(&srv.lock);
    for (int i = 0; i < srv.n_reqs; i++)
        n += strcmp(srv.reqs[i].path, path) == 0;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

/*
 * While one call fetches cfssl's CA again (its certificate came from another CA) and cfssl holds its
 * answer to info, another call through the same upstream goes on: nothing holds a lock across the
 * call to cfssl. The info answer waits for the test, not for a time a loaded machine may outrun.
 */
static void test_chain_fetch_blocks_nobody(void **state)
{
    struct fixture f;
    struct overlapping a, b;
    struct gw_sign_result *res;
    struct timespec until;
    char err[GW_ERR_LEN];

    (void)state;
    srv_set(&srv.sign, (struct reply){200, "application/json", sign_ok_body, 0});
    srv_set(&srv.sign_foreign, (struct reply){200, "application/json", sign_foreign_body, 0});
    fixture_init(&f, srv.port, 0);
    gw_upstream_free(f.up);
    f.conf.timeout_ms = WAIT_S * 1000; /* a's call outlives however long b takes */
    clear_requests();
    assert_non_null(f.up = gw_upstream_new(&f.conf, NULL, err)); /* info at once: the chain is known */
    srv_set(&srv.info, (struct reply){200, "application/json", info_ok_body, HELD});
    overlapping_start(&a, &f, "foreign");
    until = tu_deadline(WAIT_S);
    while (count_path("/api/v1/cfssl/info") < 2 && !tu_past(&until))
        usleep(5000);
    assert_int_equal(count_path("/api/v1/cfssl/info"), 2); /* a's fetch of the CA is in flight */
    overlapping_start(&b, &f, "client");
    res = overlapping_wait(&b);
    assert_int_equal(res->status, 0);
    assert_non_null(res->cert);
    assert_false(overlapping_done_yet(&a)); /* b did not wait behind a's held info */
    result_free(res);
    srv_release();
    res = overlapping_wait(&a);
    assert_non_null(strstr(res->reason, "not signed by cfssl's CA"));
    assert_non_null(res->cert);
    result_free(res);
    srv_set(&srv.sign_foreign, (struct reply){0});
    srv_set(&srv.info, (struct reply){200, "application/json", info_ok_body, 0});
    fixture_cleanup(&f);
}

/* cfssl's CA unknown at start (info failed): the first sign call fetches it; nothing is signed before. */
static void test_info_lazy_retry(void **state)
{
    struct fixture f;
    struct gw_sign_result *res;
    char err[GW_ERR_LEN];

    (void)state;
    srv_set(&srv.sign, (struct reply){200, "application/json", sign_ok_body, 0});
    fixture_init(&f, srv.port, 0);
    gw_upstream_free(f.up);
    srv_set(&srv.info, (struct reply){503, "text/plain", "starting", 0});
    clear_requests();
    assert_non_null(f.up = gw_upstream_new(&f.conf, NULL, err));
    res = sign(&f, csr);
    assert_int_equal(res->status, GW_ERR_UPSTREAM);
    assert_int_equal(res->fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_non_null(strstr(res->reason, "cannot read cfssl's CA certificate"));
    assert_non_null(strstr(res->reason, "HTTP 503"));
    assert_int_equal(srv_n_reqs(), 2); /* info twice, no sign */
    assert_string_equal(srv_req(1)->path, "/api/v1/cfssl/info");
    result_free(res);
    /* info answers but holds no certificate */
    srv_set(&srv.info, (struct reply){200, "application/json",
                                      "{\"success\":true,\"result\":{\"certificate\":\"\"}}", 0});
    res = sign(&f, csr);
    assert_non_null(
        strstr(res->reason, "the info answer (HTTP 200) is refused: result.certificate is empty"));
    result_free(res);
    srv_set(&srv.info, (struct reply){200, "application/json", info_ok_body, 0});
    res = sign(&f, csr);
    assert_int_equal(res->status, 0);
    assert_int_equal(X509_cmp(sk_X509_value(res->chain, 0), ca), 0);
    result_free(res);
    fixture_cleanup(&f);
}

/* issuer_ca certificates follow cfssl's CA in the chain, without repeating it. */
static void test_chain_with_issuer_ca(void **state)
{
    struct fixture f;
    struct gw_sign_result *res;
    char err[GW_ERR_LEN];

    (void)state;
    srv_set(&srv.sign, (struct reply){200, "application/json", sign_ok_body, 0});
    fixture_init(&f, srv.port, 0);
    gw_upstream_free(f.up);
    f.conf.issuer_certs = sk_X509_new_null();
    sk_X509_push(f.conf.issuer_certs, ca);
    sk_X509_push(f.conf.issuer_certs, other_ca);
    assert_non_null(f.up = gw_upstream_new(&f.conf, NULL, err));
    res = sign(&f, csr);
    assert_int_equal(res->status, 0);
    assert_int_equal(sk_X509_num(res->chain), 2);
    assert_int_equal(X509_cmp(sk_X509_value(res->chain, 0), ca), 0);
    assert_int_equal(X509_cmp(sk_X509_value(res->chain, 1), other_ca), 0);
    result_free(res);
    fixture_cleanup(&f);
    sk_X509_free(f.conf.issuer_certs);
}

/* cfssl down (connection refused): systemUnavail naming the upstream, not its URL; the wait wrapper agrees.
 */
static void test_cfssl_down(void **state)
{
    struct fixture f;
    struct gw_sign_result *res, out;
    struct gw_sign_req req;
    int port, fd = bound_socket(&port, 0);

    (void)state;
    close(fd); /* nothing listens there now */
    fixture_init(&f, port, 0);
    res = sign(&f, csr);
    assert_int_equal(res->status, GW_ERR_IO);
    assert_int_equal(res->fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_non_null(strstr(res->reason, "could not be reached, it is unavailable"));
    assert_null(strstr(res->reason, f.url));
    assert_null(strstr(res->reason, "127.0.0.1"));
    result_free(res);
    req = (struct gw_sign_req){.role = &f.role, .plan = &f.plan, .csr = csr, .request_id = "01"};
    tu_sign_wait(f.up, &req, &out);
    assert_int_equal(out.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    gw_sign_result_cleanup(&out);
    fixture_cleanup(&f);
}

static void test_init_errors(void **state)
{
    struct gw_cfssl_conf cc = {.http.url = NULL};
    struct gw_upstream_conf conf = {.name = "cf", .ops = &gw_upstream_cfssl_ops, .impl = &cc};
    char err[GW_ERR_LEN] = "";

    (void)state;
    assert_null(gw_upstream_new(&conf, NULL, err));
    assert_non_null(strstr(err, "no url"));
}

/*
 * An HTTP client that cannot be made for what the system lacks (here no thread key left; likewise out of
 * memory, libcurl that would not start) fails the start as the system's, which another try may mend
 * (exit 1): cfssl_init said GW_ERR_INVAL for any, the configuration refused (exit 78, not restarted).
 */
static void test_init_without_a_thread_key(void **state)
{
    struct gw_cfssl_conf cc = {.http.url = "http://127.0.0.1:1"};
    struct gw_upstream_conf conf = {.name = "cf", .ops = &gw_upstream_cfssl_ops, .impl = &cc};
    char err[GW_ERR_LEN] = "";
    struct gw_upstream_set *set;
    int rc = 0;

    (void)state;
    tu_keys_exhaust();
    set = gw_upstream_set_new(&conf, 1, NULL, 0, NULL, NULL, &rc, err);
    tu_keys_back();
    assert_null(set);
    assert_int_equal(rc, GW_ERR_UNAVAILABLE);
    assert_non_null(strstr(err, "no thread key left"));
}

/* ---- revoke ---- */

static const char *revoke_ok = "{\"success\":true,\"result\":{},\"errors\":[],\"messages\":[]}\n";
static const char *revoke_not_found =
    "{\"success\":false,\"result\":null,\"errors\":[{\"code\":11200,\"message\":\"failed to revoke the "
    "certificate: certificate not found\"}],\"messages\":[]}\n";

static void expect_revoke_body(int i, const char *aki, const char *reason)
{
    json_object *o = request_json(i);

    assert_string_equal(srv_req(i)->path, "/api/v1/cfssl/revoke");
    assert_string_equal(jstr(o, "serial"), "78187493520"); /* 0x1234567890 in decimal */
    assert_string_equal(jstr(o, "authority_key_id"), aki);
    assert_string_equal(jstr(o, "reason"), reason);
    json_object_put(o);
}

static void ca_aki_hex(char *out)
{
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(ca);
    static const char hex[] = "0123456789abcdef";
    int i;

    for (i = 0; i < ASN1_STRING_length(skid); i++) {
        out[2 * i] = hex[ASN1_STRING_get0_data(skid)[i] >> 4];
        out[2 * i + 1] = hex[ASN1_STRING_get0_data(skid)[i] & 15];
    }
    out[2 * i] = '\0';
}

static void test_revoke(void **state)
{
    struct fixture f;
    char err[GW_ERR_LEN], aki[64];

    (void)state;
    ca_aki_hex(aki);
    fixture_init_revoking(&f, srv.port);
    /* found at once */
    srv_set(&srv.revoke[0], (struct reply){200, "application/json", revoke_ok, 0});
    srv_set(&srv.revoke[1], (struct reply){200, "application/json", revoke_ok, 0});
    assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_KEY_COMPROMISE, err), 0);
    expect_revoke_body(1, aki, "keycompromise");
    /* cfssl 1.2.0 recorded an empty AKI: one retry with "" */
    clear_requests();
    srv_set(&srv.revoke[0], (struct reply){400, "text/plain", revoke_not_found, 0});
    assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_SUPERSEDED, err), 0);
    assert_int_equal(srv_n_reqs(), 2);
    expect_revoke_body(0, aki, "superseded");
    expect_revoke_body(1, "", "superseded");
    /* unknown either way */
    clear_requests();
    srv_set(&srv.revoke[0], (struct reply){400, "text/plain", revoke_not_found, 0});
    srv_set(&srv.revoke[1], (struct reply){400, "text/plain", revoke_not_found, 0});
    assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_NONE, err), GW_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "certificate not found"));
    expect_revoke_body(1, "", "unspecified");
    /* other failures are not retried */
    clear_requests();
    srv_set(&srv.revoke[0], (struct reply){500, "text/plain",
                                           "{\"success\":false,\"errors\":[{\"code\":11000,"
                                           "\"message\":\"database locked\"}]}",
                                           0});
    assert_int_equal(gw_upstream_revoke(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, err), GW_ERR_UPSTREAM);
    assert_int_equal(srv_n_reqs(), 1);
    assert_non_null(strstr(err, "database locked"));
    expect_revoke_body(0, aki, "cessationofoperation");
    fixture_cleanup(&f);
}

/*
 * A revocation given an end (a withdrawal during a drain) ends by it, cfssl answering or not, its retry with
 * an empty AKI too: both calls share that end. Before, each ran for the upstream's timeout, whatever a
 * drain's deadline was. It says whether anything was sent (not_sent): not once the end has passed.
 */
static void test_revoke_until(void **state)
{
    struct fixture f;
    char err[GW_ERR_LEN];
    _Atomic uint64_t end;
    int unsent = -1, rc;

    (void)state;
    fixture_init_revoking(&f, srv.port);
    gw_upstream_free(f.up);
    f.conf.timeout_ms = 3000; /* longer than the end given */
    assert_non_null(f.up = gw_upstream_new(&f.conf, NULL, err));
    clear_requests();
    srv_set(&srv.revoke[0], (struct reply){400, "text/plain", revoke_not_found, 200});
    srv_set(&srv.revoke[1], (struct reply){200, "application/json", revoke_ok, HELD});
    /* the retry goes out after the first answer, well within the end; its answer, which would revoke
       within the upstream's timeout, is held past it: the end alone cut the call */
    end = gw_now_ms() + 1500;
    rc = gw_upstream_revoke_by(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, &end, &unsent, err);
    srv_release();
    assert_int_not_equal(rc, 0);
    assert_int_not_equal(rc, GW_ERR_REFUSED);
    assert_int_not_equal(rc, GW_ERR_NOT_FOUND);
    assert_int_equal(srv_n_reqs(), 2);
    assert_int_equal(unsent, 0); /* cfssl had both requests */
    clear_requests();
    end = gw_now_ms() - 1;
    assert_int_not_equal(
        gw_upstream_revoke_by(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, &end, &unsent, err), 0);
    assert_int_equal(srv_n_reqs(), 0);
    assert_int_equal(unsent, 1);
    fixture_cleanup(&f);
}

/*
 * A health probe its caller's end cut short (the prober of a configuration a reload retires, or the
 * gateway's stop) says a stop cut it, sent or not, and logs nothing at warn; the twin, a withdrawal's
 * revocation past the same end, still names the drain's deadline and logs cfssl_unavailable. Before, the
 * probe logged cfssl_unavailable at warn, "not sent: the drain's deadline came first", at every reload,
 * blaming a drain that never happened.
 */
static void test_probe_cut_by_a_stop(void **state)
{
    struct fixture f;
    struct tu_log l;
    char err[GW_ERR_LEN], logged[4096];
    _Atomic uint64_t end;
    int unsent = -1;

    (void)state;
    fixture_init_revoking(&f, srv.port);
    gw_upstream_free(f.up);
    f.conf.timeout_ms = 3000; /* longer than the end given */
    assert_non_null(f.up = gw_upstream_new(&f.conf, NULL, err));
    end = gw_now_ms() - 1; /* before anything was sent */
    tu_log_capture(&l, GW_LOG_DEBUG, GW_LOG_INFO);
    assert_int_not_equal(gw_upstream_probe(f.up, &end, err), 0);
    tu_log_release_into(&l, logged, sizeof(logged));
    assert_non_null(strstr(err, "was not asked /api/v1/cfssl/info: a stop came first"));
    assert_null(strstr(err, "drain"));
    assert_null(strstr(logged, "\"level\":\"warn\""));
    srv_set(&srv.info, (struct reply){200, "application/json", info_ok_body, HELD});
    end = gw_now_ms() + 1000; /* sent (a second is room for that on any machine), then cut short */
    tu_log_capture(&l, GW_LOG_DEBUG, GW_LOG_INFO);
    assert_int_not_equal(gw_upstream_probe(f.up, &end, err), 0);
    tu_log_release_into(&l, logged, sizeof(logged));
    srv_release();
    assert_non_null(strstr(err, "did not answer /api/v1/cfssl/info before a stop cut the call short"));
    assert_null(strstr(err, "drain"));
    assert_null(strstr(logged, "\"level\":\"warn\""));
    srv_set(&srv.info, (struct reply){200, "application/json", info_ok_body, 0});
    end = gw_now_ms() - 1;
    tu_log_capture(&l, GW_LOG_DEBUG, GW_LOG_INFO);
    assert_int_not_equal(
        gw_upstream_revoke_by(f.up, leaf, CRL_REASON_CESSATION_OF_OPERATION, &end, &unsent, err), 0);
    tu_log_release_into(&l, logged, sizeof(logged));
    assert_int_equal(unsent, 1);
    assert_non_null(strstr(err, "not sent: the drain's deadline came first"));
    assert_non_null(strstr(logged, "\"event\":\"cfssl_unavailable\""));
    fixture_cleanup(&f);
}

static void test_revoke_reasons(void **state)
{
    static const struct {
        int reason;
        const char *name; /* NULL: refused without a call */
    } cases[] = {
        {CRL_REASON_UNSPECIFIED, "unspecified"},
        {CRL_REASON_CA_COMPROMISE, "cacompromise"},
        {CRL_REASON_AFFILIATION_CHANGED, "affiliationchanged"},
        {CRL_REASON_CERTIFICATE_HOLD, "certificatehold"},
        {CRL_REASON_REMOVE_FROM_CRL, "removefromcrl"},
        {CRL_REASON_PRIVILEGE_WITHDRAWN, "privilegewithdrawn"},
        {CRL_REASON_AA_COMPROMISE, "aacompromise"},
        {7, NULL},
        {11, NULL},
        {-2, NULL},
        {1000, NULL},
    };
    struct fixture f;
    char err[GW_ERR_LEN], aki[64];

    (void)state;
    ca_aki_hex(aki);
    fixture_init_revoking(&f, srv.port);
    srv_set(&srv.revoke[0], (struct reply){200, "application/json", revoke_ok, 0});
    srv_set(&srv.revoke[1], (struct reply){200, "application/json", revoke_ok, 0});
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        clear_requests();
        if (cases[i].name == NULL) {
            assert_int_equal(gw_upstream_revoke(f.up, leaf, cases[i].reason, err), GW_ERR_INVAL);
            assert_int_equal(srv_n_reqs(), 0);
            continue;
        }
        assert_int_equal(gw_upstream_revoke(f.up, leaf, cases[i].reason, err), 0);
        expect_revoke_body(0, aki, cases[i].name);
    }
    assert_int_equal(gw_upstream_revoke(f.up, NULL, 0, err), GW_ERR_INVAL);
    fixture_cleanup(&f);
}

/*
 * What cfssl's answer to a revoke means beyond revoked and unknown: a 4xx is cfssl refusing it for
 * good (GW_ERR_REFUSED: the client is told not to retry), also from a cfssl without a certificate
 * database, which has no revoke endpoint; its own trouble (5xx, too many requests, an answer that does
 * not read) may pass. Once, every one of them had the client retry forever.
 */
static void test_revoke_refusals(void **state)
{
    static const struct {
        struct reply r;
        int rc;
        const char *err; /* in the reason, for the log */
    } cases[] = {
        {{404, "text/plain", "404 page not found\n", 0}, GW_ERR_REFUSED, "HTTP 404"},
        {{400, "text/plain",
          "{\"success\":false,\"result\":null,\"errors\":[{\"code\":400,\"message\":\"Invalid reason "
          "code\"}],\"messages\":[]}",
          0},
         GW_ERR_REFUSED,
         "Invalid reason code"},
        {{429, "text/plain", "too many requests\n", 0}, GW_ERR_UPSTREAM, "HTTP 429"},
        {{502, "text/html", "<html>bad gateway</html>", 0}, GW_ERR_UPSTREAM, "HTTP 502"},
        {{200, "application/json", "{\"success\":true,\"result\":{}", 0}, GW_ERR_UPSTREAM, "HTTP 200"},
    };
    struct fixture f;
    char err[GW_ERR_LEN];

    (void)state;
    fixture_init_revoking(&f, srv.port);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        clear_requests();
        srv_set(&srv.revoke[0], cases[i].r);
        assert_int_equal(gw_upstream_revoke(f.up, leaf, 0, err), cases[i].rc);
        assert_int_equal(srv_n_reqs(), 1);
        if (strstr(err, cases[i].err) == NULL)
            fail_msg("case %zu: \"%s\"", i, err);
    }
    fixture_cleanup(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_sign_ok_request_bytes),
        cmocka_unit_test(test_sign_no_sans_sends_empty_hosts),
        cmocka_unit_test(test_sign_uri_san_refused),
        cmocka_unit_test(test_sign_crmf_refused),
        cmocka_unit_test(test_authsign_token),
        cmocka_unit_test(test_sign_answers),
        cmocka_unit_test(test_sign_envelope_strict),
        cmocka_unit_test(test_sign_answer_unread),
        cmocka_unit_test(test_sign_answer_over_cap),
        cmocka_unit_test(test_sign_error_with_certificate),
        cmocka_unit_test(test_sign_message_bounded),
        cmocka_unit_test(test_sign_foreign_issuer),
        cmocka_unit_test(test_info_lazy_retry),
        cmocka_unit_test(test_chain_with_issuer_ca),
        cmocka_unit_test(test_cfssl_down),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_init_without_a_thread_key),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_revoke_until),
        cmocka_unit_test(test_probe_cut_by_a_stop),
        cmocka_unit_test(test_revoke_reasons),
        cmocka_unit_test(test_revoke_refusals),
        cmocka_unit_test(test_chain_fetch_blocks_nobody),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
