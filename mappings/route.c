/*
 * Route table: request path -> role (mappings/route.h). Pure: no I/O.
 *
 * The path is matched as raw bytes, never percent-decoded: a client that sends "%2e" or a dot
 * segment gets a 404 instead of a path the gateway and a proxy in front of it might read
 * differently (RFC 3986 §5.2.4 would remove dot segments; we refuse them).
 */
#include <stdio.h>
#include <string.h>
#include "base/err.h"
#include "base/limits.h"
#include "mappings/route.h"

#define DEFAULT_PREFIX "/pki"
#define WELLKNOWN "/.well-known/cmp"
#define CRL_SUFFIX ".crl" /* <prefix>/crl/<name>.crl: what CRL distribution point URLs usually end in */
#define SHOWN_PATH_LEN 64 /* how much of a bad path a 404 reason echoes */

/* RFC 9483 §3.6 operation path segments. */
static const char *const operations[] = {
    "initialization", "certification", "keyupdate",          "pkcs10",  "revocation",
    "getcacerts",     "getrootupdate", "getcertreqtemplate", "getcrls", "nested",
};

/* A cursor over the '/'-separated segments of a validated path. */
struct cursor {
    const char *p;
    size_t left;
};

int gw_route_operation_valid(const char *seg, size_t len)
{
    size_t i;

    if (seg == NULL)
        return 0;
    for (i = 0; i < sizeof(operations) / sizeof(operations[0]); i++) {
        if (strlen(operations[i]) == len && memcmp(operations[i], seg, len) == 0)
            return 1;
    }
    return 0;
}

static const char *prefix_of(const struct gw_routes *rt)
{
    return rt != NULL && rt->path_prefix != NULL ? rt->path_prefix : DEFAULT_PREFIX;
}

/* Copies at most SHOWN_PATH_LEN printable bytes of |path| for a reason text; others become '?'. */
static void show_path(char *out, size_t cap, const char *path, size_t len)
{
    size_t i, n = len < SHOWN_PATH_LEN ? len : SHOWN_PATH_LEN;

    if (n >= cap)
        n = cap - 1;
    for (i = 0; i < n; i++)
        out[i] = (path[i] >= 0x21 && path[i] <= 0x7e) ? path[i] : '?';
    out[n] = '\0';
    if (n < len && n >= 3)
        memcpy(out + n - 3, "...", 3);
}

/* The one-line 404 reason: what was wrong, then the path shapes that exist. */
static int not_found(const struct gw_routes *rt, char *err, const char *what, const char *item,
                     size_t item_len)
{
    char shown[SHOWN_PATH_LEN + 1];

    show_path(shown, sizeof(shown), item, item_len);
    snprintf(err, GW_ERR_LEN, "%s %s: CMP is served at %s/cmp, %s/roles/<role>/cmp, %s[/p/<label>]", what,
             shown, prefix_of(rt), prefix_of(rt), WELLKNOWN);
    return GW_ERR_NOT_FOUND;
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* Role and label names: [A-Za-z0-9._-]{1,GW_MAX_NAME_LEN}, as config.c accepts them. */
static int name_valid(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > GW_MAX_NAME_LEN)
        return 0;
    for (i = 0; i < len; i++) {
        if (!name_char(s[i]))
            return 0;
    }
    return 1;
}

/* Bytes a route path may hold: those of role and label names, '/', and '~' (RFC 3986 unreserved).
 * Everything else, '%' included, is refused rather than decoded. */
static int path_char(char c)
{
    return name_char(c) || c == '/' || c == '~';
}

/*
 * check_shape refuses what no valid route contains: non-path bytes, percent-encoding, empty and
 * dot segments. A single trailing slash is dropped first (docs/design.md D10).
 */
static int check_shape(const struct gw_routes *rt, const char *path, size_t *len, char *err)
{
    size_t i, seg_start = 1;

    if (*len == 0 || path[0] != '/')
        return not_found(rt, err, "unknown path", path, *len);
    if (*len > GW_MAX_PATH_LEN) {
        snprintf(err, GW_ERR_LEN, "path too long (%zu bytes; the limit is %d)", *len, GW_MAX_PATH_LEN);
        return GW_ERR_NOT_FOUND;
    }
    if (*len > 1 && path[*len - 1] == '/')
        (*len)--;
    for (i = 1; i <= *len; i++) {
        if (i < *len && path[i] == '%')
            return not_found(rt, err, "percent-encoded path", path, *len);
        if (i < *len && !path_char(path[i]))
            return not_found(rt, err, "invalid character in path", path, *len);
        if (i < *len && path[i] != '/')
            continue;
        /* end of the segment [seg_start, i) */
        if (i == seg_start || (i - seg_start == 1 && path[seg_start] == '.') ||
            (i - seg_start == 2 && path[seg_start] == '.' && path[seg_start + 1] == '.'))
            return not_found(rt, err, "empty or dot segment in path", path, *len);
        seg_start = i + 1;
    }
    return 0;
}

