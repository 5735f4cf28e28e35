/*
 * cmpgw: the command line. `cmpgw -c FILE` runs the gateway, `cmpgw check -c FILE` validates a
 * configuration, `cmpgw inventory` and `cmpgw report` read what the gateway recorded. Signals are
 * taken synchronously by the main thread (sigtimedwait), which also ticks the transaction expiry
 * once a second; every other thread runs with them blocked.
 */
#include <errno.h>
#include <getopt.h>
#include <unistd.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <sys/auxv.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <h2o/version.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "base/clock.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "gateway/cmp/audit.h"
#include "gateway/cmp/engine.h"
#include "gateway/cmp/revoked.h"
#include "gateway/config.h"
#include "gateway/gen.h"
#include "gateway/handover.h"
#include "gateway/inventory.h"
#include "gateway/listener.h"
#include "gateway/notify.h"
#include "gateway/privileges.h"
#include "gateway/probe.h"
#include "gateway/report.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/user.h"
#include "upstream/store.h"
#include "upstream/upstream.h"

/* OpenSSL 3.0.22: the first 3.0 release whose CMP server survives malformed requests. */
#define GW_MIN_OPENSSL 0x30000160L

/*
 * The exit statuses: 0, 1 (EXIT_FAILURE: a start that failed for what another try may mend, a port in
 * use, Redis unreachable, out of memory), 2 (usage), and EX_CONFIG (78, sysexits.h) for a configuration
 * refused, at a start or by `cmpgw check` (which, as `cmpgw inventory` and `cmpgw report`, exits for a load
 * that failed with the start's status for its class): what no retry mends, so the unit's
 * RestartPreventExitStatus= stops systemd from starting it again every RestartSec, each try spending one
 * of a token's PIN tries.
 */
enum { EXIT_USAGE = 2 };

/* The exit status of a start or a command that failed with |class| (the configuration load's, struct
   gw_conf_ctx's |failed|; an upstream's; the engine's; the change of user's): EX_CONFIG for the configuration
   refused (GW_ERR_INVAL), EXIT_FAILURE for what another try may mend (GW_ERR_UNAVAILABLE, GW_ERR_NOMEM). */
static int exit_status(int class)
{
    return class == GW_ERR_INVAL ? EX_CONFIG : EXIT_FAILURE;
}

/* long options without a short one */
enum { OPT_SINCE = 256, OPT_ROLE, OPT_JSON, OPT_AUDIT };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cmpgw -c FILE           run the gateway with the configuration in FILE\n"
            "       cmpgw check -c FILE     validate FILE and exit (0: valid; else a start's status)\n"
            "       cmpgw inventory -c FILE [--upstream NAME]\n"
            "                               list the certificates the local issuers recorded in their\n"
            "                               \"store\" (all of them, or NAME's), tab-separated, by notBefore\n"
            "       cmpgw report -c FILE [--since TIME] [--role ROLE] [--json] [--audit LOG]\n"
            "                               sum up the audit log per role and upstream: requests,\n"
            "                               issued, revoked, refused by failInfo, shadow checks, and\n"
            "                               where a migrating role's devices stand (docs/migration.md)\n"
            "       cmpgw --help | --version\n"
            "\n"
            "options:\n"
            "  -c, --config FILE   the JSON configuration (docs/configuration.md)\n"
            "  -h, --help          print this help and exit\n"
            "  -V, --version       print the versions of cmpgw, OpenSSL and h2o and exit\n"
            "  -u, --upstream NAME inventory: only the local upstream NAME\n"
            "      --since TIME    report: records from TIME on (UTC, YYYY-MM-DD[THH[:MM[:SS]]][Z])\n"
            "      --role ROLE     report: only ROLE\n"
            "      --json          report: as one JSON object\n"
            "      --audit LOG     report: read LOG (e.g. a rotated file) instead of the configured log\n"
            "\n"
            "signals: SIGINT, SIGTERM stop gracefully; SIGHUP reloads the configuration (kept when\n"
            "         the new one is invalid); SIGUSR1 reopens the audit log (rotation)\n");
}

static void version(void)
{
    printf("cmpgw %s\n%s (built with %s)\nh2o %s\n", CMPGW_VERSION, OpenSSL_version(OPENSSL_VERSION),
           OPENSSL_VERSION_TEXT, H2O_VERSION);
}

/* Refuses a libssl with the CMP server crash (CVE-2026-63076) before anything else runs. */
static int check_openssl(void)
{
    if (OpenSSL_version_num() >= (unsigned long)GW_MIN_OPENSSL)
        return 0;
    fprintf(stderr,
            "cmpgw: found %s; cmpgw needs OpenSSL 3.0.22 or later: older versions crash in the CMP server "
            "on crafted requests (CVE-2026-63076, fixed in 3.0.22)\n",
            OpenSSL_version(OPENSSL_VERSION));
    return -1;
}

/*
 * Runs the process again, the same binary with the same arguments, with LD_BIND_NOW set, unless it is
 * set: every symbol of every library, libc's included, is then bound at start. Bound lazily, a symbol's
 * first call runs the dynamic linker's trampoline, which saves the vector registers on the calling
 * thread's stack and leaves them there, below the stack pointer, as no wipe sees them. On a loop thread
 * they may hold the admin bearer token a string function just went over: libc's own first call of
 * _dl_allocate_tls_init, when a reload's thread is created on a stack an earlier one left, did that.
 * The binary itself is linked -z now; the libraries it loads are not all so. Without /proc (a chroot)
 * the gateway runs on as it is, and says so. So too when the dynamic linker was run as the program
 * (ld.so cmpgw ...: no interpreter was loaded, AT_BASE is 0): /proc/self/exe is the linker then, which
 * would take the gateway's first argument for the program to run.
 */
