/*
 * Metrics: the exact text each type renders, escaping and UTF-8 repair, histogram buckets, gauges
 * read at render time, definitions refused, the family and series caps (and the dropped counter),
 * exact totals under concurrent updates, the process's own families, and, where promtool is installed,
 * its verdict on a render.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/metrics.h"

/* What every render ends with while nothing was dropped. */
#define DROPPED_HEAD                                                                                         \
    "# HELP cmpgw_metrics_dropped_total Metric updates not applied because a series cap was reached.\n"      \
    "# TYPE cmpgw_metrics_dropped_total counter\n"
#define DROPPED_ZERO DROPPED_HEAD "cmpgw_metrics_dropped_total 0\n"

static int teardown(void **state)
{
    (void)state;
    gw_metrics_free_all();
    return 0;
}

/* The registry rendered (caller frees); checks the length and the NUL. */
static char *render(void)
{
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(gw_metrics_render(&out, &len), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

static void assert_render(const char *want)
{
    char *got = render();

    /* print_message, not fail_msg: the latter cuts long text */
    if (strcmp(got, want) != 0) {
        print_message("render:\n%s\nwant:\n%s", got, want);
        fail_msg("the render differs");
    }
    free(got);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;

    for (; (hay = strstr(hay, needle)) != NULL; hay += strlen(needle))
        n++;
    return n;
}

static void test_empty_registry(void **state)
{
    size_t len;

    (void)state;
    assert_render(DROPPED_ZERO);
    assert_int_equal(gw_metrics_render(NULL, &len), GW_ERR_INVAL);
    /* a NULL handle is ignored, not a crash */
    gw_metric_add(NULL, NULL, 1);
    gw_metric_set(NULL, NULL, 1);
    gw_metric_observe(NULL, NULL, 1);
}

static void test_counter_text(void **state)
{
    struct gw_metric *up, *req;

    (void)state;
    assert_non_null(up = gw_metric_new("cmpgw_up_total", "Unlabelled.", GW_METRIC_COUNTER, NULL, NULL, 0));
    assert_non_null(req = gw_metric_new("cmpgw_requests_total", "Requests answered.", GW_METRIC_COUNTER,
                                        (const char *const[]){"role", "status", NULL}, NULL, 0));
    /* an unlabelled counter exists from the start; a labelled family has no series yet */
    assert_render("# HELP cmpgw_up_total Unlabelled.\n"
                  "# TYPE cmpgw_up_total counter\n"
                  "cmpgw_up_total 0\n"
                  "# HELP cmpgw_requests_total Requests answered.\n"
                  "# TYPE cmpgw_requests_total counter\n" DROPPED_ZERO);
    gw_metric_add(up, NULL, 1);
    gw_metric_add(up, NULL, 2.5);
    gw_metric_add(up, NULL, -1);  /* a counter never goes down */
    gw_metric_add(up, NULL, NAN); /* nor becomes NaN */
    gw_metric_set(up, NULL, 100); /* nor is set */
    gw_metric_observe(up, NULL, 1);
    gw_metric_add(req, (const char *const[]){"ra", "200"}, 1);
    gw_metric_add(req, (const char *const[]){"ee", "503"}, 1);
    gw_metric_add(req, (const char *const[]){"ra", "200"}, 1);
    assert_render("# HELP cmpgw_up_total Unlabelled.\n"
                  "# TYPE cmpgw_up_total counter\n"
                  "cmpgw_up_total 3.5\n"
                  "# HELP cmpgw_requests_total Requests answered.\n"
                  "# TYPE cmpgw_requests_total counter\n"
                  "cmpgw_requests_total{role=\"ra\",status=\"200\"} 2\n"
                  "cmpgw_requests_total{role=\"ee\",status=\"503\"} 1\n" DROPPED_ZERO);
}

static void test_gauge_text(void **state)
{
    static const struct {
        const char *label;
        double v;
    } sets[] = {
        {"int", 5},
        {"frac", 0.1},
        {"pinf", INFINITY},
        {"ninf", -INFINITY},
        {"nan", NAN},
        {"big", 1e20},
        {"two53", 9007199254740992.0},
        {"small", 1.5e-7},
        {"neg", -0.25},
        {"long", 123456789012.0},
        {"negzero", -0.0},
    };
    struct gw_metric *g, *plain;
    size_t i;

    (void)state;
    assert_non_null(plain = gw_metric_new("cmpgw_plain", "No labels.", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_non_null(g = gw_metric_new("cmpgw_level", "Levels.", GW_METRIC_GAUGE,
                                      (const char *const[]){"k", NULL}, NULL, 0));
    for (i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
        gw_metric_set(g, (const char *const[]){sets[i].label}, sets[i].v);
    gw_metric_add(g, (const char *const[]){"int"}, -7);
    gw_metric_add(g, (const char *const[]){"frac"}, 0.2);
    gw_metric_add(plain, NULL, -3);
    gw_metric_observe(plain, NULL, 1); /* not a histogram: ignored */
    assert_render("# HELP cmpgw_plain No labels.\n"
                  "# TYPE cmpgw_plain gauge\n"
                  "cmpgw_plain -3\n"
                  "# HELP cmpgw_level Levels.\n"
                  "# TYPE cmpgw_level gauge\n"
                  "cmpgw_level{k=\"int\"} -2\n"
                  "cmpgw_level{k=\"frac\"} 0.30000000000000004\n"
                  "cmpgw_level{k=\"pinf\"} +Inf\n"
                  "cmpgw_level{k=\"ninf\"} -Inf\n"
                  "cmpgw_level{k=\"nan\"} NaN\n"
                  "cmpgw_level{k=\"big\"} 1e+20\n"
                  "cmpgw_level{k=\"two53\"} 9007199254740992\n"
                  "cmpgw_level{k=\"small\"} 1.5e-07\n"
                  "cmpgw_level{k=\"neg\"} -0.25\n"
                  "cmpgw_level{k=\"long\"} 123456789012\n"
                  "cmpgw_level{k=\"negzero\"} 0\n" DROPPED_ZERO);
}

static void test_histogram_text(void **state)
{
    static const double bounds[] = {0.005, 0.5, 1, 2.5, 10};
    static const double obs[] = {-2, 0.25, 0.5, 0.75, 1, 12};
    struct gw_metric *h, *bare;
    size_t i;

    (void)state;
    assert_non_null(h = gw_metric_new("cmpgw_duration_seconds", "Time per request.", GW_METRIC_HISTOGRAM,
                                      (const char *const[]){"op", NULL}, bounds, 5));
    assert_non_null(bare = gw_metric_new("cmpgw_sizes", "Only +Inf.", GW_METRIC_HISTOGRAM, NULL, NULL, 0));
    for (i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        gw_metric_observe(h, (const char *const[]){"ir"}, obs[i]);
    gw_metric_observe(h, (const char *const[]){"cr"}, NAN); /* in +Inf only; the sum becomes NaN */
    gw_metric_add(h, (const char *const[]){"ir"}, 1);       /* not a counter: ignored */
    gw_metric_set(h, (const char *const[]){"ir"}, 1);
    /* a bound is inclusive: 0.5 and 1 count in le="0.5" and le="1" */
    assert_render("# HELP cmpgw_duration_seconds Time per request.\n"
                  "# TYPE cmpgw_duration_seconds histogram\n"
                  "cmpgw_duration_seconds_bucket{op=\"ir\",le=\"0.005\"} 1\n"
                  "cmpgw_duration_seconds_bucket{op=\"ir\",le=\"0.5\"} 3\n"
                  "cmpgw_duration_seconds_bucket{op=\"ir\",le=\"1\"} 5\n"
                  "cmpgw_duration_seconds_bucket{op=\"ir\",le=\"2.5\"} 5\n"
                  "cmpgw_duration_seconds_bucket{op=\"ir\",le=\"10\"} 5\n"
                  "cmpgw_duration_seconds_bucket{op=\"ir\",le=\"+Inf\"} 6\n"
                  "cmpgw_duration_seconds_sum{op=\"ir\"} 12.5\n"
                  "cmpgw_duration_seconds_count{op=\"ir\"} 6\n"
                  "cmpgw_duration_seconds_bucket{op=\"cr\",le=\"0.005\"} 0\n"
                  "cmpgw_duration_seconds_bucket{op=\"cr\",le=\"0.5\"} 0\n"
                  "cmpgw_duration_seconds_bucket{op=\"cr\",le=\"1\"} 0\n"
                  "cmpgw_duration_seconds_bucket{op=\"cr\",le=\"2.5\"} 0\n"
                  "cmpgw_duration_seconds_bucket{op=\"cr\",le=\"10\"} 0\n"
                  "cmpgw_duration_seconds_bucket{op=\"cr\",le=\"+Inf\"} 1\n"
                  "cmpgw_duration_seconds_sum{op=\"cr\"} NaN\n"
                  "cmpgw_duration_seconds_count{op=\"cr\"} 1\n"
                  "# HELP cmpgw_sizes Only +Inf.\n"
                  "# TYPE cmpgw_sizes histogram\n"
                  "cmpgw_sizes_bucket{le=\"+Inf\"} 0\n"
                  "cmpgw_sizes_sum 0\n"
                  "cmpgw_sizes_count 0\n" DROPPED_ZERO);
}

static void test_escaping(void **state)
{
    static const char *const values[] = {
        "back\\slash",
        "say \"hi\"",
        "two\nlines",
        "tab\tstays",
        "caf\xc3\xa9",
        "\xff",
        "a\xc3",
        "\xed\xa0\x80",
        /* a C1 control, a bidi override, U+2028: each U+FFFD, as in every text a person reads */
        "c1\xc2\x9b"
        "bidi\xe2\x80\xae"
        "ls\xe2\x80\xa8",
    };
    struct gw_metric *g;
    size_t i;

    (void)state;
    /* in help only \ and newline are escaped; a quote is not */
    assert_non_null(g = gw_metric_new("cmpgw_esc", "Back\\slash,\nnewline, \"quotes\".", GW_METRIC_GAUGE,
                                      (const char *const[]){"v", NULL}, NULL, 0));
    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        gw_metric_set(g, (const char *const[]){values[i]}, (double)i);
    /* NULL values of a labelled family are empty strings */
    gw_metric_set(g, NULL, 9);
    assert_render("# HELP cmpgw_esc Back\\\\slash,\\nnewline, \"quotes\".\n"
                  "# TYPE cmpgw_esc gauge\n"
                  "cmpgw_esc{v=\"back\\\\slash\"} 0\n"
                  "cmpgw_esc{v=\"say \\\"hi\\\"\"} 1\n"
                  "cmpgw_esc{v=\"two\\nlines\"} 2\n"
                  "cmpgw_esc{v=\"tab\tstays\"} 3\n"
                  "cmpgw_esc{v=\"caf\xc3\xa9\"} 4\n"
                  "cmpgw_esc{v=\"\xef\xbf\xbd\"} 5\n"                         /* not UTF-8: U+FFFD */
                  "cmpgw_esc{v=\"a\xef\xbf\xbd\"} 6\n"                        /* a cut sequence too */
                  "cmpgw_esc{v=\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 7\n" /* a surrogate: 3 bad bytes */
                  "cmpgw_esc{v=\"c1\xef\xbf\xbd"
                  "bidi\xef\xbf\xbd"
                  "ls\xef\xbf\xbd\"} 8\n"
                  "cmpgw_esc{v=\"\"} 9\n" DROPPED_ZERO);
}

/* Label values are cut to GW_METRIC_MAX_VALUE_LEN bytes, between characters, before lookup. */
static void test_value_cut(void **state)
{
    char at_cap[GW_METRIC_MAX_VALUE_LEN + 1], longer[GW_METRIC_MAX_VALUE_LEN + 10];
    char before_e[GW_METRIC_MAX_VALUE_LEN + 4], before_bad[GW_METRIC_MAX_VALUE_LEN + 4];
    char want[4096], *got;
    struct gw_metric *c;

    (void)state;
    assert_non_null(c = gw_metric_new("cmpgw_cut_total", "Cut values.", GW_METRIC_COUNTER,
                                      (const char *const[]){"v", NULL}, NULL, 0));
    memset(at_cap, 'x', GW_METRIC_MAX_VALUE_LEN);
    at_cap[GW_METRIC_MAX_VALUE_LEN] = '\0';
    snprintf(longer, sizeof(longer), "%syyy", at_cap);
    /* 127 x then a 2-byte character: it does not fit whole, so it goes */
    snprintf(before_e, sizeof(before_e), "%.*s\xc3\xa9", GW_METRIC_MAX_VALUE_LEN - 1, at_cap);
    snprintf(before_bad, sizeof(before_bad), "%.*s\xff", GW_METRIC_MAX_VALUE_LEN - 1, at_cap);
    gw_metric_add(c, (const char *const[]){at_cap}, 1);
    gw_metric_add(c, (const char *const[]){longer}, 1);
    gw_metric_add(c, (const char *const[]){before_e}, 1);
    gw_metric_add(c, (const char *const[]){before_bad}, 1);
    snprintf(want, sizeof(want),
             "# HELP cmpgw_cut_total Cut values.\n"
             "# TYPE cmpgw_cut_total counter\n"
             "cmpgw_cut_total{v=\"%s\"} 2\n"
             "cmpgw_cut_total{v=\"%.*s\"} 2\n" DROPPED_ZERO,
             at_cap, GW_METRIC_MAX_VALUE_LEN - 1, at_cap);
    got = render();
    assert_string_equal(got, want);
    free(got);
}

static double read_double(void *arg)
{
    return *(double *)arg;
}

static void test_gauge_fn(void **state)
{
    double depth = 3;
    struct gw_metric *g;

    (void)state;
    assert_non_null(g = gw_metric_new_gauge_fn("cmpgw_queue_depth", "Jobs waiting.", read_double, &depth));
    assert_render("# HELP cmpgw_queue_depth Jobs waiting.\n"
                  "# TYPE cmpgw_queue_depth gauge\n"
                  "cmpgw_queue_depth 3\n" DROPPED_ZERO);
    depth = 0.5;
    gw_metric_set(g, NULL, 100); /* its value is the function's alone */
    gw_metric_add(g, NULL, 100);
    assert_render("# HELP cmpgw_queue_depth Jobs waiting.\n"
                  "# TYPE cmpgw_queue_depth gauge\n"
                  "cmpgw_queue_depth 0.5\n" DROPPED_ZERO);
    depth = NAN;
    assert_render("# HELP cmpgw_queue_depth Jobs waiting.\n"
                  "# TYPE cmpgw_queue_depth gauge\n"
                  "cmpgw_queue_depth NaN\n" DROPPED_ZERO);
}

static void test_invalid_definitions(void **state)
{
    static const double up[] = {0.1, 1}, unsorted[] = {1, 0.5}, equal[] = {1, 1}, nan_b[] = {0.1, NAN},
                        inf_b[] = {1, INFINITY};
    double many[GW_METRIC_MAX_BUCKETS + 1];
    char long_name[GW_METRIC_MAX_NAME_LEN + 2], long_help[GW_METRIC_MAX_HELP_LEN + 2];
    static const char *const names[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"};
    const char *too_many[GW_METRIC_MAX_LABELS + 2];
    static const char *const bad_labels[] = {"", "1x", "a-b", "__name", "é"};
    size_t i;

    (void)state;
    for (i = 0; i < GW_METRIC_MAX_BUCKETS + 1; i++)
        many[i] = (double)i;
    for (i = 0; i < GW_METRIC_MAX_LABELS + 1; i++)
        too_many[i] = names[i];
    too_many[GW_METRIC_MAX_LABELS + 1] = NULL;
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    memset(long_help, 'h', sizeof(long_help) - 1);
    long_help[sizeof(long_help) - 1] = '\0';

    /* names */
    assert_null(gw_metric_new(NULL, "h", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("", "h", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("1abc", "h", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("a-b", "h", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("a b", "h", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("caf\xc3\xa9", "h", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new(long_name, "h", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("requests", "h", GW_METRIC_COUNTER, NULL, NULL, 0));
    assert_null(gw_metric_new(GW_METRICS_DROPPED_NAME, "h", GW_METRIC_COUNTER, NULL, NULL, 0));
    assert_null(gw_metric_new_gauge_fn(GW_METRICS_DROPPED_NAME, "h", read_double, NULL));
    /* help */
    assert_null(gw_metric_new("g", NULL, GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("g", "", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("g", "bad \xff byte", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("g", "bidi \xe2\x80\xae text", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_null(gw_metric_new("g", long_help, GW_METRIC_GAUGE, NULL, NULL, 0));
    /* labels */
    assert_null(gw_metric_new("g", "h", GW_METRIC_GAUGE, too_many, NULL, 0));
    for (i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++)
        if (gw_metric_new("g", "h", GW_METRIC_GAUGE, (const char *const[]){bad_labels[i], NULL}, NULL, 0) !=
            NULL)
            fail_msg("label name \"%s\" accepted", bad_labels[i]);
    assert_null(
        gw_metric_new("g", "h", GW_METRIC_GAUGE, (const char *const[]){"a", "b", "a", NULL}, NULL, 0));
    assert_null(gw_metric_new("g", "h", GW_METRIC_HISTOGRAM, (const char *const[]){"le", NULL}, up, 2));
    /* buckets */
    assert_null(gw_metric_new("g", "h", GW_METRIC_HISTOGRAM, NULL, unsorted, 2));
    assert_null(gw_metric_new("g", "h", GW_METRIC_HISTOGRAM, NULL, equal, 2));
    assert_null(gw_metric_new("g", "h", GW_METRIC_HISTOGRAM, NULL, nan_b, 2));
    assert_null(gw_metric_new("g", "h", GW_METRIC_HISTOGRAM, NULL, inf_b, 2));
    assert_null(gw_metric_new("g", "h", GW_METRIC_HISTOGRAM, NULL, many, GW_METRIC_MAX_BUCKETS + 1));
    assert_null(gw_metric_new("g", "h", GW_METRIC_HISTOGRAM, NULL, NULL, 2));
    assert_null(gw_metric_new("g_total", "h", GW_METRIC_COUNTER, NULL, up, 2));
    assert_null(gw_metric_new("g", "h", GW_METRIC_GAUGE, NULL, up, 2));
    assert_null(gw_metric_new("g", "h", (enum gw_metric_type)7, NULL, NULL, 0));
    assert_null(gw_metric_new_gauge_fn("g", "h", NULL, NULL));
    /* nothing refused was registered */
    assert_render(DROPPED_ZERO);

    /* the limits themselves are fine */
    long_name[GW_METRIC_MAX_NAME_LEN] = '\0';
    long_help[GW_METRIC_MAX_HELP_LEN] = '\0';
    too_many[GW_METRIC_MAX_LABELS] = NULL;
    assert_non_null(gw_metric_new(long_name, long_help, GW_METRIC_GAUGE, too_many, NULL, 0));
    assert_non_null(gw_metric_new("h", "h", GW_METRIC_HISTOGRAM, NULL, many, GW_METRIC_MAX_BUCKETS));
    assert_non_null(
        gw_metric_new("_a:b", "h", GW_METRIC_GAUGE, (const char *const[]){"le", "_x", NULL}, NULL, 0));
    assert_non_null(gw_metric_new("c_total", "h", GW_METRIC_COUNTER, NULL, NULL, 0));
    /* a name is taken once, whatever the type */
    assert_null(gw_metric_new("c_total", "h", GW_METRIC_COUNTER, NULL, NULL, 0));
    assert_null(gw_metric_new_gauge_fn("h", "h", read_double, NULL));
}

static void test_family_cap(void **state)
{
    char name[32];
    int i;

    (void)state;
    for (i = 0; i < GW_MAX_METRIC_FAMILIES; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        assert_non_null(gw_metric_new(name, "h", GW_METRIC_GAUGE, (const char *const[]){"a", NULL}, NULL, 0));
    }
    assert_null(gw_metric_new("one_more", "h", GW_METRIC_GAUGE, NULL, NULL, 0));
    gw_metrics_free_all();
    assert_non_null(gw_metric_new("one_more", "h", GW_METRIC_GAUGE, NULL, NULL, 0));
}

/* |n| series in |m|, ids |from|..: label values "0", "1", ... */
static void fill(struct gw_metric *m, int from, int n)
{
    char id[16];
    int i;

    for (i = from; i < from + n; i++) {
        snprintf(id, sizeof(id), "%d", i);
        gw_metric_add(m, (const char *const[]){id}, 1);
    }
}

static void assert_dropped(unsigned n)
{
    char want[64], *got = render();

    snprintf(want, sizeof(want), "\ncmpgw_metrics_dropped_total %u\n", n);
    assert_non_null(strstr(got, want));
    assert_int_equal(strlen(strstr(got, want)), strlen(want)); /* the last line */
    free(got);
}

enum { FEW = 23 };

static void test_series_cap(void **state)
{
    const char *const id[] = {"id", NULL};
    struct gw_metric *a, *b, *late, *f;
    char *got;
    int i;

    (void)state;
    /* one family alone: capped at GW_MAX_METRIC_SERIES_PER_FAMILY */
    assert_non_null(a = gw_metric_new("cmpgw_a_total", "h", GW_METRIC_COUNTER, id, NULL, 0));
    fill(a, 0, GW_MAX_METRIC_SERIES_PER_FAMILY);
    assert_dropped(0);
    fill(a, GW_MAX_METRIC_SERIES_PER_FAMILY, 2);
    assert_dropped(2);
    gw_metric_add(a, (const char *const[]){"0"}, 1); /* existing series still count */
    got = render();
    assert_non_null(strstr(got, "\ncmpgw_a_total{id=\"0\"} 2\n"));
    assert_int_equal(count_of(got, "\ncmpgw_a_total{"), GW_MAX_METRIC_SERIES_PER_FAMILY);
    free(got);

    /* all families together: capped at GW_MAX_METRIC_SERIES. Full families up to the last
     * GW_MAX_METRIC_SERIES_PER_FAMILY or fewer, then c, then f with FEW, then late with the last. */
    for (i = 1; (i + 1) * GW_MAX_METRIC_SERIES_PER_FAMILY < GW_MAX_METRIC_SERIES; i++) {
        char name[32];
        snprintf(name, sizeof(name), "cmpgw_b%d_total", i);
        assert_non_null(b = gw_metric_new(name, "h", GW_METRIC_COUNTER, id, NULL, 0));
        fill(b, 0, GW_MAX_METRIC_SERIES_PER_FAMILY);
    }
    assert_non_null(b = gw_metric_new("cmpgw_c_total", "h", GW_METRIC_COUNTER, id, NULL, 0));
    fill(b, 0, GW_MAX_METRIC_SERIES - i * GW_MAX_METRIC_SERIES_PER_FAMILY - FEW - 1);
    assert_non_null(f = gw_metric_new("cmpgw_f_total", "h", GW_METRIC_COUNTER, id, NULL, 0));
    fill(f, 0, FEW);
    assert_non_null(late = gw_metric_new("cmpgw_late_total", "h", GW_METRIC_COUNTER, NULL, NULL, 0));
    assert_dropped(2);
    fill(f, FEW, 3); /* f is far from its own cap, but the registry is full */
    assert_dropped(5);
    gw_metric_add(late, NULL, 1);
    got = render();
    assert_non_null(strstr(got, "\ncmpgw_late_total 1\n"));
    assert_int_equal(count_of(got, "\ncmpgw_f_total{"), FEW);
    free(got);

    /* registered past the cap, an unlabelled family has no series: its updates are dropped */
    assert_non_null(late = gw_metric_new("cmpgw_later", "Too late.", GW_METRIC_GAUGE, NULL, NULL, 0));
    gw_metric_set(late, NULL, 1);
    assert_dropped(6);
    got = render();
    assert_non_null(strstr(got, "\n# TYPE cmpgw_later gauge\n# HELP cmpgw_metrics_dropped_total"));
    free(got);

    gw_metrics_free_all();
    assert_render(DROPPED_ZERO);
}

enum { THREADS = 4, PER_THREAD = 100000 };

struct hammer {
    struct gw_metric *hits, *lat, *level;
    atomic_int *running;
    int idx;
    pthread_t tid;
};

/* Each thread: the shared series, its own, a histogram and a gauge, PER_THREAD times each. */
static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    char own[16];
    const char *const shared[] = {"shared"}, *const mine[] = {own};
    int i;

    snprintf(own, sizeof(own), "t%d", h->idx);
    for (i = 0; i < PER_THREAD; i++) {
        gw_metric_add(h->hits, shared, 1);
        gw_metric_add(h->hits, mine, 1);
        gw_metric_observe(h->lat, NULL, i % 2 ? 0.5 : 2);
        gw_metric_add(h->level, NULL, 0.5);
    }
    atomic_fetch_sub(h->running, 1);
    return NULL;
}

/* The number after |prefix| in |text|, or -1 when absent. */
static double value_after(const char *text, const char *prefix)
{
    const char *p = strstr(text, prefix);

    return p != NULL ? strtod(p + strlen(prefix), NULL) : -1;
}

static void test_threads(void **state)
{
    static const double bounds[] = {1};
    struct hammer h[THREADS];
    atomic_int running = THREADS;
    struct gw_metric *hits, *lat, *level;
    double last = 0;
    char want[128], *got;
    int k, renders = 0;

    (void)state;
    assert_non_null(hits = gw_metric_new("cmpgw_hits_total", "h", GW_METRIC_COUNTER,
                                         (const char *const[]){"series", NULL}, NULL, 0));
    assert_non_null(lat = gw_metric_new("cmpgw_lat_seconds", "h", GW_METRIC_HISTOGRAM, NULL, bounds, 1));
    assert_non_null(level = gw_metric_new("cmpgw_level", "h", GW_METRIC_GAUGE, NULL, NULL, 0));
    for (k = 0; k < THREADS; k++) {
        h[k] = (struct hammer){.hits = hits, .lat = lat, .level = level, .running = &running, .idx = k};
        assert_int_equal(pthread_create(&h[k].tid, NULL, hammer_run, &h[k]), 0);
    }
    /* scrapes while the threads run: each well-formed, the shared count never going back */
    do {
        double v, inf, count;
        got = render();
        v = value_after(got, "cmpgw_hits_total{series=\"shared\"} ");
        assert_true(v <= THREADS * PER_THREAD);
        assert_true(v == -1 || v >= last);
        last = v > last ? v : last;
        inf = value_after(got, "cmpgw_lat_seconds_bucket{le=\"+Inf\"} ");
        count = value_after(got, "cmpgw_lat_seconds_count ");
        assert_true(inf == count);
        assert_true(value_after(got, "cmpgw_lat_seconds_bucket{le=\"1\"} ") <= inf);
        free(got);
        renders++;
    } while (atomic_load(&running) > 0);
    for (k = 0; k < THREADS; k++)
        pthread_join(h[k].tid, NULL);
    print_message("%d renders during the updates\n", renders);

    got = render();
    assert_int_equal(count_of(got, "series=\"shared\""), 1); /* raced into existence once */
    assert_non_null(strstr(got, "\ncmpgw_hits_total{series=\"shared\"} 400000\n"));
    for (k = 0; k < THREADS; k++) {
        snprintf(want, sizeof(want), "\ncmpgw_hits_total{series=\"t%d\"} 100000\n", k);
        assert_non_null(strstr(got, want));
    }
    assert_non_null(strstr(got, "\ncmpgw_lat_seconds_bucket{le=\"1\"} 200000\n"
                                "cmpgw_lat_seconds_bucket{le=\"+Inf\"} 400000\n"
                                "cmpgw_lat_seconds_sum 500000\n"
                                "cmpgw_lat_seconds_count 400000\n"));
    assert_non_null(strstr(got, "\ncmpgw_level 200000\n"));
    assert_non_null(strstr(got, "\ncmpgw_metrics_dropped_total 0\n"));
    free(got);
}

/* The value of unlabelled |name| in |text|, or NAN. */
static double value_in(const char *text, const char *name)
{
    char key[128];
    const char *at;

    snprintf(key, sizeof(key), "\n%s ", name);
    return (at = strstr(text, key)) != NULL ? strtod(at + strlen(key), NULL) : NAN;
}

static double seconds_used(void *arg)
{
    return *(double *)arg;
}

static void test_counter_fn(void **state)
{
    double used = 1.5;

    (void)state;
    assert_null(gw_metric_new_counter_fn("cmpgw_used_seconds", "Seconds.", seconds_used, &used)); /* _total */
    assert_non_null(gw_metric_new_counter_fn("cmpgw_used_seconds_total", "Seconds.", seconds_used, &used));
    assert_render("# HELP cmpgw_used_seconds_total Seconds.\n"
                  "# TYPE cmpgw_used_seconds_total counter\n"
                  "cmpgw_used_seconds_total 1.5\n" DROPPED_ZERO);
}

/* The process's families: what the process holds now, as it reads them itself. */
static void test_process(void **state)
{
    struct timespec now;
    struct rlimit rl;
    struct dirent *e;
    DIR *d;
    double fds = 0;
    char *text;

    (void)state;
    assert_int_equal(gw_metrics_register_process(), 0);
    assert_int_equal(gw_metrics_register_process(), GW_ERR_INVAL); /* each name once */
    text = render();
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(text, "# TYPE process_open_fds gauge\n"));
    assert_non_null(d = opendir("/proc/self/fd"));
    while ((e = readdir(d)) != NULL)
        fds += e->d_name[0] != '.';
    closedir(d);
    assert_true(value_in(text, "process_open_fds") == fds - 1); /* less this listing's own */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_true(value_in(text, "process_max_fds") == (double)rl.rlim_cur);
    assert_true(value_in(text, "process_resident_memory_bytes") > 0);
    assert_true(value_in(text, "process_virtual_memory_bytes") >=
                value_in(text, "process_resident_memory_bytes"));
    assert_true(value_in(text, "process_cpu_seconds_total") >= 0); /* not NaN */
    clock_gettime(CLOCK_REALTIME, &now);
    assert_true(fabs(value_in(text, "process_start_time_seconds") - (double)now.tv_sec) < 60);
    free(text);
}

static double three(void *arg)
{
    (void)arg;
    return 3;
}

/* A render with every kind of family, checked by promtool when it is installed. */
static void test_promtool(void **state)
{
    static const double bounds[] = {0.005, 0.05, 0.5, 5};
    char path[] = "/tmp/cmpgw_metrics_XXXXXX", cmd[128], *got;
    struct gw_metric *req, *dur, *depth;
    int fd, rc;

    (void)state;
    assert_non_null(req = gw_metric_new("cmpgw_test_requests_total",
                                        "Requests, by role and \"status\".\nTwo lines.", GW_METRIC_COUNTER,
                                        (const char *const[]){"role", "status", NULL}, NULL, 0));
    assert_non_null(dur = gw_metric_new("cmpgw_test_request_duration_seconds",
                                        "Time per request \\ in seconds.", GW_METRIC_HISTOGRAM,
                                        (const char *const[]){"op", NULL}, bounds, 4));
    assert_non_null(
        depth = gw_metric_new("cmpgw_test_queue_depth", "Jobs queued.", GW_METRIC_GAUGE, NULL, NULL, 0));
    assert_non_null(
        gw_metric_new_gauge_fn("cmpgw_test_open_transactions", "Open transactions.", three, NULL));
    assert_int_equal(gw_metrics_register_process(), 0);
    assert_non_null(gw_metric_new("cmpgw_test_unused_total", "Never updated.", GW_METRIC_COUNTER,
                                  (const char *const[]){"x", NULL}, NULL, 0));
    gw_metric_add(req, (const char *const[]){"ra\\1", "say \"200\"\n"}, 3);
    gw_metric_add(req, (const char *const[]){"bad\xff", "caf\xc3\xa9"}, 1);
    gw_metric_observe(dur, (const char *const[]){"ir"}, 0.01);
    gw_metric_observe(dur, (const char *const[]){"ir"}, 7);
    gw_metric_observe(dur, (const char *const[]){"cr"}, 0.3);
    gw_metric_set(depth, NULL, -1.25);
    gw_metric_add(depth, NULL, INFINITY);
    got = render();

    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        print_message("promtool not on PATH: the render is not checked by it\n");
        free(got);
        return;
    }
    assert_true((fd = mkstemp(path)) >= 0);
    assert_int_equal(write(fd, got, strlen(got)), (ssize_t)strlen(got));
    close(fd);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
    rc = system(cmd);
    unlink(path);
    if (rc != 0) {
        print_message("%s", got);
        fail_msg("promtool check metrics failed (%d) on the render above", rc);
    }
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_empty_registry, teardown),
        cmocka_unit_test_teardown(test_counter_text, teardown),
        cmocka_unit_test_teardown(test_gauge_text, teardown),
        cmocka_unit_test_teardown(test_histogram_text, teardown),
        cmocka_unit_test_teardown(test_escaping, teardown),
        cmocka_unit_test_teardown(test_value_cut, teardown),
        cmocka_unit_test_teardown(test_gauge_fn, teardown),
        cmocka_unit_test_teardown(test_invalid_definitions, teardown),
        cmocka_unit_test_teardown(test_family_cap, teardown),
        cmocka_unit_test_teardown(test_series_cap, teardown),
        cmocka_unit_test_teardown(test_threads, teardown),
        cmocka_unit_test_teardown(test_counter_fn, teardown),
        cmocka_unit_test_teardown(test_process, teardown),
        cmocka_unit_test_teardown(test_promtool, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
