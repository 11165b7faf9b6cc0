/* mproc/sync.h - process-shared locks, semaphores, events, conditions and
 * barriers that survive a dead process.
 *
 * Every type here is a plain struct with no pointers: place it in shared
 * memory (mp_shm_alloc, MP_SHM_NEW, mp_shm_open), initialise it once with
 * its _init function or its MP_X_INIT initializer, then use it from any
 * process that maps it, at any address.  Memory from mp_shm_alloc is zeroed,
 * and all-zero bytes are a valid unlocked mp_lock and mp_rlock, a clear
 * mp_event, an mp_cond with no waiters and an unbounded mp_sem at 0 (not an
 * mp_barrier: it needs its party count).
 *
 * Waits take int timeout_ms: MP_FOREVER (-1) waits without limit, 0 never
 * waits and returns -EAGAIN when it would block, a positive timeout that
 * expires returns -ETIMEDOUT.  The deadline is CLOCK_MONOTONIC and a signal
 * neither shortens nor stretches it; a handler registered with mp_signal_on()
 * that returns non-zero makes the wait return -EINTR.
 *
 * Robustness (what a SIGKILL at any instant leaves behind):
 *  - mp_lock, mp_rlock: the kernel's robust-futex list marks a lock whose
 *    owner thread died; exactly one next acquirer gets -EOWNERDEAD and owns
 *    the lock, which is consistent again at once.
 *  - a process killed while waiting (lock, sem, event, cond, barrier) leaves
 *    the others unaffected; one killed between changing a word and waking its
 *    sleepers delays them by at most MP_SYNC_RESCUE_MS (sleepers re-check
 *    their word that often; no wake-up is ever lost for good).
 *  - mp_sem units taken by a process that died are not returned (as with
 *    POSIX sem_t): a semaphore counts units, not owners.
 *  - see each type below for the exact guarantee.
 *
 * Thread-safety: every function is thread-safe and may be used between
 * threads of one process as well as between processes.  No function is
 * async-signal-safe.  Fork-safety: a child forked while its parent holds a
 * lock does not hold it (ownership is per thread); the child may use every
 * object.  All processes sharing an object must share one PID namespace
 * (owner ids are thread ids).
 *
 * Requirements: Linux, glibc on a 64-bit target (mp_lock links itself into
 * the robust list glibc registers for each thread); where a thread's list
 * has another layout, the mp_lock and mp_rlock functions (and mp_cond_wait,
 * through its lock) return -ENOTSUP.  Do not unmap memory holding a lock
 * the calling thread holds: the kernel could not mark it at the thread's
 * death.
 */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include <errno.h> /* the -EOWNERDEAD, -ETIMEDOUT, ... these calls return */

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How often (ms) a sleeper re-checks its word even without a wake-up: the
 *  longest delay a process killed between a state change and its futex wake
 *  can cause. */
#define MP_SYNC_RESCUE_MS 200

/* ---- mp_lock: a robust, non-recursive mutex ---------------------------------
 *
 * state (the futex word, the kernel's robust-futex encoding):
 *   bits 0-29  owner thread id (gettid()); 0 = unlocked
 *   bit  30    OWNER_DIED: set by the kernel when the owner thread died
 *              holding the lock; the acquirer that clears it gets -EOWNERDEAD
 *   bit  31    WAITERS: someone may sleep on the word; release must wake one
 * robust[0], robust[1]: the node (prev, next) linking the lock into its
 *   owner thread's robust list (the kernel walks that list when the thread
 *   dies).  Meaningful only to the owning thread while it holds the lock;
 *   the lock word sits 32 bytes before robust[1], as in glibc's robust
 *   pthread_mutex_t, so both share the one list per thread.
 * reserved: zero; room to grow without changing the size. */
typedef struct mp_lock {
    uint32_t state;
    uint32_t reserved[5];
    uintptr_t robust[2];
} mp_lock;

#define MP_LOCK_INIT { 0, { 0 }, { 0, 0 } }

/** Makes *l an unlocked lock.  Never allocates.  -EINVAL for NULL,
 *  -ENOTSUP where robust locks cannot work (see Requirements). */
MP_API int mp_lock_init(mp_lock *l);

/** Acquires l, waiting up to timeout_ms.  0: acquired.  -EOWNERDEAD:
 *  acquired, and its previous owner died holding it; the lock is already
 *  consistent again, the code only warns that the data it guards may be
 *  half-updated (exactly one acquirer sees it per death).  -EDEADLK: the
 *  calling thread already holds it (never deadlocks on itself).  -EAGAIN
 *  (timeout 0) / -ETIMEDOUT: not acquired.  -EINTR (signal handler asked),
 *  -EINVAL (NULL), -ENOTSUP.  On every code but 0 and -EOWNERDEAD the lock
 *  is not held (and nothing changed).  The uncontended
 *  path makes no system call. */
