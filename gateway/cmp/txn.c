/*
 * Transaction table: a chained hash table keyed by transactionID bytes, plus a count table per quota
 * key, both behind one mutex (txn_table.lock).
 *
 * A slot is in one of three states. OPEN holds a parked transaction (|txn| set). RESERVED was
 * claimed by a worker before its upstream call, CHECKED_OUT was taken by a worker for a
 * certConf/pollReq; both have |txn| NULL and still count against the caps, so a transactionID
 * stays "in use" from its first message until the worker closes it.
 */
#include "gateway/cmp/txn.h"
#include "base/err.h"
#include "base/hash.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum slot_state {
    SLOT_OPEN = 0,
    SLOT_RESERVED,
    SLOT_CHECKED_OUT,
};

struct slot {
    struct slot *next;
    enum slot_state state;
    unsigned char tid[GW_MAX_TID_LEN];
    size_t tid_len;
    char quota[GW_QUOTA_KEY_LEN];
    struct gw_txn *txn; /* OPEN only */
    int ended; /* not OPEN: ended meanwhile (gw_txn_take_or_end, gw_txn_end_held), not to open again */
};

struct ident {
    struct ident *next;
    char name[GW_QUOTA_KEY_LEN];
    size_t count;
};

struct gw_txn_table {
    pthread_mutex_t lock;
    size_t max_total, max_per_identity;
    size_t nbuckets; /* power of two, shared by both tables */
    struct slot **slots;
    struct ident **idents;
    size_t n_slots; /* all states */
    size_t n_open;
};

#define MIN_BUCKETS 16u
#define MAX_BUCKETS (1u << 20)

/* FNV-1a: keys are attacker-chosen, but chains are bounded by the caps, so a weak hash only costs time. */
static size_t hash_bytes(const void *p, size_t n)
{
    return (size_t)gw_fnv1a(1469598103934665603ull, p, n);
}

static int tid_ok(const unsigned char *tid, size_t tid_len)
{
    return tid != NULL && tid_len > 0 && tid_len <= GW_MAX_TID_LEN;
}

/* |src| (NULL: "") into |dst| of |cap| bytes, cut to fit */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strnlen(src, cap - 1) : 0;

    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

struct gw_txn *gw_txn_new(const unsigned char *tid, size_t tid_len, const char *identity, const char *quota,
                          time_t expires, void *data, void (*free_data)(void *data))
{
    struct gw_txn *txn;

    if (!tid_ok(tid, tid_len) || (txn = calloc(1, sizeof(*txn))) == NULL)
        return NULL;
    memcpy(txn->tid, tid, tid_len);
    txn->tid_len = tid_len;
    copy_str(txn->identity, sizeof(txn->identity), identity);
    copy_str(txn->quota, sizeof(txn->quota), quota);
    txn->expires = expires;
    txn->data = data;
    txn->free_data = free_data;
    return txn;
}

void gw_txn_free(struct gw_txn *txn)
{
    if (txn == NULL)
        return;
    if (txn->free_data != NULL)
        txn->free_data(txn->data);
    free(txn);
}

struct gw_txn_table *gw_txn_table_new(size_t max_total, size_t max_per_identity)
{
    struct gw_txn_table *t;
    size_t nb = MIN_BUCKETS;

    if (max_total == 0 || (t = calloc(1, sizeof(*t))) == NULL)
        return NULL;
    while (nb < max_total && nb < MAX_BUCKETS)
        nb <<= 1;
    t->nbuckets = nb;
    t->max_total = max_total;
    t->max_per_identity = max_per_identity;
    t->slots = calloc(nb, sizeof(*t->slots));
    t->idents = calloc(nb, sizeof(*t->idents));
    if (t->slots == NULL || t->idents == NULL || pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t->slots);
        free(t->idents);
        free(t);
        return NULL;
    }
    return t;
}

/* Returns the address of the link pointing at |tid|'s slot (so it can be unlinked), never NULL. */
static struct slot **slot_link(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len)
{
    struct slot **pp = &t->slots[hash_bytes(tid, tid_len) & (t->nbuckets - 1)];

    while (*pp != NULL && ((*pp)->tid_len != tid_len || memcmp((*pp)->tid, tid, tid_len) != 0))
        pp = &(*pp)->next;
    return pp;
}

static struct ident **ident_link(struct gw_txn_table *t, const char *name)
{
    struct ident **pp = &t->idents[hash_bytes(name, strlen(name)) & (t->nbuckets - 1)];

