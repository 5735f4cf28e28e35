/*
 * The configuration sections the CMP layer owns (gateway/cmp/conf.h): "signer", "trust", "pbm",
 * "cmp" and "audit", as tables for base/conf.h's reader with the checks that load what they name.
 */
#include "gateway/cmp/conf.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/pem.h"
#include "base/x509.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/x509v3.h>

static int check_signer(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_signer_conf *s = base;

    /* it protects CMP messages: OpenSSL 3.0's CMP must have an algorithm for it, PKCS#1 v1.5 for RSA */
    if (gw_pem_load_pair(pc, path, s->cert_file, s->key_file, s->key_passphrase_file, GW_PEM_KEY_CMP,
                         &s->cert, NULL, &s->key) != 0)
        return GW_ERR_INVAL;
    /* RFC 9483 §3.1: the protection key must be usable for signing */
    if ((X509_get_extension_flags(s->cert) & EXFLAG_KUSAGE) != 0 &&
        (X509_get_key_usage(s->cert) & KU_DIGITAL_SIGNATURE) == 0)
        gw_log(GW_LOG_WARN, "config",
               "%s: %s.cert: the signer certificate lacks the digitalSignature key usage", pc->name, path);
    return gw_pem_load_chain(pc, path, s->chain_file, &s->chain);
}

/* Warns about a CA of |cas| that issued no CRL in |crls|: with CRL_CHECK_ALL all it issued is refused. */
static void warn_missing_crls(struct gw_conf_ctx *pc, const char *path, STACK_OF(X509) *cas,
                              STACK_OF(X509_CRL) *crls)
{
    char name[GW_IDENTITY_LEN];
    int i, j, found;

    for (i = 0; i < sk_X509_num(cas); i++) {
        X509 *ca = sk_X509_value(cas, i);
        for (j = 0, found = 0; j < sk_X509_CRL_num(crls) && !found; j++)
            found = X509_NAME_cmp(X509_CRL_get_issuer(sk_X509_CRL_value(crls, j)),
                                  X509_get_subject_name(ca)) == 0;
        if (found)
            continue;
        X509_NAME_oneline(X509_get_subject_name(ca), name, sizeof(name));
        gw_log(GW_LOG_WARN, "config",
               "%s: %s: no CRL issued by \"%s\": every certificate it issued is refused", pc->name, path,
               name);
    }
}

/*
 * Loads |t->crl_file| into the trust store and turns CRL checking on for the whole chain
 * (RFC 5280 §6.3): a revoked client or intermediate certificate is refused.
 */
static int load_crls(struct gw_conf_ctx *pc, const char *path, struct gw_trust_conf *t,
                     STACK_OF(X509) *anchors)
{
    STACK_OF(X509_CRL) *crls = NULL;
    char shown[GW_ERR_LEN];
    int i, rc = GW_ERR_INVAL;

    if (gw_pem_load_crls(pc, path, t->crl_file, &crls) != 0)
        return GW_ERR_INVAL;
    gw_conf_show_file(t->crl_file, shown, sizeof(shown));
    for (i = 0; i < sk_X509_CRL_num(crls); i++) {
        X509_CRL *crl = sk_X509_CRL_value(crls, i);
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
        if (X509_STORE_add_crl(t->store, crl) != 1)
            goto out;
        if (next != NULL && X509_cmp_current_time(next) < 0)
            gw_log(GW_LOG_WARN, "config",
                   "%s: %s: a CRL in \"%s\" is past its nextUpdate: verification fails", pc->name, path,
                   shown);
    }
    warn_missing_crls(pc, path, anchors, crls);
    warn_missing_crls(pc, path, t->untrusted, crls);
    if (X509_STORE_set_flags(t->store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) != 1)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        gw_conf_fail(pc, path, "cannot add the CRLs of \"%s\" to the trust store", shown);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return rc;
}

