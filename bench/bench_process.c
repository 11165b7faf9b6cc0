/* bench/bench_process.c - starting and joining processes one at a time:
 * mproc (new, start, join, free) against raw fork()+waitpid() and Python's
 * multiprocessing.Process (bench/py/process.py), alternating in each run.
 *
 *   MP_BENCH_RUNS   runs (default 5, at least 3); figures are medians
 *   MP_BENCH_PROCS  processes per run for mproc and raw fork (default 2000)
 *   MP_BENCH_PY_PROCS  processes per Python run (default 500: Python is ~14x
 *                   slower; the rate per second compares directly)
 *
 * A third peer, fork+handshake, is raw fork plus the pipe on which the
 * child reports that it runs: the floor for any start that, like mproc's,
 * returns only once the child runs.
 *
 * The child does nothing: raw fork's child calls _exit(0) at once, mproc's
 * target returns 0 (then mproc flushes stdio and _exit()s), Python's target
 * is `pass`.  So this measures the per-process overhead each adds to
 * fork+exit+wait, which is what the goal (mproc >= 90% of raw) is about.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#include "bench.h"


static int env_int(const char *name, int dflt)
{
    const char *e = getenv(name);
    int v = e ? atoi(e) : 0;
    return v > 0 ? v : dflt;
}

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

/* The raw peers' children call _exit through a pointer bound at load time,
 * as mproc's do: a call through the PLT would be bound lazily in every child
 * (the parent never calls _exit), a symbol lookup and some ten page faults
 * per child that a program built with -Wl,-z,now would not pay either.  So
 * the raw figures are the best raw fork can do, not a handicapped peer. */
static void (*volatile raw_exit)(int) = _exit;

/* processes per second, or -1 on failure */
static double run_raw(int n)
{
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0)
            raw_exit(0);
        int st;
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR)
                return -1;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return -1;
    }
    return n / ((bench_now_ns() - t0) / 1e9);
}

/* The floor of any start handshake: raw fork plus a pipe on which the
 * child reports that it runs before the parent goes on (what mproc's start
 * must do by contract), then waitpid.  mproc vs this peer is mproc's own
 * overhead; this peer vs raw fork is the price of the handshake. */
static double run_handshake(int n)
{
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < n; i++) {
        int hs[2];
        if (pipe2(hs, O_CLOEXEC) != 0)
            return -1;
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            char c = 0;
            raw_exit(write(hs[1], &c, 1) == 1 ? 0 : 1);
        }
        close(hs[1]);
        char c;
        ssize_t r;
        while ((r = read(hs[0], &c, 1)) < 0 && errno == EINTR)
            ;
        close(hs[0]);
        int st;
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR)
                return -1;
        if (r != 1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return -1;
    }
    return n / ((bench_now_ns() - t0) / 1e9);
}

static double run_mproc(int n)
{
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < n; i++) {
        mp_process *p = NULL;
        int code = -1, rc;
        if ((rc = mp_process_new(&p, nothing, NULL, NULL)) < 0 ||
            (rc = mp_process_start(p)) < 0 || (rc = mp_process_join(p, MP_FOREVER)) < 0 ||
            (rc = mp_process_exitcode(p, &code)) < 0 || code != 0) {
            fprintf(stderr, "bench_process: mproc process %d: %s (exit code %d)\n", i,
                    mp_err_name(rc), code);
            mp_process_free(p);
            return -1;
        }
        mp_process_free(p);
    }
    return n / ((bench_now_ns() - t0) / 1e9);
}

/* One Python run: its rate (its @bench line is read, not echoed: the median
 * is reported below), and its peak RSS in *rss_kib. */
static double run_python(int n, long *rss_kib)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s '%s/process.py' %d", bench_python(), bench_py_dir(), n);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[1024];
    double v = -1;
    while (fgets(line, sizeof line, f)) {
        const char *val = strstr(line, " value=");
        if (!val)
            continue;
        if (strncmp(line, "@bench ", 7) == 0 && strstr(line, " metric=start_join "))
            v = atof(val + 7);
        else if (strncmp(line, "@rss ", 5) == 0)
            *rss_kib = atol(val + 7);
    }
    if (pclose(f) != 0)
        return -1;
    return v;
}

int main(void)
{
    int runs = bench_runs();
    int n = env_int("MP_BENCH_PROCS", 2000);
    int npy = env_int("MP_BENCH_PY_PROCS", 500);
    double raw[64], hs[64], mp[64], py[64];
    if (runs > 64)
        runs = 64;
    long py_rss = -1;
    int py_ok = 0;
    printf("# process: start+join one at a time; %d runs; %d processes per run "
           "(Python: %d)\n", runs, n, npy);
    fflush(stdout);
    for (int r = 0; r < runs; r++) {
        /* alternate the order so neither side always runs on a warm cache */
        if (r % 2 == 0) {
            raw[r] = run_raw(n);
            hs[r] = run_handshake(n);
            mp[r] = run_mproc(n);
        } else {
            mp[r] = run_mproc(n);
            hs[r] = run_handshake(n);
            raw[r] = run_raw(n);
        }
        if (raw[r] < 0 || hs[r] < 0 || mp[r] < 0) {
            fprintf(stderr, "bench_process: run %d failed (raw %.0f, handshake %.0f, mproc %.0f)\n",
                    r + 1, raw[r], hs[r], mp[r]);
            return 1;
        }
        double v = run_python(npy, &py_rss);
        if (v > 0)
            py[py_ok++] = v;
        printf("# run %d: fork+waitpid %.0f/s, fork+handshake %.0f/s, mproc %.0f/s, "
               "python %.0f/s\n", r + 1, raw[r], hs[r], mp[r], v);
        fflush(stdout);
    }
    double m_raw = bench_median(raw, runs), m_hs = bench_median(hs, runs),
           m_mp = bench_median(mp, runs);
    bench_report("process", "mproc", "start_join", m_mp, "proc/s");
    bench_report("process", "fork+waitpid", "start_join", m_raw, "proc/s");
    bench_report("process", "fork+handshake", "start_join", m_hs, "proc/s");
    bench_ratio("process", "start_join", "mproc", m_mp, "fork+waitpid", m_raw, 1);
    bench_ratio("process", "start_join", "mproc", m_mp, "fork+handshake", m_hs, 1);
    if (py_ok > 0) {
        double m_py = bench_median(py, py_ok);
        bench_report("process", "python", "start_join", m_py, "proc/s");
        bench_ratio("process", "start_join", "mproc", m_mp, "python", m_py, 1);
        if (py_rss > 0)
            printf("@rss bench=process impl=python value=%ld unit=KiB\n", py_rss);
    } else {
        printf("# python peer unavailable (%s)\n", bench_python());
    }
    /* mproc and raw fork share this process, so one figure covers both */
    bench_report_rss("process", "mproc+fork");
    return 0;
}
