/*
 * The certificates this process let through lately (recent.h). A ring of GW_RECENT_ISSUED entries, the
 * oldest overwritten first, with a hash index over it: each entry is in the chain of the bucket its
 * issuer-and-serial id picks (the id is SHA-256 output already, so its first bytes spread evenly), so
 * that a lookup compares about one entry, not the ring's 4096. The id is the revoked set's
 * (cmp_revoked_id), the certificate's hash 128 bits of SHA-256 over its DER: two certificates under one
 * issuer and serial differ there, the same one returned twice (a deferred request's certificate checked
 * when it lands and again when its pollReq collects it) does not.
 *
 * The caller has the id (cmp_check_serial_reused looks it up in the revoked set first); the DER's
 * hash is taken before the lock; under it, a walk of one chain and, for a new one, an unlinking
 * and a linking. One lock for the check and the insertion: two certificates with one serial that arrive
 * at once on two workers cannot both pass.
 */
#include "gateway/cmp/recent.h"
#include "base/err.h"
#include "base/log.h"
#include "base/x509.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define HASH_LEN 16
#define NIL UINT32_MAX

_Static_assert((GW_RECENT_ISSUED & (GW_RECENT_ISSUED - 1)) == 0, "GW_RECENT_ISSUED is a power of 2");
_Static_assert(GW_MAX_TID_LEN <= UINT8_MAX, "a transactionID's length fits an entry's tid_len");

struct recent_entry {
    unsigned char id[CMP_REVOKED_ID_LEN]; /* issuer and serial */
    unsigned char hash[HASH_LEN];         /* the certificate's DER */
    uint32_t next;                        /* in its bucket's chain; NIL ends it */
    uint8_t tid_len;
    unsigned char tid[GW_MAX_TID_LEN]; /* the transaction that let it through */
};

struct cmp_recent {
    pthread_mutex_t lock;
    uint32_t n;      /* entries in use */
    uint32_t oldest; /* the slot the next one takes: the oldest entry once the ring is full */
    uint32_t bucket[GW_RECENT_ISSUED];
    struct recent_entry v[GW_RECENT_ISSUED];
};

struct cmp_recent *cmp_recent_new(void)
{
    struct cmp_recent *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < GW_RECENT_ISSUED; i++)
        r->bucket[i] = NIL;
    return r;
}

void cmp_recent_free(struct cmp_recent *r)
{
    if (r == NULL)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static uint32_t bucket_of(const unsigned char *id)
{
    return ((uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 | (uint32_t)id[3] << 24) &
           (GW_RECENT_ISSUED - 1);
}

/* The entry with |id|, or NIL. Lock held. */
static uint32_t find(const struct cmp_recent *r, const unsigned char *id)
{
    uint32_t i = r->bucket[bucket_of(id)];

    while (i != NIL && memcmp(r->v[i].id, id, CMP_REVOKED_ID_LEN) != 0)
        i = r->v[i].next;
    return i;
}

/* The oldest entry out of its bucket's chain, once the ring is full. Lock held. */
static void unlink_oldest(struct cmp_recent *r)
{
    uint32_t *at = &r->bucket[bucket_of(r->v[r->oldest].id)];

    while (*at != r->oldest)
        at = &r->v[*at].next;
    *at = r->v[r->oldest].next;
}

/* |id| and |hash| as the newest entry, |tid| (binary) its transaction. Lock held. */
static void insert(struct cmp_recent *r, const unsigned char *id, const unsigned char *hash,
                   const unsigned char *tid, size_t tid_len)
{
    struct recent_entry *en = &r->v[r->oldest];
    uint32_t b = bucket_of(id);

    if (r->n == GW_RECENT_ISSUED)
        unlink_oldest(r);
    else
        r->n++;
    memcpy(en->id, id, CMP_REVOKED_ID_LEN);
    memcpy(en->hash, hash, HASH_LEN);
    memcpy(en->tid, tid, tid_len);
    en->tid_len = (uint8_t)tid_len;
    en->next = r->bucket[b];
    r->bucket[b] = r->oldest;
    r->oldest = (r->oldest + 1) & (GW_RECENT_ISSUED - 1);
}

/* |tid| (hex) as an entry keeps it, in |bin| (GW_MAX_TID_LEN): its length, 0 where it is not hex. */
static size_t tid_bin(const char *tid, unsigned char *bin)
{
    size_t len = 0;

    /* the transactionID as the log writes it (hex): only the log reads it back */
    if (OPENSSL_hexstr2buf_ex(bin, GW_MAX_TID_LEN, &len, tid, '\0') != 1)
        return 0;
    return len;
}

int cmp_recent_note(struct cmp_recent *r, const unsigned char id[CMP_REVOKED_ID_LEN], X509 *cert,
                    const char *tid, char *earlier)
{
    unsigned char hash[EVP_MAX_MD_SIZE], bin[GW_MAX_TID_LEN];
    unsigned int hash_len = 0;
    size_t bin_len = 0;
    uint32_t i;
    int reused = 0;

    earlier[0] = '\0';
    bin_len = tid_bin(tid, bin);
    if (X509_digest(cert, gw_sha256(), hash, &hash_len) != 1 || hash_len < HASH_LEN)
        return GW_ERR_CRYPTO;
    pthread_mutex_lock(&r->lock);
    if ((i = find(r, id)) == NIL)
        insert(r, id, hash, bin, bin_len);
    else if ((reused = memcmp(r->v[i].hash, hash, HASH_LEN) != 0))
        gw_hex(earlier, r->v[i].tid, r->v[i].tid_len);
    pthread_mutex_unlock(&r->lock);
    return reused;
}

int cmp_recent_elsewhere(struct cmp_recent *r, const unsigned char id[CMP_REVOKED_ID_LEN], const char *tid,
                         char *earlier)
{
    unsigned char bin[GW_MAX_TID_LEN];
    size_t bin_len = tid_bin(tid, bin);
    uint32_t i;
    int elsewhere = 0;

    earlier[0] = '\0';
    pthread_mutex_lock(&r->lock);
    if ((i = find(r, id)) != NIL && (r->v[i].tid_len != bin_len || memcmp(r->v[i].tid, bin, bin_len) != 0)) {
        elsewhere = 1;
        gw_hex(earlier, r->v[i].tid, r->v[i].tid_len);
    }
    pthread_mutex_unlock(&r->lock);
    return elsewhere;
}
