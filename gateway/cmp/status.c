/*
 * Revoked credentials refused (docs/security.md, "Revoked credentials"): the revocation status of
 * every certificate that authenticates a request, the CMP signer and the TLS client certificate.
 *
 * A certificate a configured upstream issued (found by issuer name and key identifier, and proven by
 * its signature: one lookup, issuer_upstream) is
 * checked at that upstream: the local issuer and delegates answer from their store at once; other
 * upstreams by their CRL, fetched, verified against the one of the upstream's CAs that signed it,
 * cached for that CA and read again every GW_STATUS_REFRESH_SECS or at once after a revocation
 * through cmpgw of one of that CA's certificates (at any upstream of it); Vault's cert/<serial>
 * where no CRL of the certificate's CA can be had. An upstream
 * may issue under several CAs (a Vault mount during a rotation, or of several issuers): its default
 * CRL is one CA's, and a Vault mount's other issuers' CRLs are had by the refs the routes sign with;
 * each CRL counts for the CA that signed it, and a certificate is never looked up in the CRL of a CA
 * that did not issue it. A genm's crlStatusList takes its CRL from the same cache, fetched at most once
 * per issuer every GW_GENM_CRL_SECS (cmp_status_relay_get; docs/design.md D27). A status that cannot be
 * known fails closed: a CRL serves until its nextUpdate plus cmp.revocation_grace, no longer. A
 * certificate under a trust entry that no upstream issued (signed by one of the entry's CAs, or by an
 * intermediate the client sent, whose validated chain leads to them) is covered by that entry's
 * crl_file during chain validation, or by nothing where the entry says "revocation": "none"; an entry
 * that says "upstream" accepts certificates of configured upstreams only.
 */
#include "gateway/cmp/status.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/urole.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/x509.h"
#include "mappings/role.h"
#include "upstream/upstream.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/*
 * The newest CRL seen of one of an upstream's CAs. Per CA, because a CRL tells only about the
 * certificates of the CA that signed it, and because a replayed older CRL of a CA must stay refused
 * after the upstream served another CA's in between.
 */
struct crl_slot {
    X509_CRL *crl;        /* verified against this CA; NULL until a fetch returned one */
    time_t fetched;       /* when a fetch last returned this CA's CRL */
    time_t failed;        /* when one last did not (0: the last did): not tried again for a while */
    int stale;            /* a revocation through cmpgw happened since */
    char why[GW_ERR_LEN]; /* why the last fetch gave none of this CA's, told until the next */
    /* the issuer_ref whose CRL was last this CA's ("": the default issuer's), tried first next time */
    char ref[GW_MAX_ISSUER_REF_LEN + 1];
    struct gw_log_outage unknown; /* the status_unknown lines of this CA's credentials (log_unknown) */
};

/*
 * What the last fetch of one issuer's CRL for a genm came to. By issuer_ref, because that is what a
 * genm asks for (the issuer that signs for its role) and which CA's CRL a ref gives is known only once
 * fetched; the CRL itself is in the slot of its CA, where the revocation check's are.
 */
struct crl_relay {
    char ref[GW_MAX_ISSUER_REF_LEN + 1]; /* "": the default issuer's */
    time_t at;                           /* when that fetch ended; 0: entry unused */
    unsigned long flight;                /* its number among the cache's |flights| */
    int ca;                              /* the slot it filed its CRL in, or -1: it gave none */
    struct cmp_crl_failure failure;      /* then what the genm was told */
};

/* One upstream's CRLs as last fetched and verified; |crl| is written only by the fetching worker. */
struct cmp_crl_cache {
    STACK_OF(X509) *cas;    /* the CAs the upstream issues under (not those only there to chain to) */
    struct crl_slot *slots; /* one per |cas|, in that order */
    struct crl_relay relays[GW_GENM_CRL_REFS];
    pthread_mutex_t lock;
    pthread_cond_t fetched_cond;
    unsigned long revocations; /* revocations through cmpgw so far: one during a fetch keeps slots stale */
    unsigned long flights;     /* fetches for a genm ended so far */
    int fetching;              /* a worker is fetching: others use the cached ones or wait */
    /* the status_unknown lines of its issued certificates (cmp_status_issued_due) */
    struct gw_log_outage issued;
};

/* What one certificate's check found, for the audit record. */
struct status_note {
    char text[GW_ERR_LEN];
};

int cmp_status_init(struct gw_cmp_engine *e, char *err)
{
    if (e->cfg.n_upstreams == 0)
        return 0;
    if ((e->crls = calloc(e->cfg.n_upstreams, sizeof(*e->crls))) == NULL)
        goto nomem;
    for (size_t i = 0; i < e->cfg.n_upstreams; i++) {
        pthread_mutex_init(&e->crls[i].lock, NULL);
        pthread_cond_init(&e->crls[i].fetched_cond, NULL);
        gw_log_outage_init(&e->crls[i].issued);
        if ((e->crls[i].cas = gw_upstream_conf_issuing_cas(&e->cfg.upstreams[i])) == NULL)
            goto nomem;
        if (sk_X509_num(e->crls[i].cas) > 0 &&
            (e->crls[i].slots = calloc((size_t)sk_X509_num(e->crls[i].cas), sizeof(struct crl_slot))) == NULL)
            goto nomem;
        for (int j = 0; j < sk_X509_num(e->crls[i].cas); j++)
            gw_log_outage_init(&e->crls[i].slots[j].unknown);
    }
    return 0;
nomem:
    snprintf(err, GW_ERR_LEN, "CMP engine: out of memory");
    return GW_ERR_NOMEM;
}

/*
 * An outage of |o| still open as the engine goes (a reload retired its configuration, or the gateway
 * stops) says the lines it held back since its last one, as its end would have: one line more, so that
 * every line is out or counted. The next generation paces its own.
 */
static void held_at_free(struct gw_log_outage *o, const char *name, const char *certificate)
{
    char held[GW_LOG_HELD_LEN];

    if (!gw_log_outage_end(o, 0, held) || strcmp(held, "0") == 0)
        return;
    gw_log_kv(GW_LOG_WARN, "status_unknown", "upstream", name, "suppressed", held, "msg",
              "the outage was still open as its configuration was retired: the lines it held back since its "
              "last one",
              certificate != NULL ? "certificate" : NULL, certificate, NULL);
}

