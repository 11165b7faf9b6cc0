/* bench/bench_pool.c - pool throughput: per-task cost of tiny tasks through
 * map (automatic chunking) and apply_async, and pool creation + teardown,
 * mproc against Python's multiprocessing.Pool in the same run. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include <mproc.h>

#define MAP_N 1000000
#define APPLY_N 100000

static int square(const void *in, size_t in_len, void *out, size_t *out_len)
{
    (void)in_len;
    int x = *(const int *)in;
    *(int *)out = x * x;
    *out_len = sizeof(int);
    return 0;
}

static void check(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "bench_pool: %s: %s\n", what, mp_strerror(rc));
        exit(1);
    }
}

/* One mproc run: per-task ns for map and apply_async, create+teardown ms. */
static void run_mproc(int procs, int *in, int *out, mp_result **rs, double v[3])
{
    int64_t t0 = bench_now_ns();
    mp_pool *p;
    check(mp_pool_new(&p, &(mp_pool_opts){ .processes = procs }), "new");
    check(mp_pool_close(p), "close");
    check(mp_pool_join(p), "join");
    mp_pool_free(p);
    v[2] = (double)(bench_now_ns() - t0) / 1e6;

    check(mp_pool_new(&p, &(mp_pool_opts){ .processes = procs }), "new");
    t0 = bench_now_ns();
    check(mp_pool_map(p, square, in, sizeof(int), MAP_N, out, sizeof(int), 0), "map");
    v[0] = (double)(bench_now_ns() - t0) / MAP_N;
    for (int i = 0; i < MAP_N; i += 9973)
        if (out[i] != in[i] * in[i]) {
            fprintf(stderr, "bench_pool: wrong map result at %d\n", i);
            exit(1);
        }

    t0 = bench_now_ns();
    for (int i = 0; i < APPLY_N; i++)
        check(mp_pool_apply_async(p, square, &in[i], sizeof(int), &rs[i]), "apply_async");
    for (int i = 0; i < APPLY_N; i++) {
        int y;
        size_t len = sizeof y;
        check(mp_result_get(rs[i], &y, &len, MP_FOREVER), "get");
        if (y != in[i] * in[i]) {
            fprintf(stderr, "bench_pool: wrong apply result at %d\n", i);
            exit(1);
        }
        mp_result_free(rs[i]);
    }
    v[1] = (double)(bench_now_ns() - t0) / APPLY_N;
    check(mp_pool_close(p), "close");
    check(mp_pool_join(p), "join");
    mp_pool_free(p);
}

/* One Python run; parses its @bench lines.  0, or -1 if it failed. */
static int run_python(int procs, double v[3], long *rss)
{
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof cmd, "%s %s/pool.py %d %d %d", bench_python(), bench_py_dir(), procs,
             MAP_N, APPLY_N);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    static const char *metrics[3] = { "map_per_task", "apply_async_per_task", "create_teardown" };
    int found = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *val = strstr(line, " value=");
        if (!val)
            continue;
        if (strncmp(line, "@rss ", 5) == 0) {
            long r = atol(val + 7);
            if (r > *rss)
                *rss = r;
            continue;
        }
        for (int k = 0; k < 3; k++) {
            char want[64];
            snprintf(want, sizeof want, " metric=%s ", metrics[k]);
            if (strstr(line, want)) {
                v[k] = atof(val + 7);
                found |= 1 << k;
            }
        }
    }
    return pclose(f) == 0 && found == 7 ? 0 : -1;
}

int main(void)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int procs = ncpu < 1 ? 1 : (int)ncpu;
    int runs = bench_runs();
    int *in = malloc(MAP_N * sizeof(int)), *out = malloc(MAP_N * sizeof(int));
    mp_result **rs = malloc(APPLY_N * sizeof *rs);
    if (!in || !out || !rs)
        return 1;
    for (int i = 0; i < MAP_N; i++)
        in[i] = i % 40000;
    double m[3][64], py[3][64];
    int npy = 0;
    long py_rss = 0;
    if (runs > 64)
        runs = 64;
    for (int r = 0; r < runs; r++) {
        double v[3];
        run_mproc(procs, in, out, rs, v);
        for (int k = 0; k < 3; k++)
            m[k][r] = v[k];
        if (r == 0) /* before any Python peer is reaped into RUSAGE_CHILDREN */
            bench_report_rss("pool", "mproc");
        if (run_python(procs, v, &py_rss) == 0) {
            for (int k = 0; k < 3; k++)
                py[k][npy] = v[k];
            npy++;
        }
    }
    static const char *metric[3] = { "map_per_task", "apply_async_per_task", "create_teardown" };
    static const char *unit[3] = { "ns", "ns", "ms" };
    double med[3], pmed[3];
    for (int k = 0; k < 3; k++) {
        med[k] = bench_median(m[k], runs);
        bench_report("pool", "mproc", metric[k], med[k], unit[k]);
    }
    bench_report("pool", "mproc", "map_tasks_per_s", 1e9 / med[0], "tasks/s");
    bench_report("pool", "mproc", "apply_async_tasks_per_s", 1e9 / med[1], "tasks/s");
    if (npy > 0) {
        for (int k = 0; k < 3; k++) {
            pmed[k] = bench_median(py[k], npy);
            bench_report("pool", "python-multiprocessing", metric[k], pmed[k], unit[k]);
        }
        for (int k = 0; k < 3; k++)
            bench_ratio("pool", metric[k], "mproc", med[k], "python-multiprocessing", pmed[k], 0);
    } else {
        fprintf(stderr, "bench_pool: the Python peer did not run (%s)\n", bench_python());
    }
    if (py_rss > 0)
        printf("@rss bench=pool impl=python-multiprocessing value=%ld unit=KiB\n", py_rss);
    printf("# pool bench: %d workers, map of %d ints (chunksize 0), %d apply_async; "
           "medians of %d runs\n", procs, MAP_N, APPLY_N, runs);
    free(in);
    free(out);
    free(rs);
    return 0;
}
