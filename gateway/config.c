/*
 * Configuration: strict JSON (json-c) into an immutable snapshot, with its crypto material loaded.
 *
 * Shape (wireguard-tools' config.c, h2o's configurator): every JSON object is a const table of
 * {key, required, default, parser, offset}; one small strict parser per value type; each object
 * may have a check that runs once its keys are parsed (file loading, key/cert match); references
 * between sections (role -> upstream/trust/pbm, policy -> role) are resolved in one final
 * cross-field pass. Every error names the file, the JSON path and the offending value.
 *
 * json-c keeps the last of duplicate keys silently, so a small scan of the (already validated)
 * text finds duplicates first: a duplicated key is almost always a bad merge of two configs.
 */
#include "config.h"
#include "err.h"
#include "limits.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define PATH_LEN 256 /* a JSON path in an error: names are short (GW_MAX_NAME_LEN) */
#define SHOW_LEN 64  /* how much of an offending value an error quotes */

struct pctx {
    const char *name;     /* the file name errors start with */
    const char *base_dir; /* relative file names resolve against it */
    char *err;            /* GW_ERR_LEN bytes */
};

struct field;
/* A value parser: |v| is the JSON value, or NULL to apply the field's default. */
typedef int (*parse_fn)(struct pctx *pc, const char *path, struct json_object *v, void *base,
                        const struct field *f);

struct field {
    const char *key;
    bool required;
    parse_fn parse;
    size_t off;       /* where the value goes in the struct being filled */
    size_t off_n;     /* arrays: where the element count goes */
    int64_t min, max; /* integers, durations (in the field's unit) */
    int64_t def;      /* default of integers, durations, bools, enums */
    const char *sdef; /* default of strings */
    const void *aux;  /* sub-table, enum names, map shape, name kind */
};

/* A JSON object's shape: its keys, and a check run once they are all parsed. */
struct objdef {
    const struct field *fields;
    size_t n;
    int (*check)(struct pctx *pc, const char *path, void *base);
};

/* Names used as map keys and references, and what they must look like. */
struct namekind {
    bool (*ok)(const char *s, size_t len);
    const char *desc;
};

/* A JSON object used as a map: name -> value, into an array of |elem_size| structs. */
struct mapdef {
    size_t elem_size;
    size_t name_off;
    const struct namekind *names;
    parse_fn value;
    size_t value_off;
    const void *value_aux;
};

struct enumval {
    const char *name;
    int value; /* < 0: recognised but refused, |why| says why */
    const char *why;
};

static int fail(struct pctx *pc, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bprintf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* snprintf for text that is cut on purpose (errors, paths): truncation is the intended result. */
static void bprintf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

/* Writes "<file>: <path>: <reason>" into the caller's error buffer; returns GW_ERR_INVAL. */
static int fail(struct pctx *pc, const char *path, const char *fmt, ...)
{
    char reason[GW_ERR_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (path != NULL)
        bprintf(pc->err, GW_ERR_LEN, "%s: %s: %s", pc->name, path, reason);
    else
        bprintf(pc->err, GW_ERR_LEN, "%s: %s", pc->name, reason);
    ERR_clear_error();
    return GW_ERR_INVAL;
}

/* Quotes a value for an error: its JSON text, cut to SHOW_LEN bytes. */
static const char *show(struct json_object *v, char *buf, size_t cap)
{
    const char *s;

    if (json_object_is_type(v, json_type_object))
        return "an object";
    if (json_object_is_type(v, json_type_array))
        return "an array";
    s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (strlen(s) < cap && strlen(s) <= SHOW_LEN) {
        memcpy(buf, s, strlen(s) + 1);
        return buf;
    }
    bprintf(buf, cap, "%.*s...", SHOW_LEN, s);
    return buf;
}

static void join_key(char *out, const char *path, const char *key)
{
    bprintf(out, PATH_LEN, "%s.%s", path, key);
}

static void join_index(char *out, const char *path, size_t i)
{
    bprintf(out, PATH_LEN, "%s[%zu]", path, i);
}

static void *at(void *base, size_t off)
{
    return (char *)base + off;
}

/* ---- names ---------------------------------------------------------------------------- */

static bool name_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > GW_MAX_NAME_LEN)
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

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

static const struct namekind names_plain = {name_ok, "a name of 1..64 characters [A-Za-z0-9._-]"};
static const struct namekind names_kid = {kid_ok, "a reference of 1..128 printable ASCII characters"};

/* ---- scalar parsers --------------------------------------------------------------------- */

static int want_int(struct pctx *pc, const char *path, struct json_object *v, const struct field *f,
                    int64_t *out)
{
    char buf[SHOW_LEN + 8];

    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < f->min ||
        json_object_get_int64(v) > f->max)
        return fail(pc, path, "expected an integer in %lld..%lld, got %s", (long long)f->min,
                    (long long)f->max, show(v, buf, sizeof(buf)));
    *out = json_object_get_int64(v);
    return 0;
}

static int p_u32(struct pctx *pc, const char *path, struct json_object *v, void *base, const struct field *f)
{
    int64_t n = f->def;

    if (v != NULL && want_int(pc, path, v, f, &n) != 0)
        return GW_ERR_INVAL;
    *(uint32_t *)at(base, f->off) = (uint32_t)n;
    return 0;
}

static int p_port(struct pctx *pc, const char *path, struct json_object *v, void *base, const struct field *f)
{
    int64_t n = f->def;

    if (v != NULL && want_int(pc, path, v, f, &n) != 0)
        return GW_ERR_INVAL;
    *(uint16_t *)at(base, f->off) = (uint16_t)n;
    return 0;
}

static int p_bool(struct pctx *pc, const char *path, struct json_object *v, void *base, const struct field *f)
{
    char buf[SHOW_LEN + 8];

    if (v != NULL && !json_object_is_type(v, json_type_boolean))
        return fail(pc, path, "expected true or false, got %s", show(v, buf, sizeof(buf)));
    *(bool *)at(base, f->off) = v != NULL ? json_object_get_boolean(v) : f->def != 0;
    return 0;
}

/* A string value, or an error naming what was expected. */
static const char *want_string(struct pctx *pc, const char *path, struct json_object *v, const char *what)
{
    char buf[SHOW_LEN + 8];

    if (!json_object_is_type(v, json_type_string)) {
        fail(pc, path, "expected %s, got %s", what, show(v, buf, sizeof(buf)));
        return NULL;
    }
    return json_object_get_string(v);
}

static const struct enumval *enum_find(const struct enumval *e, const char *s)
{
    for (; e->name != NULL; e++)
        if (strcmp(e->name, s) == 0)
            return e;
    return NULL;
}

/* Lists an enum's accepted names, "a"|"b"|"c", for errors. */
static const char *enum_list(const struct enumval *e, char *buf, size_t cap)
{
    size_t len = 0;

    buf[0] = '\0';
    for (; e->name != NULL && len < cap; e++) {
        if (e->value < 0)
            continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\"", len > 0 ? "|" : "", e->name);
    }
    return buf;
}

