/*
 * upstream/cmp_up.c (the "cmp" upstream, docs/cmp-relay.md) against a scripted CMP CA on loopback:
 * an OSSL_CMP_SRV_CTX behind a tiny HTTP server (PBM-protected both ways) that issues, rejects with
 * failInfo and text, or issues for the wrong key; and transport twins (HTTP 500, wrong content type,
 * garbage, truncated DER, an oversized answer, no answer, nobody listening). Also the config rows of
 * a cmp upstream and of "crmf_upstream", each valid case with its invalid twins.
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
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <openssl/cmp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "gateway/config.h"
#include "base/err.h"
#include "base/limits.h"
#include "upstream/upstream.h"
#include "upstream/upstream_test.h"

#define SECRET "cmp-upstream-pbm-secret"
#define REF "gateway-ra"
#define REQ_MAX (64 * 1024)
#define BODY_IR 0 /* PKIBody CHOICE tags (RFC 9810 §5.1.2); OpenSSL keeps them internal */
#define BODY_CERTCONF 24

static char dir[64];
static EVP_PKEY *ca_key, *client_key, *other_key;
static X509 *ca;

/* ---- fixtures ---- */

static void put_file(const char *name, const void *data, size_t len)
{
    char path[256];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(fp = fopen(path, "wb"));
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
    chmod(path, 0600);
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, int is_ca)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX ctx;
    X509_EXTENSION *e;

    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), is_ca ? 1 : 42);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, is_ca ? n : X509_get_subject_name(ca));
    X509_set_pubkey(x, key);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509V3_set_ctx(&ctx, is_ca ? x : ca, x, NULL, NULL, 0);
    e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "CA:FALSE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    X509_sign(x, ca_key, EVP_sha256());
    X509_NAME_free(n);
    return x;
}

static int group_setup(void **state)
{
    FILE *fp;
    char path[256];

    (void)state;
    snprintf(dir, sizeof(dir), "%s", "/tmp/cmpgw-test-cmpup-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    ca_key = EVP_EC_gen("P-256");
    client_key = EVP_EC_gen("P-256");
    other_key = EVP_EC_gen("P-256");
    ca = make_cert("cmp upstream test CA", ca_key, 1);
    snprintf(path, sizeof(path), "%s/up-ca.pem", dir);
    if ((fp = fopen(path, "w")) == NULL || PEM_write_X509(fp, ca) != 1)
        return -1;
    fclose(fp);
    put_file("up.secret", SECRET, strlen(SECRET));
    return ca_key != NULL && client_key != NULL && other_key != NULL && ca != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    char cmd[128];

    (void)state;
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(client_key);
    EVP_PKEY_free(other_key);
    X509_free(ca);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- the scripted CMP CA ---- */

enum mode { M_ISSUE, M_REJECT, M_WRONG_KEY, M_HTTP500, M_CTYPE, M_GARBAGE, M_TRUNC, M_BIG, M_SILENT };

struct server {
    int fd, port;
    enum mode mode;
    pthread_t thread;
    int n_requests;
    int bodies[4]; /* the body types it saw */
};

static OSSL_CMP_PKISI *srv_cert_req(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int id,
                                    const OSSL_CRMF_MSG *crm, const X509_REQ *p10, X509 **cert,
                                    STACK_OF(X509) **chain, STACK_OF(X509) **capubs)
{
    struct server *s = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);

    (void)req, (void)id, (void)crm, (void)p10, (void)chain, (void)capubs;
    if (s->mode == M_REJECT)
        return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection,
                                       1 << OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "no such\nprofile");
    *cert = make_cert("issued", s->mode == M_WRONG_KEY ? other_key : client_key, 0);
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

static int srv_certconf(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int id, const ASN1_OCTET_STRING *hash,
                        const OSSL_CMP_PKISI *si)
{
    (void)srv, (void)req, (void)id, (void)hash, (void)si;
    return 1;
}

static OSSL_CMP_SRV_CTX *new_srv(struct server *s)
{
    OSSL_CMP_SRV_CTX *srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(srv);

    assert_int_equal(OSSL_CMP_SRV_CTX_init(srv, s, srv_cert_req, NULL, NULL, NULL, srv_certconf, NULL), 1);
    assert_int_equal(OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *)SECRET, strlen(SECRET)), 1);
    assert_int_equal(OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)"ca", 2), 1);
    OSSL_CMP_SRV_CTX_set_accept_raverified(srv, 1);
    return srv;
}

