/*
 * Per-address accounting: an open-addressing table keyed by the client's address (IPv4 as 4
 * bytes, an IPv6 prefix as 16 with the bits past it zero), probed linearly from a keyed hash so
 * that addresses cannot be picked to collide, and never further than GW_GUARD_PROBES slots, so that
 * a table crowded with failures costs each lookup under the lock that many slots at most. An entry
 * with no connection, no request in flight and no live failure window is free to be taken again;
 * lookups go on past such entries until a never-used slot, so an address is never counted twice, and
 * those right before that slot become never-used again (trim_before), so that chains stay as short as
 * the addresses they hold. One that holds only failures gives way to a new address when there is no
 * other room, the one with fewest failures first (worth_less).
 */
#include "gateway/guard.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/limits.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

/* What a slot holds, each under a cap in all and a cap per address. */
enum held { HELD_CONNS, HELD_REQS /* in flight */, HELD_KINDS };

struct slot {
    bool used; /* ever taken: lookups continue past it */
    uint8_t len;
    uint8_t addr[16];
    uint32_t held[HELD_KINDS];
    uint32_t failures;
    time_t window_start;
    time_t crowded; /* a site's: when one of its prefixes last crowded out another's failure; 0: never */
};

struct gw_guard {
    pthread_mutex_t lock;
    struct gw_guard_conf conf;
    uint64_t key;
    uint32_t held[HELD_KINDS]; /* in total */
    size_t cap;                /* power of two */
    struct slot *slots;
    uint64_t probes;
};

/*
 * The table's size for |max_connections| and |max_requests|: an address holds a slot while it has a
 * connection or a request in flight, which outlives its connection when the client leaves first: room
 * for every one of both on an address of its own, twice over, so that what they hold stays within
 * GW_GUARD_PROBES of where each address's hash points (at full load the longest run of held slots
 * measured some 20). Addresses that merely failed fill the rest, and past it take each other's places.
 * A power of two, never below GW_GUARD_PROBES.
 */
_Static_assert(GW_GUARD_PROBES <= 64, "a lookup would go round the smallest table");
_Static_assert(GW_GUARD_SITE_BITS % 8 == 0 && GW_GUARD_SITE_BITS <= GW_MIN_IPV6_PREFIX,
               "a site is whole bytes");

static size_t cap_for(uint32_t max_connections, uint32_t max_requests)
{
    size_t cap = 64;

    while (cap < 2 * ((size_t)max_connections + max_requests) + 64)
        cap <<= 1;
    return cap;
}

struct gw_guard *gw_guard_new(const struct gw_guard_conf *conf)
{
    struct gw_guard *g;

    if (conf->max_connections == 0 || conf->max_connections_per_address == 0 ||
        conf->max_requests_per_address == 0 || conf->ipv6_prefix == 0 || conf->ipv6_prefix > 128 ||
        (conf->auth_failures != 0 && conf->auth_failure_window == 0) || (g = calloc(1, sizeof(*g))) == NULL)
        return NULL;
    g->conf = *conf;
    if (g->conf.max_requests == 0)
        g->conf.max_requests = conf->max_connections;
    g->cap = cap_for(conf->max_connections, g->conf.max_requests);
    if ((g->slots = calloc(g->cap, sizeof(*g->slots))) == NULL ||
        RAND_bytes((unsigned char *)&g->key, sizeof(g->key)) != 1 ||
        pthread_mutex_init(&g->lock, NULL) != 0) {
        free(g->slots);
        free(g);
        return NULL;
    }
    return g;
}

void gw_guard_free(struct gw_guard *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->lock);
    free(g->slots);
    free(g);
}

/*
 * The key of |sa|'s address: an IPv4 address, or an IPv4-mapped IPv6 one (a dual-stack socket's
 * view of an IPv4 client), as its 4 bytes; any other IPv6 address as its first ipv6_prefix bits, the
 * rest zero, in 16. 0 if it is neither IPv4 nor IPv6.
 */
