/*
 * `cmpgw report`: what the audit log says, per role and upstream (docs/migration.md, "Watching a
 * migration"): requests handed to each upstream, certificates issued and revoked, refusals by
 * failInfo, shadow checks by result, and for a migrating role how many devices were last issued by
 * its new CA and how many are still on the old one.
 */
#ifndef GW_REPORT_H
#define GW_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "gateway/config.h"

struct gw_report_opts {
    const char *audit_file; /* NULL: the configuration's audit log */
    const char *since;      /* NULL, or an ISO 8601 UTC time (prefix): records from then on */
    const char *role;       /* NULL, or only this role */
    bool json;
};

/* Whether |since| is a time `--since` takes, YYYY-MM-DD[THH[:MM[:SS]]][Z], and one that exists. */
bool gw_report_since_ok(const char *since);

/* What gw_report_run returns when neither the configuration nor the log knows the role of --role. */
#define GW_REPORT_UNKNOWN_ROLE 2

/*
 * gw_report_run reads the audit log and prints the report on |out|. 0 when every line was read;
 * 1 when the log cannot be opened, or some lines were not audit records (named on stderr; the
 * report covers the others); GW_REPORT_UNKNOWN_ROLE, with nothing on |out|, when |o->role| is no
 * role of the configuration's nor of any record (named on stderr, with the roles they know).
 */
int gw_report_run(const struct gw_config *cfg, const struct gw_report_opts *o, FILE *out);

#endif
