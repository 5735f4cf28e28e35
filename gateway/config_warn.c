/*
 * Configurations that load but were likely not meant (config_local.h): each is a `config` warning at
 * load, reload and `cmpgw check`, never a refusal (the operator may be mid-change).
 */
#include "gateway/config_local.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/pem.h"
#include "upstream/upstream.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <string.h>
#include <sys/resource.h>

/*
 * X509_V_OK when CA certificate |ca| chains to |store| (with |untrusted|) under the store's own flags
 * at security level |level| (0: none), else why not; -1 when there is nothing to check. Its revocation
 * status is not the question.
 */
static int chain_error(X509 *ca, X509_STORE *store, STACK_OF(X509) *untrusted, int level)
{
    X509_STORE_CTX *vc;
    int err = -1;

    if (ca == NULL || store == NULL || (vc = X509_STORE_CTX_new()) == NULL)
        return -1;
    if (X509_STORE_CTX_init(vc, store, ca, untrusted) == 1) {
        X509_VERIFY_PARAM_clear_flags(X509_STORE_CTX_get0_param(vc),
                                      X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
        X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(vc), level);
        err = X509_verify_cert(vc) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(vc);
    }
    X509_STORE_CTX_free(vc);
    ERR_clear_error();
    return err;
}

/* Whether CA certificates |a| and |b| are one CA to a chain builder: the same subject name and key. */
static bool same_ca(X509 *a, X509 *b)
{
    return X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) == 0 &&
           EVP_PKEY_eq(X509_get0_pubkey(a), X509_get0_pubkey(b)) == 1;
}

/*
 * The copies of CA |ca| (same_ca) that a signer's chain on |r| is built from, as the request path builds it
 * (auth.c): the role's trust anchors and its intermediates, up-referenced (free with sk_X509_pop_free); NULL
 * without memory. A device sends its own certificate, seldom its chain: what is not here, it would have to.
 */
static STACK_OF(X509) *held_copies(const struct gw_role *r, X509 *ca)
{
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    STACK_OF(X509) *anchors = NULL, *held = sk_X509_new_null();
    int ok = sc != NULL && held != NULL && X509_STORE_CTX_init(sc, r->store, NULL, NULL) == 1;

    /* a store without a certificate of that name answers NULL, which is no error */
    if (ok)
        anchors = X509_STORE_CTX_get1_certs(sc, X509_get_subject_name(ca));
    for (int i = 0; ok && i < sk_X509_num(anchors); i++)
        if (same_ca(sk_X509_value(anchors, i), ca))
            ok = X509_add_cert(held, sk_X509_value(anchors, i), X509_ADD_FLAG_UP_REF) == 1;
    for (int i = 0; ok && i < sk_X509_num(r->untrusted); i++)
        if (same_ca(sk_X509_value(r->untrusted, i), ca))
            ok = X509_add_cert(held, sk_X509_value(r->untrusted, i), X509_ADD_FLAG_UP_REF) == 1;
    sk_X509_pop_free(anchors, X509_free);
    X509_STORE_CTX_free(sc);
    ERR_clear_error();
    if (!ok) {
        sk_X509_pop_free(held, X509_free);
        held = NULL;
    }
    return held;
}

/*
 * Warns when a signer issued by |ca|, a CA of |up| that |r|'s migration moves to, would not chain on |r|: no
 * copy of |ca| among the role's trust anchors and intermediates chains to its trust at the level the signers
 * are held to (a chain only a weak path completes, a CA signed with SHA-1 above the new CA, counts as none),
 * or the role holds no copy of it at all. The chains are checked from the role's copies, which a device's are
 * built from.
 */
