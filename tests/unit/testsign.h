/*
 * gw_upstream_sign_wait for the unit tests of upstreams: its own bound is the upstream's timeout, part of
 * what they test; the test bounds it too (tu_run_within). Include after testutil.h.
 */
#ifndef GW_TESTSIGN_H
#define GW_TESTSIGN_H

#include "upstream/upstream.h"

#define TU_SIGN_WAIT_S 30 /* far past any upstream timeout of a test (a loaded sanitizer build is slow) */

/* gw_upstream_sign_wait's arguments, for tu_run_within. */
struct tu_sign_wait {
    struct gw_upstream *up;
    const struct gw_sign_req *req;
    struct gw_sign_result *out;
};

static inline void tu_sign_wait_run(void *arg)
{
    struct tu_sign_wait *w = arg;

    gw_upstream_sign_wait(w->up, w->req, w->out);
}

/* gw_upstream_sign_wait(|up|, |req|, |out|), waited for at most TU_SIGN_WAIT_S. */
static inline void tu_sign_wait(struct gw_upstream *up, const struct gw_sign_req *req,
                                struct gw_sign_result *out)
{
    struct tu_sign_wait w = {up, req, out};

    tu_run_within(tu_sign_wait_run, &w, TU_SIGN_WAIT_S,
                  "gw_upstream_sign_wait did not return within TU_SIGN_WAIT_S");
}

#endif