static int p_enum(struct pctx *pc, const char *path, struct json_object *v, void *base, const struct field *f)
{
    const struct enumval *e;
    char list[160], buf[SHOW_LEN + 8];

    if (v == NULL) {
        *(int *)at(base, f->off) = (int)f->def;
        return 0;
    }
    enum_list(f->aux, list, sizeof(list));
    if (!json_object_is_type(v, json_type_string) ||
        (e = enum_find(f->aux, json_object_get_string(v))) == NULL)
        return fail(pc, path, "expected one of %s, got %s", list, show(v, buf, sizeof(buf)));
    *(int *)at(base, f->off) = e->value;
    return 0;
}

/* An array of enum names into a bit set; duplicates and refused names are errors. */
static int p_flags(struct pctx *pc, const char *path, struct json_object *v, void *base,
                   const struct field *f)
{
    const struct enumval *e;
    unsigned bits = 0;
    size_t i, n;
    char ipath[PATH_LEN], list[200], buf[SHOW_LEN + 8];

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_array))
        return fail(pc, path, "expected an array of names, got %s", show(v, buf, sizeof(buf)));
    enum_list(f->aux, list, sizeof(list));
    n = json_object_array_length(v);
    for (i = 0; i < n; i++) {
        struct json_object *el = json_object_array_get_idx(v, i);
        join_index(ipath, path, i);
        if (!json_object_is_type(el, json_type_string) ||
            (e = enum_find(f->aux, json_object_get_string(el))) == NULL)
            return fail(pc, ipath, "expected one of %s, got %s", list, show(el, buf, sizeof(buf)));
        if (e->value < 0)
            return fail(pc, ipath, "\"%s\" is not allowed: %s", e->name, e->why);
        if ((bits & (unsigned)e->value) != 0)
            return fail(pc, ipath, "duplicate entry \"%s\"", e->name);
        bits |= (unsigned)e->value;
    }
    *(unsigned *)at(base, f->off) = bits;
    return 0;
}

/* "720h", "30m", "45s", "7d", "250ms", or a JSON integer of seconds, into milliseconds. */
static int duration_ms(struct json_object *v, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *s, *p;
    uint64_t n = 0;
    size_t i;

    if (json_object_is_type(v, json_type_int)) {
        if (json_object_get_int64(v) < 0 || json_object_get_int64(v) > (int64_t)(UINT64_MAX / 1000 / 2))
            return -1;
        *out = (uint64_t)json_object_get_int64(v) * 1000;
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return -1;
    s = json_object_get_string(v);
    for (p = s; *p >= '0' && *p <= '9'; p++) {
        if (p - s >= 12)
            return -1; /* 12 digits of days is far past any bound: refuse before overflow */
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (p == s)
        return -1;
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            *out = n * units[i].ms;
            return 0;
        }
    }
    return -1;
}

/* A duration into uint32 milliseconds (f->min..f->max in ms). */
static int p_dur_ms(struct pctx *pc, const char *path, struct json_object *v, void *base,
                    const struct field *f)
{
    uint64_t ms = (uint64_t)f->def;
    char buf[SHOW_LEN + 8];

    if (v != NULL && duration_ms(v, &ms) != 0)
        return fail(pc, path, "expected a duration like \"10s\" or \"500ms\" or seconds, got %s",
                    show(v, buf, sizeof(buf)));
    if (ms < (uint64_t)f->min || ms > (uint64_t)f->max)
        return fail(pc, path, "expected a duration of %lldms..%lldms, got %s", (long long)f->min,
                    (long long)f->max, show(v, buf, sizeof(buf)));
    *(uint32_t *)at(base, f->off) = (uint32_t)ms;
    return 0;
}

/* A duration into uint32 seconds (f->min..f->max in seconds). */
static int p_dur_s(struct pctx *pc, const char *path, struct json_object *v, void *base,
                   const struct field *f)
{
    uint64_t ms = (uint64_t)f->def * 1000;
    char buf[SHOW_LEN + 8];

    if (v != NULL && duration_ms(v, &ms) != 0)
        return fail(pc, path, "expected a duration like \"720h\" or seconds, got %s",
                    show(v, buf, sizeof(buf)));
    if (ms % 1000 != 0)
        return fail(pc, path, "expected whole seconds, got %s", show(v, buf, sizeof(buf)));
    if (ms / 1000 < (uint64_t)f->min || ms / 1000 > (uint64_t)f->max)
        return fail(pc, path, "expected a duration of %llds..%llds, got %s", (long long)f->min,
                    (long long)f->max, show(v, buf, sizeof(buf)));
    *(uint32_t *)at(base, f->off) = (uint32_t)(ms / 1000);
    return 0;
}

static int p_address(struct pctx *pc, const char *path, struct json_object *v, void *base,
                     const struct field *f)
{
    unsigned char addr[16];
    const char *s;
    char buf[SHOW_LEN + 8];

    if (v == NULL)
        return 0;
    if ((s = want_string(pc, path, v, "a numeric IPv4 or IPv6 address")) == NULL)
        return GW_ERR_INVAL;
    if (inet_pton(AF_INET, s, addr) != 1 && inet_pton(AF_INET6, s, addr) != 1)
        return fail(pc, path, "expected a numeric IPv4 or IPv6 address, got %s", show(v, buf, sizeof(buf)));
    if ((*(char **)at(base, f->off) = strdup(s)) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* A reference to another section by name (checked to exist in the final pass). */
static int p_name(struct pctx *pc, const char *path, struct json_object *v, void *base, const struct field *f)
{
    const struct namekind *kind = f->aux;
    char buf[SHOW_LEN + 8];

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_string) ||
        !kind->ok(json_object_get_string(v), (size_t)json_object_get_string_len(v)))
        return fail(pc, path, "expected %s, got %s", kind->desc, show(v, buf, sizeof(buf)));
    if ((*(char **)at(base, f->off) = strdup(json_object_get_string(v))) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

static bool prefix_ok(const char *s)
{
    size_t len = strlen(s), i;

    if (len < 2 || len > GW_MAX_PATH_PREFIX_LEN || s[0] != '/' || s[len - 1] == '/')
        return false;
    if (strstr(s, "//") != NULL || strstr(s, "/./") != NULL || strstr(s, "/../") != NULL)
        return false;
    if (strcmp(s + len - 2, "/.") == 0 || (len >= 3 && strcmp(s + len - 3, "/..") == 0))
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '~' || c == '/' || c == '-'))
            return false;
    }
    return true;
}

