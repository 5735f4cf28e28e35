/*
 * Test hooks of upstream/: only tests include this header. They put adapters that are not in
 * the table (fakes, slow or failing ones) where the engine looks for an upstream.
 */
#ifndef GW_UPSTREAM_TEST_H
#define GW_UPSTREAM_TEST_H

#include "upstream/upstream.h"
#include "upstream/upstream_int.h"

/* gw_upstream_new with adapter |ops| instead of the one |conf|'s type names. |ops| is borrowed. */
struct gw_upstream *gw_upstream_new_ops(const struct gw_upstream_conf *conf,
                                        const struct gw_upstream_ops *ops,
                                        const struct gw_upstream_signer *signer, char *err);

/* Puts |up| into |set| under its conf's name, replacing (and freeing) the one of that name, else
 * adding it. Takes |up| over on success only. 0 or GW_ERR_NOMEM / GW_ERR_INVAL. */
int gw_upstream_set_put0(struct gw_upstream_set *set, struct gw_upstream *up);

/* Gives every upstream of |set| |clock| for the dates it makes (gw_upstream_now; NULL = time()), so
 * that a test running the engine at a fixed time gets a CRL of that time. Only while no call runs. */
void gw_upstream_set_clock(struct gw_upstream_set *set, time_t (*clock)(void));

/* From now on the first |n| allocations of gw_upstream_sign_async calls (the call's copies, its
 * answer) succeed, and every one after fails, as when memory runs out; -1: none fails. */
void gw_upstream_test_fail_async_allocs(int n);

#endif
