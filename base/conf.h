/*
 * The configuration reader: strict JSON (json-c) into C structs, described by tables.
 *
 * Shape (nginx's ngx_command_t, h2o's configurator): every JSON object is a const table of
 * {key, required, default, parser, offset}; one small strict parser per value type; each object
 * may have a check that runs once its keys are parsed (file loading, key/cert match). Each part of
 * the program owns the tables of its own section (the roles in mappings/, each upstream adapter in
 * upstream/, the listener and the top level in gateway/config.c); this file holds what they share.
 * Every error names the file, the JSON path and the offending value, e.g.
 *   cmpgw.json: $.roles.default.max_ttl: expected a duration such as "720h", got "forever"
 *
 * json-c keeps the last of duplicate keys silently, so gw_conf_read scans the (already validated)
 * text for duplicates first: a duplicated key is almost always a bad merge of two configs.
 */
#ifndef GW_BASE_CONF_H
#define GW_BASE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct json_object;

#define GW_CONF_PATH_LEN 256 /* a JSON path in an error: names are short (GW_MAX_NAME_LEN) */
#define GW_CONF_SHOW_LEN 64  /* how much of an offending value an error quotes */
#define GW_CONF_SHOW_BUF (GW_CONF_SHOW_LEN + 8)
#define GW_CONF_KEY_SHOW_LEN 40 /* the longest key an error quotes: longer than any key of a table */
#define GW_CONF_KEY_WORD_LEN 16 /* the longest run of letters and digits in it: no key's word is longer */
#define GW_CONF_FILE_EXT_LEN 8  /* the longest extension of a file name read as one (".pem", ".secret") */

/* One load: where errors go and how relative file names resolve. */
struct gw_conf_ctx {
    const char *name;     /* the file name errors start with */
    const char *base_dir; /* relative file names resolve against it */
    char *err;            /* GW_ERR_LEN bytes */
    /* The class of the error in |err|: GW_ERR_INVAL, the file refused (gw_conf_fail; 0 where none was
       said), unless gw_conf_fail_as said another: GW_ERR_UNAVAILABLE for what the system lacks at this
       moment and another try may find (a PKCS#11 token not present yet, a token file another service
       writes after boot, a read that failed for the disk or for descriptors run out: gw_err_errno_class),
       GW_ERR_NOMEM. */
    int failed;
};

struct gw_conf_field;
/* A value parser: |v| is the JSON value, or NULL to apply the field's default. */
typedef int (*gw_conf_parse_fn)(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                                const struct gw_conf_field *f);

struct gw_conf_field {
    const char *key;
    bool required;
    gw_conf_parse_fn parse;
    size_t off;       /* where the value goes in the struct being filled */
    size_t off_n;     /* arrays: where the element count goes */
    int64_t min, max; /* integers, durations (in the field's unit) */
    int64_t def;      /* default of integers, durations, bools, enums */
    const char *sdef; /* default of strings */
    const void *aux;  /* sub-table, enum names, map shape, name kind */
};

/* A JSON object's shape: its keys, and a check run once they are all parsed. */
struct gw_conf_obj {
    const struct gw_conf_field *fields;
    size_t n;
    int (*check)(struct gw_conf_ctx *pc, const char *path, void *base);
};

/* Names used as map keys and references, and what they must look like. */
struct gw_conf_names {
    bool (*ok)(const char *s, size_t len);
    const char *desc;
};

/* A JSON object used as a map: name -> value, into an array of |elem_size| structs. */
struct gw_conf_map {
    size_t elem_size;
    size_t name_off;
    const struct gw_conf_names *names;
    gw_conf_parse_fn value;
    size_t value_off;
    const void *value_aux;
};

/* An enum's accepted names; a value < 0 is recognised but refused, |why| says why. */
struct gw_conf_enum {
    const char *name;
    int value;
    const char *why;
};

/* Table rows: a required or optional key of struct T, stored at member m. */
#define GW_CONF_REQ(k, fn, T, m, ...)                                                                        \
    {                                                                                                        \
        .key = (k), .required = true, .parse = (fn), .off = offsetof(T, m), __VA_ARGS__                      \
    }