static int p_prefix(struct pctx *pc, const char *path, struct json_object *v, void *base,
                    const struct field *f)
{
    const char *s = f->sdef;
    char buf[SHOW_LEN + 8];

    if (v != NULL && (s = want_string(pc, path, v, "a path like \"/pki\"")) == NULL)
        return GW_ERR_INVAL;
    if (!prefix_ok(s))
        return fail(pc, path,
                    "expected a path like \"/pki\" (leading \"/\", no trailing or double \"/\", "
                    "characters [A-Za-z0-9._~/-]), got %s",
                    show(v, buf, sizeof(buf)));
    if ((*(char **)at(base, f->off) = strdup(s)) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* A file name, resolved against the config file's directory; loading is the object check's job. */
static int p_file(struct pctx *pc, const char *path, struct json_object *v, void *base, const struct field *f)
{
    const char *s;
    char **dst = at(base, f->off);
    size_t need;

    if (v == NULL)
        return 0;
    if ((s = want_string(pc, path, v, "a file name")) == NULL)
        return GW_ERR_INVAL;
    if (s[0] == '\0')
        return fail(pc, path, "expected a file name, got \"\"");
    if (s[0] == '/' || pc->base_dir == NULL || pc->base_dir[0] == '\0') {
        *dst = strdup(s);
        return *dst != NULL ? 0 : GW_ERR_NOMEM;
    }
    need = strlen(pc->base_dir) + 1 + strlen(s) + 1;
    if ((*dst = malloc(need)) == NULL)
        return GW_ERR_NOMEM;
    snprintf(*dst, need, "%s/%s", pc->base_dir, s);
    return 0;
}

/* An array of names (references to other sections) into char ** and a count; no duplicates. */
static int p_names(struct pctx *pc, const char *path, struct json_object *v, void *base,
                   const struct field *f)
{
    const struct namekind *kind = f->aux;
    char ***dst = at(base, f->off);
    size_t *n = at(base, f->off_n), len, i, j;
    char ipath[PATH_LEN], buf[SHOW_LEN + 8];

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_array))
        return fail(pc, path, "expected an array of names, got %s", show(v, buf, sizeof(buf)));
    len = json_object_array_length(v);
    if (len == 0)
        return 0;
    if ((*dst = calloc(len, sizeof(**dst))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < len; i++) {
        struct json_object *el = json_object_array_get_idx(v, i);
        join_index(ipath, path, i);
        if (!json_object_is_type(el, json_type_string) ||
            !kind->ok(json_object_get_string(el), (size_t)json_object_get_string_len(el)))
            return fail(pc, ipath, "expected %s, got %s", kind->desc, show(el, buf, sizeof(buf)));
        for (j = 0; j < i; j++)
            if (strcmp((*dst)[j], json_object_get_string(el)) == 0)
                return fail(pc, ipath, "duplicate entry %s", show(el, buf, sizeof(buf)));
        if (((*dst)[i] = strdup(json_object_get_string(el))) == NULL)
            return GW_ERR_NOMEM;
        *n = i + 1;
    }
    return 0;
}

/* "role:<name>" or "forbid" into a struct gw_path_policy; the role is resolved in the final pass. */
static int p_policy(struct pctx *pc, const char *path, struct json_object *v, void *base,
                    const struct field *f)
{
    struct gw_path_policy *pol = at(base, f->off);
    const char *s = f->sdef;
    char buf[SHOW_LEN + 8];

    if (v != NULL && (s = want_string(pc, path, v, "\"role:<name>\" or \"forbid\"")) == NULL)
        return GW_ERR_INVAL;
    if (strcmp(s, "forbid") == 0) {
        pol->forbid = true;
        return 0;
    }
    if (strncmp(s, "role:", 5) != 0 || !name_ok(s + 5, strlen(s + 5)))
        return fail(pc, path, "expected \"role:<name>\" or \"forbid\", got %s", show(v, buf, sizeof(buf)));
    if ((pol->role_name = strdup(s + 5)) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* ---- objects, maps and arrays ------------------------------------------------------------- */

static const struct field *field_find(const struct objdef *def, const char *key)
{
    size_t i;

    for (i = 0; i < def->n; i++)
        if (strcmp(def->fields[i].key, key) == 0)
            return &def->fields[i];
    return NULL;
}

/* An object by its table: unknown keys, then each field in table order, then the object check. */
static int p_obj(struct pctx *pc, const char *path, struct json_object *v, void *base, const struct field *f)
{
    const struct objdef *def = f->aux;
    void *dst = at(base, f->off);
    struct json_object *child = NULL;
    char kpath[PATH_LEN], buf[SHOW_LEN + 8];
    bool present;
    size_t i;
    int rc;

    if (v != NULL && !json_object_is_type(v, json_type_object))
        return fail(pc, path, "expected an object, got %s", show(v, buf, sizeof(buf)));
    if (v != NULL) {
        json_object_object_foreach(v, key, val)
        {
            (void)val;
            if (field_find(def, key) == NULL) {
                join_key(kpath, path, key);
                return fail(pc, kpath, "unknown key");
            }
        }
    }
    for (i = 0; i < def->n; i++) {
        const struct field *kf = &def->fields[i];
        join_key(kpath, path, kf->key);
        present = v != NULL && json_object_object_get_ex(v, kf->key, &child);
        /* json-c represents null as NULL, which parsers read as "apply the default" */
        if (present && child == NULL)
            return fail(pc, kpath, "null is not a valid value: give a value or leave the key out");
        if (!present && kf->required)
            return fail(pc, kpath, "missing required key");
        if ((rc = kf->parse(pc, kpath, child, dst, kf)) != 0)
            return rc;
    }
    return def->check != NULL ? def->check(pc, path, dst) : 0;
}

static int p_map(struct pctx *pc, const char *path, struct json_object *v, void *base, const struct field *f)
{
    const struct mapdef *md = f->aux;
    void **arr = at(base, f->off);
    size_t *n = at(base, f->off_n), len;
    char epath[PATH_LEN], buf[SHOW_LEN + 8];
    int rc;

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_object))
        return fail(pc, path, "expected an object, got %s", show(v, buf, sizeof(buf)));
    if ((len = (size_t)json_object_object_length(v)) == 0)
        return 0;
    if ((*arr = calloc(len, md->elem_size)) == NULL)
        return GW_ERR_NOMEM;
    json_object_object_foreach(v, key, val)
    {
        void *elem = (char *)*arr + *n * md->elem_size;
        struct field vf = {
            .key = key, .required = true, .parse = md->value, .off = md->value_off, .aux = md->value_aux};
        join_key(epath, path, key);
        if (!md->names->ok(key, strlen(key)))
            return fail(pc, epath, "expected %s, got \"%.*s\"", md->names->desc, SHOW_LEN, key);
        if (val == NULL)
            return fail(pc, epath, "null is not a valid value");
        ++*n; /* counted before it is filled, so that gw_config_free releases a half-parsed entry */
        if ((*(char **)at(elem, md->name_off) = strdup(key)) == NULL)
            return GW_ERR_NOMEM;
        if ((rc = vf.parse(pc, epath, val, elem, &vf)) != 0)
            return rc;
    }
    return 0;
}

/* ---- crypto material -------------------------------------------------------------------- */

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1; /* encrypted keys are refused rather than prompted for on a terminal */
}

static BIO *open_file(struct pctx *pc, const char *path, const char *file)
{
    FILE *fp = fopen(file, "r");
    BIO *bio;

    if (fp == NULL) {
        fail(pc, path, "cannot open \"%s\": %s", file, strerror(errno));
        return NULL;
    }
    if ((bio = BIO_new_fp(fp, BIO_CLOSE)) == NULL) {
        fclose(fp);
        fail(pc, path, "out of memory");
    }
    return bio;
}

