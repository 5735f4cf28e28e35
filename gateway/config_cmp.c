/*
 * What the CMP layer reads of a configuration (gateway/cmp/conf.h), and the ids the gateway serves
 * as, which owners of the files it writes are judged against (config.h).
 */
#include "gateway/config.h"
#include "base/err.h"
#include "base/user.h"

#include <unistd.h>

uid_t gw_config_uid(const struct gw_config *cfg)
{
    char err[GW_ERR_LEN];
    uid_t uid;

    if (geteuid() == 0 && cfg->user != NULL && gw_user_ids(cfg->user, &uid, NULL, err) == 0)
        return uid;
    return geteuid();
}

gid_t gw_config_gid(const struct gw_config *cfg)
{
    char err[GW_ERR_LEN];
    uid_t uid;
    gid_t gid;

    if (geteuid() != 0 || cfg->user == NULL || gw_user_ids(cfg->user, &uid, &gid, err) != 0)
        return getegid();
    if (cfg->group != NULL && gw_group_id(cfg->group, &gid, err) != 0)
        return getegid();
    return gid;
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
        .uid = gw_config_uid(cfg),
        .gid = gw_config_gid(cfg),
    };
}
