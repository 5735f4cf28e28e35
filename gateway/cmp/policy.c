/*
 * The CMP engine's policy glue: the checks every request passes (who sent it, its credentials'
 * status, authorization, messageTime, replay), who may use a role (mappings/policy.h), which
 * upstream signs a request (docs/design.md D5: CRMF to CSR-only upstreams), what an
 * upstream returned is checked against, and the 3GPP checks. The checks themselves are pure
 * functions in mappings/policy.c; this file feeds them and keeps the state they need: the audit
 * log, the issuer stores of local upstreams and the upstream role policies of delegates.
 */
#include "gateway/cmp/policy.h"
#include "gateway/cmp/auth.h"
#include "gateway/cmp/chains.h"
#include "gateway/cmp/audit.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/recent.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/status.h"
#include "gateway/cmp/urole.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/x509.h"
#include "mappings/policy.h"
#include "mappings/route.h"
#include "upstream/upstream.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#define TEXT_CRMF_REJECT                                                                                     \
    "this route's CA signs PKCS#10 requests only: send a p10cr (openssl cmp -cmd p10cr -csr ...)"
#define TEXT_P10_REJECT "this route's CA does not sign PKCS#10 requests: send an ir or cr"
#define TEXT_ROLE_REMOVED                                                                                    \
    "role %s was removed by a configuration reload after this transaction began: enrol again on a route "    \
    "that exists"
/* a delegate's upstream role, while its last read failed (GW_ROLE_POLICY_RETRY) or another is under way */
#define TEXT_ROLE_UNREAD_LATELY                                                                              \
    "the policy of upstream role %.40s could not be read a moment ago: the CA's role definition is needed "  \
    "to issue; retry in a few seconds"
#define TEXT_ROLE_BEING_READ                                                                                 \
    "the policy of upstream role %.40s is being read for another request: retry in a few seconds"

static int init_issuer_stores(struct gw_cmp_engine *e, char *err)
{
    const struct gw_cmp_settings *cfg = &e->cfg;

    if (cfg->n_upstreams == 0)
        return 0;
    if ((e->issuer_stores = calloc(cfg->n_upstreams, sizeof(*e->issuer_stores))) == NULL ||
        (e->issuer_certs = calloc(cfg->n_upstreams, sizeof(*e->issuer_certs))) == NULL)
        goto nomem;
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const struct gw_upstream_conf *uc = &cfg->upstreams[i];

        if (uc->issuer_store == NULL)
            continue;
        if (X509_STORE_up_ref(uc->issuer_store) != 1)
            goto nomem;
        e->issuer_stores[i] = uc->issuer_store;
        /* what each issuance's chain would otherwise list again: the store does not change */
        if ((e->issuer_certs[i] = X509_STORE_get1_all_certs(uc->issuer_store)) == NULL)
            goto nomem;
    }
    return 0;
nomem:
    snprintf(err, GW_ERR_LEN, "CMP engine: out of memory building the upstream issuer stores");
    return GW_ERR_NOMEM;
}

/* Opens the audit log, the issuer stores and the role policy cache. 0 or a gw_err (the log's) with |err|. */
int cmp_policy_init(struct gw_cmp_engine *e, char *err)
{
    char why[GW_ERR_LEN] = "";
    int rc;

    if (e->cfg.audit->file == NULL) {
        snprintf(err, GW_ERR_LEN, "CMP engine: no audit log is configured (\"audit\": {\"file\": ...})");
        return GW_ERR_INVAL;
    }
    if (e->audit == NULL &&
        (e->audit = gw_audit_open(e->cfg.audit, e->cfg.uid, e->cfg.gid, &rc, why)) == NULL) {
        snprintf(err, GW_ERR_LEN, "CMP engine: %.200s", why);
        return rc;
    }
    if (init_issuer_stores(e, err) != 0 || cmp_urole_init(e, err) != 0 || cmp_status_init(e, err) != 0)
        return GW_ERR_NOMEM;
    e->chains = cmp_chains_new();   /* NULL: every chain is verified each time */
    e->links = gw_x509_links_new(); /* NULL: every link likewise */
    return 0;
}

/* NULL-safe on a partly built engine. */
void cmp_policy_cleanup(struct gw_cmp_engine *e)
{
    for (size_t i = 0; e->issuer_stores != NULL && i < e->cfg.n_upstreams; i++)
        X509_STORE_free(e->issuer_stores[i]);
    for (size_t i = 0; e->issuer_certs != NULL && i < e->cfg.n_upstreams; i++)
        sk_X509_pop_free(e->issuer_certs[i], X509_free);
    free(e->issuer_stores);
    free(e->issuer_certs);
    e->issuer_stores = NULL;
    e->issuer_certs = NULL;
    cmp_urole_cleanup(e);
    cmp_status_cleanup(e);
    cmp_chains_free(e->chains);
    e->chains = NULL;
    gw_x509_links_free(e->links);
    e->links = NULL;
    gw_audit_close(e->audit);
    e->audit = NULL;
}

/* The request path for the audit log: the listener's, else what the route match says. */
static void describe_route(struct cmp_call *c)
{
    const struct gw_route_match *m = c->req->route;
    const char *prefix = c->e->cfg.path_prefix != NULL ? c->e->cfg.path_prefix : "";

    if (c->req->path != NULL) {
        snprintf(c->route, sizeof(c->route), "%s", c->req->path);
        return;
    }
    switch (m != NULL ? m->kind : GW_ROUTE_DEFAULT) {
    case GW_ROUTE_ROLE:
        snprintf(c->route, sizeof(c->route), "%s/roles/%s/cmp", prefix, c->role->name);
        break;
    case GW_ROUTE_WELLKNOWN:
        snprintf(c->route, sizeof(c->route), "/.well-known/cmp");
        break;
    case GW_ROUTE_LABEL:
        snprintf(c->route, sizeof(c->route), "/.well-known/cmp/p/*");
        break;
    default:
        snprintf(c->route, sizeof(c->route), "%s/cmp", prefix);
        break;
    }
}

/* The TLS client a transaction is bound to (gw_cmp_tls_client): its connection's, when made there. */
static void describe_tls_client(struct cmp_call *c)
{
    if (c->req->tls_peer != NULL && c->req->tls_client != NULL)
        snprintf(c->tls_client, sizeof(c->tls_client), "%s", c->req->tls_client);
    else
        (void)gw_cmp_tls_client(c->req->tls_peer, c->tls_client);
}

