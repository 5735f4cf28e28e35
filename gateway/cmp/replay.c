/*
 * Replay cache: a ring of entries in arrival order (so the oldest is always at the head and
 * expires first, the TTL being the same for all) with hash chains by transactionID for lookup.
 * One mutex (gw_replay.lock). Entries are named by their sequence number (the how-manieth added):
 * the chains link sequence numbers, and entry s lives in slot s % cap. The ring begins with
 * GW_REPLAY_INITIAL_SLOTS and doubles when full, up to max_entries: memory follows the live entries
 * (the rate times the TTL), never past the cap.
 *
 * A doubling copies nothing under the lock at once: the full ring stays as the old ring, the new
 * ring (calloc: its pages become resident as entries first fill them) takes the entries added from
 * then on, and each later call moves two of the old ring's entries over (or expiry drops them), so
 * the old ring is empty and freed, outside the lock, after at most half its size of calls. The next
 * doubling needs at least that many additions, so there are never more than two rings. Since live
 * entries have consecutive sequence numbers, fewer than cap of them, they never share a slot, and
 * no chain is rewritten when an entry moves.
 *
 * Each identity's live entries are counted in a count-min sketch (two rows of counters, indexed by
 * two halves of a keyed hash of the identity): fixed memory whatever the number of identities, and
 * an identity is refused only when both its counters reach the share, which an innocent identity
 * reaches through collisions with probability about (1/GW_REPLAY_SKETCH_WIDTH)^2.
 */
#include "gateway/cmp/replay.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/limits.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#define NIL UINT64_MAX

struct entry {
    uint64_t next; /* hash chain: the next entry's sequence number, NIL-terminated */
    uint64_t who;  /* keyed hash of the identity: its two sketch counters */
    time_t seen;
    unsigned char tid[GW_MAX_TID_LEN];
    unsigned char nonce[GW_MAX_NONCE_LEN];
    unsigned char tid_len, nonce_len;
};

struct gw_replay {
    pthread_mutex_t lock;
    time_t ttl;
    size_t share;     /* live entries one identity may hold */
    uint64_t key;     /* hash key: identities cannot be chosen to collide on purpose */
    uint32_t *sketch; /* 2 rows of GW_REPLAY_SKETCH_WIDTH counters */
    uint64_t head;    /* live entries are head .. head+count-1 */
    size_t count, cap;
    size_t max;      /* what the ring may grow to */
    size_t nbuckets; /* power of two */
    uint64_t *buckets;
    struct entry *ring;
    /* after a doubling, until emptied: entries moving .. old_end-1 (those still live) are here */
    struct entry *old;
    size_t old_cap;
    uint64_t moving, old_end;
};

static size_t hash_tid(const unsigned char *p, size_t n)
{
    return (size_t)gw_fnv1a(1469598103934665603ull, p, n);
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
    free(r->old);
    free(r->sketch);
    free(r);
}

static uint64_t *bucket_of(struct gw_replay *r, const unsigned char *tid, size_t tid_len)
{
    return &r->buckets[hash_tid(tid, tid_len) & (r->nbuckets - 1)];
}

/* The live entry numbered |seq|: in the old ring if it has not moved yet. */
static struct entry *at(struct gw_replay *r, uint64_t seq)
{
    if (r->old != NULL && seq >= r->moving && seq < r->old_end)
        return &r->old[seq % r->old_cap];
    return &r->ring[seq % r->cap];
}

/* Drops the oldest entry (the ring head) from its hash chain and the ring. */
static void drop_head(struct gw_replay *r)
{
    struct entry *e = at(r, r->head);
    uint64_t *link = bucket_of(r, e->tid, e->tid_len);

    while (*link != NIL && *link != r->head)
        link = &at(r, *link)->next;
    if (*link == r->head)
        *link = e->next;
    count(r, e->who, -1);
    r->head++;
    r->count--;
}

/* Entries seen at or before now - ttl are gone; a clock that steps back keeps everything live. */
static void expire(struct gw_replay *r, time_t now)
{
    while (r->count > 0 && at(r, r->head)->seen <= now - r->ttl)
        drop_head(r);
}

/*
 * Moves up to |n| of the old ring's live entries into the ring (SIZE_MAX: all of them). Returns the old
 * ring once nothing live is left in it, for the caller to free outside the lock; NULL otherwise.
 */
static struct entry *move_some(struct gw_replay *r, size_t n)
{
    struct entry *emptied;

    if (r->old == NULL)
        return NULL;
    if (r->moving < r->head)
        r->moving = r->head; /* expired where they were */
    for (; n > 0 && r->moving < r->old_end; n--, r->moving++)
        r->ring[r->moving % r->cap] = r->old[r->moving % r->old_cap];
    if (r->moving < r->old_end)
        return NULL;
    emptied = r->old;
    r->old = NULL;
    return emptied;
}

