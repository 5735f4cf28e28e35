/*
 * The validated-chain cache (chains.h). Direct-mapped and bounded: GW_CHAIN_CACHE_SLOTS entries,
 * each the SHA-256 of (store, certificate, the intermediates offered) and the times the chain found
 * holds and the chain itself (status.c attributes a certificate no upstream issued to the trust
 * entries of its chain), a newer entry taking the slot of an older one. The intermediates are part of the
 * key: a client that stops sending its chain is refused as it would be the first time. Only positive answers
 * are kept: a certificate that fails is verified again each time, so nothing an attacker sends can make a
 * later check pass.
 *
 * A store with CRLs (a trust with crl_file) is checked in two steps: everything but the CRLs first, then
 * the CRLs for the chain found, whose answer is kept under that chain as well. OpenSSL 3.0 verifies the
 * signature of every CRL it uses with each validation, hashing the whole CRL (5 ms for 200 000 entries),
 * and checks CRLs before any signature of the chain: a made-up certificate naming a CA of the
 * trust as its issuer, or a client's own certificate with other junk in extraCerts each time, would make
 * each message cost that.
 */
#include "gateway/cmp/chains.h"
#include "base/limits.h"
#include "base/x509.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

struct slot {
    unsigned char key[32];
    time_t not_before, not_after; /* the latest notBefore and earliest notAfter of the chain */
    time_t until;                 /* when this answer is forgotten */
    STACK_OF(X509) *chain;        /* the chain found, certificate first, anchor last (up-referenced) */
};

struct cmp_chains {
    pthread_mutex_t lock;
    struct slot slots[GW_CHAIN_CACHE_SLOTS];
};

struct cmp_chains *cmp_chains_new(void)
{
    struct cmp_chains *cc = calloc(1, sizeof(*cc));

    if (cc != NULL)
        pthread_mutex_init(&cc->lock, NULL);
    return cc;
}

void cmp_chains_free(struct cmp_chains *cc)
{
    if (cc == NULL)
        return;
    for (size_t i = 0; i < GW_CHAIN_CACHE_SLOTS; i++)
        sk_X509_pop_free(cc->slots[i].chain, X509_free);
    pthread_mutex_destroy(&cc->lock);
    free(cc);
}

/*
 * SHA-256 of the store's address and the SHA-256 of the certificate and of each intermediate; 0, or -1.
 * A certificate's own SHA-256 is the one recorded when it was parsed, where it was (gw_x509_sha256):
 * a signer's extraCerts are the same parsed certificates with each message.
 */
static int cache_key(const X509_STORE *store, const X509 *cert, const STACK_OF(X509) *untrusted,
                     unsigned char key[32])
{
    unsigned char d[32];
    unsigned int kn = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, gw_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, &store, sizeof(store)) == 1 && gw_x509_sha256(cert, d) == 0 &&
             EVP_DigestUpdate(ctx, d, sizeof(d)) == 1;

    for (int i = 0; ok && i < sk_X509_num(untrusted); i++)
        ok = gw_x509_sha256(sk_X509_value(untrusted, i), d) == 0 && EVP_DigestUpdate(ctx, d, sizeof(d)) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, key, &kn) == 1 && kn == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/*
 * X509_verify_cert as OSSL_CMP_validate_cert_path runs it, at GW_SIGNER_AUTH_LEVEL: outside TLS OpenSSL
 * sets no level, and would accept a chain signed with SHA-1 or MD5 or through an RSA key of 1024 bits.
 * Without |crls| the store's CRL checks are left out for this call. 1 with the chain's common validity and
 * the chain itself (*chain, the caller's); else 0 with the error and its depth.
 */
