/*
 * The certificates revoked through this gateway (revoked.h). Each is named by 128 bits of
 * SHA-256 over its issuer name (DER) and serial number (DER): what a CRL and an rr name it by; and
 * where it names its CA's key (authorityKeyIdentifier), over that key identifier too, the name it is
 * decided by (struct names). Here a sorted array behind one lock (revocations are rare, a lookup is a
 * binary search); in the shared state one key per name that expires with the certificate (cluster.c).
 * Both are bounded: a full set takes no more (the revocation stands at the CA; the CRLs tell of it in
 * time), and is never made room in by dropping a live entry, which would let that certificate
 * authenticate again.
 *
 * Gateways of the earlier version, which named a certificate by issuer and serial alone, may read the
 * same Redis and file (a rolling upgrade, a hand-over, a downgrade) and must miss none of these
 * revocations. A certificate with a key is kept by both names, the one by issuer and serial marked
 * (written beside a keyed one): they take any entry of that name as revoked; this version skips a marked
 * one for a certificate with a key and honours an unmarked one, which they wrote, for every certificate
 * of that issuer and serial (fail closed: it cannot say which CA's it was). In the file, a marked entry
 * is a line whose notAfter is past MARK_OFFSET, the one line shape they read.
 *
 * With cmp.revoked_file each entry is also a line "<id in hex> <notAfter in Unix seconds>" appended to
 * that file, on disk before the rr is answered, and read back at the next start: a restart does not
 * let a certificate revoked through cmpgw in again while its CA's CRL does not list it (or is never
 * read). The start rewrites the file with the entries it keeps, so it stays as small as the set, unless
 * another gateway still appends to it (a hand-over's predecessor). Each stays GW_REVOKED_KEEP_SECS past its
 * expiry: a clock ahead (before its time sync) drops none a certificate valid once it is set right needs.
 *
 * Whoever may write the file decides which certificates authenticate (a line of one's id refuses it)
 * and whether the next start succeeds (a line that is no entry refuses it): as a secret file is, it is
 * refused when group or others may write it, and when another user than the gateway's or root owns it
 * (an owner may chmod it so at will). Its directory is refused likewise where others may add names to
 * it (unless the sticky bit keeps each name to its owner) or another user owns it: they could plant a
 * link where the start writes. A hand-over's two gateways run as the same user: either passes.
 *
 * A hand-over's predecessor drains while its successor serves, and either may revoke. Each reads what
 * the other appended whenever a lookup finds nothing, before it answers, so that a certificate revoked
 * on one is refused on the other from its rp on: a timer or a watching thread would leave a window.
 * That costs such a lookup an fstat, a third of the hash it takes already.
 *
 * A revocation under way (an rr, a withdrawal) marks its certificate, under the set's lock, from before
 * it asks the set until its entry is in: a second one (the holder's rr while the gateway withdraws the
 * certificate, two rrs at once) waits for it and then finds it revoked, rather than pass the lookup
 * in between and have the CA revoke it twice (cfssl would record the second's reason and time over the
 * first's, and the audit log would hold two revocations). The marks are as many as revocations run at
 * once, at most GW_MAX_REVOKING.
 *
 * With a shared state the mark is taken in Redis too, once this instance's is held (cluster.c: a key per
 * certificate naming the instance, set only where none is, in the same script that finds whether an
 * instance revoked it): a revocation on another instance meanwhile waits for it as one here does, asking
 * again every GW_STATE_REVOKING_POLL_MS, and then finds the certificate in the shared revoked set, which
 * the first put in before it let its mark go. The mark expires with twice the upstream's timeout and
 * GW_STATE_REVOKING_SLACK_MS (cmp_revoked_mark_ms: an rr asks the CA for the certificate's status, then
 * revokes it, under one mark), and its end deletes it only where it is still this instance's: a mark
 * whose end never reached Redis (an instance killed during its call, Redis gone meanwhile) holds the
 * certificate no longer than that, and one that ran out is never taken from the instance that holds it
 * since. A mark that cannot be taken (Redis unreachable) begins nothing (revoked.h).
 *
 * A revocation the shared revoked set could not keep (cmp.max_revoked reached there, a write Redis
 * refused) is not found there by the one that waited for its mark, which would then send it again: its
 * end leaves the mark as "done" instead, which the waiter takes as revoked. That marker lives out the
 * mark's TTL and no longer: past cmp.max_revoked, Redis keeps only the marks of the revocations of that
 * last while. The mark's slot here notes it (unshared) from cmp_revoked_add to cmp_revoked_end, whose one
 * script either deletes the mark or leaves it "done": an end that does not reach Redis leaves the mark
 * to expire, never deleted while the certificate is in no set.
 *
 * A revocation this instance's set could not keep (cmp.max_revoked reached, no memory), or need not (the
 * certificate expired on its clock, before its rr or while at the CA: no set takes an expired one), would
 * likewise not be found here by the one that waited for its mark: without a shared state, nothing else stops
 * that one. Its slot notes it (unkept), and its end, in the same hold of the lock that lets the mark go,
 * remembers it for as long as a shared mark lives (done); cmp_revoked_begin takes what is remembered as
 * revoked, and so does the credential check (cmp_revoked_check), from the note on: the certificate does
 * not authenticate here meanwhile, though its CA's CRL may not list it yet. Those are
 * GW_MAX_REVOKED_UNKEPT at most, the one that ends first forgotten first: a second revocation of it at
 * worst, as before, and the certificate left to its CA's CRL. One expired on this instance's clock goes to
 * the shared set all the same: Redis's clock decides there (gw_cluster_put_revoked), as another instance's
 * clock, behind this one's, may take the certificate as valid still. One expired on Redis's clock too
 * leaves its shared mark "done", as one the shared set did not keep.
 */
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/cluster.h"
#include "base/conf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/x509.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define ID_LEN CMP_REVOKED_ID_LEN
#define FIRST_CAP 64
#define LINE_MAX_LEN (2 * ID_LEN + 1 + 20 + 1) /* id, a space, a time_t in decimal, the newline */
#define LOCK_TRIES 8 /* starts that may replace the file between this one's open and its lock */
#define READ_CHUNK 4096
#define ENTRIES_PER_CERT 2 /* a certificate that names its CA's key is kept by both its names */

/*
 * A file line's notAfter past this one is an entry by issuer and serial marked as kept beside one by the
 * CA's key (its notAfter is the line's less this): no X.509 time is later than 9999-12-31T23:59:59Z
 * (RFC 5280 §4.1.2.5), so no gateway of an earlier version wrote such a line, and each still reads it
 * as an entry that outlives its certificate.
 */