/* Every PEM certificate in |file| (at least one) into a new stack. */
static int load_certs(struct pctx *pc, const char *path, const char *file, STACK_OF(X509) * *out)
{
    STACK_OF(X509) *sk = NULL;
    BIO *bio = NULL;
    X509 *x;
    unsigned long e;
    int rc = GW_ERR_INVAL;

    *out = NULL;
    if ((bio = open_file(pc, path, file)) == NULL)
        goto out;
    if ((sk = sk_X509_new_null()) == NULL)
        goto out;
    while ((x = PEM_read_bio_X509(bio, NULL, no_password, NULL)) != NULL) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto out;
        }
    }
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        fail(pc, path, "cannot parse a PEM certificate in \"%s\"", file);
        goto out;
    }
    ERR_clear_error();
    if (sk_X509_num(sk) == 0) {
        fail(pc, path, "no PEM certificate in \"%s\"", file);
        goto out;
    }
    *out = sk;
    sk = NULL;
    rc = 0;
out:
    sk_X509_pop_free(sk, X509_free);
    BIO_free(bio);
    return rc;
}

/* The first certificate of |file| (a leaf followed by its chain is fine). */
static int load_cert(struct pctx *pc, const char *path, const char *file, X509 **out)
{
    STACK_OF(X509) *sk = NULL;

    *out = NULL;
    if (load_certs(pc, path, file, &sk) != 0)
        return GW_ERR_INVAL;
    *out = sk_X509_shift(sk);
    sk_X509_pop_free(sk, X509_free);
    return 0;
}

static int load_key(struct pctx *pc, const char *path, const char *file, EVP_PKEY **out)
{
    BIO *bio;

    *out = NULL;
    if ((bio = open_file(pc, path, file)) == NULL)
        return GW_ERR_INVAL;
    *out = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    BIO_free(bio);
    if (*out == NULL)
        return fail(pc, path, "cannot parse an unencrypted PEM private key in \"%s\"", file);
    return 0;
}

/* Loads |cert_file| and |key_file| (given at |path|.cert/.key) and checks they are a pair. */
static int load_pair(struct pctx *pc, const char *path, const char *cert_file, const char *key_file,
                     X509 **cert, EVP_PKEY **key)
{
    char cpath[PATH_LEN], kpath[PATH_LEN];

    join_key(cpath, path, "cert");
    join_key(kpath, path, "key");
    if (load_cert(pc, cpath, cert_file, cert) != 0 || load_key(pc, kpath, key_file, key) != 0)
        return GW_ERR_INVAL;
    if (X509_check_private_key(*cert, *key) != 1)
        return fail(pc, kpath, "key in \"%s\" does not match the certificate in \"%s\"", key_file, cert_file);
    return 0;
}

