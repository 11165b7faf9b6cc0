/* src/internal/core.h - what every mproc module shares inside the library.
 *
 * Nothing here is installed.  Cross-file internal names start with mp__ and
 * are hidden (the library is compiled with -fvisibility=hidden; only MP_API
 * symbols are exported).  Static builds still link them, which is how the
 * tests reach internals such as the deadline helpers.
 *
 * OS contract (the kernel facilities mproc relies on, Linux >= 5.3 assumed):
 *  - futex(2) FUTEX_WAIT_BITSET / FUTEX_WAKE on shared (non-private) words:
 *    every blocking wait on shared memory.  Absolute CLOCK_MONOTONIC
 *    deadlines.  No fallback: futexes exist on every Linux.
 *  - futex_waitv(2) (5.16+): lets a wait sleep on the object's word and on
 *    this process's signal word at once, so a signal that arrives between
 *    "check for pending handlers" and "sleep" still wakes the wait.  When the
 *    kernel (or valgrind) lacks it, mproc falls back to FUTEX_WAIT_BITSET and
 *    that narrow window remains: a handler then runs at the next wake-up or
 *    at the deadline.
 *  - pidfd_open(2) (5.3+): the process handle; it polls readable once the
 *    child exited and never refers to a reused pid.
 *  - poll(2) for every wait on a file descriptor (pipes, pidfds).
 *  - memfd/MAP_SHARED|MAP_ANONYMOUS and shm_open(3) for shared memory.
 *  - prctl(PR_SET_PDEATHSIG) for daemonic children.
 */
#ifndef MPROC_INTERNAL_CORE_H
#define MPROC_INTERNAL_CORE_H

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mproc/common.h"

#define MP__LIKELY(x)   __builtin_expect(!!(x), 1)
#define MP__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MP__CACHELINE 64

/* Policy: resource errors (ENOMEM, EAGAIN, EPIPE, ...) go back to the
 * caller; an outcome that can only be a bug in mproc or a corrupted shared
 * word aborts through mp__panic, which prints "mproc bug:" and the message. */
_Noreturn void mp__panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- deadlines ---------------------------------------------------------
 * A relative timeout_ms becomes one absolute CLOCK_MONOTONIC deadline at API
 * entry; every retry (EINTR, spurious wake, a handler that ran) recomputes
 * what is left from it. */
typedef struct mp__deadline {
    int64_t at_ns; /* CLOCK_MONOTONIC ns; INT64_MAX = never */
    bool nowait;   /* the caller passed 0: expiry is -EAGAIN, not -ETIMEDOUT */
} mp__deadline;

int64_t mp__now_ns(void);
mp__deadline mp__deadline_from_ms(int timeout_ms);
bool mp__deadline_forever(const mp__deadline *dl);
bool mp__deadline_expired(const mp__deadline *dl);
/* The code an expired wait returns: -EAGAIN for timeout 0, else -ETIMEDOUT. */
int mp__deadline_code(const mp__deadline *dl);
/* Milliseconds left, rounded up, for poll(2): -1 when forever, 0 when past. */
int mp__deadline_poll_ms(const mp__deadline *dl);

/* ---- futex ---------------------------------------------------------------
 * Shared (non-private) futexes, so they work across processes. */

/* Sleeps while *addr == expected, until woken or the deadline.  0 when woken
 * or when *addr already differed (the caller re-checks its condition),
 * -ETIMEDOUT/-EAGAIN at the deadline, -EINTR when a signal interrupted the
 * sleep.  Does not run signal handlers: see mp__wait_word. */
int mp__futex_wait(uint32_t *addr, uint32_t expected, const mp__deadline *dl);
/* Wakes up to n waiters (INT32_MAX for all); returns how many woke. */
int mp__futex_wake(uint32_t *addr, int n);

/* ---- the one wait primitive ---------------------------------------------
 * Every blocking mproc call sleeps through mp__wait_word (shared-memory
 * objects) or mp__wait_poll (file descriptors).  Both run pending signal
 * handlers registered with mp_signal_on() and then go on waiting for what is
 * left of the deadline; a handler that returns non-zero makes them return
 * -EINTR.  Callers loop: check the condition, wait, re-check.
 *
 * mp__wait_word: 0 when *addr changed or a wake-up came (re-check),
 * -EAGAIN/-ETIMEDOUT at the deadline, -EINTR as above. */
int mp__wait_word(uint32_t *addr, uint32_t expected, const mp__deadline *dl);

/* poll(2) with the same rules: > 0 when some fd is ready (revents set),
 * -EAGAIN/-ETIMEDOUT at the deadline, -EINTR as above, other -errno on
 * failure.  fds may hold at most 63 entries. */
int mp__wait_poll(struct pollfd *fds, nfds_t nfds, const mp__deadline *dl);

/* ---- signal hooks (filled in by the signal module) ------------------------
 * mp__sig_word: bumped and futex-woken by mproc's async signal handler, so a
 *   futex_waitv sleeping on it returns when any handled signal arrives.
 * mp__sig_fd: read end of the self-pipe (-1 while no handler is installed);
 *   mp__wait_poll adds it to the poll set for the same reason.
 * mp__sig_run: runs the pending handlers; returns -EINTR if one asked to
 *   interrupt, else 0.  NULL while the signal module is unused. */
extern uint32_t mp__sig_word;
extern int mp__sig_fd;
extern int (*mp__sig_run)(void);

/* Runs pending handlers through mp__sig_run, if set: 0 or -EINTR. */
int mp__signal_check(void);

/* ---- fork protocol ---------------------------------------------------------
 * mp__fork() is the only way mproc forks.  Order: block all signals, run the
 * prepare hooks in registration order (they take internal locks), flush every
 * stdio output stream (fflush(NULL): no duplicated output), fork(), then run
 * the parent or child hooks in reverse registration order (they release or
 * reset what prepare took and reset per-process state), and restore the
 * signal mask.  Returns the pid (0 in the child) or -errno. */
typedef struct mp__fork_hooks {
    void (*prepare)(void);
    void (*parent)(void);
    void (*child)(void);
} mp__fork_hooks;

/* Registers hooks (a static object, kept by pointer) once; idempotent for the
 * same pointer.  Up to 16 sets.  Thread-safe. */
void mp__fork_register(const mp__fork_hooks *hooks);
pid_t mp__fork(void);

/* ---- small fd helpers (EINTR retried, partial transfers completed) ---- */
int mp__write_all(int fd, const void *buf, size_t len);   /* 0 or -errno */
/* Reads exactly len bytes: 0, MP_EOF if EOF came first (nothing or a partial
 * read: *got says how much), or -errno. got may be NULL. */
int mp__read_all(int fd, void *buf, size_t len, size_t *got);
void mp__close(int fd);                                    /* keeps errno */

#endif