MP_API int mp_lock_acquire(mp_lock *l, int timeout_ms);

/** Releases l.  -EPERM if the calling thread does not hold it (nothing
 *  changes).  Wakes one waiter if any sleeps. */
MP_API int mp_lock_release(mp_lock *l);

/** Ends the lock's use; it must not be held or waited on.  NULL is
 *  accepted.  Never fails. */
MP_API void mp_lock_destroy(mp_lock *l);

/* ---- mp_rlock: a robust re-entrant mutex -------------------------------------
 *
 * state: as mp_lock.  depth: how many times the owner holds it (only the
 * owner reads or writes it; reset to 1 when taken over from a dead owner).
 * The owner is a thread: re-entrant per process in a single-threaded
 * process, per thread otherwise (Python's RLock). */
typedef struct mp_rlock {
    uint32_t state;
    uint32_t depth;
    uint32_t reserved[4];
    uintptr_t robust[2];
} mp_rlock;

#define MP_RLOCK_INIT { 0, 0, { 0 }, { 0, 0 } }

/** As mp_lock_init. */
MP_API int mp_rlock_init(mp_rlock *l);
/** As mp_lock_acquire, except that the holder acquires again (depth + 1;
 *  -EOVERFLOW past UINT32_MAX levels).  -EOWNERDEAD: acquired from a dead
 *  owner, depth 1. */
MP_API int mp_rlock_acquire(mp_rlock *l, int timeout_ms);
/** Undoes one acquire; the last one unlocks.  -EPERM if the calling thread
 *  does not hold it. */
MP_API int mp_rlock_release(mp_rlock *l);
/** As mp_lock_destroy. */
MP_API void mp_rlock_destroy(mp_rlock *l);

/* ---- mp_sem: a counting semaphore, bounded if max > 0 -------------------------
 *
 * value:   units available (the futex word acquirers sleep on)
 * waiters: acquirers sleeping or about to sleep (release skips the wake-up
 *          system call when it is 0).  A process killed while waiting stays
 *          counted: release then makes one needless wake call; nothing else.
 * max:     0 = unbounded (Semaphore), else the bound (BoundedSemaphore)
 * A unit held by a process that died is not returned: the semaphore counts
 * units, not owners (as POSIX sem_t).  Use an mp_lock for mutual exclusion
 * that must survive a dead holder. */
typedef struct mp_sem {
    uint32_t value;
    uint32_t waiters;
    uint32_t max;
    uint32_t reserved[5];
} mp_sem;

#define MP_SEM_INIT(value, max) { (value), 0, (max), { 0 } }

/** Sets the count to value, with bound max (0: none).  -EINVAL for NULL,
 *  value > max when max > 0, or value/max above INT_MAX. */
MP_API int mp_sem_init(mp_sem *s, unsigned value, unsigned max);
/** Takes one unit, waiting up to timeout_ms: 0, -EAGAIN/-ETIMEDOUT, -EINTR. */
MP_API int mp_sem_acquire(mp_sem *s, int timeout_ms);
/** Returns one unit and wakes one waiter.  -EOVERFLOW (nothing changes) if
 *  that would exceed max, or INT_MAX when unbounded. */
MP_API int mp_sem_release(mp_sem *s);
/** The units available now (a snapshot), or -EINVAL for NULL. */
MP_API int mp_sem_value(mp_sem *s);
/** NULL is accepted.  Never fails. */
MP_API void mp_sem_destroy(mp_sem *s);

/* ---- mp_event: a flag processes wait for --------------------------------------
 *
 * state: bit 0    SET
 *        bit 1    WAITERS: someone may sleep; the next set wakes all
 *        bits 2-31 generation: + 1 each time a clear event is set, so a
 *                 waiter also returns 0 when the event was set and cleared
 *                 again before it ran (it was set while it waited)
 * A dead waiter leaves at most one needless wake-up call behind. */
typedef struct mp_event {
    uint32_t state;
    uint32_t reserved[3];
} mp_event;

#define MP_EVENT_INIT { 0, { 0 } }

/** Makes *e a clear event.  -EINVAL for NULL. */
MP_API int mp_event_init(mp_event *e);
/** Sets the flag and wakes every waiter.  -EINVAL for NULL. */
MP_API int mp_event_set(mp_event *e);
/** Clears the flag.  -EINVAL for NULL. */
MP_API int mp_event_clear(mp_event *e);
/** Whether the flag is set (false for NULL). */
MP_API bool mp_event_is_set(mp_event *e);
/** 0 once the flag is set (at once if it is); -EAGAIN/-ETIMEDOUT, -EINTR. */
MP_API int mp_event_wait(mp_event *e, int timeout_ms);
/** NULL is accepted.  Never fails. */
MP_API void mp_event_destroy(mp_event *e);

