/* The cfssl adapter: placeholder until it lands (see upstream/upstream.h). */
#include "../gateway/err.h"
#include "upstream.h"

static int cfssl_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done, void *arg)
{
    (void)up, (void)req, (void)done, (void)arg;
    return GW_ERR_INVAL;
}

const struct gw_upstream_ops gw_upstream_cfssl_ops = {
    .dialect = "cfssl",
    .sign = cfssl_sign,
};
