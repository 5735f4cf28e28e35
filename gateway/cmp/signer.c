/*
 * Whether the signer's key signs (gateway/cmp/signer.h): the outcome of its last signature, kept
 * behind one lock, with the time it was had. A change of outcome is logged once: signer_failed,
 * signer_recovered.
 */
#include "gateway/cmp/signer.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/pem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/cmperr.h>
#include <openssl/err.h>

struct cmp_signer_health {
    EVP_PKEY *key; /* borrowed */
    pthread_mutex_t lock;
    bool ok;              /* the last signature succeeded */
    uint64_t at_ms;       /* when it was made (gw_now_ms) */
    uint64_t tried_ms;    /* the last test signature; 0: none */
    char why[GW_ERR_LEN]; /* why the last one failed */
};

struct cmp_signer_health *cmp_signer_health_new(EVP_PKEY *key)
{
    struct cmp_signer_health *h = calloc(1, sizeof(*h));

    if (h == NULL || pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h);
        return NULL;
    }
    h->key = key;
    h->ok = true; /* a key in a token signed once as it was loaded (base/pem.c); a file's signs in memory */
    h->at_ms = gw_now_ms();
    return h;
}

void cmp_signer_health_free(struct cmp_signer_health *h)
{
    if (h == NULL)
        return;
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* Records one signature's outcome, begun at |since| (0: now); an outcome had since is newer, and stays. */
static void record(struct cmp_signer_health *h, bool ok, const char *why, uint64_t since)
{
    bool was;

    if (h == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    if (since != 0 && h->at_ms > since) { /* an answer signed, or not, while the test signature ran */
        pthread_mutex_unlock(&h->lock);
        return;
    }
    was = h->ok;
    h->ok = ok;
    h->at_ms = gw_now_ms();
    if (!ok)
        snprintf(h->why, sizeof(h->why), "%s", why);
    pthread_mutex_unlock(&h->lock);
    if (was && !ok)
        gw_log_kv(GW_LOG_ERROR, "signer_failed", "msg",
                  "the signer's key cannot sign: every signed CMP answer fails (HTTP 500), and /readyz says "
                  "not ready",
                  "error", why, NULL);
    else if (!was && ok)
        gw_log_kv(GW_LOG_INFO, "signer_recovered", "msg", "the signer's key signs again", NULL);
}

void cmp_signer_note(struct cmp_signer_health *h, bool ok, const char *why)
{
    record(h, ok, why, 0);
}

/* OpenSSL's CMP log puts the reason's text first in its line. */
bool cmp_signer_failed_in(const char *msg)
{
    const char *r = ERR_reason_error_string(ERR_PACK(ERR_LIB_CMP, 0, CMP_R_ERROR_PROTECTING_MESSAGE));

    return r != NULL && msg != NULL && strncmp(msg, r, strlen(r)) == 0;
}

bool cmp_signer_failed_in_queue(char *why, size_t cap)
{
    unsigned long e;
    bool failed = false;

    snprintf(why, cap, "the signature failed");
    for (bool first = true; (e = ERR_get_error()) != 0; first = false) {
        if (ERR_GET_LIB(e) == ERR_LIB_CMP && ERR_GET_REASON(e) == CMP_R_ERROR_PROTECTING_MESSAGE)
            failed = true;
        else if (first && ERR_reason_error_string(e) != NULL)
            snprintf(why, cap, "%s", ERR_reason_error_string(e));
    }
    return failed;
}

/* One signature with |key|, as a CMP protection makes one (GW_PEM_KEY_CMP): an RSA key that signs only
 * with PSS (which a TLS 1.3 listener's key may) signs no CMP answer, and fails it. */
static bool test_signature(EVP_PKEY *key, char *why, size_t cap)
{
    char reason[GW_ERR_LEN - sizeof("a test signature failed: ")];

    if (gw_pem_key_signs(key, GW_PEM_KEY_CMP, reason, sizeof(reason)))
        return true;
    snprintf(why, cap, "a test signature failed: %s", reason);
    return false;
}

void cmp_signer_probe(struct cmp_signer_health *h)
{
    uint64_t now = gw_now_ms();
    char why[GW_ERR_LEN];
    bool due;

    if (h == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    due = (!h->ok || now - h->at_ms >= GW_SIGNER_CHECK_MS) &&
          (h->tried_ms == 0 || now - h->tried_ms >= GW_SIGNER_CHECK_MS);
    if (due)
        h->tried_ms = now;
    pthread_mutex_unlock(&h->lock);
    if (due) /* outside the lock: a slow token must not hold up the workers' notes */
        record(h, test_signature(h->key, why, sizeof(why)), why, now);
}

int cmp_signer_status(struct cmp_signer_health *h, char *why, size_t cap)
{
    int rc = 0;

    if (h == NULL)
        return 0;
    pthread_mutex_lock(&h->lock);
    if (!h->ok) {
        snprintf(why, cap,
                 "the signer's key failed its last signature, %llu s ago (%s): signed CMP answers fail",
                 (unsigned long long)((gw_now_ms() - h->at_ms) / 1000), h->why);
        rc = GW_ERR_UNAVAILABLE;
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}
