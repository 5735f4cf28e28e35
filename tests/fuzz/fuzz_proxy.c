/*
 * fuzz_proxy: the input is the first bytes a trusted load balancer sends on a connection, for
 * gw_proxy_parse. Besides the sanitizers, an answer must keep the promises of gateway/proxy.h:
 * a header is no longer than the input and GW_MAX_PROXY_HEADER, its address is IPv4 or IPv6 when
 * it has one; a refusal says why; and every prefix of an accepted header is a valid beginning.
 */
#include "tests/fuzz/fuzz.h"

#include <netinet/in.h>

#include "gateway/proxy.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_proxy_hdr h;
    const char *why = NULL;
    int rc = gw_proxy_parse(data, size, &h, &why);

    if (rc == GW_PROXY_INVALID) {
        if (why == NULL || why[0] == '\0')
            fuzz_die("refused without a reason");
        return 0;
    }
    if (rc == GW_PROXY_MORE)
        return 0;
    if (rc != GW_PROXY_DONE || h.len == 0 || h.len > size || h.len > GW_MAX_PROXY_HEADER)
        fuzz_die("a header of %zu bytes from %zu (rc %d)", h.len, size, rc);
    if (h.has_addr && !((h.src.ss_family == AF_INET && h.src_len == sizeof(struct sockaddr_in)) ||
                        (h.src.ss_family == AF_INET6 && h.src_len == sizeof(struct sockaddr_in6))))
        fuzz_die("an address of family %d, length %u", h.src.ss_family, (unsigned)h.src_len);
    for (size_t n = 0; n < h.len; n++)
        if (gw_proxy_parse(data, n, &h, &why) != GW_PROXY_MORE)
            fuzz_die("the prefix of %zu bytes of a %zu-byte header is not a valid beginning", n, h.len);
    return 0;
}
