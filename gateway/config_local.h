/*
 * Internal sharing of the configuration module: config.c (schema, parse, cross-field checks),
 * config_warn.c (what loads but was likely not meant, said at load and by `cmpgw check`) and
 * config_cmp.c (the ids the gateway serves as).
 */
#ifndef GW_CONFIG_LOCAL_H
#define GW_CONFIG_LOCAL_H

#include "gateway/config.h"
#include "base/conf.h"

/*
 * gw_config_warn_migration warns of each CA that |r| migrates to (its "to"'s, and its delegate's where that
 * stands in for "to") which |r|'s trust entries do not hold (the same name and key, as an anchor or an
 * intermediate) or whose copy there does not chain to them: the devices that move could not sign a kur or
 * an rr with their new certificates.
 */
void gw_config_warn_migration(const struct gw_conf_ctx *pc, const struct gw_role *r);

/*
 * gw_config_warn_any_host warns of a role that lets a request name any host, in its CN or a DNS SAN:
 * one without allowed_dns_names, allowed_common_names and allowed_subjects, or whose allowed_common_names
 * holds a pattern that admits any host name ("*" where the role may issue TLS server certificates, "*.*").
 */
void gw_config_warn_any_host(const struct gw_conf_ctx *pc, const struct gw_role *r);

/*
 * gw_config_warn_free_subjects warns, once per pair of roles, of a role without allowed_subjects
 * whose upstream's CA another role trusts while it admits clients by subject (signer_subjects,
 * tls_subjects, ra_subjects, the subject lines of a device_allowlist under the trust entries they name).
 * Needs the roles resolved (their trust stores built).
 */
void gw_config_warn_free_subjects(struct gw_conf_ctx *pc, const struct gw_config *cfg);

/*
 * gw_config_warn_handover warns of a handover_socket without Redis: the two gateways of a hand-over
 * share no replay cache; and without cmp.revoked_file either, as the certificates revoked through a
 * predecessor reach its successor through one of them alone.
 */
void gw_config_warn_handover(const struct gw_conf_ctx *pc, const struct gw_config *cfg);

/*
 * gw_config_warn_fds warns when the hard RLIMIT_NOFILE of this process is below what |cfg| may hold
 * open (gw_config_fds): the soft limit a start raises to it would still fail connections at accept.
 */
void gw_config_warn_fds(const struct gw_conf_ctx *pc, const struct gw_config *cfg);

/*
 * gw_config_resolve_ids sets |cfg|'s uid and gid, the ids the gateway serves as: started as root, "user"'s
 * uid and "group"'s gid (else the user's own group); else its own. 0, or the load failed with the lookup's
 * class: GW_ERR_INVAL for a user or group the system does not have, or a user of uid 0 (root by any name,
 * which the change of user could not give up; a group of gid 0 passes); GW_ERR_UNAVAILABLE where the lookup
 * could not be made (NSS: sssd or LDAP not answering yet at boot), which another try may mend;
 * GW_ERR_NOMEM. Never root's ids for a user it could not look up: the user's store and audit log would be
 * judged as another's, and refused.
 */
int gw_config_resolve_ids(struct gw_conf_ctx *pc, struct gw_config *cfg);

#endif
