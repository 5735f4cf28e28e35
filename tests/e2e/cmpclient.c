/*
 * cmpclient: a small CMP test client on OpenSSL's CMP client API, over libcurl HTTPS with a client
 * certificate (RFC 9811). It sends what the OpenSSL 3.0 CLI cannot: genm with any infoTypes
 * (RFC 9483 §4.3), and rr with a reason code (§4.2).
 *
 *   cmpclient --url URL --cafile CA [--tls-cert C --tls-key K] (--cert C --key K | --ref R --secret F)
 *             [--rspout FILE] [--reqout FILE] genm [--out PREFIX] OID...
 *   cmpclient ... rr --revoke CERT [--reason N]
 *
 * genm prints one line per returned ITAV ("itav <oid> <value DER length|absent>"), the subjects of
 * certificates in caCerts values ("  cert <subject>"), and writes each value to PREFIX.<i>.der.
 * Exit: 0 answered/accepted, 2 refused (status, failInfo and text printed), 1 other failure.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "gateway/limits.h"

#define CLIENT_TIMEOUT_MS 30000
#define CLIENT_MAX_SECRET 1024
#define CLIENT_MAX_OIDS 16

struct opts {
    const char *url, *cafile, *tls_cert, *tls_key, *cert, *key, *ref, *secret, *rspout, *reqout, *out,
        *revoke;
    int reason;
};

struct buf {
    unsigned char *p;
    size_t len;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    size_t add = size * n;
    unsigned char *np;

    if (b->len + add > GW_MAX_RESPONSE) /* openssl cmp's own cap */
        return 0;
    if ((np = realloc(b->p, b->len + add)) == NULL)
        return 0;
    memcpy(np + b->len, data, add);
    b->p = np;
    b->len += add;
    return add;
}

/* One POST per message (the transfer callback of the CMP context). */
static OSSL_CMP_MSG *transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    const struct opts *o = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    CURL *c = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/pkixcmp");
    unsigned char *der = NULL;
    const unsigned char *p;
    struct buf rsp = {NULL, 0};
    OSSL_CMP_MSG *msg = NULL;
    long status = 0;
    int len = i2d_OSSL_CMP_MSG(req, &der);
    FILE *f;

    if (c == NULL || hdr == NULL || len <= 0)
        goto out;
    /* the request as sent, e.g. a fuzzing seed (tests/fuzz/make_seeds.sh) */
    if (o->reqout != NULL && (f = fopen(o->reqout, "wb")) != NULL) {
        fwrite(der, 1, (size_t)len, f);
        fclose(f);
    }
    curl_easy_setopt(c, CURLOPT_URL, o->url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, (char *)der);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &rsp);
    if (o->cafile != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->cafile);
    if (o->tls_cert != NULL) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, o->tls_cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, o->tls_key);
    }
    if (curl_easy_perform(c) != CURLE_OK ||
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
        fprintf(stderr, "cmpclient: HTTP transfer failed (status %ld)\n", status);
        goto out;
    }
    if (o->rspout != NULL && (f = fopen(o->rspout, "wb")) != NULL) {
        fwrite(rsp.p, 1, rsp.len, f);
        fclose(f);
    }
    p = rsp.p;
    msg = d2i_OSSL_CMP_MSG(NULL, &p, (long)rsp.len);
out:
    free(rsp.p);
    OPENSSL_free(der);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return msg;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;

    if (f != NULL)
        fclose(f);
    if (x == NULL)
        fprintf(stderr, "cmpclient: cannot read a certificate from %s\n", path);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;

    if (f != NULL)
        fclose(f);
    if (k == NULL)
        fprintf(stderr, "cmpclient: cannot read a key from %s\n", path);
    return k;
}

static int set_secret(OSSL_CMP_CTX *ctx, const struct opts *o)
{
    unsigned char s[CLIENT_MAX_SECRET];
    FILE *f = fopen(o->secret, "rb");
    size_t n = f != NULL ? fread(s, 1, sizeof(s), f) : 0;
    int ok;

    if (f != NULL)
        fclose(f);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    ok = n > 0 &&
         OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)o->ref, (int)strlen(o->ref)) == 1 &&
         OSSL_CMP_CTX_set1_secretValue(ctx, s, (int)n) == 1;
    OPENSSL_cleanse(s, sizeof(s));
    return ok;
}

