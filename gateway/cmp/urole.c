/*
 * The upstream roles' policies, cached per cmpgw role (urole.h): read from an upstream that
 * describes its roles (Vault roles/<name>), kept GW_ROLE_POLICY_TTL seconds, one read per role at a
 * time. What a route's sign call names decides which Vault issuer signs for it.
 */
#include "gateway/cmp/urole.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "upstream/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * ThreadSanitizer (make build-tsan) sees a pthread mutex through its interceptors, and clang 14's has
 * none for pthread_mutex_clocklock: it would take the lock for never taken, report its unlock, and
 * order nothing by it. Told of it as its pthread_mutex_timedlock interceptor does, it checks the
 * cache under it as under any other lock. Nothing of this is in any other build.
 */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#include <sanitizer/tsan_interface.h>
#define TSAN_TOLD_OF_LOCK 1
#endif
#endif

int cmp_urole_init(struct gw_cmp_engine *e, char *err)
{
    if (e->cfg.n_roles == 0)
        return 0;
    if ((e->role_policies = calloc(2 * e->cfg.n_roles, sizeof(*e->role_policies))) == NULL) {
        snprintf(err, GW_ERR_LEN, "CMP engine: out of memory");
        return GW_ERR_NOMEM;
    }
    for (size_t i = 0; i < 2 * e->cfg.n_roles; i++)
        pthread_mutex_init(&e->role_policies[i].lock, NULL);
    return 0;
}

void cmp_urole_cleanup(struct gw_cmp_engine *e)
{
    for (size_t i = 0; e->role_policies != NULL && i < 2 * e->cfg.n_roles; i++) {
        gw_role_policy_cleanup(&e->role_policies[i].policy);
        pthread_mutex_destroy(&e->role_policies[i].lock);
    }
    free(e->role_policies);
    e->role_policies = NULL;
}

const char *cmp_urole_name(const struct gw_role *role)
{
    return role->upstream_role != NULL ? role->upstream_role : role->name;
}

int cmp_urole_lock(struct cmp_role_policy *rp)
{
    struct timespec until = gw_timespec_ms(gw_now_ms() + GW_ROLE_POLICY_WAIT_MS);
    int rc;

#ifdef TSAN_TOLD_OF_LOCK
    __tsan_mutex_pre_lock(&rp->lock, __tsan_mutex_try_lock);
#endif
    rc = pthread_mutex_clocklock(&rp->lock, CLOCK_MONOTONIC, &until);
#ifdef TSAN_TOLD_OF_LOCK
    __tsan_mutex_post_lock(&rp->lock, __tsan_mutex_try_lock | (rc != 0 ? __tsan_mutex_try_lock_failed : 0),
                           0);
#endif
    return rc == 0 ? 0 : GW_ERR_BUSY;
}

/* The engine's time now: a request that waited for the lock began before a read that ended meanwhile. */
static time_t now_of(const struct gw_cmp_engine *e)
{
    return e->clock != NULL ? e->clock() : time(NULL);
}

int cmp_urole_fresh(struct cmp_call *c, struct cmp_role_policy *rp, struct gw_upstream *up, const char *name,
                    time_t backoff, char *err)
{
    time_t now = now_of(c->e);
    int rc;

    if (rp->valid && now - rp->fetched < GW_ROLE_POLICY_TTL && now >= rp->fetched)
        return 0;
    if (rp->failed != 0 && now >= rp->failed && now - rp->failed < backoff)
        return 1;
    gw_role_policy_cleanup(&rp->policy);
    rp->valid = 0;
    if ((rc = gw_upstream_role_policy(up, name, &rp->policy, err)) != 0) {
        gw_role_policy_cleanup(&rp->policy);
        /* when it ended: a read that waits out the upstream's timeout must not eat the back-off */
        rp->failed = now_of(c->e);
        return rc;
    }
    rp->valid = 1;
    rp->fetched = now;
    rp->failed = 0;
    return 0;
}

bool cmp_urole_signs_for(const struct gw_cmp_engine *e, const struct gw_role *role,
                         const struct gw_upstream *up)
{
    return up == gw_upstream_set_get0(e->ups, role->upstream_name) ||
           (gw_migration_configured(&role->migration) &&
            up == gw_upstream_set_get0(e->ups, role->migration.to_name));
}

