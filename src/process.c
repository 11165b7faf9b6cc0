/* src/process.c - processes started from a C function: the start handshake,
 * pidfd handles, reaping of our own pids only, exit-time joins, daemons and
 * the detached double fork.
 *
 * Start: mp__fork() (stdio flushed, fork hooks run), then in the parent
 * pidfd_open(child) and the handle enters the table, both under tab_lock;
 * the parent waits until the child reports (0, or -errno from its setup) or
 * dies.  The report is a word in a shared page (a slot per start in
 * progress; see "the start handshake"), or, without pidfds or a free slot,
 * 4 bytes on a pipe2(O_CLOEXEC) pipe.  The child sets PR_SET_PDEATHSIG if it
 * is a daemon, takes its name, registers its on_exit guard, reports, runs
 * the target, runs the exit routine for its own children, flushes stdio and
 * _exit()s.
 *
 * Handles: the pidfd is the handle, the sentinel and the signal target
 * (pidfd_send_signal never reaches a reused pid); reaping is
 * waitid(P_PIDFD, WNOHANG) under tab_lock, after a poll on the pidfd made
 * without it.  Once reaped (state EXITED) nothing is ever sent again.
 * Without pidfds (Linux < 5.3, seccomp), the handshake pipe stays open in
 * the child and its read end is the sentinel; signals go to the pid, which
 * is safe while the child is unreaped (a zombie keeps its pid).
 *
 * The table holds every started handle until it is reaped and freed, so the
 * exit routine can join what the user freed while running and a child can
 * close what it inherited (fork_child). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal/core.h"
#include "internal/process.h"
#include "mproc/process.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* How long a daemonic child gets between SIGTERM and SIGKILL at its
 * parent's exit (Python waits forever; a daemon that ignores SIGTERM would
 * then hang the exit, so mproc bounds it). */
#define EXIT_DAEMON_GRACE_MS 1000

int mp__process_test_fail_setup;
int mp__process_test_die_in_setup;
int mp__process_test_no_pidfd;
int mp__process_test_late_pidfd;
int mp__process_test_no_slot;

/* Test hook: wait (bounded, 5 s) until the child is gone entirely, as if
 * the parent had been descheduled between fork and pidfd_open.  Only
 * meaningful with SIGCHLD ignored, where the kernel reaps the child. */
static void test_wait_gone(pid_t pid)
{
    for (int i = 0; i < 5000 && kill(pid, 0) == 0; i++)
        poll(NULL, 0, 1);
}

/* The life of a handle.  state and every field below it are guarded by
 * tab_lock once the handle has been started.
 *
 *   NEW       created, not started (or a failed start: may start again)
 *   STARTING  forked, waiting for the child's handshake; in the table
 *   RUNNING   the child reported that it runs; in the table
 *   EXITED    reaped: exitcode (or status_lost) is final; still in the table
 *             until the user frees the handle (its fd stays open for the
 *             sentinel) */
enum { ST_NEW, ST_STARTING, ST_RUNNING, ST_EXITED };

struct mp_process {
    mp_target target;
    void *arg;
    const char *name; /* both point into text[] */
    const char *ident; /* Python's _identity: "1", "1:2", ... */
    bool daemon;
    pid_t creator;   /* the process that called mp_process_new */

    int state;
    pid_t owner;     /* the process that started it: only it may wait or signal */
    pid_t pid;       /* atomic: read without the lock by mp_process_pid */
    int fd;          /* pidfd, or (no pidfds) the sentinel pipe's read end; -1 */
    bool is_pidfd;
    bool status_lost; /* someone else reaped it (SIGCHLD ignored, waitpid(-1)) */
    bool freed;      /* the user freed it: the table owns it until reaped */
    bool orphan;     /* freed while running: counted in orphans */
    bool listed;     /* in the table */
    int exitcode;
    int refs;        /* exit-routine waits in progress: keep the memory */
    struct mp_process *prev, *next;
    char text[];     /* ident, then name: one allocation per handle */
};

/* The table of this process's children: every handle from its start until
 * it is both reaped and freed.  One mutex guards it and the state of every
 * started handle; it is never held across a blocking wait (waits run signal
 * handlers, which may call into this module), and the fork protocol holds it
 * across fork() so a child sees a consistent table. */
static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER;
static mp_process *tab;
static unsigned orphans; /* handles freed while running, not yet reaped */

/* Per-process state, reset in each child that mproc starts. */
static const char *cur_name;  /* NULL: "MainProcess"; else in our own handle */
static const char *cur_ident; /* NULL: the first process (empty identity) */
static unsigned counter;    /* processes created here so far (Python's counter) */
static pid_t exit_pid;      /* the process whose exit routine is installed */
static pid_t onexit_pid;    /* the child whose on_exit handler is installed */
static int self_sentinel = -1; /* no pidfds: our write end of our own sentinel */

/* The start handshake page (see "the start handshake" below). */
#define HS_SLOTS 1024
#define HS_PAGE (HS_SLOTS * sizeof(uint32_t))
static uint32_t *hs_page;        /* this process's handshake page, or NULL */
static pid_t hs_owner;           /* the process that mapped hs_page */
static void *hs_stale;           /* a page inherited from our parent, or NULL */
static uint32_t hs_busy[HS_SLOTS / 32]; /* slots in use: bit i of word i/32 */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static bool have_pidfd;     /* pidfd_open works here */
static bool have_wait_pidfd = true; /* waitid(P_PIDFD) works (5.4+) */

