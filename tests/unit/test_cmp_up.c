/*
 * upstream/cmp_up.c (the "cmp" upstream, docs/cmp-relay.md) against a scripted CMP CA on loopback:
 * an OSSL_CMP_SRV_CTX behind a tiny HTTP server (PBM-protected both ways) that issues, rejects with
 * failInfo and text, issues for the wrong key or outside the role (the certConf rejects those), or
 * answers the certConf with an error; and transport twins (HTTP 500, wrong content type,
 * garbage, truncated DER, an oversized answer, no answer, nobody listening). Also the config rows of
 * a cmp upstream and of "crmf_upstream", each valid case with its invalid twins.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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
#include "base/clock.h"
#include "base/limits.h"
#include "gateway/cmp/shim.h"
#include "upstream/upstream.h"
#include "upstream/upstream_test.h"
#include "tests/unit/testutil.h"

#define SECRET "cmp-upstream-pbm-secret"
#define REF "gateway-ra"
#define REQ_MAX (64 * 1024)
#define BODY_IR 0 /* PKIBody CHOICE tags (RFC 9810 §5.1.2); OpenSSL keeps them internal */
#define BODY_CERTCONF 24
#define BODY_RR 11
#define BODY_P10CR 4

static char dir[64];
static EVP_PKEY *ca_key, *client_key, *other_key, *ra_key, *gw_key;
static X509 *ca, *ra; /* ra: "cmp upstream RA", issued by |ca|, signs some answers */

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

/* A certificate for |key| named |cn|, issued by |issuer| with |issuer_key| (NULL: self-signed). */
static X509 *make_cert_by(const char *cn, EVP_PKEY *key, int is_ca, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX ctx;
    X509_EXTENSION *e;

    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), is_ca ? 1 : 42);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, issuer == NULL ? n : X509_get_subject_name(issuer));
    X509_set_pubkey(x, key);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509V3_set_ctx(&ctx, issuer == NULL ? x : issuer, x, NULL, NULL, 0);
    /* well-formed for X509_V_FLAG_X509_STRICT, which the gateway's trust stores set */
    e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "CA:FALSE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    if (issuer != NULL) {
        e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (is_ca) {
        e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256());
    X509_NAME_free(n);
    return x;
}

/* The test CA's own certificate (|is_ca|: self-signed), or one it issued. */
static X509 *make_cert(const char *cn, EVP_PKEY *key, int is_ca)
{
    return is_ca ? make_cert_by(cn, key, 1, NULL, NULL) : make_cert_by(cn, key, 0, ca, ca_key);
}

static void put_cert(const char *name, X509 *x)
{
    char path[256];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(fp = fopen(path, "w"));
    assert_int_equal(PEM_write_X509(fp, x), 1);
    fclose(fp);
}

/*
 * The gateway's signer, "gw.pem" and "gw.key": an RA certificate of |ca| with a name of the gateway's
 * own, which no certificate it asks for on a client's behalf may carry.
 */
static int put_signer(void)
{
    X509 *x = make_cert("gateway RA", gw_key = EVP_EC_gen("P-256"), 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "DNS:gw.example.com");
    char path[256];
    FILE *fp;
    int ok = e != NULL && X509_add_ext(x, e, -1) == 1 && X509_sign(x, ca_key, EVP_sha256()) > 0;

    X509_EXTENSION_free(e);
    if (ok)
        put_cert("gw.pem", x);
    X509_free(x);
    snprintf(path, sizeof(path), "%s/gw.key", dir);
    if (!ok || (fp = fopen(path, "w")) == NULL)
        return -1;
    ok = fchmod(fileno(fp), 0600) == 0 && PEM_write_PrivateKey(fp, gw_key, NULL, NULL, 0, NULL, NULL) == 1;
    fclose(fp);
    return ok ? 0 : -1;
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
    ra_key = EVP_EC_gen("P-256");
    ca = make_cert("cmp upstream test CA", ca_key, 1);
    ra = make_cert("cmp upstream RA", ra_key, 0);
    snprintf(path, sizeof(path), "%s/up-ca.pem", dir);
    if ((fp = fopen(path, "w")) == NULL || PEM_write_X509(fp, ca) != 1)
        return -1;
    fclose(fp);
    put_file("up.secret", SECRET, strlen(SECRET));
    put_cert("ra.pem", ra);
    if (put_signer() != 0)
        return -1;
    {
        /* two CAs of two names in one file */
        X509 *ca2 = make_cert_by("another CA", other_key, 1, NULL, NULL);

        snprintf(path, sizeof(path), "%s/two-cas.pem", dir);
        if ((fp = fopen(path, "w")) == NULL || PEM_write_X509(fp, ca) != 1 || PEM_write_X509(fp, ca2) != 1)
            return -1;
        fclose(fp);
        X509_free(ca2);
    }
    return ca_key != NULL && client_key != NULL && other_key != NULL && ra_key != NULL && ca != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    char cmd[128];

    (void)state;
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(client_key);
    EVP_PKEY_free(other_key);
    EVP_PKEY_free(ra_key);
    EVP_PKEY_free(gw_key);
    X509_free(ca);
    X509_free(ra);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- the scripted CMP CA ---- */

/*
 * M_UNCONFIRMED: issues as planned, and answers the certConf with an error; M_OUTSIDE: issues for a
 * subject the request did not ask for; M_OUTSIDE_UNCONFIRMED: and answers the certConf with an error.
 * M_EXTRA: issues, with one extraCert past GW_MAX_UPSTREAM_EXTRA_CERTS in its answers. M_OTHER_TID:
 * issues, in an ip of another transactionID, protected as every answer (a CA mixing up its
 * transactions, or a replay of another's answer). M_GONE_AFTER_IP: issues, closing the connection with
 * its ip, and stops listening: the certConf finds nobody (a CA that went down between the two).
 */
enum mode {
    M_ISSUE,
    M_REJECT,
    M_WRONG_KEY,
    M_UNCONFIRMED,
    M_OUTSIDE,
    M_OUTSIDE_UNCONFIRMED,
    M_HTTP500,
    M_CTYPE,
    M_GARBAGE,
    M_TRUNC,
    M_BIG,
    M_SILENT,
    M_HELD, /* silent for 3 s, past any end a test lowers */
    M_EXTRA,
    M_OTHER_TID,
    M_GONE_AFTER_IP
};

/*
 * How it protects its answers, read for each connection (one per exchange): PBM under the name
 * |sender| (NULL: the CA's), or, with |rsp_cert|, signed with it and |rsp_key| (the gateway's PBM
 * request is then taken unverified). |capubs| goes into its ip.
 */
struct server {
    int fd, port;
    enum mode mode;
    pthread_t thread;
    int n_requests;
    int bodies[4]; /* the body types it saw */
    const char *sender;
    X509 *rsp_cert;
    EVP_PKEY *rsp_key;
    X509 *capubs;
    unsigned char rr_named[64]; /* issuer and serial of the last rr, their DER one after the other */
    int rr_named_len;
    int req_fail;    /* M_REJECT: the failInfo bit that rejects an ir or p10cr (badCertTemplate unless set) */
    int req_more;    /* M_REJECT: more failInfo bits beside it (a mask; none unless set) */
    int rr_fail;     /* M_REJECT: the failInfo bit that rejects an rr (certRevoked unless set) */
    int rr_more;     /* M_REJECT: more failInfo bits beside it (a mask; none unless set) */
    int tmpl_sans;   /* the subjectAltNames in the last ir's template; -1: no such extension */
    int tmpl_issuer; /* whether that template names an issuer */
    long tmpl_secs;  /* the validity that template asks for, notBefore to notAfter; 0: none */
    const char *reject_text; /* M_REJECT: the statusString of a rejected ir or p10cr ("no such\nprofile") */
    char conf_status[256];   /* the status of the last certConf, as OpenSSL prints it; "" if it had none */
    pthread_mutex_t lock;    /* the test changes the protection between exchanges */
};

static OSSL_CMP_PKISI *srv_cert_req(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int id,
                                    const OSSL_CRMF_MSG *crm, const X509_REQ *p10, X509 **cert,
                                    STACK_OF(X509) **chain, STACK_OF(X509) **capubs)
{
    struct server *s = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
    const char *text;
    int fail;

    (void)req, (void)id, (void)p10, (void)chain;
    if (crm != NULL) {
        const OSSL_CRMF_CERTTEMPLATE *tmpl = OSSL_CRMF_MSG_get0_tmpl(crm);
        GENERAL_NAMES *sans =
            X509V3_get_d2i(OSSL_CRMF_CERTTEMPLATE_get0_extensions(tmpl), NID_subject_alt_name, NULL, NULL);

        s->tmpl_sans = sk_GENERAL_NAME_num(sans);
        time_t nb, na;

        s->tmpl_issuer = OSSL_CRMF_CERTTEMPLATE_get0_issuer(tmpl) != NULL;
        s->tmpl_secs = gw_shim_tmpl_validity(crm, &nb, &na) == 0 && na != 0 ? (long)(na - nb) : -1;
        GENERAL_NAMES_free(sans);
    }
    pthread_mutex_lock(&s->lock);
    if (s->capubs != NULL && (*capubs = sk_X509_new_null()) != NULL && X509_up_ref(s->capubs) == 1)
        sk_X509_push(*capubs, s->capubs);
    pthread_mutex_unlock(&s->lock);
    if (s->mode == M_REJECT) {
        pthread_mutex_lock(&s->lock);
        fail = 1 << s->req_fail | s->req_more;
        text = s->reject_text != NULL ? s->reject_text : "no such\nprofile";
        pthread_mutex_unlock(&s->lock);
        return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, fail, text);
    }
    *cert = make_cert(s->mode == M_OUTSIDE || s->mode == M_OUTSIDE_UNCONFIRMED ? "issued" : "dev",
                      s->mode == M_WRONG_KEY ? other_key : client_key, 0);
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

static int srv_certconf(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int id, const ASN1_OCTET_STRING *hash,
                        const OSSL_CMP_PKISI *si)
{
    struct server *s = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);

    (void)req, (void)id, (void)hash;
    s->conf_status[0] = '\0';
    if (si != NULL)
        OSSL_CMP_snprint_PKIStatusInfo(si, s->conf_status, sizeof(s->conf_status));
    return s->mode != M_UNCONFIRMED && s->mode != M_OUTSIDE_UNCONFIRMED;
}