static int check_tls(struct pctx *pc, const char *path, void *base)
{
    struct gw_listener_conf *l = base;
    STACK_OF(X509) *sk = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    char cpath[PATH_LEN];
    int rc;

    join_key(cpath, path, "client_ca");
    if (l->client_auth != GW_CLIENT_AUTH_NONE && l->client_ca == NULL)
        return fail(pc, cpath, "missing: required unless client_auth is \"none\"");
    rc = load_pair(pc, path, l->tls_cert, l->tls_key, &cert, &key);
    if (rc == 0 && l->client_ca != NULL)
        rc = load_certs(pc, cpath, l->client_ca, &sk);
    sk_X509_pop_free(sk, X509_free);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* An optional chain file: loaded when given, else an empty stack (config.h: "may be empty"). */
static int load_chain(struct pctx *pc, const char *path, const char *file, STACK_OF(X509) * *out)
{
    char cpath[PATH_LEN];

    join_key(cpath, path, "chain");
    if (file != NULL)
        return load_certs(pc, cpath, file, out);
    return (*out = sk_X509_new_null()) != NULL ? 0 : GW_ERR_NOMEM;
}

static int check_signer(struct pctx *pc, const char *path, void *base)
{
    struct gw_signer_conf *s = base;

    if (load_pair(pc, path, s->cert_file, s->key_file, &s->cert, &s->key) != 0)
        return GW_ERR_INVAL;
    /* RFC 9483 §3.1: the protection key must be usable for signing */
    if ((X509_get_extension_flags(s->cert) & EXFLAG_KUSAGE) != 0 &&
        (X509_get_key_usage(s->cert) & KU_DIGITAL_SIGNATURE) == 0)
        gw_log(GW_LOG_WARN, "config",
               "%s: %s.cert: the signer certificate lacks the digitalSignature key usage", pc->name, path);
    return load_chain(pc, path, s->chain_file, &s->chain);
}

static int check_trust(struct pctx *pc, const char *path, void *base)
{
    struct gw_trust_conf *t = base;
    STACK_OF(X509) *anchors = NULL;
    char fpath[PATH_LEN];
    int i, rc = GW_ERR_INVAL;

    join_key(fpath, path, "ca_file");
    if (load_certs(pc, fpath, t->ca_file, &anchors) != 0)
        goto out;
    if ((t->store = X509_STORE_new()) == NULL)
        goto out;
    for (i = 0; i < sk_X509_num(anchors); i++)
        if (X509_STORE_add_cert(t->store, sk_X509_value(anchors, i)) != 1)
            goto out;
    /* reject malformed certificates in client chains rather than guess (openssl-cmp-3.0 notes) */
    if (X509_STORE_set_flags(t->store, X509_V_FLAG_X509_STRICT) != 1)
        goto out;
    join_key(fpath, path, "untrusted_file");
    if (t->untrusted_file != NULL && load_certs(pc, fpath, t->untrusted_file, &t->untrusted) != 0)
        goto out;
    rc = 0;
out:
    sk_X509_pop_free(anchors, X509_free);
    return rc;
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

static int check_pbm(struct pctx *pc, const char *path, void *base)
{
    struct gw_pbm_conf *p = base;
    unsigned char *buf = NULL;
    char fpath[PATH_LEN];
    struct stat st;
    ssize_t len = -1;
    int fd, rc = GW_ERR_INVAL;

    join_key(fpath, path, "secret_file");
    if ((fd = open(p->secret_file, O_RDONLY | O_CLOEXEC)) < 0)
        return fail(pc, fpath, "cannot open \"%s\": %s", p->secret_file, strerror(errno));
    /* two more than the cap: room for a trailing "\r\n", and one to see it is too long */
    if (fstat(fd, &st) == 0 && (buf = OPENSSL_zalloc(GW_MAX_PBM_SECRET_LEN + 3)) != NULL)
        len = read_all(fd, buf, GW_MAX_PBM_SECRET_LEN + 3);
    close(fd);
    if (len < 0) {
        fail(pc, fpath, "cannot read \"%s\"", p->secret_file);
        goto out;
    }
    if (len > 0 && buf[len - 1] == '\n')
        len -= (len > 1 && buf[len - 2] == '\r') ? 2 : 1;
    if (len < GW_MIN_PBM_SECRET_LEN || len > GW_MAX_PBM_SECRET_LEN) {
        fail(pc, fpath, "the secret in \"%s\" must be %d..%d bytes", p->secret_file, GW_MIN_PBM_SECRET_LEN,
             GW_MAX_PBM_SECRET_LEN);
        goto out;
    }
    if ((st.st_mode & (S_IRGRP | S_IROTH)) != 0)
        gw_log(GW_LOG_WARN, "config", "%s: %s: \"%s\" is readable by group or others", pc->name, fpath,
               p->secret_file);
    p->secret = buf;
    p->secret_len = (size_t)len;
    buf = NULL;
    rc = 0;
out:
    OPENSSL_clear_free(buf, GW_MAX_PBM_SECRET_LEN + 3);
    return rc;
}

static int check_upstream(struct pctx *pc, const char *path, void *base)
{
    struct gw_upstream_conf *u = base;
    char cpath[PATH_LEN];

    if (load_pair(pc, path, u->cert_file, u->key_file, &u->cert, &u->key) != 0)
        return GW_ERR_INVAL;
    join_key(cpath, path, "cert");
    if ((X509_get_extension_flags(u->cert) & EXFLAG_CA) == 0)
        return fail(pc, cpath, "\"%s\" is not a CA certificate (basicConstraints CA:TRUE)", u->cert_file);
    return load_chain(pc, path, u->chain_file, &u->chain);
}

static int check_role(struct pctx *pc, const char *path, void *base)
{
    struct gw_role *r = base;
    char kpath[PATH_LEN];

    join_key(kpath, path, "ttl");
    if (r->ttl > r->max_ttl)
        return fail(pc, kpath, "ttl (%us) exceeds max_ttl (%us)", r->ttl, r->max_ttl);
    /* with neither, no CMP protection could ever be verified on this role */
    if (r->n_trust == 0 && r->n_pbm == 0)
        return fail(pc, path, "a role needs at least one \"trust\" or \"pbm\" entry");
    return 0;
}

/* ---- the schema ------------------------------------------------------------------------ */

#define REQ(k, fn, T, m, ...)                                                                                \
    {                                                                                                        \
        .key = k, .required = true, .parse = fn, .off = offsetof(T, m), __VA_ARGS__                          \
    }
#define OPT(k, fn, T, m, ...)                                                                                \
    {                                                                                                        \
        .key = k, .required = false, .parse = fn, .off = offsetof(T, m), __VA_ARGS__                         \
    }
#define OBJDEF(name, tbl, chk) static const struct objdef name = {tbl, sizeof(tbl) / sizeof(tbl[0]), chk}

static const struct enumval client_auth_names[] = {
    {"none", GW_CLIENT_AUTH_NONE, NULL},
    {"optional", GW_CLIENT_AUTH_OPTIONAL, NULL},
    {"require", GW_CLIENT_AUTH_REQUIRE, NULL},
    {NULL, 0, NULL},
};

static const struct enumval upstream_types[] = {{"local", GW_UPSTREAM_LOCAL, NULL}, {NULL, 0, NULL}};

static const struct enumval log_levels[] = {
    {"debug", GW_LOG_DEBUG, NULL},
    {"info", GW_LOG_INFO, NULL},
    {"warn", GW_LOG_WARN, NULL},
    {"error", GW_LOG_ERROR, NULL},
    {NULL, 0, NULL},
};

/* RFC 5280 §4.2.1.3 names; certificate-signing usages are refused: a role never issues a CA. */
static const struct enumval key_usages[] = {
    {"digitalSignature", KU_DIGITAL_SIGNATURE, NULL},
    {"nonRepudiation", KU_NON_REPUDIATION, NULL},
    {"contentCommitment", KU_NON_REPUDIATION, NULL},
    {"keyEncipherment", KU_KEY_ENCIPHERMENT, NULL},
    {"dataEncipherment", KU_DATA_ENCIPHERMENT, NULL},
    {"keyAgreement", KU_KEY_AGREEMENT, NULL},
    {"keyCertSign", -1, "a role never issues CA certificates"},
    {"cRLSign", -1, "a role never issues CA certificates"},
    {NULL, 0, NULL},
};

static const struct enumval ext_key_usages[] = {
    {"serverAuth", GW_EKU_SERVER_AUTH, NULL},
    {"clientAuth", GW_EKU_CLIENT_AUTH, NULL},
    {"codeSigning", GW_EKU_CODE_SIGNING, NULL},
    {"emailProtection", GW_EKU_EMAIL_PROTECTION, NULL},
    {"timeStamping", GW_EKU_TIME_STAMPING, NULL},
    {"OCSPSigning", GW_EKU_OCSP_SIGNING, NULL},
    {"cmcRA", GW_EKU_CMC_RA, NULL},
    {NULL, 0, NULL},
};

static const struct enumval san_types[] = {
    {"dns", GW_SAN_DNS, NULL},     {"ip", GW_SAN_IP, NULL}, {"uri", GW_SAN_URI, NULL},
    {"email", GW_SAN_EMAIL, NULL}, {NULL, 0, NULL},
};

static const struct field tls_fields[] = {
    REQ("cert", p_file, struct gw_listener_conf, tls_cert),
    REQ("key", p_file, struct gw_listener_conf, tls_key),
    OPT("client_ca", p_file, struct gw_listener_conf, client_ca),
    OPT("client_auth", p_enum, struct gw_listener_conf, client_auth, .def = GW_CLIENT_AUTH_REQUIRE,
        .aux = client_auth_names),
};
OBJDEF(tls_def, tls_fields, check_tls);

static const struct field listener_fields[] = {
    REQ("address", p_address, struct gw_listener_conf, address),
    REQ("port", p_port, struct gw_listener_conf, port, .min = 1, .max = 65535),
    /* "tls" fills the same struct: .off 0 */
    {.key = "tls", .required = true, .parse = p_obj, .off = 0, .aux = &tls_def},
};
OBJDEF(listener_def, listener_fields, NULL);

static const struct field signer_fields[] = {
    REQ("cert", p_file, struct gw_signer_conf, cert_file),
    REQ("key", p_file, struct gw_signer_conf, key_file),
    OPT("chain", p_file, struct gw_signer_conf, chain_file),
};
OBJDEF(signer_def, signer_fields, check_signer);

static const struct field trust_fields[] = {
    REQ("ca_file", p_file, struct gw_trust_conf, ca_file),
    OPT("untrusted_file", p_file, struct gw_trust_conf, untrusted_file),
};
OBJDEF(trust_def, trust_fields, check_trust);

static const struct field pbm_fields[] = {
    REQ("secret_file", p_file, struct gw_pbm_conf, secret_file),
};
OBJDEF(pbm_def, pbm_fields, check_pbm);

static const struct field upstream_fields[] = {
    REQ("type", p_enum, struct gw_upstream_conf, type, .aux = upstream_types),
    REQ("cert", p_file, struct gw_upstream_conf, cert_file),
    REQ("key", p_file, struct gw_upstream_conf, key_file),
    OPT("chain", p_file, struct gw_upstream_conf, chain_file),
    OPT("timeout", p_dur_ms, struct gw_upstream_conf, timeout_ms, .min = 1, .max = GW_MAX_UPSTREAM_TIMEOUT_MS,
        .def = GW_DEFAULT_UPSTREAM_TIMEOUT_MS),
    OPT("max_inflight", p_u32, struct gw_upstream_conf, max_inflight, .min = 1,
        .max = GW_MAX_UPSTREAM_INFLIGHT, .def = GW_DEFAULT_UPSTREAM_MAX_INFLIGHT),
    OPT("delay", p_dur_ms, struct gw_upstream_conf, delay_ms, .min = 0, .max = GW_MAX_UPSTREAM_DELAY_MS),
};
OBJDEF(upstream_def, upstream_fields, check_upstream);

static const struct field role_fields[] = {
    REQ("upstream", p_name, struct gw_role, upstream_name, .aux = &names_plain),
    OPT("trust", p_names, struct gw_role, trust_names, .off_n = offsetof(struct gw_role, n_trust),
        .aux = &names_plain),
    OPT("pbm", p_names, struct gw_role, pbm_refs, .off_n = offsetof(struct gw_role, n_pbm),
        .aux = &names_kid),
    OPT("key_usage", p_flags, struct gw_role, key_usage, .aux = key_usages),
    OPT("ext_key_usage", p_flags, struct gw_role, ext_key_usage, .aux = ext_key_usages),
    OPT("allowed_san_types", p_flags, struct gw_role, allowed_san_types, .aux = san_types),
    OPT("ttl", p_dur_s, struct gw_role, ttl, .min = 1, .max = GW_MAX_CERT_TTL, .def = GW_DEFAULT_TTL),
    OPT("max_ttl", p_dur_s, struct gw_role, max_ttl, .min = 1, .max = GW_MAX_CERT_TTL,
        .def = GW_DEFAULT_MAX_TTL),
    OPT("require_subject", p_bool, struct gw_role, require_subject, .def = false),
    OPT("implicit_confirm", p_bool, struct gw_role, implicit_confirm, .def = true),
};
OBJDEF(role_def, role_fields, check_role);

static const struct field cmp_fields[] = {
    OPT("message_time_window", p_dur_s, struct gw_cmp_conf, message_time_window, .min = 0,
        .max = GW_MAX_MSGTIME_WINDOW, .def = GW_DEFAULT_MSGTIME_WINDOW),
    OPT("require_message_time", p_bool, struct gw_cmp_conf, require_message_time, .def = false),
    OPT("transaction_ttl", p_dur_s, struct gw_cmp_conf, transaction_ttl, .min = 1, .max = GW_MAX_TXN_TTL,
        .def = GW_DEFAULT_TXN_TTL),
    OPT("max_transactions", p_u32, struct gw_cmp_conf, max_transactions, .min = 1, .max = GW_MAX_TXNS,
        .def = GW_DEFAULT_MAX_TXNS),
    OPT("max_transactions_per_identity", p_u32, struct gw_cmp_conf, max_transactions_per_identity, .min = 1,
        .max = GW_MAX_TXNS, .def = GW_DEFAULT_MAX_TXNS_PER_IDENTITY),
    OPT("pbm_max_iterations", p_u32, struct gw_cmp_conf, pbm_max_iterations, .min = GW_MIN_PBM_ITER,
        .max = GW_MAX_PBM_ITER, .def = GW_DEFAULT_PBM_MAX_ITER),
};
OBJDEF(cmp_def, cmp_fields, NULL);

static const struct mapdef trust_map = {
    sizeof(struct gw_trust_conf), offsetof(struct gw_trust_conf, name), &names_plain, p_obj, 0, &trust_def};
static const struct mapdef pbm_map = {
    sizeof(struct gw_pbm_conf), offsetof(struct gw_pbm_conf, reference), &names_kid, p_obj, 0, &pbm_def};
static const struct mapdef upstream_map = {sizeof(struct gw_upstream_conf),
                                           offsetof(struct gw_upstream_conf, name),
                                           &names_plain,
                                           p_obj,
                                           0,
                                           &upstream_def};
static const struct mapdef role_map = {
    sizeof(struct gw_role), offsetof(struct gw_role, name), &names_plain, p_obj, 0, &role_def};
static const struct namekind names_label = {name_ok, "a label of 1..64 characters [A-Za-z0-9._-]"};
static const struct mapdef label_map = {sizeof(struct gw_label),
                                        offsetof(struct gw_label, label),
                                        &names_label,
                                        p_policy,
                                        offsetof(struct gw_label, policy),
                                        NULL};

static int p_listeners(struct pctx *pc, const char *path, struct json_object *v, void *base,
                       const struct field *f);

static const struct field top_fields[] = {
    REQ("listeners", p_listeners, struct gw_config, listeners,
        .off_n = offsetof(struct gw_config, n_listeners), .min = 1, .max = GW_MAX_LISTENERS),
    OPT("loop_threads", p_u32, struct gw_config, loop_threads, .min = 1, .max = GW_MAX_LOOP_THREADS,
        .def = GW_DEFAULT_LOOP_THREADS),
    OPT("workers", p_u32, struct gw_config, workers, .min = 1, .max = GW_MAX_WORKERS,
        .def = GW_DEFAULT_WORKERS),
    OPT("queue_depth", p_u32, struct gw_config, queue_depth, .min = 1, .max = GW_MAX_QUEUE_DEPTH,
        .def = GW_DEFAULT_QUEUE_DEPTH),
    OPT("path_prefix", p_prefix, struct gw_config, path_prefix, .sdef = "/pki"),
    REQ("signer", p_obj, struct gw_config, signer, .aux = &signer_def),
    OPT("trust", p_map, struct gw_config, trust, .off_n = offsetof(struct gw_config, n_trust),
        .aux = &trust_map),
    OPT("pbm", p_map, struct gw_config, pbm, .off_n = offsetof(struct gw_config, n_pbm), .aux = &pbm_map),
    OPT("upstreams", p_map, struct gw_config, upstreams, .off_n = offsetof(struct gw_config, n_upstreams),
        .aux = &upstream_map),
    OPT("roles", p_map, struct gw_config, roles, .off_n = offsetof(struct gw_config, n_roles),
        .aux = &role_map),
    OPT("default_path_policy", p_policy, struct gw_config, default_path_policy, .sdef = "forbid"),
    OPT("label_to_path_policy", p_map, struct gw_config, labels,
        .off_n = offsetof(struct gw_config, n_labels), .aux = &label_map),
    OPT("cmp", p_obj, struct gw_config, cmp, .aux = &cmp_def),
    OPT("log_level", p_enum, struct gw_config, log_level, .def = GW_LOG_INFO, .aux = log_levels),
};
static int check_config(struct pctx *pc, const char *path, void *base);
OBJDEF(top_def, top_fields, check_config);

static int p_listeners(struct pctx *pc, const char *path, struct json_object *v, void *base,
                       const struct field *f)
{
    struct gw_config *cfg = base;
    struct field lf = {.parse = p_obj, .aux = &listener_def};
    char ipath[PATH_LEN], buf[SHOW_LEN + 8];
    size_t i, n;
    int rc;

    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) < (size_t)f->min ||
        json_object_array_length(v) > (size_t)f->max)
        return fail(pc, path, "expected an array of %lld..%lld listeners, got %s", (long long)f->min,
                    (long long)f->max, show(v, buf, sizeof(buf)));
    n = json_object_array_length(v);
    if ((cfg->listeners = calloc(n, sizeof(*cfg->listeners))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        join_index(ipath, path, i);
        if (json_object_array_get_idx(v, i) == NULL)
            return fail(pc, ipath, "expected a listener object, got null");
        cfg->n_listeners = i + 1;
        if ((rc = lf.parse(pc, ipath, json_object_array_get_idx(v, i), &cfg->listeners[i], &lf)) != 0)
            return rc;
    }
    return 0;
}

/* ---- cross-field checks ------------------------------------------------------------------ */

static const struct gw_trust_conf *trust_find(const struct gw_config *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->n_trust; i++)
        if (strcmp(cfg->trust[i].name, name) == 0)
            return &cfg->trust[i];
    return NULL;
}