static size_t addr_of(const struct gw_guard *g, const struct sockaddr *sa, socklen_t len, uint8_t *out)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        uint32_t bits = g->conf.ipv6_prefix;

        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(out, &a->s6_addr[12], 4);
            return 4;
        }
        memset(out, 0, 16);
        memcpy(out, a->s6_addr, bits / 8);
        if (bits % 8 != 0)
            out[bits / 8] = (uint8_t)(a->s6_addr[bits / 8] & (0xff << (8 - bits % 8)));
        return 16;
    }
    return 0;
}

static size_t hash(const struct gw_guard *g, const uint8_t *a, size_t n)
{
    uint64_t h = gw_fnv1a(1469598103934665603ull ^ g->key, a, n);

    return (size_t)(h ^ (h >> 29));
}

/*
 * Whether a failure window of |window| seconds that began at |start| is open at |now|. Each caller
 * reads the clock before it takes the lock, so a window another thread opened may begin a second or
 * so after |now|: that one is open (over, its slot could be taken or trimmed, and its failures lost).
 * One that begins a whole window or more later was opened before the clock was set back: over.
 */
static bool window_open(time_t start, uint32_t window, time_t now)
{
    return now >= start ? now - start < (time_t)window : start - now < (time_t)window;
}

/* Whether |s| is shut out at |now| by a budget of |failures| a |window|: its window open, and used up. */
static bool shut_out(const struct slot *s, uint32_t failures, uint32_t window, time_t now)
{
    return failures != 0 && s->failures >= failures && window_open(s->window_start, window, now);
}

/* The bits of |s|'s address that make it: 32 for IPv4, else an IPv6 address's prefix or a site's. */
static uint32_t bits_of(const struct gw_guard *g, const struct slot *s)
{
    return s->len == 4 ? 32 : s->len == 16 ? g->conf.ipv6_prefix : (uint32_t)s->len * 8;
}

/* The address of |s| as a socket address: an IPv4 one, or an IPv6 prefix with the bits past it zero. */
static socklen_t sockaddr_of(const struct slot *s, struct sockaddr_storage *ss)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (s->len == 4) {
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, s->addr, 4);
        return sizeof(*sin);
    }
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, s->addr, 16);
    return sizeof(*sin6);
}

int gw_guard_set_auth_budget(
    struct gw_guard *g, uint32_t auth_failures, uint32_t auth_failure_window, time_t now,
    void (*on_shut_out)(void *arg, const struct sockaddr *sa, socklen_t len, uint32_t bits), void *arg)
{
    struct sockaddr_storage ss;

    if (auth_failures != 0 && auth_failure_window == 0)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; on_shut_out != NULL && i < g->cap; i++) {
        const struct slot *s = &g->slots[i];

        /* said as when a failure uses the budget up: once, for the failures after it never equal it */
        if (s->used && !shut_out(s, g->conf.auth_failures, g->conf.auth_failure_window, now) &&
            shut_out(s, auth_failures, auth_failure_window, now))
            on_shut_out(arg, (struct sockaddr *)&ss, sockaddr_of(s, &ss), bits_of(g, s));
    }
    g->conf.auth_failures = auth_failures;
    g->conf.auth_failure_window = auth_failure_window;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static bool window_live(const struct gw_guard *g, const struct slot *s, time_t now)
{
    return s->failures > 0 && window_open(s->window_start, g->conf.auth_failure_window, now);
}

/* Whether |s| is a site that counts its prefixes' failures together at |now| (site_of). */
static bool crowd_live(const struct gw_guard *g, const struct slot *s, time_t now)
{
    return s->crowded != 0 && window_open(s->crowded, g->conf.auth_failure_window, now);
}

static bool idle(const struct gw_guard *g, const struct slot *s, time_t now)
{
    return s->held[HELD_CONNS] == 0 && s->held[HELD_REQS] == 0 && !window_live(g, s, now) &&
           !crowd_live(g, s, now);
}

