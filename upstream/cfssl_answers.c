/*
 * cfssl answers, parsed and range-checked (answers.h). Every cfssl endpoint answers with the same
 * envelope (cfssl api.Response, written by Go's encoding/json): {"success": bool, "result": ...,
 * "errors": [{"code": int, "message": string}], "messages": [the same]}.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "base/err.h"
#include "base/limits.h"
#include "upstream/answers.h"
#include "upstream/field.h"

#define NAME_LEN 64 /* a field name as a reason shows it: "messages[15].message" */

/* One entry of errors or messages (cfssl api.ResponseMessage): {"code": int, "message": string}. */
static int message(json_object *e, const char *name, int64_t *code, const char **text, size_t *len, char *err)
{
    char cname[NAME_LEN + 16], mname[NAME_LEN + 16];
    int rc;

    snprintf(cname, sizeof(cname), "%.*s.code", NAME_LEN, name);
    snprintf(mname, sizeof(mname), "%.*s.message", NAME_LEN, name);
    if ((rc = gw_field_object(e, name, err)) != 0 ||
        (rc = gw_field_int(gw_field_member(e, "code"), cname, 0, 0, GW_MAX_CFSSL_CODE, code, err)) != 0 ||
        (rc = gw_field_string(gw_field_member(e, "message"), mname, 0, GW_MAX_UPSTREAM_MESSAGE, text, len,
                              err)) != 0)
        return rc;
    return 0;
}

/* The messages of array |key| of |root|, checked; the first one into |out| if it is not NULL. */
static int messages(json_object *root, const char *key, struct gw_cfssl_envelope *out, char *err)
{
    json_object *a = gw_field_member(root, key);
    char name[NAME_LEN];
    const char *text;
    size_t n = 0, i, len;
    int64_t code;
    int rc;

    if (a != NULL && (rc = gw_field_array(a, key, GW_MAX_UPSTREAM_MESSAGES, &n, err)) != 0)
        return rc;
    for (i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%s[%zu]", key, i);
        if ((rc = message(json_object_array_get_idx(a, i), name, &code, &text, &len, err)) != 0)
            return rc;
        if (i == 0 && out != NULL) {
            out->code = (long)code;
            gw_field_text(out->message, sizeof(out->message), text, len);
        }
    }
    return 0;
}

