/* One exchange's request and response (gateway/cmp/exchange.h). */
#include "gateway/cmp/exchange.h"

#include "gateway/cmp/shim.h"
#include "base/err.h"
#include "base/log.h"
#include "base/x509.h"

#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

int gw_cmp_tls_client(const X509 *peer, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (peer == NULL) {
        snprintf(out, GW_TLS_CLIENT_LEN, "none");
        return 0;
    }
    if (X509_digest(peer, gw_sha256(), md, &len) != 1 || len != 32) {
        snprintf(out, GW_TLS_CLIENT_LEN, GW_CMP_TLS_CLIENT_UNKNOWN);
        return GW_ERR_CRYPTO;
    }
    memcpy(out, "sha256:", 7);
    gw_hex(out + 7, md, len);
    return 0;
}

void gw_cmp_response_init(struct gw_cmp_response *rsp)
{
    memset(rsp, 0, sizeof(*rsp));
    rsp->http_status = 500;
}

void gw_cmp_response_cleanup(struct gw_cmp_response *rsp)
{
    if (rsp == NULL)
        return;
    OPENSSL_free(rsp->der);
    rsp->der = NULL;
    rsp->len = 0;
    gw_cmp_carried_free(rsp->carried);
    rsp->carried = NULL;
}

void gw_cmp_http_error(struct gw_cmp_response *rsp, int status, const char *reason)
{
    rsp->http_status = status;
    snprintf(rsp->http_reason, sizeof(rsp->http_reason), "%s", reason);
    snprintf(rsp->outcome, sizeof(rsp->outcome), "http %d: %s", status, reason);
}

OSSL_CMP_MSG *gw_cmp_decode(const struct gw_cmp_request *req, struct gw_cmp_response *rsp, int *hash_alg,
                            int *certs_later)
{
    const unsigned char *p = req->der;
    OSSL_CMP_MSG *msg = NULL;
    int keys, elements, rc;

    *hash_alg = *certs_later = 0;
    if (p == NULL || req->len == 0) {
        gw_cmp_http_error(rsp, 400, "empty body: expected a DER-encoded PKIMessage");
        return NULL;
    }
    if (req->len > GW_MAX_CMP_BODY) {
        gw_cmp_http_error(rsp, 413, GW_CMP_TEXT_TOO_LARGE);
        return NULL;
    }
    if ((rc = gw_shim_der_count(p, req->len, &keys, &elements)) == 0 &&
        (keys > GW_MAX_MSG_KEYS || elements > GW_MAX_MSG_ELEMENTS)) {
        char why[160];

        /* before OpenSSL decodes them: 64 KiB of keys cost up to 100 ms, of small elements 11 ms */
        if (keys > GW_MAX_MSG_KEYS)
            snprintf(why, sizeof(why),
                     "the PKIMessage holds more than %d public keys (certificates, templates): send at most "
                     "%d extraCerts and one request",
                     GW_MAX_MSG_KEYS, GW_MAX_EXTRA_CERTS);
        else
            snprintf(
                why, sizeof(why),
                "the PKIMessage holds more than %d ASN.1 elements: send the signer's certificate and its "
                "chain and one request",
                GW_MAX_MSG_ELEMENTS);
        gw_cmp_http_error(rsp, 400, why);
        return NULL;
    }
    /* a client of CMP version 3 confirms a certificate signed without a hash (Ed25519) with hashAlg */
    if (rc == 0 && (msg = gw_shim_d2i_msg_later(&p, (long)req->len, certs_later)) == NULL &&
        (msg = gw_shim_d2i_hash_alg(req->der, (long)req->len)) != NULL) {
        ERR_clear_error();
        p = req->der + req->len;
        *hash_alg = 1;
    }
    if (rc != 0 || msg == NULL) {
        ERR_clear_error();
        gw_cmp_http_error(rsp, 400, GW_CMP_TEXT_NOT_DER);
        return NULL;
    }
    if (p != req->der + req->len) {
        OSSL_CMP_MSG_free(msg);
        gw_cmp_http_error(rsp, 400, "trailing bytes after the PKIMessage");
        return NULL;
    }
    return msg;
}
