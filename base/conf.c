/*
 * The configuration reader (base/conf.h): objects and maps by table, strict JSON with duplicate
 * keys refused, and the file reads a configuration needs (the file itself, secrets). The value
 * parsers the tables name, one per type, are conf_value.c's.
 */
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

/* snprintf for text that is cut on purpose (errors, paths): truncation is the intended result. */
void gw_conf_bprintf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

/* Writes "<file>: <path>: <reason>" into the caller's error buffer; returns GW_ERR_INVAL. */
int gw_conf_fail(struct gw_conf_ctx *pc, const char *path, const char *fmt, ...)
{
    char reason[GW_ERR_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (path != NULL)
        gw_conf_bprintf(pc->err, GW_ERR_LEN, "%s: %s: %s", pc->name, path, reason);
    else
        gw_conf_bprintf(pc->err, GW_ERR_LEN, "%s: %s", pc->name, reason);
    ERR_clear_error();
    pc->failed = GW_ERR_INVAL;
    return GW_ERR_INVAL;
}

int gw_conf_fail_as(struct gw_conf_ctx *pc, int rc, const char *path, const char *fmt, ...)
{
    char reason[GW_ERR_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    gw_conf_fail(pc, path, "%s", reason);
    pc->failed = rc;
    return rc;
}

/* After |s|'s leading scheme and "://" (RFC 3986 §3.1: a letter, then letters, digits, '+', '-', '.'), or
 * NULL. */
static const char *after_scheme(const char *s)
{
    const char *p = s;

    if (!isalpha((unsigned char)*p))
        return NULL;
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    return strncmp(p, "://", 3) == 0 ? p + 3 : NULL;
}

/*
 * |s| (a value's JSON text) into |out| (|cap| bytes) with the userinfo in it written "***": a credential,
 * which no key takes (a "url" or an "address" with one is refused), so only the error that refuses it would
 * quote it, into a log. Of a URL ("https://user:password@host", "redis://:password@host") everything after
 * "://" up to its last '@' goes: a password need not be URL-encoded, and one may hold any of '/', '?', '#',
 * '@' or "://", so an '@' in a path costs the host its place in the quote rather than risk a password. Of a
 * value without a scheme ("user:password@10.0.0.5:6379", ":password@10.0.0.5", as a Redis address may be
 * written), everything before its last '@' when a ':' comes before it: names such as "*@example.com" keep
 * their text. Returns snprintf's length.
 */
static size_t without_userinfo(char *out, size_t cap, const char *s)
{
    const char *from = s + (s[0] == '"'), *auth = after_scheme(from), *at = strrchr(from, '@');

    if (auth != NULL)
        from = auth;
    if (at == NULL || (auth == NULL && memchr(from, ':', (size_t)(at - from)) == NULL))
        return (size_t)snprintf(out, cap, "%s", s);
    return (size_t)snprintf(out, cap, "%.*s***%s", (int)(from - s), s, at);
}

/* What names a PIN in a PKCS#11 URI (RFC 7512 §2.3: "pin-value", a query attribute), in any case. */
#define PIN_VALUE "pin-value="

/*
 * |s| into |out| (|cap| bytes) with the value of every "pin-value" attribute after its "pkcs11:" (in any
 * case) written "***". libp11 splits the URI at every ';', '?' and '&' and logs in with a PIN it finds
 * among the path attributes as well as in the query (base/pkcs11.c): each is looked at so. A URI with a
 * PIN is refused, but an error may quote it first (one where a file goes, "PKCS11:...", one not loaded).
 */
static void without_pin(char *out, size_t cap, const char *s)
{
    const char *a = strcasestr(s, "pkcs11:"), *from = s;

    out[0] = '\0';
    for (a = a != NULL ? a + strlen("pkcs11:") : NULL; a != NULL && *a != '\0'; a += strcspn(a, ";?&")) {
        a += strspn(a, ";?&");
        if (strncasecmp(a, PIN_VALUE, strlen(PIN_VALUE)) != 0)
            continue;
        a += strlen(PIN_VALUE);
        gw_conf_bprintf(out + strlen(out), cap - strlen(out), "%.*s***", (int)(a - from), from);
        a += strcspn(a, ";?&");
        from = a;
    }
    gw_conf_bprintf(out + strlen(out), cap - strlen(out), "%s", from);
}

/*
 * Where the URL in |s| begins (its scheme, before the first "://"), or |s| when it holds none: a URL written
 * where a relative name goes follows the configuration's directory, which stays shown.
 */
static const char *url_in(const char *s)
{
    const char *p = strstr(s, "://");

    if (p == NULL)
        return s;
    while (p > s && (isalnum((unsigned char)p[-1]) || strchr("+-.", p[-1]) != NULL))
        p--;
    return p;
}

const char *gw_conf_show_file(const char *file, char *buf, size_t cap)
{
    /* whole, not cut to an error's length: a cut before a URL's '@' would leave its userinfo unmasked. At
       most twice as long: each "***" stands for an attribute's value after its 10 bytes "pin-value=" */
    size_t need = 2 * strlen(file) + 4, dir;
    char *pinless = malloc(need);

    if (pinless == NULL) {
        gw_conf_bprintf(buf, cap, "(a name of %zu bytes)", strlen(file));
        return buf;
    }
    without_pin(pinless, need, file);
    dir = (size_t)(url_in(pinless) - pinless);
    if (dir >= cap)
        dir = cap - 1;
    memcpy(buf, pinless, dir);
    without_userinfo(buf + dir, cap - dir, pinless + dir);
    free(pinless);
    return buf;
}

/* Quotes a value for an error: its JSON text, cut to GW_CONF_SHOW_LEN bytes, any userinfo hidden. */
const char *gw_conf_show(struct json_object *v, char *buf, size_t cap)
{
    char shown[GW_CONF_SHOW_LEN + 2];
    size_t n;

    if (json_object_is_type(v, json_type_object))
        return "an object";
    if (json_object_is_type(v, json_type_array))
        return "an array";
    n = without_userinfo(
        shown, sizeof(shown),
        json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    if (n < cap && n <= GW_CONF_SHOW_LEN) {
        memcpy(buf, shown, n + 1);
        return buf;
    }
    gw_conf_bprintf(buf, cap, "%.*s...", GW_CONF_SHOW_LEN, shown);
    return buf;
}

bool gw_conf_key_shown(const char *key)
{
    size_t len = strlen(key), word = 0;

    if (len == 0 || len > GW_CONF_KEY_SHOW_LEN || !(key[0] >= 'a' && key[0] <= 'z'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (c == '_' || c == '-')
            word = 0;
        else if (((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) && word < GW_CONF_KEY_WORD_LEN)
            word++;
        else
            return false;
    }
    return true;
}

/* What an error says of a key it does not quote, after the key's length. */
#define NOT_A_KEY_NAME "not quoted: it reads as no key's name (a secret?)"

/*
 * A key's name is quoted in its path; any other key is described by its length alone: a token pasted
 * where a key goes ("hvs.CAESI...": ...) would otherwise reach the log, and the answer of a reload.
 */
int gw_conf_fail_key(struct gw_conf_ctx *pc, const char *path, const char *key, const char *reason)
{
    char kpath[GW_CONF_PATH_LEN];

    if (!gw_conf_key_shown(key))
        return gw_conf_fail(pc, path, "%s of %zu bytes, " NOT_A_KEY_NAME, reason, strlen(key));
    gw_conf_join_key(kpath, path, key);
    return gw_conf_fail(pc, kpath, "%s", reason);
}

void gw_conf_join_key(char *out, const char *path, const char *key)
{
    gw_conf_bprintf(out, GW_CONF_PATH_LEN, "%s.%s", path, key);
}

void gw_conf_join_index(char *out, const char *path, size_t i)
{
    gw_conf_bprintf(out, GW_CONF_PATH_LEN, "%s[%zu]", path, i);
}

void *gw_conf_at(void *base, size_t off)
{
    return (char *)base + off;
}

/* ---- names ---------------------------------------------------------------------------- */

/* Whether the |len| bytes at |s| are all of [A-Za-z0-9._-]. */
static bool plain_chars(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Whether a name an error refuses may be quoted: made of a name's characters (refused as "." or "..", or
   for its length) and no longer than a key an error quotes. Any other may be a secret pasted there. */
static bool name_shown(const char *s)
{
    return strlen(s) <= GW_CONF_KEY_SHOW_LEN && plain_chars(s, strlen(s));
}

bool gw_conf_name_ok(const char *s, size_t len)
{
    return len != 0 && len <= GW_MAX_NAME_LEN && plain_chars(s, len);
}

bool gw_conf_segment_ok(const char *s, size_t len)
{
    return len != 0 && plain_chars(s, len) && !(len == 1 && s[0] == '.') &&
           !(len == 2 && s[0] == '.' && s[1] == '.');
}

const struct gw_conf_names gw_conf_names_plain = {gw_conf_name_ok,
                                                  "a name of 1..64 characters [A-Za-z0-9._-]"};

/* A PBM reference is the senderKID (RFC 9810 §5.1.1): any printable ASCII, as it is compared bytewise. */
static bool kid_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > GW_MAX_KID_LEN)
        return false;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

const struct gw_conf_names gw_conf_names_kid = {kid_ok, "a reference of 1..128 printable ASCII characters"};

/* ---- objects, maps and arrays ------------------------------------------------------------- */

static const struct gw_conf_field *field_find(const struct gw_conf_obj *def, const char *key)
{
    size_t i;

    for (i = 0; i < def->n; i++)
        if (strcmp(def->fields[i].key, key) == 0)
            return &def->fields[i];
    return NULL;
}

/* An object by its table: unknown keys, then each field in table order, then the object check. */
int gw_conf_p_obj(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f)
{
    const struct gw_conf_obj *def = f->aux;
    void *dst = gw_conf_at(base, f->off);
    struct json_object *child = NULL;
    char kpath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];
    bool present;
    size_t i;
    int rc;

    if (v != NULL && !json_object_is_type(v, json_type_object))
        return gw_conf_fail(pc, path, "expected an object, got %s", gw_conf_show(v, buf, sizeof(buf)));
    if (v != NULL) {
        json_object_object_foreach(v, key, val)
        {
            (void)val;
            if (field_find(def, key) == NULL)
                return gw_conf_fail_key(pc, path, key, "unknown key");
        }
    }
    for (i = 0; i < def->n; i++) {
        const struct gw_conf_field *kf = &def->fields[i];
        gw_conf_join_key(kpath, path, kf->key);
        present = v != NULL && json_object_object_get_ex(v, kf->key, &child);
        /* json-c represents null as NULL, which parsers read as "apply the default" */
        if (present && child == NULL)
            return gw_conf_fail(pc, kpath, "null is not a valid value: give a value or leave the key out");
        if (!present && kf->required)
            return gw_conf_fail(pc, kpath, "missing required key");
        if ((rc = kf->parse(pc, kpath, child, dst, kf)) != 0)
            return rc;
    }
    return def->check != NULL ? def->check(pc, path, dst) : 0;
}

int gw_conf_p_opt_obj(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                      const struct gw_conf_field *f)
{
    return v != NULL ? gw_conf_p_obj(pc, path, v, base, f) : 0;
}

/* A map's key its names refuse: quoted when name_shown, else described by its length alone. */
static int fail_name(struct gw_conf_ctx *pc, const char *path, const char *epath,
                     const struct gw_conf_names *names, const char *key)
{
    if (name_shown(key))
        return gw_conf_fail(pc, epath, "expected %s, got \"%s\"", names->desc, key);
    return gw_conf_fail(
        pc, path,
        "expected keys that are %s, got one of %zu bytes, not quoted: it reads as no name (a secret?)",
        names->desc, strlen(key));
}

int gw_conf_p_map(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f)
{
    const struct gw_conf_map *md = f->aux;
    void **arr = gw_conf_at(base, f->off);
    size_t *n = gw_conf_at(base, f->off_n), len;
    char epath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];
    int rc;

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_object))
        return gw_conf_fail(pc, path, "expected an object, got %s", gw_conf_show(v, buf, sizeof(buf)));
    if ((len = (size_t)json_object_object_length(v)) == 0)
        return 0;
    if ((*arr = calloc(len, md->elem_size)) == NULL)
        return GW_ERR_NOMEM;
    json_object_object_foreach(v, key, val)
    {
        void *elem = (char *)*arr + *n * md->elem_size;
        struct gw_conf_field vf = {
            .key = key, .required = true, .parse = md->value, .off = md->value_off, .aux = md->value_aux};
        gw_conf_join_key(epath, path, key);
        if (!md->names->ok(key, strlen(key)))
            return fail_name(pc, path, epath, md->names, key);
        if (val == NULL)
            return gw_conf_fail(pc, epath, "null is not a valid value");
        ++*n; /* counted before it is filled, so that gw_config_free releases a half-parsed entry */
        if ((*(char **)gw_conf_at(elem, md->name_off) = strdup(key)) == NULL)
            return GW_ERR_NOMEM;
        if ((rc = vf.parse(pc, epath, val, elem, &vf)) != 0)
            return rc;
    }
    return 0;
}

