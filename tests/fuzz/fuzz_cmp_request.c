/*
 * fuzz_cmp_request: the CMP request path without network (fuzz_engine.h). The input is the body
 * of the POST, as a client sends it: decode, the body-type allow-list, the header walks, the
 * checks before OpenSSL, the signer choice, OpenSSL's protection check. A mutation of what the
 * protection covers fails that check, so past it this reaches what the seeds and mutations of the
 * unprotected parts (extraCerts) reach: the callbacks, the local issuer, the audit log.
 */
#include "tests/fuzz/fuzz_engine.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_engine_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_engine_input(data, size, NULL);
    return 0;
}
