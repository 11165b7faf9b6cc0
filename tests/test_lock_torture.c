/* Description: lock torture - several processes hammer a counter pair under
 * mp_lock, mp_rlock and mp_sem (as a mutex) while the parent SIGKILLs
 * workers at random moments (often the holder itself) and restarts them:
 * nobody deadlocks, the -EOWNERDEAD recovery path runs, and the invariant
 * (a == b, both advanced together inside the lock) holds after repair.
 * One harness, driven by LOCK/UNLOCK macros per primitive (ck's validate
 * style). */
/* MP_TEST_TIMEOUT 60 */
#include "mp_test.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "internal/lock.h"

enum { WORKERS = 4, KILLS = 150, CRIT_SPIN = 200 };

struct torture {
    mp_lock lock;
    mp_rlock rlock;
    mp_sem sem;
    mp_event resume;
    /* guarded by the primitive under test */
    volatile uint64_t a, b;
    volatile uint64_t done;      /* completed increments */
    volatile pid_t sem_owner;    /* mp_sem only: who holds the unit */
    /* statistics, atomics */
    uint32_t recoveries;         /* -EOWNERDEAD seen */
    uint32_t repairs;            /* ... with a != b found and repaired */
    uint32_t stop;
    uint32_t pause_req;
    uint32_t paused;
    uint32_t bad;                /* a worker saw a broken invariant */
};

static struct torture *T;

/* The body every primitive runs: LOCK(timeout) evaluates to an rc, UNLOCK()
 * to an rc; OWNER() is the pid of the current holder, 0 if none. */
#define DEFINE_WORKER(name, LOCK, UNLOCK)                                         \
    static int name(void *arg)                                                    \
    {                                                                             \
        (void)arg;                                                                \
        while (!__atomic_load_n(&T->stop, __ATOMIC_ACQUIRE)) {                    \
            if (__atomic_load_n(&T->pause_req, __ATOMIC_ACQUIRE)) {               \
                /* a safe point: holding nothing, waiting for nothing */          \
                __atomic_fetch_add(&T->paused, 1, __ATOMIC_SEQ_CST);               \
                if (mp_event_wait(&T->resume, 10000) != 0)                        \
                    return 6;                                                     \
                continue;                                                         \
            }                                                                     \
            int rc = LOCK(20);                                                    \
            if (rc == -ETIMEDOUT)                                                 \
                continue;                                                         \
            if (rc == -EOWNERDEAD) {                                              \
                __atomic_fetch_add(&T->recoveries, 1, __ATOMIC_SEQ_CST);           \
                if (T->a != T->b) {                                               \
                    __atomic_fetch_add(&T->repairs, 1, __ATOMIC_SEQ_CST);          \
                    T->b = T->a;                                                  \
                }                                                                 \
            } else if (rc != 0) {                                                 \
                return 4;                                                         \
            }                                                                     \
            if (T->a != T->b) {                                                   \
                __atomic_store_n(&T->bad, 1, __ATOMIC_SEQ_CST);                   \
                return 3;                                                         \
            }                                                                     \
            T->a = T->a + 1;                                                      \
            for (volatile int s_ = 0; s_ < CRIT_SPIN; s_++)                       \
                ;                                                                 \
            T->b = T->b + 1;                                                      \
            T->done = T->done + 1;                                                \
            if (UNLOCK() != 0)                                                    \
                return 5;                                                         \
        }                                                                         \
        return 0;                                                                 \
    }

/* mp_lock */
#define LOCK_L(ms) mp_lock_acquire(&T->lock, (ms))
#define UNLOCK_L() mp_lock_release(&T->lock)
DEFINE_WORKER(worker_lock, LOCK_L, UNLOCK_L)

/* mp_rlock, taken twice (the depth survives the owner's death correctly) */
static int rlock_twice(int ms)
{
    int rc = mp_rlock_acquire(&T->rlock, ms);
    if (rc != 0 && rc != -EOWNERDEAD)
        return rc;
    int rc2 = mp_rlock_acquire(&T->rlock, 0);
    return rc2 != 0 ? rc2 : rc;
}
static int runlock_twice(void)
{
    int rc = mp_rlock_release(&T->rlock);
    return rc != 0 ? rc : mp_rlock_release(&T->rlock);
}
#define LOCK_R(ms) rlock_twice(ms)
#define UNLOCK_R() runlock_twice()
DEFINE_WORKER(worker_rlock, LOCK_R, UNLOCK_R)

/* mp_sem as a mutex: it records its owner for the parent's repair */
static int sem_lock(int ms)
{
    int rc = mp_sem_acquire(&T->sem, ms);
    if (rc == 0)
        T->sem_owner = getpid();
    return rc;
}
static int sem_unlock(void)
{
    T->sem_owner = 0;
    return mp_sem_release(&T->sem);
}
#define LOCK_S(ms) sem_lock(ms)
#define UNLOCK_S() sem_unlock()
DEFINE_WORKER(worker_sem, LOCK_S, UNLOCK_S)

enum kind { K_LOCK, K_RLOCK, K_SEM };

static pid_t holder(enum kind k)
{
    switch (k) {
    case K_LOCK:  return (pid_t)(__atomic_load_n(&T->lock.state, __ATOMIC_ACQUIRE) & MP__LOCK_TID);
    case K_RLOCK: return (pid_t)(__atomic_load_n(&T->rlock.state, __ATOMIC_ACQUIRE) & MP__LOCK_TID);
    default:      return T->sem_owner;
    }
}

