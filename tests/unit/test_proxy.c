/* Unit tests for gateway/proxy.c: PROXY protocol headers, versions 1 and 2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include "gateway/proxy.h"

static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static int parse(const void *buf, size_t n, struct gw_proxy_hdr *h)
{
    const char *why = NULL;
    int rc = gw_proxy_parse(buf, n, h, &why);

    assert_true(rc == GW_PROXY_INVALID ? why != NULL : why == NULL);
    return rc;
}

static const char *addr_of(const struct gw_proxy_hdr *h, char *buf, size_t cap, unsigned *port)
{
    if (h->src.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)&h->src;
        *port = ntohs(s->sin_port);
        return inet_ntop(AF_INET, &s->sin_addr, buf, (socklen_t)cap);
    }
    const struct sockaddr_in6 *s = (const void *)&h->src;
    *port = ntohs(s->sin6_port);
    return inet_ntop(AF_INET6, &s->sin6_addr, buf, (socklen_t)cap);
}

static void test_v1(void **state)
{
    static const char tcp4[] = "PROXY TCP4 192.0.2.7 127.0.0.1 40001 8443\r\n\x16\x03\x01";
    static const char tcp6[] = "PROXY TCP6 2001:db8::1 ::1 65535 443\r\n";
    struct gw_proxy_hdr h;
    char a[64];
    unsigned port;

    (void)state;
    assert_int_equal(parse(tcp4, sizeof(tcp4) - 1, &h), GW_PROXY_DONE);
    assert_int_equal(h.len, sizeof(tcp4) - 1 - 3); /* the TLS record after it is not consumed */
    assert_int_equal(h.version, 1);
    assert_true(h.has_addr);
    assert_string_equal(addr_of(&h, a, sizeof(a), &port), "192.0.2.7");
    assert_int_equal(port, 40001);
    assert_int_equal(parse(tcp6, sizeof(tcp6) - 1, &h), GW_PROXY_DONE);
    assert_string_equal(addr_of(&h, a, sizeof(a), &port), "2001:db8::1");
    assert_int_equal(port, 65535);
    assert_int_equal(parse("PROXY UNKNOWN\r\n", 15, &h), GW_PROXY_DONE);
    assert_false(h.has_addr);
    assert_int_equal(h.len, 15);
    assert_int_equal(parse("PROXY UNKNOWN ffff::1 ::1 1 2\r\n", 31, &h), GW_PROXY_DONE);
    assert_false(h.has_addr);
    /* every prefix of a header is a valid beginning */
    for (size_t n = 0; n < sizeof(tcp6) - 1; n++)
        assert_int_equal(parse(tcp6, n, &h), GW_PROXY_MORE);
}

static void test_v1_malformed(void **state)
{
    static const char *const bad[] = {
        "PROXY TCP4 192.0.2.7 127.0.0.1 40001 8443\n",     /* LF without CR */
        "PROXY TCP4 192.0.2.7 127.0.0.1 40001 8443\rX",    /* CR without LF */
        "PROXY TCP4 192.0.2.7 127.0.0.1 40001\r\n",        /* a field short */
        "PROXY TCP4 192.0.2.7 127.0.0.1 40001 8443 1\r\n", /* a field more */
        "PROXY TCP4  192.0.2.7 127.0.0.1 40001 8443\r\n",  /* two spaces */
        "PROXY TCP4 192.0.2.7 127.0.0.1 40001 8443 \r\n",  /* trailing space */
        "PROXY TCP4 2001:db8::1 127.0.0.1 40001 8443\r\n", /* IPv6 under TCP4 */
        "PROXY TCP6 192.0.2.7 ::1 40001 8443\r\n",         /* IPv4 under TCP6 */
        "PROXY TCP4 192.0.2.256 127.0.0.1 40001 8443\r\n",
        "PROXY TCP4 192.0.2.7 127.0.0.1 65536 8443\r\n",
        "PROXY TCP4 192.0.2.7 127.0.0.1 040001 8443\r\n",
        "PROXY TCP4 192.0.2.7 127.0.0.1 -1 8443\r\n",
        "PROXY UDP4 192.0.2.7 127.0.0.1 40001 8443\r\n",
        "PROXY\r\n",
        "proxy TCP4 192.0.2.7 127.0.0.1 40001 8443\r\n",
        "GET / HTTP/1.1\r\n",
        "\x16\x03\x01\x02\x00",
    };
    char longline[200];
    struct gw_proxy_hdr h;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], strlen(bad[i]), &h) != GW_PROXY_INVALID)
            fail_msg("accepted: %s", bad[i]);
    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "PROXY UNKNOWN ", 14);
    assert_int_equal(parse(longline, sizeof(longline), &h), GW_PROXY_INVALID);
}

