/*
 * fuzz_route: the input is a request path (raw bytes) for gw_route_match, optionally followed by a
 * line feed and the certProfile a request names, matched against the demo configuration twice: as
 * it is, with a second role, a "forbid" label and a profile for each role; and with the prefix
 * "/v1/pki" of Vault-style deployments. A CMP route matched is given to gw_route_profile with the
 * profile as gw_shim_cert_profile reads it (1..GW_MAX_PROFILE_NAME_LEN bytes, no NUL; without a
 * line feed, none: ""), in a buffer of its own length. Besides the sanitizers, an answer must keep
 * the promises of mappings/route.h: a match names a role (or, for a CRL, a local issuer) and a
 * registered operation; a refusal is 404 or 403 with a one-line reason. The role a profile gives is
 * the path's when none is named, else the profile's, which on a role or label path must be the
 * path's; a refusal leaves no role and echoes the name in printable ASCII.
 */
#include "tests/fuzz/fuzz.h"

#include <stdbool.h>
#include <json-c/json.h>

#include "base/err.h"
#include "mappings/route.h"

#define N_CONFIGS 2

static struct gw_config *cfgs[N_CONFIGS];

/*
 * The demo configuration with |prefix| (NULL: the default), a role "ops", a label "off": "forbid",
 * and the profiles "fuzz" (role "default") and "fuzz-ops" (role "ops").
 */
static struct gw_config *variant(const char *prefix)
{
    char *demo = fuzz_pki_file("cmpgw.json", NULL);
    struct json_object *root = json_tokener_parse(demo), *roles, *role, *labels,
                       *profiles = json_object_new_object();
    struct gw_config *cfg;

    if (root == NULL || profiles == NULL || !json_object_object_get_ex(root, "roles", &roles) ||
        !json_object_object_get_ex(roles, "default", &role) ||
        !json_object_object_get_ex(root, "label_to_path_policy", &labels))
        fuzz_die("%s/cmpgw.json is not the demo configuration", FUZZ_PKI);
    json_object_object_add(roles, "ops", json_object_get(role));
    json_object_object_add(labels, "off", json_object_new_string("forbid"));
    json_object_object_add(profiles, "fuzz", json_object_new_string("role:default"));
    json_object_object_add(profiles, "fuzz-ops", json_object_new_string("role:ops"));
    json_object_object_add(root, "profiles", profiles);
    if (prefix != NULL)
        json_object_object_add(root, "path_prefix", json_object_new_string(prefix));
    cfg = fuzz_config(json_object_to_json_string(root));
    json_object_put(root);
    free(demo);
    return cfg;
}

static void cleanup(void)
{
    for (int i = 0; i < N_CONFIGS; i++)
        gw_config_free(cfgs[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    cfgs[0] = variant(NULL);
    cfgs[1] = variant("/v1/pki");
    atexit(cleanup);
    return 0;
}

/* Whether the upstream named |name| is one whose CA cmpgw is (a local issuer). */
static bool own_ca(const struct gw_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->routes.n_upstreams; i++)
        if (strcmp(cfg->routes.upstreams[i].name, name) == 0)
            return cfg->routes.upstreams[i].own_ca;
    return false;
}

static void check(const struct gw_config *cfg, int rc, const struct gw_route_match *m, const char *err)
{
    size_t n = strnlen(err, GW_ERR_LEN);

    if (rc == 0) {
        if (n != 0)
            fuzz_die("a match with a reason: %s", err);
        if ((m->kind == GW_ROUTE_CRL) != (m->role == NULL) ||
            (m->kind == GW_ROUTE_CRL) != (m->upstream != NULL))
            fuzz_die("route kind %d with role %p and upstream %p", (int)m->kind, (const void *)m->role,
                     (const void *)m->upstream);
        if (m->upstream != NULL && !own_ca(cfg, m->upstream))
            fuzz_die("a CRL route to upstream %s, not a local issuer", m->upstream);
        if (m->role != NULL && (m->role < cfg->roles || m->role >= cfg->roles + cfg->n_roles))
            fuzz_die("a role outside the configuration");
        if (strnlen(m->operation, sizeof(m->operation)) == sizeof(m->operation) ||
            (m->operation[0] != '\0' && !gw_route_operation_valid(m->operation, strlen(m->operation))))
            fuzz_die("operation \"%.32s\" is not registered", m->operation);
        return;
    }
    if (rc != GW_ERR_NOT_FOUND && rc != GW_ERR_FORBIDDEN)
        fuzz_die("gw_route_match returned %d", rc);
    if (n == 0 || n == GW_ERR_LEN || memchr(err, '\n', n) != NULL)
        fuzz_die("a refusal without a one-line reason");
    if (m->role != NULL || m->upstream != NULL || m->operation[0] != '\0')
        fuzz_die("a refusal that still names a route");
}

/* The profile named |name| as the configuration lists it, found without gw_route_profile's own search. */
static const struct gw_profile *profile_named(const struct gw_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_profiles; i++)
        if (strcmp(cfg->profiles[i].name, name) == 0)
            return &cfg->profiles[i];
    return NULL;
}