static void expect_progress(uint64_t from, const char *what)
{
    int64_t end = mp_test_now_ms() + 5000;
    while (T->done < from + 10) {
        if (mp_test_now_ms() > end)
            fail_msg("no progress for 5 s after %s: deadlock (done=%llu)", what,
                     (unsigned long long)T->done);
        if (__atomic_load_n(&T->bad, __ATOMIC_ACQUIRE))
            fail_msg("a worker saw a != b without -EOWNERDEAD");
        sched_yield();
    }
}

/* A semaphore does not know its holders: after a kill, the application
 * stops everyone at a safe point; a unit missing then was taken by the dead
 * process, so it repairs the data and returns the unit. */
static void sem_repair(int live)
{
    MP_ASSERT_OK(mp_event_clear(&T->resume));
    __atomic_store_n(&T->paused, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&T->pause_req, 1, __ATOMIC_SEQ_CST);
    int64_t end = mp_test_now_ms() + 5000;
    while (__atomic_load_n(&T->paused, __ATOMIC_SEQ_CST) < (uint32_t)live) {
        if (mp_test_now_ms() > end)
            fail_msg("workers never reached the safe point");
        sched_yield();
    }
    if (mp_sem_value(&T->sem) == 0) {
        __atomic_fetch_add(&T->recoveries, 1, __ATOMIC_SEQ_CST);
        if (T->a != T->b) {
            __atomic_fetch_add(&T->repairs, 1, __ATOMIC_SEQ_CST);
            T->b = T->a;
        }
        T->sem_owner = 0;
        MP_ASSERT_OK(mp_sem_release(&T->sem));
    }
    assert_int_equal(mp_sem_value(&T->sem), 1);
    __atomic_store_n(&T->pause_req, 0, __ATOMIC_SEQ_CST);
    MP_ASSERT_OK(mp_event_set(&T->resume));
}

static void torture(enum kind k, int (*worker)(void *))
{
    T = mp_test_shared(sizeof *T);
    MP_ASSERT_OK(mp_lock_init(&T->lock));
    MP_ASSERT_OK(mp_rlock_init(&T->rlock));
    MP_ASSERT_OK(mp_sem_init(&T->sem, 1, 1));
    MP_ASSERT_OK(mp_event_init(&T->resume));
    srand((unsigned)getpid());
    pid_t pids[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        pids[i] = mp_test_fork(worker, NULL);
    expect_progress(0, "start");
    int holder_kills = 0;
    for (int n = 0; n < KILLS; n++) {
        usleep((useconds_t)(rand() % 3000)); /* a random moment */
        int victim = rand() % WORKERS;
        if (n % 2 == 0) {
            /* every other time, the holder itself: catch one holding */
            int64_t end = mp_test_now_ms() + 200;
            bool found = false;
            while (!found && mp_test_now_ms() < end) {
                pid_t h = holder(k);
                for (int i = 0; i < WORKERS; i++)
                    if (h != 0 && pids[i] == h) {
                        victim = i;
                        found = true;
                    }
            }
        }
        if (holder(k) == pids[victim])
            holder_kills++;
        kill(pids[victim], SIGKILL);
        int st = mp_test_waitpid(pids[victim], 10000);
        if (WIFEXITED(st))
            fail_msg("worker exited with %d before the kill", WEXITSTATUS(st));
        if (k == K_SEM)
            sem_repair(WORKERS - 1);
        uint64_t before = T->done;
        pids[victim] = mp_test_fork(worker, NULL);
        expect_progress(before, "a kill");
    }
    __atomic_store_n(&T->stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < WORKERS; i++) {
        int st = mp_test_waitpid(pids[i], 10000);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("worker %d: status 0x%x", i, st);
    }
    /* the last state: take it once more and check (and repair) */
    int rc = k == K_LOCK ? mp_lock_acquire(&T->lock, 1000)
             : k == K_RLOCK ? mp_rlock_acquire(&T->rlock, 1000)
                            : mp_sem_acquire(&T->sem, 1000);
    assert_true(rc == 0 || rc == -EOWNERDEAD);
    assert_int_equal(T->a, T->b);
    /* each death can have lost at most the one increment it was making */
    assert_true(T->a >= T->done && T->a - T->done <= KILLS);
    print_message("%s: %llu increments, %d kills (%d of the holder), %u recoveries, "
                  "%u repairs\n",
                  k == K_LOCK ? "mp_lock" : k == K_RLOCK ? "mp_rlock" : "mp_sem",
                  (unsigned long long)T->done, KILLS, holder_kills, T->recoveries,
                  T->repairs);
    assert_true(holder_kills > 0);
    assert_true(T->recoveries >= 1);
    assert_true(T->recoveries <= KILLS);
    munmap(T, sizeof *T);
}

static void torture_lock(void **state)
{
    (void)state;
    torture(K_LOCK, worker_lock);
}

static void torture_rlock(void **state)
{
    (void)state;
    torture(K_RLOCK, worker_rlock);
}

static void torture_sem(void **state)
{
    (void)state;
    torture(K_SEM, worker_sem);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(torture_lock),
    cmocka_unit_test(torture_rlock),
    cmocka_unit_test(torture_sem),
};

MP_TEST_MAIN(tests)
