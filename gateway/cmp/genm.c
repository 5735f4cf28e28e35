/*
 * genm -> genp (RFC 9483 §4.3): CA certificates, root CA certificate update, certificate request
 * template and CRL update retrieval, built with OpenSSL 3.0's generic ITAV API (the typed helpers are
 * 3.2+; the values come from the shim). One handler per infoType in a const table. Answers must fit
 * `openssl cmp`'s 100 KiB response cap: a value too large is refused with a text, never cut.
 */
#include "gateway/cmp/genm.h"
#include "gateway/cmp/auth.h"
#include "gateway/cmp/cmp_local.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/policy.h"
#include "gateway/cmp/status.h"
#include "gateway/cmp/urole.h"
#include "base/err.h"
#include "base/log.h"
#include "mappings/profile.h"
#include "upstream/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/cmperr.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define OID_CA_CERTS "1.3.6.1.5.5.7.4.17"
#define OID_ROOT_CA_KEY_UPDATE "1.3.6.1.5.5.7.4.18"
#define OID_CERT_REQ_TEMPLATE "1.3.6.1.5.5.7.4.19"
#define OID_ROOT_CA_CERT "1.3.6.1.5.5.7.4.20"
#define OID_CRL_STATUS_LIST "1.3.6.1.5.5.7.4.22"
#define OID_CRLS "1.3.6.1.5.5.7.4.23"

#define TEXT_SUPPORTED                                                                                       \
    "this server answers id-it-caCerts, id-it-rootCaCert, id-it-certReqTemplate and id-it-crlStatusList"
#define TEXT_BAD_ROOT                                                                                        \
    "the id-it-rootCaCert value is not a certificate: send the root CA certificate you trust, or no "        \
    "value (RFC 9483 §4.3.2)"

static int ca_certs(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in, const ASN1_OBJECT *type,
                    STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r);
static int root_update(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in,
                       const ASN1_OBJECT *type, STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r);
static int cert_template(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in,
                         const ASN1_OBJECT *type, STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r);
static int crls(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in, const ASN1_OBJECT *type,
                STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r);

static const struct {
    const char *oid;  /* the request's infoType */
    const char *name; /* for logs */
    const char *rsp;  /* the answer's infoType */
    /* answers one infoType with |type|: 0 with an ITAV pushed onto |out|, else refused */
    int (*fn)(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in, const ASN1_OBJECT *type,
              STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r);
} handlers[] = {
    {OID_CA_CERTS, "caCerts", OID_CA_CERTS, ca_certs},                     /* RFC 9483 §4.3.1 */
    {OID_ROOT_CA_CERT, "rootCaCert", OID_ROOT_CA_KEY_UPDATE, root_update}, /* RFC 9483 §4.3.2 */
    /* drafts of RFC 9483 before id-it-rootCaCert asked with the answer's infoType and no value */
    {OID_ROOT_CA_KEY_UPDATE, "rootCaKeyUpdate", OID_ROOT_CA_KEY_UPDATE, root_update},
    {OID_CERT_REQ_TEMPLATE, "certReqTemplate", OID_CERT_REQ_TEMPLATE, cert_template}, /* RFC 9483 §4.3.3 */
    {OID_CRL_STATUS_LIST, "crlStatusList", OID_CRLS, crls},                           /* RFC 9483 §4.3.4 */
};

/* id-regCtrl-algId and id-regCtrl-rsaKeyLen (RFC 9483 §4.3.3) */
#define OID_REGCTRL_ALGID "1.3.6.1.5.5.7.5.1.11"
#define OID_REGCTRL_RSAKEYLEN "1.3.6.1.5.5.7.5.1.12"

/* What a role without allowed_key_types accepts (mappings/policy.c's built-in list). */
static const struct gw_key_rule default_keys[] = {
    {EVP_PKEY_RSA, 2048, 0},         {EVP_PKEY_EC, 0, NID_X9_62_prime256v1},
    {EVP_PKEY_EC, 0, NID_secp384r1}, {EVP_PKEY_EC, 0, NID_secp521r1},
    {EVP_PKEY_ED25519, 0, 0},        {EVP_PKEY_ED448, 0, 0},
};