#define GW_CONF_OPT(k, fn, T, m, ...)                                                                        \
    {                                                                                                        \
        .key = (k), .required = false, .parse = (fn), .off = offsetof(T, m), __VA_ARGS__                     \
    }
#define GW_CONF_OBJDEF(name, tbl, chk)                                                                       \
    static const struct gw_conf_obj name = {tbl, sizeof(tbl) / sizeof(tbl[0]), chk}

/* Writes "<file>: <path>: <reason>" into the context's error buffer; returns GW_ERR_INVAL, its class. */
int gw_conf_fail(struct gw_conf_ctx *pc, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* gw_conf_fail of class |rc| (struct gw_conf_ctx's |failed|), which it returns. */
int gw_conf_fail_as(struct gw_conf_ctx *pc, int rc, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* snprintf for text that is cut on purpose (errors, paths): truncation is the intended result. */
void gw_conf_bprintf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Quotes a value for an error: its JSON text, cut to GW_CONF_SHOW_LEN bytes (|cap| >= GW_CONF_SHOW_BUF), with
   the userinfo of a URL ("https://user:password@host": all from "://" to its last '@') or of a value
   without a scheme ("user:password@host": all before its last '@' when a ':' comes before it) written
   "***". */
const char *gw_conf_show(struct json_object *v, char *buf, size_t cap);
/* Writes |file|, a file or directory name as the configuration gave it (relative ones resolved), into |buf|
   (|cap| bytes) as an error quotes it, and returns |buf|: the value of every "pin-value" attribute of a
   PKCS#11 URI in it (RFC 7512 §2.3) written "***", and its userinfo too, as gw_conf_show writes it. Where a
   file goes, a URI or a URL with a secret may be written by mistake; what cannot be opened is quoted. */
const char *gw_conf_show_file(const char *file, char *buf, size_t cap);
/* Whether an error may quote |key|, a JSON object's key: when it reads as a key's name, 1..
   GW_CONF_KEY_SHOW_LEN bytes of [a-z0-9_-] starting with a letter, and no more than GW_CONF_KEY_WORD_LEN
   letters and digits in a row. Any other may be a secret pasted where a key goes. */
bool gw_conf_key_shown(const char *key);
/* Refuses |key| of the object at |path| as "<path>.<key>: <reason>" when gw_conf_key_shown, else as
   "<path>: <reason> of <n> bytes", the key unquoted; returns GW_ERR_INVAL. */
int gw_conf_fail_key(struct gw_conf_ctx *pc, const char *path, const char *key, const char *reason);
/* "<path>.<key>" and "<path>[<i>]" into |out| (GW_CONF_PATH_LEN bytes). */
void gw_conf_join_key(char *out, const char *path, const char *key);
void gw_conf_join_index(char *out, const char *path, size_t i);
/* The member at |off| of the struct being filled. */
void *gw_conf_at(void *base, size_t off);
/* The string value of |v|, or NULL with an error naming |what| was expected. */
const char *gw_conf_want_string(struct gw_conf_ctx *pc, const char *path, struct json_object *v,
                                const char *what);
const struct gw_conf_enum *gw_conf_enum_find(const struct gw_conf_enum *e, const char *s);

/* Names: 1..GW_MAX_NAME_LEN characters [A-Za-z0-9._-]. */
bool gw_conf_name_ok(const char *s, size_t len);
/* Whether |s| (|len| bytes) is a plain segment of a path: 1 or more of [A-Za-z0-9._-], neither "." nor
 * "..", so that it names itself wherever it is put into a path (a role's, an upstream's API). */
bool gw_conf_segment_ok(const char *s, size_t len);
extern const struct gw_conf_names gw_conf_names_plain;
/* References: a senderKID (RFC 9810 §5.1.1), 1..GW_MAX_KID_LEN printable ASCII bytes. */
extern const struct gw_conf_names gw_conf_names_kid;
/* A URL path like "/pki": leading "/", no trailing, double, "." or ".." segment, [A-Za-z0-9._~/-]. */
bool gw_conf_prefix_ok(const char *s);

/* Value parsers, for the |parse| column of a table (what each stores is in its comment in conf.c). */
int gw_conf_p_u32(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f);
int gw_conf_p_port(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f);
int gw_conf_p_bool(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f);
int gw_conf_p_enum(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f);
int gw_conf_p_enum_bool(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                        const struct gw_conf_field *f);
int gw_conf_p_flags(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                    const struct gw_conf_field *f);
int gw_conf_p_dur_ms(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                     const struct gw_conf_field *f);
int gw_conf_p_dur_s(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                    const struct gw_conf_field *f);
int gw_conf_p_address(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                      const struct gw_conf_field *f);
int gw_conf_p_name(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f);
int gw_conf_p_str(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f);
int gw_conf_p_prefix(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                     const struct gw_conf_field *f);
int gw_conf_p_file(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f);
int gw_conf_p_names(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                    const struct gw_conf_field *f);
int gw_conf_p_url(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f);
int gw_conf_p_obj(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f);
/* An optional object: absent means "not configured" (its sub-keys' defaults are not applied). */
int gw_conf_p_opt_obj(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                      const struct gw_conf_field *f);
int gw_conf_p_map(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f);

/*
 * gw_conf_read parses |len| bytes of strict JSON (at most GW_MAX_CONFIG_SIZE, no duplicate keys)
 * and fills |dst| by the top-level table |top|. Returns 0, GW_ERR_NOMEM, or another gw_err with the
 * error set. |dst| may be half filled on error: its owner frees it.
 */
int gw_conf_read(struct gw_conf_ctx *pc, const char *json, size_t len, const struct gw_conf_obj *top,
                 void *dst);

/*
 * Reads the whole file at |path| (at most GW_MAX_CONFIG_SIZE bytes) into a new buffer, or NULL; a
 * file that is not a regular one (after symlinks) is refused without waiting on it, as by gw_conf_open.
 */
char *gw_conf_read_file(struct gw_conf_ctx *pc, const char *path, size_t *len);

/*
 * |file| opened for reading as a BIO, or NULL with the error set (at |path|): the opener of every
 * file that holds no secret (certificates, CRLs, allowlists). Anything but a regular file (after
 * symlinks) is refused as gw_conf_open_secret refuses it, a FIFO without blocking on it, and so is one
 * over GW_MAX_CONF_FILE_SIZE bytes: the BIO holds the file whole. A file that cannot be opened is named
 * in the error only when what the configuration wrote reads as a file's name (a '/' or '.' first, or an
 * extension): a secret pasted in its place is counted, not quoted; so too by gw_conf_open_secret.
 */
struct bio_st *gw_conf_open(struct gw_conf_ctx *pc, const char *path, const char *file);

/*
 * The rest of open |fd| of |file| read whole (at most GW_MAX_CONF_FILE_SIZE bytes) into a memory BIO
 * whose buffer is wiped when freed, or NULL with the error set (at |path|); closes |fd|. What
 * gw_conf_open reads with, and the reader of a secret file that OpenSSL parses (a private key).
 */
struct bio_st *gw_conf_read_fd(struct gw_conf_ctx *pc, const char *path, const char *file, int fd);

/*
 * The directory that holds the last segment of |path|, as dirname(3) names it ("." when it has none,
 * "/a" for "/a/b/"), as a new string, or NULL.
 */
char *gw_conf_dir_of(const char *path);

struct stat;
/*
 * The rule for a file the gateway writes and reads back (|key| names it in errors): 0 when |owner|
 * (the user the gateway serves as) or root owns |path|, whose status is |st| (|what|: "" or "the
 * directory "), else GW_ERR_FORBIDDEN with |err| (GW_ERR_LEN bytes): its owner may chmod it at will.
 */
int gw_conf_check_owner(const char *key, const char *what, const char *path, const struct stat *st,
                        uid_t owner, char *err);

/*
 * 0 when no one but |owner| or root may add names to the directory of |file|, or take them from it,
 * unless the sticky bit keeps each name to its owner, and |owner| or root owns it; else an error with
 * |err|: anyone else could plant a link at |file| and have the gateway write through it. The same holds
 * for every directory on the way from "/" (a relative name: from the working directory's real path),
 * walked one name at a time as the kernel would, ".." included; each symbolic link on the way must be
 * |owner|'s or root's and its target is walked on (from the directory holding it, if relative), at
 * most GW_MAX_DIR_LINKS of them: whoever may rename one could put a directory of their choice under
 * |file|. The directory itself may not be a symbolic link, which whoever may replace it
 * could point elsewhere between two uses. A system call that failed for what another try may mend
 * (descriptors run out, a failing disk) gives its class, GW_ERR_UNAVAILABLE or GW_ERR_NOMEM, not the
 * path's GW_ERR_IO (gw_err_errno_io); so does gw_conf_check_own_dir.
 */
int gw_conf_check_dir(const char *key, const char *file, uid_t owner, char *err);

/*
 * gw_conf_check_dir, and the directory it judged held as *|dir| (O_PATH: a descriptor for openat(2),
 * renameat(2), fstatat(2), which the caller closes), with *|name| pointing at the last segment of |file|
 * within it. Files opened from *|dir| are in the directory that was judged, whatever is renamed on the
 * way since: a name opened again would be walked again, after its directories' owners could swap one.
 */
int gw_conf_open_dir(const char *key, const char *file, uid_t owner, int *dir, const char **name, char *err);

/*
 * Whether |fd| is the file |name| in directory |dir| (gw_conf_open_dir) still, the name not followed:
 * 1 with its status in |named|, 0 where it was replaced or removed, or -1 with errno.
 */
int gw_conf_still_named(int fd, int dir, const char *name, struct stat *named);

/*
 * 0 when |dir| (followed) is a directory of |owner| or root that no one else may write, sticky bit or
 * not, else an error with |err|. For a directory whose files the gateway trusts for being there (a
 * local issuer's store: a revocation record revokes): a name anyone else may add is itself the harm.
 */
int gw_conf_check_own_dir(const char *key, const char *dir, uid_t owner, char *err);

/*
 * The status of |file| (never followed) that the gateway creates, writes and reads back, once its
 * directory passed gw_conf_check_dir: 1 with |st|, 0 when it is absent (the start creates it), or an
 * error with |err|. What a `cmpgw check` of such a file starts with.
 */
int gw_conf_stat_written(const char *key, const char *file, uid_t owner, struct stat *st, char *err);

/*
 * Opens secret |file| (a private key, a passphrase, a token...) for reading: its descriptor, or -1
 * with the error set; the one opener of every file that holds a secret. One that others may
 * read or write is refused unread (every local account would hold, or choose, the secret); one its
 * group may read or write is opened with a warning (root:cmpgw 0640 lets the gateway's user read it
 * again at a reload), or refused too when |private|. Anything but a regular file (after symlinks) is
 * refused, a FIFO without blocking on it. Where |file| could not be opened, errno says why (ENOENT: there
 * is no such file); where it was refused once open, errno is EINVAL.
 */
int gw_conf_open_secret(struct gw_conf_ctx *pc, const char *fpath, const char *file, bool private);

/*
 * Reads secret |file| (at most |cap| bytes plus one trailing "\n" or "\r\n", which is removed) into
 * a new buffer of |cap| + 3 bytes: free it with OPENSSL_clear_free(buf, cap + 3). Refused or warned
 * of by its mode as gw_conf_open_secret says, errno ENOENT where there is no such file. Never quotes the
 * content.
 */
int gw_conf_read_secret(struct gw_conf_ctx *pc, const char *fpath, const char *file, size_t cap,
                        unsigned char **out, size_t *out_len);

/* gw_conf_read_secret for a secret that must be |min|..|max| bytes; free it with
 * OPENSSL_clear_free(*out, max + 3). */
int gw_conf_read_secret_sized(struct gw_conf_ctx *pc, const char *fpath, const char *file, size_t min,
                              size_t max, unsigned char **out, size_t *out_len);

/*
 * gw_conf_read_secret_sized for a secret only its owner may touch: a file that group or others may
 * read or write is refused (with its mode, not its content) before it is read.
 */
int gw_conf_read_private_secret(struct gw_conf_ctx *pc, const char *fpath, const char *file, size_t min,
                                size_t max, unsigned char **out, size_t *out_len);

/* Frees the |n| strings of |v| and |v| itself (what gw_conf_p_names fills). */
void gw_conf_free_strings(char **v, size_t n);

#endif
