/*
 * What the fuzz targets share (tests/fuzz/README.md). Each target defines LLVMFuzzerInitialize
 * (once per process) and LLVMFuzzerTestOneInput; libFuzzer calls them, or replay.c in the gcc builds.
 * A setup that fails aborts: a target that cannot set up must not look like one that finds nothing.
 * static inline: each target uses what it needs.
 */
#ifndef GW_FUZZ_H
#define GW_FUZZ_H

#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/config.h"
#include "base/limits.h"
#include "base/log.h"

#ifndef CMPGW_FUZZ_DIR
#error "CMPGW_FUZZ_DIR names tests/fuzz (tests/fuzz/CMakeLists.txt sets it)"
#endif
/* The PKI the CMP seeds were made with (make_seeds.sh); also the base directory of every config. */
#define FUZZ_PKI CMPGW_FUZZ_DIR "/pki"
#define FUZZ_PATH_LEN 512

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((format(printf, 1, 2), noreturn)) static inline void fuzz_die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* The whole file |name| of the fuzzing PKI, NUL-terminated (caller frees). */
/* A parser's answer: 0 or a gw_err, and a refusal says why in one line of |err| (GW_ERR_LEN). */
static inline void fuzz_check_reason(const char *what, int rc, const char *err)
{
    size_t n = strnlen(err, GW_ERR_LEN);

    if (rc > 0)
        fuzz_die("%s: returned %d, neither 0 nor a gw_err", what, rc);
    if (rc != 0 && (n == 0 || n == GW_ERR_LEN || memchr(err, '\n', n) != NULL))
        fuzz_die("%s: refused (%d) without a one-line reason", what, rc);
}

static inline char *fuzz_pki_file(const char *name, size_t *len)
{
    char path[FUZZ_PATH_LEN];
    FILE *f;
    char *buf;
    long n;

    snprintf(path, sizeof(path), "%s/%s", FUZZ_PKI, name);
    if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        n > GW_MAX_CONFIG_SIZE || fseek(f, 0, SEEK_SET) != 0 || (buf = calloc(1, (size_t)n + 1)) == NULL ||
        fread(buf, 1, (size_t)n, f) != (size_t)n)
        fuzz_die("cannot read %s", path);
    fclose(f);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

/* Makes the fuzzing PKI's secrets and private keys 0600: git checks every file out readable by others,
 * and a secret or key file others may read is refused (base/conf.c, gw_conf_open_secret). */
static inline void fuzz_pki_secrets_private(void)
{
    static const char *const secrets[] = {"pbm.secret",  "hmac.key",     "vault.token",
                                          "client.key",  "delegate.key", "device.key",
                                          "issuing.key", "server.key",   "signer.key"};
    char path[FUZZ_PATH_LEN];

    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", FUZZ_PKI, secrets[i]);
        (void)chmod(path, 0600);
    }
}

/* Parses |json| with the fuzzing PKI as base directory; the configuration must be valid. */
static inline struct gw_config *fuzz_config(const char *json)
{
    char err[GW_ERR_LEN] = "";
    struct gw_config *cfg;

    fuzz_pki_secrets_private();
    if ((cfg = gw_config_parse(json, strlen(json), FUZZ_PKI, "cmpgw.json", err)) == NULL)
        fuzz_die("configuration: %s", err);
    return cfg;
}

/* When the seeds were captured: the engine's clock and the certificate checks' time (make_seeds.sh). */
static inline time_t fuzz_capture_time(void)
{
    char *s = fuzz_pki_file("capture_time", NULL), *end;
    long long t = strtoll(s, &end, 10);

    if (end == s || t <= 0)
        fuzz_die("%s/capture_time holds no time", FUZZ_PKI);
    free(s);
    return (time_t)t;
}

/* The scratch directory of this process: "" until fuzz_scratch makes it. */
static inline char *fuzz_scratch_dir(void)
{
    static char dir[FUZZ_PATH_LEN];

    return dir;
}

/* Empties and removes the scratch directory (flat: the targets create no subdirectories). */
static inline void fuzz_scratch_remove(void)
{
    char *dir = fuzz_scratch_dir(), path[2 * FUZZ_PATH_LEN];
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

/*
 * The path of |name| in a scratch directory made for this process and removed at exit; in memory
 * (/dev/shm) where there is one, as the audit log is fsync'd for every certificate issued.
 */
static inline const char *fuzz_scratch(const char *name, char *path, size_t cap)
{
    char *dir = fuzz_scratch_dir();

    if (dir[0] == '\0') {
        const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");

        snprintf(dir, FUZZ_PATH_LEN, "%s/cmpgw-fuzz-XXXXXX", tmp != NULL ? tmp : "/tmp");
        if (mkdtemp(dir) == NULL)
            fuzz_die("cannot create %s", dir);
        atexit(fuzz_scratch_remove);
    }
    if (snprintf(path, cap, "%s/%s", dir, name) >= (int)cap)
        fuzz_die("path too long: %s/%s", dir, name);
    return path;
}

/* Fuzzing wants the sanitizers' reports on stderr, not a log line per refused input. */
static inline void fuzz_quiet(void)
{
    gw_log_set_level(GW_LOG_ERROR);
}

#endif