/* Pushes an ITAV built by the shim; refused with systemFailure if it could not be built. */
static int push(STACK_OF(OSSL_CMP_ITAV) **out, OSSL_CMP_ITAV *itav, struct cmp_refusal *r)
{
    if (itav != NULL && OSSL_CMP_ITAV_push0_stack_item(out, itav) == 1)
        return 0;
    OSSL_CMP_ITAV_free(itav);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                      "internal error: the answer could not be built");
}

static ASN1_OBJECT *oid_of(const char *oid)
{
    return OBJ_txt2obj(oid, 1);
}

static int add_unique(STACK_OF(X509) *sk, X509 *x)
{
    return X509_add_cert(sk, x, X509_ADD_FLAG_UP_REF | X509_ADD_FLAG_NO_DUP);
}

static int add_all(STACK_OF(X509) *sk, const STACK_OF(X509) *from)
{
    for (int i = 0; i < sk_X509_num(from); i++)
        if (add_unique(sk, sk_X509_value(from, i)) != 1)
            return 0;
    return 1;
}

/* A CA's own certificate and those of its issuer_ca. */
static int add_upstream_cas(STACK_OF(X509) *sk, const struct gw_upstream_conf *uc)
{
    return uc != NULL && (uc->own_ca == NULL || add_unique(sk, uc->own_ca) == 1) &&
           add_all(sk, uc->issuer_certs);
}

/*
 * RFC 9483 §4.3.1: the certificates of the route's CA, its chain and root (issuer first); while the
 * role migrates (shadow or live), the new CA's too, so that clients learn it before they are issued by it.
 */
static int ca_certs(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in, const ASN1_OBJECT *type,
                    STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r)
{
    const struct gw_migration *m = &t->role->migration;
    STACK_OF(X509) *sk = sk_X509_new_null();
    int ok, refused;

    (void)c;
    (void)in;
    ok = sk != NULL && add_upstream_cas(sk, t->role->upstream) &&
         (!gw_migration_configured(m) || m->mode == GW_MIGRATION_OFF || add_upstream_cas(sk, m->to));
    if (ok && sk_X509_num(sk) == 0) { /* RFC 9483 §4.3.1: no certificates, no value */
        sk_X509_free(sk);
        sk = NULL;
    }
    refused = ok ? push(out, gw_shim_itav_certs(type, sk), r)
                 : cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                              "internal error: the CA certificates could not be collected");
    sk_X509_pop_free(sk, X509_free);
    return refused;
}

/* Whether |root| is the old root of an update: the one whose key signed newWithOld (RFC 4210 §4.4). */
static int is_old_root(X509 *root, X509 *new_with_old)
{
    int yes = new_with_old != NULL && X509_check_issued(root, new_with_old) == X509_V_OK &&
              X509_verify(new_with_old, X509_get0_pubkey(root)) == 1;

    ERR_clear_error();
    return yes;
}

/*
 * RFC 9483 §4.3.2: the root CA update configured for the role (else the top-level one), if it applies to
 * the root the client trusts (id-it-rootCaCert's value: the update's old root) or the client names
 * none; otherwise, and with no update configured, id-it-rootCaKeyUpdate with an absent value.
 */
static int root_update(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in,
                       const ASN1_OBJECT *type, STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r)
{
    const struct gw_root_update *u =
        t->role->root_update.new_with_new != NULL ? &t->role->root_update : c->e->cfg.root_update;
    X509 *current = NULL;
    int applies, refused;

    /* the drafts' request (id-it-rootCaKeyUpdate) names no root: its value is not read */
    if (OBJ_cmp(OSSL_CMP_ITAV_get0_type(in), type) != 0 &&
        (gw_shim_itav_cert(OSSL_CMP_ITAV_get0_value(in), &current) != 0 ||
         (current != NULL && X509_get0_pubkey(current) == NULL))) {
        X509_free(current);
        ERR_clear_error();
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "%s", TEXT_BAD_ROOT);
    }
    /* checking the update against it verifies a signature with the client's key */
    if (current != NULL && !cmp_key_affordable(X509_get0_pubkey(current))) {
        X509_free(current);
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "%s", TEXT_KEY_LIMITS);
    }
    applies = u->new_with_new != NULL && (current == NULL || is_old_root(current, u->new_with_old));
    refused = push(
        out,
        gw_shim_itav_root_update(type, applies ? u->new_with_new : NULL, u->new_with_old, u->old_with_new),
        r);
    X509_free(current);
    return refused;
}

