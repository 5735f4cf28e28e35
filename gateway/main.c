/*
 * cmpgw: the command line. `cmpgw -c FILE` runs the gateway, `cmpgw check -c FILE` validates a
 * configuration. Signals are taken synchronously by the main thread (sigtimedwait), which also
 * ticks the transaction expiry once a second; every other thread runs with them blocked.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <h2o/version.h>
#include <openssl/crypto.h>

#include "gateway/limits.h"
#include "gateway/cmp.h"
#include "gateway/config.h"
#include "gateway/listener.h"
#include "gateway/log.h"
#include "upstream/upstream.h"

/* OpenSSL 3.0.22: the first 3.0 release whose CMP server survives malformed requests. */
#define GW_MIN_OPENSSL 0x30000160L

enum { EXIT_USAGE = 2 };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cmpgw -c FILE           run the gateway with the configuration in FILE\n"
            "       cmpgw check -c FILE     validate FILE and exit (0: valid, 1: invalid)\n"
            "       cmpgw --help | --version\n"
            "\n"
            "options:\n"
            "  -c, --config FILE   the JSON configuration (docs/configuration.md)\n"
            "  -h, --help          print this help and exit\n"
            "  -V, --version       print the versions of cmpgw, OpenSSL and h2o and exit\n"
            "\n"
            "signals: SIGINT, SIGTERM stop gracefully; SIGHUP is logged (reload is not supported yet)\n");
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

/* Validates |path| like a start would, prints "FILE: OK" or the error; returns the exit code. */
static int cmd_check(const char *path)
{
    char err[GW_ERR_LEN];
    struct gw_config *cfg = gw_config_load(path, err);

    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return EXIT_FAILURE;
    }
    printf("%s: OK\n", path);
    gw_config_free(cfg);
    return EXIT_SUCCESS;
}

static int block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    /* before any thread exists (curl, h2o, workers), so that every thread inherits the mask */
    if (pthread_sigmask(SIG_BLOCK, set, NULL) != 0)
        return -1;
    /* a peer closing its socket mid-write must not kill the process */
    signal(SIGPIPE, SIG_IGN);
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

/* Waits for SIGINT/SIGTERM, expiring transactions once a second. */
static void serve(const sigset_t *set, struct gw_cmp_engine *engine)
{
    const struct timespec tick = {1, 0};
    int sig;

    for (;;) {
        sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
            gw_log(GW_LOG_INFO, "stopping", "received %s, draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
            return;
        }
        if (sig == SIGHUP)
            gw_log(GW_LOG_WARN, "reload", "SIGHUP ignored: configuration reload is not supported yet");
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            gw_log(GW_LOG_ERROR, "stopping", "sigtimedwait: %s", strerror(errno));
            return;
        }
        gw_cmp_engine_expire(engine, time(NULL));
    }
}

static int cmd_run(const char *path)
{
    char err[GW_ERR_LEN], lst[512];
    struct gw_config *cfg = NULL;
    struct gw_upstream_set *ups = NULL;
    struct gw_cmp_engine *engine = NULL;
    struct gw_server *server = NULL;
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
    if ((cfg = gw_config_load(path, err)) == NULL) {
        gw_log(GW_LOG_ERROR, "config", "%s", err);
        goto out;
    }
    gw_log_set_level(cfg->log_level);
    if ((ups = gw_upstream_set_new(cfg, err)) == NULL ||
        (engine = gw_cmp_engine_new(cfg, ups, err)) == NULL ||
        (server = gw_server_start(cfg, engine, err)) == NULL) {
        gw_log(GW_LOG_ERROR, "startup", "%s", err);
        goto out;
    }
    listeners_str(cfg, lst, sizeof(lst));
    gw_log_kv(GW_LOG_INFO, "started", "version", CMPGW_VERSION, "config", path, "listeners", lst,
              "path_prefix", cfg->path_prefix, NULL);
    serve(&set, engine);
    rc = EXIT_SUCCESS;
out:
    gw_server_stop(server);
    gw_cmp_engine_free(engine);
    gw_upstream_set_free(ups);
    gw_config_free(cfg);
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
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int check = 0, c;

    if (check_openssl() != 0)
        return EXIT_FAILURE;
    if (argc > 1 && strcmp(argv[1], "check") == 0) {
        check = 1;
        argv[1] = argv[0]; /* getopt names argv[0] in its messages */
        argv++;
        argc--;
    }
    while ((c = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
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
    if (config == NULL) {
        fprintf(stderr, "cmpgw: -c FILE is required\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    return check ? cmd_check(config) : cmd_run(config);
}