static void bind_symbols_now(char **argv)
{
    const char *set = getenv("LD_BIND_NOW"), *why;

    if (set != NULL && *set != '\0')
        return;
    if (getauxval(AT_BASE) == 0) {
        why = "run by the dynamic linker: set LD_BIND_NOW=1 first";
    } else {
        if (setenv("LD_BIND_NOW", "1", 1) == 0)
            execv("/proc/self/exe", argv);
        why = strerror(errno);
        unsetenv("LD_BIND_NOW");
    }
    fprintf(stderr,
            "cmpgw: cannot run again with every symbol bound at start (%s): an admin token may stay in "
            "a thread's stack (docs/security.md, \"Secrets in memory\")\n",
            why);
}

/* A file the gateway writes (|what| it is), and its check of what a start would refuse of it. */
struct written_file {
    const char *key, *what;
    const char *file;
    int (*check)(const char *file, uid_t owner, char *err);
    bool dir_made_at_start; /* its directory may be the service manager's, made as the service starts */
};

/* Whether the directory of |file| is not there at all. */
static bool dir_absent(const char *file)
{
    char *dir = gw_conf_dir_of(file);
    struct stat st;
    bool absent = dir != NULL && lstat(dir, &st) != 0 && errno == ENOENT;

    free(dir);
    return absent;
}

/* |key|'s check (|rc|, with |err|) and which uid it judged by, for check_written_files: 0, or the class of
   |rc| as the start takes it (gw_err_file_class: out of memory or descriptors run out are not the file's). */
static int judged(const char *path, const struct gw_config *cfg, const char *key, const char *what, uid_t uid,
                  int rc, const char *err)
{
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", path, err);
    fprintf(rc != 0 ? stderr : stdout, "%s: %s judged as the %s of uid %ld (%s%s)\n", path, key, what,
            (long)uid, cfg->user != NULL ? "user " : "the user running this check",
            cfg->user != NULL ? cfg->user : "");
    return rc != 0 ? gw_err_file_class(rc) : 0;
}

/*
 * What the gateway writes, which no load opens (cmp.revoked_file, audit.file, handover_socket, a
 * local issuer's store), as the start judges it: one others may write, plant or rename is refused.
 * The owner is judged against the configured "user", whom the gateway runs as when started as root
 * (its service), whoever runs the check; without one, against the user running it. The output says
 * which, for each. 0, or the class of what failed: the lookup of that user's, as a start's
 * (gw_user_lookup_class: NSS not answering, or saying it has no such user, is not the file's), else
 * that of the check that failed (judged).
 */
static int check_written_files(const char *path, const struct gw_config *cfg)
{
    const struct written_file files[] = {
        {"cmp.revoked_file", "file", cfg->cmp.revoked_file, cmp_revoked_file_check, false},
        {"audit.file", "file", cfg->audit.file, gw_audit_file_check, false},
        /* its directory may be made as the service starts (tmpfiles.d, RuntimeDirectory=): judged then */
        {"handover_socket", "socket", cfg->handover_socket, gw_handover_check, true},
    };
    char err[GW_ERR_LEN], key[GW_CONF_PATH_LEN];
    uid_t uid = geteuid();
    int rc;

    if (cfg->user != NULL && (rc = gw_user_ids(cfg->user, &uid, NULL, err)) != 0) {
        fprintf(stderr, "%s: $.user: %s\n", path, err);
        return gw_user_lookup_class(rc);
    }
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (files[i].file != NULL && files[i].dir_made_at_start && dir_absent(files[i].file)) {
            printf("%s: %s: its directory is not there yet; the gateway judges it when it starts\n", path,
                   files[i].key);
            continue;
        }
        if (files[i].file != NULL && (rc = judged(path, cfg, files[i].key, files[i].what, uid,
                                                  files[i].check(files[i].file, uid, err), err)) != 0)
            return rc;
    }
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        if (cfg->upstreams[i].store_dir == NULL)
            continue;
        gw_conf_bprintf(key, sizeof(key), "upstreams.%s.store", cfg->upstreams[i].name);
        if ((rc = judged(path, cfg, key, "directory", uid,
                         gw_store_check(key, cfg->upstreams[i].store_dir, uid, err), err)) != 0)
            return rc;
    }
    return 0;
}

/* Validates |path| like a start would, prints "FILE: OK" or the error; returns the exit code, a start's for
   what failed: EX_CONFIG for a configuration refused, EXIT_FAILURE where the load failed for what another try
   may mend (exit_status of its class) or its own lookup of the user cannot be made. */
static int cmd_check(const char *path)
{
    char err[GW_ERR_LEN];
    struct gw_config *cfg;
    const char *why;
    int rc = EX_CONFIG, failed;

    if ((cfg = gw_config_reload(path, NULL, &failed, err)) == NULL) {
        fprintf(stderr, "%s\n", err);
        return exit_status(failed);
    }
    /* run by root as the service would be started: the start would stop */
    if ((why = gw_root_refusal(cfg)) != NULL) {
        fprintf(stderr, "%s: %s\n", path, why);
        goto out;
    }
    /* a route that asks for more than its upstream can do fails here, not on the first request */
    for (size_t i = 0; i < cfg->n_roles; i++) {
        if (gw_upstream_check_role(cfg->roles[i].upstream, &cfg->roles[i], err) != 0) {
            fprintf(stderr, "%s: %s\n", path, err);
            goto out;
        }
    }
    /* libssl's security level, which the load does not apply, refuses a listener's certificate at start */
    if ((failed = gw_server_check_tls(cfg, err)) != 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        rc = exit_status(failed);
        goto out;
    }
    if ((failed = check_written_files(path, cfg)) != 0) {
        rc = exit_status(failed);
        goto out;
    }
    gw_show_fds(path, cfg);
    /* files read or written after start, as the user the gateway will run as */
    if (gw_check_as_user(cfg) != 0) {
        fprintf(stderr, "%s: not usable as user %s (see the log above)\n", path, cfg->user);
        goto out;
    }
    printf("%s: OK\n", path);
    rc = EXIT_SUCCESS;
out:
    gw_config_free(cfg);
    return rc;
}

