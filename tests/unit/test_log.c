/*
 * Logs: JSON escaping, hex, the error-name table, and the lines gw_log/gw_log_kv write (parsed
 * back with json-c, so a line that is not valid JSON fails here).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/limits.h"
#include "base/log.h"

struct esc_case {
    const char *in;
    size_t cap;
    const char *out;
};

static const struct esc_case esc_cases[] = {
    {"plain", 64, "plain"},
    {"", 64, ""},
    {"a\"b", 64, "a\\\"b"},
    {"a\\b", 64, "a\\\\b"},
    {"l1\nl2\r\t", 64, "l1\\nl2\\r\\t"},
    {"\x01\x1f\x7f", 64, "\\u0001\\u001f\\u007f"},
    {"caf\xc3\xa9", 64, "caf\xc3\xa9"}, /* UTF-8 passes through */
    /* a byte that is not part of valid UTF-8 is U+FFFD, written as an escape, so that every line is
       UTF-8 (RFC 8259 8.1): a strict reader (journald, a log shipper) would otherwise drop or blob it */
    {"\xff\xfe", 64, "\\ufffd\\ufffd"},
    {"a\x80"
     "b",
     64, "a\\ufffdb"},                                        /* a lone continuation byte */
    {"\xc0\xaf", 64, "\\ufffd\\ufffd"},                       /* an overlong '/' */
    {"\xe0\x80\xaf", 64, "\\ufffd\\ufffd\\ufffd"},            /* an overlong, 3 bytes */
    {"\xed\xa0\x80", 64, "\\ufffd\\ufffd\\ufffd"},            /* a UTF-16 surrogate */
    {"\xf4\x90\x80\x80", 64, "\\ufffd\\ufffd\\ufffd\\ufffd"}, /* past U+10FFFF */
    {"\xf8\x88\x80\x80\x80", 64, "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd"},
    {"ab\xc3", 64, "ab\\ufffd"}, /* a sequence the string ends in */
    {"\xc3z", 64, "\\ufffdz"},   /* one another byte interrupts */
    {"\xe2\x82z", 64, "\\ufffd\\ufffdz"},
    {"\xed\x9f\xbf\xee\x80\x80", 64, "\xed\x9f\xbf\xee\x80\x80"}, /* U+D7FF, U+E000 */
    {"\xf4\x8f\xbf\xbf", 64, "\xf4\x8f\xbf\xbf"},                 /* U+10FFFF */
    {"a\xff", 7, "a"},                                            /* \ufffd needs 6 */
    {"a\xff", 8, "a\\ufffd"},
    {"/</script>", 64, "/</script>"}, /* '/' needs no escape */
    /* the edges of printable ASCII, which stands for itself: space and '~' in, DEL and 0x1f out */
    {" ~\x7f\x1f!", 64, " ~\\u007f\\u001f!"},
    /* truncation: |cap| counts the NUL */
    {"abcdef", 4, "abc"},
    {"abc", 4, "abc"},
    {"abcd", 4, "abc"},
    {"anything", 1, ""},
    {"ab\"c", 4, "ab"}, /* \" does not fit whole: dropped, not split */
    {"ab\"c", 5, "ab\\\""},
    {"a\x01", 7, "a"}, /* \u0001 needs 6 */
    {"a\x01", 8, "a\\u0001"},
    {"ab\xc3\xa9", 4, "ab"},   /* a 2-byte sequence is not cut in half */
    {"a\xe2\x82\xac", 4, "a"}, /* nor a 3-byte one */
    {"a\xe2\x82\xac", 5, "a\xe2\x82\xac"},
    {"\xf0\x9f\x98\x80z", 5, "\xf0\x9f\x98\x80"},
    {"\xf0\x9f\x98\x80z", 4, ""},
    /* bidirectional controls, valid UTF-8, are replaced whole: U+202E, U+2066, U+2069, U+200F, U+061C */
    {"a\xe2\x80\xae"
     "b",
     64, "a\\ufffdb"},
    {"\xe2\x81\xa6x\xe2\x81\xa9\xe2\x80\x8f\xd8\x9c", 64, "\\ufffdx\\ufffd\\ufffd\\ufffd"},
    {"\xe2\x80\xaf\xe2\x81\xa5\xd8\x9b", 64, "\xe2\x80\xaf\xe2\x81\xa5\xd8\x9b"}, /* their neighbours */
    {"a\xe2\x80\xae", 7, "a"},
    /* so are C1 controls: U+009B (a terminal's CSI), U+0085, U+0080; not U+00A0 after them */
    {"\xc2\x9b"
     "2J\xc2\x85\xc2\x80\xc2\xa0",
     64, "\\ufffd2J\\ufffd\\ufffd\xc2\xa0"},
};

static void test_escape(void **state)
{
    char buf[128];
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
        const struct esc_case *c = &esc_cases[i];
        memset(buf, 'Z', sizeof(buf));
        n = gw_json_escape(buf, c->cap, c->in);
        if (strcmp(buf, c->out) != 0 || n != strlen(c->out))
            fail_msg("case %zu: got \"%s\" (%zu), want \"%s\"", i, buf, n, c->out);
        assert_int_equal(buf[c->cap], 'Z'); /* nothing written past |cap| */
    }
    /* cap 0 writes nothing at all */
    buf[0] = 'Z';
    assert_int_equal(gw_json_escape(buf, 0, "abc"), 0);
    assert_int_equal(buf[0], 'Z');
    /* with a length: a NUL inside is \u0000, what follows it is escaped as the rest */
    n = gw_json_escape_n(buf, sizeof(buf), "a\0b\xc2\x9b\xe2\x80\xae\xe2\x80\xa8\xff\"", 13);
    assert_string_equal(buf, "a\\u0000b\\ufffd\\ufffd\\ufffd\\ufffd\\\"");
    assert_int_equal(n, strlen(buf));
}

