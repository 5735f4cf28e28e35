/*
 * Fixtures shared by the unit tests: the files of a demo PKI made by deploy/demo-pki.sh, certificates
 * made or parsed again here, configurations edited. Include after <cmocka.h>. static inline: each test
 * uses what it needs.
 */
#ifndef GW_TESTUTIL_H
#define GW_TESTUTIL_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include "base/clock.h"
#include "base/log.h"

#define TU_SLURP_MAX 65536

/* The first TU_SLURP_MAX - 1 bytes of |path|, NUL-terminated (caller frees); the test fails if absent. */
static inline char *tu_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, TU_SLURP_MAX);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, TU_SLURP_MAX - 1, f);
    fclose(f);
    if (len != NULL)
        *len = n;
    return buf;
}

/* The PEM certificate |dir|/|name|; the test fails if it cannot be read. */
static inline X509 *tu_load_cert(const char *dir, const char *name)
{
    char path[256];
    FILE *f;
    X509 *x;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "r"));
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

/* The PEM private key |dir|/|name|; the test fails if it cannot be read. */
static inline EVP_PKEY *tu_load_key(const char *dir, const char *name)
{
    char path[256];
    FILE *f;
    EVP_PKEY *k;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "r"));
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

/* A certificate for |key| named CN=|cn|, signed by |signer| as |issuer| (NULL: self-issued). */
static inline X509 *tu_make_cert(EVP_PKEY *key, EVP_PKEY *signer, X509 *issuer, const char *cn, long serial)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();

    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : n);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return x;
}

/*
 * |x| parsed again from its DER (the caller frees both): the same certificate in another object, its
 * encoding kept as an upstream's answer keeps it, not made again from the fields.
 */
static inline X509 *tu_reparsed(X509 *x)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int len = i2d_X509(x, &der);
    X509 *y;

    assert_true(len > 0);
    p = der;
    y = d2i_X509(NULL, &p, len);
    OPENSSL_free(der);
    assert_non_null(y);
    return y;
}

/* |x| as a PEM string (malloc'd). */
static inline char *tu_pem_of(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *d = NULL, *out;
    long n;

    PEM_write_bio_X509(b, x);
    n = BIO_get_mem_data(b, &d);
    out = strndup(d, (size_t)n);
    BIO_free(b);
    return out;
}

/* |json| (freed) with |piece| inserted before the first |anchor|, or after it with |after|. */
static inline char *tu_insert_at(char *json, const char *anchor, int after, const char *piece)
{
    char *at = strstr(json, anchor), *out;
    size_t head, plen = strlen(piece);

    assert_non_null(at);
    head = (size_t)(at - json) + (after ? strlen(anchor) : 0);
    assert_non_null(out = calloc(1, strlen(json) + plen + 1));
    memcpy(out, json, head);
    memcpy(out + head, piece, plen);
    memcpy(out + head + plen, json + head, strlen(json + head) + 1);
    free(json);
    return out;
}

/* |json| (taken) with its one |find| replaced by |repl|; the test fails if |find| is not there once. */
static inline char *tu_replace(char *json, const char *find, const char *repl)
{
    char *at = strstr(json, find), *out;
    size_t head, flen = strlen(find), rlen = strlen(repl);

    assert_non_null(at);
    assert_null(strstr(at + flen, find));
    head = (size_t)(at - json);
    assert_non_null(out = calloc(1, strlen(json) - flen + rlen + 1));
    memcpy(out, json, head);
    memcpy(out + head, repl, rlen);
    memcpy(out + head + rlen, at + flen, strlen(at + flen) + 1);
    free(json);
    return out;
}

/*
 * The demo configuration |json| (taken) with no bounds on the names its role "default" issues. The
 * demo bounds them as a deployment should (its "authorization", DNS SANs only); the tests ask for
 * whatever subjects and SANs they are about, and bound roles of their own. Its local issuer keeps
 * no store either: the tests that revoke or look up by serial give it one of their own. Fails the
 * test where deploy/demo-pki.sh writes the role or the issuer otherwise.
 */
static inline char *tu_widen_demo(char *json)
{
    json = tu_replace(json, "\"chain\": \"ca.pem\", \"store\": \"store\" }", "\"chain\": \"ca.pem\" }");
    json = tu_replace(json, "\"allowed_san_types\": [\"dns\"],",
                      "\"allowed_san_types\": [\"dns\", \"ip\", \"uri\"],");
    return tu_replace(json,
                      "\"implicit_confirm\": true,\n"
                      "      \"authorization\": {\n"
                      "        \"allowed_subjects\": [\"/O=cmpgw demo/CN=*\"],\n"
                      "        \"allowed_common_names\": [\"device*\"],\n"
                      "        \"allowed_dns_names\": [\"*.demo.example\"]\n"
                      "      }\n",
                      "\"implicit_confirm\": true\n");
}

