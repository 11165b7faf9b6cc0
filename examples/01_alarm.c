/* Example 1: alarm - a later alarm replaces an earlier one; pause() */
/* The seed: alarm(3), sleep 2 s, alarm(8) replaces the first, pause(); the
 * default action of SIGALRM then ends the process, 2 + 8 = 10 s after the
 * start, never at 3 s.  That ending is the point, so the sequence runs in an
 * mproc child and the parent checks how and when it ended.  Then the Python way:
 * a handler for SIGALRM, which is ordinary code run by mp_signal_wait().
 * MP_DEMO=1 divides the delays by 10. */
#include <mproc.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

struct delays {
    int first, nap, second;
};

/* The seed's program, verbatim in spirit: the target of an mproc child. */
static int seed_sequence(void *arg)
{
    const struct delays *d = arg;
    int first = d->first, nap = d->nap, second = d->second;
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
    return 1;
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
    struct delays d = { first, nap, second };
    mp_process *p = NULL;
    long long t0 = now_ms();
    int rc = mp_process_new(&p, seed_sequence, &d, NULL);
    if (rc == 0)
        rc = mp_process_start(p);
    if (rc == 0)
        rc = mp_process_join(p, MP_FOREVER);
    int code = 0;
    if (rc == 0)
        rc = mp_process_exitcode(p, &code);
    long long took = now_ms() - t0;
    mp_process_free(p);
    if (rc != 0 || code != -SIGALRM) {
        printf("FAIL: the child did not end by SIGALRM (%s, exit code %d)\n",
               mp_strerror(rc), code);
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
    rc = mp_signal_wait(&sig, 5000);
    if (rc != 0 || sig != SIGALRM) {
        printf("FAIL: mp_signal_wait returned %s\n", mp_strerror(rc));
        return 1;
    }
    printf("mp_signal_wait returned after the handler ran; the process goes on\n");
    mp_signal_on(SIGALRM, NULL, NULL);
    return 0;
}
