/*
 * Vault / OpenBao PKI answers, parsed and range-checked (answers.h). What each field may hold follows
 * what Vault writes (Go's encoding/json of its response maps): integers as integers, booleans as
 * booleans, serial_number as colon hex, certificates as PEM text.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <json-c/json.h>
#include <openssl/cmp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "mappings/profile.h"
#include "upstream/answers.h"
#include "upstream/field.h"

#define NAME_LEN 64 /* a field name as a reason shows it: "data.ext_key_usage_oids[63]" */

const struct gw_vault_usage gw_vault_key_usages[] = {
    {"DigitalSignature", KU_DIGITAL_SIGNATURE},
    {"ContentCommitment", KU_NON_REPUDIATION},
    {"KeyEncipherment", KU_KEY_ENCIPHERMENT},
    {"DataEncipherment", KU_DATA_ENCIPHERMENT},
    {"KeyAgreement", KU_KEY_AGREEMENT},
    {"CertSign", KU_KEY_CERT_SIGN},
    {"CRLSign", KU_CRL_SIGN},
    {"EncipherOnly", KU_ENCIPHER_ONLY},
    {"DecipherOnly", KU_DECIPHER_ONLY},
};
const size_t gw_vault_n_key_usages = sizeof(gw_vault_key_usages) / sizeof(gw_vault_key_usages[0]);

const struct gw_vault_usage gw_vault_ext_key_usages[] = {
    {"ServerAuth", GW_EKU_SERVER_AUTH},     {"ClientAuth", GW_EKU_CLIENT_AUTH},
    {"CodeSigning", GW_EKU_CODE_SIGNING},   {"EmailProtection", GW_EKU_EMAIL_PROTECTION},
    {"TimeStamping", GW_EKU_TIME_STAMPING}, {"OCSPSigning", GW_EKU_OCSP_SIGNING},
};
const size_t gw_vault_n_ext_key_usages = sizeof(gw_vault_ext_key_usages) / sizeof(gw_vault_ext_key_usages[0]);

int gw_vault_parse_error(const char *body, size_t len, const char *secret, struct gw_vault_error *out,
                         char *err)
{
    json_object *root;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((root = gw_field_document(body, len, "not Vault JSON", err)) == NULL)
        return GW_ERR_UPSTREAM;
    gw_field_mask_strings(root, secret);
    rc =
        gw_field_messages(gw_field_member(root, "errors"), "errors", out->message, sizeof(out->message), err);
    if (rc != 0)
        out->message[0] = '\0';
    json_object_put(root);
    return rc;
}

bool gw_vault_no_entry(const char *body, size_t len)
{
    struct gw_vault_error e;
    char why[GW_ERR_LEN];

    return gw_vault_parse_error(body, len, NULL, &e, why) == 0 && e.message[0] == '\0';
}

/*
 * Vault's (and OpenBao's) own refusals, written by its HTTP layer or request handling before any engine
 * sees the call: the status and the one message, whole, or the words around the quoted request path a
 * 429 names (Go's %q of its logical path, never empty).
 */
static const struct own_refusal {
    long status;
    const char *text;  /* the whole message, or what it starts with when |after| is set */
    const char *after; /* NULL, or what it ends with after the request path */
} own_refusals[] = {
    {403, "permission denied", NULL},                            /* a token unknown: OpenBao */
    {403, "1 error occurred:\n\t* permission denied\n\n", NULL}, /* a policy that denies */
    {403, "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n", NULL}, /* unknown: Vault */
    {412, "required index state not present", NULL},           /* ErrMissingRequiredState (X-Vault-Index) */
    {429, "request path \"", "\": rate limit quota exceeded"}, /* rateLimitQuotaWrapping */
    {503, "Vault is sealed", NULL},                            /* consts.ErrSealed */
    {503, "no active Vault instance found", NULL}, /* a standby that knows no active node (respondStandby) */
    {503, "node is not active", NULL},             /* the same without HA */
};

/* Whether the message |m| of |n| bytes is |r|'s. */
static bool refusal_matches(const struct own_refusal *r, const char *m, size_t n)
{
    size_t head = strlen(r->text), tail = r->after != NULL ? strlen(r->after) : 0;

    if (r->after == NULL)
        return n == head && memcmp(m, r->text, head) == 0;
    return n > head + tail && memcmp(m, r->text, head) == 0 && memcmp(m + n - tail, r->after, tail) == 0;
}

