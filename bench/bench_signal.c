/* bench/bench_signal.c - signal costs: handler dispatch in one process, and
 * a signal ping-pong between two processes.
 *
 * dispatch: raise(SIGUSR1) and run the handler, per signal.  mproc runs its
 *   handler in normal context (async record + mp_signal_dispatch); the raw C
 *   peer runs a sigaction handler directly (the floor: no deferral); Python
 *   runs its handler at the next bytecode.
 * pingpong: parent and child bounce SIGUSR1 back and forth; one round trip
 *   is two signals, each woken in a blocked wait.  mproc: mp_signal_on +
 *   mp_signal_wait + mp_signal_send; raw C: sigwaitinfo on a blocked
 *   signal; Python: signal.sigwait on a blocked signal (signal.pause()
 *   would race).
 */
#include "bench.h"

#include <mproc.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define DISPATCH_N 200000
#define PINGPONG_N 20000

static volatile sig_atomic_t raw_count;
static long mp_count;

static void raw_handler(int sig)
{
    (void)sig;
    raw_count++;
}

static int mp_handler(int sig, void *arg)
{
    (void)sig;
    (void)arg;
    mp_count++;
    return 0;
}

static double dispatch_mproc(void)
{
    mp_signal_on(SIGUSR1, mp_handler, NULL);
    mp_count = 0;
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < DISPATCH_N; i++) {
        raise(SIGUSR1);
        mp_signal_dispatch();
    }
    int64_t t1 = bench_now_ns();
    mp_signal_on(SIGUSR1, NULL, NULL);
    if (mp_count != DISPATCH_N)
        exit(1);
    return (double)(t1 - t0) / DISPATCH_N;
}

static double dispatch_raw(void)
{
    struct sigaction sa = { .sa_handler = raw_handler };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    raw_count = 0;
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < DISPATCH_N; i++)
        raise(SIGUSR1);
    int64_t t1 = bench_now_ns();
    signal(SIGUSR1, SIG_DFL);
    if (raw_count != DISPATCH_N)
        exit(1);
    return (double)(t1 - t0) / DISPATCH_N;
}

/* ---- ping-pong ---------------------------------------------------------------- */

static void ready_wait(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        exit(1);
}

static double pingpong_mproc(void)
{
    int p[2];
    if (pipe(p) != 0)
        exit(1);
    mp_signal_on(SIGUSR1, mp_handler, NULL);
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        /* a child starts with no mproc handler: it installs its own */
        mp_signal_on(SIGUSR1, mp_handler, NULL);
        if (write(p[1], "r", 1) != 1)
            _exit(1);
        for (int i = 0; i < PINGPONG_N; i++) {
            if (mp_signal_wait(NULL, 10000) != 0)
                _exit(2);
            mp_signal_send(parent, SIGUSR1);
        }
        _exit(0);
    }
    ready_wait(p[0]);
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < PINGPONG_N; i++) {
        mp_signal_send(pid, SIGUSR1);
        if (mp_signal_wait(NULL, 10000) != 0)
            exit(1);
    }
    int64_t t1 = bench_now_ns();
    int st;
    waitpid(pid, &st, 0);
    mp_signal_on(SIGUSR1, NULL, NULL);
    close(p[0]);
    close(p[1]);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        exit(1);
    return (double)(t1 - t0) / PINGPONG_N / 1000.0;
}

static double pingpong_raw(void)
{
    int p[2];
    if (pipe(p) != 0)
        exit(1);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, &old);
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        if (write(p[1], "r", 1) != 1)
            _exit(1);
        for (int i = 0; i < PINGPONG_N; i++) {
            sigwaitinfo(&set, NULL);
            kill(parent, SIGUSR1);
        }
        _exit(0);
    }
    ready_wait(p[0]);
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < PINGPONG_N; i++) {
        kill(pid, SIGUSR1);
        sigwaitinfo(&set, NULL);
    }
    int64_t t1 = bench_now_ns();
    int st;
    waitpid(pid, &st, 0);
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(p[0]);
    close(p[1]);
    return (double)(t1 - t0) / PINGPONG_N / 1000.0;
}

static double python_peer(const char *metric)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/signal.py %s %d %d", bench_python(), bench_py_dir(), metric,
             DISPATCH_N / 4, PINGPONG_N / 4);
    return bench_run_peer(cmd, metric);
}

int main(void)
{
    int runs = bench_runs();
    double dm[64], dr[64], dp[64], pm[64], pr[64], pp[64];
    if (runs > 64)
        runs = 64;
    int have_py = 1;
    for (int r = 0; r < runs; r++) {
        dm[r] = dispatch_mproc();
        dr[r] = dispatch_raw();
        pm[r] = pingpong_mproc();
        pr[r] = pingpong_raw();
        if (have_py) {
            dp[r] = python_peer("dispatch");
            pp[r] = python_peer("pingpong");
            if (dp[r] < 0 || pp[r] < 0)
                have_py = 0; /* no python3: C peers only */
        }
    }
    double m_d = bench_median(dm, runs), r_d = bench_median(dr, runs);
    double m_p = bench_median(pm, runs), r_p = bench_median(pr, runs);
    bench_report("signal", "mproc", "dispatch", m_d, "ns/signal");
    bench_report("signal", "c-sigaction", "dispatch", r_d, "ns/signal");
    bench_report("signal", "mproc", "pingpong", m_p, "us/roundtrip");
    bench_report("signal", "c-sigwaitinfo", "pingpong", r_p, "us/roundtrip");
    bench_ratio("signal", "dispatch", "mproc", m_d, "c-sigaction", r_d, 0);
    bench_ratio("signal", "pingpong", "mproc", m_p, "c-sigwaitinfo", r_p, 0);
    if (have_py) {
        double p_d = bench_median(dp, runs), p_p = bench_median(pp, runs);
        bench_report("signal", "python", "dispatch", p_d, "ns/signal");
        bench_report("signal", "python-sigwait", "pingpong", p_p, "us/roundtrip");
        bench_ratio("signal", "dispatch", "mproc", m_d, "python", p_d, 0);
        bench_ratio("signal", "pingpong", "mproc", m_p, "python-sigwait", p_p, 0);
    }
    bench_report_rss("signal", "mproc");
    return 0;
}