void cmp_status_cleanup(struct gw_cmp_engine *e)
{
    for (size_t i = 0; e->crls != NULL && i < e->cfg.n_upstreams; i++) {
        const char *name = e->cfg.upstreams[i].name;

        for (int j = 0; e->crls[i].slots != NULL && j < sk_X509_num(e->crls[i].cas); j++) {
            X509_CRL_free(e->crls[i].slots[j].crl);
            held_at_free(&e->crls[i].slots[j].unknown, name, NULL);
            gw_log_outage_cleanup(&e->crls[i].slots[j].unknown);
        }
        held_at_free(&e->crls[i].issued, name, "issued");
        gw_log_outage_cleanup(&e->crls[i].issued);
        free(e->crls[i].slots);
        sk_X509_pop_free(e->crls[i].cas, X509_free);
        pthread_cond_destroy(&e->crls[i].fetched_cond);
        pthread_mutex_destroy(&e->crls[i].lock);
    }
    free(e->crls);
    e->crls = NULL;
}

/* The upstream whose CA (config index |*index|, CA |*ca_index| of its cache) issued |cert|; or NULL. */
static struct gw_upstream *issuer_upstream(const struct gw_cmp_engine *e, X509 *cert, size_t *index,
                                           int *ca_index)
{
    for (size_t i = 0; e->crls != NULL && i < e->cfg.n_upstreams; i++) {
        struct gw_upstream *up = gw_upstream_set_get0(e->ups, e->cfg.upstreams[i].name);

        for (int j = 0; up != NULL && j < sk_X509_num(e->crls[i].cas); j++) {
            if (!gw_x509_signed_by(cert, sk_X509_value(e->crls[i].cas, j)))
                continue;
            *index = i;
            *ca_index = j;
            return up;
        }
    }
    return NULL;
}

struct gw_upstream *cmp_status_withdrawer(const struct gw_cmp_engine *e, struct gw_upstream *up, X509 *cert)
{
    size_t i;
    int j;

    return cert == NULL || gw_upstream_issued(up, cert) ? up : issuer_upstream(e, cert, &i, &j);
}

/* The CRL cache of |up|, or NULL (an upstream not of |e|'s configuration). */
static struct cmp_crl_cache *cache_of(const struct gw_cmp_engine *e, const struct gw_upstream *up)
{
    const struct gw_upstream_conf *uc = up != NULL ? gw_upstream_get0_conf(up) : NULL;
    size_t i;

    if (uc == NULL || e->crls == NULL || uc < e->cfg.upstreams)
        return NULL;
    if ((i = (size_t)(uc - e->cfg.upstreams)) >= e->cfg.n_upstreams)
        return NULL;
    return &e->crls[i];
}

/*
 * Marks the slots of |cc| stale: all of them where |cert| is NULL, else, where one of |cc|'s CAs signed it,
 * the slots of every CA of |cc| of that one's name: the same CA under another key (rekeyed), which may sign
 * the CRL that lists |cert| with its new key (RFC 5280 §5.2.1: an issuer with more than one signing key, in
 * a key changeover); no other CA's CRL can list it. Then the genm fetches that filed in them, or
 * gave none, are forgotten too. Cheap enough under the lock: one signature checked at most (the name and
 * key identifier are compared first), names compared, and a revocation is rare.
 */
static void invalidate_cache(struct cmp_crl_cache *cc, X509 *cert)
{
    const X509_NAME *ca = NULL;
    int marked = 0;

    pthread_mutex_lock(&cc->lock);
    for (int j = 0; cert != NULL && ca == NULL && j < sk_X509_num(cc->cas); j++)
        if (gw_x509_signed_by(cert, sk_X509_value(cc->cas, j)))
            ca = X509_get_subject_name(sk_X509_value(cc->cas, j));
    for (int j = 0; j < sk_X509_num(cc->cas); j++) {
        if (cert != NULL &&
            (ca == NULL || X509_NAME_cmp(X509_get_subject_name(sk_X509_value(cc->cas, j)), ca) != 0))
            continue;
        cc->slots[j].stale = 1;
        marked = 1;
    }
    if (marked) {
        cc->revocations++;
        for (int k = 0; k < GW_GENM_CRL_REFS; k++) /* the next genm of those fetches, whatever they gave */
            if (cc->relays[k].ca < 0 || cc->slots[cc->relays[k].ca].stale)
                cc->relays[k].at = 0;
    }
    pthread_mutex_unlock(&cc->lock);
}

/*
 * |up| is no special case where |cert| is known: its other CAs' CRLs cannot list it, and any upstream of
 * its CA (a delegate beside Vault, two mounts of one issuer) has as old a CRL of it.
 */
void cmp_status_invalidate(struct gw_cmp_engine *e, const struct gw_upstream *up, X509 *cert)
{
    struct cmp_crl_cache *own = cache_of(e, up);

    if (own != NULL && cert == NULL)
        invalidate_cache(own, NULL);
    for (size_t i = 0; cert != NULL && e->crls != NULL && i < e->cfg.n_upstreams; i++)
        invalidate_cache(&e->crls[i], cert);
}

/*
 * Who refuses a certificate before its CA's CRL lists it, when |missed| (CMP_REVOKED_*) of it. A revocation
 * that held its mark is known a while even where not kept (revoked.c): this instance remembers it for twice
 * its upstream's timeout and GW_STATE_REVOKING_SLACK_MS after it ended (cmp_revoked_mark_ms), and the other
 * instances find its shared mark "done" from its end until the mark expires (sooner: its TTL ran from its
 * beginning), unless that end did not reach Redis.
 */
