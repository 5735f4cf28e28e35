/* Checked reads of an upstream's JSON answer (field.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"
#include "upstream/field.h"

#define SHOWN_LEN 32 /* a refused value, as a reason shows it */
#define NAME_LEN 64  /* a field name with an index: "data.ca_chain[15]" */

static const char *type_word(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_boolean:
        return "a boolean";
    case json_type_double:
        return "a number with a fraction or exponent";
    case json_type_int:
        return "an integer";
    case json_type_object:
        return "an object";
    case json_type_array:
        return "an array";
    case json_type_string:
        return "a string";
    case json_type_null:
        break;
    }
    return "null";
}

static int missing(const char *name, char *err)
{
    return gw_field_fail(err, "%s is missing or null", name);
}

/* Whether |len| bytes of |s| are JSON whitespace only (or none); reads no further. */
static bool blank(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/*
 * The objects and arrays json-c would build of |len| bytes of |s|, or more: its '{' and '[' bytes outside
 * strings (a Vault role's templated allowed_uri_sans, "spiffe://x/{{identity.entity.id}}", holds hundreds
 * in strings). json-c spends some 750 bytes on an object (a hash table of 16 slots) and 140 on an array:
 * 1 MiB of "{}," took 260 MB before a field was read. Only a string's quotes and backslashes are followed,
 * nothing is parsed: json-c is the only parser. A string ends at the quote that opened it, '"' or '\'':
 * json-c takes a single-quoted key even when strict, so a '"' in one opens no string (were it taken as
 * one, every bracket after it would go uncounted). On JSON the two agree, and json-c builds nothing past
 * the first byte that is not JSON.
 */
static size_t containers(const char *s, size_t len)
{
    char quote = 0; /* the quote of the string |s[i]| is in, or 0 */
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (quote != 0 && s[i] == '\\')
            i++; /* the escaped byte, a quote or a backslash among them, neither ends nor starts a string */
        else if (quote != 0)
            quote = s[i] == quote ? 0 : quote;
        else if (s[i] == '"' || s[i] == '\'')
            quote = s[i];
        else
            n += s[i] == '{' || s[i] == '[';
    }
    return n;
}

int gw_field_unread(const char *body, size_t len, char *err)
{
    if (len > GW_MAX_UPSTREAM_BODY)
        return gw_field_fail(err, "the answer is larger than %d bytes", GW_MAX_UPSTREAM_BODY);
    if (body != NULL && containers(body, len) > GW_MAX_UPSTREAM_CONTAINERS)
        return gw_field_fail(err, "the answer holds more than %d '{' and '[' (objects and arrays)",
                             GW_MAX_UPSTREAM_CONTAINERS);
    return 0;
}

/* gw_field_parse_object, and when |leading| is not NULL, gw_field_parse_leading's *leading. */
static json_object *parse_object(const char *body, size_t len, json_object **leading, char *err)
{
    json_tokener *tok = NULL;
    json_object *o = NULL;
    enum json_tokener_error e;
    size_t end;

    if (body == NULL || blank(body, len)) {
        gw_field_fail(err, "the answer is empty");
        return NULL;
    }
    if (gw_field_unread(body, len, err) != 0)
        return NULL;
    if ((tok = json_tokener_new()) == NULL) {
        gw_field_fail(err, "out of memory");
        return NULL;
    }
    /* trailing characters are let through to be named as such below, not as an "unexpected character" */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, body, (int)len);
    e = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    if (e == json_tokener_continue) {
        /* a number at the very end may be complete: json-c needs a NUL of its own to know */
        o = json_tokener_parse_ex(tok, "", 1);
        e = json_tokener_get_error(tok) == json_tokener_success ? json_tokener_success
                                                                : json_tokener_continue;
        end = len;
    }
    if (e == json_tokener_continue)
        gw_field_fail(err, "truncated: the answer ends inside the JSON document");
    else if (e != json_tokener_success)
        gw_field_fail(err, "%s at byte %zu", json_tokener_error_desc(e), end);
    else if (end != len && leading != NULL && json_object_is_type(o, json_type_object)) {
        gw_field_fail(err, "trailing data after the JSON document, at byte %zu of %zu", end, len);
        *leading = o;
        o = NULL;
    } else if (end != len)
        gw_field_fail(err, "trailing data after the JSON document, at byte %zu of %zu", end, len);
    else if (!json_object_is_type(o, json_type_object))
        gw_field_fail(err, "the JSON document is %s, not an object", type_word(o));
    else
        goto out;
    json_object_put(o);
    o = NULL;