/* ---- mp_cond: a condition variable used with an mp_lock ----------------------
 *
 * seq:   futex word waiters sleep on; every notify that grants bumps it
 * state: one 64-bit word changed by CAS only:
 *          bits  0-19  waiters registered and not yet granted
 *          bits 20-39  grants not yet taken by a waiter
 *          bits 40-63  generation: + 1 per granting notify
 *   A waiter may take a grant only once the generation differs from the one
 *   it registered in, so a notify never goes to a waiter that began waiting
 *   after it (no stealing) and a wait returns 0 only when notified (no
 *   spurious wake-ups).  notify(n) moves min(n, waiters) registrations to
 *   grants: it wakes exactly that many waits, in no particular order.
 *   A waiter that times out either takes a grant (and returns 0) or
 *   withdraws its registration: timeouts never lose a notification.
 *   A waiter killed while waiting stays registered (it is one unit in the
 *   word forever): a notify never wakes fewer live waiters than it would
 *   have, min(n, live waiters), but once every live waiter has been granted,
 *   the dead unit can turn into one extra grant, so a later notify may wake
 *   one waiter more than asked per dead waiter.  mp_cond_init repairs it. */
typedef struct mp_cond {
    uint32_t seq;
    uint32_t reserved0;
    uint64_t state;
    uint32_t reserved[4];
} mp_cond;

#define MP_COND_INIT { 0, 0, 0, { 0 } }

/** Makes *c a condition with no waiters.  -EINVAL for NULL. */
MP_API int mp_cond_init(mp_cond *c);
/** The caller holds l: it is released while waiting and held again on
 *  return, whatever the result (except -EPERM and -EINVAL, when nothing
 *  happened).  0: notified (only then).  -EAGAIN/-ETIMEDOUT: not notified.
 *  -EINTR: a handler asked to stop waiting (not notified).  -EOWNERDEAD:
 *  re-acquiring l found its previous owner dead (l is held; the wait's own
 *  outcome is lost: treat it as a wake-up to re-check).  -EPERM: the caller
 *  does not hold l.  -EOVERFLOW: more than 2^20 - 1 waiters. */
MP_API int mp_cond_wait(mp_cond *c, mp_lock *l, int timeout_ms);
/** Wakes min(n, waiting) waiters; returns how many it granted (>= 0) or
 *  -EINVAL (NULL, n < 0).  Callable with or without the lock held. */
MP_API int mp_cond_notify(mp_cond *c, int n);
/** Wakes every waiter; returns how many. */
MP_API int mp_cond_notify_all(mp_cond *c);
/** NULL is accepted.  Never fails. */
MP_API void mp_cond_destroy(mp_cond *c);

/* ---- mp_barrier: parties meet, then all go on (lockstep rounds) ---------------
 *
 * state (futex word):
 *   bits 0-15   parties arrived in the current round
 *   bits 16-30  generation (round number, wraps)
 *   bit  31     BROKEN: the round was aborted or a wait timed out; every
 *               wait gets -EPIPE until mp_barrier_reset
 * broken: bit (g % 32) is set iff round g ended broken (so a waiter woken
 *   late still knows how its own round ended; exact while fewer than 32
 *   rounds pass before it runs again, which with as many processes as
 *   parties is always the case)
 * parties: the party count, fixed at init.
 * A party killed while waiting still counts as arrived; a party killed
 * before arriving means the round never completes: waits with a timeout
 * then break it. */
typedef struct mp_barrier {
    uint32_t state;
    uint32_t broken;
    uint32_t parties;
    uint32_t reserved[5];
} mp_barrier;

#define MP_BARRIER_INIT(parties) { 0, 0, (parties), { 0 } }

/** parties in 1..65535, else -EINVAL. */
MP_API int mp_barrier_init(mp_barrier *b, unsigned parties);
/** Waits until parties waits have arrived.  Returns the caller's arrival
 *  index 0..parties-1 (a permutation each round).  -ETIMEDOUT (-EAGAIN for
 *  timeout 0): this party's own timeout expired; it breaks the barrier.
 *  -EPIPE: the barrier is or became broken.  -EINTR: a handler asked to
 *  stop (this also breaks the barrier, as Python's wait does when it raises). */
MP_API int mp_barrier_wait(mp_barrier *b, int timeout_ms);
/** Breaks the barrier: current and later waits get -EPIPE until reset. */
MP_API int mp_barrier_abort(mp_barrier *b);
/** Back to the empty, unbroken state; waiters of the current round get -EPIPE. */
MP_API int mp_barrier_reset(mp_barrier *b);
/** NULL is accepted.  Never fails. */
MP_API void mp_barrier_destroy(mp_barrier *b);

#ifdef __cplusplus
}
#endif

#endif