/*
 * Writes that would take a file past |bytes| fail with EFBIG from now on (RLIMIT_FSIZE, SIGXFSZ
 * ignored), until tu_uncap_files: a full disk, for files of the process's own, unprivileged.
 */
static struct rlimit tu_fsize_was;

static inline void tu_cap_files(rlim_t bytes)
{
    struct rlimit cap;

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &tu_fsize_was), 0);
    cap = (struct rlimit){.rlim_cur = bytes, .rlim_max = tu_fsize_was.rlim_max};
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &cap), 0);
}

static inline void tu_uncap_files(void)
{
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &tu_fsize_was), 0);
    signal(SIGXFSZ, SIG_DFL);
}

/*
 * Takes every thread-specific key left (pthread_key_create fails with EAGAIN from now on: a system
 * condition, as the process's own limit) until tu_keys_back gives them back.
 */
static pthread_key_t tu_keys[PTHREAD_KEYS_MAX];
static size_t tu_n_keys;

static inline void tu_keys_exhaust(void)
{
    while (tu_n_keys < PTHREAD_KEYS_MAX && pthread_key_create(&tu_keys[tu_n_keys], NULL) == 0)
        tu_n_keys++;
    assert_true(tu_n_keys < PTHREAD_KEYS_MAX);
}

static inline void tu_keys_back(void)
{
    while (tu_n_keys > 0)
        assert_int_equal(pthread_key_delete(tu_keys[--tu_n_keys]), 0);
}

/*
 * Takes every descriptor left under a soft RLIMIT_NOFILE of TU_FDS_CAP (open fails with EMFILE from now on:
 * descriptors run out, the process's own limit) until tu_fds_back gives them and the limit back.
 */
#define TU_FDS_CAP 256
static int tu_fds[TU_FDS_CAP];
static size_t tu_n_fds;
static struct rlimit tu_nofile_was;

static inline void tu_fds_exhaust(void)
{
    struct rlimit cap;
    int fd;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &tu_nofile_was), 0);
    cap = (struct rlimit){.rlim_cur = TU_FDS_CAP, .rlim_max = tu_nofile_was.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &cap), 0);
    while (tu_n_fds < TU_FDS_CAP && (fd = dup(STDERR_FILENO)) >= 0)
        tu_fds[tu_n_fds++] = fd;
    assert_int_equal(errno, EMFILE);
}

static inline void tu_fds_back(void)
{
    while (tu_n_fds > 0)
        close(tu_fds[--tu_n_fds]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tu_nofile_was), 0);
}

/* The gw_now_ms instant |secs| seconds from now, for tu_wait_until: a bound the wall clock cannot move. */
static inline struct timespec tu_deadline(int secs)
{
    return gw_timespec_ms(gw_now_ms() + (uint64_t)secs * 1000);
}

/* Whether gw_now_ms is past |until| (a tu_deadline). */
static inline bool tu_past(const struct timespec *until)
{
    return gw_now_ms() >= (uint64_t)until->tv_sec * 1000 + (uint64_t)until->tv_nsec / 1000000;
}

/*
 * pthread_cond_timedwait of |cond| until |until| (a tu_deadline) on the monotonic clock, whichever clock
 * |cond| was made with (a PTHREAD_COND_INITIALIZER one too): 0, or ETIMEDOUT.
 */
static inline int tu_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, const struct timespec *until)
{
    return pthread_cond_clockwait(cond, lock, CLOCK_MONOTONIC, until);
}

/*
 * Ends the test run at once with |what|, where a bound ran out while the code under test still uses the
 * test's memory (a call in flight): no later test may run beside it. On stdout, as cmocka's own lines:
 * stderr may be a log the test reads.
 */
static inline void tu_end_run(const char *what)
{
    printf("[  FAILED  ] %s: the run ends here\n", what);
    fflush(stdout);
    _exit(1);
}

/* A blocking call that tu_run_within runs on a thread of its own. */
struct tu_call {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void (*fn)(void *);
    void *arg;
    bool done;
};

