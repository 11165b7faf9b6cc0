/* src/signal.c - signal handlers that run in normal context, the self-pipe
 * and signal word that wake mproc's blocking calls, alarm and kill -l. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "internal/core.h"
#include "mproc/signal.h"

/* ---- state -----------------------------------------------------------------
 *
 * How a delivery travels.  The kernel runs on_signal() (async context, every
 * signal blocked, SA_RESTART off so the sleeping futex/poll returns EINTR):
 *   1. pending[sig] += 1            the delivery is recorded, never lost;
 *   2. one byte into the self-pipe  wakes mp__wait_poll;
 *   3. any_pending = 1              tells run_pending() there is work;
 *   4. mp__sig_word += 1, wake all  wakes mp__wait_word's futex_waitv.
 * Then, in normal context, run_pending() (mp__sig_run) clears any_pending,
 * drains the pipe and takes the deliveries one by one, calling the handler
 * once for each.  Step 3 comes after step 2 so that a byte in the pipe always
 * has any_pending set behind it (or the handler is still running): the pipe
 * is then always drained and poll never spins on it.
 *
 * pending[sig]: number of deliveries recorded but not yet run.  Incremented
 *   only by on_signal(), decremented by run_pending() with a CAS, zeroed when
 *   the handler is removed or in a fork child.
 * any_pending: 0 = nothing to do; 1 = some pending[] may be non-zero.
 * handlers[], installed[]: the callbacks, guarded by lock.  installed[sig]
 *   says on_signal() is sig's disposition (what a fork child must undo).
 * pipe_rd/pipe_wr: the self-pipe (non-blocking, close-on-exec), -1 before the
 *   first handler.  A fork child gets its own (see atfork_child); the
 *   forking thread blocks every signal from atfork_prepare until the child
 *   has it, so on_signal() never runs in a child that still holds its
 *   parent's pipe (it would wake the parent for nothing). */
#define NSIG_ (_NSIG)

static uint32_t pending[NSIG_];
static uint32_t any_pending;
static struct {
    mp_signal_fn fn;
    void *arg;
} handlers[NSIG_];
static bool installed[NSIG_];
static int pipe_rd = -1, pipe_wr = -1;
static sigset_t fork_saved_mask; /* the forking thread's mask, under lock */
static bool hooks_registered;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The mp_signal_wait() in progress in this thread, if any: run_pending()
 * then runs at most one handler and reports it here. */
struct waiter {
    int sig;   /* the signal whose handler ran, 0 while none */
    bool intr; /* that handler returned non-zero */
};
static __thread struct waiter *tl_waiter;

/* ---- names and default actions ------------------------------------------- */

struct sigdesc {
    const char *name;
    const char *meaning;
    mp_signal_action action;
};

static const struct sigdesc std_signals[32] = {
    [SIGHUP] = { "SIGHUP", "hangup", MP_SIGACT_TERM },
    [SIGINT] = { "SIGINT", "interrupt", MP_SIGACT_TERM },
    [SIGQUIT] = { "SIGQUIT", "quit", MP_SIGACT_CORE },
    [SIGILL] = { "SIGILL", "illegal instruction", MP_SIGACT_CORE },
    [SIGTRAP] = { "SIGTRAP", "trace/breakpoint trap", MP_SIGACT_CORE },
    [SIGABRT] = { "SIGABRT", "aborted", MP_SIGACT_CORE },
    [SIGBUS] = { "SIGBUS", "bus error", MP_SIGACT_CORE },
    [SIGFPE] = { "SIGFPE", "floating-point exception", MP_SIGACT_CORE },
    [SIGKILL] = { "SIGKILL", "killed", MP_SIGACT_TERM },
    [SIGUSR1] = { "SIGUSR1", "user defined signal 1", MP_SIGACT_TERM },
    [SIGSEGV] = { "SIGSEGV", "segmentation fault", MP_SIGACT_CORE },
    [SIGUSR2] = { "SIGUSR2", "user defined signal 2", MP_SIGACT_TERM },
    [SIGPIPE] = { "SIGPIPE", "broken pipe", MP_SIGACT_TERM },
    [SIGALRM] = { "SIGALRM", "alarm clock", MP_SIGACT_TERM },
    [SIGTERM] = { "SIGTERM", "terminated", MP_SIGACT_TERM },
#ifdef SIGSTKFLT
    [SIGSTKFLT] = { "SIGSTKFLT", "stack fault", MP_SIGACT_TERM },
#endif
    [SIGCHLD] = { "SIGCHLD", "child exited", MP_SIGACT_IGNORE },
    [SIGCONT] = { "SIGCONT", "continued", MP_SIGACT_CONT },
    [SIGSTOP] = { "SIGSTOP", "stopped (signal)", MP_SIGACT_STOP },
    [SIGTSTP] = { "SIGTSTP", "stopped", MP_SIGACT_STOP },
    [SIGTTIN] = { "SIGTTIN", "stopped (tty input)", MP_SIGACT_STOP },
    [SIGTTOU] = { "SIGTTOU", "stopped (tty output)", MP_SIGACT_STOP },
    [SIGURG] = { "SIGURG", "urgent I/O condition", MP_SIGACT_IGNORE },
    [SIGXCPU] = { "SIGXCPU", "CPU time limit exceeded", MP_SIGACT_CORE },
    [SIGXFSZ] = { "SIGXFSZ", "file size limit exceeded", MP_SIGACT_CORE },
    [SIGVTALRM] = { "SIGVTALRM", "virtual timer expired", MP_SIGACT_TERM },
    [SIGPROF] = { "SIGPROF", "profiling timer expired", MP_SIGACT_TERM },
    [SIGWINCH] = { "SIGWINCH", "window changed", MP_SIGACT_IGNORE },
    [SIGIO] = { "SIGIO", "I/O possible", MP_SIGACT_TERM },
#ifdef SIGPWR
    [SIGPWR] = { "SIGPWR", "power failure", MP_SIGACT_TERM },
#endif
    [SIGSYS] = { "SIGSYS", "bad system call", MP_SIGACT_CORE },
};