    while (*pp != NULL && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    return pp;
}

static size_t ident_count(struct gw_txn_table *t, const char *name)
{
    struct ident *id = *ident_link(t, name);

    return id != NULL ? id->count : 0;
}

/* Counts one more slot for |name|; 0 or GW_ERR_NOMEM. */
static int ident_inc(struct gw_txn_table *t, const char *name)
{
    struct ident **pp = ident_link(t, name);

    if (*pp == NULL) {
        if ((*pp = calloc(1, sizeof(**pp))) == NULL)
            return GW_ERR_NOMEM;
        copy_str((*pp)->name, sizeof((*pp)->name), name);
    }
    (*pp)->count++;
    return 0;
}

static void ident_dec(struct gw_txn_table *t, const char *name)
{
    struct ident **pp = ident_link(t, name), *id = *pp;

    if (id == NULL)
        return;
    if (--id->count == 0) {
        *pp = id->next;
        free(id);
    }
}

/* Inserts a new slot for |tid| after the cap checks (lock held). Returns the slot or NULL with *rc. */
static struct slot *slot_add(struct gw_txn_table *t, struct slot **link, const unsigned char *tid,
                             size_t tid_len, const char *quota, int *rc)
{
    struct slot *s;
    char name[GW_QUOTA_KEY_LEN];

    copy_str(name, sizeof(name), quota);
    if (t->n_slots >= t->max_total ||
        (t->max_per_identity != 0 && ident_count(t, name) >= t->max_per_identity)) {
        *rc = GW_ERR_LIMIT;
        return NULL;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL || ident_inc(t, name) != 0) {
        free(s);
        *rc = GW_ERR_NOMEM;
        return NULL;
    }
    memcpy(s->tid, tid, tid_len);
    s->tid_len = tid_len;
    memcpy(s->quota, name, sizeof(name));
    *link = s;
    t->n_slots++;
    return s;
}

/* Unlinks and frees the slot at |link| (lock held); returns its parked txn, if any. */
static struct gw_txn *slot_remove(struct gw_txn_table *t, struct slot **link)
{
    struct slot *s = *link;
    struct gw_txn *txn = s->txn;