static inline void *tu_call_main(void *arg)
{
    struct tu_call *c = arg;

    c->fn(c->arg);
    pthread_mutex_lock(&c->lock);
    c->done = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/*
 * |fn|(|arg|), a blocking call into the code under test whose own bound (an upstream's timeout) is part of
 * what is tested, waited for at most |secs| by the test itself; past that, tu_end_run with |what|. |fn|
 * asserts nothing: cmocka's failures jump on the test's own thread only.
 */
static inline void tu_run_within(void (*fn)(void *), void *arg, int secs, const char *what)
{
    struct tu_call c = {.fn = fn, .arg = arg};
    struct timespec until = tu_deadline(secs);
    pthread_t t;
    bool done;

    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    assert_int_equal(pthread_create(&t, NULL, tu_call_main, &c), 0);
    pthread_mutex_lock(&c.lock);
    while (!c.done && tu_wait_until(&c.cond, &c.lock, &until) == 0)
        ;
    done = c.done;
    pthread_mutex_unlock(&c.lock);
    if (!done)
        tu_end_run(what);
    pthread_join(t, NULL);
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
}

/*
 * An end its caller lowers while a call under test runs (gw_upstream_revoke_by's, a drain begun meanwhile):
 * tu_lowered_main, on a thread of its own, sets |end| |after_ms| after it starts to |to_ms| from then.
 */
struct tu_lowered {
    _Atomic uint64_t end;
    uint64_t after_ms, to_ms;
};

static inline void *tu_lowered_main(void *arg)
{
    struct tu_lowered *l = arg;

    usleep((useconds_t)l->after_ms * 1000);
    atomic_store(&l->end, gw_now_ms() + l->to_ms);
    return NULL;
}

/*
 * tu_log_capture sends stderr, the log's, to a file of its own and the log to |level|, until a release puts
 * both back, the level at |after| (the one the test runs at otherwise): tu_log_release_into copies what was
 * said meanwhile into |logged| (|cap| bytes, NUL-terminated); tu_log_release_shown, for a teardown, shows the
 * end of it on stderr when a test failed before it released (its cmocka message went to the file too) and
 * does nothing once released. tu_log_peek copies what was said so far, capturing on: 0, or -1 when the file
 * cannot be read. One that captured nothing yet has fd and saved -1.
 */
struct tu_log {
    int fd, saved;
    enum gw_log_level after;
};
static inline void tu_log_capture(struct tu_log *l, enum gw_log_level level, enum gw_log_level after)
{
    char path[] = "/tmp/cmpgw-tu-log-XXXXXX";

    fflush(stderr);
    l->after = after;
    assert_true((l->fd = mkstemp(path)) >= 0);
    (void)unlink(path);
    assert_true((l->saved = dup(STDERR_FILENO)) >= 0);
    assert_int_equal(dup2(l->fd, STDERR_FILENO), STDERR_FILENO);
    gw_log_set_level(level);
}
/* stderr and the log's level back; the file stays open. */
static inline void tu_log_restore(struct tu_log *l)
{
    fflush(stderr);
    gw_log_set_level(l->after);
    (void)dup2(l->saved, STDERR_FILENO);
    close(l->saved);
    l->saved = -1;
}
static inline int tu_log_peek(struct tu_log *l, char *logged, size_t cap)
{
    ssize_t n;

    fflush(stderr);
    n = pread(l->fd, logged, cap - 1, 0);
    logged[n > 0 ? (size_t)n : 0] = '\0';
    return n < 0 ? -1 : 0;
}
static inline void tu_log_release_into(struct tu_log *l, char *logged, size_t cap)
{
    ssize_t n;

    tu_log_restore(l);
    n = pread(l->fd, logged, cap - 1, 0);
    close(l->fd);
    l->fd = -1;
    logged[n > 0 ? (size_t)n : 0] = '\0';
    assert_true(n >= 0);
}
static inline void tu_log_release_shown(struct tu_log *l)
{
    char end[4096];
    off_t size;
    ssize_t n;

    if (l->saved < 0)
        return;
    tu_log_restore(l);
    size = lseek(l->fd, 0, SEEK_END);
    n = pread(l->fd, end, sizeof(end) - 1, size > (off_t)sizeof(end) - 1 ? size - (off_t)sizeof(end) + 1 : 0);
    close(l->fd);
    l->fd = -1;
    if (n >= 0) {
        end[n] = '\0';
        fprintf(stderr, "the end of the log while the test failed:\n%s\n", end);
    }
}

#endif
