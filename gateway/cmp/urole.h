/*
 * The upstream roles' policies (a Vault role's grants, names rules and issuer_ref), read from the
 * upstream and cached per cmpgw role GW_ROLE_POLICY_TTL seconds: for the policy checks of a request,
 * and for which issuer signs a route's certificates (genm's CRL, the revocation check's CRLs).
 */
#ifndef GW_CMP_UROLE_H
#define GW_CMP_UROLE_H

#include "gateway/cmp/cmp_local.h"
#include "mappings/role.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* An upstream role's policy, read for a delegate issuer, for the usages it grants or for its
 * issuer_ref, and kept GW_ROLE_POLICY_TTL seconds. */
struct cmp_role_policy {
    pthread_mutex_t lock; /* held across a fetch: one fetch per role at a time, not one per request;
                             taken with cmp_urole_lock, never waited for longer than that */
    int valid;
    time_t fetched;
    time_t failed; /* when the last read failed; 0 after a success */
    struct gw_role_policy policy;
};

/* cmp_urole_init: the empty cache of |e|, two slots per role. 0, or GW_ERR_NOMEM with |err|. */
int cmp_urole_init(struct gw_cmp_engine *e, char *err);
/* cmp_urole_cleanup frees it; NULL-safe on a partly built engine. */
void cmp_urole_cleanup(struct gw_cmp_engine *e);

/* cmp_urole_name: the upstream role |role| names (its upstream_role, else its own name). */
const char *cmp_urole_name(const struct gw_role *role);

/*
 * cmp_urole_signs_for: whether |up| signs |role|'s certificates under the role's upstream role (its
 * grants, issuer_ref): the role's upstream or its migration's "to"; a delegate or a crmf_upstream
 * signs the plan's template.
 */
bool cmp_urole_signs_for(const struct gw_cmp_engine *e, const struct gw_role *role,
                         const struct gw_upstream *up);

/*
 * cmp_urole_slot: the cache of the policy of |up|'s role for |role|: its own upstream's or its
 * migration's "to"; else |scratch|, set up empty (not one of the snapshot's roles: cannot happen),
 * which cmp_urole_release tears down.
 */
struct cmp_role_policy *cmp_urole_slot(struct gw_cmp_engine *e, const struct gw_role *role,
                                       const struct gw_upstream *up, struct cmp_role_policy *scratch);
void cmp_urole_release(struct cmp_role_policy *rp, struct cmp_role_policy *scratch);

/*
 * cmp_urole_lock takes |rp|'s lock, waiting GW_ROLE_POLICY_WAIT_MS at most: 0 with it held, else
 * GW_ERR_BUSY (another request's read holds it, which may last the upstream's timeout: each worker
 * waiting that long for it, then reading again itself, would stall the pool). Worker.
 */
int cmp_urole_lock(struct cmp_role_policy *rp);

/*
 * cmp_urole_fresh: |rp| made current: |up|'s policy of role |name|, read again when older than
 * GW_ROLE_POLICY_TTL. Lock held. 0 when rp->policy may be used; 1 when the last read failed less
 * than |backoff| seconds before now (a Vault policy without read on roles/, or a Vault that does not
 * answer, would otherwise cost a refused call, or a worker for the upstream's timeout, on every
 * request); a gw_err with |err| when the read failed. The time of a failure is when the read ended.
 * Worker.
 */
int cmp_urole_fresh(struct cmp_call *c, struct cmp_role_policy *rp, struct gw_upstream *up, const char *name,
                    time_t backoff, char *err);

/*
 * cmp_urole_signing_issuer: the issuer |up| signs |role|'s certificates with, as the name the
 * upstream takes (gw_upstream_crl): the role's issuer_ref; else, where |up| describes its roles
 * (Vault), the issuer_ref of the upstream role its sign call names, read like the role's grants
 * (cached GW_ROLE_POLICY_TTL, a failed read not tried again before then, logged
 * upstream_role_unread); NULL for the upstream's default issuer, or when the upstream role cannot
 * be read, or is being read for another request longer than GW_ROLE_POLICY_WAIT_MS (not logged). Borrowed
 * from |role| or written into |ref| (GW_MAX_ISSUER_REF_LEN + 1). Worker.
 */
const char *cmp_urole_signing_issuer(struct cmp_call *c, const struct gw_role *role, struct gw_upstream *up,
                                     char *ref);

/*
 * cmp_urole_issuer_refs: the issuers |up| signs the configuration's roles with, as
 * cmp_urole_signing_issuer names them (a role's issuer_ref, else its Vault role's), for the roles
 * of |up| and those migrating to it; each once, neither "default" nor the default issuer (NULL), at
 * most |cap| into |refs|. A Vault role that cannot be read names none (not logged: the caller says
 * what it missed). Their count. Worker.
 */
size_t cmp_urole_issuer_refs(struct cmp_call *c, struct gw_upstream *up,
                             char (*refs)[GW_MAX_ISSUER_REF_LEN + 1], size_t cap);

#endif
