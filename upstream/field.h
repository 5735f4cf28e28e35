/*
 * Checked reads of an upstream's JSON answer, for the answer parsers (answers.h). An upstream answer
 * is hostile: every value is read through one of these, which check its type, the range of a number,
 * the length of a string and the count of an array, and say what is wrong in one line naming the
 * field ("auth.lease_duration is -1, not 0 to 315360000"). Pure: no I/O, no state.
 *
 * |name| is the field as the reason names it ("data.ca_chain", "errors[0].code"). A NULL |v| is a
 * missing field (gw_field_member gives NULL for an absent member and for JSON null alike). Each check
 * returns 0, or GW_ERR_UPSTREAM with the reason in |err| (GW_ERR_LEN).
 */
#ifndef GW_FIELD_H
#define GW_FIELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <openssl/x509.h>

/*
 * gw_field_parse_object parses exactly |len| bytes of |body| (no NUL terminator needed; NULL with
 * len 0 is an empty answer) as one JSON object followed by nothing but whitespace, in json-c's strict
 * mode (no comments, trailing commas or leading zeros) and valid UTF-8, as Go's encoding/json, which
 * Vault and cfssl answer with, writes it, of at most GW_MAX_UPSTREAM_CONTAINERS '{' and '[' outside
 * strings (counted before json-c builds them). Returns the object (the caller's: json_object_put), or
 * NULL with the reason in |err| (empty, too large, too many of them, truncated, trailing data, not an
 * object, json-c's reason).
 */
json_object *gw_field_parse_object(const char *body, size_t len, char *err);

/*
 * gw_field_unread: 0, or GW_ERR_UPSTREAM with the reason in |err| when gw_field_parse_object refuses |len|
 * bytes of |body| unread, for their size (over GW_MAX_UPSTREAM_BODY) or their objects and arrays (over
 * GW_MAX_UPSTREAM_CONTAINERS): what such an answer holds, a certificate included, is not known.
 */
int gw_field_unread(const char *body, size_t len, char *err);

/*
 * gw_field_parse_leading is gw_field_parse_object, and when its only fault is bytes after a complete
 * JSON object, that object goes to *leading (the caller's: json_object_put; else NULL) while NULL is
 * returned: enough to learn what an answer says was done (a certificate issued), never to act on it.
 */
json_object *gw_field_parse_leading(const char *body, size_t len, json_object **leading, char *err);

/*
 * gw_field_issued_cert: the certificate at member |key| of the object at member |obj| of |root|
 * (data.certificate, result.certificate) of an answer refused whole, read with gw_field_certs' checks:
 * the first, also when more follow it; NULL if there is none (the caller's). For the record and the
 * withdrawal only, never to deliver it.
 */
X509 *gw_field_issued_cert(json_object *root, const char *obj, const char *key);

/* gw_field_document is gw_field_parse_object with the reason as "<what>: <why>" (an answer's root). */
json_object *gw_field_document(const char *body, size_t len, const char *what, char *err);

/* gw_field_fail writes a reason into |err| (GW_ERR_LEN) and returns GW_ERR_UPSTREAM. */
int gw_field_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The member |key| of object |obj|, borrowed; NULL if |obj| is NULL, or it lacks |key|, or is null. */
json_object *gw_field_member(json_object *obj, const char *key);

int gw_field_object(json_object *v, const char *name, char *err);
/* An array of at most |max| entries; their number in |n|. */
int gw_field_array(json_object *v, const char *name, size_t max, size_t *n, char *err);
int gw_field_bool(json_object *v, const char *name, bool *out, char *err);

/* gw_field_int flags: a string of 1 to 18 decimal digits, and nothing else, counts as its number. */
#define GW_FIELD_DIGITS 1u
/* An integer from |min| to |max|: not a fraction or exponent, not a string (but see GW_FIELD_DIGITS). */
int gw_field_int(json_object *v, const char *name, unsigned flags, int64_t min, int64_t max, int64_t *out,
                 char *err);
/* A string of |min| to |max| bytes without NUL; |*s| is borrowed from |v|, |len| may be NULL. */
int gw_field_string(json_object *v, const char *name, size_t min, size_t max, const char **s, size_t *len,
                    char *err);

/*
 * gw_field_certs reads a string of PEM text (at most GW_MAX_UPSTREAM_PEM bytes) and appends its
 * certificates to |into|, which may then hold at most |max|. Each certificate must read in full (its
 * PEM block one certificate's DER, nothing after it), and there must be one; an encrypted PEM is
 * refused without asking for a passphrase. Other PEM blocks (a private key) are skipped. |*added|
 * (may be NULL) is how many were appended. |recurring|: certificates that come back in every answer
 * (a CA's chain), parsed through the process's cache (gw_x509_parse_cached), shared by reference:
 * OpenSSL 3.0 builds a public-key decoder for each certificate it parses.
 */
int gw_field_certs(json_object *v, const char *name, STACK_OF(X509) *into, size_t max, int recurring,
                   size_t *added, char *err);

/*
 * gw_field_messages checks an optional array of strings (errors, warnings: at most
 * GW_MAX_UPSTREAM_MESSAGES of at most GW_MAX_UPSTREAM_MESSAGE bytes, no NUL) and joins the non-empty
 * ones with "; " into |out| (|cap| bytes, always terminated), as gw_field_text copies them. An absent
 * |v| is no messages.
 */
int gw_field_messages(json_object *v, const char *name, char *out, size_t cap, char *err);

/*
 * gw_field_text copies |len| bytes of upstream text into |out| (|cap| bytes, always terminated) for a
 * log or a statusString: control characters become '?', and a cut never splits a UTF-8 character.
 */
void gw_field_text(char *out, size_t cap, const char *in, size_t len);

/*
 * gw_field_quote copies |text| into |out| (|max| + 1 bytes) as gw_field_text does, cut to |max| bytes, or
 * fewer where a reason of GW_ERR_LEN bytes needs the room for |words| bytes of its own: a quote gives way
 * to the words around it, which say what to do.
 */
void gw_field_quote(char *out, size_t max, size_t words, const char *text);

/*
 * gw_field_reason writes a reason into |err| (GW_ERR_LEN): the words |fmt| makes, then |text| as
 * gw_field_quote cuts it (to |max| bytes, or to the room the words and |tail| leave), then |tail|.
 * |text| may be |err| itself: it is quoted before |err| is written.
 */
void gw_field_reason(char *err, size_t max, const char *text, const char *tail, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * gw_field_mask turns each copy of |secret| in the |len| bytes of |s| into asterisks: one of 16
 * characters or more wherever it stands, a shorter one only where it is not part of a longer run of
 * letters, digits, '+' and '/' (a piece of base64, hex or a number).
 */
void gw_field_mask(char *s, size_t len, const char *secret);

/*
 * gw_field_mask_strings masks |secret| (NULL: none) in every string of the answer |v| as gw_field_mask
 * does, in the tree's own bytes: as json-c decoded them from escapes ("\u0068vs."), which a mask of the
 * body it was parsed from cannot see.
 */
void gw_field_mask_strings(json_object *v, const char *secret);

#endif