static int verify(X509_STORE *store, STACK_OF(X509) *untrusted, X509 *cert, int crls, time_t *nb, time_t *na,
                  STACK_OF(X509) **found, int *code, int *depth)
{
    X509_STORE_CTX *csc = X509_STORE_CTX_new();
    STACK_OF(X509) *chain;
    int ok = csc != NULL && X509_STORE_CTX_init(csc, store, cert, untrusted) == 1;

    *nb = 0;
    *na = 0;
    *found = NULL;
    *code = X509_V_ERR_OUT_OF_MEM;
    *depth = 0;
    if (ok && !crls)
        ok = X509_VERIFY_PARAM_clear_flags(X509_STORE_CTX_get0_param(csc),
                                           X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) == 1;
    if (ok) {
        X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(csc), GW_SIGNER_AUTH_LEVEL);
        ok = X509_verify_cert(csc) == 1;
        *code = X509_STORE_CTX_get_error(csc);
        *depth = X509_STORE_CTX_get_error_depth(csc);
    }
    chain = ok ? X509_STORE_CTX_get0_chain(csc) : NULL;
    if (ok && (*found = X509_chain_up_ref(chain)) == NULL) {
        ok = 0;
        *code = X509_V_ERR_OUT_OF_MEM;
    }
    for (int i = 0; ok && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        time_t b, a;

        if (gw_asn1_time(X509_get0_notBefore(x), &b) != 0 || gw_asn1_time(X509_get0_notAfter(x), &a) != 0) {
            *na = 0; /* a time it cannot read: valid now, but not remembered */
            break;
        }
        *nb = i == 0 || b > *nb ? b : *nb;
        *na = i == 0 || a < *na ? a : *na;
    }
    X509_STORE_CTX_free(csc);
    return ok;
}

/* Moves |until| back to |t| if |t| is after |now| and before it. */
static void earlier(time_t *until, time_t t, time_t now)
{
    if (t > now && t < *until)
        *until = t;
}

/*
 * Until when the CRLs of |store| answer as they do at |now|: the first thisUpdate or nextUpdate of any
 * after |now| (a CRL that starts to count or stops counting), at most |until|; |now| (nothing to remember)
 * when a time cannot be read. The CRLs themselves are the configuration's: a new set is a new generation.
 */
static time_t crls_steady_until(X509_STORE *store, time_t now, time_t until)
{
    STACK_OF(X509_OBJECT) *objs;
    time_t t;

    if (X509_STORE_lock(store) != 1)
        return now;
    objs = X509_STORE_get0_objects(store);
    for (int i = 0; until > now && i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));

        if (crl == NULL)
            continue;
        if (gw_asn1_time(X509_CRL_get0_lastUpdate(crl), &t) != 0)
            until = now;
        else
            earlier(&until, t, now);
        if (X509_CRL_get0_nextUpdate(crl) == NULL)
            continue;
        if (gw_asn1_time(X509_CRL_get0_nextUpdate(crl), &t) != 0)
            until = now;
        else
            earlier(&until, t, now);
    }
    (void)X509_STORE_unlock(store);
    return until;
}

/* The slot of |key| in |cc|. */
static struct slot *slot_of(struct cmp_chains *cc, const unsigned char key[32])
{
    return &cc->slots[(key[0] | (size_t)key[1] << 8) % GW_CHAIN_CACHE_SLOTS];
}

/*
 * Whether |cc| remembers a valid chain under |key| at |now|: 1 with *until moved back to when it is
 * forgotten and, if |chain|, the chain (*chain, up-referenced); else 0.
 */
static int recall(struct cmp_chains *cc, const unsigned char key[32], time_t now, time_t *until,
                  STACK_OF(X509) **chain)
{
    struct slot *s = slot_of(cc, key);
    int hit;

    pthread_mutex_lock(&cc->lock);
    hit = CRYPTO_memcmp(s->key, key, 32) == 0 && now < s->until && now >= s->not_before &&
          now <= s->not_after && s->chain != NULL;
    if (hit && chain != NULL && (*chain = X509_chain_up_ref(s->chain)) == NULL)
        hit = 0; /* out of memory: verified afresh */
    if (hit && s->until < *until)
        *until = s->until;
    pthread_mutex_unlock(&cc->lock);
    return hit;
}

