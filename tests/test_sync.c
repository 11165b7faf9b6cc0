/* Description: process-shared synchronization - mp_lock, mp_rlock, mp_sem,
 * mp_event, mp_cond, mp_barrier: semantics, timeouts, bad input, and what a
 * SIGKILLed process leaves behind. */
/* MP_TEST_TIMEOUT 30 */
#include "mp_test.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "internal/lock.h"

/* ---- helpers ------------------------------------------------------------- */

static void unmap_shared(void *p, size_t size)
{
    assert_int_equal(munmap(p, size), 0);
}

/* Exits 0 (normally) from a child; fails the test unless it did. */
static void expect_exit0(pid_t pid)
{
    int st = mp_test_waitpid(pid, 20000);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("child %d: status 0x%x", (int)pid, st);
}

static void expect_killed(pid_t pid)
{
    int st = mp_test_waitpid(pid, 20000);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* Timing: at least lo ms, and well under a generous upper bound. */
#define ASSERT_TOOK(t0, lo)                                                      \
    do {                                                                         \
        int64_t took_ = mp_test_now_ms() - (t0);                                 \
        if (took_ < (lo) || took_ > (lo) + 5000)                                 \
            fail_msg("took %lld ms, expected >= %d", (long long)took_, (int)(lo)); \
    } while (0)

/* ---- mp_lock -------------------------------------------------------------- */

static void lock_basic(void **state)
{
    (void)state;
    mp_lock l = MP_LOCK_INIT;
    MP_ASSERT_OK(mp_lock_init(&l));
    MP_ASSERT_ERR(mp_lock_release(&l), -EPERM);
    MP_ASSERT_OK(mp_lock_acquire(&l, MP_FOREVER));
    assert_int_equal(l.state & MP__LOCK_TID, (uint32_t)mp__tid());
    assert_true(mp__lock_held(&l));
    MP_ASSERT_ERR(mp_lock_acquire(&l, 0), -EDEADLK);
    MP_ASSERT_ERR(mp_lock_acquire(&l, MP_FOREVER), -EDEADLK);
    MP_ASSERT_OK(mp_lock_release(&l));
    assert_int_equal(l.state, 0);
    MP_ASSERT_ERR(mp_lock_release(&l), -EPERM);
    assert_false(mp__lock_held(&l));
    /* zeroed memory is an unlocked lock */
    mp_lock z;
    memset(&z, 0, sizeof z);
    MP_ASSERT_OK(mp_lock_acquire(&z, 0));
    MP_ASSERT_OK(mp_lock_release(&z));
    mp_lock_destroy(&l);
    mp_lock_destroy(NULL);
}

static void lock_bad_input(void **state)
{
    (void)state;
    MP_ASSERT_ERR(mp_lock_init(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_lock_acquire(NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_lock_release(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_rlock_init(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_rlock_acquire(NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_rlock_release(NULL), -EINVAL);
    mp_rlock_destroy(NULL);
}

/* Many locks held at once, released in any order, interleaved with glibc's
 * own robust mutexes on the same per-thread list. */
static void lock_many_with_pthread_robust(void **state)
{
    (void)state;
    enum { N = 16 };
    mp_lock locks[N];
    pthread_mutex_t m[3];
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_mutex_init(&m[i], &a), 0);
    for (int i = 0; i < N; i++)
        MP_ASSERT_OK(mp_lock_init(&locks[i]));
    for (int round = 0; round < 50; round++) {
        assert_int_equal(pthread_mutex_lock(&m[0]), 0);
        for (int i = 0; i < N / 2; i++)
            MP_ASSERT_OK(mp_lock_acquire(&locks[i], 0));
        assert_int_equal(pthread_mutex_lock(&m[1]), 0);
        for (int i = N / 2; i < N; i++)
            MP_ASSERT_OK(mp_lock_acquire(&locks[i], 0));
        assert_int_equal(pthread_mutex_lock(&m[2]), 0);
        /* release in a scrambled order */
        for (int k = 0; k < N; k++) {
            int i = (k * 7 + round) % N;
            MP_ASSERT_OK(mp_lock_release(&locks[i]));
            if (k == 3)
                assert_int_equal(pthread_mutex_unlock(&m[1]), 0);
            if (k == 9)
                assert_int_equal(pthread_mutex_unlock(&m[2]), 0);
        }
        assert_int_equal(pthread_mutex_unlock(&m[0]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(locks[i].state, 0);
    for (int i = 0; i < 3; i++)
        pthread_mutex_destroy(&m[i]);
    pthread_mutexattr_destroy(&a);
}

struct holder_arg {
    mp_lock *l;
    pthread_mutex_t *pm;
    mp_lock *more[2]; /* taken after pm, if set */
    int fds[2];
};

/* Takes the lock(s), says so, then waits to be killed. */
static int hold_and_wait(void *arg)
{
    struct holder_arg *h = arg;
    if (h->pm && pthread_mutex_lock(h->pm) != 0)
        return 3;
    if (mp_lock_acquire(h->l, MP_FOREVER) != 0)
        return 2;
    for (int i = 0; i < 2; i++)
        if (h->more[i] && mp_lock_acquire(h->more[i], MP_FOREVER) != 0)
            return 4;
    mp_test_signal(h->fds);
    for (;;)
        pause();
}

static void lock_timeouts(void **state)
{
    (void)state;
    struct holder_arg *h = mp_test_shared(4096);
    h->l = (mp_lock *)((char *)h + 256);
    MP_ASSERT_OK(mp_lock_init(h->l));
    mp_test_pipe(h->fds);
    pid_t pid = mp_test_fork(hold_and_wait, h);
    mp_test_await(h->fds, 10000);
    MP_ASSERT_ERR(mp_lock_acquire(h->l, 0), -EAGAIN);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_lock_acquire(h->l, 120), -ETIMEDOUT);
    ASSERT_TOOK(t0, 120);
    MP_ASSERT_ERR(mp_lock_release(h->l), -EPERM); /* held by the child */
    kill(pid, SIGKILL);
    expect_killed(pid);
    close(h->fds[0]);
    close(h->fds[1]);
    unmap_shared(h, 4096);
}

/* A holder SIGKILLed: exactly one next acquirer gets -EOWNERDEAD and the
 * lock works again; a glibc robust mutex and two more mp_locks held by the
 * same thread, linked in between on the one list, recover too. */
static void lock_owner_dies(void **state)
{
    (void)state;
    struct holder_arg *h = mp_test_shared(4096);
    h->l = (mp_lock *)((char *)h + 256);
    h->pm = (pthread_mutex_t *)((char *)h + 512);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    assert_int_equal(pthread_mutex_init(h->pm, &a), 0);
    MP_ASSERT_OK(mp_lock_init(h->l));
    h->more[0] = (mp_lock *)((char *)h + 1024);
    h->more[1] = (mp_lock *)((char *)h + 1536);
    MP_ASSERT_OK(mp_lock_init(h->more[0]));
    MP_ASSERT_OK(mp_lock_init(h->more[1]));
    mp_test_pipe(h->fds);
    for (int round = 0; round < 3; round++) {
        pid_t pid = mp_test_fork(hold_and_wait, h);
        mp_test_await(h->fds, 10000);
        kill(pid, SIGKILL);
        expect_killed(pid);
        MP_ASSERT_ERR(mp_lock_acquire(h->more[1], 1000), -EOWNERDEAD);
        MP_ASSERT_ERR(mp_lock_acquire(h->l, 1000), -EOWNERDEAD);
        assert_int_equal(pthread_mutex_lock(h->pm), EOWNERDEAD);
        assert_int_equal(pthread_mutex_consistent(h->pm), 0);
        MP_ASSERT_ERR(mp_lock_acquire(h->more[0], 1000), -EOWNERDEAD);
        MP_ASSERT_OK(mp_lock_release(h->l));
        MP_ASSERT_OK(mp_lock_release(h->more[1]));
        assert_int_equal(pthread_mutex_unlock(h->pm), 0);
        MP_ASSERT_OK(mp_lock_release(h->more[0]));
        /* the death was reported once: the lock is plain again */
        MP_ASSERT_OK(mp_lock_acquire(h->l, 0));
        MP_ASSERT_OK(mp_lock_release(h->l));
    }
    pthread_mutex_destroy(h->pm);
    pthread_mutexattr_destroy(&a);
    close(h->fds[0]);
    close(h->fds[1]);
    unmap_shared(h, 4096);
}

/* Waiters asleep on a lock whose holder is killed: one gets -EOWNERDEAD,
 * every one gets the lock in turn; nobody hangs. */
struct waiter_arg {
    mp_lock *l;
    int *ownerdead;
    int *acquired;
    int ready[2];
};

static int lock_waiter(void *arg)
{
    struct waiter_arg *w = arg;
    mp_test_signal(w->ready);
    int rc = mp_lock_acquire(w->l, 15000);
    if (rc != 0 && rc != -EOWNERDEAD)
        return 1;
    if (rc == -EOWNERDEAD)
        __atomic_fetch_add(w->ownerdead, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(w->acquired, 1, __ATOMIC_SEQ_CST);
    return mp_lock_release(w->l) == 0 ? 0 : 2;
}

static void lock_owner_dies_with_waiters(void **state)
{
    (void)state;
    char *mem = mp_test_shared(4096);
    struct holder_arg *h = (struct holder_arg *)mem;
    struct waiter_arg *w = (struct waiter_arg *)(mem + 128);
    h->l = w->l = (mp_lock *)(mem + 512);
    w->ownerdead = (int *)(mem + 1024);
    w->acquired = (int *)(mem + 1028);
    MP_ASSERT_OK(mp_lock_init(h->l));
    mp_test_pipe(h->fds);
    mp_test_pipe(w->ready);
    pid_t holder = mp_test_fork(hold_and_wait, h);
    mp_test_await(h->fds, 10000);
    enum { NW = 4 };
    pid_t ws[NW];
    for (int i = 0; i < NW; i++)
        ws[i] = mp_test_fork(lock_waiter, w);
    for (int i = 0; i < NW; i++)
        mp_test_await(w->ready, 10000);
    /* let them reach the futex: wait until the WAITERS bit is set */
    int64_t end = mp_test_now_ms() + 10000;
    while (!(__atomic_load_n(&h->l->state, __ATOMIC_ACQUIRE) & MP__LOCK_WAITERS) &&
           mp_test_now_ms() < end)
        sched_yield();
    kill(holder, SIGKILL);
    expect_killed(holder);
    for (int i = 0; i < NW; i++)
        expect_exit0(ws[i]);
    assert_int_equal(*w->ownerdead, 1);
    assert_int_equal(*w->acquired, NW);
    MP_ASSERT_OK(mp_lock_acquire(h->l, 0));
    MP_ASSERT_OK(mp_lock_release(h->l));
    close(h->fds[0]);
    close(h->fds[1]);
    close(w->ready[0]);
    close(w->ready[1]);
    unmap_shared(mem, 4096);
}

/* A thread that exits holding the lock is a dead owner too. */
static void *thread_hold_exit(void *arg)
{
    mp_lock *l = arg;
    if (mp_lock_acquire(l, MP_FOREVER) != 0)
        return (void *)1;
    return NULL; /* exits holding it */
}

static void lock_thread_exit_holding(void **state)
{
    (void)state;
    mp_lock l = MP_LOCK_INIT;
    pthread_t t;
    void *res;
    assert_int_equal(pthread_create(&t, NULL, thread_hold_exit, &l), 0);
    assert_int_equal(pthread_join(t, &res), 0);
    assert_null(res);
    MP_ASSERT_ERR(mp_lock_release(&l), -EPERM);
    MP_ASSERT_ERR(mp_lock_acquire(&l, 1000), -EOWNERDEAD);
    MP_ASSERT_OK(mp_lock_release(&l));
}

/* A fork child is a new owner: it does not hold its parent's locks, it has
 * its own thread id (the cached one is reset by plain fork() and mp__fork
 * alike) and its own robust list. */
struct fork_arg {
    mp_lock *a, *b;
    int fds[2];
};

static int fork_child(void *arg)
{
    struct fork_arg *f = arg;
    if (mp_lock_release(f->a) != -EPERM)
        return 1;
    if (mp_lock_acquire(f->a, 0) != -EAGAIN) /* not -EDEADLK: not the parent */
        return 2;
    if ((pid_t)(f->a->state & MP__LOCK_TID) == mp__tid() || mp__tid() != getpid())
        return 3;
    if (mp_lock_acquire(f->b, 0) != 0)
        return 4;
    mp_test_signal(f->fds);
    for (;;)
        pause(); /* killed holding b */
}

static void lock_fork_child(void **state)
{
    (void)state;
    struct fork_arg *f = mp_test_shared(4096);
    f->a = (mp_lock *)((char *)f + 256);
    f->b = (mp_lock *)((char *)f + 512);
    MP_ASSERT_OK(mp_lock_init(f->a));
    MP_ASSERT_OK(mp_lock_init(f->b));
    mp_test_pipe(f->fds);
    MP_ASSERT_OK(mp_lock_acquire(f->a, 0));
    for (int how = 0; how < 2; how++) {
        pid_t pid;
        if (how == 0) {
            pid = mp_test_fork(fork_child, f); /* plain fork() */
        } else {
            pid = mp__fork();
            assert_true(pid >= 0);
            if (pid == 0)
                _exit(fork_child(f));
        }
        mp_test_await(f->fds, 10000);
        kill(pid, SIGKILL);
        expect_killed(pid);
        MP_ASSERT_ERR(mp_lock_acquire(f->b, 1000), -EOWNERDEAD);
        MP_ASSERT_OK(mp_lock_release(f->b));
    }
    MP_ASSERT_OK(mp_lock_release(f->a));
    close(f->fds[0]);
    close(f->fds[1]);
    unmap_shared(f, 4096);
}

/* Mutual exclusion under contention: a non-atomic counter stays exact. */
struct count_arg {
    mp_lock *l;
    mp_rlock *rl;
    long *counter;
    int iters;
};

static int count_worker(void *arg)
{
    struct count_arg *c = arg;
    for (int i = 0; i < c->iters; i++) {
        if (c->l) {
            if (mp_lock_acquire(c->l, MP_FOREVER) != 0)
                return 1;
        } else {
            if (mp_rlock_acquire(c->rl, MP_FOREVER) != 0 ||
                mp_rlock_acquire(c->rl, MP_FOREVER) != 0)
                return 1;
        }
        long v = *(volatile long *)c->counter;
        *(volatile long *)c->counter = v + 1;
        if (c->l) {
            if (mp_lock_release(c->l) != 0)
                return 2;
        } else {
            if (mp_rlock_release(c->rl) != 0 || mp_rlock_release(c->rl) != 0)
                return 2;
        }
    }
    return 0;
}

static void lock_counts_exactly(void **state)
{
    (void)state;
    char *mem = mp_test_shared(4096);
    struct count_arg *c = (struct count_arg *)mem;
    c->l = (mp_lock *)(mem + 256);
    c->counter = (long *)(mem + 512);
    c->iters = 100000;
    MP_ASSERT_OK(mp_lock_init(c->l));
    pid_t a = mp_test_fork(count_worker, c), b = mp_test_fork(count_worker, c);
    assert_int_equal(count_worker(c), 0);
    expect_exit0(a);
    expect_exit0(b);
    assert_int_equal(*c->counter, 3L * c->iters);
    assert_int_equal(c->l->state, 0);
    unmap_shared(mem, 4096);
}

/* ---- mp_rlock ------------------------------------------------------------- */

static void rlock_reentrant(void **state)
{
    (void)state;
    mp_rlock l = MP_RLOCK_INIT;
    MP_ASSERT_OK(mp_rlock_init(&l));
    MP_ASSERT_ERR(mp_rlock_release(&l), -EPERM);
    for (int i = 0; i < 5; i++)
        MP_ASSERT_OK(mp_rlock_acquire(&l, 0));
    assert_int_equal(l.depth, 5);
    for (int i = 0; i < 5; i++)
        MP_ASSERT_OK(mp_rlock_release(&l));
    assert_int_equal(l.state, 0);
    MP_ASSERT_ERR(mp_rlock_release(&l), -EPERM);
    mp_rlock_destroy(&l);
}

struct rhold_arg {
    mp_rlock *l;
    int fds[2];
};

static int rhold_and_wait(void *arg)
{
    struct rhold_arg *h = arg;
    for (int i = 0; i < 3; i++)
        if (mp_rlock_acquire(h->l, MP_FOREVER) != 0)
            return 2;
    mp_test_signal(h->fds);
    for (;;)
        pause();
}

static void rlock_other_process(void **state)
{
    (void)state;
    char *mem = mp_test_shared(4096);
    struct rhold_arg *h = (struct rhold_arg *)mem;
    h->l = (mp_rlock *)(mem + 256);
    MP_ASSERT_OK(mp_rlock_init(h->l));
    mp_test_pipe(h->fds);
    pid_t pid = mp_test_fork(rhold_and_wait, h);
    mp_test_await(h->fds, 10000);
    MP_ASSERT_ERR(mp_rlock_acquire(h->l, 0), -EAGAIN);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_rlock_acquire(h->l, 60), -ETIMEDOUT);
    ASSERT_TOOK(t0, 60);
    MP_ASSERT_ERR(mp_rlock_release(h->l), -EPERM);
    kill(pid, SIGKILL);
    expect_killed(pid);
    MP_ASSERT_ERR(mp_rlock_acquire(h->l, 1000), -EOWNERDEAD);
    assert_int_equal(h->l->depth, 1);
    MP_ASSERT_OK(mp_rlock_acquire(h->l, 0));
    MP_ASSERT_OK(mp_rlock_release(h->l));
    MP_ASSERT_OK(mp_rlock_release(h->l));
    assert_int_equal(h->l->state, 0);
    close(h->fds[0]);
    close(h->fds[1]);
    unmap_shared(mem, 4096);
}

static void rlock_counts_exactly(void **state)
{
    (void)state;
    char *mem = mp_test_shared(4096);
    struct count_arg *c = (struct count_arg *)mem;
    c->rl = (mp_rlock *)(mem + 256);
    c->counter = (long *)(mem + 512);
    c->iters = 50000;
    MP_ASSERT_OK(mp_rlock_init(c->rl));
    pid_t a = mp_test_fork(count_worker, c);
    assert_int_equal(count_worker(c), 0);
    expect_exit0(a);
    assert_int_equal(*c->counter, 2L * c->iters);
    unmap_shared(mem, 4096);
}


/* ---- the uncontended paths make no system call --------------------------- */

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static int no_syscalls_child(void *arg)
{
    char *mem = arg;
    mp_lock *l = (mp_lock *)mem;
    mp_rlock *rl = (mp_rlock *)(mem + 64);
    mp_sem *s = (mp_sem *)(mem + 128);
    mp_event *e = (mp_event *)(mem + 192);
    mp_cond *c = (mp_cond *)(mem + 256);
    mp_barrier *b = (mp_barrier *)(mem + 320);
    /* first use of a thread fills its cache (gettid, get_robust_list) */
    if (mp_lock_acquire(l, 0) != 0 || mp_lock_release(l) != 0)
        return 10;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return 77;
    for (int i = 0; i < 1000; i++) {
        if (mp_lock_acquire(l, MP_FOREVER) != 0 || mp_lock_release(l) != 0)
            return 1;
        if (mp_rlock_acquire(rl, MP_FOREVER) != 0 || mp_rlock_acquire(rl, 0) != 0 ||
            mp_rlock_release(rl) != 0 || mp_rlock_release(rl) != 0)
            return 2;
        if (mp_sem_acquire(s, MP_FOREVER) != 0 || mp_sem_release(s) != 0)
            return 3;
        if (mp_event_set(e) != 0 || mp_event_wait(e, MP_FOREVER) != 0 ||
            mp_event_clear(e) != 0)
            return 4;
        if (mp_cond_notify(c, 1) != 0 || mp_cond_notify_all(c) != 0)
            return 5;
        if (mp_barrier_wait(b, MP_FOREVER) != 0)
            return 6;
    }
    return 0;
}

static void uncontended_no_syscall(void **state)
{
    (void)state;
    char *mem = mp_test_shared(4096);
    MP_ASSERT_OK(mp_lock_init((mp_lock *)mem));
    MP_ASSERT_OK(mp_rlock_init((mp_rlock *)(mem + 64)));
    MP_ASSERT_OK(mp_sem_init((mp_sem *)(mem + 128), 1, 1));
    MP_ASSERT_OK(mp_event_init((mp_event *)(mem + 192)));
    MP_ASSERT_OK(mp_cond_init((mp_cond *)(mem + 256)));
    MP_ASSERT_OK(mp_barrier_init((mp_barrier *)(mem + 320), 1));
    pid_t pid = mp_test_fork(no_syscalls_child, mem);
    int st = mp_test_waitpid(pid, 20000);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        unmap_shared(mem, 4096);
        MP_TEST_SKIP("seccomp not available");
    }
    if (WIFSIGNALED(st))
        fail_msg("child killed by signal %d (SIGSYS: a futex call)", WTERMSIG(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    unmap_shared(mem, 4096);
}

/* ---- a signal never shortens a wait ---------------------------------------- */

static void on_usr1(int sig)
{
    (void)sig;
}

struct pester_arg {
    pid_t target;
    int *stop;
};

static int pester(void *arg)
{
    struct pester_arg *p = arg;
    while (!__atomic_load_n(p->stop, __ATOMIC_ACQUIRE)) {
        kill(p->target, SIGUSR1);
        usleep(2000);
    }
    return 0;
}

static void signals_do_not_shorten_waits(void **state)
{
    (void)state;
    struct sigaction sa = { .sa_handler = on_usr1 }, old;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0); /* no SA_RESTART */
    char *mem = mp_test_shared(4096);
    struct pester_arg *p = (struct pester_arg *)mem;
    p->target = getpid();
    p->stop = (int *)(mem + 64);
    mp_sem *s = (mp_sem *)(mem + 128);
    mp_event *e = (mp_event *)(mem + 192);
    mp_barrier *b = (mp_barrier *)(mem + 256);
    MP_ASSERT_OK(mp_sem_init(s, 0, 0));
    MP_ASSERT_OK(mp_event_init(e));
    MP_ASSERT_OK(mp_barrier_init(b, 2));
    mp_lock *l = (mp_lock *)(mem + 512);
    mp_cond c = MP_COND_INIT;
    pid_t pid = mp_test_fork(pester, p);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_sem_acquire(s, 150), -ETIMEDOUT);
    ASSERT_TOOK(t0, 150);
    t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_event_wait(e, 150), -ETIMEDOUT);
    ASSERT_TOOK(t0, 150);
    MP_ASSERT_OK(mp_lock_acquire(l, 0));
    t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_cond_wait(&c, l, 150), -ETIMEDOUT);
    ASSERT_TOOK(t0, 150);
    MP_ASSERT_OK(mp_lock_release(l));
    t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_barrier_wait(b, 150), -ETIMEDOUT);
    ASSERT_TOOK(t0, 150);
    __atomic_store_n(p->stop, 1, __ATOMIC_RELEASE);
    expect_exit0(pid);
    sigaction(SIGUSR1, &old, NULL);
    unmap_shared(mem, 4096);
}

/* ---- mp_sem --------------------------------------------------------------- */

static void sem_basic(void **state)
{
    (void)state;
    mp_sem s = MP_SEM_INIT(2, 0);
    MP_ASSERT_OK(mp_sem_init(&s, 2, 0));
    assert_int_equal(mp_sem_value(&s), 2);
    MP_ASSERT_OK(mp_sem_acquire(&s, 0));
    MP_ASSERT_OK(mp_sem_acquire(&s, MP_FOREVER));
    MP_ASSERT_ERR(mp_sem_acquire(&s, 0), -EAGAIN);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_sem_acquire(&s, 80), -ETIMEDOUT);
    ASSERT_TOOK(t0, 80);
    assert_int_equal(mp_sem_value(&s), 0);
    MP_ASSERT_OK(mp_sem_release(&s));
    MP_ASSERT_OK(mp_sem_release(&s));
    MP_ASSERT_OK(mp_sem_release(&s)); /* unbounded: above the initial value */
    assert_int_equal(mp_sem_value(&s), 3);
    MP_ASSERT_OK(mp_sem_init(&s, INT_MAX, 0));
    MP_ASSERT_ERR(mp_sem_release(&s), -EOVERFLOW);
    mp_sem_destroy(&s);
    mp_sem_destroy(NULL);
}

static void sem_bounded(void **state)
{
    (void)state;
    mp_sem s;
    MP_ASSERT_OK(mp_sem_init(&s, 1, 2));
    MP_ASSERT_OK(mp_sem_release(&s));
    MP_ASSERT_ERR(mp_sem_release(&s), -EOVERFLOW);
    assert_int_equal(mp_sem_value(&s), 2);
    MP_ASSERT_OK(mp_sem_acquire(&s, 0));
    MP_ASSERT_OK(mp_sem_release(&s));
    MP_ASSERT_ERR(mp_sem_init(&s, 3, 2), -EINVAL);
    MP_ASSERT_ERR(mp_sem_init(&s, (unsigned)INT_MAX + 1, 0), -EINVAL);
    MP_ASSERT_ERR(mp_sem_init(NULL, 0, 0), -EINVAL);
    MP_ASSERT_ERR(mp_sem_acquire(NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_sem_release(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_sem_value(NULL), -EINVAL);
}

struct sem_arg {
    mp_sem *s;
    int *got;
    int ready[2];
};

static int sem_waiter(void *arg)
{
    struct sem_arg *a = arg;
    mp_test_signal(a->ready);
    if (mp_sem_acquire(a->s, 15000) != 0)
        return 1;
    __atomic_fetch_add(a->got, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void wait_sleepers(uint32_t *count, uint32_t n)
{
    int64_t end = mp_test_now_ms() + 10000;
    while (__atomic_load_n(count, __ATOMIC_ACQUIRE) < n) {
        if (mp_test_now_ms() > end)
            fail_msg("waiters never arrived");
        sched_yield();
    }
}

/* Units released one by one wake exactly one sleeper each; a sleeper that
 * is SIGKILLed changes nothing for the others. */
static void sem_cross_process(void **state)
{
    (void)state;
    char *mem = mp_test_shared(4096);
    struct sem_arg *a = (struct sem_arg *)mem;
    a->s = (mp_sem *)(mem + 128);
    a->got = (int *)(mem + 256);
    MP_ASSERT_OK(mp_sem_init(a->s, 0, 0));
    mp_test_pipe(a->ready);
    enum { N = 4 };
    pid_t kids[N + 1];
    for (int i = 0; i <= N; i++)
        kids[i] = mp_test_fork(sem_waiter, a);
    for (int i = 0; i <= N; i++)
        mp_test_await(a->ready, 10000);
    wait_sleepers(&a->s->waiters, N + 1);
    kill(kids[N], SIGKILL); /* one sleeper dies */
    expect_killed(kids[N]);
    for (int i = 1; i <= N; i++) {
        MP_ASSERT_OK(mp_sem_release(a->s));
        int64_t end = mp_test_now_ms() + 10000;
        while (__atomic_load_n(a->got, __ATOMIC_ACQUIRE) < i && mp_test_now_ms() < end)
            sched_yield();
        assert_int_equal(*a->got, i);
    }
    for (int i = 0; i < N; i++)
        expect_exit0(kids[i]);
    assert_int_equal(mp_sem_value(a->s), 0);
    close(a->ready[0]);
    close(a->ready[1]);
    unmap_shared(mem, 4096);
}

/* ---- mp_event ------------------------------------------------------------- */

static void event_basic(void **state)
{
    (void)state;
    mp_event e = MP_EVENT_INIT;
    MP_ASSERT_OK(mp_event_init(&e));
    assert_false(mp_event_is_set(&e));
    MP_ASSERT_ERR(mp_event_wait(&e, 0), -EAGAIN);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_event_wait(&e, 60), -ETIMEDOUT);
    ASSERT_TOOK(t0, 60);
    MP_ASSERT_OK(mp_event_set(&e));
    MP_ASSERT_OK(mp_event_set(&e));
    assert_true(mp_event_is_set(&e));
    MP_ASSERT_OK(mp_event_wait(&e, 0));
    MP_ASSERT_OK(mp_event_wait(&e, MP_FOREVER));
    MP_ASSERT_OK(mp_event_clear(&e));
    assert_false(mp_event_is_set(&e));
    MP_ASSERT_ERR(mp_event_wait(&e, 0), -EAGAIN);
    MP_ASSERT_ERR(mp_event_init(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_event_set(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_event_clear(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_event_wait(NULL, 0), -EINVAL);
    assert_false(mp_event_is_set(NULL));
    mp_event_destroy(&e);
    mp_event_destroy(NULL);
}

struct ev_arg {
    mp_event *e;
    int ready[2];
};

static int ev_waiter(void *arg)
{
    struct ev_arg *a = arg;
    mp_test_signal(a->ready);
    return mp_event_wait(a->e, 15000) == 0 ? 0 : 1;
}

/* set wakes every waiter, a set-then-clear included; a killed waiter does
 * not matter. */
static void event_wakes_all(void **state)
{
    (void)state;
    char *mem = mp_test_shared(4096);
    struct ev_arg *a = (struct ev_arg *)mem;
    a->e = (mp_event *)(mem + 128);
    MP_ASSERT_OK(mp_event_init(a->e));
    mp_test_pipe(a->ready);
    enum { N = 4 };
    pid_t kids[N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++)
            kids[i] = mp_test_fork(ev_waiter, a);
        for (int i = 0; i < N; i++)
            mp_test_await(a->ready, 10000);
        int64_t end = mp_test_now_ms() + 10000;
        while (!(__atomic_load_n(&a->e->state, __ATOMIC_ACQUIRE) & 2) &&
               mp_test_now_ms() < end)
            sched_yield();
        kill(kids[0], SIGKILL);
        expect_killed(kids[0]);
        MP_ASSERT_OK(mp_event_set(a->e));
        if (round == 1)
            MP_ASSERT_OK(mp_event_clear(a->e)); /* set while they waited: still 0 */
        for (int i = 1; i < N; i++)
            expect_exit0(kids[i]);
        MP_ASSERT_OK(mp_event_clear(a->e));
    }
    close(a->ready[0]);
    close(a->ready[1]);
    unmap_shared(mem, 4096);
}

/* ---- mp_cond -------------------------------------------------------------- */

static void cond_basic(void **state)
{
    (void)state;
    mp_cond c = MP_COND_INIT;
    mp_lock l = MP_LOCK_INIT;
    MP_ASSERT_OK(mp_cond_init(&c));
    MP_ASSERT_ERR(mp_cond_wait(&c, &l, 0), -EPERM);
    MP_ASSERT_ERR(mp_cond_wait(NULL, &l, 0), -EINVAL);
    MP_ASSERT_ERR(mp_cond_wait(&c, NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_cond_notify(NULL, 1), -EINVAL);
    MP_ASSERT_ERR(mp_cond_notify(&c, -1), -EINVAL);
    MP_ASSERT_ERR(mp_cond_init(NULL), -EINVAL);
    assert_int_equal(mp_cond_notify(&c, 1), 0); /* nobody waits */
    assert_int_equal(mp_cond_notify_all(&c), 0);
    MP_ASSERT_OK(mp_lock_acquire(&l, 0));
    MP_ASSERT_ERR(mp_cond_wait(&c, &l, 0), -EAGAIN);
    assert_true(mp__lock_held(&l));
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_cond_wait(&c, &l, 70), -ETIMEDOUT);
    ASSERT_TOOK(t0, 70);
    assert_true(mp__lock_held(&l));
    assert_int_equal(c.state & 0xfffff, 0); /* the timed-out waiter withdrew */
    MP_ASSERT_OK(mp_lock_release(&l));
    mp_cond_destroy(&c);
    mp_cond_destroy(NULL);
}

struct cv_arg {
    mp_cond *c;
    mp_lock *l;
    int *woken;
    int ready[2];
};

static int cv_waiter(void *arg)
{
    struct cv_arg *a = arg;
    if (mp_lock_acquire(a->l, MP_FOREVER) != 0)
        return 1;
    mp_test_signal(a->ready);
    int rc = mp_cond_wait(a->c, a->l, 15000);
    if (!mp__lock_held(a->l))
        return 2;
    if (rc == 0)
        __atomic_fetch_add(a->woken, 1, __ATOMIC_SEQ_CST);
    mp_lock_release(a->l);
    return rc == 0 ? 0 : 3;
}

static void wait_cond_waiters(mp_cond *c, uint64_t n)
{
    int64_t end = mp_test_now_ms() + 10000;
    while ((__atomic_load_n(&c->state, __ATOMIC_ACQUIRE) & 0xfffff) != n) {
        if (mp_test_now_ms() > end)
            fail_msg("cond waiters never reached %llu", (unsigned long long)n);
        sched_yield();
    }
}

static void wait_int(int *p, int want)
{
    int64_t end = mp_test_now_ms() + 10000;
    while (__atomic_load_n(p, __ATOMIC_ACQUIRE) < want) {
        if (mp_test_now_ms() > end)
            fail_msg("count stuck at %d, expected %d", *p, want);
        sched_yield();
    }
}

/* notify(n) wakes exactly n, notify_all the rest; no spurious returns; a
 * waiter killed while waiting does not cost a live one its wake-up. */
static void cond_notify_exact(void **state)
{
    (void)state;
    char *mem = mp_test_shared(4096);
    struct cv_arg *a = (struct cv_arg *)mem;
    a->c = (mp_cond *)(mem + 128);
    a->l = (mp_lock *)(mem + 256);
    a->woken = (int *)(mem + 512);
    MP_ASSERT_OK(mp_cond_init(a->c));
    MP_ASSERT_OK(mp_lock_init(a->l));
    mp_test_pipe(a->ready);
    enum { N = 5 };
    pid_t kids[N];
    for (int i = 0; i < N; i++)
        kids[i] = mp_test_fork(cv_waiter, a);
    for (int i = 0; i < N; i++)
        mp_test_await(a->ready, 10000);
    wait_cond_waiters(a->c, N);
    kill(kids[N - 1], SIGKILL);
    expect_killed(kids[N - 1]);
    assert_int_equal(mp_cond_notify(a->c, 1), 1);
    wait_int(a->woken, 1);
    /* exactly one: the others are still registered, no grant is left */
    MP_ASSERT_OK(mp_lock_acquire(a->l, 5000));
    assert_int_equal((a->c->state >> 20) & 0xfffff, 0);
    assert_int_equal(*a->woken, 1);
    assert_int_equal(mp_cond_notify(a->c, 2), 2);
    MP_ASSERT_OK(mp_lock_release(a->l));
    wait_int(a->woken, 3);
    MP_ASSERT_OK(mp_lock_acquire(a->l, 5000));
    assert_int_equal(*a->woken, 3);
    /* the last live waiter and the dead one's registration */
    assert_int_equal(mp_cond_notify_all(a->c), 2);
    MP_ASSERT_OK(mp_lock_release(a->l));
    for (int i = 0; i < N - 1; i++)
        expect_exit0(kids[i]);
    assert_int_equal(*a->woken, N - 1);
    close(a->ready[0]);
    close(a->ready[1]);
    unmap_shared(mem, 4096);
}

/* The notifier dies holding the lock: the waiter is still notified and
 * gets the lock back with -EOWNERDEAD. */
static int cv_waiter_ownerdead(void *arg)
{
    struct cv_arg *a = arg;
    if (mp_lock_acquire(a->l, MP_FOREVER) != 0)
        return 1;
    mp_test_signal(a->ready);
    int rc = mp_cond_wait(a->c, a->l, 15000);
    if (rc != -EOWNERDEAD)
        return 2;
    if (!mp__lock_held(a->l))
        return 3;
    return mp_lock_release(a->l) == 0 ? 0 : 4;
}

static int cv_notify_and_die(void *arg)
{
    struct cv_arg *a = arg;
    if (mp_lock_acquire(a->l, MP_FOREVER) != 0 || mp_cond_notify(a->c, 1) != 1)
        return 1;
    mp_test_signal(a->ready);
    for (;;)
        pause();
}

static void cond_notifier_dies_holding_lock(void **state)
{
    (void)state;
    char *mem = mp_test_shared(4096);
    struct cv_arg *a = (struct cv_arg *)mem;
    a->c = (mp_cond *)(mem + 128);
    a->l = (mp_lock *)(mem + 256);
    MP_ASSERT_OK(mp_cond_init(a->c));
    MP_ASSERT_OK(mp_lock_init(a->l));
    mp_test_pipe(a->ready);
    pid_t w = mp_test_fork(cv_waiter_ownerdead, a);
    mp_test_await(a->ready, 10000);
    wait_cond_waiters(a->c, 1);
    pid_t n = mp_test_fork(cv_notify_and_die, a);
    mp_test_await(a->ready, 10000);
    kill(n, SIGKILL);
    expect_killed(n);
    expect_exit0(w);
    MP_ASSERT_OK(mp_lock_acquire(a->l, 0));
    MP_ASSERT_OK(mp_lock_release(a->l));
    close(a->ready[0]);
    close(a->ready[1]);
    unmap_shared(mem, 4096);
}

/* A notify is for the waiters already waiting: one that starts waiting
 * after it cannot take it. */
static void *cv_thread(void *arg)
{
    struct cv_arg *a = arg;
    mp_lock_acquire(a->l, MP_FOREVER);
    __atomic_store_n(a->woken, -1, __ATOMIC_SEQ_CST);
    int rc = mp_cond_wait(a->c, a->l, 10000);
    mp_lock_release(a->l);
    return (void *)(intptr_t)rc;
}

static void cond_no_stealing(void **state)
{
    (void)state;
    mp_cond c = MP_COND_INIT;
    mp_lock l = MP_LOCK_INIT;
    int flag = 0;
    struct cv_arg a = { .c = &c, .l = &l, .woken = &flag };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cv_thread, &a), 0);
    wait_cond_waiters(&c, 1);
    MP_ASSERT_OK(mp_lock_acquire(&l, MP_FOREVER));
    assert_int_equal(mp_cond_notify(&c, 1), 1);
    /* we now wait too, while the thread has not run yet: the grant is its */
    MP_ASSERT_ERR(mp_cond_wait(&c, &l, 100), -ETIMEDOUT);
    MP_ASSERT_OK(mp_lock_release(&l));
    void *res;
    assert_int_equal(pthread_join(t, &res), 0);
    assert_int_equal((int)(intptr_t)res, 0);
    assert_int_equal(c.state & 0xfffff, 0);
    assert_int_equal((c.state >> 20) & 0xfffff, 0);
}

/* The classic producer/consumer across processes. */
struct pc {
    mp_lock l;
    mp_cond nonempty, nonfull;
    int items[4];
    int count, head;
    long sum;
};

static int consumer(void *arg)
{
    struct pc *q = arg;
    for (int i = 0; i < 2000; i++) {
        if (mp_lock_acquire(&q->l, MP_FOREVER) != 0)
            return 1;
        while (q->count == 0)
            if (mp_cond_wait(&q->nonempty, &q->l, 10000) != 0)
                return 2;
        q->sum += q->items[q->head];
        q->head = (q->head + 1) % 4;
        q->count--;
        mp_cond_notify(&q->nonfull, 1);
        mp_lock_release(&q->l);
    }
    return 0;
}

static void cond_producer_consumer(void **state)
{
    (void)state;
    struct pc *q = mp_test_shared(4096);
    MP_ASSERT_OK(mp_lock_init(&q->l));
    MP_ASSERT_OK(mp_cond_init(&q->nonempty));
    MP_ASSERT_OK(mp_cond_init(&q->nonfull));
    pid_t pid = mp_test_fork(consumer, q);
    long want = 0;
    for (int i = 1; i <= 2000; i++) {
        MP_ASSERT_OK(mp_lock_acquire(&q->l, MP_FOREVER));
        while (q->count == 4)
            MP_ASSERT_OK(mp_cond_wait(&q->nonfull, &q->l, 10000));
        q->items[(q->head + q->count) % 4] = i;
        q->count++;
        want += i;
        mp_cond_notify(&q->nonempty, 1);
        MP_ASSERT_OK(mp_lock_release(&q->l));
    }
    expect_exit0(pid);
    assert_int_equal(q->sum, want);
    unmap_shared(q, 4096);
}

/* ---- mp_barrier ----------------------------------------------------------- */

struct br_arg {
    mp_barrier *b;
    int *idx; /* [round][party] */
    int party;
    int rounds;
};

static int br_party(void *arg)
{
    struct br_arg *a = arg;
    for (int r = 0; r < a->rounds; r++) {
        int rc = mp_barrier_wait(a->b, 10000);
        if (rc < 0)
            return 1;
        a->idx[r * 4 + a->party] = rc;
    }
    return 0;
}

static void barrier_rounds(void **state)
{
    (void)state;
    enum { P = 3, R = 200 };
    char *mem = mp_test_shared(16384);
    mp_barrier *b = (mp_barrier *)mem;
    MP_ASSERT_OK(mp_barrier_init(b, P));
    struct br_arg *args = (struct br_arg *)(mem + 64);
    int *idx = (int *)(mem + 1024);
    pid_t kids[P - 1];
    for (int p = 0; p < P; p++)
        args[p] = (struct br_arg){ .b = b, .idx = idx, .party = p, .rounds = R };
    for (int p = 1; p < P; p++)
        kids[p - 1] = mp_test_fork(br_party, &args[p]);
    assert_int_equal(br_party(&args[0]), 0);
    for (int p = 0; p < P - 1; p++)
        expect_exit0(kids[p]);
    for (int r = 0; r < R; r++) {
        int seen = 0;
        for (int p = 0; p < P; p++) {
            int i = idx[r * 4 + p];
            assert_true(i >= 0 && i < P);
            assert_false(seen & (1 << i));
            seen |= 1 << i;
        }
    }
    unmap_shared(mem, 16384);
}

static void barrier_bad_input(void **state)
{
    (void)state;
    mp_barrier b;
    MP_ASSERT_ERR(mp_barrier_init(&b, 0), -EINVAL);
    MP_ASSERT_ERR(mp_barrier_init(&b, 65536), -EINVAL);
    MP_ASSERT_ERR(mp_barrier_init(NULL, 2), -EINVAL);
    MP_ASSERT_ERR(mp_barrier_wait(NULL, 0), -EINVAL);
    MP_ASSERT_ERR(mp_barrier_abort(NULL), -EINVAL);
    MP_ASSERT_ERR(mp_barrier_reset(NULL), -EINVAL);
    memset(&b, 0, sizeof b); /* never initialised: no parties */
    MP_ASSERT_ERR(mp_barrier_wait(&b, 0), -EINVAL);
    MP_ASSERT_OK(mp_barrier_init(&b, 1));
    assert_int_equal(mp_barrier_wait(&b, 0), 0);
    mp_barrier_destroy(&b);
    mp_barrier_destroy(NULL);
}

struct brk_arg {
    mp_barrier *b;
    int *rc;
    int ready[2];
};

static int brk_waiter(void *arg)
{
    struct brk_arg *a = arg;
    mp_test_signal(a->ready);
    *a->rc = mp_barrier_wait(a->b, 15000);
    return 0;
}

/* A barrier of `parties` in shared memory, with a ready pipe for waiters. */
static struct brk_arg *brk_setup(unsigned parties)
{
    char *mem = mp_test_shared(4096);
    struct brk_arg *a = (struct brk_arg *)mem;
    a->b = (mp_barrier *)(mem + 128);
    a->rc = (int *)(mem + 256);
    MP_ASSERT_OK(mp_barrier_init(a->b, parties));
    mp_test_pipe(a->ready);
    return a;
}

static void brk_teardown(struct brk_arg *a)
{
    close(a->ready[0]);
    close(a->ready[1]);
    unmap_shared(a, 4096);
}

static void wait_arrived(mp_barrier *b, uint32_t n)
{
    int64_t end = mp_test_now_ms() + 10000;
    while ((__atomic_load_n(&b->state, __ATOMIC_ACQUIRE) & 0xffff) != n) {
        if (mp_test_now_ms() > end)
            fail_msg("barrier arrivals never reached %u", n);
        sched_yield();
    }
}

/* A party's own timeout breaks the barrier: -ETIMEDOUT for it, -EPIPE for
 * the others and for later waits until reset; then it works again. */
static void barrier_timeout_breaks(void **state)
{
    (void)state;
    struct brk_arg *a = brk_setup(3);
    pid_t pid = mp_test_fork(brk_waiter, a);
    mp_test_await(a->ready, 10000);
    wait_arrived(a->b, 1);
    int64_t t0 = mp_test_now_ms();
    MP_ASSERT_ERR(mp_barrier_wait(a->b, 80), -ETIMEDOUT);
    ASSERT_TOOK(t0, 80);
    expect_exit0(pid);
    assert_int_equal(*a->rc, -EPIPE);
    MP_ASSERT_ERR(mp_barrier_wait(a->b, 1000), -EPIPE);
    MP_ASSERT_ERR(mp_barrier_wait(a->b, 0), -EPIPE);
    MP_ASSERT_OK(mp_barrier_reset(a->b));
    /* usable again: 3 parties = 2 children + us */
    pid_t k1 = mp_test_fork(brk_waiter, a);
    pid_t k2 = mp_test_fork(brk_waiter, a);
    mp_test_await(a->ready, 10000);
    mp_test_await(a->ready, 10000);
    int rc = mp_barrier_wait(a->b, 10000);
    assert_true(rc >= 0 && rc < 3);
    expect_exit0(k1);
    expect_exit0(k2);
    /* timeout 0 for a party that would wait: -EAGAIN, and it breaks */
    MP_ASSERT_ERR(mp_barrier_wait(a->b, 0), -EAGAIN);
    MP_ASSERT_ERR(mp_barrier_wait(a->b, 0), -EPIPE);
    brk_teardown(a);
}

/* abort and reset both send the current waiters away with -EPIPE. */
static void barrier_abort_reset(void **state)
{
    (void)state;
    struct brk_arg *a = brk_setup(2);
    for (int round = 0; round < 2; round++) {
        *a->rc = 1;
        pid_t pid = mp_test_fork(brk_waiter, a);
        mp_test_await(a->ready, 10000);
        wait_arrived(a->b, 1);
        if (round == 0) {
            MP_ASSERT_OK(mp_barrier_abort(a->b));
            MP_ASSERT_ERR(mp_barrier_wait(a->b, 0), -EPIPE);
            MP_ASSERT_OK(mp_barrier_abort(a->b)); /* again: no change */
            expect_exit0(pid);
            MP_ASSERT_OK(mp_barrier_reset(a->b));
        } else {
            MP_ASSERT_OK(mp_barrier_reset(a->b));
            expect_exit0(pid);
        }
        assert_int_equal(*a->rc, -EPIPE);
        MP_ASSERT_OK(mp_barrier_reset(a->b)); /* empty: no-op */
    }
    /* and it still works: us + one child */
    pid_t pid = mp_test_fork(brk_waiter, a);
    mp_test_await(a->ready, 10000);
    int rc = mp_barrier_wait(a->b, 10000);
    expect_exit0(pid);
    assert_true((rc == 0 && *a->rc == 1) || (rc == 1 && *a->rc == 0));
    brk_teardown(a);
}

/* A party killed while waiting still counts as arrived: the round
 * completes for the others. */
static void barrier_dead_waiter(void **state)
{
    (void)state;
    struct brk_arg *a = brk_setup(3);
    pid_t dead = mp_test_fork(brk_waiter, a);
    mp_test_await(a->ready, 10000);
    wait_arrived(a->b, 1);
    kill(dead, SIGKILL);
    expect_killed(dead);
    *a->rc = -1000;
    pid_t pid = mp_test_fork(brk_waiter, a);
    mp_test_await(a->ready, 10000);
    wait_arrived(a->b, 2);
    assert_int_equal(mp_barrier_wait(a->b, 10000), 2);
    expect_exit0(pid);
    assert_int_equal(*a->rc, 1);
    brk_teardown(a);
}


/* ---- a waker that dies before its wake-up strands nobody -------------------
 * Each case makes the state change a dying waker would have made, without
 * the futex wake that never came: the sleeper must notice it by itself
 * within about MP_SYNC_RESCUE_MS. */

struct rescue {
    mp_lock l;
    mp_sem s;
    mp_event e;
    mp_cond c;
    mp_lock cl;
    int ready[2];
    int which;
};

static int rescue_sleeper(void *arg)
{
    struct rescue *r = arg;
    int rc;
    switch (r->which) {
    case 0:
        mp_test_signal(r->ready);
        rc = mp_lock_acquire(&r->l, 10000);
        break;
    case 1:
        mp_test_signal(r->ready);
        rc = mp_sem_acquire(&r->s, 10000);
        break;
    case 2:
        mp_test_signal(r->ready);
        rc = mp_event_wait(&r->e, 10000);
        break;
    default:
        if (mp_lock_acquire(&r->cl, MP_FOREVER) != 0)
            return 9;
        mp_test_signal(r->ready);
        rc = mp_cond_wait(&r->c, &r->cl, 10000);
        mp_lock_release(&r->cl);
        break;
    }
    return rc == 0 ? 0 : 1;
}

static void rescue_lost_wakeups(void **state)
{
    (void)state;
    struct rescue *r = mp_test_shared(4096);
    mp_test_pipe(r->ready);
    for (int which = 0; which < 4; which++) {
        MP_ASSERT_OK(mp_lock_init(&r->l));
        MP_ASSERT_OK(mp_sem_init(&r->s, 0, 0));
        MP_ASSERT_OK(mp_event_init(&r->e));
        MP_ASSERT_OK(mp_cond_init(&r->c));
        MP_ASSERT_OK(mp_lock_init(&r->cl));
        r->which = which;
        if (which == 0)
            MP_ASSERT_OK(mp_lock_acquire(&r->l, 0));
        pid_t pid = mp_test_fork(rescue_sleeper, r);
        mp_test_await(r->ready, 10000);
        /* wait until it sleeps (its mark is in the word), then change the
         * word as a dying waker would, and never wake it */
        int64_t end = mp_test_now_ms() + 10000;
        switch (which) {
        case 0:
            while (!(__atomic_load_n(&r->l.state, __ATOMIC_ACQUIRE) & MP__LOCK_WAITERS))
                assert_true(mp_test_now_ms() < end);
            /* a releaser killed after storing 0, before waking; its robust
             * list still names the lock, as the dead one's would have */
            __atomic_store_n(&r->l.state, 0, __ATOMIC_RELEASE);
            break;
        case 1:
            while (__atomic_load_n(&r->s.waiters, __ATOMIC_ACQUIRE) == 0)
                assert_true(mp_test_now_ms() < end);
            __atomic_fetch_add(&r->s.value, 1, __ATOMIC_SEQ_CST);
            break;
        case 2:
            while (!(__atomic_load_n(&r->e.state, __ATOMIC_ACQUIRE) & 2))
                assert_true(mp_test_now_ms() < end);
            __atomic_store_n(&r->e.state, 1 | 4, __ATOMIC_SEQ_CST);
            break;
        default:
            while ((__atomic_load_n(&r->c.state, __ATOMIC_ACQUIRE) & 0xfffff) == 0)
                assert_true(mp_test_now_ms() < end);
            /* a notify killed after granting, before bumping seq and waking */
            __atomic_store_n(&r->c.state, (UINT64_C(1) << 20) | (UINT64_C(1) << 40),
                             __ATOMIC_SEQ_CST);
            break;
        }
        int64_t t0 = mp_test_now_ms();
        expect_exit0(pid);
        int64_t took = mp_test_now_ms() - t0;
        if (took > MP_SYNC_RESCUE_MS + 3000)
            fail_msg("case %d: the sleeper noticed after %lld ms", which, (long long)took);
        if (which == 0) {
            /* our node is still linked: unlink it the normal way */
            __atomic_store_n(&r->l.state, (uint32_t)mp__tid(), __ATOMIC_RELEASE);
            MP_ASSERT_OK(mp_lock_release(&r->l));
        }
    }
    close(r->ready[0]);
    close(r->ready[1]);
    unmap_shared(r, 4096);
}

/* ---- a handler that asks to stop: -EINTR, with the documented state ------ */

static volatile sig_atomic_t stop_asked;

static int fake_sig_run(void)
{
    return stop_asked ? -EINTR : 0;
}

static void on_usr2(int sig)
{
    (void)sig;
    stop_asked = 1;
}

struct kicker_arg {
    pid_t target;
    int go[2];
};

static int kicker(void *arg)
{
    struct kicker_arg *k = arg;
    mp_test_await(k->go, 10000);
    /* signal it once it sleeps (either order gives -EINTR; this one tests
     * the interrupted sleep) */
    mp_test_pid_sleeping(k->target, 10000);
    kill(k->target, SIGUSR2);
    return 0;
}

static void handler_interrupts_waits(void **state)
{
    (void)state;
    struct sigaction sa = { .sa_handler = on_usr2 }, old;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR2, &sa, &old), 0);
    int (*saved)(void) = mp__sig_run;
    mp__sig_run = fake_sig_run; /* what mp_signal_on() installs */
    struct kicker_arg *k = mp_test_shared(4096);
    k->target = getpid();
    mp_test_pipe(k->go);
    struct holder_arg *h = (struct holder_arg *)((char *)k + 256);
    h->l = (mp_lock *)((char *)k + 1024);
    MP_ASSERT_OK(mp_lock_init(h->l));
    mp_test_pipe(h->fds);
    pid_t holder = mp_test_fork(hold_and_wait, h);
    mp_test_await(h->fds, 10000);
    for (int which = 0; which < 3; which++) {
        stop_asked = 0;
        pid_t pid = mp_test_fork(kicker, k);
        mp_test_signal(k->go);
        if (which == 0) {
            MP_ASSERT_ERR(mp_lock_acquire(h->l, 10000), -EINTR);
            assert_false(mp__lock_held(h->l));
        } else if (which == 1) {
            mp_lock l = MP_LOCK_INIT;
            mp_cond c = MP_COND_INIT;
            MP_ASSERT_OK(mp_lock_acquire(&l, 0));
            MP_ASSERT_ERR(mp_cond_wait(&c, &l, 10000), -EINTR);
            assert_true(mp__lock_held(&l)); /* held again, whatever happened */
            assert_int_equal(c.state & 0xfffff, 0);
            MP_ASSERT_OK(mp_lock_release(&l));
        } else {
            mp_barrier b = MP_BARRIER_INIT(2);
            MP_ASSERT_ERR(mp_barrier_wait(&b, 10000), -EINTR);
            MP_ASSERT_ERR(mp_barrier_wait(&b, 0), -EPIPE); /* it broke the barrier */
        }
        expect_exit0(pid);
    }
    mp__sig_run = saved;
    kill(holder, SIGKILL);
    expect_killed(holder);
    sigaction(SIGUSR2, &old, NULL);
    close(k->go[0]);
    close(k->go[1]);
    close(h->fds[0]);
    close(h->fds[1]);
    unmap_shared(k, 4096);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(lock_basic),
    cmocka_unit_test(lock_bad_input),
    cmocka_unit_test(lock_many_with_pthread_robust),
    cmocka_unit_test(lock_timeouts),
    cmocka_unit_test(lock_owner_dies),
    cmocka_unit_test(lock_owner_dies_with_waiters),
    cmocka_unit_test(lock_thread_exit_holding),
    cmocka_unit_test(lock_fork_child),
    cmocka_unit_test(lock_counts_exactly),
    cmocka_unit_test(rlock_reentrant),
    cmocka_unit_test(rlock_other_process),
    cmocka_unit_test(rlock_counts_exactly),
    cmocka_unit_test(uncontended_no_syscall),
    cmocka_unit_test(signals_do_not_shorten_waits),
    cmocka_unit_test(sem_basic),
    cmocka_unit_test(sem_bounded),
    cmocka_unit_test(sem_cross_process),
    cmocka_unit_test(event_basic),
    cmocka_unit_test(event_wakes_all),
    cmocka_unit_test(cond_basic),
    cmocka_unit_test(cond_notify_exact),
    cmocka_unit_test(cond_notifier_dies_holding_lock),
    cmocka_unit_test(cond_no_stealing),
    cmocka_unit_test(cond_producer_consumer),
    cmocka_unit_test(barrier_rounds),
    cmocka_unit_test(barrier_bad_input),
    cmocka_unit_test(barrier_timeout_breaks),
    cmocka_unit_test(barrier_abort_reset),
    cmocka_unit_test(barrier_dead_waiter),
    cmocka_unit_test(rescue_lost_wakeups),
    cmocka_unit_test(handler_interrupts_waits),
};

MP_TEST_MAIN(tests)
