/*
 * The state several instances share, in Redis (cluster.h). Keys, all under the configured prefix:
 *
 *   replay:<tid hex>   the senderNonce (hex) that opened the transactionID; TTL: the replay window
 *   recent:<id hash>   sorted set: a share's live replay keys, scored by expiry
 *   txn:<tid hex>      the instance holding the open transaction (the one that reserved it, or ended its
 *                      record); TTL: its deadline + GW_STATE_GRACE, and at least as long as the
 *                      transactionID's rec:, res: and lease:
 *   open:<id hash>     sorted set: a share's open transactions, scored by when their reservation (txn:)
 *                      expires as the reservation or the record's write (S_PUT) set it; a hold past that
 *                      for a lease or a result keeps the transactionID, but not the transaction open
 *   rec:<tid hex>      a transaction record (cluster.h); TTL: its deadline + GW_STATE_GRACE
 *   res:<tid hex>      a deferred request's upstream result, beside its record
 *   lease:<tid hex>    the instance answering the transaction now; TTL: GW_STATE_LEASE_SECS
 *   took:<tid hex>:<instance>:<end id>
 *                      the result that end of the record took, for that instance to read back should the
 *                      answer be lost; TTL: GW_STATE_TOOK_SECS
 *   claimed:<instance> "<claim id>:<MessagePack of the answer>": what that instance's last expiry claim
 *                      took, for it to read back should the answer be lost; TTL: GW_STATE_TOOK_SECS
 *   deadlines          sorted set: the records, scored by deadline on Redis's clock
 *   epoch              the shared state's epoch: a value no instance wrote before, set by the first ping that
 *                      finds none (SET NX); no TTL. A flush, or a restart that lost Redis's data, takes it
 *                      with what was kept: a read-back that finds nothing tells a lost took: by it
 *   revoked:<id>       a certificate revoked through an instance (revoked.c), "1"; TTL: until it expires.
 *                      By its keyed id, or by its issuer and serial alone: that one "1" where an earlier
 *                      version or a certificate that names no CA key wrote it, else REVOKED_MARKED
 *   revoked            sorted set: those by keyed id, scored by expiry (their count is capped)
 *   revoking:<id>      the instance revoking that certificate now (by issuer and serial), or "done" once
 *                      it revoked it where revoked:<id> could not be written (then looked up as
 *                      revoked:<id> is); TTL: twice its upstream's timeout and GW_STATE_REVOKING_SLACK_MS
 *
 * A share of the per-identity caps is named by its quota key (cmp_quota_key: the identity, with its TLS
 * client), hashed (SHA-256, 128 bits in hex): keys stay short, and Redis holds no subject.
 * Scripts (cluster_scripts.c) run by EVALSHA, and by EVAL after NOSCRIPT (a restarted or flushed Redis).
 * What a record and a result are, as bytes, is cluster_record.c's; the revoked: and revoking: steps are
 * cluster_revoked.c's.
 */
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/cluster_local.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CMPGW_WITH_HIREDIS

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define ID_HASH_HEX 32

static int digest_hex(const char *md, const void *in, size_t n, char *out, size_t out_bytes)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (EVP_Digest(in, n, d, &len, EVP_get_digestbyname(md), NULL) != 1 || len < out_bytes)
        return GW_ERR_CRYPTO;
    gw_hex(out, d, out_bytes);
    return 0;
}

static void conn_free(void *c)
{
    redisFree(c);
}

/*
 * Redis cannot be used now, for the reason in |err|: readiness says so until a ping succeeds (reached).
 * |refused|: Redis answered, refusing the command (an error reply), rather than not at all.
 */
static int mark_down(struct gw_cluster *cl, const char *err, bool refused)
{
    atomic_store(&cl->refusing, refused);
    atomic_store(&cl->reachable, false);
    atomic_fetch_add(&cl->downs, 1);
    pthread_mutex_lock(&cl->lock);
    snprintf(cl->last_err, sizeof(cl->last_err), "%s", err);
    pthread_mutex_unlock(&cl->lock);
    return GW_ERR_UNAVAILABLE;
}

/*
 * The ping went through, its SET NX with it: Redis takes writes again, and an outage is over, said with the
 * count of its lines held back since the last one (gw_cluster_unavailable_due). Before readiness says so: a
 * ready instance has said it, but for an end within GW_LOG_OUTAGE_SECS of the last one said (a flap),
 * which the first ping past that interval says (gw_log_outage_end). Another script's answer proves less: a
 * replica after a failover (READONLY), or a Redis at its maxmemory (OOM), answers a lookup and refuses a
 * write, and a request that looks up before it writes would end every time the outage its write begins again.
 * |downs| is mark_down's count as the ping was sent: a command that failed since, while the ping's answer
 * came back, leaves the outage open and readiness down (the next ping decides).
 */
static void reached(struct gw_cluster *cl, unsigned long downs)
{
    char held[GW_LOG_HELD_LEN], msg[GW_ERR_LEN];

    if (atomic_load(&cl->downs) != downs)
        return;
    if (gw_log_outage_end(&cl->outage, time(NULL), held)) {
        snprintf(msg, sizeof(msg), "the shared state (Redis at %s:%d) answers again", cl->address, cl->port);
        gw_log_kv(GW_LOG_INFO, "shared_state_recovered", "msg", msg, "suppressed", held, NULL);
    }
    atomic_store(&cl->reachable, true);
}

/*
 * A step that failed in Redis, said as the warning |event| with |err| (and |msg| unless NULL), paced by the
 * outage of shared_state_unavailable: every transaction that began before it ends with one such step, so
 * an outage would write a line per transaction. The first of them in an outage goes out at once (the
 * operator sees which steps fail), then one a GW_LOG_OUTAGE_SECS, the rest counted in their `suppressed`
 * and by shared_state_recovered; apart from the outage's own lines (gw_log_outage_other_due): a step fails
 * first most often (the claim runs every second), and its warning must not hold back the outage's first
 * shared_state_unavailable line, which alerts look for, nor take its count.
 */
void cluster_warn_failed(struct gw_cluster *cl, const char *event, const char *err, const char *msg)
{
    char held[GW_LOG_HELD_LEN];

    if (!gw_log_outage_other_due(&cl->outage, time(NULL), held))
        return;
    gw_log_kv(GW_LOG_WARN, event, "reason", err, "suppressed", held, msg != NULL ? "msg" : NULL, msg, NULL);
}