#define MARK_OFFSET 253402300800LL
#define STALE(until) ((until) + GW_REVOKED_KEEP_SECS) /* expired() of this: past keeping, expired or not */

struct revoked_entry {
    unsigned char id[ID_LEN];
    time_t until; /* the certificate's notAfter: no use after it */
    bool marked;  /* by issuer and serial, only ever kept beside one by the CA's key (keyed, not decided) */
};

/*
 * A certificate's names in the set: |plain| by its issuer name and serial (cmp_revoked_id), what a
 * gateway of an earlier version knows it by, and |keyed| with its CA's key identifier as well, where the
 * certificate names it (|has_key|; else |keyed| is |plain|). Two CAs of one name (a migration's old and
 * new, a CA rekeyed) may issue one serial each: |keyed| tells their certificates apart.
 */
struct names {
    unsigned char plain[ID_LEN], keyed[ID_LEN];
    bool has_key;
};

/* |n|'s names in hex, as the shared state's keys hold them. */
static void names_hex(const struct names *n, char keyed[2 * ID_LEN + 1], char plain[2 * ID_LEN + 1])
{
    gw_hex(keyed, n->keyed, ID_LEN);
    gw_hex(plain, n->plain, ID_LEN);
}

/* A revocation under way (its mark), and where cmp_revoked_add could not keep it. */
struct revoking {
    unsigned char id[ID_LEN];
    uint32_t wait_ms; /* its upstream's timeout */
    bool unshared;    /* revoked at the CA, not kept in the shared state */
    bool unkept;      /* revoked at the CA, not kept in this instance's set: remembered once it ends */
};

/* A revocation this instance's set did not keep, remembered for a second one of it (remember). */
struct done_entry {
    unsigned char id[ID_LEN];
    time_t until;
};

struct cmp_revoked {
    pthread_mutex_t lock;
    struct revoked_entry *v; /* sorted by id */
    size_t n, cap;
    size_t n_marked; /* of them marked: |max| counts the unmarked and the marked apart */
    struct revoking revoking[GW_MAX_REVOKING]; /* the certificates being revoked now */
    size_t n_revoking;
    struct done_entry done[GW_MAX_REVOKED_UNKEPT]; /* unkept revocations that ended lately, unsorted */
    size_t n_done;
    pthread_cond_t ended;      /* a revocation under way ended: its mark is gone */
    size_t n_waiting;          /* revocations waiting in mark for now (cmp_revoked_waiting) */
    pthread_mutex_t file_lock; /* one append at a time: a failed one is cut off before the next */
    int fd;                    /* cmp.revoked_file, O_APPEND; -1 without one, or past a failed append */
    char *file;
    uid_t owner;               /* who may write the file, besides root: the user the gateway serves as */
    pthread_mutex_t read_lock; /* one reader at a time of what the file holds past |at| */
    int rfd;                   /* the file |fd| appends to, read-only; -1 without one, or past a read error */
    off_t at;                  /* read up to here: the end of the last whole line read */
    off_t seen;                /* its size then: a line not whole yet is read again once it grew */
    unsigned long no;          /* the lines read so far */
    bool skipping;             /* |at| is within a line no entry, said so already: skipped to its end */
};

/*
 * |cert|'s id: SHA-256 over its issuer name, its CA's |key| identifier (NULL: none) and its serial number
 * (DER each: the tags keep the two forms apart), 128 bits of it. 0, or GW_ERR_CRYPTO.
 */
static int id_of(X509 *cert, const ASN1_OCTET_STRING *key, unsigned char id[ID_LEN])
{
    const unsigned char *name = NULL;
    unsigned char *serial = NULL, *key_der = NULL, md[EVP_MAX_MD_SIZE];
    size_t name_len = 0;
    unsigned int md_len = 0;
    int serial_len = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &serial);
    int key_len = key != NULL ? i2d_ASN1_OCTET_STRING(key, &key_der) : 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && serial_len > 0 && key_len >= 0 && (key == NULL || key_len > 0) &&
             X509_NAME_get0_der(X509_get_issuer_name(cert), &name, &name_len) == 1 &&
             EVP_DigestInit_ex(ctx, gw_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, name, name_len) == 1 &&
             (key_len == 0 || EVP_DigestUpdate(ctx, key_der, (size_t)key_len) == 1) &&
             EVP_DigestUpdate(ctx, serial, (size_t)serial_len) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &md_len) == 1;

    EVP_MD_CTX_free(ctx);
    OPENSSL_free(serial);
    OPENSSL_free(key_der);
    if (!ok)
        return GW_ERR_CRYPTO;
    memcpy(id, md, ID_LEN);
    return 0;
}

int cmp_revoked_id(X509 *cert, unsigned char id[CMP_REVOKED_ID_LEN])
{
    return id_of(cert, NULL, id);
}

/*
 * |cert|'s names in the set (struct names): with its authorityKeyIdentifier's keyIdentifier where it has
 * one (an extension that does not decode counts as none: named by issuer and serial alone, fail closed).
 * 0, or GW_ERR_CRYPTO.
 */
