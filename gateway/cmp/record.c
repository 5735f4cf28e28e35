/*
 * The audit records of a transaction (docs/audit.md): the fields every record carries,
 * the record of a refusal, the record of a certificate, and a certificate withdrawn: revoked
 * upstream where the upstream can, and on record either way.
 */
#include "gateway/cmp/record.h"
#include "gateway/cmp/status.h"
#include "base/err.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"
#include "upstream/upstream.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <openssl/x509v3.h>

#define TEXT_UNDELIVERED "not delivered: the answer carrying the certificate could not be built"

/* The fields every record of a transaction carries. */
void cmp_audit_rec_init(struct gw_audit_rec *r, const struct cmp_txn *t, const char *tid, const char *event,
                        const char *status)
{
    memset(r, 0, sizeof(*r));
    r->event = event;
    r->tid = tid;
    r->route = t->route[0] != '\0' ? t->route : NULL;
    r->role = t->role != NULL ? t->role->name : NULL;
    r->identity = t->identity[0] != '\0' ? t->identity : NULL;
    r->credential_status = t->credential_status[0] != '\0' ? t->credential_status : NULL;
    r->tls_subject = t->tls_subject[0] != '\0' ? t->tls_subject : NULL;
    r->body_type = t->body[0] != '\0' ? t->body : NULL;
    r->upstream = t->up != NULL ? gw_upstream_conf_name(gw_upstream_get0_conf(t->up)) : NULL;
    r->serial = t->serial[0] != '\0' ? t->serial : NULL;
    r->status = status;
    r->exclude_cn_from_sans = t->role != NULL && t->role->exclude_cn_from_sans;
}

void cmp_audit_refusal(struct cmp_call *c, const struct cmp_txn *t)
{
    struct gw_audit_rec r;

    if (c->audited)
        return;
    cmp_audit_rec_init(&r, t, c->rsp->tid, "rejected", c->rsp->outcome);
    (void)cmp_audit_write(c->e, &r, 0);
    c->audited = 1;
}

static struct gw_metric *m_certs, *m_fsync;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
    static const char *const cert_labels[] = {"upstream", "event", NULL};
    static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};

    m_certs = gw_metric_new("cmpgw_certificates_total",
                            "Certificates on the audit record, by upstream and event (issued, revoked).",
                            GW_METRIC_COUNTER, cert_labels, NULL, 0);
    m_fsync =
        gw_metric_new("cmpgw_audit_write_seconds", "Time an audit record took to reach the disk (fsync'd).",
                      GW_METRIC_HISTOGRAM, NULL, secs, sizeof(secs) / sizeof(secs[0]));
}

int cmp_audit_write(struct gw_cmp_engine *e, const struct gw_audit_rec *r, int sync)
{
    uint64_t start = gw_now_ms();

    pthread_once(&m_once, metrics_init);
    if (gw_audit_write(e->audit, r, sync) == 0) {
        if (sync)
            gw_metric_observe(m_fsync, NULL, (double)(gw_now_ms() - start) / 1000.0);
        if (strcmp(r->event, "issued") == 0 || strcmp(r->event, "revoked") == 0)
            gw_metric_add(m_certs, (const char *const[]){r->upstream != NULL ? r->upstream : "", r->event},
                          1);
        return 0;
    }
    gw_log_kv(GW_LOG_ERROR, "audit_write_failed", "record", r->event, "tid", r->tid, "serial", r->serial,
              NULL);
    return GW_ERR_IO;
}

/* A record about |cert| (may be NULL): its subject, names and key fill the audit_fields. */
int cmp_audit_cert(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, const char *event,
                   const char *status, X509 *cert, int sync)
{
    struct gw_audit_rec r;
    GENERAL_NAMES *sans = cert != NULL ? X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL) : NULL;
    int rc;

    cmp_audit_rec_init(&r, t, tid, event, status);
    if (cert != NULL) {
        r.subject = X509_get_subject_name(cert);
        r.sans = sans;
        r.pubkey = X509_get0_pubkey(cert);
    }
    rc = cmp_audit_write(e, &r, sync);
    GENERAL_NAMES_free(sans);
    return rc;
}