enum make { LOOKUP, CREATE };

/*
 * The idle slots right before the never-used slot |end| become never-used again: a lookup that got
 * past one of them would also have to get past |end|, where every lookup stops, so none needs them.
 * Without this every slot would in time be one ever used (more addresses come over a process's life
 * than the table has slots), and each lookup of an address not in it would look at GW_GUARD_PROBES
 * slots. Lock held.
 */
static void trim_before(struct gw_guard *g, size_t end, time_t now)
{
    size_t i = (end - 1) & (g->cap - 1);

    for (size_t n = 1; n < g->cap && g->slots[i].used && idle(g, &g->slots[i], now); n++) {
        memset(&g->slots[i], 0, sizeof(g->slots[i]));
        i = (i - 1) & (g->cap - 1);
    }
}

/* Whether |s| holds only failures (no connection, no request), the slots a new address may take. */
static bool failures_only(const struct slot *s)
{
    return s->held[HELD_CONNS] == 0 && s->held[HELD_REQS] == 0;
}

/* The failures |s| is worth at |now|: a counting site one more, or it would be the first to go. */
static uint64_t worth(const struct gw_guard *g, const struct slot *s, time_t now)
{
    return (uint64_t)s->failures + crowd_live(g, s, now);
}

/*
 * Whether |s|, of failures only, is worth less than |than|: fewer failures, or as many in an older
 * window. Fewer, not older alone: an address that fails again and again outranks the one-off failures
 * of a flood from many addresses, which take each other's places, and keeps its count until shut out.
 */
static bool worth_less(const struct gw_guard *g, const struct slot *s, const struct slot *than, time_t now)
{
    uint64_t a = worth(g, s, now), b = worth(g, than, now);

    return a != b ? a < b : s->window_start < than->window_start;
}

/* Whether the IPv6 prefix |a| (16 bytes) and the slot |s| are of one site. */
static bool same_site(const uint8_t *a, const struct slot *s)
{
    return s->len == 16 && memcmp(s->addr, a, GW_GUARD_SITE_BITS / 8) == 0;
}

/*
 * Whether |s|, of failures only, is the one to take rather than |victim| (NULL: none yet) for a prefix of
 * the site |site| (NULL: the newcomer has none): worth less (worth_less), or as much but of another address
 * while |victim| is of the site. A flood from elsewhere keeps its one-off failures the newest, so of slots
 * worth the same the site's own would be the oldest; taking one would mark the site (find) while a flood's
 * slot could be taken instead. The site is marked only when its own prefixes are the cheapest slots left.
 */
static bool takes_before(const struct gw_guard *g, const struct slot *s, const struct slot *victim,
                         const uint8_t *site, time_t now)
{
    if (victim == NULL)
        return true;
    if (site != NULL && worth(g, s, now) == worth(g, victim, now) &&
        same_site(site, s) != same_site(site, victim))
        return same_site(site, victim);
    return worth_less(g, s, victim, now);
}

/*
 * The slot of |a|, always within GW_GUARD_PROBES slots of where its hash points, so that no lookup
 * looks at more however crowded the table; LOOKUP: NULL if absent. CREATE takes a never-used or idle
 * slot there, else the one that holds only failures and is worth least (takes_before): a new address's
 * connection or failure is counted in its place, for addresses that merely failed, however many an
 * attacker has, must neither keep real connections out nor have new failures go uncounted. NULL if
 * every slot there holds a connection or request, which the table's size makes all but impossible
 * (cap_for). *crowded (CREATE with an IPv6 prefix; else NULL) is set if |a|'s site crowded itself:
 * |a| took the place of a live failure of another of its prefixes, or found no place. Lock held.
 */