static void lock(void)
{
    if (pthread_mutex_lock(&tab_lock) != 0)
        mp__panic("process table lock");
}

static void unlock(void)
{
    if (pthread_mutex_unlock(&tab_lock) != 0)
        mp__panic("process table unlock");
}

/* close(fd) if fd >= 0, keeping errno.  Unlike mp__close it writes errno
 * only when close fails: errno lives in a TLS page that, written between two
 * forks, costs the parent a copy-on-write fault per start. */
static void close_fd(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        if (close(fd) != 0)
            errno = saved;
    }
}

static void destroy(mp_process *p)
{
    close_fd(p->fd);
    free(p);
}

static void tab_insert(mp_process *p)
{
    p->prev = NULL;
    p->next = tab;
    if (tab)
        tab->prev = p;
    __atomic_store_n(&tab, p, __ATOMIC_RELEASE); /* child_exit peeks at it */
    p->listed = true;
}

static void tab_remove(mp_process *p)
{
    if (!p->listed)
        return;
    if (p->prev)
        p->prev->next = p->next;
    else
        __atomic_store_n(&tab, p->next, __ATOMIC_RELEASE);
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
    p->listed = false;
}

/* ---- fork hooks ------------------------------------------------------------
 * prepare/parent hold tab_lock across fork().  In the child, the parent's
 * children are not ours: forget them and close the fds we inherited for
 * them, so they neither leak nor let the child wait for or signal its
 * siblings.  Handles the user still holds stay in memory (they answer
 * -ECHILD: their owner is another pid); handles only the table owned are
 * freed.  A sentinel write end we inherited from our parent is closed too,
 * or our parent's sentinel would wait for us as well. */
static void fork_prepare(void)
{
    lock();
}

static void fork_parent(void)
{
    unlock();
}

static void fork_child(void)
{
    mp_process *p = tab, *next;
    for (; p; p = next) {
        next = p->next;
        p->prev = p->next = NULL;
        p->listed = false;
        if (p->freed) {
            destroy(p); /* only the table held it (the waits are the parent's) */
        } else {
            mp__close(p->fd);
            p->fd = -1;
        }
    }
    __atomic_store_n(&tab, NULL, __ATOMIC_RELEASE);
    orphans = 0;
    mp__close(self_sentinel);
    self_sentinel = -1;
    if (hs_page) { /* our parent's: unmapped when we map our own */
        hs_stale = hs_page;
        hs_page = NULL;
        memset(hs_busy, 0, sizeof hs_busy);
    }
    tab_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
}

static const mp__fork_hooks process_hooks = {
    .prepare = fork_prepare,
    .parent = fork_parent,
    .child = fork_child,
};

static int pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void module_init(void)
{
    mp__fork_register(&process_hooks);
    /* Probe once: a kernel older than 5.3 says ENOSYS, a seccomp filter
     * EPERM or EACCES; both select the sentinel-pipe fallback for good. */
    int fd = pidfd_open(getpid());
    if (fd >= 0) {
        close(fd);
        have_pidfd = true;
    } else {
        have_pidfd = !(errno == ENOSYS || errno == EPERM || errno == EACCES);
    }
}

/* ---- reaping ------------------------------------------------------------------ */

/* Reaps p if it has exited, never blocking and never touching another pid.
 * true once p is EXITED.  Caller holds tab_lock; p is STARTING or later. */
static bool reap_locked(mp_process *p)
{
    if (p->state == ST_EXITED)
        return true;
    siginfo_t si;
    for (;;) {
        memset(&si, 0, sizeof si);
        int rc;
        if (p->is_pidfd && __atomic_load_n(&have_wait_pidfd, __ATOMIC_RELAXED))
            rc = waitid((idtype_t)P_PIDFD, (id_t)p->fd, &si, WEXITED | WNOHANG);
        else
            rc = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG);
        if (rc == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EINVAL && p->is_pidfd &&
            __atomic_load_n(&have_wait_pidfd, __ATOMIC_RELAXED)) {
            /* Linux 5.3 has pidfd_open but not waitid(P_PIDFD): our pid is
             * still unreaped, so waiting by pid is as exact. */
            __atomic_store_n(&have_wait_pidfd, false, __ATOMIC_RELAXED);
            continue;
        }
        if (errno == ECHILD) {
            /* Someone else reaped it: it has exited, its status is gone. */
            p->status_lost = true;
            p->state = ST_EXITED;
            return true;
        }
        mp__panic("waitid for child %d", (int)p->pid);
    }
    if (si.si_pid == 0)
        return false;
    p->exitcode = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
    p->state = ST_EXITED;
    return true;
}

/* Reaps a child that is known to be exiting (failed start, intermediate
 * child of a detached start): a blocking wait that ends within the child's
 * own exit, so it is not routed through mp__wait_poll.  By its pidfd when
 * there is one, so that even if someone else reaped it (SIGCHLD ignored)
 * and its pid was reused by another child, that child is not waited for.
 * ECHILD means someone else reaped it. */
static void reap_dying(pid_t pid, int pidfd)
{
    siginfo_t si;
    int rc;
    do
        rc = pidfd >= 0 ? waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED)
                        : waitid(P_PID, (id_t)pid, &si, WEXITED);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno == EINVAL && pidfd >= 0) /* no waitid(P_PIDFD): 5.3 */
        reap_dying(pid, -1);
}