/* One keySpec control for a key rule: algId for EC and EdDSA, rsaKeyLen for RSA. NULL on error. */
static unsigned char *key_spec(const struct gw_key_rule *k, int *len)
{
    X509_ALGOR *alg = NULL;
    ASN1_INTEGER *bits = NULL;
    unsigned char *val = NULL, *attr = NULL;
    int vlen = -1;

    if (k->pkey_type == EVP_PKEY_RSA) {
        if ((bits = ASN1_INTEGER_new()) != NULL && ASN1_INTEGER_set(bits, k->min_bits) == 1)
            vlen = i2d_ASN1_INTEGER(bits, &val);
    } else if ((alg = X509_ALGOR_new()) != NULL) {
        if (k->pkey_type == EVP_PKEY_EC)
            X509_ALGOR_set0(alg, OBJ_nid2obj(NID_X9_62_id_ecPublicKey), V_ASN1_OBJECT,
                            OBJ_nid2obj(k->curve_nid));
        else
            X509_ALGOR_set0(alg, OBJ_nid2obj(k->pkey_type), V_ASN1_UNDEF, NULL);
        vlen = i2d_X509_ALGOR(alg, &val);
    }
    if (vlen > 0)
        attr = gw_shim_attr(k->pkey_type == EVP_PKEY_RSA ? OID_REGCTRL_RSAKEYLEN : OID_REGCTRL_ALGID, val,
                            vlen, len);
    OPENSSL_free(val);
    X509_ALGOR_free(alg);
    ASN1_INTEGER_free(bits);
    return attr;
}

/*
 * RFC 9483 §4.3.3: a template from the role's profile: no subject (the client names itself, policy checks
 * it), keyUsage/extendedKeyUsage as issued, and one keySpec control per allowed key type.
 */
static int cert_template(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in,
                         const ASN1_OBJECT *type, STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r)
{
    const struct gw_key_rule *rules = t->role->authz.key_rules;
    size_t n = t->role->authz.n_key_rules;
    unsigned char *spec[GW_MAX_KEY_RULES + 8] = {NULL};
    int lens[GW_MAX_KEY_RULES + 8] = {0}, refused = 1;
    STACK_OF(X509_EXTENSION) *exts = NULL;

    (void)c;
    (void)in;
    if (rules == NULL || n == 0) {
        rules = default_keys;
        n = sizeof(default_keys) / sizeof(default_keys[0]);
    }
    if (n > sizeof(spec) / sizeof(spec[0]) ||
        !gw_usage_exts_add(&exts, t->role->key_usage, t->role->ext_key_usage))
        goto out;
    for (size_t i = 0; i < n; i++)
        if ((spec[i] = key_spec(&rules[i], &lens[i])) == NULL)
            goto out;
    refused = push(out, gw_shim_itav_cert_template(type, exts, spec, lens, (int)n), r);
out:
    if (refused)
        cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                   "internal error: the certificate request template could not be built");
    for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++)
        OPENSSL_free(spec[i]);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return refused;
}

/*
 * What the client's crlStatusList |in| says of |crl| at |now|, in one read of it: whether a CRLStatus
 * names the CRL's issuer (*named), and whether the client's CRL is as new as |crl| (*current): only a
 * CRLStatus naming the issuer speaks of it (a client's CRL of another CA says nothing of this one); 0 if
 * unreadable. A thisUpdate further ahead of |now| than GW_CRL_CLOCK_SKEW_SECS is no CRL's the gateway
 * would take (cmp_status_check_crl) but a wrong clock's: it is not "newer", else the client is told its
 * CRL is current for as long as its clock is wrong (RFC 9810 §5.3.19.17: the server sends the CRLs
 * newer than the client's).
 */
static void client_holds(const OSSL_CMP_ITAV *in, const X509_CRL *crl, time_t now, int *named, int *current)
{
    time_t have = 0;
    struct tm tm;

    *current =
        gw_shim_crl_status(OSSL_CMP_ITAV_get0_value(in), X509_CRL_get_issuer(crl), named, &have) == 0 &&
        have != 0 && have <= now + GW_CRL_CLOCK_SKEW_SECS &&
        ASN1_TIME_to_tm(X509_CRL_get0_lastUpdate(crl), &tm) == 1 && timegm(&tm) <= have;
    ERR_clear_error();
}

