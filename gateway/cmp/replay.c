/*
 * Replay cache: a ring of entries in arrival order (so the oldest is always at the head and
 * expires first, the TTL being the same for all) with hash chains by transactionID for lookup.
 * One mutex (gw_replay.lock). The ring begins with GW_REPLAY_INITIAL_SLOTS and doubles when full,
 * up to max_entries: memory follows the live entries (the rate times the TTL), never past the cap.
 * A grown ring comes from calloc: its pages become resident as entries first fill them, so memory
 * rises with the entries after a doubling and is flat once the ring has wrapped. Growing holds the
 * lock while the live entries are copied (6 to 9 ms for 65 536 of them on a 2-vCPU VM), once per
 * doubling.
 *
 * Each identity's live entries are counted in a count-min sketch (two rows of counters, indexed by
 * two halves of a keyed hash of the identity): fixed memory whatever the number of identities, and
 * an identity is refused only when both its counters reach the share, which an innocent identity
 * reaches through collisions with probability about (1/GW_REPLAY_SKETCH_WIDTH)^2.
 */
#include "gateway/cmp/replay.h"
#include "base/err.h"
#include "base/limits.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#define NIL SIZE_MAX

struct entry {
    size_t next;  /* hash chain, NIL-terminated */
    uint64_t who; /* keyed hash of the identity: its two sketch counters */
    time_t seen;
    unsigned char tid[GW_MAX_TID_LEN];
    unsigned char nonce[GW_MAX_NONCE_LEN];
    unsigned char tid_len, nonce_len;
};

struct gw_replay {
    pthread_mutex_t lock;
    time_t ttl;
    size_t share;            /* live entries one identity may hold */
    uint64_t key;            /* hash key: identities cannot be chosen to collide on purpose */
    uint32_t *sketch;        /* 2 rows of GW_REPLAY_SKETCH_WIDTH counters */
    size_t cap, head, count; /* ring: live entries are head .. head+count-1 (mod cap) */
    size_t max;              /* what the ring may grow to */
    size_t nbuckets;         /* power of two */
    size_t *buckets;
    struct entry *ring;
};

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static size_t hash_tid(const unsigned char *p, size_t n)
{
    return (size_t)fnv1a(1469598103934665603ull, p, n);
}

static uint32_t *counter(struct gw_replay *r, uint64_t who, int row)
{
    return &r->sketch[(size_t)row * GW_REPLAY_SKETCH_WIDTH +
                      (size_t)((row == 0 ? who : who >> 32) & (GW_REPLAY_SKETCH_WIDTH - 1))];
}

static int over_share(struct gw_replay *r, uint64_t who)
{
    return *counter(r, who, 0) >= r->share && *counter(r, who, 1) >= r->share;
}

static void count(struct gw_replay *r, uint64_t who, int delta)
{
    for (int row = 0; row < 2; row++)
        *counter(r, who, row) += (uint32_t)delta;
}

struct gw_replay *gw_replay_new(size_t max_entries, size_t per_identity, time_t ttl)
{
    struct gw_replay *r;
    size_t nb = 16;

    if (max_entries == 0 || max_entries >= NIL / 2 || per_identity == 0 || per_identity > UINT32_MAX ||
        ttl <= 0 || (r = calloc(1, sizeof(*r))) == NULL)
        return NULL;
    while (nb < max_entries)
        nb <<= 1;
    r->ttl = ttl;
    r->max = max_entries;
    r->cap = max_entries < GW_REPLAY_INITIAL_SLOTS ? max_entries : GW_REPLAY_INITIAL_SLOTS;
    r->share = per_identity;
    r->nbuckets = nb;
    r->buckets = malloc(nb * sizeof(*r->buckets));
    r->ring = calloc(r->cap, sizeof(*r->ring));
    r->sketch = calloc(2 * GW_REPLAY_SKETCH_WIDTH, sizeof(*r->sketch));
    if (r->buckets == NULL || r->ring == NULL || r->sketch == NULL ||
        RAND_bytes((unsigned char *)&r->key, sizeof(r->key)) != 1 ||
        pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r->buckets);
        free(r->ring);
        free(r->sketch);
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < nb; i++)
        r->buckets[i] = NIL;
    return r;
}

void gw_replay_free(struct gw_replay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r->buckets);
    free(r->ring);
    free(r->sketch);
    free(r);
}

static size_t *bucket_of(struct gw_replay *r, const unsigned char *tid, size_t tid_len)
{
    return &r->buckets[hash_tid(tid, tid_len) & (r->nbuckets - 1)];
}

/* Drops the oldest entry (the ring head) from its hash chain and the ring. */
static void drop_head(struct gw_replay *r)
{
    size_t idx = r->head;
    struct entry *e = &r->ring[idx];
    size_t *link = bucket_of(r, e->tid, e->tid_len);

    while (*link != NIL && *link != idx)
        link = &r->ring[*link].next;
    if (*link == idx)
        *link = e->next;
    count(r, e->who, -1);
    r->head = (r->head + 1) % r->cap;
    r->count--;
}

