/* mproc/signal.h - signals: handlers that run as ordinary code, and blocking
 * calls that cooperate with them.
 *
 * A handler registered with mp_signal_on() never runs inside the
 * asynchronous signal context.  mproc's real handler only records the
 * delivery; the callback runs later, in normal context, in whichever thread
 * next does one of:
 *   - mp_signal_dispatch(),
 *   - mp_signal_wait(),
 *   - any mproc blocking call (process join, lock/semaphore/event/condition/
 *     barrier waits, queue put/get, connection recv, pool waits).  Such a call
 *     runs the pending handlers and then goes on waiting for what is left of
 *     its timeout; if a handler returned non-zero, the call returns -EINTR
 *     instead (Python's "the handler raised").
 * So a handler may call anything: printf, malloc, mproc functions, even
 * mp_signal_on().  The real handler is installed without SA_RESTART (so
 * sleeping waits wake up): a slow system call the program makes itself,
 * such as read(2) on a terminal, may then fail with EINTR; retry it, as
 * Python does since PEP 475.  Each delivery the kernel makes runs the handler exactly
 * once; nothing is lost when several arrive.  (The kernel itself merges
 * repeats of one standard signal while it is pending; real-time signals
 * queue, so each one sent is one delivery.)
 *
 * Thread and fork safety: every function here is thread-safe, and may be
 * called in a forked child (the module resets itself there, see below).  Handlers run in the
 * thread that dispatches them; two threads that dispatch at the same moment
 * may run two different deliveries concurrently.  A handler that itself
 * makes a blocking mproc call may run other pending handlers inside that
 * call (handlers nest, as in Python).
 *
 * Fork: a child process (mp_process_start, a pool worker, or a plain fork())
 * starts with no mproc handler: every signal that had one is back to its
 * default action, pending deliveries are dropped and the child gets its own
 * wake-up pipe.  A child that wants handlers installs them itself, in its
 * target.  Ignored signals stay ignored, as across fork(2) and execve(2).
 *
 * mproc never installs a handler the caller did not ask for (in particular
 * none for SIGCHLD).  From the first mp_signal_on() with a handler until the
 * process exits, mproc keeps two descriptors open: a close-on-exec,
 * non-blocking self-pipe.
 */
#ifndef MPROC_SIGNAL_H
#define MPROC_SIGNAL_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A signal handler.  Runs in normal context (see above) with the signal
 *  number and the arg given to mp_signal_on().  Return 0 to let an
 *  interrupted mproc call go on waiting, non-zero to make it return -EINTR. */
typedef int (*mp_signal_fn)(int sig, void *arg);

/** Runs fn(sig, arg) for every delivery of sig, from now on, in normal
 *  context.  fn = NULL restores the default action and drops deliveries
 *  still pending.  Replacing a handler keeps deliveries pending: they run the
 *  new one.  The real handler is installed without SA_RESTART and with every
 *  signal blocked while it runs.
 *  -EINVAL: sig is not a signal, is SIGKILL or SIGSTOP, or (with fn != NULL)
 *  is a fault signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS),
 *  whose deferred handling would just fault again.  -EMFILE/-ENFILE: the
 *  self-pipe could not be made (first call only); -ENOMEM.  mproc keeps
 *  only fn and arg (arg is the caller's); on failure nothing changes.
 *  Thread-safe. */
MP_API int mp_signal_on(int sig, mp_signal_fn fn, void *arg);

/** Ignores sig (SIG_IGN) and drops its pending deliveries.  -EINVAL as for
 *  mp_signal_on, and for SIGCHLD: ignoring it makes the kernel reap every
 *  child at once, which would lose mproc processes' exit codes.  On failure
 *  nothing changes.  Thread-safe. */
MP_API int mp_signal_ignore(int sig);

/** Runs every pending handler now, in this thread, in signal-number order;
 *  returns how many ran (0 if none).  Handlers' return values are ignored
 *  here: no call is waiting to be interrupted.  Never fails.  Thread-safe. */
MP_API int mp_signal_dispatch(void);

