/*
 * Unit tests for mappings/subject.c: the one-line subject form taken apart attribute by attribute, and the
 * subject patterns that can never match (refused at load: test_config), each with a twin that can.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "mappings/subject.h"

/* An attribute ends at the next '/' or unescaped '+'; "\+" and "\xHH" are inside it. */
static void test_attr_len(void **state)
{
    static const struct {
        const char *s;
        size_t want;
    } t[] = {
        {"CN=a/O=b", 4},   {"CN=a+OU=b", 4}, {"CN=a\\+OU=b", 10}, {"CN=M\\xC3\\xBCller/O=x", 16},
        {"CN=a", 4},       {"", 0},          {"/CN=a", 0},        {"CN=a\\", 5}, /* a cut escape */
        {"CN=a\\\\+b", 6}, /* "\\\\" is one escape, then "+" a boundary: no subject line holds one */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t got = gw_subject_attr_len(t[i].s, strlen(t[i].s));

        if (got != t[i].want)
            fail_msg("case %zu \"%s\": %zu, want %zu", i, t[i].s, got, t[i].want);
    }
}

/* An RDN ends at the next '/'; its attributes at each unescaped '+', at most |max| of them. */
static void test_rdn(void **state)
{
    static const char multi[] = "OU=ops+CN=dev\\+1+mail=a@b/O=x";
    struct gw_subject_attr a[3];
    size_t n = gw_subject_rdn_len(multi, strlen(multi));

    (void)state;
    assert_int_equal(n, 25);
    assert_int_equal(gw_subject_rdn_attrs(multi, n, a, 3), 3);
    assert_int_equal(a[0].off, 0);
    assert_int_equal(a[0].len, 6);
    assert_int_equal(a[1].off, 7);
    assert_int_equal(a[1].len, 9); /* CN=dev\+1 */
    assert_int_equal(a[2].off, 17);
    assert_int_equal(a[2].len, 8);
    assert_int_equal(gw_subject_rdn_attrs(multi, n, a, 2), -1);
    assert_int_equal(gw_subject_rdn_len("/O=x", 4), 0);
    assert_int_equal(gw_subject_rdn_attrs("", 0, a, 3), 1); /* the empty one before a line's first '/' */
    assert_int_equal(a[0].len, 0);
    assert_int_equal(gw_subject_rdn_len("CN=a+", 5), 5);
    assert_int_equal(gw_subject_rdn_attrs("CN=a+", 5, a, 3), 2); /* and an empty one after the "+" */
    assert_int_equal(gw_subject_rdn_len("CN=a\\", 5), 5);
}

static void test_attr_is_email(void **state)
{
    (void)state;
    assert_true(gw_subject_attr_is_email("emailAddress=a@b", 16));
    assert_true(gw_subject_attr_is_email("mail=a@b", 8));
    assert_true(gw_subject_attr_is_email("mail=", 5));
    assert_false(gw_subject_attr_is_email("mail", 4));
    assert_false(gw_subject_attr_is_email("mailPreferenceOption=a@b", 24));
    assert_false(gw_subject_attr_is_email("CN=mail=a@b", 11));
    assert_false(gw_subject_attr_is_email("Mail=a@b", 8)); /* as X509_NAME_oneline names it, exactly */
    assert_false(gw_subject_attr_is_email("mail=a@b", 4)); /* |n| bounds it */
}

static void test_two_at(void **state)
{
    (void)state;
    assert_true(gw_subject_two_at("a@evil@example.com", 18));
    assert_true(gw_subject_two_at("@@", 2));
    assert_false(gw_subject_two_at("a@example.com", 13));
    assert_false(gw_subject_two_at("a@b@c", 3)); /* |n| bounds it */
    assert_false(gw_subject_two_at("", 0));
}