/* Reads one HTTP request's body into |buf|; its length, or -1 when the connection ends. */
static long read_request(int c, unsigned char *buf, size_t cap)
{
    size_t got = 0, want = 0;
    char *hdr_end = NULL, *cl;
    ssize_t n;

    while (hdr_end == NULL || got < want) {
        if (got == cap || (n = read(c, buf + got, cap - got)) <= 0)
            return -1;
        got += (size_t)n;
        buf[got < cap ? got : cap - 1] = '\0';
        if (hdr_end == NULL && (hdr_end = strstr((char *)buf, "\r\n\r\n")) != NULL) {
            if ((cl = strcasestr((char *)buf, "Content-Length:")) == NULL)
                return -1;
            want = (size_t)(hdr_end + 4 - (char *)buf) + strtoul(cl + 15, NULL, 10);
        }
    }
    memmove(buf, hdr_end + 4, want - (size_t)(hdr_end + 4 - (char *)buf));
    return (long)(want - (size_t)(hdr_end + 4 - (char *)buf));
}

static void write_all(int c, const void *p, size_t len)
{
    ssize_t n;

    for (; len > 0; p = (const char *)p + n, len -= (size_t)n)
        if ((n = write(c, p, len)) <= 0)
            return;
}

static void answer(int c, const char *status, const char *ctype, const void *body, size_t len)
{
    char hdr[256];

    snprintf(hdr, sizeof(hdr), "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", status,
             ctype, len);
    write_all(c, hdr, strlen(hdr));
    write_all(c, body, len);
}

static void serve_cmp(struct server *s, OSSL_CMP_SRV_CTX *srv, int c, const unsigned char *body, long len)
{
    const unsigned char *p = body;
    OSSL_CMP_MSG *req = d2i_OSSL_CMP_MSG(NULL, &p, len), *rsp = NULL;
    unsigned char *der = NULL;
    int n = 0;

    if (req != NULL && s->n_requests < 4)
        s->bodies[s->n_requests++] = OSSL_CMP_MSG_get_bodytype(req);
    if (req != NULL && (rsp = OSSL_CMP_SRV_process_request(srv, req)) != NULL)
        n = i2d_OSSL_CMP_MSG(rsp, &der);
    answer(c, "200 OK", "application/pkixcmp", der, n > 0 ? (size_t)n : 0);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(req);
    OSSL_CMP_MSG_free(rsp);
}

static void *serve(void *arg)
{
    static const unsigned char trunc[] = {0x30, 0x82, 0x01, 0x00, 0x30, 0x10, 0x02, 0x01};
    struct server *s = arg;
    OSSL_CMP_SRV_CTX *srv = new_srv(s);
    unsigned char *buf = malloc(REQ_MAX), *big;
    int c = accept(s->fd, NULL, NULL);
    long len;

    while (c >= 0 && (len = read_request(c, buf, REQ_MAX)) >= 0) {
        switch (s->mode) {
        case M_HTTP500:
            answer(c, "500 Internal Server Error", "text/plain", "down", 4);
            break;
        case M_CTYPE:
            answer(c, "200 OK", "text/html", "<html/>", 7);
            break;
        case M_GARBAGE:
            answer(c, "200 OK", "application/pkixcmp", "garbage!", 8);
            break;
        case M_TRUNC:
            answer(c, "200 OK", "application/pkixcmp; charset=binary", trunc, sizeof(trunc));
            break;
        case M_BIG:
            big = calloc(1, GW_MAX_UPSTREAM_BODY + 1);
            answer(c, "200 OK", "application/pkixcmp", big, GW_MAX_UPSTREAM_BODY + 1);
            free(big);
            break;
        case M_SILENT:
            poll(NULL, 0, 800); /* past the upstream's 300 ms */
            break;
        default:
            serve_cmp(s, srv, c, buf, len);
        }
    }
    if (c >= 0)
        close(c);
    free(buf);
    OSSL_CMP_SRV_CTX_free(srv);
    return NULL;
}