/* Says why |c| failed (or |r| is an error) into |err|; the context is dropped for a reconnect. */
static int unavailable(struct gw_cluster *cl, redisContext *c, const redisReply *r, char *err)
{
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        snprintf(err, GW_ERR_LEN, "the shared state (Redis at %s:%d) refused a command: %.120s", cl->address,
                 cl->port, r->str);
    else
        snprintf(err, GW_ERR_LEN, "the shared state (Redis at %s:%d) is unreachable: %.120s", cl->address,
                 cl->port, c != NULL && c->err ? c->errstr : "no answer");
    if (c != NULL && (r == NULL || c->err)) {
        redisFree(c);
        pthread_setspecific(cl->conn, NULL);
    }
    return mark_down(cl, err, r != NULL && r->type == REDIS_REPLY_ERROR);
}

static redisReply *answer(const struct gw_cluster *cl, redisContext *c, uint64_t until);

static uint64_t deadline(const struct gw_cluster *cl)
{
    return gw_now_ms() + (uint64_t)cl->timeout.tv_sec * 1000 + (uint64_t)cl->timeout.tv_usec / 1000;
}

/*
 * One command on |c| and its answer, or NULL with c->err set (the caller drops |c|). Bounded as
 * hiredis's own redisCommandArgv is not: the whole answer within the timeout (its socket timeout
 * bounds each read only, so an answer a byte at a time would hold the thread forever), and at most
 * GW_STATE_MAX_REPLY bytes of it (hiredis would read up to Redis's 512 MiB bulk and more). *|sent|
 * (NULL: not wanted) says whether the whole command went to the socket: Redis runs a command only
 * once it has read all of it, so one that did not, its connection then dropped, never ran.
 */
static redisReply *command(const struct gw_cluster *cl, redisContext *c, int argc, const char **argv,
                           const size_t *argl, bool *sent)
{
    uint64_t until = deadline(cl);
    int done = 0;

    if (sent != NULL)
        *sent = false;
    if (redisAppendCommandArgv(c, argc, argv, argl) != REDIS_OK)
        return NULL;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK) /* each write within the socket's timeout */
            return NULL;
    if (sent != NULL)
        *sent = true;
    return answer(cl, c, until);
}

/* The answer to what was sent on |c|, whole by |until|: command's bounds. NULL with c->err set. */
static redisReply *answer(const struct gw_cluster *cl, redisContext *c, uint64_t until)
{
    void *reply = NULL;
    size_t got = 0;

    while (redisGetReplyFromReader(c, &reply) == REDIS_OK && reply == NULL) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        uint64_t now = gw_now_ms();
        size_t before;
        int n;

        if (got > GW_STATE_MAX_REPLY || now >= until ||
            ((n = poll(&p, 1, (int)(until - now))) == 0 || (n < 0 && errno != EINTR))) {
            c->err = REDIS_ERR_IO;
            if (got > GW_STATE_MAX_REPLY)
                snprintf(c->errstr, sizeof(c->errstr), "an answer of more than %d bytes", GW_STATE_MAX_REPLY);
            else
                snprintf(c->errstr, sizeof(c->errstr), "no whole answer within %lld ms",
                         (long long)cl->timeout.tv_sec * 1000 + cl->timeout.tv_usec / 1000);
            return NULL;
        }
        if (n < 0)
            continue;
        before = c->reader->len;
        if (redisBufferRead(c) != REDIS_OK)
            return NULL;
        got += c->reader->len - before;
    }
    return reply;
}

static redisReply *command1(const struct gw_cluster *cl, redisContext *c, int argc, const char *const *argv)
{
    size_t argl[4];

    for (int i = 0; i < argc && i < 4; i++)
        argl[i] = strlen(argv[i]);
    return command(cl, c, argc, (const char **)argv, argl, NULL);
}

/*
 * Whether Redis has closed |c| since its last answer (a restart, its idle-client timeout) or sent what
 * no command asked for. Such a connection would fail the next command; nothing is sent on it yet, so
 * a new one may carry the command without doubt whether Redis ran it.
 */
static bool stale(const redisContext *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLRDHUP};

    return poll(&p, 1, 0) != 0;
}

/*
 * AUTH [username] password on the new connection |c|, written to its socket by the gateway: hiredis
 * would format the command in a buffer of its own and copy it into its output buffer, both freed with
 * the password in them. This buffer is wiped once sent. The answer, or NULL with c->err set.
 */
static redisReply *auth(const struct gw_cluster *cl, redisContext *c)
{
    uint64_t until = deadline(cl);
    size_t ulen = cl->username != NULL ? strlen(cl->username) : 0, cap = 96 + ulen + cl->password_len;
    size_t len, off = 0;
    char *buf = OPENSSL_malloc(cap);
    ssize_t n = 0;
    int e;

    if (buf == NULL) {
        c->err = REDIS_ERR_OOM;
        snprintf(c->errstr, sizeof(c->errstr), "AUTH not sent: out of memory");
        return NULL;
    }
    len = (size_t)snprintf(buf, cap, "*%d\r\n$4\r\nAUTH\r\n", cl->username != NULL ? 3 : 2);
    if (cl->username != NULL)
        len += (size_t)snprintf(buf + len, cap - len, "$%zu\r\n%s\r\n", ulen, cl->username);
    len += (size_t)snprintf(buf + len, cap - len, "$%zu\r\n", cl->password_len);
    memcpy(buf + len, cl->password, cl->password_len);
    memcpy(buf + len + cl->password_len, "\r\n", 2);
    len += cl->password_len + 2;
    while (off < len &&
           ((n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL)) > 0 || (n < 0 && errno == EINTR)))
        off += n > 0 ? (size_t)n : 0; /* each send within the socket's timeout */
    e = errno;
    OPENSSL_clear_free(buf, cap);
    if (off == len)
        return answer(cl, c, until);
    c->err = REDIS_ERR_IO;
    snprintf(c->errstr, sizeof(c->errstr), "AUTH not sent: %s", n < 0 ? strerror(e) : "closed");
    return NULL;
}

/* The codes of the errors Redis refuses an AUTH with: WRONGPASS from Redis 6 on, ERR before (or when no
   password is set), NOAUTH. */
static const char *const auth_codes[] = {"WRONGPASS", "NOAUTH", "ERR"};