/* Fills what the audit records of this request say about where it came from. */
void cmp_describe_call(struct cmp_call *c)
{
    describe_route(c);
    describe_tls_client(c);
    c->tls_subject[0] = '\0';
    if (c->req->tls_peer != NULL && X509_NAME_oneline(X509_get_subject_name(c->req->tls_peer), c->tls_subject,
                                                      sizeof(c->tls_subject)) == NULL)
        snprintf(c->tls_subject, sizeof(c->tls_subject), "unknown");
}

/*
 * docs/design.md D7: both the TLS client certificate and the CMP identity, deny by default. |r| is
 * written on refusal only: a caller's refusal left unset (failInfo -1) must not read as one; *code
 * is then the docs/errors.md row that refused (a static string).
 */
static int authorize(struct cmp_call *c, const struct cmp_txn *t, struct cmp_refusal *r, const char **code)
{
    struct gw_identity id = {.tls_peer = c->req->tls_peer,
                             .signer = t->pbm ? NULL : t->signer,
                             .pbm_ref = t->pbm ? t->pbm_ref : NULL};
    struct cmp_refusal why = {.fail_info = OSSL_CMP_PKIFAILUREINFO_notAuthorized};

    *code = NULL;
    if (gw_policy_authorize(t->role, &id, c->now, &why.fail_info, why.text, code) == 0)
        return 0;
    *r = why;
    cmp_log_denied(c, t, *code, r);
    return 1;
}

int cmp_authorize(struct cmp_call *c, const struct cmp_txn *t, struct cmp_refusal *r)
{
    const char *code;

    return authorize(c, t, r, &code);
}

void cmp_quota_key(char *out, const char *identity, const char *tls_client)
{
    if (strncmp(tls_client, "sha256:", 7) == 0)
        snprintf(out, GW_QUOTA_KEY_LEN, "%s %s", tls_client, identity);
    else
        snprintf(out, GW_QUOTA_KEY_LEN, "%s", identity);
}

void cmp_identity_of(char *out, int pbm, const unsigned char *kid, size_t kid_len, const X509_NAME *name)
{
    if (pbm)
        snprintf(out, GW_IDENTITY_LEN, "pbm:%.*s", (int)kid_len, (const char *)kid);
    else if (name == NULL || gw_x509_name_identity(name, out) != 0)
        snprintf(out, GW_IDENTITY_LEN, "unknown");
}

void cmp_identify(struct cmp_txn *t, struct cmp_call *c)
{
    cmp_identity_of(t->identity, t->pbm, t->kid, t->kid_len,
                    t->signer != NULL ? X509_get_subject_name(t->signer) : NULL);
    if (t->pbm)
        snprintf(t->pbm_ref, sizeof(t->pbm_ref), "%.*s", (int)t->kid_len, (const char *)t->kid);
    cmp_quota_key(t->quota, t->identity, t->tls_client);
    snprintf(c->rsp->identity, sizeof(c->rsp->identity), "%s", t->identity);
}

const struct gw_role *cmp_role_named(const struct gw_cmp_engine *e, const char *name)
{
    return gw_role_named(e->cfg.roles, e->cfg.n_roles, name);
}

/* Whether |t|'s PBM reference keeps its secret under |now|: 0, or refused with |r| and its *code. */
static int check_pbm_secret(const struct gw_cmp_engine *now, const struct cmp_txn *t, struct cmp_refusal *r,
                            const char **code)
{
    const struct gw_pbm_conf *was = gw_pbm_conf_find(t->e->cfg.pbm, t->e->cfg.n_pbm, t->kid, t->kid_len);
    const struct gw_pbm_conf *is = gw_pbm_conf_find(now->cfg.pbm, now->cfg.n_pbm, t->kid, t->kid_len);

    *code = is == NULL ? "txn_secret_removed" : "txn_secret_changed";
    if (is == NULL)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "%s", TEXT_SECRET_REMOVED);
    if (was != NULL && was->secret_len == is->secret_len &&
        CRYPTO_memcmp(was->secret, is->secret, is->secret_len) == 0)
        return 0;
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_notAuthorized, "%s", TEXT_SECRET_CHANGED);
}

/*
 * The checks of a new request but the message's protection, which the pinned signer (or secret)
 * checked. They read the role and chain from |t|, lent this call's for their time: the call alone
 * holds |t| checked out. None of these refusals is badMessageCheck: the message is its
 * transaction's own (check_continuing), and what the operator changed since must not count against
 * its client's address (cmp_set_outcome).
 */
int cmp_check_record(struct cmp_call *c, struct cmp_txn *t, const char *role, struct cmp_refusal *r)
{
    const struct gw_role *began = t->role;
    STACK_OF(X509) *chain = t->signer_chain, *now = NULL;
    const char *code = "txn_role_removed"; /* the docs/errors.md row of the refusal, for the log */
    int rc;

    /* a path a reload took away (gone) is no role's of the running configuration */
    if (c->req->gone != NULL || (t->role = cmp_role_named(c->e, role)) == NULL)
        rc = cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_notAuthorized, TEXT_ROLE_REMOVED, role);
    else if (t->pbm && check_pbm_secret(c->e, t, r, &code) != 0)
        rc = 1;
    else if (!t->pbm && (now = cmp_signer_chain_on(c, t, t->role)) == NULL) {
        code = "txn_signer_untrusted";
        rc = cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_signerNotTrusted, "%s", TEXT_NO_LONGER_TRUSTED);
    } else {
        t->signer_chain = now; /* which trust entries speak for the signer: those of its chain here */
        if ((rc = cmp_check_credentials(c, t, r)) != 0)
            code = cmp_credentials_code(r);
        else
            rc = authorize(c, t, r, &code);
    }
    t->role = began;
    t->signer_chain = chain;
    sk_X509_pop_free(now, X509_free);
    if (rc != 0)
        gw_log_kv(GW_LOG_INFO, "txn_sender_refused", "tid", c->rsp->tid, "identity", t->identity, "role",
                  role, "reason", code, "msg", r->text, NULL);
    return rc;
}

/*
 * A certProfile is chosen before any credential is checked, and a refusal of one costs its address nothing
 * (a fleet behind one address may ask for a profile not served): any peer could write profile_refused lines
 * as fast as it sends requests, so they are paced as the other events such a peer causes.
 */
static struct gw_log_pace profile_pace = GW_LOG_PACE_INIT;