/*
 * |der| parsed, if it is a CRL to pass on from |up|: one the gateway's revocation check would take
 * (cmp_status_check_crl), of one of the CAs |up| issues under (its index in *ca), and current. A CA
 * serving another key's CRL, a delta or partial one, one from the future or one past its nextUpdate
 * is the upstream's trouble: NULL with why in |err|. The revocation check goes on using a CRL for
 * cmp.revocation_grace past its nextUpdate, as the gateway's own choice between refusing every
 * certificate of a CA that is late to publish and a bounded delay; a client handed that CRL would
 * find it expired and could not use it (RFC 5280 §6.3.3 (a)), so none is relayed.
 */
static X509_CRL *crl_to_relay(struct cmp_call *c, struct gw_upstream *up, const unsigned char *der,
                              size_t len, int *ca, char *err)
{
    STACK_OF(X509) *cas = gw_upstream_conf_issuing_cas(gw_upstream_get0_conf(up));
    X509_CRL *crl = NULL;

    *ca = -1;
    snprintf(err, GW_ERR_LEN, "out of memory");
    if (cas != NULL)
        crl = cmp_status_check_crl(der, len, cas, c->now, ca, err);
    sk_X509_pop_free(cas, X509_free);
    if (crl != NULL && cmp_status_crl_current(crl, c->now, err) != 0) {
        X509_CRL_free(crl);
        crl = NULL;
        *ca = -1;
        ERR_clear_error();
    }
    return crl;
}

/* A CRL of |len| bytes refused with *f: it does not fit in a genp. -1. */
static int too_large(size_t len, struct cmp_crl_failure *f)
{
    cmp_refuse(
        &f->refusal, OSSL_CMP_PKIFAILUREINFO_badRequest,
        "the CRL (%zu bytes) does not fit in a CMP response (at most %d KiB): fetch it from the CA's CRL "
        "distribution point",
        len, GW_MAX_RESPONSE / 1024);
    return -1;
}

/* A CRL that did not pass the checks (f->why says which) refused with *f. -1. */
static int not_passed(struct cmp_crl_failure *f)
{
    f->fault = CMP_CRL_NOT_PASSED;
    cmp_refuse(&f->refusal, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
               "the CA's CRL did not pass this gateway's checks and was not passed on; retry later");
    return -1;
}

/*
 * |der| of |up| checked for a client: 0 with *crl (and its CA's index in *ca), else -1 with *f. One too
 * large for a genp is -1 with *crl and *ca all the same: it passed the checks and is filed in the cache
 * (cmp_status_relay_put), so that the genms after it are refused from there (pass_recent), not each with
 * a fetch, a parse and a signature check of up to GW_MAX_UPSTREAM_BODY.
 */
static int relay_checks(struct cmp_call *c, struct gw_upstream *up, const unsigned char *der, size_t len,
                        X509_CRL **crl, int *ca, struct cmp_crl_failure *f)
{
    if ((*crl = crl_to_relay(c, up, der, len, ca, f->why)) == NULL)
        return not_passed(f);
    return len > GW_MAX_GENP_VALUE ? too_large(len, f) : 0;
}

/*
 * The CRL of |up|'s issuer |ref| fetched now and checked: 0 with *crl, *len and *ca, else -1 with *f (and
 * *crl and *ca where it passed the checks but is too large to pass on: relay_checks).
 */
static int fetch_now(struct cmp_call *c, struct gw_upstream *up, const char *ref, X509_CRL **crl, size_t *len,
                     int *ca, struct cmp_crl_failure *f)
{
    unsigned char *der = NULL;
    int rc;

    if (gw_upstream_crl(up, ref, &der, len, f->why) != 0) {
        /* what failed names the upstream's address and path: the operator's to read, not the client's */
        f->fault = CMP_CRL_NOT_SERVED;
        cmp_refuse(&f->refusal, OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                   "the CA's CRL could not be fetched now; retry later");
        return -1;
    }
    rc = relay_checks(c, up, der, *len, crl, ca, f);
    free(der);
    return rc;
}

/*
 * |recent| (taken), a CRL the cache holds of one of the upstream's CAs, in place of any fetched: 0 with
 * *crl and its size *len, else -1 with *f. It passed cmp_status_check_crl against those CAs when it was
 * filed and is not parsed and verified again, nor encoded again to be sent (gw_shim_itav_x509_crls): what
 * may have changed since is the time, checked against the answer's (cmp_status_crl_current), and whether
 * it fits, as CRLs too large for a genp are filed too (by the revocation check, and relay_checks).
 */