/* |text| parsed as JSON by a reader that refuses invalid UTF-8; NULL if it does not parse. */
static struct json_object *parse_strict(const char *text)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o;

    assert_non_null(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, text, (int)strlen(text));
    if (o != NULL && json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

/* Every byte from 0x80 up, alone or before any other byte, escapes to a string a strict reader takes. */
static void test_escape_high_bytes(void **state)
{
    char in[4], esc[32], out[40];
    struct json_object *o;

    (void)state;
    for (int hi = 0x80; hi < 0x100; hi++) {
        for (int next = 0; next < 0x100; next++) {
            in[0] = (char)hi;
            in[1] = (char)next; /* 0: |hi| alone */
            in[2] = 'z';
            in[3] = '\0';
            gw_json_escape(esc, sizeof(esc), in);
            snprintf(out, sizeof(out), "\"%s\"", esc);
            if ((o = parse_strict(out)) == NULL)
                fail_msg("bytes %02x %02x: %s is not valid JSON in UTF-8", hi, next, out);
            json_object_put(o);
        }
    }
}

/* Well-formed UTF-8 stays as it is; any other byte from 0x80 up becomes '?', a cut sequence included. */
static void test_utf8_scrub(void **state)
{
    static const char *const cases[][2] = {
        /* in, out */
        {"plain", "plain"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91"},
        {"cut \xc3", "cut ?"},
        {"cut \xe2\x82 (HTTP 400)", "cut ?? (HTTP 400)"},
        {"overlong \xc0\xaf, surrogate \xed\xa0\x80", "overlong ??, surrogate ???"},
        {"lone \x80\xbf", "lone ??"},
        /* a bidirectional control is one '?': U+202E, U+202A, U+2066..U+2069, U+200E, U+200F, U+061C */
        {"exe.\xe2\x80\xaetxt", "exe.?txt"},
        {"\xe2\x80\xaa\xe2\x81\xa6\xe2\x81\xa7\xe2\x81\xa8\xe2\x81\xa9|\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c",
         "?????|???"},
        {"U+202F \xe2\x80\xaf, U+2065 \xe2\x81\xa5", "U+202F \xe2\x80\xaf, U+2065 \xe2\x81\xa5"},
        /* a C1 control too: U+009B (a terminal's CSI), U+009F; not U+00A0 */
        {"\xc2\x9b"
         "31m\xc2\x9f\xc2\xa0",
         "?31m?\xc2\xa0"},
        /* and an ASCII control: a statusString has no escapes */
        {"two\nlines\x1b[2J\ttab\x7f", "two?lines?[2J?tab?"},
    };
    char buf[64];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(buf, sizeof(buf), "%s", cases[i][0]);
        gw_utf8_scrub(buf);
        assert_string_equal(buf, cases[i][1]);
    }
}

/*
 * gw_text_escape: plain text of a table or an HTTP error line. A C1 control, a bidirectional override,
 * U+2028 and a byte not UTF-8 each become U+FFFD itself; ASCII controls, a NUL inside the text and the
 * backslash read as in JSON; '"' stays; a cut never splits an escape or a character.
 */
static void test_text_escape(void **state)
{
    static const struct {
        const char *in;
        size_t len, cap;
        const char *out;
    } cases[] = {
#define T(in, cap, out) {in, sizeof(in) - 1, cap, out}
        T("plain \"quoted\"", 64, "plain \"quoted\""),
        T("a\xc2\x9b"
          "31m\xe2\x80\xae"
          "gpj.exe\xe2\x80\xa8"
          "b\xff"
          "c",
          64,
          "a\xef\xbf\xbd"
          "31m\xef\xbf\xbd"
          "gpj.exe\xef\xbf\xbd"
          "b\xef\xbf\xbd"
          "c"),
        T("tab\tnl\nesc\x1b[2J del\x7f", 64, "tab\\tnl\\nesc\\u001b[2J del\\u007f"),
        T("back\\slash", 64, "back\\\\slash"),
        T("bank.example\0.evil", 64, "bank.example\\u0000.evil"),
        T("cut \xe2\x82", 64, "cut \xef\xbf\xbd\xef\xbf\xbd"),
        T("M\xc3\xbcller", 64, "M\xc3\xbcller"),
        T("ab\xe2\x80\xae", 5, "ab"), /* U+FFFD does not fit whole: nothing of it */
        T("ab\x1b", 8, "ab"),
        T("ab\x1b", 9, "ab\\u001b"),
#undef T
    };
    char buf[80];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(buf, 'Z', sizeof(buf));
        size_t n = gw_text_escape(buf, cases[i].cap, cases[i].in, cases[i].len);
        if (strcmp(buf, cases[i].out) != 0 || n != strlen(cases[i].out))
            fail_msg("case %zu: got \"%s\" (%zu), want \"%s\"", i, buf, n, cases[i].out);
        assert_int_equal(buf[cases[i].cap], 'Z');
    }
    /* the worst case fits in 6 bytes a byte */
    assert_int_equal(gw_text_escape(buf, 6 * 3 + 1, "\x01\x02\x03", 3), 18);
}

