/*
 * `cmpgw inventory`: the certificates the local issuers recorded in their stores (docs/design.md D5).
 */
#ifndef GW_INVENTORY_H
#define GW_INVENTORY_H

#include "gateway/config.h"

/* What gw_inventory_run returns when |name| names no upstream of the configuration, or one without a store.
 */
#define GW_INVENTORY_UNKNOWN_UPSTREAM 2

/*
 * gw_inventory_run prints what the local issuers of |cfg| with a store recorded (|name|: that upstream
 * alone; NULL: every one) on stdout, as one tab-separated table sorted by notBefore. 0 when every record
 * was read; 1 when a store or a record in it could not be (on stderr; the rest is still printed);
 * GW_INVENTORY_UNKNOWN_UPSTREAM, with nothing on stdout, when |name| names no local issuer with a store
 * (on stderr).
 */
int gw_inventory_run(const struct gw_config *cfg, const char *name);

#endif