static int pass_recent(struct cmp_call *c, X509_CRL *recent, X509_CRL **crl, size_t *len,
                       struct cmp_crl_failure *f)
{
    int n = i2d_X509_CRL(recent, NULL); /* its kept encoding's size: nothing is written */

    X509_CRL_free(*crl);
    *crl = NULL;
    *len = n > 0 ? (size_t)n : 0;
    if (n <= 0) {
        cmp_refuse(&f->refusal, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                   "internal error: the answer could not be built");
    } else if (*len > GW_MAX_GENP_VALUE) {
        too_large(*len, f);
    } else if (cmp_status_crl_current(recent, c->now, f->why) != 0) {
        not_passed(f);
    } else {
        *crl = recent;
        return 0;
    }
    X509_CRL_free(recent);
    return -1;
}

/* The upstream whose CRL this route serves: its own upstream, else its delegate issuer. */
static struct gw_upstream *crl_source(struct cmp_call *c, const struct gw_role *role)
{
    struct gw_upstream *up = gw_upstream_set_get0(c->e->ups, role->upstream_name);

    if ((gw_upstream_caps(up) & GW_UP_CRL) == 0 && role->delegate_name != NULL)
        up = gw_upstream_set_get0(c->e->ups, role->delegate_name);
    return up;
}

_Static_assert(GW_ROLE_ISSUERS <= GW_SHIM_MAX_CRLS, "a crls answer holds a CRL of each of a role's issuers");

/* Whether an entry of crlStatusList |in| names one of the CAs |up| issues under as its source. */
static int names_ca_of(const ASN1_TYPE *in, const struct gw_upstream *up)
{
    STACK_OF(X509) *cas = gw_upstream_conf_issuing_cas(gw_upstream_get0_conf(up));
    int named = 0;

    for (int i = 0; !named && i < sk_X509_num(cas); i++)
        named = gw_shim_crl_status_names(in, X509_get_subject_name(sk_X509_value(cas, i)));
    sk_X509_pop_free(cas, X509_free);
    return named;
}

/*
 * Whether an entry of crlStatusList |in| names a CA one of |ups| issues under that is the issuer of none of
 * the CRLs fetched from them (|crl|, |n| of each): an upstream of several CAs serves the CRL of the one
 * that signs the role's certificates, and a client naming another would take its own CRL of that one as
 * current, told nothing of it (RFC 9810 §5.3.19.17: the server sends the CRLs newer than the client's),
 * unless another upstream of the role serves that one's CRL in the same answer (one Vault mount's two
 * issuers, a migration's "from" signing with one and its "to" with the other). CAs of one name (one CA
 * rekeyed) sign one CRL. Out of memory: 1, refused.
 */
static int names_unserved_ca(const ASN1_TYPE *in, struct gw_upstream *const *ups, X509_CRL *const *crl, int n)
{
    int unserved = 0;

    for (int i = 0; !unserved && i < n; i++) {
        STACK_OF(X509) *cas = gw_upstream_conf_issuing_cas(gw_upstream_get0_conf(ups[i]));

        unserved = cas == NULL;
        for (int k = 0; !unserved && k < sk_X509_num(cas); k++) {
            const X509_NAME *ca = X509_get_subject_name(sk_X509_value(cas, k));
            int served = 0;

            for (int j = 0; !served && j < n; j++)
                served = X509_NAME_cmp(ca, X509_CRL_get_issuer(crl[j])) == 0;
            unserved = !served && gw_shim_crl_status_names(in, ca);
        }
        sk_X509_pop_free(cas, X509_free);
    }
    return unserved;
}

/*
 * The upstreams a crlStatusList |in| of |role| is answered from, each once, into |out|: of the role's
 * issuers (gw_role_issuers: its delegate, its migration's "to" in any mode, its upstream, its
 * crmf_upstream), those under one of whose CAs an entry of |in| names its source (*named 1; one that
 * publishes no CRL refuses the answer); when no entry names one (a list that names the CRLs it has by
 * distribution point, another CA's, or no list), the route's own (crl_source), as one CRL answers one
 * entry (RFC 9483 §4.3.4). Returns how many (1 to GW_ROLE_ISSUERS).
 */
static int crl_sources(struct cmp_call *c, const struct gw_role *role, const ASN1_TYPE *in,
                       struct gw_upstream *out[GW_ROLE_ISSUERS], int *named)
{
    const char *names[GW_ROLE_ISSUERS];
    int n = 0, seen;