static int names_of(X509 *cert, struct names *n)
{
    const ASN1_OCTET_STRING *key = X509_get0_authority_key_id(cert);

    n->has_key = key != NULL;
    if (id_of(cert, NULL, n->plain) != 0 || (key != NULL && id_of(cert, key, n->keyed) != 0))
        return GW_ERR_CRYPTO;
    if (key == NULL)
        memcpy(n->keyed, n->plain, ID_LEN);
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
 * The entries of |rs| |marked| or not: each kind at most |max|, so that |max| certificates fit, each by
 * one unmarked entry (its keyed one) and at most one marked. Lock held.
 */
static size_t counted(const struct cmp_revoked *rs, bool marked)
{
    return marked ? rs->n_marked : rs->n - rs->n_marked;
}

/*
 * Whether an entry kept until |until| (its certificate's notAfter) is past use at |now|: OpenSSL 3.0 takes
 * a certificate at its very notAfter, and the chain is verified a moment before or after the set is asked
 * (GW_REVOKED_GRACE_SECS). Past keeping (stale) GW_REVOKED_KEEP_SECS later.
 */
static bool expired(time_t until, time_t now)
{
    return until + GW_REVOKED_GRACE_SECS < now;
}

/* Stale entries out, and those of kind |marked| expired by |upto| (0: none), in order. Lock held. */
static void drop_entries(struct cmp_revoked *rs, time_t now, bool marked, time_t upto)
{
    size_t kept = 0;

    rs->n_marked = 0;
    for (size_t i = 0; i < rs->n; i++) {
        struct revoked_entry e = rs->v[i];

        if (expired(STALE(e.until), now) || (e.marked == marked && e.until <= upto && expired(e.until, now)))
            continue;
        rs->n_marked += e.marked;
        rs->v[kept++] = e;
    }
    rs->n = kept;
}

/*
 * Up to which notAfter the expired entries of kind |marked| go for one more of it, |max| held: the first
 * where one is enough, else all (a |max| lowered by a reload); 0 where live ones alone fill |max|. Lock held.
 */
static time_t room_upto(const struct cmp_revoked *rs, size_t max, bool marked, time_t now)
{
    size_t n = 0, need = counted(rs, marked) - max + 1;
    time_t first = 0, last = 0, t;

    for (size_t i = 0; i < rs->n; i++) {
        if (rs->v[i].marked != marked || !expired(t = rs->v[i].until, now))
            continue;
        first = n++ == 0 || t < first ? t : first;
        last = t > last ? t : last;
    }
    return n < need ? 0 : need == 1 ? first : last;
}

/*
 * Room for one more entry, |marked| or not, of at most |max| such: the stale ones out, then where that kind
 * is full what room_upto says, else a larger array; never a live one, so a |max| lowered by a reload below
 * what is kept takes no more until enough expire. Lock held.
 */
static int make_room(struct cmp_revoked *rs, size_t max, bool marked, time_t now)
{
    size_t cap, most;
    struct revoked_entry *v;
    time_t upto = 0; /* room_upto's, where the kind is full */

    if (rs->n < rs->cap && counted(rs, marked) < max)
        return 0;
    drop_entries(rs, now, marked, 0);
    if (counted(rs, marked) >= max && (upto = room_upto(rs, max, marked, now)) == 0)
        return GW_ERR_LIMIT;
    if (upto != 0)
        drop_entries(rs, now, marked, upto);
    if (rs->n < rs->cap)
        return 0;
    /* the other kind may hold more than |max| (a start's file, a cap lowered since): never less than held */
    most = counted(rs, !marked) > max ? counted(rs, !marked) + max : ENTRIES_PER_CERT * max;
    cap = rs->cap == 0 ? FIRST_CAP : 2 * rs->cap;
    cap = cap < most ? cap : most;
    if ((v = realloc(rs->v, cap * sizeof(*v))) == NULL)
        return GW_ERR_NOMEM;
    rs->v = v;
    rs->cap = cap;
    return 0;
}

/*
 * |id| in |rs| until |until|, |marked| (struct revoked_entry) unless it was there unmarked: an entry once
 * unmarked stays so (a gateway of an earlier version wrote it, for a certificate it knew no key of). 1
 * when it was not there yet, or only marked and is no longer (its unmarked line is to be saved, or a start
 * reads the marked one alone), 0 when it was, or GW_ERR_LIMIT or GW_ERR_NOMEM.
 */
static int keep(struct cmp_revoked *rs, const unsigned char *id, time_t until, bool marked, size_t max,
                time_t now)
{
    int found = 0, rc = 0;
    size_t at;

    pthread_mutex_lock(&rs->lock);
    at = position(rs, id, &found);
    if (!found && (rc = make_room(rs, max, marked, now)) == 0) {
        at = position(rs, id, &found); /* make_room may have moved it */
        memmove(&rs->v[at + 1], &rs->v[at], (rs->n - at) * sizeof(*rs->v));
        memcpy(rs->v[at].id, id, ID_LEN);
        rs->v[at].until = 0;
        rs->v[at].marked = marked;
        rs->n_marked += marked;
        rs->n++;
        rc = 1;
    }
    if (rc >= 0 && rs->v[at].until < until)
        rs->v[at].until = until;
    if (rc >= 0 && rs->v[at].marked && !marked) {
        rs->v[at].marked = false;
        rs->n_marked--;
        rc = 1;
    }
    pthread_mutex_unlock(&rs->lock);
    return rc;
}

/*
 * |line| (one of the file's, newline stripped) as an entry, *marked where its notAfter is past
 * MARK_OFFSET: 0, or -1 if it is not one.
 */
static int parse_line(const char *line, unsigned char id[ID_LEN], time_t *until, bool *marked)
{
    const char *digits = line + 2 * ID_LEN + 1;
    char hex[2 * ID_LEN + 1], *end;
    long long t;
    size_t len = 0;

    if (strlen(line) <= 2 * ID_LEN + 1 || line[2 * ID_LEN] != ' ' || *digits < '0' || *digits > '9')
        return -1;
    memcpy(hex, line, 2 * ID_LEN);
    hex[2 * ID_LEN] = '\0';
    errno = 0;
    t = strtoll(digits, &end, 10);
    if (OPENSSL_hexstr2buf_ex(id, ID_LEN, &len, hex, '\0') != 1 || len != ID_LEN || errno != 0 ||
        *end != '\0' || t <= 0)
        return -1;
    *marked = t >= MARK_OFFSET;
    *until = (time_t)(*marked ? t - MARK_OFFSET : t);
    return 0;
}

/* Line rs->no of the file, |len| bytes without its newline, into |rs|: 0, or an error with |err|. */
static int take_line(struct cmp_revoked *rs, const char *p, size_t len, time_t now, char *err)
{
    char line[LINE_MAX_LEN + 1], shown[GW_ERR_LEN];
    unsigned char id[ID_LEN];
    time_t until = 0;
    bool marked = false;
    int ok = len < sizeof(line) && memchr(p, '\0', len) == NULL, rc = 0;

    if (ok) {
        memcpy(line, p, len);
        line[len] = '\0';
        ok = parse_line(line, id, &until, &marked) == 0;
    }
    if (!ok) {
        gw_conf_bprintf(err, GW_ERR_LEN, "cmp.revoked_file: line %lu of \"%s\" is not \"<id> <notAfter>\"",
                        rs->no, gw_conf_show_file(rs->file, shown, sizeof(shown)));
        return GW_ERR_INVAL;
    }
    /* GW_MAX_REVOKED, not cmp.max_revoked: a cap lowered since drops nothing; an expired line gives way to
       live ones filling the set, as an expired entry would */
    if (expired(STALE(until), now) ||
        ((rc = keep(rs, id, until, marked, GW_MAX_REVOKED, now)) == GW_ERR_LIMIT && expired(until, now)))
        return 0;
    if (rc < 0) {
        gw_conf_bprintf(err, GW_ERR_LEN, "cmp.revoked_file: \"%s\" holds more than %d unexpired entries",
                        gw_conf_show_file(rs->file, shown, sizeof(shown)), GW_MAX_REVOKED);
        return GW_ERR_LIMIT;
    }
    return 0;
}

/*
 * The whole lines of |buf| into |rs|; *used: the bytes of them, and of a line skipped. A line without
 * its newline yet is left for the next read (being appended; at start, one a crash cut short before its
 * rr was answered), unless it is longer than any entry. 0, or an error with |err| past the line.
 */
static int take_lines(struct cmp_revoked *rs, const char *buf, size_t n, size_t *used, time_t now, char *err)
{
    const char *p = buf, *end = buf + n, *nl;
    int rc = 0;

    while (rc == 0 && p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL && !rs->skipping && end - p <= LINE_MAX_LEN)
            break;
        if (!rs->skipping) {
            rs->no++;
            rc = take_line(rs, p, (size_t)((nl != NULL ? nl : end) - p), now, err);
        }
        rs->skipping = nl == NULL; /* past any entry's length: the rest of it is skipped too */
        p = nl != NULL ? nl + 1 : end;
    }
    *used = (size_t)(p - buf);
    return rc;
}