static OSSL_CMP_PKISI *srv_rr(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
                              const ASN1_INTEGER *serial)
{
    struct server *s = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
    unsigned char *p = s->rr_named;
    int n = i2d_X509_NAME(issuer, NULL), m = i2d_ASN1_INTEGER(serial, NULL), fail;

    (void)req;
    if (n > 0 && m > 0 && n + m <= (int)sizeof(s->rr_named)) {
        i2d_X509_NAME(issuer, &p);
        i2d_ASN1_INTEGER(serial, &p);
        s->rr_named_len = n + m;
    }
    if (s->mode == M_REJECT) {
        pthread_mutex_lock(&s->lock);
        fail = 1 << s->rr_fail | s->rr_more;
        pthread_mutex_unlock(&s->lock);
        return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, fail, "no\nway");
    }
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

static int quiet(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
    (void)func, (void)file, (void)line, (void)level, (void)msg;
    return 1;
}

/* |n| distinct certificates into the extraCerts of every answer made with |ctx|. */
static void set_extra_certs(OSSL_CMP_CTX *ctx, int n)
{
    STACK_OF(X509) *extra = sk_X509_new_null();
    char cn[32];

    for (int i = 0; i < n; i++) {
        snprintf(cn, sizeof(cn), "extra %d", i);
        assert_true(sk_X509_push(extra, make_cert(cn, other_key, 0)) > 0);
    }
    assert_int_equal(OSSL_CMP_CTX_set1_extraCertsOut(ctx, extra), 1);
    sk_X509_pop_free(extra, X509_free);
}

static OSSL_CMP_SRV_CTX *new_srv(struct server *s)
{
    OSSL_CMP_SRV_CTX *srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);
    OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(srv);
    X509_NAME *sender = NULL;

    assert_int_equal(OSSL_CMP_SRV_CTX_init(srv, s, srv_cert_req, srv_rr, NULL, NULL, srv_certconf, NULL), 1);
    OSSL_CMP_SRV_CTX_set_accept_raverified(srv, 1);
    pthread_mutex_lock(&s->lock);
    if (s->rsp_cert != NULL) {
        /* it cannot verify the gateway's PBM request, and need not say so */
        assert_int_equal(OSSL_CMP_CTX_set_log_cb(ctx, quiet), 1);
        assert_int_equal(OSSL_CMP_CTX_set1_cert(ctx, s->rsp_cert), 1);
        assert_int_equal(OSSL_CMP_CTX_set1_pkey(ctx, s->rsp_key), 1);
        OSSL_CMP_SRV_CTX_set_accept_unprotected(srv, 1);
    } else {
        assert_int_equal(OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *)SECRET, strlen(SECRET)),
                         1);
        assert_int_equal(OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)"ca", 2), 1);
        /* a PBM answer's sender is the server's subjectName, the NULL-DN without one */
        sender = s->sender == NULL ? X509_NAME_dup(X509_get_subject_name(ca)) : X509_NAME_new();
        if (s->sender != NULL)
            X509_NAME_add_entry_by_txt(sender, "CN", MBSTRING_ASC, (const unsigned char *)s->sender, -1, -1,
                                       0);
        assert_int_equal(OSSL_CMP_CTX_set1_subjectName(ctx, sender), 1);
        X509_NAME_free(sender);
    }
    pthread_mutex_unlock(&s->lock);
    if (s->mode == M_EXTRA)
        set_extra_certs(ctx, GW_MAX_UPSTREAM_EXTRA_CERTS + 1);
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
    if (req != NULL && (rsp = OSSL_CMP_SRV_process_request(srv, req)) != NULL && s->mode == M_OTHER_TID) {
        OSSL_CMP_CTX *ctx = OSSL_CMP_SRV_CTX_get0_cmp_ctx(srv);

        /* none in the context: a fresh random one, the answer protected anew */
        assert_int_equal(OSSL_CMP_CTX_set1_transactionID(ctx, NULL), 1);
        assert_int_equal(OSSL_CMP_MSG_update_transactionID(ctx, rsp), 1);
    }
    if (rsp != NULL)
        n = i2d_OSSL_CMP_MSG(rsp, &der);
    /* M_GONE_AFTER_IP: a header more, so that the certConf needs a connection of its own */
    answer(c, "200 OK",
           s->mode == M_GONE_AFTER_IP ? "application/pkixcmp\r\nConnection: close" : "application/pkixcmp",
           der, n > 0 ? (size_t)n : 0);
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(req);
    OSSL_CMP_MSG_free(rsp);
}

static void *serve(void *arg)
{
    static const unsigned char trunc[] = {0x30, 0x82, 0x01, 0x00, 0x30, 0x10, 0x02, 0x01};
    struct server *s = arg;
    unsigned char *buf = malloc(REQ_MAX), *big;
    int c;
    long len;

    /* one connection per exchange, until server_stop */
    while ((c = accept(s->fd, NULL, NULL)) >= 0) {
        OSSL_CMP_SRV_CTX *srv = new_srv(s);

        len = 0; /* -1 ends the connection after an answer */
        while (len >= 0 && (len = read_request(c, buf, REQ_MAX)) >= 0) {
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
            case M_HELD:
                poll(NULL, 0, 3000);
                break;
            case M_GONE_AFTER_IP:
                serve_cmp(s, srv, c, buf, len);
                shutdown(s->fd, SHUT_RDWR); /* no longer listening: a connection to it is refused */
                len = -1;
                break;
            default:
                serve_cmp(s, srv, c, buf, len);
            }
        }
        close(c);
        OSSL_CMP_SRV_CTX_free(srv);
    }
    free(buf);
    return NULL;
}