_Static_assert(GW_STATE_REVOKING_SLACK_MS == 15000, "left_to_crl's texts say 15 s");
static const char *left_to_crl(int missed, int shared)
{
    bool marked = !(missed & CMP_REVOKED_UNMARKED);

    if (shared && !(missed & CMP_REVOKED_NOT_SHARED))
        return missed & CMP_REVOKED_NOT_HERE
                   ? "this instance refuses this certificate through the shared state alone"
                   : "this instance refuses this certificate through the shared state alone once it restarts";
    if ((missed & CMP_REVOKED_NOT_HERE) && !marked)
        return "no instance refuses this certificate before its CA's CRL lists it";
    if (missed & CMP_REVOKED_NOT_HERE)
        return shared
                   ? "this instance refuses this certificate for twice its upstream's timeout plus 15 s, the "
                     "others at most until the revocation's mark expires; then only once its CA's CRL "
                     "lists it"
                   : "this instance refuses this certificate for twice its upstream's timeout plus 15 s, "
                     "then only once its CA's CRL lists it";
    if (!shared)
        return "this instance refuses this certificate until it restarts, then once its CA's CRL lists it";
    if (!marked)
        return missed & CMP_REVOKED_NOT_SAVED
                   ? "the other instances refuse this certificate only once its CA's CRL lists it, this one "
                     "until it restarts"
                   : "the other instances refuse this certificate only once its CA's CRL lists it";
    return missed & CMP_REVOKED_NOT_SAVED
               ? "the other instances refuse this certificate at most until the revocation's mark expires "
                 "(twice its upstream's timeout plus 15 s), then only once its CA's CRL lists it; this one "
                 "until it restarts"
               : "the other instances refuse this certificate at most until the revocation's mark expires "
                 "(twice its upstream's timeout plus 15 s), then only once its CA's CRL lists it";
}

void cmp_status_revoked(struct gw_cmp_engine *e, const struct gw_upstream *up, X509 *cert, const char *tid)
{
    char err[GW_ERR_LEN] = "", serial[GW_SERIAL_HEX_LEN];
    int missed, shared;

    cmp_status_invalidate(e, up, cert);
    missed = cmp_revoked_add(e, cert, e->clock != NULL ? e->clock() : time(NULL), err);
    if (missed == 0)
        return;
    /* kept in the shared state: every instance still refuses it while Redis answers */
    shared = e->cluster != NULL && !(missed & CMP_REVOKED_NOT_SHARED);
    gw_x509_cert_serial_hex(cert, serial, sizeof(serial));
    gw_log_kv(shared ? GW_LOG_WARN : GW_LOG_ERROR, "revocation_not_kept", "tid", tid, "serial", serial,
              "reason", err, "msg", left_to_crl(missed, e->cluster != NULL), NULL);
}

static time_t asn1_to_time(const ASN1_TIME *t)
{
    time_t v = 0;

    return gw_asn1_time(t, &v) == 0 ? v : 0;
}

/* Whether |s| is printable ASCII, no quote: fit to quote in a reason as it is. */
static int plain_text(const ASN1_STRING *s)
{
    const unsigned char *p = ASN1_STRING_get0_data(s);

    for (int i = 0; i < ASN1_STRING_length(s); i++)
        if (p[i] < 0x20 || p[i] > 0x7e || p[i] == '"')
            return 0;
    return ASN1_STRING_length(s) > 0;
}

/* |name| for a reason: its last CN where plain text, else its one-line form (non-printables escaped). */
static void name_text(const X509_NAME *name, char *out, size_t cap)
{
    int at = gw_x509_name_last_index(name, NID_commonName);
    const ASN1_STRING *cn;

    cn = at >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at)) : NULL;
    if (cn != NULL && plain_text(cn))
        snprintf(out, cap, "\"%.*s\"", ASN1_STRING_length(cn), (const char *)ASN1_STRING_get0_data(cn));
    else if (X509_NAME_oneline(name, out, (int)cap) == NULL)
        snprintf(out, cap, "?");
}

/* Whether |ext| is critical and may narrow what a CRL says (all but authorityKeyIdentifier, cRLNumber). */
static int unread_critical(X509_EXTENSION *ext, char *oid, size_t cap)
{
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));

    if (!X509_EXTENSION_get_critical(ext) || nid == NID_authority_key_identifier || nid == NID_crl_number)
        return 0;
    if (OBJ_obj2txt(oid, (int)cap, X509_EXTENSION_get_object(ext), 1) <= 0)
        snprintf(oid, cap, "?");
    return 1;
}

/*
 * Whether |crl| lists every revoked certificate of its CA, for every reason: it is no delta CRL
 * (which lists the revocations since its base only), has no issuingDistributionPoint (a part of the
 * CA's certificates or reasons, which certificates are not matched against here) and no critical
 * extension the gateway does not read, on itself or an entry (RFC 5280 §5.2: not to be used). An
 * upstream can serve any CRL its CA signed: a delta CRL taken for the whole would let in what the
 * base revoked. 0, or -1 with |err|.
 */
static int complete_crl(X509_CRL *crl, char *err)
{
    const STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);
    char oid[64];

    if (X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0) {
        snprintf(err, GW_ERR_LEN, "it serves a delta CRL, not the full one");
        return -1;
    }
    if (X509_CRL_get_ext_by_NID(crl, NID_issuing_distribution_point, -1) >= 0) {
        snprintf(err, GW_ERR_LEN, "it serves a partial CRL (issuingDistributionPoint)");
        return -1;
    }
    for (int i = 0; i < X509_CRL_get_ext_count(crl); i++)
        if (unread_critical(X509_CRL_get_ext(crl, i), oid, sizeof(oid)))
            goto unread;
    for (int i = 0; i < sk_X509_REVOKED_num(revoked); i++) {
        const X509_REVOKED *rev = sk_X509_REVOKED_value(revoked, i);

        for (int j = 0; j < X509_REVOKED_get_ext_count(rev); j++)
            if (unread_critical(X509_REVOKED_get_ext(rev, j), oid, sizeof(oid)))
                goto unread;
    }
    return 0;
unread:
    snprintf(err, GW_ERR_LEN, "its CRL has unknown critical extension %s", oid);
    return -1;
}

/* Whether |crl| says when it is next updated and was issued by |now| (within the clock skew): 0, or -1
   with why in |err| (GW_ERR_LEN). */
static int dated(const X509_CRL *crl, time_t now, char *err)
{
    time_t this_update = asn1_to_time(X509_CRL_get0_lastUpdate(crl));

    if (X509_CRL_get0_nextUpdate(crl) == NULL || this_update == 0 ||
        this_update > now + GW_CRL_CLOCK_SKEW_SECS) {
        snprintf(err, GW_ERR_LEN, "the CRL has no nextUpdate or a thisUpdate in the future");
        return -1;
    }
    return 0;
}