static const struct gw_upstream_conf *upstream_find(const struct gw_config *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->n_upstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    return NULL;
}

/* Adds the anchors and intermediates of |t| to the role's union store and stack. */
static int role_add_trust(struct gw_role *r, const struct gw_trust_conf *t)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(t->store);
    X509 *x;
    int i;

    if (r->store == NULL && (r->store = X509_STORE_new()) == NULL)
        return GW_ERR_NOMEM;
    if (X509_STORE_set_flags(r->store, X509_V_FLAG_X509_STRICT) != 1)
        return GW_ERR_CRYPTO;
    for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        /* a certificate in two trust entries is added once: X509_STORE_add_cert ignores repeats */
        if ((x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i))) != NULL &&
            X509_STORE_add_cert(r->store, x) != 1)
            return GW_ERR_CRYPTO;
    }
    for (i = 0; i < sk_X509_num(t->untrusted); i++) {
        if (r->untrusted == NULL && (r->untrusted = sk_X509_new_null()) == NULL)
            return GW_ERR_NOMEM;
        if (!X509_add_cert(r->untrusted, sk_X509_value(t->untrusted, i),
                           X509_ADD_FLAG_UP_REF | X509_ADD_FLAG_NO_DUP))
            return GW_ERR_NOMEM;
    }
    return 0;
}

