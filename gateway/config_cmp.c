/*
 * What the CMP layer reads of a configuration (gateway/cmp/conf.h), and the ids the gateway serves
 * as, which owners of the files it writes are judged against (config_local.h).
 */
#include "gateway/config.h"
#include "gateway/config_local.h"
#include "base/err.h"
#include "base/user.h"

#include <unistd.h>

/* Fails the load at |path| for a gw_user_ids or gw_group_id that returned |rc|, |why|: a lookup that could
   not be made, or a name NSS does not have (a directory service not answering reads the same), is the
   system's at this moment, not the file's (gw_user_lookup_class). */
static int lookup_failed(struct gw_conf_ctx *pc, const char *path, int rc, const char *why)
{
    return gw_conf_fail_as(pc, gw_user_lookup_class(rc), path, "%s", why);
}

int gw_config_resolve_ids(struct gw_conf_ctx *pc, struct gw_config *cfg)
{
    char why[GW_ERR_LEN];
    int rc;

    cfg->uid = geteuid();
    cfg->gid = getegid();
    if (cfg->uid != 0 || cfg->user == NULL)
        return 0;
    if ((rc = gw_user_ids(cfg->user, &cfg->uid, &cfg->gid, why)) != 0)
        return lookup_failed(pc, "$.user", rc, why);
    /* root by any name keeps every privilege: the change of user would give nothing up. A group of gid 0
       passes: without uid 0 it holds no capability, only what files grant that group */
    if (cfg->uid == 0)
        return gw_conf_fail(pc, "$.user",
                            "\"%s\" is uid 0: running as root needs \"run_as_root\": true and no \"user\"",
                            cfg->user);
    if (cfg->group != NULL && (rc = gw_group_id(cfg->group, &cfg->gid, why)) != 0)
        return lookup_failed(pc, "$.group", rc, why);
    return 0;
}

void gw_config_cmp_settings(const struct gw_config *cfg, struct gw_cmp_settings *out)
{
    *out = (struct gw_cmp_settings){
        .path_prefix = cfg->path_prefix,
        .signer = &cfg->signer,
        .trust = cfg->trust,
        .n_trust = cfg->n_trust,
        .pbm = cfg->pbm,
        .n_pbm = cfg->n_pbm,
        .cmp = &cfg->cmp,
        .audit = &cfg->audit,
        .root_update = &cfg->root_update,
        .roles = cfg->roles,
        .n_roles = cfg->n_roles,
        .routes = &cfg->routes,
        .upstreams = cfg->upstreams,
        .n_upstreams = cfg->n_upstreams,
        .uid = cfg->uid,
        .gid = cfg->gid,
    };
}