int cmp_route_profile(struct cmp_call *c, const char *name, const struct gw_role **role, char *text)
{
    char held[GW_LOG_HELD_LEN];
    int rc = gw_route_profile(c->e->cfg.routes, c->req->route, name, role, text);

    if (rc != 0 && gw_log_pace_due(&profile_pace, time(NULL), held))
        gw_log_kv(GW_LOG_INFO, "profile_refused", "tid", c->rsp->tid, "profile", name, "reason",
                  rc == GW_ERR_POLICY ? "profile_mismatch" : "profile_unknown", "route", c->route,
                  "suppressed", held, NULL);
    return rc;
}

int cmp_check_path(struct cmp_call *c, const struct gw_cmp_engine *now, const char *role, const char *profile,
                   struct cmp_refusal *r)
{
    const struct gw_role *served = NULL;
    char err[GW_ERR_LEN];
    int rc;

    if (c->req->gone != NULL || cmp_role_named(now, role) == NULL)
        return 0;
    rc = gw_route_profile(now->cfg.routes, c->req->route, profile, &served, err);
    if (rc == 0 && served != NULL && strcmp(served->name, role) == 0)
        return 0;
    gw_log_kv(GW_LOG_INFO, "txn_other_path", "tid", c->rsp->tid, "role", role, "path_role",
              rc == 0 && served != NULL ? served->name : "none", "route", c->route, NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "%s", TEXT_OTHER_PATH);
}

int cmp_check_current(struct cmp_call *c, struct gw_cmp_engine *now, struct cmp_txn *t, struct cmp_refusal *r)
{
    struct gw_cmp_engine *began = c->e;
    int rc;

    if (now == t->e && c->req->gone == NULL)
        return 0;
    c->e = now;
    rc = cmp_check_record(c, t, t->role->name, r);
    c->e = began;
    if (rc == 0)
        return 0;
    if (r->fail_info == OSSL_CMP_PKIFAILUREINFO_systemUnavail)
        return 1;  /* not known now: the transaction stays open, its client may try again */
    c->stale = *r; /* the callbacks answer with it */
    return 0;
}

/* Which rules of an upstream role a request is checked against before the upstream is asked. */
enum role_check {
    RC_NAMES,  /* a delegate issues on the upstream's behalf: its grants, names, key and validity rules */
    RC_GRANTS, /* the upstream signs: the usages it grants every certificate must be the role's */
    RC_SHADOW, /* RC_NAMES but the grants (RC_GRANTS apart) for a shadow record: a read that failed is
                  not tried again before its TTL */
};

/*
 * Checks the cached policy of |up|'s role, fetching it when stale. Lock held. A policy that cannot
 * be read refuses a delegate (it would issue unchecked), but not a request the upstream signs
 * itself: that certificate is checked when it comes back (deliver), so the read is only a shortcut,
 * and it is not tried again before GW_ROLE_POLICY_TTL. A delegate's is tried again sooner, after
 * GW_ROLE_POLICY_RETRY, and meanwhile refused at once: each request reading it again would hold a
 * worker up to the upstream's timeout while the upstream does not answer.
 */
static int check_cached(struct cmp_call *c, struct cmp_role_policy *rp, struct gw_upstream *up,
                        const struct gw_role *role, const struct gw_cert_plan *plan, enum role_check what,
                        struct gw_upstream_names *names, struct cmp_refusal *r)
{
    char err[GW_ERR_LEN] = "";
    const char *name = cmp_urole_name(role);
    int rc =
        cmp_urole_fresh(c, rp, up, name, what == RC_NAMES ? GW_ROLE_POLICY_RETRY : GW_ROLE_POLICY_TTL, err);

    if (rc == 1 && what == RC_SHADOW)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "the policy of upstream role %.40s could not be read lately", name);
    if (rc == 1 && what == RC_NAMES)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_ROLE_UNREAD_LATELY, name);
    if (rc == 1)
        return 0;
    if (rc != 0 && what == RC_GRANTS) {
        gw_log_kv(GW_LOG_WARN, "upstream_role_unread", "tid", c->rsp->tid, "role", role->name,
                  "upstream_role", name, "reason", err, "msg",
                  "its usages are checked on the certificate only", NULL);
        return 0;
    }
    if (rc != 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "the policy of upstream role %.40s could not be read: %.150s", name, err);
    r->fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
    /* a delegate writes the usages the upstream role grants (delegate_names), so they must be the role's
       as they must where the upstream signs */
    if (what != RC_SHADOW &&
        gw_policy_check_upstream_grants(role, name, &rp->policy, &r->fail_info, r->text) != 0) {
        gw_log_kv(GW_LOG_WARN, "upstream_role_too_wide", "tid", c->rsp->tid, "role", role->name,
                  "upstream_role", name, "reason", r->text, NULL);
        return 1;
    }
    if (what == RC_GRANTS)
        return 0;
    r->fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
    return gw_policy_check_upstream_role(role, &rp->policy, plan, c->now, names, &r->fail_info, r->text) != 0;
}

/*
 * Checks a request against the role of the upstream |up| (cached per role, GW_ROLE_POLICY_TTL),
 * where the upstream can describe its roles; one that cannot lets the request go on (|*subject|
 * stays NULL). With |names| (RC_NAMES), the subject, SANs and usages that role writes into *names. While
 * another request reads that role (cmp_urole_lock), a delegate is refused and the usages an upstream
 * grants are left to the certificate's check.
 */
static int check_upstream_role(struct cmp_call *c, const struct gw_role *role, struct gw_upstream *up,
                               const struct gw_cert_plan *plan, enum role_check what,
                               struct gw_upstream_names *names, struct cmp_refusal *r)
{
    struct cmp_role_policy scratch, *rp;
    int refused;

    if ((gw_upstream_caps(up) & GW_UP_ROLE_POLICY) == 0)
        return 0;
    rp = cmp_urole_slot(c->e, role, up, &scratch);
    if (cmp_urole_lock(rp) != 0) {
        cmp_urole_release(rp, &scratch);
        return what == RC_NAMES ? cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail, TEXT_ROLE_BEING_READ,
                                             cmp_urole_name(role))
                                : 0;
    }
    refused = check_cached(c, rp, up, role, plan, what, names, r);
    pthread_mutex_unlock(&rp->lock);
    cmp_urole_release(rp, &scratch);
    return refused;
}