/* Whether |r|, the answer to the gateway's AUTH, accepts it: +OK, and nothing else. */
static bool auth_accepted(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STATUS && r->len == 2 && memcmp(r->str, "OK", 2) == 0;
}

/*
 * Why the gateway's AUTH on |c| was not accepted (|r| its answer, NULL: |c|'s error) into |err|, which is
 * logged and shown by readiness. What answers at Redis's address need not be Redis: one that echoes what it
 * read, or a Redis that quotes an unknown command's arguments (a renamed AUTH), hands back the password.
 * So of an error only its code is quoted, one of Redis's, and never the text after it; of anything else,
 * nothing.
 */
static void auth_refused(const struct gw_cluster *cl, const redisContext *c, const redisReply *r, char *err)
{
    const char *code = NULL;

    if (r == NULL) {
        snprintf(err, GW_ERR_LEN, "Redis at %s:%d refused the gateway's AUTH: %.120s", cl->address, cl->port,
                 c->errstr);
        return;
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ERROR && i < sizeof(auth_codes) / sizeof(auth_codes[0]); i++) {
        size_t n = strlen(auth_codes[i]);

        if (r->len >= n && memcmp(r->str, auth_codes[i], n) == 0 && (r->len == n || r->str[n] == ' '))
            code = auth_codes[i];
    }
    if (code != NULL)
        snprintf(err, GW_ERR_LEN,
                 "Redis at %s:%d refused the gateway's AUTH: %s (the rest of its answer is not quoted: it "
                 "could repeat the password)",
                 cl->address, cl->port, code);
    else
        snprintf(err, GW_ERR_LEN,
                 "Redis at %s:%d answered the gateway's AUTH with %s other than OK (not quoted: it could "
                 "repeat the password)",
                 cl->address, cl->port, r->type == REDIS_REPLY_ERROR ? "an error" : "something");
}

/* This thread's connection, authenticated and its eviction checked; NULL with |err|. */
static redisContext *connection(struct gw_cluster *cl, char *err)
{
    redisContext *c = pthread_getspecific(cl->conn);
    redisReply *r = NULL;

    if (c != NULL && !stale(c))
        return c;
    if (c != NULL) {
        redisFree(c);
        pthread_setspecific(cl->conn, NULL);
    }
    c = redisConnectWithTimeout(cl->address, cl->port, cl->timeout);
    if (c == NULL || c->err) {
        (void)unavailable(cl, c, NULL, err); /* frees |c| */
        return NULL;
    }
    (void)redisSetTimeout(c, cl->timeout);
    if (cl->password != NULL) {
        r = auth(cl, c);
        if (!auth_accepted(r)) {
            auth_refused(cl, c, r, err);
            freeReplyObject(r);
            redisFree(c);
            (void)mark_down(cl, err, false);
            return NULL;
        }
        freeReplyObject(r);
    }
    pthread_setspecific(cl->conn, c);
    /* on each new connection: a restart, a failover or a CONFIG SET since the start's check shows there */
    if ((r = command1(cl, c, 2, (const char *const[]){"INFO", "memory"})) == NULL) {
        (void)unavailable(cl, c, NULL, err); /* frees |c| */
        return NULL;
    }
    cluster_eviction_read(cl, r);
    freeReplyObject(r);
    return c;
}

/*
 * Runs script |s| with two keys and up to six arguments (|argc| strings after the keys, of |lens|
 * bytes each, or NUL-terminated when |lens| is NULL); its answer (caller frees), or NULL with |err|
 * when Redis could not be asked or answered an error. On NULL, *|unran| (NULL: not wanted) says
 * whether the script certainly did not run: no connection to send it on (refused, not made, not
 * authenticated), or not all of it sent (command); an error answered, or none, leaves that unknown.
 */
static redisReply *eval_n(struct gw_cluster *cl, int s, const char *k1, const char *k2, int argc,
                          const char *const *args, const size_t *lens, bool *unran, char *err)
{
    const char *argv[11] = {"EVALSHA", cl->sha[s], "2", k1, k2};
    size_t argl[11];
    redisContext *c;
    redisReply *r;
    bool sent = false;

    if (unran != NULL)
        *unran = true;
    if ((c = connection(cl, err)) == NULL)
        return NULL;
    for (int i = 0; i < argc && i < 6; i++)
        argv[5 + i] = args[i];
    for (int i = 0; i < 5 + argc && i < 11; i++)
        argl[i] = i >= 5 && lens != NULL ? lens[i - 5] : strlen(argv[i]);
    r = command(cl, c, 5 + argc, argv, argl, &sent);
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r); /* Redis restarted or its scripts were flushed: EVAL loads it again */
        argv[0] = "EVAL";
        argv[1] = cluster_scripts[s];
        argl[0] = 4;
        argl[1] = strlen(cluster_scripts[s]);
        r = command(cl, c, 5 + argc, argv, argl, &sent); /* the EVALSHA did not run */
    }
    if (unran != NULL)
        *unran = r == NULL && !sent;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        (void)unavailable(cl, c, r, err);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *cluster_eval(struct gw_cluster *cl, int s, const char *k1, const char *k2, int argc,
                         const char *const *args, char *err)
{
    return eval_n(cl, s, k1, k2, argc, args, NULL, NULL, err);
}

/* The integer a script answered (|r|, consumed), or GW_ERR_UNAVAILABLE with |err|. */
long long cluster_integer_of(struct gw_cluster *cl, redisReply *r, char *err)
{
    long long v = GW_ERR_UNAVAILABLE;

    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r != NULL)
        snprintf(err, GW_ERR_LEN, "the shared state (Redis at %s:%d) answered a script with type %d",
                 cl->address, cl->port, r->type);
    freeReplyObject(r);
    return v;
}

/* Runs script |s| with two keys and four arguments; its integer answer, or GW_ERR_UNAVAILABLE. */
long long cluster_run(struct gw_cluster *cl, int s, const char *k1, const char *k2, const char *a1,
                      long long a2, long long a3, long long a4, char *err)
{
    char n2[24], n3[24], n4[24];
    const char *args[4] = {a1, n2, n3, n4};

    snprintf(n2, sizeof(n2), "%lld", a2);
    snprintf(n3, sizeof(n3), "%lld", a3);
    snprintf(n4, sizeof(n4), "%lld", a4);
    return cluster_integer_of(cl, cluster_eval(cl, s, k1, k2, 4, args, err), err);
}

