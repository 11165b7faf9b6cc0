/* Example 3: clock process (a Process "subclass" is a struct embedding mp_process) */
/*
 * Python subclasses Process and overrides run():
 *
 *     class ClockProcess(Process):
 *         def __init__(self, value): self.value = value; Process.__init__(self)
 *         def run(self): print the time 5 times, every `value` seconds
 *
 * In C the "subclass" is a struct that holds its mp_process and passes
 * itself as the target's argument; run() is the target.  The seed's 2 s
 * interval is 200 ms under `make demo` (MP_DEMO=1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <mproc.h>

typedef struct clock_process {
    mp_process *proc; /* the "base class" */
    int interval_ms;  /* the seed's `value` */
    int ticks;        /* how many times run() prints */
} clock_process;

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* run(): the child's code.  Returns how many times it printed, so the
 * parent can check it through the exit code. */
static int clock_run(void *self)
{
    clock_process *c = self;
    int n;
    for (n = 0; n < c->ticks; n++) {
        struct timespec now;
        struct tm tm;
        char buf[64];
        clock_gettime(CLOCK_REALTIME, &now);
        localtime_r(&now.tv_sec, &tm);
        strftime(buf, sizeof buf, "%a %b %d %H:%M:%S", &tm);
        printf("  [%s] The time is %s.%03ld\n", mp_current_process_name(), buf,
               now.tv_nsec / 1000000);
        fflush(stdout);
        if (n + 1 < c->ticks)
            sleep_ms(c->interval_ms);
    }
    return n;
}

/* The "constructor": Process.__init__ plus the subclass's own fields. */
static int clock_process_init(clock_process *c, int interval_ms, int ticks)
{
    c->interval_ms = interval_ms;
    c->ticks = ticks;
    return mp_process_new(&c->proc, clock_run, c, &(mp_process_opts){ .name = "ClockProcess" });
}

int main(void)
{
    int interval = getenv("MP_DEMO") ? 200 : 2000;
    clock_process clock;
    int rc = clock_process_init(&clock, interval, 5);
    if (rc < 0 || (rc = mp_process_start(clock.proc)) < 0) {
        fprintf(stderr, "clock process: %s\n", mp_strerror(rc));
        return 1;
    }
    printf("%s started %s (pid %d): 5 ticks, every %d ms\n", mp_current_process_name(),
           mp_process_name(clock.proc), (int)mp_process_pid(clock.proc), interval);
    fflush(stdout);
    int code = -1;
    if ((rc = mp_process_join(clock.proc, MP_FOREVER)) < 0 ||
        (rc = mp_process_exitcode(clock.proc, &code)) < 0) {
        fprintf(stderr, "join: %s\n", mp_strerror(rc));
        return 1;
    }
    mp_process_free(clock.proc);
    printf("joined: it printed %d times (exit code %d)\n", code, code);
    return code == 5 ? 0 : 1;
}