    gw_role_issuers(role, names);
    for (int i = 0; i < GW_ROLE_ISSUERS; i++) {
        struct gw_upstream *up = names[i] != NULL ? gw_upstream_set_get0(c->e->ups, names[i]) : NULL;

        seen = 0;
        for (int j = 0; j < n; j++)
            seen |= out[j] == up;
        if (up != NULL && !seen && names_ca_of(in, up))
            out[n++] = up;
    }
    *named = n > 0;
    if (n == 0)
        out[n++] = crl_source(c, role);
    return n;
}

/*
 * The line of a genm told |f|, a CRL of |up| that could not be had or did not pass. Every genm of
 * GW_STATUS_RETRY_SECS after such a fetch is told so (cmp_status_relay_get), as fast as a client repeats
 * it: paced as the events a peer causes (gw_log_pace_due), on the request's clock.
 */
static void log_crl_failure(struct cmp_call *c, const struct gw_role *role, struct gw_upstream *up,
                            const struct cmp_crl_failure *f)
{
    static struct gw_log_pace unavailable_pace = GW_LOG_PACE_INIT, refused_pace = GW_LOG_PACE_INIT;
    bool unavailable = f->fault == CMP_CRL_NOT_SERVED;
    char held[GW_LOG_HELD_LEN];

    if (f->fault == CMP_CRL_UNSAID ||
        !gw_log_pace_due(unavailable ? &unavailable_pace : &refused_pace, c->now, held))
        return;
    gw_log_kv(GW_LOG_ERROR, unavailable ? "genm_crl_unavailable" : "genm_crl_refused", "tid", c->rsp->tid,
              "role", role->name, "upstream", gw_upstream_conf_name(gw_upstream_get0_conf(up)), "reason",
              f->why, "suppressed", held, NULL);
}

/*
 * The current CRL of |up| for |t|'s role into *crl (the caller frees it) and its size *len, once it passed
 * crl_to_relay: on a Vault mount of several issuers, of the one the role's sign call takes there
 * (cmp_urole_signing_issuer; the role's upstream and its migration's "to" sign for it by that name); a
 * delegate issuer's is its own.
 * One fetch of it answers the genms of GW_GENM_CRL_SECS, and a failed one those that waited for it and
 * those of GW_STATUS_RETRY_SECS after it (cmp_status_relay_get): a client repeating its genm does not
 * make the gateway ask the CA each time. 0, else refused.
 */
static int fetch_crl(struct cmp_txn *t, struct cmp_call *c, struct gw_upstream *up, X509_CRL **crl,
                     size_t *len, struct cmp_refusal *r)
{
    const struct gw_role *role = t->role;
    char ref_buf[GW_MAX_ISSUER_REF_LEN + 1];
    const char *ref = NULL;
    struct cmp_crl_failure f = {.fault = CMP_CRL_UNSAID};
    X509_CRL *recent = NULL;
    unsigned long ticket;
    int ca = -1, rc = -1;

    *crl = NULL;
    if ((gw_upstream_caps(up) & GW_UP_CRL) == 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "this route's CA publishes no CRL over CMP");
    if (cmp_urole_signs_for(c->e, role, up))
        ref = cmp_urole_signing_issuer(c, role, up, ref_buf);
    switch (cmp_status_relay_get(c, up, ref, &recent, &f, &ticket)) {
    case CMP_RELAY_FETCH:
        rc = fetch_now(c, up, ref, crl, len, &ca, &f);
        cmp_status_relay_put(c, up, ref, *crl, ca, ticket, &f, &recent);
        /* the CA served an older CRL than it did before: the newer may list a revocation it lacks */
        if (recent != NULL)
            rc = pass_recent(c, recent, crl, len, &f);
        break;
    case CMP_RELAY_HIT:
        rc = pass_recent(c, recent, crl, len, &f);
        break;
    default: /* CMP_RELAY_FAILED: as the fetch it waited for, which f tells */
        break;
    }
    if (rc == 0)
        return 0;
    X509_CRL_free(*crl); /* one filed that does not fit */
    *crl = NULL;
    log_crl_failure(c, role, up, &f);
    *r = f.refusal;
    return 1;
}

