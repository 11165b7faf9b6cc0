/* Example 1: alarm - a later alarm replaces an earlier one; pause() */
/* The seed: alarm(3), sleep 2 s, alarm(8) replaces the first, pause(); the
 * default action of SIGALRM then ends the process, 2 + 8 = 10 s after the
 * start, never at 3 s.  That ending is the point, so the sequence runs in a
 * child and the parent checks how and when it ended.  Then the Python way:
 * a handler for SIGALRM, which is ordinary code run by mp_signal_wait().
 * MP_DEMO=1 divides the delays by 10. */
#include <mproc.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The seed's program, verbatim in spirit. */
static void seed_sequence(int first, int nap, int second)
{
    printf("  [child %d] alarm(%d ms)\n", (int)getpid(), first);
    mp_signal_alarm(first);
    printf("  [child] sleeping %d ms\n", nap);
    sleep_ms(nap);
    int left = mp_signal_alarm(second);
    printf("  [child] alarm(%d ms) replaces it (%d ms were left on the first)\n",
           second, left);
    printf("  [child] pause()\n");
    fflush(stdout);
    mp_signal_wait(NULL, MP_FOREVER);
    printf("  [child] not reached: SIGALRM's default action ends the process\n");
}

static int on_alarm(int sig, void *arg)
{
    /* Normal context: printf and malloc are fine here. */
    char *msg = malloc(64);
    if (msg) {
        snprintf(msg, 64, "%s", mp_signal_name(sig));
        printf("  handler: got %s after %lld ms\n", msg, now_ms() - *(long long *)arg);
        free(msg);
    }
    return 0;
}

int main(void)
{
    int scale = getenv("MP_DEMO") ? 10 : 1;
    int first = 3000 / scale, nap = 2000 / scale, second = 8000 / scale;

    printf("alarm(%d), sleep %d, alarm(%d), pause(), in a child process:\n",
           first, nap, second);
    fflush(stdout);
    long long t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        seed_sequence(first, nap, second);
        _exit(1);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    long long took = now_ms() - t0;
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGALRM) {
        printf("FAIL: the child did not end by SIGALRM\n");
        return 1;
    }
    mp_signal_info info;
    mp_signal_describe(SIGALRM, &info);
    printf("child ended by %s (%s, default action: %s) after ~%lld ms\n",
           info.name, info.meaning, info.action_name, took);
    if (took < nap + second - 5) {
        printf("FAIL: it ended before the second alarm (%d ms)\n", nap + second);
        return 1;
    }
    printf("so the alarm at %d ms never fired: alarm(%d) replaced it\n", first, second);

    printf("\nwith a handler (Python's signal.signal):\n");
    long long t1 = now_ms();
    if (mp_signal_on(SIGALRM, on_alarm, &t1) != 0)
        return 1;
    mp_signal_alarm(1000 / scale);
    int sig = 0;
    int rc = mp_signal_wait(&sig, 5000);
    if (rc != 0 || sig != SIGALRM) {
        printf("FAIL: mp_signal_wait returned %s\n", mp_strerror(rc));
        return 1;
    }
    printf("mp_signal_wait returned after the handler ran; the process goes on\n");
    mp_signal_on(SIGALRM, NULL, NULL);
    return 0;
}