/*
 * What the role's upstream will put into the certificate beyond the plan, refused before it signs
 * where it can be known, so that a CA whose role grants more does not issue and revoke on every
 * request (the certificate is checked when it comes back in any case): the copy of the common name
 * an upstream adds to the subjectAltNames (Vault, unless exclude_cn_from_sans), the usages a Vault
 * role grants every certificate, and the extensions of a CSR that sign-verbatim copies (its Vault
 * role's usages do not apply there: the call's do, and they are the plan's).
 */
static int check_grants(struct cmp_call *c, const struct gw_role *role, struct gw_upstream *up,
                        const struct gw_cert_plan *plan, const X509_REQ *p10cr, struct cmp_refusal *r)
{
    if (!cmp_urole_signs_for(c->e, role, up))
        return 0; /* a crmf_upstream: it signs the plan's template */
    r->fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
    if ((gw_upstream_caps(up) & GW_UP_CN_IN_SANS) != 0 &&
        gw_policy_check_cn_copy(role, plan, &r->fail_info, r->text) != 0)
        return 1;
    if (role->sign_policy == GW_SIGN_VERBATIM) {
        r->fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
        return p10cr != NULL && gw_policy_check_csr(role, p10cr, &r->fail_info, r->text) != 0;
    }
    return check_upstream_role(c, role, up, plan, RC_GRANTS, NULL, r);
}

/*
 * The device a migration's cohort is decided by (docs/migration.md): the signer's subject, or the
 * requested one; a kur's is always its old certificate's (the signer), since a kur brings a new
 * key and may ask for a new subject. A PBM-protected request has no signer: its requested subject.
 * The whole one-line subject (gw_x509_name_line), to free with OPENSSL_free; NULL (in no cohort)
 * for one that cannot be written out unambiguously.
 */
static char *cohort_key(const struct cmp_call *c, const struct cmp_txn *t, const struct gw_cert_plan *plan)
{
    const X509_NAME *name = plan->subject;

    if (t->signer != NULL &&
        (c->body == GW_CMP_BODY_KUR || t->role->migration.cohort.by == GW_COHORT_SIGNER_SUBJECT))
        name = X509_get_subject_name(t->signer);
    return gw_x509_name_line(name);
}

static struct gw_metric *m_shadow;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
    static const char *const labels[] = {"role", "result", NULL};

    m_shadow =
        gw_metric_new("cmpgw_migration_shadow_total",
                      "Requests of a migration's cohort checked against its \"to\" upstream in shadow "
                      "mode, by role and what \"to\" would have done (issue, refuse, change, unchecked).",
                      GW_METRIC_COUNTER, labels, NULL, 0);
}

/*
 * Shadow mode: the policy of "to"'s role, checked against the request (RC_SHADOW, then RC_GRANTS). The
 * request is "from"'s to issue, and "to" must not hold it up: with "to" down, or its policy read for
 * another request (a read waits up to "to"'s timeout), it is not checked. 0, or 1 with |would|
 * (systemUnavail: not checked) and |*grants| set when it is the usages "to" would change.
 */
static int shadow_check(struct cmp_call *c, const struct gw_role *role, struct gw_upstream *to,
                        const struct gw_cert_plan *plan, struct cmp_refusal *would, bool *grants)
{
    struct cmp_role_policy scratch, *rp;
    struct gw_upstream_health h;
    int refused;

    *grants = false;
    gw_upstream_health(to, &h);
    if (!h.up)
        return cmp_refuse(would, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "upstream %.40s is down (its probes)",
                          role->migration.to_name);
    rp = cmp_urole_slot(c->e, role, to, &scratch);
    if (pthread_mutex_trylock(&rp->lock) != 0) {
        cmp_urole_release(rp, &scratch);
        return cmp_refuse(would, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "the policy of upstream role %.40s is being read for another request",
                          cmp_urole_name(role));
    }
    refused = check_cached(c, rp, to, role, plan, RC_SHADOW, NULL, would);
    if (!refused && check_cached(c, rp, to, role, plan, RC_GRANTS, NULL, would) != 0)
        refused = *grants = true;
    pthread_mutex_unlock(&rp->lock);
    cmp_urole_release(rp, &scratch);
    return refused;
}

/*
 * Shadow mode: what "to" would do with this request, without asking it to issue. An upstream that
 * states its role's policy (Vault roles/<name>) is checked like the role's own; a local issuer issues
 * the role's profile, as "from" does; others are not checked. The answer goes to the audit log as
 * a "shadow" record and to the metrics.
 */
static void shadow(struct cmp_call *c, const struct cmp_txn *t, const struct gw_cert_plan *plan)
{
    const struct gw_role *role = t->role;
    struct gw_upstream *to = gw_upstream_set_get0(c->e->ups, role->migration.to_name);
    struct cmp_refusal would = {0};
    char status[GW_ERR_LEN + 32];
    const char *result = "issue";
    struct gw_audit_rec rec;
    bool grants;

    if (to == NULL) {
        result = "unchecked";
        snprintf(status, sizeof(status), "not checked: upstream %s is not available",
                 role->migration.to_name);
    } else if ((gw_upstream_caps(to) & GW_UP_ROLE_POLICY) != 0) {
        int refused = shadow_check(c, role, to, plan, &would, &grants);

        if (refused && would.fail_info == OSSL_CMP_PKIFAILUREINFO_systemUnavail) {
            result = "unchecked"; /* its policy could not be read */
            snprintf(status, sizeof(status), "not checked: %s", would.text);
        } else if (refused && !grants) {
            result = "refuse";
            snprintf(status, sizeof(status), "would refuse: %s", would.text);
        } else if (refused) {
            result = "change";
            snprintf(status, sizeof(status), "would change the usages: %s", would.text);
        } else {
            snprintf(status, sizeof(status), "would issue: its role's policy allows the request");
        }
    } else if (gw_upstream_get0_conf(to)->own_ca != NULL) {
        snprintf(status, sizeof(status), "would issue: a local issuer issues the role's profile");
    } else {
        result = "unchecked";
        snprintf(status, sizeof(status), "not checked: a %s upstream states no policy",
                 gw_upstream_conf_type(gw_upstream_get0_conf(to)));
    }
    cmp_audit_rec_init(&rec, t, c->rsp->tid, "shadow", status);
    rec.upstream = role->migration.to_name;
    rec.subject = plan->subject;
    rec.sans = plan->sans;
    (void)cmp_audit_write(c->e, &rec, 0); /* certifies nothing: no fsync to wait for */
    pthread_once(&m_once, metrics_init);
    gw_metric_add(m_shadow, (const char *const[]){role->name, result}, 1);
}

