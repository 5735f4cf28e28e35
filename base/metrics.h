/*
 * A process-wide registry of Prometheus metrics, rendered in the text exposition format 0.0.4.
 *
 * Families are registered at start-up; their series (one per distinct tuple of label values) are
 * created on first update and live until gw_metrics_free_all. Updating a series that exists takes
 * no lock: it is found in a lock-free hash table and its value changed with atomics. Creating one
 * takes the registry's mutex. Rendering takes no lock either: it reads each value atomically, so a
 * scrape taken under load is a snapshot per value, not of the whole registry.
 *
 * Memory is bounded whatever the traffic: at most GW_MAX_METRIC_SERIES series in all and
 * GW_MAX_METRIC_SERIES_PER_FAMILY in one family; an update that would need a series past either cap
 * is not applied but counted in cmpgw_metrics_dropped_total, a counter that belongs to no family
 * and is always rendered last. Label values are cut to GW_METRIC_MAX_VALUE_LEN bytes before lookup
 * (never inside a UTF-8 sequence; invalid UTF-8, which the format refuses, and a character a reader
 * would not see as itself become U+FFFD: gw_utf8_repair), so
 * values that agree on that prefix share a series. A definition is refused past
 * GW_MAX_METRIC_FAMILIES families, GW_METRIC_MAX_LABELS label names, GW_METRIC_MAX_BUCKETS buckets,
 * GW_METRIC_MAX_NAME_LEN bytes of a metric or label name or GW_METRIC_MAX_HELP_LEN bytes of help.
 */
#ifndef GW_BASE_METRICS_H
#define GW_BASE_METRICS_H

#include <stddef.h>

#define GW_MAX_METRIC_SERIES 4096            /* series of all families together */
#define GW_MAX_METRIC_SERIES_PER_FAMILY 1024 /* so one high-cardinality family cannot starve the rest */
#define GW_MAX_METRIC_FAMILIES 256
#define GW_METRIC_MAX_LABELS 8
#define GW_METRIC_MAX_VALUE_LEN 128 /* bytes of one label value, after UTF-8 repair */
#define GW_METRIC_MAX_BUCKETS 32    /* upper bounds of a histogram, +Inf not counted */
#define GW_METRIC_MAX_NAME_LEN 128  /* a metric or label name */
#define GW_METRIC_MAX_HELP_LEN 1024

/* The name of the counter of updates dropped by a series cap (reserved: no family may take it). */
#define GW_METRICS_DROPPED_NAME "cmpgw_metrics_dropped_total"

enum gw_metric_type {
    GW_METRIC_COUNTER,
    GW_METRIC_GAUGE,
    GW_METRIC_HISTOGRAM,
};

/* One family: name, help, type, label names, buckets; owned by the registry. */
struct gw_metric;

/*
 * Registers a family (at start-up; duplicate names are refused). |labels| is a NULL-terminated list
 * of label names ([a-zA-Z_][a-zA-Z0-9_]*, not "__"-prefixed, distinct, not "le" for histograms), or
 * NULL for none. |buckets| (histograms only) are |n_buckets| finite upper bounds, strictly
 * ascending; +Inf is implicit. An unlabelled family gets its one series now, so it renders 0 from
 * the first scrape. Returns NULL on a bad definition (name not [a-zA-Z_:][a-zA-Z0-9_:]*, counter
 * name not ending in _total, help empty or not UTF-8, a cap above) or out of memory.
 */
struct gw_metric *gw_metric_new(const char *name, const char *help, enum gw_metric_type type,
                                const char *const *labels, const double *buckets, size_t n_buckets);

/* Registers an unlabelled gauge whose value is |fn(arg)|, called (from the rendering thread) by each
 * gw_metrics_render; |fn| must not call into this module. NULL as gw_metric_new. */
struct gw_metric *gw_metric_new_gauge_fn(const char *name, const char *help, double (*fn)(void *arg),
                                         void *arg);
/* The same for a counter (|name| ending in _total): |fn| must not go down but across a restart. */
struct gw_metric *gw_metric_new_counter_fn(const char *name, const char *help, double (*fn)(void *arg),
                                           void *arg);

/*
 * Registers the process's own families, as Prometheus' client libraries name them:
 * process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds and process_start_time_seconds (now, as the caller is starting).
 * Read from getrusage, getrlimit and /proc/self when scraped (NaN where /proc is not there): what
 * an operator watches for a leak, and what a process kept from being traced (prctl
 * PR_SET_DUMPABLE 0) no longer shows to its own user under /proc/<pid>. 0, or GW_ERR_INVAL if one
 * could not be registered (out of memory, its name taken, the cap on families reached).
 */
int gw_metrics_register_process(void);

/* Counter: adds |v| (ignored unless v >= 0); gauge: adds |v| (any sign). |values| has one value per
 * label name (any bytes; NULL for an unlabelled family). Thread-safe, lock-free once the series
 * exists. Ignored on a histogram or a gauge_fn. */
void gw_metric_add(struct gw_metric *m, const char *const *values, double v);

/* Gauge: sets the value to |v|. Otherwise as gw_metric_add; ignored on other types. */
void gw_metric_set(struct gw_metric *m, const char *const *values, double v);

/* Histogram: counts |v| in the first bucket whose bound is >= v (NaN: only in +Inf) and adds it to
 * the sum. Otherwise as gw_metric_add; ignored on other types. */
void gw_metric_observe(struct gw_metric *m, const char *const *values, double v);

/* Renders the registry (families in registration order, series in creation order, then the dropped
 * counter) into a new NUL-terminated buffer of *len bytes that the caller free()s. Thread-safe.
 * 0, GW_ERR_INVAL or GW_ERR_NOMEM. */
int gw_metrics_render(char **out, size_t *len);

/* Frees every family and series and zeroes the dropped counter (at exit; tests). Not thread-safe:
 * no update or render may run, and every handle is invalid afterwards. */
void gw_metrics_free_all(void);

#endif