static int next_seg(struct cursor *c, const char **seg, size_t *len)
{
    const char *slash;

    if (c->left == 0 || c->p[0] != '/')
        return 0;
    slash = memchr(c->p + 1, '/', c->left - 1);
    *seg = c->p + 1;
    *len = slash != NULL ? (size_t)(slash - *seg) : c->left - 1;
    c->p += *len + 1;
    c->left -= *len + 1;
    return 1;
}

static int seg_is(const char *seg, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(seg, lit, len) == 0;
}

/* Consumes |lit| from |c| if the path continues with exactly that on a segment boundary. */
static int take_literal(struct cursor *c, const char *lit)
{
    size_t n = strlen(lit);

    if (c->left < n || memcmp(c->p, lit, n) != 0 || (c->left > n && c->p[n] != '/'))
        return 0;
    c->p += n;
    c->left -= n;
    return 1;
}

/* After ".../cmp": nothing, or one RFC 9483 operation segment. */
static int take_operation(const struct gw_routes *rt, struct cursor *c, struct gw_route_match *out, char *err)
{
    const char *seg;
    size_t len;

    if (!next_seg(c, &seg, &len))
        return 0;
    if (!gw_route_operation_valid(seg, len))
        return not_found(rt, err, "unknown CMP operation", seg, len);
    if (c->left != 0)
        return not_found(rt, err, "unknown path: nothing may follow the operation in", c->p - len - 1,
                         len + 1 + c->left);
    memcpy(out->operation, seg, len);
    out->operation[len] = '\0';
    return 0;
}

static const struct gw_role *find_role(const struct gw_routes *rt, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < rt->n_roles; i++) {
        if (rt->roles[i].name != NULL && seg_is(name, len, rt->roles[i].name))
            return &rt->roles[i];
    }
    return NULL;
}

static const struct gw_label *find_label(const struct gw_routes *rt, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < rt->n_labels; i++) {
        if (rt->labels[i].label != NULL && seg_is(name, len, rt->labels[i].label))
            return &rt->labels[i];
    }
    return NULL;
}

static int apply_policy(const struct gw_path_policy *pol, const char *what, struct gw_route_match *out,
                        char *err)
{
    if (pol->forbid || pol->role == NULL) {
        snprintf(err, GW_ERR_LEN, "CMP on %s is disabled by policy (forbid)", what);
        return GW_ERR_FORBIDDEN;
    }
    out->role = pol->role;
    return 0;
}

static const struct gw_route_upstream *find_upstream(const struct gw_routes *rt, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < rt->n_upstreams; i++) {
        if (rt->upstreams[i].name != NULL && seg_is(name, len, rt->upstreams[i].name))
            return &rt->upstreams[i];
    }
    return NULL;
}

static const struct gw_profile *find_profile(const struct gw_routes *rt, const char *name, size_t len)
{
    for (size_t i = 0; i < rt->n_profiles; i++) {
        if (rt->profiles[i].name != NULL && seg_is(name, len, rt->profiles[i].name))
            return &rt->profiles[i];
    }
    return NULL;
}

/*
 * <prefix>/crl/<name>[.crl]: only a local issuer's CRL is served here. Another upstream's CRL
 * is the CA's to publish; fetching it per anonymous GET would let anyone load the CA through us.
 * An upstream whose name itself ends in ".crl" is found by its full name first.
 */
static int crl_not_found(const struct gw_routes *rt, char *err, const char *what, const char *item,
                         size_t len)
{
    char shown[SHOWN_PATH_LEN + 1];

    show_path(shown, sizeof(shown), item, len);
    snprintf(err, GW_ERR_LEN, "%s %s: a local issuer's CRL is served at %s/crl/<upstream>[.crl]", what, shown,
             prefix_of(rt));
    return GW_ERR_NOT_FOUND;
}

static int match_crl(const struct gw_routes *rt, struct cursor *c, const char *path, size_t plen,
                     struct gw_route_match *out, char *err)
{
    const struct gw_route_upstream *up;
    const char *name;
    size_t len, k = strlen(CRL_SUFFIX);

    if (!next_seg(c, &name, &len) || c->left != 0)
        return crl_not_found(rt, err, "unknown path", path, plen);
    if ((up = find_upstream(rt, name, len)) == NULL && len > k && memcmp(name + len - k, CRL_SUFFIX, k) == 0)
        up = find_upstream(rt, name, len - k);
    if (up == NULL)
        return crl_not_found(rt, err, "unknown upstream", name, len);
    if (!up->own_ca)
        return crl_not_found(rt, err, "not a local issuer (ask the CA itself for its CRL):", name, len);
    out->kind = GW_ROUTE_CRL;
    out->upstream = up->name;
    return 0;
}

/*
 * The profile decides whose trust checks the signature, so its refusals come before anyone is
 * authenticated: one answer for an unknown profile and for one of another role, naming no profile or
 * role of the configuration, so that no one learns on a role or label path which profiles there are;
 * |rc| tells the caller's log which it was.
 */
