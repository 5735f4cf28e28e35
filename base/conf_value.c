/*
 * The configuration reader's value parsers (base/conf.h): one strict parser per type, each quoting
 * the JSON path and the offending value when it refuses one (integers in a range, ports, booleans,
 * enums and flag lists, durations, addresses, names, strings, path prefixes, file names, URLs).
 */
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/pkcs11.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* ---- scalar parsers --------------------------------------------------------------------- */

static int want_int(struct gw_conf_ctx *pc, const char *path, struct json_object *v,
                    const struct gw_conf_field *f, int64_t *out)
{
    char buf[GW_CONF_SHOW_BUF];

    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < f->min ||
        json_object_get_int64(v) > f->max)
        return gw_conf_fail(pc, path, "expected an integer in %lld..%lld, got %s", (long long)f->min,
                            (long long)f->max, gw_conf_show(v, buf, sizeof(buf)));
    *out = json_object_get_int64(v);
    return 0;
}

int gw_conf_p_u32(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f)
{
    int64_t n = f->def;

    if (v != NULL && want_int(pc, path, v, f, &n) != 0)
        return GW_ERR_INVAL;
    *(uint32_t *)gw_conf_at(base, f->off) = (uint32_t)n;
    return 0;
}

int gw_conf_p_port(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f)
{
    int64_t n = f->def;

    if (v != NULL && want_int(pc, path, v, f, &n) != 0)
        return GW_ERR_INVAL;
    *(uint16_t *)gw_conf_at(base, f->off) = (uint16_t)n;
    return 0;
}

int gw_conf_p_bool(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f)
{
    char buf[GW_CONF_SHOW_BUF];

    if (v != NULL && !json_object_is_type(v, json_type_boolean))
        return gw_conf_fail(pc, path, "expected true or false, got %s", gw_conf_show(v, buf, sizeof(buf)));
    *(bool *)gw_conf_at(base, f->off) = v != NULL ? json_object_get_boolean(v) : f->def != 0;
    return 0;
}

/* A string value, or an error naming what was expected. */
const char *gw_conf_want_string(struct gw_conf_ctx *pc, const char *path, struct json_object *v,
                                const char *what)
{
    char buf[GW_CONF_SHOW_BUF];

    if (!json_object_is_type(v, json_type_string)) {
        gw_conf_fail(pc, path, "expected %s, got %s", what, gw_conf_show(v, buf, sizeof(buf)));
        return NULL;
    }
    return json_object_get_string(v);
}

const struct gw_conf_enum *gw_conf_enum_find(const struct gw_conf_enum *e, const char *s)
{
    for (; e->name != NULL; e++)
        if (strcmp(e->name, s) == 0)
            return e;
    return NULL;
}

/* Lists an enum's accepted names, "a"|"b"|"c", for errors. */
static const char *enum_list(const struct gw_conf_enum *e, char *buf, size_t cap)
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

int gw_conf_p_enum(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f)
{
    const struct gw_conf_enum *e;
    char list[160], buf[GW_CONF_SHOW_BUF];

    if (v == NULL) {
        *(int *)gw_conf_at(base, f->off) = (int)f->def;
        return 0;
    }
    enum_list(f->aux, list, sizeof(list));
    if (!json_object_is_type(v, json_type_string) ||
        (e = gw_conf_enum_find(f->aux, json_object_get_string(v))) == NULL)
        return gw_conf_fail(pc, path, "expected one of %s, got %s", list, gw_conf_show(v, buf, sizeof(buf)));
    *(int *)gw_conf_at(base, f->off) = e->value;
    return 0;
}

/* gw_conf_p_enum for a two-valued enum kept as a bool (the enumval values are 0 and 1). */
int gw_conf_p_enum_bool(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                        const struct gw_conf_field *f)
{
    int n = (int)f->def;
    struct gw_conf_field tmp = *f;

    tmp.off = 0;
    if (gw_conf_p_enum(pc, path, v, &n, &tmp) != 0)
        return GW_ERR_INVAL;
    *(bool *)gw_conf_at(base, f->off) = n != 0;
    return 0;
}