static int resolve_role(struct pctx *pc, struct gw_config *cfg, struct gw_role *r)
{
    const struct gw_trust_conf *t;
    char path[PATH_LEN];
    size_t i;
    int rc;

    bprintf(path, sizeof(path), "$.roles.%s.upstream", r->name);
    if ((r->upstream = upstream_find(cfg, r->upstream_name)) == NULL)
        return fail(pc, path, "unknown upstream \"%s\"", r->upstream_name);
    for (i = 0; i < r->n_trust; i++) {
        bprintf(path, sizeof(path), "$.roles.%s.trust[%zu]", r->name, i);
        if ((t = trust_find(cfg, r->trust_names[i])) == NULL)
            return fail(pc, path, "unknown trust \"%s\"", r->trust_names[i]);
        if ((rc = role_add_trust(r, t)) != 0)
            return fail(pc, path, "cannot build the trust store: %s", gw_err_str(rc));
    }
    for (i = 0; i < r->n_pbm; i++) {
        bprintf(path, sizeof(path), "$.roles.%s.pbm[%zu]", r->name, i);
        if (gw_config_pbm(cfg, (const unsigned char *)r->pbm_refs[i], strlen(r->pbm_refs[i])) == NULL)
            return fail(pc, path, "unknown pbm reference \"%s\"", r->pbm_refs[i]);
    }
    return 0;
}

static int resolve_policy(struct pctx *pc, const struct gw_config *cfg, const char *path,
                          struct gw_path_policy *pol)
{
    if (pol->forbid)
        return 0;
    if ((pol->role = gw_config_role(cfg, pol->role_name, strlen(pol->role_name))) == NULL)
        return fail(pc, path, "unknown role \"%s\" in \"role:%s\"", pol->role_name, pol->role_name);
    return 0;
}

/* Two listeners on one address and port would fail at bind time: say so at check time. */
static int check_listeners(struct pctx *pc, const struct gw_config *cfg)
{
    char path[PATH_LEN];
    size_t i, j;

    for (i = 0; i < cfg->n_listeners; i++) {
        for (j = 0; j < i; j++) {
            if (cfg->listeners[i].port != cfg->listeners[j].port ||
                strcmp(cfg->listeners[i].address, cfg->listeners[j].address) != 0)
                continue;
            join_index(path, "$.listeners", i);
            return fail(pc, path, "same address and port as $.listeners[%zu]: \"%s\" port %u", j,
                        cfg->listeners[i].address, cfg->listeners[i].port);
        }
    }
    return 0;
}

static int check_config(struct pctx *pc, const char *path, void *base)
{
    struct gw_config *cfg = base;
    char lpath[PATH_LEN];
    size_t i;
    int rc;

    (void)path;
    if ((rc = check_listeners(pc, cfg)) != 0)
        return rc;
    for (i = 0; i < cfg->n_roles; i++)
        if ((rc = resolve_role(pc, cfg, &cfg->roles[i])) != 0)
            return rc;
    if ((rc = resolve_policy(pc, cfg, "$.default_path_policy", &cfg->default_path_policy)) != 0)
        return rc;
    for (i = 0; i < cfg->n_labels; i++) {
        join_key(lpath, "$.label_to_path_policy", cfg->labels[i].label);
        if ((rc = resolve_policy(pc, cfg, lpath, &cfg->labels[i].policy)) != 0)
            return rc;
    }
    return 0;
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

static int scan_value(struct pctx *pc, struct scan *sc, const char *path);

static int scan_object(struct pctx *pc, struct scan *sc, const char *path)
{
    struct json_object *seen = json_object_new_object(), *key = NULL;
    char kpath[PATH_LEN], buf[SHOW_LEN + 8];
    size_t start, end;
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
            rc = fail(pc, NULL, "invalid JSON at line %u, column %u: object keys must be in double quotes",
                      line, col);
            break;
        }
        scan_string(sc, &start, &end);
        if ((key = scan_key(sc, start, end)) == NULL)
            break;
        join_key(kpath, path, json_object_get_string(key));
        if (json_object_object_get_ex(seen, json_object_get_string(key), NULL)) {
            rc = fail(pc, path, "duplicate key %s", show(key, buf, sizeof(buf)));
            break;
        }
        if (json_object_object_add(seen, json_object_get_string(key), NULL) != 0)
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

static int scan_array(struct pctx *pc, struct scan *sc, const char *path)
{
    char ipath[PATH_LEN];
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
        join_index(ipath, path, i);
        if ((rc = scan_value(pc, sc, ipath)) != 0)
            return rc;
    }
    sc->pos++;
    return 0;
}

static int scan_value(struct pctx *pc, struct scan *sc, const char *path)
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