static int check_trust(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_trust_conf *t = base;
    STACK_OF(X509) *anchors = NULL;
    char fpath[GW_CONF_PATH_LEN];
    int rc = GW_ERR_INVAL;

    gw_conf_join_key(fpath, path, "ca_file");
    if (gw_pem_load_anchors(pc, fpath, t->ca_file, &t->store, &anchors) != 0)
        goto out;
    gw_conf_join_key(fpath, path, "untrusted_file");
    if (t->untrusted_file != NULL && gw_pem_load_certs(pc, fpath, t->untrusted_file, &t->untrusted) != 0)
        goto out;
    /* each one is in the key of every chain validated on this trust (chains.c): its SHA-256 made once */
    for (int i = 0; i < sk_X509_num(t->untrusted); i++)
        (void)gw_x509_sha256_keep(sk_X509_value(t->untrusted, i));
    gw_conf_join_key(fpath, path, "crl_file");
    if (t->crl_file != NULL && load_crls(pc, fpath, t, anchors) != 0)
        goto out;
    if (t->revocation == GW_REVOCATION_UNSET && t->crl_file == NULL) {
        gw_conf_join_key(fpath, path, "revocation");
        gw_conf_fail(pc, fpath,
                     "say how revoked client certificates are recognised: a \"crl_file\", \"upstream\" (only "
                     "certificates of configured upstreams, checked there) or \"none\"");
        goto out;
    }
    /* the CAs whose directly signed certificates this entry's "revocation" speaks for */
    if (t->untrusted != NULL && X509_add_certs(anchors, t->untrusted, X509_ADD_FLAG_UP_REF) != 1)
        goto out;
    t->cas = anchors;
    anchors = NULL;
    rc = 0;
out:
    sk_X509_pop_free(anchors, X509_free);
    return rc;
}

static int check_pbm(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_pbm_conf *p = base;
    char fpath[GW_CONF_PATH_LEN];

    gw_conf_join_key(fpath, path, "secret_file");
    return gw_conf_read_secret_sized(pc, fpath, p->secret_file, GW_MIN_PBM_SECRET_LEN, GW_MAX_PBM_SECRET_LEN,
                                     &p->secret, &p->secret_len);
}

/*
 * "audit.file": appendable now, or creatable in its directory; `cmpgw check` creates nothing. lstat: a
 * link at the path is refused, as the start refuses to write through one (gw_audit_open). Whether the
 * file is appendable is asked only by its owner: anyone else could append only through the group or
 * others bits, which gw_audit_open refuses, and is not who writes it (root at a start, or the owner).
 */
