/*
 * The state several instances share, in Redis (cluster.h). Keys, all under the configured prefix:
 *
 *   replay:<tid hex>   the senderNonce (hex) that opened the transactionID; TTL: the replay window
 *   recent:<id hash>   sorted set: an identity's live replay keys, scored by expiry
 *   txn:<tid hex>      the instance holding the open transaction; TTL: its deadline + GW_STATE_GRACE
 *   open:<id hash>     sorted set: an identity's open transactions, scored by expiry
 *
 * An identity is hashed (SHA-256, 128 bits in hex): keys stay short, and Redis holds no subject.
 * Scripts run by EVALSHA, and by EVAL after NOSCRIPT (a restarted or flushed Redis).
 */
#include "gateway/cmp/cluster.h"
#include "base/err.h"
#include "base/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CMPGW_WITH_HIREDIS

#include <pthread.h>
#include <sys/time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

enum { S_SEEN, S_RESERVE, S_RELEASE, N_SCRIPTS };

/*
 * KEYS: the entry and the identity's sorted set; ARGV: value, ttl, now, cap (0: none). Both
 * counted steps end alike: expired members out, the cap, then the entry and its member.
 */
#define LUA_COUNTED_SET                                                                                      \
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])\n"                                             \
    "if tonumber(ARGV[4]) > 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 3 end\n"     \
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"                                                   \
    "redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[2]), KEYS[1])\n"                          \
    "if redis.call('TTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[2], ARGV[2]) end\n"    \
    "return 0\n"

static const char *const scripts[N_SCRIPTS] = {
    [S_SEEN] = "local v = redis.call('GET', KEYS[1])\n"
               "if v then if v == ARGV[1] then return 1 end return 2 end\n" LUA_COUNTED_SET,
    [S_RESERVE] = "if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end\n" LUA_COUNTED_SET,
    [S_RELEASE] = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
                  "redis.call('ZREM', KEYS[2], KEYS[1])\n"
                  "return 0\n",
};

#define ID_HASH_HEX 32
#define KEY_LEN (64 + 8 + 2 * GW_MAX_TID_LEN + 1)

struct gw_cluster {
    char *address, *username, *prefix;
    unsigned char *password;
    size_t password_len;
    int port;
    struct timeval timeout;
    char owner[33]; /* this instance, in the txn: keys it holds */
    char sha[N_SCRIPTS][41];
    pthread_key_t conn; /* each thread's redisContext */
    atomic_bool reachable;
    /* the pinger: readiness follows Redis even while no request comes */
    pthread_t pinger;
    bool pinging;
    pthread_mutex_t lock; /* stop, last_err */
    pthread_cond_t wake;
    bool stop;
    char last_err[GW_ERR_LEN];
};

static void hex(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int digest_hex(const char *md, const void *in, size_t n, char *out, size_t out_bytes)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (EVP_Digest(in, n, d, &len, EVP_get_digestbyname(md), NULL) != 1 || len < out_bytes)
        return GW_ERR_CRYPTO;
    hex(out, d, out_bytes);
    return 0;
}

static void conn_free(void *c)
{
    redisFree(c);
}

/* Says why |c| failed (or |r| is an error) into |err|; the context is dropped for a reconnect. */
static int unavailable(struct gw_cluster *cl, redisContext *c, const redisReply *r, char *err)
{
    snprintf(err, GW_ERR_LEN, "the shared state (Redis at %s:%d) is unreachable: %.120s", cl->address,
             cl->port,
             r != NULL && r->type == REDIS_REPLY_ERROR ? r->str
             : c != NULL && c->err                     ? c->errstr
                                                       : "no answer");
    if (c != NULL && (r == NULL || c->err)) {
        redisFree(c);
        pthread_setspecific(cl->conn, NULL);
    }
    atomic_store(&cl->reachable, false);
    pthread_mutex_lock(&cl->lock);
    snprintf(cl->last_err, sizeof(cl->last_err), "%s", err);
    pthread_mutex_unlock(&cl->lock);
    return GW_ERR_UNAVAILABLE;
}

