/*
 * fuzz_route: the input is a request path (raw bytes, no NUL) for gw_route_match, matched against
 * the demo configuration twice: as it is, with a second role and a "forbid" label; and with the
 * prefix "/v1/pki" of Vault-style deployments. Besides the sanitizers, an answer must keep the
 * promises of mappings/route.h: a match names a role (or, for a CRL, a local issuer) and a
 * registered operation; a refusal is 404 or 403 with a one-line reason.
 */
#include "tests/fuzz/fuzz.h"

#include <json-c/json.h>

#include "base/err.h"
#include "mappings/route.h"

#define N_CONFIGS 2

static struct gw_config *cfgs[N_CONFIGS];

/* The demo configuration with |prefix| (NULL: the default), a role "ops" and a label "off": "forbid". */
static struct gw_config *variant(const char *prefix)
{
    char *demo = fuzz_pki_file("cmpgw.json", NULL);
    struct json_object *root = json_tokener_parse(demo), *roles, *role, *labels;
    struct gw_config *cfg;

    if (root == NULL || !json_object_object_get_ex(root, "roles", &roles) ||
        !json_object_object_get_ex(roles, "default", &role) ||
        !json_object_object_get_ex(root, "label_to_path_policy", &labels))
        fuzz_die("%s/cmpgw.json is not the demo configuration", FUZZ_PKI);
    json_object_object_add(roles, "ops", json_object_get(role));
    json_object_object_add(labels, "off", json_object_new_string("forbid"));
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_route_match m;
    char err[GW_ERR_LEN];

    for (int i = 0; i < N_CONFIGS; i++) {
        memset(err, 'x', sizeof(err)); /* an error text left unterminated shows as GW_ERR_LEN */
        check(cfgs[i], gw_route_match(&cfgs[i]->routes, (const char *)data, size, &m, err), &m, err);
    }
    return 0;
}
