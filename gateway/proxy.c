/* The PROXY protocol header, versions 1 (text) and 2 (binary) (proxy.h). */
#include "gateway/proxy.h"
#include "base/limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[] = "PROXY ";

#define V1_MAX 107 /* "PROXY TCP6 " + two full IPv6 addresses + two ports + CRLF */

static int invalid(const char **why, const char *reason)
{
    *why = reason;
    return GW_PROXY_INVALID;
}

/* A port: 1..5 digits, 0..65535, no leading zero. */
static bool port(const char *s, size_t len, uint16_t *out)
{
    unsigned long v = 0;

    if (len == 0 || len > 5 || (s[0] == '0' && len > 1))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    *out = (uint16_t)v;
    return v <= 65535;
}

/* "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN ...\r\n". */
static int parse_v1(const unsigned char *buf, size_t n, struct gw_proxy_hdr *out, const char **why)
{
    const char *line = (const char *)buf, *f[6];
    size_t flen[6], nf = 0, end;
    char addr[INET6_ADDRSTRLEN + 1];
    uint16_t sport, dport;
    int af;

    for (end = 0; end < n && end < V1_MAX && buf[end] != '\r'; end++)
        if (buf[end] < 0x20 || buf[end] > 0x7e)
            return invalid(why, "a version 1 header with a byte that is not printable ASCII");
    if (end == V1_MAX - 1 || end == V1_MAX)
        return invalid(why, "a version 1 header longer than 107 bytes");
    if (end + 1 >= n)
        return GW_PROXY_MORE;
    if (buf[end + 1] != '\n')
        return invalid(why, "a version 1 header not ended by CRLF");
    for (size_t i = 0; i < end && nf < 6;) { /* fields separated by one space each */
        size_t j = i;

        while (j < end && line[j] != ' ')
            j++;
        f[nf] = line + i;
        flen[nf++] = j - i;
        i = j + 1;
        if (j < end && j + 1 == end)
            return invalid(why, "a version 1 header with a trailing space");
    }
    out->len = end + 2;
    out->version = 1;
    out->has_addr = false;
    if (nf >= 2 && flen[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0)
        return GW_PROXY_DONE; /* the rest of the line is ignored (proxy-protocol.txt 2.1) */
    if (nf != 6 || f[5] + flen[5] != line + end || flen[1] != 4 ||
        (memcmp(f[1], "TCP4", 4) != 0 && memcmp(f[1], "TCP6", 4) != 0))
        return invalid(why, "a malformed version 1 header");
    af = f[1][3] == '4' ? AF_INET : AF_INET6;
    memset(&out->src, 0, sizeof(out->src));
    for (int k = 2; k <= 3; k++) {
        unsigned char a[16];

        if (flen[k] == 0 || flen[k] >= sizeof(addr))
            return invalid(why, "a version 1 header with a malformed address");
        memcpy(addr, f[k], flen[k]);
        addr[flen[k]] = '\0';
        if (inet_pton(af, addr, a) != 1)
            return invalid(why, "a version 1 header with a malformed address");
        if (k == 2 && af == AF_INET)
            memcpy(&((struct sockaddr_in *)&out->src)->sin_addr, a, 4);
        else if (k == 2)
            memcpy(&((struct sockaddr_in6 *)&out->src)->sin6_addr, a, 16);
    }
    if (!port(f[4], flen[4], &sport) || !port(f[5], flen[5], &dport))
        return invalid(why, "a version 1 header with a malformed port");
    if (af == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->src;

        s4->sin_family = AF_INET;
        s4->sin_port = htons(sport);
        out->src_len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->src;

        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(sport);
        out->src_len = sizeof(*s6);
    }
    out->has_addr = true;
    return GW_PROXY_DONE;
}

/* 12-byte signature, version and command, family and protocol, length, addresses, TLVs. */
static int parse_v2(const unsigned char *buf, size_t n, struct gw_proxy_hdr *out, const char **why)
{
    size_t len;
    unsigned cmd, fam, proto;

    if (n < 16)
        return GW_PROXY_MORE;
    if ((buf[12] >> 4) != 2)
        return invalid(why, "a version 2 header of another version");
    cmd = buf[12] & 0x0f;
    fam = buf[13] >> 4;
    proto = buf[13] & 0x0f;
    len = (size_t)buf[14] << 8 | buf[15];
    if (cmd > 1)
        return invalid(why, "a version 2 header with an unknown command");
    if (16 + len > GW_MAX_PROXY_HEADER)
        return invalid(why, "a version 2 header longer than GW_MAX_PROXY_HEADER");
    if (n < 16 + len)
        return GW_PROXY_MORE;
    out->len = 16 + len;
    out->version = 2;
    out->has_addr = false;
    if (cmd == 0 || fam == 0) /* LOCAL (the balancer's own connection), or UNSPEC: its address stands */
        return GW_PROXY_DONE;
    if (proto != 1 || (fam != 1 && fam != 2))
        return invalid(why, "a version 2 header for a datagram or Unix socket source");
    memset(&out->src, 0, sizeof(out->src));
    if (fam == 1) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->src;

        if (len < 12)
            return invalid(why, "a version 2 header too short for its IPv4 addresses");
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, buf + 16, 4);
        memcpy(&s4->sin_port, buf + 24, 2);
        out->src_len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->src;

        if (len < 36)
            return invalid(why, "a version 2 header too short for its IPv6 addresses");
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, buf + 16, 16);
        memcpy(&s6->sin6_port, buf + 48, 2);
        out->src_len = sizeof(*s6);
    }
    out->has_addr = true;
    return GW_PROXY_DONE;
}

int gw_proxy_parse(const unsigned char *buf, size_t n, struct gw_proxy_hdr *out, const char **why)
{
    size_t k;

    *why = NULL;
    /* which version: as far as the bytes there allow telling */
    k = n < sizeof(v2_sig) ? n : sizeof(v2_sig);
    if (n > 0 && memcmp(buf, v2_sig, k) == 0)
        return k < sizeof(v2_sig) ? GW_PROXY_MORE : parse_v2(buf, n, out, why);
    k = n < sizeof(v1_sig) - 1 ? n : sizeof(v1_sig) - 1;
    if (n > 0 && memcmp(buf, v1_sig, k) == 0)
        return k < sizeof(v1_sig) - 1 ? GW_PROXY_MORE : parse_v1(buf, n, out, why);
    return n == 0 ? GW_PROXY_MORE : invalid(why, "no PROXY protocol header");
}