bool gw_vault_own_refusal(long status, const char *body, size_t len)
{
    char why[GW_ERR_LEN];
    json_object *root = gw_field_document(body, len, "not Vault JSON", why);
    json_object *errors = gw_field_member(root, "errors"), *e;
    bool own = false;

    if (root != NULL && json_object_object_length(root) == 1 &&
        json_object_is_type(errors, json_type_array) && json_object_array_length(errors) == 1 &&
        json_object_is_type(e = json_object_array_get_idx(errors, 0), json_type_string)) {
        for (size_t i = 0; !own && i < sizeof(own_refusals) / sizeof(own_refusals[0]); i++)
            own = own_refusals[i].status == status &&
                  refusal_matches(&own_refusals[i], json_object_get_string(e),
                                  (size_t)json_object_get_string_len(e));
    }
    json_object_put(root);
    return own;
}

/* Visible ASCII only: the token goes into an X-Vault-Token header line as it is. */
static bool token_chars(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* A string of a parsed answer that is a secret: its bytes are the tree's own, wiped before it is freed. */
static void wipe_string(json_object *o)
{
    if (o != NULL && json_object_is_type(o, json_type_string))
        OPENSSL_cleanse((char *)json_object_get_string(o), (size_t)json_object_get_string_len(o));
}

int gw_vault_parse_login(const char *body, size_t len, struct gw_vault_login *out, char *err)
{
    json_object *root, *auth, *m;
    const char *tok = NULL;
    size_t n = 0;
    int64_t lease = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((root = gw_field_document(body, len, "not Vault JSON", err)) == NULL)
        return GW_ERR_UPSTREAM;
    auth = gw_field_member(root, "auth");
    if ((rc = gw_field_object(auth, "auth", err)) != 0 ||
        (rc = gw_field_string(gw_field_member(auth, "client_token"), "auth.client_token", 1,
                              GW_MAX_VAULT_TOKEN_LEN, &tok, &n, err)) != 0)
        goto out;
    if (!token_chars(tok, n)) {
        rc = gw_field_fail(err, "auth.client_token holds a character that is not visible ASCII");
        goto out;
    }
    /* Vault always states the lease; 0 is a token without expiry (root, or a period of none) */
    if ((rc = gw_field_int(gw_field_member(auth, "lease_duration"), "auth.lease_duration", 0, 0,
                           GW_MAX_VAULT_LEASE, &lease, err)) != 0)
        goto out;
    if ((m = gw_field_member(auth, "renewable")) != NULL &&
        (rc = gw_field_bool(m, "auth.renewable", &out->renewable, err)) != 0)
        goto out;
    memcpy(out->client_token, tok, n);
    out->client_token[n] = '\0';
    out->lease_duration = (uint32_t)lease;
out:
    wipe_string(gw_field_member(auth, "client_token"));
    json_object_put(root);
    if (rc != 0)
        gw_vault_login_cleanup(out);
    return rc;
}

void gw_vault_login_cleanup(struct gw_vault_login *l)
{
    if (l != NULL)
        OPENSSL_cleanse(l, sizeof(*l));
}

/* serial_number: colon hex of at most GW_MAX_SERIAL_OCTETS octets; it is logged beside the certificate's. */
static int read_serial(json_object *data, char *out, char *err)
{
    json_object *m = gw_field_member(data, "serial_number");
    const char *s;
    size_t n;
    int rc;

    if (m == NULL)
        return 0;
    if ((rc = gw_field_string(m, "data.serial_number", 1, GW_VAULT_SERIAL_LEN - 1, &s, &n, err)) != 0)
        return rc;
    if (strspn(s, "0123456789abcdefABCDEF:") != n)
        return gw_field_fail(err, "data.serial_number holds a character other than hex digits and ':'");
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* The chain: ca_chain (each entry PEM, issuer first), else issuing_ca; both are checked when present. */
static int read_chain(json_object *data, STACK_OF(X509) **out, char *err)
{
    STACK_OF(X509) *chain = sk_X509_new_null(), *issuing = sk_X509_new_null();
    json_object *a = gw_field_member(data, "ca_chain"), *m = gw_field_member(data, "issuing_ca");
    char name[NAME_LEN];
    size_t i, n = 0;
    int rc = GW_ERR_NOMEM;

    if (chain == NULL || issuing == NULL)
        goto out;
    if (a != NULL && (rc = gw_field_array(a, "data.ca_chain", GW_MAX_UPSTREAM_CHAIN, &n, err)) != 0)
        goto out;
    for (i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "data.ca_chain[%zu]", i);
        if ((rc = gw_field_certs(json_object_array_get_idx(a, i), name, chain, GW_MAX_UPSTREAM_CHAIN, 1, NULL,
                                 err)) != 0)
            goto out;
    }
    if (m != NULL &&
        (rc = gw_field_certs(m, "data.issuing_ca", issuing, GW_MAX_UPSTREAM_CHAIN, 1, NULL, err)) != 0)
        goto out;
    rc = 0;
    if (sk_X509_num(chain) == 0) {
        sk_X509_free(chain);
        chain = issuing;
        issuing = NULL;
    }
    if (sk_X509_num(chain) == 0) {
        sk_X509_free(chain);
        chain = NULL;
    }
    *out = chain;
    chain = NULL;
out:
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(issuing, X509_free);
    return rc;
}

/*
 * The certificate of a sign answer refused for bytes after its JSON document (NULL if it has none):
 * read with the same checks as from a whole answer, only to be recorded and withdrawn (docs/design.md
 * D8). An answer that is not one complete JSON object gives none: what it holds is not Vault's.
 */
static X509 *leading_cert(const char *body, size_t len)
{
    json_object *lead = NULL;
    char why[GW_ERR_LEN];
    X509 *cert;

    json_object_put(gw_field_parse_leading(body, len, &lead, why)); /* NULL: the strict parse failed */
    cert = lead != NULL ? gw_field_issued_cert(lead, "data", "certificate") : NULL;
    json_object_put(lead);
    return cert;
}

X509 *gw_vault_answer_cert(const char *body, size_t len)
{
    char why[GW_ERR_LEN];
    json_object *root = gw_field_parse_object(body, len, why);
    X509 *cert;

    if (root == NULL)
        return leading_cert(body, len);
    cert = gw_field_issued_cert(root, "data", "certificate");
    json_object_put(root);
    return cert;
}

int gw_vault_parse_sign(const char *body, size_t len, const char *secret, struct gw_vault_signed *out,
                        char *err)
{
    json_object *root, *data, *m;
    STACK_OF(X509) *one = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((root = gw_field_document(body, len, "not Vault JSON", err)) == NULL) {
        out->cert = leading_cert(body, len); /* refused all the same: GW_ERR_UPSTREAM */
        return GW_ERR_UPSTREAM;
    }
    gw_field_mask_strings(root, secret);
    if ((rc = gw_field_messages(gw_field_member(root, "warnings"), "warnings", out->warnings,
                                sizeof(out->warnings), err)) != 0) {
        out->cert = gw_field_issued_cert(root, "data", "certificate"); /* issued all the same */
        goto out;
    }
    if ((data = gw_field_member(root, "data")) == NULL) {
        gw_field_reason(err, GW_MAX_VAULT_WARNINGS,
                        out->warnings[0] != '\0' ? out->warnings : "the answer has no data", "",
                        "Vault issued no certificate: ");
        rc = GW_ERR_NOT_FOUND;
        goto out;
    }
    if ((rc = gw_field_object(data, "data", err)) != 0)
        goto out;
    if ((one = sk_X509_new_null()) == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    rc = gw_field_certs(gw_field_member(data, "certificate"), "data.certificate", one, 1, 0, NULL, err);
    out->cert = sk_X509_shift(one); /* the first even when more follow: issued, the answer refused */
    if (rc != 0)
        goto out;
    if ((rc = read_chain(data, &out->chain, err)) != 0 ||
        (rc = read_serial(data, out->serial_number, err)) != 0)
        goto out;
    if ((m = gw_field_member(data, "expiration")) != NULL &&
        (rc = gw_field_int(m, "data.expiration", 0, 1, GW_MAX_UPSTREAM_TIME, &out->expiration, err)) != 0)
        goto out;
out:
    sk_X509_pop_free(one, X509_free);
    json_object_put(root);
    if (rc != 0) { /* the certificate stays: Vault issued it, whatever else the answer says */
        X509 *cert = out->cert;

        out->cert = NULL;
        gw_vault_signed_cleanup(out);
        out->cert = cert;
    }
    return rc;
}

void gw_vault_signed_cleanup(struct gw_vault_signed *s)
{
    if (s == NULL)
        return;
    X509_free(s->cert);
    sk_X509_pop_free(s->chain, X509_free);
    memset(s, 0, sizeof(*s));
}

int gw_vault_parse_revoke(const char *body, size_t len, const char *secret, struct gw_vault_revoked *out,
                          char *err)
{
    json_object *root, *data, *m;
    const char *s = NULL;
    size_t n = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((root = gw_field_document(body, len, "not Vault JSON", err)) == NULL)
        return GW_ERR_UPSTREAM;
    gw_field_mask_strings(root, secret);
    if ((rc = gw_field_messages(gw_field_member(root, "warnings"), "warnings", out->warnings,
                                sizeof(out->warnings), err)) != 0)
        goto out;
    if ((data = gw_field_member(root, "data")) == NULL)
        goto out;
    if ((rc = gw_field_object(data, "data", err)) != 0)
        goto out;
    out->has_data = true;
    if ((m = gw_field_member(data, "revocation_time")) != NULL &&
        (rc = gw_field_int(m, "data.revocation_time", 0, 0, GW_MAX_UPSTREAM_TIME, &out->revocation_time,
                           err)) != 0)
        goto out;
    if ((m = gw_field_member(data, "state")) != NULL &&
        (rc = gw_field_string(m, "data.state", 0, sizeof(out->state) - 1, &s, &n, err)) != 0)
        goto out;
    if (m != NULL)
        gw_field_text(out->state, sizeof(out->state), s, n);
    /* a "success" that names no revocation (no time, or another state) is not taken for one */
    out->revoked = out->revocation_time > 0 && (m == NULL || strcmp(out->state, "revoked") == 0);
out:
    json_object_put(root);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* GET cert/<serial>; the certificate too into *cert when |cert| is not NULL. */
static int parse_cert(const char *body, size_t len, struct gw_vault_cert *out, X509 **cert, char *err)
{
    json_object *root, *data;
    STACK_OF(X509) *one = NULL;
    const char *pem;
    int rc;

    memset(out, 0, sizeof(*out));
    if (cert != NULL)
        *cert = NULL;
    if ((root = gw_field_document(body, len, "not Vault JSON", err)) == NULL)
        return GW_ERR_UPSTREAM;
    data = gw_field_member(root, "data");
    /* revocation_time is always there (0 until revoked): a missing one is not read as "not revoked" */
    if ((rc = gw_field_object(data, "data", err)) != 0 ||
        (rc = gw_field_string(gw_field_member(data, "certificate"), "data.certificate", 1,
                              GW_MAX_UPSTREAM_PEM, &pem, NULL, err)) != 0 ||
        (rc = gw_field_int(gw_field_member(data, "revocation_time"), "data.revocation_time", 0, 0,
                           GW_MAX_UPSTREAM_TIME, &out->revocation_time, err)) != 0)
        goto out;
    if (cert == NULL)
        goto out;
    if ((one = sk_X509_new_null()) == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    if ((rc = gw_field_certs(gw_field_member(data, "certificate"), "data.certificate", one, 1, 0, NULL,
                             err)) == 0)
        *cert = sk_X509_shift(one);
out:
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    sk_X509_pop_free(one, X509_free);
    json_object_put(root);
    return rc;
}

int gw_vault_parse_cert(const char *body, size_t len, struct gw_vault_cert *out, char *err)
{
    return parse_cert(body, len, out, NULL, err);
}

int gw_vault_parse_cert_x509(const char *body, size_t len, struct gw_vault_cert *out, X509 **cert, char *err)
{
    struct gw_vault_cert c;

    return parse_cert(body, len, out != NULL ? out : &c, cert, err);
}

/* ---- roles/<name> ---- */

/*
 * The names of role field |key|, a list of strings or, as older Vaults answer, one comma-separated
 * string, each 1 to |max_len| bytes: the first |cap| into |names| and |lens| (borrowed from |data|),
 * their number into |*n|, which may be more than |cap|.
 */
static int field_names(json_object *data, const char *key, size_t max_len, const char **names, size_t *lens,
                       size_t cap, size_t *n, char *err)
{
    json_object *m = gw_field_member(data, key);
    const char *p, *s, *end, *last;
    char name[NAME_LEN];
    size_t i, len, count = 0;
    int rc;

    *n = 0;
    if (m == NULL)
        return 0;
    if (json_object_is_type(m, json_type_array)) {
        count = json_object_array_length(m);
        for (i = 0; i < count; i++) {
            snprintf(name, sizeof(name), "data.%s[%zu]", key, i);
            if ((rc = gw_field_string(json_object_array_get_idx(m, i), name, 1, max_len, &p, &len, err)) != 0)
                return rc;
            if (i < cap) {
                names[i] = p;
                lens[i] = len;
            }
        }
        *n = count;
        return 0;
    }
    snprintf(name, sizeof(name), "data.%s", key);
    if (!json_object_is_type(m, json_type_string))
        return gw_field_fail(err, "%s is neither a list nor a string", name);
    if ((rc = gw_field_string(m, name, 0, GW_MAX_UPSTREAM_BODY, &s, &len, err)) != 0)
        return rc;
    for (p = s; *p != '\0'; p = *end != '\0' ? end + 1 : end) {
        end = p + strcspn(p, ",");
        for (last = end; last > p && last[-1] == ' '; last--)
            ;
        while (p < last && *p == ' ')
            p++;
        if (last == p) /* "a,,b": Vault drops empty names */
            continue;
        if ((size_t)(last - p) > max_len)
            return gw_field_fail(err, "%s[%zu] is %zu bytes, more than %zu", name, count, (size_t)(last - p),
                                 max_len);
        if (count < cap) {
            names[count] = p;
            lens[count] = (size_t)(last - p);
        }
        count++;
    }
    *n = count;
    return 0;
}

static unsigned name_bit(const char *s, size_t len, const struct gw_vault_usage *table, size_t n)
{
    size_t j;

    for (j = 0; j < n; j++)
        if (strlen(table[j].name) == len && strncasecmp(s, table[j].name, len) == 0)
            return table[j].bit;
    return 0;
}

static void other_eku(struct gw_role_policy *out, const char *s, size_t len)
{
    if (out->other_eku[0] == '\0')
        snprintf(out->other_eku, sizeof(out->other_eku), "%.*s", (int)len, s);
}

/* A list longer than is read may grant anything: it stands as a purpose no role can allow. */
static void too_many(struct gw_role_policy *out, const char *key)
{
    char what[GW_MAX_OID_TEXT + 1];

    snprintf(what, sizeof(what), "%s beyond %d entries", key, GW_MAX_ROLE_USAGES);
    other_eku(out, what, strlen(what));
}

static int flag(json_object *data, const char *key, bool dflt, bool *out, char *err)
{
    json_object *m = gw_field_member(data, key);
    char name[NAME_LEN];

    *out = dflt;
    if (m == NULL)
        return 0;
    snprintf(name, sizeof(name), "data.%s", key);
    return gw_field_bool(m, name, out, err);
}

/*
 * What the role puts into every certificate it signs, whatever the CSR asks (Vault's parseKeyUsages
 * and parseExtKeyUsages): key_usage; ext_key_usage, the four *_flag switches and ext_key_usage_oids.
 */
static int parse_grants(json_object *data, struct gw_role_policy *out, char *err)
{
    const char *names[GW_MAX_ROLE_USAGES];
    size_t lens[GW_MAX_ROLE_USAGES], n, i;
    bool server, client, code, email;
    ASN1_OBJECT *obj;
    unsigned bit;
    int rc;

    if (gw_field_member(data, "key_usage") == NULL)
        out->key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | KU_KEY_ENCIPHERMENT;
    if ((rc = field_names(data, "key_usage", GW_MAX_OID_TEXT, names, lens, GW_MAX_ROLE_USAGES, &n, err)) != 0)
        return rc;
    /* more names than read: whatever the rest say, take them as every usage there is */
    if (n > GW_MAX_ROLE_USAGES)
        for (int b = 0; gw_ku_from_bit(b) != 0; b++)
            out->key_usage |= gw_ku_from_bit(b);
    for (i = 0; i < n && i < GW_MAX_ROLE_USAGES; i++) /* Vault ignores names it does not know */
        out->key_usage |= name_bit(names[i], lens[i], gw_vault_key_usages, gw_vault_n_key_usages);
    if ((rc = field_names(data, "ext_key_usage", GW_MAX_OID_TEXT, names, lens, GW_MAX_ROLE_USAGES, &n,
                          err)) != 0)
        return rc;
    if (n > GW_MAX_ROLE_USAGES)
        too_many(out, "ext_key_usage");
    for (i = 0; i < n && i < GW_MAX_ROLE_USAGES; i++) {
        if ((bit = name_bit(names[i], lens[i], gw_vault_ext_key_usages, gw_vault_n_ext_key_usages)) == 0)
            other_eku(out, names[i], lens[i]); /* "Any", the IPsec and Microsoft purposes */
        out->ext_key_usage |= bit;
    }
    if ((rc = flag(data, "server_flag", true, &server, err)) != 0 ||
        (rc = flag(data, "client_flag", true, &client, err)) != 0 ||
        (rc = flag(data, "code_signing_flag", false, &code, err)) != 0 ||
        (rc = flag(data, "email_protection_flag", false, &email, err)) != 0)
        return rc;
    out->ext_key_usage |= (server ? GW_EKU_SERVER_AUTH : 0) | (client ? GW_EKU_CLIENT_AUTH : 0) |
                          (code ? GW_EKU_CODE_SIGNING : 0) | (email ? GW_EKU_EMAIL_PROTECTION : 0);
    if ((rc = field_names(data, "ext_key_usage_oids", GW_MAX_OID_TEXT, names, lens, GW_MAX_ROLE_USAGES, &n,
                          err)) != 0)
        return rc;
    if (n > GW_MAX_ROLE_USAGES)
        too_many(out, "ext_key_usage_oids");
    for (i = 0; i < n && i < GW_MAX_ROLE_USAGES; i++) {
        char oid[GW_MAX_OID_TEXT + 1];

        snprintf(oid, sizeof(oid), "%.*s", (int)lens[i], names[i]);
        obj = OBJ_txt2obj(oid, 1);
        if ((bit = obj != NULL ? gw_eku_from_nid(OBJ_obj2nid(obj)) : 0) == 0)
            other_eku(out, names[i], lens[i]);
        out->ext_key_usage |= bit;
        ASN1_OBJECT_free(obj);
        ERR_clear_error();
    }
    return 0;
}

/* The patterns of role field |key| (allowed_domains, allowed_uri_sans) into |out|. */
static int parse_patterns(json_object *data, const char *key, struct gw_patterns *out, char *err)
{
    const char *names[GW_MAX_PATTERNS];
    size_t lens[GW_MAX_PATTERNS], n, i;
    int rc;

    if ((rc = field_names(data, key, GW_MAX_PATTERN_LEN, names, lens, GW_MAX_PATTERNS, &n, err)) != 0)
        return rc;
    if (n > GW_MAX_PATTERNS)
        return gw_field_fail(err, "data.%s has %zu entries, more than %d", key, n, GW_MAX_PATTERNS);
    if (n == 0)
        return 0;
    if ((out->v = calloc(n, sizeof(*out->v))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        if ((out->v[i] = strndup(names[i], lens[i])) == NULL)
            return GW_ERR_NOMEM;
        out->n++;
    }
    return 0;
}

static int parse_key(json_object *data, struct gw_role_policy *out, char *err)
{
    json_object *m;
    const char *kt = "rsa"; /* Vault's default */
    size_t n = 3;
    int64_t bits = 0;
    int rc;

    if ((m = gw_field_member(data, "key_type")) != NULL &&
        (rc = gw_field_string(m, "data.key_type", 1, GW_MAX_KEY_TYPE_LEN, &kt, &n, err)) != 0)
        return rc;
    if (strspn(kt, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
        return gw_field_fail(err, "data.key_type holds a character other than a-z, 0-9 and '-'");
    memcpy(out->key_type, kt, n);
    out->key_type[n] = '\0';
    if ((m = gw_field_member(data, "key_bits")) != NULL &&
        (rc = gw_field_int(m, "data.key_bits", 0, 0, GW_MAX_RSA_BITS, &bits, err)) != 0)
        return rc;
    out->key_bits = (int)bits;
    return 0;
}

/* Vault's cn_validations; a name it does not know is refused (Vault itself refuses to store one). */
static int parse_cn_validations(json_object *data, struct gw_role_policy *out, char *err)
{
    static const struct gw_vault_usage kinds[] = {
        {"email", GW_CN_EMAIL}, {"hostname", GW_CN_HOSTNAME}, {"disabled", GW_CN_DISABLED}};
    const char *names[4];
    size_t lens[4], n, i;
    unsigned bit;
    int rc;

    if ((rc = field_names(data, "cn_validations", GW_MAX_KEY_TYPE_LEN, names, lens, 4, &n, err)) != 0)
        return rc;
    if (n > 3)
        return gw_field_fail(err, "data.cn_validations has %zu entries, more than 3", n);
    for (i = 0; i < n; i++) {
        if ((bit = name_bit(names[i], lens[i], kinds, 3)) == 0)
            return gw_field_fail(err, "data.cn_validations[%zu] is not email, hostname or disabled", i);
        out->cn_validations |= bit;
    }
    if ((out->cn_validations & GW_CN_DISABLED) != 0 && out->cn_validations != GW_CN_DISABLED)
        return gw_field_fail(err, "data.cn_validations has disabled with another entry");
    return 0;
}

/*
 * What the role writes into a certificate's subject and takes from the request's (Vault's
 * generateCreationBundle). Absent switches are Vault's defaults; absent lists are empty.
 */
static int parse_subject(json_object *data, struct gw_role_policy *out, char *err)
{
    json_object *m;
    const char *src;
    size_t n;
    bool csr_cn, require_cn;
    int rc;

    for (size_t a = 0; a < GW_UPSTREAM_SUBJECT_ATTRS; a++) {
        if ((rc = parse_patterns(data, gw_upstream_subject_attrs[a].key, &out->subject_values[a], err)) != 0)
            return rc;
    }
    if ((rc = parse_patterns(data, "allowed_serial_numbers", &out->allowed_serial_numbers, err)) != 0 ||
        (rc = parse_patterns(data, "allowed_user_ids", &out->allowed_user_ids, err)) != 0 ||
        (rc = flag(data, "use_csr_common_name", true, &csr_cn, err)) != 0 ||
        (rc = flag(data, "require_cn", true, &require_cn, err)) != 0 ||
        (rc = parse_cn_validations(data, out, err)) != 0)
        return rc;
    out->no_csr_common_name = !csr_cn;
    out->cn_optional = !require_cn;
    /* Vault 1.x only; "" is the default, "json-csr" */
    if ((m = gw_field_member(data, "serial_number_source")) == NULL)
        return 0;
    if ((rc = gw_field_string(m, "data.serial_number_source", 0, GW_MAX_KEY_TYPE_LEN, &src, &n, err)) != 0)
        return rc;
    if (n != 0 && strcmp(src, "json-csr") != 0 && strcmp(src, "json") != 0)
        return gw_field_fail(err, "data.serial_number_source is neither json-csr nor json");
    out->serial_from_json = strcmp(src, "json") == 0;
    return 0;
}

/*
 * issuer_ref: the issuer sign/<role> and sign-verbatim/<role> use (Vault 1.11 on), to be put into a
 * path: a plain name or "" ("default" and an absent one are the mount's default issuer).
 */
static int parse_issuer_ref(json_object *data, struct gw_role_policy *out, char *err)
{
    json_object *m = gw_field_member(data, "issuer_ref");
    const char *ref;
    size_t n;
    int rc;

    if (m == NULL)
        return 0;
    if ((rc = gw_field_string(m, "data.issuer_ref", 0, GW_MAX_ISSUER_REF_LEN, &ref, &n, err)) != 0)
        return rc;
    if (n == 0 || strcmp(ref, "default") == 0)
        return 0;
    if (!gw_conf_segment_ok(ref, n))
        return gw_field_fail(err, "data.issuer_ref is not a plain name");
    memcpy(out->issuer_ref, ref, n + 1);
    return 0;
}

/*
 * not_after: the notAfter Vault writes in place of a ttl, in the form Vault's documentation gives
 * (YYYY-MM-DDTHH:MM:SSZ, UTC); "" is none. libc reads it, and it must read back the same: a form
 * strptime is lenient with (a field without its leading zero, an offset, a fraction) is refused.
 */
static int parse_not_after(json_object *data, struct gw_role_policy *out, char *err)
{
    json_object *m = gw_field_member(data, "not_after");
    char back[sizeof("YYYY-MM-DDTHH:MM:SSZ")];
    struct tm tm = {0};
    const char *s, *end;
    size_t n;
    time_t t;
    int rc;

    if (m == NULL)
        return 0;
    if ((rc = gw_field_string(m, "data.not_after", 0, sizeof(back) - 1, &s, &n, err)) != 0)
        return rc;
    if (n == 0)
        return 0;
    if ((end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) == NULL || *end != '\0' || (t = timegm(&tm)) <= 0 ||
        t > GW_MAX_UPSTREAM_TIME || strftime(back, sizeof(back), "%Y-%m-%dT%H:%M:%SZ", &tm) != n ||
        memcmp(back, s, n) != 0)
        return gw_field_fail(err, "data.not_after is not a time in Vault's form YYYY-MM-DDTHH:MM:SSZ");
    out->not_after = t;
    return 0;
}

int gw_vault_parse_role(const char *body, size_t len, const char *secret, struct gw_role_policy *out,
                        char *err)
{
    json_object *root, *data, *m;
    int64_t max_ttl = 0;
    bool wildcards;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((root = gw_field_document(body, len, "not Vault JSON", err)) == NULL)
        return GW_ERR_UPSTREAM;
    gw_field_mask_strings(root, secret); /* its names reach the reasons of the policy's checks */
    data = gw_field_member(root, "data");
    if ((rc = gw_field_object(data, "data", err)) != 0 ||
        (rc = parse_patterns(data, "allowed_domains", &out->allowed_domains, err)) != 0 ||
        (rc = parse_patterns(data, "allowed_uri_sans", &out->allowed_uri_sans, err)) != 0)
        goto out;
    if ((rc = flag(data, "allow_any_name", false, &out->allow_any_name, err)) != 0 ||
        (rc = flag(data, "allow_subdomains", false, &out->allow_subdomains, err)) != 0 ||
        (rc = flag(data, "allow_bare_domains", false, &out->allow_bare_domains, err)) != 0 ||
        (rc = flag(data, "allow_glob_domains", false, &out->allow_glob_domains, err)) != 0 ||
        (rc = flag(data, "allow_localhost", false, &out->allow_localhost, err)) != 0 ||
        (rc = flag(data, "allow_ip_sans", false, &out->allow_ip_sans, err)) != 0 ||
        (rc = flag(data, "enforce_hostnames", false, &out->enforce_hostnames, err)) != 0 ||
        (rc = flag(data, "allowed_uri_sans_template", false, &out->allowed_uri_sans_template, err)) != 0 ||
        (rc = flag(data, "allowed_domains_template", false, &out->allowed_domains_template, err)) != 0 ||
        (rc = flag(data, "allow_wildcard_certificates", true, &wildcards, err)) != 0)
        goto out;
    out->no_wildcards = !wildcards;
    if ((rc = parse_key(data, out, err)) != 0)
        goto out;
    /* seconds; older Vaults wrote a number as a string of digits, which vault.c always took */
    if ((m = gw_field_member(data, "max_ttl")) != NULL &&
        (rc = gw_field_int(m, "data.max_ttl", GW_FIELD_DIGITS, 0, GW_MAX_CERT_TTL, &max_ttl, err)) != 0)
        goto out;
    out->max_ttl = (uint32_t)max_ttl;
    if ((rc = parse_not_after(data, out, err)) == 0 && (rc = parse_subject(data, out, err)) == 0 &&
        (rc = parse_grants(data, out, err)) == 0)
        rc = parse_issuer_ref(data, out, err);
out:
    json_object_put(root);
    if (rc != 0)
        gw_role_policy_cleanup(out);
    return rc;
}

/*
 * A reason's tail (gw_vault_map_error): " (HTTP <status>)", the longest a long prints, then one of the
 * suffixes below, in the bytes a reason leaves beside its prefix and the longest quote of Vault's message.
 */
#define TAIL_LEN (GW_ERR_LEN - GW_MAX_VAULT_QUOTE - 2)
#define TAIL_HTTP_LONGEST " (HTTP -9223372036854775808)"
#define TAIL_FITS(suffix) (sizeof(TAIL_HTTP_LONGEST) - 1 + sizeof(suffix) <= TAIL_LEN)
#define SUFFIX_TOKEN "; the gateway's token or policy is wrong: an operator must fix it"
#define SUFFIX_CONFIG "; the gateway's configuration names a role or mount Vault does not have"
#define SUFFIX_RETRY "; retry later"
_Static_assert(sizeof(long) <= 8, "TAIL_HTTP_LONGEST is the longest a long prints");
_Static_assert(TAIL_FITS(SUFFIX_TOKEN) && TAIL_FITS(SUFFIX_CONFIG) && TAIL_FITS(SUFFIX_RETRY),
               "every suffix of vault_errors fits a reason's tail");

/* Vault's error statuses as CMP failInfo (docs/design.md U1.1). */
static const struct {
    long lo, hi;
    int status;
    int fail_info;
    const char *prefix, *suffix;
} vault_errors[] = {
    {400, 400, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "Vault refused", ""},
    {403, 403, GW_ERR_FORBIDDEN, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault denied the gateway",
     SUFFIX_TOKEN},
    {404, 404, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault role or mount not found",
     SUFFIX_CONFIG},
    {412, 412, GW_ERR_BUSY, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault is busy", SUFFIX_RETRY},
    {429, 429, GW_ERR_BUSY, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault is busy", SUFFIX_RETRY},
    {503, 503, GW_ERR_BUSY, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "Vault is unavailable", SUFFIX_RETRY},
    {500, 599, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "Vault failed", ""},
    {0, 999, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "Vault answered unexpectedly", ""},
};

void gw_vault_map_error(long http_status, const char *body, size_t len, const char *secret, int *status,
                        int *fail_info, char *reason)
{
    struct gw_vault_error e;
    /* tail: " (HTTP <long>)" and a suffix (TAIL_FITS), sized to fit a reason beside its prefix and the
       longest quote, so that only the quote gives way (the compiler checks its snprintf, -Wformat-truncation)
     */
    char msg[GW_ERR_LEN], tail[TAIL_LEN];
    long st = http_status;
    size_t i;

    /* an error answer that is not Vault's is still the status's error: the reason says what is wrong */
    if (gw_vault_parse_error(body, len, secret, &e, msg) == 0)
        snprintf(msg, sizeof(msg), "%s", e.message[0] != '\0' ? e.message : "no error message");
    if (strstr(msg, "Vault is sealed") != NULL)
        st = 503;
    for (i = 0; i < sizeof(vault_errors) / sizeof(vault_errors[0]); i++) {
        if (st >= vault_errors[i].lo && st <= vault_errors[i].hi)
            break;
    }
    if (i == sizeof(vault_errors) / sizeof(vault_errors[0]))
        i--;
    *status = vault_errors[i].status;
    *fail_info = vault_errors[i].fail_info;
    /* the reason's own words, after the message too, tell the operator what to do: the message gives way,
       cut between characters (the reason becomes a statusString, a UTF8String) */
    snprintf(tail, sizeof(tail), " (HTTP %ld)%s", http_status, vault_errors[i].suffix);
    gw_field_reason(reason, GW_MAX_VAULT_QUOTE, msg, tail, "%s: ", vault_errors[i].prefix);
}