static int check_audit(struct gw_conf_ctx *pc, const char *path, void *base)
{
    const struct gw_audit_conf *a = base;
    char fpath[GW_CONF_PATH_LEN], *dir, shown[GW_ERR_LEN];
    struct stat st;
    int rc = 0;

    gw_conf_join_key(fpath, path, "file");
    gw_conf_show_file(a->file, shown, sizeof(shown));
    if (lstat(a->file, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return gw_conf_fail(pc, fpath, "\"%s\" is not a regular file", shown);
        if (st.st_uid == getuid() && access(a->file, W_OK) != 0)
            return gw_conf_fail(pc, fpath, "\"%s\" is not writable: %s", shown, strerror(errno));
        return 0;
    }
    if (errno != ENOENT)
        return gw_conf_fail(pc, fpath, "cannot use \"%s\": %s", shown, strerror(errno));
    if ((dir = gw_conf_dir_of(a->file)) == NULL)
        return GW_ERR_NOMEM;
    if (access(dir, W_OK | X_OK) != 0)
        rc = gw_conf_fail(pc, fpath, "cannot create \"%s\": %s", shown, strerror(errno));
    free(dir);
    return rc;
}

static const struct gw_conf_field signer_fields[] = {
    GW_CONF_REQ("cert", gw_conf_p_file, struct gw_signer_conf, cert_file),
    GW_CONF_REQ("key", gw_conf_p_file, struct gw_signer_conf, key_file),
    GW_CONF_OPT("key_passphrase_file", gw_conf_p_file, struct gw_signer_conf, key_passphrase_file),
    GW_CONF_OPT("chain", gw_conf_p_file, struct gw_signer_conf, chain_file),
};

const struct gw_conf_obj gw_signer_conf_def = {
    signer_fields, sizeof(signer_fields) / sizeof(signer_fields[0]), check_signer};

static const struct gw_conf_enum revocation_names[] = {
    {"none", GW_REVOCATION_NONE, NULL}, {"upstream", GW_REVOCATION_UPSTREAM, NULL}, {NULL, 0, NULL}};

static const struct gw_conf_field trust_fields[] = {
    GW_CONF_REQ("ca_file", gw_conf_p_file, struct gw_trust_conf, ca_file),
    GW_CONF_OPT("untrusted_file", gw_conf_p_file, struct gw_trust_conf, untrusted_file),
    GW_CONF_OPT("crl_file", gw_conf_p_file, struct gw_trust_conf, crl_file),
    GW_CONF_OPT("revocation", gw_conf_p_enum, struct gw_trust_conf, revocation, .def = GW_REVOCATION_UNSET,
                .aux = revocation_names),
};

GW_CONF_OBJDEF(trust_def, trust_fields, check_trust);

static const struct gw_conf_field pbm_fields[] = {
    GW_CONF_REQ("secret_file", gw_conf_p_file, struct gw_pbm_conf, secret_file),
};

GW_CONF_OBJDEF(pbm_def, pbm_fields, check_pbm);

static const struct gw_conf_enum state_backends[] = {
    {"memory", GW_STATE_MEMORY, NULL},
    {"redis", GW_STATE_REDIS, NULL},
    {NULL, 0, NULL},
};

/* A key prefix: 1..64 printable characters without spaces (it starts every Redis key). */
static bool prefix_ok(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static const struct gw_conf_names names_prefix = {prefix_ok, "1..64 printable characters without spaces"};

static int check_state(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_state_conf *s = base;
    char kpath[GW_CONF_PATH_LEN];

    if (s->backend == GW_STATE_MEMORY) {
        if (s->address != NULL || s->password_file != NULL || s->username != NULL || s->mac_key_file != NULL)
            return gw_conf_fail(pc, path,
                                "\"address\", \"username\", \"password_file\" and \"mac_key_file\" are for "
                                "\"backend\": \"redis\"");
        return 0;
    }
    gw_conf_join_key(kpath, path, "address");
    if (s->address == NULL)
        return gw_conf_fail(pc, kpath, "missing: required with \"backend\": \"redis\"");
    if (s->key_prefix == NULL && (s->key_prefix = strdup("cmpgw:")) == NULL)
        return GW_ERR_NOMEM;
    gw_conf_join_key(kpath, path, "password_file");
    if (s->password_file != NULL &&
        gw_conf_read_secret_sized(pc, kpath, s->password_file, 1, GW_MAX_REDIS_PASSWORD, &s->password,
                                  &s->password_len) != 0)
        return GW_ERR_INVAL;
    gw_conf_join_key(kpath, path, "mac_key_file");
    if (s->mac_key_file != NULL)
        return gw_conf_read_secret_sized(pc, kpath, s->mac_key_file, GW_MIN_STATE_MAC_KEY,
                                         GW_MAX_STATE_MAC_KEY, &s->mac_key, &s->mac_key_len);
    return 0;
}

static const struct gw_conf_field state_fields[] = {
    GW_CONF_OPT("backend", gw_conf_p_enum, struct gw_state_conf, backend, .def = GW_STATE_MEMORY,
                .aux = state_backends),
    GW_CONF_OPT("address", gw_conf_p_address, struct gw_state_conf, address),
    GW_CONF_OPT("port", gw_conf_p_port, struct gw_state_conf, port, .min = 1, .max = 65535, .def = 6379),
    GW_CONF_OPT("username", gw_conf_p_name, struct gw_state_conf, username, .aux = &gw_conf_names_plain),
    GW_CONF_OPT("password_file", gw_conf_p_file, struct gw_state_conf, password_file),
    GW_CONF_OPT("mac_key_file", gw_conf_p_file, struct gw_state_conf, mac_key_file),
    GW_CONF_OPT("key_prefix", gw_conf_p_name, struct gw_state_conf, key_prefix, .aux = &names_prefix),
    GW_CONF_OPT("timeout", gw_conf_p_dur_ms, struct gw_state_conf, timeout_ms, .min = 1,
                .max = GW_MAX_REDIS_TIMEOUT_MS, .def = GW_DEFAULT_REDIS_TIMEOUT_MS),
};
GW_CONF_OBJDEF(state_def, state_fields, check_state);

static const struct gw_conf_field cmp_fields[] = {
    GW_CONF_OPT("message_time_window", gw_conf_p_dur_s, struct gw_cmp_conf, message_time_window, .min = 0,
                .max = GW_MAX_MSGTIME_WINDOW, .def = GW_DEFAULT_MSGTIME_WINDOW),
    GW_CONF_OPT("require_message_time", gw_conf_p_bool, struct gw_cmp_conf, require_message_time,
                .def = false),
    GW_CONF_OPT("transaction_ttl", gw_conf_p_dur_s, struct gw_cmp_conf, transaction_ttl, .min = 1,
                .max = GW_MAX_TXN_TTL, .def = GW_DEFAULT_TXN_TTL),
    GW_CONF_OPT("max_transactions", gw_conf_p_u32, struct gw_cmp_conf, max_transactions, .min = 1,
                .max = GW_MAX_TXNS, .def = GW_DEFAULT_MAX_TXNS),
    GW_CONF_OPT("max_transactions_per_identity", gw_conf_p_u32, struct gw_cmp_conf,
                max_transactions_per_identity, .min = 1, .max = GW_MAX_TXNS,
                .def = GW_DEFAULT_MAX_TXNS_PER_IDENTITY),
    GW_CONF_OPT("pbm_max_iterations", gw_conf_p_u32, struct gw_cmp_conf, pbm_max_iterations,
                .min = GW_MIN_PBM_ITER, .max = GW_MAX_PBM_ITER, .def = GW_DEFAULT_PBM_MAX_ITER),
    GW_CONF_OPT("max_recent_per_identity", gw_conf_p_u32, struct gw_cmp_conf, max_recent_per_identity,
                .min = 1, .max = GW_REPLAY_MAX_ENTRIES, .def = GW_DEFAULT_REPLAY_PER_IDENTITY),
    GW_CONF_OPT("max_revoked", gw_conf_p_u32, struct gw_cmp_conf, max_revoked, .min = 1,
                .max = GW_MAX_REVOKED, .def = GW_DEFAULT_MAX_REVOKED),
    GW_CONF_OPT("revocation_grace", gw_conf_p_dur_s, struct gw_cmp_conf, revocation_grace, .min = 0,
                .max = GW_MAX_REVOCATION_GRACE, .def = GW_DEFAULT_REVOCATION_GRACE),
    GW_CONF_OPT("revoked_file", gw_conf_p_file, struct gw_cmp_conf, revoked_file),
    GW_CONF_OPT("state", gw_conf_p_obj, struct gw_cmp_conf, state, .aux = &state_def),
};

void gw_cmp_conf_cleanup(struct gw_cmp_conf *c)
{
    struct gw_state_conf *s = &c->state;

    free(s->address);
    free(s->username);
    free(s->password_file);
    OPENSSL_clear_free(s->password, GW_MAX_REDIS_PASSWORD + 3);
    free(s->mac_key_file);
    OPENSSL_clear_free(s->mac_key, GW_MAX_STATE_MAC_KEY + 3);
    free(s->key_prefix);
    memset(s, 0, sizeof(*s));
    free(c->revoked_file);
    c->revoked_file = NULL;
}

const struct gw_conf_obj gw_cmp_conf_def = {cmp_fields, sizeof(cmp_fields) / sizeof(cmp_fields[0]), NULL};

/* Vault's audit_fields names (CMPv2 configuration). */
static const struct gw_conf_enum audit_field_names[] = {
    {"csr", GW_AUDIT_CSR, NULL},
    {"common_name", GW_AUDIT_COMMON_NAME, NULL},
    {"alt_names", GW_AUDIT_ALT_NAMES, NULL},
    {"ip_sans", GW_AUDIT_IP_SANS, NULL},
    {"uri_sans", GW_AUDIT_URI_SANS, NULL},
    {"other_sans", GW_AUDIT_OTHER_SANS, NULL},
    {"signature_bits", GW_AUDIT_SIGNATURE_BITS, NULL},
    {"exclude_cn_from_sans", GW_AUDIT_EXCLUDE_CN_FROM_SANS, NULL},
    {"ou", GW_AUDIT_OU, NULL},
    {"organization", GW_AUDIT_ORGANIZATION, NULL},
    {"country", GW_AUDIT_COUNTRY, NULL},
    {"locality", GW_AUDIT_LOCALITY, NULL},
    {"province", GW_AUDIT_PROVINCE, NULL},
    {"street_address", GW_AUDIT_STREET_ADDRESS, NULL},
    {"postal_code", GW_AUDIT_POSTAL_CODE, NULL},
    {"serial_number", GW_AUDIT_SERIAL_NUMBER, NULL},
    {"use_pss", GW_AUDIT_USE_PSS, NULL},
    {"key_type", GW_AUDIT_KEY_TYPE, NULL},
    {"key_bits", GW_AUDIT_KEY_BITS, NULL},
    {"add_basic_constraints", GW_AUDIT_ADD_BASIC_CONSTRAINTS, NULL},
    {NULL, 0, NULL},
};

#define AUDIT_DEFAULT_FIELDS                                                                                 \
    (GW_AUDIT_COMMON_NAME | GW_AUDIT_ALT_NAMES | GW_AUDIT_IP_SANS | GW_AUDIT_URI_SANS)

static const struct gw_conf_field audit_fields[] = {
    GW_CONF_REQ("file", gw_conf_p_file, struct gw_audit_conf, file),
    GW_CONF_OPT("audit_fields", gw_conf_p_flags, struct gw_audit_conf, fields, .def = AUDIT_DEFAULT_FIELDS,
                .aux = audit_field_names),
};

const struct gw_conf_obj gw_audit_conf_def = {audit_fields, sizeof(audit_fields) / sizeof(audit_fields[0]),
                                              check_audit};

const struct gw_conf_map gw_trust_conf_map = {sizeof(struct gw_trust_conf),
                                              offsetof(struct gw_trust_conf, name),
                                              &gw_conf_names_plain,
                                              gw_conf_p_obj,
                                              0,
                                              &trust_def};

const struct gw_conf_map gw_pbm_conf_map = {sizeof(struct gw_pbm_conf),
                                            offsetof(struct gw_pbm_conf, reference),
                                            &gw_conf_names_kid,
                                            gw_conf_p_obj,
                                            0,
                                            &pbm_def};

void gw_trust_conf_free(struct gw_trust_conf *trust, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(trust[i].name);
        free(trust[i].ca_file);
        free(trust[i].untrusted_file);
        free(trust[i].crl_file);
        sk_X509_pop_free(trust[i].cas, X509_free);
        X509_STORE_free(trust[i].store);
        sk_X509_pop_free(trust[i].untrusted, X509_free);
    }
    free(trust);
}

void gw_pbm_conf_free(struct gw_pbm_conf *pbm, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(pbm[i].reference);
        free(pbm[i].secret_file);
        OPENSSL_clear_free(pbm[i].secret, GW_MAX_PBM_SECRET_LEN + 3);
    }
    free(pbm);
}

void gw_signer_conf_cleanup(struct gw_signer_conf *s)
{
    free(s->cert_file);
    free(s->key_file);
    free(s->key_passphrase_file);
    free(s->chain_file);
    X509_free(s->cert);
    EVP_PKEY_free(s->key);
    sk_X509_pop_free(s->chain, X509_free);
}

const struct gw_trust_conf *gw_trust_conf_find(const struct gw_trust_conf *trust, size_t n, const char *name)
{
    for (size_t i = 0; name != NULL && i < n; i++)
        if (strcmp(trust[i].name, name) == 0)
            return &trust[i];
    return NULL;
}

const struct gw_pbm_conf *gw_pbm_conf_find(const struct gw_pbm_conf *pbm, size_t n, const unsigned char *ref,
                                           size_t len)
{
    for (size_t i = 0; ref != NULL && i < n; i++)
        if (strlen(pbm[i].reference) == len && memcmp(pbm[i].reference, ref, len) == 0)
            return &pbm[i];
    return NULL;
}
