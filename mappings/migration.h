/*
 * Staged migration of a role from one upstream CA to another (docs/migration.md): which devices
 * move (the cohort), and in which mode. Pure: no I/O once the configuration is loaded.
 *
 *   "migration": {"name": "...", "from": "<upstream>", "to": "<upstream>", "mode": "off" | "shadow" | "live",
 *                 "cohort": {"allowlist": FILE} | {"percent": N, "by": "signer_subject" | "subject"}}
 *
 * The percentage cohort is a stable hash, the same on every instance and release: a device is in
 * it when the first 8 bytes of SHA-256(name || 0x00 || key), big-endian, mod 10000 are below
 * percent x 100 (at 100, every device, whatever its key). A device never flips back and forth, and
 * the 10 % cohort is inside the 20 % one.
 */
#ifndef GW_MIGRATION_H
#define GW_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/conf.h"

struct gw_upstream_conf;

enum gw_migration_mode {
    GW_MIGRATION_OFF = 0, /* every request is issued by "from" (also: a rollback) */
    GW_MIGRATION_SHADOW,  /* issued by "from"; the cohort's also checked against "to", the difference audited
                           */
    GW_MIGRATION_LIVE,    /* the cohort is issued by "to", the others by "from" */
};

enum gw_cohort_by {
    GW_COHORT_SIGNER_SUBJECT = 0, /* the CMP signer's subject (a kur's: the old certificate's) */
    GW_COHORT_SUBJECT,            /* the requested subject (a kur's: the old certificate's) */
};

/* "cohort": by allow-list or by percent. */
struct gw_cohort {
    char *allowlist_file; /* one-line subjects ("/O=.../CN=..."), '#' comments; read at (re)load */
    char **allow;         /* its entries, sorted */
    size_t n_allow;
    uint32_t percent; /* 0..100, without an allow-list */
    enum gw_cohort_by by;
};

struct gw_migration {
    char *name; /* "name": hashed into the cohort; the role's name when absent (mappings/role.c) */
    char *from_name, *to_name;
    const struct gw_upstream_conf *from, *to; /* resolved (upstream/conf.c); from is the role's upstream */
    enum gw_migration_mode mode;
    struct gw_cohort cohort;
};

/* The "migration" object of a role (its "from" must be the role's "upstream": mappings/role.c). */
extern const struct gw_conf_obj gw_migration_conf_def;

/* Whether the role has a "migration" at all. */
static inline bool gw_migration_configured(const struct gw_migration *m)
{
    return m->to_name != NULL;
}

/* Whether the device named |key| (a one-line subject; NULL or "" for none) is in |m|'s cohort: at 100 percent
 * every device is, else one without a key is in none. */
bool gw_migration_in_cohort(const struct gw_migration *m, const char *key);

void gw_migration_cleanup(struct gw_migration *m);

#endif
