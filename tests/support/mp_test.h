/* tests/support/mp_test.h - the harness every mproc test file uses.
 *
 * Each test file ends with MP_TEST_MAIN(tests): run with no argument it runs
 * every test; with one argument (as ctest does) it runs only the test of that
 * name, so each test gets its own process and timeout.
 */
#ifndef MP_TEST_H
#define MP_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <mproc.h>

/* Fails with the expression, the code and its message when expr < 0. */
#define MP_ASSERT_OK(expr)                                                       \
    do {                                                                         \
        long long mp_rc_ = (long long)(expr);                                    \
        if (mp_rc_ < 0)                                                          \
            fail_msg("%s returned %lld (%s: %s)", #expr, mp_rc_,                 \
                     mp_err_name((int)mp_rc_), mp_strerror((int)mp_rc_));        \
    } while (0)

/* Fails unless expr returns exactly want (an error code). */
#define MP_ASSERT_ERR(expr, want)                                                \
    do {                                                                         \
        long long mp_rc_ = (long long)(expr), mp_want_ = (long long)(want);      \
        if (mp_rc_ != mp_want_)                                                  \
            fail_msg("%s returned %lld (%s), expected %lld (%s)", #expr, mp_rc_, \
                     mp_err_name((int)mp_rc_), mp_want_,                         \
                     mp_err_name((int)mp_want_));                                \
    } while (0)

/* Number of open fds in this process (counts /proc/self/fd). */
int mp_test_fd_count(void);

/* Milliseconds on CLOCK_MONOTONIC, for lower/upper-bound timing checks. */
int64_t mp_test_now_ms(void);

/* Forks a raw helper child (not through mproc) that dies with the test
 * process (PR_SET_PDEATHSIG SIGKILL) and runs fn(arg), then _exit()s with its
 * return value.  Returns the pid; fails the test if fork fails. */
pid_t mp_test_fork(int (*fn)(void *), void *arg);

/* Waits for a raw child with a bound: returns its wait status, or fails the
 * test (killing the child) if it has not exited after timeout_ms. */
int mp_test_waitpid(pid_t pid, int timeout_ms);

/* Zeroed MAP_SHARED anonymous memory, shared with children forked after;
 * fails the test if mmap fails.  Release with munmap. */
void *mp_test_shared(size_t n);

/* Polls (1 ms steps, bounded by timeout_ms) until the task whose /proc stat
 * file is stat_path, or process pid, is asleep in the kernel (state 'S'):
 * how a test knows its target entered a blocking wait without sleeping for
 * a guessed time.  Returns false on timeout; never fails the test, so it
 * may run in a child. */
bool mp_test_stat_sleeping(const char *stat_path, int timeout_ms);
bool mp_test_pid_sleeping(pid_t pid, int timeout_ms);

/* A pipe used to synchronise processes without sleeps:
 * mp_test_signal(fds) writes one byte, mp_test_await(fds, ms) reads one
 * (fails the test after ms).  Both ends stay open in every process. */
void mp_test_pipe(int fds[2]);
void mp_test_signal(int fds[2]);
void mp_test_await(int fds[2], int timeout_ms);

/* Skips the current test (exit code 77 when run alone under ctest). */
extern int mp_test_skipped;
#define MP_TEST_SKIP(why)                                                        \
    do {                                                                         \
        print_message("skipped: %s\n", why);                                     \
        mp_test_skipped = 1;                                                     \
        skip();                                                                  \
    } while (0)

int mp_test_main(const char *group, const struct CMUnitTest *tests, size_t n,
                 int argc, char **argv);

#define MP_TEST_MAIN(tests)                                                      \
    int main(int argc, char **argv)                                              \
    {                                                                            \
        return mp_test_main(__FILE__, tests, sizeof(tests) / sizeof((tests)[0]), \
                            argc, argv);                                         \
    }

#endif