/* The client context: trust for response protection, our own protection, the transport. */
static OSSL_CMP_CTX *ctx_new(const struct opts *o)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
    X509_STORE *store = X509_STORE_new();
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    int ok = ctx != NULL && store != NULL && X509_STORE_load_file(store, o->cafile) == 1 &&
             OSSL_CMP_CTX_set0_trustedStore(ctx, store) == 1;

    if (ok)
        store = NULL;
    if (ok && o->cert != NULL)
        ok = (cert = read_cert(o->cert)) != NULL && (key = read_key(o->key)) != NULL &&
             OSSL_CMP_CTX_set1_cert(ctx, cert) == 1 && OSSL_CMP_CTX_set1_pkey(ctx, key) == 1;
    else if (ok)
        ok = o->ref != NULL && o->secret != NULL && set_secret(ctx, o);
    ok = ok && OSSL_CMP_CTX_set_transfer_cb(ctx, transfer) == 1 &&
         OSSL_CMP_CTX_set_transfer_cb_arg(ctx, (void *)o) == 1;
    X509_free(cert);
    EVP_PKEY_free(key);
    X509_STORE_free(store);
    if (!ok) {
        OSSL_CMP_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Prints the PKIStatusInfo of the last answer; returns the exit code for it. */
static int report(OSSL_CMP_CTX *ctx)
{
    char buf[1024];

    if (OSSL_CMP_CTX_snprint_PKIStatus(ctx, buf, sizeof(buf)) != NULL)
        printf("status %s\n", buf);
    return OSSL_CMP_CTX_get_status(ctx) == OSSL_CMP_PKISTATUS_rejection ? 2 : 1;
}

static void print_certs(const ASN1_TYPE *v)
{
    const unsigned char *p = v->value.sequence->data, *end = p + v->value.sequence->length;
    long len;
    int tag, cls;
    char name[512];

    if (ASN1_get_object(&p, &len, &tag, &cls, end - p) & 0x80)
        return;
    while (p < end) {
        X509 *x = d2i_X509(NULL, &p, end - p);
        if (x == NULL)
            break;
        printf("  cert %s\n", X509_NAME_oneline(X509_get_subject_name(x), name, sizeof(name)));
        X509_free(x);
    }
}

static void print_itav(const struct opts *o, const OSSL_CMP_ITAV *itav, int i)
{
    const ASN1_TYPE *v = OSSL_CMP_ITAV_get0_value(itav);
    char oid[128], path[512];
    FILE *f;

    OBJ_obj2txt(oid, sizeof(oid), OSSL_CMP_ITAV_get0_type(itav), 1);
    if (v == NULL) {
        printf("itav %s absent\n", oid);
        return;
    }
    if (v->type != V_ASN1_SEQUENCE) {
        printf("itav %s type %d\n", oid, v->type);
        return;
    }
    printf("itav %s %d\n", oid, v->value.sequence->length);
    if (strcmp(oid, "1.3.6.1.5.5.7.4.17") == 0)
        print_certs(v);
    snprintf(path, sizeof(path), "%s.%d.der", o->out != NULL ? o->out : "itav", i);
    if ((f = fopen(path, "wb")) != NULL) {
        fwrite(v->value.sequence->data, 1, (size_t)v->value.sequence->length, f);
        fclose(f);
    }
}

static int do_genm(OSSL_CMP_CTX *ctx, const struct opts *o, char **oids, int n)
{
    STACK_OF(OSSL_CMP_ITAV) *out;

    for (int i = 0; i < n; i++) {
        ASN1_OBJECT *obj = OBJ_txt2obj(oids[i], 1);
        OSSL_CMP_ITAV *itav = obj != NULL ? OSSL_CMP_ITAV_create(obj, NULL) : NULL;
        if (itav == NULL || OSSL_CMP_CTX_push0_genm_ITAV(ctx, itav) != 1) {
            fprintf(stderr, "cmpclient: bad OID %s\n", oids[i]);
            return 1;
        }
    }
    if ((out = OSSL_CMP_exec_GENM_ses(ctx)) == NULL)
        return report(ctx);
    printf("genp %d\n", sk_OSSL_CMP_ITAV_num(out));
    for (int i = 0; i < sk_OSSL_CMP_ITAV_num(out); i++)
        print_itav(o, sk_OSSL_CMP_ITAV_value(out, i), i);
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    return 0;
}

static int do_rr(OSSL_CMP_CTX *ctx, const struct opts *o)
{
    X509 *victim = read_cert(o->revoke);
    int rc = 1;

    if (victim != NULL && OSSL_CMP_CTX_set1_oldCert(ctx, victim) == 1 &&
        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_REVOCATION_REASON, o->reason) == 1) {
        if (OSSL_CMP_exec_RR_ses(ctx) == 1) {
            printf("revoked\n");
            rc = 0;
        } else {
            rc = report(ctx);
        }
    }
    X509_free(victim);
    return rc;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: cmpclient --url URL --cafile CA [--tls-cert C --tls-key K] (--cert C --key K | "
            "--ref R --secret FILE) [--rspout F] [--reqout F] (genm [--out PREFIX] OID... | rr --revoke CERT "
            "[--reason N])\n");
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"url", 1, NULL, 'u'},     {"cafile", 1, NULL, 'a'}, {"tls-cert", 1, NULL, 'T'},
        {"tls-key", 1, NULL, 'K'}, {"cert", 1, NULL, 'c'},   {"key", 1, NULL, 'k'},
        {"ref", 1, NULL, 'r'},     {"secret", 1, NULL, 's'}, {"rspout", 1, NULL, 'o'},
        {"out", 1, NULL, 'O'},     {"revoke", 1, NULL, 'R'}, {"reason", 1, NULL, 'n'},
        {"reqout", 1, NULL, 'q'},  {NULL, 0, NULL, 0},
    };
    struct opts o = {.reason = -1};
    OSSL_CMP_CTX *ctx;
    char *end;
    int ch, rc;

    while ((ch = getopt_long(argc, argv, "+", longs, NULL)) != -1) {
        switch (ch) {
        case 'u':
            o.url = optarg;
            break;
        case 'a':
            o.cafile = optarg;
            break;
        case 'T':
            o.tls_cert = optarg;
            break;
        case 'K':
            o.tls_key = optarg;
            break;
        case 'c':
            o.cert = optarg;
            break;
        case 'k':
            o.key = optarg;
            break;
        case 'r':
            o.ref = optarg;
            break;
        case 's':
            o.secret = optarg;
            break;
        case 'o':
            o.rspout = optarg;
            break;
        case 'q':
            o.reqout = optarg;
            break;
        default:
            return usage();
        }
    }
    if (optind >= argc || o.url == NULL || o.cafile == NULL)
        return usage();
    /* subcommand options */
    {
        const char *cmd = argv[optind];
        optind++;
        while ((ch = getopt_long(argc, argv, "+", longs, NULL)) != -1) {
            if (ch == 'O')
                o.out = optarg;
            else if (ch == 'R')
                o.revoke = optarg;
            else if (ch == 'n' && (o.reason = (int)strtol(optarg, &end, 10), *end == '\0'))
                continue;
            else
                return usage();
        }
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if ((ctx = ctx_new(&o)) == NULL) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        if (strcmp(cmd, "genm") == 0 && argc - optind > 0 && argc - optind <= CLIENT_MAX_OIDS)
            rc = do_genm(ctx, &o, argv + optind, argc - optind);
        else if (strcmp(cmd, "rr") == 0 && o.revoke != NULL)
            rc = do_rr(ctx, &o);
        else
            rc = usage();
    }
    OSSL_CMP_CTX_free(ctx);
    curl_global_cleanup();
    return rc;
}
