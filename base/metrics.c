/*
 * Prometheus metrics: the registry, its lock-free update path and the text exposition format.
 *
 * Every family and every series is appended to a singly linked list and never removed before
 * gw_metrics_free_all, so readers (updates, renders) walk the lists without a lock: a writer fills
 * an element in whole, then publishes it with a release store, and readers load the links with
 * acquire. Writers (registration, series creation) hold reg_lock, which also guards the counts of
 * the caps. A series is found through one hash table for the whole registry, sized at twice the
 * series cap so that its chains stay short even when the registry is full.
 *
 * Counter and gauge values, and histogram sums, are doubles kept as their bit patterns in an
 * _Atomic uint64_t and added to with a compare-and-swap loop: C11 has no atomic add on doubles, and
 * a double counts integers exactly up to 2^53. Histogram buckets are plain atomic counts per bucket,
 * made cumulative when rendered; a histogram's _count is their total, so it always equals the +Inf
 * bucket of the same scrape even while observations land.
 */
#include "base/metrics.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_SLOTS (2 * GW_MAX_METRIC_SERIES) /* a power of two: a slot is hash & (HASH_SLOTS - 1) */
_Static_assert((HASH_SLOTS & (HASH_SLOTS - 1)) == 0, "HASH_SLOTS must be a power of two");
/* A lookup key: every label value at its cap, each NUL-terminated. */
#define KEY_MAX (GW_METRIC_MAX_LABELS * (GW_METRIC_MAX_VALUE_LEN + 1))
#define NUM_LEN 32        /* a rendered number: "%.17g" of a double needs 24 bytes */
#define RENDER_START 4096 /* the render buffer's first size; it doubles as needed */

struct series {
    const struct gw_metric *fam;
    struct series *hnext;          /* hash chain: set before publication, then immutable */
    _Atomic(struct series *) next; /* the family's series in creation order */
    uint64_t hash;
    size_t key_len;
    const char *key;           /* the label values, each NUL-terminated, stored after |counts| */
    _Atomic uint64_t value;    /* counter, gauge: a double's bits; histogram: the sum's */
    _Atomic uint64_t counts[]; /* histogram: observations per bucket, not cumulative; +Inf last */
};

struct gw_metric {
    char *name;
    char *help;
    enum gw_metric_type type;
    size_t n_labels;
    char *labels[GW_METRIC_MAX_LABELS];
    double *buckets;
    size_t n_buckets;
    double (*fn)(void *arg); /* a gauge or counter read when rendered; it has no series */
    void *arg;
    _Atomic(struct series *) head;
    struct series *tail; /* under reg_lock, as is n_series */
    size_t n_series;
    _Atomic(struct gw_metric *) next; /* registration order */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct gw_metric *) reg_head;
static struct gw_metric *reg_tail; /* under reg_lock, as are the two counts */
static size_t reg_families, reg_series;
static _Atomic(struct series *) reg_table[HASH_SLOTS];
static _Atomic uint64_t reg_dropped;

static uint64_t to_bits(double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    return u;
}

static double from_bits(uint64_t u)
{
    double d;

    memcpy(&d, &u, sizeof(d));
    return d;
}