/*
 * RFC 9483 §4.3.4: crlStatusList -> crls with the current CRL of each CA crl_sources picks whose CRL
 * the client does not hold as new (client_holds), or an absent value if it holds them all. During a
 * migration, and on a role with a delegate issuer, a device's certificate may come from another CA
 * than the route's upstream: a client naming that CA's CRL gets that CRL. Any CRL that cannot be
 * fetched or is refused refuses the whole answer, and so does a CA of these upstreams named whose CRL none
 * of them serves (names_unserved_ca): a client told nothing of one of the CRLs it asked for would take the
 * others as all there is.
 */
static int crls(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in, const ASN1_OBJECT *type,
                STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r)
{
    struct gw_upstream *ups[GW_ROLE_ISSUERS];
    X509_CRL *crl[GW_ROLE_ISSUERS] = {NULL}, *send[GW_ROLE_ISSUERS];
    size_t len = 0, total = 0;
    int n, n_send = 0, refused = 0, named;
    time_t have = 0;

    if (gw_shim_crl_status_time(OSSL_CMP_ITAV_get0_value(in), NULL, &have) != 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badDataFormat,
                          "the id-it-crlStatusList value is malformed (RFC 9483 §4.3.4)");
    n = crl_sources(c, t->role, OSSL_CMP_ITAV_get0_value(in), ups, &named);
    for (int i = 0; i < n && !refused; i++) {
        int names_it = 0, current = 0;

        if ((refused = fetch_crl(t, c, ups[i], &crl[i], &len, r)) == 0)
            client_holds(in, crl[i], c->now, &names_it, &current);
        /* the client's CRL is as new as ours, or the client named its CAs and not this one's (an upstream
           of several CAs serves the CRL of the one it signs the role's certificates with): not sent */
        if (!refused && !current && (!named || names_it)) {
            send[n_send++] = crl[i];
            total += len;
        }
    }
    /* a client that named another CA of these upstreams, alone or beside those served, is not handed
       their CRLs as if they were that one's, nor as if they were all */
    if (!refused && named && names_unserved_ca(OSSL_CMP_ITAV_get0_value(in), ups, crl, n))
        refused = cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                             "the CRL of a CA named in the id-it-crlStatusList is not served over CMP here: "
                             "fetch it from its CRL distribution point");
    if (!refused && total > GW_MAX_GENP_VALUE)
        refused = cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                             "the CRLs (%zu bytes) do not fit in a CMP response (at most %d KiB): ask for "
                             "one CRL per genm, or fetch them from the CAs' CRL distribution points",
                             total, GW_MAX_RESPONSE / 1024);
    /* every CRL the client holds is as new as ours: an absent value says so */
    if (!refused && push(out, gw_shim_itav_x509_crls(type, send, n_send), r) != 0)
        refused = cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                             "the CA's CRL is unreadable; it was not passed on");
    for (int i = 0; i < n; i++)
        X509_CRL_free(crl[i]);
    return refused;
}

/* Bytes the value of |itav| adds to the answer. */
static size_t value_size(const OSSL_CMP_ITAV *itav)
{
    const ASN1_TYPE *v = OSSL_CMP_ITAV_get0_value(itav);

    return v != NULL && v->type == V_ASN1_SEQUENCE && v->value.sequence != NULL
               ? (size_t)v->value.sequence->length
               : 0;
}

/* The index in handlers[] of |in|'s infoType, written dotted into |oid| (|cap| bytes); -1 if none. */
static int handler_of(const OSSL_CMP_ITAV *in, char *oid, size_t cap)
{
    if (OBJ_obj2txt(oid, (int)cap, OSSL_CMP_ITAV_get0_type(in), 1) <= 0)
        snprintf(oid, cap, "?");
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (strcmp(oid, handlers[i].oid) == 0)
            return (int)i;
    return -1;
}

/* RFC 9483 §4.3: an infoType the PKI management entity does not support gets an error message */
static int unsupported(const char *oid, struct cmp_refusal *r)
{
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "infoType %.60s is not supported: %s", oid,
                      TEXT_SUPPORTED);
}

/* Answers one requested ITAV. */
static int answer(struct cmp_txn *t, struct cmp_call *c, const OSSL_CMP_ITAV *in,
                  STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r)
{
    char oid[80];
    ASN1_OBJECT *type;
    int h = handler_of(in, oid, sizeof(oid)), refused;

    if (h < 0)
        return unsupported(oid, r);
    if ((type = oid_of(handlers[h].rsp)) == NULL)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                          "internal error: the answer could not be built");
    refused = handlers[h].fn(t, c, in, type, out, r);
    ASN1_OBJECT_free(type);
    return refused;
}