/* An array of enum names into a bit set; duplicates and refused names are errors. */
int gw_conf_p_flags(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                    const struct gw_conf_field *f)
{
    const struct gw_conf_enum *e;
    unsigned bits = 0;
    size_t i, n;
    char ipath[GW_CONF_PATH_LEN], list[200], buf[GW_CONF_SHOW_BUF];

    if (v == NULL) {
        *(unsigned *)gw_conf_at(base, f->off) = (unsigned)f->def;
        return 0;
    }
    if (!json_object_is_type(v, json_type_array))
        return gw_conf_fail(pc, path, "expected an array of names, got %s",
                            gw_conf_show(v, buf, sizeof(buf)));
    enum_list(f->aux, list, sizeof(list));
    n = json_object_array_length(v);
    for (i = 0; i < n; i++) {
        struct json_object *el = json_object_array_get_idx(v, i);
        gw_conf_join_index(ipath, path, i);
        if (!json_object_is_type(el, json_type_string) ||
            (e = gw_conf_enum_find(f->aux, json_object_get_string(el))) == NULL)
            /* the value first: lists of names (audit_fields) are longer than an error line */
            return gw_conf_fail(pc, ipath, "got %s, expected one of %s", gw_conf_show(el, buf, sizeof(buf)),
                                list);
        if (e->value < 0)
            return gw_conf_fail(pc, ipath, "\"%s\" is not allowed: %s", e->name, e->why);
        if ((bits & (unsigned)e->value) != 0)
            return gw_conf_fail(pc, ipath, "duplicate entry \"%s\"", e->name);
        bits |= (unsigned)e->value;
    }
    *(unsigned *)gw_conf_at(base, f->off) = bits;
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
            return -1; /* past 12 digits is far past any bound, and n stays below 10^12 */
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (p == s)
        return -1;
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) != 0)
            continue;
        if (n > UINT64_MAX / units[i].ms)
            return -1; /* 12 digits of days pass 2^64 ms: refused, not wrapped into range */
        *out = n * units[i].ms;
        return 0;
    }
    return -1;
}

/* A duration into uint32 milliseconds (f->min..f->max in ms). */
int gw_conf_p_dur_ms(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                     const struct gw_conf_field *f)
{
    uint64_t ms = (uint64_t)f->def;
    char buf[GW_CONF_SHOW_BUF];

    if (v != NULL && duration_ms(v, &ms) != 0)
        return gw_conf_fail(pc, path, "expected a duration like \"10s\" or \"500ms\" or seconds, got %s",
                            gw_conf_show(v, buf, sizeof(buf)));
    if (ms < (uint64_t)f->min || ms > (uint64_t)f->max)
        return gw_conf_fail(pc, path, "expected a duration of %lldms..%lldms, got %s", (long long)f->min,
                            (long long)f->max, gw_conf_show(v, buf, sizeof(buf)));
    *(uint32_t *)gw_conf_at(base, f->off) = (uint32_t)ms;
    return 0;
}

/* A duration into uint32 seconds (f->min..f->max in seconds). */
int gw_conf_p_dur_s(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                    const struct gw_conf_field *f)
{
    uint64_t ms = (uint64_t)f->def * 1000;
    char buf[GW_CONF_SHOW_BUF];

    if (v != NULL && duration_ms(v, &ms) != 0)
        return gw_conf_fail(pc, path, "expected a duration like \"720h\" or seconds, got %s",
                            gw_conf_show(v, buf, sizeof(buf)));
    if (ms % 1000 != 0)
        return gw_conf_fail(pc, path, "expected whole seconds, got %s", gw_conf_show(v, buf, sizeof(buf)));
    if (ms / 1000 < (uint64_t)f->min || ms / 1000 > (uint64_t)f->max)
        return gw_conf_fail(pc, path, "expected a duration of %llds..%llds, got %s", (long long)f->min,
                            (long long)f->max, gw_conf_show(v, buf, sizeof(buf)));
    *(uint32_t *)gw_conf_at(base, f->off) = (uint32_t)(ms / 1000);
    return 0;
}