/* Reads at most |cap| bytes of |fd| into |buf|; returns the count or -1. */
static ssize_t read_all(int fd, unsigned char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;

    while (len < cap) {
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    return (ssize_t)len;
}

/* What a file that is not a regular one is, for an error message. */
static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    return "a special file";
}

/* The fix for a file that is not a regular one, where the configuration names a file as it is. */
static const char name_the_file[] = "name the file itself (a symlink to it is fine)";

/*
 * Whether |name| (what the configuration wrote) reads as a file's name: it begins with '/' or '.', or
 * its last segment ends in an extension (a '.' after its first byte, then 1..GW_CONF_FILE_EXT_LEN letters
 * and digits: "gw.pem", "admin.token"). A secret pasted where its file goes ("hvs.CAESI...", a base64 or
 * hex run) reads as none.
 */
static bool reads_as_file(const char *name)
{
    const char *seg = strrchr(name, '/'), *dot;
    size_t ext;

    if (name[0] == '/' || name[0] == '.')
        return true;
    seg = seg != NULL ? seg + 1 : name;
    if ((dot = strrchr(seg, '.')) == NULL || dot == seg)
        return false;
    ext = strlen(dot + 1);
    for (size_t i = 0; i < ext; i++)
        if (!isalnum((unsigned char)dot[1 + i]))
            return false;
    return ext >= 1 && ext <= GW_CONF_FILE_EXT_LEN;
}