/*
 * The first infoType |in| names twice, or NULL. An answer is the same however often it is asked for,
 * but each crlStatusList may be a fetch of the whole CRL from the CA on this worker: asked twice, a genm
 * could cost as many fetches as it has ITAVs.
 */
static const ASN1_OBJECT *asked_twice(const STACK_OF(OSSL_CMP_ITAV) *in)
{
    for (int i = 1; i < sk_OSSL_CMP_ITAV_num(in); i++)
        for (int j = 0; j < i; j++)
            if (OBJ_cmp(OSSL_CMP_ITAV_get0_type(sk_OSSL_CMP_ITAV_value(in, i)),
                        OSSL_CMP_ITAV_get0_type(sk_OSSL_CMP_ITAV_value(in, j))) == 0)
                return OSSL_CMP_ITAV_get0_type(sk_OSSL_CMP_ITAV_value(in, i));
    return NULL;
}

static int count_refused(struct cmp_refusal *r)
{
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest, "a genm must ask for 1 to %d infoTypes; %s",
                      GW_MAX_GENM_ITAVS, TEXT_SUPPORTED);
}

/*
 * What a genm asks for, read from the message alone: at most GW_MAX_GENM_ITAVS infoTypes, each once, each
 * one the gateway answers. Checked before anything is looked up for it: the signer's revocation status
 * (the CA, Redis), a CRL another infoType would fetch. An empty genm passes here (answer_all refuses it).
 */
static int check_asked(const STACK_OF(OSSL_CMP_ITAV) *in, struct cmp_refusal *r)
{
    int n = sk_OSSL_CMP_ITAV_num(in);
    const ASN1_OBJECT *twice;
    char oid[80];

    if (n > GW_MAX_GENM_ITAVS)
        return count_refused(r);
    if ((twice = asked_twice(in)) != NULL) {
        if (OBJ_obj2txt(oid, sizeof(oid), twice, 1) <= 0)
            snprintf(oid, sizeof(oid), "?");
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "a genm must ask for each infoType once; %.60s was asked for twice", oid);
    }
    for (int i = 0; i < n; i++)
        if (handler_of(sk_OSSL_CMP_ITAV_value(in, i), oid, sizeof(oid)) < 0)
            return unsupported(oid, r);
    return 0;
}

static int answer_all(struct cmp_txn *t, struct cmp_call *c, const STACK_OF(OSSL_CMP_ITAV) *in,
                      STACK_OF(OSSL_CMP_ITAV) **out, struct cmp_refusal *r)
{
    int n = sk_OSSL_CMP_ITAV_num(in);
    size_t total = 0;

    /* after the request's checks: openssl cmp 3.0 sends -cmd genm without -infotype empty, and one trying
       its credentials so is told what is wrong with them */
    if (n <= 0)
        return count_refused(r);
    for (int i = 0; i < n; i++) {
        if (answer(t, c, sk_OSSL_CMP_ITAV_value(in, i), out, r) != 0)
            return 1;
        total += value_size(sk_OSSL_CMP_ITAV_value(*out, sk_OSSL_CMP_ITAV_num(*out) - 1));
    }
    if (total <= GW_MAX_GENP_VALUE)
        return 0;
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                      "the answer (%zu bytes) does not fit in a CMP response (at most %d KiB): ask for "
                      "one infoType per genm",
                      total, GW_MAX_RESPONSE / 1024);
}

int cmp_genm_cb(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const STACK_OF(OSSL_CMP_ITAV) *in,
                STACK_OF(OSSL_CMP_ITAV) **out)
{
    struct cmp_txn *t = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);
    struct cmp_call *c = t->call;
    STACK_OF(OSSL_CMP_ITAV) *res = NULL;
    struct cmp_refusal r = {0};

    (void)req;
    *out = NULL;
    cmp_identify(t, c); /* the access log names the signer of a genm refused for what it asks */
    if (check_asked(in, &r) != 0 || cmp_check_request(t, c, &r) != 0 || answer_all(t, c, in, &res, &r) != 0) {
        sk_OSSL_CMP_ITAV_pop_free(res, OSSL_CMP_ITAV_free);
        return cmp_fail(c, &r);
    }
    *out = res;
    cmp_set_outcome(c, "answered", NULL);
    return 1;
}