/*
 * The ping: the epoch read, and set first to a value no instance wrote before if Redis has none (flushed,
 * or restarted without its data, since it was set). Its thread's only (gw_cluster_new, then the pinger).
 */
static void ping(struct gw_cluster *cl)
{
    char k[CLUSTER_KEY_LEN], v[GW_STATE_EPOCH_LEN], err[GW_ERR_LEN];
    unsigned long downs = atomic_load(&cl->downs);
    redisReply *r;

    snprintf(k, sizeof(k), "%sepoch", cl->prefix); /* keys under the prefix, as its ACL allows */
    snprintf(v, sizeof(v), "%s:%llu", cl->owner, ++cl->epochs);
    if ((r = cluster_eval(cl, S_PING, k, k, 1, (const char *const[]){v}, err)) == NULL)
        return; /* marked down */
    reached(cl, downs);
    pthread_mutex_lock(&cl->lock);
    if (r->type == REDIS_REPLY_STRING && r->len < sizeof(cl->epoch))
        snprintf(cl->epoch, sizeof(cl->epoch), "%s", r->str);
    else
        cl->epoch[0] = '\0'; /* not an instance's value: no end is told by it */
    pthread_mutex_unlock(&cl->lock);
    freeReplyObject(r);
}

/* The pinger's thread: PING every GW_STATE_PING_SECS until told to stop. */
static void *pinger_main(void *arg)
{
    struct gw_cluster *cl = arg;
    char err[GW_ERR_LEN];
    struct timespec until;

    pthread_mutex_lock(&cl->lock);
    while (!cl->stop) {
        pthread_mutex_unlock(&cl->lock);
        if (connection(cl, err) != NULL)
            ping(cl);
        until = gw_timespec_ms(gw_now_ms() + (uint64_t)GW_STATE_PING_SECS * 1000); /* |wake|'s clock */
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
    redisReply *r = command1(cl, c, 3, (const char *const[]){"CONFIG", "GET", name});
    int ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[1]->type == REDIS_REPLY_STRING && strcmp(r->element[1]->str, want) == 0;

    if (!ok && r != NULL && r->type == REDIS_REPLY_ERROR)
        snprintf(err, GW_ERR_LEN,
                 "Redis at %s:%d refused CONFIG GET %s (%.60s): the gateway checks it at start; grant its "
                 "user +config|get",
                 cl->address, cl->port, name, r->str);
    else if (!ok)
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

    /* the pinger waits until gw_now_ms deadlines: the wall clock may step back */
    if (cl == NULL || gw_cond_init_monotonic(&cl->wake) != 0) {
        snprintf(err, GW_ERR_LEN, "shared state: out of memory");
        free(cl);
        return NULL;
    }
    if ((cl->address = strdup(conf->address)) == NULL || (cl->prefix = strdup(conf->key_prefix)) == NULL ||
        (conf->username != NULL && (cl->username = strdup(conf->username)) == NULL) ||
        (conf->password != NULL &&
         (cl->password = OPENSSL_memdup(conf->password, conf->password_len)) == NULL) ||
        pthread_key_create(&cl->conn, conn_free) != 0) {
        snprintf(err, GW_ERR_LEN, "shared state: out of memory");
        free(cl->address);
        free(cl->prefix);
        free(cl->username);
        OPENSSL_clear_free(cl->password, conf->password_len);
        pthread_cond_destroy(&cl->wake);
        free(cl);
        return NULL;
    }
    pthread_mutex_init(&cl->lock, NULL);
    gw_log_outage_init(&cl->outage);
    cl->password_len = conf->password_len;
    if (conf->mac_key != NULL && (cl->mac_key = OPENSSL_memdup(conf->mac_key, conf->mac_key_len)) == NULL) {
        snprintf(err, GW_ERR_LEN, "shared state: out of memory");
        gw_cluster_free(cl);
        return NULL;
    }
    cl->mac_key_len = conf->mac_key_len;
    cl->port = conf->port;
    cl->timeout = (struct timeval){conf->timeout_ms / 1000, (conf->timeout_ms % 1000) * 1000};
    atomic_init(&cl->reachable, true);
    atomic_init(&cl->refusing, false);
    atomic_init(&cl->downs, 0);
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto fail_crypto;
    gw_hex(cl->owner, rnd, sizeof(rnd));
    for (int s = 0; s < N_SCRIPTS; s++)
        if (digest_hex("SHA1", cluster_scripts[s], strlen(cluster_scripts[s]), cl->sha[s], 20) != 0)
            goto fail_crypto;
    if ((c = connection(cl, err)) == NULL ||
        require_setting(cl, c, "maxmemory-policy", "noeviction", err) != 0 ||
        require_setting(cl, c, "appendonly", "yes", err) != 0) {
        gw_cluster_free(cl);
        return NULL;
    }
    ping(cl); /* the epoch, for the first ends (readiness says why if it fails) */
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

/*
 * An outage still open as |cl| goes (the gateway stopping, Redis still away) says the lines it held back
 * since its last one, as its end would have: one line more, so that every line is out or counted.
 */
static void held_at_stop(struct gw_cluster *cl)
{
    char held[GW_LOG_HELD_LEN], why[GW_ERR_LEN];

    if (!gw_log_outage_end(&cl->outage, 0, held) || strcmp(held, "0") == 0)
        return;
    pthread_mutex_lock(&cl->lock);
    snprintf(why, sizeof(why), "%s", cl->last_err);
    pthread_mutex_unlock(&cl->lock);
    gw_log_kv(GW_LOG_ERROR, "shared_state_unavailable", "reason", why, "suppressed", held, "msg",
              "the outage was still open as the gateway stopped: the lines it held back since its last one",
              NULL);
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
    held_at_stop(cl);
    conn_free(pthread_getspecific(cl->conn)); /* the calling thread's; the others' went with them */
    pthread_setspecific(cl->conn, NULL);
    pthread_key_delete(cl->conn);
    free(cl->address);
    free(cl->username);
    free(cl->prefix);
    OPENSSL_clear_free(cl->password, cl->password_len);
    OPENSSL_clear_free(cl->mac_key, cl->mac_key_len);
    pthread_cond_destroy(&cl->wake);
    pthread_mutex_destroy(&cl->lock);
    gw_log_outage_cleanup(&cl->outage);
    free(cl);
}

/* "<prefix><kind>:<hex of |data|>" */
static void key(const struct gw_cluster *cl, char *out, const char *kind, const unsigned char *data, size_t n)
{
    char h[2 * GW_MAX_TID_LEN + 1];

    gw_hex(h, data, n < GW_MAX_TID_LEN ? n : GW_MAX_TID_LEN);
    snprintf(out, CLUSTER_KEY_LEN, "%s%s:%s", cl->prefix, kind, h);
}

/* "<prefix><kind>:<first 128 bits of SHA-256(quota), hex>" */
static int id_key(const struct gw_cluster *cl, char *out, const char *kind, const char *quota, char *err)
{
    char h[65];

    if (digest_hex("SHA256", quota != NULL ? quota : "", quota != NULL ? strlen(quota) : 0, h,
                   ID_HASH_HEX / 2) != 0) {
        snprintf(err, GW_ERR_LEN, "shared state: SHA-256 failed");
        return GW_ERR_CRYPTO;
    }
    snprintf(out, CLUSTER_KEY_LEN, "%s%s:%s", cl->prefix, kind, h);
    return 0;
}

/*
 * S_SEEN's refusal of a messageTime outside its window, {4, offset}: 1 with |mt|->off set, else 0 (an
 * offset inside the window is no refusal: the answer is then not understood, as any other array).
 */
static int seen_untimely(const redisReply *r, struct gw_cluster_msg_time *mt)
{
    long long off;

    if (mt == NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[0]->integer != 4 ||
        r->element[1]->type != REDIS_REPLY_INTEGER)
        return 0;
    off = r->element[1]->integer;
    if (off >= -(long long)(mt->behind + mt->elapsed) && off <= (long long)mt->ahead)
        return 0;
    mt->off = off;
    return 1;
}

int gw_cluster_seen(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                    const unsigned char *nonce, size_t nonce_len, struct gw_cluster_msg_time *mt,
                    const char *quota, time_t ttl, unsigned max_recent, char *err)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN], n[2 * GW_MAX_TID_LEN + 1], a[5][24] = {"", "", "", "", ""};
    const char *args[6] = {n, a[0], a[1], a[2], a[3], a[4]};
    redisReply *r;
    long long rc;

    if (tid_len == 0 || tid_len > GW_MAX_TID_LEN || nonce_len > GW_MAX_TID_LEN)
        return GW_ERR_INVAL;
    key(cl, k1, "replay", tid, tid_len);
    if (id_key(cl, k2, "recent", quota, err) != 0)
        return GW_ERR_UNAVAILABLE;
    gw_hex(n, nonce, nonce_len);
    snprintf(a[0], sizeof(a[0]), "%lld", (long long)ttl);
    snprintf(a[1], sizeof(a[1]), "%u", max_recent);
    if (mt != NULL) {
        snprintf(a[2], sizeof(a[2]), "%lld", (long long)mt->at);
        snprintf(a[3], sizeof(a[3]), "%lld", (long long)(mt->behind + mt->elapsed));
        snprintf(a[4], sizeof(a[4]), "%lld", (long long)mt->ahead);
    }
    r = cluster_eval(cl, S_SEEN, k1, k2, 6, args, err);
    if (seen_untimely(r, mt)) {
        freeReplyObject(r);
        return GW_ERR_TIME;
    }
    rc = cluster_integer_of(cl, r, err);
    return rc == 0   ? 0
           : rc == 1 ? GW_ERR_REPLAY
           : rc == 2 ? GW_ERR_EXISTS
           : rc == 3 ? GW_ERR_LIMIT
                     : GW_ERR_UNAVAILABLE;
}

