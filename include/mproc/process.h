/* mproc/process.h - processes started from a C function (Python's Process).
 *
 * A process is created with mp_process_new(), started with
 * mp_process_start() (fork, then the target runs in the child) and waited
 * for with mp_process_join().  The child's exit status is the target's
 * return value (& 0xff); a child killed by signal N reports -N.
 *
 *   static int work(void *arg) { puts(arg); return 0; }
 *
 *   mp_process *p;
 *   mp_process_new(&p, work, "hello", NULL);
 *   mp_process_start(p);
 *   mp_process_join(p, MP_FOREVER);
 *   mp_process_free(p);
 *
 * Handles.  A handle belongs to the process that started it: only that
 * process may join, test, signal or read the sentinel of it.  A child
 * inherits copies of its parent's handles (fork copies memory) but calls on
 * them return -ECHILD (is_alive returns false): a child never joins or
 * signals its siblings.  Name, pid and exit code stay readable anywhere.
 *
 * Exit.  At a normal exit of a process (return from main or exit()), mproc
 * sends SIGTERM to its daemonic children and joins its non-daemonic ones,
 * then joins the daemonic ones (those still alive 1 s after SIGTERM get
 * SIGKILL) - Python's semantics.  A child whose target returns, or which
 * calls exit(), does the same for its own children, flushes its stdio and
 * ends with _exit(status): it never runs atexit handlers its parent
 * registered (on glibc; see mproc_process(3) for musl).
 *
 * Thread-safety: every function is thread-safe, also on the same handle,
 * except mp_process_free(), which must not race with another call on the
 * same handle.  Fork-safety: every fork made through mproc (start,
 * spawn_detached, any mproc module that forks) gives the child an empty
 * table of children, closing the pidfds it inherited; a child started by
 * mp_process_start also gets its own name and name counter.  A raw fork()
 * resets nothing, but the inherited handles still answer -ECHILD there; it
 * must not happen while another thread is inside an mp_process call.  No
 * function here is async-signal-safe: call them from handlers registered
 * with mp_signal_on(), which run in normal context.
 */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include <stdbool.h>
#include <sys/types.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_process mp_process;

/** The function a process runs.  Its return value is the child's exit
 *  status (only the low 8 bits reach the parent: -1 becomes 255). */
typedef int (*mp_target)(void *arg);

typedef struct mp_process_opts {
    const char *name; /* NULL: "Process-N", N counting per parent (Python's rule:
                         the children of Process-1 are Process-1:1, ...) */
    bool daemon;      /* never outlives its parent: SIGTERM at the parent's normal
                         exit, SIGKILL (PR_SET_PDEATHSIG) if the parent dies */
} mp_process_opts;

/** Creates an unstarted process that will run target(arg).  opts may be
 *  NULL (default name, not daemonic); opts->name is copied.  On success *out
 *  owns a new handle, freed with mp_process_free(); on failure *out is left
 *  unchanged.  -EINVAL (out or target NULL), -ENOMEM.  Thread-safe. */
MP_API int mp_process_new(mp_process **out, mp_target target, void *arg,
                          const mp_process_opts *opts);

/** Forks the child and returns once it is running: stdout/stderr are
 *  flushed first, and the child reports through a pipe that its setup
 *  succeeded before start returns (start polls for that report for up to
 *  200 us, yielding the CPU, before it sleeps).  Allocates nothing the caller frees.  On
 *  failure no child remains and p is left unstarted (start may be retried).
 *  -EINVAL (NULL, started before, or created by another process), -EAGAIN or
 *  -ENOMEM (fork), -EMFILE/-ENFILE (no fd for the pipe or pidfd), the
 *  child's setup error (-ENOMEM), -ECHILD (the child died during its
 *  setup).  Never returns -EINTR.  Thread-safe. */
MP_API int mp_process_start(mp_process *p);

/** Waits until the process has exited and reaps it (only this pid: never
 *  waitpid(-1)).  0 once it has exited (also on later calls); -EAGAIN
 *  (timeout 0) or -ETIMEDOUT while it runs; -EINTR if a signal handler asked
 *  to interrupt; -EINVAL (NULL, not started); -ECHILD (not a child of this
 *  process).  Nothing is allocated or freed.  Thread-safe. */
