/*
 * gw_config: a real demo PKI and configuration (deploy/demo-pki.sh), then table-driven variants
 * made by editing the JSON text. Every error case asserts the JSON path and the offending value.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "gateway/config.h"
#include "base/conf.h"
#include "gateway/listener_local.h"
#include "gateway/privileges.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/names.h"
#include "base/pem.h"
#include "base/pkcs11.h"
#include "base/user.h"
#include "upstream/upstream.h"
#include "upstream/upstream_int.h"
#include "testutil.h"

/* An upstream's own section, by adapter. */
#define LOCAL(u) ((const struct gw_local_conf *)(u)->impl)
#define VAULT(u) ((const struct gw_vault_conf *)(u)->impl)
#define CFSSL(u) ((const struct gw_cfssl_conf *)(u)->impl)

/* The profile of that name (|len| bytes), as gw_route_profile finds it for a request's certProfile. */
static const struct gw_profile *profile_named(const struct gw_config *cfg, const char *name, size_t len)
{
    for (size_t i = 0; i < cfg->n_profiles; i++)
        if (strlen(cfg->profiles[i].name) == len && memcmp(cfg->profiles[i].name, name, len) == 0)
            return &cfg->profiles[i];
    return NULL;
}

/* The label of that name, as gw_route_match finds it for /.well-known/cmp/p/<label>. */
static const struct gw_label *label_named(const struct gw_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_labels; i++)
        if (strcmp(cfg->labels[i].label, name) == 0)
            return &cfg->labels[i];
    return NULL;
}

#define HMAC_HEX "00112233445566778899aAbBcCdDeEfF" /* cfssl auth key: 16 bytes in hex, mixed case */

static char dir[64]; /* the temporary PKI directory */
#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
static char *demo_raw; /* the demo cmpgw.json text */
static char *demo;     /* the same with its role unbounded (tu_widen_demo): the base of every variant */
static const char secret_short[] = "abc1234";