    *link = s->next;
    if (s->state == SLOT_OPEN)
        t->n_open--;
    t->n_slots--;
    ident_dec(t, s->quota);
    free(s);
    return txn;
}

int gw_txn_reserve(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len, const char *quota)
{
    struct slot **link, *s;
    int rc = 0;

    if (t == NULL || !tid_ok(tid, tid_len))
        return GW_ERR_INVAL;
    pthread_mutex_lock(&t->lock);
    link = slot_link(t, tid, tid_len);
    if (*link != NULL)
        rc = GW_ERR_EXISTS;
    else if ((s = slot_add(t, link, tid, tid_len, quota, &rc)) != NULL)
        s->state = SLOT_RESERVED;
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int gw_txn_put(struct gw_txn_table *t, struct gw_txn *txn)
{
    struct slot **link, *s;
    int rc = 0;

    if (t == NULL || txn == NULL || !tid_ok(txn->tid, txn->tid_len))
        return GW_ERR_INVAL;
    pthread_mutex_lock(&t->lock);
    link = slot_link(t, txn->tid, txn->tid_len);
    s = *link;
    if (s != NULL && s->ended) {
        (void)slot_remove(t, link);
        rc = GW_ERR_NOT_FOUND;
    } else if (s != NULL && (s->state == SLOT_OPEN || strcmp(s->quota, txn->quota) != 0)) {
        rc = GW_ERR_EXISTS;
    } else if (s == NULL) {
        s = slot_add(t, link, txn->tid, txn->tid_len, txn->quota, &rc);
    }
    if (rc == 0) {
        s->state = SLOT_OPEN;
        s->txn = txn;
        t->n_open++;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* |end|: a slot another worker has checked out is marked ended instead (*ended), under the same lock. */
static struct gw_txn *take(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len, int *ended)
{
    struct slot *s;
    struct gw_txn *txn = NULL;

    if (t == NULL || !tid_ok(tid, tid_len))
        return NULL;
    pthread_mutex_lock(&t->lock);
    s = *slot_link(t, tid, tid_len);
    if (s != NULL && s->state == SLOT_OPEN) {
        txn = s->txn;
        s->txn = NULL;
        s->state = SLOT_CHECKED_OUT;
        t->n_open--;
    } else if (s != NULL && s->state == SLOT_CHECKED_OUT && ended != NULL) {
        s->ended = *ended = 1;
    }
    pthread_mutex_unlock(&t->lock);
    return txn;
}

struct gw_txn *gw_txn_take(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len)
{
    return take(t, tid, tid_len, NULL);
}

struct gw_txn *gw_txn_take_or_end(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len,
                                  int *ended)
{
    *ended = 0;
    return take(t, tid, tid_len, ended);
}

struct gw_txn *gw_txn_take_expired(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len,
                                   time_t now)
{
    struct slot **link;
    struct gw_txn *txn = NULL;

    if (t == NULL || !tid_ok(tid, tid_len))
        return NULL;
    pthread_mutex_lock(&t->lock);
    link = slot_link(t, tid, tid_len);
    if (*link != NULL && (*link)->state == SLOT_OPEN && (*link)->txn->expires <= now)
        txn = slot_remove(t, link);
    pthread_mutex_unlock(&t->lock);
    return txn;
}

void gw_txn_release(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len)
{
    struct slot **link;

    if (t == NULL || !tid_ok(tid, tid_len))
        return;
    pthread_mutex_lock(&t->lock);
    link = slot_link(t, tid, tid_len);
    if (*link != NULL && (*link)->state != SLOT_OPEN)
        (void)slot_remove(t, link);
    pthread_mutex_unlock(&t->lock);
}

void gw_txn_end_held(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len)
{
    struct slot *s;

    if (t == NULL || !tid_ok(tid, tid_len))
        return;
    pthread_mutex_lock(&t->lock);
    if ((s = *slot_link(t, tid, tid_len)) != NULL && s->state != SLOT_OPEN)
        s->ended = 1;
    pthread_mutex_unlock(&t->lock);
}

int gw_txn_contains(struct gw_txn_table *t, const unsigned char *tid, size_t tid_len)
{
    struct slot *s;
    int found;

    if (t == NULL || !tid_ok(tid, tid_len))
        return 0;
    pthread_mutex_lock(&t->lock);
    found = (s = *slot_link(t, tid, tid_len)) != NULL && !s->ended;
    pthread_mutex_unlock(&t->lock);
    return found;
}

size_t gw_txn_count(struct gw_txn_table *t)
{
    size_t n;

    if (t == NULL)
        return 0;
    pthread_mutex_lock(&t->lock);
    n = t->n_open;
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t gw_txn_count_quota(struct gw_txn_table *t, const char *quota)
{
    char name[GW_QUOTA_KEY_LEN];
    size_t n;

    if (t == NULL)
        return 0;
    copy_str(name, sizeof(name), quota);
    pthread_mutex_lock(&t->lock);
    n = ident_count(t, name);
    pthread_mutex_unlock(&t->lock);
    return n;
}

static int by_expiry(const void *a, const void *b)
{
    const struct gw_txn *x = *(struct gw_txn *const *)a, *y = *(struct gw_txn *const *)b;

    return (x->expires > y->expires) - (x->expires < y->expires);
}

/* Unlinks the open entries due at |now| (all of them if |all|) into a new array (lock held). */
static struct gw_txn **collect(struct gw_txn_table *t, time_t now, int all, size_t *n)
{
    struct gw_txn **out = calloc(t->n_open + 1, sizeof(*out));

    *n = 0;
    if (out == NULL)
        return NULL;
    for (size_t b = 0; b < t->nbuckets; b++) {
        struct slot **link = &t->slots[b];
        while (*link != NULL) {
            if ((*link)->state == SLOT_OPEN && (all || (*link)->txn->expires <= now))
                out[(*n)++] = slot_remove(t, link);
            else
                link = &(*link)->next;
        }
    }
    return out;
}

static void hand_over(struct gw_txn **list, size_t n, gw_txn_expired_fn cb, void *arg)
{
    qsort(list, n, sizeof(*list), by_expiry);
    for (size_t i = 0; i < n; i++) {
        if (cb != NULL)
            cb(arg, list[i]);
        else
            gw_txn_free(list[i]);
    }
    free(list);
}

size_t gw_txn_expire(struct gw_txn_table *t, time_t now, gw_txn_expired_fn cb, void *arg)
{
    struct gw_txn **list;
    size_t n = 0;

    if (t == NULL)
        return 0;
    pthread_mutex_lock(&t->lock);
    list = collect(t, now, 0, &n);
    pthread_mutex_unlock(&t->lock);
    if (list != NULL)
        hand_over(list, n, cb, arg);
    return n;
}

size_t gw_txn_table_clear(struct gw_txn_table *t, gw_txn_expired_fn cb, void *arg)
{
    struct gw_txn **list;
    size_t n = 0, held = 0;

    if (t == NULL)
        return 0;
    pthread_mutex_lock(&t->lock);
    list = collect(t, 0, 1, &n);
    /* reserved and checked-out slots left by a careless caller: their txn is the caller's; an open one
     * is left only when collect ran out of memory */
    for (size_t b = 0; b < t->nbuckets; b++) {
        while (t->slots[b] != NULL) {
            held += t->slots[b]->state != SLOT_OPEN;
            gw_txn_free(slot_remove(t, &t->slots[b]));
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (list != NULL)
        hand_over(list, n, cb, arg);
    return held;
}

void gw_txn_table_free(struct gw_txn_table *t, gw_txn_expired_fn cb, void *arg)
{
    if (t == NULL)
        return;
    (void)gw_txn_table_clear(t, cb, arg);
    free(t->slots);
    free(t->idents);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