X509_CRL *cmp_status_check_crl(const unsigned char *der, size_t len, const STACK_OF(X509) *cas, time_t now,
                               int *ca, char *err)
{
    const unsigned char *p = der;
    X509_CRL *crl = len <= GW_MAX_UPSTREAM_BODY ? d2i_X509_CRL(NULL, &p, (long)len) : NULL;

    *ca = -1;
    if (crl == NULL || p != der + len) {
        snprintf(err, GW_ERR_LEN, "the CRL is not DER");
        goto err;
    }
    /* by name and signature: CAs may share a name */
    for (int j = 0; j < sk_X509_num(cas) && *ca < 0; j++) {
        X509 *x = sk_X509_value(cas, j);

        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(x)) == 0 &&
            X509_CRL_verify(crl, X509_get0_pubkey(x)) == 1)
            *ca = j;
    }
    if (*ca < 0) {
        char issuer[96];

        name_text(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
        snprintf(err, GW_ERR_LEN, "the CRL (issuer %s) is signed by none of the upstream's CAs", issuer);
        goto err;
    }
    if (complete_crl(crl, err) != 0 || dated(crl, now, err) != 0)
        goto err;
    return crl;
err:
    X509_CRL_free(crl);
    ERR_clear_error();
    *ca = -1;
    return NULL;
}

int cmp_status_crl_current(const X509_CRL *crl, time_t now, char *err)
{
    if (dated(crl, now, err) != 0)
        return -1;
    if (asn1_to_time(X509_CRL_get0_nextUpdate(crl)) <= now) {
        snprintf(err, GW_ERR_LEN, "its nextUpdate passed");
        return -1;
    }
    return 0;
}

/*
 * Whether to fetch now for a certificate of the CA of |s|. A CRL that cannot be had is not asked for on
 * every request, nor is a newer one than a CRL past its nextUpdate: a CA late to publish serves the same
 * one again, and each request fetched and parsed it whole (up to GW_MAX_UPSTREAM_BODY).
 */
static int due(const struct crl_slot *s, time_t now)
{
    if (s->failed != 0 && now >= s->failed && now - s->failed < GW_STATUS_RETRY_SECS)
        return 0;
    if (s->crl == NULL || s->stale || now < s->fetched || now - s->fetched >= GW_STATUS_REFRESH_SECS)
        return 1;
    return now >= asn1_to_time(X509_CRL_get0_nextUpdate(s->crl)) && now - s->fetched >= GW_STATUS_RETRY_SECS;
}

/*
 * Whether |crl| is older than |held|, a CRL of the same CA: by their CRL numbers where both carry one
 * (RFC 5280 §5.2.3: they grow, whatever the CA's clock does, where a CA whose clock stepped back dates a
 * newer CRL earlier), else by thisUpdate.
 */
static int older_crl(const X509_CRL *crl, const X509_CRL *held)
{
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL),
                 *m = X509_CRL_get_ext_d2i(held, NID_crl_number, NULL, NULL);
    int older;

    if (n != NULL && m != NULL)
        older = ASN1_INTEGER_cmp(n, m) < 0;
    else
        older = asn1_to_time(X509_CRL_get0_lastUpdate(crl)) < asn1_to_time(X509_CRL_get0_lastUpdate(held));
    ASN1_INTEGER_free(n);
    ASN1_INTEGER_free(m);
    ERR_clear_error();
    return older;
}

/*
 * Files |crl| (up-referenced), fetched from issuer |ref| at |now|, in slot |s| of |cc|, unless the slot
 * holds a newer one (older_crl: a replayed old CRL must not undo a revocation): then 1. |ticket|: the
 * cache's revocations when the fetch began; one since keeps the slot stale. Lock held.
 */
static int file_crl(struct cmp_crl_cache *cc, struct crl_slot *s, X509_CRL *crl, const char *ref,
                    unsigned long ticket, time_t now)
{
    if (s->crl != NULL && older_crl(crl, s->crl))
        return 1;
    if (X509_CRL_up_ref(crl) != 1)
        return 0;
    X509_CRL_free(s->crl);
    s->crl = crl;
    s->fetched = now;
    s->failed = 0;
    if (ticket == cc->revocations)
        s->stale = 0;
    snprintf(s->ref, sizeof(s->ref), "%s", ref);
    return 0;
}

/*
 * One CRL of |up| (of issuer |ref|; NULL: the default issuer's) fetched, checked against the upstream's
 * CAs (cmp_status_check_crl) and filed under the CA that signed it, whichever that is, unless older than
 * the one held of that CA (file_crl); lock not held. |revocations|: as for refresh. The CA's index, or -1
 * with |err| (the cached CRLs stay).
 */
static int fetch_one(struct cmp_crl_cache *cc, struct gw_upstream *up, const char *ref,
                     unsigned long revocations, time_t now, char *err)
{
    unsigned char *der = NULL;
    size_t len = 0;
    X509_CRL *crl = NULL;
    int ca = -1, older;

    if (gw_upstream_crl(up, ref, &der, &len, err) == 0)
        crl = cmp_status_check_crl(der, len, cc->cas, now, &ca, err);
    free(der);
    if (crl == NULL)
        return -1;
    /* compared under the lock, where a genm's fetch files its CRL too */
    pthread_mutex_lock(&cc->lock);
    older = file_crl(cc, &cc->slots[ca], crl, ref != NULL ? ref : "", revocations, now);
    pthread_mutex_unlock(&cc->lock);
    X509_CRL_free(crl);
    if (!older)
        return ca;
    snprintf(err, GW_ERR_LEN, "the CRL is older than the one already seen");
    return -1;
}

/*
 * Whether the issuers' CRLs of |up| were tried for a certificate of its CA |want| and none was its
 * CA's: the issuers the configuration's routes sign with (cmp_urole_issuer_refs), each but |tried|
 * fetched until one is. A CRL is matched to the CA by its verified signer (cmp_status_check_crl:
 * name and signature), never by the ref it came from: which CA a Vault ref names is not known
 * without listing the mount's issuers, and need not be. *ca: the CA of the last CRL had, or -1;
 * |err| the first failure.
 */