static void server_start(struct server *s, enum mode mode)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);

    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->req_fail = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
    s->rr_fail = OSSL_CMP_PKIFAILUREINFO_certRevoked;
    pthread_mutex_init(&s->lock, NULL);
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
    pthread_mutex_destroy(&s->lock);
}

/*
 * From the next exchange on: answers signed with |cert| and |key|, or (|cert| NULL) PBM-protected
 * under the name CN=|pbm_sender| (NULL: the CA's name).
 */
static void server_answer_as(struct server *s, X509 *cert, EVP_PKEY *key, const char *pbm_sender)
{
    pthread_mutex_lock(&s->lock);
    s->rsp_cert = cert;
    s->rsp_key = key;
    s->sender = pbm_sender;
    pthread_mutex_unlock(&s->lock);
}

/* From the next request on (M_REJECT): |which| (req_fail or rr_fail of |s|) is |bit|. */
static void server_reject(struct server *s, int *which, int bit)
{
    pthread_mutex_lock(&s->lock);
    *which = bit;
    pthread_mutex_unlock(&s->lock);
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
    "\"signer\": {\"cert\": \"gw.pem\", \"key\": \"gw.key\"},"                                               \
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
        assert_int_equal(fchmod(fileno(fp), 0600), 0); /* a key others may read is refused */
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

/* |timeout|: long enough for an exchange on a loaded machine (under ASan too), except where a test
 * waits for it to pass. */
static const char *pbm_upstream(int port, const char *timeout, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "\"type\": \"cmp\", \"url\": \"http://127.0.0.1:%d\", \"path\": \"/pkix/\", \"ref\": \"" REF
             "\", "
             "\"secret_file\": \"up.secret\", \"issuer_ca\": \"up-ca.pem\", \"timeout\": \"%s\"",
             port, timeout);
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
        /* who may answer: a pinned certificate, a name, or issuer_ca's one name */
        {"expected_sender", 0,
         "\"path\": \"/\", \"trusted\": \"up-ca.pem\", \"expected_sender\": \"/O=Example/CN=CMP RA\"", "",
         NULL},
        {"server_cert", 0, "\"path\": \"/\", \"server_cert\": \"ra.pem\"", "", NULL},
        {"server_cert and pbm", 0,
         "\"path\": \"/\", \"server_cert\": \"ra.pem\", \"ref\": \"x\", \"secret_file\": \"up.secret\"", "",
         NULL},
        {"server_cert and expected_sender", 0,
         "\"path\": \"/\", \"server_cert\": \"ra.pem\", \"expected_sender\": \"/CN=cmp upstream RA\"", "",
         "$.upstreams.up.server_cert: not together with \"expected_sender\""},
        {"server_cert and trusted", 0,
         "\"path\": \"/\", \"server_cert\": \"ra.pem\", \"trusted\": \"up-ca.pem\"", "",
         "$.upstreams.up.server_cert: not together with \"trusted\""},
        {"server_cert of two", 0, "\"path\": \"/\", \"server_cert\": \"two-cas.pem\"", "",
         "holds 2 certificates"},
        {"bad server_cert", 0, "\"path\": \"/\", \"server_cert\": \"nope.pem\"", "",
         "$.upstreams.up.server_cert"},
        {"issuer_ca of two names", 1,
         "\"type\": \"cmp\", \"url\": \"http://127.0.0.1:9\", \"issuer_ca\": \"two-cas.pem\", \"path\": "
         "\"/\", "
         "\"trusted\": \"up-ca.pem\"",
         "", "$.upstreams.up.issuer_ca: \"issuer_ca\" holds CAs of several names"},
        {"issuer_ca of two names, named", 1,
         "\"type\": \"cmp\", \"url\": \"http://127.0.0.1:9\", \"issuer_ca\": \"two-cas.pem\", \"path\": "
         "\"/\", "
         "\"trusted\": \"up-ca.pem\", \"expected_sender\": \"/CN=another CA\"",
         "", NULL},
        {"sender not one-line", 0,
         "\"path\": \"/\", \"trusted\": \"up-ca.pem\", \"expected_sender\": \"CN=x,O=y\"", "",
         "$.upstreams.up.expected_sender: expected a distinguished name"},
        {"sender multi-valued", 0,
         "\"path\": \"/\", \"trusted\": \"up-ca.pem\", \"expected_sender\": \"/CN=x+OU=y\"", "",
         "expected a distinguished name"},
        {"sender unknown type", 0,
         "\"path\": \"/\", \"trusted\": \"up-ca.pem\", \"expected_sender\": \"/XYZ=x\"", "",
         "expected a distinguished name"},
        {"sender empty value", 0,
         "\"path\": \"/\", \"trusted\": \"up-ca.pem\", \"expected_sender\": \"/O=x/CN=\"", "",
         "expected a distinguished name"},
        {"sender trailing slash", 0,
         "\"path\": \"/\", \"trusted\": \"up-ca.pem\", \"expected_sender\": \"/CN=x/\"", "",
         "expected a distinguished name"},
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

/* The upstream |up| (its JSON object's keys) as "up". */
static void run_open_up(struct run *r, const char *up)
{
    char err[GW_ERR_LEN] = "";

    r->cfg = config(up, "", err);
    if (r->cfg == NULL)
        fail_msg("%s", err);
    if ((r->set = gw_upstream_set_new(r->cfg->upstreams, r->cfg->n_upstreams, r->cfg->roles, r->cfg->n_roles,
                                      &r->cfg->upstream_signer, NULL, NULL, err)) == NULL)
        fail_msg("%s", err);
    assert_non_null(r->up = gw_upstream_set_get0(r->set, "up"));
}

/* The PBM upstream at |port| answering within |timeout|, with |keys| (", \"trusted\": ..." or "") added. */
static void run_open_timed(struct run *r, int port, const char *timeout, const char *keys)
{
    char up[512], all[768];

    snprintf(all, sizeof(all), "%s%s", pbm_upstream(port, timeout, up, sizeof(up)), keys);
    run_open_up(r, all);
}

static void run_open_with(struct run *r, int port, const char *keys)
{
    run_open_timed(r, port, "10s", keys);
}

static void run_open(struct run *r, int port)
{
    run_open_with(r, port, "");
}

static void run_close(struct run *r)
{
    gw_upstream_set_free(r->set);
    gw_config_free(r->cfg);
}

/* An ir for |key|, or with |csr| a p10cr of it, planned to end |secs| from now. */
static void sign_for(struct run *r, EVP_PKEY *key, X509_REQ *csr, time_t secs, struct gw_sign_result *res)
{
    struct gw_cert_plan plan;

    gw_cert_plan_init(&plan);
    plan.subject = X509_NAME_new();
    X509_NAME_add_entry_by_txt(plan.subject, "CN", MBSTRING_ASC, (const unsigned char *)"dev", -1, -1, 0);
    plan.pubkey = key;
    EVP_PKEY_up_ref(key);
    plan.key_usage = KU_DIGITAL_SIGNATURE;
    plan.ext_key_usage = GW_EKU_CLIENT_AUTH;
    plan.not_after = time(NULL) + secs;
    gw_upstream_sign_wait(
        r->up, &(struct gw_sign_req){.role = &r->cfg->roles[0], .plan = &plan, .csr = csr, .request_id = "t"},
        res);
    gw_cert_plan_cleanup(&plan);
}

/* An ir for |key|, or with |csr| a p10cr of it. */
static void sign_req(struct run *r, EVP_PKEY *key, X509_REQ *csr, struct gw_sign_result *res)
{
    sign_for(r, key, csr, 3 * 86400, res);
}

static void sign(struct run *r, EVP_PKEY *key, struct gw_sign_result *res)
{
    sign_req(r, key, NULL, res);
}

/* A CSR for /CN=dev, self-signed by |key| (its proof of possession). */
static X509_REQ *make_csr(EVP_PKEY *key)
{
    X509_REQ *csr = X509_REQ_new();

    assert_non_null(csr);
    assert_true(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(csr), "CN", MBSTRING_ASC,
                                           (const unsigned char *)"dev", -1, -1, 0) == 1);
    assert_true(X509_REQ_set_pubkey(csr, key) == 1);
    assert_true(X509_REQ_sign(csr, key, EVP_sha256()) > 0);
    return csr;
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

/*
 * The ir asks the CA for the plan's whole days (CMP 3.0 offers no other validity), counting a day the plan
 * falls short of by a moment: OpenSSL's client counts "-days 3" from its own clock, before the gateway's.
 * Short of it by more, or less than a day, is fewer days, or no validity (the CA's choice, checked on
 * return).
 */
static void test_issue_validity_days(void **state)
{
    static const struct {
        time_t secs;    /* the plan's notAfter, from now */
        long want_days; /* asked of the CA; -1: no validity */
    } cases[] = {
        {3 * 86400, 3}, {3 * 86400 - 2, 3}, {3 * 86400 - 10 * 60, 2}, {86400 - 2, 1}, {86400 - 10 * 60, -1},
    };
    struct server s;
    struct run r;

    (void)state;
    server_start(&s, M_ISSUE);
    run_open(&r, s.port);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_sign_result res;

        sign_for(&r, client_key, NULL, cases[i].secs, &res);
        assert_int_equal(res.status, 0);
        gw_sign_result_cleanup(&res);
        if (s.tmpl_secs != (cases[i].want_days < 0 ? -1 : cases[i].want_days * 86400))
            fail_msg("plan ending in %ld s: the template asks %ld s, want %ld days", (long)cases[i].secs,
                     s.tmpl_secs, cases[i].want_days);
    }
    run_close(&r);
    server_stop(&s);
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
        {"certConf unanswered", M_UNCONFIRMED, OSSL_CMP_PKIFAILUREINFO_systemFailure,
         "upstream CA: did not confirm the certificate it issued ("},
        {"http 500", M_HTTP500, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
         "upstream CA up gave no usable answer, it is unavailable: it answered HTTP 500"},
        {"content type", M_CTYPE, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "not application/pkixcmp"},
        {"garbage", M_GARBAGE, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "not a PKIMessage"},
        {"truncated", M_TRUNC, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "not a PKIMessage"},
        {"oversized", M_BIG, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "too large"},
        {"extraCerts", M_EXTRA, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "extraCerts, more than 32"},
        /* it took the request: reached, and it may have issued */
        {"silent", M_SILENT, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
         "upstream CA up did not answer in time (none within 300 ms); the outcome is unknown"},
        {"another transactionID", M_OTHER_TID, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
         "gave no usable answer (transactionid unmatched"},
        /* the ir reached it and it issued: its certConf finding nobody makes it no CA "not reached"
           (refused, or reset where it came before the listener shut: libcurl's words differ) */
        {"gone after its ip", M_GONE_AFTER_IP, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
         "upstream CA up did not answer ("},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct server s;
        struct run r;
        struct gw_sign_result res;

        server_start(&s, cases[i].mode);
        run_open_timed(&r, s.port, cases[i].mode == M_SILENT ? "300ms" : "10s", ""); /* silent: waited out */
        sign(&r, client_key, &res);
        /* silent: the blocking wait (gw_upstream_sign_wait) has the same 300 ms as the exchange, and on a
           loaded machine it may end first, in its own words */
        if (res.status == 0 || res.fail_info != cases[i].fail_info ||
            (strstr(res.reason, cases[i].want) == NULL &&
             (cases[i].mode != M_SILENT || strstr(res.reason, "upstream up did not answer within 300 ms; the "
                                                              "outcome is unknown") == NULL)))
            fail_msg("%s: status %d failInfo %d reason \"%s\"", cases[i].name, res.status, res.fail_info,
                     res.reason);
        /* the CA took the request and answered: whether it issued is not for the gateway to say (the CA of
           M_OTHER_TID did, in an answer OpenSSL refused) */
        if (cases[i].mode == M_GONE_AFTER_IP || cases[i].mode == M_OTHER_TID)
            assert_non_null(strstr(res.reason, "); the outcome is unknown"));
        /* so for every answer that is no CMP answer: it came after the ir left (a proxy's, or the CA's ip
           garbled or over a cap), and a retry may have a second certificate issued */
        if (cases[i].fail_info == OSSL_CMP_PKIFAILUREINFO_systemUnavail &&
            strstr(res.reason, "; the outcome is unknown") == NULL)
            fail_msg("%s: reason \"%s\" leaves out the unknown outcome", cases[i].name, res.reason);
        assert_null(strstr(res.reason, "nothing was issued"));
        /* a certificate was issued all the same: handed on, to be revoked unless the CA took it back */
        if (cases[i].mode == M_WRONG_KEY || cases[i].mode == M_UNCONFIRMED ||
            cases[i].mode == M_GONE_AFTER_IP)
            assert_non_null(res.cert);
        else
            assert_null(res.cert);
        assert_int_equal(res.rejected_to_ca, cases[i].mode == M_WRONG_KEY);
        gw_sign_result_cleanup(&res);
        run_close(&r);
        server_stop(&s);
    }
}