out:
    json_tokener_free(tok);
    return o;
}

json_object *gw_field_parse_object(const char *body, size_t len, char *err)
{
    return parse_object(body, len, NULL, err);
}

json_object *gw_field_parse_leading(const char *body, size_t len, json_object **leading, char *err)
{
    *leading = NULL;
    return parse_object(body, len, leading, err);
}

json_object *gw_field_member(json_object *obj, const char *key)
{
    json_object *m = NULL;

    if (obj == NULL || !json_object_is_type(obj, json_type_object) ||
        !json_object_object_get_ex(obj, key, &m))
        return NULL;
    return m;
}

int gw_field_object(json_object *v, const char *name, char *err)
{
    if (v == NULL)
        return missing(name, err);
    if (!json_object_is_type(v, json_type_object))
        return gw_field_fail(err, "%s is %s, not an object", name, type_word(v));
    return 0;
}

int gw_field_array(json_object *v, const char *name, size_t max, size_t *n, char *err)
{
    if (v == NULL)
        return missing(name, err);
    if (!json_object_is_type(v, json_type_array))
        return gw_field_fail(err, "%s is %s, not an array", name, type_word(v));
    if ((*n = json_object_array_length(v)) > max)
        return gw_field_fail(err, "%s has %zu entries, more than %zu", name, *n, max);
    return 0;
}

int gw_field_bool(json_object *v, const char *name, bool *out, char *err)
{
    if (v == NULL)
        return missing(name, err);
    if (!json_object_is_type(v, json_type_boolean))
        return gw_field_fail(err, "%s is %s, not true or false", name, type_word(v));
    *out = json_object_get_boolean(v) != 0;
    return 0;
}