/*
 * " \"<file>\"" for an error that names |file|, which cannot be opened, when what the configuration wrote
 * (|file| less the configuration's directory that gw_conf_p_file put before a relative name) reads as a
 * file's name; else only its length: the value may be a secret pasted in place of its file's name, and
 * the open is what refuses it, in the log and the answer of a reload.
 */
static void name_unopened(const struct gw_conf_ctx *pc, const char *file, char *out, size_t cap)
{
    const char *written = file;
    char shown[GW_ERR_LEN];
    size_t dir = pc->base_dir != NULL ? strlen(pc->base_dir) : 0;

    if (dir > 0 && strncmp(file, pc->base_dir, dir) == 0 && file[dir] == '/')
        written = file + dir + 1;
    if (reads_as_file(written))
        gw_conf_bprintf(out, cap, " \"%s\"", gw_conf_show_file(file, shown, sizeof(shown)));
    else
        gw_conf_bprintf(out, cap,
                        " the file named by a value of %zu bytes (not quoted: it reads as no file "
                        "name, a secret perhaps)",
                        strlen(written));
}

/*
 * Opens |file| for reading, refusing anything but a regular file (after symlinks) with |hint| as the
 * fix: its descriptor with |st| filled, or -1 with the error set. O_NONBLOCK at the open, as a FIFO
 * named here would otherwise hold the load (or a reload) until a writer came along; a regular file
 * never blocks, so it is cleared again once the kind is known. |fpath| NULL: |file| is the
 * configuration file itself, which the error already begins with, so it is not quoted again.
 */
static int open_regular(struct gw_conf_ctx *pc, const char *fpath, const char *file, const char *hint,
                        struct stat *st)
{
    char named[GW_ERR_LEN] = "", named_is[GW_ERR_LEN] = "", shown[GW_ERR_LEN];
    int fd;