/* The upstream a migrating role's request goes to; shadow mode also checks it against "to". */
static const char *migration_upstream(struct cmp_call *c, const struct cmp_txn *t,
                                      const struct gw_cert_plan *plan)
{
    const struct gw_migration *m = &t->role->migration;
    char *key;
    bool in;

    if (!gw_migration_configured(m) || m->mode == GW_MIGRATION_OFF)
        return t->role->upstream_name;
    key = cohort_key(c, t, plan);
    in = gw_migration_in_cohort(m, key);
    OPENSSL_free(key);
    if (!in)
        return t->role->upstream_name;
    if (m->mode == GW_MIGRATION_LIVE)
        return m->to_name;
    shadow(c, t, plan);
    return t->role->upstream_name;
}

/*
 * A delegate issues the subject and SANs its upstream's role would write (the role's own attributes,
 * not the client's; the CN among the SANs): a change from the requested ones is granted with
 * modifications, and the certificate is checked against them. Its usages too, which check_cached held
 * within the role's: those the upstream role grants, not the role's wider ones (none asked for them).
 */
static void delegate_names(struct gw_cert_plan *plan, struct gw_upstream_names *names)
{
    plan->key_usage = names->key_usage;
    plan->ext_key_usage = names->ext_key_usage;
    if (X509_NAME_cmp(plan->subject, names->subject) != 0)
        plan->modified = 1;
    X509_NAME_free(plan->subject);
    plan->subject = names->subject;
    if (names->sans == NULL)
        return;
    plan->modified = 1; /* vault_sans adds a name only where the plan lacks it */
    GENERAL_NAMES_free(plan->sans);
    plan->sans = names->sans;
}

/*
 * Which upstream signs (docs/design.md D5): a p10cr goes to the role's upstream (or, for a migrating
 * role's cohort in live mode, to "to") unchanged; CRMF goes there too if it signs bare keys, else
 * the role's crmf setting decides: reject, or the delegate local issuer after the upstream role's
 * policy, with the subject that role writes.
 */
int cmp_pick_upstream(struct cmp_call *c, const struct cmp_txn *t, struct gw_cert_plan *plan,
                      const X509_REQ *p10cr, struct gw_upstream **out, struct cmp_refusal *r)
{
    const struct gw_role *role = t->role;
    const char *name = migration_upstream(c, t, plan);
    struct gw_upstream *up = gw_upstream_set_get0(c->e->ups, name);
    struct gw_upstream_names names = {NULL, NULL, 0, 0};
    int crmf = p10cr == NULL;

    *out = NULL;
    /* a role may send CRMF to a CMP CA and keep p10cr on its JSON upstream (not once migrated) */
    if (crmf && role->crmf_upstream_name != NULL && name == role->upstream_name)
        up = gw_upstream_set_get0(c->e->ups, role->crmf_upstream_name);
    if (up == NULL)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "no upstream CA is configured for this role");
    if (!crmf || (gw_upstream_caps(up) & GW_UP_SIGN_KEY) != 0) {
        if (!crmf && (gw_upstream_caps(up) & GW_UP_SIGN_CSR) == 0)
            return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "%s", TEXT_P10_REJECT);
        if (check_grants(c, role, up, plan, p10cr, r) != 0)
            return 1;
        *out = up;
        return 0;
    }
    if (role->crmf != GW_CRMF_DELEGATE)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "%s", TEXT_CRMF_REJECT);
    if (role->delegate_name == NULL || (*out = gw_upstream_set_get0(c->e->ups, role->delegate_name)) == NULL)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "this role's delegate issuer is not available");
    /* a delegate issues on the upstream's behalf, so the upstream role's own rules apply; an
     * upstream that cannot state them leaves the role's profile alone */
    if (check_upstream_role(c, role, up, plan, RC_NAMES, &names, r) != 0) {
        *out = NULL;
        return 1;
    }
    if (names.subject != NULL)
        delegate_names(plan, &names);
    return 0;
}

int cmp_replan_upstream(struct cmp_call *c, const struct cmp_txn *t, struct gw_cert_plan *plan,
                        struct gw_upstream *up, struct cmp_refusal *r)
{
    const struct gw_role *role = t->role;
    const struct gw_upstream_conf *over = gw_upstream_delegated_for(role);
    struct gw_upstream_names names = {NULL, NULL, 0, 0};

    if (up == NULL)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "no upstream here has its certificate's CA (or the record's name)");
    if (role->delegate_name == NULL || up != gw_upstream_set_get0(c->e->ups, role->delegate_name))
        return 0;
    /* a delegate's plan: the names of the upstream role it stands in for, as cmp_pick_upstream made it */
    if (over == NULL || (up = gw_upstream_set_get0(c->e->ups, gw_upstream_conf_name(over))) == NULL)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                          "the upstream this role's delegate issuer stands in for is not available");
    if (check_upstream_role(c, role, up, plan, RC_NAMES, &names, r) != 0)
        return 1;
    if (names.subject != NULL)
        delegate_names(plan, &names);
    return 0;
}

/* |up|'s index in the engine's cfg.upstreams, or -1 if it is none of them. */
static ptrdiff_t upstream_index(const struct gw_cmp_engine *e, const struct gw_upstream *up)
{
    const struct gw_upstream_conf *uc = up != NULL ? gw_upstream_get0_conf(up) : NULL;

    if (uc == NULL || e->issuer_stores == NULL || uc < e->cfg.upstreams ||
        (size_t)(uc - e->cfg.upstreams) >= e->cfg.n_upstreams)
        return -1;
    return uc - e->cfg.upstreams;
}

/* What certificates from |up| must chain to: its issuer_ca, or a local issuer's own CA. */
X509_STORE *cmp_issuer_store(const struct gw_cmp_engine *e, const struct gw_upstream *up)
{
    ptrdiff_t i = upstream_index(e, up);

    return i >= 0 ? e->issuer_stores[i] : NULL;
}