int gw_conf_p_address(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                      const struct gw_conf_field *f)
{
    unsigned char addr[16];
    const char *s;
    char buf[GW_CONF_SHOW_BUF];

    if (v == NULL)
        return 0;
    if ((s = gw_conf_want_string(pc, path, v, "a numeric IPv4 or IPv6 address")) == NULL)
        return GW_ERR_INVAL;
    if (inet_pton(AF_INET, s, addr) != 1 && inet_pton(AF_INET6, s, addr) != 1)
        return gw_conf_fail(pc, path, "expected a numeric IPv4 or IPv6 address, got %s",
                            gw_conf_show(v, buf, sizeof(buf)));
    if ((*(char **)gw_conf_at(base, f->off) = strdup(s)) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* A reference to another section by name (checked to exist in the final pass). */
int gw_conf_p_name(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f)
{
    const struct gw_conf_names *kind = f->aux;
    char buf[GW_CONF_SHOW_BUF];

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_string) ||
        !kind->ok(json_object_get_string(v), (size_t)json_object_get_string_len(v)))
        return gw_conf_fail(pc, path, "expected %s, got %s", kind->desc, gw_conf_show(v, buf, sizeof(buf)));
    if ((*(char **)gw_conf_at(base, f->off) = strdup(json_object_get_string(v))) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* A string checked by the namekind in |f->aux|; |f->sdef| when absent (NULL: stays unset). */
int gw_conf_p_str(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f)
{
    const struct gw_conf_names *kind = f->aux;
    const char *s = f->sdef;
    char buf[GW_CONF_SHOW_BUF];

    if (v != NULL) {
        if (!json_object_is_type(v, json_type_string) ||
            !kind->ok(json_object_get_string(v), (size_t)json_object_get_string_len(v)))
            return gw_conf_fail(pc, path, "expected %s, got %s", kind->desc,
                                gw_conf_show(v, buf, sizeof(buf)));
        s = json_object_get_string(v);
    }
    if (s == NULL)
        return 0;
    return (*(char **)gw_conf_at(base, f->off) = strdup(s)) != NULL ? 0 : GW_ERR_NOMEM;
}

bool gw_conf_prefix_ok(const char *s)
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

int gw_conf_p_prefix(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                     const struct gw_conf_field *f)
{
    const char *s = f->sdef;
    char buf[GW_CONF_SHOW_BUF];

    if (v != NULL && (s = gw_conf_want_string(pc, path, v, "a path like \"/pki\"")) == NULL)
        return GW_ERR_INVAL;
    if (!gw_conf_prefix_ok(s))
        return gw_conf_fail(pc, path,
                            "expected a path like \"/pki\" (leading \"/\", no trailing or double \"/\", "
                            "characters [A-Za-z0-9._~/-]), got %s",
                            gw_conf_show(v, buf, sizeof(buf)));
    if ((*(char **)gw_conf_at(base, f->off) = strdup(s)) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* A file name, resolved against the config file's directory; loading is the object check's job. */
int gw_conf_p_file(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                   const struct gw_conf_field *f)
{
    const char *s;
    char **dst = gw_conf_at(base, f->off);
    size_t need;

    if (v == NULL)
        return 0;
    if ((s = gw_conf_want_string(pc, path, v, "a file name")) == NULL)
        return GW_ERR_INVAL;
    if (s[0] == '\0')
        return gw_conf_fail(pc, path, "expected a file name, got \"\"");
    /* absolute, or a PKCS#11 URI (RFC 7512) where a private key is named (base/pkcs11.h) */
    if (s[0] == '/' || gw_pkcs11_is_uri(s) || pc->base_dir == NULL || pc->base_dir[0] == '\0') {
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
int gw_conf_p_names(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                    const struct gw_conf_field *f)
{
    const struct gw_conf_names *kind = f->aux;
    char ***dst = gw_conf_at(base, f->off);
    size_t *n = gw_conf_at(base, f->off_n), len, i, j;
    char ipath[GW_CONF_PATH_LEN], buf[GW_CONF_SHOW_BUF];

    if (v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_array))
        return gw_conf_fail(pc, path, "expected an array of names, got %s",
                            gw_conf_show(v, buf, sizeof(buf)));
    len = json_object_array_length(v);
    if (len == 0)
        return 0;
    if ((*dst = calloc(len, sizeof(**dst))) == NULL)
        return GW_ERR_NOMEM;
    for (i = 0; i < len; i++) {
        struct json_object *el = json_object_array_get_idx(v, i);
        gw_conf_join_index(ipath, path, i);
        if (!json_object_is_type(el, json_type_string) ||
            !kind->ok(json_object_get_string(el), (size_t)json_object_get_string_len(el)))
            return gw_conf_fail(pc, ipath, "expected %s, got %s", kind->desc,
                                gw_conf_show(el, buf, sizeof(buf)));
        for (j = 0; j < i; j++)
            if (strcmp((*dst)[j], json_object_get_string(el)) == 0)
                return gw_conf_fail(pc, ipath, "duplicate entry %s", gw_conf_show(el, buf, sizeof(buf)));
        if (((*dst)[i] = strdup(json_object_get_string(el))) == NULL)
            return GW_ERR_NOMEM;
        *n = i + 1;
    }
    return 0;
}

/* "http(s)://host[:port]": the API base; paths are the adapter's, so none is allowed here. */
static bool url_ok(const char *s)
{
    const char *h, *end, *port;
    unsigned char addr[16];
    char v6[INET6_ADDRSTRLEN + 1];
    int n = 0;

    if (strlen(s) > GW_MAX_URL_LEN)
        return false;
    if (strncmp(s, "https://", 8) == 0)
        h = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        h = s + 7;
    else
        return false;
    if (*h == '[') {
        if ((end = strchr(h, ']')) == NULL || (size_t)(end - h - 1) >= sizeof(v6))
            return false;
        memcpy(v6, h + 1, (size_t)(end - h - 1));
        v6[end - h - 1] = '\0';
        if (inet_pton(AF_INET6, v6, addr) != 1)
            return false;
        port = end + 1;
    } else {
        for (end = h; (*end >= 'a' && *end <= 'z') || (*end >= 'A' && *end <= 'Z') ||
                      (*end >= '0' && *end <= '9') || *end == '.' || *end == '-';
             end++)
            ;
        if (end == h || h[0] == '.' || h[0] == '-')
            return false;
        port = end;
    }
    if (*port == '\0')
        return true;
    if (*port++ != ':' || *port == '0' || *port == '\0' || strlen(port) > 5)
        return false;
    for (; *port >= '0' && *port <= '9'; port++)
        n = n * 10 + (*port - '0');
    return *port == '\0' && n >= 1 && n <= 65535;
}

int gw_conf_p_url(struct gw_conf_ctx *pc, const char *path, struct json_object *v, void *base,
                  const struct gw_conf_field *f)
{
    const char *s;
    char buf[GW_CONF_SHOW_BUF];

    if (v == NULL)
        return 0;
    if ((s = gw_conf_want_string(pc, path, v, "a URL")) == NULL)
        return GW_ERR_INVAL;
    if (!url_ok(s))
        return gw_conf_fail(pc, path,
                            "expected \"http(s)://host[:port]\" (no path, no trailing \"/\"), got %s",
                            gw_conf_show(v, buf, sizeof(buf)));
    return (*(char **)gw_conf_at(base, f->off) = strdup(s)) != NULL ? 0 : GW_ERR_NOMEM;
}

/*
 * As dirname(3), without touching |path|: the directory that holds the name of the last segment.
 * Trailing slashes belong to that segment ("/a/store/" is held by "/a", not by itself), and the
 * slashes between the directory and the segment to neither ("/a//b": "/a").
 */
char *gw_conf_dir_of(const char *path)
{
    size_t end = strlen(path);

    while (end > 1 && path[end - 1] == '/') /* the segment's trailing slashes */
        end--;
    while (end > 0 && path[end - 1] != '/') /* the segment */
        end--;
    if (end == 0)
        return strdup(".");
    while (end > 1 && path[end - 1] == '/') /* the slashes before it */
        end--;
    return strndup(path, end);
}

void gw_conf_free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}
