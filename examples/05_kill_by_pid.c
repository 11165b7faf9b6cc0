/* Example 5: kill by pid (example 12's loop prints its pid, then SIGKILL) */
/*
 * Example 12 is a loop that prints its pid every 2 s; example 5 kills a
 * process by pid with os.kill(pid, SIGKILL).  Here the loop runs as a
 * daemonic child (it never outlives this program), reports each tick on a
 * pipe, and after three ticks the parent kills it by pid with kill(2).
 *
 * Killing by pid is safe here because the child has not been reaped yet:
 * until join (or is_alive) reaps it, its pid cannot be reused.  After that,
 * use mp_process_kill(), which answers -ESRCH instead of hitting a stranger.
 * Delays are 200 ms under `make demo` (MP_DEMO=1).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

typedef struct loop_arg {
    int tick_fd;     /* write end: one byte per tick */
    int close_fd;    /* read end, closed in the child */
    int interval_ms;
} loop_arg;

/* Example 12: while True: sleep(2); print(os.getpid()) */
static int pid_loop(void *arg)
{
    loop_arg *a = arg;
    close(a->close_fd);
    struct timespec ts = { a->interval_ms / 1000, (a->interval_ms % 1000) * 1000000L };
    for (;;) {
        nanosleep(&ts, NULL);
        printf("  %d\n", (int)getpid());
        fflush(stdout);
        if (write(a->tick_fd, "t", 1) != 1)
            return 1;
    }
}

int main(void)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
    }
    loop_arg a = { fds[1], fds[0], getenv("MP_DEMO") ? 200 : 2000 };
    mp_process *p;
    int rc = mp_process_new(&p, pid_loop, &a, &(mp_process_opts){ .daemon = true });
    if (rc == 0)
        rc = mp_process_start(p);
    if (rc < 0) {
        fprintf(stderr, "start: %s\n", mp_strerror(rc));
        return 1;
    }
    close(fds[1]);
    pid_t pid = mp_process_pid(p);
    printf("started the pid loop as pid %d; it prints its pid every %d ms:\n", (int)pid,
           a.interval_ms);
    fflush(stdout);
    for (int i = 0; i < 3; i++) {
        char c;
        if (read(fds[0], &c, 1) != 1) {
            fprintf(stderr, "the loop stopped early\n");
            return 1;
        }
    }
    printf("kill(%d, SIGKILL)\n", (int)pid);
    fflush(stdout);
    if (kill(pid, SIGKILL) != 0) {
        perror("kill");
        return 1;
    }
    int code = 0;
    if (mp_process_join(p, 5000) < 0 || mp_process_exitcode(p, &code) < 0) {
        fprintf(stderr, "join failed\n");
        return 1;
    }
    if (code < 0)
        printf("joined: exit code %d (killed by signal %d: %s)\n", code, -code, strsignal(-code));
    else
        printf("joined: exit code %d\n", code);
    rc = mp_process_kill(p);
    printf("mp_process_kill after the reap: %s (the pid is never signalled again)\n",
           mp_err_name(rc));
    mp_process_free(p);
    close(fds[0]);
    return code == -SIGKILL && rc == -ESRCH ? 0 : 1;
}
