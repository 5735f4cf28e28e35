/*
 * A CMP certificate request read into struct gw_cert_req (gateway/cmp/cert_req.h): the reading of
 * CMP structures belongs to the CMP layer, the planning that follows to mappings/profile.c.
 */
#include "gateway/cmp/cert_req.h"
#include "gateway/cmp/shim.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"

#include <stdio.h>
#include <string.h>
#include <openssl/x509v3.h>

/*
 * read_exts takes the subjectAltName out of requested extensions |exts| and counts the others,
 * which are ignored: the profile is the role's. An empty SAN list counts as none. With |keep| (a
 * CSR, which goes upstream as it is), the others are kept as asked, for the check of what comes back.
 */
static int read_exts(const STACK_OF(X509_EXTENSION) *exts, int keep, struct gw_cert_req *out, char *err)
{
    int crit = -1, i, n = sk_X509_EXTENSION_num(exts);

    for (i = 0; i < n; i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i), *copy = NULL;

        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            continue;
        out->other_exts++;
        if (keep &&
            ((out->csr_exts == NULL && (out->csr_exts = sk_X509_EXTENSION_new_null()) == NULL) ||
             (copy = X509_EXTENSION_dup(e)) == NULL || sk_X509_EXTENSION_push(out->csr_exts, copy) <= 0)) {
            X509_EXTENSION_free(copy);
            snprintf(err, GW_ERR_LEN, "out of memory");
            return GW_ERR_NOMEM;
        }
    }
    if (n <= 0)
        return 0;
    out->sans = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
    if (out->sans == NULL && crit == -2) {
        snprintf(err, GW_ERR_LEN, "the request carries more than one subjectAltName extension");
        return GW_ERR_INVAL;
    }
    if (out->sans == NULL && crit >= 0) {
        snprintf(err, GW_ERR_LEN, "the subjectAltName extension of the request is malformed");
        return GW_ERR_INVAL;
    }
    if (out->sans != NULL && sk_GENERAL_NAME_num(out->sans) == 0) {
        GENERAL_NAMES_free(out->sans);
        out->sans = NULL;
    }
    return 0;
}

/* Subject: NULL when absent or empty, so that callers test one thing. */
static int copy_subject(const X509_NAME *name, struct gw_cert_req *out)
{
    if (name == NULL || X509_NAME_entry_count(name) == 0)
        return 0;
    if ((out->subject = X509_NAME_dup(name)) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

int gw_cert_req_from_crmf(enum gw_req_kind kind, const OSSL_CRMF_MSG *crm, EVP_PKEY *key,
                          struct gw_cert_req *out, char *err)
{
    const OSSL_CRMF_CERTTEMPLATE *tmpl;
    int rc = GW_ERR_INVAL;

    gw_cert_req_init(out);
    out->kind = kind;
    if (crm == NULL || (tmpl = OSSL_CRMF_MSG_get0_tmpl(crm)) == NULL) {
        snprintf(err, GW_ERR_LEN, "the request has no certificate template");
        goto out;
    }
    if ((rc = copy_subject(OSSL_CRMF_CERTTEMPLATE_get0_subject(tmpl), out)) != 0) {
        snprintf(err, GW_ERR_LEN, "out of memory");
        goto out;
    }
    if ((rc = read_exts(OSSL_CRMF_CERTTEMPLATE_get0_extensions(tmpl), 0, out, err)) != 0)
        goto out;
    rc = GW_ERR_INVAL;
    if (key != NULL && EVP_PKEY_up_ref(key) == 1)
        out->pubkey = key; /* decoded from this template already */
    else if ((out->pubkey = gw_shim_tmpl_get1_pubkey(crm)) == NULL) {
        snprintf(err, GW_ERR_LEN, "certificate template has no public key");
        goto out;
    }
    out->spki = gw_x509_pubkey_copy(gw_shim_tmpl_get0_spki(crm)); /* out->pubkey, as the request carried it */
    if (gw_shim_tmpl_validity(crm, &out->not_before, &out->not_after) != 0) {
        snprintf(err, GW_ERR_LEN, "the validity in the certificate template is malformed");
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        gw_cert_req_cleanup(out);
    return rc;
}

int gw_cert_req_from_p10(const X509_REQ *csr, struct gw_cert_req *out, char *err)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_REQ *req = (X509_REQ *)csr; /* 3.0 getters take no const; none of them modifies */
    int rc = GW_ERR_NOMEM;

    gw_cert_req_init(out);
    out->kind = GW_REQ_P10CR;
    if (csr == NULL) {
        rc = GW_ERR_INVAL;
        snprintf(err, GW_ERR_LEN, "the request has no PKCS#10 CSR");
        goto out;
    }
    /* no copy of the CSR: what is kept is read out of it (a copy would decode its key again) */
    if ((rc = copy_subject(X509_REQ_get_subject_name(req), out)) != 0) {
        snprintf(err, GW_ERR_LEN, "out of memory");
        goto out;
    }
    /* one extensionRequest, read as every CA behind the gateway will read it */
    if ((rc = gw_x509_req_extensions(csr, &exts, err)) != 0 || (rc = read_exts(exts, 1, out, err)) != 0)
        goto out;
    if ((out->pubkey = X509_REQ_get_pubkey(req)) == NULL) {
        rc = GW_ERR_INVAL;
        snprintf(err, GW_ERR_LEN, "the CSR public key cannot be decoded");
        goto out;
    }
    out->spki = gw_x509_pubkey_copy(X509_REQ_get_X509_PUBKEY(req));
    rc = 0;
out:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (rc != 0)
        gw_cert_req_cleanup(out);
    return rc;
}

int gw_cert_req_subject_from(struct gw_cert_req *req, const X509 *signer)
{
    if (req->subject != NULL || signer == NULL)
        return 0;
    return copy_subject(X509_get_subject_name(signer), req);
}