/* local-part@domain, one '@': what keeps a name from being one, and the twins that are one */
static void test_email_flaw(void **state)
{
    static const struct {
        const char *s;
        enum gw_email_flaw want;
    } t[] = {
        {"alice@example.com", GW_EMAIL_OK},
        {"a@b", GW_EMAIL_OK},
        {"*@*", GW_EMAIL_OK}, /* a pattern reads the same */
        {"**@**.example", GW_EMAIL_OK},
        {"a@evil@example.com", GW_EMAIL_TWO_AT},
        {"@@", GW_EMAIL_TWO_AT}, /* two '@' first: the refusal that says the most */
        {"@a@", GW_EMAIL_TWO_AT},
        {"alice", GW_EMAIL_NO_AT},
        {"*", GW_EMAIL_NO_AT},
        {"", GW_EMAIL_NO_AT},
        {"@example.com", GW_EMAIL_NO_LOCAL},
        {"@", GW_EMAIL_NO_LOCAL},
        {"alice@", GW_EMAIL_NO_DOMAIN},
        {"*@", GW_EMAIL_NO_DOMAIN},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        enum gw_email_flaw got = gw_subject_email_flaw(t[i].s, strlen(t[i].s));

        if (got != t[i].want)
            fail_msg("case %zu \"%s\": %d, want %d", i, t[i].s, (int)got, (int)t[i].want);
    }
    assert_int_equal(gw_subject_email_flaw("a@b@c", 3), GW_EMAIL_OK); /* |n| bounds it */
    assert_int_equal(gw_subject_email_flaw("a@b", 2), GW_EMAIL_NO_DOMAIN);
    /* of an attribute: its value, if it is an address's */
    assert_int_equal(gw_subject_attr_email_flaw("mail=a@b", 8), GW_EMAIL_OK);
    assert_int_equal(gw_subject_attr_email_flaw("mail=ceo", 8), GW_EMAIL_NO_AT);
    assert_int_equal(gw_subject_attr_email_flaw("emailAddress=@b", 15), GW_EMAIL_NO_LOCAL);
    assert_int_equal(gw_subject_attr_email_flaw("emailAddress=", 13), GW_EMAIL_NO_AT);
    assert_int_equal(gw_subject_attr_email_flaw("mail=a@b", 7), GW_EMAIL_NO_DOMAIN); /* |n| bounds it */
    assert_int_equal(gw_subject_attr_email_flaw("CN=ceo", 6), GW_EMAIL_OK);          /* no address's */
    assert_int_equal(gw_subject_attr_email_flaw("OU=a@b@c", 8), GW_EMAIL_OK);
}

/*
 * A pattern whose email address is none (two '@', none, nothing on a side of it) can never match:
 * gw_subject_match refuses such a subject, and a '*' there matches no '@'.
 */
static void test_pattern_dead(void **state)
{
    static const struct {
        const char *pat, *want; /* want: the attribute named, or NULL */
        enum gw_email_flaw flaw;
    } t[] = {
        {"/CN=*/emailAddress=a@evil@example.com", "emailAddress", GW_EMAIL_TWO_AT},
        {"/CN=*/emailAddress=*@*@example.com", "emailAddress", GW_EMAIL_TWO_AT},
        {"/O=Corp/mail=a@@corp.example", "mail", GW_EMAIL_TWO_AT},
        {"/CN=*+mail=a@b@c/O=x", "mail", GW_EMAIL_TWO_AT}, /* in a multi-valued RDN */
        {"/mail=a@b@c", "mail", GW_EMAIL_TWO_AT},
        {"/CN=*/emailAddress=a@b@c/mail=x@y@z", "emailAddress", GW_EMAIL_TWO_AT}, /* the first */
        {"/emailAddress=*", "emailAddress", GW_EMAIL_NO_AT},
        {"/CN=*/mail=**+OU=x", "mail", GW_EMAIL_NO_AT},
        {"/CN=*/mail=", "mail", GW_EMAIL_NO_AT},
        {"/CN=*/emailAddress=@example.com", "emailAddress", GW_EMAIL_NO_LOCAL},
        {"/CN=*/mail=*@", "mail", GW_EMAIL_NO_DOMAIN},
        {"/CN=*/mail=ceo/emailAddress=a@b@c", "mail", GW_EMAIL_NO_AT}, /* the first */
        /* twins: an address, or the '@'s in an attribute that is no address's */
        {"/CN=*/emailAddress=*@example.com", NULL, GW_EMAIL_OK},
        {"/O=Corp/mail=*@*.example", NULL, GW_EMAIL_OK},
        {"/O=Corp/mail=**@**", NULL, GW_EMAIL_OK}, /* a "**" may match nothing, but also a letter */
        {"/CN=a\\+mail=a@b@c", NULL, GW_EMAIL_OK}, /* "\+" is a plus inside the CN */
        {"/CN=*/*=a@b@c", NULL, GW_EMAIL_OK},      /* any attribute: an OU may hold that */
        {"/CN=*/*=*", NULL, GW_EMAIL_OK},
        {"/CN=*/mailPreferenceOption=a@b@c", NULL, GW_EMAIL_OK},
        {"/CN=a@b@c", NULL, GW_EMAIL_OK},
        {"/CN=ceo", NULL, GW_EMAIL_OK},
        {"", NULL, GW_EMAIL_OK},
        {"//+/", NULL, GW_EMAIL_OK},
        {"/CN=a\\", NULL, GW_EMAIL_OK},
    };
    enum gw_email_flaw flaw;

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        const char *got = gw_subject_pattern_dead(t[i].pat, &flaw);

        if ((got == NULL) != (t[i].want == NULL) || (got != NULL && strcmp(got, t[i].want) != 0) ||
            flaw != t[i].flaw)
            fail_msg("case %zu \"%s\": %s (flaw %d), want %s (flaw %d)", i, t[i].pat,
                     got != NULL ? got : "NULL", (int)flaw, t[i].want != NULL ? t[i].want : "NULL",
                     (int)t[i].flaw);
    }
    assert_null(gw_subject_pattern_dead(NULL, &flaw));
    assert_int_equal(flaw, GW_EMAIL_OK);
}