/* ---- fixtures ---- */

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    if (fp == NULL)
        return NULL;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    rewind(fp);
    buf = calloc(1, (size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

static void put_file(const char *name, const char *text, size_t len, mode_t mode)
{
    char path[256];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    fclose(fp);
    chmod(path, mode);
}

/* A copy of |src| in the PKI directory as |dst|, with |mode|. */
static void copy_file(const char *src, const char *dst, mode_t mode)
{
    char path[256], *text;
    size_t len;

    snprintf(path, sizeof(path), "%s/%s", dir, src);
    assert_non_null(text = slurp(path, &len));
    put_file(dst, text, len, mode);
    free(text);
}

static X509 *read_cert(const char *name)
{
    char path[256];
    FILE *fp;
    X509 *x;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((fp = fopen(path, "r")) == NULL)
        return NULL;
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    return x;
}

/* A CRL by |ca| (name of a .pem/.key pair) into |fp|, revoking |revoked| if not NULL; expired if |days| < 0.
 */
static int write_crl(FILE *fp, const char *ca, const X509 *revoked, int days)
{
    char path[256];
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    X509_CRL *crl = X509_CRL_new();
    X509_REVOKED *rev = NULL;
    ASN1_TIME *t = NULL;
    FILE *kf;
    char pem[64];
    int ok = 0;

    snprintf(pem, sizeof(pem), "%s.pem", ca);
    snprintf(path, sizeof(path), "%s/%s.key", dir, ca);
    if ((cert = read_cert(pem)) == NULL || (kf = fopen(path, "r")) == NULL)
        goto out;
    key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
    fclose(kf);
    if (key == NULL || crl == NULL || (t = X509_time_adj_ex(NULL, days < 0 ? days : 0, -60, NULL)) == NULL)
        goto out;
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(cert));
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_free(t);
    if ((t = X509_time_adj_ex(NULL, days, 0, NULL)) == NULL)
        goto out;
    X509_CRL_set1_nextUpdate(crl, t);
    if (revoked != NULL) {
        rev = X509_REVOKED_new();
        X509_REVOKED_set_serialNumber(rev, (ASN1_INTEGER *)X509_get0_serialNumber(revoked));
        X509_REVOKED_set_revocationDate(rev, t);
        X509_CRL_add0_revoked(crl, rev);
        X509_CRL_sort(crl);
    }
    ok = X509_CRL_sign(crl, key, EVP_sha256()) > 0 && PEM_write_X509_CRL(fp, crl) == 1;
out:
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

/* crl-<name>.pem: CRLs of the demo root and issuing CA; the root's revokes client.pem if |revoke|. */
static int make_crls(const char *name, int revoke, int days)
{
    char path[256];
    X509 *client = read_cert("client.pem");
    FILE *fp;
    int rc;

    snprintf(path, sizeof(path), "%s/crl-%s.pem", dir, name);
    if (client == NULL || (fp = fopen(path, "w")) == NULL) {
        X509_free(client);
        return -1;
    }
    rc = write_crl(fp, "ca", revoke ? client : NULL, days) | write_crl(fp, "issuing", NULL, days);
    fclose(fp);
    X509_free(client);
    return rc;
}

/* Extra PKI for the upstream cases: a constrained delegate CA, a foreign one, a root-level one. */
static const char *const pki_cmds[] = {
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out delegate.key",
    "openssl req -new -key delegate.key -subj '/CN=delegate' -out delegate.csr",
    "printf 'basicConstraints=critical,CA:TRUE,pathlen:0\\nkeyUsage=critical,keyCertSign,cRLSign\\n"
    "nameConstraints=critical,permitted;DNS:example.com\\n' > delegate.ext",
    "openssl x509 -req -in delegate.csr -CA ca.pem -CAkey ca.key -set_serial 7 -days 90 -extfile "
    "delegate.ext "
    "-out delegate.pem",
    /* the same delegate, signed with SHA-1: under the security level of what an upstream returns */
    "openssl x509 -req -sha1 -in delegate.csr -CA ca.pem -CAkey ca.key -set_serial 8 -days 90 -extfile "
    "delegate.ext -out delegate-sha1.pem",
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -out other.pem "
    "-subj '/CN=other' -days 30 -addext basicConstraints=critical,CA:TRUE,pathlen:0 "
    "-addext keyUsage=critical,keyCertSign",
    "mkdir -p store store2 audit.dir && touch plain.file && ln -s plain.file audit.link",
    /* a directory whose name reads as a URL's scheme and userinfo: "https://u:s.abcdefgh@ca/client.pem" */
    "mkdir -p 'https:/u:s.abcdefgh@ca' && cp -p client.pem client.key 'https:/u:s.abcdefgh@ca/'",
    /* a key OpenSSL 3.0's CMP has no protection algorithm for */
    "openssl req -x509 -newkey ed25519 -nodes -keyout ed25519.key -out ed25519.pem -subj '/CN=ed25519' "
    "-days 30 && chmod 0600 ed25519.key",
    /* trust anchors with something else in the file, and with only text between certificates */
    "cat ca.pem other.key > ca-key.pem && cat ca.pem delegate.csr > ca-csr.pem && "
    "openssl x509 -in ca.pem -trustout -out ca-trusted.pem && cat ca.pem crl-ok.pem > ca-crl.pem && "
    "(echo '# the demo root'; cat ca.pem; echo 'subject=CN=other'; cat other.pem) > ca-bundle.pem",
    /* issuer_ca bundles of two CAs under the demo root (issuing and delegate), the root listed too */
    "cat issuing.pem ca.pem > issuing-root.pem && cat delegate.pem ca.pem > delegate-root.pem && "
    "cat delegate.pem issuing.pem ca.pem > both-root.pem",
    /* the delegate as a trust anchor beside the root; under the root but listed before it; its name on
       another key */
    "cat ca.pem delegate.pem > ca-delegate.pem && cat ca.pem delegate.pem > root-delegate.pem && "
    "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rekeyed.key "
    "-subj '/CN=delegate' -out rekeyed.csr && openssl x509 -req -in rekeyed.csr -CA ca.pem -CAkey ca.key "
    "-set_serial 9 -days 90 -extfile delegate.ext -out rekeyed.pem",
    /* a CA under the demo root that may issue CAs, and a delegate issuer under it */
    "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout mid.key -subj '/CN=mid CA' "
    "-out mid.csr && printf 'basicConstraints=critical,CA:TRUE,pathlen:1\\nkeyUsage=critical,keyCertSign\\n' "
    "> mid.ext && openssl x509 -req -in mid.csr -CA ca.pem -CAkey ca.key -set_serial 10 -days 90 -extfile "
    "mid.ext -out mid.pem && cat mid.pem ca.pem > mid-root.pem && openssl req -new -newkey ec -pkeyopt "
    "ec_paramgen_curve:P-256 -nodes -keyout mid-delegate.key -subj '/CN=mid delegate' -out mid-delegate.csr "
    "&& "
    "openssl x509 -req -in mid-delegate.csr -CA mid.pem -CAkey mid.key -set_serial 11 -days 90 -extfile "
    "delegate.ext -out mid-delegate.pem && cat mid.pem mid-delegate.pem > mid-both.pem",
    /* listener certificates libssl refuses at security level 2: an RSA-1024 key, a SHA-1 signature */
    "openssl req -new -newkey rsa:1024 -nodes -keyout weak.key -subj '/CN=127.0.0.1' -out weak.csr && "
    "openssl x509 -req -in weak.csr -CA ca.pem -CAkey ca.key -set_serial 12 -days 90 -out weak.pem && "
    "openssl req -new -newkey rsa:2048 -nodes -keyout sha1.key -subj '/CN=127.0.0.1' -out sha1.csr && "
    "openssl x509 -req -sha1 -in sha1.csr -CA ca.pem -CAkey ca.key -set_serial 13 -days 90 -out sha1.pem && "
    "chmod 0600 weak.key sha1.key",
    /* a CA whose name holds a '/', which X509_NAME_oneline cannot write unambiguously */
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout slash.key -out slash.pem "
    "-subj '/O=ops\\/east/CN=slash CA' -days 30 -addext basicConstraints=critical,CA:TRUE,pathlen:0 "
    "-addext keyUsage=critical,keyCertSign && cat slash.pem ca.pem > slash-root.pem",
};

static int extra_pki(void)
{
    char cmd[1024];
    size_t i;

    if (make_crls("ok", 0, 7) | make_crls("revoked", 1, 7) | make_crls("expired", 0, -1))
        return -1;
    for (i = 0; i < sizeof(pki_cmds) / sizeof(pki_cmds[0]); i++) {
        snprintf(cmd, sizeof(cmd), "cd %s && (%s) >/dev/null 2>&1", dir, pki_cmds[i]);
        if (system(cmd) != 0)
            return -1;
    }
    put_file("vault.token", "s.abcdefgh\n", 11, 0600);
    put_file("others.token", "s.abcdefgh\n", 11, 0604);
    put_file("group.token", "s.abcdefgh\n", 11, 0640);
    put_file("hmac.key", HMAC_HEX "\n", strlen(HMAC_HEX) + 1, 0600);
    copy_file("signer.pem", "signer-pem.key", 0600); /* a certificate where a key goes, its mode right */
    put_file("hmac-odd.key", "0123456789abcdef0123456789abcdef0", 33, 0600);
    put_file("hmac-short.key", "0123456789abcdef0123456789abcd", 30, 0600);
    put_file("hmac-nothex.key", "0123456789abcdef0123456789abcdeg", 32, 0600);
    return 0;
}

/*
 * Captures what the code under test logs on stderr (warnings) between start and end, at the log's default
 * level: capture_end answers its first TU_SLURP_MAX - 1 bytes (to free).
 */
static struct tu_log captured = {.fd = -1, .saved = -1};

static void capture_start(void)
{
    tu_log_capture(&captured, GW_LOG_INFO, GW_LOG_INFO);
}

static char *capture_end(void)
{
    char *logged = malloc(TU_SLURP_MAX);

    assert_non_null(logged);
    tu_log_release_into(&captured, logged, TU_SLURP_MAX);
    return logged;
}

static int group_setup(void **state)
{
    char cmd[256], path[256];

    (void)state;
    snprintf(dir, sizeof(dir), "%s", "/tmp/cmpgw-test-config-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    setenv("CMPGW_PORT", "8443", 1);
    snprintf(cmd, sizeof(cmd), "bash ../../deploy/demo-pki.sh %s", dir);
    if (system(cmd) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/cmpgw.json", dir);
    if ((demo_raw = slurp(path, NULL)) == NULL)
        return -1;
    demo = tu_widen_demo(strdup(demo_raw));
    put_file("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
             71, 0644);
    put_file("empty.pem", "", 0, 0644);
    put_file("short.secret", secret_short, strlen(secret_short), 0600);
    put_file("crlf.secret", "12345678\r\n", 10, 0600);
    put_file("long.secret", "", 0, 0600);
    put_file("others-read.secret", "0123456789abcdef", 16, 0644);
    put_file("others-write.secret", "0123456789abcdef", 16, 0602);
    put_file("group-read.secret", "0123456789abcdef", 16, 0640);
    put_file("group-write.secret", "0123456789abcdef", 16, 0620);
    {
        char big[GW_MAX_PBM_SECRET_LEN + 1];
        memset(big, 'x', sizeof(big));
        put_file("long.secret", big, sizeof(big), 0600);
    }
    return extra_pki();
}

static int group_teardown(void **state)
{
    char cmd[256];

    (void)state;
    free(demo_raw);
    free(demo);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- text edits ---- */

struct edit {
    const char *find; /* "^": prepend, "$": append; else the first occurrence is replaced */
    const char *repl;
};

/* Applies |edits| to the demo text; a find string that is absent fails the test (it could not fail). */
static char *edited(const struct edit *edits, size_t n)
{
    char *text = strdup(demo), *p, *out;
    size_t i, tl, fl, rl;

    assert_non_null(text);
    for (i = 0; i < n && edits[i].find != NULL; i++) {
        tl = strlen(text);
        rl = strlen(edits[i].repl);
        out = malloc(tl + rl + 1);
        assert_non_null(out);
        if (strcmp(edits[i].find, "^") == 0) {
            snprintf(out, tl + rl + 1, "%s%s", edits[i].repl, text);
        } else if (strcmp(edits[i].find, "$") == 0) {
            snprintf(out, tl + rl + 1, "%s%s", text, edits[i].repl);
        } else {
            p = strstr(text, edits[i].find);
            if (p == NULL)
                fail_msg("edit target not in the demo config: %s", edits[i].find);
            fl = strlen(edits[i].find);
            snprintf(out, tl + rl + 1, "%.*s%s%s", (int)(p - text), text, edits[i].repl, p + fl);
        }
        free(text);
        text = out;
    }
    return text;
}

static struct gw_config *parse_text(const char *text, size_t len, char *err)
{
    return gw_config_parse(text, len, dir, "cmpgw.json", err);
}

/* ---- error cases: each is a twin of the valid demo config ---- */

struct bad {
    const char *name;
    struct edit e[4];
    const char *want[3]; /* substrings of the error, in order */
};

/*
 * The baseline: a vault and a cfssl upstream, a delegate local issuer, and roles on them,
 * inserted into the demo. Twins edit the inserted text (each find string occurs once).
 */
#define VAULT_UP                                                                                             \
    "\"vault\": { \"type\": \"vault\", \"url\": \"https://127.0.0.1:8200\", \"tls_ca\": \"ca.pem\", "        \
    "\"issuer_ca\": \"ca.pem\", \"token_file\": \"vault.token\" }"
#define CFSSL_UP                                                                                             \
    "\"cfssl\": { \"type\": \"cfssl\", \"url\": \"http://127.0.0.1:8888\", \"issuer_ca\": \"issuing.pem\", " \
    "\"auth_key_file\": \"hmac.key\" }"
#define DELEG_UP                                                                                             \
    "\"deleg\": { \"type\": \"local\", \"cert\": \"delegate.pem\", \"key\": \"delegate.key\", \"chain\": "   \
    "\"ca.pem\", \"store\": \"store\" }"
#define ROLE_V                                                                                               \
    "\"rv\": { \"upstream\": \"vault\", \"trust\": [\"demo\"], \"crmf\": \"delegate\", \"delegate\": "       \
    "\"deleg\", "                                                                                            \
    "\"allowed_san_types\": [\"dns\", \"ip\"], \"authorization\": { \"tls_client\": \"require\", "           \
    "\"allowed_dns_names\": [\"*.example.com\"], \"allowed_ip_ranges\": [\"10.0.0.0/8\"], "                  \
    "\"allowed_key_types\": [\"ec:P-256\"] } }"
#define ROLE_C                                                                                               \
    "\"rc\": { \"upstream\": \"cfssl\", \"pbm\": [\"demo-device\"], \"upstream_role\": \"client\" }"
#define UPS E("\"upstreams\": {", "\"upstreams\": { " VAULT_UP ", " CFSSL_UP ", " DELEG_UP ",")
#define ROLES E("\"roles\": {", "\"roles\": { " ROLE_V ", " ROLE_C ",")
#define MIG(x) E("\"upstream_role\": \"client\"", "\"upstream_role\": \"client\", \"migration\": " x)
#define AUTHZ(x) E("\"tls_client\": \"require\"", "\"tls_client\": \"require\", " x)
#define EXTS_RAW(v) E("\"implicit_confirm\": true", "\"implicit_confirm\": true, \"allowed_extensions\": " v)
#define EXTS(list) EXTS_RAW("[" list "]")
#define A16 "aaaaaaaaaaaaaaaa"
#define A256 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 /* GW_MAX_PATTERN_LEN */

/* The demo listener's "tls" object, as deploy/demo-pki.sh writes it. */
#define DEMO_TLS                                                                                             \
    "\"tls\": {\n        \"cert\": \"server.pem\",\n        \"key\": \"server.key\",\n        "              \
    "\"client_ca\": \"ca.pem\",\n        \"client_auth\": \"optional\"\n      }"
#define DEMO_LISTEN_AT "\"address\": \"127.0.0.1\",\n      \"port\": 8443"

#define E(f, r)                                                                                              \
    {                                                                                                        \
        f, r                                                                                                 \
    }
static const struct bad bad_cases[] = {
    /* JSON syntax */
    {"syntax", {E("\"listeners\": [", "\"listeners\": [,")}, {"cmpgw.json: invalid JSON at line 2"}},
    {"trailing garbage", {E("$", "x")}, {"cmpgw.json: invalid JSON", "unexpected data after"}},
    {"second document", {E("$", "{}")}, {"invalid JSON", "unexpected data after"}},
    {"trailing comma", {E("\"implicit_confirm\": true", "\"implicit_confirm\": true,")}, {"invalid JSON"}},
    {"comment", {E("\"signer\"", "/* c */ \"signer\"")}, {"invalid JSON"}},
    {"single quotes", {E("\"signer\"", "'signer'")}, {"invalid JSON"}},
    {"not an object", {E("^", "[")}, {"invalid JSON"}},
    {"top-level array", {E("^", "["), E("$", "]")}, {"cmpgw.json: $: expected an object, got an array"}},
    {"single-quoted value", {E("\"role:default\"", "'role:default'")}, {"invalid JSON"}},
    {"too deep",
     {E("\"signer\":",
        "\"x\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], \"signer\":")},
     {"invalid JSON", "nesting too deep"}},
    {"NaN port",
     {E("\"port\": 8443", "\"port\": NaN")},
     {"$.listeners[0].port: expected an integer", "got NaN"}},
    {"null value",
     {E("\"implicit_confirm\": true", "\"implicit_confirm\": null")},
     {"$.roles.default.implicit_confirm: null is not a valid value"}},
    {"null required",
     {E("\"upstream\": \"local\"", "\"upstream\": null")},
     {"$.roles.default.upstream: null is not a valid value"}},
    {"null label policy",
     {E("{ \"default\": \"role:default\" }", "{ \"x\": null }")},
     {"$.label_to_path_policy.x: null is not a valid value"}},
    /* the admin listener: loopback unless over TLS with client certificates; a port of its own */
    {"admin off loopback",
     {E("\"address\": \"127.0.0.1\", \"port\": 8444", "\"address\": \"0.0.0.0\", \"port\": 8444")},
     {"$.admin.tls: required on a non-loopback address"}},
    {"admin on a CMP port",
     {E("\"port\": 8444", "\"port\": 8443")},
     {"$.admin: same address and port as $.listeners[0]"}},
    {"admin over HTTP/2",
     {E("\"port\": 8444", "\"port\": 8444, \"tls\": {\"cert\": \"server.pem\", \"key\": \"server.key\", "
                          "\"client_ca\": \"ca.pem\", \"http2\": true}")},
     {"$.admin.tls.http2: the admin listener speaks HTTP/1 only"}},
    {"admin unknown key",
     {E("\"port\": 8444", "\"port\": 8444, \"path\": \"/x\"")},
     {"$.admin.path: unknown key"}},
    {"null listener",
     {E("\"listeners\": [", "\"listeners\": [null,")},
     {"$.listeners[0]: expected a listener object, got null"}},
    {"null in names",
     {E("\"trust\": [\"demo\"]", "\"trust\": [null]")},
     {"$.roles.default.trust[0]: expected a name", "got null"}},
    {"null in flags",
     {E("\"uri\"", "null")},
     {"$.roles.default.allowed_san_types[2]: got null, expected one of \"dns\"|\"ip\""}},
    /* duplicate keys */
    {"dup top",
     {E("^", ""), E("\"signer\":", "\"workers\": 4, \"workers\": 8, \"signer\":")},
     {"cmpgw.json: $: duplicate key \"workers\""}},
    {"dup nested",
     {E("\"ttl\": \"720h\",", "\"ttl\": \"720h\", \"ttl\": \"1h\",")},
     {"cmpgw.json: $.roles.default: duplicate key \"ttl\""}},
    {"dup escaped",
     {E("\"ttl\": \"720h\",", "\"ttl\": \"720h\", \"t\\u0074l\": \"1h\",")},
     {"$.roles.default: duplicate key \"ttl\""}},
    {"dup in array element",
     {E("\"address\": \"127.0.0.1\",", "\"address\": \"127.0.0.1\", \"address\": \"::1\",")},
     {"$.listeners[0]: duplicate key \"address\""}},
    {"dup map name", {E("\"pbm\": {", "\"pbm\": { \"x\": {}, \"x\": {},")}, {"$.pbm: duplicate key \"x\""}},
    /* a key that reads as no name (a token pasted where a key goes) is never quoted, only counted */
    {"dup token key",
     {E("\"signer\":", "\"s.abcdefgh+0\": 1, \"s.abcdefgh+0\": 2, \"signer\":")},
     {"cmpgw.json: $: duplicate key of 12 bytes, not quoted"}},
    {"dup under a token key",
     {E("\"signer\":", "\"s.abcdefgh+0\": {\"a\": 1, \"a\": 2}, \"signer\":")},
     {"cmpgw.json: $.(a key of 12 bytes, not quoted): duplicate key \"a\""}},
    /* unknown keys */
    {"unknown top", {E("\"signer\":", "\"bogus\": 1, \"signer\":")}, {"cmpgw.json: $.bogus: unknown key"}},
    {"unknown token key",
     {E("\"signer\":", "\"s.abcdefghijklmnopqrstuvw\": 1, \"signer\":")},
     {"cmpgw.json: $: unknown key of 25 bytes, not quoted"}},
    {"unknown camel-case key",
     {E("\"ttl\":", "\"s3cretToken\": 5, \"ttl\":")},
     {"cmpgw.json: $.roles.default: unknown key of 11 bytes, not quoted"}},
    {"unknown hex key",
     {E("\"ttl\":", "\"0123456789abcdef0123456789abcdef\": 5, \"ttl\":")},
     {"$.roles.default: unknown key of 32 bytes, not quoted"}},
    {"unknown long-word key",
     {E("\"ttl\":", "\"tok_ab0123456789abcdefxyz\": 5, \"ttl\":")},
     {"$.roles.default: unknown key of 25 bytes, not quoted"}},
    {"unknown key in an array element",
     {E("\"client_auth\": \"optional\"", "\"client_auth\": \"optional\", \"s.abcdefgh/k=\": true")},
     {"cmpgw.json: $.listeners[0].tls: unknown key of 13 bytes, not quoted"}},
    {"unknown nested",
     {E("\"client_auth\": \"optional\"", "\"client_auth\": \"optional\", \"verify\": true")},
     {"cmpgw.json: $.listeners[0].tls.verify: unknown key"}},
    {"unknown in role", {E("\"ttl\":", "\"tll\": 5, \"ttl\":")}, {"$.roles.default.tll: unknown key"}},
    /* wrong types and ranges */
    {"port string",
     {E("\"port\": 8443", "\"port\": \"8443\"")},
     {"cmpgw.json: $.listeners[0].port: expected an integer in 1..65535, got \"8443\""}},
    {"port 0",
     {E("\"port\": 8443", "\"port\": 0")},
     {"$.listeners[0].port: expected an integer in 1..65535, got 0"}},
    {"port 65536", {E("\"port\": 8443", "\"port\": 65536")}, {"$.listeners[0].port", "got 65536"}},
    {"port double", {E("\"port\": 8443", "\"port\": 8443.0")}, {"$.listeners[0].port", "got 8443.0"}},
    {"port huge", {E("\"port\": 8443", "\"port\": 99999999999999999999999")}, {"$.listeners[0].port"}},
    {"workers 0",
     {E("\"signer\":", "\"workers\": 0, \"signer\":")},
     {"$.workers: expected an integer in 1..1024, got 0"}},
    {"workers over", {E("\"signer\":", "\"workers\": 1025, \"signer\":")}, {"$.workers", "got 1025"}},
    {"ipv6 prefix too short",
     {E("\"signer\":", "\"limits\": {\"ipv6_prefix\": 47}, \"signer\":")},
     {"$.limits.ipv6_prefix: expected an integer in 48..128, got 47"}},
    {"ipv6 prefix too long",
     {E("\"signer\":", "\"limits\": {\"ipv6_prefix\": 129}, \"signer\":")},
     {"$.limits.ipv6_prefix", "got 129"}},
    {"no requests in flight",
     {E("\"signer\":", "\"limits\": {\"max_requests_in_flight_per_address\": 0}, \"signer\":")},
     {"$.limits.max_requests_in_flight_per_address: expected an integer in 1..1000000, got 0"}},
    {"send timeout over",
     {E("\"signer\":", "\"limits\": {\"send_timeout\": \"301s\"}, \"signer\":")},
     {"$.limits.send_timeout"}},
    {"handshake timeout over",
     {E("\"signer\":", "\"limits\": {\"handshake_timeout\": \"11s\"}, \"signer\":")},
     {"$.limits.handshake_timeout", "got \"11s\""}},
    {"handshake timeout zero",
     {E("\"signer\":", "\"limits\": {\"handshake_timeout\": \"0s\"}, \"signer\":")},
     {"$.limits.handshake_timeout"}},
    {"loop_threads string",
     {E("\"signer\":", "\"loop_threads\": \"2\", \"signer\":")},
     {"$.loop_threads", "got \"2\""}},
    {"queue_depth neg", {E("\"signer\":", "\"queue_depth\": -1, \"signer\":")}, {"$.queue_depth", "got -1"}},
    {"bool as string",
     {E("\"implicit_confirm\": true", "\"implicit_confirm\": \"true\"")},
     {"$.roles.default.implicit_confirm: expected true or false, got \"true\""}},
    {"listeners object",
     {E("\"listeners\": [", "\"listeners\": {\"a\": ["), E("  ],\n  \"signer\"", "  ]},\n  \"signer\"")},
     {"$.listeners: expected an array of 1..16 listeners, got an object"}},
    {"listeners empty",
     {E("\"listeners\": [", "\"listeners\": [], \"loop_threads\": [")},
     {"$.listeners: expected an array"}},
    {"signer not object", {E("\"signer\": {", "\"signer\": 1, \"s\": {")}, {"$.s: unknown key"}},
    {"cmp not object", {E("\"signer\":", "\"cmp\": 5, \"signer\":")}, {"$.cmp: expected an object, got 5"}},
    {"state redis without address",
     {E("\"signer\":", "\"cmp\": {\"state\": {\"backend\": \"redis\"}}, \"signer\":")},
     {"$.cmp.state.address: missing: required with \"backend\": \"redis\""}},
    {"state memory with address",
     {E("\"signer\":", "\"cmp\": {\"state\": {\"address\": \"127.0.0.1\"}}, \"signer\":")},
     {"$.cmp.state: \"address\", \"username\", \"password_file\" and \"mac_key_file\" are for \"backend\": "
      "\"redis\""}},
    {"state backend bad",
     {E("\"signer\":", "\"cmp\": {\"state\": {\"backend\": \"etcd\"}}, \"signer\":")},
     {"$.cmp.state.backend: expected one of \"memory\"|\"redis\", got \"etcd\""}},
    {"state host name",
     {E("\"signer\":",
        "\"cmp\": {\"state\": {\"backend\": \"redis\", \"address\": \"redis.local\"}}, \"signer\":")},
     {"$.cmp.state.address"}},
    {"state address with a password", /* the check below: "s.abcdefgh" is in no error */
     {E("\"signer\":", "\"cmp\": {\"state\": {\"backend\": \"redis\", \"address\": "
                       "\"redis://:s.abcdefgh@127.0.0.1\"}}, \"signer\":")},
     {"$.cmp.state.address: expected a numeric IPv4 or IPv6 address, got \"redis://***@127.0.0.1\""}},
    {"state address with a user and password, no scheme",
     {E("\"signer\":", "\"cmp\": {\"state\": {\"backend\": \"redis\", \"address\": "
                       "\"cmpgw:s.abcdefgh@127.0.0.1:6379\"}}, \"signer\":")},
     {"$.cmp.state.address: expected a numeric IPv4 or IPv6 address, got \"***@127.0.0.1:6379\""}},
    {"state address with a password, no scheme",
     {E("\"signer\":", "\"cmp\": {\"state\": {\"backend\": \"redis\", \"address\": "
                       "\":s.abcdefgh@127.0.0.1\"}}, \"signer\":")},
     {"$.cmp.state.address: expected a numeric IPv4 or IPv6 address, got \"***@127.0.0.1\""}},
    {"listener address with a password, no scheme",
     {E("\"address\": \"127.0.0.1\",", "\"address\": \"admin:s.abcdefgh@127.0.0.1\",")},
     {"$.listeners[0].address: expected a numeric IPv4 or IPv6 address, got \"***@127.0.0.1\""}},
    {"state prefix with space",
     {E("\"signer\":", "\"cmp\": {\"state\": {\"backend\": \"redis\", \"address\": \"127.0.0.1\", "
                       "\"key_prefix\": \"a b\"}}, \"signer\":")},
     {"$.cmp.state.key_prefix: expected 1..64 printable characters without spaces"}},
    {"state password file missing",
     {E("\"signer\":", "\"cmp\": {\"state\": {\"backend\": \"redis\", \"address\": \"127.0.0.1\", "
                       "\"password_file\": \"nope.pass\"}}, \"signer\":")},
     {"$.cmp.state.password_file"}},
    /* durations */
    {"bad max_ttl",
     {E("\"max_ttl\": \"2160h\"", "\"max_ttl\": \"forever\"")},
     {"cmpgw.json: $.roles.default.max_ttl: expected a duration like \"720h\" or seconds, got \"forever\""}},
    {"duration unit case",
     {E("\"ttl\": \"720h\"", "\"ttl\": \"720H\"")},
     {"$.roles.default.ttl: expected a duration", "\"720H\""}},
    {"duration fraction", {E("\"ttl\": \"720h\"", "\"ttl\": \"1.5h\"")}, {"$.roles.default.ttl", "\"1.5h\""}},
    {"duration no digits", {E("\"ttl\": \"720h\"", "\"ttl\": \"h\"")}, {"$.roles.default.ttl", "\"h\""}},
    {"duration negative", {E("\"ttl\": \"720h\"", "\"ttl\": -5")}, {"$.roles.default.ttl", "got -5"}},
    {"duration zero",
     {E("\"ttl\": \"720h\"", "\"ttl\": 0")},
     {"$.roles.default.ttl: expected a duration of 1s..", "got 0"}},
    {"duration overflow",
     {E("\"ttl\": \"720h\"", "\"ttl\": \"99999999999999999999d\"")},
     {"$.roles.default.ttl"}},
    /* 2^64 ms is 213503982334.6 days: one day more would wrap to 34448384 ms, not be refused */
    {"duration wraps",
     {E("\"ttl\": \"720h\"", "\"ttl\": \"213503982335d\"")},
     {"$.roles.default.ttl: expected a duration like \"720h\" or seconds, got \"213503982335d\""}},
    {"duration just short of the wrap",
     {E("\"ttl\": \"720h\"", "\"ttl\": \"213503982334d\"")},
     {"$.roles.default.ttl: expected a duration of 1s..", "got \"213503982334d\""}},
    {"duration ms not whole",
     {E("\"ttl\": \"720h\"", "\"ttl\": \"1500ms\"")},
     {"$.roles.default.ttl: expected whole seconds"}},
    {"ttl over max_ttl",
     {E("\"ttl\": \"720h\"", "\"ttl\": \"2161h\"")},
     {"$.roles.default.ttl: ttl (7779600s) exceeds max_ttl (7776000s)"}},
    {"timeout bad",
     {E("\"chain\": \"ca.pem\" }", "\"chain\": \"ca.pem\", \"timeout\": \"soon\" }")},
     {"$.upstreams.local.timeout: expected a duration", "\"soon\""}},
    {"timeout zero",
     {E("\"chain\": \"ca.pem\" }", "\"chain\": \"ca.pem\", \"timeout\": 0 }")},
     {"$.upstreams.local.timeout", "got 0"}},
    {"pbm iterations low",
     {E("\"signer\":", "\"cmp\": {\"pbm_max_iterations\": 99}, \"signer\":")},
     {"$.cmp.pbm_max_iterations: expected an integer in 100..100000, got 99"}},
    {"pbm iterations high",
     {E("\"signer\":", "\"cmp\": {\"pbm_max_iterations\": 100001}, \"signer\":")},
     {"$.cmp.pbm_max_iterations", "got 100001"}},
    /* missing required */
    {"missing upstream",
     {E("\"upstream\": \"local\",", "")},
     {"cmpgw.json: $.roles.default.upstream: missing required key"}},
    {"missing signer",
     {E("\"signer\": { \"cert\": \"signer.pem\", \"key\": \"signer.key\" },", "")},
     {"cmpgw.json: $.signer: missing required key"}},
    {"missing signer key", {E(", \"key\": \"signer.key\" }", " }")}, {"$.signer.key: missing required key"}},
    {"missing listeners", {E("\"listeners\"", "\"xlisteners\"")}, {"$.xlisteners: unknown key"}},
    {"missing tls", {E("\"tls\"", "\"tlz\"")}, {"$.listeners[0].tlz: unknown key"}},
    {"no tls, not plain",
     {E(DEMO_TLS, "\"trusted_proxies\": []")},
     {"$.listeners[0].tls: missing: a CMP listener speaks TLS unless \"plain_http\" is true"}},
    {"plain_http beside tls",
     {E("\"port\": 8443,", "\"port\": 8443, \"plain_http\": true,")},
     {"$.listeners[0].plain_http: true together with \"tls\": choose one"}},
    {"plain_http on an open address",
     {E(DEMO_TLS, "\"plain_http\": true"), E(DEMO_LISTEN_AT, "\"address\": \"0.0.0.0\", \"port\": 8443")},
     {"$.listeners[0].plain_http: plain HTTP only on a loopback address, or behind a balancer"}},
    {"missing client_ca",
     {E("\"client_ca\": \"ca.pem\",", "")},
     {"$.listeners[0].tls.client_ca: missing: required unless client_auth is \"none\""}},
    /* files */
    {"missing file",
     {E("\"cert\": \"signer.pem\"", "\"cert\": \"nope.pem\"")},
     {"cmpgw.json: $.signer.cert: cannot open \"", "/nope.pem\": No such file or directory"}},
    {"garbage pem",
     {E("\"cert\": \"signer.pem\"", "\"cert\": \"garbage.pem\"")},
     {"$.signer.cert: cannot parse a PEM certificate in \"", "garbage.pem"}},
    {"key as cert",
     {E("\"cert\": \"signer.pem\"", "\"cert\": \"signer.key\"")},
     {"$.signer.cert: no PEM certificate in"}},
    {"empty pem",
     {E("\"ca_file\": \"ca.pem\"", "\"ca_file\": \"empty.pem\"")},
     {"$.trust.demo.ca_file: no PEM certificate in"}},
    {"cert as key",
     {E("\"key\": \"signer.key\"", "\"key\": \"signer-pem.key\"")},
     {"$.signer.key: cannot parse an unencrypted PEM private key"}},
    {"key mismatch",
     {E("\"key\": \"signer.key\"", "\"key\": \"client.key\"")},
     {"$.signer.key: key in \"", "client.key\" does not match the certificate in"}},
    /* the signer protects CMP messages, the gateway's answers and a cmp upstream's requests alike */
    {"signer ed25519",
     {E("\"cert\": \"signer.pem\", \"key\": \"signer.key\"",
        "\"cert\": \"ed25519.pem\", \"key\": \"ed25519.key\"")},
     {"$.signer.key: OpenSSL 3.0 cannot protect CMP messages with a key of this type (ED25519)"}},
    {"tls key mismatch",
     {E("\"key\": \"server.key\"", "\"key\": \"client.key\"")},
     {"$.listeners[0].tls.key: key in"}},
    {"tls client_ca garbage",
     {E("\"client_ca\": \"ca.pem\"", "\"client_ca\": \"garbage.pem\"")},
     {"$.listeners[0].tls.client_ca: cannot parse a PEM certificate"}},
    /* a handshake never checked a CRL there, and trusted the "TRUSTED CERTIFICATE" the load skipped */
    {"tls client_ca with a CRL",
     {E("\"client_ca\": \"ca.pem\"", "\"client_ca\": \"ca-crl.pem\"")},
     {"$.listeners[0].tls.client_ca: PEM block 2 of \"",
      "ca-crl.pem\" is a \"X509 CRL\", not a certificate: keep only certificates in it"}},
    {"tls client_ca trusted certificate",
     {E("\"client_ca\": \"ca.pem\"", "\"client_ca\": \"ca-trusted.pem\"")},
     {"$.listeners[0].tls.client_ca: PEM block 1 of \"", "ca-trusted.pem\" is a \"TRUSTED CERTIFICATE\""}},
    {"tls client_ca with a key",
     {E("\"client_ca\": \"ca.pem\"", "\"client_ca\": \"ca-key.pem\"")},
     {"$.listeners[0].tls.client_ca: PEM block 2 of \"", "ca-key.pem\" is a \"PRIVATE KEY\""}},
    {"upstream not a CA",
     {E("\"cert\": \"issuing.pem\", \"key\": \"issuing.key\"",
        "\"cert\": \"client.pem\", \"key\": \"client.key\"")},
     {"$.upstreams.local.cert: \"", "client.pem\" is not a CA certificate"}},
    {"upstream not a CA, named by a URL with userinfo", /* it loads: the name read as a path */
     {E("\"cert\": \"issuing.pem\", \"key\": \"issuing.key\"",
        "\"cert\": \"https://u:s.abcdefgh@ca/client.pem\", \"key\": \"https://u:s.abcdefgh@ca/client.key\"")},
     {"$.upstreams.local.cert: \"", "/https://***@ca/client.pem\" is not a CA certificate"}},
    {"untrusted missing",
     {E("\"untrusted_file\": \"issuing.pem\"", "\"untrusted_file\": \"nope.pem\"")},
     {"$.trust.demo.untrusted_file: cannot open"}},
    {"chain garbage",
     {E("\"chain\": \"ca.pem\"", "\"chain\": \"garbage.pem\"")},
     {"$.upstreams.local.chain: cannot parse"}},
    {"file empty name",
     {E("\"cert\": \"signer.pem\"", "\"cert\": \"\"")},
     {"$.signer.cert: expected a file name, got \"\""}},
    {"file not string",
     {E("\"cert\": \"signer.pem\"", "\"cert\": [\"signer.pem\"]")},
     {"$.signer.cert: expected a file name, got an array"}},
    {"pbm secret short",
     {E("\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"short.secret\"")},
     {"$.pbm.demo-device.secret_file: the secret in \"", "short.secret\" must be 8..1024 bytes"}},
    {"pbm secret long",
     {E("\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"long.secret\"")},
     {"$.pbm.demo-device.secret_file", "must be 8..1024 bytes"}},
    {"pbm secret others may read",
     {E("\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"others-read.secret\"")},
     {"$.pbm.demo-device.secret_file: \"",
      "others-read.secret\" is readable or writable by others (mode 644)"}},
    {"pbm secret others may write",
     {E("\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"others-write.secret\"")},
     {"$.pbm.demo-device.secret_file: \"",
      "others-write.secret\" is readable or writable by others (mode 602)"}},
    {"pbm secret missing",
     {E("\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"nope.secret\"")},
     {"$.pbm.demo-device.secret_file: cannot open"}},
    {"pbm secret pasted",
     {E("\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"0123456789abcdef0123456789abcdef\"")},
     {"$.pbm.demo-device.secret_file: cannot open the file named by a value of 32 bytes (not quoted"}},
    {"key passphrase pasted",
     {E("\"key\": \"signer.key\"",
        "\"key\": \"signer.key\", \"key_passphrase_file\": \"s.abcdefgh.Secret2024\"")},
     {"$.signer.key_passphrase_file: cannot open the file named by a value of 21 bytes"}},
    /* a PIN in a PKCS#11 URI, where it is refused or names no file, is quoted "***" (the check below) */
    {"signer key URI with a PIN",
     {E("\"key\": \"signer.key\"",
        "\"key\": \"pkcs11:object=signer;pin-value=s.abcdefgh?module-path=/m.so\"")},
     {"$.signer.key: a PIN in the PKCS#11 URI is refused"}},
    {"signer cert URI with a PIN",
     {E("\"cert\": \"signer.pem\"",
        "\"cert\": \"pkcs11:object=signer;pin-value=s.abcdefgh?module-path=/m.so\"")},
     {"$.signer.cert: cannot open \"pkcs11:object=signer;pin-value=***?module-path=/m.so\": No such file"}},
    {"signer key URI with a PIN, its scheme upper-case", /* a URI still (RFC 3986 §3.1), no file name */
     {E("\"key\": \"signer.key\"",
        "\"key\": \"PKCS11:object=signer?module-path=/m.so&PIN-VALUE=s.abcdefgh\"")},
     {"$.signer.key: a PIN in the PKCS#11 URI is refused"}},
    /* a key in a token without a PIN file: libp11 would log in with the PIN of the key loaded before it
       (another token's, whose tries it burns), or ask for one on the console and block the start */
    {"signer key URI without a PIN file",
     {E("\"key\": \"signer.key\"", "\"key\": \"pkcs11:object=signer?module-path=/m.so\"")},
     {"$.signer.key: the key pkcs11:object=signer?module-path=/m.so is in a PKCS#11 token: give its user PIN "
      "in \"key_passphrase_file\""}},
    {"signer key passphrase file a URI with a PIN",
     {E("\"key\": \"signer.key\"", "\"key\": \"signer.key\", \"key_passphrase_file\": "
                                   "\"pkcs11:object=s;pin-value=s.abcdefgh;x=y.pin\"")},
     {"$.signer.key_passphrase_file: cannot open \"pkcs11:object=s;pin-value=***;x=y.pin\""}},
    /* references */
    {"dangling upstream",
     {E("\"upstream\": \"local\"", "\"upstream\": \"nope\"")},
     {"cmpgw.json: $.roles.default.upstream: unknown upstream \"nope\""}},
    {"dangling trust",
     {E("\"trust\": [\"demo\"]", "\"trust\": [\"demo\", \"nope\"]")},
     {"cmpgw.json: $.roles.default.trust[1]: unknown trust \"nope\""}},
    {"dangling pbm",
     {E("\"pbm\": [\"demo-device\"]", "\"pbm\": [\"nope\"]")},
     {"cmpgw.json: $.roles.default.pbm[0]: unknown pbm reference \"nope\""}},
    {"dangling default role",
     {E("\"default_path_policy\": \"role:default\"", "\"default_path_policy\": \"role:nope\"")},
     {"cmpgw.json: $.default_path_policy: unknown role \"nope\""}},
    {"dangling label role",
     {E("{ \"default\": \"role:default\" }", "{ \"x\": \"role:nope\" }")},
     {"cmpgw.json: $.label_to_path_policy.x: unknown role \"nope\""}},
    {"dangling profile role",
     {E("\"label_to_path_policy\"", "\"profiles\": { \"tls\": \"role:nope\" }, \"label_to_path_policy\"")},
     {"cmpgw.json: $.profiles.tls: unknown role \"nope\" in \"role:nope\""}},
    {"profile forbid",
     {E("\"label_to_path_policy\"", "\"profiles\": { \"tls\": \"forbid\" }, \"label_to_path_policy\"")},
     {"$.profiles.tls: expected \"role:<name>\", got \"forbid\""}},
    {"profile sign-verbatim",
     {E("\"label_to_path_policy\"",
        "\"profiles\": { \"tls\": \"sign-verbatim\" }, \"label_to_path_policy\"")},
     {"$.profiles.tls: expected \"role:<name>\", got \"sign-verbatim\""}},
    {"profile not string",
     {E("\"label_to_path_policy\"", "\"profiles\": { \"tls\": 1 }, \"label_to_path_policy\"")},
     {"$.profiles.tls: expected \"role:<name>\", got 1"}},
    {"bad profile name",
     {E("\"label_to_path_policy\"",
        "\"profiles\": { \"tls server\": \"role:default\" }, \"label_to_path_policy\"")},
     {"$.profiles: expected keys that are a profile name of 1..64 characters [A-Za-z0-9._-]",
      "got one of 10 bytes, not quoted"}},
    {"profiles not object",
     {E("\"label_to_path_policy\"", "\"profiles\": [\"tls\"], \"label_to_path_policy\"")},
     {"$.profiles: expected an object, got an array"}},
    {"dup profile",
     {E("\"label_to_path_policy\"",
        "\"profiles\": { \"tls\": \"role:default\", \"tls\": \"role:default\" }, \"label_to_path_policy\"")},
     {"$.profiles: duplicate key \"tls\""}},
    {"bad policy",
     {E("\"default_path_policy\": \"role:default\"", "\"default_path_policy\": \"allow\"")},
     {"$.default_path_policy: expected \"role:<name>\", \"sign-verbatim\" or \"forbid\", got \"allow\""}},
    {"empty role policy",
     {E("\"default_path_policy\": \"role:default\"", "\"default_path_policy\": \"role:\"")},
     {"$.default_path_policy", "got \"role:\""}},
    {"dup trust entry",
     {E("\"trust\": [\"demo\"]", "\"trust\": [\"demo\", \"demo\"]")},
     {"$.roles.default.trust[1]: duplicate entry \"demo\""}},
    {"trust entry not string",
     {E("\"trust\": [\"demo\"]", "\"trust\": [1]")},
     {"$.roles.default.trust[0]: expected a name", "got 1"}},
    {"role without auth",
     {E("\"trust\": [\"demo\"],", ""), E("\"pbm\": [\"demo-device\"],", "")},
     {"$.roles.default: a role needs at least one \"trust\" or \"pbm\" entry"}},
    /* names, labels, prefix, address, enums */
    {"bad label",
     {E("{ \"default\": \"role:default\" }", "{ \"bad label\": \"role:default\" }")},
     {"$.label_to_path_policy: expected keys that are a label of 1..64 characters", "got one of 9 bytes"}},
    {"long label",
     {E("{ \"default\": \"role:default\" }",
        "{ \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": \"role:default\" }")},
     {"$.label_to_path_policy: expected keys that are a label", "got one of 65 bytes, not quoted"}},
    {"bad role name",
     {E("\"default\": {\n      \"upstream\"", "\"de/fault\": {\n      \"upstream\"")},
     {"$.roles: expected keys that are a name", "got one of 8 bytes, not quoted"}},
    {"token role name",
     {E("\"default\": {\n      \"upstream\"", "\"s.abcdefgh/0123456789abcdef+=\": {\n      \"upstream\"")},
     {"$.roles: expected keys that are a name", "got one of 29 bytes, not quoted"}},
    /* a dot segment is refused in every path (mappings/route.c): a role or label so named is unreachable */
    {"dot-dot role name",
     {E("\"default\": {\n      \"upstream\"", "\"..\": {\n      \"upstream\"")},
     {"$.roles...: expected a name", "other than \".\" and \"..\"", "got \"..\""}},
    {"dot role name",
     {E("\"default\": {\n      \"upstream\"", "\".\": {\n      \"upstream\"")},
     {"$.roles..: expected a name", "got \".\""}},
    {"dot-dot label",
     {E("{ \"default\": \"role:default\" }", "{ \"..\": \"role:default\" }")},
     {"$.label_to_path_policy...: expected a label", "other than \".\" and \"..\"", "got \"..\""}},
    {"bad trust name",
     {E("\"demo\": { \"ca_file\"", "\"\": { \"ca_file\"")},
     {"$.trust.: expected a name", "got \"\""}},
    {"prefix trailing slash",
     {E("\"signer\":", "\"path_prefix\": \"/pki/\", \"signer\":")},
     {"$.path_prefix: expected a path like", "got \"/pki/\""}},
    {"prefix relative",
     {E("\"signer\":", "\"path_prefix\": \"pki\", \"signer\":")},
     {"$.path_prefix", "got \"pki\""}},
    {"prefix double slash",
     {E("\"signer\":", "\"path_prefix\": \"/v1//pki\", \"signer\":")},
     {"$.path_prefix", "\"/v1//pki\""}},
    {"prefix dotdot",
     {E("\"signer\":", "\"path_prefix\": \"/a/../pki\", \"signer\":")},
     {"$.path_prefix", "\"/a/../pki\""}},
    {"prefix space",
     {E("\"signer\":", "\"path_prefix\": \"/p ki\", \"signer\":")},
     {"$.path_prefix", "\"/p ki\""}},
    {"prefix root",
     {E("\"signer\":", "\"path_prefix\": \"/\", \"signer\":")},
     {"$.path_prefix", "got \"/\""}},
    {"address name",
     {E("\"address\": \"127.0.0.1\"", "\"address\": \"localhost\"")},
     {"$.listeners[0].address: expected a numeric IPv4 or IPv6 address, got \"localhost\""}},
    {"address bad v4",
     {E("\"address\": \"127.0.0.1\"", "\"address\": \"127.0.0.256\"")},
     {"$.listeners[0].address", "\"127.0.0.256\""}},
    {"client_auth bad",
     {E("\"client_auth\": \"optional\"", "\"client_auth\": \"maybe\"")},
     {"$.listeners[0].tls.client_auth: expected one of \"none\"|\"optional\"|\"require\", got \"maybe\""}},
    {"key_usage keyCertSign",
     {E("\"keyAgreement\"", "\"keyAgreement\", \"keyCertSign\"")},
     {"$.roles.default.key_usage[2]: \"keyCertSign\" is not allowed: a role never issues CA certificates"}},
    {"key_usage cRLSign",
     {E("\"keyAgreement\"", "\"cRLSign\"")},
     {"$.roles.default.key_usage[1]: \"cRLSign\" is not allowed"}},
    {"key_usage unknown",
     {E("\"keyAgreement\"", "\"keyagreement\"")},
     {"$.roles.default.key_usage[1]: got \"keyagreement\", expected one of \"digitalSignature\""}},
    {"key_usage dup",
     {E("\"keyAgreement\"", "\"digitalSignature\"")},
     {"$.roles.default.key_usage[1]: duplicate entry \"digitalSignature\""}},
    {"key_usage alias dup",
     {E("\"keyAgreement\"", "\"nonRepudiation\", \"contentCommitment\"")},
     {"$.roles.default.key_usage[2]: duplicate entry"}},
    {"eku unknown",
     {E("\"serverAuth\"", "\"anyExtendedKeyUsage\"")},
     {"$.roles.default.ext_key_usage[1]", "\"anyExtendedKeyUsage\""}},
    {"san unknown",
     {E("\"uri\"", "\"dirName\"")},
     {"$.roles.default.allowed_san_types[2]", "got \"dirName\""}},
    {"flags not array",
     {E("[\"dns\", \"ip\", \"uri\"]", "\"dns\"")},
     {"$.roles.default.allowed_san_types: expected an array of names, got \"dns\""}},
    /* "allowed_extensions": dotted OIDs only, X.690 clause 8.19.4 arcs, no repeats */
    {"ext oid name",
     {EXTS("\"nameConstraints\"")},
     {"$.roles.default.allowed_extensions[0]: expected a dotted OID like \"1.3.6.1.4.1.11129.2.4.3\", "
      "got \"nameConstraints\""}},
    {"ext oid one arc", {EXTS("\"1.2.3\", \"2\"")}, {"$.roles.default.allowed_extensions[1]", "got \"2\""}},
    {"ext oid first arc", {EXTS("\"3.1.2\"")}, {"allowed_extensions[0]", "\"3.1.2\""}},
    {"ext oid second arc", {EXTS("\"1.40.2\"")}, {"allowed_extensions[0]", "\"1.40.2\""}},
    {"ext oid leading zero", {EXTS("\"1.2.03\"")}, {"allowed_extensions[0]", "\"1.2.03\""}},
    {"ext oid empty arc", {EXTS("\"1..2\"")}, {"allowed_extensions[0]", "\"1..2\""}},
    {"ext oid trailing dot", {EXTS("\"1.2.\"")}, {"allowed_extensions[0]", "\"1.2.\""}},
    {"ext oid sign", {EXTS("\"1.2.-3\"")}, {"allowed_extensions[0]", "\"1.2.-3\""}},
    {"ext oid space", {EXTS("\" 1.2.3\"")}, {"allowed_extensions[0]"}},
    {"ext oid empty", {EXTS("\"\"")}, {"allowed_extensions[0]", "got \"\""}},
    {"ext oid number", {EXTS("1.2")}, {"allowed_extensions[0]", "got 1.2"}},
    {"ext oid too long",
     {EXTS("\"1.2.3456789.123456789.123456789.123456789.123456789.123456789.123\"")},
     {"allowed_extensions[0]"}},
    {"ext oid dup",
     {EXTS("\"1.2.3\", \"1.2.4\", \"1.2.3\"")},
     {"$.roles.default.allowed_extensions[2]: duplicate entry \"1.2.3\""}},
    {"ext oids not array",
     {EXTS_RAW("\"1.2.3\"")},
     {"$.roles.default.allowed_extensions: expected an array of at most 32 OIDs, got \"1.2.3\""}},
    {"ext oids too many",
     {EXTS("\"1.2.1\", \"1.2.2\", \"1.2.3\", \"1.2.4\", \"1.2.5\", \"1.2.6\", \"1.2.7\", \"1.2.8\", "
           "\"1.2.9\", \"1.2.10\", \"1.2.11\", \"1.2.12\", \"1.2.13\", \"1.2.14\", \"1.2.15\", \"1.2.16\", "
           "\"1.2.17\", \"1.2.18\", \"1.2.19\", \"1.2.20\", \"1.2.21\", \"1.2.22\", \"1.2.23\", \"1.2.24\", "
           "\"1.2.25\", \"1.2.26\", \"1.2.27\", \"1.2.28\", \"1.2.29\", \"1.2.30\", \"1.2.31\", \"1.2.32\", "
           "\"1.2.33\"")},
     {"$.roles.default.allowed_extensions: expected an array of at most 32 OIDs"}},
    {"upstream type",
     {E("\"type\": \"local\"", "\"type\": \"ejbca\"")},
     {"$.upstreams.local.type: expected one of \"local\"|\"vault\"|\"cfssl\"|\"cmp\", got \"ejbca\""}},
    {"local keys on vault",
     {E("\"type\": \"local\"", "\"type\": \"vault\"")},
     {"$.upstreams.local.cert: not valid for a \"vault\" upstream"}},
    {"log_level",
     {E("\"signer\":", "\"log_level\": \"verbose\", \"signer\":")},
     {"$.log_level: expected one of \"debug\"|\"info\"|\"warn\"|\"error\", got \"verbose\""}},
    /* ---- vault and cfssl upstreams ---- */
    {"vault missing url",
     {UPS, E("\"url\": \"https://127.0.0.1:8200\", ", "")},
     {"$.upstreams.vault.url: missing: required for a \"vault\" upstream"}},
    {"vault missing issuer_ca",
     {UPS, E("\"tls_ca\": \"ca.pem\", \"issuer_ca\": \"ca.pem\", ", "\"tls_ca\": \"ca.pem\", ")},
     {"$.upstreams.vault.issuer_ca: missing: required for a \"vault\" upstream"}},
    {"cfssl missing issuer_ca",
     {UPS, E("\"issuer_ca\": \"issuing.pem\", ", "")},
     {"$.upstreams.cfssl.issuer_ca: missing: required for a \"cfssl\" upstream"}},
    {"vault both token and cert auth",
     {UPS, E("\"token_file\": \"vault.token\"",
             "\"token_file\": \"vault.token\", \"tls_cert\": \"client.pem\", \"tls_key\": \"client.key\", "
             "\"auth\": {\"cert\": {}}")},
     {"$.upstreams.vault: a vault upstream needs exactly one of \"token_file\" and \"auth\""}},
    {"vault neither token nor cert auth",
     {UPS, E(", \"token_file\": \"vault.token\"", "")},
     {"$.upstreams.vault: a vault upstream needs exactly one of"}},
    {"vault cert auth without client cert",
     {UPS, E("\"token_file\": \"vault.token\"", "\"auth\": {\"cert\": {\"role\": \"gw\"}}")},
     {"$.upstreams.vault.auth: cert auth logs in with the client certificate"}},
    {"vault auth unknown method",
     {UPS, E("\"token_file\": \"vault.token\"", "\"auth\": {\"token\": {}}")},
     {"$.upstreams.vault.auth.token: unknown key"}},
    {"vault auth empty",
     {UPS, E("\"token_file\": \"vault.token\"", "\"auth\": {}")},
     {"$.upstreams.vault.auth: expected {\"cert\": {...}}"}},
    {"vault auth cert unknown key",
     {UPS, E("\"token_file\": \"vault.token\"", "\"auth\": {\"cert\": {\"name\": \"x\"}}")},
     {"$.upstreams.vault.auth.cert.name: unknown key"}},
    {"vault auth not object",
     {UPS, E("\"token_file\": \"vault.token\"", "\"auth\": \"cert\"")},
     {"$.upstreams.vault.auth: expected an object, got \"cert\""}},
    {"vault auth cert bad mount",
     {UPS, E("\"token_file\": \"vault.token\"", "\"auth\": {\"cert\": {\"mount\": \"/cert\"}}")},
     {"$.upstreams.vault.auth.cert.mount: expected a path like", "got \"/cert\""}},
    {"vault tls_cert without tls_key",
     {UPS, E("\"token_file\"", "\"tls_cert\": \"client.pem\", \"token_file\"")},
     {"$.upstreams.vault.tls_cert: \"tls_cert\" and \"tls_key\" go together"}},
    {"vault tls_key_passphrase_file without tls_key",
     {UPS, E("\"token_file\"", "\"tls_key_passphrase_file\": \"vault.token\", \"token_file\"")},
     {"$.upstreams.vault.tls_key_passphrase_file: goes with \"tls_key\""}},
    {"cfssl tls_key_passphrase_file",
     {UPS, E("\"auth_key_file\": \"hmac.key\"",
             "\"auth_key_file\": \"hmac.key\", \"tls_key_passphrase_file\": \"x\"")},
     {"$.upstreams.cfssl.tls_key_passphrase_file: not valid for a \"cfssl\" upstream"}},
    {"vault tls key mismatch",
     {UPS, E("\"token_file\"", "\"tls_cert\": \"client.pem\", \"tls_key\": \"server.key\", \"token_file\"")},
     {"$.upstreams.vault.tls_key: key in \"", "server.key\" does not match"}},
    {"vault tls over http",
     {UPS, E("https://127.0.0.1:8200", "http://127.0.0.1:8200")},
     {"$.upstreams.vault.tls_ca: TLS settings need an https:// \"url\""}},
    /* plain HTTP to an upstream off loopback: token and CSRs in cleartext, refused unless opted in */
    {"vault plain http off loopback",
     {UPS, E("\"url\": \"https://127.0.0.1:8200\", \"tls_ca\": \"ca.pem\"",
             "\"url\": \"http://vault.example:8200\"")},
     {"$.upstreams.vault.url: \"http://vault.example:8200\" is plain HTTP off loopback (tokens and CSRs in "
      "cleartext)",
      ": use an https:// \"url\" with \"tls_ca\", or set \"allow_plaintext_http\": true"}},
    {"cfssl plain http off loopback",
     {UPS, E("http://127.0.0.1:8888", "http://10.0.0.1:8888")},
     {"$.upstreams.cfssl.url: \"http://10.0.0.1:8888\" is plain HTTP off loopback (tokens and CSRs in "
      "cleartext)"}},
    {"cfssl plain http to a name that starts like loopback",
     {UPS, E("http://127.0.0.1:8888", "http://127.0.0.1.example:8888")},
     {"$.upstreams.cfssl.url: \"http://127.0.0.1.example:8888\" is plain HTTP"}},
    {"cfssl plain http to an IPv6 address off loopback",
     {UPS, E("http://127.0.0.1:8888", "http://[::2]:8888")},
     {"$.upstreams.cfssl.url: \"http://[::2]:8888\" is plain HTTP"}},
    {"cfssl plain http opt-in not a boolean",
     {UPS, E("http://127.0.0.1:8888\"", "http://10.0.0.1:8888\", \"allow_plaintext_http\": \"yes\"")},
     {"$.upstreams.cfssl.allow_plaintext_http: expected"}},
    {"vault tls_ca garbage",
     {UPS, E("\"tls_ca\": \"ca.pem\"", "\"tls_ca\": \"garbage.pem\"")},
     {"$.upstreams.vault.tls_ca: cannot parse a PEM certificate"}},
    {"vault tls_ca with a key",
     {UPS, E("\"tls_ca\": \"ca.pem\"", "\"tls_ca\": \"ca-key.pem\"")},
     {"$.upstreams.vault.tls_ca: PEM block 2 of \"",
      "ca-key.pem\" is a \"PRIVATE KEY\", not a certificate: keep only certificates in it"}},
    {"vault tls_ca with a CSR",
     {UPS, E("\"tls_ca\": \"ca.pem\"", "\"tls_ca\": \"ca-csr.pem\"")},
     {"$.upstreams.vault.tls_ca: PEM block 2 of \"", "ca-csr.pem\" is a \"CERTIFICATE REQUEST\""}},
    {"vault tls_ca trusted certificate",
     {UPS, E("\"tls_ca\": \"ca.pem\"", "\"tls_ca\": \"ca-trusted.pem\"")},
     {"$.upstreams.vault.tls_ca: PEM block 1 of \"", "ca-trusted.pem\" is a \"TRUSTED CERTIFICATE\""}},
    {"vault tls_ca a key alone",
     {UPS, E("\"tls_ca\": \"ca.pem\"", "\"tls_ca\": \"other.key\"")},
     {"$.upstreams.vault.tls_ca: PEM block 1 of \"", "other.key\" is a \"PRIVATE KEY\""}},
    {"vault token others may read",
     {UPS, E("\"vault.token\"", "\"others.token\"")},
     {"$.upstreams.vault.token_file: \"", "others.token\" is readable or writable by others (mode 604)"}},
    {"vault token missing",
     {UPS, E("\"vault.token\"", "\"nope.token\"")},
     {"$.upstreams.vault.token_file: cannot open \"", "nope.token\""}},
    /* a token pasted where its file's name goes names no file, and is counted, not quoted */
    {"vault token pasted",
     {UPS, E("\"vault.token\"", "\"s.abcdefghijklmnopqrstuvw\"")},
     {"$.upstreams.vault.token_file: cannot open the file named by a value of 25 bytes (not quoted",
      "No such file or directory"}},
    {"vault token pasted with a slash",
     {UPS, E("\"vault.token\"", "\"hvs.s.abcdefgh/0123+xyz=\"")},
     {"$.upstreams.vault.token_file: cannot open the file named by a value of 24 bytes"}},
    {"vault token missing, relative with a slash",
     {UPS, E("\"vault.token\"", "\"./run/nope\"")},
     {"$.upstreams.vault.token_file: cannot open \"", "/./run/nope\": No such file"}},
    {"vault token missing, absolute",
     {UPS, E("\"vault.token\"", "\"/nonexistent/vault-token\"")},
     {"$.upstreams.vault.token_file: cannot open \"/nonexistent/vault-token\": No such file"}},
    {"vault issuer not a CA",
     {UPS, E("\"issuer_ca\": \"ca.pem\"", "\"issuer_ca\": \"client.pem\"")},
     {"$.upstreams.vault.issuer_ca: certificate 1 in \"", "client.pem\" is not a CA certificate"}},
    {"vault issuer garbage",
     {UPS, E("\"issuer_ca\": \"ca.pem\"", "\"issuer_ca\": \"empty.pem\"")},
     {"$.upstreams.vault.issuer_ca: no PEM certificate in"}},
    {"vault mount leading slash",
     {UPS, E("\"token_file\"", "\"mount\": \"/pki\", \"token_file\"")},
     {"$.upstreams.vault.mount: expected a path like \"pki\"", "got \"/pki\""}},
    {"vault mount trailing slash",
     {UPS, E("\"token_file\"", "\"mount\": \"pki/\", \"token_file\"")},
     {"$.upstreams.vault.mount", "got \"pki/\""}},
    {"vault mount dotdot",
     {UPS, E("\"token_file\"", "\"mount\": \"pki/../sys\", \"token_file\"")},
     {"$.upstreams.vault.mount", "\"pki/../sys\""}},
    {"vault namespace empty segment",
     {UPS, E("\"token_file\"", "\"namespace\": \"ns1//\", \"token_file\"")},
     {"$.upstreams.vault.namespace: expected a namespace like", "\"ns1//\""}},
    {"vault mount empty segment",
     {UPS, E("\"token_file\"", "\"mount\": \"a//b\", \"token_file\"")},
     {"$.upstreams.vault.mount", "\"a//b\""}},
    {"vault namespace number",
     {UPS, E("\"token_file\"", "\"namespace\": 5, \"token_file\"")},
     {"$.upstreams.vault.namespace: expected a namespace like", "got 5"}},
    {"vault delay",
     {UPS, E("\"token_file\"", "\"delay\": \"1s\", \"token_file\"")},
     {"$.upstreams.vault.delay: not valid for a \"vault\" upstream"}},
    {"vault unknown key",
     {UPS, E("\"token_file\"", "\"token\": \"x\", \"token_file\"")},
     {"$.upstreams.vault.token: unknown key"}},
    {"vault unknown token key",
     {UPS, E("\"token_file\"", "\"hvs.s.abcdefgh0123\": \"x\", \"token_file\"")},
     {"$.upstreams.vault: unknown key of 18 bytes, not quoted"}},
    {"url trailing slash",
     {UPS, E("https://127.0.0.1:8200", "https://127.0.0.1:8200/")},
     {"$.upstreams.vault.url: expected \"http(s)://host[:port]\"", "got \"https://127.0.0.1:8200/\""}},
    {"url path", {UPS, E("https://127.0.0.1:8200", "https://127.0.0.1:8200/v1")}, {"$.upstreams.vault.url"}},
    {"url scheme",
     {UPS, E("https://127.0.0.1:8200", "ftp://127.0.0.1")},
     {"$.upstreams.vault.url", "ftp://"}},
    {"url port 0", {UPS, E("https://127.0.0.1:8200", "https://127.0.0.1:0")}, {"$.upstreams.vault.url"}},
    {"url port 65536",
     {UPS, E("https://127.0.0.1:8200", "https://127.0.0.1:65536")},
     {"$.upstreams.vault.url"}},
    {"url port empty", {UPS, E("https://127.0.0.1:8200", "https://127.0.0.1:")}, {"$.upstreams.vault.url"}},
    {"url no host", {UPS, E("https://127.0.0.1:8200", "https://:8200")}, {"$.upstreams.vault.url"}},
    {"url userinfo", {UPS, E("https://127.0.0.1:8200", "https://u:p@127.0.0.1")}, {"$.upstreams.vault.url"}},
    /* a URL written where a file or directory goes is quoted with its userinfo "***" */
    {"tls_ca a URL with userinfo",
     {UPS, E("\"tls_ca\": \"ca.pem\"", "\"tls_ca\": \"https://vault:s.abcdefgh@127.0.0.1/ca.pem\"")},
     {"$.upstreams.vault.tls_ca: cannot open \"", "/https://***@127.0.0.1/ca.pem\": No such file"}},
    {"store a URL with userinfo",
     {UPS, E("\"store\": \"store\"", "\"store\": \"https://u:s.abcdefgh@h/store\"")},
     {"$.upstreams.deleg.store: cannot use \"", "/https://***@h/store\": No such file"}},
    {"url userinfo password", /* the check below: "s.abcdefgh" is in no error */
     {UPS, E("https://127.0.0.1:8200", "https://vault:s.abcdefgh@127.0.0.1")},
     {"$.upstreams.vault.url: expected", "got \"https://***@127.0.0.1\""}},
    {"url userinfo password with a slash",
     {UPS, E("https://127.0.0.1:8200", "https://vault:pa/s.abcdefgh@127.0.0.1")},
     {"$.upstreams.vault.url: expected", "got \"https://***@127.0.0.1\""}},
    {"url userinfo password with a question mark",
     {UPS, E("https://127.0.0.1:8200", "https://vault:pa?s.abcdefgh@127.0.0.1")},
     {"$.upstreams.vault.url: expected", "got \"https://***@127.0.0.1\""}},
    {"url userinfo password with a slash and digits", /* reads as host:port/path: masked all the same */
     {UPS, E("https://127.0.0.1:8200", "https://vault:1234/s.abcdefgh@127.0.0.1")},
     {"$.upstreams.vault.url: expected", "got \"https://***@127.0.0.1\""}},
    {"url userinfo user name with a slash",
     {UPS, E("https://127.0.0.1:8200", "https://va/ult:s.abcdefgh@127.0.0.1")},
     {"$.upstreams.vault.url: expected", "got \"https://***@127.0.0.1\""}},
    {"url bad v6", {UPS, E("https://127.0.0.1:8200", "https://[::g]:8200")}, {"$.upstreams.vault.url"}},
    {"url query", {UPS, E("https://127.0.0.1:8200", "https://127.0.0.1?x=1")}, {"$.upstreams.vault.url"}},
    {"url not string",
     {UPS, E("\"https://127.0.0.1:8200\"", "[]")},
     {"$.upstreams.vault.url: expected a URL, got an array"}},
    {"cfssl tls_cert",
     {UPS, E("\"auth_key_file\"", "\"tls_cert\": \"client.pem\", \"auth_key_file\"")},
     {"$.upstreams.cfssl.tls_cert: not valid for a \"cfssl\" upstream"}},
    {"cfssl token_file",
     {UPS, E("\"auth_key_file\"", "\"token_file\": \"vault.token\", \"auth_key_file\"")},
     {"$.upstreams.cfssl.token_file: not valid for a \"cfssl\" upstream"}},
    {"cfssl store",
     {UPS, E("\"auth_key_file\"", "\"store\": \"store\", \"auth_key_file\"")},
     {"$.upstreams.cfssl.store: not valid for a \"cfssl\" upstream"}},
    {"vault auth_key_file",
     {UPS, E("\"token_file\"", "\"auth_key_file\": \"hmac.key\", \"token_file\"")},
     {"$.upstreams.vault.auth_key_file: not valid for a \"vault\" upstream"}},
    {"hmac odd",
     {UPS, E("\"hmac.key\"", "\"hmac-odd.key\"")},
     {"$.upstreams.cfssl.auth_key_file: the key in \"", "hmac-odd.key\" must be 16..64 bytes, in hex"}},
    {"hmac short", {UPS, E("\"hmac.key\"", "\"hmac-short.key\"")}, {"hmac-short.key\" must be 16..64 bytes"}},
    {"hmac not hex",
     {UPS, E("\"hmac.key\"", "\"hmac-nothex.key\"")},
     {"$.upstreams.cfssl.auth_key_file: the key in \"", "hmac-nothex.key\" is not hex"}},
    {"hmac too long", {UPS, E("\"hmac.key\"", "\"long.secret\"")}, {"long.secret\" must be 16..64 bytes"}},
    {"hmac missing",
     {UPS, E("\"hmac.key\"", "\"nope.key\"")},
     {"$.upstreams.cfssl.auth_key_file: cannot open"}},
    {"local url",
     {E("\"chain\": \"ca.pem\" }", "\"chain\": \"ca.pem\", \"url\": \"http://a\" }")},
     {"$.upstreams.local.url: not valid for a \"local\" upstream"}},
    {"local crl_url with userinfo",
     {E("\"chain\": \"ca.pem\" }",
        "\"chain\": \"ca.pem\", \"crl_url\": \"http://crl:s3cret@127.0.0.1/c.crl\" }")},
     {"$.upstreams.local.crl_url: a user name or password in \"http://***@127.0.0.1/c.crl\"",
      "written into every certificate issued"}},
    {"local crl_url with '@' in its path",
     {E("\"chain\": \"ca.pem\" }",
        "\"chain\": \"ca.pem\", \"crl_url\": \"http://127.0.0.1/crl@x\", \"x\": 1 }")},
     {"$.upstreams.local.x: unknown key"}},
    {"local missing cert",
     {E("\"cert\": \"issuing.pem\", ", "")},
     {"$.upstreams.local.cert: missing: required for a \"local\" upstream"}},
    {"store missing",
     {UPS, E("\"store\": \"store\"", "\"store\": \"nostore\"")},
     {"$.upstreams.deleg.store: cannot use \"", "nostore\": No such file or directory"}},
    {"store not a directory",
     {UPS, E("\"store\": \"store\"", "\"store\": \"plain.file\"")},
     {"$.upstreams.deleg.store: \"", "plain.file\" is not a directory"}},
    /* ---- roles on them ---- */
    {"upstream_role on local",
     {E("\"implicit_confirm\": true", "\"implicit_confirm\": true, \"upstream_role\": \"x\"")},
     {"$.roles.default.upstream_role: only for roles on vault or cfssl upstreams; \"local\" is a local "
      "upstream"}},
    {"crmf on local",
     {E("\"implicit_confirm\": true",
        "\"implicit_confirm\": true, \"crmf\": \"delegate\", \"delegate\": \"local\"")},
     {"$.roles.default.crmf: only for roles on vault or cfssl upstreams"}},
    {"verbatim on cfssl",
     {UPS, ROLES, E("\"upstream_role\": \"client\"", "\"sign\": \"verbatim\"")},
     {"$.roles.rc.sign: only for roles on vault upstreams; \"cfssl\" is a cfssl upstream"}},
    {"issuer_ref on cfssl",
     {UPS, ROLES, E("\"upstream_role\": \"client\"", "\"issuer_ref\": \"default\"")},
     {"$.roles.rc.issuer_ref: only for roles on vault upstreams"}},
    {"exclude_cn on cfssl",
     {UPS, ROLES, E("\"upstream_role\": \"client\"", "\"exclude_cn_from_sans\": true")},
     {"$.roles.rc.exclude_cn_from_sans: only for roles on vault upstreams"}},
    {"sign bad",
     {UPS, ROLES, E("\"crmf\": \"delegate\"", "\"sign\": \"raw\", \"crmf\": \"delegate\"")},
     {"$.roles.rv.sign: expected one of \"role\"|\"verbatim\", got \"raw\""}},
    {"crmf bad",
     {UPS, ROLES, E("\"crmf\": \"delegate\"", "\"crmf\": \"accept\"")},
     {"$.roles.rv.crmf: expected one of \"reject\"|\"delegate\", got \"accept\""}},
    {"key_reuse bad",
     {E("\"implicit_confirm\": true", "\"implicit_confirm\": true, \"key_reuse\": \"sometimes\"")},
     {"$.roles.default.key_reuse: expected one of \"refuse\"|\"allow\", got \"sometimes\""}},
    {"delegate missing",
     {UPS, ROLES, E(", \"delegate\": \"deleg\"", "")},
     {"$.roles.rv.delegate: missing: required with \"crmf\": \"delegate\""}},
    {"delegate with reject",
     {UPS, ROLES, E("\"crmf\": \"delegate\"", "\"crmf\": \"reject\"")},
     {"$.roles.rv.delegate: set, but \"crmf\" is not \"delegate\""}},
    {"delegate dangling",
     {UPS, ROLES, E("\"delegate\": \"deleg\"", "\"delegate\": \"nope\"")},
     {"$.roles.rv.delegate: unknown upstream \"nope\""}},
    {"delegate not local",
     {UPS, ROLES, E("\"delegate\": \"deleg\"", "\"delegate\": \"cfssl\"")},
     {"$.roles.rv.delegate: \"cfssl\" is a cfssl upstream: a delegate issuer must be a local upstream"}},
    /* a staged migration (mappings/migration.c, upstream/conf.c) */
    {"migration from another upstream",
     {UPS, ROLES, MIG("{\"from\": \"vault\", \"to\": \"deleg\", \"cohort\": {\"percent\": 5}}")},
     {"$.roles.rc.migration: \"from\" is \"vault\", not the role's upstream \"cfssl\""}},
    {"migration to unknown",
     {UPS, ROLES, MIG("{\"from\": \"cfssl\", \"to\": \"nope\", \"cohort\": {\"percent\": 5}}")},
     {"$.roles.rc.migration.to: unknown upstream \"nope\""}},
    {"migration to itself",
     {UPS, ROLES, MIG("{\"from\": \"cfssl\", \"to\": \"cfssl\", \"cohort\": {\"percent\": 5}}")},
     {"$.roles.rc.migration: \"from\" and \"to\" name the same upstream \"cfssl\""}},
    {"migration without cohort",
     {UPS, ROLES, MIG("{\"from\": \"cfssl\", \"to\": \"vault\"}")},
     {"$.roles.rc.migration.cohort: missing"}},
    {"cohort both",
     {UPS, ROLES,
      MIG("{\"from\": \"cfssl\", \"to\": \"vault\", \"cohort\": {\"percent\": 5, "
          "\"allowlist\": \"ca.pem\"}}")},
     {"$.roles.rc.migration.cohort: expected exactly one of \"allowlist\" and \"percent\""}},
    {"cohort empty",
     {UPS, ROLES, MIG("{\"from\": \"cfssl\", \"to\": \"vault\", \"cohort\": {}}")},
     {"$.roles.rc.migration.cohort: expected exactly one of"}},
    {"cohort percent over 100",
     {UPS, ROLES, MIG("{\"from\": \"cfssl\", \"to\": \"vault\", \"cohort\": {\"percent\": 101}}")},
     {"$.roles.rc.migration.cohort.percent"}},
    {"cohort by bad",
     {UPS, ROLES,
      MIG("{\"from\": \"cfssl\", \"to\": \"vault\", \"cohort\": {\"percent\": 1, \"by\": \"key\"}}")},
     {"$.roles.rc.migration.cohort.by: expected one of \"signer_subject\"|\"subject\", got \"key\""}},
    {"migration mode bad",
     {UPS, ROLES,
      MIG("{\"from\": \"cfssl\", \"to\": \"vault\", \"mode\": \"on\", \"cohort\": {\"percent\": 1}}")},
     {"$.roles.rc.migration.mode: expected one of \"off\"|\"shadow\"|\"live\", got \"on\""}},
    {"cohort allowlist not subjects",
     {UPS, ROLES, MIG("{\"from\": \"cfssl\", \"to\": \"vault\", \"cohort\": {\"allowlist\": \"ca.pem\"}}")},
     {"$.roles.rc.migration.cohort.allowlist: \"", "line 1: expected a one-line subject"}},
    /* a delegate issues under one CA: between two CSR-only CAs the cohort's CRMF would stay with "from" */
    {"delegate, migration between CSR-only CAs",
     {UPS, ROLES,
      E("\"delegate\": \"deleg\", \"allowed_san_types\"",
        "\"delegate\": \"deleg\", \"migration\": {\"from\": \"vault\", \"to\": \"cfssl\", \"cohort\": "
        "{\"percent\": 5}}, \"allowed_san_types\"")},
     {"$.roles.rv.delegate: the role migrates from \"vault\" to \"cfssl\", and neither signs CRMF"}},
    {"delegate without store",
     {UPS, ROLES, E("\"delegate\": \"deleg\"", "\"delegate\": \"local\"")},
     {"$.roles.rv.delegate: \"local\" has no \"store\": a delegate issuer must keep every certificate"}},
    {"delegate pathlen",
     {UPS, ROLES,
      E("\"cert\": \"delegate.pem\", \"key\": \"delegate.key\"",
        "\"cert\": \"ca.pem\", \"key\": \"ca.key\"")},
     {"$.roles.rv.delegate: the certificate of \"deleg\" must have basicConstraints pathlen:0"}},
    {"delegate foreign",
     {UPS, ROLES,
      E("\"cert\": \"delegate.pem\", \"key\": \"delegate.key\"",
        "\"cert\": \"other.pem\", \"key\": \"other.key\"")},
     {"$.roles.rv.delegate: the certificate of \"deleg\" does not chain to the issuer_ca of \"vault\""}},
    {"delegate signed with SHA-1",
     {UPS, ROLES, E("\"cert\": \"delegate.pem\"", "\"cert\": \"delegate-sha1.pem\"")},
     {"$.roles.rv.delegate: the certificate of \"deleg\" is signed with a hash under 112 bits of security "
      "(SHA-1, MD5): a delegate issuer's chain must pass the security level"}},
    {"delegate name invalid",
     {UPS, ROLES, E("\"delegate\": \"deleg\"", "\"delegate\": \"de leg\"")},
     {"$.roles.rv.delegate: expected a name"}},
    {"sign-verbatim policy without role",
     {E("\"default_path_policy\": \"role:default\"", "\"default_path_policy\": \"sign-verbatim\"")},
     {"$.default_path_policy: \"sign-verbatim\" names the role \"sign-verbatim\", which does not exist"}},
    {"sign-verbatim role not verbatim",
     {UPS, E("\"roles\": {",
             "\"roles\": { \"sign-verbatim\": { \"upstream\": \"vault\", \"trust\": [\"demo\"] },")},
     {"$.roles.sign-verbatim.sign: the role \"sign-verbatim\" must have \"sign\": \"verbatim\""}},
    /* ---- authorization ---- */
    {"authz unknown key",
     {UPS, ROLES, AUTHZ("\"tls_issuer\": []")},
     {"$.roles.rv.authorization.tls_issuer: unknown key"}},
    {"authz not object",
     {E("\"implicit_confirm\": true", "\"implicit_confirm\": true, \"authorization\": []")},
     {"$.roles.default.authorization: expected an object, got an array"}},
    {"tls_client bad",
     {UPS, ROLES, E("\"tls_client\": \"require\"", "\"tls_client\": \"none\"")},
     {"$.roles.rv.authorization.tls_client: expected one of \"optional\"|\"require\", got \"none\""}},
    {"tls_client bool",
     {UPS, ROLES, E("\"tls_client\": \"require\"", "\"tls_client\": true")},
     {"$.roles.rv.authorization.tls_client: expected one of", "got true"}},
    {"tls_trust dangling",
     {UPS, ROLES, AUTHZ("\"tls_trust\": [\"demo\", \"nope\"]")},
     {"$.roles.rv.authorization.tls_trust[1]: unknown trust \"nope\""}},
    {"tls_trust not array",
     {UPS, ROLES, AUTHZ("\"tls_trust\": \"demo\"")},
     {"$.roles.rv.authorization.tls_trust: expected an array of names, got \"demo\""}},
    {"ra_trust without ra_subjects",
     {UPS, ROLES, AUTHZ("\"ra_trust\": [\"demo\"]")},
     {"$.roles.rv.authorization.ra_trust: set, but \"ra_subjects\" is not: the role has no RA"}},
    {"ra_trust not the role's",
     {UPS, ROLES, AUTHZ("\"ra_subjects\": [\"/CN=ra\"], \"ra_trust\": [\"demo\", \"nope\"]")},
     {"$.roles.rv.authorization.ra_trust[1]: \"nope\" is not in the role's \"trust\": an RA signs with a "
      "certificate the role trusts"}},
    {"ra_trust not array",
     {UPS, ROLES, AUTHZ("\"ra_subjects\": [\"/CN=ra\"], \"ra_trust\": \"demo\"")},
     {"$.roles.rv.authorization.ra_trust: expected an array of names, got \"demo\""}},
    {"tls_must_be_signer string",
     {UPS, ROLES, AUTHZ("\"tls_must_be_signer\": \"yes\"")},
     {"$.roles.rv.authorization.tls_must_be_signer: expected true or false"}},
    {"pattern empty",
     {UPS, ROLES, AUTHZ("\"tls_subjects\": [\"\"]")},
     {"$.roles.rv.authorization.tls_subjects[0]: expected a pattern of 1..256 characters, got \"\""}},
    {"pattern not string",
     {UPS, ROLES, AUTHZ("\"signer_subjects\": [\"/CN=a\", 7]")},
     {"$.roles.rv.authorization.signer_subjects[1]: expected a pattern", "got 7"}},
    {"pattern control char",
     {UPS, ROLES, AUTHZ("\"tls_sans\": [\"a\\u0001b\"]")},
     {"$.roles.rv.authorization.tls_sans[0]: expected a pattern"}},
    {"pattern NUL",
     {UPS, ROLES, AUTHZ("\"allowed_common_names\": [\"a\\u0000b\"]")},
     {"$.roles.rv.authorization.allowed_common_names[0]: expected a pattern"}},
    {"pattern too long",
     {UPS, ROLES, AUTHZ("\"allowed_common_names\": [\"" A256 "a\"]")},
     {"$.roles.rv.authorization.allowed_common_names[0]: expected a pattern of 1..256"}},
    {"pattern dup",
     {UPS, ROLES, E("[\"*.example.com\"]", "[\"*.example.com\", \"*.example.com\"]")},
     {"$.roles.rv.authorization.allowed_dns_names[1]: duplicate entry \"*.example.com\""}},
    /* a subject pattern whose email address holds two '@' matches no subject (a subject with one is refused
       everywhere): refused, naming the role's key and the pattern, in every subject list */
    {"allowed_subjects emailAddress with two '@'",
     {UPS, ROLES, AUTHZ("\"allowed_subjects\": [\"/CN=*\", \"/CN=*/emailAddress=a@evil@example.com\"]")},
     {"$.roles.rv.authorization.allowed_subjects[1]: \"/CN=*/emailAddress=a@evil@example.com\" can never "
      "match: a subject's emailAddress with more than one '@' is refused; write one '@'"}},
    {"tls_subjects mail with two '@'",
     {UPS, ROLES, AUTHZ("\"tls_subjects\": [\"/O=Corp/mail=*@*@corp.example\"]")},
     {"$.roles.rv.authorization.tls_subjects[0]: \"/O=Corp/mail=*@*@corp.example\" can never match: a "
      "subject's mail with more than one '@' is refused"}},
    {"signer_subjects mail with two '@' in a multi-valued RDN",
     {UPS, ROLES, AUTHZ("\"signer_subjects\": [\"/O=Corp/CN=*+mail=a@@corp.example\"]")},
     {"$.roles.rv.authorization.signer_subjects[0]: ", "a subject's mail with more than one '@'"}},
    {"ra_subjects emailAddress with two '@'",
     {UPS, ROLES, AUTHZ("\"ra_subjects\": [\"/CN=ra/emailAddress=a@b@c\"]")},
     {"$.roles.rv.authorization.ra_subjects[0]: \"/CN=ra/emailAddress=a@b@c\" can never match"}},
    /* nor one whose email address is none otherwise: no '@' (a '*' matches none), nothing before or after it
     */
    {"allowed_subjects emailAddress a lone '*'",
     {UPS, ROLES, AUTHZ("\"allowed_subjects\": [\"/CN=*\", \"/CN=*/emailAddress=*\"]")},
     {"$.roles.rv.authorization.allowed_subjects[1]: \"/CN=*/emailAddress=*\" can never match: a subject's "
      "emailAddress without an '@' is refused; write one (a '*' matches none)"}},
    {"tls_subjects mail with nothing before '@'",
     {UPS, ROLES, AUTHZ("\"tls_subjects\": [\"/O=Corp/mail=@corp.example\"]")},
     {"$.roles.rv.authorization.tls_subjects[0]: \"/O=Corp/mail=@corp.example\" can never match: a subject's "
      "mail with nothing before its '@' is refused; write a local part"}},
    {"signer_subjects mail with nothing after '@'",
     {UPS, ROLES, AUTHZ("\"signer_subjects\": [\"/O=Corp/CN=*+mail=*@\"]")},
     {"$.roles.rv.authorization.signer_subjects[0]: \"/O=Corp/CN=*+mail=*@\" can never match: a subject's "
      "mail with nothing after its '@' is refused; write a domain"}},
    /* an email pattern with two '@' matches no address (one with two is refused everywhere): refused, naming
       the key and the pattern; in tls_sans only an email's (a URI pattern may hold two: test_upstreams_full)
     */
    {"allowed_emails with two '@'",
     {UPS, ROLES, AUTHZ("\"allowed_emails\": [\"*@example.com\", \"*@evil@example.com\"]")},
     {"$.roles.rv.authorization.allowed_emails[1]: \"*@evil@example.com\" can never match: an email address "
      "with more than one '@' is refused; write one '@'"}},
    {"allowed_emails with two '@' together",
     {UPS, ROLES, AUTHZ("\"allowed_emails\": [\"a@@example.com\"]")},
     {"$.roles.rv.authorization.allowed_emails[0]: \"a@@example.com\" can never match"}},
    /* an email pattern without '@' matches no email address (an email SAN holds one, and a '*' no '@'):
       refused, naming the key and the pattern; its twin with one '@' loads (test_upstreams_full) */
    {"allowed_emails without '@'",
     {UPS, ROLES, AUTHZ("\"allowed_emails\": [\"*@example.com\", \"example.com\"]")},
     {"$.roles.rv.authorization.allowed_emails[1]: \"example.com\" holds no '@' and so matches no email "
      "address: write one '@', as in \"*@example.com\""}},
    {"allowed_emails a lone '*'",
     {UPS, ROLES, AUTHZ("\"allowed_emails\": [\"*\"]")},
     {"$.roles.rv.authorization.allowed_emails[0]: \"*\" holds no '@'"}},
    /* nor one with nothing before or after its '@' (an address with nothing there is refused everywhere
       and matches no pattern): its twins, "**@*" and "a@b", load (test_upstreams_full) */
    {"allowed_emails with nothing after '@'",
     {UPS, ROLES, AUTHZ("\"allowed_emails\": [\"*@example.com\", \"*@\"]")},
     {"$.roles.rv.authorization.allowed_emails[1]: \"*@\" can never match: an email address has a domain "
      "after its '@'; write one, or a '*', as in \"*@example.com\""}},
    {"allowed_emails with nothing before '@'",
     {UPS, ROLES, AUTHZ("\"allowed_emails\": [\"@example.com\"]")},
     {"$.roles.rv.authorization.allowed_emails[0]: \"@example.com\" can never match: an email address has a "
      "local part before its '@'; write one, or a '*', as in \"*@example.com\""}},
    {"allowed_emails a lone '@'",
     {UPS, ROLES, AUTHZ("\"allowed_emails\": [\"@\"]")},
     {"$.roles.rv.authorization.allowed_emails[0]: \"@\" can never match: an email address has a local "
      "part"}},
    {"tls_sans email pattern with nothing after '@'",
     {UPS, ROLES, AUTHZ("\"tls_sans\": [\"*.example.com\", \"dev-*@\"]")},
     {"$.roles.rv.authorization.tls_sans[1]: \"dev-*@\" can never match: an email address has a domain"}},
    {"tls_sans email pattern with nothing before '@'",
     {UPS, ROLES, AUTHZ("\"tls_sans\": [\"@example.com\"]")},
     {"$.roles.rv.authorization.tls_sans[0]: \"@example.com\" can never match: an email address has a local "
      "part"}},
    {"tls_sans email pattern with two '@'",
     {UPS, ROLES, AUTHZ("\"tls_sans\": [\"*.example.com\", \"dev-*@evil@example.com\"]")},
     {"$.roles.rv.authorization.tls_sans[1]: \"dev-*@evil@example.com\" can never match: an email address "
      "with more than one '@' is refused; write one '@'"}},
    {"tls_sans email pattern with two '@' and a ':' after them",
     {UPS, ROLES, AUTHZ("\"tls_sans\": [\"a@b@c:d\"]")},
     {"$.roles.rv.authorization.tls_sans[0]: \"a@b@c:d\" can never match"}},
    /* a subject pattern with an RDN of more than GW_MAX_RDN_ATTRS (16) attributes matches no subject */
    {"allowed_subjects RDN of 17 attributes",
     {UPS, ROLES,
      AUTHZ("\"allowed_subjects\": [\"/CN=*\", "
            "\"/O=x/CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+"
            "CN=*+CN=*+CN=*+CN=*+CN=*\"]")},
     {"$.roles.rv.authorization.allowed_subjects[1]: \"/O=x/CN=*+CN=*+",
      " can never match: an RDN of more "
      "than 16 attributes matches no subject; write at most 16 in one RDN"}},
    {"tls_subjects RDN of 17 attributes",
     {UPS, ROLES,
      AUTHZ("\"tls_subjects\": [\"/CN=a+CN=b+CN=c+CN=d+CN=e+CN=f+CN=g+CN=h+CN=i+CN=j+CN=k+CN=l+CN=m+CN=n+"
            "CN=o+CN=p+OU=q\"]")},
     {"$.roles.rv.authorization.tls_subjects[0]: ", "can never match: an RDN of more than 16 attributes"}},
    /* a backslash of a subject pattern that begins no escape of the one-line form ("\+", "\xHH" of a byte
       outside printable ASCII, upper case) stands for nothing a subject's line holds: refused, naming where
     */
    {"allowed_subjects with a backslash before a star",
     {UPS, ROLES, AUTHZ("\"allowed_subjects\": [\"/CN=x\", \"/O=acme/CN=dev\\\\*\"]")},
     {"$.roles.rv.authorization.allowed_subjects[1]: ",
      ": the backslash at byte 15 begins no escape: a subject's line has only \"\\+\" and \"\\xHH\" "
      "(upper-case hex, a byte outside printable ASCII)"}},
    {"tls_subjects with lower-case hex",
     {UPS, ROLES, AUTHZ("\"tls_subjects\": [\"/CN=M\\\\xc3\\\\xbcller\"]")},
     {"$.roles.rv.authorization.tls_subjects[0]: ", "the backslash at byte 6 begins no escape"}},
    {"signer_subjects with a printable byte escaped",
     {UPS, ROLES, AUTHZ("\"signer_subjects\": [\"/CN=\\\\x41\"]")},
     {"$.roles.rv.authorization.signer_subjects[0]: ", "the backslash at byte 5 begins no escape"}},
    {"ra_subjects with a backslash at its end",
     {UPS, ROLES, AUTHZ("\"ra_subjects\": [\"/CN=ra\\\\\"]")},
     {"$.roles.rv.authorization.ra_subjects[0]: ", "the backslash at byte 7 begins no escape"}},
    /* a plus inside a pattern's value is "\\+" in JSON: "\+" is no JSON escape, not read as '+' (a boundary)
     */
    {"subject pattern with a JSON \\+",
     {UPS, ROLES, AUTHZ("\"allowed_subjects\": [\"/CN=dev\\+ops\"]")},
     {"invalid JSON"}},
    /* absent, these admit any: an empty list (a template's empty variable) must not read the same */
    {"signer_subjects empty",
     {UPS, ROLES, AUTHZ("\"signer_subjects\": []")},
     {"$.roles.rv.authorization.signer_subjects: an empty list would admit any; leave the key out for that"}},
    {"tls_subjects empty", {UPS, ROLES, AUTHZ("\"tls_subjects\": []")}, {"tls_subjects: an empty list"}},
    {"tls_sans empty", {UPS, ROLES, AUTHZ("\"tls_sans\": []")}, {"tls_sans: an empty list"}},
    {"tls_trust empty", {UPS, ROLES, AUTHZ("\"tls_trust\": []")}, {"tls_trust: an empty list"}},
    {"allowed_subjects empty",
     {UPS, ROLES, AUTHZ("\"allowed_subjects\": []")},
     {"allowed_subjects: an empty"}},
    {"allowed_common_names empty",
     {UPS, ROLES, AUTHZ("\"allowed_common_names\": []")},
     {"allowed_common_names: an empty list"}},
    {"allowed_dns_names empty",
     {UPS, ROLES, E("[\"*.example.com\"]", "[]")},
     {"allowed_dns_names: an empty"}},
    {"allowed_uris empty", {UPS, ROLES, AUTHZ("\"allowed_uris\": []")}, {"allowed_uris: an empty list"}},
    {"allowed_emails empty",
     {UPS, ROLES, AUTHZ("\"allowed_emails\": []")},
     {"allowed_emails: an empty list"}},
    {"allowed_ip_ranges empty",
     {UPS, ROLES, E("[\"10.0.0.0/8\"]", "[]")},
     {"allowed_ip_ranges: an empty list"}},
    {"patterns not array",
     {UPS, ROLES, E("[\"*.example.com\"]", "\"*.example.com\"")},
     {"$.roles.rv.authorization.allowed_dns_names: expected an array of at most 256 patterns"}},
    {"dns names without dns san",
     {UPS, ROLES, E("[\"dns\", \"ip\"]", "[\"ip\"]")},
     {"$.roles.rv.authorization.allowed_dns_names: set, but \"dns\" is not in the role's "
      "\"allowed_san_types\""}},
    {"ip ranges without ip san",
     {UPS, ROLES, E("[\"dns\", \"ip\"]", "[\"dns\"]")},
     {"$.roles.rv.authorization.allowed_ip_ranges: set, but \"ip\" is not in"}},
    {"uris without uri san",
     {UPS, ROLES, AUTHZ("\"allowed_uris\": [\"spiffe://x/*\"]")},
     {"$.roles.rv.authorization.allowed_uris: set, but \"uri\""}},
    {"cidr no prefix",
     {UPS, ROLES, E("\"10.0.0.0/8\"", "\"10.0.0.0\"")},
     {"$.roles.rv.authorization.allowed_ip_ranges[0]: expected a CIDR", "got \"10.0.0.0\""}},
    {"cidr host bits",
     {UPS, ROLES, E("\"10.0.0.0/8\"", "\"10.0.0.1/8\"")},
     {"allowed_ip_ranges[0]: expected a CIDR", "\"10.0.0.1/8\""}},
    {"cidr v4 /33", {UPS, ROLES, E("\"10.0.0.0/8\"", "\"10.0.0.0/33\"")}, {"allowed_ip_ranges[0]", "/33"}},
    {"cidr v6 /129", {UPS, ROLES, E("\"10.0.0.0/8\"", "\"::1/129\"")}, {"allowed_ip_ranges[0]", "::1/129"}},
    {"cidr leading zero", {UPS, ROLES, E("\"10.0.0.0/8\"", "\"fd00::/08\"")}, {"allowed_ip_ranges[0]"}},
    {"cidr v6 host bits", {UPS, ROLES, E("\"10.0.0.0/8\"", "\"fd00::1/64\"")}, {"allowed_ip_ranges[0]"}},
    {"cidr name", {UPS, ROLES, E("\"10.0.0.0/8\"", "\"localhost/8\"")}, {"allowed_ip_ranges[0]"}},
    {"cidr sign", {UPS, ROLES, E("\"10.0.0.0/8\"", "\"10.0.0.0/+8\"")}, {"allowed_ip_ranges[0]"}},
    {"cidr empty prefix", {UPS, ROLES, E("\"10.0.0.0/8\"", "\"10.0.0.0/\"")}, {"allowed_ip_ranges[0]"}},
    {"key type rsa small",
     {UPS, ROLES, E("[\"ec:P-256\"]", "[\"rsa:1024\"]")},
     {"$.roles.rv.authorization.allowed_key_types[0]: expected \"rsa:<bits>\" (2048..16384)",
      "got \"rsa:1024\""}},
    {"key type rsa huge", {UPS, ROLES, E("[\"ec:P-256\"]", "[\"rsa:99999\"]")}, {"allowed_key_types[0]"}},
    {"key type rsa junk", {UPS, ROLES, E("[\"ec:P-256\"]", "[\"rsa:2048x\"]")}, {"allowed_key_types[0]"}},
    {"key type rsa zero", {UPS, ROLES, E("[\"ec:P-256\"]", "[\"rsa:02048\"]")}, {"allowed_key_types[0]"}},
    {"key type rsa bare", {UPS, ROLES, E("[\"ec:P-256\"]", "[\"rsa:\"]")}, {"allowed_key_types[0]"}},
    {"key type curve",
     {UPS, ROLES, E("[\"ec:P-256\"]", "[\"ec:P-192\"]")},
     {"allowed_key_types[0]", "ec:P-192"}},
    {"key type dsa", {UPS, ROLES, E("[\"ec:P-256\"]", "[\"ec:P-384\", \"dsa\"]")}, {"allowed_key_types[1]"}},
    {"key type dup",
     {UPS, ROLES, E("[\"ec:P-256\"]", "[\"ec:P-256\", \"ed25519\", \"ec:P-256\"]")},
     {"allowed_key_types[2]: duplicate key type \"ec:P-256\""}},
    {"key type two rsa",
     {UPS, ROLES, E("[\"ec:P-256\"]", "[\"rsa:2048\", \"rsa:3072\"]")},
     {"allowed_key_types[1]: duplicate key type"}},
    {"key types empty",
     {UPS, ROLES, E("[\"ec:P-256\"]", "[]")},
     {"$.roles.rv.authorization.allowed_key_types: expected an array of 1..16 key types, got an array"}},
    {"key types not array",
     {UPS, ROLES, E("[\"ec:P-256\"]", "\"ec:P-256\"")},
     {"allowed_key_types: expected an array of 1..16 key types, got \"ec:P-256\""}},
    /* ---- CRLs ---- */
    {"crl missing",
     {E("\"untrusted_file\": \"issuing.pem\"",
        "\"untrusted_file\": \"issuing.pem\", \"crl_file\": \"nope.pem\"")},
     {"$.trust.demo.crl_file: cannot open"}},
    {"crl garbage",
     {E("\"untrusted_file\": \"issuing.pem\"",
        "\"untrusted_file\": \"issuing.pem\", \"crl_file\": \"garbage.pem\"")},
     {"$.trust.demo.crl_file: cannot parse a PEM CRL"}},
    {"crl is a cert",
     {E("\"untrusted_file\": \"issuing.pem\"",
        "\"untrusted_file\": \"issuing.pem\", \"crl_file\": \"ca.pem\"")},
     {"$.trust.demo.crl_file: no PEM CRL in"}},
    {"revocation unset",
     {E(", \"revocation\": \"none\"", "")},
     {"$.trust.demo.revocation: say how revoked client certificates are recognised: a \"crl_file\", "
      "\"upstream\" (only certificates of configured upstreams, checked there) or \"none\""}},
    {"revocation unknown",
     {E("\"revocation\": \"none\"", "\"revocation\": \"ocsp\"")},
     {"$.trust.demo.revocation: "}},
    {"revocation not a string",
     {E("\"revocation\": \"none\"", "\"revocation\": false")},
     {"$.trust.demo.revocation: "}},
    {"no revocations kept",
     {E("\"audit\": {", "\"cmp\": { \"max_revoked\": 0 },\n  \"audit\": {")},
     {"$.cmp.max_revoked: "}},
    {"revocations kept past the bound",
     {E("\"audit\": {", "\"cmp\": { \"max_revoked\": 1048577 },\n  \"audit\": {")},
     {"$.cmp.max_revoked: "}},
    {"revocation grace too long",
     {E("\"audit\": {", "\"cmp\": { \"revocation_grace\": \"200h\" },\n  \"audit\": {")},
     {"$.cmp.revocation_grace: "}},
    {"crl mixed in role",
     {E("\"revocation\": \"none\" }",
        "\"revocation\": \"none\" }, \"crl\": { \"ca_file\": \"ca.pem\", \"crl_file\": \"crl-ok.pem\" }"),
      E("\"trust\": [\"demo\"]", "\"trust\": [\"crl\", \"demo\"]")},
     {"$.roles.default.trust: mixes trust entries with and without \"crl_file\""}},
    /* ---- audit ---- */
    {"audit missing",
     {E(",\n  \"audit\": { \"file\": \"audit.log\" }", "")},
     {"cmpgw.json: $.audit: missing required key"}},
    {"audit not object",
     {E("\"audit\": { \"file\": \"audit.log\" }", "\"audit\": \"audit.log\"")},
     {"$.audit: expected an object, got \"audit.log\""}},
    {"audit file missing",
     {E("\"audit\": { \"file\": \"audit.log\" }", "\"audit\": { }")},
     {"$.audit.file: missing required key"}},
    {"audit file a URL with userinfo",
     {E("\"file\": \"audit.log\"", "\"file\": \"https://u:s.abcdefgh@h/audit.log\"")},
     {"$.audit.file: cannot create \"", "/https://***@h/audit.log\": No such file"}},
    {"audit file a URI with a PIN",
     {E("\"file\": \"audit.log\"", "\"file\": \"pkcs11:object=a;pin-value=s.abcdefgh/audit.log\"")},
     {"$.audit.file: cannot create \"pkcs11:object=a;pin-value=***\": No such file"}},
    {"audit unknown key",
     {E("\"file\": \"audit.log\"", "\"file\": \"audit.log\", \"fsync\": true")},
     {"$.audit.fsync: unknown key"}},
    {"audit field unknown",
     {E("\"file\": \"audit.log\"", "\"file\": \"audit.log\", \"audit_fields\": [\"common_name\", \"cn\"]")},
     {"$.audit.audit_fields[1]: got \"cn\", expected one of \"csr\"|\"common_name\""}},
    {"audit field dup",
     {E("\"file\": \"audit.log\"", "\"file\": \"audit.log\", \"audit_fields\": [\"csr\", \"csr\"]")},
     {"$.audit.audit_fields[1]: duplicate entry \"csr\""}},
    {"audit dir missing",
     {E("\"file\": \"audit.log\"", "\"file\": \"nodir/audit.log\"")},
     {"$.audit.file: cannot create \"", "nodir/audit.log\": No such file or directory"}},
    {"audit is a directory",
     {E("\"file\": \"audit.log\"", "\"file\": \"audit.dir\"")},
     {"$.audit.file: \"", "audit.dir\" is not a regular file"}},
    {"audit is a link", /* the start never writes through one (gw_audit_open) */
     {E("\"file\": \"audit.log\"", "\"file\": \"audit.link\"")},
     {"$.audit.file: \"", "audit.link\" is not a regular file"}},
    {"dup listener",
     {E("\"listeners\": [\n    {",
        "\"listeners\": [\n    { \"address\": \"127.0.0.1\", \"port\": 8443, \"tls\": { \"cert\": "
        "\"server.pem\", \"key\": \"server.key\", \"client_auth\": \"none\" } },\n    {")},
     {"$.listeners[1]: same address and port as $.listeners[0]"}},
};

static void test_bad(void **state)
{
    const struct bad *c = *state;
    char err[GW_ERR_LEN] = "";
    char *text = edited(c->e, 4);
    struct gw_config *cfg = parse_text(text, strlen(text), err);
    const char *at = err;
    size_t i;

    if (cfg != NULL)
        fail_msg("%s: accepted", c->name);
    for (i = 0; i < 3 && c->want[i] != NULL; i++) {
        const char *p = strstr(at, c->want[i]);
        if (p == NULL)
            fail_msg("%s: error\n  %s\nlacks\n  %s", c->name, err, c->want[i]);
        at = p + strlen(c->want[i]);
    }
    /* a secret file's content never reaches an error */
    assert_null(strstr(err, secret_short));
    assert_null(strstr(err, "0123456789abcdef"));
    assert_null(strstr(err, "s.abcdefgh"));
    assert_null(strstr(err, "s3cret"));
    assert_null(strstr(err, "de/fault"));
    assert_null(strstr(err, "tls server"));
    assert_null(strstr(err, "bad label"));
    assert_null(strstr(err, "ab0123456789"));
    free(text);
}

/* ---- valid configs ---- */

static void test_demo(void **state)
{
    char err[GW_ERR_LEN] = "";
    struct gw_config *cfg = parse_text(demo_raw, strlen(demo_raw), err);
    const struct gw_role *r;
    const struct gw_pbm_conf *p;
    const struct gw_label *l;

    (void)state;
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_int_equal(cfg->n_listeners, 1);
    assert_string_equal(cfg->listeners[0].address, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].port, 8443);
    assert_int_equal(cfg->listeners[0].client_auth, GW_CLIENT_AUTH_OPTIONAL);
    assert_non_null(strstr(cfg->listeners[0].tls_cert, dir)); /* resolved against the base dir */
    assert_int_equal(cfg->loop_threads, GW_DEFAULT_LOOP_THREADS);
    assert_int_equal(cfg->workers, GW_DEFAULT_WORKERS);
    assert_int_equal(cfg->queue_depth, GW_DEFAULT_QUEUE_DEPTH);
    assert_int_equal(cfg->limits.admission.max_requests_per_address, GW_DEFAULT_MAX_REQUESTS_PER_ADDRESS);
    assert_int_equal(cfg->limits.admission.ipv6_prefix, GW_DEFAULT_IPV6_PREFIX);
    assert_int_equal(cfg->limits.send_timeout, GW_DEFAULT_SEND_TIMEOUT);
    assert_int_equal(cfg->limits.handshake_timeout, GW_DEFAULT_HANDSHAKE_TIMEOUT);
    assert_string_equal(cfg->path_prefix, "/pki");
    assert_int_equal(cfg->log_level, GW_LOG_INFO);
    assert_non_null(cfg->signer.cert);
    assert_non_null(cfg->signer.key);
    assert_non_null(cfg->signer.chain);
    assert_int_equal(sk_X509_num(cfg->signer.chain), 0);
    assert_int_equal(cfg->n_trust, 1);
    assert_non_null(cfg->trust[0].store);
    assert_int_equal(sk_X509_num(cfg->trust[0].untrusted), 1);
    assert_int_equal(cfg->n_upstreams, 1);
    assert_int_equal(cfg->upstreams[0].timeout_ms, GW_DEFAULT_UPSTREAM_TIMEOUT_MS);
    assert_int_equal(cfg->upstreams[0].max_inflight, GW_DEFAULT_UPSTREAM_MAX_INFLIGHT);
    assert_int_equal(LOCAL(&cfg->upstreams[0])->delay_ms, 0);
    assert_int_equal(sk_X509_num(LOCAL(&cfg->upstreams[0])->chain), 1);
    assert_int_equal(cfg->cmp.message_time_window, GW_DEFAULT_MSGTIME_WINDOW);
    assert_int_equal(cfg->cmp.transaction_ttl, GW_DEFAULT_TXN_TTL);
    assert_int_equal(cfg->cmp.pbm_max_iterations, GW_DEFAULT_PBM_MAX_ITER);
    assert_int_equal(cfg->cmp.max_transactions, GW_DEFAULT_MAX_TXNS);
    assert_int_equal(cfg->cmp.max_transactions_per_identity, GW_DEFAULT_MAX_TXNS_PER_IDENTITY);
    assert_int_equal(cfg->cmp.max_revoked, GW_DEFAULT_MAX_REVOKED);
    assert_false(cfg->cmp.require_message_time);

    r = gw_config_role(cfg, "default", 7);
    assert_non_null(r);
    assert_null(gw_config_role(cfg, "default", 6));
    assert_null(gw_config_role(cfg, "defaultx", 8));
    assert_ptr_equal(r->upstream, &cfg->upstreams[0]);
    assert_int_equal(r->ttl, 720 * 3600);
    assert_int_equal(r->max_ttl, 2160 * 3600);
    assert_int_equal(r->key_usage, KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT);
    assert_int_equal(r->ext_key_usage, GW_EKU_CLIENT_AUTH | GW_EKU_SERVER_AUTH);
    assert_int_equal(r->allowed_san_types, GW_SAN_DNS);
    assert_int_equal(r->authz.subjects.n, 1);
    assert_string_equal(r->authz.subjects.v[0], "/O=cmpgw demo/CN=*");
    assert_int_equal(r->authz.dns_names.n, 1);
    assert_string_equal(r->authz.dns_names.v[0], "*.demo.example");
    assert_int_equal(r->authz.common_names.n, 1);
    assert_string_equal(r->authz.common_names.v[0], "device*");
    assert_true(r->implicit_confirm);
    assert_false(r->require_subject);
    assert_non_null(r->store);
    assert_int_equal(sk_X509_num(r->untrusted), 1);
    assert_int_equal(r->n_pbm, 1);
    assert_false(cfg->default_path_policy.forbid);
    assert_ptr_equal(cfg->default_path_policy.role, r);

    p = gw_pbm_conf_find(cfg->pbm, cfg->n_pbm, (const unsigned char *)"demo-device", 11);
    assert_non_null(p);
    assert_int_equal(p->secret_len, 32); /* 16 random bytes in hex, no newline */
    assert_null(gw_pbm_conf_find(cfg->pbm, cfg->n_pbm, (const unsigned char *)"demo-devic", 10));
    l = label_named(cfg, "default");
    assert_non_null(l);
    assert_ptr_equal(l->policy.role, r);
    assert_null(label_named(cfg, "other"));
    gw_config_free(cfg);
}

/* Every optional key set to a non-default value, and the values read back. */
static void test_full(void **state)
{
    static const struct edit e[] = {
        {"\"signer\":",
         "\"loop_threads\": 4, \"workers\": 8, \"queue_depth\": 32, \"path_prefix\": \"/v1/pki\", "
         "\"log_level\": \"debug\", \"cmp\": {\"message_time_window\": \"2m\", "
         "\"require_message_time\": true, \"transaction_ttl\": 60, \"max_transactions\": 5, "
         "\"max_transactions_per_identity\": 2, \"pbm_max_iterations\": 100000, \"max_revoked\": 1048576}, "
         "\"limits\": "
         "{\"max_requests_in_flight_per_address\": 3, \"ipv6_prefix\": 56, \"send_timeout\": \"30s\", "
         "\"handshake_timeout\": \"2s\"}, "
         "\"signer\":"},
        {"\"chain\": \"ca.pem\" }",
         "\"chain\": \"ca.pem\", \"timeout\": \"1500ms\", \"max_inflight\": 3, \"delay\": \"2s\" }"},
        {"\"implicit_confirm\": true", "\"implicit_confirm\": false, \"require_subject\": true"},
    };
    char err[GW_ERR_LEN] = "";
    char *text = edited(e, 3);
    struct gw_config *cfg = parse_text(text, strlen(text), err);

    (void)state;
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_int_equal(cfg->loop_threads, 4);
    assert_int_equal(cfg->workers, 8);
    assert_int_equal(cfg->queue_depth, 32);
    assert_string_equal(cfg->path_prefix, "/v1/pki");
    assert_int_equal(cfg->log_level, GW_LOG_DEBUG);
    assert_int_equal(cfg->cmp.message_time_window, 120);
    assert_true(cfg->cmp.require_message_time);
    assert_int_equal(cfg->cmp.transaction_ttl, 60);
    assert_int_equal(cfg->cmp.max_transactions, 5);
    assert_int_equal(cfg->cmp.max_transactions_per_identity, 2);
    assert_int_equal(cfg->cmp.pbm_max_iterations, 100000);
    assert_int_equal(cfg->cmp.max_revoked, GW_MAX_REVOKED);
    assert_int_equal(cfg->limits.admission.max_requests_per_address, 3);
    assert_int_equal(cfg->limits.admission.ipv6_prefix, 56);
    assert_int_equal(cfg->limits.send_timeout, 30);
    assert_int_equal(cfg->limits.handshake_timeout, 2);
    assert_int_equal(cfg->upstreams[0].timeout_ms, 1500);
    assert_int_equal(cfg->upstreams[0].max_inflight, 3);
    assert_int_equal(LOCAL(&cfg->upstreams[0])->delay_ms, 2000);
    assert_false(cfg->roles[0].implicit_confirm);
    assert_true(cfg->roles[0].require_subject);
    gw_config_free(cfg);
    free(text);
}

/* The twin of the profile errors: "profiles" resolves to the roles it names, in order. */
static void test_profiles(void **state)
{
    static const struct edit e[] = {
        {"\"label_to_path_policy\"",
         "\"profiles\": { \"tls-server\": \"role:default\", \"a.b_c-1\": \"role:default\" }, "
         "\"label_to_path_policy\""},
    };
    char err[GW_ERR_LEN] = "";
    char *text = edited(e, 1);
    struct gw_config *cfg = parse_text(text, strlen(text), err);

    (void)state;
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_int_equal(cfg->n_profiles, 2);
    assert_string_equal(cfg->profiles[0].name, "tls-server");
    assert_ptr_equal(cfg->profiles[0].policy.role, &cfg->roles[0]);
    assert_ptr_equal(profile_named(cfg, "a.b_c-1", 7), &cfg->profiles[1]);
    assert_null(profile_named(cfg, "tls", 3));
    assert_null(profile_named(cfg, "tls-server-x", 12));
    gw_config_free(cfg);
    free(text);
}

/* Twins of the error cases that sit just inside the bounds. */
static void test_edges(void **state)
{
    static const struct edit cases[][2] = {
        {{"\"client_ca\": \"ca.pem\",", ""}, {"\"client_auth\": \"optional\"", "\"client_auth\": \"none\""}},
        {{"\"address\": \"127.0.0.1\"", "\"address\": \"::1\""}, {"\"port\": 8443", "\"port\": 65535"}},
        {{"\"port\": 8443", "\"port\": 1"}, {"\"ttl\": \"720h\"", "\"ttl\": \"2160h\""}},
        {{"\"ttl\": \"720h\"", "\"ttl\": \"7d\""}, {"\"max_ttl\": \"2160h\"", "\"max_ttl\": 604800"}},
        {{"\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"crlf.secret\""}, {NULL, NULL}},
        {{"\"trust\": [\"demo\"],", ""},
         {"\"default_path_policy\": \"role:default\"", "\"default_path_policy\": \"forbid\""}},
        {{"\"pbm\": [\"demo-device\"],", ""},
         {"\"key_usage\": [\"digitalSignature\", \"keyAgreement\"],", ""}},
        {{"\"signer\":", "\"path_prefix\": \"/a.b_c~d-e/f\", \"signer\":"}, {NULL, NULL}},
        /* OIDs at the bounds: second arc 39 under 0, any under 2, a 0 arc, 64 characters */
        {EXTS("\"0.39.0\", \"2.999.1\", \"1.3.6.1.4.1.11129.2.4.3\", "
              "\"1.2.3456789.123456789.123456789.123456789.123456789.123456789.12\""),
         {NULL, NULL}},
        {EXTS(""), {NULL, NULL}},
        /* plain HTTP: on loopback, or on any address behind a TLS-terminating balancer */
        {{DEMO_TLS, "\"plain_http\": true"}, {NULL, NULL}},
        {{DEMO_TLS, "\"plain_http\": true, \"trusted_proxies\": [\"10.0.0.0/8\"]"},
         {DEMO_LISTEN_AT, "\"address\": \"0.0.0.0\", \"port\": 8443"}},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[GW_ERR_LEN] = "";
        char *text = edited(cases[i], 2);
        struct gw_config *cfg = parse_text(text, strlen(text), err);
        if (cfg == NULL)
            fail_msg("edge case %zu: %s", i, err);
        if (strstr(cases[i][0].repl, "plain_http") != NULL) {
            assert_true(cfg->listeners[0].plain_http);
            assert_null(cfg->listeners[0].tls_cert);
            /* off loopback, only the trusted proxies may connect */
            assert_int_equal(cfg->listeners[0].proxies_only,
                             strcmp(cfg->listeners[0].address, "0.0.0.0") == 0);
        }
        if (i == 4) {
            /* "12345678\r\n": one CRLF stripped, exactly GW_MIN_PBM_SECRET_LEN left */
            assert_int_equal(cfg->pbm[0].secret_len, 8);
            assert_memory_equal(cfg->pbm[0].secret, "12345678", 8);
        }
        if (i == 8) {
            assert_int_equal(cfg->roles[0].n_allowed_exts, 4);
            assert_int_equal(OBJ_obj2nid(cfg->roles[0].allowed_exts[2]), NID_ct_precert_poison);
        }
        if (i == 9)
            assert_int_equal(cfg->roles[0].n_allowed_exts, 0);
        if (i == 5) {
            assert_true(cfg->default_path_policy.forbid);
            assert_null(cfg->default_path_policy.role);
            assert_null(cfg->roles[0].store);
            assert_null(cfg->roles[0].untrusted);
        }
        gw_config_free(cfg);
        free(text);
    }
}

/* ---- valid upstream, role, authorization and audit configs ---- */

static struct gw_config *parse_edits(const struct edit *e, size_t n)
{
    char err[GW_ERR_LEN] = "";
    char *text = edited(e, n);
    struct gw_config *cfg = parse_text(text, strlen(text), err);

    free(text);
    if (cfg == NULL)
        fail_msg("%s", err);
    return cfg;
}

/* parse_edits that also returns what the load logged (warnings) in *log (free it). */
static struct gw_config *parse_edits_logged(const struct edit *e, size_t n, char **log)
{
    char err[GW_ERR_LEN] = "";
    char *text = edited(e, n);
    struct gw_config *cfg;

    capture_start();
    cfg = parse_text(text, strlen(text), err);
    *log = capture_end();
    free(text);
    if (cfg == NULL)
        fail_msg("refused: %s", err);
    return cfg;
}

static const struct gw_upstream_conf *up_named(const struct gw_config *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->n_upstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    fail_msg("no upstream %s", name);
    return NULL;
}

static void test_upstreams(void **state)
{
    static const struct edit e[] = {UPS, ROLES};
    static const unsigned char hmac[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                           0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    struct gw_config *cfg = parse_edits(e, 2);
    const struct gw_upstream_conf *v = up_named(cfg, "vault"), *c = up_named(cfg, "cfssl"),
                                  *d = up_named(cfg, "deleg");
    const struct gw_role *rv = gw_config_role(cfg, "rv", 2), *rc = gw_config_role(cfg, "rc", 2);

    (void)state;
    assert_string_equal(gw_upstream_conf_type(v), "vault");
    assert_string_equal(VAULT(v)->http.url, "https://127.0.0.1:8200");
    assert_non_null(strstr(VAULT(v)->http.ca_file, dir));
    assert_non_null(v->issuer_store);
    assert_int_equal(sk_X509_num(v->issuer_certs), 1);
    assert_string_equal(VAULT(v)->mount, "pki"); /* the default */
    assert_non_null(strstr(VAULT(v)->token_file, "vault.token"));
    assert_null(VAULT(v)->vault_namespace);
    assert_null(VAULT(v)->auth_cert_mount);
    assert_null(v->own_ca);
    assert_string_equal(gw_upstream_conf_type(c), "cfssl");
    assert_null(c->own_ca);
    assert_int_equal(CFSSL(c)->auth_key_len, 16);
    assert_memory_equal(CFSSL(c)->auth_key, hmac, 16);
    assert_non_null(strstr(d->store_dir, "/store"));
    assert_non_null(rv);
    assert_ptr_equal(rv->upstream, v);
    assert_string_equal(rv->upstream_role, "rv"); /* defaults to the role's name */
    assert_int_equal(rv->crmf, GW_CRMF_DELEGATE);
    assert_ptr_equal(rv->delegate, d);
    assert_int_equal(rv->sign_policy, GW_SIGN_ROLE);
    assert_null(rv->issuer_ref);
    assert_true(rv->authz.tls_required);
    assert_int_equal(rv->authz.dns_names.n, 1);
    assert_string_equal(rv->authz.dns_names.v[0], "*.example.com");
    assert_int_equal(rv->authz.ip_ranges.n, 1);
    assert_int_equal(rv->authz.n_key_rules, 1);
    assert_int_equal(rv->authz.key_rules[0].pkey_type, EVP_PKEY_EC);
    assert_int_equal(rv->authz.key_rules[0].curve_nid, NID_X9_62_prime256v1);
    assert_null(rv->authz.tls_store);
    assert_non_null(rc);
    assert_string_equal(rc->upstream_role, "client");
    assert_int_equal(rc->crmf, GW_CRMF_REJECT);
    assert_null(rc->delegate);
    /* RFC 9483 §4.1.3: a new key pair SHOULD be used */
    assert_int_equal(rc->key_reuse, GW_KEY_REUSE_REFUSE);
    assert_false(rc->authz.tls_required);
    assert_null(rc->authz.key_rules);
    /* the local role keeps no upstream role */
    assert_null(gw_config_role(cfg, "default", 7)->upstream_role);
    assert_non_null(strstr(cfg->audit.file, "/audit.log"));
    assert_int_equal(cfg->audit.fields,
                     GW_AUDIT_COMMON_NAME | GW_AUDIT_ALT_NAMES | GW_AUDIT_IP_SANS | GW_AUDIT_URI_SANS);
    gw_config_free(cfg);
}

/* An upstream's tls_key signs TLS handshakes, never a CMP message: an Ed25519 one loads (the signer's twin).
 */
static void test_upstream_tls_key_ed25519(void **state)
{
    static const struct edit e[] = {
        UPS,
        ROLES,
        E("\"token_file\": \"vault.token\"",
          "\"token_file\": \"vault.token\", \"tls_cert\": \"ed25519.pem\", \"tls_key\": \"ed25519.key\""),
    };
    struct gw_config *cfg = parse_edits(e, sizeof(e) / sizeof(e[0]));

    (void)state;
    assert_non_null(VAULT(up_named(cfg, "vault"))->http.client_key);
    gw_config_free(cfg);
}

/* Every new optional key at a non-default value, read back. */
static void test_upstreams_full(void **state)
{
    static const struct edit e[] = {
        UPS,
        ROLES,
        E("\"token_file\": \"vault.token\"",
          "\"tls_cert\": \"client.pem\", \"tls_key\": \"client.key\", \"mount\": \"pki/int\", "
          "\"namespace\": \"ns1/team-a/\", \"auth\": {\"cert\": {\"role\": \"gw\"}}, \"timeout\": \"3s\", "
          "\"max_inflight\": 4"),
        E("\"crmf\": \"delegate\"",
          "\"crmf\": \"delegate\", \"sign\": \"verbatim\", \"issuer_ref\": \"root-2024\", "
          "\"exclude_cn_from_sans\": true, \"upstream_role\": \"devices\", \"key_reuse\": \"allow\""),
        /* tls_sans: a URI pattern's '@'s are no email's; "**@*" an email's that matches addresses */
        AUTHZ("\"tls_trust\": [\"demo\"], \"tls_subjects\": [\"/O=cmpgw demo/CN=*\"], \"tls_sans\": "
              "[\"*.example.com\", \"sip:*@*@example.com\", \"**@*\", \"sip:@\"], "
              "\"tls_must_be_signer\": true, \"signer_subjects\": [\"/CN=dev-*\", \"/CN=dev-*/mail=**@**\"], "
              "\"allowed_common_names\": "
              "[\"dev-*\", \"d\\u00e9v\"], \"allowed_uris\": [\"spiffe://example/*\"], \"allowed_emails\": "
              "[\"*@example.com\", \"**@*\", \"a@b\"], \"ra_subjects\": [\"/CN=ra\"], \"ra_trust\": "
              "[\"demo\"]"),
        E("[\"dns\", \"ip\"]", "[\"dns\", \"ip\", \"uri\", \"email\"]"),
        E("[\"10.0.0.0/8\"]",
          "[\"10.0.0.0/8\", \"127.0.0.1/32\", \"0.0.0.0/0\", \"::1/128\", \"fd00::/8\", \"::/0\"]"),
        E("[\"ec:P-256\"]",
          "[\"rsa:2048\", \"ec:P-256\", \"ec:P-384\", \"ec:P-521\", \"ed25519\", \"ed448\"]"),
        E("\"file\": \"audit.log\"",
          "\"file\": \"audit.log\", \"audit_fields\": [\"csr\", \"common_name\", \"ou\", "
          "\"add_basic_constraints\"]"),
    };
    struct gw_config *cfg = parse_edits(e, sizeof(e) / sizeof(e[0]));
    const struct gw_upstream_conf *v = up_named(cfg, "vault");
    const struct gw_role *rv = gw_config_role(cfg, "rv", 2);
    const struct gw_authz *a = &rv->authz;

    (void)state;
    assert_string_equal(VAULT(v)->mount, "pki/int");
    assert_string_equal(VAULT(v)->vault_namespace, "ns1/team-a/"); /* Vault's own form */
    assert_string_equal(VAULT(v)->auth_cert_mount, "cert");        /* the default mount */
    assert_string_equal(VAULT(v)->auth_cert_role, "gw");
    assert_null(VAULT(v)->token_file);
    assert_int_equal(v->timeout_ms, 3000);
    assert_int_equal(v->max_inflight, 4);
    assert_int_equal(rv->sign_policy, GW_SIGN_VERBATIM);
    assert_string_equal(rv->issuer_ref, "root-2024");
    assert_true(rv->exclude_cn_from_sans);
    assert_int_equal(rv->key_reuse, GW_KEY_REUSE_ALLOW);
    assert_string_equal(rv->upstream_role, "devices");
    assert_int_equal(a->n_tls_trust, 1);
    assert_non_null(a->tls_store);
    assert_int_equal(sk_X509_num(a->tls_untrusted), 1);
    assert_true(a->tls_must_be_signer);
    assert_int_equal(a->tls_subjects.n, 1);
    assert_int_equal(a->tls_sans.n, 4);
    assert_int_equal(a->signer_subjects.n, 2);
    assert_int_equal(a->common_names.n, 2);
    assert_string_equal(a->common_names.v[1], "d\xc3\xa9v");
    assert_int_equal(a->uris.n, 1);
    assert_int_equal(a->emails.n, 3);
    assert_int_equal(a->ip_ranges.n, 6);
    assert_int_equal(a->n_key_rules, 6);
    assert_int_equal(a->n_ra_trust, 1);
    assert_string_equal(a->ra_trust_names[0], "demo");
    assert_int_equal(a->key_rules[0].pkey_type, EVP_PKEY_RSA);
    assert_int_equal(a->key_rules[0].min_bits, 2048);
    assert_int_equal(a->key_rules[3].curve_nid, NID_secp521r1);
    assert_int_equal(a->key_rules[4].pkey_type, EVP_PKEY_ED25519);
    assert_int_equal(a->key_rules[5].pkey_type, EVP_PKEY_ED448);
    assert_int_equal(cfg->audit.fields,
                     GW_AUDIT_CSR | GW_AUDIT_COMMON_NAME | GW_AUDIT_OU | GW_AUDIT_ADD_BASIC_CONSTRAINTS);
    gw_config_free(cfg);
}

/* Twins of the error cases just inside the rules. */
static void test_upstream_edges(void **state)
{
    static const struct edit cases[][4] = {
        {UPS, E("https://127.0.0.1:8200", "https://[::1]:65535")},
        {UPS, E("https://127.0.0.1:8200", "https://vault.example-1.com")},
        {UPS, E("http://127.0.0.1:8888", "http://localhost:1")},
        {UPS, E(", \"auth_key_file\": \"hmac.key\"", "")}, /* cfssl without authsign */
        {UPS, E("\"tls_ca\": \"ca.pem\", ", "")},          /* https with the system CA bundle */
        /* a local role may spell out the defaults of the upstream-only keys */
        {E("\"implicit_confirm\": true",
           "\"implicit_confirm\": true, \"crmf\": \"reject\", \"sign\": \"role\", "
           "\"exclude_cn_from_sans\": false")},
        /* Vault's sign-verbatim path policy with its role */
        {UPS,
         E("\"roles\": {",
           "\"roles\": { \"sign-verbatim\": { \"upstream\": \"vault\", \"trust\": [\"demo\"], "
           "\"sign\": \"verbatim\" },"),
         E("\"default_path_policy\": \"role:default\"", "\"default_path_policy\": \"sign-verbatim\"")},
        /* an authorization with nothing in it */
        {E("\"implicit_confirm\": true", "\"implicit_confirm\": true, \"authorization\": {}")},
        /* 256-byte pattern (GW_MAX_PATTERN_LEN), audit file that exists */
        {UPS, ROLES, AUTHZ("\"allowed_common_names\": [\"" A256 "\"]"),
         E("\"file\": \"audit.log\"", "\"file\": \"plain.file\"")},
        {UPS, ROLES, E("[\"ec:P-256\"]", "[\"rsa:16384\"]")},
        /* trust anchors with text between them, as bundles often have */
        {UPS, E("\"tls_ca\": \"ca.pem\"", "\"tls_ca\": \"ca-bundle.pem\"")},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[GW_ERR_LEN] = "";
        char *text = edited(cases[i], 4);
        struct gw_config *cfg = parse_text(text, strlen(text), err);
        if (cfg == NULL)
            fail_msg("upstream edge case %zu: %s", i, err);
        if (i == 6) {
            assert_non_null(cfg->default_path_policy.role);
            assert_string_equal(cfg->default_path_policy.role->name, "sign-verbatim");
        }
        if (i == 8)
            assert_int_equal(strlen(cfg->roles[0].authz.common_names.v[0]), GW_MAX_PATTERN_LEN);
        gw_config_free(cfg);
        free(text);
    }
}

/* Verifies client.pem against a role's union store: 1 valid, 0 refused (|why| = the X509_V_ERR). */
static int verify_client(const struct gw_role *r, int *why)
{
    X509 *client = read_cert("client.pem");
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok;

    assert_non_null(client);
    assert_int_equal(X509_STORE_CTX_init(ctx, r->store, client, r->untrusted), 1);
    ok = X509_verify_cert(ctx);
    *why = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_free(client);
    return ok;
}

/* crl_file reaches the role's store and the authorization's tls_store, with CRL checking on. */
static void test_crl(void **state)
{
    static const struct {
        const char *file;
        int ok, why;
    } cases[] = {
        {"crl-ok.pem", 1, X509_V_OK},
        {"crl-revoked.pem", 0, X509_V_ERR_CERT_REVOKED},
        {"crl-expired.pem", 0, X509_V_ERR_CRL_HAS_EXPIRED},
    };
    char repl[256];
    size_t i;
    int why;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct edit e[2] = {
            {"\"untrusted_file\": \"issuing.pem\"", repl},
            {"\"implicit_confirm\": true",
             "\"implicit_confirm\": true, \"authorization\": {\"tls_trust\": [\"demo\"]}"},
        };
        struct gw_config *cfg;
        snprintf(repl, sizeof(repl), "\"untrusted_file\": \"issuing.pem\", \"crl_file\": \"%s\"",
                 cases[i].file);
        capture_start();
        cfg = parse_edits(e, 2);
        free(capture_end());
        assert_non_null(cfg->trust[0].crl_file);
        assert_int_equal(verify_client(&cfg->roles[0], &why), cases[i].ok);
        assert_int_equal(why, cases[i].why);
        /* the authorization's TLS store is a union too, with the same CRLs and flags */
        {
            struct gw_role tls = cfg->roles[0];
            tls.store = tls.authz.tls_store;
            tls.untrusted = tls.authz.tls_untrusted;
            assert_int_equal(verify_client(&tls, &why), cases[i].ok);
        }
        gw_config_free(cfg);
    }
    /* the twin without crl_file: the revoked certificate passes, so the test above can fail */
    {
        struct gw_config *cfg = parse_text(demo, strlen(demo), NULL);
        assert_non_null(cfg);
        assert_int_equal(verify_client(&cfg->roles[0], &why), 1);
        gw_config_free(cfg);
    }
}

/* Warnings: a delegate without name constraints and living long; a CRL CA gap; an expired CRL. */
static void test_warnings(void **state)
{
    static const struct edit e[] = {
        UPS,
        ROLES,
        E("\"cert\": \"delegate.pem\", \"key\": \"delegate.key\"",
          "\"cert\": \"issuing.pem\", \"key\": \"issuing.key\""),
        E("\"untrusted_file\": \"issuing.pem\"",
          "\"untrusted_file\": \"issuing.pem\", \"crl_file\": \"crl-expired.pem\""),
    };
    struct gw_config *cfg;
    char *log;

    (void)state;
    capture_start();
    cfg = parse_edits(e, 4);
    log = capture_end();
    assert_non_null(
        strstr(log, "$.roles.rv.delegate: the certificate of \\\"deleg\\\" has no name constraints"));
    assert_non_null(strstr(log, "is valid for 1825 days: a delegate issuer should live at most 397"));
    assert_non_null(strstr(log, "$.trust.demo.crl_file: a CRL in"));
    gw_config_free(cfg);
    free(log);
    /* the constrained, short-lived delegate of the baseline warns of nothing */
    {
        static const struct edit ok[] = {UPS, ROLES};
        capture_start();
        cfg = parse_edits(ok, 2);
        log = capture_end();
        assert_null(strstr(log, "delegate"));
        gw_config_free(cfg);
        free(log);
    }
}

/* The demo's own: its listener and the admin listener on each loop thread, with their connections. */
#define DEMO_LOOP_FDS (GW_DEFAULT_LOOP_THREADS * (1 + 1 + 1 + GW_MAX_ADMIN_CONNECTIONS))
#define HTTP_UP_FDS (GW_DEFAULT_UPSTREAM_CONNECTIONS + GW_DEFAULT_WORKERS) /* its pool and each worker's */
#define LIMITS(x) E("\"run_as_root\": true", "\"run_as_root\": true, \"limits\": " x)

/*
 * The descriptors a configuration may hold: max_connections, each loop thread's listening sockets, the
 * admin listener's connections and one accepted past the caps, the connections of trusted proxies that
 * wait for their header, each HTTP upstream's pool and each worker's connection, and the reserve.
 */
static void test_fds_counted(void **state)
{
    static const struct {
        const char *name;
        struct edit e[2];
        size_t total;
    } cases[] = {
        {"demo", {E("^", "")}, GW_DEFAULT_MAX_CONNECTIONS + DEMO_LOOP_FDS + GW_FD_RESERVE},
        {"max_connections",
         {LIMITS("{\"max_connections\": 100000}")},
         100000 + DEMO_LOOP_FDS + GW_FD_RESERVE},
        {"http upstreams",
         {UPS, ROLES},
         GW_DEFAULT_MAX_CONNECTIONS + DEMO_LOOP_FDS + 2 * HTTP_UP_FDS + GW_FD_RESERVE},
        {"a pool's size",
         {UPS, E("\"token_file\": \"vault.token\" }",
                 "\"token_file\": \"vault.token\", \"max_connections\": 1000 }")},
         GW_DEFAULT_MAX_CONNECTIONS + DEMO_LOOP_FDS + 2 * HTTP_UP_FDS + 1000 -
             GW_DEFAULT_UPSTREAM_CONNECTIONS + GW_FD_RESERVE},
        {"trusted proxies",
         {E(DEMO_LISTEN_AT, DEMO_LISTEN_AT ", \"trusted_proxies\": [\"10.0.0.0/8\"]")},
         GW_DEFAULT_MAX_CONNECTIONS + DEMO_LOOP_FDS + GW_DEFAULT_LOOP_THREADS * GW_MAX_PROXY_PENDING +
             GW_FD_RESERVE},
    };
    struct gw_config_fds n;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cfg = parse_edits(cases[i].e, cases[i].e[1].find != NULL ? 2 : 1);
        gw_config_fds(cfg, &n);
        if (n.total != cases[i].total)
            fail_msg("%s: %zu descriptors, want %zu", cases[i].name, n.total, cases[i].total);
        assert_int_equal(n.total, n.connections + n.listening + n.upstream + n.redis + GW_FD_RESERVE);
        gw_config_free(cfg);
    }
}

/* In a child, under a hard RLIMIT_NOFILE of |hard|: 1 if loading |e| warns of the open files, else 0. */
static int warns_of_fds(const struct edit *e, size_t n, rlim_t hard)
{
    struct rlimit rl = {hard, hard};
    int status;
    pid_t pid;

    assert_true((pid = fork()) >= 0);
    if (pid == 0) {
        struct gw_config *cfg;
        char *log;

        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            _exit(2);
        cfg = parse_edits_logged(e, n, &log);
        status = strstr(log, "$.limits.max_connections: the configuration may hold") != NULL;
        gw_config_free(cfg);
        free(log);
        _exit(status);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 2);
    return WEXITSTATUS(status);
}

/*
 * A hard limit of open files below what the configuration may hold is a config warning with the
 * numbers: a start raises the soft limit to it and no further. Its twin, a hard limit that holds them
 * all, warns of nothing.
 */
static void test_fds_over_hard_limit(void **state)
{
    static const struct edit e[] = {LIMITS("{\"max_connections\": 10000}")};
    size_t need = 10000 + DEMO_LOOP_FDS + GW_FD_RESERVE;

    (void)state;
    assert_int_equal(warns_of_fds(e, 1, need - 1), 1);
    assert_int_equal(warns_of_fds(e, 1, need), 0);
}

/*
 * A secret file others may read or write is refused (above, "bad"); one its group may read or write
 * loads with a warning: root:cmpgw 0640 is how the gateway's user reads it again at a reload.
 */
static void test_secret_group_warns(void **state)
{
    static const struct {
        struct edit e[2];
        const char *key, *file;
    } cases[] = {
        {{E("\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"group-read.secret\"")},
         "$.pbm.demo-device.secret_file",
         "group-read.secret"},
        {{E("\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"group-write.secret\"")},
         "$.pbm.demo-device.secret_file",
         "group-write.secret"},
        {{UPS, E("\"vault.token\"", "\"group.token\"")}, "$.upstreams.vault.token_file", "group.token"},
    };
    struct gw_config *cfg;
    char want[512], *log;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        capture_start();
        cfg = parse_edits(cases[i].e, cases[i].e[1].find != NULL ? 2 : 1);
        log = capture_end();
        assert_non_null(cfg);
        snprintf(want, sizeof(want), "%s: \\\"%s/%s\\\" is readable or writable by its group", cases[i].key,
                 dir, cases[i].file);
        if (strstr(log, want) == NULL)
            fail_msg("case %zu: no warning\n  %s\nin\n  %s", i, want, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A private key file, and its passphrase file, is a secret (gw_conf_open_secret): one others may
 * read or write is refused unread, naming the file and its mode; one its group may read loads with a
 * warning (root:cmpgw 0640); one only its owner may read loads quietly. Every slot that names a key.
 */
static void test_key_modes(void **state)
{
    enum { LOADS, WARNS, REFUSED };
    static const struct {
        const char *find, *pre, *post, *json_path, *src; /* the file's name goes between pre and post */
        bool ups;
    } slots[] = {
        {"\"key\": \"signer.key\"", "\"key\": \"", "\"", "$.signer.key", "signer.key", false},
        {"\"key\": \"server.key\"", "\"key\": \"", "\"", "$.listeners[0].tls.key", "server.key", false},
        {"\"key\": \"issuing.key\"", "\"key\": \"", "\"", "$.upstreams.local.key", "issuing.key", false},
        {"\"key\": \"delegate.key\"", "\"key\": \"", "\"", "$.upstreams.deleg.key", "delegate.key", true},
        {"\"token_file\": \"vault.token\" }",
         "\"token_file\": \"vault.token\", \"tls_cert\": \"client.pem\", \"tls_key\": \"", "\" }",
         "$.upstreams.vault.tls_key", "client.key", true},
        {"\"key\": \"signer.key\"", "\"key\": \"signer.key\", \"key_passphrase_file\": \"", "\"",
         "$.signer.key_passphrase_file", "vault.token", false},
    };
    static const struct {
        mode_t mode;
        int outcome;
    } modes[] = {
        {0600, LOADS},   {0400, LOADS},   {0640, WARNS},   {0620, WARNS},
        {0644, REFUSED}, {0604, REFUSED}, {0602, REFUSED},
    };
    char name[64], repl[256], want[512], err[GW_ERR_LEN], *text, *log;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
            struct edit e[2] = {UPS, {slots[i].find, repl}};
            const struct edit *edits = slots[i].ups ? e : e + 1;

            snprintf(name, sizeof(name), "mode-%03o-%s", (unsigned)modes[m].mode, slots[i].src);
            copy_file(slots[i].src, name, modes[m].mode);
            snprintf(repl, sizeof(repl), "%s%s%s", slots[i].pre, name, slots[i].post);
            text = edited(edits, slots[i].ups ? 2 : 1);
            err[0] = '\0';
            capture_start();
            cfg = parse_text(text, strlen(text), err);
            log = capture_end();
            free(text);
            if (modes[m].outcome == REFUSED) {
                snprintf(
                    want, sizeof(want),
                    "%s: \"%s/%s\" is readable or writable by others (mode %03o): chmod it 0600 (or 0640 "
                    "to share it with the gateway's group)",
                    slots[i].json_path, dir, name, (unsigned)modes[m].mode);
                if (cfg != NULL || strstr(err, want) == NULL)
                    fail_msg("%s: loaded, or not refused with\n  %s\nbut\n  %s", name, want, err);
            } else {
                if (cfg == NULL)
                    fail_msg("%s: refused: %s", name, err);
                snprintf(want, sizeof(want), "%s: \\\"%s/%s\\\" is readable or writable by its group",
                         slots[i].json_path, dir, name);
                if ((strstr(log, want) != NULL) != (modes[m].outcome == WARNS))
                    fail_msg("%s: warning expected %d, log:\n  %s", name, modes[m].outcome == WARNS, log);
            }
            gw_config_free(cfg);
            free(log);
        }
    }
}

/*
 * A file the configuration names, a secret or key or a certificate, must be a regular file: a FIFO is
 * refused without blocking the load (an open for reading would wait for a writer), a directory or a
 * device is refused by its kind. A symlink to a regular file (systemd credentials, Kubernetes
 * secrets) loads. An alarm turns a hang into a failure.
 */
static void test_file_not_regular(void **state)
{
    static const struct {
        const char *file, *kind; /* kind NULL: loads */
    } files[] = {
        {"secret.fifo", "a FIFO"},
        {"secret.dir", "a directory"},
        {"/dev/null", "a device"},
        {"linked.token", NULL},
    };
    static const struct {
        const char *find, *pre, *json_path;
        bool ups;
    } slots[] = {
        {"\"token_file\": \"vault.token\"", "\"token_file\": \"", "$.upstreams.vault.token_file", true},
        {"\"key\": \"signer.key\"", "\"key\": \"", "$.signer.key", false},
        {"\"cert\": \"signer.pem\"", "\"cert\": \"", "$.signer.cert", false},
    };
    char path[256], repl[256], want[512], err[GW_ERR_LEN], *text;
    struct gw_config *cfg;

    (void)state;
    snprintf(path, sizeof(path), "%s/secret.fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(path, sizeof(path), "%s/secret.dir", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/vault.token", dir);
    snprintf(repl, sizeof(repl), "%s/linked.token", dir);
    assert_int_equal(symlink(path, repl), 0);
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
            struct edit e[2] = {UPS, {slots[i].find, repl}};
            const struct edit *edits = slots[i].ups ? e : e + 1;

            if (files[f].kind == NULL && !slots[i].ups)
                continue; /* the link points at a token, not a key or certificate */
            snprintf(repl, sizeof(repl), "%s%s\"", slots[i].pre, files[f].file);
            text = edited(edits, slots[i].ups ? 2 : 1);
            err[0] = '\0';
            alarm(20);
            cfg = parse_text(text, strlen(text), err);
            alarm(0);
            free(text);
            if (files[f].kind == NULL) {
                if (cfg == NULL)
                    fail_msg("%s: refused: %s", files[f].file, err);
                gw_config_free(cfg);
                continue;
            }
            snprintf(want, sizeof(want), "%s: \"%s%s%s\" is not a regular file (%s)", slots[i].json_path,
                     files[f].file[0] == '/' ? "" : dir, files[f].file[0] == '/' ? "" : "/", files[f].file,
                     files[f].kind);
            if (cfg != NULL || strstr(err, want) == NULL)
                fail_msg("%s at %s: loaded, or not refused with\n  %s\nbut\n  %s", files[f].file,
                         slots[i].json_path, want, err);
            gw_config_free(cfg);
        }
    }
}

/*
 * A plain-http upstream on loopback (127.0.0.0/8, ::1, localhost) loads quietly; one elsewhere loads
 * only with "allow_plaintext_http": true, and with a warning naming it.
 */
static void test_plaintext_upstream(void **state)
{
    static const struct {
        const char *url, *extra;
        bool warns;
    } cases[] = {
        {"http://127.0.0.1:8888", "", false},
        {"http://127.8.9.10:8888", "", false},
        {"http://localhost:8888", "", false},
        {"http://LocalHost", "", false},
        {"http://[::1]:8888", "", false},
        {"http://10.0.0.1:8888", ", \"allow_plaintext_http\": true", true},
        {"http://cfssl.example", ", \"allow_plaintext_http\": true", true},
    };
    char repl[256], want[256], *log;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct edit e[2] = {UPS, {"\"url\": \"http://127.0.0.1:8888\"", repl}};

        snprintf(repl, sizeof(repl), "\"url\": \"%s\"%s", cases[i].url, cases[i].extra);
        cfg = parse_edits_logged(e, 2, &log);
        snprintf(want, sizeof(want), "$.upstreams.cfssl.url: \\\"%s\\\" is plain HTTP off loopback",
                 cases[i].url);
        if ((strstr(log, want) != NULL) != cases[i].warns)
            fail_msg("%s: warning expected %d, log:\n  %s", cases[i].url, cases[i].warns, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A role without allowed_subjects lets a client choose its subject; another role that trusts the same
 * CA and admits by subject would take such a certificate. Warned at load, once per pair, naming both
 * roles and the key; not when allowed_subjects is set, nor when the other role trusts another CA. An
 * allow-list line that names its trust entry admits that entry's certificates alone: warned only of
 * the entries its subject lines name (with the entry), and of none for serial lines.
 */
static void test_free_subjects_warn(void **state)
{
    static const struct {
        const char *authz, *trust, *default_authz, *by; /* by NULL: no warning */
        const char *allow;                              /* the "device_allowlist" file; NULL: none */
    } cases[] = {
        {"\"signer_subjects\": [\"/O=Corp/CN=*\"]", "demo", "", "signer_subjects", NULL},
        {"\"tls_subjects\": [\"/O=Corp/CN=*\"]", "demo", "", "tls_subjects", NULL},
        {"\"tls_subjects\": [\"/O=Corp/CN=*\"], \"tls_trust\": [\"demo\"]", "demo", "", "tls_subjects", NULL},
        {"\"ra_subjects\": [\"/O=Corp/CN=ra-*\"]", "demo", "", "ra_subjects", NULL},
        {"\"signer_subjects\": [\"/O=Corp/CN=*\"]", "demo",
         ", \"authorization\": { \"allowed_subjects\": [\"/CN=*\"] }", NULL, NULL},
        {"\"signer_subjects\": [\"/O=Corp/CN=*\"]", "oth", "", NULL, NULL},
        {"\"tls_subjects\": [\"/O=Corp/CN=*\"], \"tls_trust\": [\"oth\"]", "demo", "", NULL, NULL},
        {"\"tls_client\": \"require\"", "demo", "", NULL, NULL},
        /* an allow-list's subject lines admit under the trust entry they name, not the role's whole trust */
        {"", "demo", "", "device_allowlist", "/O=Corp/CN=bs-1\n"},
        {"", "demo", "", "device_allowlist, trust:demo", "trust:demo /O=Corp/CN=bs-1\n"},
        {"", "demo\", \"oth", "", "device_allowlist, trust:demo",
         "trust:oth /O=Corp/CN=bs-1\ntrust:demo /O=Corp/CN=bs-2\n"},
        {"", "demo\", \"oth", "", NULL, "trust:oth /O=Corp/CN=bs-1\n"},
        {"", "demo\", \"oth", "", NULL, "trust:demo serial:01\ntrust:oth /O=Corp/CN=bs-1\n"},
        {"", "oth", "", NULL, "trust:demo /O=Corp/CN=bs-1\n"}, /* an entry the role does not trust */
    };
    char role[512], def[256], want[512], *log;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct edit e[] = {
            {"\"roles\": {", role},
            {"\"trust\": {",
             "\"trust\": { \"oth\": { \"ca_file\": \"other.pem\", \"revocation\": \"none\" },"},
            {"\"implicit_confirm\": true", def},
        };

        if (cases[i].allow != NULL)
            put_file("gated.allow", cases[i].allow, strlen(cases[i].allow), 0644);
        snprintf(role, sizeof(role),
                 "\"roles\": { \"gated\": { \"upstream\": \"local\", \"trust\": [\"%s\"], \"authorization\": "
                 "{ %s }%s },",
                 cases[i].trust, cases[i].authz,
                 cases[i].allow != NULL ? ", \"device_allowlist\": \"gated.allow\"" : "");
        snprintf(def, sizeof(def), "\"implicit_confirm\": true%s", cases[i].default_authz);
        cfg = parse_edits_logged(e, 3, &log);
        snprintf(want, sizeof(want),
                 "$.roles.default.authorization.allowed_subjects: unset, so role \\\"default\\\" issues any "
                 "subject a client asks for under the CA of upstream \\\"local\\\", which role \\\"gated\\\" "
                 "trusts and admits by subject (%s)",
                 cases[i].by != NULL ? cases[i].by : "");
        if (cases[i].by != NULL && strstr(log, want) == NULL)
            fail_msg("case %zu: no warning\n  %s\nin\n  %s", i, want, log);
        if (cases[i].by == NULL && strstr(log, "allowed_subjects: unset") != NULL)
            fail_msg("case %zu: warned:\n  %s", i, log);
        /* once per pair, and never of a role about itself ("gated" has no allowed_subjects either) */
        if (cases[i].by != NULL &&
            strstr(strstr(log, want) + strlen(want), "allowed_subjects: unset") != NULL)
            fail_msg("case %zu: warned more than once:\n  %s", i, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A migration of the demo role to "next", an upstream of the fields |up| and |cert| as the value of its last,
 * under the trust entry |trust| (its fields).
 */
static struct gw_config *parse_migration_logged(const char *up, const char *cert, const char *trust,
                                                char **log)
{
    char ups[512];
    const struct edit e[] = {
        {"\"upstreams\": {", ups},
        {"\"implicit_confirm\": true",
         "\"implicit_confirm\": true, \"migration\": { \"from\": \"local\", \"to\": \"next\", "
         "\"cohort\": { \"percent\": 5 } }"},
        {"\"ca_file\": \"ca.pem\", \"untrusted_file\": \"issuing.pem\"", trust},
    };

    snprintf(ups, sizeof(ups), "\"upstreams\": { \"next\": { %s: \"%s\" },", up, cert);
    return parse_edits_logged(e, 3, log);
}

#define NEXT_LOCAL "\"type\": \"local\", \"key\": \"delegate.key\", \"cert\""
#define NEXT_VAULT                                                                                           \
    "\"type\": \"vault\", \"url\": \"https://127.0.0.1:8200\", \"tls_ca\": \"ca.pem\", "                     \
    "\"token_file\": \"vault.token\", \"issuer_ca\""
#define MIGRATION_WARNED "$.roles.default.migration: the CA of \\\"next\\\""

/*
 * A migrating role whose new CA chains to its trust only through a SHA-1 signature warns as one that
 * does not chain at all: the chains of the devices it issues would be verified at GW_SIGNER_AUTH_LEVEL.
 * Its twin, the same CA and key signed with SHA-256, does not. The role holds each as its intermediate.
 */
static void test_migration_weak_chain_warns(void **state)
{
    static const char *const certs[] = {"delegate-sha1.pem", "delegate.pem"};
    char trust[128], *log;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++) {
        snprintf(trust, sizeof(trust), "\"ca_file\": \"ca.pem\", \"untrusted_file\": \"%s\"", certs[i]);
        cfg = parse_migration_logged(NEXT_LOCAL, certs[i], trust, &log);
        if ((strstr(log, MIGRATION_WARNED) != NULL) != (i == 0) ||
            (i == 0 && strstr(log, "does not chain to the role's trust entries") == NULL))
            fail_msg("%s: %s", certs[i], log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A migrating role whose new CA chains to the root it trusts but is neither among its anchors nor its
 * intermediates warns: a device's chain is built from the certificates it sends and the role's, and a device
 * sends its own certificate, so its kur and rr would be refused. Its twins, the CA as an intermediate or an
 * anchor of the role, do not; a certificate of the CA's name on another key is no copy of it; and every CA a
 * bundle issues under counts, not its first (a root listed before its CA chains to itself).
 */
static void test_migration_unheld_ca_warns(void **state)
{
    static const struct {
        const char *up, *cert, *trust;
        bool warns;
    } cases[] = {
        {NEXT_LOCAL, "delegate.pem", "\"ca_file\": \"ca.pem\", \"untrusted_file\": \"issuing.pem\"", true},
        {NEXT_LOCAL, "delegate.pem", "\"ca_file\": \"ca.pem\", \"untrusted_file\": \"both-root.pem\"", false},
        {NEXT_LOCAL, "delegate.pem", "\"ca_file\": \"ca-delegate.pem\", \"untrusted_file\": \"issuing.pem\"",
         false},
        {NEXT_LOCAL, "delegate.pem", "\"ca_file\": \"ca.pem\", \"untrusted_file\": \"rekeyed.pem\"", true},
        {NEXT_VAULT, "root-delegate.pem", "\"ca_file\": \"ca.pem\", \"untrusted_file\": \"issuing.pem\"",
         true},
        {NEXT_VAULT, "root-delegate.pem", "\"ca_file\": \"ca.pem\", \"untrusted_file\": \"delegate.pem\"",
         false},
    };
    const char *want =
        MIGRATION_WARNED " (/CN=delegate) is neither a trust anchor nor an intermediate of the "
                         "role's trust entries";
    struct gw_config *cfg;
    char *log, *at;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cfg = parse_migration_logged(cases[i].up, cases[i].cert, cases[i].trust, &log);
        at = strstr(log, want);
        if ((at != NULL) != cases[i].warns || (at != NULL && strstr(at + 1, MIGRATION_WARNED) != NULL) ||
            (at == NULL && strstr(log, MIGRATION_WARNED) != NULL))
            fail_msg("case %zu: %s", i, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A delegate that stands in for a migration's "to" (the role's own upstream signs CRMF) issues the moved
 * devices' certificates: a role that holds "to"'s CA but not the delegate's warns of the delegate, by name;
 * its twin, with both CAs among its intermediates, does not.
 */
static void test_migration_delegate_ca_warns(void **state)
{
    static const char *const untrusted[] = {"mid.pem", "mid-both.pem"};
    char trust[128], *log;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(untrusted) / sizeof(untrusted[0]); i++) {
        const struct edit e[] = {
            {"\"upstreams\": {",
             "\"upstreams\": { \"next\": { " NEXT_VAULT
             ": \"mid-root.pem\" }, \"md\": { \"type\": \"local\", "
             "\"cert\": \"mid-delegate.pem\", \"key\": \"mid-delegate.key\", \"chain\": \"mid-root.pem\", "
             "\"store\": \"store2\" },"},
            {"\"implicit_confirm\": true",
             "\"implicit_confirm\": true, \"crmf\": \"delegate\", \"delegate\": \"md\", \"migration\": { "
             "\"from\": \"local\", \"to\": \"next\", \"cohort\": { \"percent\": 5 } }"},
            {"\"ca_file\": \"ca.pem\", \"untrusted_file\": \"issuing.pem\"", trust},
        };

        snprintf(trust, sizeof(trust), "\"ca_file\": \"ca.pem\", \"untrusted_file\": \"%s\"", untrusted[i]);
        cfg = parse_edits_logged(e, 3, &log);
        if ((strstr(log, "$.roles.default.migration: the CA of \\\"md\\\" (/CN=mid delegate) is neither") !=
             NULL) != (i == 0) ||
            strstr(log, MIGRATION_WARNED) != NULL)
            fail_msg("%s: %s", untrusted[i], log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A migration's "from" and "to" may not share an issuing CA (name and key): an rr or a status check
 * follows the issuer, and would go to the other. Every issuing CA of either issuer_ca counts, not its
 * first: with "to" issuing under two CAs, one of them "from"'s, a holder's rr of a "from" certificate
 * could go to "to". A root both bundles list for their chains issues neither's certificates.
 */
static void test_migration_shared_issuing_ca(void **state)
{
    static const struct {
        const char *from, *to; /* the issuer_ca of "cfssl" (from) and of "vault" (to) */
        bool refused;
    } cases[] = {
        {"issuing.pem", "both-root.pem", true},           /* "to" adds a CA before "from"'s */
        {"both-root.pem", "issuing-root.pem", true},      /* "from" had one before "to"'s */
        {"issuing-root.pem", "both-root.pem", true},      /* that CA and the root in both */
        {"issuing.pem", "issuing-root.pem", true},        /* the first of each */
        {"issuing-root.pem", "delegate-root.pem", false}, /* only the root in common */
        {"delegate-root.pem", "issuing-root.pem", false},
    };
    char from[128], to[128], err[GW_ERR_LEN];
    struct gw_config *cfg;
    char *text;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct edit e[] = {
            UPS,
            ROLES,
            MIG("{\"from\": \"cfssl\", \"to\": \"vault\", \"cohort\": {\"percent\": 5}}"),
            {"\"issuer_ca\": \"issuing.pem\"", from},
            {"\"issuer_ca\": \"ca.pem\"", to},
        };

        snprintf(from, sizeof(from), "\"issuer_ca\": \"%s\"", cases[i].from);
        snprintf(to, sizeof(to), "\"issuer_ca\": \"%s\"", cases[i].to);
        text = edited(e, sizeof(e) / sizeof(e[0]));
        err[0] = '\0';
        cfg = parse_text(text, strlen(text), err);
        free(text);
        if ((cfg == NULL) != cases[i].refused)
            fail_msg("case %zu (%s, %s): %s", i, cases[i].from, cases[i].to, cfg == NULL ? err : "accepted");
        if (cases[i].refused &&
            (strstr(err, "$.roles.rc.migration.to: \"cfssl\" and \"vault\" issue under the same CA name and "
                         "key (/O=cmpgw demo/CN=cmpgw demo issuing CA): their certificates could not be told "
                         "apart") == NULL))
            fail_msg("case %zu: %s", i, err);
        gw_config_free(cfg);
    }
}

/*
 * A shared issuing CA whose name X509_NAME_oneline cannot write (a '/' in it) is still named, in RFC 2253
 * form: the refusal is the shared CA, not "out of memory".
 */
static void test_migration_shared_ca_name_with_slash(void **state)
{
    const struct edit e[] = {
        UPS,
        ROLES,
        MIG("{\"from\": \"cfssl\", \"to\": \"vault\", \"cohort\": {\"percent\": 5}}"),
        {"\"issuer_ca\": \"issuing.pem\"", "\"issuer_ca\": \"slash.pem\""},
        {"\"issuer_ca\": \"ca.pem\"", "\"issuer_ca\": \"slash-root.pem\""}, /* its delegate's root too */
    };
    char err[GW_ERR_LEN] = "", *text = edited(e, sizeof(e) / sizeof(e[0]));
    struct gw_config *cfg = parse_text(text, strlen(text), err);

    (void)state;
    free(text);
    assert_null(cfg);
    if (strstr(err, "$.roles.rc.migration.to: \"cfssl\" and \"vault\" issue under the same CA name and key "
                    "(CN=slash CA,O=ops/east): their certificates could not be told apart") == NULL)
        fail_msg("%s", err);
}

/*
 * A role that bounds neither the DNS names nor the CNs a request may ask for (nor its whole subject)
 * warns, once, naming itself and what to set: it issues certificates naming any host. Its twins, a
 * role with any of the three, load without it; a second role of each kind is warned of by its own name.
 */
static void test_any_host_role_warns(void **state)
{
    static const struct {
        const char *authz; /* the default role's "authorization", or "" */
        bool warns;
    } cases[] = {
        {"", true},
        {", \"authorization\": { \"tls_client\": \"optional\" }", true},
        {", \"authorization\": { \"allowed_dns_names\": [\"*.devices.example.com\"] }", false},
        {", \"authorization\": { \"allowed_common_names\": [\"dev-*\"] }", false},
        {", \"authorization\": { \"allowed_subjects\": [\"/O=acme/CN=dev-*\"] }", false},
    };
    static const char *const want =
        "cmpgw.json: $.roles.default.authorization: neither allowed_dns_names nor allowed_common_names is "
        "set, so role \\\"default\\\" issues certificates naming any host a client asks for";
    static const char *const other = "$.roles.other.authorization: neither allowed_dns_names";
    char def[256], *log, *at;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct edit e[] = {
            {"\"implicit_confirm\": true", def},
            {"\"roles\": {",
             "\"roles\": { \"other\": { \"upstream\": \"local\", \"trust\": [\"demo\"], \"authorization\": "
             "{ \"allowed_subjects\": [\"/CN=x\"] } }, \"free\": { \"upstream\": \"local\", "
             "\"trust\": [\"demo\"] },"},
        };

        snprintf(def, sizeof(def), "\"implicit_confirm\": true%s", cases[i].authz);
        cfg = parse_edits_logged(e, 2, &log);
        at = strstr(log, want);
        if ((at != NULL) != cases[i].warns)
            fail_msg("case %zu: %s", i, log);
        if (at != NULL && strstr(at + 1, want) != NULL)
            fail_msg("case %zu: warned more than once: %s", i, log);
        if (at != NULL && strstr(log, "set allowed_dns_names (a host-name CN is held to it too) or "
                                      "allowed_common_names on \\\"default\\\"") == NULL)
            fail_msg("case %zu: no advice: %s", i, log);
        /* the other roles: one free of any name list warns by its own name, one with allowed_subjects not */
        if (strstr(log, "$.roles.free.authorization: neither allowed_dns_names") == NULL ||
            strstr(log, other) != NULL)
            fail_msg("case %zu: %s", i, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A role that bounds its subject but copies DNS SANs without allowed_dns_names warns that any host may be
 * named as a DNS SAN; with allowed_dns_names, or without "dns" in allowed_san_types, it does not.
 */
static void test_any_dns_san_role_warns(void **state)
{
    static const struct {
        const char *san_types; /* the default role's allowed_san_types */
        const char *authz;     /* and its authorization */
        bool warns;
    } cases[] = {
        {"[\"dns\"]", "{ \"allowed_common_names\": [\"dev-*\"] }", true},
        {"[\"dns\", \"ip\"]", "{ \"allowed_subjects\": [\"/CN=dev-*\"] }", true},
        {"[\"ip\"]", "{ \"allowed_common_names\": [\"dev-*\"] }", false},
        {"[\"dns\"]", "{ \"allowed_common_names\": [\"dev-*\"], \"allowed_dns_names\": [\"*.example.com\"] }",
         false},
    };
    static const char *const want =
        "cmpgw.json: $.roles.default.authorization: allowed_san_types has \\\"dns\\\" but allowed_dns_names "
        "is "
        "not set, so role \\\"default\\\" issues certificates naming any host a client asks for as a DNS SAN";
    char types[128], authz[256], *log, *at;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct edit e[] = {{"\"allowed_san_types\": [\"dns\", \"ip\", \"uri\"]", types},
                                 {"\"implicit_confirm\": true", authz}};

        snprintf(types, sizeof(types), "\"allowed_san_types\": %s", cases[i].san_types);
        snprintf(authz, sizeof(authz), "\"implicit_confirm\": true, \"authorization\": %s", cases[i].authz);
        cfg = parse_edits_logged(e, 2, &log);
        at = strstr(log, want);
        if ((at != NULL) != cases[i].warns || (at != NULL && strstr(at + 1, want) != NULL))
            fail_msg("case %zu: %s", i, log);
        if (strstr(log, "$.roles.default.authorization: neither allowed_dns_names") != NULL)
            fail_msg("case %zu: warned as a role of any name: %s", i, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A role that may issue TLS server certificates (serverAuth, or no ext_key_usage: any purpose) and bounds
 * its CN by allowed_subjects alone issues "CN=localhost" or "CN=vault" where a pattern's '*' stands for
 * the CN: a host name without a dot, which X509_check_host takes as the host of https://vault/. It warns,
 * once, naming itself and what to set. Its twins load without it: a client-only role, one with
 * allowed_common_names or allowed_dns_names as well, and one whose patterns hold no '*' (each names its
 * one subject).
 */
static void test_subjects_only_server_role_warns(void **state)
{
    static const struct {
        const char *eku; /* the default role's ext_key_usage (the demo's grants serverAuth) */
        const char *authz;
        bool warns;
    } cases[] = {
        {"[\"clientAuth\", \"serverAuth\"]", "{ \"allowed_subjects\": [\"/O=acme/CN=*\"] }", true},
        {"[]", "{ \"allowed_subjects\": [\"/O=acme/CN=*\"] }", true},
        {"[\"serverAuth\"]", "{ \"allowed_subjects\": [\"/O=acme/CN=x\", \"/O=acme/CN=dev-*\"] }", true},
        {"[\"serverAuth\"]", "{ \"allowed_subjects\": [\"/O=acme/*=*\"] }", true},
        {"[\"clientAuth\"]", "{ \"allowed_subjects\": [\"/O=acme/CN=*\"] }", false},
        {"[\"serverAuth\"]",
         "{ \"allowed_subjects\": [\"/O=acme/CN=*\"], \"allowed_common_names\": [\"dev-*\"] }", false},
        {"[\"serverAuth\"]",
         "{ \"allowed_subjects\": [\"/O=acme/CN=*\"], \"allowed_dns_names\": [\"*.example.com\"] }", false},
        {"[\"serverAuth\"]", "{ \"allowed_subjects\": [\"/O=acme/CN=vault\"] }", false},
    };
    static const char *const want =
        "cmpgw.json: $.roles.default.authorization: role \\\"default\\\" may issue TLS server certificates "
        "and "
        "only allowed_subjects bounds their common name, where a '*' admits any host name without a dot";
    char eku[128], authz[256], *log, *at;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct edit e[] = {{"\"ext_key_usage\": [\"clientAuth\", \"serverAuth\"]", eku},
                                 {"\"implicit_confirm\": true", authz}};

        snprintf(eku, sizeof(eku), "\"ext_key_usage\": %s", cases[i].eku);
        snprintf(authz, sizeof(authz), "\"implicit_confirm\": true, \"authorization\": %s", cases[i].authz);
        cfg = parse_edits_logged(e, 2, &log);
        at = strstr(log, want);
        if ((at != NULL) != cases[i].warns || (at != NULL && strstr(at + 1, want) != NULL))
            fail_msg("case %zu: %s", i, log);
        if (at != NULL &&
            strstr(at, "set allowed_common_names or allowed_dns_names (a host-name CN is held to "
                       "it too) on \\\"default\\\"") == NULL)
            fail_msg("case %zu: no advice: %s", i, log);
        if (strstr(log, "$.roles.default.authorization: neither allowed_dns_names") != NULL)
            fail_msg("case %zu: warned as a role of any name: %s", i, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A role whose allowed_common_names holds a pattern that admits any host name ("*", "**", "*.*") bounds a
 * host name in its CN no more than one without the list, and allowed_dns_names does not hold such a CN: it
 * warns, once, naming the pattern and what to set; with allowed_subjects as well, as a role that only
 * allowed_subjects bounds. A one-label pattern ("*") admits "vault" and "localhost", which matter where the
 * role may issue TLS server certificates; one of more labels ("*.*") admits a dotted host name on any role.
 * Twins: patterns that name the hosts, a client-only role with "*", and allowed_subjects without a '*'.
 */
static void test_any_cn_role_warns(void **state)
{
    static const struct {
        const char *eku; /* the default role's ext_key_usage (the demo's grants serverAuth) */
        const char *authz;
        const char *warns; /* the pattern warned of, "subjects" for warn_bare_host's warning, or NULL */
    } cases[] = {
        {"[\"clientAuth\", \"serverAuth\"]", "{ \"allowed_common_names\": [\"*\"] }", "[0]: \\\"*\\\""},
        {"[]", "{ \"allowed_common_names\": [\"**\"] }", "[0]: \\\"**\\\""},
        {"[\"serverAuth\"]", "{ \"allowed_common_names\": [\"dev-*\", \"*\"] }", "[1]: \\\"*\\\""},
        {"[\"clientAuth\"]", "{ \"allowed_common_names\": [\"dev-*\", \"*.*\"] }", "[1]: \\\"*.*\\\""},
        /* allowed_dns_names does not hold a CN where allowed_common_names is set */
        {"[\"serverAuth\"]",
         "{ \"allowed_common_names\": [\"*\"], \"allowed_dns_names\": [\"*.example.com\"] }",
         "[0]: \\\"*\\\""},
        {"[\"serverAuth\"]",
         "{ \"allowed_common_names\": [\"*\"], \"allowed_subjects\": [\"/O=acme/CN=*\"] }", "subjects"},
        /* twins */
        {"[\"serverAuth\"]", "{ \"allowed_common_names\": [\"dev-*\", \"*.example.com\"] }", NULL},
        {"[\"serverAuth\"]", "{ \"allowed_common_names\": [\"*-*\", \"*.\", \".*\", \"*..*\"] }", NULL},
        {"[\"clientAuth\"]", "{ \"allowed_common_names\": [\"*\"] }", NULL},
        {"[\"serverAuth\"]",
         "{ \"allowed_common_names\": [\"*\"], \"allowed_subjects\": [\"/O=acme/CN=vault\"] }", NULL},
    };
    static const char *const want = "cmpgw.json: $.roles.default.authorization.allowed_common_names";
    static const char *const tail =
        " admits any host name of as many labels, so role \\\"default\\\" issues certificates naming any "
        "host "
        "a client asks for in the common name (which TLS clients take as the host name of a certificate "
        "without DNS SANs): name the hosts in allowed_common_names (\\\"device-*\\\", "
        "\\\"*.devices.example.com\\\") on \\\"default\\\"";
    static const char *const bare =
        "$.roles.default.authorization: role \\\"default\\\" may issue TLS server "
        "certificates and only allowed_subjects bounds their common name";
    char eku[128], authz[256], line[512], *log, *at;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct edit e[] = {{"\"ext_key_usage\": [\"clientAuth\", \"serverAuth\"]", eku},
                                 {"\"implicit_confirm\": true", authz}};
        bool subjects = cases[i].warns != NULL && strcmp(cases[i].warns, "subjects") == 0;

        snprintf(eku, sizeof(eku), "\"ext_key_usage\": %s", cases[i].eku);
        snprintf(authz, sizeof(authz), "\"implicit_confirm\": true, \"authorization\": %s", cases[i].authz);
        cfg = parse_edits_logged(e, 2, &log);
        assert_non_null(cfg);
        at = strstr(log, want);
        if ((at != NULL) != (cases[i].warns != NULL && !subjects) ||
            (at != NULL && strstr(at + 1, want) != NULL))
            fail_msg("case %zu: %s", i, log);
        snprintf(line, sizeof(line), "%s%s%s", want, cases[i].warns != NULL ? cases[i].warns : "", tail);
        if (at != NULL && strstr(log, line) == NULL)
            fail_msg("case %zu: not\n  %s\nin\n  %s", i, line, log);
        if ((strstr(log, bare) != NULL) != subjects)
            fail_msg("case %zu: %s", i, log);
        if (strstr(log, "$.roles.default.authorization: neither allowed_dns_names") != NULL)
            fail_msg("case %zu: warned as a role of no names: %s", i, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * A local issuer without a store knows nothing it issued: every rr naming one of its certificates is
 * refused and its status is always "not revoked", so none can ever be revoked, whatever check_revocation
 * says. It warns, once, naming itself and what to set; its twin with a store (the delegate's too) does not.
 */
static void test_storeless_local_warns(void **state)
{
    static const char *const want =
        "cmpgw.json: $.upstreams.local: no store, so this issuer keeps no record of what it issues: its "
        "certificates can never be revoked (every rr naming one is refused, and check_revocation finds none "
        "revoked): set \\\"store\\\"";
    static const char *const stores[] = {"\"chain\": \"ca.pem\"",
                                         "\"chain\": \"ca.pem\", \"store\": \"store\""};
    char *log, *at;
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(stores) / sizeof(stores[0]); i++) {
        const struct edit e[] = {{"\"chain\": \"ca.pem\"", stores[i]}, UPS, ROLES};

        cfg = parse_edits_logged(e, 3, &log);
        at = strstr(log, want);
        if ((at != NULL) != (i == 0) || (at != NULL && strstr(at + 1, want) != NULL))
            fail_msg("case %zu: %s", i, log);
        if (strstr(log, "$.upstreams.deleg: no store") != NULL)
            fail_msg("case %zu: warned of the delegate: %s", i, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * Every loop thread has its own socket per listener (the admin listener too), and one hand-over message
 * carries at most GW_MAX_HANDOVER_FDS: with more, every hand-over would fail, so a configuration that
 * asks for one is refused at load. Three listeners and the admin one: 63 loop threads pass (252), 64 do
 * not (256), nor without handover_socket need they.
 */
static void test_handover_socket_count(void **state)
{
#define MORE_LISTENERS                                                                                       \
    "\"listeners\": [{\"address\": \"127.0.0.1\", \"port\": 8445, \"tls\": {\"cert\": \"server.pem\", "      \
    "\"key\": \"server.key\", \"client_auth\": \"none\"}}, {\"address\": \"127.0.0.1\", \"port\": 8446, "    \
    "\"tls\": {\"cert\": "                                                                                   \
    "\"server.pem\", \"key\": \"server.key\", \"client_auth\": \"none\"}}, "
    static const struct {
        const char *top;
        bool ok;
    } cases[] = {
        {"\"handover_socket\": \"h.sock\", \"loop_threads\": 63, \"signer\":", true},
        {"\"handover_socket\": \"h.sock\", \"loop_threads\": 64, \"signer\":", false},
        {"\"loop_threads\": 64, \"signer\":", true},
    };
    char err[GW_ERR_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct edit e[2] = {E("\"listeners\": [", MORE_LISTENERS), E("\"signer\":", cases[i].top)};
        char *text = edited(e, 2);
        struct gw_config *cfg;

        err[0] = '\0';
        cfg = parse_text(text, strlen(text), err);
        if ((cfg != NULL) != cases[i].ok)
            fail_msg("case %zu: %s", i, cfg != NULL ? "accepted" : err);
        if (!cases[i].ok && strstr(err, "$.handover_socket: loop_threads (64) x listening sockets per loop "
                                        "thread (4, the admin listener's among them) = 256, more than one "
                                        "hand-over carries (253): lower loop_threads") == NULL)
            fail_msg("case %zu: %s", i, err);
        gw_config_free(cfg);
        free(text);
    }
#undef MORE_LISTENERS
}

/*
 * At a reload, loop_threads and handover_socket are restart-only while listeners are added: the sockets
 * a hand-over would send are counted with the loop threads that run, and only if a hand-over socket is
 * served. A file lowering loop_threads does not let a listener in that 64 running loop threads cannot hand
 * over; one raising them does not refuse a listener the running 2 can. The start still counts the file's.
 */
static void test_handover_socket_count_at_reload(void **state)
{
#define MORE_LISTENERS                                                                                       \
    "\"listeners\": [{\"address\": \"127.0.0.1\", \"port\": 8445, \"tls\": {\"cert\": \"server.pem\", "      \
    "\"key\": \"server.key\", \"client_auth\": \"none\"}}, {\"address\": \"127.0.0.1\", \"port\": 8446, "    \
    "\"tls\": {\"cert\": "                                                                                   \
    "\"server.pem\", \"key\": \"server.key\", \"client_auth\": \"none\"}}, "
    static const struct {
        const char *top;
        struct gw_config_running run;
        bool ok, start_ok;
    } cases[] = {
        {"\"handover_socket\": \"h.sock\", \"loop_threads\": 2, \"signer\":", {64, true}, false, true},
        {"\"handover_socket\": \"h.sock\", \"loop_threads\": 64, \"signer\":", {2, true}, true, false},
        {"\"handover_socket\": \"h.sock\", \"loop_threads\": 2, \"signer\":", {64, false}, true, true},
        {"\"loop_threads\": 2, \"signer\":", {63, true}, true, true},
    };
    char err[GW_ERR_LEN], path[256];

    (void)state;
    snprintf(path, sizeof(path), "%s/reload.json", dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct edit e[2] = {E("\"listeners\": [", MORE_LISTENERS), E("\"signer\":", cases[i].top)};
        char *text = edited(e, 2);
        struct gw_config *cfg, *start;

        put_file("reload.json", text, strlen(text), 0644);
        err[0] = '\0';
        cfg = gw_config_reload(path, &cases[i].run, NULL, err);
        if ((cfg != NULL) != cases[i].ok)
            fail_msg("case %zu: %s", i, cfg != NULL ? "accepted" : err);
        if (!cases[i].ok &&
            strstr(err, "$.listeners: the running loop_threads (64: restart-only) x listening sockets per "
                        "loop thread (4, the admin listener's among them) = 256, more than one hand-over "
                        "carries (253): have fewer listeners") == NULL)
            fail_msg("case %zu: %s", i, err);
        start = gw_config_load(path, err);
        if ((start != NULL) != cases[i].start_ok)
            fail_msg("case %zu at a start: %s", i, start != NULL ? "accepted" : err);
        gw_config_free(cfg);
        gw_config_free(start);
        free(text);
    }
#undef MORE_LISTENERS
}

/*
 * A hand-over without Redis warns that its two gateways (and any two across a restart) keep replay
 * caches of their own; without cmp.revoked_file either, that the successor takes what was revoked
 * through its predecessor. With Redis neither.
 */
static void test_handover_without_shared_state_warns(void **state)
{
    static const char *const replays =
        "cmpgw.json: $.handover_socket: without cmp.state \\\"redis\\\" the two "
        "gateways of a hand-over keep replay caches of their own";
    static const char *const revoked =
        "cmpgw.json: $.handover_socket: without cmp.revoked_file (or cmp.state \\\"redis\\\") a "
        "successor takes the certificates revoked through the gateway it takes over from";
    static const struct {
        const char *cmp;
        bool replays, revoked;
    } cases[] = {
        {"", true, true},
        {"\"cmp\": {\"revoked_file\": \"r.list\"}, ", true, false},
        {"\"cmp\": {\"state\": {\"backend\": \"redis\", \"address\": \"127.0.0.1\"}}, ", false, false},
    };
    char repl[256];
    struct gw_config *cfg;
    char *log;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct edit e[1] = {{"\"signer\":", repl}};

        snprintf(repl, sizeof(repl), "\"handover_socket\": \"h.sock\", %s\"signer\":", cases[i].cmp);
        cfg = parse_edits_logged(e, 1, &log);
        assert_non_null(cfg);
        if ((strstr(log, replays) != NULL) != cases[i].replays ||
            (strstr(log, revoked) != NULL) != cases[i].revoked)
            fail_msg("case %zu: %s", i, log);
        if (!cases[i].replays && !cases[i].revoked)
            assert_null(strstr(log, "handover_socket"));
        gw_config_free(cfg);
        free(log);
    }
}

/* A "trusted_proxies" range of every address loads with a warning: any client may claim any address. */
static void test_trusted_everyone_warns(void **state)
{
    static const struct {
        const char *ranges;
        bool warns;
    } cases[] = {
        {"[\"0.0.0.0/0\"]", true},
        {"[\"10.0.0.5/32\", \"::/0\"]", true},
        {"[\"10.0.0.0/8\", \"fd00::/64\"]", false},
    };
    char repl[256];
    struct gw_config *cfg;
    char *log;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct edit e[1] = {{DEMO_LISTEN_AT, repl}};

        snprintf(repl, sizeof(repl), "%s, \"trusted_proxies\": %s", DEMO_LISTEN_AT, cases[i].ranges);
        capture_start();
        cfg = parse_edits(e, 1);
        log = capture_end();
        assert_non_null(cfg);
        if ((strstr(log, "$.listeners[0].trusted_proxies: a range of every address") != NULL) !=
            cases[i].warns)
            fail_msg("case %zu (%s): %s", i, cases[i].ranges, log);
        gw_config_free(cfg);
        free(log);
    }
}

/*
 * The directory that holds a path's last name, which the checks of the files the gateway writes judge:
 * a trailing slash is part of that name ("store/" is held by its parent, not by itself).
 */
static void test_dir_of(void **state)
{
    static const struct {
        const char *path, *dir;
    } cases[] = {
        {"/var/lib/cmpgw/store", "/var/lib/cmpgw"},
        {"/var/lib/cmpgw/store/", "/var/lib/cmpgw"},
        {"/var/lib/cmpgw/store//", "/var/lib/cmpgw"},
        {"/var/lib/cmpgw//store", "/var/lib/cmpgw"},
        {"/store/", "/"},
        {"/store", "/"},
        {"///store", "/"},
        {"/", "/"},
        {"//", "/"},
        {"store", "."},
        {"store/", "."},
        {"a/store/", "a"},
        {"./store", "."},
        {"", "."},
    };
    char *got;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(got = gw_conf_dir_of(cases[i].path));
        if (strcmp(got, cases[i].dir) != 0)
            fail_msg("\"%s\": \"%s\", not \"%s\"", cases[i].path, got, cases[i].dir);
        free(got);
    }
}

/* gw_conf_check_dir of |file| under |top|: its rc, with the error expected to hold |why| (or none). */
static void check_dir_case(const char *top, const char *file, int rc, const char *why)
{
    char path[256], err[GW_ERR_LEN] = "";
    int got;

    snprintf(path, sizeof(path), "%s/%s", top, file);
    got = gw_conf_check_dir("audit.file", path, geteuid(), err);
    if (got != rc || (why != NULL && strstr(err, why) == NULL) || (why == NULL && err[0] != '\0'))
        fail_msg("%s: rc %d (not %d): \"%s\"", file, got, rc, err);
}

/*
 * The directory a written file is created in is named by itself, and every directory above it, by
 * name and where a link on the way leads, is held to the same rule: whoever may rename a name on the
 * way, or replace a link there, could put a directory of their choice under the file (a syslog group
 * swapping /var/log/cmpgw for a link to /etc/cron.d). A sticky directory (/tmp) passes.
 */
static void test_check_dir_chain(void **state)
{
    char top[64], path[256], want[GW_ERR_LEN];
    static const char *const dirs[] = {"a", "a/logs", "b", "b/c", "b/c/real"};

    (void)state;
    snprintf(top, sizeof(top), "%s", "/tmp/cmpgw-test-dirchain-XXXXXX");
    assert_non_null(mkdtemp(top));
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", top, dirs[i]);
        assert_int_equal(mkdir(path, 0700), 0);
    }
    check_dir_case(top, "a/logs/audit.log", 0, NULL);
    /* the file's directory a link, even to a directory that passes */
    snprintf(path, sizeof(path), "%s/a/logs", top);
    assert_int_equal(symlink(path, strcat(strcpy(want, top), "/a/link")), 0);
    snprintf(want, sizeof(want), "audit.file: the directory \"%s/a/link\" is a symbolic link", top);
    check_dir_case(top, "a/link/audit.log", GW_ERR_FORBIDDEN, want);
    /* a directory above it that others may write, with the sticky bit and without */
    assert_int_equal(chmod(strcat(strcpy(path, top), "/a"), 01777), 0);
    check_dir_case(top, "a/logs/audit.log", 0, NULL);
    assert_int_equal(chmod(path, 0777), 0);
    snprintf(want, sizeof(want),
             "audit.file: the directory \"%s/a\" is writable by group or others without the sticky bit "
             "(mode 0777)",
             top);
    check_dir_case(top, "a/logs/audit.log", GW_ERR_FORBIDDEN, want);
    check_dir_case(top, "a/logs/../logs/audit.log", GW_ERR_FORBIDDEN, want);
    assert_int_equal(chmod(path, 0700), 0);
    /* a link higher up: judged where it leads, every directory above that as well */
    snprintf(path, sizeof(path), "%s/b/c", top);
    assert_int_equal(symlink(path, strcat(strcpy(want, top), "/up")), 0);
    check_dir_case(top, "up/real/audit.log", 0, NULL);
    assert_int_equal(chmod(strcat(strcpy(path, top), "/b"), 0770), 0);
    snprintf(want, sizeof(want), "the directory \"%s/b\" is writable by group or others", top);
    check_dir_case(top, "up/real/audit.log", GW_ERR_FORBIDDEN, want);
    assert_int_equal(chmod(path, 0700), 0);
    /* a link of another user's where the sticky bit lets its owner replace it */
    if (geteuid() == 0) {
        assert_int_equal(lchown(strcat(strcpy(path, top), "/up"), 65534, (gid_t)-1), 0);
        snprintf(want, sizeof(want), "audit.file: the symbolic link \"%s/up\" is owned by uid 65534", top);
        check_dir_case(top, "up/real/audit.log", GW_ERR_FORBIDDEN, want);
    }
    snprintf(path, sizeof(path), "rm -rf '%s'", top);
    assert_int_equal(system(path), 0);
}

/*
 * gw_conf_open_dir holds the directory it judged: a file opened from it is there, though the directory's
 * name was swapped since for a link to another (which a check of the name, then an open by the name
 * again, would have written into: root appending to a file of its own elsewhere).
 */
static void test_open_dir_holds_what_it_judged(void **state)
{
    char top[64], path[256], other[256], err[GW_ERR_LEN] = "";
    const char *name = NULL;
    int held = -1, fd;

    (void)state;
    snprintf(top, sizeof(top), "%s", "/tmp/cmpgw-test-opendir-XXXXXX");
    assert_non_null(mkdtemp(top));
    snprintf(path, sizeof(path), "%s/logs", top);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(other, sizeof(other), "%s/other", top);
    assert_int_equal(mkdir(other, 0700), 0);
    snprintf(path, sizeof(path), "%s/logs/audit.log", top);
    assert_int_equal(gw_conf_open_dir("audit.file", path, geteuid(), &held, &name, err), 0);
    assert_string_equal(name, "audit.log");
    /* the swap: the judged directory renamed away, a link to another put at its name */
    assert_int_equal(rename(strcat(strcpy(path, top), "/logs"), strcat(strcpy(err, top), "/judged")), 0);
    assert_int_equal(symlink(other, path), 0);
    assert_true((fd = openat(held, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0);
    close(fd);
    close(held);
    assert_int_equal(access(strcat(strcpy(path, top), "/judged/audit.log"), F_OK), 0);
    assert_int_not_equal(access(strcat(strcpy(path, other), "/audit.log"), F_OK), 0);
    /* the name walked again now ends at the link, and is refused */
    snprintf(path, sizeof(path), "%s/logs/audit.log", top);
    assert_int_equal(gw_conf_open_dir("audit.file", path, geteuid(), &held, &name, err), GW_ERR_FORBIDDEN);
    assert_int_equal(held, -1);
    snprintf(path, sizeof(path), "rm -rf '%s'", top);
    assert_int_equal(system(path), 0);
}

/* A symbolic link named |at| under |top|, to |to| (under |top| unless it starts with '.' or '/'). */
static void link_under(const char *top, const char *at, const char *to)
{
    char from[256], target[256];

    snprintf(from, sizeof(from), "%s/%s", top, at);
    if (to[0] == '.' || to[0] == '/')
        snprintf(target, sizeof(target), "%s", to);
    else
        snprintf(target, sizeof(target), "%s/%s", top, to);
    assert_int_equal(symlink(target, from), 0);
}

/*
 * A link reached through another link is judged as the first is: its owner, the directories on the
 * way to it and those it leads through. A by-name walk sees only the first link of a chain, and the
 * real path only where the chain ends: with A/l1 -> B/l2 -> C, whoever may write B could point l2 at
 * any directory that passes, or swap it between the check and the open. Relative links, "..", and a
 * link of root's to a directory that passes still pass; a loop is refused after 40 links.
 */
static void test_check_dir_links(void **state)
{
    char top[64], path[256], want[GW_ERR_LEN];
    static const char *const dirs[] = {"A", "B", "C", "C/logs", "var", "var/lib", "var/lib/cmpgw"};

    (void)state;
    snprintf(top, sizeof(top), "%s", "/tmp/cmpgw-test-dirlinks-XXXXXX");
    assert_non_null(mkdtemp(top));
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", top, dirs[i]);
        assert_int_equal(mkdir(path, 0755), 0);
    }
    link_under(top, "A/l1", "B/l2");
    link_under(top, "B/l2", "C");
    check_dir_case(top, "A/l1/logs/audit.log", 0, NULL);
    /* the second link's directory that anyone may write: refused as when it is named itself */
    assert_int_equal(chmod(strcat(strcpy(path, top), "/B"), 0777), 0);
    snprintf(want, sizeof(want),
             "audit.file: the directory \"%s/B\" is writable by group or others without the sticky bit "
             "(mode 0777)",
             top);
    check_dir_case(top, "B/l2/logs/audit.log", GW_ERR_FORBIDDEN, want);
    check_dir_case(top, "A/l1/logs/audit.log", GW_ERR_FORBIDDEN, want);
    /* sticky, the second link another user's: its owner may point it elsewhere */
    assert_int_equal(chmod(path, 01777), 0);
    check_dir_case(top, "A/l1/logs/audit.log", 0, NULL);
    if (geteuid() == 0) {
        assert_int_equal(lchown(strcat(strcpy(path, top), "/B/l2"), 65534, (gid_t)-1), 0);
        snprintf(want, sizeof(want), "audit.file: the symbolic link \"%s/B/l2\" is owned by uid 65534", top);
        check_dir_case(top, "A/l1/logs/audit.log", GW_ERR_FORBIDDEN, want);
    }
    /* relative links, each against the directory holding it, and ".." on the way */
    link_under(top, "A/r1", "../B/r2");
    link_under(top, "B/r2", "./../C/");
    check_dir_case(top, "A/r1/logs/audit.log", 0, NULL);
    check_dir_case(top, "A/r1/../C/logs/audit.log", 0, NULL);
    check_dir_case(top, "A/../C/./logs/audit.log", 0, NULL);
    assert_int_equal(chmod(strcat(strcpy(path, top), "/C"), 0777), 0);
    snprintf(want, sizeof(want), "the directory \"%s/A/../B/../C\" is writable by group or others", top);
    check_dir_case(top, "A/r1/logs/audit.log", GW_ERR_FORBIDDEN, want);
    assert_int_equal(chmod(path, 0755), 0);
    /* a link of root's (or the gateway's user's) to a /var/lib-like directory, and /tmp itself */
    link_under(top, "lib", "var/lib");
    check_dir_case(top, "lib/cmpgw/audit.log", 0, NULL);
    check_dir_case("/tmp", "audit.log", 0, NULL);
    /* a loop on the way */
    link_under(top, "loop1", "loop2");
    link_under(top, "loop2", "loop1");
    snprintf(want, sizeof(want), "audit.file: the directory \"%s/loop", top);
    check_dir_case(top, "loop1/logs/audit.log", GW_ERR_FORBIDDEN, want);
    check_dir_case(top, "loop1/logs/audit.log", GW_ERR_FORBIDDEN, "through more than 40 symbolic links");
    snprintf(path, sizeof(path), "rm -rf '%s'", top);
    assert_int_equal(system(path), 0);
}

/* The whole file |name| of the PKI directory into a new buffer, read without stdio (whose buffer is freed
   as it is), NUL-terminated. */
static char *read_raw(const char *name, size_t *len)
{
    char path[256], *buf = calloc(1, 65536);
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(buf);
    assert_true((fd = open(path, O_RDONLY)) >= 0);
    for (*len = 0; (n = read(fd, buf + *len, 65535 - *len)) > 0;)
        *len += (size_t)n;
    close(fd);
    return buf;
}

/* The base64 lines of the PEM text |pem| redrawn at random, each character but padding, in place. */
static void fresh_base64(char *pem)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char r;

    for (char *line = pem; line != NULL && *line != '\0';
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (line[0] == '-')
            continue;
        for (char *c = line; *c != '\n' && *c != '\0' && *c != '='; c++) {
            assert_int_equal(RAND_bytes(&r, 1), 1);
            *c = b64[r % 64];
        }
    }
}

/*
 * Fails when 16 characters from the middle or the end of a base64 line of PEM text |pem| are in a fresh
 * allocation of the sizes a load frees its buffers at (stdio's, OpenSSL's PEM line buffer), where the
 * next allocation of that size would find them. Meaningful without a sanitizer, whose allocator fills and
 * quarantines what it hands out. |what| names the load.
 */
static void assert_text_not_left(const char *pem, const char *what)
{
    static const size_t sizes[] = {256, 4096};
    const size_t total = 4 << 20; /* of each size: more than the load freed, so every free block of it */
    const char *line, *end, *w[64];
    size_t len, nw = 0, n;
    char **p;

    /* the start of a freed block is the allocator's; a line buffer holds the END line (27 long for an EC
       key's) over the last line, which is shorter than the others, over their ends */
    for (line = pem; *line != '\0' && nw + 2 <= 64; line = *end != '\0' ? end + 1 : end) {
        end = line + strcspn(line, "\n");
        len = (size_t)(end - line);
        if (line[0] == '-' || memchr(line, ':', len) != NULL || len < 48)
            continue;
        w[nw++] = line + 32;
        w[nw++] = end - 16;
    }
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        n = total / sizes[s];
        assert_non_null(p = calloc(n, sizeof(*p)));
        for (size_t i = 0; i < n; i++) {
            assert_non_null(p[i] = malloc(sizes[s]));
            for (size_t k = 0; k < nw; k++)
                if (memmem(p[i], sizes[s], w[k], 16) != NULL)
                    fail_msg("%s: the key's text \"%.16s\" is left in a freed block of %zu bytes", what, w[k],
                             sizes[s]);
        }
        for (size_t i = 0; i < n; i++)
            free(p[i]);
        free(p);
    }
}

/*
 * A certificate file may hold a private key beside its certificate (one PEM file for both, as many tools
 * write it): the load skips the key's block, and leaves none of its text in the memory it frees
 * (assert_text_not_left). The key's base64 is drawn afresh (fresh_base64): the tests before this one load
 * server.key as a key, and any text of it they left in freed memory would be laid to this load.
 */
static void test_cert_file_key_not_left(void **state)
{
    char err[GW_ERR_LEN] = "", path[256], *cert, *key;
    struct gw_conf_ctx pc = {.name = "cmpgw.json", .err = err};
    STACK_OF(X509) *sk = NULL;
    size_t clen, klen;
    int fd;

    (void)state;
    cert = read_raw("server.pem", &clen);
    key = read_raw("server.key", &klen);
    fresh_base64(key);
    snprintf(path, sizeof(path), "%s/both.pem", dir);
    assert_true((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
    assert_true(write(fd, cert, clen) == (ssize_t)clen && write(fd, key, klen) == (ssize_t)klen);
    close(fd);
    assert_int_equal(gw_pem_load_certs(&pc, "$.x", path, &sk), 0);
    assert_int_equal(sk_X509_num(sk), 1);
    sk_X509_pop_free(sk, X509_free);
    assert_text_not_left(key, path);
    free(cert);
    free(key);
}

/* How write_key writes a key: PEM or DER, PKCS#8 or traditional; behind EC PARAMETERS or a certificate. */
enum key_form { PEM_P8, PEM_TRAD, DER_P8, DER_TRAD, PEM_PARAMS_TRAD, PEM_CERT_P8, PEM_PUB };

/* |key| written to a new 0600 file |name| of the PKI directory in |form|, encrypted under |pass| unless it
   is NULL (PKCS#8 and PEM traditional forms): its text, NUL-terminated, into a new buffer. */
static char *write_key(EVP_PKEY *key, const char *name, enum key_form form, const char *pass)
{
    const EVP_CIPHER *enc = pass != NULL ? EVP_aes_256_cbc() : NULL;
    int plen = pass != NULL ? (int)strlen(pass) : 0;
    BIO *mem = BIO_new(BIO_s_mem());
    char path[256], *text, *data, *cert;
    size_t clen;
    long len;
    int fd, ok = 0;

    assert_non_null(mem);
    switch (form) {
    case PEM_CERT_P8:
        cert = read_raw("server.pem", &clen);
        ok = BIO_write(mem, cert, (int)clen) == (int)clen;
        free(cert);
        /* fall through */
    case PEM_P8:
        ok = (ok || form == PEM_P8) &&
             PEM_write_bio_PKCS8PrivateKey(mem, key, enc, NULL, 0, NULL, (void *)pass);
        break;
    case PEM_PARAMS_TRAD:
        ok = PEM_write_bio_Parameters(mem, key);
        /* fall through */
    case PEM_TRAD:
        ok = (ok || form == PEM_TRAD) &&
             PEM_write_bio_PrivateKey_traditional(mem, key, enc, (unsigned char *)pass, plen, NULL, NULL);
        break;
    case DER_P8:
        ok = i2d_PKCS8PrivateKey_bio(mem, key, enc, NULL, 0, NULL, (void *)pass);
        break;
    case DER_TRAD:
        ok = i2d_PrivateKey_bio(mem, key);
        break;
    case PEM_PUB:
        ok = PEM_write_bio_PUBKEY(mem, key);
        break;
    }
    assert_true(ok);
    assert_true((len = BIO_get_mem_data(mem, &data)) > 0);
    assert_non_null(text = calloc(1, (size_t)len + 1));
    memcpy(text, data, (size_t)len);
    BIO_free(mem);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_true((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
    assert_true(write(fd, text, (size_t)len) == (ssize_t)len);
    close(fd);
    return text;
}

/* A new 0600 file |name| of the PKI directory that holds |text|: its path in |path| (256 bytes). */
static void write_secret(const char *name, const char *text, char *path)
{
    int fd;

    snprintf(path, 256, "%s/%s", dir, name);
    assert_true((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
    assert_true(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
}

/* The error of a key refused, before the key file's name and after it (test_key_file_forms). */
#define NO_PASS                                                                                              \
    "cannot parse an unencrypted PEM private key in ", " (an encrypted key needs \"key_passphrase_file\")"
#define WRONG_PASS "cannot read the private key in ", " with the passphrase of \""

/*
 * A key file in every form the key loader reads: PEM or DER, PKCS#8 or traditional, encrypted with its
 * passphrase file or not, its key behind EC PARAMETERS or a certificate; and its adversarial twins: an
 * encrypted key without a passphrase file (refused, never prompted for), with a wrong one, a public key.
 */
static void test_key_file_forms(void **state)
{
    static const struct {
        enum key_form form;
        bool enc;
        const char *passfile, *head, *tail; /* the error's text before the key file's name and after it;
                                               |head| NULL: loads */
    } cases[] = {
        {PEM_P8, false, NULL, NULL, NULL},
        {PEM_P8, true, "fresh.pass", NULL, NULL},
        {PEM_TRAD, false, NULL, NULL, NULL},
        {PEM_TRAD, true, "fresh.pass", NULL, NULL},
        {DER_P8, false, NULL, NULL, NULL},
        {DER_P8, true, "fresh.pass", NULL, NULL},
        {DER_TRAD, false, NULL, NULL, NULL},
        {PEM_PARAMS_TRAD, false, NULL, NULL, NULL},
        {PEM_CERT_P8, true, "fresh.pass", NULL, NULL},
        {PEM_P8, true, NULL, NO_PASS},
        {PEM_TRAD, true, NULL, NO_PASS},
        {DER_P8, true, NULL, NO_PASS},
        {PEM_P8, true, "wrong.pass", WRONG_PASS},
        {PEM_TRAD, true, "wrong.pass", WRONG_PASS},
        {PEM_PUB, false, NULL, NO_PASS},
    };
    char err[GW_ERR_LEN], path[256], pass[256], want[1024], why[GW_ERR_LEN];
    struct gw_conf_ctx pc = {.name = "cmpgw.json", .err = err};
    EVP_PKEY *key, *loaded;

    (void)state;
    write_secret("fresh.pass", "fresh passphrase\n", pass);
    write_secret("wrong.pass", "not the passphrase\n", pass);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(key = EVP_EC_gen("P-256"));
        free(write_key(key, "form.key", cases[i].form, cases[i].enc ? "fresh passphrase" : NULL));
        snprintf(path, sizeof(path), "%s/form.key", dir);
        if (cases[i].passfile != NULL)
            snprintf(pass, sizeof(pass), "%s/%s", dir, cases[i].passfile);
        err[0] = '\0';
        loaded = NULL;
        if (gw_pem_load_key(&pc, "$.x.key", path, cases[i].passfile != NULL ? pass : NULL, GW_PEM_KEY_CMP,
                            &loaded) != 0) {
            snprintf(want, sizeof(want), "cmpgw.json: $.x.key: %s\"%s\"%s",
                     cases[i].head ? cases[i].head : "", path, cases[i].tail ? cases[i].tail : "");
            if (cases[i].head == NULL || strncmp(err, want, strlen(want)) != 0)
                fail_msg("case %zu: refused with \"%s\", not \"%s\"", i, err,
                         cases[i].head ? want : "loaded");
        } else {
            if (cases[i].head != NULL)
                fail_msg("case %zu: loaded, not refused with \"%s%s\"", i, cases[i].head, cases[i].tail);
            assert_int_equal(EVP_PKEY_eq(key, loaded), 1);
            if (!gw_pem_key_signs(loaded, GW_PEM_KEY_CMP, why, sizeof(why)))
                fail_msg("case %zu: the key loaded does not sign: %s", i, why);
        }
        EVP_PKEY_free(loaded);
        EVP_PKEY_free(key);
    }
    unlink(path);
    unlink(pass);
    snprintf(pass, sizeof(pass), "%s/fresh.pass", dir);
    unlink(pass);
}

/*
 * A private key file's text, PKCS#8 or traditional, encrypted or not, is not left by its load in the
 * memory the load frees (assert_text_not_left), the copies OpenSSL's PEM reader makes included. Each
 * key is drawn afresh, so no other load can have left its text.
 */
static void test_key_file_text_not_left(void **state)
{
    static const struct {
        const char *name, *pass, *begin;
        enum key_form form;
    } cases[] = {
        {"fresh-p8.key", NULL, "-----BEGIN PRIVATE KEY-----", PEM_P8},
        {"fresh-p8-enc.key", "fresh passphrase", "-----BEGIN ENCRYPTED PRIVATE KEY-----", PEM_P8},
        {"fresh-ec.key", NULL, "-----BEGIN EC PRIVATE KEY-----", PEM_TRAD},
        {"fresh-ec-enc.key", "fresh passphrase", "Proc-Type: 4,ENCRYPTED", PEM_TRAD},
    };
    char err[GW_ERR_LEN], path[256], passfile[256], *text;
    struct gw_conf_ctx pc = {.name = "cmpgw.json", .err = err};
    EVP_PKEY *key, *loaded;

    (void)state;
    write_secret("fresh.pass", "fresh passphrase\n", passfile);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(key = EVP_EC_gen("P-256"));
        text = write_key(key, cases[i].name, cases[i].form, cases[i].pass);
        assert_non_null(strstr(text, cases[i].begin));
        assert_text_not_left(text, "the test's writing"); /* the control: what is left after is the load's */
        snprintf(path, sizeof(path), "%s/%s", dir, cases[i].name);
        err[0] = '\0';
        if (gw_pem_load_key(&pc, "$.x.key", path, cases[i].pass != NULL ? passfile : NULL, GW_PEM_KEY_TLS,
                            &loaded) != 0)
            fail_msg("%s: %s", cases[i].name, err);
        assert_int_equal(EVP_PKEY_eq(key, loaded), 1);
        EVP_PKEY_free(loaded);
        EVP_PKEY_free(key);
        assert_text_not_left(text, cases[i].name);
        free(text);
        unlink(path);
    }
    unlink(passfile);
}

/*
 * A file gw_conf_open reads (certificates, CRLs, allow-lists) is held whole in memory, so one over
 * GW_MAX_CONF_FILE_SIZE is refused unread: a log or an image named by mistake would take as much. A
 * certificate followed by zeros (a sparse file): one byte over the cap is refused, naming it; its twin
 * at the cap loads its certificate.
 */
static void test_conf_file_over_cap(void **state)
{
    static const struct {
        off_t size;
        int loads;
    } cases[] = {{(off_t)GW_MAX_CONF_FILE_SIZE + 1, 0}, {GW_MAX_CONF_FILE_SIZE, 1}};
    char err[GW_ERR_LEN], path[256], want[2 * GW_ERR_LEN], *cert;
    struct gw_conf_ctx pc = {.name = "cmpgw.json", .err = err};
    STACK_OF(X509) *sk;
    size_t clen;
    int fd;

    (void)state;
    cert = read_raw("server.pem", &clen);
    snprintf(path, sizeof(path), "%s/padded.pem", dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_true((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)) >= 0);
        assert_true(write(fd, cert, clen) == (ssize_t)clen);
        assert_int_equal(ftruncate(fd, cases[i].size), 0);
        close(fd);
        err[0] = '\0';
        sk = NULL;
        if (cases[i].loads) {
            assert_int_equal(gw_pem_load_certs(&pc, "$.x", path, &sk), 0);
            assert_int_equal(sk_X509_num(sk), 1);
        } else {
            snprintf(want, sizeof(want), "cmpgw.json: $.x: \"%s\" is larger than %d bytes", path,
                     GW_MAX_CONF_FILE_SIZE);
            assert_int_not_equal(gw_pem_load_certs(&pc, "$.x", path, &sk), 0);
            assert_string_equal(err, want);
        }
        sk_X509_pop_free(sk, X509_free);
    }
    unlink(path);
    free(cert);
}

/* gw_names_has: a whole, exact name of the list; a prefix, an extension or another case is not one. */
static void test_names_has(void **state)
{
    static char *const names[] = {"demo", "vendor-a", "Vendor"};
    static const struct {
        const char *name;
        size_t n; /* how many of |names| the list holds */
        bool has;
    } cases[] = {
        {"demo", 3, true},      {"Vendor", 3, true},  {"vendor-a", 3, true},
        {"vendor-a", 1, false}, {"vendor", 3, false}, {"dem", 3, false},
        {"demo.", 3, false},    {"", 3, false},       {"demo", 0, false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (gw_names_has(names, cases[i].n, cases[i].name) != cases[i].has)
            fail_msg("\"%s\" in %zu names: %d", cases[i].name, cases[i].n, !cases[i].has);
}

/*
 * gw_conf_show_file hides the value of every "pin-value" attribute after "pkcs11:" (path or query, any
 * case, the URI at the start or after a directory), and userinfo as gw_conf_show does; other names and
 * other attributes keep their text.
 */
static void test_conf_show_file(void **state)
{
    static const struct {
        const char *file, *shown;
    } cases[] = {
        {"pkcs11:token=t;pin-value=1234;object=k", "pkcs11:token=t;pin-value=***;object=k"},
        {"pkcs11:token=t;object=k?module-path=/m.so&pin-value=1234",
         "pkcs11:token=t;object=k?module-path=/m.so&pin-value=***"},
        {"pkcs11:object=k?pin-value=12&pin-value=34", "pkcs11:object=k?pin-value=***&pin-value=***"},
        {"PKCS11:token=t;PIN-Value=1234?x=y", "PKCS11:token=t;PIN-Value=***?x=y"},
        {"/etc/cmpgw/pkcs11:object=k;pin-value=1234", "/etc/cmpgw/pkcs11:object=k;pin-value=***"},
        {"pkcs11:pin-value=1234", "pkcs11:pin-value=***"},
        {"pkcs11:object=k;pin-value=", "pkcs11:object=k;pin-value=***"},
        {"pkcs11:object=k;pin-source=file:/etc/pin", "pkcs11:object=k;pin-source=file:/etc/pin"},
        {"pkcs11:object=k;xpin-value=1", "pkcs11:object=k;xpin-value=1"},
        {"pin-value=1234.pem", "pin-value=1234.pem"}, /* no PKCS#11 URI */
        {"https://u:pw@h/ca.pem", "https://***@h/ca.pem"},
        {"/etc/cmpgw/https://u:pw@h/ca.pem", "/etc/cmpgw/https://***@h/ca.pem"},
        {"/etc/cmpgw/user:pw@h/ca.pem", "***@h/ca.pem"},
        {"/etc/cmpgw/ca.pem", "/etc/cmpgw/ca.pem"},
        {"/run/credentials/cmpgw@a.service/key", "/run/credentials/cmpgw@a.service/key"},
        {"", ""},
    };
    char buf[GW_ERR_LEN], name[512];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (strcmp(gw_conf_show_file(cases[i].file, buf, sizeof(buf)), cases[i].shown) != 0)
            fail_msg("%s shown as %s, not %s", cases[i].file, buf, cases[i].shown);
    /* a name longer than an error: its password is masked before it is cut, wherever the cut falls */
    for (int len = 200; len < 300; len += 7) {
        snprintf(name, sizeof(name), "/%.*s/https://u:%s@h/ca.pem", len, A256 A256, A16 "-PaSsWoRd-" A16);
        gw_conf_show_file(name, buf, sizeof(buf));
        assert_null(strstr(buf, "PaSs"));
        assert_null(strstr(buf, "u:aaaa"));
    }
}

/* SoftHSM's module, with a configuration of its own and no token at all; false without SoftHSM. */
static bool softhsm(void)
{
    char conf[128], tokens[128];
    FILE *f;

    if (access(SOFTHSM_MODULE, R_OK) != 0)
        return false;
    snprintf(tokens, sizeof(tokens), "%s/softhsm-tokens", dir);
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
    assert_true(mkdir(tokens, 0700) == 0 || errno == EEXIST);
    assert_non_null(f = fopen(conf, "w"));
    fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens);
    fclose(f);
    assert_int_equal(setenv("SOFTHSM2_CONF", conf, 1), 0);
    return true;
}

/*
 * A PKCS#11 URI that names no key in its token is quoted as gw_conf_show_file quotes a name from the
 * configuration: what reads as userinfo is hidden there too. Before, the error quoted the URI whole. The
 * token is SoftHSM's, with no token at all (skipped without SoftHSM): a token not present yet, which
 * another try may find (GW_ERR_UNAVAILABLE), not the configuration refused.
 */
static void test_pkcs11_missing_key_masked(void **state)
{
    char uri[256], err[GW_ERR_LEN] = "";
    EVP_PKEY *key = NULL;

    (void)state;
    if (!softhsm())
        skip();
    snprintf(uri, sizeof(uri), "pkcs11:token=u:s.abcdefgh@t;object=k?module-path=%s", SOFTHSM_MODULE);
    assert_int_equal(gw_pkcs11_load_key(uri, "1234", &key, err, sizeof(err)), GW_ERR_UNAVAILABLE);
    assert_null(key);
    assert_string_equal(err, "no private key ***@t;object=k in the token (or the PIN is wrong)");
}

/*
 * Without a PIN the token is not asked: libp11 would log in with the last PIN it was given (another
 * token's), or ask OpenSSL's console UI for one and wait on a terminal or an open stdin.
 */
static void test_pkcs11_no_pin(void **state)
{
    char uri[256], err[GW_ERR_LEN] = "";
    EVP_PKEY *key;

    (void)state;
    snprintf(uri, sizeof(uri), "pkcs11:token=t;object=k?module-path=%s", SOFTHSM_MODULE);
    assert_int_equal(gw_pkcs11_load_key(uri, NULL, &key, err, sizeof(err)), GW_ERR_INVAL);
    assert_null(key);
    assert_string_equal(err, "a key in a PKCS#11 token needs its user PIN");
    /* a URI refused: the configuration's too */
    snprintf(uri, sizeof(uri), "pkcs11:token=t;object=k;pin-value=1234?module-path=%s", SOFTHSM_MODULE);
    assert_int_equal(gw_pkcs11_load_key(uri, "1234", &key, err, sizeof(err)), GW_ERR_INVAL);
    assert_null(key);
}

/*
 * A module-path that cannot be loaded says why, and is not taken for the process's module: libp11 opens
 * the module only when a key loads, and before, that typo was kept, refusing the corrected URI ("this
 * process already uses ...") until a restart.
 */
static void test_pkcs11_module_typo(void **state)
{
    char uri[256], err[GW_ERR_LEN] = "";
    EVP_PKEY *key;

    (void)state;
    if (!softhsm())
        skip();
    /* a module that will not load may be one not there yet (a package, a mount): another try may find it */
    snprintf(uri, sizeof(uri), "pkcs11:token=t;object=k?module-path=%s/no-such-module.so", dir);
    assert_int_equal(gw_pkcs11_load_key(uri, "1234", &key, err, sizeof(err)), GW_ERR_UNAVAILABLE);
    assert_null(key);
    if (strstr(err, "cannot be loaded") == NULL || strstr(err, "No such file or directory") == NULL)
        fail_msg("%s", err);
    snprintf(uri, sizeof(uri), "pkcs11:token=t;object=k?module-path=%s", SOFTHSM_MODULE);
    assert_int_equal(gw_pkcs11_load_key(uri, "1234", &key, err, sizeof(err)), GW_ERR_UNAVAILABLE);
    assert_string_equal(err, "no private key pkcs11:token=t;object=k in the token (or the PIN is wrong)");
}

/*
 * A load that fails writes nothing to stderr, the JSON log stream: libp11 wrote lines of its own there
 * ("The private key was not found at: pkcs11:..."), neither JSON nor masked.
 */
static void test_pkcs11_quiet(void **state)
{
    char uri[256], out[128], err[GW_ERR_LEN] = "";
    EVP_PKEY *key;
    struct stat st;
    int fd, saved;

    (void)state;
    if (!softhsm())
        skip();
    snprintf(out, sizeof(out), "%s/pkcs11-stderr", dir);
    snprintf(uri, sizeof(uri), "pkcs11:token=t;object=k?module-path=%s", SOFTHSM_MODULE);
    assert_true((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
    assert_true((saved = dup(STDERR_FILENO)) >= 0);
    fflush(stderr);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    assert_int_not_equal(gw_pkcs11_load_key(uri, "1234", &key, err, sizeof(err)), 0);
    fflush(stderr);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(fd);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_size, 0);
}

/*
 * gw_conf_show hides userinfo: a URL's, to its last '@' whatever comes between (a password's '/', '?',
 * '#', '@' or "://"; an '@' in a path costs the host its place, never a password its mask); and that of a
 * value without a scheme, a Redis address written "user:password@host", where a ':' comes before the
 * last '@'. Names with an '@' (a policy's "*@example.com") keep their text.
 */
static void test_conf_show_userinfo(void **state)
{
    static const struct {
        const char *json, *shown;
    } cases[] = {
        {"\"https://u:pw@h:8200\"", "\"https://***@h:8200\""},
        {"\"redis://:pw@10.0.0.5\"", "\"redis://***@10.0.0.5\""},
        {"\"https://u@h\"", "\"https://***@h\""},
        {"\"https://u:p@w@h\"", "\"https://***@h\""},
        {"\"https://u:pw@h/p@x\"", "\"https://***@x\""},
        {"\"https://u:pw@[::1]:8200/v1\"", "\"https://***@[::1]:8200/v1\""},
        {"\"https://u:pa/ss@h\"", "\"https://***@h\""},
        {"\"https://u:pa?ss@h\"", "\"https://***@h\""},
        {"\"https://u:pa#ss@h\"", "\"https://***@h\""},
        {"\"https://h/p@x\"", "\"https://***@x\""}, /* the host lost, never a password */
        {"\"https://user:1234/5678@vault:8200\"", "\"https://***@vault:8200\""},
        {"\"https://tok/en@h\"", "\"https://***@h\""},
        {"\"https://vault:1234/abc@host\"", "\"https://***@host\""}, /* a password of digits, '/' */
        {"\"https://us/er:pw@host\"", "\"https://***@host\""},       /* a user name with '/' */
        {"\"https://u:pw@host/v1@x\"", "\"https://***@x\""},
        {"\"redis://:#s3cret@10.0.0.5\"", "\"redis://***@10.0.0.5\""},
        {"\"HTTPS://u:pw@h\"", "\"HTTPS://***@h\""},
        {"\"https://h:8200\"", "\"https://h:8200\""},
        {"\"user:pw@10.0.0.5:6379\"", "\"***@10.0.0.5:6379\""},
        {"\":pw@10.0.0.5\"", "\"***@10.0.0.5\""},
        {"\"u:p@w@10.0.0.5\"", "\"***@10.0.0.5\""},
        {"\"*@example.com\"", "\"*@example.com\""},
        {"\"dev@example.com\"", "\"dev@example.com\""},
        {"\":pa/ss==@10.0.0.5:6379\"", "\"***@10.0.0.5:6379\""},
        {"\"user:pa ss@h\"", "\"***@h\""},
        {"\"u:pa://ss@h\"", "\"***@h\""},
        {"\"vault:1234/abc@host\"", "\"***@host\""},
        {"\"us/er:pw@10.0.0.5:6379\"", "\"***@10.0.0.5:6379\""},
        {"\"tok/en@host\"", "\"tok/en@host\""}, /* no ':': no userinfo of an address */
        {"\"::1\"", "\"::1\""},
        {"8443", "8443"},
    };
    char buf[GW_CONF_SHOW_BUF];
    struct json_object *v;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(v = json_tokener_parse(cases[i].json));
        if (strcmp(gw_conf_show(v, buf, sizeof(buf)), cases[i].shown) != 0)
            fail_msg("%s shown as %s, not %s", cases[i].json, buf, cases[i].shown);
        json_object_put(v);
    }
}

/*
 * gw_conf_key_shown: a key an error refuses is quoted when it reads as a key's name, as every key of a
 * table does (lower case, words of at most 16 letters and digits); a token pasted as a key is not.
 */
static void test_conf_key_shown(void **state)
{
    static const struct {
        const char *key;
        bool shown;
    } cases[] = {
        {"ttl", true},
        {"tll", true},
        {"http2", true},
        {"ipv6_prefix", true},
        {"max_requests_in_flight_per_address", true},
        {"key-file", true},
        {"abcdefghijklmnop", true},                           /* a word of 16 */
        {"abcdefghijklmnopq", false},                         /* of 17 */
        {"abcdefghij_abcdefghij_abcdefghij_abcdefg", true},   /* 40 bytes */
        {"abcdefghij_abcdefghij_abcdefghij_abcdefgh", false}, /* 41 */
        {"", false},
        {"Ttl", false},
        {"s3cretToken", false},
        {"0123456789abcdef", false},
        {"_ttl", false},
        {"hvs.CAESIabc", false},
        {"s.abcdefgh", false},
        {"tok/en", false},
        {"a b", false},
        {"pw=", false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (gw_conf_key_shown(cases[i].key) != cases[i].shown)
            fail_msg("\"%s\" shown: %d", cases[i].key, !cases[i].shown);
}

/* gw_upstream_check_role: the caps rules, on the parsed baseline and on hand-made twins. */
static void test_check_role(void **state)
{
    static const struct edit e[] = {
        UPS, ROLES, E("\"upstream_role\": \"client\"", "\"crmf\": \"delegate\", \"delegate\": \"deleg\""),
        E("\"issuer_ca\": \"issuing.pem\"", "\"issuer_ca\": \"ca.pem\"")};
    struct gw_config *cfg = parse_edits(e, 4);
    const struct gw_role *rc = gw_config_role(cfg, "rc", 2), *def = gw_config_role(cfg, "default", 7);
    struct gw_role twin;
    char err[GW_ERR_LEN] = "";
    char *log;

    (void)state;
    assert_int_equal(gw_upstream_check_role(def->upstream, def, err), 0);
    /* cfssl cannot describe its profiles: allowed, with a warning */
    capture_start();
    assert_int_equal(gw_upstream_check_role(rc->upstream, rc, err), 0);
    log = capture_end();
    assert_non_null(
        strstr(log, "role rc: upstream cfssl (cfssl) cannot describe its roles: the delegate deleg"));
    assert_non_null(strstr(log, "which restricts no names"));
    free(log);
    /* a delegate on an upstream that signs CRMF itself */
    twin = *rc;
    twin.upstream = def->upstream;
    assert_int_equal(gw_upstream_check_role(twin.upstream, &twin, err), GW_ERR_INVAL);
    assert_non_null(strstr(err, "role rc: upstream local (local) signs CRMF requests itself"));
    /* a delegate that is missing, or cannot sign CRMF */
    twin = *rc;
    twin.delegate = NULL;
    assert_int_equal(gw_upstream_check_role(twin.upstream, &twin, err), GW_ERR_INVAL);
    assert_non_null(strstr(err, "needs a delegate upstream that signs CRMF"));
    twin.delegate = rc->upstream;
    assert_int_equal(gw_upstream_check_role(twin.upstream, &twin, err), GW_ERR_INVAL);
    /* reject on a CSR-only upstream is always fine */
    twin = *rc;
    twin.crmf = GW_CRMF_REJECT;
    twin.delegate = NULL;
    assert_int_equal(gw_upstream_check_role(twin.upstream, &twin, err), 0);
    assert_int_equal(gw_upstream_check_role(NULL, &twin, err), GW_ERR_INVAL);
    gw_config_free(cfg);
}

/*
 * The twins of the subject patterns refused for an address with two '@': the same '@'s in an attribute
 * that is no address ("\\+" is a plus inside the CN, "*" any attribute, an OU may hold them), or one '@'.
 */
static void test_subject_patterns(void **state)
{
    static const struct edit e[] = {
        UPS, ROLES,
        AUTHZ("\"allowed_subjects\": [\"/CN=*/emailAddress=*@example.com\", \"/CN=a\\\\+mail=a@b@c\", "
              "\"/CN=*/*=a@b@c\", \"/CN=*/mailPreferenceOption=a@b@c\", \"/CN=*/mail=*@*.example\"], "
              "\"ra_subjects\": [\"/CN=ra/mail=*@corp.example\"]")};
    struct gw_config *cfg = parse_edits(e, 3);
    const struct gw_role *rv = gw_config_role(cfg, "rv", 2);

    (void)state;
    assert_non_null(rv);
    assert_int_equal(rv->authz.subjects.n, 5);
    assert_string_equal(rv->authz.subjects.v[1], "/CN=a\\+mail=a@b@c");
    assert_int_equal(rv->authz.ra_subjects.n, 1);
    gw_config_free(cfg);
}

/* Input that is not even text: NUL bytes, nothing, a cut document. */
static void test_raw(void **state)
{
    char err[GW_ERR_LEN];
    size_t len = strlen(demo);
    char *copy = strdup(demo);

    (void)state;
    assert_null(parse_text("", 0, err));
    assert_non_null(strstr(err, "cmpgw.json: invalid JSON: unexpected end of file"));
    assert_null(parse_text(demo, len / 2, err));
    assert_non_null(strstr(err, "unexpected end of file"));
    copy[len / 2] = '\0';
    assert_null(parse_text(copy, len, err));
    assert_non_null(strstr(err, "cmpgw.json: invalid JSON"));
    assert_null(parse_text(demo, len + 1, err)); /* the terminating NUL as trailing data */
    assert_non_null(strstr(err, "invalid JSON"));
    free(copy);
}

static void test_oversized(void **state)
{
    size_t len = GW_MAX_CONFIG_SIZE + 1, dl = strlen(demo);
    char *big = malloc(len), err[GW_ERR_LEN], path[256];
    struct gw_config *cfg;

    (void)state;
    assert_non_null(big);
    /* the demo config padded with whitespace: valid JSON, one byte over the cap */
    memset(big, ' ', len);
    memcpy(big, demo, dl);
    assert_null(parse_text(big, len, err));
    assert_string_equal(err, "cmpgw.json: larger than 1048576 bytes");
    put_file("big.json", big, len, 0644);
    snprintf(path, sizeof(path), "%s/big.json", dir);
    assert_null(gw_config_load(path, err));
    assert_non_null(strstr(err, "big.json: larger than 1048576 bytes"));
    /* its twin at exactly the cap loads */
    put_file("cap.json", big, len - 1, 0644);
    snprintf(path, sizeof(path), "%s/cap.json", dir);
    cfg = gw_config_load(path, err);
    if (cfg == NULL)
        fail_msg("%s", err);
    gw_config_free(cfg);
    free(big);
}

/* ---- user and group lookups ---- */

/*
 * getpwnam and getgrnam share one static entry with every other thread; a reload looks the configured
 * user up beside workers that may call getpw* or getgr* too. The gateway uses the _r forms only.
 */
struct passwd *getpwnam(const char *name)
{
    fail_msg("getpwnam(\"%s\"): not thread-safe", name);
    return NULL;
}

struct group *getgrnam(const char *name)
{
    fail_msg("getgrnam(\"%s\"): not thread-safe", name);
    return NULL;
}

static size_t pw_r_needs; /* getpwnam_r answers ERANGE to a smaller buffer */
static int pw_r_calls;

/* libc's getpwnam_r, but for an entry that needs pw_r_needs bytes */
int getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len, struct passwd **res)
{
    static int (*real)(const char *, struct passwd *, char *, size_t, struct passwd **);

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "getpwnam_r");
    pw_r_calls++;
    *res = NULL;
    return len < pw_r_needs ? ERANGE : real(name, pw, buf, len, res);
}

/*
 * |user| (and |group| unless NULL) in the demo's configuration, loaded from a file as a start loads it:
 * the snapshot, or NULL with *|failed| the class and |err| the reason.
 */
static struct gw_config *load_as(const char *user, const char *group, int *failed, char *err)
{
    char ids[160], path[256];
    struct edit e = E("\"signer\":", ids);
    struct gw_config *cfg;
    char *text;

    snprintf(ids, sizeof(ids), "\"user\": \"%s\", %s%s%s\"signer\":", user,
             group != NULL ? "\"group\": \"" : "", group != NULL ? group : "", group != NULL ? "\", " : "");
    text = edited(&e, 1);
    put_file("users.json", text, strlen(text), 0644);
    free(text);
    snprintf(path, sizeof(path), "%s/users.json", dir);
    *failed = 0;
    err[0] = '\0';
    cfg = gw_config_reload(path, NULL, failed, err);
    return cfg;
}

/*
 * The configured user's ids, looked up reentrantly as the load judges the owners of the files the gateway
 * writes against them, with a buffer grown on ERANGE up to GW_USER_ENTRY_MAX and no further: an entry
 * larger than that is refused, not read.
 */
static void test_user_lookup(void **state)
{
    char buf[4096], err[GW_ERR_LEN];
    struct passwd pw, *found = NULL;
    struct gw_config *cfg;
    uid_t uid;
    gid_t gid;
    int failed;

    (void)state;
    if (geteuid() != 0 || getpwnam_r("nobody", &pw, buf, sizeof(buf), &found) != 0 || found == NULL)
        skip();
    cfg = load_as("nobody", NULL, &failed, err);
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_int_equal(cfg->uid, pw.pw_uid);
    assert_int_equal(cfg->gid, pw.pw_gid);
    gw_config_free(cfg);

    pw_r_needs = 64 * 1024;
    pw_r_calls = 0;
    cfg = load_as("nobody", "root", &failed, err);
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_true(pw_r_calls > 1);
    assert_int_equal(cfg->uid, pw.pw_uid);
    assert_int_equal(cfg->gid, 0);
    gw_config_free(cfg);

    pw_r_needs = GW_USER_ENTRY_MAX + 1;
    pw_r_calls = 0;
    assert_int_equal(gw_user_ids("nobody", &uid, &gid, err), GW_ERR_IO);
    assert_string_equal(err, "cannot look up user \"nobody\": its entry is over 1 MiB");
    assert_true(pw_r_calls <= 12);
    pw_r_needs = 0;

    assert_int_equal(gw_user_ids("no-such-user-here", &uid, NULL, err), GW_ERR_NOT_FOUND);
    assert_string_equal(err, "unknown user \"no-such-user-here\" (or a directory service, sssd or LDAP, not "
                             "answering yet: they read the same)");
    assert_int_equal(gw_group_id("root", &gid, err), 0);
    assert_int_equal(gid, 0);
    assert_int_equal(gw_group_id("no-such-group-here", &gid, err), GW_ERR_NOT_FOUND);
}

/*
 * A lookup of "user" or "group" that fails fails the load with its class, GW_ERR_UNAVAILABLE, which a start
 * exits 1 for and the unit retries: one that could not be made (NSS: sssd or LDAP not answering at boot),
 * and a name NSS says it does not have, which is what glibc says too where a source after a directory
 * service not answering yet finds no such name (`passwd: sss files`). The load went on with root's uid when
 * the lookup failed, so the user's store and audit log were judged as another user's and refused as the
 * file's, for good; an unknown name was the file's (GW_ERR_INVAL, 78), and a user of LDAP looked up while
 * sssd was late at boot left the service down.
 */
static void test_user_lookup_failing_fails_the_load(void **state)
{
    static const struct {
        const char *user, *group;
        size_t needs; /* the user's entry, for getpwnam_r */
        int failed;
        const char *want;
    } cases[] = {
        {"nobody", NULL, GW_USER_ENTRY_MAX + 1, GW_ERR_UNAVAILABLE,
         "users.json: $.user: cannot look up user \"nobody\": its entry is over 1 MiB"},
        {"nobody", "root", GW_USER_ENTRY_MAX + 1, GW_ERR_UNAVAILABLE,
         "users.json: $.user: cannot look up user \"nobody\": its entry is over 1 MiB"},
        {"no-such-user-here", NULL, 0, GW_ERR_UNAVAILABLE,
         "users.json: $.user: unknown user \"no-such-user-here\" (or a directory service, sssd or LDAP, not "
         "answering yet: they read the same)"},
        {"nobody", "no-such-group-here", 0, GW_ERR_UNAVAILABLE,
         "users.json: $.group: unknown group \"no-such-group-here\" (or a directory service, sssd or LDAP, "
         "not answering yet: they read the same)"},
    };
    char err[GW_ERR_LEN];
    struct gw_config *cfg;
    int failed;

    (void)state;
    if (geteuid() != 0)
        skip(); /* only root looks "user" up: it changes to that user */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pw_r_needs = cases[i].needs;
        cfg = load_as(cases[i].user, cases[i].group, &failed, err);
        pw_r_needs = 0;
        if (cfg != NULL)
            fail_msg("case %zu: loaded, as uid %ld", i, (long)cfg->uid);
        assert_int_equal(failed, cases[i].failed);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: %s", i, err);
    }
}

/*
 * A "user" of uid 0 is root by another name: the change of user would give nothing up, so the load refuses
 * it as the file's (78 for a start and `cmpgw check` alike; a start exited 1 and was restarted for ever).
 * Its twin: a group of gid 0 with a user of another uid loads, its gid the group's.
 */
static void test_user_of_uid_0_refused(void **state)
{
    char err[GW_ERR_LEN];
    struct gw_config *cfg;
    int failed;

    (void)state;
    if (geteuid() != 0)
        skip(); /* only root looks "user" up: it changes to that user */
    assert_null(cfg = load_as("root", NULL, &failed, err));
    assert_int_equal(failed, GW_ERR_INVAL);
    if (strstr(err, "users.json: $.user: \"root\" is uid 0: running as root needs \"run_as_root\": true and "
                    "no \"user\"") == NULL)
        fail_msg("%s", err);
    assert_non_null(cfg = load_as("nobody", "root", &failed, err));
    assert_int_not_equal(cfg->uid, 0);
    assert_int_equal(cfg->gid, 0);
    gw_config_free(cfg);
}

/*
 * A lookup of "user" or "group" that failed (the load's, whose ids the change of user takes) is never the
 * configuration's (exit 78, not restarted): a name NSS does not have may be one a directory service not
 * answering yet has (glibc says "not found" once a later source, as files, finds none); one that could not
 * be made (NSS not answering at boot) is not either, nor one that ran out of memory: a start exits 1 for
 * them and the unit retries. "Not found" was GW_ERR_INVAL.
 */
static void test_change_of_user_lookup_class(void **state)
{
    static const struct {
        int rc, want;
    } cases[] = {
        {GW_ERR_NOT_FOUND, GW_ERR_UNAVAILABLE},
        {GW_ERR_IO, GW_ERR_UNAVAILABLE},
        {GW_ERR_NOMEM, GW_ERR_NOMEM},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (gw_user_lookup_class(cases[i].rc) != cases[i].want)
            fail_msg("case %zu: %d, not %d", i, gw_user_lookup_class(cases[i].rc), cases[i].want);
}

/*
 * The class of a file the gateway writes that could not be judged or opened (cmp.revoked_file, the audit
 * log, handover_socket): out of memory and descriptors run out are not the file's, and a start exits 1 for
 * them; what its path, mode, owner or content say is (78). The engine and the hand-over's check said
 * GW_ERR_INVAL (78) for any failure.
 */
static void test_written_file_class(void **state)
{
    static const struct {
        int rc, want;
    } cases[] = {
        {GW_ERR_NOMEM, GW_ERR_NOMEM}, {GW_ERR_UNAVAILABLE, GW_ERR_UNAVAILABLE},
        {GW_ERR_IO, GW_ERR_INVAL},    {GW_ERR_FORBIDDEN, GW_ERR_INVAL},
        {GW_ERR_INVAL, GW_ERR_INVAL}, {GW_ERR_LIMIT, GW_ERR_INVAL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (gw_err_file_class(cases[i].rc) != cases[i].want)
            fail_msg("case %zu: %d, not %d", i, gw_err_file_class(cases[i].rc), cases[i].want);
    /* each of the two a failed system call gives that is not the file's */
    assert_int_equal(gw_err_file_class(gw_err_errno_io(EMFILE)), GW_ERR_UNAVAILABLE);
    assert_int_equal(gw_err_file_class(gw_err_errno_io(ENOMEM)), GW_ERR_NOMEM);
    assert_int_equal(gw_err_file_class(gw_err_errno_io(EACCES)), GW_ERR_INVAL);
}

/*
 * The class of a configuration's read that failed, by its errno: what the path, its permissions or its owner
 * say is the file's (78, never restarted); a failing disk or descriptors run out is not, and another try may
 * find it gone (1). EIO, EMFILE and the like were the file's.
 */
static void test_read_failure_class(void **state)
{
    static const struct {
        int e, want;
    } cases[] = {
        {EIO, GW_ERR_UNAVAILABLE},    {EMFILE, GW_ERR_UNAVAILABLE}, {ENFILE, GW_ERR_UNAVAILABLE},
        {EAGAIN, GW_ERR_UNAVAILABLE}, {EINTR, GW_ERR_UNAVAILABLE},  {ENOMEM, GW_ERR_NOMEM},
        {ENOENT, GW_ERR_INVAL},       {EACCES, GW_ERR_INVAL},       {EPERM, GW_ERR_INVAL},
        {ENOTDIR, GW_ERR_INVAL},      {ELOOP, GW_ERR_INVAL},        {EISDIR, GW_ERR_INVAL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (gw_err_errno_class(cases[i].e) != cases[i].want)
            fail_msg("case %zu (%s): %d, not %d", i, strerror(cases[i].e), gw_err_errno_class(cases[i].e),
                     cases[i].want);
        /* a check whose own code is GW_ERR_IO (a local issuer's store) keeps it for the path's alone */
        if (gw_err_errno_io(cases[i].e) != (cases[i].want == GW_ERR_INVAL ? GW_ERR_IO : cases[i].want))
            fail_msg("case %zu (%s): %d as a check's", i, strerror(cases[i].e), gw_err_errno_io(cases[i].e));
    }
}

/*
 * Descriptors run out (EMFILE) as the configuration, a certificate it names and a secret it names are read:
 * each read's class is GW_ERR_UNAVAILABLE, a start's exit 1. They were GW_ERR_INVAL (exit 78: the unit never
 * restarted the gateway). The twins, with descriptors to spare: a file that is not there stays the file's.
 */
static void test_reads_without_descriptors(void **state)
{
    char err[GW_ERR_LEN], path[256], cert[256], secret[256], missing[256];
    struct gw_conf_ctx pc = {.name = "cmpgw.json", .base_dir = dir, .err = err};
    unsigned char *buf = NULL;
    struct gw_config *cfg;
    size_t len = 0;
    int failed = 0;

    (void)state;
    snprintf(path, sizeof(path), "%s/cmpgw.json", dir);
    snprintf(cert, sizeof(cert), "%s/ca.pem", dir);
    snprintf(secret, sizeof(secret), "%s/pbm.secret", dir);
    snprintf(missing, sizeof(missing), "%s/no-such.pem", dir);
    tu_fds_exhaust();
    cfg = gw_config_reload(path, NULL, &failed, err);
    assert_null(gw_conf_open(&pc, "$.signer.cert", cert));
    tu_fds_back();
    assert_null(cfg);
    assert_int_equal(failed, GW_ERR_UNAVAILABLE);
    assert_int_equal(pc.failed, GW_ERR_UNAVAILABLE);
    assert_non_null(strstr(err, strerror(EMFILE)));
    pc.failed = 0;
    tu_fds_exhaust();
    failed = gw_conf_read_secret(&pc, "$.pbm.secret_file", secret, 64, &buf, &len);
    tu_fds_back();
    assert_int_equal(failed, GW_ERR_UNAVAILABLE);
    assert_int_equal(pc.failed, GW_ERR_UNAVAILABLE);
    assert_null(buf);
    assert_null(gw_conf_open(&pc, "$.signer.cert", missing));
    assert_int_equal(pc.failed, GW_ERR_INVAL);
}

#define ROOTS_GROUP 4242 /* a group of root's here, the user's neither: need not exist */
#define USERS_ID 65534   /* the user and group the gateway serves as here */

/*
 * gw_user_openat_as opens with the groups the gateway's user has once root is given up (its group
 * alone, gw_drop_privileges), not root's: a directory that only a group of root's may write (root:root
 * 0770) is one the user may not create in. With the user's ids and root's groups it did create there,
 * and so root's rights made files in a directory the user could not write. Its twins: a directory of the
 * user's group, and one anyone may write, take the file, the user's; root's groups are root's again after.
 */
static void test_openat_as_users_groups(void **state)
{
    static const struct {
        gid_t group;
        mode_t mode;
        int err; /* 0: created */
    } cases[] = {
        {0, 0770, EACCES},
        {ROOTS_GROUP, 0770, EACCES},
        {USERS_ID, 0770, 0},
        {0, 0777, 0},
    };
    const gid_t roots[] = {0, ROOTS_GROUP};
    gid_t saved[64], now[64];
    char top[64], sub[96];
    struct stat st;
    int n_saved, held, fd;

    (void)state;
    if (geteuid() != 0)
        skip();
    assert_true((n_saved = getgroups(64, saved)) >= 0);
    assert_int_equal(setgroups(2, roots), 0);
    snprintf(top, sizeof(top), "%s", "/tmp/cmpgw-test-openat-XXXXXX");
    assert_non_null(mkdtemp(top));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(sub, sizeof(sub), "%s/%zu", top, i);
        assert_int_equal(mkdir(sub, 0700), 0);
        assert_int_equal(chown(sub, 0, cases[i].group), 0);
        assert_int_equal(chmod(sub, cases[i].mode), 0);
        assert_true((held = open(sub, O_PATH | O_DIRECTORY | O_CLOEXEC)) >= 0);
        errno = 0;
        fd = gw_user_openat_as(held, "f", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600, USERS_ID, USERS_ID);
        if (cases[i].err != 0) {
            assert_int_equal(fd, -1);
            assert_int_equal(errno, cases[i].err);
        } else {
            assert_true(fd >= 0);
            assert_int_equal(fstat(fd, &st), 0);
            assert_int_equal(st.st_uid, USERS_ID);
            assert_int_equal(st.st_gid, USERS_ID);
            close(fd);
        }
        close(held);
        assert_int_equal(getgroups(64, now), 2);
        assert_memory_equal(now, roots, sizeof(roots));
    }
    assert_int_equal(setgroups((size_t)n_saved, saved), 0);
    snprintf(sub, sizeof(sub), "rm -rf '%s'", top);
    assert_int_equal(system(sub), 0);
}

static void test_load(void **state)
{
    char err[GW_ERR_LEN], path[256], cwd[512];
    struct gw_config *cfg;

    (void)state;
    snprintf(path, sizeof(path), "%s/cmpgw.json", dir);
    cfg = gw_config_load(path, err);
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_string_equal(cfg->path, path);
    gw_config_free(cfg);

    /* a bare file name resolves against the current directory */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    cfg = gw_config_load("cmpgw.json", err);
    assert_int_equal(chdir(cwd), 0);
    if (cfg == NULL)
        fail_msg("%s", err);
    gw_config_free(cfg);

    snprintf(path, sizeof(path), "%s/nope.json", dir);
    assert_null(gw_config_load(path, err));
    assert_non_null(strstr(err, "nope.json: cannot open: No such file or directory"));
    assert_null(gw_config_load(dir, err)); /* a directory */
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, ": not a regular file (a directory): name the file itself"));
    /* a FIFO is refused at once: read, it would hold the start (or a reload) until a writer came */
    snprintf(path, sizeof(path), "%s/cmpgw.fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(20);
    assert_null(gw_config_load(path, err));
    alarm(0);
    assert_non_null(strstr(err, "cmpgw.fifo: not a regular file (a FIFO): name the file itself"));
    gw_config_free(NULL);
}

/*
 * The TLS context of the first listener of the demo configuration with edit |e|, built once the load
 * is done and |src| has replaced |dst|, a file the load read.
 */
static SSL_CTX *ctx_after_swap(const struct edit *e, const char *src, const char *dst, struct gw_config **cfg)
{
    char err[GW_ERR_LEN] = "", *text = edited(e, 1);
    SSL_CTX *ctx;

    *cfg = parse_text(text, strlen(text), err);
    free(text);
    if (*cfg == NULL)
        fail_msg("%s", err);
    copy_file(src, dst, 0644);
    if (gw_tls_ctx_new(&(*cfg)->listeners[0], false, &ctx, err) != 0)
        fail_msg("%s", err);
    return ctx;
}

/*
 * The listener's TLS context serves the certificate and chain the load read and checked: a file
 * replaced after the load (here by another certificate, whose key the listener does not hold) is
 * not read again when the context is built.
 */
static void test_tls_ctx_keeps_what_was_loaded(void **state)
{
    struct edit e[] = {{"\"cert\": \"server.pem\"", "\"cert\": \"served.pem\""}};
    char path[GW_ERR_LEN], *leaf, *root;
    X509 *server = read_cert("server.pem"), *ca = read_cert("ca.pem");
    STACK_OF(X509) *chain = NULL;
    struct gw_config *cfg;
    SSL_CTX *ctx;
    size_t ll, rl;

    (void)state;
    assert_non_null(server);
    assert_non_null(ca);
    snprintf(path, sizeof(path), "%s/server.pem", dir);
    assert_non_null(leaf = slurp(path, &ll));
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    assert_non_null(root = slurp(path, &rl));
    assert_non_null(leaf = realloc(leaf, ll + rl));
    memcpy(leaf + ll, root, rl);
    put_file("served.pem", leaf, ll + rl, 0644);
    ctx = ctx_after_swap(e, "signer.pem", "served.pem", &cfg);
    assert_int_equal(X509_cmp(SSL_CTX_get0_certificate(ctx), server), 0);
    assert_int_equal(SSL_CTX_get0_chain_certs(ctx, &chain), 1);
    assert_int_equal(sk_X509_num(chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), ca), 0);
    SSL_CTX_free(ctx);
    gw_config_free(cfg);
    free(leaf);
    free(root);
    X509_free(server);
    X509_free(ca);
}

/*
 * The admin listener's TLS records carry the bearer token of POST /reload: OpenSSL wipes each once it
 * was read. A CMP listener's carry no secret of the gateway's, and are left as OpenSSL keeps them.
 */
static void test_tls_ctx_cleanses_admin_records(void **state)
{
    char err[GW_ERR_LEN] = "", *text = edited(NULL, 0);
    struct gw_config *cfg = parse_text(text, strlen(text), err);
    SSL_CTX *admin = NULL, *cmp = NULL;

    (void)state;
    free(text);
    if (cfg == NULL)
        fail_msg("%s", err);
    if (gw_tls_ctx_new(&cfg->listeners[0], true, &admin, err) != 0 ||
        gw_tls_ctx_new(&cfg->listeners[0], false, &cmp, err) != 0)
        fail_msg("%s", err);
    assert_true((SSL_CTX_get_options(admin) & SSL_OP_CLEANSE_PLAINTEXT) != 0);
    assert_true((SSL_CTX_get_options(cmp) & SSL_OP_CLEANSE_PLAINTEXT) == 0);
    SSL_CTX_free(admin);
    SSL_CTX_free(cmp);
    gw_config_free(cfg);
}

/*
 * A listener certificate libssl refuses for what it is (under its security level: an RSA-1024 key, a SHA-1
 * signature), which the load reads, is the file's: GW_ERR_INVAL with OpenSSL's reason, from the context a
 * start builds and from gw_server_check_tls, `cmpgw check`'s (it passed the check, and the start exited 1).
 * The twin: the demo's certificate builds.
 */
static void test_tls_ctx_refused_certificate_is_the_files(void **state)
{
    static const struct {
        const char *cert, *key;
        int rc;
        const char *why;
    } cases[] = {
        {"weak.pem", "weak.key", GW_ERR_INVAL, "ee key too small"},
        {"sha1.pem", "sha1.key", GW_ERR_INVAL, "ca md too weak"},
        {"server.pem", "server.key", 0, ""},
    };
    char cert[64], key[64], err[GW_ERR_LEN];
    struct gw_config *cfg;
    SSL_CTX *ctx;
    char *text;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(cert, sizeof(cert), "\"cert\": \"%s\"", cases[i].cert);
        snprintf(key, sizeof(key), "\"key\": \"%s\"", cases[i].key);
        struct edit e[] = {{"\"cert\": \"server.pem\"", cert}, {"\"key\": \"server.key\"", key}};
        err[0] = '\0';
        text = edited(e, 2);
        cfg = parse_text(text, strlen(text), err);
        free(text);
        if (cfg == NULL)
            fail_msg("case %zu: %s", i, err);
        assert_int_equal(gw_tls_ctx_new(&cfg->listeners[0], false, &ctx, err), cases[i].rc);
        assert_true((ctx == NULL) == (cases[i].rc != 0));
        SSL_CTX_free(ctx);
        if (strstr(err, cases[i].why) == NULL)
            fail_msg("case %zu: %s", i, err);
        assert_int_equal(gw_server_check_tls(cfg, err), cases[i].rc);
        if (cases[i].rc != 0 &&
            (strstr(err, "listener 127.0.0.1:") == NULL || strstr(err, cases[i].why) == NULL))
            fail_msg("case %zu: %s", i, err);
        gw_config_free(cfg);
    }
}

/* Whether the subject names of |names| are those of |certs|, in their order. */
static bool names_of(const STACK_OF(X509_NAME) *names, const STACK_OF(X509) *certs)
{
    bool same = sk_X509_NAME_num(names) == sk_X509_num(certs);

    for (int i = 0; same && i < sk_X509_num(certs); i++)
        same =
            X509_NAME_cmp(sk_X509_NAME_value(names, i), X509_get_subject_name(sk_X509_value(certs, i))) == 0;
    return same;
}

/*
 * The listener's TLS context trusts the client CAs the load read and checked, and names them in its
 * CertificateRequest: a client_ca file replaced after the load (here by another CA alone) is not read
 * again when the context is built. The store keeps the verification flags of a new SSL_CTX.
 */
static void test_tls_ctx_keeps_loaded_client_cas(void **state)
{
    struct edit e[] = {{"\"client_ca\": \"ca.pem\"", "\"client_ca\": \"clientca.pem\""}};
    STACK_OF(X509) *loaded = sk_X509_new_null();
    SSL_CTX *ctx, *fresh = SSL_CTX_new(TLS_server_method());
    STACK_OF(X509_OBJECT) *objs;
    struct gw_config *cfg;

    (void)state;
    assert_non_null(loaded);
    assert_non_null(fresh);
    assert_true(sk_X509_push(loaded, read_cert("ca.pem")) == 1 &&
                sk_X509_push(loaded, read_cert("other.pem")) == 2);
    assert_non_null(sk_X509_value(loaded, 0));
    assert_non_null(sk_X509_value(loaded, 1));
    copy_file("ca-bundle.pem", "clientca.pem", 0644); /* ca.pem, then other.pem */
    ctx = ctx_after_swap(e, "issuing.pem", "clientca.pem", &cfg);
    objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
    assert_int_equal(sk_X509_OBJECT_num(objs), 2);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        assert_non_null(x);
        assert_true(X509_cmp(x, sk_X509_value(loaded, 0)) == 0 || X509_cmp(x, sk_X509_value(loaded, 1)) == 0);
    }
    assert_true(names_of(SSL_CTX_get_client_CA_list(ctx), loaded));
    assert_int_equal(X509_VERIFY_PARAM_get_flags(X509_STORE_get0_param(SSL_CTX_get_cert_store(ctx))),
                     X509_VERIFY_PARAM_get_flags(X509_STORE_get0_param(SSL_CTX_get_cert_store(fresh))));
    SSL_CTX_free(ctx);
    SSL_CTX_free(fresh);
    gw_config_free(cfg);
    sk_X509_pop_free(loaded, X509_free);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_demo),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_user_lookup),
        cmocka_unit_test(test_user_lookup_failing_fails_the_load),
        cmocka_unit_test(test_user_of_uid_0_refused),
        cmocka_unit_test(test_change_of_user_lookup_class),
        cmocka_unit_test(test_read_failure_class),
        cmocka_unit_test(test_written_file_class),
        cmocka_unit_test(test_reads_without_descriptors),
        cmocka_unit_test(test_openat_as_users_groups),
        cmocka_unit_test(test_tls_ctx_keeps_what_was_loaded),
        cmocka_unit_test(test_tls_ctx_cleanses_admin_records),
        cmocka_unit_test(test_tls_ctx_refused_certificate_is_the_files),
        cmocka_unit_test(test_tls_ctx_keeps_loaded_client_cas),
        cmocka_unit_test(test_upstreams),
        cmocka_unit_test(test_upstream_tls_key_ed25519),
        cmocka_unit_test(test_upstreams_full),
        cmocka_unit_test(test_upstream_edges),
        cmocka_unit_test(test_crl),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_fds_counted),
        cmocka_unit_test(test_fds_over_hard_limit),
        cmocka_unit_test(test_secret_group_warns),
        cmocka_unit_test(test_key_modes),
        cmocka_unit_test(test_file_not_regular),
        cmocka_unit_test(test_plaintext_upstream),
        cmocka_unit_test(test_free_subjects_warn),
        cmocka_unit_test(test_trusted_everyone_warns),
        cmocka_unit_test(test_migration_weak_chain_warns),
        cmocka_unit_test(test_migration_unheld_ca_warns),
        cmocka_unit_test(test_migration_delegate_ca_warns),
        cmocka_unit_test(test_migration_shared_issuing_ca),
        cmocka_unit_test(test_migration_shared_ca_name_with_slash),
        cmocka_unit_test(test_any_host_role_warns),
        cmocka_unit_test(test_any_dns_san_role_warns),
        cmocka_unit_test(test_subjects_only_server_role_warns),
        cmocka_unit_test(test_any_cn_role_warns),
        cmocka_unit_test(test_storeless_local_warns),
        cmocka_unit_test(test_handover_without_shared_state_warns),
        cmocka_unit_test(test_handover_socket_count),
        cmocka_unit_test(test_handover_socket_count_at_reload),
        cmocka_unit_test(test_check_role),
        cmocka_unit_test(test_subject_patterns),
        cmocka_unit_test(test_dir_of),
        cmocka_unit_test(test_check_dir_chain),
        cmocka_unit_test(test_open_dir_holds_what_it_judged),
        cmocka_unit_test(test_check_dir_links),
        cmocka_unit_test(test_names_has),
        cmocka_unit_test(test_conf_show_userinfo),
        cmocka_unit_test(test_conf_show_file),
        cmocka_unit_test(test_pkcs11_missing_key_masked),
        cmocka_unit_test(test_pkcs11_no_pin),
        cmocka_unit_test(test_pkcs11_module_typo),
        cmocka_unit_test(test_pkcs11_quiet),
        cmocka_unit_test(test_conf_key_shown),
        cmocka_unit_test(test_cert_file_key_not_left),
        cmocka_unit_test(test_key_file_text_not_left),
        cmocka_unit_test(test_key_file_forms),
        cmocka_unit_test(test_conf_file_over_cap),
    };
    const size_t nbad = sizeof(bad_cases) / sizeof(bad_cases[0]), nfixed = sizeof(fixed) / sizeof(fixed[0]);
    struct CMUnitTest *tests = calloc(nbad + nfixed, sizeof(*tests));
    size_t i, n = 0;
    int rc;

    for (i = 0; i < nfixed; i++)
        tests[n++] = fixed[i];
    for (i = 0; i < nbad; i++)
        tests[n++] = (struct CMUnitTest){bad_cases[i].name, test_bad, NULL, NULL, (void *)&bad_cases[i]};
    rc = _cmocka_run_group_tests("config", tests, n, group_setup, group_teardown);
    free(tests);
    return rc;
}
