/* bench/bench_lock.c - a shared counter incremented by 2 processes (one per
 * CPU) 1,000,000 times each under mp_lock, against a process-shared
 * pthread_mutex_t (plain, and robust as mp_lock is), a process-shared sem_t,
 * a lock-free __atomic_fetch_add, and Python's Value with get_lock()
 * (bench/py/lock.py), all alternating within each run.  Every run checks the
 * final count.  Figures are medians of MP_BENCH_RUNS runs, in increments per
 * second (both processes together).
 *
 *   MP_BENCH_RUNS    runs (default 5, at least 3)
 *   MP_BENCH_ITERS   increments per process (default 1000000)
 *   MP_BENCH_NO_PY   set to skip the Python peer
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc.h>

#include "bench.h"


enum impl { MP_LOCK, PT_MUTEX, PT_ROBUST, SEM_T, ATOMIC, NIMPL };
static const char *names[NIMPL] = { "mp_lock", "pthread_mutex", "pthread_mutex_robust",
                                    "sem_t", "atomic_add" };

struct shared {
    mp_lock lock;
    pthread_mutex_t mutex;
    pthread_mutex_t robust;
    sem_t sem;
    uint32_t go;                /* the parent releases both at once */
    uint32_t ready;
    char pad[64];
    volatile long counter;      /* on its own line, as the lock words share one */
};

static struct shared *S;
static long iters;

static void increment(enum impl k)
{
    switch (k) {
    case MP_LOCK:
        for (long i = 0; i < iters; i++) {
            mp_lock_acquire(&S->lock, MP_FOREVER);
            S->counter = S->counter + 1;
            mp_lock_release(&S->lock);
        }
        break;
    case PT_MUTEX:
        for (long i = 0; i < iters; i++) {
            pthread_mutex_lock(&S->mutex);
            S->counter = S->counter + 1;
            pthread_mutex_unlock(&S->mutex);
        }
        break;
    case PT_ROBUST:
        for (long i = 0; i < iters; i++) {
            pthread_mutex_lock(&S->robust);
            S->counter = S->counter + 1;
            pthread_mutex_unlock(&S->robust);
        }
        break;
    case SEM_T:
        for (long i = 0; i < iters; i++) {
            while (sem_wait(&S->sem) != 0)
                ;
            S->counter = S->counter + 1;
            sem_post(&S->sem);
        }
        break;
    case ATOMIC:
        for (long i = 0; i < iters; i++)
            __atomic_fetch_add(&S->counter, 1, __ATOMIC_SEQ_CST);
        break;
    default:
        break;
    }
}

/* Increments per second with 2 processes, or -1 on a wrong count. */
static double run(enum impl k)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    S->counter = 0;
    __atomic_store_n(&S->go, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&S->ready, 0, __ATOMIC_SEQ_CST);
    pid_t pids[2];
    for (int c = 0; c < 2; c++) {
        fflush(NULL);
        pids[c] = fork();
        if (pids[c] < 0) {
            perror("fork");
            exit(1);
        }
        if (pids[c] == 0) {
            bench_pin((int)(c % (ncpu > 0 ? ncpu : 1)));
            __atomic_fetch_add(&S->ready, 1, __ATOMIC_SEQ_CST);
            while (!__atomic_load_n(&S->go, __ATOMIC_ACQUIRE))
                ;
            increment(k);
            _exit(0);
        }
    }
    while (__atomic_load_n(&S->ready, __ATOMIC_ACQUIRE) < 2)
        usleep(100);
    int64_t t0 = bench_now_ns();
    __atomic_store_n(&S->go, 1, __ATOMIC_RELEASE);
    for (int c = 0; c < 2; c++) {
        int st;
        while (waitpid(pids[c], &st, 0) < 0)
            if (errno != EINTR)
                exit(1);
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    if (S->counter != 2 * iters) {
        fprintf(stderr, "bench_lock: %s counted %ld, expected %ld\n", names[k], S->counter,
                2 * iters);
        return -1;
    }
    return (double)(2 * iters) / secs;
}

int main(void)
{
    const char *e = getenv("MP_BENCH_ITERS");
    iters = e && atol(e) > 0 ? atol(e) : 1000000;
    int runs = bench_runs();
    bool py = getenv("MP_BENCH_NO_PY") == NULL;

    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S == MAP_FAILED)
        return 1;
    if (mp_lock_init(&S->lock) != 0)
        return 1;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&S->mutex, &a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&S->robust, &a);
    pthread_mutexattr_destroy(&a);
    sem_init(&S->sem, 1, 1);

    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/lock.py %ld 1 run", bench_python(), bench_py_dir(), iters);

    double rate[NIMPL + 1][64];
    int nrun = runs > 64 ? 64 : runs;
    for (int r = 0; r < nrun; r++) {
        for (int k = 0; k < NIMPL; k++) {
            /* alternate the order so no peer always runs first */
            int kk = (k + r) % NIMPL;
            rate[kk][r] = run((enum impl)kk);
            if (rate[kk][r] < 0)
                return 1;
        }
        if (py) {
            rate[NIMPL][r] = bench_run_peer(cmd, "ops_per_s");
            if (rate[NIMPL][r] < 0) {
                fprintf(stdout, "# python peer failed; skipping it\n");
                py = false;
            }
        }
    }
    double med[NIMPL + 1];
    for (int k = 0; k < NIMPL; k++) {
        med[k] = bench_median(rate[k], nrun);
        bench_report("lock", names[k], "ops_per_s", med[k], "ops/s");
    }
    if (py) {
        med[NIMPL] = bench_median(rate[NIMPL], nrun);
        bench_report("lock", "python_value", "ops_per_s", med[NIMPL], "ops/s");
    }
    for (int k = 1; k < NIMPL; k++)
        bench_ratio("lock", "ops_per_s", "mp_lock", med[0], names[k], med[k], 1);
    if (py)
        bench_ratio("lock", "ops_per_s", "mp_lock", med[0], "python_value", med[NIMPL], 1);
    bench_report_rss("lock", "all");
    return 0;
}