/* Real-time signals are named as bash's kill -l names them: SIGRTMIN+k for
 * the lower half, SIGRTMAX-k for the upper half. */
static const char *const rtmin_names[] = {
    "SIGRTMIN", "SIGRTMIN+1", "SIGRTMIN+2", "SIGRTMIN+3", "SIGRTMIN+4",
    "SIGRTMIN+5", "SIGRTMIN+6", "SIGRTMIN+7", "SIGRTMIN+8", "SIGRTMIN+9",
    "SIGRTMIN+10", "SIGRTMIN+11", "SIGRTMIN+12", "SIGRTMIN+13", "SIGRTMIN+14",
    "SIGRTMIN+15", "SIGRTMIN+16",
};
static const char *const rtmax_names[] = {
    "SIGRTMAX", "SIGRTMAX-1", "SIGRTMAX-2", "SIGRTMAX-3", "SIGRTMAX-4",
    "SIGRTMAX-5", "SIGRTMAX-6", "SIGRTMAX-7", "SIGRTMAX-8", "SIGRTMAX-9",
    "SIGRTMAX-10", "SIGRTMAX-11", "SIGRTMAX-12", "SIGRTMAX-13", "SIGRTMAX-14",
    "SIGRTMAX-15", "SIGRTMAX-16",
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const action_names[] = {
    [MP_SIGACT_TERM] = "terminate", [MP_SIGACT_CORE] = "core",
    [MP_SIGACT_IGNORE] = "ignore",  [MP_SIGACT_STOP] = "stop",
    [MP_SIGACT_CONT] = "continue",
};

static bool is_rt(int sig)
{
    return sig >= SIGRTMIN && sig <= SIGRTMAX;
}

/* A signal kill -l lists: a named standard signal or SIGRTMIN..SIGRTMAX
 * (not the C library's reserved ones between them). */
static bool valid_signal(int sig)
{
    if (sig > 0 && sig < (int)COUNT(std_signals))
        return std_signals[sig].name != NULL;
    return is_rt(sig) && sig < NSIG_;
}

/* Signals raised by a faulting instruction: deferring their handling would
 * return to the instruction, which faults again, forever. */
static bool fault_signal(int sig)
{
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL ||
           sig == SIGTRAP || sig == SIGSYS;
}

const char *mp_signal_name(int sig)
{
    if (!valid_signal(sig))
        return NULL;
    if (!is_rt(sig))
        return std_signals[sig].name;
    int lo = sig - SIGRTMIN, hi = SIGRTMAX - sig;
    int half = (SIGRTMAX - SIGRTMIN) / 2;
    if (lo <= half && lo < (int)COUNT(rtmin_names))
        return rtmin_names[lo];
    if (hi < (int)COUNT(rtmax_names))
        return rtmax_names[hi];
    return NULL; /* more real-time signals than any Linux has */
}

/* Parses a decimal 0..999 with nothing after it; -1 otherwise. */
static int parse_small(const char *s)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    int v = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || v > 99)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