enum gw_issued_verdict cmp_check_issued(const struct gw_cmp_engine *e, const struct gw_role *role,
                                        const struct gw_upstream *up, const struct gw_cert_plan *plan,
                                        X509 *cert, STACK_OF(X509) *chain, time_t now, STACK_OF(X509) **path,
                                        char *err)
{
    ptrdiff_t i = upstream_index(e, up);
    STACK_OF(X509) *found = NULL;
    enum gw_issued_verdict v;

    if (path != NULL)
        *path = NULL;
    if (i < 0 || e->issuer_stores[i] == NULL) {
        snprintf(err, GW_ERR_LEN, "no issuer CA is configured to check it against");
        return GW_ISSUED_BAD;
    }
    v = gw_policy_check_issued_with(role, plan, cert, chain, e->issuer_stores[i], e->issuer_certs[i],
                                    e->links, now, &found, err);
    /*
     * chaining to issuer_ca is not enough: another CA under its root is not the upstream's to revoke.
     * Where the verified path's first CA is one of the upstream's own, its signature was just verified.
     */
    if ((v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED) &&
        !gw_upstream_is_own_ca(up, sk_X509_value(found, 0)) && gw_upstream_check_signer(up, cert, err) != 0)
        v = GW_ISSUED_BAD;
    if (path != NULL && (v == GW_ISSUED_OK || v == GW_ISSUED_MODIFIED)) {
        *path = found;
        found = NULL;
    }
    sk_X509_pop_free(found, X509_free);
    return v;
}

/*
 * Why a certificate with the issuer name and serial of another one is refused, and not revoked
 * (refuse_reused). The client is told in words true also where the two come from two CAs under one issuer
 * name (a CA re-keyed under its name, two upstreams), not from one CA that issued a serial twice: what
 * goes by issuer name and serial (a CRL, an rr, the gateway's revoked set) cannot tell the two apart.
 */
struct reuse {
    const char *msg;     /* the log line's: what the operator finds out */
    const char *other;   /* the other certificate, to the client */
    const char *fate;    /* what became of it through this gateway */
    const char *outcome; /* the new one's, where revocation goes by issuer and serial */
};

/* The other one was revoked through cmpgw: the serial is revoked already. */
static const struct reuse reuse_revoked = {
    "the upstream returned a certificate with the issuer name and serial of one revoked through cmpgw: it "
    "was not released, nor revoked again (the serial is revoked already); find out whether its CA reused the "
    "serial or another CA shares the issuer name, and which certificates carry it: where revocation goes by "
    "issuer and serial, revoking one revokes all of them",
    "a certificate",
    "was revoked through this gateway",
    "this one counts as revoked; it was not released",
};

/*
 * The other one was let through lately (cmp_recent_note): it is valid, and its holder uses it. Revocation
 * goes by issuer and serial (the gateway's revoked set, and the CA's where one CA issued both), so revoking
 * the new one would revoke the earlier one with it.
 */
static const struct reuse reuse_recent = {
    "the upstream returned a certificate with the issuer name and serial of another one cmpgw let through "
    "lately (earlier_tid): it was not released, nor revoked (where revocation goes by issuer and serial, "
    "that would revoke the earlier one with it); find out whether its CA reused the serial or another CA "
    "shares the issuer name, and which certificates carry it",
    "another certificate",
    "went out through this gateway",
    "revoking one revokes both; this one was not released",
};

/*
 * Refuses |cert|, whose |serial| is that of another certificate (|why|): logged cert_serial_reused, with
 * |earlier|, the transaction that let the other one through, where it is known (else NULL).
 */
static int refuse_reused(const struct gw_upstream *up, const char *tid, X509 *cert, const char *serial,
                         const char *earlier, const struct reuse *why, int *fail_info, char *text)
{
    const char *name = gw_upstream_conf_name(gw_upstream_get0_conf(up));
    char issuer[256];

    X509_NAME_oneline(X509_get_issuer_name(cert), issuer, sizeof(issuer)); /* for a person to read only */
    if (earlier != NULL)
        gw_log_kv(GW_LOG_ERROR, "cert_serial_reused", "tid", tid, "upstream", name, "issuer", issuer,
                  "serial", serial, "earlier_tid", earlier, "msg", why->msg, NULL);
    else
        gw_log_kv(GW_LOG_ERROR, "cert_serial_reused", "tid", tid, "upstream", name, "issuer", issuer,
                  "serial", serial, "msg", why->msg, NULL);
    *fail_info = OSSL_CMP_PKIFAILUREINFO_systemFailure;
    snprintf(text, GW_ERR_LEN,
             "%s with this issuer name and serial %s %s: where revocation goes by issuer and serial, %s: "
             "tell the PKI's operator",
             why->other, serial, why->fate, why->outcome);
    return CMP_SERIAL_REUSED;
}

int cmp_check_serial_reused(struct gw_cmp_engine *e, const struct gw_upstream *up, X509 *cert, time_t now,
                            const char *tid, int *fail_info, char *text)
{
    char serial[2 * GW_MAX_SERIAL_OCTETS + 1], err[GW_ERR_LEN] = ""; /* cmp_check_issued released it */
    char earlier[2 * GW_MAX_TID_LEN + 1] = "", held[GW_LOG_HELD_LEN] = "";
    unsigned char id[CMP_REVOKED_ID_LEN];
    int rc = GW_ERR_CRYPTO, again = 0;

    if (cmp_revoked_id(cert, id) != 0)
        snprintf(err, sizeof(err), "the certificate's issuer and serial cannot be read");
    else
        rc = cmp_revoked_check_id(e, id, now, err);
    if (rc == 0 && (again = cmp_recent_note(e->recent, id, cert, tid, earlier)) >= 0)
        cmp_status_issued_known(e, up); /* looked up: an outage of its status_unknown lines is over */
    if (rc == 0 && again == 0)
        return 0;
    if (again < 0) {
        rc = again;
        snprintf(err, sizeof(err), "the certificate cannot be hashed (out of memory)");
    }
    gw_x509_cert_serial_hex(cert, serial, sizeof(serial));
    if (rc < 0) { /* as a credential's lookup: a certificate that may be revoked is not released */
        /* each paced by its outage: the shared state's, or this upstream's (cmp_status_issued_due) */
        if (rc == GW_ERR_UNAVAILABLE ? gw_cluster_unavailable_due(e->cluster, held)
                                     : cmp_status_issued_due(e, up, held))
            gw_log_kv(rc == GW_ERR_UNAVAILABLE ? GW_LOG_ERROR : GW_LOG_WARN,
                      rc == GW_ERR_UNAVAILABLE ? "shared_state_unavailable" : "status_unknown", "tid", tid,
                      "certificate", "issued", "serial", serial, "reason", err, "suppressed", held, NULL);
        *fail_info = OSSL_CMP_PKIFAILUREINFO_systemUnavail;
        snprintf(text, GW_ERR_LEN,
                 "whether a certificate with this issuer name and serial %s was revoked through this gateway "
                 "cannot be checked now; it was not released: retry later",
                 serial);
        return CMP_SERIAL_UNCHECKED;
    }
    if (again) /* cmp_recent_note leaves |earlier| empty where the other one's transactionID is unknown */
        return refuse_reused(up, tid, cert, serial, earlier[0] != '\0' ? earlier : NULL, &reuse_recent,
                             fail_info, text);
    return refuse_reused(up, tid, cert, serial, NULL, &reuse_revoked, fail_info, text);
}