    if (fpath != NULL) {
        gw_conf_show_file(file, shown, sizeof(shown));
        gw_conf_bprintf(named, sizeof(named), " \"%s\"", shown);
        gw_conf_bprintf(named_is, sizeof(named_is), "\"%s\" is ", shown);
    }
    if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
        int why = errno;
        if (fpath != NULL)
            name_unopened(pc, file, named, sizeof(named));
        gw_conf_fail_as(pc, gw_err_errno_class(why), fpath, "cannot open%s: %s", named, strerror(why));
        errno = why; /* a file not there yet is told apart by some (gw_conf_open_secret) */
        return -1;
    }
    /* fstat follows a symlink: a link to a regular file (systemd credentials, Kubernetes secrets) is fine */
    if (fstat(fd, st) != 0)
        gw_conf_fail_as(pc, gw_err_errno_class(errno), fpath, "cannot read%s: %s", named, strerror(errno));
    else if (!S_ISREG(st->st_mode))
        gw_conf_fail(pc, fpath, "%snot a regular file (%s): %s", named_is, file_kind(st->st_mode), hint);
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        gw_conf_fail_as(pc, gw_err_errno_class(errno), fpath, "cannot read%s: %s", named, strerror(errno));
    else
        return fd;
    close(fd);
    errno = EINVAL;
    return -1;
}

/*
 * The rest of open |fd| of |file| read whole, as gw_conf_read_fd says; |st| what fstat said of it when
 * its opener asked (open_regular), else NULL: asked here. A file too large and one that cannot be read
 * are each refused in one place, whether the fstat or the read finds it.
 */
static BIO *read_whole(struct gw_conf_ctx *pc, const char *path, const char *file, int fd,
                       const struct stat *st)
{
    unsigned char chunk[4096];
    char shown[GW_ERR_LEN];
    struct stat own;
    const char *failed = NULL; /* why it cannot be read */
    BIO *bio = NULL;
    ssize_t n;
    off_t size = 0, total = 0;
    int large, rc = GW_ERR_INVAL; /* the class of |failed| (gw_err_errno_class): not always the file's */

    if (st != NULL) {
        size = st->st_size;
    } else if (fstat(fd, &own) == 0) {
        size = own.st_size;
    } else {
        failed = strerror(errno);
        rc = gw_err_errno_class(errno);
    }
    /* read whole, it is held whole: a file named by mistake (a log, an image) must not fill the memory */
    large = size > GW_MAX_CONF_FILE_SIZE;
    /* read whole into a memory BIO, not through a FILE: PEM reads line by line (an fd BIO reads a line a
       byte at a time), and a certificate file may hold a private key too, which stdio's buffer would keep
       in the memory it frees; a memory BIO wipes its buffer when freed, and |chunk| is wiped here */
    if (failed == NULL && !large) {
        if ((bio = BIO_new(BIO_s_mem())) == NULL) {
            failed = "out of memory";
            rc = GW_ERR_NOMEM;
        } else {
            BIO_set_mem_eof_return(bio, 0); /* its end reads as a file's: no retry */
        }
    }
    while (bio != NULL && failed == NULL && !large && (n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            failed = strerror(errno);
            rc = gw_err_errno_class(errno);
        } else if ((total += n) > GW_MAX_CONF_FILE_SIZE) /* it grew since the fstat */
            large = 1;
        else if (BIO_write(bio, chunk, (int)n) != (int)n) {
            failed = "out of memory";
            rc = GW_ERR_NOMEM;
        }
    }
    OPENSSL_cleanse(chunk, sizeof(chunk));
    close(fd);
    if (!large && failed == NULL)
        return bio;
    gw_conf_show_file(file, shown, sizeof(shown));
    if (large)
        gw_conf_fail(pc, path, "\"%s\" is larger than %d bytes", shown, GW_MAX_CONF_FILE_SIZE);
    else
        gw_conf_fail_as(pc, rc, path, "cannot read \"%s\": %s", shown, failed);
    BIO_free(bio);
    return NULL;
}

BIO *gw_conf_read_fd(struct gw_conf_ctx *pc, const char *path, const char *file, int fd)
{
    return read_whole(pc, path, file, fd, NULL);
}

BIO *gw_conf_open(struct gw_conf_ctx *pc, const char *path, const char *file)
{
    struct stat st;
    int fd;

    if ((fd = open_regular(pc, path, file, name_the_file, &st)) < 0)
        return NULL;
    return read_whole(pc, path, file, fd, &st);
}