int gw_cluster_reserve(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *quota,
                       time_t ttl, unsigned max_open, char *err)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN];
    long long rc;

    if (tid_len == 0 || tid_len > GW_MAX_TID_LEN)
        return GW_ERR_INVAL;
    key(cl, k1, "txn", tid, tid_len);
    if (id_key(cl, k2, "open", quota, err) != 0)
        return GW_ERR_UNAVAILABLE;
    rc = cluster_run(cl, S_RESERVE, k1, k2, cl->owner, (long long)ttl + GW_STATE_GRACE, max_open, 0, err);
    return rc == 0 ? 0 : rc == 2 ? GW_ERR_EXISTS : rc == 3 ? GW_ERR_LIMIT : GW_ERR_UNAVAILABLE;
}

void gw_cluster_release(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *quota)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN], err[GW_ERR_LEN];

    if (cl == NULL || tid_len == 0 || tid_len > GW_MAX_TID_LEN)
        return;
    /* best effort: it expires anyway, and no thread waits on a dead Redis. But one that refuses writes
       (its maxmemory reached: OOM) takes it, deletes and a member out taking no memory: readiness is down
       then, and a reservation skipped would count against the cap until its TTL, past Redis's recovery. A
       Redis that refused and then went silent costs one timeout at most: the first command or PING it
       leaves unanswered (the pinger's within GW_STATE_PING_SECS and a timeout) ends |refusing| */
    if (!atomic_load(&cl->reachable) && !atomic_load(&cl->refusing))
        return;
    key(cl, k1, "txn", tid, tid_len);
    if (id_key(cl, k2, "open", quota, err) != 0 ||
        cluster_run(cl, S_RELEASE, k1, k2, cl->owner, 0, 0, 0, err) < 0)
        cluster_warn_failed(cl, "shared_state_release_failed", err,
                            "the transaction's shared reservation ends with its TTL instead");
}

/* ---- transaction records: what another instance needs to continue a transaction ---- */

bool gw_cluster_keeps_records(const struct gw_cluster *cl)
{
    return cl != NULL && cl->mac_key != NULL;
}

/* The largest record and result an instance writes, as script arguments: a larger one is not ours. */
static void size_args(char record[24], char result[24])
{
    snprintf(record, 24, "%d", GW_STATE_MAX_RECORD);
    snprintf(result, 24, "%d", GW_STATE_MAX_RESULT);
}

/* A record |v| and its result |r| (nil or empty: none) as Redis answered them; GW_ERR_INVAL if either is not
 * ours. */
