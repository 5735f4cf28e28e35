/*
 * fuzz_config: the input is a configuration file for gw_config_parse, whose relative file names
 * resolve against the fuzzing PKI (tests/fuzz/pki), so that the certificates, keys, trust stores
 * and PBM secrets the demo configuration names load and the checks after them run. A configuration
 * that parses is looked up the way the gateway does and freed; one that does not must say why.
 */
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    fuzz_pki_secrets_private();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[GW_ERR_LEN] = "";
    struct gw_config *cfg = gw_config_parse((const char *)data, size, FUZZ_PKI, "fuzz.json", err);

    if (cfg == NULL) {
        if (err[0] == '\0' || strnlen(err, sizeof(err)) == sizeof(err))
            fuzz_die("a refused configuration without a one-line reason");
        return 0;
    }
    for (size_t i = 0; i < cfg->n_roles; i++)
        if (gw_config_role(cfg, cfg->roles[i].name, strlen(cfg->roles[i].name)) != &cfg->roles[i])
            fuzz_die("role %s is not found by its name", cfg->roles[i].name);
    for (size_t i = 0; i < cfg->n_pbm; i++)
        if (gw_pbm_conf_find(cfg->pbm, cfg->n_pbm, (const unsigned char *)cfg->pbm[i].reference,
                             strlen(cfg->pbm[i].reference)) != &cfg->pbm[i])
            fuzz_die("pbm %s is not found by its reference", cfg->pbm[i].reference);
    gw_config_free(cfg);
    return 0;
}