/* ---- 3GPP TS 33.310 base-station enrolment (docs/3gpp.md) ------------------------------- */

/*
 * Whether the entry of trust scope |scope| may name |t|'s signer: a bare one on a role with at most one
 * trust entry (which the signer chains to), else one whose trust entry the signer chains to. |chains|
 * remembers the answer per scope (0 not asked, 1 yes, -1 no).
 */
static int in_scope(struct cmp_call *c, const struct cmp_txn *t, int scope, signed char *chains)
{
    if (scope < 0)
        return 1;
    if (chains[scope] == 0)
        chains[scope] = cmp_signer_chains_to(c, t, t->role->allow_scopes[scope].store) ? 1 : -1;
    return chains[scope] > 0;
}

/*
 * Whether |t|'s signer is on its role's device allow-list, by its whole one-line subject
 * (gw_x509_name_line: cut to a buffer, "/O=Vendor/CN=bs-0001/OU=<long>" would be the listed
 * "/O=Vendor/CN=bs-0001") or by serial number, each chaining to the trust entry its line names.
 */
static int on_allowlist(struct cmp_call *c, const struct cmp_txn *t)
{
    const struct gw_role *role = t->role;
    char *subject = gw_x509_name_line(X509_get_subject_name(t->signer));
    BIGNUM *serial =
        role->n_allow_serials > 0 ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(t->signer), NULL) : NULL;
    signed char chains[GW_MAX_ALLOWLIST_TRUST] = {0};
    const struct gw_allow_entry *e;
    int found = 0;

    for (size_t i = 0; i < role->n_allow && !found; i++) {
        e = &role->allow[i];
        if (e->subject != NULL ? subject == NULL || strcmp(e->subject, subject) != 0
                               : serial == NULL || BN_cmp(e->serial, serial) != 0)
            continue;
        found = in_scope(c, t, e->scope, chains);
    }
    OPENSSL_free(subject);
    BN_free(serial);
    return found;
}

/* Whether |cert| chains to what |up| issues under: an operator certificate, not a vendor one. */
static int issued_here(struct cmp_call *c, const char *upstream_name, X509 *cert)
{
    struct gw_upstream *up = upstream_name != NULL ? gw_upstream_set_get0(c->e->ups, upstream_name) : NULL;
    X509_STORE *store = cmp_issuer_store(c->e, up);
    X509_STORE_CTX *vc;
    int ok = 0;

    if (store == NULL || (vc = X509_STORE_CTX_new()) == NULL)
        return 0;
    if (X509_STORE_CTX_init(vc, store, cert, NULL) == 1)
        ok = X509_verify_cert(vc) == 1;
    X509_STORE_CTX_free(vc);
    return ok;
}

int cmp_issued_for_role(struct cmp_call *c, const struct gw_role *role, X509 *cert)
{
    const char *names[GW_ROLE_ISSUERS];

    gw_role_issuers(role, names);
    for (size_t i = 0; i < GW_ROLE_ISSUERS; i++)
        if (issued_here(c, names[i], cert))
            return 1;
    return 0;
}

int cmp_signer_issued(struct cmp_call *c, const struct cmp_txn *t)
{
    if (c->signer_issued == 0)
        c->signer_issued = cmp_issued_for_role(c, t->role, t->signer) ? 1 : -1;
    return c->signer_issued > 0;
}

/*
 * Whether a role holding no device allow-list, or another one, has an upstream whose CA issued |cert|:
 * that role may have issued it to anyone its own rules admit (a PBM secret holder, under the subject
 * of a station |role|'s list does not name), so it is no operator certificate of |role|'s stations.
 * Roles naming one allow-list file admit the same stations.
 */
static int issued_for_other_list(struct cmp_call *c, const struct gw_role *role, X509 *cert)
{
    for (size_t i = 0; i < c->e->cfg.n_roles; i++) {
        const struct gw_role *o = &c->e->cfg.roles[i];

        if (o == role || (o->device_allowlist_file != NULL &&
                          strcmp(o->device_allowlist_file, role->device_allowlist_file) == 0))
            continue;
        if (cmp_issued_for_role(c, o, cert))
            return 1;
    }
    return 0;
}

/*
 * Whether the kur |crm| renews |signer| as it is: its template names the signer's subject (or none)
 * and no subjectAltName the signer does not carry. Anything else asks for another device's names,
 * a subject X509_NAME_cmp takes for the signer's among them: it ignores case and runs of spaces,
 * which a relying party comparing names byte for byte, and the allow-list, do not.
 */
static int renews_signer(const OSSL_CRMF_MSG *crm, X509 *signer)
{
    const OSSL_CRMF_CERTTEMPLATE *tmpl = crm != NULL ? OSSL_CRMF_MSG_get0_tmpl(crm) : NULL;
    const X509_NAME *subject = tmpl != NULL ? OSSL_CRMF_CERTTEMPLATE_get0_subject(tmpl) : NULL;
    GENERAL_NAMES *asked, *held;
    int crit = -1, ok;

    if (tmpl == NULL || (subject != NULL && X509_NAME_entry_count(subject) > 0 &&
                         !gw_x509_name_same(subject, X509_get_subject_name(signer))))
        return 0;
    asked = X509V3_get_d2i(OSSL_CRMF_CERTTEMPLATE_get0_extensions(tmpl), NID_subject_alt_name, &crit, NULL);
    if (asked == NULL)
        return crit == -1; /* none; a malformed or repeated one is no renewal */
    held = X509_get_ext_d2i(signer, NID_subject_alt_name, NULL, NULL);
    ok = 1;
    for (int i = 0; ok && i < sk_GENERAL_NAME_num(asked); i++) {
        ok = 0;
        for (int j = 0; !ok && j < sk_GENERAL_NAME_num(held); j++)
            ok = GENERAL_NAME_cmp(sk_GENERAL_NAME_value(asked, i), sk_GENERAL_NAME_value(held, j)) == 0;
    }
    GENERAL_NAMES_free(asked);
    GENERAL_NAMES_free(held);
    return ok;
}

