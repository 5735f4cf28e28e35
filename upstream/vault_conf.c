/*
 * The "vault" section of an upstream (docs/vault.md, docs/configuration.md): its keys, the checks
 * that load what they name, and its release. The adapter's calls are in upstream/vault.c.
 */
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "upstream/upstream_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A Vault mount or namespace path: segments of [A-Za-z0-9._-] joined by single "/", no "." or "..". */
static bool segments_ok(const char *s, size_t len)
{
    size_t i, seg = 0;

    if (len == 0 || len > GW_MAX_MOUNT_LEN || s[len - 1] == '/')
        return false;
    for (i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            if (seg == 0 || (seg == 1 && s[i - 1] == '.') || (seg == 2 && s[i - 1] == '.' && s[i - 2] == '.'))
                return false;
            seg = 0;
            continue;
        }
        if (!gw_conf_name_ok(&s[i], 1))
            return false;
        seg++;
    }
    return true;
}

static bool mount_ok(const char *s, size_t len)
{
    return strlen(s) == len && segments_ok(s, len);
}

/* Vault writes namespaces as "ns1/ns2/" (X-Vault-Namespace); the trailing "/" is optional there. */
static bool namespace_ok(const char *s, size_t len)
{
    return strlen(s) == len && segments_ok(s, len > 1 && s[len - 1] == '/' ? len - 1 : len);
}

static const struct gw_conf_names names_mount = {
    mount_ok, "a path like \"pki\" or \"pki/int\" ([A-Za-z0-9._-] segments)"};

static const struct gw_conf_names names_namespace = {
    namespace_ok, "a namespace like \"ns1/ns2/\" ([A-Za-z0-9._-] segments)"};

/*
 * The token file: readable now, and a secret by its mode (gw_conf_open_secret). One that is not there
 * yet is the system's, not the configuration's: Vault Agent writes it once it has logged in, which may
 * be after the gateway's start at boot (GW_ERR_UNAVAILABLE: a start exits 1 and is tried again).
 */
static int check_token_file(struct gw_conf_ctx *pc, const char *fpath, const char *file)
{
    int fd = gw_conf_open_secret(pc, fpath, file, false);

    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno == ENOENT)
        pc->failed = GW_ERR_UNAVAILABLE;
    return pc->failed;
}

int gw_vault_conf_check(struct gw_conf_ctx *pc, const char *path, struct gw_upstream_conf *uc)
{
    struct gw_vault_conf *u = uc->impl;
    char kpath[GW_CONF_PATH_LEN];
    int rc;

    if ((u->token_file != NULL) == (u->auth_cert_mount != NULL))
        return gw_conf_fail(pc, path, "a vault upstream needs exactly one of \"token_file\" and \"auth\"");
    gw_conf_join_key(kpath, path, "auth");
    if (u->auth_cert_mount != NULL && u->http.client_cert_file == NULL)
        return gw_conf_fail(
            pc, kpath, "cert auth logs in with the client certificate: set \"tls_cert\" and \"tls_key\"");
    gw_conf_join_key(kpath, path, "token_file");
    if (u->token_file != NULL && (rc = check_token_file(pc, kpath, u->token_file)) != 0)
        return rc;
    if (u->mount == NULL && (u->mount = strdup("pki")) == NULL)
        return GW_ERR_NOMEM;
    return 0;
}

/* "auth" has one method today: {"cert": {...}}. */
static int check_upstream_auth(struct gw_conf_ctx *pc, const char *path, void *base)
{
    const struct gw_vault_conf *u = base;

    if (u->auth_cert_mount == NULL)
        return gw_conf_fail(pc, path, "expected {\"cert\": {...}}: cert auth is the login method supported");
    return 0;
}

static const struct gw_conf_field upstream_auth_cert_fields[] = {
    GW_CONF_OPT("mount", gw_conf_p_str, struct gw_vault_conf, auth_cert_mount, .sdef = "cert",
                .aux = &names_mount),
    GW_CONF_OPT("role", gw_conf_p_name, struct gw_vault_conf, auth_cert_role, .aux = &gw_conf_names_plain),
};

GW_CONF_OBJDEF(upstream_auth_cert_def, upstream_auth_cert_fields, NULL);

static const struct gw_conf_field upstream_auth_fields[] = {
    {.key = "cert", .parse = gw_conf_p_opt_obj, .off = 0, .aux = &upstream_auth_cert_def},
};

GW_CONF_OBJDEF(upstream_auth_def, upstream_auth_fields, check_upstream_auth);

static const struct gw_conf_field vault_fields[] = {
    GW_CONF_OPT("mount", gw_conf_p_str, struct gw_vault_conf, mount, .aux = &names_mount),
    GW_CONF_OPT("token_file", gw_conf_p_file, struct gw_vault_conf, token_file),
    GW_CONF_OPT("namespace", gw_conf_p_str, struct gw_vault_conf, vault_namespace, .aux = &names_namespace),
    /* "auth" fills the same struct: .off 0 */
    {.key = "auth", .parse = gw_conf_p_opt_obj, .off = 0, .aux = &upstream_auth_def},
};
const struct gw_conf_obj gw_vault_conf_def = {vault_fields, sizeof(vault_fields) / sizeof(vault_fields[0]),
                                              NULL};

/* The token file is read again when Vault answers 403: it must stay readable after start. */
int gw_vault_conf_access(const struct gw_upstream_conf *u, char *err)
{
    const struct gw_vault_conf *vc = u->impl;

    return gw_upstream_conf_can(u->name, "token_file", vc->token_file, R_OK, err);
}

void gw_vault_conf_free(void *impl)
{
    struct gw_vault_conf *vc = impl;

    free(vc->mount);
    free(vc->token_file);
    free(vc->vault_namespace);
    free(vc->auth_cert_mount);
    free(vc->auth_cert_role);
}