int gw_field_int(json_object *v, const char *name, unsigned flags, int64_t min, int64_t max, int64_t *out,
                 char *err)
{
    char shown[SHOWN_LEN];
    const char *s;
    int64_t n;
    int len;

    if (v == NULL)
        return missing(name, err);
    if (json_object_is_type(v, json_type_string) && (flags & GW_FIELD_DIGITS) != 0) {
        s = json_object_get_string(v);
        len = json_object_get_string_len(v);
        gw_field_text(shown, sizeof(shown), s, (size_t)len);
        /* 18 digits cannot overflow an int64_t */
        if (len < 1 || len > 18 || strspn(s, "0123456789") != (size_t)len)
            return gw_field_fail(err, "%s is the string \"%s\", not a number", name, shown);
        n = strtoll(s, NULL, 10);
    } else if (json_object_is_type(v, json_type_int)) {
        /* json-c reads an integer beyond int64_t as INT64_MAX or INT64_MIN: out of every range here */
        snprintf(shown, sizeof(shown), "%s", json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        n = json_object_get_int64(v);
        if (n == INT64_MAX || n == INT64_MIN)
            return gw_field_fail(err, "%s is %s, not %lld to %lld", name, shown, (long long)min,
                                 (long long)max);
    } else if (json_object_is_type(v, json_type_double)) {
        snprintf(shown, sizeof(shown), "%s", json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        return gw_field_fail(err, "%s is %s, not an integer", name, shown);
    } else {
        return gw_field_fail(err, "%s is %s, not an integer", name, type_word(v));
    }
    if (n < min || n > max)
        return gw_field_fail(err, "%s is %s, not %lld to %lld", name, shown, (long long)min, (long long)max);
    *out = n;
    return 0;
}

int gw_field_string(json_object *v, const char *name, size_t min, size_t max, const char **s, size_t *len,
                    char *err)
{
    const char *p;
    size_t n;

    if (v == NULL)
        return missing(name, err);
    if (!json_object_is_type(v, json_type_string))
        return gw_field_fail(err, "%s is %s, not a string", name, type_word(v));
    p = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    if (n == 0 && min > 0)
        return gw_field_fail(err, "%s is empty", name);
    if (n < min)
        return gw_field_fail(err, "%s is %zu bytes, fewer than %zu", name, n, min);
    if (n > max)
        return gw_field_fail(err, "%s is %zu bytes, more than %zu", name, n, max);
    if (memchr(p, '\0', n) != NULL) /* "\u0000": C code would read a shorter string than was sent */
        return gw_field_fail(err, "%s holds a NUL byte", name);
    *s = p;
    if (len != NULL)
        *len = n;
    return 0;
}

/* An encrypted PEM would otherwise make OpenSSL ask for a passphrase on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int gw_field_certs(json_object *v, const char *name, STACK_OF(X509) *into, size_t max, int recurring,
                   size_t *added, char *err)
{
    const char *s = NULL;
    size_t len = 0, n = 0;
    unsigned long e;
    unsigned char *der = NULL;
    long der_len = 0;
    BIO *b = NULL;
    X509 *x;
    int rc;

    if (added != NULL)
        *added = 0;
    if ((rc = gw_field_string(v, name, 1, GW_MAX_UPSTREAM_PEM, &s, &len, err)) != 0)
        return rc;
    if ((b = BIO_new_mem_buf(s, (int)len)) == NULL)
        return GW_ERR_NOMEM;
    ERR_set_mark();
    rc = GW_ERR_UPSTREAM;
    /* the blocks named as PEM_read_bio_X509 takes them, others skipped; the DER parsed here */
    while (PEM_bytes_read_bio(&der, &der_len, NULL, PEM_STRING_X509, b, no_passphrase, NULL) == 1) {
        x = recurring ? gw_x509_parse_cached(der, der_len) : gw_x509_d2i_exact(der, der_len);
        OPENSSL_free(der);
        der = NULL;
        if (x == NULL) {
            gw_field_fail(err, "%s holds an unreadable certificate", name);
            goto out;
        }
        if ((size_t)sk_X509_num(into) >= max) {
            X509_free(x);
            gw_field_fail(err, "%s holds more than %zu certificate%s", name, max, max == 1 ? "" : "s");
            goto out;
        }
        if (sk_X509_push(into, x) <= 0) {
            X509_free(x);
            rc = GW_ERR_NOMEM;
            goto out;
        }
        n++;
    }
    /* the loop ends at the first failure: only "no more PEM blocks" is the end of the text */
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
        gw_field_fail(err, "%s holds an unreadable or encrypted certificate", name);
    else if (n == 0)
        gw_field_fail(err, "%s holds no PEM certificate", name);
    else
        rc = 0;
out:
    ERR_pop_to_mark();
    BIO_free(b);
    if (added != NULL)
        *added = n;
    return rc;
}

int gw_field_messages(json_object *v, const char *name, char *out, size_t cap, char *err)
{
    char ename[NAME_LEN];
    const char *s;
    size_t n, i, len, used = 0;
    int rc;

    out[0] = '\0';
    if (v == NULL)
        return 0;
    if ((rc = gw_field_array(v, name, GW_MAX_UPSTREAM_MESSAGES, &n, err)) != 0)
        return rc;
    for (i = 0; i < n; i++) {
        snprintf(ename, sizeof(ename), "%s[%zu]", name, i);
        if ((rc = gw_field_string(json_object_array_get_idx(v, i), ename, 0, GW_MAX_UPSTREAM_MESSAGE, &s,
                                  &len, err)) != 0)
            return rc;
        if (len == 0 || used + 3 >= cap)
            continue;
        if (used != 0) {
            memcpy(out + used, "; ", 2);
            used += 2;
        }
        gw_field_text(out + used, cap - used, s, len);
        used += strlen(out + used);
    }
    return 0;
}

void gw_field_text(char *out, size_t cap, const char *in, size_t len)
{
    size_t i, n = len < cap - 1 ? len : cap - 1;

    if (n < len) /* cut at the start of a UTF-8 character, not inside one */
        while (n > 0 && ((unsigned char)in[n] & 0xc0) == 0x80)
            n--;
    for (i = 0; i < n; i++)
        out[i] = (unsigned char)in[i] < 0x20 || in[i] == 0x7f ? '?' : in[i];
    out[n] = '\0';
}

void gw_field_quote(char *out, size_t max, size_t words, const char *text)
{
    size_t room = words < GW_ERR_LEN - 1 ? GW_ERR_LEN - 1 - words : 0;

    gw_field_text(out, (room < max ? room : max) + 1, text, strlen(text));
}

void gw_field_reason(char *err, size_t max, const char *text, const char *tail, const char *fmt, ...)
{
    char words[GW_ERR_LEN], quote[GW_ERR_LEN]; /* a quote of room + 1 bytes, never more than GW_ERR_LEN */
    size_t used;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(words, sizeof(words), fmt, ap);
    va_end(ap);
    used = strlen(words);
    gw_field_quote(quote, max, used + strlen(tail), text);
    memcpy(err, words, used + 1);
    snprintf(err + used, GW_ERR_LEN - used, "%s%s", quote, tail);
}

json_object *gw_field_document(const char *body, size_t len, const char *what, char *err)
{
    char why[GW_ERR_LEN];
    json_object *root = gw_field_parse_object(body, len, why);

    if (root == NULL)
        gw_field_fail(err, "%s: %.200s", what, why);
    return root;
}

X509 *gw_field_issued_cert(json_object *root, const char *obj, const char *key)
{
    json_object *o = gw_field_member(root, obj);
    STACK_OF(X509) *one = NULL;
    char name[64], why[GW_ERR_LEN];
    X509 *cert = NULL;

    snprintf(name, sizeof(name), "%s.%s", obj, key);
    if (gw_field_object(o, obj, why) == 0 && (one = sk_X509_new_null()) != NULL) {
        (void)gw_field_certs(gw_field_member(o, key), name, one, 1, 0, NULL, why);
        cert = sk_X509_shift(one); /* the first, even when more follow (refused: the caller's answer is) */
    }
    sk_X509_pop_free(one, X509_free);
    return cert;
}

int gw_field_fail(char *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, GW_ERR_LEN, fmt, ap);
    va_end(ap);
    return GW_ERR_UPSTREAM;
}

