/*
 * Transaction records and deferred requests' results (cluster.h) as the bytes the shared state keeps:
 * length-prefixed fields after a magic that says what the blob is, then an HMAC-SHA256 under the
 * shared "mac_key_file" key over them and the transactionID, so that no instance takes a record
 * another did not write, nor one transaction's record for another's; and the transactionID a record's
 * key names. Pure: no Redis here.
 */
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/cluster_local.h"
#include "base/err.h"
#include "base/limits.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/cmp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

void gw_txn_result_cleanup(struct gw_txn_result *res)
{
    free(res->cert);
    free(res->chain);
    memset(res, 0, sizeof(*res));
}

void gw_txn_record_cleanup(struct gw_txn_record *rec)
{
    free(rec->req);
    free(rec->cert);
    gw_txn_result_cleanup(&rec->result);
    memset(rec, 0, sizeof(*rec));
}

/* A record names the TLS client of its transaction since version 3; one of version 2, from an older
   instance during a rolling upgrade, is still read, bound to none (docs/design.md D26) */
#define RECORD_MAGIC "cmpgw-txn-3"
#define RECORD_MAGIC_2 "cmpgw-txn-2"
#define RESULT_MAGIC "cmpgw-res-1"
#define RECORD_FIELDS 7
#define RESULT_FIELDS 4
#define RECORD_MAC_LEN 32