static void warn_migration_ca(const struct gw_conf_ctx *pc, const struct gw_role *r,
                              const struct gw_upstream_conf *up, X509 *ca)
{
    STACK_OF(X509) *held = held_copies(r, ca);
    char name[256];
    int err = -1;

    for (int i = 0; i < sk_X509_num(held) && err != X509_V_OK; i++)
        err = chain_error(sk_X509_value(held, i), r->store, r->untrusted, GW_SIGNER_AUTH_LEVEL);
    if (held != NULL && sk_X509_num(held) == 0)
        err = chain_error(ca, r->store, r->untrusted, GW_SIGNER_AUTH_LEVEL);
    if (err > X509_V_OK)
        gw_log(GW_LOG_WARN, "config",
               "%s: $.roles.%s.migration: the CA of \"%s\" (%s) does not chain to the role's trust entries: "
               "devices it issues could not sign a kur or an rr here; add its chain to a trust entry",
               pc->name, r->name, up->name, X509_verify_cert_error_string(err));
    else if (err == X509_V_OK && sk_X509_num(held) == 0)
        gw_log(
            GW_LOG_WARN, "config",
            "%s: $.roles.%s.migration: the CA of \"%s\" (%s) is neither a trust anchor nor an intermediate "
            "of the role's trust entries: devices it issues could not sign a kur or an rr here unless they "
            "send it with each message; add it to the untrusted_file of a trust entry",
            pc->name, r->name, up->name, X509_NAME_oneline(X509_get_subject_name(ca), name, sizeof(name)));
    sk_X509_pop_free(held, X509_free);
}

/* warn_migration_ca for each CA |up| issues end-entity certificates under. */
static void warn_migration_cas(const struct gw_conf_ctx *pc, const struct gw_role *r,
                               const struct gw_upstream_conf *up)
{
    STACK_OF(X509) *cas = gw_upstream_conf_issuing_cas(up);

    for (int i = 0; i < sk_X509_num(cas); i++)
        warn_migration_ca(pc, r, up, sk_X509_value(cas, i));
    sk_X509_pop_free(cas, X509_free);
}

void gw_config_warn_migration(const struct gw_conf_ctx *pc, const struct gw_role *r)
{
    /* a role without trust entries verifies no signer, of either CA */
    if (r->migration.to == NULL || r->store == NULL)
        return;
    warn_migration_cas(pc, r, r->migration.to);
    /* a delegate that stands in for "to" (the role's upstream signs CRMF itself) issues the moved devices'
       ir, cr and kur: its CA is as new to the role as "to"'s */
    if (r->delegate != NULL && gw_upstream_delegated_for(r) == r->migration.to)
        warn_migration_cas(pc, r, r->delegate);
}

/*
 * Whether a certificate of |r| may serve as a TLS server's: its role grants serverAuth, or no
 * extendedKeyUsage at all, which is any purpose (RFC 5280 §4.2.1.12).
 */
static bool serves_tls(const struct gw_role *r)
{
    return r->ext_key_usage == 0 || (r->ext_key_usage & GW_EKU_SERVER_AUTH) != 0;
}

/* Whether a pattern of |ps| holds a '*': one without names its one subject, its CN with it. */
static bool any_wildcard(const struct gw_patterns *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        if (strchr(ps->v[i], '*') != NULL)
            return true;
    return false;
}

/*
 * allowed_subjects bounds no host name without a dot: the policy holds a CN such as "vault" to
 * allowed_dns_names alone, and X509_check_host takes it as the host of https://vault/ where the
 * certificate has no DNS SAN.
 */
static void warn_bare_host(const struct gw_conf_ctx *pc, const struct gw_role *r)
{
    if (!serves_tls(r) || !any_wildcard(&r->authz.subjects))
        return;
    gw_log(GW_LOG_WARN, "config",
           "%s: $.roles.%s.authorization: role \"%s\" may issue TLS server certificates and only "
           "allowed_subjects bounds their common name, where a '*' admits any host name without a dot "
           "(\"localhost\", \"vault\"), which TLS clients take as the host name of a certificate without DNS "
           "SANs: set allowed_common_names or allowed_dns_names (a host-name CN is held to it too) on \"%s\"",
           pc->name, r->name, r->name, r->name);
}

/*
 * Whether common-name pattern |pat| admits every host name of as many labels: each of its labels ('.'
 * apart) is all '*' ("*", "**", "*.*"), and a label that is a '*' stands for any non-empty one.
 */
static bool any_host_pattern(const char *pat)
{
    size_t stars = 0;

    for (const char *p = pat;; p++) {
        if (*p == '*') {
            stars++;
            continue;
        }
        if ((*p != '.' && *p != '\0') || stars == 0)
            return false;
        if (*p == '\0')
            return true;
        stars = 0;
    }
}