static void server_start(struct server *s, enum mode mode)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);

    memset(s, 0, sizeof(*s));
    s->mode = mode;
    assert_true((s->fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->fd, 4), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
    shutdown(s->fd, SHUT_RDWR); /* wakes a thread still in accept */
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* A port nobody listens on: bound, never listened to. */
static int dead_port(int *fd)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);

    *fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(*fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(*fd, (struct sockaddr *)&a, &alen);
    return ntohs(a.sin_port);
}

/* ---- config ---- */

#define SIGNER_AND_REST                                                                                      \
    "\"signer\": {\"cert\": \"up-ca.pem\", \"key\": \"up-ca.key\"},"                                         \
    "\"trust\": {\"t\": {\"ca_file\": \"up-ca.pem\", \"revocation\": \"none\"}},"                            \
    "\"default_path_policy\": \"role:r\", \"audit\": {\"file\": \"audit.log\"},"

static struct gw_config *config(const char *upstream, const char *role, char *err)
{
    char json[2048];
    FILE *fp;
    char path[256];

    snprintf(path, sizeof(path), "%s/up-ca.key", dir);
    if (access(path, R_OK) != 0) {
        assert_non_null(fp = fopen(path, "w"));
        assert_int_equal(PEM_write_PrivateKey(fp, ca_key, NULL, NULL, 0, NULL, NULL), 1);
        fclose(fp);
    }
    snprintf(json, sizeof(json),
             "{\"listeners\": [{\"address\": \"127.0.0.1\", \"port\": 1, \"tls\": {\"cert\": \"up-ca.pem\", "
             "\"key\": \"up-ca.key\", \"client_auth\": \"none\"}}]," SIGNER_AND_REST
             "\"upstreams\": {\"up\": {%s}, \"json\": {\"type\": \"cfssl\", \"url\": \"http://127.0.0.1:1\", "
             "\"issuer_ca\": \"up-ca.pem\"}},"
             "\"roles\": {\"r\": {\"upstream\": \"%s\", \"trust\": [\"t\"]%s}}}",
             upstream, role[0] == '+' ? "json" : "up", role[0] == '+' ? role + 1 : role);
    return gw_config_parse(json, strlen(json), dir, "cmpgw.json", err);
}

static const char *pbm_upstream(int port, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "\"type\": \"cmp\", \"url\": \"http://127.0.0.1:%d\", \"path\": \"/pkix/\", \"ref\": \"" REF
             "\", "
             "\"secret_file\": \"up.secret\", \"issuer_ca\": \"up-ca.pem\", \"timeout\": \"300ms\"",
             port);
    return buf;
}

struct cfg_case {
    const char *name;
    int no_base;      /* leave out type, url and issuer_ca's common part */
    const char *keys; /* appended to the common part */
    const char *role; /* "+...": the role is on the cfssl upstream, with these keys */
    const char *want; /* NULL: valid */
};

#define CMP_BASE "\"type\": \"cmp\", \"url\": \"http://127.0.0.1:9\", \"issuer_ca\": \"up-ca.pem\", "

