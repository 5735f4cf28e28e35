/* One exchange's request and response (gateway/cmp/exchange.h). */
#include "gateway/cmp/exchange.h"

#include <string.h>
#include <openssl/crypto.h>

void gw_cmp_response_init(struct gw_cmp_response *rsp)
{
    memset(rsp, 0, sizeof(*rsp));
    rsp->http_status = 500;
}

void gw_cmp_response_cleanup(struct gw_cmp_response *rsp)
{
    if (rsp == NULL)
        return;
    OPENSSL_free(rsp->der);
    rsp->der = NULL;
    rsp->len = 0;
    gw_cmp_carried_free(rsp->carried);
    rsp->carried = NULL;
}