static struct slot *find(struct gw_guard *g, const uint8_t *a, size_t n, enum make make, time_t now,
                         bool *crowded)
{
    size_t i = hash(g, a, n) & (g->cap - 1);
    struct slot *spare = NULL, *victim = NULL;

    for (size_t probes = 0; probes < GW_GUARD_PROBES; probes++, i = (i + 1) & (g->cap - 1)) {
        struct slot *s = &g->slots[i];

        g->probes++;
        if (!s->used) {
            /* |a| is absent: a |spare| among the idle slots trimmed is now the first free one on its way */
            trim_before(g, i, now);
            spare = spare != NULL ? spare : s;
            break;
        }
        if (s->len == n && memcmp(s->addr, a, n) == 0)
            return s;
        if (spare == NULL && idle(g, s, now))
            spare = s;
        if (failures_only(s) && takes_before(g, s, victim, crowded != NULL ? a : NULL, now))
            victim = s;
    }
    if (make == LOOKUP)
        return NULL;
    if (spare == NULL && crowded != NULL)
        *crowded = victim == NULL || same_site(a, victim);
    if (spare == NULL)
        spare = victim; /* not idle: its window is live */
    if (spare == NULL)
        return NULL;
    memset(spare, 0, sizeof(*spare));
    spare->used = true;
    spare->len = (uint8_t)n;
    memcpy(spare->addr, a, n);
    return spare;
}

/*
 * Moves what |g|'s slots hold into |slots|, a larger table (the same key): each address within
 * GW_GUARD_PROBES of where a lookup now finds it, those that hold a connection or request first; one
 * that holds only failures and finds no room takes the place of the one worth least there, or is
 * dropped if it is worth less itself. GW_ERR_NOMEM with |slots| to be freed if one that holds a
 * connection or request finds none (at odds cap_for makes negligible). Lock held.
 */
static int move_to(struct gw_guard *g, struct slot *slots, size_t cap, time_t now)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < g->cap; i++) {
            const struct slot *s = &g->slots[i];
            size_t j = hash(g, s->addr, s->len) & (cap - 1), probes;
            struct slot *victim = NULL;

            if (!s->used || idle(g, s, now) || failures_only(s) != (pass == 1))
                continue;
            for (probes = 0; probes < GW_GUARD_PROBES && slots[j].used; probes++, j = (j + 1) & (cap - 1))
                if (failures_only(&slots[j]) && (victim == NULL || worth_less(g, &slots[j], victim, now)))
                    victim = &slots[j];
            if (probes < GW_GUARD_PROBES)
                slots[j] = *s;
            else if (pass == 0)
                return GW_ERR_NOMEM;
            else if (victim != NULL && worth_less(g, victim, s, now))
                *victim = *s;
        }
    }
    return 0;
}

int gw_guard_set_max_requests(struct gw_guard *g, uint32_t max_requests)
{
    struct slot *slots = NULL;
    size_t cap;
    int rc = 0;

    pthread_mutex_lock(&g->lock);
    if (max_requests == 0)
        max_requests = g->conf.max_connections;
    cap = cap_for(g->conf.max_connections, max_requests);
    if (cap > g->cap) {
        /* every address keeps its counts, each moved to where a lookup now finds it */
        if ((slots = calloc(cap, sizeof(*slots))) == NULL) {
            rc = GW_ERR_NOMEM;
            goto out;
        }
        if ((rc = move_to(g, slots, cap, time(NULL))) != 0)
            goto out;
        free(g->slots);
        g->slots = slots;
        g->cap = cap;
        slots = NULL;
    }
    g->conf.max_requests = max_requests; /* a lower one lets no new request in until enough are answered */
out:
    free(slots);
    pthread_mutex_unlock(&g->lock);
    return rc;
}

/* Whether a key of |n| bytes is an IPv6 prefix longer than a site's, which may count for its site. */
static bool has_site(const struct gw_guard *g, size_t n)
{
    return n == 16 && g->conf.ipv6_prefix > GW_GUARD_SITE_BITS;
}

