/*
 * cmpclient: a small CMP test client on OpenSSL's CMP client API, over libcurl HTTPS with a client
 * certificate (RFC 9811). It sends what the OpenSSL 3.0 CLI cannot: genm with any infoTypes and
 * values (RFC 9483 §4.3), the root CA update of RFC 9483 §4.3.2, rr with a reason code (RFC 9483 §4.2),
 * and a certProfile (RFC 9483 §3.1) in every message's generalInfo.
 *
 *   cmpclient --url URL --cafile CA [--tls-cert C --tls-key K] (--cert C --key K | --ref R --secret F)
 *             [--rspout FILE] [--reqout FILE] [--profile NAME] genm [--out PREFIX]
 * OID[:cert:FILE|:der:FILE]... cmpclient ... rootcaupdate [--oldroot FILE] [--out PREFIX] cmpclient ... rr
 * --revoke CERT [--reason N] cmpclient ... ir --newkey KEY --subject /O=x/CN=y [--certout FILE]
 *
 * genm prints one line per returned ITAV ("itav <oid> <value DER length|absent>"), the subjects of
 * certificates in caCerts values ("  cert <subject>"), and writes each value to PREFIX.<i>.der. An
 * OID may carry a value: a PEM certificate (":cert:FILE") or any DER (":der:FILE").
 * rootcaupdate asks as RFC 9483 §4.3.2 says (id-it-rootCaCert with the root the client trusts,
 * --oldroot, or no value), and checks the answer as OSSL_CMP_get1_rootCaKeyUpdate (3.2+) would:
 * newWithNew self-signed, newWithOld signed by the old root and certifying the new key, oldWithNew
 * signed by the new key and certifying the old one; it prints "rootCaKeyUpdate absent" or what it
 * checked, and writes PREFIX.newwithnew.pem, PREFIX.newwithold.pem, PREFIX.oldwithnew.pem.
 * ir asks for a certificate for KEY and confirms it (certConf), printing "issued <subject>".
 * --next-url sends every message after the first to another URL (another instance of a cluster);
 * --before-next waits (up to 30 s) until FILE exists before sending the second message.
 * Exit: 0 answered/accepted (and checked), 2 refused (status, failInfo and text printed), 1 other
 * failure.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/limits.h"

#define CLIENT_TIMEOUT_MS 30000
#define CLIENT_MAX_SECRET 1024
#define CLIENT_MAX_OIDS 16
#define CLIENT_MAX_VALUE 65536
#define OID_ROOT_CA_KEY_UPDATE "1.3.6.1.5.5.7.4.18"
#define OID_ROOT_CA_CERT "1.3.6.1.5.5.7.4.20"
#define OID_CERT_PROFILE "1.3.6.1.5.5.7.4.21"

struct opts {
    const char *url, *cafile, *tls_cert, *tls_key, *cert, *key, *ref, *secret, *rspout, *reqout, *out,
        *revoke, *profile, *oldroot, *newkey, *subject, *certout, *next_url, *before_next;
    int reason;
    int sent; /* messages sent so far */
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
    struct opts *o = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
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
    /* --before-next: the second message waits for the test (say, to kill the first instance) */
    for (int i = 0; o->sent > 0 && o->before_next != NULL && access(o->before_next, F_OK) != 0 && i < 300;
         i++)
        usleep(100000);
    curl_easy_setopt(c, CURLOPT_URL, o->sent > 0 && o->next_url != NULL ? o->next_url : o->url);
    o->sent++;
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

/* An ASN1_TYPE from the DER of one complete TLV; NULL if it is not one. */
static ASN1_TYPE *type_of_der(const unsigned char *der, long len)
{
    const unsigned char *p = der;
    ASN1_TYPE *v = d2i_ASN1_TYPE(NULL, &p, len);

    if (v != NULL && p != der + len) {
        ASN1_TYPE_free(v);
        return NULL;
    }
    return v;
}

static ASN1_TYPE *cert_value(const X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    ASN1_TYPE *v = len > 0 ? type_of_der(der, len) : NULL;

    OPENSSL_free(der);
    return v;
}