/* Without pidfds only: the sentinel pipe said the child is gone, but it is
 * not waitable yet.  Usually it is exiting (a process closes its fds just
 * before it becomes a zombie), so yield a few times, even when the
 * deadline has passed (so join(p, 0) right after the sentinel fired sees
 * the exit); but it may also have exec()ed or closed the pipe and run on,
 * so after that check once a millisecond rather than spin.  0 to check again, or the deadline's code,
 * or -EINTR. */
static int gone_wait(const mp__deadline *dl, int round)
{
    if (round < 16) { /* even past the deadline: a few microseconds */
        sched_yield();
        return mp__signal_check();
    }
    if (mp__deadline_expired(dl))
        return mp__deadline_code(dl);
    mp__deadline tick = mp__deadline_from_ms(1);
    if (tick.at_ns > dl->at_ns)
        tick = *dl;
    struct pollfd none = { .fd = -1 }; /* poll(2) ignores negative fds */
    int rc = mp__wait_poll(&none, 1, &tick);
    return rc == -ETIMEDOUT || rc == -EAGAIN ? 0 : rc < 0 ? rc : 0;
}

/* Frees p if the user freed it, nobody waits on it and it was reaped.
 * Caller holds tab_lock. */
static void maybe_destroy_locked(mp_process *p)
{
    if (p->freed && p->refs == 0 && p->state == ST_EXITED) {
        if (p->orphan)
            orphans--;
        tab_remove(p);
        destroy(p);
    }
}

/* Reaps the handles the user freed while they ran, once they have exited,
 * so a long-running parent accumulates no zombies.  Caller holds tab_lock. */
static void sweep_locked(pid_t me)
{
    if (orphans == 0)
        return;
    mp_process *p = tab, *next;
    for (; p; p = next) {
        next = p->next;
        if (p->freed && p->owner == me && p->state == ST_RUNNING && reap_locked(p))
            maybe_destroy_locked(p);
    }
}

/* ---- the exit routine --------------------------------------------------------
 * At a normal exit (the parent's atexit handler, or a child whose target
 * returned or which called exit()): SIGTERM to the daemonic children, join
 * the non-daemonic ones, then join the daemonic ones for up to
 * EXIT_DAEMON_GRACE_MS and SIGKILL whatever is left. */

static int signal_locked(mp_process *p, int sig)
{
    int rc = p->is_pidfd ? (int)syscall(SYS_pidfd_send_signal, p->fd, sig, NULL, 0)
                         : kill(p->pid, sig);
    return rc == 0 ? 0 : -errno;
}

static void signal_all(pid_t me, bool daemons, int sig)
{
    lock();
    for (mp_process *p = tab; p; p = p->next)
        if (p->owner == me && p->daemon == daemons && p->state == ST_RUNNING &&
            !reap_locked(p))
            (void)signal_locked(p, sig);
    unlock();
}

/* Joins every running child of ours with the given daemon flag; true when
 * all have exited, false at the deadline. */
static bool join_all(pid_t me, bool daemons, const mp__deadline *dl)
{
    int gone_rounds = 0;
    for (;;) {
        mp_process *p, *next, *wait_on = NULL;
        lock();
        for (p = tab; p; p = next) {
            next = p->next;
            if (p->owner != me || p->daemon != daemons || p->state != ST_RUNNING)
                continue;
            if (reap_locked(p)) {
                maybe_destroy_locked(p);
                continue;
            }
            wait_on = p;
            break;
        }
        if (!wait_on) {
            unlock();
            return true;
        }
        wait_on->refs++;
        struct pollfd pf = { .fd = wait_on->fd, .events = POLLIN };
        bool via_pipe = !wait_on->is_pidfd;
        unlock();
        int rc = gone_rounds > 0 ? gone_wait(dl, gone_rounds) : mp__wait_poll(&pf, 1, dl);
        lock();
        wait_on->refs--;
        bool done = reap_locked(wait_on);
        maybe_destroy_locked(wait_on);
        unlock();
        if (rc == -EAGAIN || rc == -ETIMEDOUT)
            return false;
        if (rc < 0 && rc != -EINTR)
            return false; /* poll itself failed (ENOMEM): give up the wait */
        /* the pipe said "gone" but the child is not waitable yet */
        gone_rounds = !done && via_pipe && (rc > 0 || gone_rounds > 0) ? gone_rounds + 1 : 0;
    }
}

static void exit_routine(void)
{
    pid_t me = getpid();
    signal_all(me, true, SIGTERM);
    mp__deadline forever = mp__deadline_from_ms(MP_FOREVER);
    join_all(me, false, &forever);
    mp__deadline grace = mp__deadline_from_ms(EXIT_DAEMON_GRACE_MS);
    if (!join_all(me, true, &grace)) {
        signal_all(me, true, SIGKILL);
        join_all(me, true, &forever);
    }
}

static void parent_atexit(void)
{
    if (getpid() == __atomic_load_n(&exit_pid, __ATOMIC_RELAXED))
        exit_routine();
}

/* Installs the exit routine for this process (once per process: a child
 * forked by the user inherits the registration but not the right to run
 * it).  Caller holds tab_lock.  0 or -ENOMEM. */
static int install_exit_locked(pid_t me)
{
    if (exit_pid == me)
        return 0;
    if (atexit(parent_atexit) != 0)
        return -ENOMEM;
    __atomic_store_n(&exit_pid, me, __ATOMIC_RELAXED);
    return 0;
}

/* Handshake slot words (see the start handshake below). */
#define HS_WAIT 1u
#define HS_SLEEP 2u