static int issuer_crls(struct cmp_call *c, struct cmp_crl_cache *cc, struct gw_upstream *up, int want,
                       const char *tried, unsigned long revocations, int *ca, char *err)
{
    char refs[GW_MAX_STATUS_ISSUER_REFS][GW_MAX_ISSUER_REF_LEN + 1], why[GW_ERR_LEN];
    size_t n = 0;
    int got;

    if ((gw_upstream_caps(up) & GW_UP_ISSUER_CRLS) != 0)
        n = cmp_urole_issuer_refs(c, up, refs, GW_MAX_STATUS_ISSUER_REFS);
    for (size_t k = 0; k < n && *ca != want; k++) {
        if (strcmp(refs[k], tried) == 0)
            continue;
        if ((got = fetch_one(cc, up, refs[k], revocations, c->now, why)) >= 0)
            *ca = got;
        else if (err[0] == '\0')
            snprintf(err, GW_ERR_LEN, "%s", why);
    }
    return n > 0;
}

/*
 * Fetches the upstream's CRLs for a certificate of its CA |want|, each filed under the CA that
 * signed it; lock not held. First the CRL that was this CA's last time (one fetch while that
 * holds), then the default issuer's, then those of the issuers the routes sign with. Keeps the
 * cached ones where no new one is good. |revocations| is the count when the fetch began: a CRL
 * fetched across a revocation through cmpgw may predate it.
 */
static void refresh(struct cmp_call *c, struct cmp_crl_cache *cc, struct gw_upstream *up, int want,
                    unsigned long revocations, char *err)
{
    char tried[GW_MAX_ISSUER_REF_LEN + 1], why[GW_ERR_LEN] = "", got_name[96];
    int ca = -1, refs = 0;

    snprintf(tried, sizeof(tried), "%s", cc->slots[want].ref); /* written by the fetching worker only */
    if (tried[0] != '\0' && (ca = fetch_one(cc, up, tried, revocations, c->now, why)) == want)
        goto done;
    if ((ca = fetch_one(cc, up, NULL, revocations, c->now, err)) < 0 && why[0] == '\0')
        snprintf(why, sizeof(why), "%s", err);
    if (ca != want)
        refs = issuer_crls(c, cc, up, want, tried, revocations, &ca, why);
    if (ca == want)
        goto done;
    if (why[0] != '\0') {
        snprintf(err, GW_ERR_LEN, "%s", why);
    } else {
        name_text(X509_get_subject_name(sk_X509_value(cc->cas, ca)), got_name, sizeof(got_name));
        snprintf(err, GW_ERR_LEN, "it serves the CRL of its CA %s only%s", got_name,
                 refs ? ", and those of the issuers its routes sign with are of other CAs" : "");
    }
    pthread_mutex_lock(&cc->lock);
    cc->slots[want].failed = c->now;
    snprintf(cc->slots[want].why, sizeof(cc->slots[want].why), "%s", err);
    pthread_mutex_unlock(&cc->lock);
done:
    pthread_mutex_lock(&cc->lock);
    cc->fetching = 0;
    pthread_cond_broadcast(&cc->fetched_cond);
    pthread_mutex_unlock(&cc->lock);
}

/* The entry of |ref| among the genm fetches of |cc|, or NULL. Lock held. */
static struct crl_relay *relay_of(struct cmp_crl_cache *cc, const char *ref)
{
    for (int k = 0; k < GW_GENM_CRL_REFS; k++)
        if (cc->relays[k].at != 0 && strcmp(cc->relays[k].ref, ref) == 0)
            return &cc->relays[k];
    return NULL;
}

/*
 * What a genm fetch of |ref| less than GW_GENM_CRL_SECS ago tells now: CMP_RELAY_HIT with *crl where
 * it gave a CRL and its CA's newest (that one or a later one) is of after every revocation through
 * cmpgw and before its nextUpdate; CMP_RELAY_FAILED with *f where it gave none and ended less than
 * GW_STATUS_RETRY_SECS ago, or after |waited|, the cache's flights when this genm began to wait for
 * it; else CMP_RELAY_FETCH. Lock held.
 */
static int relay_recent(struct cmp_crl_cache *cc, const char *ref, time_t now, unsigned long waited,
                        X509_CRL **crl, struct cmp_crl_failure *f)
{
    const struct crl_relay *m = relay_of(cc, ref);
    const struct crl_slot *s;

    /* both ways: a genm that began before the fetch it waited for ended takes that one too */
    if (m == NULL || now - m->at >= GW_GENM_CRL_SECS || m->at - now >= GW_GENM_CRL_SECS)
        return CMP_RELAY_FETCH;
    /* a failure answers those that waited for it, and, as due() does for the revocation check, every
       genm for a while after it: the CA is not asked again for each genm of a client that repeats it
       while its CRL cannot be had or is refused */
    if (m->ca < 0 && (m->flight > waited || (now >= m->at && now - m->at < GW_STATUS_RETRY_SECS))) {
        *f = m->failure;
        return CMP_RELAY_FAILED;
    }
    if (m->ca < 0)
        return CMP_RELAY_FETCH;
    s = &cc->slots[m->ca];
    if (s->crl == NULL || s->stale || now >= asn1_to_time(X509_CRL_get0_nextUpdate(s->crl)) ||
        X509_CRL_up_ref(s->crl) != 1)
        return CMP_RELAY_FETCH;
    *crl = s->crl;
    return CMP_RELAY_HIT;
}

int cmp_status_relay_get(struct cmp_call *c, struct gw_upstream *up, const char *ref, X509_CRL **crl,
                         struct cmp_crl_failure *f, unsigned long *ticket)
{
    struct cmp_crl_cache *cc = cache_of(c->e, up);
    unsigned long waited;
    int got;

    *crl = NULL;
    *ticket = 0;
    if (cc == NULL)
        return CMP_RELAY_FETCH;
    pthread_mutex_lock(&cc->lock);
    waited = cc->flights;
    /* single flight: whoever asks while a CRL of |up| is fetched takes what that fetch gave */
    while ((got = relay_recent(cc, ref != NULL ? ref : "", c->now, waited, crl, f)) == CMP_RELAY_FETCH &&
           cc->fetching)
        pthread_cond_wait(&cc->fetched_cond, &cc->lock);
    if (got == CMP_RELAY_FETCH) {
        cc->fetching = 1;
        *ticket = cc->revocations;
    }
    pthread_mutex_unlock(&cc->lock);
    return got;
}

