/* CIDR ranges (cidr.h). */
#include "base/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Digits of a prefix length, 0..|max|, no sign, no leading zero. */
static bool prefix_len(const char *s, size_t len, unsigned max, unsigned *out)
{
    unsigned n = 0;

    if (len == 0 || len > 3 || (s[0] == '0' && len > 1))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        n = n * 10 + (unsigned)(s[i] - '0');
    }
    *out = n;
    return n <= max;
}

/* |s| (|len| bytes) split at "/": the network's octets (4 or 16) and its prefix length; a bare
 * address when |bare_ok| (the whole address). */
static bool parse(const char *s, size_t len, bool bare_ok, unsigned char net[16], size_t *alen,
                  unsigned *prefix)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = memchr(s, '/', len);
    size_t hl = slash != NULL ? (size_t)(slash - s) : len;

    if (hl == 0 || hl >= sizeof(host) || memchr(s, '\0', len) != NULL || (slash == NULL && !bare_ok))
        return false;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, net) == 1)
        *alen = 4;
    else if (inet_pton(AF_INET6, host, net) == 1)
        *alen = 16;
    else
        return false;
    if (slash == NULL) {
        *prefix = (unsigned)*alen * 8;
        return true;
    }
    return prefix_len(slash + 1, len - hl - 1, (unsigned)*alen * 8, prefix);
}

bool gw_cidr_valid(const char *s, size_t len)
{
    unsigned char net[16];
    size_t alen;
    unsigned prefix;

    if (!parse(s, len, false, net, &alen, &prefix))
        return false;
    for (size_t i = prefix; i < alen * 8; i++)
        if ((net[i / 8] & (0x80u >> (i % 8))) != 0)
            return false;
    return true;
}

bool gw_cidr_contains(const char *cidr, const unsigned char *ip, size_t iplen)
{
    unsigned char net[16];
    size_t alen, full;
    unsigned prefix, rem;

    if (!parse(cidr, strlen(cidr), true, net, &alen, &prefix) || alen != iplen)
        return false;
    full = prefix / 8;
    rem = prefix % 8;
    if (memcmp(ip, net, full) != 0)
        return false;
    return rem == 0 || ((ip[full] ^ net[full]) & (0xff00u >> rem) & 0xffu) == 0;
}

bool gw_cidr_contains_addr(const char *cidr, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return gw_cidr_contains(cidr, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr, 4);
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        if (IN6_IS_ADDR_V4MAPPED(a))
            return gw_cidr_contains(cidr, a->s6_addr + 12, 4);
        return gw_cidr_contains(cidr, a->s6_addr, 16);
    }
    return false;
}

void gw_sockaddr_string(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "";

    out[0] = '\0';
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(out, cap, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
    }
}

bool gw_cidr_loopback(const char *addr)
{
    struct in6_addr a6;
    struct in_addr a4;

    return (inet_pton(AF_INET, addr, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
           (inet_pton(AF_INET6, addr, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
}