/* gw_utf8_repair: U+FFFD for what gw_json_escape replaces, ASCII (controls too) as it is, cut whole. */
static void test_utf8_repair(void **state)
{
    static const struct {
        const char *in;
        size_t cap;
        const char *out;
    } cases[] = {
        {"M\xc3\xbcller", 64, "M\xc3\xbcller"},
        {"r\xc2\x9b\xe2\x80\xae\xe2\x80\xa8\xff"
         "x",
         64,
         "r\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
         "x"},
        {"esc\x1b\"\\", 64, "esc\x1b\"\\"},
        {"ab\xff", 5, "ab"},
        {"ab\xff", 6, "ab\xef\xbf\xbd"},
        {"ab\xc3\xbc", 4, "ab"},
    };
    char buf[80];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(buf, 'Z', sizeof(buf));
        size_t n = gw_utf8_repair(buf, cases[i].cap, cases[i].in);
        if (strcmp(buf, cases[i].out) != 0 || n != strlen(cases[i].out))
            fail_msg("case %zu: got \"%s\" (%zu), want \"%s\"", i, buf, n, cases[i].out);
        assert_int_equal(buf[cases[i].cap], 'Z');
    }
}

/*
 * Each range of characters a reader would not see as themselves (C1, and the general categories Cf, Zl,
 * Zp of Unicode 15.1), by its edges, and the character just outside each edge, which must stay as it is:
 * an off-by-one in the table would hide a letter or let an invisible character through.
 */
static const struct {
    uint32_t lo, hi;       /* replaced */
    uint32_t below, above; /* kept; 0: none kept there (the one below is ASCII, or another range's) */
} hidden_table[] = {
    {0x0080, 0x009f, 0, 0x00a0},          {0x00ad, 0x00ad, 0x00ac, 0x00ae},
    {0x0600, 0x0605, 0x05ff, 0x0606},     {0x061c, 0x061c, 0x061b, 0x061d},
    {0x06dd, 0x06dd, 0x06dc, 0x06de},     {0x070f, 0x070f, 0x070e, 0x0710},
    {0x0890, 0x0891, 0x088f, 0x0892},     {0x08e2, 0x08e2, 0x08e1, 0x08e3},
    {0x180e, 0x180e, 0x180d, 0x180f},     {0x200b, 0x200f, 0x200a, 0x2010},
    {0x2028, 0x202e, 0x2027, 0x202f},     {0x2060, 0x2064, 0x205f, 0x2065},
    {0x2066, 0x206f, 0x2065, 0x2070},     {0xfeff, 0xfeff, 0xfefe, 0xff00},
    {0xfff9, 0xfffb, 0xfff8, 0xfffc},     {0x110bd, 0x110bd, 0x110bc, 0x110be},
    {0x110cd, 0x110cd, 0x110cc, 0x110ce}, {0x13430, 0x1343f, 0x1342f, 0x13440},
    {0x1bca0, 0x1bca3, 0x1bc9f, 0x1bca4}, {0x1d173, 0x1d17a, 0x1d172, 0x1d17b},
    {0xe0001, 0xe0001, 0xe0000, 0xe0002}, {0xe0020, 0xe007f, 0xe001f, 0xe0080},
};

/* |cp| as UTF-8 into |out| (5 bytes), NUL-terminated. */
static void utf8_put(char *out, uint32_t cp)
{
    size_t n = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    static const unsigned char lead[5] = {0, 0, 0xc0, 0xe0, 0xf0};

    for (size_t i = n - 1; i > 0; i--, cp >>= 6)
        out[i] = (char)(0x80 | (cp & 0x3f));
    out[0] = (char)(lead[n] | cp);
    out[n] = '\0';
}

/* "a" |cp| "b" through the escaper and the scrubber: replaced whole (|hide|), or kept as it is. */
static void check_hidden(uint32_t cp, int hide)
{
    char c[5], in[16], want[32], buf[64];

    utf8_put(c, cp);
    snprintf(in, sizeof(in), "a%sb", c);
    snprintf(want, sizeof(want), "a%sb", hide ? "\\ufffd" : c);
    gw_json_escape(buf, sizeof(buf), in);
    if (strcmp(buf, want) != 0)
        fail_msg("U+%04X escaped: got \"%s\", want \"%s\"", (unsigned)cp, buf, want);
    snprintf(want, sizeof(want), "a%sb", hide ? "?" : c);
    snprintf(buf, sizeof(buf), "%s", in);
    gw_utf8_scrub(buf);
    if (strcmp(buf, want) != 0)
        fail_msg("U+%04X scrubbed: got \"%s\", want \"%s\"", (unsigned)cp, buf, want);
}

static void test_hidden_ranges(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(hidden_table) / sizeof(hidden_table[0]); i++) {
        check_hidden(hidden_table[i].lo, 1);
        check_hidden(hidden_table[i].hi, 1);
        check_hidden(hidden_table[i].lo + (hidden_table[i].hi - hidden_table[i].lo) / 2, 1);
        if (hidden_table[i].below != 0)
            check_hidden(hidden_table[i].below, 0);
        if (hidden_table[i].above != 0)
            check_hidden(hidden_table[i].above, 0);
    }
}

