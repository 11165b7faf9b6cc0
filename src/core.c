/* src/core.c - deadlines, futexes, the one wait primitive and the fork
 * protocol that every mproc module builds on. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal/core.h"

void mp__panic(const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    fputs("mproc bug: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (errno %d: %s)\n", saved, strerror(saved));
    abort();
}

/* ---- deadlines ---------------------------------------------------------- */

int64_t mp__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

mp__deadline mp__deadline_from_ms(int timeout_ms)
{
    mp__deadline dl = { .at_ns = INT64_MAX, .nowait = false };
    if (timeout_ms == 0) {
        dl.at_ns = 0;
        dl.nowait = true;
    } else if (timeout_ms > 0) {
        dl.at_ns = mp__now_ns() + (int64_t)timeout_ms * 1000000;
    }
    return dl;
}

bool mp__deadline_forever(const mp__deadline *dl)
{
    return dl->at_ns == INT64_MAX;
}

bool mp__deadline_expired(const mp__deadline *dl)
{
    if (dl->nowait)
        return true;
    return !mp__deadline_forever(dl) && mp__now_ns() >= dl->at_ns;
}

int mp__deadline_code(const mp__deadline *dl)
{
    return dl->nowait ? -EAGAIN : -ETIMEDOUT;
}

int mp__deadline_poll_ms(const mp__deadline *dl)
{
    if (mp__deadline_forever(dl))
        return -1;
    int64_t left = dl->at_ns - mp__now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static struct timespec deadline_ts(const mp__deadline *dl)
{
    struct timespec ts = { .tv_sec = dl->at_ns / 1000000000,
                           .tv_nsec = dl->at_ns % 1000000000 };
    return ts;
}

/* ---- futex ---------------------------------------------------------------- */

/* The absolute timeout of a futex call: *tsp = NULL when the deadline is
 * forever; returns the expiry code if it already passed, else 0. */
static int futex_timeout(const mp__deadline *dl, struct timespec *ts, struct timespec **tsp)
{
    *tsp = NULL;
    if (mp__deadline_forever(dl))
        return 0;
    if (mp__deadline_expired(dl))
        return mp__deadline_code(dl);
    *ts = deadline_ts(dl);
    *tsp = ts;
    return 0;
}

int mp__futex_wait(uint32_t *addr, uint32_t expected, const mp__deadline *dl)
{
    struct timespec ts, *tsp;
    int expired = futex_timeout(dl, &ts, &tsp);
    if (expired)
        return expired;
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time (no
     * FUTEX_CLOCK_REALTIME flag), which is exactly our deadline. */
    long rc = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, expected, tsp, NULL,
                      FUTEX_BITSET_MATCH_ANY);
    if (rc == 0)
        return 0;
    switch (errno) {
    case EAGAIN:    return 0; /* *addr != expected already */
    case EINTR:     return -EINTR;
    case ETIMEDOUT: return mp__deadline_code(dl);
    default:        mp__panic("futex wait on %p", (void *)addr);
    }
}

int mp__futex_wake(uint32_t *addr, int n)
{
    long rc = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
    if (rc < 0)
        mp__panic("futex wake on %p", (void *)addr);
    return (int)rc;
}

/* futex_waitv(2): sleep on the object's word and on mp__sig_word together.
 * Returns 0 (object word changed or woken), 1 (signal word), -EINTR,
 * deadline code, or 2 when the kernel lacks the call (fall back). */
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef FUTEX_32
#define FUTEX_32 2
#endif
struct mp__futex_waitv {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};
static int waitv_broken; /* set once the kernel said it lacks futex_waitv */

static int futex_waitv2(uint32_t *addr, uint32_t expected, uint32_t sig_seen,
                        const mp__deadline *dl)
{
    struct mp__futex_waitv w[2] = {
        { .val = expected, .uaddr = (uintptr_t)addr, .flags = FUTEX_32 },
        { .val = sig_seen, .uaddr = (uintptr_t)&mp__sig_word, .flags = FUTEX_32 },
    };
    struct timespec ts, *tsp;
    int expired = futex_timeout(dl, &ts, &tsp);
    if (expired)
        return expired;
    long rc = syscall(SYS_futex_waitv, w, 2, 0, tsp, CLOCK_MONOTONIC);
    if (rc >= 0)
        return rc == 1 ? 1 : 0;
    switch (errno) {
    case EAGAIN:    return 0; /* one of the words already differed */
    case EINTR:     return -EINTR;
    case ETIMEDOUT: return mp__deadline_code(dl);
    case ENOSYS:
    case EINVAL:    /* no futex_waitv here (old kernel, or valgrind) */
        __atomic_store_n(&waitv_broken, 1, __ATOMIC_RELAXED);
        return 2;
    default:        mp__panic("futex_waitv on %p", (void *)addr);
    }
}