/*
 * A pattern with an RDN of more than GW_MAX_RDN_ATTRS attributes can never match: gw_subject_match takes
 * such an RDN of neither a subject nor a pattern. Twins: 16 attributes, and a '+' escaped inside a value.
 */
static void test_pattern_crowded(void **state)
{
    static const char *const sixteen =
        "CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+CN=*+"
        "CN=*+CN=*";
    static const struct {
        const char *pre, *post;
        int want;
    } t[] = {
        {"/", "", 0},               /* 16 attributes */
        {"/", "+OU=x", 1},          /* 17 */
        {"/O=x/", "/CN=a", 0},      /* 16 among other RDNs */
        {"/O=x/", "+OU=x/CN=a", 1}, /* 17 in the second RDN */
        {"/O=x/CN=a/", "+OU=x", 1}, /* 17 in the last */
        {"/", "\\+OU=x", 0},        /* a plus inside the last value: 16 */
        {"/", "/OU=x+OU=y", 0},     /* 16, then 2 */
    };
    char pat[512];

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        snprintf(pat, sizeof(pat), "%s%s%s", t[i].pre, sixteen, t[i].post);
        if (gw_subject_pattern_crowded(pat) != t[i].want)
            fail_msg("case %zu \"%s\": want %d", i, pat, t[i].want);
    }
    assert_int_equal(gw_subject_pattern_crowded(NULL), 0);
    assert_int_equal(gw_subject_pattern_crowded(""), 0);
}

/*
 * A backslash of a pattern must begin an escape X509_NAME_oneline writes: "\+", or "\x" and two upper-case
 * hex digits of a byte outside printable ASCII. Any other stands for nothing a subject's line holds.
 */
static void test_pattern_bad_escape(void **state)
{
    static const struct {
        const char *pat;
        long want; /* the offset of the backslash named, or -1 */
    } t[] = {
        {"/CN=dev\\*", 7},          /* no literal star */
        {"/CN=M\\xc3\\xbcller", 5}, /* lower-case hex */
        {"/CN=\\x41", 4},           /* 'A' is written as itself */
        {"/CN=\\x20", 4},           /* so is ' ' */
        {"/CN=\\x7E", 4},           /* and '~' */
        {"/CN=a\\", 5},             /* cut */
        {"/CN=a\\x", 5},            /* cut */
        {"/CN=a\\xC", 5},           /* cut */
        {"/CN=a\\xG1", 5},
        {"/CN=a\\,b", 5},
        {"/CN=a\\\\b", 5},         /* a backslash of its own: no subject's line holds one */
        {"/CN=a\\+b/O=x\\=y", 12}, /* the second */
        /* twins: the escapes the one-line form writes */
        {"/CN=dev\\+ops", -1},
        {"/CN=M\\xC3\\xBCller", -1},
        {"/CN=\\x1F\\x7F\\x80\\xFF\\x00", -1},
        {"/CN=a\\+\\+/O=*\\xE2\\x80\\x8B", -1},
        {"/CN=*", -1},
        {"", -1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        const char *got = gw_subject_pattern_bad_escape(t[i].pat);
        long off = got != NULL ? (long)(got - t[i].pat) : -1;

        if (off != t[i].want)
            fail_msg("case %zu \"%s\": %ld, want %ld", i, t[i].pat, off, t[i].want);
    }
    assert_null(gw_subject_pattern_bad_escape(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attr_len),        cmocka_unit_test(test_rdn),
        cmocka_unit_test(test_attr_is_email),   cmocka_unit_test(test_two_at),
        cmocka_unit_test(test_email_flaw),      cmocka_unit_test(test_pattern_dead),
        cmocka_unit_test(test_pattern_crowded), cmocka_unit_test(test_pattern_bad_escape),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