/*
 * The file's entries from rs->at up to |size| into |rs|, read_lock held (or starting). An error with |err|
 * stops at the line it says, rs->at past it: a start is refused (the file is the gateway's own, and guessing
 * could let a revoked certificate in); a gateway that serves says so and reads on.
 */
static int read_lines(struct cmp_revoked *rs, off_t size, time_t now, char *err)
{
    char buf[READ_CHUNK], shown[GW_ERR_LEN];
    size_t used = 0;
    ssize_t got;
    int rc;

    while (rs->at < size) {
        got = pread(rs->rfd, buf, (size_t)(size - rs->at < READ_CHUNK ? size - rs->at : READ_CHUNK), rs->at);
        if (got < 0) {
            int why = errno;
            gw_conf_bprintf(err, GW_ERR_LEN, "cmp.revoked_file: cannot read \"%s\": %s",
                            gw_conf_show_file(rs->file, shown, sizeof(shown)), strerror(why));
            return GW_ERR_IO;
        }
        rc = take_lines(rs, buf, (size_t)got, &used, now, err);
        rs->at += (off_t)used;
        if (rc != 0)
            return rc;
        if (used == 0) /* a line not whole yet, or the file cut short since its fstat */
            return 0;
    }
    return 0;
}

/* 0 when only |owner| or root may write |file|, whose status is |st|; else GW_ERR_FORBIDDEN with |err|. */
static int check_writers(const char *file, const struct stat *st, uid_t owner, char *err)
{
    char shown[GW_ERR_LEN];

    if ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0)
        return gw_conf_check_owner("cmp.revoked_file", "", file, st, owner, err);
    gw_conf_bprintf(err, GW_ERR_LEN,
                    "cmp.revoked_file: \"%s\" is writable by group or others (mode %03o): make it 0600",
                    gw_conf_show_file(file, shown, sizeof(shown)), (unsigned)(st->st_mode & 0777));
    return GW_ERR_FORBIDDEN;
}

int cmp_revoked_file_check(const char *file, uid_t owner, char *err)
{
    char shown[GW_ERR_LEN];
    struct stat st;
    int rc = gw_conf_stat_written("cmp.revoked_file", file, owner, &st, err);

    if (rc <= 0)
        return rc;
    if (!S_ISREG(st.st_mode)) { /* a link too: the start opens it with O_NOFOLLOW */
        gw_conf_bprintf(err, GW_ERR_LEN, "cmp.revoked_file: \"%s\" is not a regular file",
                        gw_conf_show_file(file, shown, sizeof(shown)));
        return GW_ERR_IO;
    }
    return check_writers(file, &st, owner, err);
}

/*
 * |file|, |name| in the directory |dir|, opened to be read, the file |fd| appends to: never a link
 * (O_NOFOLLOW), a device or a directory, as it is replaced at start, nor one others may write
 * (check_writers). 0, or an error with |err|.
 */
static int open_reader(struct cmp_revoked *rs, int dir, const char *name, const char *file, int fd,
                       off_t *size, char *err)
{
    int rfd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), why_open = errno;
    const char *why = NULL;
    char shown[GW_ERR_LEN];
    struct stat st, held;

    gw_conf_show_file(file, shown, sizeof(shown));
    if (rfd < 0) {
        gw_conf_bprintf(err, GW_ERR_LEN, "cmp.revoked_file: cannot read \"%s\": %s", shown,
                        strerror(why_open));
        return GW_ERR_IO;
    }
    if (fstat(rfd, &st) != 0 || !S_ISREG(st.st_mode))
        why = "is not a regular file";
    else if (fstat(fd, &held) != 0 || st.st_dev != held.st_dev || st.st_ino != held.st_ino)
        why = "was replaced as it was opened";
    else if (st.st_nlink != 1) /* a hard link to another file, which the start would append to */
        why = "has more than one name (a hard link): give the file a name of its own";
    if (why != NULL)
        gw_conf_bprintf(err, GW_ERR_LEN, "cmp.revoked_file: \"%s\" %s", shown, why);
    if (why != NULL || check_writers(file, &st, rs->owner, err) != 0) {
        close(rfd);
        return GW_ERR_IO;
    }
    if (rs->rfd >= 0)
        close(rs->rfd);
    rs->rfd = rfd;
    *size = st.st_size;
    return 0;
}

/*
 * The file's line for |id| until |until|, |marked| or not, as parse_line reads it: the one shape a gateway
 * of an earlier version reads too (any other line refuses its start). Its length.
 */
static int entry_line(char line[LINE_MAX_LEN + 1], const unsigned char *id, time_t until, bool marked)
{
    char hex[2 * ID_LEN + 1];

    gw_hex(hex, id, ID_LEN);
    return snprintf(line, LINE_MAX_LEN + 1, "%s %lld\n", hex, (long long)until + (marked ? MARK_OFFSET : 0));
}

/* The entries of |rs| into |f|, one line each. 0, or -1. */
static int write_entries(const struct cmp_revoked *rs, FILE *f)
{
    char line[LINE_MAX_LEN + 1];

    for (size_t i = 0; i < rs->n; i++) {
        (void)entry_line(line, rs->v[i].id, rs->v[i].until, rs->v[i].marked);
        if (fputs(line, f) < 0)
            return -1;
    }
    return fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -1;
}

/*
 * |tmp| created in |dir| for the entries to replace the file with: a new regular file of this gateway's,
 * never one found there, which is the stale temporary of a start that crashed (a start rewrites only
 * while it holds the file exclusively) or one planted where the sticky bit lets others add names.
 * unlink takes the name, never what a link names, and O_EXCL refuses whatever took it again since, a
 * link too. fd, or -1 with errno.
 */
