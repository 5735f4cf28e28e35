/*
 * The answers of the JSON upstreams, parsed by pure functions: Vault / OpenBao PKI (vault.c) and
 * cfssl (cfssl.c) hand the bodies they receive to these, and read nothing of an answer otherwise.
 *
 * Every gw_vault_parse_* and gw_cfssl_parse_* function:
 *  - reads exactly |len| bytes of |body| (no NUL terminator needed; NULL with len 0 is an empty
 *    answer) and nothing else: no I/O, no upstream object, no global state, no setup. Any bytes are
 *    a valid input;
 *  - wants one JSON object with nothing after it but whitespace (gw_field_parse_object);
 *  - checks every field it reads: numbers by type and range, strings by length and for NUL bytes,
 *    arrays by count, against the caps in gateway/limits.h. One field out of range refuses the whole
 *    answer: nothing is clamped, cast or defaulted in its place;
 *  - returns 0 with |out| filled; GW_ERR_UPSTREAM with a one-line reason in |err| (GW_ERR_LEN) naming
 *    the field and what is wrong; or GW_ERR_NOMEM. A reason about the document as a whole starts
 *    "not Vault JSON: " or "not a cfssl envelope: ";
 *  - leaves in |out| only what it owns: strings are copied, certificates are new objects (get1: the
 *    caller owns them through |out|). The matching *_cleanup frees them and is safe on a zeroed,
 *    filled or failed |out|; a caller that keeps a certificate takes it and sets the field to NULL.
 *    Nothing in |out| points into |body|;
 *  - that takes a |secret| (NULL: none; the token the call was sent with) masks it in every string of
 *    the answer before it reads one (gw_field_mask_strings): their text reaches reasons, the log and a
 *    client's statusString, and json-c decodes escapes ("\u0068vs.") that a mask of |body| cannot see.
 * json-c keeps the last of duplicated keys: that one is the value read and checked.
 */
#ifndef GW_ANSWERS_H
#define GW_ANSWERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>
#include "base/limits.h"
#include "upstream/upstream.h"

/* A serial number as Vault writes it: colon-separated lowercase hex, "aa:" per octet. */
#define GW_VAULT_SERIAL_LEN (3 * GW_MAX_SERIAL_OCTETS) /* with the NUL in place of the last ':' */

/* ---- Vault / OpenBao ---- */

/* An error answer (any status but 200 and 204): {"errors": ["...", ...]}. */
struct gw_vault_error {
    char message[GW_ERR_LEN]; /* the errors joined with "; ", control characters replaced; "" if none */
};
int gw_vault_parse_error(const char *body, size_t len, const char *secret, struct gw_vault_error *out,
                         char *err);

/*
 * gw_vault_map_error: what a client is told of Vault's non-success answer |http_status| with |body|:
 * a gw_err in |status|, the failInfo bit and a one-line |reason| (GW_ERR_LEN) naming Vault's message,
 * masked of |secret| (gw_vault_parse_error), then cut between UTF-8 characters to GW_MAX_VAULT_QUOTE
 * bytes or less, so that the words after it fit.
 */
void gw_vault_map_error(long http_status, const char *body, size_t len, const char *secret, int *status,
                        int *fail_info, char *reason);

/*
 * gw_vault_no_entry: a 404 |body| that is Vault's "nothing there", an empty error list (a read that
 * found no role or certificate). Vault's router and its engines name a path they do not have
 * ("no handler for route ...", "unsupported path"): such a 404, or one not Vault's, is not this.
 */
bool gw_vault_no_entry(const char *body, size_t len);

/*
 * gw_vault_own_refusal: an answer of |status| whose |body| is Vault's own word that it acted on nothing,
 * written before any engine saw the call: exactly {"errors": [<one message>]}, the message one Vault's
 * HTTP layer writes for that status: 403 "permission denied" (a token it does not know, or a policy
 * that does not allow the path, in the words of Vault's and OpenBao's versions), 412 "required index
 * state not present", 429 "request path "<path>": rate limit quota exceeded", 503 for a sealed node
 * ("Vault is sealed") or a standby without an active node to pass the request to ("no active Vault
 * instance found", "node is not active"). The same status from anything else says nothing of what
 * became of the request: a proxy's or a WAF's (Envoy's "upstream connect error or disconnect/reset
 * before headers", an ingress's page) may come after it passed the request on to Vault, and an error
 * of Vault's that only holds one of these words may come from an engine that acted.
 */