/* Ordinary text of any script reads as it is, in a log line and a statusString alike. */
static void test_hidden_text_kept(void **state)
{
    static const char *const kept[] = {
        "M\xc3\xbcller",                                    /* Müller */
        "\xe6\x9d\xb1\xe4\xba\xac\xe9\x83\xbd",             /* 東京都 */
        "\xd9\x85\xd8\xb5\xd8\xb1",                         /* مصر: right-to-left letters, no control */
        "\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0", /* Москва */
        "caf\xc3\xa9\xc2\xa0\xe2\x82\xac 5",                /* a no-break space, the euro sign */
        "\xf0\x9f\x94\x91 \xef\xbf\xbd \xef\xbf\xbc",       /* U+1F511, U+FFFD, U+FFFC */
    };
    char buf[64];

    (void)state;
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        gw_json_escape(buf, sizeof(buf), kept[i]);
        assert_string_equal(buf, kept[i]);
        snprintf(buf, sizeof(buf), "%s", kept[i]);
        gw_utf8_scrub(buf);
        assert_string_equal(buf, kept[i]);
        gw_text_escape(buf, sizeof(buf), kept[i], strlen(kept[i]));
        assert_string_equal(buf, kept[i]);
        gw_utf8_repair(buf, sizeof(buf), kept[i]);
        assert_string_equal(buf, kept[i]);
    }
}

/* gw_utf8_hidden finds the first character gw_utf8_scrub would replace as hidden, and counts its place
   in characters: a byte of no character is one, an ASCII control is the caller's to judge. */
static void test_utf8_hidden(void **state)
{
    static const struct {
        const char *in;
        uint32_t cp;
        size_t at;
    } cases[] = {
        {"", 0, 0},
        {"bank.example", 0, 0},
        {"a\x01\x7f\x1b[2J", 0, 0},
        {"M\xc3\xbcller \xe6\x9d\xb1\xe4\xba\xac\xc2\xa0", 0, 0},
        {"bank\xe2\x80\x8b.example", 0x200b, 5},
        {"\xe2\x80\xae", 0x202e, 1},
        {"M\xc3\xbcller\xe2\x80\xa8\xe2\x80\xa9", 0x2028, 7},
        {"\xff\xc0\xaf\xc2\x85", 0x85, 4},                /* three bytes of no character first */
        {"a\xf3\xa0\x80\x81", 0xe0001, 2},                /* a tag character: four bytes */
        {"\xf0\x9f\x94\x91\xf3\xa0\x81\xbf", 0xe007f, 2}, /* after an emoji, the cancel tag */
        {"\xef\xbb\xbf", 0xfeff, 1},
        {"\xef\xbb\xbe\xef\xbf\xbc", 0, 0}, /* U+FEFE, U+FFFC: just outside */
    };
    size_t at;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t cp = gw_utf8_hidden(cases[i].in, &at);

        if (cp != cases[i].cp || at != cases[i].at)
            fail_msg("case %zu: U+%04X at %zu, want U+%04X at %zu", i, (unsigned)cp, at,
                     (unsigned)cases[i].cp, cases[i].at);
    }
}

/* Every byte value, escaped, parses back as JSON to the same bytes (except invalid UTF-8). */
static void test_escape_roundtrip(void **state)
{
    char in[128], out[128 * 6 + 3], esc[128 * 6 + 1];
    struct json_object *o;
    int c;

    (void)state;
    for (c = 1; c < 128; c++)
        in[c - 1] = (char)c;
    in[127] = '\0';
    gw_json_escape(esc, sizeof(esc), in);
    snprintf(out, sizeof(out), "\"%s\"", esc);
    o = json_tokener_parse(out);
    assert_non_null(o);
    assert_string_equal(json_object_get_string(o), in);
    json_object_put(o);
}

static void test_hex(void **state)
{
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"", 0, ""},
        {"\x00", 1, "00"},
        {"\x01\xab\xff", 3, "01abff"},
        {"\x10\x20\x7f\x80", 4, "10207f80"},
    };
    char out[16];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 'Z', sizeof(out));
        gw_hex(out, (const unsigned char *)cases[i].in, cases[i].n);
        assert_string_equal(out, cases[i].out);
        assert_int_equal(out[2 * cases[i].n + 1], 'Z');
    }
}

static void test_err_str(void **state)
{
    (void)state;
    assert_string_equal(gw_err_str(0), "ok"); /* success is 0, not a code of its own */
    assert_string_equal(gw_err_str(GW_ERR_NOMEM), "out of memory");
    assert_string_equal(gw_err_str(GW_ERR_FORBIDDEN), "forbidden");
    assert_string_equal(gw_err_str(GW_ERR_UNAVAILABLE), "unavailable");
    assert_string_equal(gw_err_str(GW_ERR_REFUSED), "refused by the upstream");
    assert_string_equal(gw_err_str(GW_ERR_NOT_DURABLE), "done, but may not outlive a crash");
    assert_string_equal(gw_err_str(GW_ERR_TIME), "time outside the window");
    assert_string_equal(gw_err_str(GW_ERR_TIME - 1), "unknown error"); /* past the last code */
    assert_string_equal(gw_err_str(1), "unknown error");
    assert_string_equal(gw_err_str(-1000000), "unknown error");
}

/* ---- captured log lines ---- */

static char captured[4 * GW_LOG_LINE_MAX];

/* Runs |fn| with stderr redirected to a temporary file; leaves what was written in |captured|. */
static void capture(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    int saved = dup(STDERR_FILENO);
    size_t n;

    assert_non_null(tmp);
    assert_true(saved >= 0);
    fflush(stderr);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    n = fread(captured, 1, sizeof(captured) - 1, tmp);
    captured[n] = '\0';
    fclose(tmp);
}

/* Parses line |idx| of |captured| as one JSON object (fails the test otherwise). */
static struct json_object *line_json(int idx)
{
    char *p = captured, *nl, *line;
    struct json_object *o;

    while (idx-- > 0) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    nl = strchr(p, '\n');
    assert_non_null(nl);
    line = strndup(p, (size_t)(nl - p));
    assert_non_null(line);
    o = parse_strict(line);
    free(line);
    return o;
}