/*
 * The slot of the IPv6 prefix |a|'s site, NULL if absent; |crowded| (find: one of its prefixes took
 * the place of another's live failure, or found no place) creates it if need be and has it count its
 * prefixes' failures together for a window from |now|. Only the site's own prefixes mark it: a flood
 * from other addresses, however crowded it leaves the table, merges no site (docs/security.md). Lock
 * held.
 */
static struct slot *site_of(struct gw_guard *g, const uint8_t *a, bool crowded, time_t now)
{
    struct slot *s = find(g, a, GW_GUARD_SITE_BITS / 8, crowded ? CREATE : LOOKUP, now, NULL);

    if (s == NULL || !crowded)
        return s;
    if (!window_live(g, s, now)) { /* its window starts with its mark, not at 0, the oldest (worth_less) */
        s->failures = 0;
        s->window_start = now;
    }
    if (!crowd_live(g, s, now) || now > s->crowded)
        s->crowded = now;
    return s;
}

/* The cap on |h| in all, or per address. */
static uint32_t cap_of(const struct gw_guard *g, enum held h, bool per_address)
{
    if (h == HELD_CONNS)
        return per_address ? g->conf.max_connections_per_address : g->conf.max_connections;
    return per_address ? g->conf.max_requests_per_address : g->conf.max_requests;
}

/* Takes one |h| for |sa|'s address: 0, GW_ERR_BUSY (the address's cap, or no slot to take), GW_ERR_LIMIT
 * (the cap in all), GW_ERR_INVAL (no address). An address at its own cap is told so even where the cap in
 * all is reached too: room made for it is made among its own (tls.c), not taken from another address. */
static int take(struct gw_guard *g, const struct sockaddr *sa, socklen_t len, enum held h)
{
    uint8_t a[16];
    size_t n = addr_of(g, sa, len, a);
    time_t now = time(NULL);
    bool crowded = false;
    struct slot *s;
    bool full;
    int rc = 0;

    if (n == 0)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&g->lock);
    /* the caps in all are what the table was sized for; a request finds the slot its connection holds */
    full = g->held[h] >= cap_of(g, h, false);
    if ((s = find(g, a, n, full ? LOOKUP : CREATE, now, has_site(g, n) ? &crowded : NULL)) != NULL &&
        s->held[h] >= cap_of(g, h, true))
        rc = GW_ERR_BUSY;
    else if (full)
        rc = GW_ERR_LIMIT;
    else if (s == NULL)
        rc = GW_ERR_BUSY;
    else {
        s->held[h]++;
        g->held[h]++;
    }
    /* a connection comes before its handshake's failure: the place it took is the one that failure gets */
    if (crowded && g->conf.auth_failures != 0)
        site_of(g, a, true, now);
    pthread_mutex_unlock(&g->lock);
    return rc;
}

/* Gives back one |h| take() took for |sa|'s address. */
static void give_back(struct gw_guard *g, const struct sockaddr *sa, socklen_t len, enum held h)
{
    uint8_t a[16];
    size_t n = addr_of(g, sa, len, a);
    struct slot *s;

    if (n == 0)
        return;
    pthread_mutex_lock(&g->lock);
    if ((s = find(g, a, n, LOOKUP, time(NULL), NULL)) != NULL && s->held[h] > 0) {
        s->held[h]--;
        g->held[h]--;
    }
    pthread_mutex_unlock(&g->lock);
}

int gw_guard_conn_open(struct gw_guard *g, const struct sockaddr *sa, socklen_t len)
{
    return take(g, sa, len, HELD_CONNS);
}

void gw_guard_conn_close(struct gw_guard *g, const struct sockaddr *sa, socklen_t len)
{
    give_back(g, sa, len, HELD_CONNS);
}

bool gw_guard_same_address(const struct gw_guard *g, const struct sockaddr *a, socklen_t alen,
                           const struct sockaddr *b, socklen_t blen)
{
    uint8_t x[16], y[16];
    size_t n = addr_of(g, a, alen, x);

    return n != 0 && addr_of(g, b, blen, y) == n && memcmp(x, y, n) == 0;
}