int mp_signal_number(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return -EINVAL;
    int n = parse_small(name);
    if (n >= 0)
        return valid_signal(n) ? n : -EINVAL;
    if (strncasecmp(name, "SIG", 3) == 0)
        name += 3;
    static const struct {
        const char *alias;
        int sig;
    } aliases[] = { { "IOT", SIGABRT }, { "POLL", SIGIO }, { "CLD", SIGCHLD } };
    for (size_t i = 0; i < COUNT(aliases); i++)
        if (strcasecmp(name, aliases[i].alias) == 0)
            return aliases[i].sig;
    for (int sig = 1; sig < (int)COUNT(std_signals); sig++)
        if (std_signals[sig].name && strcasecmp(name, std_signals[sig].name + 3) == 0)
            return sig;
    int base, dir;
    if (strncasecmp(name, "RTMIN", 5) == 0) {
        base = SIGRTMIN;
        dir = 1;
    } else if (strncasecmp(name, "RTMAX", 5) == 0) {
        base = SIGRTMAX;
        dir = -1;
    } else {
        return -EINVAL;
    }
    name += 5;
    int off = 0;
    if (*name != '\0') {
        if (*name != (dir > 0 ? '+' : '-'))
            return -EINVAL;
        off = parse_small(name + 1);
        if (off < 0)
            return -EINVAL;
    }
    int sig = base + dir * off;
    return is_rt(sig) && sig < NSIG_ ? sig : -EINVAL;
}

int mp_signal_describe(int sig, mp_signal_info *out)
{
    if (out == NULL || !valid_signal(sig))
        return -EINVAL;
    mp_signal_action act = is_rt(sig) ? MP_SIGACT_TERM : std_signals[sig].action;
    *out = (mp_signal_info){
        .number = sig,
        .name = mp_signal_name(sig),
        .meaning = is_rt(sig) ? "real-time signal" : std_signals[sig].meaning,
        .action = act,
        .action_name = action_names[act],
    };
    return 0;
}

int mp_signal_list(mp_signal_info *out, size_t cap)
{
    if (out == NULL && cap > 0)
        return -EINVAL;
    size_t n = 0;
    for (int sig = 1; sig < NSIG_; sig++) {
        if (!valid_signal(sig))
            continue;
        if (n < cap)
            mp_signal_describe(sig, &out[n]);
        n++;
    }
    return (int)n;
}

/* ---- the asynchronous part ------------------------------------------------- */

/* The only code that runs in signal context: async-signal-safe calls only
 * (write, futex), errno preserved. */
static void on_signal(int sig)
{
    int saved = errno;
    __atomic_fetch_add(&pending[sig], 1, __ATOMIC_SEQ_CST);
    int fd = __atomic_load_n(&pipe_wr, __ATOMIC_ACQUIRE);
    if (fd >= 0) {
        unsigned char b = (unsigned char)sig;
        /* A full pipe (EAGAIN) is fine: it is already readable. */
        ssize_t rc = write(fd, &b, 1);
        (void)rc;
    }
    __atomic_store_n(&any_pending, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&mp__sig_word, 1, __ATOMIC_SEQ_CST);
    /* Shared futex (no FUTEX_PRIVATE_FLAG): futex_waitv sleeps on it as a
     * shared word.  Raw syscall: mp__futex_wake may panic, which is not
     * async-signal-safe. */
    syscall(SYS_futex, &mp__sig_word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    errno = saved;
}

/* ---- normal context ------------------------------------------------------- */

static void drain_pipe(void)
{
    int fd = __atomic_load_n(&pipe_rd, __ATOMIC_ACQUIRE);
    if (fd < 0)
        return;
    unsigned char buf[256];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == (ssize_t)sizeof buf || (n < 0 && errno == EINTR))
            continue; /* maybe more */
        return; /* a short read took all there was; EAGAIN: empty */
    }
}