struct cmp_role_policy *cmp_urole_slot(struct gw_cmp_engine *e, const struct gw_role *role,
                                       const struct gw_upstream *up, struct cmp_role_policy *scratch)
{
    size_t i = (size_t)(role - e->cfg.roles);

    if (role >= e->cfg.roles && i < e->cfg.n_roles && e->role_policies != NULL &&
        up == gw_upstream_set_get0(e->ups, role->upstream_name))
        return &e->role_policies[2 * i];
    if (role >= e->cfg.roles && i < e->cfg.n_roles && e->role_policies != NULL &&
        gw_migration_configured(&role->migration) &&
        up == gw_upstream_set_get0(e->ups, role->migration.to_name))
        return &e->role_policies[2 * i + 1];
    memset(scratch, 0, sizeof(*scratch));
    pthread_mutex_init(&scratch->lock, NULL);
    return scratch;
}

void cmp_urole_release(struct cmp_role_policy *rp, struct cmp_role_policy *scratch)
{
    if (rp != scratch)
        return;
    gw_role_policy_cleanup(&scratch->policy);
    pthread_mutex_destroy(&scratch->lock);
}

/*
 * The upstream role whose issuer_ref a sign call of |role| takes, as the Vault adapter's sign path
 * names it: sign/<upstream_role>, sign-verbatim/<upstream_role>; plain sign-verbatim (no
 * upstream_role, or "sign-verbatim") names none and signs with the default issuer: NULL.
 */
static const char *signing_role(const struct gw_role *role)
{
    if (role->sign_policy != GW_SIGN_VERBATIM)
        return cmp_urole_name(role);
    if (role->upstream_role == NULL || strcmp(role->upstream_role, "sign-verbatim") == 0)
        return NULL;
    return role->upstream_role;
}

/* cmp_urole_signing_issuer's ref, |err| saying why a Vault role could not be read (rc < 0). */
static const char *signing_issuer(struct cmp_call *c, const struct gw_role *role, struct gw_upstream *up,
                                  char *ref, int *rc, char *err)
{
    struct cmp_role_policy scratch, *rp;
    const char *name = signing_role(role);

    ref[0] = '\0';
    *rc = 0;
    if (role->issuer_ref != NULL)
        return role->issuer_ref;
    if ((gw_upstream_caps(up) & GW_UP_ROLE_POLICY) == 0 || name == NULL)
        return NULL;
    rp = cmp_urole_slot(c->e, role, up, &scratch);
    if (cmp_urole_lock(rp) != 0) {
        *rc = 1; /* as a read that failed lately: another request's is under way */
        cmp_urole_release(rp, &scratch);
        return NULL;
    }
    if ((*rc = cmp_urole_fresh(c, rp, up, name, GW_ROLE_POLICY_TTL, err)) == 0)
        snprintf(ref, GW_MAX_ISSUER_REF_LEN + 1, "%s", rp->policy.issuer_ref);
    pthread_mutex_unlock(&rp->lock);
    cmp_urole_release(rp, &scratch);
    return ref[0] != '\0' ? ref : NULL;
}

const char *cmp_urole_signing_issuer(struct cmp_call *c, const struct gw_role *role, struct gw_upstream *up,
                                     char *ref)
{
    char err[GW_ERR_LEN] = "";
    int rc = 0;
    const char *got = signing_issuer(c, role, up, ref, &rc, err);

    if (rc < 0)
        gw_log_kv(GW_LOG_WARN, "upstream_role_unread", "tid", c->rsp->tid, "role", role->name,
                  "upstream_role", signing_role(role), "reason", err, "msg",
                  "the CRL served is the default issuer's", NULL);
    return got;
}

/* Whether |ref| is among the first |n| of |refs|. */
static int listed(char (*refs)[GW_MAX_ISSUER_REF_LEN + 1], size_t n, const char *ref)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(refs[i], ref) == 0)
            return 1;
    return 0;
}

size_t cmp_urole_issuer_refs(struct cmp_call *c, struct gw_upstream *up,
                             char (*refs)[GW_MAX_ISSUER_REF_LEN + 1], size_t cap)
{
    const struct gw_cmp_engine *e = c->e;
    char ref[GW_MAX_ISSUER_REF_LEN + 1], err[GW_ERR_LEN];
    const char *got;
    size_t n = 0;
    int rc;

    for (size_t i = 0; i < e->cfg.n_roles && n < cap; i++) {
        const struct gw_role *role = &e->cfg.roles[i];

        if (!cmp_urole_signs_for(e, role, up))
            continue;
        /* the default issuer's is the mount's own CRL: fetched anyway */
        if ((got = signing_issuer(c, role, up, ref, &rc, err)) == NULL || strcmp(got, "default") == 0 ||
            strlen(got) > GW_MAX_ISSUER_REF_LEN || listed(refs, n, got))
            continue;
        snprintf(refs[n++], GW_MAX_ISSUER_REF_LEN + 1, "%s", got);
    }
    return n;
}