/*
 * Whether the revocation of |cert| is checked when it authenticates: one of an upstream that says
 * "check_revocation": false authenticates revoked or not, and only the allow-list can stop it. The
 * credential check asks the first upstream in the configuration whose CA issued it (status.c), which
 * need not be the role's: none of them may say so.
 */
static int revocation_checked(const struct gw_cmp_engine *e, X509 *cert)
{
    for (size_t i = 0; i < e->cfg.n_upstreams; i++)
        if (!e->cfg.upstreams[i].check_revocation &&
            gw_upstream_issued(gw_upstream_set_get0(e->ups, e->cfg.upstreams[i].name), cert))
            return 0;
    return 1;
}

/*
 * The allow-list (one vendor CA signs base stations of many operators): an ir/cr/p10cr must be
 * signed by a listed device. A kur is signed by the operator certificate it renews
 * (TS 33.310 §9.5.1), which the allow-list does not name: exempt while it asks for that
 * certificate's own subject and names, and a revoked one is refused. A kur signed by anything else,
 * asking for other names (a device taken off the list would get any name the role allows), signed by
 * a certificate whose revocation is not checked, or by one whose CA also issues for a role without
 * this list, is still checked.
 */
int cmp_check_allowlist(struct cmp_call *c, const struct cmp_txn *t, const OSSL_CRMF_MSG *crm,
                        struct cmp_refusal *r)
{
    const struct gw_role *role = t->role;

    if (role->device_allowlist_file == NULL)
        return 0;
    if (t->pbm || t->signer == NULL)
        return cmp_deny(c, t, "signature_only_route", r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                        "this route accepts signature-protected requests only: sign with the device "
                        "certificate (3GPP TS 33.310)");
    if (c->body == GW_CMP_BODY_KUR && renews_signer(crm, t->signer) && revocation_checked(c->e, t->signer) &&
        cmp_signer_issued(c, t) && !issued_for_other_list(c, role, t->signer))
        return 0;
    if (on_allowlist(c, t))
        return 0;
    return cmp_deny(c, t, "device_allowlist", r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                    "device %.150s is not on this route's allow-list", t->identity);
}

/* A readable name for a weak hash: what the device operator must change. */
static const char *hash_name(int bits)
{
    switch (bits) {
    case 160:
        return "SHA-1";
    case 128:
        return "MD5";
    case 224:
        return "SHA-224";
    case 256:
        return "SHA-256";
    case 384:
        return "SHA-384";
    default:
        return "an unrecognised hash";
    }
}

/* |bits| (gw_shim_alg_hash_bits) against the role's "min_hash"; |what| names the signature. */
static int check_hash(const struct gw_role *role, int bits, const char *what, struct cmp_refusal *r)
{
    if (bits >= role->min_hash_bits)
        return 0;
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badAlg,
                      "%s%s is not accepted on this route: sign with SHA-%d or stronger (3GPP TS 33.310)",
                      what, hash_name(bits), role->min_hash_bits);
}

/* The hash rating (gw_shim_alg_hash_bits) of the request's POPO or CSR signature; -1 if it has none. */
static int request_signature_bits(const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr)
{
    const X509_ALGOR *alg = NULL;

    if (p10cr != NULL) {
        X509_REQ_get0_signature(p10cr, NULL, &alg);
        return gw_shim_alg_hash_bits(alg);
    }
    return crm != NULL ? gw_shim_popo_hash_bits(crm) : -1; /* -1: no signature POPO (raVerified is refused) */
}

int cmp_check_popo_hash(struct cmp_call *c, const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr,
                        struct cmp_refusal *r)
{
    int bits = request_signature_bits(crm, p10cr);

    /* 0: a hash gw_shim_alg_hash_bits does not know (EdDSA rates 512); a route's min_hash refuses it */
    if (bits <= 0 || bits >= GW_MIN_POPO_HASH_BITS)
        return 0;
    gw_log_kv(GW_LOG_INFO, "weak_popo", "tid", c->rsp->tid, "signature", p10cr != NULL ? "csr" : "popo",
              "hash", hash_name(bits), NULL);
    return cmp_refuse(
        r, OSSL_CMP_PKIFAILUREINFO_badAlg,
        "the %s signature uses a hash under 112 bits of security (%s): sign the %s with SHA-256 "
        "or stronger",
        p10cr != NULL ? "CSR's" : "proof-of-possession", hash_name(bits), p10cr != NULL ? "CSR" : "request");
}

/*
 * RFC 4211 §4.1: a signature over poposkInput (the sender's name or a MAC, and the key) proves
 * possession of the key but covers nothing of the template, so one such signature, seen once, would
 * let anyone ask for that key under any names; where the template has a subject and a key it MUST
 * be omitted, and RFC 9483 §4.1.1 has the signature computed over the certReq. OpenSSL 3.0 checks
 * neither the template nor the sender in it.
 */
int cmp_check_popo_input(struct cmp_call *c, const OSSL_CRMF_MSG *crm, struct cmp_refusal *r)
{
    if (!gw_shim_popo_signs_input(crm))
        return 0;
    gw_log_kv(GW_LOG_INFO, "popo_input", "tid", c->rsp->tid, NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badPOP,
                      "the proof-of-possession signature covers a poposkInput, not the certificate request: "
                      "sign the certReq itself (RFC 9483 §4.1.1)");
}

/* TS 33.310 §9.5: SHA-256 shall, SHA-1 and MD5 shall not, for the protection and for the POPO. */
int cmp_check_min_hash(struct cmp_call *c, const struct cmp_txn *t, const OSSL_CRMF_MSG *crm,
                       const X509_REQ *p10cr, struct cmp_refusal *r)
{
    int bits;

    if (t->role->min_hash_bits <= 0)
        return 0;
    if (check_hash(t->role, c->hdr.protection_hash_bits, "", r) != 0)
        return 1;
    if ((bits = request_signature_bits(crm, p10cr)) < 0)
        return 0;
    return check_hash(t->role, bits, p10cr != NULL ? "the CSR signature with " : "the POPO signature with ",
                      r);
}
