/*
 * CIDR ranges ("10.0.0.0/8", "fd00::/8"): checked when a configuration is read, matched against
 * an address (a SAN's IP octets, a peer's socket address). Pure.
 */
#ifndef GW_CIDR_H
#define GW_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Whether |s| (|len| bytes, no NUL inside) is an address, "/", a prefix length (0..32 or 0..128, no
 * leading zero), with no host bits set (a likely typo). */
bool gw_cidr_valid(const char *s, size_t len);

/* Whether |ip| (4 or 16 octets) is within |cidr| ("10.0.0.0/8", "::1/128", or a bare address). An
 * IPv4 address is not within an IPv6 range nor the other way round. */
bool gw_cidr_contains(const char *cidr, const unsigned char *ip, size_t iplen);

/* The same for a socket address; an IPv4-mapped IPv6 address ("::ffff:127.0.0.1", a dual-stack
 * listener's) counts as its IPv4 address. False for other families. */
bool gw_cidr_contains_addr(const char *cidr, const struct sockaddr *sa);

/* |sa| as logs write a peer: "192.0.2.1:443", "[2001:db8::1]:443"; "" for other families. */
void gw_sockaddr_string(const struct sockaddr *sa, char *out, size_t cap);

/* Whether the numeric address |addr| ("127.0.0.1", "::1") is a loopback one (127.0.0.0/8, ::1). */
bool gw_cidr_loopback(const char *addr);

#endif
