/*
 * How a request ends: the refusals checks fill (struct cmp_refusal), turned into a rejection
 * PKIStatusInfo or into OpenSSL's error message, and the outcome the request log line carries.
 */
#include "gateway/cmp/outcome.h"
#include "base/conf.h"
#include "base/log.h"
#include "base/x509.h"

#include <stdarg.h>
#include <stdio.h>
#include <openssl/cmperr.h>
#include <openssl/err.h>

static const char *const fail_names[OSSL_CMP_PKIFAILUREINFO_MAX + 1] = {
    "badAlg",           "badMessageCheck",     "badRequest",          "badTime",           "badCertId",
    "badDataFormat",    "wrongAuthority",      "incorrectData",       "missingTimeStamp",  "badPOP",
    "certRevoked",      "certConfirmed",       "wrongIntegrity",      "badRecipientNonce", "timeNotAvailable",
    "unacceptedPolicy", "unacceptedExtension", "addInfoNotAvailable", "badSenderNonce",    "badCertTemplate",
    "signerNotTrusted", "transactionIdInUse",  "unsupportedVersion",  "notAuthorized",     "systemUnavail",
    "systemFailure",    "duplicateCertReq",
};

static const char *fail_name(int bit)
{
    return bit >= 0 && bit <= OSSL_CMP_PKIFAILUREINFO_MAX ? fail_names[bit] : "none";
}

__attribute__((format(printf, 3, 0))) static void vrefuse(struct cmp_refusal *r, int fail_info,
                                                          const char *fmt, va_list ap)
{
    r->fail_info = fail_info;
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
}

int cmp_refuse(struct cmp_refusal *r, int fail_info, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vrefuse(r, fail_info, fmt, ap);
    va_end(ap);
    return 1;
}

int cmp_deny(const struct cmp_call *c, const struct cmp_txn *t, const char *code, struct cmp_refusal *r,
             int fail_info, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vrefuse(r, fail_info, fmt, ap);
    va_end(ap);
    cmp_log_denied(c, t, code, r);
    return 1;
}

void cmp_log_denied(const struct cmp_call *c, const struct cmp_txn *t, const char *code,
                    const struct cmp_refusal *r)
{
    gw_log_kv(GW_LOG_INFO, "not_authorized", "tid", c->rsp->tid, "role", t->role->name, "identity",
              t->identity, "tls_subject", c->tls_subject, "reason", code, "msg", r->text, NULL);
}

void cmp_log_already_revoked(const struct cmp_call *c, const char *serial, const X509_NAME *issuer,
                             const char *source, const char *how)
{
    char *line = issuer != NULL ? gw_x509_name_line(issuer) : NULL;

    gw_log_kv(GW_LOG_INFO, "rr_already_revoked", "tid", c->rsp->tid, "reason", "rr_already_revoked", "serial",
              serial, "issuer", line != NULL ? line : "unknown", "source", source, "status", how, NULL);
    OPENSSL_free(line);
}

void cmp_set_outcome(struct cmp_call *c, const char *status, const struct cmp_refusal *r)
{
    /* every failed protection check is badMessageCheck (docs/errors.md): the address pays for it */
    if (r != NULL && r->fail_info == OSSL_CMP_PKIFAILUREINFO_badMessageCheck)
        c->rsp->auth_failed = true;
    if (r == NULL)
        snprintf(c->rsp->outcome, sizeof(c->rsp->outcome), "%s", status);
    else
        gw_conf_bprintf(c->rsp->outcome, sizeof(c->rsp->outcome), "%s: %s: %s", status,
                        fail_name(r->fail_info), r->text);
}

OSSL_CMP_PKISI *cmp_rejection(const struct cmp_refusal *r)
{
    char text[sizeof(r->text)];

    /* not every text is cmp_refuse's: the policy writes some itself, with a list of patterns cut to
       its room (a Vault role's too, whatever bytes it holds), and an upstream's quote may have been
       cut on its way, either inside a character */
    snprintf(text, sizeof(text), "%s", r->text);
    gw_utf8_scrub(text);
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, 1 << r->fail_info, text);
}

OSSL_CMP_PKISI *cmp_reject(struct cmp_call *c, const struct cmp_refusal *r)
{
    cmp_set_outcome(c, "rejection", r);
    return cmp_rejection(r);
}

int cmp_fail(struct cmp_call *c, const struct cmp_refusal *r)
{
    c->fail = *r;
    cmp_set_outcome(c, "error", r);
    ERR_raise_data(ERR_LIB_CMP, CMP_R_REQUEST_REJECTED_BY_SERVER, "%s", r->text);
    return 0;
}
