/*
 * Step 2 of a request (docs/design.md O10.1): what is refused before OpenSSL sees the message. A
 * form no conforming client sends is refused as a failed signature; then the key an ir, cr or kur
 * asks for is bounded, the role chosen (a certProfile may choose it), a PBM reference checked.
 */
#include "gateway/cmp/precheck.h"
#include "gateway/cmp/auth.h"
#include "gateway/cmp/conf.h"
#include "gateway/cmp/outcome.h"
#include "gateway/cmp/policy.h"
#include "gateway/cmp/reasons.h"
#include "base/err.h"
#include "base/log.h"
#include "mappings/role.h"

#include <stdio.h>
#include <time.h>
#include <openssl/objects.h>

#define TEXT_ACCEPTS "this server accepts ir, cr, p10cr, kur, rr, genm, certConf, pollReq"
#define TEXT_HASH_ALG                                                                                        \
    "certConf hashAlg (CMP version 3, RFC 9810 §5.3.18) is not supported: send pvno 2 and no hashAlg, the " \
    "certHash made with the hash of the certificate's signature (SHA-512 for Ed25519)"
#define TEXT_CENTRAL_KEYGEN                                                                                  \
    "the certTemplate has no public key: central key generation (RFC 9483 §4.1.6) is not supported; "       \
    "generate the key pair and send its public key"

const enum cmp_body_action cmp_bodies[GW_CMP_BODY_MAX + 1] = {
    [GW_CMP_BODY_IR] = CMP_ACT_START,
    [GW_CMP_BODY_CR] = CMP_ACT_START,
    [GW_CMP_BODY_P10CR] = CMP_ACT_START,
    [GW_CMP_BODY_KUR] = CMP_ACT_START,
    [GW_CMP_BODY_CERTCONF] = CMP_ACT_CONTINUE,
    [GW_CMP_BODY_POLLREQ] = CMP_ACT_CONTINUE,
    [GW_CMP_BODY_ERROR] = CMP_ACT_ERROR,
    [GW_CMP_BODY_RR] = CMP_ACT_START,   /* RFC 9483 §4.2: answered at once, nothing parked */
    [GW_CMP_BODY_GENM] = CMP_ACT_START, /* RFC 9483 §4.3 */
};

/* An unknown or foreign PBM reference: a wrong secret's answer (TEXT_PBM_FAILED) and time; logged so, paced,
   for any peer names the reference it likes. */
int cmp_pbm_refused(struct cmp_call *c, const char *why, struct cmp_refusal *r)
{
    static struct gw_log_pace pace = GW_LOG_PACE_INIT;
    char held[GW_LOG_HELD_LEN];

    cmp_pbm_spend(c);
    if (gw_log_pace_due(&pace, time(NULL), held))
        gw_log_kv(GW_LOG_INFO, "pbm_refused", "tid", c->rsp->tid, "role", c->role->name, "reason", why,
                  "suppressed", held, NULL);
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck, "%s", TEXT_PBM_FAILED);
}

/*
 * PBM: the senderKID must name a credential of this role, the cost must be capped. A certConf,
 * pollReq or error message belongs to its transaction's role, which a certProfile may have chosen and
 * the message need not name again (RFC 9483 §3.1 puts it into requests): the transaction is pinned to
 * the reference its request was allowed with. One whose reference a reload deleted may still be its
 * open transaction's, protected with the secret it began with: its transaction decides
 * (check_signer), not this.
 */
int cmp_check_pbm(struct cmp_call *c, struct cmp_refusal *r)
{
    const struct gw_hdr_info *h = &c->hdr;
    const struct gw_pbm_conf *pbm =
        gw_pbm_conf_find(c->e->cfg.pbm, c->e->cfg.n_pbm, h->sender_kid, h->sender_kid_len);

    /* the cost before the reference (its algorithms were checked in precheck): no answer tells which exist */
    if ((uint32_t)h->pbm_iterations > c->e->cfg.cmp->pbm_max_iterations)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                          "PBM iterationCount %d is above this server's cap of %u", h->pbm_iterations,
                          c->e->cfg.cmp->pbm_max_iterations);
    if (cmp_bodies[c->body] != CMP_ACT_START) {
        c->pbm_gone = pbm == NULL;
        goto allowed;
    }
    if (pbm == NULL)
        return cmp_pbm_refused(c, "unknown PBM reference", r);
    if (!gw_role_accepts_pbm(c->role, h->sender_kid, h->sender_kid_len))
        return cmp_pbm_refused(c, "PBM reference not allowed on this role", r);