/* ---- the child side ------------------------------------------------------------ */

/* Functions only children call go through pointers bound when the library
 * is loaded.  A call through the PLT would be bound lazily, and since the
 * parent never makes it, every child would bind it anew: a symbol lookup
 * in ld.so and about ten page faults (a child maps each page it touches),
 * a noticeable part of the cost of a short-lived child. */
static void (*volatile exit_fn)(int) = _exit;

_Noreturn static void child_exit(int status)
{
    /* Most children start no children: skip the routine (and the code
     * pages it would fault in) when the table is empty. */
    if (__atomic_load_n(&tab, __ATOMIC_ACQUIRE))
        exit_routine();
    fflush(NULL);
    exit_fn(status & 0xff);
    __builtin_unreachable();
}

#ifdef __GLIBC__
/* Registered last in the child, so exit() runs it before any handler the
 * parent registered: it does the child's exit routine and ends with
 * _exit(status), so the parent's handlers never run here.  Handlers the
 * child registered after its start still run first. */
static void child_on_exit(int status, void *arg)
{
    (void)arg;
    if (getpid() == onexit_pid)
        child_exit(status);
}

/* Called only in children: bound at load time (see exit_fn). */
static int (*volatile on_exit_fn)(void (*)(int, void *), void *) = on_exit;
#endif

/* The child's setup, before it reports to its parent: 0 or -errno.  parent
 * is the parent's pid for a daemon, 0 otherwise. */