/* ---- signal hooks ----------------------------------------------------------- */

uint32_t mp__sig_word;
int mp__sig_fd = -1;
int (*mp__sig_run)(void);

int mp__signal_check(void)
{
    int (*run)(void) = __atomic_load_n(&mp__sig_run, __ATOMIC_ACQUIRE);
    return run ? run() : 0;
}

/* ---- the one wait primitive -------------------------------------------------- */

int mp__wait_word(uint32_t *addr, uint32_t expected, const mp__deadline *dl)
{
    for (;;) {
        /* Read the signal word before running handlers: a signal that comes
         * after this load changes the word, so futex_waitv returns at once
         * instead of sleeping through it. */
        uint32_t sig_seen = __atomic_load_n(&mp__sig_word, __ATOMIC_ACQUIRE);
        int rc = mp__signal_check();
        if (rc < 0)
            return rc;
        if (mp__deadline_expired(dl))
            return mp__deadline_code(dl);
        if (__atomic_load_n(&mp__sig_run, __ATOMIC_ACQUIRE) &&
            !__atomic_load_n(&waitv_broken, __ATOMIC_RELAXED)) {
            rc = futex_waitv2(addr, expected, sig_seen, dl);
            if (rc == 2)
                continue; /* retry with the plain futex */
            if (rc == 1 || rc == -EINTR)
                continue; /* a signal: run its handler, keep waiting */
            return rc;
        }
        rc = mp__futex_wait(addr, expected, dl);
        if (rc == -EINTR)
            continue;
        return rc;
    }
}

int mp__wait_poll(struct pollfd *fds, nfds_t nfds, const mp__deadline *dl)
{
    struct pollfd set[64];
    if (nfds > 63)
        return -EINVAL;
    for (;;) {
        int rc = mp__signal_check();
        if (rc < 0)
            return rc;
        memcpy(set, fds, nfds * sizeof *fds);
        nfds_t n = nfds;
        int sfd = __atomic_load_n(&mp__sig_fd, __ATOMIC_ACQUIRE);
        if (sfd >= 0)
            set[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
        int ms = mp__deadline_poll_ms(dl);
        rc = poll(set, n, ms);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        int ready = 0;
        for (nfds_t i = 0; i < nfds; i++) {
            fds[i].revents = set[i].revents;
            ready += set[i].revents != 0;
        }
        if (ready > 0)
            return ready;
        if (rc > 0 && !mp__deadline_expired(dl))
            continue; /* only the signal pipe: run handlers, keep waiting */
        if (ms == 0 || mp__deadline_expired(dl))
            return mp__deadline_code(dl);
        /* poll rounds to milliseconds: wait out the rest */
    }
}

/* ---- fork protocol ------------------------------------------------------------ */

/* The registered hook sets, in registration order.  Registration is rare
 * (once per module) and guarded by reg_lock; mp__fork reads the count with
 * acquire, after which the entries below it never change. */
static const mp__fork_hooks *fork_hooks[16];
static int fork_nhooks;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

void mp__fork_register(const mp__fork_hooks *hooks)
{
    pthread_mutex_lock(&reg_lock);
    int n = fork_nhooks;
    for (int i = 0; i < n; i++)
        if (fork_hooks[i] == hooks)
            goto out;
    if (n == (int)(sizeof fork_hooks / sizeof fork_hooks[0]))
        mp__panic("too many fork hook sets");
    fork_hooks[n] = hooks;
    __atomic_store_n(&fork_nhooks, n + 1, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&reg_lock);
}

pid_t mp__fork(void)
{
    sigset_t all, old;
    sigfillset(&all);
    if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0)
        mp__panic("pthread_sigmask");
    int n = __atomic_load_n(&fork_nhooks, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (fork_hooks[i]->prepare)
            fork_hooks[i]->prepare();
    fflush(NULL);
    pid_t pid = fork();
    int err = errno;
    for (int i = n - 1; i >= 0; i--) {
        void (*fn)(void) = pid == 0 ? fork_hooks[i]->child : fork_hooks[i]->parent;
        if (fn)
            fn();
    }
    if (pthread_sigmask(SIG_SETMASK, &old, NULL) != 0)
        mp__panic("pthread_sigmask");
    return pid < 0 ? -err : pid;
}

/* ---- fd helpers -------------------------------------------------------------- */

int mp__write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int mp__read_all(int fd, void *buf, size_t len, size_t *got)
{
    char *p = buf;
    size_t done = 0;
    int rc = 0;
    while (done < len) {
        ssize_t n = read(fd, p + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (n == 0) {
            rc = MP_EOF;
            break;
        }
        done += (size_t)n;
    }
    if (got)
        *got = done;
    return rc;
}

void mp__close(int fd)
{
    int saved = errno;
    if (fd >= 0)
        close(fd); /* Linux frees the fd even on EINTR: never retry */
    errno = saved;
}
