/* The process's own metrics (base/metrics.h, gw_metrics_register_process). */
#include "base/err.h"
#include "base/metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double cpu_seconds(void *arg)
{
    struct rusage ru;

    (void)arg;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return NAN;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Field |i| of /proc/self/statm (0: the address space's size, 1: resident), in bytes. */
static double statm_bytes(int i)
{
    FILE *f = fopen("/proc/self/statm", "re");
    unsigned long pages[2];
    long page = sysconf(_SC_PAGESIZE);
    int n;

    if (f == NULL)
        return NAN;
    n = fscanf(f, "%lu %lu", &pages[0], &pages[1]);
    fclose(f);
    return n == 2 && page > 0 ? (double)pages[i] * (double)page : NAN;
}

static double resident_bytes(void *arg)
{
    (void)arg;
    return statm_bytes(1);
}

static double virtual_bytes(void *arg)
{
    (void)arg;
    return statm_bytes(0);
}

static double open_fds(void *arg)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    double n = -1; /* the directory's own descriptor is not the process's */

    (void)arg;
    if (d == NULL)
        return NAN;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static double max_fds(void *arg)
{
    struct rlimit rl;

    (void)arg;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return NAN;
    return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

static double start_time(void *arg)
{
    return *(const double *)arg;
}

int gw_metrics_register_process(void)
{
    static double started;
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    started = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    if (gw_metric_new_counter_fn("process_cpu_seconds_total", "User and system CPU time spent in seconds.",
                                 cpu_seconds, NULL) == NULL ||
        gw_metric_new_gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.",
                               resident_bytes, NULL) == NULL ||
        gw_metric_new_gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes.", virtual_bytes,
                               NULL) == NULL ||
        gw_metric_new_gauge_fn("process_open_fds", "Number of open file descriptors.", open_fds, NULL) ==
            NULL ||
        gw_metric_new_gauge_fn("process_max_fds", "Maximum number of open file descriptors.", max_fds,
                               NULL) == NULL ||
        gw_metric_new_gauge_fn("process_start_time_seconds",
                               "Start time of the process since unix epoch in "
                               "seconds.",
                               start_time, &started) == NULL)
        return GW_ERR_INVAL;
    return 0;
}