void cmp_status_relay_put(struct cmp_call *c, struct gw_upstream *up, const char *ref, X509_CRL *crl, int ca,
                          unsigned long ticket, const struct cmp_crl_failure *f, X509_CRL **newer)
{
    struct cmp_crl_cache *cc = cache_of(c->e, up);
    struct crl_relay *m;

    *newer = NULL;
    if (cc == NULL)
        return;
    ref = ref != NULL ? ref : "";
    pthread_mutex_lock(&cc->lock);
    if (crl == NULL || ca < 0 || ca >= sk_X509_num(cc->cas))
        ca = -1;
    else if (file_crl(cc, &cc->slots[ca], crl, ref, ticket, c->now) &&
             X509_CRL_up_ref(cc->slots[ca].crl) == 1)
        *newer = cc->slots[ca].crl;
    /* a ref not yet remembered takes the entry of the one asked for longest ago */
    if ((m = relay_of(cc, ref)) == NULL) {
        m = &cc->relays[0];
        for (int k = 1; k < GW_GENM_CRL_REFS; k++)
            if (cc->relays[k].at < m->at)
                m = &cc->relays[k];
        snprintf(m->ref, sizeof(m->ref), "%s", ref);
    }
    m->at = c->now > 0 ? c->now : 1;
    m->flight = ++cc->flights;
    m->ca = ca;
    if (ca < 0 && f != NULL)
        m->failure = *f;
    cc->fetching = 0;
    pthread_cond_broadcast(&cc->fetched_cond);
    pthread_mutex_unlock(&cc->lock);
}

static int reason_of(const X509_REVOKED *rev)
{
    ASN1_ENUMERATED *r = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
    int code = r != NULL ? (int)ASN1_ENUMERATED_get(r) : CRL_REASON_NONE;

    ASN1_ENUMERATED_free(r);
    return code;
}

/*
 * |cert|'s entry in the CRL of its CA (|ca| of upstream |up|, cache |i|). 0 with *revoked (and
 * *reason), or GW_ERR_UPSTREAM when no CRL of that CA newer than its nextUpdate plus the grace can
 * be had; |err| says why, |note| what was used.
 */
static int crl_status(struct cmp_call *c, size_t i, struct gw_upstream *up, int ca, X509 *cert, int *revoked,
                      int *reason, struct status_note *note, char *err)
{
    struct gw_cmp_engine *e = c->e;
    struct cmp_crl_cache *cc = &e->crls[i];
    time_t now = c->now;
    struct crl_slot *s = &cc->slots[ca];
    const char *name = gw_upstream_get0_conf(up)->name;
    X509_REVOKED *rev = NULL;
    char why[GW_ERR_LEN] = "no CRL could be fetched yet", ca_name[96];
    int rc = GW_ERR_UPSTREAM;

    pthread_mutex_lock(&cc->lock);
    /* the fetch waited for may bring none of this CA's (a genm's asks one issuer, and files only what it
       passes on): then this one fetches, unless that CA's fetch just failed (due) */
    for (;;) {
        if (due(s, now) && !cc->fetching) {
            unsigned long revocations = cc->revocations;

            cc->fetching = 1;
            pthread_mutex_unlock(&cc->lock);
            refresh(c, cc, up, ca, revocations, why);
            pthread_mutex_lock(&cc->lock);
        }
        if ((s->crl != NULL && !s->stale) || !cc->fetching) /* nothing usable until it lands */
            break;
        pthread_cond_wait(&cc->fetched_cond, &cc->lock);
    }
    if (s->failed != 0 && s->why[0] != '\0')
        snprintf(why, sizeof(why), "%s", s->why);
    /* a CRL read before a revocation through cmpgw does not know of it: stale until one after it */
    if (s->crl != NULL && !s->stale &&
        now <= asn1_to_time(X509_CRL_get0_nextUpdate(s->crl)) + (time_t)e->cfg.cmp->revocation_grace) {
        *revoked = X509_CRL_get0_by_cert(s->crl, &rev, cert) == 1;
        *reason = *revoked ? reason_of(rev) : CRL_REASON_NONE;
        snprintf(note->text, sizeof(note->text), "CRL of upstream %s", name);
        rc = 0;
    } else if (s->crl != NULL && s->stale) {
        snprintf(err, GW_ERR_LEN, "no CRL of upstream %s since a revocation (%.150s)", name, why);
    } else if (s->crl != NULL) {
        snprintf(err, GW_ERR_LEN, "the CRL of upstream %s is past its nextUpdate", name);
    } else if (sk_X509_num(cc->cas) > 1) {
        name_text(X509_get_subject_name(sk_X509_value(cc->cas, ca)), ca_name, sizeof(ca_name));
        snprintf(err, GW_ERR_LEN, "no CRL of upstream %s for its CA %.60s (%.150s)", name, ca_name, why);
    } else {
        snprintf(err, GW_ERR_LEN, "no CRL of upstream %s (%.150s)", name, why);
    }
    pthread_mutex_unlock(&cc->lock);
    return rc;
}