static int profile_not_served(const struct gw_role **role, char *err, const char *shown, int rc)
{
    *role = NULL;
    snprintf(err, GW_ERR_LEN, GW_TEXT_PROFILE_NOT_SERVED, shown);
    return rc;
}

int gw_route_profile(const struct gw_routes *rt, const struct gw_route_match *m, const char *name,
                     const struct gw_role **role, char *err)
{
    const struct gw_profile *p;
    char shown[SHOWN_PATH_LEN + 1];
    size_t len = name != NULL ? strlen(name) : 0;

    err[0] = '\0';
    *role = m != NULL ? m->role : NULL;
    if (len == 0)
        return 0;
    show_path(shown, sizeof(shown), name, len);
    if ((p = find_profile(rt, name, len)) == NULL)
        return profile_not_served(role, err, shown, GW_ERR_NOT_FOUND);
    /* a role or label path has chosen its role already: a profile can only agree with it */
    if (m != NULL && (m->kind == GW_ROUTE_ROLE || m->kind == GW_ROUTE_LABEL) && p->policy.role != m->role)
        return profile_not_served(role, err, shown, GW_ERR_POLICY);
    *role = p->policy.role;
    return 0;
}

int gw_route_is_get(const struct gw_route_match *m)
{
    return m != NULL && m->kind == GW_ROUTE_CRL;
}

/* <prefix>/cmp[/op] or <prefix>/roles/<role>/cmp[/op]; |c| is just past the prefix. */
static int match_prefixed(const struct gw_routes *rt, struct cursor *c, const char *path, size_t len,
                          struct gw_route_match *out, char *err)
{
    const char *seg, *role_name;
    size_t seg_len, role_len;
    int rc;

    if (!next_seg(c, &seg, &seg_len))
        return not_found(rt, err, "unknown path", path, len);
    if (seg_is(seg, seg_len, "cmp")) {
        out->kind = GW_ROUTE_DEFAULT;
        if ((rc = take_operation(rt, c, out, err)) != 0)
            return rc;
        return apply_policy(rt->default_policy, "the default path", out, err);
    }
    if (seg_is(seg, seg_len, "crl"))
        return match_crl(rt, c, path, len, out, err);
    if (!seg_is(seg, seg_len, "roles") || !next_seg(c, &role_name, &role_len) ||
        !next_seg(c, &seg, &seg_len) || !seg_is(seg, seg_len, "cmp"))
        return not_found(rt, err, "unknown path", path, len);
    if (!name_valid(role_name, role_len))
        return not_found(rt, err, "invalid role name", role_name, role_len);
    out->kind = GW_ROUTE_ROLE;
    if ((rc = take_operation(rt, c, out, err)) != 0)
        return rc;
    if ((out->role = find_role(rt, role_name, role_len)) == NULL)
        return not_found(rt, err, "unknown role", role_name, role_len);
    return 0;
}

/* /.well-known/cmp[/op] or /.well-known/cmp/p/<label>[/op] (RFC 9811 §3); |c| is past "/.well-known/cmp". */
static int match_wellknown(const struct gw_routes *rt, struct cursor *c, const char *path, size_t len,
                           struct gw_route_match *out, char *err)
{
    const struct gw_label *label;
    const char *name;
    size_t name_len;
    int rc;

    if (!take_literal(c, "/p")) {
        out->kind = GW_ROUTE_WELLKNOWN;
        if ((rc = take_operation(rt, c, out, err)) != 0)
            return rc;
        return apply_policy(rt->default_policy, "the default path", out, err);
    }
    if (!next_seg(c, &name, &name_len))
        return not_found(rt, err, "missing label in", path, len);
    if (!name_valid(name, name_len))
        return not_found(rt, err, "invalid label", name, name_len);
    out->kind = GW_ROUTE_LABEL;
    if ((rc = take_operation(rt, c, out, err)) != 0)
        return rc;
    if ((label = find_label(rt, name, name_len)) == NULL)
        return not_found(rt, err, "unknown label", name, name_len);
    return apply_policy(&label->policy, "this label", out, err);
}

int gw_route_match(const struct gw_routes *rt, const char *path, size_t len, struct gw_route_match *out,
                   char *err)
{
    struct cursor c;
    int rc;

    err[0] = '\0';
    memset(out, 0, sizeof(*out));
    if (rt == NULL || path == NULL)
        return not_found(rt, err, "unknown path", "", 0);
    if ((rc = check_shape(rt, path, &len, err)) != 0)
        goto out;
    c.p = path;
    c.left = len;
    if (take_literal(&c, WELLKNOWN))
        rc = match_wellknown(rt, &c, path, len, out, err);
    else if (take_literal(&c, prefix_of(rt)))
        rc = match_prefixed(rt, &c, path, len, out, err);
    else
        rc = not_found(rt, err, "unknown path", path, len);
out:
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
    } else {
        err[0] = '\0';
    }
    return rc;
}