int gw_conf_open_secret(struct gw_conf_ctx *pc, const char *fpath, const char *file, bool private)
{
    mode_t shared = private ? S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH : S_IROTH | S_IWOTH;
    char shown[GW_ERR_LEN];
    struct stat st;
    int fd;

    if ((fd = open_regular(pc, fpath, file, "name the file that holds the secret", &st)) < 0)
        return -1;
    gw_conf_show_file(file, shown, sizeof(shown));
    if ((st.st_mode & shared) != 0) {
        gw_conf_fail(pc, fpath,
                     private ? "\"%s\" is readable or writable by group or others (mode %03o): make it 0600 "
                               "or 0400"
                             : "\"%s\" is readable or writable by others (mode %03o): chmod it 0600 (or "
                               "0640 to share it with the gateway's group)",
                     shown, (unsigned)(st.st_mode & 0777));
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if ((st.st_mode & (S_IRGRP | S_IWGRP)) != 0)
        gw_log(GW_LOG_WARN, "config", "%s: %s: \"%s\" is readable or writable by its group", pc->name, fpath,
               shown);
    return fd;
}

/*
 * Reads secret |file| (at most |cap| bytes plus one trailing "\n" or "\r\n", which is removed) into
 * a new buffer of |cap| + 3 bytes: free it with OPENSSL_clear_free(buf, cap + 3), refused or warned
 * of by its mode as gw_conf_open_secret says. Never quotes the content.
 */
static int read_secret(struct gw_conf_ctx *pc, const char *fpath, const char *file, size_t cap, bool private,
                       unsigned char **out, size_t *out_len)
{
    unsigned char *buf = NULL;
    char shown[GW_ERR_LEN];
    ssize_t len = -1;
    int fd, why;

    *out = NULL;
    if ((fd = gw_conf_open_secret(pc, fpath, file, private)) < 0)
        return pc->failed;
    /* two more than the cap: room for a trailing "\r\n", and one to see it is too long */
    if ((buf = OPENSSL_zalloc(cap + 3)) == NULL) {
        close(fd);
        return gw_conf_fail_as(pc, GW_ERR_NOMEM, fpath, "out of memory");
    }
    len = read_all(fd, buf, cap + 3);
    why = errno;
    close(fd);
    if (len < 0) {
        OPENSSL_clear_free(buf, cap + 3);
        return gw_conf_fail_as(pc, gw_err_errno_class(why), fpath, "cannot read \"%s\": %s",
                               gw_conf_show_file(file, shown, sizeof(shown)), strerror(why));
    }
    if (len > 0 && buf[len - 1] == '\n')
        len -= (len > 1 && buf[len - 2] == '\r') ? 2 : 1;
    *out = buf;
    *out_len = (size_t)len;
    return 0;
}

int gw_conf_read_secret(struct gw_conf_ctx *pc, const char *fpath, const char *file, size_t cap,
                        unsigned char **out, size_t *out_len)
{
    return read_secret(pc, fpath, file, cap, false, out, out_len);
}

/* ---- duplicate keys ------------------------------------------------------------------------ */

/*
 * A scan of text json-c has already accepted, so it may assume well-formed JSON. Each object's
 * keys go into a scratch json-c object used as a hash set. Nesting is bounded by json-c's depth
 * limit (JSON_TOKENER_DEFAULT_DEPTH), so the recursion is too.
 */
static void line_col(const char *s, size_t off, unsigned *line, unsigned *col);

struct scan {
    const char *s;
    size_t len, pos;
};

static void scan_ws(struct scan *sc)
{
    while (sc->pos < sc->len && strchr(" \t\r\n", sc->s[sc->pos]) != NULL && sc->s[sc->pos] != '\0')
        sc->pos++;
}

/* Skips a string starting at its opening quote; returns the raw bytes between the quotes. */
static void scan_string(struct scan *sc, size_t *start, size_t *end)
{
    *start = ++sc->pos;
    while (sc->pos < sc->len && sc->s[sc->pos] != '"')
        sc->pos += sc->s[sc->pos] == '\\' ? 2 : 1;
    *end = sc->pos;
    sc->pos++;
}

/* The decoded key (escapes resolved, so "a" and "\u0061" collide) as a new json-c string. */
static struct json_object *scan_key(struct scan *sc, size_t start, size_t end)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *key = NULL;

    if (tok != NULL)
        key = json_tokener_parse_ex(tok, sc->s + start - 1, (int)(end - start + 2));
    json_tokener_free(tok);
    return key;
}

static int scan_value(struct gw_conf_ctx *pc, struct scan *sc, const char *path);

static int scan_object(struct gw_conf_ctx *pc, struct scan *sc, const char *path)
{
    struct json_object *seen = json_object_new_object(), *key = NULL;
    char kpath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];
    const char *name;
    size_t start, end;
    bool shown;
    int rc = GW_ERR_NOMEM;

    sc->pos++; /* '{' */
    while (seen != NULL) {
        scan_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] == '}') {
            rc = 0;
            break;
        }
        if (sc->s[sc->pos] == ',') {
            sc->pos++;
            continue;
        }
        if (sc->s[sc->pos] != '"') {
            /* json-c 0.16 accepts 'single-quoted' keys even in strict mode */
            unsigned line, col;
            line_col(sc->s, sc->pos, &line, &col);
            rc = gw_conf_fail(pc, NULL,
                              "invalid JSON at line %u, column %u: object keys must be in double quotes",
                              line, col);
            break;
        }
        scan_string(sc, &start, &end);
        if ((key = scan_key(sc, start, end)) == NULL)
            break;
        name = json_object_get_string(key);
        shown = name_shown(name);
        if (shown)
            gw_conf_join_key(kpath, path, name);
        else /* the path of what its value refuses: a secret pasted as a key is not quoted there either */
            gw_conf_bprintf(kpath, sizeof(kpath), "%s.(a key of %zu bytes, not quoted)", path, strlen(name));
        if (json_object_object_get_ex(seen, name, NULL)) {
            rc = shown ? gw_conf_fail(pc, path, "duplicate key %s", gw_conf_show(key, buf, sizeof(buf)))
                       : gw_conf_fail(pc, path, "duplicate key of %zu bytes, " NOT_A_KEY_NAME, strlen(name));
            break;
        }
        if (json_object_object_add(seen, name, NULL) != 0)
            break;
        json_object_put(key);
        key = NULL;
        scan_ws(sc);
        sc->pos++; /* ':' */
        if ((rc = scan_value(pc, sc, kpath)) != 0)
            break;
        rc = GW_ERR_NOMEM;
    }
    sc->pos++; /* '}' */
    json_object_put(key);
    json_object_put(seen);
    return rc;
}