/* RFC 9483 §3.1: CertProfileValue ::= SEQUENCE SIZE (1..MAX) OF UTF8String, one name. */
static int set_profile(OSSL_CMP_CTX *ctx, const char *name)
{
    unsigned char der[4 + 127];
    size_t n = strlen(name);
    ASN1_TYPE *v;
    ASN1_OBJECT *obj;
    OSSL_CMP_ITAV *itav;

    if (n == 0 || n > 127 - 2) /* short-form lengths keep this encoder trivial */
        return 0;
    der[0] = V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED;
    der[1] = (unsigned char)(n + 2);
    der[2] = V_ASN1_UTF8STRING;
    der[3] = (unsigned char)n;
    memcpy(der + 4, name, n);
    if ((v = type_of_der(der, (long)n + 4)) == NULL || (obj = OBJ_txt2obj(OID_CERT_PROFILE, 1)) == NULL ||
        (itav = OSSL_CMP_ITAV_create(obj, v)) == NULL) {
        ASN1_TYPE_free(v);
        return 0;
    }
    if (OSSL_CMP_CTX_push0_geninfo_ITAV(ctx, itav) != 1) {
        OSSL_CMP_ITAV_free(itav);
        return 0;
    }
    return 1;
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
         OSSL_CMP_CTX_set_transfer_cb_arg(ctx, (void *)o) == 1 &&
         (o->profile == NULL || set_profile(ctx, o->profile));
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

/* The value of a genm argument "OID:cert:FILE" or "OID:der:FILE" (|spec| points after the OID). */
static ASN1_TYPE *value_of(const char *spec)
{
    unsigned char buf[CLIENT_MAX_VALUE];
    ASN1_TYPE *v = NULL;
    X509 *x;
    FILE *f;
    size_t n;

    if (strncmp(spec, ":cert:", 6) == 0) {
        if ((x = read_cert(spec + 6)) != NULL)
            v = cert_value(x);
        X509_free(x);
        return v;
    }
    if (strncmp(spec, ":der:", 5) != 0 || (f = fopen(spec + 5, "rb")) == NULL)
        return NULL;
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return n > 0 && n < sizeof(buf) ? type_of_der(buf, (long)n) : NULL;
}

static int do_genm(OSSL_CMP_CTX *ctx, const struct opts *o, char **args, int n)
{
    STACK_OF(OSSL_CMP_ITAV) *out;

    for (int i = 0; i < n; i++) {
        char oid[128];
        const char *colon = strchr(args[i], ':');
        size_t len = colon != NULL ? (size_t)(colon - args[i]) : strlen(args[i]);
        ASN1_OBJECT *obj = NULL;
        ASN1_TYPE *value = NULL;
        OSSL_CMP_ITAV *itav = NULL;

        if (len < sizeof(oid)) {
            memcpy(oid, args[i], len);
            oid[len] = '\0';
            obj = OBJ_txt2obj(oid, 1);
        }
        if (obj != NULL && (colon == NULL || (value = value_of(colon)) != NULL))
            itav = OSSL_CMP_ITAV_create(obj, value);
        if (itav == NULL || OSSL_CMP_CTX_push0_genm_ITAV(ctx, itav) != 1) {
            fprintf(stderr, "cmpclient: bad infoType or value %s\n", args[i]);
            ASN1_OBJECT_free(itav == NULL ? obj : NULL);
            ASN1_TYPE_free(itav == NULL ? value : NULL);
            OSSL_CMP_ITAV_free(itav);
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

/* The certificate in [*pp, end), optionally inside an EXPLICIT [tag] (tag < 0: none); NULL if absent. */
static X509 *next_cert(const unsigned char **pp, const unsigned char *end, int tag)
{
    const unsigned char *q = *pp;
    long len;
    int t, cls;
    X509 *x;

    if (q >= end)
        return NULL;
    if (tag >= 0) {
        if ((ASN1_get_object(&q, &len, &t, &cls, end - q) & 0x80) != 0 || cls != V_ASN1_CONTEXT_SPECIFIC ||
            t != tag)
            return NULL;
        end = q + len;
    }
    if ((x = d2i_X509(NULL, &q, end - q)) != NULL)
        *pp = q;
    return x;
}

static void write_pem(const struct opts *o, const char *what, X509 *x)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s.%s.pem", o->out != NULL ? o->out : "rootcaupdate", what);
    if (x != NULL && (f = fopen(path, "w")) != NULL) {
        PEM_write_X509(f, x);
        fclose(f);
    }
}

/* Whether |x| is signed by |signer|'s key; |x|'s own key equals that of |holder| if given. */
static int vouches(X509 *x, X509 *signer, X509 *holder)
{
    int ok = X509_verify(x, X509_get0_pubkey(signer)) == 1 &&
             (holder == NULL || EVP_PKEY_eq(X509_get0_pubkey(x), X509_get0_pubkey(holder)) == 1);

    ERR_clear_error();
    return ok;
}

/* RootCaKeyUpdateContent ::= SEQUENCE { newWithNew, newWithOld [0], oldWithNew [1] OPTIONAL }. */
static int check_root_update(const struct opts *o, const ASN1_TYPE *v, X509 *old)
{
    const unsigned char *p, *end;
    long len;
    int tag, cls, rc = 1;
    X509 *nwn = NULL, *nwo = NULL, *own = NULL;
    char name[512];

    if (v->type != V_ASN1_SEQUENCE)
        goto bad;
    p = v->value.sequence->data;
    if ((ASN1_get_object(&p, &len, &tag, &cls, v->value.sequence->length) & 0x80) != 0 ||
        tag != V_ASN1_SEQUENCE)
        goto bad;
    end = p + len;
    if ((nwn = next_cert(&p, end, -1)) == NULL) {
        fprintf(stderr, "cmpclient: rootCaKeyUpdate without newWithNew\n");
        goto out;
    }
    nwo = next_cert(&p, end, 0);
    own = next_cert(&p, end, 1);
    if (p != end)
        goto bad;
    printf("rootCaKeyUpdate newWithNew %s\n",
           X509_NAME_oneline(X509_get_subject_name(nwn), name, sizeof(name)));
    if (!vouches(nwn, nwn, NULL)) {
        fprintf(stderr, "cmpclient: newWithNew is not self-signed\n");
        goto out;
    }
    if (nwo == NULL || EVP_PKEY_eq(X509_get0_pubkey(nwo), X509_get0_pubkey(nwn)) != 1 ||
        (old != NULL && !vouches(nwo, old, NULL))) {
        fprintf(stderr, "cmpclient: newWithOld is missing, does not certify the new root's key, or is not "
                        "signed by the old root\n");
        goto out;
    }
    printf("newWithOld %s\n", old != NULL ? "signed by the old root" : "present");
    if (own != NULL && (!vouches(own, nwn, old))) {
        fprintf(stderr, "cmpclient: oldWithNew is not signed by the new root for the old key\n");
        goto out;
    }
    printf("oldWithNew %s\n", own == NULL ? "absent" : "signed by the new root");
    write_pem(o, "newwithnew", nwn);
    write_pem(o, "newwithold", nwo);
    write_pem(o, "oldwithnew", own);
    rc = 0;
    goto out;
bad:
    fprintf(stderr, "cmpclient: rootCaKeyUpdate is malformed\n");
out:
    X509_free(nwn);
    X509_free(nwo);
    X509_free(own);
    return rc;
}

/* RFC 9483 §4.3.2: id-it-rootCaCert with the root we trust (or none) -> id-it-rootCaKeyUpdate. */
static int do_rootcaupdate(OSSL_CMP_CTX *ctx, const struct opts *o)
{
    X509 *old = o->oldroot != NULL ? read_cert(o->oldroot) : NULL;
    ASN1_TYPE *value = old != NULL ? cert_value(old) : NULL;
    ASN1_OBJECT *obj = OBJ_txt2obj(OID_ROOT_CA_CERT, 1);
    OSSL_CMP_ITAV *req = NULL, *itav;
    STACK_OF(OSSL_CMP_ITAV) *out = NULL;
    char oid[128];
    int rc = 1;

    if ((o->oldroot != NULL && value == NULL) || obj == NULL ||
        (req = OSSL_CMP_ITAV_create(obj, value)) == NULL) {
        ASN1_TYPE_free(value);
        ASN1_OBJECT_free(obj);
        goto out;
    }
    if (OSSL_CMP_CTX_push0_genm_ITAV(ctx, req) != 1) {
        OSSL_CMP_ITAV_free(req);
        goto out;
    }
    if ((out = OSSL_CMP_exec_GENM_ses(ctx)) == NULL) {
        rc = report(ctx);
        goto out;
    }
    itav = sk_OSSL_CMP_ITAV_num(out) == 1 ? sk_OSSL_CMP_ITAV_value(out, 0) : NULL;
    if (itav == NULL || OBJ_obj2txt(oid, sizeof(oid), OSSL_CMP_ITAV_get0_type(itav), 1) <= 0 ||
        strcmp(oid, OID_ROOT_CA_KEY_UPDATE) != 0) {
        fprintf(stderr, "cmpclient: the genp does not hold exactly one id-it-rootCaKeyUpdate\n");
        goto out;
    }
    if (OSSL_CMP_ITAV_get0_value(itav) == NULL) {
        printf("rootCaKeyUpdate absent\n");
        rc = 0;
        goto out;
    }
    rc = check_root_update(o, OSSL_CMP_ITAV_get0_value(itav), old);
out:
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    X509_free(old);
    return rc;
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

/* "/O=x/CN=y" into a new name; NULL if it is not of that shape. */
static X509_NAME *parse_name(const char *text)
{
    X509_NAME *n = X509_NAME_new();
    char buf[512], *p = buf, *next, *eq;

    if (n == NULL || text[0] != '/' || strlen(text) >= sizeof(buf))
        goto err;
    snprintf(buf, sizeof(buf), "%s", text + 1);
    for (; p != NULL; p = next) {
        if ((next = strchr(p, '/')) != NULL)
            *next++ = '\0';
        if ((eq = strchr(p, '=')) == NULL)
            goto err;
        *eq = '\0';
        if (X509_NAME_add_entry_by_txt(n, p, MBSTRING_UTF8, (unsigned char *)eq + 1, -1, -1, 0) != 1)
            goto err;
    }
    return n;
err:
    X509_NAME_free(n);
    return NULL;
}

/* ir -> ip -> certConf -> pkiconf (RFC 9483 §4.1.1), as OpenSSL's client runs it. */
static int do_ir(OSSL_CMP_CTX *ctx, const struct opts *o)
{
    EVP_PKEY *key = read_key(o->newkey);
    X509_NAME *subject = parse_name(o->subject);
    X509 *cert = NULL;
    char name[512];
    FILE *f;
    int rc = 1;

    if (key == NULL || subject == NULL || OSSL_CMP_CTX_set1_subjectName(ctx, subject) != 1 ||
        OSSL_CMP_CTX_set0_newPkey(ctx, 1, key) != 1)
        goto out;
    key = NULL;
    if ((cert = OSSL_CMP_exec_IR_ses(ctx)) == NULL) {
        rc = report(ctx);
        goto out;
    }
    printf("issued %s\n", X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof(name)));
    if (o->certout != NULL && (f = fopen(o->certout, "w")) != NULL) {
        PEM_write_X509(f, cert);
        fclose(f);
    }
    rc = 0;
out:
    EVP_PKEY_free(key);
    X509_NAME_free(subject);
    return rc;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: cmpclient --url URL --cafile CA [--tls-cert C --tls-key K] (--cert C --key K | "
            "--ref R --secret FILE) [--rspout F] [--reqout F] [--profile NAME] (genm [--out PREFIX] "
            "OID[:cert:FILE|:der:FILE]... | rootcaupdate [--oldroot FILE] [--out PREFIX] | rr --revoke "
            "CERT [--reason N] | ir --newkey KEY --subject DN [--certout FILE]) [--next-url URL] "
            "[--before-next FILE]\n");
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"url", 1, NULL, 'u'},      {"cafile", 1, NULL, 'a'},      {"tls-cert", 1, NULL, 'T'},
        {"tls-key", 1, NULL, 'K'},  {"cert", 1, NULL, 'c'},        {"key", 1, NULL, 'k'},
        {"ref", 1, NULL, 'r'},      {"secret", 1, NULL, 's'},      {"rspout", 1, NULL, 'o'},
        {"out", 1, NULL, 'O'},      {"revoke", 1, NULL, 'R'},      {"reason", 1, NULL, 'n'},
        {"profile", 1, NULL, 'P'},  {"oldroot", 1, NULL, 'D'},     {"newkey", 1, NULL, 'N'},
        {"subject", 1, NULL, 'S'},  {"certout", 1, NULL, 'C'},     {"reqout", 1, NULL, 'q'},
        {"next-url", 1, NULL, 'x'}, {"before-next", 1, NULL, 'w'}, {NULL, 0, NULL, 0},
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
        case 'x':
            o.next_url = optarg;
            break;
        case 'w':
            o.before_next = optarg;
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
        case 'P':
            o.profile = optarg;
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
            else if (ch == 'D')
                o.oldroot = optarg;
            else if (ch == 'N')
                o.newkey = optarg;
            else if (ch == 'S')
                o.subject = optarg;
            else if (ch == 'C')
                o.certout = optarg;
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
        else if (strcmp(cmd, "rootcaupdate") == 0 && argc == optind)
            rc = do_rootcaupdate(ctx, &o);
        else if (strcmp(cmd, "rr") == 0 && o.revoke != NULL)
            rc = do_rr(ctx, &o);
        else if (strcmp(cmd, "ir") == 0 && o.newkey != NULL && o.subject != NULL && argc == optind)
            rc = do_ir(ctx, &o);
        else
            rc = usage();
    }
    OSSL_CMP_CTX_free(ctx);
    curl_global_cleanup();
    return rc;
}