static void add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);

    while (!atomic_compare_exchange_weak_explicit(p, &old, to_bits(from_bits(old) + v), memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

/* Not isalpha(): names are ASCII whatever the locale. */
static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool metric_name_ok(const char *s)
{
    size_t i;

    if (s == NULL || s[0] == '\0' || strlen(s) > GW_METRIC_MAX_NAME_LEN || is_digit(s[0]))
        return false;
    for (i = 0; s[i] != '\0'; i++)
        if (!is_letter(s[i]) && !is_digit(s[i]) && s[i] != ':')
            return false;
    return true;
}

/* "__" names are Prometheus' own; "le" is a histogram's bucket label. */
static bool label_name_ok(const char *s, enum gw_metric_type type)
{
    size_t i;

    if (s[0] == '\0' || strlen(s) > GW_METRIC_MAX_NAME_LEN || is_digit(s[0]) || strncmp(s, "__", 2) == 0)
        return false;
    if (type == GW_METRIC_HISTOGRAM && strcmp(s, "le") == 0)
        return false;
    for (i = 0; s[i] != '\0'; i++)
        if (!is_letter(s[i]) && !is_digit(s[i]))
            return false;
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Help text is ours, but the format wants UTF-8: |s| as gw_utf8_repair leaves it. */
static bool help_text_ok(const char *s)
{
    char copy[3 * GW_METRIC_MAX_HELP_LEN + 1];

    return gw_utf8_repair(copy, sizeof(copy), s) == strlen(s) && strcmp(copy, s) == 0;
}

/* Copies |src| into |dst| as the format wants it, and as every text a person reads is (gw_utf8_repair):
 * UTF-8, U+FFFD for a bad byte or a character not shown as itself, at most GW_METRIC_MAX_VALUE_LEN
 * bytes, cut between characters. Returns its length (a NUL follows). */
static size_t value_copy(char *dst, const char *src)
{
    return gw_utf8_repair(dst, GW_METRIC_MAX_VALUE_LEN + 1, src != NULL ? src : "");
}

/* FNV-1a over the family's address and the key: series of different families never compare. */
static uint64_t key_hash(const struct gw_metric *m, const char *key, size_t key_len)
{
    uintptr_t fam = (uintptr_t)m;

    return gw_fnv1a(gw_fnv1a(GW_FNV1A_BASIS, &fam, sizeof(fam)), key, key_len);
}

static struct series *find(const struct gw_metric *m, uint64_t h, const char *key, size_t key_len)
{
    struct series *s = atomic_load_explicit(&reg_table[h & (HASH_SLOTS - 1)], memory_order_acquire);

    for (; s != NULL; s = s->hnext)
        if (s->hash == h && s->fam == m && s->key_len == key_len && memcmp(s->key, key, key_len) == 0)
            return s;
    return NULL;
}

/* The series of |key|, created unless a cap is reached or memory is out (then NULL). */
static struct series *create(struct gw_metric *m, uint64_t h, const char *key, size_t key_len)
{
    _Atomic(struct series *) *slot = &reg_table[h & (HASH_SLOTS - 1)];
    size_t i, n_counts = m->type == GW_METRIC_HISTOGRAM ? m->n_buckets + 1 : 0;
    struct series *s;
    char *k;

    pthread_mutex_lock(&reg_lock);
    /* another thread may have made it since our lock-free look */
    s = find(m, h, key, key_len);
    if (s != NULL || reg_series >= GW_MAX_METRIC_SERIES || m->n_series >= GW_MAX_METRIC_SERIES_PER_FAMILY)
        goto out;
    s = malloc(sizeof(*s) + n_counts * sizeof(s->counts[0]) + key_len);
    if (s == NULL)
        goto out;
    s->fam = m;
    s->hash = h;
    s->key_len = key_len;
    k = (char *)&s->counts[n_counts];
    memcpy(k, key, key_len);
    s->key = k;
    atomic_init(&s->next, NULL);
    atomic_init(&s->value, to_bits(0.0));
    for (i = 0; i < n_counts; i++)
        atomic_init(&s->counts[i], 0);
    s->hnext = atomic_load_explicit(slot, memory_order_relaxed);
    atomic_store_explicit(slot, s, memory_order_release);
    if (m->tail == NULL)
        atomic_store_explicit(&m->head, s, memory_order_release);
    else
        atomic_store_explicit(&m->tail->next, s, memory_order_release);
    m->tail = s;
    m->n_series++;
    reg_series++;
out:
    pthread_mutex_unlock(&reg_lock);
    return s;
}

/* The series |values| name in |m|; NULL (the update counted as dropped) past a cap. */
static struct series *series_of(struct gw_metric *m, const char *const *values)
{
    char key[KEY_MAX];
    size_t i, len = 0;
    uint64_t h;
    struct series *s;

    for (i = 0; i < m->n_labels; i++)
        len += value_copy(key + len, values != NULL ? values[i] : NULL) + 1;
    h = key_hash(m, key, len);
    if ((s = find(m, h, key, len)) == NULL && (s = create(m, h, key, len)) == NULL)
        atomic_fetch_add_explicit(&reg_dropped, 1, memory_order_relaxed);
    return s;
}

void gw_metric_add(struct gw_metric *m, const char *const *values, double v)
{
    struct series *s;

    if (m == NULL || m->fn != NULL || m->type == GW_METRIC_HISTOGRAM)
        return;
    /* a counter only goes up; !(v >= 0) also refuses NaN */
    if (m->type == GW_METRIC_COUNTER && !(v >= 0))
        return;
    if ((s = series_of(m, values)) != NULL)
        add_double(&s->value, v);
}

void gw_metric_set(struct gw_metric *m, const char *const *values, double v)
{
    struct series *s;

    if (m == NULL || m->fn != NULL || m->type != GW_METRIC_GAUGE)
        return;
    if ((s = series_of(m, values)) != NULL)
        atomic_store_explicit(&s->value, to_bits(v), memory_order_relaxed);
}

void gw_metric_observe(struct gw_metric *m, const char *const *values, double v)
{
    struct series *s;
    size_t i = 0;

    if (m == NULL || m->type != GW_METRIC_HISTOGRAM)
        return;
    if ((s = series_of(m, values)) == NULL)
        return;
    /* NaN compares false with every bound and so lands in +Inf only */
    while (i < m->n_buckets && !(v <= m->buckets[i]))
        i++;
    atomic_fetch_add_explicit(&s->counts[i], 1, memory_order_relaxed);
    add_double(&s->value, v);
}

static void family_free(struct gw_metric *m)
{
    struct series *s, *next;
    size_t i;

    for (s = atomic_load_explicit(&m->head, memory_order_relaxed); s != NULL; s = next) {
        next = atomic_load_explicit(&s->next, memory_order_relaxed);
        free(s);
    }
    for (i = 0; i < m->n_labels; i++)
        free(m->labels[i]);
    free(m->buckets);
    free(m->help);
    free(m->name);
    free(m);
}

static bool buckets_ok(const double *buckets, size_t n)
{
    size_t i;

    if (n > GW_METRIC_MAX_BUCKETS || (n > 0 && buckets == NULL))
        return false;
    for (i = 0; i < n; i++)
        if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
            return false;
    return true;
}

static bool labels_ok(const char *const *labels, enum gw_metric_type type, size_t *n)
{
    size_t i, j;

    *n = 0;
    if (labels == NULL)
        return true;
    for (i = 0; labels[i] != NULL; i++) {
        if (i == GW_METRIC_MAX_LABELS || !label_name_ok(labels[i], type))
            return false;
        for (j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0)
                return false;
    }
    *n = i;
    return true;
}

/* A new family from a checked definition, not yet registered; NULL when out of memory. */
static struct gw_metric *family_new(const char *name, const char *help, enum gw_metric_type type,
                                    const char *const *labels, size_t n_labels, const double *buckets,
                                    size_t n_buckets)
{
    struct gw_metric *m = calloc(1, sizeof(*m));
    size_t i;

    if (m == NULL)
        return NULL;
    m->type = type;
    m->name = strdup(name);
    m->help = strdup(help);
    for (i = 0; i < n_labels; i++)
        if ((m->labels[m->n_labels++] = strdup(labels[i])) == NULL)
            goto fail;
    if (n_buckets > 0) {
        if ((m->buckets = malloc(n_buckets * sizeof(*buckets))) == NULL)
            goto fail;
        memcpy(m->buckets, buckets, n_buckets * sizeof(*buckets));
        m->n_buckets = n_buckets;
    }
    if (m->name == NULL || m->help == NULL)
        goto fail;
    atomic_init(&m->head, NULL);
    atomic_init(&m->next, NULL);
    return m;
fail:
    family_free(m);
    return NULL;
}

/* Appends |m| to the registry; false (|m| not taken) for a duplicate name or past the family cap. */
static bool family_register(struct gw_metric *m)
{
    struct gw_metric *f;
    bool ok;

    pthread_mutex_lock(&reg_lock);
    ok = reg_families < GW_MAX_METRIC_FAMILIES;
    for (f = atomic_load_explicit(&reg_head, memory_order_relaxed); ok && f != NULL;
         f = atomic_load_explicit(&f->next, memory_order_relaxed))
        ok = strcmp(f->name, m->name) != 0;
    if (ok) {
        if (reg_tail == NULL)
            atomic_store_explicit(&reg_head, m, memory_order_release);
        else
            atomic_store_explicit(&reg_tail->next, m, memory_order_release);
        reg_tail = m;
        reg_families++;
    }
    pthread_mutex_unlock(&reg_lock);
    return ok;
}

/* What every family's definition must meet, whatever its type. */
static bool definition_ok(const char *name, const char *help)
{
    return metric_name_ok(name) && strcmp(name, GW_METRICS_DROPPED_NAME) != 0 && help != NULL &&
           help[0] != '\0' && strlen(help) <= GW_METRIC_MAX_HELP_LEN && help_text_ok(help);
}

struct gw_metric *gw_metric_new(const char *name, const char *help, enum gw_metric_type type,
                                const char *const *labels, const double *buckets, size_t n_buckets)
{
    struct gw_metric *m;
    size_t n_labels;

    if (!definition_ok(name, help) || !labels_ok(labels, type, &n_labels))
        return NULL;
    switch (type) {
    case GW_METRIC_COUNTER:
        if (!ends_with(name, "_total") || n_buckets > 0)
            return NULL;
        break;
    case GW_METRIC_GAUGE:
        if (n_buckets > 0)
            return NULL;
        break;
    case GW_METRIC_HISTOGRAM:
        if (!buckets_ok(buckets, n_buckets))
            return NULL;
        break;
    default:
        return NULL;
    }
    if ((m = family_new(name, help, type, labels, n_labels, buckets, n_buckets)) == NULL)
        return NULL;
    if (!family_register(m)) {
        family_free(m);
        return NULL;
    }
    /* Prometheus' advice: a series that exists from the start, so rate() sees its first increase.
     * Past a cap it is made (or its updates dropped) later, like any other. */
    if (n_labels == 0)
        create(m, key_hash(m, "", 0), "", 0);
    return m;
}

/* An unlabelled gauge or counter whose value is |fn(arg)| when rendered. */
static struct gw_metric *new_fn(const char *name, const char *help, enum gw_metric_type type,
                                double (*fn)(void *arg), void *arg)
{
    struct gw_metric *m;

    if (!definition_ok(name, help) || fn == NULL || (type == GW_METRIC_COUNTER && !ends_with(name, "_total")))
        return NULL;
    if ((m = family_new(name, help, type, NULL, 0, NULL, 0)) == NULL)
        return NULL;
    m->fn = fn;
    m->arg = arg;
    if (!family_register(m)) {
        family_free(m);
        return NULL;
    }
    return m;
}

struct gw_metric *gw_metric_new_gauge_fn(const char *name, const char *help, double (*fn)(void *arg),
                                         void *arg)
{
    return new_fn(name, help, GW_METRIC_GAUGE, fn, arg);
}

struct gw_metric *gw_metric_new_counter_fn(const char *name, const char *help, double (*fn)(void *arg),
                                           void *arg)
{
    return new_fn(name, help, GW_METRIC_COUNTER, fn, arg);
}

/* The render buffer: grows by doubling; after a failed allocation it takes nothing more. */
struct out {
    char *buf;
    size_t len, cap; /* |cap| keeps room for the final NUL */
    bool failed;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (n >= o->cap - o->len) {
        size_t cap = o->cap;
        char *b;
        while (n >= cap - o->len)
            cap *= 2;
        if ((b = realloc(o->buf, cap)) == NULL) {
            o->failed = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* |s| with \ and newline escaped, and " too in a label value (|quoted|): the format's only escapes. */
static void put_escaped(struct out *o, const char *s, bool quoted)
{
    const char *run = s;

    for (; *s != '\0'; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : *s == '"' && quoted ? "\\\"" : NULL;
        if (esc == NULL)
            continue;
        put(o, run, (size_t)(s - run));
        put(o, esc, 2);
        run = s + 1;
    }
    put(o, run, (size_t)(s - run));
}

/* |v| as Prometheus writes it: an integral value as an integer, else the shortest "%g" that reads
 * back as |v|, and +Inf, -Inf, NaN. */
static const char *fmt_num(char *buf, double v)
{
    int prec;

    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    /* within +-2^53 the conversion to int64_t is exact, so it tells an integral value (and needs no
     * libm, which the project does not link) */
    if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(int64_t)v) {
        snprintf(buf, NUM_LEN, "%" PRId64, (int64_t)v);
        return buf;
    }
    for (prec = 15; prec < 17; prec++) {
        snprintf(buf, NUM_LEN, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return buf;
    }
    snprintf(buf, NUM_LEN, "%.17g", v);
    return buf;
}

static void put_num(struct out *o, double v)
{
    char buf[NUM_LEN];

    put_str(o, fmt_num(buf, v));
}

/* name<suffix>{labels[,le="<le>"]} and the space before the value. */
static void put_series_name(struct out *o, const struct gw_metric *m, const char *suffix,
                            const struct series *s, const char *le)
{
    const char *v = s->key;
    size_t i;

    put_str(o, m->name);
    put_str(o, suffix);
    if (m->n_labels == 0 && le == NULL) {
        put(o, " ", 1);
        return;
    }
    put(o, "{", 1);
    for (i = 0; i < m->n_labels; i++, v += strlen(v) + 1) {
        if (i > 0)
            put(o, ",", 1);
        put_str(o, m->labels[i]);
        put(o, "=\"", 2);
        put_escaped(o, v, true);
        put(o, "\"", 1);
    }
    if (le != NULL) {
        put_str(o, m->n_labels > 0 ? ",le=\"" : "le=\"");
        put_str(o, le);
        put(o, "\"", 1);
    }
    put(o, "} ", 2);
}

static void put_histogram(struct out *o, const struct gw_metric *m, const struct series *s)
{
    char buf[NUM_LEN];
    uint64_t total = 0;
    size_t i;

    for (i = 0; i <= m->n_buckets; i++) {
        total += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
        put_series_name(o, m, "_bucket", s, i < m->n_buckets ? fmt_num(buf, m->buckets[i]) : "+Inf");
        snprintf(buf, sizeof(buf), "%" PRIu64 "\n", total);
        put_str(o, buf);
    }
    put_series_name(o, m, "_sum", s, NULL);
    put_num(o, from_bits(atomic_load_explicit(&s->value, memory_order_relaxed)));
    put(o, "\n", 1);
    put_series_name(o, m, "_count", s, NULL);
    snprintf(buf, sizeof(buf), "%" PRIu64 "\n", total);
    put_str(o, buf);
}

static void put_header(struct out *o, const char *name, const char *help, const char *type)
{
    put_str(o, "# HELP ");
    put_str(o, name);
    put(o, " ", 1);
    put_escaped(o, help, false);
    put_str(o, "\n# TYPE ");
    put_str(o, name);
    put(o, " ", 1);
    put_str(o, type);
    put(o, "\n", 1);
}

static void put_family(struct out *o, const struct gw_metric *m)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    const struct series *s;

    put_header(o, m->name, m->help, type_names[m->type]);
    if (m->fn != NULL) {
        put_str(o, m->name);
        put(o, " ", 1);
        put_num(o, m->fn(m->arg));
        put(o, "\n", 1);
        return;
    }
    for (s = atomic_load_explicit(&m->head, memory_order_acquire); s != NULL;
         s = atomic_load_explicit(&s->next, memory_order_acquire)) {
        if (m->type == GW_METRIC_HISTOGRAM) {
            put_histogram(o, m, s);
            continue;
        }
        put_series_name(o, m, "", s, NULL);
        put_num(o, from_bits(atomic_load_explicit(&s->value, memory_order_relaxed)));
        put(o, "\n", 1);
    }
}

int gw_metrics_render(char **out, size_t *len)
{
    struct out o = {.cap = RENDER_START};
    const struct gw_metric *m;
    char buf[NUM_LEN];

    if (out == NULL || len == NULL)
        return GW_ERR_INVAL;
    if ((o.buf = malloc(o.cap)) == NULL)
        return GW_ERR_NOMEM;
    for (m = atomic_load_explicit(&reg_head, memory_order_acquire); m != NULL;
         m = atomic_load_explicit(&m->next, memory_order_acquire))
        put_family(&o, m);
    put_header(&o, GW_METRICS_DROPPED_NAME, "Metric updates not applied because a series cap was reached.",
               "counter");
    snprintf(buf, sizeof(buf), " %" PRIu64 "\n", atomic_load_explicit(&reg_dropped, memory_order_relaxed));
    put_str(&o, GW_METRICS_DROPPED_NAME);
    put_str(&o, buf);
    if (o.failed) {
        free(o.buf);
        return GW_ERR_NOMEM;
    }
    o.buf[o.len] = '\0';
    *out = o.buf;
    *len = o.len;
    return 0;
}

void gw_metrics_free_all(void)
{
    struct gw_metric *m, *next;
    size_t i;

    pthread_mutex_lock(&reg_lock);
    for (m = atomic_load_explicit(&reg_head, memory_order_relaxed); m != NULL; m = next) {
        next = atomic_load_explicit(&m->next, memory_order_relaxed);
        family_free(m);
    }
    atomic_store_explicit(&reg_head, NULL, memory_order_relaxed);
    reg_tail = NULL;
    reg_families = 0;
    reg_series = 0;
    for (i = 0; i < HASH_SLOTS; i++)
        atomic_store_explicit(&reg_table[i], NULL, memory_order_relaxed);
    atomic_store_explicit(&reg_dropped, 0, memory_order_relaxed);
    pthread_mutex_unlock(&reg_lock);
}