static void test_config_rows(void **state)
{
    static const struct cfg_case cases[] = {
        {"signed", 0, "\"path\": \"/pkix/\", \"trusted\": \"up-ca.pem\"", "", NULL},
        {"pbm", 0, "\"path\": \"/.well-known/cmp\", \"ref\": \"x\", \"secret_file\": \"up.secret\"", "",
         NULL},
        {"root path", 0, "\"path\": \"/\", \"trusted\": \"up-ca.pem\"", "", NULL},
        {"crmf_upstream", 0, "\"path\": \"/\", \"trusted\": \"up-ca.pem\"", "+, \"crmf_upstream\": \"up\"",
         NULL},
        {"no path", 0, "\"trusted\": \"up-ca.pem\"", "", "$.upstreams.up.path: missing"},
        {"relative path", 0, "\"path\": \"pkix\", \"trusted\": \"up-ca.pem\"", "", "expected a path like"},
        {"dotdot path", 0, "\"path\": \"/a/../b\", \"trusted\": \"up-ca.pem\"", "", "expected a path like"},
        {"double slash", 0, "\"path\": \"/a//\", \"trusted\": \"up-ca.pem\"", "", "expected a path like"},
        {"path as number", 0, "\"path\": 7, \"trusted\": \"up-ca.pem\"", "", "expected a path like"},
        {"no verification", 0, "\"path\": \"/\"", "", "needs \"trusted\""},
        {"ref alone", 0, "\"path\": \"/\", \"ref\": \"x\"", "", "go together"},
        {"secret alone", 0, "\"path\": \"/\", \"secret_file\": \"up.secret\"", "", "go together"},
        {"bad trusted", 0, "\"path\": \"/\", \"trusted\": \"nope.pem\"", "", "$.upstreams.up.trusted"},
        {"no issuer_ca", 1,
         "\"type\": \"cmp\", \"url\": \"http://127.0.0.1:9\", \"path\": \"/\", \"trusted\": \"up-ca.pem\"",
         "", "$.upstreams.up.issuer_ca: missing"},
        {"vault key on cmp", 0, "\"path\": \"/\", \"trusted\": \"up-ca.pem\", \"mount\": \"pki\"", "",
         "not valid for a \"cmp\" upstream"},
        {"crmf_upstream on cfssl", 0, "\"path\": \"/\", \"trusted\": \"up-ca.pem\"",
         "+, \"crmf_upstream\": \"json\"", "CRMF requests need a cmp or local upstream"},
        {"unknown crmf_upstream", 0, "\"path\": \"/\", \"trusted\": \"up-ca.pem\"",
         "+, \"crmf_upstream\": \"nope\"", "unknown upstream \"nope\""},
    };
    char up[512], err[GW_ERR_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_config *cfg;

        err[0] = '\0';
        snprintf(up, sizeof(up), "%s%s", cases[i].no_base ? "" : CMP_BASE, cases[i].keys);
        cfg = config(up, cases[i].role, err);
        if (cases[i].want == NULL) {
            if (cfg == NULL)
                fail_msg("%s: %s", cases[i].name, err);
            assert_string_equal(gw_upstream_conf_type(&cfg->upstreams[0]), "cmp");
            assert_ptr_equal(cfg->upstream_signer.key, cfg->signer.key);
            if (cases[i].role[0] == '+')
                assert_ptr_equal(cfg->roles[0].crmf_upstream, &cfg->upstreams[0]);
        } else if (cfg != NULL || strstr(err, cases[i].want) == NULL) {
            fail_msg("%s: want \"%s\", got \"%s\"", cases[i].name, cases[i].want,
                     cfg != NULL ? "(valid)" : err);
        }
        gw_config_free(cfg);
    }
}

/* ---- sign and revoke ---- */

struct run {
    struct gw_config *cfg;
    struct gw_upstream_set *set;
    struct gw_upstream *up;
};

static void run_open(struct run *r, int port)
{
    char up[512], err[GW_ERR_LEN] = "";

    r->cfg = config(pbm_upstream(port, up, sizeof(up)), "", err);
    if (r->cfg == NULL)
        fail_msg("%s", err);
    if ((r->set = gw_upstream_set_new(r->cfg->upstreams, r->cfg->n_upstreams, r->cfg->roles, r->cfg->n_roles,
                                      &r->cfg->upstream_signer, err)) == NULL)
        fail_msg("%s", err);
    assert_non_null(r->up = gw_upstream_set_get0(r->set, "up"));
}

static void run_close(struct run *r)
{
    gw_upstream_set_free(r->set);
    gw_config_free(r->cfg);
}

static void sign(struct run *r, EVP_PKEY *key, struct gw_sign_result *res)
{
    struct gw_cert_plan plan;

    gw_cert_plan_init(&plan);
    plan.subject = X509_NAME_new();
    X509_NAME_add_entry_by_txt(plan.subject, "CN", MBSTRING_ASC, (const unsigned char *)"dev", -1, -1, 0);
    plan.pubkey = key;
    EVP_PKEY_up_ref(key);
    plan.key_usage = KU_DIGITAL_SIGNATURE;
    plan.ext_key_usage = GW_EKU_CLIENT_AUTH;
    plan.not_after = time(NULL) + 3 * 86400;
    gw_upstream_sign_wait(
        r->up, &(struct gw_sign_req){.role = &r->cfg->roles[0], .plan = &plan, .request_id = "t"}, res);
    gw_cert_plan_cleanup(&plan);
}

