/*
 * The one-line subject form taken apart attribute by attribute (mappings/subject.h). Pure: no I/O.
 */
#include <string.h>
#include "mappings/subject.h"
#include "base/limits.h"

size_t gw_subject_attr_len(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && s[i] != '/' && s[i] != '+')
        i += s[i] == '\\' ? 2 : 1;
    return i < n ? i : n;
}

size_t gw_subject_rdn_len(const char *s, size_t n)
{
    size_t i = gw_subject_attr_len(s, n);

    while (i < n && s[i] == '+')
        i += 1 + gw_subject_attr_len(s + i + 1, n - i - 1);
    return i;
}

int gw_subject_rdn_attrs(const char *rdn, size_t n, struct gw_subject_attr *out, int max)
{
    size_t off = 0, len;
    int k = 0;

    for (;;) {
        len = gw_subject_attr_len(rdn + off, n - off);
        if (k == max)
            return -1;
        out[k].off = off;
        out[k++].len = len;
        off += len;
        if (off >= n)
            return k;
        off++; /* the '+' */
    }
}

/* The attribute types whose value is an email address, as X509_NAME_oneline names them. */
static const char *const email_attrs[] = {"emailAddress", "mail"};

/* The name of email address attribute |s| (|n| bytes, "mail=a@b"), or NULL. */
static const char *email_attr(const char *s, size_t n)
{
    size_t k;

    for (size_t i = 0; i < sizeof(email_attrs) / sizeof(email_attrs[0]); i++) {
        k = strlen(email_attrs[i]);
        if (n > k && memcmp(s, email_attrs[i], k) == 0 && s[k] == '=')
            return email_attrs[i];
    }
    return NULL;
}

int gw_subject_attr_is_email(const char *s, size_t n)
{
    return email_attr(s, n) != NULL;
}

int gw_subject_two_at(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);

    return at != NULL && memchr(at + 1, '@', n - (size_t)(at + 1 - s)) != NULL;
}

enum gw_email_flaw gw_subject_email_flaw(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);

    if (gw_subject_two_at(s, n))
        return GW_EMAIL_TWO_AT;
    if (at == NULL)
        return GW_EMAIL_NO_AT;
    if (at == s)
        return GW_EMAIL_NO_LOCAL;
    return at == s + n - 1 ? GW_EMAIL_NO_DOMAIN : GW_EMAIL_OK;
}

enum gw_email_flaw gw_subject_attr_email_flaw(const char *s, size_t n)
{
    const char *name = email_attr(s, n);
    size_t k = name != NULL ? strlen(name) + 1 : 0; /* the value, after the '=' */

    return name != NULL ? gw_subject_email_flaw(s + k, n - k) : GW_EMAIL_OK;
}

int gw_subject_pattern_crowded(const char *pat)
{
    struct gw_subject_attr attrs[GW_MAX_RDN_ATTRS];
    size_t off = 0, n, len;

    if (pat == NULL)
        return 0;
    n = strlen(pat);
    for (;;) { /* as gw_subject_match steps: an RDN, then the '/' after it */
        len = gw_subject_rdn_len(pat + off, n - off);
        if (gw_subject_rdn_attrs(pat + off, len, attrs, GW_MAX_RDN_ATTRS) < 0)
            return 1;
        off += len;
        if (off >= n)
            return 0;
        off++;
    }
}

const char *gw_subject_pattern_dead(const char *pat, enum gw_email_flaw *flaw)
{
    size_t off = 0, n, len;

    *flaw = GW_EMAIL_OK;
    if (pat == NULL)
        return NULL;
    n = strlen(pat);
    while (off < n) {
        off += pat[off] == '/' || pat[off] == '+'; /* the boundary before an attribute */
        len = gw_subject_attr_len(pat + off, n - off);
        if ((*flaw = gw_subject_attr_email_flaw(pat + off, len)) != GW_EMAIL_OK)
            return email_attr(pat + off, len);
        off += len;
    }
    return NULL;
}

/* Whether |c| is a digit of the hex X509_NAME_oneline writes: 0-9 and upper-case A-F. */
static int upper_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : c - 'A' + 10;
}

const char *gw_subject_pattern_bad_escape(const char *pat)
{
    const char *p;
    int byte;

    for (p = pat != NULL ? strchr(pat, '\\') : NULL; p != NULL; p = strchr(p, '\\')) {
        if (p[1] == '+') {
            p += 2;
            continue;
        }
        if (p[1] != 'x' || !upper_hex(p[2]) || !upper_hex(p[3]))
            return p;
        byte = hex_value(p[2]) * 16 + hex_value(p[3]);
        if (byte >= ' ' && byte <= '~') /* written as itself */
            return p;
        p += 4;
    }
    return NULL;
}