/* Remembers |found| (up-referenced), valid from |nb| to |na|, under |key| until |until|. */
static void remember(struct cmp_chains *cc, const unsigned char key[32], time_t nb, time_t na, time_t until,
                     STACK_OF(X509) *found)
{
    struct slot *s = slot_of(cc, key);
    STACK_OF(X509) *old;

    pthread_mutex_lock(&cc->lock);
    memcpy(s->key, key, 32);
    s->not_before = nb;
    s->not_after = na;
    s->until = until;
    old = s->chain;
    s->chain = X509_chain_up_ref(found);
    pthread_mutex_unlock(&cc->lock);
    sk_X509_pop_free(old, X509_free);
}

/*
 * The CRL checks of |store| on the chain *found that passed every other check (|cert| first, the anchor
 * last): X509_verify_cert again with that chain's intermediates, remembered under them, so that other
 * intermediates offered with |cert| (a client's junk in extraCerts, varied each time) find the answer. 1
 * with *until moved back to when it is forgotten (crls_steady_until), *found the chain checked and *nb, *na
 * its common validity; else 0 with the error and its depth.
 */
static int crls_pass(struct cmp_chains *cc, X509_STORE *store, X509 *cert, time_t now, time_t *until,
                     time_t *nb, time_t *na, STACK_OF(X509) **found, int *code, int *depth)
{
    STACK_OF(X509) *inter = sk_X509_dup(*found), *again = NULL;
    unsigned char key[32];
    int known = inter != NULL && sk_X509_shift(inter) == cert && cc != NULL &&
                cache_key(store, cert, inter, key) == 0;
    int ok = known && recall(cc, key, now, until, NULL);

    if (!ok && inter != NULL && verify(store, inter, cert, 1, nb, na, &again, code, depth)) {
        ok = 1;
        *until = crls_steady_until(store, now, *until);
        if (known && *na > now && *until > now)
            remember(cc, key, *nb, *na, *until, again);
        sk_X509_pop_free(*found, X509_free);
        *found = again;
    } else if (inter == NULL) {
        *code = X509_V_ERR_OUT_OF_MEM;
    }
    sk_X509_free(inter);
    return ok;
}

int cmp_chains_valid(struct cmp_chains *cc, X509_STORE *store, STACK_OF(X509) *untrusted, X509 *cert)
{
    return cmp_chains_valid_chain(cc, store, untrusted, cert, NULL);
}

int cmp_chains_valid_chain(struct cmp_chains *cc, X509_STORE *store, STACK_OF(X509) *untrusted, X509 *cert,
                           STACK_OF(X509) **chain)
{
    int code, depth;

    return cmp_chains_verify(cc, store, untrusted, cert, chain, &code, &depth);
}

int cmp_chains_verify(struct cmp_chains *cc, X509_STORE *store, STACK_OF(X509) *untrusted, X509 *cert,
                      STACK_OF(X509) **chain, int *code, int *depth)
{
    unsigned long flags = X509_VERIFY_PARAM_get_flags(X509_STORE_get0_param(store));
    int crls = (flags & X509_V_FLAG_CRL_CHECK) != 0;
    unsigned char key[32];
    STACK_OF(X509) *found = NULL;
    time_t now = time(NULL), until = now + GW_CHAIN_CACHE_SECS, nb, na;
    int keyed = cc != NULL && (flags & X509_V_FLAG_USE_CHECK_TIME) == 0 &&
                cache_key(store, cert, untrusted, key) == 0;

    if (chain != NULL)
        *chain = NULL;
    *code = X509_V_OK;
    *depth = 0;
    if (keyed && recall(cc, key, now, &until, chain))
        return 1;
    /* signatures, times and the security level first: OpenSSL checks CRLs before signatures, and verifies
       each CRL's signature each time (5 ms for a CRL of 200 000 entries, 4.6 MB), so a made-up certificate
       naming a CA of the trust as its issuer would cost that each time */
    if (!verify(store, untrusted, cert, 0, &nb, &na, &found, code, depth))
        return 0;
    if (crls && !crls_pass(keyed ? cc : NULL, store, cert, now, &until, &nb, &na, &found, code, depth)) {
        sk_X509_pop_free(found, X509_free);
        return 0;
    }
    if (keyed && na > now && until > now)
        remember(cc, key, nb, na, until, found);
    if (chain != NULL)
        *chain = found;
    else
        sk_X509_pop_free(found, X509_free);
    return 1;
}