static const char *field(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return json_object_get_string(v);
}

/* A log line cannot be made to read as two: U+2028, U+2029 and U+0085 (NEL) are escaped like "\n". */
static void log_separators(void)
{
    gw_log_kv(GW_LOG_INFO, "sep", "cn", "a\xe2\x80\xa8{\"level\":\"error\"}\xe2\x80\xa9\xc2\x85z", NULL);
}

static void test_log_separators(void **state)
{
    struct json_object *o;

    (void)state;
    capture(log_separators);
    assert_null(strstr(captured, "\xe2\x80\xa8"));
    assert_null(strstr(captured, "\xe2\x80\xa9"));
    o = line_json(0);
    assert_non_null(o);
    assert_string_equal(field(o, "cn"), "a\xef\xbf\xbd{\"level\":\"error\"}\xef\xbf\xbd\xef\xbf\xbdz");
    json_object_put(o);
}

static void log_basic(void)
{
    gw_log_set_level(GW_LOG_INFO);
    gw_log(GW_LOG_DEBUG, "hidden", "not shown");
    gw_log(GW_LOG_INFO, "hello", "n=%d s=%s", 42, "q\"uote\n");
    gw_log_kv(GW_LOG_WARN, "request", "path", "/pki/cmp", "we\"ird", "a\\b", "empty", NULL, "raw",
              "/pki/\xff\xc0\xaf\xed\xa0\x80", NULL);
    gw_log_set_level(GW_LOG_ERROR);
    gw_log(GW_LOG_WARN, "hidden", "not shown");
    gw_log(GW_LOG_ERROR, "bad", "x");
    gw_log_set_level(GW_LOG_INFO);
}

static void test_log_lines(void **state)
{
    struct json_object *o;
    const char *t;

    (void)state;
    capture(log_basic);
    assert_null(strstr(captured, "hidden"));
    o = line_json(0);
    assert_non_null(o);
    assert_string_equal(field(o, "level"), "info");
    assert_string_equal(field(o, "event"), "hello");
    assert_string_equal(field(o, "msg"), "n=42 s=q\"uote\n");
    t = field(o, "time");
    assert_non_null(t);
    assert_int_equal(strlen(t), 24); /* 2026-11-23T12:00:00.123Z */
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[19], '.');
    assert_int_equal(t[23], 'Z');
    json_object_put(o);
    o = line_json(1);
    assert_non_null(o);
    assert_string_equal(field(o, "level"), "warn");
    assert_string_equal(field(o, "path"), "/pki/cmp");
    assert_string_equal(field(o, "we\"ird"), "a\\b");
    assert_string_equal(field(o, "empty"), "");
    assert_string_equal(field(o, "raw"),
                        "/pki/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    json_object_put(o);
    o = line_json(2);
    assert_non_null(o);
    assert_string_equal(field(o, "level"), "error");
    json_object_put(o);
}

static void log_long(void)
{
    static char big[3 * GW_LOG_LINE_MAX];

    memset(big, '"', sizeof(big) - 1); /* every byte doubles when escaped */
    gw_log(GW_LOG_INFO, "long", "%s", big);
    gw_log_kv(GW_LOG_INFO, "longkv", "a", "1", "big", big, "after", "dropped?", NULL);
}

/* Over-long lines are cut to GW_LOG_LINE_MAX and still parse. */
static void test_log_long(void **state)
{
    struct json_object *o;
    char *nl;

    (void)state;
    capture(log_long);
    nl = strchr(captured, '\n');
    assert_non_null(nl);
    assert_true((size_t)(nl - captured) + 1 <= GW_LOG_LINE_MAX);
    o = line_json(0);
    assert_non_null(o);
    assert_true(strlen(field(o, "msg")) > GW_LOG_LINE_MAX / 4);
    json_object_put(o);
    o = line_json(1);
    assert_non_null(o);
    assert_string_equal(field(o, "a"), "1");
    assert_non_null(field(o, "big"));
    json_object_put(o);
}

/* One step of a pacing script: at |now|, |calls| lines offered; how many go out, and the first one's held
 * count. */
struct pace_step {
    time_t now;
    int calls;
    int due;
    const char *held;
};

static const struct pace_step pace_script[] = {
    {100, GW_LOG_PACE_LINES, GW_LOG_PACE_LINES, "0"}, /* a window's worth goes out */
    {100, 50, 0, NULL},                               /* a flood within it: held back, counted */
    {100 + GW_LOG_PACE_SECS - 1, 7, 0, NULL},         /* still the same window */
    {100 + GW_LOG_PACE_SECS, 1, 1, "57"},             /* the next window's first line says how many */
    {100 + GW_LOG_PACE_SECS, 1, 1, "0"},
    {50, 1, 1, "0"}, /* the clock went back: a new window, not one held shut until it catches up */
};

/* A flood of paced lines: a window lets GW_LOG_PACE_LINES out, the rest are counted, reported next. */
static void test_log_pace(void **state)
{
    struct gw_log_pace pace = GW_LOG_PACE_INIT;

    (void)state;
    for (size_t i = 0; i < sizeof(pace_script) / sizeof(pace_script[0]); i++) {
        const struct pace_step *s = &pace_script[i];
        char held[GW_LOG_HELD_LEN], first[GW_LOG_HELD_LEN] = "";
        int due = 0;

        for (int n = 0; n < s->calls; n++) {
            strcpy(held, "untouched");
            if (gw_log_pace_due(&pace, s->now, held) && due++ == 0)
                snprintf(first, sizeof(first), "%s", held);
        }
        if (due != s->due || (s->held != NULL && strcmp(first, s->held) != 0))
            fail_msg("step %zu: %d of %d out (want %d), first held \"%s\" (want \"%s\")", i, due, s->calls,
                     s->due, first, s->held != NULL ? s->held : "");
    }
}

