/*
 * Whether the signer's key signs (any thread): the key that protects every signed CMP answer. A key
 * in a token fails once the token is gone or refuses, and every signed answer with it (HTTP 500);
 * /readyz says so (docs/operations.md, "What a readiness failure means").
 *
 * Each protection signature of an answer records its outcome. The prober's test signature fills in
 * where the last outcome failed or is older than GW_SIGNER_CHECK_MS, at most once in that span:
 * neither /readyz nor the probes make the token sign more often, and /readyz only reads.
 */
#ifndef GW_CMP_SIGNER_H
#define GW_CMP_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/evp.h>

struct cmp_signer_health;

/* cmp_signer_health_new watches |key| (borrowed: it must outlive the result), taken to sign as it
 * was loaded. NULL when out of memory. cmp_signer_health_free is NULL-safe. */
struct cmp_signer_health *cmp_signer_health_new(EVP_PKEY *key);
void cmp_signer_health_free(struct cmp_signer_health *h);

/* cmp_signer_note records the outcome of a protection signature (worker); |why| says why it failed. */
void cmp_signer_note(struct cmp_signer_health *h, bool ok, const char *why);

/*
 * cmp_signer_failed_in is whether |msg|, one of OpenSSL's CMP diagnostics (the log callback's), says that
 * a message's protection failed (CMP_R_ERROR_PROTECTING_MESSAGE): OpenSSL's CMP server logs its error
 * queue and empties it before it returns.
 */
bool cmp_signer_failed_in(const char *msg);

/* cmp_signer_failed_in_queue is that for OpenSSL's error queue, which it empties; |why| gets the first
 * error in it, the cause. */
bool cmp_signer_failed_in_queue(char *why, size_t cap);

/* cmp_signer_probe makes a test signature when one is due (above); the prober's thread. */
void cmp_signer_probe(struct cmp_signer_health *h);

/* cmp_signer_status: 0 when the last signature succeeded, else GW_ERR_UNAVAILABLE with why in |why|. */
int cmp_signer_status(struct cmp_signer_health *h, char *why, size_t cap);

#endif