/*
 * A certificate that exists at the CA but must not be used (outside policy, unusable, unaudited,
 * rejected by the client): revoked upstream where the upstream can, and either way on record.
 */
void cmp_withdraw(struct gw_cmp_engine *e, const struct cmp_txn *t, const char *tid, X509 *cert, int reason)
{
    char err[GW_ERR_LEN] = "", status[GW_ERR_LEN];
    int rc = gw_upstream_revoke(t->up, cert, reason, err); /* fails without an upstream (rebuilt here) */
    const char *up = t->up != NULL ? gw_upstream_conf_name(gw_upstream_get0_conf(t->up)) : "?";

    if (rc == 0) {
        cmp_status_invalidate(e, t->up);
        (void)cmp_audit_cert(e, t, tid, "revoked", "revoked upstream", cert, 1);
        gw_log_kv(GW_LOG_WARN, "cert_revoked", "tid", tid, "serial", t->serial, "upstream", up, NULL);
        return;
    }
    snprintf(status, sizeof(status), "not revoked: %.200s", err);
    (void)cmp_audit_cert(e, t, tid, "revoke_failed", status, cert, 1);
    gw_log_kv(GW_LOG_ERROR, "revoke_failed", "tid", tid, "serial", t->serial, "upstream", up, "reason", err,
              "msg", "a certificate that must not be used is still valid: revoke it by hand", NULL);
}

/*
 * The record of a transaction that closes with a certificate issued. A client that
 * rejects the certificate will not use it: it is revoked where the upstream can. In 3.0 an
 * empty CertStatus list (the client's rejection) is answered without the callback (docs/design.md
 * O4).
 */
void cmp_audit_closed(struct cmp_call *c, struct cmp_txn *t)
{
    int rejected = c->confirm == CMP_CONFIRM_REJECTED ||
                   (c->confirm == CMP_CONFIRM_NONE && c->body == GW_CMP_BODY_CERTCONF &&
                    strcmp(c->rsp->rsp_type, "pkiconf") == 0);

    if (t->issued == NULL)
        return;
    if (c->confirm == CMP_CONFIRM_ACCEPTED) {
        (void)cmp_audit_cert(c->e, t, c->rsp->tid, "confirmed", c->rsp->outcome, t->issued, 0);
        return;
    }
    if (!rejected) {
        (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected", c->rsp->outcome, t->issued, 0);
        return;
    }
    (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected_by_client", "the client rejected the certificate",
                         t->issued, 1);
    cmp_withdraw(c->e, t, c->rsp->tid, t->issued, CRL_REASON_CESSATION_OF_OPERATION);
}

int cmp_withdraw_undelivered(struct cmp_call *c, struct cmp_txn *t)
{
    const char *type = c->rsp->rsp_type;

    if (t->issued == NULL ||
        (c->rsp->http_status == 200 &&
         (strcmp(type, "ip") == 0 || strcmp(type, "cp") == 0 || strcmp(type, "kup") == 0)))
        return 0;
    gw_log_kv(GW_LOG_ERROR, "cert_undelivered", "tid", c->rsp->tid, "identity", t->identity, "serial",
              t->serial, "outcome", c->rsp->outcome, "msg",
              "the answer carrying the certificate could not be built", NULL);
    (void)cmp_audit_cert(c->e, t, c->rsp->tid, "rejected", TEXT_UNDELIVERED, t->issued, 1);
    cmp_withdraw(c->e, t, c->rsp->tid, t->issued, CRL_REASON_CESSATION_OF_OPERATION);
    X509_free(t->issued);
    t->issued = NULL;
    return 1;
}