/* ---- loading --------------------------------------------------------------------------- */

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
static struct json_object *parse_json(struct pctx *pc, const char *json, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *root = NULL;
    enum json_tokener_error jerr;
    unsigned line, col;
    size_t end;

    if (tok == NULL) {
        fail(pc, NULL, "out of memory");
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
        fail(pc, NULL, "invalid JSON: unexpected end of file");
    else if (root == NULL)
        fail(pc, NULL, "invalid JSON at line %u, column %u: %s", line, col, json_tokener_error_desc(jerr));
    else if (end < len)
        fail(pc, NULL, "invalid JSON at line %u, column %u: unexpected data after the top-level object", line,
             col);
    json_tokener_free(tok);
    if (root != NULL && end < len) {
        json_object_put(root);
        root = NULL;
    }
    return root;
}

struct gw_config *gw_config_parse(const char *json, size_t len, const char *base_dir, const char *name,
                                  char *err)
{
    char errbuf[GW_ERR_LEN];
    struct pctx pc = {
        .name = name != NULL ? name : "config", .base_dir = base_dir, .err = err != NULL ? err : errbuf};
    struct field top = {.parse = p_obj, .aux = &top_def};
    struct json_object *root = NULL;
    struct gw_config *cfg = NULL;
    struct scan sc = {json, len, 0};
    int rc;

    pc.err[0] = '\0';
    if (len > GW_MAX_CONFIG_SIZE) {
        fail(&pc, NULL, "larger than %d bytes", GW_MAX_CONFIG_SIZE);
        goto out;
    }
    if ((root = parse_json(&pc, json, len)) == NULL)
        goto out;
    if ((rc = scan_value(&pc, &sc, "$")) != 0) {
        if (rc == GW_ERR_NOMEM)
            goto nomem;
        goto out;
    }
    if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
        goto nomem;
    if ((rc = top.parse(&pc, "$", root, cfg, &top)) != 0) {
        if (rc == GW_ERR_NOMEM)
            goto nomem;
        goto out;
    }
    json_object_put(root);
    return cfg;
nomem:
    fail(&pc, NULL, "out of memory");
out:
    gw_config_free(cfg);
    json_object_put(root);
    return NULL;
}

/* The directory part of |path| ("." when it has none), as a new string. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Reads a whole file of at most GW_MAX_CONFIG_SIZE bytes. */
static char *read_config(struct pctx *pc, const char *path, size_t *len)
{
    char *buf = NULL;
    ssize_t n;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        fail(pc, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }
    /* one byte more than the cap tells a file at the cap from one over it */
    if ((buf = malloc(GW_MAX_CONFIG_SIZE + 1)) == NULL) {
        fail(pc, NULL, "out of memory");
    } else if ((n = read_all(fd, (unsigned char *)buf, GW_MAX_CONFIG_SIZE + 1)) < 0) {
        fail(pc, NULL, "cannot read: %s", strerror(errno));
    } else if (n > GW_MAX_CONFIG_SIZE) {
        fail(pc, NULL, "larger than %d bytes", GW_MAX_CONFIG_SIZE);
    } else {
        *len = (size_t)n;
        close(fd);
        return buf;
    }
    free(buf);
    close(fd);
    return NULL;
}

struct gw_config *gw_config_load(const char *path, char *err)
{
    char errbuf[GW_ERR_LEN];
    struct pctx pc = {.name = path, .err = err != NULL ? err : errbuf};
    struct gw_config *cfg = NULL;
    char *buf = NULL, *dir = NULL;
    size_t len = 0;

    pc.err[0] = '\0';
    if ((buf = read_config(&pc, path, &len)) == NULL)
        goto out;
    if ((dir = dir_of(path)) == NULL) {
        fail(&pc, NULL, "out of memory");
        goto out;
    }
    if ((cfg = gw_config_parse(buf, len, dir, path, pc.err)) == NULL)
        goto out;
    if ((cfg->path = strdup(path)) == NULL) {
        gw_config_free(cfg);
        cfg = NULL;
        fail(&pc, NULL, "out of memory");
    }
out:
    free(dir);
    free(buf);
    return cfg;
}

/* ---- free and lookups --------------------------------------------------------------------- */

static void free_strings(char **v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_roles(struct gw_role *roles, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(roles[i].name);
        free(roles[i].upstream_name);
        free_strings(roles[i].trust_names, roles[i].n_trust);
        free_strings(roles[i].pbm_refs, roles[i].n_pbm);
        X509_STORE_free(roles[i].store);
        sk_X509_pop_free(roles[i].untrusted, X509_free);
    }
    free(roles);
}

static void free_upstreams(struct gw_upstream_conf *ups, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(ups[i].name);
        free(ups[i].cert_file);
        free(ups[i].key_file);
        free(ups[i].chain_file);
        X509_free(ups[i].cert);
        EVP_PKEY_free(ups[i].key);
        sk_X509_pop_free(ups[i].chain, X509_free);
    }
    free(ups);
}

static void free_trust_pbm(struct gw_config *cfg)
{
    size_t i;

    for (i = 0; i < cfg->n_trust; i++) {
        free(cfg->trust[i].name);
        free(cfg->trust[i].ca_file);
        free(cfg->trust[i].untrusted_file);
        X509_STORE_free(cfg->trust[i].store);
        sk_X509_pop_free(cfg->trust[i].untrusted, X509_free);
    }
    free(cfg->trust);
    for (i = 0; i < cfg->n_pbm; i++) {
        free(cfg->pbm[i].reference);
        free(cfg->pbm[i].secret_file);
        OPENSSL_clear_free(cfg->pbm[i].secret, GW_MAX_PBM_SECRET_LEN + 3);
    }
    free(cfg->pbm);
}

void gw_config_free(struct gw_config *cfg)
{
    size_t i;

    if (cfg == NULL)
        return;
    for (i = 0; i < cfg->n_listeners; i++) {
        free(cfg->listeners[i].address);
        free(cfg->listeners[i].tls_cert);
        free(cfg->listeners[i].tls_key);
        free(cfg->listeners[i].client_ca);
    }
    free(cfg->listeners);
    free(cfg->signer.cert_file);
    free(cfg->signer.key_file);
    free(cfg->signer.chain_file);
    X509_free(cfg->signer.cert);
    EVP_PKEY_free(cfg->signer.key);
    sk_X509_pop_free(cfg->signer.chain, X509_free);
    free_trust_pbm(cfg);
    free_upstreams(cfg->upstreams, cfg->n_upstreams);
    free_roles(cfg->roles, cfg->n_roles);
    for (i = 0; i < cfg->n_labels; i++) {
        free(cfg->labels[i].label);
        free(cfg->labels[i].policy.role_name);
    }
    free(cfg->labels);
    free(cfg->default_path_policy.role_name);
    free(cfg->path_prefix);
    free(cfg->path);
    free(cfg);
}

const struct gw_role *gw_config_role(const struct gw_config *cfg, const char *name, size_t len)
{
    size_t i;

    for (i = 0; cfg != NULL && i < cfg->n_roles; i++)
        if (strlen(cfg->roles[i].name) == len && memcmp(cfg->roles[i].name, name, len) == 0)
            return &cfg->roles[i];
    return NULL;
}

const struct gw_label *gw_config_label(const struct gw_config *cfg, const char *label, size_t len)
{
    size_t i;

    for (i = 0; cfg != NULL && i < cfg->n_labels; i++)
        if (strlen(cfg->labels[i].label) == len && memcmp(cfg->labels[i].label, label, len) == 0)
            return &cfg->labels[i];
    return NULL;
}

const struct gw_pbm_conf *gw_config_pbm(const struct gw_config *cfg, const unsigned char *ref, size_t len)
{
    size_t i;

    for (i = 0; cfg != NULL && i < cfg->n_pbm; i++)
        if (strlen(cfg->pbm[i].reference) == len && memcmp(cfg->pbm[i].reference, ref, len) == 0)
            return &cfg->pbm[i];
    return NULL;
}
