/*
 * The one-line form of a subject that the subject patterns read (gw_x509_name_line, X509_NAME_oneline),
 * taken apart attribute by attribute: for the matcher (gw_subject_match, mappings/policy.h) and for the
 * check of a pattern at load (mappings/role.c). Pure.
 *
 * The form writes '/' before each RDN and '+' between the attributes of a multi-valued one; a value's own
 * '+' as "\+", a byte outside printable ASCII as "\xHH". A subject pattern is written the same way, so an
 * unescaped '+' in a pattern is a boundary too ("/CN=dev-*+OU=ops"), and "\+" a plus inside a value.
 */
#ifndef GW_SUBJECT_H
#define GW_SUBJECT_H

#include <stddef.h>

/*
 * gw_subject_attr_len is the length of the attribute |s| (|n| bytes) begins with: up to the next '/' or
 * unescaped '+', or |n|. No value of a subject's line holds a '/' or a backslash (gw_x509_name_line), so
 * every backslash begins an escape of two bytes or more.
 */
size_t gw_subject_attr_len(const char *s, size_t n);

/* gw_subject_rdn_len is the length of the RDN |s| (|n| bytes) begins with: its attributes and the '+'
 * between them, up to the next '/', or |n|. */
size_t gw_subject_rdn_len(const char *s, size_t n);

/* One attribute of an RDN: where it begins, from the RDN's start, and its length. */
struct gw_subject_attr {
    size_t off, len;
};

/*
 * gw_subject_rdn_attrs reads RDN |rdn| (|n| bytes, as gw_subject_rdn_len delimits it) into its attributes
 * |out|, at most |max|: their count (one, empty, for an empty RDN), or -1 if it has more than |max|.
 */
int gw_subject_rdn_attrs(const char *rdn, size_t n, struct gw_subject_attr *out, int max);

/* Whether attribute |s| (|n| bytes, "mail=a@b") is an email address: emailAddress (PKCS #9) or mail
 * (rfc822Mailbox, RFC 4524 §2.16). */
int gw_subject_attr_is_email(const char *s, size_t n);

/* Whether |s| (|n| bytes) holds more than one '@': mailers differ on which ends the local part. */
int gw_subject_two_at(const char *s, size_t n);

/* What keeps a name from being an email address: local-part@domain, one '@' (RFC 5280 §4.2.1.6). */
enum gw_email_flaw {
    GW_EMAIL_OK,
    GW_EMAIL_TWO_AT,    /* more than one '@' (gw_subject_two_at) */
    GW_EMAIL_NO_AT,     /* none */
    GW_EMAIL_NO_LOCAL,  /* nothing before its '@' */
    GW_EMAIL_NO_DOMAIN, /* nothing after it */
};

/*
 * gw_subject_email_flaw says what keeps |s| (|n| bytes) from being an email address, in the order of
 * enum gw_email_flaw ("@@" has two '@'), or GW_EMAIL_OK. Of a value and of an email pattern alike: a '*'
 * of an email pattern matches no '@', so a pattern with a flaw matches only names with that flaw, and
 * one without matches an address (its own, each '*' read as a letter).
 */
enum gw_email_flaw gw_subject_email_flaw(const char *s, size_t n);

/* gw_subject_attr_email_flaw is gw_subject_email_flaw of the value of attribute |s| (|n| bytes, "mail=a@b"),
 * an email address's (gw_subject_attr_is_email), or GW_EMAIL_OK for another attribute. */
enum gw_email_flaw gw_subject_attr_email_flaw(const char *s, size_t n);

/*
 * gw_subject_pattern_dead says why subject pattern |pat| can match no subject: the name ("emailAddress",
 * "mail") of its first email address attribute whose value has a flaw (gw_subject_attr_email_flaw, into
 * |*flaw|), which gw_subject_match matches against no subject, since a '*' there matches no '@' (the value
 * matches only addresses with that flaw) and a subject's address with one is refused everywhere. NULL
 * (|*flaw| GW_EMAIL_OK) for any other pattern, one with "*" for the attribute type too (an OU may hold
 * "a@b@c").
 */
const char *gw_subject_pattern_dead(const char *pat, enum gw_email_flaw *flaw);

/*
 * gw_subject_pattern_crowded says whether subject pattern |pat| has an RDN of more than GW_MAX_RDN_ATTRS
 * attributes, read as gw_subject_match reads it: such an RDN matches no subject's (nor a subject's such RDN
 * any pattern's), so the pattern can match no subject.
 */
int gw_subject_pattern_crowded(const char *pat);

/*
 * gw_subject_pattern_bad_escape is the first backslash of subject pattern |pat| that begins no escape of the
 * one-line form, or NULL. X509_NAME_oneline writes a value's '+' as "\+" and a byte outside printable ASCII
 * (below ' ', above '~') as "\x" and two upper-case hex digits ("\xC3\xBC"); a subject holding a backslash
 * of its own matches no pattern (gw_x509_name_line). So "\*", "\,", "\xc3", "\x41" (an 'A', written as
 * itself) or a backslash at the end stand for nothing a subject's line holds.
 */
const char *gw_subject_pattern_bad_escape(const char *pat);

#endif
