/* bench/bench.h - helpers shared by the benchmarks (header-only).
 *
 * Every benchmark prints machine-readable lines that bench/run.sh collects:
 *   @bench bench=<name> impl=<impl> metric=<metric> value=<number> unit=<unit>
 *   @ratio bench=<name> metric=<metric> impl=<impl> vs=<peer> value=<impl/peer>
 *   @rss   bench=<name> impl=<impl> value=<peak KiB> unit=KiB
 * Each figure is the median of MP_BENCH_RUNS runs (default 5, at least 3),
 * mproc and its peers alternating within the same run.  A ratio above 1
 * always means mproc is better (for times, ratio = peer / mproc).
 */
#ifndef MP_BENCH_H
#define MP_BENCH_H

#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int bench_runs(void)
{
    const char *e = getenv("MP_BENCH_RUNS");
    int n = e ? atoi(e) : 5;
    return n < 3 ? 3 : n;
}

static int bench__cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place and returns its median. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench__cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The p-th percentile (0..100) of v (sorts v in place). */
static inline double bench_percentile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, bench__cmp_double);
    int i = (int)(p / 100.0 * (n - 1) + 0.5);
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* Pins the calling process to one CPU; returns 0 or -1. */
static inline int bench_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

static inline void bench_report(const char *bench, const char *impl, const char *metric,
                                double value, const char *unit)
{
    printf("@bench bench=%s impl=%s metric=%s value=%.6g unit=%s\n", bench, impl, metric,
           value, unit);
    fflush(stdout);
}

/* ratio > 1 means mproc is better: pass higher_is_better for rates. */
static inline void bench_ratio(const char *bench, const char *metric, const char *impl,
                               double impl_value, const char *vs, double vs_value,
                               int higher_is_better)
{
    double r = higher_is_better ? impl_value / vs_value : vs_value / impl_value;
    printf("@ratio bench=%s metric=%s impl=%s vs=%s value=%.3f\n", bench, metric, impl, vs, r);
    fflush(stdout);
}

/* Peak RSS in KiB of this process and of its reaped children. */
static inline void bench_report_rss(const char *bench, const char *impl)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    long peak = self.ru_maxrss > kids.ru_maxrss ? self.ru_maxrss : kids.ru_maxrss;
    printf("@rss bench=%s impl=%s value=%ld unit=KiB\n", bench, impl, peak);
    fflush(stdout);
}

/* The Python interpreter for the Python peers ($MP_BENCH_PYTHON or python3). */
static inline const char *bench_python(void)
{
    const char *p = getenv("MP_BENCH_PYTHON");
    return p && *p ? p : "python3";
}

/* The directory of the Python peers: $MP_BENCH_PY_DIR, else bench/py in the
 * source tree (BENCH_PY_DIR, set by bench/CMakeLists.txt). */
#ifndef BENCH_PY_DIR
#define BENCH_PY_DIR "bench/py"
#endif
static inline const char *bench_py_dir(void)
{
    const char *d = getenv("MP_BENCH_PY_DIR");
    return d && *d ? d : BENCH_PY_DIR;
}

/* Runs a command that prints "@bench ... metric=<metric> value=<v> ..." lines
 * and returns the value of the first line whose metric matches (or -1 if
 * there is none or the command failed).  Its output is echoed as comments
 * ("# peer: ..."): the caller reports the median of its runs itself. */
static inline double bench_run_peer(const char *cmd, const char *metric)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[1024], want[128];
    double v = -1;
    snprintf(want, sizeof want, " metric=%s ", metric);
    while (fgets(line, sizeof line, f)) {
        printf("# peer: %s", line);
        const char *m = strstr(line, want), *val;
        if (v < 0 && m && (val = strstr(line, " value=")) != NULL)
            v = atof(val + 7);
    }
    fflush(stdout);
    if (pclose(f) != 0)
        return -1;
    return v;
}

#endif