static int create_tmp(int dir, const char *tmp)
{
    if (unlinkat(dir, tmp, 0) != 0 && errno != ENOENT)
        return -1;
    return openat(dir, tmp, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

/*
 * |file|, |name| in the directory |dir|, replaced by the entries of |rs| as a whole (a crash leaves the
 * old file or the new one, never less), and kept open for the appends to come, held shared from before
 * it has its name. 0, or GW_ERR_IO with |err|.
 */
static int rewrite(struct cmp_revoked *rs, int dir, const char *name, const char *file, char *err)
{
    char tmp[PATH_MAX], shown[GW_ERR_LEN];
    int fd = -1, copy = -1, dfd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* |dir| is O_PATH */
    FILE *f = NULL;
    int ok;

    ok = snprintf(tmp, sizeof(tmp), "%s.new", name) < (int)sizeof(tmp) && dfd >= 0 &&
         (fd = create_tmp(dir, tmp)) >= 0 && flock(fd, LOCK_SH) == 0 && (copy = dup(fd)) >= 0 &&
         (f = fdopen(copy, "w")) != NULL;
    if (f == NULL && copy >= 0)
        close(copy);
    ok = ok && write_entries(rs, f) == 0;
    if (f != NULL)
        ok = fclose(f) == 0 && ok;
    /* what others append is read from the end of this gateway's own lines on */
    ok = ok && (rs->at = lseek(fd, 0, SEEK_END)) >= 0;
    ok = ok && renameat(dir, tmp, dir, name) == 0 && fsync(dfd) == 0;
    if (ok) {
        rs->fd = fd;
        rs->no = rs->n;
    } else {
        int why = errno;
        gw_conf_bprintf(err, GW_ERR_LEN, "cmp.revoked_file: cannot rewrite \"%s\": %s",
                        gw_conf_show_file(file, shown, sizeof(shown)), strerror(why));
        (void)unlinkat(dir, tmp, 0);
        if (fd >= 0)
            close(fd);
    }
    if (dfd >= 0)
        close(dfd);
    return ok ? 0 : GW_ERR_IO;
}

/*
 * |name| in the directory |dir| open for appends and locked: exclusively (*excl) where no other gateway
 * appends to it, else shared. A lock had on a file another start replaced meanwhile (opened before its
 * rename, locked once it let the old file go) is on a file no start reads again: the name is opened
 * anew. fd, or -1 with errno.
 */
static int lock_file(int dir, const char *name, int *excl)
{
    for (int tries = 0; tries < LOCK_TRIES; tries++) {
        /* O_NONBLOCK: a FIFO there is refused (ENXIO, or by load), not waited on */
        int fd = openat(dir, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600),
            named = -1, saved;
        struct stat st;

        if (fd < 0)
            return -1;
        *excl = flock(fd, LOCK_EX | LOCK_NB) == 0;
        if (*excl || (errno == EWOULDBLOCK && flock(fd, LOCK_SH) == 0))
            named = gw_conf_still_named(fd, dir, name, &st);
        if (named == 1)
            return fd;
        saved = errno;
        close(fd);
        errno = saved;
        if (named < 0)
            return -1;
    }
    errno = EAGAIN; /* replaced as often as it was opened */
    return -1;
}

/*
 * |file| read and kept open for the appends to come, and to be read on. Every gateway appending to it
 * holds it shared (flock): where none does it is rewritten, read under the lock that keeps any from
 * appending meanwhile; where one does (a predecessor draining after a hand-over, which may still
 * revoke) it is kept as it is, or what that one appends would go to a file no longer there. 0, or an
 * error with |err|.
 */
static int take_file(struct cmp_revoked *rs, const char *file, time_t now, char *err)
{
    char shown[GW_ERR_LEN];
    const char *name;
    int excl = 0, rc, fd, dir;
    off_t size = 0;

    /* every name opened from the directory judged: never walked again by its path */
    if ((rc = gw_conf_open_dir("cmp.revoked_file", file, rs->owner, &dir, &name, err)) != 0)
        return rc;
    gw_conf_show_file(file, shown, sizeof(shown));
    if ((fd = lock_file(dir, name, &excl)) < 0) {
        gw_conf_bprintf(err, GW_ERR_LEN, "cmp.revoked_file: cannot open \"%s\": %s", shown,
                        errno == ENXIO ? "not a regular file (a FIFO)" : strerror(errno));
        close(dir);
        return GW_ERR_IO;
    }
    if ((rc = open_reader(rs, dir, name, file, fd, &size, err)) == 0)
        rc = read_lines(rs, size, now, err);
    /* rewritten, the new file is kept open, shared */
    if (rc == 0 && excl && (rc = rewrite(rs, dir, name, file, err)) == 0)
        rc = open_reader(rs, dir, name, file, rs->fd, &size, err);
    rs->seen = size;
    if (rc == 0 && !excl)
        rs->fd = fd;
    else
        close(fd); /* only now: no other start rewrites it meanwhile */
    close(dir);
    return rc;
}

struct cmp_revoked *cmp_revoked_new(const char *file, uid_t owner, time_t now, int *rc, char *err)
{
    struct cmp_revoked *rs = calloc(1, sizeof(*rs));

    snprintf(err, GW_ERR_LEN, "out of memory");
    *rc = GW_ERR_NOMEM; /* calloc, strdup, the condition's attributes */
    if (rs == NULL)
        return NULL;
    pthread_mutex_init(&rs->lock, NULL);
    if (gw_cond_init_monotonic(&rs->ended) != 0) {
        pthread_mutex_destroy(&rs->lock);
        free(rs);
        return NULL;
    }
    pthread_mutex_init(&rs->file_lock, NULL);
    pthread_mutex_init(&rs->read_lock, NULL);
    rs->fd = -1;
    rs->rfd = -1;
    rs->owner = owner;
    if (file != NULL && ((rs->file = strdup(file)) == NULL || (*rc = take_file(rs, file, now, err)) != 0)) {
        cmp_revoked_free(rs);
        return NULL;
    }
    return rs;
}

void cmp_revoked_free(struct cmp_revoked *rs)
{
    if (rs == NULL)
        return;
    if (rs->fd >= 0)
        close(rs->fd);
    if (rs->rfd >= 0)
        close(rs->rfd);
    pthread_mutex_destroy(&rs->lock);
    pthread_cond_destroy(&rs->ended);
    pthread_mutex_destroy(&rs->file_lock);
    pthread_mutex_destroy(&rs->read_lock);
    free(rs->v);
    free(rs->file);
    free(rs);
}

/*
 * After an append at |end| wrote |n| bytes of a |len|-byte line: 1 when the file holds no half line of
 * it (nothing written, the line whole though its fsync failed, or the half cut off), 0 when the half
 * must stay. Only this append's bytes are cut: where the file grew by more than them since |end|,
 * another gateway appended after them (a hand-over's predecessor), and cutting would take its line.
 */
static int cut_short_write(int fd, off_t end, ssize_t n, int len)
{
    if (n <= 0 || n == len)
        return 1;
    return lseek(fd, 0, SEEK_END) == end + n && ftruncate(fd, end) == 0;
}

/*
 * The certificate named |names| until |until| appended to the file, on disk, before the rr is answered: its
 * keyed entry and, where it has a key, its entry by issuer and serial marked, in one write. 0, or -1 with
 * |err|. A half line a failed append left is cut off, or the next one would run into it; where it cannot
 * be, no more is appended (a last line without its newline is dropped at start).
 */
static int save(struct cmp_revoked *rs, const struct names *names, time_t until, char *err)
{
    char line[ENTRIES_PER_CERT * (LINE_MAX_LEN + 1)], shown[GW_ERR_LEN];
    int len = entry_line(line, names->keyed, until, false), ok;
    off_t end = -1;
    ssize_t n = -1;

    if (rs->file == NULL)
        return 0;
    if (names->has_key)
        len += entry_line(line + len, names->plain, until, true);
    pthread_mutex_lock(&rs->file_lock);
    errno = 0;
    ok = rs->fd >= 0 && (end = lseek(rs->fd, 0, SEEK_END)) >= 0 &&
         (n = write(rs->fd, line, (size_t)len)) == len && fsync(rs->fd) == 0;
    if (!ok && rs->fd < 0) {
        gw_conf_bprintf(err, GW_ERR_LEN,
                        "cmp.revoked_file \"%s\" is appended to no more since an append failed",
                        gw_conf_show_file(rs->file, shown, sizeof(shown)));
    } else if (!ok) {
        int why = errno;
        gw_conf_bprintf(err, GW_ERR_LEN, "cannot append to cmp.revoked_file \"%s\": %s",
                        gw_conf_show_file(rs->file, shown, sizeof(shown)),
                        why != 0 ? strerror(why) : "a short write");
        if (!cut_short_write(rs->fd, end, n, len)) {
            close(rs->fd);
            rs->fd = -1;
        }
    }
    pthread_mutex_unlock(&rs->file_lock);
    return ok ? 0 : -1;
}

/* Where |id| is among the revocations under way, or rs->n_revoking. Lock held. */
static size_t revoking_at(const struct cmp_revoked *rs, const unsigned char *id)
{
    size_t i = 0;

    while (i < rs->n_revoking && memcmp(rs->revoking[i].id, id, ID_LEN) != 0)
        i++;
    return i;
}

/*
 * The revocation of |id| under way, if any, reached the CA but not the shared state (|not_shared|) or
 * this instance's set (|not_kept|): cmp_revoked_end leaves a trace of it instead. Whether one was under
 * way (a withdrawal whose cmp_revoked_begin failed goes ahead unmarked, and leaves none).
 */
static bool set_missed(struct cmp_revoked *rs, const unsigned char *id, bool not_shared, bool not_kept)
{
    size_t at;
    bool marked;

    pthread_mutex_lock(&rs->lock);
    if ((marked = (at = revoking_at(rs, id)) < rs->n_revoking)) {
        rs->revoking[at].unshared |= not_shared;
        rs->revoking[at].unkept |= not_kept;
    }
    pthread_mutex_unlock(&rs->lock);
    return marked;
}

/*
 * Where to remember |id|: its own entry, an expired one, a new one, or where all are live the one that
 * ends first (a second revocation of that one may then reach the CA again, as before it was remembered).
 * Lock held.
 */
static size_t done_slot(struct cmp_revoked *rs, const unsigned char *id, time_t now)
{
    size_t first = 0;

    for (size_t i = 0; i < rs->n_done; i++)
        if (memcmp(rs->done[i].id, id, ID_LEN) == 0)
            return i;
    for (size_t i = 0; i < rs->n_done; i++) {
        if (rs->done[i].until <= now)
            return i;
        if (rs->done[i].until < rs->done[first].until)
            first = i;
    }
    return rs->n_done < GW_MAX_REVOKED_UNKEPT ? rs->n_done++ : first;
}

uint32_t cmp_revoked_mark_ms(uint32_t wait_ms)
{
    _Static_assert(2ull * GW_MAX_UPSTREAM_TIMEOUT_MS + GW_STATE_REVOKING_SLACK_MS <= UINT32_MAX, "fits");

    return 2 * wait_ms + GW_STATE_REVOKING_SLACK_MS;
}

/*
 * |id|, revoked at the CA but not kept in the set, remembered from |now| for as long as a shared mark
 * lives (cmp_revoked_mark_ms of its upstream's timeout |wait_ms|): a revocation of it that waited for this
 * one's mark, or begins meanwhile, finds it revoked (remembered). Lock held.
 */
static void remember(struct cmp_revoked *rs, const unsigned char *id, uint32_t wait_ms, time_t now)
{
    size_t at = done_slot(rs, id, now);

    memcpy(rs->done[at].id, id, ID_LEN);
    rs->done[at].until = now + (time_t)((cmp_revoked_mark_ms(wait_ms) + 999) / 1000);
}

/*
 * Whether a revocation of |id| this instance's set did not keep ended lately (remember), or reached the CA
 * and is ending (unkept, not remembered until its mark goes). Lock held.
 */
static bool remembered(const struct cmp_revoked *rs, const unsigned char *id, time_t now)
{
    size_t at;

    for (size_t i = 0; i < rs->n_done; i++)
        if (memcmp(rs->done[i].id, id, ID_LEN) == 0 && rs->done[i].until > now)
            return true;
    return (at = revoking_at(rs, id)) < rs->n_revoking && rs->revoking[at].unkept;
}

/* Whether |id| is in the set unexpired, and unmarked unless |marked| counts. Lock held. */
static bool holds(const struct cmp_revoked *rs, const unsigned char *id, time_t now, bool marked)
{
    int found = 0;
    size_t at = position(rs, id, &found);

    return found && !expired(rs->v[at].until, now) && (marked || !rs->v[at].marked);
}

/*
 * Whether the certificate named |n| is in the set unexpired, or remembered: all in one hold of the lock.
 * By its keyed entry, or by its entry by issuer and serial unless that is marked and it has a key: a marked
 * one was kept beside its keyed entry, maybe another CA's certificate's under the same name and serial,
 * and the keyed entry decides; an unmarked one (a gateway of an earlier version's) is taken as it was.
 */
static bool known(struct cmp_revoked *rs, const struct names *n, time_t now)
{
    bool found;

    pthread_mutex_lock(&rs->lock);
    found = holds(rs, n->keyed, now, true) || holds(rs, n->plain, now, !n->has_key) ||
            remembered(rs, n->plain, now);
    pthread_mutex_unlock(&rs->lock);
    return found;
}

/*
 * The certificate named |n| in |rs| until |until| (cmp.max_revoked |max|): its keyed entry and, where it
 * has a key, its entry by issuer and serial, marked, for a gateway of an earlier version reading the file.
 * What keep says of the keyed entry, which decides here; 1 also where only the other is new.
 */
static int keep_names(struct cmp_revoked *rs, const struct names *n, time_t until, uint32_t max, time_t now)
{
    int rc = keep(rs, n->keyed, until, false, max, now);

    if (rc >= 0 && n->has_key && keep(rs, n->plain, until, true, max, now) == 1)
        rc = 1;
    return rc;
}

/*
 * |n| (notAfter |until|) kept in this instance's set, and its file: 0, or the CMP_REVOKED_NOT_* bit of
 * where it is not with |err|; *|marked| false where that was noted on no revocation under way.
 */
static int keep_here(struct gw_cmp_engine *e, const struct names *n, time_t until, time_t now, bool *marked,
                     char *err)
{
    uint32_t max = e->cfg.cmp->max_revoked;
    int rc = keep_names(e->revoked, n, until, max, now);

    if (rc == 1 && save(e->revoked, n, until, err) != 0)
        return CMP_REVOKED_NOT_SAVED;
    if (rc >= 0)
        return 0;
    *marked = set_missed(e->revoked, n->plain, false, true);
    if (rc == GW_ERR_LIMIT)
        snprintf(err, GW_ERR_LEN, "this instance keeps %u unexpired revocations already (cmp.max_revoked)",
                 max);
    else
        snprintf(err, GW_ERR_LEN, "out of memory");
    return CMP_REVOKED_NOT_HERE;
}

/*
 * |n| (notAfter |until|) put in the shared state: 0, or CMP_REVOKED_NOT_SHARED with |err| (unless |missed|:
 * it says why already); *|marked| as keep_here's. Expired on Redis's clock, it is kept there by no instance,
 * which none needs, but is noted as not shared: a revocation waiting for this one's mark finds it revoked.
 */
static int share(struct gw_cmp_engine *e, const struct names *n, time_t until, int missed, bool *marked,
                 char *err)
{
    char hex[2 * ID_LEN + 1], plain[2 * ID_LEN + 1], why[GW_ERR_LEN] = "";
    int rc;

    names_hex(n, hex, plain);
    if ((rc = gw_cluster_put_revoked(e->cluster, hex, plain, until, e->cfg.cmp->max_revoked, why)) == 1)
        (void)set_missed(e->revoked, n->plain, true, false);
    if (rc >= 0)
        return 0;
    if (missed == 0)
        snprintf(err, GW_ERR_LEN, "%s", why);
    *marked = set_missed(e->revoked, n->plain, true, false);
    return CMP_REVOKED_NOT_SHARED;
}

int cmp_revoked_add(struct gw_cmp_engine *e, X509 *cert, time_t now, char *err)
{
    struct names n;
    time_t until = 0;
    int missed = 0;
    bool marked = true;

    if (gw_asn1_time(X509_get0_notAfter(cert), &until) != 0 || names_of(cert, &n) != 0) {
        snprintf(err, GW_ERR_LEN, "its issuer, serial or notAfter cannot be read");
        return CMP_REVOKED_NOT_HERE | CMP_REVOKED_UNMARKED |
               (e->cluster != NULL ? CMP_REVOKED_NOT_SHARED : 0);
    }
    /* expired on this clock (before its rr, or while at the CA): a revocation waiting for this one's mark
       is told (remembered); kept too within GW_REVOKED_KEEP_SECS: a clock running ahead may be set back,
       and the certificate be valid again (as a start keeps such lines) */
    if (expired(until, now))
        (void)set_missed(e->revoked, n.plain, false, true);
    if (!expired(STALE(until), now))
        missed = keep_here(e, &n, until, now, &marked, err);
    /* shared even when not kept here, expired or not: the other instances' clocks, and Redis's, decide */
    if (e->cluster != NULL)
        missed |= share(e, &n, until, missed, &marked, err);
    return missed != 0 && !marked ? missed | CMP_REVOKED_UNMARKED : missed;
}

/*
 * What other gateways appended to the file since it was last read into |rs|: whether there was any. A
 * line that is no entry is skipped, said at error level (the next start refuses the file until it is
 * mended); a read that fails ends the reading, as each lookup would fail it again, and so does a file
 * others may write by now (its lines are not taken, as at start).
 */
static bool read_appended(struct cmp_revoked *rs, time_t now)
{
    char err[GW_ERR_LEN];
    struct stat st;
    bool grew;
    int rc;

    if (rs->file == NULL)
        return false;
    pthread_mutex_lock(&rs->read_lock);
    grew = rs->rfd >= 0 && fstat(rs->rfd, &st) == 0 && st.st_size != rs->seen;
    while (grew && ((rc = check_writers(rs->file, &st, rs->owner, err)) != 0 ||
                    (rc = read_lines(rs, st.st_size, now, err)) != 0)) {
        if (rc == GW_ERR_FORBIDDEN)
            rc = GW_ERR_IO; /* read no more of it: each lookup would find it so again */
        gw_log_kv(GW_LOG_ERROR, "revoked_file_unread", "reason", err, "msg",
                  rc == GW_ERR_IO
                      ? "what other gateways revoke is known here from the next start only"
                      : "that line is skipped; the next start refuses the file until it is mended",
                  NULL);
        if (rc == GW_ERR_IO) {
            close(rs->rfd);
            rs->rfd = -1;
            break;
        }
    }
    if (grew)
        rs->seen = st.st_size;
    pthread_mutex_unlock(&rs->read_lock);
    return grew;
}

/*
 * Whether the certificate named |n| was revoked through this instance (kept or remembered), or through
 * another gateway appending to its file.
 */
static bool revoked_here(struct cmp_revoked *rs, const struct names *n, time_t now)
{
    /* a hand-over's other gateway may have revoked it since the file was last read */
    return known(rs, n, now) || (read_appended(rs, now) && known(rs, n, now));
}

/* cmp_revoked_check of the certificate named |n|. */
static int check_names(struct gw_cmp_engine *e, const struct names *n, time_t now, char *err)
{
    char hex[2 * ID_LEN + 1], plain[2 * ID_LEN + 1];

    /* what the set could not keep is remembered for a while: refused then, as a second revocation is */
    if (revoked_here(e->revoked, n, now))
        return 1;
    if (e->cluster == NULL)
        return 0;
    names_hex(n, hex, plain);
    return gw_cluster_revoked(e->cluster, hex, plain, err);
}

int cmp_revoked_check(struct gw_cmp_engine *e, X509 *cert, time_t now, char *err)
{
    struct names n;

    if (names_of(cert, &n) != 0) {
        snprintf(err, GW_ERR_LEN, "the certificate's issuer and serial cannot be read");
        return GW_ERR_CRYPTO;
    }
    return check_names(e, &n, now, err);
}

int cmp_revoked_check_id(struct gw_cmp_engine *e, const unsigned char id[CMP_REVOKED_ID_LEN], time_t now,
                         char *err)
{
    struct names n = {.has_key = false};

    memcpy(n.plain, id, ID_LEN);
    memcpy(n.keyed, id, ID_LEN);
    return check_names(e, &n, now, err);
}

/*
 * |id| marked as under way, once no other revocation of it is and a mark is free, waiting at most until
 * |until_ms| (gw_now_ms): 0, or GW_ERR_BUSY.
 */
static int mark(struct cmp_revoked *rs, const unsigned char *id, uint32_t wait_ms, uint64_t until_ms)
{
    /* gw_now_ms is the condition's clock (cmp_revoked_new) */
    struct timespec until = gw_timespec_ms(until_ms);
    int late = 0, rc = GW_ERR_BUSY;

    pthread_mutex_lock(&rs->lock);
    while (revoking_at(rs, id) < rs->n_revoking || rs->n_revoking >= GW_MAX_REVOKING) {
        if (late)
            break;
        rs->n_waiting++;
        late = pthread_cond_timedwait(&rs->ended, &rs->lock, &until) == ETIMEDOUT;
        rs->n_waiting--;
    }
    if (revoking_at(rs, id) == rs->n_revoking && rs->n_revoking < GW_MAX_REVOKING) {
        rs->revoking[rs->n_revoking] = (struct revoking){.wait_ms = wait_ms};
        memcpy(rs->revoking[rs->n_revoking++].id, id, ID_LEN);
        rc = 0;
    }
    pthread_mutex_unlock(&rs->lock);
    return rc;
}

size_t cmp_revoked_waiting(struct cmp_revoked *rs)
{
    size_t n;

    pthread_mutex_lock(&rs->lock);
    n = rs->n_waiting;
    pthread_mutex_unlock(&rs->lock);
    return n;
}

/* The mark of |id| taken off at |now|; a revocation the set did not keep remembered first. */
static void unmark(struct cmp_revoked *rs, const unsigned char *id, time_t now)
{
    size_t at;

    pthread_mutex_lock(&rs->lock);
    if ((at = revoking_at(rs, id)) < rs->n_revoking) {
        /* in the same hold of the lock: a revocation of it waiting for the mark finds it remembered */
        if (rs->revoking[at].unkept)
            remember(rs, id, rs->revoking[at].wait_ms, now);
        rs->revoking[at] = rs->revoking[rs->n_revoking - 1];
        rs->n_revoking--;
        pthread_cond_broadcast(&rs->ended);
    }
    pthread_mutex_unlock(&rs->lock);
}

/*
 * The certificate named |n| marked in the shared state as well (by issuer and serial), once no other
 * instance's revocation of it holds the mark, waited for until |until_ms| (gw_now_ms): 0; 1 when an instance
 * revoked it (nothing marked); GW_ERR_BUSY or GW_ERR_UNAVAILABLE with |err|. The mark lives
 * cmp_revoked_mark_ms of the upstream's timeout |wait_ms| at most. (worker)
 */
static int mark_shared(struct gw_cmp_engine *e, const struct names *n, uint32_t wait_ms, uint64_t until_ms,
                       char *err)
{
    char hex[2 * ID_LEN + 1], plain[2 * ID_LEN + 1];
    uint32_t ttl_ms = cmp_revoked_mark_ms(wait_ms);
    int rc;

    names_hex(n, hex, plain);
    while ((rc = gw_cluster_mark_revoking(e->cluster, hex, plain, ttl_ms, err)) == GW_ERR_BUSY &&
           gw_now_ms() < until_ms)
        gw_sleep_ms(GW_STATE_REVOKING_POLL_MS);
    if (rc == GW_ERR_BUSY)
        snprintf(err, GW_ERR_LEN, "another instance's revocation of it did not end within %u ms", wait_ms);
    return rc;
}

int cmp_revoked_begin(struct gw_cmp_engine *e, X509 *cert, uint32_t wait_ms, char *err)
{
    struct names n;
    uint64_t until_ms = gw_now_ms() + wait_ms;
    time_t now;
    int rc = 0;

    if (names_of(cert, &n) != 0) {
        snprintf(err, GW_ERR_LEN, "the certificate's issuer and serial cannot be read");
        return GW_ERR_CRYPTO;
    }
    /* marked by issuer and serial, as a gateway of an earlier version marks it: one at a time across them */
    if (mark(e->revoked, n.plain, wait_ms, until_ms) != 0) {
        snprintf(err, GW_ERR_LEN, "another revocation of it, or %d revocations, did not end within %u ms",
                 GW_MAX_REVOKING, wait_ms);
        return GW_ERR_BUSY;
    }
    /* asked once marked: what a revocation that ended meanwhile put in, what other gateways did (the
       shared state's answer comes with its mark) */
    now = e->clock != NULL ? e->clock() : time(NULL);
    if (revoked_here(e->revoked, &n, now))
        rc = 1;
    else if (e->cluster != NULL)
        rc = mark_shared(e, &n, wait_ms, until_ms, err);
    if (rc != 0)
        unmark(e->revoked, n.plain, now);
    return rc;
}

/* Whether the revocation of |id| under way reached the CA but not the shared state (set_missed). */
static bool unshared(struct cmp_revoked *rs, const unsigned char *id)
{
    size_t at;
    bool v = false;

    pthread_mutex_lock(&rs->lock);
    if ((at = revoking_at(rs, id)) < rs->n_revoking)
        v = rs->revoking[at].unshared;
    pthread_mutex_unlock(&rs->lock);
    return v;
}

void cmp_revoked_end(struct gw_cmp_engine *e, X509 *cert)
{
    unsigned char id[ID_LEN];
    char hex[2 * ID_LEN + 1];

    if (cmp_revoked_id(cert, id) != 0)
        return;
    /* the shared mark first, while this instance's holds: a revocation of it here that began in between
       would take the mark as its own (cluster.c), and this end would delete it */
    if (e->cluster != NULL) {
        gw_hex(hex, id, ID_LEN);
        gw_cluster_unmark_revoking(e->cluster, hex, unshared(e->revoked, id));
    }
    unmark(e->revoked, id, e->clock != NULL ? e->clock() : time(NULL));
}
