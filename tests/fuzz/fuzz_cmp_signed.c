/*
 * fuzz_cmp_signed: the CMP request path behind authentication (fuzz_engine.h). Each request of the
 * input that decodes as a protected PKIMessage is protected anew before it is sent, keeping its
 * transactionID: MAC'ed with the demo PBM secret if it was PBM-protected, else signed as the demo
 * client (client.pem), or as the device the seeds enrolled (device.pem) when that is its sender, as
 * in the kur and rr seeds. So whatever the mutated header and body say gets past the protection
 * check, to what an authenticated client reaches: authorization, kur and rr rules, the request
 * policy, the certificate profile, the upstream call and the checks on what it returns. Requests
 * that do not decode, or are unprotected or without a transactionID, go as they are.
 */
#include "tests/fuzz/fuzz_engine.h"

#include "gateway/cmp/shim.h"

static OSSL_CMP_CTX *client_ctx, *device_ctx, *pbm_ctx;
static X509_NAME *device_name;

static void free_ctxs(void)
{
    OSSL_CMP_CTX_free(client_ctx);
    OSSL_CMP_CTX_free(device_ctx);
    OSSL_CMP_CTX_free(pbm_ctx);
    X509_NAME_free(device_name);
}

/* A client context signing with |cert| and |key| of the fuzzing PKI; |*subject| gets the cert's. */
static OSSL_CMP_CTX *signing_ctx(const char *cert, const char *key, X509_NAME **subject)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
    X509 *x = fuzz_pki_cert(cert);
    EVP_PKEY *k = fuzz_pki_key(key);

    if (ctx == NULL || OSSL_CMP_CTX_set1_cert(ctx, x) != 1 || OSSL_CMP_CTX_set1_pkey(ctx, k) != 1 ||
        (subject != NULL && (*subject = X509_NAME_dup(X509_get_subject_name(x))) == NULL))
        fuzz_die("cannot set up a CMP context signing with %s", cert);
    X509_free(x);
    EVP_PKEY_free(k);
    return ctx;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    size_t ref_len, secret_len;
    char *ref, *secret;

    (void)argc;
    (void)argv;
    fuzz_engine_init();
    client_ctx = signing_ctx("client.pem", "client.key", NULL);
    device_ctx = signing_ctx("device.pem", "device.key", &device_name);
    ref = fuzz_pki_file("pbm.ref", &ref_len);
    secret = fuzz_pki_file("pbm.secret", &secret_len);
    if ((pbm_ctx = OSSL_CMP_CTX_new(NULL, NULL)) == NULL ||
        OSSL_CMP_CTX_set1_referenceValue(pbm_ctx, (unsigned char *)ref, (int)ref_len) != 1 ||
        OSSL_CMP_CTX_set1_secretValue(pbm_ctx, (unsigned char *)secret, (int)secret_len) != 1)
        fuzz_die("cannot set up the PBM client's CMP context");
    free(ref);
    OPENSSL_cleanse(secret, secret_len);
    free(secret);
    atexit(free_ctxs);
    return 0;
}

/* The context that protects a request like |hdr|'s, or NULL if it is unprotected. */
static OSSL_CMP_CTX *protector(const struct gw_hdr_info *hdr)
{
    if (hdr->protection_nid == NID_undef)
        return NULL;
    if (hdr->protection_nid == NID_id_PasswordBasedMAC)
        return pbm_ctx;
    return hdr->sender != NULL && X509_NAME_cmp(hdr->sender, device_name) == 0 ? device_ctx : client_ctx;
}

static unsigned char *protect(const uint8_t *data, size_t size, size_t *len)
{
    const unsigned char *p = data;
    OSSL_CMP_MSG *msg = d2i_OSSL_CMP_MSG(NULL, &p, (long)size);
    const ASN1_OCTET_STRING *tid = NULL;
    struct gw_hdr_info hdr;
    OSSL_CMP_CTX *ctx = NULL;
    unsigned char *der = NULL, *body = NULL;
    int n;

    if (msg != NULL && p == data + size && gw_shim_hdr_info(msg, &hdr) == 0) {
        ctx = protector(&hdr);
        gw_shim_hdr_info_cleanup(&hdr);
        tid = OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(msg));
    }
    /* the request's own transactionID: without one in the context a fresh random one replaces it */
    if (ctx != NULL && tid != NULL && OSSL_CMP_CTX_set1_transactionID(ctx, tid) == 1 &&
        OSSL_CMP_MSG_update_transactionID(ctx, msg) == 1 && (n = i2d_OSSL_CMP_MSG(msg, &der)) > 0 &&
        (body = malloc((size_t)n)) != NULL) {
        memcpy(body, der, (size_t)n); /* malloc'ed as every body, for the engine to read to its exact end */
        *len = (size_t)n;
    }
    OPENSSL_free(der);
    OSSL_CMP_MSG_free(msg);
    ERR_clear_error();
    return body;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_engine_input(data, size, protect);
    return 0;
}