/* Takes one pending delivery of sig, if any. */
static bool take_one(int sig)
{
    uint32_t n = __atomic_load_n(&pending[sig], __ATOMIC_ACQUIRE);
    while (n > 0)
        if (__atomic_compare_exchange_n(&pending[sig], &n, n - 1, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return true;
    return false;
}

/* After an mp_signal_wait() took its one delivery: if others are still
 * pending, signal them again as on_signal() would, so that a blocking call
 * in another thread, whose wake-up byte this thread drained, wakes and runs
 * them instead of sleeping on. */
static void rearm_if_pending(int from)
{
    for (int sig = from; sig < NSIG_; sig++) {
        if (__atomic_load_n(&pending[sig], __ATOMIC_ACQUIRE) == 0)
            continue;
        int fd = __atomic_load_n(&pipe_wr, __ATOMIC_ACQUIRE);
        if (fd >= 0) {
            unsigned char b = (unsigned char)sig;
            ssize_t rc = write(fd, &b, 1);
            (void)rc;
        }
        __atomic_store_n(&any_pending, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&mp__sig_word, 1, __ATOMIC_SEQ_CST);
        mp__futex_wake(&mp__sig_word, INT_MAX);
        return;
    }
}

/* Runs pending handlers: all of them, or at most one when an
 * mp_signal_wait() in this thread is collecting.  Returns how many ran;
 * *intr is set when one returned non-zero. */
static int run_pending(bool *intr)
{
    struct waiter *w = tl_waiter;
    if (w && w->sig)
        return 0; /* this wait already has its signal: leave the rest */
    if (!__atomic_exchange_n(&any_pending, 0, __ATOMIC_ACQ_REL))
        return 0;
    drain_pipe();
    int ran = 0;
    for (int sig = 1; sig < NSIG_; sig++) {
        for (;;) {
            if (w && ran > 0) {
                /* The wait takes one; the others stay pending. */
                rearm_if_pending(sig);
                return ran;
            }
            if (!take_one(sig))
                break;
            pthread_mutex_lock(&lock);
            mp_signal_fn fn = handlers[sig].fn;
            void *arg = handlers[sig].arg;
            pthread_mutex_unlock(&lock);
            if (fn == NULL)
                continue; /* the handler was removed after the delivery */
            /* Calls made inside the handler are ordinary: they run all
             * pending handlers, not just one for this wait. */
            tl_waiter = NULL;
            int rc = fn(sig, arg);
            tl_waiter = w;
            ran++;
            if (rc != 0)
                *intr = true;
            if (w) {
                w->sig = sig;
                w->intr = rc != 0;
            }
        }
    }
    return ran;
}

/* mp__sig_run: what every mproc blocking call runs while it waits. */
static int sig_run(void)
{
    bool intr = false;
    run_pending(&intr);
    return intr ? -EINTR : 0;
}

int mp_signal_dispatch(void)
{
    bool intr = false;
    struct waiter *w = tl_waiter;
    tl_waiter = NULL; /* called from a handler inside a wait: run them all */
    int ran = run_pending(&intr);
    tl_waiter = w;
    return ran;
}

int mp_signal_wait(int *sig, int timeout_ms)
{
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    struct waiter w = { 0, false };
    struct waiter *outer = tl_waiter;
    tl_waiter = &w;
    int rc;
    for (;;) {
        /* Read the word before looking for deliveries: one that comes
         * after this load changes it, so the wait below returns at once. */
        uint32_t seen = __atomic_load_n(&mp__sig_word, __ATOMIC_ACQUIRE);
        bool intr = false;
        run_pending(&intr);
        if (w.sig)
            break;
        rc = mp__wait_word(&mp__sig_word, seen, &dl);
        if (w.sig)
            break; /* mp__wait_word ran it (its rc is 0 or -EINTR) */
        if (rc < 0)
            break; /* -EAGAIN / -ETIMEDOUT */
    }
    tl_waiter = outer;
    if (w.sig == 0)
        return rc;
    if (sig)
        *sig = w.sig;
    return w.intr ? -EINTR : 0;
}

/* ---- fork ------------------------------------------------------------------- */

/* pthread_atfork rather than mp__fork_register: mp__fork calls fork(), so
 * these run for it too, and a user's plain fork() also gets a child with no
 * parent callbacks and its own pipe.  The lock is a leaf (nothing else is
 * taken while it is held), so its place in the fork lock order is free. */
static void atfork_prepare(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_mutex_lock(&lock);
    fork_saved_mask = old;
}

static void atfork_parent(void)
{
    sigset_t old = fork_saved_mask;
    pthread_mutex_unlock(&lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void atfork_child(void)
{
    /* Only this thread exists now; prepare left the lock held and every
     * signal blocked. */
    sigset_t old = fork_saved_mask;
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    memcpy(&lock, &fresh, sizeof lock);
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    for (int sig = 1; sig < NSIG_; sig++) {
        if (installed[sig])
            sigaction(sig, &dfl, NULL);
        installed[sig] = false;
        handlers[sig].fn = NULL;
        handlers[sig].arg = NULL;
        __atomic_store_n(&pending[sig], 0, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&any_pending, 0, __ATOMIC_RELAXED);
    tl_waiter = NULL;
    mp__close(pipe_rd);
    mp__close(pipe_wr);
    int p[2];
    if (pipe_rd >= 0 && pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0) {
        pipe_rd = p[0];
        pipe_wr = p[1];
    } else {
        /* No pipe yet, or none could be made: the next mp_signal_on()
         * makes one (and reports the error if it still cannot). */
        pipe_rd = pipe_wr = -1;
    }
    __atomic_store_n(&mp__sig_fd, pipe_rd, __ATOMIC_RELEASE);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Makes the self-pipe and plugs the module into the core, once.  Called
 * with lock held. */
static int setup_locked(void)
{
    if (pipe_rd < 0) {
        int p[2];
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
            return -errno;
        __atomic_store_n(&pipe_rd, p[0], __ATOMIC_RELEASE);
        __atomic_store_n(&pipe_wr, p[1], __ATOMIC_RELEASE);
        __atomic_store_n(&mp__sig_fd, p[0], __ATOMIC_RELEASE);
    }
    if (!hooks_registered) {
        int rc = pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        if (rc != 0)
            return -rc;
        hooks_registered = true;
    }
    __atomic_store_n(&mp__sig_run, sig_run, __ATOMIC_RELEASE);
    return 0;
}

/* ---- dispositions ------------------------------------------------------------ */

/* Sets sig to SIG_DFL or SIG_IGN and forgets its handler and pending
 * deliveries. */
static int set_plain(int sig, void (*disp)(int))
{
    struct sigaction sa = { .sa_handler = disp };
    sigemptyset(&sa.sa_mask);
    pthread_mutex_lock(&lock);
    int rc = 0;
    if (sigaction(sig, &sa, NULL) != 0) {
        rc = -errno;
    } else {
        installed[sig] = false;
        handlers[sig].fn = NULL;
        handlers[sig].arg = NULL;
        __atomic_store_n(&pending[sig], 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int mp_signal_on(int sig, mp_signal_fn fn, void *arg)
{
    if (!valid_signal(sig) || sig == SIGKILL || sig == SIGSTOP)
        return -EINVAL;
    if (fn == NULL)
        return set_plain(sig, SIG_DFL);
    if (fault_signal(sig))
        return -EINVAL;
    pthread_mutex_lock(&lock);
    int rc = setup_locked();
    if (rc == 0) {
        /* The callback is in place before the first delivery can come.
         * sigaction() every time, even when already installed: the caller
         * may have changed the disposition behind mproc's back. */
        mp_signal_fn old_fn = handlers[sig].fn;
        void *old_arg = handlers[sig].arg;
        handlers[sig].fn = fn;
        handlers[sig].arg = arg;
        /* Full sa_mask: mproc's real handlers never nest.  No SA_RESTART: a
         * sleeping futex or poll returns EINTR and its wait loop runs the
         * handler. */
        struct sigaction sa = { .sa_handler = on_signal };
        sigfillset(&sa.sa_mask);
        if (sigaction(sig, &sa, NULL) != 0) {
            rc = -errno;
            handlers[sig].fn = old_fn;
            handlers[sig].arg = old_arg;
        } else {
            installed[sig] = true;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int mp_signal_ignore(int sig)
{
    if (!valid_signal(sig) || sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD)
        return -EINVAL;
    return set_plain(sig, SIG_IGN);
}

/* ---- alarm and kill ------------------------------------------------------------ */

int mp_signal_alarm(int timeout_ms)
{
    if (timeout_ms < 0)
        return -EINVAL;
    struct itimerval nv = { { 0, 0 }, { timeout_ms / 1000, (timeout_ms % 1000) * 1000 } };
    struct itimerval old;
    if (setitimer(ITIMER_REAL, &nv, &old) != 0)
        return -errno;
    int64_t left_us = (int64_t)old.it_value.tv_sec * 1000000 + old.it_value.tv_usec;
    int64_t left_ms = (left_us + 999) / 1000;
    return left_ms > INT_MAX ? INT_MAX : (int)left_ms;
}

int mp_signal_send(pid_t pid, int sig)
{
    if (pid <= 0 || (sig != 0 && !valid_signal(sig)))
        return -EINVAL;
    if (kill(pid, sig) != 0)
        return -errno;
    return 0;
}
