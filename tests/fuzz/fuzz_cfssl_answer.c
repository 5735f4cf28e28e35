/*
 * fuzz_cfssl_answer: the input is the body of an answer from cfssl, given to every parser of
 * upstream/answers.h that reads one (envelope, sign, info, crl). Besides the sanitizers: 0 or a
 * gw_err; a refusal gives a one-line reason; a success on sign or info holds exactly one certificate
 * when cfssl said success and none when it did not; a success on crl holds one DER CRL; an error
 * code stays within GW_MAX_CFSSL_CODE.
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>
#include <openssl/x509.h>

#include "base/err.h"
#include "upstream/answers.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    return 0;
}

static void check_env(const char *what, const struct gw_cfssl_envelope *env)
{
    if (env->code < 0 || env->code > GW_MAX_CFSSL_CODE)
        fuzz_die("%s: error code %ld accepted", what, env->code);
}

static void cert(const char *what, int (*parse)(const char *, size_t, struct gw_cfssl_cert *, char *),
                 const char *body, size_t len)
{
    struct gw_cfssl_cert c;
    char err[GW_ERR_LEN] = "";
    int rc = parse(body, len, &c, err);

    fuzz_check_reason(what, rc, err);
    check_env(what, &c.env); /* a refused answer's too: cfssl's error, which its reason quotes */
    if (rc == 0 && c.env.success != (c.cert != NULL))
        fuzz_die("%s: success %d with%s a certificate", what, c.env.success, c.cert != NULL ? "" : "out");
    if (rc != 0 && c.env.success)
        fuzz_die("%s: refused, and its envelope kept saying success", what);
    gw_cfssl_cert_cleanup(&c);
}

static void crl(const char *body, size_t len)
{
    struct gw_cfssl_crl c;
    char err[GW_ERR_LEN] = "";
    int rc = gw_cfssl_parse_crl(body, len, &c, err);

    fuzz_check_reason("crl", rc, err);
    if (rc == 0 && c.env.success) {
        const unsigned char *p = c.der;
        X509_CRL *x = c.der != NULL ? d2i_X509_CRL(NULL, &p, (long)c.len) : NULL;
        if (x == NULL || p != c.der + c.len)
            fuzz_die("crl: accepted %zu bytes that are not exactly one DER CRL", c.len);
        X509_CRL_free(x);
    }
    gw_cfssl_crl_cleanup(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_cfssl_envelope env;
    char err[GW_ERR_LEN] = "";
    int rc = gw_cfssl_parse_envelope((const char *)data, size, &env, err);

    fuzz_check_reason("envelope", rc, err);
    if (rc == 0)
        check_env("envelope", &env);
    cert("sign", gw_cfssl_parse_sign, (const char *)data, size);
    cert("info", gw_cfssl_parse_info, (const char *)data, size);
    crl((const char *)data, size);
    return 0;
}