static int scan_array(struct gw_conf_ctx *pc, struct scan *sc, const char *path)
{
    char ipath[GW_CONF_PATH_LEN];
    size_t i = 0;
    int rc;

    sc->pos++; /* '[' */
    for (;;) {
        scan_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] == ']')
            break;
        if (sc->s[sc->pos] == ',') {
            sc->pos++;
            i++;
            continue;
        }
        gw_conf_join_index(ipath, path, i);
        if ((rc = scan_value(pc, sc, ipath)) != 0)
            return rc;
    }
    sc->pos++;
    return 0;
}

static int scan_value(struct gw_conf_ctx *pc, struct scan *sc, const char *path)
{
    size_t start, end;

    scan_ws(sc);
    if (sc->pos >= sc->len)
        return 0;
    switch (sc->s[sc->pos]) {
    case '{':
        return scan_object(pc, sc, path);
    case '[':
        return scan_array(pc, sc, path);
    case '"':
        scan_string(sc, &start, &end);
        return 0;
    default: /* number, true, false, null */
        while (sc->pos < sc->len && strchr(",]} \t\r\n", sc->s[sc->pos]) == NULL)
            sc->pos++;
        return 0;
    }
}

/* Line and column (1-based) of byte |off|, for parse errors. */
static void line_col(const char *s, size_t off, unsigned *line, unsigned *col)
{
    size_t i;

    *line = 1;
    *col = 1;
    for (i = 0; i < off; i++) {
        if (s[i] == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

/* Strict JSON text into a json-c tree (caller puts it), or NULL with the error set. */
static struct json_object *parse_json(struct gw_conf_ctx *pc, const char *json, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *root = NULL;
    enum json_tokener_error jerr;
    unsigned line, col;
    size_t end;

    if (tok == NULL) {
        gw_conf_fail_as(pc, GW_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    /* trailing data is detected below, to say so rather than "unexpected character" */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
    root = json_tokener_parse_ex(tok, json, (int)len);
    jerr = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    while (root != NULL && end < len && strchr(" \t\r\n", json[end]) != NULL && json[end] != '\0')
        end++;
    line_col(json, end, &line, &col);
    if (root == NULL && jerr == json_tokener_continue)
        gw_conf_fail(pc, NULL, "invalid JSON: unexpected end of file");
    else if (root == NULL)
        gw_conf_fail(pc, NULL, "invalid JSON at line %u, column %u: %s", line, col,
                     json_tokener_error_desc(jerr));
    else if (end < len)
        gw_conf_fail(pc, NULL,
                     "invalid JSON at line %u, column %u: unexpected data after the top-level object", line,
                     col);
    json_tokener_free(tok);
    if (root != NULL && end < len) {
        json_object_put(root);
        root = NULL;
    }
    return root;
}

int gw_conf_check_owner(const char *key, const char *what, const char *path, const struct stat *st,
                        uid_t owner, char *err)
{
    char shown[GW_ERR_LEN];

    if (st->st_uid == owner || st->st_uid == 0)
        return 0;
    gw_conf_bprintf(err, GW_ERR_LEN,
                    "%s: %s\"%s\" is owned by uid %ld, neither the gateway's user (uid %ld) nor root: "
                    "chown it to the gateway's user",
                    key, what, gw_conf_show_file(path, shown, sizeof(shown)), (long)st->st_uid, (long)owner);
    return GW_ERR_FORBIDDEN;
}

/*
 * Whoever may add a name to the directory, or take one from it, could rename the file away, or plant
 * a link or a file of their own where the gateway (perhaps still root) creates or opens it. The sticky
 * bit leaves each name to its owner: /tmp passes, and there another user may only take a name first,
 * which the file's own checks refuse.
 */
static int check_dir_writers(const char *key, const char *dir, const struct stat *st, uid_t owner, char *err)
{
    char shown[GW_ERR_LEN];

    if ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0 || (st->st_mode & S_ISVTX) != 0)
        return gw_conf_check_owner(key, "the directory ", dir, st, owner, err);
    gw_conf_bprintf(err, GW_ERR_LEN,
                    "%s: the directory \"%s\" is writable by group or others without the sticky bit "
                    "(mode %04o): make it 0755",
                    key, gw_conf_show_file(dir, shown, sizeof(shown)), (unsigned)(st->st_mode & 07777));
    return GW_ERR_FORBIDDEN;
}

/*
 * The walk of a written file's directory, one name at a time, each opened from the directory before
 * it (openat O_PATH | O_NOFOLLOW) and judged by fstat of what was opened, so what is judged is what the
 * walk goes on from. A link is read where it stands (readlinkat of its own descriptor) and its target
 * walked on, from "/" or from the directory holding it, so every link of a chain and every directory
 * it leads through is judged; the kernel's resolution, done by hand.
 */
struct dir_walk {
    const char *key;
    uid_t owner;
    int fd;              /* the directory reached */
    char name[PATH_MAX]; /* its name as walked, links and ".." kept: the same directory to the kernel */
    char rest[PATH_MAX]; /* what is left to walk */
    unsigned links;      /* symbolic links followed */
};

/* A system call of the walk that failed with errno |e| at |name|: its code (gw_err_errno_io) with |err|. */
static int walk_fail(struct dir_walk *w, const char *name, int e, char *err)
{
    char shown[GW_ERR_LEN];

    gw_conf_bprintf(err, GW_ERR_LEN, "%s: cannot read the directory \"%s\": %s", w->key,
                    gw_conf_show_file(name, shown, sizeof(shown)), strerror(e));
    return gw_err_errno_io(e);
}

/* |w| at "/", judged. */
static int walk_from_root(struct dir_walk *w, char *err)
{
    struct stat st;

    if (w->fd >= 0)
        close(w->fd);
    snprintf(w->name, sizeof(w->name), "/");
    if ((w->fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || fstat(w->fd, &st) != 0)
        return walk_fail(w, "/", errno, err);
    return check_dir_writers(w->key, "/", &st, w->owner, err);
}

/* The next name of |w->rest| into |comp| (PATH_MAX bytes), taken off it: its length, 0 when none is left. */
static size_t walk_next(struct dir_walk *w, char *comp)
{
    const char *p = w->rest + strspn(w->rest, "/");
    size_t n = strcspn(p, "/");

    memcpy(comp, p, n);
    comp[n] = '\0';
    memmove(w->rest, p + n, strlen(p + n) + 1);
    return n;
}

/*
 * The link |path|, opened as |fd| with status |st|, that stands in |w|'s directory before |w->rest|: its
 * owner judged (where the sticky bit is set its owner may still replace it; the directory holding it
 * was judged on the way), its target put before what is left, and |w| back at "/" for an absolute one.
 */
static int walk_link(struct dir_walk *w, const char *path, int fd, const struct stat *st, char *err)
{
    char target[PATH_MAX], shown[GW_ERR_LEN];
    ssize_t n;
    int rc;

    if ((rc = gw_conf_check_owner(w->key, "the symbolic link ", path, st, w->owner, err)) != 0)
        return rc;
    if (++w->links > GW_MAX_DIR_LINKS) {
        gw_conf_bprintf(err, GW_ERR_LEN,
                        "%s: the directory \"%s\" is reached through more than %d symbolic links", w->key,
                        gw_conf_show_file(path, shown, sizeof(shown)), GW_MAX_DIR_LINKS);
        return GW_ERR_FORBIDDEN;
    }
    if ((n = readlinkat(fd, "", target, sizeof(target))) < 0)
        return walk_fail(w, path, errno, err);
    if ((size_t)n >= sizeof(target) || (size_t)n + 1 + strlen(w->rest) >= sizeof(w->rest))
        return walk_fail(w, path, ENAMETOOLONG, err);
    memmove(w->rest + n + 1, w->rest, strlen(w->rest) + 1);
    memcpy(w->rest, target, (size_t)n);
    w->rest[n] = '/';
    return target[0] == '/' ? walk_from_root(w, err) : 0;
}

/*
 * One name |comp| on the way, from |w|'s directory. The last, the directory the file is created in, may
 * not be a symbolic link: whoever may replace the link could point it elsewhere between two uses.
 */
static int walk_step(struct dir_walk *w, const char *comp, char *err)
{
    char path[PATH_MAX], shown[GW_ERR_LEN], *real = NULL;
    bool last = w->rest[strspn(w->rest, "/")] == '\0';
    struct stat st;
    int fd, rc;

    if (snprintf(path, sizeof(path), "%s%s%s", w->name, strcmp(w->name, "/") == 0 ? "" : "/", comp) >=
        (int)sizeof(path))
        return walk_fail(w, w->name, ENAMETOOLONG, err);
    if ((fd = openat(w->fd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        rc = walk_fail(w, path, errno, err);
    } else if (!S_ISLNK(st.st_mode)) {
        if ((rc = check_dir_writers(w->key, path, &st, w->owner, err)) == 0) {
            close(w->fd);
            w->fd = fd;
            fd = -1;
            memcpy(w->name, path, strlen(path) + 1);
        }
    } else if (!last) {
        rc = walk_link(w, path, fd, &st, err);
    } else {
        real = realpath(path, NULL);
        gw_conf_bprintf(err, GW_ERR_LEN,
                        "%s: the directory \"%s\" is a symbolic link%s%s%s: name the directory itself",
                        w->key, gw_conf_show_file(path, shown, sizeof(shown)), real != NULL ? " to \"" : "",
                        real != NULL ? real : "", real != NULL ? "\"" : "");
        rc = GW_ERR_FORBIDDEN;
    }
    if (fd >= 0)
        close(fd);
    free(real);
    return rc;
}

int gw_conf_check_dir(const char *key, const char *file, uid_t owner, char *err)
{
    const char *name;
    int dir = -1, rc = gw_conf_open_dir(key, file, owner, &dir, &name, err);

    if (dir >= 0)
        close(dir);
    return rc;
}

int gw_conf_open_dir(const char *key, const char *file, uid_t owner, int *dirfd, const char **name, char *err)
{
    char *dir = gw_conf_dir_of(file), comp[PATH_MAX];
    struct dir_walk *w = calloc(1, sizeof(*w));
    size_t end = strlen(file);
    int rc;

    *dirfd = -1;
    while (end > 0 && file[end - 1] != '/')
        end--;
    *name = file + end;
    if (w != NULL)
        *w = (struct dir_walk){.key = key, .owner = owner, .fd = -1};
    if (dir == NULL || w == NULL) {
        snprintf(err, GW_ERR_LEN, "out of memory");
        rc = GW_ERR_NOMEM;
        goto out;
    }
    /* a relative name starts where the gateway stands, and every directory above that is judged too */
    if (dir[0] != '/' && getcwd(comp, sizeof(comp)) == NULL) {
        rc = walk_fail(w, ".", errno, err);
        goto out;
    }
    if (snprintf(w->rest, sizeof(w->rest), "%s/%s", dir[0] != '/' ? comp : "", dir) >= (int)sizeof(w->rest)) {
        rc = walk_fail(w, dir, ENAMETOOLONG, err);
        goto out;
    }
    rc = walk_from_root(w, err);
    while (rc == 0 && walk_next(w, comp) > 0) {
        if (strcmp(comp, ".") != 0)
            rc = walk_step(w, comp, err);
    }
out:
    if (rc == 0) {
        *dirfd = w->fd;
        w->fd = -1;
    }
    if (w != NULL && w->fd >= 0)
        close(w->fd);
    free(w);
    free(dir);
    return rc;
}

int gw_conf_still_named(int fd, int dir, const char *name, struct stat *named)
{
    struct stat held;

    if (fstat(fd, &held) != 0)
        return -1;
    if (fstatat(dir, name, named, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : -1;
    return held.st_dev == named->st_dev && held.st_ino == named->st_ino;
}

int gw_conf_check_own_dir(const char *key, const char *dir, uid_t owner, char *err)
{
    char shown[GW_ERR_LEN];
    struct stat st;

    gw_conf_show_file(dir, shown, sizeof(shown));
    if (stat(dir, &st) != 0) {
        int why = errno;

        gw_conf_bprintf(err, GW_ERR_LEN, "%s: cannot read the directory \"%s\": %s", key, shown,
                        strerror(why));
        return gw_err_errno_io(why);
    }
    if (!S_ISDIR(st.st_mode)) {
        gw_conf_bprintf(err, GW_ERR_LEN, "%s: \"%s\" is not a directory", key, shown);
        return GW_ERR_IO;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) == 0)
        return gw_conf_check_owner(key, "the directory ", dir, &st, owner, err);
    gw_conf_bprintf(err, GW_ERR_LEN,
                    "%s: the directory \"%s\" is writable by group or others (mode %04o): make it 0750", key,
                    shown, (unsigned)(st.st_mode & 07777));
    return GW_ERR_FORBIDDEN;
}

int gw_conf_stat_written(const char *key, const char *file, uid_t owner, struct stat *st, char *err)
{
    char shown[GW_ERR_LEN];
    int rc = gw_conf_check_dir(key, file, owner, err);

    if (rc != 0)
        return rc;
    gw_conf_show_file(file, shown, sizeof(shown));
    if (lstat(file, st) == 0)
        return 1;
    if (errno == ENOENT) /* the start creates it */
        return 0;
    gw_conf_bprintf(err, GW_ERR_LEN, "%s: cannot read \"%s\": %s", key, shown, strerror(errno));
    return GW_ERR_IO;
}

/* Reads a whole regular file of at most GW_MAX_CONFIG_SIZE bytes. */
char *gw_conf_read_file(struct gw_conf_ctx *pc, const char *path, size_t *len)
{
    struct stat st;
    char *buf = NULL;
    ssize_t n;
    int fd;

    /* a FIFO named as the configuration would hold a start, or a reload, until a writer came along */
    if ((fd = open_regular(pc, NULL, path, name_the_file, &st)) < 0)
        return NULL;
    /* one byte more than the cap tells a file at the cap from one over it */
    if ((buf = malloc(GW_MAX_CONFIG_SIZE + 1)) == NULL) {
        gw_conf_fail_as(pc, GW_ERR_NOMEM, NULL, "out of memory");
    } else if ((n = read_all(fd, (unsigned char *)buf, GW_MAX_CONFIG_SIZE + 1)) < 0) {
        gw_conf_fail_as(pc, gw_err_errno_class(errno), NULL, "cannot read: %s", strerror(errno));
    } else if (n > GW_MAX_CONFIG_SIZE) {
        gw_conf_fail(pc, NULL, "larger than %d bytes", GW_MAX_CONFIG_SIZE);
    } else {
        *len = (size_t)n;
        close(fd);
        return buf;
    }
    free(buf);
    close(fd);
    return NULL;
}

int gw_conf_read(struct gw_conf_ctx *pc, const char *json, size_t len, const struct gw_conf_obj *top,
                 void *dst)
{
    struct gw_conf_field f = {.parse = gw_conf_p_obj, .aux = top};
    struct json_object *root = NULL;
    struct scan sc = {json, len, 0};
    int rc;

    if (len > GW_MAX_CONFIG_SIZE)
        return gw_conf_fail(pc, NULL, "larger than %d bytes", GW_MAX_CONFIG_SIZE);
    if ((root = parse_json(pc, json, len)) == NULL)
        return GW_ERR_INVAL;
    if ((rc = scan_value(pc, &sc, "$")) == 0)
        rc = f.parse(pc, "$", root, dst, &f);
    json_object_put(root);
    return rc;
}

static int read_secret_sized(struct gw_conf_ctx *pc, const char *fpath, const char *file, size_t min,
                             size_t max, bool private, unsigned char **out, size_t *out_len)
{
    unsigned char *buf = NULL;
    char shown[GW_ERR_LEN];
    size_t len = 0;

    *out = NULL;
    if (read_secret(pc, fpath, file, max, private, &buf, &len) != 0)
        return pc->failed;
    if (len < min || len > max) {
        OPENSSL_clear_free(buf, max + 3);
        return gw_conf_fail(pc, fpath, "the secret in \"%s\" must be %zu..%zu bytes",
                            gw_conf_show_file(file, shown, sizeof(shown)), min, max);
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int gw_conf_read_secret_sized(struct gw_conf_ctx *pc, const char *fpath, const char *file, size_t min,
                              size_t max, unsigned char **out, size_t *out_len)
{
    return read_secret_sized(pc, fpath, file, min, max, false, out, out_len);
}

int gw_conf_read_private_secret(struct gw_conf_ctx *pc, const char *fpath, const char *file, size_t min,
                                size_t max, unsigned char **out, size_t *out_len)
{
    return read_secret_sized(pc, fpath, file, min, max, true, out, out_len);
}