/*
 * A CMP CA's rejection of an ir: one of the gateway's own message or credentials at the CA is no
 * failInfo of the client's, but the CA's trouble (retry later), its text for the log only; a refusal
 * of what was asked keeps the CA's failInfo and text. Once, the client was told badMessageCheck or
 * notAuthorized, as if its own credentials were wrong, and its address paid for it.
 */
static void test_sign_refusals(void **state)
{
    static const char *const gateway =
        "upstream CA up did not accept the gateway's own request (its "
        "credentials or configuration at the CA); nothing was issued, retry later";
    static const char *const tid = "upstream CA up had the gateway's own transactionID in use; nothing was "
                                   "issued, retry later";
    static const char *const quoted = "upstream CA: no such?profile";
    static const struct {
        int fail;         /* the CA's failInfo bit */
        int p10;          /* whether the request is a p10cr */
        int fail_info;    /* what the client is told */
        const char *want; /* and why */
    } cases[] = {
        {OSSL_CMP_PKIFAILUREINFO_badMessageCheck, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, gateway},
        {OSSL_CMP_PKIFAILUREINFO_signerNotTrusted, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, gateway},
        {OSSL_CMP_PKIFAILUREINFO_notAuthorized, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, gateway},
        {OSSL_CMP_PKIFAILUREINFO_wrongAuthority, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, gateway},
        {OSSL_CMP_PKIFAILUREINFO_badTime, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, gateway},
        {OSSL_CMP_PKIFAILUREINFO_wrongIntegrity, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, gateway},
        {OSSL_CMP_PKIFAILUREINFO_badSenderNonce, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, gateway},
        {OSSL_CMP_PKIFAILUREINFO_badCertTemplate, 0, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, quoted},
        /* an ir's POPO is the gateway's raVerified, a p10cr's the client's own CSR signature */
        {OSSL_CMP_PKIFAILUREINFO_badPOP, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, gateway},
        {OSSL_CMP_PKIFAILUREINFO_badPOP, 1, OSSL_CMP_PKIFAILUREINFO_badPOP, quoted},
        /* the upstream transactionID is the gateway's, whichever request carries it */
        {OSSL_CMP_PKIFAILUREINFO_transactionIdInUse, 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, tid},
        {OSSL_CMP_PKIFAILUREINFO_transactionIdInUse, 1, OSSL_CMP_PKIFAILUREINFO_systemUnavail, tid},
        {OSSL_CMP_PKIFAILUREINFO_badRequest, 0, OSSL_CMP_PKIFAILUREINFO_badRequest, quoted},
        {OSSL_CMP_PKIFAILUREINFO_badAlg, 0, OSSL_CMP_PKIFAILUREINFO_badAlg, quoted},
        {OSSL_CMP_PKIFAILUREINFO_duplicateCertReq, 0, OSSL_CMP_PKIFAILUREINFO_duplicateCertReq, quoted},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509_REQ *csr = cases[i].p10 ? make_csr(client_key) : NULL;
        struct server s;
        struct run r;
        struct gw_sign_result res;

        server_start(&s, M_REJECT);
        server_reject(&s, &s.req_fail, cases[i].fail);
        run_open(&r, s.port);
        sign_req(&r, client_key, csr, &res);
        if (res.status != GW_ERR_UPSTREAM || res.fail_info != cases[i].fail_info ||
            strcmp(res.reason, cases[i].want) != 0)
            fail_msg("failInfo bit %d, p10cr %d: status %d failInfo %d reason \"%s\"", cases[i].fail,
                     cases[i].p10, res.status, res.fail_info, res.reason);
        assert_null(res.cert);
        assert_int_equal(s.bodies[0], cases[i].p10 ? BODY_P10CR : BODY_IR);
        gw_sign_result_cleanup(&res);
        X509_REQ_free(csr);
        run_close(&r);
        server_stop(&s);
    }
}