/* This thread's connection, authenticated; NULL with |err|. */
static redisContext *connection(struct gw_cluster *cl, char *err)
{
    redisContext *c = pthread_getspecific(cl->conn);
    redisReply *r = NULL;

    if (c != NULL)
        return c;
    c = redisConnectWithTimeout(cl->address, cl->port, cl->timeout);
    if (c == NULL || c->err) {
        (void)unavailable(cl, c, NULL, err); /* frees |c| */
        return NULL;
    }
    (void)redisSetTimeout(c, cl->timeout);
    if (cl->password != NULL) {
        r = cl->username != NULL ? redisCommand(c, "AUTH %s %b", cl->username, cl->password, cl->password_len)
                                 : redisCommand(c, "AUTH %b", cl->password, cl->password_len);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, GW_ERR_LEN, "Redis at %s:%d refused the gateway's AUTH: %.120s", cl->address,
                     cl->port, r != NULL ? r->str : c->errstr);
            freeReplyObject(r);
            redisFree(c);
            atomic_store(&cl->reachable, false);
            pthread_mutex_lock(&cl->lock);
            snprintf(cl->last_err, sizeof(cl->last_err), "%s", err);
            pthread_mutex_unlock(&cl->lock);
            return NULL;
        }
        freeReplyObject(r);
    }
    pthread_setspecific(cl->conn, c);
    return c;
}

/* Runs script |s| with two keys and four arguments; its integer answer, or GW_ERR_UNAVAILABLE. */
static long long run(struct gw_cluster *cl, int s, const char *k1, const char *k2, const char *a1,
                     long long a2, long long a3, long long a4, char *err)
{
    char n2[24], n3[24], n4[24];
    const char *argv[9] = {"EVALSHA", cl->sha[s], "2", k1, k2, a1, n2, n3, n4};
    redisContext *c;
    redisReply *r;
    long long v;

    if ((c = connection(cl, err)) == NULL)
        return GW_ERR_UNAVAILABLE;
    snprintf(n2, sizeof(n2), "%lld", a2);
    snprintf(n3, sizeof(n3), "%lld", a3);
    snprintf(n4, sizeof(n4), "%lld", a4);
    r = redisCommandArgv(c, 9, argv, NULL);
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r); /* Redis restarted or its scripts were flushed: EVAL loads it again */
        argv[0] = "EVAL";
        argv[1] = scripts[s];
        r = redisCommandArgv(c, 9, argv, NULL);
    }
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        (void)unavailable(cl, c, r, err);
        freeReplyObject(r);
        return GW_ERR_UNAVAILABLE;
    }
    v = r->integer;
    freeReplyObject(r);
    atomic_store(&cl->reachable, true);
    return v;
}