static struct entry *lookup(struct gw_replay *r, const unsigned char *tid, size_t tid_len)
{
    for (uint64_t i = *bucket_of(r, tid, tid_len); i != NIL;) {
        struct entry *e = at(r, i);
        if (e->tid_len == tid_len && memcmp(e->tid, tid, tid_len) == 0)
            return e;
        i = e->next;
    }
    return NULL;
}

static void insert(struct gw_replay *r, const unsigned char *tid, size_t tid_len, const unsigned char *nonce,
                   size_t nonce_len, uint64_t who, time_t now)
{
    uint64_t seq = r->head + r->count;
    uint64_t *bucket = bucket_of(r, tid, tid_len);
    struct entry *e = &r->ring[seq % r->cap];

    memcpy(e->tid, tid, tid_len);
    e->tid_len = (unsigned char)tid_len;
    if (nonce_len > 0)
        memcpy(e->nonce, nonce, nonce_len);
    e->nonce_len = (unsigned char)nonce_len;
    e->seen = now;
    e->who = who;
    count(r, who, 1);
    e->next = *bucket;
    *bucket = seq;
    r->count++;
}

/*
 * A full ring doubled (up to r->max): it becomes the old ring, emptied by later calls. An old ring
 * not yet empty (which the additions needed to fill the ring again rule out) is emptied first into
 * the ring, which has room for it, and returned in |*emptied|. 0 or -1.
 */
static int grow(struct gw_replay *r, struct entry **emptied)
{
    size_t cap = r->cap * 2 < r->max ? r->cap * 2 : r->max;
    struct entry *ring;

    if (cap <= r->cap || (ring = calloc(cap, sizeof(*ring))) == NULL)
        return -1;
    if (r->old != NULL)
        *emptied = move_some(r, SIZE_MAX);
    r->old = r->ring;
    r->old_cap = r->cap;
    r->moving = r->head;
    r->old_end = r->head + r->count;
    r->ring = ring;
    r->cap = cap;
    return 0;
}

static int bad_lengths(struct gw_replay *r, const unsigned char *tid, size_t tid_len,
                       const unsigned char *nonce, size_t nonce_len)
{
    return r == NULL || tid == NULL || tid_len == 0 || tid_len > GW_MAX_TID_LEN ||
           nonce_len > GW_MAX_NONCE_LEN || (nonce == NULL && nonce_len > 0);
}

/* What the live entry |e| of a tid says of a message with |nonce|: the same one again, or another. */
static int seen_as(const struct entry *e, const unsigned char *nonce, size_t nonce_len)
{
    return e->nonce_len == nonce_len && (nonce_len == 0 || memcmp(e->nonce, nonce, nonce_len) == 0)
               ? GW_ERR_REPLAY
               : GW_ERR_EXISTS;
}

int gw_replay_check_add(struct gw_replay *r, const unsigned char *tid, size_t tid_len,
                        const unsigned char *nonce, size_t nonce_len, const char *identity, time_t now)
{
    struct entry *e, *emptied = NULL;
    uint64_t who;
    int rc = 0;

    if (bad_lengths(r, tid, tid_len, nonce, nonce_len))
        return GW_ERR_INVAL;
    if (identity == NULL)
        identity = "";
    pthread_mutex_lock(&r->lock);
    who = gw_fnv1a(1469598103934665603ull ^ r->key, (const unsigned char *)identity, strlen(identity));
    expire(r, now);
    emptied = move_some(r, 2);
    if ((e = lookup(r, tid, tid_len)) != NULL)
        rc = seen_as(e, nonce, nonce_len);
    else if (over_share(r, who))
        rc = GW_ERR_LIMIT;
    else if (r->count == r->cap && grow(r, &emptied) != 0)
        rc = GW_ERR_BUSY; /* at max_entries (or out of memory) */
    else
        insert(r, tid, tid_len, nonce, nonce_len, who, now);
    pthread_mutex_unlock(&r->lock);
    free(emptied);
    return rc;
}

int gw_replay_seen(struct gw_replay *r, const unsigned char *tid, size_t tid_len, const unsigned char *nonce,
                   size_t nonce_len, time_t now)
{
    const struct entry *e;
    int rc = 0;

    if (bad_lengths(r, tid, tid_len, nonce, nonce_len))
        return GW_ERR_INVAL;
    pthread_mutex_lock(&r->lock);
    /* live as expire() keeps it: the entries of the chain are not dropped here */
    if ((e = lookup(r, tid, tid_len)) != NULL && e->seen > now - r->ttl)
        rc = seen_as(e, nonce, nonce_len);
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
    struct entry *emptied;

    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    /* chains hold live entries only (drop_head unlinks), so emptying their buckets empties them all */
    for (uint64_t i = r->head; i < r->head + r->count; i++) {
        const struct entry *e = at(r, i);
        *bucket_of(r, e->tid, e->tid_len) = NIL;
    }
    emptied = r->old;
    r->old = NULL;
    r->head = 0;
    r->count = 0;
    memset(r->sketch, 0, 2 * GW_REPLAY_SKETCH_WIDTH * sizeof(*r->sketch));
    pthread_mutex_unlock(&r->lock);
    free(emptied);
}