MP_API int mp_process_join(mp_process *p, int timeout_ms);

/** true while the process runs (started, not exited).  Reaps it if it has
 *  exited, so mp_process_exitcode() then succeeds.  false for NULL, for an
 *  unstarted process and for a handle of another process.  Thread-safe. */
MP_API bool mp_process_is_alive(mp_process *p);

/** The child's pid, 0 before start (and for NULL).  It stays readable after
 *  the child is reaped: do not signal it then (the pid may be reused); use
 *  mp_process_terminate/kill.  Thread-safe. */
MP_API pid_t mp_process_pid(const mp_process *p);

/** The process's name, owned by the handle (valid until mp_process_free);
 *  NULL for NULL.  Thread-safe. */
MP_API const char *mp_process_name(const mp_process *p);

/** Once join or is_alive has seen the exit: 0 and *code = the exit status
 *  (0..255), or -N if a signal N killed it.  -EAGAIN while it runs or before
 *  start (*code unchanged); -EINVAL for NULL; -ECHILD if someone else reaped
 *  the child (SIGCHLD set to SIG_IGN, or a waitpid(-1) elsewhere), so its
 *  status is lost.  Thread-safe. */
MP_API int mp_process_exitcode(const mp_process *p, int *code);

/** Sends SIGTERM.  0 if sent (also to a child that has exited but is not
 *  reaped yet, as kill(2) does); -ESRCH once the child has been reaped: the
 *  signal goes through a pidfd (or, without pidfds, to a pid that cannot
 *  have been reused), never to a reused pid.  -EINVAL (NULL, not started),
 *  -ECHILD (not a child of this process).  Thread-safe. */
MP_API int mp_process_terminate(mp_process *p);

/** As mp_process_terminate, with SIGKILL. */
MP_API int mp_process_kill(mp_process *p);

/** An fd that polls readable (POLLIN) once the process has exited: the
 *  child's pidfd (or, on kernels without pidfds, the read end of a pipe
 *  whose write end the child holds until it dies).  Owned by the handle:
 *  valid until mp_process_free(), do not close it.  Do not read from it.
 *  -EINVAL (NULL, not started), -ECHILD (not a child of this process).
 *  Thread-safe. */
MP_API int mp_process_sentinel(const mp_process *p);

/** Frees the handle; NULL is ignored.  It never signals the child: a
 *  process that is still running stays tracked by mproc, which reaps it at
 *  the first mp_process_start() or mp_process_free() after it exits, or
 *  joins it (daemon: terminates it) at this process's exit, so it never
 *  stays a zombie for long.  Must not race with another call on the same
 *  handle. */
MP_API void mp_process_free(mp_process *p);

/** "MainProcess" in the first process; in a child started by mproc, its own
 *  name.  Static storage valid for the life of the process.  Thread-safe. */
MP_API const char *mp_current_process_name(void);

/** Fire and forget: runs target(arg) in a grandchild that belongs to a new
 *  session and is re-parented to init (or the nearest subreaper), so it is
 *  never this process's zombie and this process never waits for it
 *  (the double fork of the classic daemon).  The intermediate child is reaped
 *  before this returns.  Returns after the grandchild reported that it runs,
 *  with its pid in *pid_out (not tracked: it may exit and be reused at any
 *  time, so signal it only if you know it is alive).  opts->name names it
 *  (default "Process-N"); opts->daemon must be false (a detached process
 *  outlives its parent by design).  The target's return value is its exit
 *  status, seen by nobody.  The working directory, umask and standard
 *  streams are inherited unchanged.  On failure *pid_out is unchanged and no
 *  process remains.  -EINVAL (NULL argument, daemon), fork/pipe errors, the
 *  setup error of either child, -ECHILD (a child died during setup).
 *  Thread-safe. */
MP_API int mp_process_spawn_detached(pid_t *pid_out, mp_target target, void *arg,
                                     const mp_process_opts *opts);

#ifdef __cplusplus
}
#endif

#endif