/* The configuration at |path| for `cmpgw report` and `cmpgw inventory`, loaded as a start loads it; NULL with
   the error printed and *|status| the exit status of its class, as a start's. */
static struct gw_config *command_load(const char *path, int *status)
{
    char err[GW_ERR_LEN];
    struct gw_config *cfg;
    int failed;

    if ((cfg = gw_config_reload(path, NULL, &failed, err)) == NULL) {
        fprintf(stderr, "%s\n", err);
        *status = exit_status(failed);
    }
    return cfg;
}

/* ---- cmpgw report ---- */

/* Prints what the audit log says; the exit code: a start's for a configuration it cannot load
   (command_load), EXIT_FAILURE for a record it cannot read. */
static int cmd_report(const char *path, const struct gw_report_opts *o)
{
    int rc;
    struct gw_config *cfg = command_load(path, &rc);

    if (cfg == NULL)
        return rc;
    rc = gw_report_run(cfg, o, stdout);
    gw_config_free(cfg);
    if (rc == GW_REPORT_UNKNOWN_ROLE) /* a wrong argument, as a --since that is no time */
        return EXIT_USAGE;
    return rc == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- cmpgw inventory ---- */

/* Lists the local issuers' stores; the exit code as cmd_report's. */
static int cmd_inventory(const char *path, const char *name)
{
    int rc;
    struct gw_config *cfg = command_load(path, &rc);

    if (cfg == NULL)
        return rc;
    rc = gw_inventory_run(cfg, name);
    gw_config_free(cfg);
    if (rc == GW_INVENTORY_UNKNOWN_UPSTREAM) /* a wrong argument, as report's --role of no role */
        return EXIT_USAGE;
    return rc == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
    /* before any thread exists (curl, h2o, workers), so that every thread inherits the mask */
    if (pthread_sigmask(SIG_BLOCK, set, NULL) != 0)
        return -1;
    /* a peer closing its socket mid-write must not kill the process */
    signal(SIGPIPE, SIG_IGN);
    /* nor a file size limit (LimitFSIZE=): the write fails (EFBIG), here as on the workers (which
       block every signal), and an audit record's stops the issuance as a full disk does */
    signal(SIGXFSZ, SIG_IGN);
    return 0;
}

/* The listeners as "addr:port,..." for the started line ("[::1]:8443" for IPv6). */
static void listeners_str(const struct gw_config *cfg, char *buf, size_t cap)
{
    size_t i, len = 0;
    int n;

    buf[0] = '\0';
    for (i = 0; i < cfg->n_listeners && len < cap; i++) {
        const struct gw_listener_conf *l = &cfg->listeners[i];
        bool v6 = strchr(l->address, ':') != NULL;
        n = snprintf(buf + len, cap - len, "%s%s%s%s:%u", i > 0 ? "," : "", v6 ? "[" : "", l->address,
                     v6 ? "]" : "", (unsigned)l->port);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

/* The length of the key and of the value of restart_only's HMAC-SHA256. */
#define RESTART_MAC_LEN 32

/*
 * What runs of the settings a reload reads but only a restart applies: those the process started
 * with, however many reloads came since. The names are copies, for the warning to say what runs.
 * The shared state, whose Redis password and MAC key no copy may outlive the configuration they came
 * in, is kept as an HMAC-SHA256 under a key of the process's own (struct runner): unlike a plain
 * digest, it cannot be tested against a guessed password offline, from a core file or from memory a
 * flaw sends out.
 */
struct restart_only {
    uint32_t workers, queue_depth, loop_threads;
    struct gw_guard_conf admission;
    uint32_t max_transactions, max_transactions_per_identity, max_recent_per_identity;
    uint32_t message_time_window, transaction_ttl;
    char *user, *group, *revoked_file, *handover_socket; /* copies; NULL where unset */
    unsigned char state[RESTART_MAC_LEN];
    bool whole; /* every copy and the MAC were made: else a change to them goes unmentioned */
};

/* The running gateway as main sees it: its configuration generations, server and reload metrics. */
struct runner {
    const char *path;
    pthread_mutex_t lock; /* one reload at a time; |closed| once shutdown began */
    bool closed;
    pthread_t hup;         /* the thread of SIGHUP's reload (hup_start) */
    bool hup_started;      /* |hup| runs, or ended and is not joined yet (main thread) */
    bool hup_again;        /* a SIGHUP came while |hup| ran: reload once more when it ends (main thread) */
    bool hup_retrying;     /* |hup| could not start: hup_tick tries again, said once (main thread) */
    atomic_bool hup_ended; /* set by |hup| as it ends */
    _Atomic uint64_t end;  /* 0, then when the gateway began to stop (gw_now_ms): ends a reload's calls */
    struct gw_gens *gens;
    struct gw_server *server;
    struct gw_handover *handover; /* "handover_socket": the sockets to a successor */
    struct gw_metric *generation, *reloads, *reload_ok, *reload_time, *loaded;
    struct restart_only running;              /* what a reload leaves as it found it */
    unsigned char state_key[RESTART_MAC_LEN]; /* restart_only's HMAC key: drawn at start, wiped at exit */
};

/* SIGUSR1: the audit log was rotated (logrotate's postrotate, docs/audit.md). A failure is logged by the
 * engine and the old file stays in use, so nothing stops being audited. */
static void reopen_audit(struct runner *r)
{
    struct gw_gen *g = gw_gens_acquire(r->gens);

    if (gw_cmp_engine_reopen_audit(g->engine) != 0)
        gw_log(GW_LOG_ERROR, "audit_reopen",
               "SIGUSR1: the audit log could not be reopened; still writing to "
               "the old file");
    gw_gen_drop(g);
}

/* Feeds |len| bytes at |p| to |mac| after their length, so that no two sequences of fields MAC alike. */
static bool feed(EVP_MAC_CTX *mac, const void *p, size_t len)
{
    uint64_t n = len;

    return EVP_MAC_update(mac, (const unsigned char *)&n, sizeof(n)) == 1 &&
           (len == 0 || EVP_MAC_update(mac, p, len) == 1);
}

/* Feeds |s| to |mac|, NULL apart from "". */
static bool feed_str(EVP_MAC_CTX *mac, const char *s)
{
    unsigned char set = s != NULL;

    return EVP_MAC_update(mac, &set, 1) == 1 && feed(mac, s, s != NULL ? strlen(s) : 0);
}

/* The shared state's connection and keys as an HMAC-SHA256 under |key| into |out|: false if it failed. */
static bool state_mac(const struct gw_state_conf *st, const unsigned char *key, unsigned char *out)
{
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *m = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t len = 0;
    bool ok = m != NULL && EVP_MAC_init(m, key, RESTART_MAC_LEN, params) == 1 &&
              feed(m, &st->backend, sizeof(st->backend)) && feed(m, &st->port, sizeof(st->port)) &&
              feed(m, &st->timeout_ms, sizeof(st->timeout_ms)) && feed_str(m, st->address) &&
              feed_str(m, st->username) && feed_str(m, st->key_prefix) &&
              feed(m, st->password, st->password_len) && feed(m, st->mac_key, st->mac_key_len) &&
              EVP_MAC_final(m, out, &len, RESTART_MAC_LEN) == 1 && len == RESTART_MAC_LEN;

    EVP_MAC_CTX_free(m);
    EVP_MAC_free(hmac);
    return ok;
}

/* A copy of |s| into |*out| (NULL stays NULL): false without memory. */
static bool copy_str(const char *s, char **out)
{
    *out = s != NULL ? strdup(s) : NULL;
    return s == NULL || *out != NULL;
}

static void restart_only_cleanup(struct restart_only *ro)
{
    free(ro->user);
    free(ro->group);
    free(ro->revoked_file);
    free(ro->handover_socket);
    OPENSSL_cleanse(ro, sizeof(*ro));
}

/* |c|'s restart-only settings into |out| (restart_only_cleanup frees them), the state MACed under |key|. */
static void restart_only_of(const struct gw_config *c, const unsigned char *key, struct restart_only *out)
{
    *out = (struct restart_only){
        .workers = c->workers,
        .queue_depth = c->queue_depth,
        .loop_threads = c->loop_threads,
        .admission = c->limits.admission,
        .max_transactions = c->cmp.max_transactions,
        .max_transactions_per_identity = c->cmp.max_transactions_per_identity,
        .max_recent_per_identity = c->cmp.max_recent_per_identity,
        .message_time_window = c->cmp.message_time_window,
        .transaction_ttl = c->cmp.transaction_ttl,
    };
    out->whole = copy_str(c->user, &out->user) && copy_str(c->group, &out->group) &&
                 copy_str(c->cmp.revoked_file, &out->revoked_file) &&
                 copy_str(c->handover_socket, &out->handover_socket) &&
                 state_mac(&c->cmp.state, key, out->state);
    if (!out->whole)
        gw_log(GW_LOG_WARN, "reload", "out of memory: a change to a restart-only setting may go unmentioned");
}

/* Whether the strings |a| and |b| (either NULL) differ. */
static bool differ(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* The admission limits that size the guard's table, so that only a restart applies them. */
static bool same_sizing(const struct gw_guard_conf *a, const struct gw_guard_conf *b)
{
    return a->max_connections == b->max_connections &&
           a->max_connections_per_address == b->max_connections_per_address &&
           a->max_requests_per_address == b->max_requests_per_address && a->ipv6_prefix == b->ipv6_prefix;
}

/*
 * What a reload reads but only a restart applies, where |b| (loaded from |path|) differs from |a|, what
 * runs: said at each reload until a restart applies it or a reload puts it back, so nobody waits for it;
 * a name with the value that runs.
 */
static void warn_restart_only(const struct restart_only *a, const struct restart_only *b, const char *path)
{
    bool whole = a->whole && b->whole;
    char keys[1024] = "", was[256], shown[GW_ERR_LEN];
    size_t len = 0;
    const struct {
        const char *name;
        bool changed, named; /* |named|: a name, whose running value |was| the warning says */
        const char *was;
    } k[] = {
        {"workers", a->workers != b->workers, false, NULL},
        {"queue_depth", a->queue_depth != b->queue_depth, false, NULL},
        {"loop_threads", a->loop_threads != b->loop_threads, false, NULL},
        {"user", whole && differ(a->user, b->user), true, a->user},
        {"group", whole && differ(a->group, b->group), true, a->group},
        {"limits (but for the failed authentications' budget)", !same_sizing(&a->admission, &b->admission),
         false, NULL},
        {"cmp.max_transactions",
         a->max_transactions != b->max_transactions ||
             a->max_transactions_per_identity != b->max_transactions_per_identity,
         false, NULL},
        {"cmp.max_recent_per_identity", a->max_recent_per_identity != b->max_recent_per_identity, false,
         NULL},
        {"the replay window (cmp.message_time_window, cmp.transaction_ttl)",
         a->message_time_window != b->message_time_window || a->transaction_ttl != b->transaction_ttl, false,
         NULL},
        {"cmp.state", whole && CRYPTO_memcmp(a->state, b->state, sizeof(a->state)) != 0, false, NULL},
        {"cmp.revoked_file", whole && differ(a->revoked_file, b->revoked_file), true, a->revoked_file},
        /* bound (or taken over) at start only: a reload neither binds a new one nor stops the old */
        {"handover_socket", whole && differ(a->handover_socket, b->handover_socket), true,
         a->handover_socket},
    };

    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
        int n;

        if (!k[i].changed)
            continue;
        was[0] = '\0';
        if (k[i].named && k[i].was != NULL)
            snprintf(was, sizeof(was), " (still \"%.200s\")",
                     gw_conf_show_file(k[i].was, shown, sizeof(shown)));
        else if (k[i].named)
            snprintf(was, sizeof(was), " (still unset)");
        n = snprintf(keys + len, sizeof(keys) - len, "%s%s%s", len > 0 ? ", " : "", k[i].name, was);
        if (n < 0 || (size_t)n >= sizeof(keys) - len)
            break;
        len += (size_t)n;
    }
    if (len > 0)
        gw_log(GW_LOG_WARN, "reload", "%s: changed but applied only at the next restart: %s", path, keys);
}

/* After a reload, applied or not: the metrics, the log and the service manager. */
static void reload_done(struct runner *r, const struct gw_gen *g, int rc, const char *err)
{
    gw_metric_add(r->reloads, (const char *const[]){rc == 0 ? "applied" : "refused"}, 1);
    gw_metric_set(r->reload_ok, NULL, rc == 0);
    gw_metric_set(r->reload_time, NULL, (double)time(NULL));
    if (rc == 0) {
        gw_metric_set(r->generation, NULL, (double)g->id);
        gw_metric_set(r->loaded, NULL, (double)g->loaded);
        gw_log_kv(GW_LOG_INFO, "reloaded", "config", r->path, "generation", err, NULL);
    } else {
        gw_log_kv(GW_LOG_ERROR, "reload_refused", "config", r->path, "error", err, "msg",
                  "the running configuration stays in use", NULL);
    }
    if (atomic_load(&r->end) == 0) /* else STOPPING=1 was said: no READY=1 after it */
        gw_notify_ready(rc == 0 ? "serving (reloaded)" : "serving (last reload refused)");
}

/* GW_ERR_UNAVAILABLE once the gateway began to stop: a configuration loaded meanwhile (its upstreams'
 * calls cut short by the stop) is not swapped in, for the drain serves the running one to its end. */
static int stopping(struct runner *r, char *err)
{
    if (atomic_load(&r->end) == 0)
        return 0;
    snprintf(err, GW_ERR_LEN, "the gateway is stopping");
    return GW_ERR_UNAVAILABLE;
}

/* The gateway stops: a reload in progress ends its upstream calls and is not applied (main thread). */
static void end_reloads(struct runner *r)
{
    uint64_t none = 0;

    (void)atomic_compare_exchange_strong(&r->end, &none, gw_now_ms());
}

/*
 * SIGHUP and POST /reload (docs/operations.md, "Reload"): the whole file is loaded and everything
 * built from it (upstreams, engine, TLS contexts, prober) beside the running configuration; only
 * then is it swapped in. On any error the running one stays. 0 with the new generation's number
 * in |err|, or an error with |err|. Any thread; one reload at a time.
 */
static int reload(void *arg, char *err)
{
    struct runner *r = arg;
    struct gw_gen *cur, *next = NULL;
    struct restart_only loaded;
    int failed; /* a reload refused keeps the running configuration, whatever its class */
    /* the loop threads that run bind a reload's new listeners, and the hand-over socket served sends them */
    const struct gw_config_running run = {.loop_threads = r->running.loop_threads,
                                          .handover = r->running.handover_socket != NULL};
    int rc = GW_ERR_UNAVAILABLE;

    if (pthread_mutex_trylock(&r->lock) != 0) {
        gw_log(GW_LOG_INFO, "reload_queued", "a reload is in progress: this one begins once it has ended");
        pthread_mutex_lock(&r->lock);
    }
    if (r->closed || atomic_load(&r->end) != 0) {
        snprintf(err, GW_ERR_LEN, "the gateway is stopping");
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    gw_notify_reloading();
    gw_log_kv(GW_LOG_INFO, "reloading", "config", r->path, NULL);
    cur = gw_gens_acquire(r->gens);
    if ((next = gw_gen_load(r->path, cur, &run, &r->end, &failed, err)) == NULL ||
        (rc = gw_server_prepare(r->server, next, err)) != 0 ||
        (next->prober = gw_prober_start(next->cfg, next->ups, next->engine, err)) == NULL ||
        (rc = stopping(r, err)) != 0) {
        rc = rc != 0 ? rc : GW_ERR_INVAL;
        gw_gen_drop(cur);
        gw_gen_free(next);
        reload_done(r, NULL, rc, err);
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    restart_only_of(next->cfg, r->state_key, &loaded);
    warn_restart_only(&r->running, &loaded, next->cfg->path);
    restart_only_cleanup(&loaded);
    gw_gen_drop(cur);
    gw_log_set_level(next->cfg->log_level);
    gw_fit_fd_limit(next->cfg);
    gw_gens_swap(r->gens, next);
    if (gw_server_apply(r->server, next) != 0)
        gw_log(GW_LOG_WARN, "reload", "a loop thread was slow to take up the new configuration");
    snprintf(err, GW_ERR_LEN, "%lu", next->id);
    reload_done(r, next, 0, err);
    snprintf(err, GW_ERR_LEN, "reloaded: configuration generation %lu from %s", next->id, r->path);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* SIGHUP's reload, on a thread of its own (every signal blocked, as in the main thread that starts it). */
static void *hup_main(void *arg)
{
    struct runner *r = arg;
    char err[GW_ERR_LEN];

    (void)reload(r, err);
    atomic_store(&r->hup_ended, true);
    return NULL;
}

/* Joins SIGHUP's reload thread once it ended, or, with |wait|, when it ends (main thread). */
static void hup_join(struct runner *r, bool wait)
{
    if (!r->hup_started || (!wait && !atomic_load(&r->hup_ended)))
        return;
    pthread_join(r->hup, NULL);
    r->hup_started = false;
}

/*
 * SIGHUP: the reload runs on a thread of its own, as POST /reload's does, for the main thread sends the
 * watchdog's pings and a reload may take long (a loop thread slow to take it up, another reload before
 * it). One SIGHUP while it runs has it run once more when it ends: the file may have changed after it
 * was read; more are one with that one (main thread).
 */
static void hup_start(struct runner *r)
{
    int rc;

    hup_join(r, false);
    if (r->hup_started) {
        if (!r->hup_again)
            gw_log(
                GW_LOG_INFO, "reload_queued",
                "SIGHUP while a reload is in progress: the configuration is loaded again once it has ended");
        r->hup_again = true;
        return;
    }
    r->hup_again = false;
    atomic_store(&r->hup_ended, false);
    if ((rc = pthread_create(&r->hup, NULL, hup_main, r)) != 0) {
        /* never the reload on this thread: it would wait for a POST /reload's, and the watchdog with it */
        if (!r->hup_retrying)
            gw_log(GW_LOG_WARN, "reload",
                   "SIGHUP: cannot start the reload's thread (%s): tried again each second", strerror(rc));
        r->hup_again = r->hup_retrying = true;
        return;
    }
    r->hup_started = true;
    r->hup_retrying = false;
}

/* Once a second: a SIGHUP reload that ended is joined, and one that came meanwhile, or whose thread could
 * not start, starts (main thread). */
static void hup_tick(struct runner *r)
{
    hup_join(r, false);
    if (!r->hup_started && r->hup_again)
        hup_start(r);
}

/* Waits for SIGINT/SIGTERM, expiring transactions and freeing retired configurations once a second. */
static void serve(const sigset_t *set, struct runner *r)
{
    const struct timespec tick = {1, 0};
    int sig;

    for (;;) {
        sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
            if (gw_handover_done(r->handover))
                gw_log(GW_LOG_INFO, "stopping", "a successor serves the listening sockets, draining");
            else
                gw_log(GW_LOG_INFO, "stopping", "received %s, draining",
                       sig == SIGINT ? "SIGINT" : "SIGTERM");
            end_reloads(r); /* before STOPPING=1: a reload that ends after it says no READY=1 */
            gw_notify_stopping();
            return;
        }
        if (sig == SIGHUP)
            hup_start(r);
        if (sig == SIGUSR1)
            reopen_audit(r);
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            gw_log(GW_LOG_ERROR, "stopping", "sigtimedwait: %s", strerror(errno));
            return;
        }
        struct gw_gen *g = gw_gens_acquire(r->gens);
        gw_cmp_engine_expire(g->engine, time(NULL));
        gw_gen_drop(g);
        (void)gw_gens_reap(r->gens);
        hup_tick(r);
        gw_notify_watchdog();
    }
}

static double open_transactions(void *gens)
{
    struct gw_gen *g = gw_gens_acquire(gens);
    double n = (double)gw_cmp_engine_open_transactions(g->engine); /* shared by every generation */

    gw_gen_drop(g);
    return n;
}

static double retired(void *gens)
{
    return (double)gw_gens_retired(gens);
}

static double queued(void *server)
{
    return (double)gw_server_queued(server);
}

/* The process-wide metrics that read the running configuration and server (base/metrics.h). */
static void metrics_init(struct runner *r)
{
    static const char *const build_labels[] = {"version", "openssl", NULL};
    static const char *const result[] = {"result", NULL};
    struct gw_metric *build = gw_metric_new("cmpgw_build_info",
                                            "The running build: 1, with its version and "
                                            "the libssl it runs on as labels.",
                                            GW_METRIC_GAUGE, build_labels, NULL, 0);
    struct gw_gen *g = gw_gens_acquire(r->gens);

    r->loaded = gw_metric_new("cmpgw_config_loaded_timestamp_seconds",
                              "When the running configuration was loaded (Unix time).", GW_METRIC_GAUGE, NULL,
                              NULL, 0);
    r->generation = gw_metric_new("cmpgw_config_generation",
                                  "The running configuration: 1 as started, one more per applied reload.",
                                  GW_METRIC_GAUGE, NULL, NULL, 0);
    r->reloads = gw_metric_new("cmpgw_config_reloads_total", "Reloads (SIGHUP, POST /reload) by result.",
                               GW_METRIC_COUNTER, result, NULL, 0);
    r->reload_ok = gw_metric_new("cmpgw_config_last_reload_success",
                                 "1 if the last reload was applied (or none was tried), 0 if it was refused.",
                                 GW_METRIC_GAUGE, NULL, NULL, 0);
    r->reload_time =
        gw_metric_new("cmpgw_config_last_reload_timestamp_seconds",
                      "When the last reload ended (Unix time; 0: none yet).", GW_METRIC_GAUGE, NULL, NULL, 0);
    gw_metric_set(build, (const char *const[]){CMPGW_VERSION, OpenSSL_version(OPENSSL_VERSION_STRING)}, 1);
    gw_metric_set(r->loaded, NULL, (double)g->loaded);
    gw_metric_set(r->generation, NULL, (double)g->id);
    gw_metric_set(r->reload_ok, NULL, 1);
    gw_metric_set(r->reload_time, NULL, 0);
    gw_gen_drop(g);
    (void)gw_metric_new_gauge_fn("cmpgw_transactions_open",
                                 "CMP transactions waiting for certConf or pollReq.", open_transactions,
                                 r->gens);
    (void)gw_metric_new_gauge_fn("cmpgw_config_generations_retired",
                                 "Configurations replaced by a reload but still held by requests, "
                                 "transactions or upstream calls begun under them.",
                                 retired, r->gens);
    (void)gw_metric_new_gauge_fn("cmpgw_worker_queue_jobs", "Requests waiting for a worker (503 when full).",
                                 queued, r->server);
    (void)gw_metrics_register_process();
}

/*
 * Listening sockets this gateway does not bind: the service manager's (socket activation) or those
 * of the gateway at "handover_socket" (|*peer|: the predecessor, for gw_handover_finish). 0, or the
 * exit status: EX_CONFIG for a hand-over socket `cmpgw check` refuses too, EXIT_FAILURE where its
 * directory could not be judged for what another try may mend (out of memory, descriptors run out:
 * gw_err_file_class) or the predecessor did not hand its sockets over.
 */
static int inherit(const struct gw_config *cfg, struct gw_inherited *inh, struct gw_handover_peer *peer)
{
    char err[GW_ERR_LEN];
    int n;

    peer->fd = -1;
    /* before anything is taken: a successor that could not serve the socket would not start */
    if (cfg->handover_socket != NULL && (n = gw_handover_check(cfg->handover_socket, cfg->uid, err)) != 0) {
        gw_log(GW_LOG_ERROR, "handover", "%s", err);
        return exit_status(gw_err_file_class(n));
    }
    if ((n = gw_notify_listen_fds(&inh->fds)) > 0) {
        inh->n = (size_t)n;
        gw_log(GW_LOG_INFO, "listening", "socket activation: %d listening sockets from the service manager",
               n);
        return 0;
    }
    if (cfg->handover_socket != NULL &&
        gw_handover_take(cfg->handover_socket, cfg->uid, inh, peer, err) != 0) {
        gw_log(GW_LOG_ERROR, "handover", "%s", err);
        return EXIT_FAILURE;
    }
    return 0;
}

/* Closes what gw_server_start did not take (it took all, or none when it failed early). */
static void inherited_cleanup(struct gw_inherited *inh)
{
    for (size_t i = 0; i < inh->n; i++)
        if (inh->fds[i] >= 0)
            close(inh->fds[i]);
    free(inh->fds);
    *inh = (struct gw_inherited){NULL, 0};
}

static int cmd_run(const char *path)
{
    char err[GW_ERR_LEN], lst[512];
    struct runner r = {.path = path};
    struct gw_gen *first = NULL;
    const struct gw_config *cfg;
    struct gw_inherited inh = {NULL, 0};
    struct gw_handover_peer predecessor = {-1, false, 0};
    bool successor;
    int failed;
    sigset_t set;
    int rc = EXIT_FAILURE;

    if (block_signals(&set) != 0) {
        fprintf(stderr, "cmpgw: cannot block signals\n");
        return EXIT_FAILURE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        gw_log(GW_LOG_ERROR, "startup", "curl_global_init failed");
        return EXIT_FAILURE;
    }
    pthread_mutex_init(&r.lock, NULL);
    if (RAND_priv_bytes(r.state_key, sizeof(r.state_key)) != 1) {
        gw_log(GW_LOG_ERROR, "startup", "the random generator failed");
        goto out;
    }
    if ((first = gw_gen_load(path, NULL, NULL, NULL, &failed, err)) == NULL) {
        gw_log(GW_LOG_ERROR, "config", "%s", err);
        rc = exit_status(failed);
        goto out;
    }
    cfg = first->cfg;
    restart_only_of(cfg, r.state_key, &r.running);
    gw_log_set_level(cfg->log_level);
    gw_fit_fd_limit(cfg); /* before the listeners are bound and the first connection is accepted */
    if ((r.gens = gw_gens_new(first)) == NULL) {
        gw_gen_free(first);
        gw_log(GW_LOG_ERROR, "startup", "out of memory");
        goto out;
    }
    if ((rc = inherit(cfg, &inh, &predecessor)) != 0)
        goto out;
    rc = EXIT_FAILURE;
    r.server = gw_server_start(r.gens, reload, &r, &inh, &failed, err);
    inherited_cleanup(&inh);
    if (r.server == NULL) {
        gw_log(GW_LOG_ERROR, "startup", "%s", err);
        rc = exit_status(failed);
        goto out;
    }
    metrics_init(&r); /* before anything is served: POST /reload counts in them */
    /* bound and loaded: root is given up before anything is served or probed */
    if ((rc = gw_drop_privileges(cfg)) != 0) {
        rc = exit_status(rc);
        goto out;
    }
    rc = EXIT_FAILURE;
    /* the prober before the loop threads: a POST /reload on one of them swaps it out with its generation
       (gw_gens_swap), so it must be in place before any of them can start a reload; once serving, the
       predecessor drains, or it serves on and this gateway stops */
    if ((first->prober = gw_prober_start(cfg, first->ups, first->engine, err)) == NULL ||
        gw_server_run(r.server, err) != 0 ||
        (cfg->handover_socket != NULL &&
         (r.handover = gw_handover_serve(cfg->handover_socket, r.server, err)) == NULL) ||
        gw_handover_finish(r.handover, &predecessor, err) != 0) {
        gw_log(GW_LOG_ERROR, "startup", "%s", err);
        goto out;
    }
    listeners_str(cfg, lst, sizeof(lst));
    gw_log_kv(GW_LOG_INFO, "started", "version", CMPGW_VERSION, "config", path, "listeners", lst,
              "path_prefix", cfg->path_prefix, NULL);
    gw_notify_ready(lst);
    serve(&set, &r);
    rc = EXIT_SUCCESS;
out:
    if (predecessor.fd >= 0) /* not started: the predecessor serves on */
        close(predecessor.fd);
    /* a reload in progress ends first, its upstream calls cut short (within GW_UPSTREAM_END_CHECK_MS);
       none starts after this */
    end_reloads(&r);
    pthread_mutex_lock(&r.lock);
    r.closed = true;
    pthread_mutex_unlock(&r.lock);
    hup_join(&r, true); /* done with the runner: a SIGHUP reload yet to take the lock found it closed */
    /* no reload compares with them any more */
    restart_only_cleanup(&r.running);
    OPENSSL_cleanse(r.state_key, sizeof(r.state_key));
    successor = gw_handover_stop(r.handover); /* after its wait: a "ready" during it counts */
    gw_server_stop(r.server, successor);      /* drains first: the probes' answers are not needed for it */
    if (!gw_gens_free(r.gens)) {
        /* A late completion may still read the configuration and the metrics, and runs inside libcurl
           and OpenSSL: leave all of it to the kernel, since exit()'s handlers (OpenSSL's cleanup
           among them) would free what that thread is using. Every record is on disk by now. */
        gw_log(GW_LOG_WARN, "stopped", "an upstream call still runs past the drain: exiting without cleanup");
        fflush(NULL);
        _exit(rc);
    }
    gw_metrics_free_all();
    curl_global_cleanup();
    if (rc == EXIT_SUCCESS)
        gw_log(GW_LOG_INFO, "stopped", "clean shutdown");
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"upstream", required_argument, NULL, 'u'},
        {"since", required_argument, NULL, OPT_SINCE},
        {"role", required_argument, NULL, OPT_ROLE},
        {"json", no_argument, NULL, OPT_JSON},
        {"audit", required_argument, NULL, OPT_AUDIT},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *upstream = NULL, *cmd = NULL;
    struct gw_report_opts report = {0};
    bool report_opts = false;
    int check = 0, inventory = 0, c;

    /* before any thread and curl_global_init: libcurl (an OpenSSL build) appends the secrets of every
       upstream TLS session to the file this names, and with them whoever recorded the traffic reads
       the Vault token in it; like a proxy in the environment, not the gateway's to honour */
    unsetenv("SSLKEYLOGFILE");
    bind_symbols_now(argv);
    if (gw_not_dumpable() != 0 || check_openssl() != 0)
        return EXIT_FAILURE;
    if (argc > 1 && (strcmp(argv[1], "check") == 0 || strcmp(argv[1], "inventory") == 0 ||
                     strcmp(argv[1], "report") == 0)) {
        cmd = argv[1];
        check = strcmp(cmd, "check") == 0;
        inventory = strcmp(cmd, "inventory") == 0;
        argv[1] = argv[0]; /* getopt names argv[0] in its messages */
        argv++;
        argc--;
    }
    while ((c = getopt_long(argc, argv, "+c:hVu:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'u':
            upstream = optarg;
            break;
        case OPT_SINCE:
            report.since = optarg;
            report_opts = true;
            break;
        case OPT_ROLE:
            report.role = optarg;
            report_opts = true;
            break;
        case OPT_JSON:
            report.json = true;
            report_opts = true;
            break;
        case OPT_AUDIT:
            report.audit_file = optarg;
            report_opts = true;
            break;
        case 'h':
            usage(stdout);
            return EXIT_SUCCESS;
        case 'V':
            version();
            return EXIT_SUCCESS;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cmpgw: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (config == NULL || (upstream != NULL && !inventory)) {
        fprintf(stderr,
                config == NULL ? "cmpgw: -c FILE is required\n" : "cmpgw: --upstream is for inventory\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (report_opts && (cmd == NULL || strcmp(cmd, "report") != 0)) {
        fprintf(stderr, "cmpgw: --since, --role, --json and --audit are for report\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (report.since != NULL && !gw_report_since_ok(report.since)) {
        fprintf(stderr,
                "cmpgw: --since \"%s\": expected a UTC time such as 2026-12-01 or 2026-12-01T10:00:00Z\n",
                report.since);
        return EXIT_USAGE;
    }
    if (inventory)
        return cmd_inventory(config, upstream);
    if (cmd != NULL && strcmp(cmd, "report") == 0)
        return cmd_report(config, &report);
    return check ? cmd_check(config) : cmd_run(config);
}