static int envelope(json_object *root, struct gw_cfssl_envelope *out, char *err)
{
    int rc;

    if ((rc = gw_field_bool(gw_field_member(root, "success"), "success", &out->success, err)) != 0 ||
        (rc = messages(root, "errors", out, err)) != 0 || (rc = messages(root, "messages", NULL, err)) != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int gw_cfssl_parse_envelope(const char *body, size_t len, struct gw_cfssl_envelope *out, char *err)
{
    json_object *root;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((root = gw_field_document(body, len, "not a cfssl envelope", err)) == NULL)
        return GW_ERR_UPSTREAM;
    rc = envelope(root, out, err);
    json_object_put(root);
    return rc;
}

/*
 * The certificate an answer refused whole holds (a readable result.certificate, whatever "success"
 * says or is), or NULL: only to be recorded and withdrawn (docs/design.md D8). cfssl writes every
 * error with "result": null, so a certificate beside "success": false, or beside a "success" that is
 * no boolean at all, may have been issued all the same.
 */
static X509 *issued_cert(json_object *root)
{
    if (root == NULL)
        return NULL;
    return gw_field_issued_cert(root, "result", "certificate");
}

/* What a sign answer that is no whole JSON document says was issued: see gw_field_parse_leading. */
static X509 *leading_cert(const char *body, size_t len)
{
    json_object *lead = NULL;
    char why[GW_ERR_LEN];
    X509 *cert;

    json_object_put(gw_field_parse_leading(body, len, &lead, why)); /* NULL: the strict parse failed */
    cert = issued_cert(lead);
    json_object_put(lead);
    return cert;
}

/*
 * sign, authsign and info: {"result": {"certificate": "<one PEM certificate>"}} on success. |keep|
 * (sign): a refused answer that says a certificate was issued keeps it in |out->cert|.
 */
static int parse_cert(const char *body, size_t len, int keep, struct gw_cfssl_cert *out, char *err)
{
    struct gw_cfssl_envelope said;
    json_object *root, *result;
    STACK_OF(X509) *one = NULL;
    X509 *issued = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((root = gw_field_document(body, len, "not a cfssl envelope", err)) == NULL) {
        out->cert = keep ? leading_cert(body, len) : NULL;
        return GW_ERR_UPSTREAM;
    }
    if ((rc = envelope(root, &out->env, err)) != 0)
        goto out;
    if (!out->env.success) {
        if (keep && (issued = issued_cert(root)) != NULL)
            rc = gw_field_fail(err, "result.certificate holds a certificate beside \"success\": false");
        goto out;
    }
    result = gw_field_member(root, "result");
    if ((rc = gw_field_object(result, "result", err)) != 0)
        goto out;
    if ((one = sk_X509_new_null()) == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    if ((rc = gw_field_certs(gw_field_member(result, "certificate"), "result.certificate", one, 1, 0, NULL,
                             err)) != 0)
        goto out;
    out->cert = sk_X509_shift(one);
out:
    sk_X509_pop_free(one, X509_free);
    if (rc != 0 && keep && issued == NULL) /* cfssl issued it all the same, whatever else the answer says */
        issued = issued_cert(root);
    json_object_put(root);
    if (rc != 0) {
        said = out->env; /* cfssl's error, where it said "success": false (envelope clears a broken one) */
        gw_cfssl_cert_cleanup(out);
        out->cert = issued;
        if (!said.success)
            out->env = said;
    }
    return rc;
}

int gw_cfssl_parse_sign(const char *body, size_t len, struct gw_cfssl_cert *out, char *err)
{
    return parse_cert(body, len, 1, out, err);
}

int gw_cfssl_parse_info(const char *body, size_t len, struct gw_cfssl_cert *out, char *err)
{
    return parse_cert(body, len, 0, out, err);
}

void gw_cfssl_cert_cleanup(struct gw_cfssl_cert *c)
{
    if (c == NULL)
        return;
    X509_free(c->cert);
    memset(c, 0, sizeof(*c));
}

int gw_cfssl_parse_crl(const char *body, size_t len, struct gw_cfssl_crl *out, char *err)
{
    json_object *root;
    const unsigned char *p;
    const char *b64 = NULL;
    X509_CRL *crl = NULL;
    size_t n = 0, pad;
    int rc, got;

    memset(out, 0, sizeof(*out));
    if ((root = gw_field_document(body, len, "not a cfssl envelope", err)) == NULL)
        return GW_ERR_UPSTREAM;
    if ((rc = envelope(root, &out->env, err)) != 0 || !out->env.success)
        goto out;
    if ((rc = gw_field_string(gw_field_member(root, "result"), "result", 1, GW_MAX_UPSTREAM_BODY, &b64, &n,
                              err)) != 0)
        goto out;
    rc = GW_ERR_UPSTREAM;
    if (n % 4 != 0) {
        gw_field_fail(err, "result is not base64 (%zu characters)", n);
        goto out;
    }
    if ((out->der = malloc(n / 4 * 3)) == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    pad = (b64[n - 1] == '=') + (b64[n - 2] == '=');
    if ((got = EVP_DecodeBlock(out->der, (const unsigned char *)b64, (int)n)) < 0 || (size_t)got < pad) {
        gw_field_fail(err, "result is not base64");
        goto out;
    }
    out->len = (size_t)got - pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    p = out->der;
    if ((crl = d2i_X509_CRL(NULL, &p, (long)out->len)) == NULL || p != out->der + out->len) {
        gw_field_fail(err, "result is not the base64 of one DER CRL");
        goto out;
    }
    rc = 0;
out:
    X509_CRL_free(crl);
    json_object_put(root);
    if (rc != 0)
        gw_cfssl_crl_cleanup(out);
    return rc;
}

void gw_cfssl_crl_cleanup(struct gw_cfssl_crl *c)
{
    if (c == NULL)
        return;
    free(c->der);
    memset(c, 0, sizeof(*c));
}