allowed:
    c->pbm = pbm;
    return 0;
}

/* OpenSSL verifies the proof of possession with the requested key: its cost must be bounded first. A
   template without one asks for central key generation, which OpenSSL would refuse as a failed POPO. */
static int check_requested_key(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r)
{
    int has_key = 0;
    EVP_PKEY *key = gw_shim_get1_requested_key(msg, c->req->der, c->req->len, &has_key);
    int ok = !has_key || key == NULL || cmp_key_affordable(key);

    EVP_PKEY_free(c->req_key);
    c->req_key = c->body != GW_CMP_BODY_P10CR ? key : NULL; /* the template's: the plan's too */
    if (c->req_key == NULL)
        EVP_PKEY_free(key);
    if (gw_shim_central_keygen(msg))
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "%s", TEXT_CENTRAL_KEYGEN);
    if (ok)
        return 0;
    return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "%s", TEXT_KEY_LIMITS);
}

/*
 * The role of this request: the path's, or the one its certProfile selects (RFC 9483 §3.1, the
 * configuration's "profiles"); a profile that does not fit is a badRequest.
 */
static int choose_role(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r)
{
    char name[GW_MAX_PROFILE_NAME_LEN + 1];
    const struct gw_role *role = NULL;
    int rc = gw_shim_cert_profile(msg, name, sizeof(name));

    if (rc == GW_ERR_LIMIT)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "generalInfo holds more than %d entries or a certProfile name longer than %d bytes",
                          GW_MAX_GENERAL_INFO, GW_MAX_PROFILE_NAME_LEN);
    if (rc != 0)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "the certProfile in generalInfo is malformed: send one id-it-certProfile holding a "
                          "SEQUENCE OF UTF8String (RFC 9483 §3.1)");
    r->fail_info = OSSL_CMP_PKIFAILUREINFO_badRequest;
    if (cmp_route_profile(c, name, &role, r->text) != 0)
        return 1;
    snprintf(c->profile, sizeof(c->profile), "%s", name);
    if (role != c->role)
        gw_log_kv(GW_LOG_DEBUG, "profile_role", "tid", c->rsp->tid, "profile", name, "role", role->name,
                  NULL);
    c->role = role;
    return 0;
}

/* Step 2: what is refused before OpenSSL sees the message. A form no conforming client sends counts against
   the address as a failed signature (and costs as much); what one may ask for (a key, a certProfile, central
   key generation) does not, or a fleet behind one address would pay for it. */
int cmp_precheck(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r)
{
    c->rsp->auth_failed = true;
    if (cmp_check_ids(c, r) != 0)
        return 1;
    if (c->body < 0 || c->body > GW_CMP_BODY_MAX || cmp_bodies[c->body] == CMP_ACT_REFUSE)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badRequest,
                          "PKIBody type %s is not a request; " TEXT_ACCEPTS, gw_shim_body_name(c->body));
    if (c->hdr.protection_oid[0] == '\0')
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                          "message is not protected: sign it with a certificate or protect it with a "
                          "PBM secret");
    if (cmp_check_protection_hash(c, r) != 0 ||
        (c->hdr.protection_nid == NID_id_PasswordBasedMAC && cmp_check_pbm_algs(c, r) != 0))
        return 1;
    c->rsp->auth_failed = false;
    /* what a CMP version 3 client sends, before its transaction is looked at: its protection does not verify
       without the hashAlg, so the refusal changes nothing there */
    if (c->hash_alg)
        return cmp_refuse(r, OSSL_CMP_PKIFAILUREINFO_unsupportedVersion, "%s", TEXT_HASH_ALG);
    if (check_requested_key(c, msg, r) != 0 || choose_role(c, msg, r) != 0)
        return 1;
    if (c->hdr.protection_nid == NID_id_PasswordBasedMAC)
        return cmp_check_pbm(c, r);
    return 0;
}