/* The role |m| serves a request naming the certProfile |name| ("": none), or NULL where it is refused. */
static const struct gw_role *served(const struct gw_config *cfg, const struct gw_route_match *m,
                                    const char *name)
{
    const struct gw_profile *p = profile_named(cfg, name);

    if (name[0] == '\0')
        return m->role;
    if (p == NULL || ((m->kind == GW_ROUTE_ROLE || m->kind == GW_ROUTE_LABEL) && p->policy.role != m->role))
        return NULL;
    return p->policy.role;
}

static void check_profile(const struct gw_config *cfg, const struct gw_route_match *m, const char *name)
{
    const struct gw_role *want = served(cfg, m, name), *role = m->role;
    char err[GW_ERR_LEN];
    size_t n;
    int rc;

    memset(err, 'x', sizeof(err));
    rc = gw_route_profile(&cfg->routes, m, name, &role, err);
    n = strnlen(err, GW_ERR_LEN);
    if (want != NULL) {
        if (rc != 0 || role != want || n != 0)
            fuzz_die("profile \"%.64s\": %d, role %s, \"%.64s\"; want role %s", name, rc,
                     role != NULL ? role->name : "none", n < GW_ERR_LEN ? err : "", want->name);
        return;
    }
    if (rc != (profile_named(cfg, name) == NULL ? GW_ERR_NOT_FOUND : GW_ERR_POLICY))
        fuzz_die("profile \"%.64s\" refused with %d", name, rc);
    if (role != NULL)
        fuzz_die("profile \"%.64s\" refused, but still role %s", name, role->name);
    if (n == 0 || n == GW_ERR_LEN || strncmp(err, "certProfile \"", strlen("certProfile \"")) != 0)
        fuzz_die("profile \"%.64s\" refused without its reason", name);
    for (size_t i = 0; i < n; i++)
        if (err[i] < 0x20 || err[i] > 0x7e)
            fuzz_die("profile refused with byte 0x%02x in its reason", (unsigned char)err[i]);
}

/* |size| bytes of |data| in a buffer of just their size, or one more for a NUL after them (|nul|): a read
   past what the callee was given is one past the buffer, which ASan reports. */
static char *own_copy(const uint8_t *data, size_t size, bool nul)
{
    char *s = malloc(size + nul);

    if (s == NULL && size + nul > 0)
        fuzz_die("out of memory");
    if (size > 0)
        memcpy(s, data, size);
    if (nul)
        s[size] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *lf = memchr(data, '\n', size);
    size_t path_len = lf != NULL ? (size_t)(lf - data) : size,
           name_len = lf != NULL ? size - path_len - 1 : 0;
    char *path = own_copy(data, path_len, false), *name = own_copy(data + size - name_len, name_len, true);
    struct gw_route_match m;
    char err[GW_ERR_LEN];
    int rc;

    for (int i = 0; i < N_CONFIGS; i++) {
        memset(err, 'x', sizeof(err)); /* an error text left unterminated shows as GW_ERR_LEN */
        rc = gw_route_match(&cfgs[i]->routes, path, path_len, &m, err);
        check(cfgs[i], rc, &m, err);
        /* what gw_shim_cert_profile refuses never reaches it: none empty, too long or holding NUL */
        if (rc == 0 && !gw_route_is_get(&m) &&
            (lf == NULL || (name_len > 0 && name_len <= GW_MAX_PROFILE_NAME_LEN && strlen(name) == name_len)))
            check_profile(cfgs[i], &m, name);
    }
    free(path);
    free(name);
    return 0;
}
