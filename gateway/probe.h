/*
 * The upstreams' health probes: one thread that asks each upstream with a "probe_interval" whether
 * it serves, as often as that says, and records the answer in the upstream (upstream/upstream.h),
 * where /readyz, the metrics and fail_fast read it. The same thread makes the engine's test signatures
 * with the signer's key (gw_cmp_engine_probe_signer) and, while the audit log's last fsync failed, starts
 * one fsync a tick on a thread of its own, not waiting for it (gw_cmp_engine_probe_audit), both of which
 * /readyz reads too.
 */
#ifndef GW_PROBE_H
#define GW_PROBE_H

#include "gateway/config.h"
#include "upstream/upstream.h"

struct gw_cmp_engine;
struct gw_prober;

/* gw_prober_start probes every upstream of |cfg| in |ups| once now, then on its interval, and the
 * signer of |engine|, on a thread of its own. All three are borrowed. NULL with |err| when the thread
 * cannot start. */
struct gw_prober *gw_prober_start(const struct gw_config *cfg, struct gw_upstream_set *ups,
                                  struct gw_cmp_engine *engine, char *err);

/* gw_prober_stop ends the thread: an upstream's probe in progress is cut short, GW_UPSTREAM_END_CHECK_MS
 * later at most, and records nothing; a test signature or audit fsync in progress is waited for. NULL-safe.
 */
void gw_prober_stop(struct gw_prober *p);

#endif
