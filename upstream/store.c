/*
 * The local issuer's inventory on disk. A certificate is recorded with the classic durable-create
 * sequence (write a temporary file, fsync it, give it its final name, fsync the directory) so
 * that after a crash a file under its final name is always complete. The final name is made with
 * link(2), not rename(2): a serial already recorded is an error, never silently overwritten.
 */
#include "upstream/store.h"
#include "upstream/store_int.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/x509.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define PEM_SUFFIX ".pem"
#define TMP_SUFFIX ".tmp"

static int write_all(int fd, const char *p, size_t n)
{
    ssize_t w;

    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -1 : (errno = EIO, -1);
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * A temporary name for |name| that no other writer uses at the same time: a crash, or a second
 * writer of the same serial (two rr at once), must never leave a name behind that blocks the next
 * one. Hidden (leading dot), so listings skip it; gw_store_sweep removes the ones a crash left.
 */
void store_tmp_name(char *out, size_t cap, const char *name)
{
    static atomic_uint counter;
    unsigned int salt = 0;

    (void)RAND_bytes((unsigned char *)&salt, sizeof(salt)); /* other processes sharing the store */
    snprintf(out, cap, ".%s.%ld.%u.%08x" TMP_SUFFIX, name, (long)getpid(), atomic_fetch_add(&counter, 1),
             salt);
}

/* Writes |pem| to <dirfd>/|tmp| and fsyncs it. 0, or -1 with errno. */
int store_write_tmp(int dirfd, const char *tmp, const char *pem, size_t len)
{
    int fd, e;

    /* O_EXCL | O_NOFOLLOW: never write through a link someone else left in the store */
    if ((fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0)
        return -1;
    if (write_all(fd, pem, len) != 0 || fsync(fd) != 0) {
        e = errno;
        close(fd);
        unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    if (close(fd) != 0) {
        e = errno;
        unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    return 0;
}

static atomic_int dir_syncs_failing; /* how many of the next sync_dir() fail: a test's (below) */

void gw_store_test_fail_dir_syncs(int n)
{
    atomic_store(&dir_syncs_failing, n);
}

/* fsync of the directory |dirfd| once a name was linked into it: 0, or -1 with errno. */
static int sync_dir(int dirfd)
{
    if (atomic_load(&dir_syncs_failing) > 0 && atomic_fetch_sub(&dir_syncs_failing, 1) > 0)
        return errno = EIO, -1;
    return fsync(dirfd);
}

/* Links |tmp| to |name| in |dirfd| and drops |tmp|. 0, or a gw_err with errno set. */
static int link_tmp(int dirfd, const char *tmp, const char *name)
{
    int rc = 0, e = 0;

    if (linkat(dirfd, tmp, dirfd, name, 0) != 0) {
        e = errno;
        rc = e == EEXIST ? GW_ERR_EXISTS : GW_ERR_IO;
    }
    unlinkat(dirfd, tmp, 0);
    errno = e;
    return rc;
}

/* Links |tmp| to |name| in |dirfd|, drops |tmp|, fsyncs the directory. 0, or a gw_err with errno set. */
static int publish(int dirfd, const char *tmp, const char *name)
{
    int rc, e;

    if ((rc = link_tmp(dirfd, tmp, name)) != 0 || sync_dir(dirfd) == 0)
        return rc;
    e = errno;
    unlinkat(dirfd, name, 0); /* not durable: not released either */
    errno = e;
    return GW_ERR_IO;
}

void store_fail(char *err, const char *dir, const char *fmt, ...)
{
    char shown[GW_ERR_LEN], what[GW_ERR_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    gw_conf_bprintf(err, GW_ERR_LEN, "store %s%s", gw_conf_show_file(dir, shown, sizeof(shown)), what);
}

int gw_store_put(const char *dir, const X509 *cert, char *err)
{
    char serial[2 * 20 + 1], name[sizeof(serial) + 8], tmp[TMP_NAME_MAX];
    BIO *mem = NULL;
    char *pem = NULL;
    long len;
    int dirfd = -1, rc = GW_ERR_IO;

    gw_x509_cert_serial_hex(cert, serial, sizeof(serial));
    snprintf(name, sizeof(name), "%s" PEM_SUFFIX, serial);
    store_tmp_name(tmp, sizeof(tmp), name);
    if (serial[0] == '\0' || (mem = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509(mem, cert) != 1 ||
        (len = BIO_get_mem_data(mem, &pem)) <= 0) {
        store_fail(err, dir, ": cannot encode the certificate");
        rc = GW_ERR_NOMEM;
        goto out;
    }
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        store_write_tmp(dirfd, tmp, pem, (size_t)len) != 0) {
        store_fail(err, dir, ": cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if ((rc = publish(dirfd, tmp, name)) != 0) {
        store_fail(err, dir, ": cannot record %s: %s", name,
                   rc == GW_ERR_EXISTS ? "that serial is already recorded" : strerror(errno));
        goto out;
    }
out:
    if (dirfd >= 0)
        close(dirfd);
    BIO_free(mem);
    return rc;
}

/*
 * A link named as the store is judged nowhere: the checks follow it to a directory whose own parent
 * is not the link's, and whoever may replace the link (a writer of its directory, or its owner where
 * the sticky bit is set) points the store elsewhere between two uses. The store is named as the
 * directory itself. Trailing slashes are left out: lstat would follow the link through them. 0, or
 * an error with |err|.
 */
static int check_not_link(const char *key, const char *dir, char *err)
{
    char name[PATH_MAX], *real, shown[GW_ERR_LEN];
    size_t len = strlen(dir);
    struct stat st;

    gw_conf_show_file(dir, shown, sizeof(shown));
    while (len > 1 && dir[len - 1] == '/')
        len--;
    if (len >= sizeof(name)) {
        gw_conf_bprintf(err, GW_ERR_LEN, "%s: the path \"%s\" is too long", key, shown);
        return GW_ERR_INVAL;
    }
    memcpy(name, dir, len);
    name[len] = '\0';
    if (lstat(name, &st) != 0 || !S_ISLNK(st.st_mode))
        return 0; /* what is not there is refused by the checks of the directory */
    real = realpath(name, NULL);
    gw_conf_bprintf(err, GW_ERR_LEN, "%s: \"%s\" is a symbolic link%s%s%s: name the directory itself", key,
                    shown, real != NULL ? " to \"" : "", real != NULL ? real : "", real != NULL ? "\"" : "");
    free(real);
    return GW_ERR_FORBIDDEN;
}

int gw_store_check(const char *key, const char *dir, uid_t owner, char *err)
{
    char revoked[PATH_MAX], shown[GW_ERR_LEN];
    struct stat st;
    int rc;

    if ((rc = check_not_link(key, dir, err)) != 0 || (rc = gw_conf_check_dir(key, dir, owner, err)) != 0 ||
        (rc = gw_conf_check_own_dir(key, dir, owner, err)) != 0)
        return rc;
    if (snprintf(revoked, sizeof(revoked), "%s/" GW_STORE_REVOKED_DIR, dir) >= (int)sizeof(revoked)) {
        gw_conf_bprintf(err, GW_ERR_LEN, "%s: the path \"%s\" is too long", key,
                        gw_conf_show_file(dir, shown, sizeof(shown)));
        return GW_ERR_INVAL;
    }
    if (lstat(revoked, &st) == 0 || errno != ENOENT) { /* revoked/ is made when the first revocation is */
        if ((rc = check_not_link(key, revoked, err)) != 0 ||
            (rc = gw_conf_check_own_dir(key, revoked, owner, err)) != 0)
            return rc;
    }
    return store_check_crl_files(key, dir, owner, err);
}

/* ---- listing (cmpgw inventory) ---- */

/* Appends |s| (|n| bytes) to the heap string |*out| as the shared escaper writes plain text. */
static int append(char **out, size_t *len, const char *s, size_t n)
{
    size_t room = 6 * n + 1; /* gw_text_escape's worst case */
    char *p = realloc(*out, *len + room);

    if (p == NULL)
        return 0;
    *out = p;
    *len += gw_text_escape(p + *len, room, s, n);
    return 1;
}

/* Appends |n| bytes of |s| as they are: what the listing itself writes between escaped values. */
static int append_raw(char **out, size_t *len, const char *s, size_t n)
{
    char *p = realloc(*out, *len + n + 1);

    if (p == NULL)
        return 0;
    memcpy(p + *len, s, n);
    *len += n;
    p[*len] = '\0';
    *out = p;
    return 1;
}

/* Appends one SAN's text, escaped, its own commas as \u002c: a URI holding ",DNS:x" cannot read as a
   second entry of the comma-joined list. (',' is never a byte of a longer UTF-8 sequence.) */
static int append_san_text(char **out, size_t *len, const char *s, size_t n)
{
    const char *comma;
    size_t k;

    while ((comma = memchr(s, ',', n)) != NULL) {
        k = (size_t)(comma - s);
        if (!append(out, len, s, k) || !append_raw(out, len, "\\u002c", 6))
            return 0;
        s += k + 1;
        n -= k + 1;
    }
    return append(out, len, s, n);
}

static const char *san_prefix(int type)
{
    switch (type) {
    case GEN_DNS:
        return "DNS:";
    case GEN_IPADD:
        return "IP:";
    case GEN_URI:
        return "URI:";
    case GEN_EMAIL:
        return "email:";
    case GEN_OTHERNAME:
        return "othername:";
    case GEN_DIRNAME:
        return "DirName:";
    default:
        return "other:";
    }
}

/* One SAN as text; IP addresses in their usual form (via GENERAL_NAME_print's rules). */
static int append_san(char **out, size_t *len, const GENERAL_NAME *gn)
{
    BIO *mem;
    char *text;
    long n;
    int ok;

    if (gn->type == GEN_DNS || gn->type == GEN_URI || gn->type == GEN_EMAIL) {
        const char *pfx = san_prefix(gn->type);

        return append(out, len, pfx, strlen(pfx)) &&
               append_san_text(out, len, (const char *)ASN1_STRING_get0_data(gn->d.ia5),
                               (size_t)ASN1_STRING_length(gn->d.ia5));
    }
    if (gn->type == GEN_IPADD && (ASN1_STRING_length(gn->d.ip) == 4 || ASN1_STRING_length(gn->d.ip) == 16)) {
        char ip[INET6_ADDRSTRLEN];
        int af = ASN1_STRING_length(gn->d.ip) == 4 ? AF_INET : AF_INET6;

        return inet_ntop(af, ASN1_STRING_get0_data(gn->d.ip), ip, sizeof(ip)) != NULL &&
               append(out, len, "IP:", 3) && append(out, len, ip, strlen(ip));
    }
    if ((mem = BIO_new(BIO_s_mem())) == NULL)
        return 0;
    ok = GENERAL_NAME_print(mem, (GENERAL_NAME *)gn) == 1 && (n = BIO_get_mem_data(mem, &text)) > 0 &&
         append_san_text(out, len, text, (size_t)n);
    BIO_free(mem);
    return ok;
}

static char *sans_text(const X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char *out = strdup("");
    size_t len = 0;
    int i;

    for (i = 0; out != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        if ((i > 0 && !append(&out, &len, ",", 1)) ||
            !append_san(&out, &len, sk_GENERAL_NAME_value(sans, i))) {
            free(out);
            out = NULL;
        }
    }
    GENERAL_NAMES_free(sans);
    return out;
}

static char *subject_text(const X509 *x)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *text = NULL, *out = NULL;
    size_t len = 0;
    long n;

    /* RFC 2253, its characters as UTF-8 and its controls as they are rather than \XX bytes: append()
       escapes both as it does in the SANs, with one escaper, so a tab or newline cannot break the table */
    if (mem != NULL &&
        X509_NAME_print_ex(mem, X509_get_subject_name(x), 0,
                           XN_FLAG_RFC2253 & ~(ASN1_STRFLGS_ESC_MSB | ASN1_STRFLGS_ESC_CTRL)) >= 0) {
        n = BIO_get_mem_data(mem, &text);
        if ((out = strdup("")) != NULL && !append(&out, &len, n > 0 ? text : "", n > 0 ? (size_t)n : 0)) {
            free(out);
            out = NULL;
        }
    }
    BIO_free(mem);
    return out;
}

/* What cert_at found. */
enum cert_read { CERT_READ, CERT_ABSENT, CERT_UNREADABLE, CERT_NOT_PEM };

/*
 * The certificate <dirfd>/|name| into *out: a regular file, not followed if a link, of at most
 * GW_STORE_FILE_MAX bytes, holding a PEM certificate. CERT_READ, or why not (*out NULL).
 */
static enum cert_read cert_at(int dirfd, const char *name, X509 **out)
{
    struct stat st;
    BIO *bio;
    int fd;

    *out = NULL;
    if ((fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return errno == ENOENT ? CERT_ABSENT : CERT_UNREADABLE;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > GW_STORE_FILE_MAX ||
        (bio = BIO_new_fd(fd, BIO_CLOSE)) == NULL) {
        close(fd);
        return CERT_UNREADABLE;
    }
    *out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return *out != NULL ? CERT_READ : CERT_NOT_PEM;
}

/* Reads <dirfd>/|name| into |e|. 0, or -1 (not a certificate, unreadable, too large). */
static int read_entry(int dirfd, const char *name, struct gw_store_entry *e)
{
    X509 *x = NULL;
    int rc = -1;

    memset(e, 0, sizeof(*e));
    if (cert_at(dirfd, name, &x) != CERT_READ)
        return -1;
    gw_x509_cert_serial_hex(x, e->serial, sizeof(e->serial));
    if (gw_asn1_time(X509_get0_notBefore(x), &e->not_before) != 0 ||
        gw_asn1_time(X509_get0_notAfter(x), &e->not_after) != 0 || (e->subject = subject_text(x)) == NULL ||
        (e->sans = sans_text(x)) == NULL)
        goto out;
    rc = 0;
out:
    if (rc != 0) {
        free(e->subject);
        free(e->sans);
        memset(e, 0, sizeof(*e));
    }
    X509_free(x);
    return rc;
}

static int by_not_before(const void *a, const void *b)
{
    const struct gw_store_entry *x = a, *y = b;

    if (x->not_before != y->not_before)
        return x->not_before < y->not_before ? -1 : 1;
    return strcmp(x->serial, y->serial);
}

static int is_pem_name(const char *name)
{
    size_t n = strlen(name), k = strlen(PEM_SUFFIX);

    return name[0] != '.' && n > k && strcmp(name + n - k, PEM_SUFFIX) == 0;
}

/* Adds one slot to |l|, growing it; NULL when out of memory or at GW_STORE_LIST_MAX. */
static struct gw_store_entry *grow(struct gw_store_list *l, size_t *cap, int *rc)
{
    struct gw_store_entry *v;
    size_t ncap;

    if (l->n >= GW_STORE_LIST_MAX) {
        *rc = GW_ERR_LIMIT;
        return NULL;
    }
    if (l->n == *cap) {
        ncap = *cap != 0 ? 2 * *cap : 64;
        if ((v = realloc(l->v, ncap * sizeof(*v))) == NULL) {
            *rc = GW_ERR_NOMEM;
            return NULL;
        }
        l->v = v;
        *cap = ncap;
    }
    return &l->v[l->n];
}

/* |err|: the file |name| of |dir| is no certificate. Any file may lie in a store: its name (at most 64
   bytes of it) is shown as the table's cells are, through the shared escaper, cut to the room left. */
static void bad_name(char *err, const char *dir, const char *name)
{
    static const char why[] = " is not a readable certificate";
    char shown[GW_ERR_LEN];
    int n = snprintf(err, GW_ERR_LEN, "store %s: ", gw_conf_show_file(dir, shown, sizeof(shown)));
    size_t len;

    if (n < 0 || (size_t)n + sizeof(why) >= GW_ERR_LEN)
        return; /* |dir| alone fills it: cut as snprintf cut it */
    len = (size_t)n +
          gw_text_escape(err + n, GW_ERR_LEN - (size_t)n - (sizeof(why) - 1), name, strnlen(name, 64));
    memcpy(err + len, why, sizeof(why));
}

int gw_store_list(const char *dir, struct gw_store_list *out, char *err)
{
    struct gw_store_entry *e;
    struct dirent *de;
    DIR *d = NULL;
    size_t cap = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if ((d = opendir(dir)) == NULL) {
        store_fail(err, dir, ": %s", strerror(errno));
        return GW_ERR_IO;
    }
    while ((de = readdir(d)) != NULL) {
        if (!is_pem_name(de->d_name))
            continue;
        if ((e = grow(out, &cap, &rc)) == NULL) {
            store_fail(err, dir, ": %s",
                       rc == GW_ERR_LIMIT ? "more certificates than one listing holds" : "out of memory");
            goto out;
        }
        if (read_entry(dirfd(d), de->d_name, e) != 0) {
            out->n_bad++;
            bad_name(err, dir, de->d_name);
            continue;
        }
        out->n++;
    }
    if (out->n > 0)
        qsort(out->v, out->n, sizeof(out->v[0]), by_not_before);
out:
    closedir(d);
    if (rc != 0)
        gw_store_list_cleanup(out);
    return rc;
}

void gw_store_list_cleanup(struct gw_store_list *l)
{
    size_t i;

    if (l == NULL)
        return;
    for (i = 0; i < l->n; i++) {
        free(l->v[i].subject);
        free(l->v[i].sans);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* ---- revocations (the local issuer's CRL source) ---- */

/* "time=<20 digits> reason=<2 digits> not_after=<20 digits>\n" fits with room */
#define REVOKED_RECORD_MAX 96

/* The most records revoked/ holds: GW_STORE_LIST_MAX, or what a test set. */
static _Atomic size_t revocations_max = GW_STORE_LIST_MAX;

void gw_store_test_revocations_max(size_t n)
{
    atomic_store(&revocations_max, n != 0 ? n : GW_STORE_LIST_MAX);
}

/* Opens <dir>/revoked, creating it (and making the creation durable) if need be. -1 with errno. */
static int open_revoked_dir(int dirfd)
{
    int fd;

    if (mkdirat(dirfd, GW_STORE_REVOKED_DIR, 0755) == 0) {
        if (fsync(dirfd) != 0)
            return -1;
    } else if (errno != EEXIST) {
        return -1;
    }
    fd = openat(dirfd, GW_STORE_REVOKED_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd;
}

/* Is <dirfd>/<hex>.pem a certificate of ours? 1 yes, 0 no, -1 error (errno). */
static int issued_here(int dirfd, const char *hex)
{
    char name[2 * 20 + 1 + sizeof(PEM_SUFFIX)];
    struct stat st;

    snprintf(name, sizeof(name), "%s" PEM_SUFFIX, hex);
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return S_ISREG(st.st_mode) ? 1 : 0;
    return errno == ENOENT ? 0 : -1;
}

/* The notAfter of the certificate <dirfd>/<hex>.pem into *not_after: 0, or -1 (0 in *not_after). */
static int cert_not_after(int dirfd, const char *hex, time_t *not_after)
{
    char name[2 * 20 + 1 + sizeof(PEM_SUFFIX)];
    X509 *x;
    int rc = -1;

    *not_after = 0;
    snprintf(name, sizeof(name), "%s" PEM_SUFFIX, hex);
    if (cert_at(dirfd, name, &x) == CERT_READ && gw_asn1_time(X509_get0_notAfter(x), not_after) == 0 &&
        *not_after > 0)
        rc = 0;
    X509_free(x);
    if (rc != 0)
        *not_after = 0;
    return rc;
}

/* A revocation's record, with the notAfter that takes it off the CRL (none if unknown: it stays on). */
static int revocation_record(char *rec, size_t cap, time_t when, int reason, time_t not_after)
{
    if (not_after > 0)
        return snprintf(rec, cap, "time=%lld reason=%d not_after=%lld\n", (long long)when, reason,
                        (long long)not_after);
    return snprintf(rec, cap, "time=%lld reason=%d\n", (long long)when, reason);
}

/*
 * Is there room in <rfd> for the record of |hex|? A CRL lists at most revocations_max: one past it would
 * fail every CRL while its certificate is valid. Counted by name (no record read) up to the cap, expired
 * or not: none is removed. 0 (room, or |hex| recorded already: the caller's link says so), GW_ERR_LIMIT or
 * GW_ERR_IO with |err|.
 */
static int serial_name(const char *name);

static int revocation_room(int rfd, const char *dir, const char *hex, char *err)
{
    size_t n = 0, max = atomic_load(&revocations_max);
    struct dirent *de;
    struct stat st;
    DIR *d;
    int fd;

    if ((fd = openat(rfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        store_fail(err, dir, "/" GW_STORE_REVOKED_DIR ": %s", strerror(errno));
        return GW_ERR_IO;
    }
    while (n < max && (de = readdir(d)) != NULL)
        n += serial_name(de->d_name);
    closedir(d);
    if (n < max || fstatat(rfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    store_fail(err, dir, ": holds %zu revocations, as many as its CRL may list: %s is not revoked", max, hex);
    return GW_ERR_LIMIT;
}

int gw_store_revoke(const char *dir, const ASN1_INTEGER *serial, int reason, time_t when, char *err)
{
    char hex[2 * 20 + 1], tmp[TMP_NAME_MAX], rec[REVOKED_RECORD_MAX];
    int dirfd = -1, rfd = -1, rc = GW_ERR_IO, len, known;
    time_t not_after;
    struct stat st;

    if (gw_x509_serial_hex_checked(serial, hex, sizeof(hex)) != 0) {
        store_fail(err, dir, ": not a serial number this issuer uses");
        return GW_ERR_NOT_FOUND;
    }
    store_tmp_name(tmp, sizeof(tmp), hex);
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (known = issued_here(dirfd, hex)) < 0) {
        store_fail(err, dir, ": %s", strerror(errno));
        goto out;
    }
    if (!known) {
        snprintf(err, GW_ERR_LEN, "this issuer has no certificate with serial %s", hex);
        rc = GW_ERR_NOT_FOUND;
        goto out;
    }
    (void)cert_not_after(dirfd, hex, &not_after);
    len = revocation_record(rec, sizeof(rec), when, reason, not_after);
    if ((rfd = open_revoked_dir(dirfd)) < 0) {
        store_fail(err, dir, ": cannot write the revocation of %s: %s", hex, strerror(errno));
        goto out;
    }
    /* one recorded already is that, whatever the count (which may fail) says */
    if (fstatat(rfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        store_fail(err, dir, ": %s is already revoked", hex);
        rc = GW_ERR_EXISTS;
        goto out;
    }
    if ((rc = revocation_room(rfd, dir, hex, err)) != 0)
        goto out;
    if (store_write_tmp(rfd, tmp, rec, (size_t)len) != 0) {
        store_fail(err, dir, ": cannot write the revocation of %s: %s", hex, strerror(errno));
        rc = GW_ERR_IO;
        goto out;
    }
    if ((rc = link_tmp(rfd, tmp, hex)) != 0) {
        store_fail(err, dir, ": %s %s", hex, rc == GW_ERR_EXISTS ? "is already revoked" : strerror(errno));
        goto out;
    }
    /* Never unlinked once linked, as publish() unlinks a certificate: a CRL built meanwhile (by another
       instance: no lock is held here) may list it, and one with a higher number must not list less. A
       second fsync would prove nothing: a failed writeback is reported once. */
    if (sync_dir(rfd) != 0) {
        store_fail(err, dir, ": the revocation of %s is recorded, but may not outlive a crash: %s", hex,
                   strerror(errno));
        rc = GW_ERR_IO;
    }
out:
    if (rfd >= 0)
        close(rfd);
    if (dirfd >= 0)
        close(dirfd);
    return rc;
}

/* Parses "<key>=<decimal>" at *p, advancing past it and one following space or newline. */
int store_parse_field(const char **p, const char *key, long long min, long long max, long long *out)
{
    size_t k = strlen(key);
    char *end;

    if (strncmp(*p, key, k) != 0 || (*p)[k] != '=' ||
        ((*p)[k + 1] != '-' && ((*p)[k + 1] < '0' || (*p)[k + 1] > '9')))
        return 0;
    errno = 0;
    *out = strtoll(*p + k + 1, &end, 10);
    if (errno != 0 || *out < min || *out > max || (*end != ' ' && *end != '\n'))
        return 0;
    *p = end + 1;
    return 1;
}

static int serial_name(const char *name)
{
    size_t i, n = strlen(name);

    if (n == 0 || n > 40)
        return 0;
    for (i = 0; i < n; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return 0;
    return 1;
}

/*
 * Reads <rfd>/|name|: "time=<t> reason=<r> not_after=<t>\n", or without not_after as an earlier version
 * wrote it. 0, GW_ERR_NOT_FOUND, or GW_ERR_IO (unreadable or malformed).
 */
static int read_revocation(int rfd, const char *name, struct gw_store_revocation *out)
{
    char buf[REVOKED_RECORD_MAX + 1];
    const char *p = buf;
    long long t, r, na = 0;
    ssize_t n;
    int fd;

    memset(out, 0, sizeof(*out));
    if ((fd = openat(rfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return errno == ENOENT ? GW_ERR_NOT_FOUND : GW_ERR_IO;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0 || n >= (ssize_t)sizeof(buf) - 1)
        return GW_ERR_IO;
    buf[n] = '\0';
    if (!store_parse_field(&p, "time", 0, INT64_MAX, &t) || !store_parse_field(&p, "reason", -1, 10, &r) ||
        (*p != '\0' && (!store_parse_field(&p, "not_after", 1, INT64_MAX, &na) || *p != '\0')))
        return GW_ERR_IO;
    snprintf(out->serial, sizeof(out->serial), "%s", name);
    out->when = (time_t)t;
    out->reason = (int)r;
    out->not_after = (time_t)na;
    return 0;
}

int gw_store_get(const char *dir, const char *serial_hex, X509 **out, char *err)
{
    char name[2 * 20 + 1 + sizeof(PEM_SUFFIX)];
    enum cert_read got;
    int dirfd;

    *out = NULL;
    if (!serial_name(serial_hex))
        return GW_ERR_NOT_FOUND;
    snprintf(name, sizeof(name), "%s" PEM_SUFFIX, serial_hex);
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        store_fail(err, dir, ": %s", strerror(errno));
        return GW_ERR_IO;
    }
    got = cert_at(dirfd, name, out);
    close(dirfd);
    if (got == CERT_ABSENT)
        return GW_ERR_NOT_FOUND;
    if (got == CERT_UNREADABLE)
        store_fail(err, dir, ": %s cannot be read", name);
    else if (got == CERT_NOT_PEM)
        store_fail(err, dir, ": %s is not a certificate", name);
    return got == CERT_READ ? 0 : GW_ERR_IO;
}

int gw_store_revocation_get(const char *dir, const char *serial_hex, struct gw_store_revocation *out,
                            char *err)
{
    int dirfd, rfd = -1, rc, e;

    memset(out, 0, sizeof(*out));
    if (!serial_name(serial_hex))
        return GW_ERR_NOT_FOUND;
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        store_fail(err, dir, ": %s", strerror(errno));
        return GW_ERR_IO;
    }
    rfd = openat(dirfd, GW_STORE_REVOKED_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    e = errno;
    close(dirfd);
    errno = e;
    if (rfd < 0 && errno == ENOENT)
        return GW_ERR_NOT_FOUND; /* nothing revoked yet */
    if (rfd < 0) {
        store_fail(err, dir, "/" GW_STORE_REVOKED_DIR ": %s", strerror(errno));
        return GW_ERR_IO;
    }
    if ((rc = read_revocation(rfd, serial_hex, out)) == GW_ERR_IO)
        store_fail(err, dir, ": revocation record %s is malformed", serial_hex);
    close(rfd);
    return rc;
}

static int by_serial(const void *a, const void *b)
{
    return strcmp(((const struct gw_store_revocation *)a)->serial,
                  ((const struct gw_store_revocation *)b)->serial);
}

/*
 * Appends the record |name| of |rfd| to *v, unless its certificate expired before |expired_before|. 0 or a
 * gw_err with |err|.
 */
static int add_revocation(const char *dir, int rfd, const char *name, time_t expired_before,
                          struct gw_store_revocation **v, size_t *n, size_t *cap, char *err)
{
    struct gw_store_revocation r, *grown;

    if (read_revocation(rfd, name, &r) != 0) {
        store_fail(err, dir, ": revocation record %.64s is malformed", name);
        return GW_ERR_IO;
    }
    if (r.not_after != 0 && r.not_after < expired_before)
        return 0; /* RFC 5280 §5.1.2.6: an expired certificate may leave the CRL */
    if (*n >= atomic_load(&revocations_max)) {
        store_fail(err, dir, ": more revocations than one CRL holds");
        return GW_ERR_LIMIT;
    }
    if (*n == *cap) {
        *cap = *cap != 0 ? 2 * *cap : 64;
        if ((grown = realloc(*v, *cap * sizeof(**v))) == NULL) {
            store_fail(err, dir, ": out of memory");
            return GW_ERR_NOMEM;
        }
        *v = grown;
    }
    (*v)[(*n)++] = r;
    return 0;
}

int gw_store_revocations(const char *dir, time_t expired_before, struct gw_store_revocation **v, size_t *n,
                         char *err)
{
    struct dirent *de;
    DIR *d = NULL;
    size_t cap = 0;
    int topfd, rfd, rc = 0, e;

    *v = NULL;
    *n = 0;
    if ((topfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        store_fail(err, dir, ": %s", strerror(errno));
        return GW_ERR_IO;
    }
    rfd = openat(topfd, GW_STORE_REVOKED_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    e = errno;
    close(topfd);
    errno = e;
    if (rfd < 0 && errno == ENOENT)
        return 0; /* nothing revoked yet */
    if (rfd < 0 || (d = fdopendir(rfd)) == NULL) {
        store_fail(err, dir, "/" GW_STORE_REVOKED_DIR ": %s", strerror(errno));
        if (rfd >= 0)
            close(rfd);
        return GW_ERR_IO;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (serial_name(de->d_name)) /* skips ".", "..", and temporary files (".<serial>...tmp") */
            rc = add_revocation(dir, dirfd(d), de->d_name, expired_before, v, n, &cap, err);
    }
    closedir(d);
    if (rc != 0) {
        free(*v);
        *v = NULL;
        *n = 0;
    } else if (*n > 1) {
        qsort(*v, *n, sizeof(**v), by_serial);
    }
    return rc;
}

/* ---- crash leftovers ---- */

static int is_tmp_name(const char *name)
{
    size_t n = strlen(name);

    return name[0] == '.' && n > sizeof(TMP_SUFFIX) &&
           strcmp(name + n - (sizeof(TMP_SUFFIX) - 1), TMP_SUFFIX) == 0;
}

/* Removes the temporary files in |fd| older than |before|; counts them into *removed. */
static int sweep_dir(int fd, time_t before, size_t *removed)
{
    DIR *d = fdopendir(fd);
    struct dirent *de;
    struct stat st;
    int rc = 0;

    if (d == NULL) {
        close(fd);
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        if (!is_tmp_name(de->d_name) || fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode) || st.st_mtime >= before)
            continue;
        if (unlinkat(fd, de->d_name, 0) != 0)
            rc = -1;
        else
            (*removed)++;
    }
    closedir(d); /* closes |fd| */
    return rc;
}

int gw_store_sweep(const char *dir, time_t now, size_t *removed, char *err)
{
    int dirfd, rfd = -1, rc = 0;

    *removed = 0;
    if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = gw_err_errno_io(errno); /* descriptors run out: not the store's */
        store_fail(err, dir, ": %s", strerror(errno));
        return rc;
    }
    rfd = openat(dirfd, GW_STORE_REVOKED_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sweep_dir(dirfd, now - GW_STORE_TMP_STALE_SECS, removed) != 0 ||
        (rfd >= 0 && sweep_dir(rfd, now - GW_STORE_TMP_STALE_SECS, removed) != 0)) {
        store_fail(err, dir, ": cannot remove a temporary file: %s", strerror(errno));
        rc = GW_ERR_IO;
    }
    return rc;
}
