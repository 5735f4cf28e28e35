/*
 * Structured logs: one JSON object per line on stderr. Never pass a secret or a key.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stddef.h>

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

/* Writes |s| JSON-escaped into |buf| (always NUL-terminated, truncated to |cap|, never inside an escape
   or a UTF-8 sequence); a byte that is not part of valid UTF-8 becomes \ufffd. */
size_t gw_json_escape(char *buf, size_t cap, const char *s);

/* Lowercase hex of |n| bytes into |out| (2n+1 bytes). */
void gw_hex(char *out, const unsigned char *in, size_t n);

#endif