static int child_setup(const mp_process *p, pid_t parent)
{
    if (mp__process_test_die_in_setup)
        raise(SIGKILL);
    if (mp__process_test_fail_setup > 0)
        return -mp__process_test_fail_setup;
    if (parent) {
        /* Die with the parent, even when it is SIGKILLed.  The signal comes
         * when the parent *thread* that forked us exits.  If the parent died
         * before the prctl, nobody will send it: die now. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
            return -errno;
        if (getppid() != parent)
            raise(SIGKILL);
    }
    /* Our name lives in our copy of the handle, which mp_process_free
     * keeps for the life of the process.  No allocation here: every page
     * the child writes or code page it runs costs it a page fault. */
    cur_name = p->name;
    cur_ident = p->ident;
    __atomic_store_n(&counter, 0, __ATOMIC_RELAXED);
#ifdef __GLIBC__
    if (on_exit_fn(child_on_exit, NULL) != 0)
        return -ENOMEM;
    onexit_pid = getpid();
    /* the on_exit handler covers exit(): no atexit handler in this child */
    __atomic_store_n(&exit_pid, onexit_pid, __ATOMIC_RELAXED);
#endif
    return 0;
}

/* The child's report: one 4-byte write, atomic on a pipe (write() is
 * bound at load time: see exit_fn). */
static ssize_t (*volatile write_fn)(int, const void *, size_t) = write;

static int child_report(int fd, const void *msg, size_t len)
{
    ssize_t n;
    while ((n = write_fn(fd, msg, len)) < 0 && errno == EINTR)
        ;
    return n == (ssize_t)len ? 0 : -1;
}

/* Runs in the child of mp_process_start: set up, report, run.  The report
 * goes to slot (see the start handshake below) or, if it is NULL, to the
 * pipe hs_w. */
_Noreturn static void child_main(const mp_process *p, pid_t parent, uint32_t *slot, int hs_w,
                                 bool keep_w)
{
    int32_t msg = child_setup(p, p->daemon ? parent : 0);
    if (slot) {
        if (__atomic_exchange_n(slot, (uint32_t)msg, __ATOMIC_RELEASE) == HS_SLEEP)
            mp__futex_wake(slot, 1);
        if (msg < 0)
            _exit(127);
    } else {
        if (child_report(hs_w, &msg, sizeof msg) != 0 || msg < 0)
            _exit(127);
        /* Without pidfds, our end of the handshake pipe is our parent's
         * sentinel: hold it until we die (fork_child closes it in our own
         * children).  With a pidfd, nobody needs it. */
        if (keep_w)
            self_sentinel = hs_w;
        else
            close(hs_w);
    }
    child_exit(p->target(p->arg));
}

/* ---- public API ------------------------------------------------------------------ */

int mp_process_new(mp_process **out, mp_target target, void *arg, const mp_process_opts *opts)
{
    if (!out || !target)
        return -EINVAL;
    unsigned n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    const char *parent = cur_ident ? cur_ident : "";
    const char *sep = cur_ident ? ":" : "";
    size_t ilen = strlen(parent) + strlen(sep) + 10; /* 10: digits of a 32-bit n */
    size_t nlen = opts && opts->name ? strlen(opts->name) : strlen("Process-") + ilen;
    if (ilen > SIZE_MAX / 4 || nlen > SIZE_MAX / 4)
        return -ENOMEM;
    mp_process *p = calloc(1, sizeof *p + ilen + 1 + nlen + 1);
    if (!p)
        return -ENOMEM;
    char *ident = p->text, *name = p->text + ilen + 1;
    /* "<parent>:<n>" and "Process-<ident>", by hand: snprintf costs a
     * microsecond and a deep stack frame, and a stack page the parent
     * writes between two forks costs it a copy-on-write fault */
    size_t len = strlen(parent);
    memcpy(ident, parent, len);
    if (*sep)
        ident[len++] = ':';
    char digits[10];
    size_t nd = 0;
    do
        digits[nd++] = (char)('0' + n % 10);
    while ((n /= 10) != 0);
    while (nd > 0)
        ident[len++] = digits[--nd];
    ident[len] = '\0';
    if (opts && opts->name) {
        memcpy(name, opts->name, nlen + 1);
    } else {
        memcpy(name, "Process-", strlen("Process-"));
        memcpy(name + strlen("Process-"), ident, len + 1);
    }
    p->ident = ident;
    p->name = name;
    p->target = target;
    p->arg = arg;
    p->daemon = opts && opts->daemon;
    p->creator = getpid();
    p->state = ST_NEW;
    p->fd = -1;
    *out = p;
    return 0;
}

/* ---- the start handshake ---------------------------------------------------------
 * With pidfds the child reports in a word of the handshake page, one
 * MAP_SHARED page per process mapped at its first start, a word per start
 * in progress (slots are handed out under tab_lock).  Against a pipe this
 * saves pipe2, read and three close calls per start, two of them in the
 * child, and the child's write(): a start whose parent sees the report
 * while it spins costs no system call at all for the report.  A slot word:
 *
 *   HS_WAIT   the child has not reported; the parent is not asleep
 *   HS_SLEEP  the child has not reported; the parent sleeps on the word, so
 *             the child FUTEX_WAKEs it after its report
 *   else      the report: 0, or -errno from the child's setup (as uint32_t;
 *             never 1 or 2)
 *
 * The parent sets HS_WAIT before the fork; the child replaces it with its
 * report once (atomic exchange); the parent may move HS_WAIT to HS_SLEEP
 * (compare-and-swap).  A child that dies before its report never writes:
 * the parent's sleeping wait is bounded (HS_TICK_MS) and between sleeps
 * looks at the pidfd, which turns readable when the child has exited.  A
 * slot is freed only once its child has reported or is dead, so a late
 * write can never land in another start's slot.  A child unmaps nothing:
 * it keeps its parent's page mapped (shared, so it costs no memory) until
 * it starts a child itself and maps its own.  Without pidfds the pipe stays:
 * its read end is the sentinel. */
#define HS_TICK_MS 5

/* A free slot, or NULL (no page could be mapped, or 1024 starts are in
 * progress): the caller then uses a pipe.  me is the caller's pid: a child
 * made by a plain fork() (no fork hooks ran) finds its parent's page here
 * and must not share its slots.  Caller holds tab_lock. */
static uint32_t *slot_get_locked(pid_t me)
{
    if (MP__UNLIKELY(mp__process_test_no_slot))
        return NULL;
    if (hs_page && hs_owner != me) {
        hs_stale = hs_page;
        hs_page = NULL;
        memset(hs_busy, 0, sizeof hs_busy);
    }
    if (!hs_page) {
        if (hs_stale) {
            munmap(hs_stale, HS_PAGE);
            hs_stale = NULL;
        }
        void *m = mmap(NULL, HS_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        hs_page = m;
        hs_owner = me;
    }
    for (size_t i = 0; i < HS_SLOTS / 32; i++) {
        if (hs_busy[i] != UINT32_MAX) {
            unsigned b = (unsigned)__builtin_ctz(~hs_busy[i]);
            hs_busy[i] |= 1u << b;
            return &hs_page[i * 32 + b];
        }
    }
    return NULL;
}

static void slot_put(uint32_t *slot)
{
    if (!slot)
        return;
    size_t i = (size_t)(slot - hs_page);
    lock();
    hs_busy[i / 32] &= ~(1u << (i % 32));
    unlock();
}

/* Undoes a start whose child failed or died: the child is dying or dead;
 * reap it and make p startable again. */
static void start_undo(mp_process *p, pid_t pid, int fd, uint32_t *slot)
{
    lock();
    bool p_is_pidfd = p->is_pidfd;
    tab_remove(p);
    p->state = ST_NEW;
    p->owner = 0;
    __atomic_store_n(&p->pid, 0, __ATOMIC_RELAXED);
    p->fd = -1;
    unlock();
    reap_dying(pid, p_is_pidfd ? fd : -1);
    close_fd(fd);
    slot_put(slot); /* only now: the child can no longer write it */
}

/* The handshake wait spins before it sleeps: for up to mp__process_spin_ns
 * (declared in internal/process.h; 0 disables) it checks for the report
 * without sleeping, yielding the CPU between checks.  A new child usually
 * reports within microseconds, often on this very CPU as soon as we yield
 * it; sleeping instead costs a second sleep/wake-up round trip per start on
 * top of the one join needs (on a VM an idle exit and an IPI each), which
 * measured as a quarter of a start+join.  sched_yield() gives the CPU to
 * whatever else is runnable here, the child first if it queued here, so
 * the spin only burns time that nobody else wants. */
int mp__process_spin_ns = 200000;

/* The pipe handshake's spin: > 0 when some fd is ready, 0 to go on with a
 * sleeping wait. */
static int handshake_spin(struct pollfd *pf, nfds_t n)
{
    mp__deadline now = mp__deadline_from_ms(0);
    int64_t until = mp__now_ns() + mp__process_spin_ns;
    for (;;) {
        int rc = mp__wait_poll(pf, n, &now);
        if (rc > 0)
            return rc;
        if (rc != -EAGAIN && rc != -EINTR)
            return 0; /* let the sleeping wait report it */
        if (mp__now_ns() >= until)
            return 0;
        sched_yield();
    }
}

/* The slot handshake's wait: the child's report (0 or -errno), -ECHILD if
 * it died without one, or the error of a failed wait (then *failed is set:
 * the caller kills the child).  Not interruptible (see mp_process_start). */
static int32_t slot_wait(uint32_t *slot, int pidfd, bool *failed)
{
    uint32_t v = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (v == HS_WAIT) {
        int64_t until = mp__now_ns() + mp__process_spin_ns;
        do {
            if (mp__now_ns() >= until)
                break;
            sched_yield();
        } while ((v = __atomic_load_n(slot, __ATOMIC_ACQUIRE)) == HS_WAIT);
    }
    if (v == HS_WAIT &&
        __atomic_compare_exchange_n(slot, &v, HS_SLEEP, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_ACQUIRE))
        v = HS_SLEEP;
    /* Look at the pidfd first (the child may have died while we spun),
     * then sleep on the word for a tick, and again. */
    while (v == HS_SLEEP) {
        struct pollfd pf = { .fd = pidfd, .events = POLLIN };
        mp__deadline now = mp__deadline_from_ms(0);
        int rc = mp__wait_poll(&pf, 1, &now);
        if (rc < 0 && rc != -EAGAIN && rc != -EINTR) {
            *failed = true;
            return rc;
        }
        v = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (v != HS_SLEEP)
            break;
        if (rc > 0)
            return -ECHILD; /* it exited and never reported */
        mp__deadline tick = mp__deadline_from_ms(HS_TICK_MS);
        rc = mp__wait_word(slot, HS_SLEEP, &tick);
        if (rc < 0 && rc != -ETIMEDOUT && rc != -EINTR) {
            *failed = true;
            return rc;
        }
        v = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    }
    return (int32_t)v;
}

/* pidfd_open said ESRCH: the child has exited already and someone else
 * reaped it (SIGCHLD ignored), all before we could open its pidfd.  Its pid
 * may be reused now, so it is never named again.  msg is its report: 0
 * means the start succeeded and the process has simply finished (state
 * EXITED, status lost; sentinel, an fd that always reads EOF, becomes the
 * handle's fd), -errno is its setup error or -ECHILD if it never reported.
 * Caller holds tab_lock; it is released.  Takes sentinel. */
static int start_gone_locked(mp_process *p, pid_t me, pid_t pid, int32_t msg, int sentinel)
{
    if (msg != 0) {
        p->state = ST_NEW;
        unlock();
        mp__close(sentinel);
        return msg;
    }
    p->owner = me;
    __atomic_store_n(&p->pid, pid, __ATOMIC_RELAXED);
    p->fd = sentinel;
    p->is_pidfd = false;
    p->status_lost = true;
    p->state = ST_EXITED;
    tab_insert(p);
    unlock();
    return 0;
}

/* start_gone_locked's report and sentinel on the pipe path: what the child
 * wrote, and the pipe (its write end is closed: it reads EOF). */
static int pipe_gone_locked(mp_process *p, pid_t me, pid_t pid, int hs_r)
{
    struct pollfd pf = { .fd = hs_r, .events = POLLIN };
    int32_t msg = -ECHILD;
    if (poll(&pf, 1, 0) > 0 && read(hs_r, &msg, sizeof msg) != (ssize_t)sizeof msg)
        msg = -ECHILD;
    return start_gone_locked(p, me, pid, msg, hs_r);
}

/* The same on the slot path: the report is in the slot, and the sentinel
 * is a new pipe whose write end is closed at once.  If no pipe can be made
 * the start fails with that error although the target ran (this needs
 * SIGCHLD ignored, a child that ended before its pidfd was opened and no
 * fd left). */
static int slot_gone_locked(mp_process *p, pid_t me, pid_t pid, uint32_t *slot)
{
    uint32_t v = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    int32_t msg = v == HS_WAIT || v == HS_SLEEP ? -ECHILD : (int32_t)v;
    int sentinel = -1;
    if (msg == 0) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0) {
            msg = -errno;
        } else {
            mp__close(fds[1]);
            sentinel = fds[0];
        }
    }
    /* the child is gone: its slot is free again (tab_lock is held) */
    size_t i = (size_t)(slot - hs_page);
    hs_busy[i / 32] &= ~(1u << (i % 32));
    return start_gone_locked(p, me, pid, msg, sentinel);
}