bool gw_vault_own_refusal(long status, const char *body, size_t len);

/* POST auth/<mount>/login: {"auth": {"client_token", "lease_duration", "renewable"}}. */
struct gw_vault_login {
    char client_token[GW_MAX_VAULT_TOKEN_LEN + 1]; /* a secret: gw_vault_login_cleanup wipes it */
    uint32_t lease_duration; /* seconds, at most GW_MAX_VAULT_LEASE; 0 = the token does not expire */
    bool renewable;          /* false when the answer does not say */
};
/* client_token: 1 to GW_MAX_VAULT_TOKEN_LEN visible ASCII characters (it goes into a header line). */
int gw_vault_parse_login(const char *body, size_t len, struct gw_vault_login *out, char *err);
void gw_vault_login_cleanup(struct gw_vault_login *l);

/*
 * POST sign/<role>, sign-verbatim: {"data": {"certificate", "issuing_ca", "ca_chain", "serial_number",
 * "expiration"}, "warnings": [...]}. A well-formed answer whose data is null (Vault's warnings only:
 * nothing was issued) returns GW_ERR_NOT_FOUND with "Vault issued no certificate: <warnings>". A
 * refused answer whose data.certificate was read keeps it in |out->cert| (the rest cleared): Vault
 * issued it, so the caller must record and revoke it; gw_vault_signed_cleanup frees it.
 */
struct gw_vault_signed {
    X509 *cert;            /* data.certificate: exactly one certificate */
    STACK_OF(X509) *chain; /* ca_chain, else issuing_ca (issuer first, at most GW_MAX_UPSTREAM_CHAIN);
                              NULL if the answer has neither */
    char serial_number[GW_VAULT_SERIAL_LEN]; /* "" if absent */
    int64_t expiration;                      /* Unix time, 1 to GW_MAX_UPSTREAM_TIME; 0 if absent */
    char warnings[GW_ERR_LEN];               /* joined as gw_vault_error's message; "" if none */
};
int gw_vault_parse_sign(const char *body, size_t len, const char *secret, struct gw_vault_signed *out,
                        char *err);
void gw_vault_signed_cleanup(struct gw_vault_signed *s);

/*
 * gw_vault_answer_cert: the certificate an answer of any status holds in data.certificate (get1), read
 * as gw_vault_parse_sign reads a refused answer's (the first of the field, from the JSON object whole or
 * before bytes after it), or NULL. Vault's error answers hold none: a sign answered with an error status
 * and one was issued all the same (a CA that failed after signing), so it is no answer that nothing
 * happened.
 */
X509 *gw_vault_answer_cert(const char *body, size_t len);

/*
 * POST revoke: {"data": {"revocation_time", "state", ...}}, or, for a certificate that has expired, data
 * null and a warning (Vault puts no expired certificate on its CRL). Revoked means a revocation_time
 * and no state other than "revoked": data without them (a queued cross-cluster revocation, "pending")
 * is no revocation yet.
 */
struct gw_vault_revoked {
    bool has_data;             /* data is there */
    bool revoked;              /* Vault says the certificate is revoked */
    int64_t revocation_time;   /* Unix time, 0 to GW_MAX_UPSTREAM_TIME; 0 if absent */
    char state[32];            /* data.state, printable; "" if absent */
    char warnings[GW_ERR_LEN]; /* joined; "" if none */
};
int gw_vault_parse_revoke(const char *body, size_t len, const char *secret, struct gw_vault_revoked *out,
                          char *err);

/* GET cert/<serial>: {"data": {"certificate", "revocation_time"}}, both required. */
struct gw_vault_cert {
    int64_t revocation_time; /* Unix time, 0 to GW_MAX_UPSTREAM_TIME; 0 = not revoked */
};
int gw_vault_parse_cert(const char *body, size_t len, struct gw_vault_cert *out, char *err);
/*
 * The same answer read for the certificate itself too: as gw_vault_parse_cert (into |out|, which may
 * be NULL), and data.certificate exactly one certificate, into *cert (the caller frees it).
 */
int gw_vault_parse_cert_x509(const char *body, size_t len, struct gw_vault_cert *out, X509 **cert, char *err);