#define BIT(name) (1 << OSSL_CMP_PKIFAILUREINFO_##name)

/*
 * A CMP CA's rejection of an ir or p10cr with more than one failInfo bit is read whole: any bit of its
 * refusal of the gateway (its message, its credentials, its transactionID) makes it that, whatever else
 * it says. Before, only the lowest bit counted: {badCertTemplate, notAuthorized} was told to the client
 * as badCertTemplate, to mend a request the CA never judged, and the refusal of the gateway went
 * unlogged. Bits of the request alone keep the lowest of them.
 */
static void test_sign_refusal_bits(void **state)
{
    static const struct {
        int fail, more; /* the lowest bit the CA sets, and the others */
        int p10;
        int fail_info; /* what the client is told */
        int gateway;   /* cmp_upstream_refused_gateway logged */
    } cases[] = {
        {OSSL_CMP_PKIFAILUREINFO_badCertTemplate, BIT(notAuthorized), 0,
         OSSL_CMP_PKIFAILUREINFO_systemUnavail, 1},
        {OSSL_CMP_PKIFAILUREINFO_badAlg, BIT(badMessageCheck), 1, OSSL_CMP_PKIFAILUREINFO_systemUnavail, 1},
        {OSSL_CMP_PKIFAILUREINFO_badRequest, BIT(signerNotTrusted), 1, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
         1},
        {OSSL_CMP_PKIFAILUREINFO_badRequest, BIT(transactionIdInUse), 0,
         OSSL_CMP_PKIFAILUREINFO_systemUnavail, 0},
        {OSSL_CMP_PKIFAILUREINFO_badPOP, BIT(badCertTemplate), 0, OSSL_CMP_PKIFAILUREINFO_systemUnavail, 1},
        {OSSL_CMP_PKIFAILUREINFO_badPOP, BIT(badCertTemplate), 1, OSSL_CMP_PKIFAILUREINFO_badPOP, 0},
        {OSSL_CMP_PKIFAILUREINFO_badAlg, BIT(badCertTemplate), 0, OSSL_CMP_PKIFAILUREINFO_badAlg, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509_REQ *csr = cases[i].p10 ? make_csr(client_key) : NULL;
        char logged[8192];
        struct tu_log l;
        struct server s;
        struct run r;
        struct gw_sign_result res;

        server_start(&s, M_REJECT);
        pthread_mutex_lock(&s.lock);
        s.req_fail = cases[i].fail;
        s.req_more = cases[i].more;
        pthread_mutex_unlock(&s.lock);
        run_open(&r, s.port);
        tu_log_capture(&l, GW_LOG_ERROR, GW_LOG_INFO);
        sign_req(&r, client_key, csr, &res);
        tu_log_release_into(&l, logged, sizeof(logged));
        if (res.status != GW_ERR_UPSTREAM || res.fail_info != cases[i].fail_info ||
            (strstr(logged, "\"event\":\"cmp_upstream_refused_gateway\"") != NULL) != cases[i].gateway)
            fail_msg("case %zu: status %d failInfo %d reason \"%s\"; logged %s", i, res.status, res.fail_info,
                     res.reason, logged);
        assert_null(res.cert);
        gw_sign_result_cleanup(&res);
        X509_REQ_free(csr);
        run_close(&r);
        server_stop(&s);
    }
}

/*
 * A CMP CA's text is quoted as every upstream's is (gw_field_text): its letters stay ("für Müller"
 * once read "f??r M??ller"), a control is '?'; the characters a reader would not see as themselves
 * are the statusString's and the log's to replace, where it is shown.
 */
static void test_sign_refusal_text(void **state)
{
    struct server s;
    struct run r;
    struct gw_sign_result res;

    (void)state;
    server_start(&s, M_REJECT);
    pthread_mutex_lock(&s.lock);
    s.reject_text = "Zertifikat f\xc3\xbcr M\xc3\xbcller\x1b[2J abgelehnt";
    pthread_mutex_unlock(&s.lock);
    run_open(&r, s.port);
    sign_req(&r, client_key, NULL, &res);
    assert_int_equal(res.status, GW_ERR_UPSTREAM);
    assert_string_equal(res.reason, "upstream CA: Zertifikat f\xc3\xbcr M\xc3\xbcller?[2J abgelehnt");
    gw_sign_result_cleanup(&res);
    run_close(&r);
    server_stop(&s);
}

/*
 * A certificate the role refuses (here: a subject the request did not ask for) is rejected in the
 * certConf, with the failInfo and text the client gets, and handed on with its serial; a CA that
 * confirmed the rejection (pkiconf) took it back, one that did not leaves it to be withdrawn.
 */
static void test_certconf_rejects(void **state)
{
    static const enum mode modes[] = {M_OUTSIDE, M_OUTSIDE_UNCONFIRMED};

    (void)state;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct server s;
        struct run r;
        struct gw_sign_result res;

        server_start(&s, modes[i]);
        run_open(&r, s.port);
        sign(&r, client_key, &res);
        if (res.status == 0 || res.fail_info != OSSL_CMP_PKIFAILUREINFO_badCertTemplate ||
            strstr(res.reason, "outside this route's policy (the CA changed the subject to /CN=issued") ==
                NULL)
            fail_msg("mode %d: status %d failInfo %d reason \"%s\"", modes[i], res.status, res.fail_info,
                     res.reason);
        assert_non_null(res.cert);
        assert_int_equal(res.rejected_to_ca, modes[i] == M_OUTSIDE);
        gw_sign_result_cleanup(&res);
        run_close(&r);
        server_stop(&s);
        assert_int_equal(s.n_requests, 2);
        assert_int_equal(s.bodies[1], BODY_CERTCONF);
        if (strstr(s.conf_status, "PKIStatus: rejection") == NULL ||
            strstr(s.conf_status, "badCertTemplate") == NULL ||
            strstr(s.conf_status, "the CA changed the subject to /CN=issued") == NULL)
            fail_msg("mode %d: the certConf said \"%s\"", modes[i], s.conf_status);
    }
}

/*
 * issuer_ca holding the CA and a sub-CA it signed: the upstream issues under the sub-CA (the one that
 * signs no other certificate of the file), so a certificate the CA signed itself chains to issuer_ca
 * but is none the upstream could withdraw or revoke: rejected in the certConf, systemFailure.
 */
