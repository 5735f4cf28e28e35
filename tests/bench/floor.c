/*
 * cmpfloor: the in-process floor of CMP server work (docs/performance.md). An OpenSSL CMP client and
 * OpenSSL's own CMP server in one process, the client's transfer callback calling
 * OSSL_CMP_SRV_process_request directly: no sockets, no TLS, no HTTP, a canned certificate (the
 * client's own, as `openssl cmp -port -rsp_cert` answers). What is timed is the server side of
 * each message, ir and certConf: the request's DER decoded, process_request, the response encoded
 * (as any server must), and in "fresh" mode the server context made and configured for the
 * transaction; process_request alone beside it. Single-threaded, so wall time is CPU time.
 *
 *   cmpfloor PKI_DIR [N]   (PKI_DIR from deploy/demo-pki.sh; N enrolments per mode, default 2000)
 *
 * Prints one JSON line per mode: "fresh" (a new server context per transaction, as cmpgw makes)
 * and "shared" (one context for every transaction, as `openssl cmp -port` keeps).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

struct floor {
    X509 *signer, *client;
    EVP_PKEY *signer_key, *client_key;
    X509_STORE *trusted;
    OSSL_CMP_SRV_CTX *srv; /* the context of the transaction running */
    int fresh;             /* a new server context per transaction */
    double all_ms, process_ms, context_ms;
};

static double now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static OSSL_CMP_PKISI *cert_request(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                                    const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr, X509 **certOut,
                                    STACK_OF(X509) **chainOut, STACK_OF(X509) **caPubs)
{
    struct floor *f = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);

    (void)req, (void)certReqId, (void)crm, (void)p10cr, (void)chainOut, (void)caPubs;
    if (X509_up_ref(f->client) != 1)
        return NULL;
    *certOut = f->client;
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

static int cert_conf(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                     const ASN1_OCTET_STRING *certHash, const OSSL_CMP_PKISI *si)
{
    (void)srv, (void)req, (void)certReqId, (void)certHash, (void)si;
    return 1;
}

static OSSL_CMP_SRV_CTX *server_new(struct floor *f)
{
    OSSL_CMP_SRV_CTX *srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);
    OSSL_CMP_CTX *ctx = srv != NULL ? OSSL_CMP_SRV_CTX_get0_cmp_ctx(srv) : NULL;

    if (ctx == NULL || OSSL_CMP_SRV_CTX_init(srv, f, cert_request, NULL, NULL, NULL, cert_conf, NULL) != 1 ||
        OSSL_CMP_CTX_set1_cert(ctx, f->signer) != 1 || OSSL_CMP_CTX_set1_pkey(ctx, f->signer_key) != 1 ||
        X509_STORE_up_ref(f->trusted) != 1) {
        OSSL_CMP_SRV_CTX_free(srv);
        return NULL;
    }
    if (OSSL_CMP_CTX_set0_trustedStore(ctx, f->trusted) != 1) {
        X509_STORE_free(f->trusted);
        OSSL_CMP_SRV_CTX_free(srv);
        return NULL;
    }
    return srv;
}

/* The client's transfer: the server side of one message, timed. */
static OSSL_CMP_MSG *transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    struct floor *f = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    unsigned char *der = NULL, *out = NULL;
    const unsigned char *p;
    OSSL_CMP_MSG *in, *rsp = NULL, *back = NULL;
    int len = i2d_OSSL_CMP_MSG(req, &der), out_len;
    double t0, t1, t2;

    if (len <= 0)
        return NULL;
    t0 = now_ms();
    p = der;
    if ((in = d2i_OSSL_CMP_MSG(NULL, &p, len)) != NULL) {
        t1 = now_ms();
        rsp = OSSL_CMP_SRV_process_request(f->srv, in);
        t2 = now_ms();
        out_len = rsp != NULL ? i2d_OSSL_CMP_MSG(rsp, &out) : 0;
        f->process_ms += t2 - t1;
        f->all_ms += now_ms() - t0;
        p = out;
        if (out_len > 0)
            back = d2i_OSSL_CMP_MSG(NULL, &p, out_len); /* the client reads bytes too (not timed) */
    }
    OSSL_CMP_MSG_free(in);
    OSSL_CMP_MSG_free(rsp);
    OPENSSL_free(der);
    OPENSSL_free(out);
    return back;
}