struct pace_flood {
    struct gw_log_pace *pace;
    int out;
};

static void *pace_flood(void *arg)
{
    struct pace_flood *f = arg;
    char held[GW_LOG_HELD_LEN];

    for (int i = 0; i < 1000; i++)
        f->out += gw_log_pace_due(f->pace, 200, held);
    return NULL;
}

/* Loop threads flooding at once: still GW_LOG_PACE_LINES lines in all, and every other one counted. */
static void test_log_pace_threads(void **state)
{
    struct gw_log_pace pace = GW_LOG_PACE_INIT;
    struct pace_flood f[4];
    pthread_t th[4];
    char held[GW_LOG_HELD_LEN];
    int out = 0;

    (void)state;
    for (int i = 0; i < 4; i++) {
        f[i] = (struct pace_flood){&pace, 0};
        assert_int_equal(pthread_create(&th[i], NULL, pace_flood, &f[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        out += f[i].out;
    }
    assert_int_equal(out, GW_LOG_PACE_LINES);
    assert_true(gw_log_pace_due(&pace, 200 + GW_LOG_PACE_SECS, held));
    assert_int_equal(strtoul(held, NULL, 10), 4000 - GW_LOG_PACE_LINES);
}

/* A step of an outage: |calls| lines at |now|, |due| of them out, the first saying |held|; or, at
 * OUTAGE_END, its end, |due| whether said, with |held|. */
#define OUTAGE_END ((time_t)-1)

static const struct pace_step outage_script[] = {
    {OUTAGE_END, 0, 0, NULL},                   /* none said: no end to say */
    {100, 50, 1, "0"},                          /* the first line at once, the rest held back */
    {100 + GW_LOG_OUTAGE_SECS - 1, 9, 0, NULL}, /* within the interval */
    {100 + GW_LOG_OUTAGE_SECS, 3, 1, "58"},     /* one line, saying how many */
    {OUTAGE_END, 0, 1, "2"},                    /* the end says those held since */
    {OUTAGE_END, 0, 0, NULL},                   /* once */
    /* another outage within the last line's interval (a flap, a late failure just after the end): held */
    {100 + 2 * GW_LOG_OUTAGE_SECS - 1, 2, 0, NULL},
    {OUTAGE_END, 0, 1, "2"},                   /* its end says them, though none of its lines went out */
    {100 + 2 * GW_LOG_OUTAGE_SECS, 2, 1, "0"}, /* an interval after the last line: another's first at once */
    {50, 1, 1, "1"}, /* the clock went back: out, not held shut until it catches up */
};

/* An outage's lines: its first out at once, one an interval after, and the count of the rest said by the
 * next line out or by its end; the first of the next outage within the interval of the last line held. */
static void test_log_outage(void **state)
{
    struct gw_log_outage o;

    (void)state;
    gw_log_outage_init(&o);
    for (size_t i = 0; i < sizeof(outage_script) / sizeof(outage_script[0]); i++) {
        const struct pace_step *s = &outage_script[i];
        char held[GW_LOG_HELD_LEN], first[GW_LOG_HELD_LEN] = "";
        int due = 0;

        for (int n = 0; n < (s->now == OUTAGE_END ? 1 : s->calls); n++) {
            strcpy(held, "untouched");
            if ((s->now == OUTAGE_END ? gw_log_outage_end(&o, 0, held)
                                      : gw_log_outage_due(&o, s->now, held)) &&
                due++ == 0)
                snprintf(first, sizeof(first), "%s", held);
        }
        if (due != s->due || (s->held != NULL && strcmp(first, s->held) != 0))
            fail_msg("step %zu: %d out (want %d), first held \"%s\" (want \"%s\")", i, due, s->due, first,
                     s->held != NULL ? s->held : "");
    }
    gw_log_outage_cleanup(&o);
}

/*
 * A warning an outage also causes (a line of another kind) is paced apart from the outage's own lines,
 * first the warning: it goes out at once, and so does the outage's first line after it; each goes out
 * once an interval of its own, saying the count of its own kind held back; the end says both counts.
 * Before, the warning took the outage's pace: that first line, a second later, was held.
 */
static void test_log_outage_other_first(void **state)
{
    struct gw_log_outage o;
    char held[GW_LOG_HELD_LEN];

    (void)state;
    gw_log_outage_init(&o);
    assert_true(gw_log_outage_other_due(&o, 100, held)); /* begins one */
    assert_string_equal(held, "0");
    assert_true(gw_log_outage_due(&o, 101, held));
    assert_string_equal(held, "0");
    assert_false(gw_log_outage_other_due(&o, 102, held)); /* paced itself */
    assert_false(gw_log_outage_due(&o, 103, held));
    assert_false(gw_log_outage_due(&o, 104, held));
    assert_true(gw_log_outage_other_due(&o, 100 + GW_LOG_OUTAGE_SECS, held));
    assert_string_equal(held, "1");                                      /* its own kind's alone */
    assert_false(gw_log_outage_due(&o, 100 + GW_LOG_OUTAGE_SECS, held)); /* its interval runs from 101 */
    assert_true(gw_log_outage_due(&o, 101 + GW_LOG_OUTAGE_SECS, held));
    assert_string_equal(held, "3");
    assert_false(gw_log_outage_other_due(&o, 101 + GW_LOG_OUTAGE_SECS, held));
    assert_false(gw_log_outage_due(&o, 102 + GW_LOG_OUTAGE_SECS, held));
    assert_true(gw_log_outage_end(&o, 0, held));
    assert_string_equal(held, "2"); /* one of each */
    gw_log_outage_cleanup(&o);
}

/*
 * The other order: the outage's first line, then a warning it also causes, out at once without taking
 * the count of the outage's lines held back, nor moving their interval; the next outage's first warning
 * goes out at once again. Before, the warning said (and zeroed) that count, and the outage's next line
 * waited an interval from the warning.
 */
static void test_log_outage_other_after(void **state)
{
    struct gw_log_outage o;
    char held[GW_LOG_HELD_LEN];

    (void)state;
    gw_log_outage_init(&o);
    assert_true(gw_log_outage_due(&o, 200, held));
    assert_false(gw_log_outage_due(&o, 201, held));
    assert_true(gw_log_outage_other_due(&o, 202, held));
    assert_string_equal(held, "0");
    assert_false(gw_log_outage_other_due(&o, 203, held));
    assert_false(gw_log_outage_due(&o, 209, held));
    assert_true(gw_log_outage_due(&o, 200 + GW_LOG_OUTAGE_SECS, held));
    assert_string_equal(held, "2");
    assert_true(gw_log_outage_end(&o, 0, held));
    assert_string_equal(held, "1");                      /* the warning held back */
    assert_true(gw_log_outage_other_due(&o, 211, held)); /* the next outage's: at once */
    assert_string_equal(held, "0");
    assert_true(gw_log_outage_end(&o, 0, held));
    gw_log_outage_cleanup(&o);
}

struct outage_flood {
    struct gw_log_outage *o;
    int out;
};

static void *outage_flood(void *arg)
{
    struct outage_flood *f = arg;
    char held[GW_LOG_HELD_LEN];

    for (int i = 0; i < 1000; i++)
        f->out += gw_log_outage_due(f->o, 300, held);
    return NULL;
}

/* Workers failing at once in an outage: one line out, and every other one counted by its end. */
static void test_log_outage_threads(void **state)
{
    struct gw_log_outage o;
    struct outage_flood f[4];
    pthread_t th[4];
    char held[GW_LOG_HELD_LEN];
    int out = 0;

    (void)state;
    gw_log_outage_init(&o);
    for (int i = 0; i < 4; i++) {
        f[i] = (struct outage_flood){&o, 0};
        assert_int_equal(pthread_create(&th[i], NULL, outage_flood, &f[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        out += f[i].out;
    }
    assert_int_equal(out, 1);
    assert_true(gw_log_outage_end(&o, 300, held));
    assert_int_equal(strtoul(held, NULL, 10), 4000 - 1);
    gw_log_outage_cleanup(&o);
}

/*
 * Requests that fail and succeed in turn (one client's certificate of a CA whose status cannot be had, one
 * whose can): each success ends the outage its failure began. An end within an interval of the last end said
 * is not said, the outage left open with its count: at most a line and an end an interval. Before, each
 * pair wrote an end.
 */
static void test_log_outage_ends_paced(void **state)
{
    struct gw_log_outage o;
    char held[GW_LOG_HELD_LEN];
    int ends = 0;

    (void)state;
    gw_log_outage_init(&o);
    assert_true(gw_log_outage_due(&o, 100, held)); /* the first line at once */
    assert_true(gw_log_outage_end(&o, 100, held)); /* and the first end */
    assert_string_equal(held, "0");
    for (time_t t = 100; t < 100 + GW_LOG_OUTAGE_SECS; t++) {
        assert_false(gw_log_outage_due(&o, t, held));
        ends += gw_log_outage_end(&o, t, held);
    }
    assert_int_equal(ends, 0);
    assert_true(
        gw_log_outage_end(&o, 100 + GW_LOG_OUTAGE_SECS, held)); /* an interval after: said, with all */
    assert_int_equal(strtoul(held, NULL, 10), GW_LOG_OUTAGE_SECS);
    assert_false(gw_log_outage_end(&o, 100 + GW_LOG_OUTAGE_SECS, held)); /* once */
    assert_true(gw_log_outage_due(&o, 101 + GW_LOG_OUTAGE_SECS, held));
    assert_true(gw_log_outage_end(&o, 0, held)); /* at a stop, whenever */
    gw_log_outage_cleanup(&o);
}

/* Lines out of |n| calls for |name| at |now|; |held_sum| adds up the "suppressed" of those out, and the
 * counts of the peers whose places it took. */
static int peer_lines(struct gw_log_peer_pace *p, const char *name, time_t now, int n,
                      unsigned long *held_sum)
{
    char held[GW_LOG_HELD_LEN];
    struct gw_log_peer_held gone;
    int out = 0;

    for (int i = 0; i < n; i++) {
        bool due = gw_log_peer_pace_due(p, name, now, held, &gone);

        if (gone.name[0] != '\0')
            *held_sum += strtoul(gone.held, NULL, 10);
        if (!due)
            continue;
        out++;
        *held_sum += strtoul(held, NULL, 10);
    }
    return out;
}

/* A peer flooding holds back its own lines, not another's; its next window says how many. */
static void test_log_peer_pace(void **state)
{
    static struct gw_log_peer_pace pace = GW_LOG_PEER_PACE_INIT;
    unsigned long held = 0;

    (void)state;
    assert_int_equal(peer_lines(&pace, "sha256:aa", 100, 3 * GW_LOG_PACE_LINES, &held), GW_LOG_PACE_LINES);
    assert_int_equal(peer_lines(&pace, "sha256:bb", 100, GW_LOG_PACE_LINES, &held), GW_LOG_PACE_LINES);
    assert_int_equal(held, 0);
    assert_int_equal(peer_lines(&pace, "sha256:aa", 100 + GW_LOG_PACE_SECS - 1, 1, &held), 0);
    assert_int_equal(peer_lines(&pace, "sha256:aa", 100 + GW_LOG_PACE_SECS, 1, &held), 1);
    assert_int_equal(held, 2 * GW_LOG_PACE_LINES + 1);
    assert_int_equal(peer_lines(&pace, "sha256:aa", 50, 1, &held), 1); /* the clock went back: a new window */
}

/* More peers than places: the lines out stay bounded, and every line is either out or counted (said with
 * a line out or a place that changed hands, or still pending). */
static void test_log_peer_pace_full(void **state)
{
    static struct gw_log_peer_pace pace = GW_LOG_PEER_PACE_INIT;
    enum { PEERS = 4 * GW_LOG_PACE_PEERS };
    unsigned long held = 0, pending;
    char name[32];
    int out = 0;

    (void)state;
    for (int i = 0; i < PEERS; i++) {
        snprintf(name, sizeof(name), "sha256:%d", i);
        out += peer_lines(&pace, name, 200, 2, &held);
    }
    assert_true(out <= 2 * GW_LOG_PACE_PEERS + GW_LOG_PACE_LINES);
    for (int i = 0; i < PEERS; i++) { /* the next window: places change hands */
        snprintf(name, sizeof(name), "sha256:%d", i);
        out += peer_lines(&pace, name, 200 + GW_LOG_PACE_SECS, 1, &held);
    }
    pending = pace.rest.w.held;
    for (size_t i = 0; i < GW_LOG_PACE_PEERS; i++)
        pending += pace.peers[i].w.held;
    assert_int_equal(out + held + pending, 3 * PEERS);
}

/* |n| names ("sha256:<i>") whose GW_LOG_PACE_PROBE places begin at the same one, as gw_log_peer_pace_due
 * looks them up. */
static void colliding_names(char names[][32], int n)
{
    uint64_t first = 0;

    for (int i = 0, k = 0; k < n; i++) {
        char name[32];
        uint64_t at;

        snprintf(name, sizeof(name), "sha256:%d", i);
        at = gw_fnv1a(GW_FNV1A_BASIS, name, strlen(name)) % GW_LOG_PACE_PEERS;
        if (k == 0)
            first = at;
        if (at == first)
            memcpy(names[k++], name, sizeof(name));
    }
}

/*
 * A place that changes hands while its peer has lines held back: their count used to go to the next line
 * of the peers paced as one, late and under another's name. It is handed back at once with the name of
 * the peer that held them back, and said nowhere else.
 */
static void test_log_peer_pace_held(void **state)
{
    static struct gw_log_peer_pace pace = GW_LOG_PEER_PACE_INIT;
    enum { PEERS = GW_LOG_PACE_PROBE + 1 };
    char names[PEERS][32], held[GW_LOG_HELD_LEN];
    struct gw_log_peer_held gone;
    unsigned long sum = 0;

    (void)state;
    colliding_names(names, PEERS);
    for (int i = 0; i < GW_LOG_PACE_PROBE; i++) /* each its own place, 3 lines held back */
        assert_int_equal(peer_lines(&pace, names[i], 100, GW_LOG_PACE_LINES + 3, &sum), GW_LOG_PACE_LINES);
    assert_int_equal(sum, 0);
    /* their windows over: the last takes the first place, every one holding a count */
    assert_true(gw_log_peer_pace_due(&pace, names[PEERS - 1], 100 + GW_LOG_PACE_SECS, held, &gone));
    assert_string_equal(held, "0");
    assert_string_equal(gone.name, names[0]);
    assert_string_equal(gone.held, "3");
    assert_int_equal(pace.rest.w.held, 0); /* nor said again under the line of those paced as one */
    /* the first back: its count was said; it takes the next place, and its peer's count is said */
    assert_true(gw_log_peer_pace_due(&pace, names[0], 100 + GW_LOG_PACE_SECS, held, &gone));
    assert_string_equal(held, "0");
    assert_string_equal(gone.name, names[1]);
    assert_string_equal(gone.held, "3");
    /* a place that changes hands with nothing held back says nothing: the next window's, held 0, first */
    assert_true(gw_log_peer_pace_due(&pace, names[1], 100 + 2 * GW_LOG_PACE_SECS, held, &gone));
    assert_string_equal(gone.name, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_escape_roundtrip),
        cmocka_unit_test(test_escape_high_bytes),
        cmocka_unit_test(test_utf8_scrub),
        cmocka_unit_test(test_text_escape),
        cmocka_unit_test(test_utf8_repair),
        cmocka_unit_test(test_hidden_ranges),
        cmocka_unit_test(test_hidden_text_kept),
        cmocka_unit_test(test_utf8_hidden),
        cmocka_unit_test(test_log_separators),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_err_str),
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_log_long),
        cmocka_unit_test(test_log_pace),
        cmocka_unit_test(test_log_pace_threads),
        cmocka_unit_test(test_log_peer_pace),
        cmocka_unit_test(test_log_peer_pace_full),
        cmocka_unit_test(test_log_peer_pace_held),
        cmocka_unit_test(test_log_outage),
        cmocka_unit_test(test_log_outage_other_first),
        cmocka_unit_test(test_log_outage_other_after),
        cmocka_unit_test(test_log_outage_threads),
        cmocka_unit_test(test_log_outage_ends_paced),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
