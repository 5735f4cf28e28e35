/*
 * The certificates revoked through this gateway (revoked.h). Each is named by 128 bits of
 * SHA-256 over its issuer name (DER) and serial number (DER): what a CRL and an rr name it by. Here
 * a sorted array behind one lock (revocations are rare, a lookup is a binary search); in the shared
 * state one key per certificate that expires with it (cluster.c). Both are bounded: a full set takes
 * no more (the revocation stands at the CA; the CRLs tell of it in time), and is never made room in
 * by dropping a live entry, which would let that certificate authenticate again.
 */
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/cluster.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/x509.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#define ID_LEN 16
#define FIRST_CAP 64

struct revoked_entry {
    unsigned char id[ID_LEN];
    time_t until; /* the certificate's notAfter: no use after it */
};

struct cmp_revoked {
    pthread_mutex_t lock;
    struct revoked_entry *v; /* sorted by id */
    size_t n, cap;
};

struct cmp_revoked *cmp_revoked_new(void)
{
    struct cmp_revoked *rs = calloc(1, sizeof(*rs));

    if (rs != NULL)
        pthread_mutex_init(&rs->lock, NULL);
    return rs;
}

void cmp_revoked_free(struct cmp_revoked *rs)
{
    if (rs == NULL)
        return;
    pthread_mutex_destroy(&rs->lock);
    free(rs->v);
    free(rs);
}

/* |cert|'s name in the set: its issuer name and serial number; 0, or GW_ERR_CRYPTO. */
static int id_of(X509 *cert, unsigned char id[ID_LEN])
{
    const unsigned char *name = NULL;
    unsigned char *serial = NULL, md[EVP_MAX_MD_SIZE];
    size_t name_len = 0;
    unsigned int md_len = 0;
    int serial_len = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &serial);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && serial_len > 0 &&
             X509_NAME_get0_der(X509_get_issuer_name(cert), &name, &name_len) == 1 &&
             EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, name, name_len) == 1 &&
             EVP_DigestUpdate(ctx, serial, (size_t)serial_len) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &md_len) == 1;

    EVP_MD_CTX_free(ctx);
    OPENSSL_free(serial);
    if (!ok)
        return GW_ERR_CRYPTO;
    memcpy(id, md, ID_LEN);
    return 0;
}

/* Where |id| is in |rs|, or would go; *found says which. Lock held. */
static size_t position(const struct cmp_revoked *rs, const unsigned char *id, int *found)
{
    size_t lo = 0, hi = rs->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(rs->v[mid].id, id, ID_LEN);

        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

/*
 * Room for one more entry of at most |max|: the expired ones out, else a larger array. A |max| lowered
 * by a reload below what is kept drops nothing: no more is taken until enough expire. Lock held.
 */
static int make_room(struct cmp_revoked *rs, size_t max, time_t now)
{
    size_t live = 0, cap;
    struct revoked_entry *v;

    if (rs->n < rs->cap && rs->n < max)
        return 0;
    for (size_t i = 0; i < rs->n; i++) /* in order: still sorted */
        if (rs->v[i].until > now)
            rs->v[live++] = rs->v[i];
    rs->n = live;
    if (rs->n >= max)
        return GW_ERR_LIMIT;
    if (rs->n < rs->cap)
        return 0;
    cap = rs->cap == 0 ? FIRST_CAP : 2 * rs->cap;
    cap = cap < max ? cap : max;
    if ((v = realloc(rs->v, cap * sizeof(*v))) == NULL)
        return GW_ERR_NOMEM;
    rs->v = v;
    rs->cap = cap;
    return 0;
}

static int keep(struct cmp_revoked *rs, const unsigned char *id, time_t until, size_t max, time_t now)
{
    int found = 0, rc = 0;
    size_t at;

    pthread_mutex_lock(&rs->lock);
    at = position(rs, id, &found);
    if (!found && (rc = make_room(rs, max, now)) == 0) {
        at = position(rs, id, &found); /* make_room may have moved it */
        memmove(&rs->v[at + 1], &rs->v[at], (rs->n - at) * sizeof(*rs->v));
        memcpy(rs->v[at].id, id, ID_LEN);
        rs->n++;
    }
    if (rc == 0 && rs->v[at].until < until)
        rs->v[at].until = until;
    pthread_mutex_unlock(&rs->lock);
    return rc;
}

static int holds(struct cmp_revoked *rs, const unsigned char *id, time_t now)
{
    int found = 0;
    size_t at;

    pthread_mutex_lock(&rs->lock);
    at = position(rs, id, &found);
    found = found && rs->v[at].until > now;
    pthread_mutex_unlock(&rs->lock);
    return found;
}

int cmp_revoked_add(struct gw_cmp_engine *e, X509 *cert, time_t now, char *err)
{
    unsigned char id[ID_LEN];
    char hex[2 * ID_LEN + 1], why[GW_ERR_LEN] = "";
    time_t until = 0;
    uint32_t max = e->cfg.cmp->max_revoked;
    int rc, missed = 0;

    if (gw_asn1_time(X509_get0_notAfter(cert), &until) != 0 || id_of(cert, id) != 0) {
        snprintf(err, GW_ERR_LEN, "its issuer, serial or notAfter cannot be read");
        return CMP_REVOKED_NOT_HERE | (e->cluster != NULL ? CMP_REVOKED_NOT_SHARED : 0);
    }
    if (until <= now) /* expired: no chain validates with it */
        return 0;
    if ((rc = keep(e->revoked, id, until, max, now)) != 0) {
        missed |= CMP_REVOKED_NOT_HERE;
        if (rc == GW_ERR_LIMIT)
            snprintf(err, GW_ERR_LEN,
                     "this instance keeps %u unexpired revocations already (cmp.max_revoked)", max);
        else
            snprintf(err, GW_ERR_LEN, "out of memory");
    }
    gw_hex(hex, id, ID_LEN);
    /* shared even when not kept here: the other instances are where it is not known otherwise */
    if (e->cluster != NULL && gw_cluster_put_revoked(e->cluster, hex, now, until - now, max, why) != 0) {
        if (missed == 0)
            snprintf(err, GW_ERR_LEN, "%s", why);
        missed |= CMP_REVOKED_NOT_SHARED;
    }
    return missed;
}

int cmp_revoked_check(struct gw_cmp_engine *e, X509 *cert, time_t now, char *err)
{
    unsigned char id[ID_LEN];
    char hex[2 * ID_LEN + 1];

    if (id_of(cert, id) != 0) {
        snprintf(err, GW_ERR_LEN, "the certificate's issuer and serial cannot be read");
        return GW_ERR_CRYPTO;
    }
    if (holds(e->revoked, id, now))
        return 1;
    if (e->cluster == NULL)
        return 0;
    gw_hex(hex, id, ID_LEN);
    return gw_cluster_revoked(e->cluster, hex, err);
}