/*
 * The index of the first allowed_common_names pattern of |r| that admits any host name a client asks for
 * (any_host_pattern), or -1. With allowed_common_names a CN is held to it alone, not to allowed_dns_names: so
 * "*.*" bounds a host name in the CN no more than no list does, and "*" admits "localhost" and "vault", which
 * TLS clients take as a server's host name where the role may issue server certificates (serves_tls).
 */
static long any_host_cn(const struct gw_role *r)
{
    const struct gw_patterns *cns = &r->authz.common_names;

    for (size_t i = 0; i < cns->n; i++)
        if (any_host_pattern(cns->v[i]) && (strchr(cns->v[i], '.') != NULL || serves_tls(r)))
            return (long)i;
    return -1;
}

/*
 * A role whose allowed_common_names admits any host name (any_host_cn) warns as one without it: of the host
 * names in its CN where allowed_subjects does not bound the CN either, else as warn_bare_host does.
 */
static void warn_any_cn(const struct gw_conf_ctx *pc, const struct gw_role *r)
{
    long i = any_host_cn(r);

    if (i < 0)
        return;
    if (r->authz.subjects.n > 0) {
        warn_bare_host(pc, r);
        return;
    }
    gw_log(GW_LOG_WARN, "config",
           "%s: $.roles.%s.authorization.allowed_common_names[%ld]: \"%s\" admits any host name of as many "
           "labels, so role \"%s\" issues certificates naming any host a client asks for in the common name "
           "(which TLS clients take as the host name of a certificate without DNS SANs): name the hosts in "
           "allowed_common_names (\"device-*\", \"*.devices.example.com\") on \"%s\"",
           pc->name, r->name, i, r->authz.common_names.v[i], r->name, r->name);
}

void gw_config_warn_any_host(const struct gw_conf_ctx *pc, const struct gw_role *r)
{
    const struct gw_authz *a = &r->authz;

    warn_any_cn(pc,
                r); /* before allowed_dns_names: a CN is not held to it where allowed_common_names is set */

    /*
     * Also where the upstream copies a host-name CN into the DNS SANs (Vault), which a role without "dns"
     * in allowed_san_types then refuses: Vault copies only what its own host-name check passes, and
     * X509_check_host compares any CN with a dot ("a_b.example.org"). An allowed_subjects pattern's '*'
     * matches no '.', but it does match a host name without one (warn_bare_host).
     */
    if (a->dns_names.n > 0)
        return;
    if (a->common_names.n == 0 && a->subjects.n > 0)
        warn_bare_host(pc, r);
    if (a->common_names.n > 0 || a->subjects.n > 0) {
        /* the subject is bounded, a DNS SAN is not */
        if (r->allowed_san_types & GW_SAN_DNS)
            gw_log(
                GW_LOG_WARN, "config",
                "%s: $.roles.%s.authorization: allowed_san_types has \"dns\" but allowed_dns_names is not "
                "set, so role \"%s\" issues certificates naming any host a client asks for as a DNS SAN: set "
                "allowed_dns_names on \"%s\"",
                pc->name, r->name, r->name, r->name);
        return;
    }
    gw_log(GW_LOG_WARN, "config",
           "%s: $.roles.%s.authorization: neither allowed_dns_names nor allowed_common_names is set, so role "
           "\"%s\" issues certificates naming any host a client asks for, in the common name (which TLS "
           "clients take as the host name of a certificate without DNS SANs) or as a DNS SAN: set "
           "allowed_dns_names (a host-name CN is held to it too) or allowed_common_names on \"%s\"",
           pc->name, r->name, r->name, r->name);
}

/*
 * Whether a CA that |u| issues under chains to |store|, at no security level: a certificate it issues
 * that a weak link keeps from authenticating is no risk, but a TLS listener at OpenSSL's level 1 may
 * still admit one by subject, and a warning too many costs less than one missed.
 */
static bool issues_under(const struct gw_upstream_conf *u, X509_STORE *store, STACK_OF(X509) *untrusted)
{
    for (int i = 0; u != NULL && i < sk_X509_num(u->issuer_certs); i++)
        if (chain_error(sk_X509_value(u->issuer_certs, i), store, untrusted, 0) == X509_V_OK)
            return true;
    return false;
}