static void test_certconf_rejects_another_signer(void **state)
{
    X509 *sub = make_cert_by("cmp upstream sub CA", other_key, 1, ca, ca_key);
    char up[512], path[256];
    struct gw_sign_result res;
    struct server s;
    struct run r;
    FILE *fp;

    (void)state;
    snprintf(path, sizeof(path), "%s/up-ca-sub.pem", dir);
    assert_non_null(fp = fopen(path, "w"));
    assert_int_equal(PEM_write_X509(fp, ca), 1);
    assert_int_equal(PEM_write_X509(fp, sub), 1);
    fclose(fp);
    X509_free(sub);
    server_start(&s, M_ISSUE);
    snprintf(up, sizeof(up),
             "\"type\": \"cmp\", \"url\": \"http://127.0.0.1:%d\", \"path\": \"/pkix/\", \"ref\": \"" REF
             "\", \"secret_file\": \"up.secret\", \"issuer_ca\": \"up-ca-sub.pem\", \"timeout\": \"10s\", "
             "\"expected_sender\": \"/CN=cmp upstream test CA\"",
             s.port);
    run_open_up(&r, up);
    sign(&r, client_key, &res);
    if (res.status == 0 || res.fail_info != OSSL_CMP_PKIFAILUREINFO_systemFailure ||
        strstr(res.reason,
               "the certificate upstream up returned is signed by /CN=cmp upstream test CA, not by a "
               "CA it issues under (issuer_ca)") == NULL)
        fail_msg("status %d failInfo %d reason \"%s\"", res.status, res.fail_info, res.reason);
    assert_non_null(res.cert);
    assert_int_equal(res.rejected_to_ca, 1);
    gw_sign_result_cleanup(&res);
    run_close(&r);
    server_stop(&s);
    assert_int_equal(s.n_requests, 2);
    if (strstr(s.conf_status, "PKIStatus: rejection") == NULL ||
        strstr(s.conf_status, "systemFailure") == NULL)
        fail_msg("the certConf said \"%s\"", s.conf_status);
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

/* ---- who may answer ---- */

#define WRONG_SENDER "sender is not the one expected"
#define BAD_PROTECTION "error validating protection"

/* One exchange: issued (|why| NULL), or refused as no usable answer for |why|, nothing delivered. */
static void expect_answer(struct run *r, const char *name, const char *why)
{
    struct gw_sign_result res;

    sign(r, client_key, &res);
    if (why == NULL
            ? res.status != 0 || res.cert == NULL
            : res.status == 0 || res.cert != NULL || res.fail_info != OSSL_CMP_PKIFAILUREINFO_systemUnavail ||
                  strstr(res.reason, "gave no usable answer") == NULL || strstr(res.reason, why) == NULL)
        fail_msg("%s: want %s, got status %d failInfo %d reason \"%s\"", name, why == NULL ? "issued" : why,
                 res.status, res.fail_info, res.reason);
    gw_sign_result_cleanup(&res);
}

struct answer_case {
    const char *name;
    const char *keys; /* added to the PBM upstream */
    X509 *cert;       /* the answers' signer; NULL: PBM-protected ... */
    EVP_PKEY *key;
    const char *pbm_sender; /* ... under this CN (NULL: the CA's name) */
    const char *why;        /* NULL: issued; else why the answer is refused */
};

/* Each case on its own server: an ir, then (|revoke|) an rr, both answered as the case says. */
static void run_answer_cases(const struct answer_case *cases, size_t n, int revoke)
{
    for (size_t i = 0; i < n; i++) {
        struct server s;
        struct run r;

        server_start(&s, M_ISSUE);
        server_answer_as(&s, cases[i].cert, cases[i].key, cases[i].pbm_sender);
        run_open_with(&r, s.port, cases[i].keys);
        expect_answer(&r, cases[i].name, cases[i].why);
        if (revoke) {
            char err[GW_ERR_LEN] = "";
            X509 *x = make_cert("issued", client_key, 0);
            int rc = gw_upstream_revoke(r.up, x, CRL_REASON_CESSATION_OF_OPERATION, err);

            /* a forged rp "accepted" would have the engine record a revocation that never happened */
            if (cases[i].why == NULL ? rc != 0 : rc == 0 || strstr(err, cases[i].why) == NULL)
                fail_msg("%s: revocation: rc %d \"%s\"", cases[i].name, rc, err);
            X509_free(x);
        }
        run_close(&r);
        server_stop(&s);
    }
}

#define TRUSTED ", \"trusted\": \"up-ca.pem\""

/*
 * Without a setting, only the CA answers (issuer_ca's subject): a certificate that chains to
 * "trusted" under another name (a device's, from the same CA) cannot answer for it, signed or PBM.
 */
static void test_sender_default(void **state)
{
    X509 *device = make_cert("device", other_key, 0);
    const struct answer_case cases[] = {
        {"a device of the same CA", TRUSTED, device, other_key, NULL, WRONG_SENDER},
        {"the CA itself", TRUSTED, ca, ca_key, NULL, NULL},
        {"PBM under a device's name", TRUSTED, NULL, NULL, "device", WRONG_SENDER},
        {"PBM under the CA's name", TRUSTED, NULL, NULL, NULL, NULL},
    };

    (void)state;
    run_answer_cases(cases, sizeof(cases) / sizeof(cases[0]), 1);
    X509_free(device);
}

/* "expected_sender" names who answers; "server_cert" pins its certificate, key included. */
static void test_sender_settings(void **state)
{
#define ES TRUSTED ", \"expected_sender\": \"/CN=cmp upstream RA\""
#define SC ", \"server_cert\": \"ra.pem\""
    X509 *device = make_cert("device", other_key, 0);
    X509 *lookalike = make_cert("cmp upstream RA", other_key, 0);
    const struct answer_case cases[] = {
        {"expected_sender: the RA", ES, ra, ra_key, NULL, NULL},
        {"expected_sender: the CA", ES, ca, ca_key, NULL, WRONG_SENDER},
        {"expected_sender: a device", ES, device, other_key, NULL, WRONG_SENDER},
        {"expected_sender: PBM as the RA", ES, NULL, NULL, "cmp upstream RA", NULL},
        {"expected_sender: PBM as the CA", ES, NULL, NULL, NULL, WRONG_SENDER},
        {"server_cert: the RA", SC, ra, ra_key, NULL, NULL},
        {"server_cert: the RA's name, another key", SC, lookalike, other_key, NULL, BAD_PROTECTION},
        {"server_cert: the CA", SC, ca, ca_key, NULL, WRONG_SENDER},
        {"server_cert: PBM as the RA", SC, NULL, NULL, "cmp upstream RA", NULL},
        {"server_cert: PBM as the CA", SC, NULL, NULL, NULL, WRONG_SENDER},
    };
#undef ES
#undef SC

    (void)state;
    run_answer_cases(cases, sizeof(cases) / sizeof(cases[0]), 0);
    X509_free(device);
    X509_free(lookalike);
}

/*
 * OpenSSL trusts the caPubs of a PBM-protected ip: they must not outlive its exchange. After one,
 * an answer under the CA's name signed by a key only the planted CA vouches for is refused.
 */
static void test_capubs_not_planted(void **state)
{
    EVP_PKEY *rogue_key = EVP_EC_gen("P-256");
    X509 *rogue = make_cert_by("planted CA", rogue_key, 1, NULL, NULL);
    X509 *forged = make_cert_by("cmp upstream test CA", other_key, 0, rogue, rogue_key);
    struct server s;
    struct run r;

    (void)state;
    server_start(&s, M_ISSUE);
    pthread_mutex_lock(&s.lock);
    s.capubs = rogue;
    pthread_mutex_unlock(&s.lock);
    run_open_with(&r, s.port, TRUSTED);
    expect_answer(&r, "a PBM ip with caPubs", NULL);
    server_answer_as(&s, forged, other_key, NULL);
    expect_answer(&r, "signed under the planted CA", BAD_PROTECTION);
    /* twin: the configured anchor still vouches for the CA */
    server_answer_as(&s, ca, ca_key, NULL);
    expect_answer(&r, "signed by the CA", NULL);
    run_close(&r);
    server_stop(&s);
    X509_free(forged);
    X509_free(rogue);
    EVP_PKEY_free(rogue_key);
}

/*
 * An rr through a CMP CA carries the certificate's issuer and serial, and the CA's certRevoked means
 * "already revoked": refused for a holder's rr (gw_upstream_revoke_cert), done for a withdrawal
 * (gw_upstream_revoke). Once, a withdrawal of a certificate the CA had already revoked was
 * revoke_failed.
 */
static void test_revoke_cert(void **state)
{
    X509 *x = make_cert("issued", client_key, 0);
    unsigned char want[64], *p = want;
    int fi, len = i2d_X509_NAME(X509_get_issuer_name(x), &p);
    char err[GW_ERR_LEN] = "";
    struct server s;
    struct run r;

    (void)state;
    len += i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &p);
    for (int rejected = 0; rejected < 2; rejected++) {
        server_start(&s, rejected ? M_REJECT : M_ISSUE);
        run_open(&r, s.port);
        assert_int_equal(gw_upstream_revoke(r.up, x, CRL_REASON_KEY_COMPROMISE, err), 0);
        assert_int_equal(gw_upstream_revoke_cert(r.up, x, CRL_REASON_KEY_COMPROMISE, &fi, NULL, err),
                         rejected ? GW_ERR_EXISTS : 0);
        run_close(&r);
        server_stop(&s);
        assert_int_equal(s.n_requests, 2);
        assert_int_equal(s.bodies[0], BODY_RR);
        assert_int_equal(s.rr_named_len, len);
        assert_memory_equal(s.rr_named, want, (size_t)len);
    }
    X509_free(x);
}