int mp_process_start(mp_process *p)
{
    if (!p)
        return -EINVAL;
    pthread_once(&init_once, module_init);
    pid_t me = getpid();
    bool use_pidfd = have_pidfd && !mp__process_test_no_pidfd;
    uint32_t *slot = NULL;
    lock();
    int rc = 0;
    if (p->state != ST_NEW || p->creator != me)
        rc = -EINVAL;
    else
        rc = install_exit_locked(me);
    if (rc == 0) {
        p->state = ST_STARTING; /* a concurrent start of p now fails */
        sweep_locked(me);
        if (use_pidfd)
            slot = slot_get_locked(me);
    }
    unlock();
    if (rc < 0)
        return rc;

    int hs[2] = { -1, -1 };
    if (slot) {
        __atomic_store_n(slot, HS_WAIT, __ATOMIC_RELAXED); /* fork() orders it */
    } else if (pipe2(hs, O_CLOEXEC) != 0) {
        rc = -errno;
        goto undo;
    }
    pid_t pid = mp__fork();
    if (pid == 0) {
        mp__close(hs[0]);
        child_main(p, me, slot, hs[1], !use_pidfd);
    }
    close_fd(hs[1]);
    if (pid < 0) {
        close_fd(hs[0]);
        rc = pid;
        goto undo;
    }

    /* The pidfd is opened, and p enters the table, under the lock that the
     * fork protocol takes: a fork by another thread either happens before
     * (and does not inherit the pidfd) or sees p in the table (and its child
     * closes the pidfd).  The pid is safe to name: it is our unreaped child. */
    lock();
    int fd = hs[0];
    if (use_pidfd) {
        if (MP__UNLIKELY(mp__process_test_late_pidfd))
            test_wait_gone(pid);
        fd = pidfd_open(pid);
        if (fd < 0) {
            rc = -errno;
            if (rc == -ESRCH) /* both unlock */
                return slot ? slot_gone_locked(p, me, pid, slot)
                            : pipe_gone_locked(p, me, pid, hs[0]);
            unlock();
            mp__close(hs[0]);
            /* Out of fds: it is our unreaped child, so its pid is still
             * its own. */
            kill(pid, SIGKILL);
            reap_dying(pid, -1);
            goto undo;
        }
    }
    p->owner = me;
    __atomic_store_n(&p->pid, pid, __ATOMIC_RELAXED);
    p->fd = fd;
    p->is_pidfd = use_pidfd;
    p->exitcode = 0;
    p->status_lost = false;
    tab_insert(p);
    unlock();

    /* The handshake: the child reports 0, or -errno if its setup failed.
     * With a pidfd we also watch the child itself, so a child that dies
     * before reporting is noticed (on the pipe path: even if another
     * thread's fork inherited the pipe's write end).  Not interruptible:
     * the child answers within its setup, and a start that returned -EINTR
     * with a running child would be a trap. */
    int32_t msg;
    bool wait_failed = false;
    if (slot) {
        msg = slot_wait(slot, fd, &wait_failed);
    } else {
        struct pollfd pf[2] = { { .fd = hs[0], .events = POLLIN },
                                { .fd = fd, .events = POLLIN } };
        nfds_t npf = use_pidfd ? 2 : 1;
        rc = handshake_spin(pf, npf);
        if (rc == 0) {
            mp__deadline dl = mp__deadline_from_ms(MP_FOREVER);
            do
                rc = mp__wait_poll(pf, npf, &dl);
            while (rc == -EINTR);
        }
        msg = -ECHILD;
        if (rc < 0) {
            msg = rc;
            wait_failed = true;
        } else if (pf[0].revents) {
            ssize_t n;
            while ((n = read(hs[0], &msg, sizeof msg)) < 0 && errno == EINTR)
                ;
            if (n != (ssize_t)sizeof msg)
                msg = -ECHILD; /* EOF: it died before reporting */
        }
        if (use_pidfd)
            close_fd(hs[0]);
    }
    if (msg != 0) {
        if (wait_failed) /* give up on this child (poll or futex said ENOMEM) */
            (void)(use_pidfd ? (int)syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0)
                             : kill(pid, SIGKILL));
        start_undo(p, pid, fd, slot);
        return msg;
    }
    slot_put(slot);
    lock();
    p->state = ST_RUNNING;
    unlock();
    return 0;

