/*
 * The PROXY protocol (haproxy's proxy-protocol.txt, versions 1 and 2): the header an L4 load
 * balancer puts before a connection's first byte to pass on the client's address. Parsed only on
 * connections from a listener's "trusted_proxies" (listener.c); anyone else could claim any
 * address. Pure: a buffer in, the header's length and the client's address out.
 */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct gw_proxy_hdr {
    size_t len;                  /* bytes the header takes: consume them before TLS */
    int version;                 /* 1 or 2 */
    bool has_addr;               /* false: LOCAL (the balancer's own health check) or UNKNOWN/UNSPEC */
    struct sockaddr_storage src; /* the client's address and port, when has_addr */
    socklen_t src_len;
};

enum { GW_PROXY_INVALID = -1, GW_PROXY_MORE = 0, GW_PROXY_DONE = 1 };

/*
 * gw_proxy_parse reads a header at the start of |buf| (|n| bytes so far): GW_PROXY_DONE with |out|
 * filled, GW_PROXY_MORE when what is there is a valid beginning, or GW_PROXY_INVALID with a
 * static reason in |*why| (not a header, malformed, longer than GW_MAX_PROXY_HEADER, a datagram
 * or Unix socket source).
 */
int gw_proxy_parse(const unsigned char *buf, size_t n, struct gw_proxy_hdr *out, const char **why);

#endif