bool gw_guard_conn_kept(uint64_t now, uint64_t proven_at, uint64_t grace_until)
{
    /* a clock read before |proven_at| (another thread's) is not past it */
    if (proven_at != 0 && (now < proven_at || now - proven_at < GW_PROVEN_HOLD_MS))
        return true;
    return now < grace_until;
}

int gw_guard_req_begin(struct gw_guard *g, const struct sockaddr *sa, socklen_t len)
{
    return take(g, sa, len, HELD_REQS);
}

void gw_guard_req_end(struct gw_guard *g, const struct sockaddr *sa, socklen_t len)
{
    give_back(g, sa, len, HELD_REQS);
}

/* Whether the key |a| of |n| bytes is shut out at |now|, with *retry_after the seconds until its window ends.
 */
static bool key_shut_out(struct gw_guard *g, const uint8_t *a, size_t n, time_t now, uint32_t *retry_after)
{
    const struct slot *s = find(g, a, n, LOOKUP, now, NULL);

    if (s == NULL || !shut_out(s, g->conf.auth_failures, g->conf.auth_failure_window, now))
        return false;
    *retry_after = (uint32_t)(s->window_start + (time_t)g->conf.auth_failure_window - now);
    return true;
}

int gw_guard_auth_check(struct gw_guard *g, const struct sockaddr *sa, socklen_t len, time_t now,
                        uint32_t *retry_after)
{
    uint8_t a[16];
    size_t n = addr_of(g, sa, len, a);
    int rc = 0;

    *retry_after = 0;
    if (n == 0)
        return 0;
    pthread_mutex_lock(&g->lock);
    /* a site's slot holds failures only if its prefixes crowded each other: looked for whenever it may */
    if (g->conf.auth_failures != 0 &&
        (key_shut_out(g, a, n, now, retry_after) ||
         (has_site(g, n) && key_shut_out(g, a, GW_GUARD_SITE_BITS / 8, now, retry_after))))
        rc = GW_ERR_LIMIT;
    pthread_mutex_unlock(&g->lock);
    return rc;
}

/* Counts a failure in |s| at |now|: true for the one that uses its budget up. Lock held. */
static bool count_on(const struct gw_guard *g, struct slot *s, time_t now)
{
    if (!window_live(g, s, now)) {
        s->failures = 0;
        s->window_start = now;
    }
    if (s->failures < UINT32_MAX)
        s->failures++;
    return s->failures == g->conf.auth_failures;
}

uint32_t gw_guard_auth_failed(struct gw_guard *g, const struct sockaddr *sa, socklen_t len, time_t now)
{
    uint8_t a[16];
    size_t n = addr_of(g, sa, len, a);
    uint32_t crossed = 0;
    bool crowded = false;
    struct slot *s;

    if (n == 0)
        return 0;
    pthread_mutex_lock(&g->lock);
    if (g->conf.auth_failures == 0)
        goto out;
    s = find(g, a, n, CREATE, now, has_site(g, n) ? &crowded : NULL);
    if (s != NULL && count_on(g, s, now))
        crossed = n == 4 ? 32 : g->conf.ipv6_prefix;
    /* after the address's count, which keeps the slot it took from being the site's spare; the site said
       rather than the address when both use their budget up at once: it shuts out more */
    if (has_site(g, n) && (s = site_of(g, a, crowded, now)) != NULL && crowd_live(g, s, now) &&
        count_on(g, s, now))
        crossed = GW_GUARD_SITE_BITS;
out:
    pthread_mutex_unlock(&g->lock);
    return crossed;
}

uint64_t gw_guard_probes(struct gw_guard *g)
{
    uint64_t n;

    pthread_mutex_lock(&g->lock);
    n = g->probes;
    pthread_mutex_unlock(&g->lock);
    return n;
}