/*
 * A withdrawal's rr ended by the drain's deadline: one given its end as it began, one whose end a drain
 * lowered while the CA held it, and one whose end had passed. Each says what the drain's deadline did,
 * not the upstream's own timeout (10 s here), which did not end it; the last was not sent, and says so
 * to its caller (not_sent), the one the CA held not. Before, the first said "in time (none within
 * 10000 ms)", and the second waited for the CA to close the connection (3 s), as the exchange read its end
 * only as it began.
 */
static void test_revoke_drain_deadline(void **state)
{
    X509 *x = make_cert("issued", client_key, 0);
    struct tu_lowered l = {0, 200, 200};
    char err[GW_ERR_LEN] = "";
    int unsent = -1;
    struct server s;
    struct run r;
    pthread_t t;

    (void)state;
    server_start(&s, M_HELD);
    run_open(&r, s.port);
    /* the CA holds the rr unanswered: the error names the deadline, not the upstream's timeout */
    assert_int_equal(gw_upstream_revoke_until(r.up, x, CRL_REASON_KEY_COMPROMISE, gw_now_ms() + 300, err),
                     GW_ERR_UPSTREAM);
    assert_non_null(strstr(err, "did not answer before the drain's deadline cut the exchange short"));
    assert_null(strstr(err, "10000 ms"));
    assert_int_equal(pthread_create(&t, NULL, tu_lowered_main, &l), 0);
    assert_int_equal(gw_upstream_revoke_by(r.up, x, CRL_REASON_KEY_COMPROMISE, &l.end, &unsent, err),
                     GW_ERR_UPSTREAM);
    pthread_join(t, NULL);
    assert_non_null(strstr(err, "did not answer before the drain's deadline cut the exchange short"));
    assert_int_equal(unsent, 0); /* the rr left: the CA may have acted on it */
    atomic_store(&l.end, gw_now_ms() - 1);
    assert_int_equal(gw_upstream_revoke_by(r.up, x, CRL_REASON_KEY_COMPROMISE, &l.end, &unsent, err),
                     GW_ERR_UPSTREAM);
    assert_non_null(strstr(err, "was not asked: the drain's deadline came before its request was sent"));
    assert_int_equal(unsent, 1);
    run_close(&r);
    server_stop(&s);
    X509_free(x);
}

/*
 * An rr that cannot be set up (a reason OpenSSL's client does not take) leaves before anything is sent: it
 * says so to its caller (not_sent), as an rr whose protection fails does, and the CA is asked nothing.
 * Before, not_sent stayed 0: a withdrawal cut so would be on record as one the CA may have revoked.
 */
static void test_revoke_not_set_up(void **state)
{
    X509 *x = make_cert("issued", client_key, 0);
    _Atomic uint64_t end = 0;
    char err[GW_ERR_LEN] = "";
    int unsent = -1;
    struct server s;
    struct run r;

    (void)state;
    server_start(&s, M_ISSUE);
    run_open(&r, s.port);
    assert_int_not_equal(gw_upstream_revoke_by(r.up, x, CRL_REASON_AA_COMPROMISE + 1, &end, &unsent, err), 0);
    assert_int_equal(unsent, 1);
    assert_non_null(strstr(err, "was not asked ("));
    assert_non_null(strstr(err, "); nothing was sent"));
    run_close(&r);
    server_stop(&s);
    assert_int_equal(s.n_requests, 0);
    X509_free(x);
}

/*
 * A CMP CA's rejection of an rr: its own trouble, and its refusal of the gateway's message or
 * credentials, may pass (the client is told to retry later); any other is for good, with its failInfo
 * where that speaks of the revocation asked for, else badRequest (one about what the gateway built of
 * the rr, which the client cannot change). The CA's text is for the log. Once, every rejection but
 * certRevoked and badCertId had the client retry forever.
 */
static void test_revoke_refusals(void **state)
{
    static const struct {
        enum mode mode;
        int fail; /* M_REJECT: the CA's failInfo bit */
        int rc;
        int fail_info; /* GW_ERR_REFUSED: what the client may be told */
    } cases[] = {
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_badCertId, GW_ERR_NOT_FOUND, 0},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_systemUnavail, GW_ERR_UPSTREAM, 0},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_systemFailure, GW_ERR_UPSTREAM, 0},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_transactionIdInUse, GW_ERR_UPSTREAM, 0},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_timeNotAvailable, GW_ERR_UPSTREAM, 0},
        {M_HTTP500, 0, GW_ERR_UPSTREAM, 0},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_badRequest, GW_ERR_REFUSED, OSSL_CMP_PKIFAILUREINFO_badRequest},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_incorrectData, GW_ERR_REFUSED,
         OSSL_CMP_PKIFAILUREINFO_incorrectData},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_unacceptedExtension, GW_ERR_REFUSED,
         OSSL_CMP_PKIFAILUREINFO_unacceptedExtension},
        /* the gateway's message not taken (its protection, signer, clock, nonces): the upstream's
           configuration, which an operator fixes, as an HTTP 403; it was once refused for good */
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, GW_ERR_UPSTREAM, 0},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_signerNotTrusted, GW_ERR_UPSTREAM, 0},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_wrongAuthority, GW_ERR_UPSTREAM, 0},
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_badTime, GW_ERR_UPSTREAM, 0},
        /* the sender the CA does not authorize is the gateway: its credentials at the CA, the same; it
           was once refused for good, the client told it was not authorized */
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_notAuthorized, GW_ERR_UPSTREAM, 0},
        /* about what the gateway built of the rr: never the client's to see, for good */
        {M_REJECT, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, GW_ERR_REFUSED,
         OSSL_CMP_PKIFAILUREINFO_badRequest},
    };
    X509 *x = make_cert("issued", client_key, 0);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[GW_ERR_LEN] = "";
        struct server s;
        struct run r;
        int fi = -1, rc;

        server_start(&s, cases[i].mode);
        server_reject(&s, &s.rr_fail, cases[i].fail);
        run_open(&r, s.port);
        rc = gw_upstream_revoke_cert(r.up, x, CRL_REASON_KEY_COMPROMISE, &fi, NULL, err);
        if (rc != cases[i].rc || (rc == GW_ERR_REFUSED && fi != cases[i].fail_info) ||
            strstr(err, cases[i].mode == M_REJECT ? "upstream CA: no?way" : "answered HTTP 500") == NULL)
            fail_msg("case %zu (failInfo bit %d): rc %d failInfo %d \"%s\"", i, cases[i].fail, rc, fi, err);
        run_close(&r);
        server_stop(&s);
    }
    X509_free(x);
}

/*
 * A CMP CA's rejection of an rr with more than one failInfo bit is read whole: any bit of its refusal of
 * the gateway's message or credentials makes it that (retry later, logged at level error), whatever
 * else it says; certRevoked is "already revoked" and badCertId "no such certificate" only alone; its
 * own trouble beside anything else may pass; any other is for good. A holder's rr and a withdrawal
 * alike. Before, only the lowest bit counted: {certRevoked, notAuthorized} (the gateway's certificate
 * revoked at the CA) was "already revoked", which the rr kept as a revocation the CA never made and a
 * withdrawal took as done, and the refusal of the gateway went unlogged.
 */
