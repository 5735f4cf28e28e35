/*
 * Validated client chains, remembered (docs/performance.md): a signer that sends many requests (an
 * RA, a device enrolling again) has its certificate path built and verified once, not per message.
 * One cache per engine, hence per configuration generation: a reload starts afresh (docs/design.md
 * D23).
 */
#ifndef GW_CMP_CHAINS_H
#define GW_CMP_CHAINS_H

#include <openssl/x509.h>

struct cmp_chains;

struct cmp_chains *cmp_chains_new(void);
void cmp_chains_free(struct cmp_chains *cc);

/*
 * cmp_chains_valid tells whether |cert| chains to |store| (with |untrusted| as intermediates), as
 * X509_verify_cert decides at security level GW_SIGNER_AUTH_LEVEL (every signature below the trust
 * anchor and every key of the chain 112 bits of security or more): 1 or 0. A positive answer is remembered
 * for GW_CHAIN_CACHE_SECS, for the same store, certificate and intermediates (in order), and reused only
 * while every certificate of the chain it found is within its validity; never for a store that verifies at
 * a fixed time, or when |cc| is NULL. For a store that checks CRLs, the signatures, times and security level
 * are checked first, the CRLs only for a chain that passes them; the CRLs' answer is remembered for that
 * chain too (whatever intermediates come with |cert| next), and both no later than the first thisUpdate or
 * nextUpdate of a CRL of the store still to come (the CRLs are the configuration's: a new set comes with
 * a new generation, and a new cache).
 */
int cmp_chains_valid(struct cmp_chains *cc, X509_STORE *store, STACK_OF(X509) *untrusted, X509 *cert);

/*
 * cmp_chains_valid_chain is cmp_chains_valid that also hands out the chain found (*chain: |cert|
 * first, the trust anchor last, each up-referenced; the caller frees it with sk_X509_pop_free), or
 * NULL when it does not validate. A remembered answer hands out the chain found then.
 */
int cmp_chains_valid_chain(struct cmp_chains *cc, X509_STORE *store, STACK_OF(X509) *untrusted, X509 *cert,
                           STACK_OF(X509) **chain);

/*
 * cmp_chains_verify is cmp_chains_valid_chain (|chain| may be NULL) that also says why |cert| does not
 * validate: X509_verify_cert's error in *code and the depth it was found at in *depth (X509_V_OK and 0
 * when it validates).
 */
int cmp_chains_verify(struct cmp_chains *cc, X509_STORE *store, STACK_OF(X509) *untrusted, X509 *cert,
                      STACK_OF(X509) **chain, int *code, int *depth);

#endif
