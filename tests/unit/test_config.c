/*
 * gw_config: a real demo PKI and configuration (deploy/demo-pki.sh), then table-driven variants
 * made by editing the JSON text. Every error case asserts the JSON path and the offending value.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509v3.h>

#include "gateway/config.h"
#include "gateway/limits.h"

static char dir[64]; /* the temporary PKI directory */
static char *demo;   /* the demo cmpgw.json text */
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
    if ((demo = slurp(path, NULL)) == NULL)
        return -1;
    put_file("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
             71, 0644);
    put_file("empty.pem", "", 0, 0644);
    put_file("short.secret", secret_short, strlen(secret_short), 0600);
    put_file("crlf.secret", "12345678\r\n", 10, 0600);
    put_file("long.secret", "", 0, 0600);
    {
        char big[GW_MAX_PBM_SECRET_LEN + 1];
        memset(big, 'x', sizeof(big));
        put_file("long.secret", big, sizeof(big), 0600);
    }
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[256];

    (void)state;
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
    struct edit e[3];
    const char *want[3]; /* substrings of the error, in order */
};

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
    {"null listener",
     {E("\"listeners\": [", "\"listeners\": [null,")},
     {"$.listeners[0]: expected a listener object, got null"}},
    {"null in names",
     {E("\"trust\": [\"demo\"]", "\"trust\": [null]")},
     {"$.roles.default.trust[0]: expected a name", "got null"}},
    {"null in flags",
     {E("\"uri\"", "null")},
     {"$.roles.default.allowed_san_types[2]: expected one of", "got null"}},
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
    /* unknown keys */
    {"unknown top", {E("\"signer\":", "\"bogus\": 1, \"signer\":")}, {"cmpgw.json: $.bogus: unknown key"}},
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
     {E("\"key\": \"signer.key\"", "\"key\": \"signer.pem\"")},
     {"$.signer.key: cannot parse an unencrypted PEM private key"}},
    {"key mismatch",
     {E("\"key\": \"signer.key\"", "\"key\": \"client.key\"")},
     {"$.signer.key: key in \"", "client.key\" does not match the certificate in"}},
    {"tls key mismatch",
     {E("\"key\": \"server.key\"", "\"key\": \"client.key\"")},
     {"$.listeners[0].tls.key: key in"}},
    {"tls client_ca garbage",
     {E("\"client_ca\": \"ca.pem\"", "\"client_ca\": \"garbage.pem\"")},
     {"$.listeners[0].tls.client_ca: cannot parse a PEM certificate"}},
    {"upstream not a CA",
     {E("\"cert\": \"issuing.pem\", \"key\": \"issuing.key\"",
        "\"cert\": \"client.pem\", \"key\": \"client.key\"")},
     {"$.upstreams.local.cert: \"", "client.pem\" is not a CA certificate"}},
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
    {"pbm secret missing",
     {E("\"secret_file\": \"pbm.secret\"", "\"secret_file\": \"nope.secret\"")},
     {"$.pbm.demo-device.secret_file: cannot open"}},
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
    {"bad policy",
     {E("\"default_path_policy\": \"role:default\"", "\"default_path_policy\": \"allow\"")},
     {"$.default_path_policy: expected \"role:<name>\" or \"forbid\", got \"allow\""}},
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
     {"$.label_to_path_policy.bad label: expected a label of 1..64 characters"}},
    {"long label",
     {E("{ \"default\": \"role:default\" }",
        "{ \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": \"role:default\" }")},
     {"$.label_to_path_policy.aaaa", "expected a label"}},
    {"bad role name",
     {E("\"default\": {\n      \"upstream\"", "\"de/fault\": {\n      \"upstream\"")},
     {"$.roles.de/fault: expected a name"}},
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
     {"$.roles.default.key_usage[1]: expected one of", "got \"keyagreement\""}},
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
    {"upstream type",
     {E("\"type\": \"local\"", "\"type\": \"vault\"")},
     {"$.upstreams.local.type: expected one of \"local\", got \"vault\""}},
    {"log_level",
     {E("\"signer\":", "\"log_level\": \"verbose\", \"signer\":")},
     {"$.log_level: expected one of \"debug\"|\"info\"|\"warn\"|\"error\", got \"verbose\""}},
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
    char *text = edited(c->e, 3);
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
    free(text);
}