static void test_revoke_fail_bits(void **state)
{
    static const struct {
        int fail, more; /* the lowest bit the CA sets, and the others */
        int rc;
        int fail_info; /* GW_ERR_REFUSED: what the client may be told */
        int gateway;   /* cmp_upstream_refused_gateway logged */
    } cases[] = {
        {OSSL_CMP_PKIFAILUREINFO_certRevoked, BIT(notAuthorized), GW_ERR_UPSTREAM, 0, 1},
        {OSSL_CMP_PKIFAILUREINFO_certRevoked, BIT(wrongIntegrity), GW_ERR_UPSTREAM, 0, 1},
        {OSSL_CMP_PKIFAILUREINFO_certRevoked, BIT(signerNotTrusted) | BIT(badSenderNonce), GW_ERR_UPSTREAM, 0,
         1},
        {OSSL_CMP_PKIFAILUREINFO_badRequest, BIT(notAuthorized), GW_ERR_UPSTREAM, 0, 1},
        {OSSL_CMP_PKIFAILUREINFO_badCertId, BIT(certRevoked) | BIT(badMessageCheck), GW_ERR_UPSTREAM, 0, 1},
        {OSSL_CMP_PKIFAILUREINFO_certRevoked, BIT(systemUnavail), GW_ERR_UPSTREAM, 0, 0},
        {OSSL_CMP_PKIFAILUREINFO_badCertId, BIT(systemFailure), GW_ERR_UPSTREAM, 0, 0},
        {OSSL_CMP_PKIFAILUREINFO_badCertId, BIT(certRevoked), GW_ERR_REFUSED,
         OSSL_CMP_PKIFAILUREINFO_badRequest, 0},
        {OSSL_CMP_PKIFAILUREINFO_certRevoked, BIT(duplicateCertReq), GW_ERR_REFUSED,
         OSSL_CMP_PKIFAILUREINFO_badRequest, 0},
        {OSSL_CMP_PKIFAILUREINFO_certRevoked, BIT(unacceptedExtension), GW_ERR_REFUSED,
         OSSL_CMP_PKIFAILUREINFO_unacceptedExtension, 0},
        {OSSL_CMP_PKIFAILUREINFO_badPOP, BIT(incorrectData) | BIT(unacceptedExtension), GW_ERR_REFUSED,
         OSSL_CMP_PKIFAILUREINFO_incorrectData, 0},
    };
    X509 *x = make_cert("issued", client_key, 0);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[GW_ERR_LEN] = "", logged[8192];
        int fi = -1, rc, withdrawn;
        struct tu_log l;
        struct server s;
        struct run r;

        server_start(&s, M_REJECT);
        pthread_mutex_lock(&s.lock);
        s.rr_fail = cases[i].fail;
        s.rr_more = cases[i].more;
        pthread_mutex_unlock(&s.lock);
        run_open(&r, s.port);
        tu_log_capture(&l, GW_LOG_ERROR, GW_LOG_INFO);
        rc = gw_upstream_revoke_cert(r.up, x, CRL_REASON_KEY_COMPROMISE, &fi, NULL, err);
        withdrawn = gw_upstream_revoke(r.up, x, CRL_REASON_KEY_COMPROMISE, err);
        tu_log_release_into(&l, logged, sizeof(logged));
        if (rc != cases[i].rc || (rc == GW_ERR_REFUSED && fi != cases[i].fail_info) || withdrawn == 0 ||
            (strstr(logged, "\"event\":\"cmp_upstream_refused_gateway\"") != NULL) != cases[i].gateway)
            fail_msg("case %zu: rc %d failInfo %d, withdrawal %d, \"%s\"; logged %s", i, rc, fi, withdrawn,
                     err, logged);
        run_close(&r);
        server_stop(&s);
        assert_int_equal(s.n_requests, 2);
    }
    X509_free(x);
}

/* A copy of |key| without its private half: a signer whose key cannot sign, as one out of reach. */
static EVP_PKEY *public_half(EVP_PKEY *key)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    EVP_PKEY *pub;
    int n;

    assert_true((n = i2d_PUBKEY(key, &der)) > 0);
    p = der;
    assert_non_null(pub = d2i_PUBKEY(NULL, &p, n));
    OPENSSL_free(der);
    return pub;
}

/*
 * OpenSSL failing before a message leaves (the gateway's key out of reach: a PKCS#11 token removed)
 * asked the CA nothing: nothing was sent, so nothing was issued either, and no outcome is to be looked
 * for at the CA.
 */
static void test_request_not_protected(void **state)
{
    struct gw_sign_result res;
    struct server s;
    struct run r;
    EVP_PKEY *key, *pub;
    char up[512];

    (void)state;
    server_start(&s, M_ISSUE);
    snprintf(up, sizeof(up),
             "\"type\": \"cmp\", \"url\": \"http://127.0.0.1:%d\", \"path\": \"/pkix/\", "
             "\"issuer_ca\": \"up-ca.pem\"" TRUSTED,
             s.port);
    run_open_up(&r, up);
    key = r.cfg->upstream_signer.key;
    r.cfg->upstream_signer.key = pub = public_half(key);
    sign(&r, client_key, &res);
    r.cfg->upstream_signer.key = key;
    EVP_PKEY_free(pub);
    if (res.status == 0 || res.fail_info != OSSL_CMP_PKIFAILUREINFO_systemUnavail ||
        strstr(res.reason, "upstream CA up was not asked (") != res.reason ||
        strstr(res.reason, "); nothing was sent") == NULL || strstr(res.reason, "outcome") != NULL)
        fail_msg("status %d failInfo %d reason \"%s\"", res.status, res.fail_info, res.reason);
    assert_null(res.cert);
    gw_sign_result_cleanup(&res);
    run_close(&r);
    server_stop(&s);
    assert_int_equal(s.n_requests, 0);
}

/*
 * An upstream the gateway signs for: OpenSSL 3.0 fills what a template leaves out from the request's
 * signer, the gateway's own certificate: no subjectAltName becomes the gateway's names, no issuer
 * the CA that issued the gateway's certificate. The template carries the plan only.
 */
static void test_template_names(void **state)
{
    struct server s;
    struct run r;
    struct gw_sign_result res;
    char up[512];

    (void)state;
    server_start(&s, M_ISSUE);
    server_answer_as(&s, ca, ca_key, NULL);
    snprintf(up, sizeof(up),
             "\"type\": \"cmp\", \"url\": \"http://127.0.0.1:%d\", \"path\": \"/pkix/\", "
             "\"issuer_ca\": \"up-ca.pem\"" TRUSTED,
             s.port);
    run_open_up(&r, up);
    sign(&r, client_key, &res); /* CN=dev, no subjectAltName */
    assert_int_equal(res.status, 0);
    gw_sign_result_cleanup(&res);
    run_close(&r);
    server_stop(&s);
    assert_int_equal(s.bodies[0], BODY_IR);
    assert_int_equal(s.tmpl_sans, -1);
    assert_false(s.tmpl_issuer);
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
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_config_rows),
        cmocka_unit_test(test_issue),
        cmocka_unit_test(test_issue_validity_days),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_request_not_protected),
        cmocka_unit_test(test_sign_refusals),
        cmocka_unit_test(test_sign_refusal_bits),
        cmocka_unit_test(test_sign_refusal_text),
        cmocka_unit_test(test_certconf_rejects),
        cmocka_unit_test(test_certconf_rejects_another_signer),
        cmocka_unit_test(test_down),
        cmocka_unit_test(test_revoke_drain_deadline),
        cmocka_unit_test(test_revoke_not_set_up),
        cmocka_unit_test(test_revoke_cert),
        cmocka_unit_test(test_revoke_refusals),
        cmocka_unit_test(test_revoke_fail_bits),
        cmocka_unit_test(test_sender_default),
        cmocka_unit_test(test_sender_settings),
        cmocka_unit_test(test_capubs_not_planted),
        cmocka_unit_test(test_template_names),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