/* The upstream of |free| (main, delegate or CRMF) whose certificates |store| accepts, or NULL. */
static const struct gw_upstream_conf *trusted_upstream(const struct gw_role *free, X509_STORE *store,
                                                       STACK_OF(X509) *untrusted)
{
    const struct gw_upstream_conf *ups[] = {free->upstream, free->delegate, free->crmf_upstream};

    for (size_t i = 0; i < sizeof(ups) / sizeof(ups[0]); i++)
        if (issues_under(ups[i], store, untrusted))
            return ups[i];
    return NULL;
}

/* One subject allow-list of a role and the trust its certificates are verified against. */
struct by_subject {
    const char *key;
    bool set;
    X509_STORE *store;
    STACK_OF(X509) *untrusted;
};

/*
 * The upstream of |free| whose certificates a subject line of |by|'s device allow-list admits, or
 * NULL; the line's key into |key|. A bare line admits under the role's trust (it has at most one
 * entry), a "trust:<name>" line under that entry alone (none where the role does not trust it), and
 * a serial line by no subject.
 */
static const struct gw_upstream_conf *allowlist_upstream(const struct gw_role *free, const struct gw_role *by,
                                                         char *key, size_t keylen)
{
    bool bare = false, named[GW_MAX_ALLOWLIST_TRUST] = {false};
    const struct gw_upstream_conf *u;

    for (size_t i = 0; i < by->n_allow; i++) {
        if (by->allow[i].subject == NULL)
            continue;
        if (by->allow[i].scope < 0)
            bare = true;
        else
            named[by->allow[i].scope] = true;
    }
    if (bare && (u = trusted_upstream(free, by->store, by->untrusted)) != NULL) {
        snprintf(key, keylen, "device_allowlist");
        return u;
    }
    for (size_t s = 0; s < by->n_allow_scopes; s++) {
        if (!named[s] || (u = trusted_upstream(free, by->allow_scopes[s].store, by->untrusted)) == NULL)
            continue;
        snprintf(key, keylen, "device_allowlist, trust:%s", by->allow_scopes[s].trust_name);
        return u;
    }
    return NULL;
}

/* Warns when role |free| (no allowed_subjects) issues under a CA that |by| admits by subject. */
static void warn_pair(const struct gw_conf_ctx *pc, const struct gw_role *free, const struct gw_role *by,
                      X509_STORE *listener_store)
{
    const struct by_subject lists[] = {
        {"signer_subjects", by->authz.signer_subjects.n > 0, by->store, by->untrusted},
        {"ra_subjects", by->authz.ra_subjects.n > 0, by->store, by->untrusted},
        /* without tls_trust, any certificate a listener verified */
        {"tls_subjects", by->authz.tls_subjects.n > 0,
         by->authz.tls_store != NULL ? by->authz.tls_store : listener_store, by->authz.tls_untrusted},
    };
    char key[sizeof("device_allowlist, trust:") + GW_MAX_NAME_LEN];
    const struct gw_upstream_conf *u = NULL;

    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]) && u == NULL; i++)
        if (lists[i].set && (u = trusted_upstream(free, lists[i].store, lists[i].untrusted)) != NULL)
            snprintf(key, sizeof(key), "%s", lists[i].key);
    if (u == NULL && by->n_allow_subjects > 0)
        u = allowlist_upstream(free, by, key, sizeof(key));
    if (u == NULL)
        return;
    gw_log(GW_LOG_WARN, "config",
           "%s: $.roles.%s.authorization.allowed_subjects: unset, so role \"%s\" issues any subject a "
           "client asks for under the CA of upstream \"%s\", which role \"%s\" trusts and admits by "
           "subject (%s): a client of \"%s\" could get a certificate \"%s\" admits; set allowed_subjects "
           "on \"%s\"",
           pc->name, free->name, free->name, u->name, by->name, key, free->name, by->name, free->name);
}

