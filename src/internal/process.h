/* src/internal/process.h - test hooks of the process module (fault injection).
 *
 * Plain globals, read by mp_process_start/mp_process_spawn_detached in the
 * parent before the fork, so a test sets them, starts, and resets them.  They
 * exist to make rare failures cheap to provoke (STYLE 4.15); nothing in the
 * library sets them. */
#ifndef MPROC_INTERNAL_PROCESS_H
#define MPROC_INTERNAL_PROCESS_H

/* > 0: the child's setup fails with -this errno (reported by start). */
extern int mp__process_test_fail_setup;
/* non-zero: the child kills itself (SIGKILL) before reporting its setup. */
extern int mp__process_test_die_in_setup;
/* non-zero: start as if the kernel had no pidfds (the sentinel-pipe path). */
extern int mp__process_test_no_pidfd;
/* non-zero: the parent waits until the child is gone before it opens the
 * pidfd (with SIGCHLD ignored: the child exited and was reaped first). */
extern int mp__process_test_late_pidfd;
/* non-zero: start finds no free handshake slot and uses a pipe, as when
 * 1024 starts are in progress or the page could not be mapped. */
extern int mp__process_test_no_slot;
/* How long start (for the child's report) and join (for the child's exit)
 * check without sleeping, yielding the CPU, before they sleep (ns; default
 * 200000, 0 = sleep at once).  A tunable for tests and benchmarks, not an
 * API. */
extern int mp__process_spin_ns;

#endif