/* ---- valid configs ---- */

static void test_demo(void **state)
{
    char err[GW_ERR_LEN] = "";
    struct gw_config *cfg = parse_text(demo, strlen(demo), err);
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
    assert_int_equal(cfg->upstreams[0].delay_ms, 0);
    assert_int_equal(sk_X509_num(cfg->upstreams[0].chain), 1);
    assert_int_equal(cfg->cmp.message_time_window, GW_DEFAULT_MSGTIME_WINDOW);
    assert_int_equal(cfg->cmp.transaction_ttl, GW_DEFAULT_TXN_TTL);
    assert_int_equal(cfg->cmp.pbm_max_iterations, GW_DEFAULT_PBM_MAX_ITER);
    assert_int_equal(cfg->cmp.max_transactions, GW_DEFAULT_MAX_TXNS);
    assert_int_equal(cfg->cmp.max_transactions_per_identity, GW_DEFAULT_MAX_TXNS_PER_IDENTITY);
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
    assert_int_equal(r->allowed_san_types, GW_SAN_DNS | GW_SAN_IP | GW_SAN_URI);
    assert_true(r->implicit_confirm);
    assert_false(r->require_subject);
    assert_non_null(r->store);
    assert_int_equal(sk_X509_num(r->untrusted), 1);
    assert_int_equal(r->n_pbm, 1);
    assert_false(cfg->default_path_policy.forbid);
    assert_ptr_equal(cfg->default_path_policy.role, r);

    p = gw_config_pbm(cfg, (const unsigned char *)"demo-device", 11);
    assert_non_null(p);
    assert_int_equal(p->secret_len, 32); /* 16 random bytes in hex, no newline */
    assert_null(gw_config_pbm(cfg, (const unsigned char *)"demo-devic", 10));
    l = gw_config_label(cfg, "default", 7);
    assert_non_null(l);
    assert_ptr_equal(l->policy.role, r);
    assert_null(gw_config_label(cfg, "other", 5));
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
         "\"max_transactions_per_identity\": 2, \"pbm_max_iterations\": 100000}, \"signer\":"},
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
    assert_int_equal(cfg->upstreams[0].timeout_ms, 1500);
    assert_int_equal(cfg->upstreams[0].max_inflight, 3);
    assert_int_equal(cfg->upstreams[0].delay_ms, 2000);
    assert_false(cfg->roles[0].implicit_confirm);
    assert_true(cfg->roles[0].require_subject);
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
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[GW_ERR_LEN] = "";
        char *text = edited(cases[i], 2);
        struct gw_config *cfg = parse_text(text, strlen(text), err);
        if (cfg == NULL)
            fail_msg("edge case %zu: %s", i, err);
        if (i == 4) {
            /* "12345678\r\n": one CRLF stripped, exactly GW_MIN_PBM_SECRET_LEN left */
            assert_int_equal(cfg->pbm[0].secret_len, 8);
            assert_memory_equal(cfg->pbm[0].secret, "12345678", 8);
        }
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
    gw_config_free(NULL);
}

int main(void)
{
    const size_t nbad = sizeof(bad_cases) / sizeof(bad_cases[0]);
    struct CMUnitTest *tests = calloc(nbad + 6, sizeof(*tests));
    size_t i, n = 0;
    int rc;

    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_demo);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_full);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_edges);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_raw);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_oversized);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_load);
    for (i = 0; i < nbad; i++)
        tests[n++] = (struct CMUnitTest){bad_cases[i].name, test_bad, NULL, NULL, (void *)&bad_cases[i]};
    rc = _cmocka_run_group_tests("config", tests, n, group_setup, group_teardown);
    free(tests);
    return rc;
}