/* Entries seen at or before now - ttl are gone; a clock that steps back keeps everything live. */
static void expire(struct gw_replay *r, time_t now)
{
    while (r->count > 0 && r->ring[r->head].seen <= now - r->ttl)
        drop_head(r);
}

static struct entry *lookup(struct gw_replay *r, const unsigned char *tid, size_t tid_len)
{
    for (size_t i = *bucket_of(r, tid, tid_len); i != NIL; i = r->ring[i].next) {
        struct entry *e = &r->ring[i];
        if (e->tid_len == tid_len && memcmp(e->tid, tid, tid_len) == 0)
            return e;
    }
    return NULL;
}

static void insert(struct gw_replay *r, const unsigned char *tid, size_t tid_len, const unsigned char *nonce,
                   size_t nonce_len, uint64_t who, time_t now)
{
    size_t idx = (r->head + r->count) % r->cap;
    size_t *bucket = bucket_of(r, tid, tid_len);
    struct entry *e = &r->ring[idx];

    memcpy(e->tid, tid, tid_len);
    e->tid_len = (unsigned char)tid_len;
    if (nonce_len > 0)
        memcpy(e->nonce, nonce, nonce_len);
    e->nonce_len = (unsigned char)nonce_len;
    e->seen = now;
    e->who = who;
    count(r, who, 1);
    e->next = *bucket;
    *bucket = idx;
    r->count++;
}

/* Where the live entry at |idx| goes when the ring is moved to begin at its head. */
static size_t moved(const struct gw_replay *r, size_t idx)
{
    return idx == NIL ? NIL : (idx + r->cap - r->head) % r->cap;
}

/*
 * A full ring doubled (up to r->max): the live entries first, in order. The chains hold live entries
 * only, so they keep their order with each index moved, not rehashed. 0 or -1.
 */
static int grow(struct gw_replay *r)
{
    size_t cap = r->cap * 2 < r->max ? r->cap * 2 : r->max;
    struct entry *ring;

    if (cap <= r->cap || (ring = calloc(cap, sizeof(*ring))) == NULL)
        return -1;
    for (size_t i = 0; i < r->count; i++) {
        ring[i] = r->ring[(r->head + i) % r->cap];
        ring[i].next = moved(r, ring[i].next);
    }
    for (size_t i = 0; i < r->nbuckets; i++)
        r->buckets[i] = moved(r, r->buckets[i]);
    free(r->ring);
    r->ring = ring;
    r->cap = cap;
    r->head = 0;
    return 0;
}

int gw_replay_check_add(struct gw_replay *r, const unsigned char *tid, size_t tid_len,
                        const unsigned char *nonce, size_t nonce_len, const char *identity, time_t now)
{
    struct entry *e;
    uint64_t who;
    int rc = 0;

    if (r == NULL || tid == NULL || tid_len == 0 || tid_len > GW_MAX_TID_LEN ||
        nonce_len > GW_MAX_NONCE_LEN || (nonce == NULL && nonce_len > 0))
        return GW_ERR_INVAL;
    if (identity == NULL)
        identity = "";
    pthread_mutex_lock(&r->lock);
    who = fnv1a(1469598103934665603ull ^ r->key, (const unsigned char *)identity, strlen(identity));
    expire(r, now);
    if ((e = lookup(r, tid, tid_len)) != NULL)
        rc = e->nonce_len == nonce_len && (nonce_len == 0 || memcmp(e->nonce, nonce, nonce_len) == 0)
                 ? GW_ERR_REPLAY
                 : GW_ERR_EXISTS;
    else if (over_share(r, who))
        rc = GW_ERR_LIMIT;
    else if (r->count == r->cap && grow(r) != 0)
        rc = GW_ERR_BUSY; /* at max_entries (or out of memory) */
    else
        insert(r, tid, tid_len, nonce, nonce_len, who, now);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

size_t gw_replay_count(struct gw_replay *r)
{
    size_t n;

    if (r == NULL)
        return 0;
    pthread_mutex_lock(&r->lock);
    n = r->count;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void gw_replay_clear(struct gw_replay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    /* chains hold live entries only (drop_head unlinks), so emptying their buckets empties them all */
    for (size_t i = 0; i < r->count; i++) {
        const struct entry *e = &r->ring[(r->head + i) % r->cap];
        *bucket_of(r, e->tid, e->tid_len) = NIL;
    }
    r->head = 0;
    r->count = 0;
    memset(r->sketch, 0, 2 * GW_REPLAY_SKETCH_WIDTH * sizeof(*r->sketch));
    pthread_mutex_unlock(&r->lock);
}
