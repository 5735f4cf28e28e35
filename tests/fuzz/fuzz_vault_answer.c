/*
 * fuzz_vault_answer: the input is the body of an answer from Vault, given to every parser of
 * upstream/answers.h that reads one (error, login, sign, revoke, cert, role, Vault's own 503).
 * Besides the sanitizers, each must keep its promises: 0 or a gw_err; on a refusal a one-line
 * reason; what a success fills stays within the caps the header states (a token of visible ASCII, a
 * lease within GW_MAX_VAULT_LEASE, a chain within GW_MAX_UPSTREAM_CHAIN, times within
 * GW_MAX_UPSTREAM_TIME).
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include "base/err.h"
#include "upstream/answers.h"

/* the token masked in the answers' strings: a short one, masked only where it stands as a word */
#define SECRET "root"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    return 0;
}

static void login(const char *body, size_t len)
{
    struct gw_vault_login l;
    char err[GW_ERR_LEN] = "";
    int rc = gw_vault_parse_login(body, len, &l, err);

    fuzz_check_reason("login", rc, err);
    if (rc == 0) {
        size_t n = strnlen(l.client_token, sizeof(l.client_token));
        if (n == 0 || n > GW_MAX_VAULT_TOKEN_LEN || l.lease_duration > GW_MAX_VAULT_LEASE)
            fuzz_die("login: token of %zu bytes or lease %u accepted", n, l.lease_duration);
        for (size_t i = 0; i < n; i++)
            if (l.client_token[i] <= 0x20 || l.client_token[i] >= 0x7f)
                fuzz_die("login: a token with byte 0x%02x accepted", (unsigned char)l.client_token[i]);
    }
    gw_vault_login_cleanup(&l);
}

static void sign(const char *body, size_t len)
{
    struct gw_vault_signed s;
    char err[GW_ERR_LEN] = "";
    int rc = gw_vault_parse_sign(body, len, SECRET, &s, err);
    X509 *issued;

    fuzz_check_reason("sign", rc, err);
    if (rc == 0 && (s.cert == NULL || sk_X509_num(s.chain) > GW_MAX_UPSTREAM_CHAIN || s.expiration < 0 ||
                    s.expiration > GW_MAX_UPSTREAM_TIME))
        fuzz_die("sign: accepted without a certificate, or chain/expiration outside the caps");
    /* refused: at most the certificate Vault issued stays, for the caller to record and revoke */
    if (rc != 0 && (s.chain != NULL || s.serial_number[0] != '\0' || s.expiration != 0 ||
                    s.warnings[0] != '\0' || (rc == GW_ERR_NOT_FOUND && s.cert != NULL)))
        fuzz_die("sign: refused but more than its certificate was left in the result");
    /* the certificate an error status's body holds is the one a sign answer's parser would keep */
    issued = gw_vault_answer_cert(body, len);
    if ((issued == NULL) != (s.cert == NULL) || (issued != NULL && X509_cmp(issued, s.cert) != 0))
        fuzz_die("sign: gw_vault_answer_cert and gw_vault_parse_sign disagree on the certificate issued");
    X509_free(issued);
    gw_vault_signed_cleanup(&s);
}

static void others(const char *body, size_t len)
{
    static const long refusal_statuses[] = {403, 412, 429, 503};
    struct gw_vault_error e;
    struct gw_vault_revoked r;
    struct gw_vault_cert c;
    struct gw_role_policy p;
    char err[GW_ERR_LEN] = "";
    int rc;

    fuzz_check_reason("error", gw_vault_parse_error(body, len, SECRET, &e, err), err);
    /* Vault's own refusal is one message alone: an error answer that reads, and that names something */
    for (size_t i = 0; i < sizeof(refusal_statuses) / sizeof(refusal_statuses[0]); i++)
        if (gw_vault_own_refusal(refusal_statuses[i], body, len) &&
            (gw_vault_parse_error(body, len, NULL, &e, err) != 0 || e.message[0] == '\0'))
            fuzz_die("own refusal: not an error answer of one message");
    err[0] = '\0';
    rc = gw_vault_parse_revoke(body, len, SECRET, &r, err);
    fuzz_check_reason("revoke", rc, err);
    if (rc == 0 && (r.revocation_time < 0 || r.revocation_time > GW_MAX_UPSTREAM_TIME))
        fuzz_die("revoke: revocation_time %lld accepted", (long long)r.revocation_time);
    err[0] = '\0';
    rc = gw_vault_parse_cert(body, len, &c, err);
    fuzz_check_reason("cert", rc, err);
    if (rc == 0 && (c.revocation_time < 0 || c.revocation_time > GW_MAX_UPSTREAM_TIME))
        fuzz_die("cert: revocation_time %lld accepted", (long long)c.revocation_time);
    err[0] = '\0';
    memset(&p, 0, sizeof(p));
    rc = gw_vault_parse_role(body, len, SECRET, &p, err);
    fuzz_check_reason("role", rc, err);
    if (rc == 0 && (p.max_ttl > GW_MAX_CERT_TTL || p.key_bits < 0 || p.key_bits > GW_MAX_RSA_BITS))
        fuzz_die("role: max_ttl %u or key_bits %d accepted", p.max_ttl, p.key_bits);
    gw_role_policy_cleanup(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    login((const char *)data, size);
    sign((const char *)data, size);
    others((const char *)data, size);
    return 0;
}