/*
 * A secret at least this long is masked wherever it stands: that its characters occur by chance in an
 * answer of GW_MAX_UPSTREAM_BODY bytes is out of the question (Vault's tokens are some 26 to 100). A
 * shorter one, which an operator may choose (Vault's dev mode: "root"), is masked only where it is not
 * part of a longer run of letters, digits, "+" and "/": there it is a piece of a certificate's base64, a
 * serial or a number, which masking would break.
 */
#define MASK_ANYWHERE_LEN 16

/* Whether |c| may continue a run of data a short secret's characters stand in by chance: base64 (a
   certificate's PEM, its lines joined by "\n"), hex, a number. */
static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

void gw_field_mask(char *s, size_t len, const char *secret)
{
    size_t n = strlen(secret);
    char *p = s, *end = s != NULL ? s + len : NULL;

    if (n == 0)
        return;
    while (p != NULL && (size_t)(end - p) >= n && (p = memmem(p, (size_t)(end - p), secret, n)) != NULL) {
        if (n >= MASK_ANYWHERE_LEN || ((p == s || !word_char(p[-1])) && (p + n == end || !word_char(p[n])))) {
            memset(p, '*', n);
            p += n;
        } else {
            p++;
        }
    }
}

void gw_field_mask_strings(json_object *v, const char *secret)
{
    size_t i, n;

    if (v == NULL || secret == NULL)
        return;
    switch (json_object_get_type(v)) {
    case json_type_string: /* the tree's own bytes, as json-c decoded them */
        gw_field_mask((char *)json_object_get_string(v), (size_t)json_object_get_string_len(v), secret);
        break;
    case json_type_array:
        n = json_object_array_length(v);
        for (i = 0; i < n; i++)
            gw_field_mask_strings(json_object_array_get_idx(v, i), secret);
        break;
    case json_type_object: {
        json_object_object_foreach(v, key, member)
        {
            (void)key;
            gw_field_mask_strings(member, secret);
        }
        break;
    }
    default:
        break;
    }
}