/** Python's signal.pause() with a timeout: waits until a delivery of a
 *  signal with an mproc handler, runs that one handler (exactly one per
 *  call; others stay pending for the next call) and stores its signal in
 *  *sig (sig may be NULL).  Returns 0, or -EINTR when that handler returned
 *  non-zero (*sig is set in both cases).  A delivery already pending returns
 *  at once.  Signals without an mproc handler do not end the wait: ignored
 *  ones are never seen, default ones do their default (SIGALRM ends the
 *  process, as after pause(2)), and a caller's own sigaction() handler just
 *  runs.  -EAGAIN (timeout 0) / -ETIMEDOUT when nothing came in time.
 *  Thread-safe. */
MP_API int mp_signal_wait(int *sig, int timeout_ms);

/** alarm(2) in milliseconds: SIGALRM to this process timeout_ms from now.
 *  There is one alarm clock per process: a new alarm replaces the previous
 *  one, and 0 cancels it.  Returns the milliseconds that were left on the
 *  previous alarm (rounded up; 0 if none was set), or -EINVAL for a negative
 *  timeout.  Without a handler for SIGALRM its default action ends the
 *  process.  Uses ITIMER_REAL: do not mix with alarm(2)/setitimer(2).
 *  Thread-safe; a child does not inherit the alarm. */
MP_API int mp_signal_alarm(int timeout_ms);

/** os.kill: sends sig to process pid.  sig 0 only checks that pid exists and
 *  may be signalled.  -EINVAL: pid <= 0 (process groups and "everyone" are
 *  kill(2)'s business, never an accident here) or sig is not a signal;
 *  -ESRCH: no such process; -EPERM: not allowed.  A raw pid may have been
 *  reused after its process was reaped: to signal an mproc child use the
 *  process module.  Thread-safe, async-signal-safe. */
MP_API int mp_signal_send(pid_t pid, int sig);

/** "SIGKILL" for 9, "SIGRTMIN+3" / "SIGRTMAX-2" for real-time signals (the
 *  names kill -l prints).  NULL when sig is no signal (0, negative, too
 *  large, or one of the C library's reserved real-time signals).  Static
 *  string.  Thread-safe, async-signal-safe. */
MP_API const char *mp_signal_name(int sig);

/** The number of a signal name, case-insensitive, with or without "SIG":
 *  "KILL", "SIGKILL", "kill" and "9" give 9; "SIGRTMIN+3", "RTMAX-1",
 *  aliases "SIGIOT", "SIGPOLL", "SIGCLD".  -EINVAL for NULL, "", "0", or
 *  anything that names no signal.  Thread-safe. */
MP_API int mp_signal_number(const char *name);

/** A signal's default action, as kill -l / signal(7) tell it. */
typedef enum mp_signal_action {
    MP_SIGACT_TERM = 1, /* terminate the process */
    MP_SIGACT_CORE,     /* terminate and dump core */
    MP_SIGACT_IGNORE,   /* nothing happens */
    MP_SIGACT_STOP,     /* stop the process */
    MP_SIGACT_CONT      /* continue it if stopped */
} mp_signal_action;

/** One line of kill -l.  Every string is static. */
typedef struct mp_signal_info {
    int number;              /* 9 */
    const char *name;        /* "SIGKILL" */
    const char *meaning;     /* "killed" */
    mp_signal_action action; /* MP_SIGACT_TERM */
    const char *action_name; /* "terminate", "core", "ignore", "stop", "continue" */
} mp_signal_info;

/** Fills *out for sig.  -EINVAL when sig is no signal (as mp_signal_name
 *  says NULL) or out is NULL; *out is unchanged then.  Thread-safe. */
MP_API int mp_signal_describe(int sig, mp_signal_info *out);

/** kill -l: every signal, in number order (standard ones, then SIGRTMIN..
 *  SIGRTMAX).  Fills out[0 .. min(cap, total) - 1] and returns the total
 *  (as snprintf does: call with cap 0 and out NULL to size the array).  The
 *  caller owns out.  -EINVAL when out is NULL and cap > 0.  Thread-safe. */
MP_API int mp_signal_list(mp_signal_info *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
