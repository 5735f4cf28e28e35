/*
 * Structured logs: one JSON object per line on stderr.
 *
 * Each line is built in a stack buffer of GW_LOG_LINE_MAX bytes and written with a single
 * write(2): POSIX makes writes of up to PIPE_BUF atomic on pipes, and on files and terminals one
 * write per line is what keeps lines from threads whole in practice. An over-long line is cut
 * inside a string value, never inside an escape, so it stays valid JSON.
 */
#include "base/log.h"
#include "base/hash.h"
#include "base/limits.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = GW_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Bytes kept free at the end of every line for the closing "}\n". */
#define LINE_RESERVE 2

struct line {
    char buf[GW_LOG_LINE_MAX];
    size_t len;
    bool full; /* a field did not fit: add nothing more */
};

void gw_log_set_level(enum gw_log_level level)
{
    atomic_store(&log_level, (int)level);
}

static size_t line_room(const struct line *l)
{
    return sizeof(l->buf) - LINE_RESERVE - l->len;
}

static void put_raw(struct line *l, const char *s)
{
    size_t n = strlen(s);

    if (l->full || n > line_room(l)) {
        l->full = true;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* Appends "s" JSON-escaped, truncated to what fits; marks the line full if not even "" fits. */
static void put_str(struct line *l, const char *s)
{
    size_t room = line_room(l), n;

    if (l->full || room < 2) {
        l->full = true;
        return;
    }
    l->buf[l->len] = '"';
    /* gw_json_escape needs one byte for its NUL, which the closing quote then overwrites */
    n = gw_json_escape(l->buf + l->len + 1, room - 1, s != NULL ? s : "");
    l->buf[l->len + 1 + n] = '"';
    l->len += n + 2;
}

/* Appends ,"key":"value" whole, or nothing (and marks the line full). */
static void put_pair(struct line *l, const char *key, const char *value)
{
    size_t saved = l->len;

    put_raw(l, ",");
    put_str(l, key);
    put_raw(l, ":");
    put_str(l, value);
    if (l->full)
        l->len = saved;
}

static void line_begin(struct line *l, enum gw_log_level level, const char *event)
{
    struct timespec ts;
    struct tm tm;
    char stamp[32], date[24];
    unsigned lv = (unsigned)level < 4 ? (unsigned)level : GW_LOG_ERROR;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp, sizeof(stamp), "%.20s.%03dZ", date, (int)(ts.tv_nsec / 1000000) % 1000);
    l->len = 0;
    l->full = false;
    put_raw(l, "{\"time\":\"");
    put_raw(l, stamp);
    put_raw(l, "\"");
    put_pair(l, "level", level_names[lv]);
    put_pair(l, "event", event);
}

static void line_end(struct line *l)
{
    size_t off = 0;

    /* LINE_RESERVE guarantees these two bytes fit */
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    while (off < l->len) {
        ssize_t n = write(STDERR_FILENO, l->buf + off, l->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        off += (size_t)n;
    }
}

static bool level_enabled(enum gw_log_level level)
{
    return (int)level >= atomic_load(&log_level);
}

void gw_log(enum gw_log_level level, const char *event, const char *fmt, ...)
{
    struct line l;
    char msg[GW_LOG_LINE_MAX];
    va_list ap;

    if (!level_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    line_begin(&l, level, event);
    put_pair(&l, "msg", msg);
    if (l.full) {
        /* msg alone is cut to fit: put_pair refused it whole, so write the truncated form */
        l.full = false;
        put_raw(&l, ",\"msg\":");
        put_str(&l, msg);
    }
    line_end(&l);
}

void gw_log_kv(enum gw_log_level level, const char *event, ...)
{
    struct line l;
    const char *key, *value;
    va_list ap;

    if (!level_enabled(level))
        return;
    line_begin(&l, level, event);
    va_start(ap, event);
    while ((key = va_arg(ap, const char *)) != NULL) {
        value = va_arg(ap, const char *);
        put_pair(&l, key, value);
    }
    va_end(ap);
    line_end(&l);
}

/* Whether a window that began at |window| is over at |now| (a clock that went back ends it too). */
static bool window_over(time_t window, time_t now)
{
    return now < window || now - window >= GW_LOG_PACE_SECS;
}

/* One more line in the window |w|: the pace of gw_log_pace_due, under its caller's lock. */
static bool pace_due(struct gw_log_window *w, time_t now, char held[GW_LOG_HELD_LEN])
{
    if (window_over(w->window, now)) {
        w->window = now;
        w->lines = 0;
    }
    if (w->lines >= GW_LOG_PACE_LINES) {
        w->held++;
        return false;
    }
    w->lines++;
    snprintf(held, GW_LOG_HELD_LEN, "%lu", w->held);
    w->held = 0;
    return true;
}

bool gw_log_pace_due(struct gw_log_pace *p, time_t now, char held[GW_LOG_HELD_LEN])
{
    bool due;

    pthread_mutex_lock(&p->lock);
    due = pace_due(&p->w, now, held);
    pthread_mutex_unlock(&p->lock);
    return due;
}

void gw_log_outage_init(struct gw_log_outage *o)
{
    pthread_mutex_init(&o->lock, NULL);
    atomic_init(&o->open, false);
    o->last = 0;
    o->last_end = 0;
    o->held = 0;
    o->other_out = false;
    o->other_last = 0;
    o->other_held = 0;
}

void gw_log_outage_cleanup(struct gw_log_outage *o)
{
    pthread_mutex_destroy(&o->lock);
}

/* Whether GW_LOG_OUTAGE_SECS have passed since |last| at |now| (a clock that went back passes them too). */
static bool outage_interval_over(time_t last, time_t now)
{
    return now < last || now - last >= GW_LOG_OUTAGE_SECS;
}

bool gw_log_outage_due(struct gw_log_outage *o, time_t now, char held[GW_LOG_HELD_LEN])
{
    bool due;

    pthread_mutex_lock(&o->lock);
    /* an end leaves |last| as it is: the first line of the next outage waits out its interval too */
    due = o->last == 0 || outage_interval_over(o->last, now);
    if (due) {
        snprintf(held, GW_LOG_HELD_LEN, "%lu", o->held);
        o->held = 0;
        o->last = now;
    } else {
        o->held++;
    }
    atomic_store(&o->open, true);
    pthread_mutex_unlock(&o->lock);
    return due;
}

bool gw_log_outage_other_due(struct gw_log_outage *o, time_t now, char held[GW_LOG_HELD_LEN])
{
    bool due;

    pthread_mutex_lock(&o->lock);
    due = !o->other_out || outage_interval_over(o->other_last, now);
    if (due) {
        snprintf(held, GW_LOG_HELD_LEN, "%lu", o->other_held);
        o->other_held = 0;
        o->other_last = now;
        o->other_out = true;
    } else {
        o->other_held++;
    }
    atomic_store(&o->open, true);
    pthread_mutex_unlock(&o->lock);
    return due;
}

bool gw_log_outage_end(struct gw_log_outage *o, time_t now, char held[GW_LOG_HELD_LEN])
{
    bool said;

    if (!atomic_load(&o->open))
        return false;
    pthread_mutex_lock(&o->lock);
    said = atomic_load(&o->open) && (now == 0 || o->last_end == 0 || outage_interval_over(o->last_end, now));
    if (said) {
        o->last_end = now;
        snprintf(held, GW_LOG_HELD_LEN, "%lu", o->held + o->other_held);
        o->held = 0;
        o->other_held = 0;
        o->other_out = false; /* the next outage's first warning goes out at once */
        atomic_store(&o->open, false);
    }
    pthread_mutex_unlock(&o->lock);
    return said;
}

/* FNV-1a of the first GW_LOG_PACE_NAME_LEN - 1 bytes of |name|: where its places begin. */
static size_t name_hash(const char *name)
{
    return (size_t)(gw_fnv1a(GW_FNV1A_BASIS, name, strnlen(name, GW_LOG_PACE_NAME_LEN - 1)) %
                    GW_LOG_PACE_PEERS);
}

/*
 * |name|'s place among its GW_LOG_PACE_PROBE in |p|: its own, else a free one given to it (one that
 * holds no count of lines held back first, else the count and who held them back go to |gone|), else
 * NULL.
 */
static struct gw_log_peer *peer_place(struct gw_log_peer_pace *p, const char *name, time_t now,
                                      struct gw_log_peer_held *gone)
{
    struct gw_log_peer *free_place = NULL;
    size_t at = name_hash(name);

    for (size_t i = 0; i < GW_LOG_PACE_PROBE; i++) {
        struct gw_log_peer *e = &p->peers[(at + i) % GW_LOG_PACE_PEERS];

        if (strncmp(e->name, name, sizeof(e->name) - 1) == 0)
            return e;
        if (e->name[0] != '\0' && !window_over(e->w.window, now))
            continue;
        if (free_place == NULL || (free_place->w.held > 0 && e->w.held == 0))
            free_place = e;
    }
    if (free_place == NULL)
        return NULL;
    if (free_place->w.held > 0) { /* said now, under its own name, not late under another's line */
        memcpy(gone->name, free_place->name, sizeof(gone->name));
        snprintf(gone->held, sizeof(gone->held), "%lu", free_place->w.held);
    }
    snprintf(free_place->name, sizeof(free_place->name), "%s", name);
    free_place->w = (struct gw_log_window){.window = now};
    return free_place;
}

bool gw_log_peer_pace_due(struct gw_log_peer_pace *p, const char *name, time_t now,
                          char held[GW_LOG_HELD_LEN], struct gw_log_peer_held *gone)
{
    struct gw_log_peer *e;
    bool due;

    gone->name[0] = '\0';
    pthread_mutex_lock(&p->lock);
    if ((e = peer_place(p, name, now, gone)) == NULL)
        e = &p->rest;
    due = pace_due(&e->w, now, held);
    pthread_mutex_unlock(&p->lock);
    return due;
}

/* Writes the escape for byte |c| into |out| (>= 7 bytes); returns its length. */
static size_t escape_byte(char *out, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";

    switch (c) {
    case '"':
    case '\\':
        out[0] = '\\';
        out[1] = (char)c;
        return 2;
    case '\n':
        memcpy(out, "\\n", 2);
        return 2;
    case '\r':
        memcpy(out, "\\r", 2);
        return 2;
    case '\t':
        memcpy(out, "\\t", 2);
        return 2;
    default:
        break;
    }
    if (c < 0x20 || c == 0x7f) {
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 0xf];
        return 6;
    }
    out[0] = (char)c;
    return 1;
}

/*
 * The length of the well-formed UTF-8 sequence at |p|, of which |left| bytes may be read (RFC 3629:
 * no overlong form, no UTF-16 surrogate, nothing past U+10FFFF), or 0 when |p| starts none. A NUL
 * is no continuation byte, so a C string's end stops it too.
 */
static size_t utf8_len(const unsigned char *p, size_t left)
{
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    size_t n;

    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (n > left)
        return 0;
    if (p[0] == 0xe0)
        lo = 0xa0; /* below: an overlong form */
    else if (p[0] == 0xed)
        hi = 0x9f; /* above: a surrogate */
    else if (p[0] == 0xf0)
        lo = 0x90; /* below: an overlong form */
    else if (p[0] == 0xf4)
        hi = 0x8f; /* above: past U+10FFFF */
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* The code point of the |n| bytes of well-formed UTF-8 at |p| (utf8_len said |n|). */
static uint32_t utf8_decode(const unsigned char *p, size_t n)
{
    static const unsigned char lead_bits[5] = {0, 0, 0x1f, 0x0f, 0x07};
    uint32_t cp = p[0] & lead_bits[n];

    for (size_t i = 1; i < n; i++)
        cp = cp << 6 | (p[i] & 0x3f);
    return cp;
}

/*
 * The characters that a person reading a log line, an audit record or a statusString would not see
 * as themselves, past ASCII: the C1 controls (Cc, U+0080..U+009F: some terminals act on them, U+009B
 * opens an escape sequence as ESC [ does) and every character of the Unicode general categories Cf
 * (format), Zl and Zp (line and paragraph separator), as of Unicode 15.1. Cf holds the
 * bidirectional controls, which reorder the text shown around them ("Trojan Source":
 * "\u202emoc.elpmaxe" shows as "example.com"), and the invisible ones: zero-width space, joiners,
 * word joiner, BOM, soft hyphen, the tag characters U+E0001 and U+E0020..U+E007F (invisible text);
 * U+2028 and U+2029 end a line in many viewers, so that one log line would read as two. A
 * category, taken whole, is a rule to check against UnicodeData.txt rather than a list picked by
 * hand; it also takes the few Cf characters that show a sign (U+0600..U+0605), which no text the
 * gateway quotes needs either. Letters, marks and spaces of every script stay: "M\u00fcller", CJK.
 * Sorted, so that a look-up stops at the first range above.
 */
static const struct {
    uint32_t lo, hi;
} hidden_ranges[] = {
    {0x0080, 0x009f},   {0x00ad, 0x00ad},   {0x0600, 0x0605},   {0x061c, 0x061c},   {0x06dd, 0x06dd},
    {0x070f, 0x070f},   {0x0890, 0x0891},   {0x08e2, 0x08e2},   {0x180e, 0x180e},   {0x200b, 0x200f},
    {0x2028, 0x202e},   {0x2060, 0x2064},   {0x2066, 0x206f},   {0xfeff, 0xfeff},   {0xfff9, 0xfffb},
    {0x110bd, 0x110bd}, {0x110cd, 0x110cd}, {0x13430, 0x1343f}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a},
    {0xe0001, 0xe0001}, {0xe0020, 0xe007f},
};

static bool hidden(uint32_t cp)
{
    for (size_t i = 0; i < sizeof(hidden_ranges) / sizeof(hidden_ranges[0]) && cp >= hidden_ranges[i].lo; i++)
        if (cp <= hidden_ranges[i].hi)
            return true;
    return false;
}

/* The length of the character at |p| (from 0x80 up, |left| bytes readable) to keep as it is, or 0. */
static size_t shown_len(const unsigned char *p, size_t left)
{
    size_t n = utf8_len(p, left);

    return n != 0 && !hidden(utf8_decode(p, n)) ? n : 0;
}

/* How many bytes at |p| (from 0x80 up) one replacement stands for: a whole character, or one byte. */
static size_t replaced_len(const unsigned char *p, size_t left)
{
    size_t n = utf8_len(p, left);

    return n != 0 ? n : 1;
}

/* U+FFFD as text, and as the escape of a JSON string */
#define REPLACEMENT "\xef\xbf\xbd"
#define REPLACEMENT_ESC "\\ufffd"

/* What escape() does with ASCII: JSON's escapes, the same but for '"' (plain text), or nothing. */
enum escape_mode { ESCAPE_JSON, ESCAPE_TEXT, ESCAPE_NONE };

/*
 * The one escaper of every text a person reads, whoever wrote it (a client's path or name, a CA's
 * words, a certificate's IA5String): |len| bytes of |s| into |buf|, always NUL-terminated, cut to
 * |cap| between two whole escapes or characters. Valid UTF-8 is copied, a whole sequence or none of
 * it; a byte that is not part of one becomes U+FFFD, so that what comes out is UTF-8 whatever went in
 * (RFC 8259 8.1): journald keeps a line that is not UTF-8 as a blob that journalctl does not show, a
 * log shipper drops it. So does a character not shown as itself (hidden_ranges), whole. Unless
 * ESCAPE_NONE, ASCII controls and the backslash are escaped as in JSON (\n, \u001b, \\), and so is
 * '"' with ESCAPE_JSON; there U+FFFD is written as its escape, for an escape that decoded to a hidden
 * character would be one again to whatever shows the decoded value.
 */
static size_t escape(char *buf, size_t cap, const unsigned char *p, size_t len, enum escape_mode mode)
{
    char esc[8];
    const char *src;
    size_t n = 0, k, used;

    if (cap == 0)
        return 0;
    for (size_t i = 0; i < len; i += used) {
        used = 1;
        if ((p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') ||
            (p[i] < 0x80 && mode == ESCAPE_NONE)) {
            /* printable ASCII stands for itself (escape_byte's last case), most of every line */
            if (n + 2 > cap)
                break;
            buf[n++] = (char)p[i];
            continue;
        }
        src = esc;
        if (p[i] == '"' && mode == ESCAPE_TEXT) {
            k = 1;
            esc[0] = '"';
        } else if (p[i] < 0x80) {
            k = escape_byte(esc, p[i]);
        } else if ((used = shown_len(p + i, len - i)) != 0) {
            k = used;
            src = (const char *)p + i;
        } else {
            used = replaced_len(p + i, len - i);
            src = mode == ESCAPE_JSON ? REPLACEMENT_ESC : REPLACEMENT;
            k = strlen(src);
        }
        if (n + k + 1 > cap)
            break;
        memcpy(buf + n, src, k);
        n += k;
    }
    buf[n] = '\0';
    return n;
}

size_t gw_json_escape(char *buf, size_t cap, const char *s)
{
    return escape(buf, cap, (const unsigned char *)s, strlen(s), ESCAPE_JSON);
}

size_t gw_json_escape_n(char *buf, size_t cap, const char *s, size_t len)
{
    return escape(buf, cap, (const unsigned char *)s, len, ESCAPE_JSON);
}

size_t gw_text_escape(char *buf, size_t cap, const char *s, size_t len)
{
    return escape(buf, cap, (const unsigned char *)s, len, ESCAPE_TEXT);
}

size_t gw_utf8_repair(char *buf, size_t cap, const char *s)
{
    return escape(buf, cap, (const unsigned char *)s, strlen(s), ESCAPE_NONE);
}

void gw_utf8_scrub(char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n, left = strlen(s);
    char *out = s;

    while (left > 0) {
        if (*p < 0x80) {
            n = 1;
            *out++ = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
        } else if ((n = shown_len(p, left)) != 0) {
            memmove(out, p, n);
            out += n;
        } else {
            n = replaced_len(p, left); /* taken before the '?', which may land on it */
            *out++ = '?';
        }
        p += n;
        left -= n;
    }
    *out = '\0';
}

uint32_t gw_utf8_hidden(const char *s, size_t *at)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n, left = strlen(s);

    for (*at = 1; left > 0; (*at)++, p += n, left -= n) {
        n = *p < 0x80 ? 1 : utf8_len(p, left);
        if (n == 0)
            n = 1; /* a byte of no character: one place, as gw_utf8_scrub's '?' */
        else if (n > 1 && hidden(utf8_decode(p, n)))
            return utf8_decode(p, n);
    }
    *at = 0;
    return 0;
}

void gw_hex(char *out, const unsigned char *in, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 0xf];
    }
    out[2 * n] = '\0';
}