/* The CAs of every listener's client_ca as loaded (config.c, check_tls), as one store; NULL if none. */
static X509_STORE *listener_anchors(const struct gw_config *cfg)
{
    STACK_OF(X509) *all = sk_X509_new_null();
    X509_STORE *store = NULL;

    for (size_t i = 0; all != NULL && i < cfg->n_listeners; i++)
        for (int k = 0; k < sk_X509_num(cfg->listeners[i].client_cas); k++) {
            X509 *x = sk_X509_value(cfg->listeners[i].client_cas, k);
            if (X509_up_ref(x) == 1 && sk_X509_push(all, x) <= 0)
                X509_free(x);
        }
    if (sk_X509_num(all) > 0)
        store = gw_pem_anchor_store(all);
    sk_X509_pop_free(all, X509_free);
    return store;
}

void gw_config_warn_free_subjects(struct gw_conf_ctx *pc, const struct gw_config *cfg)
{
    X509_STORE *listener_store = NULL;
    bool loaded = false;

    for (size_t i = 0; i < cfg->n_roles; i++) {
        if (cfg->roles[i].authz.subjects.n > 0)
            continue;
        for (size_t j = 0; j < cfg->n_roles; j++) {
            if (j == i)
                continue;
            if (!loaded && cfg->roles[j].authz.tls_subjects.n > 0 && cfg->roles[j].authz.tls_store == NULL) {
                listener_store = listener_anchors(cfg);
                loaded = true;
            }
            warn_pair(pc, &cfg->roles[i], &cfg->roles[j], listener_store);
        }
    }
    X509_STORE_free(listener_store);
    ERR_clear_error();
}

void gw_config_warn_handover(const struct gw_conf_ctx *pc, const struct gw_config *cfg)
{
    if (cfg->handover_socket == NULL || cfg->cmp.state.backend == GW_STATE_REDIS)
        return;
    gw_log(GW_LOG_WARN, "config",
           "%s: $.handover_socket: without cmp.state \"redis\" the two gateways of a hand-over keep replay "
           "caches of their own: a request one of them accepted is accepted again by the other while the "
           "predecessor drains, as by any gateway after a restart",
           pc->name);
    if (cfg->cmp.revoked_file != NULL)
        return;
    gw_log(GW_LOG_WARN, "config",
           "%s: $.handover_socket: without cmp.revoked_file (or cmp.state \"redis\") a successor takes the "
           "certificates revoked through the gateway it takes over from, before or during the hand-over, "
           "until their CA's CRL lists them: set cmp.revoked_file",
           pc->name);
}

void gw_config_fds(const struct gw_config *cfg, struct gw_config_fds *out)
{
    size_t loops = cfg->loop_threads, admin = cfg->admin.listen.port != 0, proxied = 0;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < cfg->n_listeners; i++)
        proxied |= cfg->listeners[i].n_trusted_proxies > 0;
    /* a connection past the caps is accepted before it is closed (or another evicted): one each */
    out->connections = (size_t)cfg->limits.admission.max_connections +
                       loops * (1 + admin * GW_MAX_ADMIN_CONNECTIONS + proxied * GW_MAX_PROXY_PENDING);
    out->listening = loops * (cfg->n_listeners + admin);
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        out->upstream += gw_upstream_conf_connections(&cfg->upstreams[i], cfg->workers);
    if (cfg->cmp.state.backend == GW_STATE_REDIS)
        out->redis = cfg->workers + loops + GW_FD_REDIS_THREADS;
    out->total = out->connections + out->listening + out->upstream + out->redis + GW_FD_RESERVE;
}

void gw_config_warn_fds(const struct gw_conf_ctx *pc, const struct gw_config *cfg)
{
    struct gw_config_fds n;
    struct rlimit rl;

    gw_config_fds(cfg, &n);
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= n.total)
        return;
    gw_log(GW_LOG_WARN, "config",
           "%s: $.limits.max_connections: the configuration may hold %zu files open at once (%zu "
           "connections, %zu listening sockets, %zu upstream and %zu Redis connections, %d more), above "
           "this process's hard limit of open files (RLIMIT_NOFILE) of %llu, which its soft limit cannot "
           "pass: connections beyond it fail at accept; raise LimitNOFILE (ulimit -Hn) or lower "
           "limits.max_connections",
           pc->name, n.total, n.connections, n.listening, n.upstream, n.redis, GW_FD_RESERVE,
           (unsigned long long)rl.rlim_max);
}