/* A version 2 header: |cmd| 0 LOCAL / 1 PROXY, |fam| family and protocol byte, |body| after it. */
static size_t v2(unsigned char *out, unsigned cmd, unsigned fam, const unsigned char *body, size_t len)
{
    memcpy(out, sig, 12);
    out[12] = (unsigned char)(0x20 | cmd);
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(len >> 8);
    out[15] = (unsigned char)len;
    memcpy(out + 16, body, len);
    return 16 + len;
}

static void test_v2(void **state)
{
    /* src 198.51.100.9:5000, dst 127.0.0.1:8443, then a TLV (type 0x04 NOOP, 3 bytes) */
    static const unsigned char in4[] = {198,  51,   100,  9,    127, 0, 0, 1, 0x13,
                                        0x88, 0x20, 0xfb, 0x04, 0,   3, 1, 2, 3};
    unsigned char in6[36] = {0x20, 0x01, 0x0d, 0xb8}, buf[2048];
    struct gw_proxy_hdr h;
    char a[64];
    unsigned port;
    size_t n;

    (void)state;
    n = v2(buf, 1, 0x11, in4, sizeof(in4));
    buf[n] = 0x16; /* the TLS record that follows */
    assert_int_equal(parse(buf, n + 1, &h), GW_PROXY_DONE);
    assert_int_equal(h.len, n);
    assert_int_equal(h.version, 2);
    assert_true(h.has_addr);
    assert_string_equal(addr_of(&h, a, sizeof(a), &port), "198.51.100.9");
    assert_int_equal(port, 5000);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(parse(buf, k, &h), GW_PROXY_MORE);
    in6[15] = 1;
    in6[48 - 16] = 0x01; /* port 0x0102 */
    in6[49 - 16] = 0x02;
    n = v2(buf, 1, 0x21, in6, sizeof(in6));
    assert_int_equal(parse(buf, n, &h), GW_PROXY_DONE);
    assert_string_equal(addr_of(&h, a, sizeof(a), &port), "2001:db8::1");
    assert_int_equal(port, 0x0102);
    /* LOCAL: the balancer's own connection (a health check), whatever the family says */
    n = v2(buf, 0, 0x11, in4, 12);
    assert_int_equal(parse(buf, n, &h), GW_PROXY_DONE);
    assert_false(h.has_addr);
    n = v2(buf, 1, 0x00, in4, 0); /* PROXY, UNSPEC */
    assert_int_equal(parse(buf, n, &h), GW_PROXY_DONE);
    assert_false(h.has_addr);
}

static void test_v2_malformed(void **state)
{
    static const unsigned char in4[12] = {198, 51, 100, 9, 127, 0, 0, 1, 0x13, 0x88, 0x20, 0xfb};
    unsigned char buf[2048] = {0};
    struct gw_proxy_hdr h;
    size_t n;

    (void)state;
    n = v2(buf, 1, 0x11, in4, 11); /* too short for IPv4 */
    assert_int_equal(parse(buf, n, &h), GW_PROXY_INVALID);
    n = v2(buf, 1, 0x21, in4, 12); /* too short for IPv6 */
    assert_int_equal(parse(buf, n, &h), GW_PROXY_INVALID);
    n = v2(buf, 1, 0x12, in4, 12); /* UDP */
    assert_int_equal(parse(buf, n, &h), GW_PROXY_INVALID);
    n = v2(buf, 1, 0x31, in4, 12); /* Unix socket */
    assert_int_equal(parse(buf, n, &h), GW_PROXY_INVALID);
    n = v2(buf, 2, 0x11, in4, 12); /* unknown command */
    assert_int_equal(parse(buf, n, &h), GW_PROXY_INVALID);
    n = v2(buf, 1, 0x11, in4, 12);
    buf[12] = 0x11; /* version 1 in a version 2 header */
    assert_int_equal(parse(buf, n, &h), GW_PROXY_INVALID);
    memcpy(buf, sig, 12); /* a length beyond the cap is refused before it is waited for */
    buf[12] = 0x21;
    buf[13] = 0x11;
    buf[14] = 0xff;
    buf[15] = 0xff;
    assert_int_equal(parse(buf, 16, &h), GW_PROXY_INVALID);
    buf[5] ^= 1; /* a damaged signature */
    assert_int_equal(parse(buf, 16, &h), GW_PROXY_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1),
        cmocka_unit_test(test_v1_malformed),
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_v2_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