/*
 * GET roles/<name>: {"data": {...}} as a struct gw_role_policy (upstream.h; gw_role_policy_cleanup
 * frees it). What a role grants never reads narrower than it is: absent usage fields take Vault's
 * defaults (key_usage DigitalSignature, KeyAgreement, KeyEncipherment; server_flag and client_flag
 * true), and a usage list longer than GW_MAX_ROLE_USAGES reads as granting every usage. Other absent
 * fields: key_type "rsa", switches false, key_bits and max_ttl 0 (Vault's choice, the mount's), not_after
 * 0 (none). max_ttl is an integer or a string of digits, 0 to GW_MAX_CERT_TTL; not_after "" or a UTC time
 * YYYY-MM-DDTHH:MM:SSZ up to GW_MAX_UPSTREAM_TIME; key_bits 0 to GW_MAX_RSA_BITS; key_type up to
 * GW_MAX_KEY_TYPE_LEN of a-z, 0-9, '-'; allowed_domains and allowed_uri_sans at most GW_MAX_PATTERNS of
 * 1 to GW_MAX_PATTERN_LEN bytes, usage names and OIDs 1 to GW_MAX_OID_TEXT. Those lists and the usage
 * fields are lists of strings or, as older Vaults answer, one comma-separated string.
 */
int gw_vault_parse_role(const char *body, size_t len, const char *secret, struct gw_role_policy *out,
                        char *err);

/* Vault's names of key usages (Go's x509.KeyUsage without its prefix: KU_* bits) and extended key
 * usages (enum gw_eku bits), as roles and sign-verbatim calls name them. */
struct gw_vault_usage {
    const char *name;
    unsigned bit;
};
extern const struct gw_vault_usage gw_vault_key_usages[];
extern const size_t gw_vault_n_key_usages;
extern const struct gw_vault_usage gw_vault_ext_key_usages[];
extern const size_t gw_vault_n_ext_key_usages;

/* ---- cfssl ---- */

/* cfssl's envelope (api.Response): {"success", "result", "errors": [{code, message}], "messages"}. */
struct gw_cfssl_envelope {
    bool success;
    long code;                    /* errors[0].code, 0 to GW_MAX_CFSSL_CODE; 0 if none */
    char message[GW_ERR_LEN / 2]; /* errors[0].message, control characters replaced; "" if none */
};

/*
 * gw_cfssl_parse_envelope checks the envelope only (revoke: its result is not read). 0 is a
 * well-formed answer, whether it says success or failure: |out->success| tells.
 */
int gw_cfssl_parse_envelope(const char *body, size_t len, struct gw_cfssl_envelope *out, char *err);

/*
 * sign and authsign ({"result": {"certificate"}}) and info ({"result": {"certificate", ...}}: cfssl's
 * CA): 0 with |out->cert| set (exactly one certificate) when |out->env.success|, else 0 with no
 * certificate and cfssl's error in |out->env|. A sign answer that says "success": false and still holds
 * a readable result.certificate is refused whole (cfssl writes its errors with "result": null). A sign
 * answer refused whole (a gw_err) with a readable result.certificate, whatever its "success" says or
 * is, also one with bytes after its JSON document, keeps that certificate in |out->cert|: cfssl may
 * have issued it, so the caller must record and revoke it; gw_cfssl_cert_cleanup frees it. A refused
 * answer whose envelope reads and says "success": false (the certificate beside it) keeps cfssl's
 * error in |out->env|; any other refused answer leaves |out->env| zeroed.
 */
struct gw_cfssl_cert {
    struct gw_cfssl_envelope env;
    X509 *cert;
};
int gw_cfssl_parse_sign(const char *body, size_t len, struct gw_cfssl_cert *out, char *err);
int gw_cfssl_parse_info(const char *body, size_t len, struct gw_cfssl_cert *out, char *err);
void gw_cfssl_cert_cleanup(struct gw_cfssl_cert *c);

/* crl: {"result": "<base64 of a DER CRL>"}; |out->der| (malloc'd, |out->len| bytes) is exactly one CRL. */
struct gw_cfssl_crl {
    struct gw_cfssl_envelope env;
    unsigned char *der;
    size_t len;
};
int gw_cfssl_parse_crl(const char *body, size_t len, struct gw_cfssl_crl *out, char *err);
void gw_cfssl_crl_cleanup(struct gw_cfssl_crl *c);

#endif