/* The pinger's thread: PING every GW_STATE_PING_SECS until told to stop. */
static void *pinger_main(void *arg)
{
    struct gw_cluster *cl = arg;
    char err[GW_ERR_LEN];
    struct timespec until;

    pthread_mutex_lock(&cl->lock);
    while (!cl->stop) {
        redisContext *c;
        redisReply *r = NULL;

        pthread_mutex_unlock(&cl->lock);
        if ((c = connection(cl, err)) != NULL) {
            r = redisCommand(c, "PING");
            if (r == NULL || r->type == REDIS_REPLY_ERROR)
                (void)unavailable(cl, c, r, err);
            else
                atomic_store(&cl->reachable, true);
            freeReplyObject(r);
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += GW_STATE_PING_SECS;
        pthread_mutex_lock(&cl->lock);
        if (!cl->stop)
            (void)pthread_cond_timedwait(&cl->wake, &cl->lock, &until);
    }
    pthread_mutex_unlock(&cl->lock);
    return NULL;
}

/* CONFIG GET |name| must answer |want|: what keeps replay keys from being evicted or forgotten. */
static int require_setting(struct gw_cluster *cl, redisContext *c, const char *name, const char *want,
                           char *err)
{
    redisReply *r = redisCommand(c, "CONFIG GET %s", name);
    int ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[1]->type == REDIS_REPLY_STRING && strcmp(r->element[1]->str, want) == 0;

    if (!ok)
        snprintf(err, GW_ERR_LEN,
                 "Redis at %s:%d: %s is %.40s, not %s (set it: lost or evicted replay keys would reopen "
                 "replays)",
                 cl->address, cl->port, name,
                 r == NULL                      ? "unknown (no answer)"
                 : r->type == REDIS_REPLY_ERROR ? r->str
                 : r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->str ? r->element[1]->str
                                                                                          : "unknown",
                 want);
    freeReplyObject(r);
    return ok ? 0 : GW_ERR_INVAL;
}

struct gw_cluster *gw_cluster_new(const struct gw_state_conf *conf, char *err)
{
    struct gw_cluster *cl = calloc(1, sizeof(*cl));
    unsigned char rnd[16];
    redisContext *c;

    if (cl == NULL || (cl->address = strdup(conf->address)) == NULL ||
        (cl->prefix = strdup(conf->key_prefix)) == NULL ||
        (conf->username != NULL && (cl->username = strdup(conf->username)) == NULL) ||
        (conf->password != NULL &&
         (cl->password = OPENSSL_memdup(conf->password, conf->password_len)) == NULL) ||
        pthread_key_create(&cl->conn, conn_free) != 0) {
        snprintf(err, GW_ERR_LEN, "shared state: out of memory");
        free(cl != NULL ? cl->address : NULL);
        free(cl != NULL ? cl->prefix : NULL);
        free(cl != NULL ? cl->username : NULL);
        free(cl);
        return NULL;
    }
    pthread_mutex_init(&cl->lock, NULL);
    pthread_cond_init(&cl->wake, NULL);
    cl->password_len = conf->password_len;
    cl->port = conf->port;
    cl->timeout = (struct timeval){conf->timeout_ms / 1000, (conf->timeout_ms % 1000) * 1000};
    atomic_init(&cl->reachable, true);
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto fail_crypto;
    hex(cl->owner, rnd, sizeof(rnd));
    for (int s = 0; s < N_SCRIPTS; s++)
        if (digest_hex("SHA1", scripts[s], strlen(scripts[s]), cl->sha[s], 20) != 0)
            goto fail_crypto;
    if ((c = connection(cl, err)) == NULL ||
        require_setting(cl, c, "maxmemory-policy", "noeviction", err) != 0 ||
        require_setting(cl, c, "appendonly", "yes", err) != 0) {
        gw_cluster_free(cl);
        return NULL;
    }
    if (pthread_create(&cl->pinger, NULL, pinger_main, cl) != 0) {
        snprintf(err, GW_ERR_LEN, "shared state: cannot start its thread");
        gw_cluster_free(cl);
        return NULL;
    }
    cl->pinging = true;
    gw_log(GW_LOG_INFO, "shared_state", "Redis at %s:%d, key prefix %s", cl->address, cl->port, cl->prefix);
    return cl;
fail_crypto:
    snprintf(err, GW_ERR_LEN, "shared state: OpenSSL failed (SHA-1 for script names, or random bytes)");
    gw_cluster_free(cl);
    return NULL;
}

void gw_cluster_free(struct gw_cluster *cl)
{
    if (cl == NULL)
        return;
    if (cl->pinging) {
        pthread_mutex_lock(&cl->lock);
        cl->stop = true;
        pthread_cond_signal(&cl->wake);
        pthread_mutex_unlock(&cl->lock);
        pthread_join(cl->pinger, NULL);
    }
    conn_free(pthread_getspecific(cl->conn)); /* the calling thread's; the others' went with them */
    pthread_setspecific(cl->conn, NULL);
    pthread_key_delete(cl->conn);
    free(cl->address);
    free(cl->username);
    free(cl->prefix);
    OPENSSL_clear_free(cl->password, cl->password_len);
    pthread_cond_destroy(&cl->wake);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

/* "<prefix><kind>:<hex of |data|>" */
static void key(const struct gw_cluster *cl, char *out, const char *kind, const unsigned char *data, size_t n)
{
    char h[2 * GW_MAX_TID_LEN + 1];

    hex(h, data, n < GW_MAX_TID_LEN ? n : GW_MAX_TID_LEN);
    snprintf(out, KEY_LEN, "%s%s:%s", cl->prefix, kind, h);
}

/* "<prefix><kind>:<first 128 bits of SHA-256(identity), hex>" */
static int id_key(const struct gw_cluster *cl, char *out, const char *kind, const char *identity, char *err)
{
    char h[65];

    if (digest_hex("SHA256", identity != NULL ? identity : "", identity != NULL ? strlen(identity) : 0, h,
                   ID_HASH_HEX / 2) != 0) {
        snprintf(err, GW_ERR_LEN, "shared state: SHA-256 failed");
        return GW_ERR_CRYPTO;
    }
    snprintf(out, KEY_LEN, "%s%s:%s", cl->prefix, kind, h);
    return 0;
}

int gw_cluster_seen(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                    const unsigned char *nonce, size_t nonce_len, const char *identity, time_t now,
                    time_t ttl, unsigned max_recent, char *err)
{
    char k1[KEY_LEN], k2[KEY_LEN], n[2 * GW_MAX_TID_LEN + 1];
    long long rc;

    if (tid_len == 0 || tid_len > GW_MAX_TID_LEN || nonce_len > GW_MAX_TID_LEN)
        return GW_ERR_INVAL;
    key(cl, k1, "replay", tid, tid_len);
    if (id_key(cl, k2, "recent", identity, err) != 0)
        return GW_ERR_UNAVAILABLE;
    hex(n, nonce, nonce_len);
    rc = run(cl, S_SEEN, k1, k2, n, (long long)ttl, (long long)now, max_recent, err);
    return rc == 0   ? 0
           : rc == 1 ? GW_ERR_REPLAY
           : rc == 2 ? GW_ERR_EXISTS
           : rc == 3 ? GW_ERR_LIMIT
                     : GW_ERR_UNAVAILABLE;
}

int gw_cluster_reserve(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *identity,
                       time_t now, time_t ttl, unsigned max_open, char *err)
{
    char k1[KEY_LEN], k2[KEY_LEN];
    long long rc;

    if (tid_len == 0 || tid_len > GW_MAX_TID_LEN)
        return GW_ERR_INVAL;
    key(cl, k1, "txn", tid, tid_len);
    if (id_key(cl, k2, "open", identity, err) != 0)
        return GW_ERR_UNAVAILABLE;
    rc =
        run(cl, S_RESERVE, k1, k2, cl->owner, (long long)ttl + GW_STATE_GRACE, (long long)now, max_open, err);
    return rc == 0 ? 0 : rc == 2 ? GW_ERR_EXISTS : rc == 3 ? GW_ERR_LIMIT : GW_ERR_UNAVAILABLE;
}

void gw_cluster_release(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *identity)
{
    char k1[KEY_LEN], k2[KEY_LEN], err[GW_ERR_LEN];

    if (cl == NULL || tid_len == 0 || tid_len > GW_MAX_TID_LEN)
        return;
    key(cl, k1, "txn", tid, tid_len);
    if (id_key(cl, k2, "open", identity, err) != 0 || run(cl, S_RELEASE, k1, k2, cl->owner, 0, 0, 0, err) < 0)
        gw_log_kv(GW_LOG_WARN, "shared_state_release_failed", "reason", err, "msg",
                  "the transaction's shared reservation ends with its TTL instead", NULL);
}

int gw_cluster_status(struct gw_cluster *cl, char *why, size_t cap)
{
    if (cl == NULL || atomic_load(&cl->reachable))
        return 0;
    pthread_mutex_lock(&cl->lock);
    snprintf(why, cap, "%s", cl->last_err);
    pthread_mutex_unlock(&cl->lock);
    return GW_ERR_UNAVAILABLE;
}

#else /* built without hiredis */

struct gw_cluster {
    int unused;
};

struct gw_cluster *gw_cluster_new(const struct gw_state_conf *conf, char *err)
{
    (void)conf;
    snprintf(err, GW_ERR_LEN,
             "\"cmp.state\": \"redis\": this cmpgw was built without hiredis (libhiredis-dev)");
    return NULL;
}

void gw_cluster_free(struct gw_cluster *cl)
{
    free(cl);
}

int gw_cluster_seen(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                    const unsigned char *nonce, size_t nonce_len, const char *identity, time_t now,
                    time_t ttl, unsigned max_recent, char *err)
{
    (void)cl, (void)tid, (void)tid_len, (void)nonce, (void)nonce_len, (void)identity, (void)now, (void)ttl,
        (void)max_recent;
    snprintf(err, GW_ERR_LEN, "no shared state");
    return GW_ERR_UNAVAILABLE;
}

int gw_cluster_reserve(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *identity,
                       time_t now, time_t ttl, unsigned max_open, char *err)
{
    (void)cl, (void)tid, (void)tid_len, (void)identity, (void)now, (void)ttl, (void)max_open;
    snprintf(err, GW_ERR_LEN, "no shared state");
    return GW_ERR_UNAVAILABLE;
}

void gw_cluster_release(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *identity)
{
    (void)cl, (void)tid, (void)tid_len, (void)identity;
}

int gw_cluster_status(struct gw_cluster *cl, char *why, size_t cap)
{
    (void)cl, (void)why, (void)cap;
    return 0;
}

#endif
