/* Description: process-shared synchronization - mp_lock, mp_rlock, mp_sem,
 * mp_event, mp_cond, mp_barrier: semantics, timeouts, bad input, and what a
 * SIGKILLed process leaves behind. */
/* MP_TEST_TIMEOUT 30 */
#include "mp_test.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "internal/lock.h"

/* ---- helpers ------------------------------------------------------------- */

static void *shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

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
    mp_test_signal(h->fds);
    for (;;)
        pause();
}

static void lock_timeouts(void **state)
{
    (void)state;
    struct holder_arg *h = shared(4096);
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
 * lock works again; a glibc robust mutex held by the same thread recovers
 * too (the shared list stayed intact). */
static void lock_owner_dies(void **state)
{
    (void)state;
    struct holder_arg *h = shared(4096);
    h->l = (mp_lock *)((char *)h + 256);
    h->pm = (pthread_mutex_t *)((char *)h + 512);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    assert_int_equal(pthread_mutex_init(h->pm, &a), 0);
    MP_ASSERT_OK(mp_lock_init(h->l));
    mp_test_pipe(h->fds);
    for (int round = 0; round < 3; round++) {
        pid_t pid = mp_test_fork(hold_and_wait, h);
        mp_test_await(h->fds, 10000);
        kill(pid, SIGKILL);
        expect_killed(pid);
        MP_ASSERT_ERR(mp_lock_acquire(h->l, 1000), -EOWNERDEAD);
        assert_int_equal(pthread_mutex_lock(h->pm), EOWNERDEAD);
        assert_int_equal(pthread_mutex_consistent(h->pm), 0);
        MP_ASSERT_OK(mp_lock_release(h->l));
        assert_int_equal(pthread_mutex_unlock(h->pm), 0);
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
    char *mem = shared(4096);
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
    char *mem = shared(4096);
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
    char *mem = shared(4096);
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
    char *mem = shared(4096);
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

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(lock_basic),
    cmocka_unit_test(lock_bad_input),
    cmocka_unit_test(lock_many_with_pthread_robust),
    cmocka_unit_test(lock_timeouts),
    cmocka_unit_test(lock_owner_dies),
    cmocka_unit_test(lock_owner_dies_with_waiters),
    cmocka_unit_test(lock_thread_exit_holding),
    cmocka_unit_test(lock_counts_exactly),
    cmocka_unit_test(rlock_reentrant),
    cmocka_unit_test(rlock_other_process),
    cmocka_unit_test(rlock_counts_exactly),
};

MP_TEST_MAIN(tests)