static int reply_decode(const struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                        const redisReply *v, const redisReply *r, struct gw_txn_record *rec)
{
    if (v->type != REDIS_REPLY_STRING ||
        cluster_record_decode(cl->mac_key, cl->mac_key_len, tid, tid_len, (const unsigned char *)v->str,
                              v->len, rec) != 0)
        return GW_ERR_INVAL;
    if (r != NULL && r->type == REDIS_REPLY_STRING && r->len > 0 &&
        cluster_result_decode(cl->mac_key, cl->mac_key_len, tid, tid_len, (const unsigned char *)r->str,
                              r->len, &rec->result) != 0) {
        gw_txn_record_cleanup(rec);
        return GW_ERR_INVAL;
    }
    return 0;
}

int gw_cluster_put_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *quota,
                          const struct gw_txn_record *rec, time_t ttl, char *err)
{
    char k[CLUSTER_KEY_LEN], dk[CLUSTER_KEY_LEN], ok[CLUSTER_KEY_LEN], secs[24], deadline[24];
    size_t len = 0;
    unsigned char *blob;
    long long rc;

    if (!gw_cluster_keeps_records(cl) || tid_len == 0 || tid_len > GW_MAX_TID_LEN)
        return GW_ERR_INVAL;
    if (id_key(cl, ok, "open", quota, err) != 0)
        return GW_ERR_UNAVAILABLE;
    if ((blob =
             cluster_blob_within(cluster_record_encode(cl->mac_key, cl->mac_key_len, tid, tid_len, rec, &len),
                                 &len, GW_STATE_MAX_RECORD, "transaction record", err)) == NULL)
        return GW_ERR_NOMEM;
    key(cl, k, "rec", tid, tid_len);
    snprintf(dk, sizeof(dk), "%sdeadlines", cl->prefix);
    snprintf(secs, sizeof(secs), "%lld", (long long)ttl + GW_STATE_GRACE);
    snprintf(deadline, sizeof(deadline), "%lld", (long long)ttl);
    rc = cluster_integer_of(
        cl,
        eval_n(cl, S_PUT, k, dk, 5, (const char *const[]){(const char *)blob, secs, deadline, cl->owner, ok},
               (const size_t[]){len, strlen(secs), strlen(deadline), strlen(cl->owner), strlen(ok)}, NULL,
               err),
        err);
    free(blob);
    if (rc == 2)
        snprintf(err, GW_ERR_LEN, "another instance reserved the transactionID meanwhile");
    return rc == 0 ? 0 : rc == 2 ? GW_ERR_EXISTS : GW_ERR_UNAVAILABLE;
}

int gw_cluster_update_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                             const struct gw_txn_record *rec, char *err)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN];
    size_t len = 0;
    unsigned char *blob;
    long long rc;

    if (!gw_cluster_keeps_records(cl) || tid_len == 0 || tid_len > GW_MAX_TID_LEN)
        return GW_ERR_INVAL;
    if ((blob =
             cluster_blob_within(cluster_record_encode(cl->mac_key, cl->mac_key_len, tid, tid_len, rec, &len),
                                 &len, GW_STATE_MAX_RECORD, "transaction record", err)) == NULL)
        return GW_ERR_NOMEM;
    key(cl, k1, "rec", tid, tid_len);
    key(cl, k2, "lease", tid, tid_len);
    rc = cluster_integer_of(cl,
                            eval_n(cl, S_UPDATE, k1, k2, 2,
                                   (const char *const[]){(const char *)blob, cl->owner},
                                   (const size_t[]){len, strlen(cl->owner)}, NULL, err),
                            err);
    free(blob);
    if (rc == 2)
        snprintf(err, GW_ERR_LEN, "this instance's lease on the transaction ran out; another may answer it");
    else if (rc == 0)
        snprintf(err, GW_ERR_LEN, "the transaction's shared record is gone");
    return rc == 1 ? 0 : rc == 2 ? GW_ERR_BUSY : rc == 0 ? GW_ERR_NOT_FOUND : GW_ERR_UNAVAILABLE;
}

int gw_cluster_put_result(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                          const struct gw_txn_result *res, time_t ttl, char *err)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN], secs[24];
    size_t len = 0;
    unsigned char *blob;
    long long rc;
    bool unran = false;

    if (!gw_cluster_keeps_records(cl) || tid_len == 0 || tid_len > GW_MAX_TID_LEN)
        return GW_ERR_INVAL;
    if ((blob =
             cluster_blob_within(cluster_result_encode(cl->mac_key, cl->mac_key_len, tid, tid_len, res, &len),
                                 &len, GW_STATE_MAX_RESULT, "upstream result", err)) == NULL)
        return GW_ERR_NOMEM;
    key(cl, k1, "rec", tid, tid_len);
    key(cl, k2, "res", tid, tid_len);
    snprintf(secs, sizeof(secs), "%lld", (long long)ttl + GW_STATE_GRACE);
    rc = cluster_integer_of(cl,
                            eval_n(cl, S_RESULT, k1, k2, 2, (const char *const[]){(const char *)blob, secs},
                                   (const size_t[]){len, strlen(secs)}, &unran, err),
                            err);
    free(blob);
    return rc >= 0 ? (int)rc : unran ? GW_ERR_UNAVAILABLE : GW_ERR_IO;
}