/* One ir + certConf transaction; 1 on success. */
static int enrol(struct floor *f)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
    int ok = 0;

    if (ctx == NULL || OSSL_CMP_CTX_set_transfer_cb(ctx, transfer) != 1 ||
        OSSL_CMP_CTX_set_transfer_cb_arg(ctx, f) != 1 || OSSL_CMP_CTX_set1_cert(ctx, f->client) != 1 ||
        OSSL_CMP_CTX_set1_pkey(ctx, f->client_key) != 1 || X509_STORE_up_ref(f->trusted) != 1)
        goto out;
    if (OSSL_CMP_CTX_set0_trustedStore(ctx, f->trusted) != 1) {
        X509_STORE_free(f->trusted);
        goto out;
    }
    /* the canned certificate is the client's own: request it for the client's key */
    if (OSSL_CMP_CTX_set1_subjectName(ctx, X509_get_subject_name(f->client)) != 1 ||
        EVP_PKEY_up_ref(f->client_key) != 1)
        goto out;
    if (OSSL_CMP_CTX_set0_newPkey(ctx, 1, f->client_key) != 1) {
        EVP_PKEY_free(f->client_key);
        goto out;
    }
    if (f->fresh) { /* what making and configuring a context costs counts as server work */
        double t0 = now_ms();

        f->srv = server_new(f);
        f->context_ms += now_ms() - t0;
        if (f->srv == NULL)
            goto out;
    }
    ok = OSSL_CMP_exec_IR_ses(ctx) != NULL;
    if (f->fresh) {
        OSSL_CMP_SRV_CTX_free(f->srv);
        f->srv = NULL;
    }
out:
    OSSL_CMP_CTX_free(ctx);
    return ok;
}

static int load(struct floor *f, const char *dir)
{
    char path[4096];
    FILE *fp;
    X509 *ca = NULL;

#define OPEN(name) (snprintf(path, sizeof(path), "%s/%s", dir, name), fp = fopen(path, "r"))
    if (!OPEN("signer.pem") || (f->signer = PEM_read_X509(fp, NULL, NULL, NULL)) == NULL || fclose(fp) != 0 ||
        !OPEN("signer.key") || (f->signer_key = PEM_read_PrivateKey(fp, NULL, NULL, NULL)) == NULL ||
        fclose(fp) != 0 || !OPEN("client.pem") || (f->client = PEM_read_X509(fp, NULL, NULL, NULL)) == NULL ||
        fclose(fp) != 0 || !OPEN("client.key") ||
        (f->client_key = PEM_read_PrivateKey(fp, NULL, NULL, NULL)) == NULL || fclose(fp) != 0 ||
        !OPEN("ca.pem") || (ca = PEM_read_X509(fp, NULL, NULL, NULL)) == NULL || fclose(fp) != 0)
        return fprintf(stderr, "cmpfloor: cannot read %s\n", path), 0;
#undef OPEN
    f->trusted = X509_STORE_new();
    if (f->trusted == NULL || X509_STORE_add_cert(f->trusted, ca) != 1)
        return X509_free(ca), 0;
    X509_free(ca);
    return 1;
}

int main(int argc, char **argv)
{
    struct floor f = {0};
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;

    if (argc < 2 || argc > 3 || n < 1) {
        fprintf(stderr, "usage: cmpfloor PKI_DIR [N]\n");
        return 2;
    }
    if (!load(&f, argv[1]))
        return 2;
    for (f.fresh = 1; f.fresh >= 0; f.fresh--) {
        long ok = 0;

        f.all_ms = f.process_ms = f.context_ms = 0;
        if (!f.fresh && (f.srv = server_new(&f)) == NULL)
            return 2;
        for (long i = 0; i < n; i++)
            ok += enrol(&f);
        if (!f.fresh)
            OSSL_CMP_SRV_CTX_free(f.srv);
        printf("{\"mode\":\"%s\",\"enrolments\":%ld,\"errors\":%ld,\"server_ms_per_enrolment\":%.3f,"
               "\"process_request_ms_per_enrolment\":%.3f,\"context_ms_per_enrolment\":%.3f}\n",
               f.fresh ? "fresh" : "shared", n, n - ok, (f.all_ms + f.context_ms) / (double)n,
               f.process_ms / (double)n, f.context_ms / (double)n);
        if (ok != n) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
    }
    X509_free(f.signer);
    X509_free(f.client);
    EVP_PKEY_free(f.signer_key);
    EVP_PKEY_free(f.client_key);
    X509_STORE_free(f.trusted);
    return 0;
}