/* The status of |cert| at the upstream |up| whose CA |ca| issued it, by the best source it offers. */
static int upstream_status(struct cmp_call *c, size_t i, struct gw_upstream *up, int ca, X509 *cert,
                           int *revoked, int *reason, struct status_note *note, char *err)
{
    struct gw_cmp_engine *e = c->e;
    unsigned caps = gw_upstream_caps(up);
    const char *name = gw_upstream_get0_conf(up)->name;
    char crl_err[GW_ERR_LEN] = "";
    int rc;

    *revoked = 0;
    *reason = CRL_REASON_NONE;
    if ((caps & (GW_UP_STATUS_AT_ONCE | GW_UP_CERT_STATUS)) == (GW_UP_STATUS_AT_ONCE | GW_UP_CERT_STATUS)) {
        snprintf(note->text, sizeof(note->text), "store of upstream %s", name);
        return gw_upstream_cert_status(up, cert, revoked, err);
    }
    if ((caps & GW_UP_CRL) != 0 && e->crls != NULL &&
        (rc = crl_status(c, i, up, ca, cert, revoked, reason, note, crl_err)) == 0)
        return 0;
    if ((caps & GW_UP_CERT_STATUS) != 0) {
        snprintf(note->text, sizeof(note->text), "status query at upstream %s", name);
        if ((rc = gw_upstream_cert_status(up, cert, revoked, err)) != 0 && crl_err[0] != '\0') {
            char query_err[GW_ERR_LEN];

            snprintf(query_err, sizeof(query_err), "%s", err);
            snprintf(err, GW_ERR_LEN, "%.100s; and the status query failed: %.120s", crl_err, query_err);
        }
        return rc;
    }
    if (crl_err[0] != '\0')
        snprintf(err, GW_ERR_LEN, "%s", crl_err);
    else
        snprintf(err, GW_ERR_LEN, "upstream %s can tell the status of no certificate", name);
    return GW_ERR_UPSTREAM;
}

/* The trust entry called |name|, or NULL. */
static const struct gw_trust_conf *trust_named(const struct gw_cmp_settings *cfg, const char *name)
{
    for (size_t i = 0; name != NULL && i < cfg->n_trust; i++)
        if (strcmp(cfg->trust[i].name, name) == 0)
            return &cfg->trust[i];
    return NULL;
}

/*
 * Whether trust entry |t| speaks for |cert|: one of its CAs signed it, or is in |chain|, the chain its
 * validation built (|cert| first, the anchor last). The chain counts because an intermediate the
 * client sent in extraCerts is in no entry: the certificate it signed is the entry's all the same.
 */
static int covers(const struct gw_trust_conf *t, X509 *cert, const STACK_OF(X509) *chain)
{
    for (int j = 0; j < sk_X509_num(t->cas); j++)
        if (gw_x509_names_issuer(cert, sk_X509_value(t->cas, j)))
            return 1;
    for (int i = 1; i < sk_X509_num(chain); i++)
        if (gw_x509_in_stack(t->cas, sk_X509_value(chain, i)))
            return 1;
    return 0;
}

/*
 * A certificate no configured upstream issued: the trust entries in |names| that speak for it (a CA of
 * theirs signed it or is in its validated |chain|) say whether that is acceptable; an entry that takes
 * its upstreams' certificates only refuses it, whichever other entry would take it. |chain| NULL: the
 * TLS client certificate, whose chain is built from the entries' own certificates only (its issuer is
 * one of their CAs). A signer's chain that no entry speaks for is refused: it cannot be told which
 * entry's rule applies.
 */
static int entry_status(const struct gw_cmp_settings *cfg, char *const *names, size_t n, X509 *cert,
                        const STACK_OF(X509) *chain, const char *what, struct status_note *note,
                        struct cmp_refusal *r)
{
    const struct gw_trust_conf *crl = NULL;
    int covered = 0;

    snprintf(note->text, sizeof(note->text), "not checked");
    for (size_t i = 0; i < n; i++) {
        const struct gw_trust_conf *t = trust_named(cfg, names[i]);

        if (t == NULL || !covers(t, cert, chain))
            continue;
        covered = 1;
        /* every entry has its say: a crl_file of one listed earlier does not silence "upstream" */
        if (t->revocation == GW_REVOCATION_UPSTREAM)
            return cmp_refuse(
                r, OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                "the %s certificate was not issued by a CA this gateway can ask about revocation; "
                "trust %s accepts certificates of its upstreams only",
                what, t->name);
        if (crl == NULL && t->crl_file != NULL)
            crl = t;
        else if (crl == NULL)
            snprintf(note->text, sizeof(note->text), "not checked (trust %s: revocation none)", t->name);
    }
    /* chain validation checked every certificate of the chain against the entry's CRLs
       (X509_V_FLAG_CRL_CHECK_ALL): one whose issuer has no CRL there did not validate */
    if (crl != NULL)
        snprintf(note->text, sizeof(note->text), "crl_file of trust %s", crl->name);
    if (!covered && chain != NULL && n > 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                          "internal error: the %s certificate's chain ends at no trust entry of this route",
                          what);
    return 0;
}

/*
 * The line of a credential whose status could not be had (|rc| GW_ERR_UNAVAILABLE: Redis did not say whether
 * it was revoked through the gateway; else the status at the upstream of its CA, slot |s|). While either
 * lasts every request of such a certificate meets it, as fast as its client sends: each is paced by its
 * outage, shared_state_unavailable by the shared state's (gw_cluster_unavailable_due), status_unknown by the
 * CA's (gw_log_outage_due), which a status had again ends (known_again).
 */
static void log_unknown(struct cmp_call *c, struct crl_slot *s, int rc, const char *what, const char *err)
{
    char held[GW_LOG_HELD_LEN];

    if (rc == GW_ERR_UNAVAILABLE) {
        if (gw_cluster_unavailable_due(c->e->cluster, held))
            gw_log_kv(GW_LOG_ERROR, "shared_state_unavailable", "tid", c->rsp->tid, "certificate", what,
                      "reason", err, "suppressed", held, NULL);
        return;
    }
    if (gw_log_outage_due(&s->unknown, time(NULL), held))
        gw_log_kv(GW_LOG_WARN, "status_unknown", "tid", c->rsp->tid, "certificate", what, "reason", err,
                  "suppressed", held, NULL);
}

/* A status of a certificate of CA |ca| of |cc| (upstream |name|) was had: an outage of its lines is over. */
static void known_again(struct cmp_crl_cache *cc, int ca, const char *name)
{
    char held[GW_LOG_HELD_LEN], ca_name[96], msg[GW_ERR_LEN];

    if (!gw_log_outage_end(&cc->slots[ca].unknown, time(NULL), held))
        return;
    name_text(X509_get_subject_name(sk_X509_value(cc->cas, ca)), ca_name, sizeof(ca_name));
    snprintf(msg, sizeof(msg), "the revocation status of the certificates of its CA %s can be had again",
             ca_name);
    gw_log_kv(GW_LOG_INFO, "status_recovered", "upstream", name, "msg", msg, "suppressed", held, NULL);
}