int gw_cluster_claim_expired(struct gw_cluster *cl, time_t now, gw_cluster_expired_fn cb, void *arg)
{
    char dk[CLUSTER_KEY_LEN], ck[CLUSTER_KEY_LEN], n[24], lim[8], err[GW_ERR_LEN], id[24];
    char max_record[24], max_result[24];
    const char *args[5] = {n, lim, max_record, max_result, id};
    redisReply *r;
    bool unran = true;
    int claimed = 0;

    if (!gw_cluster_keeps_records(cl) || !atomic_load(&cl->reachable))
        return 0;
    snprintf(dk, sizeof(dk), "%sdeadlines", cl->prefix);
    snprintf(ck, sizeof(ck), "%sclaimed:%s", cl->prefix, cl->owner);
    snprintf(n, sizeof(n), "%d", GW_STATE_CLAIM_SLACK); /* deadlines and the claim on Redis's clock */
    snprintf(lim, sizeof(lim), "%d", GW_STATE_CLAIM_BATCH);
    snprintf(id, sizeof(id), "%llu", cl->claim_id);
    size_args(max_record, max_result);
    /* one that may have run, its answer lost, is asked again under its id (now, and at the next tick should
       that answer be lost too): it answers what it took */
    if ((r = eval_n(cl, S_CLAIM, dk, ck, 5, args, NULL, &unran, err)) == NULL && !unran)
        r = cluster_eval(cl, S_CLAIM, dk, ck, 5, args, err);
    if (r == NULL) {
        if (now - cl->claim_logged >= 60) { /* once a minute: it runs every second */
            cluster_warn_failed(cl, "shared_state_claim_failed", err, NULL);
            cl->claim_logged = now;
        }
        return 0;
    }
    cl->claim_id++; /* its answer came: what it took may go */
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 2 < r->elements; i += 3) {
        const redisReply *k = r->element[i], *v = r->element[i + 1], *res = r->element[i + 2];
        unsigned char tid[GW_MAX_TID_LEN];
        size_t tl =
            k->type == REDIS_REPLY_STRING ? cluster_record_key_tid(k->str, k->len, cl->prefix, tid) : 0;
        struct gw_txn_record rec;

        if (tl == 0 || reply_decode(cl, tid, tl, v, res, &rec) != 0) {
            gw_log_kv(GW_LOG_ERROR, "txn_record_invalid", "msg",
                      "an expired shared transaction record does not verify; its expiry is not recorded",
                      NULL);
            continue;
        }
        cb(arg, tid, tl, &rec);
        gw_txn_record_cleanup(&rec);
        claimed++;
    }
    freeReplyObject(r);
    return claimed;
}

/*
 * The reservation's holder S_TAKE answered (|h|) into |out|: "" when there was none, or when it is no
 * instance's name (one longer than any: the end of a copy rebuilt from the record then finds the
 * reservation another's, and leaves the record).
 */
static void holder_of(const redisReply *h, char out[GW_STATE_OWNER_LEN])
{
    out[0] = '\0';
    if (h->type == REDIS_REPLY_STRING && h->len < GW_STATE_OWNER_LEN)
        snprintf(out, GW_STATE_OWNER_LEN, "%s", h->str);
}

/* gw_cluster_take_record, or with |lease| false gw_cluster_read_record */
static int fetch_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, bool lease,
                        struct gw_txn_record *out, char *err)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN], secs[16];
    char max_record[24], max_result[24];
    const char *args[4] = {lease ? cl->owner : "", secs, max_record, max_result};
    redisReply *r;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!gw_cluster_keeps_records(cl) || tid_len == 0 || tid_len > GW_MAX_TID_LEN)
        return GW_ERR_NOT_FOUND;
    key(cl, k1, "rec", tid, tid_len);
    key(cl, k2, "lease", tid, tid_len);
    snprintf(secs, sizeof(secs), "%d", GW_STATE_LEASE_SECS);
    size_args(max_record, max_result);
    if ((r = cluster_eval(cl, S_TAKE, k1, k2, 4, args, err)) == NULL)
        return GW_ERR_UNAVAILABLE;
    if (r->type == REDIS_REPLY_NIL) {
        rc = GW_ERR_NOT_FOUND;
    } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 2) {
        snprintf(err, GW_ERR_LEN,
                 "the shared transaction record or its result is larger than an instance writes (altered)");
        rc = GW_ERR_INVAL;
    } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 3) {
        snprintf(err, GW_ERR_LEN, "the shared transaction's deadline has passed");
        rc = GW_ERR_TIMEOUT;
    } else if (r->type == REDIS_REPLY_INTEGER) {
        rc = GW_ERR_BUSY;
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
               reply_decode(cl, tid, tid_len, r->element[0], r->element[1], out) != 0) {
        snprintf(err, GW_ERR_LEN, "the shared transaction record does not verify (another key, or altered)");
        rc = GW_ERR_INVAL;
    } else {
        holder_of(r->element[2], out->holder);
        rc = 0;
    }
    freeReplyObject(r);
    if (rc == GW_ERR_INVAL && lease)
        gw_cluster_unlease(cl, tid, tid_len);
    return rc;
}

int gw_cluster_read_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           struct gw_txn_record *out, char *err)
{
    return fetch_record(cl, tid, tid_len, false, out, err);
}

int gw_cluster_take_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           struct gw_txn_record *out, char *err)
{
    return fetch_record(cl, tid, tid_len, true, out, err);
}

void gw_cluster_unlease(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN], err[GW_ERR_LEN];

    if (!gw_cluster_keeps_records(cl) || tid_len == 0 || tid_len > GW_MAX_TID_LEN ||
        !atomic_load(&cl->reachable))
        return;
    key(cl, k1, "rec", tid, tid_len);
    key(cl, k2, "lease", tid, tid_len);
    if (cluster_run(cl, S_UNLEASE, k1, k2, cl->owner, 0, 0, 0, err) <
        0) /* else it ends in GW_STATE_LEASE_SECS */
        cluster_warn_failed(cl, "shared_state_unlease_failed", err, NULL);
}

/* The result that went with a record (|v|, as S_DROP answered it: '' if none) into |left|: present only
 * if it verifies. */
static void left_result(const struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                        const redisReply *v, struct gw_txn_result *left)
{
    if (v->type != REDIS_REPLY_STRING || v->len == 0)
        return;
    if (cluster_result_decode(cl->mac_key, cl->mac_key_len, tid, tid_len, (const unsigned char *)v->str,
                              v->len, left) != 0)
        gw_log_kv(GW_LOG_ERROR, "txn_record_invalid", "msg",
                  "the result beside an ended shared transaction record does not verify; it is ignored",
                  NULL);
}

/*
 * Whether |r|, S_DROP's read-back answer of nothing kept, is one of the same epoch as |epoch| (the one the
 * end went out in): then that end never ran. Else Redis lost what it kept since, or cannot tell.
 */
static bool same_epoch(const redisReply *r, const char *epoch)
{
    const redisReply *e = r->elements == 3 ? r->element[2] : NULL;

    return epoch[0] != '\0' && e != NULL && e->type == REDIS_REPLY_STRING && e->len == strlen(epoch) &&
           memcmp(e->str, epoch, e->len) == 0;
}

/*
 * An end's retry, its first try's answer lost, ran the end itself (|r|, nothing kept under its id) in an
 * epoch other than |sent|, the one the first try went out in: Redis lost what the first try may have taken.
 */
