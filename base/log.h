/*
 * Structured logs: one JSON object per line on stderr. Never pass a secret or a key.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include "base/limits.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum gw_log_level {
    GW_LOG_DEBUG = 0,
    GW_LOG_INFO,
    GW_LOG_WARN,
    GW_LOG_ERROR,
};

void gw_log_set_level(enum gw_log_level level);

/* gw_log writes {"time":...,"level":...,"event":event,"msg":<formatted>}. Thread-safe. */
void gw_log(enum gw_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A request log line: key/value pairs, all strings (JSON-escaped here), NULL-terminated list. */
void gw_log_kv(enum gw_log_level level, const char *event, ...);

/*
 * A log event that a peer can cause before it authenticates (a wrong admin token, an HTTP/2
 * stream left stalled) is paced so that no client can flood the log: at most GW_LOG_PACE_LINES
 * lines a GW_LOG_PACE_SECS window, whatever the number of peers; the lines held back are counted
 * and the next line out says how many ("suppressed"). One per event, static, GW_LOG_PACE_INIT.
 */
struct gw_log_window {
    time_t window;      /* when the current window began */
    unsigned lines;     /* lines out in it */
    unsigned long held; /* lines held back since the last one out */
};
struct gw_log_pace {
    pthread_mutex_t lock;
    struct gw_log_window w;
};
#define GW_LOG_PACE_INIT                                                                                     \
    {                                                                                                        \
        .lock = PTHREAD_MUTEX_INITIALIZER                                                                    \
    }
#define GW_LOG_HELD_LEN 24

/*
 * gw_log_pace_due: whether one more line of |p|'s event may go out at |now|: true, with |held| the
 * decimal count of the lines held back since the last one out (its "suppressed" field); false, the
 * line counted as held back. A clock that went back starts a new window. Thread-safe.
 */
bool gw_log_pace_due(struct gw_log_pace *p, time_t now, char held[GW_LOG_HELD_LEN]);

/*
 * A log event that an authenticated peer can cause as fast as it sends (a client with a trusted TLS
 * certificate pipelining requests to an unknown path) is paced per peer: GW_LOG_PACE_LINES lines a
 * GW_LOG_PACE_SECS window for each, so that the peer flooding holds back its own lines and not those
 * of the others. The table has GW_LOG_PACE_PEERS places; a peer that finds none free among the
 * GW_LOG_PACE_PROBE its name may take (each held by another peer within its window) is paced with
 * the others that found none, as one. A place whose window has ended is given to the next peer that
 * needs it (one without lines held back first): the count of those its peer held back is then handed
 * to the caller, to be said in a line of its own that names that peer (gw_log_peer_held).
 * One per event, static, GW_LOG_PEER_PACE_INIT.
 */
struct gw_log_peer {
    char name[GW_LOG_PACE_NAME_LEN]; /* "": a free place */
    struct gw_log_window w;
};
struct gw_log_peer_pace {
    pthread_mutex_t lock;
    struct gw_log_peer rest; /* the peers that found no place, together */
    struct gw_log_peer peers[GW_LOG_PACE_PEERS];
};
#define GW_LOG_PEER_PACE_INIT                                                                                \
    {                                                                                                        \
        .lock = PTHREAD_MUTEX_INITIALIZER                                                                    \
    }

/* The peer whose place went to another while it had lines held back, and their count in decimal. */
struct gw_log_peer_held {
    char name[GW_LOG_PACE_NAME_LEN]; /* "": no place changed hands with a count */
    char held[GW_LOG_HELD_LEN];
};

/*
 * gw_log_peer_pace_due is gw_log_pace_due for the line of the peer |name| (at most
 * GW_LOG_PACE_NAME_LEN - 1 bytes are told apart; not empty): |held| counts the lines of that peer held
 * back since its last one out (or of the peers paced as one). |gone| is the peer whose place |name|
 * took with lines held back (its name "" if none): its count is said nowhere else. Thread-safe.
 */
bool gw_log_peer_pace_due(struct gw_log_peer_pace *p, const char *name, time_t now,
                          char held[GW_LOG_HELD_LEN], struct gw_log_peer_held *gone);

/*
 * An error that every request meets while it lasts (the shared state unreachable) is paced by its outage:
 * its first line goes out at once, for the operator to see, then at most one a GW_LOG_OUTAGE_SECS, the
 * lines held back counted as gw_log_pace_due counts them. The outage ends when what failed works again
 * (gw_log_outage_end), which says how many were held back since the last line out. The interval outlives
 * an end: the first line of the next outage goes out at once only if the last line went out an interval
 * before, so that a service that flaps, or a late failure just after an end, writes one line an interval.
 * Ends are paced alike: one within an interval of the last end said is not said, and the outage stays open
 * with its count, for the next end after it (or the next line out) to say; so requests that fail and
 * succeed in turn write at most a line and an end an interval. Lines of another kind the outage also
 * causes (warnings: gw_log_outage_other_due) are paced apart, so that neither kind keeps the other's first
 * line from going out. Embedded: gw_log_outage_init / gw_log_outage_cleanup.
 */
struct gw_log_outage {
    pthread_mutex_t lock;
    atomic_bool open;   /* a line of the outage went out or was held back, and its end was not said */
    time_t last;        /* when the last line went out, of this outage or an earlier one (0: none yet) */
    time_t last_end;    /* when the last end was said (0: none yet) */
    unsigned long held; /* lines held back since */
    /* the lines of another kind (gw_log_outage_other_due) */
    bool other_out;           /* the first of them in the outage open went out */
    time_t other_last;        /* when the last of them went out */
    unsigned long other_held; /* those held back since */
};
void gw_log_outage_init(struct gw_log_outage *o);
void gw_log_outage_cleanup(struct gw_log_outage *o);

/*
 * gw_log_outage_due: whether one more line of |o|'s outage (begun by this one if none is open) may go out
 * at |now|: true with |held| (gw_log_pace_due's), false with the line counted as held back. A clock that
 * went back lets the line out. Thread-safe.
 */
bool gw_log_outage_due(struct gw_log_outage *o, time_t now, char held[GW_LOG_HELD_LEN]);

/*
 * gw_log_outage_other_due: whether one more line of another kind that |o|'s outage (begun by this one if
 * none is open) also causes, a warning, may go out at |now|. The first of them in an outage goes out at
 * once, for the operator to see which steps fail; the next ones once a GW_LOG_OUTAGE_SECS from the last
 * of them, |held| their count held back since it. Apart from gw_log_outage_due's lines: neither their
 * interval nor their count is touched, so the outage's first line goes out at once after a warning too.
 * The end says both counts (gw_log_outage_end). A clock that went back lets the line out. Thread-safe.
 */
bool gw_log_outage_other_due(struct gw_log_outage *o, time_t now, char held[GW_LOG_HELD_LEN]);

/*
 * gw_log_outage_end: whether an outage of |o| was open (a line of it went out or was held back) and is over
 * at |now|: true with |held| the decimal count of the lines held back since the last one out of either
 * kind (gw_log_outage_other_due's too), for the line that says its end; false, the outage left open, when
 * the last end was said less than GW_LOG_OUTAGE_SECS before (a clock that went back lets it be said). |now|
 * 0: said at once whenever (a stop, whose count must not be lost). Takes no lock while none is open.
 * Thread-safe.
 */
bool gw_log_outage_end(struct gw_log_outage *o, time_t now, char held[GW_LOG_HELD_LEN]);

/*
 * The escaper of every text a person reads that a client or a CA wrote. gw_json_escape writes |s|
 * JSON-escaped into |buf| (always NUL-terminated, truncated to |cap|, never inside an escape or a
 * UTF-8 sequence); a byte that is not part of valid UTF-8, and a character that a reader would not
 * see as itself (a C1 control, or a character of the Unicode general categories Cf, Zl or Zp:
 * bidirectional controls, zero-width and other invisible characters, line separators), become
 * \ufffd.
 */
size_t gw_json_escape(char *buf, size_t cap, const char *s);

/* gw_json_escape_n: gw_json_escape of the |len| bytes at |s|, a NUL among them written \u0000 (an
   IA5String may hold one). Needs at most 6 * |len| + 1 bytes. */
size_t gw_json_escape_n(char *buf, size_t cap, const char *s, size_t len);

/*
 * gw_text_escape is gw_json_escape for plain text (a table cell of a subcommand, an HTTP error line):
 * the |len| bytes of |s|, a NUL among them written \u0000 (an IA5String may hold one); ASCII controls
 * and '\' escaped as in JSON ("\t", "\u001b", "\\"), '"' kept, and what gw_json_escape writes
 * \ufffd for written as U+FFFD itself. Needs at most 6 * |len| + 1 bytes. Returns the length.
 */
size_t gw_text_escape(char *buf, size_t cap, const char *s, size_t len);

/*
 * gw_utf8_repair copies |s| into |buf| (|cap| bytes with the NUL), cut between characters, with
 * U+FFFD for each byte not part of well-formed UTF-8 and each character gw_json_escape replaces:
 * for text kept as a value (a metric's label, a report's key) that its writer escapes later. ASCII
 * controls are copied, the writer's to escape. Needs at most 3 * strlen(|s|) + 1. Returns the length.
 */
size_t gw_utf8_repair(char *buf, size_t cap, const char *s);

/*
 * gw_utf8_scrub turns every byte of |s| that is not part of well-formed UTF-8 into '?', in place:
 * text cut to a length may end inside a character, and what a client reads as a UTF8String (a
 * statusString) must be UTF-8. A character that a reader would not see as itself (as gw_json_escape)
 * becomes one '?' too: a CA's words quoted must read as they say; and so does an ASCII control
 * (a statusString has no escapes: a newline or an ESC in it would act on what shows it).
 */
void gw_utf8_scrub(char *s);

/*
 * gw_utf8_hidden: the first character of |s| that gw_json_escape and gw_utf8_scrub replace as one a
 * reader would not see as itself (a C1 control, or one of the general categories Cf, Zl, Zp), or 0 if
 * none. |*at| is its place, counted in characters from 1 (a byte not part of well-formed UTF-8 counts
 * as one), or 0. ASCII controls are the caller's to judge.
 */
uint32_t gw_utf8_hidden(const char *s, size_t *at);

/* Lowercase hex of |n| bytes into |out| (2n+1 bytes). */
void gw_hex(char *out, const unsigned char *in, size_t n);

#endif
