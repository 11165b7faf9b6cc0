/* Example 13: kill -l, and kill a process by pid (seeds 5 and 12) */
/* kill -l lists every signal; kill -SIG PID sends one.  A child runs seed
 * example 12 (print its pid every 2 s); once it has printed twice, the
 * parent sends it SIGKILL as seed example 5 does with os.kill, and checks
 * that the child died of it.  MP_DEMO=1 divides the delay by 10. */
#include <mproc.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void list_signals(void)
{
    int n = mp_signal_list(NULL, 0);
    mp_signal_info *all = calloc((size_t)n, sizeof *all);
    if (!all)
        exit(1);
    mp_signal_list(all, (size_t)n);
    printf("kill -l (number, name, default action):\n");
    for (int i = 0; i < n; i++) {
        if (i % 3 == 2 || i == n - 1)
            printf("%3d) %-12s %s\n", all[i].number, all[i].name, all[i].action_name);
        else
            printf("%3d) %-12s %-9s   ", all[i].number, all[i].name, all[i].action_name);
    }
    free(all);
}

struct printer {
    int interval_ms;
    int tell; /* write end of a pipe: one byte per line printed */
};

/* Seed example 12: a loop printing its pid, and telling the parent. */
static int pid_printer(void *arg)
{
    const struct printer *pr = arg;
    int interval_ms = pr->interval_ms, tell = pr->tell;
    for (;;) {
        printf("  [child] my pid is %d\n", (int)getpid());
        fflush(stdout);
        if (write(tell, "x", 1) != 1)
            _exit(1);
        struct timespec ts = { interval_ms / 1000, (long)(interval_ms % 1000) * 1000000 };
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int await_byte(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char c;
    return poll(&p, 1, 10000) == 1 && read(fd, &c, 1) == 1 ? 0 : -1;
}

int main(void)
{
    int interval = getenv("MP_DEMO") ? 200 : 2000;
    list_signals();
    printf("\nnames and numbers: KILL -> %d, SIGTERM -> %d, 9 -> %s, "
           "SIGRTMIN+3 -> %d -> %s\n\n",
           mp_signal_number("KILL"), mp_signal_number("SIGTERM"), mp_signal_name(9),
           mp_signal_number("SIGRTMIN+3"), mp_signal_name(mp_signal_number("SIGRTMIN+3")));

    int p[2];
    if (pipe(p) != 0)
        return 1;
    struct printer pr = { interval, p[1] };
    mp_process *child;
    if (mp_process_new(&child, pid_printer, &pr, NULL) != 0 || mp_process_start(child) != 0)
        return 1;
    close(p[1]);
    pid_t pid = mp_process_pid(child);
    if (await_byte(p[0]) != 0 || await_byte(p[0]) != 0) {
        printf("FAIL: the child did not start\n");
        mp_process_kill(child);
        return 1;
    }
    /* The seed's os.kill(pid, SIGKILL): a raw pid, fine while the child is
     * not reaped (mp_process_kill is the reuse-proof way). */
    int sig = mp_signal_number("KILL");
    printf("parent: mp_signal_send(%d, %s)\n", (int)pid, mp_signal_name(sig));
    int rc = mp_signal_send(pid, sig);
    if (rc != 0) {
        printf("FAIL: %s\n", mp_strerror(rc));
        return 1;
    }
    int code = 0;
    rc = mp_process_join(child, 10000);
    if (rc == 0)
        rc = mp_process_exitcode(child, &code);
    mp_process_free(child);
    close(p[0]);
    if (rc != 0 || code != -SIGKILL) {
        printf("FAIL: the child was not killed by SIGKILL\n");
        return 1;
    }
    int st = code;
    printf("parent: child %d was killed by %s (exit code %d)\n", (int)pid,
           mp_signal_name(-st), st);
    rc = mp_signal_send(pid, 0);
    printf("parent: now mp_signal_send(%d, 0) says %s (%s)\n", (int)pid, mp_err_name(rc),
           mp_strerror(rc));
    return rc == -ESRCH ? 0 : 1;
}