static void first_try_lost(const struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           const redisReply *r, const char *sent)
{
    char h[2 * GW_MAX_TID_LEN + 1], why[GW_ERR_LEN];

    if (r->elements != 3 || same_epoch(r, sent))
        return;
    gw_hex(h, tid, tid_len);
    snprintf(why, sizeof(why),
             "the shared state (Redis at %s:%d) lost what it kept between the end's first try, its answer "
             "lost, and its retry (its epoch changed: flushed, or restarted without its data)",
             cl->address, cl->port);
    gw_log_kv(GW_LOG_ERROR, "txn_end_unread", "tid", h, "reason", why, "msg",
              "what the record's end took, its answer lost, is unknown: a certificate a call put beside the "
              "record meanwhile is neither delivered nor withdrawn (its \"issued\" record is on the instance "
              "that made the call)",
              NULL);
}

/* gw_cluster_drop_record, gw_cluster_end_record (|mode| "0", "1"; |holder|, |left| as they say), or with
 * "r" gw_cluster_reread_end of the end |id| gone out in |epoch| (|err| NULL: logged, not wanted) */
static int drop_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *holder,
                       const char *mode, unsigned long long id, const char *epoch, struct gw_txn_result *left,
                       char *err)
{
    char k1[CLUSTER_KEY_LEN], k2[CLUSTER_KEY_LEN], dk[CLUSTER_KEY_LEN], max_record[24], max_result[24], n[24],
        own[GW_ERR_LEN];
    char sent_epoch[GW_STATE_EPOCH_LEN] = "";
    const char *args[6] = {NULL, dk, mode, max_result, n, holder != NULL ? holder : ""};
    bool reread = mode[0] == 'r', unran = true, retried = false;
    uint64_t sent_ms = gw_now_ms();
    redisReply *r;
    int rc;

    if (left != NULL)
        memset(left, 0, sizeof(*left));
    if (!gw_cluster_keeps_records(cl) || tid_len == 0 || tid_len > GW_MAX_TID_LEN)
        return 0;
    key(cl, k1, "rec", tid, tid_len);
    key(cl, k2, "lease", tid, tid_len);
    snprintf(dk, sizeof(dk), "%sdeadlines", cl->prefix);
    size_args(max_record, max_result);
    args[0] = cl->owner; /* |cl| is not NULL past the check */
    err = err != NULL ? err : own;
    /* the main thread waits out no unreachable Redis (a read-back, GETs only, goes to one refusing writes) */
    if (mode[0] != '1' && !(reread && atomic_load(&cl->refusing)) &&
        gw_cluster_status(cl, err, GW_ERR_LEN) != 0)
        return GW_ERR_UNAVAILABLE;
    if (!reread)
        id = atomic_fetch_add(&cl->ends, 1) + 1; /* never 0: left->unread's none */
    snprintf(n, sizeof(n), "%llu", id);
    if (left != NULL && !reread) { /* read before the end goes out: it runs in that epoch or a later one */
        pthread_mutex_lock(&cl->lock);
        snprintf(sent_epoch, sizeof(sent_epoch), "%s", cl->epoch);
        pthread_mutex_unlock(&cl->lock);
    }
    /* one that may have run, its answer lost, is asked again under its id: it answers what it took */
    if ((r = eval_n(cl, S_DROP, k1, k2, 6, args, NULL, &unran, err)) == NULL && !unran && !reread) {
        retried = true;
        r = cluster_eval(cl, S_DROP, k1, k2, 6, args, err);
    }
    if (r == NULL) {
        if (!reread)
            cluster_warn_failed(cl, "shared_state_drop_failed", err, NULL);
        if (left != NULL && !unran && !reread) { /* what it took, if it ran, is kept under its id a while */
            left->unread = id;
            left->unread_until_ms = sent_ms + (uint64_t)GW_STATE_TOOK_SECS * 1000;
            snprintf(left->unread_epoch, sizeof(left->unread_epoch), "%s", sent_epoch);
        }
        return GW_ERR_UNAVAILABLE;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 2) {
        rc = GW_ERR_BUSY;
    } else if (reread && r->type == REDIS_REPLY_ARRAY && r->elements == 3 && !same_epoch(r, epoch)) {
        snprintf(err, GW_ERR_LEN,
                 "the shared state (Redis at %s:%d) lost what it kept since the end went out (its epoch "
                 "changed: flushed, or restarted without its data): what the end took is unknown",
                 cl->address, cl->port);
        rc = GW_ERR_IO;
    } else if (r->type == REDIS_REPLY_ARRAY && (r->elements == 2 || r->elements == 3) &&
               r->element[0]->type == REDIS_REPLY_INTEGER) {
        rc = r->element[0]->integer > 0;
        if (left != NULL)
            left_result(cl, tid, tid_len, r->element[1], left);
        if (left != NULL && retried && rc == 0)
            first_try_lost(cl, tid, tid_len, r, sent_epoch);
    } else {
        snprintf(err, GW_ERR_LEN, "the shared state (Redis at %s:%d) answered a record's end with type %d",
                 cl->address, cl->port, r->type);
        if (!reread)
            cluster_warn_failed(cl, "shared_state_drop_failed", err, NULL);
        rc = GW_ERR_UNAVAILABLE;
    }
    freeReplyObject(r);
    return rc;
}

int gw_cluster_drop_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                           const char *holder)
{
    return drop_record(cl, tid, tid_len, holder, "0", 0, NULL, NULL, NULL);
}

int gw_cluster_end_record(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len, const char *holder,
                          struct gw_txn_result *left)
{
    return drop_record(cl, tid, tid_len, holder, "1", 0, NULL, left, NULL);
}

int gw_cluster_reread_end(struct gw_cluster *cl, const unsigned char *tid, size_t tid_len,
                          unsigned long long id, const char *epoch, struct gw_txn_result *left, char *err)
{
    return drop_record(cl, tid, tid_len, NULL, "r", id, epoch, left, err);
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

bool gw_cluster_unavailable_due(struct gw_cluster *cl, char held[GW_LOG_HELD_LEN])
{
    if (cl == NULL) {
        snprintf(held, GW_LOG_HELD_LEN, "0");
        return true;
    }
    return gw_log_outage_due(&cl->outage, time(NULL), held);
}

#endif /* CMPGW_WITH_HIREDIS: cluster_none.c stands in without it */