bool cmp_status_issued_due(struct gw_cmp_engine *e, const struct gw_upstream *up, char held[GW_LOG_HELD_LEN])
{
    struct cmp_crl_cache *cc = cache_of(e, up);

    if (cc != NULL)
        return gw_log_outage_due(&cc->issued, time(NULL), held);
    snprintf(held, GW_LOG_HELD_LEN, "0");
    return true;
}

void cmp_status_issued_known(struct gw_cmp_engine *e, const struct gw_upstream *up)
{
    struct cmp_crl_cache *cc = cache_of(e, up);
    char held[GW_LOG_HELD_LEN];

    if (cc != NULL && gw_log_outage_end(&cc->issued, time(NULL), held))
        gw_log_kv(GW_LOG_INFO, "status_recovered", "upstream", gw_upstream_get0_conf(up)->name, "certificate",
                  "issued", "msg",
                  "whether its certificates were revoked through this gateway can be told again",
                  "suppressed", held, NULL);
}

/*
 * One authenticating certificate: 0 if it may be used (|note| says how that was known), else refused.
 * |named|: it is the certificate the request (an rr) asks about, whose revocation is its answer.
 */
static int check_one(struct cmp_call *c, X509 *cert, const STACK_OF(X509) *chain, char *const *names,
                     size_t n, const char *what, bool named, struct status_note *note, struct cmp_refusal *r)
{
    struct gw_cmp_engine *e = c->e;
    char err[GW_ERR_LEN] = "", serial[GW_SERIAL_HEX_LEN];
    size_t i = 0;
    int ca = 0;
    struct gw_upstream *up = issuer_upstream(e, cert, &i, &ca);
    int revoked = 0, reason = CRL_REASON_NONE;
    bool by_gateway = false;

    if (up == NULL)
        return entry_status(&e->cfg, names, n, cert, chain, what, note, r);
    /* first what cmpgw revoked itself: a CRL held since, or one the CA has not updated, does not know */
    if ((revoked = cmp_revoked_check(e, cert, c->now, err)) == 1) {
        by_gateway = true;
        snprintf(note->text, sizeof(note->text), "revoked through cmpgw");
    } else if (revoked == 0 && !gw_upstream_get0_conf(up)->check_revocation) {
        snprintf(note->text, sizeof(note->text), "not checked (upstream %s: check_revocation false)",
                 gw_upstream_get0_conf(up)->name);
        return 0;
    } else if (revoked < 0 || upstream_status(c, i, up, ca, cert, &revoked, &reason, note, err) != 0) {
        log_unknown(c, &e->crls[i].slots[ca], revoked, what, err);
        /* where the shared state is and what it answered are the operator's, as for every other use of it */
        return cmp_refuse(
            r, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
            "the revocation status of the %s certificate cannot be checked now (%.120s); retry later", what,
            revoked < 0 ? "whether it was revoked through this gateway cannot be looked up" : err);
    }
    if (!by_gateway)
        known_again(&e->crls[i], ca, gw_upstream_get0_conf(up)->name);
    if (!revoked)
        return 0;
    gw_x509_cert_serial_hex(cert, serial, sizeof(serial));
    if (named) /* the rr's own answer (rr.c refused()) */
        cmp_log_already_revoked(c, serial, X509_get_issuer_name(cert), by_gateway ? "gateway" : "upstream",
                                note->text);
    else
        gw_log_kv(GW_LOG_INFO, "credential_revoked", "tid", c->rsp->tid, "certificate", what, "serial",
                  serial, "source", note->text, NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_certRevoked,
                      "the %s certificate (serial %s) is revoked; authenticate with a valid one", what,
                      serial);
}

int cmp_check_credentials(struct cmp_call *c, struct cmp_txn *t, struct cmp_refusal *r)
{
    const struct gw_authz *a = &t->role->authz;
    struct status_note signer = {"none"}, tls = {"none"};

    t->signer_revoked = 0;
    if (t->signer != NULL && check_one(c, t->signer, t->signer_chain, t->role->trust_names, t->role->n_trust,
                                       "signer", t->signer_named, &signer, r) != 0) {
        t->signer_revoked = r->fail_info == OSSL_CMP_PKIFAILUREINFO_certRevoked;
        return 1;
    }
    if (c->req->tls_peer != NULL && check_one(c, c->req->tls_peer, NULL, a->tls_trust_names, a->n_tls_trust,
                                              "TLS client", false, &tls, r) != 0)
        return 1;
    snprintf(t->credential_status, sizeof(t->credential_status), "signer: %.200s; tls: %.200s", signer.text,
             tls.text);
    return 0;
}

const char *cmp_credentials_code(const struct cmp_refusal *r)
{
    switch (r->fail_info) {
    case OSSL_CMP_PKIFAILUREINFO_certRevoked:
        return "credential_revoked";
    case OSSL_CMP_PKIFAILUREINFO_systemUnavail:
        return "credential_status_unknown";
    case OSSL_CMP_PKIFAILUREINFO_notAuthorized:
        return "credential_issuer_unchecked";
    default:
        return "internal_error";
    }
}

/* The CRL an upstream serves, passed on as it came: the engine's answer to GET <prefix>/crl/<name>. */
void gw_cmp_engine_crl(struct gw_cmp_engine *e, const char *upstream, struct gw_cmp_response *rsp)
{
    struct gw_upstream *up = gw_upstream_set_get0(e->ups, upstream);
    char err[GW_ERR_LEN] = "";
    unsigned char *der = NULL;
    size_t len = 0;
    int rc = gw_upstream_crl(up, NULL, &der, &len, err);

    if (rc == 0 && (rsp->der = OPENSSL_memdup(der, len)) != NULL) {
        rsp->len = len;
        rsp->http_status = 200;
        snprintf(rsp->outcome, sizeof(rsp->outcome), "crl (%zu bytes)", len);
    } else {
        rsp->http_status = up == NULL ? 404 : 500;
        snprintf(rsp->http_reason, sizeof(rsp->http_reason), "%s",
                 rsp->http_status == 404 ? "no such CRL" : "the CRL is unavailable; retry later");
        snprintf(rsp->outcome, sizeof(rsp->outcome), "crl failed: %.200s", rc == 0 ? "out of memory" : err);
    }
    free(der);
}