static void test_issue(void **state)
{
    struct server s;
    struct run r;
    struct gw_sign_result res;

    (void)state;
    server_start(&s, M_ISSUE);
    run_open(&r, s.port);
    sign(&r, client_key, &res);
    assert_int_equal(res.status, 0);
    assert_non_null(res.cert);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(res.cert), client_key), 1);
    assert_int_equal(sk_X509_num(res.chain), 1);
    gw_sign_result_cleanup(&res);
    run_close(&r);
    server_stop(&s);
    /* one ir (raVerified, PBM: the server verified both), then the upstream certConf */
    assert_int_equal(s.n_requests, 2);
    assert_int_equal(s.bodies[0], BODY_IR);
    assert_int_equal(s.bodies[1], BODY_CERTCONF);
}

struct fail_case {
    const char *name;
    enum mode mode;
    int fail_info;
    const char *want;
};

static void test_failures(void **state)
{
    static const struct fail_case cases[] = {
        {"rejected", M_REJECT, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "upstream CA: no such?profile"},
        {"wrong key", M_WRONG_KEY, OSSL_CMP_PKIFAILUREINFO_systemFailure, "unusable certificate"},
        {"http 500", M_HTTP500, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "answered HTTP 500"},
        {"content type", M_CTYPE, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "not application/pkixcmp"},
        {"garbage", M_GARBAGE, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "not a PKIMessage"},
        {"truncated", M_TRUNC, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "not a PKIMessage"},
        {"oversized", M_BIG, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "too large"},
        {"silent", M_SILENT, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "the outcome is unknown"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct server s;
        struct run r;
        struct gw_sign_result res;

        server_start(&s, cases[i].mode);
        run_open(&r, s.port);
        sign(&r, client_key, &res);
        if (res.status == 0 || res.fail_info != cases[i].fail_info ||
            strstr(res.reason, cases[i].want) == NULL)
            fail_msg("%s: status %d failInfo %d reason \"%s\"", cases[i].name, res.status, res.fail_info,
                     res.reason);
        assert_null(res.cert);
        gw_sign_result_cleanup(&res);
        run_close(&r);
        server_stop(&s);
    }
}

static void test_down(void **state)
{
    struct run r;
    struct gw_sign_result res;
    int fd, port = dead_port(&fd);

    (void)state;
    run_open(&r, port);
    sign(&r, client_key, &res);
    assert_int_equal(res.fail_info, OSSL_CMP_PKIFAILUREINFO_systemUnavail);
    assert_non_null(strstr(res.reason, "upstream CA up could not be reached, it is unavailable"));
    assert_null(strstr(res.reason, "127.0.0.1")); /* the URL is the log's only */
    assert_null(res.cert);
    gw_sign_result_cleanup(&res);
    /* a revocation the upstream cannot take is an error the engine records */
    {
        char err[GW_ERR_LEN] = "";
        X509 *x = make_cert("issued", client_key, 0);

        assert_int_not_equal(gw_upstream_revoke(r.up, x, CRL_REASON_CESSATION_OF_OPERATION, err), 0);
        assert_non_null(strstr(err, "unavailable"));
        X509_free(x);
    }
    run_close(&r);
    close(fd);
}

static void test_caps(void **state)
{
    (void)state;
    assert_int_equal(gw_upstream_cmp_ops.caps,
                     GW_UP_SIGN_KEY | GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_REVOKE_REASON);
    assert_non_null(gw_upstream_cmp_ops.revoke);
    assert_null(gw_upstream_cmp_ops.role_policy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps),     cmocka_unit_test(test_config_rows), cmocka_unit_test(test_issue),
        cmocka_unit_test(test_failures), cmocka_unit_test(test_down),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