undo:
    slot_put(slot);
    lock();
    p->state = ST_NEW;
    unlock();
    return rc;
}

/* 0 if this process started p and p's handshake is done; else the code. */
static int check_own_locked(const mp_process *p, pid_t me)
{
    if (p->state == ST_NEW || p->state == ST_STARTING)
        return p->owner && p->owner != me ? -ECHILD : -EINVAL;
    return p->owner == me ? 0 : -ECHILD;
}

/* join's spin before it sleeps: as in the start handshake (see
 * mp__process_spin_ns), poll the pidfd without sleeping, yielding the CPU
 * between checks, until the child has exited or the budget or the deadline
 * is spent.  A child that reported a moment ago is often finishing its exit
 * when join is called; sleeping in poll then costs an idle exit and a
 * wake-up IPI, measured as 15% of a start+join on a 2-CPU VM.  > 0 when the
 * pidfd is ready, 0 to go on with the sleeping wait, < 0 an error of the
 * wait (-EINTR when a handler asked to interrupt). */
static int join_spin(struct pollfd *pf, const mp__deadline *dl)
{
    mp__deadline now = mp__deadline_from_ms(0);
    int64_t until = mp__now_ns() + mp__process_spin_ns;
    for (;;) {
        int rc = mp__wait_poll(pf, 1, &now);
        if (rc != -EAGAIN)
            return rc;
        if (mp__now_ns() >= until || mp__deadline_expired(dl))
            return 0;
        sched_yield();
    }
}

int mp_process_join(mp_process *p, int timeout_ms)
{
    if (!p)
        return -EINVAL;
    mp__deadline dl = mp__deadline_from_ms(timeout_ms);
    lock();
    int rc = check_own_locked(p, getpid());
    /* A running child with a pidfd is not reaped here first: the poll
     * below says at once whether it has exited, and a waitid now would be
     * a wasted system call whenever it has not. */
    bool done = rc == 0 && (p->state == ST_EXITED || (!p->is_pidfd && reap_locked(p)));
    struct pollfd pf = { .fd = p->fd, .events = POLLIN };
    bool via_pipe = !p->is_pidfd;
    unlock();
    if (rc < 0)
        return rc;
    int gone_rounds = -1; /* >= 0 once the sentinel pipe said "gone" */
    if (!done && !via_pipe && !dl.nowait) {
        rc = join_spin(&pf, &dl);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            lock();
            done = reap_locked(p);
            unlock();
        }
    }
    while (!done) {
        rc = gone_rounds < 0 ? mp__wait_poll(&pf, 1, &dl) : gone_wait(&dl, gone_rounds++);
        if (rc < 0)
            return rc;
        lock();
        done = reap_locked(p);
        unlock();
        if (!done && via_pipe && gone_rounds < 0)
            gone_rounds = 0;
    }
    return 0;
}