static void put_u32(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* HMAC-SHA256 under the shared key over the transactionID and |blob|'s |n| bytes. */
static int record_mac(const unsigned char *key, size_t key_len, const unsigned char *tid, size_t tid_len,
                      const unsigned char *blob, size_t n, unsigned char mac[RECORD_MAC_LEN])
{
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    unsigned char len[4];
    size_t out = 0;
    int ok;

    put_u32(len, tid_len);
    ok = ctx != NULL && EVP_MAC_init(ctx, key, key_len, params) == 1 && EVP_MAC_update(ctx, len, 4) == 1 &&
         EVP_MAC_update(ctx, tid, tid_len) == 1 && EVP_MAC_update(ctx, blob, n) == 1 &&
         EVP_MAC_final(ctx, mac, &out, RECORD_MAC_LEN) == 1 && out == RECORD_MAC_LEN;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    return ok ? 0 : GW_ERR_CRYPTO;
}

/*
 * |count| fields, length-prefixed after |magic| (which says what the blob is: a record is never
 * taken for a result), then the MAC over all of it and the transactionID.
 */
static unsigned char *blob_encode(const unsigned char *key, size_t key_len, const char *magic,
                                  const unsigned char *tid, size_t tid_len, const void *const *f,
                                  const size_t *n, int count, size_t *out_len)
{
    size_t total = strlen(magic) + RECORD_MAC_LEN, off;
    unsigned char *blob;

    for (int i = 0; i < count; i++)
        total += 4 + n[i];
    if ((blob = malloc(total)) == NULL)
        return NULL;
    memcpy(blob, magic, off = strlen(magic));
    for (int i = 0; i < count; i++) {
        put_u32(blob + off, n[i]);
        if (n[i] > 0)
            memcpy(blob + off + 4, f[i], n[i]);
        off += 4 + n[i];
    }
    if (record_mac(key, key_len, tid, tid_len, blob, off, blob + off) != 0) {
        free(blob);
        return NULL;
    }
    *out_len = total;
    return blob;
}

/* Checks |magic| and the MAC, then splits |blob| into |count| fields; GW_ERR_INVAL when it is not ours. */
static int blob_decode(const unsigned char *key, size_t key_len, const char *magic, const unsigned char *tid,
                       size_t tid_len, const unsigned char *blob, size_t len, const unsigned char **f,
                       size_t *n, int count)
{
    unsigned char mac[RECORD_MAC_LEN];
    size_t off = strlen(magic);

    if (len < off + RECORD_MAC_LEN || memcmp(blob, magic, off) != 0 ||
        record_mac(key, key_len, tid, tid_len, blob, len - RECORD_MAC_LEN, mac) != 0 ||
        CRYPTO_memcmp(mac, blob + len - RECORD_MAC_LEN, RECORD_MAC_LEN) != 0)
        return GW_ERR_INVAL;
    len -= RECORD_MAC_LEN;
    for (int i = 0; i < count; i++) {
        if (len - off < 4)
            return GW_ERR_INVAL;
        n[i] = (size_t)blob[off] << 24 | (size_t)blob[off + 1] << 16 | (size_t)blob[off + 2] << 8 |
               blob[off + 3];
        if (n[i] > len - off - 4)
            return GW_ERR_INVAL;
        f[i] = blob + off + 4;
        off += 4 + n[i];
    }
    return off == len ? 0 : GW_ERR_INVAL;
}

/* A copy of |n| bytes at |f| (one more, so that an empty field is not NULL); NULL when out of memory. */
static unsigned char *field_dup(const unsigned char *f, size_t n, size_t *out_len)
{
    unsigned char *p = malloc(n + 1);

    if (p != NULL && n > 0)
        memcpy(p, f, n);
    *out_len = n;
    return p;
}

/* Field |f| of |n| bytes as a string in |out| of |cap| bytes; 0, or -1 if it does not fit. */
static int field_str(const unsigned char *f, size_t n, char *out, size_t cap)
{
    if (n >= cap)
        return -1;
    memcpy(out, f, n);
    out[n] = '\0';
    return 0;
}

/* The range one number of a metadata field may hold. */
struct num_range {
    long long min, max;
};

/* A record's metadata: step (unsigned), when it was requested (s), its deadline (ms), checkAfter (s). */
static const struct num_range record_meta[4] = {
    {0, UINT_MAX}, {0, LLONG_MAX}, {0, LLONG_MAX}, {0, GW_MAX_CHECK_AFTER}};
/* A result's: status (0, or a negative enum gw_err), failInfo bit, modified and recorded (0 or 1). */
static const struct num_range result_meta[4] = {
    {INT_MIN, 0}, {0, OSSL_CMP_PKIFAILUREINFO_MAX}, {0, 1}, {0, 1}};

/*
 * The |count| decimal numbers of |meta|, one space apart, each in its range, into |v|: 0, or -1 for
 * anything else (a sign where the range has none, a blank or junk before, between or after them, a
 * value out of range or beyond long long). What an instance writes, nothing more: MAC'ed as it is, a
 * record holds other text only if an instance wrote it wrongly or the shared key is known to another.
 */
static int parse_meta(const char *meta, const struct num_range *range, long long *v, int count)
{
    const char *p = meta;
    char *end;

    for (int i = 0; i < count; i++) {
        if (!(p[0] >= '0' && p[0] <= '9') && !(p[0] == '-' && range[i].min < 0 && p[1] >= '0' && p[1] <= '9'))
            return -1;
        errno = 0;
        v[i] = strtoll(p, &end, 10);
        if (errno != 0 || v[i] < range[i].min || v[i] > range[i].max || *end != (i + 1 < count ? ' ' : '\0'))
            return -1;
        p = end + 1;
    }
    return 0;
}

unsigned char *cluster_record_encode(const unsigned char *key, size_t key_len, const unsigned char *tid,
                                     size_t tid_len, const struct gw_txn_record *rec, size_t *out_len)
{
    char meta[96];
    const void *f[RECORD_FIELDS] = {rec->req,      rec->cert, rec->nonce,     rec->role,
                                    rec->upstream, meta,      rec->tls_client};
    size_t n[RECORD_FIELDS] = {rec->req_len,           rec->cert_len,         rec->nonce_len,
                               strlen(rec->role),      strlen(rec->upstream), 0,
                               strlen(rec->tls_client)};

    n[5] = (size_t)snprintf(meta, sizeof(meta), "%u %lld %lld %lld", rec->step, rec->requested_at,
                            rec->deadline_ms, rec->check_after);
    return blob_encode(key, key_len, RECORD_MAGIC, tid, tid_len, f, n, RECORD_FIELDS, out_len);
}

int cluster_record_decode(const unsigned char *key, size_t key_len, const unsigned char *tid, size_t tid_len,
                          const unsigned char *blob, size_t len, struct gw_txn_record *rec)
{
    const unsigned char *f[RECORD_FIELDS];
    size_t n[RECORD_FIELDS];
    char meta[96];
    long long v[4];

    memset(rec, 0, sizeof(*rec));
    n[6] = 0; /* version 2: no TLS client */
    if ((blob_decode(key, key_len, RECORD_MAGIC, tid, tid_len, blob, len, f, n, RECORD_FIELDS) != 0 &&
         blob_decode(key, key_len, RECORD_MAGIC_2, tid, tid_len, blob, len, f, n, RECORD_FIELDS - 1) != 0) ||
        (n[6] > 0 && field_str(f[6], n[6], rec->tls_client, sizeof(rec->tls_client)) != 0) ||
        n[2] > sizeof(rec->nonce) || field_str(f[3], n[3], rec->role, sizeof(rec->role)) != 0 ||
        field_str(f[4], n[4], rec->upstream, sizeof(rec->upstream)) != 0 ||
        field_str(f[5], n[5], meta, sizeof(meta)) != 0) {
        memset(rec, 0, sizeof(*rec));
        return GW_ERR_INVAL;
    }
    if (parse_meta(meta, record_meta, v, 4) != 0 ||
        (rec->req = field_dup(f[0], n[0], &rec->req_len)) == NULL ||
        (rec->cert = field_dup(f[1], n[1], &rec->cert_len)) == NULL) {
        gw_txn_record_cleanup(rec);
        return GW_ERR_INVAL;
    }
    rec->step = (unsigned)v[0];
    rec->requested_at = v[1];
    rec->deadline_ms = v[2];
    rec->check_after = v[3];
    memcpy(rec->nonce, f[2], rec->nonce_len = n[2]);
    return 0;
}

unsigned char *cluster_result_encode(const unsigned char *key, size_t key_len, const unsigned char *tid,
                                     size_t tid_len, const struct gw_txn_result *res, size_t *out_len)
{
    char meta[48];
    const void *f[RESULT_FIELDS] = {res->cert, res->chain, meta, res->reason};
    size_t n[RESULT_FIELDS] = {res->cert_len, res->chain_len, 0, strlen(res->reason)};

    n[2] = (size_t)snprintf(meta, sizeof(meta), "%d %d %d %d", res->status, res->fail_info, res->modified,
                            res->recorded);
    return blob_encode(key, key_len, RESULT_MAGIC, tid, tid_len, f, n, RESULT_FIELDS, out_len);
}

int cluster_result_decode(const unsigned char *key, size_t key_len, const unsigned char *tid, size_t tid_len,
                          const unsigned char *blob, size_t len, struct gw_txn_result *res)
{
    const unsigned char *f[RESULT_FIELDS];
    size_t n[RESULT_FIELDS];
    char meta[48];
    long long v[4];

    memset(res, 0, sizeof(*res));
    if (blob_decode(key, key_len, RESULT_MAGIC, tid, tid_len, blob, len, f, n, RESULT_FIELDS) != 0 ||
        field_str(f[2], n[2], meta, sizeof(meta)) != 0 ||
        field_str(f[3], n[3], res->reason, sizeof(res->reason)) != 0) {
        memset(res, 0, sizeof(*res));
        return GW_ERR_INVAL;
    }
    if (parse_meta(meta, result_meta, v, 4) != 0 ||
        (res->cert = field_dup(f[0], n[0], &res->cert_len)) == NULL ||
        (res->chain = field_dup(f[1], n[1], &res->chain_len)) == NULL) {
        gw_txn_result_cleanup(res);
        return GW_ERR_INVAL;
    }
    res->status = (int)v[0];
    res->fail_info = (int)v[1];
    res->modified = (int)v[2];
    res->recorded = (int)v[3];
    res->present = true;
    return 0;
}

size_t cluster_record_key_tid(const char *key, size_t len, const char *prefix, unsigned char *tid)
{
    size_t plen = strlen(prefix) + 4, tl = 0;
    char hex[2 * GW_MAX_TID_LEN + 1];

    if (len <= plen || len - plen > 2 * GW_MAX_TID_LEN || (len - plen) % 2 != 0 ||
        memcmp(key, prefix, plen - 4) != 0 || memcmp(key + plen - 4, "rec:", 4) != 0)
        return 0;
    memcpy(hex, key + plen, len - plen);
    hex[len - plen] = '\0';
    /* lower case only, as instances write it; checked first, so OpenSSL never queues an error here */
    if (strspn(hex, "0123456789abcdef") != len - plen ||
        OPENSSL_hexstr2buf_ex(tid, GW_MAX_TID_LEN, &tl, hex, '\0') != 1)
        return 0;
    return tl;
}

unsigned char *cluster_blob_within(unsigned char *blob, const size_t *len, size_t max, const char *what,
                                   char *err)
{
    if (blob != NULL && *len > max) {
        snprintf(err, GW_ERR_LEN, "shared state: the %s is %zu bytes, more than %zu", what, *len, max);
        free(blob);
        return NULL;
    }
    if (blob == NULL)
        snprintf(err, GW_ERR_LEN, "shared state: the %s could not be built", what);
    return blob;
}