bool mp_process_is_alive(mp_process *p)
{
    if (!p)
        return false;
    lock();
    bool alive = check_own_locked(p, getpid()) == 0 && !reap_locked(p);
    unlock();
    return alive;
}

pid_t mp_process_pid(const mp_process *p)
{
    return p ? __atomic_load_n(&p->pid, __ATOMIC_RELAXED) : 0;
}

const char *mp_process_name(const mp_process *p)
{
    return p ? p->name : NULL;
}

int mp_process_exitcode(const mp_process *p, int *code)
{
    if (!p || !code)
        return -EINVAL;
    lock();
    int rc = 0;
    if (p->state != ST_EXITED)
        rc = p->owner && p->owner != getpid() ? -ECHILD : -EAGAIN;
    else if (p->status_lost)
        rc = -ECHILD;
    else
        *code = p->exitcode;
    unlock();
    return rc;
}

static int send_signal(mp_process *p, int sig)
{
    if (!p)
        return -EINVAL;
    lock();
    int rc = check_own_locked(p, getpid());
    if (rc == 0)
        rc = p->state == ST_EXITED ? -ESRCH : signal_locked(p, sig);
    unlock();
    return rc;
}

int mp_process_terminate(mp_process *p)
{
    return send_signal(p, SIGTERM);
}

int mp_process_kill(mp_process *p)
{
    return send_signal(p, SIGKILL);
}

int mp_process_sentinel(const mp_process *p)
{
    if (!p)
        return -EINVAL;
    lock();
    int rc = check_own_locked(p, getpid());
    if (rc == 0)
        rc = p->fd;
    unlock();
    return rc;
}

void mp_process_free(mp_process *p)
{
    if (!p || p->name == cur_name)
        return; /* a child's copy of its own handle holds its name: keep it */
    pid_t me = getpid();
    lock();
    if (p->listed && p->owner == me &&
        (p->state == ST_RUNNING || p->state == ST_STARTING) && !reap_locked(p)) {
        p->freed = true; /* the table owns it until it is reaped */
        p->orphan = true;
        orphans++;
        unlock();
        return;
    }
    if (p->refs > 0) {
        p->freed = true; /* the exit routine waits on it and frees it */
        unlock();
        return;
    }
    tab_remove(p);
    sweep_locked(me);
    unlock();
    destroy(p);
}

const char *mp_current_process_name(void)
{
    return cur_name ? cur_name : "MainProcess";
}

/* ---- detached start ------------------------------------------------------------
 * Double fork: the intermediate child starts a new session, forks the
 * grandchild and exits at once; we reap it, so the grandchild is re-parented
 * to init (or a subreaper) and can never be our zombie.  The grandchild
 * reports {0 or -errno, its pid} on the pipe after its setup; the
 * intermediate child writes {-errno, 0} only if setsid or fork failed.  Both
 * messages fit in one atomic pipe write. */

int mp_process_spawn_detached(pid_t *pid_out, mp_target target, void *arg,
                              const mp_process_opts *opts)
{
    if (!pid_out || !target || (opts && opts->daemon))
        return -EINVAL;
    pthread_once(&init_once, module_init);
    mp_process *p;
    int rc = mp_process_new(&p, target, arg, opts);
    if (rc < 0)
        return rc;
    int hs[2];
    if (pipe2(hs, O_CLOEXEC) != 0) {
        rc = -errno;
        mp_process_free(p);
        return rc;
    }
    pid_t pid = mp__fork();
    if (pid == 0) {
        mp__close(hs[0]);
        int32_t msg[2] = { 0, 0 };
        pid_t g = setsid() < 0 ? -errno : mp__fork();
        if (g == 0) {
            msg[0] = child_setup(p, 0);
            msg[1] = getpid();
            if (child_report(hs[1], msg, sizeof msg) != 0 || msg[0] < 0)
                _exit(127);
            mp__close(hs[1]);
            child_exit(p->target(p->arg));
        }
        if (g < 0) {
            msg[0] = g;
            (void)child_report(hs[1], msg, sizeof msg);
            _exit(127);
        }
        _exit(0);
    }
    mp__close(hs[1]);
    if (pid < 0) {
        mp__close(hs[0]);
        mp_process_free(p);
        return pid;
    }
    reap_dying(pid, -1); /* it exits right after its fork */
    mp_process_free(p);

    /* Only the grandchild holds the write end now (the intermediate child
     * is gone): a message, or EOF if the grandchild died before reporting. */
    struct pollfd pf = { .fd = hs[0], .events = POLLIN };
    mp__deadline dl = mp__deadline_from_ms(MP_FOREVER);
    do
        rc = mp__wait_poll(&pf, 1, &dl);
    while (rc == -EINTR);
    int32_t msg[2] = { -ECHILD, 0 };
    if (rc < 0)
        msg[0] = rc;
    else if (mp__read_all(hs[0], msg, sizeof msg, NULL) != 0)
        msg[0] = -ECHILD;
    mp__close(hs[0]);
    if (msg[0] < 0)
        return msg[0];
    *pid_out = msg[1];
    return 0;
}
